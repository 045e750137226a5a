//! The headers of a forwarded request and of the response sent back: hop-by-hop headers are
//! dropped (RFC 9110 section 7.6.1), `X-Forwarded-*` says who the client was, and the trace
//! context is passed on (as `traceparent` and as ALB's `X-Amzn-Trace-Id`).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use securecart_telemetry::TraceContext;

use crate::context::RequestContext;

/// Headers that describe one connection and never travel past it (`Connection` first:
/// [`CONNECTION_BIT`] is its bit in a set of them).
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static X_AMZN_TRACE_ID: HeaderName = HeaderName::from_static("x-amzn-trace-id");
/// The field the `close` connection option names (a reserved name, RFC 9110 section 18.4).
static CLOSE: HeaderName = HeaderName::from_static("close");

/// The headers that frame an HTTP/1.1 message or say what becomes of its connection, as
/// bits that a head's parser sets while it reads each name ([`framing_header`]): a head
/// without one of them (most requests have none, most answers only `Connection` and
/// `Content-Length`) is framed without looking it up in the header map, where each
/// look-up hashes the name and walks a probe (about 100 instructions each, callgrind).
pub(crate) mod framing {
    pub const CONNECTION: u8 = 1;
    pub const CONTENT_LENGTH: u8 = 1 << 1;
    pub const TRANSFER_ENCODING: u8 = 1 << 2;
    pub const TE: u8 = 1 << 3;
    pub const UPGRADE: u8 = 1 << 4;
    pub const EXPECT: u8 = 1 << 5;
}

/// The [`framing`] bit of a header's name, or 0. (The names are standard ones, which a
/// `HeaderName` holds as a number: each comparison is one of numbers.)
pub(crate) fn framing_header(name: &HeaderName) -> u8 {
    [
        (header::CONNECTION, framing::CONNECTION),
        (header::CONTENT_LENGTH, framing::CONTENT_LENGTH),
        (header::TRANSFER_ENCODING, framing::TRANSFER_ENCODING),
        (header::TE, framing::TE),
        (header::UPGRADE, framing::UPGRADE),
        (header::EXPECT, framing::EXPECT),
    ]
    .iter()
    .find(|(known, _)| known == name)
    .map_or(0, |&(_, bit)| bit)
}

/// `Connection`'s bit in a set of [`HOP_BY_HOP`] headers.
const CONNECTION_BIT: u8 = 1;

/// The bit of `name` in a set of [`HOP_BY_HOP`] headers (0: not hop-by-hop).
fn hop_by_hop_bit(name: &HeaderName) -> u8 {
    HOP_BY_HOP
        .iter()
        .position(|hop| hop == name)
        .map_or(0, |index| 1 << index)
}

/// Whether a map holds a hop-by-hop header (most requests hold none).
fn has_hop_by_hop(headers: &HeaderMap) -> bool {
    headers.keys().any(|name| hop_by_hop_bit(name) != 0)
}

/// The options the `Connection` headers name, trimmed (a value that is not text names
/// none).
pub(crate) fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    securecart_cache::directives::list_members(headers, header::CONNECTION)
}

/// Removes the hop-by-hop headers, including those the `Connection` header names.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the lines: which hop-by-hop headers there are, and `Connection`'s
    // line when it has one only.
    let (mut present, mut connection_lines, mut lone) = (0, 0, None);
    for (name, value) in headers.iter() {
        let bit = hop_by_hop_bit(name);
        present |= bit;
        if bit == CONNECTION_BIT {
            connection_lines += 1;
            lone = Some(value.as_bytes());
        }
    }
    if present == 0 {
        return;
    }
    // Other headers `Connection` names. The usual line, a lone `keep-alive` (most HTTP/1.1
    // answers) or `close` (most clients that want one request per connection), is taken
    // whole: `keep-alive` goes below anyway, and `close` names a reserved field, removed by
    // a static name, where splitting options and building a name for each cost a vector
    // and a name per request. (Removing each named header by its name as text instead,
    // from a copy of `Connection`'s lines, built no name for any option but cost more on
    // those usual lines: callgrind, 2026-11-27.)
    let lone = lone.filter(|_| connection_lines == 1);
    let (close, named) = match lone {
        Some(line) if line.eq_ignore_ascii_case(b"keep-alive") => (false, Vec::new()),
        Some(line) if line.eq_ignore_ascii_case(b"close") => (true, Vec::new()),
        _ => {
            let named: Vec<HeaderName> = connection_tokens(headers)
                .filter(|token| {
                    !token.is_empty()
                        && !HOP_BY_HOP
                            .iter()
                            .any(|hop| hop.as_str().eq_ignore_ascii_case(token))
                })
                .filter_map(|token| HeaderName::from_bytes(token.as_bytes()).ok())
                .collect();
            (false, named)
        }
    };
    for name in &named {
        headers.remove(name);
    }
    if close {
        headers.remove(&CLOSE);
    }
    for (index, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << index) != 0 {
            headers.remove(name);
        }
    }
}

