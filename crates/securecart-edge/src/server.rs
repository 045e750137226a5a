//! HTTP/1.1 from clients, served by each connection's own task; HTTP/2 handed to hyper.
//!
//! Written here rather than taken from hyper's server (`hyper_util`'s `auto` builder), for
//! what hyper's HTTP/1 server costs per connection and per request and offers no option to
//! change:
//!
//! - memory: hyper keeps an 8 KiB read buffer and an 8 KiB write buffer for a connection's
//!   whole life, so 2,000 idle keep-alive clients held 38 MB. Here an idle plain connection
//!   holds no buffer: it waits for the socket to become readable, and only then takes one;
//! - system calls: `hyper_util` reads the first 24 bytes of a connection alone, to tell
//!   HTTP/2's preface from HTTP/1, and hyper shuts a connection down before closing it;
//!   here the first read takes the whole request, and a closed connection is only closed;
//! - per request: hyper's dispatcher, its head encoder and its body channel. Here the task
//!   parses the head with `httparse` (hyper's own parser), runs the pipeline, and writes the
//!   answer's head and its first data in one `writev`.
//!
//! What it holds to (RFC 9112, and what hyper did before it):
//!
//! - the head: at most [`Settings::max_headers`] headers (more: 431) and
//!   [`Settings::max_head_bytes`] bytes (more: 431), a request target and each header (its
//!   name and value) of at most 16 KiB, as ALB's lines (more: 414 and 431; over HTTP/2,
//!   431 for both), read within the header read timeout,
//!   which starts when the connection waits for a request (so it also closes idle
//!   keep-alive connections). A timeout in the middle of a head is answered with 408; an
//!   idle connection is closed without a word. A head that is not HTTP/1.x is answered 400;
//! - the body: framed by `Transfer-Encoding: chunked` (when it is the last coding; chunk
//!   lines end with CRLF and nothing else) or by `Content-Length` (differing values: 400);
//!   no framing, no body. `Expect: 100-continue` is answered when the body is first read,
//!   unless the answer has begun. The guard stage classifies the rest for desync
//!   mitigation (`guard.rs`), told of lines ending in LF alone ([`BareLineFeeds`]);
//! - the answer: one `Content-Length`, the pipeline's (a body that says otherwise ends the
//!   connection) or the body's exact size, else chunked (HTTP/1.1) or up to the close
//!   (HTTP/1.0, and a TLS connection then says `close_notify`). Trailers go to clients
//!   that asked for them (`TE: trailers`), but fields that frame, route or authenticate. No body after `HEAD`, 1xx, 204 and 304, and no
//!   length after 1xx and 204. A `Date` is added when missing;
//! - keep-alive: as HTTP/1.1 and HTTP/1.0 say (`close` wins), and not after an answer
//!   whose request body was left unread (unless the buffer held all of it), after
//!   `Connection: close` on either side, once draining began, or once the connection
//!   lived [`Settings::client_keep_alive`] (ALB's client keepalive, an HTTP/2 connection
//!   then sent `GOAWAY`); requests pipelined behind
//!   each other are answered in order, and empty lines between them skipped;
//! - a protocol switch (`101`) hands the connection, with any bytes read past the head, to
//!   the request's [`OnUpgrade`].
//!
//! A connection that opens with HTTP/2's preface (cleartext with prior knowledge), or that
//! chose `h2` by ALPN, is served by hyper's HTTP/2 server, with the same limits: a header
//! list of at most [`Settings::max_head_bytes`] (hyper refuses a larger one), at most
//! [`Settings::max_headers`] fields and none past 16 KiB, `:path` included (more: 431),
//! and a connection with no request in
//! flight for the header read timeout is closed (`GOAWAY`), as an idle HTTP/1.1 one is:
//! the preface alone, or a client that sends nothing more, does not hold a connection.
//! Answers are held to the idle timeout on both: a target that sends nothing more, or a
//! client that takes nothing (on HTTP/2, a stream window it never opens again), ends the
//! answer.
//!
//! A client that closes its plain connection while its request (without a body) is
//! forwarded cancels it: the socket is watched for readability meanwhile, which costs no
//! system call until something arrives. Not done: a request body still held elsewhere
//! when its answer is done (by hyper's HTTP/2 client, for an HTTP/2 target that answered
//! before the upload ended) keeps the socket open outside the connection's task, which has
//! ended (hyper waited for it).

use std::future::poll_fn;
use std::io::{self, IoSlice, Write as _};
use std::mem::MaybeUninit;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Either;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};

use crate::forward::framing;
use crate::h1::{Chunk, Decoded, Reading};
use crate::upstream::{BoxError, EdgeBody};

/// `instant` + `duration`, or a century on where that is past what an instant holds (a
/// duration given as `Duration::MAX`, say).
fn far_or(instant: tokio::time::Instant, duration: Duration) -> tokio::time::Instant {
    instant
        .checked_add(duration)
        .unwrap_or_else(|| instant + Duration::from_secs(100 * 365 * 86_400))
}

/// HTTP/2's connection preface (RFC 9113 section 3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// How much a connection reads at once for a request's head.
const HEAD_READ: usize = 8 * 1024;
/// The longest request target, and the longest header (its name and value), over HTTP/1.1,
/// as ALB's lines (16 KiB each; the head in all is bounded by
/// [`Settings::max_head_bytes`], 64 KiB by default, as ALB's).
const MAX_LINE_BYTES: usize = 16 * 1024;
/// How much it reads at once for a request's body, at most.
const BODY_READ: usize = 64 * 1024;
/// The most headers parsed on the stack; a larger limit takes an allocation per request.
const STACK_HEADERS: usize = 100;
/// `100 Continue`, sent when a body the client waits to send is first read.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// The server's limits.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// How long a client may take to send a request's head, from when the connection waits
    /// for it.
    pub header_read_timeout: Duration,
    /// The most headers in a request.
    pub max_headers: usize,
    /// The most bytes of a request's head (request line and headers).
    pub max_head_bytes: usize,
    /// ALB's idle timeout: how long an answer may wait for its body's next data or for the
    /// client to take what was written, and a switched connection (a WebSocket) may carry
    /// no bytes either way, before the connection is closed.
    pub idle_timeout: Duration,
    /// ALB's client keepalive duration: how long a connection lives before its next answer
    /// closes it (HTTP/2: before `GOAWAY`).
    pub client_keep_alive: Duration,
}

/// A client connection: a plain socket or a TLS session on one.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {
    /// Waits, without a buffer, until the connection has something to read; `false` if it
    /// cannot tell without reading (TLS), so that the caller reads at once.
    fn poll_idle(&mut self, context: &mut Context<'_>) -> Poll<io::Result<bool>>;

    /// Whether closing says so on the wire first (TLS's `close_notify`, without which a
    /// client cannot tell a body that runs to the close from a cut one); a plain socket's
    /// close needs no shutdown before it.
    fn announces_close(&self) -> bool {
        false
    }

    /// Whether the client closed the connection while its request is forwarded: `true` on
    /// its close, `false` once it sent more (a pipelined request), pending until either;
    /// pending for good where it cannot tell without reading (TLS).
    fn poll_closed(&mut self, _context: &mut Context<'_>) -> Poll<bool> {
        Poll::Pending
    }
}

impl Stream for TcpStream {
    fn poll_idle(&mut self, context: &mut Context<'_>) -> Poll<io::Result<bool>> {
        self.poll_read_ready(context).map_ok(|()| true)
    }

    fn poll_closed(&mut self, context: &mut Context<'_>) -> Poll<bool> {
        // No system call until the socket becomes readable: the read of the request's head
        // left it marked as drained.
        if ready!(self.poll_read_ready(context)).is_err() {
            return Poll::Ready(true);
        }
        let mut byte = [0u8; 1];
        let mut peeked = ReadBuf::new(&mut byte);
        match ready!(self.poll_peek(context, &mut peeked)) {
            Ok(0) | Err(_) => Poll::Ready(true),
            Ok(_) => Poll::Ready(false),
        }
    }
}

impl Stream for tokio_rustls::server::TlsStream<TcpStream> {
    fn poll_idle(&mut self, _context: &mut Context<'_>) -> Poll<io::Result<bool>> {
        Poll::Ready(Ok(false))
    }

