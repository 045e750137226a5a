//! The request guard: ALB's desync mitigation. Each HTTP/1.x request is classified by how
//! far it strays from RFC 9112 in ways that let two servers in a chain read it differently
//! (request smuggling, "HTTP desync"), and the listener's mode says what becomes of it.
//!
//! The classifications and their reasons are those of ALB's access log (`classification`,
//! `classification_reason`), from the `http_desync_guardian` library ALB uses:
//!
//! | reason | classification |
//! |---|---|
//! | `NonCrLfLineTermination`: a line of the head ends with a bare LF | acceptable |
//! | `GetHeadZeroContentLength`: a GET or HEAD with `Content-Length: 0` | acceptable |
//! | `BothTeClPresent`: both `Transfer-Encoding` and `Content-Length` | ambiguous |
//! | `DuplicateContentLength`: the same length said more than once | ambiguous |
//! | `UndefinedTransferEncodingSemantics`: a GET or HEAD with `Transfer-Encoding` | ambiguous |
//! | `UndefinedContentLengthSemantics`: a GET or HEAD with a length above 0 | ambiguous |
//! | `SuspiciousHeader`: a name whose letters are those of `Transfer-Encoding` or `Content-Length` (`Transfer_Encoding`) | ambiguous |
//! | `MultipleTransferEncodingChunked`: `chunked` more than once | severe |
//! | `BadTransferEncoding`: a coding other than `chunked` | severe |
//!
//! What each mode does (`desync_mitigation_mode`, as ALB's):
//!
//! | classification | `monitor` | `defensive` (the default) | `strictest` |
//! |---|---|---|---|
//! | compliant | routed | routed | routed |
//! | acceptable | routed | routed | 400 |
//! | ambiguous | routed, then the target's connection closed | routed, then the client's and the target's connections closed; 400 for `BothTeClPresent` and `DuplicateContentLength` | 400 |
//! | severe | 400 | 400 | 400 |
//!
//! The target's connection is closed after an ambiguous request in `monitor` mode too (it
//! is sent `Connection: close` and never pooled again): what a target may read past the
//! request's end, where it reads the request differently from the edge, goes with the
//! connection instead of being read as another client's request. That holds for target
//! groups spoken to over HTTP/1.1; HTTP/2's streams are framed by the protocol, and a
//! protocol switch's connection becomes a tunnel, never pooled.
//!
//! Three differences from ALB, all toward refusing or closing: that one; in `defensive` mode a request framed
//! two ways (both headers, or one length said twice) is refused, as nginx refuses it,
//! where ALB routes it and closes both connections. And a severe request is refused in
//! every mode, `monitor` too: the edge forwards a body as it read it, in its own framing,
//! and a body whose framing it cannot read (a coding other than `chunked`, which it does
//! not decode) it cannot forward. A request routed in `monitor` mode with both headers
//! goes by its `Transfer-Encoding`, its `Content-Length` removed (RFC 9112 section 6.3),
//! and one whose length was said twice goes with one.
//!
//! Whatever the mode, the edge's HTTP/1 server (`server.rs`) refuses what it cannot parse
//! or frame at all, before any classification: ALB's other severe reasons (a bad method,
//! URI, version or header character: `httparse` reads none of them) and differing or
//! malformed lengths (`MultipleContentLength`, `BadContentLength`), a transfer coding
//! from an HTTP/1.0 client and codings that do not end in `chunked`. So do ALB's
//! acceptable `SpaceInUri`, `NonCompliantHeader` and `NonCompliantVersion`, and its
//! ambiguous `EmptyHeader`, `AmbiguousUri` and `MultilineHeader`. A repeated `Host` is
//! refused here in every mode (RFC 9112 section 3.2 says a server must).
//!
//! HTTP/2 requests are not classified (as ALB's are not): their framing is the
//! protocol's own; a repeated `Host` or `Content-Length` is refused there too. A pure
//! function of the request head, tested as tables.

use http::{HeaderMap, HeaderValue, Method, Version, header};

use crate::error::EdgeError;

/// What a listener does with requests that do not comply with RFC 9112 (ALB's
/// `routing.http.desync_mitigation_mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DesyncMode {
    /// Route every request the edge can frame but severe ones; classify and count them.
    Monitor,
    /// Route acceptable requests; route ambiguous ones and then close the connections
    /// (but refuse those framed two ways); refuse severe ones.
    #[default]
    Defensive,
    /// Route compliant requests only.
    Strictest,
}

