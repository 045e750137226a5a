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
    /// The shop's DNS zone, if the topology has one.
    pub dns: Option<crate::dns::Dns>,
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
    /// The region's DNS server, when the topology has a DNS zone.
    pub dns: Option<Component>,
}

impl Region {
    /// The edge, every replica, and the DNS server if there is one.
    pub fn components(&self) -> impl Iterator<Item = &Component> {
        std::iter::once(&self.edge)
            .chain(self.replicas.iter())
            .chain(self.dns.iter())
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
    /// The region's DNS server.
    Dns,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Edge => f.write_str("edge"),
            Role::Service(kind) => f.write_str(kind.as_str()),
            Role::Dns => f.write_str("dns"),
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

/// The edge's listeners and target groups, the same in every region.
#[derive(Debug, Clone)]
pub struct Edge {
    /// Listeners, in file order; the first is the region's entry point.
    pub listeners: Vec<Listener>,
    /// Target groups, in file order.
    pub target_groups: Vec<TargetGroup>,
    /// The cache, if the edge has one.
    pub cache: Option<EdgeCache>,
    /// The web ACL of the listeners that name no other, if the edge has one.
    pub waf: Option<EdgeWaf>,
    /// Other web ACLs, by name, for the listeners that name one.
    pub web_acls: Vec<(String, EdgeWaf)>,
    /// The shield, if the edge has one.
    pub shield: Option<EdgeShield>,
    /// Timeouts and sizes.
    pub limits: EdgeLimits,
}

/// The edge's timeouts and sizes, checked (see `raw::RawLimits`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeLimits {
    /// How long a request's head may take, and a keep-alive connection may wait.
    pub header_read_timeout: Duration,
    /// How long a target may take to answer with its head.
    pub upstream_timeout: Duration,
    /// How long connecting to a target may take.
    pub connect_timeout: Duration,
    /// How long an answer or a switched connection may make no progress (ALB's idle timeout).
    pub idle_timeout: Duration,
    /// How long a client connection lives before its next answer closes it (ALB's client
    /// keepalive).
    pub client_keep_alive: Duration,
    /// How long requests in flight may finish at a stop.
    pub drain_timeout: Duration,
    /// The most headers in a request.
    pub max_headers: usize,
    /// The most bytes of a request's line and headers.
    pub max_header_bytes: usize,
    /// The most client connections per listener.
    pub max_connections: usize,
    /// The largest request body, unless a rule sets its own.
    pub max_body_bytes: Option<u64>,
}

/// The edge's shield: per-client limits and load shedding.
#[derive(Debug, Clone)]
pub struct EdgeShield {
    /// Requests a client may send per second, steadily (at least 1).
    pub requests_per_second: u32,
    /// Requests a client may send at once above the steady rate (at least 1).
    pub burst: u32,
    /// Connections a client may hold open at once.
    pub connections_per_client: u32,
    /// Requests a client may have in flight at once.
    pub requests_in_flight_per_client: u32,
    /// Requests in flight past which new ones are shed, if any.
    pub max_requests_in_flight: Option<usize>,
    /// Path patterns never shed.
    pub priority_paths: Vec<String>,
    /// Client networks never limited nor shed.
    pub exempt: Vec<ipnet::IpNet>,
    /// The automatic mitigation's window and factor, if it is on.
    pub automatic_mitigation: Option<(std::time::Duration, u32)>,
}

/// The edge's web ACL.
#[derive(Debug, Clone)]
pub struct EdgeWaf {
    /// The managed rule groups' names, in order.
    pub managed_groups: Vec<String>,
    /// How many bytes of a body are inspected.
    pub body_limit: usize,
    /// Whether a larger body blocks the request.
    pub oversize_blocks: bool,
    /// The operator's own rules, compiled.
    pub rules: Vec<securecart_waf::Rule>,
    /// The managed groups' paranoia level and anomaly threshold.
    pub sensitivity: securecart_waf::managed::Sensitivity,
    /// The managed groups' place among the operator's rules, and the managed rules that
    /// only count.
    pub overrides: securecart_waf::managed::Overrides,
    /// What log lines and samples leave out: `header:NAME` (lowercase), `query_string`,
    /// `uri_path`, `method`, each once.
    pub redacted_fields: Vec<String>,
    /// The headers `allow` and `count` rules add, by rule name (lowercase names, without
    /// the edge's prefix), and the default action's under `default`.
    pub insert_headers: Vec<(String, Vec<(String, String)>)>,
    /// Which requests the WAF's log keeps; none for the edge's default (what a rule
    /// blocked or counted).
    pub logging: Option<WafLogging>,
    /// Domains whose hosts share challenge tokens (AWS WAF's token domains), lowercase.
    pub token_domains: Vec<String>,
}

/// A web ACL's logging filter (AWS WAF's): the first filter a request meets decides,
/// else `keep_by_default`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WafLogging {
    /// Whether a request no filter speaks for is logged.
    pub keep_by_default: bool,
    /// The filters, in order.
    pub filters: Vec<WafLogFilter>,
}

/// One logging filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WafLogFilter {
    /// Whether the requests it speaks for are logged.
    pub keep: bool,
    /// Whether they must meet every condition (else any).
    pub meets_all: bool,
    /// Its conditions.
    pub conditions: Vec<WafLogCondition>,
}

/// A logging filter's condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WafLogCondition {
    /// The request was let through.
    Allowed,
    /// The request was blocked.
    Blocked,
    /// A rule counted the request.
    Counted,
    /// A challenge rule answered the request with a challenge.
    Challenged,
    /// A matching rule gave the request this label.
    Label(String),
}

/// The managed rule groups a web ACL may name.
pub const WAF_GROUPS: [&str; 7] = [
    "core",
    "sql-injection",
    "xss",
    "known-bad-inputs",
    "command-injection",
    "php",
    "java",
];

/// The edge's cache.
#[derive(Debug, Clone)]
pub struct EdgeCache {
    /// Memory for stored responses, in bytes.
    pub memory_bytes: u64,
    /// The largest body stored, in bytes.
    pub max_object_bytes: u64,
    /// The disk tier's size in bytes; 0 for none.
    pub disk_bytes: u64,
    /// Behaviours, in order.
    pub behaviors: Vec<CacheBehavior>,
    /// Custom error responses, in order.
    pub error_responses: Vec<ErrorResponse>,
}

/// A custom error response (CloudFront's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    /// The status replaced.
    pub error_code: u16,
    /// The paths it covers (patterns).
    pub paths: Vec<String>,
    /// The page's path (and query), which starts with `/`.
    pub response_page_path: String,
    /// The status answered with the page, if not `error_code`.
    pub response_code: Option<u16>,
}

/// The statuses a custom error response may replace: CloudFront's.
pub const CUSTOM_ERROR_CODES: [u16; 11] = [400, 403, 404, 405, 414, 416, 500, 501, 502, 503, 504];

/// A cache behaviour.
#[derive(Debug, Clone)]
pub struct CacheBehavior {
    /// Its name.
    pub name: String,
    /// The paths it applies to.
    pub path_pattern: String,
    /// The shortest freshness.
    pub min_ttl: Duration,
    /// The freshness of a response that states none.
    pub default_ttl: Duration,
    /// The longest freshness.
    pub max_ttl: Duration,
    /// The freshness of an error that states none.
    pub error_caching_min_ttl: Duration,
    /// Whether the origin's freshness directives count.
    pub honour_origin: bool,
    /// Whether the client's own cache directives count.
    pub honour_client: bool,
    /// Whether answers that set cookies are stored.
    pub store_set_cookie: bool,
    /// Query parameters in the key.
    pub query_strings: QueryStrings,
    /// Request headers in the key.
    pub headers: Vec<String>,
    /// Cookies in the key.
    pub cookies: Vec<String>,
    /// Whether stored text is answered compressed.
    pub compress: bool,
    /// The client's headers a miss sends the origin (lowercase names).
    pub origin_headers: QueryStrings,
    /// The client's cookies a miss sends the origin.
    pub origin_cookies: QueryStrings,
    /// The region whose edge the other regions' edges fetch misses through.
    pub origin_shield: Option<String>,
    /// Where a region's failing fetches go.
    pub origin_failover: Option<OriginFailover>,
    /// Headers set on its answers to clients (lowercase names).
    pub response_headers: Vec<(String, String)>,
    /// Headers removed from its answers to clients (lowercase names).
    pub remove_response_headers: Vec<String>,
}

/// A cache behaviour's origin failover (CloudFront's origin groups): the regions in order,
/// each failing over to the first that is not its own, and the origin's statuses that do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginFailover {
    /// At least two regions, each named once.
    pub regions: Vec<String>,
    /// Statuses of CloudFront's failover criteria.
    pub status_codes: Vec<u16>,
}

impl OriginFailover {
    /// The region `region`'s failing fetches go to: the first listed that is not `region`.
    pub fn secondary_of(&self, region: &str) -> Option<&str> {
        self.regions
            .iter()
            .map(String::as_str)
            .find(|other| *other != region)
    }
}

/// The statuses an origin failover may be set to fail over on: CloudFront's.
pub const FAILOVER_STATUS_CODES: [u16; 8] = [400, 403, 404, 416, 500, 502, 503, 504];

/// The query parameters a cache key holds (CloudFront's cache policy settings), or the
/// headers or cookies a miss sends the origin (its origin request policy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryStrings {
    /// Every one.
    All,
    /// None: for a key's parameters, `/a?x=1` and `/a?x=2` are one object.
    None,
    /// Only these.
    Only(Vec<String>),
    /// Every one but these.
    AllExcept(Vec<String>),
}

