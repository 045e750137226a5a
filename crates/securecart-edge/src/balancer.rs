//! Target groups at run time: their targets, each target's health and load, and the choice
//! of a target for a request by the group's algorithm: round robin, least outstanding
//! requests, weighted random, or (beyond ALB) the power of two choices over peak EWMA
//! latency, as Finagle and linkerd balance.
//!
//! The choice is a pure function of (algorithm, each target's state, targets already
//! tried, the random draws), tested as a table; the group only owns the atomics it reads.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::uri::Authority;
use rand::Rng;

use crate::config::{HealthCheckConfig, TargetGroupConfig};

/// How a group spreads requests over its targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// Each target in turn.
    #[default]
    RoundRobin,
    /// The target with the fewest requests in flight (ties in turn).
    LeastOutstandingRequests,
    /// A random target, in proportion to its weight (every target's is 1) times its slow
    /// start ramp: a target joining or back from ill health takes a growing share; with
    /// anomaly mitigation, an anomalous target's weight is halved step by step.
    WeightedRandom,
    /// Two random targets; the one whose peak-sensitive latency average times its requests
    /// in flight is lower.
    PeakEwma,
}

/// The most targets a group may have: the choice looks at a fixed-size view of them.
pub const MAX_TARGETS: usize = 64;

/// Up to this many targets, a pick fills a small view of their states.
const FEW_TARGETS: usize = 8;

/// How fast a target's latency average forgets: the time constant of the decay.
const EWMA_DECAY: Duration = Duration::from_secs(10);
/// The latency assumed for a target that has not answered yet.
const DEFAULT_RTT_NANOS: f64 = 1_000_000.0;

/// One target.
#[derive(Debug)]
pub struct Target {
    /// Its address.
    pub address: SocketAddr,
    /// Its address as a URI authority, built once.
    pub authority: Authority,
    /// Its weight for weighted random: 1 for every target (neither the topology nor
    /// registration sets another; ALB's targets have none either).
    pub weight: u32,
    /// Its opaque name in the target stickiness cookie (the address is not shown).
    pub cookie_id: String,
    /// Its keep-alive connections, shared with every target of the same identity.
    pub pool: Arc<crate::pool::TargetPool>,
    healthy: AtomicBool,
    /// Requests in flight and draining; shared with the [`InFlight`] guards that live in
    /// response bodies.
    load: Arc<Load>,
    /// The latency average in nanoseconds, as f64 bits; 0 before the first answer.
    cost_bits: AtomicU64,
    /// When the average was last updated, in nanoseconds since the group was built.
    cost_updated: AtomicU64,
    /// Server errors in a row, for outlier ejection.
    consecutive_errors: AtomicU32,
    /// Until when (milliseconds since [`clock_epoch`]) the target is ejected; 0 if it is not.
    ejected_until: AtomicU64,
    /// Since when (milliseconds since [`clock_epoch`]) the target is healthy.
    healthy_since: AtomicU64,
    /// What its last health check found ([`CheckReport::encode`]).
    report: AtomicU32,
    /// Answers, and of them errors, since the last anomaly assessment.
    answers: AtomicU32,
    errors: AtomicU32,
    /// The answers and errors of earlier assessments, halved at each (f64 bits; written by
    /// the assessment alone).
    recent_answers: AtomicU64,
    recent_errors: AtomicU64,
    /// What the last assessment found ([`Anomaly::encode`]).
    anomaly: AtomicU32,
}

/// What anomaly detection says of a target (ALB's `AnomalyDetection` in
/// DescribeTargetHealth).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Anomaly {
    /// Whether its recent error rate stands out from the other targets'.
    pub anomalous: bool,
    /// How far mitigation has cut its share: halved this many times (0: not mitigated).
    pub level: u8,
}

impl Anomaly {
    fn encode(self) -> u32 {
        (u32::from(self.anomalous) << 8) | u32::from(self.level)
    }

    fn decode(bits: u32) -> Self {
        Self {
            anomalous: bits & 0x100 != 0,
            level: (bits & 0xff) as u8,
        }
    }

    /// Whether mitigation sends the target less than its share.
    pub fn mitigated(self) -> bool {
        self.level > 0
    }
}

/// The most times mitigation halves an anomalous target's share: down to a sixteenth, so
/// that it still answers some requests and its recovery shows.
pub const MAX_MITIGATION: u8 = 4;
/// Anomaly detection needs this many healthy targets, as ALB's.
const MIN_HEALTHY_FOR_ANOMALIES: usize = 3;
/// A target is anomalous only with at least this many recent errors...
const MIN_ANOMALOUS_ERRORS: f64 = 5.0;
/// ...and an error rate at least twice the other healthy targets' plus this much.
const ANOMALOUS_EXCESS: f64 = 0.05;

/// Whether a group of `targets` counts and assesses its targets' errors: it could have
/// the healthy targets anomaly detection needs. (Its counts, its assessments, its
/// mitigation and what a reload keeps of its targets' findings all follow this.)
fn detects_anomalies(targets: usize) -> bool {
    targets >= MIN_HEALTHY_FOR_ANOMALIES
}

/// One target's recent answers, as an anomaly assessment weighs them.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ErrorSample {
    /// Whether it passes its health checks (only healthy targets are assessed).
    pub healthy: bool,
    /// Its recent answers, failed connections and timeouts included.
    pub answers: f64,
    /// Of them, the server errors, failed connections and timeouts.
    pub errors: f64,
}

/// Which targets are anomalous, as a bit per target (the first [`MAX_TARGETS`]): healthy
/// targets, among at least three healthy ones, with at least [`MIN_ANOMALOUS_ERRORS`]
/// recent errors and an error rate at least twice the other healthy targets' together plus
/// five points. Errors common to most targets (a database behind all of them failing,
/// say) raise the others' rate with the target's, so they mark none: a minority of
/// targets can stand out, never a majority.
pub fn anomalous(samples: &[ErrorSample]) -> u64 {
    let samples = &samples[..samples.len().min(MAX_TARGETS)];
    let healthy = samples.iter().filter(|sample| sample.healthy).count();
    if healthy < MIN_HEALTHY_FOR_ANOMALIES {
        return 0;
    }
    let (answers, errors) = samples
        .iter()
        .filter(|sample| sample.healthy)
        .fold((0.0, 0.0), |(answers, errors), sample| {
            (answers + sample.answers, errors + sample.errors)
        });
    let mut found = 0u64;
    for (index, sample) in samples.iter().enumerate() {
        if !sample.healthy || sample.errors < MIN_ANOMALOUS_ERRORS || sample.answers <= 0.0 {
            continue;
        }
        let others_answers = answers - sample.answers;
        let others_rate = if others_answers > 0.0 {
            ((errors - sample.errors) / others_answers).clamp(0.0, 1.0)
        } else {
            0.0
        };
        if sample.errors / sample.answers >= 2.0 * others_rate + ANOMALOUS_EXCESS {
            found |= 1 << index;
        }
    }
    found
}

