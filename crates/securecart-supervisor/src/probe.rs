//! A health probe: `GET /healthz` on a component's admin address.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Whether the component at `admin` answers `/healthz` with 200 within `timeout`.
pub async fn probe_health(admin: SocketAddr, timeout: Duration) -> bool {
    let client: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(HttpConnector::new());
    let Ok(request) = Request::get(format!("http://{admin}/healthz")).body(Empty::new()) else {
        return false;
    };
    matches!(
        tokio::time::timeout(timeout, client.request(request)).await,
        Ok(Ok(response)) if response.status().is_success()
    )
}
