//! `/healthz` (the process is alive), `/readyz` (the agent holds a certificate
//! that is valid now) and `/metrics`, on the health port; `/metrics` also on a
//! listener of its own (APP_METRICS_ADDRESS).
//!
//! `/healthz` answers as long as the process serves HTTP: a liveness probe
//! must not restart the agent because Compass or the API server is down,
//! which a restart would not mend. Kyma's NetworkPolicy admits traffic to the
//! agent's Pod on the health port only, hence `/metrics` there as well.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

use super::metrics::MetricsRegistry;
use crate::report::Report;

/// The validity of the certificate the agent holds, readable from any task.
#[derive(Default)]
pub struct Readiness {
    not_before: AtomicI64,
    not_after: AtomicI64,
    /// A replica waiting for the leader Lease is ready: it can take over,
    /// and a rolling update must be able to start it before the old leader
    /// stops.
    standby: AtomicBool,
}

impl Readiness {
    pub fn set_certificate(&self, not_before: jiff::Timestamp, not_after: jiff::Timestamp) {
        self.not_before
            .store(not_before.as_second(), Ordering::Relaxed);
        self.not_after
            .store(not_after.as_second(), Ordering::Relaxed);
    }

    pub fn clear(&self) {
        self.not_before.store(0, Ordering::Relaxed);
        self.not_after.store(0, Ordering::Relaxed);
    }

    pub fn set_standby(&self, standby: bool) {
        self.standby.store(standby, Ordering::Relaxed);
    }

    pub fn is_standby(&self) -> bool {
        self.standby.load(Ordering::Relaxed)
    }

    pub fn is_ready(&self) -> bool {
        let now = jiff::Timestamp::now().as_second();
        let not_after = self.not_after.load(Ordering::Relaxed);
        not_after > 0 && self.not_before.load(Ordering::Relaxed) <= now && now < not_after
    }
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(readiness): State<Arc<Readiness>>) -> impl IntoResponse {
    if readiness.is_standby() {
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
    }
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
