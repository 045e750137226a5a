//! Whether a response may be stored, how long it stays fresh, how old it is, and whether a
//! stored response may answer a request (RFC 9111 sections 3, 4.2 and 4.3, RFC 5861), as
//! pure functions of the request, the response, the cache's policy and the time.
//!
//! This is a shared cache: `s-maxage` counts, `private` is never stored, and a response to
//! a request with `Authorization` is stored only when the origin allows it.

use std::time::{Duration, SystemTime};

use http::header::{self, HeaderMap, HeaderName};
use http::{Method, StatusCode};

use crate::directives::{Directives, Seconds};

/// `CDN-Cache-Control` (RFC 9213).
pub static CDN_CACHE_CONTROL: HeaderName = HeaderName::from_static("cdn-cache-control");
/// `Surrogate-Control` (the Edge Architecture specification).
pub static SURROGATE_CONTROL: HeaderName = HeaderName::from_static("surrogate-control");
/// The device name this cache answers to in `Surrogate-Control` directives
/// (`max-age=60;securecart`), announced in `Surrogate-Capability`.
pub const DEVICE: &str = "securecart";

/// How long the cache keeps responses, whatever their origin says (CloudFront's cache
/// policy TTLs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttl {
    /// The shortest freshness: an origin's shorter lifetime is raised to it.
    pub min: Duration,
    /// The freshness of a response that states none (no `max-age`, `s-maxage` or
    /// `Expires`). Zero leaves such responses to heuristic freshness, which needs a
    /// `Last-Modified`.
    pub default: Duration,
    /// The longest freshness: an origin's longer lifetime is cut to it.
    pub max: Duration,
    /// The freshness of an error (a 4xx or 5xx cacheable by default: 404, 405, 410, 414,
    /// 501) that states none, where `default` would apply: CloudFront's error caching
    /// minimum TTL, 10 seconds by default, so that a page missing for a moment (an image
    /// not yet uploaded) is not kept missing for the default TTL.
    pub error: Duration,
    /// Whether the origin's freshness directives count; when not, every storable response
    /// is fresh for `default`. `no-store` and `private` are respected either way.
    pub honour_origin: bool,
    /// Whether the client's own directives count (`Cache-Control: no-cache`, `max-age=0`,
    /// `no-store`, `Pragma: no-cache`): RFC 9111 lets a client ask past the cache;
    /// CloudFront ignores it, so that no client can send every request to the origin.
    pub honour_client: bool,
    /// Whether an answer that sets a cookie (`Set-Cookie`, `Set-Cookie2`) is stored, and
    /// its cookie then handed to every client it answers. RFC 9111 allows it; nginx's
    /// `proxy_cache` and Varnish's built-in rules do not store such answers, since a
    /// cookie is one client's (a session), and neither does this cache unless asked.
    pub store_set_cookie: bool,
}

/// CloudFront's default error caching minimum TTL.
pub const ERROR_TTL: Duration = Duration::from_secs(10);

impl Default for Ttl {
    /// What an RFC 9111 cache does: the origin decides, up to a year.
    fn default() -> Self {
        Self {
            min: Duration::ZERO,
            default: Duration::ZERO,
            max: Duration::from_secs(365 * 24 * 3600),
            error: ERROR_TTL,
            honour_origin: true,
            honour_client: true,
            store_set_cookie: false,
        }
    }
}

/// Why a response is not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStorable {
    /// Only responses to GET are stored.
    Method,
    /// An interim, partial or not-modified answer, or one with `must-understand` and a
    /// status this cache does not understand.
    Status,
    /// `no-store` in the request or the response.
    NoStore,
    /// `private`: for the user's own cache only.
    Private,
    /// The request carried `Authorization` and the response did not say it may be shared.
    Authorization,
    /// Neither fresh for any time nor able to be revalidated.
    NoFreshness,
    /// `Vary: *`: no later request can be said to match.
    VaryStar,
    /// It sets a cookie, and the policy does not store those ([`Ttl::store_set_cookie`]).
    SetCookie,
}

