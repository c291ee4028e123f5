//! The Kubernetes side's metrics: writes by kind, verb and outcome; how
//! each sync read the cluster.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Whether something worked: a label value.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Outcome {
    Success,
    Failure,
}

impl Outcome {
    pub fn of(ok: bool) -> Outcome {
        if ok {
            Outcome::Success
        } else {
            Outcome::Failure
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriteLabels {
    kind: &'static str,
    verb: &'static str,
    outcome: Outcome,
}

/// How a sync read the Applications and the credential Secrets: a label
/// value.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum ClusterRead {
    /// From the API server's lists.
    Listed,
    /// The last read's state, kept while watches saw no change.
    Kept,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterReadLabels {
    how: ClusterRead,
}

#[derive(Default)]
pub struct KubernetesMetrics {
    writes: Family<WriteLabels, Counter>,
    cluster_reads: Family<ClusterReadLabels, Counter>,
    request_timeouts: Counter,
}

impl KubernetesMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "kubernetes_writes",
            "Writes to the Kubernetes API by kind, verb and outcome",
            self.writes.clone(),
        );
        registry.register(
            "kubernetes_cluster_reads",
            "Reads of the cluster's Applications and credential Secrets by a sync: how=\"Listed\" from the API server, how=\"Kept\" the last read's state while watches saw no change",
            self.cluster_reads.clone(),
        );
        registry.register(
            "kubernetes_request_timeouts",
            "Requests to the Kubernetes API that could not connect, did not answer, or whose answer paused, within their deadline (APP_KUBERNETES_REQUEST_TIMEOUT; connecting: at most 10 s)",
            self.request_timeouts.clone(),
        );
    }

    pub fn record_request_timeout(&self) {
        self.request_timeouts.inc();
    }

    /// Requests that timed out so far.
    pub fn request_timeouts(&self) -> u64 {
        self.request_timeouts.get()
    }

    pub fn record_cluster_read(&self, how: ClusterRead) {
        self.cluster_reads
            .get_or_create(&ClusterReadLabels { how })
            .inc();
    }

    /// Reads of the cluster so far that were made `how`.
    pub fn cluster_reads(&self, how: ClusterRead) -> u64 {
        self.cluster_reads
            .get_or_create(&ClusterReadLabels { how })
            .get()
    }

    pub fn record_write(&self, kind: &'static str, verb: &'static str, ok: bool) {
        self.writes
            .get_or_create(&WriteLabels {
                kind,
                verb,
                outcome: Outcome::of(ok),
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
}
