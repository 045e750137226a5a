//! HTTP/1.1 to targets (`securecart_edge::h1`, through the pool that holds its connections)
//! against a raw TCP target that answers with scripted bytes: every way an answer's body can
//! be framed, interim answers, what makes a connection reusable, answers that must be
//! refused, and how request bodies are framed on the way out.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::BodyExt;
use parking_lot::Mutex;
use securecart_edge::UpstreamProtocol;
use securecart_edge::pool::{PoolError, PoolSettings, Pools, TargetPool};
use securecart_edge::upstream::{self, EdgeBody};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

mod common;

/// A target answering each request it reads with the next of `answers`, closing the
/// connection after an answer marked so. It records the requests it read, and counts its
/// connections.
struct RawTarget {
    address: SocketAddr,
    accepted: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
}

async fn raw_target(answers: Vec<(Vec<u8>, bool)>) -> RawTarget {
    raw_target_with(answers, Pace::Whole).await
}

/// How a raw target reads and answers.
#[derive(Clone, Copy, PartialEq)]
enum Pace {
    /// Reads the whole request, writes the whole answer.
    Whole,
    /// Writes its answers a byte at a time, each apart, so that every byte arrives in a
    /// read of its own.
    Bytewise,
    /// Answers once it has the request's head, without reading its body.
    Early,
}

async fn raw_target_paced(answers: Vec<(Vec<u8>, bool)>, paced: bool) -> RawTarget {
    let pace = if paced { Pace::Bytewise } else { Pace::Whole };
    raw_target_with(answers, pace).await
}

async fn raw_target_with(answers: Vec<(Vec<u8>, bool)>, pace: Pace) -> RawTarget {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let accepted = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let answers = Arc::new(Mutex::new(answers.into_iter()));
    let (counter, seen) = (Arc::clone(&accepted), Arc::clone(&requests));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let (answers, seen) = (Arc::clone(&answers), Arc::clone(&seen));
            tokio::spawn(async move {
                let mut stream = stream;
                let mut buffer = Vec::new();
                while let Some(request) =
                    read_request(&mut stream, &mut buffer, pace == Pace::Early).await
                {
                    seen.lock().push(request);
                    let Some((answer, close)) = answers.lock().next() else {
                        return;
                    };
                    let written = if pace == Pace::Bytewise {
                        write_paced(&mut stream, &answer).await
                    } else {
                        stream.write_all(&answer).await
                    };
                    if written.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    RawTarget {
        address,
        accepted,
        requests,
    }
}

async fn write_paced(stream: &mut TcpStream, answer: &[u8]) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    for byte in answer {
        stream.write_all(std::slice::from_ref(byte)).await?;
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    Ok(())
}

/// Reads one request (head, and a body framed by length or chunks) as text.
async fn read_request(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
    head_only: bool,
) -> Option<String> {
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            break end + 4;
        }
        let mut chunk = [0u8; 4096];
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_lowercase();
    if head_only {
        return Some(head);
    }
    let body_end = if head.contains("transfer-encoding: chunked") {
        loop {
            if let Some(end) = buffer[head_end..]
                .windows(5)
                .position(|window| window == b"0\r\n\r\n")
            {
                break head_end + end + 5;
            }
            let mut chunk = [0u8; 4096];
            let read = stream.read(&mut chunk).await.ok()?;
            if read == 0 {
                return None;
            }
            buffer.extend_from_slice(&chunk[..read]);
        }
    } else {
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length: "))
            .map_or(0, |value| value.trim().parse().expect("length"));
        while buffer.len() < head_end + length {
            let mut chunk = [0u8; 4096];
            let read = stream.read(&mut chunk).await.ok()?;
            if read == 0 {
                return None;
            }
            buffer.extend_from_slice(&chunk[..read]);
        }
        head_end + length
    };
    let request = String::from_utf8_lossy(&buffer[..body_end]).into_owned();
    buffer.drain(..body_end);
    Some(request)
}

fn request(method: Method, body: EdgeBody) -> Request<EdgeBody> {
    Request::builder()
        .method(method)
        .uri("/item?id=7")
        .header("host", "target")
        .body(body)
        .expect("request")
}

/// What the pool made of an answer: status, headers, body and trailers, or the error.
struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: Bytes,
    trailers: Option<http::HeaderMap>,
}

async fn exchange(pool: &Arc<TargetPool>, request: Request<EdgeBody>) -> Result<Answer, String> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let response = pool
        .send(request, deadline)
        .await
        .map_err(|error| match error {
            PoolError::Connect(reason) | PoolError::ConnectTimeout(reason) => reason,
            PoolError::Request(error) => error.to_string(),
            PoolError::Body(error) => format!("body: {error}"),
            PoolError::Timeout => "timed out".to_owned(),
        })?;
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.map_err(|error| error.to_string())?;
    let trailers = collected.trailers().cloned();
    Ok(Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: collected.to_bytes(),
        trailers,
    })
}

