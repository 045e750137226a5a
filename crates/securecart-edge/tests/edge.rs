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
use securecart_edge::{
    Edge, EdgeConfig, HealthCheckConfig, Limits, RouteConfig, TargetGroupConfig,
};
use securecart_testkit::{TestClient, TestServer, free_port, serve};
use tokio::sync::oneshot;

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
                        "x-forwarded-proto": header("x-forwarded-proto"),
                        "traceparent": header("traceparent"),
                        "host": header("host"),
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
            "/api/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(400)).await;
                "slow answer"
            }),
        )
        .with_state(state);
    (serve("127.0.0.1", router).await, healthy)
}

struct RunningEdge {
    url: String,
    admin: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningEdge {
    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.task).await;
    }

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
        path: "/healthz".to_owned(),
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(200),
        healthy_threshold: 1,
        unhealthy_threshold: 1,
    }
}

async fn start_edge(groups: Vec<(&str, &str, Vec<SocketAddr>)>) -> RunningEdge {
    let mut routes = Vec::new();
    let mut target_groups = Vec::new();
    for (prefix, name, targets) in groups {
        routes.push(RouteConfig {
            path_prefix: prefix.to_owned(),
            target_group: name.to_owned(),
        });
        target_groups.push(TargetGroupConfig {
            name: name.to_owned(),
            targets,
            health_check: health_check(),
        });
    }
    let edge = Edge::bind(EdgeConfig {
        region: "test-1".to_owned(),
        listen: "127.0.0.1:0".parse().expect("address"),
        admin: "127.0.0.1:0".parse().expect("address"),
        routes,
        target_groups,
        limits: Limits {
            drain_timeout: Duration::from_secs(5),
            ..Limits::default()
        },
    })
    .await
    .expect("edge binds");
    let url = format!("http://{}", edge.local_addr().expect("address"));
    let admin = edge.admin_addr().expect("admin address");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(edge.serve(async move {
        let _ = stopped.await;
    }));
    RunningEdge {
        url,
        admin,
        stop: Some(stop),
        task,
    }
}

async fn whoami(client: &mut TestClient, edge: &RunningEdge) -> String {
    let reply = client.get(&format!("{}/api/whoami", edge.url)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["name"].as_str().expect("name").to_owned()
}

#[tokio::test]
async fn requests_are_spread_round_robin_over_healthy_targets() {
    let (a, _) = start_upstream("a").await;
    let (b, _) = start_upstream("b").await;
    let edge = start_edge(vec![("/api/", "api", vec![a.address, b.address])]).await;
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
    let edge = start_edge(vec![("/api/", "api", vec![a.address])]).await;
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

    // Without a traceparent, the edge starts a trace.
    let started = client.get(&format!("{}/api/whoami", edge.url)).await.json();
    assert_eq!(started["traceparent"].as_str().map(str::len), Some(55));
    edge.shutdown().await;
}

#[tokio::test]
async fn a_target_that_dies_leaves_the_rotation_without_failing_requests() {
    let (a, _) = start_upstream("a").await;
    let (b, _) = start_upstream("b").await;
    let edge = start_edge(vec![("/api/", "api", vec![a.address, b.address])]).await;
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
    let edge = start_edge(vec![("/api/", "api", vec![a.address, b.address])]).await;
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

#[tokio::test]
async fn the_edge_answers_itself_when_it_cannot_forward() {
    let unused = free_port("127.0.0.1");
    let edge = start_edge(vec![
        (
            "/api/",
            "dead",
            vec![format!("127.0.0.1:{unused}").parse().expect("address")],
        ),
        ("/empty/", "empty", Vec::new()),
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
    let edge = start_edge(vec![("/api/", "api", vec![a.address])]).await;
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
    let edge = start_edge(vec![("/api/", "api", vec![a.address])]).await;
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
