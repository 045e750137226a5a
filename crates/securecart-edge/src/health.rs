//! Active health checks: one task per target asks its health path every interval and moves
//! it between healthy and unhealthy after the configured number of consecutive results.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use securecart_telemetry::Readiness;
use tokio::sync::watch;

use crate::balancer::{CheckOutcome, CheckReport, TargetGroup};
use crate::config::{CheckProtocol, HealthCheckConfig, UpstreamProtocol};
use crate::metrics::EdgeMetrics;
use crate::target_tls::{Connector, Stream, TargetTls, TargetVerify};

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
    // Checks use fresh connections, so that a target that stops accepting is noticed, and
    // the group's own HTTP version, so that an HTTP/2-only target (gRPC) can pass.
    for group_index in 0..groups.len() {
        for target_index in 0..groups[group_index].targets.len() {
            let groups = Arc::clone(groups);
            let group = &groups[group_index];
            let target = &group.targets[target_index];
            // The health check port if the group has one, else the traffic port.
            let address = match group.health_check.port {
                Some(port) => SocketAddr::new(target.address.ip(), port),
                None => target.address,
            };
            // HTTPS with the group's TLS settings (or any certificate, for a group that
            // speaks plain HTTP), as the check asks or, by default, as the traffic goes.
            let tls = match (group.health_check.protocol, target.pool.tls()) {
                (Some(CheckProtocol::Http), _) | (None, None) => Ok(None),
                (_, Some(tls)) => Ok(Some(tls.clone())),
                (Some(CheckProtocol::Https), None) => {
                    TargetTls::new(None, TargetVerify::Any).map(Some)
                }
            };
            // (A check whose TLS cannot be set up fails, and says why once.)
            let connector = tls
                .map(|tls| tls.map(|tls| Connector::new(&tls, address.ip(), group.protocol)))
                .inspect_err(|error| {
                    tracing::error!(group = %group.name, target = %target.address, %error, "the health check's TLS cannot be set up");
                });
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
                    let outcome = match &connector {
                        Ok(connector) => {
                            probe(address, connector.as_ref(), group.protocol, check).await
                        }
                        Err(_) => CheckOutcome::Failed,
                    };
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

/// Asks the health path of the target at `address` (over TLS with `connector`), on a
/// connection of its own, with the check's timeout: passed if its whole answer has a status
/// the matcher accepts.
async fn probe(
    address: SocketAddr,
    connector: Option<&Connector>,
    protocol: UpstreamProtocol,
    check: &HealthCheckConfig,
) -> CheckOutcome {
    let asked = async {
        let Ok(stream) = tokio::net::TcpStream::connect(address).await else {
            return CheckOutcome::Failed;
        };
        let _ = stream.set_nodelay(true);
        let stream = match connector {
            None => Stream::Plain(stream),
            Some(connector) => match connector.connect(stream).await {
                Ok(stream) => stream,
                Err(_) => return CheckOutcome::Failed,
            },
        };
        let scheme = if connector.is_some() { "https" } else { "http" };
        // A gRPC check calls `path` with an empty message (its five-byte frame: not
        // compressed, no length), as gRPC's clients do.
        let grpc = check
            .grpc_codes
            .as_ref()
            .filter(|_| protocol == UpstreamProtocol::Http2);
        let request = Request::builder()
            .method(if grpc.is_some() {
                http::Method::POST
            } else {
                http::Method::GET
            })
            .uri(match protocol {
                UpstreamProtocol::Http1 => check.path.clone(),
                UpstreamProtocol::Http2 => format!("{scheme}://{address}{}", check.path),
            })
            .header(http::header::USER_AGENT, "securecart-edge-health-check");
        let request = match (protocol, grpc) {
            (UpstreamProtocol::Http1, _) => request.header(http::header::HOST, address.to_string()),
            (UpstreamProtocol::Http2, Some(_)) => request
                .header(http::header::CONTENT_TYPE, "application/grpc")
                .header(http::header::TE, "trailers"),
            (UpstreamProtocol::Http2, None) => request,
        };
        let body = if grpc.is_some() {
            Bytes::from_static(&[0; 5])
        } else {
            Bytes::new()
        };
        let Ok(request) = request.body(Full::new(body)) else {
            return CheckOutcome::Failed;
        };
        let io = TokioIo::new(stream);
        let status = match protocol {
            UpstreamProtocol::Http1 => {
                let Ok((mut sender, connection)) = hyper::client::conn::http1::handshake(io).await
                else {
                    return CheckOutcome::Failed;
                };
                answered(sender.send_request(request), connection).await
            }
            UpstreamProtocol::Http2 => {
                // hyper's HTTP/2 client runs the connection, and a request's body, in
                // tasks of their own: they end with the probe.
                let tasks = ProbeTasks::default();
                let _ended = AbortOnDrop(tasks.clone());
                let Ok((mut sender, connection)) =
                    hyper::client::conn::http2::handshake(tasks, io).await
                else {
                    return CheckOutcome::Failed;
                };
                answered(sender.send_request(request), connection).await
            }
        };
        match (status, grpc) {
            // A gRPC answer: HTTP 200 and the call's status, which the codes judge.
            (Some((200, Some(code))), Some(codes))
                if codes.iter().any(|codes| codes.contains(&code)) =>
            {
                CheckOutcome::Passed
            }
            (Some((200, Some(code))), Some(_)) => CheckOutcome::GrpcMismatch(code),
            (Some((status, _)), Some(_)) => CheckOutcome::Mismatch(status),
            (Some((status, _)), None)
                if check.matcher.iter().any(|codes| codes.contains(&status)) =>
            {
                CheckOutcome::Passed
            }
            (Some((status, _)), None) => CheckOutcome::Mismatch(status),
            (None, _) => CheckOutcome::Failed,
        }
    };
    tokio::time::timeout(check.timeout, asked)
        .await
        .unwrap_or(CheckOutcome::TimedOut)
}

/// Spawns the tasks of an HTTP/2 probe's connection, and keeps a handle on each.
#[derive(Clone, Default)]
struct ProbeTasks(Arc<parking_lot::Mutex<Vec<tokio::task::AbortHandle>>>);

impl<F> hyper::rt::Executor<F> for ProbeTasks
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        let task = tokio::spawn(future).abort_handle();
        self.0.lock().push(task);
    }
}

/// Aborts a probe's tasks when the probe ends (answered, failed, or timed out).
struct AbortOnDrop(ProbeTasks);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in self.0.0.lock().drain(..) {
            task.abort();
        }
    }
}

/// The status of a whole answer (its body read, so that the check measures a complete
/// answer) and its `grpc-status` (from its trailers, or its head for a gRPC answer of
/// trailers only), if any; none if it failed. Its connection is driven beside the
/// exchange, and dropped with it.
async fn answered(
    response: impl Future<Output = hyper::Result<http::Response<hyper::body::Incoming>>>,
    connection: impl Future,
) -> Option<(u16, Option<u16>)> {
    let exchange = async {
        let response = response.await.ok()?;
        let status = response.status().as_u16();
        let grpc_status = |headers: &http::HeaderMap| {
            headers
                .get("grpc-status")
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.trim().parse::<u16>().ok())
        };
        let in_head = grpc_status(response.headers());
        let collected = response.into_body().collect().await.ok()?;
        let code = collected.trailers().and_then(grpc_status).or(in_head);
        Some((status, code))
    };
    tokio::pin!(exchange);
    tokio::select! {
        status = &mut exchange => status,
        // A connection that ends (a target that closes after its answer) has handed its
        // answer's bytes to the exchange.
        _ = connection => exchange.await,
    }
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