    fn announces_close(&self) -> bool {
        true
    }
}

/// A request's body as the pipeline reads it: from this module's HTTP/1.1 server (left),
/// or from hyper's HTTP/2 server (right).
pub type ClientBody = Either<RequestBody, Http2Body>;

/// The body of a request over HTTP/2, hyper's, counting its data frames in its answer's
/// [`Handed`]: an upload still under way keeps its answer's wait for the target alive.
/// Once its stream has been given up ([`Watched`]), its next data is an error, so that a
/// copy of it to a target (an HTTP/2 target's client copies it in a task of its own)
/// ends, and lets the stream go.
#[derive(Debug)]
pub struct Http2Body {
    inner: Incoming,
    answer: Arc<Handed>,
}

impl Body for Http2Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self
            .answer
            .given_up
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Poll::Ready(Some(Err(
                "the request's stream was reset: its client took nothing of the answer".into(),
            )));
        }
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(context));
        if let Some(Ok(frame)) = &frame
            && frame.is_data()
        {
            self.answer
                .received
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Poll::Ready(frame.map(|frame| frame.map_err(BoxError::from)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The client's side of a protocol switch, found in the extensions of an HTTP/1.1 request
/// that asks for one: resolves once the edge has sent its `101`. (Shared, as request
/// extensions must be `Clone`; the first to wait has it.)
#[derive(Debug, Clone)]
pub struct OnUpgrade(Arc<Mutex<Option<oneshot::Receiver<Upgraded>>>>);

impl OnUpgrade {
    /// The switched connection, once the `101` went out.
    pub async fn wait(self) -> Result<Upgraded, BoxError> {
        let receiver = self
            .0
            .lock()
            .take()
            .ok_or("the protocol switch was already taken")?;
        receiver
            .await
            .map_err(|_| "the client's connection closed before switching protocols".into())
    }
}

/// A client connection after a protocol switch, with what the client sent past its
/// request's head.
pub struct Upgraded {
    /// The connection.
    pub stream: Box<dyn Stream>,
    /// Bytes already read from it.
    pub early: Bytes,
    /// How long the switched connection may carry no bytes either way before it is closed
    /// ([`Settings::idle_timeout`]).
    pub idle_timeout: Duration,
    /// Held for as long as the switched connection lives: the connection's task waits for
    /// its drop, and holds the listener's connection slot and the client's until then, so
    /// that switched connections count against the connection limits.
    pub slot: oneshot::Sender<()>,
}

impl std::fmt::Debug for Upgraded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upgraded")
            .field("early", &self.early.len())
            .finish_non_exhaustive()
    }
}

/// A connection's socket and what was read from it and not yet used.
struct Wire {
    stream: Box<dyn Stream>,
    buffer: BytesMut,
    /// The current request's body, while some of it is unread.
    body: Option<Reading>,
    /// How much of `100 Continue` is still to be written before the body is read.
    continue_left: usize,
    /// Reads that brought bytes: what the client sent moves an answer's idle timeout on.
    reads: u64,
}

impl Wire {
    fn poll_fill(&mut self, context: &mut Context<'_>, size: usize) -> Poll<io::Result<usize>> {
        if self.buffer.capacity() == 0 {
            self.buffer = spare::take();
        }
        self.buffer.reserve(size);
        let read =
            tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), context, &mut self.buffer);
        if let Poll::Ready(Ok(1..)) = read {
            self.reads += 1;
        }
        read
    }

    fn poll_write_vectored(
        &mut self,
        context: &mut Context<'_>,
        slices: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(context, slices)
    }
}

impl std::fmt::Debug for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wire")
            .field("buffered", &self.buffer.len())
            .finish_non_exhaustive()
    }
}

/// The wire, owned by the connection's task, or shared with a request body that reads it.
enum Held {
    Own(Wire),
    Shared(Arc<Mutex<Wire>>),
}

impl Held {
    fn with<R>(&mut self, action: impl FnOnce(&mut Wire) -> R) -> R {
        match self {
            Held::Own(wire) => action(wire),
            Held::Shared(shared) => action(&mut shared.lock()),
        }
    }

    /// The wire back in the task's hands once the body no longer holds it; `None` if the
    /// body still does.
    fn reclaim(self) -> Option<Wire> {
        match self {
            Held::Own(wire) => Some(wire),
            Held::Shared(shared) => Some(Arc::try_unwrap(shared).ok()?.into_inner()),
        }
    }
}

/// The body of a request read by this server: the connection's wire while some of the
/// body is unread, else nothing.
#[derive(Debug)]
pub struct RequestBody {
    wire: Option<Arc<Mutex<Wire>>>,
}

const CLOSED_EARLY: &str = "the client closed the connection before the body's end";

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let Some(shared) = &this.wire else {
            return Poll::Ready(None);
        };
        let mut guard = shared.lock();
        let wire = &mut *guard;
        let frame = loop {
            let Some(reading) = &mut wire.body else {
                break None;
            };
            let wanted = match reading.decode(&mut wire.buffer) {
                Err(error) => {
                    // The wire's body stays unfinished: the connection is not reused.
                    drop(guard);
                    this.wire = None;
                    return Poll::Ready(Some(Err(error)));
                }
                Ok(Decoded::Frame(frame, ended)) => {
                    if ended {
                        wire.body = None;
                    }
                    break Some(frame);
                }
                Ok(Decoded::End) => {
                    wire.body = None;
                    break None;
                }
                Ok(Decoded::More(wanted)) => wanted.min(BODY_READ),
            };
            // The client waits for `100 Continue` before it sends the body.
            while wire.continue_left > 0 {
                let sent = &CONTINUE[CONTINUE.len() - wire.continue_left..];
                match ready!(wire.poll_write_vectored(context, &[IoSlice::new(sent)])) {
                    Ok(0) => return Poll::Ready(Some(Err(CLOSED_EARLY.into()))),
                    Ok(written) => wire.continue_left -= written,
                    Err(error) => return Poll::Ready(Some(Err(error.into()))),
                }
            }
            match ready!(wire.poll_fill(context, wanted)) {
                Ok(0) => return Poll::Ready(Some(Err(CLOSED_EARLY.into()))),
                Ok(_) => {}
                Err(error) => return Poll::Ready(Some(Err(error.into()))),
            }
        };
        let ended = wire.body.is_none();
        drop(guard);
        if ended {
            this.wire = None;
        }
        Poll::Ready(frame.map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.wire.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        let Some(shared) = &self.wire else {
            return SizeHint::with_exact(0);
        };
        match &shared.lock().body {
            Some(Reading::Length(left)) => SizeHint::with_exact(*left),
            Some(_) => SizeHint::default(),
            None => SizeHint::with_exact(0),
        }
    }
}

/// A connection's part in draining: it holds a receiver until it closes, so the server
/// knows when the last one has.
pub type Draining = watch::Receiver<bool>;

/// Whether an HTTP/2 request's header fields are within the limits an HTTP/1.1 head's are:
/// at most `max_headers` of them, and none (its name and value; the target, which HTTP/2
/// sends as the `:path` field) past 16 KiB. A request past them is answered 431.
fn within_head_limits<B>(request: &Request<B>, max_headers: usize) -> bool {
    let headers = request.headers();
    headers.len() <= max_headers
        && request
            .uri()
            .path_and_query()
            .is_none_or(|target| target.as_str().len() <= MAX_LINE_BYTES)
        && headers
            .iter()
            .all(|(name, value)| name.as_str().len() + value.len() <= MAX_LINE_BYTES)
}

/// The requests a connection's server refused itself, before any rule saw them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// Their status (400, 408, 414 or 431).
    pub status: StatusCode,
    /// How many: an HTTP/1.1 connection refuses one head and closes, an HTTP/2 one
    /// answers each request with too many header fields, or one past 16 KiB, 431 and
    /// serves on.
    pub count: u64,
}

