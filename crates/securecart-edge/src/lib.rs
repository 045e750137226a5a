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
pub mod config;
pub mod context;
pub mod error;
pub mod forward;
pub mod guard;
pub mod health;
pub mod metrics;
pub mod pipeline;
pub mod rules;
pub mod tls;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::routing::get;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use prometheus_client::registry::Registry;
use securecart_telemetry::{AdminServer, MetricsRegistry, Readiness};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

pub use config::{
    EdgeConfig, HealthCheckConfig, Limits, ListenerConfig, TargetGroupConfig, UpstreamProtocol,
};
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
    /// The edge has no listener.
    #[error("an edge needs at least one listener")]
    NoListener,
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
    listeners: Vec<(TcpListener, Arc<Pipeline>, Option<TlsAcceptor>)>,
    admin: AdminServer,
    groups: Arc<[TargetGroup]>,
    metrics: EdgeMetrics,
    readiness: Readiness,
    limits: Limits,
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

fn compile_listener(
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
        let groups: Arc<[TargetGroup]> =
            config.target_groups.iter().map(TargetGroup::new).collect();
        let mut registry = Registry::with_prefix("securecart_edge");
        let metrics = EdgeMetrics::register(&mut registry);
        for group in groups.iter() {
            metrics.set_target_health(group);
        }
        let clients = upstream::UpstreamClients::new(config.limits.connect_timeout);
        let mut listeners = Vec::with_capacity(config.listeners.len());
        for listener_config in &config.listeners {
            let rules = compile_listener(listener_config, &groups)?;
            let acceptor = listener_config
                .tls
                .as_ref()
                .map(tls::acceptor)
                .transpose()
                .map_err(|source| StartError::Tls {
                    listener: listener_config.name.clone(),
                    source,
                })?;
            let listener = TcpListener::bind(listener_config.listen)
                .await
                .map_err(|source| StartError::Listen {
                    address: listener_config.listen,
                    source,
                })?;
            let listener_port = listener
                .local_addr()
                .map_or(listener_config.listen.port(), |address| address.port());
            let pipeline = Arc::new(Pipeline {
                region: config.region.clone(),
                listener: listener_config.name.clone(),
                listener_port,
                protocol: if acceptor.is_some() { "https" } else { "http" },
                rules,
                groups: Arc::clone(&groups),
                clients: clients.clone(),
                metrics: metrics.clone(),
                limits: config.limits.clone(),
                error_log: Default::default(),
            });
            listeners.push((listener, pipeline, acceptor));
        }
        let readiness = Readiness::default();
        let targets_groups = Arc::clone(&groups);
        let admin_routes = axum::Router::new().route(
            "/targets",
            get(move || {
                let groups = Arc::clone(&targets_groups);
                async move { Json(describe_target_health(&groups)) }
            }),
        );
        let admin = AdminServer::bind(
            config.admin,
            MetricsRegistry::new(registry),
            readiness.clone(),
            admin_routes,
        )
        .await
        .map_err(|source| StartError::Listen {
            address: config.admin,
            source,
        })?;
        Ok(Self {
            listeners,
            admin,
            groups,
            metrics,
            readiness,
            limits: config.limits,
            region: config.region,
        })
    }

    /// The address the first listener accepts on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listeners.first().map_or_else(
            || Err(std::io::Error::other("no listener")),
            |(listener, _, _)| listener.local_addr(),
        )
    }

    /// The addresses of every listener, in configuration order.
    pub fn listener_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|(listener, _, _)| listener.local_addr().ok())
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
            groups,
            metrics,
            readiness,
            limits,
            region,
        } = self;
        let (stop_sender, stop) = watch::channel(false);
        health::spawn_checkers(&groups, &metrics, &readiness, &stop);
        let mut admin_stop = stop.clone();
        let admin_task = tokio::spawn(admin.serve(async move {
            let _ = admin_stop.wait_for(|stopped| *stopped).await;
        }));

        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_headers(limits.max_headers)
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(256);
        let graceful = Arc::new(GracefulShutdown::new());
        let (accepting_sender, accepting) = watch::channel(true);
        let mut accept_tasks = Vec::with_capacity(listeners.len());
        for (listener, pipeline, acceptor) in listeners {
            tracing::info!(%region, listener = %pipeline.listener, protocol = pipeline.protocol, address = %listener.local_addr()?, "edge listening");
            accept_tasks.push(tokio::spawn(accept_loop(
                listener,
                pipeline,
                acceptor,
                builder.clone(),
                Arc::clone(&graceful),
                accepting.clone(),
            )));
        }
        shutdown.await;
        let _ = accepting_sender.send(false);
        for task in accept_tasks {
            let _ = task.await;
        }
        readiness.set(false);
        tracing::info!("edge draining");
        let graceful = Arc::try_unwrap(graceful).unwrap_or_else(|_| GracefulShutdown::new());
        if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("drain timeout: closing the connections still open");
        }
        let _ = stop_sender.send(true);
        let _ = admin_task.await;
        Ok(())
    }
}

