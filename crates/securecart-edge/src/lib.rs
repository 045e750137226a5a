//! The SecureCart edge: the public entry of a region. It accepts HTTP/1.1 and HTTP/2
//! (cleartext, prior knowledge) from clients and forwards each request through one
//! [`pipeline`] of stages to a target group of service replicas.
//!
//! **API boundary:** an edge is built from an [`EdgeConfig`]: addresses, path rules, target
//! groups with target addresses. It knows nothing of topology files or of what the targets
//! serve.

pub mod access_log;
pub mod actions;
pub mod balancer;
mod boxed;
pub mod cache;
pub mod challenge;
pub mod config;
pub mod context;
pub mod control;
pub mod error;
pub mod forward;
pub mod guard;
pub mod h1;
pub mod health;
pub mod metrics;
pub mod mitigation;
pub mod pipeline;
pub mod pool;
pub mod rules;
pub mod server;
pub mod shield;
pub mod target_tls;
mod timer;
pub mod tls;
pub mod upstream;
pub mod waf;

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;

use prometheus_client::registry::Registry;
use securecart_telemetry::{AdminServer, MetricsRegistry, Readiness};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

pub use config::{
    CacheBehavior, CacheConfig, CacheDisk, CheckProtocol, EdgeConfig, ErrorResponse,
    HealthCheckConfig, Limits, ListenerConfig, OriginFailover, TargetGroupConfig, UpstreamProtocol,
};
pub use control::{Control, ReloadError};
pub use error::EdgeError;

use actions::{Action, ActionError};
use balancer::TargetGroup;
use metrics::EdgeMetrics;
use pipeline::Pipeline;
use rules::{Rule, RuleError, RuleSet};

/// Why an edge could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// An action of a listener is not valid.
    #[error("listener {listener}, rule {rule}: {source}")]
    Action {
        /// The listener.
        listener: String,
        /// The rule, or `default`.
        rule: String,
        /// What is wrong.
        source: ActionError,
    },
    /// The rules of a listener are not valid.
    #[error("listener {listener}: {source}")]
    Rules {
        /// The listener.
        listener: String,
        /// What is wrong.
        source: RuleError,
    },
    /// The cache's disk tier cannot be opened.
    #[error("the cache's directory {}: {source}", directory.display())]
    CacheDisk {
        /// The directory.
        directory: std::path::PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A cache behaviour's origin shield or origin failover names no target group.
    #[error("cache behaviour {behavior}: no target group is named `{group}` (its {role})")]
    UnknownCacheGroup {
        /// The behaviour.
        behavior: String,
        /// The group it names.
        group: String,
        /// What the group is to the behaviour: `origin shield`, `origin failover`.
        role: &'static str,
    },
    /// The edge has no listener.
    #[error("an edge needs at least one listener")]
    NoListener,
    /// A target group has more targets than the balancer considers.
    #[error("target group {0} has more than 64 targets")]
    TooManyTargets(String),
    /// The TLS settings of a listener are not valid.
    #[error("listener {listener}: {source}")]
    Tls {
        /// The listener.
        listener: String,
        /// What is wrong.
        source: tls::TlsError,
    },
    /// An address could not be bound or served.
    #[error("{address}: {source}")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// The operating system's error.
        source: std::io::Error,
    },
}

/// An edge bound to its addresses, ready to serve.
pub struct Edge {
    listeners: Vec<(TcpListener, Option<TlsAcceptor>)>,
    admin: AdminServer,
    control: Arc<Control>,
    region: String,
}

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge")
            .field("region", &self.region)
            .field("listeners", &self.listener_addrs())
            .finish_non_exhaustive()
    }
}

