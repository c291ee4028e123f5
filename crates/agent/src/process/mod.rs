//! The process, apart from the reconcile: start-up (the endpoints, the
//! access review and what it decides), Lease election, running the controller
//! and following the configuration source, the task that recreates
//! `compass-connection`, and the shutdown. The reconcile (`crate::controller`)
//! does not know whether it runs under a Lease.

pub mod configuration;
pub mod controller;
pub mod election;
pub mod keeper;
pub mod memory;
pub mod shutdown;

use std::net::SocketAddr;
use std::sync::Arc;

use kube::runtime::watcher;
use tokio_util::sync::CancellationToken;

pub use self::controller::{fault, ControllerError};
use crate::config::Settings;
pub use crate::controller::metrics::AgentMetrics;
use crate::controller::progress::{self, CycleProgress};
use crate::controller::Context;
use crate::k8s::access::Access;
use crate::report::Report;
use crate::telemetry::health::{self, Readiness};

/// Watches only the object called `name`.
fn by_name(name: &str) -> watcher::Config {
    watcher::Config::default().fields(&format!("metadata.name={name}"))
}

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
        let progress = Arc::new(CycleProgress::default());
        metrics.controller.watch_progress(progress.clone());
        readiness.set_liveness(Box::new({
            let progress = progress.clone();
            let bound = progress::liveness_bound(settings.cycle_timeout, settings.max_retry_delay);
            move || progress.stalled(std::time::Instant::now(), bound)
        }));
        let health = health::serve_health(
            SocketAddr::new(settings.health_address, settings.health_port),
            readiness.clone(),
            metrics.registry.clone(),
            shutdown.clone(),
        )
        .await?;
        let metrics_address = match settings.metrics_address.trim() {
            "" => None,
            text => {
                let address: SocketAddr = text
                    .parse()
                    .map_err(|_| StartError::MetricsAddress(text.to_string()))?;
                Some(
                    health::serve_metrics(address, metrics.registry.clone(), shutdown.clone())
                        .await?,
                )
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
        tokio::spawn(crate::telemetry::cluster_metrics::run(
            client.clone(),
            settings.metrics_logging_time_interval,
            access.clone(),
            readiness.clone(),
            shutdown.clone(),
        ));
        let ctx = Arc::new(Context::new(
            client,
            settings,
            &metrics,
            readiness.clone(),
            progress,
            access,
        )?);
        let controller = if ctx.settings.leader_election {
            let election = election::ElectionConfig::from_settings(&ctx.settings);
            tokio::spawn(election::run_elected(
                ctx,
                election,
                shutdown.clone(),
                faults,
            ))
        } else {
            metrics.controller.set_leader(true);
            tokio::spawn(controller::run(ctx, shutdown.clone(), faults))
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