impl DesyncMode {
    /// The mode's name, as the topology file writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            DesyncMode::Monitor => "monitor",
            DesyncMode::Defensive => "defensive",
            DesyncMode::Strictest => "strictest",
        }
    }
}

/// How far a request strays from RFC 9112, in increasing order of risk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Classification {
    /// Not compliant, but no server reads it two ways.
    Acceptable,
    /// Servers may read it differently.
    Ambiguous,
    /// Malformed, or crafted to desynchronize.
    Severe,
}

impl Classification {
    /// ALB's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Classification::Acceptable => "Acceptable",
            Classification::Ambiguous => "Ambiguous",
            Classification::Severe => "Severe",
        }
    }
}

/// Why a request is not compliant (ALB's `classification_reason` codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A line of the head ends with LF alone.
    NonCrLfLineTermination,
    /// A GET or HEAD says `Content-Length: 0`.
    GetHeadZeroContentLength,
    /// Both `Transfer-Encoding` and `Content-Length`.
    BothTeClPresent,
    /// The same `Content-Length` said more than once.
    DuplicateContentLength,
    /// A GET or HEAD with `Transfer-Encoding`.
    UndefinedTransferEncodingSemantics,
    /// A GET or HEAD with a `Content-Length` above 0.
    UndefinedContentLengthSemantics,
    /// A header whose name has the letters of `Transfer-Encoding` or `Content-Length`.
    SuspiciousHeader,
    /// `chunked` applied more than once.
    MultipleTransferEncodingChunked,
    /// A transfer coding other than `chunked`.
    BadTransferEncoding,
}

impl Reason {
    /// Every reason, in the order of their discriminants (`reason as usize` indexes it).
    pub const ALL: [Reason; 9] = [
        Reason::NonCrLfLineTermination,
        Reason::GetHeadZeroContentLength,
        Reason::BothTeClPresent,
        Reason::DuplicateContentLength,
        Reason::UndefinedTransferEncodingSemantics,
        Reason::UndefinedContentLengthSemantics,
        Reason::SuspiciousHeader,
        Reason::MultipleTransferEncodingChunked,
        Reason::BadTransferEncoding,
    ];

    /// The reason's classification.
    pub fn classification(self) -> Classification {
        match self {
            Reason::NonCrLfLineTermination | Reason::GetHeadZeroContentLength => {
                Classification::Acceptable
            }
            Reason::BothTeClPresent
            | Reason::DuplicateContentLength
            | Reason::UndefinedTransferEncodingSemantics
            | Reason::UndefinedContentLengthSemantics
            | Reason::SuspiciousHeader => Classification::Ambiguous,
            Reason::MultipleTransferEncodingChunked | Reason::BadTransferEncoding => {
                Classification::Severe
            }
        }
    }

    /// ALB's code for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NonCrLfLineTermination => "NonCrLfLineTermination",
            Reason::GetHeadZeroContentLength => "GetHeadZeroContentLength",
            Reason::BothTeClPresent => "BothTeClPresent",
            Reason::DuplicateContentLength => "DuplicateContentLength",
            Reason::UndefinedTransferEncodingSemantics => "UndefinedTransferEncodingSemantics",
            Reason::UndefinedContentLengthSemantics => "UndefinedContentLengthSemantics",
            Reason::SuspiciousHeader => "SuspiciousHeader",
            Reason::MultipleTransferEncodingChunked => "MultipleTransferEncodingChunked",
            Reason::BadTransferEncoding => "BadTransferEncoding",
        }
    }

    /// What the edge's 400 says of it.
    fn refusal(self) -> &'static str {
        match self {
            Reason::NonCrLfLineTermination => "a line of the request ends without CR",
            Reason::GetHeadZeroContentLength => "a GET or HEAD request may not say Content-Length",
            Reason::BothTeClPresent => {
                "a request may not have both Content-Length and Transfer-Encoding"
            }
            Reason::DuplicateContentLength => "a request may have one Content-Length",
            Reason::UndefinedTransferEncodingSemantics => {
                "a GET or HEAD request may not have Transfer-Encoding"
            }
            Reason::UndefinedContentLengthSemantics => "a GET or HEAD request may not have a body",
            Reason::SuspiciousHeader => {
                "a header's name may not pass for Transfer-Encoding or Content-Length"
            }
            Reason::MultipleTransferEncodingChunked => "a body may be chunked once",
            Reason::BadTransferEncoding => "the only Transfer-Encoding accepted is chunked",
        }
    }

    /// Whether the request's body is framed two ways (refused in `defensive` mode too).
    fn framed_twice(self) -> bool {
        matches!(
            self,
            Reason::BothTeClPresent | Reason::DuplicateContentLength
        )
    }
}

