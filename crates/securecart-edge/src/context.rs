//! What the pipeline knows about one request as it moves through the stages.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use http::HeaderValue;
use securecart_telemetry::TraceContext;

/// The client of a connection, as each of its requests shows it to targets: built once
/// per connection.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The client's address.
    pub address: SocketAddr,
    /// Its IP address as an `X-Forwarded-For` value.
    pub forwarded_for: HeaderValue,
    /// Over TLS: the protocol version and the cipher suite agreed (`TLSv1.3`,
    /// `TLS13_AES_128_GCM_SHA256`), for the access log.
    pub tls: Option<(&'static str, &'static str)>,
    /// Over mutual TLS, the client's certificate as its targets are sent it.
    pub client_certificate: Option<HeaderValue>,
}

impl Peer {
    /// The peer at `address`, in clear.
    pub fn new(address: SocketAddr) -> Self {
        Self {
            address,
            forwarded_for: ip_text(address.ip()),
            tls: None,
            client_certificate: None,
        }
    }
}

/// `ip` as text, in a header value. An IPv4 address is written by hand: `Display` goes
/// through the formatter's padding machinery, which took about 2,500 instructions; by hand,
/// a request on a new connection costs the edge 43,191 instructions in user space instead
/// of 44,660 (callgrind).
fn ip_text(ip: IpAddr) -> HeaderValue {
    let IpAddr::V4(ip) = ip else {
        return HeaderValue::from_maybe_shared(bytes::Bytes::from(ip.to_string()))
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
    };
    let mut text = [0u8; 15];
    let mut length = 0;
    for (index, octet) in ip.octets().into_iter().enumerate() {
        if index > 0 {
            text[length] = b'.';
            length += 1;
        }
        if octet >= 100 {
            text[length] = b'0' + octet / 100;
            length += 1;
        }
        if octet >= 10 {
            text[length] = b'0' + octet / 10 % 10;
            length += 1;
        }
        text[length] = b'0' + octet % 10;
        length += 1;
    }
    HeaderValue::from_bytes(&text[..length]).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// The per-request context, created when the request arrives and read by every stage.
#[derive(Debug)]
pub struct RequestContext {
    /// The client's address.
    pub client: SocketAddr,
    /// The client's IP address as an `X-Forwarded-For` value.
    pub forwarded_for: HeaderValue,
    /// Over mutual TLS, the client's certificate as its targets are sent it.
    pub client_certificate: Option<HeaderValue>,
    /// Over TLS: the protocol version and the cipher suite agreed.
    pub tls: Option<(&'static str, &'static str)>,
    /// When the request's headers arrived.
    pub started: Instant,
    /// The trace this request belongs to (continued from the client's `traceparent`, or
    /// new); the edge's own span.
    pub trace: TraceContext,
    /// The target that answered.
    pub target: Option<SocketAddr>,
    /// When the request was (last) sent to a target.
    pub sent_to_target: Option<Instant>,
    /// When the target's response headers came.
    pub target_answered: Option<Instant>,
    /// The target's status.
    pub target_status: Option<u16>,
    /// The request body's bytes read so far (counted as they pass to the target), if it
    /// had a body.
    pub received_bytes: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
    /// How many targets were tried.
    pub attempts: u32,
    /// The targets tried, in turn, each with its status if it answered (ALB's
    /// `target:port_list` and `target_status_code_list`; see [`Tried`]).
    pub tried: Tried,
    /// Why the edge answered itself, if it did.
    pub error_code: Option<&'static str>,
    /// Why the request does not comply with RFC 9112, if it does not (desync mitigation's
    /// classification reason).
    pub desync: Option<crate::guard::Reason>,
    /// Whether the client's connection is closed after the answer (an ambiguous request
    /// in `defensive` desync mitigation).
    pub close_client: bool,
    /// Whether the target's connection is not used again after the answer (an ambiguous
    /// request, routed by desync mitigation).
    pub close_target: bool,
    /// Whether the client sent an `X-Amzn-Trace-Id` with a valid `Root`, which goes on
    /// with the edge's `Self` field (see `forward::prepare_request`).
    pub amzn_trace_sent: bool,
}

/// The most attempts [`Tried`] lists: the first three and the last. (A request may be
/// sent to three groups in turn, the cache's origin shield, origin and failover, each
/// with up to `upstream::MAX_ATTEMPTS` attempts.)
pub const TRIED_KEPT: usize = 4;

/// The targets a request was sent to, in turn, each with its status if it answered (none:
/// it did not, in time or at all): the first [`TRIED_KEPT`] less one, and the last, so
/// that the list ends with the target that answered, as ALB's does. Kept only for the
/// access log, when it is on ([`Tried::recording`]), in an allocation of its own: the
/// context, whose room a connection's future holds across requests, grows by a pointer.
/// (Kept in place, the four attempts made every HTTP/1.1 connection's future 80 bytes
/// larger, 2,848 bytes rather than 2,768, idle or not; 2,784 this way, in the release
/// build of 2026-11-28.)
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tried(Option<Box<[Option<Attempt>; TRIED_KEPT]>>);

/// An attempt: the target, and its status if it answered.
type Attempt = (SocketAddr, Option<u16>);

impl Tried {
    /// The attempts of a request whose access log line will list them.
    pub fn recording() -> Self {
        Self(Some(Box::default()))
    }

    /// A new attempt at `target` (past [`TRIED_KEPT`], in the last place).
    pub fn push(&mut self, target: SocketAddr) {
        let Some(attempts) = &mut self.0 else {
            return;
        };
        let place = attempts
            .iter()
            .position(Option::is_none)
            .unwrap_or(TRIED_KEPT - 1);
        attempts[place] = Some((target, None));
    }

    /// The last attempt's target answered with `status`.
    pub fn answered(&mut self, status: u16) {
        let Some(attempts) = &mut self.0 else {
            return;
        };
        if let Some(Some((_, answer))) = attempts.iter_mut().rev().find(|attempt| attempt.is_some())
        {
            *answer = Some(status);
        }
    }

    /// The attempts, in turn.
    pub fn iter(&self) -> impl Iterator<Item = Attempt> + '_ {
        self.0
            .iter()
            .flat_map(|attempts| attempts.iter())
            .map_while(|attempt| *attempt)
    }

    /// The targets, space-delimited (ALB's `target:port_list`).
    pub fn targets(&self) -> impl std::fmt::Display + '_ {
        Listed(self, false)
    }

    /// Their statuses, `-` for one that did not answer, space-delimited (ALB's
    /// `target_status_code_list`).
    pub fn statuses(&self) -> impl std::fmt::Display + '_ {
        Listed(self, true)
    }
}

