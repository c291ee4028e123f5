//! The custom resources, as Rust types. The YAML under `deploy/crds/` is
//! generated from them (`compass-runtime-agent crd`).

pub mod application;
pub mod compass_connection;
pub mod labels;
pub mod names;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use application::{Application, ApplicationSpec};
pub use compass_connection::{
    CompassConnection, CompassConnectionSpec, CompassConnectionStatus, ConnectionState,
    COMPASS_CONNECTION_NAME,
};

/// Both CRDs, in the order they are written to `deploy/crds/`.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![CompassConnection::crd(), application_crd()]
}

/// The Application CRD keeps the original's semantics: `status` is part of the
/// object (Kyma's application operator writes it with plain updates), not a
/// subresource. A status subresource would make those writes no-ops.
fn application_crd() -> CustomResourceDefinition {
    let mut crd = Application::crd();
    for version in &mut crd.spec.versions {
        version.subresources = None;
    }
    crd
}

/// The CRDs as one multi-document YAML stream.
pub fn to_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in all() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}
