//! What an operator relies on beyond the sync itself: two replicas behind a
//! leader Lease, a clean SIGTERM, the `status` command, metrics and Events.
//! The agent runs as its own process here (the binary), so that it can be
//! killed like a Pod.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{free_port, World, LONG, NS, RUNTIME_ID, SHORT};
use compass_runtime_agent::crd::application::Application;
use compass_runtime_agent::crd::ConnectionState;
use compass_sim::FaultKind;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use kube::Api;
use test_support::wait_for;
use tokio::process::{Child, Command};

const LEASE: &str = "compass-runtime-agent";
const LEASE_DURATION: Duration = Duration::from_secs(4);

/// The agent binary, as a Deployment would run it.
struct AgentProcess {
    child: Child,
    health: String,
    metrics: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

fn agent_command(world: &World) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_compass-runtime-agent"));
    command
        .env("KUBECONFIG", world.env.kubeconfig_path())
        .env(
            "APP_COMPASS_CA_BUNDLE",
            world.settings.compass_ca_bundle.as_ref().unwrap(),
        )
        .env("APP_MINIMAL_COMPASS_SYNC_TIME", "1s")
        .env("APP_CONTROLLER_SYNC_PERIOD", "3s")
        .env("APP_COMPASS_REQUEST_TIMEOUT", "3s")
        .env("APP_MAX_RETRY_DELAY", "4s");
    command
}

impl AgentProcess {
    async fn start(world: &World, identity: &str) -> AgentProcess {
        AgentProcess::start_with(world, identity, &[]).await
    }

    /// Starts the agent with `extra` environment variables on top (they win).
    async fn start_with(world: &World, identity: &str, extra: &[(&str, &str)]) -> AgentProcess {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("agent.log");
        let (health_port, metrics_port) = (free_port(), free_port());
        let mut command = agent_command(world);
        command.envs(extra.iter().copied());
        let child = command
            .env("APP_HEALTH_ADDRESS", "127.0.0.1")
            .env("APP_HEALTH_PORT", health_port.to_string())
            .env("APP_METRICS_ADDRESS", format!("127.0.0.1:{metrics_port}"))
            .env("APP_LEADER_ELECTION", "true")
            .env("APP_LEADER_ELECTION_LEASE", format!("{NS}/{LEASE}"))
            .env(
                "APP_LEADER_ELECTION_LEASE_DURATION",
                format!("{}s", LEASE_DURATION.as_secs()),
            )
            .env("APP_LEADER_ELECTION_IDENTITY", identity)
            .env("APP_LOG_LEVEL", "info")
            .stdout(std::fs::File::create(&log).expect("log file"))
            .stderr(std::fs::File::create(dir.path().join("agent.err")).expect("log file"))
            .kill_on_drop(true)
            .spawn()
            .expect("the agent binary starts");
        let process = AgentProcess {
            child,
            health: format!("http://127.0.0.1:{health_port}"),
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

    async fn metrics(&self) -> String {
        reqwest::get(&self.metrics)
            .await
            .expect("metrics answer")
            .text()
            .await
            .expect("metrics body")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("the agent runs")
    }

    /// Sends SIGTERM, as the kubelet does, and asserts that the agent exits
    /// with 0 within `within`.
    async fn terminate_within(&mut self, within: Duration) {
        let terminated = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(terminated.success());
        let exit = tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!("no exit within {within:?} of SIGTERM; log:\n{}", self.log())
            })
            .unwrap();
        assert_eq!(exit.code(), Some(0), "log:\n{}", self.log());
    }
}

/// The sum of all samples of a metric (over its labels).
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn lease_holder(world: &World) -> Option<String> {
    let lease = Api::<Lease>::namespaced(world.client.clone(), NS)
        .get_opt(LEASE)
        .await
        .expect("the Lease can be read")?;
    lease
        .spec?
        .holder_identity
        .filter(|holder| !holder.is_empty())
}

fn put_applications(world: &World, ids: &[&str]) {
    for id in ids {
        let mut app = compass_sim::model::generate_applications(1, 1, 1, 0).remove(0);
        app.id = id.to_string();
        app.name = format!("app-{id}");
        world
            .sim
            .put_application(RUNTIME_ID, app)
            .expect("application is stored");
    }
}

