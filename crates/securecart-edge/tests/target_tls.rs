//! HTTPS target groups (ALB's): the edge speaks TLS to its targets, HTTP/1.1 or HTTP/2 as
//! ALPN agrees, with their certificates checked against the group's roots or not at all,
//! pooled connections reused, and health checks over TLS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::Extension;
use axum::routing::get;
use securecart_edge::config::CheckProtocol;
use securecart_edge::target_tls::{TargetTls, TargetVerify, roots_from_pem};
use securecart_edge::tls::{CertificatePem, self_signed};
use securecart_edge::{HealthCheckConfig, UpstreamProtocol};
use securecart_testkit::{TestClient, TlsSession, TlsTestServer, serve, serve_tls};

mod common;
use common::{RunningEdge, one_listener};

/// A target over TLS that says what its session agreed.
async fn tls_target(names: &[&str]) -> (TlsTestServer, CertificatePem) {
    let certificate = self_signed(
        &names
            .iter()
            .map(|name| (*name).to_owned())
            .collect::<Vec<_>>(),
    )
    .expect("certificate");
    let router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/whoami",
            get(
                |Extension(tls): Extension<TlsSession>, request: axum::extract::Request| async move {
                    format!(
                        "sni={} alpn={} version={:?}",
                        tls.server_name.as_deref().unwrap_or("-"),
                        tls.alpn.as_deref().unwrap_or("-"),
                        request.version()
                    )
                },
            ),
        );
    let server = serve_tls("127.0.0.1", router, &certificate.chain, &certificate.key).await;
    (server, certificate)
}

/// Checks every 30 s: once at the start, so that a test can count the connections.
fn slow_health_check() -> HealthCheckConfig {
    HealthCheckConfig {
        interval: Duration::from_secs(30),
        timeout: Duration::from_secs(2),
        unhealthy_threshold: 1,
        ..common::quick_health_check()
    }
}

/// TLS with no SNI that accepts any certificate.
fn any_certificate() -> TargetTls {
    TargetTls::new(None, TargetVerify::Any).expect("tls")
}

/// Asserts the careless target's own answer.
fn assert_ok(reply: &securecart_testkit::Reply) {
    assert_eq!(
        (reply.status.as_u16(), reply.text()),
        (200, "ok".to_owned())
    );
}

fn trusting(certificate: &CertificatePem) -> TargetVerify {
    TargetVerify::Roots(Arc::new(
        roots_from_pem("test", &certificate.chain).expect("roots"),
    ))
}

async fn targets(edge: &RunningEdge) -> serde_json::Value {
    TestClient::http1()
        .get(&format!("http://{}/targets", edge.admin))
        .await
        .json()
}

