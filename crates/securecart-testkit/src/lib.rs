//! Test support shared by the crates' integration tests: real servers on ephemeral loopback
//! ports and a small HTTP client that returns what a test needs to assert on.
//!
//! Only tests depend on this crate.

use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode, Version};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A server started for a test; it stops when dropped.
#[derive(Debug)]
pub struct TestServer {
    /// Where it listens.
    pub address: SocketAddr,
    task: JoinHandle<()>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestServer {
    /// Stops the server like a process that exits: the listener closes and so does every
    /// connection, idle keep-alive ones included.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
        self.task.abort();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves an axum router on an ephemeral port of `ip` (such as `127.0.0.1`).
pub async fn serve(ip: &str, router: axum::Router) -> TestServer {
    let listener = TcpListener::bind(format!("{ip}:0"))
        .await
        .expect("bind an ephemeral port");
    let address = listener.local_addr().expect("local address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
    });
    TestServer {
        address,
        task,
        stop: Some(stop),
    }
}

/// Sends raw bytes on a new connection to `address` and reads until the server closes it
/// (at most 10 s): for heads a client library would not write, and answers read as sent.
pub async fn raw_exchange(address: &str, bytes: &[u8]) -> String {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    stream.write_all(bytes).await.expect("write");
    read_to_close(&mut stream).await
}

/// What the server sends on `stream` until it closes the connection (at most 10 s), as
/// text.
pub async fn read_to_close(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> String {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .expect("read");
    String::from_utf8_lossy(&answer).into_owned()
}

/// A server on `ip` that accepts connections and never answers, holding them open: its
/// address, and its task (abort it to close them).
pub async fn silent(ip: &str) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind(format!("{ip}:0"))
        .await
        .expect("bind an ephemeral port");
    let address = listener.local_addr().expect("local address");
    let held = tokio::spawn(async move {
        let mut connections = Vec::new();
        while let Ok((connection, _)) = listener.accept().await {
            connections.push(connection);
        }
    });
    (address, held)
}

/// A port that was free a moment ago on `ip`: for configurations that need a fixed port
/// before the server that uses it starts.
///
/// It is chosen at random below the kernel's ephemeral range (Linux's starts at 32768),
/// from which every connection takes its own port: a test that probes a port of that
/// range before its server has bound it can connect to itself (TCP's simultaneous open
/// on loopback), which looks like a listener, and keeps the port from the server.
pub fn free_port(ip: &str) -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new();
    for attempt in 0..10_000u64 {
        let mut hasher = random.build_hasher();
        hasher.write_u64(attempt);
        let port = 20_000 + (hasher.finish() % 12_000) as u16;
        if StdTcpListener::bind((ip, port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on {ip} between 20000 and 31999");
}

/// What a test gets back from a request.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
    /// The HTTP version of the response.
    pub version: Version,
    /// The trailers, if the body ended with some.
    pub trailers: Option<HeaderMap>,
}

impl Reply {
    /// The body as JSON; panics with the body when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "not JSON ({error}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

/// An HTTP client for tests, HTTP/1.1 or HTTP/2 (prior knowledge).
#[derive(Debug, Clone)]
pub struct TestClient {
    client: Client<HttpConnector, Full<Bytes>>,
    /// The cookies the servers set, by name, in the order first set.
    cookies: Vec<(String, String)>,
}

impl TestClient {
    /// An HTTP/1.1 client.
    pub fn http1() -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
            cookies: Vec::new(),
        }
    }

    /// An HTTP/1.1 client whose connections leave from `source` (any 127.x.y.z), as a
    /// client elsewhere on the network would.
    pub fn http1_from(source: std::net::IpAddr) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_local_address(Some(source));
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            cookies: Vec::new(),
        }
    }

    /// An HTTP/2 client speaking cleartext HTTP/2 from the first byte.
    pub fn http2() -> Self {
        Self {
            client: Client::builder(TokioExecutor::new())
                .http2_only(true)
                .build(HttpConnector::new()),
            cookies: Vec::new(),
        }
    }

    /// Sends a request; `headers` are (name, value) pairs. Keeps the cookies the servers
    /// set and sends them back, like a browser (without domains, paths or expiry).
    pub async fn send(
        &mut self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(
                HeaderName::from_bytes(name.as_bytes()).expect("header name"),
                HeaderValue::from_str(value).expect("header value"),
            );
        }
        if !self.cookies.is_empty() {
            let cookies: Vec<String> = self
                .cookies
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect();
            request = request.header("cookie", cookies.join("; "));
        }
        if !body.is_empty()
            && !headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        {
            request = request.header("content-type", "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_owned())))
            .expect("request");
        let response = tokio::time::timeout(Duration::from_secs(30), self.client.request(request))
            .await
            .unwrap_or_else(|_| panic!("{url}: no answer in 30 s"))
            .unwrap_or_else(|error| panic!("{url}: {error:?}"));
        let status = response.status();
        let version = response.version();
        let headers = response.headers().clone();
        for cookie in headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|value| value.to_str().ok())
        {
            if let Some((name, value)) = cookie
                .split(';')
                .next()
                .and_then(|pair| pair.split_once('='))
            {
                match self
                    .cookies
                    .iter_mut()
                    .find(|(known, _)| known == name.trim())
                {
                    Some(known) => known.1 = value.trim().to_owned(),
                    None => self
                        .cookies
                        .push((name.trim().to_owned(), value.trim().to_owned())),
                }
            }
        }
        let collected = response.into_body().collect().await.expect("body");
        let trailers = collected.trailers().cloned();
        Reply {
            status,
            headers,
            body: collected.to_bytes(),
            version,
            trailers,
        }
    }

    /// GET.
    pub async fn get(&mut self, url: &str) -> Reply {
        self.send(Method::GET, url, &[], "").await
    }

    /// POST with a JSON body.
    pub async fn post(&mut self, url: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        self.send(Method::POST, url, headers, body).await
    }

    /// Forgets every cookie.
    pub fn forget_cookies(&mut self) {
        self.cookies.clear();
    }

    /// The value of a cookie the servers set.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(known, _)| known == name)
            .map(|(_, value)| value.as_str())
    }
}

