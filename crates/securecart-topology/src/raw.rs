//! The first stage: structs that mirror the topology file exactly.
//!
//! Every struct rejects unknown keys, every field has a doc comment, and every default is a
//! named function so that the file's documentation and the code cannot drift apart. Nothing
//! here is validated beyond its TOML type; [`crate::model`] turns these into the resolved
//! model and reports what is wrong with the field's place in the file.

use serde::Deserialize;

/// A whole topology file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTopology {
    /// A name for the deployment, shown by `securecart up` and `securecart status`.
    pub name: String,
    /// How every component logs and where it serves `/metrics`.
    #[serde(default)]
    pub telemetry: RawTelemetry,
    /// Where the shop keeps its orders, carts and catalog.
    #[serde(default)]
    pub store: RawStore,
    /// The regions, each a block of addresses split into tiers.
    pub regions: Vec<RawRegion>,
    /// The shop's services; every region runs `replicas` of each.
    pub services: Vec<RawService>,
    /// The edge that every region runs on its public tier.
    pub edge: RawEdge,
    /// The shop's DNS zone (Route 53's hosted zone), answered by a DNS server in every
    /// region; none runs without it.
    #[serde(default)]
    pub dns: Option<RawDns>,
}

/// The shop's DNS zone: its records, their routing policies and their health checks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDns {
    /// The zone's name, such as `securecart.test`.
    pub zone: String,
    /// The port each region's DNS server answers on (UDP and TCP), on the second host of
    /// the region's public tier.
    #[serde(default = "default_dns_port")]
    pub port: u16,
    /// The TTL of records that give none, in seconds.
    #[serde(default = "default_dns_ttl")]
    pub ttl: u32,
    /// Health checks that records name.
    #[serde(default)]
    pub health_checks: Vec<RawDnsHealthCheck>,
    /// Networks by location name, for IP-based routing (Route 53's CIDR collection).
    #[serde(default)]
    pub cidr_locations: Vec<RawCidrLocation>,
    /// Measured latencies that latency records use instead of the distance to a region,
    /// for the clients of a network (the most specific network that holds a client wins).
    #[serde(default)]
    pub latencies: Vec<RawDnsLatency>,
    /// The zone's records beside its SOA and NS records, which are made for it.
    #[serde(default)]
    pub records: Vec<RawDnsRecord>,
    /// A MaxMind city database (`.mmdb`, GeoIP2 or GeoLite2 City), relative to this file:
    /// geolocation records then match subdivisions (US states, say), and latency records
    /// place clients at their city. Without it, clients are placed by country from the
    /// registries' data that SecureCart ships, and by the regions' loopback blocks.
    #[serde(default)]
    pub geoip_database: Option<String>,
}

/// The default DNS port.
pub fn default_dns_port() -> u16 {
    5353
}

/// The default record TTL.
pub fn default_dns_ttl() -> u32 {
    60
}

/// A latency measured from a network's clients to a region.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDnsLatency {
    /// The region.
    pub region: String,
    /// The clients' network, such as `203.0.113.0/24`.
    pub network: String,
    /// The latency, in milliseconds (0 to 60,000).
    pub milliseconds: f64,
}

/// A location of the CIDR collection.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCidrLocation {
    /// Its name, which `ip_based` records name.
    pub name: String,
    /// Its networks, such as `10.0.0.0/8` or `2001:db8::/32`.
    pub cidrs: Vec<String>,
}

/// A health check of DNS records, as Route 53's.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDnsHealthCheck {
    /// Its name, which records name.
    pub name: String,
    /// `"http"`, `"https"` (the certificate not validated, as Route 53's checks do not),
    /// `"tcp"` or `"calculated"`.
    #[serde(rename = "type", default = "default_dns_check_type")]
    pub check_type: String,
    /// Checks a region's edge (its `/healthz`); or give `address`.
    #[serde(default)]
    pub edge: Option<String>,
    /// The `host:port` to check.
    #[serde(default)]
    pub address: Option<String>,
    /// The host name an HTTP or HTTPS check sends in `Host` (with the port, unless 80 or
    /// 443) and, over TLS, as the server name, as Route 53's "host name"
    /// (`FullyQualifiedDomainName`) does; by default the address checked.
    #[serde(default)]
    pub host: Option<String>,
    /// The path an HTTP check requests.
    #[serde(default = "default_dns_check_path")]
    pub path: String,
    /// A string the first 5,120 bytes of an HTTP answer's body must hold.
    #[serde(default)]
    pub search_string: Option<String>,
    /// Milliseconds between checks (100 to 60000; 1000 by default). A probe still
    /// unanswered when the next is due (and at least 1 s on) has failed. Not for a
    /// calculated check, which follows its children as they change.
    #[serde(default)]
    pub interval_ms: Option<u64>,
    /// Results in a row that change the check's state (1 to 10; 3 by default, as Route
    /// 53's). Not for a calculated check.
    #[serde(default)]
    pub failure_threshold: Option<u32>,
    /// Report the opposite of what the check sees.
    #[serde(default)]
    pub inverted: bool,
    /// Always healthy, without checking (always unhealthy with `inverted`: Route 53's way
    /// to take a record out of answers by hand).
    #[serde(default)]
    pub disabled: bool,
    /// A calculated check's children, by name.
    #[serde(default)]
    pub children: Vec<String>,
    /// How many children a calculated check needs healthy (default: all).
    #[serde(default)]
    pub healthy_threshold: Option<usize>,
}

/// The default kind of DNS health check.
pub fn default_dns_check_type() -> String {
    "http".to_owned()
}

/// The default path of an HTTP DNS health check.
pub fn default_dns_check_path() -> String {
    "/healthz".to_owned()
}

/// The default interval of a DNS health check.
pub fn default_dns_check_interval_ms() -> u64 {
    1000
}

/// The default failure threshold of a DNS health check (Route 53's).
pub fn default_dns_check_failure_threshold() -> u32 {
    3
}

/// One record set of the zone, with at most one routing policy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDnsRecord {
    /// The name inside the zone: `@` for the apex, `www`, or a full name ending in the
    /// zone's.
    pub name: String,
    /// `"A"`, `"AAAA"`, `"CNAME"`, `"TXT"`, `"MX"`, `"SRV"` or `"CAA"`. (The zone's SOA
    /// and NS records are made from the DNS servers; other types go in a zone file.)
    #[serde(rename = "type")]
    pub record_type: String,
    /// Its TTL, in seconds; the zone's `ttl` if none.
    #[serde(default)]
    pub ttl: Option<u32>,
    /// Tells apart the record sets of one name and type that have a routing policy.
    #[serde(default)]
    pub set_identifier: Option<String>,
    /// Its values: addresses, a name, texts, or as zone files write them, `10
    /// mail.example.com.` (MX), `0 5 5060 sip.example.com.` (SRV) or `0 issue
    /// "letsencrypt.org"` (CAA). A name without a final dot is within the zone, as in a
    /// zone file (`10 mail` is `10 mail.<zone>.`).
    #[serde(default)]
    pub values: Vec<String>,
    /// An alias of a region's edge: the edge's address (A records).
    #[serde(default)]
    pub edge: Option<String>,
    /// An alias of another record set of the zone, of the same type (`www`, say): its
    /// answer, as the target's routing policy gives it, stands for this record's values.
    #[serde(default)]
    pub alias: Option<String>,
    /// With `edge`: the record is healthy while the edge has a healthy target in some
    /// target group (Route 53's "evaluate target health" for a load balancer alias). With
    /// `alias`: while the target has a healthy record.
    #[serde(default)]
    pub evaluate_target_health: bool,
    /// The health check whose state the record takes.
    #[serde(default)]
    pub health_check: Option<String>,
    /// Weighted routing: 0 to 255.
    #[serde(default)]
    pub weight: Option<u8>,
    /// Latency routing: the record's region.
    #[serde(default)]
    pub latency: Option<String>,
    /// Failover routing: `"primary"` or `"secondary"`.
    #[serde(default)]
    pub failover: Option<String>,
    /// Geolocation routing: `{}` for the default, or a `continent`, or a `country` (with an
    /// optional `subdivision`).
    #[serde(default)]
    pub geolocation: Option<RawGeolocation>,
    /// Geoproximity routing: a `region` or a `latitude` and `longitude`, and a `bias`.
    #[serde(default)]
    pub geoproximity: Option<RawGeoproximity>,
    /// Multivalue answer routing.
    #[serde(default)]
    pub multivalue: bool,
    /// IP-based routing: the location of the CIDR collection, or `"*"` for the default.
    #[serde(default)]
    pub ip_based: Option<String>,
}

