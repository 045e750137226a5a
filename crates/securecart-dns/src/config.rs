//! A zone described in plain values (what the topology says), turned into a served zone:
//! the SOA and NS records made for it, static record sets, routing-policy groups, and the
//! health checks their records follow, started on the runtime.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use hickory_proto::rr::rdata::{CNAME, NS, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::sync::watch;

use crate::answer::Catalog;
use crate::health::HealthCheck;
use crate::policy::{Environment, Policy};
use crate::wire::Responder;
use crate::zone::{PolicyGroup, PolicyMember, Zone};

/// A zone in plain values.
#[derive(Debug, Clone)]
pub struct ZoneConfig {
    /// The zone's name.
    pub origin: String,
    /// Its name servers: (name inside the zone, address).
    pub name_servers: Vec<(String, IpAddr)>,
    /// The TTL of the SOA and NS records.
    pub ttl: u32,
    /// Its record sets.
    pub records: Vec<RecordConfig>,
    /// The health checks records follow; calculated ones name their children.
    pub health_checks: Vec<HealthCheck<String>>,
    /// What the routing policies know of the world.
    pub environment: Environment,
}

/// One record set.
#[derive(Debug, Clone)]
pub struct RecordConfig {
    /// Its owner, fully qualified.
    pub name: String,
    /// `A`, `AAAA`, `CNAME`, `TXT`, `MX`, `SRV` or `CAA`.
    pub record_type: String,
    /// Its TTL.
    pub ttl: u32,
    /// Its set identifier.
    pub set_identifier: String,
    /// Its routing policy; none for a simple record set.
    pub policy: Option<Policy>,
    /// Its values as text.
    pub values: Vec<String>,
    /// The health check it follows.
    pub health_check: Option<String>,
    /// Another record set of the zone whose answer stands for its values.
    pub alias: Option<String>,
    /// With `alias`: healthy only while the target has a healthy record.
    pub evaluate_target_health: bool,
}

/// A built zone: the responder, and each health check's flag by name.
#[derive(Debug)]
pub struct Built {
    /// Answers from the zone.
    pub responder: Responder,
    /// The health checks' states.
    pub checks: Vec<(String, Arc<AtomicBool>)>,
}

/// Builds the zone and starts its health checks, which stop when `stop` turns true.
pub fn build(config: &ZoneConfig, stop: &watch::Receiver<bool>) -> Result<Built, String> {
    rebuild(config, stop, &[])
}

/// [`build`], for a reload: a health check named as one of `previous` (the zone in force's
/// [`Built::checks`]) starts in that check's state rather than healthy, so that a region
/// whose edge is down does not come back into answers with each reload.
pub fn rebuild(
    config: &ZoneConfig,
    stop: &watch::Receiver<bool>,
    previous: &[(String, Arc<AtomicBool>)],
) -> Result<Built, String> {
    assemble(config, Some(stop), previous)
}

/// Whether the zone builds, as [`build`] would build it, without starting its health
/// checks (`securecart check`): its records, its routing groups and their aliases, and
/// the health checks they name.
pub fn check(config: &ZoneConfig) -> Result<(), String> {
    assemble(config, None, &[]).map(|_| ())
}

