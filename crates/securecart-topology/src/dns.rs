//! The shop's DNS zone in the model: records with Route 53's routing policies and health
//! checks, resolved against the regions (an `edge` names a region's edge), with every
//! problem reported at its field.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

use crate::locate::FieldPath;
use crate::model::{Findings, Region};
use crate::raw::{RawDns, RawDnsHealthCheck, RawDnsRecord};

/// The shop's DNS zone.
#[derive(Debug, Clone)]
pub struct Dns {
    /// The zone's name, fully qualified (ending in a dot).
    pub zone: String,
    /// The port of each region's DNS server.
    pub port: u16,
    /// Health checks, by name.
    pub health_checks: Vec<DnsHealthCheck>,
    /// The CIDR collection: location names and their networks.
    pub cidr_locations: Vec<(String, Vec<IpNet>)>,
    /// Measured latencies: (region, clients' network, milliseconds).
    pub latencies: Vec<(String, IpNet, f64)>,
    /// Record sets.
    pub records: Vec<DnsRecord>,
    /// A MaxMind city database, as written (relative to the topology file's directory).
    pub geoip_database: Option<String>,
}

/// A health check.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsHealthCheck {
    /// Its name.
    pub name: String,
    /// What it checks.
    pub kind: DnsCheckKind,
    /// How often.
    pub interval: Duration,
    /// Results in a row that change its state.
    pub failure_threshold: u32,
    /// Reports the opposite.
    pub inverted: bool,
    /// Always healthy.
    pub disabled: bool,
}

/// What a health check checks.
#[derive(Debug, Clone, PartialEq)]
pub enum DnsCheckKind {
    /// An HTTP GET, or an HTTPS one.
    Http {
        /// Where.
        address: SocketAddr,
        /// Whether over TLS.
        tls: bool,
        /// The host name sent, if not the address.
        host: Option<String>,
        /// The path.
        path: String,
        /// A string the body's first 5,120 bytes must hold.
        search: Option<String>,
    },
    /// A TCP connection.
    Tcp {
        /// Where.
        address: SocketAddr,
    },
    /// Healthy while every target group of the edge whose admin endpoint is at `address`
    /// meets its DNS failover minimum, as its `/targets` marks each.
    EdgeTargets {
        /// The edge's admin address.
        address: SocketAddr,
    },
    /// Healthy while `threshold` of `children` are.
    Calculated {
        /// The children's names.
        children: Vec<String>,
        /// How many must be healthy.
        threshold: usize,
    },
}

/// One record set.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsRecord {
    /// Its owner name, fully qualified.
    pub name: String,
    /// `A`, `AAAA`, `CNAME`, `TXT`, `MX`, `SRV` or `CAA`.
    pub record_type: String,
    /// Its TTL.
    pub ttl: u32,
    /// Its set identifier (empty for simple records).
    pub set_identifier: String,
    /// How it is chosen.
    pub routing: DnsRouting,
    /// Its values as zone-file text.
    pub values: Vec<String>,
    /// The health check it follows.
    pub health_check: Option<String>,
    /// Another record set of the zone whose answer stands for its values, fully qualified.
    pub alias: Option<String>,
    /// With `alias`: healthy only while the target has a healthy record.
    pub evaluate_target_health: bool,
}

/// A record set's routing policy.
#[derive(Debug, Clone, PartialEq)]
pub enum DnsRouting {
    /// The only record set of its name and type.
    Simple,
    /// By weight.
    Weighted(u8),
    /// The region with the least latency.
    Latency(String),
    /// The primary (true) or the secondary.
    Failover(bool),
    /// A location: none of the three for the default.
    Geolocation {
        /// A continent code.
        continent: Option<String>,
        /// A country code.
        country: Option<String>,
        /// A subdivision code.
        subdivision: Option<String>,
    },
    /// A place and a bias.
    Geoproximity {
        /// Degrees north and east.
        place: (f64, f64),
        /// -99 to 99.
        bias: i8,
    },
    /// Up to eight healthy records.
    Multivalue,
    /// A location of the CIDR collection, or `*`.
    IpBased(String),
}

