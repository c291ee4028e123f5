//! The cluster metrics line: every `APP_METRICS_LOGGING_TIME_INTERVAL`, one
//! JSON line on the log's stream (stdout) that Kyma's log-based metering
//! reads, in the original agent's shape:
//!
//! ```text
//! {"clusterInfo":{"resources":[…],"usage":[…],"persistentVolumes":[…]},"level":"info","metrics":true,"msg":"Cluster metrics logged successfully.","time":"…"}
//! ```
//!
//! It is always that JSON, whatever `APP_LOG_FORMAT` is (the original, too,
//! switches its logger to JSON for this one line), written with one write so
//! that it never interleaves with other log lines.
//!
//! Beyond the original: without `metrics.k8s.io` (no metrics-server, or no
//! right to list NodeMetrics) the line is still logged, with `usage: []`, and
//! the reason is said once (the original logs no line at all then, and an
//! error every interval). A replica that stands by for the leader Lease logs
//! no line: one line per interval per cluster, as with the original's single
//! replica.
//!
//! Building the line ([`ClusterInfo`], [`line`]) is pure; [`run`] does the
//! listing and the writing.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, PersistentVolume};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{ListParams, ObjectList};
use kube::{Api, Client};
use serde::{Deserialize, Serialize};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::k8s::access::Access;
use crate::k8s::errors::{is_forbidden, is_not_found};
use crate::report::Report;
use crate::telemetry::health::Readiness;

/// The message of the line, which metering looks for.
pub const MESSAGE: &str = "Cluster metrics logged successfully.";

/// The node label the instance type is read from.
pub const INSTANCE_TYPE_LABEL: &str = "beta.kubernetes.io/instance-type";

/// Where NodeMetrics are listed.
const NODE_METRICS_PATH: &str = "/apis/metrics.k8s.io/v1beta1/nodes";

/// Objects per list call: Nodes can be large (their status lists images).
const PAGE_SIZE: u32 = 100;

/// What Go's `Quantity.String()` gives for a missing quantity.
const ZERO: &str = "0";

