//! Route 53's health checks: each runs on its own timer and keeps one flag up to date,
//! which the answers read. HTTP and HTTPS checks pass on a 2xx or 3xx answer (and, with a
//! search string, when it appears in the first 5,120 bytes of the body); an HTTPS check's
//! handshake must succeed, but its certificate is not validated (as Route 53's is not: an
//! endpoint's expired or self-signed certificate does not fail its check). TCP checks
//! pass when a connection opens. A check changes state after `failure_threshold` results
//! in a row that disagree with it; a probe unanswered when the next is due (and at least
//! 1 s on) has failed, so that an endpoint that hangs fails a probe per interval of 1 s or
//! more, as one that refuses does. Inverted checks report the opposite; disabled checks
//! are always healthy (unhealthy if inverted too, Route 53's way to take a record out); calculated checks are healthy while at least N of their children
//! are, following them as they change (every 50 ms, with no interval or threshold of
//! their own, as Route 53's).
//! A new check starts healthy, as Route 53's do until their first failures; a check carried
//! over a reload (`config::rebuild`) keeps its state.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;

/// The most body bytes a string match reads, as Route 53's.
pub const SEARCH_WINDOW: usize = 5_120;

/// What a check probes. A calculated check names its children by `C`: their states when
/// it runs, their names in a configuration ([`HealthCheck::with_children`] turns one into
/// the other).
#[derive(Debug, Clone)]
pub enum Probe<C = Arc<AtomicBool>> {
    /// An HTTP GET, or an HTTPS one.
    Http {
        /// Where to connect.
        address: SocketAddr,
        /// Whether over TLS.
        tls: bool,
        /// The host name in the Host header (with the port, unless 80 or 443) and, over
        /// TLS, the server name sent, when it is a domain name.
        host: String,
        /// The path.
        path: String,
        /// A string the body's first 5,120 bytes must hold.
        search: Option<String>,
    },
    /// A TCP connection.
    Tcp {
        /// Where to connect.
        address: SocketAddr,
    },
    /// An edge's target groups: healthy while every one of them that counts has enough
    /// healthy targets (its DNS failover minimum: one, by default), as its admin
    /// endpoint's `/targets` says. Route 53's "evaluate target health" of an ALB alias,
    /// which is healthy while all the ALB's target groups are, each by its
    /// `dns_failover.minimum_healthy_targets`.
    EdgeTargets {
        /// The edge's admin address.
        address: SocketAddr,
    },
    /// Healthy while at least `threshold` children are.
    Calculated {
        /// The children.
        children: Vec<C>,
        /// How many must be healthy.
        threshold: usize,
    },
}

/// One health check.
#[derive(Debug, Clone)]
pub struct HealthCheck<C = Arc<AtomicBool>> {
    /// Its name, in logs.
    pub name: String,
    /// What it probes.
    pub probe: Probe<C>,
    /// How often (a calculated check reads its children every 50 ms, whatever this says).
    pub interval: Duration,
    /// Results in a row that change its state (a calculated check takes each at once).
    pub failure_threshold: u32,
    /// Reports the opposite of what it sees.
    pub inverted: bool,
    /// Always healthy, without probing; or, inverted as well, always unhealthy (Route 53's
    /// way to take a record out of its answers by hand).
    pub disabled: bool,
}

impl<C> HealthCheck<C> {
    /// The same check with its calculated children replaced by `child`'s answer for each.
    pub fn with_children<D, E>(
        self,
        mut child: impl FnMut(C) -> Result<D, E>,
    ) -> Result<HealthCheck<D>, E> {
        let probe = match self.probe {
            Probe::Http {
                address,
                tls,
                host,
                path,
                search,
            } => Probe::Http {
                address,
                tls,
                host,
                path,
                search,
            },
            Probe::Tcp { address } => Probe::Tcp { address },
            Probe::EdgeTargets { address } => Probe::EdgeTargets { address },
            Probe::Calculated {
                children,
                threshold,
            } => Probe::Calculated {
                children: children
                    .into_iter()
                    .map(&mut child)
                    .collect::<Result<_, _>>()?,
                threshold,
            },
        };
        Ok(HealthCheck {
            name: self.name,
            probe,
            interval: self.interval,
            failure_threshold: self.failure_threshold,
            inverted: self.inverted,
            disabled: self.disabled,
        })
    }
}

impl HealthCheck {
    /// Starts the check; it keeps `state` up to date until `stop` turns true.
    pub fn spawn(self, state: Arc<AtomicBool>, stop: watch::Receiver<bool>) {
        state.store(true, Ordering::Relaxed);
        self.resume(state, stop);
    }