/// The protocol a request asks to switch to (`Upgrade` with `Connection: upgrade`, such as a
/// WebSocket handshake); HTTP/1.1 only.
pub fn upgrade_requested(version: http::Version, headers: &HeaderMap) -> Option<HeaderValue> {
    if version != http::Version::HTTP_11 {
        return None;
    }
    // `Upgrade` first: one look-up rules out most requests, which have none, where
    // `Connection` (`close`, say) would be split into its options.
    let protocol = headers.get(header::UPGRADE)?;
    connection_tokens(headers)
        .any(|token| token.eq_ignore_ascii_case("upgrade"))
        .then(|| protocol.clone())
}

/// Puts back the two headers that carry a protocol switch, after the hop-by-hop ones went.
pub fn keep_upgrade(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, protocol);
}

/// What the edge does with a request's `X-Forwarded-For` before forwarding it (ALB's
/// `routing.http.xff_header_processing.mode` and `routing.http.xff_client_port.enabled`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ForwardedFor {
    /// Append, preserve or remove.
    pub mode: XffMode,
    /// Whether the entry the edge appends carries the client's port (`203.0.113.9:51234`,
    /// `[2001:db8::1]:51234`).
    pub client_port: bool,
}

/// Removes the headers whose names are not letters, digits and `-` (`X_Forwarded_For`,
/// say, which a CGI or WSGI application reads as `X-Forwarded-For`), as ALB's
/// `routing.http.drop_invalid_header_fields.enabled` and nginx's
/// `ignore_invalid_headers` do.
pub fn drop_invalid_header_fields(headers: &mut HeaderMap) {
    let invalid: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            !name
                .as_str()
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
        })
        .cloned()
        .collect();
    for name in invalid {
        headers.remove(name);
    }
}

/// How `X-Forwarded-For` is processed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum XffMode {
    /// The client's address is appended to the header the request brought (its lines
    /// joined into one), or is the header if it brought none: ALB's default.
    #[default]
    Append,
    /// The header goes on as the client sent it, and none is added: for an edge behind
    /// a proxy that already wrote it.
    Preserve,
    /// The header is removed: targets see no client addresses.
    Remove,
}

/// How many headers [`prepare_request`] adds to a request (`X-Forwarded-For`,
/// `X-Forwarded-Proto`, `X-Forwarded-Port`, `traceparent`, `X-Amzn-Trace-Id`): the server
/// sizes a request's header map for them, so that adding them does not grow it (growing
/// a small map rehashes it, up to three times from one header to five).
pub const ADDED_HEADERS: usize = 5;

/// Rewrites a request's headers for its target; `listener_port` is the listener's port as
/// a header value. Fails (ALB's 463) when the `X-Forwarded-For` to append to already holds
/// more than [`MAX_FORWARDED_ADDRESSES`] addresses.
pub fn prepare_request(
    parts: &mut Parts,
    context: &RequestContext,
    protocol: &'static str,
    listener_port: &HeaderValue,
    forwarded_for: ForwardedFor,
) -> Result<(), crate::error::EdgeError> {
    if parts.uri.authority().is_some() || has_hop_by_hop(&parts.headers) {
        rewrite_connection_headers(parts);
    }
    match forwarded_for.mode {
        XffMode::Append => {
            let client = if forwarded_for.client_port {
                // `SocketAddr`'s text puts an IPv6 address in brackets before its port.
                HeaderValue::from_maybe_shared(bytes::Bytes::from(context.client.to_string()))
                    .unwrap_or_else(|_| context.forwarded_for.clone())
            } else {
                context.forwarded_for.clone()
            };
            let value = appended(&parts.headers, client).ok_or(
                crate::error::EdgeError::TooManyForwardedAddresses(MAX_FORWARDED_ADDRESSES),
            )?;
            parts.headers.insert(X_FORWARDED_FOR.clone(), value);
        }
        XffMode::Preserve => {}
        XffMode::Remove => {
            parts.headers.remove(&X_FORWARDED_FOR);
        }
    }
    parts.headers.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(protocol),
    );
    parts
        .headers
        .insert(X_FORWARDED_PORT.clone(), listener_port.clone());
    let traceparent = context.trace.header_bytes();
    if let Ok(value) = HeaderValue::from_bytes(&traceparent) {
        parts.headers.insert(TRACEPARENT.clone(), value);
    }
    // ALB's request tracing: the client's `X-Amzn-Trace-Id` goes on with the edge's `Self`
    // field, or the header names the request's trace.
    let amzn = context
        .amzn_trace_sent
        .then(|| amzn_trace_id(&parts.headers, &context.trace))
        .flatten()
        .or_else(|| HeaderValue::from_bytes(&TraceContext::amzn_root_of(&traceparent)).ok());
    if let Some(value) = amzn {
        parts.headers.insert(X_AMZN_TRACE_ID.clone(), value);
    }
    Ok(())
}

