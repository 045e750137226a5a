//! Prometheus metrics: a registry per component and the request metrics every HTTP server
//! of SecureCart records.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// A component's metrics, registered once at startup and then shared read-only.
#[derive(Debug, Clone)]
pub struct MetricsRegistry {
    registry: Arc<Registry>,
}

impl MetricsRegistry {
    /// Freezes a registry whose metrics are all registered.
    pub fn new(registry: Registry) -> Self {
        Self {
            registry: Arc::new(registry),
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Encoding into a String cannot fail: fmt::Write for String never errors.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// The labels of a request counter: the route (a pattern or rule name, never a raw path) and
/// the status code.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route's pattern or name.
    pub route: String,
    /// The HTTP status code.
    pub code: u16,
}

/// The labels of a latency histogram.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The route's pattern or name.
    pub route: String,
}

/// Latency buckets from half a millisecond to about 16 seconds, doubling.
pub fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0005, 2.0, 16)
}

/// Request counts and latencies of an HTTP server, by route.
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram>,
    /// Each route's series, found in the families once: a request is then recorded without
    /// building the families' owned labels (two allocations) and looking them up. Routes
    /// are the server's own names (rule ids, handlers), not a client's input: hashed with
    /// `foldhash`, a tenth of SipHash's cost per request.
    routes: Arc<RwLock<HashMap<Box<str>, RouteSeries, foldhash::fast::RandomState>>>,
}

/// One route's latency histogram and its counters by status code (a route answers with
/// few codes: they are looked through in turn).
#[derive(Debug)]
struct RouteSeries {
    duration: Histogram,
    codes: RwLock<Vec<(u16, Counter)>>,
}

impl HttpMetrics {
    /// Registers `<prefix>_requests_total` and `<prefix>_request_duration_seconds` in the
    /// registry (whose own prefix names the component).
    pub fn register(registry: &mut Registry) -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let duration = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
        registry.register(
            "requests",
            "HTTP requests answered, by route and status code",
            requests.clone(),
        );
        registry.register_with_unit(
            "request_duration",
            "Time from a request's arrival to its response's headers",
            Unit::Seconds,
            duration.clone(),
        );
        Self {
            requests,
            duration,
            routes: Arc::default(),
        }
    }

    /// Records one answered request.
    pub fn record(&self, route: &str, code: u16, elapsed: Duration) {
        {
            let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(series) = routes.get(route) {
                self.record_in(series, route, code, elapsed);
                return;
            }
        }
        let mut routes = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        let series = routes.entry(route.into()).or_insert_with(|| RouteSeries {
            duration: self
                .duration
                .get_or_create(&RouteLabels {
                    route: route.to_owned(),
                })
                .clone(),
            codes: RwLock::default(),
        });
        self.record_in(series, route, code, elapsed);
    }

    fn record_in(&self, series: &RouteSeries, route: &str, code: u16, elapsed: Duration) {
        series.duration.observe(elapsed.as_secs_f64());
        {
            let codes = series.codes.read().unwrap_or_else(PoisonError::into_inner);
            if let Some((_, counter)) = codes.iter().find(|(known, _)| *known == code) {
                counter.inc();
                return;
            }
        }
        let mut codes = series.codes.write().unwrap_or_else(PoisonError::into_inner);
        // Another thread may have added it meanwhile.
        if let Some((_, counter)) = codes.iter().find(|(known, _)| *known == code) {
            counter.inc();
            return;
        }
        let counter = self
            .requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                code,
            })
            .clone();
        counter.inc();
        codes.push((code, counter));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use prometheus_client::registry::Registry;

    use super::{HttpMetrics, MetricsRegistry};

    #[test]
    fn request_metrics_follow_the_naming_scheme() {
        let mut registry = Registry::with_prefix("securecart_shop");
        let metrics = HttpMetrics::register(&mut registry);
        metrics.record("/api/cart", 200, Duration::from_millis(3));
        metrics
            .clone()
            .record("/api/cart", 200, Duration::from_millis(5));
        metrics.record("/api/cart", 404, Duration::from_millis(1));
        metrics.record("/api/orders", 200, Duration::from_millis(1));
        let text = MetricsRegistry::new(registry).encode();
        assert!(
            text.contains("securecart_shop_requests_total{route=\"/api/cart\",code=\"200\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("securecart_shop_requests_total{route=\"/api/cart\",code=\"404\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("securecart_shop_requests_total{route=\"/api/orders\",code=\"200\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("securecart_shop_request_duration_seconds_count{route=\"/api/cart\"} 3"),
            "{text}"
        );
    }
}
