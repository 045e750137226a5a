//! The admin endpoint every component serves on its admin address: `/metrics` in the
//! Prometheus text format and `/healthz`, which answers 200 only while the component is
//! ready to serve. Components add their own admin routes (the edge's target health, for
//! example) by merging a router.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::MetricsRegistry;

/// Whether a component is ready; shared between the component, which sets it, and
/// `/healthz`, which reports it.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks the component ready or not.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    /// Whether the component is ready.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Whether `headers` carry `Authorization: Bearer <token>` with this token, compared in
/// constant time (so that it cannot be guessed byte by byte): what an admin route that
/// changes something asks of its caller.
pub fn bears_token(headers: &axum::http::HeaderMap, token: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .is_some_and(|given| {
            given.len() == token.len()
                && given
                    .bytes()
                    .zip(token.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        })
}

#[derive(Clone)]
struct AdminState {
    metrics: MetricsRegistry,
    readiness: Readiness,
}

/// The admin endpoint, ready to serve.
#[derive(Debug)]
pub struct AdminServer {
    listener: TcpListener,
    router: Router,
}

impl AdminServer {
    /// Binds the admin address. `extra` holds the component's own admin routes.
    pub async fn bind(
        address: SocketAddr,
        metrics: MetricsRegistry,
        readiness: Readiness,
        extra: Router,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(address).await?;
        let router = Router::new()
            .route("/metrics", get(metrics_handler))
            .route("/healthz", get(health_handler))
            .with_state(AdminState { metrics, readiness })
            .merge(extra)
            // JSON errors, as the components' own routes give them.
            .fallback(|| async {
                admin_error(StatusCode::NOT_FOUND, "not_found", "no such admin route")
            })
            .method_not_allowed_fallback(|| async {
                admin_error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    "this admin route does not take that method",
                )
            });
        Ok(Self { listener, router })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// An admin error, as the components' routes write theirs: `{"error": {"code", "message"}}`
/// (`code` and `message` are this module's own, without quotes or backslashes).
fn admin_error(
    status: StatusCode,
    code: &'static str,
    message: &'static str,
) -> axum::response::Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        format!(r#"{{"error":{{"code":"{code}","message":"{message}"}}}}"#),
    )
        .into_response()
}

async fn metrics_handler(State(state): State<AdminState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

async fn health_handler(State(state): State<AdminState>) -> impl IntoResponse {
    if state.readiness.is_ready() {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}