/// A listener's or a cache behaviour's edits of its answers' headers, checked: headers set
/// (neither those that frame an answer nor those that belong to each one) and headers
/// removed (not those that frame an answer, nor `Date`), none twice nor both.
fn response_header_edits(
    set: &std::collections::BTreeMap<String, String>,
    remove: &[String],
    path: &FieldPath,
    findings: &mut Findings,
) -> (Vec<(String, String)>, Vec<String>) {
    let mut response_headers: Vec<(String, String)> = Vec::new();
    for (name, value) in set {
        let at = path.key("response_headers").key(name);
        match http::HeaderName::from_bytes(name.as_bytes()) {
            Err(_) => findings.problem(at, format!("`{name}` is not a header name")),
            Ok(header) if FRAMING_HEADERS.contains(&header.as_str()) => findings.problem(
                at,
                format!("`{name}` frames the answer or its connection: the edge sets it"),
            ),
            Ok(header) if PER_ANSWER_HEADERS.contains(&header.as_str()) => findings.problem(
                at,
                format!("`{name}` belongs to each answer: one value for all would break them"),
            ),
            Ok(header)
                if response_headers
                    .iter()
                    .any(|(taken, _)| taken == header.as_str()) =>
            {
                findings.problem(
                    at,
                    format!("`{name}` is set twice (header names are case-insensitive)"),
                );
            }
            Ok(_) if !value.is_ascii() || http::HeaderValue::from_str(value).is_err() => findings
                .problem(
                    at,
                    "is not a header value (visible ASCII and spaces, on one line)",
                ),
            Ok(header) => response_headers.push((header.as_str().to_owned(), value.clone())),
        }
    }
    let mut remove_response_headers: Vec<String> = Vec::new();
    for (index, name) in remove.iter().enumerate() {
        let at = path.key("remove_response_headers").index(index);
        match http::HeaderName::from_bytes(name.as_bytes()) {
            Err(_) => findings.problem(at, format!("`{name}` is not a header name")),
            Ok(header)
                if FRAMING_HEADERS.contains(&header.as_str()) || header == http::header::DATE =>
            {
                findings.problem(
                    at,
                    format!("`{name}` frames the answer or its connection, or dates it: the edge sets it"),
                );
            }
            Ok(header)
                if response_headers
                    .iter()
                    .any(|(set, _)| set == header.as_str()) =>
            {
                findings.problem(
                    at,
                    format!("`{name}` is also in response_headers, which sets it"),
                );
            }
            Ok(header) if remove_response_headers.contains(&header.as_str().to_owned()) => {
                findings.problem(at, format!("`{name}` is listed twice"));
            }
            Ok(header) => remove_response_headers.push(header.as_str().to_owned()),
        }
    }
    (response_headers, remove_response_headers)
}

/// A behaviour's origin failover, checked: known regions, each once, at least two of them
/// (else no region has another to go to), and statuses of CloudFront's failover criteria.
fn origin_failover(
    raw: &crate::raw::RawOriginFailover,
    regions: &[&str],
    at: &FieldPath,
    findings: &mut Findings,
) -> OriginFailover {
    for (index, region) in raw.regions.iter().enumerate() {
        if !regions.contains(&region.as_str()) {
            findings.problem(
                at.key("regions").index(index),
                format!("no region is named `{region}`"),
            );
        } else if raw.regions[..index].contains(region) {
            findings.problem(
                at.key("regions").index(index),
                format!("`{region}` is listed twice"),
            );
        }
    }
    if raw.regions.len() < 2 {
        findings.problem(
            at.key("regions"),
            "must list at least two regions: each fails over to the first that is not its own",
        );
    }
    if raw.status_codes.is_empty() {
        findings.problem(
            at.key("status_codes"),
            "must list at least one status (500, 502, 503 and 504 by default)",
        );
    }
    for (index, code) in raw.status_codes.iter().enumerate() {
        if !FAILOVER_STATUS_CODES.contains(code) {
            findings.problem(
                at.key("status_codes").index(index),
                format!("{code} is not one of 400, 403, 404, 416, 500, 502, 503 and 504"),
            );
        }
    }
    OriginFailover {
        regions: raw.regions.clone(),
        status_codes: raw.status_codes.clone(),
    }
}

/// A behaviour's selection of the client's headers or cookies for the origin: `what`
/// names them in messages; headers' names are checked and made lowercase.
fn origin_selection(
    raw: &crate::raw::RawQueryStrings,
    headers: bool,
    at: &FieldPath,
    findings: &mut Findings,
) -> QueryStrings {
    use crate::raw::{RawAllExcept, RawQueryStrings};
    let names = |names: &[String], findings: &mut Findings, at: &FieldPath| -> Vec<String> {
        let mut checked = Vec::with_capacity(names.len());
        for (index, name) in names.iter().enumerate() {
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte));
            if !valid {
                findings.problem(
                    at.index(index),
                    format!(
                        "`{name}` is not a {} name",
                        if headers { "header" } else { "cookie" }
                    ),
                );
            } else if headers {
                checked.push(name.to_ascii_lowercase());
            } else {
                checked.push(name.clone());
            }
        }
        checked
    };
    match raw {
        RawQueryStrings::Keyword(keyword) if keyword == "all" => QueryStrings::All,
        RawQueryStrings::Keyword(keyword) if keyword == "none" => QueryStrings::None,
        RawQueryStrings::Keyword(keyword) => {
            findings.problem(
                at.clone(),
                format!("`{keyword}` is not \"all\", \"none\", a list of names or {{ all_except = [...] }}"),
            );
            QueryStrings::All
        }
        RawQueryStrings::Only(list) => {
            if list.is_empty() {
                findings.problem(at.clone(), "an empty list sends none: write \"none\"");
            }
            QueryStrings::Only(names(list, findings, at))
        }
        RawQueryStrings::AllExcept(RawAllExcept { all_except }) => {
            if all_except.is_empty() {
                findings.problem(
                    at.key("all_except"),
                    "an empty list leaves out none: write \"all\"",
                );
            }
            QueryStrings::AllExcept(names(all_except, findings, &at.key("all_except")))
        }
    }
}

/// A listener.
#[derive(Debug, Clone)]
pub struct Listener {
    /// Its name.
    pub name: String,
    /// Its port on the region's edge address.
    pub port: u16,
    /// Whether it terminates TLS.
    pub protocol: ListenerProtocol,
    /// For https: (certificate chain file, key file) as written in the file; empty means a
    /// self-signed certificate.
    pub certificates: Vec<(String, String)>,
    /// Its rules, in file order.
    pub rules: Vec<ListenerRule>,
    /// What happens when no rule matches.
    pub default_action: RuleAction,
    /// The web ACL in front of its rules.
    pub web_acl: ListenerWebAcl,
    /// Headers set on every answer, by lowercase name (checked as HTTP names and values).
    pub response_headers: Vec<(String, String)>,
    /// Headers removed from every answer, by lowercase name.
    pub remove_response_headers: Vec<String>,
    /// What becomes of a request's `X-Forwarded-For`.
    pub xff_header_processing: XffHeaderProcessing,
    /// Whether the appended entry carries the client's port.
    pub xff_client_port: bool,
    /// Whether headers of names that are not letters, digits and `-` are removed.
    pub drop_invalid_header_fields: bool,
    /// What becomes of requests that do not comply with RFC 9112.
    pub desync_mitigation_mode: DesyncMitigationMode,
    /// Mutual TLS (https listeners).
    pub mtls: ListenerMtls,
    /// Whether only TLS 1.3 is offered (https listeners).
    pub tls13_only: bool,
    /// Whether HTTP/2 is offered by ALPN (https listeners).
    pub http2: bool,
    /// Whether the targets are told each client's TLS version and cipher suite.
    pub tls_headers: bool,
}

/// What an https listener asks of its clients' certificates.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ListenerMtls {
    /// Nothing.
    #[default]
    Off,
    /// Any certificate, sent on to the targets.
    Passthrough,
    /// One chaining to the CA certificates of this file (as written, relative to the
    /// topology file).
    Verify(String),
}

/// What a listener does with a request's `X-Forwarded-For` (ALB's
/// `routing.http.xff_header_processing.mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum XffHeaderProcessing {
    /// The client's address is appended.
    #[default]
    Append,
    /// The header goes on unchanged.
    Preserve,
    /// The header is removed.
    Remove,
}

/// What a listener does with requests that do not comply with RFC 9112 (ALB's
/// `routing.http.desync_mitigation_mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DesyncMitigationMode {
    /// Every request the edge can frame is routed.
    Monitor,
    /// Ambiguous requests are routed and their connections closed.
    #[default]
    Defensive,
    /// Only compliant requests are routed.
    Strictest,
}

/// Headers a listener may not set on its answers: those that frame an answer or its
/// connection, which the edge writes itself (hop-by-hop ones, the length, the codings).
const FRAMING_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "content-encoding",
    "content-range",
];

/// Nor those that belong to each answer, whose one value for all would break them (every
/// cookie a target sets, every redirect's location, every representation's type, date,
/// validators and variants).
const PER_ANSWER_HEADERS: &[&str] = &[
    "set-cookie",
    "date",
    "content-type",
    "content-location",
    "location",
    "etag",
    "last-modified",
    "vary",
    "age",
    "retry-after",
    "www-authenticate",
];

/// Which web ACL is in front of a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerWebAcl {
    /// The edge's `[edge.waf]`, if it has one.
    Edge,
    /// None.
    None,
    /// The one of `[edge.web_acls]` of this name.
    Named(String),
}

impl Listener {
    /// Its web ACL, if it has one.
    pub fn web_acl<'e>(&self, edge: &'e Edge) -> Option<&'e EdgeWaf> {
        match &self.web_acl {
            ListenerWebAcl::Edge => edge.waf.as_ref(),
            ListenerWebAcl::None => None,
            ListenerWebAcl::Named(name) => edge
                .web_acls
                .iter()
                .find(|(acl, _)| acl == name)
                .map(|(_, waf)| waf),
        }
    }
}

/// A listener's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerProtocol {
    /// Plain HTTP/1.1 and h2c.
    Http,
    /// TLS, then HTTP/1.1 or HTTP/2 by ALPN.
    Https,
}

/// A listener rule.
#[derive(Debug, Clone)]
pub struct ListenerRule {
    /// Its name.
    pub name: String,
    /// Its priority; lower is evaluated first.
    pub priority: u32,
    /// What must hold.
    pub conditions: RuleConditions,
    /// What to do.
    pub action: RuleAction,
}