impl NotStorable {
    /// A short name, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            NotStorable::Method => "method",
            NotStorable::Status => "status",
            NotStorable::NoStore => "no-store",
            NotStorable::Private => "private",
            NotStorable::Authorization => "authorization",
            NotStorable::NoFreshness => "no-freshness",
            NotStorable::VaryStar => "vary-star",
            NotStorable::SetCookie => "set-cookie",
        }
    }
}

/// The response's cache directives: from `CDN-Cache-Control` if it has any, else from
/// `Surrogate-Control` (directives for this device first), else from `Cache-Control`.
/// The targeted fields replace `Cache-Control` and `Expires` whole (RFC 9213 section 2.2).
pub fn response_directives(headers: &HeaderMap) -> (Directives, bool) {
    let cdn = Directives::parse(headers.get_all(&CDN_CACHE_CONTROL));
    if cdn.present {
        return (cdn, true);
    }
    let surrogate = Directives::parse_targeted(headers.get_all(&SURROGATE_CONTROL), Some(DEVICE));
    if surrogate.present {
        return (surrogate, true);
    }
    (
        Directives::parse(headers.get_all(header::CACHE_CONTROL)),
        false,
    )
}

/// The request's cache directives; `Pragma: no-cache` counts as `no-cache` when there is
/// no `Cache-Control` (RFC 9111 section 5.4).
pub fn request_directives(headers: &HeaderMap) -> Directives {
    let mut directives = Directives::parse(headers.get_all(header::CACHE_CONTROL));
    if !headers.contains_key(header::CACHE_CONTROL)
        && crate::directives::list_members(headers, header::PRAGMA)
            .any(|token| token.eq_ignore_ascii_case("no-cache"))
    {
        directives.no_cache = true;
        directives.present = true;
    }
    directives
}

/// How long a stored response stays fresh and what may be done with it once stale, fixed
/// when it is stored (or freshened by a 304).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// The freshness lifetime.
    pub lifetime: Duration,
    /// Its age when it arrived (`corrected_initial_age`, RFC 9111 section 4.2.3).
    pub initial_age: Duration,
    /// When it arrived.
    pub response_time: SystemTime,
    /// `no-cache`: every use needs the origin's word.
    pub no_cache: bool,
    /// Never served stale, even disconnected (`must-revalidate`, `proxy-revalidate`,
    /// `s-maxage`, `no-cache`).
    pub never_stale: bool,
    /// How long past its lifetime it may be served while revalidated in the background.
    pub stale_while_revalidate: Duration,
    /// How long past its lifetime it may be served when the origin answers with an error.
    pub stale_if_error: Duration,
    /// How it may be revalidated: it has an `ETag` or a `Last-Modified`.
    pub has_validator: bool,
}

impl Freshness {
    /// Its age now.
    pub fn age(&self, now: SystemTime) -> Duration {
        let resident = now.duration_since(self.response_time).unwrap_or_default();
        self.initial_age.saturating_add(resident)
    }

    /// Whether it is fresh now.
    pub fn is_fresh(&self, now: SystemTime) -> bool {
        self.lifetime > self.age(now)
    }

    /// How long it has been stale (zero while fresh).
    pub fn staleness(&self, now: SystemTime) -> Duration {
        self.age(now).saturating_sub(self.lifetime)
    }
}

/// What the cache knows of an exchange with the origin.
#[derive(Debug, Clone, Copy)]
pub struct Exchange<'a> {
    /// The request's method.
    pub method: &'a Method,
    /// The request's headers.
    pub request: &'a HeaderMap,
    /// The response's status.
    pub status: StatusCode,
    /// The response's headers.
    pub response: &'a HeaderMap,
    /// When the request was sent.
    pub request_time: SystemTime,
    /// When the response arrived.
    pub response_time: SystemTime,
}

