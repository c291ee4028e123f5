//! The manifests under `deploy/`, as a user installs them with
//! `kubectl apply -k deploy/`:
//!
//! - they render (without the kustomize binary: the kustomizations are kept to
//!   plain `resources:`, which this file renders itself), the Deployment is
//!   hardened, its `APP_*` settings parse as the agent parses them, and the
//!   RBAC covers exactly the names those settings point at;
//! - a real kube-apiserver accepts every object (server-side dry run, strict
//!   field validation, so a misspelt field fails instead of being dropped);
//! - the agent, running as the manifests' ServiceAccount (impersonated),
//!   connects and synchronizes, and is refused what it must not do.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use common::accounts;
use common::{World, CA_NS, CONFIG_NAME, LONG, NS, RUNTIME_ID, SHORT};
use compass_runtime_agent::config::{Settings, SourceKind};
use compass_runtime_agent::crd::application::Application;
use compass_runtime_agent::crd::{CompassConnection, ConnectionState, COMPASS_CONNECTION_NAME};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::ByteString;
use kube::api::{DeleteParams, ListParams, PatchParams, PostParams};
use kube::{Api, Client};
use serde::Deserialize;
use serde_json::Value;
use test_support::TestEnv;

const SERVICE_ACCOUNT: &str = "compass-runtime-agent";
const SERVICE_ACCOUNT_USER: &str = "system:serviceaccount:kyma-system:compass-runtime-agent";

// ---------------------------------------------------------------------------
// Rendering the kustomization
// ---------------------------------------------------------------------------

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

/// Kinds without a namespace that may appear in the manifests; kustomize's
/// `namespace:` leaves them alone. The dry-run test checks every object's
/// scope against the API server's discovery, so this list cannot go stale
/// unnoticed.
const CLUSTER_SCOPED_KINDS: &[&str] = &[
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "PriorityClass",
];