/// Serves a client connection until it closes: HTTP/1.1 here, HTTP/2 by hyper when the
/// connection starts with HTTP/2's preface or `http2` is set (ALPN chose it). Says what
/// it refused itself, if anything.
pub async fn serve<S, F>(
    stream: Box<dyn Stream>,
    http2: bool,
    settings: Settings,
    service: S,
    mut draining: Draining,
) -> Option<Refused>
where
    S: Fn(Request<ClientBody>) -> F + Send + Sync + Clone + 'static,
    F: Future<Output = Response<EdgeBody>> + Send + 'static,
{
    // Boxed, here and below: a task is as large as its largest state, and hyper's HTTP/2
    // connection would make every HTTP/1.1 connection's task as large as its own.
    if http2 {
        return crate::boxed::box_future_in_place(|| {
            serve_http2(stream, Bytes::new(), settings, service, draining)
        })
        .await;
    }
    // The connection's one timer for its request heads (see `crate::timer`), set to the
    // first request's deadline: its head is due within the timeout from the accept,
    // preface included.
    let mut head_timer = pin!(tokio::time::sleep_until(
        tokio::time::Instant::now() + settings.header_read_timeout
    ));
    let mut connection = Connection {
        wire: Wire {
            stream,
            buffer: BytesMut::new(),
            body: None,
            continue_left: 0,
            reads: 0,
        },
        settings,
    };
    // HTTP/2 with prior knowledge opens with its preface; any HTTP/1 request differs from
    // it within its first bytes, so telling them apart costs no read of its own.
    match connection
        .read_preface(&mut draining, head_timer.as_mut())
        .await
    {
        Preface::Http1 => {}
        Preface::Http2 => {
            let Wire { stream, buffer, .. } = connection.wire;
            return crate::boxed::box_future_in_place(|| {
                serve_http2(
                    stream,
                    buffer.freeze(),
                    connection.settings,
                    service,
                    draining,
                )
            })
            .await;
        }
        Preface::Closed => return None,
    }
    connection
        .serve(&service, &mut draining, head_timer)
        .await
        .map(|status| Refused { status, count: 1 })
}

async fn serve_http2<S, F>(
    stream: Box<dyn Stream>,
    early: Bytes,
    settings: Settings,
    service: S,
    mut draining: Draining,
) -> Option<Refused>
where
    S: Fn(Request<ClientBody>) -> F + Send + Sync + Clone + 'static,
    F: Future<Output = Response<EdgeBody>> + Send + 'static,
{
    let in_flight = Arc::new(InFlight::default());
    let requests = Arc::clone(&in_flight);
    // Requests refused for their header count or a field's size (431).
    let refused = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = Arc::clone(&refused);
    let max_headers = settings.max_headers;
    let idle_timeout = settings.idle_timeout;
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let handed = Arc::new(Handed::new(InFlight::start(&requests)));
        let answer = within_head_limits(&request, max_headers).then(|| {
            let answer = Arc::clone(&handed);
            service(request.map(|inner| Either::Right(Http2Body { inner, answer })))
        });
        // For the stream's task, which hyper spawns next (see `StreamExecutor`).
        debug_assert!(
            SPAWNING.take().is_none(),
            "a stream's answer record was left for no task"
        );
        SPAWNING.set(Some(Arc::clone(&handed)));
        if answer.is_none() {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        async move {
            let answer = match answer {
                Some(answer) => answer.await,
                None => {
                    let mut refused = Response::new(crate::upstream::empty());
                    *refused.status_mut() = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
                    refused
                }
            };
            Ok::<_, std::convert::Infallible>(answer.map(|body| Tracked {
                body,
                idle: idle_timeout,
                stall: None,
                handed,
                rest: Bytes::new(),
            }))
        }
    });
    let mut builder = hyper::server::conn::http2::Builder::new(StreamExecutor {
        began: in_flight.began,
        idle: settings.idle_timeout,
    });
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .max_header_list_size(u32::try_from(settings.max_head_bytes).unwrap_or(u32::MAX));
    let stream = Rewind { early, stream };
    let mut connection = pin!(builder.serve_connection(TokioIo::new(stream), service));
    let idle = settings.header_read_timeout;
    let mut check = pin!(tokio::time::sleep(idle));
    // ALB's client keepalive: `GOAWAY` once the connection has lived this long, the
    // streams under way finishing (and the idle watch still on).
    let mut lived = pin!(tokio::time::sleep_until(far_or(
        in_flight.began,
        settings.client_keep_alive
    )));
    let mut going_away = false;
    let finished = loop {
        tokio::select! {
            finished = connection.as_mut() => break finished,
            () = lived.as_mut(), if !going_away => {
                connection.as_mut().graceful_shutdown();
                going_away = true;
            }
            () = async {
                let _ = draining.wait_for(|draining| *draining).await;
            } => {
                connection.as_mut().graceful_shutdown();
                break connection.await;
            }
            () = check.as_mut() => {
                let now = tokio::time::Instant::now();
                let ended = match in_flight.idle_since() {
                    // Idle for the timeout.
                    Some(since) if now.duration_since(since) >= idle => true,
                    Some(since) => {
                        check.as_mut().reset(since + idle);
                        false
                    }
                    // Requests in flight, each held to the idle timeout by its own task
                    // (`Watched`) and body (`Tracked`).
                    None => {
                        check.as_mut().reset(now + idle);
                        false
                    }
                };
                if ended {
                    // `GOAWAY`, and the close, which a client that does not close is not
                    // waited for past the timeout.
                    connection.as_mut().graceful_shutdown();
                    match tokio::time::timeout(idle, connection.as_mut()).await {
                        Ok(finished) => break finished,
                        Err(_) => break Ok(()),
                    }
                }
            }
        }
    };
    if let Err(error) = finished {
        tracing::debug!(%error, "HTTP/2 client connection ended with an error");
    }
    let count = refused.load(std::sync::atomic::Ordering::Relaxed);
    (count > 0).then_some(Refused {
        status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        count,
    })
}

/// An HTTP/2 connection's requests in flight, and since when it has had none.
#[derive(Debug)]
struct InFlight {
    /// The count, and the instant it last fell to 0 (or the connection began).
    state: Mutex<(usize, tokio::time::Instant)>,
    /// When the connection began: [`Handed`] counts from it.
    began: tokio::time::Instant,
}

/// An HTTP/2 answer's progress. `at`: when it last handed data to hyper's server, in
/// milliseconds since its connection began, while hyper has not asked for more since
/// ([`NOT_HANDED`] otherwise): hyper asks for the next piece once the previous one is
/// sent, as the stream's flow-control window lets it, so an old hand-over is a client
/// that reads nothing (see [`Watched`]). `received`: the request body's data frames, an
/// upload still under way. `given_up`: see [`Http2Body`]. It keeps its request counted in
/// flight while any of its stream's parts holds it: the answer's body, the request's
/// (an upload may outlast the answer), and the stream's task.
#[derive(Debug)]
pub struct Handed {
    at: std::sync::atomic::AtomicU64,
    received: std::sync::atomic::AtomicU64,
    /// Whether its stream was given up ([`Watched`]): the request's body ends in an error.
    given_up: std::sync::atomic::AtomicBool,
    /// Its request in flight; its connection's beginning is the clock of `at`.
    in_flight: InFlightGuard,
}

impl Handed {
    fn new(in_flight: InFlightGuard) -> Self {
        Self {
            at: std::sync::atomic::AtomicU64::new(NOT_HANDED),
            received: std::sync::atomic::AtomicU64::new(0),
            given_up: std::sync::atomic::AtomicBool::new(false),
            in_flight,
        }
    }
}

/// The most an HTTP/2 answer hands hyper at once: a larger frame is given in pieces, so
/// that its stream's progress shows as each piece is sent.
const PIECE: usize = 16 * 1024;

const NOT_HANDED: u64 = u64::MAX;

impl Default for InFlight {
    fn default() -> Self {
        Self {
            state: Mutex::new((0, tokio::time::Instant::now())),
            began: tokio::time::Instant::now(),
        }
    }
}

impl InFlight {
    /// Counts a request in, until the guard is dropped.
    fn start(this: &Arc<Self>) -> InFlightGuard {
        this.state.lock().0 += 1;
        InFlightGuard(Arc::clone(this))
    }

    /// Since when no request has been in flight; `None` while one is.
    fn idle_since(&self) -> Option<tokio::time::Instant> {
        let state = self.state.lock();
        (state.0 == 0).then_some(state.1)
    }
}

