//! A client of the components' admin APIs, for `securecart targets`, `securecart reload` and
//! `securecart dns test-record`.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

async fn call(
    admin: SocketAddr,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: String,
) -> anyhow::Result<serde_json::Value> {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{admin}{path}"))
        .header("content-type", "application/json");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request.body(Full::new(Bytes::from(body)))?;
    let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
        .await
        .with_context(|| format!("the edge's admin API at {admin} did not answer in time"))?
        .with_context(|| format!("cannot reach the edge's admin API at {admin}"))?;
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    if !status.is_success() {
        let message = value["error"]["message"]
            .as_str()
            .unwrap_or("no reason given");
        anyhow::bail!("the edge at {admin} refused: {status}: {message}");
    }
    Ok(value)
}

/// GET on the admin API.
pub async fn get(admin: SocketAddr, path: &str) -> anyhow::Result<serde_json::Value> {
    call(admin, Method::GET, path, None, String::new()).await
}

/// POST on the admin API, with the token.
pub async fn post(
    admin: SocketAddr,
    path: &str,
    token: Option<&str>,
    body: String,
) -> anyhow::Result<serde_json::Value> {
    call(admin, Method::POST, path, token, body).await
}

/// GET a component's admin path as text (`/metrics`, say).
pub async fn get_text(admin: SocketAddr, path: &str) -> anyhow::Result<String> {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let request = Request::get(format!("http://{admin}{path}")).body(Full::new(Bytes::new()))?;
    let response = tokio::time::timeout(Duration::from_secs(5), client.request(request))
        .await
        .with_context(|| format!("{admin} did not answer in time"))?
        .with_context(|| format!("cannot reach {admin}"))?;
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
