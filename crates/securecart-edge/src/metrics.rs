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

/// Every metric of the edge.
#[derive(Debug, Clone)]
pub struct EdgeMetrics {
    /// Requests by route and status, and their latency.
    pub http: HttpMetrics,
    healthy_targets: Family<GroupLabels, Gauge>,
    unhealthy_targets: Family<GroupLabels, Gauge>,
    retries: Family<GroupLabels, Counter>,
    /// Client connections open now.
    pub connections_active: Gauge,
    /// Client connections accepted.
    pub connections: Counter,
}

impl EdgeMetrics {
    /// Registers the edge's metrics.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            http: HttpMetrics::register(registry),
            healthy_targets: Family::default(),
            unhealthy_targets: Family::default(),
            retries: Family::default(),
            connections_active: Gauge::default(),
            connections: Counter::default(),
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
            "upstream_retries",
            "Requests sent again to another target after a connect failure",
            metrics.retries.clone(),
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
        metrics
    }

    /// Publishes a group's healthy and unhealthy target counts.
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