/// A rule's conditions; an empty list is no condition.
#[derive(Debug, Clone, Default)]
pub struct RuleConditions {
    /// Host patterns.
    pub host: Vec<String>,
    /// Host regular expressions (one condition with the patterns).
    pub host_regex: Vec<String>,
    /// Path patterns.
    pub path: Vec<String>,
    /// Path regular expressions (one condition with the patterns).
    pub path_regex: Vec<String>,
    /// Methods.
    pub method: Vec<String>,
    /// Client address blocks.
    pub source_ip: Vec<ipnet::IpNet>,
    /// Header name and value patterns.
    pub headers: Vec<(String, Vec<String>)>,
    /// Header name and value regular expressions (each header a condition of its own).
    pub header_regex: Vec<(String, Vec<String>)>,
    /// Query (key pattern, value pattern) pairs.
    pub query: Vec<(Option<String>, String)>,
}

/// What a rule does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleAction {
    /// Forward to target groups by weight.
    Forward {
        /// (group name, weight).
        target_groups: Vec<(String, u32)>,
        /// Group stickiness.
        stickiness: Option<Duration>,
        /// The largest request body.
        max_body_bytes: Option<u64>,
        /// The URL's rewrite: (expression, replacement).
        url_rewrite: Option<(String, String)>,
        /// The `Host`'s rewrite: (expression, replacement).
        host_rewrite: Option<(String, String)>,
    },
    /// Redirect.
    Redirect {
        /// 301 or 302.
        status: u16,
        /// Protocol template.
        protocol: String,
        /// Host template.
        host: String,
        /// Port template.
        port: String,
        /// Path template.
        path: String,
        /// Query template.
        query: String,
    },
    /// Fixed response.
    FixedResponse {
        /// The status.
        status: u16,
        /// The content type.
        content_type: String,
        /// The body.
        body: String,
    },
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
    /// Its balancing algorithm.
    pub algorithm: Algorithm,
    /// Whether it sends anomalous targets less (weighted random only).
    pub anomaly_mitigation: bool,
    /// Whether its targets speak HTTP/2 (else HTTP/1.1).
    pub http2: bool,
    /// Passive outlier ejection: (consecutive errors, ejection time), if on.
    pub outlier_detection: Option<(u32, Duration)>,
    /// Slow start, if on.
    pub slow_start: Option<Duration>,
    /// Target stickiness, if on.
    pub stickiness: Option<Duration>,
    /// The application cookie that stickiness follows, if it follows one.
    pub stickiness_app_cookie: Option<String>,
    /// How long a leaving target may finish its requests in flight.
    pub deregistration_delay: Duration,
    /// It fails open below this minimum of healthy targets.
    pub minimum_healthy: MinimumHealthy,
    /// Its DNS failover minimum, if it counts for the edge's health in DNS.
    pub dns_failover: Option<MinimumHealthy>,
}

/// A minimum of healthy targets: at least `count`, and at least `percent` of them if set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinimumHealthy {
    /// At least this many (0: no minimum count).
    pub count: usize,
    /// At least this percentage, if set.
    pub percent: Option<u8>,
}

/// How a target group spreads requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Each target in turn.
    RoundRobin,
    /// The target with the fewest requests in flight.
    LeastOutstandingRequests,
    /// A random target by weight.
    WeightedRandom,
    /// Power of two choices over peak EWMA latency.
    PeakEwma,
}

/// An active HTTP health check.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    /// The path requested.
    pub path: String,
    /// The port checked, if not the target's own.
    pub port: Option<u16>,
    /// Time between checks.
    pub interval: Duration,
    /// Time after which a check fails.
    pub timeout: Duration,
    /// Successes to become healthy.
    pub healthy_threshold: u32,
    /// Failures to become unhealthy.
    pub unhealthy_threshold: u32,
    /// The passing status codes.
    pub matcher: Vec<std::ops::RangeInclusive<u16>>,
    /// For a gRPC check: the passing gRPC status codes.
    pub grpc_codes: Option<Vec<std::ops::RangeInclusive<u16>>>,
}

/// Parses a health check matcher such as `200`, `200,204` or `200-299`: codes and ranges
/// from 200 to 499, as ALB allows for HTTP checks.
pub fn parse_matcher(text: &str) -> Result<Vec<std::ops::RangeInclusive<u16>>, String> {
    parse_codes(text, 200..=499, "a status code")
}

/// Parses a gRPC health check matcher such as `0`, `0,12` or `0-99`: gRPC status codes
/// from 0 to 99, as ALB's `GrpcCode`.
pub fn parse_grpc_matcher(text: &str) -> Result<Vec<std::ops::RangeInclusive<u16>>, String> {
    parse_codes(text, 0..=99, "a gRPC status code")
}

