//! Rate-based statements, as AWS WAF's: requests are counted per aggregation key (the client
//! address, an IPv6 client by its /64; an address forwarded in a header; a header's, a
//! cookie's or a query argument's value; the query string, the path, the method; or a
//! combination) over a trailing window of 60, 120, 300 or 600 seconds; the statement
//! matches the requests of a key whose count is past the limit, until it falls back under
//! it. A scope-down statement limits what is counted.
//!
//! The trailing window is estimated from two fixed windows, the one under way and the one
//! before, weighted by how much of the earlier one the trailing window still covers: two
//! counters per key, and within a few percent of an exact count when traffic is steady.
//! Keys are hashed (SipHash with a random key, so clients cannot aim at collisions) and at
//! most [`MAX_KEYS`] are tracked. A new key in a full table takes the place of the least
//! busy of [`EVICTION_SAMPLE`] tracked keys drawn at random (Redis's approximate LFU): a
//! flood of made-up keys (addresses of an IPv6 block, header values) each counted once
//! mostly replaces its own kind, while a key that sends much, the one a rule is after,
//! keeps its place and its count. A reload that changes the rules starts the counts
//! afresh.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use http::HeaderName;
use parking_lot::Mutex;

use crate::inspect::{Field, Inspection};

/// The windows AWS WAF offers, in seconds.
pub const WINDOWS: [u64; 4] = [60, 120, 300, 600];

/// The most keys one statement tracks.
pub const MAX_KEYS: usize = 100_000;

/// How many tracked keys a new key in a full table is weighed against.
pub const EVICTION_SAMPLE: usize = 16;

/// What requests are counted together by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AggregateKey {
    /// The client's address (the connection's).
    ClientIp,
    /// The first address in a header (`X-Forwarded-For`, as a proxy in front sets it; with
    /// or without a port); a request without the header is not counted, and one whose
    /// header holds no valid first address is not counted either, or matches where the
    /// statement's fallback says so ([`RateLimit::forwarded_fallback_matches`]).
    ForwardedIp(HeaderName),
    /// A header's value; a request without it is not counted.
    Header(HeaderName),
    /// A cookie's value, by name (a session, say); a request without it is not counted.
    Cookie(String),
    /// A query argument's first value (decoded), by name; a request without it is not
    /// counted.
    QueryArgument(String),
    /// The query string, as sent; a request without one is not counted.
    QueryString,
    /// The path, as sent.
    UriPath,
    /// The method.
    Method,
}

/// What a request's count says ([`RateLimit::hit`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hit {
    /// Counted under `key` (as the log shows it); whether the key is past the limit.
    Counted {
        /// Past the limit.
        over: bool,
        /// The key, as the log shows it.
        key: String,
    },
    /// Not counted, and matched: `header` holds no valid first address where a key reads
    /// one, and the statement's fallback is to match.
    Fallback {
        /// The forwarded header.
        header: HeaderName,
    },
}

/// A rate-based statement's limit, window, keys and counts.
#[derive(Debug)]
pub struct RateLimit {
    /// Requests a key may send within the window; past it, the statement matches.
    pub limit: u64,
    /// The trailing window.
    pub window: Duration,
    /// What requests are counted together by (together: a combination).
    pub keys: Vec<AggregateKey>,
    /// Whether a request whose forwarded header holds no valid first address, where a
    /// [`AggregateKey::ForwardedIp`] key reads one, matches, uncounted (AWS WAF's fallback
    /// behaviour `MATCH`: a client cannot step out of the limit by writing something else
    /// there) or is left alone (`NO_MATCH`, the default).
    pub forwarded_fallback_matches: bool,
    started: Instant,
    hasher: RandomState,
    counts: Mutex<Counts>,
}

#[derive(Debug)]
struct Counts {
    /// Each tracked key's place in `counters`.
    places: HashMap<u64, usize>,
    /// The counters with their keys, in a vector so that a key is drawn at random in
    /// constant time.
    counters: Vec<(u64, Counter)>,
    /// An xorshift state for the draws (seeded from the statement's hasher).
    draw: u64,
}

#[derive(Debug, Clone, Copy)]
struct Counter {
    /// The fixed window `current` counts in.
    window: u64,
    current: u64,
    previous: u64,
}