/// A geolocation record's location.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGeolocation {
    /// A continent code: AF, AN, AS, EU, NA, OC or SA.
    #[serde(default)]
    pub continent: Option<String>,
    /// An ISO 3166-1 alpha-2 country code.
    #[serde(default)]
    pub country: Option<String>,
    /// A subdivision code inside the country (a US state, say).
    #[serde(default)]
    pub subdivision: Option<String>,
}

/// A geoproximity record's place and bias.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGeoproximity {
    /// A region of the topology, whose place the record takes.
    #[serde(default)]
    pub region: Option<String>,
    /// Degrees north.
    #[serde(default)]
    pub latitude: Option<f64>,
    /// Degrees east.
    #[serde(default)]
    pub longitude: Option<f64>,
    /// -99 to 99: grows (positive) or shrinks (negative) the area the record answers.
    #[serde(default)]
    pub bias: i8,
}

/// Logging and the admin endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    /// The port of every component's admin endpoint (`/metrics`, `/healthz`), on the
    /// component's own address.
    #[serde(default = "default_admin_port")]
    pub admin_port: u16,
    /// `"text"` for readable lines or `"json"` for one JSON object per line.
    #[serde(default = "default_log_format")]
    pub log_format: String,
}

impl Default for RawTelemetry {
    fn default() -> Self {
        Self {
            admin_port: default_admin_port(),
            log_format: default_log_format(),
        }
    }
}

/// The default admin port.
pub fn default_admin_port() -> u16 {
    9090
}

/// The default log format.
pub fn default_log_format() -> String {
    "text".to_owned()
}

/// The store.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// The store's engine. Only `"sqlite"` for now: one database file per region in the
    /// data directory.
    #[serde(default = "default_store_kind")]
    pub kind: String,
}

impl Default for RawStore {
    fn default() -> Self {
        Self {
            kind: default_store_kind(),
        }
    }
}

/// The default store engine.
pub fn default_store_kind() -> String {
    "sqlite".to_owned()
}

/// One region.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegion {
    /// The region's name, such as `us-east-1`: lowercase letters, digits and dashes.
    pub name: String,
    /// The region's IPv4 block, such as `127.1.0.0/16`; every tier lies inside it.
    pub cidr: String,
    /// Where the region is, in degrees north (negative for south).
    pub latitude: f64,
    /// Where the region is, in degrees east (negative for west).
    pub longitude: f64,
    /// The region's availability zones; replicas are spread across them in order.
    pub zones: Vec<String>,
    /// The region's tiers, each a block inside `cidr`.
    pub tiers: RawTiers,
}

/// The tiers of a region, like a VPC's public, private and database subnets.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTiers {
    /// The public tier: the edge listens here.
    pub public: String,
    /// The private tier: the shop's service replicas listen here.
    pub private: String,
    /// The database tier: reserved for database servers (the SQLite store needs none).
    pub database: String,
}

/// One of the shop's services.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    /// Which service: `catalog`, `cart`, `checkout`, `payments` or `storefront`.
    pub name: String,
    /// How many replicas each region runs, spread across its zones.
    #[serde(default = "default_replicas")]
    pub replicas: u32,
    /// The port every replica listens on, on its own address in the private tier.
    #[serde(default = "default_service_port")]
    pub port: u16,
}

/// The default number of replicas per region.
pub fn default_replicas() -> u32 {
    2
}

/// The default port of a service replica.
pub fn default_service_port() -> u16 {
    8080
}

/// The edge.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEdge {
    /// The edge's listeners, each a port on the region's public address with its rules.
    pub listeners: Vec<RawListener>,
    /// Target groups: a service's replicas in the edge's region, with a health check.
    pub target_groups: Vec<RawTargetGroup>,
    /// The edge's cache, as CloudFront in front of the shop; without it nothing is cached.
    #[serde(default)]
    pub cache: Option<RawCache>,
    /// A web ACL in front of every listener that names no other (AWS WAF's); without it,
    /// none.
    #[serde(default)]
    pub waf: Option<RawWaf>,
    /// Other web ACLs, by name (`[edge.web_acls.api]`, each written as `[edge.waf]`), for
    /// the listeners that name one in their `web_acl`.
    #[serde(default)]
    pub web_acls: std::collections::BTreeMap<String, RawWaf>,
    /// Per-client limits and load shedding (AWS Shield's part); without it, none.
    #[serde(default)]
    pub shield: Option<RawShield>,
    /// Timeouts and sizes against slow or abusive clients and targets; each has a default.
    #[serde(default)]
    pub limits: RawLimits,
}

/// The edge's timeouts and sizes (ALB's idle timeout, nginx's `client_header_timeout`,
/// `proxy_read_timeout` and `large_client_header_buffers`). The client side's (header read
/// timeout, header limits, connections, idle timeout, client keepalive) take effect when
/// the edge starts; the others also on a reload.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// How long a client may take to send a request's head, and how long a keep-alive
    /// connection (HTTP/1.1 or HTTP/2) may wait for its next request; 100 to 600,000 ms.
    #[serde(default = "default_header_read_timeout_ms")]
    pub header_read_timeout_ms: u64,
    /// How long a target may take to answer with its head; 100 to 3,600,000 ms.
    #[serde(default = "default_upstream_timeout_ms")]
    pub upstream_timeout_ms: u64,
    /// How long connecting to a target may take; 100 to 60,000 ms.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// ALB's idle timeout: how long an answer's body may bring nothing from the target, or
    /// the client take nothing of it, and a switched connection (a WebSocket) carry no
    /// bytes either way, before the edge closes the connection; 1 to 4,000 s (ALB's range).
    #[serde(default = "default_idle_timeout_seconds")]
    pub idle_timeout_seconds: u64,
    /// ALB's client keepalive duration: once a client connection has lived this long, its
    /// next answer closes it (HTTP/2: `GOAWAY`), so that long-lived clients come back
    /// through DNS; 60 to 604,800 s (ALB's range), 3,600 by default.
    #[serde(default = "default_client_keep_alive_seconds")]
    pub client_keep_alive_seconds: u64,
    /// How long requests in flight may finish once the edge is told to stop; 0 to 3,600 s.
    #[serde(default = "default_drain_timeout_seconds")]
    pub drain_timeout_seconds: u64,
    /// The most headers in a request (more: 431); 1 to 1,000.
    #[serde(default = "default_max_headers")]
    pub max_headers: usize,
    /// The most KiB of a request's line and headers (more: 431); 8 to 1,024. Whatever it
    /// is, the request target and each header (its name and value) are at most 16 KiB
    /// (more: 414 and 431; over HTTP/2, 431 for both).
    #[serde(default = "default_max_header_kib")]
    pub max_header_kib: usize,
    /// The most client connections each listener holds at once (past it, new ones wait in
    /// the kernel's queue); at least 1.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// The largest request body, unless a rule sets its own (more: 413); none by default.
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            header_read_timeout_ms: default_header_read_timeout_ms(),
            upstream_timeout_ms: default_upstream_timeout_ms(),
            connect_timeout_ms: default_connect_timeout_ms(),
            idle_timeout_seconds: default_idle_timeout_seconds(),
            client_keep_alive_seconds: default_client_keep_alive_seconds(),
            drain_timeout_seconds: default_drain_timeout_seconds(),
            max_headers: default_max_headers(),
            max_header_kib: default_max_header_kib(),
            max_connections: default_max_connections(),
            max_body_bytes: None,
        }
    }
}

/// nginx's `client_header_timeout` is 60 s; 10 s cuts slow clients off sooner.
pub fn default_header_read_timeout_ms() -> u64 {
    10_000
}

