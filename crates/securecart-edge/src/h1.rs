//! HTTP/1.1 to targets, spoken by the task of the request that sends it.
//!
//! Written here rather than taken from hyper's `client::conn::http1`: hyper drives each
//! client connection in a task of its own, so every forwarded request crossed two tasks
//! (the client's connection and the target's) through a channel, a oneshot and their
//! wakers. `perf` of the keep-alive benchmark put that connection task at a tenth of the
//! edge's CPU time; without it, a small proxied request costs 5% less. nginx, HAProxy and
//! Pingora do as this module does: the request's own task writes the request, reads the
//! answer's head, and hands the connection back to its pool the moment the answer's body
//! has been read, without waking anything else. Parsing is `httparse`'s (hyper's own
//! parser); this module holds the framing of RFC 9112:
//!
//! - the request: its head (without `Expect`: the body goes at once), and its body with its
//!   length (never more or less than said) or chunked. A body that streams is written while
//!   the answer is awaited, so that a target may refuse it before reading all of it (a
//!   413); other answers wait for the body to have gone, their own body read meanwhile;
//! - the answer: interim (1xx) answers skipped, a protocol switch handed over with its
//!   connection, the body framed by its length, chunks (with trailers) or the close, and
//!   the connection kept only after an answer that ended cleanly and did not say `close`;
//! - what a failure says of the request ([`FailureKind`]): a pooled connection that took
//!   nothing of it, or (for an idempotent request whose body is in hand) gave nothing back,
//!   lets it go again on another connection.
//!
//! The edge's HTTP/1.1 clients are served the same way (`server.rs`), which shares this
//! module's body framing ([`Reading::decode`]); HTTP/2 targets are reached through hyper's
//! HTTP/2 client, which multiplexes one connection.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use securecart_cache::directives::line_members;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::forward::framing;
use crate::pool::TargetPool;
use crate::target_tls::Stream;
use crate::upstream::{BoxError, EdgeBody};

/// The largest head of an answer (status line and headers), and of its trailers.
pub const MAX_HEAD: usize = 64 * 1024;
/// The most headers an answer may carry (hyper's limit).
const MAX_HEADERS: usize = 100;
/// How much is read from a target at once: enough for a 16 KiB answer and its head in one
/// read (with 16 KiB, such an answer took three reads, and 8% more of the edge's CPU).
const READ_SIZE: usize = 32 * 1024;
/// The most interim (1xx) answers before a final one.
const MAX_INTERIM: usize = 16;
/// The longest line giving a chunk's size (with its extensions).
const MAX_CHUNK_LINE: usize = 4096;
/// A pooled connection keeps a read buffer up to this size; a larger one goes.
const KEEP_BUFFER: usize = 32 * 1024;

/// A connection to a target, with what was read from it and not yet used.
#[derive(Debug)]
pub struct Connection {
    stream: Stream,
    buffer: BytesMut,
    /// Whether it carried a request before (a pooled connection the target may have
    /// closed while it was idle).
    reused: bool,
    /// The connection's one timer for its answers' heads (see `crate::timer`).
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
}

/// Why an exchange failed, and what became of the request.
#[derive(Debug)]
pub struct Failure {
    /// The cause.
    pub error: BoxError,
    /// What the failure says of the request.
    pub kind: FailureKind,
}

/// What a failed exchange says of its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Nothing was written: the request may go on another connection.
    Unsent,
    /// The request went out on a pooled connection and nothing of an answer came back:
    /// the target had most likely closed the connection while it was idle. An idempotent
    /// request may go again on another connection.
    NoAnswer,
    /// The request (or part of it) reached the target, which failed to answer it.
    Sent,
    /// The request's own body failed (the client's upload broke off, or went past its
    /// limit or its declared length): the target is not to blame.
    Body,
    /// No answer's head came by the deadline.
    TimedOut,
}

impl Failure {
    fn sent(error: impl Into<BoxError>) -> Self {
        Self {
            error: error.into(),
            kind: FailureKind::Sent,
        }
    }

    fn body(error: impl Into<BoxError>) -> Self {
        Self {
            error: error.into(),
            kind: FailureKind::Body,
        }
    }
}

impl Connection {
    /// A new connection.
    pub fn new(stream: Stream) -> Self {
        Self {
            stream,
            buffer: BytesMut::new(),
            reused: false,
            timer: crate::timer::unset(),
        }
    }

    /// Whether the connection, idle in its pool, may carry a request: the target has
    /// neither closed it nor sent anything unasked. Costs no system call unless the socket
    /// may be readable (the event loop saw it become so, or the last read filled the
    /// buffer).
    pub fn is_usable(&self) -> bool {
        if !self.buffer.is_empty() || self.stream.holds_unread() {
            return false;
        }
        let mut probe = [0u8; 1];
        // (Over TLS, a record the target sent unasked, its `close_notify` say, makes the
        // socket readable too.)
        matches!(self.stream.tcp().try_read(&mut probe), Err(error) if error.kind() == io::ErrorKind::WouldBlock)
    }

    /// Readies the connection to wait in its pool.
    fn idle(&mut self) {
        self.reused = true;
        if self.buffer.capacity() > KEEP_BUFFER {
            self.buffer = BytesMut::new();
        }
    }

    fn poll_fill(&mut self, context: &mut Context<'_>, size: usize) -> Poll<io::Result<usize>> {
        self.buffer.reserve(size);
        tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), context, &mut self.buffer)
    }

    /// The connection and the bytes the target sent past the head of its protocol switch.
    pub fn into_parts(self) -> (Stream, Bytes) {
        (self.stream, self.buffer.freeze())
    }
}