/// What the guard decided of a request that goes on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Why the request does not comply (`None`: it does).
    pub reason: Option<Reason>,
    /// Whether the client's connection is closed after the answer (`defensive` mode's way
    /// with ambiguous requests).
    pub close_client: bool,
    /// Whether the target's connection is not used again after the answer: after every
    /// ambiguous request that is routed, in `monitor` mode too, so that what a target may
    /// read past the request's end (a `Transfer_Encoding` it takes for
    /// `Transfer-Encoding`) is dropped with the connection, never read as the next
    /// client's request. (Targets spoken to over HTTP/1.1; an HTTP/2 target's streams
    /// are framed by the protocol.)
    pub close_target: bool,
}

/// A refused request: why it does not comply, if it was classified, and the 400's error.
#[derive(Debug)]
pub struct Refused {
    /// Its classification reason (`None`: refused whatever the mode, as a repeated `Host`).
    pub reason: Option<Reason>,
    /// The answer.
    pub error: EdgeError,
}

/// Classifies a request head and applies `mode`. `bare_line_feeds` says whether a line
/// of the head ended with LF alone (which the server saw; the header map cannot tell). A
/// request that is routed in `monitor` mode with its body framed two ways leaves with one
/// framing (see the module's documentation).
pub fn check(
    mode: DesyncMode,
    method: &Method,
    version: Version,
    headers: &mut HeaderMap,
    bare_line_feeds: bool,
) -> Result<Verdict, Refused> {
    let (lines, reason) = scan(method, version, headers, bare_line_feeds);
    if lines.hosts > 1 {
        return Err(Refused {
            reason: None,
            error: EdgeError::BadRequest("a request may have one Host"),
        });
    }
    if lines.lengths > 1 && !matches!(version, Version::HTTP_10 | Version::HTTP_11) {
        // HTTP/2 and later are not classified, but a length said twice is refused there
        // as ever: an HTTP/2 target would be sent both.
        return Err(Refused {
            reason: None,
            error: EdgeError::BadRequest("a request may have one Content-Length"),
        });
    }
    let Some(reason) = reason else {
        return Ok(Verdict::default());
    };
    let refuse = match reason.classification() {
        Classification::Severe => true,
        _ if mode == DesyncMode::Strictest => true,
        Classification::Ambiguous => mode == DesyncMode::Defensive && reason.framed_twice(),
        Classification::Acceptable => false,
    };
    if refuse {
        return Err(Refused {
            reason: Some(reason),
            error: EdgeError::BadRequest(reason.refusal()),
        });
    }
    match reason {
        Reason::BothTeClPresent => {
            headers.remove(header::CONTENT_LENGTH);
        }
        Reason::DuplicateContentLength => {
            if let Some(length) = lines.length {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
            }
        }
        _ => {}
    }
    let ambiguous = reason.classification() == Classification::Ambiguous;
    Ok(Verdict {
        reason: Some(reason),
        close_client: ambiguous && mode == DesyncMode::Defensive,
        close_target: ambiguous,
    })
}

/// How many `Host` and `Content-Length` lines a head has, and the length it says.
#[derive(Debug, Clone, Copy, Default)]
struct Lines {
    hosts: usize,
    lengths: usize,
    /// (HTTP/1.x heads only.)
    length: Option<u64>,
}

