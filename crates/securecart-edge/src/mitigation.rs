//! The shield's automatic mitigation, as AWS Shield Advanced's automatic application layer
//! DDoS mitigation: the edge learns a baseline of each path's traffic and of its clients,
//! and when a window's traffic departs from it (a flood), it adds temporary rate-based rules
//! aimed at the clients that flood, and removes them once the flood has ended.
//!
//! Traffic is counted per window (10 s by default) by path key (the path's first segment
//! when more follows it: `/api`, `/static`; else `/`) and by client within it. A path's
//! first windows only teach its baseline (an exponential average of its windows, seeded by
//! the first, with the 99th percentile of one client's requests). Once it has learnt
//! `learning_windows` windows, each closing window is compared with the baseline:
//!
//! - past `factor` times the baseline (and past a floor, so quiet paths never flood), the
//!   path is flooded: every client that sent more than `factor` times the baseline's
//!   busiest shopper gets a rule holding it, on that path, to that shopper's rate;
//! - a flood ends after `calm_windows` windows back under the threshold (counting refused
//!   requests too, so that a flood ends when it stops, not when it is held), and its rules
//!   go with it;
//! - a calm window teaches the baseline, at most doubling what it adds, so that traffic
//!   grown in steps just under the threshold cannot raise it fast; windows of a flood
//!   teach nothing;
//! - a flood spread over many clients, none of whom stands out, is told by what its
//!   requests look like (Shield Advanced's request signatures): each request's two
//!   [`Signatures`] (its header names, as a set, with its `User-Agent`, and its header
//!   names alone, for a flood that makes up an agent for each request) are counted too,
//!   and the baseline learns each signature's usual share. A signature that sends at
//!   least half a flood's window and `factor` times its usual count gets a rule holding
//!   all its requests on that path together to its usual rate (or the busiest shopper's,
//!   for a signature never seen before), until the flood ends: of the exact level first
//!   (the busiest first), then of the header names alone. Shoppers whose requests look
//!   like the flood's are held with it, as behind Shield (but on priority paths, and
//!   never for a signature that made a quarter of the usual traffic); the others are
//!   not. Clients already held do not count towards a signature, and a window counts
//!   the busiest 64 signatures (Space-Saving), so made-up ones cannot crowd it out.
//!
//! Memory is bounded whatever clients send: at most [`MAX_PATHS`] learnt path keys, which
//! keep their place from window to window, and [`MAX_NEWCOMERS`] more counted in a window
//! by Space-Saving (a key that finds no place takes the least counted newcomer's, and its
//! count, as an over-estimate; a newcomer is weighed by what it surely sent), so that
//! made-up keys sent first, or in turn, cannot keep a busier newcomer out. When the
//! learnt keys are all taken, a newcomer that surely sent more than the least busy learnt
//! key not flooded did, on average and in the window, takes its place, so that keys an
//! attacker makes up and keeps alive with a request now and then cannot keep a shop's
//! busier paths from being learnt, nor push out a key they flood. At most
//! [`MAX_CLIENT_ENTRIES`] client counts are kept per window (past them, requests count in
//! their path's total only).
//!
//! This module decides; [`crate::shield`] counts each request, consults the rules and closes
//! the windows.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota};
use parking_lot::Mutex;

/// How floods are told from ordinary traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MitigationConfig {
    /// The counting window.
    pub window: Duration,
    /// Windows that only learn, after a start, before any can be a flood.
    pub learning_windows: u32,
    /// How many times its baseline a window's traffic must be to be a flood.
    pub factor: u32,
    /// Requests a second below which a path never floods.
    pub min_requests_per_second: u32,
    /// Calm windows after which a flood is over.
    pub calm_windows: u32,
}

impl Default for MitigationConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(10),
            learning_windows: 6,
            factor: 5,
            min_requests_per_second: 20,
            calm_windows: 3,
        }
    }
}

/// The most path keys learnt.
pub const MAX_PATHS: usize = 256;
/// The most path keys one window counts beyond the learnt ones: newcomers, which take
/// the place of the least busy learnt keys when all are taken and they are busier.
pub const MAX_NEWCOMERS: usize = 64;
/// The most client counts one window keeps, over every path (about 10 MB at most).
pub const MAX_CLIENT_ENTRIES: usize = 200_000;
/// The longest first segment that is a key of its own; longer ones count under `/`.
const MAX_KEY_BYTES: usize = 64;
/// The most signatures one path's window counts (the busiest, by the Space-Saving
/// algorithm), and its baseline remembers.
pub const MAX_SIGNATURES: usize = 64;
/// The most signature rules one path's flood makes.
pub const MAX_SIGNATURE_RULES: usize = 4;
/// A signature that made this share of a path's usual traffic or more is never held:
/// that would hold the shoppers with the flood.
const COMMON_SHARE: f64 = 0.25;
/// The longest `User-Agent` a signature shows in logs and the admin API.
const MAX_LABEL_BYTES: usize = 64;

/// What a request looks like, at one [`Level`]: what a window counts, a baseline learns
/// and a rule holds, to tell a flood's requests from shoppers' when no client stands out.
/// (Its low bit says its level: 0 for [`Level::Exact`].)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(u64);

/// A [`Signature`]'s level: how much of a request it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// The header names (as a set, whatever their order) and the `User-Agent`. A browser
    /// sends a dozen headers a script does not; a script that copies a browser's
    /// `User-Agent` still sends its own set.
    Exact,
    /// The header names alone: a script that makes up a `User-Agent` for each request, so
    /// that no one of them sends much, still sends one set.
    Names,
}

impl Signature {
    /// The level it is of.
    pub fn level(self) -> Level {
        if self.0 & 1 == 0 {
            Level::Exact
        } else {
            Level::Names
        }
    }
}

/// A request's signatures, one of each [`Level`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signatures {
    /// Its [`Level::Exact`] one.
    pub exact: Signature,
    /// Its [`Level::Names`] one.
    pub names: Signature,
}

impl Signatures {
    /// The signatures of a request with these headers (FNV-1a: a client gains nothing by
    /// making its requests collide with another signature).
    pub fn of(headers: &http::HeaderMap) -> Self {
        let fnv = crate::balancer::fnv1a;
        let names = headers.keys().fold(0u64, |sum, name| {
            sum.wrapping_add(fnv(name.as_str().as_bytes()))
        });
        let agent = headers
            .get(http::header::USER_AGENT)
            .map_or(0, |agent| fnv(agent.as_bytes()));
        Self {
            exact: Signature((names.rotate_left(17) ^ agent) & !1),
            names: Signature(names | 1),
        }
    }

    /// Both.
    fn each(self) -> [Signature; 2] {
        [self.exact, self.names]
    }

    /// Whether `signature` is one of them.
    fn has(self, signature: Signature) -> bool {
        signature == self.exact || signature == self.names
    }

