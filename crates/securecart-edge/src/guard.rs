//! The request guard: what the edge refuses before any rule sees a request, because a
//! target could read it differently from the edge (request smuggling, RFC 9112 section
//! 6.1 and 6.3) or because it breaks HTTP/1.1's framing rules.
//!
//! The edge's HTTP/1 server (`server.rs`) already refuses differing `Content-Length`
//! values, a transfer coding from an HTTP/1.0 client and codings that do not end in
//! `chunked`. It frames a request with both `Content-Length` and `Transfer-Encoding` by the
//! latter and leaves both headers for the checks below, which refuse it (as nginx does)
//! and what else is ambiguous: repeated or non-`chunked` codings, and repeated `Host` or
//! `Content-Length` headers. A refused request's connection is closed.
//!
//! A pure function of the request head, tested as a table.

use http::{HeaderMap, Version, header};

use crate::error::EdgeError;

/// Checks a request head; `Err` is answered with 400 and the connection is not reused.
pub fn check(version: Version, headers: &HeaderMap) -> Result<(), EdgeError> {
    // Most requests have no transfer coding and no header twice (a map with as many
    // values as names): one look-up tells, where a count of each header's values would
    // take three.
    let transfer_encoding = headers.contains_key(header::TRANSFER_ENCODING);
    if !transfer_encoding && headers.len() == headers.keys_len() {
        return Ok(());
    }
    let transfer_encodings = headers.get_all(header::TRANSFER_ENCODING).iter().count();
    if transfer_encodings > 0 {
        // Both framings at once is the classic smuggling vector: refuse, as RFC 9112
        // allows, rather than guess which one the target will believe.
        if headers.contains_key(header::CONTENT_LENGTH) {
            return Err(EdgeError::BadRequest(
                "a request may not have both Content-Length and Transfer-Encoding",
            ));
        }
        if version == Version::HTTP_10 {
            return Err(EdgeError::BadRequest(
                "an HTTP/1.0 request may not use Transfer-Encoding",
            ));
        }
        let chunked_only = transfer_encodings == 1
            && headers
                .get(header::TRANSFER_ENCODING)
                .and_then(|value| value.to_str().ok())
                .is_some_and(|value| value.trim().eq_ignore_ascii_case("chunked"));
        if !chunked_only {
            return Err(EdgeError::BadRequest(
                "the only Transfer-Encoding accepted is chunked",
            ));
        }
    }
    let lengths = headers.get_all(header::CONTENT_LENGTH).iter().count();
    if lengths > 1 {
        return Err(EdgeError::BadRequest(
            "a request may have one Content-Length",
        ));
    }
    if headers.get_all(header::HOST).iter().count() > 1 {
        return Err(EdgeError::BadRequest("a request may have one Host"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderName, HeaderValue, Version};

    use super::check;

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
    fn ambiguous_framing_is_refused() {
        type Case<'a> = (Version, &'a [(&'a str, &'a str)], bool);
        let cases: &[Case<'_>] = &[
            (Version::HTTP_11, &[("content-length", "5")], true),
            (Version::HTTP_11, &[("transfer-encoding", "chunked")], true),
            (
                Version::HTTP_11,
                &[("transfer-encoding", " Chunked ")],
                true,
            ),
            (
                Version::HTTP_11,
                &[("content-length", "5"), ("transfer-encoding", "chunked")],
                false,
            ),
            (
                Version::HTTP_11,
                &[("transfer-encoding", "gzip, chunked")],
                false,
            ),
            (
                Version::HTTP_11,
                &[
                    ("transfer-encoding", "chunked"),
                    ("transfer-encoding", "chunked"),
                ],
                false,
            ),
            (
                Version::HTTP_11,
                &[("transfer-encoding", "identity")],
                false,
            ),
            (Version::HTTP_10, &[("transfer-encoding", "chunked")], false),
            (
                Version::HTTP_11,
                &[("content-length", "5"), ("content-length", "5")],
                false,
            ),
            (
                Version::HTTP_11,
                &[("host", "a.example"), ("host", "b.example")],
                false,
            ),
            (Version::HTTP_11, &[], true),
            (
                Version::HTTP_11,
                &[("host", "a.example"), ("accept", "a/b"), ("accept", "c/d")],
                true,
            ),
            (
                Version::HTTP_11,
                &[
                    ("accept", "a/b"),
                    ("accept", "c/d"),
                    ("content-length", "5"),
                    ("content-length", "5"),
                ],
                false,
            ),
        ];
        for (version, pairs, accepted) in cases {
            assert_eq!(
                check(*version, &headers(pairs)).is_ok(),
                *accepted,
                "{version:?} {pairs:?}"
            );
        }
    }
}
