//! The edge's cache with a real origin that counts what reaches it: hits, revalidation
//! with 304, coalescing of concurrent misses, invalidation by unsafe methods, ranges, large
//! objects streaming through, stale answers while refreshing and when the origin fails,
//! behaviours by path, and the cache's metrics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use securecart_cache::{CachePolicy, Ttl};
use securecart_edge::{CacheBehavior, CacheConfig, TargetGroupConfig};
use securecart_testkit::{TestClient, TestServer, serve};

mod common;
use common::RunningEdge;

/// What reached the origin, and its switches.
#[derive(Clone, Default)]
struct Origin {
    requests: Arc<AtomicUsize>,
    conditional: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
    /// `/static/swr` answers with a body past the cache's object limit.
    oversized: Arc<AtomicBool>,
    /// A request for `/static/changing` came with a `Range`.
    ranged: Arc<AtomicBool>,
}

/// A line of a stylesheet, repeated to make a body worth compressing.
const PAGE_CSS: &str = ".product { color: teal; margin: 0 auto; }\n";

/// Counts a request that reached the origin; returns how many have.
fn count(origin: &Origin) -> usize {
    origin.requests.fetch_add(1, Ordering::SeqCst) + 1
}

async fn start_origin() -> (TestServer, Origin) {
    let origin = Origin::default();
    let router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/static/app.js",
            get(
                |State(origin): State<Origin>, headers: HeaderMap| async move {
                    count(&origin);
                    if headers
                        .get(header::IF_NONE_MATCH)
                        .is_some_and(|tag| tag == "\"v1\"")
                    {
                        origin.conditional.fetch_add(1, Ordering::SeqCst);
                        return (
                            StatusCode::NOT_MODIFIED,
                            [
                                (header::CACHE_CONTROL, "max-age=1"),
                                (header::ETAG, "\"v1\""),
                            ],
                        )
                            .into_response();
                    }
                    (
                        [
                            (header::CACHE_CONTROL, "max-age=1"),
                            (header::ETAG, "\"v1\""),
                            (header::CONTENT_TYPE, "text/javascript"),
                        ],
                        "console.log('hello')",
                    )
                        .into_response()
                },
            ),
        )
        .route(
            "/static/slow.css",
            get(|State(origin): State<Origin>| async move {
                count(&origin);
                tokio::time::sleep(Duration::from_millis(300)).await;
                (
                    [(header::CACHE_CONTROL, "max-age=60")],
                    "body { color: teal }",
                )
            }),
        )
        .route(
            "/static/item",
            get(|State(origin): State<Origin>| async move {
                let seen = count(&origin);
                (
                    [(header::CACHE_CONTROL, "max-age=60")],
                    format!("version {seen}"),
                )
            })
            .post(|State(origin): State<Origin>| async move {
                count(&origin);
                (
                    StatusCode::OK,
                    [(header::LOCATION, "/static/other")],
                    "changed",
                )
            }),
        )
        .route(
            "/static/other",
            get(|State(origin): State<Origin>| async move {
                let seen = count(&origin);
                (
                    [(header::CACHE_CONTROL, "max-age=60")],
                    format!("other {seen}"),
                )
            }),
        )
        .route(
            "/static/digits",
            get(|State(origin): State<Origin>| async move {
                count(&origin);
                ([(header::CACHE_CONTROL, "max-age=60")], "0123456789")
            }),
        )
        .route(
            "/static/big",
            get(|State(origin): State<Origin>| async move {
                count(&origin);
                (
                    [(header::CACHE_CONTROL, "max-age=60")],
                    "x".repeat(64 * 1024),
                )
            }),
        )
        .route(
            "/static/flaky",
            get(|State(origin): State<Origin>| async move {
                count(&origin);
                if origin.failing.load(Ordering::SeqCst) {
                    return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
                }
                (
                    [(header::CACHE_CONTROL, "max-age=1, stale-if-error=60")],
                    "still here",
                )
                    .into_response()
            }),
        )
        .route(
            "/static/slow-revalidation",
            get(
                |State(origin): State<Origin>, headers: HeaderMap| async move {
                    count(&origin);
                    let validators = [
                        (header::CACHE_CONTROL, "max-age=1"),
                        (header::ETAG, "\"s1\""),
                    ];
                    if headers.contains_key(header::IF_NONE_MATCH) {
                        origin.conditional.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        return (StatusCode::NOT_MODIFIED, validators).into_response();
                    }
                    (validators, "slowly checked").into_response()
                },
            ),
        )
        .route(
            "/static/changing",
            get(
                |State(origin): State<Origin>, headers: HeaderMap| async move {
                    // A new version each time, its second half 300 ms after its first; a
                    // range if one is asked.
                    let seen = count(&origin);
                    let tag = format!("\"c{seen}\"");
                    let text = format!("changed {seen}");
                    if headers.contains_key(header::RANGE) {
                        origin.ranged.store(true, Ordering::SeqCst);
                        return (
                            StatusCode::PARTIAL_CONTENT,
                            [
                                (header::CONTENT_RANGE, format!("bytes 0-3/{}", text.len())),
                                (header::ETAG, tag),
                            ],
                            text[..4].to_owned(),
                        )
                            .into_response();
                    }
                    let (first, second) = text.split_at(4);
                    axum::http::Response::builder()
                        // Two seconds: `Date` has whole seconds, so that a copy may be
                        // a second old as it arrives.
                        .header(header::CACHE_CONTROL, "max-age=2")
                        .header(header::ETAG, tag)
                        .body(axum::body::Body::new(Slow {
                            first: Some(bytes::Bytes::from(first.to_owned())),
                            later: Some((
                                Box::pin(tokio::time::sleep(Duration::from_millis(300))),
                                bytes::Bytes::from(second.to_owned()),
                            )),
                            length: text.len() as u64,
                        }))
                        .expect("response")
                },
            ),
        )
        .route(
            "/static/broken",
            get(|State(origin): State<Origin>| async move {
                count(&origin);
                axum::http::Response::builder()
                    .header(header::CACHE_CONTROL, "max-age=60")
                    .body(axum::body::Body::new(Breaking(false)))
                    .expect("response")
            }),
        )
        .route(
            "/static/swr",
            get(|State(origin): State<Origin>| async move {
                let seen = count(&origin);
                let body = if origin.oversized.load(Ordering::SeqCst) {
                    "x".repeat(64 * 1024)
                } else {
                    format!("version {seen}")
                };
                (
                    [(
                        header::CACHE_CONTROL,
                        "max-age=1, stale-while-revalidate=60",
                    )],
                    body,
                )
            }),
        )
        .route(
            "/static/page.css",
            get(|State(origin): State<Origin>| async move {
                count(&origin);
                (
                    [
                        (header::CACHE_CONTROL, "max-age=60"),
                        (header::CONTENT_TYPE, "text/css"),
                        (header::ETAG, "\"css1\""),
                    ],
                    PAGE_CSS.repeat(100),
                )
            }),
        )
        .route(
            "/static/private",
            get(|State(origin): State<Origin>| async move {
                count(&origin);
                (
                    [(header::CACHE_CONTROL, "private, max-age=60")],
                    "yours only",
                )
            }),
        )
        .route(
            "/api/cart",
            get(|State(origin): State<Origin>| async move {
                count(&origin);
                ([(header::CACHE_CONTROL, "max-age=60")], "a cart")
            }),
        )
        .with_state(origin.clone());
    (serve("127.0.0.1", router).await, origin)
}