impl DnsRouting {
    fn kind(&self) -> &'static str {
        match self {
            DnsRouting::Simple => "simple",
            DnsRouting::Weighted(_) => "weighted",
            DnsRouting::Latency(_) => "latency",
            DnsRouting::Failover(_) => "failover",
            DnsRouting::Geolocation { .. } => "geolocation",
            DnsRouting::Geoproximity { .. } => "geoproximity",
            DnsRouting::Multivalue => "multivalue",
            DnsRouting::IpBased(_) => "ip_based",
        }
    }
}

const CONTINENTS: [&str; 7] = ["AF", "AN", "AS", "EU", "NA", "OC", "SA"];

fn is_dns_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && label.bytes().all(|byte| {
            byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' || byte == b'*'
        })
}

/// A name written as a sequence of labels, fully qualified.
fn is_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty() && name.len() <= 253 && name.split('.').all(is_dns_label)
}

/// Whether `value` is the data of an MX, SRV or CAA record as RFC 1035's zone files (and
/// RFC 8659's, for CAA) write it; if not, the form it should have.
fn record_data(record_type: &str, value: &str) -> Result<(), &'static str> {
    let fields: Vec<&str> = value.split_ascii_whitespace().collect();
    let number = |field: &str| field.parse::<u16>().is_ok();
    let target = |field: &str| field == "." || is_dns_name(field);
    match (record_type, fields.as_slice()) {
        ("MX", [preference, exchange]) if number(preference) && target(exchange) => Ok(()),
        ("MX", _) => Err("a preference and a mail server's name: `10 mail.example.com.`"),
        ("SRV", [priority, weight, port, host])
            if number(priority) && number(weight) && number(port) && target(host) =>
        {
            Ok(())
        }
        ("SRV", _) => Err("a priority, a weight, a port and a host: `0 5 5060 sip.example.com.`"),
        ("CAA", [flags, tag, _, ..])
            if flags.parse::<u8>().is_ok()
                && tag.bytes().all(|byte| byte.is_ascii_alphanumeric()) =>
        {
            // The value is one word, or quoted whole (spaces may be inside the quotes).
            let rest = value.trim_start()[flags.len()..].trim_start()[tag.len()..].trim();
            let quoted = rest.len() >= 2 && rest.starts_with('"') && rest.ends_with('"');
            if quoted || !rest.contains(|byte: char| byte.is_ascii_whitespace()) {
                Ok(())
            } else {
                Err("flags, a tag and a value: `0 issue \"letsencrypt.org\"`")
            }
        }
        ("CAA", _) => Err("flags, a tag and a value: `0 issue \"letsencrypt.org\"`"),
        _ => Ok(()),
    }
}

