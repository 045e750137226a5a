//! The edge's metrics, named `securecart_edge_*`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use securecart_telemetry::HttpMetrics;

use crate::balancer::TargetGroup;

/// Labels naming a target group.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    /// The target group.
    pub target_group: String,
}

/// Labels of a target's answers: the group and the status class.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetResponseLabels {
    /// The target group.
    pub target_group: String,
    /// `2xx`, `3xx`, `4xx` or `5xx`.
    pub class: &'static str,
}

/// Labels of the edge's own answers (ALB's `HTTPCode_ELB_*`): the reason.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EdgeErrorLabels {
    /// The error's code, such as `target_unreachable`.
    pub code: &'static str,
    /// The rule whose request it was (`none` before any rule, `shield` or `waf` for those
    /// stages' refusals).
    pub route: String,
    /// The target group the request was for, if any (empty otherwise).
    pub target_group: String,
}

/// Labels of a cache behaviour's answers: the behaviour and what the cache did.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    /// The cache behaviour.
    pub behavior: String,
    /// `hit`, `miss`, `stale`, `revalidated` or `bypass`.
    pub result: &'static str,
}

/// Labels of a web ACL match: the ACL, the rule and what it did.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WafLabels {
    /// The web ACL's name (`edge` for `[edge.waf]` and quick mode's).
    pub web_acl: String,
    /// The rule's id (`oversize` for a body past the limit that blocks).
    pub rule: String,
    /// `block`, `count` or `allow`.
    pub action: &'static str,
}

/// Labels of a request that does not comply with RFC 9112 (desync mitigation).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DesyncLabels {
    /// The listener.
    pub listener: String,
    /// `Acceptable`, `Ambiguous` or `Severe`.
    pub classification: &'static str,
    /// ALB's reason code, such as `BothTeClPresent`.
    pub reason: &'static str,
}

/// A listener's counters of requests that do not comply with RFC 9112, by reason.
#[derive(Debug, Clone, Default)]
pub struct DesyncCounters(std::sync::Arc<[Counter]>);

impl DesyncCounters {
    /// Counts a request that does not comply.
    pub fn count(&self, reason: crate::guard::Reason) {
        if let Some(counter) = self.0.get(reason as usize) {
            counter.inc();
        }
    }
}

/// Labels naming a cache behaviour.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BehaviorLabels {
    /// The cache behaviour.
    pub behavior: String,
}

