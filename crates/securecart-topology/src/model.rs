//! The second stage: the validated, resolved model that the runtime uses.
//!
//! Resolution gives every component its address: the edge takes the first host of the
//! public tier, and the replicas of the services take the hosts of the private tier in the
//! order the file lists the services, replica by replica. Replicas are spread across the
//! region's zones in order. The same file therefore always resolves to the same addresses.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use ipnet::Ipv4Net;

use crate::locate::FieldPath;
use crate::raw::{RawHealthCheck, RawRegion, RawTopology};

/// A whole, valid deployment.
#[derive(Debug, Clone)]
pub struct Topology {
    /// The deployment's name.
    pub name: String,
    /// Logging and admin endpoints.
    pub telemetry: Telemetry,
    /// The store's engine.
    pub store: StoreKind,
    /// The regions, in file order.
    pub regions: Vec<Region>,
    /// The shop's services, in file order.
    pub services: Vec<Service>,
    /// The edge's rules, the same in every region.
    pub edge: Edge,
}

/// Logging and admin endpoints.
#[derive(Debug, Clone)]
pub struct Telemetry {
    /// The admin port of every component.
    pub admin_port: u16,
    /// The log format.
    pub log_format: LogFormat,
}

/// How components write their logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// The name used in the file and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// The store's engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// One SQLite database per region in the data directory.
    Sqlite,
}

/// A region with every component placed in it.
#[derive(Debug, Clone)]
pub struct Region {
    /// The region's name.
    pub name: String,
    /// The region's block.
    pub cidr: Ipv4Net,
    /// Where the region is.
    pub location: Location,
    /// The availability zones.
    pub zones: Vec<String>,
    /// The tiers.
    pub tiers: Tiers,
    /// The region's edge.
    pub edge: Component,
    /// Every replica of every service, in file order.
    pub replicas: Vec<Component>,
}

impl Region {
    /// The edge and then every replica.
    pub fn components(&self) -> impl Iterator<Item = &Component> {
        std::iter::once(&self.edge).chain(self.replicas.iter())
    }

    /// The replicas of one service.
    pub fn replicas_of(&self, service: ServiceKind) -> impl Iterator<Item = &Component> {
        self.replicas
            .iter()
            .filter(move |component| component.role == Role::Service(service))
    }
}

/// A point on Earth, in degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Location {
    /// Degrees north.
    pub latitude: f64,
    /// Degrees east.
    pub longitude: f64,
}

/// A region's tiers.
#[derive(Debug, Clone, Copy)]
pub struct Tiers {
    /// Where the edge listens.
    pub public: Ipv4Net,
    /// Where the services listen.
    pub private: Ipv4Net,
    /// Reserved for database servers.
    pub database: Ipv4Net,
}

/// One running part of a region: its edge or one replica of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    /// The name, unique in its region: `edge`, `catalog-1`, `catalog-2`, ...
    pub name: String,
    /// What the component is.
    pub role: Role,
    /// The region's name.
    pub region: String,
    /// The zone it is placed in.
    pub zone: String,
    /// Where it serves traffic.
    pub address: SocketAddr,
    /// Where it serves `/metrics` and `/healthz`.
    pub admin_address: SocketAddr,
}

impl Component {
    /// The name that is unique in the deployment: `us-east-1/catalog-1`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.region, self.name)
    }
}

/// What a component is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The region's edge.
    Edge,
    /// A replica of a shop service.
    Service(ServiceKind),
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Edge => f.write_str("edge"),
            Role::Service(kind) => f.write_str(kind.as_str()),
        }
    }
}

/// The shop's services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceKind {
    /// Products, categories, search and product images.
    Catalog,
    /// Carts per session.
    Cart,
    /// Turns a cart into an order.
    Checkout,
    /// The simulated payment provider.
    Payments,
    /// The HTML pages and static assets.
    Storefront,
}

impl ServiceKind {
    /// Every service, in the order of their names' documentation.
    pub const ALL: [ServiceKind; 5] = [
        ServiceKind::Catalog,
        ServiceKind::Cart,
        ServiceKind::Checkout,
        ServiceKind::Payments,
        ServiceKind::Storefront,
    ];

