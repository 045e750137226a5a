//! Keep-alive connections to targets, shared by every worker thread and keyed by the
//! target's identity (its address, protocol and TLS settings), so that two groups naming one server, or a
//! target kept across a reload, reuse the same connections.
//!
//! Rather than hyper-util's pooled client: each [`crate::balancer::Target`] holds its own
//! [`TargetPool`], so a request finds its connections without hashing a key or taking a
//! shared lock. HTTP/1.1 is spoken by the request's own task ([`crate::h1`]), and a
//! connection goes back to its pool the moment its answer's body ends, where the pooled
//! client spawns a task per request to wait for that. A connection that a target closed
//! while idle is noticed when it is taken (from the event loop's readiness, without a
//! system call); one that it closed just as a request went out gives nothing back, and an
//! idempotent request whose body is in hand goes again on another connection.
//!
//! HTTP/1.1 targets get a stack of idle connections (the most recently used first, so that
//! spare ones age out); HTTP/2 targets share one multiplexed connection, driven by hyper.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use parking_lot::Mutex;
use tokio::net::TcpStream;

use crate::config::UpstreamProtocol;
use crate::h1;
use crate::target_tls::{Connector, Stream, TargetTls};
use crate::upstream::{BoxError, EdgeBody};

/// How the pools connect and how long they keep idle connections.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    /// How long a TCP connect may take.
    pub connect_timeout: Duration,
    /// How long an idle connection is kept.
    pub idle_timeout: Duration,
    /// The most idle connections kept per target.
    pub max_idle: usize,
    /// The address connections leave from; none lets the system choose.
    pub source: Option<std::net::IpAddr>,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(60),
            max_idle: 256,
            source: None,
        }
    }
}

/// Why a request could not be sent.
#[derive(Debug)]
pub enum PoolError {
    /// No connection could be made: nothing reached the target.
    Connect(String),
    /// No TCP connection was made within the connect timeout: nothing reached the target.
    ConnectTimeout(String),
    /// The exchange failed on a connection.
    Request(BoxError),
    /// The request's own body failed (the client's upload broke off, or went past its
    /// limit): nothing is the target's fault.
    Body(BoxError),
    /// No answer's head came by the deadline.
    Timeout,
}

impl From<h1::Failure> for PoolError {
    fn from(failure: h1::Failure) -> Self {
        match failure.kind {
            h1::FailureKind::Body => PoolError::Body(failure.error),
            h1::FailureKind::TimedOut => PoolError::Timeout,
            _ => PoolError::Request(failure.error),
        }
    }
}

/// A target's answer body: read by the request's own task from an HTTP/1.1 connection
/// ([`h1`], left), or from hyper's HTTP/2 connection (right).
pub type TargetBody = http_body_util::Either<h1::ResponseBody, Incoming>;

/// The target's connection after it switched protocols (`101`), for the tunnel.
pub fn take_switched(body: &mut TargetBody) -> Option<h1::Connection> {
    match body {
        http_body_util::Either::Left(body) => body.take_switched(),
        http_body_util::Either::Right(_) => None,
    }
}

type Key = (SocketAddr, UpstreamProtocol, Option<TargetTls>);

/// Every target's pool, found by identity.
#[derive(Debug, Clone)]
pub struct Pools {
    inner: Arc<Registry>,
}

#[derive(Debug)]
struct Registry {
    settings: PoolSettings,
    pools: Mutex<HashMap<Key, Weak<TargetPool>>>,
}

impl Pools {
    /// An empty registry.
    pub fn new(settings: PoolSettings) -> Self {
        Self {
            inner: Arc::new(Registry {
                settings,
                pools: Mutex::default(),
            }),
        }
    }

    /// Starts the task that closes connections idle for longer than the idle timeout; it
    /// ends when the registry is dropped.
    pub fn start_reaper(&self) {
        let settings = self.inner.settings;
        let registry = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(settings.idle_timeout / 2);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(registry) = registry.upgrade() else {
                    return;
                };
                let live: Vec<Arc<TargetPool>> = {
                    let mut pools = registry.pools.lock();
                    pools.retain(|_, pool| pool.strong_count() > 0);
                    pools.values().filter_map(Weak::upgrade).collect()
                };
                for pool in live {
                    pool.close_expired();
                }
            }
        });
    }

    /// The pool of the target at `address` speaking `protocol`, over `tls` if given: the
    /// one already in use if any target holds it, else a new one.
    pub fn for_target(
        &self,
        address: SocketAddr,
        protocol: UpstreamProtocol,
        tls: Option<&TargetTls>,
    ) -> Arc<TargetPool> {
        let key = (address, protocol, tls.cloned());
        let mut pools = self.inner.pools.lock();
        if let Some(pool) = pools.get(&key).and_then(Weak::upgrade) {
            return pool;
        }
        let pool = Arc::new(TargetPool {
            address,
            protocol,
            connector: tls.map(|tls| Connector::new(tls, address.ip(), protocol)),
            tls: tls.cloned(),
            settings: self.inner.settings,
            idle: Mutex::default(),
            shared: Mutex::default(),
        });
        pools.insert(key, Arc::downgrade(&pool));
        pool
    }
}

