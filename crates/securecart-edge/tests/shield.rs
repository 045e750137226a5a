//! The shield with real clients on their own loopback addresses and a real upstream: a
//! client past its rate gets 429 and never reaches the upstream while others are served, a
//! client past its connections has new ones closed, and past the edge's requests in flight
//! only priority paths go on.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use securecart_edge::mitigation::MitigationConfig;
use securecart_edge::shield::ShieldConfig;
use securecart_testkit::{TestClient, TestServer, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

mod common;
use common::RunningEdge;

fn address(text: &str) -> IpAddr {
    text.parse().expect("address")
}

/// Limits for tests: 5 requests a second after a burst of 10, two connections per client.
fn limits() -> ShieldConfig {
    ShieldConfig {
        requests_per_second: NonZeroU32::new(5).expect("nonzero"),
        burst: NonZeroU32::new(10).expect("nonzero"),
        connections_per_client: 2,
        requests_in_flight_per_client: None,
        max_requests_in_flight: None,
        priority_paths: vec!["/healthz".to_owned(), "/api/checkout".to_owned()],
        exempt: vec!["127.0.30.0/24".parse().expect("network")],
        mitigation: None,
    }
}

/// An upstream that counts the requests reaching it, and holds `/slow` ones until `gate`
/// gives a permit.
async fn start_upstream() -> (TestServer, Arc<AtomicUsize>, Arc<Semaphore>) {
    let reached = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(0));
    let counter = Arc::clone(&reached);
    let slow_gate = Arc::clone(&gate);
    let slow_counter = Arc::clone(&reached);
    let router = axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route(
            "/slow",
            axum::routing::get(move || {
                let gate = Arc::clone(&slow_gate);
                let counter = Arc::clone(&slow_counter);
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let _ = gate.acquire().await.map(|permit| permit.forget());
                    "slow"
                }
            }),
        )
        .fallback(move || {
            let counter = Arc::clone(&counter);
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                "reached"
            }
        });
    (serve("127.0.0.1", router).await, reached, gate)
}

