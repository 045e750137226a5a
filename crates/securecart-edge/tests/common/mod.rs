//! What the edge's integration tests share: an edge bound and served in a task of the
//! test, and stopped like a process that gets SIGTERM.

// Each test binary includes this module and uses only part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use securecart_edge::{Control, Edge, EdgeConfig};
use tokio::sync::oneshot;

/// An edge serving in the background.
pub struct RunningEdge {
    /// Its first listener, as `scheme://address`.
    pub url: String,
    /// Its admin address.
    pub admin: SocketAddr,
    /// Its control plane.
    pub control: Arc<Control>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningEdge {
    /// Binds `config` and serves it; `scheme` (`http` or `https`) prefixes `url`.
    pub async fn start(config: EdgeConfig, scheme: &str) -> Self {
        let edge = Edge::bind(config).await.expect("edge binds");
        let url = format!("{scheme}://{}", edge.local_addr().expect("address"));
        let admin = edge.admin_addr().expect("admin address");
        let control = edge.control();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(edge.serve(async move {
            let _ = stopped.await;
        }));
        Self {
            url,
            admin,
            control,
            stop: Some(stop),
            task,
        }
    }

    /// Shuts the edge down (it drains) and waits for it, at most 10 s.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.task).await;
    }
}