/// ALB's and nginx's default wait for a target's answer is 60 s; a shop's services
/// answer in far less.
pub fn default_upstream_timeout_ms() -> u64 {
    30_000
}

/// Targets are near: 2 s to connect.
pub fn default_connect_timeout_ms() -> u64 {
    2_000
}

/// ALB's default idle timeout.
pub fn default_idle_timeout_seconds() -> u64 {
    60
}

/// ALB's default client keepalive duration: an hour.
pub fn default_client_keep_alive_seconds() -> u64 {
    3_600
}

/// Ten seconds to finish what is in flight.
pub fn default_drain_timeout_seconds() -> u64 {
    10
}

/// 100 headers, as hyper and HAProxy allow by default.
pub fn default_max_headers() -> usize {
    100
}

/// 64 KiB of head, as ALB allows (with 16 KiB per line, which the edge holds to whatever
/// this says).
pub fn default_max_header_kib() -> usize {
    64
}

/// Ten thousand connections per listener.
pub fn default_max_connections() -> usize {
    10_000
}

/// The edge's shield: each client address gets a request rate (a burst, then a steady
/// rate: past it, 429 with `Retry-After`) and a number of open connections (past it, new
/// ones are closed); the whole edge gets a number of requests in flight, past which new
/// requests are shed with 503 unless their path has priority.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShield {
    /// Requests a client address may send per second, steadily (an IPv6 client is its /64).
    #[serde(default = "default_shield_requests_per_second")]
    pub requests_per_second: u32,
    /// Requests a client may send at once above the steady rate.
    #[serde(default = "default_shield_burst")]
    pub burst: u32,
    /// Connections a client address may hold open at once.
    #[serde(default = "default_shield_connections_per_client")]
    pub connections_per_client: u32,
    /// Requests a client address may have in flight at once (past it, 429): over HTTP/2
    /// one connection carries many, so the connections alone do not bound them.
    #[serde(default = "default_shield_connections_per_client")]
    pub requests_in_flight_per_client: u32,
    /// Requests the edge works on at once (until their answer's head) before it sheds new
    /// ones with 503; none sheds nothing.
    #[serde(default)]
    pub max_requests_in_flight: Option<u64>,
    /// Path patterns (`*` and `?` wildcards) never shed: health checks, and the checkouts
    /// of shoppers already buying.
    #[serde(default = "default_shield_priority_paths")]
    pub priority_paths: Vec<String>,
    /// Client networks (CIDR) the shield never limits nor sheds, such as monitors; the
    /// other regions' edges, which fetch through this one as an origin shield, always are.
    #[serde(default)]
    pub exempt: Vec<String>,
    /// Automatic mitigation (AWS Shield Advanced's): the edge learns a baseline of each
    /// path's traffic and of its clients; when a window's traffic on a path departs from it,
    /// the clients sending far more than shoppers do are held, on that path, to the busiest
    /// shopper's rate until the flood ends.
    #[serde(default)]
    pub automatic_mitigation: bool,
    /// The mitigation's counting window, in seconds (1 to 300).
    #[serde(default = "default_mitigation_window_seconds")]
    pub mitigation_window_seconds: u64,
    /// How many times its baseline a path's traffic must be to be a flood, and a client's
    /// to be held back (2 to 100).
    #[serde(default = "default_mitigation_factor")]
    pub mitigation_factor: u32,
}

/// Ten seconds: a flood is held back within about twenty.
pub fn default_mitigation_window_seconds() -> u64 {
    10
}

/// Five times the usual traffic.
pub fn default_mitigation_factor() -> u32 {
    5
}

/// A shopper's page and its assets come well within it; a flood does not.
pub fn default_shield_requests_per_second() -> u32 {
    50
}

/// Room for a page's assets fetched at once, twice over.
pub fn default_shield_burst() -> u32 {
    100
}

/// A browser opens about six; many clients behind one NAT open more.
pub fn default_shield_connections_per_client() -> u32 {
    128
}

/// By default, health checks are never shed.
pub fn default_shield_priority_paths() -> Vec<String> {
    vec!["/healthz".to_owned()]
}

/// The edge's web ACL: SecureCart's managed rule groups, blocking with 403.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWaf {
    /// The managed rule groups, in the order they run: `core`, `sql-injection`, `xss`,
    /// `known-bad-inputs`, `command-injection`, `php`, `java`. All of them by default.
    #[serde(default)]
    pub managed_groups: Option<Vec<String>>,
    /// How much of a request body is inspected, in KiB (1 to 64).
    #[serde(default = "default_waf_body_kib")]
    pub body_inspection_kib: u64,
    /// What a body larger than that does: `continue` (its start is inspected) or `block`.
    #[serde(default = "default_waf_oversize")]
    pub oversize: String,
    /// The operator's own rules (AWS WAF's), in priority order: before the managed groups,
    /// or after them from `managed_priority` on.
    #[serde(default)]
    pub rules: Vec<RawWafRule>,
    /// The managed groups' place among the operator's rules (0 to 1000): rules with a
    /// lower priority run before them, the others after them, where a `label_match` sees
    /// the managed rules' labels. Without it, every rule of the operator's runs before.
    #[serde(default)]
    pub managed_priority: Option<u32>,
    /// Managed rules, by id (`SC-SQLI-003`), that only count: a match is logged and
    /// labelled, and neither blocks nor scores (AWS WAF's rule action override).
    #[serde(default)]
    pub count_rules: Vec<String>,
    /// How a managed group is tuned, by its name (`[edge.waf.group_overrides.sql-injection]`):
    /// AWS WAF's managed rule group statement's settings.
    #[serde(default)]
    pub group_overrides: std::collections::BTreeMap<String, RawGroupOverride>,
    /// The managed groups' paranoia level, 1 to 4 (the OWASP Core Rule Set's): each level
    /// adds stricter rules, which stop more attacks and block more ordinary requests.
    #[serde(default = "default_waf_paranoia_level")]
    pub paranoia_level: u8,
    /// Score anomalies as CRS does: each managed rule that matches adds its score (5 for
    /// a critical finding, 3 or 2 for weaker signs) and a request is blocked when its score
    /// reaches this (1 to 100; CRS's default is 5). Without it, each rule blocks by itself.
    #[serde(default)]
    pub anomaly_threshold: Option<u32>,
    /// What a request no rule decided on gets (AWS WAF's default action): `allow`, or
    /// `block` (then only what the operator's `allow` rules let through passes, as an
    /// allow list).
    #[serde(default = "default_waf_default_action")]
    pub default_action: String,
    /// With `default_action = "block"`: the answer it gives instead of the edge's 403 (as a
    /// rule's `block_response`: status, headers, content type and body).
    #[serde(default)]
    pub default_block_response: Option<RawBlockResponse>,
    /// With `default_action = "allow"`: headers added to a request no rule allowed or
    /// blocked (as a rule's `insert_headers`).
    #[serde(default)]
    pub default_insert_headers: std::collections::BTreeMap<String, String>,
    /// What the WAF's log lines and sampled requests leave out (AWS WAF's logging
    /// `RedactedFields`), besides the credentials they never show: `header:NAME`,
    /// `query_string` (and every argument read from it), `uri_path`, `method`.
    #[serde(default)]
    pub redacted_fields: Vec<String>,
    /// Domains whose hosts share challenge tokens (AWS WAF's token domains): with
    /// `["shop.example"]`, a token earned on `www.shop.example` is good on
    /// `api.shop.example` too (its cookie names the domain). Without them, a token is good
    /// on the host that earned it.
    #[serde(default)]
    pub token_domains: Vec<String>,
    /// How long a solved challenge's token is accepted by the challenge rules that do not
    /// say (and managed rules set to challenge), in seconds: 60 to 259200, 300 by default
    /// (AWS WAF's web ACL challenge config).
    #[serde(default)]
    pub challenge_immunity_seconds: Option<u32>,
    /// Which requests the WAF's log keeps (AWS WAF's logging filter); without it, those a
    /// rule blocked or counted. `[edge.waf.logging]` alone keeps every request.
    #[serde(default)]
    pub logging: Option<RawWafLogging>,
}

