//! Deadlines: no connection, request or cycle can hang the agent while it
//! reports healthy (issue 28).
//!
//! The agent runs as shipped (the binary, as its own process) with a bound
//! ServiceAccount token, between a fault proxy and the real kube-apiserver:
//! the proxy passes, refuses (resets every connection), black-holes (open
//! connections carry nothing, for ever; new ones too while it lasts) or
//! answers by itself (429, 503). Each test prints how long the agent took to
//! come back after the fault ended (BENCHMARKS.md, "Recovery after faults").
//! The durations of the faults are the scenarios' (sleeps that are the
//! fault, not a synchronisation); everything the agent does is polled with a
//! deadline.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::accounts::{self, service_account_token};
use common::agent_process::AgentProcess;
use common::{kyma, World, LONG, NS, RUNTIME_ID};
use compass_runtime_agent::crd::application::Application;
use compass_runtime_agent::crd::ConnectionState;
use compass_runtime_agent::sync::names;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ListParams;
use kube::Api;
use test_support::{write_kubeconfig, Answer, FaultProxy, Mode};

/// How long a partition lasts: longer than client-go's dead-connection
/// detection (45 s of ping) takes to begin, longer than a lease.
const PARTITION: Duration = Duration::from_secs(40);
/// What the issue asks of recovery after a fault ends.
const RECOVERY: Duration = Duration::from_secs(60);

/// The agent's Pod, as far as these tests go.
struct Scene {
    world: World,
    proxy: FaultProxy,
    agent: AgentProcess,
    dir: tempfile::TempDir,
}

enum Front {
    /// Raw TCP: TLS and HTTP/2 pass through, as a partition sees them.
    Tcp,
    /// TLS-terminating HTTP/1.1, to answer by itself.
    Tls,
}

impl Scene {
    /// Kyma's CRDs, RBAC and Deployment settings (changed by `env`), one
    /// application in the Director, and the agent through a proxy with the
    /// ServiceAccount's token; returns once it is `Synchronized`, unless
    /// `wait` is false.
    async fn start(front: Front, env: &[(&str, &str)], proxy_mode: Mode, wait: bool) -> Scene {
        let world = kyma::world().await;
        world
            .sim
            .put_application(RUNTIME_ID, application(0))
            .expect("an application");
        world.configure_with_fresh_token().await;
        let proxy = match front {
            Front::Tcp => FaultProxy::tcp_to_apiserver(&world.env.kube_config()).await,
            Front::Tls => FaultProxy::tls_to_apiserver(&world.env.kube_config()).await,
        }
        .expect("the fault proxy starts");
        proxy.set_mode(proxy_mode);
        let dir = tempfile::tempdir().expect("a temp dir");
        let token = service_account_token(&world.client, NS, kyma::SERVICE_ACCOUNT).await;
        let kubeconfig = write_proxy_kubeconfig(&world, &proxy, &token, dir.path(), "agent");
        let mut settings = kyma::environment();
        settings.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let agent = AgentProcess::spawn(&kubeconfig, &settings, dir.path());
        let mut scene = Scene {
            world,
            proxy,
            agent,
            dir,
        };
        if wait {
            scene.wait_synchronized(LONG).await;
            scene.wait_for_application(&name_of(0), LONG).await;
        }
        scene
    }