/// What a TLS request saw: the answer, and what the handshake agreed on.
#[derive(Debug, Clone)]
pub struct TlsReply {
    /// The answer.
    pub reply: Reply,
    /// The ALPN protocol agreed, if any.
    pub alpn: Option<Vec<u8>>,
    /// The TLS version agreed.
    pub tls_version: Option<rustls::ProtocolVersion>,
}

/// One GET over TLS to `address`, sending `server_name` as SNI and trusting only the
/// certificates in `trusted_pem`. `alpn` lists the protocols offered (`h2` makes the
/// request HTTP/2); `tls12_only` limits the client to TLS 1.2.
pub async fn tls_get(
    address: SocketAddr,
    server_name: &str,
    trusted_pem: &[u8],
    path: &str,
    alpn: &[&[u8]],
    tls12_only: bool,
) -> Result<TlsReply, String> {
    let request = TlsRequest {
        method: Method::GET,
        path,
        headers: &[],
        body: "",
    };
    tls_send(address, server_name, trusted_pem, request, alpn, tls12_only).await
}

/// A request [`tls_send`] sends.
#[derive(Debug, Clone)]
pub struct TlsRequest<'a> {
    /// Its method.
    pub method: Method,
    /// Its path (and query).
    pub path: &'a str,
    /// Headers besides `Host`.
    pub headers: &'a [(&'a str, &'a str)],
    /// Its body.
    pub body: &'a str,
}

