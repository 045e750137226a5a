//! What an edge needs to run: its listeners with their rules, its admin address and its
//! target groups with the addresses of their targets. The binary derives it from the
//! topology (or from `securecart proxy`'s flags); the edge knows nothing of topology files.

use std::net::SocketAddr;
use std::time::Duration;

use crate::actions::ActionConfig;
use crate::rules::Rule;

/// One edge.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// The region, in logs and metrics.
    pub region: String,
    /// Where clients connect, each with its rules.
    pub listeners: Vec<ListenerConfig>,
    /// Where `/metrics`, `/healthz` and `/targets` are served.
    pub admin: SocketAddr,
    /// Target groups.
    pub target_groups: Vec<TargetGroupConfig>,
    /// Limits and timeouts of the listeners and the upstream client.
    pub limits: Limits,
    /// The token the admin API's changes need (`Authorization: Bearer ...`); without one,
    /// the admin API only reads.
    pub admin_token: Option<String>,
    /// The cache (CloudFront's role); none forwards everything.
    pub cache: Option<CacheConfig>,
    /// Per-client limits (AWS Shield's role); none lets every client send what it will.
    pub shield: Option<crate::shield::ShieldConfig>,
    /// The address connections to targets leave from (a host's own public address, so
    /// that another region's edge knows this one); none lets the system choose.
    pub upstream_source: Option<std::net::IpAddr>,
}

/// The edge's HTTP cache: one store for every listener, and the behaviours that say which
/// paths it caches and how.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// About how many bytes of responses the memory store holds.
    pub capacity_bytes: u64,
    /// The largest body stored; larger ones stream through unstored.
    pub max_object_bytes: usize,
    /// Cache behaviours, in order: the first whose path pattern matches applies; a path
    /// none matches is not cached.
    pub behaviors: Vec<CacheBehavior>,
    /// A disk tier behind the memory, kept across restarts; none keeps memory only.
    pub disk: Option<CacheDisk>,
    /// Pages answered in place of errors (CloudFront's custom error responses), the first
    /// that applies.
    pub error_responses: Vec<ErrorResponse>,
    /// The addresses of the edges that may fetch through this one as their origin shield:
    /// they are answered as the origin answered, without the behaviours' response header
    /// edits, so that what they store is the origin's.
    pub peers: Vec<std::net::IpAddr>,
}

/// A custom error response, as CloudFront's: a GET or HEAD answered with `error_code`,
/// by its target or by the edge when it cannot reach one, is answered instead with the
/// page at `response_page_path` (fetched as a GET of the same host through the listener's
/// rules, and through the cache where a behaviour covers it), with `response_code` and
/// `Cache-Control: no-store`. When the page cannot be had within 5 s, the error answers as
/// it was. Only the answers of the cache and upstream stages are replaced: the edge's own
/// refusals before them (the web ACL's, the shield's, a fixed response) are not.
#[derive(Debug, Clone)]
pub struct ErrorResponse {
    /// The status it replaces.
    pub error_code: http::StatusCode,
    /// The paths whose answers it replaces (patterns with `*` and `?`, as rules'): the
    /// shop's pages, say, and not its API, whose clients read JSON. (CloudFront's apply to
    /// every path.)
    pub paths: Vec<String>,
    /// The page's path, such as `/static/unavailable.html`.
    pub response_page_path: http::uri::PathAndQuery,
    /// The status answered with the page; none keeps `error_code`.
    pub response_code: Option<http::StatusCode>,
}

/// The cache's disk tier.
#[derive(Debug, Clone)]
pub struct CacheDisk {
    /// Where its files are (created if missing).
    pub directory: std::path::PathBuf,
    /// About how many bytes of files it keeps.
    pub capacity_bytes: u64,
}