/// An edge in front of `origin` that caches `/static/*` (objects up to 16 KiB) and
/// nothing else.
async fn start_edge(origin: SocketAddr) -> RunningEdge {
    start_edge_shielded(origin, None).await
}

/// The same edge, fetching its misses through the edge at `shield` first.
async fn start_edge_shielded(origin: SocketAddr, shield: Option<SocketAddr>) -> RunningEdge {
    start_edge_with(origin, shield, Ttl::default()).await
}

/// An edge whose `/static/*` behaviour ignores the client's own cache directives, as
/// CloudFront's do.
async fn start_edge_ignoring_clients(origin: SocketAddr) -> RunningEdge {
    let ttl = Ttl {
        honour_client: false,
        ..Ttl::default()
    };
    start_edge_with(origin, None, ttl).await
}

/// An edge in front of `origin` that caches `/static/*` (objects up to 16 KiB) with `ttl`,
/// through `shield` if given.
async fn start_edge_with(origin: SocketAddr, shield: Option<SocketAddr>, ttl: Ttl) -> RunningEdge {
    let mut config = common::one_listener("origin", vec![origin]);
    if let Some(shield) = shield {
        config.target_groups.push(TargetGroupConfig::new(
            "shield",
            vec![shield],
            common::quick_health_check(),
        ));
    }
    config.cache = Some(CacheConfig {
        capacity_bytes: 16 * 1024 * 1024,
        max_object_bytes: 16 * 1024,
        behaviors: vec![CacheBehavior {
            name: "static".to_owned(),
            path_pattern: "/static/*".to_owned(),
            policy: CachePolicy {
                ttl,
                ..CachePolicy::default()
            },
            origin_shield: shield.map(|_| "shield".to_owned()),
            origin_failover: None,
            response_headers: Vec::new(),
            remove_response_headers: Vec::new(),
        }],
        disk: None,
        error_responses: Vec::new(),
        peers: Vec::new(),
    });
    RunningEdge::start(config, "http").await
}

fn requests(origin: &Origin) -> usize {
    origin.requests.load(Ordering::SeqCst)
}

#[tokio::test]
async fn fresh_answers_come_from_the_cache_and_stale_ones_are_revalidated() {
    let (server, origin) = start_origin().await;
    let edge = start_edge(server.address).await;
    let mut client = TestClient::http1();
    let url = format!("{}/static/app.js", edge.url);

    let first = client.get(&url).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("x-cache"), Some("Miss"));
    assert_eq!(first.header("server-timing"), Some("cache;desc=miss"));
    let second = client.get(&url).await;
    assert_eq!(second.header("x-cache"), Some("Hit"));
    assert_eq!(second.header("server-timing"), Some("cache;desc=hit"));
    assert_eq!(second.text(), "console.log('hello')");
    assert_eq!(second.header("etag"), Some("\"v1\""));
    assert!(
        second.header("age").is_some(),
        "a stored answer says its age"
    );
    assert_eq!(requests(&origin), 1, "the hit did not reach the origin");

    // The client's own validators are answered by the cache.
    let not_modified = client
        .send(http::Method::GET, &url, &[("if-none-match", "\"v1\"")], "")
        .await;
    assert_eq!(not_modified.status, 304);
    assert_eq!(requests(&origin), 1);

    // Once stale (max-age=1), it is revalidated with its ETag and freshened by the 304.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let revalidated = client.get(&url).await;
    assert_eq!(revalidated.status, 200);
    assert_eq!(revalidated.header("x-cache"), Some("Revalidated"));
    assert_eq!(
        revalidated.header("server-timing"),
        Some("cache;desc=revalidated")
    );
    assert_eq!(revalidated.text(), "console.log('hello')");
    assert_eq!(origin.conditional.load(Ordering::SeqCst), 1);
    assert_eq!(client.get(&url).await.header("x-cache"), Some("Hit"));
    assert_eq!(requests(&origin), 2);

    // HEAD is answered from the stored GET, without a body.
    let head = client.send(http::Method::HEAD, &url, &[], "").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("x-cache"), Some("Hit"));

    edge.shutdown().await;
    server.stop().await;
}

#[tokio::test]
async fn concurrent_misses_for_one_object_make_one_origin_request() {
    let (server, origin) = start_origin().await;
    let edge = start_edge(server.address).await;
    let url = format!("{}/static/slow.css", edge.url);
    let clients: Vec<_> = (0..20)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { TestClient::http1().get(&url).await })
        })
        .collect();
    for client in clients {
        let reply = client.await.expect("client");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), "body { color: teal }");
    }
    assert_eq!(
        requests(&origin),
        1,
        "nineteen requests waited for the first"
    );

    let metrics = TestClient::http1()
        .get(&format!("http://{}/metrics", edge.admin))
        .await
        .text();
    let line = |result: &str| {
        format!("securecart_edge_cache_requests_total{{behavior=\"static\",result=\"{result}\"}}")
    };
    let value = |name: &str| {
        metrics
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert_eq!(value(&line("miss")), 1, "{metrics}");
    assert_eq!(value(&line("hit")), 19, "{metrics}");
    assert_eq!(
        value("securecart_edge_cache_coalesced_total{behavior=\"static\"}"),
        19,
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|line| line == "securecart_edge_cache_hit_ratio{behavior=\"static\"} 0.95"),
        "{metrics}"
    );
    edge.shutdown().await;
    server.stop().await;
}

/// Ten clients asking for `url` at once, each answered 200 with `text`.
async fn ten_at_once(url: &str, text: &str) {
    let clients: Vec<_> = (0..10)
        .map(|_| {
            let url = url.to_owned();
            tokio::spawn(async move { TestClient::http1().get(&url).await })
        })
        .collect();
    for client in clients {
        let reply = client.await.expect("client");
        assert_eq!(
            (reply.status.as_u16(), reply.text()),
            (200, text.to_owned())
        );
    }
}

#[tokio::test]
async fn concurrent_requests_for_a_stale_object_make_one_revalidation() {
    let (server, origin) = start_origin().await;
    let edge = start_edge(server.address).await;
    let url = format!("{}/static/slow-revalidation", edge.url);
    assert_eq!(TestClient::http1().get(&url).await.text(), "slowly checked");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    ten_at_once(&url, "slowly checked").await;
    assert_eq!(
        origin.conditional.load(Ordering::SeqCst),
        1,
        "nine requests waited for the first's revalidation"
    );
    edge.shutdown().await;
    server.stop().await;
}

/// A stale object that changed is fetched once for every request that came for it
/// meanwhile: they wait until the new version is stored, not only until its head came.
#[tokio::test]
async fn concurrent_requests_for_a_changed_object_make_one_fetch() {
    let (server, origin) = start_origin().await;
    let edge = start_edge(server.address).await;
    let url = format!("{}/static/changing", edge.url);
    assert_eq!(TestClient::http1().get(&url).await.text(), "changed 1");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    ten_at_once(&url, "changed 2").await;
    assert_eq!(
        requests(&origin),
        2,
        "nine requests waited for the first's fetch"
    );
    edge.shutdown().await;
    server.stop().await;
}

