//! The access log's line for a request the edge sent to more than one target: a target
//! that refuses the connection is left for the next, and the line lists both, in turn,
//! with the statuses they answered (ALB's `target:port_list` and
//! `target_status_code_list`); and for a cacheable request that failed over.

use std::sync::OnceLock;

use securecart_testkit::{TestClient, serve};

mod common;
use common::{Captured, RunningEdge};

/// The log lines of this test binary, whose tests tell theirs apart by path.
fn captured() -> &'static Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED.get_or_init(Captured::install)
}

/// The access log's lines of requests for `path`.
fn request_lines(captured: &Captured, path: &str) -> Vec<serde_json::Value> {
    let request = format!("{path} HTTP/");
    captured
        .lines("access")
        .into_iter()
        .filter(|line| {
            line["request"]
                .as_str()
                .is_some_and(|sent| sent.contains(&request))
        })
        .collect()
}

#[tokio::test]
async fn a_request_retried_on_another_target_lists_each_attempt() {
    let captured = captured();
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
        let answer = client.get(&format!("{}/retried", edge.url)).await;
        assert_eq!(answer.status, 200);
    }
    edge.shutdown().await;
    let live = upstream.address.to_string();
    upstream.stop().await;
    let text = captured.text();
    let lines = request_lines(captured, "/retried");
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

/// A cacheable request whose origin refuses the connection and whose secondary group
/// answers with a failover status gets the origin's failure (502), and its line names no
/// target that answered, while the lists show every attempt: with an origin shield that
/// failed first too, whose answer is not the request's either.
#[tokio::test]
async fn a_failed_failover_names_the_origin_that_did_not_answer() {
    let captured = captured();
    let dead =
        std::net::SocketAddr::from(([127, 0, 0, 1], securecart_testkit::free_port("127.0.0.1")));
    let failing = |text| common::answering(axum::http::StatusCode::SERVICE_UNAVAILABLE, text);
    let secondary = failing("secondary failed").await;
    let shield = failing("shield failed").await;
    let mut client = TestClient::http1();
    for (path, shield) in [
        ("/static/failover", None),
        ("/static/shielded", Some(shield.address)),
    ] {
        let edge = common::start_failing_over(dead, secondary.address, shield).await;
        let answer = client.get(&format!("{}{path}", edge.url)).await;
        assert_eq!(answer.status, 502, "{path}");
        edge.shutdown().await;
        let text = captured.text();
        let lines = request_lines(captured, path);
        assert_eq!(lines.len(), 1, "{text}");
        let line = &lines[0];
        assert_eq!(line["elb_status_code"], 502, "{line}");
        assert_eq!(line["target"], "", "{line}");
        assert_eq!(line["target_status_code"], -1, "{line}");
        assert_eq!(line["target_processing_time"], -1.0, "{line}");
        let (targets, statuses) = match shield {
            None => (format!("{dead} {}", secondary.address), "- 503"),
            Some(shield) => (
                format!("{shield} {dead} {}", secondary.address),
                "503 - 503",
            ),
        };
        assert_eq!(line["target_list"], targets, "{line}");
        assert_eq!(line["target_status_code_list"], statuses, "{line}");
    }
    secondary.stop().await;
    shield.stop().await;
}
