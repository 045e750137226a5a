//! The edge's HTTP/1.1 server as clients see it on the wire: pipelining, HTTP/1.0,
//! chunked and `Expect: 100-continue` uploads, answers without bodies, answers of unknown
//! length, heads it refuses, and bodies it does not read; HTTP/2 clients held to the same
//! limits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::StatusCode;
use axum::routing::{get, post};
use securecart_edge::actions::{ActionConfig, FixedResponseConfig};
use securecart_edge::rules::{Conditions, Rule};
use securecart_testkit::{TestServer, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod common;
use common::RunningEdge;

/// A target that echoes bodies, streams an answer of unknown length, and has no content.
async fn start_target() -> TestServer {
    let router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/hello", get(|| async { "hello" }))
        .route("/echo", post(|body: String| async move { body }))
        .route(
            "/stream",
            get(|| async { Body::new(Parts(vec!["one ", "two ", "three"])) }),
        )
        .route("/nothing", get(|| async { StatusCode::NO_CONTENT }))
        .route(
            "/host",
            get(|headers: axum::http::HeaderMap| async move {
                headers
                    .get(axum::http::header::HOST)
                    .map(|host| String::from_utf8_lossy(host.as_bytes()).into_owned())
                    .unwrap_or_default()
            }),
        );
    serve("127.0.0.1", router).await
}

/// A body of several frames and no length, sent in order.
struct Parts(Vec<&'static str>);

impl http_body::Body for Parts {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        if self.0.is_empty() {
            return std::task::Poll::Ready(None);
        }
        let part = self.0.remove(0);
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(bytes::Bytes::from_static(
            part.as_bytes(),
        )))))
    }
}

/// A target that answers every request on a connection with `answer`, as raw bytes.
async fn start_raw_target(
    answer: &'static str,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                while let Ok(read) = stream.read(&mut buffer).await {
                    if read == 0 {
                        return;
                    }
                    request.extend_from_slice(&buffer[..read]);
                    while let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        request.drain(..end + 4);
                        if stream.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (address, task)
}