/// Whether a response may be stored (RFC 9111 section 3) and, if so, its freshness.
pub fn storable(exchange: &Exchange<'_>, ttl: &Ttl) -> Result<Freshness, NotStorable> {
    if exchange.method != Method::GET {
        return Err(NotStorable::Method);
    }
    let status = exchange.status;
    if status.is_informational()
        || status == StatusCode::PARTIAL_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Err(NotStorable::Status);
    }
    let (directives, targeted) = response_directives(exchange.response);
    let request = request_directives(exchange.request);
    if request.no_store {
        return Err(NotStorable::NoStore);
    }
    // `must-understand`: store only statuses whose caching rules this cache implements,
    // and then `no-store` is for caches that do not (RFC 9111 section 5.2.2.3).
    if directives.must_understand {
        if !understood(status) {
            return Err(NotStorable::Status);
        }
    } else if directives.no_store {
        return Err(NotStorable::NoStore);
    }
    if directives.private {
        return Err(NotStorable::Private);
    }
    if exchange.request.contains_key(header::AUTHORIZATION)
        && !(directives.public || directives.s_maxage.is_some() || directives.must_revalidate)
    {
        return Err(NotStorable::Authorization);
    }
    if crate::key::vary_is_star(exchange.response) {
        return Err(NotStorable::VaryStar);
    }
    if !ttl.store_set_cookie
        && (exchange.response.contains_key(header::SET_COOKIE)
            || exchange.response.contains_key("set-cookie2"))
    {
        return Err(NotStorable::SetCookie);
    }
    // RFC 9111 section 3: explicit freshness, or a status cacheable by default, or
    // `public`; without those there is nothing to store, validator or not.
    let explicit = directives.max_age.is_some()
        || directives.s_maxage.is_some()
        || (!targeted && exchange.response.contains_key(header::EXPIRES));
    if !(explicit || heuristically_cacheable(status) || directives.public) {
        return Err(NotStorable::NoFreshness);
    }
    let freshness = freshness(exchange, &directives, targeted, ttl);
    if freshness.lifetime.is_zero() && !freshness.has_validator {
        return Err(NotStorable::NoFreshness);
    }
    Ok(freshness)
}

/// A stored response's freshness, from its directives, dates and age (RFC 9111 sections
/// 4.2.1 to 4.2.3), within the policy's TTLs.
pub fn freshness(
    exchange: &Exchange<'_>,
    directives: &Directives,
    targeted: bool,
    ttl: &Ttl,
) -> Freshness {
    let headers = exchange.response;
    let date = single_date(headers, &header::DATE).and_then(Result::ok);
    let date_value = date.unwrap_or(exchange.response_time);
    let initial_age = initial_age(headers, exchange, date_value);
    let explicit = if !ttl.honour_origin {
        None
    } else if let Some(s_maxage) = directives.s_maxage {
        Some(Duration::from_secs(s_maxage.or_zero()))
    } else if let Some(max_age) = directives.max_age {
        Some(Duration::from_secs(max_age.or_zero()))
    } else if targeted {
        None
    } else {
        // Expires minus Date; an invalid or repeated Expires means already expired.
        single_date(headers, &header::EXPIRES).map(|expires| match expires {
            Ok(expires) => expires.duration_since(date_value).unwrap_or_default(),
            Err(()) => Duration::ZERO,
        })
    };
    let by_default = heuristically_cacheable(exchange.status) || directives.public;
    let lifetime = match explicit {
        Some(lifetime) => lifetime.clamp(ttl.min, ttl.max.max(ttl.min)),
        // The policy's default, like heuristic freshness, is for responses cacheable by
        // default: an error page without freshness information is not kept for it.
        None if !by_default => Duration::ZERO,
        None if !ttl.default.is_zero() || !ttl.honour_origin => {
            if exchange.status.is_client_error() || exchange.status.is_server_error() {
                ttl.error
            } else {
                ttl.default
            }
        }
        None => heuristic(headers, date_value).min(ttl.max),
    };
    let seconds = |value: Option<Seconds>| Duration::from_secs(value.map_or(0, Seconds::or_zero));
    let never_stale = directives.must_revalidate
        || directives.proxy_revalidate
        || directives.s_maxage.is_some()
        || directives.no_cache;
    Freshness {
        lifetime,
        initial_age,
        response_time: exchange.response_time,
        no_cache: directives.no_cache && ttl.honour_origin,
        never_stale,
        stale_while_revalidate: seconds(directives.stale_while_revalidate),
        stale_if_error: seconds(directives.stale_if_error),
        has_validator: headers.contains_key(header::ETAG)
            || headers.contains_key(header::LAST_MODIFIED),
    }
}