/// Accepts connections on one listener until `accepting` turns false, then closes it.
async fn accept_loop(
    listener: TcpListener,
    pipeline: Arc<Pipeline>,
    acceptor: Option<TlsAcceptor>,
    builder: auto::Builder<TokioExecutor>,
    graceful: Arc<GracefulShutdown>,
    mut accepting: watch::Receiver<bool>,
) {
    loop {
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
                let _ = stream.set_nodelay(true);
                pipeline.metrics.connections.inc();
                pipeline.metrics.connections_active.inc();
                let pipeline = Arc::clone(&pipeline);
                let builder = builder.clone();
                let graceful = Arc::clone(&graceful);
                match &acceptor {
                    None => serve_connection(stream, peer, pipeline, &builder, &graceful),
                    Some(acceptor) => {
                        let acceptor = acceptor.clone();
                        tokio::spawn(async move {
                            // A client that never finishes its handshake is cut off like one
                            // that never finishes its headers.
                            let handshake = tokio::time::timeout(pipeline.limits.header_read_timeout, acceptor.accept(stream)).await;
                            match handshake {
                                Ok(Ok(tls)) => serve_connection(tls, peer, pipeline, &builder, &graceful),
                                Ok(Err(error)) => {
                                    tracing::debug!(%error, %peer, "TLS handshake failed");
                                    pipeline.metrics.connections_active.dec();
                                }
                                Err(_) => {
                                    tracing::debug!(%peer, "TLS handshake timed out");
                                    pipeline.metrics.connections_active.dec();
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

/// Serves HTTP/1.1 or HTTP/2 on an accepted connection (plain or TLS) in its own task.
fn serve_connection<IO>(
    io: IO,
    peer: SocketAddr,
    pipeline: Arc<Pipeline>,
    builder: &auto::Builder<TokioExecutor>,
    graceful: &GracefulShutdown,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let active = pipeline.metrics.connections_active.clone();
    let service = service_fn(move |request| Arc::clone(&pipeline).handle(request, peer));
    let connection = builder
        .serve_connection_with_upgrades(TokioIo::new(io), service)
        .into_owned();
    let connection = graceful.watch(connection);
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, %peer, "client connection ended with an error");
        }
        active.dec();
    });
}

/// The health of every target, like ALB's DescribeTargetHealth.
pub fn describe_target_health(groups: &[TargetGroup]) -> serde_json::Value {
    serde_json::json!({
        "target_groups": groups.iter().map(|group| serde_json::json!({
            "name": group.name,
            "healthy": group.healthy_count(),
            "targets": group.targets.iter().map(|target| serde_json::json!({
                "address": target.address.to_string(),
                "state": if target.is_healthy() { "healthy" } else { "unhealthy" },
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}