/// Resolves the `[dns]` section.
pub(crate) fn resolve_dns(
    raw: &RawDns,
    regions: &[Region],
    admin_port: u16,
    findings: &mut Findings,
) -> Option<Dns> {
    let path = FieldPath::default().key("dns");
    let before = findings.problems.len();
    let zone = format!("{}.", raw.zone.trim_end_matches('.').to_ascii_lowercase());
    if !is_dns_name(&raw.zone) {
        findings.problem(
            path.key("zone"),
            format!(
                "`{}` is not a domain name such as `securecart.test`",
                raw.zone
            ),
        );
    }
    if raw.port == 0 {
        findings.problem(path.key("port"), "must be a port from 1 to 65535");
    }
    if raw.port == admin_port {
        findings.problem(
            path.key("port"),
            "must not be the same as telemetry.admin_port",
        );
    }

    let mut cidr_locations = Vec::new();
    for (index, location) in raw.cidr_locations.iter().enumerate() {
        let location_path = path.key("cidr_locations").index(index);
        let mut networks = Vec::new();
        for (cidr_index, cidr) in location.cidrs.iter().enumerate() {
            match cidr.parse::<IpNet>() {
                Ok(network) => networks.push(network),
                Err(_) => findings.problem(
                    location_path.key("cidrs").index(cidr_index),
                    format!("`{cidr}` is not a network such as `10.0.0.0/8`"),
                ),
            }
        }
        if location.name.is_empty() || location.name == "*" {
            findings.problem(
                location_path.key("name"),
                "must be a name (`*` is the default)",
            );
        }
        cidr_locations.push((location.name.clone(), networks));
    }

    let mut latencies = Vec::new();
    for (index, latency) in raw.latencies.iter().enumerate() {
        let latency_path = path.key("latencies").index(index);
        if region_named(regions, &latency.region).is_none() {
            findings.problem(
                latency_path.key("region"),
                format!("`{}` is not a region of the topology", latency.region),
            );
        }
        if !(0.0..=60_000.0).contains(&latency.milliseconds) {
            findings.problem(latency_path.key("milliseconds"), "must be from 0 to 60000");
        }
        match latency.network.parse::<IpNet>() {
            Ok(network) => latencies.push((
                latency.region.clone(),
                network.trunc(),
                latency.milliseconds,
            )),
            Err(_) => findings.problem(
                latency_path.key("network"),
                format!(
                    "`{}` is not a network such as `203.0.113.0/24`",
                    latency.network
                ),
            ),
        }
    }

    let mut check_names = HashSet::new();
    let mut health_checks = Vec::new();
    for (index, raw_check) in raw.health_checks.iter().enumerate() {
        let check_path = path.key("health_checks").index(index);
        if !check_names.insert(raw_check.name.as_str()) {
            findings.problem(
                check_path.key("name"),
                format!("health check `{}` is listed twice", raw_check.name),
            );
        }
        if let Some(check) = resolve_check(raw_check, &check_path, regions, admin_port, findings) {
            health_checks.push(check);
        }
    }
    for (index, check) in health_checks.iter().enumerate() {
        if let DnsCheckKind::Calculated { children, .. } = &check.kind {
            for (child_index, child) in children.iter().enumerate() {
                if !check_names.contains(child.as_str()) || *child == check.name {
                    findings.problem(
                        path.key("health_checks")
                            .index(index)
                            .key("children")
                            .index(child_index),
                        format!("`{child}` is not another health check of this zone"),
                    );
                }
            }
        }
    }

    let mut records: Vec<DnsRecord> = Vec::new();
    let mut identifiers: HashMap<(String, String), HashSet<String>> = HashMap::new();
    for (index, raw_record) in raw.records.iter().enumerate() {
        let record_path = path.key("records").index(index);
        let Some(record) = resolve_record(
            raw_record,
            &record_path,
            &zone,
            raw.ttl,
            regions,
            &check_names,
            &cidr_locations,
            findings,
        ) else {
            continue;
        };
        let key = (record.name.clone(), record.record_type.clone());
        if let Some(other) = records
            .iter()
            .find(|other| (other.name.clone(), other.record_type.clone()) == key)
        {
            if other.routing.kind() == record.routing.kind()
                && record.routing != DnsRouting::Simple
                && other.ttl != record.ttl
            {
                findings.problem(
                    record_path.key("ttl"),
                    format!(
                        "the records of {} {} answer as one group, with one TTL ({})",
                        record.name, record.record_type, other.ttl
                    ),
                );
            }
            if other.routing.kind() != record.routing.kind() {
                findings.problem(
                    record_path.key("name"),
                    format!(
                        "{} {} already has {} records; one name and type takes one routing policy",
                        record.name,
                        record.record_type,
                        other.routing.kind()
                    ),
                );
            } else if record.routing == DnsRouting::Simple {
                findings.problem(
                    record_path.key("name"),
                    format!(
                        "{} {} is given twice; put every value in one simple record, or give them a routing policy",
                        record.name, record.record_type
                    ),
                );
            }
        }
        if !identifiers
            .entry(key)
            .or_default()
            .insert(record.set_identifier.clone())
            && record.routing != DnsRouting::Simple
        {
            findings.problem(
                record_path.key("set_identifier"),
                format!(
                    "`{}` is used twice for {} {}",
                    record.set_identifier, record.name, record.record_type
                ),
            );
        }
        records.push(record);
    }
    // Where each name and type's aliases lead, and which of them lead back to it.
    let mut targets: HashMap<(&str, &str), Vec<&str>> = HashMap::new();
    for record in &records {
        if let Some(target) = &record.alias {
            targets
                .entry((record.name.as_str(), record.record_type.as_str()))
                .or_default()
                .push(target.as_str());
        }
    }
    let mut looping: HashMap<(&str, &str), bool> = HashMap::new();
    for &(name, record_type) in targets.keys() {
        let mut seen: HashSet<&str> = HashSet::new();
        let mut next: Vec<&str> = targets[&(name, record_type)].clone();
        while let Some(at) = next.pop() {
            if seen.insert(at) {
                next.extend(targets.get(&(at, record_type)).into_iter().flatten());
            }
        }
        looping.insert((name, record_type), seen.contains(name));
    }
    for (index, record) in records.iter().enumerate() {
        if let Some(target) = &record.alias
            && !records
                .iter()
                .any(|other| other.name == *target && other.record_type == record.record_type)
        {
            findings.problem(
                path.key("records").index(index).key("alias"),
                format!(
                    "no {} record of the zone is named {target}",
                    record.record_type
                ),
            );
        }
        // An alias that leads back to its own name and type, through the aliases of the
        // records it names, would be followed round at each query.
        if record.alias.is_some()
            && looping
                .get(&(record.name.as_str(), record.record_type.as_str()))
                .copied()
                .unwrap_or(false)
        {
            findings.problem(
                path.key("records").index(index).key("alias"),
                format!(
                    "{} {}: its aliases lead back to it, through the aliases of the records they name",
                    record.name, record.record_type
                ),
            );
        }
    }
    // The edges whose targets' health an alias evaluates get a check each.
    for region in regions {
        let name = edge_targets_check(&region.name);
        if records
            .iter()
            .any(|record| record.health_check.as_deref() == Some(name.as_str()))
            && !health_checks.iter().any(|check| check.name == name)
        {
            health_checks.push(DnsHealthCheck {
                name,
                kind: DnsCheckKind::EdgeTargets {
                    address: SocketAddr::new(region.edge.address.ip(), admin_port),
                },
                interval: Duration::from_secs(1),
                failure_threshold: 2,
                inverted: false,
                disabled: false,
            });
        }
    }
    let cnames: HashSet<&str> = records
        .iter()
        .filter(|record| record.record_type == "CNAME")
        .map(|record| record.name.as_str())
        .collect();
    for (index, record) in records.iter().enumerate() {
        if record.record_type != "CNAME" && cnames.contains(record.name.as_str()) {
            findings.problem(
                path.key("records").index(index).key("name"),
                format!("{} has a CNAME record, which must be alone", record.name),
            );
        }
        // The apex has the zone's SOA and NS records.
        if record.record_type == "CNAME" && record.name == zone {
            findings.problem(
                path.key("records").index(index).key("name"),
                "the zone's apex (`@`) has its SOA and NS records, and a CNAME record must be alone",
            );
        }
    }

    if raw
        .geoip_database
        .as_ref()
        .is_some_and(|file| file.trim().is_empty())
    {
        findings.problem(path.key("geoip_database"), "must name a MaxMind .mmdb file");
    }
    (findings.problems.len() == before).then_some(Dns {
        zone,
        port: raw.port,
        health_checks,
        cidr_locations,
        latencies,
        records,
        geoip_database: raw.geoip_database.clone(),
    })
}

