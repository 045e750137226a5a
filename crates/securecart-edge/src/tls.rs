//! TLS termination with rustls (ring): TLS 1.2 and 1.3, ALPN (`h2`, `http/1.1`), and SNI
//! over several certificates, like an ALB listener's certificate list.
//!
//! For each handshake the resolver picks the first certificate (in configuration order)
//! that is valid for the client's server name, checked with webpki against the
//! certificate's subject alternative names, and the first certificate when the client sends
//! no name or no certificate fits. A reload swaps a listener's certificates
//! ([`Certificates`]): handshakes from then on use the new ones, sessions already open keep
//! theirs.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::TlsAcceptor;

/// A listener's certificates, and what it asks of its clients' own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// The certificates, the first being the default.
    pub certificates: Vec<CertificatePem>,
    /// Mutual TLS (ALB's mutual authentication).
    pub client_auth: ClientAuth,
    /// The versions and protocols offered.
    pub policy: TlsPolicy,
}

/// What a listener's handshakes offer (ALB's security policy and its HTTP/2 attribute).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsPolicy {
    /// Only TLS 1.3 (ALB's `ELBSecurityPolicy-TLS13-1-3-2021-06`); else TLS 1.2 and 1.3,
    /// with rustls's safe cipher suites only.
    pub tls13_only: bool,
    /// Whether HTTP/2 is offered by ALPN (ALB's `routing.http2.enabled`); else only
    /// HTTP/1.1.
    pub http2: bool,
}

impl Default for TlsPolicy {
    fn default() -> Self {
        Self {
            tls13_only: false,
            http2: true,
        }
    }
}

/// What a listener asks of its clients' certificates (ALB's mutual authentication modes).
/// A client's certificate goes to the targets in [`CLIENT_CERTIFICATE_HEADER`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// None is asked for.
    #[default]
    Off,
    /// One is asked for, and sent on to the targets unchecked (a client without one is
    /// served too): the application verifies it (ALB's passthrough).
    Passthrough,
    /// One is required, chaining to a root of this trust store (PEM): a handshake without
    /// one, or with another, fails (ALB's verify with a trust store).
    Verify {
        /// Where the trust store came from, for errors.
        source: String,
        /// Its CA certificates, in PEM.
        trust_store: Vec<u8>,
    },
}

/// The header that carries a client's certificate to the targets (ALB's
/// `X-Amzn-Mtls-Clientcert`): its chain, leaf first, in PEM, percent-encoded
/// ([`client_certificate`]). A client's own header of that name is removed on every
/// listener of an edge with mutual TLS, as the request comes in.
pub const CLIENT_CERTIFICATE_HEADER: &str = "x-securecart-mtls-clientcert";

/// A certificate chain and its private key, in PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct CertificatePem {
    /// Where it came from, for errors (a file name, or `self-signed`).
    pub source: String,
    /// The chain, leaf first.
    pub chain: Vec<u8>,
    /// The private key.
    pub key: Vec<u8>,
}

impl std::fmt::Debug for CertificatePem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("CertificatePem")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A listener has TLS but no certificate.
    #[error("a TLS listener needs at least one certificate")]
    NoCertificate,
    /// A certificate chain holds no certificate or is not PEM.
    #[error("{0}: no PEM certificate found")]
    NoChain(String),
    /// A private key is missing or not PEM.
    #[error("{0}: no PEM private key found")]
    NoKey(String),
    /// rustls refused the chain or the key (for example a key that does not match).
    #[error("{source_name}: {error}")]
    Rustls {
        /// Where the certificate came from.
        source_name: String,
        /// rustls's reason.
        error: rustls::Error,
    },
    /// A self-signed certificate could not be made.
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(String),
    /// A trust store holds no CA certificate rustls takes.
    #[error("{0}: {1}")]
    TrustStore(String, String),
}

/// The source of a [`self_signed`] certificate.
const SELF_SIGNED: &str = "self-signed";

impl TlsConfig {
    /// Whether the listener has only certificates made up on the spot: each configuration
    /// built makes new ones, so a reload keeps those in force rather than swap them.
    pub fn is_self_signed(&self) -> bool {
        self.certificates
            .iter()
            .all(|certificate| certificate.source == SELF_SIGNED)
    }
}