thread_local! {
    /// The answer record of the HTTP/2 stream whose task hyper spawns next. Its server
    /// calls the service for a stream and spawns the stream's task at once, on the same
    /// thread, with nothing between (`proto::h2::server` in hyper 1): the service leaves
    /// the record here, and [`StreamExecutor`] takes it. (A task spawned otherwise, such as
    /// the copy of an upgraded stream, finds nothing here and is not watched.)
    static SPAWNING: std::cell::Cell<Option<Arc<Handed>>> = const { std::cell::Cell::new(None) };
}

/// Spawns an HTTP/2 connection's streams, each [`Watched`] for a client that takes none
/// of its answer.
#[derive(Debug, Clone, Copy)]
struct StreamExecutor {
    /// When the connection began: [`Handed`] counts from it.
    began: tokio::time::Instant,
    idle: Duration,
}

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, stream: F) {
        tokio::spawn(Watched {
            stream: Some(stream),
            handed: SPAWNING.take(),
            began: self.began,
            idle: self.idle,
            timer: tokio::time::sleep_until(self.began),
            armed: false,
        });
    }
}

pin_project_lite::pin_project! {
    /// An HTTP/2 stream's task, dropped when its answer has handed hyper data that the
    /// client has not let it send for the idle timeout (the stream's flow-control window,
    /// or the connection's, stays shut: a slow reader holding the target's connection, as
    /// an HTTP/1.1 client that reads nothing). Dropping the task resets the stream
    /// (`RST_STREAM` with `CANCEL`), and the connection's other streams go on, as nginx's
    /// `send_timeout` ends one HTTP/2 request. (Answers go to hyper in pieces of at most
    /// [`PIECE`] bytes, so a reader that takes them, however slowly, keeps its answer
    /// moving.) A request body still copied to an HTTP/2 target (in a task of the target's
    /// client, which holds the stream too) ends in an error at its next data, and the stream
    /// is reset then; one that sends nothing more is held until the client's connection
    /// goes.
    struct Watched<F> {
        #[pin]
        stream: Option<F>,
        handed: Option<Arc<Handed>>,
        began: tokio::time::Instant,
        idle: Duration,
        // Fires no later than the current hand-over's deadline while `armed`; moved on
        // only when it fires, so that a stream that moves pays for one reset per timeout.
        #[pin]
        timer: tokio::time::Sleep,
        armed: bool,
    }
}

impl<F: Future<Output = ()>> Future for Watched<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        let Some(stream) = this.stream.as_mut().as_pin_mut() else {
            return Poll::Ready(());
        };
        if stream.poll(context).is_ready() {
            this.stream.set(None);
            return Poll::Ready(());
        }
        let Some(handed) = this.handed.as_ref() else {
            return Poll::Pending;
        };
        loop {
            let at = handed.at.load(std::sync::atomic::Ordering::Relaxed);
            if at == NOT_HANDED {
                return Poll::Pending;
            }
            let deadline = *this.began + Duration::from_millis(at) + *this.idle;
            if !*this.armed {
                this.timer.as_mut().reset(deadline);
                *this.armed = true;
            }
            ready!(this.timer.as_mut().poll(context));
            *this.armed = false;
            if tokio::time::Instant::now() >= deadline {
                tracing::debug!(
                    "HTTP/2 stream reset: its client took nothing for the idle timeout"
                );
                handed
                    .given_up
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                this.stream.set(None);
                return Poll::Ready(());
            }
        }
    }
}

/// A request in flight on an HTTP/2 connection (see [`InFlight`]).
#[derive(Debug)]
struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let mut state = self.0.state.lock();
        state.0 -= 1;
        if state.0 == 0 {
            state.1 = tokio::time::Instant::now();
        }
    }
}

/// An answer's body that keeps its request counted in flight (through its [`Handed`]),
/// hands hyper its data in pieces of at most [`PIECE`] bytes, and ends it with an error (a
/// reset stream) when its next data has not come for the idle timeout (a target that
/// stalls mid-body) while nothing of the request came either, as `Idle` does for
/// HTTP/1.1.
struct Tracked {
    body: EdgeBody,
    idle: Duration,
    /// The timer of a wait for the body's next frame, made by the first wait, and the
    /// request's data frames received when the wait began (`None` between waits).
    stall: Option<(Pin<Box<tokio::time::Sleep>>, Option<u64>)>,
    /// Its progress (see [`Handed`]).
    handed: Arc<Handed>,
    /// What is left of a data frame larger than a piece.
    rest: Bytes,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        // Done with: its request's body may live on (held by an HTTP/2 target's client),
        // and must not look like an answer waiting for its reader.
        self.handed
            .at
            .store(NOT_HANDED, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Tracked {
    /// Notes a hand-over to hyper (or its end) and passes the frame on.
    fn hand(
        &mut self,
        frame: Option<Result<Frame<Bytes>, BoxError>>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let at = match &frame {
            Some(Ok(_)) => self.handed.in_flight.0.began.elapsed().as_millis() as u64,
            _ => NOT_HANDED,
        };
        self.handed
            .at
            .store(at, std::sync::atomic::Ordering::Relaxed);
        Poll::Ready(frame)
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if !this.rest.is_empty() {
            let piece = this.rest.split_to(this.rest.len().min(PIECE));
            return this.hand(Some(Ok(Frame::data(piece))));
        }
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(context) {
            if let Some((_, waiting)) = &mut this.stall {
                *waiting = None;
            }
            let frame = match frame {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(mut data) if data.len() > PIECE => {
                        this.rest = data.split_off(PIECE);
                        Some(Ok(Frame::data(data)))
                    }
                    Ok(data) => Some(Ok(Frame::data(data))),
                    Err(frame) => Some(Ok(frame)),
                },
                other => other,
            };
            return this.hand(frame);
        }
        let handed = &this.handed;
        handed
            .at
            .store(NOT_HANDED, std::sync::atomic::Ordering::Relaxed);
        let received = || handed.received.load(std::sync::atomic::Ordering::Relaxed);
        let (timer, waiting) = this
            .stall
            .get_or_insert_with(|| (Box::pin(tokio::time::sleep(this.idle)), Some(received())));
        if waiting.is_none() {
            timer
                .as_mut()
                .reset(tokio::time::Instant::now() + this.idle);
            *waiting = Some(received());
        }
        loop {
            ready!(timer.as_mut().poll(context));
            let now = received();
            if *waiting == Some(now) {
                return Poll::Ready(Some(Err(
                    "the answer's body brought nothing for the idle timeout".into(),
                )));
            }
            // The client sent more of its request meanwhile: another timeout.
            timer
                .as_mut()
                .reset(tokio::time::Instant::now() + this.idle);
            *waiting = Some(now);
        }
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        with_more(&self.body.size_hint(), self.rest.len() as u64)
    }
}

/// `hint` with `more` bytes in front. (The upper bound is set first: `set_lower` refuses,
/// with a panic, a lower bound past the upper one, as `hint`'s would be if exact.)
pub(crate) fn with_more(hint: &SizeHint, more: u64) -> SizeHint {
    let mut sum = SizeHint::new();
    if let Some(upper) = hint.upper() {
        sum.set_upper(upper.saturating_add(more));
    }
    sum.set_lower(hint.lower().saturating_add(more));
    sum
}

/// A stream with bytes already read from it put back in front.
struct Rewind {
    early: Bytes,
    stream: Box<dyn Stream>,
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.early.is_empty() {
            let count = self.early.len().min(buffer.remaining());
            buffer.put_slice(&self.early[..count]);
            self.early.advance(count);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(context, buffer)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(context, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        slices: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(context, slices)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(context)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(context)
    }
}

enum Preface {
    Http1,
    Http2,
    Closed,
}

/// Why a request's head could not be had.
enum HeadError {
    /// The connection closed, or stayed idle too long, between requests: close quietly.
    Closed,
    /// Answer with this status, then close.
    Refuse(StatusCode),
}

/// What the connection's task knows of the request in flight.
struct Exchange {
    http10: bool,
    head_request: bool,
    keep_alive: bool,
    trailers: bool,
    upgrade: Option<oneshot::Sender<Upgraded>>,
}

struct Connection {
    wire: Wire,
    settings: Settings,
}

impl Connection {
    async fn read_preface(
        &mut self,
        draining: &mut Draining,
        head_timer: Pin<&mut tokio::time::Sleep>,
    ) -> Preface {
        let wire = &mut self.wire;
        // The first request's deadline, which the timer was set to.
        let deadline = head_timer.deadline();
        let read = async {
            // A connection that has sent nothing yet holds no buffer either.
            if poll_fn(|context| wire.stream.poll_idle(context))
                .await
                .is_err()
            {
                return Preface::Closed;
            }
            loop {
                let have = wire.buffer.len().min(PREFACE.len());
                if wire.buffer[..have] != PREFACE[..have] {
                    return Preface::Http1;
                }
                if have == PREFACE.len() {
                    return Preface::Http2;
                }
                match poll_fn(|context| wire.poll_fill(context, HEAD_READ)).await {
                    Ok(0) | Err(_) => return Preface::Closed,
                    Ok(_) => {}
                }
            }
        };
        tokio::select! {
            biased;
            preface = read => preface,
            () = crate::timer::until(head_timer, deadline) => Preface::Closed,
            () = async {
                let _ = draining.wait_for(|draining| *draining).await;
            } => Preface::Closed,
        }
    }