    /// The service's name.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceKind::Catalog => "catalog",
            ServiceKind::Cart => "cart",
            ServiceKind::Checkout => "checkout",
            ServiceKind::Payments => "payments",
            ServiceKind::Storefront => "storefront",
        }
    }
}

impl FromStr for ServiceKind {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        ServiceKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
            .ok_or_else(|| {
                format!("unknown service `{name}`; expected one of catalog, cart, checkout, payments, storefront")
            })
    }
}

/// A service and how many replicas each region runs.
#[derive(Debug, Clone, Copy)]
pub struct Service {
    /// Which service.
    pub kind: ServiceKind,
    /// Replicas per region.
    pub replicas: u32,
    /// The port of every replica.
    pub port: u16,
}

/// The edge's rules.
#[derive(Debug, Clone)]
pub struct Edge {
    /// The listener's port.
    pub port: u16,
    /// Path rules, in file order.
    pub routes: Vec<Route>,
    /// Target groups, in file order.
    pub target_groups: Vec<TargetGroup>,
}

/// A path rule.
#[derive(Debug, Clone)]
pub struct Route {
    /// The prefix it matches.
    pub path_prefix: String,
    /// The target group's name.
    pub target_group: String,
}

/// A target group.
#[derive(Debug, Clone)]
pub struct TargetGroup {
    /// Its name.
    pub name: String,
    /// The service whose replicas are its targets.
    pub service: ServiceKind,
    /// Its health check.
    pub health_check: HealthCheck,
}

/// An active HTTP health check.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    /// The path requested.
    pub path: String,
    /// Time between checks.
    pub interval: Duration,
    /// Time after which a check fails.
    pub timeout: Duration,
    /// Successes to become healthy.
    pub healthy_threshold: u32,
    /// Failures to become unhealthy.
    pub unhealthy_threshold: u32,
}

/// What is wrong with one field, before its place in the file is known.
#[derive(Debug, Clone)]
pub struct Problem {
    /// The field.
    pub path: FieldPath,
    /// What is wrong, as a sentence without the field's name.
    pub message: String,
}

/// Something that works but goes against the seed's best practices.
#[derive(Debug, Clone)]
pub struct Advice {
    /// The field.
    pub path: FieldPath,
    /// What to change, and why.
    pub message: String,
}

/// Collects every problem instead of stopping at the first, so that one run of
/// `securecart check` shows everything wrong with a file.
#[derive(Default)]
pub(crate) struct Findings {
    pub problems: Vec<Problem>,
    pub advice: Vec<Advice>,
}

impl Findings {
    fn problem(&mut self, path: FieldPath, message: impl Into<String>) {
        self.problems.push(Problem {
            path,
            message: message.into(),
        });
    }

    fn advise(&mut self, path: FieldPath, message: impl Into<String>) {
        self.advice.push(Advice {
            path,
            message: message.into(),
        });
    }
}

fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

fn parse_cidr(findings: &mut Findings, path: FieldPath, text: &str) -> Option<Ipv4Net> {
    match text.parse::<Ipv4Net>() {
        Ok(net) if net.network() != net.addr() => {
            findings.problem(
                path,
                format!(
                    "`{text}` has host bits set; the block is written `{}`",
                    net.trunc()
                ),
            );
            None
        }
        Ok(net) => Some(net),
        Err(_) => {
            findings.problem(
                path,
                format!("`{text}` is not an IPv4 block such as `127.1.0.0/16`"),
            );
            None
        }
    }
}