fn pool_for(target: &RawTarget) -> Arc<TargetPool> {
    // Leaked: the registry holds its pools weakly, and each test keeps its pool.
    let pools = Box::leak(Box::new(Pools::new(PoolSettings::default())));
    pools.for_target(target.address, UpstreamProtocol::Http1, None)
}

/// (answer, method, status, body, a trailer, whether the next request reuses the connection)
type Case = (
    &'static str,
    Method,
    u16,
    &'static str,
    Option<(&'static str, &'static str)>,
    bool,
);

#[tokio::test]
async fn every_framing_of_an_answer_is_read_and_only_clean_ends_reuse_the_connection() {
    let ok = |answer: &str| (answer.as_bytes().to_vec(), false);
    let cases: Vec<Case> = vec![
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            Method::GET,
            200,
            "hello",
            None,
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: abc\r\n\r\n",
            Method::GET,
            200,
            "hello world",
            Some(("x-checksum", "abc")),
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n",
            Method::GET,
            200,
            "0123456789",
            None,
            true,
        ),
        // Interim answers are skipped.
        (
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
            Method::POST,
            201,
            "ok",
            None,
            true,
        ),
        (
            "HTTP/1.1 204 No Content\r\n\r\n",
            Method::DELETE,
            204,
            "",
            None,
            true,
        ),
        (
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n",
            Method::GET,
            304,
            "",
            None,
            true,
        ),
        // A HEAD answer says the length of the body it does not carry.
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
            Method::HEAD,
            200,
            "",
            None,
            true,
        ),
        // The target says it closes: the connection is not reused.
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbye",
            Method::GET,
            200,
            "bye",
            None,
            false,
        ),
        // HTTP/1.0 closes unless it says keep-alive.
        (
            "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nold",
            Method::GET,
            200,
            "old",
            None,
            false,
        ),
        (
            "HTTP/1.0 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nold",
            Method::GET,
            200,
            "old",
            None,
            true,
        ),
        // A transfer coding overrides a length, which is not trusted further.
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            Method::GET,
            200,
            "abc",
            None,
            false,
        ),
        // `close` wins over `keep-alive`.
        (
            "HTTP/1.0 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive, close\r\n\r\nold",
            Method::GET,
            200,
            "old",
            None,
            false,
        ),
        // Bytes past the answer's end: the connection is not trusted again.
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA",
            Method::GET,
            200,
            "ok",
            None,
            false,
        ),
        (
            "HTTP/1.1 204 No Content\r\n\r\nEXTRA",
            Method::GET,
            204,
            "",
            None,
            false,
        ),
        // Repeated equal lengths are one length.
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nhi",
            Method::GET,
            200,
            "hi",
            None,
            true,
        ),
    ];
    for (answer, method, status, body, trailer, reused) in cases {
        let target = raw_target(vec![
            ok(answer),
            ok("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext"),
        ])
        .await;
        let pool = pool_for(&target);
        let first = exchange(&pool, request(method.clone(), upstream::empty()))
            .await
            .unwrap_or_else(|error| panic!("{answer:?}: {error}"));
        assert_eq!(first.status, status, "{answer:?}");
        assert_eq!(first.body, body, "{answer:?}");
        match trailer {
            Some((name, value)) => assert_eq!(
                first
                    .trailers
                    .as_ref()
                    .and_then(|map| map.get(name))
                    .map(|value| value.as_bytes()),
                Some(value.as_bytes()),
                "{answer:?}"
            ),
            None => assert!(first.trailers.is_none(), "{answer:?}"),
        }
        // The framing headers a client of the edge must not see twice.
        if answer.contains("chunked") {
            assert!(!first.headers.contains_key("content-length"), "{answer:?}");
        }
        let second = exchange(&pool, request(Method::GET, upstream::empty()))
            .await
            .unwrap_or_else(|error| panic!("after {answer:?}: {error}"));
        assert_eq!(second.body, "next", "{answer:?}");
        let connections = if reused { 1 } else { 2 };
        assert_eq!(
            target.accepted.load(Ordering::SeqCst),
            connections,
            "{answer:?}"
        );
    }
}

