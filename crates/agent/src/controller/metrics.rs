//! The controller's metrics: the connection's state, the certificate, the
//! synchronizations, reconciles and leadership.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabel, EncodeLabelSet, EncodeMetric, LabelSetEncoder,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::progress::CycleProgress;
use crate::compass::metrics::CompassMetrics;
use crate::crd::compass_connection::ConnectionState;
use crate::k8s::metrics::KubernetesMetrics;
pub use crate::k8s::metrics::Outcome;

/// Each layer's metrics: the Compass clients', the Kubernetes side's and
/// the controller's own. The process registers them in the registry it
/// serves (see [`AgentMetrics::register`]).
#[derive(Clone, Default)]
pub struct AgentMetrics {
    pub compass: Arc<CompassMetrics>,
    pub kubernetes: Arc<KubernetesMetrics>,
    pub controller: Arc<ControllerMetrics>,
}

impl AgentMetrics {
    pub fn new() -> AgentMetrics {
        AgentMetrics::default()
    }

    /// Registers every layer's metrics.
    pub fn register(&self, registry: &mut Registry) {
        self.compass.register(registry);
        self.kubernetes.register(registry);
        self.controller.register(registry);
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: Outcome,
}

/// `outcome="Success"`, or `outcome="Failure"` with the failure's
/// `category`: one of the fixed sets of `controller::errors` (the reason of
/// the Warning Event of that cycle), so the label stays bounded.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct ReconcileLabels {
    failure: Option<&'static str>,
}

impl EncodeLabelSet for ReconcileLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        ("outcome", Outcome::of(self.failure.is_none())).encode(encoder.encode_label())?;
        if let Some(category) = self.failure {
            ("category", category).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

pub struct ControllerMetrics {
    certificate: Arc<CertificateExpiry>,
    overdue: Arc<CycleOverdue>,
    renewals: Family<OutcomeLabels, Counter>,
    establishments: Family<OutcomeLabels, Counter>,
    connection_state: Family<StateLabels, Gauge>,
    sync_duration: Histogram,
    last_successful_sync: Gauge<f64, AtomicU64>,
    applications_managed: Gauge,
    applications_failed: Gauge,
    applications_recalled: Gauge,
    reconciles: Family<ReconcileLabels, Counter>,
    leader: Gauge,
}

impl Default for ControllerMetrics {
    fn default() -> Self {
        let metrics = ControllerMetrics {
            certificate: Arc::default(),
            overdue: Arc::default(),
            renewals: Family::default(),
            establishments: Family::default(),
            connection_state: Family::default(),
            sync_duration: Histogram::new(exponential_buckets(0.05, 2.0, 12)),
            last_successful_sync: Gauge::default(),
            applications_managed: Gauge::default(),
            applications_failed: Gauge::default(),
            applications_recalled: Gauge::default(),
            reconciles: Family::default(),
            leader: Gauge::default(),
        };
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
}

impl ControllerMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(self.certificate.clone()));
        registry.register_collector(Box::new(self.overdue.clone()));
        registry.register(
            "certificate_renewals",
            "Certificate renewals by outcome",
            self.renewals.clone(),
        );
        registry.register(
            "connection_establishments",
            "Connections established with a one-time token, by outcome",
            self.establishments.clone(),
        );
        registry.register(
            "connection_state",
            "1 for the CompassConnection's current state, 0 for the others",
            self.connection_state.clone(),
        );
        registry.register(
            "sync_duration_seconds",
            "Duration of one synchronization of Applications",
            self.sync_duration.clone(),
        );
        registry.register(
            "last_successful_sync_timestamp_seconds",
            "When Applications were last synchronized without error (Unix time)",
            self.last_successful_sync.clone(),
        );
        registry.register(
            "applications_managed",
            "Applications the agent manages",
            self.applications_managed.clone(),
        );
        registry.register(
            "applications_failed",
            "Applications the last synchronization could not write (the runtime is still Synchronized; synchronizationStatus.error names the first few)",
            self.applications_failed.clone(),
        );
        registry.register(
            "applications_recalled",
            "Applications of the last synchronization whose Director answer was the one before, byte for byte, and which the cluster still held as wanted: settled without being parsed or converted (an idle sync recalls every application)",
            self.applications_recalled.clone(),
        );
        registry.register(
            "reconciles",
            "Cycles of the CompassConnection by outcome, and by category when they failed (a reconcile that only waits for its time is not counted)",
            self.reconciles.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease (or runs without leader election)",
            self.leader.clone(),
        );
    }

    /// The cycles whose lateness `cycle_overdue_seconds` reports.
    pub fn watch_progress(&self, progress: Arc<CycleProgress>) {
        let _ = self.overdue.progress.set(progress);
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    pub fn record_renewal(&self, ok: bool) {
        self.renewals
            .get_or_create(&OutcomeLabels {
                outcome: Outcome::of(ok),
            })
            .inc();
    }

    pub fn record_establishment(&self, ok: bool) {
        self.establishments
            .get_or_create(&OutcomeLabels {
                outcome: Outcome::of(ok),
            })
            .inc();
    }

    /// One cycle: `None` when it worked, else the category of what failed
    /// (`transition.failure`, or `ReconcileError::category`), from the fixed
    /// sets of `controller::errors`.
    pub fn record_reconcile(&self, failure: Option<&'static str>) {
        self.reconciles
            .get_or_create(&ReconcileLabels { failure })
            .inc();
    }

    pub fn record_sync(&self, seconds: f64) {
        self.sync_duration.observe(seconds);
    }

    pub fn set_last_successful_sync(&self, unix_seconds: i64) {
        self.last_successful_sync.set(unix_seconds as f64);
    }

    pub fn set_applications_managed(&self, count: usize) {
        self.applications_managed.set(count as i64);
    }

    pub fn set_applications_failed(&self, count: usize) {
        self.applications_failed.set(count as i64);
    }

    pub fn set_applications_recalled(&self, count: usize) {
        self.applications_recalled.set(count as i64);
    }

    pub fn applications_recalled(&self) -> i64 {
        self.applications_recalled.get()
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

    /// The certificate in use: when it expires, and when the agent renews
    /// it (its threshold with its jitter), in Unix seconds.
    pub fn set_certificate(&self, not_after: i64, renewal_due: i64) {
        self.certificate
            .not_after
            .store(not_after, Ordering::Relaxed);
        self.certificate
            .renewal_due
            .store(renewal_due, Ordering::Relaxed);
    }
}

/// The certificate's expiry, the seconds left until it (computed at each
/// scrape), and when it is due for renewal.
#[derive(Debug, Default)]
struct CertificateExpiry {
    /// Unix seconds; 0 until a certificate is known.
    not_after: AtomicI64,
    /// Unix seconds; 0 until a certificate is known.
    renewal_due: AtomicI64,
}

impl Collector for CertificateExpiry {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let not_after = self.not_after.load(Ordering::Relaxed);
        let left = if not_after > 0 {
            (not_after - jiff::Timestamp::now().as_second()) as f64
        } else {
            0.0
        };
        for (name, help, value) in [
            (
                "certificate_not_after_timestamp_seconds",
                "When the client certificate expires (Unix time)",
                not_after as f64,
            ),
            (
                "certificate_expiry_seconds",
                "Seconds until the client certificate expires",
                left,
            ),
            (
                "certificate_renewal_due_timestamp_seconds",
                "When the agent renews the client certificate (Unix time): APP_CERT_VALIDITY_RENEWAL_THRESHOLD of its validity before expiry, with this certificate's jitter",
                self.renewal_due.load(Ordering::Relaxed) as f64,
            ),
        ] {
            let gauge = ConstGauge::new(value);
            let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric)?;
        }
        Ok(())
    }
}