/// Reads more of an answer's head; `Ok(0)` when the target closed the connection.
async fn fill(reader: &mut (impl AsyncRead + Unpin), buffer: &mut BytesMut) -> io::Result<usize> {
    if buffer.len() >= MAX_HEAD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the target's answer head is larger than 64 KiB",
        ));
    }
    buffer.reserve(READ_SIZE);
    reader.read_buf(buffer).await
}

/// Writes every slice, counting what went into `written`.
async fn write_all(
    writer: &mut (impl AsyncWrite + Unpin),
    slices: &mut [IoSlice<'_>],
    written: &mut usize,
) -> io::Result<()> {
    let mut slices = slices;
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        let count = writer.write_vectored(slices).await?;
        if count == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        *written += count;
        IoSlice::advance_slices(&mut slices, count);
    }
    // Over TLS, the last record may wait in the session (over TCP this does nothing).
    writer.flush().await
}

/// How a request's body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestFraming {
    /// No body, and no length said.
    None,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Marks a request whose connection is not to be used again after its answer (an
/// ambiguous request that desync mitigation let through, `guard.rs`): it says
/// `Connection: close`, and the connection goes when its answer ends.
#[derive(Debug, Clone, Copy)]
pub struct CloseConnection;

/// A request ready to go: its head in wire form, and its body.
#[derive(Debug)]
pub struct Outgoing {
    head: Vec<u8>,
    framing: RequestFraming,
    /// The body's first data, taken before the head is written so that both go in one
    /// write (the whole of a buffered body).
    first: Option<Bytes>,
    /// The rest of a body that streams.
    body: Option<EdgeBody>,
    /// What the request's answer may be.
    asked: Asked,
    /// Whether the request may be sent again after a pooled connection failed it without
    /// an answer: its method is idempotent and its body is all in hand.
    replayable: bool,
    /// Whether its connection goes after its answer ([`CloseConnection`]).
    close: bool,
}

/// What a request lets its answer be.
#[derive(Debug, Clone, Copy)]
struct Asked {
    /// The request is `HEAD`: its answer has no body.
    head: bool,
    /// It has an `Upgrade` header: its answer may switch protocols (`101`).
    upgrade: bool,
}

impl Outgoing {
    /// Builds the head of `request` (origin form, HTTP/1.1) and reads the first of its body.
    /// Fails, as [`FailureKind::Body`], if the body does.
    pub async fn new(request: http::Request<EdgeBody>) -> Result<Self, Failure> {
        let (parts, mut body) = request.into_parts();
        let framing = if body.is_end_stream() {
            let said = parts.headers.contains_key(header::CONTENT_LENGTH);
            // As hyper does: a method that carries a body says it has none.
            if said || matches!(parts.method, Method::POST | Method::PUT | Method::PATCH) {
                RequestFraming::Length(0)
            } else {
                RequestFraming::None
            }
        } else {
            match body.size_hint().exact() {
                Some(length) => RequestFraming::Length(length),
                None => RequestFraming::Chunked,
            }
        };
        let target = parts
            .uri
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str);
        // Room for the whole head at once: the request line (12 bytes besides its method
        // and target), each header's line, a `connection: close` line (19), the framing
        // (at most 38: `content-length` of 20 digits) and the end (2).
        let lines: usize = parts
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum();
        let mut head = Vec::with_capacity(parts.method.as_str().len() + target.len() + lines + 71);
        head.extend_from_slice(parts.method.as_str().as_bytes());
        head.push(b' ');
        head.extend_from_slice(target.as_bytes());
        head.extend_from_slice(b" HTTP/1.1\r\n");
        let mut upgrade = false;
        for (name, value) in &parts.headers {
            upgrade |= name == header::UPGRADE;
            // The framing is this module's to say; and the body goes at once, so a target
            // is not to wait for it (nor to take an unread body for the next request).
            if name == header::CONTENT_LENGTH
                || name == header::TRANSFER_ENCODING
                || name == header::EXPECT
            {
                continue;
            }
            head.extend_from_slice(name.as_str().as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        let close = parts.extensions.get::<CloseConnection>().is_some();
        if close {
            head.extend_from_slice(b"connection: close\r\n");
        }
        match framing {
            RequestFraming::None => {}
            RequestFraming::Length(length) => {
                head.extend_from_slice(b"content-length: ");
                head.extend_from_slice(length.to_string().as_bytes());
                head.extend_from_slice(b"\r\n");
            }
            RequestFraming::Chunked => head.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        }
        head.extend_from_slice(b"\r\n");
        let mut first = None;
        let mut rest = None;
        if !body.is_end_stream() {
            while let Some(frame) =
                std::future::poll_fn(|context| Pin::new(&mut body).poll_frame(context)).await
            {
                if let Ok(data) = frame.map_err(Failure::body)?.into_data()
                    && !data.is_empty()
                {
                    first = Some(data);
                    break;
                }
            }
            if !body.is_end_stream() {
                rest = Some(body);
            }
        }
        let first_length = first.as_ref().map_or(0, |first| first.len() as u64);
        match framing {
            RequestFraming::Length(length) if first_length > length => {
                return Err(Failure::body(TOO_LONG));
            }
            RequestFraming::Length(length) if rest.is_none() && first_length < length => {
                return Err(Failure::body(TOO_SHORT));
            }
            _ => {}
        }
        Ok(Self {
            head,
            framing,
            replayable: parts.method.is_idempotent() && rest.is_none(),
            first,
            body: rest,
            asked: Asked {
                head: parts.method == Method::HEAD,
                upgrade,
            },
            close,
        })
    }

    /// Whether the request may go again on another connection after `failure`.
    pub fn may_resend(&self, failure: &Failure) -> bool {
        match failure.kind {
            FailureKind::Unsent => true,
            FailureKind::NoAnswer => self.replayable,
            FailureKind::Sent | FailureKind::Body | FailureKind::TimedOut => false,
        }
    }

    /// Sends the request on `connection` and reads the head of its answer. A body that
    /// streams is written while the answer is awaited, so that a target may refuse it (a
    /// 413, say) before it has read all of it. Any other answer is returned once the body
    /// has gone whole, or the target closed; meanwhile its body is read into the buffer (up
    /// to 16 MiB, past which the request fails), so that a target that answers a large
    /// upload as it reads it never waits for the edge. Fails as [`FailureKind::TimedOut`]
    /// if the answer's head has not come by `deadline`.
    pub async fn send(
        &mut self,
        connection: &mut Connection,
        deadline: tokio::time::Instant,
    ) -> Result<(http::response::Parts, ResponseFraming), Failure> {
        let Connection {
            stream,
            buffer,
            reused,
            timer,
        } = connection;
        let mut answer = tokio::select! {
            biased;
            sent = self.exchange(stream, buffer, *reused) => sent,
            () = crate::timer::until(timer.as_mut(), deadline) => Err(Failure {
                error: "no answer by the target's timeout".into(),
                kind: FailureKind::TimedOut,
            }),
        };
        if self.close
            && let Ok((_, framing)) = &mut answer
        {
            framing.reusable = false;
        }
        answer
    }

    async fn exchange(
        &mut self,
        stream: &mut Stream,
        buffer: &mut BytesMut,
        reused: bool,
    ) -> Result<(http::response::Parts, ResponseFraming), Failure> {
        // Read and written at once: TCP's halves borrow the socket; a TLS session is one
        // state, which tokio's split shares between its halves.
        match stream {
            Stream::Plain(stream) => {
                let (reader, writer) = stream.split();
                self.exchange_on(reader, writer, buffer, reused).await
            }
            Stream::Tls(session) => {
                let (reader, writer) = tokio::io::split(session.as_mut());
                self.exchange_on(reader, writer, buffer, reused).await
            }
        }
    }

    async fn exchange_on(
        &mut self,
        mut reader: impl AsyncRead + Unpin,
        mut writer: impl AsyncWrite + Unpin,
        buffer: &mut BytesMut,
        reused: bool,
    ) -> Result<(http::response::Parts, ResponseFraming), Failure> {
        let mut written = 0;
        let chunk_line = match (&self.first, self.framing) {
            (Some(first), RequestFraming::Chunked) => format!("{:x}\r\n", first.len()),
            _ => String::new(),
        };
        let first = self.first.as_deref().unwrap_or_default();
        let chunk_end: &[u8] = match self.framing {
            RequestFraming::Chunked if self.body.is_none() && first.is_empty() => b"0\r\n\r\n",
            RequestFraming::Chunked if self.body.is_none() => b"\r\n0\r\n\r\n",
            RequestFraming::Chunked if !first.is_empty() => b"\r\n",
            _ => b"",
        };
        let mut slices = [
            IoSlice::new(&self.head),
            IoSlice::new(chunk_line.as_bytes()),
            IoSlice::new(first),
            IoSlice::new(chunk_end),
        ];
        if let Err(error) = write_all(&mut writer, &mut slices, &mut written).await {
            if written == 0 && reused {
                return Err(Failure {
                    error: error.into(),
                    kind: FailureKind::Unsent,
                });
            }
            // The target stopped reading: it may have answered first (a 413), and closed.
            return match read_head(&mut reader, buffer, self.asked, reused).await {
                Ok((parts, mut framing)) => {
                    framing.reusable = false;
                    Ok((parts, framing))
                }
                Err(failure) if failure.kind == FailureKind::NoAnswer => Err(failure),
                Err(_) => Err(Failure::sent(error)),
            };
        }
        let Some(body) = self.body.take() else {
            return read_head(&mut reader, buffer, self.asked, reused).await;
        };
        let left = match self.framing {
            RequestFraming::Length(length) => Some(length - first.len() as u64),
            _ => None,
        };
        let writing = write_body(&mut writer, body, left);
        tokio::pin!(writing);
        // Whether the body went whole (`Some(true)`), or stopped because the target no
        // longer read it (`Some(false)`).
        let mut wrote = None;
        let mut head = None;
        // Whether the target closed, or its connection failed, during the upload (which
        // the answer's body meets again when it reads on). Until then, the connection is
        // read while the upload goes: more of an early answer's body, or the close.
        let mut ended = false;
        loop {
            // Reading an answer's head, or more of an early answer's body (so that a target
            // that answers as it reads never waits for the edge to read), starts again each
            // time round: it works on `buffer`, which keeps what was read.
            let want_head = head.is_none();
            let reading = async {
                if want_head {
                    read_head(&mut reader, buffer, self.asked, false)
                        .await
                        .map(Read::Head)
                } else {
                    read_early(&mut reader, buffer).await.map(Read::More)
                }
            };
            tokio::select! {
                biased;
                done = &mut writing, if wrote.is_none() => match done {
                    Ok(()) => wrote = Some(true),
                    // The client's side failed: the target waits for the rest in vain.
                    Err(failure) if failure.kind == FailureKind::Body => return Err(failure),
                    // The target stopped reading (it closed): its answer may be there.
                    Err(_) => wrote = Some(false),
                },
                read = reading, if want_head || (wrote.is_none() && !ended) => match read? {
                    Read::Head(answer) => head = Some(answer),
                    Read::More(More::Read) => {}
                    Read::More(More::Ended) => ended = true,
                },
            }
            match (wrote, head.take()) {
                // An answer with the whole body sent.
                (Some(true), Some((parts, mut framing))) => {
                    framing.reusable &= !ended;
                    return Ok((parts, framing));
                }
                // An answer after the target stopped reading, or a refusal (4xx, 5xx)
                // before it read everything: the rest of the body is not wanted, and the
                // connection is not trusted with another request.
                (Some(false), Some((parts, mut framing))) => {
                    framing.reusable = false;
                    return Ok((parts, framing));
                }
                // An early answer whose target then closed reads no more of the upload.
                (None, Some((parts, mut framing))) if parts.status.as_u16() >= 400 || ended => {
                    framing.reusable = false;
                    return Ok((parts, framing));
                }
                // Any other early answer waits for the body to have gone whole (the target
                // reads on), or to stop.
                (_, answer) => head = answer,
            }
        }
    }
}

/// What one read of [`Outgoing::send`] brought: the answer's head, or more of an early
/// answer's body.
enum Read {
    Head((http::response::Parts, ResponseFraming)),
    More(More),
}

/// What reading more of an early answer's body came to.
enum More {
    /// Some bytes.
    Read,
    /// The target's close, or a failed read: the answer's body meets it when it reads on.
    Ended,
}

/// The most of an early answer's body kept while the upload goes on.
const MAX_EARLY_BODY: usize = 16 * 1024 * 1024;

/// Reads more of an early answer's body into `buffer`, never past [`MAX_EARLY_BODY`].
async fn read_early(
    reader: &mut (impl AsyncRead + Unpin),
    buffer: &mut BytesMut,
) -> Result<More, Failure> {
    let room = MAX_EARLY_BODY.saturating_sub(buffer.len());
    if room == 0 {
        return Err(Failure::sent(
            "the target's answer ran more than 16 MiB ahead of the request's upload",
        ));
    }
    buffer.reserve(READ_SIZE.min(room));
    match reader.read_buf(&mut (&mut *buffer).limit(room)).await {
        Ok(0) | Err(_) => Ok(More::Ended),
        Ok(_) => Ok(More::Read),
    }
}

const TOO_LONG: &str = "the request body is longer than its declared length";
const TOO_SHORT: &str = "the request body ended before its declared length";

/// Writes the rest of a streaming body: chunked, or `left` bytes of a declared length.
async fn write_body(
    writer: &mut (impl AsyncWrite + Unpin),
    mut body: EdgeBody,
    mut left: Option<u64>,
) -> Result<(), Failure> {
    let chunked = left.is_none();
    let mut written = 0;
    while let Some(frame) =
        std::future::poll_fn(|context| Pin::new(&mut body).poll_frame(context)).await
    {
        // A body that fails (one past its limit, a client gone) fails the request.
        let Ok(data) = frame.map_err(Failure::body)?.into_data() else {
            // Trailers of a request are not forwarded.
            continue;
        };
        if data.is_empty() {
            continue;
        }
        if let Some(left) = &mut left {
            // Never more than declared: the rest would be read as another request.
            *left = left
                .checked_sub(data.len() as u64)
                .ok_or_else(|| Failure::body(TOO_LONG))?;
        }
        let line = if chunked {
            format!("{:x}\r\n", data.len())
        } else {
            String::new()
        };
        let end: &[u8] = if chunked { b"\r\n" } else { b"" };
        let mut slices = [
            IoSlice::new(line.as_bytes()),
            IoSlice::new(&data),
            IoSlice::new(end),
        ];
        write_all(writer, &mut slices, &mut written)
            .await
            .map_err(Failure::sent)?;
    }
    match left {
        Some(0) => Ok(()),
        Some(_) => Err(Failure::body(TOO_SHORT)),
        None => write_all(writer, &mut [IoSlice::new(b"0\r\n\r\n")], &mut written)
            .await
            .map_err(Failure::sent),
    }
}

/// How an answer's body is framed (RFC 9112 section 6.3), and whether the connection may
/// carry another request after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseFraming {
    body: BodyFraming,
    reusable: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyFraming {
    /// No body: a `HEAD`, 1xx, 204 or 304 answer, or a length of zero.
    Empty,
    /// So many bytes are left.
    Length(u64),
    /// Chunked.
    Chunked,
    /// Up to the close of the connection.
    Close,
    /// A protocol switch: what follows is the new protocol's.
    Switched,
}

fn invalid(message: &'static str) -> Failure {
    Failure::sent(message)
}

/// Reads an answer's head, skipping interim (1xx) answers but a protocol switch.
async fn read_head(
    reader: &mut (impl AsyncRead + Unpin),
    buffer: &mut BytesMut,
    asked: Asked,
    reused: bool,
) -> Result<(http::response::Parts, ResponseFraming), Failure> {
    let mut interim = 0;
    loop {
        let parsed = if buffer.is_empty() {
            None
        } else {
            let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
            let mut response = httparse::Response::new(&mut []);
            match httparse::ParserConfig::default().parse_response_with_uninit_headers(
                &mut response,
                buffer,
                &mut headers,
            ) {
                Ok(httparse::Status::Complete(length)) => {
                    let status = response.code.unwrap_or_default();
                    let version = response.version.unwrap_or_default();
                    // The head in an allocation of its own: the header values kept from
                    // it (by the cache, say) hold only it, not the read buffer.
                    let head = Bytes::copy_from_slice(&buffer[..length]);
                    let base = buffer.as_ptr() as usize;
                    let mut map = HeaderMap::with_capacity(response.headers.len());
                    // An invalid value fails a final answer only (an interim one is
                    // skipped, values and all).
                    let mut invalid_value = false;
                    // What the headers that frame the answer say.
                    let mut seen = FramingHeaders::new();
                    for field in response.headers.iter() {
                        let name = HeaderName::from_bytes(field.name.as_bytes())
                            .map_err(|_| invalid("the target sent an invalid header name"))?;
                        let start = field.value.as_ptr() as usize - base;
                        match HeaderValue::from_maybe_shared(
                            head.slice(start..start + field.value.len()),
                        ) {
                            Ok(value) => {
                                seen.read(crate::forward::framing_header(&name), &value);
                                map.append(name, value);
                            }
                            Err(_) => invalid_value = true,
                        }
                    }
                    Some((length, status, version, map, seen, invalid_value))
                }
                Ok(httparse::Status::Partial) => None,
                Err(_) => return Err(invalid("the target sent an invalid answer head")),
            }
        };
        let Some((length, status, version, mut headers, seen, invalid_value)) = parsed else {
            // Nothing of an answer on a pooled connection: the target had closed it.
            let nothing = reused && interim == 0 && buffer.is_empty();
            let failure = |error: BoxError| Failure {
                error,
                kind: if nothing {
                    FailureKind::NoAnswer
                } else {
                    FailureKind::Sent
                },
            };
            match fill(reader, buffer).await {
                Ok(0) if buffer.is_empty() => {
                    return Err(failure(
                        "the target closed the connection without answering".into(),
                    ));
                }
                Ok(0) => return Err(invalid("the target closed the connection mid-head")),
                Ok(_) => continue,
                Err(error) => return Err(failure(error.into())),
            }
        };
        buffer.advance(length);
        let status = StatusCode::from_u16(status)
            .map_err(|_| invalid("the target sent an invalid status code"))?;
        if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
            // `100 Continue` and the like: the final answer follows.
            interim += 1;
            if interim > MAX_INTERIM {
                return Err(invalid("the target sent too many interim answers"));
            }
            continue;
        }
        if invalid_value {
            return Err(invalid("the target sent an invalid header value"));
        }
        let (mut parts, ()) = Response::new(()).into_parts();
        parts.status = status;
        parts.version = if version == 0 {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        };
        let framing = response_framing(&mut headers, &seen, status, parts.version, asked)?;
        parts.headers = headers;
        return Ok((parts, framing));
    }
}

/// What an answer's framing headers say, read from their lines as its head is parsed, so
/// that an answer without `Transfer-Encoding` (most have `Connection` and
/// `Content-Length` only; see `forward::framing`) is framed with no look-up in its header
/// map. A transfer coding is read from the map, which rarely holds one.
struct FramingHeaders {
    /// Which of them the answer has, as `forward::framing` bits.
    present: u8,
    /// Whether `Connection` names `close`, and `keep-alive`.
    close: bool,
    keep_alive: bool,
    /// What `Content-Length` says (`None`: no line, or only empty ones), or the first
    /// fault found in its lines.
    length: Result<Option<u64>, &'static str>,
}

impl FramingHeaders {
    fn new() -> Self {
        Self {
            present: 0,
            close: false,
            keep_alive: false,
            length: Ok(None),
        }
    }

    /// Notes a header line of the framing header `bit` (0 for any other header), read
    /// as the header map's look-ups read it: a line that is not text (`to_str`) names no
    /// `Connection` option and makes `Content-Length` invalid; options and lengths are
    /// the line's list members (`directives::line_members`). (An answer with a value the
    /// header map refuses fails before it is framed: such lines are not read.)
    fn read(&mut self, bit: u8, value: &HeaderValue) {
        if bit == 0 {
            return;
        }
        self.present |= bit;
        let text = value.to_str().ok();
        match (bit, text) {
            (framing::CONNECTION, Some(text)) => {
                for token in line_members(text) {
                    self.close |= token.eq_ignore_ascii_case("close");
                    self.keep_alive |= token.eq_ignore_ascii_case("keep-alive");
                }
            }
            (framing::CONTENT_LENGTH, text) => {
                let Ok(mut length) = self.length else {
                    return;
                };
                let Some(text) = text else {
                    self.length = Err("the target sent an invalid framing header");
                    return;
                };
                for token in line_members(text) {
                    let parsed = Some(token)
                        .filter(|token| token.bytes().all(|byte| byte.is_ascii_digit()))
                        .and_then(|digits| digits.parse::<u64>().ok());
                    let Some(parsed) = parsed else {
                        self.length = Err("the target sent an invalid Content-Length");
                        return;
                    };
                    if length.is_some_and(|length| length != parsed) {
                        self.length = Err("the target sent two different Content-Lengths");
                        return;
                    }
                    length = Some(parsed);
                }
                self.length = Ok(length);
            }
            _ => {}
        }
    }
}

/// The framing of an answer from what its framing headers say; drops a `Content-Length`
/// that a `Transfer-Encoding` overrides, so that it is not passed on.
fn response_framing(
    headers: &mut HeaderMap,
    seen: &FramingHeaders,
    status: StatusCode,
    version: Version,
    asked: Asked,
) -> Result<ResponseFraming, Failure> {
    let (close, keep_alive) = (seen.close, seen.keep_alive);
    // `close` wins over `keep-alive` (RFC 9112 section 9.3).
    let mut reusable = !close && (version != Version::HTTP_10 || keep_alive);
    if status == StatusCode::SWITCHING_PROTOCOLS {
        // A switch the request did not ask for (RFC 9110 section 15.2.2): refused, as
        // nginx refuses it.
        if !asked.upgrade {
            return Err(invalid(
                "the target switched protocols for a request without Upgrade",
            ));
        }
        return Ok(ResponseFraming {
            body: BodyFraming::Switched,
            reusable: false,
        });
    }
    // The codings, whether the last is `chunked`, how many are, and whether one is a
    // compression, which would reach the client undone and unnamed (`Transfer-Encoding`
    // goes no further than the edge, which does not undo it).
    let (mut codings, mut chunked, mut chunks, mut compressed) = (0, false, 0, false);
    if seen.present & framing::TRANSFER_ENCODING != 0 {
        each_token(headers, header::TRANSFER_ENCODING, |token| {
            codings += 1;
            chunked = token.eq_ignore_ascii_case("chunked");
            chunks += usize::from(chunked);
            compressed |= [
                "gzip",
                "x-gzip",
                "deflate",
                "compress",
                "x-compress",
                "br",
                "zstd",
            ]
            .iter()
            .any(|coding| token.eq_ignore_ascii_case(coding));
            Ok(())
        })?;
    }
    let body = if asked.head
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        BodyFraming::Empty
    } else if codings > 0 && version == Version::HTTP_10 {
        // HTTP/1.0 has no transfer codings: the framing is faulty (RFC 9112 section 6.1).
        return Err(invalid(
            "the target sent an HTTP/1.0 answer with a transfer coding",
        ));
    } else if compressed || chunks > 1 || (chunks == 1 && !chunked) {
        // A compression the edge would pass on undone and unnamed, or chunks framed
        // twice or under another coding (RFC 9112 section 6.1: `chunked` once, and
        // last): refused, as nginx refuses every coding but `chunked` alone.
        return Err(invalid(
            "the target sent a transfer coding other than chunked (once, and last), or one the edge does not undo",
        ));
    } else if codings > 0 {
        // A length beside a transfer coding is not to be trusted (RFC 9112 section 6.3),
        // nor passed on; nor is the connection after it.
        if headers.remove(header::CONTENT_LENGTH).is_some() {
            reusable = false;
        }
        if chunked {
            BodyFraming::Chunked
        } else {
            // A coding it does not know, which it cannot undo either (`identity`, or
            // a name of the target's own): the body runs to the close (RFC 9112
            // section 6.3), and goes on as it came, as nginx before 1.23 and the
            // caches of the HTTP cache tests pass it.
            reusable = false;
            BodyFraming::Close
        }
    } else if seen.present & framing::CONTENT_LENGTH != 0 {
        match seen.length.map_err(invalid)? {
            Some(0) => BodyFraming::Empty,
            Some(length) => BodyFraming::Length(length),
            None => return Err(invalid("the target sent an invalid Content-Length")),
        }
    } else {
        reusable = false;
        BodyFraming::Close
    };
    Ok(ResponseFraming { body, reusable })
}