pub(crate) fn compile_listener(
    listener: &ListenerConfig,
    groups: &[TargetGroup],
) -> Result<RuleSet<Action>, StartError> {
    let group_index = |name: &str| groups.iter().position(|group| group.name == name);
    let action_error = |rule: &str, source| StartError::Action {
        listener: listener.name.clone(),
        rule: rule.to_owned(),
        source,
    };
    let rules = listener
        .rules
        .iter()
        .map(|rule| {
            Ok(Rule {
                name: rule.name.clone(),
                priority: rule.priority,
                conditions: rule.conditions.clone(),
                action: Action::compile(&rule.action, group_index)
                    .map_err(|source| action_error(&rule.name, source))?,
            })
        })
        .collect::<Result<Vec<_>, StartError>>()?;
    let default_action = Action::compile(&listener.default_action, group_index)
        .map_err(|source| action_error("default", source))?;
    RuleSet::new(rules, default_action).map_err(|source| StartError::Rules {
        listener: listener.name.clone(),
        source,
    })
}

impl Edge {
    /// Compiles the configuration and binds the listeners and the admin address.
    pub async fn bind(config: EdgeConfig) -> Result<Self, StartError> {
        if config.listeners.is_empty() {
            return Err(StartError::NoListener);
        }
        let mut registry = Registry::with_prefix("securecart_edge");
        let metrics = EdgeMetrics::register(&mut registry);
        let pools = pool::Pools::new(pool::PoolSettings {
            connect_timeout: config.limits.connect_timeout,
            source: config.upstream_source,
            ..Default::default()
        });
        pools.start_reaper();
        let mut listeners = Vec::with_capacity(config.listeners.len());
        let mut ports = Vec::with_capacity(config.listeners.len());
        let mut certificates = Vec::with_capacity(config.listeners.len());
        for listener_config in &config.listeners {
            let (acceptor, listener_certificates) = listener_config
                .tls
                .as_ref()
                .map(tls::acceptor)
                .transpose()
                .map_err(|source| StartError::Tls {
                    listener: listener_config.name.clone(),
                    source,
                })?
                .unzip();
            certificates.push(listener_certificates);
            let listener = bind_listener(listener_config.listen)
                .await
                .map_err(|source| StartError::Listen {
                    address: listener_config.listen,
                    source,
                })?;
            ports.push(
                listener
                    .local_addr()
                    .map_or(listener_config.listen.port(), |address| address.port()),
            );
            listeners.push((listener, acceptor));
        }
        let readiness = Readiness::default();
        let admin_address = config.admin;
        let region = config.region.clone();
        let control = Arc::new(Control::new(
            config,
            ports,
            pools,
            metrics,
            readiness.clone(),
            certificates,
        )?);
        let admin = AdminServer::bind(
            admin_address,
            MetricsRegistry::new(registry),
            readiness,
            control::admin_routes(Arc::clone(&control)),
        )
        .await
        .map_err(|source| StartError::Listen {
            address: admin_address,
            source,
        })?;
        Ok(Self {
            listeners,
            admin,
            control,
            region,
        })
    }

    /// The control plane: reloads and target registration.
    pub fn control(&self) -> Arc<Control> {
        Arc::clone(&self.control)
    }

