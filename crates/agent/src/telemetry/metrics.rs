//! Prometheus metrics, all prefixed `compass_runtime_agent_`, units in the
//! names, labels only from small fixed sets (never names, URLs or errors).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::k8s::crd::compass_connection::ConnectionState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    pub kind: &'static str,
    pub verb: &'static str,
    pub outcome: Outcome,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Outcome {
    Success,
    Failure,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CompassRequestLabels {
    pub operation: &'static str,
    /// `ok` or the error category (a fixed set).
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: Outcome,
}

pub struct Metrics {
    registry: Mutex<Registry>,
    certificate_not_after: Gauge<f64, std::sync::atomic::AtomicU64>,
    certificate_seconds_left: Gauge<f64, std::sync::atomic::AtomicU64>,
    not_after_unix: AtomicI64,
    pub renewals: Family<OutcomeLabels, Counter>,
    pub establishments: Family<OutcomeLabels, Counter>,
    connection_state: Family<StateLabels, Gauge>,
    pub sync_duration: Histogram,
    pub last_successful_sync: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub applications_managed: Gauge,
    writes: Family<WriteLabels, Counter>,
    compass_requests: Family<CompassRequestLabels, Counter>,
    compass_request_duration: Family<OperationLabels, Histogram>,
    pub reconciles: Family<OutcomeLabels, Counter>,
    leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("compass_runtime_agent");
        let metrics = Metrics {
            registry: Mutex::new(Registry::default()),
            certificate_not_after: Gauge::default(),
            certificate_seconds_left: Gauge::default(),
            not_after_unix: AtomicI64::new(0),
            renewals: Family::default(),
            establishments: Family::default(),
            connection_state: Family::default(),
            sync_duration: Histogram::new(exponential_buckets(0.05, 2.0, 12)),
            last_successful_sync: Gauge::default(),
            applications_managed: Gauge::default(),
            writes: Family::default(),
            compass_requests: Family::default(),
            compass_request_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 2.0, 14))
            }),
            reconciles: Family::default(),
            leader: Gauge::default(),
        };
        registry.register(
            "certificate_not_after_timestamp_seconds",
            "When the client certificate expires (Unix time)",
            metrics.certificate_not_after.clone(),
        );
        registry.register(
            "certificate_expiry_seconds",
            "Seconds until the client certificate expires",
            metrics.certificate_seconds_left.clone(),
        );
        registry.register(
            "certificate_renewals",
            "Certificate renewals by outcome",
            metrics.renewals.clone(),
        );
        registry.register(
            "connection_establishments",
            "Connections established with a one-time token, by outcome",
            metrics.establishments.clone(),
        );
        registry.register(
            "connection_state",
            "1 for the CompassConnection's current state, 0 for the others",
            metrics.connection_state.clone(),
        );
        registry.register(
            "sync_duration_seconds",
            "Duration of one synchronization of Applications",
            metrics.sync_duration.clone(),
        );
        registry.register(
            "last_successful_sync_timestamp_seconds",
            "When Applications were last synchronized without error (Unix time)",
            metrics.last_successful_sync.clone(),
        );
        registry.register(
            "applications_managed",
            "Applications the agent manages",
            metrics.applications_managed.clone(),
        );
        registry.register(
            "kubernetes_writes",
            "Writes to the Kubernetes API by kind, verb and outcome",
            metrics.writes.clone(),
        );
        registry.register(
            "compass_requests",
            "Requests to Compass by operation and outcome",
            metrics.compass_requests.clone(),
        );
        registry.register(
            "compass_request_duration_seconds",
            "Duration of requests to Compass by operation",
            metrics.compass_request_duration.clone(),
        );
        registry.register(
            "reconciles",
            "Reconciles of the CompassConnection by outcome",
            metrics.reconciles.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease (or runs without leader election)",
            metrics.leader.clone(),
        );
        *metrics.registry.lock().unwrap_or_else(|e| e.into_inner()) = registry;
        for state in ConnectionState::ALL {
            metrics
                .connection_state
                .get_or_create(&StateLabels {
                    state: state.as_str(),
                })
                .set(0);
        }
        metrics
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    pub fn record_write(&self, kind: &'static str, verb: &'static str, ok: bool) {
        let outcome = if ok {
            Outcome::Success
        } else {
            Outcome::Failure
        };
        self.writes
            .get_or_create(&WriteLabels {
                kind,
                verb,
                outcome,
            })
            .inc();
    }

    /// Successful writes so far, all kinds and verbs.
    pub fn successful_writes(&self) -> u64 {
        let mut total = 0;
        for kind in ["Application", "Secret"] {
            for verb in ["create", "update", "delete"] {
                total += self
                    .writes
                    .get_or_create(&WriteLabels {
                        kind,
                        verb,
                        outcome: Outcome::Success,
                    })
                    .get();
            }
        }
        total
    }

    pub fn record_compass_request(
        &self,
        operation: &'static str,
        outcome: &'static str,
        seconds: f64,
    ) {
        self.compass_requests
            .get_or_create(&CompassRequestLabels { operation, outcome })
            .inc();
        self.compass_request_duration
            .get_or_create(&OperationLabels { operation })
            .observe(seconds);
    }

    pub fn set_connection_state(&self, current: ConnectionState) {
        for state in ConnectionState::ALL {
            self.connection_state
                .get_or_create(&StateLabels {
                    state: state.as_str(),
                })
                .set(i64::from(state == current));
        }
    }

    pub fn set_certificate_not_after(&self, unix_seconds: i64) {
        self.not_after_unix.store(unix_seconds, Ordering::Relaxed);
        self.certificate_not_after.set(unix_seconds as f64);
    }

    /// The text exposition format; seconds-left is computed at scrape time.
    pub fn render(&self) -> String {
        let not_after = self.not_after_unix.load(Ordering::Relaxed);
        if not_after > 0 {
            let now = jiff::Timestamp::now().as_second();
            self.certificate_seconds_left.set((not_after - now) as f64);
        }
        let mut text = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_with_the_prefix_and_units() {
        let metrics = Metrics::new();
        metrics.record_write("Application", "create", true);
        metrics.record_compass_request("configuration", "ok", 0.01);
        metrics.set_connection_state(ConnectionState::Synchronized);
        metrics.set_certificate_not_after(jiff::Timestamp::now().as_second() + 100);
        let text = metrics.render();
        assert!(text.contains(r#"compass_runtime_agent_kubernetes_writes_total{kind="Application",verb="create",outcome="Success"} 1"#), "{text}");
        assert!(
            text.contains(r#"compass_runtime_agent_connection_state{state="Synchronized"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"compass_runtime_agent_connection_state{state="ConnectionFailed"} 0"#),
            "{text}"
        );
        assert!(
            text.contains("compass_runtime_agent_compass_request_duration_seconds_bucket"),
            "{text}"
        );
        let left = text
            .lines()
            .find(|l| l.starts_with("compass_runtime_agent_certificate_expiry_seconds "))
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap();
        assert!((95.0..=100.0).contains(&left), "{left}");
        assert_eq!(metrics.successful_writes(), 1);
    }
}