/// One request over TLS, as [`tls_get`] sends a GET.
pub async fn tls_send(
    address: SocketAddr,
    server_name: &str,
    trusted_pem: &[u8],
    sent: TlsRequest<'_>,
    alpn: &[&[u8]],
    tls12_only: bool,
) -> Result<TlsReply, String> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls_pki_types::CertificateDer::pem_slice_iter(trusted_pem) {
        roots
            .add(certificate.map_err(|error| error.to_string())?)
            .map_err(|error| error.to_string())?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|error| error.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let name = rustls_pki_types::ServerName::try_from(server_name.to_owned())
        .map_err(|error| error.to_string())?;
    let tcp = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|error| error.to_string())?;
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|error| error.to_string())?;
    let (_, session) = tls.get_ref();
    let agreed = session.alpn_protocol().map(<[u8]>::to_vec);
    let tls_version = session.protocol_version();
    let io = hyper_util::rt::TokioIo::new(tls);
    let uri = format!("https://{server_name}{}", sent.path);
    let response = if agreed.as_deref() == Some(b"h2") {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|error| error.to_string())?;
        tokio::spawn(connection);
        let mut request = Request::builder().method(sent.method.clone()).uri(uri);
        for (name, value) in sent.headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(sent.body.to_owned())))
            .map_err(|error| error.to_string())?;
        sender
            .send_request(request)
            .await
            .map_err(|error| error.to_string())?
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|error| error.to_string())?;
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(sent.method.clone())
            .uri(sent.path)
            .header("host", server_name);
        for (name, value) in sent.headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(sent.body.to_owned())))
            .map_err(|error| error.to_string())?;
        sender
            .send_request(request)
            .await
            .map_err(|error| error.to_string())?
    };
    let status = response.status();
    let version = response.version();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|error| error.to_string())?
        .to_bytes();
    Ok(TlsReply {
        reply: Reply {
            status,
            headers,
            body,
            version,
            trailers: None,
        },
        alpn: agreed,
        tls_version,
    })
}

/// A server speaking TLS, started for a test; it stops when dropped.
#[derive(Debug)]
pub struct TlsTestServer {
    /// Where it listens.
    pub address: SocketAddr,
    /// The TLS connections it accepted (their handshakes done).
    pub connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for TlsTestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a [`serve_tls`] server's handlers can read of a request's TLS session, as an
/// extension of the request.
#[derive(Debug, Clone)]
pub struct TlsSession {
    /// The server name the client sent (SNI), if any.
    pub server_name: Option<String>,
    /// The protocol agreed by ALPN, if any.
    pub alpn: Option<String>,
}

/// A TLS server's configuration: the certificate chain and key of `chain_pem` and
/// `key_pem`, offering the protocols of `alpn` (none: no ALPN).
pub fn tls_server_config(
    chain_pem: &[u8],
    key_pem: &[u8],
    alpn: &[&[u8]],
) -> std::sync::Arc<rustls::ServerConfig> {
    use rustls_pki_types::pem::PemObject;
    let chain = rustls_pki_types::CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .expect("a PEM certificate chain");
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key_pem).expect("a PEM key");
    let mut config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("a certificate and its key");
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    std::sync::Arc::new(config)
}

/// Serves an axum router over TLS on an ephemeral port of `ip`, with the certificate chain
/// and key of `chain_pem` and `key_pem`: HTTP/2 to clients that offer `h2` by ALPN,
/// HTTP/1.1 to the others. Each request carries its session's [`TlsSession`].
pub async fn serve_tls(
    ip: &str,
    router: axum::Router,
    chain_pem: &[u8],
    key_pem: &[u8],
) -> TlsTestServer {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls_server_config(
        chain_pem,
        key_pem,
        &[b"h2", b"http/1.1"],
    ));
    let listener = TcpListener::bind(format!("{ip}:0"))
        .await
        .expect("bind an ephemeral port");
    let address = listener.local_addr().expect("local address");
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&connections);
    let task = tokio::spawn(async move {
        let mut served = tokio::task::JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let router = router.clone();
            let counted = std::sync::Arc::clone(&counted);
            served.spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let (_, session) = stream.get_ref();
                let tls = TlsSession {
                    server_name: session.server_name().map(str::to_owned),
                    alpn: session
                        .alpn_protocol()
                        .map(|alpn| String::from_utf8_lossy(alpn).into_owned()),
                };
                let h2 = tls.alpn.as_deref() == Some("h2");
                let service = hyper::service::service_fn(
                    move |mut request: Request<hyper::body::Incoming>| {
                        request.extensions_mut().insert(tls.clone());
                        let mut router = router.clone();
                        tower_service::Service::call(
                            &mut router,
                            request.map(axum::body::Body::new),
                        )
                    },
                );
                let io = hyper_util::rt::TokioIo::new(stream);
                if h2 {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, service)
                        .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                }
            });
        }
    });
    TlsTestServer {
        address,
        connections,
        task,
    }
}