/// RFC 9111 section 4.2.3: the larger of the age the dates show and the age the origin
/// (and caches before it) declared plus the time the exchange took. An `Age` that is not
/// one plain number makes the response as old as can be, so it is never fresh.
fn initial_age(headers: &HeaderMap, exchange: &Exchange<'_>, date_value: SystemTime) -> Duration {
    let mut lines = headers.get_all(header::AGE).iter();
    let age_value = match (lines.next(), lines.next()) {
        (None, _) => Duration::ZERO,
        (Some(value), None) => match Seconds::parse_header(value.as_bytes()) {
            Some(seconds) => Duration::from_secs(seconds),
            None => return Duration::MAX,
        },
        (Some(_), Some(_)) => return Duration::MAX,
    };
    let apparent_age = exchange
        .response_time
        .duration_since(date_value)
        .unwrap_or_default();
    let response_delay = exchange
        .response_time
        .duration_since(exchange.request_time)
        .unwrap_or_default();
    apparent_age.max(age_value.saturating_add(response_delay))
}

/// The value of a date header given once: `Err` when it is not a date or is given more
/// than once, `None` when absent.
fn single_date(headers: &HeaderMap, name: &HeaderName) -> Option<Result<SystemTime, ()>> {
    let mut lines = headers.get_all(name).iter();
    let first = lines.next()?;
    if lines.next().is_some() {
        return Some(Err(()));
    }
    Some(
        first
            .to_str()
            .ok()
            .and_then(|text| httpdate::parse_http_date(text).ok())
            .ok_or(()),
    )
}

/// The longest heuristic freshness: a day, as Apache Traffic Server's default
/// (`heuristic_max_lifetime`); a file unchanged for years is not kept for months unasked.
pub const HEURISTIC_MAX: Duration = Duration::from_secs(24 * 60 * 60);

/// Heuristic freshness (RFC 9111 section 4.2.2): a tenth of the time since
/// `Last-Modified`, at most [`HEURISTIC_MAX`], for statuses cacheable by default or
/// responses marked `public`.
fn heuristic(headers: &HeaderMap, date_value: SystemTime) -> Duration {
    match single_date(headers, &header::LAST_MODIFIED) {
        Some(Ok(modified)) => {
            (date_value.duration_since(modified).unwrap_or_default() / 10).min(HEURISTIC_MAX)
        }
        _ => Duration::ZERO,
    }
}

/// The statuses RFC 9110 section 15.1 makes cacheable by default.
pub fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 206 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// The statuses whose caching rules this cache implements, for `must-understand`: those
/// RFC 9110 defines, except the partial content it does not store.
fn understood(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200..=205 | 300..=305 | 307 | 308 | 400..=418 | 421..=426 | 428 | 429 | 431 | 451 | 500..=505 | 511
    )
}

impl Seconds {
    /// An `Age` value: digits only.
    fn parse_header(value: &[u8]) -> Option<u64> {
        match Seconds::parse_digits(value) {
            Seconds::Valid(seconds) => Some(seconds),
            Seconds::Invalid => None,
        }
    }
}

/// What a stored response may do for a request, now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// Fresh enough for this request: answer with it.
    Fresh,
    /// Stale, but the request accepts that (`max-stale`): answer with it.
    StaleAllowed,
    /// Stale within `stale-while-revalidate`: answer with it and revalidate in the
    /// background.
    StaleWhileRevalidate,
    /// Ask the origin first (conditionally, when it has a validator).
    Revalidate,
}