impl Counter {
    /// The count over the trailing window that ends `into` (0 to 1) through the fixed
    /// window `index`: the previous window's weighted by how much of it the trailing one
    /// still covers.
    fn estimate(&self, index: u64, into: f64) -> f64 {
        match index.checked_sub(self.window) {
            Some(0) => self.previous as f64 * (1.0 - into) + self.current as f64,
            Some(1) => self.current as f64 * (1.0 - into),
            _ => 0.0,
        }
    }
}

impl RateLimit {
    /// A statement's counts; `window` is one of [`WINDOWS`] (in seconds), `keys` is not
    /// empty (the caller checks both).
    pub fn new(limit: u64, window: Duration, keys: Vec<AggregateKey>) -> Self {
        let hasher = RandomState::new();
        Self {
            limit,
            window: window.max(Duration::from_secs(1)),
            keys,
            forwarded_fallback_matches: false,
            started: Instant::now(),
            counts: Mutex::new(Counts {
                places: HashMap::new(),
                counters: Vec::new(),
                // Never 0, which xorshift keeps.
                draw: hasher.hash_one(0x5eed_u64) | 1,
            }),
            hasher,
        }
    }

    /// With [`RateLimit::forwarded_fallback_matches`] set as `matches` says.
    pub fn with_forwarded_fallback(mut self, matches: bool) -> Self {
        self.forwarded_fallback_matches = matches;
        self
    }

    /// Counts the request under its key and says whether the key is past the limit, with
    /// the key for the log; a request with no key is neither counted nor matched (but for
    /// the forwarded address's fallback: [`Hit::Fallback`]).
    pub fn hit(&self, inspection: &Inspection<'_>) -> Option<Hit> {
        let mut hasher = self.hasher.build_hasher();
        let mut shown = Vec::with_capacity(self.keys.len());
        // A forwarded address missing where the fallback matches: the request matches,
        // once every other key is found (whatever their order).
        let mut fell_back = None;
        for key in &self.keys {
            match key {
                AggregateKey::ClientIp => {
                    let client = client_key(inspection.client);
                    client.hash(&mut hasher);
                    shown.push(client.to_string());
                }
                AggregateKey::ForwardedIp(header) => {
                    let Some(address) = forwarded_ip(inspection, header)? else {
                        if !self.forwarded_fallback_matches {
                            return None;
                        }
                        fell_back = Some(header.clone());
                        continue;
                    };
                    let address = client_key(address);
                    address.hash(&mut hasher);
                    shown.push(address.to_string());
                }
                AggregateKey::Header(header) => {
                    let value = inspection.headers().get(header)?;
                    value.as_bytes().hash(&mut hasher);
                    // Credentials are counted by, never shown.
                    let secret = crate::inspect::is_credential(header.as_str());
                    shown.push(if secret {
                        format!("{header}:REDACTED")
                    } else {
                        format!(
                            "{header}:{}",
                            String::from_utf8_lossy(&value.as_bytes()[..value.len().min(32)])
                        )
                    });
                }
                AggregateKey::Cookie(name) => {
                    let value = inspection.cookie_values(name).next()?;
                    value.hash(&mut hasher);
                    // A cookie is a credential: counted by, never shown.
                    shown.push(format!("cookie:{name}:REDACTED"));
                }
                // A query may carry a token (`?token=...`): counted by, never shown.
                AggregateKey::QueryArgument(name) => {
                    let value = first_value(inspection, &Field::QueryArgument(name.clone()))?;
                    value.hash(&mut hasher);
                    shown.push(format!("query_argument:{name}:REDACTED"));
                }
                AggregateKey::QueryString => {
                    let value = first_value(inspection, &Field::QueryString)
                        .filter(|query| !query.is_empty())?;
                    value.hash(&mut hasher);
                    shown.push("query_string:REDACTED".to_owned());
                }
                AggregateKey::UriPath => {
                    // As servers resolve it: `/login`, `//login`, `/./login` and
                    // `/%6Cogin` are one resource and one count.
                    let value = first_value(inspection, &Field::UriPath)?;
                    let value = crate::transform::apply(
                        &[crate::Transform::UrlDecode, crate::Transform::NormalizePath],
                        &value,
                    );
                    value.hash(&mut hasher);
                    shown.push(format!("uri_path:{}", excerpt(&value)));
                }
                AggregateKey::Method => {
                    let value = first_value(inspection, &Field::Method)?;
                    value.hash(&mut hasher);
                    shown.push(format!("method:{}", excerpt(&value)));
                }
            }
        }
        if let Some(header) = fell_back {
            return Some(Hit::Fallback { header });
        }
        let over = self.count(hasher.finish(), self.started.elapsed());
        Some(Hit::Counted {
            over,
            key: shown.join(","),
        })
    }

