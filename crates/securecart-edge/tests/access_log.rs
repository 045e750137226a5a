//! The access log's line for a request the edge sent to more than one target: a target
//! that refuses the connection is left for the next, and the line lists both, in turn,
//! with the statuses they answered (ALB's `target:port_list` and
//! `target_status_code_list`).

use securecart_testkit::{TestClient, serve};

mod common;
use common::RunningEdge;

#[tokio::test]
async fn a_request_retried_on_another_target_lists_each_attempt() {
    // (This file is a test binary of its own, with this one test.)
    let captured = common::Captured::install();
    let upstream = serve(
        "127.0.0.1",
        axum::Router::new().fallback(|| async { "reached" }),
    )
    .await;
    // A port nothing listens on: its connections are refused.
    let dead =
        std::net::SocketAddr::from(([127, 0, 0, 1], securecart_testkit::free_port("127.0.0.1")));
    let mut config = common::one_listener("app", vec![dead, upstream.address]);
    // No target ever passes its health check, so the group fails open and round robin
    // keeps both in turn: a request that starts at the dead target is retried.
    config.target_groups[0].health_check.matcher = vec![599..=599];
    let edge = RunningEdge::start(config, "http").await;
    let mut client = TestClient::http1();
    for _ in 0..2 {
        let answer = client.get(&format!("{}/", edge.url)).await;
        assert_eq!(answer.status, 200);
    }
    edge.shutdown().await;
    let live = upstream.address.to_string();
    upstream.stop().await;
    let text = captured.text();
    let lines = captured.lines("access");
    assert_eq!(lines.len(), 2, "{text}");
    for line in &lines {
        assert_eq!(line["target"], live, "{line}");
        match line["attempts"].as_u64() {
            Some(2) => {
                assert_eq!(line["target_list"], format!("{dead} {live}"), "{line}");
                assert_eq!(line["target_status_code_list"], "- 200", "{line}");
            }
            Some(1) => {
                assert_eq!(line["target_list"], live, "{line}");
                assert_eq!(line["target_status_code_list"], "200", "{line}");
            }
            _ => panic!("{line}"),
        }
    }
    assert!(
        lines.iter().any(|line| line["attempts"] == 2),
        "no request was retried: {text}"
    );
}
