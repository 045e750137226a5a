//! The shield (stage 2, with the guard): AWS Shield's part of the edge. Each client address
//! gets a request rate (GCRA, with the `governor` crate: a burst, then a steady rate) and a
//! number of connections; past them, its requests get 429 with `Retry-After` and its new
//! connections are closed at once, so that one flooding client cannot take the edge from
//! the others.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use ipnet::IpNet;
use parking_lot::Mutex;

use crate::metrics::EdgeMetrics;
use crate::mitigation::{BaselineView, Event, FloodView, Mitigation, MitigationConfig, Signatures};
use crate::rules::glob_match;

/// The shield's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShieldConfig {
    /// Requests a client may send per second, steadily.
    pub requests_per_second: NonZeroU32,
    /// Requests a client may send at once above the steady rate.
    pub burst: NonZeroU32,
    /// Connections a client may hold open at once.
    pub connections_per_client: u32,
    /// Requests a client may have in flight at once (over HTTP/2, one connection carries
    /// many); past it, 429. `None`: no limit.
    pub requests_in_flight_per_client: Option<u32>,
    /// Requests the whole edge works on at once (until their answer's head); past it, new
    /// requests are shed with 503, except those on a priority path, up to twice the limit.
    /// `None`: no limit.
    pub max_requests_in_flight: Option<usize>,
    /// Path patterns (`*` and `?` wildcards) never shed by the in-flight limit: health
    /// checks, and the checkouts of shoppers already buying.
    pub priority_paths: Vec<String>,
    /// Clients the shield never limits nor sheds: other regions' edges fetching through
    /// this one, monitors.
    pub exempt: Vec<IpNet>,
    /// Automatic mitigation of floods, if on.
    pub mitigation: Option<MitigationConfig>,
}

/// The shield's state: one rate per client, each client's open connections, the requests
/// in flight, and the automatic mitigation. A reload makes a new shield with
/// [`Shield::reconfigure`], which carries the state over.
#[derive(Debug)]
pub struct Shield {
    config: ShieldConfig,
    rates: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    clock: DefaultClock,
    connections: Arc<Mutex<HashMap<IpAddr, u32>>>,
    in_flight: Arc<AtomicUsize>,
    /// Each client's requests in flight (while it has some), for the per-client limit.
    client_in_flight: Arc<Mutex<HashMap<IpAddr, u32>>>,
    mitigation: Option<Arc<Mitigation>>,
    last_forget: Mutex<std::time::Instant>,
}

/// Why the shield refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The client sent past its rate; it may again after this long.
    RateLimited(Duration),
    /// A rule of the automatic mitigation holds the client back for this long.
    Mitigated(Duration),
    /// The edge has as many requests in flight as it takes.
    Shed,
}

/// A request the shield let through, counted in flight (the edge's, and its client's)
/// until it is dropped.
#[derive(Debug)]
pub struct Admitted<'s> {
    in_flight: Option<&'s AtomicUsize>,
    client: Option<(&'s Mutex<HashMap<IpAddr, u32>>, IpAddr)>,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        if let Some(in_flight) = self.in_flight {
            in_flight.fetch_sub(1, Ordering::Relaxed);
        }
        if let Some((counts, client)) = self.client {
            let mut counts = counts.lock();
            if let Some(count) = counts.get_mut(&client) {
                *count -= 1;
                if *count == 0 {
                    counts.remove(&client);
                }
            }
        }
    }
}

/// A client's connection, counted until it is dropped.
#[derive(Debug)]
pub struct ConnectionPermit {
    connections: Arc<Mutex<HashMap<IpAddr, u32>>>,
    client: IpAddr,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut connections = self.connections.lock();
        if let Some(count) = connections.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                connections.remove(&self.client);
            }
        }
    }
}

pub use securecart_waf::rate::client_key;

fn quota(config: &ShieldConfig) -> Quota {
    Quota::per_second(config.requests_per_second).allow_burst(config.burst)
}

impl Shield {
    /// A shield with these limits.
    pub fn new(config: ShieldConfig) -> Self {
        Self {
            rates: Arc::new(DefaultKeyedRateLimiter::keyed(quota(&config))),
            clock: DefaultClock::default(),
            connections: Arc::default(),
            in_flight: Arc::default(),
            client_in_flight: Arc::default(),
            mitigation: config
                .mitigation
                .clone()
                .map(|mitigation| Arc::new(Mitigation::new(mitigation))),
            last_forget: Mutex::new(std::time::Instant::now()),
            config,
        }
    }

