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
