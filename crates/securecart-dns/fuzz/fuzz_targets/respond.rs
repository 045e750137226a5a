//! The request handler on arbitrary bytes: `Responder::respond` must answer or drop every
//! message, over UDP and TCP, without panicking, and an answer must be a DNS message with
//! the query's id that fits the transport (1,232 bytes over UDP at most). The zone has
//! plain records and policy groups (weighted, latency, multivalue), whose answers depend on
//! the client and on EDNS Client Subnet.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use securecart_dns::{Catalog, Responder, Transport, Zone};

/// A zone with every kind of record the server answers with: delegation, wildcard, CNAME
/// chains in and out of the zone, and the policy-free records.
const ZONE: &str = r#"$ORIGIN shop.test.
$TTL 300
@         IN SOA   ns1 hostmaster 1 7200 3600 1209600 60
@         IN NS    ns1
@         IN MX    10 mail
@         IN TXT   "v=spf1 mx -all"
@         IN CAA   0 issue "letsencrypt.org"
ns1       IN A     127.0.0.53
mail      IN A     127.0.0.25
www       IN A     127.1.0.1
www       IN AAAA  ::1
shop      IN CNAME www
away      IN CNAME www.example.
loop1     IN CNAME loop2
loop2     IN CNAME loop1
gone      IN CNAME nowhere
_https._tcp IN SRV 10 5 443 www
*.img     IN A     127.1.0.9
sub       IN NS    ns.sub
ns.sub    IN A     127.9.0.1
"#;

fn responder() -> &'static Responder {
    static RESPONDER: OnceLock<Responder> = OnceLock::new();
    RESPONDER.get_or_init(|| {
        use securecart_dns::policy::{Environment, Policy};
        use securecart_dns::zone::{PolicyGroup, PolicyMember};
        let mut zone = Zone::parse(ZONE, "shop.test.zone", None, None).expect("the zone parses");
        let member = |id: &str, policy: Policy, last: u8| PolicyMember {
            id: id.to_owned(),
            policy,
            data: vec![hickory_proto::rr::RData::A(
                std::net::Ipv4Addr::new(127, 3, 0, last).into(),
            )],
            health: None,
            alias: None,
            evaluate_target_health: false,
        };
        let region = |name: &str| Policy::Latency {
            region: name.to_owned(),
        };
        for (name, members) in [
            (
                "app.shop.test.",
                vec![member("us", region("us"), 1), member("eu", region("eu"), 2)],
            ),
            (
                "weighted.shop.test.",
                vec![
                    member("a", Policy::Weighted { weight: 1 }, 3),
                    member("b", Policy::Weighted { weight: 0 }, 4),
                ],
            ),
            (
                "many.shop.test.",
                (0..10)
                    .map(|index| member(&index.to_string(), Policy::Multivalue, 10 + index))
                    .collect(),
            ),
        ] {
            zone.add_policy_group(
                &hickory_proto::rr::Name::from_ascii(name).expect("name"),
                hickory_proto::rr::RecordType::A,
                PolicyGroup { ttl: 30, members },
            )
            .expect("policy group");
        }
        let environment = Environment {
            regions: vec![("us".to_owned(), (38.9, -77.0)), ("eu".to_owned(), (53.3, -6.3))],
            ..Environment::default()
        };
        Responder::new(
            Catalog::new(vec![zone])
                .expect("the catalog builds")
                .with_environment(environment),
        )
    })
}

fuzz_target!(|query: &[u8]| {
    let client = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    for (transport, limit) in [(Transport::Udp, 1_232), (Transport::Tcp, 65_535)] {
        if let Some(answer) = responder().respond(query, transport, client) {
            assert!(
                answer.len() >= 12 && answer.len() <= limit,
                "an answer is a message"
            );
            assert_eq!(answer[..2], query[..2], "an answer carries the query's id");
            assert!(answer[2] & 0x80 != 0, "an answer is a response");
        }
    }
});