fn is_cluster_scoped(object: &Value) -> bool {
    CLUSTER_SCOPED_KINDS.contains(&object["kind"].as_str().unwrap_or_default())
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every document of a (multi-document) YAML file.
fn documents(path: &Path) -> Vec<Value> {
    let text = read(path);
    serde_yaml::Deserializer::from_str(&text)
        .map(|document| {
            Value::deserialize(document)
                .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
        })
        .filter(|document| !document.is_null())
        .collect()
}

/// What `kustomize build <dir>` prints, for kustomizations that use only
/// `resources:` (files or directories with their own kustomization),
/// `namespace:` and `labels:` (pairs, without selectors or templates).
/// Anything else fails loudly rather than being rendered wrong.
fn render(dir: &Path) -> Vec<Value> {
    let path = dir.join("kustomization.yaml");
    let kustomization: serde_yaml::Mapping = serde_yaml::from_str(&read(&path))
        .unwrap_or_else(|e| panic!("{} is not a YAML mapping: {e}", path.display()));
    let mut objects = Vec::new();
    let mut namespace = None;
    let mut labels = serde_json::Map::new();
    for (key, value) in &kustomization {
        let key = key.as_str().unwrap_or_default();
        match key {
            "apiVersion" | "kind" => {}
            "resources" => {
                for entry in value.as_sequence().expect("resources is a list") {
                    let entry = entry.as_str().expect("a resource is a path");
                    let resource = dir.join(entry);
                    if resource.is_dir() {
                        objects.extend(render(&resource));
                    } else {
                        objects.extend(documents(&resource));
                    }
                }
            }
            "namespace" => namespace = Some(value.as_str().expect("namespace").to_string()),
            "labels" => {
                for entry in value.as_sequence().expect("labels is a list") {
                    let entry: Value = serde_json::to_value(entry).unwrap();
                    for flag in ["includeSelectors", "includeTemplates"] {
                        assert!(
                            !entry[flag].as_bool().unwrap_or(false),
                            "{}: labels with {flag} are not rendered by this test",
                            path.display()
                        );
                    }
                    labels.extend(entry["pairs"].as_object().cloned().unwrap_or_default());
                }
            }
            other => panic!(
                "{}: this test renders kustomizations itself and knows `resources`, \
                 `namespace` and `labels` only, not `{other}`; keep the kustomization \
                 plain or teach render() the field",
                path.display()
            ),
        }
    }
    for object in &mut objects {
        // Like kustomize: `namespace:` overrides every namespaced object's namespace.
        if let Some(namespace) = &namespace {
            if !is_cluster_scoped(object) {
                object["metadata"]["namespace"] = namespace.clone().into();
            }
        }
        if !labels.is_empty() {
            let metadata = object["metadata"].as_object_mut().expect("metadata");
            let existing = metadata
                .entry("labels")
                .or_insert_with(|| Value::Object(Default::default()));
            existing
                .as_object_mut()
                .expect("labels is a mapping")
                .extend(labels.clone());
        }
    }
    objects
}

fn id(object: &Value) -> String {
    format!(
        "{} {}/{}",
        object["kind"].as_str().unwrap_or("?"),
        object["metadata"]["namespace"].as_str().unwrap_or("-"),
        object["metadata"]["name"].as_str().unwrap_or("?")
    )
}

fn of_kind<T: serde::de::DeserializeOwned>(objects: &[Value], kind: &str) -> Vec<T> {
    objects
        .iter()
        .filter(|o| o["kind"] == kind)
        .map(|o| {
            serde_json::from_value(o.clone())
                .unwrap_or_else(|e| panic!("{} does not parse as a {kind}: {e}", id(o)))
        })
        .collect()
}

fn the_deployment(objects: &[Value]) -> Deployment {
    let mut deployments: Vec<Deployment> = of_kind(objects, "Deployment");
    assert_eq!(deployments.len(), 1, "one Deployment in deploy/");
    deployments.remove(0)
}

// ---------------------------------------------------------------------------
// The agent's settings as the Deployment sets them
// ---------------------------------------------------------------------------

/// The Deployment's settings as the agent reads them.
fn settings_of(deployment: &Deployment) -> Settings {
    common::settings_of(deployment, &[])
}

// ---------------------------------------------------------------------------
// RBAC, evaluated from the rendered objects
// ---------------------------------------------------------------------------

/// The rules bound to the agent's ServiceAccount, each with the namespace it
/// applies in (`None`: everywhere, from a ClusterRoleBinding).
fn granted_rules(objects: &[Value]) -> Vec<(Option<String>, PolicyRule)> {
    let roles: Vec<Role> = of_kind(objects, "Role");
    let cluster_roles: Vec<ClusterRole> = of_kind(objects, "ClusterRole");
    let rules_of = |kind: &str, name: &str, namespace: Option<&str>| -> Vec<PolicyRule> {
        let rules = match kind {
            "Role" => roles
                .iter()
                .find(|r| {
                    r.metadata.name.as_deref() == Some(name)
                        && r.metadata.namespace.as_deref() == namespace
                })
                .map(|r| r.rules.clone()),
            "ClusterRole" => cluster_roles
                .iter()
                .find(|r| r.metadata.name.as_deref() == Some(name))
                .map(|r| r.rules.clone()),
            other => panic!("roleRef kind {other}"),
        };
        rules
            .unwrap_or_else(|| panic!("{kind} {namespace:?}/{name} is bound but not in deploy/"))
            .unwrap_or_default()
    };
    // (namespace of the binding, subjects, roleRef) of every binding.
    let role_bindings: Vec<RoleBinding> = of_kind(objects, "RoleBinding");
    let cluster_role_bindings: Vec<ClusterRoleBinding> = of_kind(objects, "ClusterRoleBinding");
    let bindings = role_bindings
        .into_iter()
        .map(|b| (b.metadata, b.subjects, b.role_ref))
        .chain(
            cluster_role_bindings
                .into_iter()
                .map(|b| (b.metadata, b.subjects, b.role_ref)),
        );
    let mut granted = Vec::new();
    for (metadata, subjects, role_ref) in bindings {
        let to_agent = subjects.iter().flatten().any(|s| {
            s.kind == "ServiceAccount"
                && s.name == SERVICE_ACCOUNT
                && s.namespace.as_deref() == Some(NS)
        });
        assert!(
            to_agent,
            "binding {:?} binds someone other than the agent's ServiceAccount: {subjects:?}",
            metadata.name
        );
        let namespace = metadata.namespace.clone();
        let rules = rules_of(
            &role_ref.kind,
            &role_ref.name,
            namespace.as_deref().filter(|_| role_ref.kind == "Role"),
        );
        granted.extend(rules.into_iter().map(|rule| (namespace.clone(), rule)));
    }
    granted
}

/// A request the agent makes: namespace (`None`: cluster-scoped or all
/// namespaces), API group, resource, verb, and the object name RBAC sees
/// (`None` for create, and for list/watch without a name field selector).
type Request<'a> = (Option<&'a str>, &'a str, &'a str, &'a str, Option<&'a str>);

