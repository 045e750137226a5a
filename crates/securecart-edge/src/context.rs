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
    /// The target that answered.
    pub target: Option<SocketAddr>,
    /// When the request was (last) sent to a target.
    pub sent_to_target: Option<Instant>,
    /// When the target's response headers came.
    pub target_answered: Option<Instant>,
    /// The target's status.
    pub target_status: Option<u16>,
    /// The request body's length, when known.
    pub received_bytes: u64,
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
            target: None,
            sent_to_target: None,
            target_answered: None,
            target_status: None,
            received_bytes: 0,
            attempts: 0,
            error_code: None,
        }
    }
}