fn resolve_check(
    raw: &RawDnsHealthCheck,
    path: &FieldPath,
    regions: &[Region],
    admin_port: u16,
    findings: &mut Findings,
) -> Option<DnsHealthCheck> {
    let interval_ms = raw
        .interval_ms
        .unwrap_or_else(crate::raw::default_dns_check_interval_ms);
    let failure_threshold = raw
        .failure_threshold
        .unwrap_or_else(crate::raw::default_dns_check_failure_threshold);
    if raw.check_type != "calculated" && !(100..=60_000).contains(&interval_ms) {
        findings.problem(path.key("interval_ms"), "must be from 100 to 60000");
    }
    if raw.check_type != "calculated" && !(1..=10).contains(&failure_threshold) {
        findings.problem(path.key("failure_threshold"), "must be from 1 to 10");
    }
    // The host name as sent: in lower case, without the root's dot.
    let host = raw
        .host
        .as_deref()
        .map(|host| host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase());
    if let (Some(given), Some(sent)) = (&raw.host, &host) {
        if !matches!(raw.check_type.as_str(), "http" | "https") {
            findings.problem(
                path.key("host"),
                "only an http or https check sends a host name",
            );
        } else if !crate::model::is_host_name(sent) {
            findings.problem(
                path.key("host"),
                format!(
                    "`{given}` is not a host name (labels of letters, digits and `-`, such as shop.example)"
                ),
            );
        }
    }
    if raw.check_type == "calculated" {
        for (key, given) in [
            ("interval_ms", raw.interval_ms.is_some()),
            ("failure_threshold", raw.failure_threshold.is_some()),
        ] {
            if given {
                findings.problem(
                    path.key(key),
                    "a calculated check has none: it follows its children as they change",
                );
            }
        }
    }
    let kind = match raw.check_type.as_str() {
        "http" | "https" => DnsCheckKind::Http {
            address: check_target(raw, path, regions, admin_port, findings)?,
            tls: raw.check_type == "https",
            host,
            path: raw.path.clone(),
            search: raw.search_string.clone(),
        },
        "tcp" => DnsCheckKind::Tcp {
            address: check_target(raw, path, regions, admin_port, findings)?,
        },
        "calculated" => {
            if raw.children.is_empty() {
                findings.problem(path.key("children"), "a calculated check needs children");
                return None;
            }
            let threshold = raw.healthy_threshold.unwrap_or(raw.children.len());
            if threshold > raw.children.len() {
                findings.problem(
                    path.key("healthy_threshold"),
                    format!(
                        "must be at most the number of children ({})",
                        raw.children.len()
                    ),
                );
            }
            DnsCheckKind::Calculated {
                children: raw.children.clone(),
                threshold,
            }
        }
        other => {
            findings.problem(
                path.key("type"),
                format!("`{other}` is not a health check type; expected \"http\", \"https\", \"tcp\" or \"calculated\""),
            );
            return None;
        }
    };
    if !raw.path.starts_with('/') {
        findings.problem(path.key("path"), "must start with `/`");
    }
    Some(DnsHealthCheck {
        name: raw.name.clone(),
        kind,
        interval: Duration::from_millis(interval_ms),
        failure_threshold,
        inverted: raw.inverted,
        disabled: raw.disabled,
    })
}

