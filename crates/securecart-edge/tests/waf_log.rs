//! The WAF's log: each blocked or counted request is one JSON line (target `waf`) with its
//! web ACL, action, terminating rule, path and trace id, and every rule that matched with
//! its action, field and data, a credential's data redacted.

use securecart_edge::waf::WafConfig;
use securecart_testkit::{TestClient, serve};

mod common;
use common::RunningEdge;

#[tokio::test]
async fn each_request_is_logged_as_a_json_line_with_its_matches_and_redacted_data() {
    // (This file is a test binary of its own, with this one test.)
    let captured = common::Captured::install();
    let upstream = serve(
        "127.0.0.1",
        axum::Router::new().fallback(|| async { "reached" }),
    )
    .await;
    let mut config = common::one_listener("app", vec![upstream.address]);
    config.listeners[0].waf = Some(WafConfig::managed());
    let edge = RunningEdge::start(config, "http").await;
    let mut client = TestClient::http1();
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let injected = client
        .send(
            http::Method::GET,
            &format!(
                "{}/api/catalog/products?q=1%27%20OR%20%271%27%3D%271",
                edge.url
            ),
            &[("traceparent", &format!("00-{trace_id}-00f067aa0ba902b7-01"))],
            "",
        )
        .await;
    assert_eq!(injected.status, 403);
    let in_cookie = client
        .send(
            http::Method::GET,
            &format!("{}/api/cart", edge.url),
            &[("cookie", "session=1' OR '1'='1")],
            "",
        )
        .await;
    assert_eq!(in_cookie.status, 403);
    // By default a request let through by no rule is not logged.
    let benign = client
        .get(&format!("{}/api/catalog/products?q=wool", edge.url))
        .await;
    assert_eq!(benign.status, 200);
    edge.shutdown().await;

    // Logging filters (AWS WAF's): every request kept but the blocked ones.
    let mut config = common::one_listener("app", vec![upstream.address]);
    config.listeners[0].waf = Some(WafConfig {
        name: "filtered".to_owned(),
        logging: securecart_edge::waf::LogFilters {
            filters: vec![securecart_edge::waf::LogFilter {
                keep: false,
                meets_all: false,
                conditions: vec![securecart_edge::waf::LogCondition::Blocked],
            }],
            keep_by_default: true,
        },
        ..WafConfig::managed()
    });
    let edge = RunningEdge::start(config, "http").await;
    let benign = client
        .get(&format!("{}/api/catalog/products?q=wool", edge.url))
        .await;
    assert_eq!(benign.status, 200);
    let blocked = client
        .get(&format!(
            "{}/api/catalog/products?q=1%27%20OR%20%271%27%3D%271",
            edge.url
        ))
        .await;
    assert_eq!(blocked.status, 403);
    edge.shutdown().await;
    upstream.stop().await;
    let text = captured.text();
    // One line per request, as AWS WAF's log records.
    let requests = captured.lines("waf");
    let (requests, filtered): (Vec<_>, Vec<_>) = requests
        .into_iter()
        .partition(|request| request["web_acl"] == "edge");
    assert_eq!(requests.len(), 2, "{text}");
    // The filtered ACL logged the request it let through, with no rule, and not the one
    // it blocked.
    assert_eq!(filtered.len(), 1, "{text}");
    assert_eq!(filtered[0]["action"], "allow", "{text}");
    assert_eq!(filtered[0]["terminating_rule"], "-", "{text}");
    assert_eq!(filtered[0]["matches"], "[]", "{text}");
    // Each request's matches, from the JSON array its line carries.
    let matches_of = |request: &serde_json::Value| -> Vec<serde_json::Value> {
        serde_json::from_str(request["matches"].as_str().expect("matches")).expect("a JSON array")
    };
    let query = &requests[0];
    assert_eq!(query["action"], "block", "{query}");
    assert_eq!(query["web_acl"], "edge", "{query}");
    // The request's trace id, as its access log line has it.
    assert_eq!(query["trace_id"], trace_id, "{query}");
    let terminating = query["terminating_rule"].as_str().expect("a rule");
    assert!(terminating.starts_with("SC-"), "{query}");
    assert_eq!(query["rule"], terminating, "{query}");
    assert_eq!(query["path"], "/api/catalog/products", "{query}");
    let matched = matches_of(query);
    assert!(
        matched
            .iter()
            .any(|each| each["rule"] == terminating && each["action"] == "block"),
        "{query}"
    );
    let in_query = matched
        .iter()
        .find(|each| {
            each["field"]
                .as_str()
                .is_some_and(|at| at.starts_with("query"))
        })
        .unwrap_or_else(|| panic!("no match in the query: {query}"));
    assert!(
        in_query["data"]
            .as_str()
            .is_some_and(|data| data.contains("OR")),
        "{query}"
    );
    // A match in a cookie is a credential's: its data never reaches the log.
    let cookie = &requests[1];
    assert_eq!(cookie["path"], "/api/cart", "{cookie}");
    let matched = matches_of(cookie);
    assert!(
        matched.iter().any(|each| each["field"]
            .as_str()
            .is_some_and(|at| at.starts_with("cookie"))),
        "{cookie}"
    );
    for each in &matched {
        if each["field"]
            .as_str()
            .is_some_and(|at| at.starts_with("cookie"))
        {
            assert_eq!(each["data"], "REDACTED", "{cookie}");
        }
    }
    assert!(!text.contains("session=1"), "{text}");
}