    /// How the signature of `level` of a request with these headers shows: its
    /// `User-Agent`, shortened, and its header count; or, for its header names alone,
    /// those names (sorted, shortened).
    pub fn label(headers: &http::HeaderMap, level: Level) -> String {
        let shortened = |text: &str| {
            let mut end = text.len().min(MAX_LABEL_BYTES);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text[..end].to_owned()
        };
        match level {
            Level::Exact => {
                let agent = headers
                    .get(http::header::USER_AGENT)
                    .map_or("", |agent| agent.to_str().unwrap_or("(not text)"));
                format!("{} ({} headers)", shortened(agent), headers.len())
            }
            Level::Names => {
                let mut names: Vec<&str> = headers.keys().map(http::HeaderName::as_str).collect();
                names.sort_unstable();
                format!(
                    "any User-Agent, {} headers: {}",
                    names.len(),
                    shortened(&names.join(" "))
                )
            }
        }
    }
}
/// How much of each calm window the baseline takes in (an exponential average).
const LEARNING_RATE: f64 = 0.3;

/// The key a path's traffic is counted under: its first segment when more follows it
/// (`/api/cart` is `/api`), else `/` (so that `/a`, `/b`, `/favicon.ico` count together).
pub fn path_key(path: &str) -> &str {
    let rest = path.strip_prefix('/').unwrap_or(path);
    match rest.find('/') {
        Some(end) if end > 0 && end < MAX_KEY_BYTES => &path[..end + 1],
        _ => "/",
    }
}

/// A temporary rate-based rule: one client, on one path key, held to a rate.
#[derive(Debug)]
pub struct Rule {
    /// The path key.
    pub path: Box<str>,
    /// The client (its shield key).
    pub client: IpAddr,
    /// Requests a second it may send there.
    pub rate: u32,
    limiter: DefaultDirectRateLimiter,
}

/// A temporary rule on a flood's signature: its requests on one path key, from every
/// client together, held to a rate.
#[derive(Debug)]
pub struct SignatureRule {
    /// The path key.
    pub path: Box<str>,
    /// The signature.
    pub signature: Signature,
    /// How it shows.
    pub label: Box<str>,
    /// Requests a second its requests may make together there.
    pub rate: u32,
    limiter: DefaultDirectRateLimiter,
}

/// What closing a window changed.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A path began to flood; `clients` got rules.
    FloodStarted {
        /// The path key.
        path: String,
        /// The window's requests on it.
        requests: u64,
        /// Its baseline, in requests per window.
        baseline: f64,
        /// The clients held to a rate.
        clients: Vec<IpAddr>,
        /// That rate, per second.
        rate: u32,
    },
    /// More clients of a flood already under way got rules.
    FloodSpread {
        /// The path key.
        path: String,
        /// The clients newly held to a rate.
        clients: Vec<IpAddr>,
    },
    /// A flood's signature (no client of it standing out) got a rule.
    SignatureHeld {
        /// The path key.
        path: String,
        /// How the signature shows.
        label: String,
        /// Its requests in the window.
        requests: u64,
        /// The rate its requests are held to together, per second.
        rate: u32,
    },
    /// A path's flood ended and its rules were removed.
    FloodEnded {
        /// The path key.
        path: String,
        /// How many signature rules were removed.
        signatures: usize,
        /// How many rules were removed.
        clients: usize,
    },
}

/// A path's baseline, for the admin API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BaselineView {
    /// The path key.
    pub path: String,
    /// Its usual requests a second.
    pub requests_per_second: f64,
    /// Whether it has learnt enough windows to be watched.
    pub learnt: bool,
}

/// A flood under way, for the admin API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FloodView {
    /// The path key.
    pub path: String,
    /// Seconds since it began.
    pub seconds: u64,
    /// The clients held to a rate.
    pub clients: Vec<IpAddr>,
    /// That rate, per second.
    pub rate_per_second: u32,
    /// The signatures held, all their clients together: how each shows, and its rate.
    pub signatures: Vec<(String, u32)>,
}

#[derive(Debug, Default)]
struct PathCounts {
    total: u64,
    /// Of `total`, what a newcomer took over from the one whose place it took (Space-
    /// Saving's over-estimate): at least `total - inherited` requests were its own.
    inherited: u64,
    clients: HashMap<IpAddr, u32>,
    /// Requests by signature, with how each shows (at most [`MAX_SIGNATURES`]).
    signatures: HashMap<Signature, (u32, Box<str>)>,
    /// Requests of a signature held on this path (counted here once, whichever of their
    /// signatures is held, and under no signature).
    held_by_signature: u64,
}

#[derive(Debug, Default)]
struct Baseline {
    /// Requests per window.
    requests: f64,
    /// The 99th percentile of one client's requests per window.
    client_p99: f64,
    /// Windows it has learnt from.
    learnt: u32,
    flood: Option<Flood>,
    /// Each signature's requests per window (at most [`MAX_SIGNATURES`], the busiest).
    signatures: HashMap<Signature, f64>,
}

/// One window's counts.
#[derive(Debug, Default)]
struct Counts {
    paths: HashMap<Box<str>, PathCounts>,
    /// The keys of `paths` that are not learnt (at most [`MAX_NEWCOMERS`]).
    newcomers: Vec<Box<str>>,
    client_entries: usize,
}

#[derive(Debug)]
struct Flood {
    since: Instant,
    calm: u32,
    rate: u32,
}

#[derive(Debug, Default)]
struct State {
    baselines: HashMap<Box<str>, Baseline>,
}

/// The automatic mitigation's counts, baselines and rules.
#[derive(Debug)]
pub struct Mitigation {
    config: MitigationConfig,
    counts: Mutex<Counts>,
    state: Mutex<State>,
    /// The rules in force by client, read by every request while `active`.
    rules: ArcSwap<HashMap<IpAddr, Vec<Arc<Rule>>>>,
    /// The rules in force on signatures (a few at most).
    signature_rules: ArcSwap<Vec<Arc<SignatureRule>>>,
    active: AtomicBool,
    clock: DefaultClock,
}

impl Mitigation {
    /// A mitigation that has learnt nothing yet.
    pub fn new(config: MitigationConfig) -> Self {
        Self {
            config,
            counts: Mutex::default(),
            state: Mutex::default(),
            rules: ArcSwap::default(),
            signature_rules: ArcSwap::default(),
            active: AtomicBool::new(false),
            clock: DefaultClock::default(),
        }
    }

    /// Its settings.
    pub fn config(&self) -> &MitigationConfig {
        &self.config
    }

