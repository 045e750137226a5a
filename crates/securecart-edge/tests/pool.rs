//! The connection pool to targets against a real HTTP/1.1 server that counts its
//! connections and closes idle ones: connections are reused, returned when a body ends, and
//! a request never fails on a connection the target closed while it was idle.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use securecart_edge::UpstreamProtocol;
use securecart_edge::pool::{PoolError, PoolSettings, Pools, TargetPool};
use securecart_edge::upstream;

/// A target answering `hello` (after `delay`), counting the connections it accepted, and
/// closing a connection idle for `idle_timeout`.
async fn start_target(delay: Duration, idle_timeout: Duration) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let service =
                    service_fn(move |_request: Request<hyper::body::Incoming>| async move {
                        tokio::time::sleep(delay).await;
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hello"))))
                    });
                // The keep-alive idle timeout: hyper's header read timeout also covers the
                // wait for the next request.
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(idle_timeout)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (address, accepted)
}

async fn get(pool: &Arc<TargetPool>) -> Result<String, PoolError> {
    get_within(pool, Duration::from_secs(30)).await
}

/// A GET whose answer's head must come within `timeout`.
async fn get_within(pool: &Arc<TargetPool>, timeout: Duration) -> Result<String, PoolError> {
    let request = Request::builder()
        .uri("/")
        .header("host", "target")
        .body(upstream::empty())
        .expect("request");
    let response = pool
        .send(request, tokio::time::Instant::now() + timeout)
        .await?;
    // Read to its end, the body gives its connection back.
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn sequential_requests_reuse_one_connection_and_concurrent_ones_open_more() {
    let (address, accepted) = start_target(Duration::ZERO, Duration::from_secs(30)).await;
    let pools = Pools::new(PoolSettings::default());
    // The pool lives as long as a target holds it, as a target group's targets do.
    let pool = pools.for_target(address, UpstreamProtocol::Http1, None);
    for _ in 0..20 {
        assert_eq!(get(&pool).await.expect("answer"), "hello");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "one connection, reused");

    let (address, accepted) =
        start_target(Duration::from_millis(100), Duration::from_secs(30)).await;
    let pool = pools.for_target(address, UpstreamProtocol::Http1, None);
    let answers = concurrently(&pool, 4).await;
    assert!(answers.iter().all(|answer| answer == "hello"));
    assert_eq!(accepted.load(Ordering::SeqCst), 4, "four at once need four");
    assert_eq!(pool.idle_connections(), 4, "all four went back to the pool");
    // Later requests take them, and open none.
    concurrently(&pool, 4).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 4);
    // Two groups naming one target share its pool; HTTP/2 to it is another pool.
    assert!(Arc::ptr_eq(
        &pool,
        &pools.for_target(address, UpstreamProtocol::Http1, None)
    ));
    assert!(!Arc::ptr_eq(
        &pool,
        &pools.for_target(address, UpstreamProtocol::Http2, None)
    ));
}

async fn concurrently(pool: &Arc<TargetPool>, count: usize) -> Vec<String> {
    let mut tasks = Vec::new();
    for _ in 0..count {
        let pool = Arc::clone(pool);
        tasks.push(tokio::spawn(async move { get(&pool).await }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.expect("task").expect("answer"));
    }
    answers
}

#[tokio::test]
async fn a_request_never_fails_on_a_connection_the_target_closed_while_idle() {
    let (address, accepted) = start_target(Duration::ZERO, Duration::from_millis(100)).await;
    let pools = Pools::new(PoolSettings::default());
    let pool = pools.for_target(address, UpstreamProtocol::Http1, None);
    for round in 1..=3 {
        assert_eq!(get(&pool).await.expect("answer"), "hello");
        // The target closes the idle connection; the next request opens another.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(accepted.load(Ordering::SeqCst), round);
    }
}

#[tokio::test]
async fn a_body_abandoned_half_read_closes_its_connection() {
    let (address, accepted) = start_target(Duration::ZERO, Duration::from_secs(30)).await;
    let pools = Pools::new(PoolSettings::default());
    let pool = pools.for_target(address, UpstreamProtocol::Http1, None);
    let request = Request::builder()
        .uri("/")
        .header("host", "target")
        .body(upstream::empty())
        .expect("request");
    let response = pool
        .send(
            request,
            tokio::time::Instant::now() + Duration::from_secs(30),
        )
        .await
        .expect("answer");
    // The body is dropped unread, as when a client goes away.
    drop(response);
    assert_eq!(pool.idle_connections(), 0);
    assert_eq!(get(&pool).await.expect("answer"), "hello");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_target_that_refuses_connections_is_a_connect_error() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address")
    };
    let pools = Pools::new(PoolSettings::default());
    let pool = pools.for_target(closed, UpstreamProtocol::Http1, None);
    assert!(matches!(get(&pool).await, Err(PoolError::Connect(_))));
}

/// Each request on a pooled connection gets its whole timeout from when it is sent, however
/// long the connection has carried others: the connection's one timer (see the edge's
/// `timer.rs`) moves to each later deadline when it fires before it, and to an earlier one
/// at once. A target that answers too late times the request out, and its connection is
/// not reused.
#[tokio::test]
async fn each_request_on_a_pooled_connection_gets_its_whole_timeout() {
    let (address, accepted) =
        start_target(Duration::from_millis(400), Duration::from_secs(30)).await;
    let pools = Pools::new(PoolSettings::default());
    let pool = pools.for_target(address, UpstreamProtocol::Http1, None);
    // Six answers 400 ms after their requests, each given 700 ms: 2.4 s in all on one
    // connection, whose timer, still at the deadline before, fires 300 ms into each wait
    // but the first.
    for request in 0..6 {
        let answer = get_within(&pool, Duration::from_millis(700)).await;
        assert_eq!(answer.expect("answer"), "hello", "request {request}");
    }
    // One given 3 s leaves the timer 2.6 s ahead; the next, given 100 ms, needs it
    // brought back, or the answer would come (at 400 ms) before the timer fires.
    assert_eq!(
        get_within(&pool, Duration::from_secs(3))
            .await
            .expect("answer"),
        "hello"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "one connection, reused");
    let answer = get_within(&pool, Duration::from_millis(100)).await;
    assert!(matches!(answer, Err(PoolError::Timeout)), "{answer:?}");
    // The timed-out connection is not reused: the next request opens another.
    assert_eq!(get(&pool).await.expect("answer"), "hello");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}
