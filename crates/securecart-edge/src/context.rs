//! What the pipeline knows about one request as it moves through the stages.

use std::net::SocketAddr;
use std::time::Instant;

use securecart_telemetry::TraceContext;

/// The per-request context, created when the request arrives and read by every stage.
#[derive(Debug)]
pub struct RequestContext {
    /// The client's address.
    pub client: SocketAddr,
    /// When the request's headers arrived.
    pub started: Instant,
    /// The trace this request belongs to (continued from the client's `traceparent`, or
    /// new); the edge's own span.
    pub trace: TraceContext,
    /// The rule that matched, by its prefix index in the router.
    pub rule: Option<usize>,
    /// The target that answered.
    pub target: Option<SocketAddr>,
    /// How many targets were tried.
    pub attempts: u32,
    /// Why the edge answered itself, if it did.
    pub error_code: Option<&'static str>,
}

impl RequestContext {
    /// The context of a request that just arrived.
    pub fn new(client: SocketAddr, trace: TraceContext) -> Self {
        Self {
            client,
            started: Instant::now(),
            trace,
            rule: None,
            target: None,
            attempts: 0,
            error_code: None,
        }
    }
}
