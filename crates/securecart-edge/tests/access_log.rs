//! The access log's line for a request the edge sent to more than one target: a target
//! that refuses the connection is left for the next, and the line lists both, in turn,
//! with the statuses they answered (ALB's `target:port_list` and
//! `target_status_code_list`).

use std::sync::Arc;

use securecart_testkit::{TestClient, serve};

mod common;
use common::RunningEdge;

/// Log lines written while it lives, as the edge writes them with `log_format = "json"`.
#[derive(Clone, Default)]
struct Captured(Arc<parking_lot::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_request_retried_on_another_target_lists_each_attempt() {
    // The process's one subscriber (this file is a test binary of its own, with this one
    // test).
    let captured = Captured::default();
    let writer = captured.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .json()
            .with_writer(move || writer.clone())
            .finish(),
    )
    .expect("the only subscriber");
    let upstream = serve(
        "127.0.0.1",
        axum::Router::new().fallback(|| async { "reached" }),
    )
    .await;
    // A port nothing listens on: its connections are refused.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address")
    };
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
    let text = String::from_utf8(captured.0.lock().clone()).expect("text");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["target"] == "access")
        .map(|line| line["fields"].clone())
        .collect();
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
