//! Active health checks: one task per target asks its health path every interval and moves
//! it between healthy and unhealthy after the configured number of consecutive results.

use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use securecart_telemetry::Readiness;
use tokio::sync::watch;

use crate::balancer::{CheckOutcome, CheckReport, TargetGroup};
use crate::metrics::EdgeMetrics;

/// What a checker remembers of one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CheckState {
    /// Whether the target is healthy.
    pub healthy: bool,
    /// Consecutive passes since the last failure.
    pub passes: u32,
    /// Consecutive failures since the last pass.
    pub failures: u32,
}

/// The state after one check: a pure function, tested as a table.
pub fn next_state(
    state: CheckState,
    passed: bool,
    healthy_threshold: u32,
    unhealthy_threshold: u32,
) -> CheckState {
    let (passes, failures) = if passed {
        (state.passes.saturating_add(1), 0)
    } else {
        (0, state.failures.saturating_add(1))
    };
    let healthy = if state.healthy {
        failures < unhealthy_threshold
    } else {
        passes >= healthy_threshold
    };
    CheckState {
        healthy,
        passes,
        failures,
    }
}

/// Starts a checker for every target of every group; they stop when `stop` turns true.
pub fn spawn_checkers(
    groups: &Arc<[TargetGroup]>,
    metrics: &EdgeMetrics,
    readiness: &Readiness,
    stop: &watch::Receiver<bool>,
) {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    // Checks use fresh connections, so that a target that stops accepting is noticed, and
    // the group's own protocol, so that an HTTP/2-only target (gRPC) can pass.
    let build = |http2: bool| -> Client<HttpConnector, Empty<Bytes>> {
        Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .http2_only(http2)
            .build(connector.clone())
    };
    let (http1_client, http2_client) = (build(false), build(true));
    for group_index in 0..groups.len() {
        for target_index in 0..groups[group_index].targets.len() {
            let groups = Arc::clone(groups);
            let client = match groups[group_index].protocol {
                crate::config::UpstreamProtocol::Http1 => http1_client.clone(),
                crate::config::UpstreamProtocol::Http2 => http2_client.clone(),
            };
            let metrics = metrics.clone();
            let readiness = readiness.clone();
            let mut stop = stop.clone();
            tokio::spawn(async move {
                // A target kept across a reload keeps its health.
                let mut state = CheckState {
                    healthy: groups[group_index].targets[target_index].is_healthy(),
                    ..CheckState::default()
                };
                // And its checks' verdict: `initial` is for a target new to its group.
                let mut settled = groups[group_index].targets[target_index]
                    .check_report()
                    .settled;
                loop {
                    let group = &groups[group_index];
                    let target = &group.targets[target_index];
                    let check = &group.health_check;
                    // A passive ejection (a failed connect on the request path) may have
                    // marked the target down since the last check: start counting again.
                    if state.healthy && !target.is_healthy() {
                        state = CheckState::default();
                    }
                    // The health check port if the group has one, else the traffic port.
                    let authority: std::borrow::Cow<'_, str> = match check.port {
                        Some(port) => std::net::SocketAddr::new(target.address.ip(), port)
                            .to_string()
                            .into(),
                        None => target.authority.as_str().into(),
                    };
                    let outcome = probe(&client, &authority, check).await;
                    let passed = outcome == CheckOutcome::Passed;
                    state = next_state(
                        state,
                        passed,
                        check.healthy_threshold,
                        check.unhealthy_threshold,
                    );
                    // An ejected outlier stays out until its ejection ends, however well
                    // it answers its health check.
                    if state.healthy && target.is_ejected() {
                        state = CheckState::default();
                    }
                    settled |= state.healthy || state.failures >= check.unhealthy_threshold;
                    target.record_check(CheckReport { outcome, settled });
                    if target.set_healthy(state.healthy) {
                        if state.healthy {
                            tracing::info!(group = %group.name, target = %target.address, "target healthy");
                        } else {
                            tracing::warn!(group = %group.name, target = %target.address, "target unhealthy");
                        }
                    }
                    metrics.set_target_health(group);
                    readiness.set(groups.iter().all(|group| group.healthy_count() > 0));
                    tokio::select! {
                        () = tokio::time::sleep(check.interval) => {}
                        _ = stop.wait_for(|stopped| *stopped) => return,
                    }
                }
            });
        }
    }
}

/// Asks the target's health path with the check's timeout: passed if its whole answer has
/// a status the matcher accepts.
async fn probe(
    client: &Client<HttpConnector, Empty<Bytes>>,
    authority: &str,
    check: &crate::config::HealthCheckConfig,
) -> CheckOutcome {
    let Ok(request) = Request::get(format!("http://{authority}{}", check.path))
        .header(http::header::USER_AGENT, "securecart-edge-health-check")
        .body(Empty::new())
    else {
        return CheckOutcome::Failed;
    };
    let asked = async {
        let Ok(response) = client.request(request).await else {
            return CheckOutcome::Failed;
        };
        let status = response.status().as_u16();
        // Read the body so the check measures a complete answer.
        match response.into_body().collect().await {
            Ok(_) if check.matcher.iter().any(|codes| codes.contains(&status)) => {
                CheckOutcome::Passed
            }
            Ok(_) => CheckOutcome::Mismatch(status),
            Err(_) => CheckOutcome::Failed,
        }
    };
    tokio::time::timeout(check.timeout, asked)
        .await
        .unwrap_or(CheckOutcome::TimedOut)
}

#[cfg(test)]
mod tests {
    use super::{CheckState, next_state};

    #[test]
    fn thresholds_move_a_target_between_states() {
        // Thresholds: 2 passes to become healthy, 3 failures to become unhealthy.
        let steps: &[(bool, bool)] = &[
            // (check passed, healthy afterwards)
            (true, false),
            (true, true),
            (false, true),
            (false, true),
            (true, true),
            (false, true),
            (false, true),
            (false, false),
            (true, false),
            (false, false),
            (true, false),
            (true, true),
        ];
        let mut state = CheckState::default();
        for (step, (passed, healthy)) in steps.iter().enumerate() {
            state = next_state(state, *passed, 2, 3);
            assert_eq!(state.healthy, *healthy, "step {step}: {state:?}");
        }
    }
}
