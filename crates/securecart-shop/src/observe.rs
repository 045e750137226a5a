//! The request middleware every service runs first: it continues the caller's W3C trace (or
//! starts one), records the request in the service's metrics, and logs it with its trace id.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use securecart_telemetry::trace_context::TRACEPARENT;
use securecart_telemetry::{HttpMetrics, TraceContext};
use tracing::Instrument;

/// Paths that are polled (health checks) and not worth a log line each.
fn is_quiet(path: &str) -> bool {
    path == "/healthz"
}

/// The trace context of a request, available to handlers that call other services.
#[derive(Debug, Clone, Copy)]
pub struct RequestTrace(pub TraceContext);

/// The middleware.
pub async fn observe(
    State(metrics): State<HttpMetrics>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let incoming = request
        .headers()
        .get(TRACEPARENT)
        .and_then(|value| value.to_str().ok())
        .and_then(TraceContext::parse);
    let trace = incoming.map_or_else(TraceContext::new_root, |parent| parent.child());
    request.extensions_mut().insert(RequestTrace(trace));
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let span = tracing::info_span!("request", trace_id = %trace.trace_id_hex());
    let response = next.run(request).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    metrics.record(&route, status, elapsed);
    if !is_quiet(&path) {
        span.in_scope(|| {
            tracing::info!(
                %method,
                %path,
                status,
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                "served"
            );
        });
    }
    response
}
