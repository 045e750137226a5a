//! Compression at the edge (CloudFront's "compress objects automatically"): a stored
//! response whose type is text-like is answered compressed with the best encoding the
//! client accepts (brotli, zstd or gzip), and `Vary: Accept-Encoding` says so to caches
//! after this one. Each encoding of an object is made once and stored beside it.

use std::io::Write;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};

/// The smallest body worth compressing (CloudFront's bound).
pub const MIN_BYTES: usize = 1000;
/// The largest body compressed (CloudFront's bound).
pub const MAX_BYTES: usize = 10_000_000;

/// A content coding the edge makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// Brotli (RFC 7932), quality 5.
    Brotli,
    /// Zstandard (RFC 8878), level 3.
    Zstd,
    /// gzip (RFC 1952), level 6.
    Gzip,
}

impl Encoding {
    /// Its `Content-Encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Brotli => "br",
            Encoding::Zstd => "zstd",
            Encoding::Gzip => "gzip",
        }
    }

    /// Compresses a whole body.
    pub fn compress(self, body: &[u8]) -> std::io::Result<Bytes> {
        let mut out = Vec::with_capacity(body.len() / 3 + 64);
        match self {
            Encoding::Brotli => {
                let mut writer = brotli::CompressorWriter::new(&mut out, 64 * 1024, 5, 22);
                writer.write_all(body)?;
                writer.flush()?;
            }
            Encoding::Zstd => {
                out = zstd::bulk::compress(body, 3)?;
            }
            Encoding::Gzip => {
                let mut writer =
                    flate2::write::GzEncoder::new(&mut out, flate2::Compression::new(6));
                writer.write_all(body)?;
                writer.finish()?;
            }
        }
        Ok(Bytes::from(out))
    }
}

/// The encoding to answer with, from `Accept-Encoding` (RFC 9110 section 12.5.3): the
/// highest quality among those the edge makes, brotli first on a tie, then zstd, then
/// gzip; `*` stands for any of them. `None`: the identity.
pub fn negotiate(request: &HeaderMap) -> Option<Encoding> {
    let mut best: Option<(u16, Encoding)> = None;
    let mut wildcard: Option<u16> = None;
    let mut refused: Vec<Encoding> = Vec::new();
    for (coding, quality) in offered(request) {
        let encoding = match coding {
            Some(encoding) => encoding,
            None => {
                wildcard = Some(quality);
                continue;
            }
        };
        if quality == 0 {
            refused.push(encoding);
            continue;
        }
        if best.is_none_or(|(best_quality, best_encoding)| {
            quality > best_quality
                || (quality == best_quality && rank(encoding) < rank(best_encoding))
        }) {
            best = Some((quality, encoding));
        }
    }
    if let Some(quality) = wildcard.filter(|quality| *quality > 0)
        && best.is_none_or(|(best_quality, _)| quality > best_quality)
    {
        return [Encoding::Brotli, Encoding::Zstd, Encoding::Gzip]
            .into_iter()
            .find(|encoding| !refused.contains(encoding));
    }
    best.map(|(_, encoding)| encoding)
}

/// `Accept-Encoding` as the cache keys and forwards it (CloudFront's normalisation, with
/// zstd): the codings the edge knows that the client accepts, in one order (`br, zstd,
/// gzip` or part of it), or none. Browsers spell the same choice many ways (`gzip, deflate,
/// br`, `gzip, deflate, br, zstd`, with or without spaces and qualities); an origin that
/// compresses and says `Vary: Accept-Encoding` would otherwise have a stored copy, and a
/// request to it, for each spelling.
pub fn normalized_accept_encoding(request: &HeaderMap) -> Option<HeaderValue> {
    const SPELLINGS: [&str; 8] = [
        "",
        "br",
        "zstd",
        "br, zstd",
        "gzip",
        "br, gzip",
        "zstd, gzip",
        "br, zstd, gzip",
    ];
    let accepted = accepted(request);
    let bits = [Encoding::Brotli, Encoding::Zstd, Encoding::Gzip]
        .into_iter()
        .enumerate()
        .filter(|(_, encoding)| accepted.contains(encoding))
        .fold(0, |bits, (index, _)| bits | 1 << index);
    (bits != 0).then(|| HeaderValue::from_static(SPELLINGS[bits]))
}