    /// Counts a request of `client` (its shield key) for `path`, with its signatures
    /// (`label` is asked how one of a level shows only when the window has not seen it
    /// yet).
    pub fn record(
        &self,
        client: IpAddr,
        path: &str,
        signatures: Signatures,
        label: impl Fn(Level) -> String,
    ) {
        let key = path_key(path);
        let mut counts = self.counts.lock();
        let Counts {
            paths,
            newcomers,
            client_entries,
        } = &mut *counts;
        // One look-up for a key already counted (most requests).
        let entry = match paths.get_mut(key) {
            Some(entry) => entry,
            None => {
                // A newcomer: a place of its own while there are some; else, as
                // Space-Saving, the least counted newcomer's place and its count (an
                // over-estimate), so that keys made up one request each in turn cannot
                // keep a busier newcomer out.
                let inherited = if newcomers.len() < MAX_NEWCOMERS {
                    newcomers.push(key.into());
                    0
                } else {
                    let (place, least) = newcomers
                        .iter()
                        .enumerate()
                        .map(|(place, newcomer)| {
                            (place, paths.get(newcomer).map_or(0, |counts| counts.total))
                        })
                        .min_by_key(|&(_, total)| total)
                        .unwrap_or((0, 0));
                    let gone = std::mem::replace(&mut newcomers[place], key.into());
                    if let Some(counts) = paths.remove(&gone) {
                        *client_entries = client_entries.saturating_sub(counts.clients.len());
                    }
                    least
                };
                paths.entry(key.into()).or_insert(PathCounts {
                    total: inherited,
                    inherited,
                    ..PathCounts::default()
                })
            }
        };
        entry.total += 1;
        match entry.clients.get_mut(&client) {
            Some(count) => *count += 1,
            None if *client_entries < MAX_CLIENT_ENTRIES => {
                entry.clients.insert(client, 1);
                *client_entries += 1;
            }
            None => {}
        }
        if self.active.load(Ordering::Relaxed) {
            // A client already held on this path is its own rule's; its requests do not
            // make a signature look like a flood's.
            if self
                .rules
                .load()
                .get(&client)
                .is_some_and(|held| held.iter().any(|rule| &*rule.path == key))
            {
                return;
            }
            // Nor do those of a signature held on this path: they are that rule's.
            if self
                .signature_rules
                .load()
                .iter()
                .any(|rule| &*rule.path == key && signatures.has(rule.signature))
            {
                entry.held_by_signature += 1;
                return;
            }
        }
        // Space-Saving: in a full map, a new signature takes the place of the least counted
        // one, and its count plus one, so that a busy signature is always among them
        // however many others come first.
        let counted = &mut entry.signatures;
        for signature in signatures.each() {
            if let Some((count, _)) = counted.get_mut(&signature) {
                *count += 1;
            } else if counted.len() < MAX_SIGNATURES {
                counted.insert(signature, (1, label(signature.level()).into_boxed_str()));
            } else if let Some((&least, &(count, _))) =
                counted.iter().min_by_key(|(_, (count, _))| *count)
            {
                counted.remove(&least);
                counted.insert(
                    signature,
                    (count + 1, label(signature.level()).into_boxed_str()),
                );
            }
        }
    }

    /// Whether a rule holds `client`, or requests of one of these signatures, back on
    /// `path` now; if so, how long until it may send. Signature rules spare the paths
    /// `priority` says have it (asked only while one is in force): a shopper already
    /// buying whose requests look like the flood's may finish.
    pub fn check(
        &self,
        client: IpAddr,
        path: &str,
        signatures: Signatures,
        priority: impl FnOnce() -> bool,
    ) -> Result<(), Duration> {
        if !self.active.load(Ordering::Relaxed) {
            return Ok(());
        }
        let key = path_key(path);
        let wait = |limiter: &DefaultDirectRateLimiter| {
            limiter
                .check()
                .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
        };
        if let Some(rules) = self.rules.load().get(&client) {
            for rule in rules.iter().filter(|rule| &*rule.path == key) {
                wait(&rule.limiter)?;
            }
        }
        let signature_rules = self.signature_rules.load();
        let mut held = signature_rules
            .iter()
            .filter(|rule| signatures.has(rule.signature) && &*rule.path == key)
            .peekable();
        if held.peek().is_some() && !priority() {
            for rule in held {
                wait(&rule.limiter)?;
            }
        }
        Ok(())
    }

    /// The floods under way.
    pub fn floods(&self) -> Vec<FloodView> {
        let state = self.state.lock();
        let rules = self.rules.load();
        let mut floods: Vec<FloodView> = state
            .baselines
            .iter()
            .filter_map(|(path, baseline)| {
                let flood = baseline.flood.as_ref()?;
                let mut clients: Vec<IpAddr> = rules
                    .iter()
                    .filter(|(_, rules)| rules.iter().any(|rule| rule.path == *path))
                    .map(|(client, _)| *client)
                    .collect();
                clients.sort_unstable();
                let signatures = self
                    .signature_rules
                    .load()
                    .iter()
                    .filter(|rule| rule.path == *path)
                    .map(|rule| (rule.label.to_string(), rule.rate))
                    .collect();
                Some(FloodView {
                    path: path.to_string(),
                    seconds: flood.since.elapsed().as_secs(),
                    clients,
                    rate_per_second: flood.rate,
                    signatures,
                })
            })
            .collect();
        floods.sort_by(|a, b| a.path.cmp(&b.path));
        floods
    }

    /// The number of client rules in force.
    pub fn rule_count(&self) -> usize {
        self.rules.load().values().map(Vec::len).sum()
    }

    /// The number of signature rules in force.
    pub fn signature_rule_count(&self) -> usize {
        self.signature_rules.load().len()
    }

    /// Closes the window: compares each learnt path with its baseline, starts and ends
    /// floods, and learns from calm windows.
    pub fn close_window(&self) -> Vec<Event> {
        let counts = {
            let mut counts = self.counts.lock();
            let closed = std::mem::take(&mut *counts);
            // The learnt paths keep their place in the next window, so that keys an
            // attacker makes up cannot push them out (those this close admits get theirs
            // at its end).
            let state = self.state.lock();
            for path in state.baselines.keys() {
                counts.paths.insert(path.clone(), PathCounts::default());
            }
            closed
        };
        let events = self.close(&counts);
        // The keys this close admitted: learnt, with a place of their own from now on.
        let admitted: Vec<Box<str>> = {
            let state = self.state.lock();
            counts
                .newcomers
                .iter()
                .filter(|path| state.baselines.contains_key(*path))
                .cloned()
                .collect()
        };
        let mut now = self.counts.lock();
        for path in admitted {
            now.newcomers.retain(|newcomer| *newcomer != path);
            now.paths.entry(path).or_default();
        }
        events
    }