#[tokio::test]
async fn answers_arriving_a_byte_at_a_time_read_the_same() {
    // Every partial state: a head, a chunk-size line, a chunk's line end and trailers cut
    // anywhere, interim answers before the final one.
    let answers = [
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: abc\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world",
    ];
    for answer in answers {
        let target = raw_target_paced(vec![(answer.as_bytes().to_vec(), false)], true).await;
        let pool = pool_for(&target);
        let received = exchange(&pool, request(Method::GET, upstream::empty()))
            .await
            .unwrap_or_else(|error| panic!("{answer:?}: {error}"));
        assert_eq!(
            (received.status, received.body.as_ref()),
            (200, b"hello world".as_ref())
        );
        assert_eq!(pool.idle_connections(), 1, "{answer:?}");
    }
}

#[tokio::test]
async fn mangled_answers_end_in_an_answer_or_an_error() {
    use rand::SeedableRng;
    let bases = [
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;n=v\r\nhello\r\n0\r\nX-A: b\r\n\r\n",
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 204 No Content\r\nConnection: keep-alive\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nframes",
    ];
    let noise = b"\r\n:; 0123456789aAfFzZ\x00\xff\t,-";
    let mut random = rand::rngs::StdRng::seed_from_u64(7);
    for round in 0..400 {
        let mut answer = bases[round % bases.len()].as_bytes().to_vec();
        common::mangle(&mut answer, &mut random, noise);
        // The target closes after its answer: every exchange must end, one way or the other,
        // and never panic.
        let target = raw_target(vec![(answer.clone(), true)]).await;
        let pool = pool_for(&target);
        let ended = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            exchange(&pool, request(Method::GET, upstream::empty())),
        )
        .await;
        assert!(
            ended.is_ok(),
            "{:?} never ended",
            String::from_utf8_lossy(&answer)
        );
    }
}

#[tokio::test]
async fn a_body_that_runs_to_the_close_ends_there() {
    // Without a length; and under a coding the edge does not know (RFC 9112 section 6.3),
    // whose length does not count.
    for head in [
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: x-custom\r\nContent-Length: 3\r\n\r\n",
    ] {
        let target = raw_target(vec![(
            format!("{head}until the target closes").into_bytes(),
            true,
        )])
        .await;
        let pool = pool_for(&target);
        let answer = exchange(&pool, request(Method::GET, upstream::empty()))
            .await
            .expect("answer");
        assert_eq!(answer.body, "until the target closes", "{head}");
        assert_eq!(pool.idle_connections(), 0);
    }
}

#[tokio::test]
async fn a_large_body_arrives_whole() {
    let body: Vec<u8> = (0..1024 * 1024).map(|index| (index % 251) as u8).collect();
    let mut answer =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    answer.extend_from_slice(&body);
    let target = raw_target(vec![(answer, false)]).await;
    let pool = pool_for(&target);
    let received = exchange(&pool, request(Method::GET, upstream::empty()))
        .await
        .expect("answer");
    assert_eq!(received.body.len(), body.len());
    assert!(received.body == body, "the bytes arrive in order");
    assert_eq!(pool.idle_connections(), 1);
}

#[tokio::test]
async fn answers_that_cannot_be_framed_are_errors_and_their_connections_go() {
    let oversized_head = format!(
        "HTTP/1.1 200 OK\r\nX-Filler: {}\r\nContent-Length: 0\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    // (answer, what the error says)
    let cases = [
        ("HTTP/1.1 abc OK\r\n\r\n", "invalid answer head"),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
            "two different Content-Lengths",
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello",
            "invalid Content-Length",
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
            "invalid chunk size",
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n",
            "chunk was longer than it said",
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            "before the body's end",
        ),
        ("", "without answering"),
        ("HTTP/1.1 200 OK\r\nContent-Len", "mid-head"),
        (
            "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "HTTP/1.0 answer with a transfer coding",
        ),
        // A compression the edge would pass on undone and unnamed; chunks framed twice,
        // or under another coding.
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            "does not undo",
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            "once, and last",
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, x-custom\r\n\r\nabc",
            "once, and last",
        ),
        // A switch of protocols that the request (without `Upgrade`) did not ask for.
        (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            "switched protocols for a request without Upgrade",
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n 5\r\nhello\r\n0\r\n\r\n",
            "invalid chunk size",
        ),
        (oversized_head.as_str(), "larger than 64 KiB"),
    ];
    for (answer, expected) in cases {
        let target = raw_target(vec![(answer.as_bytes().to_vec(), true)]).await;
        let pool = pool_for(&target);
        let error = match exchange(&pool, request(Method::GET, upstream::empty())).await {
            Ok(answer) => panic!("{expected}: answered {} {:?}", answer.status, answer.body),
            Err(error) => error,
        };
        assert!(error.contains(expected), "{expected}: {error}");
        assert_eq!(pool.idle_connections(), 0, "{expected}");
    }
}