/// A web ACL's logging filter: the first filter whose conditions a request meets says
/// whether its line is kept; a request that meets none is kept as `default_behavior` says.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWafLogging {
    /// `keep` or `drop`: said whenever there are filters (as AWS WAF asks); without
    /// filters, `keep` (every request logged).
    #[serde(default)]
    pub default_behavior: Option<String>,
    /// The filters, in order.
    #[serde(default)]
    pub filters: Vec<RawWafLogFilter>,
}

/// One logging filter.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWafLogFilter {
    /// `keep` or `drop`.
    pub behavior: String,
    /// `meets_any` (the default) or `meets_all` of the conditions.
    #[serde(default = "default_meets_any")]
    pub requirement: String,
    /// Its conditions: `{ action = "allow" }` (let through), `"block"`, `"count"` (a rule
    /// counted the request) or `"challenge"` (a challenge rule answered it), or `{ label = "securecart:managed:core:scanner" }` (a
    /// label a matching rule gave the request; a name ending with `:`, any label of that
    /// namespace, as `label_match` reads it).
    pub conditions: Vec<RawWafLogCondition>,
}

/// One condition of a logging filter: an action or a label, one of the two.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWafLogCondition {
    /// `allow`, `block` or `count`.
    pub action: Option<String>,
    /// A label's full name.
    pub label: Option<String>,
}

fn default_meets_any() -> String {
    "meets_any".to_owned()
}

/// How one managed rule group is tuned.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGroupOverride {
    /// Every rule of the group only counts (AWS WAF's override action `Count`), to try the
    /// group on real traffic before it blocks.
    #[serde(default)]
    pub count_all: bool,
    /// Only the requests this statement matches are inspected by the group (AWS WAF's
    /// scope-down statement), as a rule's `statement` is written, of at most 10
    /// statements. It runs before each of the group's rules: a `label_match` in it also
    /// sees the labels of the group's own rules that matched before (on AWS WAF, only
    /// those of the rules before the group).
    #[serde(default)]
    pub scope_down: Option<RawStatement>,
    /// Rules of the group given another action, by id: `allow`, `block`, `count` or
    /// `challenge` (with the web ACL's `challenge_immunity_seconds`; AWS WAF's rule action
    /// overrides).
    #[serde(default)]
    pub rule_actions: std::collections::BTreeMap<String, String>,
}

/// AWS WAF's usual default action in front of a shop.
pub fn default_waf_default_action() -> String {
    "allow".to_owned()
}

/// CRS's default paranoia level.
pub fn default_waf_paranoia_level() -> u8 {
    1
}

/// One of the operator's own web ACL rules.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWafRule {
    /// Its name, which is its id in logs and metrics.
    pub name: String,
    /// Its place among the operator's rules: lower runs first (0 to 999).
    pub priority: u32,
    /// `allow` (let the request through, skipping later rules), `block`, `count` (log and
    /// go on), or `challenge` (AWS WAF's: a request with a token its client earned by
    /// solving the edge's challenge within the immunity time goes on, as with `count`;
    /// any other is answered with 202 and, if it accepts HTML, a page whose script solves
    /// the challenge and loads the page again).
    pub action: String,
    /// With `challenge`: how long a solved challenge's token is accepted, in seconds (60 to
    /// 259200); without it, the web ACL's `challenge_immunity_seconds`.
    #[serde(default)]
    pub immunity_seconds: Option<u32>,
    /// What a block answers instead of the edge's 403.
    #[serde(default)]
    pub block_response: Option<RawBlockResponse>,
    /// Labels it adds when it matches, which later rules' `label_match` sees.
    #[serde(default)]
    pub labels: Vec<String>,
    /// With `allow` or `count`: headers added to the request for its target when the rule
    /// matches and nothing blocks (AWS WAF's custom request handling), each name sent
    /// with `x-securecart-waf-` before it: `{ flagged = "sqli-suspect" }`.
    #[serde(default)]
    pub insert_headers: std::collections::BTreeMap<String, String>,
    /// What it matches.
    pub statement: RawStatement,
}

/// A rule's own block answer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBlockResponse {
    /// The status, 400 to 599.
    pub status: u16,
    /// Headers to add, by name.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// The body's content type (with `body`).
    #[serde(default)]
    pub content_type: Option<String>,
    /// The body.
    #[serde(default)]
    pub body: Option<String>,
}

/// A match statement, written as a table of one key: `{ ip_set = ["203.0.113.0/24"] }`,
/// `{ byte_match = { field = "header:user-agent", position = "contains", search = "sqlmap",
/// transforms = ["lowercase"] } }`, `{ and = [ ..., ... ] }`, `{ not = { ... } }`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawStatement {
    /// A string in a field, after transformations.
    ByteMatch(RawByteMatch),
    /// A regular expression over a field.
    Regex(RawRegexMatch),
    /// A field's size.
    Size(RawSizeMatch),
    /// SQL injection in a field.
    Sqli(RawFieldMatch),
    /// Cross-site scripting in a field.
    Xss(RawFieldMatch),
    /// The client's address in these networks (CIDR).
    IpSet(Vec<String>),
    /// The client's country (two-letter codes).
    GeoMatch(Vec<String>),
    /// An address from a header (`X-Forwarded-For`, for an edge behind another proxy) in
    /// these networks (AWS WAF's IP set with a forwarded IP configuration).
    ForwardedIpSet(RawForwardedIpSet),
    /// The country of the first address in a header.
    ForwardedGeoMatch(RawForwardedGeoMatch),
    /// A label an earlier rule added, or, ending with `:`, any label of that namespace
    /// (`securecart:managed:sql-injection:`, every managed SQL injection rule's).
    LabelMatch(String),
    /// A key's requests past a limit over a window (a rule's own statement only).
    RateBased(Box<RawRateBased>),
    /// Every statement matches.
    And(Vec<RawStatement>),
    /// Any statement matches.
    Or(Vec<RawStatement>),
    /// The statement does not match.
    Not(Box<RawStatement>),
}

/// An IP set read from a header.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForwardedIpSet {
    /// The header, such as `X-Forwarded-For`.
    pub header: String,
    /// Which of its addresses: `first` (the default), `last` or `any` (of the last ten).
    #[serde(default = "default_forwarded_position")]
    pub position: String,
    /// What a request whose entry there is not an address gets: `match` or `no_match`. A
    /// request without the header never matches (AWS WAF does not apply the statement).
    pub fallback: String,
    /// The networks (CIDR, or single addresses).
    pub networks: Vec<String>,
}

fn default_forwarded_position() -> String {
    "first".to_owned()
}

/// A geo match read from a header's first address.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForwardedGeoMatch {
    /// The header, such as `X-Forwarded-For`.
    pub header: String,
    /// What a request whose first entry there is not an address gets: `match` or
    /// `no_match`. A request without the header never matches.
    pub fallback: String,
    /// Two-letter country codes.
    pub countries: Vec<String>,
}

/// A string in a field.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawByteMatch {
    /// The field: `uri_path`, `query_string`, `query_argument:NAME`, `query_arguments`,
    /// `query_argument_names`, `header:NAME`, `headers`, `headers_but_credentials`,
    /// `cookies`, `method`, `body`, `body_fields`, `body_field:NAME` (one form or multipart
    /// field by name), `multipart_names`, `multipart_headers`, `json_values` and
    /// `json_keys` (the body read as JSON whatever its type, AWS WAF's JSON body with a
    /// match scope of values or keys; a body that is not JSON is read whole), and
    /// `json_values:/POINTER` and `json_keys:/POINTER` (only those at or under a JSON
    /// pointer, `/items/0/name`, as AWS WAF's included paths).
    pub field: String,
    /// `exactly`, `starts_with`, `ends_with`, `contains` or `contains_word`.
    pub position: String,
    /// The string, as the transformations leave the field.
    pub search: String,
    /// Transformations applied to the field first, in order.
    #[serde(default)]
    pub transforms: Vec<String>,
    /// With a body field, `headers`, `headers_but_credentials`, `cookies` or
    /// `cookie:NAME`: what a request gets whose body is past the web ACL's inspection
    /// limit, or whose headers or cookies are past the first 200 or 8 KiB (AWS WAF's
    /// oversize handling): `continue` (the default: what is within the limit is
    /// inspected), `match` or `no_match`.
    #[serde(default)]
    pub oversize: Option<String>,
}

