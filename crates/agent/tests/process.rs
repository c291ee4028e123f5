//! A process whose exit code, health and metrics tell the truth.
//!
//! - A controller that ends by itself (a panic, a watch that ends) ends the
//!   process non-zero, the leader Lease released first so that a standby
//!   takes over at once; `/healthz` fails from that moment. The controller is
//!   made to end with the test fault hook (`agent::fault`, debug builds
//!   only): the annotation it names on `compass-connection`.
//! - `reconciles_total` counts each failed cycle under its category, never
//!   as a success.
//!
//! The exit code is what the kubelet sees of the binary; `/healthz` is asked
//! over HTTP, as its liveness probe asks, of an agent in-process (the binary
//! exits as soon as the Lease is released, which leaves a probe no time).

mod common;

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use common::{free_port, World, LONG, NS, RUNTIME_ID, SHORT};
use compass_runtime_agent::agent::fault;
use compass_runtime_agent::crd::{ConnectionState, COMPASS_CONNECTION_NAME};
use compass_sim::{FaultKind, FaultTimes};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Patch, PatchParams};
use kube::Api;
use test_support::wait_for;
use tokio::process::{Child, Command};

const LEASE: &str = "compass-runtime-agent";
/// Long, so that a Lease handed over at once cannot be mistaken for one
/// that expired.
const LEASE_DURATION: Duration = Duration::from_secs(20);

