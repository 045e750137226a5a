//! Byte ranges served from stored responses (RFC 9110 section 14): one range per request,
//! as nginx serves from its cache; a request for several gets the whole response, which
//! the RFC allows.

use std::ops::Range;

use http::header::{self, HeaderMap};

/// What a `Range` header asks of a stored body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ranged {
    /// No range, several ranges, another unit, or an `If-Range` that no longer matches:
    /// the whole response.
    Whole,
    /// These bytes, as a 206.
    Part(Range<u64>),
    /// Nothing of the body: 416.
    Unsatisfiable,
}

/// The part of a stored body of `length` bytes, with headers `stored`, that `request`
/// asks for.
pub fn requested(request: &HeaderMap, stored: &HeaderMap, length: u64) -> Ranged {
    let Some(range) = request
        .get(header::RANGE)
        .and_then(|value| value.to_str().ok())
    else {
        return Ranged::Whole;
    };
    if !if_range_holds(request, stored) {
        return Ranged::Whole;
    }
    let Some(spec) = range.trim().strip_prefix("bytes=") else {
        return Ranged::Whole;
    };
    if spec.contains(',') {
        return Ranged::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Ranged::Whole;
    };
    let number = |text: &str| {
        (!text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()))
            .then(|| text.parse::<u64>().ok())
            .flatten()
    };
    match (first.trim(), last.trim()) {
        ("", suffix) => match number(suffix) {
            Some(0) => Ranged::Unsatisfiable,
            Some(suffix) if length > 0 => Ranged::Part(length.saturating_sub(suffix)..length),
            Some(_) => Ranged::Unsatisfiable,
            None => Ranged::Whole,
        },
        (first, "") => match number(first) {
            Some(first) if first < length => Ranged::Part(first..length),
            Some(_) => Ranged::Unsatisfiable,
            None => Ranged::Whole,
        },
        (first, last) => match (number(first), number(last)) {
            (Some(first), Some(last)) if first <= last => {
                if first >= length {
                    Ranged::Unsatisfiable
                } else {
                    Ranged::Part(first..last.min(length - 1) + 1)
                }
            }
            _ => Ranged::Whole,
        },
    }
}

/// `If-Range`: the range applies only if the stored response is still the one the client
/// holds part of (a strong `ETag` match, or exactly its `Last-Modified`).
fn if_range_holds(request: &HeaderMap, stored: &HeaderMap) -> bool {
    let Some(condition) = request
        .get(header::IF_RANGE)
        .and_then(|value| value.to_str().ok())
    else {
        return true;
    };
    let condition = condition.trim();
    if condition.starts_with('"') {
        return stored
            .get(header::ETAG)
            .and_then(|etag| etag.to_str().ok())
            .is_some_and(|etag| etag.trim() == condition);
    }
    if condition.starts_with("W/") {
        return false;
    }
    stored
        .get(header::LAST_MODIFIED)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|modified| modified.trim() == condition)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::headers;

    #[test]
    fn ranges_of_a_ten_byte_body() {
        let stored = headers(&[
            ("etag", "\"v1\""),
            ("last-modified", "Tue, 01 Jan 2030 00:00:00 GMT"),
        ]);
        let cases: &[(&[(&'static str, &'static str)], Ranged)] = &[
            (&[], Ranged::Whole),
            (&[("range", "bytes=0-1")], Ranged::Part(0..2)),
            (&[("range", "bytes=5-")], Ranged::Part(5..10)),
            (&[("range", "bytes=-3")], Ranged::Part(7..10)),
            (&[("range", "bytes=-30")], Ranged::Part(0..10)),
            (&[("range", "bytes=8-100")], Ranged::Part(8..10)),
            (&[("range", "bytes=10-12")], Ranged::Unsatisfiable),
            (&[("range", "bytes=-0")], Ranged::Unsatisfiable),
            (&[("range", "bytes=3-1")], Ranged::Whole),
            (&[("range", "bytes=0-1,4-5")], Ranged::Whole),
            (&[("range", "items=0-1")], Ranged::Whole),
            (&[("range", "bytes=a-1")], Ranged::Whole),
            (
                &[("range", "bytes=0-1"), ("if-range", "\"v1\"")],
                Ranged::Part(0..2),
            ),
            (
                &[("range", "bytes=0-1"), ("if-range", "\"v0\"")],
                Ranged::Whole,
            ),
            (
                &[("range", "bytes=0-1"), ("if-range", "W/\"v1\"")],
                Ranged::Whole,
            ),
            (
                &[
                    ("range", "bytes=0-1"),
                    ("if-range", "Tue, 01 Jan 2030 00:00:00 GMT"),
                ],
                Ranged::Part(0..2),
            ),
        ];
        for (request, expected) in cases {
            assert_eq!(
                requested(&headers(request), &stored, 10),
                *expected,
                "{request:?}"
            );
        }
    }
}