    /// Runs the check as [`HealthCheck::spawn`] does, from the state `state` holds (a
    /// check carried over a reload keeps its state until its probes disagree with it);
    /// a disabled check is healthy (unhealthy if inverted too, as Route 53's).
    pub fn resume(self, state: Arc<AtomicBool>, mut stop: watch::Receiver<bool>) {
        if self.disabled {
            state.store(!self.inverted, Ordering::Relaxed);
            return;
        }
        tokio::spawn(async move {
            // A calculated check follows its children as they change, as Route 53's do:
            // it reads them often and takes what it reads at once.
            let calculated = matches!(self.probe, Probe::Calculated { .. });
            let (period, threshold) = if calculated {
                (CALCULATED_PERIOD, 1)
            } else {
                (self.interval, self.failure_threshold.max(1))
            };
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut disagreeing = 0;
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = stop.wait_for(|stop| *stop) => return,
                }
                // A probe that outlasts the interval fails when the next is due (given 1 s
                // at least), so that a hung endpoint fails a probe per interval.
                let passed = tokio::time::timeout(period.max(LEAST_PROBE_TIME), self.probe())
                    .await
                    .unwrap_or(false);
                let seen = passed != self.inverted;
                let healthy = state.load(Ordering::Relaxed);
                if seen == healthy {
                    disagreeing = 0;
                    continue;
                }
                disagreeing += 1;
                if disagreeing >= threshold {
                    disagreeing = 0;
                    state.store(seen, Ordering::Relaxed);
                    if seen {
                        tracing::info!(check = %self.name, "health check passes again");
                    } else {
                        tracing::warn!(check = %self.name, "health check fails");
                    }
                }
            }
        });
    }

    /// One probe: whether the endpoint looks healthy (before inversion). As Route 53's, a
    /// connection must open within 4 s and an HTTP answer come within 2 s after it; a
    /// running check also fails a probe still unanswered when the next is due, or after
    /// 1 s for an interval shorter than that (Route 53's intervals, 10 and 30 s, are
    /// longer than its limits; ours may be as short as 0.1 s).
    pub async fn probe(&self) -> bool {
        match &self.probe {
            Probe::Tcp { address } => connect(*address).await.is_some(),
            Probe::Http {
                address,
                tls: false,
                host,
                path,
                search,
            } => match connect(*address).await {
                Some(stream) => tokio::time::timeout(
                    HTTP_ANSWER_TIMEOUT,
                    http_probe(
                        stream,
                        &host_header(host, *address),
                        path,
                        search.as_deref(),
                    ),
                )
                .await
                .unwrap_or(false),
                None => false,
            },
            Probe::Http {
                address,
                tls: true,
                host,
                path,
                search,
            } => match connect_tls(*address, host).await {
                Some(stream) => tokio::time::timeout(
                    HTTP_ANSWER_TIMEOUT,
                    http_probe(
                        stream,
                        &host_header(host, *address),
                        path,
                        search.as_deref(),
                    ),
                )
                .await
                .unwrap_or(false),
                None => false,
            },
            Probe::EdgeTargets { address } => match connect(*address).await {
                Some(stream) => {
                    tokio::time::timeout(HTTP_ANSWER_TIMEOUT, targets_probe(stream, *address))
                        .await
                        .unwrap_or(false)
                }
                None => false,
            },
            Probe::Calculated {
                children,
                threshold,
            } => {
                children
                    .iter()
                    .filter(|child| child.load(Ordering::Relaxed))
                    .count()
                    >= *threshold
            }
        }
    }
}

/// The least time a running check gives a probe, however short its interval: an endpoint
/// a few round trips away may need it.
const LEAST_PROBE_TIME: Duration = Duration::from_secs(1);

/// How often a calculated check reads its children's states.
const CALCULATED_PERIOD: Duration = Duration::from_millis(50);

/// How long a health check's connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(4);

/// How long an HTTP health check's answer may take once connected.
const HTTP_ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

async fn connect(address: SocketAddr) -> Option<TcpStream> {
    tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
        .await
        .ok()?
        .ok()
}

/// A TLS session to `address`, its handshake done within the connection's time; the
/// server name sent is `host` when it is a domain name (none for an address, as Route 53
/// sends none without one).
async fn connect_tls(
    address: SocketAddr,
    host: &str,
) -> Option<tokio_rustls::client::TlsStream<TcpStream>> {
    static CONFIG: std::sync::OnceLock<Option<Arc<rustls::ClientConfig>>> =
        std::sync::OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .ok()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth();
        Some(Arc::new(config))
    });
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(config.as_ref()?));
    let name = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => rustls::pki_types::ServerName::IpAddress(ip.into()),
        Err(_) => rustls::pki_types::ServerName::try_from(host.to_owned()).ok()?,
    };
    let started = tokio::time::Instant::now();
    let stream = connect(address).await?;
    tokio::time::timeout_at(started + CONNECT_TIMEOUT, connector.connect(name, stream))
        .await
        .ok()?
        .ok()
}

