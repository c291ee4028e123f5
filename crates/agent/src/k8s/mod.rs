//! The Kubernetes side: the connection resource, the credentials Secrets, the
//! Applications with their Secrets, and what the agent may do (the custom
//! resources' types are in `crate::crd`).

pub mod access;
pub mod applications;
pub mod client;
pub mod connection;
pub mod credentials_store;
pub mod errors;
pub mod events;
pub mod metadata_list;
pub mod metrics;
pub mod replace;

use kube::api::PostParams;
use kube::runtime::watcher;

/// The name the agent's writes carry in `metadata.managedFields`, so that an
/// operator sees who owns which fields. Without it the apiserver falls back to
/// the client's user agent, which the kube client does not send: "unknown".
pub const FIELD_MANAGER: &str = "compass-runtime-agent";

/// Parameters of a create or replace, under the agent's field manager.
pub fn write_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    }
}

/// A watch of only the object called `name`.
pub fn by_name(name: &str) -> watcher::Config {
    watcher::Config::default().fields(&format!("metadata.name={name}"))
}
