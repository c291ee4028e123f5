//! Running the agent as production runs it: as a ServiceAccount, with a bound
//! token from the TokenRequest API (not the admin certificate), under RBAC
//! read from manifests; and the manifests themselves, applied as they are.

use std::path::{Path, PathBuf};

use k8s_openapi::api::authentication::v1::{SelfSubjectReview, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{
    ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams, TypeMeta,
};
use kube::config::{AuthInfo, Kubeconfig};
use kube::discovery::{self, Scope};
use kube::{Api, Client};
use serde::Deserialize;
use serde_json::Value;

use super::World;

/// Every document of a (multi-document) YAML file.
pub fn yaml_documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|document| {
            Value::deserialize(document)
                .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
        })
        .filter(|document| !document.is_null())
        .collect()
}

/// `Kind namespace/name` of a manifest object.
pub fn object_id(object: &Value) -> String {
    format!(
        "{} {}/{}",
        object["kind"].as_str().unwrap_or("?"),
        object["metadata"]["namespace"].as_str().unwrap_or("-"),
        object["metadata"]["name"].as_str().unwrap_or("?")
    )
}

/// The Api for a manifest object, from the API server's discovery; checks
/// that the object has a namespace exactly when its kind is namespaced.
pub async fn api_for(client: &Client, object: &Value) -> Result<Api<DynamicObject>, String> {
    let types: TypeMeta = serde_json::from_value(object.clone()).map_err(|e| e.to_string())?;
    let gvk = GroupVersionKind::try_from(&types).map_err(|e| e.to_string())?;
    let (resource, capabilities): (ApiResource, _) = discovery::pinned_kind(client, &gvk)
        .await
        .map_err(|e| format!("not served by the API server: {e}"))?;
    match (capabilities.scope, object["metadata"]["namespace"].as_str()) {
        (Scope::Namespaced, Some(namespace)) => {
            Ok(Api::namespaced_with(client.clone(), namespace, &resource))
        }
        (Scope::Cluster, None) => Ok(Api::all_with(client.clone(), &resource)),
        (scope, namespace) => Err(format!(
            "scope {scope:?} but namespace {namespace:?} (is CLUSTER_SCOPED_KINDS right?)"
        )),
    }
}

/// Server-side apply of one manifest object.
pub async fn apply(client: &Client, object: &Value, params: &PatchParams) -> Result<(), String> {
    let api = api_for(client, object).await?;
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    api.patch(name, params, &Patch::Apply(object))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The kinds that make up an account and its rights.
pub const RBAC_KINDS: [&str; 5] = [
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
];

/// Applies the ServiceAccount and RBAC objects among `objects` (as the
/// admin); returns how many.
pub async fn apply_rbac(client: &Client, objects: &[Value]) -> usize {
    let params = PatchParams::apply("e2e-rbac").validation_strict().force();
    let mut applied = 0;
    for object in objects
        .iter()
        .filter(|o| RBAC_KINDS.contains(&o["kind"].as_str().unwrap_or_default()))
    {
        apply(client, object, &params)
            .await
            .unwrap_or_else(|e| panic!("{} is applied: {e}", object_id(object)));
        applied += 1;
    }
    applied
}

/// A bound token of the ServiceAccount `namespace/name`, from the
/// TokenRequest API (valid for an hour), as the kubelet mounts one into a Pod.
pub async fn service_account_token(client: &Client, namespace: &str, name: &str) -> String {
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let answer: TokenRequest = Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .create_subresource("token", name, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("a token for ServiceAccount {namespace}/{name}: {e}"));
    answer
        .status
        .and_then(|status| status.token)
        .filter(|token| !token.is_empty())
        .expect("the TokenRequest answer carries a token")
}

/// A kubeconfig with only this token as credentials (no client
/// certificate), for the same API server as `world`'s.
pub fn token_kubeconfig(world: &World, token: &str) -> Kubeconfig {
    let mut kubeconfig = Kubeconfig::read_from(world.env.kubeconfig_path())
        .expect("the test environment's kubeconfig parses");
    for user in &mut kubeconfig.auth_infos {
        user.auth_info = Some(AuthInfo {
            token: Some(token.to_string().into()),
            ..AuthInfo::default()
        });
    }
    kubeconfig
}

/// A client that authenticates with the ServiceAccount's token only; checks
/// that the API server takes it for `user`.
pub async fn token_client(world: &World, token: &str, user: &str) -> Client {
    let config = kube::Config::from_custom_kubeconfig(
        token_kubeconfig(world, token),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .expect("a client configuration from the token kubeconfig");
    let client = Client::try_from(config).expect("a token client");
    let review = Api::<SelfSubjectReview>::all(client.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .expect("the API server says who the token is");
    let username = review
        .status
        .and_then(|status| status.user_info)
        .and_then(|info| info.username);
    assert_eq!(username.as_deref(), Some(user), "the token's identity");
    client
}

/// Writes the token kubeconfig to `dir` (readable by any user: the agent's
/// process may run as another user) and returns its path.
pub fn write_token_kubeconfig(world: &World, token: &str, dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("kubeconfig");
    let text =
        serde_yaml::to_string(&token_kubeconfig(world, token)).expect("the kubeconfig encodes");
    std::fs::write(&path, text).expect("the kubeconfig is written");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
        .expect("the kubeconfig is readable");
    path
}

/// The RBAC objects of `deploy/agent/` (the files its kustomization lists).
pub fn deploy_rbac() -> Vec<Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/agent");
    let kustomization: Value = yaml_documents(&dir.join("kustomization.yaml"))
        .pop()
        .expect("deploy/agent/kustomization.yaml");
    kustomization["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .flat_map(|file| yaml_documents(&dir.join(file.as_str().expect("a path"))))
        .filter(|object| RBAC_KINDS.contains(&object["kind"].as_str().unwrap_or("")))
        .collect()
}
