//! TLS to targets, as ALB's HTTPS target groups speak it: the settings of a group, the
//! client configuration they make, and the stream a connection to a target is (plain TCP or
//! a TLS session over it).
//!
//! ALB does not validate its targets' certificates (the connection is encrypted, the target
//! not authenticated), and nginx's `proxy_ssl_verify` is off by default; HAProxy asks for a
//! CA file. A group here says which it wants: [`TargetVerify::Any`], or roots the
//! certificates must chain to (a CA file, or the system's store), checked against the server
//! name.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::RootCertStore;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::config::UpstreamProtocol;

/// TLS to a target group's targets: made with [`TargetTls::new`], which checks the server
/// name and builds the client's configuration once (its session cache lets new connections
/// resume a session rather than run a whole handshake).
#[derive(Clone)]
pub struct TargetTls {
    server_name: Option<ServerName<'static>>,
    verify: TargetVerify,
    /// The client configurations offering HTTP/1.1 and HTTP/2 by ALPN.
    http1: Arc<rustls::ClientConfig>,
    http2: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for TargetTls {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("TargetTls")
            .field("server_name", &self.server_name)
            .field("verify", &self.verify)
            .finish_non_exhaustive()
    }
}

/// Equal when they send the same name and accept the same certificates (a reload that
/// reads the same settings keeps its targets, their health and their connections).
impl PartialEq for TargetTls {
    fn eq(&self, other: &Self) -> bool {
        self.server_name == other.server_name && self.verify == other.verify
    }
}

impl Eq for TargetTls {}

impl std::hash::Hash for TargetTls {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.server_name.hash(state);
        self.verify.hash(state);
    }
}

impl TargetTls {
    /// TLS that sends `server_name` as SNI (a verified certificate must carry it), or, with
    /// none, no SNI (a verified certificate must carry the target's IP address), and
    /// accepts the certificates `verify` says.
    pub fn new(server_name: Option<&str>, verify: TargetVerify) -> Result<Self, String> {
        let server_name = server_name
            .map(|name| {
                ServerName::try_from(name.to_owned())
                    .map_err(|_| format!("`{name}` is not a server name"))
            })
            .transpose()?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = |alpn: &[u8]| -> Result<Arc<rustls::ClientConfig>, String> {
            let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
                .with_safe_default_protocol_versions()
                .map_err(|error| error.to_string())?;
            let mut config = match &verify {
                TargetVerify::Any => {
                    builder
                        .dangerous()
                        .with_custom_certificate_verifier(Arc::new(AnyCertificate(Arc::clone(
                            &provider,
                        ))))
                }
                TargetVerify::Roots(roots) => builder.with_root_certificates(Arc::clone(roots)),
            }
            .with_no_client_auth();
            config.alpn_protocols = vec![alpn.to_vec()];
            Ok(Arc::new(config))
        };
        Ok(Self {
            http1: config(b"http/1.1")?,
            http2: config(b"h2")?,
            server_name,
            verify,
        })
    }

    /// Which certificates it accepts.
    pub fn verify(&self) -> &TargetVerify {
        &self.verify
    }
}

/// Which certificates of its targets a group accepts.
#[derive(Clone)]
pub enum TargetVerify {
    /// Any: the target proves it holds its certificate's key, but the certificate is not
    /// checked (ALB's way with its targets).
    Any,
    /// Those that chain to one of these roots and name the server.
    Roots(Arc<RootCertStore>),
}

impl std::fmt::Debug for TargetVerify {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Any => formatter.write_str("Any"),
            Self::Roots(roots) => write!(formatter, "Roots({} certificates)", roots.len()),
        }
    }
}

/// Equal when they accept the same certificates (a reload that reads the same CA file keeps
/// its targets, their health and their connections).
impl PartialEq for TargetVerify {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Any, Self::Any) => true,
            (Self::Roots(mine), Self::Roots(theirs)) => mine.roots == theirs.roots,
            _ => false,
        }
    }
}

impl Eq for TargetVerify {}

impl std::hash::Hash for TargetVerify {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match self {
            Self::Any => 0u8.hash(state),
            Self::Roots(roots) => {
                1u8.hash(state);
                roots.roots.hash(state);
            }
        }
    }
}