/// A regular expression over a field.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegexMatch {
    /// The field (as for `byte_match`).
    pub field: String,
    /// The expression (the `regex` crate's syntax, on bytes, in linear time).
    pub pattern: String,
    /// Transformations applied to the field first, in order.
    #[serde(default)]
    pub transforms: Vec<String>,
    /// With a body field, `headers`, `headers_but_credentials`, `cookies` or
    /// `cookie:NAME`: what a request gets whose body is past the web ACL's inspection
    /// limit, or whose headers or cookies are past the first 200 or 8 KiB (AWS WAF's
    /// oversize handling): `continue` (the default: what is within the limit is
    /// inspected), `match` or `no_match`.
    #[serde(default)]
    pub oversize: Option<String>,
}

/// A field's size.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSizeMatch {
    /// The field (as for `byte_match`).
    pub field: String,
    /// `eq`, `ne`, `lt`, `le`, `gt` or `ge`.
    pub comparison: String,
    /// The size, in bytes.
    pub size: u64,
    /// With a body field, `headers`, `headers_but_credentials`, `cookies` or
    /// `cookie:NAME`: what a request gets whose body is past the web ACL's inspection
    /// limit, or whose headers or cookies are past the first 200 or 8 KiB (AWS WAF's
    /// oversize handling): `continue` (the default: what is within the limit is
    /// inspected), `match` or `no_match`.
    #[serde(default)]
    pub oversize: Option<String>,
}

/// A detector over a field.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFieldMatch {
    /// The field (as for `byte_match`).
    pub field: String,
    /// Transformations applied to the field first, in order.
    #[serde(default)]
    pub transforms: Vec<String>,
    /// With a body field, `headers`, `headers_but_credentials`, `cookies` or
    /// `cookie:NAME`: what a request gets whose body is past the web ACL's inspection
    /// limit, or whose headers or cookies are past the first 200 or 8 KiB (AWS WAF's
    /// oversize handling): `continue` (the default: what is within the limit is
    /// inspected), `match` or `no_match`.
    #[serde(default)]
    pub oversize: Option<String>,
}

/// A rate-based statement.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateBased {
    /// Requests a key may send within the window (10 to 2,000,000,000).
    pub limit: u64,
    /// The trailing window: 60, 120, 300 or 600 seconds.
    #[serde(default = "default_rate_window_seconds")]
    pub window_seconds: u64,
    /// What requests are counted together by, combined: `ip` (the client's address),
    /// `forwarded_ip` (the first address in `X-Forwarded-For`, or `forwarded_ip:HEADER`),
    /// `header:NAME`, `cookie:NAME`, `query_argument:NAME`, `query_string`, `uri_path`,
    /// `method`. A request without one of its keys' parts is not counted.
    #[serde(default = "default_rate_keys")]
    pub keys: Vec<String>,
    /// With a `forwarded_ip` key: what a request whose header's first entry is not an
    /// address gets, `no_match` (the default: not counted) or `match` (the rule's action,
    /// uncounted), as AWS WAF's forwarded IP fallback. A request without the header is
    /// not counted either way.
    #[serde(default)]
    pub fallback: Option<String>,
    /// Only the requests it matches are counted.
    #[serde(default)]
    pub scope_down: Option<RawStatement>,
}

/// AWS WAF's default window.
pub fn default_rate_window_seconds() -> u64 {
    300
}

/// By default, requests are counted per client address.
pub fn default_rate_keys() -> Vec<String> {
    vec!["ip".to_owned()]
}

/// The default body inspection size (AWS WAF's for ALB), in KiB.
pub fn default_waf_body_kib() -> u64 {
    8
}

/// By default an oversize body is inspected as far as the limit.
pub fn default_waf_oversize() -> String {
    "continue".to_owned()
}

/// The edge's HTTP cache: one memory store per edge, and behaviours that say which paths
/// it caches and how (CloudFront's cache behaviours and cache policies). It follows RFC
/// 9111: the origin's `Cache-Control`, `Expires`, `Surrogate-Control` and
/// `CDN-Cache-Control` decide, within each behaviour's TTLs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    /// The memory for stored responses, in MiB (1 to 1048576).
    #[serde(default = "default_cache_memory_mib")]
    pub memory_mib: u64,
    /// The largest body stored, in KiB (1 to 1048576); larger bodies stream through
    /// unstored.
    #[serde(default = "default_cache_max_object_kib")]
    pub max_object_kib: u64,
    /// A disk tier behind the memory, in MiB (0, the default, keeps memory only): objects
    /// are also written under the data directory (`<data-dir>/<region>/edge-cache`), so a
    /// restarted edge starts warm.
    #[serde(default)]
    pub disk_mib: u64,
    /// Behaviours, in order: the first whose `path_pattern` matches a request's path
    /// applies; a path none matches is not cached.
    pub behaviors: Vec<RawCacheBehavior>,
    /// Pages answered in place of errors (CloudFront's custom error responses), the first
    /// that applies.
    #[serde(default)]
    pub error_responses: Vec<RawErrorResponse>,
}

/// A custom error response: a GET's or HEAD's answer of `error_code` (the target's, or the
/// edge's own when it cannot reach one) on one of `paths` is replaced by the page at
/// `response_page_path`, which the edge fetches as a GET of the same host through the
/// listener's rules and its cache, and answered with `response_code` and `Cache-Control:
/// no-store` (never kept as the request's URL). Where the page cannot be had within 5 s,
/// the error answers as it was. The edge's own refusals before any target is asked (the
/// web ACL's 403, the shield's 429 and 503, a rule's fixed response) are not replaced.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawErrorResponse {
    /// The status replaced: 400, 403, 404, 405, 414, 416, 500, 501, 502, 503 or 504, as
    /// CloudFront's.
    pub error_code: u16,
    /// The paths whose answers it replaces, as patterns with `*` and `?` (`["*"]`, every
    /// path, by default, as on CloudFront): the shop's pages, say, and not its API.
    #[serde(default = "every_path")]
    pub paths: Vec<String>,
    /// The page's path (such as `/static/unavailable.html`), under a cache behaviour so
    /// that it is at hand when the origin is not.
    pub response_page_path: String,
    /// The status answered with the page (`error_code` by default): 200, or one of the
    /// error codes.
    #[serde(default)]
    pub response_code: Option<u16>,
}

fn every_path() -> Vec<String> {
    vec!["*".to_owned()]
}

/// The default cache memory, in MiB.
pub fn default_cache_memory_mib() -> u64 {
    256
}

/// The default largest stored body, in KiB.
pub fn default_cache_max_object_kib() -> u64 {
    8192
}