/// The `X-Amzn-Trace-Id` a request whose client sent one with a valid `Root`
/// ([`incoming_trace`] said so) is forwarded with, as ALB forwards it: its fields kept,
/// `Root` and any of the client's own, with a `Self` field first that names this hop
/// (`Self=1-` then the time in Unix seconds and the edge's span id, in X-Ray's form; a
/// `Self` sent is replaced). (Without one, the header is `Root=` the request's trace, the
/// trace its `traceparent` names: see `securecart_telemetry::trace_context`.)
fn amzn_trace_id(headers: &HeaderMap, trace: &TraceContext) -> Option<HeaderValue> {
    let sent = headers.get(&X_AMZN_TRACE_ID)?.to_str().ok()?;
    let mut value = format!(
        "Self=1-{:08x}-{:024x}",
        securecart_telemetry::trace_context::unix_seconds(),
        trace.span_id
    );
    for field in sent.split(';').map(str::trim) {
        let is_self = field
            .split_once('=')
            .is_some_and(|(key, _)| key.trim() == "Self");
        if !field.is_empty() && !is_self {
            value.push(';');
            value.push_str(field);
        }
    }
    HeaderValue::from_maybe_shared(bytes::Bytes::from(value)).ok()
}

/// Applies a rule's rewrites to a request about to be forwarded (ALB's transforms): `url`
/// to its path and query, and `host` to its `Host` (and to an HTTP/2 request's authority).
/// The URL rewrite reads the path the rules matched, `resolved` (decoded, its dot segments
/// and repeated slashes removed; the path as sent when it had none to remove), written out
/// again in one canonical form (`canonical_path`), and the query as sent: whatever the
/// client escaped, the target is sent no dot segment, no `?` or `#` in the path that the
/// edge did not see as such, and no escape decoded twice. Returns the URL and the host
/// rewritten, for the access log; fails when a rewrite made what is not a path without dot
/// segments, or not a host.
pub fn rewrite(
    parts: &mut Parts,
    resolved: Option<&str>,
    url: Option<&crate::actions::Rewrite>,
    host: Option<&crate::actions::Rewrite>,
) -> Result<(Option<String>, Option<String>), crate::error::EdgeError> {
    use crate::error::EdgeError;
    let mut rewritten_url = None;
    if let Some(rewrite) = url {
        let mut whole = canonical_path(resolved.unwrap_or(parts.uri.path()));
        if let Some(query) = parts.uri.query() {
            whole.push('?');
            whole.push_str(query);
        }
        if let Some(new) = rewrite.apply(&whole) {
            let refused = || EdgeError::BadRequest("the rule's rewrite made a URL that is not one");
            let path = new.split('?').next().unwrap_or("");
            if !path.starts_with('/') || new.contains('#') || has_dot_segment(path) {
                return Err(refused());
            }
            let path_and_query =
                http::uri::PathAndQuery::try_from(new.as_str()).map_err(|_| refused())?;
            let mut uri = std::mem::take(&mut parts.uri).into_parts();
            uri.path_and_query = Some(path_and_query);
            parts.uri = http::Uri::from_parts(uri).map_err(|_| refused())?;
            rewritten_url = Some(new);
        }
    }
    let mut rewritten_host = None;
    if let Some(rewrite) = host {
        let current = parts
            .headers
            .get(header::HOST)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("");
        if let Some(new) = rewrite.apply(current) {
            let refused =
                || EdgeError::BadRequest("the rule's rewrite made a Host that is not one");
            let authority = http::uri::Authority::try_from(new.as_str()).map_err(|_| refused())?;
            let value = HeaderValue::from_str(&new).map_err(|_| refused())?;
            parts.headers.insert(header::HOST, value);
            if parts.uri.authority().is_some() {
                let mut uri = std::mem::take(&mut parts.uri).into_parts();
                uri.authority = Some(authority);
                parts.uri = http::Uri::from_parts(uri).map_err(|_| refused())?;
            }
            rewritten_host = Some(new);
        }
    }
    Ok((rewritten_url, rewritten_host))
}

/// A decoded path written out again: every byte but the letters, digits and
/// `-._~!$&'()*+,;=:@/` percent-encoded (a `%` as `%25`, a space as `%20`, UTF-8 byte by
/// byte), so that what a URL rewrite reads and sends is one spelling of the path.
fn canonical_path(decoded: &str) -> String {
    let mut canonical = String::with_capacity(decoded.len());
    percent_encode(decoded, b"-._~!$&'()*+,;=:@/", &mut canonical);
    canonical
}

/// Writes `text` to `into` with every byte but the letters, digits and those of `keep`
/// percent-encoded (`%2F`).
pub(crate) fn percent_encode(text: &str, keep: &[u8], into: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &byte in text.as_bytes() {
        if byte.is_ascii_alphanumeric() || keep.contains(&byte) {
            into.push(char::from(byte));
        } else {
            into.push('%');
            into.push(char::from(HEX[usize::from(byte >> 4)]));
            into.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
    }
}

/// Whether a path holds a `.` or `..` segment, as sent or escaped (`%2e`), before any `;`.
fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|segment| {
        let mut bare = segment.split(';').next().unwrap_or(segment).as_bytes();
        // Its dots, each `.` or `%2e` in either case; anything else makes it no dot segment.
        let mut dots = 0;
        while !bare.is_empty() {
            if bare[0] == b'.' {
                bare = &bare[1..];
            } else if bare.len() >= 3 && bare[..3].eq_ignore_ascii_case(b"%2e") {
                bare = &bare[3..];
            } else {
                return false;
            }
            dots += 1;
        }
        dots == 1 || dots == 2
    })
}

