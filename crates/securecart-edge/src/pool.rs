//! Keep-alive connections to targets, shared by every worker thread and keyed by the
//! target's identity (its address and protocol), so that two groups naming one server, or a
//! target kept across a reload, reuse the same connections.
//!
//! Built on hyper's connection API rather than hyper-util's pooled client: each
//! [`crate::balancer::Target`] holds its own [`TargetPool`], so a request finds its
//! connections without hashing a key or taking a shared lock, and an HTTP/1.1 connection
//! goes back to its pool the moment its response body ends, where the pooled client spawns
//! a task per request to wait for that. A connection that a target closed while idle is
//! noticed when it is taken: a request that it never carried is sent on another one.
//!
//! HTTP/1.1 targets get a stack of idle connections (the most recently used first, so that
//! spare ones age out); HTTP/2 targets share one multiplexed connection.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use parking_lot::Mutex;
use tokio::net::TcpStream;

use crate::config::UpstreamProtocol;
use crate::upstream::EdgeBody;

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
    /// The exchange failed on a connection.
    Request(hyper::Error),
}

type Key = (SocketAddr, UpstreamProtocol);

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

    /// The pool of the target at `address` speaking `protocol`: the one already in use if
    /// any target holds it, else a new one.
    pub fn for_target(&self, address: SocketAddr, protocol: UpstreamProtocol) -> Arc<TargetPool> {
        let mut pools = self.inner.pools.lock();
        if let Some(pool) = pools.get(&(address, protocol)).and_then(Weak::upgrade) {
            return pool;
        }
        let pool = Arc::new(TargetPool {
            address,
            protocol,
            settings: self.inner.settings,
            idle: Mutex::default(),
            shared: Mutex::default(),
        });
        pools.insert((address, protocol), Arc::downgrade(&pool));
        pool
    }
}

/// One target's connections.
#[derive(Debug)]
pub struct TargetPool {
    address: SocketAddr,
    protocol: UpstreamProtocol,
    settings: PoolSettings,
    /// HTTP/1.1: idle connections, the most recently used last.
    idle: Mutex<VecDeque<Idle>>,
    /// HTTP/2: the one shared connection.
    shared: Mutex<Option<http2::SendRequest<EdgeBody>>>,
}

#[derive(Debug)]
struct Idle {
    sender: http1::SendRequest<EdgeBody>,
    since: Instant,
}

/// An HTTP/1.1 connection lent to one request; [`Lease::give_back`] returns it once the
/// response has been read to its end.
#[derive(Debug)]
pub struct Lease {
    pool: Arc<TargetPool>,
    sender: http1::SendRequest<EdgeBody>,
}

impl Lease {
    /// Returns the connection to its pool, to carry the next request.
    pub fn give_back(self) {
        let Lease { pool, mut sender } = self;
        if sender.is_ready() {
            pool.put(sender);
        } else if !sender.is_closed() {
            // The connection has not yet taken note of the response's end: wait for it.
            tokio::spawn(async move {
                if sender.ready().await.is_ok() {
                    pool.put(sender);
                }
            });
        }
    }
}

impl TargetPool {
    /// The protocol its connections speak.
    pub fn protocol(&self) -> UpstreamProtocol {
        self.protocol
    }

    /// Sends a request on a pooled connection, or a new one. An HTTP/1.1 answer comes with
    /// the [`Lease`] of its connection, to give back when the body has been read.
    pub async fn send(
        self: &Arc<Self>,
        request: Request<EdgeBody>,
    ) -> Result<(Response<Incoming>, Option<Lease>), PoolError> {
        match self.protocol {
            UpstreamProtocol::Http1 => self.send_http1(request).await,
            UpstreamProtocol::Http2 => self.send_http2(request).await.map(|answer| (answer, None)),
        }
    }

    async fn send_http1(
        self: &Arc<Self>,
        mut request: Request<EdgeBody>,
    ) -> Result<(Response<Incoming>, Option<Lease>), PoolError> {
        while let Some(mut sender) = self.take() {
            match sender.try_send_request(request).await {
                Ok(response) => return Ok((response, self.lease(sender))),
                Err(mut error) => match error.take_message() {
                    // The target closed the idle connection before the request went out:
                    // nothing was sent, so the next connection carries it.
                    Some(unsent) => request = unsent,
                    None => return Err(PoolError::Request(error.into_error())),
                },
            }
        }
        // Boxed: the connect future is large, and every client connection's request
        // future would otherwise carry its size.
        let mut sender = Box::pin(self.connect_http1()).await?;
        let response = sender
            .send_request(request)
            .await
            .map_err(PoolError::Request)?;
        Ok((response, self.lease(sender)))
    }

    async fn connect_http1(&self) -> Result<http1::SendRequest<EdgeBody>, PoolError> {
        let stream = self.connect().await?;
        let (sender, connection) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(PoolError::Request)?;
        tokio::spawn(async move {
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(%error, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    fn lease(self: &Arc<Self>, sender: http1::SendRequest<EdgeBody>) -> Option<Lease> {
        Some(Lease {
            pool: Arc::clone(self),
            sender,
        })
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
            None => Box::pin(self.connect_http2()).await?,
        };
        // Waits while the connection carries as many streams as the target allows.
        sender.ready().await.map_err(PoolError::Request)?;
        sender
            .send_request(request)
            .await
            .map_err(PoolError::Request)
    }

    async fn connect_http2(&self) -> Result<http2::SendRequest<EdgeBody>, PoolError> {
        let stream = self.connect().await?;
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(TokioIo::new(stream))
            .await
            .map_err(PoolError::Request)?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "upstream HTTP/2 connection ended with an error");
            }
        });
        *self.shared.lock() = Some(sender.clone());
        Ok(sender)
    }

    async fn connect(&self) -> Result<TcpStream, PoolError> {
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
            .map_err(|_| PoolError::Connect(format!("connecting to {} timed out", self.address)))?
            .map_err(|error| {
                PoolError::Connect(format!("connecting to {}: {error}", self.address))
            })?;
        // Requests are small writes that must leave at once.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// The most recently used idle connection that is still open and ready.
    fn take(&self) -> Option<http1::SendRequest<EdgeBody>> {
        let mut idle = self.idle.lock();
        while let Some(Idle { sender, since }) = idle.pop_back() {
            if sender.is_ready() && since.elapsed() < self.settings.idle_timeout {
                return Some(sender);
            }
        }
        None
    }

    fn put(&self, sender: http1::SendRequest<EdgeBody>) {
        let mut idle = self.idle.lock();
        if idle.len() >= self.settings.max_idle {
            // The oldest goes: dropping its sender closes it.
            idle.pop_front();
        }
        idle.push_back(Idle {
            sender,
            since: Instant::now(),
        });
    }

    /// Closes the connections idle for longer than the idle timeout, and those their
    /// target closed.
    fn close_expired(&self) {
        let mut idle = self.idle.lock();
        idle.retain(|entry| {
            !entry.sender.is_closed() && entry.since.elapsed() < self.settings.idle_timeout
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