/// A ranged request for a stale object revalidates the object whole, and its own
/// `If-Range` is answered from what comes back: a new version gets it whole.
#[tokio::test]
async fn a_ranged_request_revalidates_the_whole_object() {
    let (server, origin) = start_origin().await;
    let edge = start_edge(server.address).await;
    let url = format!("{}/static/changing", edge.url);
    let mut client = TestClient::http1();
    let first = client.get(&url).await;
    assert_eq!(first.header("etag"), Some("\"c1\""));
    // The stored version answers a range of it.
    let part = client
        .send(
            http::Method::GET,
            &url,
            &[("range", "bytes=0-3"), ("if-range", "\"c1\"")],
            "",
        )
        .await;
    assert_eq!(
        (part.status.as_u16(), part.text()),
        (206, "chan".to_owned())
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // Stale now: the origin has a new version, so the client's If-Range fails.
    let whole = client
        .send(
            http::Method::GET,
            &url,
            &[("range", "bytes=0-3"), ("if-range", "\"c1\"")],
            "",
        )
        .await;
    assert_eq!(
        (whole.status.as_u16(), whole.text()),
        (200, "changed 2".to_owned())
    );
    assert!(
        !origin.ranged.load(Ordering::SeqCst),
        "the origin was asked a range"
    );
    // Stored whole: the next range is cut from it.
    let part = client
        .send(http::Method::GET, &url, &[("range", "bytes=0-3")], "")
        .await;
    assert_eq!(
        (part.status.as_u16(), part.text()),
        (206, "chan".to_owned())
    );
    assert_eq!(requests(&origin), 2);
    edge.shutdown().await;
    server.stop().await;
}

#[tokio::test]
async fn a_behaviour_may_ignore_what_clients_ask_of_the_cache() {
    let (server, origin) = start_origin().await;
    // RFC 9111's way: a client's `no-cache` goes to the origin.
    let edge = start_edge(server.address).await;
    let mut client = TestClient::http1();
    let url = format!("{}/static/digits", edge.url);
    assert_eq!(client.get(&url).await.header("x-cache"), Some("Miss"));
    let asked = client
        .send(
            http::Method::GET,
            &url,
            &[("cache-control", "no-cache")],
            "",
        )
        .await;
    assert_ne!(asked.header("x-cache"), Some("Hit"));
    assert_eq!(requests(&origin), 2);
    edge.shutdown().await;
    // CloudFront's way: it is a hit like any other.
    let edge = start_edge_ignoring_clients(server.address).await;
    let url = format!("{}/static/digits", edge.url);
    assert_eq!(client.get(&url).await.header("x-cache"), Some("Miss"));
    for directive in [("cache-control", "no-cache"), ("pragma", "no-cache")] {
        let asked = client.send(http::Method::GET, &url, &[directive], "").await;
        assert_eq!(asked.header("x-cache"), Some("Hit"), "{directive:?}");
    }
    assert_eq!(requests(&origin), 3);
    edge.shutdown().await;
    server.stop().await;
}

#[tokio::test]
async fn a_successful_unsafe_request_invalidates_its_uri_and_its_location() {
    let (server, origin) = start_origin().await;
    let edge = start_edge(server.address).await;
    let mut client = TestClient::http1();
    let item = format!("{}/static/item", edge.url);
    let other = format!("{}/static/other", edge.url);
    assert_eq!(client.get(&item).await.text(), "version 1");
    assert_eq!(client.get(&other).await.text(), "other 2");
    assert_eq!(client.get(&item).await.text(), "version 1");
    assert_eq!(client.get(&other).await.text(), "other 2");

    let changed = client.post(&item, &[], "new").await;
    assert_eq!(changed.status, 200);
    assert_eq!(client.get(&item).await.text(), "version 4");
    assert_eq!(client.get(&other).await.text(), "other 5");
    assert_eq!(requests(&origin), 5);
    edge.shutdown().await;
    server.stop().await;
}

#[tokio::test]
async fn ranges_are_cut_from_stored_objects() {
    let (server, origin) = start_origin().await;
    let edge = start_edge(server.address).await;
    let mut client = TestClient::http1();
    let url = format!("{}/static/digits", edge.url);
    assert_eq!(client.get(&url).await.text(), "0123456789");
    let part = client
        .send(http::Method::GET, &url, &[("range", "bytes=2-4")], "")
        .await;
    assert_eq!(part.status, 206);
    assert_eq!(part.text(), "234");
    assert_eq!(part.header("content-range"), Some("bytes 2-4/10"));
    let suffix = client
        .send(http::Method::GET, &url, &[("range", "bytes=-3")], "")
        .await;
    assert_eq!(suffix.text(), "789");
    let beyond = client
        .send(http::Method::GET, &url, &[("range", "bytes=20-")], "")
        .await;
    assert_eq!(beyond.status, 416);
    assert_eq!(beyond.header("content-range"), Some("bytes */10"));
    assert_eq!(requests(&origin), 1);
    edge.shutdown().await;
    server.stop().await;
}

#[tokio::test]
async fn a_range_asked_on_a_miss_is_cut_from_the_whole_object_fetched_and_stored() {
    let (server, origin) = start_origin().await;
    let edge = start_edge(server.address).await;
    let mut client = TestClient::http1();
    let url = format!("{}/static/digits", edge.url);
    let part = client
        .send(http::Method::GET, &url, &[("range", "bytes=2-4")], "")
        .await;
    assert_eq!(
        (part.status.as_u16(), part.text(), part.header("x-cache")),
        (206, "234".to_owned(), Some("Miss"))
    );
    assert_eq!(part.header("content-range"), Some("bytes 2-4/10"));
    let whole = client.get(&url).await;
    assert_eq!(
        (whole.text(), whole.header("x-cache")),
        ("0123456789".to_owned(), Some("Hit"))
    );
    assert_eq!(requests(&origin), 1);
    // An object too large to keep streams through, its range cut from it on the way.
    let big = client
        .send(
            http::Method::GET,
            &format!("{}/static/big", edge.url),
            &[("range", "bytes=10-19")],
            "",
        )
        .await;
    assert_eq!(
        (big.status.as_u16(), big.text(), big.header("content-range")),
        (206, "x".repeat(10), Some("bytes 10-19/65536"))
    );
    // An answer that breaks off mid-body is a 502, and nothing is kept of it: the next
    // request asks the origin again.
    let broken = format!("{}/static/broken", edge.url);
    let before = requests(&origin);
    for _ in 0..2 {
        let reply = client
            .send(http::Method::GET, &broken, &[("range", "bytes=0-4")], "")
            .await;
        assert_eq!(reply.status, 502);
        assert_eq!(reply.header("x-cache"), None, "not from the cache");
    }
    assert_eq!(requests(&origin) - before, 2);
    edge.shutdown().await;
    server.stop().await;
}

#[tokio::test]
async fn objects_over_the_size_limit_stream_through_unstored() {
    let (server, origin) = start_origin().await;
    let edge = start_edge(server.address).await;
    let mut client = TestClient::http1();
    let url = format!("{}/static/big", edge.url);
    for _ in 0..2 {
        let reply = client.get(&url).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body.len(), 64 * 1024);
        assert_eq!(reply.header("x-cache"), Some("Miss"));
    }
    assert_eq!(requests(&origin), 2);
    edge.shutdown().await;
    server.stop().await;
}

/// A body that says it has 100 bytes, sends 10, then fails (a disk error at the origin).
struct Breaking(bool);

impl http_body::Body for Breaking {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        if self.0 {
            return std::task::Poll::Ready(Some(Err(std::io::Error::other("the disk failed"))));
        }
        self.0 = true;
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(bytes::Bytes::from_static(
            b"0123456789",
        )))))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(100)
    }
}

/// A body of two parts, the second a while after the first (an origin slow to send).
struct Slow {
    first: Option<bytes::Bytes>,
    later: Option<(std::pin::Pin<Box<tokio::time::Sleep>>, bytes::Bytes)>,
    length: u64,
}