/// A cache behaviour.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCacheBehavior {
    /// Its name, in metrics.
    pub name: String,
    /// The paths it applies to, such as `/images/*` (`*` and `?` wildcards).
    pub path_pattern: String,
    /// The shortest freshness in seconds: an origin's shorter `max-age` is raised to it.
    #[serde(default)]
    pub min_ttl_seconds: u64,
    /// The freshness in seconds of a response whose origin states none (0: such responses
    /// are only kept by RFC 9111's heuristic, from `Last-Modified`).
    #[serde(default)]
    pub default_ttl_seconds: u64,
    /// The longest freshness in seconds: an origin's longer `max-age` is cut to it.
    #[serde(default = "default_cache_max_ttl_seconds")]
    pub max_ttl_seconds: u64,
    /// The freshness in seconds of an error cacheable by default (404, 405, 410, 414,
    /// 501) whose origin states none, where `default_ttl_seconds` would apply (or the
    /// origin is not honoured): CloudFront's error caching minimum TTL, 10 by default (0
    /// to a year).
    #[serde(default = "default_error_caching_min_ttl_seconds")]
    pub error_caching_min_ttl_seconds: u64,
    /// Whether the origin's freshness directives count; when not, every storable response
    /// is fresh for `default_ttl_seconds` (`no-store` and `private` are still respected).
    #[serde(default = "default_true")]
    pub honour_origin: bool,
    /// Whether a client's own `Cache-Control` and `Pragma` (`no-cache`, `max-age=0`, ...)
    /// count: RFC 9111 lets a client ask past the cache; CloudFront ignores it, so that no
    /// client can send every request to the origin (set `false` for that).
    #[serde(default = "default_true")]
    pub honour_client: bool,
    /// Whether an answer that sets a cookie is stored and handed, cookie and all, to every
    /// client it answers (RFC 9111 allows it); by default it is not stored, as nginx and
    /// Varnish do not, since a cookie is one client's.
    #[serde(default)]
    pub store_set_cookie: bool,
    /// Which query parameters make the cache key: `"all"` (the default), `"none"`, a list
    /// of parameter names, or all but some (`{ all_except = ["utm_source"] }`), as
    /// CloudFront's cache policies choose.
    #[serde(default)]
    pub query_strings: RawQueryStrings,
    /// Request headers whose values make separate objects (beyond the origin's `Vary`).
    #[serde(default)]
    pub headers: Vec<String>,
    /// Cookies whose values make separate objects.
    #[serde(default)]
    pub cookies: Vec<String>,
    /// Whether stored text (CSS, JavaScript, JSON, HTML, SVG...) is answered compressed
    /// where the client accepts it (CloudFront's "compress objects automatically"; on by
    /// default).
    #[serde(default = "default_true")]
    pub compress: bool,
    /// Which of the client's headers a miss sends the origin (CloudFront's origin request
    /// policy): `"all"` (the default), `"none"`, a list of names, or all but some
    /// (`{ all_except = ["authorization"] }`). The key's headers, `Host`, and what the edge
    /// itself needs go whatever this says.
    #[serde(default)]
    pub origin_headers: RawQueryStrings,
    /// Which of the client's cookies a miss sends the origin, as `origin_headers` (the
    /// key's cookies always go): `"none"` keeps a shopper's session from an origin whose
    /// answers are the same for everyone.
    #[serde(default)]
    pub origin_cookies: RawQueryStrings,
    /// A region whose edge every other region's edge fetches this behaviour's misses
    /// through, so that the origin sees one request per object for all regions
    /// (CloudFront's Origin Shield). Only for what is the same in every region (assets,
    /// images): each region's catalog has its own stock. An edge goes to its own origin
    /// when the shield cannot be reached.
    #[serde(default)]
    pub origin_shield: Option<String>,
    /// Where a fetch goes when this region's origin fails it (CloudFront's origin groups):
    /// `{ regions = ["us-east-1", "eu-west-1"] }` sends each region's failing misses and
    /// revalidations to the same service's replicas in the first region listed that is not
    /// its own. Only for what is the same in every region, as `origin_shield`.
    #[serde(default)]
    pub origin_failover: Option<RawOriginFailover>,
    /// Headers set on the behaviour's answers to clients, by name, the origin's own of the
    /// same name replaced (CloudFront's response headers policy): a browser's
    /// `Cache-Control` apart from the edge's, `Access-Control-Allow-Origin` for fonts, say.
    /// Not the headers that frame an answer or belong to each one. A listener's own
    /// `response_headers` come after, and win.
    #[serde(default)]
    pub response_headers: std::collections::BTreeMap<String, String>,
    /// Headers removed from the behaviour's answers to clients (the origin's
    /// `X-Powered-By`, say), as the response headers policy's removals.
    #[serde(default)]
    pub remove_response_headers: Vec<String>,
}

/// A cache behaviour's origin failover.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOriginFailover {
    /// The regions, in order: each region fails over to the first that is not its own.
    pub regions: Vec<String>,
    /// The origin's statuses that fail over, of CloudFront's failover criteria (400, 403,
    /// 404, 416, 500, 502, 503, 504); 500, 502, 503 and 504 by default. An origin that
    /// cannot be reached, or does not answer in time, always fails over.
    #[serde(default = "default_failover_status_codes")]
    pub status_codes: Vec<u16>,
}

fn default_failover_status_codes() -> Vec<u16> {
    vec![500, 502, 503, 504]
}

/// The default longest freshness: a year.
pub fn default_cache_max_ttl_seconds() -> u64 {
    31_536_000
}

fn default_true() -> bool {
    true
}

/// The query parameters of a cache key.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawQueryStrings {
    /// `"all"` or `"none"`.
    Keyword(String),
    /// Only these parameters.
    Only(Vec<String>),
    /// Every parameter but these.
    AllExcept(RawAllExcept),
}

/// `{ all_except = [...] }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAllExcept {
    /// The parameters left out of the key (tracking ones, say).
    pub all_except: Vec<String>,
}

impl Default for RawQueryStrings {
    fn default() -> Self {
        RawQueryStrings::Keyword("all".to_owned())
    }
}

fn default_error_caching_min_ttl_seconds() -> u64 {
    10
}

/// A listener, like an ALB listener: a port, rules in priority order, a default action.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    /// The listener's name, in logs and metrics.
    pub name: String,
    /// The port, on the region's public (edge) address.
    pub port: u16,
    /// `http` or `https` (TLS 1.2 and 1.3, HTTP/2 by ALPN).
    #[serde(default = "default_protocol")]
    pub protocol: String,
    /// For `https`: certificate chains and their keys (PEM files, relative to the topology
    /// file); the first is the default, and the others are chosen by SNI. Without any, the
    /// edge makes a self-signed certificate for `localhost` and its address when it starts,
    /// so that https works out of the box on one machine.
    #[serde(default)]
    pub certificates: Vec<RawCertificate>,
    /// What happens to a request that no rule matches.
    pub default_action: RawAction,
    /// The rules; the one with the lowest priority number among those that match wins.
    #[serde(default)]
    pub rules: Vec<RawRule>,
    /// The web ACL in front of its rules: the name of one of `[edge.web_acls]`, or
    /// `"none"`; without it, `[edge.waf]` (if there is one).
    #[serde(default)]
    pub web_acl: Option<String>,
    /// Headers set on every answer of the listener, by name, the target's own of the same
    /// name replaced (ALB's response header modification): `Strict-Transport-Security` on
    /// an https listener, say. Not the headers that frame an answer or its connection.
    #[serde(default)]
    pub response_headers: std::collections::BTreeMap<String, String>,
    /// Headers removed from every answer of the listener (a target's `Server` or
    /// `X-Powered-By`, say), as CloudFront's response headers policy removes them. Not the
    /// headers that frame an answer or its connection, nor `Date`. (`Set-Cookie` removes
    /// the target's cookies: the edge's own stickiness cookies are added after.)
    #[serde(default)]
    pub remove_response_headers: Vec<String>,
    /// What becomes of a request's `X-Forwarded-For` (ALB's
    /// `routing.http.xff_header_processing.mode`): `append` (the default), `preserve` or
    /// `remove`.
    #[serde(default)]
    pub xff_header_processing: Option<String>,
    /// Whether the client's port follows its address where the edge appends it
    /// (`routing.http.xff_client_port.enabled`).
    #[serde(default)]
    pub xff_client_port: bool,
    /// For `https`: the TLS versions offered, `"tls12"` (TLS 1.2 and 1.3, the default) or
    /// `"tls13"` (TLS 1.3 only), as ALB's security policies choose; rustls offers only
    /// its safe cipher suites either way.
    #[serde(default)]
    pub tls_policy: Option<String>,
    /// For `https`: whether HTTP/2 is offered by ALPN (ALB's `routing.http2.enabled`;
    /// `true` by default).
    #[serde(default)]
    pub http2: Option<bool>,
    /// For `https`: whether the targets are told the TLS version and cipher suite of each
    /// client's session, in `X-SecureCart-Tls-Version` and `X-SecureCart-Tls-Cipher-Suite`
    /// (ALB's `routing.http.x_amzn_tls_version_and_cipher_suite.enabled`).
    #[serde(default)]
    pub tls_headers: bool,
    /// For `https`: mutual TLS, as ALB's mutual authentication: `{ mode = "verify",
    /// trust_store = "partners-ca.pem" }` (a client certificate chaining to one of the
    /// file's CA certificates is required; the file is relative to the topology file) or
    /// `{ mode = "passthrough" }` (any client certificate is taken, and the targets judge
    /// it). The client's certificate goes to the targets in `X-SecureCart-Mtls-Clientcert`.
    #[serde(default)]
    pub mtls: Option<RawMtls>,
    /// Whether headers whose names are not letters, digits and `-` (`X_Forwarded_For`,
    /// which CGI and WSGI applications read as `X-Forwarded-For`) are removed before a
    /// request goes to a target (ALB's `routing.http.drop_invalid_header_fields.enabled`).
    #[serde(default)]
    pub drop_invalid_header_fields: bool,
    /// What becomes of requests that do not comply with RFC 9112 and that servers may read
    /// differently (request smuggling), as ALB's `routing.http.desync_mitigation_mode`:
    /// `"defensive"` (the default: ambiguous requests are routed and their connections
    /// closed, but those framed two ways are refused), `"strictest"` (only compliant
    /// requests are routed) or `"monitor"` (every request the edge can frame is routed,
    /// and counted; only the target's connection is closed after an ambiguous one).
    /// Severe ones are refused in every mode. The access log's
    /// `classification` and `classification_reason` say why a request did not comply.
    #[serde(default)]
    pub desync_mitigation_mode: Option<String>,
}