/// The agent binary, as a Deployment runs it.
struct AgentProcess {
    child: Child,
    metrics: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// Leader election on, as `identity`, with the Lease of these tests.
fn elected(identity: &str) -> Vec<(&'static str, String)> {
    vec![
        ("APP_LEADER_ELECTION", "true".into()),
        ("APP_LEADER_ELECTION_LEASE", format!("{NS}/{LEASE}")),
        (
            "APP_LEADER_ELECTION_LEASE_DURATION",
            format!("{}s", LEASE_DURATION.as_secs()),
        ),
        ("APP_LEADER_ELECTION_IDENTITY", identity.into()),
    ]
}

fn with_fault_hook(mut env: Vec<(&'static str, String)>) -> Vec<(&'static str, String)> {
    env.push((fault::ENV, "1".into()));
    env
}

impl AgentProcess {
    async fn start(world: &World, env: &[(&'static str, String)]) -> AgentProcess {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("agent.log");
        let (health_port, metrics_port) = (free_port(), free_port());
        let output = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_compass-runtime-agent"))
            .env("KUBECONFIG", world.env.kubeconfig_path())
            .env(
                "APP_COMPASS_CA_BUNDLE",
                world.settings.compass_ca_bundle.as_ref().unwrap(),
            )
            .env("APP_MINIMAL_COMPASS_SYNC_TIME", "1s")
            .env("APP_CONTROLLER_SYNC_PERIOD", "3s")
            .env("APP_COMPASS_REQUEST_TIMEOUT", "3s")
            .env("APP_MAX_RETRY_DELAY", "4s")
            .env("APP_HEALTH_ADDRESS", "127.0.0.1")
            .env("APP_HEALTH_PORT", health_port.to_string())
            .env("APP_METRICS_ADDRESS", format!("127.0.0.1:{metrics_port}"))
            .env("APP_LOG_LEVEL", "info")
            .envs(env.iter().map(|(name, value)| (*name, value.as_str())))
            .stdout(output.try_clone().expect("log file"))
            .stderr(output)
            .kill_on_drop(true)
            .spawn()
            .expect("the agent binary starts");
        let process = AgentProcess {
            child,
            metrics: format!("http://127.0.0.1:{metrics_port}/metrics"),
            log,
            _dir: dir,
        };
        wait_for("the agent's metrics endpoint", SHORT, || async {
            reqwest::get(&process.metrics).await.ok().map(|_| ())
        })
        .await;
        process
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The exit status, which must come within `within`.
    async fn exit_within(&mut self, within: Duration) -> ExitStatus {
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => status.expect("the agent's exit status"),
            Err(_) => panic!(
                "the agent still runs {within:?} after its controller was made to end; log:\n{}",
                self.log()
            ),
        }
    }

    async fn metrics(&self) -> String {
        reqwest::get(&self.metrics)
            .await
            .expect("metrics answer")
            .text()
            .await
            .expect("metrics body")
    }
}

/// Puts the fault hook's annotation on `compass-connection` (`None` removes it).
async fn ask_the_controller_to(world: &World, fault: Option<&str>) {
    world
        .connections()
        .patch(
            COMPASS_CONNECTION_NAME,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({
                "metadata": { "annotations": { fault::ANNOTATION: fault } }
            })),
        )
        .await
        .expect("the annotation is written");
}

async fn lease_holder(world: &World) -> Option<String> {
    Api::<Lease>::namespaced(world.client.clone(), NS)
        .get_opt(LEASE)
        .await
        .expect("the Lease can be read")?
        .spec?
        .holder_identity
        .filter(|holder| !holder.is_empty())
}

/// One sample of a metric with exactly these labels (as rendered); 0 when
/// the series does not exist yet.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// What a probe of `path` gets: the status and the body (0 when no answer).
#[cfg(debug_assertions)]
async fn healthz(address: std::net::SocketAddr, path: &str) -> (u16, String) {
    match reqwest::get(format!("http://{address}{path}")).await {
        Ok(response) => (
            response.status().as_u16(),
            response.text().await.unwrap_or_default(),
        ),
        Err(error) => (0, format!("no answer: {error}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(debug_assertions),
    ignore = "the controller's fault hook exists in debug builds only"
)]
async fn a_leader_whose_controller_panics_exits_non_zero_and_the_standby_takes_the_lease_at_once() {
    let world = World::new().await;
    world.configure_with_fresh_token().await;
    let mut leader = AgentProcess::start(&world, &with_fault_hook(elected("replica-a"))).await;
    world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    assert_eq!(lease_holder(&world).await.as_deref(), Some("replica-a"));
    let standby = AgentProcess::start(&world, &elected("replica-b")).await;
    wait_for("replica-b to stand by", SHORT, || async {
        standby
            .log()
            .contains("leader election: waiting for the Lease")
            .then_some(())
    })
    .await;

    ask_the_controller_to(&world, Some("panic")).await;
    let exit = leader.exit_within(SHORT).await;
    let exited_at = Instant::now();
    let log = leader.log();
    assert!(!exit.success(), "exit {exit:?}; log:\n{log}");
    // Unwinding: the panic is caught as the task's end, and the command
    // returns 1 (under panic = "abort" the kubelet would see SIGABRT).
    assert_eq!(exit.code(), Some(1), "log:\n{log}");
    assert!(log.contains("test fault: the reconcile panics"), "{log}");
    assert!(log.contains("released the leader Lease"), "{log}");

    wait_for("replica-b to take the Lease", LEASE_DURATION, || async {
        (lease_holder(&world).await.as_deref() == Some("replica-b")).then_some(())
    })
    .await;
    let takeover = exited_at.elapsed();
    println!("takeover {takeover:?} after the leader exited (lease duration {LEASE_DURATION:?})");
    assert!(
        takeover < LEASE_DURATION / 2,
        "the standby took the Lease after {takeover:?}: it expired rather than being released"
    );
    // The new leader works (the annotation means nothing without the hook).
    wait_for("replica-b to lead", SHORT, || async {
        (sample(&standby.metrics().await, "compass_runtime_agent_leader") == 1.0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(debug_assertions),
    ignore = "the controller's fault hook exists in debug builds only"
)]
async fn without_leader_election_a_controller_that_panics_or_whose_watch_ends_exits_non_zero() {
    let world = World::new().await;
    world.configure_with_fresh_token().await;
    for (fault, says) in [
        ("panic", "test fault: the reconcile panics"),
        (
            "end",
            "its watch of CompassConnection compass-connection ended",
        ),
    ] {
        let mut agent = AgentProcess::start(&world, &with_fault_hook(Vec::new())).await;
        world
            .wait_for_state(ConnectionState::Synchronized, LONG)
            .await;
        ask_the_controller_to(&world, Some(fault)).await;
        let exit = agent.exit_within(SHORT).await;
        let log = agent.log();
        assert_eq!(exit.code(), Some(1), "{fault}: exit {exit:?}; log:\n{log}");
        assert!(
            log.contains(says),
            "{fault}: no {says:?} in the log:\n{log}"
        );
        assert!(
            log.contains("the controller ended by itself; the agent stops"),
            "{fault}: {log}"
        );
        ask_the_controller_to(&world, None).await;
    }
}

/// An agent in-process with the fault hook on; returns it and its shutdown.
#[cfg(debug_assertions)]
async fn start_with_fault_hook(
    world: &World,
    settings: compass_runtime_agent::config::Settings,
) -> (
    compass_runtime_agent::agent::Agent,
    tokio_util::sync::CancellationToken,
) {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let agent = compass_runtime_agent::agent::Agent::start_with_faults(
        world.env.client().await,
        settings,
        shutdown.clone(),
        fault::Hook::enabled(),
    )
    .await
    .expect("the agent starts");
    (agent, shutdown)
}

#[cfg(debug_assertions)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_fails_from_the_moment_the_controller_panicked() {
    use compass_runtime_agent::agent::ControllerError;

    let world = World::new().await;
    world.configure_with_fresh_token().await;
    let (agent, shutdown) = start_with_fault_hook(&world, world.settings.clone()).await;
    let health = agent.endpoints.health;
    world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    assert_eq!(healthz(health, "/healthz").await, (200, "ok".into()));

    ask_the_controller_to(&world, Some("panic")).await;
    let (status, text) = wait_for("/healthz to fail", SHORT, || async {
        let (status, text) = healthz(health, "/healthz").await;
        (status != 200).then_some((status, text))
    })
    .await;
    assert_eq!(status, 503, "{text}");
    assert!(
        text.starts_with("the controller is not running: it panicked")
            && text.contains("test fault: the reconcile panics"),
        "{text}"
    );
    assert_eq!(healthz(health, "/readyz").await.0, 503);
    let ended = tokio::time::timeout(SHORT, agent.wait())
        .await
        .expect("the agent ends with its controller");
    assert!(
        matches!(&ended, Err(ControllerError::Panicked(message)) if message.contains("test fault")),
        "{ended:?}"
    );
    // Still failing until the process ends (here: until the shutdown).
    assert_eq!(healthz(health, "/healthz").await.0, 503);
    shutdown.cancel();
}

#[cfg(debug_assertions)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_watch_ended_fails_healthz_and_releases_the_lease() {
    use compass_runtime_agent::agent::ControllerError;

    let world = World::new().await;
    world.configure_with_fresh_token().await;
    let mut settings = world.settings.clone();
    settings.leader_election = true;
    settings.leader_election_lease =
        compass_runtime_agent::config::NamespacedName::parse(&format!("{NS}/{LEASE}")).unwrap();
    settings.leader_election_lease_duration = LEASE_DURATION;
    settings.leader_election_identity = Some("in-process".into());
    let (agent, shutdown) = start_with_fault_hook(&world, settings).await;
    let health = agent.endpoints.health;
    world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    assert_eq!(lease_holder(&world).await.as_deref(), Some("in-process"));
    assert_eq!(healthz(health, "/healthz").await.0, 200);

    ask_the_controller_to(&world, Some("end")).await;
    let (status, text) = wait_for("/healthz to fail", SHORT, || async {
        let (status, text) = healthz(health, "/healthz").await;
        (status != 200).then_some((status, text))
    })
    .await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("its watch of CompassConnection"), "{text}");
    let ended = tokio::time::timeout(SHORT, agent.wait())
        .await
        .expect("the agent ends with its controller");
    assert!(
        matches!(ended, Err(ControllerError::WatchEnded)),
        "{ended:?}"
    );
    assert_eq!(lease_holder(&world).await, None, "the Lease was released");
    assert_eq!(healthz(health, "/healthz").await.0, 503);
    shutdown.cancel();
}

/// `reconciles_total` of a failure category, and of successes.
async fn reconciles(world: &World, category: &str) -> (f64, f64) {
    let text = world.metrics_text().await;
    (
        sample(
            &text,
            &format!(
                r#"compass_runtime_agent_reconciles_total{{outcome="Failure",category="{category}"}}"#
            ),
        ),
        sample(
            &text,
            r#"compass_runtime_agent_reconciles_total{outcome="Success"}"#,
        ),
    )
}

async fn successes(world: &World) -> f64 {
    reconciles(world, "").await.1
}

/// While a failure lasts, each cycle counts under `category` and none as a
/// success.
async fn failing_cycles_count_as(world: &World, category: &str) {
    let (failures, successes) = wait_for(
        &format!("a cycle that failed with {category} on /metrics"),
        LONG,
        || async {
            let (failures, successes) = reconciles(world, category).await;
            (failures >= 1.0).then_some((failures, successes))
        },
    )
    .await;
    // One more failed cycle; the successes stand still meanwhile.
    wait_for(
        &format!("another cycle that failed with {category}"),
        LONG,
        || async { reconciles(world, category).await.0 > failures },
    )
    .await;
    let (_, successes_after) = reconciles(world, category).await;
    assert_eq!(
        successes_after,
        successes,
        "cycles that failed with {category} were counted as successes:\n{}",
        world.metrics_text().await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_failed_cycle_is_counted_under_its_category_and_never_as_a_success() {
    let mut world = World::new().await;
    // No configuration source yet: the connection fails.
    world.start_agent().await;
    world
        .wait_for_state(ConnectionState::ConnectionFailed, LONG)
        .await;
    failing_cycles_count_as(&world, "ConfigurationMissing").await;
    assert_eq!(successes(&world).await, 0.0);

    world.configure_with_fresh_token().await;
    world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    assert!(successes(&world).await >= 1.0);

    for (operation, kind, state, category) in [
        (
            "configuration",
            FaultKind::NullData,
            ConnectionState::ConnectionMaintenanceFailed,
            "NullData",
        ),
        (
            "applicationsForRuntime",
            FaultKind::GraphqlError,
            ConnectionState::SynchronizationFailed,
            "GraphQLError",
        ),
        (
            "applicationsForRuntime",
            FaultKind::Http503,
            ConnectionState::SynchronizationFailed,
            "HTTPError",
        ),
        (
            "applicationsForRuntime",
            FaultKind::Delay { ms: 5_000 },
            ConnectionState::SynchronizationFailed,
            "Timeout",
        ),
        (
            "setRuntimeLabel",
            FaultKind::GraphqlError,
            ConnectionState::MetadataUpdateFailed,
            "MetadataUpdateFailed",
        ),
    ] {
        if operation == "setRuntimeLabel" {
            // Labels are set only when they are missing.
            world
                .sim
                .delete_runtime_label(RUNTIME_ID, "runtime_consoleUrl")
                .expect("the label is deleted");
        }
        world
            .sim
            .inject_fault(operation, kind, FaultTimes::UntilCleared);
        if operation == "configuration" {
            // The Connector is asked at every cycle while a renewal is asked for.
            world.ask_for_renewal().await;
        }
        world.wait_for_state(state, LONG).await;
        failing_cycles_count_as(&world, category).await;
        world.sim.clear_faults();
        world
            .wait_for_state(ConnectionState::Synchronized, LONG)
            .await;
    }

    // The cycle worked, but compass-connection could not be written.
    refuse_status_writes(&world, true).await;
    failing_cycles_count_as(&world, "StatusWriteFailed").await;
    refuse_status_writes(&world, false).await;
    let before = successes(&world).await;
    wait_for("a successful cycle again", LONG, || async {
        successes(&world).await > before
    })
    .await;
    world.stop_agent().await;
}

/// A ValidatingAdmissionPolicy that refuses every update of
/// `compass-connection` (on); removed (off).
async fn refuse_status_writes(world: &World, on: bool) {
    use k8s_openapi::api::admissionregistration::v1::{
        MatchResources, NamedRuleWithOperations, ValidatingAdmissionPolicy,
        ValidatingAdmissionPolicyBinding, ValidatingAdmissionPolicyBindingSpec,
        ValidatingAdmissionPolicySpec, Validation,
    };
    const NAME: &str = "refuse-compass-connection-writes";
    let policies = Api::<ValidatingAdmissionPolicy>::all(world.client.clone());
    let bindings = Api::<ValidatingAdmissionPolicyBinding>::all(world.client.clone());
    if !on {
        bindings
            .delete(NAME, &Default::default())
            .await
            .expect("the binding is deleted");
        policies
            .delete(NAME, &Default::default())
            .await
            .expect("the policy is deleted");
        return;
    }
    let policy = ValidatingAdmissionPolicy {
        metadata: kube::api::ObjectMeta {
            name: Some(NAME.into()),
            ..Default::default()
        },
        spec: Some(ValidatingAdmissionPolicySpec {
            failure_policy: Some("Fail".into()),
            match_constraints: Some(MatchResources {
                resource_rules: Some(vec![NamedRuleWithOperations {
                    api_groups: Some(vec!["compass.kyma-project.io".into()]),
                    api_versions: Some(vec!["*".into()]),
                    operations: Some(vec!["UPDATE".into()]),
                    resources: Some(vec![
                        "compassconnections".into(),
                        "compassconnections/status".into(),
                    ]),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            validations: Some(vec![Validation {
                expression: "false".into(),
                message: Some("refused by the test".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    };
    let binding = ValidatingAdmissionPolicyBinding {
        metadata: kube::api::ObjectMeta {
            name: Some(NAME.into()),
            ..Default::default()
        },
        spec: ValidatingAdmissionPolicyBindingSpec {
            policy_name: NAME.into(),
            validation_actions: vec!["Deny".into()],
            ..Default::default()
        },
    };
    policies
        .create(&Default::default(), &policy)
        .await
        .expect("the policy is created");
    bindings
        .create(&Default::default(), &binding)
        .await
        .expect("the binding is created");
}
