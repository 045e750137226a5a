//! The server over real UDP and TCP sockets, queried with messages built by hickory-proto:
//! answers, negative answers, refusals, malformed queries, EDNS, truncation and the TCP
//! retry, the client's letter case, and a reload between queries.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use securecart_dns::{Catalog, DnsServer, Responder, Zone};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const ZONE: &str = r#"$ORIGIN shop.test.
$TTL 300
@       IN SOA ns1 hostmaster 2026112501 7200 3600 1209600 60
@       IN NS  ns1
ns1     IN A   127.0.0.53
www     IN A   127.1.0.1
www     IN AAAA ::1
big     IN TXT "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
big     IN TXT "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
big     IN TXT "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
"#;

fn responder(zone: &str) -> Responder {
    let zone = Zone::parse(zone, "shop.test.zone", None, None).expect("zone");
    Responder::new(Catalog::new(vec![zone]).expect("catalog"))
}

struct Running {
    address: SocketAddr,
    server: Arc<arc_swap::ArcSwap<Responder>>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Stops the server, and waits until it has.
    async fn stop(self) {
        self.stop.send(()).expect("stop");
        self.task.await.expect("server stops").expect("served");
    }
}

async fn start() -> Running {
    start_with(2, None).await
}

/// A server of `workers` UDP workers, with this batch wait rather than the default.
async fn start_with(workers: usize, batch_wait: Option<Duration>) -> Running {
    let mut server = DnsServer::bind("127.0.0.1:0".parse().expect("address"), responder(ZONE))
        .await
        .expect("binds");
    if let Some(wait) = batch_wait {
        server = server.with_udp_batch_wait(wait);
    }
    let address = server.local_addr().expect("address");
    let slot = server.responder();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(workers, async move {
        let _ = stopped.await;
    }));
    Running {
        address,
        server: slot,
        stop,
        task,
    }
}

fn query(name: &str, record_type: RecordType, edns: Option<u16>) -> Message {
    let mut message = Message::new(0x1234, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(
        Name::from_ascii(name).expect("name"),
        record_type,
    ));
    if let Some(payload) = edns {
        let mut options = Edns::new();
        options.set_max_payload(payload);
        message.set_edns(options);
    }
    message
}

async fn udp(address: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    socket.send_to(bytes, address).await.expect("send");
    let mut buffer = vec![0u8; 65_535];
    match tokio::time::timeout(Duration::from_millis(500), socket.recv(&mut buffer)).await {
        Ok(received) => {
            buffer.truncate(received.expect("receive"));
            Some(buffer)
        }
        Err(_) => None,
    }
}

async fn ask_udp(address: SocketAddr, message: &Message) -> Message {
    let bytes = udp(address, &message.to_vec().expect("encode"))
        .await
        .expect("an answer");
    Message::from_vec(&bytes).expect("decodes")
}

async fn ask_tcp(address: SocketAddr, message: &Message) -> Message {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    let bytes = message.to_vec().expect("encode");
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    stream.write_all(&framed).await.expect("write");
    let mut length = [0u8; 2];
    stream.read_exact(&mut length).await.expect("length");
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(length))];
    stream.read_exact(&mut answer).await.expect("answer");
    Message::from_vec(&answer).expect("decodes")
}

/// Bursts of queries from one client, faster than the worker wakes: the worker takes them
/// several at a time and waits after each such batch (`--udp-batch-wait`, here longer than
/// the default), and every query still gets its one answer, within a few seconds (a wait
/// that stalled the worker fails it; whether the wait happened is timing, which tests do
/// not assert).
#[tokio::test]
async fn bursts_of_udp_queries_are_answered_each_once_across_batch_waits() {
    let running = start_with(1, Some(Duration::from_millis(2))).await;
    let address = running.address;
    let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
    // Thirty bursts of ten, a millisecond apart: batches of several, each followed by a
    // wait while the next bursts come.
    const QUERIES: u16 = 300;
    let sender = Arc::clone(&socket);
    let sending = tokio::spawn(async move {
        for id in 0..QUERIES {
            let mut message = query("www.shop.test.", RecordType::A, None);
            message.metadata.id = id;
            sender
                .send_to(&message.to_vec().expect("encode"), address)
                .await
                .expect("send");
            if id % 10 == 9 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    });
    let mut answered = vec![0u32; usize::from(QUERIES)];
    let mut buffer = vec![0u8; 65_535];
    for _ in 0..QUERIES {
        let received = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buffer))
            .await
            .expect("every query is answered")
            .expect("receive");
        let answer = Message::from_vec(&buffer[..received]).expect("decodes");
        assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
        assert_eq!(answer.answers.len(), 1);
        answered[usize::from(answer.metadata.id)] += 1;
    }
    assert!(answered.iter().all(|&count| count == 1), "{answered:?}");
    sending.await.expect("sent");
    running.stop().await;
}