    /// [`Mitigation::close_window`] on the counts of the window closed.
    fn close(&self, counts: &Counts) -> Vec<Event> {
        let mut state = self.state.lock();
        let factor = f64::from(self.config.factor);
        let floor =
            f64::from(self.config.min_requests_per_second) * self.config.window.as_secs_f64();
        let seconds = self.config.window.as_secs_f64().max(0.001);
        let mut events = Vec::new();
        let mut rules = (**self.rules.load()).clone();
        let mut signature_rules = (**self.signature_rules.load()).clone();
        let mut rules_changed = false;

        let mut newcomers: Vec<(&Box<str>, u64)> = counts
            .paths
            .iter()
            .filter(|(path, window)| window.total > 0 && !state.baselines.contains_key(*path))
            // What it surely sent: made-up keys that took one another's places do not
            // add up to a busy newcomer.
            .map(|(path, window)| (path, window.total - window.inherited))
            .collect();
        // The busiest first: while places are free, each takes one; then each takes the
        // place of the least busy learnt key not flooded, if it was busier in this window
        // than that key is on average and in this window (a key flooded in this window,
        // not yet found so, keeps its place).
        newcomers.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        let weight = |path: &str, baseline: &Baseline| {
            let window = counts.paths.get(path).map_or(0, |window| window.total);
            baseline.requests.max(window as f64)
        };
        let mut admitted = Vec::with_capacity(newcomers.len());
        for (path, requests) in newcomers {
            if state.baselines.len() + admitted.len() >= MAX_PATHS {
                let weakest = state
                    .baselines
                    .iter()
                    .filter(|(_, baseline)| baseline.flood.is_none())
                    .map(|(path, baseline)| (path, weight(path, baseline)))
                    .min_by(|a, b| a.1.total_cmp(&b.1))
                    .filter(|&(_, weight)| (requests as f64) > weight)
                    .map(|(weakest, _)| weakest.clone());
                let Some(weakest) = weakest else {
                    break;
                };
                state.baselines.remove(&weakest);
            }
            admitted.push(path.clone());
        }
        let mut paths: Vec<Box<str>> = state.baselines.keys().cloned().collect();
        paths.extend(admitted);
        for path in paths {
            let window = counts.paths.get(&path);
            let requests = window.map_or(0, |window| window.total - window.inherited);
            let p99 = window.map_or(0.0, |window| percentile_99(&window.clients));
            let baseline = state.baselines.entry(path.clone()).or_default();
            let threshold = (factor * baseline.requests).max(floor);
            let watched = baseline.learnt >= self.config.learning_windows;
            if watched && requests as f64 > threshold {
                let client_threshold = (factor * baseline.client_p99).max(seconds);
                let rate = (baseline.client_p99 / seconds).ceil().max(1.0) as u32;
                let mut added = Vec::new();
                for (client, count) in window.into_iter().flat_map(|window| &window.clients) {
                    if f64::from(*count) <= client_threshold {
                        continue;
                    }
                    let held = rules.entry(*client).or_default();
                    if held.iter().any(|rule| rule.path == path) {
                        continue;
                    }
                    let per_second = NonZeroU32::new(rate).unwrap_or(NonZeroU32::MIN);
                    held.push(Arc::new(Rule {
                        path: path.clone(),
                        client: *client,
                        rate,
                        limiter: DefaultDirectRateLimiter::direct(
                            Quota::per_second(per_second).allow_burst(per_second),
                        ),
                    }));
                    added.push(*client);
                }
                added.sort_unstable();
                rules_changed |= !added.is_empty();
                // What the clients held on this path do not account for: if that is a
                // flood still, and mostly of one signature that sends far more than it
                // used to, all that signature's requests here together are held to its
                // usual rate (or a shopper's, if it is new).
                let held_requests: u64 = window
                    .into_iter()
                    .flat_map(|window| &window.clients)
                    .filter(|(client, _)| {
                        rules
                            .get(*client)
                            .is_some_and(|held| held.iter().any(|rule| rule.path == path))
                    })
                    .map(|(_, count)| u64::from(*count))
                    .sum();
                // (The signatures held already on this path are accounted for too.)
                let is_held = |signature: &Signature| {
                    signature_rules
                        .iter()
                        .any(|rule| rule.path == path && rule.signature == *signature)
                };
                let held_signatures = window.map_or(0, |window| window.held_by_signature);
                let remainder = requests.saturating_sub(held_requests + held_signatures);
                let room = signature_rules
                    .iter()
                    .filter(|rule| rule.path == path)
                    .count()
                    < MAX_SIGNATURE_RULES;
                let mut signature_held = None;
                // The first signature that makes half the rest, far more than it used to,
                // and was no large part of the path's usual traffic (holding that would
                // hold the shoppers with the flood): of the exact level first, the busiest
                // first (a flood of one `User-Agent`, whatever headers it sends); then of
                // the header names alone (a flood that makes up its agents), whose holding
                // holds the shoppers who send the same header names, when those made less
                // than a quarter of the path's usual traffic.
                let mut candidates: Vec<_> = window
                    .filter(|_| room && remainder as f64 > threshold)
                    .into_iter()
                    .flat_map(|window| &window.signatures)
                    .filter(|(signature, _)| !is_held(signature))
                    .collect();
                candidates.sort_unstable_by_key(|(signature, (count, _))| {
                    (
                        signature.level() == Level::Names,
                        std::cmp::Reverse(*count),
                        signature.0,
                    )
                });
                let chosen = candidates
                    .into_iter()
                    .find_map(|(signature, (count, label))| {
                        let usual = baseline.signatures.get(signature).copied().unwrap_or(0.0);
                        let count = u64::from(*count);
                        let common = usual > COMMON_SHARE * baseline.requests;
                        (!common
                            && 2 * count >= remainder
                            && count as f64 > factor * usual.max(1.0))
                        .then_some((signature, count, label, usual))
                    });
                if let Some((signature, count, label, usual)) = chosen {
                    let rate = (usual.max(baseline.client_p99) / seconds).ceil().max(1.0) as u32;
                    let per_second = NonZeroU32::new(rate).unwrap_or(NonZeroU32::MIN);
                    signature_rules.push(Arc::new(SignatureRule {
                        path: path.clone(),
                        signature: *signature,
                        label: label.clone(),
                        rate,
                        limiter: DefaultDirectRateLimiter::direct(
                            Quota::per_second(per_second).allow_burst(per_second),
                        ),
                    }));
                    rules_changed = true;
                    signature_held = Some(Event::SignatureHeld {
                        path: path.to_string(),
                        label: label.to_string(),
                        requests: count,
                        rate,
                    });
                }
                match &mut baseline.flood {
                    Some(flood) => {
                        flood.calm = 0;
                        if !added.is_empty() {
                            events.push(Event::FloodSpread {
                                path: path.to_string(),
                                clients: added,
                            });
                        }
                    }
                    None => {
                        baseline.flood = Some(Flood {
                            since: Instant::now(),
                            calm: 0,
                            rate,
                        });
                        events.push(Event::FloodStarted {
                            path: path.to_string(),
                            requests,
                            baseline: baseline.requests,
                            clients: added,
                            rate,
                        });
                    }
                }
                events.extend(signature_held);
                continue;
            }
            if let Some(flood) = &mut baseline.flood {
                flood.calm += 1;
                if flood.calm >= self.config.calm_windows {
                    baseline.flood = None;
                    let mut removed = 0;
                    rules.retain(|_, held| {
                        let before = held.len();
                        held.retain(|rule| rule.path != path);
                        removed += before - held.len();
                        !held.is_empty()
                    });
                    let before = signature_rules.len();
                    signature_rules.retain(|rule| rule.path != path);
                    let signatures = before - signature_rules.len();
                    rules_changed |= removed + signatures > 0;
                    events.push(Event::FloodEnded {
                        path: path.to_string(),
                        clients: removed,
                        signatures,
                    });
                }
                continue;
            }
            // A calm window teaches the baseline: the first one seeds it; once learnt, a
            // window counts for at most twice the baseline.
            let requests = requests as f64;
            if baseline.learnt == 0 {
                baseline.requests = requests;
                baseline.client_p99 = p99;
            } else if watched {
                let cap = |value: f64, current: f64| value.min(2.0 * current.max(1.0));
                baseline.requests +=
                    LEARNING_RATE * (cap(requests, baseline.requests) - baseline.requests);
                baseline.client_p99 +=
                    LEARNING_RATE * (cap(p99, baseline.client_p99) - baseline.client_p99);
            } else {
                baseline.requests += LEARNING_RATE * (requests - baseline.requests);
                baseline.client_p99 += LEARNING_RATE * (p99 - baseline.client_p99);
            }
            learn_signatures(&mut baseline.signatures, window, baseline.learnt == 0);
            baseline.learnt = baseline.learnt.saturating_add(1);
            // A path that has gone quiet gives its place back.
            if baseline.requests < 0.5 && requests == 0.0 {
                state.baselines.remove(&path);
            }
        }
        if rules_changed {
            self.active.store(
                !rules.is_empty() || !signature_rules.is_empty(),
                Ordering::Relaxed,
            );
            self.rules.store(Arc::new(rules));
            self.signature_rules.store(Arc::new(signature_rules));
        }
        events
    }