impl http_body::Body for Slow {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        if let Some(first) = self.first.take() {
            return std::task::Poll::Ready(Some(Ok(http_body::Frame::data(first))));
        }
        let Some((sleep, _)) = &mut self.later else {
            return std::task::Poll::Ready(None);
        };
        if sleep.as_mut().poll(context).is_pending() {
            return std::task::Poll::Pending;
        }
        let (_, data) = self.later.take().expect("the second part");
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(data))))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.length)
    }
}

/// Waits until `count` requests reached the origin.
async fn until_requests(origin: &Origin, count: usize) {
    for _ in 0..200 {
        if requests(origin) >= count {
            // And a moment for the answer to be stored, or not.
            tokio::time::sleep(Duration::from_millis(50)).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the origin saw {} requests, not {count}", requests(origin));
}

#[tokio::test]
async fn a_stale_copy_answers_within_stale_while_revalidate_and_is_refreshed_behind() {
    let (server, origin) = start_origin().await;
    let edge = start_edge(server.address).await;
    let mut client = TestClient::http1();
    let url = format!("{}/static/swr", edge.url);
    assert_eq!(client.get(&url).await.text(), "version 1");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Stale: answered at once, refreshed behind. The refresh's answer is past the object
    // limit, so it is not stored (nor read past the limit), and the stale copy stays.
    origin.oversized.store(true, Ordering::SeqCst);
    let stale = client.get(&url).await;
    assert_eq!(
        (stale.text(), stale.header("x-cache")),
        ("version 1".to_owned(), Some("Stale"))
    );
    until_requests(&origin, 2).await;
    let stale = client.get(&url).await;
    assert_eq!(
        (stale.text(), stale.header("x-cache")),
        ("version 1".to_owned(), Some("Stale"))
    );
    until_requests(&origin, 3).await;
    // A refresh the cache can keep replaces the stale copy (stored a moment after the
    // origin answered it: asked until then, each stale answer may refresh once more).
    origin.oversized.store(false, Ordering::SeqCst);
    assert_eq!(client.get(&url).await.text(), "version 1");
    until_requests(&origin, 4).await;
    let mut refreshed = None;
    for _ in 0..200 {
        let reply = client.get(&url).await;
        if reply.text() != "version 1" {
            refreshed = Some(reply);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let refreshed = refreshed.expect("the refreshed copy is stored");
    // Answered from the store: a hit, or (on a machine slow enough that its second of
    // freshness passed) stale again, but never the copy it replaced.
    assert!(
        matches!(refreshed.header("x-cache"), Some("Hit" | "Stale")),
        "{:?}",
        refreshed.header("x-cache")
    );
    let version: usize = refreshed
        .text()
        .strip_prefix("version ")
        .and_then(|version| version.parse().ok())
        .expect("a version");
    assert!(
        (4..=requests(&origin)).contains(&version),
        "version {version}"
    );
    edge.shutdown().await;
    server.stop().await;
}

#[tokio::test]
async fn a_behaviour_that_does_not_honour_the_origin_keeps_objects_for_its_own_ttl() {
    let (server, origin) = start_origin().await;
    let ttl = Ttl {
        honour_origin: false,
        default: Duration::from_secs(60),
        ..Ttl::default()
    };
    let edge = start_edge_with(server.address, None, ttl).await;
    let mut client = TestClient::http1();
    let url = format!("{}/static/app.js", edge.url);
    assert_eq!(client.get(&url).await.header("x-cache"), Some("Miss"));
    // Past the origin's `max-age=1`, within the behaviour's 60 s: still a hit, and not
    // revalidated.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let later = client.get(&url).await;
    assert_eq!(later.header("x-cache"), Some("Hit"));
    assert_eq!(later.text(), "console.log('hello')");
    assert_eq!(requests(&origin), 1);
    assert_eq!(origin.conditional.load(Ordering::SeqCst), 0);
    // `private` is still the origin's to say.
    let private = format!("{}/static/private", edge.url);
    client.get(&private).await;
    assert_eq!(client.get(&private).await.header("x-cache"), Some("Miss"));
    edge.shutdown().await;
    server.stop().await;
}

#[tokio::test]
async fn a_stale_copy_answers_while_the_origin_fails_within_stale_if_error() {
    let (server, origin) = start_origin().await;
    let edge = start_edge(server.address).await;
    let mut client = TestClient::http1();
    let url = format!("{}/static/flaky", edge.url);
    assert_eq!(client.get(&url).await.text(), "still here");
    origin.failing.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let stale = client.get(&url).await;
    assert_eq!(stale.status, 200);
    assert_eq!(stale.text(), "still here");
    assert_eq!(stale.header("x-cache"), Some("Stale"));
    assert_eq!(requests(&origin), 2, "the origin was asked, and failed");
    edge.shutdown().await;
    server.stop().await;
}

#[tokio::test]
async fn private_answers_and_paths_outside_the_behaviours_are_not_stored() {
    let (server, origin) = start_origin().await;
    let edge = start_edge(server.address).await;
    let mut client = TestClient::http1();
    for path in ["/static/private", "/api/cart"] {
        let url = format!("{}{path}", edge.url);
        let before = requests(&origin);
        client.get(&url).await;
        let again = client.get(&url).await;
        assert_eq!(again.status, 200);
        assert_eq!(
            requests(&origin),
            before + 2,
            "{path} reached the origin twice"
        );
    }
    edge.shutdown().await;
    server.stop().await;
}

#[tokio::test]
async fn hits_are_compressed_in_the_best_encoding_the_client_accepts() {
    use std::io::Read;
    let (server, origin) = start_origin().await;
    let edge = start_edge(server.address).await;
    let mut client = TestClient::http1();
    let url = format!("{}/static/page.css", edge.url);
    let css = PAGE_CSS.repeat(100);
    let get = |accept: &'static str| {
        let url = url.clone();
        async move {
            TestClient::http1()
                .send(http::Method::GET, &url, &[("accept-encoding", accept)], "")
                .await
        }
    };
    let miss = get("gzip, br").await;
    assert_eq!(miss.header("x-cache"), Some("Miss"));
    assert_eq!(
        miss.header("content-encoding"),
        None,
        "a miss streams as it came"
    );
    assert_eq!(miss.header("vary"), Some("Accept-Encoding"));

    let brotli = get("gzip, deflate, br, zstd").await;
    assert_eq!(brotli.header("x-cache"), Some("Hit"));
    assert_eq!(brotli.header("content-encoding"), Some("br"));
    assert_eq!(brotli.header("vary"), Some("Accept-Encoding"));
    assert_eq!(brotli.header("etag"), Some("W/\"css1\""));
    assert!(brotli.body.len() < css.len() / 10);
    let mut decoded = String::new();
    brotli::Decompressor::new(&brotli.body[..], 4096)
        .read_to_string(&mut decoded)
        .expect("brotli");
    assert_eq!(decoded, css);

    let gzip = get("gzip").await;
    assert_eq!(gzip.header("content-encoding"), Some("gzip"));
    let mut decoded = String::new();
    flate2::read::GzDecoder::new(&gzip.body[..])
        .read_to_string(&mut decoded)
        .expect("gzip");
    assert_eq!(decoded, css);

    let zstd = get("zstd;q=1, gzip;q=0.5").await;
    assert_eq!(zstd.header("content-encoding"), Some("zstd"));
    assert_eq!(
        zstd::bulk::decompress(&zstd.body, css.len()).expect("zstd"),
        css.as_bytes()
    );

    let identity = client.get(&url).await;
    assert_eq!(identity.header("content-encoding"), None);
    assert_eq!(identity.text(), css);
    assert_eq!(identity.header("vary"), Some("Accept-Encoding"));
    let part = client
        .send(
            http::Method::GET,
            &url,
            &[("accept-encoding", "br"), ("range", "bytes=0-7")],
            "",
        )
        .await;
    assert_eq!(
        (part.status.as_u16(), part.text()),
        (206, ".product".to_owned())
    );
    assert_eq!(
        requests(&origin),
        1,
        "every encoding came from the one stored object"
    );
    edge.shutdown().await;
    server.stop().await;
}

#[tokio::test]
async fn an_origin_shield_answers_the_misses_of_every_edge_behind_it() {
    let (server, origin) = start_origin().await;
    let shield = start_edge(server.address).await;
    let shield_address: SocketAddr = shield
        .url
        .trim_start_matches("http://")
        .parse()
        .expect("address");
    let first = start_edge_shielded(server.address, Some(shield_address)).await;
    let second = start_edge_shielded(server.address, Some(shield_address)).await;
    let mut client = TestClient::http1();
    // Each edge keys by the host it was asked for: ask both with the shop's one name.
    let get = async |client: &mut TestClient, edge: &RunningEdge, path: &str| {
        client
            .send(
                http::Method::GET,
                &format!("{}{path}", edge.url),
                &[("host", "shop.test")],
                "",
            )
            .await
    };
    let through_first = get(&mut client, &first, "/static/item").await;
    assert_eq!(through_first.text(), "version 1");
    assert_eq!(through_first.header("x-cache"), Some("Miss"));
    let through_second = get(&mut client, &second, "/static/item").await;
    assert_eq!(through_second.text(), "version 1", "the shield answered");
    assert_eq!(
        through_second.header("x-cache"),
        Some("Miss"),
        "the second edge's own miss"
    );
    assert_eq!(requests(&origin), 1, "one origin request for both edges");

    // Without its shield an edge goes to the origin itself.
    shield.shutdown().await;
    assert_eq!(
        get(&mut client, &first, "/static/other").await.text(),
        "other 2"
    );
    assert_eq!(requests(&origin), 2);
    first.shutdown().await;
    second.shutdown().await;
    server.stop().await;
}

/// A behaviour with an origin failover (CloudFront's origin group) sends a fetch its
/// origin fails (a failover status, or no answer at all) once more, to the request's
/// group's secondary, and stores what that answers; an answer of another status, and a
/// request the cache does not fetch (a POST), stay the origin's.
#[tokio::test]
async fn a_fetch_the_origin_fails_goes_to_the_secondary_group() {
    let primary = serve(
        "127.0.0.1",
        Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route(
                "/static/fine",
                get(|| async { ([(header::CACHE_CONTROL, "max-age=60")], "primary") }),
            )
            .route(
                "/static/down",
                get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "primary is down") })
                    .post(|| async { (StatusCode::SERVICE_UNAVAILABLE, "primary is down") }),
            )
            .route(
                "/static/missing",
                get(|| async { (StatusCode::NOT_FOUND, "primary has none") }),
            ),
    )
    .await;
    let asked = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&asked);
    let secondary = serve(
        "127.0.0.1",
        Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .fallback(move |method: http::Method, uri: http::Uri| {
                counted.fetch_add(1, Ordering::SeqCst);
                async move {
                    (
                        [(header::CACHE_CONTROL, "max-age=60")],
                        format!("secondary: {method} {uri}"),
                    )
                }
            }),
    )
    .await;
    let mut config = common::one_listener("origin", vec![primary.address]);
    config.target_groups.push(TargetGroupConfig::new(
        "secondary",
        vec![secondary.address],
        common::quick_health_check(),
    ));
    config.cache = Some(CacheConfig {
        capacity_bytes: 16 * 1024 * 1024,
        max_object_bytes: 16 * 1024,
        behaviors: vec![CacheBehavior {
            name: "static".to_owned(),
            path_pattern: "/static/*".to_owned(),
            policy: CachePolicy::default(),
            origin_shield: None,
            origin_failover: Some(securecart_edge::OriginFailover {
                groups: vec![("origin".to_owned(), "secondary".to_owned())],
                status_codes: [500, 502, 503, 504]
                    .map(|code| StatusCode::from_u16(code).expect("status"))
                    .to_vec(),
            }),
            response_headers: Vec::new(),
            remove_response_headers: Vec::new(),
        }],
        disk: None,
        error_responses: Vec::new(),
        peers: Vec::new(),
    });
    let edge = RunningEdge::start(config, "http").await;
    let mut client = TestClient::http1();
    let get = async |client: &mut TestClient, path: &str| {
        let reply = client.get(&format!("{}{path}", edge.url)).await;
        (
            reply.status.as_u16(),
            reply.text(),
            reply.header("x-cache").map(str::to_owned),
        )
    };

    assert_eq!(
        get(&mut client, "/static/fine").await,
        (200, "primary".to_owned(), Some("Miss".to_owned()))
    );
    assert_eq!(asked.load(Ordering::SeqCst), 0);
    // A 503 fails over; the secondary's answer is stored, and answers again from the cache.
    assert_eq!(
        get(&mut client, "/static/down?v=1").await,
        (
            200,
            "secondary: GET /static/down?v=1".to_owned(),
            Some("Miss".to_owned())
        )
    );
    assert_eq!(
        get(&mut client, "/static/down?v=1").await,
        (
            200,
            "secondary: GET /static/down?v=1".to_owned(),
            Some("Hit".to_owned())
        )
    );
    assert_eq!(asked.load(Ordering::SeqCst), 1);
    // A 404 is not among the failover statuses.
    assert_eq!(
        get(&mut client, "/static/missing").await.1,
        "primary has none"
    );
    // A POST is not the cache's fetch: it stays the origin's.
    let post = client
        .send(
            http::Method::POST,
            &format!("{}/static/down", edge.url),
            &[],
            "form",
        )
        .await;
    assert_eq!(post.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(asked.load(Ordering::SeqCst), 1);

    // An origin that cannot be reached at all fails over too.
    primary.stop().await;
    assert_eq!(
        get(&mut client, "/static/fine?after").await,
        (
            200,
            "secondary: GET /static/fine?after".to_owned(),
            Some("Miss".to_owned())
        )
    );
    let metrics = client
        .get(&format!("http://{}/metrics", edge.admin))
        .await
        .text();
    assert!(
        metrics.contains("securecart_edge_cache_failovers_total{behavior=\"static\"} 2"),
        "{metrics}"
    );
    edge.shutdown().await;
    secondary.stop().await;
}