#[tokio::test]
async fn udp_and_tcp_questions_get_authoritative_answers() {
    let running = start().await;
    // Twice each: the second answer comes from the kept bytes and must be the same.
    for _ in 0..2 {
        for edns in [None, Some(1232)] {
            let answer = ask_udp(
                running.address,
                &query("www.shop.test.", RecordType::A, edns),
            )
            .await;
            assert_eq!(answer.metadata.id, 0x1234);
            assert_eq!(answer.metadata.message_type, MessageType::Response);
            assert!(answer.metadata.authoritative);
            assert!(answer.metadata.recursion_desired, "RD is copied");
            assert!(!answer.metadata.recursion_available);
            assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
            assert_eq!(answer.answers.len(), 1);
            assert_eq!(answer.answers[0].data.to_string(), "127.1.0.1");
            assert_eq!(answer.edns.is_some(), edns.is_some(), "OPT only when asked");
        }
        let nxdomain = ask_udp(
            running.address,
            &query("nope.shop.test.", RecordType::A, None),
        )
        .await;
        assert_eq!(nxdomain.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(nxdomain.authorities.len(), 1, "the SOA");
        let refused = ask_udp(running.address, &query("www.example.", RecordType::A, None)).await;
        assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
        assert!(refused.answers.is_empty());
        let tcp = ask_tcp(
            running.address,
            &query("www.shop.test.", RecordType::AAAA, None),
        )
        .await;
        assert_eq!(tcp.answers[0].data.to_string(), "::1");
    }
    // The question comes back in the client's letter case (DNS 0x20), kept bytes or not.
    for _ in 0..2 {
        let answer = ask_udp(
            running.address,
            &query("WwW.sHoP.tEsT.", RecordType::A, None),
        )
        .await;
        assert_eq!(answer.queries[0].name().to_ascii(), "WwW.sHoP.tEsT.");
        assert_eq!(answer.answers.len(), 1);
    }
    running.stop().await;
}

#[tokio::test]
async fn long_answers_are_truncated_over_udp_and_whole_over_tcp() {
    let running = start().await;
    // 600 bytes of TXT: past 512 without EDNS, within 1232 with it.
    let plain = ask_udp(
        running.address,
        &query("big.shop.test.", RecordType::TXT, None),
    )
    .await;
    assert!(plain.metadata.truncation);
    assert!(plain.answers.is_empty());
    let edns = ask_udp(
        running.address,
        &query("big.shop.test.", RecordType::TXT, Some(4096)),
    )
    .await;
    assert!(!edns.metadata.truncation);
    assert_eq!(edns.answers.len(), 3);
    let tcp = ask_tcp(
        running.address,
        &query("big.shop.test.", RecordType::TXT, None),
    )
    .await;
    assert_eq!(tcp.answers.len(), 3);
    // ANY over UDP never amplifies: truncated, empty; over TCP, answered.
    let any = ask_udp(
        running.address,
        &query("shop.test.", RecordType::ANY, Some(4096)),
    )
    .await;
    assert!(any.metadata.truncation && any.answers.is_empty());
    let any = ask_tcp(running.address, &query("shop.test.", RecordType::ANY, None)).await;
    assert!(any.answers.len() >= 2, "SOA and NS");
    running.stop().await;
}

#[tokio::test]
async fn bad_queries_get_error_codes_and_responses_get_nothing() {
    let running = start().await;
    // Garbage after a header: FORMERR with the id.
    let mut garbage = vec![0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
    garbage.extend_from_slice(&[0x40, 1, 2, 3]);
    let answer =
        Message::from_vec(&udp(running.address, &garbage).await.expect("answer")).expect("decodes");
    assert_eq!(answer.metadata.id, 0xabcd);
    assert_eq!(answer.metadata.response_code, ResponseCode::FormErr);
    // A response is never answered, nor a message too short to have an id.
    let mut response = query("www.shop.test.", RecordType::A, None);
    response.metadata.message_type = MessageType::Response;
    assert!(
        udp(running.address, &response.to_vec().expect("encode"))
            .await
            .is_none()
    );
    assert!(udp(running.address, &[1, 2, 3]).await.is_none());
    // Another opcode: NOTIMP.
    let mut notify = query("shop.test.", RecordType::SOA, None);
    notify.metadata.op_code = OpCode::Notify;
    assert_eq!(
        ask_udp(running.address, &notify)
            .await
            .metadata
            .response_code,
        ResponseCode::NotImp
    );
    // Zone transfers: refused, over UDP and TCP.
    for record_type in [RecordType::AXFR, RecordType::IXFR] {
        let transfer = query("shop.test.", record_type, None);
        assert_eq!(
            ask_tcp(running.address, &transfer)
                .await
                .metadata
                .response_code,
            ResponseCode::Refused
        );
        assert_eq!(
            ask_udp(running.address, &transfer)
                .await
                .metadata
                .response_code,
            ResponseCode::Refused
        );
    }
    // EDNS versions above 0, the highest too, each asked twice: BADVERS.
    for version in [1, 255, 1, 255] {
        let mut versioned = query("www.shop.test.", RecordType::A, Some(1232));
        if let Some(edns) = versioned.edns.as_mut() {
            edns.set_version(version);
        }
        let answer = ask_udp(running.address, &versioned).await;
        // Code 16 (BADVERS; hickory decodes 16 as BADSIG, which shares it).
        assert_eq!(u16::from(answer.metadata.response_code), 16, "{version}");
        assert!(answer.answers.is_empty());
    }
    running.stop().await;
}

#[tokio::test]
async fn a_reload_changes_answers_without_a_restart() {
    let running = start().await;
    let before = ask_udp(
        running.address,
        &query("www.shop.test.", RecordType::A, None),
    )
    .await;
    assert_eq!(before.answers[0].data.to_string(), "127.1.0.1");
    running
        .server
        .store(Arc::new(responder(&ZONE.replace("127.1.0.1", "127.2.0.1"))));
    let after = ask_udp(
        running.address,
        &query("www.shop.test.", RecordType::A, None),
    )
    .await;
    assert_eq!(after.answers[0].data.to_string(), "127.2.0.1");
    running.stop().await;
}

/// A query for www.shop.test A of 4,546 bytes, longer than the server reads over UDP: its
/// OPT record (the root name, type 41, a 1,232-byte payload, no flags) holds one padding
/// option (RFC 7830) of 4,500 bytes.
fn long_query() -> Vec<u8> {
    let mut long = vec![0x55, 0x55, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
    long.extend_from_slice(b"\x03www\x04shop\x04test\x00\x00\x01\x00\x01");
    long.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
    long.extend_from_slice(&(4_504u16).to_be_bytes());
    long.extend_from_slice(&[0, 12]);
    long.extend_from_slice(&(4_500u16).to_be_bytes());
    long.resize(long.len() + 4_500, 0);
    long
}

/// A UDP datagram longer than the server reads (4,096 bytes) is dropped, not read as the
/// message its first 4,096 bytes would make (here, one whose OPT record runs past its end,
/// which would get FORMERR); the server answers the next query.
#[tokio::test]
async fn a_udp_query_longer_than_the_buffer_is_dropped() {
    let running = start().await;
    let long = long_query();
    assert_eq!(long.len(), 4_546);
    assert_eq!(udp(running.address, &long).await, None);
    let answer = ask_udp(
        running.address,
        &query("www.shop.test.", RecordType::A, None),
    )
    .await;
    assert_eq!(answer.answers[0].data.to_string(), "127.1.0.1");
    running.stop().await;
}

/// The same in a batch of queries from other clients: the long datagram drops out, and
/// each other query is answered to its own client with its own id (the worker takes the
/// datagrams that gather while it waits after a batch in one receive).
#[tokio::test]
async fn a_long_datagram_in_a_batch_leaves_the_other_answers_to_their_clients() {
    let running = start_with(1, Some(Duration::from_millis(50))).await;
    let address = running.address;
    let mut clients = Vec::new();
    for _ in 0..6 {
        clients.push(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
    }
    let long = long_query();
    for round in 0..3u16 {
        // Two queries make a batch, after which the worker waits 50 ms; the long datagram
        // and the other clients' queries come meanwhile.
        for (index, client) in clients.iter().enumerate() {
            if index == 2 {
                client.send_to(&long, address).await.expect("send");
            }
            let mut message = query("www.shop.test.", RecordType::A, None);
            message.metadata.id = round * 100 + index as u16;
            client
                .send_to(&message.to_vec().expect("encode"), address)
                .await
                .expect("send");
        }
        for (index, client) in clients.iter().enumerate() {
            let mut buffer = vec![0u8; 65_535];
            let received = tokio::time::timeout(Duration::from_secs(5), client.recv(&mut buffer))
                .await
                .expect("every query is answered")
                .expect("receive");
            let answer = Message::from_vec(&buffer[..received]).expect("decodes");
            assert_eq!(answer.metadata.id, round * 100 + index as u16);
            assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
            assert_eq!(answer.answers[0].data.to_string(), "127.1.0.1");
        }
    }
    running.stop().await;
}

/// Reloads while queries flow, over UDP and over one TCP connection: every query gets an
/// answer, from the zone before or after, and the answers change as the zones do.
#[tokio::test]
async fn reloads_drop_no_query() {
    let running = start().await;
    let zones = [
        Arc::new(responder(ZONE)),
        Arc::new(responder(&ZONE.replace("127.1.0.1", "127.2.0.1"))),
    ];
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reloads = {
        let (server, done) = (Arc::clone(&running.server), Arc::clone(&done));
        tokio::spawn(async move {
            let mut count = 0usize;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                server.store(Arc::clone(&zones[count % 2]));
                count += 1;
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            count
        })
    };
    let question = query("www.shop.test.", RecordType::A, None)
        .to_vec()
        .expect("encode");
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let mut stream = TcpStream::connect(running.address).await.expect("connect");
    let mut seen = std::collections::BTreeMap::new();
    let mut buffer = vec![0u8; 4_096];
    for _ in 0..1_000 {
        socket
            .send_to(&question, running.address)
            .await
            .expect("send");
        let received = tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buffer))
            .await
            .expect("every UDP query is answered")
            .expect("receive");
        let answer = Message::from_vec(&buffer[..received]).expect("decodes");
        *seen
            .entry(("udp", answer.answers[0].data.to_string()))
            .or_insert(0) += 1;
        let mut framed = (question.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&question);
        stream.write_all(&framed).await.expect("write");
        let mut length = [0u8; 2];
        tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut length))
            .await
            .expect("every TCP query is answered")
            .expect("length");
        let mut answer = vec![0u8; usize::from(u16::from_be_bytes(length))];
        stream.read_exact(&mut answer).await.expect("answer");
        let answer = Message::from_vec(&answer).expect("decodes");
        *seen
            .entry(("tcp", answer.answers[0].data.to_string()))
            .or_insert(0) += 1;
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let reloaded = reloads.await.expect("reloads");
    assert!(reloaded > 10, "{reloaded} reloads");
    for transport in ["udp", "tcp"] {
        for address in ["127.1.0.1", "127.2.0.1"] {
            assert!(
                seen.contains_key(&(transport, address.to_owned())),
                "{transport} never answered {address} across {reloaded} reloads: {seen:?}"
            );
        }
    }
    assert_eq!(seen.values().sum::<usize>(), 2_000);
    running.stop().await;
}

/// A TCP connection still open when the server stops is closed, not left to its idle
/// timeout (10 s).
#[tokio::test]
async fn stopping_closes_open_tcp_connections() {
    let running = start().await;
    let mut stream = TcpStream::connect(running.address).await.expect("connect");
    let question = query("www.shop.test.", RecordType::A, None)
        .to_vec()
        .expect("encode");
    let mut framed = (question.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&question);
    stream.write_all(&framed).await.expect("write");
    let mut length = [0u8; 2];
    stream.read_exact(&mut length).await.expect("an answer");
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(length))];
    stream.read_exact(&mut answer).await.expect("the answer");
    running.stop().await;
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest))
        .await
        .expect("the connection closes when the server stops");
    assert!(read.is_ok_and(|bytes| bytes == 0) || rest.is_empty());
}