/// The root certificates of a PEM file's contents (`source` names it in errors).
pub fn roots_from_pem(source: &str, pem: &[u8]) -> Result<RootCertStore, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = RootCertStore::empty();
    for certificate in rustls::pki_types::CertificateDer::pem_slice_iter(pem) {
        let certificate =
            certificate.map_err(|error| format!("{source}: not a PEM certificate: {error}"))?;
        roots
            .add(certificate)
            .map_err(|error| format!("{source}: not a usable CA certificate: {error}"))?;
    }
    if roots.is_empty() {
        return Err(format!("{source}: holds no certificate"));
    }
    Ok(roots)
}

/// How a target pool opens its TLS sessions.
#[derive(Clone)]
pub(crate) struct Connector {
    connector: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
    protocol: UpstreamProtocol,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Connector")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// The connector to a target at `address`, offering `protocol` by ALPN.
    pub(crate) fn new(
        tls: &TargetTls,
        address: std::net::IpAddr,
        protocol: UpstreamProtocol,
    ) -> Self {
        let config = match protocol {
            UpstreamProtocol::Http1 => &tls.http1,
            UpstreamProtocol::Http2 => &tls.http2,
        };
        Self {
            connector: tokio_rustls::TlsConnector::from(Arc::clone(config)),
            name: tls
                .server_name
                .clone()
                .unwrap_or_else(|| ServerName::IpAddress(address.into())),
            protocol,
        }
    }

    /// A TLS session over `stream`, its handshake done. HTTP/2 needs the target to have
    /// agreed to it by ALPN (RFC 9113 section 3.2); HTTP/1.1 is what a target that ignores
    /// ALPN speaks.
    pub(crate) async fn connect(&self, stream: TcpStream) -> io::Result<Stream> {
        let session = self.connector.connect(self.name.clone(), stream).await?;
        if self.protocol == UpstreamProtocol::Http2
            && session.get_ref().1.alpn_protocol() != Some(b"h2")
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the target did not agree to HTTP/2 by ALPN",
            ));
        }
        Ok(Stream::Tls(Box::new(session)))
    }
}

/// A connection to a target: plain TCP, or TLS over it.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP (boxed: a session is large, and most connections are plain).
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// The TCP connection under it.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(stream) => stream,
            Self::Tls(session) => session.get_ref().0,
        }
    }

    /// Whether the TLS session holds what the target sent and no read took yet (data
    /// decrypted with the record before it, or the target's `close_notify`), which a look
    /// at the socket does not see.
    pub fn holds_unread(&self) -> bool {
        match self {
            Self::Plain(_) => false,
            // rustls wants to read only with no plaintext waiting and no close received.
            Self::Tls(session) => !session.get_ref().1.wants_read(),
        }
    }
}

impl Drop for Stream {
    /// A TLS session ends with its `close_notify` (RFC 8446 §6.1), as nginx's and HAProxy's
    /// connections to their targets do, when it can go at once: without it a target sees
    /// its session cut off, and may log an error for each connection the edge lets go (an
    /// idle one, or a health check's). Nothing is sent while records of a request broken
    /// off are still waiting (they would carry on a request nobody wants), nor when the
    /// socket would block.
    fn drop(&mut self) {
        let Self::Tls(session) = self else {
            return;
        };
        let (tcp, connection) = session.get_mut();
        if connection.wants_write() {
            return;
        }
        connection.send_close_notify();
        let _ = connection.write_tls(&mut WriteNow(tcp));
    }
}

/// Writes to a socket what it takes at once, blocking never (see `Stream`'s `Drop`).
struct WriteNow<'a>(&'a TcpStream);

impl io::Write for WriteNow<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.0.try_write(data)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_read(context, buffer),
            Self::Tls(session) => Pin::new(session.as_mut()).poll_read(context, buffer),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_write(context, data),
            Self::Tls(session) => Pin::new(session.as_mut()).poll_write(context, data),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        slices: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_write_vectored(context, slices),
            Self::Tls(session) => Pin::new(session.as_mut()).poll_write_vectored(context, slices),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(stream) => stream.is_write_vectored(),
            Self::Tls(session) => session.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_flush(context),
            Self::Tls(session) => Pin::new(session.as_mut()).poll_flush(context),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_shutdown(context),
            Self::Tls(session) => Pin::new(session.as_mut()).poll_shutdown(context),
        }
    }
}

/// The certificate check of [`TargetVerify::Any`]: any certificate, as long as the target
/// proves it holds its key (the handshake's signatures are verified). (`securecart-dns`'s
/// HTTPS health checks have their own, as Route 53's accept any certificate too: neither
/// crate depends on the other.)
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &rustls::pki_types::CertificateDer<'_>,
        signature: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            certificate,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &rustls::pki_types::CertificateDer<'_>,
        signature: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            certificate,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
