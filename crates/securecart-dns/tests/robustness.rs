//! The request handler against hostile input, in the manner of a fuzz target run on stable
//! Rust: random bytes, and real queries with random bytes flipped, cut short or extended,
//! must never panic; every answer must be a well-formed response to the query's id that
//! fits the transport's limit.

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use securecart_dns::{Catalog, Responder, Transport, Zone};

const ZONE: &str = "$ORIGIN shop.test.
$TTL 300
@       IN SOA ns1 hostmaster 1 7200 3600 1209600 60
@       IN NS  ns1
ns1     IN A   127.0.0.53
www     IN A   127.1.0.1
shop    IN CNAME www
*.img   IN A   127.1.0.9
";

fn seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for (name, record_type) in [
        ("www.shop.test.", RecordType::A),
        ("shop.shop.test.", RecordType::A),
        ("x.img.shop.test.", RecordType::AAAA),
        ("nope.shop.test.", RecordType::MX),
        ("shop.test.", RecordType::ANY),
    ] {
        for edns in [false, true] {
            let mut message = Message::new(0x4242, MessageType::Query, OpCode::Query);
            message.add_query(Query::query(
                Name::from_ascii(name).expect("name"),
                record_type,
            ));
            if edns {
                message.set_edns(Edns::new());
            }
            seeds.push(message.to_vec().expect("encode"));
        }
    }
    seeds
}

fn check(responder: &Responder, input: &[u8]) {
    for transport in [Transport::Udp, Transport::Tcp] {
        let Some(answer) = responder.respond(input, transport, [127, 0, 0, 1].into()) else {
            continue;
        };
        assert!(answer.len() >= 12, "{input:?}");
        assert_eq!(answer[..2], input[..2], "the id is echoed: {input:?}");
        assert!(answer[2] & 0x80 != 0, "QR is set: {input:?}");
        if transport == Transport::Udp {
            assert!(
                answer.len() <= 1232,
                "{} bytes over UDP: {input:?}",
                answer.len()
            );
        }
        Message::from_vec(&answer).unwrap_or_else(|error| panic!("{error}: {input:?}"));
        // The same answer written into a buffer that held a longer one (as a server's
        // worker reuses its buffers).
        let mut reused = vec![0xaa; 700];
        assert!(responder.respond_into(input, transport, [127, 0, 0, 1].into(), &mut reused));
        assert_eq!(reused, answer, "{input:?}");
    }
}

#[test]
fn a_name_longer_than_255_bytes_is_a_format_error() {
    let zone = Zone::parse(ZONE, "shop.test.zone", None, None).expect("zone");
    let responder = Responder::new(Catalog::new(vec![zone]).expect("catalog"));
    // Five labels of 63 bytes (320 bytes of name), A IN, and an OPT record with a client
    // subnet (127.202.0.0/24): a question past the longest a kept answer's key holds.
    let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
    for _ in 0..5 {
        query.push(63);
        query.extend([b'a'; 63]);
    }
    query.extend([0, 0, 1, 0, 1]);
    query.extend([0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 11]);
    query.extend([0, 8, 0, 7, 0, 1, 24, 0, 127, 202, 0]);
    for transport in [Transport::Udp, Transport::Tcp] {
        // Twice: nothing of it is kept.
        for _ in 0..2 {
            let answer = responder
                .respond(&query, transport, [127, 0, 0, 1].into())
                .expect("an answer");
            assert_eq!(answer[..2], [0x12, 0x34]);
            assert_eq!(answer[3] & 0x0f, 1, "FORMERR over {transport:?}");
        }
    }
}

#[test]
fn no_input_makes_the_handler_panic_or_answer_badly() {
    let zone = Zone::parse(ZONE, "shop.test.zone", None, None).expect("zone");
    let responder = Responder::new(Catalog::new(vec![zone]).expect("catalog"));
    let mut rng = StdRng::seed_from_u64(0x5eca_7ca7);
    let seeds = seeds();
    for round in 0..60_000 {
        let input: Vec<u8> = if round % 4 == 0 {
            let length = rng.random_range(0..600);
            (0..length).map(|_| rng.random()).collect()
        } else {
            let mut input = seeds[rng.random_range(0..seeds.len())].clone();
            for _ in 0..rng.random_range(1..6) {
                match rng.random_range(0..3) {
                    0 if !input.is_empty() => {
                        let at = rng.random_range(0..input.len());
                        input[at] = rng.random();
                    }
                    1 if !input.is_empty() => {
                        let at = rng.random_range(0..input.len());
                        input.truncate(at);
                    }
                    _ => input.extend((0..rng.random_range(1..40)).map(|_| rng.random::<u8>())),
                }
            }
            input
        };
        check(&responder, &input);
        // Twice: the second may come from the kept answers.
        check(&responder, &input);
    }
}