/// A behaviour's response headers (CloudFront's response headers policy) edit what its
/// clients get, on a miss and on a hit, and not what the edge stores: the origin's
/// freshness still decides when the edge asks again.
#[tokio::test]
async fn a_behaviours_response_headers_edit_its_answers_and_not_what_is_stored() {
    let asked = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&asked);
    let server = serve(
        "127.0.0.1",
        Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route(
                "/static/font.woff2",
                get(move || {
                    counted.fetch_add(1, Ordering::SeqCst);
                    async {
                        (
                            [
                                (header::CACHE_CONTROL, "max-age=1"),
                                (header::HeaderName::from_static("x-powered-by"), "php"),
                                (header::HeaderName::from_static("surrogate-key"), "fonts"),
                            ],
                            "font",
                        )
                    }
                }),
            ),
    )
    .await;
    let edited = |peers: Vec<std::net::IpAddr>| {
        let mut config = common::one_listener("origin", vec![server.address]);
        config.cache = Some(CacheConfig {
            capacity_bytes: 16 * 1024 * 1024,
            max_object_bytes: 16 * 1024,
            behaviors: vec![CacheBehavior {
                name: "static".to_owned(),
                path_pattern: "/static/*".to_owned(),
                policy: CachePolicy::default(),
                origin_shield: None,
                origin_failover: None,
                response_headers: vec![
                    (
                        header::CACHE_CONTROL,
                        header::HeaderValue::from_static("public, max-age=86400"),
                    ),
                    (
                        header::ACCESS_CONTROL_ALLOW_ORIGIN,
                        header::HeaderValue::from_static("*"),
                    ),
                ],
                remove_response_headers: vec![header::HeaderName::from_static("x-powered-by")],
            }],
            disk: None,
            error_responses: Vec::new(),
            peers,
        });
        config
    };
    let edge = RunningEdge::start(edited(Vec::new()), "http").await;
    let mut client = TestClient::http1();
    let url = format!("{}/static/font.woff2", edge.url);
    for expected in ["Miss", "Hit"] {
        let reply = client.get(&url).await;
        assert_eq!(reply.header("x-cache"), Some(expected));
        assert_eq!(reply.header("cache-control"), Some("public, max-age=86400"));
        assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
        assert_eq!(reply.header("x-powered-by"), None);
        assert_eq!(reply.header("surrogate-key"), None, "{expected}");
    }
    assert_eq!(asked.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let again = client.get(&url).await;
    assert_ne!(
        again.header("x-cache"),
        Some("Hit"),
        "the origin's second is over"
    );
    assert_eq!(asked.load(Ordering::SeqCst), 2);
    edge.shutdown().await;
    // Another edge, fetching through this one as its origin shield, gets the origin's
    // headers, to store them as they are: its tags too, by which an invalidation finds
    // its copy, on a miss and on a hit.
    let peer = vec!["127.0.0.1".parse().expect("address")];
    let shield = RunningEdge::start(edited(peer), "http").await;
    for expected in ["Miss", "Hit"] {
        let fetched = client
            .get(&format!("{}/static/font.woff2", shield.url))
            .await;
        assert_eq!(fetched.header("x-cache"), Some(expected));
        assert_eq!(fetched.header("cache-control"), Some("max-age=1"));
        assert_eq!(fetched.header("x-powered-by"), Some("php"));
        assert_eq!(fetched.header("surrogate-key"), Some("fonts"), "{expected}");
    }
    shield.shutdown().await;
    server.stop().await;
}