    /// The shield with `config`'s limits that takes over from this one on a reload: open
    /// connections and requests in flight stay counted; the clients' rates stay if the
    /// rate and burst did not change, and the mitigation's baselines and rules if its
    /// settings did not.
    pub fn reconfigure(&self, config: ShieldConfig) -> Self {
        let rates = if quota(&config) == quota(&self.config) {
            Arc::clone(&self.rates)
        } else {
            Arc::new(DefaultKeyedRateLimiter::keyed(quota(&config)))
        };
        let mitigation = if config.mitigation == self.config.mitigation {
            self.mitigation.clone()
        } else {
            config
                .mitigation
                .clone()
                .map(|mitigation| Arc::new(Mitigation::new(mitigation)))
        };
        Self {
            rates,
            clock: DefaultClock::default(),
            connections: Arc::clone(&self.connections),
            in_flight: Arc::clone(&self.in_flight),
            client_in_flight: Arc::clone(&self.client_in_flight),
            mitigation,
            last_forget: Mutex::new(*self.last_forget.lock()),
            config,
        }
    }

    /// Its limits.
    pub fn config(&self) -> &ShieldConfig {
        &self.config
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Whether a request of `client` for `path` (as servers resolve it:
    /// [`crate::rules::normalized_path`]) may go on now: within the edge's requests
    /// in flight unless the path has priority, within the client's rate and any
    /// mitigation rule aimed at it. Every request is counted for the mitigation's
    /// baseline, the refused ones too (so that a flood is seen for as long as it lasts); a
    /// shed request spends none of the client's rate.
    pub fn admit(
        &self,
        client: IpAddr,
        path: &str,
        headers: &http::HeaderMap,
    ) -> Result<Admitted<'_>, Refusal> {
        let client = client.to_canonical();
        if self.is_exempt(client) {
            return Ok(Admitted {
                in_flight: None,
                client: None,
            });
        }
        let key = client_key(client);
        let signatures = self.mitigation.as_ref().map(|mitigation| {
            let signatures = Signatures::of(headers);
            mitigation.record(key, path, signatures, |level| {
                Signatures::label(headers, level)
            });
            signatures
        });
        let limit = self
            .config
            .max_requests_in_flight
            .map(|limit| (limit, self.has_priority(path)));
        if let Some((limit, false)) = limit
            && self.in_flight.load(Ordering::Relaxed) >= limit
        {
            return Err(Refusal::Shed);
        }
        self.rates.check_key(&key).map_err(|not_until| {
            Refusal::RateLimited(not_until.wait_time_from(self.clock.now()))
        })?;
        if let (Some(mitigation), Some(signatures)) = (&self.mitigation, signatures) {
            mitigation
                .check(key, path, signatures, || self.has_priority(path))
                .map_err(Refusal::Mitigated)?;
        }
        // The client's own requests in flight: a client may not take the edge's room alone
        // (over HTTP/2 its connections carry many requests each).
        let client = match self.config.requests_in_flight_per_client {
            None => None,
            Some(most) => {
                let mut counts = self.client_in_flight.lock();
                let count = counts.entry(key).or_insert(0);
                if *count >= most {
                    return Err(Refusal::RateLimited(Duration::from_secs(1)));
                }
                *count += 1;
                Some((&*self.client_in_flight, key))
            }
        };
        // Dropped unfinished (a shed request), it gives the client's count back.
        let mut admitted = Admitted {
            in_flight: None,
            client,
        };
        let Some((limit, priority)) = limit else {
            return Ok(admitted);
        };
        // Counted only if there is room, so that requests about to be shed never crowd out
        // the ones that fit. A priority path's requests go on past the limit, up to twice
        // it: a flood aimed at a priority path cannot grow without bound.
        let room = if priority {
            limit.saturating_mul(2)
        } else {
            limit
        };
        self.in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |count| {
                (count < room).then_some(count + 1)
            })
            .map_err(|_| Refusal::Shed)?;
        admitted.in_flight = Some(&self.in_flight);
        Ok(admitted)
    }

    fn is_exempt(&self, client: IpAddr) -> bool {
        self.config.exempt.iter().any(|net| net.contains(&client))
    }

    /// Whether `path`, as servers resolve it (`/api/cart/../admin` is `/admin`), has
    /// priority.
    fn has_priority(&self, path: &str) -> bool {
        self.config
            .priority_paths
            .iter()
            .any(|pattern| glob_match(pattern.as_bytes(), path.as_bytes(), false))
    }

    /// A new connection of `client`, counted while the permit lives; `None` past the
    /// client's connection limit. An exempt client's connections are not counted.
    pub fn connect(&self, client: IpAddr) -> Option<Option<ConnectionPermit>> {
        let client = client.to_canonical();
        if self.is_exempt(client) {
            return Some(None);
        }
        let client = client_key(client);
        let mut connections = self.connections.lock();
        let count = connections.entry(client).or_insert(0);
        if *count >= self.config.connections_per_client {
            return None;
        }
        *count += 1;
        Some(Some(ConnectionPermit {
            connections: Arc::clone(&self.connections),
            client,
        }))
    }