/// The attempts of a [`Tried`], space-delimited: their targets, or their statuses.
struct Listed<'t>(&'t Tried, bool);

impl std::fmt::Display for Listed<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Listed(tried, statuses) = *self;
        for (at, (target, status)) in tried.iter().enumerate() {
            if at > 0 {
                formatter.write_str(" ")?;
            }
            match (statuses, status) {
                (false, _) => write!(formatter, "{target}")?,
                (true, Some(status)) => write!(formatter, "{status}")?,
                (true, None) => formatter.write_str("-")?,
            }
        }
        Ok(())
    }
}

impl RequestContext {
    /// The context of a request that just arrived from `client`.
    pub fn new(client: SocketAddr, trace: TraceContext) -> Self {
        Self::for_peer(&Peer::new(client), trace)
    }

    /// The context of a request that just arrived on a connection from `peer`.
    pub fn for_peer(peer: &Peer, trace: TraceContext) -> Self {
        Self {
            client: peer.address,
            forwarded_for: peer.forwarded_for.clone(),
            client_certificate: peer.client_certificate.clone(),
            tls: peer.tls,
            started: Instant::now(),
            trace,
            target: None,
            sent_to_target: None,
            target_answered: None,
            target_status: None,
            received_bytes: None,
            attempts: 0,
            tried: Tried::default(),
            error_code: None,
            desync: None,
            close_client: false,
            close_target: false,
            amzn_trace_sent: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_address_reads_as_display_writes_it() {
        for address in [
            "0.0.0.0",
            "127.0.0.1",
            "255.255.255.255",
            "10.0.100.9",
            "192.168.1.20",
            "1.23.45.199",
            "::1",
            "2001:db8::8:800:200c:417a",
            "::ffff:192.0.2.128",
        ] {
            let ip: IpAddr = address.parse().expect("address");
            assert_eq!(ip_text(ip), ip.to_string().as_str(), "{address}");
        }
        for octet in 0..=u8::MAX {
            let ip = IpAddr::from([octet, 255 - octet, octet / 2, 7]);
            assert_eq!(ip_text(ip), ip.to_string().as_str(), "{ip}");
        }
    }

    /// Each attempt in turn with its status, `-` for one that did not answer; past
    /// [`TRIED_KEPT`] attempts, the first three and the last.
    #[test]
    fn the_targets_tried_are_listed_in_turn() {
        // Not recording: nothing is kept.
        let mut off = Tried::default();
        off.push(SocketAddr::from(([127, 0, 0, 1], 1)));
        off.answered(200);
        assert_eq!(off.iter().count(), 0);
        let mut tried = Tried::recording();
        assert_eq!(
            (tried.targets().to_string(), tried.statuses().to_string()),
            (String::new(), String::new())
        );
        let address = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        tried.push(address(1));
        tried.push(address(2));
        tried.answered(503);
        assert_eq!(tried.targets().to_string(), "127.0.0.1:1 127.0.0.1:2");
        assert_eq!(tried.statuses().to_string(), "- 503");
        for port in 3..10 {
            tried.push(address(port));
        }
        tried.answered(200);
        assert_eq!(
            tried.targets().to_string(),
            "127.0.0.1:1 127.0.0.1:2 127.0.0.1:3 127.0.0.1:9"
        );
        assert_eq!(tried.statuses().to_string(), "- 503 - 200");
    }
}