/// What a target's last health check found, and whether its checks have reached a verdict
/// yet (healthy, or failed as often as the unhealthy threshold): ALB's DescribeTargetHealth
/// says `initial` until they have, and then why a target is unhealthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckReport {
    /// The last check's outcome.
    pub outcome: CheckOutcome,
    /// Whether the checks have reached a verdict since the target was registered.
    pub settled: bool,
}

/// How a health check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckOutcome {
    /// No check has ended yet.
    Unchecked,
    /// The target answered with a status the matcher accepts.
    Passed,
    /// The target answered with a status the matcher does not accept.
    Mismatch(u16),
    /// A gRPC check's call ended with a `grpc-status` the codes do not accept.
    GrpcMismatch(u16),
    /// No whole answer within the check's timeout.
    TimedOut,
    /// The connection failed or the answer was not HTTP.
    Failed,
}

impl CheckReport {
    /// Packed into 32 bits: the verdict bit, the outcome's kind, and a mismatch's status.
    fn encode(self) -> u32 {
        let (kind, status) = match self.outcome {
            CheckOutcome::Unchecked => (0, 0),
            CheckOutcome::Passed => (1, 0),
            CheckOutcome::Mismatch(status) => (2, u32::from(status)),
            CheckOutcome::TimedOut => (3, 0),
            CheckOutcome::Failed => (4, 0),
            CheckOutcome::GrpcMismatch(code) => (5, u32::from(code)),
        };
        (u32::from(self.settled) << 31) | (kind << 16) | status
    }

    fn decode(bits: u32) -> Self {
        let outcome = match (bits >> 16) & 0x7fff {
            1 => CheckOutcome::Passed,
            2 => CheckOutcome::Mismatch((bits & 0xffff) as u16),
            3 => CheckOutcome::TimedOut,
            4 => CheckOutcome::Failed,
            5 => CheckOutcome::GrpcMismatch((bits & 0xffff) as u16),
            _ => CheckOutcome::Unchecked,
        };
        Self {
            outcome,
            settled: bits >> 31 == 1,
        }
    }
}

/// A process-wide origin for the ejection deadlines, which outlive one configuration.
fn clock_epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// FNV-1a: a stable, cheap hash (for names that must not change across restarts).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn now_millis() -> u64 {
    clock_epoch().elapsed().as_millis() as u64
}

impl Target {
    /// A target that has not passed a health check yet.
    pub fn new(address: SocketAddr, pool: Arc<crate::pool::TargetPool>) -> Self {
        Self {
            address,
            authority: Authority::try_from(address.to_string().as_str())
                .unwrap_or_else(|_| Authority::from_static("invalid")),
            weight: 1,
            // A hash of the address: stable across restarts, reveals nothing.
            cookie_id: format!("{:016x}", fnv1a(address.to_string().as_bytes())),
            pool,
            healthy: AtomicBool::new(false),
            load: Arc::default(),
            cost_bits: AtomicU64::new(0),
            cost_updated: AtomicU64::new(0),
            consecutive_errors: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            healthy_since: AtomicU64::new(0),
            report: AtomicU32::new(0),
            answers: AtomicU32::new(0),
            errors: AtomicU32::new(0),
            recent_answers: AtomicU64::new(0),
            recent_errors: AtomicU64::new(0),
            anomaly: AtomicU32::new(0),
        }
    }

    /// What the last anomaly assessment found.
    pub fn anomaly(&self) -> Anomaly {
        Anomaly::decode(self.anomaly.load(Ordering::Relaxed))
    }

    /// What the target's last health check found.
    pub fn check_report(&self) -> CheckReport {
        CheckReport::decode(self.report.load(Ordering::Relaxed))
    }

    /// Records a health check's outcome (by the target's checker).
    pub fn record_check(&self, report: CheckReport) {
        self.report.store(report.encode(), Ordering::Relaxed);
    }

    /// Whether the target is ejected as an outlier now; its health check may not bring it
    /// back before the ejection ends.
    pub fn is_ejected(&self) -> bool {
        self.ejected_until.load(Ordering::Relaxed) > now_millis()
    }

    /// Whether the target receives traffic.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// Marks the target healthy or not; returns whether that changed anything.
    pub fn set_healthy(&self, healthy: bool) -> bool {
        let changed = self.healthy.swap(healthy, Ordering::AcqRel) != healthy;
        if changed && healthy {
            self.healthy_since.store(now_millis(), Ordering::Relaxed);
        }
        changed
    }

    /// How long the target has been healthy.
    fn healthy_for(&self) -> Duration {
        Duration::from_millis(
            now_millis().saturating_sub(self.healthy_since.load(Ordering::Relaxed)),
        )
    }

    /// Requests in flight to the target.
    pub fn outstanding(&self) -> u32 {
        self.load.outstanding.load(Ordering::Relaxed)
    }

    /// Waits until the target has no request in flight (a deregistered target draining, as
    /// ALB's deregistration delay does); from then on, every request that ends wakes it.
    pub async fn drained(&self) {
        self.load.draining.store(true, Ordering::SeqCst);
        loop {
            let idle = self.load.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            // SeqCst on both sides: either the last request sees `draining`, or this load
            // sees its decrement.
            if self.load.outstanding.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }

    /// Cuts off the requests still in flight to the target (the end of a deregistration
    /// delay): those waiting for an answer fail now, response bodies at their next frame.
    pub fn close(&self) {
        self.load.closed.store(true, Ordering::SeqCst);
        self.load.cut.notify_waiters();
    }

    /// Resolves when the target's requests are cut off.
    pub async fn cut_off(&self) {
        // A `Notified` receives every `notify_waiters` from its creation on, polled or not
        // (tokio's documentation), so the flag is read after it is made and it registers
        // once, at its first poll (an `enable` first would take the waiters' lock twice).
        let cut = self.load.cut.notified();
        if !self.load.closed.load(Ordering::SeqCst) {
            cut.await;
        }
    }

    fn cost(&self) -> f64 {
        f64::from_bits(self.cost_bits.load(Ordering::Relaxed))
    }
}

/// The next peak EWMA of latency: a slower answer is taken at once (the peak), a faster one
/// is averaged in with a weight that grows with the time since the last update.
pub fn next_cost(cost: f64, rtt_nanos: f64, elapsed: Duration) -> f64 {
    if cost == 0.0 || rtt_nanos > cost {
        return rtt_nanos;
    }
    let decay = (-elapsed.as_secs_f64() / EWMA_DECAY.as_secs_f64()).exp();
    cost * decay + rtt_nanos * (1.0 - decay)
}

/// What the choice sees of one target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TargetState {
    /// Whether it passes its health checks.
    pub healthy: bool,
    /// Requests in flight.
    pub outstanding: u32,
    /// Peak EWMA latency in nanoseconds (0: unknown).
    pub cost: f64,
    /// Weight for weighted random (the target's own in sixteenths, fewer while anomaly
    /// mitigation cuts its share).
    pub weight: u32,
    /// The share of a full target's traffic it may take now, from 0.05 to 1: below 1
    /// during slow start, after it was registered or became healthy.
    pub ramp: f64,
}