#[tokio::test]
async fn request_bodies_go_with_their_length_or_in_chunks() {
    let answer = || {
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
            false,
        )
    };
    let target = raw_target(vec![answer(), answer(), answer(), answer()]).await;
    let pool = pool_for(&target);

    // A buffered body: its length.
    exchange(
        &pool,
        request(Method::POST, upstream::full(Bytes::from_static(b"a=1&b=2"))),
    )
    .await
    .expect("answer");
    // A POST without a body says so.
    exchange(&pool, request(Method::POST, upstream::empty()))
        .await
        .expect("answer");
    // A GET without one says nothing.
    exchange(&pool, request(Method::GET, upstream::empty()))
        .await
        .expect("answer");
    // A body of unknown length streams in chunks.
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    let streaming = ChannelBody(receiver)
        .map_err(|never| match never {})
        .boxed_unsync();
    let sending = tokio::spawn(async move {
        for part in ["first part, ", "second part"] {
            sender
                .send(Bytes::from_static(part.as_bytes()))
                .await
                .expect("send");
            tokio::task::yield_now().await;
        }
    });
    exchange(&pool, request(Method::PUT, streaming))
        .await
        .expect("answer");
    sending.await.expect("sender");

    let requests = target.requests.lock().clone();
    assert_eq!(requests.len(), 4);
    assert!(
        requests[0].starts_with("POST /item?id=7 HTTP/1.1\r\n"),
        "{}",
        requests[0]
    );
    assert!(
        requests[0].contains("content-length: 7\r\n"),
        "{}",
        requests[0]
    );
    assert!(requests[0].ends_with("\r\n\r\na=1&b=2"), "{}", requests[0]);
    assert!(
        requests[1].contains("content-length: 0\r\n"),
        "{}",
        requests[1]
    );
    assert!(!requests[2].contains("content-length"), "{}", requests[2]);
    assert!(
        requests[3].contains("transfer-encoding: chunked\r\n"),
        "{}",
        requests[3]
    );
    assert!(
        requests[3].ends_with("\r\n\r\nc\r\nfirst part, \r\nb\r\nsecond part\r\n0\r\n\r\n"),
        "{:?}",
        requests[3]
    );
    assert_eq!(
        target.accepted.load(Ordering::SeqCst),
        1,
        "one connection for all"
    );
}

#[tokio::test]
async fn a_target_that_answers_before_reading_an_upload_is_heard() {
    // It answers 413 to the head, reads nothing more, and closes.
    let target = raw_target_with(
        vec![(
            b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\ntoo long".to_vec(),
            true,
        )],
        Pace::Early,
    )
    .await;
    let pool = pool_for(&target);
    let (sender, receiver) = tokio::sync::mpsc::channel(64);
    let upload = ChannelBody(receiver)
        .map_err(|never| match never {})
        .boxed_unsync();
    // The client keeps sending, far more than the sockets hold, and never ends.
    let sending = tokio::spawn(async move {
        let part = Bytes::from(vec![b'x'; 64 * 1024]);
        while sender.send(part.clone()).await.is_ok() {}
    });
    let answer = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        exchange(&pool, request(Method::PUT, upload)),
    )
    .await
    .expect("the answer comes before the upload ends")
    .expect("answer");
    assert_eq!(
        (answer.status, answer.body.as_ref()),
        (413, b"too long".as_ref())
    );
    assert_eq!(pool.idle_connections(), 0);
    sending.abort();
}