impl CacheConfig {
    /// One behaviour for every path that follows the origin's headers (RFC 9111 as is),
    /// in a store of `capacity_bytes`: what `securecart proxy --cache` runs.
    pub fn everything(capacity_bytes: u64) -> Self {
        Self {
            capacity_bytes,
            max_object_bytes: 8 * 1024 * 1024,
            behaviors: vec![CacheBehavior {
                name: "default".to_owned(),
                path_pattern: "*".to_owned(),
                policy: securecart_cache::CachePolicy::default(),
                origin_shield: None,
                origin_failover: None,
                response_headers: Vec::new(),
                remove_response_headers: Vec::new(),
            }],
            disk: None,
            error_responses: Vec::new(),
            peers: Vec::new(),
        }
    }
}

/// A cache behaviour: a path pattern (`*` and `?` wildcards, as listener rules) and the
/// policy for what it matches.
#[derive(Debug, Clone)]
pub struct CacheBehavior {
    /// Its name, in metrics.
    pub name: String,
    /// The paths it applies to, such as `/static/*`.
    pub path_pattern: String,
    /// TTLs and key.
    pub policy: securecart_cache::CachePolicy,
    /// The target group its misses are fetched through first: an origin shield, another
    /// edge whose cache answers for every edge (CloudFront's Origin Shield). The
    /// request's own group answers when the shield cannot be reached.
    pub origin_shield: Option<String>,
    /// Where its fetches go when the origin fails them (CloudFront's origin groups); none
    /// answers with what the origin gave.
    pub origin_failover: Option<OriginFailover>,
    /// Headers set on its answers to clients, the origin's own of the same name replaced
    /// (CloudFront's response headers policy); not on what is stored. A listener's own
    /// come after.
    pub response_headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Headers removed from its answers to clients.
    pub remove_response_headers: Vec<http::HeaderName>,
}

/// A cache behaviour's origin failover, as CloudFront's origin group: a GET or HEAD the
/// behaviour fetches (a miss, a revalidation) whose origin cannot be reached, does not
/// answer in time, or answers with one of `status_codes`, is sent once more, to the
/// request's group's secondary.
#[derive(Debug, Clone)]
pub struct OriginFailover {
    /// Pairs of a target group and its secondary: another region's replicas of the same
    /// service, say. A group without one keeps its first answer.
    pub groups: Vec<(String, String)>,
    /// The origin's answers that fail over (CloudFront's failover criteria: 500, 502, 503
    /// and 504 are the usual choice).
    pub status_codes: Vec<http::StatusCode>,
}

/// A listener: an address, rules in priority order and a default action.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Its name, in logs and metrics.
    pub name: String,
    /// Where it accepts connections.
    pub listen: SocketAddr,
    /// Its rules.
    pub rules: Vec<Rule<ActionConfig>>,
    /// What happens to a request no rule matches.
    pub default_action: ActionConfig,
    /// TLS termination (HTTPS); none for plain HTTP.
    pub tls: Option<crate::tls::TlsConfig>,
    /// The web ACL in front of its rules (AWS WAF's); none lets every request through.
    pub waf: Option<crate::waf::WafConfig>,
    /// Headers set on every answer of the listener, the target's own of the same name
    /// replaced (ALB's response header modification, nginx's `add_header ... always`):
    /// `Strict-Transport-Security` on an HTTPS listener, say.
    pub response_headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Headers removed from every answer of the listener (a target's `Server` or
    /// `X-Powered-By`, say), as CloudFront's response headers policy's removals and
    /// nginx's `proxy_hide_header`.
    pub remove_response_headers: Vec<http::HeaderName>,
    /// What becomes of a request's `X-Forwarded-For` (appended to, by default).
    pub forwarded_for: crate::forward::ForwardedFor,
    /// Whether headers whose names are not letters, digits and `-` are removed before a
    /// request goes to a target (ALB's `routing.http.drop_invalid_header_fields.enabled`;
    /// off by default, as on ALB).
    pub drop_invalid_header_fields: bool,
    /// What becomes of requests that do not comply with RFC 9112 (ALB's
    /// `routing.http.desync_mitigation_mode`; `defensive` by default, as on ALB): see
    /// [`crate::guard`].
    pub desync_mitigation_mode: crate::guard::DesyncMode,
    /// Whether an https listener tells its targets the TLS version and cipher suite a
    /// client's session agreed (ALB's `routing.http.x_amzn_tls_version_and_cipher_suite`),
    /// in [`crate::forward::TLS_VERSION_HEADER`] and [`crate::forward::TLS_CIPHER_HEADER`].
    pub tls_headers: bool,
}