/// A zone whose `www` A records are latency records for two regions, with health flags.
fn latency_responder(us_healthy: Arc<std::sync::atomic::AtomicBool>) -> Responder {
    use securecart_dns::policy::{Environment, Policy};
    use securecart_dns::zone::{PolicyGroup, PolicyMember};
    let mut zone = Zone::parse(ZONE, "shop.test.zone", None, None).expect("zone");
    let member = |region: &str, address: [u8; 4], health| PolicyMember {
        id: region.to_owned(),
        policy: Policy::Latency {
            region: region.to_owned(),
        },
        data: vec![hickory_proto::rr::RData::A(
            std::net::Ipv4Addr::from(address).into(),
        )],
        health,
        alias: None,
        evaluate_target_health: false,
    };
    zone.add_policy_group(
        &Name::from_ascii("app.shop.test.").expect("name"),
        RecordType::A,
        PolicyGroup {
            ttl: 30,
            members: vec![
                member("us-east-1", [127, 1, 0, 1], Some(us_healthy)),
                member("eu-west-1", [127, 2, 0, 1], None),
            ],
        },
    )
    .expect("policy group");
    // A weighted group, whose choice reads nothing of the client.
    zone.add_policy_group(
        &Name::from_ascii("weighted.shop.test.").expect("name"),
        RecordType::A,
        PolicyGroup {
            ttl: 30,
            members: vec![PolicyMember {
                policy: Policy::Weighted { weight: 1 },
                ..member("only", [127, 3, 0, 1], None)
            }],
        },
    )
    .expect("policy group");
    let environment = Environment {
        regions: vec![
            ("us-east-1".to_owned(), (38.9, -77.0)),
            ("eu-west-1".to_owned(), (53.3, -6.3)),
        ],
        places: vec![
            ("127.1.0.0/16".parse().expect("network"), (38.9, -77.0)),
            ("127.2.0.0/16".parse().expect("network"), (53.3, -6.3)),
        ],
        ..Environment::default()
    };
    Responder::new(
        Catalog::new(vec![zone])
            .expect("catalog")
            .with_environment(environment),
    )
}