/// Calls `each` with every comma-separated token of a header's values, trimmed; empty
/// ones are skipped.
fn each_token(
    headers: &HeaderMap,
    name: HeaderName,
    mut each: impl FnMut(&str) -> Result<(), Failure>,
) -> Result<(), Failure> {
    for value in headers.get_all(name) {
        let text = value
            .to_str()
            .map_err(|_| invalid("the target sent an invalid framing header"))?;
        for token in text
            .split(',')
            .map(str::trim)
            .filter(|token| !token.is_empty())
        {
            each(token)?;
        }
    }
    Ok(())
}

/// Where a chunked body's reading stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chunk {
    /// At a chunk's size line.
    Size,
    /// In a chunk's data, with so many bytes left.
    Data(u64),
    /// At the line end after a chunk's data.
    DataEnd,
    /// After the last chunk: at the trailers, or the empty line ending the body.
    Trailers,
}

#[derive(Debug)]
pub(crate) enum Reading {
    Length(u64),
    Chunked(Chunk),
    Close,
}

/// A target's answer body, read from its connection by whichever task polls it; the
/// connection goes back to its pool when the body has been read to its end.
#[derive(Debug)]
pub struct ResponseBody {
    state: State,
}

#[derive(Debug)]
enum State {
    /// Read to its end (or never had a body).
    Done,
    /// Still on the wire.
    Reading {
        connection: Connection,
        pool: Arc<TargetPool>,
        reading: Reading,
        reusable: bool,
    },
    /// A protocol switch: the connection, for the tunnel.
    Switched(Connection),
}