/// The codings the edge knows that `Accept-Encoding` accepts (a quality above zero, by
/// name or by `*`).
fn accepted(request: &HeaderMap) -> Vec<Encoding> {
    let mut named: Vec<(Encoding, bool)> = Vec::new();
    let mut wildcard = false;
    for (coding, quality) in offered(request) {
        match coding {
            Some(encoding) => named.push((encoding, quality > 0)),
            None => wildcard = quality > 0,
        }
    }
    [Encoding::Brotli, Encoding::Zstd, Encoding::Gzip]
        .into_iter()
        .filter(
            |encoding| match named.iter().find(|(known, _)| known == encoding) {
                Some(&(_, accepted)) => accepted,
                None => wildcard,
            },
        )
        .collect()
}

/// The codings `Accept-Encoding` names that the edge makes (`None` for `*`), each with its
/// quality in thousandths; members of other codings, or with a quality that is not one,
/// are left out.
fn offered(request: &HeaderMap) -> impl Iterator<Item = (Option<Encoding>, u16)> + '_ {
    crate::directives::list_members(request, header::ACCEPT_ENCODING).filter_map(|member| {
        let mut parts = member.split(';');
        let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let quality = parts
            .find_map(|parameter| {
                let (name, value) = parameter.split_once('=')?;
                (name.trim().eq_ignore_ascii_case("q")).then(|| quality(value.trim()))
            })
            .unwrap_or(Some(1000))?;
        let encoding = match coding.as_str() {
            "br" => Some(Encoding::Brotli),
            "zstd" => Some(Encoding::Zstd),
            "gzip" | "x-gzip" => Some(Encoding::Gzip),
            "*" => None,
            _ => return None,
        };
        Some((encoding, quality))
    })
}

fn rank(encoding: Encoding) -> u8 {
    match encoding {
        Encoding::Brotli => 0,
        Encoding::Zstd => 1,
        Encoding::Gzip => 2,
    }
}

/// A qvalue as thousandths: `0` to `1` with up to three decimals.
fn quality(text: &str) -> Option<u16> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let thousandths = format!("{fraction:0<3}").parse::<u16>().ok()?;
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// Whether a stored response is one the edge compresses: a 200 of a text-like type, not
/// already encoded, not `no-transform`, of a size worth it.
pub fn compressible(headers: &HeaderMap, length: usize) -> bool {
    if !(MIN_BYTES..=MAX_BYTES).contains(&length) || headers.contains_key(header::CONTENT_ENCODING)
    {
        return false;
    }
    let no_transform = crate::directives::list_members(headers, header::CACHE_CONTROL)
        .any(|directive| directive.eq_ignore_ascii_case("no-transform"));
    if no_transform {
        return false;
    }
    let Some(media_type) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(|value| value.trim().to_ascii_lowercase())
    else {
        return false;
    };
    media_type.starts_with("text/")
        || matches!(
            media_type.as_str(),
            "application/javascript"
                | "application/x-javascript"
                | "application/json"
                | "application/manifest+json"
                | "application/ld+json"
                | "application/xml"
                | "application/xhtml+xml"
                | "application/rss+xml"
                | "application/atom+xml"
                | "application/wasm"
                | "image/svg+xml"
                | "image/x-icon"
                | "font/ttf"
                | "font/otf"
        )
}