    async fn wait_synchronized(&mut self, within: Duration) -> Duration {
        let started = Instant::now();
        let deadline = started + within;
        loop {
            self.agent.assert_running();
            if self.world.state().await == Some(ConnectionState::Synchronized) {
                return started.elapsed();
            }
            assert!(
                Instant::now() < deadline,
                "not Synchronized within {within:?} (state {:?}); log:\n{}",
                self.world.state().await,
                self.agent.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the Application exists; returns how long that took.
    async fn wait_for_application(&mut self, name: &str, within: Duration) -> Duration {
        let started = Instant::now();
        let applications: Api<Application> = Api::all(self.world.client.clone());
        loop {
            self.agent.assert_running();
            if applications.get_opt(name).await.ok().flatten().is_some() {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < within,
                "Application {name} not written within {within:?}; log:\n{}",
                self.agent.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Every Application by name: uid and resourceVersion.
    async fn applications(&self) -> BTreeMap<String, (String, String)> {
        Api::<Application>::all(self.world.client.clone())
            .list(&ListParams::default())
            .await
            .expect("Applications can be listed")
            .into_iter()
            .map(|app| {
                (
                    app.metadata.name.unwrap_or_default(),
                    (
                        app.metadata.uid.unwrap_or_default(),
                        app.metadata.resource_version.unwrap_or_default(),
                    ),
                )
            })
            .collect()
    }

    /// The certificate Secrets' resourceVersions and the client
    /// certificate.
    async fn credentials(&self) -> (Vec<String>, String) {
        let settings = kyma::settings();
        let mut versions = Vec::new();
        let mut crt = String::new();
        for secret in [
            &settings.cluster_certificates_secret,
            &settings.ca_certificates_secret,
        ] {
            let found = Api::<Secret>::namespaced(self.world.client.clone(), &secret.namespace)
                .get(&secret.name)
                .await
                .unwrap_or_else(|e| panic!("the Secret {secret}: {e}"));
            versions.push(found.metadata.resource_version.unwrap_or_default());
            if let Some(value) = found.data.unwrap_or_default().get("crt") {
                crt = String::from_utf8_lossy(&value.0).into_owned();
            }
        }
        (versions, crt)
    }
}

/// A kubeconfig for `proxy` with only the token as credentials, written to
/// `dir/<name>.kubeconfig`.
fn write_proxy_kubeconfig(
    world: &World,
    proxy: &FaultProxy,
    token: &str,
    dir: &Path,
    name: &str,
) -> PathBuf {
    let path = dir.join(format!("{name}.kubeconfig"));
    write_kubeconfig(
        &proxy.kubeconfig(accounts::token_kubeconfig(world, token)),
        &path,
    )
    .expect("the kubeconfig is written");
    path
}

fn application(n: usize) -> compass_sim::Application {
    let mut app = compass_sim::model::generate_applications(1, 1, 1, 1).remove(0);
    app.id = format!("deadline-app-{n}");
    app.name = format!("deadline-app-{n}");
    app
}

fn name_of(n: usize) -> String {
    names::normalize_application_name(&application(n).name)
}

/// A black-holed API server link for 40 s, then healed: the same process
/// applies a Director change made meanwhile and acts on
/// `refreshCredentialsNow` set after healing, each within 60 s, with Kyma's
/// settings (a sync period of 180 s), and loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_of_the_api_server_link_heals_without_a_restart() {
    let mut scene = Scene::start(Front::Tcp, &[], Mode::Pass, true).await;
    let pid = scene.agent.pid();
    let before = scene.applications().await;

    scene.proxy.set_mode(Mode::BlackHole);
    scene
        .world
        .sim
        .put_application(RUNTIME_ID, application(1))
        .expect("a Director change during the partition");
    tokio::time::sleep(PARTITION).await;
    scene.agent.assert_running();
    scene.proxy.set_mode(Mode::Pass);
    let healed = Instant::now();

    let applied = scene.wait_for_application(&name_of(1), RECOVERY).await;
    scene.wait_synchronized(RECOVERY).await;
    let (_, crt) = scene.credentials().await;
    scene.world.ask_for_renewal().await;
    let asked = Instant::now();
    loop {
        scene.agent.assert_running();
        if scene.credentials().await.1 != crt {
            break;
        }
        assert!(
            asked.elapsed() < RECOVERY,
            "refreshCredentialsNow not acted upon within {RECOVERY:?}; log:\n{}",
            scene.agent.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let renewed = asked.elapsed();

    assert_eq!(scene.agent.pid(), pid, "the same process");
    let after = scene.applications().await;
    assert_eq!(
        after.get(&name_of(0)).map(|(uid, _)| uid),
        before.get(&name_of(0)).map(|(uid, _)| uid),
        "the Application the Director still has was neither deleted nor replaced"
    );
    assert_eq!(
        after.keys().cloned().collect::<Vec<_>>(),
        vec![name_of(0), name_of(1)]
    );
    let counters = scene.proxy.counters();
    println!(
        "partition of {}s, healed: the Director change applied {:.1}s after healing; refreshCredentialsNow acted upon {:.1}s after it was set ({:.1}s after healing); {} connections black-holed, {} accepted in all",
        PARTITION.as_secs(),
        applied.as_secs_f64(),
        renewed.as_secs_f64(),
        healed.elapsed().as_secs_f64(),
        counters.black_holed,
        counters.accepted
    );
}

/// A black-holed link that never heals: `/healthz` fails within its bound
/// (2 × APP_CYCLE_TIMEOUT + APP_MAX_RETRY_DELAY after a cycle is due), the
/// process keeps running, and the credentials and Applications are
/// untouched. The timeouts are counted in /metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_that_never_heals_fails_healthz_within_its_bound_and_loses_nothing() {
    let cycle_timeout = Duration::from_secs(10);
    let max_retry = Duration::from_secs(5);
    let bound = cycle_timeout * 2 + max_retry;
    let mut scene = Scene::start(
        Front::Tcp,
        &[
            ("APP_CYCLE_TIMEOUT", "10s"),
            ("APP_MAX_RETRY_DELAY", "5s"),
            ("APP_CONTROLLER_SYNC_PERIOD", "5s"),
            ("APP_MINIMAL_COMPASS_SYNC_TIME", "1s"),
        ],
        Mode::Pass,
        true,
    )
    .await;
    assert_eq!(
        scene.agent.get("/healthz").await,
        Some((200, "ok".to_string()))
    );
    let applications = scene.applications().await;
    let credentials = scene.credentials().await;

    scene.proxy.set_mode(Mode::BlackHole);
    let cut = Instant::now();
    // A cycle is due within the sync period; the dead connection is found
    // within 25 s (a ping after 15 s of silence, 10 s to answer it).
    let limit = Duration::from_secs(5) + Duration::from_secs(25) + bound + Duration::from_secs(15);
    let why = loop {
        scene.agent.assert_running();
        match scene.agent.get("/healthz").await {
            Some((503, why)) => break why,
            Some((200, _)) => {}
            other => panic!("/healthz answered {other:?}"),
        }
        assert!(
            cut.elapsed() < limit,
            "/healthz still ok {limit:?} after the partition began; log:\n{}",
            scene.agent.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let failed_after = cut.elapsed();
    assert!(why.contains("no cycle has recorded its outcome"), "{why}");
    let overdue = scene
        .agent
        .metric("compass_runtime_agent_cycle_overdue_seconds")
        .await
        .expect("cycle_overdue_seconds is served");
    assert!(overdue > bound.as_secs_f64(), "{overdue}");
    let timeouts = scene
        .agent
        .metric("compass_runtime_agent_kubernetes_request_timeouts_total")
        .await
        .unwrap_or(0.0);
    let abandoned = scene
        .agent
        .metric(
            r#"compass_runtime_agent_reconciles_total{outcome="Failure",category="CycleTimeout"}"#,
        )
        .await
        .unwrap_or(0.0);
    let log = scene.agent.log();
    scene.agent.assert_running();
    assert_eq!(
        scene.applications().await,
        applications,
        "no Application touched"
    );
    assert_eq!(
        scene.credentials().await,
        credentials,
        "the credentials are kept"
    );
    assert!(
        log.contains("the API server did not answer within")
            || log.contains("abandoned")
            || log.contains("connection"),
        "the log says what the agent waited for:\n{log}"
    );
    println!(
        "partition that never heals: /healthz failed {:.1}s after it began (bound {}s after a due cycle); {} request timeouts and {} abandoned cycles counted; the process runs on",
        failed_after.as_secs_f64(),
        bound.as_secs(),
        timeouts,
        abandoned
    );
    // The agent's own data dir goes with the scene.
    drop(scene.dir);
}

/// Every connection reset and new ones closed for 20 s: ridden out, a
/// Director change made meanwhile applied soon after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_is_ridden_out() {
    let mut scene = Scene::start(Front::Tcp, &[], Mode::Pass, true).await;
    let pid = scene.agent.pid();
    let before = scene.applications().await;
    scene.proxy.set_mode(Mode::Refuse);
    scene
        .world
        .sim
        .put_application(RUNTIME_ID, application(1))
        .expect("a Director change during the refusal");
    tokio::time::sleep(Duration::from_secs(20)).await;
    scene.agent.assert_running();
    scene.proxy.set_mode(Mode::Pass);
    let applied = scene.wait_for_application(&name_of(1), RECOVERY).await;
    assert_eq!(scene.agent.pid(), pid);
    let after = scene.applications().await;
    assert_eq!(
        after.get(&name_of(0)).map(|(uid, _)| uid),
        before.get(&name_of(0)).map(|(uid, _)| uid)
    );
    println!(
        "refusal of 20s: the Director change applied {:.1}s after it ended; {} connections reset",
        applied.as_secs_f64(),
        scene.proxy.counters().reset
    );
}

/// The API server refusing for 30 s at start (an Istio sidecar not ready
/// yet): the agent serves `/healthz`, says it waits, and is `Synchronized`
/// without a restart once the API server answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_refusing_at_start_is_waited_for() {
    let mut scene = Scene::start(Front::Tcp, &[], Mode::Refuse, false).await;
    let started = Instant::now();
    let pid = scene.agent.pid();
    let answer = scene.agent.wait_for_health_endpoint(LONG).await;
    assert_eq!(answer, (200, "ok".to_string()), "alive while it waits");
    let waiting = test_support::wait_for("the log to say it waits", LONG, || {
        let log = scene.agent.log();
        async move {
            log.contains("the API server does not answer")
                .then_some(log)
        }
    })
    .await;
    assert!(waiting.contains("APP_STARTUP_TIMEOUT"), "{waiting}");
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(started.elapsed())).await;
    assert_eq!(
        scene.agent.get("/healthz").await,
        Some((200, "ok".to_string())),
        "still alive after 30 s of refusals"
    );
    scene.proxy.set_mode(Mode::Pass);
    let up = Instant::now();
    scene.wait_synchronized(LONG).await;
    scene.wait_for_application(&name_of(0), LONG).await;
    assert_eq!(scene.agent.pid(), pid, "no restart");
    println!(
        "API server refusing for 30s at start: Synchronized {:.1}s after it answered",
        up.elapsed().as_secs_f64()
    );
}

/// 429 with `Retry-After` and then 503 for 30 s in all: the agent waits as
/// told, recovers, and deletes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_api_server_is_waited_for_and_nothing_is_deleted() {
    let mut scene = Scene::start(
        Front::Tls,
        &[
            ("APP_CONTROLLER_SYNC_PERIOD", "3s"),
            ("APP_MINIMAL_COMPASS_SYNC_TIME", "1s"),
            ("APP_MAX_RETRY_DELAY", "5s"),
        ],
        Mode::Pass,
        true,
    )
    .await;
    let pid = scene.agent.pid();
    let before = scene.applications().await;

    let retry_after = 2;
    scene
        .proxy
        .set_mode(Mode::Answer(Answer::too_many_requests(retry_after)));
    scene
        .world
        .sim
        .put_application(RUNTIME_ID, application(1))
        .expect("a Director change while the API server is overloaded");
    let overloaded = scene.proxy.counters().answered;
    tokio::time::sleep(Duration::from_secs(15)).await;
    let answered_429 = scene.proxy.counters().answered - overloaded;
    scene
        .proxy
        .set_mode(Mode::Answer(Answer::service_unavailable()));
    tokio::time::sleep(Duration::from_secs(15)).await;
    let answered = scene.proxy.counters().answered - overloaded;
    scene.agent.assert_running();
    scene.proxy.set_mode(Mode::Pass);

    let applied = scene.wait_for_application(&name_of(1), RECOVERY).await;
    scene.wait_synchronized(RECOVERY).await;
    assert_eq!(scene.agent.pid(), pid);
    let after = scene.applications().await;
    assert_eq!(
        after.get(&name_of(0)).map(|(uid, _)| uid),
        before.get(&name_of(0)).map(|(uid, _)| uid),
        "nothing deleted or replaced"
    );
    // Waiting as told: one try per Retry-After for each request in flight
    // (a cycle's, the keeper's and the controller's watches: at most a few
    // at a time), not a hot loop.
    let most = (15 / u64::from(retry_after) + 1) * 4;
    assert!(
        answered_429 > 0 && answered_429 <= most,
        "{answered_429} requests answered 429 in 15 s (Retry-After: {retry_after}); at most {most} expected"
    );
    println!(
        "429 (Retry-After: {retry_after}) for 15s, then 503 for 15s: {answered_429} requests got 429, {answered} in all; the Director change applied {:.1}s after it ended; nothing deleted",
        applied.as_secs_f64()
    );
}

/// The failed cycles an agent counted, by category.
async fn failed_cycles(agent: &AgentProcess) -> BTreeMap<String, f64> {
    let (_, text) = agent.get("/metrics").await.expect("/metrics answers");
    let prefix = r#"compass_runtime_agent_reconciles_total{outcome="Failure",category=""#;
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(prefix)?;
            let (category, value) = rest.split_once("\"} ")?;
            Some((category.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// Compass's gateway (the certificate-secured Connector and the Director)
/// black-holed for 40 s: the cycles of that time fail with a category that
/// says so, the agent is `Synchronized` again after it with the same
/// certificate, and the one-time token was presented once in all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_compass_costs_failed_cycles_and_never_a_second_token() {
    let gateway = std::net::SocketAddr::from(([127, 0, 0, 1], common::free_port()));
    let proxy = FaultProxy::tcp(gateway)
        .await
        .expect("the fault proxy starts");
    let world = kyma::world_with_sim(compass_sim::SimConfig {
        mtls_gateway_addr: gateway,
        public_mtls_port: Some(proxy.addr().port()),
        ..compass_sim::SimConfig::default()
    })
    .await;
    world
        .sim
        .put_application(RUNTIME_ID, application(0))
        .expect("an application");
    world.configure_with_fresh_token().await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let token = service_account_token(&world.client, NS, kyma::SERVICE_ACCOUNT).await;
    let kubeconfig = accounts::write_token_kubeconfig(&world, &token, dir.path());
    // Kyma's settings, but a cycle every 10 s, so that one meets the outage.
    let mut environment = kyma::environment();
    environment.push(("APP_CONTROLLER_SYNC_PERIOD".into(), "10s".into()));
    let mut agent = AgentProcess::spawn(&kubeconfig, &environment, dir.path());
    let started = Instant::now();
    while world.state().await != Some(ConnectionState::Synchronized) {
        agent.assert_running();
        assert!(
            started.elapsed() < LONG,
            "not Synchronized; log:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let crt = world.certificate_secret().await.expect("the certificate")["crt"].clone();
    let before = failed_cycles(&agent).await;

    proxy.set_mode(Mode::BlackHole);
    world
        .sim
        .put_application(RUNTIME_ID, application(1))
        .expect("a Director change during the outage");
    tokio::time::sleep(PARTITION).await;
    agent.assert_running();
    proxy.set_mode(Mode::Pass);
    let healed = Instant::now();

    let applications: Api<Application> = Api::all(world.client.clone());
    while applications
        .get_opt(&name_of(1))
        .await
        .ok()
        .flatten()
        .is_none()
        || world.state().await != Some(ConnectionState::Synchronized)
    {
        agent.assert_running();
        assert!(
            healed.elapsed() < RECOVERY,
            "not Synchronized with the change within {RECOVERY:?}; log:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let recovered = healed.elapsed();

    let after = failed_cycles(&agent).await;
    let new_failures: BTreeMap<String, f64> = after
        .iter()
        .map(|(category, n)| (category.clone(), n - before.get(category).unwrap_or(&0.0)))
        .filter(|(_, n)| *n > 0.0)
        .collect();
    let failed: f64 = new_failures.values().sum();
    assert!(
        failed >= 1.0,
        "a cycle failed during the outage: {new_failures:?}"
    );
    for category in new_failures.keys() {
        assert!(
            ["Timeout", "Unreachable"].contains(&category.as_str()),
            "the failures say Compass did not answer: {new_failures:?}"
        );
    }
    let presented = world
        .sim
        .request_log()
        .iter()
        .filter(|entry| {
            entry.endpoint == compass_sim::Endpoint::ConnectorToken
                && entry.operations.iter().any(|o| o == "configuration")
        })
        .count();
    assert_eq!(presented, 1, "the one-time token was presented once");
    assert_eq!(
        world.certificate_secret().await.expect("the certificate")["crt"],
        crt,
        "the certificate is kept"
    );
    println!(
        "Compass black-holed for {}s: failed cycles {new_failures:?}; Synchronized with the change {:.1}s after it ended; the one-time token presented once",
        PARTITION.as_secs(),
        recovered.as_secs_f64()
    );
}

const AUDIT_POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
    verbs: ["create", "update", "patch", "delete", "deletecollection"]
  - level: None
"#;

/// A successful write the API server's audit log recorded.
#[derive(Debug)]
struct AuditedWrite {
    at: String,
    user: String,
    /// Shown in a failure's message.
    #[allow(dead_code)]
    verb: String,
    resource: String,
    name: String,
}

fn audited_writes(log: &Path) -> Vec<AuditedWrite> {
    let text = std::fs::read_to_string(log).expect("the audit log");
    let mut writes: Vec<AuditedWrite> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| {
            event["stage"] == "ResponseComplete"
                && event["responseStatus"]["code"]
                    .as_u64()
                    .is_some_and(|code| (200..300).contains(&code))
        })
        .map(|event| AuditedWrite {
            at: event["stageTimestamp"].as_str().unwrap_or("").to_string(),
            user: event["user"]["username"].as_str().unwrap_or("").to_string(),
            verb: event["verb"].as_str().unwrap_or("").to_string(),
            resource: event["objectRef"]["resource"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            name: event["objectRef"]["name"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        })
        // Reviews are questions, not writes.
        .filter(|write| !write.resource.ends_with("reviews"))
        .collect();
    // RFC 3339 with microseconds in UTC: the text orders as the time.
    writes.sort_by(|a, b| a.at.cmp(&b.at));
    writes
}

/// Each write by `users` that came while another of them was the last to
/// write the Lease: two writers at one moment. A write of the Lease by
/// another is a take-over, and allowed.
fn overlapping_writes<'a>(
    writes: &'a [AuditedWrite],
    users: &[&str],
    lease: &str,
) -> Vec<&'a AuditedWrite> {
    let mut holder: Option<&str> = None;
    let mut overlaps = Vec::new();
    for write in writes.iter().filter(|w| users.contains(&w.user.as_str())) {
        if write.resource == "leases" && write.name == lease {
            holder = Some(&write.user);
        } else if holder != Some(write.user.as_str()) {
            overlaps.push(write);
        }
    }
    overlaps
}

#[test]
fn the_audit_check_finds_a_write_made_while_another_held_the_lease() {
    let write = |at: &str, user: &str, resource: &str| AuditedWrite {
        at: at.into(),
        user: user.into(),
        verb: "update".into(),
        resource: resource.into(),
        name: if resource == "leases" {
            "l".into()
        } else {
            "x".into()
        },
    };
    let writes = [
        write("1", "a", "leases"),
        write("2", "a", "applications"),
        write("3", "b", "leases"),
        write("4", "b", "secrets"),
        write("5", "a", "applications"),
        write("6", "c", "secrets"),
    ];
    let overlaps = overlapping_writes(&writes, &["a", "b"], "l");
    assert_eq!(overlaps.len(), 1, "{overlaps:?}");
    assert_eq!(
        (overlaps[0].at.as_str(), overlaps[0].user.as_str()),
        ("5", "a")
    );
}

/// Two replicas behind a leader Lease, the leader's API server link
/// black-holed for 30 s (five times the lease): it stops acting as leader
/// before the other takes over, so that the API server's audit log shows
/// no write of one while the other holds the Lease; after healing it
/// rejoins as a standby without a restart, and the cluster converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_longer_than_its_lease_steps_down_before_another_takes_over() {
    const LEASE: &str = "compass-runtime-agent";
    const CUT: Duration = Duration::from_secs(30);
    let dir = tempfile::tempdir().expect("a temp dir");
    let policy = dir.path().join("audit-policy.yaml");
    std::fs::write(&policy, AUDIT_POLICY).expect("the audit policy");
    let audit_log = dir.path().join("audit.log");
    let world = World::with_crds_and_apiserver_args(
        compass_runtime_agent::crd::all(),
        vec![
            format!("--audit-policy-file={}", policy.display()),
            format!("--audit-log-path={}", audit_log.display()),
        ],
    )
    .await;
    // deploy/'s RBAC (which grants the Lease), for two ServiceAccounts: the
    // audit log tells their writes apart.
    let (first, second) = ("compass-runtime-agent", "compass-runtime-agent-b");
    let mut rbac = accounts::deploy_rbac();
    let mut other = rbac
        .iter()
        .find(|o| o["kind"] == "ServiceAccount")
        .expect("the ServiceAccount")
        .clone();
    other["metadata"]["name"] = second.into();
    for object in &mut rbac {
        if object["kind"]
            .as_str()
            .is_some_and(|kind| kind.ends_with("Binding"))
        {
            let mut subject = object["subjects"][0].clone();
            subject["name"] = second.into();
            object["subjects"]
                .as_array_mut()
                .expect("subjects")
                .push(subject);
        }
    }
    rbac.push(other);
    accounts::apply_rbac(&world.client, &rbac).await;
    world
        .sim
        .put_application(RUNTIME_ID, application(0))
        .expect("an application");
    world.configure_with_fresh_token().await;

    let ca_bundle = world
        .settings
        .compass_ca_bundle
        .clone()
        .expect("the sim's CA");
    let mut replicas = Vec::new();
    let mut proxies = Vec::new();
    for (account, identity) in [(first, "replica-a"), (second, "replica-b")] {
        let proxy = FaultProxy::tcp_to_apiserver(&world.env.kube_config())
            .await
            .expect("a fault proxy");
        let token = service_account_token(&world.client, NS, account).await;
        let kubeconfig = write_proxy_kubeconfig(&world, &proxy, &token, dir.path(), identity);
        let env: Vec<(String, String)> = [
            ("APP_LEADER_ELECTION", "true"),
            (
                "APP_LEADER_ELECTION_LEASE",
                "kyma-system/compass-runtime-agent",
            ),
            ("APP_LEADER_ELECTION_LEASE_DURATION", "6s"),
            ("APP_LEADER_ELECTION_IDENTITY", identity),
            ("APP_COMPASS_CA_BUNDLE", &ca_bundle.display().to_string()),
            ("APP_CONTROLLER_SYNC_PERIOD", "3s"),
            ("APP_MINIMAL_COMPASS_SYNC_TIME", "1s"),
            ("APP_MAX_RETRY_DELAY", "4s"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        replicas.push(AgentProcess::spawn(&kubeconfig, &env, dir.path()));
        proxies.push(proxy);
        if identity == "replica-a" {
            // The first to start leads.
            wait_for_holder(&world, LEASE, "replica-a", LONG).await;
        }
    }
    let synchronized = Instant::now();
    while world.state().await != Some(ConnectionState::Synchronized) {
        assert!(
            synchronized.elapsed() < LONG,
            "not Synchronized; log:\n{}",
            replicas[0].log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_for_readyz(&replicas[1], "standby", LONG).await;

    proxies[0].set_mode(Mode::BlackHole);
    let cut = Instant::now();
    // When the old leader stood down (its /readyz says standby) and when the
    // other took the Lease, as each is first seen.
    let (mut stood_down, mut taken_over) = (None, None);
    while stood_down.is_none() || taken_over.is_none() {
        if stood_down.is_none()
            && replicas[0]
                .get("/readyz")
                .await
                .is_some_and(|(_, body)| body.contains("standby"))
        {
            stood_down = Some(cut.elapsed());
        }
        if taken_over.is_none() && holder(&world, LEASE).await.as_deref() == Some("replica-b") {
            taken_over = Some(cut.elapsed());
        }
        assert!(
            cut.elapsed() < LONG,
            "no hand-over: {stood_down:?} {taken_over:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (stood_down, taken_over) = (stood_down.unwrap(), taken_over.unwrap());
    assert!(
        stood_down < taken_over,
        "the cut-off leader stood down ({stood_down:?}) before the other took over ({taken_over:?})"
    );
    let applications: Api<Application> = Api::all(world.client.clone());
    world
        .sim
        .put_application(RUNTIME_ID, application(1))
        .expect("a Director change");
    wait_for_app(&applications, 1, Instant::now(), &replicas[1]).await;
    tokio::time::sleep(CUT.saturating_sub(cut.elapsed())).await;
    proxies[0].set_mode(Mode::Pass);

    // The cluster converges.
    world
        .sim
        .put_application(RUNTIME_ID, application(2))
        .expect("a Director change after healing");
    wait_for_app(&applications, 2, Instant::now(), &replicas[1]).await;
    // The old leader works again, without a restart: it takes the Lease when
    // the other hands it over, and synchronizes.
    replicas[0].assert_running();
    replicas[1].assert_running();
    assert_eq!(
        replicas[1].terminate(Duration::from_secs(30)).await,
        Some(0),
        "{}",
        replicas[1].log()
    );
    let handed = Instant::now();
    wait_for_holder(&world, LEASE, "replica-a", RECOVERY).await;
    world
        .sim
        .put_application(RUNTIME_ID, application(3))
        .expect("a Director change for the old leader");
    wait_for_app(&applications, 3, handed, &replicas[0]).await;
    let led_again = handed.elapsed();
    replicas[0].assert_running();
    assert_eq!(
        replicas[0].terminate(Duration::from_secs(30)).await,
        Some(0),
        "{}",
        replicas[0].log()
    );
    let names: Vec<String> = applications
        .list(&ListParams::default())
        .await
        .expect("Applications")
        .into_iter()
        .filter_map(|app| app.metadata.name)
        .collect();
    assert_eq!(
        names,
        (0..4).map(name_of).collect::<Vec<_>>(),
        "the cluster converged"
    );

    let users: Vec<String> = [first, second]
        .iter()
        .map(|account| format!("system:serviceaccount:{NS}:{account}"))
        .collect();
    let users: Vec<&str> = users.iter().map(String::as_str).collect();
    let writes = audited_writes(&audit_log);
    let overlaps = overlapping_writes(&writes, &users, LEASE);
    assert!(
        overlaps.is_empty(),
        "two writers at one moment: {overlaps:#?}"
    );
    let by = |user: &str| {
        writes
            .iter()
            .filter(|w| w.user == user && w.resource != "leases")
            .count()
    };
    assert!(
        by(users[0]) > 0 && by(users[1]) > 0,
        "both led and wrote: {writes:#?}"
    );
    println!(
        "leader cut off for {}s (lease 6s): it stood down {:.1}s after the cut, the other took over {:.1}s after it; after healing the cluster converged, and the old leader took the Lease back {:.1}s after the hand-over and synchronized, without a restart; {} writes by replica-a and {} by replica-b in the audit log, none while the other held the Lease",
        CUT.as_secs(),
        stood_down.as_secs_f64(),
        taken_over.as_secs_f64(),
        led_again.as_secs_f64(),
        by(users[0]),
        by(users[1])
    );
}

async fn wait_for_app(
    applications: &Api<Application>,
    n: usize,
    since: Instant,
    agent: &AgentProcess,
) {
    while applications
        .get_opt(&name_of(n))
        .await
        .ok()
        .flatten()
        .is_none()
    {
        assert!(
            since.elapsed() < RECOVERY,
            "Application {} not written; log:\n{}",
            name_of(n),
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn holder(world: &World, lease: &str) -> Option<String> {
    Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(world.client.clone(), NS)
        .get_opt(lease)
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

async fn wait_for_holder(world: &World, lease: &str, identity: &str, within: Duration) {
    let started = Instant::now();
    loop {
        let holder = holder(world, lease).await;
        if holder.as_deref() == Some(identity) {
            return;
        }
        assert!(
            started.elapsed() < within,
            "{identity} did not hold the Lease within {within:?} (holder {holder:?})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_for_readyz(agent: &AgentProcess, text: &str, within: Duration) {
    let started = Instant::now();
    loop {
        if let Some((_, body)) = agent.get("/readyz").await {
            if body.contains(text) {
                return;
            }
        }
        assert!(
            started.elapsed() < within,
            "/readyz never said {text:?}; log:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `status` and `diff`, run by an operator against an API server whose link
/// has stopped answering, end with exit code 2 and a message within their
/// request deadline, instead of waiting (the kube client's own default would
/// wait 30 s for the handshake, and for ever for an answer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_diff_on_a_black_holed_api_server_end_within_their_deadline() {
    let scene = Scene::start(Front::Tcp, &[], Mode::Pass, true).await;
    let kubeconfig = scene.dir.path().join("agent.kubeconfig");
    assert!(kubeconfig.exists(), "the agent's kubeconfig");
    scene.proxy.set_mode(Mode::BlackHole);
    let mut environment = kyma::environment();
    environment.push(("APP_KUBERNETES_REQUEST_TIMEOUT".into(), "3s".into()));
    for command in ["status", "diff"] {
        let started = Instant::now();
        let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_compass-runtime-agent"))
            .arg(command)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("KUBECONFIG", &kubeconfig)
            .envs(environment.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(Duration::from_secs(60), run)
            .await
            .unwrap_or_else(|_| panic!("`{command}` still runs after 60 s"))
            .expect("the binary runs");
        let took = started.elapsed();
        let stderr = String::from_utf8_lossy(&output.stderr);
        println!(
            "`{command}` against a black-holed API server: exit {:?} after {took:.1?}: {stderr}",
            output.status.code()
        );
        assert_eq!(output.status.code(), Some(2), "`{command}`: {stderr}");
        assert!(
            took < Duration::from_secs(15),
            "`{command}` took {took:?} with a 3 s request deadline"
        );
        assert!(!stderr.trim().is_empty(), "`{command}` says why");
    }
    scene.proxy.set_mode(Mode::Pass);
}
