//! Synchronization at scale: 1,000 applications × 2 bundles × 3 APIs and
//! 2 events, a real apiserver, compass-sim, and the agent binary as its own
//! process (so its memory is its own). Three rounds, each on a fresh apiserver
//! (`BENCH_ROUNDS`); prints a table with each round and the median; never
//! fails on a time.
//!
//!     cargo bench -p compass-runtime-agent --bench sync
//!     BENCH_APPLICATIONS=200 BENCH_ROUNDS=1 cargo bench -p compass-runtime-agent --bench sync
//!     BENCH_AGENT_WRAPPER="valgrind --tool=massif --massif-out-file=/tmp/massif.out" \
//!         cargo bench -p compass-runtime-agent --bench sync
//!     BENCH_AGENT_BIN=target/image/x86_64-unknown-linux-gnu/release/compass-runtime-agent \
//!         cargo bench -p compass-runtime-agent --bench sync
//!
//! After the first sync, each round waits for `BENCH_IDLE_SYNCS` idle syncs
//! (3 by default), made by the agent's period as in production (not by
//! `resyncNow`, which reads the cluster afresh), and reports their median.
//!
//! `BENCH_AGENT_BIN` runs that agent binary instead of the one cargo built
//! for the bench (the bench profile), e.g. the static image binary or a build
//! with another profile; the table names the binary and its size.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use compass_runtime_agent::crd::application::Application;
use compass_runtime_agent::crd::ConnectionState;
use kube::api::ListParams;
use kube::Api;

/// A `kB` field of `/proc/<pid>/status` (`VmHWM`, `RssAnon`, `RssFile`).
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM")
}

