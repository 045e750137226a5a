//! What an edge needs to run: its addresses, its path rules and its target groups with the
//! addresses of their targets. The binary derives it from the topology; the edge knows
//! nothing of topology files.

use std::net::SocketAddr;
use std::time::Duration;

/// One edge.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// The region, in logs and metrics.
    pub region: String,
    /// Where clients connect.
    pub listen: SocketAddr,
    /// Where `/metrics`, `/healthz` and `/targets` are served.
    pub admin: SocketAddr,
    /// Path rules.
    pub routes: Vec<RouteConfig>,
    /// Target groups.
    pub target_groups: Vec<TargetGroupConfig>,
    /// Limits and timeouts of the listener and the upstream client.
    pub limits: Limits,
}

/// A path rule.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// The prefix it matches.
    pub path_prefix: String,
    /// The target group's name.
    pub target_group: String,
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
}

/// An active HTTP health check.
#[derive(Debug, Clone)]
pub struct HealthCheckConfig {
    /// The path requested on the target.
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

/// Limits and timeouts.
#[derive(Debug, Clone)]
pub struct Limits {
    /// How long a client may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// How long a target may take to answer with headers.
    pub upstream_timeout: Duration,
    /// How long connecting to a target may take.
    pub connect_timeout: Duration,
    /// How long in-flight requests may finish after shutdown begins.
    pub drain_timeout: Duration,
    /// The most request headers a client may send.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            upstream_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(2),
            drain_timeout: Duration::from_secs(10),
            max_headers: 100,
        }
    }
}