/// How long a due cycle has waited for one to record its outcome, computed
/// at each scrape (0 while none is due: on time, standing by, or before
/// the agent started its controller).
#[derive(Debug, Default)]
struct CycleOverdue {
    progress: std::sync::OnceLock<Arc<CycleProgress>>,
}

impl Collector for CycleOverdue {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let overdue = self.progress.get().map_or(0.0, |progress| {
            progress.overdue(std::time::Instant::now()).as_secs_f64()
        });
        let gauge = ConstGauge::new(overdue);
        let metric = encoder.encode_descriptor(
            "cycle_overdue_seconds",
            "How long a cycle that is due has waited for one to record its outcome in compass-connection (0 when none is due); /healthz fails past twice APP_CYCLE_TIMEOUT plus APP_MAX_RETRY_DELAY",
            None,
            gauge.metric_type(),
        )?;
        gauge.encode(metric)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `/metrics` serves of these metrics.
    fn render(metrics: &AgentMetrics) -> String {
        let mut registry = Registry::with_prefix("compass_runtime_agent");
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn a_failed_cycle_counts_as_a_failure_of_its_category_never_as_a_success() {
        let metrics = AgentMetrics::new();
        metrics.controller.record_reconcile(None);
        metrics.controller.record_reconcile(Some("Timeout"));
        metrics.controller.record_reconcile(Some("Timeout"));
        metrics
            .controller
            .record_reconcile(Some("StatusWriteFailed"));
        let text = render(&metrics);
        for line in [
            r#"compass_runtime_agent_reconciles_total{outcome="Success"} 1"#,
            r#"compass_runtime_agent_reconciles_total{outcome="Failure",category="Timeout"} 2"#,
            r#"compass_runtime_agent_reconciles_total{outcome="Failure",category="StatusWriteFailed"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "no {line} in\n{text}");
        }
    }
}
