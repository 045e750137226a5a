//! Health checks against a real server going down and coming back, one that hangs, a port
//! that listens again, the search window, calculated and disabled checks, and HTTPS checks
//! against a server with a self-signed certificate.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use securecart_dns::health::{HealthCheck, Probe};
use tokio::sync::watch;

async fn wait_for(state: &AtomicBool, wanted: bool) {
    for _ in 0..200 {
        if state.load(Ordering::Relaxed) == wanted {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the check never became {wanted}");
}

#[tokio::test]
async fn http_checks_follow_a_server_down_and_back_after_their_threshold() {
    let up = Arc::new(AtomicBool::new(true));
    let switch = Arc::clone(&up);
    let server = securecart_testkit::serve(
        "127.0.0.1",
        axum::Router::new().route(
            "/healthz",
            get(move || {
                let up = switch.load(Ordering::SeqCst);
                async move {
                    if up {
                        (StatusCode::OK, "status: ready")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "status: draining")
                    }
                }
            }),
        ),
    )
    .await;
    let (stop, stopped) = watch::channel(false);
    let check = |search: Option<&str>, inverted: bool| HealthCheck {
        name: "edge".to_owned(),
        probe: Probe::Http {
            address: server.address,
            tls: false,
            host: "shop.test".to_owned(),
            path: "/healthz".to_owned(),
            search: search.map(str::to_owned),
        },
        interval: Duration::from_millis(40),
        failure_threshold: 2,
        inverted,
        disabled: false,
    };
    let plain = Arc::new(AtomicBool::new(false));
    let searching = Arc::new(AtomicBool::new(false));
    let missing = Arc::new(AtomicBool::new(false));
    let inverted = Arc::new(AtomicBool::new(false));
    check(None, false).spawn(Arc::clone(&plain), stopped.clone());
    check(Some("ready"), false).spawn(Arc::clone(&searching), stopped.clone());
    check(Some("absent"), false).spawn(Arc::clone(&missing), stopped.clone());
    check(None, true).spawn(Arc::clone(&inverted), stopped.clone());
    // A calculated check: healthy while at least 2 of its 3 children are.
    let calculated = Arc::new(AtomicBool::new(false));
    HealthCheck {
        name: "two of three".to_owned(),
        probe: Probe::Calculated {
            children: vec![
                Arc::clone(&plain),
                Arc::clone(&searching),
                Arc::clone(&missing),
            ],
            threshold: 2,
        },
        interval: Duration::from_millis(40),
        failure_threshold: 1,
        inverted: false,
        disabled: false,
    }
    .spawn(Arc::clone(&calculated), stopped.clone());

    wait_for(&missing, false).await;
    wait_for(&inverted, false).await;
    assert!(plain.load(Ordering::Relaxed) && searching.load(Ordering::Relaxed));
    assert!(calculated.load(Ordering::Relaxed));

    // The server goes down: the checks fail after their threshold, the inverted one passes.
    up.store(false, Ordering::SeqCst);
    wait_for(&plain, false).await;
    wait_for(&searching, false).await;
    wait_for(&inverted, true).await;
    wait_for(&calculated, false).await;
    // And comes back.
    up.store(true, Ordering::SeqCst);
    wait_for(&plain, true).await;
    wait_for(&searching, true).await;
    wait_for(&inverted, false).await;
    wait_for(&calculated, true).await;

    // A server that is gone fails a TCP check too.
    let address = server.address;
    let tcp = Arc::new(AtomicBool::new(false));
    HealthCheck {
        name: "tcp".to_owned(),
        probe: Probe::Tcp { address },
        interval: Duration::from_millis(40),
        failure_threshold: 2,
        inverted: false,
        disabled: false,
    }
    .spawn(Arc::clone(&tcp), stopped.clone());
    server.stop().await;
    wait_for(&tcp, false).await;
    wait_for(&plain, false).await;
    stop.send(true).expect("stop");
}

/// A check of `probe` every 40 ms that changes its state after two results in a row.
fn every_40_ms(name: &str, probe: Probe) -> HealthCheck {
    HealthCheck {
        name: name.to_owned(),
        probe,
        interval: Duration::from_millis(40),
        failure_threshold: 2,
        inverted: false,
        disabled: false,
    }
}

/// An HTTP check of `/` at `address` for `search`.
fn searching(address: std::net::SocketAddr, search: &str) -> Probe {
    Probe::Http {
        address,
        tls: false,
        host: "shop.test".to_owned(),
        path: "/".to_owned(),
        search: Some(search.to_owned()),
    }
}

#[tokio::test]
async fn a_search_string_counts_only_within_the_first_5120_bytes() {
    // "needle" ends at byte 5,120 of one body and starts at byte 5,116 of the other, so
    // that only its first four bytes are inside the window.
    let body = |at: usize| format!("{}needle{}", "x".repeat(at), "y".repeat(100));
    let server = securecart_testkit::serve(
        "127.0.0.1",
        axum::Router::new()
            .route("/", get(move || async move { body(5_114) }))
            .route("/late", get(move || async move { body(5_116) })),
    )
    .await;
    let (stop, stopped) = watch::channel(false);
    let inside = Arc::new(AtomicBool::new(false));
    every_40_ms("inside", searching(server.address, "needle"))
        .resume(Arc::clone(&inside), stopped.clone());
    let past = Arc::new(AtomicBool::new(true));
    let mut late = searching(server.address, "needle");
    if let Probe::Http { path, .. } = &mut late {
        "/late".clone_into(path);
    }
    every_40_ms("past", late).resume(Arc::clone(&past), stopped.clone());
    wait_for(&inside, true).await;
    wait_for(&past, false).await;
    stop.send(true).expect("stop");
    server.stop().await;
}

/// On the runtime's paused clock, which moves only when every task waits: what it reads
/// is the time the check's timers saw, not how fast the machine ran.
#[tokio::test(start_paused = true)]
async fn an_endpoint_that_hangs_fails_its_probes_as_they_fall_due() {
    // It accepts connections and never answers.
    let (address, held) = securecart_testkit::silent("127.0.0.1").await;
    let (stop, stopped) = watch::channel(false);
    // Each probe would wait 2 s for the answer; the check gives it until the next is due,
    // and at least 1 s, so two failures in a row take 2 s rather than 4.
    let started = tokio::time::Instant::now();
    let state = Arc::new(AtomicBool::new(true));
    every_40_ms("hung", searching(address, "ready")).resume(Arc::clone(&state), stopped);
    while state.load(Ordering::Relaxed) {
        assert!(started.elapsed() < Duration::from_secs(60), "never failed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let failed_after = started.elapsed();
    assert!(
        failed_after < Duration::from_secs(3),
        "failed after {failed_after:?}"
    );
    stop.send(true).expect("stop");
    held.abort();
}

#[tokio::test]
async fn calculated_checks_follow_all_or_any_of_their_children_at_once() {
    let children: Vec<_> = (0..3).map(|_| Arc::new(AtomicBool::new(true))).collect();
    let (stop, stopped) = watch::channel(false);
    let calculated = |threshold: usize| {
        // An hour between probes, and ten in a row to change: a calculated check has
        // neither, and follows its children.
        let check = HealthCheck {
            name: format!("{threshold} of 3"),
            probe: Probe::Calculated {
                children: children.clone(),
                threshold,
            },
            interval: Duration::from_secs(3_600),
            failure_threshold: 10,
            inverted: false,
            disabled: false,
        };
        let state = Arc::new(AtomicBool::new(true));
        check.resume(Arc::clone(&state), stopped.clone());
        state
    };
    let all = calculated(3);
    let any = calculated(1);
    children[0].store(false, Ordering::Relaxed);
    wait_for(&all, false).await;
    assert!(any.load(Ordering::Relaxed));
    children[1].store(false, Ordering::Relaxed);
    children[2].store(false, Ordering::Relaxed);
    wait_for(&any, false).await;
    children[2].store(true, Ordering::Relaxed);
    wait_for(&any, true).await;
    assert!(!all.load(Ordering::Relaxed));
    for child in &children {
        child.store(true, Ordering::Relaxed);
    }
    wait_for(&all, true).await;
    stop.send(true).expect("stop");
}

#[tokio::test]
async fn a_disabled_check_is_healthy_without_probing() {
    // Nothing listens there.
    let address = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address")
    };
    let (stop, stopped) = watch::channel(false);
    let state = Arc::new(AtomicBool::new(false));
    let mut check = every_40_ms("disabled", Probe::Tcp { address });
    check.disabled = true;
    check.clone().resume(Arc::clone(&state), stopped.clone());
    assert!(state.load(Ordering::Relaxed));
    // The same check enabled fails there, in the time the disabled one has stayed healthy.
    check.disabled = false;
    let enabled = Arc::new(AtomicBool::new(true));
    check.resume(Arc::clone(&enabled), stopped);
    wait_for(&enabled, false).await;
    // Had the disabled one probed too, it would have failed as soon, or a few probes on.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(state.load(Ordering::Relaxed));
    // Disabled and inverted: unhealthy, Route 53's way to take a record out by hand.
    let mut forced = every_40_ms("forced", Probe::Tcp { address });
    forced.disabled = true;
    forced.inverted = true;
    let out = Arc::new(AtomicBool::new(true));
    forced.resume(Arc::clone(&out), stop.subscribe());
    assert!(!out.load(Ordering::Relaxed));
    stop.send(true).expect("stop");
}

#[tokio::test]
async fn tcp_checks_pass_again_when_the_port_listens_again() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);
    let (stop, stopped) = watch::channel(false);
    let state = Arc::new(AtomicBool::new(true));
    every_40_ms("tcp", Probe::Tcp { address }).resume(Arc::clone(&state), stopped);
    wait_for(&state, false).await;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .expect("bind the same port again");
    let accepting = tokio::spawn(async move {
        while let Ok((connection, _)) = listener.accept().await {
            drop(connection);
        }
    });
    wait_for(&state, true).await;
    stop.send(true).expect("stop");
    accepting.abort();
}