impl ResponseBody {
    /// The body of an answer whose head `send` read from `connection`; an answer with no
    /// body gives its connection back at once.
    pub fn new(connection: Connection, pool: &Arc<TargetPool>, framing: ResponseFraming) -> Self {
        let reading = match framing.body {
            BodyFraming::Empty => {
                give_back(connection, pool, framing.reusable);
                return Self { state: State::Done };
            }
            BodyFraming::Switched => {
                return Self {
                    state: State::Switched(connection),
                };
            }
            BodyFraming::Length(length) => Reading::Length(length),
            BodyFraming::Chunked => Reading::Chunked(Chunk::Size),
            BodyFraming::Close => Reading::Close,
        };
        Self {
            state: State::Reading {
                connection,
                pool: Arc::clone(pool),
                reading,
                reusable: framing.reusable,
            },
        }
    }

    /// The target's connection after a protocol switch.
    pub fn take_switched(&mut self) -> Option<Connection> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Switched(connection) => Some(connection),
            other => {
                self.state = other;
                None
            }
        }
    }

    /// Ends the body: its connection goes back to the pool if it may carry another request.
    fn finish(&mut self) {
        if let State::Reading {
            connection,
            pool,
            reusable,
            ..
        } = std::mem::replace(&mut self.state, State::Done)
        {
            give_back(connection, &pool, reusable);
        }
    }
}