/// A listener's mutual TLS.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMtls {
    /// `verify` or `passthrough`.
    pub mode: String,
    /// With `verify`: the CA certificates (PEM) a client's must chain to.
    #[serde(default)]
    pub trust_store: Option<String>,
}

/// The default listener protocol.
pub fn default_protocol() -> String {
    "http".to_owned()
}

/// A certificate of an https listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    /// The certificate chain, leaf first (PEM).
    pub cert: String,
    /// The private key (PEM).
    pub key: String,
}

/// A listener rule: up to five conditions, all of which must hold, and one action.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// The rule's name, in logs and metrics.
    pub name: String,
    /// Its priority, from 1 to 50000, unique in its listener; lower is evaluated first.
    pub priority: u32,
    /// Host header patterns (`*` and `?` wildcards, case-insensitive); any may match.
    #[serde(default)]
    pub host: Vec<String>,
    /// Host regular expressions (ALB's regex values, as `path_regex`, case-insensitive),
    /// such as `"^[a-z]+\\.shop\\.example$"`: with `host`, one condition.
    #[serde(default)]
    pub host_regex: Vec<String>,
    /// Path patterns (`*` and `?` wildcards, case-sensitive); any may match.
    #[serde(default)]
    pub path: Vec<String>,
    /// Path regular expressions (ALB's regex values; the `regex` crate's syntax, 1 to 128
    /// bytes, matched anywhere in the path as resolved unless anchored with `^` and `$`,
    /// `.` matching a decoded newline too), such as `"^/api/v[0-9]+/orders/[0-9]+$"`: with
    /// `path` (beyond ALB, which takes one or the other), one condition that any may
    /// satisfy.
    #[serde(default)]
    pub path_regex: Vec<String>,
    /// HTTP methods, such as `GET`; any may match.
    #[serde(default)]
    pub method: Vec<String>,
    /// Client address blocks (IPv4 or IPv6 CIDR); any may match.
    #[serde(default)]
    pub source_ip: Vec<String>,
    /// Header name to value patterns (wildcards, case-insensitive): every header listed must
    /// have a value matching one of its patterns.
    #[serde(default)]
    pub header: std::collections::BTreeMap<String, Vec<String>>,
    /// Header name to value regular expressions (ALB's regex values; case-sensitive unless
    /// `(?i)`): every header listed must have a value one of its expressions matches, such
    /// as `{ user-agent = ["(?i)^curl/"] }`. Each header is one condition, apart from
    /// `header`'s.
    #[serde(default)]
    pub header_regex: std::collections::BTreeMap<String, Vec<String>>,
    /// Query parameters; any may match.
    #[serde(default)]
    pub query: Vec<RawQueryCondition>,
    /// Forward to a target group (a name), or to several by weight.
    pub forward: Option<RawForward>,
    /// Answer with a redirect.
    pub redirect: Option<RawRedirect>,
    /// Answer with a fixed response.
    pub fixed_response: Option<RawFixedResponse>,
    /// For a forward: the largest request body, in bytes; a larger one gets 413.
    pub max_body_bytes: Option<u64>,
    /// For a forward: rewrites the URL (path and query) the target is sent, as ALB's
    /// `url-rewrite` transform: `{ regex = "^/shop/(.*)$", replace = "/$1" }`. The path is
    /// the one the rules matched (dot segments removed).
    pub rewrite_url: Option<RawRewrite>,
    /// For a forward: rewrites the `Host` the target is sent, as ALB's
    /// `host-header-rewrite` transform.
    pub rewrite_host: Option<RawRewrite>,
}

/// A rewrite: the first match of `regex` replaced by `replace` (`$1`, `${name}` stand for
/// its groups); a request it does not match goes on as it is.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRewrite {
    /// The expression (the `regex` crate's syntax).
    pub regex: String,
    /// The replacement.
    pub replace: String,
}

/// An action: exactly one of its keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAction {
    /// Forward to a target group (a name), or to several by weight.
    pub forward: Option<RawForward>,
    /// Answer with a redirect.
    pub redirect: Option<RawRedirect>,
    /// Answer with a fixed response.
    pub fixed_response: Option<RawFixedResponse>,
}

/// A query condition.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQueryCondition {
    /// The parameter's name pattern; without it, any parameter's value may match.
    pub key: Option<String>,
    /// The value pattern.
    pub value: String,
}

/// A forward action: one group by name, or several by weight.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawForward {
    /// All traffic to one target group.
    Group(String),
    /// Traffic split by weight, optionally sticky.
    Weighted(RawWeightedForward),
}

/// A weighted forward.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWeightedForward {
    /// The groups, 1 to 5.
    pub target_groups: Vec<RawWeightedGroup>,
    /// How long (1 to 604800 seconds) a client stays on the group it was first sent to,
    /// from its last request (every answer renews the cookie); without it, every request
    /// is drawn by weight.
    pub stickiness_seconds: Option<u64>,
}

/// A target group with a weight.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWeightedGroup {
    /// The target group.
    pub name: String,
    /// Its weight, 0 to 999.
    #[serde(default = "default_weight")]
    pub weight: u32,
}

/// The default weight of a target group in a forward.
pub fn default_weight() -> u32 {
    1
}

/// A redirect; each part may reuse the request's with `#{protocol}`, `#{host}`, `#{port}`,
/// `#{path}` (without its leading `/`) and `#{query}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedirect {
    /// 301 or 302.
    #[serde(default = "default_redirect_status")]
    pub status: u16,
    /// `http`, `https` or `#{protocol}`.
    #[serde(default = "default_redirect_protocol")]
    pub protocol: String,
    /// The host.
    #[serde(default = "default_redirect_host")]
    pub host: String,
    /// The port.
    #[serde(default = "default_redirect_port")]
    pub port: String,
    /// The path, starting with `/`.
    #[serde(default = "default_redirect_path")]
    pub path: String,
    /// The query, without `?`.
    #[serde(default = "default_redirect_query")]
    pub query: String,
}

/// The default redirect status.
pub fn default_redirect_status() -> u16 {
    301
}

/// The default redirect protocol: the request's.
pub fn default_redirect_protocol() -> String {
    "#{protocol}".to_owned()
}

/// The default redirect host: the request's.
pub fn default_redirect_host() -> String {
    "#{host}".to_owned()
}

/// The default redirect port: the request's.
pub fn default_redirect_port() -> String {
    "#{port}".to_owned()
}

/// The default redirect path: the request's.
pub fn default_redirect_path() -> String {
    "/#{path}".to_owned()
}

/// The default redirect query: the request's.
pub fn default_redirect_query() -> String {
    "#{query}".to_owned()
}