/// As Route 53 evaluates an ALB alias: healthy while every target group meets its DNS
/// failover minimum, as the edge's `/targets` marks each (a group a reload removed, whose
/// targets drain, is not marked, and counts for nothing).
#[tokio::test]
async fn an_edge_alias_takes_its_health_from_the_edges_target_groups() {
    let checkout_healthy = Arc::new(AtomicBool::new(true));
    let flag = Arc::clone(&checkout_healthy);
    let edge_admin = securecart_testkit::serve(
        "127.0.0.1",
        axum::Router::new().route(
            "/targets",
            get(move || {
                let healthy = flag.load(Ordering::SeqCst);
                async move {
                    axum::Json(serde_json::json!({
                        "target_groups": [
                            { "name": "storefront", "healthy": 2, "dns_healthy": true, "targets": [] },
                            { "name": "checkout", "healthy": u8::from(healthy), "dns_healthy": healthy, "targets": [] },
                            { "name": "gone", "healthy": 0, "targets": [] },
                        ]
                    }))
                }
            }),
        ),
    )
    .await;
    let (stop, stopped) = watch::channel(false);
    let state = Arc::new(AtomicBool::new(false));
    HealthCheck {
        name: "edge-targets".to_owned(),
        probe: Probe::EdgeTargets {
            address: edge_admin.address,
        },
        interval: Duration::from_millis(40),
        failure_threshold: 2,
        inverted: false,
        disabled: false,
    }
    .spawn(Arc::clone(&state), stopped);
    wait_for(&state, true).await;
    // One group below its minimum, the storefront still healthy: the alias is unhealthy,
    // and DNS sends the region's clients to a region that can take their orders.
    checkout_healthy.store(false, Ordering::SeqCst);
    wait_for(&state, false).await;
    checkout_healthy.store(true, Ordering::SeqCst);
    wait_for(&state, true).await;
    stop.send(true).expect("stop");
}