/// A cache behaviour's metric handles, taken once when the behaviour is built.
#[derive(Debug, Clone)]
pub struct CacheMetrics {
    /// Answered from a fresh stored response (or a stale one the request accepted).
    pub hit: Counter,
    /// Fetched from the origin: nothing stored matched.
    pub miss: Counter,
    /// Answered from a stale stored response (stale-while-revalidate, or the origin
    /// failing).
    pub stale: Counter,
    /// Answered from a stored response the origin confirmed with 304.
    pub revalidated: Counter,
    /// Passed through without the cache (methods other than GET and HEAD, bodies,
    /// upgrades).
    pub bypass: Counter,
    /// Requests that waited for another's fetch of the same object.
    pub coalesced: Counter,
    /// Fetches that the origin failed and that went to the behaviour's secondary group
    /// (origin failover).
    pub failovers: Counter,
    /// Body bytes answered from stored responses.
    pub bytes_served: Counter,
    /// Hits over every answer the cache gave (hits, misses, stale and revalidated
    /// answers) since the start.
    pub hit_ratio: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl CacheMetrics {
    /// Counts one answer of the cache and updates the hit ratio.
    pub fn answered(&self, counter: &Counter) {
        counter.inc();
        let hits = self.hit.get();
        let all = hits + self.miss.get() + self.stale.get() + self.revalidated.get();
        if all > 0 {
            self.hit_ratio.set(hits as f64 / all as f64);
        }
    }
}

/// A group's metric handles, taken once when the group is built so that recording a
/// request allocates nothing.
#[derive(Debug, Clone)]
pub struct GroupMetrics {
    /// Seconds from sending a request to the target's response headers.
    pub response_time: prometheus_client::metrics::histogram::Histogram,
    /// Target answers by status class: 1xx and 2xx, 3xx, 4xx, 5xx.
    pub responses: [Counter; 4],
}

impl GroupMetrics {
    /// Records one answer of a target.
    pub fn record(&self, status: u16, seconds: f64) {
        self.response_time.observe(seconds);
        let class = match status {
            0..=299 => 0,
            300..=399 => 1,
            400..=499 => 2,
            _ => 3,
        };
        self.responses[class].inc();
    }
}

/// Every metric of the edge.
#[derive(Debug, Clone)]
pub struct EdgeMetrics {
    /// Requests by route and status, and their latency.
    pub http: HttpMetrics,
    healthy_targets: Family<GroupLabels, Gauge>,
    unhealthy_targets: Family<GroupLabels, Gauge>,
    anomalous_targets: Family<GroupLabels, Gauge>,
    mitigated_targets: Family<GroupLabels, Gauge>,
    retries: Family<GroupLabels, Counter>,
    target_response_time: Family<GroupLabels, prometheus_client::metrics::histogram::Histogram>,
    target_responses: Family<TargetResponseLabels, Counter>,
    edge_errors: Family<EdgeErrorLabels, Counter>,
    waf_matches: Family<WafLabels, Counter>,
    non_compliant: Family<DesyncLabels, Counter>,
    cache_requests: Family<CacheLabels, Counter>,
    cache_coalesced: Family<BehaviorLabels, Counter>,
    cache_failovers: Family<BehaviorLabels, Counter>,
    cache_bytes_served: Family<BehaviorLabels, Counter>,
    cache_hit_ratio: Family<BehaviorLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Stored objects evicted for room.
    pub cache_evictions: Counter,
    /// Client connections open now.
    pub connections_active: Gauge,
    /// Client connections accepted.
    pub connections: Counter,
    /// Floods the shield's automatic mitigation detected.
    pub shield_floods: Counter,
    /// Clients held back by the automatic mitigation's rules now.
    pub shield_mitigated_clients: Gauge,
    /// The latest requests the web ACLs blocked or counted.
    pub waf_samples: crate::waf::Samples,
}

impl EdgeMetrics {
    /// Registers the edge's metrics.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            http: HttpMetrics::register(registry),
            healthy_targets: Family::default(),
            unhealthy_targets: Family::default(),
            anomalous_targets: Family::default(),
            mitigated_targets: Family::default(),
            retries: Family::default(),
            target_response_time: Family::new_with_constructor(|| {
                prometheus_client::metrics::histogram::Histogram::new(
                    securecart_telemetry::metrics::latency_buckets(),
                )
            }),
            target_responses: Family::default(),
            edge_errors: Family::default(),
            waf_matches: Family::default(),
            non_compliant: Family::default(),
            cache_requests: Family::default(),
            cache_coalesced: Family::default(),
            cache_failovers: Family::default(),
            cache_bytes_served: Family::default(),
            cache_hit_ratio: Family::default(),
            cache_evictions: Counter::default(),
            connections_active: Gauge::default(),
            connections: Counter::default(),
            shield_floods: Counter::default(),
            shield_mitigated_clients: Gauge::default(),
            waf_samples: crate::waf::Samples::default(),
        };
        registry.register(
            "healthy_targets",
            "Targets passing their health check, by target group",
            metrics.healthy_targets.clone(),
        );
        registry.register(
            "unhealthy_targets",
            "Targets failing their health check, by target group",
            metrics.unhealthy_targets.clone(),
        );
        registry.register(
            "anomalous_targets",
            "Healthy targets whose recent error rate stands out from the others', by target group (ALB's AnomalousHostCount)",
            metrics.anomalous_targets.clone(),
        );
        registry.register(
            "mitigated_targets",
            "Targets sent less than their share for their errors, by target group (ALB's MitigatedHostCount)",
            metrics.mitigated_targets.clone(),
        );
        registry.register_with_unit(
            "target_response_time",
            "Time from sending a request to a target to its response headers, by target group",
            prometheus_client::registry::Unit::Seconds,
            metrics.target_response_time.clone(),
        );
        registry.register(
            "target_responses",
            "Answers of targets, by target group and status class",
            metrics.target_responses.clone(),
        );
        registry.register(
            "errors",
            "Answers the edge made itself because it could not forward, by reason, rule and target group",
            metrics.edge_errors.clone(),
        );
        registry.register(
            "upstream_retries",
            "Requests sent again to another target: after a connect failure, or after an idempotent request's connection failed before an answer",
            metrics.retries.clone(),
        );
        registry.register(
            "waf_matches",
            "Web ACL rules that matched a request, by web ACL, rule and action",
            metrics.waf_matches.clone(),
        );
        registry.register(
            "non_compliant_requests",
            "Requests that do not comply with RFC 9112, routed or refused by desync mitigation, by listener, classification and reason (ALB's DesyncMitigationMode_NonCompliant_Request_Count)",
            metrics.non_compliant.clone(),
        );
        registry.register(
            "cache_requests",
            "Requests through a cache behaviour, by what the cache did (hit ratio: hit / all)",
            metrics.cache_requests.clone(),
        );
        registry.register(
            "cache_coalesced",
            "Requests that waited for another request's fetch of the same object",
            metrics.cache_coalesced.clone(),
        );
        registry.register(
            "cache_failovers",
            "Fetches that the origin failed and that went to the behaviour's secondary target group (origin failover)",
            metrics.cache_failovers.clone(),
        );
        registry.register(
            "cache_served_bytes",
            "Body bytes answered from stored responses",
            metrics.cache_bytes_served.clone(),
        );
        registry.register(
            "cache_hit_ratio",
            "Hits over all answers of a cache behaviour (hits, misses, stale and revalidated answers) since the start",
            metrics.cache_hit_ratio.clone(),
        );
        registry.register(
            "cache_evictions",
            "Stored objects evicted to make room",
            metrics.cache_evictions.clone(),
        );
        registry.register(
            "connections_active",
            "Client connections open now",
            metrics.connections_active.clone(),
        );
        registry.register(
            "connections",
            "Client connections accepted",
            metrics.connections.clone(),
        );
        registry.register(
            "shield_floods",
            "Floods the shield's automatic mitigation detected",
            metrics.shield_floods.clone(),
        );
        registry.register(
            "shield_mitigated_clients",
            "Clients held back by the automatic mitigation's rules now",
            metrics.shield_mitigated_clients.clone(),
        );
        metrics
    }

    /// Publishes a group's healthy, unhealthy, anomalous and mitigated target counts.
    pub fn set_target_health(&self, group: &TargetGroup) {
        let labels = GroupLabels {
            target_group: group.name.clone(),
        };
        let healthy = group.healthy_count();
        self.healthy_targets
            .get_or_create(&labels)
            .set(healthy as i64);
        self.unhealthy_targets
            .get_or_create(&labels)
            .set((group.targets.len() - healthy) as i64);
        let (anomalous, mitigated) = group.anomaly_counts();
        self.anomalous_targets
            .get_or_create(&labels)
            .set(anomalous as i64);
        self.mitigated_targets
            .get_or_create(&labels)
            .set(mitigated as i64);
    }

    /// The metric handles of a group.
    pub fn group(&self, name: &str) -> GroupMetrics {
        let labels = GroupLabels {
            target_group: name.to_owned(),
        };
        let class = |class: &'static str| {
            self.target_responses
                .get_or_create(&TargetResponseLabels {
                    target_group: name.to_owned(),
                    class,
                })
                .clone()
        };
        GroupMetrics {
            response_time: self.target_response_time.get_or_create(&labels).clone(),
            responses: [class("2xx"), class("3xx"), class("4xx"), class("5xx")],
        }
    }

    /// Counts a web ACL rule's match.
    pub fn waf_match(&self, web_acl: &str, rule: &str, action: &'static str) {
        self.waf_matches
            .get_or_create(&WafLabels {
                web_acl: web_acl.to_owned(),
                rule: rule.to_owned(),
                action,
            })
            .inc();
    }

    /// The metric handles of a cache behaviour.
    pub fn cache_behavior(&self, name: &str) -> CacheMetrics {
        let result = |result: &'static str| {
            self.cache_requests
                .get_or_create(&CacheLabels {
                    behavior: name.to_owned(),
                    result,
                })
                .clone()
        };
        let labels = BehaviorLabels {
            behavior: name.to_owned(),
        };
        CacheMetrics {
            hit: result("hit"),
            miss: result("miss"),
            stale: result("stale"),
            revalidated: result("revalidated"),
            bypass: result("bypass"),
            coalesced: self.cache_coalesced.get_or_create(&labels).clone(),
            failovers: self.cache_failovers.get_or_create(&labels).clone(),
            bytes_served: self.cache_bytes_served.get_or_create(&labels).clone(),
            hit_ratio: self.cache_hit_ratio.get_or_create(&labels).clone(),
        }
    }

    /// Counts an answer the edge made itself, for a request of `route` to `target_group`
    /// (ALB's ELB 5xx counts, per rule and group beside the targets' own answers).
    pub fn edge_error(&self, code: &'static str, route: &str, target_group: Option<&str>) {
        self.edge_errors
            .get_or_create(&EdgeErrorLabels {
                code,
                route: route.to_owned(),
                target_group: target_group.unwrap_or("").to_owned(),
            })
            .inc();
    }

    /// A listener's counters of requests that do not comply with RFC 9112, one per reason,
    /// taken once when its pipeline is built (each series is published from then on, at 0
    /// until a request counts).
    pub fn desync_counters(&self, listener: &str) -> DesyncCounters {
        DesyncCounters(
            crate::guard::Reason::ALL
                .map(|reason| {
                    self.non_compliant
                        .get_or_create(&DesyncLabels {
                            listener: listener.to_owned(),
                            classification: reason.classification().as_str(),
                            reason: reason.as_str(),
                        })
                        .clone()
                })
                .into(),
        )
    }

    /// Counts a retry.
    pub fn retried(&self, group: &TargetGroup) {
        self.retries
            .get_or_create(&GroupLabels {
                target_group: group.name.clone(),
            })
            .inc();
    }
}