/// Codes and ranges within `bounds`.
fn parse_codes(
    text: &str,
    bounds: std::ops::RangeInclusive<u16>,
    what: &str,
) -> Result<Vec<std::ops::RangeInclusive<u16>>, String> {
    let code = |part: &str| {
        part.trim()
            .parse::<u16>()
            .ok()
            .filter(|code| bounds.contains(code))
            .ok_or_else(|| {
                format!(
                    "`{}` is not {what} from {} to {}",
                    part.trim(),
                    bounds.start(),
                    bounds.end()
                )
            })
    };
    text.split(',')
        .map(|part| match part.split_once('-') {
            Some((low, high)) => {
                let (low, high) = (code(low)?, code(high)?);
                if low > high {
                    return Err(format!("`{}` is an empty range", part.trim()));
                }
                Ok(low..=high)
            }
            None => code(part).map(|code| code..=code),
        })
        .collect()
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
    pub(crate) fn problem(&mut self, path: FieldPath, message: impl Into<String>) {
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

/// Whether `name` (in lower case) is a host name: labels of letters, digits and `-` (not
/// `*` or `_`, which a zone's names may hold), at most 253 bytes, not an address. A cookie's
/// `Domain`, which browsers take only for a name, and a health check's `Host`.
pub(crate) fn is_host_name(name: &str) -> bool {
    name.len() <= 253 && name.parse::<IpAddr>().is_err() && name.split('.').all(is_name)
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
        // The region's entry point is the edge's first listener.
        let entry_port = edge.listeners.first().map_or(0, |listener| listener.port);
        if let Some(region) = resolve_region(
            raw_region, &path, &services, &telemetry, entry_port, findings,
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

    let dns = raw.dns.as_ref().and_then(|raw_dns| {
        let dns = crate::dns::resolve_dns(raw_dns, &regions, telemetry.admin_port, findings)?;
        for (index, region) in regions.iter_mut().enumerate() {
            match crate::dns::dns_address(region, dns.port) {
                Some(address) => {
                    region.dns = Some(Component {
                        name: "dns".to_owned(),
                        role: Role::Dns,
                        region: region.name.clone(),
                        zone: region.zones.first().cloned().unwrap_or_default(),
                        address,
                        admin_address: SocketAddr::new(address.ip(), telemetry.admin_port),
                    });
                }
                None => findings.problem(
                    root.key("regions").index(index).key("tiers").key("public"),
                    "has no second host address for the region's DNS server",
                ),
            }
        }
        Some(dns)
    });

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
        dns,
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
    let mut target_groups: Vec<TargetGroup> = Vec::new();
    for (index, raw_group) in raw.edge.target_groups.iter().enumerate() {
        let path = edge_path.key("target_groups").index(index);
        check_name(
            findings,
            &path.key("name"),
            &raw_group.name,
            "target group",
            target_groups.iter().map(|group| group.name.as_str()),
        );
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
        let algorithm = match raw_group.algorithm.as_str() {
            "round_robin" => Algorithm::RoundRobin,
            "least_outstanding_requests" => Algorithm::LeastOutstandingRequests,
            "weighted_random" => Algorithm::WeightedRandom,
            "p2c_peak_ewma" => Algorithm::PeakEwma,
            other => {
                findings.problem(
                    path.key("algorithm"),
                    format!("`{other}` is not an algorithm; expected round_robin, least_outstanding_requests, weighted_random or p2c_peak_ewma"),
                );
                Algorithm::RoundRobin
            }
        };
        if raw_group.anomaly_mitigation && algorithm != Algorithm::WeightedRandom {
            findings.problem(
                path.key("anomaly_mitigation"),
                "needs algorithm = \"weighted_random\" (as on ALB, only weighted random adjusts targets' weights)",
            );
        }
        let http2 = match raw_group.protocol.as_str() {
            "http1" => false,
            "http2" => true,
            other => {
                findings.problem(
                    path.key("protocol"),
                    format!("`{other}` is not a target protocol; expected \"http1\" or \"http2\""),
                );
                false
            }
        };
        if raw_group.health_check.grpc_codes.is_some() && !http2 {
            findings.problem(
                path.key("health_check").key("grpc_codes"),
                "a gRPC check needs protocol = \"http2\" (gRPC runs over HTTP/2)",
            );
        }
        let outlier = &raw_group.outlier_detection;
        if !(1..=100).contains(&outlier.consecutive_errors) {
            findings.problem(
                path.key("outlier_detection").key("consecutive_errors"),
                "must be from 1 to 100",
            );
        }
        if !(1..=3600).contains(&outlier.ejection_seconds) {
            findings.problem(
                path.key("outlier_detection").key("ejection_seconds"),
                "must be from 1 to 3600",
            );
        }
        if raw_group.slow_start_seconds != 0 && !(30..=900).contains(&raw_group.slow_start_seconds)
        {
            findings.problem(
                path.key("slow_start_seconds"),
                "must be 0 (off) or from 30 to 900",
            );
        }
        if raw_group.stickiness_seconds > 604_800 {
            findings.problem(
                path.key("stickiness_seconds"),
                "must be 0 (off) or from 1 to 604800 (7 days)",
            );
        }
        if let Some(cookie) = &raw_group.stickiness_app_cookie {
            if raw_group.stickiness_seconds == 0 {
                findings.problem(
                    path.key("stickiness_app_cookie"),
                    "needs stickiness_seconds above 0 (how long the stickiness lasts)",
                );
            }
            let valid = !cookie.is_empty()
                && cookie
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte));
            if !valid {
                findings.problem(
                    path.key("stickiness_app_cookie"),
                    format!(
                        "`{cookie}` is not a cookie name (letters, digits and !#$%&'*+-.^_`|~)"
                    ),
                );
            } else if cookie.starts_with("SCALB") {
                findings.problem(
                    path.key("stickiness_app_cookie"),
                    "names starting with SCALB are the edge's own cookies",
                );
            }
        }
        if raw_group.deregistration_delay_seconds > 3600 {
            findings.problem(
                path.key("deregistration_delay_seconds"),
                "must be from 0 to 3600",
            );
        }
        if !(1..=64).contains(&raw_group.minimum_healthy_targets) {
            findings.problem(path.key("minimum_healthy_targets"), "must be from 1 to 64");
        }
        let percent = raw_group.minimum_healthy_targets_percent;
        if percent.is_some_and(|percent| !(1..=100).contains(&percent)) {
            findings.problem(
                path.key("minimum_healthy_targets_percent"),
                "must be from 1 to 100",
            );
        }
        if raw_group.dns_failover_minimum_healthy_targets > 64 {
            findings.problem(
                path.key("dns_failover_minimum_healthy_targets"),
                "must be from 0 to 64",
            );
        }
        let dns_percent = raw_group.dns_failover_minimum_healthy_targets_percent;
        if dns_percent.is_some_and(|percent| !(1..=100).contains(&percent)) {
            findings.problem(
                path.key("dns_failover_minimum_healthy_targets_percent"),
                "must be from 1 to 100",
            );
        }
        let dns_failover = MinimumHealthy {
            count: raw_group.dns_failover_minimum_healthy_targets.min(64) as usize,
            percent: dns_percent.map(|percent| percent.clamp(1, 100) as u8),
        };
        // A minimum above the group's targets (its service's replicas in each region)
        // could never be met.
        let replicas = services
            .iter()
            .find(|known| known.kind == service)
            .map_or(0, |known| u64::from(known.replicas));
        for (key, count, what) in [
            (
                "minimum_healthy_targets",
                raw_group.minimum_healthy_targets,
                "the group would always fail open",
            ),
            (
                "dns_failover_minimum_healthy_targets",
                raw_group.dns_failover_minimum_healthy_targets,
                "DNS would always send clients to another region",
            ),
        ] {
            if count > replicas && count <= 64 {
                findings.problem(
                    path.key(key),
                    format!(
                        "is more than the group's {replicas} targets (the replicas of `{}`): {what}",
                        service.as_str()
                    ),
                );
            }
        }
        target_groups.push(TargetGroup {
            dns_failover: (dns_failover.count > 0 || dns_failover.percent.is_some())
                .then_some(dns_failover),
            minimum_healthy: MinimumHealthy {
                count: raw_group.minimum_healthy_targets.clamp(1, 64) as usize,
                percent: percent.map(|percent| percent.clamp(1, 100) as u8),
            },
            slow_start: (raw_group.slow_start_seconds > 0)
                .then(|| Duration::from_secs(raw_group.slow_start_seconds)),
            stickiness: (raw_group.stickiness_seconds > 0)
                .then(|| Duration::from_secs(raw_group.stickiness_seconds)),
            stickiness_app_cookie: raw_group.stickiness_app_cookie.clone(),
            deregistration_delay: Duration::from_secs(raw_group.deregistration_delay_seconds),
            name: raw_group.name.clone(),
            service,
            health_check,
            algorithm,
            anomaly_mitigation: raw_group.anomaly_mitigation,
            http2,
            outlier_detection: outlier.enabled.then(|| {
                (
                    outlier.consecutive_errors,
                    Duration::from_secs(outlier.ejection_seconds),
                )
            }),
        });
    }
    let group_names: Vec<&str> = raw
        .edge
        .target_groups
        .iter()
        .map(|group| group.name.as_str())
        .collect();

    let mut listeners: Vec<Listener> = Vec::new();
    if raw.edge.listeners.is_empty() {
        findings.problem(
            edge_path.key("listeners"),
            "must list at least one listener",
        );
    }
    for (index, raw_listener) in raw.edge.listeners.iter().enumerate() {
        let path = edge_path.key("listeners").index(index);
        check_name(
            findings,
            &path.key("name"),
            &raw_listener.name,
            "listener",
            listeners.iter().map(|listener| listener.name.as_str()),
        );
        if raw_listener.port == 0 {
            findings.problem(path.key("port"), "must be a port from 1 to 65535");
        } else if raw_listener.port == raw.telemetry.admin_port {
            findings.problem(
                path.key("port"),
                format!(
                    "is the same as telemetry.admin_port ({}); the edge's listeners and its admin endpoint share an address",
                    raw.telemetry.admin_port
                ),
            );
        } else if let Some(other) = listeners
            .iter()
            .find(|listener| listener.port == raw_listener.port)
        {
            findings.problem(
                path.key("port"),
                format!(
                    "listener `{}` already uses port {}",
                    other.name, raw_listener.port
                ),
            );
        }
        let default_action = resolve_action(
            &raw_listener.default_action.forward,
            &raw_listener.default_action.redirect,
            &raw_listener.default_action.fixed_response,
            &path.key("default_action"),
            &group_names,
            findings,
        );
        if raw_listener.rules.len() > MAX_RULES_PER_LISTENER {
            findings.problem(
                path.key("rules"),
                format!("a listener has at most {MAX_RULES_PER_LISTENER} rules"),
            );
        }
        let mut rules: Vec<ListenerRule> = Vec::new();
        for (rule_index, raw_rule) in raw_listener.rules.iter().enumerate() {
            let rule_path = path.key("rules").index(rule_index);
            check_name(
                findings,
                &rule_path.key("name"),
                &raw_rule.name,
                "rule (in this listener)",
                rules.iter().map(|rule| rule.name.as_str()),
            );
            if !(1..=50_000).contains(&raw_rule.priority) {
                findings.problem(rule_path.key("priority"), "must be from 1 to 50000");
            } else if let Some(other) = rules.iter().find(|rule| rule.priority == raw_rule.priority)
            {
                findings.problem(
                    rule_path.key("priority"),
                    format!(
                        "rule `{}` already has priority {}",
                        other.name, raw_rule.priority
                    ),
                );
            }
            let conditions = resolve_conditions(raw_rule, &rule_path, findings);
            let mut action = resolve_action(
                &raw_rule.forward,
                &raw_rule.redirect,
                &raw_rule.fixed_response,
                &rule_path,
                &group_names,
                findings,
            );
            if let Some(limit) = raw_rule.max_body_bytes {
                match &mut action {
                    RuleAction::Forward { max_body_bytes, .. } => *max_body_bytes = Some(limit),
                    _ => findings
                        .problem(rule_path.key("max_body_bytes"), "only applies to a forward"),
                }
            }
            for (key, raw_rewrite) in [
                ("rewrite_url", &raw_rule.rewrite_url),
                ("rewrite_host", &raw_rule.rewrite_host),
            ] {
                let Some(raw_rewrite) = raw_rewrite else {
                    continue;
                };
                let at = rule_path.key(key);
                if let Err(error) = regex::RegexBuilder::new(&raw_rewrite.regex)
                    .size_limit(1 << 20)
                    .build()
                {
                    findings.problem(
                        at.key("regex"),
                        format!("is not a regular expression: {error}"),
                    );
                    continue;
                }
                let rewrite = Some((raw_rewrite.regex.clone(), raw_rewrite.replace.clone()));
                match &mut action {
                    RuleAction::Forward {
                        url_rewrite,
                        host_rewrite,
                        ..
                    } => {
                        if key == "rewrite_url" {
                            *url_rewrite = rewrite;
                        } else {
                            *host_rewrite = rewrite;
                        }
                    }
                    _ => findings.problem(at, "only applies to a forward"),
                }
            }
            rules.push(ListenerRule {
                name: raw_rule.name.clone(),
                priority: raw_rule.priority,
                conditions,
                action,
            });
        }
        let protocol = match raw_listener.protocol.as_str() {
            "http" => ListenerProtocol::Http,
            "https" => ListenerProtocol::Https,
            other => {
                findings.problem(
                    path.key("protocol"),
                    format!("`{other}` is not a listener protocol; expected \"http\" or \"https\""),
                );
                ListenerProtocol::Http
            }
        };
        if protocol == ListenerProtocol::Http && !raw_listener.certificates.is_empty() {
            findings.problem(
                path.key("certificates"),
                "only an https listener has certificates",
            );
        }
        for (certificate_index, certificate) in raw_listener.certificates.iter().enumerate() {
            for (key, value) in [("cert", &certificate.cert), ("key", &certificate.key)] {
                if value.is_empty() {
                    findings.problem(
                        path.key("certificates").index(certificate_index).key(key),
                        "must name a file",
                    );
                }
            }
        }
        let web_acl = match raw_listener.web_acl.as_deref() {
            None => ListenerWebAcl::Edge,
            Some("none") => ListenerWebAcl::None,
            Some(name) if raw.edge.web_acls.contains_key(name) => {
                ListenerWebAcl::Named(name.to_owned())
            }
            Some(name) => {
                findings.problem(
                    path.key("web_acl"),
                    format!("`{name}` is not a web ACL of [edge.web_acls], nor \"none\""),
                );
                ListenerWebAcl::None
            }
        };
        let (response_headers, remove_response_headers) = response_header_edits(
            &raw_listener.response_headers,
            &raw_listener.remove_response_headers,
            &path,
            findings,
        );
        let xff_header_processing = match raw_listener.xff_header_processing.as_deref() {
            None | Some("append") => XffHeaderProcessing::Append,
            Some("preserve") => XffHeaderProcessing::Preserve,
            Some("remove") => XffHeaderProcessing::Remove,
            Some(other) => {
                findings.problem(
                    path.key("xff_header_processing"),
                    format!(
                        "`{other}` is not a way with X-Forwarded-For; expected \"append\", \"preserve\" or \"remove\""
                    ),
                );
                XffHeaderProcessing::Append
            }
        };
        let desync_mitigation_mode = match raw_listener.desync_mitigation_mode.as_deref() {
            None | Some("defensive") => DesyncMitigationMode::Defensive,
            Some("monitor") => DesyncMitigationMode::Monitor,
            Some("strictest") => DesyncMitigationMode::Strictest,
            Some(other) => {
                findings.problem(
                    path.key("desync_mitigation_mode"),
                    format!(
                        "`{other}` is not a desync mitigation mode; expected \"monitor\", \"defensive\" or \"strictest\""
                    ),
                );
                DesyncMitigationMode::Defensive
            }
        };
        if raw_listener.xff_client_port && xff_header_processing != XffHeaderProcessing::Append {
            findings.problem(
                path.key("xff_client_port"),
                "the client's port goes where its address is appended: only with xff_header_processing = \"append\"",
            );
        }
        let mtls = match &raw_listener.mtls {
            None => ListenerMtls::Off,
            Some(raw_mtls) => {
                let at = path.key("mtls");
                if protocol != ListenerProtocol::Https {
                    findings.problem(at.clone(), "only an https listener has mutual TLS");
                }
                match (raw_mtls.mode.as_str(), &raw_mtls.trust_store) {
                    ("verify", Some(file)) if !file.is_empty() => {
                        ListenerMtls::Verify(file.clone())
                    }
                    ("verify", _) => {
                        findings.problem(
                            at.clone(),
                            "verify needs a trust_store: the CA certificates (PEM) clients' must chain to",
                        );
                        ListenerMtls::Off
                    }
                    ("passthrough", None) => ListenerMtls::Passthrough,
                    ("passthrough", Some(_)) => {
                        findings.problem(
                            at.key("trust_store"),
                            "passthrough checks no certificate: give mode = \"verify\" to check them",
                        );
                        ListenerMtls::Off
                    }
                    (other, _) => {
                        findings.problem(
                            at.key("mode"),
                            format!("`{other}` is not `verify` or `passthrough`"),
                        );
                        ListenerMtls::Off
                    }
                }
            }
        };
        if protocol != ListenerProtocol::Https {
            for (key, set) in [
                ("tls_policy", raw_listener.tls_policy.is_some()),
                ("http2", raw_listener.http2.is_some()),
                ("tls_headers", raw_listener.tls_headers),
            ] {
                if set {
                    findings.problem(path.key(key), "only an https listener has it");
                }
            }
        }
        let tls13_only = match raw_listener.tls_policy.as_deref() {
            None | Some("tls12") => false,
            Some("tls13") => true,
            Some(other) => {
                findings.problem(
                    path.key("tls_policy"),
                    format!(
                        "`{other}` is not \"tls12\" (TLS 1.2 and 1.3) or \"tls13\" (TLS 1.3 only)"
                    ),
                );
                false
            }
        };
        listeners.push(Listener {
            remove_response_headers,
            tls13_only,
            http2: raw_listener.http2.unwrap_or(true),
            tls_headers: raw_listener.tls_headers,
            mtls,
            web_acl,
            response_headers,
            xff_header_processing,
            xff_client_port: raw_listener.xff_client_port,
            drop_invalid_header_fields: raw_listener.drop_invalid_header_fields,
            desync_mitigation_mode,
            name: raw_listener.name.clone(),
            port: raw_listener.port,
            protocol,
            certificates: raw_listener
                .certificates
                .iter()
                .map(|certificate| (certificate.cert.clone(), certificate.key.clone()))
                .collect(),
            rules,
            default_action,
        });
    }
    Edge {
        listeners,
        target_groups,
        cache: raw.edge.cache.as_ref().map(|cache| {
            let regions: Vec<&str> = raw
                .regions
                .iter()
                .map(|region| region.name.as_str())
                .collect();
            resolve_cache(cache, &regions, &edge_path.key("cache"), findings)
        }),
        waf: raw
            .edge
            .waf
            .as_ref()
            .map(|waf| resolve_waf(waf, &edge_path.key("waf"), findings)),
        web_acls: raw
            .edge
            .web_acls
            .iter()
            .map(|(name, waf)| {
                let path = edge_path.key("web_acls").key(name);
                if name == "none" {
                    findings.problem(
                        path.clone(),
                        "`none` is what a listener names for no web ACL; give this one another name",
                    );
                } else if name == "edge" {
                    findings.problem(
                        path.clone(),
                        "`edge` names [edge.waf] in metrics and logs; give this one another name",
                    );
                }
                (name.clone(), resolve_waf(waf, &path, findings))
            })
            .collect(),
        shield: raw
            .edge
            .shield
            .as_ref()
            .map(|shield| resolve_shield(shield, &edge_path.key("shield"), findings)),
        limits: resolve_limits(&raw.edge.limits, &edge_path.key("limits"), findings),
    }
}

fn resolve_limits(
    raw: &crate::raw::RawLimits,
    path: &FieldPath,
    findings: &mut Findings,
) -> EdgeLimits {
    let mut within = |field: &str, value: u64, range: std::ops::RangeInclusive<u64>| {
        if !range.contains(&value) {
            findings.problem(
                path.key(field),
                format!("must be from {} to {}", range.start(), range.end()),
            );
        }
    };
    within(
        "header_read_timeout_ms",
        raw.header_read_timeout_ms,
        100..=600_000,
    );
    within(
        "upstream_timeout_ms",
        raw.upstream_timeout_ms,
        100..=3_600_000,
    );
    within("connect_timeout_ms", raw.connect_timeout_ms, 100..=60_000);
    within("idle_timeout_seconds", raw.idle_timeout_seconds, 1..=4_000);
    within(
        "client_keep_alive_seconds",
        raw.client_keep_alive_seconds,
        60..=604_800,
    );
    within(
        "drain_timeout_seconds",
        raw.drain_timeout_seconds,
        0..=3_600,
    );
    within("max_headers", raw.max_headers as u64, 1..=1_000);
    within("max_header_kib", raw.max_header_kib as u64, 8..=1_024);
    within(
        "max_connections",
        raw.max_connections as u64,
        1..=10_000_000,
    );
    if raw.max_body_bytes == Some(0) {
        findings.problem(
            path.key("max_body_bytes"),
            "must be at least 1 (leave it out for no limit)",
        );
    }
    EdgeLimits {
        header_read_timeout: Duration::from_millis(raw.header_read_timeout_ms),
        upstream_timeout: Duration::from_millis(raw.upstream_timeout_ms),
        connect_timeout: Duration::from_millis(raw.connect_timeout_ms),
        idle_timeout: Duration::from_secs(raw.idle_timeout_seconds),
        client_keep_alive: Duration::from_secs(raw.client_keep_alive_seconds),
        drain_timeout: Duration::from_secs(raw.drain_timeout_seconds),
        max_headers: raw.max_headers,
        max_header_bytes: raw.max_header_kib.saturating_mul(1024),
        max_connections: raw.max_connections,
        max_body_bytes: raw.max_body_bytes,
    }
}

fn resolve_shield(
    raw: &crate::raw::RawShield,
    path: &FieldPath,
    findings: &mut Findings,
) -> EdgeShield {
    for (field, value) in [
        ("requests_per_second", raw.requests_per_second),
        ("burst", raw.burst),
        ("connections_per_client", raw.connections_per_client),
        (
            "requests_in_flight_per_client",
            raw.requests_in_flight_per_client,
        ),
    ] {
        if value == 0 {
            findings.problem(path.key(field), "must be at least 1");
        }
    }
    if raw.max_requests_in_flight == Some(0) {
        findings.problem(
            path.key("max_requests_in_flight"),
            "must be at least 1 (leave it out to shed nothing)",
        );
    }
    for (index, pattern) in raw.priority_paths.iter().enumerate() {
        if !pattern.starts_with('/') {
            findings.problem(
                path.key("priority_paths").index(index),
                format!("`{pattern}` must start with `/`"),
            );
        }
    }
    let mut exempt = Vec::with_capacity(raw.exempt.len());
    for (index, network) in raw.exempt.iter().enumerate() {
        match network.parse::<ipnet::IpNet>() {
            Ok(network) => exempt.push(network.trunc()),
            Err(_) => findings.problem(
                path.key("exempt").index(index),
                format!("`{network}` is not a network (for example 203.0.113.0/24)"),
            ),
        }
    }
    if !(1..=300).contains(&raw.mitigation_window_seconds) {
        findings.problem(
            path.key("mitigation_window_seconds"),
            "must be from 1 to 300",
        );
    }
    if !(2..=100).contains(&raw.mitigation_factor) {
        findings.problem(path.key("mitigation_factor"), "must be from 2 to 100");
    }
    EdgeShield {
        exempt,
        automatic_mitigation: raw.automatic_mitigation.then(|| {
            (
                std::time::Duration::from_secs(raw.mitigation_window_seconds.clamp(1, 300)),
                raw.mitigation_factor.clamp(2, 100),
            )
        }),
        requests_per_second: raw.requests_per_second.max(1),
        burst: raw.burst.max(1),
        connections_per_client: raw.connections_per_client,
        requests_in_flight_per_client: raw.requests_in_flight_per_client,
        max_requests_in_flight: raw
            .max_requests_in_flight
            .map(|limit| usize::try_from(limit).unwrap_or(usize::MAX)),
        priority_paths: raw.priority_paths.clone(),
    }
}

/// The most statements a managed group's scope-down holds.
const MAX_SCOPE_DOWN: usize = 10;

/// `[edge.waf.group_overrides]`: each names a group the ACL runs, and rules of that group.
fn resolve_group_overrides(
    raw: &crate::raw::RawWaf,
    managed_groups: &[String],
    challenge_immunity: u32,
    path: &FieldPath,
    findings: &mut Findings,
) -> Vec<(
    securecart_waf::managed::Group,
    securecart_waf::managed::GroupOverride,
)> {
    use securecart_waf::managed::{Group, GroupOverride};
    let mut groups = Vec::new();
    for (name, raw_override) in &raw.group_overrides {
        let at = path.key("group_overrides").key(name);
        let Some(group) = Group::from_name(name) else {
            findings.problem(
                at,
                format!(
                    "`{name}` is not a managed rule group: {}",
                    WAF_GROUPS.join(", ")
                ),
            );
            continue;
        };
        if !managed_groups.iter().any(|listed| listed == name) {
            findings.problem(at.clone(), format!("`{name}` is not among managed_groups"));
        }
        // The scope-down runs before each of the group's rules (a few dozen): it is kept
        // small, as AWS WAF's capacity units would.
        if let Some(statement) = &raw_override.scope_down {
            let statements = crate::waf::count(statement, 0);
            if statements > MAX_SCOPE_DOWN {
                findings.problem(
                    at.key("scope_down"),
                    format!("holds {statements} statements; at most {MAX_SCOPE_DOWN}"),
                );
            }
        }
        let scope_down = raw_override.scope_down.as_ref().and_then(|statement| {
            crate::waf::statement(statement, &at.key("scope_down"), 1, findings)
        });
        let ids: Vec<String> = group.rules(0, 4).into_iter().map(|rule| rule.id).collect();
        let mut rule_actions = Vec::new();
        for (id, action) in &raw_override.rule_actions {
            let rule_at = at.key("rule_actions").key(id);
            if !ids.contains(id) {
                findings.problem(
                    rule_at,
                    format!("`{id}` is not a rule of the `{name}` group"),
                );
                continue;
            }
            match action.as_str() {
                "allow" => rule_actions.push((id.clone(), securecart_waf::RuleAction::Allow)),
                "block" => rule_actions.push((id.clone(), securecart_waf::RuleAction::Block)),
                "count" => rule_actions.push((id.clone(), securecart_waf::RuleAction::Count)),
                "challenge" => rule_actions.push((
                    id.clone(),
                    securecart_waf::RuleAction::Challenge(challenge_immunity),
                )),
                other => findings.problem(
                    rule_at,
                    format!("`{other}` is not `allow`, `block`, `count` or `challenge`"),
                ),
            }
        }
        groups.push((
            group,
            GroupOverride {
                count_all: raw_override.count_all,
                scope_down,
                rule_actions,
            },
        ));
    }
    groups
}

fn resolve_waf(raw: &crate::raw::RawWaf, path: &FieldPath, findings: &mut Findings) -> EdgeWaf {
    // The challenge rules' immunity time where they do not give one (AWS WAF's web ACL
    // challenge config).
    let challenge_immunity = crate::waf::immunity(
        raw.challenge_immunity_seconds,
        securecart_waf::challenge::DEFAULT_IMMUNITY,
        &path.key("challenge_immunity_seconds"),
        findings,
    );
    let managed_groups = raw
        .managed_groups
        .clone()
        .unwrap_or_else(|| WAF_GROUPS.iter().map(|group| (*group).to_owned()).collect());
    for (index, group) in managed_groups.iter().enumerate() {
        if !WAF_GROUPS.contains(&group.as_str()) {
            findings.problem(
                path.key("managed_groups").index(index),
                format!(
                    "`{group}` is not a managed rule group: {}",
                    WAF_GROUPS.join(", ")
                ),
            );
        } else if managed_groups[..index].contains(group) {
            findings.problem(
                path.key("managed_groups").index(index),
                format!("`{group}` is listed twice"),
            );
        }
    }
    if !(1..=64).contains(&raw.body_inspection_kib) {
        findings.problem(path.key("body_inspection_kib"), "must be from 1 to 64");
    }
    let oversize_blocks = match raw.oversize.as_str() {
        "continue" => false,
        "block" => true,
        other => {
            findings.problem(
                path.key("oversize"),
                format!("`{other}` is not `continue` or `block`"),
            );
            false
        }
    };
    if !(1..=4).contains(&raw.paranoia_level) {
        findings.problem(path.key("paranoia_level"), "must be from 1 to 4");
    }
    if let Some(threshold) = raw.anomaly_threshold
        && !(1..=100).contains(&threshold)
    {
        findings.problem(path.key("anomaly_threshold"), "must be from 1 to 100");
    }
    if raw.managed_priority.is_some_and(|priority| priority > 1000) {
        findings.problem(path.key("managed_priority"), "must be from 0 to 1000");
    }
    if !raw.count_rules.is_empty() {
        let known = securecart_waf::managed::rule_ids();
        for (index, id) in raw.count_rules.iter().enumerate() {
            if !known.contains(id) {
                findings.problem(
                    path.key("count_rules").index(index),
                    format!(
                        "`{id}` is not a managed rule's id (such as `SC-SQLI-003`: the WAF's \
                         log lines and the admin API's /waf/sampled name the rules that match)"
                    ),
                );
            } else if raw.count_rules[..index].contains(id) {
                findings.problem(
                    path.key("count_rules").index(index),
                    format!("`{id}` is listed twice"),
                );
            }
        }
    }
    let mut redacted_fields: Vec<String> = Vec::new();
    for (index, field) in raw.redacted_fields.iter().enumerate() {
        let normal = match field.strip_prefix("header:") {
            Some(name) => http::HeaderName::from_bytes(name.as_bytes())
                .ok()
                .map(|name| format!("header:{name}")),
            None => ["query_string", "uri_path", "method"]
                .contains(&field.as_str())
                .then(|| field.clone()),
        };
        match normal {
            None => findings.problem(
                path.key("redacted_fields").index(index),
                format!(
                    "`{field}` is not a field the log can leave out; expected `header:NAME`, \
                     `query_string`, `uri_path` or `method`"
                ),
            ),
            Some(normal) if redacted_fields.contains(&normal) => findings.problem(
                path.key("redacted_fields").index(index),
                format!("`{field}` is listed twice"),
            ),
            Some(normal) => redacted_fields.push(normal),
        }
    }
    let default_block = match raw.default_action.as_str() {
        "allow" => false,
        "block" => true,
        other => {
            findings.problem(
                path.key("default_action"),
                format!("`{other}` is not a default action; expected \"allow\" or \"block\""),
            );
            false
        }
    };
    let mut insert_headers =
        crate::waf::resolve_insert_headers(&raw.rules, &path.key("rules"), findings);
    if !raw.default_insert_headers.is_empty() {
        let at = path.key("default_insert_headers");
        if default_block {
            findings.problem(at, "needs default_action = \"allow\"");
        } else if let Some(headers) =
            crate::waf::insert_headers(&raw.default_insert_headers, &at, findings)
        {
            insert_headers.push(("default".to_owned(), headers));
        }
    }
    let logging = raw
        .logging
        .as_ref()
        .map(|raw| crate::waf::resolve_logging(raw, &path.key("logging"), findings));
    let mut token_domains = Vec::with_capacity(raw.token_domains.len());
    for (index, domain) in raw.token_domains.iter().enumerate() {
        let lower = domain.to_ascii_lowercase();
        if !is_host_name(&lower) {
            findings.problem(
                path.key("token_domains").index(index),
                format!(
                    "`{domain}` is not a domain name (labels of letters, digits and `-`, such as shop.example)"
                ),
            );
        } else if token_domains.contains(&lower) {
            findings.problem(
                path.key("token_domains").index(index),
                format!("`{domain}` is listed twice"),
            );
        } else {
            token_domains.push(lower);
        }
    }
    EdgeWaf {
        token_domains,
        logging,
        insert_headers,
        redacted_fields,
        rules: crate::waf::resolve_rules(
            &raw.rules,
            challenge_immunity,
            &path.key("rules"),
            findings,
        ),
        sensitivity: securecart_waf::managed::Sensitivity {
            paranoia: raw.paranoia_level.clamp(1, 4),
            anomaly_threshold: raw.anomaly_threshold,
        },
        overrides: securecart_waf::managed::Overrides {
            managed_priority: raw.managed_priority,
            count: raw.count_rules.clone(),
            groups: resolve_group_overrides(
                raw,
                &managed_groups,
                challenge_immunity,
                path,
                findings,
            ),
            default_block,
            default_response: raw.default_block_response.as_ref().and_then(|response| {
                if !default_block {
                    findings.problem(
                        path.key("default_block_response"),
                        "needs default_action = \"block\"",
                    );
                }
                crate::waf::block_response(response, &path.key("default_block_response"), findings)
                    .map(std::sync::Arc::new)
            }),
        },
        managed_groups,
        body_limit: usize::try_from(raw.body_inspection_kib * 1024).unwrap_or(usize::MAX),
        oversize_blocks,
    }
}

fn resolve_cache(
    raw: &crate::raw::RawCache,
    regions: &[&str],
    path: &FieldPath,
    findings: &mut Findings,
) -> EdgeCache {
    if !(1..=1_048_576).contains(&raw.memory_mib) {
        findings.problem(path.key("memory_mib"), "must be from 1 to 1048576");
    }
    if !(1..=1_048_576).contains(&raw.max_object_kib) {
        findings.problem(path.key("max_object_kib"), "must be from 1 to 1048576");
    }
    if raw.behaviors.is_empty() {
        findings.problem(
            path.key("behaviors"),
            "must list at least one behaviour (a path pattern to cache)",
        );
    }
    let mut behaviors: Vec<CacheBehavior> = Vec::new();
    for (index, raw_behavior) in raw.behaviors.iter().enumerate() {
        let path = path.key("behaviors").index(index);
        check_name(
            findings,
            &path.key("name"),
            &raw_behavior.name,
            "cache behaviour",
            behaviors.iter().map(|behavior| behavior.name.as_str()),
        );
        let pattern = &raw_behavior.path_pattern;
        if pattern.is_empty() || pattern.len() > 255 {
            findings.problem(path.key("path_pattern"), "must be from 1 to 255 characters");
        } else if !pattern.starts_with('/') && pattern != "*" {
            findings.problem(
                path.key("path_pattern"),
                format!("`{pattern}` must start with `/` (or be `*`, every path)"),
            );
        }
        if raw_behavior.min_ttl_seconds > raw_behavior.max_ttl_seconds {
            findings.problem(
                path.key("min_ttl_seconds"),
                "must not be above max_ttl_seconds",
            );
        }
        if !(raw_behavior.min_ttl_seconds..=raw_behavior.max_ttl_seconds)
            .contains(&raw_behavior.default_ttl_seconds)
            && raw_behavior.default_ttl_seconds != 0
        {
            findings.problem(
                path.key("default_ttl_seconds"),
                "must be from min_ttl_seconds to max_ttl_seconds (or 0)",
            );
        }
        if raw_behavior.max_ttl_seconds > 3_153_600_000 {
            findings.problem(path.key("max_ttl_seconds"), "must be at most 100 years");
        }
        if raw_behavior.error_caching_min_ttl_seconds > 31_536_000 {
            findings.problem(
                path.key("error_caching_min_ttl_seconds"),
                "must be from 0 to 31536000 (a year)",
            );
        }
        let query_strings = match &raw_behavior.query_strings {
            crate::raw::RawQueryStrings::Keyword(keyword) if keyword == "all" => QueryStrings::All,
            crate::raw::RawQueryStrings::Keyword(keyword) if keyword == "none" => {
                QueryStrings::None
            }
            crate::raw::RawQueryStrings::Keyword(keyword) => {
                findings.problem(
                    path.key("query_strings"),
                    format!("`{keyword}` is not \"all\", \"none\", a list of parameter names or {{ all_except = [...] }}"),
                );
                QueryStrings::All
            }
            crate::raw::RawQueryStrings::Only(names) => {
                if names.is_empty() {
                    findings.problem(
                        path.key("query_strings"),
                        "an empty list keeps no parameter: write \"none\"",
                    );
                }
                QueryStrings::Only(names.clone())
            }
            crate::raw::RawQueryStrings::AllExcept(crate::raw::RawAllExcept { all_except }) => {
                if all_except.is_empty() {
                    findings.problem(
                        path.key("query_strings").key("all_except"),
                        "an empty list leaves out no parameter: write \"all\"",
                    );
                }
                QueryStrings::AllExcept(all_except.clone())
            }
        };
        if let Some(shield) = &raw_behavior.origin_shield
            && !regions.contains(&shield.as_str())
        {
            findings.problem(
                path.key("origin_shield"),
                format!("no region is named `{shield}`"),
            );
        }
        let origin_failover = raw_behavior
            .origin_failover
            .as_ref()
            .map(|raw| origin_failover(raw, regions, &path.key("origin_failover"), findings));
        let (response_headers, remove_response_headers) = response_header_edits(
            &raw_behavior.response_headers,
            &raw_behavior.remove_response_headers,
            &path,
            findings,
        );
        for (index, header) in raw_behavior.headers.iter().enumerate() {
            let valid = !header.is_empty()
                && header
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte));
            if !valid {
                findings.problem(
                    path.key("headers").index(index),
                    format!("`{header}` is not a header name"),
                );
            }
        }
        behaviors.push(CacheBehavior {
            name: raw_behavior.name.clone(),
            path_pattern: raw_behavior.path_pattern.clone(),
            min_ttl: Duration::from_secs(raw_behavior.min_ttl_seconds),
            default_ttl: Duration::from_secs(raw_behavior.default_ttl_seconds),
            max_ttl: Duration::from_secs(raw_behavior.max_ttl_seconds),
            error_caching_min_ttl: Duration::from_secs(raw_behavior.error_caching_min_ttl_seconds),
            honour_origin: raw_behavior.honour_origin,
            honour_client: raw_behavior.honour_client,
            store_set_cookie: raw_behavior.store_set_cookie,
            query_strings,
            headers: raw_behavior.headers.clone(),
            cookies: raw_behavior.cookies.clone(),
            compress: raw_behavior.compress,
            origin_headers: origin_selection(
                &raw_behavior.origin_headers,
                true,
                &path.key("origin_headers"),
                findings,
            ),
            origin_cookies: origin_selection(
                &raw_behavior.origin_cookies,
                false,
                &path.key("origin_cookies"),
                findings,
            ),
            origin_shield: raw_behavior.origin_shield.clone(),
            origin_failover,
            response_headers,
            remove_response_headers,
        });
    }
    if raw.disk_mib > 16 * 1_048_576 {
        findings.problem(path.key("disk_mib"), "must be at most 16777216 (16 TiB)");
    }
    let error_responses = raw
        .error_responses
        .iter()
        .enumerate()
        .map(|(index, raw)| {
            error_response(raw, &path.key("error_responses").index(index), findings)
        })
        .collect();
    EdgeCache {
        disk_bytes: raw.disk_mib * 1024 * 1024,
        memory_bytes: raw.memory_mib * 1024 * 1024,
        max_object_bytes: raw.max_object_kib * 1024,
        behaviors,
        error_responses,
    }
}