/// Resolves a raw topology, or returns every problem found in it.
pub(crate) fn resolve(raw: &RawTopology, findings: &mut Findings) -> Option<Topology> {
    let root = FieldPath::default();
    if raw.name.trim().is_empty() {
        findings.problem(root.key("name"), "must not be empty");
    }

    let telemetry_path = root.key("telemetry");
    let log_format = match raw.telemetry.log_format.as_str() {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            findings.problem(
                telemetry_path.key("log_format"),
                format!("`{other}` is not a log format; expected \"text\" or \"json\""),
            );
            LogFormat::Text
        }
    };
    if raw.telemetry.admin_port == 0 {
        findings.problem(
            telemetry_path.key("admin_port"),
            "must be a port from 1 to 65535",
        );
    }
    let telemetry = Telemetry {
        admin_port: raw.telemetry.admin_port,
        log_format,
    };

    if raw.store.kind != "sqlite" {
        findings.problem(
            root.key("store").key("kind"),
            format!(
                "`{}` is not a store engine; expected \"sqlite\"",
                raw.store.kind
            ),
        );
    }

    let services = resolve_services(raw, findings);
    let edge = resolve_edge(raw, &services, findings);

    if raw.edge.port == telemetry.admin_port {
        findings.problem(
            root.key("edge").key("port"),
            format!(
                "is the same as telemetry.admin_port ({}); the edge's listener and its admin endpoint share an address",
                telemetry.admin_port
            ),
        );
    }

    let mut regions = Vec::new();
    let mut names = HashSet::new();
    if raw.regions.is_empty() {
        findings.problem(root.key("regions"), "must list at least one region");
    }
    for (index, raw_region) in raw.regions.iter().enumerate() {
        let path = root.key("regions").index(index);
        if !names.insert(raw_region.name.as_str()) {
            findings.problem(
                path.key("name"),
                format!("region `{}` is listed twice", raw_region.name),
            );
        }
        if let Some(region) = resolve_region(
            raw_region,
            &path,
            &services,
            &telemetry,
            raw.edge.port,
            findings,
        ) {
            for (other_index, other) in regions.iter().enumerate() {
                let other: &Region = other;
                if other.cidr.contains(&region.cidr.network())
                    || region.cidr.contains(&other.cidr.network())
                {
                    findings.problem(
                        path.key("cidr"),
                        format!(
                            "`{}` overlaps region `{}` (regions[{other_index}], `{}`)",
                            region.cidr, other.name, other.cidr
                        ),
                    );
                }
            }
            regions.push(region);
        }
    }

    if !findings.problems.is_empty() {
        return None;
    }
    Some(Topology {
        name: raw.name.clone(),
        telemetry,
        store: StoreKind::Sqlite,
        regions,
        services,
        edge,
    })
}

fn resolve_services(raw: &RawTopology, findings: &mut Findings) -> Vec<Service> {
    let mut services: Vec<Service> = Vec::new();
    for (index, raw_service) in raw.services.iter().enumerate() {
        let path = FieldPath::default().key("services").index(index);
        let kind = match raw_service.name.parse::<ServiceKind>() {
            Ok(kind) => kind,
            Err(message) => {
                findings.problem(path.key("name"), message);
                continue;
            }
        };
        if services.iter().any(|service| service.kind == kind) {
            findings.problem(
                path.key("name"),
                format!("service `{}` is listed twice", kind.as_str()),
            );
            continue;
        }
        if raw_service.replicas == 0 {
            findings.problem(path.key("replicas"), "must be at least 1");
        } else if raw_service.replicas < 2 {
            findings.advise(
                path.key("replicas"),
                "one replica is a single point of failure; run at least two, spread across zones",
            );
        }
        if raw_service.replicas > 64 {
            findings.problem(path.key("replicas"), "must be at most 64");
        }
        if raw_service.port == 0 {
            findings.problem(path.key("port"), "must be a port from 1 to 65535");
        }
        if raw_service.port == raw.telemetry.admin_port {
            findings.problem(
                path.key("port"),
                format!(
                    "is the same as telemetry.admin_port ({}); a replica's service and admin endpoint share an address",
                    raw.telemetry.admin_port
                ),
            );
        }
        services.push(Service {
            kind,
            replicas: raw_service.replicas,
            port: raw_service.port,
        });
    }
    for kind in ServiceKind::ALL {
        if !services.iter().any(|service| service.kind == kind) {
            findings.problem(
                FieldPath::default().key("services"),
                format!(
                    "the shop needs the `{}` service; add a [[services]] entry with name = \"{}\"",
                    kind.as_str(),
                    kind.as_str()
                ),
            );
        }
    }
    services
}