/// The header that tells a target the TLS version its client's session agreed (ALB's
/// `X-Amzn-Tls-Version`), where the listener says so: `TLSv1.3`.
pub const TLS_VERSION_HEADER: &str = "x-securecart-tls-version";

/// The header that tells a target the cipher suite its client's session agreed (ALB's
/// `X-Amzn-Tls-Cipher-Suite`), by its IANA name: `TLS13_AES_128_GCM_SHA256`.
pub const TLS_CIPHER_HEADER: &str = "x-securecart-tls-cipher-suite";

/// The most addresses a request's `X-Forwarded-For` may hold for the edge to append to
/// it (ALB's limit, past which it answers 463).
pub const MAX_FORWARDED_ADDRESSES: usize = 30;

/// The request's `X-Forwarded-For` lines (those that hold more than spaces) joined, then
/// `client`: every proxy's entry is kept, in order, whichever line it came on. `None` when
/// they hold more than [`MAX_FORWARDED_ADDRESSES`] entries (empty ones count for nothing).
fn appended(headers: &HeaderMap, client: HeaderValue) -> Option<HeaderValue> {
    let mut joined: Vec<u8> = Vec::new();
    let mut entries = 0;
    for line in headers.get_all(&X_FORWARDED_FOR) {
        let line = line.as_bytes().trim_ascii();
        if !line.is_empty() {
            entries += line
                .split(|&byte| byte == b',')
                .filter(|entry| !entry.trim_ascii().is_empty())
                .count();
            if entries > MAX_FORWARDED_ADDRESSES {
                return None;
            }
            joined.extend_from_slice(line);
            joined.extend_from_slice(b", ");
        }
    }
    if joined.is_empty() {
        return Some(client);
    }
    joined.extend_from_slice(client.as_bytes());
    // Lines of valid values joined by a comma and a space make a valid value.
    Some(HeaderValue::from_maybe_shared(bytes::Bytes::from(joined)).unwrap_or(client))
}

/// Whether a request's `TE` names `trailers`, on any of its lines.
pub fn asks_for_trailers(headers: &HeaderMap) -> bool {
    securecart_cache::directives::list_members(headers, header::TE)
        .any(|coding| coding.eq_ignore_ascii_case("trailers"))
}

/// Drops the hop-by-hop headers of a request, keeping a protocol switch and `TE: trailers`,
/// and sets `Host` to the host the rules matched.
fn rewrite_connection_headers(parts: &mut Parts) {
    let upgrade = upgrade_requested(parts.version, &parts.headers);
    let host = match parts.uri.authority() {
        Some(authority) => HeaderValue::from_str(authority.as_str()).ok(),
        None => parts.headers.get(header::HOST).cloned(),
    };
    // `TE: trailers` is the one TE an HTTP/2 target may receive, and gRPC needs it.
    let trailers = asks_for_trailers(&parts.headers);
    remove_hop_by_hop(&mut parts.headers);
    if let Some(protocol) = upgrade {
        keep_upgrade(&mut parts.headers, protocol);
    }
    if trailers {
        parts
            .headers
            .insert(header::TE, HeaderValue::from_static("trailers"));
    }
    // The target sees the host the rules matched: the URI's authority when the request
    // has one (HTTP/2, or an absolute-form request line, which RFC 9112 section 3.2.2 says
    // replaces Host), else the Host header, put back even if `Connection` named it.
    if let Some(host) = host {
        parts.headers.insert(header::HOST, host);
    }
}

/// The trace context the client sent, if valid: its `traceparent`, else the `Root` (and
/// `Parent`) of its `X-Amzn-Trace-Id`; and whether it sent an `X-Amzn-Trace-Id` with a
/// valid `Root` (which [`prepare_request`] passes on, with the edge's `Self` field:
/// `RequestContext::amzn_trace_sent`).
pub fn incoming_trace(headers: &HeaderMap) -> (Option<TraceContext>, bool) {
    // One pass over the names (each comparison fails at their lengths, mostly) costs less
    // than two look-ups, each of which hashes the name it looks for byte by byte.
    let (mut traceparent, mut amzn) = (None, None);
    for (name, value) in headers {
        if *name == TRACEPARENT {
            traceparent.get_or_insert(value);
        } else if *name == X_AMZN_TRACE_ID {
            amzn.get_or_insert(value);
        }
    }
    let amzn = amzn
        .and_then(|value| value.to_str().ok())
        .and_then(TraceContext::parse_amzn);
    let parent = traceparent
        .and_then(|value| value.to_str().ok())
        .and_then(TraceContext::parse)
        .or(amzn);
    (parent, amzn.is_some())
}

