//! Rate-based statements, as AWS WAF's: requests are counted per aggregation key (the client
//! address, an IPv6 client by its /64; an address forwarded in a header; header values; or
//! a combination) over a trailing window of 60, 120, 300 or 600 seconds; the statement
//! matches the requests of a key whose count is past the limit, until it falls back under
//! it. A scope-down statement limits what is counted.
//!
//! The trailing window is estimated from two fixed windows, the one under way and the one
//! before, weighted by how much of the earlier one the trailing window still covers: two
//! counters per key, and within a few percent of an exact count when traffic is steady.
//! Keys are hashed (SipHash with a random key, so clients cannot aim at collisions) and at
//! most [`MAX_KEYS`] are tracked; past that, keys idle for two windows are forgotten first,
//! and a new key is not counted until there is room (so that a flood of made-up keys
//! cannot push the busy ones out: it lets new keys through uncounted instead, which the
//! shield's per-client limits still hold). A reload that changes the rules starts the
//! counts afresh.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use http::HeaderName;
use parking_lot::Mutex;

use crate::inspect::Inspection;

/// The windows AWS WAF offers, in seconds.
pub const WINDOWS: [u64; 4] = [60, 120, 300, 600];

/// The most keys one statement tracks.
pub const MAX_KEYS: usize = 100_000;

/// What requests are counted together by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AggregateKey {
    /// The client's address (the connection's).
    ClientIp,
    /// The first address in a header (`X-Forwarded-For`, as a proxy in front sets it); a
    /// request without a valid one is not counted.
    ForwardedIp(HeaderName),
    /// A header's value; a request without it is not counted.
    Header(HeaderName),
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
    started: Instant,
    hasher: RandomState,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    keys: HashMap<u64, Counter>,
    /// The fixed window in which idle keys were last forgotten: at most once per window,
    /// so that a flood of new keys into a full table costs no scan per request.
    pruned: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
struct Counter {
    /// The fixed window `current` counts in.
    window: u64,
    current: u64,
    previous: u64,
}

impl RateLimit {
    /// A statement's counts; `window` is one of [`WINDOWS`] (in seconds), `keys` is not
    /// empty (the caller checks both).
    pub fn new(limit: u64, window: Duration, keys: Vec<AggregateKey>) -> Self {
        Self {
            limit,
            window: window.max(Duration::from_secs(1)),
            keys,
            started: Instant::now(),
            hasher: RandomState::new(),
            counts: Mutex::default(),
        }
    }

    /// Counts the request under its key and says whether the key is past the limit, with
    /// the key for the log; a request with no key is neither counted nor matched.
    pub fn hit(&self, inspection: &Inspection<'_>) -> Option<(bool, String)> {
        let mut hasher = self.hasher.build_hasher();
        let mut shown = Vec::with_capacity(self.keys.len());
        for key in &self.keys {
            match key {
                AggregateKey::ClientIp => {
                    // An IPv6 client is its /64, which one host usually holds whole.
                    let client = match inspection.client {
                        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from_bits(
                            v6.to_bits() & !u128::from(u64::MAX),
                        )),
                        v4 => v4,
                    };
                    client.hash(&mut hasher);
                    shown.push(client.to_string());
                }
                AggregateKey::ForwardedIp(header) => {
                    let address = forwarded_ip(inspection, header)?;
                    address.hash(&mut hasher);
                    shown.push(address.to_string());
                }
                AggregateKey::Header(header) => {
                    let value = inspection.headers().get(header)?;
                    value.as_bytes().hash(&mut hasher);
                    // Credentials are counted by, never shown.
                    let secret = [
                        http::header::AUTHORIZATION,
                        http::header::COOKIE,
                        http::header::PROXY_AUTHORIZATION,
                    ]
                    .contains(header);
                    shown.push(if secret {
                        format!("{header}:REDACTED")
                    } else {
                        format!(
                            "{header}:{}",
                            String::from_utf8_lossy(&value.as_bytes()[..value.len().min(32)])
                        )
                    });
                }
            }
        }
        let over = self.count(hasher.finish(), self.started.elapsed());
        Some((over, shown.join(",")))
    }

    /// Counts one request of `key` at `at` (since the statement was made); whether the
    /// key's estimated count over the trailing window is past the limit.
    pub fn count(&self, key: u64, at: Duration) -> bool {
        let window = self.window.as_nanos().max(1);
        let index = (at.as_nanos() / window) as u64;
        let into = (at.as_nanos() % window) as f64 / window as f64;
        let mut counts = self.counts.lock();
        if counts.keys.len() >= MAX_KEYS && !counts.keys.contains_key(&key) {
            if counts.pruned == Some(index) {
                return false;
            }
            counts.pruned = Some(index);
            counts.keys.retain(|_, counter| counter.window + 1 >= index);
            if counts.keys.len() >= MAX_KEYS {
                return false;
            }
        }
        let counter = counts.keys.entry(key).or_insert(Counter {
            window: index,
            current: 0,
            previous: 0,
        });
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
        let estimate = counter.previous as f64 * (1.0 - into) + counter.current as f64;
        estimate > self.limit as f64
    }

    /// How many keys are tracked now.
    pub fn tracked(&self) -> usize {
        self.counts.lock().keys.len()
    }
}

/// The first address in `header` (`X-Forwarded-For: client, proxy1, proxy2`).
fn forwarded_ip(inspection: &Inspection<'_>, header: &HeaderName) -> Option<IpAddr> {
    let value = inspection.headers().get(header)?.to_str().ok()?;
    value.split(',').next()?.trim().parse().ok()
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

    #[test]
    fn tracked_keys_are_bounded() {
        let rate = RateLimit::new(1, Duration::from_secs(60), vec![AggregateKey::ClientIp]);
        for key in 0..MAX_KEYS as u64 {
            rate.count(key, seconds(1.0));
        }
        // Full: a new key is not counted while every tracked one is recent...
        assert!(!rate.count(u64::MAX, seconds(2.0)));
        assert!(!rate.count(u64::MAX, seconds(2.0)));
        assert_eq!(rate.tracked(), MAX_KEYS);
        // ...and once they have been idle for two windows, they make room.
        assert!(!rate.count(u64::MAX, seconds(181.0)));
        assert!(rate.count(u64::MAX, seconds(181.0)));
        assert_eq!(rate.tracked(), 1);
    }
}