/// Go's zero `time.Time` in JSON: a NodeMetrics without a timestamp.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// `clusterInfo` of the line.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ClusterInfo {
    pub resources: Vec<NodeResources>,
    pub usage: Vec<NodeUsage>,
    #[serde(rename = "persistentVolumes")]
    pub persistent_volumes: Vec<VolumeCapacity>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeResources {
    #[serde(rename = "nodeName")]
    pub node_name: String,
    #[serde(rename = "instanceType")]
    pub instance_type: String,
    pub capacity: NodeCapacity,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeCapacity {
    pub cpu: String,
    #[serde(rename = "ephemeralStorage")]
    pub ephemeral_storage: String,
    pub memory: String,
    pub pods: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeUsage {
    #[serde(rename = "nodeName")]
    pub node_name: String,
    #[serde(rename = "startCollectingTimestamp")]
    pub start_collecting_timestamp: String,
    pub usage: Usage,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Usage {
    pub cpu: String,
    pub memory: String,
    /// Always "0", as in the original.
    #[serde(rename = "ephemeralStorage")]
    pub ephemeral_storage: String,
    /// Always "0", as in the original.
    pub pods: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VolumeCapacity {
    pub name: String,
    pub capacity: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claim: Option<Claim>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Claim {
    pub name: String,
    pub namespace: String,
}

/// A `metrics.k8s.io/v1beta1` NodeMetrics, as far as the line needs it.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct NodeMetrics {
    #[serde(default)]
    pub metadata: NodeMetricsMeta,
    #[serde(default)]
    pub timestamp: Option<String>,
    #[serde(default)]
    pub usage: std::collections::BTreeMap<String, Quantity>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct NodeMetricsMeta {
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Deserialize)]
struct NodeMetricsList {
    #[serde(default)]
    items: Vec<NodeMetrics>,
}

/// The quantity `key` of a resource list as a Kubernetes quantity string
/// (the API server sends them in canonical form, as Go's `String()` gives
/// them), "0" when missing.
fn quantity(list: Option<&std::collections::BTreeMap<String, Quantity>>, key: &str) -> String {
    list.and_then(|list| list.get(key))
        .map(|quantity| quantity.0.clone())
        .filter(|text| !text.is_empty())
        .unwrap_or_else(|| ZERO.to_string())
}

/// One `resources` entry.
pub fn node_resources(node: &Node) -> NodeResources {
    let capacity = node
        .status
        .as_ref()
        .and_then(|status| status.capacity.as_ref());
    NodeResources {
        node_name: node.metadata.name.clone().unwrap_or_default(),
        instance_type: node
            .metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get(INSTANCE_TYPE_LABEL))
            .cloned()
            .unwrap_or_default(),
        capacity: NodeCapacity {
            cpu: quantity(capacity, "cpu"),
            ephemeral_storage: quantity(capacity, "ephemeral-storage"),
            memory: quantity(capacity, "memory"),
            pods: quantity(capacity, "pods"),
        },
    }
}

/// One `usage` entry.
pub fn node_usage(metrics: &NodeMetrics) -> NodeUsage {
    NodeUsage {
        node_name: metrics.metadata.name.clone().unwrap_or_default(),
        start_collecting_timestamp: metrics
            .timestamp
            .clone()
            .filter(|time| !time.is_empty())
            .unwrap_or_else(|| ZERO_TIME.to_string()),
        usage: Usage {
            cpu: quantity(Some(&metrics.usage), "cpu"),
            memory: quantity(Some(&metrics.usage), "memory"),
            ephemeral_storage: ZERO.to_string(),
            pods: ZERO.to_string(),
        },
    }
}

/// One `persistentVolumes` entry; `claim` only when the volume is bound.
pub fn volume_capacity(volume: &PersistentVolume) -> VolumeCapacity {
    let spec = volume.spec.as_ref();
    VolumeCapacity {
        name: volume.metadata.name.clone().unwrap_or_default(),
        capacity: quantity(spec.and_then(|spec| spec.capacity.as_ref()), "storage"),
        claim: spec
            .and_then(|spec| spec.claim_ref.as_ref())
            .map(|claim| Claim {
                name: claim.name.clone().unwrap_or_default(),
                namespace: claim.namespace.clone().unwrap_or_default(),
            }),
    }
}

/// The whole line, with its newline: the original's logrus JSON (keys in
/// its order, which is alphabetical), `time` in RFC 3339 to the second.
pub fn line(info: &ClusterInfo, now: jiff::Timestamp) -> String {
    #[derive(Serialize)]
    struct Line<'a> {
        #[serde(rename = "clusterInfo")]
        cluster_info: &'a ClusterInfo,
        level: &'static str,
        metrics: bool,
        msg: &'static str,
        time: String,
    }
    let mut text = serde_json::to_string(&Line {
        cluster_info: info,
        level: "info",
        metrics: true,
        msg: MESSAGE,
        time: now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
    })
    .expect("the line is plain data");
    text.push('\n');
    text
}

/// Every object of a cluster-scoped kind, a page at a time, each mapped at
/// once (the whole objects of a large cluster are never held together).
async fn list_mapped<K, T>(api: &Api<K>, map: impl Fn(&K) -> T) -> Result<Vec<T>, kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut mapped = Vec::new();
    let mut params = ListParams::default().limit(PAGE_SIZE);
    loop {
        let page: ObjectList<K> = api.list(&params).await?;
        mapped.extend(page.items.iter().map(&map));
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(mapped),
        }
    }
}

async fn list_node_metrics(client: &Client) -> Result<Vec<NodeUsage>, kube::Error> {
    let request = kube::core::Request::new(NODE_METRICS_PATH)
        .list(&ListParams::default())
        .map_err(kube::Error::BuildRequest)?;
    let list: NodeMetricsList = client.request(request).await?;
    Ok(list.items.iter().map(node_usage).collect())
}

/// Whether an error says that `metrics.k8s.io` is not served at all.
fn is_not_served(error: &kube::Error) -> bool {
    is_not_found(error)
}

/// What the loop remembers between lines.
#[derive(Default)]
struct Said {
    /// That `metrics.k8s.io` is not served: said once, again only after it
    /// was served in between.
    not_served: bool,
}

/// The usage entries, or `[]` with the reason logged (once when
/// `metrics.k8s.io` is not served or refused, each time on other errors).
async fn usage(client: &Client, access: &Access, said: &mut Said) -> Vec<NodeUsage> {
    if !access.node_metrics.allowed() {
        return Vec::new();
    }
    match list_node_metrics(client).await {
        Ok(usage) => {
            said.not_served = false;
            usage
        }
        Err(error) if is_not_served(&error) => {
            if !std::mem::replace(&mut said.not_served, true) {
                tracing::info!(error = %Report(&error), "metrics.k8s.io is not served (no metrics-server?): the cluster metrics line has an empty usage until it is");
            }
            Vec::new()
        }
        Err(error) if is_forbidden(&error) => {
            access.node_metrics.refused(&error);
            Vec::new()
        }
        Err(error) => {
            tracing::warn!(error = %Report(&error), "cannot list the nodes' metrics (metrics.k8s.io); the cluster metrics line has an empty usage this time");
            Vec::new()
        }
    }
}