/// Waits until the first group's first target is in `state`, and returns it.
async fn wait_for_state(edge: &RunningEdge, state: &str) -> serde_json::Value {
    for _ in 0..100 {
        let target = targets(edge).await["target_groups"][0]["targets"][0].clone();
        if target["state"] == state {
            return target;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never saw the target {state}: {}", targets(edge).await);
}

async fn edge_of(
    target: SocketAddr,
    protocol: UpstreamProtocol,
    tls: TargetTls,
    health_check: HealthCheckConfig,
) -> RunningEdge {
    let mut config = one_listener("secure", vec![target]);
    let group = &mut config.target_groups[0];
    group.protocol = protocol;
    group.tls = Some(tls);
    group.health_check = health_check;
    RunningEdge::start(config, "http").await
}

#[tokio::test]
async fn an_https_group_checks_its_targets_certificates_and_reuses_its_connections() {
    let (target, certificate) = tls_target(&["origin.example"]).await;
    let tls = TargetTls::new(Some("origin.example"), trusting(&certificate)).expect("tls");
    let edge = edge_of(
        target.address,
        UpstreamProtocol::Http1,
        tls,
        slow_health_check(),
    )
    .await;
    // The health check went over TLS, and passed.
    wait_for_state(&edge, "healthy").await;
    assert_eq!(target.connections.load(Ordering::SeqCst), 1);

    let mut client = TestClient::http1();
    for _ in 0..5 {
        let reply = client.get(&format!("{}/whoami", edge.url)).await;
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.text(),
            "sni=origin.example alpn=http/1.1 version=HTTP/1.1"
        );
    }
    // Five requests, one pooled TLS connection.
    assert_eq!(target.connections.load(Ordering::SeqCst), 2);
    edge.shutdown().await;
}

#[tokio::test]
async fn a_certificate_the_group_does_not_trust_fails_its_checks_and_its_requests() {
    let (target, _) = tls_target(&["origin.example"]).await;
    let other = self_signed(&["origin.example".to_owned()]).expect("certificate");
    // A certificate that chains to another root.
    let tls = TargetTls::new(Some("origin.example"), trusting(&other)).expect("tls");
    let edge = edge_of(
        target.address,
        UpstreamProtocol::Http1,
        tls,
        common::quick_health_check(),
    )
    .await;
    let unhealthy = wait_for_state(&edge, "unhealthy").await;
    assert_eq!(unhealthy["reason"], "Target.FailedHealthChecks");
    // With every target unhealthy the group fails open, and the handshake fails: 502.
    let reply = TestClient::http1()
        .get(&format!("{}/whoami", edge.url))
        .await;
    assert_eq!(reply.status, 502);
    assert_eq!(target.connections.load(Ordering::SeqCst), 0);
    edge.shutdown().await;

    // A trusted certificate for another name fails the same way.
    let (target, certificate) = tls_target(&["origin.example"]).await;
    let tls = TargetTls::new(Some("elsewhere.example"), trusting(&certificate)).expect("tls");
    let edge = edge_of(
        target.address,
        UpstreamProtocol::Http1,
        tls,
        common::quick_health_check(),
    )
    .await;
    wait_for_state(&edge, "unhealthy").await;
    let reply = TestClient::http1()
        .get(&format!("{}/whoami", edge.url))
        .await;
    assert_eq!(reply.status, 502);
    edge.shutdown().await;
}

#[tokio::test]
async fn a_group_that_verifies_nothing_reaches_a_self_signed_target_by_address_over_http2() {
    let (target, _) = tls_target(&["origin.example"]).await;
    // No name: no SNI. Any certificate: ALB's way with its targets.
    let tls = any_certificate();
    let edge = edge_of(
        target.address,
        UpstreamProtocol::Http2,
        tls,
        common::quick_health_check(),
    )
    .await;
    wait_for_state(&edge, "healthy").await;
    let mut client = TestClient::http1();
    for _ in 0..3 {
        let reply = client.get(&format!("{}/whoami", edge.url)).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), "sni=- alpn=h2 version=HTTP/2.0");
    }
    edge.shutdown().await;
}

#[tokio::test]
async fn health_checks_speak_the_protocol_they_are_given_on_their_port() {
    // An HTTPS group whose checks ask a plain HTTP port.
    let (target, _) = tls_target(&["origin.example"]).await;
    let plain = serve(
        "127.0.0.1",
        Router::new().route("/healthz", get(|| async { "ok" })),
    )
    .await;
    let tls = any_certificate();
    let edge = edge_of(
        target.address,
        UpstreamProtocol::Http1,
        tls.clone(),
        HealthCheckConfig {
            protocol: Some(CheckProtocol::Http),
            port: Some(plain.address.port()),
            ..slow_health_check()
        },
    )
    .await;
    wait_for_state(&edge, "healthy").await;
    assert_eq!(target.connections.load(Ordering::SeqCst), 0);
    edge.shutdown().await;

    // Checked with HTTP on the TLS port, it fails.
    let edge = edge_of(
        target.address,
        UpstreamProtocol::Http1,
        tls,
        HealthCheckConfig {
            protocol: Some(CheckProtocol::Http),
            ..common::quick_health_check()
        },
    )
    .await;
    wait_for_state(&edge, "unhealthy").await;
    edge.shutdown().await;

    // A plain HTTP group whose checks go over TLS (accepting any certificate) to another
    // port.
    let mut config = one_listener("plain", vec![plain.address]);
    config.target_groups[0].health_check = HealthCheckConfig {
        protocol: Some(CheckProtocol::Https),
        port: Some(target.address.port()),
        ..slow_health_check()
    };
    let edge = RunningEdge::start(config, "http").await;
    wait_for_state(&edge, "healthy").await;
    assert_eq!(target.connections.load(Ordering::SeqCst), 1);
    edge.shutdown().await;
}