    /// The address the first listener accepts on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listeners.first().map_or_else(
            || Err(std::io::Error::other("no listener")),
            |(listener, _)| listener.local_addr(),
        )
    }

    /// The addresses of every listener, in configuration order.
    pub fn listener_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|(listener, _)| listener.local_addr().ok())
            .collect()
    }

    /// The admin address.
    pub fn admin_addr(&self) -> std::io::Result<SocketAddr> {
        self.admin.local_addr()
    }

    /// Serves until `shutdown` completes, then stops accepting and lets requests in flight
    /// finish (up to the drain timeout).
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let Edge {
            listeners,
            admin,
            control,
            region,
        } = self;
        control.restart_health_checks().await;
        // The shield closes its mitigation windows and forgets clients quiet for long
        // enough, so that its memory follows the clients of the last minutes.
        let ticking = Arc::downgrade(&control);
        let shield_task = tokio::spawn(async move {
            loop {
                let interval = ticking
                    .upgrade()
                    .and_then(|control| control.shield())
                    .map_or(std::time::Duration::from_secs(1), |shield| {
                        shield.tick_interval()
                    });
                tokio::time::sleep(interval).await;
                let Some(control) = ticking.upgrade() else {
                    return;
                };
                if let Some(shield) = control.shield() {
                    shield.tick(&control.metrics);
                }
            }
        });
        let (admin_stop_sender, mut admin_stop) = watch::channel(false);
        let admin_task = tokio::spawn(admin.serve(async move {
            let _ = admin_stop.wait_for(|stopped| *stopped).await;
        }));

        let limits = control.limits();
        let settings = server::Settings {
            header_read_timeout: limits.header_read_timeout,
            max_headers: limits.max_headers,
            max_head_bytes: limits.max_header_bytes.max(8192),
            idle_timeout: limits.idle_timeout,
            client_keep_alive: limits.client_keep_alive,
        };
        // Every connection holds a receiver until it closes: the sender learns when the
        // last one has.
        let (draining_sender, draining) = watch::channel(false);
        let (accepting_sender, accepting) = watch::channel(true);
        let mut accept_tasks = Vec::with_capacity(listeners.len());
        for (index, (listener, acceptor)) in listeners.into_iter().enumerate() {
            let slot = Arc::clone(&control.slots[index]);
            tracing::info!(%region, listener = %slot.load().listener, protocol = slot.load().protocol, address = %listener.local_addr()?, "edge listening");
            accept_tasks.push(tokio::spawn(accept_loop(
                listener,
                slot,
                Arc::clone(&control),
                acceptor,
                settings,
                draining.clone(),
                accepting.clone(),
            )));
        }
        drop(draining);
        shutdown.await;
        let _ = accepting_sender.send(false);
        for task in accept_tasks {
            let _ = task.await;
        }
        control.readiness.set(false);
        tracing::info!("edge draining");
        draining_sender.send_replace(true);
        if tokio::time::timeout(limits.drain_timeout, draining_sender.closed())
            .await
            .is_err()
        {
            tracing::warn!("drain timeout: closing the connections still open");
        }
        control.stop_health_checks().await;
        // The cache's disk writes and deletions still queued are done before the stop.
        if let Some(cache) = control.cache()
            && !cache.flush(limits.drain_timeout).await
        {
            tracing::warn!("cache: disk writes still queued at the stop are lost");
        }
        let _ = admin_stop_sender.send(true);
        let _ = admin_task.await;
        shield_task.abort();
        Ok(())
    }
}

/// Whether an accepted connection inherits `TCP_NODELAY` from its listener, as on Linux:
/// answers are small writes that must leave at once, and setting it on the listener saves a
/// system call per connection.
const NODELAY_INHERITED: bool = cfg!(target_os = "linux");

/// A listener on `address`, with `TCP_NODELAY` for its connections to inherit.
async fn bind_listener(address: SocketAddr) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(address).await?;
    socket2::SockRef::from(&listener).set_tcp_nodelay(true)?;
    Ok(listener)
}