/// A target group.
#[derive(Debug, Clone)]
pub struct TargetGroupConfig {
    /// Its name.
    pub name: String,
    /// Its targets.
    pub targets: Vec<SocketAddr>,
    /// Its active health check.
    pub health_check: HealthCheckConfig,
    /// How requests are spread over its targets.
    pub algorithm: crate::balancer::Algorithm,
    /// The protocol spoken to its targets.
    pub protocol: UpstreamProtocol,
    /// TLS to its targets (ALB's HTTPS target groups); none: plain TCP.
    pub tls: Option<crate::target_tls::TargetTls>,
    /// The `Host` its targets are sent (nginx's `proxy_set_header Host`, Caddy's
    /// `--change-host-header`), the client's going in `X-Forwarded-Host`; none keeps the
    /// client's, as ALB does.
    pub host_header: Option<http::HeaderValue>,
    /// Passive outlier ejection; none turns it off.
    pub outlier_detection: Option<OutlierDetection>,
    /// Slow start: a target that joins or recovers takes a share of traffic that grows
    /// linearly over this window; none turns it off.
    pub slow_start: Option<Duration>,
    /// Target stickiness: the edge's cookie keeps a client on its target this long.
    pub stickiness: Option<Duration>,
    /// With stickiness on, the application cookie it follows: a client is pinned only once
    /// its target set this cookie (ALB's `app_cookie`); none pins every client (`lb_cookie`).
    pub app_cookie: Option<String>,
    /// How long a target that leaves the group (deregistered, or gone from a reloaded
    /// configuration) may finish its requests in flight before they are cut off; it takes
    /// no new requests meanwhile. ALB's deregistration delay; 300 seconds by default.
    pub deregistration_delay: Duration,
    /// Anomaly detection and mitigation (ALB's automatic target weights).
    pub anomaly: AnomalyDetection,
    /// How few healthy targets make the group fail open.
    pub minimum_healthy: MinimumHealthy,
    /// How few healthy targets make the group say, in `/targets`, that DNS should send
    /// clients elsewhere (ALB's `target_group_health.dns_failover.minimum_healthy_targets`:
    /// an alias that evaluates the edge's health is healthy while every group it counts
    /// meets its minimum); none: the group does not count (an origin shield's group,
    /// whose targets are another region's edge).
    pub dns_failover: Option<MinimumHealthy>,
}

/// A minimum of healthy targets (ALB's `target_group_health` attributes). Below it, a
/// group fails open, sending requests to all its targets, healthy or not
/// (`unhealthy_state_routing`), or asks DNS to send clients to another region
/// (`dns_failover`). Below means fewer healthy targets than `count`, or than `percent` of
/// them; by default, none. Failing open, a request that might succeed beats a certain 503,
/// and a higher minimum spares the last healthy targets a load that would take them down
/// too, when the health checks are what is wrong. (A group with no healthy target fails
/// open whatever its minimum.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinimumHealthy {
    /// At least this many targets healthy (0: no minimum count).
    pub count: usize,
    /// And, if set, at least this percentage of them (1 to 100).
    pub percent: Option<u8>,
}

impl Default for MinimumHealthy {
    fn default() -> Self {
        Self {
            count: 1,
            percent: None,
        }
    }
}

