//! The upstream stage: sends a request to a target of its group over the target's pooled
//! keep-alive connections ([`crate::pool`]), and tries another target when the first could
//! not be reached.
//!
//! A request may go to a second target only if nothing of it reached the first (a connect
//! failure), or its method is idempotent and its connection failed before an answer; and
//! it can be sent again: its body is empty or was buffered. Bodies with a
//! declared length up to [`MAX_BUFFERED_BODY`] are buffered before forwarding, as nginx
//! does by default; longer or chunked bodies stream through and are never retried.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri, Version};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};

use crate::balancer::{InFlight, TargetGroup};
use crate::config::UpstreamProtocol;
use crate::context::RequestContext;
use crate::error::EdgeError;
use crate::metrics::EdgeMetrics;
use crate::pool::{PoolError, TargetBody};

/// The error of a body the edge relays: hyper's, or the edge's own (a body over its limit).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of everything the edge sends and answers.
pub type EdgeBody = UnsyncBoxBody<Bytes, BoxError>;

/// The most targets one request is sent to.
pub const MAX_ATTEMPTS: usize = 3;

/// Request bodies up to this length are buffered, so that a connect failure can be retried.
pub const MAX_BUFFERED_BODY: u64 = 64 * 1024;

/// An empty body.
pub fn empty() -> EdgeBody {
    Empty::<Bytes>::new()
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

/// A body of bytes.
pub fn full(bytes: Bytes) -> EdgeBody {
    Full::new(bytes)
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

/// A request body as the upstream stage holds it.
enum RequestBody {
    /// Nothing to send.
    Empty,
    /// The whole body, read before forwarding; can be sent again.
    Buffered(Bytes),
    /// A body that streams to the target; sent once.
    Streaming(EdgeBody),
    /// A body of unknown length that streams to the target, cut off past a limit.
    StreamingLimited(http_body_util::Limited<EdgeBody>),
}

impl RequestBody {
    /// The request's body, read whole if the edge buffers it, else ready to stream; its
    /// bytes added to `count` as they are read.
    async fn read<B>(
        body: B,
        limit: Option<u64>,
        timeout: Duration,
        count: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
    ) -> Result<Self, EdgeError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        if body.is_end_stream() {
            return Ok(RequestBody::Empty);
        }
        let boxed = |body: B| -> EdgeBody {
            match &count {
                Some(count) => Counted {
                    inner: boxed(body),
                    count: std::sync::Arc::clone(count),
                }
                .boxed_unsync(),
                None => boxed(body),
            }
        };
        if let Some(limit) = limit {
            match body.size_hint().exact() {
                Some(length) if length > limit => return Err(EdgeError::BodyTooLarge(limit)),
                None => {
                    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
                    return Ok(RequestBody::StreamingLimited(http_body_util::Limited::new(
                        boxed(body),
                        limit,
                    )));
                }
                Some(_) => {}
            }
        }
        match body.size_hint().exact() {
            Some(length) if length <= MAX_BUFFERED_BODY => {
                // A client that declares a body and then stalls is cut off, as one that
                // stalls in its headers is.
                let bytes = tokio::time::timeout(timeout, body.collect())
                    .await
                    .map_err(|_| EdgeError::ClientTimeout)?
                    .map_err(|_| EdgeError::BadRequest("the request body ended early"))?
                    .to_bytes();
                if let Some(count) = &count {
                    count.store(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
                }
                Ok(RequestBody::Buffered(bytes))
            }
            _ => Ok(RequestBody::Streaming(boxed(body))),
        }
    }

    fn is_replayable(&self) -> bool {
        matches!(self, RequestBody::Empty | RequestBody::Buffered(_))
    }

    fn take(&mut self) -> EdgeBody {
        match std::mem::replace(self, RequestBody::Empty) {
            RequestBody::Empty => empty(),
            RequestBody::Buffered(bytes) => {
                let body = full(bytes.clone());
                *self = RequestBody::Buffered(bytes);
                body
            }
            RequestBody::Streaming(body) => body,
            // Past the limit the body fails, which aborts the upstream request; `send` reports
            // it as 413.
            RequestBody::StreamingLimited(limited) => limited.boxed_unsync(),
        }
    }
}

fn boxed<B>(body: B) -> EdgeBody
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

static X_FORWARDED_HOST: http::HeaderName = http::HeaderName::from_static("x-forwarded-host");

/// Joins the client's and the target's connections once both have switched protocols (a
/// WebSocket, say) and copies bytes both ways until either side closes, or neither sends a
/// byte for the client connection's idle timeout (as ALB's idle timeout closes them).
fn tunnel(client: crate::server::OnUpgrade, target: crate::h1::Connection) {
    tokio::spawn(async move {
        let crate::server::Upgraded {
            stream: client,
            early: client_early,
            idle_timeout,
            // Dropped when the tunnel ends, which frees the client connection's slot.
            slot: _slot,
        } = match client.wait().await {
            Ok(client) => client,
            Err(error) => {
                tracing::debug!(%error, "protocol switch failed");
                return;
            }
        };
        // What either side sent right after the switch was read with its head.
        let (target, target_early) = target.into_parts();
        let began = tokio::time::Instant::now();
        let last = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut client = Active {
            stream: client,
            began,
            last: std::sync::Arc::clone(&last),
        };
        let mut target = Active {
            stream: target,
            began,
            last: std::sync::Arc::clone(&last),
        };
        let copied = async {
            tokio::io::AsyncWriteExt::write_all(&mut target, &client_early).await?;
            tokio::io::AsyncWriteExt::write_all(&mut client, &target_early).await?;
            tokio::io::copy_bidirectional(&mut client, &mut target).await
        };
        let idle = async {
            loop {
                let since =
                    began + Duration::from_millis(last.load(std::sync::atomic::Ordering::Relaxed));
                if since.elapsed() >= idle_timeout {
                    return;
                }
                tokio::time::sleep_until(since + idle_timeout).await;
            }
        };
        tokio::select! {
            copied = copied => {
                if let Err(error) = copied {
                    tracing::debug!(%error, "upgraded connection ended with an error");
                }
            }
            () = idle => tracing::debug!("upgraded connection closed after its idle timeout"),
        }
    });
}

/// A switched connection's side, noting when it last read a byte (in milliseconds since
/// the switch, shared with the other side).
struct Active<S> {
    stream: S,
    began: tokio::time::Instant,
    last: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Active<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
        buffer: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buffer.filled().len();
        let polled = std::pin::Pin::new(&mut self.stream).poll_read(context, buffer);
        if buffer.filled().len() > before {
            let since = u64::try_from(self.began.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.last.store(since, std::sync::atomic::Ordering::Relaxed);
        }
        polled
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Active<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(context, data)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(context)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(context)
    }
}

/// A request body whose bytes are counted as they pass.
struct Counted {
    inner: EdgeBody,
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(context);
        if let std::task::Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.count
                .fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Whether a failed request failed because its body went over its limit.
fn over_limit(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(current) = source {
        if current.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = current.source();
    }
    false
}

/// A target's response body, carrying the count of its request in flight until it ends.
struct CountedBody {
    inner: TargetBody,
    in_flight: InFlight,
}

impl http_body::Body for CountedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.in_flight.is_cut_off() {
            return std::task::Poll::Ready(Some(Err(BoxError::from(
                "the target's deregistration delay ended",
            ))));
        }
        std::pin::Pin::new(&mut this.inner).poll_frame(context)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// How one request is sent.
#[derive(Debug)]
pub struct SendOptions {
    /// The target the client's stickiness cookie names (healthy), tried first.
    pub sticky_target: Option<usize>,
    /// How long the target may take to answer with headers.
    pub timeout: Duration,
    /// How long the client may take to send a body the edge buffers.
    pub body_timeout: Duration,
    /// The client's side of a protocol switch, to join to the target's.
    pub client_upgrade: Option<crate::server::OnUpgrade>,
    /// The largest request body.
    pub max_body_bytes: Option<u64>,
}

/// Sends a prepared request to the group and returns the target's response.
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn keeps a second copy of each argument it moves (rust-lang/rust#62958)"
)]
pub fn send<B>(
    group: &TargetGroup,
    metrics: &EdgeMetrics,
    context: &mut RequestContext,
    request: Request<B>,
    options: SendOptions,
) -> impl Future<Output = Result<Response<EdgeBody>, EdgeError>>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    async move {
        let SendOptions {
            sticky_target,
            body_timeout,
            timeout,
            client_upgrade,
            max_body_bytes,
        } = options;
        if group.targets.is_empty() {
            return Err(EdgeError::NoTargets(group.name.clone()));
        }
        let (mut parts, body) = request.into_parts();
        // The body's bytes are counted as they are read, buffered or streamed through, for
        // the access log.
        let count = (!body.is_end_stream())
            .then(|| std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0)));
        context.received_bytes.clone_from(&count);
        let mut body = RequestBody::read(body, max_body_bytes, body_timeout, count).await?;
        let body_streams = !body.is_replayable();
        // Shared bytes: cloning it per attempt copies nothing.
        let path_and_query = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        group.retry_budget.deposit();
        let mut tried = [usize::MAX; MAX_ATTEMPTS];
        // This send's attempts (the context counts every attempt of the request, which may
        // have been sent to another group before: the cache's origin shield).
        let mut attempt = 0;
        loop {
            let sticky = sticky_target.filter(|_| attempt == 0);
            let Some(index) = sticky.or_else(|| group.pick(&tried[..attempt])) else {
                return Err(EdgeError::Connect(
                    "every target refused the connection".to_owned(),
                ));
            };
            tried[attempt] = index;
            attempt += 1;
            context.attempts += 1;
            let target = &group.targets[index];
            let uri = match group.protocol {
                // HTTP/1.1 sends the origin form (`/path?query`).
                UpstreamProtocol::Http1 => Uri::from(path_and_query.clone()),
                // HTTP/2 sends the scheme and authority as pseudo-headers.
                UpstreamProtocol::Http2 => Uri::builder()
                    .scheme(if target.pool.tls().is_some() {
                        "https"
                    } else {
                        "http"
                    })
                    .authority(match &group.host_header {
                        Some((_, Some(authority))) => authority.clone(),
                        _ => target.authority.clone(),
                    })
                    .path_and_query(path_and_query.clone())
                    .build()
                    .map_err(|_| EdgeError::BadRequest("the request target is not a valid URI"))?,
            };
            context.tried.push(target.address);
            let may_retry = client_upgrade.is_none()
                && body.is_replayable()
                && attempt < MAX_ATTEMPTS
                && group.targets.len() > attempt;
            let mut request = Request::new(body.take());
            *request.method_mut() = parts.method.clone();
            *request.uri_mut() = uri;
            *request.version_mut() = match group.protocol {
                UpstreamProtocol::Http1 => Version::HTTP_11,
                UpstreamProtocol::Http2 => Version::HTTP_2,
            };
            *request.headers_mut() = if may_retry {
                parts.headers.clone()
            } else {
                std::mem::take(&mut parts.headers)
            };
            // The group's own Host, the client's kept in `X-Forwarded-Host`.
            if let Some((host, _)) = &group.host_header {
                let headers = request.headers_mut();
                if let Some(client) = headers.remove(http::header::HOST) {
                    headers.insert(X_FORWARDED_HOST.clone(), client);
                }
                headers.insert(http::header::HOST, host.clone());
            }
            // An HTTP/1.0 client may have sent no Host; HTTP/1.1 needs one. (Not through
            // `entry`, which makes room for one more header first: a map sized for its headers
            // would grow, and rehash, though the Host is there.)
            if group.protocol == UpstreamProtocol::Http1
                && !request.headers().contains_key(http::header::HOST)
            {
                let host = http::HeaderValue::from_str(target.authority.as_str())
                    .unwrap_or_else(|_| http::HeaderValue::from_static("localhost"));
                request.headers_mut().insert(http::header::HOST, host);
            }
            // An ambiguous request that desync mitigation let through ends its target's
            // connection (a protocol switch's becomes a tunnel and is never pooled).
            if context.close_target && client_upgrade.is_none() {
                request.extensions_mut().insert(crate::h1::CloseConnection);
            }
            let in_flight = group.start_request(index);
            let sent = std::time::Instant::now();
            context.sent_to_target = Some(sent);
            let deadline = tokio::time::Instant::from_std(sent) + timeout;
            let answer = tokio::select! {
                answer = target.pool.send(request, deadline) => answer,
                () = target.cut_off() => {
                    return Err(EdgeError::Upstream(
                        "the target's deregistration delay ended".to_owned(),
                    ));
                }
            };
            // Outlier detection counts what fails for the target's sake: a 5xx, no answer
            // in time, a connection that failed (as Envoy's consecutive gateway errors);
            // not a client's upload that broke off or went past its limit. While a client's
            // body streams through, a timeout or a broken exchange may be the client's
            // (a slow upload, one cut off), so only a failed connection counts then.
            let observe = |status: Option<u16>, at: std::time::Instant| {
                let observed = group.observe_outcome(index, status, at);
                if observed.ejected {
                    tracing::warn!(group = %group.name, target = %target.address, "target ejected after consecutive errors");
                }
                if observed.ejected || observed.assessed {
                    metrics.set_target_health(group);
                }
            };
            match answer {
                Err(PoolError::Timeout) => {
                    if !body_streams {
                        observe(None, std::time::Instant::now());
                    }
                    return Err(EdgeError::Timeout);
                }
                Ok(mut response) => {
                    let answered = std::time::Instant::now();
                    context.target = Some(target.address);
                    context.target_answered = Some(answered);
                    context.target_status = Some(response.status().as_u16());
                    context.tried.answered(response.status().as_u16());
                    observe(context.target_status, answered);
                    let elapsed = answered.duration_since(sent);
                    group.observe_latency(index, elapsed);
                    if let Some(metrics) = &group.metrics {
                        metrics.record(response.status().as_u16(), elapsed.as_secs_f64());
                    }
                    if response.status() == http::StatusCode::SWITCHING_PROTOCOLS
                        && let Some(client_upgrade) = client_upgrade
                        && let Some(target_connection) =
                            crate::pool::take_switched(response.body_mut())
                    {
                        tunnel(client_upgrade, target_connection);
                    }
                    return Ok(response.map(|body| {
                        CountedBody {
                            inner: body,
                            in_flight,
                        }
                        .boxed_unsync()
                    }));
                }
                Err(error) => {
                    // A body past its limit fails the request wherever it is noticed.
                    let too_large = match &error {
                        PoolError::Request(error) | PoolError::Body(error) => {
                            max_body_bytes.filter(|_| over_limit(&**error))
                        }
                        // (A timeout returned above.)
                        PoolError::Connect(_)
                        | PoolError::ConnectTimeout(_)
                        | PoolError::Timeout => None,
                    };
                    let failure = match (error, too_large) {
                        (_, Some(limit)) => EdgeError::BodyTooLarge(limit),
                        (PoolError::Connect(reason), None) => EdgeError::Connect(reason),
                        (PoolError::ConnectTimeout(reason), None) => {
                            EdgeError::ConnectTimeout(reason)
                        }
                        // The client's upload broke off: not the target's doing, and not to be
                        // sent again.
                        (PoolError::Body(_), None) => {
                            EdgeError::BadRequest("the request body ended early")
                        }
                        (PoolError::Request(error), None) => EdgeError::Upstream(error.to_string()),
                        (PoolError::Timeout, None) => EdgeError::Timeout,
                    };
                    // An idempotent request whose connection failed before an answer may be sent
                    // again (nginx's `proxy_next_upstream error`): the target may have seen it,
                    // but seeing it twice changes nothing.
                    let targets_fault = failure.is_retryable()
                        || (matches!(failure, EdgeError::Upstream(_)) && !body_streams);
                    if targets_fault {
                        observe(None, std::time::Instant::now());
                    }
                    let retryable = failure.is_retryable()
                        || (parts.method.is_idempotent()
                            && matches!(failure, EdgeError::Upstream(_)));
                    if !retryable {
                        return Err(failure);
                    }
                    // Passive health: a target that refuses connections, or does not accept
                    // them in time, leaves the rotation now; its active check brings it back.
                    if failure.is_retryable() && target.set_healthy(false) {
                        tracing::warn!(group = %group.name, target = %target.address, "target unreachable; taken out of rotation");
                        metrics.set_target_health(group);
                    }
                    if !may_retry || !group.retry_budget.withdraw() {
                        return Err(failure);
                    }
                    metrics.retried(group);
                }
            }
        }
    }
}
