//! What the agent may do in the cluster beyond the verbs it cannot work
//! without, asked of the API server at start (SelfSubjectAccessReview).
//!
//! The agent runs under the RBAC Kyma grants the original Go agent as well as
//! under its own: every write it makes is a get + create / update (replace
//! with the resourceVersion) / delete, which both grant. What only some roles
//! grant has a way around it, chosen here and said once in the log:
//! - listing the credential Secrets → reading each one it needs by name;
//! - watching the Applications and the credential Secrets → listing them at
//!   every sync instead of keeping what the last sync read while nothing
//!   changes (`k8s::applications::kept`);
//! - watching the configuration source → reading it every poll period;
//! - reading a ConfigMap as the configuration source → the Secret only;
//! - publishing Kubernetes Events → none (logs and status say it all);
//! - listing Nodes and PersistentVolumes → no cluster metrics line;
//! - listing NodeMetrics (`metrics.k8s.io`) → the line's `usage` is empty.
//!
//! A 403 later on (a role changed while the agent runs) turns the matching
//! permission off the same way (see [`Permission::refused`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::{Api, Client, Resource};
use tokio_util::sync::CancellationToken;

use crate::config::{Settings, SourceKind};
use crate::crd::application::Application;
use crate::report::Report;

const WATCH_CLUSTER_STATE: &str = "watch the Applications and the credential Secrets";

/// Namespace of the Events about the cluster-scoped CompassConnection.
pub const EVENTS_NAMESPACE: &str = "default";

/// The longest wait between two tries of the access questions.
const MAX_PROBE_DELAY: Duration = Duration::from_secs(30);

/// A permission the agent can do without.
pub struct Permission {
    what: &'static str,
    allowed: AtomicBool,
}

impl Permission {
    fn new(what: &'static str, allowed: bool) -> Permission {
        Permission {
            what,
            allowed: AtomicBool::new(allowed),
        }
    }

    pub fn allowed(&self) -> bool {
        self.allowed.load(Ordering::Relaxed)
    }

    /// The API server refused it after all: use the way around from now on.
    /// Says so in the log the first time only.
    pub fn refused(&self, error: &kube::Error) {
        if self.allowed.swap(false, Ordering::Relaxed) {
            tracing::warn!(error = %Report(error), "the API server refused to {}; doing without it from now on", self.what);
        }
    }
}

/// The answers, as the agent uses them.
pub struct Access {
    /// `list` Secrets in the integration namespace; else each is read by name.
    pub list_credential_secrets: Permission,
    /// `watch` the Applications (cluster-wide) and the Secrets in the
    /// integration namespace; else the cluster is listed at every sync.
    pub watch_cluster_state: Permission,
    /// `list` + `watch` the configuration Secret; else it is polled.
    pub watch_source_secret: bool,
    /// `get` the configuration ConfigMap (auto and configmap sources).
    pub read_source_config_map: bool,
    /// `list` + `watch` the configuration ConfigMap; else it is polled.
    pub watch_source_config_map: bool,
    /// `create` Events; else none are published.
    pub events: Permission,
    /// With leader election on: `get`, `create` and `update` of the Lease.
    /// Leader election has no way around: without them the agent does not
    /// start (see `agent::StartError`).
    pub leader_lease: bool,
    /// `list` Nodes and PersistentVolumes (asked only while the cluster
    /// metrics line is on); else the line is off.
    pub cluster_metrics: bool,
    /// `list` NodeMetrics (`metrics.k8s.io` nodes); else the cluster metrics
    /// line's `usage` is empty.
    pub node_metrics: Permission,
}

impl Access {
    /// Everything allowed: for tests and for clusters without RBAC.
    pub fn everything() -> Access {
        Access::from_answers(Answers {
            list_credential_secrets: true,
            watch_cluster_state: true,
            watch_source_secret: true,
            read_source_config_map: true,
            watch_source_config_map: true,
            events: true,
            leader_lease: true,
            cluster_metrics: true,
            node_metrics: true,
        })
    }

    /// For a single read with no sync after it (`diff`): nothing to keep
    /// the cluster's state for, so nothing is watched.
    pub fn for_one_read(mut self) -> Access {
        self.watch_cluster_state = Permission::new(WATCH_CLUSTER_STATE, false);
        self
    }