async fn start_edge(upstream: SocketAddr, shield: ShieldConfig) -> RunningEdge {
    let mut config = common::one_listener("app", vec![upstream]);
    config.shield = Some(shield);
    let edge = RunningEdge::start(config, "http").await;
    // The target passes its first health check before the test sends anything.
    let mut probe = TestClient::http1_from(address("127.0.30.9"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while probe.get(&format!("{}/healthz", edge.url)).await.status != 200 {
        assert!(Instant::now() < deadline, "the target never became healthy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    edge
}

async fn metrics(edge: &RunningEdge) -> String {
    TestClient::http1()
        .get(&format!("http://{}/metrics", edge.admin))
        .await
        .text()
}

#[tokio::test]
async fn a_client_past_its_rate_gets_429_and_others_are_served() {
    let (upstream, reached, _gate) = start_upstream().await;
    let edge = start_edge(upstream.address, limits()).await;
    let before = reached.load(Ordering::SeqCst);

    let mut flooder = TestClient::http1_from(address("127.0.10.1"));
    let started = Instant::now();
    let mut statuses = Vec::new();
    let mut refused = None;
    for _ in 0..30 {
        let reply = flooder.get(&format!("{}/products", edge.url)).await;
        statuses.push(reply.status.as_u16());
        if reply.status == 429 {
            refused.get_or_insert(reply);
        }
    }
    let served = statuses.iter().filter(|status| **status == 200).count();
    // The burst, and what the rate (5 a second) added while the 30 were sent.
    let allowed = 10 + (5.0 * started.elapsed().as_secs_f64()).ceil() as usize;
    assert!(
        (10..=allowed).contains(&served) && served < 30,
        "{statuses:?}"
    );
    assert_eq!(served + statuses.iter().filter(|s| **s == 429).count(), 30);
    let refused = refused.expect("a refusal");
    assert_eq!(refused.json()["error"]["code"], "rate_limited");
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(
        reached.load(Ordering::SeqCst) - before,
        served,
        "refused requests never reach the target"
    );

    // Another client is served, and a client the shield exempts is never limited.
    let mut shopper = TestClient::http1_from(address("127.0.20.1"));
    assert_eq!(shopper.get(&format!("{}/cart", edge.url)).await.status, 200);
    let mut monitor = TestClient::http1_from(address("127.0.30.1"));
    for _ in 0..30 {
        assert_eq!(monitor.get(&format!("{}/", edge.url)).await.status, 200);
    }

    // At 5 a second the flooder may send again a fifth of a second later.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(flooder.get(&format!("{}/", edge.url)).await.status, 200);

    let metrics = metrics(&edge).await;
    assert!(
        metrics.contains(&format!(
            "securecart_edge_errors_total{{code=\"rate_limited\",route=\"shield\",target_group=\"\"}} {}",
            30 - served
        )),
        "{metrics}"
    );
    edge.shutdown().await;
}

/// Connects from `source` and sends one GET; the status code, or `None` when the edge
/// closes the connection without an answer.
async fn one_request(source: IpAddr, edge: SocketAddr) -> Option<u16> {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(source, 0)).expect("bind");
    let mut stream = socket.connect(edge).await.expect("connect");
    let _ = stream
        .write_all(b"GET / HTTP/1.1\r\nhost: shop\r\nconnection: close\r\n\r\n")
        .await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
}

#[tokio::test]
async fn a_client_past_its_connections_has_new_ones_closed() {
    let (upstream, _reached, _gate) = start_upstream().await;
    let edge = start_edge(upstream.address, limits()).await;
    let edge_address: SocketAddr = edge
        .url
        .trim_start_matches("http://")
        .parse()
        .expect("address");
    let client = address("127.0.10.2");

    // Two connections held open (idle between requests, as keep-alive clients are).
    let mut held = Vec::new();
    for _ in 0..2 {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind(SocketAddr::new(client, 0)).expect("bind");
        held.push(socket.connect(edge_address).await.expect("connect"));
    }
    // The edge counts a connection when it accepts it: wait until it has both.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !metrics(&edge)
        .await
        .contains("securecart_edge_connections_active 2")
    {
        assert!(Instant::now() < deadline, "the edge never accepted both");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    assert_eq!(
        one_request(client, edge_address).await,
        None,
        "a third connection is closed unanswered"
    );
    assert_eq!(
        one_request(address("127.0.20.2"), edge_address).await,
        Some(200),
        "another client connects"
    );
    assert!(
        metrics(&edge)
            .await
            .contains("securecart_edge_errors_total{code=\"connection_limited\",route=\"none\",target_group=\"\"} 1")
    );

    // A closed connection frees its place (once the edge has seen it close).
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    while one_request(client, edge_address).await != Some(200) {
        assert!(
            Instant::now() < deadline,
            "the closed connection kept its place"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    edge.shutdown().await;
}

#[tokio::test]
async fn past_its_requests_in_flight_the_edge_sheds_all_but_priority_paths() {
    let (upstream, reached, gate) = start_upstream().await;
    let edge = start_edge(
        upstream.address,
        ShieldConfig {
            max_requests_in_flight: Some(2),
            ..limits()
        },
    )
    .await;
    let before = reached.load(Ordering::SeqCst);

    // Two slow requests, from two clients, fill the edge.
    let slow: Vec<_> = (1..=2)
        .map(|n| {
            let url = format!("{}/slow", edge.url);
            tokio::spawn(async move {
                TestClient::http1_from(address(&format!("127.0.11.{n}")))
                    .get(&url)
                    .await
                    .status
                    .as_u16()
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while reached.load(Ordering::SeqCst) < before + 2 {
        assert!(Instant::now() < deadline, "the slow requests never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let mut shopper = TestClient::http1_from(address("127.0.20.3"));
    let shed = shopper.get(&format!("{}/products", edge.url)).await;
    assert_eq!(shed.status, 503);
    assert_eq!(shed.json()["error"]["code"], "shed");
    assert_eq!(shed.header("retry-after"), Some("1"));
    // Priority paths (a checkout under way, a health check) go on.
    let checkout = shopper
        .post(&format!("{}/api/checkout", edge.url), &[], "{}")
        .await;
    assert_eq!(
        (checkout.status.as_u16(), checkout.text()),
        (200, "reached".to_owned())
    );
    assert_eq!(
        shopper.get(&format!("{}/healthz", edge.url)).await.status,
        200
    );

    // Once the slow requests end, everything is served again.
    gate.add_permits(2);
    for task in slow {
        assert_eq!(task.await.expect("slow request"), 200);
    }
    assert_eq!(
        shopper.get(&format!("{}/products", edge.url)).await.status,
        200
    );
    assert!(metrics(&edge).await.contains(
        "securecart_edge_errors_total{code=\"shed\",route=\"shield\",target_group=\"\"} 1"
    ));
    edge.shutdown().await;
}

/// GETs of `path` from `source`, one after another, every `pause`, until `stop` turns true
/// (at most 20,000 of them, for at most 30 s): the statuses.
async fn client_loop(
    url: String,
    source: IpAddr,
    pause: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<u16> {
    let mut client = TestClient::http1_from(source);
    let started = Instant::now();
    let mut statuses = Vec::new();
    while !*stop.borrow() && statuses.len() < 20_000 && started.elapsed() < Duration::from_secs(30)
    {
        let reply = client.get(&url).await;
        if reply.status == 429 {
            assert_eq!(reply.json()["error"]["code"], "mitigated");
        }
        statuses.push(reply.status.as_u16());
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    statuses
}

async fn shield_state(edge: &RunningEdge) -> serde_json::Value {
    TestClient::http1()
        .get(&format!("http://{}/shield", edge.admin))
        .await
        .json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_departing_from_the_baseline_is_held_back_until_it_ends() {
    let (upstream, _reached, _gate) = start_upstream().await;
    let window = Duration::from_millis(300);
    let edge = start_edge(
        upstream.address,
        ShieldConfig {
            // The fixed limits are far away: the mitigation is what acts here.
            requests_per_second: NonZeroU32::new(100_000).expect("nonzero"),
            burst: NonZeroU32::new(100_000).expect("nonzero"),
            connections_per_client: 100,
            requests_in_flight_per_client: None,
            mitigation: Some(MitigationConfig {
                window,
                learning_windows: 3,
                factor: 5,
                min_requests_per_second: 20,
                calm_windows: 2,
            }),
            ..limits()
        },
    )
    .await;
    let page = format!("{}/", edge.url);

    // Three shoppers browse about 20 times a second for the whole test.
    let (stop_shoppers, shopping) = tokio::sync::watch::channel(false);
    let shoppers: Vec<_> = (1..=3)
        .map(|n| {
            tokio::spawn(client_loop(
                page.clone(),
                address(&format!("127.0.20.{n}")),
                Duration::from_millis(50),
                shopping.clone(),
            ))
        })
        .collect();
    // The edge learns their traffic for a few windows.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let state = shield_state(&edge).await;
        assert_eq!(state["floods"], serde_json::json!([]), "{state}");
        let learnt = state["baselines"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|baseline| baseline["path"] == "/" && baseline["learnt"] == true);
        if learnt {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the page was never learnt: {state}"
        );
        tokio::time::sleep(window).await;
    }

    // Four clients flood the same page as fast as they can.
    let (stop_flood, flooding) = tokio::sync::watch::channel(false);
    let flooders: Vec<_> = (1..=4)
        .map(|n| {
            tokio::spawn(client_loop(
                page.clone(),
                address(&format!("127.0.60.{n}")),
                Duration::ZERO,
                flooding.clone(),
            ))
        })
        .collect();
    let flooder_addresses: Vec<String> = (1..=4).map(|n| format!("127.0.60.{n}")).collect();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let state = shield_state(&edge).await;
        let held: Vec<String> = state["floods"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|flood| flood["path"] == "/")
            .flat_map(|flood| flood["clients"].as_array().cloned().unwrap_or_default())
            .filter_map(|client| client.as_str().map(str::to_owned))
            .collect();
        if held == flooder_addresses {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the flooders were never all held back: {state}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Held for a few windows more, then the flood stops.
    tokio::time::sleep(window * 3).await;
    let _ = stop_flood.send(true);
    for flooder in flooders {
        let statuses = flooder.await.expect("flooder");
        assert!(statuses.contains(&429), "a flooder was never held back");
    }

    // Once the flood has stopped for two windows, its rules go.
    let deadline = Instant::now() + Duration::from_secs(15);
    while shield_state(&edge).await["floods"] != serde_json::json!([]) {
        assert!(Instant::now() < deadline, "the flood's rules stayed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut former_flooder = TestClient::http1_from(address("127.0.60.1"));
    for _ in 0..20 {
        assert_eq!(former_flooder.get(&page).await.status, 200);
    }

    // The shoppers were never held back.
    let _ = stop_shoppers.send(true);
    for shopper in shoppers {
        let statuses = shopper.await.expect("shopper");
        assert!(statuses.iter().all(|status| *status == 200), "{statuses:?}");
    }
    let metrics = metrics(&edge).await;
    let floods: u64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("securecart_edge_shield_floods_total "))
        .and_then(|count| count.parse().ok())
        .unwrap_or(0);
    assert!(floods >= 1, "{metrics}");
    assert!(metrics.contains("securecart_edge_shield_mitigated_clients 0"));
    edge.shutdown().await;
}