fn region_named<'r>(regions: &'r [Region], name: &str) -> Option<&'r Region> {
    regions.iter().find(|region| region.name == name)
}

/// Where an HTTP or TCP check connects: a region's edge (its admin endpoint, whose
/// `/healthz` says whether the edge is up) or an address.
fn check_target(
    raw: &RawDnsHealthCheck,
    path: &FieldPath,
    regions: &[Region],
    admin_port: u16,
    findings: &mut Findings,
) -> Option<SocketAddr> {
    match (&raw.edge, &raw.address) {
        (Some(region), None) => match region_named(regions, region) {
            Some(region) => Some(SocketAddr::new(region.edge.address.ip(), admin_port)),
            None => {
                findings.problem(
                    path.key("edge"),
                    format!("`{region}` is not a region of the topology"),
                );
                None
            }
        },
        (None, Some(address)) => match address.parse::<SocketAddr>() {
            Ok(address) => Some(address),
            Err(_) => {
                findings.problem(
                    path.key("address"),
                    format!("`{address}` is not an address such as `127.1.0.1:8080`"),
                );
                None
            }
        },
        _ => {
            findings.problem(path.key("edge"), "give either `edge` or `address`");
            None
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn resolve_record(
    raw: &RawDnsRecord,
    path: &FieldPath,
    zone: &str,
    default_ttl: u32,
    regions: &[Region],
    check_names: &HashSet<&str>,
    cidr_locations: &[(String, Vec<IpNet>)],
    findings: &mut Findings,
) -> Option<DnsRecord> {
    let before = findings.problems.len();
    let name = match raw.name.as_str() {
        "@" => zone.to_owned(),
        name if name.ends_with('.') => name.to_ascii_lowercase(),
        name => format!("{}.{zone}", name.to_ascii_lowercase()),
    };
    if !is_dns_name(&name) || !(name == zone || name.ends_with(&format!(".{zone}"))) {
        findings.problem(
            path.key("name"),
            format!("`{}` is not a name inside the zone {zone}", raw.name),
        );
    }
    let record_type = raw.record_type.to_ascii_uppercase();
    let mut values = raw.values.clone();
    if let Some(region) = &raw.edge {
        match region_named(regions, region) {
            Some(region) if record_type == "A" && values.is_empty() => {
                values.push(region.edge.address.ip().to_string());
            }
            Some(_) => findings.problem(
                path.key("edge"),
                "an edge alias is an A record without `values`",
            ),
            None => findings.problem(
                path.key("edge"),
                format!("`{region}` is not a region of the topology"),
            ),
        }
    }
    let alias = raw.alias.as_ref().map(|alias| match alias.as_str() {
        "@" => zone.to_owned(),
        alias if alias.ends_with('.') => alias.to_ascii_lowercase(),
        alias => format!("{}.{zone}", alias.to_ascii_lowercase()),
    });
    if let Some(target) = &alias {
        if !values.is_empty() || raw.edge.is_some() {
            findings.problem(
                path.key("alias"),
                "an alias takes no `values` and no `edge`",
            );
        } else if *target == name || !target.ends_with(zone) {
            findings.problem(
                path.key("alias"),
                format!("`{target}` is not another name of the zone {zone}"),
            );
        }
    } else if values.is_empty() {
        findings.problem(
            path.key("values"),
            "needs at least one value (or an `edge` or an `alias`)",
        );
    }
    for (index, value) in values.iter().enumerate() {
        let valid = match record_type.as_str() {
            "A" => value.parse::<Ipv4Addr>().is_ok(),
            "AAAA" => value.parse::<Ipv6Addr>().is_ok(),
            "CNAME" => is_dns_name(value),
            "TXT" => value.len() <= 255,
            "MX" | "SRV" | "CAA" => record_data(&record_type, value).is_ok(),
            _ => true,
        };
        if !valid && raw.edge.is_none() {
            let form = match record_data(&record_type, value) {
                Err(form) => format!(" ({form})"),
                Ok(()) => String::new(),
            };
            findings.problem(
                path.key("values").index(index),
                format!("`{value}` is not a value of a {record_type} record{form}"),
            );
        }
    }
    match record_type.as_str() {
        "A" | "AAAA" | "TXT" | "MX" | "SRV" | "CAA" => {}
        "CNAME" if values.len() > 1 => {
            findings.problem(path.key("values"), "a CNAME record has one value");
        }
        "CNAME" => {}
        other => {
            findings.problem(
                path.key("type"),
                format!("`{other}` is not a record type the topology takes: A, AAAA, CNAME, TXT, MX, SRV or CAA (the zone's SOA and NS are the DNS servers'; others go in a zone file)"),
            );
        }
    }

    let mut policies = Vec::new();
    if let Some(weight) = raw.weight {
        policies.push(("weight", DnsRouting::Weighted(weight)));
    }
    if let Some(region) = &raw.latency {
        if region_named(regions, region).is_none() {
            findings.problem(
                path.key("latency"),
                format!("`{region}` is not a region of the topology"),
            );
        }
        policies.push(("latency", DnsRouting::Latency(region.clone())));
    }
    if let Some(role) = &raw.failover {
        match role.as_str() {
            "primary" => policies.push(("failover", DnsRouting::Failover(true))),
            "secondary" => policies.push(("failover", DnsRouting::Failover(false))),
            other => findings.problem(
                path.key("failover"),
                format!("`{other}` is not a failover role; expected \"primary\" or \"secondary\""),
            ),
        }
    }
    if let Some(geolocation) = &raw.geolocation {
        let upper = |code: &Option<String>| code.as_ref().map(|code| code.to_ascii_uppercase());
        let (continent, country, subdivision) = (
            upper(&geolocation.continent),
            upper(&geolocation.country),
            upper(&geolocation.subdivision),
        );
        let geo_path = path.key("geolocation");
        if let Some(continent) = &continent
            && !CONTINENTS.contains(&continent.as_str())
        {
            findings.problem(
                geo_path.key("continent"),
                format!("`{continent}` is not a continent code: AF, AN, AS, EU, NA, OC or SA"),
            );
        }
        if continent.is_some() && country.is_some() {
            findings.problem(
                geo_path.key("country"),
                "give a continent or a country, not both",
            );
        }
        if let Some(country) = &country
            && (country.len() != 2 || !country.bytes().all(|byte| byte.is_ascii_uppercase()))
        {
            findings.problem(
                geo_path.key("country"),
                format!("`{country}` is not a two-letter country code"),
            );
        }
        if subdivision.is_some() && country.is_none() {
            findings.problem(
                geo_path.key("subdivision"),
                "a subdivision needs its country",
            );
        }
        policies.push((
            "geolocation",
            DnsRouting::Geolocation {
                continent,
                country,
                subdivision,
            },
        ));
    }
    if let Some(proximity) = &raw.geoproximity {
        let proximity_path = path.key("geoproximity");
        let place = match (&proximity.region, proximity.latitude, proximity.longitude) {
            (Some(region), None, None) => match region_named(regions, region) {
                Some(region) => Some((region.location.latitude, region.location.longitude)),
                None => {
                    findings.problem(
                        proximity_path.key("region"),
                        format!("`{region}` is not a region of the topology"),
                    );
                    None
                }
            },
            (None, Some(latitude), Some(longitude))
                if (-90.0..=90.0).contains(&latitude) && (-180.0..=180.0).contains(&longitude) =>
            {
                Some((latitude, longitude))
            }
            _ => {
                findings.problem(
                    proximity_path.key("region"),
                    "give a `region`, or a `latitude` (-90 to 90) and a `longitude` (-180 to 180)",
                );
                None
            }
        };
        if !(-99..=99).contains(&proximity.bias) {
            findings.problem(proximity_path.key("bias"), "must be from -99 to 99");
        }
        if let Some(place) = place {
            policies.push((
                "geoproximity",
                DnsRouting::Geoproximity {
                    place,
                    bias: proximity.bias,
                },
            ));
        }
    }
    if raw.multivalue {
        policies.push(("multivalue", DnsRouting::Multivalue));
    }
    if let Some(location) = &raw.ip_based {
        if location != "*" && !cidr_locations.iter().any(|(name, _)| name == location) {
            findings.problem(
                path.key("ip_based"),
                format!("`{location}` is not a location of dns.cidr_locations (or `*`)"),
            );
        }
        policies.push(("ip_based", DnsRouting::IpBased(location.clone())));
    }
    let routing = match policies.as_slice() {
        [] => DnsRouting::Simple,
        [(_, routing)] => routing.clone(),
        [_, (key, _), ..] => {
            findings.problem(path.key(key), "a record set takes one routing policy");
            DnsRouting::Simple
        }
    };
    if routing == DnsRouting::Multivalue && alias.is_some() {
        findings.problem(
            path.key("alias"),
            "a multivalue answer is records, not an alias (as Route 53's)",
        );
    }
    let set_identifier = raw.set_identifier.clone().unwrap_or_default();
    match (&routing, set_identifier.is_empty()) {
        (DnsRouting::Simple, false) => findings.problem(
            path.key("set_identifier"),
            "only a record set with a routing policy takes a set identifier",
        ),
        (DnsRouting::Simple, true) => {}
        (_, true) => findings.problem(
            path.key("set_identifier"),
            "a record set with a routing policy needs a set identifier",
        ),
        (_, false) => {}
    }
    let mut health_check = raw.health_check.clone();
    if raw.evaluate_target_health {
        match (&raw.edge, &raw.health_check, &alias) {
            (Some(region), None, _) => health_check = Some(edge_targets_check(region)),
            (None, _, Some(_)) => {}
            (None, _, None) => findings.problem(
                path.key("evaluate_target_health"),
                "only an alias (`edge` or `alias`) evaluates its target's health",
            ),
            (Some(_), Some(_), _) => findings.problem(
                path.key("evaluate_target_health"),
                "give either `health_check` or `evaluate_target_health`",
            ),
        }
        if routing == DnsRouting::Simple && alias.is_none() {
            findings.problem(
                path.key("evaluate_target_health"),
                "a simple record takes no health (Route 53's rule); give it a routing policy",
            );
        }
    }
    if let Some(check) = &raw.health_check {
        if !check_names.contains(check.as_str()) {
            findings.problem(
                path.key("health_check"),
                format!("`{check}` is not a health check of dns.health_checks"),
            );
        }
        if routing == DnsRouting::Simple {
            findings.problem(
                path.key("health_check"),
                "a simple record takes no health check (Route 53's rule); give it a routing policy",
            );
        }
    }
    // A name in a value is within the zone unless it ends with a dot, as a record's own
    // name is, and as zone files read them (`10 mail` is `10 mail.securecart.test.`).
    let qualified = |target: &str| {
        if target.ends_with('.') {
            target.to_owned()
        } else {
            format!("{target}.{zone}")
        }
    };
    let values = match record_type.as_str() {
        "CNAME" => values.iter().map(|value| qualified(value)).collect(),
        "MX" | "SRV" => values
            .iter()
            .map(|value| match value.rsplit_once(char::is_whitespace) {
                Some((before, target)) => format!("{} {}", before.trim_end(), qualified(target)),
                None => value.clone(),
            })
            .collect(),
        _ => values,
    };
    (findings.problems.len() == before).then(|| DnsRecord {
        name,
        record_type,
        ttl: raw.ttl.unwrap_or(default_ttl),
        set_identifier,
        routing,
        values,
        health_check,
        evaluate_target_health: raw.evaluate_target_health && alias.is_some(),
        alias,
    })
}

/// The name of the implicit check of an edge alias that evaluates its target's health.
fn edge_targets_check(region: &str) -> String {
    format!("edge-targets-{region}")
}

/// The address of a region's DNS server: the second host of its public tier.
pub(crate) fn dns_address(region: &Region, port: u16) -> Option<SocketAddr> {
    region
        .tiers
        .public
        .hosts()
        .nth(1)
        .map(|ip| SocketAddr::new(IpAddr::V4(ip), port))
}