/// A custom error response, checked: CloudFront's codes, path patterns as a behaviour's,
/// and a page path a request could ask for.
fn error_response(
    raw: &crate::raw::RawErrorResponse,
    at: &FieldPath,
    findings: &mut Findings,
) -> ErrorResponse {
    if !CUSTOM_ERROR_CODES.contains(&raw.error_code) {
        findings.problem(
            at.key("error_code"),
            format!(
                "{} is not one of 400, 403, 404, 405, 414, 416, 500, 501, 502, 503 and 504",
                raw.error_code
            ),
        );
    }
    if let Some(code) = raw.response_code
        && code != 200
        && !CUSTOM_ERROR_CODES.contains(&code)
    {
        findings.problem(
            at.key("response_code"),
            format!("{code} is not 200 nor one of the error codes"),
        );
    }
    if raw.paths.is_empty() {
        findings.problem(
            at.key("paths"),
            "must list at least one path pattern (\"*\" for every path)",
        );
    }
    for (index, pattern) in raw.paths.iter().enumerate() {
        if pattern.is_empty() || pattern.len() > 255 {
            findings.problem(
                at.key("paths").index(index),
                "must be from 1 to 255 characters",
            );
        } else if !pattern.starts_with('/') && pattern != "*" {
            findings.problem(
                at.key("paths").index(index),
                format!("`{pattern}` must start with `/` (or be `*`, every path)"),
            );
        }
    }
    let page = &raw.response_page_path;
    if !page.starts_with('/')
        || page.len() > 1024
        || page.parse::<http::uri::PathAndQuery>().is_err()
    {
        findings.problem(
            at.key("response_page_path"),
            format!("`{page}` is not a path of at most 1024 characters that starts with `/`"),
        );
    }
    ErrorResponse {
        error_code: raw.error_code,
        paths: raw.paths.clone(),
        response_page_path: page.clone(),
        response_code: raw.response_code,
    }
}