/// The share of traffic a target in slow start may take after `elapsed` of `slow_start`:
/// it grows linearly, from 5% so that the target is tried at all.
pub fn ramp(elapsed: Duration, slow_start: Option<Duration>) -> f64 {
    match slow_start {
        Some(window) if !window.is_zero() => {
            (elapsed.as_secs_f64() / window.as_secs_f64()).clamp(0.05, 1.0)
        }
        _ => 1.0,
    }
}

/// The random inputs of one choice, drawn by the caller so the choice stays pure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Draws {
    /// The round-robin position.
    pub start: usize,
    /// Two random numbers.
    pub random: [u64; 2],
}

/// The target for a request among `states`, skipping `tried`. Healthy targets are preferred;
/// when no untried target is healthy the group fails open, as ALB does, to every untried
/// target (health checks may be wrong, and a request that might succeed beats a certain
/// 503). `None` when every target was tried.
pub fn choose(
    algorithm: Algorithm,
    states: &[TargetState],
    tried: &[usize],
    draws: Draws,
) -> Option<usize> {
    let len = states.len();
    if len == 0 {
        return None;
    }
    let untried = |index: &usize| !tried.contains(index);
    let any_healthy = (0..len).filter(untried).any(|index| states[index].healthy);
    let eligible =
        |index: usize| !tried.contains(&index) && (!any_healthy || states[index].healthy);
    // Candidates in round-robin order from the draw's start.
    let in_turn = (0..len)
        .map(|offset| (draws.start + offset) % len)
        .filter(|index| eligible(*index));
    // In slow start, a target takes a request only if the draw falls within its ramp.
    let fraction = (draws.random[1] % 1_000_000) as f64 / 1_000_000.0;
    match algorithm {
        Algorithm::RoundRobin => {
            let first = in_turn.clone().next();
            in_turn
                .into_iter()
                .find(|index| fraction < states[*index].ramp)
                .or(first)
        }
        Algorithm::LeastOutstandingRequests => in_turn.min_by(|a, b| {
            let load = |index: usize| f64::from(states[index].outstanding + 1) / states[index].ramp;
            load(*a).total_cmp(&load(*b))
        }),
        Algorithm::WeightedRandom => {
            // Weights in thousandths, so that a slow-start ramp scales them.
            let scaled = |index: usize| {
                (f64::from(states[index].weight) * states[index].ramp * 1000.0) as u64
            };
            let total: u64 = (0..len).filter(|index| eligible(*index)).map(scaled).sum();
            if total == 0 {
                return in_turn.into_iter().next();
            }
            let mut left = draws.random[0] % total;
            (0..len).filter(|index| eligible(*index)).find(|index| {
                let weight = scaled(*index);
                if left < weight {
                    true
                } else {
                    left -= weight;
                    false
                }
            })
        }
        Algorithm::PeakEwma => {
            let count = (0..len).filter(|index| eligible(*index)).count();
            let nth = |n: u64| {
                (0..len)
                    .filter(|index| eligible(*index))
                    .nth((n % count as u64) as usize)
            };
            if count == 0 {
                return None;
            }
            let first = nth(draws.random[0])?;
            // The second pick is among the others, so two distinct targets are compared.
            let second = if count > 1 {
                let skip = 1 + draws.random[1] % (count as u64 - 1);
                let position = (0..len)
                    .filter(|index| eligible(*index))
                    .position(|index| index == first)?;
                nth(position as u64 + skip)?
            } else {
                first
            };
            let load = |index: usize| {
                let state = states[index];
                let cost = if state.cost == 0.0 {
                    DEFAULT_RTT_NANOS
                } else {
                    state.cost
                };
                cost * f64::from(state.outstanding + 1) / state.ramp
            };
            Some(if load(second) < load(first) {
                second
            } else {
                first
            })
        }
    }
}

/// A retry budget, as Linkerd's: retries may add at most a fifth to a group's requests, and
/// at least ten retries a second are always allowed, so that a failing target group is not
/// hammered by retries while a quiet one can still retry.
#[derive(Debug)]
pub struct RetryBudget {
    /// Fifths of a retry: each request deposits one, each retry withdraws five.
    fifths: std::sync::atomic::AtomicI64,
    /// The second of the last floor refill, since [`clock_epoch`].
    refilled_second: AtomicU64,
}

/// Retries always allowed per second.
const MIN_RETRIES_PER_SECOND: i64 = 10;
/// The most retries a budget saves up.
const MAX_SAVED_RETRIES: i64 = 100;

impl Default for RetryBudget {
    fn default() -> Self {
        Self {
            fifths: std::sync::atomic::AtomicI64::new(MIN_RETRIES_PER_SECOND * 5),
            refilled_second: AtomicU64::new(0),
        }
    }
}

impl RetryBudget {
    /// Counts a request.
    pub fn deposit(&self) {
        let _ = self
            .fifths
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |fifths| {
                (fifths < MAX_SAVED_RETRIES * 5).then_some(fifths + 1)
            });
    }

    /// Takes one retry from the budget if it has one.
    pub fn withdraw(&self) -> bool {
        self.withdraw_at(now_millis() / 1000)
    }

    fn withdraw_at(&self, second: u64) -> bool {
        // Once a second, the budget is topped up to the floor.
        let last = self.refilled_second.load(Ordering::Relaxed);
        if last != second
            && self
                .refilled_second
                .compare_exchange(last, second, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let _ = self
                .fifths
                .fetch_max(MIN_RETRIES_PER_SECOND * 5, Ordering::Relaxed);
        }
        self.fifths
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |fifths| {
                (fifths >= 5).then_some(fifths - 5)
            })
            .is_ok()
    }
}

/// A target group.
#[derive(Debug)]
pub struct TargetGroup {
    /// Its name.
    pub name: String,
    /// Its targets, shared with the group of the next configuration when they stay in it,
    /// so that a reload keeps their health and load.
    pub targets: Vec<Arc<Target>>,
    /// Its health check.
    pub health_check: HealthCheckConfig,
    /// Its balancing algorithm.
    pub algorithm: Algorithm,
    /// Its passive outlier ejection.
    pub outlier_detection: Option<crate::config::OutlierDetection>,
    /// Its slow start window.
    pub slow_start: Option<Duration>,
    /// How long its stickiness cookie keeps a client on a target, if it is on.
    pub stickiness: Option<Duration>,
    /// The application cookie its stickiness follows, if it follows one.
    pub app_cookie: Option<String>,
    /// How long a target leaving it may finish its requests.
    pub deregistration_delay: Duration,
    /// Its metric handles.
    pub metrics: Option<crate::metrics::GroupMetrics>,
    /// Its retry budget.
    pub retry_budget: RetryBudget,
    /// The protocol spoken to its targets.
    pub protocol: crate::config::UpstreamProtocol,
    /// The `Host` its targets are sent, if not the client's, and as HTTP/2's
    /// `:authority` (parsed once; none if the value is not one, and the target's goes).
    pub host_header: Option<(http::HeaderValue, Option<http::uri::Authority>)>,
    /// Its anomaly detection.
    pub anomaly: crate::config::AnomalyDetection,
    /// How few healthy targets make it fail open.
    pub minimum_healthy: crate::config::MinimumHealthy,
    /// How few healthy targets make it ask DNS to send clients elsewhere, if it counts.
    pub dns_failover: Option<crate::config::MinimumHealthy>,
    /// When (milliseconds since [`clock_epoch`]) the next anomaly assessment is due; shared
    /// with the group of the same name that a reload replaces, whose requests still in
    /// flight count on the same targets, so that one assessment runs per interval.
    assess_at: Arc<AtomicU64>,
    cursor: AtomicUsize,
    epoch: Instant,
}