/// A self-signed certificate for `names` (DNS names or IP addresses), for listeners that
/// must work out of the box on a machine without certificates.
pub fn self_signed(names: &[String]) -> Result<CertificatePem, TlsError> {
    let generated = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|error| TlsError::Generate(error.to_string()))?;
    Ok(CertificatePem {
        source: SELF_SIGNED.to_owned(),
        chain: generated.cert.pem().into_bytes(),
        key: generated.signing_key.serialize_pem().into_bytes(),
    })
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The protocol version and cipher suite a session agreed, as names (`TLSv1.3`,
/// `TLS13_AES_128_GCM_SHA256`).
pub fn agreed(session: &rustls::ServerConnection) -> Option<(&'static str, &'static str)> {
    let version = match session.protocol_version()? {
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
        _ => "TLS",
    };
    let suite = session
        .negotiated_cipher_suite()
        .and_then(|suite| suite.suite().as_str())
        .unwrap_or("");
    Some((version, suite))
}

/// A listener's certificates in force, which a reload swaps.
pub type Certificates = Arc<arc_swap::ArcSwap<Vec<Arc<CertifiedKey>>>>;

/// Picks a certificate by server name.
#[derive(Debug)]
struct SniResolver {
    certificates: Certificates,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = client_hello
            .server_name()
            .and_then(|name| ServerName::try_from(name).ok());
        let fits = |certified: &&Arc<CertifiedKey>| {
            let Some(name) = &name else { return false };
            certified
                .end_entity_cert()
                .ok()
                .and_then(|leaf| webpki::EndEntityCert::try_from(leaf).ok())
                .is_some_and(|leaf| leaf.verify_is_valid_for_subject_name(name).is_ok())
        };
        let certificates = self.certificates.load();
        certificates
            .iter()
            .find(fits)
            .or_else(|| certificates.first())
            .cloned()
    }
}

/// The acceptor of a TLS listener, and its certificates, which [`certified`] and a store
/// into them replace.
pub fn acceptor(config: &TlsConfig) -> Result<(TlsAcceptor, Certificates), TlsError> {
    let provider = provider();
    let certificates: Certificates = Arc::new(arc_swap::ArcSwap::from_pointee(certified(config)?));
    let verifier = client_verifier(&config.client_auth, &provider)?;
    let versions: &[&rustls::SupportedProtocolVersion] = if config.policy.tls13_only {
        &[&rustls::version::TLS13]
    } else {
        rustls::DEFAULT_VERSIONS
    };
    let mut server = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|error| TlsError::Rustls {
            source_name: "protocol versions".to_owned(),
            error,
        })?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(SniResolver {
            certificates: Arc::clone(&certificates),
        }));
    server.alpn_protocols = if config.policy.http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok((TlsAcceptor::from(Arc::new(server)), certificates))
}

/// How a listener checks its clients' certificates.
fn client_verifier(
    client_auth: &ClientAuth,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    match client_auth {
        ClientAuth::Off => Ok(Arc::new(rustls::server::NoClientAuth)),
        ClientAuth::Passthrough => Ok(Arc::new(AnyClient(Arc::clone(provider)))),
        ClientAuth::Verify {
            source,
            trust_store,
        } => {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in CertificateDer::pem_slice_iter(trust_store) {
                let certificate = certificate.map_err(|_| {
                    TlsError::TrustStore(source.clone(), "not PEM certificates".to_owned())
                })?;
                roots
                    .add(certificate)
                    .map_err(|error| TlsError::TrustStore(source.clone(), error.to_string()))?;
            }
            if roots.is_empty() {
                return Err(TlsError::TrustStore(
                    source.clone(),
                    "no CA certificate found".to_owned(),
                ));
            }
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
                .build()
                .map_err(|error| TlsError::TrustStore(source.clone(), error.to_string()))
        }
    }
}

/// The most certificates of a client's chain its targets are sent.
const MAX_CHAIN: usize = 4;

/// The most bytes of PEM its targets are sent: a longer chain (a client chooses its own, up
/// to rustls's handshake limit of 64 KiB) goes as its leaf alone.
const MAX_CHAIN_PEM: usize = 16 * 1024;