const CC: &str = "compass.kyma-project.io";

fn connections<'a>(verb: &'a str, name: Option<&'a str>) -> Request<'a> {
    (None, CC, "compassconnections", verb, name)
}

fn applications<'a>(verb: &'a str, name: Option<&'a str>) -> Request<'a> {
    (
        None,
        "applicationconnector.kyma-project.io",
        "applications",
        verb,
        name,
    )
}

fn secrets<'a>(namespace: &'a str, verb: &'a str, name: Option<&'a str>) -> Request<'a> {
    (Some(namespace), "", "secrets", verb, name)
}

fn leases<'a>(namespace: &'a str, verb: &'a str, name: Option<&'a str>) -> Request<'a> {
    (Some(namespace), "coordination.k8s.io", "leases", verb, name)
}

fn allowed(granted: &[(Option<String>, PolicyRule)], request: Request<'_>) -> bool {
    let (namespace, group, resource, verb, name) = request;
    granted.iter().any(|(scope, rule)| {
        let in_scope = scope.is_none() || scope.as_deref() == namespace;
        let names = rule.resource_names.clone().unwrap_or_default();
        in_scope
            && rule.api_groups.iter().flatten().any(|g| g == group)
            && rule.resources.iter().flatten().any(|r| r == resource)
            && rule.verbs.iter().any(|v| v == verb)
            && (names.is_empty() || name.is_some_and(|n| names.iter().any(|m| m == n)))
    })
}

// ---------------------------------------------------------------------------
// 1. What the manifests say
// ---------------------------------------------------------------------------

#[test]
fn the_manifests_hold_each_object_once_each_namespaced_one_with_its_namespace() {
    let objects = render(&deploy_dir());

    // `kubectl apply -k` refuses duplicates, and a namespaced object without a
    // namespace would land in whatever namespace the user's context has.
    let mut seen = BTreeSet::new();
    for object in &objects {
        assert!(seen.insert(id(object)), "{} appears twice", id(object));
        if !is_cluster_scoped(object) {
            assert!(
                object["metadata"]["namespace"].is_string(),
                "{} has no namespace",
                id(object)
            );
        }
    }
    for expected in [
        "CustomResourceDefinition -/compassconnections.compass.kyma-project.io",
        "CustomResourceDefinition -/applications.applicationconnector.kyma-project.io",
        "ServiceAccount kyma-system/compass-runtime-agent",
        "Deployment kyma-system/compass-runtime-agent",
    ] {
        assert!(
            seen.contains(expected),
            "{expected} is missing from {seen:#?}"
        );
    }
}

