//! The edge with real upstream servers: balancing, forwarding headers, health checks, the
//! retry of a request whose target died, HTTP/2, and draining on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use securecart_edge::actions::{
    ActionConfig, FixedResponseConfig, ForwardConfig, RedirectConfig, WeightedGroup,
};
use securecart_edge::rules::{Conditions, Rule};
use securecart_edge::{EdgeConfig, HealthCheckConfig, Limits, ListenerConfig, TargetGroupConfig};
use securecart_testkit::{TestClient, TestServer, free_port, serve};

mod common;
use common::RunningEdge;

/// An upstream that says who it is, echoes what the edge sent, and has a health switch.
#[derive(Clone)]
struct Upstream {
    name: &'static str,
    healthy: Arc<AtomicBool>,
}

async fn start_upstream(name: &'static str) -> (TestServer, Arc<AtomicBool>) {
    let healthy = Arc::new(AtomicBool::new(true));
    let state = Upstream {
        name,
        healthy: Arc::clone(&healthy),
    };
    let router = Router::new()
        .route(
            "/healthz",
            get(|State(upstream): State<Upstream>| async move {
                if upstream.healthy.load(Ordering::SeqCst) {
                    StatusCode::OK
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            }),
        )
        .route(
            "/api/whoami",
            get(
                |State(upstream): State<Upstream>, headers: HeaderMap| async move {
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|value| value.to_str().ok())
                            .unwrap_or("")
                            .to_owned()
                    };
                    axum::Json(serde_json::json!({
                        "name": upstream.name,
                        "x-forwarded-for": header("x-forwarded-for"),
                        "x-forwarded-for-lines": headers
                            .get_all("x-forwarded-for")
                            .iter()
                            .map(|value| String::from_utf8_lossy(value.as_bytes()))
                            .collect::<Vec<_>>(),
                        "x-forwarded-proto": header("x-forwarded-proto"),
                        "x_forwarded_for": header("x_forwarded_for"),
                        "mtls": header("x-securecart-mtls-clientcert"),
                        "tls_version": header("x-securecart-tls-version"),
                        "tls_cipher_suite": header("x-securecart-tls-cipher-suite"),
                        "traceparent": header("traceparent"),
                        "x-amzn-trace-id": header("x-amzn-trace-id"),
                        "host": header("host"),
                        "x-forwarded-host": header("x-forwarded-host"),
                        "connection": header("connection"),
                    }))
                },
            ),
        )
        .route(
            "/api/echo",
            post(
                |State(upstream): State<Upstream>, body: String| async move {
                    format!("{}:{body}", upstream.name)
                },
            ),
        )
        .route(
            "/api/maybe-fail",
            get(|State(upstream): State<Upstream>| async move {
                if upstream.name == "a" {
                    (StatusCode::INTERNAL_SERVER_ERROR, "a is broken")
                } else {
                    (StatusCode::OK, "fine")
                }
            }),
        )
        .route(
            "/api/maybe-hang",
            get(|State(upstream): State<Upstream>| async move {
                if upstream.name == "a" {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                upstream.name
            }),
        )
        .route(
            "/api/echo-upgrade",
            get(|mut request: axum::extract::Request| async move {
                // Switch to a byte-echo protocol, as a WebSocket server switches to frames.
                let switched = hyper::upgrade::on(&mut request);
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let Ok(upgraded) = switched.await else { return };
                    let mut io = hyper_util::rt::TokioIo::new(upgraded);
                    let mut buffer = [0u8; 256];
                    while let Ok(read) = io.read(&mut buffer).await {
                        if read == 0 || io.write_all(&buffer[..read]).await.is_err() {
                            break;
                        }
                    }
                });
                axum::http::Response::builder()
                    .status(StatusCode::SWITCHING_PROTOCOLS)
                    .header("connection", "upgrade")
                    .header("upgrade", "echo")
                    .body(axum::body::Body::empty())
                    .expect("response")
            }),
        )
        .route(
            "/api/sleep/{millis}",
            get(
                |axum::extract::Path(millis): axum::extract::Path<u64>| async move {
                    tokio::time::sleep(Duration::from_millis(millis)).await;
                    "awake"
                },
            ),
        )
        .route(
            "/api/login",
            get(|State(upstream): State<Upstream>| async move {
                (
                    [("set-cookie", "shop_session=s1; Path=/; HttpOnly")],
                    upstream.name,
                )
            }),
        )
        .route(
            "/api/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(400)).await;
                "slow answer"
            }),
        )
        .with_state(state);
    (serve("127.0.0.1", router).await, healthy)
}

impl RunningEdge {
    async fn targets(&self) -> serde_json::Value {
        TestClient::http1()
            .get(&format!("http://{}/targets", self.admin))
            .await
            .json()
    }

    /// Waits until the group's healthy targets are exactly `expected`.
    async fn wait_for_healthy(&self, expected: usize) {
        for _ in 0..100 {
            if self.targets().await["target_groups"][0]["healthy"] == expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "never saw {expected} healthy targets: {}",
            self.targets().await
        );
    }
}

fn health_check() -> HealthCheckConfig {
    HealthCheckConfig {
        protocol: None,
        path: "/healthz".to_owned(),
        port: None,
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(200),
        healthy_threshold: 1,
        unhealthy_threshold: 1,
        matcher: vec![200..=299],
        grpc_codes: None,
    }
}

fn path_rule(priority: u32, pattern: &str, action: ActionConfig) -> Rule<ActionConfig> {
    Rule {
        name: format!("rule-{priority}"),
        priority,
        conditions: Conditions {
            path: vec![pattern.to_owned()],
            ..Conditions::default()
        },
        action,
    }
}

fn not_found() -> ActionConfig {
    ActionConfig::FixedResponse(FixedResponseConfig {
        status: 404,
        content_type: "application/json".to_owned(),
        body: r#"{"error":{"code":"no_route"}}"#.to_owned(),
    })
}

/// An edge whose one listener forwards `pattern` to a group of `targets` (one rule per
/// group, in order), answering 404 otherwise.
async fn start_edge(groups: Vec<(&str, &str, Vec<SocketAddr>)>) -> RunningEdge {
    let mut rules = Vec::new();
    let mut target_groups = Vec::new();
    for (index, (pattern, name, targets)) in groups.into_iter().enumerate() {
        rules.push(path_rule(
            index as u32 + 1,
            pattern,
            ActionConfig::forward(name),
        ));
        target_groups.push(TargetGroupConfig {
            tls: None,
            host_header: None,
            name: name.to_owned(),
            targets,
            health_check: health_check(),
            algorithm: Default::default(),
            protocol: Default::default(),
            outlier_detection: None,
            slow_start: None,
            stickiness: None,
            app_cookie: None,
            deregistration_delay: Duration::from_secs(300),
            anomaly: Default::default(),
            minimum_healthy: Default::default(),
            dns_failover: Some(Default::default()),
        });
    }
    start_edge_with(rules, not_found(), target_groups).await
}

async fn start_edge_with(
    rules: Vec<Rule<ActionConfig>>,
    default_action: ActionConfig,
    target_groups: Vec<TargetGroupConfig>,
) -> RunningEdge {
    start_edge_with_limits(
        rules,
        default_action,
        target_groups,
        Limits {
            drain_timeout: Duration::from_secs(5),
            ..Limits::default()
        },
    )
    .await
}