/// How many idle syncs a round makes after the first sync:
/// `BENCH_IDLE_SYNCS`, 3 by default.
fn idle_sync_count() -> usize {
    std::env::var("BENCH_IDLE_SYNCS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(3)
        .max(1)
}

/// The agent binary to run: `BENCH_AGENT_BIN`, else the one cargo built.
fn agent_binary() -> PathBuf {
    std::env::var_os("BENCH_AGENT_BIN")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_compass-runtime-agent")))
}

/// How fast this machine is at the moment: the time SHA-1 takes over 64 MiB
/// in this process. The shared 2-core machine's speed moves by a third from
/// hour to hour; figures are comparable only with this one beside them.
fn machine_speed_reference() -> std::time::Duration {
    use sha1::{Digest, Sha1};
    let block = vec![0x5au8; 1 << 20];
    let started = Instant::now();
    let mut hasher = Sha1::new();
    for _ in 0..64 {
        hasher.update(&block);
    }
    std::hint::black_box(hasher.finalize());
    started.elapsed()
}

/// The apiserver's own pace: the Applications and Secrets the agent's first
/// sync wrote, copied as they are (same names, labels, data, owner
/// references) into a second fresh apiserver by a plain kube client, in the
/// agent's pattern: 8 applications at a time, each its Application and then
/// its Secrets. The same writes into the same empty cluster, without the
/// agent: the floor of the first sync. Returns the count, the time and the
/// apiserver's CPU seconds.
async fn plain_client_write_time(source: World) -> Floor {
    use futures::stream::{self, StreamExt};
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{ObjectMeta, PostParams};
    use kube::ResourceExt;
    let fresh = |from: &ObjectMeta| ObjectMeta {
        name: from.name.clone(),
        namespace: from.namespace.clone(),
        labels: from.labels.clone(),
        annotations: from.annotations.clone(),
        owner_references: from.owner_references.clone(),
        ..ObjectMeta::default()
    };
    let applications: Vec<Application> = Api::<Application>::all(source.client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let mut secrets_by_app = std::collections::BTreeMap::<String, Vec<Secret>>::new();
    for secret in Api::<Secret>::namespaced(source.client.clone(), NS)
        .list(&ListParams::default().labels("bundleId"))
        .await
        .unwrap()
        .items
    {
        let app = secret.labels().get("app").cloned().unwrap_or_default();
        secrets_by_app.entry(app).or_default().push(Secret {
            metadata: fresh(&secret.metadata),
            data: secret.data,
            type_: secret.type_,
            ..Secret::default()
        });
    }
    let writes: Vec<(Application, Vec<Secret>)> = applications
        .into_iter()
        .map(|app| {
            let secrets = secrets_by_app
                .remove(app.metadata.name.as_deref().unwrap_or_default())
                .unwrap_or_default();
            let copy = Application {
                metadata: fresh(&app.metadata),
                spec: app.spec,
                status: None,
            };
            (copy, secrets)
        })
        .collect();
    let count = writes.iter().map(|(_, secrets)| 1 + secrets.len()).sum();
    // Stopped, so that its apiserver takes no CPU from the floor's.
    drop(source);

    let target = World::new().await;
    warm_up_custom_resources(&target).await;
    let apiserver_cpu = || target.env.process_id().and_then(cpu_seconds);
    let app_api = Api::<Application>::all(target.client.clone());
    let secret_api = Api::<Secret>::namespaced(target.client.clone(), NS);
    let cpu_before = apiserver_cpu();
    let client_cpu_before = cpu_seconds(std::process::id());
    let started = Instant::now();
    let results: Vec<Result<(), kube::Error>> = stream::iter(writes)
        .map(|(app, secrets)| {
            let (app_api, secret_api) = (app_api.clone(), secret_api.clone());
            async move {
                app_api.create(&PostParams::default(), &app).await?;
                for secret in secrets {
                    secret_api.create(&PostParams::default(), &secret).await?;
                }
                Ok(())
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let cpu = apiserver_cpu()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    let client_cpu = cpu_seconds(std::process::id())
        .zip(client_cpu_before)
        .map(|(after, before)| after - before);
    assert!(results.iter().all(Result::is_ok), "a plain write failed");
    Floor {
        writes: count,
        time: elapsed,
        apiserver_cpu: cpu,
        client_cpu,
    }
}

/// The floor: the first sync's objects written by a plain kube client.
struct Floor {
    writes: usize,
    time: Duration,
    /// The apiserver's and etcd's CPU for them.
    apiserver_cpu: Option<f64>,
    /// The plain client's own CPU (the bench's process, idle but for it).
    client_cpu: Option<f64>,
}

/// CPU seconds (user + system) the process has used.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may hold spaces) in parentheses.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// On a fresh apiserver the first object of a newly installed CRD takes
/// seconds to write (the apiserver sets up that resource's storage). In a
/// cluster the agent joins, Kyma's CRDs have long been in place: one object of
/// each, written and deleted before the agent starts, keeps that one-off cost
/// of the test apiserver out of the figures.
async fn warm_up_custom_resources(world: &World) {
    use compass_runtime_agent::crd::application::ApplicationSpec;
    use compass_runtime_agent::crd::{CompassConnection, CompassConnectionSpec};
    use kube::api::{DeleteParams, PostParams};
    let started = Instant::now();
    let connections: Api<CompassConnection> = Api::all(world.client.clone());
    let connection = CompassConnection::new("bench-warm-up", CompassConnectionSpec::default());
    connections
        .create(&PostParams::default(), &connection)
        .await
        .unwrap();
    connections
        .delete("bench-warm-up", &DeleteParams::default())
        .await
        .unwrap();
    let applications: Api<Application> = Api::all(world.client.clone());
    let application = Application::new("bench-warm-up", ApplicationSpec::default());
    applications
        .create(&PostParams::default(), &application)
        .await
        .unwrap();
    applications
        .delete("bench-warm-up", &DeleteParams::default())
        .await
        .unwrap();
    eprintln!(
        "custom resources warmed up in {:.2} s",
        started.elapsed().as_secs_f64()
    );
}

fn director_requests(world: &World) -> usize {
    world
        .sim
        .request_log()
        .iter()
        .filter(|e| matches!(e.endpoint, compass_sim::Endpoint::Director))
        .count()
}

/// Seconds the agent has spent waiting for the Director's answers to
/// `applicationsForRuntime` (its own request-duration histogram's sum).
fn director_wait_seconds(metrics: &str) -> f64 {
    let series = "compass_runtime_agent_compass_request_duration_seconds_sum";
    metric_sum(metrics, series, "applicationsForRuntime")
}

/// Reads of the cluster by a sync that listed it (not the state kept while
/// watches saw no change).
fn cluster_reads_listed(metrics: &str) -> u64 {
    let series = "compass_runtime_agent_kubernetes_cluster_reads_total";
    metric_sum(metrics, series, "how=\"Listed\"") as u64
}

/// The agent's time in synchronizations so far (`sync_duration_seconds`).
fn sync_seconds(metrics: &str) -> f64 {
    metric_sum(
        metrics,
        "compass_runtime_agent_sync_duration_seconds_sum",
        "",
    )
}

/// The idle syncs' period (`APP_CONTROLLER_SYNC_PERIOD`): each starts a
/// few seconds after the one before ended.
const IDLE_PERIOD: &str = "5s";

fn writes(metrics: &str) -> u64 {
    let series = "compass_runtime_agent_kubernetes_writes_total";
    metric_sum(metrics, series, "outcome=\"Success\"") as u64
}

/// The figures of one round: a fresh apiserver and compass-sim, the agent's
/// first and idle sync, then the plain client's floor.
struct Round {
    speed_reference: Duration,
    server_version: String,
    first_sync: Duration,
    apps_in_cluster: usize,
    writes_first: u64,
    director_first: usize,
    apiserver_cpu_first: Option<f64>,
    floor_writes: usize,
    floor: Duration,
    apiserver_cpu_floor: Option<f64>,
    client_cpu_floor: Option<f64>,
    idle_sync: Duration,
    writes_idle: u64,
    director_idle: usize,
    cpu_first: f64,
    /// The median of the round's idle syncs, and their extremes.
    cpu_idle: f64,
    cpu_idle_lowest: f64,
    cpu_idle_highest: f64,
    /// The apiserver's and etcd's CPU per idle sync (median).
    apiserver_cpu_idle: Option<f64>,
    /// How many of the idle syncs listed the cluster.
    idle_syncs_listed: u64,
    director_wait_idle: f64,
    peak_rss_first_kib: u64,
    rss_anon_first_kib: u64,
    rss_file_first_kib: u64,
    peak_rss_kib: u64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes --bench; under `cargo test` this is a quick smoke run.
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let count: usize = std::env::var("BENCH_APPLICATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if benchmarking { 1000 } else { 20 });
    // The machine's pace moves by a third within minutes: one round is one
    // sample of it, the median of three a figure.
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if benchmarking { 3 } else { 1 })
        .max(1);
    let mut figures = Vec::new();
    for number in 1..=rounds {
        eprintln!("round {number} of {rounds}");
        figures.push(round(count).await);
    }
    print_table(count, &figures);
}

async fn round(count: usize) -> Round {
    let speed_reference = machine_speed_reference();
    let world = World::new().await;
    let apps = compass_sim::model::generate_applications(count, 2, 3, 2);
    world.sim.set_applications(RUNTIME_ID, apps).unwrap();
    world.configure_with_fresh_token().await;
    warm_up_custom_resources(&world).await;
    // kube-apiserver and etcd run in one process (kube-testenv).
    let apiserver_pid = world.env.process_id();
    let apiserver_cpu = || apiserver_pid.and_then(cpu_seconds);

    let metrics_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let apiserver_cpu_before = apiserver_cpu();
    let started = Instant::now();
    // BENCH_AGENT_WRAPPER="valgrind --tool=massif" runs the agent under a profiler.
    let wrapper = std::env::var("BENCH_AGENT_WRAPPER").unwrap_or_default();
    let mut command = match wrapper.split_whitespace().collect::<Vec<_>>().split_first() {
        Some((program, args)) => {
            let mut command = Command::new(program);
            command.args(args).arg(agent_binary());
            command
        }
        None => Command::new(agent_binary()),
    };
    let mut agent = command
        .env("KUBECONFIG", world.env.kubeconfig_path())
        .env(
            "APP_COMPASS_CA_BUNDLE",
            world.settings.compass_ca_bundle.as_ref().unwrap(),
        )
        .env("APP_HEALTH_PORT", "0")
        .env("APP_HEALTH_ADDRESS", "127.0.0.1")
        .env("APP_METRICS_ADDRESS", format!("127.0.0.1:{metrics_port}"))
        // Idle syncs by the period, a few seconds apart.
        .env("APP_CONTROLLER_SYNC_PERIOD", IDLE_PERIOD)
        .env("APP_MINIMAL_COMPASS_SYNC_TIME", "1s")
        .env(
            "APP_LOG_LEVEL",
            std::env::var("BENCH_AGENT_LOG_LEVEL").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(if std::env::var_os("BENCH_AGENT_LOG_LEVEL").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .spawn()
        .expect("the agent binary starts");
    let pid = agent.id();

    world
        .wait_for_state(ConnectionState::Synchronized, Duration::from_secs(600))
        .await;
    let first_sync = started.elapsed();
    let apiserver_cpu_first = apiserver_cpu()
        .zip(apiserver_cpu_before)
        .map(|(after, before)| after - before);
    let director_first = director_requests(&world);
    // The first sync's figures at once: its status write wakes the agent,
    // and the next sync (the first idle one) begins right after it.
    let metrics_url = format!("http://127.0.0.1:{metrics_port}/metrics");
    let scrape = || async {
        reqwest::get(&metrics_url)
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let metrics_first = scrape().await;
    let cpu_first = cpu_seconds(pid).unwrap_or(0.0);
    let apiserver_cpu_at_first = apiserver_cpu();
    let writes_first = writes(&metrics_first);
    let peak_rss_first = peak_rss_kib(pid).unwrap_or(0);
    let rss_anon_first = status_kib(pid, "RssAnon").unwrap_or(0);
    let rss_file_first = status_kib(pid, "RssFile").unwrap_or(0);
    let apps_in_cluster = Api::<Application>::all(world.client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .len();

    // Idle syncs: nothing changed in the Director. Several, one after the
    // other: the agent's CPU in one moves with whatever else the machine
    // does in those seconds, and the median of a few is steadier.
    let mut idle_syncs = Vec::new();
    let mut cpu_idle_each = Vec::new();
    let mut director_wait_idle_each = Vec::new();
    let mut apiserver_cpu_idle_each = Vec::new();
    let listed_before_idle = cluster_reads_listed(&metrics_first);
    let (mut metrics_before, mut cpu_before) = (metrics_first, cpu_first);
    let mut apiserver_cpu_before = apiserver_cpu_at_first;
    let mut director_idle = 0;
    for _ in 0..idle_sync_count() {
        world.sim.clear_request_log();
        let syncs_before = sync_count(&metrics_before);
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if sync_count(&scrape().await) > syncs_before {
                break;
            }
        }
        let metrics_idle = scrape().await;
        idle_syncs.push(sync_seconds(&metrics_idle) - sync_seconds(&metrics_before));
        director_wait_idle_each
            .push(director_wait_seconds(&metrics_idle) - director_wait_seconds(&metrics_before));
        director_idle = director_requests(&world);
        let cpu_now = cpu_seconds(pid).unwrap_or(0.0);
        cpu_idle_each.push(cpu_now - cpu_before);
        let apiserver_cpu_now = apiserver_cpu();
        if let (Some(now), Some(before)) = (apiserver_cpu_now, apiserver_cpu_before) {
            apiserver_cpu_idle_each.push(now - before);
        }
        apiserver_cpu_before = apiserver_cpu_now;
        (metrics_before, cpu_before) = (metrics_idle, cpu_now);
    }
    let writes_idle = writes(&metrics_before) - writes_first;
    let idle_syncs_listed = cluster_reads_listed(&metrics_before) - listed_before_idle;
    let idle_sync = Duration::from_secs_f64(median(idle_syncs));
    let director_wait_idle = median(director_wait_idle_each);
    let peak_rss = peak_rss_kib(pid).unwrap_or(0);
    // SIGTERM, so that a profiler wrapping the agent writes its report.
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = agent.wait();
    let server_version = world.env.server_version().to_string();
    let Floor {
        writes: floor_writes,
        time: floor,
        apiserver_cpu: apiserver_cpu_floor,
        client_cpu: client_cpu_floor,
    } = plain_client_write_time(world).await;
    Round {
        speed_reference,
        server_version,
        first_sync,
        apps_in_cluster,
        writes_first,
        director_first,
        apiserver_cpu_first,
        floor_writes,
        floor,
        apiserver_cpu_floor,
        client_cpu_floor,
        idle_sync,
        writes_idle,
        director_idle,
        cpu_first,
        cpu_idle: median(cpu_idle_each.clone()),
        cpu_idle_lowest: cpu_idle_each.iter().copied().fold(f64::INFINITY, f64::min),
        cpu_idle_highest: cpu_idle_each.iter().copied().fold(0.0, f64::max),
        apiserver_cpu_idle: (!apiserver_cpu_idle_each.is_empty())
            .then(|| median(apiserver_cpu_idle_each)),
        idle_syncs_listed,
        director_wait_idle,
        peak_rss_first_kib: peak_rss_first,
        rss_anon_first_kib: rss_anon_first,
        rss_file_first_kib: rss_file_first,
        peak_rss_kib: peak_rss,
    }
}

/// The middle value (the upper one of an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn print_table(count: usize, rounds: &[Round]) {
    println!("compass-runtime-agent synchronization benchmark");
    let binary = agent_binary();
    let binary_size = std::fs::metadata(&binary).map(|m| m.len()).unwrap_or(0);
    println!(
        "machine: {} cores; apiserver {}; agent binary {} ({:.1} MB)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        rounds[0].server_version,
        binary.display(),
        binary_size as f64 / 1e6
    );
    println!("Director: {count} applications × 2 bundles × 3 APIs, 2 events (Basic/OAuth credentials and headers per bundle)");
    println!(
        "{} round(s), each with a fresh apiserver and compass-sim",
        rounds.len()
    );
    let mut header = String::from("| figure |");
    let mut rule = String::from("|---|");
    for number in 1..=rounds.len() {
        header.push_str(&format!(" round {number} |"));
        rule.push_str("---|");
    }
    println!("{header} median | target |");
    println!("{rule}---|---|");
    let row =
        |figure: &str, unit: &str, decimals: usize, target: &str, value: &dyn Fn(&Round) -> f64| {
            let values: Vec<f64> = rounds.iter().map(value).collect();
            let mut line = format!("| {figure} |");
            for v in &values {
                line.push_str(&format!(" {v:.decimals$}{unit} |"));
            }
            line.push_str(&format!(
                " {:.decimals$}{unit} | {target} |",
                median(values)
            ));
            println!("{line}");
        };
    let cpu = |value: Option<f64>| value.unwrap_or(f64::NAN);
    row(
        "machine speed reference (SHA-1 over 64 MiB, lower is faster)",
        " ms",
        0,
        "",
        &|r| r.speed_reference.as_secs_f64() * 1000.0,
    );
    row(
        "first sync (start → Synchronized, incl. connecting)",
        " s",
        2,
        "< 10 s",
        &|r| r.first_sync.as_secs_f64(),
    );
    row(
        "Applications in the cluster after it",
        "",
        0,
        &count.to_string(),
        &|r| r.apps_in_cluster as f64,
    );
    row("writes during the first sync", "", 0, "", &|r| {
        r.writes_first as f64
    });
    row("Director requests, first sync", "", 0, "", &|r| {
        r.director_first as f64
    });
    row(
        &format!(
            "floor: the same {} objects written by a plain client into a fresh apiserver, 8 applications at a time",
            rounds[0].floor_writes
        ),
        " s",
        2,
        "",
        &|r| r.floor.as_secs_f64(),
    );
    row("first sync ÷ floor", "", 2, "", &|r| {
        r.first_sync.as_secs_f64() / r.floor.as_secs_f64()
    });
    row("apiserver + etcd CPU time, first sync", " s", 2, "", &|r| {
        cpu(r.apiserver_cpu_first)
    });
    row("apiserver + etcd CPU time, floor", " s", 2, "", &|r| {
        cpu(r.apiserver_cpu_floor)
    });
    row(
        "the plain client's CPU time, floor (the bench's process; the agent's own for the first sync is below)",
        " s",
        2,
        "",
        &|r| cpu(r.client_cpu_floor),
    );
    row(
        "idle (unchanged) sync, by the period (the agent's sync_duration_seconds; median of the round's idle syncs)",
        " s",
        2,
        "< 1 s",
        &|r| r.idle_sync.as_secs_f64(),
    );
    row("writes during the idle syncs", "", 0, "0", &|r| {
        r.writes_idle as f64
    });
    row("Director requests per idle sync", "", 0, "", &|r| {
        r.director_idle as f64
    });
    row("agent CPU time, first sync", " s", 2, "", &|r| r.cpu_first);
    row(
        "agent CPU time, idle sync (median of the round's idle syncs)",
        " s",
        2,
        "≤ 0.5 s at 10,000",
        &|r| r.cpu_idle,
    );
    row(
        "agent CPU time, idle sync: the round's lowest",
        " s",
        2,
        "",
        &|r| r.cpu_idle_lowest,
    );
    row(
        "agent CPU time, idle sync: the round's highest",
        " s",
        2,
        "",
        &|r| r.cpu_idle_highest,
    );
    row(
        "idle syncs that listed the cluster (the others: the last read's state, kept while watched)",
        "",
        0,
        "",
        &|r| r.idle_syncs_listed as f64,
    );
    row(
        "apiserver + etcd CPU time, idle sync (median)",
        " s",
        2,
        "",
        &|r| cpu(r.apiserver_cpu_idle),
    );
    row(
        "idle sync: time waiting for the Director's pages (sum of the requests' durations; median)",
        " s",
        2,
        "",
        &|r| r.director_wait_idle,
    );
    row(
        "agent peak resident memory after the first sync (VmHWM)",
        " MB",
        1,
        "",
        &|r| r.peak_rss_first_kib as f64 / 1024.0,
    );
    row(
        "agent resident memory after the first sync: anonymous (heap, stacks, relocated data)",
        " MB",
        1,
        "",
        &|r| r.rss_anon_first_kib as f64 / 1024.0,
    );
    row(
        "agent resident memory after the first sync: file-backed (the binary's pages)",
        " MB",
        1,
        "",
        &|r| r.rss_file_first_kib as f64 / 1024.0,
    );
    row(
        "agent peak resident memory, the idle syncs included (VmHWM)",
        " MB",
        1,
        "< 30 MB",
        &|r| r.peak_rss_kib as f64 / 1024.0,
    );
}
