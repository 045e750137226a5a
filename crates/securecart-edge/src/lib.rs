//! The SecureCart edge: the public entry of a region. It accepts HTTP/1.1 and HTTP/2
//! (cleartext, prior knowledge) from clients and forwards each request through one
//! [`pipeline`] of stages to a target group of service replicas.
//!
//! **API boundary:** an edge is built from an [`EdgeConfig`]: addresses, path rules, target
//! groups with target addresses. It knows nothing of topology files or of what the targets
//! serve.

pub mod balancer;
pub mod config;
pub mod context;
pub mod error;
pub mod forward;
pub mod health;
pub mod metrics;
pub mod pipeline;
pub mod router;
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

pub use config::{EdgeConfig, HealthCheckConfig, Limits, RouteConfig, TargetGroupConfig};
pub use error::EdgeError;

use balancer::TargetGroup;
use metrics::EdgeMetrics;
use pipeline::Pipeline;
use router::PathRouter;

/// Why an edge could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A route names a target group that does not exist.
    #[error("route {prefix} names target group {group}, which does not exist")]
    UnknownTargetGroup {
        /// The route's prefix.
        prefix: String,
        /// The missing group.
        group: String,
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
#[derive(Debug)]
pub struct Edge {
    listener: TcpListener,
    admin: AdminServer,
    pipeline: Arc<Pipeline>,
    readiness: Readiness,
}

impl Edge {
    /// Compiles the configuration and binds the listener and the admin address.
    pub async fn bind(config: EdgeConfig) -> Result<Self, StartError> {
        let groups: Arc<[TargetGroup]> =
            config.target_groups.iter().map(TargetGroup::new).collect();
        let mut rules = Vec::with_capacity(config.routes.len());
        for route in &config.routes {
            let index = groups
                .iter()
                .position(|group| group.name == route.target_group)
                .ok_or_else(|| StartError::UnknownTargetGroup {
                    prefix: route.path_prefix.clone(),
                    group: route.target_group.clone(),
                })?;
            rules.push((route.path_prefix.clone(), index));
        }
        let mut registry = Registry::with_prefix("securecart_edge");
        let metrics = EdgeMetrics::register(&mut registry);
        for group in groups.iter() {
            metrics.set_target_health(group);
        }
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Listen {
                    address: config.listen,
                    source,
                })?;
        let listener_port = listener
            .local_addr()
            .map_or(config.listen.port(), |address| address.port());
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
        let pipeline = Arc::new(Pipeline {
            region: config.region,
            listener_port,
            router: PathRouter::new(rules),
            groups,
            client: upstream::client(config.limits.connect_timeout),
            metrics,
            limits: config.limits,
        });
        Ok(Self {
            listener,
            admin,
            pipeline,
            readiness,
        })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
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
            listener,
            admin,
            pipeline,
            readiness,
        } = self;
        let (stop_sender, stop) = watch::channel(false);
        health::spawn_checkers(&pipeline.groups, &pipeline.metrics, &readiness, &stop);
        let mut admin_stop = stop.clone();
        let admin_task = tokio::spawn(admin.serve(async move {
            let _ = admin_stop.wait_for(|stopped| *stopped).await;
        }));
        tracing::info!(region = %pipeline.region, listen = %listener.local_addr()?, "edge serving");

        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(pipeline.limits.header_read_timeout)
            .max_headers(pipeline.limits.max_headers)
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(256);
        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);
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
                    let request_pipeline = Arc::clone(&pipeline);
                    let service = service_fn(move |request| Arc::clone(&request_pipeline).handle(request, peer));
                    let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                    let connection = graceful.watch(connection);
                    let active = pipeline.metrics.connections_active.clone();
                    tokio::spawn(async move {
                        if let Err(error) = connection.await {
                            tracing::debug!(%error, %peer, "client connection ended with an error");
                        }
                        active.dec();
                    });
                }
                () = &mut shutdown => break,
            }
        }
        drop(listener);
        readiness.set(false);
        tracing::info!("edge draining");
        if tokio::time::timeout(pipeline.limits.drain_timeout, graceful.shutdown())
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