/// Of a TLS server's sessions: how many completed their handshake, and how many the
/// client ended with `close_notify`.
#[derive(Default)]
struct Sessions {
    handshakes: std::sync::atomic::AtomicUsize,
    closed_cleanly: std::sync::atomic::AtomicUsize,
}

/// A TLS server with a self-signed certificate for `shop.test` that answers every
/// request with `status` and `body`, and how its sessions went.
async fn https_server(
    status: &'static str,
    body: &'static str,
) -> (std::net::SocketAddr, Arc<Sessions>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let generated =
        rcgen::generate_simple_self_signed(vec!["shop.test".to_owned()]).expect("certificate");
    let certificate = generated.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::try_from(generated.signing_key.serialize_der())
        .expect("key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(vec![certificate], key)
    .expect("config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let sessions = Arc::new(Sessions::default());
    let counted = Arc::clone(&sessions);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let counted = Arc::clone(&counted);
            tokio::spawn(async move {
                let Ok(mut stream) = acceptor.accept(stream).await else {
                    return;
                };
                counted.handshakes.fetch_add(1, Ordering::SeqCst);
                let mut head = Vec::new();
                let mut buffer = [0u8; 1024];
                while !head.windows(4).any(|end| end == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => head.extend_from_slice(&buffer[..read]),
                    }
                }
                let answer = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
                let _ = stream.shutdown().await;
                // A read ends without an error only at the client's `close_notify`.
                if matches!(stream.read(&mut buffer).await, Ok(0)) {
                    counted.closed_cleanly.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    (address, sessions)
}

#[tokio::test]
async fn https_checks_pass_on_an_answer_over_tls_whatever_the_certificate() {
    let (ready, sessions) = https_server("200 OK", "status: ready").await;
    let (failing, _) = https_server("503 Service Unavailable", "status: draining").await;
    let check = |address, tls, host: &str, search: Option<&str>| HealthCheck {
        name: "edge".to_owned(),
        probe: Probe::Http {
            address,
            tls,
            host: host.to_owned(),
            path: "/healthz".to_owned(),
            search: search.map(str::to_owned),
        },
        interval: Duration::from_millis(40),
        failure_threshold: 1,
        inverted: false,
        disabled: false,
    };
    // A self-signed certificate, with the server's name or its address: healthy.
    assert!(check(ready, true, "shop.test", None).probe().await);
    assert!(check(ready, true, "127.0.0.1", Some("ready")).probe().await);
    assert!(
        !check(ready, true, "shop.test", Some("absent"))
            .probe()
            .await
    );
    assert_eq!(sessions.handshakes.load(Ordering::SeqCst), 3);
    // Each check ended its session with `close_notify`, not a bare close.
    for _ in 0..100 {
        if sessions.closed_cleanly.load(Ordering::SeqCst) == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sessions.closed_cleanly.load(Ordering::SeqCst), 3);
    // Also when the check stops reading at its 5,120 bytes of a longer answer.
    let long: &'static str = Box::leak(format!("status: ready{}", " ".repeat(65_536)).into());
    let (long, sessions) = https_server("200 OK", long).await;
    assert!(check(long, true, "shop.test", Some("ready")).probe().await);
    for _ in 0..100 {
        if sessions.closed_cleanly.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sessions.closed_cleanly.load(Ordering::SeqCst), 1);
    // An error status over TLS, and plain HTTP to a TLS server: unhealthy.
    assert!(!check(failing, true, "shop.test", None).probe().await);
    assert!(!check(ready, false, "shop.test", None).probe().await);
    // TLS to a server that speaks plain HTTP: unhealthy.
    let plain = securecart_testkit::serve(
        "127.0.0.1",
        axum::Router::new().route("/healthz", get(|| async { "status: ready" })),
    )
    .await;
    assert!(check(plain.address, false, "shop.test", None).probe().await);
    assert!(!check(plain.address, true, "shop.test", None).probe().await);
    plain.stop().await;
}