#[test]
fn the_deployment_is_hardened_and_its_settings_fit_its_ports_and_probes() {
    let objects = render(&deploy_dir());
    let deployment = the_deployment(&objects);
    let spec = deployment.spec.clone();
    assert_eq!(spec.replicas, Some(1));
    let pod = spec.template.spec.clone().unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some(SERVICE_ACCOUNT));
    let pod_security = pod.security_context.clone().expect("a Pod securityContext");
    assert_eq!(pod_security.run_as_non_root, Some(true), "runAsNonRoot");
    assert!(
        pod_security.run_as_user.is_some_and(|uid| uid > 0),
        "a numeric non-root user, so the kubelet can check runAsNonRoot: {:?}",
        pod_security.run_as_user
    );
    assert_eq!(
        pod_security.seccomp_profile.map(|p| p.type_).as_deref(),
        Some("RuntimeDefault")
    );
    assert!(pod.termination_grace_period_seconds.is_some());
    assert_eq!(pod.containers.len(), 1);
    let container = &pod.containers[0];
    assert_eq!(
        container.image.as_deref(),
        Some("compass-runtime-agent:latest"),
        "the placeholder image that deploy/README.md tells to replace with `images:`"
    );
    let security = container
        .security_context
        .clone()
        .expect("a container securityContext");
    assert_eq!(
        security.read_only_root_filesystem,
        Some(true),
        "readOnlyRootFilesystem"
    );
    assert_eq!(
        security.allow_privilege_escalation,
        Some(false),
        "allowPrivilegeEscalation"
    );
    assert_ne!(security.privileged, Some(true), "privileged");
    let capabilities = security.capabilities.expect("capabilities");
    assert_eq!(capabilities.drop, Some(vec!["ALL".to_string()]));
    assert!(
        capabilities.add.unwrap_or_default().is_empty(),
        "no capability added"
    );
    let resources = container.resources.clone().expect("resources");
    for (what, quantities) in [
        ("requests", &resources.requests),
        ("limits", &resources.limits),
    ] {
        let quantities = quantities.clone().unwrap_or_default();
        assert!(
            quantities.contains_key("cpu") && quantities.contains_key("memory"),
            "cpu and memory {what}: {quantities:?}"
        );
    }

    // Its settings parse as the agent parses them, and fit the ports and probes.
    let settings = settings_of(&deployment);
    let port_of = |name: &str| -> i32 {
        container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no container port named {name}"))
            .container_port
    };
    assert_eq!(port_of("health"), i32::from(settings.health_port));
    for (probe, path) in [
        (&container.liveness_probe, "/healthz"),
        (&container.readiness_probe, "/readyz"),
    ] {
        let get = probe
            .clone()
            .and_then(|p| p.http_get)
            .expect("an HTTP probe");
        assert_eq!(get.path.as_deref(), Some(path));
        let port = match get.port {
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(port) => port,
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(name) => {
                port_of(&name)
            }
        };
        assert_eq!(
            port,
            i32::from(settings.health_port),
            "{path} probes the health port"
        );
    }
    let metrics: SocketAddr = settings
        .metrics_address
        .parse()
        .expect("APP_METRICS_ADDRESS is an address:port");
    assert!(
        metrics.ip().is_unspecified(),
        "metrics must listen on all addresses in a Pod, not {metrics}"
    );
    assert_eq!(port_of("metrics"), i32::from(metrics.port()));
    assert!(settings.leader_election, "APP_LEADER_ELECTION=true");
    let pod_name = container
        .env
        .iter()
        .flatten()
        .find(|v| v.name == "POD_NAME")
        .and_then(|v| v.value_from.clone())
        .and_then(|from| from.field_ref)
        .map(|field| field.field_path);
    assert_eq!(
        pod_name.as_deref(),
        Some("metadata.name"),
        "POD_NAME from the downward API"
    );
    assert_eq!(settings.agent_configuration_source, SourceKind::Auto);
}