/// A name field: lowercase letters, digits and dashes, and not one of the `earlier` names
/// of its kind (`what`, as "target group").
pub(crate) fn check_name<'n>(
    findings: &mut Findings,
    path: &FieldPath,
    name: &str,
    what: &str,
    mut earlier: impl Iterator<Item = &'n str>,
) {
    if !is_name(name) {
        findings.problem(
            path.clone(),
            format!("`{name}` is not a name: use lowercase letters, digits and dashes"),
        );
    }
    if earlier.any(|other| other == name) {
        findings.problem(path.clone(), format!("{what} `{name}` is listed twice"));
    }
}

/// The most rules one listener may have: ALB's default quota.
pub const MAX_RULES_PER_LISTENER: usize = 100;

fn check_patterns(findings: &mut Findings, path: &FieldPath, patterns: &[String], is_path: bool) {
    if patterns.len() > 5 {
        findings.problem(path.clone(), "lists at most 5 values");
    }
    for (index, pattern) in patterns.iter().enumerate() {
        if pattern.is_empty() || pattern.len() > 128 {
            findings.problem(path.index(index), "must be from 1 to 128 characters");
        } else if is_path && !pattern.starts_with('/') && !pattern.starts_with('*') {
            findings.problem(
                path.index(index),
                format!("`{pattern}` must start with `/`"),
            );
        }
    }
}