/// How many `Host` and length lines a head has, and why it does not comply: the most
/// severe reason, and of two alike the one listed first below (framing two ways before
/// the others, so that `defensive` mode refuses it whatever else the head has). One walk
/// over its headers, comparing names (a standard name is a number): cheaper than looking
/// up each of the three in the map, which hashes each name.
fn scan(
    method: &Method,
    version: Version,
    headers: &HeaderMap,
    bare_line_feeds: bool,
) -> (Lines, Option<Reason>) {
    let classified = matches!(version, Version::HTTP_10 | Version::HTTP_11);
    let mut lines = Lines::default();
    if !classified {
        for name in headers.keys() {
            let count = || headers.get_all(name).iter().count();
            if name == header::HOST {
                lines.hosts = count();
            } else if name == header::CONTENT_LENGTH {
                lines.lengths = count();
            }
        }
        return (lines, None);
    }
    // Transfer codings: whether any, `chunked` twice, another coding.
    let (mut transfer_encoding, mut chunked_twice, mut other_coding, mut chunked) =
        (false, false, false, false);
    // How many times a length is said (`5, 5` says it twice in one line).
    let mut said = 0;
    let mut suspicious = false;
    for (name, value) in headers {
        if name == header::HOST {
            lines.hosts += 1;
        } else if name == header::TRANSFER_ENCODING {
            transfer_encoding = true;
            for member in value.as_bytes().split(|&byte| byte == b',') {
                let coding = member
                    .split(|&byte| byte == b';')
                    .next()
                    .unwrap_or_default();
                if coding.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                    chunked_twice |= chunked;
                    chunked = true;
                } else {
                    other_coding = true;
                }
            }
        } else if name == header::CONTENT_LENGTH {
            lines.lengths += 1;
            // (The server refused differing and malformed lengths.)
            for member in value.as_bytes().split(|&byte| byte == b',') {
                said += 1;
                lines.length = std::str::from_utf8(member.trim_ascii())
                    .ok()
                    .and_then(|digits| digits.parse::<u64>().ok())
                    .or(lines.length);
            }
        } else {
            suspicious |= passes_for_framing(name);
        }
    }
    // Most requests: no framing header, nothing suspicious.
    if !(transfer_encoding || lines.lengths > 0 || suspicious || bare_line_feeds) {
        return (lines, None);
    }
    let body_less = *method == Method::GET || *method == Method::HEAD;
    // In order: the first of the most severe is the reason.
    let reasons = [
        (chunked_twice, Reason::MultipleTransferEncodingChunked),
        (other_coding, Reason::BadTransferEncoding),
        (transfer_encoding && said > 0, Reason::BothTeClPresent),
        (said > 1, Reason::DuplicateContentLength),
        (
            body_less && transfer_encoding,
            Reason::UndefinedTransferEncodingSemantics,
        ),
        (
            body_less && lines.length.is_some_and(|length| length > 0),
            Reason::UndefinedContentLengthSemantics,
        ),
        (suspicious, Reason::SuspiciousHeader),
        (
            body_less && lines.length == Some(0),
            Reason::GetHeadZeroContentLength,
        ),
        (bare_line_feeds, Reason::NonCrLfLineTermination),
    ];
    let mut worst: Option<Reason> = None;
    for (found, reason) in reasons {
        if found && worst.is_none_or(|worst| reason.classification() > worst.classification()) {
            worst = Some(reason);
        }
    }
    (lines, worst)
}