    fn from_answers(answers: Answers) -> Access {
        Access {
            list_credential_secrets: Permission::new(
                "list the credential Secrets",
                answers.list_credential_secrets,
            ),
            watch_cluster_state: Permission::new(WATCH_CLUSTER_STATE, answers.watch_cluster_state),
            watch_source_secret: answers.watch_source_secret,
            read_source_config_map: answers.read_source_config_map,
            watch_source_config_map: answers.watch_source_config_map,
            events: Permission::new("publish Kubernetes Events", answers.events),
            leader_lease: answers.leader_lease,
            cluster_metrics: answers.cluster_metrics,
            node_metrics: Permission::new(
                "list the nodes' metrics (metrics.k8s.io) for the cluster metrics line's usage",
                answers.node_metrics,
            ),
        }
    }

    /// Asks the API server, again and again while it does not answer (it
    /// may be restarting: the answers decide the agent's ways for its whole
    /// life, and a missing Lease permission stops it). `None` when `shutdown`
    /// comes first. A review the API server refuses (e.g. a 403 on the review
    /// itself) counts as "no": every way around works with the verbs the
    /// agent needs anyway, so the agent is slower at worst, never stuck.
    pub async fn probe(
        client: &Client,
        settings: &Settings,
        shutdown: &CancellationToken,
    ) -> Option<Access> {
        let mut delay = Duration::from_millis(500);
        let started = std::time::Instant::now();
        loop {
            let asked = tokio::select! {
                _ = shutdown.cancelled() => return None,
                asked = Access::ask(client, settings) => asked,
            };
            match asked {
                Ok(access) => return Some(access),
                Err(error) => {
                    let waited = started.elapsed().as_secs();
                    let limit = settings.startup_timeout.as_secs();
                    tracing::warn!(error = %Report(&error), "the API server does not answer what the agent may do; asking again in {delay:?} (waited {waited}s; the agent gives up after {limit}s, APP_STARTUP_TIMEOUT)")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(MAX_PROBE_DELAY);
        }
    }

    async fn ask(client: &Client, settings: &Settings) -> Result<Access, kube::Error> {
        let source = &settings.agent_configuration_secret;
        let integration = settings.integration_namespace.as_str();
        let secret_source = settings.agent_configuration_source != SourceKind::ConfigMap;
        let config_map_source = settings.agent_configuration_source != SourceKind::Secret;
        let name = Some(source.name.as_str());
        let ns = source.namespace.as_str();
        let (list_secrets, source_secret_list, source_secret_watch) = tokio::try_join!(
            may(client, integration, "list", "secrets", None),
            may(client, ns, "list", "secrets", name),
            may(client, ns, "watch", "secrets", name),
        )?;
        let application_group = Application::group(&());
        let (watch_secrets, watch_applications) = tokio::try_join!(
            may(client, integration, "watch", "secrets", None),
            may_in(
                client,
                "",
                "watch",
                &application_group,
                "applications",
                None
            ),
        )?;
        let (config_map_get, config_map_list, config_map_watch, events) = tokio::try_join!(
            may(client, ns, "get", "configmaps", name),
            may(client, ns, "list", "configmaps", name),
            may(client, ns, "watch", "configmaps", name),
            may(client, EVENTS_NAMESPACE, "create", "events", None),
        )?;
        let lease = &settings.leader_election_lease;
        let leader_lease = if settings.leader_election {
            let lease_name = Some(lease.name.as_str());
            let (get, create, update) = tokio::try_join!(
                may(client, &lease.namespace, "get", "leases", lease_name),
                may(client, &lease.namespace, "create", "leases", None),
                may(client, &lease.namespace, "update", "leases", lease_name),
            )?;
            get && create && update
        } else {
            true
        };
        let interval = settings.metrics_logging_time_interval;
        let (nodes, volumes, node_metrics) = if interval.is_zero() {
            (false, false, false)
        } else {
            tokio::try_join!(
                may_in(client, "", "list", "", "nodes", None),
                may_in(client, "", "list", "", "persistentvolumes", None),
                may_in(client, "", "list", "metrics.k8s.io", "nodes", None),
            )?
        };
        let answers = Answers {
            list_credential_secrets: list_secrets,
            // Only a listed state can be kept.
            watch_cluster_state: list_secrets && watch_secrets && watch_applications,
            watch_source_secret: secret_source && source_secret_list && source_secret_watch,
            read_source_config_map: config_map_source && config_map_get,
            watch_source_config_map: config_map_source
                && config_map_get
                && config_map_list
                && config_map_watch,
            events,
            leader_lease,
            cluster_metrics: nodes && volumes,
            node_metrics,
        };
        let access = Access::from_answers(answers);
        tracing::info!(
            credential_secrets = if access.list_credential_secrets.allowed() { "listed" } else { "read one by one by name (no list on Secrets)" },
            cluster_state = describe_cluster_state(list_secrets, watch_secrets, watch_applications),
            configuration_source = %access.describe_source(settings),
            events = if access.events.allowed() { "published" } else { "not published (no create on events.k8s.io Events in namespace default)" },
            cluster_metrics = %describe_cluster_metrics(interval, nodes, volumes, node_metrics),
            "Kubernetes access checked",
        );
        Ok(access)
    }

    fn describe_source(&self, settings: &Settings) -> String {
        let source = &settings.agent_configuration_secret;
        let how = |watched: bool| if watched { "watched" } else { "polled" };
        match settings.agent_configuration_source {
            SourceKind::Secret => format!("Secret {source} {}", how(self.watch_source_secret)),
            SourceKind::ConfigMap if self.read_source_config_map => {
                format!("ConfigMap {source} {}", how(self.watch_source_config_map))
            }
            SourceKind::ConfigMap => format!("ConfigMap {source}, which the agent may not read"),
            SourceKind::Auto if self.read_source_config_map => format!(
                "Secret {source} {}, else ConfigMap {source} {}",
                how(self.watch_source_secret),
                how(self.watch_source_config_map)
            ),
            SourceKind::Auto => format!(
                "Secret {source} {} (the ConfigMap of that name may not be read)",
                how(self.watch_source_secret)
            ),
        }
    }

    /// Whether the configuration source must be polled: some kind the agent
    /// reads cannot be watched.
    pub fn source_needs_polling(&self, kind: SourceKind) -> bool {
        let secret_unwatched = kind != SourceKind::ConfigMap && !self.watch_source_secret;
        let config_map_unwatched = kind != SourceKind::Secret
            && self.read_source_config_map
            && !self.watch_source_config_map;
        secret_unwatched || config_map_unwatched
    }
}

struct Answers {
    list_credential_secrets: bool,
    watch_cluster_state: bool,
    watch_source_secret: bool,
    read_source_config_map: bool,
    watch_source_config_map: bool,
    events: bool,
    leader_lease: bool,
    cluster_metrics: bool,
    node_metrics: bool,
}

/// How a sync reads the Applications and the credential Secrets, for the
/// log line at start.
fn describe_cluster_state(
    list_secrets: bool,
    watch_secrets: bool,
    watch_applications: bool,
) -> &'static str {
    match (list_secrets, watch_secrets, watch_applications) {
        (false, _, _) => "read at every sync",
        (true, true, true) => "kept between syncs while watches see no change",
        (true, false, true) => "listed at every sync (no watch on Secrets)",
        (true, true, false) => "listed at every sync (no watch on Applications)",
        (true, false, false) => "listed at every sync (no watch on Applications or Secrets)",
    }
}

/// How the cluster metrics line works, for the log line at start.
fn describe_cluster_metrics(
    interval: Duration,
    nodes: bool,
    volumes: bool,
    node_metrics: bool,
) -> String {
    if interval.is_zero() {
        return "off (APP_METRICS_LOGGING_TIME_INTERVAL is 0)".into();
    }
    let missing: Vec<&str> = [(nodes, "nodes"), (volumes, "persistentvolumes")]
        .into_iter()
        .filter(|(allowed, _)| !allowed)
        .map(|(_, resource)| resource)
        .collect();
    if !missing.is_empty() {
        return format!("off (no list on {})", missing.join(" and "));
    }
    if node_metrics {
        format!("logged every {interval:?}")
    } else {
        format!("logged every {interval:?}, with an empty usage (no list on metrics.k8s.io nodes)")
    }
}

/// Whether the API server lets this client do `verb` on `resource` (core
/// group, `events.k8s.io` for events, `coordination.k8s.io` for leases);
/// `false` when it refuses the question; an error when it did not answer
/// (unreachable, 5xx, 429), so that the question is asked again.
async fn may(
    client: &Client,
    namespace: &str,
    verb: &'static str,
    resource: &'static str,
    name: Option<&str>,
) -> Result<bool, kube::Error> {
    let group = match resource {
        "events" => "events.k8s.io",
        "leases" => "coordination.k8s.io",
        _ => "",
    };
    may_in(client, namespace, verb, group, resource, name).await
}

/// [`may`] with the API group named; namespace "" for cluster-scoped
/// resources.
async fn may_in(
    client: &Client,
    namespace: &str,
    verb: &'static str,
    group: &str,
    resource: &'static str,
    name: Option<&str>,
) -> Result<bool, kube::Error> {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(namespace.into()),
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                name: name.map(String::from),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    match Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
    {
        Ok(answer) => Ok(answer.status.is_some_and(|status| status.allowed)),
        Err(kube::Error::Api(status)) if status.code < 500 && status.code != 429 => {
            tracing::warn!(code = status.code, reason = %status.reason, verb, group, resource, namespace, "the API server refuses to say what the agent may do; assuming it may not");
            Ok(false)
        }
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_permission_stays_off() {
        let permission = Permission::new("do it", true);
        assert!(permission.allowed());
        let forbidden = || {
            kube::Error::Api(Box::new(
                kube::core::Status::failure("forbidden", "Forbidden").with_code(403),
            ))
        };
        permission.refused(&forbidden());
        assert!(!permission.allowed());
        permission.refused(&forbidden());
        assert!(!permission.allowed());
    }

    #[test]
    fn the_cluster_state_is_kept_only_when_both_kinds_may_be_watched_and_secrets_listed() {
        assert_eq!(
            describe_cluster_state(true, true, true),
            "kept between syncs while watches see no change"
        );
        assert_eq!(
            describe_cluster_state(true, false, false),
            "listed at every sync (no watch on Applications or Secrets)"
        );
        assert_eq!(
            describe_cluster_state(true, false, true),
            "listed at every sync (no watch on Secrets)"
        );
        // Kyma's RBAC: neither list nor watch on Secrets.
        assert_eq!(
            describe_cluster_state(false, false, false),
            "read at every sync"
        );
    }

    #[test]
    fn the_cluster_metrics_line_is_off_without_nodes_or_volumes() {
        let every = Duration::from_secs(1800);
        assert_eq!(
            describe_cluster_metrics(Duration::ZERO, true, true, true),
            "off (APP_METRICS_LOGGING_TIME_INTERVAL is 0)"
        );
        assert_eq!(
            describe_cluster_metrics(every, false, false, true),
            "off (no list on nodes and persistentvolumes)"
        );
        assert_eq!(
            describe_cluster_metrics(every, true, false, true),
            "off (no list on persistentvolumes)"
        );
        assert_eq!(
            describe_cluster_metrics(every, true, true, true),
            "logged every 1800s"
        );
        assert_eq!(
            describe_cluster_metrics(every, true, true, false),
            "logged every 1800s, with an empty usage (no list on metrics.k8s.io nodes)"
        );
    }

    #[test]
    fn the_source_is_polled_when_a_kind_it_reads_cannot_be_watched() {
        let mut access = Access::everything();
        assert!(!access.source_needs_polling(SourceKind::Auto));
        access.watch_source_config_map = false;
        assert!(access.source_needs_polling(SourceKind::Auto));
        assert!(!access.source_needs_polling(SourceKind::Secret));
        access.read_source_config_map = false;
        // A ConfigMap that cannot be read is not polled either.
        assert!(!access.source_needs_polling(SourceKind::Auto));
        access.watch_source_secret = false;
        assert!(access.source_needs_polling(SourceKind::Secret));
    }
}
