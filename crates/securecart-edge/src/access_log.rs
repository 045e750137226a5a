//! The access log: one line per request with the fields of ALB's access log that apply,
//! written when the response's body has been sent (or abandoned), so that the times and byte
//! counts are whole. Lines go through `tracing` (target `access`): readable by default, JSON
//! objects with `--log-format json`; the access log is off when that target is filtered out
//! (`SECURECART_LOG=warn`), and then nothing of it is computed.
//!
//! | field | meaning (as ALB's) |
//! |---|---|
//! | `type` | `http`, `https`, `h2`, `h2c` or `ws` (an upgraded connection) |
//! | `client`, `target` | addresses and ports |
//! | `request_processing_time` | seconds from the request's arrival to sending it to the target |
//! | `target_processing_time` | seconds from sending it to the target's response headers |
//! | `response_processing_time` | seconds from the target's headers to the body's end |
//! | `elb_status_code`, `target_status_code` | the edge's status and the target's |
//! | `received_bytes`, `sent_bytes` | request body bytes received; response body bytes sent |
//! | `request` | `METHOD scheme://host:port/path?query HTTP/version` |
//! | `user_agent`, `domain_name` | as sent by the client |
//! | `ssl_protocol`, `ssl_cipher` | over TLS, the version and cipher suite agreed (IANA's names); `-` in clear |
//! | `target_group`, `matched_rule`, `actions_executed`, `redirect_url`, `error_reason` | what the edge did |
//! | `transformed_host`, `transformed_uri` | what a rule's rewrites made of the `Host` and the URL (empty: nothing) |
//! | `trace_id`, `attempts` | the W3C trace id (that of the `traceparent` targets are sent; the `Root` of their `X-Amzn-Trace-Id` holds the same digits, unless the client sent one naming another trace); how many targets were tried |
//! | `target_list`, `target_status_code_list` | the targets the request was sent to, in turn, and each one's status (`-`: no answer), space-delimited (ALB's `target:port_list` and `target_status_code_list`). More than one when the edge tried another target (one refused the connection or did not accept it in time, or an idempotent request's exchange broke) or another group (the cache's origin shield, origin and failover); past four, the first three and the last |
//! | `classification`, `classification_reason` | desync mitigation's: `Acceptable`, `Ambiguous` or `Severe` and ALB's reason code (`BothTeClPresent`...) for a request that does not comply with RFC 9112; `-` for one that does (see `guard.rs`) |
//!
//! A request whose handling ended before its answer was ready is logged with
//! `elb_status_code` 460 and `error_reason` `client_closed`, as ALB's 460: its client
//! closed the connection or reset its HTTP/2 stream (or, rarely, the edge stopped past its
//! drain timeout with the request still under way); the line keeps the request's desync
//! classification, made before any other stage. A client that leaves while sending
//! its body is answered by the edge itself (the body's error), not logged as 460.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::upstream::{BoxError, EdgeBody};

/// What the access log line of one request will say, gathered along the pipeline.
#[derive(Debug)]
pub struct AccessRecord {
    /// `http`, `https`, `h2`, `h2c` or `ws`.
    pub kind: &'static str,
    /// The listener's name.
    pub listener: String,
    /// The client.
    pub client: SocketAddr,
    /// The target that answered.
    pub target: Option<SocketAddr>,
    /// The request line.
    pub request: String,
    /// The client's `User-Agent`.
    pub user_agent: String,
    /// Over TLS, the protocol version and cipher suite agreed.
    pub tls: Option<(&'static str, &'static str)>,
    /// The host asked for.
    pub domain_name: String,
    /// The rule that matched.
    pub matched_rule: String,
    /// The target group, if the request was forwarded.
    pub target_group: String,
    /// `forward`, `redirect` or `fixed-response`.
    pub action: &'static str,
    /// The redirect's location.
    pub redirect_url: String,
    /// The URL a rule's rewrite made (empty: none).
    pub transformed_uri: String,
    /// The `Host` a rule's rewrite made (empty: none).
    pub transformed_host: String,
    /// Why the edge answered itself.
    pub error_reason: &'static str,
    /// Why the request does not comply with RFC 9112 (desync mitigation), if it does not.
    pub classification: Option<crate::guard::Reason>,
    /// The edge's status.
    pub elb_status_code: u16,
    /// The target's status.
    pub target_status_code: Option<u16>,
    /// Request body bytes, counted as they were read (the count is read when the line is
    /// written, by then whole).
    pub received_bytes: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
    /// The trace id.
    pub trace_id: String,
    /// Targets tried.
    pub attempts: u32,
    /// Those targets, with their statuses (see [`crate::context::Tried`]).
    pub tried: crate::context::Tried,
    /// When the request arrived.
    pub arrived: Instant,
    /// When it was sent to the target.
    pub sent_to_target: Option<Instant>,
    /// When the target's response headers came.
    pub target_answered: Option<Instant>,
}