#[cfg(test)]
mod tests {
    #[test]
    fn dot_segments_are_found_as_sent_or_escaped() {
        for (path, dotted) in [
            ("/a/./b", true),
            ("/a/../b", true),
            ("/a/%2E%2e/b", true),
            ("/a/.%2E", true),
            ("/a/..;x/b", true),
            ("/a/%2e", true),
            ("/a/.x", false),
            ("/a/...", false),
            ("/a/%2", false),
            ("/a//b", false),
            ("", false),
        ] {
            assert_eq!(super::has_dot_segment(path), dotted, "{path}");
        }
        let mut encoded = String::new();
        super::percent_encode("a b/é%", b"/", &mut encoded);
        assert_eq!(encoded, "a%20b/%C3%A9%25");
    }

    use std::net::SocketAddr;

    use http::Request;
    use http::header::{self, HeaderMap, HeaderName, HeaderValue};
    use securecart_telemetry::TraceContext;

    use super::{prepare_request, remove_hop_by_hop};
    use crate::context::RequestContext;

    #[test]
    fn the_target_sees_the_host_the_rules_matched() {
        let context = RequestContext::new(
            "127.0.0.1:1".parse().expect("address"),
            TraceContext::new_root(),
        );
        // (request target, Host header, Connection header, Host the target sees)
        let cases = [
            ("/x", Some("shop.example"), None, Some("shop.example")),
            (
                "http://www.example/x",
                Some("admin.example"),
                None,
                Some("www.example"),
            ),
            (
                "/x",
                Some("shop.example"),
                Some("host"),
                Some("shop.example"),
            ),
            (
                "http://www.example:8080/x",
                None,
                None,
                Some("www.example:8080"),
            ),
        ];
        for (target, host, connection, expected) in cases {
            let mut request = Request::get(target);
            if let Some(host) = host {
                request = request.header("host", host);
            }
            if let Some(connection) = connection {
                request = request.header("connection", connection);
            }
            let (mut parts, ()) = request.body(()).expect("request").into_parts();
            prepare_request(
                &mut parts,
                &context,
                "http",
                &8080.into(),
                Default::default(),
            )
            .expect("prepared");
            assert_eq!(
                parts
                    .headers
                    .get("host")
                    .map(|value| value.to_str().expect("ascii")),
                expected,
                "{target}"
            );
        }
    }