/// [`rebuild`], starting the health checks only given `stop`.
fn assemble(
    config: &ZoneConfig,
    stop: Option<&watch::Receiver<bool>>,
    previous: &[(String, Arc<AtomicBool>)],
) -> Result<Built, String> {
    let origin = Name::from_ascii(&config.origin)
        .map_err(|error| format!("`{}` is not a zone name: {error}", config.origin))?;
    let name = |text: &str| {
        Name::from_ascii(text).map_err(|error| format!("`{text}` is not a name: {error}"))
    };
    let inside = |label: &str| name(&format!("{label}.{}", config.origin));

    // The health checks: every flag first, so that calculated checks find their children.
    let was = |name: &str| {
        previous
            .iter()
            .find(|(previous, _)| previous == name)
            .map(|(_, state)| state.load(Ordering::Relaxed))
    };
    let flags: HashMap<&str, Arc<AtomicBool>> = config
        .health_checks
        .iter()
        .map(|check| {
            let state = was(&check.name).unwrap_or(true);
            (check.name.as_str(), Arc::new(AtomicBool::new(state)))
        })
        .collect();
    for check in &config.health_checks {
        let state = Arc::clone(&flags[check.name.as_str()]);
        let check = check.clone().with_children(|child| {
            flags
                .get(child.as_str())
                .cloned()
                .ok_or_else(|| format!("health check `{child}` does not exist"))
        })?;
        if let Some(stop) = stop {
            check.resume(state, stop.clone());
        }
    }

    // SOA and NS records for the zone, with the name servers' addresses.
    let first_server = config
        .name_servers
        .first()
        .map(|(server, _)| inside(server))
        .transpose()?
        .unwrap_or_else(|| origin.clone());
    let mut records = vec![Record::from_rdata(
        origin.clone(),
        config.ttl,
        RData::SOA(SOA::new(
            first_server,
            inside("hostmaster")?,
            1,
            3600,
            600,
            86_400,
            config.ttl,
        )),
    )];
    for (server, address) in &config.name_servers {
        let server = inside(server)?;
        records.push(Record::from_rdata(
            origin.clone(),
            config.ttl,
            RData::NS(NS(server.clone())),
        ));
        records.push(Record::from_rdata(
            server,
            config.ttl,
            address_data(*address),
        ));
    }
    let mut groups: Vec<(Name, RecordType, PolicyGroup)> = Vec::new();
    for record in &config.records {
        let owner = name(&record.name)?;
        let record_type = match record.record_type.as_str() {
            "A" => RecordType::A,
            "AAAA" => RecordType::AAAA,
            "CNAME" => RecordType::CNAME,
            "TXT" => RecordType::TXT,
            "MX" => RecordType::MX,
            "SRV" => RecordType::SRV,
            "CAA" => RecordType::CAA,
            other => return Err(format!("{} {other}: not a record type served", record.name)),
        };
        let data = record
            .values
            .iter()
            .map(|value| value_data(record_type, value))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| format!("{} {}: {error}", record.name, record.record_type))?;
        match (&record.policy, &record.alias) {
            (None, None) => records.extend(
                data.into_iter()
                    .map(|data| Record::from_rdata(owner.clone(), record.ttl, data)),
            ),
            // A simple alias is a group of one, answered from its target at each query.
            (policy, _) => {
                let member = PolicyMember {
                    id: record.set_identifier.clone(),
                    policy: policy.clone().unwrap_or(Policy::Simple),
                    data,
                    alias: record.alias.as_deref().map(name).transpose()?,
                    evaluate_target_health: record.evaluate_target_health,
                    health: match &record.health_check {
                        Some(check) => Some(
                            flags
                                .get(check.as_str())
                                .cloned()
                                .ok_or_else(|| format!("health check `{check}` does not exist"))?,
                        ),
                        None => None,
                    },
                };
                match groups
                    .iter_mut()
                    .find(|(name, kind, _)| *name == owner && *kind == record_type)
                {
                    Some((_, _, group)) => group.members.push(member),
                    None => groups.push((
                        owner.clone(),
                        record_type,
                        PolicyGroup {
                            ttl: record.ttl,
                            members: vec![member],
                        },
                    )),
                }
            }
        }
    }
    let mut zone = Zone::from_records(origin, records)?;
    for (owner, record_type, group) in groups {
        zone.add_policy_group(&owner, record_type, group)?;
    }
    zone.check_aliases()?;
    let catalog = Catalog::new(vec![zone])?.with_environment(config.environment.clone());
    Ok(Built {
        responder: Responder::new(catalog),
        checks: config
            .health_checks
            .iter()
            .map(|check| (check.name.clone(), Arc::clone(&flags[check.name.as_str()])))
            .collect(),
    })
}

fn address_data(address: IpAddr) -> RData {
    match address {
        IpAddr::V4(address) => RData::A(address.into()),
        IpAddr::V6(address) => RData::AAAA(address.into()),
    }
}