    async fn serve<S, F>(
        mut self,
        service: &S,
        draining: &mut Draining,
        mut head_timer: Pin<&mut tokio::time::Sleep>,
    ) -> Option<StatusCode>
    where
        S: Fn(Request<ClientBody>) -> F,
        F: Future<Output = Response<EdgeBody>>,
    {
        // Draining closes a connection that waits for a request: one wait for the
        // connection's life, whose waker stays registered with the channel across requests
        // (a wait per request would register and unregister one each time).
        let mut drain_watch = draining.clone();
        let mut drained = pin!(async move {
            let _ = drain_watch.wait_for(|draining| *draining).await;
        });
        // The first request's deadline is the one the timer was set to at the accept (the
        // preface's wait, which ended before it, left it there).
        let mut first_deadline = Some(head_timer.deadline());
        // A request that comes past this is answered with the connection's close (ALB's
        // client keepalive). The clock is read for it only when the request's deadline
        // falls past it: a request comes before its deadline or not at all. (A request
        // that came before it, with an answer that outlasted it, leaves the close to the
        // next.)
        let expires = far_or(
            head_timer
                .deadline()
                .checked_sub(self.settings.header_read_timeout)
                .unwrap_or_else(|| head_timer.deadline()),
            self.settings.client_keep_alive,
        );
        loop {
            skip_blank_lines(&mut self.wire.buffer);
            let deadline = first_deadline
                .take()
                .unwrap_or_else(|| tokio::time::Instant::now() + self.settings.header_read_timeout);
            let head = tokio::select! {
                biased;
                head = self.read_head() => head,
                // Mid-head, the client is told; between requests, the connection just closes.
                () = crate::timer::until(head_timer.as_mut(), deadline) => if self.wire.buffer.is_empty() {
                    Err(HeadError::Closed)
                } else {
                    Err(HeadError::Refuse(StatusCode::REQUEST_TIMEOUT))
                },
                // (Polled only until it ends: then the connection closes.)
                () = &mut drained, if self.wire.buffer.is_empty() => Err(HeadError::Closed),
            };
            let (request, exchange) = match head {
                Ok(head) => head,
                Err(HeadError::Closed) => return None,
                Err(HeadError::Refuse(status)) => {
                    self.refuse(status, head_timer.as_mut()).await;
                    return Some(status);
                }
            };
            let has_body = self.wire.body.is_some();
            let (request, mut held) = if has_body {
                let shared = Arc::new(Mutex::new(self.wire));
                let body = RequestBody {
                    wire: Some(Arc::clone(&shared)),
                };
                (request.map(|()| Either::Left(body)), Held::Shared(shared))
            } else {
                let body = RequestBody { wire: None };
                (request.map(|()| Either::Left(body)), Held::Own(self.wire))
            };
            // (Not with bytes already buffered: a pipelined request, after which a client
            // may half-close and still wait for its answers, as hyper allowed.)
            let watch = !has_body && held.with(|wire| wire.buffer.is_empty());
            let response = if !watch {
                service(request).await
            } else {
                // A client that goes away while its request is forwarded cancels it (the
                // target's connection closes with it), as hyper did. One with a body is
                // reading it meanwhile, and learns of the close there.
                let answered = pin!(service(request));
                let closed = async {
                    if !poll_fn(|context| held.with(|wire| wire.stream.poll_closed(context))).await
                    {
                        std::future::pending::<()>().await;
                    }
                };
                tokio::select! {
                    biased;
                    response = answered => response,
                    () = closed => return None,
                }
            };
            let lived = deadline >= expires && tokio::time::Instant::now() >= expires;
            let draining_now = lived || *draining.borrow();
            let mut idle = Idle {
                timer: head_timer.as_mut(),
                timeout: self.settings.idle_timeout,
            };
            let outcome = respond(&mut held, &mut idle, response, &exchange, draining_now).await;
            // The wire is back in this task's hands unless the body is still held (by
            // hyper's HTTP/2 client, say); then the connection just closes.
            let mut wire = held.reclaim()?;
            let body_read = discard_buffered_body(&mut wire);
            match outcome {
                Ok(Next::KeepAlive) if body_read => {}
                Ok(Next::KeepAlive | Next::Close) => {
                    if !body_read {
                        linger(wire).await;
                    } else if wire.stream.announces_close() {
                        let stream = &mut wire.stream;
                        let _ = tokio::time::timeout(
                            Duration::from_secs(1),
                            poll_fn(|context| Pin::new(&mut *stream).poll_shutdown(context)),
                        )
                        .await;
                    }
                    return None;
                }
                Err(_) => return None,
                Ok(Next::Switched) => {
                    if let Some(upgrade) = exchange.upgrade {
                        let early = std::mem::take(&mut wire.buffer).freeze();
                        let (slot, released) = oneshot::channel();
                        let sent = upgrade.send(Upgraded {
                            stream: wire.stream,
                            early,
                            idle_timeout: self.settings.idle_timeout,
                            slot,
                        });
                        // The switched connection keeps its slot until it ends, or until
                        // the edge drains.
                        if sent.is_ok() {
                            tokio::select! {
                                _ = released => {}
                                _ = draining.wait_for(|draining| *draining) => {}
                            }
                        }
                    }
                    return None;
                }
            }
            self.wire = wire;
        }
    }

    /// Reads and parses the next request's head; sets the wire's body framing.
    async fn read_head(&mut self) -> Result<(Request<()>, Exchange), HeadError> {
        loop {
            skip_blank_lines(&mut self.wire.buffer);
            if !self.wire.buffer.is_empty()
                && let Some(parsed) = self.parse_head()?
            {
                return Ok(parsed);
            }
            if self.wire.buffer.len() >= self.settings.max_head_bytes {
                return Err(HeadError::Refuse(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                ));
            }
            // A request line already past the target's limit, unfinished: 414 now, rather
            // than 431 once the head's limit is read.
            if self.wire.buffer.len() > MAX_LINE_BYTES && !self.wire.buffer.contains(&b'\n') {
                return Err(HeadError::Refuse(StatusCode::URI_TOO_LONG));
            }
            if self.wire.buffer.is_empty() {
                // Idle: no buffer is held while the connection waits, where the socket
                // can say it is readable without one.
                spare::give(std::mem::take(&mut self.wire.buffer));
                let wire = &mut self.wire;
                match poll_fn(|context| wire.stream.poll_idle(context)).await {
                    Ok(_) => {}
                    Err(_) => return Err(HeadError::Closed),
                }
            }
            let wire = &mut self.wire;
            let wanted = HEAD_READ.min(self.settings.max_head_bytes - wire.buffer.len());
            match poll_fn(|context| wire.poll_fill(context, wanted)).await {
                Ok(0) if wire.buffer.is_empty() => return Err(HeadError::Closed),
                // A head cut short by the close: nobody is left to answer.
                Ok(0) | Err(_) => return Err(HeadError::Closed),
                Ok(_) => {}
            }
        }
    }