    /// Counts one request of `key` at `at` (since the statement was made); whether the
    /// key's estimated count over the trailing window is past the limit.
    pub fn count(&self, key: u64, at: Duration) -> bool {
        let window = self.window.as_nanos().max(1);
        let index = (at.as_nanos() / window) as u64;
        let into = (at.as_nanos() % window) as f64 / window as f64;
        let mut counts = self.counts.lock();
        let counts = &mut *counts;
        let fresh = Counter {
            window: index,
            current: 0,
            previous: 0,
        };
        let place = match counts.places.get(&key) {
            Some(&place) => place,
            None if counts.counters.len() < MAX_KEYS => {
                counts.counters.push((key, fresh));
                counts.places.insert(key, counts.counters.len() - 1);
                counts.counters.len() - 1
            }
            None => {
                // Full: the least busy of a random sample gives its place up.
                let mut victim = 0;
                let mut least = f64::INFINITY;
                for _ in 0..EVICTION_SAMPLE {
                    counts.draw ^= counts.draw << 13;
                    counts.draw ^= counts.draw >> 7;
                    counts.draw ^= counts.draw << 17;
                    let place = (counts.draw % counts.counters.len() as u64) as usize;
                    let estimate = counts.counters[place].1.estimate(index, into);
                    if estimate < least {
                        (victim, least) = (place, estimate);
                    }
                }
                counts.places.remove(&counts.counters[victim].0);
                counts.counters[victim] = (key, fresh);
                counts.places.insert(key, victim);
                victim
            }
        };
        let counter = &mut counts.counters[place].1;
        if counter.window != index {
            counter.previous = if counter.window + 1 == index {
                counter.current
            } else {
                0
            };
            counter.current = 0;
            counter.window = index;
        }
        counter.current += 1;
        counter.estimate(index, into) > self.limit as f64
    }

    /// How many keys are tracked now.
    pub fn tracked(&self) -> usize {
        self.counts.lock().counters.len()
    }
}

/// The key a client is counted and limited by (here and by the edge's shield): its
/// address (an IPv4 address mapped into IPv6, as a dual-stack listener sees it, is the IPv4
/// address), or for IPv6 its /64, which one host usually holds whole (limiting single
/// IPv6 addresses would let it take 2^64 rates).
pub fn client_key(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from_bits(
            v6.to_bits() & !u128::from(u64::MAX),
        )),
        v4 => v4,
    }
}

/// The first value of a field, as the key counts it (hashed with its length, so that two
/// keys' parts never run together).
fn first_value(inspection: &Inspection<'_>, field: &Field) -> Option<Vec<u8>> {
    let mut found = None;
    inspection.any_value(field, |value| {
        found = Some(value.to_vec());
        true
    });
    found
}

/// The start of a key's value, for the log.
fn excerpt(value: &[u8]) -> String {
    String::from_utf8_lossy(&value[..value.len().min(32)]).into_owned()
}