/// What counting a target's answer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Observed {
    /// It ejected the target (outlier detection).
    pub ejected: bool,
    /// It was the one that ran an anomaly assessment, which may have changed targets'
    /// anomaly results.
    pub assessed: bool,
}

/// A target's requests in flight, and whether it is draining.
#[derive(Debug, Default)]
struct Load {
    outstanding: AtomicU32,
    /// Set while the target drains: the last request to end wakes `idle`.
    draining: AtomicBool,
    idle: tokio::sync::Notify,
    /// Set when its deregistration delay ran out: its requests are cut off, and `cut` wakes
    /// those waiting for an answer.
    closed: AtomicBool,
    cut: tokio::sync::Notify,
}

/// Counts a request in flight to a target until it is dropped: it travels in the response's
/// body, so a request counts until its answer has been sent or abandoned.
#[derive(Debug)]
pub struct InFlight {
    load: Arc<Load>,
}

impl InFlight {
    /// Whether the target's deregistration delay ran out, so this request must end.
    pub fn is_cut_off(&self) -> bool {
        self.load.closed.load(Ordering::Relaxed)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.load.outstanding.fetch_sub(1, Ordering::SeqCst) == 1
            && self.load.draining.load(Ordering::SeqCst)
        {
            self.load.idle.notify_waiters();
        }
    }
}

impl TargetGroup {
    /// A group whose new targets start unhealthy, as ALB's do, until their health check
    /// passes; targets already in `previous` (a group of the same name in the configuration
    /// being replaced) keep their state, unless the group's protocol or TLS settings changed.
    pub fn new(
        config: &TargetGroupConfig,
        previous: Option<&TargetGroup>,
        pools: &crate::pool::Pools,
    ) -> Self {
        let targets: Vec<Arc<Target>> = config
            .targets
            .iter()
            .map(|address| {
                previous
                    .and_then(|group| {
                        group.targets.iter().find(|target| {
                            target.address == *address
                                && target.pool.protocol() == config.protocol
                                && target.pool.tls() == config.tls.as_ref()
                        })
                    })
                    .cloned()
                    .unwrap_or_else(|| {
                        Arc::new(Target::new(
                            *address,
                            pools.for_target(*address, config.protocol, config.tls.as_ref()),
                        ))
                    })
            })
            .collect();
        // A group left with fewer targets than anomaly detection needs assesses none: what
        // its targets were found before is forgotten, not kept for good.
        if !detects_anomalies(targets.len()) {
            for target in &targets {
                target
                    .anomaly
                    .store(Anomaly::default().encode(), Ordering::Relaxed);
            }
        }
        Self {
            name: config.name.clone(),
            targets,
            health_check: config.health_check.clone(),
            algorithm: config.algorithm,
            outlier_detection: config.outlier_detection,
            slow_start: config.slow_start,
            stickiness: config.stickiness,
            app_cookie: config.app_cookie.clone(),
            deregistration_delay: config.deregistration_delay,
            metrics: None,
            retry_budget: RetryBudget::default(),
            protocol: config.protocol,
            host_header: config.host_header.clone().map(|host| {
                let authority = http::uri::Authority::try_from(host.as_bytes()).ok();
                (host, authority)
            }),
            anomaly: config.anomaly,
            minimum_healthy: config.minimum_healthy,
            dns_failover: config.dns_failover,
            assess_at: previous.map_or_else(
                || {
                    Arc::new(AtomicU64::new(
                        now_millis() + config.anomaly.interval.as_millis() as u64,
                    ))
                },
                |group| Arc::clone(&group.assess_at),
            ),
            cursor: AtomicUsize::new(0),
            epoch: Instant::now(),
        }
    }

    /// How many targets are healthy.
    pub fn healthy_count(&self) -> usize {
        self.targets
            .iter()
            .filter(|target| target.is_healthy())
            .count()
    }

    /// The next target for a request that already tried `tried`; `None` when every
    /// target was tried.
    pub fn pick(&self, tried: &[usize]) -> Option<usize> {
        let draws = Draws {
            start: self.cursor.fetch_add(1, Ordering::Relaxed),
            random: if self.slow_start.is_some()
                || matches!(
                    self.algorithm,
                    Algorithm::WeightedRandom | Algorithm::PeakEwma
                ) {
                let mut rng = rand::rng();
                [rng.random(), rng.random()]
            } else {
                [0, 0]
            },
        };
        // Most groups have a few targets: a view of eight is 256 bytes to fill, where one
        // of `MAX_TARGETS` is 2 KiB, written (and through the data cache) on every request.
        if self.targets.len() <= FEW_TARGETS {
            self.pick_among::<FEW_TARGETS>(tried, draws)
        } else {
            self.pick_among::<MAX_TARGETS>(tried, draws)
        }
    }

    /// [`TargetGroup::pick`] with a view of the first `N` targets' states: a fixed size,
    /// since the choice must not allocate.
    fn pick_among<const N: usize>(&self, tried: &[usize], draws: Draws) -> Option<usize> {
        let mut states = [TargetState {
            healthy: false,
            outstanding: 0,
            cost: 0.0,
            weight: 0,
            ramp: 1.0,
        }; N];
        let count = self.targets.len().min(states.len());
        for (state, target) in states.iter_mut().zip(&self.targets) {
            *state = TargetState {
                healthy: target.is_healthy(),
                outstanding: target.outstanding(),
                cost: target.cost(),
                // In sixteenths, so that mitigation can halve it four times.
                weight: target.weight
                    << (MAX_MITIGATION
                        - if self.mitigates() {
                            target.anomaly().level.min(MAX_MITIGATION)
                        } else {
                            0
                        }),
                // Without slow start, no clock read.
                ramp: self
                    .slow_start
                    .map_or(1.0, |_| ramp(target.healthy_for(), self.slow_start)),
            };
        }
        let states = &mut states[..count];
        // Too few healthy targets: the group fails open, every target taken as healthy.
        // (With the default minimum of one, `choose` does that itself when none is.)
        if self.minimum_healthy != crate::config::MinimumHealthy::default()
            && self
                .minimum_healthy
                .fails_open(states.iter().filter(|state| state.healthy).count(), count)
        {
            for state in states.iter_mut() {
                state.healthy = true;
            }
        }
        choose(self.algorithm, states, tried, draws)
    }