/// One target's connections.
#[derive(Debug)]
pub struct TargetPool {
    address: SocketAddr,
    protocol: UpstreamProtocol,
    /// Its TLS settings, and the connector they make; none: plain TCP.
    tls: Option<TargetTls>,
    connector: Option<Connector>,
    settings: PoolSettings,
    /// HTTP/1.1: idle connections, the most recently used last.
    idle: Mutex<VecDeque<Idle>>,
    /// HTTP/2: the one shared connection.
    shared: Mutex<Option<http2::SendRequest<EdgeBody>>>,
}

#[derive(Debug)]
struct Idle {
    connection: h1::Connection,
    since: Instant,
}

impl TargetPool {
    /// The protocol its connections speak.
    pub fn protocol(&self) -> UpstreamProtocol {
        self.protocol
    }

    /// Its TLS settings; none: plain TCP.
    pub fn tls(&self) -> Option<&TargetTls> {
        self.tls.as_ref()
    }

    /// Sends a request on a pooled connection, or a new one, and returns the answer, whose
    /// head must come by `deadline` ([`PoolError::Timeout`] otherwise). An HTTP/1.1
    /// connection goes back to the pool when the answer's body has been read to its end;
    /// one whose body is dropped half-read is closed.
    #[allow(
        clippy::manual_async_fn,
        reason = "an async fn keeps a second copy of each argument it moves (rust-lang/rust#62958)"
    )]
    pub fn send(
        self: &Arc<Self>,
        request: Request<EdgeBody>,
        deadline: tokio::time::Instant,
    ) -> impl Future<Output = Result<Response<TargetBody>, PoolError>> {
        async move {
            match self.protocol {
                UpstreamProtocol::Http1 => self.send_http1(request, deadline).await,
                UpstreamProtocol::Http2 => {
                    let answer = tokio::time::timeout_at(deadline, self.send_http2(request))
                        .await
                        .map_err(|_| PoolError::Timeout)??;
                    Ok(answer.map(http_body_util::Either::Right))
                }
            }
        }
    }

    /// The HTTP/1.1 exchange waits for the answer on the connection's own timer, which
    /// stays with it from request to request (`crate::timer`); the body's first read and
    /// a new connection, which most requests do not wait for, on timers of their own.
    #[allow(
        clippy::manual_async_fn,
        reason = "an async fn keeps a second copy of each argument it moves (rust-lang/rust#62958)"
    )]
    fn send_http1(
        self: &Arc<Self>,
        request: Request<EdgeBody>,
        deadline: tokio::time::Instant,
    ) -> impl Future<Output = Result<Response<TargetBody>, PoolError>> {
        async move {
            // (Without a body, nothing to wait for: no timer.)
            let outgoing = if http_body::Body::is_end_stream(request.body()) {
                h1::Outgoing::new(request).await
            } else {
                tokio::time::timeout_at(deadline, h1::Outgoing::new(request))
                    .await
                    .map_err(|_| PoolError::Timeout)?
            };
            let mut outgoing = outgoing.map_err(PoolError::from)?;
            // After a pooled connection gave nothing back, the request goes once more, on a new
            // connection: a target that closes on this request is not sent it again and again.
            let mut fresh_only = false;
            loop {
                let pooled = if fresh_only { None } else { self.take() };
                let mut connection = match pooled {
                    Some(connection) => connection,
                    // Boxed: the connect future is large, and every client connection's
                    // request future would otherwise carry its size.
                    None => h1::Connection::new(
                        tokio::time::timeout_at(
                            deadline,
                            crate::boxed::box_future_in_place(|| self.connect()),
                        )
                        .await
                        .map_err(|_| PoolError::Timeout)??,
                    ),
                };
                match outgoing.send(&mut connection, deadline).await {
                    Ok((parts, framing)) => {
                        let body = h1::ResponseBody::new(connection, self, framing);
                        return Ok(Response::from_parts(
                            parts,
                            http_body_util::Either::Left(body),
                        ));
                    }
                    // The target had closed the idle connection: nothing of the request went
                    // out (the next pooled connection carries it), or (an idempotent request,
                    // its body in hand) nothing came back (a new connection carries it). A new
                    // connection's failure is `Sent`, so this ends.
                    Err(failure) if outgoing.may_resend(&failure) => {
                        fresh_only |= failure.kind == h1::FailureKind::NoAnswer;
                    }
                    Err(failure) => return Err(failure.into()),
                }
            }
        }
    }

    async fn send_http2(
        &self,
        request: Request<EdgeBody>,
    ) -> Result<Response<Incoming>, PoolError> {
        let shared = self
            .shared
            .lock()
            .as_ref()
            .filter(|sender| !sender.is_closed())
            .cloned();
        let mut sender = match shared {
            Some(sender) => sender,
            None => crate::boxed::box_future_in_place(|| self.connect_http2()).await?,
        };
        // Waits while the connection carries as many streams as the target allows.
        sender
            .ready()
            .await
            .map_err(|error| PoolError::Request(error.into()))?;
        sender
            .send_request(request)
            .await
            .map_err(|error| PoolError::Request(error.into()))
    }

    async fn connect_http2(&self) -> Result<http2::SendRequest<EdgeBody>, PoolError> {
        let stream = self.connect().await?;
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|error| PoolError::Request(error.into()))?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "upstream HTTP/2 connection ended with an error");
            }
        });
        *self.shared.lock() = Some(sender.clone());
        Ok(sender)
    }

    /// A new connection: TCP, and the TLS handshake of a target that speaks TLS, both
    /// within the connect timeout.
    async fn connect(&self) -> Result<Stream, PoolError> {
        let started = tokio::time::Instant::now();
        let stream = self.connect_tcp().await?;
        let Some(connector) = &self.connector else {
            return Ok(Stream::Plain(stream));
        };
        tokio::time::timeout_at(
            started + self.settings.connect_timeout,
            connector.connect(stream),
        )
        .await
        // A handshake not finished in time is ALB's 502 (a failed handshake), not the 504
        // of a connection not accepted.
        .map_err(|_| {
            PoolError::Connect(format!("the TLS handshake with {} timed out", self.address))
        })?
        .map_err(|error| {
            PoolError::Connect(format!("the TLS handshake with {}: {error}", self.address))
        })
    }

    async fn connect_tcp(&self) -> Result<TcpStream, PoolError> {
        let connecting = async {
            // The source address, if it is of the target's family. (Binding picks the
            // local port before the destination is known, so every target shares one
            // source's ephemeral ports: ample for pooled connections.)
            let Some(source) = self
                .settings
                .source
                .filter(|source| source.is_ipv4() == self.address.is_ipv4())
            else {
                return TcpStream::connect(self.address).await;
            };
            let socket = match source {
                std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
                std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
            };
            socket.bind(SocketAddr::new(source, 0))?;
            socket.connect(self.address).await
        };
        let stream = tokio::time::timeout(self.settings.connect_timeout, connecting)
            .await
            .map_err(|_| {
                PoolError::ConnectTimeout(format!("connecting to {} timed out", self.address))
            })?
            .map_err(|error| {
                PoolError::Connect(format!("connecting to {}: {error}", self.address))
            })?;
        // Requests are small writes that must leave at once.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// The most recently used idle connection that is still open and has not expired.
    fn take(&self) -> Option<h1::Connection> {
        let mut idle = self.idle.lock();
        while let Some(Idle { connection, since }) = idle.pop_back() {
            if connection.is_usable() && since.elapsed() < self.settings.idle_timeout {
                return Some(connection);
            }
        }
        None
    }

    /// Keeps a connection whose exchange ended for the next request.
    pub(crate) fn put(&self, connection: h1::Connection) {
        let mut idle = self.idle.lock();
        if idle.len() >= self.settings.max_idle {
            // The oldest goes: dropping it closes it.
            idle.pop_front();
        }
        idle.push_back(Idle {
            connection,
            since: Instant::now(),
        });
    }

    /// Closes the connections idle for longer than the idle timeout, and those their
    /// target closed.
    fn close_expired(&self) {
        let mut idle = self.idle.lock();
        idle.retain(|entry| {
            entry.connection.is_usable() && entry.since.elapsed() < self.settings.idle_timeout
        });
        let mut shared = self.shared.lock();
        if shared.as_ref().is_some_and(http2::SendRequest::is_closed) {
            *shared = None;
        }
    }

    /// How many idle HTTP/1.1 connections the pool holds.
    pub fn idle_connections(&self) -> usize {
        self.idle.lock().len()
    }
}
