//! The Compass clients' metrics: requests by operation and outcome, and how
//! long they took. Labels from fixed sets only (operations the agent sends,
//! error categories).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    operation: &'static str,
    /// `ok` or the error category (a fixed set).
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

pub struct CompassMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<OperationLabels, Histogram>,
}

impl Default for CompassMetrics {
    fn default() -> Self {
        CompassMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 2.0, 14))
            }),
        }
    }
}

impl CompassMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "compass_requests",
            "Requests to Compass by operation and outcome",
            self.requests.clone(),
        );
        registry.register(
            "compass_request_duration_seconds",
            "Duration of requests to Compass by operation",
            self.duration.clone(),
        );
    }

    pub fn record(&self, operation: &'static str, outcome: &'static str, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels { operation, outcome })
            .inc();
        self.duration
            .get_or_create(&OperationLabels { operation })
            .observe(seconds);
    }
}