    /// Whether the group fails open now: it has targets, and fewer of them healthy than its
    /// minimum, or none.
    pub fn fails_open(&self) -> bool {
        let healthy = self.healthy_count();
        !self.targets.is_empty()
            && (healthy == 0 || self.minimum_healthy.fails_open(healthy, self.targets.len()))
    }

    /// Whether DNS may send clients to this edge as far as this group goes: it meets its
    /// DNS failover minimum, or does not count.
    pub fn dns_healthy(&self) -> bool {
        self.dns_failover
            .is_none_or(|minimum| !minimum.fails_open(self.healthy_count(), self.targets.len()))
    }

    /// The name of the edge's cookie that pins a client to one of the group's targets.
    pub fn stickiness_cookie(&self) -> &'static str {
        if self.app_cookie.is_some() {
            crate::actions::APP_STICKINESS_COOKIE
        } else {
            crate::actions::TARGET_STICKINESS_COOKIE
        }
    }

    /// The healthy target a request's stickiness cookie names, if the group is sticky
    /// (only then is the cookie read).
    pub fn sticky_target(&self, request: &http::HeaderMap) -> Option<usize> {
        self.stickiness?;
        let cookie_id = securecart_cache::key::cookie(request, self.stickiness_cookie())?;
        self.targets.iter().position(|target| {
            target.cookie_id == cookie_id && target.is_healthy() && !target.is_ejected()
        })
    }

    /// Counts a request in flight to a target.
    pub fn start_request(&self, index: usize) -> InFlight {
        let target = &self.targets[index];
        target.load.outstanding.fetch_add(1, Ordering::Relaxed);
        InFlight {
            load: Arc::clone(&target.load),
        }
    }

    /// Whether the group sends anomalous targets less: a weighted random one with
    /// mitigation on, of targets enough to tell anomalies.
    pub fn mitigates(&self) -> bool {
        self.anomaly.mitigation
            && self.algorithm == Algorithm::WeightedRandom
            && detects_anomalies(self.targets.len())
    }

    /// Counts a target's answer (or failed connection or timeout, as `None`), at `at`, for
    /// outlier ejection and anomaly detection; runs the anomaly assessment when it is due.
    pub fn observe_outcome(&self, index: usize, status: Option<u16>, at: Instant) -> Observed {
        let target = &self.targets[index];
        let error = status.is_none_or(|status| status >= 500);
        // A group of fewer targets than anomaly detection needs keeps no counts.
        let detects = detects_anomalies(self.targets.len());
        if detects {
            target.answers.fetch_add(1, Ordering::Relaxed);
            if error {
                target.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        Observed {
            ejected: self.eject_if_due(target, error),
            assessed: detects && self.assess_if_due(at),
        }
    }

    /// Outlier ejection: whether this answer ejected the target.
    fn eject_if_due(&self, target: &Target, error: bool) -> bool {
        let Some(detection) = self.outlier_detection else {
            return false;
        };
        if !error {
            target.consecutive_errors.store(0, Ordering::Relaxed);
            return false;
        }
        let errors = target.consecutive_errors.fetch_add(1, Ordering::Relaxed) + 1;
        if errors < detection.consecutive_errors.max(1) {
            return false;
        }
        target.consecutive_errors.store(0, Ordering::Relaxed);
        target.ejected_until.store(
            now_millis() + detection.ejection.as_millis() as u64,
            Ordering::Relaxed,
        );
        target.set_healthy(false);
        true
    }

    /// Runs the anomaly assessment if its time came by `at` and no other thread took it.
    fn assess_if_due(&self, at: Instant) -> bool {
        let now = at.saturating_duration_since(clock_epoch()).as_millis() as u64;
        let due = self.assess_at.load(Ordering::Relaxed);
        let interval = (self.anomaly.interval.as_millis() as u64).max(1);
        if now < due
            || self
                .assess_at
                .compare_exchange(due, now + interval, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return false;
        }
        // The last assessment ran an interval before `due`; a quiet spell of several
        // intervals fades what came before it as much as several assessments would.
        let since = now.saturating_sub(due.saturating_sub(interval));
        self.assess(since as f64 / interval as f64);
        true
    }

    /// Weighs each target's answers since the last assessment, `intervals` ago, and earlier
    /// ones halved for each interval since, finds the anomalous targets, and moves each
    /// one's mitigation a step: one more halving of its share if it is anomalous and the
    /// group mitigates, one less if not.
    fn assess(&self, intervals: f64) {
        let fade = 0.5f64.powf(intervals.max(1.0));
        let mut samples = [ErrorSample::default(); MAX_TARGETS];
        for (sample, target) in samples.iter_mut().zip(&self.targets) {
            let decayed = |recent: &AtomicU64, new: &AtomicU32| {
                let value = f64::from_bits(recent.load(Ordering::Relaxed)) * fade
                    + f64::from(new.swap(0, Ordering::Relaxed));
                recent.store(value.to_bits(), Ordering::Relaxed);
                value
            };
            *sample = ErrorSample {
                healthy: target.is_healthy(),
                answers: decayed(&target.recent_answers, &target.answers),
                errors: decayed(&target.recent_errors, &target.errors),
            };
        }
        let count = self.targets.len().min(MAX_TARGETS);
        let found = anomalous(&samples[..count]);
        for (index, target) in self.targets.iter().take(count).enumerate() {
            let before = target.anomaly();
            let anomalous = found & (1 << index) != 0;
            let level = match (self.mitigates(), anomalous) {
                (true, true) => (before.level + 1).min(MAX_MITIGATION),
                (true, false) => before.level.saturating_sub(1),
                (false, _) => 0,
            };
            let after = Anomaly { anomalous, level };
            target.anomaly.store(after.encode(), Ordering::Relaxed);
            if after.anomalous != before.anomalous {
                if anomalous {
                    tracing::warn!(group = %self.name, target = %target.address, errors = samples[index].errors, answers = samples[index].answers, "target anomalous: its error rate stands out from the other targets'");
                } else {
                    tracing::info!(group = %self.name, target = %target.address, "target no longer anomalous");
                }
            }
        }
    }

    /// How many targets are anomalous, and how many of them are mitigated.
    pub fn anomaly_counts(&self) -> (usize, usize) {
        self.targets
            .iter()
            .fold((0, 0), |(anomalous, mitigated), target| {
                let anomaly = target.anomaly();
                (
                    anomalous + usize::from(anomaly.anomalous),
                    mitigated + usize::from(anomaly.mitigated() && self.mitigates()),
                )
            })
    }

    /// Feeds a target's latency average with the time a request took to its response
    /// headers. Only the peak EWMA algorithm reads the average, so other groups keep none
    /// (and spare the clock read and the exponential). A group that a reload switches to
    /// it starts from the averages its targets had (a target kept across the reload keeps
    /// its own, however old: the first answers after a long pause weigh in fully), or, for
    /// a target never averaged, from its first answer.
    pub fn observe_latency(&self, index: usize, rtt: Duration) {
        if self.algorithm != Algorithm::PeakEwma {
            return;
        }
        let target = &self.targets[index];
        let now = self.epoch.elapsed().as_nanos() as u64;
        let last = target.cost_updated.swap(now, Ordering::Relaxed);
        let elapsed = Duration::from_nanos(now.saturating_sub(last));
        let cost = next_cost(target.cost(), rtt.as_nanos() as f64, elapsed);
        target.cost_bits.store(cost.to_bits(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use super::{Algorithm, Draws, TargetState, choose, next_cost};

    fn state(healthy: bool, outstanding: u32, cost: f64, weight: u32) -> TargetState {
        TargetState {
            healthy,
            outstanding,
            cost,
            weight,
            ramp: 1.0,
        }
    }

    #[test]
    fn slow_start_ramps_a_new_targets_share_up() {
        use super::ramp;
        let window = Some(Duration::from_secs(100));
        assert_eq!(ramp(Duration::from_secs(0), window), 0.05);
        assert_eq!(ramp(Duration::from_secs(50), window), 0.5);
        assert_eq!(ramp(Duration::from_secs(500), window), 1.0);
        assert_eq!(ramp(Duration::from_secs(0), None), 1.0);
        let new = TargetState {
            ramp: 0.25,
            ..state(true, 0, 0.0, 1)
        };
        let old = state(true, 0, 0.0, 1);
        // Round robin: the new target takes its turn only when the draw falls in its ramp.
        for (fraction, expected) in [(100_000, 0), (240_000, 0), (250_000, 1), (900_000, 1)] {
            assert_eq!(
                choose(
                    Algorithm::RoundRobin,
                    &[new, old],
                    &[],
                    draws(0, 0, fraction)
                ),
                Some(expected),
                "{fraction}"
            );
        }
        // Least outstanding: at a quarter ramp, 1 request in flight on the old target still
        // beats none on the new one (2 < 1 / 0.25).
        let busy_old = state(true, 1, 0.0, 1);
        assert_eq!(
            choose(
                Algorithm::LeastOutstandingRequests,
                &[new, busy_old],
                &[],
                draws(0, 0, 0)
            ),
            Some(1)
        );
        // Weighted random: weights 1 × 0.25 and 1 → draws below 250 of 1250 go to the new one.
        for (draw, expected) in [(0, 0), (249, 0), (250, 1), (1249, 1)] {
            assert_eq!(
                choose(
                    Algorithm::WeightedRandom,
                    &[new, old],
                    &[],
                    draws(0, draw, 0)
                ),
                Some(expected),
                "{draw}"
            );
        }
    }

    fn draws(start: usize, first: u64, second: u64) -> Draws {
        Draws {
            start,
            random: [first, second],
        }
    }

    #[test]
    fn round_robin_skips_unhealthy_and_tried_targets_and_fails_open() {
        type Case<'a> = (usize, &'a [bool], &'a [usize], Option<usize>);
        let cases: &[Case<'_>] = &[
            (0, &[true, true, true], &[], Some(0)),
            (1, &[true, true, true], &[], Some(1)),
            (5, &[true, true, true], &[], Some(2)),
            (0, &[false, true, true], &[], Some(1)),
            (2, &[true, true, false], &[], Some(0)),
            (0, &[true, true, true], &[0], Some(1)),
            (0, &[true, false, true], &[0], Some(2)),
            // Every healthy target was tried: fail open to the untried unhealthy one.
            (0, &[true, false], &[0], Some(1)),
            // Nothing healthy at all: fail open in round-robin order.
            (1, &[false, false, false], &[], Some(1)),
            (0, &[true, true], &[0, 1], None),
            (0, &[], &[], None),
        ];
        for (start, health, tried, expected) in cases {
            let states: Vec<_> = health
                .iter()
                .map(|healthy| state(*healthy, 0, 0.0, 1))
                .collect();
            let got = choose(Algorithm::RoundRobin, &states, tried, draws(*start, 0, 0));
            assert_eq!(
                got, *expected,
                "start {start}, health {health:?}, tried {tried:?}"
            );
        }
    }

    #[test]
    fn least_outstanding_requests_picks_the_least_busy_healthy_target() {
        let states = [
            state(true, 5, 0.0, 1),
            state(true, 2, 0.0, 1),
            state(false, 0, 0.0, 1),
            state(true, 2, 0.0, 1),
        ];
        // (start, tried, expected): ties go to the first in turn from the start.
        let cases: &[(usize, &[usize], Option<usize>)] = &[
            (0, &[], Some(1)),
            (2, &[], Some(3)),
            (0, &[1], Some(3)),
            (0, &[1, 3], Some(0)),
            (0, &[0, 1, 3], Some(2)),
        ];
        for (start, tried, expected) in cases {
            assert_eq!(
                choose(
                    Algorithm::LeastOutstandingRequests,
                    &states,
                    tried,
                    draws(*start, 0, 0)
                ),
                *expected,
                "start {start}, tried {tried:?}"
            );
        }
    }

    #[test]
    fn weighted_random_follows_the_weights_of_healthy_targets() {
        let states = [
            state(true, 0, 0.0, 1),
            state(true, 0, 0.0, 3),
            state(false, 0, 0.0, 100),
        ];
        // Total healthy weight 4 (in thousandths, 4000): draws below 1000 go to the first target.
        for (draw, expected) in [(0, 0), (999, 0), (1000, 1), (3999, 1), (4000, 0), (7000, 1)] {
            assert_eq!(
                choose(Algorithm::WeightedRandom, &states, &[], draws(0, draw, 0)),
                Some(expected),
                "draw {draw}"
            );
        }
        assert_eq!(
            choose(Algorithm::WeightedRandom, &states, &[1], draws(0, 3000, 0)),
            Some(0)
        );
    }

    #[test]
    fn peak_ewma_prefers_the_faster_of_two_and_weighs_in_requests_in_flight() {
        let fast = 1_000_000.0;
        let slow = 9_000_000.0;
        // (states, draws, expected)
        let cases: Vec<(Vec<TargetState>, Draws, Option<usize>)> = vec![
            // Draws pick targets 0 and 1: the faster one wins whichever is drawn first.
            (
                vec![state(true, 0, slow, 1), state(true, 0, fast, 1)],
                draws(0, 0, 0),
                Some(1),
            ),
            (
                vec![state(true, 0, slow, 1), state(true, 0, fast, 1)],
                draws(0, 1, 0),
                Some(1),
            ),
            // Busy enough, the fast target loses: 1 ms × 10 in flight > 9 ms × 1.
            (
                vec![state(true, 0, slow, 1), state(true, 9, fast, 1)],
                draws(0, 0, 0),
                Some(0),
            ),
            // An unknown latency counts as 1 ms.
            (
                vec![state(true, 0, 0.0, 1), state(true, 0, slow, 1)],
                draws(0, 1, 0),
                Some(0),
            ),
            // An unhealthy target is never compared while a healthy one is left.
            (
                vec![state(false, 0, fast, 1), state(true, 0, slow, 1)],
                draws(0, 0, 0),
                Some(1),
            ),
            (vec![state(true, 0, fast, 1)], draws(0, 5, 7), Some(0)),
        ];
        for (states, draws, expected) in cases {
            assert_eq!(
                choose(Algorithm::PeakEwma, &states, &[], draws),
                expected,
                "{states:?} {draws:?}"
            );
        }
    }

    fn group_config(algorithm: Algorithm) -> crate::config::TargetGroupConfig {
        use crate::config::{HealthCheckConfig, TargetGroupConfig};
        let health_check = HealthCheckConfig {
            protocol: None,
            path: "/".to_owned(),
            port: None,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            healthy_threshold: 1,
            unhealthy_threshold: 1,
            matcher: vec![200..=299],
            grpc_codes: None,
        };
        let targets = vec!["127.0.0.1:1".parse().expect("address")];
        TargetGroupConfig {
            tls: None,
            host_header: None,
            algorithm,
            ..TargetGroupConfig::new("g", targets, health_check)
        }
    }

    #[test]
    fn only_a_peak_ewma_group_keeps_latency_averages() {
        let pools = crate::pool::Pools::new(Default::default());
        for (algorithm, kept) in [
            (Algorithm::PeakEwma, true),
            (Algorithm::RoundRobin, false),
            (Algorithm::LeastOutstandingRequests, false),
            (Algorithm::WeightedRandom, false),
        ] {
            let group = super::TargetGroup::new(&group_config(algorithm), None, &pools);
            group.observe_latency(0, Duration::from_millis(3));
            let cost = group.targets[0].cost();
            assert_eq!(cost == 3e6, kept, "{algorithm:?}: {cost}");
        }
    }

    #[test]
    fn a_check_report_is_read_back_as_it_was_recorded() {
        use super::{CheckOutcome, CheckReport};
        for outcome in [
            CheckOutcome::Unchecked,
            CheckOutcome::Passed,
            CheckOutcome::Mismatch(100),
            CheckOutcome::Mismatch(599),
            CheckOutcome::GrpcMismatch(14),
            CheckOutcome::TimedOut,
            CheckOutcome::Failed,
        ] {
            for settled in [false, true] {
                let report = CheckReport { outcome, settled };
                assert_eq!(CheckReport::decode(report.encode()), report);
            }
        }
    }

    #[test]
    fn consecutive_server_errors_eject_a_target() {
        use crate::config::{OutlierDetection, TargetGroupConfig};
        let group = super::TargetGroup::new(
            &TargetGroupConfig {
                tls: None,
                host_header: None,
                outlier_detection: Some(OutlierDetection {
                    consecutive_errors: 2,
                    ejection: Duration::from_secs(60),
                }),
                ..group_config(Algorithm::RoundRobin)
            },
            None,
            &crate::pool::Pools::new(Default::default()),
        );
        group.targets[0].set_healthy(true);
        // (status, ejected by this answer): a success resets the count; a refused
        // connection (None) counts as an error.
        let steps = [
            (Some(500), false),
            (Some(200), false),
            (Some(503), false),
            (None, true),
        ];
        for (step, (status, ejected)) in steps.into_iter().enumerate() {
            assert_eq!(
                group.observe_outcome(0, status, std::time::Instant::now()),
                super::Observed {
                    ejected,
                    assessed: false
                },
                "step {step}"
            );
        }
        assert!(group.targets[0].is_ejected());
        assert!(!group.targets[0].is_healthy());
    }

    #[test]
    fn anomalous_targets_are_healthy_ones_whose_errors_stand_out() {
        use super::{ErrorSample, anomalous};
        let sample = |errors: f64, answers: f64| ErrorSample {
            healthy: true,
            answers,
            errors,
        };
        let unhealthy = |errors: f64, answers: f64| ErrorSample {
            healthy: false,
            ..sample(errors, answers)
        };
        let cases: Vec<(Vec<ErrorSample>, u64)> = vec![
            // One target in ten of its answers fails, the others none.
            (
                vec![sample(10.0, 100.0), sample(0.0, 100.0), sample(0.0, 100.0)],
                0b001,
            ),
            // Any target may be the one.
            (
                vec![sample(0.0, 100.0), sample(0.0, 100.0), sample(10.0, 100.0)],
                0b100,
            ),
            // Too few errors to tell: four of a hundred.
            (
                vec![sample(4.0, 100.0), sample(0.0, 100.0), sample(0.0, 100.0)],
                0,
            ),
            // A few answers all failing is enough: a mitigated target's.
            (
                vec![sample(6.0, 6.0), sample(0.0, 100.0), sample(0.0, 100.0)],
                0b001,
            ),
            // 10% against the others' 5%: not twice theirs plus five points (15%).
            (
                vec![sample(10.0, 100.0), sample(5.0, 100.0), sample(5.0, 100.0)],
                0,
            ),
            // 30% against 5%.
            (
                vec![sample(30.0, 100.0), sample(5.0, 100.0), sample(5.0, 100.0)],
                0b001,
            ),
            // Errors common to the group mark no one.
            (
                vec![
                    sample(50.0, 100.0),
                    sample(40.0, 100.0),
                    sample(45.0, 100.0),
                ],
                0,
            ),
            // Two bad targets of five both stand out.
            (
                vec![
                    sample(50.0, 100.0),
                    sample(0.0, 100.0),
                    sample(50.0, 100.0),
                    sample(0.0, 100.0),
                    sample(0.0, 100.0),
                ],
                0b00101,
            ),
            // Three of five do not: the others' rate is theirs too.
            (
                vec![
                    sample(50.0, 100.0),
                    sample(50.0, 100.0),
                    sample(50.0, 100.0),
                    sample(0.0, 100.0),
                    sample(0.0, 100.0),
                ],
                0,
            ),
            // Two healthy targets are too few to compare.
            (vec![sample(50.0, 50.0), sample(0.0, 100.0)], 0),
            (
                vec![sample(50.0, 50.0), sample(0.0, 100.0), unhealthy(0.0, 0.0)],
                0,
            ),
            // An unhealthy target is neither assessed nor among the others.
            (
                vec![
                    sample(10.0, 100.0),
                    sample(0.0, 100.0),
                    sample(0.0, 100.0),
                    unhealthy(100.0, 100.0),
                ],
                0b0001,
            ),
            (
                vec![
                    sample(0.0, 100.0),
                    sample(0.0, 100.0),
                    sample(0.0, 100.0),
                    unhealthy(100.0, 100.0),
                ],
                0,
            ),
            // No answers, no verdict.
            (
                vec![sample(0.0, 0.0), sample(0.0, 0.0), sample(0.0, 0.0)],
                0,
            ),
        ];
        for (samples, expected) in cases {
            assert_eq!(anomalous(&samples), expected, "{samples:?}");
        }
    }

    /// A weighted random group of four targets, the first of them anomalous while
    /// `failing`: `rounds` assessments 10 s apart, each after 20 answers from each target.
    fn assess_rounds(group: &super::TargetGroup, start: u32, rounds: u32, failing: bool) {
        let base = std::time::Instant::now();
        for round in start..start + rounds {
            let at = base + Duration::from_secs(10) * (round + 1);
            for index in 0..group.targets.len() {
                for answer in 0..20 {
                    let status = if failing && index == 0 && answer % 2 == 0 {
                        503
                    } else {
                        200
                    };
                    group.observe_outcome(index, Some(status), base);
                }
            }
            // The answer whose time makes the assessment due.
            assert!(group.observe_outcome(1, Some(200), at).assessed);
        }
    }

    /// The share of 16,000 picks that went to the first target.
    fn first_share(group: &super::TargetGroup) -> f64 {
        let picks = 16_000;
        f64::from((0..picks).filter(|_| group.pick(&[]) == Some(0)).count() as u32)
            / f64::from(picks)
    }

    #[test]
    fn a_mitigating_group_halves_an_anomalous_targets_share_and_gives_it_back() {
        use super::{Anomaly, MAX_MITIGATION};
        use crate::config::{AnomalyDetection, TargetGroupConfig};
        let targets: Vec<_> = (1..=4)
            .map(|port| std::net::SocketAddr::from(([127, 0, 0, 1], port)))
            .collect();
        let config = |mitigation: bool| TargetGroupConfig {
            targets: targets.clone(),
            anomaly: AnomalyDetection {
                mitigation,
                ..AnomalyDetection::default()
            },
            ..group_config(Algorithm::WeightedRandom)
        };
        let pools = crate::pool::Pools::new(Default::default());
        let group = super::TargetGroup::new(&config(true), None, &pools);
        for target in &group.targets {
            target.set_healthy(true);
        }
        let share = first_share(&group);
        assert!((0.2..0.3).contains(&share), "a quarter at first: {share}");
        // Each assessment that finds it anomalous halves its share, down to a sixteenth.
        for round in 0..6 {
            assess_rounds(&group, round, 1, true);
            let level = (round as u8 + 1).min(MAX_MITIGATION);
            assert_eq!(
                group.targets[0].anomaly(),
                Anomaly {
                    anomalous: true,
                    level
                },
                "round {round}"
            );
            assert_eq!(group.anomaly_counts(), (1, 1));
        }
        // Weights of 1/16 against three of 1: about 2%.
        let share = first_share(&group);
        assert!(share < 0.05, "mitigated: {share}");
        // A reload that leaves two targets, too few to compare, forgets what was found:
        // the target would otherwise stay mitigated for good.
        let smaller = TargetGroupConfig {
            targets: targets[..2].to_vec(),
            ..config(true)
        };
        let two = super::TargetGroup::new(&smaller, Some(&group), &pools);
        assert!(Arc::ptr_eq(&two.targets[0], &group.targets[0]));
        assert_eq!(two.targets[0].anomaly(), Anomaly::default());
        assert!(!two.mitigates());
        group.targets[0].anomaly.store(
            Anomaly {
                anomalous: true,
                level: MAX_MITIGATION,
            }
            .encode(),
            Ordering::Relaxed,
        );
        // It stops failing: its decaying errors keep it anomalous for one assessment more
        // (half of the last ones, 10 of 40 answers), and then each gives back a halving.
        let mut levels = Vec::new();
        for round in 6..13 {
            assess_rounds(&group, round, 1, false);
            let anomaly = group.targets[0].anomaly();
            levels.push((anomaly.anomalous, anomaly.level));
        }
        assert_eq!(
            levels,
            [
                (true, 4),
                (false, 3),
                (false, 2),
                (false, 1),
                (false, 0),
                (false, 0),
                (false, 0)
            ]
        );
        let share = first_share(&group);
        assert!((0.2..0.3).contains(&share), "a quarter again: {share}");
        assert_eq!(group.anomaly_counts(), (0, 0));
        // Without mitigation (ALB's default), the anomaly is found and the share kept.
        let group = super::TargetGroup::new(&config(false), None, &pools);
        for target in &group.targets {
            target.set_healthy(true);
        }
        assess_rounds(&group, 0, 3, true);
        assert_eq!(
            group.targets[0].anomaly(),
            Anomaly {
                anomalous: true,
                level: 0
            }
        );
        assert_eq!(group.anomaly_counts(), (1, 0));
        let share = first_share(&group);
        assert!((0.2..0.3).contains(&share), "not mitigated: {share}");
    }

    #[test]
    fn a_quiet_spell_fades_errors_as_much_as_the_assessments_it_missed() {
        use crate::config::{AnomalyDetection, TargetGroupConfig};
        let config = TargetGroupConfig {
            targets: (1..=4)
                .map(|port| std::net::SocketAddr::from(([127, 0, 0, 1], port)))
                .collect(),
            anomaly: AnomalyDetection {
                mitigation: true,
                ..AnomalyDetection::default()
            },
            ..group_config(Algorithm::WeightedRandom)
        };
        let group =
            super::TargetGroup::new(&config, None, &crate::pool::Pools::new(Default::default()));
        for target in &group.targets {
            target.set_healthy(true);
        }
        assess_rounds(&group, 0, 3, true);
        assert!(group.targets[0].anomaly().anomalous);
        // An answer eleven intervals after the last assessment: what came before has faded
        // by 2^11, not by the one halving of a single assessment (which would leave the
        // target anomalous, with 8.75 errors in 17.5 answers).
        let later = std::time::Instant::now() + Duration::from_secs(140);
        assert!(group.observe_outcome(1, Some(200), later).assessed);
        assert!(!group.targets[0].anomaly().anomalous);
    }

    #[test]
    fn the_retry_budget_allows_a_fifth_more_requests_and_a_floor_per_second() {
        let budget = super::RetryBudget::default();
        // The floor: ten retries in the first second, then none.
        assert_eq!((0..12).filter(|_| budget.withdraw_at(1)).count(), 10);
        // 100 requests earn 20 retries.
        for _ in 0..100 {
            budget.deposit();
        }
        assert_eq!((0..25).filter(|_| budget.withdraw_at(1)).count(), 20);
        // A new second tops the budget up to the floor again.
        assert_eq!((0..12).filter(|_| budget.withdraw_at(2)).count(), 10);
    }

    #[test]
    fn the_latency_average_takes_peaks_at_once_and_decays_toward_faster_answers() {
        assert_eq!(next_cost(0.0, 5.0, Duration::ZERO), 5.0);
        assert_eq!(
            next_cost(5.0, 50.0, Duration::from_millis(1)),
            50.0,
            "a peak is taken at once"
        );
        let soon = next_cost(50.0, 5.0, Duration::from_millis(100));
        let later = next_cost(50.0, 5.0, Duration::from_secs(30));
        assert!(soon > 45.0 && soon < 50.0, "{soon}");
        assert!(later < 8.0, "{later}");
    }
}