    /// The framing headers are told from their names as the wire spells them, and no
    /// other header is taken for one.
    /// ALB's limit of 30 addresses in `X-Forwarded-For`, over all its lines.
    #[test]
    fn thirty_forwarded_addresses_are_the_most() {
        let addresses = |count: usize| {
            (0..count)
                .map(|index| format!("10.0.0.{index}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        for (lines, too_many) in [
            (vec![], false),
            (vec![addresses(30)], false),
            (vec![addresses(31)], true),
            (vec![addresses(15), addresses(15)], false),
            (vec![addresses(15), addresses(16)], true),
            // Empty lines and entries hold no address.
            (vec![String::new(); 31], false),
            (vec![format!("{}, ,", addresses(30))], false),
        ] {
            let mut headers = HeaderMap::new();
            for line in &lines {
                headers.append(
                    "x-forwarded-for",
                    HeaderValue::from_str(line).expect("value"),
                );
            }
            let client = HeaderValue::from_static("127.0.0.1");
            assert_eq!(
                super::appended(&headers, client).is_none(),
                too_many,
                "{lines:?}"
            );
        }
    }

    #[test]
    fn headers_of_invalid_names_are_dropped_if_asked() {
        let mut headers = HeaderMap::new();
        for name in [
            "x-forwarded-for",
            "x_forwarded_for",
            "x.custom",
            "accept",
            "x-a1",
        ] {
            headers.insert(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_static("v"),
            );
        }
        super::drop_invalid_header_fields(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept", "x-a1", "x-forwarded-for"]);
    }

    #[test]
    fn framing_headers_are_told_by_name_in_any_case() {
        use super::{framing, framing_header};
        let cases: [(&str, u8); 12] = [
            ("Connection", framing::CONNECTION),
            ("content-length", framing::CONTENT_LENGTH),
            ("TRANSFER-ENCODING", framing::TRANSFER_ENCODING),
            ("te", framing::TE),
            ("Upgrade", framing::UPGRADE),
            ("Expect", framing::EXPECT),
            ("host", 0),
            ("content-type", 0),
            ("x-te", 0),
            ("content-lengths", 0),
            ("keep-alive", 0),
            ("x-forwarded-for", 0),
        ];
        for (name, bit) in cases {
            let name = HeaderName::from_bytes(name.as_bytes()).expect("name");
            assert_eq!(framing_header(&name), bit, "{name}");
        }
        // Six headers, six bits of their own.
        let bits = cases.iter().fold(0u8, |bits, (_, bit)| {
            assert_eq!(bits & bit, 0, "a bit shared");
            bits | bit
        });
        assert_eq!(bits.count_ones(), 6);
    }

    /// `TE` is hop-by-hop but for `trailers`, which is kept wherever the client's lines
    /// name it among other codings; a header map sized for the request's headers and
    /// [`super::ADDED_HEADERS`] holds the forwarded request without growing.
    #[test]
    fn te_trailers_is_kept_from_any_line_and_forwarding_fits_the_map() {
        let context = RequestContext::new(
            "127.0.0.1:1".parse().expect("address"),
            TraceContext::new_root(),
        );
        for (lines, kept) in [
            (&["gzip", "trailers"][..], true),
            (&["gzip, trailers"][..], true),
            (&["gzip"][..], false),
        ] {
            let mut request = Request::get("/x")
                .header("host", "shop.example")
                .header("connection", "te");
            for line in lines {
                request = request.header("te", *line);
            }
            let (mut parts, ()) = request.body(()).expect("request").into_parts();
            let mut headers =
                http::HeaderMap::with_capacity(parts.headers.len() + super::ADDED_HEADERS);
            headers.extend(parts.headers.drain());
            let capacity = headers.capacity();
            parts.headers = headers;
            prepare_request(
                &mut parts,
                &context,
                "http",
                &8080.into(),
                Default::default(),
            )
            .expect("prepared");
            let te: Vec<_> = parts.headers.get_all("te").iter().collect();
            if kept {
                assert_eq!(te, ["trailers"], "{lines:?}");
            } else {
                assert!(te.is_empty(), "{lines:?}");
            }
            assert_eq!(parts.headers.capacity(), capacity, "{lines:?}");
        }
    }

    #[test]
    fn the_headers_connection_names_are_removed_whatever_their_case() {
        assert_eq!(
            super::hop_by_hop_bit(&header::CONNECTION),
            super::CONNECTION_BIT
        );
        for (connection, named) in [
            (&["close"][..], "close"),
            (&["Keep-Alive"], "keep-alive"),
            (&["keep-alive"], "proxy-connection"),
            (&["Close, X-Private"], "x-private"),
            (&["keep-alive, CLOSE"], "close"),
            (&["close", " , x-private"], "x-private"),
            (&["x-private", "keep-alive"], "x-private"),
        ] {
            let mut headers = HeaderMap::new();
            for line in connection {
                headers.append(header::CONNECTION, HeaderValue::from_static(line));
            }
            headers.insert(
                HeaderName::from_bytes(named.as_bytes()).expect("name"),
                HeaderValue::from_static("x"),
            );
            headers.insert("x-kept", HeaderValue::from_static("y"));
            remove_hop_by_hop(&mut headers);
            let left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
            assert_eq!(left, ["x-kept"], "Connection: {connection:?}");
        }
    }

    /// A rule's rewrites: of the path the rules matched and its query, and of the Host
    /// (and an HTTP/2 request's authority); what they make must be a path and a host.
    #[test]
    fn rewrites_make_the_url_and_host_the_target_is_sent() {
        use crate::actions::{Rewrite, RewriteConfig};
        let rewrite = |regex: &str, replace: &str| {
            Rewrite::new(&RewriteConfig {
                regex: regex.to_owned(),
                replace: replace.to_owned(),
            })
            .expect("a valid expression")
        };
        let shop = rewrite("^/shop/(.*)$", "/$1");
        let versioned = rewrite("^/api/v1/(?P<rest>[^?]*)", "/api/v2/${rest}");
        let to_internal = rewrite(r"^shop\.example(:\d+)?$", "internal.example$1");
        let broken_url = rewrite("^/shop/", "shop/");
        let broken_host = rewrite("^shop", "a b");
        let climbing = rewrite("^/shop/(.*)$", "/internal/../$1");
        /// (target, URL rewrite, Host rewrite, URL and Host sent, or refused)
        type Case<'a> = (
            &'a str,
            Option<&'a Rewrite>,
            Option<&'a Rewrite>,
            Option<(&'a str, &'a str)>,
        );
        let host = "shop.example:8080";
        let cases: [Case; 16] = [
            (
                "/shop/cart?id=1",
                Some(&shop),
                None,
                Some(("/cart?id=1", host)),
            ),
            ("/other", Some(&shop), None, Some(("/other", host))),
            (
                "/api/v1/items?page=2",
                Some(&versioned),
                None,
                Some(("/api/v2/items?page=2", host)),
            ),
            // The path as the rules matched it: no `..` rides past the prefix into the
            // rewritten path (one the expression does not match goes as it was sent).
            (
                "/shop/a/../../admin",
                Some(&shop),
                None,
                Some(("/shop/a/../../admin", host)),
            ),
            ("/shop/a/../cart", Some(&shop), None, Some(("/cart", host))),
            // Escapes are read once and written out again, never decoded twice: an escaped
            // escape stays one, and `?`, `#` and spaces stay in the path.
            (
                "/shop/%252e%252e/admin",
                Some(&shop),
                None,
                Some(("/%252e%252e/admin", host)),
            ),
            (
                "/shop/x%3Fadmin%3Dtrue",
                Some(&shop),
                None,
                Some(("/x%3Fadmin=true", host)),
            ),
            (
                "/shop/a%23b?q=1",
                Some(&shop),
                None,
                Some(("/a%23b?q=1", host)),
            ),
            (
                "/shop/red%20wool",
                Some(&shop),
                None,
                Some(("/red%20wool", host)),
            ),
            (
                "/shop/caf%C3%A9",
                Some(&shop),
                None,
                Some(("/caf%C3%A9", host)),
            ),
            ("/shop//x", Some(&shop), None, Some(("/x", host))),
            (
                "/shop/x",
                None,
                Some(&to_internal),
                Some(("/shop/x", "internal.example:8080")),
            ),
            (
                "/shop/x",
                Some(&shop),
                Some(&to_internal),
                Some(("/x", "internal.example:8080")),
            ),
            ("/shop/x", Some(&broken_url), None, None),
            ("/shop/x", Some(&climbing), None, None),
            ("/x", None, Some(&broken_host), None),
        ];
        for (target, url, host, expected) in cases {
            let (mut parts, ()) = Request::get(target)
                .header("host", "shop.example:8080")
                .body(())
                .expect("request")
                .into_parts();
            // As the pipeline resolves it.
            let resolved = match crate::rules::normalized_path(parts.uri.path()) {
                std::borrow::Cow::Owned(path) => Some(path),
                std::borrow::Cow::Borrowed(_) => None,
            };
            let result = super::rewrite(&mut parts, resolved.as_deref(), url, host);
            match expected {
                Some((sent_url, sent_host)) => {
                    result.expect("rewritten");
                    assert_eq!(parts.uri.to_string(), sent_url, "{target}");
                    assert_eq!(parts.headers["host"], sent_host, "{target}");
                }
                None => assert!(result.is_err(), "{target}"),
            }
        }
        // An HTTP/2 request's authority follows the Host.
        let (mut parts, ()) = Request::get("https://shop.example:8080/shop/x")
            .header("host", "shop.example:8080")
            .body(())
            .expect("request")
            .into_parts();
        let (url, host) =
            super::rewrite(&mut parts, None, Some(&shop), Some(&to_internal)).expect("rewritten");
        assert_eq!(parts.uri.to_string(), "https://internal.example:8080/x");
        assert_eq!(url.as_deref(), Some("/x"));
        assert_eq!(host.as_deref(), Some("internal.example:8080"));
    }

    /// ALB's three ways with `X-Forwarded-For`, with and without the client's port, over
    /// requests that bring no line, one, or several.
    #[test]
    fn x_forwarded_for_is_appended_preserved_or_removed() {
        use super::{ForwardedFor, XffMode};
        let append = ForwardedFor::default();
        let with_port = ForwardedFor {
            mode: XffMode::Append,
            client_port: true,
        };
        let preserve = ForwardedFor {
            mode: XffMode::Preserve,
            client_port: true,
        };
        let remove = ForwardedFor {
            mode: XffMode::Remove,
            client_port: false,
        };
        // (client, the lines it sent, processing, the lines the target sees)
        let cases: [(&str, &[&str], ForwardedFor, &[&str]); 11] = [
            ("127.9.0.7:5000", &[], append, &["127.9.0.7"]),
            (
                "127.9.0.7:5000",
                &["203.0.113.9"],
                append,
                &["203.0.113.9, 127.9.0.7"],
            ),
            (
                "127.9.0.7:5000",
                &["203.0.113.9, 198.51.100.1", "192.0.2.4"],
                append,
                &["203.0.113.9, 198.51.100.1, 192.0.2.4, 127.9.0.7"],
            ),
            ("127.9.0.7:5000", &["", " "], append, &["127.9.0.7"]),
            ("127.9.0.7:5000", &[], with_port, &["127.9.0.7:5000"]),
            (
                "[::1]:443",
                &["203.0.113.9"],
                with_port,
                &["203.0.113.9, [::1]:443"],
            ),
            ("[::1]:443", &[], append, &["::1"]),
            ("127.9.0.7:5000", &[], preserve, &[]),
            (
                "127.9.0.7:5000",
                &["203.0.113.9", "192.0.2.4"],
                preserve,
                &["203.0.113.9", "192.0.2.4"],
            ),
            ("127.9.0.7:5000", &["203.0.113.9", "192.0.2.4"], remove, &[]),
            ("127.9.0.7:5000", &[], remove, &[]),
        ];
        for (client, lines, processing, expected) in cases {
            let mut request = Request::get("/x").header("host", "shop.example");
            for line in lines {
                request = request.header("x-forwarded-for", *line);
            }
            let (mut parts, ()) = request.body(()).expect("request").into_parts();
            let context =
                RequestContext::new(client.parse().expect("address"), TraceContext::new_root());
            prepare_request(&mut parts, &context, "http", &8080.into(), processing)
                .expect("prepared");
            let seen: Vec<&str> = parts
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .map(|value| value.to_str().expect("ascii"))
                .collect();
            assert_eq!(seen, expected, "{client} {lines:?} {processing:?}");
            // The other forwarding headers do not depend on it.
            assert_eq!(parts.headers["x-forwarded-proto"], "http");
            assert_eq!(parts.headers["x-forwarded-port"], "8080");
        }
    }

    #[test]
    fn forwarded_requests_lose_hop_by_hop_headers_and_gain_forwarding_headers() {
        let (mut parts, ()) = Request::get("/x")
            .header("connection", "keep-alive, x-private")
            .header("x-private", "secret")
            .header("keep-alive", "timeout=5")
            .header("upgrade", "websocket")
            .header("x-forwarded-for", "203.0.113.9")
            .header("host", "shop.example")
            .body(())
            .expect("request")
            .into_parts();
        let client: SocketAddr = "127.9.0.7:5000".parse().expect("address");
        let context = RequestContext::new(client, TraceContext::new_root());
        prepare_request(
            &mut parts,
            &context,
            "http",
            &8080.into(),
            Default::default(),
        )
        .expect("prepared");
        for gone in ["connection", "x-private", "keep-alive", "upgrade"] {
            assert!(
                !parts.headers.contains_key(gone),
                "{gone} must not be forwarded"
            );
        }
        assert_eq!(parts.headers["x-forwarded-for"], "203.0.113.9, 127.9.0.7");
        assert_eq!(parts.headers["x-forwarded-proto"], "http");
        assert_eq!(parts.headers["x-forwarded-port"], "8080");
        assert_eq!(parts.headers["host"], "shop.example");
        let sent = TraceContext::parse(parts.headers["traceparent"].to_str().expect("ascii"))
            .expect("valid");
        assert_eq!(sent, context.trace);
        // ALB's header names the same trace.
        let amzn = parts.headers["x-amzn-trace-id"].to_str().expect("ascii");
        assert_eq!(
            TraceContext::parse_amzn(amzn).map(|sent| sent.trace_id),
            Some(context.trace.trace_id)
        );
        let id = context.trace.trace_id_hex();
        assert_eq!(amzn, format!("Root=1-{}-{}", &id[..8], &id[8..]));
    }

    /// ALB's request tracing: a client's `X-Amzn-Trace-Id` continues its trace when no
    /// `traceparent` came, and goes on with its fields kept and a `Self` field of the
    /// edge's; one without a valid `Root` is replaced by the request's trace.
    #[test]
    fn an_amzn_trace_id_sent_is_continued_and_kept_with_a_self_field() {
        let root = "Root=1-67891233-abcdef012345678912345678";
        let cases = [
            (
                format!("{root};Parent=53995c3f42cd8ad8;Sampled=1"),
                Some(format!("{root};Parent=53995c3f42cd8ad8;Sampled=1")),
            ),
            (
                format!("Self=1-67891234-12456789abcdef012345678; {root} ;CalledFrom=app"),
                Some(format!("{root};CalledFrom=app")),
            ),
            ("Root=1-67891233-abcdef0123456789123456".to_owned(), None),
            ("CalledFrom=app".to_owned(), None),
        ];
        for (sent, kept) in cases {
            let (mut parts, ()) = Request::get("/x")
                .header("host", "shop.example")
                .header("x-amzn-trace-id", &sent)
                .body(())
                .expect("request")
                .into_parts();
            let (parent, amzn_trace_sent) = super::incoming_trace(&parts.headers);
            assert_eq!(parent.is_some(), kept.is_some(), "{sent}");
            assert_eq!(amzn_trace_sent, kept.is_some(), "{sent}");
            let trace = parent.map_or_else(TraceContext::new_root, |parent| parent.child());
            if kept.is_some() {
                assert_eq!(trace.trace_id, 0x67891233abcdef012345678912345678, "{sent}");
            }
            let client: SocketAddr = "127.9.0.7:5000".parse().expect("address");
            let mut context = RequestContext::new(client, trace);
            context.amzn_trace_sent = amzn_trace_sent;
            prepare_request(
                &mut parts,
                &context,
                "http",
                &8080.into(),
                Default::default(),
            )
            .expect("prepared");
            let forwarded = parts.headers["x-amzn-trace-id"].to_str().expect("ascii");
            match kept {
                Some(kept) => {
                    let (own, rest) = forwarded.split_once(';').expect("fields");
                    assert_eq!(rest, kept, "{sent}");
                    let span = format!("{:024x}", trace.span_id);
                    assert!(
                        own.starts_with("Self=1-") && own.len() == 40 && own.ends_with(&span),
                        "{forwarded}"
                    );
                }
                None => {
                    let id = trace.trace_id_hex();
                    assert_eq!(forwarded, format!("Root=1-{}-{}", &id[..8], &id[8..]));
                }
            }
        }
        // A valid `traceparent` names the trace, whatever `X-Amzn-Trace-Id` says.
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-amzn-trace-id",
            HeaderValue::from_static("Root=1-67891233-abcdef012345678912345678"),
        );
        headers.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        assert_eq!(
            super::incoming_trace(&headers),
            (
                TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
                true
            )
        );
    }
}