/// What a condition's regular expressions read, as the edge compiles them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expressions {
    /// The path (`rules::path_expression`).
    Path,
    /// The host, case-insensitive (`rules::host_expression`).
    Host,
    /// A header's bytes, without Unicode (`rules::header_expression`).
    Header,
}

/// A condition's regular expressions, checked as the edge compiles them: 1 to 128 bytes
/// each, within small compiled limits.
fn check_expressions(
    findings: &mut Findings,
    at: &FieldPath,
    expressions: &[String],
    kind: Expressions,
) {
    for (index, expression) in expressions.iter().enumerate() {
        let at = at.index(index);
        let compiled = match kind {
            Expressions::Header => regex::bytes::RegexBuilder::new(expression)
                .unicode(false)
                .dot_matches_new_line(true)
                .size_limit(64 * 1024)
                .dfa_size_limit(256 * 1024)
                .build()
                .err(),
            Expressions::Path | Expressions::Host => regex::RegexBuilder::new(expression)
                .case_insensitive(kind == Expressions::Host)
                .dot_matches_new_line(kind == Expressions::Path)
                .size_limit(64 * 1024)
                .dfa_size_limit(256 * 1024)
                .build()
                .err(),
        };
        if expression.is_empty() || expression.len() > 128 {
            findings.problem(at, "an expression is 1 to 128 bytes");
        } else if let Some(error) = compiled {
            findings.problem(at, format!("is not a regular expression: {error}"));
        }
    }
}

/// Whether `name` is an HTTP header name a rule may name (at most 40 bytes).
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte))
}