fn give_back(mut connection: Connection, pool: &TargetPool, reusable: bool) {
    // Bytes past the answer's end are the target's mistake: the connection is not trusted.
    // (Over TLS they may wait decrypted in the session, out of the buffer's sight, as may
    // the target's `close_notify`.)
    if reusable && connection.buffer.is_empty() && !connection.stream.holds_unread() {
        connection.idle();
        pool.put(connection);
    }
}

/// The line ending a chunk-size line, if it has been read; errors past a sane length, and
/// on a line that does not end with CRLF: parsers that end lines differently (at a bare LF,
/// or a bare CR) would not agree on where the body ends, which is how requests are
/// smuggled past proxies.
fn line_end(buffer: &[u8]) -> Result<Option<usize>, BoxError> {
    match buffer
        .iter()
        .take(MAX_CHUNK_LINE)
        .position(|&byte| byte == b'\n')
    {
        Some(end) if end == 0 || buffer[end - 1] != b'\r' => {
            Err("a chunk line that does not end with CRLF".into())
        }
        Some(end) => Ok(Some(end)),
        None if buffer.len() >= MAX_CHUNK_LINE => Err("an overlong chunk line".into()),
        None => Ok(None),
    }
}

/// A chunk's size from its line (without the line end), extensions ignored.
fn chunk_size(line: &[u8]) -> Result<u64, BoxError> {
    const INVALID: &str = "an invalid chunk size";
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    // No control characters (a bare CR among them) in the size or its extensions.
    if line
        .iter()
        .any(|&byte| (byte < b' ' && byte != b'\t') || byte == 0x7f)
    {
        return Err(INVALID.into());
    }
    // Hex digits, then white space only before extensions (RFC 9112 section 7.1.1).
    let size = line.split(|&byte| byte == b';').next().unwrap_or_default();
    let size = match size.iter().rposition(|&byte| byte != b' ' && byte != b'\t') {
        Some(end) => &size[..=end],
        None => return Err(INVALID.into()),
    };
    let digits = match size.iter().position(|&byte| byte != b'0') {
        Some(start) => &size[start..],
        None => return Ok(0),
    };
    if digits.len() > 16 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return Err(INVALID.into());
    }
    let text = std::str::from_utf8(digits).map_err(|_| INVALID)?;
    u64::from_str_radix(text, 16).map_err(|_| INVALID.into())
}

