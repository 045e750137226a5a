//! Conditional requests around stored responses: the validators a cache sends to revalidate
//! (RFC 9111 section 4.3.1), how a `304 Not Modified` freshens what is stored (section
//! 4.3.4), and answering a client's own conditional request from the cache (RFC 9110
//! section 13.2).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that describe a connection, or credentials for one hop, and are never stored
/// (RFC 9111 section 3.1).
const NOT_STORED: [HeaderName; 10] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    HeaderName::from_static("proxy-authentication-info"),
    header::PROXY_AUTHORIZATION,
];

/// Headers a 304 does not change in the stored response: they describe the stored body
/// itself (RFC 9111 section 3.2 names `Content-Length`; the others are the same kind).
const KEPT_FROM_STORED: [HeaderName; 5] = [
    header::CONTENT_LENGTH,
    header::CONTENT_ENCODING,
    HeaderName::from_static("content-md5"),
    header::CONTENT_RANGE,
    header::ETAG,
];

/// Removes what a cache must not store: hop-by-hop headers, those `Connection` names, and
/// proxy credentials.
pub fn strip_unstored(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = crate::directives::list_members(headers, header::CONNECTION)
        .filter_map(|token| HeaderName::from_bytes(token.as_bytes()).ok())
        .collect();
    for name in named.iter().chain(&NOT_STORED) {
        headers.remove(name);
    }
}

/// The headers of a stored response freshened by a 304's (RFC 9111 section 3.2): each
/// field the 304 carries replaces the stored one, except those that describe the stored
/// body.
pub fn freshen(stored: &HeaderMap, not_modified: &HeaderMap) -> HeaderMap {
    let mut updated = stored.clone();
    let mut incoming = not_modified.clone();
    strip_unstored(&mut incoming);
    for name in incoming.keys() {
        if !KEPT_FROM_STORED.contains(name) {
            updated.remove(name);
        }
    }
    for (name, value) in &incoming {
        if !KEPT_FROM_STORED.contains(name) {
            updated.append(name.clone(), value.clone());
        }
    }
    updated
}

/// The validators to revalidate a stored response with: `If-None-Match` from its `ETag`,
/// `If-Modified-Since` from its `Last-Modified`.
pub fn validators(stored: &HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
    let mut validators = Vec::with_capacity(2);
    if let Some(etag) = stored.get(header::ETAG) {
        validators.push((header::IF_NONE_MATCH, etag.clone()));
    }
    if let Some(modified) = stored.get(header::LAST_MODIFIED) {
        validators.push((header::IF_MODIFIED_SINCE, modified.clone()));
    }
    validators
}

/// Whether a client's conditional GET or HEAD is answered with 304 by the stored response:
/// `If-None-Match` by weak comparison of entity tags, else `If-Modified-Since` against
/// `Last-Modified` (RFC 9110 sections 13.1.2, 13.1.3 and 13.2.2).
pub fn client_not_modified(request: &HeaderMap, stored: &HeaderMap) -> bool {
    let mut if_none_match = request.get_all(header::IF_NONE_MATCH).iter().peekable();
    if if_none_match.peek().is_some() {
        let Some(etag) = stored.get(header::ETAG).and_then(|etag| etag.to_str().ok()) else {
            return false;
        };
        let opaque = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
        let ours = opaque(etag);
        return if_none_match
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|tag| tag.trim() == "*" || opaque(tag) == ours);
    }
    let since = request
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| httpdate::parse_http_date(text).ok());
    let modified = stored
        .get(header::LAST_MODIFIED)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| httpdate::parse_http_date(text).ok());
    matches!((since, modified), (Some(since), Some(modified)) if modified <= since)
}

/// The headers of a 304 answered from a stored response: those RFC 9110 section 15.4.5
/// requires, and none that describe the body.
pub fn not_modified_headers(stored: &HeaderMap) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for name in [
        header::CACHE_CONTROL,
        header::CONTENT_LOCATION,
        header::DATE,
        header::ETAG,
        header::EXPIRES,
        header::VARY,
        header::LAST_MODIFIED,
    ] {
        for value in stored.get_all(&name) {
            headers.append(name.clone(), value.clone());
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::headers;

    #[test]
    fn a_304_freshens_all_but_what_describes_the_body() {
        let stored = headers(&[
            ("etag", "\"a\""),
            ("content-length", "10"),
            ("content-type", "text/plain"),
            ("x-test", "old"),
            ("cache-control", "max-age=1"),
            ("kept", "yes"),
        ]);
        let not_modified = headers(&[
            ("etag", "\"b\""),
            ("content-length", "0"),
            ("content-type", "text/html"),
            ("x-test", "new"),
            ("cache-control", "max-age=3600"),
            ("connection", "x-hop"),
            ("x-hop", "1"),
            ("proxy-authenticate", "Basic"),
        ]);
        let freshened = freshen(&stored, &not_modified);
        for (name, value) in [
            ("etag", "\"a\""),
            ("content-length", "10"),
            ("content-type", "text/html"),
            ("x-test", "new"),
            ("cache-control", "max-age=3600"),
            ("kept", "yes"),
        ] {
            assert_eq!(
                freshened.get(name).map(|v| v.to_str().expect("text")),
                Some(value),
                "{name}"
            );
        }
        for absent in ["x-hop", "connection", "proxy-authenticate"] {
            assert!(!freshened.contains_key(absent), "{absent}");
        }
    }

    #[test]
    fn client_conditionals() {
        let stored = headers(&[
            ("etag", "W/\"v1\""),
            ("last-modified", "Tue, 01 Jan 2030 00:00:00 GMT"),
        ]);
        let cases: &[(&[(&str, &str)], bool)] = &[
            (&[("if-none-match", "\"v1\"")], true),
            (&[("if-none-match", "\"v0\", W/\"v1\"")], true),
            (&[("if-none-match", "*")], true),
            (&[("if-none-match", "\"v2\"")], false),
            // If-None-Match takes precedence over If-Modified-Since.
            (
                &[
                    ("if-none-match", "\"v2\""),
                    ("if-modified-since", "Wed, 01 Jan 2031 00:00:00 GMT"),
                ],
                false,
            ),
            (
                &[("if-modified-since", "Wed, 01 Jan 2031 00:00:00 GMT")],
                true,
            ),
            (
                &[("if-modified-since", "Tue, 01 Jan 2030 00:00:00 GMT")],
                true,
            ),
            (
                &[("if-modified-since", "Mon, 31 Dec 2029 00:00:00 GMT")],
                false,
            ),
            (&[("if-modified-since", "yesterday")], false),
            (&[], false),
        ];
        for (request, expected) in cases {
            assert_eq!(
                client_not_modified(&headers(request), &stored),
                *expected,
                "{request:?}"
            );
        }
        assert_eq!(validators(&stored).len(), 2);
        let stripped = not_modified_headers(&headers(&[
            ("etag", "\"a\""),
            ("content-type", "x"),
            ("vary", "A"),
        ]));
        assert!(stripped.contains_key("etag") && stripped.contains_key("vary"));
        assert!(!stripped.contains_key("content-type"));
    }
}
