//! Telemetry shared by every SecureCart component: logs through `tracing`, Prometheus
//! metrics, the W3C trace context, and the admin endpoint that serves `/metrics` and
//! `/healthz`.
//!
//! Metric names follow one scheme, `securecart_<component>_<name>_<unit>`, with
//! low-cardinality labels only (a route or target group name, a status code, never a path
//! or a client address). The schemes of every metric are listed in ARCHITECTURE.md.

pub mod admin;
pub mod logging;
pub mod metrics;
pub mod trace_context;

pub use admin::{AdminServer, Readiness};
pub use logging::LogFormat;
pub use metrics::{HttpMetrics, MetricsRegistry};
pub use trace_context::TraceContext;