async fn start_edge_with_limits(
    rules: Vec<Rule<ActionConfig>>,
    default_action: ActionConfig,
    target_groups: Vec<TargetGroupConfig>,
    limits: Limits,
) -> RunningEdge {
    RunningEdge::start(
        EdgeConfig {
            region: "test-1".to_owned(),
            listeners: vec![ListenerConfig {
                name: "http".to_owned(),
                listen: "127.0.0.1:0".parse().expect("address"),
                rules,
                default_action,
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
            target_groups,
            limits,
            admin_token: Some(ADMIN_TOKEN.to_owned()),
            cache: None,
            shield: None,
            upstream_source: None,
        },
        "http",
    )
    .await
}

/// An edge forwarding `/api/*` to one target (without outlier detection) within `limits`,
/// once the target is healthy.
async fn start_api_edge(target: SocketAddr, limits: Limits) -> RunningEdge {
    let group = TargetGroupConfig {
        tls: None,
        host_header: None,
        outlier_detection: None,
        ..TargetGroupConfig::new("api", vec![target], health_check())
    };
    let edge = start_edge_with_limits(
        vec![path_rule(1, "/api/*", ActionConfig::forward("api"))],
        not_found(),
        vec![group],
        limits,
    )
    .await;
    edge.wait_for_healthy(1).await;
    edge
}

const ADMIN_TOKEN: &str = "test-admin-token";

async fn whoami(client: &mut TestClient, edge: &RunningEdge) -> String {
    let reply = client.get(&format!("{}/api/whoami", edge.url)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["name"].as_str().expect("name").to_owned()
}

#[tokio::test]
async fn requests_are_spread_round_robin_over_healthy_targets() {
    let (a, _) = start_upstream("a").await;
    let (b, _) = start_upstream("b").await;
    let edge = start_edge(vec![("/api/*", "api", vec![a.address, b.address])]).await;
    edge.wait_for_healthy(2).await;
    let mut client = TestClient::http1();
    let mut served = std::collections::HashMap::new();
    for _ in 0..20 {
        *served.entry(whoami(&mut client, &edge).await).or_insert(0) += 1;
    }
    assert_eq!(served.get("a"), Some(&10), "{served:?}");
    assert_eq!(served.get("b"), Some(&10), "{served:?}");
    edge.shutdown().await;
}

#[tokio::test]
async fn the_edge_tells_targets_who_the_client_was_and_continues_the_trace() {
    let (a, _) = start_upstream("a").await;
    let edge = start_edge(vec![("/api/*", "api", vec![a.address])]).await;
    edge.wait_for_healthy(1).await;
    let mut client = TestClient::http1();
    let reply = client
        .send(
            hyper::Method::GET,
            &format!("{}/api/whoami", edge.url),
            &[
                (
                    "traceparent",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                ),
                ("x-forwarded-for", "203.0.113.7"),
                ("host", "shop.example"),
            ],
            "",
        )
        .await;
    let seen = reply.json();
    assert_eq!(seen["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["host"], "shop.example");
    let traceparent = seen["traceparent"].as_str().expect("traceparent");
    assert!(
        traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{traceparent}"
    );
    assert!(
        !traceparent.contains("00f067aa0ba902b7"),
        "the edge sends its own span id"
    );
    // And ALB's header names the same trace.
    assert_eq!(
        seen["x-amzn-trace-id"],
        "Root=1-4bf92f35-77b34da6a3ce929d0e0e4736"
    );

    // Without a traceparent, the edge starts a trace, and sends it both ways.
    let started = client.get(&format!("{}/api/whoami", edge.url)).await.json();
    let traceparent = started["traceparent"].as_str().expect("traceparent");
    assert_eq!(traceparent.len(), 55);
    assert_eq!(
        started["x-amzn-trace-id"],
        format!("Root=1-{}-{}", &traceparent[3..11], &traceparent[11..35])
    );

    // A client's X-Amzn-Trace-Id continues its trace, kept with the edge's Self field.
    let reply = client
        .send(
            hyper::Method::GET,
            &format!("{}/api/whoami", edge.url),
            &[(
                "x-amzn-trace-id",
                "Root=1-67891233-abcdef012345678912345678;CalledFrom=app",
            )],
            "",
        )
        .await;
    let seen = reply.json();
    let traceparent = seen["traceparent"].as_str().expect("traceparent");
    assert!(
        traceparent.starts_with("00-67891233abcdef012345678912345678-"),
        "{traceparent}"
    );
    let amzn = seen["x-amzn-trace-id"].as_str().expect("x-amzn-trace-id");
    assert!(amzn.starts_with("Self=1-"), "{amzn}");
    assert!(
        amzn.ends_with(&format!(
            "{};Root=1-67891233-abcdef012345678912345678;CalledFrom=app",
            &traceparent[36..52]
        )),
        "{amzn}"
    );
    edge.shutdown().await;
}

#[tokio::test]
async fn a_target_that_dies_leaves_the_rotation_without_failing_requests() {
    let (a, _) = start_upstream("a").await;
    let (b, _) = start_upstream("b").await;
    let edge = start_edge(vec![("/api/*", "api", vec![a.address, b.address])]).await;
    edge.wait_for_healthy(2).await;
    let mut client = TestClient::http1();
    for _ in 0..4 {
        whoami(&mut client, &edge).await;
    }
    a.stop().await;
    // Until the health check notices, requests to the dead target fail to connect and are
    // retried on the other one: the client sees no failure.
    for _ in 0..20 {
        assert_eq!(whoami(&mut client, &edge).await, "b");
    }
    let reply = client
        .post(
            &format!("{}/api/echo", edge.url),
            &[("content-type", "text/plain")],
            "hello",
        )
        .await;
    assert_eq!(
        (reply.status.as_u16(), reply.text()),
        (200, "b:hello".to_owned())
    );
    edge.wait_for_healthy(1).await;
    let metrics = TestClient::http1()
        .get(&format!("http://{}/metrics", edge.admin))
        .await
        .text();
    assert!(
        metrics.contains("securecart_edge_healthy_targets{target_group=\"api\"} 1"),
        "{metrics}"
    );
    edge.shutdown().await;
    drop(b);
}

#[tokio::test]
async fn health_checks_take_a_failing_target_out_and_bring_it_back() {
    let (a, a_healthy) = start_upstream("a").await;
    let (b, _) = start_upstream("b").await;
    let edge = start_edge(vec![("/api/*", "api", vec![a.address, b.address])]).await;
    edge.wait_for_healthy(2).await;
    a_healthy.store(false, Ordering::SeqCst);
    edge.wait_for_healthy(1).await;
    let mut client = TestClient::http1();
    for _ in 0..10 {
        assert_eq!(whoami(&mut client, &edge).await, "b");
    }
    a_healthy.store(true, Ordering::SeqCst);
    edge.wait_for_healthy(2).await;
    let mut names = std::collections::HashSet::new();
    for _ in 0..4 {
        names.insert(whoami(&mut client, &edge).await);
    }
    assert_eq!(names.len(), 2, "a is back in rotation");
    edge.shutdown().await;
    drop((a, b));
}

/// With a minimum of two healthy targets (ALB's unhealthy state routing), a group left with
/// one fails open to all three; once two are healthy again, the unhealthy one gets nothing.
/// Its DNS failover minimum (two thirds of its targets) is met with two, not with one.
#[tokio::test]
async fn a_group_with_too_few_healthy_targets_fails_open_to_all_of_them() {
    let (a, a_healthy) = start_upstream("a").await;
    let (b, b_healthy) = start_upstream("b").await;
    let (c, _) = start_upstream("c").await;
    let group = TargetGroupConfig {
        outlier_detection: None,
        minimum_healthy: securecart_edge::config::MinimumHealthy {
            count: 2,
            percent: None,
        },
        dns_failover: Some(securecart_edge::config::MinimumHealthy {
            count: 1,
            percent: Some(66),
        }),
        ..TargetGroupConfig::new("api", vec![a.address, b.address, c.address], health_check())
    };
    let edge = start_edge_with(
        vec![path_rule(1, "/api/*", ActionConfig::forward("api"))],
        not_found(),
        vec![group],
    )
    .await;
    // (fails open, meets its DNS failover minimum)
    let state = |targets: serde_json::Value| {
        let group = &targets["target_groups"][0];
        (group["fails_open"].clone(), group["dns_healthy"].clone())
    };
    edge.wait_for_healthy(3).await;
    assert_eq!(state(edge.targets().await), (false.into(), true.into()));
    a_healthy.store(false, Ordering::SeqCst);
    b_healthy.store(false, Ordering::SeqCst);
    edge.wait_for_healthy(1).await;
    assert_eq!(state(edge.targets().await), (true.into(), false.into()));
    let mut client = TestClient::http1();
    let mut served = std::collections::HashMap::new();
    for _ in 0..30 {
        *served.entry(whoami(&mut client, &edge).await).or_insert(0) += 1;
    }
    // Round robin over all three, the two unhealthy ones too.
    assert_eq!(served.len(), 3, "{served:?}");
    b_healthy.store(true, Ordering::SeqCst);
    edge.wait_for_healthy(2).await;
    assert_eq!(state(edge.targets().await), (false.into(), true.into()));
    for _ in 0..10 {
        assert_ne!(whoami(&mut client, &edge).await, "a");
    }
    edge.shutdown().await;
    drop((a, b, c));
}

#[tokio::test]
async fn the_edge_answers_itself_when_it_cannot_forward() {
    // An address no test listens on: a port freed on 127.0.0.1 could be taken by another
    // test's server before this one connects.
    let unused = free_port("127.66.66.66");
    let edge = start_edge(vec![
        (
            "/api/*",
            "dead",
            vec![format!("127.66.66.66:{unused}").parse().expect("address")],
        ),
        ("/empty/*", "empty", Vec::new()),
    ])
    .await;
    let mut client = TestClient::http1();
    let no_route = client.get(&format!("{}/elsewhere", edge.url)).await;
    assert_eq!(no_route.status, 404);
    assert_eq!(no_route.json()["error"]["code"], "no_route");
    let unreachable = client.get(&format!("{}/api/whoami", edge.url)).await;
    assert_eq!(unreachable.status, 502);
    assert_eq!(unreachable.json()["error"]["code"], "target_unreachable");
    let empty = client.get(&format!("{}/empty/x", edge.url)).await;
    assert_eq!(empty.status, 503);
    let metrics = TestClient::http1()
        .get(&format!("http://{}/metrics", edge.admin))
        .await
        .text();
    assert!(
        metrics.contains("securecart_edge_errors_total{code=\"target_unreachable\",route=\"rule-1\",target_group=\"dead\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("securecart_edge_errors_total{code=\"no_targets\",route=\"rule-2\",target_group=\"empty\"} 1"),
        "{metrics}"
    );
    let health = TestClient::http1()
        .get(&format!("http://{}/healthz", edge.admin))
        .await;
    assert_eq!(
        health.status, 503,
        "an edge that cannot serve every route is not healthy"
    );
    edge.shutdown().await;
}

#[tokio::test]
async fn http2_clients_are_served() {
    let (a, _) = start_upstream("a").await;
    let edge = start_edge(vec![("/api/*", "api", vec![a.address])]).await;
    edge.wait_for_healthy(1).await;
    let mut client = TestClient::http2();
    let reply = client.get(&format!("{}/api/whoami", edge.url)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.version, hyper::Version::HTTP_2);
    let seen = reply.json();
    assert_eq!(seen["name"], "a");
    assert!(
        seen["host"]
            .as_str()
            .is_some_and(|host| host.starts_with("127.0.0.1:")),
        "{seen}"
    );
    edge.shutdown().await;
}

#[tokio::test]
async fn shutdown_lets_requests_in_flight_finish() {
    let (a, _) = start_upstream("a").await;
    let edge = start_edge(vec![("/api/*", "api", vec![a.address])]).await;
    edge.wait_for_healthy(1).await;
    let url = format!("{}/api/slow", edge.url);
    let in_flight = tokio::spawn(async move { TestClient::http1().get(&url).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let edge_url = edge.url.clone();
    edge.shutdown().await;
    let reply = in_flight.await.expect("request task");
    assert_eq!(
        (reply.status.as_u16(), reply.text()),
        (200, "slow answer".to_owned())
    );
    let refused = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>()
        .get(edge_url.parse().expect("uri"))
        .await;
    assert!(refused.is_err(), "a stopped edge accepts no connection");
}

#[tokio::test]
async fn rules_redirect_answer_fixed_responses_and_match_headers() {
    let (a, _) = start_upstream("a").await;
    let (b, _) = start_upstream("b").await;
    let group = |name: &str, target: SocketAddr| TargetGroupConfig {
        tls: None,
        host_header: None,
        outlier_detection: None,
        ..TargetGroupConfig::new(name, vec![target], health_check())
    };
    let rules = vec![
        path_rule(
            1,
            "/old/*",
            ActionConfig::Redirect(RedirectConfig {
                path: "/new/#{path}".to_owned(),
                ..RedirectConfig::default()
            }),
        ),
        path_rule(
            2,
            "/maintenance",
            ActionConfig::FixedResponse(FixedResponseConfig {
                status: 503,
                content_type: "text/plain".to_owned(),
                body: "back soon".to_owned(),
            }),
        ),
        Rule {
            name: "beta".to_owned(),
            priority: 3,
            conditions: Conditions {
                path: vec!["/api/*".to_owned()],
                headers: vec![("x-channel".to_owned(), vec!["beta".to_owned()])],
                ..Conditions::default()
            },
            action: ActionConfig::forward("b"),
        },
        path_rule(4, "/api/*", ActionConfig::forward("a")),
    ];
    let edge = start_edge_with(
        rules,
        not_found(),
        vec![group("a", a.address), group("b", b.address)],
    )
    .await;
    edge.wait_for_healthy(1).await;
    let mut client = TestClient::http1();
    let moved = client.get(&format!("{}/old/page?x=1", edge.url)).await;
    assert_eq!(moved.status, 301);
    let port = edge.url.rsplit(':').next().expect("port");
    assert_eq!(
        moved.header("location"),
        Some(format!("http://127.0.0.1:{port}/new/old/page?x=1").as_str())
    );
    let fixed = client.get(&format!("{}/maintenance", edge.url)).await;
    assert_eq!(
        (fixed.status.as_u16(), fixed.text()),
        (503, "back soon".to_owned())
    );
    assert_eq!(fixed.header("content-type"), Some("text/plain"));
    // Path conditions see the path as servers resolve it: dot segments, doubled slashes
    // and encoded letters do not step around a rule.
    for path in [
        "/x/../maintenance",
        "//maintenance",
        "/%6daintenance",
        "/./maintenance",
    ] {
        let fixed = client.get(&format!("{}{path}", edge.url)).await;
        assert_eq!(fixed.status, 503, "{path}");
    }
    assert_eq!(whoami(&mut client, &edge).await, "a");
    let beta = client
        .send(
            hyper::Method::GET,
            &format!("{}/api/whoami", edge.url),
            &[("x-channel", "BETA")],
            "",
        )
        .await;
    assert_eq!(beta.json()["name"], "b");
    assert_eq!(
        client.get(&format!("{}/nothing", edge.url)).await.status,
        404
    );
    let metrics = TestClient::http1()
        .get(&format!("http://{}/metrics", edge.admin))
        .await
        .text();
    assert!(
        metrics.contains("securecart_edge_requests_total{route=\"beta\",code=\"200\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("securecart_edge_target_responses_total{target_group=\"b\",class=\"2xx\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("securecart_edge_target_response_time_seconds_count{target_group=\"a\"}"),
        "{metrics}"
    );
    edge.shutdown().await;
    drop((a, b));
}

#[tokio::test]
async fn weighted_forwards_split_traffic_and_stickiness_keeps_a_client_on_its_group() {
    let (blue, _) = start_upstream("blue").await;
    let (green, _) = start_upstream("green").await;
    let group = |name: &str, target: SocketAddr| TargetGroupConfig {
        tls: None,
        host_header: None,
        outlier_detection: None,
        ..TargetGroupConfig::new(name, vec![target], health_check())
    };
    let split = |stickiness| {
        ActionConfig::Forward(ForwardConfig {
            target_groups: vec![
                WeightedGroup {
                    name: "blue".to_owned(),
                    weight: 50,
                },
                WeightedGroup {
                    name: "green".to_owned(),
                    weight: 50,
                },
            ],
            stickiness,
            max_body_bytes: None,
            url_rewrite: None,
            host_rewrite: None,
        })
    };
    let rules = vec![
        path_rule(1, "/api/whoami", split(None)),
        Rule {
            name: "sticky".to_owned(),
            priority: 2,
            conditions: Conditions {
                path: vec!["/api/*".to_owned()],
                ..Conditions::default()
            },
            action: split(Some(Duration::from_secs(300))),
        },
    ];
    let edge = start_edge_with(
        rules,
        not_found(),
        vec![group("blue", blue.address), group("green", green.address)],
    )
    .await;
    for _ in 0..100 {
        let targets = edge.targets().await;
        if targets["target_groups"][0]["healthy"] == 1
            && targets["target_groups"][1]["healthy"] == 1
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut client = TestClient::http1();
    let mut served = std::collections::HashMap::new();
    for _ in 0..200 {
        *served.entry(whoami(&mut client, &edge).await).or_insert(0) += 1;
    }
    // 200 draws at 50/50: each side gets far more than 50 unless the split is broken.
    assert!(
        served.get("blue") > Some(&50) && served.get("green") > Some(&50),
        "{served:?}"
    );

    // A sticky client gets a cookie naming its group and stays there.
    let mut sticky = TestClient::http1();
    let first = sticky
        .send(
            hyper::Method::GET,
            &format!("{}/api/sticky-whoami", edge.url),
            &[],
            "",
        )
        .await;
    let cookie = first
        .header("set-cookie")
        .expect("stickiness cookie")
        .to_owned();
    assert!(
        cookie.starts_with("SCALBTG=") && cookie.contains("Max-Age=300"),
        "{cookie}"
    );
    let group = cookie
        .trim_start_matches("SCALBTG=")
        .split(';')
        .next()
        .expect("group")
        .to_owned();
    for _ in 0..20 {
        let reply = sticky.get(&format!("{}/api/whoami-sticky", edge.url)).await;
        assert_eq!(
            reply.header("set-cookie"),
            Some(cookie.as_str()),
            "each answer renews the cookie, to the same group"
        );
        assert_eq!(
            reply.status, 404,
            "the upstream has no such path, but the group is right"
        );
    }
    let reply = sticky
        .send(
            hyper::Method::GET,
            &format!("{}/api/whoami", edge.url),
            &[("cookie", &format!("SCALBTG={group}"))],
            "",
        )
        .await;
    assert_eq!(reply.status, 200);
    edge.shutdown().await;
    drop((blue, green));
}

#[tokio::test]
async fn an_http11_request_without_host_is_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (a, _) = start_upstream("a").await;
    let edge = start_edge(vec![("/api/*", "api", vec![a.address])]).await;
    let address = edge.url.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    stream
        .write_all(b"GET /api/whoami HTTP/1.1\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    edge.shutdown().await;
}

#[tokio::test]
async fn https_listeners_pick_certificates_by_sni_and_speak_http2_by_alpn() {
    use securecart_edge::tls::{TlsConfig, self_signed};
    let (a, _) = start_upstream("a").await;
    let shop = self_signed(&["shop.example".to_owned()]).expect("certificate");
    let api =
        self_signed(&["api.example".to_owned(), "*.api.example".to_owned()]).expect("certificate");
    let config = |certificates: Vec<securecart_edge::tls::CertificatePem>| EdgeConfig {
        region: "test-1".to_owned(),
        listeners: vec![ListenerConfig {
            name: "https".to_owned(),
            listen: "127.0.0.1:0".parse().expect("address"),
            rules: Vec::new(),
            default_action: ActionConfig::forward("api"),
            tls: Some(TlsConfig {
                certificates,
                client_auth: Default::default(),
                policy: Default::default(),
            }),
            waf: None,
            response_headers: Vec::new(),
            remove_response_headers: Vec::new(),
            forwarded_for: Default::default(),
            drop_invalid_header_fields: false,
            desync_mitigation_mode: Default::default(),
            tls_headers: false,
        }],
        admin: "127.0.0.1:0".parse().expect("address"),
        target_groups: vec![TargetGroupConfig {
            tls: None,
            host_header: None,
            outlier_detection: None,
            stickiness: Some(Duration::from_secs(300)),
            ..TargetGroupConfig::new("api", vec![a.address], health_check())
        }],
        limits: Limits::default(),
        admin_token: None,
        cache: None,
        shield: None,
        upstream_source: None,
    };
    let running = RunningEdge::start(config(vec![shop.clone(), api.clone()]), "https").await;
    let address: SocketAddr = running
        .url
        .trim_start_matches("https://")
        .parse()
        .expect("address");
    running.wait_for_healthy(1).await;

    // Each name gets its own certificate: the client trusts only that one.
    let http1 = securecart_testkit::tls_get(
        address,
        "shop.example",
        &shop.chain,
        "/api/whoami",
        &[b"http/1.1"],
        false,
    )
    .await
    .expect("shop.example over TLS");
    assert_eq!(http1.reply.status, 200);
    assert_eq!(http1.tls_version, Some(rustls::ProtocolVersion::TLSv1_3));
    // The stickiness cookie of an https listener never goes out in clear.
    let pin = http1
        .reply
        .header("set-cookie")
        .expect("a stickiness cookie");
    assert!(
        pin.starts_with("SCALB=") && pin.ends_with("; Secure"),
        "{pin}"
    );
    let seen = http1.reply.json();
    assert_eq!(seen["x-forwarded-proto"], "https");
    assert_eq!(seen["host"], "shop.example");
    let wildcard = securecart_testkit::tls_get(
        address,
        "v2.api.example",
        &api.chain,
        "/api/whoami",
        &[b"h2", b"http/1.1"],
        false,
    )
    .await
    .expect("v2.api.example over TLS");
    assert_eq!(wildcard.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(wildcard.reply.version, hyper::Version::HTTP_2);
    assert_eq!(wildcard.reply.status, 200);
    let tls12 = securecart_testkit::tls_get(
        address,
        "shop.example",
        &shop.chain,
        "/api/whoami",
        &[],
        true,
    )
    .await
    .expect("TLS 1.2");
    assert_eq!(tls12.tls_version, Some(rustls::ProtocolVersion::TLSv1_2));
    // An unknown name gets the first certificate, which the client does not trust for it.
    let unknown =
        securecart_testkit::tls_get(address, "unknown.example", &shop.chain, "/", &[], false).await;
    assert!(
        unknown.is_err(),
        "the default certificate is not valid for another name"
    );

    // A reload with a renewed certificate (from its files, as an operator's are; a
    // self-signed one, made anew by each configuration, stays as it was): new handshakes
    // get it, without a restart.
    let renewed = securecart_edge::tls::CertificatePem {
        source: "renewed.pem".to_owned(),
        ..self_signed(&["shop.example".to_owned()]).expect("certificate")
    };
    let unchanged = self_signed(&["shop.example".to_owned()]).expect("certificate");
    running
        .control
        .apply(config(vec![unchanged.clone(), api.clone()]))
        .await
        .expect("reload");
    assert!(get_with(address, unchanged.chain.clone()).await.is_err());
    assert_eq!(
        get_with(address, shop.chain.clone())
            .await
            .expect("kept")
            .reply
            .status,
        200
    );
    running
        .control
        .apply(config(vec![renewed.clone(), api.clone()]))
        .await
        .expect("reload");
    let get = |trusted: Vec<u8>| get_with(address, trusted);
    assert_eq!(
        get(renewed.chain.clone())
            .await
            .expect("renewed")
            .reply
            .status,
        200
    );
    assert!(
        get(shop.chain.clone()).await.is_err(),
        "the old one is gone"
    );
    // A certificate that does not load refuses the reload; the one in force stays.
    let broken = securecart_edge::tls::CertificatePem {
        chain: b"not a certificate".to_vec(),
        ..renewed.clone()
    };
    assert!(running.control.apply(config(vec![broken])).await.is_err());
    assert_eq!(
        get(renewed.chain.clone()).await.expect("kept").reply.status,
        200
    );
    running.shutdown().await;
}

/// A GET of `/api/whoami` from `shop.example` over TLS at `address`, trusting `trusted`.
async fn get_with(
    address: SocketAddr,
    trusted: Vec<u8>,
) -> Result<securecart_testkit::TlsReply, String> {
    securecart_testkit::tls_get(address, "shop.example", &trusted, "/api/whoami", &[], false).await
}

/// Sends raw bytes on a new connection, keeps the connection open without sending more, and
/// reads until the edge closes it.
async fn raw_exchange_stalling(address: &str, bytes: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    stream.write_all(bytes.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// Sends raw bytes on a new connection and reads until the edge closes it.
async fn raw_exchange(address: &str, bytes: &str) -> String {
    securecart_testkit::raw_exchange(address, bytes.as_bytes()).await
}

#[tokio::test]
async fn ambiguous_framing_cannot_smuggle_a_request_past_the_edge() {
    let (a, _) = start_upstream("a").await;
    let edge = start_edge(vec![("/api/*", "api", vec![a.address])]).await;
    edge.wait_for_healthy(1).await;
    let address = edge.url.trim_start_matches("http://").to_owned();
    let smuggled = "GET /api/whoami HTTP/1.1\r\nHost: shop.example\r\n\r\n";

    // CL.TE: a proxy that believed Content-Length would pass the second request inside the
    // first one's body. The edge refuses a request with both (RFC 9112 section 6.3 allows
    // it, and nginx does the same), answers once and closes the connection.
    let cl_te = format!(
        "POST /api/echo HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"
    );
    let answer = raw_exchange(&address, &cl_te).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert_eq!(
        answer.matches("HTTP/1.1 ").count(),
        1,
        "one answer, then the connection closes: {answer}"
    );
    assert!(
        !answer.contains("\"name\""),
        "the smuggled request never reached a target: {answer}"
    );

    // TE.TE: two Transfer-Encoding headers that servers may read differently are refused.
    for framing in [
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
    ] {
        let te_te = format!(
            "POST /api/echo HTTP/1.1\r\nHost: shop.example\r\n{framing}\r\n\r\n0\r\n\r\n{smuggled}"
        );
        let answer = raw_exchange(&address, &te_te).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{framing}: {answer}");
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );
        assert_eq!(
            answer.matches("HTTP/1.1 ").count(),
            1,
            "{framing}: {answer}"
        );
    }

    // Two different lengths are refused too (by the edge's HTTP/1 parser).
    let cl_cl = format!(
        "POST /api/echo HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde{smuggled}"
    );
    let answer = raw_exchange(&address, &cl_cl).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(!answer.contains("\"name\""), "{answer}");
    edge.shutdown().await;
}

/// Desync mitigation (ALB's `desync_mitigation_mode`): requests that do not comply with
/// RFC 9112 are routed, routed and their connections closed, or refused, by mode; each is
/// counted by its classification and reason.
#[tokio::test]
async fn desync_mitigation_routes_closes_or_refuses_by_mode() {
    use securecart_edge::guard::DesyncMode;
    let (a, _) = start_upstream("a").await;
    let next = "GET /api/whoami HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n";
    // (request, pipelined with `next` on one connection)
    let acceptable = format!(
        "GET /api/whoami HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 0\r\n\r\n{next}"
    );
    let bare_line_feeds = format!("GET /api/whoami HTTP/1.1\nHost: shop.example\n\n{next}");
    let suspicious = format!(
        "GET /api/whoami HTTP/1.1\r\nHost: shop.example\r\nTransfer_Encoding: chunked\r\n\r\n{next}"
    );
    let both = format!(
        "POST /api/echo HTTP/1.1\r\nHost: shop.example\r\nContent-Type: text/plain\r\nContent-Length: 30\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwool\r\n0\r\n\r\n{next}"
    );
    // What each mode answers: how many answers, the first one's status, and whether its
    // connection closed after it ("close" said).
    type Expected = (usize, &'static str, bool);
    let cases: [(&str, &String, [Expected; 3]); 4] = [
        // (name, request, [monitor, defensive, strictest])
        (
            "acceptable",
            &acceptable,
            [(2, "200", false), (2, "200", false), (1, "400", true)],
        ),
        (
            "bare line feeds",
            &bare_line_feeds,
            [(2, "200", false), (2, "200", false), (1, "400", true)],
        ),
        (
            "suspicious",
            &suspicious,
            [(2, "200", false), (1, "200", true), (1, "400", true)],
        ),
        (
            "both framings",
            &both,
            [(2, "200", false), (1, "400", true), (1, "400", true)],
        ),
    ];
    for (index, mode) in [
        DesyncMode::Monitor,
        DesyncMode::Defensive,
        DesyncMode::Strictest,
    ]
    .into_iter()
    .enumerate()
    {
        let mut config = common::one_listener("api", vec![a.address]);
        config.target_groups[0].health_check = health_check();
        config.listeners[0].desync_mitigation_mode = mode;
        let edge = RunningEdge::start(config, "http").await;
        edge.wait_for_healthy(1).await;
        let address = edge.url.trim_start_matches("http://");
        for (name, request, expected) in &cases {
            let (answers, status, closed) = expected[index];
            let answer = raw_exchange(address, request).await;
            assert_eq!(
                answer.matches("HTTP/1.1 ").count(),
                answers,
                "{name} in {mode:?}: {answer}"
            );
            assert!(
                answer.starts_with(&format!("HTTP/1.1 {status}")),
                "{name} in {mode:?}: {answer}"
            );
            let first = answer.split("HTTP/1.1 ").nth(1).expect("an answer");
            assert_eq!(
                first.to_ascii_lowercase().contains("connection: close"),
                closed,
                "{name} in {mode:?}: {answer}"
            );
            if *name == "suspicious" && status == "200" {
                // The target's connection goes after an ambiguous request, in monitor
                // mode too: the edge told it so.
                let (_, body) = first.split_once("\r\n\r\n").expect("a head and a body");
                let seen: serde_json::Value =
                    serde_json::from_str(body.split("HTTP/1.1").next().unwrap_or(body))
                        .expect("json");
                assert_eq!(seen["connection"], "close", "{mode:?}: {seen}");
            }
            if *name == "both framings" && status == "200" {
                // Read by its Transfer-Encoding, as the edge forwards it: the body is
                // `wool`, and what follows it is the next request, not more body.
                assert!(first.ends_with("a:wool"), "{answer}");
            }
        }
        let metrics = TestClient::http1()
            .get(&format!("http://{}/metrics", edge.admin))
            .await
            .text();
        for (classification, reason) in [
            ("Acceptable", "GetHeadZeroContentLength"),
            ("Acceptable", "NonCrLfLineTermination"),
            ("Ambiguous", "SuspiciousHeader"),
            ("Ambiguous", "BothTeClPresent"),
        ] {
            let line = format!(
                "securecart_edge_non_compliant_requests_total{{listener=\"http\",classification=\"{classification}\",reason=\"{reason}\"}} 1"
            );
            assert!(metrics.contains(&line), "{mode:?}: {line} in {metrics}");
        }
        edge.shutdown().await;
    }
}

#[tokio::test]
async fn least_outstanding_requests_sends_new_requests_away_from_a_busy_target() {
    let (a, _) = start_upstream("a").await;
    let (b, _) = start_upstream("b").await;
    let group = TargetGroupConfig {
        tls: None,
        host_header: None,
        algorithm: securecart_edge::balancer::Algorithm::LeastOutstandingRequests,
        outlier_detection: None,
        ..TargetGroupConfig::new("api", vec![a.address, b.address], health_check())
    };
    let edge = start_edge_with(
        vec![path_rule(1, "/api/*", ActionConfig::forward("api"))],
        not_found(),
        vec![group],
    )
    .await;
    edge.wait_for_healthy(2).await;
    // One slow request occupies one target...
    let slow_url = format!("{}/api/slow", edge.url);
    let slow = tokio::spawn(async move { TestClient::http1().get(&slow_url).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // ...so every quick request goes to the other, where round robin would alternate.
    let mut client = TestClient::http1();
    let mut names = std::collections::HashSet::new();
    for _ in 0..6 {
        names.insert(whoami(&mut client, &edge).await);
    }
    assert_eq!(names.len(), 1, "{names:?}");
    assert_eq!(slow.await.expect("slow request").status, 200);
    // Once the slow request is done, both targets are free again and share the load.
    let mut names = std::collections::HashSet::new();
    for _ in 0..6 {
        names.insert(whoami(&mut client, &edge).await);
    }
    assert_eq!(names.len(), 2, "{names:?}");
    edge.shutdown().await;
    drop((a, b));
}

/// Opens a connection to `address` and switches it to the target's byte-echo protocol.
async fn switched_connection(address: &str) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    stream
        .write_all(b"GET /api/echo-upgrade HTTP/1.1\r\nHost: shop.example\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        .await
        .expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut byte))
            .await
            .expect("the switch is answered")
            .expect("read");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains("upgrade: echo") && head.contains("connection: upgrade"),
        "{head}"
    );
    stream
}

/// The edge's count of open client connections, from its metrics.
async fn connections_open(edge: &RunningEdge) -> f64 {
    let metrics = TestClient::http1()
        .get(&format!("http://{}/metrics", edge.admin))
        .await
        .text();
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("securecart_edge_connections_active "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no connections_active in {metrics}"))
}

#[tokio::test]
async fn upgraded_connections_are_tunnelled_to_the_target() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (a, _) = start_upstream("a").await;
    let edge = start_edge(vec![("/api/*", "api", vec![a.address])]).await;
    edge.wait_for_healthy(1).await;
    let address = edge.url.trim_start_matches("http://").to_owned();
    let mut stream = switched_connection(&address).await;
    for message in ["hello", "through the edge"] {
        stream.write_all(message.as_bytes()).await.expect("write");
        let mut echoed = vec![0u8; message.len()];
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut echoed))
            .await
            .expect("echo")
            .expect("read");
        assert_eq!(echoed, message.as_bytes());
    }
    // The switched connection still counts as a client connection (against the
    // listener's and the client's limits too) until it closes.
    let open = connections_open(&edge).await;
    assert!(open >= 1.0, "{open}");
    drop(stream);
    let mut closed = false;
    for _ in 0..100 {
        if connections_open(&edge).await == open - 1.0 {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(closed, "the closed tunnel no longer counts");
    edge.shutdown().await;
}

#[tokio::test]
async fn an_idle_upgraded_connection_is_closed_after_its_idle_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (a, _) = start_upstream("a").await;
    let edge = start_edge_with_limits(
        vec![path_rule(1, "/api/*", ActionConfig::forward("api"))],
        not_found(),
        vec![TargetGroupConfig {
            tls: None,
            host_header: None,
            name: "api".to_owned(),
            targets: vec![a.address],
            health_check: health_check(),
            algorithm: Default::default(),
            protocol: Default::default(),
            outlier_detection: None,
            slow_start: None,
            stickiness: None,
            app_cookie: None,
            deregistration_delay: Duration::from_secs(300),
            anomaly: Default::default(),
            minimum_healthy: Default::default(),
            dns_failover: Some(Default::default()),
        }],
        Limits {
            drain_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_millis(500),
            ..Limits::default()
        },
    )
    .await;
    edge.wait_for_healthy(1).await;
    let address = edge.url.trim_start_matches("http://").to_owned();
    let mut stream = switched_connection(&address).await;
    stream.write_all(b"ping").await.expect("write");
    let mut echoed = [0u8; 4];
    stream.read_exact(&mut echoed).await.expect("echo");
    assert_eq!(&echoed, b"ping");
    // Then nothing either way: the edge closes the connection.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest))
        .await
        .expect("the edge closes an idle switched connection");
    assert!(read.is_ok_and(|length| length == 0), "{rest:?}");
    edge.shutdown().await;
}

/// An edge with one group of `target`, whose answers may make no progress for half a
/// second (the idle timeout), and whose idle HTTP/2 clients are closed after a second.
async fn start_edge_idle_after_half_a_second(target: SocketAddr) -> RunningEdge {
    start_edge_idle_after_half_a_second_with(target, securecart_edge::UpstreamProtocol::Http1).await
}

/// [`start_edge_idle_after_half_a_second`], speaking `protocol` to the target.
async fn start_edge_idle_after_half_a_second_with(
    target: SocketAddr,
    protocol: securecart_edge::UpstreamProtocol,
) -> RunningEdge {
    let group = TargetGroupConfig {
        tls: None,
        host_header: None,
        outlier_detection: None,
        protocol,
        ..TargetGroupConfig::new("api", vec![target], health_check())
    };
    let edge = start_edge_with_limits(
        vec![path_rule(1, "/api/*", ActionConfig::forward("api"))],
        not_found(),
        vec![group],
        Limits {
            drain_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_millis(500),
            header_read_timeout: Duration::from_secs(1),
            ..Limits::default()
        },
    )
    .await;
    edge.wait_for_healthy(1).await;
    edge
}

#[tokio::test]
async fn an_answer_whose_target_stalls_mid_body_is_cut_off_after_the_idle_timeout() {
    use tokio::io::AsyncWriteExt;
    // The target promises 100 bytes, sends 10, and then nothing, its connection open.
    let target = start_raw_target(|mut stream| async move {
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789")
            .await;
        tokio::time::sleep(Duration::from_secs(60)).await;
    })
    .await;
    let edge = start_edge_idle_after_half_a_second(target).await;
    let address = edge.url.trim_start_matches("http://").to_owned();

    // HTTP/1.1: the head and the 10 bytes, then the connection closes, short of its length.
    let mut stream = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    stream
        .write_all(b"GET /api/stalls HTTP/1.1\r\nHost: shop.example\r\n\r\n")
        .await
        .expect("write");
    let answer = securecart_testkit::read_to_close(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("\r\n\r\n0123456789"), "{answer}");

    // HTTP/2: the stream is reset.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let response = client
        .get(format!("{}/api/stalls", edge.url).parse().expect("uri"))
        .await
        .expect("the head comes");
    assert_eq!(response.status(), 200);
    let body = tokio::time::timeout(
        Duration::from_secs(10),
        http_body_util::BodyExt::collect(response.into_body()),
    )
    .await
    .expect("the edge ends a stalled answer");
    assert!(body.is_err(), "a stalled answer is not whole");
    edge.shutdown().await;
}

/// An HTTP/2 client (cleartext, prior knowledge) whose request bodies come down channels.
fn http2_client() -> hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    ChannelBody,
> {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<ChannelBody>()
}

/// A `POST /api/upload` to `edge` whose body is `pieces` times `data`, one every `every`
/// (sent by the task returned, which stops early if the body is dropped).
fn paced_upload(
    edge: &RunningEdge,
    pieces: usize,
    every: Duration,
    data: &'static [u8],
) -> (http::Request<ChannelBody>, tokio::task::JoinHandle<()>) {
    let (upload, receiver) = tokio::sync::mpsc::channel(8);
    let request = http::Request::post(format!("{}/api/upload", edge.url))
        .body(ChannelBody(receiver))
        .expect("request");
    let sending = tokio::spawn(async move {
        for _ in 0..pieces {
            tokio::time::sleep(every).await;
            if upload.send(bytes::Bytes::from_static(data)).await.is_err() {
                return;
            }
        }
    });
    (request, sending)
}

/// A body sent as its parts come down a channel.
struct ChannelBody(tokio::sync::mpsc::Receiver<bytes::Bytes>);

impl http_body::Body for ChannelBody {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        self.0
            .poll_recv(context)
            .map(|part| part.map(|data| Ok(http_body::Frame::data(data))))
    }
}

#[tokio::test]
async fn an_upload_under_way_keeps_an_answer_that_waits_for_it() {
    use tokio::io::AsyncWriteExt;
    // An HTTP/2 target that streams both ways, as a gRPC server may: it answers at once
    // with half its body, and sends the rest once the whole upload has come, which takes
    // the client longer than the idle timeout.
    let target = serve(
        "127.0.0.1",
        Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route(
                "/api/upload",
                post(|body: axum::body::Body| async move {
                    let (sender, receiver) = tokio::sync::mpsc::channel(2);
                    tokio::spawn(async move {
                        let _ = sender.send(bytes::Bytes::from_static(b"0123456789")).await;
                        let _ = http_body_util::BodyExt::collect(body).await;
                        let _ = sender.send(bytes::Bytes::from_static(b"abcdefghij")).await;
                    });
                    axum::body::Body::new(ChannelBody(receiver))
                }),
            ),
    )
    .await;
    let edge = start_edge_idle_after_half_a_second_with(
        target.address,
        securecart_edge::UpstreamProtocol::Http2,
    )
    .await;
    let address = edge.url.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    stream
        .write_all(
            b"POST /api/upload HTTP/1.1\r\nHost: shop.example\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        )
        .await
        .expect("write");
    // A piece every 200 ms for 1.4 s: the answer's body waits longer than the idle
    // timeout, but the client is sending all the while.
    for _ in 0..7 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        stream.write_all(b"5\r\nhello\r\n").await.expect("write");
    }
    stream.write_all(b"0\r\n\r\n").await.expect("write");
    let answer = securecart_testkit::read_to_close(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Chunked: both halves, and the end.
    assert!(
        answer.ends_with("\r\na\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n"),
        "{answer}"
    );

    // The same over HTTP/2 from the client.
    let client = http2_client();
    let (request, sending) = paced_upload(&edge, 7, Duration::from_millis(200), b"hello");
    let response = client.request(request).await.expect("the head comes");
    let body = tokio::time::timeout(
        Duration::from_secs(10),
        http_body_util::BodyExt::collect(response.into_body()),
    )
    .await
    .expect("the answer ends")
    .expect("the answer is whole")
    .to_bytes();
    assert_eq!(&body[..], b"0123456789abcdefghij");
    sending.await.expect("sent");
    edge.shutdown().await;
    target.stop().await;
}

#[tokio::test]
async fn an_upload_that_outlasts_its_answer_keeps_its_http2_connection() {
    // An HTTP/2 target that answers at once and reads the upload after: it says how many
    // bytes came, once the upload ends.
    let (read, mut upload_read) = tokio::sync::mpsc::channel::<Option<usize>>(1);
    let target = serve(
        "127.0.0.1",
        Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route(
                "/api/upload",
                post(move |body: axum::body::Body| {
                    let read = read.clone();
                    async move {
                        tokio::spawn(async move {
                            let whole = http_body_util::BodyExt::collect(body)
                                .await
                                .ok()
                                .map(|body| body.to_bytes().len());
                            let _ = read.send(whole).await;
                        });
                        "answered"
                    }
                }),
            ),
    )
    .await;
    let edge = start_edge_idle_after_half_a_second_with(
        target.address,
        securecart_edge::UpstreamProtocol::Http2,
    )
    .await;
    // The upload goes on for 3 s after its answer came whole: longer than the edge keeps
    // a connection with no request in flight (its header read timeout, 1 s, then as long
    // again for the close).
    let client = http2_client();
    let (request, sending) = paced_upload(&edge, 15, Duration::from_millis(200), b"piece");
    let response = client.request(request).await.expect("the head comes");
    let answer = http_body_util::BodyExt::collect(response.into_body())
        .await
        .expect("the answer is whole")
        .to_bytes();
    assert_eq!(&answer[..], b"answered");
    let read = tokio::time::timeout(Duration::from_secs(10), upload_read.recv())
        .await
        .expect("the upload ends")
        .expect("said");
    assert_eq!(read, Some(15 * 5), "the upload reached the target whole");
    sending.await.expect("sent");
    edge.shutdown().await;
    target.stop().await;
}

#[tokio::test]
async fn a_stream_given_up_stops_copying_its_upload_to_an_http2_target() {
    // An HTTP/2 target that answers an upload at once with a large body, sent for as
    // long as it is taken, and says how the upload it reads ended.
    let (ended, mut upload_ended) = tokio::sync::mpsc::channel::<bool>(1);
    let target = serve(
        "127.0.0.1",
        Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route(
                "/api/slow",
                post(|| async {
                    tokio::time::sleep(Duration::from_secs(8)).await;
                    "slow"
                }),
            )
            .route(
                "/api/upload",
                post(move |body: axum::body::Body| {
                    let ended = ended.clone();
                    async move {
                        tokio::spawn(async move {
                            let whole = http_body_util::BodyExt::collect(body).await.is_ok();
                            let _ = ended.send(whole).await;
                        });
                        let (sender, receiver) = tokio::sync::mpsc::channel(1);
                        tokio::spawn(async move {
                            let block = bytes::Bytes::from(vec![b'x'; 64 * 1024]);
                            for _ in 0..1024 {
                                if sender.send(block.clone()).await.is_err() {
                                    return;
                                }
                            }
                        });
                        axum::body::Body::new(ChannelBody(receiver))
                    }
                }),
            ),
    )
    .await;
    let edge = start_edge_idle_after_half_a_second_with(
        target.address,
        securecart_edge::UpstreamProtocol::Http2,
    )
    .await;
    // An HTTP/2 client that uploads a piece every 100 ms, for 10 s, and reads nothing of
    // the answer: its stream's window shuts.
    let client = http2_client();
    let (request, sending) = paced_upload(&edge, 100, Duration::from_millis(100), b"piece");
    // Another request in flight on the same connection, answered in 8 s: the connection
    // is not idle, and stays.
    let (_, nothing) = tokio::sync::mpsc::channel(1);
    let slow = client.request(
        http::Request::post(format!("{}/api/slow", edge.url))
            .body(ChannelBody(nothing))
            .expect("request"),
    );
    let slow = tokio::spawn(slow);
    let response = client.request(request).await.expect("the head comes");
    assert_eq!(response.status(), 200);
    // The edge gives the stream up after the idle timeout, and ends the upload's copy at
    // its next piece: the target's upload ends cut short, long before the client's would.
    let whole = tokio::time::timeout(Duration::from_secs(5), upload_ended.recv())
        .await
        .expect("the upload's copy ends once its stream is given up")
        .expect("said");
    assert!(!whole, "the target read a whole upload");
    let body = tokio::time::timeout(
        Duration::from_secs(10),
        http_body_util::BodyExt::collect(response.into_body()),
    )
    .await
    .expect("the reset stream ends");
    assert!(body.is_err(), "a reset answer is not whole");
    sending.abort();
    slow.abort();
    edge.shutdown().await;
    target.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_after_the_idle_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // The target sends a large answer for as long as it can, and says when it no longer
    // can: the edge closed its connection.
    let (cut, mut cut_off) = tokio::sync::mpsc::channel::<()>(1);
    let target = start_raw_target(move |mut stream| {
        let cut = cut.clone();
        async move {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1073741824\r\n\r\n")
                .await;
            let block = vec![b'x'; 64 * 1024];
            for _ in 0..16 * 1024 {
                if stream.write_all(&block).await.is_err() {
                    let _ = cut.send(()).await;
                    return;
                }
            }
        }
    })
    .await;
    let edge = start_edge_idle_after_half_a_second(target).await;
    let address = edge.url.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    stream
        .write_all(b"GET /api/large HTTP/1.1\r\nHost: shop.example\r\n\r\n")
        .await
        .expect("write");
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.expect("the head");
    assert_eq!(&head, b"HTTP/1.1 200");
    // The client reads nothing more: the edge gives up on it, and on the target.
    tokio::time::timeout(Duration::from_secs(20), cut_off.recv())
        .await
        .expect("the edge closes the target's connection of an answer nobody reads");
    drop(stream);

    // Over HTTP/2, a client that takes nothing leaves its stream's window shut: the edge
    // resets that stream, though the client pings it all the while, and the connection's
    // other streams go on, before and after.
    let stream = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .keep_alive_interval(Duration::from_millis(100))
            .keep_alive_while_idle(true)
            .handshake::<_, http_body_util::Empty<bytes::Bytes>>(hyper_util::rt::TokioIo::new(
                stream,
            ))
            .await
            .expect("HTTP/2 handshake");
    let connection = tokio::spawn(connection);
    let get = |path: &str| {
        http::Request::get(format!("{}{path}", edge.url))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .expect("request")
    };
    let response = sender
        .send_request(get("/api/large"))
        .await
        .expect("the head comes");
    assert_eq!(response.status(), 200);
    let other = sender
        .send_request(get("/elsewhere"))
        .await
        .expect("another stream is answered meanwhile");
    assert_eq!(other.status(), 404);
    tokio::time::timeout(Duration::from_secs(20), cut_off.recv())
        .await
        .expect("the edge closes the target's connection of an answer nobody reads");
    // The stalled stream was reset: what came before its window shut, then an error.
    let body = tokio::time::timeout(
        Duration::from_secs(10),
        http_body_util::BodyExt::collect(response.into_body()),
    )
    .await
    .expect("the reset stream ends");
    assert!(body.is_err(), "a reset answer is not whole");
    // The connection serves on.
    let after = sender
        .send_request(get("/elsewhere"))
        .await
        .expect("the connection serves on after the reset");
    assert_eq!(after.status(), 404);
    assert!(!connection.is_finished(), "the edge closed the connection");
    drop(sender);
    edge.shutdown().await;
}

#[tokio::test]
async fn target_health_says_why_a_target_is_not_healthy_as_alb_does() {
    let (healthy, _) = start_upstream("healthy").await;
    // Answers its health check 500.
    let (failing, failing_health) = start_upstream("failing").await;
    failing_health.store(false, Ordering::SeqCst);
    // Nothing listens.
    let closed: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1"))
        .parse()
        .expect("address");
    // Accepts and never answers: its checks time out, after 2 s each.
    let (silent, held) = securecart_testkit::silent("127.0.0.1").await;
    let group = TargetGroupConfig {
        tls: None,
        host_header: None,
        outlier_detection: None,
        ..TargetGroupConfig::new(
            "api",
            vec![healthy.address, failing.address, closed, silent],
            HealthCheckConfig {
                protocol: None,
                timeout: Duration::from_secs(2),
                unhealthy_threshold: 2,
                ..health_check()
            },
        )
    };
    let edge = start_edge_with(
        vec![path_rule(1, "/api/*", ActionConfig::forward("api"))],
        not_found(),
        vec![group],
    )
    .await;
    let health = |described: &serde_json::Value, address: SocketAddr| {
        let target = described["target_groups"][0]["targets"]
            .as_array()
            .and_then(|targets| {
                targets
                    .iter()
                    .find(|target| target["address"] == address.to_string())
            })
            .cloned()
            .unwrap_or_default();
        (
            target["state"].as_str().unwrap_or("").to_owned(),
            target["reason"].as_str().unwrap_or("").to_owned(),
            target["description"].as_str().unwrap_or("").to_owned(),
        )
    };
    // Until its first check ends (two seconds), the silent target is new: `initial`.
    let described = edge.targets().await;
    assert_eq!(
        health(&described, silent),
        (
            "initial".to_owned(),
            "Elb.InitialHealthChecking".to_owned(),
            "Initial health checks in progress".to_owned()
        ),
        "{described}"
    );
    // After two failed checks each, every target has its verdict.
    let mut described = serde_json::Value::Null;
    for _ in 0..100 {
        described = edge.targets().await;
        if health(&described, silent).0 == "unhealthy" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        health(&described, healthy.address),
        ("healthy".to_owned(), String::new(), String::new()),
        "{described}"
    );
    assert_eq!(
        health(&described, failing.address),
        (
            "unhealthy".to_owned(),
            "Target.ResponseCodeMismatch".to_owned(),
            "Health checks failed with these codes: [500]".to_owned()
        ),
        "{described}"
    );
    assert_eq!(
        health(&described, closed),
        (
            "unhealthy".to_owned(),
            "Target.FailedHealthChecks".to_owned(),
            "Health checks failed".to_owned()
        ),
        "{described}"
    );
    assert_eq!(
        health(&described, silent),
        (
            "unhealthy".to_owned(),
            "Target.Timeout".to_owned(),
            "Request timed out".to_owned()
        ),
        "{described}"
    );
    edge.shutdown().await;
    held.abort();
}

/// A response body of one data frame and then trailers, as a gRPC server sends.
struct TrailerBody {
    data: Option<bytes::Bytes>,
    trailers: Option<HeaderMap>,
}

impl http_body::Body for TrailerBody {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        if let Some(data) = self.data.take() {
            return std::task::Poll::Ready(Some(Ok(http_body::Frame::data(data))));
        }
        std::task::Poll::Ready(
            self.trailers
                .take()
                .map(|trailers| Ok(http_body::Frame::trailers(trailers))),
        )
    }
}

#[tokio::test]
async fn grpc_over_http2_targets_passes_trailers_through() {
    // An HTTP/2 target that answers like a gRPC server: a message, then grpc-status in the
    // trailers; it insists on `te: trailers`, as gRPC servers do.
    let target = serve(
        "127.0.0.1",
        Router::new().route(
            "/echo.Echo/Say",
            post(|headers: HeaderMap| async move {
                let mut trailers = HeaderMap::new();
                let te_trailers = headers.get("te").is_some_and(|value| value == "trailers");
                trailers.insert(
                    "grpc-status",
                    if te_trailers {
                        "0".parse().expect("value")
                    } else {
                        "3".parse().expect("value")
                    },
                );
                trailers.insert("grpc-message", "ok".parse().expect("value"));
                axum::http::Response::builder()
                    .header("content-type", "application/grpc")
                    .body(axum::body::Body::new(TrailerBody {
                        data: Some(bytes::Bytes::from_static(b"\0\0\0\0\x05hello")),
                        trailers: Some(trailers),
                    }))
                    .expect("response")
            })
            .get(|| async { "ok" }),
        ),
    )
    .await;
    let group = TargetGroupConfig {
        tls: None,
        host_header: None,
        health_check: HealthCheckConfig {
            protocol: None,
            path: "/echo.Echo/Say".to_owned(),
            port: None,
            ..health_check()
        },
        algorithm: Default::default(),
        protocol: securecart_edge::UpstreamProtocol::Http2,
        outlier_detection: None,
        ..TargetGroupConfig::new("grpc", vec![target.address], health_check())
    };
    let edge = start_edge_with(
        vec![path_rule(1, "/echo.Echo/*", ActionConfig::forward("grpc"))],
        not_found(),
        vec![group],
    )
    .await;
    edge.wait_for_healthy(1).await;
    let mut client = TestClient::http2();
    let reply = client
        .send(
            hyper::Method::POST,
            &format!("{}/echo.Echo/Say", edge.url),
            &[("content-type", "application/grpc"), ("te", "trailers")],
            "\0\0\0\0\x05hello",
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.version, hyper::Version::HTTP_2);
    assert_eq!(&reply.body[..], b"\0\0\0\0\x05hello");
    let trailers = reply.trailers.expect("trailers reach the client");
    assert_eq!(
        trailers.get("grpc-status").map(|value| value.as_bytes()),
        Some(&b"0"[..]),
        "te: trailers reached the target"
    );
    assert_eq!(
        trailers.get("grpc-message").map(|value| value.as_bytes()),
        Some(&b"ok"[..])
    );
    edge.shutdown().await;
}

#[tokio::test]
async fn targets_are_registered_and_deregistered_and_rules_reloaded_under_load_without_a_failed_request()
 {
    let (a, _) = start_upstream("a").await;
    let (b, _) = start_upstream("b").await;
    let edge = start_edge(vec![("/api/*", "api", vec![a.address])]).await;
    edge.wait_for_healthy(1).await;
    let control = std::sync::Arc::clone(&edge.control);

    // Steady load from two clients until told to stop; every answer is counted.
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..2 {
        let url = format!("{}/api/whoami", edge.url);
        let stop = std::sync::Arc::clone(&stop);
        load.push(tokio::spawn(async move {
            let mut client = TestClient::http1();
            let mut served = std::collections::HashMap::<String, u32>::new();
            let mut failures = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let reply = client.get(&url).await;
                if reply.status == 200 {
                    *served
                        .entry(reply.json()["name"].as_str().unwrap_or("").to_owned())
                        .or_default() += 1;
                } else {
                    failures.push(format!("{} {}", reply.status, reply.text()));
                }
            }
            (served, failures)
        }));
    }
    let admin = |path: &str| format!("http://{}{path}", edge.admin);
    let mut api = TestClient::http1();
    let auth = ("authorization", "Bearer test-admin-token");

    // Changes without the token are refused.
    let body = format!(r#"{{"target_group":"api","address":"{}"}}"#, b.address);
    assert_eq!(
        api.post(&admin("/targets/register"), &[], &body)
            .await
            .status,
        401
    );
    assert_eq!(
        api.post(
            &admin("/targets/register"),
            &[("authorization", "Bearer wrong")],
            &body
        )
        .await
        .status,
        401
    );
    let unknown = api
        .post(
            &admin("/targets/register"),
            &[auth],
            r#"{"target_group":"nope","address":"127.0.0.1:1"}"#,
        )
        .await;
    assert_eq!(unknown.status, 404);
    // Every admin error is JSON: an unknown route, a method a route does not take, a
    // query that does not read.
    for (reply, status, code) in [
        (api.get(&admin("/nope")).await, 404, "not_found"),
        (
            api.post(&admin("/targets"), &[auth], "").await,
            405,
            "method_not_allowed",
        ),
        (
            api.get(&admin("/waf/sampled?limit=many")).await,
            400,
            "bad_request",
        ),
    ] {
        assert_eq!(reply.status, status, "{}", reply.text());
        assert_eq!(reply.json()["error"]["code"], code, "{}", reply.text());
    }

    // RegisterTargets: b joins, and takes traffic once its health check passes.
    let registered = api.post(&admin("/targets/register"), &[auth], &body).await;
    assert_eq!(registered.status, 200, "{}", registered.text());
    edge.wait_for_healthy(2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    // A reload that fails to compile changes nothing (it makes no cache either); a good
    // one applies.
    let mut bad = control_config(a.address, b.address);
    bad.target_groups.clear();
    bad.cache = Some(securecart_edge::CacheConfig {
        capacity_bytes: 1 << 20,
        max_object_bytes: 1 << 10,
        behaviors: Vec::new(),
        disk: None,
        error_responses: Vec::new(),
        peers: Vec::new(),
    });
    assert!(control.cache().is_none());
    assert!(control.apply(bad).await.is_err());
    assert!(control.cache().is_none(), "a refused reload left a cache");
    assert_eq!(api.get(&format!("{}/new-rule", edge.url)).await.status, 404);
    control
        .apply(control_config(a.address, b.address))
        .await
        .expect("reload");
    let reloaded = api.get(&format!("{}/new-rule", edge.url)).await;
    assert_eq!(
        (reloaded.status.as_u16(), reloaded.text()),
        (200, "reloaded".to_owned())
    );
    tokio::time::sleep(Duration::from_millis(200)).await;

    // DeregisterTargets: a leaves; requests in flight to it finish.
    let body = format!(r#"{{"target_group":"api","address":"{}"}}"#, a.address);
    let deregistered = api
        .post(&admin("/targets/deregister"), &[auth], &body)
        .await;
    assert_eq!(deregistered.status, 200, "{}", deregistered.text());
    // a may still be draining the requests it had in flight.
    let targets = deregistered.json()["target_groups"][0]["targets"].clone();
    let in_rotation: Vec<_> = targets
        .as_array()
        .expect("targets")
        .iter()
        .filter(|target| target["state"] != "draining")
        .map(|target| target["address"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(in_rotation, [b.address.to_string()], "{targets}");
    tokio::time::sleep(Duration::from_millis(300)).await;

    stop.store(true, Ordering::SeqCst);
    let mut total = std::collections::HashMap::<String, u32>::new();
    for task in load {
        let (served, failures) = task.await.expect("load task");
        assert!(
            failures.is_empty(),
            "requests failed during the changes: {failures:?}"
        );
        for (name, count) in served {
            *total.entry(name).or_default() += count;
        }
    }
    assert!(
        total.get("a").is_some_and(|count| *count > 0)
            && total.get("b").is_some_and(|count| *count > 0),
        "{total:?}"
    );
    // After the deregistration, only b answers.
    let mut client = TestClient::http1();
    for _ in 0..4 {
        assert_eq!(whoami(&mut client, &edge).await, "b");
    }
    edge.shutdown().await;
    drop((a, b));
}

/// The configuration of `start_edge` with both upstreams, and one more rule.
fn control_config(a: SocketAddr, b: SocketAddr) -> EdgeConfig {
    EdgeConfig {
        region: "test-1".to_owned(),
        listeners: vec![ListenerConfig {
            name: "http".to_owned(),
            // As configured at the start: the listener keeps its socket.
            listen: "127.0.0.1:0".parse().expect("address"),
            rules: vec![
                path_rule(1, "/api/*", ActionConfig::forward("api")),
                path_rule(
                    2,
                    "/new-rule",
                    ActionConfig::FixedResponse(FixedResponseConfig {
                        status: 200,
                        content_type: "text/plain".to_owned(),
                        body: "reloaded".to_owned(),
                    }),
                ),
            ],
            default_action: not_found(),
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
        target_groups: vec![TargetGroupConfig {
            tls: None,
            host_header: None,
            outlier_detection: None,
            ..TargetGroupConfig::new("api", vec![a, b], health_check())
        }],
        limits: Limits::default(),
        admin_token: Some(ADMIN_TOKEN.to_owned()),
        cache: None,
        shield: None,
        upstream_source: None,
    }
}

/// The group `api` of `a` and `b`, whose targets are ejected for a minute after `errors`
/// errors in a row.
fn ejecting_after(errors: u32, a: SocketAddr, b: SocketAddr) -> TargetGroupConfig {
    ejecting_for(errors, Duration::from_secs(60), a, b)
}

/// A group of a and b from which a target is ejected for `ejection` after `errors` errors
/// in a row.
fn ejecting_for(
    errors: u32,
    ejection: Duration,
    a: SocketAddr,
    b: SocketAddr,
) -> TargetGroupConfig {
    TargetGroupConfig {
        tls: None,
        host_header: None,
        outlier_detection: Some(securecart_edge::config::OutlierDetection {
            consecutive_errors: errors,
            ejection,
        }),
        ..TargetGroupConfig::new("api", vec![a, b], health_check())
    }
}

#[tokio::test]
async fn a_target_answering_server_errors_is_ejected_for_a_while() {
    let (a, _) = start_upstream("a").await;
    let (b, _) = start_upstream("b").await;
    let group = ejecting_after(3, a.address, b.address);
    let edge = start_edge_with(
        vec![path_rule(1, "/api/*", ActionConfig::forward("api"))],
        not_found(),
        vec![group],
    )
    .await;
    edge.wait_for_healthy(2).await;
    let mut client = TestClient::http1();
    let mut errors = 0;
    for _ in 0..12 {
        if client
            .get(&format!("{}/api/maybe-fail", edge.url))
            .await
            .status
            == 500
        {
            errors += 1;
        }
    }
    // a answered 500 three times, then left the rotation: the rest went to b.
    assert_eq!(errors, 3);
    edge.wait_for_healthy(1).await;
    // Its health check passes, but the ejection holds.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..4 {
        assert_eq!(whoami(&mut client, &edge).await, "b");
    }
    edge.shutdown().await;
    drop((a, b));
}

#[tokio::test]
async fn an_ejected_target_comes_back_when_its_ejection_ends() {
    let (a, _) = start_upstream("a").await;
    let (b, _) = start_upstream("b").await;
    let group = ejecting_for(2, Duration::from_secs(3), a.address, b.address);
    let edge = start_edge_with(
        vec![path_rule(1, "/api/*", ActionConfig::forward("api"))],
        not_found(),
        vec![group],
    )
    .await;
    edge.wait_for_healthy(2).await;
    let mut client = TestClient::http1();
    for _ in 0..6 {
        client.get(&format!("{}/api/maybe-fail", edge.url)).await;
    }
    // a is out, and /targets says why.
    let described = edge.targets().await;
    let a_health = described["target_groups"][0]["targets"]
        .as_array()
        .and_then(|targets| {
            targets
                .iter()
                .find(|target| target["address"] == a.address.to_string())
        })
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (&a_health["state"], &a_health["reason"]),
        (
            &serde_json::json!("unhealthy"),
            &serde_json::json!("Target.OutlierEjected")
        ),
        "{described}"
    );
    assert_eq!(whoami(&mut client, &edge).await, "b");
    // Once the ejection ends, its passing health check brings it back.
    edge.wait_for_healthy(2).await;
    let mut names = std::collections::HashSet::new();
    for _ in 0..4 {
        names.insert(whoami(&mut client, &edge).await);
    }
    assert!(names.contains("a"), "a is back in rotation: {names:?}");
    edge.shutdown().await;
    drop((a, b));
}

#[tokio::test]
async fn a_target_in_slow_start_takes_a_small_share_at_first() {
    let (a, _) = start_upstream("a").await;
    let (b, b_healthy) = start_upstream("b").await;
    b_healthy.store(false, Ordering::SeqCst);
    let window = Duration::from_secs(4);
    let group = TargetGroupConfig {
        tls: None,
        host_header: None,
        outlier_detection: None,
        slow_start: Some(window),
        ..TargetGroupConfig::new("api", vec![a.address, b.address], health_check())
    };
    let edge = start_edge_with(
        vec![path_rule(1, "/api/*", ActionConfig::forward("api"))],
        not_found(),
        vec![group],
    )
    .await;
    edge.wait_for_healthy(1).await;
    // a's own slow start ends.
    tokio::time::sleep(window + Duration::from_millis(500)).await;
    // b recovers: its share starts at 5% of a full target's and grows to a full share over
    // the window, a quarter a second: a tenth of the requests only after a second or so.
    b_healthy.store(true, Ordering::SeqCst);
    edge.wait_for_healthy(2).await;
    let mut client = TestClient::http1();
    let mut to_b = 0;
    for _ in 0..100 {
        if whoami(&mut client, &edge).await == "b" {
            to_b += 1;
        }
    }
    assert!(to_b < 25, "b took {to_b} of 100 requests in its slow start");
    // Once its slow start is over, b takes its full turn.
    tokio::time::sleep(window).await;
    let mut to_b = 0;
    for _ in 0..100 {
        if whoami(&mut client, &edge).await == "b" {
            to_b += 1;
        }
    }
    assert_eq!(to_b, 50, "round robin, each its turn");
    edge.shutdown().await;
    drop((a, b));
}

/// Of `count` requests to `/api/maybe-fail`, how many `a` answered (it answers 500).
async fn answered_by_a(client: &mut TestClient, edge: &RunningEdge, count: usize) -> usize {
    let mut by_a = 0;
    for _ in 0..count {
        let answer = client.get(&format!("{}/api/maybe-fail", edge.url)).await;
        by_a += usize::from(answer.status == 500);
    }
    by_a
}

/// `a`'s anomaly detection result in `/targets`.
async fn anomaly_of(edge: &RunningEdge, a: SocketAddr) -> serde_json::Value {
    let described = edge.targets().await;
    described["target_groups"][0]["targets"]
        .as_array()
        .and_then(|targets| {
            targets
                .iter()
                .find(|target| target["address"] == a.to_string())
        })
        .map(|target| target["anomaly_detection"].clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_target_that_fails_requests_but_passes_its_checks_is_sent_less_and_then_its_share_again()
{
    // a answers /api/maybe-fail with 500 and its health check with 200: a gray failure.
    let (a, _) = start_upstream("a").await;
    let (b, _) = start_upstream("b").await;
    let (c, _) = start_upstream("c").await;
    let (d, _) = start_upstream("d").await;
    let group = TargetGroupConfig {
        tls: None,
        host_header: None,
        outlier_detection: None,
        algorithm: securecart_edge::balancer::Algorithm::WeightedRandom,
        anomaly: securecart_edge::config::AnomalyDetection {
            interval: Duration::from_millis(200),
            mitigation: true,
        },
        ..TargetGroupConfig::new(
            "api",
            vec![a.address, b.address, c.address, d.address],
            health_check(),
        )
    };
    let edge = start_edge_with(
        vec![path_rule(1, "/api/*", ActionConfig::forward("api"))],
        not_found(),
        vec![group],
    )
    .await;
    edge.wait_for_healthy(4).await;
    let mut client = TestClient::http1();
    // Until assessments find it (each 200 ms), a takes its quarter; then less and less,
    // down to a sixteenth of a full share (1 in 49 requests).
    let mut found = false;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        answered_by_a(&mut client, &edge, 50).await;
        let anomaly = anomaly_of(&edge, a.address).await;
        if anomaly["result"] == "anomalous" && anomaly["mitigation_in_effect"] == true {
            found = true;
            break;
        }
    }
    assert!(
        found,
        "a was never found anomalous: {}",
        edge.targets().await
    );
    // Assessments come with answers: four more halve its share down to a sixteenth.
    let mitigating = std::time::Instant::now();
    while mitigating.elapsed() < Duration::from_millis(1500) {
        answered_by_a(&mut client, &edge, 50).await;
    }
    let by_a = answered_by_a(&mut client, &edge, 400).await;
    assert!(
        by_a < 40,
        "a answered {by_a} of 400 requests while mitigated"
    );
    let metrics = TestClient::http1()
        .get(&format!("http://{}/metrics", edge.admin))
        .await
        .text();
    for line in [
        "securecart_edge_anomalous_targets{target_group=\"api\"} 1",
        "securecart_edge_mitigated_targets{target_group=\"api\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    // a recovers: its errors fade, and its share comes back a halving per assessment.
    let mut recovered = false;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        for _ in 0..50 {
            whoami(&mut client, &edge).await;
        }
        let anomaly = anomaly_of(&edge, a.address).await;
        if anomaly["result"] == "normal" && anomaly["mitigation_in_effect"] == false {
            recovered = true;
            break;
        }
    }
    assert!(recovered, "a never recovered: {}", edge.targets().await);
    let mut by_a = 0;
    for _ in 0..400 {
        by_a += usize::from(whoami(&mut client, &edge).await == "a");
    }
    assert!(
        by_a > 60,
        "a answered {by_a} of 400 requests once recovered"
    );
    edge.shutdown().await;
    drop((a, b, c, d));
}

/// Reads one answer with a `Content-Length` from `stream`: its head and body.
async fn read_answer(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut read = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        if let Some(end) = read.windows(4).position(|window| window == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&read[..end]).to_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length: "))
                .and_then(|length| length.trim().parse().ok())
                .expect("a content-length");
            if read.len() >= end + 4 + length {
                return String::from_utf8_lossy(&read).into_owned();
            }
        }
        let count = stream.read(&mut buffer).await.expect("read");
        assert!(count > 0, "the connection closed mid-answer");
        read.extend_from_slice(&buffer[..count]);
    }
}

#[tokio::test]
async fn a_client_connection_that_lived_its_keepalive_duration_is_closed_at_its_next_answer() {
    use tokio::io::AsyncWriteExt;
    let (a, _) = start_upstream("a").await;
    let lifetime = Duration::from_secs(1);
    let edge = start_api_edge(
        a.address,
        Limits {
            client_keep_alive: lifetime,
            ..Limits::default()
        },
    )
    .await;
    let address = edge.url.trim_start_matches("http://").to_owned();
    // HTTP/1.1: the connection is kept until it has lived a second; the answer after that
    // says `close`, and the connection ends.
    let mut stream = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    let request = b"GET /api/whoami HTTP/1.1\r\nHost: shop\r\n\r\n";
    for _ in 0..2 {
        stream.write_all(request).await.expect("write");
        let answer = read_answer(&mut stream).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(!answer.contains("connection: close"), "{answer}");
    }
    tokio::time::sleep(lifetime + Duration::from_millis(200)).await;
    stream.write_all(request).await.expect("write");
    let last = securecart_testkit::read_to_close(&mut stream).await;
    assert!(last.starts_with("HTTP/1.1 200"), "{last}");
    assert!(last.contains("connection: close"), "{last}");
    // HTTP/2: the edge says `GOAWAY` once the connection has lived a second, and the
    // connection ends (else it would wait for the header read timeout, 10 s, idle).
    let stream = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("handshake");
    let connection = tokio::spawn(connection);
    let answer = sender
        .send_request(
            http::Request::get(format!("http://{address}/api/whoami"))
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .expect("request"),
        )
        .await
        .expect("answer");
    assert_eq!(answer.status(), 200);
    drop(answer);
    tokio::time::timeout(Duration::from_secs(5), connection)
        .await
        .expect("the edge ends the connection")
        .expect("the connection's task")
        .expect("a clean end");
    edge.shutdown().await;
    drop(a);
}

#[tokio::test]
async fn a_target_that_does_not_answer_in_time_is_ejected_too() {
    let (a, _) = start_upstream("a").await;
    let (b, _) = start_upstream("b").await;
    let group = ejecting_after(2, a.address, b.address);
    let edge = start_edge_with_limits(
        vec![path_rule(1, "/api/*", ActionConfig::forward("api"))],
        not_found(),
        vec![group],
        Limits {
            drain_timeout: Duration::from_secs(1),
            upstream_timeout: Duration::from_millis(300),
            ..Limits::default()
        },
    )
    .await;
    edge.wait_for_healthy(2).await;
    let mut client = TestClient::http1();
    let mut timeouts = 0;
    for _ in 0..10 {
        let answer = client.get(&format!("{}/api/maybe-hang", edge.url)).await;
        match answer.status.as_u16() {
            504 => timeouts += 1,
            200 => assert_eq!(answer.text(), "b"),
            other => panic!("{other}"),
        }
    }
    // a did not answer in time twice, then left the rotation: the rest went to b.
    assert_eq!(timeouts, 2);
    edge.shutdown().await;
    drop((a, b));
}

#[tokio::test]
async fn bodies_over_the_rules_limit_and_oversized_headers_are_refused() {
    let (a, _) = start_upstream("a").await;
    let limited = ActionConfig::Forward(ForwardConfig {
        target_groups: vec![WeightedGroup {
            name: "api".to_owned(),
            weight: 1,
        }],
        stickiness: None,
        max_body_bytes: Some(10),
        url_rewrite: None,
        host_rewrite: None,
    });
    let group = TargetGroupConfig {
        tls: None,
        host_header: None,
        outlier_detection: None,
        ..TargetGroupConfig::new("api", vec![a.address], health_check())
    };
    let edge = start_edge_with(
        vec![path_rule(1, "/api/*", limited)],
        not_found(),
        vec![group],
    )
    .await;
    edge.wait_for_healthy(1).await;
    let mut client = TestClient::http1();
    let url = format!("{}/api/echo", edge.url);
    let small = client
        .post(&url, &[("content-type", "text/plain")], "hello")
        .await;
    assert_eq!(
        (small.status.as_u16(), small.text()),
        (200, "a:hello".to_owned())
    );
    let large = client
        .post(
            &url,
            &[("content-type", "text/plain")],
            "twenty bytes of body",
        )
        .await;
    assert_eq!(large.status, 413);
    assert_eq!(large.json()["error"]["code"], "body_too_large");

    // A chunked body has no length up front: it is cut off when it passes the limit.
    let address = edge.url.trim_start_matches("http://").to_owned();
    let chunked = "POST /api/echo HTTP/1.1\r\nHost: shop.example\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n14\r\ntwenty bytes of body\r\n0\r\n\r\n";
    let answer = raw_exchange(&address, chunked).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // As ALB's: a head of up to 64 KiB, each header (name and value) and the request's
    // target of up to 16 KiB. Three cookies of 15 KiB pass, and so does a header of
    // 16 KiB exactly; one past 16 KiB, or a head past 64 KiB, gets 431, and a target past
    // 16 KiB 414 (also before its line ends).
    let cookie = |index: usize| format!("Cookie: c{index}={}\r\n", "x".repeat(15 * 1024));
    let head = |path: &str, lines: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n{lines}\r\n")
    };
    let cases = [
        (
            head("/elsewhere", &(0..3).map(cookie).collect::<String>()),
            "HTTP/1.1 404",
        ),
        (
            head("/elsewhere", &(0..5).map(cookie).collect::<String>()),
            "HTTP/1.1 431",
        ),
        (
            head(
                "/elsewhere",
                &format!("X-Huge: {}\r\n", "x".repeat(16 * 1024 - 6)),
            ),
            "HTTP/1.1 404",
        ),
        (
            head(
                "/elsewhere",
                &format!("X-Huge: {}\r\n", "x".repeat(16 * 1024)),
            ),
            "HTTP/1.1 431",
        ),
        (
            head(&format!("/{}", "p".repeat(16 * 1024)), ""),
            "HTTP/1.1 414",
        ),
        (format!("GET /{}", "p".repeat(20 * 1024)), "HTTP/1.1 414"),
    ];
    for (request, status) in cases {
        let answer = raw_exchange(&address, &request).await;
        assert!(
            answer.starts_with(status),
            "{} bytes: {}",
            request.len(),
            &answer[..answer.len().min(200)]
        );
    }
    // So do more than 100 headers (the default limit); 100 pass (to the default action,
    // a fixed 404: a target adds the edge's forwarding headers to its own count).
    for (count, status) in [(100, "HTTP/1.1 404"), (101, "HTTP/1.1 431")] {
        let answer = raw_exchange(&address, &with_headers("/elsewhere", count)).await;
        assert!(answer.starts_with(status), "{count} headers: {answer}");
    }
    edge.shutdown().await;
}

#[tokio::test]
async fn past_its_connection_limit_a_listener_lets_new_clients_wait() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (a, _) = start_upstream("a").await;
    let limits = Limits {
        max_connections: 2,
        drain_timeout: Duration::from_secs(2),
        ..Limits::default()
    };
    let edge = start_api_edge(a.address, limits).await;
    let address = edge.url.trim_start_matches("http://").to_owned();
    let request = b"GET /api/whoami HTTP/1.1\r\nHost: shop.example\r\n\r\n";
    let mut first = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    let mut second = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    for stream in [&mut first, &mut second] {
        stream.write_all(request).await.expect("write");
        let mut buffer = [0u8; 1024];
        let read = stream.read(&mut buffer).await.expect("read");
        assert!(buffer[..read].starts_with(b"HTTP/1.1 200"));
    }
    // Two keep-alive connections hold the two permits: a third client waits.
    let mut third = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    third.write_all(request).await.expect("write");
    let mut buffer = [0u8; 1024];
    let waited = tokio::time::timeout(Duration::from_millis(300), third.read(&mut buffer)).await;
    assert!(
        waited.is_err(),
        "the third client was served past the limit"
    );
    // One closes: the third is served.
    drop(first);
    let read = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buffer))
        .await
        .expect("served once a connection closed")
        .expect("read");
    assert!(buffer[..read].starts_with(b"HTTP/1.1 200"));
    drop((second, third));
    edge.shutdown().await;
}

#[tokio::test]
async fn target_stickiness_keeps_a_client_on_its_target() {
    let (a, _) = start_upstream("a").await;
    let (b, _) = start_upstream("b").await;
    let group = TargetGroupConfig {
        tls: None,
        host_header: None,
        outlier_detection: None,
        stickiness: Some(Duration::from_secs(300)),
        ..TargetGroupConfig::new("api", vec![a.address, b.address], health_check())
    };
    let edge = start_edge_with(
        vec![path_rule(1, "/api/*", ActionConfig::forward("api"))],
        not_found(),
        vec![group],
    )
    .await;
    edge.wait_for_healthy(2).await;
    let mut sticky = TestClient::http1();
    let first = sticky.get(&format!("{}/api/whoami", edge.url)).await;
    let cookie = first
        .header("set-cookie")
        .expect("a stickiness cookie")
        .to_owned();
    assert!(
        cookie.starts_with("SCALB=") && cookie.contains("Max-Age=300"),
        "{cookie}"
    );
    assert!(
        !cookie.contains(&a.address.to_string()) && !cookie.contains(&b.address.to_string()),
        "the cookie hides the address"
    );
    let name = first.json()["name"].as_str().expect("name").to_owned();
    for _ in 0..6 {
        let reply = sticky.get(&format!("{}/api/whoami", edge.url)).await;
        assert_eq!(reply.json()["name"], name.as_str());
        assert_eq!(
            reply.header("set-cookie"),
            Some(cookie.as_str()),
            "each answer renews the cookie, to the same target"
        );
    }
    // Without the cookie, round robin again.
    let mut names = std::collections::HashSet::new();
    for _ in 0..4 {
        let mut fresh = TestClient::http1();
        names.insert(whoami(&mut fresh, &edge).await);
    }
    assert_eq!(names.len(), 2);
    edge.shutdown().await;
    drop((a, b));
}

/// A request for `path` with `count` headers (Host, filler, and Connection: close).
fn with_headers(path: &str, count: usize) -> String {
    let filler: String = (2..count)
        .map(|index| format!("X-Header-{index}: {index}\r\n"))
        .collect();
    format!("GET {path} HTTP/1.1\r\nHost: shop.example\r\n{filler}Connection: close\r\n\r\n")
}

#[tokio::test]
async fn a_configured_header_count_is_kept() {
    let limits = Limits {
        max_headers: 20,
        drain_timeout: Duration::from_secs(2),
        ..Limits::default()
    };
    let edge = start_edge_with_limits(Vec::new(), not_found(), Vec::new(), limits).await;
    let address = edge.url.trim_start_matches("http://").to_owned();
    for (count, status) in [(20, "HTTP/1.1 404"), (21, "HTTP/1.1 431")] {
        let answer = raw_exchange(&address, &with_headers("/", count)).await;
        assert!(answer.starts_with(status), "{count} headers: {answer}");
    }
    edge.shutdown().await;
}

#[tokio::test]
async fn slow_and_idle_clients_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (a, _) = start_upstream("a").await;
    let limits = Limits {
        header_read_timeout: Duration::from_millis(300),
        drain_timeout: Duration::from_secs(2),
        ..Limits::default()
    };
    let edge = start_api_edge(a.address, limits).await;
    let address = edge.url.trim_start_matches("http://").to_owned();

    // A client that sends its headers a byte at a time, too slowly (slowloris).
    let mut slow = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    slow.write_all(b"GET /api/whoami HTTP/1.1\r\nHo")
        .await
        .expect("write");
    let mut buffer = [0u8; 512];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match slow.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "a client slow to send its headers is cut off"
    );

    // A client that declares a body and stalls in it gets 408 and its connection closed.
    let stalled = raw_exchange_stalling(
        &address,
        "POST /api/echo HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 10\r\n\r\nabc",
    )
    .await;
    assert!(stalled.starts_with("HTTP/1.1 408"), "{stalled}");

    // A keep-alive connection that stays idle after its answer is closed too.
    let mut idle = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    idle.write_all(b"GET /api/whoami HTTP/1.1\r\nHost: shop.example\r\n\r\n")
        .await
        .expect("write");
    let read = idle.read(&mut buffer).await.expect("read");
    assert!(buffer[..read].starts_with(b"HTTP/1.1 200"));
    let closed = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buffer)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "an idle keep-alive connection is closed"
    );
    edge.shutdown().await;
}

/// A target slower than the upstream timeout gets the client a 504 from the edge, while
/// answers within it go on, however many requests came before (on the target's pooled
/// connections, whose timers move from one deadline to the next).
#[tokio::test]
async fn a_target_slower_than_the_upstream_timeout_gets_a_504() {
    let (a, _) = start_upstream("a").await;
    let limits = Limits {
        upstream_timeout: Duration::from_millis(700),
        ..Limits::default()
    };
    let edge = start_api_edge(a.address, limits).await;
    let mut client = TestClient::http1();
    // Answers 400 ms late, each within its 700 ms: 2 s in all.
    for request in 0..5 {
        let reply = client.get(&format!("{}/api/sleep/400", edge.url)).await;
        assert_eq!(reply.status, 200, "request {request}");
    }
    let reply = client.get(&format!("{}/api/sleep/3000", edge.url)).await;
    assert_eq!(reply.status, 504, "{}", reply.text());
    assert!(reply.text().contains("target_timeout"), "{}", reply.text());
    let reply = client.get(&format!("{}/api/sleep/10", edge.url)).await;
    assert_eq!(reply.status, 200);
    edge.shutdown().await;
}

#[tokio::test]
async fn a_deregistered_target_drains_its_requests_in_flight_then_leaves() {
    let (a, _) = start_upstream("a").await;
    let (b, _) = start_upstream("b").await;
    let group = TargetGroupConfig {
        tls: None,
        host_header: None,
        outlier_detection: None,
        deregistration_delay: Duration::from_secs(1),
        ..TargetGroupConfig::new("api", vec![a.address], health_check())
    };
    let edge = start_edge_with(
        vec![path_rule(1, "/api/*", ActionConfig::forward("api"))],
        not_found(),
        vec![group],
    )
    .await;
    edge.wait_for_healthy(1).await;
    let control = std::sync::Arc::clone(&edge.control);
    control.register("api", b.address).await.expect("register");
    edge.wait_for_healthy(2).await;

    // A request in flight to a while a leaves: it finishes within the delay.
    let sleep_on_a = |millis: u64| {
        let url = format!("{}/api/sleep/{millis}", edge.url);
        tokio::spawn(async move {
            // Round robin over two targets: two requests reach each target once.
            let mut first = TestClient::http1();
            let mut second = TestClient::http1();
            let (x, y) = tokio::join!(first.get(&url), second.get(&url));
            (x.status.as_u16(), y.status.as_u16())
        })
    };
    let finishing = sleep_on_a(500);
    tokio::time::sleep(Duration::from_millis(100)).await;
    control
        .deregister("api", a.address)
        .await
        .expect("deregister");
    let described = edge.targets().await;
    let states: Vec<(String, String)> = described["target_groups"][0]["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .map(|target| {
            (
                target["address"].as_str().unwrap_or("").to_owned(),
                target["state"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert!(
        states.contains(&(a.address.to_string(), "draining".to_owned())),
        "{described}"
    );
    // New requests go to b only while a drains.
    let mut client = TestClient::http1();
    for _ in 0..4 {
        assert_eq!(whoami(&mut client, &edge).await, "b");
    }
    assert_eq!(finishing.await.expect("requests"), (200, 200));
    // With nothing left in flight, a is gone before its delay ends.
    for _ in 0..40 {
        let described = edge.targets().await;
        if described["target_groups"][0]["targets"]
            .as_array()
            .is_some_and(|targets| targets.len() == 1)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        edge.targets().await["target_groups"][0]["targets"]
            .as_array()
            .map(Vec::len),
        Some(1),
        "a drained and left"
    );

    // A request longer than the delay is cut off when the delay ends.
    let b_group = edge.targets().await;
    assert_eq!(
        b_group["target_groups"][0]["targets"][0]["state"],
        "healthy"
    );
    let url = format!("{}/api/sleep/5000", edge.url);
    let long = tokio::spawn(async move {
        let mut client = TestClient::http1();
        client.get(&url).await.status.as_u16()
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    control.register("api", a.address).await.expect("register");
    control
        .deregister("api", b.address)
        .await
        .expect("deregister");
    let started = std::time::Instant::now();
    let status = long.await.expect("request");
    // The edge answers 504 (its own error) or breaks off; never the target's 200.
    assert_ne!(status, 200, "the request outlived the deregistration delay");
    assert!(started.elapsed() < Duration::from_secs(4));
    edge.shutdown().await;
    drop((a, b));
}

#[tokio::test]
async fn application_cookie_stickiness_pins_a_client_once_its_target_sets_the_cookie() {
    let (a, _) = start_upstream("a").await;
    let (b, _) = start_upstream("b").await;
    let group = TargetGroupConfig {
        tls: None,
        host_header: None,
        outlier_detection: None,
        stickiness: Some(Duration::from_secs(120)),
        app_cookie: Some("shop_session".to_owned()),
        ..TargetGroupConfig::new("api", vec![a.address, b.address], health_check())
    };
    let edge = start_edge_with(
        vec![path_rule(1, "/api/*", ActionConfig::forward("api"))],
        not_found(),
        vec![group],
    )
    .await;
    edge.wait_for_healthy(2).await;
    let mut client = TestClient::http1();
    // Before the application sets its cookie, nothing pins the client.
    let mut names = std::collections::HashSet::new();
    for _ in 0..4 {
        let reply = client.get(&format!("{}/api/whoami", edge.url)).await;
        assert!(reply.header("set-cookie").is_none());
        names.insert(reply.json()["name"].as_str().unwrap_or("").to_owned());
    }
    assert_eq!(names.len(), 2, "round robin while unpinned");
    // The target that sets the cookie gets the client, for as long as the edge's cookie says.
    let login = client.get(&format!("{}/api/login", edge.url)).await;
    let pinned_to = login.text();
    let edge_cookie = login
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|cookie| cookie.starts_with("SCALBAPP="))
        .expect("the edge's application stickiness cookie")
        .to_owned();
    assert!(edge_cookie.contains("Max-Age=120"), "{edge_cookie}");
    assert!(client.cookie("shop_session").is_some());
    for _ in 0..6 {
        assert_eq!(whoami(&mut client, &edge).await, pinned_to);
    }
    edge.shutdown().await;
    drop((a, b));
}

/// A target that passes its health checks but closes the connection, unanswered, on any
/// other request: as one killed mid-request.
async fn start_crashing_target() -> SocketAddr {
    // Anything else: closed without an answer.
    start_raw_target(|_stream| async {}).await
}

/// A target that passes its health checks and hands the connection of any other request,
/// its head read, to `answer`.
async fn start_raw_target<F, A>(answer: F) -> SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> A + Clone + Send + 'static,
    A: Future<Output = ()> + Send + 'static,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 8192];
                let mut read = 0;
                loop {
                    match stream.read(&mut buffer[read..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read += n,
                    }
                    if buffer[..read]
                        .windows(4)
                        .any(|window| window == b"\r\n\r\n")
                    {
                        break;
                    }
                }
                if buffer.starts_with(b"GET /healthz") {
                    let _ = stream
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        )
                        .await;
                    return;
                }
                answer(stream).await;
            });
        }
    });
    address
}

#[tokio::test]
async fn an_idempotent_request_whose_target_dies_mid_request_goes_to_another_target() {
    let crashing = start_crashing_target().await;
    let (b, _) = start_upstream("b").await;
    let edge = start_edge(vec![("/api/*", "api", vec![crashing, b.address])]).await;
    edge.wait_for_healthy(2).await;
    let mut client = TestClient::http1();
    // Round robin sends some of these to the crashing target first: every GET succeeds.
    for _ in 0..6 {
        assert_eq!(whoami(&mut client, &edge).await, "b");
    }
    // A POST is never sent twice: the one that reached the crashing target fails.
    let mut statuses = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let reply = client
            .post(&format!("{}/api/echo", edge.url), &[], "hello")
            .await;
        statuses.insert(reply.status.as_u16());
    }
    assert_eq!(statuses, [200, 502].into_iter().collect(), "{statuses:?}");
    edge.shutdown().await;
    drop(b);
}

#[tokio::test]
async fn a_health_check_port_is_checked_instead_of_the_traffic_port() {
    // a takes traffic, but its own health path fails; its health is served on b's port.
    let (a, a_healthy) = start_upstream("a").await;
    let (b, _) = start_upstream("b").await;
    a_healthy.store(false, Ordering::SeqCst);
    let group = TargetGroupConfig {
        tls: None,
        host_header: None,
        outlier_detection: None,
        ..TargetGroupConfig::new(
            "api",
            vec![a.address],
            HealthCheckConfig {
                protocol: None,
                port: Some(b.address.port()),
                ..health_check()
            },
        )
    };
    let edge = start_edge_with(
        vec![path_rule(1, "/api/*", ActionConfig::forward("api"))],
        not_found(),
        vec![group],
    )
    .await;
    edge.wait_for_healthy(1).await;
    let mut client = TestClient::http1();
    assert_eq!(
        whoami(&mut client, &edge).await,
        "a",
        "traffic goes to a's own port"
    );
    edge.shutdown().await;
    drop((a, b));
}

#[tokio::test]
async fn a_group_may_send_its_own_host_keeping_the_clients_in_x_forwarded_host() {
    let (a, _) = start_upstream("a").await;
    for protocol in [
        securecart_edge::UpstreamProtocol::Http1,
        securecart_edge::UpstreamProtocol::Http2,
    ] {
        let group = TargetGroupConfig {
            host_header: Some(http::HeaderValue::from_static("shop.example")),
            protocol,
            ..TargetGroupConfig::new("api", vec![a.address], health_check())
        };
        let edge = start_edge_with(Vec::new(), ActionConfig::forward("api"), vec![group]).await;
        edge.wait_for_healthy(1).await;
        let seen = TestClient::http1()
            .get(&format!("{}/api/whoami", edge.url))
            .await
            .json();
        assert_eq!(seen["host"], "shop.example", "{protocol:?}: {seen}");
        assert_eq!(
            seen["x-forwarded-host"],
            edge.url.trim_start_matches("http://"),
            "{protocol:?}: {seen}"
        );
        edge.shutdown().await;
    }
    // Without it, the client's Host goes to the target, as behind ALB.
    let edge = start_edge(vec![("/api/*", "api", vec![a.address])]).await;
    edge.wait_for_healthy(1).await;
    let seen = TestClient::http1()
        .get(&format!("{}/api/whoami", edge.url))
        .await
        .json();
    assert_eq!(seen["host"], edge.url.trim_start_matches("http://"));
    assert_eq!(seen["x-forwarded-host"], "");
    edge.shutdown().await;
}

#[tokio::test]
async fn a_listener_sets_its_response_headers_on_every_answer() {
    use tokio::io::AsyncWriteExt;
    // A target that sets one of the listener's headers itself, and one of its own.
    let target = start_raw_target(|mut stream| async move {
        let _ = stream
            .write_all(
                b"HTTP/1.1 200 OK\r\nx-frame-options: ALLOWALL\r\nx-app: kept\r\nx-powered-by: PHP/5.6\r\ncontent-length: 2\r\n\r\nok",
            )
            .await;
    })
    .await;
    let mut config = common::one_listener("api", vec![target]);
    config.target_groups[0].health_check = health_check();
    config.listeners[0].rules = vec![path_rule(
        1,
        "/fixed",
        ActionConfig::FixedResponse(FixedResponseConfig {
            status: 200,
            content_type: "text/plain".to_owned(),
            body: "fixed".to_owned(),
        }),
    )];
    config.listeners[0].response_headers = vec![
        (
            http::HeaderName::from_static("strict-transport-security"),
            http::HeaderValue::from_static("max-age=63072000"),
        ),
        (
            http::HeaderName::from_static("x-frame-options"),
            http::HeaderValue::from_static("DENY"),
        ),
    ];
    config.listeners[0].remove_response_headers =
        vec![http::HeaderName::from_static("x-powered-by")];
    let edge = RunningEdge::start(config, "http").await;
    edge.wait_for_healthy(1).await;
    let mut client = TestClient::http1();
    // A target's answer: the listener's value replaces the target's, the header it removes
    // goes, the rest is kept.
    let forwarded = client.get(&format!("{}/anything", edge.url)).await;
    assert_eq!(forwarded.status, 200);
    assert_eq!(
        forwarded.header("strict-transport-security"),
        Some("max-age=63072000")
    );
    assert_eq!(forwarded.header("x-frame-options"), Some("DENY"));
    assert_eq!(forwarded.header("x-app"), Some("kept"));
    assert_eq!(forwarded.header("x-powered-by"), None);
    // The edge's own answers too: a fixed response, and a refusal.
    let fixed = client.get(&format!("{}/fixed", edge.url)).await;
    assert_eq!(fixed.text(), "fixed");
    assert_eq!(fixed.header("x-frame-options"), Some("DENY"));
    let refused = raw_exchange(
        edge.url.trim_start_matches("http://"),
        "GET /anything HTTP/1.1\r\n\r\n",
    )
    .await;
    assert!(refused.starts_with("HTTP/1.1 400"), "{refused}");
    assert!(
        refused.contains("strict-transport-security: max-age=63072000\r\n"),
        "{refused}"
    );
    edge.shutdown().await;
}

#[tokio::test]
async fn a_listener_appends_preserves_or_removes_x_forwarded_for_and_drops_invalid_names() {
    use securecart_edge::forward::{ForwardedFor, XffMode};
    let (a, _) = start_upstream("a").await;
    for (processing, expected) in [
        (
            ForwardedFor::default(),
            serde_json::json!(["203.0.113.9, 198.51.100.1, 127.0.0.1"]),
        ),
        (
            ForwardedFor {
                mode: XffMode::Preserve,
                client_port: false,
            },
            serde_json::json!(["203.0.113.9", "198.51.100.1"]),
        ),
        (
            ForwardedFor {
                mode: XffMode::Remove,
                client_port: false,
            },
            serde_json::json!([]),
        ),
    ] {
        let mut config = common::one_listener("api", vec![a.address]);
        config.target_groups[0].health_check = health_check();
        config.listeners[0].forwarded_for = processing;
        let edge = RunningEdge::start(config, "http").await;
        edge.wait_for_healthy(1).await;
        // Two lines, as a chain of proxies may send them.
        let answer = raw_exchange(
            edge.url.trim_start_matches("http://"),
            "GET /api/whoami HTTP/1.1\r\nHost: shop.example\r\nX-Forwarded-For: 203.0.113.9\r\n\
             X-Forwarded-For: 198.51.100.1\r\nConnection: close\r\n\r\n",
        )
        .await;
        let (_, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
        let seen: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(seen["x-forwarded-for-lines"], expected, "{processing:?}");
        assert_eq!(seen["x-forwarded-proto"], "http", "{processing:?}");
        edge.shutdown().await;
    }
    // More than 30 addresses to append to: ALB's 463, and the target is not asked.
    let mut config = common::one_listener("api", vec![a.address]);
    config.target_groups[0].health_check = health_check();
    let edge = RunningEdge::start(config, "http").await;
    edge.wait_for_healthy(1).await;
    let chain = (0..31)
        .map(|index| format!("10.0.0.{index}"))
        .collect::<Vec<_>>()
        .join(", ");
    let answer = raw_exchange(
        edge.url.trim_start_matches("http://"),
        &format!(
            "GET /api/whoami HTTP/1.1\r\nHost: shop.example\r\nX-Forwarded-For: {chain}\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 463"), "{answer}");
    assert!(answer.contains("too_many_forwarded_addresses"), "{answer}");
    edge.shutdown().await;
    // A header a CGI application would read as X-Forwarded-For goes through, unless the
    // listener drops invalid header names.
    for drop in [false, true] {
        let mut config = common::one_listener("api", vec![a.address]);
        config.target_groups[0].health_check = health_check();
        config.listeners[0].drop_invalid_header_fields = drop;
        let edge = RunningEdge::start(config, "http").await;
        edge.wait_for_healthy(1).await;
        let answer = raw_exchange(
            edge.url.trim_start_matches("http://"),
            "GET /api/whoami HTTP/1.1\r\nHost: shop.example\r\nX_Forwarded_For: 6.6.6.6\r\nConnection: close\r\n\r\n",
        )
        .await;
        let (_, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
        let seen: serde_json::Value = serde_json::from_str(body).expect("json");
        let expected = if drop { "" } else { "6.6.6.6" };
        assert_eq!(seen["x_forwarded_for"], expected, "drop: {drop}");
        edge.shutdown().await;
    }
    // With the client's port, which differs from one connection to the next.
    let mut config = common::one_listener("api", vec![a.address]);
    config.target_groups[0].health_check = health_check();
    config.listeners[0].forwarded_for = ForwardedFor {
        mode: XffMode::Append,
        client_port: true,
    };
    let edge = RunningEdge::start(config, "http").await;
    edge.wait_for_healthy(1).await;
    let seen = TestClient::http1()
        .get(&format!("{}/api/whoami", edge.url))
        .await
        .json();
    let entry = seen["x-forwarded-for"].as_str().expect("a line");
    let (ip, port) = entry.split_once(':').expect("address and port");
    assert_eq!(ip, "127.0.0.1", "{seen}");
    assert!(port.parse::<u16>().is_ok_and(|port| port > 0), "{seen}");
    edge.shutdown().await;
}

/// A rule's rewrites (ALB's transforms): the target is sent the URL and the Host they make,
/// after the rules chose it; a request they do not match goes on as it came.
#[tokio::test]
async fn a_rule_rewrites_the_url_and_host_its_target_is_sent() {
    use securecart_edge::actions::{ForwardConfig, RewriteConfig};
    let (a, _) = start_upstream("a").await;
    let rewritten = ActionConfig::Forward(ForwardConfig {
        url_rewrite: Some(RewriteConfig {
            regex: "^/legacy/(.*)$".to_owned(),
            replace: "/api/$1".to_owned(),
        }),
        host_rewrite: Some(RewriteConfig {
            regex: r"^shop\.example$".to_owned(),
            replace: "api.internal".to_owned(),
        }),
        ..match ActionConfig::forward("api") {
            ActionConfig::Forward(forward) => forward,
            _ => unreachable!("a forward"),
        }
    });
    let group = TargetGroupConfig {
        outlier_detection: None,
        ..TargetGroupConfig::new("api", vec![a.address], health_check())
    };
    let edge = start_edge_with(
        vec![path_rule(1, "/legacy/*", rewritten)],
        not_found(),
        vec![group],
    )
    .await;
    edge.wait_for_healthy(1).await;
    let mut client = TestClient::http1();
    let url = format!("{}/legacy/whoami", edge.url);
    let seen = client
        .send(http::Method::GET, &url, &[("host", "shop.example")], "")
        .await;
    assert_eq!(seen.status, 200, "{}", seen.text());
    assert_eq!(seen.json()["host"], "api.internal");
    // Another host: the URL is rewritten, the Host kept.
    let seen = client
        .send(http::Method::GET, &url, &[("host", "www.example")], "")
        .await
        .json();
    assert_eq!(seen["host"], "www.example");
    edge.shutdown().await;
}

/// A client that goes away before its answer is ready (ALB's 460): counted, and the
/// target's late answer sent nowhere; over HTTP/1.1 (the connection closed) and HTTP/2
/// (the stream reset, the connection kept).
#[tokio::test]
async fn a_request_its_client_abandons_is_counted_as_460() {
    use tokio::io::AsyncWriteExt;
    let (a, _) = start_upstream("a").await;
    let edge = start_edge(vec![("/api/*", "api", vec![a.address])]).await;
    edge.wait_for_healthy(1).await;
    let address = edge.url.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    stream
        .write_all(b"GET /api/slow HTTP/1.1\r\nHost: shop.example\r\n\r\n")
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(stream);
    let counted = "securecart_edge_requests_total{route=\"none\",code=\"460\"} 1\n";
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = TestClient::http1()
            .get(&format!("http://{}/metrics", edge.admin))
            .await
            .text();
        if metrics.contains(counted) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(metrics.contains(counted), "{metrics}");
    // Over HTTP/2: the client gives up on its request (hyper resets the stream).
    let mut client = TestClient::http2();
    let url = format!("{}/api/slow", edge.url);
    assert!(
        tokio::time::timeout(Duration::from_millis(100), client.get(&url))
            .await
            .is_err(),
        "the slow answer came before the client gave up"
    );
    let counted = "securecart_edge_requests_total{route=\"none\",code=\"460\"} 2\n";
    for _ in 0..100 {
        metrics = TestClient::http1()
            .get(&format!("http://{}/metrics", edge.admin))
            .await
            .text();
        if metrics.contains(counted) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(metrics.contains(counted), "{metrics}");
    edge.shutdown().await;
}

/// GET `/api/whoami` over TLS from a client with `certificate` (and its key), if any,
/// adding `extra` headers: the whoami answer, or why there was none.
async fn whoami_over_mtls(
    address: SocketAddr,
    server_pem: &[u8],
    certificate: Option<(Vec<u8>, Vec<u8>)>,
    extra: &str,
) -> Result<serde_json::Value, String> {
    use rustls_pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls_pki_types::CertificateDer::pem_slice_iter(server_pem) {
        roots.add(certificate.expect("PEM")).expect("root");
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots);
    let config = match certificate {
        Some((der, key)) => builder
            .with_client_auth_cert(
                vec![rustls_pki_types::CertificateDer::from(der)],
                rustls_pki_types::PrivateKeyDer::Pkcs8(key.into()),
            )
            .expect("client certificate"),
        None => builder.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|error| error.to_string())?;
    let name = rustls_pki_types::ServerName::try_from("shop.example").expect("name");
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|error| error.to_string())?;
    tls.write_all(
        format!(
            "GET /api/whoami HTTP/1.1\r\nHost: shop.example\r\n{extra}Connection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .map_err(|error| error.to_string())?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut answer))
        .await
        .map_err(|_| "no answer".to_owned())?
        .map_err(|error| error.to_string())?;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no answer: {answer}"))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(head.to_owned());
    }
    serde_json::from_str(body).map_err(|error| error.to_string())
}

/// Mutual TLS, as ALB's: `verify` takes only clients whose certificate chains to its trust
/// store, `passthrough` any client, and each sends the client's certificate on to the
/// targets; a client's own header of that name never reaches them.
#[tokio::test]
async fn https_listeners_may_ask_for_client_certificates() {
    use securecart_edge::tls::{ClientAuth, TlsConfig, self_signed};
    let (a, _) = start_upstream("a").await;
    let server = self_signed(&["shop.example".to_owned()]).expect("certificate");
    // A partners' CA, a partner's certificate it signed, and a stranger's of its own.
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let client = |issuer: Option<&rcgen::Issuer<'_, rcgen::KeyPair>>| {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(vec!["partner.example".to_owned()]).expect("params");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let certificate = match issuer {
            Some(issuer) => params.signed_by(&key, issuer),
            None => params.self_signed(&key),
        }
        .expect("certificate");
        (certificate, key.serialize_der())
    };
    let (partner, partner_key) = client(Some(&issuer));
    let (stranger, stranger_key) = client(None);
    let start = |client_auth: ClientAuth| {
        let mut config = common::one_listener("api", vec![a.address]);
        config.target_groups[0].health_check = health_check();
        config.listeners[0].tls = Some(TlsConfig {
            certificates: vec![server.clone()],
            client_auth,
            policy: Default::default(),
        });
        // A rule that would let a forged certificate header choose its answer: the rules
        // never see a client's own.
        config.listeners[0].rules = vec![Rule {
            name: "forged".to_owned(),
            priority: 1,
            conditions: Conditions {
                headers: vec![(
                    "x-securecart-mtls-clientcert".to_owned(),
                    vec!["forged".to_owned()],
                )],
                ..Conditions::default()
            },
            action: ActionConfig::FixedResponse(FixedResponseConfig {
                status: 403,
                content_type: "text/plain".to_owned(),
                body: "the rules saw a forged certificate".to_owned(),
            }),
        }];
        RunningEdge::start(config, "https")
    };
    let address = |edge: &RunningEdge| -> SocketAddr {
        edge.url
            .trim_start_matches("https://")
            .parse()
            .expect("address")
    };
    let sent_pem = |seen: &serde_json::Value| {
        let escaped = seen["mtls"].as_str().expect("a header").to_owned();
        form_urlencoded::parse(format!("v={escaped}").as_bytes())
            .next()
            .map(|(_, value)| value.into_owned())
            .expect("decoded")
    };
    let verify = start(ClientAuth::Verify {
        source: "partners.pem".to_owned(),
        trust_store: ca.pem().into_bytes(),
    })
    .await;
    verify.wait_for_healthy(1).await;
    let seen = whoami_over_mtls(
        address(&verify),
        &server.chain,
        Some((partner.der().to_vec(), partner_key.clone())),
        "",
    )
    .await
    .expect("a partner is let in");
    assert_eq!(
        sent_pem(&seen).replace('\n', ""),
        partner.pem().replace(['\n', '\r'], "")
    );
    for refused in [None, Some((stranger.der().to_vec(), stranger_key.clone()))] {
        assert!(
            whoami_over_mtls(address(&verify), &server.chain, refused, "")
                .await
                .is_err(),
            "a client without a partner's certificate is refused"
        );
    }
    verify.shutdown().await;
    let passthrough = start(ClientAuth::Passthrough).await;
    passthrough.wait_for_healthy(1).await;
    let seen = whoami_over_mtls(
        address(&passthrough),
        &server.chain,
        Some((stranger.der().to_vec(), stranger_key)),
        "X-SecureCart-Mtls-Clientcert: forged\r\n",
    )
    .await
    .expect("any client is let in");
    assert_eq!(
        sent_pem(&seen).replace('\n', ""),
        stranger.pem().replace(['\n', '\r'], "")
    );
    let seen = whoami_over_mtls(
        address(&passthrough),
        &server.chain,
        None,
        "X-SecureCart-Mtls-Clientcert: forged\r\n",
    )
    .await
    .expect("a client without a certificate too");
    assert_eq!(seen["mtls"], "", "a forged header never reaches the target");
    passthrough.shutdown().await;
}

/// A gRPC group's health check is a gRPC call (ALB's gRPC health checks, with a `GrpcCode`
/// matcher): its `grpc-status` decides, and a server that starts answering UNAVAILABLE
/// leaves the rotation.
#[tokio::test]
async fn a_grpc_groups_health_check_reads_the_calls_status() {
    let code = Arc::new(std::sync::atomic::AtomicU16::new(0));
    let answered = Arc::clone(&code);
    let target = serve(
        "127.0.0.1",
        Router::new().route(
            "/grpc.health.v1.Health/Check",
            post(move |headers: HeaderMap, body: bytes::Bytes| {
                let code = answered.load(Ordering::SeqCst);
                async move {
                    // A gRPC call, as gRPC servers insist: the content type, `te:
                    // trailers`, an empty message's frame.
                    let grpc_call = headers
                        .get("content-type")
                        .is_some_and(|value| value == "application/grpc")
                        && headers.get("te").is_some_and(|value| value == "trailers")
                        && body[..] == [0, 0, 0, 0, 0];
                    let mut trailers = HeaderMap::new();
                    let status = if grpc_call { code } else { 3 };
                    trailers.insert("grpc-status", status.to_string().parse().expect("value"));
                    axum::http::Response::builder()
                        .header("content-type", "application/grpc")
                        .body(axum::body::Body::new(TrailerBody {
                            data: Some(bytes::Bytes::from_static(b"\0\0\0\0\x02\x08\x01")),
                            trailers: Some(trailers),
                        }))
                        .expect("response")
                }
            }),
        ),
    )
    .await;
    let group = TargetGroupConfig {
        health_check: HealthCheckConfig {
            path: "/grpc.health.v1.Health/Check".to_owned(),
            grpc_codes: Some(vec![0..=0]),
            ..health_check()
        },
        protocol: securecart_edge::UpstreamProtocol::Http2,
        outlier_detection: None,
        ..TargetGroupConfig::new("grpc", vec![target.address], health_check())
    };
    let edge = start_edge_with(Vec::new(), ActionConfig::forward("grpc"), vec![group]).await;
    edge.wait_for_healthy(1).await;
    code.store(14, Ordering::SeqCst);
    edge.wait_for_healthy(0).await;
    let target_state = &edge.targets().await["target_groups"][0]["targets"][0];
    assert_eq!(
        target_state["reason"], "Target.ResponseCodeMismatch",
        "{target_state}"
    );
    assert_eq!(
        target_state["description"], "Health checks failed with these gRPC codes: [14]",
        "{target_state}"
    );
    code.store(0, Ordering::SeqCst);
    edge.wait_for_healthy(1).await;
    edge.shutdown().await;
}

/// A listener's TLS policy (ALB's security policy and HTTP/2 attribute): TLS 1.3 only
/// refuses a TLS 1.2 client; without HTTP/2, ALPN agrees on HTTP/1.1.
#[tokio::test]
async fn an_https_listener_offers_the_versions_and_protocols_its_policy_says() {
    use securecart_edge::tls::{TlsConfig, TlsPolicy, self_signed};
    let (a, _) = start_upstream("a").await;
    let server = self_signed(&["shop.example".to_owned()]).expect("certificate");
    let start = |policy: TlsPolicy| {
        let mut config = common::one_listener("api", vec![a.address]);
        config.target_groups[0].health_check = health_check();
        config.listeners[0].tls = Some(TlsConfig {
            certificates: vec![server.clone()],
            client_auth: Default::default(),
            policy,
        });
        // The targets are told each session's version and cipher suite (ALB's
        // x_amzn_tls_version_and_cipher_suite).
        config.listeners[0].tls_headers = true;
        RunningEdge::start(config, "https")
    };
    let get = |edge: &RunningEdge, alpn: &'static [&'static [u8]], tls12_only: bool| {
        let address: SocketAddr = edge
            .url
            .trim_start_matches("https://")
            .parse()
            .expect("address");
        let chain = server.chain.clone();
        async move {
            securecart_testkit::tls_get(
                address,
                "shop.example",
                &chain,
                "/api/whoami",
                alpn,
                tls12_only,
            )
            .await
        }
    };
    let strict = start(TlsPolicy {
        tls13_only: true,
        http2: false,
    })
    .await;
    strict.wait_for_healthy(1).await;
    assert!(
        get(&strict, &[b"http/1.1"], true).await.is_err(),
        "TLS 1.2 refused"
    );
    let answered = get(&strict, &[b"h2", b"http/1.1"], false)
        .await
        .expect("TLS 1.3");
    assert_eq!(answered.reply.status, 200);
    assert_eq!(
        answered.alpn.as_deref(),
        Some(&b"http/1.1"[..]),
        "no HTTP/2"
    );
    // The policy is built into the listener's handshakes: a reload that changes it is
    // refused, naming the listener, and the edge goes on as it was.
    let mut changed = common::one_listener("api", vec![a.address]);
    changed.target_groups[0].health_check = health_check();
    changed.listeners[0].tls = Some(TlsConfig {
        certificates: vec![server.clone()],
        client_auth: Default::default(),
        policy: TlsPolicy::default(),
    });
    let refused = strict
        .control
        .apply(changed)
        .await
        .expect_err("a restart's change");
    assert!(
        refused.to_string().contains("listener http") && refused.to_string().contains("restart"),
        "{refused}"
    );
    assert!(
        get(&strict, &[b"http/1.1"], true).await.is_err(),
        "still TLS 1.3 only"
    );
    strict.shutdown().await;
    let default = start(TlsPolicy::default()).await;
    default.wait_for_healthy(1).await;
    let answered = get(&default, &[b"h2", b"http/1.1"], true)
        .await
        .expect("TLS 1.2 by default");
    assert_eq!(answered.alpn.as_deref(), Some(&b"h2"[..]));
    let seen = answered.reply.json();
    assert_eq!(seen["tls_version"], "TLSv1.2", "{seen}");
    assert!(
        seen["tls_cipher_suite"]
            .as_str()
            .is_some_and(|suite| suite.starts_with("TLS_ECDHE_")),
        "{seen}"
    );
    default.shutdown().await;
}

/// A target that does not accept its connection in time gets ALB's 504, where one that
/// refuses it gets 502: a listener whose queue of connections to accept is full drops new
/// ones, so that connecting to it waits past the connect timeout.
#[tokio::test]
async fn a_target_that_does_not_accept_in_time_gets_504() {
    // A listener with room for one connection waiting to be accepted, never accepting.
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().expect("address").into())
        .expect("bind");
    socket.listen(0).expect("listen");
    let full: SocketAddr = socket
        .local_addr()
        .expect("address")
        .as_socket()
        .expect("inet");
    // Fill its queue: the next connection's SYN is dropped, and it waits.
    let mut waiting = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(stream)) = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(full),
        )
        .await
        {
            waiting.push(stream);
        }
    }
    let group = TargetGroupConfig {
        outlier_detection: None,
        ..TargetGroupConfig::new("api", vec![full], health_check())
    };
    let edge = start_edge_with_limits(
        vec![path_rule(1, "/api/*", ActionConfig::forward("api"))],
        not_found(),
        vec![group],
        Limits {
            connect_timeout: Duration::from_millis(300),
            ..Limits::default()
        },
    )
    .await;
    let reply = TestClient::http1()
        .get(&format!("{}/api/whoami", edge.url))
        .await;
    assert_eq!(reply.status, 504, "{}", reply.text());
    assert_eq!(reply.json()["error"]["code"], "target_connect_timeout");
    edge.shutdown().await;
    drop((waiting, socket));
}