    fn parse_head(&mut self) -> Result<Option<(Request<()>, Exchange)>, HeadError> {
        let bad = || HeadError::Refuse(StatusCode::BAD_REQUEST);
        let max_headers = self.settings.max_headers;
        let mut stack = [const { MaybeUninit::uninit() }; STACK_HEADERS];
        let mut heap = Vec::new();
        let headers: &mut [MaybeUninit<httparse::Header<'_>>] = if max_headers <= STACK_HEADERS {
            &mut stack[..max_headers]
        } else {
            heap.resize_with(max_headers, MaybeUninit::uninit);
            &mut heap
        };
        let buffer = &self.wire.buffer;
        let mut parsed = httparse::Request::new(&mut []);
        let length = match httparse::ParserConfig::default().parse_request_with_uninit_headers(
            &mut parsed,
            buffer,
            headers,
        ) {
            Ok(httparse::Status::Complete(length)) if length <= self.settings.max_head_bytes => {
                length
            }
            // Whole, but larger than allowed (it came in one large read).
            Ok(httparse::Status::Complete(_)) => {
                return Err(HeadError::Refuse(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                ));
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(HeadError::Refuse(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                ));
            }
            Err(_) => return Err(bad()),
        };
        // The head in an allocation of its own, which the header values share: what is
        // kept of them does not hold the read buffer.
        let head = Bytes::copy_from_slice(&buffer[..length]);
        let base = buffer.as_ptr() as usize;
        let slice = |part: &[u8]| {
            let start = part.as_ptr() as usize - base;
            head.slice(start..start + part.len())
        };
        let method =
            Method::from_bytes(parsed.method.unwrap_or_default().as_bytes()).map_err(|_| bad())?;
        let path = parsed.path.unwrap_or_default();
        // Only a head longer than a line's limit can hold a line past it.
        if length > MAX_LINE_BYTES {
            if path.len() > MAX_LINE_BYTES {
                return Err(HeadError::Refuse(StatusCode::URI_TOO_LONG));
            }
            if parsed
                .headers
                .iter()
                .any(|field| field.name.len() + field.value.len() > MAX_LINE_BYTES)
            {
                return Err(HeadError::Refuse(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                ));
            }
        }
        // (A target too long for a `Uri` is past the 16 KiB refused above.)
        let uri = Uri::from_maybe_shared(slice(path.as_bytes())).map_err(|_| bad())?;
        let version = match parsed.version {
            Some(0) => Version::HTTP_10,
            _ => Version::HTTP_11,
        };
        let mut map =
            HeaderMap::with_capacity(parsed.headers.len() + crate::forward::ADDED_HEADERS);
        // Which of the headers that frame the request it has (see `forward::framing`).
        let mut present = 0;
        // Whether a line ends with LF alone, which `httparse` takes (as nginx does) and
        // desync mitigation classifies (`guard.rs`). CR comes only before LF in a head it
        // parsed, so each line's end is the two bytes before the next line's start.
        let mut bare_line_feeds = !buffer[..length].ends_with(b"\r\n\r\n");
        for field in parsed.headers.iter() {
            let start = field.name.as_ptr() as usize - base;
            bare_line_feeds |= buffer[start - 2] != b'\r';
            let name = HeaderName::from_bytes(field.name.as_bytes()).map_err(|_| bad())?;
            present |= crate::forward::framing_header(&name);
            let value = HeaderValue::from_maybe_shared(slice(field.value)).map_err(|_| bad())?;
            map.append(name, value);
        }
        self.wire.buffer.advance(length);

        let body = request_framing(&map, version, present).map_err(|Unframed| bad())?;
        let expects = body.is_some()
            && version == Version::HTTP_11
            && present & framing::EXPECT != 0
            && map
                .get(header::EXPECT)
                .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        // Sent only if the client is still waiting when the body is first read.
        self.wire.continue_left = if expects && self.wire.buffer.is_empty() {
            CONTINUE.len()
        } else {
            0
        };
        if body.is_none() && self.wire.buffer.is_empty() {
            // Nothing more to read until the answer is out: the buffer serves others.
            spare::give(std::mem::take(&mut self.wire.buffer));
        }
        self.wire.body = body;
        let (mut close, mut asks_keep_alive, mut upgrade) = (false, false, false);
        if present & framing::CONNECTION != 0 {
            for token in crate::forward::connection_tokens(&map) {
                close |= token.eq_ignore_ascii_case("close");
                asks_keep_alive |= token.eq_ignore_ascii_case("keep-alive");
                upgrade |= token.eq_ignore_ascii_case("upgrade") && version == Version::HTTP_11;
            }
        }
        // `close` wins over `keep-alive`, as in `h1.rs`.
        let keep_alive = !close && (version == Version::HTTP_11 || asks_keep_alive);
        let trailers = present & framing::TE != 0 && crate::forward::asks_for_trailers(&map);
        let mut request = Request::new(());
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.version_mut() = version;
        *request.headers_mut() = map;
        if bare_line_feeds {
            request.extensions_mut().insert(BareLineFeeds);
        }
        let upgrade = (upgrade && present & framing::UPGRADE != 0).then(|| {
            let (sender, receiver) = oneshot::channel();
            request
                .extensions_mut()
                .insert(OnUpgrade(Arc::new(Mutex::new(Some(receiver)))));
            sender
        });
        let exchange = Exchange {
            http10: version == Version::HTTP_10,
            head_request: request.method() == Method::HEAD,
            keep_alive,
            trailers,
            upgrade,
        };
        Ok(Some((request, exchange)))
    }

    /// Answers a request the server itself refuses, and closes.
    async fn refuse(self, status: StatusCode, timer: Pin<&mut tokio::time::Sleep>) {
        let mut head = Vec::with_capacity(128);
        let _ = write!(
            head,
            "HTTP/1.1 {} {}\r\ncontent-length: 0\r\nconnection: close\r\ndate: ",
            status.as_str(),
            status.canonical_reason().unwrap_or(""),
        );
        date::with(|date| head.extend_from_slice(date));
        head.extend_from_slice(b"\r\n\r\n");
        let mut held = Held::Own(self.wire);
        let mut idle = Idle {
            timer,
            timeout: self.settings.idle_timeout,
        };
        if write_all(&mut held, &mut idle, &mut [IoSlice::new(&head)])
            .await
            .is_ok()
            && let Held::Own(wire) = held
        {
            linger(wire).await;
        }
    }
}

/// Marks a request a line of whose head ended with LF alone (for desync mitigation's
/// `NonCrLfLineTermination`; the header map cannot tell).
#[derive(Debug, Clone, Copy)]
pub struct BareLineFeeds;

/// Drops the empty lines a client may send between requests (RFC 9112 section 2.2).
fn skip_blank_lines(buffer: &mut BytesMut) {
    while buffer.starts_with(b"\r\n") || buffer.starts_with(b"\n") {
        let length = if buffer[0] == b'\r' { 2 } else { 1 };
        buffer.advance(length);
    }
}

/// A request whose body's framing the server cannot read (answered 400).
struct Unframed;

/// How a request's body is framed (RFC 9112 section 6.3): `None` for no body. `present`
/// says which of the framing headers the request has (see `forward::framing`).
fn request_framing(
    headers: &HeaderMap,
    version: Version,
    present: u8,
) -> Result<Option<Reading>, Unframed> {
    if present & (framing::TRANSFER_ENCODING | framing::CONTENT_LENGTH) == 0 {
        return Ok(None);
    }
    if present & framing::TRANSFER_ENCODING != 0 {
        if version == Version::HTTP_10 {
            return Err(Unframed);
        }
        // Chunked must be the last coding; the guard refuses any other.
        let last = headers
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .next_back()
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.rsplit(',').next())
            .map(str::trim);
        return match last {
            Some(coding) if coding.eq_ignore_ascii_case("chunked") => {
                Ok(Some(Reading::Chunked(Chunk::Size)))
            }
            _ => Err(Unframed),
        };
    }
    let mut length = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        for part in value.to_str().map_err(|_| Unframed)?.split(',') {
            let part = part.trim();
            if part.is_empty() || !part.bytes().all(|byte| byte.is_ascii_digit()) {
                return Err(Unframed);
            }
            let parsed: u64 = part.parse().map_err(|_| Unframed)?;
            if length.is_some_and(|length| length != parsed) {
                return Err(Unframed);
            }
            length = Some(parsed);
        }
    }
    Ok(length.filter(|&length| length > 0).map(Reading::Length))
}