#[tokio::test]
async fn a_reload_with_the_same_tls_settings_keeps_the_targets_and_their_health() {
    let (target, certificate) = tls_target(&["origin.example"]).await;
    let tls = TargetTls::new(Some("origin.example"), trusting(&certificate)).expect("tls");
    let edge = edge_of(
        target.address,
        UpstreamProtocol::Http1,
        tls,
        slow_health_check(),
    )
    .await;
    wait_for_state(&edge, "healthy").await;
    let mut client = TestClient::http1();
    assert_eq!(
        client.get(&format!("{}/whoami", edge.url)).await.status,
        200
    );
    // The same settings, read again (roots parsed anew): the target stays as it was, its
    // pooled connection with it.
    let mut config = one_listener("secure", vec![target.address]);
    let group = &mut config.target_groups[0];
    group.tls = Some(TargetTls::new(Some("origin.example"), trusting(&certificate)).expect("tls"));
    group.health_check = slow_health_check();
    edge.control.apply(config).await.expect("reload");
    assert_eq!(
        targets(&edge).await["target_groups"][0]["targets"][0]["state"],
        "healthy"
    );
    // The reloaded group's checker asks at once, on a connection of its own.
    for _ in 0..100 {
        if target.connections.load(Ordering::SeqCst) == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(target.connections.load(Ordering::SeqCst), 3);
    assert_eq!(
        client.get(&format!("{}/whoami", edge.url)).await.status,
        200
    );
    assert_eq!(target.connections.load(Ordering::SeqCst), 3);
    edge.shutdown().await;
}

/// How a target's TLS connections ended: with the edge's `close_notify`, or cut off.
#[derive(Default)]
struct Ends {
    clean: std::sync::atomic::AtomicUsize,
    cut: std::sync::atomic::AtomicUsize,
}

/// A TLS target that offers no ALPN and answers every request with `ok`, followed, in a
/// TLS record of its own sent with the answer, by `extra` (bytes no request asked for)
/// and, with `close_notify`, by its `close_notify` (with the TCP connection left open).
/// Counts its connections, and how they ended.
async fn careless_tls_target(
    extra: &'static [u8],
    close_notify: bool,
) -> (
    SocketAddr,
    Arc<std::sync::atomic::AtomicUsize>,
    Arc<Ends>,
    tokio::task::JoinHandle<()>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let certificate = self_signed(&["origin.example".to_owned()]).expect("certificate");
    let acceptor = tokio_rustls::TlsAcceptor::from(securecart_testkit::tls_server_config(
        &certificate.chain,
        &certificate.key,
        &[],
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&connections);
    let ends = Arc::new(Ends::default());
    let ended = Arc::clone(&ends);
    let task = tokio::spawn(async move {
        let mut served = tokio::task::JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            counted.fetch_add(1, Ordering::SeqCst);
            let ended = Arc::clone(&ended);
            served.spawn(async move {
                let Ok(mut stream) = acceptor.accept(stream).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                loop {
                    // tokio-rustls reads the end of a session that sent `close_notify`
                    // as 0 bytes, and a TCP close without it as an unexpected end.
                    let read = match stream.read(&mut buffer).await {
                        Ok(0) => {
                            ended.clean.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                        Ok(read) => read,
                        Err(_) => {
                            ended.cut.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    };
                    request.extend_from_slice(&buffer[..read]);
                    while let Some(end) =
                        request.windows(4).position(|window| window == b"\r\n\r\n")
                    {
                        request.drain(..end + 4);
                        // Two records, sent with one flush: both reach the edge at once.
                        {
                            let (_, session) = stream.get_mut();
                            let mut writer = session.writer();
                            let _ = std::io::Write::write_all(
                                &mut writer,
                                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                            );
                            if !extra.is_empty() {
                                let _ = std::io::Write::write_all(&mut writer, extra);
                            }
                            if close_notify {
                                session.send_close_notify();
                            }
                        }
                        if stream.flush().await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (address, connections, ends, task)
}

/// An edge whose group speaks HTTP/1.1 over TLS to `target`, checking no certificate,
/// once its first check (the only one for 30 s) has passed.
async fn healthy_edge_of(target: SocketAddr) -> RunningEdge {
    let edge = edge_of(
        target,
        UpstreamProtocol::Http1,
        any_certificate(),
        slow_health_check(),
    )
    .await;
    wait_for_state(&edge, "healthy").await;
    edge
}

#[tokio::test]
async fn a_tls_connection_with_bytes_past_its_answer_is_not_pooled() {
    let (address, connections, _, server) =
        careless_tls_target(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale", false).await;
    let edge = healthy_edge_of(address).await;
    let mut client = TestClient::http1();
    for _ in 0..3 {
        // Each answer is the target's answer to this request, never the bytes the last
        // one left in its TLS session.
        let reply = client.get(&format!("{}/whoami", edge.url)).await;
        assert_ok(&reply);
    }
    // The health check's connection, and one per request.
    assert_eq!(connections.load(Ordering::SeqCst), 1 + 3);
    edge.shutdown().await;
    server.abort();
}

#[tokio::test]
async fn a_tls_connection_whose_target_said_close_notify_is_not_pooled() {
    // The `close_notify` comes with the answer and the TCP connection stays open: only
    // the TLS session knows the target is done with it. A POST sent on it would get no
    // answer, and could not go again.
    let (address, connections, _, server) = careless_tls_target(b"", true).await;
    let edge = healthy_edge_of(address).await;
    let mut client = TestClient::http1();
    let reply = client.get(&format!("{}/whoami", edge.url)).await;
    assert_ok(&reply);
    let reply = client
        .post(&format!("{}/order", edge.url), &[], "one coat")
        .await;
    assert_ok(&reply);
    assert_eq!(connections.load(Ordering::SeqCst), 1 + 2);
    edge.shutdown().await;
    server.abort();
}

#[tokio::test]
async fn connections_the_edge_lets_go_end_with_close_notify() {
    let (address, connections, ends, server) = careless_tls_target(b"", false).await;
    // The health check's connection, let go after its answer.
    let edge = healthy_edge_of(address).await;
    let reply = TestClient::http1()
        .get(&format!("{}/whoami", edge.url))
        .await;
    assert_ok(&reply);
    // The request's, kept in the pool until the edge stops.
    edge.shutdown().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while ends.clean.load(Ordering::SeqCst) + ends.cut.load(Ordering::SeqCst)
        < connections.load(Ordering::SeqCst)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the edge still holds a connection"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(connections.load(Ordering::SeqCst), 2);
    assert_eq!(ends.cut.load(Ordering::SeqCst), 0, "a session was cut off");
    server.abort();
}

#[tokio::test]
async fn http2_over_tls_needs_the_target_to_agree_by_alpn() {
    let (address, _, _, server) = careless_tls_target(b"", false).await;
    let tls = any_certificate();
    let edge = edge_of(
        address,
        UpstreamProtocol::Http2,
        tls.clone(),
        common::quick_health_check(),
    )
    .await;
    wait_for_state(&edge, "unhealthy").await;
    let reply = TestClient::http1()
        .get(&format!("{}/whoami", edge.url))
        .await;
    assert_eq!(reply.status, 502);
    edge.shutdown().await;
    // HTTP/1.1 is what a target without ALPN speaks.
    let edge = edge_of(
        address,
        UpstreamProtocol::Http1,
        tls,
        common::quick_health_check(),
    )
    .await;
    wait_for_state(&edge, "healthy").await;
    let reply = TestClient::http1()
        .get(&format!("{}/whoami", edge.url))
        .await;
    assert_ok(&reply);
    edge.shutdown().await;
    server.abort();
}

#[tokio::test]
async fn uploads_reach_a_tls_target_whole_with_a_length_or_in_chunks() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let certificate = self_signed(&["origin.example".to_owned()]).expect("certificate");
    let router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/echo",
            axum::routing::post(|body: axum::body::Bytes| async move { body }),
        );
    let target = serve_tls("127.0.0.1", router, &certificate.chain, &certificate.key).await;
    let tls = any_certificate();
    let edge = edge_of(
        target.address,
        UpstreamProtocol::Http1,
        tls,
        slow_health_check(),
    )
    .await;
    wait_for_state(&edge, "healthy").await;
    // 200 KiB with a length: more than one TLS record, and more than a socket's buffer.
    let body = "0123456789abcdef".repeat(200 * 64);
    let reply = TestClient::http1()
        .post(&format!("{}/echo", edge.url), &[], &body)
        .await;
    assert_eq!(reply.status, 200);
    assert!(reply.text() == body, "the upload came back changed");
    // Chunked.
    let mut stream = tokio::net::TcpStream::connect(edge.url.trim_start_matches("http://"))
        .await
        .expect("connect");
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: shop.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n4\r\n0123\r\n6\r\n456789\r\n0\r\n\r\n")
        .await
        .expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("\r\n\r\n0123456789"), "{answer}");
    edge.shutdown().await;
}

#[test]
fn bad_tls_settings_are_refused_with_a_reason() {
    let error = TargetTls::new(Some("not a name"), TargetVerify::Any).expect_err("bad name");
    assert!(error.contains("not a server name"), "{error}");
    let error = roots_from_pem("ca.pem", b"nothing here").expect_err("no certificate");
    assert!(error.contains("ca.pem: holds no certificate"), "{error}");
}