/// The certificate check of an HTTPS health check: any certificate, as long as the server
/// proves it holds its key (the handshake's signatures are verified).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
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

/// The `Host` an HTTP check sends, as Route 53's: its host name (or the address checked),
/// with the port when it is neither 80 nor 443.
fn host_header(host: &str, address: SocketAddr) -> String {
    let host = match host.parse::<std::net::Ipv6Addr>() {
        Ok(_) => format!("[{host}]"),
        Err(_) => host.to_owned(),
    };
    match address.port() {
        80 | 443 => host,
        port => format!("{host}:{port}"),
    }
}

async fn http_probe<S>(stream: S, host: &str, path: &str, search: Option<&str>) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let search = search.filter(|search| !search.is_empty());
    let window = if search.is_some() { SEARCH_WINDOW } else { 0 };
    match http_get(stream, host, path, window).await {
        Some((status, body)) if status.is_success() || status.is_redirection() => match search {
            None => true,
            Some(search) => body
                .windows(search.len())
                .any(|window| window == search.as_bytes()),
        },
        _ => false,
    }
}

/// Whether an edge's `/targets` says that each of its target groups meets its DNS
/// failover minimum (`dns_healthy`), with at least one group so marked. A group it does
/// not mark counts for nothing: one a reload removed, whose targets still drain.
async fn targets_probe(stream: TcpStream, address: SocketAddr) -> bool {
    match http_get(stream, &address.to_string(), "/targets", 1 << 20).await {
        Some((status, body)) if status.is_success() => {
            serde_json::from_slice::<serde_json::Value>(&body)
                .is_ok_and(|described| dns_healthy(&described))
        }
        _ => false,
    }
}

/// What [`targets_probe`] reads of `/targets`.
fn dns_healthy(described: &serde_json::Value) -> bool {
    let Some(groups) = described["target_groups"].as_array() else {
        return false;
    };
    let marked: Vec<&serde_json::Value> = groups
        .iter()
        .map(|group| &group["dns_healthy"])
        .filter(|mark| mark.is_boolean())
        .collect();
    !marked.is_empty() && marked.iter().all(|mark| **mark == true)
}

/// GET `path` on an open connection: the answer's status and its body's first `limit`
/// bytes.
async fn http_get<S>(
    stream: S,
    host: &str,
    path: &str,
    limit: usize,
) -> Option<(http::StatusCode, Vec<u8>)>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
            .await
            .ok()?;
    let connection = tokio::spawn(connection);
    let request = http::Request::get(path)
        .header(http::header::HOST, host)
        .header(http::header::USER_AGENT, "SecureCart-Health-Check")
        .header(http::header::CONNECTION, "close")
        .body(Empty::new())
        .ok()?;
    let answer = match sender.send_request(request).await {
        Ok(response) => {
            let status = response.status();
            let mut body = response.into_body();
            let mut seen = Vec::new();
            while seen.len() < limit {
                match body.frame().await {
                    Some(Ok(frame)) => {
                        if let Some(data) = frame.data_ref() {
                            let room = limit - seen.len();
                            seen.extend_from_slice(&data[..data.len().min(room)]);
                        }
                    }
                    _ => break,
                }
            }
            Some((status, seen))
        }
        Err(_) => None,
    };
    // The answer read (or given up), the connection ends as `Connection: close` asks: hyper
    // shuts its stream down, which over TLS sends `close_notify` first, unless the server
    // holds it past a moment. Apart from the check, whose time it does not take.
    drop(sender);
    let mut connection = connection;
    tokio::spawn(async move {
        if tokio::time::timeout(CLOSE_TIMEOUT, &mut connection)
            .await
            .is_err()
        {
            connection.abort();
        }
    });
    answer
}

/// How long a health check's connection may take to close once its answer is read.
const CLOSE_TIMEOUT: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests {
    use serde_json::json;

    /// An edge alias is healthy while each marked group meets its DNS failover minimum,
    /// and at least one is marked; unmarked groups (removed by a reload, draining) do not
    /// count.
    #[test]
    fn an_edge_is_healthy_in_dns_while_every_marked_group_is() {
        let group = |mark: Option<bool>| match mark {
            Some(mark) => json!({ "name": "g", "healthy": 1, "dns_healthy": mark }),
            None => json!({ "name": "gone", "healthy": 0 }),
        };
        let cases = [
            (vec![Some(true), Some(true)], true),
            (vec![Some(true), Some(false)], false),
            (vec![Some(true), None], true),
            (vec![None], false),
            (vec![], false),
        ];
        for (marks, expected) in cases {
            let described = json!({ "target_groups": marks.iter().map(|mark| group(*mark)).collect::<Vec<_>>() });
            assert_eq!(super::dns_healthy(&described), expected, "{marks:?}");
        }
        assert!(!super::dns_healthy(&json!({ "error": "unauthorized" })));
    }
}