/// Whether a header's name has the letters and digits of `Transfer-Encoding` or
/// `Content-Length`, in order, without being either (`Transfer_Encoding`,
/// `Content-Length.`, `-content-length`): a server that reads names loosely (CGI and WSGI
/// turn `_` into `-`) would take it for one. Names are lowercase in a header map, and
/// `httparse` lets through only the characters of a token.
fn passes_for_framing(name: &header::HeaderName) -> bool {
    const FRAMING: [&[u8]; 2] = [b"transferencoding", b"contentlength"];
    let name = name.as_str().as_bytes();
    // Shorter than the shorter one's letters, or one of the two itself: most names.
    if name.len() < FRAMING[1].len() || name == b"transfer-encoding" || name == b"content-length" {
        return false;
    }
    FRAMING.iter().any(|letters| {
        let mut letters = letters.iter();
        name.iter()
            .filter(|byte| byte.is_ascii_alphanumeric())
            .all(|byte| letters.next() == Some(byte))
            && letters.next().is_none()
    })
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderName, HeaderValue, Method, Version};

    use super::{DesyncMode, Reason, Verdict, check, scan};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        map
    }

    #[test]
    fn requests_are_classified_as_alb_classifies_them() {
        use Reason::*;
        type Case<'a> = (
            &'a str,
            Version,
            &'a [(&'a str, &'a str)],
            bool,
            Option<Reason>,
        );
        let cases: &[Case<'_>] = &[
            ("GET", Version::HTTP_11, &[("host", "a")], false, None),
            (
                "POST",
                Version::HTTP_11,
                &[("content-length", "5")],
                false,
                None,
            ),
            (
                "POST",
                Version::HTTP_11,
                &[("transfer-encoding", "chunked")],
                false,
                None,
            ),
            (
                "POST",
                Version::HTTP_11,
                &[("transfer-encoding", " Chunked ")],
                false,
                None,
            ),
            (
                "POST",
                Version::HTTP_10,
                &[("content-length", "0")],
                false,
                None,
            ),
            // Headers said twice that do not frame: compliant.
            (
                "GET",
                Version::HTTP_11,
                &[("accept", "a/b"), ("accept", "c/d")],
                false,
                None,
            ),
            // Names that only look alike.
            (
                "GET",
                Version::HTTP_11,
                &[("content-type", "a/b")],
                false,
                None,
            ),
            (
                "GET",
                Version::HTTP_11,
                &[("content-length-x", "1")],
                false,
                None,
            ),
            (
                "GET",
                Version::HTTP_11,
                &[("x-transfer-encodings", "1")],
                false,
                None,
            ),
            (
                "GET",
                Version::HTTP_11,
                &[],
                true,
                Some(NonCrLfLineTermination),
            ),
            (
                "GET",
                Version::HTTP_11,
                &[("content-length", "0")],
                false,
                Some(GetHeadZeroContentLength),
            ),
            (
                "HEAD",
                Version::HTTP_11,
                &[("content-length", "0")],
                false,
                Some(GetHeadZeroContentLength),
            ),
            (
                "GET",
                Version::HTTP_11,
                &[("content-length", "5")],
                false,
                Some(UndefinedContentLengthSemantics),
            ),
            (
                "GET",
                Version::HTTP_11,
                &[("transfer-encoding", "chunked")],
                false,
                Some(UndefinedTransferEncodingSemantics),
            ),
            (
                "POST",
                Version::HTTP_11,
                &[("content-length", "5"), ("transfer-encoding", "chunked")],
                false,
                Some(BothTeClPresent),
            ),
            // Framing two ways is named before what else is ambiguous.
            (
                "GET",
                Version::HTTP_11,
                &[
                    ("transfer-encoding", "chunked"),
                    ("content-length", "5"),
                    ("transfer_encoding", "x"),
                ],
                true,
                Some(BothTeClPresent),
            ),
            (
                "POST",
                Version::HTTP_11,
                &[("content-length", "5"), ("content-length", "5")],
                false,
                Some(DuplicateContentLength),
            ),
            (
                "POST",
                Version::HTTP_11,
                &[("content-length", "5, 5")],
                false,
                Some(DuplicateContentLength),
            ),
            (
                "GET",
                Version::HTTP_11,
                &[("transfer_encoding", "chunked")],
                false,
                Some(SuspiciousHeader),
            ),
            (
                "GET",
                Version::HTTP_11,
                &[("content_length", "5")],
                false,
                Some(SuspiciousHeader),
            ),
            (
                "GET",
                Version::HTTP_11,
                &[("contentlength", "5")],
                false,
                Some(SuspiciousHeader),
            ),
            (
                "GET",
                Version::HTTP_11,
                &[("-transfer-encoding-", "chunked")],
                false,
                Some(SuspiciousHeader),
            ),
            (
                "POST",
                Version::HTTP_11,
                &[
                    ("transfer-encoding", "chunked"),
                    ("transfer-encoding", "chunked"),
                ],
                false,
                Some(MultipleTransferEncodingChunked),
            ),
            (
                "POST",
                Version::HTTP_11,
                &[("transfer-encoding", "chunked, chunked")],
                false,
                Some(MultipleTransferEncodingChunked),
            ),
            (
                "POST",
                Version::HTTP_11,
                &[("transfer-encoding", "gzip, chunked")],
                false,
                Some(BadTransferEncoding),
            ),
            // Severe wins over ambiguous and acceptable.
            (
                "GET",
                Version::HTTP_11,
                &[
                    ("content-length", "0"),
                    ("transfer-encoding", "identity, chunked"),
                ],
                true,
                Some(BadTransferEncoding),
            ),
            // HTTP/2 frames its own way.
            (
                "GET",
                Version::HTTP_2,
                &[("content-length", "5")],
                false,
                None,
            ),
        ];
        for (method, version, pairs, bare_line_feeds, expected) in cases {
            let method = Method::from_bytes(method.as_bytes()).expect("method");
            assert_eq!(
                scan(&method, *version, &headers(pairs), *bare_line_feeds).1,
                *expected,
                "{method} {version:?} {pairs:?} bare LF {bare_line_feeds}"
            );
        }
    }

    #[test]
    fn each_mode_routes_closes_or_refuses() {
        use DesyncMode::*;
        // (method, headers, bare LF, mode, Some(client's connection closed) if routed,
        // None if refused)
        type Case<'a> = (
            &'a str,
            &'a [(&'a str, &'a str)],
            bool,
            DesyncMode,
            Option<bool>,
        );
        let both: &[(&str, &str)] = &[("content-length", "5"), ("transfer-encoding", "chunked")];
        let twice: &[(&str, &str)] = &[("content-length", "5"), ("content-length", "5")];
        let get_body: &[(&str, &str)] = &[("content-length", "5")];
        let suspicious: &[(&str, &str)] = &[("transfer_encoding", "chunked")];
        let severe: &[(&str, &str)] = &[("transfer-encoding", "chunked, chunked")];
        let two_hosts: &[(&str, &str)] = &[("host", "a.example"), ("host", "b.example")];
        let cases: &[Case<'_>] = &[
            ("GET", &[], false, Strictest, Some(false)),
            // Acceptable.
            ("GET", &[], true, Monitor, Some(false)),
            ("GET", &[], true, Defensive, Some(false)),
            ("GET", &[], true, Strictest, None),
            // Ambiguous, framed one way.
            ("GET", get_body, false, Monitor, Some(false)),
            ("GET", get_body, false, Defensive, Some(true)),
            ("GET", get_body, false, Strictest, None),
            ("GET", suspicious, false, Monitor, Some(false)),
            ("GET", suspicious, false, Defensive, Some(true)),
            ("GET", suspicious, false, Strictest, None),
            // Ambiguous, framed two ways.
            ("POST", both, false, Monitor, Some(false)),
            ("POST", both, false, Defensive, None),
            ("POST", both, false, Strictest, None),
            ("POST", twice, false, Monitor, Some(false)),
            ("POST", twice, false, Defensive, None),
            // Severe, and a second Host: refused in every mode.
            ("POST", severe, false, Monitor, None),
            ("POST", severe, false, Defensive, None),
            ("GET", two_hosts, false, Monitor, None),
            ("GET", two_hosts, false, Defensive, None),
        ];
        for (method, pairs, bare_line_feeds, mode, expected) in cases {
            let method = Method::from_bytes(method.as_bytes()).expect("method");
            let mut map = headers(pairs);
            let verdict = check(*mode, &method, Version::HTTP_11, &mut map, *bare_line_feeds);
            assert_eq!(
                verdict.as_ref().ok().map(|verdict| verdict.close_client),
                *expected,
                "{method} {pairs:?} bare LF {bare_line_feeds} in {mode:?}: {verdict:?}"
            );
        }
    }

    #[test]
    fn reasons_are_listed_in_the_order_of_their_discriminants() {
        for (index, reason) in Reason::ALL.into_iter().enumerate() {
            assert_eq!(reason as usize, index, "{reason:?}");
        }
    }

    #[test]
    fn http2_requests_are_not_classified_but_one_host_and_one_length_hold() {
        let mut map = headers(&[("content-length", "5")]);
        let verdict = check(
            DesyncMode::Strictest,
            &Method::GET,
            Version::HTTP_2,
            &mut map,
            false,
        );
        assert_eq!(verdict.expect("routed"), Verdict::default());
        for pairs in [
            &[("host", "a"), ("host", "b")][..],
            &[("content-length", "5"), ("content-length", "5")][..],
        ] {
            let mut map = headers(pairs);
            let verdict = check(
                DesyncMode::Monitor,
                &Method::POST,
                Version::HTTP_2,
                &mut map,
                false,
            );
            assert!(verdict.is_err(), "{pairs:?}");
        }
    }

    #[test]
    fn monitor_mode_forwards_one_framing() {
        let mut map = headers(&[("content-length", "5"), ("transfer-encoding", "chunked")]);
        let verdict = check(
            DesyncMode::Monitor,
            &Method::POST,
            Version::HTTP_11,
            &mut map,
            false,
        );
        assert_eq!(
            verdict.expect("routed"),
            Verdict {
                reason: Some(Reason::BothTeClPresent),
                close_client: false,
                close_target: true,
            }
        );
        assert!(!map.contains_key("content-length"), "{map:?}");
        assert_eq!(map["transfer-encoding"], "chunked");

        let mut map = headers(&[("content-length", "7, 7"), ("content-length", "7")]);
        check(
            DesyncMode::Monitor,
            &Method::POST,
            Version::HTTP_11,
            &mut map,
            false,
        )
        .expect("routed");
        assert_eq!(
            map.get_all("content-length").iter().collect::<Vec<_>>(),
            ["7"]
        );
    }
}