/// A shield that fails a fetch (its region failed over already) sends it to the request's
/// own group, and only that group's failure to the secondary; an origin out of reach whose
/// secondary fails too leaves a stale copy to answer, as an origin out of reach does.
#[tokio::test]
async fn a_failing_shield_passes_to_the_own_group_and_a_stale_copy_outlasts_both() {
    let shield = common::answering(StatusCode::SERVICE_UNAVAILABLE, "shield failed").await;
    let own = common::answering(StatusCode::OK, "own").await;
    let secondary = common::answering(StatusCode::OK, "secondary").await;
    let edge =
        common::start_failing_over(own.address, secondary.address, Some(shield.address)).await;
    let mut client = TestClient::http1();
    let reply = client.get(&format!("{}/static/a", edge.url)).await;
    assert_eq!(
        (reply.status, reply.text()),
        (StatusCode::OK, "own".to_owned())
    );
    edge.shutdown().await;
    let failing = common::answering(StatusCode::SERVICE_UNAVAILABLE, "own failed").await;
    let edge =
        common::start_failing_over(failing.address, secondary.address, Some(shield.address)).await;
    let reply = client.get(&format!("{}/static/a", edge.url)).await;
    assert_eq!(
        (reply.status, reply.text()),
        (StatusCode::OK, "secondary".to_owned())
    );
    edge.shutdown().await;
    shield.stop().await;
    own.stop().await;
    failing.stop().await;
    secondary.stop().await;

    // A stale copy, its origin gone and its secondary failing.
    let origin = serve(
        "127.0.0.1",
        Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route(
                "/static/item",
                get(|| async { ([(header::CACHE_CONTROL, "max-age=1")], "stored") }),
            ),
    )
    .await;
    let secondary = common::answering(StatusCode::SERVICE_UNAVAILABLE, "secondary failed").await;
    let edge = common::start_failing_over(origin.address, secondary.address, None).await;
    let url = format!("{}/static/item", edge.url);
    assert_eq!(client.get(&url).await.text(), "stored");
    origin.stop().await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let stale = client.get(&url).await;
    assert_eq!(
        (stale.status, stale.text(), stale.header("x-cache")),
        (StatusCode::OK, "stored".to_owned(), Some("Stale"))
    );
    // With nothing stored, the origin's failure answers (its 502), not the secondary's.
    let missing = client.get(&format!("{}/static/other", edge.url)).await;
    assert_eq!(missing.status, StatusCode::BAD_GATEWAY);
    edge.shutdown().await;
    secondary.stop().await;
}