/// Whether a stored response may answer a request with these directives now (RFC 9111
/// sections 4.2 and 5.2.1, RFC 5861).
pub fn reuse(freshness: &Freshness, request: &Directives, now: SystemTime) -> Reuse {
    if freshness.no_cache || request.no_cache {
        return Reuse::Revalidate;
    }
    let age = freshness.age(now);
    let too_old_for_request = request
        .max_age
        .is_some_and(|max_age| age > Duration::from_secs(max_age.or_zero()));
    let min_fresh = request.min_fresh.map_or(Duration::ZERO, |min_fresh| {
        Duration::from_secs(min_fresh.or_zero())
    });
    if freshness.lifetime > age.saturating_add(min_fresh) && !too_old_for_request {
        return Reuse::Fresh;
    }
    if freshness.never_stale || too_old_for_request {
        return Reuse::Revalidate;
    }
    let staleness = freshness.staleness(now);
    match request.max_stale {
        Some(None) => return Reuse::StaleAllowed,
        Some(Some(Seconds::Valid(max_stale))) if staleness <= Duration::from_secs(max_stale) => {
            return Reuse::StaleAllowed;
        }
        _ => {}
    }
    if staleness < freshness.stale_while_revalidate && min_fresh.is_zero() {
        return Reuse::StaleWhileRevalidate;
    }
    Reuse::Revalidate
}