fn value_data(record_type: RecordType, value: &str) -> Result<RData, String> {
    match record_type {
        RecordType::A => value
            .parse::<std::net::Ipv4Addr>()
            .map(|address| RData::A(address.into()))
            .map_err(|_| format!("`{value}` is not an IPv4 address")),
        RecordType::AAAA => value
            .parse::<std::net::Ipv6Addr>()
            .map(|address| RData::AAAA(address.into()))
            .map_err(|_| format!("`{value}` is not an IPv6 address")),
        RecordType::CNAME => Name::from_ascii(value)
            .map(|name| RData::CNAME(CNAME(name)))
            .map_err(|error| format!("`{value}` is not a name: {error}")),
        RecordType::TXT => Ok(RData::TXT(TXT::new(vec![value.to_owned()]))),
        // As a zone file writes them: `10 mail.example.com.`, `0 5 5060 sip.example.com.`,
        // `0 issue "letsencrypt.org"` (hickory-proto's zone file reader).
        RecordType::MX | RecordType::SRV | RecordType::CAA => {
            RData::try_from_str(record_type, value)
                .map_err(|error| format!("`{value}` is not {record_type} data: {error}"))
        }
        other => Err(format!("{other} values are not served")),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use hickory_proto::rr::{LowerName, Name, RecordType};

    use super::{RecordConfig, ZoneConfig, build};
    use crate::health::{HealthCheck, Probe};
    use crate::policy::{Environment, Policy};

    fn record(name: &str, policy: Option<Policy>, values: &[&str]) -> RecordConfig {
        RecordConfig {
            name: name.to_owned(),
            record_type: "A".to_owned(),
            ttl: 60,
            set_identifier: String::new(),
            policy,
            values: values.iter().map(|value| (*value).to_owned()).collect(),
            health_check: None,
            alias: None,
            evaluate_target_health: false,
        }
    }

    #[tokio::test]
    async fn aliases_answer_with_their_targets_records_and_health() {
        let latency = |region: &str, address: &str, check: &str| RecordConfig {
            set_identifier: region.to_owned(),
            health_check: Some(check.to_owned()),
            ..record(
                "www.shop.test.",
                Some(Policy::Latency {
                    region: region.to_owned(),
                }),
                &[address],
            )
        };
        let disabled = |name: &str| HealthCheck {
            name: name.to_owned(),
            probe: Probe::Tcp {
                address: "127.0.0.1:1".parse().expect("address"),
            },
            interval: Duration::from_secs(60),
            failure_threshold: 1,
            inverted: false,
            disabled: true,
        };
        let config = ZoneConfig {
            origin: "shop.test.".to_owned(),
            name_servers: vec![("ns1".to_owned(), "127.0.0.53".parse().expect("address"))],
            ttl: 300,
            records: vec![
                latency("us", "127.1.0.1", "us"),
                latency("eu", "127.2.0.1", "eu"),
                // The apex is an alias of www, as Route 53 allows where a CNAME cannot be.
                RecordConfig {
                    alias: Some("www.shop.test.".to_owned()),
                    ..record("shop.test.", None, &[])
                },
                // Failover: the primary aliases www and evaluates its health.
                RecordConfig {
                    set_identifier: "primary".to_owned(),
                    alias: Some("www.shop.test.".to_owned()),
                    evaluate_target_health: true,
                    ..record(
                        "pay.shop.test.",
                        Some(Policy::Failover { primary: true }),
                        &[],
                    )
                },
                RecordConfig {
                    set_identifier: "secondary".to_owned(),
                    ..record(
                        "pay.shop.test.",
                        Some(Policy::Failover { primary: false }),
                        &["127.9.0.1"],
                    )
                },
                // A weighted CNAME group (weight 0 takes nothing while the other is
                // healthy): it answers an A question as a CNAME does.
                RecordConfig {
                    record_type: "CNAME".to_owned(),
                    set_identifier: "to-www".to_owned(),
                    ..record(
                        "cdn.shop.test.",
                        Some(Policy::Weighted { weight: 1 }),
                        &["www.shop.test."],
                    )
                },
                RecordConfig {
                    record_type: "CNAME".to_owned(),
                    set_identifier: "to-pay".to_owned(),
                    ..record(
                        "cdn.shop.test.",
                        Some(Policy::Weighted { weight: 0 }),
                        &["pay.shop.test."],
                    )
                },
            ],
            health_checks: vec![disabled("us"), disabled("eu")],
            environment: Environment {
                regions: vec![
                    ("us".to_owned(), (38.9, -77.0)),
                    ("eu".to_owned(), (53.3, -6.3)),
                ],
                places: vec![
                    ("127.1.0.0/16".parse().expect("network"), (38.9, -77.0)),
                    ("127.2.0.0/16".parse().expect("network"), (53.3, -6.3)),
                ],
                ..Environment::default()
            },
        };
        let (_stop, stopped) = tokio::sync::watch::channel(false);
        let built = build(&config, &stopped).expect("zone builds");
        let catalog = built.responder.catalog();
        let ask = |name: &str, from: &str| {
            let answer = catalog.answer(
                &LowerName::new(&Name::from_ascii(name).expect("name")),
                RecordType::A,
                &catalog.environment().locate(from.parse().expect("address")),
                0,
            );
            answer
                .answers
                .iter()
                .map(|record| format!("{} {}", record.name, record.data))
                .collect::<Vec<_>>()
        };
        assert_eq!(ask("shop.test.", "127.1.9.9"), ["shop.test. 127.1.0.1"]);
        assert_eq!(ask("shop.test.", "127.2.9.9"), ["shop.test. 127.2.0.1"]);
        // ANY (asked over TCP) holds what the routing group answers this client too.
        let any = catalog.answer(
            &LowerName::new(&Name::from_ascii("www.shop.test.").expect("name")),
            RecordType::ANY,
            &catalog
                .environment()
                .locate("127.2.9.9".parse().expect("address")),
            0,
        );
        assert_eq!(
            any.answers
                .iter()
                .map(|record| record.data.to_string())
                .collect::<Vec<_>>(),
            ["127.2.0.1"]
        );
        assert!(any.dynamic && any.by_client);
        assert_eq!(
            ask("pay.shop.test.", "127.2.9.9"),
            ["pay.shop.test. 127.2.0.1"]
        );
        assert_eq!(
            ask("cdn.shop.test.", "127.1.9.9"),
            ["cdn.shop.test. www.shop.test.", "www.shop.test. 127.1.0.1"]
        );
        // Every www record unhealthy: the alias evaluating its target fails over.
        for (name, flag) in &built.checks {
            assert!(name == "us" || name == "eu");
            flag.store(false, Ordering::Relaxed);
        }
        assert_eq!(
            ask("pay.shop.test.", "127.2.9.9"),
            ["pay.shop.test. 127.9.0.1"]
        );
        // The apex alias evaluates nothing: www answers as if all were healthy.
        assert_eq!(ask("shop.test.", "127.2.9.9"), ["shop.test. 127.2.0.1"]);
    }

    #[tokio::test]
    async fn mail_service_and_certificate_authority_records_are_served() {
        let typed = |name: &str, record_type: &str, values: &[&str]| RecordConfig {
            record_type: record_type.to_owned(),
            ..record(name, None, values)
        };
        let config = ZoneConfig {
            origin: "shop.test.".to_owned(),
            name_servers: vec![("ns1".to_owned(), "127.0.0.53".parse().expect("address"))],
            ttl: 300,
            records: vec![
                typed(
                    "shop.test.",
                    "MX",
                    &["10 mail.shop.test.", "20 backup-mx.example.net."],
                ),
                typed("_sip._tcp.shop.test.", "SRV", &["0 5 5060 sip.shop.test."]),
                typed(
                    "shop.test.",
                    "CAA",
                    &[
                        "0 issue \"letsencrypt.org\"",
                        "128 iodef \"mailto:security@shop.test\"",
                    ],
                ),
            ],
            health_checks: Vec::new(),
            environment: Environment::default(),
        };
        let (_stop, stopped) = tokio::sync::watch::channel(false);
        let built = build(&config, &stopped).expect("zone builds");
        let catalog = built.responder.catalog();
        let ask = |name: &str, record_type: RecordType| {
            let mut answers: Vec<String> = catalog
                .answer(
                    &LowerName::new(&Name::from_ascii(name).expect("name")),
                    record_type,
                    &catalog
                        .environment()
                        .locate("127.0.0.1".parse().expect("address")),
                    0,
                )
                .answers
                .iter()
                .map(|record| record.data.to_string())
                .collect();
            answers.sort();
            answers
        };
        assert_eq!(
            ask("shop.test.", RecordType::MX),
            ["10 mail.shop.test.", "20 backup-mx.example.net."]
        );
        assert_eq!(
            ask("_sip._tcp.shop.test.", RecordType::SRV),
            ["0 5 5060 sip.shop.test."]
        );
        let caa = ask("shop.test.", RecordType::CAA);
        assert_eq!(caa.len(), 2, "{caa:?}");
        assert!(
            caa.iter().any(|data| data.contains("letsencrypt.org")),
            "{caa:?}"
        );
        assert!(
            caa.iter()
                .any(|data| data.contains("mailto:security@shop.test")),
            "{caa:?}"
        );
        // Data that is not of its type is refused, with the record named.
        let bad = ZoneConfig {
            records: vec![typed("shop.test.", "MX", &["mail.shop.test."])],
            ..config
        };
        let Err(error) = build(&bad, &stopped) else {
            panic!("an MX record without a preference was served");
        };
        assert!(error.contains("shop.test. MX"), "{error}");
    }

    #[tokio::test]
    async fn a_reload_keeps_the_health_checks_states() {
        let check = |name: &str| HealthCheck {
            name: name.to_owned(),
            // Nothing listens there: every probe fails, after the threshold.
            probe: Probe::Tcp {
                address: "127.0.0.1:1".parse().expect("address"),
            },
            interval: Duration::from_secs(60),
            failure_threshold: 3,
            inverted: false,
            disabled: false,
        };
        let config = ZoneConfig {
            origin: "shop.test.".to_owned(),
            name_servers: vec![("ns1".to_owned(), "127.0.0.53".parse().expect("address"))],
            ttl: 300,
            records: vec![record("www.shop.test.", None, &["127.1.0.1"])],
            health_checks: vec![check("us"), check("eu")],
            environment: Environment::default(),
        };
        let (_stop, stopped) = tokio::sync::watch::channel(false);
        let state = |built: &super::Built, name: &str| {
            built
                .checks
                .iter()
                .find(|(check, _)| check == name)
                .map(|(_, flag)| flag.load(Ordering::Relaxed))
        };
        let first = build(&config, &stopped).expect("zone builds");
        assert_eq!(
            state(&first, "us"),
            Some(true),
            "a new check starts healthy"
        );
        // us failed its checks; the zone is reloaded: us stays unhealthy, eu healthy.
        first.checks[0].1.store(false, Ordering::Relaxed);
        let reloaded = super::rebuild(&config, &stopped, &first.checks).expect("zone builds");
        assert_eq!(state(&reloaded, "us"), Some(false));
        assert_eq!(state(&reloaded, "eu"), Some(true));
    }

    #[tokio::test]
    async fn a_multivalue_answer_holds_at_most_eight_values() {
        let member = |id: &str, third: u8| RecordConfig {
            set_identifier: id.to_owned(),
            ..record(
                "many.shop.test.",
                Some(Policy::Multivalue),
                &[
                    &format!("127.9.{third}.1"),
                    &format!("127.9.{third}.2"),
                    &format!("127.9.{third}.3"),
                    &format!("127.9.{third}.4"),
                ],
            )
        };
        let config = ZoneConfig {
            origin: "shop.test.".to_owned(),
            name_servers: vec![("ns1".to_owned(), "127.0.0.53".parse().expect("address"))],
            ttl: 300,
            records: vec![member("a", 1), member("b", 2), member("c", 3)],
            health_checks: Vec::new(),
            environment: Environment::default(),
        };
        let (_stop, stopped) = tokio::sync::watch::channel(false);
        let built = build(&config, &stopped).expect("zone builds");
        let catalog = built.responder.catalog();
        for seed in 0..4 {
            let answer = catalog.answer(
                &LowerName::new(&Name::from_ascii("many.shop.test.").expect("name")),
                RecordType::A,
                &catalog
                    .environment()
                    .locate("127.1.9.9".parse().expect("address")),
                seed,
            );
            assert_eq!(answer.answers.len(), 8, "{seed}");
        }
    }
}