fn resolve_conditions(
    raw: &crate::raw::RawRule,
    path: &FieldPath,
    findings: &mut Findings,
) -> RuleConditions {
    check_patterns(findings, &path.key("host"), &raw.host, false);
    check_patterns(findings, &path.key("path"), &raw.path, true);
    if raw.method.len() > 5 {
        findings.problem(path.key("method"), "lists at most 5 values");
    }
    for (index, method) in raw.method.iter().enumerate() {
        if method.is_empty()
            || method.len() > 40
            || !method
                .bytes()
                .all(|byte| byte.is_ascii_uppercase() || byte == b'-' || byte == b'_')
        {
            findings.problem(
                path.key("method").index(index),
                format!("`{method}` is not an HTTP method such as GET"),
            );
        }
    }
    let mut source_ip = Vec::new();
    if raw.source_ip.len() > 5 {
        findings.problem(path.key("source_ip"), "lists at most 5 values");
    }
    for (index, block) in raw.source_ip.iter().enumerate() {
        match block.parse::<ipnet::IpNet>() {
            Ok(net) => source_ip.push(net),
            Err(_) => findings.problem(
                path.key("source_ip").index(index),
                format!("`{block}` is not a CIDR block such as 10.0.0.0/8 or 2001:db8::/32"),
            ),
        }
    }
    let mut headers = Vec::new();
    for (name, values) in &raw.header {
        let header_path = path.key("header").key(name);
        if !is_header_name(name) {
            findings.problem(
                header_path.clone(),
                format!("`{name}` is not an HTTP header name"),
            );
        }
        if values.is_empty() {
            findings.problem(header_path.clone(), "lists at least one value pattern");
        }
        check_patterns(findings, &header_path, values, false);
        headers.push((name.to_ascii_lowercase(), values.clone()));
    }
    if raw.query.len() > 5 {
        findings.problem(path.key("query"), "lists at most 5 values");
    }
    let query: Vec<(Option<String>, String)> = raw
        .query
        .iter()
        .enumerate()
        .map(|(index, condition)| {
            if condition.value.is_empty() || condition.value.len() > 128 {
                findings.problem(
                    path.key("query").index(index).key("value"),
                    "must be from 1 to 128 characters",
                );
            }
            (condition.key.clone(), condition.value.clone())
        })
        .collect();
    for (expressions, patterns, key, what) in [
        (&raw.path_regex, &raw.path, "path_regex", "path"),
        (&raw.host_regex, &raw.host, "host_regex", "host"),
    ] {
        if !expressions.is_empty() && patterns.len() + expressions.len() > 5 {
            findings.problem(
                path.key(key),
                format!("with the {what} patterns, lists at most 5 values"),
            );
        }
        let kind = if key == "host_regex" {
            Expressions::Host
        } else {
            Expressions::Path
        };
        check_expressions(findings, &path.key(key), expressions, kind);
    }
    let mut header_regex = Vec::new();
    for (name, expressions) in &raw.header_regex {
        let at = path.key("header_regex").key(name);
        if !is_header_name(name) {
            findings.problem(at.clone(), format!("`{name}` is not an HTTP header name"));
        }
        if expressions.is_empty() {
            findings.problem(at.clone(), "lists at least one expression");
        } else if expressions.len() > 5 {
            findings.problem(at.clone(), "lists at most 5 values");
        }
        check_expressions(findings, &at, expressions, Expressions::Header);
        header_regex.push((name.to_ascii_lowercase(), expressions.clone()));
    }
    let conditions = RuleConditions {
        host: raw.host.clone(),
        host_regex: raw.host_regex.clone(),
        path: raw.path.clone(),
        path_regex: raw.path_regex.clone(),
        method: raw.method.clone(),
        source_ip,
        headers,
        header_regex,
        query,
    };
    let count = [
        !conditions.host.is_empty() || !conditions.host_regex.is_empty(),
        !conditions.path.is_empty() || !conditions.path_regex.is_empty(),
        !conditions.method.is_empty(),
        !raw.source_ip.is_empty(),
        !conditions.query.is_empty(),
    ]
    .into_iter()
    .filter(|set| *set)
    .count()
        + conditions.headers.len()
        + conditions.header_regex.len();
    if !(1..=5).contains(&count) {
        findings.problem(
            path.clone(),
            format!("has {count} conditions; a rule has from 1 to 5 (host, path, method, source_ip, query, and each header)"),
        );
    }
    conditions
}

fn resolve_action(
    forward: &Option<crate::raw::RawForward>,
    redirect: &Option<crate::raw::RawRedirect>,
    fixed_response: &Option<crate::raw::RawFixedResponse>,
    path: &FieldPath,
    group_names: &[&str],
    findings: &mut Findings,
) -> RuleAction {
    use crate::raw::RawForward;
    let count = [
        forward.is_some(),
        redirect.is_some(),
        fixed_response.is_some(),
    ]
    .into_iter()
    .filter(|set| *set)
    .count();
    if count != 1 {
        findings.problem(
            path.clone(),
            "needs exactly one action: forward, redirect or fixed_response",
        );
    }
    if let Some(forward) = forward {
        let forward_path = path.key("forward");
        let (target_groups, stickiness) = match forward {
            RawForward::Group(name) => (vec![(name.clone(), 1)], None),
            RawForward::Weighted(weighted) => (
                weighted
                    .target_groups
                    .iter()
                    .map(|group| (group.name.clone(), group.weight))
                    .collect::<Vec<_>>(),
                weighted.stickiness_seconds,
            ),
        };
        if !(1..=5).contains(&target_groups.len()) {
            findings.problem(
                forward_path.key("target_groups"),
                "lists from 1 to 5 target groups",
            );
        }
        for (index, (name, weight)) in target_groups.iter().enumerate() {
            let group_path = match forward {
                RawForward::Group(_) => forward_path.clone(),
                RawForward::Weighted(_) => forward_path.key("target_groups").index(index),
            };
            if !group_names.contains(&name.as_str()) {
                findings.problem(
                    group_path.clone(),
                    format!("no target group is named `{name}`"),
                );
            }
            if *weight > 999 {
                findings.problem(group_path.key("weight"), "must be from 0 to 999");
            }
        }
        if !target_groups.is_empty() && target_groups.iter().all(|(_, weight)| *weight == 0) {
            findings.problem(
                forward_path.key("target_groups"),
                "needs at least one group with a weight above 0",
            );
        }
        if let Some(seconds) = stickiness
            && !(1..=604_800).contains(&seconds)
        {
            findings.problem(
                forward_path.key("stickiness_seconds"),
                "must be from 1 to 604800 (7 days)",
            );
        }
        return RuleAction::Forward {
            target_groups,
            stickiness: stickiness.map(Duration::from_secs),
            max_body_bytes: None,
            url_rewrite: None,
            host_rewrite: None,
        };
    }
    if let Some(redirect) = redirect {
        let redirect_path = path.key("redirect");
        if !matches!(redirect.status, 301 | 302) {
            findings.problem(redirect_path.key("status"), "must be 301 or 302");
        }
        if !matches!(
            redirect.protocol.to_ascii_lowercase().as_str(),
            "http" | "https" | "#{protocol}"
        ) {
            findings.problem(
                redirect_path.key("protocol"),
                "must be http, https or #{protocol}",
            );
        }
        if !redirect.path.starts_with('/') {
            findings.problem(redirect_path.key("path"), "must start with `/`");
        }
        for (key, value) in [("host", &redirect.host), ("port", &redirect.port)] {
            if value.is_empty() {
                findings.problem(redirect_path.key(key), "must not be empty");
            }
        }
        if redirect
            .protocol
            .eq_ignore_ascii_case(&crate::raw::default_redirect_protocol())
            && redirect.host == crate::raw::default_redirect_host()
            && redirect.port == crate::raw::default_redirect_port()
            && redirect.path == crate::raw::default_redirect_path()
            && redirect.query == crate::raw::default_redirect_query()
        {
            findings.problem(
                redirect_path,
                "must change at least one of protocol, host, port, path and query (else it sends clients where they are, for ever)",
            );
        }
        return RuleAction::Redirect {
            status: redirect.status,
            protocol: redirect.protocol.to_ascii_lowercase(),
            host: redirect.host.clone(),
            port: redirect.port.clone(),
            path: redirect.path.clone(),
            query: redirect.query.clone(),
        };
    }
    if let Some(fixed) = fixed_response {
        let fixed_path = path.key("fixed_response");
        if !matches!(fixed.status, 200..=299 | 400..=599) {
            findings.problem(fixed_path.key("status"), "must be a 2xx, 4xx or 5xx status");
        }
        const CONTENT_TYPES: [&str; 5] = [
            "text/plain",
            "text/css",
            "text/html",
            "application/javascript",
            "application/json",
        ];
        if !CONTENT_TYPES.contains(&fixed.content_type.as_str()) {
            findings.problem(
                fixed_path.key("content_type"),
                format!(
                    "`{}` is not one of {}",
                    fixed.content_type,
                    CONTENT_TYPES.join(", ")
                ),
            );
        }
        if fixed.body.len() > 1024 {
            findings.problem(fixed_path.key("body"), "must be at most 1024 bytes");
        }
        return RuleAction::FixedResponse {
            status: fixed.status,
            content_type: fixed.content_type.clone(),
            body: fixed.body.clone(),
        };
    }
    RuleAction::FixedResponse {
        status: 404,
        content_type: "text/plain".to_owned(),
        body: String::new(),
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
    let matcher = parse_matcher(&raw.matcher).unwrap_or_else(|message| {
        findings.problem(path.key("matcher"), message);
        Vec::new()
    });
    if raw.port == Some(0) {
        findings.problem(path.key("port"), "must be from 1 to 65535");
    }
    if raw.grpc_codes.is_some() && raw.matcher != crate::raw::default_matcher() {
        findings.problem(
            path.key("matcher"),
            "a gRPC check is judged by grpc_codes alone: leave matcher out",
        );
    }
    let grpc_codes = raw.grpc_codes.as_ref().map(|text| {
        parse_grpc_matcher(text).unwrap_or_else(|message| {
            findings.problem(path.key("grpc_codes"), message);
            Vec::new()
        })
    });
    HealthCheck {
        matcher,
        grpc_codes,
        path: raw.path.clone(),
        port: raw.port,
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
        dns: None,
    })
}