/// A client's certificate as [`CLIENT_CERTIFICATE_HEADER`] carries it: its chain as the
/// client sent it, leaf first (at most [`MAX_CHAIN`] certificates and [`MAX_CHAIN_PEM`]
/// bytes, else the leaf alone), in PEM, percent-encoded (every byte but letters, digits
/// and `-._~`), as ALB sends a client's chain.
pub fn client_certificate(session: &rustls::ServerConnection) -> Option<http::HeaderValue> {
    use base64::Engine;
    let chain = session.peer_certificates()?;
    let to_pem = |certificates: &[CertificateDer<'_>]| {
        let mut pem = String::new();
        for certificate in certificates {
            let encoded = base64::engine::general_purpose::STANDARD.encode(certificate.as_ref());
            pem.push_str("-----BEGIN CERTIFICATE-----\n");
            for line in encoded.as_bytes().chunks(64) {
                pem.push_str(std::str::from_utf8(line).unwrap_or(""));
                pem.push('\n');
            }
            pem.push_str("-----END CERTIFICATE-----\n");
        }
        pem
    };
    let mut pem = to_pem(&chain[..chain.len().min(MAX_CHAIN)]);
    if pem.is_empty() {
        return None;
    }
    if pem.len() > MAX_CHAIN_PEM {
        pem = to_pem(&chain[..1]);
    }
    let mut escaped = String::with_capacity(pem.len() * 3 / 2);
    crate::forward::percent_encode(&pem, b"-._~", &mut escaped);
    http::HeaderValue::from_str(&escaped).ok()
}

/// Any client certificate, or none (ALB's passthrough): the client proves it holds its
/// certificate's key, and the targets judge the certificate.
#[derive(Debug)]
struct AnyClient(Arc<CryptoProvider>);

impl ClientCertVerifier for AnyClient {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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
        certificate: &CertificateDer<'_>,
        signature: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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

/// A listener's certificates, each chain checked against its key.
pub fn certified(config: &TlsConfig) -> Result<Vec<Arc<CertifiedKey>>, TlsError> {
    if config.certificates.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    let provider = provider();
    let mut certificates = Vec::with_capacity(config.certificates.len());
    for pem in &config.certificates {
        let chain = CertificateDer::pem_slice_iter(&pem.chain)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| TlsError::NoChain(pem.source.clone()))?;
        if chain.is_empty() {
            return Err(TlsError::NoChain(pem.source.clone()));
        }
        let key = PrivateKeyDer::from_pem_slice(&pem.key)
            .map_err(|_| TlsError::NoKey(pem.source.clone()))?;
        let certified =
            CertifiedKey::from_der(chain, key, &provider).map_err(|error| TlsError::Rustls {
                source_name: pem.source.clone(),
                error,
            })?;
        certificates.push(Arc::new(certified));
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use super::{CertificatePem, ClientAuth, TlsConfig, TlsError, acceptor, self_signed};

    #[test]
    fn certificates_are_checked_when_the_listener_is_built() {
        let shop = self_signed(&["shop.example".to_owned()]).expect("generate");
        assert!(
            acceptor(&TlsConfig {
                certificates: vec![shop.clone()],
                client_auth: ClientAuth::Off,
                policy: Default::default(),
            })
            .is_ok()
        );
        assert!(matches!(
            acceptor(&TlsConfig {
                certificates: vec![],
                client_auth: ClientAuth::Off,
                policy: Default::default(),
            }),
            Err(TlsError::NoCertificate)
        ));
        let other = self_signed(&["other.example".to_owned()]).expect("generate");
        let mismatched = CertificatePem {
            source: "mismatched.pem".to_owned(),
            chain: shop.chain.clone(),
            key: other.key.clone(),
        };
        let error = acceptor(&TlsConfig {
            certificates: vec![mismatched],
            client_auth: ClientAuth::Off,
            policy: Default::default(),
        })
        .err()
        .expect("a key of another certificate");
        assert!(error.to_string().starts_with("mismatched.pem:"), "{error}");
        let not_pem = CertificatePem {
            source: "garbage.pem".to_owned(),
            chain: b"not a certificate".to_vec(),
            key: shop.key.clone(),
        };
        assert!(matches!(
            acceptor(&TlsConfig {
                certificates: vec![not_pem],
                client_auth: ClientAuth::Off,
                policy: Default::default(),
            }),
            Err(TlsError::NoChain(_))
        ));
        assert!(
            !format!("{shop:?}").contains("PRIVATE KEY"),
            "keys are never printed"
        );
        // A trust store for mutual TLS must hold CA certificates.
        let error = acceptor(&TlsConfig {
            certificates: vec![shop.clone()],
            client_auth: ClientAuth::Verify {
                source: "partners.pem".to_owned(),
                trust_store: b"not a certificate".to_vec(),
            },
            policy: Default::default(),
        })
        .err()
        .expect("an empty trust store");
        assert!(matches!(error, TlsError::TrustStore(..)), "{error}");
        assert!(error.to_string().starts_with("partners.pem:"), "{error}");
    }
}