/// Whether a stale response may answer when the origin could not be reached (`error`
/// false: RFC 9111 section 4.2.4 allows it when disconnected) or answered with a server
/// error (`error` true: only within `stale-if-error`, from the response or the request).
pub fn serve_stale_on_error(
    freshness: &Freshness,
    request: &Directives,
    answered_with_error: bool,
    now: SystemTime,
) -> bool {
    if freshness.never_stale || request.no_cache {
        return false;
    }
    if !answered_with_error {
        return true;
    }
    let window = request
        .stale_if_error
        .map_or(freshness.stale_if_error, |seconds| {
            freshness
                .stale_if_error
                .max(Duration::from_secs(seconds.or_zero()))
        });
    freshness.staleness(now) <= window && !window.is_zero()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::headers;

    const T0: u64 = 1_700_000_000;

    /// Response headers with owned values (dates made at run time).
    type Headers = Vec<(&'static str, String)>;
    /// Header pairs.
    type Pairs<'a> = &'a [(&'a str, &'a str)];
    /// Header pairs in a vector.
    type OwnedPairs<'a> = Vec<(&'a str, &'a str)>;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn date(offset: i64) -> String {
        let when = if offset >= 0 {
            at(T0) + Duration::from_secs(offset.unsigned_abs())
        } else {
            at(T0) - Duration::from_secs(offset.unsigned_abs())
        };
        httpdate::fmt_http_date(when)
    }

    /// Stores a 200 received at T0 for a plain GET and returns its freshness.
    fn stored(response: &[(&str, &str)]) -> Result<Freshness, NotStorable> {
        stored_with(&[], 200, response, &Ttl::default())
    }

    fn stored_with(
        request: &[(&str, &str)],
        status: u16,
        response: &[(&str, &str)],
        ttl: &Ttl,
    ) -> Result<Freshness, NotStorable> {
        let request = headers(request);
        let response = headers(response);
        storable(
            &Exchange {
                method: &Method::GET,
                request: &request,
                status: StatusCode::from_u16(status).expect("a status"),
                response: &response,
                request_time: at(T0),
                response_time: at(T0),
            },
            ttl,
        )
    }

    #[test]
    fn freshness_lifetimes_follow_rfc_9111() {
        let now = date(0);
        let cases: Vec<(Headers, Option<u64>)> = vec![
            (vec![("cache-control", "max-age=3600".into())], Some(3600)),
            (
                vec![
                    ("cache-control", "max-age=0".into()),
                    ("etag", "\"a\"".into()),
                ],
                Some(0),
            ),
            (
                vec![("cache-control", "max-age=60, s-maxage=10".into())],
                Some(10),
            ),
            (
                vec![("cache-control", "s-maxage=3600, max-age=10".into())],
                Some(3600),
            ),
            (
                vec![("date", now.clone()), ("expires", date(600))],
                Some(600),
            ),
            // Expires counts from Date, not from the arrival.
            (
                vec![("date", date(-100)), ("expires", date(500))],
                Some(600),
            ),
            (
                vec![("expires", "0".into()), ("etag", "\"a\"".into())],
                Some(0),
            ),
            // max-age wins over Expires.
            (
                vec![
                    ("cache-control", "max-age=0".into()),
                    ("expires", date(600)),
                    ("etag", "\"a\"".into()),
                ],
                Some(0),
            ),
            // No freshness information and no validator: not stored.
            (vec![("content-type", "text/plain".into())], None),
            // Heuristic: a tenth of the time since Last-Modified.
            (
                vec![("date", now.clone()), ("last-modified", date(-10_000))],
                Some(1000),
            ),
            // At most a day, however old the file.
            (
                vec![("date", now.clone()), ("last-modified", date(-100_000_000))],
                Some(86_400),
            ),
            (
                vec![
                    ("surrogate-control", "max-age=30".into()),
                    ("cache-control", "max-age=3600".into()),
                ],
                Some(30),
            ),
            (
                vec![
                    ("cdn-cache-control", "max-age=40".into()),
                    ("surrogate-control", "max-age=30".into()),
                ],
                Some(40),
            ),
            // A targeted field replaces Expires as well.
            (
                vec![
                    ("surrogate-control", "max-age=0".into()),
                    ("expires", date(600)),
                    ("etag", "\"a\"".into()),
                ],
                Some(0),
            ),
        ];
        for (response, expected) in cases {
            let pairs: Vec<(&str, &str)> = response.iter().map(|(n, v)| (*n, v.as_str())).collect();
            let lifetime = stored(&pairs)
                .ok()
                .map(|freshness| freshness.lifetime.as_secs());
            assert_eq!(lifetime, expected, "{pairs:?}");
        }
    }

    #[test]
    fn what_is_never_stored() {
        let fresh = [("cache-control", "max-age=3600")];
        let cases: Vec<(Pairs<'_>, u16, OwnedPairs<'_>, NotStorable)> = vec![
            (
                &[],
                200,
                vec![("cache-control", "max-age=3600, no-store")],
                NotStorable::NoStore,
            ),
            (
                &[],
                200,
                vec![("cache-control", "nO-StOrE")],
                NotStorable::NoStore,
            ),
            (
                &[("cache-control", "no-store")],
                200,
                fresh.to_vec(),
                NotStorable::NoStore,
            ),
            (
                &[],
                200,
                vec![("cache-control", "max-age=3600, private")],
                NotStorable::Private,
            ),
            (
                &[("authorization", "Basic eDp5")],
                200,
                fresh.to_vec(),
                NotStorable::Authorization,
            ),
            (&[], 206, fresh.to_vec(), NotStorable::Status),
            (
                &[],
                599,
                vec![("cache-control", "max-age=3600, must-understand")],
                NotStorable::Status,
            ),
            (
                &[],
                200,
                vec![("cache-control", "max-age=3600"), ("vary", "Accept, *")],
                NotStorable::VaryStar,
            ),
            // Not cacheable by default: no heuristic freshness from Last-Modified.
            (
                &[],
                403,
                vec![("last-modified", "Mon, 01 Jan 2001 00:00:00 GMT")],
                NotStorable::NoFreshness,
            ),
            // A cookie is one client's: not stored unless the policy says so.
            (
                &[],
                200,
                vec![
                    ("cache-control", "max-age=3600"),
                    ("set-cookie", "session=s1"),
                ],
                NotStorable::SetCookie,
            ),
            (
                &[],
                200,
                vec![
                    ("cache-control", "public, max-age=3600"),
                    ("set-cookie2", "a=b"),
                ],
                NotStorable::SetCookie,
            ),
        ];
        for (request, status, response, reason) in cases {
            assert_eq!(
                stored_with(request, status, &response, &Ttl::default()),
                Err(reason),
                "{request:?} {status} {response:?}"
            );
        }
        // A policy that stores answers setting cookies stores them.
        let sharing = Ttl {
            store_set_cookie: true,
            ..Ttl::default()
        };
        assert!(
            stored_with(
                &[],
                200,
                &[("cache-control", "max-age=3600"), ("set-cookie", "a=b")],
                &sharing
            )
            .is_ok()
        );
        // must-understand with a status this cache knows overrides no-store.
        assert!(stored(&[("cache-control", "max-age=3600, no-store, must-understand")]).is_ok());
        // Authorization with public, s-maxage or must-revalidate may be shared.
        for directives in [
            "max-age=60, public",
            "s-maxage=60",
            "max-age=60, must-revalidate",
        ] {
            assert!(
                stored_with(
                    &[("authorization", "Basic eDp5")],
                    200,
                    &[("cache-control", directives)],
                    &Ttl::default()
                )
                .is_ok(),
                "{directives}"
            );
        }
        // Any status with explicit freshness.
        assert!(stored_with(&[], 503, &fresh, &Ttl::default()).is_ok());
    }

    #[test]
    fn age_counts_the_dates_the_declared_age_and_the_time_stored() {
        let age = |response: &[(&str, &str)], now| stored(response).expect("stored").age(at(now));
        let fresh = ("cache-control", "max-age=3600");
        assert_eq!(age(&[fresh], T0 + 5), Duration::from_secs(5));
        assert_eq!(
            age(&[fresh, ("age", "100")], T0 + 5),
            Duration::from_secs(105)
        );
        // A Date in the past makes it older.
        assert_eq!(
            age(&[fresh, ("date", &date(-30))], T0),
            Duration::from_secs(30)
        );
        // Age beyond the lifetime: stale at once.
        assert!(
            !stored(&[fresh, ("age", "7200")])
                .expect("stored")
                .is_fresh(at(T0))
        );
        for bad in ["abc", "-1", "1.5", "old, 0", "0, 0", "0;a=b"] {
            assert!(
                !stored(&[fresh, ("age", bad)])
                    .expect("stored")
                    .is_fresh(at(T0)),
                "{bad}"
            );
        }
        assert!(
            !stored(&[fresh, ("age", "0"), ("age", "0")])
                .expect("stored")
                .is_fresh(at(T0))
        );
    }

    #[test]
    fn policy_ttls_bound_what_the_origin_says() {
        let ttl = Ttl {
            min: Duration::from_secs(60),
            default: Duration::from_secs(300),
            max: Duration::from_secs(3600),
            error: Duration::from_secs(10),
            honour_origin: true,
            honour_client: true,
            store_set_cookie: false,
        };
        let lifetime = |response: &[(&str, &str)], ttl: &Ttl| {
            stored_with(&[], 200, response, ttl)
                .ok()
                .map(|freshness| freshness.lifetime.as_secs())
        };
        assert_eq!(lifetime(&[("cache-control", "max-age=5")], &ttl), Some(60));
        assert_eq!(
            lifetime(&[("cache-control", "max-age=86400")], &ttl),
            Some(3600)
        );
        assert_eq!(lifetime(&[("content-type", "text/css")], &ttl), Some(300));
        assert_eq!(
            lifetime(&[("cache-control", "private, max-age=60")], &ttl),
            None
        );
        let override_origin = Ttl {
            honour_origin: false,
            ..ttl
        };
        assert_eq!(
            lifetime(
                &[("cache-control", "max-age=5, no-cache")],
                &override_origin
            ),
            Some(300)
        );
    }

    /// A 404 (or another error cacheable by default) that states no freshness is kept for
    /// the error TTL where the policy's default would apply, as CloudFront's error caching
    /// minimum TTL; one that states its own keeps it; an RFC 9111 policy (no default) keeps
    /// only what the origin or the heuristic says.
    #[test]
    fn errors_without_freshness_are_kept_for_the_error_ttl() {
        let cdn = Ttl {
            default: Duration::from_secs(86_400),
            error: Duration::from_secs(10),
            ..Ttl::default()
        };
        let lifetime = |status: u16, response: &[(&str, &str)], ttl: &Ttl| {
            stored_with(&[], status, response, ttl)
                .ok()
                .map(|freshness| freshness.lifetime.as_secs())
        };
        let text = [("content-type", "text/html")];
        /// (status, response headers, policy, lifetime)
        type Case<'a> = (u16, &'a [(&'a str, &'a str)], &'a Ttl, Option<u64>);
        let cases: [Case; 9] = [
            (200, &text, &cdn, Some(86_400)),
            (404, &text, &cdn, Some(10)),
            (410, &text, &cdn, Some(10)),
            (501, &text, &cdn, Some(10)),
            (404, &[("cache-control", "max-age=600")], &cdn, Some(600)),
            // Not cacheable by default: never stored without freshness of its own.
            (503, &text, &cdn, None),
            (
                404,
                &text,
                &Ttl {
                    honour_origin: false,
                    ..cdn
                },
                Some(10),
            ),
            (404, &text, &Ttl::default(), None),
            (
                404,
                &text,
                &Ttl {
                    error: Duration::ZERO,
                    ..cdn
                },
                None,
            ),
        ];
        for (status, response, ttl, expected) in cases {
            assert_eq!(
                lifetime(status, response, ttl),
                expected,
                "{status} {response:?} {ttl:?}"
            );
        }
    }

    #[test]
    fn reuse_decisions() {
        let freshness = |directives: &str| {
            stored(&[("cache-control", directives), ("etag", "\"v1\"")]).expect("stored")
        };
        let request =
            |directives: &str| request_directives(&headers(&[("cache-control", directives)]));
        let none = Directives::default();
        let cases: Vec<(Freshness, Directives, u64, Reuse)> = vec![
            (freshness("max-age=10"), none.clone(), 5, Reuse::Fresh),
            (freshness("max-age=10"), none.clone(), 10, Reuse::Revalidate),
            (
                freshness("max-age=10, no-cache"),
                none.clone(),
                1,
                Reuse::Revalidate,
            ),
            (
                freshness("max-age=10"),
                request("no-cache"),
                1,
                Reuse::Revalidate,
            ),
            (
                freshness("max-age=10"),
                request("max-age=2"),
                5,
                Reuse::Revalidate,
            ),
            (
                freshness("max-age=10"),
                request("min-fresh=8"),
                5,
                Reuse::Revalidate,
            ),
            (
                freshness("max-age=10"),
                request("max-stale=5"),
                12,
                Reuse::StaleAllowed,
            ),
            (
                freshness("max-age=10"),
                request("max-stale"),
                1000,
                Reuse::StaleAllowed,
            ),
            (
                freshness("max-age=10, must-revalidate"),
                request("max-stale"),
                12,
                Reuse::Revalidate,
            ),
            (
                freshness("max-age=10, stale-while-revalidate=30"),
                none.clone(),
                20,
                Reuse::StaleWhileRevalidate,
            ),
            (
                freshness("max-age=10, stale-while-revalidate=30"),
                none.clone(),
                41,
                Reuse::Revalidate,
            ),
            (
                freshness("s-maxage=10, stale-while-revalidate=30"),
                none.clone(),
                20,
                Reuse::Revalidate,
            ),
        ];
        for (freshness, request, now, expected) in cases {
            assert_eq!(
                reuse(&freshness, &request, at(T0 + now)),
                expected,
                "{freshness:?} {request:?} at +{now}"
            );
        }
        let pragma = request_directives(&headers(&[("pragma", "no-cache")]));
        assert_eq!(
            reuse(&freshness("max-age=10"), &pragma, at(T0)),
            Reuse::Revalidate
        );
    }

    #[test]
    fn stale_on_error_only_where_allowed() {
        let freshness =
            |directives: &str| stored(&[("cache-control", directives)]).expect("stored");
        let none = Directives::default();
        let later = at(T0 + 100);
        // Disconnected: allowed unless the origin forbade serving stale.
        assert!(serve_stale_on_error(
            &freshness("max-age=2"),
            &none,
            false,
            later
        ));
        for forbidding in [
            "max-age=2, must-revalidate",
            "max-age=2, proxy-revalidate",
            "max-age=2, no-cache",
            "max-age=2, s-maxage=2",
        ] {
            assert!(
                !serve_stale_on_error(&freshness(forbidding), &none, false, later),
                "{forbidding}"
            );
        }
        // A 5xx answer: only within stale-if-error.
        assert!(!serve_stale_on_error(
            &freshness("max-age=2"),
            &none,
            true,
            later
        ));
        assert!(serve_stale_on_error(
            &freshness("max-age=2, stale-if-error=200"),
            &none,
            true,
            later
        ));
        assert!(!serve_stale_on_error(
            &freshness("max-age=2, stale-if-error=50"),
            &none,
            true,
            later
        ));
    }
}