/// Lists what the line needs; an error when the Nodes or the
/// PersistentVolumes cannot be listed.
async fn collect(client: &Client, access: &Access, said: &mut Said) -> Result<ClusterInfo, String> {
    let nodes = Api::<Node>::all(client.clone());
    let volumes = Api::<PersistentVolume>::all(client.clone());
    let (resources, persistent_volumes, usage) = tokio::join!(
        list_mapped(&nodes, node_resources),
        list_mapped(&volumes, volume_capacity),
        usage(client, access, said),
    );
    let resources = resources.map_err(|e| format!("cannot list the Nodes: {}", Report(&e)))?;
    let persistent_volumes = persistent_volumes
        .map_err(|e| format!("cannot list the PersistentVolumes: {}", Report(&e)))?;
    Ok(ClusterInfo {
        resources,
        usage,
        persistent_volumes,
    })
}

/// Writes the line to stdout (where the log goes) in one write.
fn write_line(text: &str) {
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        tracing::warn!(%error, "cannot write the cluster metrics line");
    }
}

/// Logs the line every `interval`, the first one after one interval (as the
/// original's ticker), until `shutdown`. Returns at once when the interval
/// is zero or the agent may not list Nodes and PersistentVolumes (the
/// access check at start said so in the log). A failed list is one warning
/// and no line that time; nothing else is affected.
pub async fn run(
    client: Client,
    interval: Duration,
    access: Arc<Access>,
    readiness: Arc<Readiness>,
    shutdown: CancellationToken,
) {
    if interval.is_zero() || !access.cluster_metrics {
        return;
    }
    let Some(first) = tokio::time::Instant::now().checked_add(interval) else {
        return;
    };
    let mut ticker = tokio::time::interval_at(first, interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut said = Said::default();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if readiness.is_standby() {
            continue;
        }
        let collected = tokio::select! {
            _ = shutdown.cancelled() => return,
            collected = collect(&client, &access, &mut said) => collected,
        };
        match collected {
            Ok(info) => write_line(&line(&info, jiff::Timestamp::now())),
            Err(error) => {
                tracing::warn!(%error, "no cluster metrics line this time");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn node(value: Value) -> Node {
        serde_json::from_value(value).expect("a Node")
    }

    fn volume(value: Value) -> PersistentVolume {
        serde_json::from_value(value).expect("a PersistentVolume")
    }

    fn parse(text: &str) -> Value {
        assert!(text.ends_with('\n'), "one line: {text:?}");
        assert_eq!(text.matches('\n').count(), 1, "one line: {text:?}");
        serde_json::from_str(text).expect("the line is JSON")
    }

    #[test]
    fn the_line_has_the_originals_shape() {
        let info = ClusterInfo {
            resources: vec![node_resources(&node(json!({
                "metadata": {"name": "node-a", "labels": {INSTANCE_TYPE_LABEL: "m5.large"}},
                "status": {"capacity": {"cpu": "2", "ephemeral-storage": "50Gi", "memory": "8Gi", "pods": "110", "hugepages-2Mi": "0"}}
            })))],
            usage: vec![node_usage(
                &serde_json::from_value(json!({
                    "kind": "NodeMetrics",
                    "metadata": {"name": "node-a"},
                    "timestamp": "2024-05-06T07:08:09Z",
                    "window": "20s",
                    "usage": {"cpu": "250m", "memory": "3Gi"}
                }))
                .unwrap(),
            )],
            persistent_volumes: vec![
                volume_capacity(&volume(json!({
                    "metadata": {"name": "pv-bound"},
                    "spec": {"capacity": {"storage": "10Gi"}, "claimRef": {"name": "data", "namespace": "shop", "kind": "PersistentVolumeClaim"}}
                }))),
                volume_capacity(&volume(json!({
                    "metadata": {"name": "pv-free"},
                    "spec": {"capacity": {"storage": "1Gi"}}
                }))),
            ],
        };
        let now = jiff::Timestamp::from_second(1_700_000_000).unwrap();
        let text = line(&info, now);
        assert_eq!(
            parse(&text),
            json!({
                "clusterInfo": {
                    "resources": [{
                        "nodeName": "node-a",
                        "instanceType": "m5.large",
                        "capacity": {"cpu": "2", "ephemeralStorage": "50Gi", "memory": "8Gi", "pods": "110"}
                    }],
                    "usage": [{
                        "nodeName": "node-a",
                        "startCollectingTimestamp": "2024-05-06T07:08:09Z",
                        "usage": {"cpu": "250m", "memory": "3Gi", "ephemeralStorage": "0", "pods": "0"}
                    }],
                    "persistentVolumes": [
                        {"name": "pv-bound", "capacity": "10Gi", "claim": {"name": "data", "namespace": "shop"}},
                        {"name": "pv-free", "capacity": "1Gi"}
                    ]
                },
                "level": "info",
                "metrics": true,
                "msg": "Cluster metrics logged successfully.",
                "time": "2023-11-14T22:13:20Z"
            })
        );
        // The keys in the original's order (logrus sorts them).
        let order: Vec<usize> = [
            "\"clusterInfo\"",
            "\"level\"",
            "\"metrics\"",
            "\"msg\"",
            "\"time\"",
        ]
        .iter()
        .map(|key| text.find(key).expect(key))
        .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert!(
            text.find("\"resources\"") < text.find("\"usage\"")
                && text.find("\"usage\"") < text.find("\"persistentVolumes\""),
            "{text}"
        );
    }

    #[test]
    fn an_empty_cluster_gives_empty_lists_not_null() {
        let text = line(&ClusterInfo::default(), jiff::Timestamp::UNIX_EPOCH);
        assert!(
            text.contains(r#""clusterInfo":{"resources":[],"usage":[],"persistentVolumes":[]}"#),
            "{text}"
        );
        assert_eq!(parse(&text)["time"], "1970-01-01T00:00:00Z");
    }

    #[test]
    fn missing_values_are_go_zero_values() {
        // No label, no status: "" and Go's zero quantity "0".
        assert_eq!(
            node_resources(&node(
                json!({"metadata": {"name": "bare", "labels": {"other": "x"}}})
            )),
            NodeResources {
                node_name: "bare".into(),
                instance_type: String::new(),
                capacity: NodeCapacity {
                    cpu: "0".into(),
                    ephemeral_storage: "0".into(),
                    memory: "0".into(),
                    pods: "0".into(),
                },
            }
        );
        let partial = node_resources(&node(json!({
            "metadata": {"name": "half"},
            "status": {"capacity": {"cpu": "4"}}
        })));
        assert_eq!(partial.capacity.cpu, "4");
        assert_eq!(partial.capacity.memory, "0");
        // A volume without capacity or claim.
        let bare = volume_capacity(&volume(json!({"metadata": {"name": "pv"}, "spec": {}})));
        assert_eq!(bare.capacity, "0");
        assert_eq!(bare.claim, None);
        let text = serde_json::to_string(&bare).unwrap();
        assert!(
            !text.contains("claim"),
            "an unbound volume has no claim key: {text}"
        );
        // NodeMetrics without timestamp or usage: Go's zero time and "0".
        let usage = node_usage(&NodeMetrics::default());
        assert_eq!(usage.start_collecting_timestamp, "0001-01-01T00:00:00Z");
        assert_eq!(usage.usage.cpu, "0");
        assert_eq!(usage.usage.memory, "0");
    }

    #[test]
    fn usage_never_carries_ephemeral_storage_or_pods() {
        let metrics: NodeMetrics = serde_json::from_value(json!({
            "metadata": {"name": "n"},
            "timestamp": "2024-01-01T00:00:00Z",
            "usage": {"cpu": "1", "memory": "1Ki", "ephemeral-storage": "5Gi", "pods": "7"}
        }))
        .unwrap();
        let usage = node_usage(&metrics).usage;
        assert_eq!(usage.ephemeral_storage, "0");
        assert_eq!(usage.pods, "0");
    }

    #[test]
    fn only_a_404_means_not_served() {
        let error = |code| {
            kube::Error::Api(Box::new(
                kube::core::Status::failure("x", "x").with_code(code),
            ))
        };
        assert!(is_not_served(&error(404)));
        assert!(!is_not_served(&error(403)));
        assert!(!is_not_served(&error(503)));
    }
}