/// Whether the Application for the Director application `name` exists (under
/// its normalized name, as the Director serves it).
async fn application_exists(world: &World, name: &str) -> bool {
    Api::<Application>::all(world.client.clone())
        .get_opt(&compass_runtime_agent::sync::names::normalize_application_name(name))
        .await
        .expect("Applications can be read")
        .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_replicas_only_the_leader_works_and_the_other_takes_over_when_it_is_killed() {
    let world = World::new().await;
    put_applications(&world, &["one", "two"]);
    world.configure_with_fresh_token().await;
    let mut replicas = vec![
        AgentProcess::start(&world, "replica-a").await,
        AgentProcess::start(&world, "replica-b").await,
    ];
    world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    let leader = lease_holder(&world).await.expect("the Lease has a holder");
    let (leader_index, standby_index) = if leader == "replica-a" {
        (0, 1)
    } else {
        (1, 0)
    };
    assert_eq!(leader, ["replica-a", "replica-b"][leader_index]);
    let lease = Api::<Lease>::namespaced(world.client.clone(), NS)
        .get(LEASE)
        .await
        .unwrap();
    let managers: Vec<_> = lease
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|entry| entry.manager.as_deref())
        .collect();
    assert_eq!(
        managers,
        ["compass-runtime-agent"],
        "the Lease's writes are on record under the agent's name"
    );

    // Only the leader talks to Compass and writes to the cluster.
    let leader_metrics = replicas[leader_index].metrics().await;
    let standby_metrics = replicas[standby_index].metrics().await;
    assert_eq!(
        metric_sum(&leader_metrics, "compass_runtime_agent_leader"),
        1.0
    );
    assert_eq!(
        metric_sum(&standby_metrics, "compass_runtime_agent_leader"),
        0.0
    );
    assert!(
        metric_sum(
            &leader_metrics,
            "compass_runtime_agent_kubernetes_writes_total"
        ) >= 4.0
    );
    assert_eq!(
        metric_sum(
            &standby_metrics,
            "compass_runtime_agent_kubernetes_writes_total"
        ),
        0.0,
        "the standby wrote:\n{standby_metrics}"
    );
    assert_eq!(
        metric_sum(
            &standby_metrics,
            "compass_runtime_agent_compass_requests_total"
        ),
        0.0,
        "the standby called Compass:\n{standby_metrics}"
    );
    // The standby is ready (a rolling update can proceed), and says why.
    let readyz = reqwest::get(format!("{}/readyz", replicas[standby_index].health))
        .await
        .unwrap();
    assert_eq!(readyz.status(), 200);
    assert!(readyz.text().await.unwrap().contains("standby"));

    // Kill the leader like a node failure: no chance to release the Lease.
    replicas[leader_index].child.start_kill().unwrap();
    replicas[leader_index].child.wait().await.unwrap();
    let killed_at = Instant::now();
    put_applications(&world, &["three"]);
    let standby_name = ["replica-a", "replica-b"][standby_index];
    wait_for("the standby to take the Lease", LONG, || async {
        (lease_holder(&world).await.as_deref() == Some(standby_name)).then_some(())
    })
    .await;
    let takeover = killed_at.elapsed();
    println!(
        "takeover after the leader was killed: {takeover:?} (lease duration {LEASE_DURATION:?})"
    );
    // Within the lease duration after the last renewal, plus a retry period
    // and the time the API calls take on a loaded machine.
    assert!(
        takeover < LEASE_DURATION * 2,
        "takeover took {takeover:?} with a lease duration of {LEASE_DURATION:?}"
    );
    let lease = Api::<Lease>::namespaced(world.client.clone(), NS)
        .get(LEASE)
        .await
        .unwrap();
    assert!(lease.spec.unwrap().lease_transitions.unwrap_or(0) >= 1);

    // The new leader carries on: the application added meanwhile appears.
    wait_for("the new leader to create app-three", LONG, || async {
        application_exists(&world, "app-three").await.then_some(())
    })
    .await;
    let new_leader_metrics = replicas[standby_index].metrics().await;
    assert_eq!(
        metric_sum(&new_leader_metrics, "compass_runtime_agent_leader"),
        1.0
    );
    replicas.clear();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_command_reports_health_and_sigterm_releases_the_lease_and_exits_0() {
    let world = World::new().await;
    put_applications(&world, &["one", "two"]);
    let token = world.configure_with_fresh_token().await;
    let mut agent = AgentProcess::start(&world, "only-replica").await;
    world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    assert_eq!(lease_holder(&world).await.as_deref(), Some("only-replica"));

    // `status` as an operator runs it.
    let status = |json: bool| {
        let mut command = agent_command(&world);
        command.arg("status");
        if json {
            command.args(["-o", "json"]);
        }
        command.output()
    };
    let table = status(false).await.unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert_eq!(table.status.code(), Some(0), "{text}");
    assert!(text.contains("Synchronized (healthy)"), "{text}");
    assert!(
        text.contains(&format!("Runtime ID:     {RUNTIME_ID}")),
        "{text}"
    );
    assert!(
        text.contains("mp-app-one") && text.contains("mp-app-two"),
        "{text}"
    );
    let json = status(true).await.unwrap();
    assert_eq!(json.status.code(), Some(0));
    let report: serde_json::Value =
        serde_json::from_slice(&json.stdout).expect("status -o json is JSON");
    assert_eq!(report["healthy"], true);
    assert_eq!(report["state"], "Synchronized");
    assert_eq!(report["runtimeId"], RUNTIME_ID);
    assert_eq!(
        report["synchronization"]["applications"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // A Director that fails makes the command fail, for scripts.
    world.sim.inject_fault(
        "applicationsForRuntime",
        FaultKind::GraphqlError,
        compass_sim::FaultTimes::UntilCleared,
    );
    world
        .wait_for_state(ConnectionState::SynchronizationFailed, LONG)
        .await;
    let unhealthy = status(false).await.unwrap();
    let text = String::from_utf8_lossy(&unhealthy.stdout);
    assert_eq!(unhealthy.status.code(), Some(1), "{text}");
    assert!(
        text.contains("NOT healthy: the state is SynchronizationFailed"),
        "{text}"
    );
    world.sim.clear_faults();
    world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;

    // SIGTERM: the agent finishes, hands the Lease back and exits 0.
    agent.terminate_within(SHORT).await;
    assert_eq!(lease_holder(&world).await, None, "the Lease was released");

    // Nothing secret reached the log.
    let log = agent.log();
    assert!(log.contains("became the leader"), "{log}");
    assert!(!log.contains(&token), "the token was logged");
    assert!(!log.contains("PRIVATE KEY"), "a private key was logged");
}

async fn connection_events(world: &World) -> Vec<Event> {
    Api::<Event>::namespaced(world.client.clone(), "default")
        .list(&ListParams::default())
        .await
        .expect("Events can be listed")
        .items
        .into_iter()
        .filter(|event| {
            event.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("compass-connection")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_tell_the_story_and_a_repeated_failure_is_one_counted_event() {
    let world = World::connected().await;
    let events = connection_events(&world).await;
    let synchronized = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("Synchronized"))
        .unwrap_or_else(|| panic!("no Synchronized event in {events:?}"));
    assert_eq!(synchronized.type_.as_deref(), Some("Normal"));

    // The Director keeps failing: one Warning named after the error, counted.
    world.sim.inject_fault(
        "applicationsForRuntime",
        FaultKind::GraphqlError,
        compass_sim::FaultTimes::UntilCleared,
    );
    let count_of_failures = || async {
        let events = connection_events(&world).await;
        let failures: Vec<_> = events
            .iter()
            .filter(|e| e.reason.as_deref() == Some("GraphQLError"))
            .collect();
        (
            failures.len(),
            failures.first().map(|e| {
                (
                    e.type_.clone().unwrap_or_default(),
                    e.note.clone().unwrap_or_default(),
                    e.series.as_ref().map(|s| s.count).unwrap_or(1),
                )
            }),
        )
    };
    wait_for("three failed syncs in one Event series", LONG, || async {
        match count_of_failures().await {
            (_, Some((_, _, count))) if count >= 3 => Some(()),
            _ => None,
        }
    })
    .await;
    let (series, first) = count_of_failures().await;
    let (type_, note, _) = first.unwrap();
    assert_eq!(series, 1, "repeats are aggregated into one Event");
    assert_eq!(type_, "Warning");
    assert!(
        note.contains("Synchronized → SynchronizationFailed"),
        "{note}"
    );
    assert!(note.contains("injected fault"), "{note}");

    world.sim.clear_faults();
    world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    let back = connection_events(&world).await;
    assert!(
        back.iter()
            .filter(|e| e.reason.as_deref() == Some("Synchronized"))
            .count()
            >= 1
            && back.len() > events.len(),
        "{back:?}"
    );
}

/// One sample of a metric with exactly these labels (as rendered).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_a_sync_tell_what_happened() {
    let mut world = World::new().await;
    put_applications(&world, &["one", "two"]);
    world.configure_with_fresh_token().await;
    world.start_agent().await;
    let connection = world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    let text = world.metrics_text().await;
    let get = |series: &str| {
        sample(&text, series).unwrap_or_else(|| panic!("no sample {series} in\n{text}"))
    };
    let not_after = connection
        .status
        .unwrap()
        .connection_status
        .certificate_status
        .not_after
        .unwrap()
        .0
        .as_second() as f64;
    assert_eq!(
        get("compass_runtime_agent_certificate_not_after_timestamp_seconds"),
        not_after
    );
    let left = get("compass_runtime_agent_certificate_expiry_seconds");
    assert!(left > 0.0 && left <= 2160.0 * 3600.0, "{left}");
    assert_eq!(get("compass_runtime_agent_applications_managed"), 2.0);
    assert_eq!(
        get(
            r#"compass_runtime_agent_kubernetes_writes_total{kind="Application",verb="create",outcome="Success"}"#
        ),
        2.0
    );
    assert!(
        get(
            r#"compass_runtime_agent_kubernetes_writes_total{kind="Secret",verb="create",outcome="Success"}"#
        ) >= 2.0
    );
    assert_eq!(
        get("compass_runtime_agent_leader"),
        1.0,
        "no election: it leads"
    );
    assert!(get("compass_runtime_agent_sync_duration_seconds_count") >= 1.0);
    let last_sync = get("compass_runtime_agent_last_successful_sync_timestamp_seconds");
    let now = jiff::Timestamp::now().as_second() as f64;
    assert!(
        now - last_sync < 120.0 && last_sync <= now,
        "{last_sync} vs {now}"
    );
    assert!(
        get(
            r#"compass_runtime_agent_compass_requests_total{operation="applicationsForRuntime",outcome="ok"}"#
        ) >= 1.0
    );
    assert!(
        get(
            r#"compass_runtime_agent_compass_request_duration_seconds_count{operation="signCertificateSigningRequest"}"#
        ) == 1.0
    );
    world.stop_agent().await;
}

/// Every change of an object of `api` from now on, as `(resourceVersion,
/// object)`, in the order the apiserver sent them.
fn record_changes<K>(api: Api<K>) -> std::sync::Arc<std::sync::Mutex<Vec<(u64, K)>>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    use futures::StreamExt;
    let changes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = changes.clone();
    tokio::spawn(async move {
        let params = kube::api::WatchParams::default().timeout(280);
        let mut stream = api.watch(&params, "0").await.expect("watch").boxed();
        while let Some(Ok(event)) = stream.next().await {
            let object = match event {
                kube::api::WatchEvent::Added(o) | kube::api::WatchEvent::Modified(o) => o,
                _ => continue,
            };
            // One etcd: resource versions are its revisions, one sequence for
            // all kinds, so they order the writes of the whole cluster.
            let version = object
                .meta()
                .resource_version
                .as_deref()
                .and_then(|v| v.parse().ok())
                .expect("a numeric resourceVersion");
            sink.lock().unwrap().push((version, object));
        }
    });
    changes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sigterm_during_a_slow_cycle_the_standby_takes_over_only_after_the_last_write() {
    use compass_runtime_agent::crd::compass_connection::SyncOperation;
    use compass_runtime_agent::crd::CompassConnection;
    let world = World::new().await;
    put_applications(&world, &["one"]);
    world.configure_with_fresh_token().await;
    // Requests may take long here: the slow answer below must not time out.
    let slow_ok = [("APP_COMPASS_REQUEST_TIMEOUT", "60s")];
    let mut replicas = vec![
        AgentProcess::start_with(&world, "replica-a", &slow_ok).await,
        AgentProcess::start_with(&world, "replica-b", &slow_ok).await,
    ];
    world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    let leader = lease_holder(&world).await.expect("a leader");
    let (leader_index, standby) = if leader == "replica-a" {
        (0, "replica-b")
    } else {
        (1, "replica-a")
    };
    let leases = record_changes(Api::<Lease>::namespaced(world.client.clone(), NS));
    let connections = record_changes(Api::<CompassConnection>::all(world.client.clone()));
    let applications = record_changes(Api::<Application>::all(world.client.clone()));

    // The leader's next cycle gets an answer that takes three lease durations
    // to come, and that only the leader sees: application `slow` is gone from
    // the Director once the request is in.
    put_applications(&world, &["slow"]);
    world.sim.inject_fault(
        "applicationsForRuntime",
        FaultKind::SlowAnswer {
            ms: (LEASE_DURATION * 3).as_millis() as u64,
        },
        compass_sim::FaultTimes::Next(1),
    );
    wait_for("the leader's slow request", LONG, || async {
        world.sim.faults().is_empty().then_some(())
    })
    .await;
    world.sim.remove_application(RUNTIME_ID, "slow").unwrap();

    // Rolling update: SIGTERM in the middle of that cycle.
    replicas[leader_index].terminate_within(LONG).await;
    wait_for("the standby to take the Lease", LONG, || async {
        (lease_holder(&world).await.as_deref() == Some(standby)).then_some(())
    })
    .await;
    // The new leader carries on: `slow` is not in the Director, so it goes.
    wait_for("the new leader to delete app-slow", LONG, || async {
        (!application_exists(&world, "app-slow").await).then_some(())
    })
    .await;

    let slow_name = compass_runtime_agent::sync::names::normalize_application_name("app-slow");
    let taken_over = leases
        .lock()
        .unwrap()
        .iter()
        .find(|(_, lease)| {
            lease
                .spec
                .as_ref()
                .and_then(|s| s.holder_identity.as_deref())
                == Some(standby)
        })
        .map(|(version, _)| *version)
        .expect("the standby's acquisition was seen");
    // The old leader's last writes: app-slow created, and the status that
    // reports it (no one else ever saw app-slow in the Director).
    let created = applications
        .lock()
        .unwrap()
        .iter()
        .find(|(_, app)| app.metadata.name.as_deref() == Some(slow_name.as_str()))
        .map(|(version, _)| *version)
        .expect("the old leader created app-slow");
    let reported = connections
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, c)| {
            c.status.as_ref().is_some_and(|s| {
                s.synchronization_status.as_ref().is_some_and(|sync| {
                    sync.applications
                        .iter()
                        .any(|r| r.name == slow_name && r.operation == SyncOperation::Created)
                })
            })
        })
        .map(|(version, _)| *version)
        .max()
        .expect("the old leader reported its cycle");
    println!(
        "hand-over: app-slow created at revision {created}, reported at {reported}, Lease taken at {taken_over}"
    );
    assert!(
        created < taken_over && reported < taken_over,
        "the old leader wrote after the standby took the Lease: created {created}, reported {reported}, taken over {taken_over}"
    );
    replicas.clear();
}

/// A ServiceAccount with what the agent needs, except `list` on
/// CompassConnections: the controller's first list is refused for as long as
/// the agent runs. Returns a kubeconfig with its token, in `dir`.
async fn kubeconfig_that_cannot_list_connections(world: &World, dir: &std::path::Path) -> PathBuf {
    use common::accounts;
    use serde_json::json;
    let name = "agent-without-list";
    let rule = |groups: &[&str], resources: &[&str], verbs: &[&str]| json!({"apiGroups": groups, "resources": resources, "verbs": verbs});
    let objects = [
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": name, "namespace": NS}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": name},
        "rules": [
            rule(&["compass.kyma-project.io"], &["compassconnections"],
                 &["get", "create", "update", "delete", "watch"]),
            rule(&["applicationconnector.kyma-project.io"], &["applications"],
                 &["get", "list", "watch", "create", "update", "delete"]),
            rule(&[""], &["secrets", "configmaps"],
                 &["get", "list", "watch", "create", "update", "delete"]),
            rule(&["coordination.k8s.io"], &["leases"], &["get", "create", "update"]),
        ]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": name},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
               "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": NS}]}),
    ];
    accounts::apply_rbac(&world.client, &objects).await;
    let token = accounts::service_account_token(&world.client, NS, name).await;
    accounts::write_token_kubeconfig(world, &token, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_before_the_controller_could_list_anything_ends_the_agent_at_once() {
    // kube-runtime holds its runner until the watched object has been listed
    // once, and its graceful shutdown waited for that runner: forever. The
    // soak caught it as a SIGTERM right after an API server restart, and the
    // same happens while the API server is unreachable at start.
    let world = World::new().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = kubeconfig_that_cannot_list_connections(&world, dir.path()).await;
    let kubeconfig = kubeconfig.to_str().expect("a UTF-8 path");
    let mut agent =
        AgentProcess::start_with(&world, "unlisted", &[("KUBECONFIG", kubeconfig)]).await;
    // It leads, so its controller runs (and its list is refused).
    wait_for("the agent to take the Lease", SHORT, || async {
        (lease_holder(&world).await.as_deref() == Some("unlisted")).then_some(())
    })
    .await;
    agent.terminate_within(Duration::from_secs(10)).await;
    assert_eq!(lease_holder(&world).await, None, "the Lease was released");
}

/// A TCP relay in front of the API server that drops every connection until
/// it is opened: an API server that does not answer, as while it restarts.
struct Relay {
    url: String,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Relay {
    async fn closed(world: &World) -> Relay {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let target = world
            .env
            .server_url()
            .trim_start_matches("https://")
            .to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a relay port");
        let url = format!("https://{}", listener.local_addr().unwrap());
        let open = Arc::new(AtomicBool::new(false));
        let is_open = open.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !is_open.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees its connection reset
                }
                let target = target.clone();
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Relay { url, open }
    }

    fn open(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// The test environment's kubeconfig (admin credentials) with the relay
    /// as the server, written to `dir`.
    fn kubeconfig(&self, world: &World, dir: &std::path::Path) -> PathBuf {
        let text = std::fs::read_to_string(world.env.kubeconfig_path()).expect("the kubeconfig");
        let path = dir.join("kubeconfig");
        std::fs::write(&path, text.replace(world.env.server_url(), &self.url))
            .expect("the relay kubeconfig is written");
        path
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_that_does_not_answer_at_start_is_waited_for() {
    // The agent asks at start what it may do. Asked while the API server
    // restarted, every question failed, the Lease permission counted as
    // refused and the agent exited 1 (the soak caught a replica that did).
    let world = World::new().await;
    put_applications(&world, &["one"]);
    world.configure_with_fresh_token().await;
    let relay = Relay::closed(&world).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = relay.kubeconfig(&world, dir.path());
    let kubeconfig = kubeconfig.to_str().expect("a UTF-8 path");
    let mut agent =
        AgentProcess::start_with(&world, "patient", &[("KUBECONFIG", kubeconfig)]).await;
    // It asks, gets no answer, and asks again: it does not give up.
    wait_for("the agent to ask twice more", SHORT, || async {
        (agent.log().matches("asking again").count() >= 2).then_some(())
    })
    .await;
    assert!(
        agent.child.try_wait().unwrap().is_none(),
        "the agent exited; log:\n{}",
        agent.log()
    );
    // The API server answers again: the agent leads and synchronizes.
    relay.open();
    world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    assert_eq!(lease_holder(&world).await.as_deref(), Some("patient"));
    assert!(application_exists(&world, "mp-app-one").await);
    assert!(
        agent.log().contains("\"listed\""),
        "the agent's ways come from real answers, not from the failed ones:\n{}",
        agent.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_while_the_api_server_does_not_answer_ends_the_agent_with_0() {
    let world = World::new().await;
    let relay = Relay::closed(&world).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = relay.kubeconfig(&world, dir.path());
    let kubeconfig = kubeconfig.to_str().expect("a UTF-8 path");
    let mut agent =
        AgentProcess::start_with(&world, "waiting", &[("KUBECONFIG", kubeconfig)]).await;
    wait_for("the agent to ask again", SHORT, || async {
        agent.log().contains("asking again").then_some(())
    })
    .await;
    agent.terminate_within(Duration::from_secs(10)).await;
}
