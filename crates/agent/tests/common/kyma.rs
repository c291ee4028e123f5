//! What Kyma's application-connector module deploys for the original agent
//! today (`tests/fixtures/kyma/`, verbatim): its CRDs (no status
//! subresources), its ServiceAccount and RBAC, and its Deployment.

use std::path::{Path, PathBuf};

use compass_runtime_agent::config::Settings;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

use super::{accounts, World};

pub const SERVICE_ACCOUNT: &str = "compass-runtime-agent";
pub const SERVICE_ACCOUNT_USER: &str = "system:serviceaccount:kyma-system:compass-runtime-agent";

/// Variables Kyma's Deployment sets that this agent has no use for (the
/// original's old gateway port and upload service).
pub const IGNORED_SETTINGS: [&str; 2] = ["APP_GATEWAY_PORT", "APP_UPLOAD_SERVICE_URL"];

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/kyma")
        .join(name)
}

pub fn objects() -> Vec<Value> {
    accounts::yaml_documents(&fixture("compass-runtime-agent.yaml"))
}

pub fn crds() -> Vec<CustomResourceDefinition> {
    accounts::yaml_documents(&fixture("crds.yaml"))
        .into_iter()
        .map(|crd| serde_json::from_value(crd).expect("a Kyma CRD parses"))
        .collect()
}

pub fn deployment() -> Deployment {
    let deployment = objects()
        .into_iter()
        .find(|o| o["kind"] == "Deployment")
        .expect("Kyma's Deployment is in the fixture");
    serde_json::from_value(deployment).expect("Kyma's Deployment parses")
}

/// The agent's settings as Kyma's Deployment sets them.
pub fn settings() -> Settings {
    super::settings_of(&deployment(), &IGNORED_SETTINGS)
}

/// The `APP_*` variables of Kyma's Deployment, as its container gets them.
pub fn environment() -> Vec<(String, String)> {
    deployment().spec.template.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|var| (var.name, var.value.unwrap_or_default()))
        .collect()
}

/// A world with Kyma's CRDs, Kyma's ServiceAccount and RBAC, and the agent's
/// settings as Kyma's Deployment sets them.
pub async fn world() -> World {
    world_with_sim(compass_sim::SimConfig::default()).await
}

/// [`world`] with compass-sim started as `sim_config` says.
pub async fn world_with_sim(sim_config: compass_sim::SimConfig) -> World {
    let mut world = World::with_crds_apiserver_args_and_sim(crds(), Vec::new(), sim_config).await;
    let applied = accounts::apply_rbac(&world.client, &objects()).await;
    assert_eq!(
        applied, 9,
        "ServiceAccount, ClusterRole and 3 Roles with their bindings"
    );
    world.adopt_settings(settings());
    world
}