impl MinimumHealthy {
    /// Whether a group of `targets` targets, `healthy` of them healthy, is below the
    /// minimum: as on ALB, when either of its parts is not met.
    pub fn fails_open(&self, healthy: usize, targets: usize) -> bool {
        healthy < self.count
            || self
                .percent
                .is_some_and(|percent| healthy * 100 < targets * usize::from(percent))
    }
}

/// ALB's automatic target weights: every group with at least three healthy targets
/// compares each target's recent server errors (5xx answers, failed connections, answers
/// not in time) with the others', and calls a target whose rate stands out anomalous: a
/// gray failure its health check does not see. A weighted random group with mitigation on
/// then sends it less, halving its share at each assessment that finds it anomalous down to
/// a sixteenth, and doubling it back at each that does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnomalyDetection {
    /// How often the targets' errors are assessed; 10 seconds by default. Each assessment
    /// weighs the errors since the last one fully and earlier ones by halves.
    pub interval: Duration,
    /// Whether a weighted random group sends less to an anomalous target (ALB's
    /// `load_balancing.algorithm.anomaly_mitigation`); off by default, as on ALB. Other
    /// algorithms detect but do not mitigate.
    pub mitigation: bool,
}

impl Default for AnomalyDetection {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(10),
            mitigation: false,
        }
    }
}

/// Passive outlier ejection, as Envoy does: a target that answers with server errors too
/// many times in a row leaves the rotation for a while, whatever its health check says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierDetection {
    /// Consecutive 5xx answers, refused or failed connections, or answers that did not
    /// come within the upstream timeout, that eject a target.
    pub consecutive_errors: u32,
    /// How long an ejected target stays out before its health check may bring it back.
    pub ejection: Duration,
}

impl Default for OutlierDetection {
    fn default() -> Self {
        Self {
            consecutive_errors: 5,
            ejection: Duration::from_secs(30),
        }
    }
}

impl TargetGroupConfig {
    /// A round-robin group of HTTP/1.1 targets with outlier ejection on and neither slow
    /// start nor stickiness; change the fields to taste.
    pub fn new(name: &str, targets: Vec<SocketAddr>, health_check: HealthCheckConfig) -> Self {
        Self {
            name: name.to_owned(),
            targets,
            health_check,
            algorithm: crate::balancer::Algorithm::default(),
            protocol: UpstreamProtocol::default(),
            tls: None,
            host_header: None,
            outlier_detection: Some(OutlierDetection::default()),
            slow_start: None,
            stickiness: None,
            app_cookie: None,
            deregistration_delay: Duration::from_secs(300),
            anomaly: AnomalyDetection::default(),
            minimum_healthy: MinimumHealthy::default(),
            dns_failover: Some(MinimumHealthy::default()),
        }
    }
}

/// The protocol the edge speaks to a target group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 over pooled keep-alive connections.
    #[default]
    Http1,
    /// Cleartext HTTP/2 (prior knowledge), many requests per connection; gRPC needs it.
    Http2,
}

/// An active HTTP health check.
#[derive(Debug, Clone)]
pub struct HealthCheckConfig {
    /// Over TLS or not; none: as the group's traffic goes (ALB's default).
    pub protocol: Option<CheckProtocol>,
    /// The path requested on the target.
    pub path: String,
    /// The port checked (ALB's health check port); `None`: the target's traffic port.
    pub port: Option<u16>,
    /// Time between checks.
    pub interval: Duration,
    /// Time after which a check fails.
    pub timeout: Duration,
    /// Successes to become healthy.
    pub healthy_threshold: u32,
    /// Failures to become unhealthy.
    pub unhealthy_threshold: u32,
    /// The status codes that pass, as ranges (ALB's matcher).
    pub matcher: Vec<std::ops::RangeInclusive<u16>>,
    /// For an HTTP/2 group serving gRPC: the check is a gRPC call of `path` (an empty
    /// message), and passes when its `grpc-status` is one of these codes (ALB's `GrpcCode`
    /// matcher; 12, `UNIMPLEMENTED`, says a gRPC server answered, whatever it serves).
    pub grpc_codes: Option<Vec<std::ops::RangeInclusive<u16>>>,
}