#[test]
fn the_rbac_has_no_wildcard_and_grants_what_the_settings_point_at_and_no_more() {
    let objects = render(&deploy_dir());
    let settings = settings_of(&the_deployment(&objects));

    // No wildcard anywhere, nothing that hands out more rights.
    for kind in ["Role", "ClusterRole"] {
        for role in objects.iter().filter(|o| o["kind"] == kind) {
            for rule in role["rules"].as_array().expect("rules") {
                for field in ["apiGroups", "resources", "verbs", "resourceNames"] {
                    for value in rule[field].as_array().into_iter().flatten() {
                        assert_ne!(value, "*", "a wildcard in {field} of {}", id(role));
                    }
                }
                for verb in rule["verbs"].as_array().expect("verbs") {
                    assert!(
                        !["escalate", "bind", "impersonate", "deletecollection"]
                            .contains(&verb.as_str().unwrap_or_default()),
                        "{} grants {verb}",
                        id(role)
                    );
                }
            }
        }
    }

    // RBAC covers the names the settings point at, and no more.
    let granted = granted_rules(&objects);
    let config = &settings.agent_configuration_secret;
    let certificates = &settings.cluster_certificates_secret;
    let ca = &settings.ca_certificates_secret;
    let lease = &settings.leader_election_lease;
    let integration = settings.integration_namespace.as_str();
    let conn = Some(COMPASS_CONNECTION_NAME);
    let mut needed = vec![
        connections("create", None),
        connections("update", conn),
        (None, CC, "compassconnections/status", "update", conn),
        applications("list", None),
        // An idle sync lists nothing while these watches see no change.
        applications("watch", None),
        secrets(integration, "watch", None),
        applications("create", None),
        applications("get", Some("any-app")),
        applications("update", Some("any-app")),
        applications("delete", Some("any-app")),
        secrets(&certificates.namespace, "create", None),
        secrets(&ca.namespace, "create", None),
        secrets(integration, "list", None),
        secrets(integration, "create", None),
        leases(&lease.namespace, "create", None),
        (Some("default"), "events.k8s.io", "events", "create", None),
        (
            Some("default"),
            "events.k8s.io",
            "events",
            "patch",
            Some("compass-connection.1"),
        ),
    ];
    for verb in ["get", "list", "watch"] {
        // list and watch with fieldSelector metadata.name=…
        needed.push(connections(verb, conn));
        needed.push(secrets(&config.namespace, verb, Some(&config.name)));
        needed.push((
            Some(&config.namespace),
            "",
            "configmaps",
            verb,
            Some(&config.name),
        ));
    }
    for verb in ["get", "update"] {
        needed.push(secrets(
            &certificates.namespace,
            verb,
            Some(&certificates.name),
        ));
        needed.push(secrets(&ca.namespace, verb, Some(&ca.name)));
    }
    for verb in ["get", "update", "delete"] {
        needed.push(secrets(integration, verb, Some("app-bundle-id")));
    }
    for verb in ["get", "update"] {
        needed.push(leases(&lease.namespace, verb, Some(&lease.name)));
    }
    for request in needed {
        assert!(
            allowed(&granted, request),
            "the agent needs {request:?}, which deploy/ does not grant"
        );
    }
    let refused = [
        secrets("default", "get", Some("anything")),
        (None, "", "secrets", "list", None),
        secrets(&ca.namespace, "get", Some("another-secret")),
        secrets(&ca.namespace, "list", None),
        secrets(&config.namespace, "patch", Some(&config.name)),
        secrets(NS, "deletecollection", None),
        // Every write is get + update: no patch anywhere.
        secrets(&certificates.namespace, "patch", Some(&certificates.name)),
        secrets(&ca.namespace, "patch", Some(&ca.name)),
        connections("patch", conn),
        (None, CC, "compassconnections/status", "patch", conn),
        applications("patch", Some("any-app")),
        connections("delete", conn),
        connections("get", Some("another-connection")),
        connections("list", None),
        applications("deletecollection", None),
        (
            None,
            "rbac.authorization.k8s.io",
            "clusterroles",
            "create",
            None,
        ),
        (
            Some(NS),
            "",
            "configmaps",
            "get",
            Some("another-config-map"),
        ),
        (Some(NS), "", "configmaps", "list", None),
        (Some(NS), "", "pods", "list", None),
        leases(&lease.namespace, "update", Some("another-lease")),
        leases(&lease.namespace, "delete", Some(&lease.name)),
    ];
    for request in refused {
        assert!(
            !allowed(&granted, request),
            "deploy/ grants {request:?}, which the agent does not need"
        );
    }
}