    /// How often the edge calls [`Shield::tick`]: each mitigation window, else a minute.
    pub fn tick_interval(&self) -> Duration {
        self.mitigation
            .as_ref()
            .map_or(Duration::from_secs(60), |mitigation| {
                mitigation.config().window
            })
    }

    /// Closes the mitigation's window (logging and counting the floods that start and
    /// end), and once a minute forgets the rates of clients quiet long enough to be back
    /// at a full burst.
    pub fn tick(&self, metrics: &EdgeMetrics) {
        if let Some(mitigation) = &self.mitigation {
            for event in mitigation.close_window() {
                match event {
                    Event::FloodStarted {
                        path,
                        requests,
                        baseline,
                        clients,
                        rate,
                    } => {
                        metrics.shield_floods.inc();
                        if clients.is_empty() {
                            // Spread over many clients, none far past the busiest shopper:
                            // each stays held by the per-client limits alone.
                            tracing::warn!(
                                path,
                                requests,
                                baseline = baseline.round(),
                                "shield: flood detected; no client sends far more than a shopper"
                            );
                        } else {
                            tracing::warn!(
                                path,
                                requests,
                                baseline = baseline.round(),
                                clients = ?clients,
                                rate_per_second = rate,
                                "shield: flood detected; its clients are held to the baseline's rate"
                            );
                        }
                    }
                    Event::SignatureHeld {
                        path,
                        label,
                        requests,
                        rate,
                    } => {
                        tracing::warn!(
                            path,
                            signature = %label,
                            requests,
                            rate_per_second = rate,
                            "shield: the flood's requests look alike; all of that signature are held together to its usual rate"
                        );
                    }
                    Event::FloodSpread { path, clients } => {
                        tracing::warn!(path, clients = ?clients, "shield: more clients join the flood");
                    }
                    Event::FloodEnded {
                        path,
                        clients,
                        signatures,
                    } => {
                        tracing::info!(
                            path,
                            clients,
                            signatures,
                            "shield: flood over; its rules are removed"
                        );
                    }
                }
            }
            metrics
                .shield_mitigated_clients
                .set(i64::try_from(mitigation.rule_count()).unwrap_or(i64::MAX));
        }
        let mut last_forget = self.last_forget.lock();
        if last_forget.elapsed() >= Duration::from_secs(60) {
            *last_forget = std::time::Instant::now();
            self.rates.retain_recent();
            self.rates.shrink_to_fit();
        }
    }

    /// The floods the automatic mitigation holds back now.
    pub fn floods(&self) -> Vec<FloodView> {
        self.mitigation
            .as_ref()
            .map(|mitigation| mitigation.floods())
            .unwrap_or_default()
    }

    /// The paths the automatic mitigation watches or learns.
    pub fn baselines(&self) -> Vec<BaselineView> {
        self.mitigation
            .as_ref()
            .map(|mitigation| mitigation.baselines())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_requests_in_flight: Option<usize>) -> ShieldConfig {
        ShieldConfig {
            requests_per_second: NonZeroU32::new(1).expect("nonzero"),
            burst: NonZeroU32::new(3).expect("nonzero"),
            connections_per_client: 2,
            requests_in_flight_per_client: None,
            max_requests_in_flight,
            priority_paths: vec!["/healthz".to_owned(), "/api/checkout*".to_owned()],
            exempt: vec!["127.0.30.0/24".parse().expect("network")],
            mitigation: None,
        }
    }