async fn ask_from(from: &str, server: SocketAddr, message: &Message) -> Message {
    let socket = UdpSocket::bind(format!("{from}:0")).await.expect("bind");
    socket
        .send_to(&message.to_vec().expect("encode"), server)
        .await
        .expect("send");
    let mut buffer = vec![0u8; 4096];
    let length = tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buffer))
        .await
        .expect("an answer")
        .expect("receive");
    Message::from_vec(&buffer[..length]).expect("decodes")
}

#[tokio::test]
async fn latency_records_answer_each_region_with_its_own_edge_and_follow_health() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let us_healthy = Arc::new(AtomicBool::new(true));
    let server = DnsServer::bind(
        "127.0.0.1:0".parse().expect("address"),
        latency_responder(Arc::clone(&us_healthy)),
    )
    .await
    .expect("binds");
    let address = server.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(1, async move {
        let _ = stopped.await;
    }));
    let app = |edns| query("app.shop.test.", RecordType::A, edns);
    let first_address = |answer: &Message| answer.answers[0].data.to_string();
    // Twice each: a policy's answer is never kept for another client.
    for _ in 0..2 {
        assert_eq!(
            first_address(&ask_from("127.1.9.9", address, &app(None)).await),
            "127.1.0.1"
        );
        assert_eq!(
            first_address(&ask_from("127.2.9.9", address, &app(None)).await),
            "127.2.0.1"
        );
    }
    // EDNS Client Subnet speaks for the client behind the resolver, and the answer's scope
    // says it holds for that network.
    let mut with_subnet = app(Some(1232));
    if let Some(edns) = with_subnet.edns.as_mut() {
        edns.options_mut()
            .insert(hickory_proto::rr::rdata::opt::EdnsOption::Subnet(
                hickory_proto::rr::rdata::opt::ClientSubnet::new([127, 2, 0, 0].into(), 16, 0),
            ));
    }
    let answer = ask_from("127.1.9.9", address, &with_subnet).await;
    assert_eq!(first_address(&answer), "127.2.0.1");
    let scope = answer.edns.as_ref().and_then(|edns| {
        match edns
            .options()
            .get(hickory_proto::rr::rdata::opt::EdnsCode::Subnet)
        {
            Some(hickory_proto::rr::rdata::opt::EdnsOption::Subnet(subnet)) => {
                Some(subnet.scope_prefix())
            }
            _ => None,
        }
    });
    assert_eq!(scope, Some(16));
    // Again, for both networks in turn: the kept answer of each choice carries the asking
    // network back.
    for _ in 0..3 {
        for (network, expected) in [([127, 1, 0, 0], "127.1.0.1"), ([127, 2, 0, 0], "127.2.0.1")] {
            let mut with_subnet = app(Some(1232));
            if let Some(edns) = with_subnet.edns.as_mut() {
                edns.options_mut()
                    .insert(hickory_proto::rr::rdata::opt::EdnsOption::Subnet(
                        hickory_proto::rr::rdata::opt::ClientSubnet::new(network.into(), 16, 0),
                    ));
            }
            let answer = ask_from("127.1.9.9", address, &with_subnet).await;
            assert_eq!(first_address(&answer), expected);
            let echoed = answer.edns.as_ref().and_then(|edns| {
                match edns
                    .options()
                    .get(hickory_proto::rr::rdata::opt::EdnsCode::Subnet)
                {
                    Some(hickory_proto::rr::rdata::opt::EdnsOption::Subnet(subnet)) => {
                        Some((subnet.addr(), subnet.source_prefix(), subnet.scope_prefix()))
                    }
                    _ => None,
                }
            });
            assert_eq!(
                echoed,
                Some((std::net::IpAddr::from(network), 16, 16)),
                "the client subnet comes back"
            );
        }
    }
    // The client subnet's details (RFC 7871): a weighted choice holds for every network
    // (scope 0); a source prefix of 0 leaves the resolver's address to place the client; a
    // scope in the query, or an address with bits past its prefix, is refused (FORMERR).
    let with = |name: &str, subnet: hickory_proto::rr::rdata::opt::ClientSubnet| {
        let mut query = query(name, RecordType::A, Some(1232));
        if let Some(edns) = query.edns.as_mut() {
            edns.options_mut()
                .insert(hickory_proto::rr::rdata::opt::EdnsOption::Subnet(subnet));
        }
        query
    };
    let subnet = |network: [u8; 4], source: u8, scope: u8| {
        hickory_proto::rr::rdata::opt::ClientSubnet::new(network.into(), source, scope)
    };
    let echoed_scope = |answer: &Message| {
        answer.edns.as_ref().and_then(|edns| {
            match edns
                .options()
                .get(hickory_proto::rr::rdata::opt::EdnsCode::Subnet)
            {
                Some(hickory_proto::rr::rdata::opt::EdnsOption::Subnet(subnet)) => {
                    Some(subnet.scope_prefix())
                }
                _ => None,
            }
        })
    };
    for _ in 0..2 {
        let weighted = ask_from(
            "127.1.9.9",
            address,
            &with("weighted.shop.test.", subnet([127, 2, 0, 0], 16, 0)),
        )
        .await;
        assert_eq!(first_address(&weighted), "127.3.0.1");
        assert_eq!(echoed_scope(&weighted), Some(0));
        let unplaced = ask_from(
            "127.2.9.9",
            address,
            &with("app.shop.test.", subnet([0, 0, 0, 0], 0, 0)),
        )
        .await;
        assert_eq!(
            first_address(&unplaced),
            "127.2.0.1",
            "the resolver's region"
        );
        assert_eq!(echoed_scope(&unplaced), Some(0));
    }
    for bad in [
        subnet([127, 2, 0, 0], 16, 8),
        subnet([127, 47, 0, 0], 12, 0),
    ] {
        let refused = ask_from("127.1.9.9", address, &with("app.shop.test.", bad)).await;
        assert_eq!(
            refused.metadata.response_code,
            ResponseCode::FormErr,
            "{bad:?}"
        );
    }
    // A question of another class is refused, the client subnet echoed; the refusal, kept,
    // answers the next such query whole, with that query's network.
    for network in [[127, 1, 0, 0], [127, 2, 0, 0], [127, 1, 0, 0]] {
        let mut chaos = app(Some(1232));
        chaos.queries[0].set_query_class(hickory_proto::rr::DNSClass::CH);
        if let Some(edns) = chaos.edns.as_mut() {
            edns.options_mut()
                .insert(hickory_proto::rr::rdata::opt::EdnsOption::Subnet(
                    hickory_proto::rr::rdata::opt::ClientSubnet::new(network.into(), 16, 0),
                ));
        }
        let answer = ask_from("127.1.9.9", address, &chaos).await;
        assert_eq!(answer.metadata.response_code, ResponseCode::Refused);
        let echoed = answer.edns.as_ref().and_then(|edns| {
            match edns
                .options()
                .get(hickory_proto::rr::rdata::opt::EdnsCode::Subnet)
            {
                Some(hickory_proto::rr::rdata::opt::EdnsOption::Subnet(subnet)) => {
                    Some((subnet.addr(), subnet.scope_prefix()))
                }
                _ => None,
            }
        });
        assert_eq!(echoed, Some((std::net::IpAddr::from(network), 0)));
    }
    // us-east-1's edge fails its health check: its clients go to eu-west-1.
    us_healthy.store(false, Ordering::Relaxed);
    assert_eq!(
        first_address(&ask_from("127.1.9.9", address, &app(None)).await),
        "127.2.0.1"
    );
    stop.send(()).expect("stop");
    task.await.expect("server stops").expect("served");
}