    /// The paths it watches or learns.
    pub fn baselines(&self) -> Vec<BaselineView> {
        let seconds = self.config.window.as_secs_f64().max(0.001);
        let state = self.state.lock();
        let mut baselines: Vec<BaselineView> = state
            .baselines
            .iter()
            .map(|(path, baseline)| BaselineView {
                path: path.to_string(),
                requests_per_second: (baseline.requests / seconds * 10.0).round() / 10.0,
                learnt: baseline.learnt >= self.config.learning_windows,
            })
            .collect();
        baselines.sort_by(|a, b| a.path.cmp(&b.path));
        baselines
    }
}

/// Teaches a path's signature counts from a calm window (an exponential average, seeded by
/// the first window), keeping the busiest [`MAX_SIGNATURES`].
fn learn_signatures(
    learnt: &mut HashMap<Signature, f64>,
    window: Option<&PathCounts>,
    first: bool,
) {
    let rate = if first { 1.0 } else { LEARNING_RATE };
    for usual in learnt.values_mut() {
        *usual *= 1.0 - rate;
    }
    for (signature, (count, _)) in window.into_iter().flat_map(|window| &window.signatures) {
        *learnt.entry(*signature).or_default() += rate * f64::from(*count);
    }
    if learnt.len() > MAX_SIGNATURES {
        let mut usual: Vec<f64> = learnt.values().copied().collect();
        let (_, cut, _) =
            usual.select_nth_unstable_by(learnt.len() - MAX_SIGNATURES, f64::total_cmp);
        let cut = *cut;
        learnt.retain(|_, value| *value >= cut);
    }
    learnt.retain(|_, value| *value >= 0.05);
}