// ---------------------------------------------------------------------------
// 2. The API server accepts them
// ---------------------------------------------------------------------------

async fn create_namespace(client: &Client, name: &str) {
    let mut namespace = Namespace::default();
    namespace.metadata.name = Some(name.into());
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap_or_else(|e| panic!("namespace {name} is created: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_accepts_every_object_in_a_dry_run() {
    compass_runtime_agent::agent::install_crypto_provider();
    let env = tokio::task::spawn_blocking(TestEnv::start_new)
        .await
        .expect("start thread")
        .expect("a test apiserver starts");
    let client = env.client().await;
    // Kyma has both; `default` exists in every cluster.
    create_namespace(&client, NS).await;
    create_namespace(&client, CA_NS).await;

    let objects = render(&deploy_dir());
    // Server-side apply of objects that do not exist = create. Dry run: nothing
    // is stored. Strict: an unknown or duplicate field is an error, where a
    // plain create would drop it with a warning (a misspelt
    // readOnlyRootFilesystem would quietly not apply).
    let params = PatchParams::apply("deploy-test")
        .validation_strict()
        .dry_run();
    let mut refused = Vec::new();
    for object in &objects {
        if let Err(error) = accounts::apply(&client, object, &params).await {
            refused.push(format!("{}: {error}", id(object)));
        }
    }
    assert!(
        refused.is_empty(),
        "the API server refuses objects of deploy/:\n{}",
        refused.join("\n")
    );
    assert!(
        objects.len() >= 13,
        "CRDs, ServiceAccount, RBAC, Deployment, Service: {}",
        objects.len()
    );
    let stored = Api::<Deployment>::namespaced(client.clone(), NS)
        .get_opt("compass-runtime-agent")
        .await
        .expect("Deployments can be read");
    assert!(stored.is_none(), "a dry run stores nothing");
}

// ---------------------------------------------------------------------------
// 3. The agent works with exactly these rights
// ---------------------------------------------------------------------------

/// Applies the ServiceAccount and RBAC of deploy/ for real (the CRDs are the
/// World's, which are the same; nothing runs the Deployment here), and
/// returns a client with a bound token of that ServiceAccount.
async fn deploy_rbac_client(world: &World) -> Client {
    let applied = accounts::apply_rbac(&world.client, &render(&deploy_dir())).await;
    assert!(
        applied >= 9,
        "ServiceAccount and 4 roles with their bindings: {applied}"
    );
    let token = accounts::service_account_token(&world.client, NS, SERVICE_ACCOUNT).await;
    accounts::token_client(world, &token, SERVICE_ACCOUNT_USER).await
}

/// What the API server answered a call: `Ok` or the HTTP status of the refusal.
fn status_of<T>(result: Result<T, kube::Error>) -> Result<(), u16> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) => Err(status.code),
        Err(other) => panic!("not an answer of the API server: {other}"),
    }
}