/// Closes a connection whose client may still be sending (a request refused before its
/// body was read): the write side first, then what arrives is read and dropped for a
/// while, so that the kernel does not reset the connection (and with it the answer not yet
/// read) on unread data. nginx's `lingering_close`, bounded in time and bytes.
async fn linger(mut wire: Wire) {
    const LINGER: Duration = Duration::from_secs(2);
    const LINGER_BYTES: usize = 1024 * 1024;
    let stream = &mut wire.stream;
    let drained = async {
        if poll_fn(|context| Pin::new(&mut *stream).poll_shutdown(context))
            .await
            .is_err()
        {
            return;
        }
        let mut scratch = BytesMut::with_capacity(4096);
        let mut dropped = 0;
        while dropped < LINGER_BYTES {
            scratch.clear();
            match poll_fn(|context| {
                tokio_util::io::poll_read_buf(Pin::new(&mut *stream), context, &mut scratch)
            })
            .await
            {
                Ok(0) | Err(_) => return,
                Ok(read) => dropped += read,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drained).await;
}

/// Drops what is left of an unread request body if the buffer holds all of it, so that the
/// connection may carry the next request; `false` if more of it is still to come.
fn discard_buffered_body(wire: &mut Wire) -> bool {
    while let Some(reading) = &mut wire.body {
        match reading.decode(&mut wire.buffer) {
            Ok(Decoded::Frame(_, false)) => {}
            Ok(Decoded::Frame(_, true) | Decoded::End) => wire.body = None,
            Ok(Decoded::More(_)) | Err(_) => return false,
        }
    }
    true
}

/// What the connection does after an answer.
#[derive(Debug, Clone, Copy)]
enum Next {
    KeepAlive,
    Close,
    Switched,
}

/// How the answer's body goes on the wire.
enum Framing {
    None,
    Length(u64),
    Chunked,
    Close,
}

/// An answer's head on the wire, and what it says of the body and the connection.
struct AnswerHead {
    head: Vec<u8>,
    framing: Framing,
    keep_alive: bool,
    switched: bool,
}

/// The head of an answer: its status line, its headers but the framing ones, which follow
/// the framing chosen here (one `Content-Length`, or chunks), and `Connection` and `Date`
/// where needed.
fn answer_head(
    parts: http::response::Parts,
    hint: Option<u64>,
    exchange: &Exchange,
    draining: bool,
) -> AnswerHead {
    let status = parts.status;
    let switched = status == StatusCode::SWITCHING_PROTOCOLS && exchange.upgrade.is_some();
    let mut keep_alive = exchange.keep_alive && !draining;
    let (mut says_close, mut says_keep_alive) = (false, false);
    for token in crate::forward::connection_tokens(&parts.headers) {
        says_close |= token.eq_ignore_ascii_case("close");
        says_keep_alive |= token.eq_ignore_ascii_case("keep-alive");
    }
    keep_alive &= !says_close;
    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let framing = if bodiless || exchange.head_request {
        Framing::None
    } else if let Some(length) = declared {
        Framing::Length(length)
    } else if let Some(length) = hint {
        Framing::Length(length)
    } else if exchange.http10 {
        // An HTTP/1.0 client reads no chunks: the body runs to the close.
        Framing::Close
    } else {
        Framing::Chunked
    };
    if matches!(framing, Framing::Close) || (status == StatusCode::SWITCHING_PROTOCOLS && !switched)
    {
        keep_alive = false;
    }

    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        // The framing headers are written below, once, from the framing.
        if name == header::TRANSFER_ENCODING || name == header::CONTENT_LENGTH {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    // After `HEAD` and with a 304, the length the body would have had, as the target said.
    let length = match framing {
        Framing::Length(length) => Some(length),
        Framing::None if exchange.head_request || status == StatusCode::NOT_MODIFIED => declared,
        _ => None,
    };
    if let Some(length) = length {
        let _ = write!(head, "content-length: {length}\r\n");
    }
    if matches!(framing, Framing::Chunked) {
        head.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if !switched {
        if !keep_alive && !says_close {
            head.extend_from_slice(b"connection: close\r\n");
        } else if keep_alive && exchange.http10 && !says_keep_alive {
            // An HTTP/1.0 client keeps the connection only if the answer says so.
            head.extend_from_slice(b"connection: keep-alive\r\n");
        }
    }
    if !parts.headers.contains_key(header::DATE) {
        head.extend_from_slice(b"date: ");
        date::with(|date| head.extend_from_slice(date));
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    AnswerHead {
        head,
        framing,
        keep_alive,
        switched,
    }
}

/// Writes an answer: its head, and its body as its framing says.
async fn respond(
    held: &mut Held,
    idle: &mut Idle<'_>,
    response: Response<EdgeBody>,
    exchange: &Exchange,
    draining: bool,
) -> io::Result<Next> {
    let (parts, mut body) = response.into_parts();
    let hint = body.size_hint().exact();
    // Built by a function of its own, so that the answer's parts are not kept across the
    // writes below: the connection's task is as large as its largest state.
    let AnswerHead {
        head,
        framing,
        keep_alive,
        switched,
    } = answer_head(parts, hint, exchange, draining);
    // A `100 Continue` not sent yet is not sent at all: the answer has begun. One begun
    // is finished first.
    let continuing = held.with(|wire| {
        let left = std::mem::take(&mut wire.continue_left);
        (left < CONTINUE.len()).then_some(left)
    });
    if let Some(left) = continuing.filter(|&left| left > 0) {
        write_all(
            held,
            idle,
            &mut [IoSlice::new(&CONTINUE[CONTINUE.len() - left..])],
        )
        .await?;
    }
    let next = if switched {
        Next::Switched
    } else if keep_alive {
        Next::KeepAlive
    } else {
        Next::Close
    };

    if matches!(framing, Framing::None) {
        drop(body);
        write_all(held, idle, &mut [IoSlice::new(&head)]).await?;
        flush(held, idle).await?;
        return Ok(next);
    }

    // The head waits for the body's first data if it is there at once, to go in one write.
    let mut head = Some(head);
    let mut written: u64 = 0;
    loop {
        let frame = if head.is_some() {
            match poll_fn(|context| Poll::Ready(Pin::new(&mut body).poll_frame(context))).await {
                Poll::Ready(frame) => frame,
                Poll::Pending => {
                    let head = head.take().unwrap_or_default();
                    write_all(held, idle, &mut [IoSlice::new(&head)]).await?;
                    flush(held, idle).await?;
                    continue;
                }
            }
        } else {
            // A target that sends nothing more ends the answer (cut short).
            // (An upload still under way, the client's reads, counts as progress.)
            idle.bound(
                poll_fn(|context| Pin::new(&mut body).poll_frame(context)),
                || held.with(|wire| wire.reads),
            )
            .await?
        };
        let head_bytes = head.take().unwrap_or_default();
        let frame = match frame {
            None => None,
            Some(Ok(frame)) => Some(frame),
            Some(Err(error)) => {
                // The answer cannot be finished: the client must see it cut short.
                let _ = write_all(held, idle, &mut [IoSlice::new(&head_bytes)]).await;
                return Err(io::Error::other(error));
            }
        };
        match frame {
            None => {
                let end: &[u8] = match framing {
                    Framing::Chunked => b"0\r\n\r\n",
                    _ => b"",
                };
                end_body(held, idle, &head_bytes, end, &framing, written).await?;
                return Ok(next);
            }
            Some(frame) => match frame.into_data() {
                Ok(data) => {
                    written += data.len() as u64;
                    match framing {
                        Framing::Chunked => {
                            if data.is_empty() {
                                write_all(held, idle, &mut [IoSlice::new(&head_bytes)]).await?;
                                flush(held, idle).await?;
                                continue;
                            }
                            // The chunk's size line, on the stack: at most 16 hex digits.
                            let mut line = [0u8; 18];
                            let unused = {
                                let mut free = &mut line[..];
                                let _ = write!(free, "{:x}\r\n", data.len());
                                free.len()
                            };
                            let size = &line[..line.len() - unused];
                            let end: &[u8] = if body.is_end_stream() {
                                b"\r\n0\r\n\r\n"
                            } else {
                                b"\r\n"
                            };
                            write_all(
                                held,
                                idle,
                                &mut [
                                    IoSlice::new(&head_bytes),
                                    IoSlice::new(size),
                                    IoSlice::new(&data),
                                    IoSlice::new(end),
                                ],
                            )
                            .await?;
                            if body.is_end_stream() {
                                flush(held, idle).await?;
                                return Ok(next);
                            }
                        }
                        Framing::Length(length) => {
                            if written > length {
                                let _ =
                                    write_all(held, idle, &mut [IoSlice::new(&head_bytes)]).await;
                                return Err(io::Error::other(
                                    "the answer's body was longer than its length",
                                ));
                            }
                            write_all(
                                held,
                                idle,
                                &mut [IoSlice::new(&head_bytes), IoSlice::new(&data)],
                            )
                            .await?;
                            if written == length && body.is_end_stream() {
                                flush(held, idle).await?;
                                return Ok(next);
                            }
                        }
                        Framing::Close | Framing::None => {
                            write_all(
                                held,
                                idle,
                                &mut [IoSlice::new(&head_bytes), IoSlice::new(&data)],
                            )
                            .await?;
                        }
                    }
                    flush(held, idle).await?;
                }
                Err(frame) => {
                    // Trailers end the body; a chunked answer carries them to a client that
                    // asked for them, but those that framing, routing, authentication or
                    // caching would read (RFC 9110 section 6.5.1).
                    let mut end = Vec::from(&b"0\r\n"[..]);
                    if let Some(trailers) = frame.trailers_ref().filter(|_| exchange.trailers) {
                        for (name, value) in trailers {
                            if !allowed_in_trailers(name) {
                                continue;
                            }
                            end.extend_from_slice(name.as_str().as_bytes());
                            end.extend_from_slice(b": ");
                            end.extend_from_slice(value.as_bytes());
                            end.extend_from_slice(b"\r\n");
                        }
                    }
                    end.extend_from_slice(b"\r\n");
                    let end: &[u8] = if matches!(framing, Framing::Chunked) {
                        &end
                    } else {
                        b""
                    };
                    end_body(held, idle, &head_bytes, end, &framing, written).await?;
                    return Ok(next);
                }
            },
        }
    }
}

/// Whether a field may travel in trailers: not those that frame or route the message,
/// authenticate it, or say how to store or decode it (hyper's list).
fn allowed_in_trailers(name: &HeaderName) -> bool {
    ![
        header::AUTHORIZATION,
        header::CACHE_CONTROL,
        header::CONTENT_ENCODING,
        header::CONTENT_LENGTH,
        header::CONTENT_RANGE,
        header::CONTENT_TYPE,
        header::HOST,
        header::MAX_FORWARDS,
        header::SET_COOKIE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::TE,
    ]
    .contains(name)
}

/// Writes what ends an answer's body (after the head, if it has not gone yet), and checks
/// that a body of declared length was that long.
async fn end_body(
    held: &mut Held,
    idle: &mut Idle<'_>,
    head: &[u8],
    end: &[u8],
    framing: &Framing,
    written: u64,
) -> io::Result<()> {
    write_all(held, idle, &mut [IoSlice::new(head), IoSlice::new(end)]).await?;
    flush(held, idle).await?;
    match *framing {
        Framing::Length(length) if written != length => Err(io::Error::other(
            "the answer's body was shorter than its length",
        )),
        _ => Ok(()),
    }
}

/// Writes every slice, skipping empty ones.
async fn write_all(
    held: &mut Held,
    idle: &mut Idle<'_>,
    slices: &mut [IoSlice<'_>],
) -> io::Result<()> {
    let mut slices = slices;
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        let count = idle
            .bound(
                poll_fn(|context| held.with(|wire| wire.poll_write_vectored(context, slices))),
                || 0,
            )
            .await??;
        if count == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, count);
    }
    Ok(())
}

async fn flush(held: &mut Held, idle: &mut Idle<'_>) -> io::Result<()> {
    idle.bound(
        poll_fn(|context| held.with(|wire| Pin::new(&mut wire.stream).poll_flush(context))),
        || 0,
    )
    .await?
}

/// ALB's idle timeout on an answer's way out: a wait that gets nowhere for `timeout` (for
/// the body's next data from the target, or for the client to take what was written: a
/// target that stalls mid-body, a client that stops reading) ends the answer, and the
/// connection with it. It waits on the connection's kept timer (`crate::timer`), and a
/// wait that is ready at once, as most are, reads no clock and arms nothing.
struct Idle<'a> {
    timer: Pin<&'a mut tokio::time::Sleep>,
    timeout: Duration,
}

impl Idle<'_> {
    /// `future`'s output, or a `TimedOut` error once it has been pending for the timeout
    /// with nothing moving the other way either: `activity` counts what came from the
    /// client meanwhile (an upload still under way), and a count that changed gives the
    /// wait another timeout. The future is polled once per wake-up, the timer only while
    /// the future is pending.
    async fn bound<T>(
        &mut self,
        future: impl Future<Output = T>,
        mut activity: impl FnMut() -> u64,
    ) -> io::Result<T> {
        let mut future = pin!(future);
        // The wait's deadline, and the activity count when it was set.
        let mut armed: Option<(tokio::time::Instant, u64)> = None;
        poll_fn(|context| {
            if let Poll::Ready(output) = future.as_mut().poll(context) {
                return Poll::Ready(Ok(output));
            }
            loop {
                let (deadline, seen) = *armed.get_or_insert_with(|| {
                    (tokio::time::Instant::now() + self.timeout, activity())
                });
                // The kept timer is moved to an earlier deadline at once, to a later one
                // only once it fires (as `crate::timer::until`).
                if self.timer.deadline() > deadline {
                    self.timer.as_mut().reset(deadline);
                }
                ready!(self.timer.as_mut().poll(context));
                if self.timer.deadline() < deadline {
                    self.timer.as_mut().reset(deadline);
                    continue;
                }
                let now = activity();
                if now == seen {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the answer made no progress for the idle timeout",
                    )));
                }
                armed = Some((tokio::time::Instant::now() + self.timeout, now));
            }
        })
        .await
    }
}

