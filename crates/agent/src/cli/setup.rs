//! What the commands that read and exit (`status`, `diff`) start with: an
//! async runtime, and a Kubernetes client with the agent's deadlines, so
//! that an API server that stops answering costs a timeout, not a command
//! that never returns.

use crate::config::Settings;
use crate::k8s::client::{self, Deadlines};
use crate::k8s::metrics::KubernetesMetrics;
use crate::report::report;

/// A single-threaded runtime, or `None` after saying on standard error why
/// there is none (the caller exits 2).
pub fn current_thread_runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => Some(runtime),
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            None
        }
    }
}

/// A client from the caller's kubeconfig (or in-cluster), each request
/// within `APP_KUBERNETES_REQUEST_TIMEOUT` as the agent's own; the error
/// says what failed.
pub async fn kubernetes_client(
    settings: &Settings,
    metrics: std::sync::Arc<KubernetesMetrics>,
) -> Result<kube::Client, String> {
    let config = kube::Config::infer().await.map_err(|error| {
        format!("cannot configure the Kubernetes client (KUBECONFIG or in-cluster): {error}")
    })?;
    client::build(
        config,
        Deadlines::for_request_timeout(settings.kubernetes_request_timeout),
        metrics,
    )
    .map_err(|error| report(&error))
}