/// The protocol of a health check (ALB's `HealthCheckProtocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckProtocol {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS: with the group's TLS settings if it has any, else accepting any
    /// certificate (as ALB checks its targets).
    Https,
}

/// Limits and timeouts.
#[derive(Debug, Clone)]
pub struct Limits {
    /// How long a client may take to send a request's headers; also how long a keep-alive
    /// connection may stay idle between requests (the timer starts when the connection waits
    /// for the next request), which cuts off slow and idle clients alike.
    pub header_read_timeout: Duration,
    /// How long a target may take to answer with headers.
    pub upstream_timeout: Duration,
    /// How long connecting to a target may take.
    pub connect_timeout: Duration,
    /// How long in-flight requests may finish after shutdown begins.
    pub drain_timeout: Duration,
    /// The most request headers a client may send (more: 431).
    pub max_headers: usize,
    /// The most bytes of request line and headers (more: 431); at least 8192. Whatever it
    /// is, the request target and each header (its name and value) are at most 16 KiB
    /// (more: 414 and 431; over HTTP/2, 431 for both), as ALB's lines.
    pub max_header_bytes: usize,
    /// The most client connections each listener holds at once; past it, new connections
    /// wait in the kernel's accept queue until one closes.
    pub max_connections: usize,
    /// The largest request body (more: 413), unless a rule sets its own.
    pub max_body_bytes: Option<u64>,
    /// ALB's idle timeout (60 s by default): how long an answer's body may bring nothing
    /// from the target, or the client take nothing of it, and a switched connection (a
    /// WebSocket) carry no bytes either way, before the edge closes the connection (over
    /// HTTP/2, resets the answer's stream).
    pub idle_timeout: Duration,
    /// ALB's client keepalive duration (3,600 s by default): once a client connection has
    /// lived this long, its next answer closes it (HTTP/1.1: `Connection: close`; HTTP/2:
    /// `GOAWAY`, its streams under way finishing), so that long-lived clients come back
    /// through DNS and are spread again, as a deployment moves or an edge leaves.
    pub client_keep_alive: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            upstream_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(2),
            drain_timeout: Duration::from_secs(10),
            max_headers: 100,
            max_header_bytes: 64 * 1024,
            max_connections: 10_000,
            max_body_bytes: None,
            idle_timeout: Duration::from_secs(60),
            client_keep_alive: Duration::from_secs(3600),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::MinimumHealthy;

    /// ALB's rule: a group fails open when either minimum is not met.
    #[test]
    fn a_group_fails_open_below_either_minimum() {
        let count = |count| MinimumHealthy {
            count,
            percent: None,
        };
        let percent = |count, percent| MinimumHealthy {
            count,
            percent: Some(percent),
        };
        // (minimum, healthy, targets, fails open)
        let cases = [
            (MinimumHealthy::default(), 0, 4, true),
            (MinimumHealthy::default(), 1, 4, false),
            (MinimumHealthy::default(), 0, 0, true),
            (count(0), 0, 4, false),
            (percent(0, 50), 1, 4, true),
            (percent(0, 50), 2, 4, false),
            (count(2), 1, 4, true),
            (count(2), 2, 4, false),
            (count(5), 4, 4, true),
            (percent(1, 50), 2, 4, false),
            (percent(1, 50), 1, 4, true),
            (percent(1, 50), 2, 5, true),
            (percent(1, 50), 3, 5, false),
            (percent(3, 50), 2, 4, true),
            (percent(1, 100), 3, 4, true),
            (percent(1, 100), 4, 4, false),
        ];
        for (minimum, healthy, targets, expected) in cases {
            assert_eq!(
                minimum.fails_open(healthy, targets),
                expected,
                "{minimum:?} {healthy} of {targets}"
            );
        }
    }
}