/// A fixed response.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFixedResponse {
    /// The status: 2xx, 4xx or 5xx.
    pub status: u16,
    /// `text/plain`, `text/css`, `text/html`, `application/javascript` or `application/json`.
    #[serde(default = "default_content_type")]
    pub content_type: String,
    /// The body, at most 1024 bytes.
    #[serde(default)]
    pub body: String,
}

/// The default content type of a fixed response.
pub fn default_content_type() -> String {
    "text/plain".to_owned()
}

/// A target group.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTargetGroup {
    /// The target group's name, used by routes and in metrics.
    pub name: String,
    /// The service whose replicas (in the edge's own region) are the targets.
    pub service: String,
    /// The active health check of every target.
    #[serde(default)]
    pub health_check: RawHealthCheck,
    /// How requests are spread: `round_robin`, `least_outstanding_requests`,
    /// `weighted_random`, or `p2c_peak_ewma` (the less loaded of two random targets, by
    /// latency average times requests in flight).
    #[serde(default = "default_algorithm")]
    pub algorithm: String,
    /// With `weighted_random`: send less to a target whose server errors stand out from
    /// the other targets' while its health check passes (ALB's automatic target weights'
    /// anomaly mitigation). Anomaly detection itself is always on.
    #[serde(default)]
    pub anomaly_mitigation: bool,
    /// The protocol spoken to the targets: `http1`, or `http2` (cleartext, as gRPC needs).
    #[serde(default = "default_upstream_protocol")]
    pub protocol: String,
    /// Passive outlier ejection: a target that answers with server errors (or refuses
    /// connections, fails them, or does not answer in time) too many times in a row
    /// leaves the rotation for a while.
    #[serde(default)]
    pub outlier_detection: RawOutlierDetection,
    /// Slow start, in seconds (30 to 900; 0 turns it off): a target that joins or recovers
    /// takes a share of requests that grows linearly over this time.
    #[serde(default)]
    pub slow_start_seconds: u64,
    /// Target stickiness, in seconds (1 to 604800; 0 turns it off): the edge's cookie keeps a
    /// client on the target it was first sent to, as ALB's `lb_cookie` stickiness; every
    /// answer renews it, so the time runs from the client's last request.
    #[serde(default)]
    pub stickiness_seconds: u64,
    /// With stickiness on: the name of a cookie the application sets (its session cookie,
    /// say). The edge then pins a client only once its target has set that cookie, as ALB's
    /// `app_cookie` stickiness does; without it, every client is pinned (`lb_cookie`).
    #[serde(default)]
    pub stickiness_app_cookie: Option<String>,
    /// How long a target that leaves the group may finish its requests in flight, in
    /// seconds (0 to 3600): ALB's deregistration delay. It takes no new requests meanwhile.
    #[serde(default = "default_deregistration_delay_seconds")]
    pub deregistration_delay_seconds: u64,
    /// The group fails open, sending requests to every target, healthy or not, when fewer
    /// than this many are healthy (1 to 64; 1 by default: when none is). ALB's
    /// `target_group_health.unhealthy_state_routing.minimum_healthy_targets.count`.
    #[serde(default = "default_minimum_healthy_targets")]
    pub minimum_healthy_targets: u64,
    /// It also fails open when fewer than this percentage of its targets are healthy (1
    /// to 100; off by default): ALB's `...minimum_healthy_targets.percentage`.
    #[serde(default)]
    pub minimum_healthy_targets_percent: Option<u64>,
    /// An alias record that evaluates the edge's health (`[[dns.records]]` with
    /// `alias_edge`) is healthy while every group meets its DNS failover minimum: this
    /// many healthy targets (0 to 64; 1 by default; 0 with no percentage: the group does
    /// not count). ALB's `target_group_health.dns_failover.minimum_healthy_targets.count`.
    #[serde(default = "default_minimum_healthy_targets")]
    pub dns_failover_minimum_healthy_targets: u64,
    /// And this percentage of its targets healthy (1 to 100; off by default).
    #[serde(default)]
    pub dns_failover_minimum_healthy_targets_percent: Option<u64>,
}

fn default_minimum_healthy_targets() -> u64 {
    1
}

fn default_deregistration_delay_seconds() -> u64 {
    300
}

/// Passive outlier ejection.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutlierDetection {
    /// Whether it is on.
    #[serde(default = "default_outlier_enabled")]
    pub enabled: bool,
    /// Consecutive 5xx answers, refused or failed connections, or answers not in time,
    /// that eject a target, 1 to 100.
    #[serde(default = "default_consecutive_errors")]
    pub consecutive_errors: u32,
    /// Seconds an ejected target stays out before its health check may bring it back,
    /// 1 to 3600.
    #[serde(default = "default_ejection_seconds")]
    pub ejection_seconds: u64,
}

impl Default for RawOutlierDetection {
    fn default() -> Self {
        Self {
            enabled: default_outlier_enabled(),
            consecutive_errors: default_consecutive_errors(),
            ejection_seconds: default_ejection_seconds(),
        }
    }
}

/// Outlier ejection is on by default.
pub fn default_outlier_enabled() -> bool {
    true
}

/// The default number of consecutive errors that eject a target (Envoy's).
pub fn default_consecutive_errors() -> u32 {
    5
}

/// The default ejection time (Envoy's base ejection time).
pub fn default_ejection_seconds() -> u64 {
    30
}

/// The default protocol to targets.
pub fn default_upstream_protocol() -> String {
    "http1".to_owned()
}

/// The default balancing algorithm.
pub fn default_algorithm() -> String {
    "round_robin".to_owned()
}

/// An active HTTP health check.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    /// The path requested; an answer whose status `matcher` lists is healthy.
    #[serde(default = "default_health_path")]
    pub path: String,
    /// The port checked on each target (ALB's health check port); by default the port
    /// the target takes traffic on.
    #[serde(default)]
    pub port: Option<u16>,
    /// Milliseconds between two checks of one target.
    #[serde(default = "default_health_interval_ms")]
    pub interval_ms: u64,
    /// Milliseconds after which a check without an answer has failed.
    #[serde(default = "default_health_timeout_ms")]
    pub timeout_ms: u64,
    /// Consecutive successes that make an unhealthy target healthy.
    #[serde(default = "default_healthy_threshold")]
    pub healthy_threshold: u32,
    /// Consecutive failures that make a healthy target unhealthy.
    #[serde(default = "default_unhealthy_threshold")]
    pub unhealthy_threshold: u32,
    /// The status codes that pass: codes and ranges from 200 to 499, such as `"200"`,
    /// `"200,204"` or `"200-299"`.
    #[serde(default = "default_matcher")]
    pub matcher: String,
    /// For a group of `protocol = "http2"` serving gRPC: the check calls `path` as a gRPC
    /// method (`/grpc.health.v1.Health/Check`, say) and passes on these gRPC status codes
    /// (0 to 99: `"0"`, or `"12"`, UNIMPLEMENTED, which any gRPC server answers to a method
    /// it does not have), as ALB's gRPC health checks.
    #[serde(default)]
    pub grpc_codes: Option<String>,
}

impl Default for RawHealthCheck {
    fn default() -> Self {
        Self {
            path: default_health_path(),
            port: None,
            interval_ms: default_health_interval_ms(),
            timeout_ms: default_health_timeout_ms(),
            healthy_threshold: default_healthy_threshold(),
            unhealthy_threshold: default_unhealthy_threshold(),
            matcher: default_matcher(),
            grpc_codes: None,
        }
    }
}

/// The default health check path.
pub fn default_health_path() -> String {
    "/healthz".to_owned()
}

/// The default interval between health checks.
pub fn default_health_interval_ms() -> u64 {
    2_000
}

/// The default health check timeout.
pub fn default_health_timeout_ms() -> u64 {
    1_000
}

/// The default healthy threshold.
pub fn default_healthy_threshold() -> u32 {
    2
}

/// The default health check matcher: 200, as ALB's.
pub fn default_matcher() -> String {
    "200".to_owned()
}

/// The default unhealthy threshold.
pub fn default_unhealthy_threshold() -> u32 {
    2
}