async fn may(
    client: &Client,
    namespace: &str,
    verb: &str,
    group: &str,
    resource: &str,
    name: &str,
) -> bool {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(namespace.into()),
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                name: (!name.is_empty()).then(|| name.to_string()),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .expect("a SelfSubjectAccessReview is answered")
        .status
        .is_some_and(|status| status.allowed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_runs_with_the_manifests_rbac_and_is_refused_everything_else() {
    let mut world = World::new().await;
    let agent_client = deploy_rbac_client(&world).await;

    // A Secret the agent has no business reading.
    let mut private = Secret::default();
    private.metadata.name = Some("not-for-the-agent".into());
    private.data = Some(BTreeMap::from([(
        "password".into(),
        ByteString(b"hunter2".to_vec()),
    )]));
    Api::<Secret>::namespaced(world.client.clone(), "default")
        .create(&PostParams::default(), &private)
        .await
        .expect("a Secret in default is created");

    let apps = compass_sim::model::generate_applications(3, 2, 1, 1);
    // Normalized: the Director normalizes them (the runtime's isNormalized
    // is "true", as the Director sets it), the agent keeps them.
    let names: BTreeSet<String> = apps
        .iter()
        .map(|a| compass_runtime_agent::sync::names::normalize_application_name(&a.name))
        .collect();
    for app in apps {
        world
            .sim
            .put_application(RUNTIME_ID, app)
            .expect("the application is added");
    }
    world.configure_with_fresh_token().await;
    // As the Deployment runs it: with leader election.
    world.settings.leader_election = true;
    world.start_agent_as(agent_client.clone()).await;
    let connection = world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    let sync_error = connection
        .status
        .and_then(|s| s.synchronization_status)
        .map(|s| s.error);
    assert_eq!(sync_error.as_deref(), Some(""), "no synchronization error");

    // The Applications, and every Secret they refer to.
    let in_cluster = Api::<Application>::all(world.client.clone())
        .list(&ListParams::default())
        .await
        .expect("Applications can be listed")
        .items;
    let found: BTreeSet<String> = in_cluster
        .iter()
        .filter_map(|a| a.metadata.name.clone())
        .collect();
    assert_eq!(
        found, names,
        "the Director's applications are in the cluster"
    );
    let integration_secrets = Api::<Secret>::namespaced(world.client.clone(), NS);
    let mut referred = BTreeSet::new();
    for app in &in_cluster {
        for entry in app.spec.services.iter().flat_map(|s| &s.entries) {
            if let Some(credentials) = &entry.credentials {
                referred.insert(credentials.secret_name.clone());
            }
            if !entry.request_parameters_secret_name.is_empty() {
                referred.insert(entry.request_parameters_secret_name.clone());
            }
        }
    }
    assert!(
        referred.len() >= 6,
        "3 applications × 2 bundles with credentials: {referred:?}"
    );
    for name in &referred {
        let secret = integration_secrets
            .get_opt(name)
            .await
            .expect("Secrets can be read");
        assert!(secret.is_some(), "the credential Secret {NS}/{name} exists");
    }
    // The client certificate and the CA, where the Go agent keeps them.
    let certificate = world
        .certificate_secret()
        .await
        .expect("the client certificate Secret");
    for key in ["crt", "key", "crtChain"] {
        assert!(
            certificate.get(key).is_some_and(|v| !v.is_empty()),
            "key {key}"
        );
    }
    let ca = Api::<Secret>::namespaced(world.client.clone(), CA_NS)
        .get("ca-certificates")
        .await
        .expect("the CA Secret istio-system/ca-certificates exists");
    assert!(ca.data.unwrap_or_default().contains_key("cacert"));

    // The Events of the CompassConnection (an RBAC refusal would only be
    // logged at debug level, so look for them). The agent publishes the
    // Event before it writes the state, so it is there already.
    let events = Api::<Event>::namespaced(world.client.clone(), "default");
    test_support::wait_for(
        "an Event `Synchronized` on compass-connection in namespace default",
        SHORT,
        || async {
            let list = events
                .list(&ListParams::default())
                .await
                .map_err(|e| format!("cannot list Events: {e}"))?;
            let seen: Vec<String> = list.items.iter().filter_map(|e| e.reason.clone()).collect();
            list.items
                .into_iter()
                .find(|event| {
                    let regarding = event.regarding.clone().unwrap_or_default();
                    regarding.kind.as_deref() == Some("CompassConnection")
                        && regarding.name.as_deref() == Some(COMPASS_CONNECTION_NAME)
                        && event.reason.as_deref() == Some("Synchronized")
                        && event.reporting_controller.as_deref() == Some("compass-runtime-agent")
                })
                .ok_or(format!("Events with reasons {seen:?}"))
        },
    )
    .await;

    // Refused: 403 for each, as the agent.
    let as_agent = &agent_client;
    let forbidden = Err(403);
    assert_eq!(
        status_of(
            Api::<Secret>::namespaced(as_agent.clone(), "default")
                .get("not-for-the-agent")
                .await
        ),
        forbidden,
        "reading a Secret in namespace default"
    );
    assert_eq!(
        status_of(
            Api::<Secret>::all(as_agent.clone())
                .list(&ListParams::default())
                .await
        ),
        forbidden,
        "listing Secrets in all namespaces"
    );
    assert_eq!(
        status_of(
            Api::<Secret>::namespaced(as_agent.clone(), CA_NS)
                .list(&ListParams::default())
                .await
        ),
        forbidden,
        "listing Secrets in {CA_NS}"
    );
    assert_eq!(
        status_of(
            Api::<CompassConnection>::all(as_agent.clone())
                .delete(COMPASS_CONNECTION_NAME, &DeleteParams::default())
                .await
        ),
        forbidden,
        "deleting the CompassConnection"
    );
    assert!(
        world.connection().await.is_some(),
        "compass-connection is still there"
    );
    let mut role = ClusterRole::default();
    role.metadata.name = Some("agent-made-role".into());
    assert_eq!(
        status_of(
            Api::<ClusterRole>::all(as_agent.clone())
                .create(&PostParams::default(), &role)
                .await
        ),
        forbidden,
        "creating a ClusterRole"
    );

    // Leader election's Lease in kyma-system: read, create, renew; no other Lease.
    let lease = "compass-runtime-agent";
    let (group, resource) = ("coordination.k8s.io", "leases");
    for verb in ["get", "update"] {
        assert!(
            may(as_agent, NS, verb, group, resource, lease).await,
            "{verb} the Lease {NS}/{lease}"
        );
    }
    assert!(
        may(as_agent, NS, "create", group, resource, "").await,
        "create the Lease"
    );
    assert!(
        !may(as_agent, NS, "update", group, resource, "another-lease").await,
        "update another Lease"
    );
    assert!(
        !may(as_agent, NS, "delete", group, resource, lease).await,
        "delete the Lease"
    );

    world.stop_agent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_manifests_rbac_the_agent_connects_synchronizes_renews_reconnects_and_restarts() {
    let mut world = World::new().await;
    let agent_client = deploy_rbac_client(&world).await;
    let objects = render(&deploy_dir());
    world.adopt_settings(settings_of(&the_deployment(&objects)));
    common::drop_in::run(&mut world, &agent_client, common::drop_in::Rbac::Watches).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_default_settings_a_config_map_alone_connects_and_the_status_says_so() {
    let mut world = World::new().await;
    let agent_client = deploy_rbac_client(&world).await;
    let objects = render(&deploy_dir());
    world.adopt_settings(settings_of(&the_deployment(&objects)));
    world.settings.leader_election = false;
    assert_eq!(
        world.settings.agent_configuration_source,
        Settings::defaults().agent_configuration_source,
        "the default"
    );
    // As the seed's documentation says: a ConfigMap, and no Secret.
    let token = world.sim.issue_token(RUNTIME_ID).expect("a token");
    world.write_config_map(world.config_values(&token)).await;
    world.start_agent_as(agent_client).await;
    let connection = world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    assert_eq!(
        connection
            .status
            .unwrap()
            .connection_status
            .configuration_source,
        format!("ConfigMap {NS}/{CONFIG_NAME}")
    );
    // A Secret, once there, comes first.
    world.stop_agent().await;
    world.configure_with_fresh_token().await;
    world
        .connections()
        .delete(COMPASS_CONNECTION_NAME, &DeleteParams::default())
        .await
        .expect("the CompassConnection is deleted");
    world.start_agent_as(deploy_rbac_client(&world).await).await;
    world
        .wait_for_connection("the Secret as the source", LONG, |c| {
            c.status.as_ref().is_some_and(|s| {
                s.connection_state == ConnectionState::Synchronized
                    && s.connection_status.configuration_source
                        == format!("Secret {NS}/{CONFIG_NAME}")
            })
        })
        .await;
    world.stop_agent().await;
}