fn resolve_edge(raw: &RawTopology, services: &[Service], findings: &mut Findings) -> Edge {
    let edge_path = FieldPath::default().key("edge");
    if raw.edge.port == 0 {
        findings.problem(edge_path.key("port"), "must be a port from 1 to 65535");
    }
    let mut target_groups: Vec<TargetGroup> = Vec::new();
    for (index, raw_group) in raw.edge.target_groups.iter().enumerate() {
        let path = edge_path.key("target_groups").index(index);
        if !is_name(&raw_group.name) {
            findings.problem(
                path.key("name"),
                format!(
                    "`{}` is not a name: use lowercase letters, digits and dashes",
                    raw_group.name
                ),
            );
        }
        if target_groups
            .iter()
            .any(|group| group.name == raw_group.name)
        {
            findings.problem(
                path.key("name"),
                format!("target group `{}` is listed twice", raw_group.name),
            );
        }
        let service = match raw_group.service.parse::<ServiceKind>() {
            Ok(kind) if services.iter().any(|service| service.kind == kind) => kind,
            Ok(kind) => {
                findings.problem(
                    path.key("service"),
                    format!("service `{}` is not in [[services]]", kind.as_str()),
                );
                continue;
            }
            Err(message) => {
                findings.problem(path.key("service"), message);
                continue;
            }
        };
        let health_check =
            resolve_health_check(&raw_group.health_check, &path.key("health_check"), findings);
        target_groups.push(TargetGroup {
            name: raw_group.name.clone(),
            service,
            health_check,
        });
    }

    let mut routes: Vec<Route> = Vec::new();
    for (index, raw_route) in raw.edge.routes.iter().enumerate() {
        let path = edge_path.key("routes").index(index);
        if !raw_route.path_prefix.starts_with('/') {
            findings.problem(
                path.key("path_prefix"),
                format!("`{}` must start with `/`", raw_route.path_prefix),
            );
        }
        if routes
            .iter()
            .any(|route| route.path_prefix == raw_route.path_prefix)
        {
            findings.problem(
                path.key("path_prefix"),
                format!("prefix `{}` already has a route", raw_route.path_prefix),
            );
        }
        if !raw
            .edge
            .target_groups
            .iter()
            .any(|group| group.name == raw_route.target_group)
        {
            findings.problem(
                path.key("target_group"),
                format!("no target group is named `{}`", raw_route.target_group),
            );
        }
        routes.push(Route {
            path_prefix: raw_route.path_prefix.clone(),
            target_group: raw_route.target_group.clone(),
        });
    }
    if raw.edge.routes.is_empty() {
        findings.problem(edge_path.key("routes"), "must list at least one route");
    }
    Edge {
        port: raw.edge.port,
        routes,
        target_groups,
    }
}

fn resolve_health_check(
    raw: &RawHealthCheck,
    path: &FieldPath,
    findings: &mut Findings,
) -> HealthCheck {
    if !raw.path.starts_with('/') {
        findings.problem(
            path.key("path"),
            format!("`{}` must start with `/`", raw.path),
        );
    }
    if !(100..=300_000).contains(&raw.interval_ms) {
        findings.problem(
            path.key("interval_ms"),
            "must be from 100 to 300000 milliseconds",
        );
    }
    if !(10..=120_000).contains(&raw.timeout_ms) {
        findings.problem(
            path.key("timeout_ms"),
            "must be from 10 to 120000 milliseconds",
        );
    } else if raw.timeout_ms > raw.interval_ms {
        findings.problem(
            path.key("timeout_ms"),
            format!("must not be longer than interval_ms ({})", raw.interval_ms),
        );
    }
    for (key, value) in [
        ("healthy_threshold", raw.healthy_threshold),
        ("unhealthy_threshold", raw.unhealthy_threshold),
    ] {
        if !(1..=10).contains(&value) {
            findings.problem(path.key(key), "must be from 1 to 10");
        }
    }
    HealthCheck {
        path: raw.path.clone(),
        interval: Duration::from_millis(raw.interval_ms),
        timeout: Duration::from_millis(raw.timeout_ms),
        healthy_threshold: raw.healthy_threshold,
        unhealthy_threshold: raw.unhealthy_threshold,
    }
}