/// The first address in `header` (`X-Forwarded-For: client, proxy1, proxy2`, its lines
/// joined), with or without a port, as IP sets read it: `None` without the header,
/// `Some(None)` when its first entry is no address.
fn forwarded_ip(inspection: &Inspection<'_>, header: &HeaderName) -> Option<Option<IpAddr>> {
    crate::statement::forwarded_entries(inspection, header)
        .first()
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds(value: f64) -> Duration {
        Duration::from_secs_f64(value)
    }

    #[test]
    fn a_key_past_its_limit_matches_until_the_window_moves_on() {
        let rate = RateLimit::new(10, Duration::from_secs(60), vec![AggregateKey::ClientIp]);
        for n in 1..=10 {
            assert!(!rate.count(1, seconds(n as f64)), "request {n}");
        }
        assert!(rate.count(1, seconds(11.0)), "the 11th is past the limit");
        assert!(
            !rate.count(2, seconds(11.0)),
            "another key has its own count"
        );
        // Half-way through the next window, half of the 11 still count: 5.5 + 1.
        assert!(!rate.count(1, seconds(90.0)));
        // Two windows later nothing of them counts.
        for _ in 0..10 {
            assert!(!rate.count(1, seconds(185.0)));
        }
        assert!(rate.count(1, seconds(185.5)));
    }

    #[test]
    fn the_trailing_window_is_estimated_from_two_fixed_ones() {
        let rate = RateLimit::new(100, Duration::from_secs(60), vec![AggregateKey::ClientIp]);
        // 100 requests late in one window...
        for _ in 0..100 {
            assert!(!rate.count(7, seconds(59.0)));
        }
        // ...still weigh 90% at 6 s into the next: 90 + 10 is the limit, the 11th passes it.
        for _ in 0..10 {
            assert!(!rate.count(7, seconds(66.0)));
        }
        assert!(rate.count(7, seconds(66.0)));
    }

    /// Whether `rate` counts a GET with `headers` from `client` past its limit, with the
    /// key it shows (`None`: the request has no key, and is not counted).
    fn hit(rate: &RateLimit, client: &str, headers: &[(&str, &str)]) -> Option<(bool, String)> {
        let mut map = http::HeaderMap::new();
        for (name, value) in headers {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                value.parse().expect("value"),
            );
        }
        let client = client.parse().expect("address");
        let inspection = Inspection::new("GET", "/api/search", None, &map, b"", false, client);
        rate.hit(&inspection).map(shown)
    }

    /// A hit as (matched, what the log shows).
    fn shown(hit: Hit) -> (bool, String) {
        match hit {
            Hit::Counted { over, key } => (over, key),
            Hit::Fallback { header } => (true, format!("fallback:{header}")),
        }
    }

    /// A cookie, a query argument, the query string, the path and the method as keys: each
    /// value its own count, a request without the part not counted, a cookie's or a
    /// query's value never shown.
    #[test]
    fn keys_count_by_a_cookie_an_argument_the_query_the_path_or_the_method() {
        let minute = Duration::from_secs(60);
        let request = |rate: &RateLimit, method: &str, target: &str, cookie: Option<&str>| {
            let mut headers = http::HeaderMap::new();
            if let Some(cookie) = cookie {
                headers.insert(http::header::COOKIE, cookie.parse().expect("value"));
            }
            let (path, query) = target
                .split_once('?')
                .map_or((target, None), |(path, query)| (path, Some(query)));
            let inspection = Inspection::new(
                method,
                path,
                query,
                &headers,
                b"",
                false,
                "127.0.0.1".parse().expect("address"),
            );
            rate.hit(&inspection).map(shown)
        };
        // (key, request (method, target, cookie), the same key's second request, a
        // request of another key, a request without the part)
        type Request<'a> = (&'a str, &'a str, Option<&'a str>);
        let cases: [(AggregateKey, Request, &str, Request, Option<Request>); 6] = [
            (
                AggregateKey::Cookie("session".to_owned()),
                ("GET", "/", Some("theme=dark; session=abc")),
                "cookie:session:REDACTED",
                ("GET", "/", Some("session=xyz")),
                Some(("GET", "/", Some("theme=dark"))),
            ),
            (
                AggregateKey::QueryArgument("q".to_owned()),
                ("GET", "/search?q=red%20wool&page=2", None),
                "query_argument:q:REDACTED",
                ("GET", "/search?q=blue", None),
                Some(("GET", "/search?page=2", None)),
            ),
            (
                AggregateKey::QueryString,
                ("GET", "/search?q=red", None),
                "query_string:REDACTED",
                ("GET", "/search?q=blue", None),
                Some(("GET", "/search", None)),
            ),
            (
                AggregateKey::UriPath,
                ("GET", "/api/login", None),
                "uri_path:/api/login",
                ("GET", "/api/cart", None),
                None,
            ),
            // Spellings of one path count as one.
            (
                AggregateKey::UriPath,
                ("GET", "/api//./%6Cogin", None),
                "uri_path:/api/login",
                ("GET", "/api/cart", None),
                None,
            ),
            (
                AggregateKey::Method,
                ("POST", "/api/login", None),
                "method:POST",
                ("GET", "/api/login", None),
                None,
            ),
        ];
        for (key, first, shown, other, without) in cases {
            let rate = RateLimit::new(1, minute, vec![key.clone()]);
            let (method, target, cookie) = first;
            assert_eq!(
                request(&rate, method, target, cookie),
                Some((false, shown.to_owned())),
                "{key:?}"
            );
            assert_eq!(
                request(&rate, method, target, cookie).map(|hit| hit.0),
                Some(true),
                "{key:?}: the second request of one key passes the limit of 1"
            );
            let (method, target, cookie) = other;
            assert_eq!(
                request(&rate, method, target, cookie).map(|hit| hit.0),
                Some(false),
                "{key:?}: another value has its own count"
            );
            if let Some((method, target, cookie)) = without {
                assert_eq!(request(&rate, method, target, cookie), None, "{key:?}");
            }
        }
        // Two spellings of one path share one count.
        let rate = RateLimit::new(1, minute, vec![AggregateKey::UriPath]);
        assert_eq!(
            request(&rate, "GET", "/api/login", None).map(|hit| hit.0),
            Some(false)
        );
        assert_eq!(
            request(&rate, "GET", "/api/./x/../%6Cogin", None).map(|hit| hit.0),
            Some(true)
        );
    }

    #[test]
    fn keys_count_by_a_forwarded_address_a_header_or_a_combination() {
        let minute = Duration::from_secs(60);
        let forwarded = HeaderName::from_static("x-forwarded-for");
        // The first address of X-Forwarded-For, whichever connection it comes on; an
        // IPv6 one by its /64.
        let rate = RateLimit::new(2, minute, vec![AggregateKey::ForwardedIp(forwarded)]);
        let xff = [("x-forwarded-for", "203.0.113.9, 10.0.0.1")];
        assert_eq!(
            hit(&rate, "127.0.0.1", &xff),
            Some((false, "203.0.113.9".to_owned()))
        );
        assert_eq!(hit(&rate, "127.0.0.2", &xff).map(|hit| hit.0), Some(false));
        assert_eq!(hit(&rate, "127.0.0.3", &xff).map(|hit| hit.0), Some(true));
        for (n, address) in ["2001:db8:1:2::1", "2001:db8:1:2::ffff", "2001:db8:1:2::1"]
            .into_iter()
            .enumerate()
        {
            let (over, shown) =
                hit(&rate, "127.0.0.1", &[("x-forwarded-for", address)]).expect("counted");
            assert_eq!(over, n == 2, "request {n}");
            assert_eq!(shown, "2001:db8:1:2::");
        }
        // An address with a port, as some proxies write it, is the address.
        for (n, entry) in ["198.51.100.7:51234", "198.51.100.7", "198.51.100.7:443"]
            .into_iter()
            .enumerate()
        {
            let line = format!("{entry}, 10.0.0.1");
            let (over, shown) =
                hit(&rate, "127.0.0.1", &[("x-forwarded-for", &line)]).expect("counted");
            assert_eq!((over, shown.as_str()), (n == 2, "198.51.100.7"), "{entry}");
        }
        assert_eq!(
            hit(
                &rate,
                "127.0.0.1",
                &[("x-forwarded-for", "[2001:db8:9::1]:443")]
            ),
            Some((false, "2001:db8:9::".to_owned()))
        );
        // No header, or no address in it: not counted.
        assert_eq!(hit(&rate, "127.0.0.1", &[]), None);
        for junk in ["unknown", "", ", 203.0.113.9"] {
            assert_eq!(hit(&rate, "127.0.0.1", &[("x-forwarded-for", junk)]), None);
        }
        // Unless the fallback matches: then a request without an address matches, uncounted,
        // and one without the header is still left alone (AWS WAF's MATCH).
        let rate = RateLimit::new(
            100,
            minute,
            vec![AggregateKey::ForwardedIp(HeaderName::from_static(
                "x-forwarded-for",
            ))],
        )
        .with_forwarded_fallback(true);
        for junk in ["unknown", "", ", 203.0.113.9"] {
            assert_eq!(
                hit(&rate, "127.0.0.1", &[("x-forwarded-for", junk)]),
                Some((true, "fallback:x-forwarded-for".to_owned())),
                "{junk:?}"
            );
        }
        assert_eq!(hit(&rate, "127.0.0.1", &[]), None);
        assert_eq!(
            hit(&rate, "127.0.0.1", &[("x-forwarded-for", "203.0.113.9")]),
            Some((false, "203.0.113.9".to_owned()))
        );
        // Combined with another key, whatever the order: the fallback matches a request
        // that has the other key, and nothing matches one without it.
        let forwarded = AggregateKey::ForwardedIp(HeaderName::from_static("x-forwarded-for"));
        let api_key = AggregateKey::Header(HeaderName::from_static("x-api-key"));
        for keys in [
            vec![forwarded.clone(), api_key.clone()],
            vec![api_key.clone(), forwarded.clone()],
        ] {
            let rate = RateLimit::new(100, minute, keys).with_forwarded_fallback(true);
            let junk = ("x-forwarded-for", "unknown");
            assert_eq!(hit(&rate, "127.0.0.1", &[junk]), None);
            assert_eq!(
                hit(&rate, "127.0.0.1", &[junk, ("x-api-key", "k")]),
                Some((true, "fallback:x-forwarded-for".to_owned()))
            );
        }

        // A header's value: a credential is counted by, and shown redacted.
        let rate = RateLimit::new(
            1,
            minute,
            vec![AggregateKey::Header(HeaderName::from_static("x-api-key"))],
        );
        let key = [("x-api-key", "sk_live_1234")];
        assert_eq!(
            hit(&rate, "127.0.0.1", &key),
            Some((false, "x-api-key:REDACTED".to_owned()))
        );
        assert_eq!(hit(&rate, "127.0.0.9", &key).map(|hit| hit.0), Some(true));
        assert_eq!(
            hit(&rate, "127.0.0.1", &[("x-api-key", "sk_live_5678")]).map(|hit| hit.0),
            Some(false),
            "another value has its own count"
        );
        assert_eq!(hit(&rate, "127.0.0.1", &[]), None);

        // A combination: the client and a tenant header, counted together.
        let rate = RateLimit::new(
            1,
            minute,
            vec![
                AggregateKey::ClientIp,
                AggregateKey::Header(HeaderName::from_static("x-tenant")),
            ],
        );
        let tenant = |name: &'static str| [("x-tenant", name)];
        assert_eq!(
            hit(&rate, "127.0.0.1", &tenant("acme")),
            Some((false, "127.0.0.1,x-tenant:acme".to_owned()))
        );
        assert_eq!(
            hit(&rate, "127.0.0.1", &tenant("globex")).map(|hit| hit.0),
            Some(false)
        );
        assert_eq!(
            hit(&rate, "127.0.0.2", &tenant("acme")).map(|hit| hit.0),
            Some(false)
        );
        assert_eq!(
            hit(&rate, "127.0.0.1", &tenant("acme")).map(|hit| hit.0),
            Some(true)
        );
        assert_eq!(hit(&rate, "127.0.0.1", &[]), None, "no tenant: no key");
    }

    #[test]
    fn a_full_table_gives_the_place_of_a_quiet_key_never_a_busy_one() {
        let rate = RateLimit::new(50, Duration::from_secs(60), vec![AggregateKey::ClientIp]);
        // A busy key, over its limit...
        for _ in 0..60 {
            rate.count(u64::MAX, seconds(1.0));
        }
        assert!(rate.count(u64::MAX, seconds(1.0)));
        // ...then a flood of made-up keys, each sent once, fills the table and goes on
        // past it: the table stays bounded, and each new key is counted.
        for key in 0..MAX_KEYS as u64 * 2 {
            assert!(!rate.count(key, seconds(2.0)));
        }
        assert_eq!(rate.tracked(), MAX_KEYS);
        // The busy key kept its place and its count, and still matches.
        assert!(rate.count(u64::MAX, seconds(3.0)));
        // A new key that sends much, in the full table, is counted to its limit.
        for n in 1..=50 {
            assert!(!rate.count(u64::MAX - 1, seconds(4.0)), "request {n}");
        }
        assert!(rate.count(u64::MAX - 1, seconds(4.0)));
    }
}