/// Takes a connection, reads a request's head, and answers at once with the head of a
/// chunked 200: the stream, the body bytes read with the head, and the body's length.
async fn answer_at_once(listener: &TcpListener) -> (TcpStream, Vec<u8>, usize) {
    let (mut stream, _) = listener.accept().await.expect("accept");
    let mut buffer = Vec::new();
    let head = read_request(&mut stream, &mut buffer, true)
        .await
        .expect("head");
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length: "))
        .and_then(|value| value.trim().parse().ok())
        .expect("a length");
    stream
        .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .expect("head");
    let head_end = buffer
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("end")
        + 4;
    (stream, buffer.split_off(head_end), length)
}

/// PUTs 8 MiB of `byte` to the target at `address`, and fails if that takes 10 s.
async fn upload_8_mib(address: SocketAddr, byte: u8) -> Answer {
    let pools = Box::leak(Box::new(Pools::new(PoolSettings::default())));
    let pool = pools.for_target(address, UpstreamProtocol::Http1, None);
    let part = Bytes::from(vec![byte; 64 * 1024]);
    let body = MisstatedBody {
        frames: std::iter::repeat_n(part, 128).collect(),
        said: 128 * 64 * 1024,
    }
    .map_err(|never| match never {})
    .boxed_unsync();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        exchange(&pool, request(Method::PUT, body)),
    )
    .await
    .expect("no deadlock")
    .expect("answer")
}

#[tokio::test]
async fn a_target_that_answers_early_and_reads_on_gets_the_whole_upload() {
    // The target sends its head as soon as it has the request's, then reads the whole
    // body (a declared 8 MiB, more than the sockets hold), then sends its body: how much
    // it read.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let target = tokio::spawn(async move {
        let (mut stream, early, length) = answer_at_once(&listener).await;
        let mut read = early.len();
        let mut chunk = vec![0u8; 64 * 1024];
        while read < length {
            let count = stream.read(&mut chunk).await.expect("read");
            assert!(count > 0, "the upload stopped at {read} of {length}");
            read += count;
        }
        let text = read.to_string();
        let body = format!("{:x}\r\n{text}\r\n0\r\n\r\n", text.len());
        stream.write_all(body.as_bytes()).await.expect("body");
        read
    });
    let answer = upload_8_mib(address, b'u').await;
    assert_eq!(
        (answer.status, answer.body.as_ref()),
        (200, b"8388608".as_ref())
    );
    assert_eq!(target.await.expect("target"), 8 * 1024 * 1024);
}

#[tokio::test]
async fn a_target_that_echoes_an_upload_as_it_reads_it_is_heard_whole() {
    // It answers at once, then sends back each piece of the body as it reads it: after
    // a few MiB it can write no more until the edge reads, and reads no more until then.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let target = tokio::spawn(async move {
        let (mut stream, early, length) = answer_at_once(&listener).await;
        let mut piece = early;
        let mut echoed = 0;
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            if !piece.is_empty() {
                let mut out = format!("{:x}\r\n", piece.len()).into_bytes();
                out.extend_from_slice(&piece);
                out.extend_from_slice(b"\r\n");
                stream.write_all(&out).await.expect("echo");
                echoed += piece.len();
            }
            if echoed >= length {
                break;
            }
            let count = stream.read(&mut chunk).await.expect("read");
            assert!(count > 0, "the upload stopped at {echoed} of {length}");
            piece = chunk[..count].to_vec();
        }
        stream.write_all(b"0\r\n\r\n").await.expect("end");
        echoed
    });
    let answer = upload_8_mib(address, b'e').await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body.len(), 8 * 1024 * 1024);
    assert!(answer.body.iter().all(|&byte| byte == b'e'));
    assert_eq!(target.await.expect("target"), 8 * 1024 * 1024);
}

#[tokio::test]
async fn an_early_answer_whose_target_closes_is_returned_while_the_client_still_uploads() {
    // The target sends a redirect as soon as it has the head, and closes.
    let target = raw_target_with(
        vec![(
            b"HTTP/1.1 302 Found\r\nLocation: /login\r\nContent-Length: 0\r\n\r\n".to_vec(),
            true,
        )],
        Pace::Early,
    )
    .await;
    let pool = pool_for(&target);
    // The client sends a first part, then nothing more for now.
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    sender
        .send(Bytes::from_static(b"first part"))
        .await
        .expect("send");
    let upload = ChannelBody(receiver)
        .map_err(|never| match never {})
        .boxed_unsync();
    let answer = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        exchange(&pool, request(Method::POST, upload)),
    )
    .await
    .expect("the answer does not wait for the client")
    .expect("answer");
    assert_eq!(answer.status, 302);
    assert_eq!(pool.idle_connections(), 0);
    drop(sender);
}