/// Read buffers, handed from connection to connection within a thread: a connection holds
/// one only while it reads, and one freed buffer per request would cost an allocation
/// and a free (8 KiB is past the allocator's per-thread caches) for each.
mod spare {
    use std::cell::RefCell;

    use bytes::BytesMut;

    /// The most spare buffers a thread keeps.
    const KEPT: usize = 64;
    /// A buffer that grew past this (a large head or body read) is not kept.
    const LARGEST_KEPT: usize = super::BODY_READ;

    thread_local! {
        static SPARE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
    }

    pub(super) fn take() -> BytesMut {
        SPARE
            .with(|spare| spare.borrow_mut().pop())
            .unwrap_or_else(|| BytesMut::with_capacity(super::HEAD_READ))
    }

    pub(super) fn give(mut buffer: BytesMut) {
        if buffer.capacity() == 0 || buffer.capacity() > LARGEST_KEPT {
            return;
        }
        buffer.clear();
        SPARE.with(|spare| {
            let mut spare = spare.borrow_mut();
            if spare.len() < KEPT {
                spare.push(buffer);
            }
        });
    }
}

/// The `Date` header's value, formatted once a second per thread.
mod date {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};

    thread_local! {
        static CACHED: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
    }

    pub(super) fn with<R>(action: impl FnOnce(&[u8]) -> R) -> R {
        let now = SystemTime::now();
        let second = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        CACHED.with(|cached| {
            let mut cached = cached.borrow_mut();
            if cached.0 != second {
                let text = httpdate::fmt_http_date(now);
                if text.len() == 29 {
                    cached.1.copy_from_slice(text.as_bytes());
                    cached.0 = second;
                } else {
                    return action(text.as_bytes());
                }
            }
            action(&cached.1)
        })
    }
}

#[cfg(test)]
mod tests {
    use http_body::SizeHint;

    #[test]
    fn a_size_hint_grows_by_what_is_in_front_exact_or_not() {
        let grown = super::with_more(&SizeHint::with_exact(3), 2);
        assert_eq!((grown.lower(), grown.upper()), (5, Some(5)));
        let mut open = SizeHint::new();
        open.set_lower(1);
        let grown = super::with_more(&open, 2);
        assert_eq!((grown.lower(), grown.upper()), (3, None));
        let grown = super::with_more(&SizeHint::with_exact(u64::MAX), 1);
        assert_eq!(grown.upper(), Some(u64::MAX));
    }
}