/// An edge forwarding everything but `/fixed` (answered by the edge itself, unread body
/// and all) to the target.
async fn start_edge(target: std::net::SocketAddr, limits: securecart_edge::Limits) -> RunningEdge {
    let mut config = common::one_listener("site", vec![target]);
    config.listeners[0].rules = vec![Rule {
        name: "fixed".to_owned(),
        priority: 1,
        conditions: Conditions {
            path: vec!["/fixed".to_owned()],
            ..Conditions::default()
        },
        action: ActionConfig::FixedResponse(FixedResponseConfig {
            status: 200,
            content_type: "text/plain".to_owned(),
            body: "fixed".to_owned(),
        }),
    }];
    config.limits = limits;
    let edge = RunningEdge::start(config, "http").await;
    // The target is healthy once its first check passed.
    for _ in 0..100 {
        if raw(
            &edge,
            "GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .await
        .starts_with("HTTP/1.1 200")
        {
            return edge;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the target never became healthy");
}

fn address(edge: &RunningEdge) -> String {
    edge.url.trim_start_matches("http://").to_owned()
}

/// Sends `bytes` on a new connection and reads until the edge closes it (at most 10 s).
async fn raw(edge: &RunningEdge, bytes: &str) -> String {
    securecart_testkit::raw_exchange(&address(edge), bytes.as_bytes()).await
}

/// Reads one answer whose body has a `Content-Length` (or none), leaving the connection
/// open.
async fn read_answer(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n\r\n") {
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte))
            .await
            .expect("an answer")
            .expect("read");
        assert_eq!(
            read,
            1,
            "closed mid-head: {}",
            String::from_utf8_lossy(&answer)
        );
        answer.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length: "))
        .map_or(0, |length| length.trim().parse::<usize>().expect("length"));
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.expect("body");
    answer.extend_from_slice(&body);
    String::from_utf8_lossy(&answer).into_owned()
}

/// The edge's metrics, once they hold `line` (asked for up to 5 s: a refusal is counted
/// when its connection closes).
async fn metrics_once_they_show(edge: &RunningEdge, line: &str) -> String {
    let mut counted = String::new();
    for _ in 0..250 {
        counted = securecart_testkit::TestClient::http1()
            .get(&format!("http://{}/metrics", edge.admin))
            .await
            .text();
        if counted.contains(line) {
            return counted;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the metrics never showed {line}: {counted}");
}

fn limits() -> securecart_edge::Limits {
    securecart_edge::Limits {
        drain_timeout: Duration::from_secs(2),
        header_read_timeout: Duration::from_secs(2),
        ..securecart_edge::Limits::default()
    }
}

/// A request without a Host (HTTP/1.0 may leave it out) reaches an HTTP/1.1 target with
/// one, the target's address; a client's Host reaches it as the client sent it.
#[tokio::test]
async fn a_request_without_a_host_reaches_the_target_with_one() {
    let target = start_target().await;
    let edge = start_edge(target.address, limits()).await;
    let answer = raw(&edge, "GET /host HTTP/1.0\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.ends_with(&format!("\r\n\r\n{}", target.address)),
        "{answer}"
    );
    let answer = raw(&edge, "GET /host HTTP/1.0\r\nHost: shop.test\r\n\r\n").await;
    assert!(answer.ends_with("\r\n\r\nshop.test"), "{answer}");
    edge.shutdown().await;
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let target = start_target().await;
    let edge = start_edge(target.address, limits()).await;
    let answer = raw(
        &edge,
        "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n\
         POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\nsecond\r\n\
         POST /fixed HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nunred\
         GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    let bodies: Vec<&str> = answer
        .split("HTTP/1.1 ")
        .skip(1)
        .map(|answer| answer.split("\r\n\r\n").nth(1).unwrap_or(""))
        .collect();
    // The empty line a client left after a body is skipped; the body the edge did not
    // read was wholly in its buffer: it was skipped, and the connection carried the next
    // request.
    assert_eq!(bodies, ["hello", "second", "fixed", "hello"], "{answer}");
    assert!(
        answer.to_ascii_lowercase().ends_with("hello")
            && answer.to_ascii_lowercase().contains("connection: close"),
        "the last request closed the connection: {answer}"
    );

    // A client that pipelines and then closes its sending side gets the answers to the
    // requests it sent before its last; the close abandons the last one (its target's
    // request is cancelled), as with hyper's and nginx's defaults: a server cannot tell a
    // closed connection from a half-closed one.
    let mut stream = TcpStream::connect(address(&edge)).await.expect("connect");
    stream
        .write_all(
            b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n\
              GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .await
        .expect("write");
    stream.shutdown().await.expect("half-close");
    let answer = securecart_testkit::read_to_close(&mut stream).await;
    assert_eq!(answer.matches("HTTP/1.1 200").count(), 1, "{answer}");
    edge.shutdown().await;
}

#[tokio::test]
async fn http10_clients_keep_connections_only_when_they_ask_and_get_no_chunks() {
    let target = start_target().await;
    let edge = start_edge(target.address, limits()).await;

    // An answer of unknown length goes chunked to an HTTP/1.1 client...
    let chunked = raw(
        &edge,
        "GET /stream HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        chunked
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{chunked}"
    );
    assert!(chunked.ends_with("0\r\n\r\n"), "{chunked}");
    // ...and up to the close to an HTTP/1.0 one.
    let closed = raw(&edge, "GET /stream HTTP/1.0\r\nHost: t\r\n\r\n").await;
    let lower = closed.to_ascii_lowercase();
    assert!(closed.starts_with("HTTP/1.1 200"), "{closed}");
    assert!(!lower.contains("transfer-encoding"), "{closed}");
    assert!(lower.contains("connection: close"), "{closed}");
    assert!(closed.ends_with("\r\n\r\none two three"), "{closed}");

    // `close` wins over `keep-alive`.
    let closed = raw(
        &edge,
        "GET /hello HTTP/1.0\r\nHost: t\r\nConnection: close, keep-alive\r\n\r\n",
    )
    .await;
    assert!(
        closed.to_ascii_lowercase().contains("connection: close"),
        "{closed}"
    );

    // An HTTP/1.0 client that asks for keep-alive is told so, and may send another request.
    let mut stream = TcpStream::connect(address(&edge)).await.expect("connect");
    stream
        .write_all(b"GET /hello HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\n\r\n")
        .await
        .expect("write");
    let first = read_answer(&mut stream).await;
    assert!(
        first
            .to_ascii_lowercase()
            .contains("connection: keep-alive"),
        "{first}"
    );
    assert!(first.ends_with("hello"), "{first}");
    stream
        .write_all(b"GET /hello HTTP/1.0\r\nHost: t\r\n\r\n")
        .await
        .expect("write");
    let second = securecart_testkit::read_to_close(&mut stream).await;
    assert!(
        second.starts_with("HTTP/1.1 200") && second.ends_with("hello"),
        "{second}"
    );
    edge.shutdown().await;
}

#[tokio::test]
async fn chunked_uploads_and_expect_continue_reach_the_target() {
    let target = start_target().await;
    let edge = start_edge(target.address, limits()).await;

    // Chunks, with an extension and trailers, arrive as one body.
    let answer = raw(
        &edge,
        "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         4;note=x\r\nwool\r\n5\r\n coat\r\n0\r\nX-Checksum: 1\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("wool coat"), "{answer}");

    // A client that waits for `100 Continue` gets it, then its answer.
    let mut stream = TcpStream::connect(address(&edge)).await.expect("connect");
    stream
        .write_all(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
        )
        .await
        .expect("write");
    let interim = read_answer(&mut stream).await;
    assert_eq!(interim, "HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(b"hello").await.expect("write");
    let answer = read_answer(&mut stream).await;
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("hello"),
        "{answer}"
    );

    // A chunk longer than it says is refused, and so are chunk lines that do not end with
    // CRLF (a parser that ends lines elsewhere would see another body: smuggling), and the
    // connection closes.
    for chunks in [
        "2\r\nhello\r\n0\r\n\r\n",
        "5;a\nhello\r\n0\r\n\r\n",
        "5\nhello\r\n0\r\n\r\n",
        "5;a\rb\r\nhello\r\n0\r\n\r\n",
        "5\r\nhello\n0\r\n\r\n",
        "5\r\nhello\r\n0\r\n\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\n",
        "5\r\nhello\r\n0\r\nX-Checksum: 1\n\r\n",
    ] {
        let answer = raw(
            &edge,
            &format!(
                "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{chunks}"
            ),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{chunks:?}: {answer}");
    }
    edge.shutdown().await;
}

#[tokio::test]
async fn trailers_reach_clients_that_ask_for_them() {
    let (target, task) = start_raw_target(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
         4\r\ndata\r\n0\r\nX-Checksum: 7\r\nContent-Length: 99\r\n\r\n",
    )
    .await;
    let edge = start_edge(target, limits()).await;
    let answer = raw(
        &edge,
        "GET /trailers HTTP/1.1\r\nHost: t\r\nTE: trailers\r\nConnection: close\r\n\r\n",
    )
    .await;
    // The checksum comes after the last chunk; a length there would be a second framing,
    // and is dropped.
    assert!(
        answer.ends_with("\r\n0\r\nx-checksum: 7\r\n\r\n"),
        "{answer:?}"
    );
    let without = raw(
        &edge,
        "GET /trailers HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(without.ends_with("data\r\n0\r\n\r\n"), "{without:?}");
    edge.shutdown().await;
    task.abort();
}

#[tokio::test]
async fn answers_without_bodies_keep_the_connection() {
    let target = start_target().await;
    let edge = start_edge(target.address, limits()).await;
    let answer = raw(
        &edge,
        "HEAD /hello HTTP/1.1\r\nHost: t\r\n\r\n\
         GET /nothing HTTP/1.1\r\nHost: t\r\n\r\n\
         GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    let answers: Vec<&str> = answer.split("HTTP/1.1 ").skip(1).collect();
    assert_eq!(answers.len(), 3, "{answer}");
    // HEAD: the length of the body a GET would have, and no body.
    assert!(answers[0].starts_with("200"), "{answer}");
    assert!(
        answers[0]
            .to_ascii_lowercase()
            .contains("content-length: 5"),
        "{answer}"
    );
    assert!(answers[0].ends_with("\r\n\r\n"), "{answer}");
    // 204: neither a length nor chunks.
    assert!(answers[1].starts_with("204"), "{answer}");
    let no_content = answers[1].to_ascii_lowercase();
    assert!(
        !no_content.contains("content-length") && !no_content.contains("transfer-encoding"),
        "{answer}"
    );
    assert!(answers[2].ends_with("hello"), "{answer}");
    edge.shutdown().await;
}

#[tokio::test]
async fn heads_that_cannot_be_read_are_refused() {
    let target = start_target().await;
    let edge = start_edge(target.address, limits()).await;
    for (request, status) in [
        ("GET /hello HTTP/1.1\r\nHost t\r\n\r\n", "400"),
        ("GET /hello HTTP/2.0\r\nHost: t\r\n\r\n", "400"),
        (
            "GET /hello HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n",
            "400",
        ),
        (
            "GET /hello HTTP/1.1\r\nHost: t\r\nContent-Length: 1, 2\r\n\r\n",
            "400",
        ),
        (
            "POST /echo HTTP/1.0\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "400",
        ),
        (
            "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n",
            "400",
        ),
        ("G\u{1}T /hello HTTP/1.1\r\nHost: t\r\n\r\n", "400"),
    ] {
        let answer = raw(&edge, request).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{request:?}: {answer}"
        );
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{request:?}: {answer}"
        );
    }

    // A head begun and not finished within the header read timeout gets 408.
    let mut stream = TcpStream::connect(address(&edge)).await.expect("connect");
    stream
        .write_all(b"GET /hello HTTP/1.1\r\nHo")
        .await
        .expect("write");
    let answer = securecart_testkit::read_to_close(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // Each refusal is counted, under the route `none` (no rule saw it), once its
    // connection has closed (the edge lingers on it while the client keeps it open).
    drop(stream);
    let counted = metrics_once_they_show(
        &edge,
        "securecart_edge_requests_total{route=\"none\",code=\"408\"} 1\n",
    )
    .await;
    assert!(
        counted
            .lines()
            .any(|line| line
                .starts_with("securecart_edge_requests_total{route=\"none\",code=\"400\"}")),
        "{counted}"
    );
    edge.shutdown().await;
}

#[tokio::test]
async fn a_refused_upload_still_gets_its_answer() {
    let target = start_target().await;
    let mut limits = limits();
    limits.max_body_bytes = Some(1024);
    let edge = start_edge(target.address, limits).await;
    // The client sends a large body the edge refuses without reading: the edge answers,
    // then reads and drops what keeps coming until the client stops, so that the answer is
    // not lost to a reset of the connection.
    let mut stream = TcpStream::connect(address(&edge)).await.expect("connect");
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4000000\r\n\r\n")
        .await
        .expect("write");
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..32 {
        if stream.write_all(&chunk).await.is_err() {
            break;
        }
    }
    let _ = stream.shutdown().await;
    let answer = securecart_testkit::read_to_close(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    edge.shutdown().await;
}

/// Sets its flag when dropped before its request finished.
struct CancelledIfDropped(Arc<AtomicBool>, bool);

impl Drop for CancelledIfDropped {
    fn drop(&mut self) {
        if !self.1 {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

#[tokio::test]
async fn a_client_that_goes_away_cancels_its_forwarded_request() {
    let cancelled = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&cancelled);
    let router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/hello", get(|| async { "hello" }))
        .route(
            "/sleep",
            get(move || {
                let guard = CancelledIfDropped(Arc::clone(&flag), false);
                async move {
                    let mut guard = guard;
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    guard.1 = true;
                    "slept"
                }
            }),
        );
    let target = serve("127.0.0.1", router).await;
    let edge = start_edge(target.address, limits()).await;
    let mut stream = TcpStream::connect(address(&edge)).await.expect("connect");
    stream
        .write_all(b"GET /sleep HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(stream);
    // The edge drops the forwarded request, its target connection with it, and the target
    // drops its handler.
    for _ in 0..40 {
        if cancelled.load(Ordering::SeqCst) {
            edge.shutdown().await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the target's handler ran on after its client went away");
}

#[tokio::test]
async fn mangled_requests_end_in_an_answer_or_a_close_and_the_edge_serves_on() {
    use rand::SeedableRng;
    let target = start_target().await;
    let edge = start_edge(target.address, limits()).await;
    let bases = [
        "GET /hello?q=1 HTTP/1.1\r\nHost: t\r\nAccept: */*\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
        "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5;n=v\r\nhello\r\n0\r\nX-A: b\r\n\r\n",
        "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nhi",
    ];
    let noise = b"\r\n:; 0123456789aAfFzZ\x00\xff\t,-/?%";
    let mut random = rand::rngs::StdRng::seed_from_u64(11);
    for round in 0..300 {
        let mut request = bases[round % bases.len()].as_bytes().to_vec();
        common::mangle(&mut request, &mut random, noise);
        // The client sends its bytes and closes its side: every exchange ends, with
        // answers that each begin with a status line, or with a close.
        let mut stream = TcpStream::connect(address(&edge)).await.expect("connect");
        stream.write_all(&request).await.expect("write");
        let _ = stream.shutdown().await;
        let mut answer = Vec::new();
        let ended =
            tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
        let shown = String::from_utf8_lossy(&request).into_owned();
        assert!(ended.is_ok(), "{shown:?} never ended");
        assert!(
            answer.is_empty() || answer.starts_with(b"HTTP/1.1 "),
            "{shown:?}: {}",
            String::from_utf8_lossy(&answer)
        );
    }
    // And the edge still answers.
    let answer = raw(
        &edge,
        "GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.ends_with("hello"), "{answer}");
    edge.shutdown().await;
}

/// Each request's head gets the header read timeout counted from when the edge waits for
/// it, however long the connection has been open: the connection's one timer (set at the
/// accept) moves to the request's own deadline when it fires before it, mid-head or
/// between requests; and a connection that then goes idle is still closed.
#[tokio::test]
async fn each_request_on_a_connection_gets_the_whole_header_timeout() {
    let target = start_target().await;
    let edge = start_edge(
        target.address,
        securecart_edge::Limits {
            header_read_timeout: Duration::from_secs(1),
            ..limits()
        },
    )
    .await;
    let mut stream = TcpStream::connect(address(&edge)).await.expect("connect");
    // Each request's head is complete 600 ms after the edge begins to wait for it, and the
    // timer, still at the deadline before, fires 400 ms into each wait: during a head sent
    // in two halves 600 ms apart (even requests), or while the connection is idle before
    // a head sent whole (odd ones). 3.6 s in all.
    for request in 0..6 {
        if request % 2 == 0 {
            stream.write_all(b"GET /hello HT").await.expect("write");
            tokio::time::sleep(Duration::from_millis(600)).await;
            stream
                .write_all(b"TP/1.1\r\nHost: t\r\n\r\n")
                .await
                .expect("write");
        } else {
            tokio::time::sleep(Duration::from_millis(600)).await;
            stream
                .write_all(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
                .await
                .expect("write");
        }
        let answer = read_answer(&mut stream).await;
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "request {request}: {answer}"
        );
    }
    // Idle now: closed once its timeout passes.
    assert_eq!(securecart_testkit::read_to_close(&mut stream).await, "");
    edge.shutdown().await;
}

/// When the edge drains, a keep-alive connection waiting for its next request is closed at
/// once, after any number of requests, rather than at its header timeout or when the drain
/// times out.
#[tokio::test]
async fn draining_closes_a_connection_that_waits_for_its_next_request() {
    let target = start_target().await;
    let edge = start_edge(
        target.address,
        securecart_edge::Limits {
            header_read_timeout: Duration::from_secs(600),
            drain_timeout: Duration::from_secs(600),
            ..limits()
        },
    )
    .await;
    let mut stream = TcpStream::connect(address(&edge)).await.expect("connect");
    for _ in 0..3 {
        stream
            .write_all(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .expect("write");
        let answer = read_answer(&mut stream).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    let shutdown = tokio::spawn(edge.shutdown());
    assert_eq!(securecart_testkit::read_to_close(&mut stream).await, "");
    shutdown.await.expect("shutdown");
}

#[tokio::test]
async fn http2_clients_are_held_to_the_same_limits() {
    let target = start_target().await;
    let edge = start_edge(target.address, limits()).await;
    // HTTP/2's preface and empty settings, then nothing: the connection is idle, and the
    // edge sends `GOAWAY` (frame type 7) and closes it after the header read timeout.
    let mut stream = TcpStream::connect(address(&edge)).await.expect("connect");
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .expect("write");
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut received))
        .await
        .expect("the edge closes an idle HTTP/2 connection")
        .expect("read");
    let mut frames = Vec::new();
    let mut at = 0;
    while at + 9 <= received.len() {
        let length = usize::from(received[at]) << 16
            | usize::from(received[at + 1]) << 8
            | usize::from(received[at + 2]);
        frames.push(received[at + 3]);
        at += 9 + length;
    }
    assert!(frames.contains(&7), "frame types {frames:?}");

    // More header fields than the limit: 431, as over HTTP/1.1.
    let mut client = securecart_testkit::TestClient::http2();
    let names: Vec<String> = (0..120).map(|index| format!("x-field-{index}")).collect();
    let many: Vec<(&str, &str)> = names.iter().map(|name| (name.as_str(), "1")).collect();
    let url = format!("{}/hello", edge.url);
    let answer = client.send(http::Method::GET, &url, &many, "").await;
    assert_eq!(answer.status, 431);
    let answer = client.send(http::Method::GET, &url, &many[..10], "").await;
    assert_eq!(
        (answer.status.as_u16(), answer.text()),
        (200, "hello".to_owned())
    );
    // A field past 16 KiB (its name and value), or a target: 431 too, as ALB's lines.
    let long = "x".repeat(16 * 1024);
    let answer = client
        .send(http::Method::GET, &url, &[("x-long", long.as_str())], "")
        .await;
    assert_eq!(answer.status, 431);
    let answer = client
        .send(http::Method::GET, &format!("{url}?{long}"), &[], "")
        .await;
    assert_eq!(answer.status, 431);
    // The refusal is counted as an HTTP/1.1 one is, under the route `none`, once its
    // connection has closed.
    drop(client);
    metrics_once_they_show(
        &edge,
        "securecart_edge_requests_total{route=\"none\",code=\"431\"} 3\n",
    )
    .await;
    edge.shutdown().await;
    target.stop().await;
}

/// A target that answers every request `ok` on the connection it came on, whatever the
/// request says of the connection (a `Connection: close` too), and notes which connection
/// each request for `/probe...` came on.
async fn start_probe_target() -> (
    std::net::SocketAddr,
    Arc<parking_lot::Mutex<Vec<(usize, String)>>>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let noted = Arc::clone(&seen);
    let task = tokio::spawn(async move {
        let mut connections = 0;
        while let Ok((mut stream, _)) = listener.accept().await {
            connections += 1;
            let connection = connections;
            let noted = Arc::clone(&noted);
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                while let Ok(read) = stream.read(&mut buffer).await {
                    if read == 0 {
                        return;
                    }
                    request.extend_from_slice(&buffer[..read]);
                    while let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head: Vec<u8> = request.drain(..end + 4).collect();
                        let line = String::from_utf8_lossy(&head)
                            .lines()
                            .next()
                            .unwrap_or_default()
                            .to_owned();
                        if line.starts_with("GET /probe") {
                            noted.lock().push((connection, line));
                        }
                        let answer = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if stream.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (address, seen, task)
}

/// After an ambiguous request that desync mitigation routes, the edge does not send
/// another request on its target's connection, even where the target would keep it: what
/// the target read past the request's end goes with the connection.
#[tokio::test]
async fn an_ambiguous_request_is_the_last_on_its_target_connection() {
    let (target, seen, task) = start_probe_target().await;
    let edge = start_edge(target, limits()).await;
    let get = |path: &str, extra: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: t\r\n{extra}Connection: close\r\n\r\n")
    };
    // Compliant requests share the pooled connection...
    for path in ["/probe-1", "/probe-2"] {
        let answer = raw(&edge, &get(path, "")).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    // ...an ambiguous one goes on it, and is its last...
    let answer = raw(&edge, &get("/probe-3", "Transfer_Encoding: chunked\r\n")).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // ...and the next request opens another.
    let answer = raw(&edge, &get("/probe-4", "")).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = seen.lock().clone();
    let on = |path: &str| {
        seen.iter()
            .find(|(_, line)| line.starts_with(&format!("GET {path} ")))
            .map(|(connection, _)| *connection)
            .unwrap_or_else(|| panic!("{path} never reached the target: {seen:?}"))
    };
    assert_eq!(on("/probe-1"), on("/probe-2"), "{seen:?}");
    assert_eq!(on("/probe-2"), on("/probe-3"), "{seen:?}");
    assert_ne!(on("/probe-3"), on("/probe-4"), "{seen:?}");
    edge.shutdown().await;
    task.abort();
}

/// A head with a line that ends in LF alone, wherever the line is, is read (as nginx
/// reads it) and counted as desync mitigation's `NonCrLfLineTermination`; a head of CRLF
/// lines is not.
#[tokio::test]
async fn lines_ending_in_lf_alone_are_noticed_wherever_they_are() {
    let target = start_target().await;
    let edge = start_edge(target.address, limits()).await;
    let counter = "reason=\"NonCrLfLineTermination\"}";
    let count = |metrics: &str| {
        metrics
            .lines()
            .find(|line| line.contains(counter))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|count| count.parse::<u64>().ok())
            .expect("the counter")
    };
    let mut counted = count(&metrics_once_they_show(&edge, counter).await);
    for (head, bare) in [
        (
            "GET /hello HTTP/1.1\r\nHost: t\r\nAccept: */*\r\nConnection: close\r\n\r\n",
            false,
        ),
        (
            "GET /hello HTTP/1.1\nHost: t\r\nConnection: close\r\n\r\n",
            true,
        ),
        (
            "GET /hello HTTP/1.1\r\nHost: t\nConnection: close\r\n\r\n",
            true,
        ),
        (
            "GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\n\r\n",
            true,
        ),
        (
            "GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\n",
            true,
        ),
        ("GET /hello HTTP/1.0\n\r\n", true),
        ("GET /hello HTTP/1.0\r\n\r\n", false),
    ] {
        let answer = raw(&edge, head).await;
        assert!(answer.contains(" 200 OK\r\n"), "{head:?}: {answer}");
        let metrics = securecart_testkit::TestClient::http1()
            .get(&format!("http://{}/metrics", edge.admin))
            .await
            .text();
        let now = count(&metrics);
        assert_eq!(now - counted, u64::from(bare), "{head:?}");
        counted = now;
    }
    edge.shutdown().await;
    target.stop().await;
}