/// A body that says it is `said` bytes long and is `frames`.
struct MisstatedBody {
    frames: std::collections::VecDeque<Bytes>,
    said: u64,
}

impl http_body::Body for MisstatedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        let frame = self.get_mut().frames.pop_front();
        std::task::Poll::Ready(frame.map(|data| Ok(http_body::Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.said)
    }
}

#[tokio::test]
async fn a_body_is_never_sent_past_or_short_of_its_declared_length() {
    let answer = || {
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
            false,
        )
    };
    // (frames, what they say, the error)
    let cases: [(&[&str], u64, &str); 4] = [
        (
            &["twenty bytes of body"],
            10,
            "longer than its declared length",
        ),
        (&["short"], 10, "ended before its declared length"),
        (
            &["0123456789", "more"],
            10,
            "longer than its declared length",
        ),
        (&["01234", "56"], 10, "ended before its declared length"),
    ];
    for (frames, said, expected) in cases {
        let target = raw_target(vec![answer(), answer()]).await;
        let pool = pool_for(&target);
        let body = MisstatedBody {
            frames: frames
                .iter()
                .map(|frame| Bytes::from_static(frame.as_bytes()))
                .collect(),
            said,
        }
        .map_err(|never| match never {})
        .boxed_unsync();
        let sent = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            exchange(&pool, request(Method::POST, body)),
        )
        .await
        .unwrap_or_else(|_| panic!("{frames:?} never ended"));
        let error = match sent {
            Ok(answer) => panic!("{frames:?}: answered {}", answer.status),
            Err(error) => error,
        };
        assert!(
            error.starts_with("body: ") && error.contains(expected),
            "{frames:?}: {error}"
        );
        // The target never reads more than the declared length as this request's body.
        for request in target.requests.lock().iter() {
            assert!(
                request.ends_with("\r\n\r\n0123456789"),
                "{frames:?}: {request:?}"
            );
        }
    }
}

#[tokio::test]
async fn an_idempotent_request_goes_again_when_a_pooled_connection_brings_nothing_back() {
    // The target answers a first request, then reads a second on the same connection and
    // closes it without a word, as one whose keep-alive timeout fell as the request came.
    let answer = |body: &str| {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    for (method, resent) in [
        (Method::GET, true),
        (Method::PUT, true),
        (Method::POST, false),
    ] {
        let target = raw_target(vec![
            (answer("first"), false),
            (Vec::new(), true),
            (answer("again"), false),
        ])
        .await;
        let pool = pool_for(&target);
        let body = || upstream::full(Bytes::from_static(b"x"));
        let first = exchange(&pool, request(method.clone(), body()))
            .await
            .expect("answer");
        assert_eq!(first.body, "first");
        let second = exchange(&pool, request(method.clone(), body())).await;
        if resent {
            assert_eq!(second.expect("sent again").body, "again", "{method}");
            assert_eq!(target.accepted.load(Ordering::SeqCst), 2, "{method}");
        } else {
            // A POST is not: the target may have acted on it.
            let error = second
                .err()
                .unwrap_or_else(|| panic!("{method} was sent again"));
            assert!(error.contains("without answering"), "{method}: {error}");
            assert_eq!(target.accepted.load(Ordering::SeqCst), 1, "{method}");
        }
    }
}

#[tokio::test]
async fn a_protocol_switch_hands_over_its_connection_with_what_followed_the_head() {
    let target = raw_target(vec![(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nfirst frame".to_vec(),
        false,
    )])
    .await;
    let pool = pool_for(&target);
    let mut asking = request(Method::GET, upstream::empty());
    asking
        .headers_mut()
        .insert("upgrade", "websocket".parse().expect("value"));
    asking
        .headers_mut()
        .insert("connection", "upgrade".parse().expect("value"));
    let mut response = pool
        .send(
            asking,
            tokio::time::Instant::now() + std::time::Duration::from_secs(30),
        )
        .await
        .expect("answer");
    assert_eq!(response.status(), 101);
    let connection =
        securecart_edge::pool::take_switched(response.body_mut()).expect("the target's connection");
    let (_stream, early) = connection.into_parts();
    assert_eq!(early, "first frame");
}

/// A body of unknown length made of a channel's parts, as a client's chunked upload.
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        self.get_mut()
            .0
            .poll_recv(context)
            .map(|part| part.map(|part| Ok(http_body::Frame::data(part))))
    }
}
