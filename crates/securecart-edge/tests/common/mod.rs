//! What the edge's integration tests share: an edge bound and served in a task of the
//! test, and stopped like a process that gets SIGTERM.

// Each test binary includes this module and uses only part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::routing::get;
use securecart_cache::CachePolicy;
use securecart_edge::actions::ActionConfig;
use securecart_edge::{
    CacheBehavior, CacheConfig, Control, Edge, EdgeConfig, HealthCheckConfig, Limits,
    ListenerConfig, OriginFailover, TargetGroupConfig,
};
use securecart_testkit::{TestServer, serve};
use tokio::sync::oneshot;

/// A health check of `/healthz` every 200 ms, quick to decide either way.
pub fn quick_health_check() -> HealthCheckConfig {
    HealthCheckConfig {
        protocol: None,
        path: "/healthz".to_owned(),
        port: None,
        interval: Duration::from_millis(200),
        timeout: Duration::from_millis(500),
        healthy_threshold: 1,
        unhealthy_threshold: 2,
        matcher: vec![200..=299],
        grpc_codes: None,
    }
}

/// An edge of one plain-HTTP listener on a free loopback port that forwards everything to
/// the group `group` of `targets`, without cache, web ACL or admin token: change the fields
/// to taste.
pub fn one_listener(group: &str, targets: Vec<SocketAddr>) -> EdgeConfig {
    EdgeConfig {
        region: "test-1".to_owned(),
        listeners: vec![ListenerConfig {
            name: "http".to_owned(),
            listen: "127.0.0.1:0".parse().expect("address"),
            rules: Vec::new(),
            default_action: ActionConfig::forward(group),
            tls: None,
            waf: None,
            response_headers: Vec::new(),
            remove_response_headers: Vec::new(),
            forwarded_for: Default::default(),
            drop_invalid_header_fields: false,
            desync_mitigation_mode: Default::default(),
            tls_headers: false,
        }],
        admin: "127.0.0.1:0".parse().expect("address"),
        target_groups: vec![TargetGroupConfig::new(group, targets, quick_health_check())],
        limits: Limits {
            drain_timeout: Duration::from_secs(2),
            ..Limits::default()
        },
        admin_token: None,
        cache: None,
        shield: None,
        upstream_source: None,
    }
}

/// An edge serving in the background.
pub struct RunningEdge {
    /// Its first listener, as `scheme://address`.
    pub url: String,
    /// Its admin address.
    pub admin: SocketAddr,
    /// Its control plane.
    pub control: Arc<Control>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningEdge {
    /// Binds `config` and serves it; `scheme` (`http` or `https`) prefixes `url`.
    pub async fn start(config: EdgeConfig, scheme: &str) -> Self {
        let edge = Edge::bind(config).await.expect("edge binds");
        let url = format!("{scheme}://{}", edge.local_addr().expect("address"));
        let admin = edge.admin_addr().expect("admin address");
        let control = edge.control();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(edge.serve(async move {
            let _ = stopped.await;
        }));
        Self {
            url,
            admin,
            control,
            stop: Some(stop),
            task,
        }
    }

    /// Shuts the edge down (it drains) and waits for it, at most 10 s.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.task).await;
    }
}

/// A server that answers every path with `status`, `text` and a minute of freshness
/// (and `/healthz` with 200).
pub async fn answering(status: StatusCode, text: &'static str) -> TestServer {
    serve(
        "127.0.0.1",
        Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .fallback(
                move || async move { (status, [(header::CACHE_CONTROL, "max-age=60")], text) },
            ),
    )
    .await
}

/// An edge caching `/static/*` in front of the group `origin`, failing over to the group
/// `secondary`, and fetching through the group `shield` first if given.
pub async fn start_failing_over(
    origin: SocketAddr,
    secondary: SocketAddr,
    shield: Option<SocketAddr>,
) -> RunningEdge {
    let mut config = one_listener("origin", vec![origin]);
    for (name, address) in [("secondary", Some(secondary)), ("shield", shield)] {
        if let Some(address) = address {
            config.target_groups.push(TargetGroupConfig::new(
                name,
                vec![address],
                quick_health_check(),
            ));
        }
    }
    config.cache = Some(CacheConfig {
        capacity_bytes: 16 * 1024 * 1024,
        max_object_bytes: 16 * 1024,
        behaviors: vec![CacheBehavior {
            name: "static".to_owned(),
            path_pattern: "/static/*".to_owned(),
            policy: CachePolicy::default(),
            origin_shield: shield.map(|_| "shield".to_owned()),
            origin_failover: Some(OriginFailover {
                groups: vec![("origin".to_owned(), "secondary".to_owned())],
                status_codes: vec![StatusCode::SERVICE_UNAVAILABLE],
            }),
            response_headers: Vec::new(),
            remove_response_headers: Vec::new(),
        }],
        disk: None,
        error_responses: Vec::new(),
        peers: Vec::new(),
    });
    RunningEdge::start(config, "http").await
}

/// Mangles `bytes` for robustness tests: one to three changes, each a byte replaced by
/// one of `noise`, one of `noise` inserted, a byte removed, or the rest cut off.
pub fn mangle(bytes: &mut Vec<u8>, random: &mut impl rand::Rng, noise: &[u8]) {
    for _ in 0..random.random_range(1..4) {
        if bytes.is_empty() {
            return;
        }
        let at = random.random_range(0..bytes.len());
        match random.random_range(0..4) {
            0 => bytes[at] = noise[random.random_range(0..noise.len())],
            1 => bytes.insert(at, noise[random.random_range(0..noise.len())]),
            2 => {
                bytes.remove(at);
            }
            _ => bytes.truncate(at),
        }
    }
}

/// Log lines written while it lives, as the edge writes them with `log_format = "json"`.
#[derive(Clone, Default)]
pub struct Captured(pub Arc<parking_lot::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// The process's one subscriber, writing JSON lines here. (Set once per test binary,
    /// whose one test it serves: a subscriber set for one thread misses events whose
    /// interest tracing cached while other tests' threads had none.)
    pub fn install() -> Self {
        let captured = Self::default();
        let writer = captured.clone();
        tracing::subscriber::set_global_default(
            tracing_subscriber::fmt()
                .json()
                .with_writer(move || writer.clone())
                .finish(),
        )
        .expect("the only subscriber");
        captured
    }

    /// The lines of `target` written so far, as JSON: each one's fields.
    pub fn lines(&self, target: &str) -> Vec<serde_json::Value> {
        let text = String::from_utf8(self.0.lock().clone()).expect("text");
        text.lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|line| line["target"] == target)
            .map(|line| line["fields"].clone())
            .collect()
    }

    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().clone()).expect("text")
    }
}
