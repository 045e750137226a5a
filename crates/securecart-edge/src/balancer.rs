//! Target groups at run time: their targets, each target's health, and the choice of a
//! target for a request.
//!
//! The choice is a pure function of (cursor, health, targets already tried), tested as a
//! table; the group only owns the atomics it reads.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use http::uri::Authority;

use crate::config::{HealthCheckConfig, TargetGroupConfig};

/// One target.
#[derive(Debug)]
pub struct Target {
    /// Its address.
    pub address: SocketAddr,
    /// Its address as a URI authority, built once.
    pub authority: Authority,
    healthy: AtomicBool,
}

impl Target {
    /// Whether the target receives traffic.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// Marks the target healthy or not; returns whether that changed anything.
    pub fn set_healthy(&self, healthy: bool) -> bool {
        self.healthy.swap(healthy, Ordering::AcqRel) != healthy
    }
}

/// A target group.
#[derive(Debug)]
pub struct TargetGroup {
    /// Its name.
    pub name: String,
    /// Its targets.
    pub targets: Vec<Target>,
    /// Its health check.
    pub health_check: HealthCheckConfig,
    cursor: AtomicUsize,
}

impl TargetGroup {
    /// A group whose targets start unhealthy, as ALB's do, until their health check passes.
    pub fn new(config: &TargetGroupConfig) -> Self {
        Self {
            name: config.name.clone(),
            targets: config
                .targets
                .iter()
                .map(|address| Target {
                    address: *address,
                    authority: Authority::try_from(address.to_string().as_str())
                        .unwrap_or_else(|_| Authority::from_static("invalid")),
                    healthy: AtomicBool::new(false),
                })
                .collect(),
            health_check: config.health_check.clone(),
            cursor: AtomicUsize::new(0),
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
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        choose(
            start,
            self.targets.len(),
            |index| self.targets[index].is_healthy(),
            tried,
        )
    }
}

/// Round robin from `start` over the healthy targets not yet tried. When no target that was
/// not tried is healthy, the group fails open, as ALB does: every target not yet tried is a
/// candidate, because health checks may be wrong and a request that might succeed beats a
/// certain 503.
pub fn choose(
    start: usize,
    len: usize,
    is_healthy: impl Fn(usize) -> bool,
    tried: &[usize],
) -> Option<usize> {
    if len == 0 {
        return None;
    }
    let candidates = || {
        (0..len)
            .map(|offset| (start + offset) % len)
            .filter(|index| !tried.contains(index))
    };
    candidates()
        .find(|index| is_healthy(*index))
        .or_else(|| candidates().next())
}

#[cfg(test)]
mod tests {
    use super::choose;

    #[test]
    fn round_robin_skips_unhealthy_and_tried_targets_and_fails_open() {
        // (start, health of each target, tried, expected)
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
            let got = choose(*start, health.len(), |index| health[index], tried);
            assert_eq!(
                got, *expected,
                "start {start}, health {health:?}, tried {tried:?}"
            );
        }
    }
}