/// Adds `Accept-Encoding` to a response's `Vary`, unless it is there.
pub fn vary_on_accept_encoding(headers: &mut HeaderMap) {
    let listed = crate::directives::list_members(headers, header::VARY)
        .any(|name| name == "*" || name.eq_ignore_ascii_case("accept-encoding"));
    if !listed {
        headers.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

/// The `ETag` of a compressed answer: weak, as the bytes differ from the identity's (the
/// representation's validator still matches by weak comparison).
pub fn weaken_etag(headers: &mut HeaderMap) {
    if let Some(etag) = headers.get(header::ETAG)
        && !etag.as_bytes().starts_with(b"W/")
    {
        let mut weak = b"W/".to_vec();
        weak.extend_from_slice(etag.as_bytes());
        if let Ok(weak) = HeaderValue::from_bytes(&weak) {
            headers.insert(header::ETAG, weak);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn accept(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn accept_encoding_is_normalised_to_the_codings_the_edge_knows() {
        let cases = [
            ("gzip, deflate, br", Some("br, gzip")),
            ("gzip,deflate,br,zstd", Some("br, zstd, gzip")),
            ("br;q=1.0, gzip;q=0.8, *;q=0.1", Some("br, zstd, gzip")),
            ("GZIP", Some("gzip")),
            ("x-gzip", Some("gzip")),
            ("br;q=0, gzip", Some("gzip")),
            ("*", Some("br, zstd, gzip")),
            ("*, zstd;q=0", Some("br, gzip")),
            ("deflate", None),
            ("identity", None),
            ("gzip;q=0", None),
            ("gzip;q=2", None),
            ("", None),
        ];
        for (value, expected) in cases {
            assert_eq!(
                normalized_accept_encoding(&accept(value))
                    .as_ref()
                    .map(|value| value.to_str().expect("ascii")),
                expected,
                "{value}"
            );
        }
        assert_eq!(normalized_accept_encoding(&HeaderMap::new()), None);
    }

    #[test]
    fn the_best_accepted_encoding_wins() {
        let cases = [
            ("gzip, deflate, br, zstd", Some(Encoding::Brotli)),
            ("gzip, zstd", Some(Encoding::Zstd)),
            ("gzip", Some(Encoding::Gzip)),
            ("GZIP", Some(Encoding::Gzip)),
            ("br;q=0.5, gzip;q=0.8", Some(Encoding::Gzip)),
            ("br;q=0, gzip", Some(Encoding::Gzip)),
            ("deflate", None),
            ("identity", None),
            ("", None),
            ("*", Some(Encoding::Brotli)),
            ("br;q=0, *", Some(Encoding::Zstd)),
            ("gzip;q=0.2, *;q=0.5", Some(Encoding::Brotli)),
            ("gzip;q=2", None),
            ("gzip;q=0.1234", None),
        ];
        for (header, expected) in cases {
            assert_eq!(negotiate(&accept(header)), expected, "{header}");
        }
        assert_eq!(negotiate(&HeaderMap::new()), None);
    }

    #[test]
    fn every_encoding_round_trips() {
        let body = "<p>The same paragraph, again and again.</p>\n".repeat(200);
        for encoding in [Encoding::Brotli, Encoding::Zstd, Encoding::Gzip] {
            let compressed = encoding.compress(body.as_bytes()).expect("compresses");
            assert!(compressed.len() < body.len() / 10, "{encoding:?}");
            let mut restored = Vec::new();
            match encoding {
                Encoding::Brotli => {
                    brotli::Decompressor::new(&compressed[..], 4096)
                        .read_to_end(&mut restored)
                        .expect("brotli");
                }
                Encoding::Zstd => {
                    restored = zstd::bulk::decompress(&compressed, body.len()).expect("zstd");
                }
                Encoding::Gzip => {
                    flate2::read::GzDecoder::new(&compressed[..])
                        .read_to_end(&mut restored)
                        .expect("gzip");
                }
            }
            assert_eq!(restored, body.as_bytes(), "{encoding:?}");
        }
    }

    #[test]
    fn only_text_like_bodies_of_a_useful_size() {
        let typed = |content_type: &'static str, extra: Option<(&'static str, &'static str)>| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            if let Some((name, value)) = extra {
                headers.insert(
                    http::HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                );
            }
            headers
        };
        assert!(compressible(&typed("text/css", None), 5000));
        assert!(compressible(
            &typed("application/json; charset=utf-8", None),
            5000
        ));
        assert!(compressible(&typed("image/svg+xml", None), 5000));
        assert!(!compressible(&typed("image/png", None), 5000));
        assert!(!compressible(&typed("text/css", None), 500));
        assert!(!compressible(
            &typed("text/css", Some(("content-encoding", "gzip"))),
            5000
        ));
        assert!(!compressible(
            &typed(
                "text/css",
                Some(("cache-control", "max-age=60, no-transform"))
            ),
            5000
        ));
        let mut headers = typed("text/css", Some(("vary", "Origin")));
        vary_on_accept_encoding(&mut headers);
        vary_on_accept_encoding(&mut headers);
        assert_eq!(headers.get_all(header::VARY).iter().count(), 2);
        headers.insert(header::ETAG, HeaderValue::from_static("\"v1\""));
        weaken_etag(&mut headers);
        weaken_etag(&mut headers);
        assert_eq!(headers.get(header::ETAG).expect("etag"), "W/\"v1\"");
    }
}