/// Below this, a frame is copied out of the read buffer rather than shared with it, so
/// that the buffer is reused for the next read and a small body kept (by the cache) holds
/// only itself.
const COPY_BELOW: usize = 8 * 1024;

/// Takes up to `limit` bytes of the buffer as a data frame.
fn take(buffer: &mut BytesMut, limit: u64) -> Bytes {
    let count = usize::try_from(limit)
        .unwrap_or(usize::MAX)
        .min(buffer.len());
    if count < COPY_BELOW {
        let data = Bytes::copy_from_slice(&buffer[..count]);
        buffer.advance(count);
        return data;
    }
    buffer.split_to(count).freeze()
}

/// Parses the trailers at the start of `buffer`: their length and map, or `None` if they
/// have not all been read.
fn trailers(buffer: &[u8]) -> Result<Option<(usize, HeaderMap)>, BoxError> {
    if buffer.starts_with(b"\r\n") {
        return Ok(Some((2, HeaderMap::new())));
    }
    // Lines end with CRLF here too, as in `line_end`.
    if buffer.first() == Some(&b'\n') || buffer.starts_with(b"\r") && buffer.get(1).is_some() {
        return Err("trailers whose lines do not end with CRLF".into());
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match httparse::parse_headers(buffer, &mut headers) {
        Ok(httparse::Status::Complete((length, fields))) => {
            let bare_lf = buffer[..length]
                .iter()
                .enumerate()
                .any(|(at, &byte)| byte == b'\n' && (at == 0 || buffer[at - 1] != b'\r'));
            if bare_lf {
                return Err("trailers whose lines do not end with CRLF".into());
            }
            let mut map = HeaderMap::with_capacity(fields.len());
            for field in fields {
                let name = HeaderName::from_bytes(field.name.as_bytes())
                    .map_err(|_| "an invalid trailer")?;
                let value =
                    HeaderValue::from_bytes(field.value).map_err(|_| "an invalid trailer")?;
                map.append(name, value);
            }
            Ok(Some((length, map)))
        }
        Ok(httparse::Status::Partial) if buffer.len() < MAX_HEAD => Ok(None),
        Ok(httparse::Status::Partial) => Err("trailers larger than 64 KiB".into()),
        Err(_) => Err("invalid trailers".into()),
    }
}

const CLOSED_EARLY: &str = "the target closed the connection before the body's end";

/// What [`Reading::decode`] found in a buffer.
#[derive(Debug)]
pub(crate) enum Decoded {
    /// A frame of the body (data, or the trailers); `true` if it ends the body.
    Frame(Frame<Bytes>, bool),
    /// The body's end.
    End,
    /// More must be read first: about so many bytes.
    More(usize),
}

impl Reading {
    /// Decodes the body's next part from what `buffer` holds, consuming what it uses. The
    /// framing of RFC 9112 section 6 and 7.1, shared by answers from targets and requests
    /// from clients.
    pub(crate) fn decode(&mut self, buffer: &mut BytesMut) -> Result<Decoded, BoxError> {
        loop {
            return Ok(match self {
                Reading::Length(0) => Decoded::End,
                Reading::Length(left) => {
                    if buffer.is_empty() {
                        return Ok(Decoded::More(
                            usize::try_from(*left)
                                .unwrap_or(usize::MAX)
                                .min(READ_SIZE * 4),
                        ));
                    }
                    let data = take(buffer, *left);
                    *left -= data.len() as u64;
                    Decoded::Frame(Frame::data(data), *left == 0)
                }
                Reading::Close => {
                    if buffer.is_empty() {
                        return Ok(Decoded::More(READ_SIZE * 4));
                    }
                    Decoded::Frame(Frame::data(take(buffer, u64::MAX)), false)
                }
                Reading::Chunked(chunk) => match *chunk {
                    Chunk::Size => match line_end(buffer)? {
                        Some(end) => {
                            *chunk = match chunk_size(&buffer[..end])? {
                                0 => Chunk::Trailers,
                                size => Chunk::Data(size),
                            };
                            buffer.advance(end + 1);
                            continue;
                        }
                        None => Decoded::More(READ_SIZE),
                    },
                    Chunk::Data(left) => {
                        if buffer.is_empty() {
                            return Ok(Decoded::More(
                                usize::try_from(left)
                                    .unwrap_or(usize::MAX)
                                    .min(READ_SIZE * 4),
                            ));
                        }
                        let data = take(buffer, left);
                        let left = left - data.len() as u64;
                        *chunk = if left == 0 {
                            Chunk::DataEnd
                        } else {
                            Chunk::Data(left)
                        };
                        Decoded::Frame(Frame::data(data), false)
                    }
                    Chunk::DataEnd => {
                        if buffer.starts_with(b"\r\n") {
                            buffer.advance(2);
                            *chunk = Chunk::Size;
                            continue;
                        }
                        if buffer.len() >= 2 || buffer.first().is_some_and(|&byte| byte != b'\r') {
                            return Err("a chunk was longer than it said".into());
                        }
                        Decoded::More(READ_SIZE)
                    }
                    Chunk::Trailers => match trailers(buffer)? {
                        Some((length, map)) => {
                            buffer.advance(length);
                            *self = Reading::Length(0);
                            if map.is_empty() {
                                Decoded::End
                            } else {
                                Decoded::Frame(Frame::trailers(map), true)
                            }
                        }
                        None => Decoded::More(READ_SIZE),
                    },
                },
            });
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            let State::Reading {
                connection,
                reading,
                ..
            } = &mut this.state
            else {
                return Poll::Ready(None);
            };
            // What the buffer holds is used first; then, if more is needed, a read.
            let wanted = match reading.decode(&mut connection.buffer) {
                Err(error) => return Poll::Ready(Some(Err(self::fail(this, error)))),
                Ok(Decoded::Frame(frame, ended)) => {
                    if ended {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Ok(Decoded::End) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(Decoded::More(wanted)) => wanted,
            };
            match ready!(connection.poll_fill(context, wanted)) {
                Ok(0) => {
                    if matches!(reading, Reading::Close) {
                        // The end of a body that runs to the close; the connection goes.
                        this.state = State::Done;
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Err(self::fail(this, CLOSED_EARLY.into()))));
                }
                Ok(_) => {}
                Err(error) => return Poll::Ready(Some(Err(self::fail(this, error.into())))),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done | State::Switched(_))
    }

    fn size_hint(&self) -> SizeHint {
        match &self.state {
            State::Done | State::Switched(_) => SizeHint::with_exact(0),
            State::Reading {
                reading: Reading::Length(left),
                ..
            } => SizeHint::with_exact(*left),
            State::Reading { .. } => SizeHint::default(),
        }
    }
}

/// Drops the connection of a body that failed, and passes its error on.
fn fail(body: &mut ResponseBody, error: BoxError) -> BoxError {
    body.state = State::Done;
    error
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::{FramingHeaders, framing};

    /// What an answer's `Connection` and `Content-Length` lines say, read from the lines
    /// as the header map's look-ups read them before: options split at commas and
    /// trimmed, a line that is not text naming none; lengths of digits only, one value
    /// however often repeated, and the first fault kept.
    #[test]
    fn framing_lines_read_as_the_header_map_reads_them() {
        type Case<'a> = (
            &'a [(u8, &'a [u8])],
            bool,
            bool,
            Result<Option<u64>, &'a str>,
        );
        let (connection, length) = (framing::CONNECTION, framing::CONTENT_LENGTH);
        let cases: &[Case<'_>] = &[
            (&[(connection, b"keep-alive")], false, true, Ok(None)),
            (&[(connection, b" Close ")], true, false, Ok(None)),
            (
                &[(connection, b"Keep-Alive, upgrade,,close")],
                true,
                true,
                Ok(None),
            ),
            (
                &[(connection, b"keep-alive"), (connection, b"close")],
                true,
                true,
                Ok(None),
            ),
            (&[(connection, b"close \xff")], false, false, Ok(None)),
            (&[(0, b"close"), (0, b"12")], false, false, Ok(None)),
            (&[(length, b"5")], false, false, Ok(Some(5))),
            (
                &[(length, b"5, 5"), (length, b"5")],
                false,
                false,
                Ok(Some(5)),
            ),
            (&[(length, b"")], false, false, Ok(None)),
            (&[(length, b"5"), (length, b"6")], false, false, Err("two")),
            (
                &[(length, b"5, 6"), (length, b"x")],
                false,
                false,
                Err("two"),
            ),
            (
                &[(length, b"+5")],
                false,
                false,
                Err("invalid Content-Length"),
            ),
            (
                &[(length, b"5 5")],
                false,
                false,
                Err("invalid Content-Length"),
            ),
            (
                &[(length, b"18446744073709551616")],
                false,
                false,
                Err("invalid Content-Length"),
            ),
            (
                &[(length, b"5\xff")],
                false,
                false,
                Err("invalid framing header"),
            ),
            (&[(connection, b"keep-alive,\tclose")], true, true, Ok(None)),
            (&[(length, b"5,\t5\t")], false, false, Ok(Some(5))),
        ];
        for (lines, close, keep_alive, expected) in cases {
            let mut seen = FramingHeaders::new();
            for (bit, value) in *lines {
                seen.read(*bit, &HeaderValue::from_bytes(value).expect("value"));
            }
            let present = lines.iter().fold(0, |present, (bit, _)| present | bit);
            assert_eq!(seen.present, present, "{lines:?}");
            assert_eq!(
                (seen.close, seen.keep_alive),
                (*close, *keep_alive),
                "{lines:?}"
            );
            match (seen.length, expected) {
                (Ok(length), Ok(expected)) => assert_eq!(length, *expected, "{lines:?}"),
                (Err(fault), Err(expected)) => assert!(fault.contains(expected), "{lines:?}"),
                (length, _) => panic!("{lines:?}: {length:?}"),
            }
        }
    }
}