/// The 99th percentile of the clients' counts.
fn percentile_99(clients: &HashMap<IpAddr, u32>) -> f64 {
    let mut counts: Vec<u32> = clients.values().copied().collect();
    if counts.is_empty() {
        return 0.0;
    }
    let rank = (counts.len() * 99).div_ceil(100).saturating_sub(1);
    let (_, value, _) = counts.select_nth_unstable(rank);
    f64::from(*value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request's signatures, `exact` and `names` made of their levels.
    const fn looks(exact: u64, names: u64) -> Signatures {
        Signatures {
            exact: Signature(exact << 1),
            names: Signature(names << 1 | 1),
        }
    }

    /// A shopper's browser.
    const BROWSER: Signatures = looks(1, 1);

    fn browser(_: Level) -> String {
        "browser".to_owned()
    }

    /// Whether a rule holds a request of `client` back on `path` now (not a priority path).
    fn held(mitigation: &Mitigation, client: IpAddr, path: &str, signatures: Signatures) -> bool {
        mitigation
            .check(client, path, signatures, || false)
            .is_err()
    }

    fn client(n: u8) -> IpAddr {
        IpAddr::from([127, 0, 10, n])
    }

    fn settings() -> MitigationConfig {
        MitigationConfig {
            window: Duration::from_secs(10),
            learning_windows: 3,
            factor: 5,
            min_requests_per_second: 1,
            calm_windows: 2,
        }
    }

    /// One window of `shoppers` clients sending `each` requests to `/api/...`.
    fn shoppers(mitigation: &Mitigation, shoppers: u8, each: u32) {
        for n in 1..=shoppers {
            for _ in 0..each {
                mitigation.record(client(n), "/api/catalog/products", BROWSER, browser);
            }
        }
    }

    /// A window's flood of `/api/search`: `flooders` clients (127.1.x.y) sending 20
    /// requests each with these signatures, as much as the busiest shopper.
    fn flood_search(
        mitigation: &Mitigation,
        flooders: u32,
        signatures: Signatures,
        label: &dyn Fn(Level) -> String,
    ) {
        for n in 0..flooders {
            let flooder = IpAddr::from([127, 1, (n / 200) as u8, (n % 200) as u8]);
            for _ in 0..20 {
                mitigation.record(flooder, "/api/search", signatures, label);
            }
        }
    }

    #[test]
    fn path_keys_are_first_segments() {
        let long = format!("/{}/x", "a".repeat(100));
        for (path, key) in [
            ("/", "/"),
            ("/api/catalog/products", "/api"),
            ("/api/", "/api"),
            ("/api", "/"),
            ("/static/app.js", "/static"),
            ("/favicon.ico", "/"),
            ("//x", "/"),
            ("*", "/"),
            (long.as_str(), "/"),
        ] {
            assert_eq!(path_key(path), key, "{path}");
        }
    }

    #[test]
    fn a_flood_gets_rules_for_its_clients_only_and_they_go_when_it_ends() {
        let mitigation = Mitigation::new(settings());
        // Learning: ten shoppers, 20 requests each per window.
        for _ in 0..5 {
            shoppers(&mitigation, 10, 20);
            assert_eq!(mitigation.close_window(), Vec::new());
        }
        // Twice the usual traffic is no flood.
        shoppers(&mitigation, 20, 20);
        assert_eq!(mitigation.close_window(), Vec::new());

        // Two clients send 2,000 requests each on top of the shoppers.
        shoppers(&mitigation, 10, 20);
        for _ in 0..2000 {
            mitigation.record(client(201), "/api/cart", BROWSER, browser);
            mitigation.record(client(202), "/api/checkout", BROWSER, browser);
        }
        let events = mitigation.close_window();
        let [
            Event::FloodStarted {
                path,
                clients,
                rate,
                ..
            },
        ] = events.as_slice()
        else {
            panic!("{events:?}");
        };
        assert_eq!(path, "/api");
        assert_eq!(clients, &[client(201), client(202)]);
        // The busiest shopper's rate: 20 requests in 10 s, rounded up.
        assert_eq!(*rate, 2);
        assert_eq!(mitigation.rule_count(), 2);

        // The flooders are held to it on that path; shoppers and other paths are not.
        assert!(!held(&mitigation, client(201), "/api/cart", BROWSER));
        assert!(!held(&mitigation, client(201), "/api/cart", BROWSER));
        assert!(held(&mitigation, client(201), "/api/cart", BROWSER));
        assert!(!held(&mitigation, client(201), "/static/app.js", BROWSER));
        assert!(!held(&mitigation, client(1), "/api/cart", BROWSER));
        assert_eq!(
            mitigation.floods()[0].clients,
            vec![client(201), client(202)]
        );

        // A third flooder joins while it lasts.
        shoppers(&mitigation, 10, 20);
        for _ in 0..2000 {
            mitigation.record(client(203), "/api/cart", BROWSER, browser);
        }
        assert_eq!(
            mitigation.close_window(),
            vec![Event::FloodSpread {
                path: "/api".to_owned(),
                clients: vec![client(203)]
            }]
        );

        // Calm windows: the flood ends after two of them, and every rule goes.
        shoppers(&mitigation, 10, 20);
        assert_eq!(mitigation.close_window(), Vec::new());
        shoppers(&mitigation, 10, 20);
        assert_eq!(
            mitigation.close_window(),
            vec![Event::FloodEnded {
                path: "/api".to_owned(),
                clients: 3,
                signatures: 0,
            }]
        );
        assert_eq!(mitigation.rule_count(), 0);
        assert!(mitigation.floods().is_empty());
        for _ in 0..10 {
            assert!(!held(&mitigation, client(201), "/api/cart", BROWSER));
        }
    }

    #[test]
    fn a_flood_spread_over_many_clients_is_held_by_its_signature() {
        let mitigation = Mitigation::new(settings());
        const SCRIPT: Signatures = looks(2, 2);
        let script = |level| match level {
            Level::Exact => "flood-bot/1.0 (3 headers)".to_owned(),
            Level::Names => "any User-Agent, 3 headers: accept host user-agent".to_owned(),
        };
        // Learning: ten shoppers with browsers, and now and then a client with the
        // script's signature (a monitoring check, say).
        for _ in 0..5 {
            shoppers(&mitigation, 10, 20);
            mitigation.record(client(99), "/api/catalog/products", SCRIPT, script);
            assert_eq!(mitigation.close_window(), Vec::new());
        }
        // 250 clients send 20 requests each, as many as the busiest shopper: none stands
        // out, but the window is 25 times the usual, nearly all of one signature. Before
        // them, as many made-up signatures as a window counts: the flood's is still
        // counted.
        shoppers(&mitigation, 10, 20);
        for n in 0..MAX_SIGNATURES as u64 {
            mitigation.record(client(98), "/api/search", looks(1000 + n, 1000 + n), |_| {
                format!("made-up {n}")
            });
        }
        flood_search(&mitigation, 250, SCRIPT, &script);
        let events = mitigation.close_window();
        let [
            Event::FloodStarted { path, clients, .. },
            Event::SignatureHeld {
                path: held_path,
                label,
                requests,
                rate,
            },
        ] = events.as_slice()
        else {
            panic!("{events:?}");
        };
        assert_eq!((path.as_str(), clients.as_slice()), ("/api", &[][..]));
        assert_eq!(
            (held_path.as_str(), label.as_str()),
            ("/api", "flood-bot/1.0 (3 headers)")
        );
        // (Space-Saving counts a signature that took another's place from that one's
        // count: at most a little over.)
        assert!((5000..=5002).contains(requests), "{requests}");
        // The busiest shopper's rate (the signature's own was under one a window): every
        // client of that signature shares it on that path; the browsers do not.
        assert_eq!(*rate, 2);
        let flooder = IpAddr::from([127, 1, 0, 7]);
        let another = IpAddr::from([127, 1, 0, 8]);
        assert!(!held(&mitigation, flooder, "/api/search", SCRIPT));
        assert!(!held(&mitigation, another, "/api/search", SCRIPT));
        assert!(held(&mitigation, flooder, "/api/search", SCRIPT));
        assert!(!held(&mitigation, client(1), "/api/search", BROWSER));
        // A path with priority (the checkout) is spared: its buyers may finish.
        for _ in 0..5 {
            assert!(
                mitigation
                    .check(flooder, "/api/checkout", SCRIPT, || true)
                    .is_ok()
            );
        }
        assert!(!held(&mitigation, flooder, "/static/app.js", SCRIPT));
        assert_eq!(
            mitigation.floods()[0].signatures,
            vec![("flood-bot/1.0 (3 headers)".to_owned(), 2)]
        );
        // Calm windows end the flood and its rule.
        for _ in 0..2 {
            shoppers(&mitigation, 10, 20);
            mitigation.close_window();
        }
        assert_eq!(mitigation.rule_count(), 0);
        assert_eq!(mitigation.signature_rule_count(), 0);
        for _ in 0..5 {
            assert!(!held(&mitigation, flooder, "/api/search", SCRIPT));
        }
    }

    #[test]
    fn a_flood_that_looks_like_the_shoppers_holds_no_signature() {
        let mitigation = Mitigation::new(settings());
        for _ in 0..5 {
            shoppers(&mitigation, 10, 20);
            assert_eq!(mitigation.close_window(), Vec::new());
        }
        // The flood copies the browsers' requests exactly: holding their signature would
        // hold every shopper, so only the flood is reported.
        shoppers(&mitigation, 10, 20);
        flood_search(&mitigation, 250, BROWSER, &browser);
        let events = mitigation.close_window();
        assert!(
            matches!(events.as_slice(), [Event::FloodStarted { .. }]),
            "{events:?}"
        );
        assert_eq!(mitigation.signature_rule_count(), 0);
    }

    #[test]
    fn a_flood_that_makes_up_a_user_agent_for_each_request_is_held_by_its_header_names() {
        let mitigation = Mitigation::new(settings());
        // Shoppers: browsers of two kinds, the same headers, other agents.
        let other_browser = looks(3, 1);
        for _ in 0..5 {
            shoppers(&mitigation, 10, 20);
            for n in 51..=60 {
                for _ in 0..20 {
                    mitigation.record(client(n), "/api/catalog/products", other_browser, browser);
                }
            }
            assert_eq!(mitigation.close_window(), Vec::new());
        }
        // 250 clients, 20 requests each, every one with an agent of its own, and headers
        // no shopper sends.
        let flood = |n: u64| looks(10_000 + n, 7);
        let labels = |level| match level {
            Level::Exact => "made-up agent".to_owned(),
            Level::Names => "any User-Agent, 2 headers: host user-agent".to_owned(),
        };
        shoppers(&mitigation, 10, 20);
        for n in 0..5000u64 {
            let flooder = IpAddr::from([127, 1, (n / 20 / 200) as u8, (n / 20 % 200) as u8]);
            mitigation.record(flooder, "/api/search", flood(n), labels);
        }
        let events = mitigation.close_window();
        let [
            Event::FloodStarted { .. },
            Event::SignatureHeld {
                label, requests, ..
            },
        ] = events.as_slice()
        else {
            panic!("{events:?}");
        };
        assert_eq!(label, "any User-Agent, 2 headers: host user-agent");
        assert!((5000..=5002).contains(requests), "{requests}");
        // A new agent with those headers is held with the rest; the shoppers are not.
        let flooder = IpAddr::from([127, 1, 0, 9]);
        // (Two requests a second, in a burst of two, for all of them.)
        assert!(!held(&mitigation, flooder, "/api/search", flood(99_999)));
        assert!(!held(&mitigation, flooder, "/api/search", flood(99_998)));
        assert!(held(&mitigation, flooder, "/api/search", flood(99_997)));
        assert!(!held(&mitigation, client(1), "/api/search", BROWSER));
        assert!(!held(&mitigation, client(51), "/api/search", other_browser));
        // The flood goes on: its held requests count once, apart, and hold nothing more.
        shoppers(&mitigation, 10, 20);
        for n in 0..5000u64 {
            let flooder = IpAddr::from([127, 1, (n / 20 / 200) as u8, (n / 20 % 200) as u8]);
            mitigation.record(flooder, "/api/search", flood(20_000 + n), labels);
        }
        let events = mitigation.close_window();
        assert!(events.is_empty(), "{events:?}");
        assert_eq!(mitigation.signature_rule_count(), 1);
    }

    #[test]
    fn shoppers_who_send_a_floods_header_names_are_not_held_for_its_agent() {
        let mitigation = Mitigation::new(settings());
        // Shoppers whose requests carry five sets of header names (a cookie or none, a
        // referer or none...), a fifth of the traffic each, one agent.
        let kind = |set: u64| looks(100 + set, 100 + set);
        let learn = |mitigation: &Mitigation| {
            for n in 1..=50u8 {
                for _ in 0..20 {
                    mitigation.record(
                        client(n),
                        "/api/catalog/products",
                        kind(u64::from(n % 5)),
                        browser,
                    );
                }
            }
        };
        for _ in 0..5 {
            learn(&mitigation);
            assert_eq!(mitigation.close_window(), Vec::new());
        }
        // A flood with the first set's header names and an agent of its own: the agent's
        // signature is held, not the names the shoppers of that set send too.
        let flood = looks(999, 100);
        learn(&mitigation);
        flood_search(&mitigation, 500, flood, &|_: Level| "bot".to_owned());
        let events = mitigation.close_window();
        assert!(
            matches!(
                events.as_slice(),
                [Event::FloodStarted { .. }, Event::SignatureHeld { .. }]
            ),
            "{events:?}"
        );
        assert_eq!(mitigation.signature_rule_count(), 1);
        for _ in 0..10 {
            assert!(!held(&mitigation, client(5), "/api/search", kind(0)));
        }
        let flooder = IpAddr::from([127, 1, 0, 9]);
        assert!(!held(&mitigation, flooder, "/api/search", flood));
        assert!(!held(&mitigation, flooder, "/api/search", flood));
        assert!(held(&mitigation, flooder, "/api/search", flood));
    }

    #[test]
    fn a_flood_of_one_agent_with_the_shoppers_headers_is_held_by_its_agent() {
        let mitigation = Mitigation::new(settings());
        for _ in 0..5 {
            shoppers(&mitigation, 10, 20);
            assert_eq!(mitigation.close_window(), Vec::new());
        }
        // The browsers' headers, another agent: the names alone are the shoppers' too,
        // so only the agent's signature is held.
        let copy = looks(5, 1);
        shoppers(&mitigation, 10, 20);
        flood_search(&mitigation, 250, copy, &|_: Level| "copy".to_owned());
        let events = mitigation.close_window();
        assert!(
            matches!(
                events.as_slice(),
                [Event::FloodStarted { .. }, Event::SignatureHeld { .. }]
            ),
            "{events:?}"
        );
        let flooder = IpAddr::from([127, 1, 0, 9]);
        assert!(!held(&mitigation, flooder, "/api/search", copy));
        assert!(!held(&mitigation, flooder, "/api/search", copy));
        assert!(held(&mitigation, flooder, "/api/search", copy));
        for _ in 0..5 {
            assert!(!held(&mitigation, client(1), "/api/search", BROWSER));
        }
    }

    #[test]
    fn signatures_tell_header_sets_and_user_agents_apart() {
        let headers = |pairs: &[(&str, &str)]| {
            let mut map = http::HeaderMap::new();
            for (name, value) in pairs {
                map.append(
                    http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                    value.parse().expect("value"),
                );
            }
            map
        };
        let browser = headers(&[
            ("host", "shop.test"),
            ("user-agent", "Mozilla/5.0"),
            ("accept-language", "en"),
        ]);
        // The same names in another order, with other values: the same signature.
        let reordered = headers(&[
            ("accept-language", "fr"),
            ("user-agent", "Mozilla/5.0"),
            ("host", "shop.example"),
        ]);
        assert_eq!(Signatures::of(&browser), Signatures::of(&reordered));
        // A script copying the browser's agent, without its other headers: others.
        let script = headers(&[("host", "shop.test"), ("user-agent", "Mozilla/5.0")]);
        let (of_browser, of_script) = (Signatures::of(&browser), Signatures::of(&script));
        assert_ne!(of_browser.exact, of_script.exact);
        assert_ne!(of_browser.names, of_script.names);
        // Another agent with the same headers: the same names alone.
        let other_agent = headers(&[
            ("host", "shop.test"),
            ("user-agent", "curl/8.0"),
            ("accept-language", "en"),
        ]);
        let of_other = Signatures::of(&other_agent);
        assert_ne!(of_browser.exact, of_other.exact);
        assert_eq!(of_browser.names, of_other.names);
        for signatures in [of_browser, of_script, of_other] {
            assert_eq!(signatures.exact.level(), Level::Exact);
            assert_eq!(signatures.names.level(), Level::Names);
        }
        assert_eq!(
            Signatures::label(&script, Level::Exact),
            "Mozilla/5.0 (2 headers)"
        );
        assert_eq!(
            Signatures::label(&browser, Level::Names),
            "any User-Agent, 3 headers: accept-language host user-agent"
        );
    }

    #[test]
    fn a_path_is_watched_only_once_learnt_and_keeps_its_place() {
        let mitigation = Mitigation::new(settings());
        for _ in 0..3 {
            shoppers(&mitigation, 10, 20);
            mitigation.close_window();
        }
        // A path first seen now only teaches its baseline, however busy.
        for _ in 0..5000 {
            mitigation.record(client(9), "/static/app.js", BROWSER, browser);
        }
        shoppers(&mitigation, 10, 20);
        assert_eq!(mitigation.close_window(), Vec::new());
        // Made-up paths take every free place in the window, but not the learnt one's.
        for n in 0..MAX_PATHS * 2 {
            mitigation.record(client(9), &format!("/junk-{n}/x"), BROWSER, browser);
        }
        shoppers(&mitigation, 10, 20);
        for _ in 0..2000 {
            mitigation.record(client(201), "/api/cart", BROWSER, browser);
        }
        let events = mitigation.close_window();
        assert!(
            matches!(events.as_slice(), [Event::FloodStarted { path, clients, .. }] if path == "/api" && clients == &[client(201)]),
            "{events:?}"
        );
        // Made-up keys sent once each are not learnt in its place, nor past the
        // learnt keys' limit.
        let baselines = mitigation.baselines();
        assert!(baselines.len() <= MAX_PATHS, "{}", baselines.len());
        assert!(baselines.iter().any(|baseline| baseline.path == "/static"));
    }

    /// Made-up keys that fill every learnt place and are kept alive with a request now
    /// and then give their places to a path busier than they are, which is learnt and
    /// then watched; a flooded key keeps its place whatever comes.
    #[test]
    fn made_up_keys_in_every_place_give_way_to_a_busier_path() {
        let mitigation = Mitigation::new(settings());
        for _ in 0..4 {
            for n in 0..MAX_PATHS {
                mitigation.record(client(9), &format!("/junk-{n}/x"), BROWSER, browser);
            }
            mitigation.close_window();
        }
        assert_eq!(mitigation.baselines().len(), MAX_PATHS);
        // The shop's API comes: busier than any made-up key, it takes a place at once.
        for _ in 0..4 {
            for n in 0..MAX_PATHS {
                mitigation.record(client(9), &format!("/junk-{n}/x"), BROWSER, browser);
            }
            shoppers(&mitigation, 10, 20);
            assert_eq!(mitigation.close_window(), Vec::new());
        }
        let baselines = mitigation.baselines();
        assert_eq!(baselines.len(), MAX_PATHS);
        assert!(
            baselines
                .iter()
                .any(|baseline| baseline.path == "/api" && baseline.learnt),
            "{baselines:?}"
        );
        let junk = |mitigation: &Mitigation| {
            for n in 0..MAX_PATHS {
                mitigation.record(client(9), &format!("/junk-{n}/x"), BROWSER, browser);
            }
        };
        // Watched: a flood of it is held.
        junk(&mitigation);
        shoppers(&mitigation, 10, 20);
        for _ in 0..2000 {
            mitigation.record(client(201), "/api/cart", BROWSER, browser);
        }
        let events = mitigation.close_window();
        assert!(
            matches!(events.as_slice(), [Event::FloodStarted { path, clients, .. }] if path == "/api" && clients == &[client(201)]),
            "{events:?}"
        );
        // A flooded key keeps its place: newcomers busier than every other key take the
        // made-up keys' places, not its own (and past the newcomers a window counts,
        // traffic counts under `*`).
        junk(&mitigation);
        for n in 0..=MAX_NEWCOMERS {
            for _ in 0..5000 {
                mitigation.record(client(9), &format!("/other-{n}/x"), BROWSER, browser);
            }
        }
        for _ in 0..2000 {
            mitigation.record(client(201), "/api/cart", BROWSER, browser);
        }
        mitigation.close_window();
        let baselines = mitigation.baselines();
        assert_eq!(baselines.len(), MAX_PATHS);
        assert!(baselines.iter().any(|baseline| baseline.path == "/api"));
        let others = baselines
            .iter()
            .filter(|baseline| baseline.path.starts_with("/other-"))
            .count();
        // (The made-up key that gave its place to `/api`, sent again, took a newcomer's
        // place first, and gave it to a busier one.)
        assert_eq!(others, MAX_NEWCOMERS);
    }

    /// Made-up keys sent first in a window take the newcomers' places, but a busier
    /// newcomer takes one of theirs; and a learnt key flooded in the window a newcomer
    /// comes keeps its place, and its flood is found.
    #[test]
    fn a_busier_newcomer_gets_in_and_a_flooded_key_stays() {
        let mitigation = Mitigation::new(settings());
        let junk = |mitigation: &Mitigation, each: u32| {
            for n in 0..MAX_PATHS - 1 {
                for _ in 0..each {
                    mitigation.record(client(9), &format!("/junk-{n}/x"), BROWSER, browser);
                }
            }
        };
        for _ in 0..4 {
            junk(&mitigation, 2);
            mitigation.record(client(1), "/quiet/x", BROWSER, browser);
            mitigation.close_window();
        }
        assert_eq!(mitigation.baselines().len(), MAX_PATHS);
        // `/quiet` is the least busy learnt key on average, and flooded now.
        junk(&mitigation, 2);
        for n in 0..MAX_NEWCOMERS * 2 {
            mitigation.record(client(9), &format!("/fresh-{n}/x"), BROWSER, browser);
        }
        for _ in 0..10 {
            mitigation.record(client(2), "/new/x", BROWSER, browser);
        }
        for _ in 0..1000 {
            mitigation.record(client(200), "/quiet/x", BROWSER, browser);
        }
        let events = mitigation.close_window();
        assert!(
            matches!(events.as_slice(), [Event::FloodStarted { path, .. }] if path == "/quiet"),
            "{events:?}"
        );
        let baselines = mitigation.baselines();
        assert!(baselines.iter().any(|baseline| baseline.path == "/quiet"));
        assert!(
            baselines.iter().any(|baseline| baseline.path == "/new"),
            "{baselines:?}"
        );
        assert_eq!(baselines.len(), MAX_PATHS);
    }

    #[test]
    fn nothing_floods_while_learning_nor_below_the_floor() {
        let mitigation = Mitigation::new(MitigationConfig {
            min_requests_per_second: 100,
            ..settings()
        });
        // The first windows only learn, whatever comes.
        for _ in 0..1000 {
            mitigation.record(client(1), "/", BROWSER, browser);
        }
        assert_eq!(mitigation.close_window(), Vec::new());
        for _ in 0..3 {
            shoppers(&mitigation, 1, 1);
            mitigation.close_window();
        }
        // 900 requests in 10 s is a hundred times the baseline but under 100 a second.
        for _ in 0..900 {
            mitigation.record(client(2), "/api/x", BROWSER, browser);
        }
        assert_eq!(mitigation.close_window(), Vec::new());
        assert_eq!(mitigation.rule_count(), 0);
    }
}
