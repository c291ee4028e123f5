//! `/healthz` (the process is alive), `/readyz` (the agent holds a certificate
//! that is valid now) and `/metrics`, on the health port; `/metrics` also on a
//! listener of its own (APP_METRICS_ADDRESS).
//!
//! `/healthz` answers ok while the process works: its controller runs, waits
//! for the API server at start, or stands by for the leader Lease. It fails
//! once the controller has ended by itself (a panic, a watch that ended),
//! from then until the process exits (the agent then exits non-zero; see
//! `crate::agent`), and while the liveness check the process installs says the
//! agent makes no progress (no cycle has recorded its outcome for long while
//! one was due: a last resort, see `controller::progress`). It does not
//! depend on Compass answering: a cycle that reports a Compass outage is
//! progress. Kyma's NetworkPolicy admits traffic to the agent's Pod on the
//! health port only, hence `/metrics` there as well.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

use super::metrics::MetricsRegistry;
use crate::report::Report;

/// What the health endpoints answer from, readable and set from any task.
#[derive(Default)]
pub struct Readiness {
    /// Whether the agent holds a client certificate valid now.
    ready: OnceLock<ReadyCheck>,
    /// A replica waiting for the leader Lease is ready: it can take over,
    /// and a rolling update must be able to start it before the old leader
    /// stops.
    standby: AtomicBool,
    /// Why the controller ended by itself, once it has.
    controller_stopped: OnceLock<String>,
    /// Why the agent makes no progress, if it makes none.
    liveness: OnceLock<LivenessCheck>,
}

/// Says why the agent makes no progress, or `None` while it does.
pub type LivenessCheck = Box<dyn Fn() -> Option<String> + Send + Sync>;

/// Says whether the agent holds a client certificate valid now.
pub type ReadyCheck = Box<dyn Fn() -> bool + Send + Sync>;

impl Readiness {
    /// Installs the check `/readyz` asks at each probe (when the replica
    /// does not stand by); the first one stays. Not ready until one is.
    pub fn set_ready_check(&self, check: ReadyCheck) {
        let _ = self.ready.set(check);
    }

    pub fn set_standby(&self, standby: bool) {
        self.standby.store(standby, Ordering::Relaxed);
    }

    pub fn is_standby(&self) -> bool {
        self.standby.load(Ordering::Relaxed)
    }

    /// The controller ended without being asked to (`why`): `/healthz` and
    /// `/readyz` fail from now on. The first reason is kept.
    pub fn set_controller_stopped(&self, why: String) {
        let _ = self.controller_stopped.set(why);
    }

    /// Why the controller ended by itself, if it has.
    pub fn controller_stopped(&self) -> Option<&str> {
        self.controller_stopped.get().map(String::as_str)
    }

    /// Installs the check `/healthz` asks at each probe; the first one stays.
    pub fn set_liveness(&self, check: LivenessCheck) {
        let _ = self.liveness.set(check);
    }

    /// Why the agent is not alive, if it is not.
    pub fn not_alive(&self) -> Option<String> {
        if let Some(why) = self.controller_stopped() {
            return Some(format!("the controller is not running: {why}"));
        }
        self.liveness.get().and_then(|check| check())
    }

    pub fn is_ready(&self) -> bool {
        self.ready.get().is_some_and(|check| check())
    }
}

fn controller_stopped(why: &str) -> (StatusCode, String) {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the controller is not running: {why}"),
    )
}

async fn healthz(State(readiness): State<Arc<Readiness>>) -> (StatusCode, String) {
    match readiness.not_alive() {
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
        None => (StatusCode::OK, "ok".into()),
    }
}

async fn readyz(State(readiness): State<Arc<Readiness>>) -> (StatusCode, String) {
    if let Some(why) = readiness.controller_stopped() {
        return controller_stopped(why);
    }
    let (status, text) = if readiness.is_standby() {
        (
            StatusCode::OK,
            "standby: another replica holds the leader Lease",
        )
    } else if readiness.is_ready() {
        (StatusCode::OK, "ok")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "no valid client certificate",
        )
    };
    (status, text.into())
}

async fn metrics(State(metrics): State<Arc<MetricsRegistry>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.render(),
    )
}

/// Binds the health listener (`/healthz`, `/readyz`, `/metrics`); returns its
/// address (port 0 picks a free one).
pub async fn serve_health(
    address: SocketAddr,
    readiness: Arc<Readiness>,
    metrics: Arc<MetricsRegistry>,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(readiness)
        .merge(metrics_router(metrics));
    serve(address, router, shutdown).await
}

pub async fn serve_metrics(
    address: SocketAddr,
    metrics: Arc<MetricsRegistry>,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    serve(address, metrics_router(metrics), shutdown).await
}

fn metrics_router(metrics: Arc<MetricsRegistry>) -> Router {
    Router::new()
        .route("/metrics", get(self::metrics))
        .with_state(metrics)
}

async fn serve(
    address: SocketAddr,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        let server =
            axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned());
        if let Err(error) = server.await {
            tracing::error!(error = %Report(&error), "HTTP endpoint stopped");
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(address: SocketAddr, path: &str) -> (u16, String) {
        let response = reqwest::get(format!("http://{address}{path}"))
            .await
            .expect("the health endpoint answers");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    #[tokio::test]
    async fn healthz_fails_while_no_progress_is_made_and_once_the_controller_stopped() {
        let readiness = Arc::new(Readiness::default());
        let shutdown = CancellationToken::new();
        let address = serve_health(
            "127.0.0.1:0".parse().unwrap(),
            readiness.clone(),
            Arc::new(MetricsRegistry::new(|_| {})),
            shutdown.clone(),
        )
        .await
        .unwrap();
        // Starting, standing by, or without a certificate: alive.
        assert_eq!(get(address, "/healthz").await, (200, "ok".into()));
        readiness.set_standby(true);
        assert_eq!(get(address, "/healthz").await.0, 200);
        assert_eq!(get(address, "/readyz").await.0, 200);

        // No progress: /healthz fails, and comes back when there is.
        let stalled = Arc::new(std::sync::atomic::AtomicBool::new(true));
        readiness.set_liveness(Box::new({
            let stalled = stalled.clone();
            move || {
                stalled
                    .load(Ordering::Relaxed)
                    .then(|| "no cycle for 100s".to_string())
            }
        }));
        assert_eq!(
            get(address, "/healthz").await,
            (503, "no cycle for 100s".into())
        );
        stalled.store(false, Ordering::Relaxed);
        assert_eq!(get(address, "/healthz").await, (200, "ok".into()));

        readiness.set_controller_stopped("it panicked: boom".into());
        readiness.set_controller_stopped("a later reason".into());
        for path in ["/healthz", "/readyz"] {
            assert_eq!(
                get(address, path).await,
                (
                    503,
                    "the controller is not running: it panicked: boom".into()
                ),
                "{path}"
            );
        }
        shutdown.cancel();
    }

    #[test]
    fn ready_only_while_the_installed_check_says_so() {
        let readiness = Readiness::default();
        assert!(!readiness.is_ready(), "not before a check is installed");
        let valid = Arc::new(AtomicBool::new(false));
        readiness.set_ready_check(Box::new({
            let valid = valid.clone();
            move || valid.load(Ordering::Relaxed)
        }));
        assert!(!readiness.is_ready());
        valid.store(true, Ordering::Relaxed);
        assert!(readiness.is_ready());
    }
}
