//! The edge's client connections on arbitrary bytes: `server::serve` (HTTP/1.1, or HTTP/2
//! for bytes that open with its preface or a connection whose ALPN chose it) must answer,
//! refuse or close without panicking, and end: on a paused clock its timeouts pass as soon
//! as nothing else can happen, so a connection that outlives ten minutes of them hangs.
//! What an HTTP/1 connection writes back is HTTP/1.1 answers. The service reads each
//! request's body whole within the header read timeout (as the upstream stage buffers
//! one) and answers by the path: with a length, in chunks (no length known), or with no
//! body.
//!
//! Each request also goes through desync mitigation (`guard::check`) in every mode, as the
//! pipeline's guard stage does: what any mode routes is framed one way (one `Host`, at most
//! one length said once, never both a length and chunks, chunks named once); `strictest`
//! routes compliant requests only; what a stricter mode routes, a laxer one routes; a
//! severe request is routed by none.
//!
//! The first byte chooses how the client behaves: bit 0, whether it closes its side once
//! its bytes are sent (else it waits for the server to close); bit 1, whether the
//! connection is HTTP/2 by ALPN.
#![no_main]

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use securecart_edge::server::{self, ClientBody, Settings};
use securecart_edge::upstream::{BoxError, EdgeBody, empty, full};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};

/// The server's end of an in-memory connection.
struct Client(DuplexStream);

impl AsyncRead for Client {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(context, buffer)
    }
}

impl AsyncWrite for Client {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(context, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(context)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(context)
    }
}

impl server::Stream for Client {
    fn poll_idle(&mut self, _context: &mut Context<'_>) -> Poll<io::Result<bool>> {
        // Cannot tell without reading, as a TLS session: the server reads at once.
        Poll::Ready(Ok(false))
    }
}

/// A body of unknown length, so answered in chunks: its frames, last first.
struct Chunks(Vec<Bytes>);

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _context: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.0.pop().map(|data| Ok(http_body::Frame::data(data))))
    }
}

/// The length read, in chunks.
fn chunks_of(length: usize) -> EdgeBody {
    Chunks(vec![
        Bytes::from_static(b"\n"),
        Bytes::from(length.to_string()),
    ])
    .boxed_unsync()
}

/// Checks desync mitigation's claims on `request`'s head (see the module's documentation);
/// whether `defensive` mode, the default, routes it.
fn guarded(request: &http::Request<ClientBody>) -> bool {
    use securecart_edge::guard::{self, Classification, DesyncMode};
    let bare_line_feeds = request
        .extensions()
        .get::<server::BareLineFeeds>()
        .is_some();
    let routed = [
        DesyncMode::Strictest,
        DesyncMode::Defensive,
        DesyncMode::Monitor,
    ]
    .map(|mode| {
        let mut headers = request.headers().clone();
        let verdict = guard::check(
            mode,
            request.method(),
            request.version(),
            &mut headers,
            bare_line_feeds,
        );
        match &verdict {
            Ok(verdict) => {
                assert!(headers.get_all(http::header::HOST).iter().count() <= 1);
                let lengths: Vec<_> = headers
                    .get_all(http::header::CONTENT_LENGTH)
                    .iter()
                    .collect();
                assert!(lengths.len() <= 1, "{mode:?}: lengths {lengths:?}");
                assert!(
                    lengths
                        .iter()
                        .all(|length| !length.as_bytes().contains(&b',')),
                    "{mode:?}: {lengths:?}"
                );
                let codings: Vec<String> = headers
                    .get_all(http::header::TRANSFER_ENCODING)
                    .iter()
                    .flat_map(|value| value.as_bytes().split(|&byte| byte == b','))
                    .map(|coding| String::from_utf8_lossy(coding.trim_ascii()).to_ascii_lowercase())
                    .filter(|coding| !coding.is_empty())
                    .collect();
                if !codings.is_empty() {
                    assert!(lengths.is_empty(), "{mode:?}: both framings");
                    if matches!(
                        request.version(),
                        http::Version::HTTP_10 | http::Version::HTTP_11
                    ) {
                        assert_eq!(codings, ["chunked"], "{mode:?}");
                    }
                }
                if mode == DesyncMode::Strictest {
                    assert_eq!(verdict.reason, None);
                }
                if let Some(reason) = verdict.reason {
                    assert_ne!(reason.classification(), Classification::Severe);
                }
            }
            Err(refused) => {
                assert_eq!(refused.error.status(), http::StatusCode::BAD_REQUEST);
            }
        }
        verdict.is_ok()
    });
    let [strictest, defensive, monitor] = routed;
    assert!(
        !strictest || defensive,
        "strictest routes what defensive refuses"
    );
    assert!(
        !defensive || monitor,
        "defensive routes what monitor refuses"
    );
    defensive
}

async fn answer(request: http::Request<ClientBody>) -> http::Response<EdgeBody> {
    if !guarded(&request) {
        let mut response = http::Response::new(empty());
        *response.status_mut() = http::StatusCode::BAD_REQUEST;
        return response;
    }
    let path = request.uri().path().to_owned();
    // Within the header read timeout, as the pipeline reads a body it buffers.
    let read = tokio::time::timeout(
        Duration::from_secs(10),
        http_body_util::Limited::new(request.into_body(), 1 << 20).collect(),
    )
    .await
    .map(|collected| collected.map(|collected| collected.to_bytes().len()));
    let (status, body) = match (path.as_str(), read) {
        (_, Err(_)) => (408, empty()),
        (_, Ok(Err(_))) => (400, empty()),
        ("/nothing", Ok(Ok(_))) => (204, empty()),
        ("/chunks", Ok(Ok(length))) => (200, chunks_of(length)),
        (_, Ok(Ok(length))) => (200, full(Bytes::from(format!("{length}")))),
    };
    let mut response = http::Response::new(body);
    *response.status_mut() = http::StatusCode::from_u16(status).expect("a status");
    response
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, bytes)) = data.split_first() else {
        return;
    };
    let (closes, http2) = (flags & 1 == 1, flags & 2 == 2);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let settings = Settings {
            header_read_timeout: Duration::from_secs(10),
            max_headers: 100,
            max_head_bytes: 64 * 1024,
            idle_timeout: Duration::from_secs(60),
            client_keep_alive: Duration::from_secs(3600),
        };
        let (client, server_end) = tokio::io::duplex(64 * 1024);
        let (_drain, draining) = tokio::sync::watch::channel(false);
        let served = tokio::spawn(server::serve(
            Box::new(Client(server_end)),
            http2,
            settings,
            answer,
            draining,
        ));
        let (mut from_server, mut to_server) = tokio::io::split(client);
        let writing = async {
            let _ = to_server.write_all(bytes).await;
            if closes {
                let _ = to_server.shutdown().await;
            }
            to_server
        };
        let reading = async {
            let mut written = Vec::new();
            let _ = from_server.read_to_end(&mut written).await;
            written
        };
        let ended = tokio::time::timeout(Duration::from_secs(600), async {
            let (_to_server, written) = tokio::join!(writing, reading);
            // (A panic aborts the process first: libFuzzer's hook.)
            let _refused = served.await.expect("the server's task");
            written
        })
        .await;
        let written = ended.expect("the connection ends");
        let preface = bytes.starts_with(b"PRI * HTTP/2.0");
        if !http2 && !preface && !written.is_empty() {
            assert!(
                written.starts_with(b"HTTP/1.1 "),
                "not an HTTP/1.1 answer: {:?}",
                String::from_utf8_lossy(&written[..written.len().min(200)])
            );
        }
    });
});
