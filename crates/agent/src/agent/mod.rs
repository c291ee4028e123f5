//! The agent as a process, apart from the reconcile: start-up (the
//! endpoints, the access review and what it decides, the probes wired to the
//! controller, the metrics registry), `election` (the Lease), `runner`
//! (running kube-runtime's controller, and how it ends), `configuration`
//! (following the configuration source), `keeper` (recreating
//! `compass-connection`), `cluster_metrics` (the metering line), `memory`
//! (the heap) and `shutdown` (the in-flight guard). The reconcile
//! (`crate::controller`) does not know whether it runs under a Lease. The
//! command line, the tests and the demo start it as [`Agent`].

pub mod cluster_metrics;
pub mod configuration;
pub mod election;
pub mod keeper;
pub mod memory;
pub mod runner;
pub mod shutdown;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

pub use self::runner::{fault, ControllerError};
use crate::config::Settings;
use crate::controller::metrics::AgentMetrics;
use crate::controller::progress;
use crate::controller::Context;
use crate::k8s::access::Access;
use crate::report::Report;
use crate::telemetry::health::{self, Readiness};
use crate::telemetry::metrics::MetricsRegistry;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot set up the agent")]
    Setup(#[from] std::io::Error),
    #[error("APP_METRICS_ADDRESS {0:?} is not an address:port")]
    MetricsAddress(String),
    #[error("APP_LEADER_ELECTION is on, but the agent may not get, create and update the Lease {0} (coordination.k8s.io leases): grant them, or turn leader election off and run one replica")]
    LeaseForbidden(crate::config::NamespacedName),
    /// The shutdown came while the agent waited for the API server.
    #[error("stopped before the API server answered")]
    Stopped,
    #[error("the API server did not answer within {0:?} (APP_STARTUP_TIMEOUT)")]
    ApiServerUnreachable(std::time::Duration),
    #[error("cannot build the Kubernetes client")]
    Client(#[from] crate::k8s::client::ClientError),
}

/// Where the agent's HTTP endpoints ended up (ports may be chosen at start).
#[derive(Clone, Debug)]
pub struct Endpoints {
    pub health: SocketAddr,
    pub metrics: Option<SocketAddr>,
}

/// Installs the process-wide rustls crypto provider (aws-lc-rs); idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A running agent.
pub struct Agent {
    pub endpoints: Endpoints,
    pub metrics: AgentMetrics,
    pub readiness: Arc<Readiness>,
    task: tokio::task::JoinHandle<Result<(), ControllerError>>,
    shutdown: CancellationToken,
}

impl Agent {
    /// Starts the agent as it runs in a cluster: its Kubernetes client is
    /// built from `config` with the deadlines of `settings`
    /// (`k8s::client`). Returns once the API server has answered.
    pub async fn connect(
        config: kube::Config,
        settings: Settings,
        shutdown: CancellationToken,
    ) -> Result<Agent, StartError> {
        install_crypto_provider();
        let metrics = AgentMetrics::new();
        let client = crate::k8s::client::build(
            config,
            crate::k8s::client::Deadlines::for_request_timeout(settings.kubernetes_request_timeout),
            metrics.kubernetes.clone(),
        )?;
        Agent::start_with(client, metrics, settings, shutdown, fault::Hook::from_env()).await
    }

    /// Starts the endpoints and the controller with a client of the
    /// caller's; returns once the API server has answered.
    pub async fn start(
        client: kube::Client,
        settings: Settings,
        shutdown: CancellationToken,
    ) -> Result<Agent, StartError> {
        Agent::start_with_faults(client, settings, shutdown, fault::Hook::from_env()).await
    }

    /// As [`Agent::start`], with the controller's test fault hook on or off
    /// (see [`fault`]; only debug builds can turn it on).
    pub async fn start_with_faults(
        client: kube::Client,
        settings: Settings,
        shutdown: CancellationToken,
        faults: fault::Hook,
    ) -> Result<Agent, StartError> {
        Agent::start_with(client, AgentMetrics::new(), settings, shutdown, faults).await
    }

    async fn start_with(
        client: kube::Client,
        metrics: AgentMetrics,
        settings: Settings,
        shutdown: CancellationToken,
        faults: fault::Hook,
    ) -> Result<Agent, StartError> {
        install_crypto_provider();
        let readiness = Arc::new(Readiness::default());
        let registry = metrics_registry(&metrics);
        let health = health::serve_health(
            SocketAddr::new(settings.health_address, settings.health_port),
            readiness.clone(),
            registry.clone(),
            shutdown.clone(),
        )
        .await?;
        let metrics_address = match settings.metrics_address.trim() {
            "" => None,
            text => {
                let address: SocketAddr = text
                    .parse()
                    .map_err(|_| StartError::MetricsAddress(text.to_string()))?;
                Some(health::serve_metrics(address, registry, shutdown.clone()).await?)
            }
        };
        let access = match tokio::time::timeout(
            settings.startup_timeout,
            Access::probe(&client, &settings, &shutdown),
        )
        .await
        {
            Ok(Some(access)) => access,
            Ok(None) => return Err(StartError::Stopped),
            Err(_) => return Err(StartError::ApiServerUnreachable(settings.startup_timeout)),
        };
        let access = Arc::new(access);
        if !access.leader_lease {
            return Err(StartError::LeaseForbidden(
                settings.leader_election_lease.clone(),
            ));
        }
        tokio::spawn(cluster_metrics::run(
            client.clone(),
            settings.metrics_logging_time_interval,
            access.clone(),
            readiness.clone(),
            shutdown.clone(),
        ));
        let ctx = Arc::new(Context::new(client, settings, &metrics, access)?);
        wire_probes(&ctx, &metrics, &readiness);
        let controller = if ctx.settings.leader_election {
            let election = election::ElectionConfig::from_settings(&ctx.settings);
            tokio::spawn(election::run_elected(
                ctx,
                readiness.clone(),
                election,
                shutdown.clone(),
                faults,
            ))
        } else {
            metrics.controller.set_leader(true);
            tokio::spawn(runner::run(ctx, shutdown.clone(), faults))
        };
        let task = tokio::spawn(watch_controller(controller, readiness.clone()));
        Ok(Agent {
            endpoints: Endpoints {
                health,
                metrics: metrics_address,
            },
            metrics,
            readiness,
            task,
            shutdown,
        })
    }

    /// Stops the agent and waits until the current reconcile has ended.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }

    /// Waits until the agent stops: `Ok` when its shutdown token was
    /// cancelled elsewhere, `Err` when the controller ended by itself (the
    /// leader Lease is released by then). The endpoints keep serving until
    /// the shutdown token is cancelled, `/healthz` failing.
    pub async fn wait(self) -> Result<(), ControllerError> {
        ControllerError::of_task(self.task.await)
    }
}

/// The registry `/metrics` serves: every layer's metrics, prefixed
/// `compass_runtime_agent_`.
fn metrics_registry(metrics: &AgentMetrics) -> Arc<MetricsRegistry> {
    Arc::new(MetricsRegistry::new(|registry| metrics.register(registry)))
}

/// What the probes read of the controller: `/healthz` fails while no cycle
/// records its outcome for too long while one is due, `cycle_overdue_seconds`
/// says how long, and `/readyz` answers ready while the certificate the
/// reconcile works with is valid.
fn wire_probes(ctx: &Context, metrics: &AgentMetrics, readiness: &Readiness) {
    metrics.controller.watch_progress(ctx.progress.clone());
    readiness.set_liveness(Box::new({
        let progress = ctx.progress.clone();
        let bound =
            progress::liveness_bound(ctx.settings.cycle_timeout, ctx.settings.max_retry_delay);
        move || progress.stalled(std::time::Instant::now(), bound)
    }));
    readiness.set_ready_check(Box::new({
        let in_use = ctx.certificate_in_use.clone();
        move || in_use.is_valid_at(jiff::Timestamp::now())
    }));
}

/// Awaits the controller's task (or the election's, which watches its
/// controller), so that its end is never dropped: a panic (caught as the
/// task's `JoinError`; under `panic = "abort"` the process dies of SIGABRT
/// instead), an error or a stream that ended fails `/healthz` at once and is
/// returned by [`Agent::wait`], which ends the command non-zero.
async fn watch_controller(
    controller: tokio::task::JoinHandle<Result<(), ControllerError>>,
    readiness: Arc<Readiness>,
) -> Result<(), ControllerError> {
    let ended = ControllerError::of_task(controller.await);
    if let Err(error) = &ended {
        readiness.set_controller_stopped(Report(error).to_string());
        tracing::error!(error = %Report(error), "the controller ended by itself; the agent stops");
    }
    ended
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::compass_connection::ConnectionState;

    #[test]
    fn every_layers_metrics_render_with_the_prefix_and_units() {
        let metrics = AgentMetrics::new();
        metrics
            .kubernetes
            .record_write("Application", "create", true);
        metrics.compass.record("configuration", "ok", 0.01);
        metrics
            .controller
            .set_connection_state(ConnectionState::Synchronized);
        let now = jiff::Timestamp::now().as_second();
        metrics.controller.set_certificate(now + 100, now + 70);
        let text = metrics_registry(&metrics).render();
        assert!(text.contains(r#"compass_runtime_agent_kubernetes_writes_total{kind="Application",verb="create",outcome="Success"} 1"#), "{text}");
        assert!(
            text.contains(r#"compass_runtime_agent_connection_state{state="Synchronized"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"compass_runtime_agent_connection_state{state="ConnectionFailed"} 0"#),
            "{text}"
        );
        assert!(
            text.contains("compass_runtime_agent_compass_request_duration_seconds_bucket"),
            "{text}"
        );
        assert!(
            text.contains(
                "# TYPE compass_runtime_agent_certificate_not_after_timestamp_seconds gauge"
            ),
            "{text}"
        );
        // Computed at the scrape.
        let left = text
            .lines()
            .find(|l| l.starts_with("compass_runtime_agent_certificate_expiry_seconds "))
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap();
        assert!((95.0..=100.0).contains(&left), "{left}");
        assert!(
            text.contains(&format!(
                "compass_runtime_agent_certificate_renewal_due_timestamp_seconds {}",
                now + 70
            )),
            "{text}"
        );
        assert_eq!(metrics.kubernetes.successful_writes(), 1);
    }
}