/// Accepts connections on one listener until `accepting` turns false, then closes it.
async fn accept_loop(
    listener: TcpListener,
    slot: Arc<ArcSwap<Pipeline>>,
    control: Arc<Control>,
    acceptor: Option<TlsAcceptor>,
    settings: server::Settings,
    draining: server::Draining,
    mut accepting: watch::Receiver<bool>,
) {
    let limits = control.limits();
    let handshake_timeout = limits.header_read_timeout;
    // Each connection holds a permit until it closes; without one, the listener stops
    // accepting and new clients wait in the kernel's queue, as nginx's worker_connections.
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            () = async {
                let _ = accepting.wait_for(|accepting| !*accepting).await;
            } => return,
        };
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // The shield: past its connection limit, a client's new connection closes.
                let client_permit = match control.shield() {
                    None => None,
                    Some(shield) => match shield.connect(peer.ip()) {
                        Some(client_permit) => client_permit,
                        None => {
                            control.metrics.edge_error("connection_limited", "none", None);
                            drop(stream);
                            continue;
                        }
                    },
                };
                let permit = (permit, client_permit);
                if !NODELAY_INHERITED {
                    let _ = stream.set_nodelay(true);
                }
                control.metrics.connections.inc();
                control.metrics.connections_active.inc();
                let slot = Arc::clone(&slot);
                let control = Arc::clone(&control);
                // Taken now, before any shutdown signal, so that a connection still in its TLS
                // handshake when shutdown begins is drained too, and shutdown waits for it.
                let draining = draining.clone();
                match &acceptor {
                    None => serve_connection(Box::new(stream), false, (peer, None, None), slot, &control, settings, draining, permit),
                    Some(acceptor) => {
                        let acceptor = acceptor.clone();
                        tokio::spawn(async move {
                            // A client that never finishes its handshake is cut off like one
                            // that never finishes its headers.
                            match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                                Ok(Ok(tls)) => {
                                    let session = tls.get_ref().1;
                                    let http2 = session.alpn_protocol() == Some(b"h2");
                                    let agreed = tls::agreed(session);
                                    let certificate = tls::client_certificate(session);
                                    serve_connection(Box::new(tls), http2, (peer, agreed, certificate), slot, &control, settings, draining, permit);
                                }
                                Ok(Err(error)) => {
                                    tracing::debug!(%error, %peer, "TLS handshake failed");
                                    control.metrics.connections_active.dec();
                                }
                                Err(_) => {
                                    tracing::debug!(%peer, "TLS handshake timed out");
                                    control.metrics.connections_active.dec();
                                }
                            }
                        });
                    }
                }
            }
            () = async {
                // The guard `wait_for` returns must not live across the other branch's awaits.
                let _ = accepting.wait_for(|accepting| !*accepting).await;
            } => return,
        }
    }
}

/// Serves HTTP/1.1 or HTTP/2 on an accepted connection (plain or TLS) in its own task;
/// `http2` if ALPN chose it. Each request runs through the pipeline in force when it
/// arrives, so a reload applies to connections already open.
#[allow(clippy::too_many_arguments)]
fn serve_connection(
    stream: Box<dyn server::Stream>,
    http2: bool,
    peer: (
        SocketAddr,
        Option<(&'static str, &'static str)>,
        Option<http::HeaderValue>,
    ),
    slot: Arc<ArcSwap<Pipeline>>,
    control: &Control,
    settings: server::Settings,
    draining: server::Draining,
    // Held until the connection closes: the listener's connection slot and the client's.
    permit: impl Send + 'static,
) {
    let active = control.metrics.connections_active.clone();
    let http_metrics = control.metrics.http.clone();
    let (peer, agreed, certificate) = peer;
    let client = Arc::new(context::Peer {
        tls: agreed,
        client_certificate: certificate,
        ..context::Peer::new(peer)
    });
    let service = move |request| slot.load_full().handle(request, Arc::clone(&client));
    // The connection's future is built in an allocation of its own on the task's first
    // poll: spawned whole, its several kilobytes would be copied at each step of the
    // spawn (about 1,700 instructions of copies a connection, 1,100 net of the
    // allocation); this small future is copied instead, and the connection's is built
    // in its allocation (see `boxed.rs`).
    tokio::spawn(async move {
        let refused = crate::boxed::box_future_in_place(|| {
            server::serve(stream, http2, settings, service, draining)
        })
        .await;
        // A head the server refused before any rule saw it (400, 408, 414, 431; over
        // HTTP/2, 431 to each request with too many header fields) is counted as the
        // pipeline's refusals are, under the route `none`.
        if let Some(server::Refused { status, count }) = refused {
            for _ in 0..count {
                http_metrics.record("none", status.as_u16(), std::time::Duration::ZERO);
            }
            tracing::debug!(client = %peer, status = status.as_u16(), count, "request heads refused");
        }
        active.dec();
        drop(permit);
    });
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn accepted_connections_send_small_writes_at_once() {
        let listener = super::bind_listener("127.0.0.1:0".parse().expect("address"))
            .await
            .expect("listen");
        let address = listener.local_addr().expect("address");
        let _client = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        let (accepted, _) = listener.accept().await.expect("accept");
        if super::NODELAY_INHERITED {
            assert!(
                accepted.nodelay().expect("option"),
                "inherited from the listener"
            );
        }
    }
}