/// Custom error responses (CloudFront's): a GET's or HEAD's error on the paths they cover,
/// the target's or the edge's own, is answered with a page the edge fetches through its
/// cache, under the error's status (marked `no-store`) or the one configured; a POST, a
/// path they do not cover, and an error whose page cannot be had keep their answer.
#[tokio::test]
async fn errors_are_answered_with_the_custom_error_pages() {
    use securecart_edge::ErrorResponse;
    let pages = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&pages);
    let server = serve(
        "127.0.0.1",
        Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route(
                "/static/sorry.html",
                get(move || {
                    counted.fetch_add(1, Ordering::SeqCst);
                    async {
                        (
                            [
                                (header::CACHE_CONTROL, "max-age=60"),
                                (header::CONTENT_TYPE, "text/html"),
                                (header::ETAG, "\"sorry\""),
                            ],
                            "<p>We will be right back.</p>",
                        )
                    }
                }),
            )
            .route(
                "/app",
                get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "app is down") })
                    .post(|| async { (StatusCode::SERVICE_UNAVAILABLE, "app is down") }),
            )
            .route(
                "/api/down",
                get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "{\"error\":\"down\"}") }),
            )
            .route(
                "/bad",
                get(|| async { (StatusCode::BAD_GATEWAY, "bad gateway") }),
            )
            .route(
                "/boom",
                get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
            ),
    )
    .await;
    use securecart_edge::rules::{Conditions, Rule};
    let mut config = common::one_listener("origin", vec![server.address]);
    config.target_groups.push(TargetGroupConfig::new(
        "empty",
        Vec::new(),
        common::quick_health_check(),
    ));
    config.listeners[0].rules = vec![Rule {
        name: "gone".to_owned(),
        priority: 1,
        conditions: Conditions {
            path: vec!["/gone".to_owned()],
            ..Conditions::default()
        },
        action: securecart_edge::actions::ActionConfig::forward("empty"),
    }];
    let page = |code: u16, paths: &[&str], page: &str, answer: Option<u16>| ErrorResponse {
        error_code: StatusCode::from_u16(code).expect("status"),
        paths: paths.iter().map(|path| (*path).to_owned()).collect(),
        response_page_path: page.parse().expect("path"),
        response_code: answer.map(|code| StatusCode::from_u16(code).expect("status")),
    };
    config.cache = Some(CacheConfig {
        capacity_bytes: 16 * 1024 * 1024,
        max_object_bytes: 16 * 1024,
        behaviors: vec![CacheBehavior {
            name: "static".to_owned(),
            path_pattern: "/static/*".to_owned(),
            policy: CachePolicy::default(),
            origin_shield: None,
            origin_failover: None,
            response_headers: Vec::new(),
            remove_response_headers: Vec::new(),
        }],
        disk: None,
        error_responses: vec![
            page(503, &["/app", "/gone"], "/static/sorry.html", None),
            page(502, &["*"], "/static/sorry.html", Some(200)),
            page(500, &["*"], "/static/none.html", None),
        ],
        peers: Vec::new(),
    });
    let edge = RunningEdge::start(config, "http").await;
    let mut client = TestClient::http1();
    let url = |path: &str| format!("{}{path}", edge.url);

    // A HEAD first gets the page's head; the page, fetched whole, is stored for the GETs
    // that follow (read to its end apart: given a moment).
    let head = client.send(http::Method::HEAD, &url("/app"), &[], "").await;
    assert_eq!(head.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(head.header("content-type"), Some("text/html"));
    assert!(head.body.is_empty());
    tokio::time::sleep(Duration::from_millis(200)).await;
    for round in 0..3 {
        let reply = client.get(&url("/app")).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{round}");
        assert_eq!(reply.text(), "<p>We will be right back.</p>", "{round}");
        assert_eq!(reply.header("content-type"), Some("text/html"));
        assert_eq!(reply.header("cache-control"), Some("no-store"));
        assert_eq!(reply.header("etag"), None);
    }
    // The page came from the cache after the HEAD's fetch.
    assert_eq!(pages.load(Ordering::SeqCst), 1);
    // The edge's own 503 (a group without targets) is replaced too, and still counted.
    let gone = client.get(&url("/gone")).await;
    assert_eq!(
        (gone.status, gone.text()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "<p>We will be right back.</p>".to_owned()
        )
    );
    // A page answered as a success is not kept for the URL either.
    let bad = client.get(&url("/bad")).await;
    assert_eq!(
        (bad.status, bad.text(), bad.header("cache-control")),
        (
            StatusCode::OK,
            "<p>We will be right back.</p>".to_owned(),
            Some("no-store")
        )
    );
    // Not on a path the response does not cover, not for a POST, and not when the page
    // itself cannot be had (a 404).
    let api = client.get(&url("/api/down")).await;
    assert_eq!(api.text(), "{\"error\":\"down\"}");
    let post = client
        .send(http::Method::POST, &url("/app"), &[], "x")
        .await;
    assert_eq!(
        (post.status, post.text()),
        (StatusCode::SERVICE_UNAVAILABLE, "app is down".to_owned())
    );
    let boom = client.get(&url("/boom")).await;
    assert_eq!(
        (boom.status, boom.text()),
        (StatusCode::INTERNAL_SERVER_ERROR, "boom".to_owned())
    );
    let metrics = client
        .get(&format!("http://{}/metrics", edge.admin))
        .await
        .text();
    assert!(
        metrics.contains(
            "securecart_edge_errors_total{code=\"no_targets\",route=\"gone\",target_group=\"empty\"} 1"
        ),
        "{metrics}"
    );
    edge.shutdown().await;
    server.stop().await;
}

/// Browsers spell one choice of codings many ways: the cache keys `Accept-Encoding` by the
/// codings the edge knows that it accepts, and asks the origin with that same value
/// (`identity` for none), so that an origin that says `Vary: Accept-Encoding` is asked once
/// per choice, not once per spelling.
#[tokio::test]
async fn accept_encoding_is_keyed_and_forwarded_as_the_codings_it_accepts() {
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&requests);
    let server = serve(
        "127.0.0.1",
        Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route(
                "/static/coded",
                get(move |headers: HeaderMap| {
                    counted.fetch_add(1, Ordering::SeqCst);
                    let asked = headers
                        .get(header::ACCEPT_ENCODING)
                        .map(|value| value.to_str().unwrap_or("?").to_owned())
                        .unwrap_or_default();
                    async move {
                        (
                            [
                                (header::CACHE_CONTROL, "max-age=60"),
                                (header::VARY, "Accept-Encoding"),
                            ],
                            asked,
                        )
                    }
                }),
            ),
    )
    .await;
    let edge = start_edge(server.address).await;
    let mut client = TestClient::http1();
    let url = format!("{}/static/coded", edge.url);
    // (the client's Accept-Encoding, what the origin was asked, whether it was a hit)
    let cases: [(Option<&str>, &str, &str); 6] = [
        (Some("gzip, deflate, br"), "br, gzip", "Miss"),
        (Some("br,gzip"), "br, gzip", "Hit"),
        (Some("gzip;q=0.5, br, identity"), "br, gzip", "Hit"),
        (Some("gzip"), "gzip", "Miss"),
        (None, "identity", "Miss"),
        (Some("deflate"), "identity", "Hit"),
    ];
    for (accepts, asked, cache) in cases {
        let headers: Vec<(&str, &str)> = accepts
            .map(|value| ("accept-encoding", value))
            .into_iter()
            .collect();
        let reply = client.send(http::Method::GET, &url, &headers, "").await;
        assert_eq!(reply.text(), asked, "{accepts:?}");
        assert_eq!(reply.header("x-cache"), Some(cache), "{accepts:?}");
    }
    assert_eq!(requests.load(Ordering::SeqCst), 3);
    edge.shutdown().await;
    server.stop().await;
}

/// Rules that rewrite two of the client's URLs to one of the origin's keep two objects:
/// the cache keys the URL the client asked for (as it does the client's host), so that the
/// rules may send them to different groups, and each is invalidated by its own name.
#[tokio::test]
async fn rewritten_requests_are_cached_under_the_clients_url() {
    use securecart_edge::actions::{ForwardConfig, RewriteConfig};
    use securecart_edge::rules::{Conditions, Rule};
    let (server, origin) = start_origin().await;
    let mut config = common::one_listener("origin", vec![server.address]);
    let rewritten = |prefix: &str, priority: u32| Rule {
        name: format!("from-{prefix}"),
        priority,
        conditions: Conditions {
            path: vec![format!("/{prefix}/*")],
            ..Conditions::default()
        },
        action: securecart_edge::actions::ActionConfig::Forward(ForwardConfig {
            url_rewrite: Some(RewriteConfig {
                regex: format!("^/{prefix}/(.*)$"),
                replace: "/static/$1".to_owned(),
            }),
            ..match securecart_edge::actions::ActionConfig::forward("origin") {
                securecart_edge::actions::ActionConfig::Forward(forward) => forward,
                _ => unreachable!("a forward"),
            }
        }),
    };
    config.listeners[0].rules = vec![rewritten("a", 1), rewritten("b", 2)];
    config.admin_token = Some("admin-token".to_owned());
    config.cache = Some(CacheConfig {
        capacity_bytes: 16 * 1024 * 1024,
        max_object_bytes: 16 * 1024,
        behaviors: vec![CacheBehavior {
            name: "all".to_owned(),
            path_pattern: "*".to_owned(),
            policy: CachePolicy::default(),
            origin_shield: None,
            origin_failover: None,
            response_headers: Vec::new(),
            remove_response_headers: Vec::new(),
        }],
        disk: None,
        error_responses: Vec::new(),
        peers: Vec::new(),
    });
    let edge = RunningEdge::start(config, "http").await;
    let mut client = TestClient::http1();
    let first = client.get(&format!("{}/a/item", edge.url)).await;
    assert_eq!(
        (first.text(), first.header("x-cache")),
        ("version 1".to_owned(), Some("Miss"))
    );
    let again = client.get(&format!("{}/a/item", edge.url)).await;
    assert_eq!(
        (again.text(), again.header("x-cache")),
        ("version 1".to_owned(), Some("Hit"))
    );
    // Another client URL for the same origin URL: its own object.
    let other = client.get(&format!("{}/b/item", edge.url)).await;
    assert_eq!(
        (other.text(), other.header("x-cache")),
        ("version 2".to_owned(), Some("Miss"))
    );
    assert_eq!(requests(&origin), 2);
    // An invalidation by path matches the client's URL, as the key does.
    let invalidated = client
        .send(
            axum::http::Method::POST,
            &format!("http://{}/cache/invalidate", edge.admin),
            &[
                ("content-type", "application/json"),
                ("authorization", "Bearer admin-token"),
            ],
            r#"{"paths": ["/a/*"]}"#,
        )
        .await;
    assert_eq!(
        invalidated.json()["invalidated"],
        1,
        "{}",
        invalidated.text()
    );
    let fetched = client.get(&format!("{}/a/item", edge.url)).await;
    assert_eq!(fetched.header("x-cache"), Some("Miss"));
    let kept = client.get(&format!("{}/b/item", edge.url)).await;
    assert_eq!(kept.header("x-cache"), Some("Hit"));
    edge.shutdown().await;
    server.stop().await;
}