fn resolve_region(
    raw: &RawRegion,
    path: &FieldPath,
    services: &[Service],
    telemetry: &Telemetry,
    edge_port: u16,
    findings: &mut Findings,
) -> Option<Region> {
    let before = findings.problems.len();
    if !is_name(&raw.name) {
        findings.problem(
            path.key("name"),
            format!(
                "`{}` is not a region name: use lowercase letters, digits and dashes",
                raw.name
            ),
        );
    }
    if !(-90.0..=90.0).contains(&raw.latitude) {
        findings.problem(
            path.key("latitude"),
            format!("{} is not from -90 to 90 degrees", raw.latitude),
        );
    }
    if !(-180.0..=180.0).contains(&raw.longitude) {
        findings.problem(
            path.key("longitude"),
            format!("{} is not from -180 to 180 degrees", raw.longitude),
        );
    }
    if raw.zones.is_empty() {
        findings.problem(
            path.key("zones"),
            "must list at least one availability zone",
        );
    } else if raw.zones.len() == 1 {
        findings.advise(
            path.key("zones"),
            "a single availability zone is a single point of failure; spread replicas across two or more",
        );
    }
    let mut zone_names = HashSet::new();
    for (index, zone) in raw.zones.iter().enumerate() {
        if !is_name(zone) {
            findings.problem(
                path.key("zones").index(index),
                format!("`{zone}` is not a zone name: use lowercase letters, digits and dashes"),
            );
        }
        if !zone_names.insert(zone.as_str()) {
            findings.problem(
                path.key("zones").index(index),
                format!("zone `{zone}` is listed twice"),
            );
        }
    }

    let cidr = parse_cidr(findings, path.key("cidr"), &raw.cidr);
    let tiers_path = path.key("tiers");
    let public = parse_cidr(findings, tiers_path.key("public"), &raw.tiers.public);
    let private = parse_cidr(findings, tiers_path.key("private"), &raw.tiers.private);
    let database = parse_cidr(findings, tiers_path.key("database"), &raw.tiers.database);
    let (Some(cidr), Some(public), Some(private), Some(database)) =
        (cidr, public, private, database)
    else {
        return None;
    };
    let tiers = [
        ("public", public),
        ("private", private),
        ("database", database),
    ];
    for (position, (name, tier)) in tiers.iter().enumerate() {
        if !cidr.contains(tier) {
            findings.problem(
                tiers_path.key(name),
                format!("`{tier}` is not inside the region's block `{cidr}`"),
            );
        }
        for (other_name, other) in &tiers[..position] {
            if tier.contains(&other.network()) || other.contains(&tier.network()) {
                findings.problem(
                    tiers_path.key(name),
                    format!("`{tier}` overlaps the {other_name} tier `{other}`"),
                );
            }
        }
    }

    let zones = raw.zones.clone();
    let zone_of = |index: usize| {
        zones
            .get(index % zones.len().max(1))
            .cloned()
            .unwrap_or_default()
    };
    let at = |ip: Ipv4Addr, port: u16| SocketAddr::new(IpAddr::V4(ip), port);

    let mut public_hosts = public.hosts();
    let Some(edge_ip) = public_hosts.next() else {
        findings.problem(
            tiers_path.key("public"),
            format!("`{public}` has no host address for the edge"),
        );
        return None;
    };
    let edge = Component {
        name: "edge".to_owned(),
        role: Role::Edge,
        region: raw.name.clone(),
        zone: zone_of(0),
        address: at(edge_ip, edge_port),
        admin_address: at(edge_ip, telemetry.admin_port),
    };

    let mut private_hosts = private.hosts();
    let mut replicas = Vec::new();
    for service in services {
        for replica in 0..service.replicas as usize {
            let Some(ip) = private_hosts.next() else {
                findings.problem(
                    tiers_path.key("private"),
                    format!("`{private}` has too few addresses for every replica of every service"),
                );
                return None;
            };
            replicas.push(Component {
                name: format!("{}-{}", service.kind.as_str(), replica + 1),
                role: Role::Service(service.kind),
                region: raw.name.clone(),
                zone: zone_of(replica),
                address: at(ip, service.port),
                admin_address: at(ip, telemetry.admin_port),
            });
        }
    }

    if findings.problems.len() != before {
        return None;
    }
    Some(Region {
        name: raw.name.clone(),
        cidr,
        location: Location {
            latitude: raw.latitude,
            longitude: raw.longitude,
        },
        zones,
        tiers: Tiers {
            public,
            private,
            database,
        },
        edge,
        replicas,
    })
}