    #[test]
    fn a_client_past_its_burst_waits_and_others_do_not() {
        let shield = Arc::new(Shield::new(limits(None)));
        let flooder: IpAddr = "127.0.10.1".parse().expect("address");
        let shopper: IpAddr = "127.0.20.1".parse().expect("address");
        for _ in 0..3 {
            assert!(shield.admit(flooder, "/", &http::HeaderMap::new()).is_ok());
        }
        let Err(Refusal::RateLimited(wait)) = shield.admit(flooder, "/", &http::HeaderMap::new())
        else {
            panic!("past the burst");
        };
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1));
        assert!(
            shield.admit(shopper, "/", &http::HeaderMap::new()).is_ok(),
            "limits are per client"
        );

        let first = shield.connect(flooder).expect("first connection");
        let _second = shield.connect(flooder).expect("second connection");
        assert!(
            shield.connect(flooder).is_none(),
            "past the connection limit"
        );
        assert!(shield.connect(shopper).is_some());
        drop(first);
        let _again = shield
            .connect(flooder)
            .expect("a closed connection frees its place");

        // An exempt client is not limited at all, also seen through a dual-stack socket.
        let edge: IpAddr = "127.0.30.1".parse().expect("address");
        let mapped: IpAddr = "::ffff:127.0.30.1".parse().expect("address");
        for _ in 0..10 {
            assert!(shield.admit(edge, "/", &http::HeaderMap::new()).is_ok());
            assert!(shield.admit(mapped, "/", &http::HeaderMap::new()).is_ok());
            assert!(matches!(shield.connect(edge), Some(None)));
        }

        // A reload keeps what is counted: the flooder's connections and spent burst.
        let reloaded = shield.reconfigure(ShieldConfig {
            max_requests_in_flight: Some(10),
            ..limits(None)
        });
        assert!(reloaded.connect(flooder).is_none(), "still at its limit");
        assert!(matches!(
            reloaded.admit(flooder, "/", &http::HeaderMap::new()),
            Err(Refusal::RateLimited(_))
        ));
        // A new rate starts everyone afresh.
        let faster = reloaded.reconfigure(ShieldConfig {
            requests_per_second: NonZeroU32::new(100).expect("nonzero"),
            ..limits(None)
        });
        assert!(faster.admit(flooder, "/", &http::HeaderMap::new()).is_ok());
    }

    #[test]
    fn past_the_in_flight_limit_only_priority_paths_go_on() {
        let shield = Shield::new(limits(Some(2)));
        let client = |n: u8| IpAddr::from([127, 0, 10, n]);
        let first = shield
            .admit(client(1), "/", &http::HeaderMap::new())
            .expect("first");
        let _second = shield
            .admit(client(2), "/", &http::HeaderMap::new())
            .expect("second");
        assert_eq!(
            shield.admit(client(3), "/", &http::HeaderMap::new()).err(),
            Some(Refusal::Shed)
        );
        assert_eq!(shield.in_flight(), 2, "a shed request is not counted");
        let checkout = shield
            .admit(client(4), "/api/checkout", &http::HeaderMap::new())
            .expect("priority");
        assert!(
            shield
                .admit(client(5), "/healthz", &http::HeaderMap::new())
                .is_ok()
        );
        // A path that only looks like a priority one is shed (resolved as the pipeline
        // resolves it).
        assert_eq!(
            shield
                .admit(
                    client(7),
                    &crate::rules::normalized_path("/api/checkout/../admin"),
                    &http::HeaderMap::new()
                )
                .err(),
            Some(Refusal::Shed)
        );
        // Priority requests go on up to twice the limit, no further.
        let another = shield
            .admit(client(8), "/api/checkout", &http::HeaderMap::new())
            .expect("priority");
        assert_eq!(
            shield
                .admit(client(9), "/api/checkout", &http::HeaderMap::new())
                .err(),
            Some(Refusal::Shed)
        );
        drop(another);
        drop(checkout);
        drop(first);
        assert!(
            shield
                .admit(client(6), "/", &http::HeaderMap::new())
                .is_ok(),
            "a finished request frees its place"
        );
    }

    #[test]
    fn a_client_may_have_only_so_many_requests_in_flight() {
        let shield = Shield::new(ShieldConfig {
            requests_in_flight_per_client: Some(2),
            burst: NonZeroU32::new(100).expect("nonzero"),
            ..limits(Some(3))
        });
        let client = IpAddr::from([127, 0, 11, 1]);
        let first = shield
            .admit(client, "/", &http::HeaderMap::new())
            .expect("first");
        let _second = shield
            .admit(client, "/", &http::HeaderMap::new())
            .expect("second");
        assert_eq!(
            shield.admit(client, "/", &http::HeaderMap::new()).err(),
            Some(Refusal::RateLimited(Duration::from_secs(1)))
        );
        // Another client still has room.
        let other = shield
            .admit(IpAddr::from([127, 0, 11, 2]), "/", &http::HeaderMap::new())
            .expect("other");
        drop(first);
        let third = shield
            .admit(client, "/", &http::HeaderMap::new())
            .expect("room again");
        // Shed by the edge's limit, a request gives its client's place back.
        assert_eq!(
            shield
                .admit(IpAddr::from([127, 0, 11, 3]), "/", &http::HeaderMap::new())
                .err(),
            Some(Refusal::Shed)
        );
        drop((other, third));
        let fourth = IpAddr::from([127, 0, 11, 3]);
        let _a = shield
            .admit(fourth, "/", &http::HeaderMap::new())
            .expect("a");
        let _b = shield
            .admit(fourth, "/", &http::HeaderMap::new())
            .expect("b: the shed one left no count");
    }

    #[test]
    fn ipv6_clients_are_limited_by_their_64() {
        let key = |text: &str| client_key(text.parse().expect("address"));
        assert_eq!(key("2001:db8:1:2:3:4:5:6"), key("2001:db8:1:2::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:127.0.0.1"), key("127.0.0.1"));
        assert_eq!(
            key("127.0.0.1"),
            "127.0.0.1".parse::<IpAddr>().expect("address")
        );
    }
}