/// Writes the line of a request that ends without a response body to wait for (one its
/// client abandoned before its answer was ready).
pub fn write_now(record: &AccessRecord) {
    write(record, 0);
}

/// A response body that writes the access log line when it ends.
pub struct LoggedBody {
    inner: EdgeBody,
    record: Option<Box<AccessRecord>>,
    sent_bytes: u64,
}

impl std::fmt::Debug for LoggedBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoggedBody")
            .field("sent_bytes", &self.sent_bytes)
            .finish_non_exhaustive()
    }
}

impl LoggedBody {
    /// Wraps a response body.
    pub fn new(inner: EdgeBody, record: AccessRecord) -> Self {
        Self {
            inner,
            record: Some(Box::new(record)),
            sent_bytes: 0,
        }
    }

    fn finish(&mut self) {
        if let Some(record) = self.record.take() {
            write(&record, self.sent_bytes);
        }
    }
}

impl Body for LoggedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(context);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.sent_bytes += data.len() as u64;
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => this.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    /// A body dropped before its end (the client went away, or a body the server never polled:
    /// after `HEAD`, 204 or 304) is logged with what was sent.
    fn drop(&mut self) {
        self.finish();
    }
}

fn seconds(from: Option<Instant>, to: Option<Instant>) -> f64 {
    match (from, to) {
        (Some(from), Some(to)) => to.saturating_duration_since(from).as_secs_f64(),
        // ALB writes -1 for a time that does not apply.
        _ => -1.0,
    }
}

fn write(record: &AccessRecord, sent_bytes: u64) {
    let now = Instant::now();
    tracing::info!(
        target: "access",
        r#type = record.kind,
        listener = %record.listener,
        client = %record.client,
        target = record.target.map(|target| target.to_string()).unwrap_or_default(),
        request_processing_time = seconds(Some(record.arrived), record.sent_to_target),
        target_processing_time = seconds(record.sent_to_target, record.target_answered),
        response_processing_time = seconds(record.target_answered.or(Some(record.arrived)), Some(now)),
        elb_status_code = record.elb_status_code,
        target_status_code = record.target_status_code.map_or(-1, i32::from),
        received_bytes = record
            .received_bytes
            .as_ref()
            .map_or(0, |count| count.load(std::sync::atomic::Ordering::Relaxed)),
        sent_bytes,
        request = %record.request,
        user_agent = %record.user_agent,
        domain_name = %record.domain_name,
        ssl_protocol = record.tls.map_or("-", |(version, _)| version),
        ssl_cipher = record.tls.map_or("-", |(_, suite)| suite),
        target_group = %record.target_group,
        matched_rule = %record.matched_rule,
        actions_executed = record.action,
        redirect_url = %record.redirect_url,
        transformed_host = %record.transformed_host,
        transformed_uri = %record.transformed_uri,
        error_reason = record.error_reason,
        classification = record
            .classification
            .map_or("-", |reason| reason.classification().as_str()),
        classification_reason = record.classification.map_or("-", crate::guard::Reason::as_str),
        trace_id = %record.trace_id,
        attempts = record.attempts,
        target_list = %record.tried.targets(),
        target_status_code_list = %record.tried.statuses(),
        "access"
    );
}