/// A behaviour's origin request policy: a miss sends the origin only the client's headers
/// and cookies it lets through (and the key's), so that an answer that would depend on a
/// shopper's session cannot be stored for everyone.
#[tokio::test]
async fn a_miss_sends_the_origin_what_the_behaviours_request_policy_lets_through() {
    let server = serve(
        "127.0.0.1",
        Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route(
                "/static/seen",
                get(|headers: HeaderMap| async move {
                    let seen = |name: &str| {
                        headers
                            .get(name)
                            .map(|value| value.to_str().unwrap_or("?").to_owned())
                            .unwrap_or_else(|| "-".to_owned())
                    };
                    (
                        [(header::CACHE_CONTROL, "max-age=60")],
                        format!(
                            "cookie={} authorization={} user-agent={}",
                            seen("cookie"),
                            seen("authorization"),
                            seen("user-agent")
                        ),
                    )
                }),
            ),
    )
    .await;
    let mut config = common::one_listener("origin", vec![server.address]);
    config.cache = Some(CacheConfig {
        capacity_bytes: 16 * 1024 * 1024,
        max_object_bytes: 16 * 1024,
        behaviors: vec![CacheBehavior {
            name: "static".to_owned(),
            path_pattern: "/static/*".to_owned(),
            policy: CachePolicy {
                key: securecart_cache::KeyPolicy {
                    cookies: vec!["lang".to_owned()],
                    ..Default::default()
                },
                origin: securecart_cache::OriginPolicy {
                    headers: securecart_cache::Forwarded::Only(vec!["user-agent".to_owned()]),
                    cookies: securecart_cache::Forwarded::None,
                },
                ..CachePolicy::default()
            },
            origin_shield: None,
            origin_failover: None,
            response_headers: Vec::new(),
            remove_response_headers: Vec::new(),
        }],
        disk: None,
        error_responses: Vec::new(),
        peers: Vec::new(),
    });
    let edge = RunningEdge::start(config, "http").await;
    let reply = TestClient::http1()
        .send(
            http::Method::GET,
            &format!("{}/static/seen", edge.url),
            &[
                ("cookie", "session=secret; lang=fr"),
                ("authorization", "Bearer token"),
                ("user-agent", "shop-test"),
            ],
            "",
        )
        .await;
    assert_eq!(
        reply.text(),
        "cookie=lang=fr authorization=- user-agent=shop-test"
    );
    edge.shutdown().await;
    server.stop().await;
}

/// A behaviour that sends the origin none of the client's headers but those it needs still
/// tells stored copies apart by the client's own: an answer that says `Vary:
/// Accept-Language` is found again by a second request in the same language.
#[tokio::test]
async fn a_varied_answer_is_found_again_when_its_header_is_kept_from_the_origin() {
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&requests);
    let server = serve(
        "127.0.0.1",
        Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route(
                "/static/varied",
                get(move || {
                    counted.fetch_add(1, Ordering::SeqCst);
                    async {
                        (
                            [
                                (header::CACHE_CONTROL, "max-age=60"),
                                (header::VARY, "Accept-Language"),
                            ],
                            "the same in every language",
                        )
                    }
                }),
            ),
    )
    .await;
    let mut config = common::one_listener("origin", vec![server.address]);
    config.cache = Some(CacheConfig {
        capacity_bytes: 16 * 1024 * 1024,
        max_object_bytes: 16 * 1024,
        behaviors: vec![CacheBehavior {
            name: "static".to_owned(),
            path_pattern: "/static/*".to_owned(),
            policy: CachePolicy {
                origin: securecart_cache::OriginPolicy {
                    headers: securecart_cache::Forwarded::None,
                    cookies: securecart_cache::Forwarded::None,
                },
                ..CachePolicy::default()
            },
            origin_shield: None,
            origin_failover: None,
            response_headers: Vec::new(),
            remove_response_headers: Vec::new(),
        }],
        disk: None,
        error_responses: Vec::new(),
        peers: Vec::new(),
    });
    let edge = RunningEdge::start(config, "http").await;
    let mut client = TestClient::http1();
    let url = format!("{}/static/varied", edge.url);
    let french = [("accept-language", "fr")];
    for expected in ["Miss", "Hit"] {
        let reply = client.send(http::Method::GET, &url, &french, "").await;
        assert_eq!(reply.header("x-cache"), Some(expected));
    }
    assert_eq!(requests.load(Ordering::SeqCst), 1);
    edge.shutdown().await;
    server.stop().await;
}

/// A behaviour that does not compress answers text as the origin gave it, and says no
/// `Vary: Accept-Encoding` of its own.
#[tokio::test]
async fn a_behaviour_may_leave_text_uncompressed() {
    let (server, origin) = start_origin().await;
    let mut config = common::one_listener("origin", vec![server.address]);
    config.cache = Some(CacheConfig {
        capacity_bytes: 16 * 1024 * 1024,
        max_object_bytes: 16 * 1024,
        behaviors: vec![CacheBehavior {
            name: "static".to_owned(),
            path_pattern: "/static/*".to_owned(),
            policy: CachePolicy {
                compress: false,
                ..CachePolicy::default()
            },
            origin_shield: None,
            origin_failover: None,
            response_headers: Vec::new(),
            remove_response_headers: Vec::new(),
        }],
        disk: None,
        error_responses: Vec::new(),
        peers: Vec::new(),
    });
    let edge = RunningEdge::start(config, "http").await;
    let url = format!("{}/static/page.css", edge.url);
    for expected in ["Miss", "Hit"] {
        let reply = TestClient::http1()
            .send(
                http::Method::GET,
                &url,
                &[("accept-encoding", "br, gzip")],
                "",
            )
            .await;
        assert_eq!(reply.header("x-cache"), Some(expected));
        assert_eq!(reply.header("content-encoding"), None);
        assert_eq!(reply.header("vary"), None);
        assert_eq!(reply.text(), PAGE_CSS.repeat(100));
    }
    assert_eq!(requests(&origin), 1);
    edge.shutdown().await;
    server.stop().await;
}
