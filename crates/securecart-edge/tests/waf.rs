//! The WAF stage with a real upstream that counts what reaches it: blocked requests get 403
//! and never reach it, ordinary ones do, form bodies are inspected, oversize bodies follow
//! the listener's choice, and matches are counted per rule.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use securecart_edge::waf::WafConfig;
use securecart_testkit::{TestClient, TestServer, serve};

mod common;
use common::RunningEdge;

async fn start_upstream() -> (TestServer, Arc<AtomicUsize>) {
    let reached = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&reached);
    let router = axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .fallback(move || {
            let counter = Arc::clone(&counter);
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                "reached"
            }
        });
    (serve("127.0.0.1", router).await, reached)
}

async fn start_edge(upstream: SocketAddr, waf: WafConfig) -> RunningEdge {
    let mut config = common::one_listener("app", vec![upstream]);
    config.listeners[0].waf = Some(waf);
    RunningEdge::start(config, "http").await
}

#[tokio::test]
async fn the_managed_web_acl_blocks_attacks_before_the_target_and_lets_shoppers_through() {
    let (upstream, reached) = start_upstream().await;
    let edge = start_edge(upstream.address, WafConfig::managed()).await;
    let mut client = TestClient::http1();

    let search = client
        .get(&format!(
            "{}/api/catalog/products?q=women%27s+shoes",
            edge.url
        ))
        .await;
    assert_eq!(
        (search.status.as_u16(), search.text()),
        (200, "reached".to_owned())
    );

    let injected = client
        .get(&format!(
            "{}/api/catalog/products?q=1%27%20OR%20%271%27%3D%271",
            edge.url
        ))
        .await;
    assert_eq!(injected.status, 403);
    assert_eq!(injected.json()["error"]["code"], "blocked");
    let posted = client
        .send(
            http::Method::POST,
            &format!("{}/api/cart/items", edge.url),
            &[("content-type", "application/x-www-form-urlencoded")],
            "comment=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        )
        .await;
    assert_eq!(posted.status, 403, "form bodies are inspected");
    let json = client
        .post(
            &format!("{}/api/checkout", edge.url),
            &[],
            r#"{"name":"Ada O'Brien","address":"1 Main St; Apt 2","email":"ada@example.com"}"#,
        )
        .await;
    assert_eq!(json.status, 200, "{}", json.text());
    assert_eq!(
        reached.load(Ordering::SeqCst),
        2,
        "blocked requests never reached the target"
    );

    let metrics = client
        .get(&format!("http://{}/metrics", edge.admin))
        .await
        .text();
    assert!(
        metrics.lines().any(
            |line| line.starts_with("securecart_edge_waf_matches_total{")
                && line.contains("rule=\"SC-SQLI-")
                && line.contains("action=\"block\"")
        ),
        "{metrics}"
    );
    edge.shutdown().await;
    upstream.stop().await;
}

#[tokio::test]
async fn oversize_bodies_follow_the_listeners_choice() {
    let (upstream, reached) = start_upstream().await;
    let strict = WafConfig {
        body_limit: 16,
        oversize_blocks: true,
        ..WafConfig::managed()
    };
    let edge = start_edge(upstream.address, strict).await;
    let mut client = TestClient::http1();
    let url = format!("{}/api/cart/items", edge.url);
    let form = [("content-type", "application/x-www-form-urlencoded")];
    assert_eq!(
        client
            .send(http::Method::POST, &url, &form, "a=1")
            .await
            .status,
        200
    );
    assert_eq!(
        client
            .send(http::Method::POST, &url, &form, "note=a+rather+long+note")
            .await
            .status,
        403
    );
    edge.shutdown().await;

    // Inspected as far as the limit goes: an attack past it is not seen.
    let lenient = WafConfig {
        body_limit: 16,
        oversize_blocks: false,
        ..WafConfig::managed()
    };
    let edge = start_edge(upstream.address, lenient).await;
    let url = format!("{}/api/cart/items", edge.url);
    let tail = "padding=aaaaaaaaaaaaaaaaaaaa&q=1%27+OR+%271%27%3D%271";
    assert_eq!(
        client
            .send(http::Method::POST, &url, &form, tail)
            .await
            .status,
        200
    );
    assert_eq!(reached.load(Ordering::SeqCst), 2);
    edge.shutdown().await;
    upstream.stop().await;
}
