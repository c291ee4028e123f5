//! # Fault soak
//!
//! Runs the agent binary for a set time against a real kube-apiserver + etcd
//! and compass-sim while the simulator injects random faults of every kind it
//! has, the Director's applications change at random, and the agent and the
//! apiserver are restarted at random moments. Throughout, it checks what an
//! operator relies on, and fails (panics, listing each violation) when any of
//! it breaks:
//!
//! - an Application is never deleted while the Director still has it (so never
//!   because of a failed fetch), and the Application the agent does not manage
//!   is never touched;
//! - every version of the client certificate Secret holds a key and a
//!   certificate that belong together (the agent's own check,
//!   `ClientCredentials::new`), the CA Secret always holds a certificate, and
//!   neither is deleted;
//! - after the faults stop, the agent is `Synchronized` by a sync that started
//!   after they stopped, and the cluster matches the Director exactly, within
//!   two sync periods + the maximal retry delay + one request timeout + one
//!   lease duration (3 s + 3 s + 4 s + 3 s + 5 s = 18 s): a backoff may be
//!   pending when the faults stop, a delayed request may still be running,
//!   and a leader killed just before may not have been replaced yet;
//! - no connection ever reaches the plain-http host a redirect points at;
//! - the agent's memory does not grow without bound: for every run of the agent
//!   process that lasted at least 40 s, the peak RSS of its second half (its
//!   first 10 s left out) may exceed that of its first half by at most
//!   max(25 %, 16 MiB);
//! - a SIGTERM ends a replica with exit code 0 within 30 s, and none exits
//!   by itself;
//! - no one-time token, no credential of a Director application, no line of a
//!   private key and no `PRIVATE KEY` appears in the agent's logs.
//!
//! ## Commands
//!
//! ```sh
//! # the short run (90 s of faults, ≈2.5 min in all); part of `cargo test`
//! cargo test -p compass-runtime-agent --test soak
//! # the long run
//! cargo test -p compass-runtime-agent --release --test soak -- --duration 10m
//! # replay a run: the same seed gives the same schedule of faults, changes and
//! # restarts (what the agent does in between still depends on timing)
//! SOAK_SEED=1234 SOAK_DURATION=10m cargo test -p compass-runtime-agent --release --test soak
//! ```
//!
//! `--duration`/`SOAK_DURATION` take `90s`, `10m`, `1m30s` or seconds;
//! `--seed`/`SOAK_SEED` a number (default: random, printed at the start). The
//! soak prints each event as it happens and a table at the end: run time,
//! seed, faults injected by kind, Director changes, agent and apiserver
//! restarts, the agent's reconciles, syncs, renewals and (re-)establishments
//! (summed over its restarts), recovery time, RSS and violations. When a
//! violation is found (or with `SOAK_KEEP_LOGS=1`), the agent's logs and
//! compass-sim's request log are kept and their directory printed.
//!
//! ## What runs
//!
//! Two replicas of the agent run as their own processes behind a leader
//! Lease (5 s), with short settings (`APP_MINIMAL_COMPASS_SYNC_TIME=1s`,
//! `APP_CONTROLLER_SYNC_PERIOD=3s`, `APP_COMPASS_REQUEST_TIMEOUT=3s`,
//! `APP_MAX_RETRY_DELAY=4s`), reading the Director 4 applications per page
//! (`APP_DIRECTOR_PAGE_SIZE=4`) with answers limited to 1 MiB
//! (`APP_COMPASS_MAX_RESPONSE_SIZE=1Mi`), starting with 14 applications
//! (4 pages). Every 2–5 s a fault is drawn from a shuffled deck (24 cards, so
//! that every kind comes up in the short run): HTTP 500, HTTP 503, GraphQL
//! error, null data, malformed JSON, a delay beyond the request timeout, a
//! dropped connection (two cards each; each for the next 1–3 requests of a
//! random operation, or of all; none is added while 5 wait for a request); a
//! burst of 1–3 HTTP 401/403 from the certificate-secured Connector, a page
//! whose list is `null`, an answer of 2 MiB, the first application removed
//! between two page requests, a redirect to a plain-http listener (which must
//! never be called), the revocation of the runtime's certificates, a rotation
//! of the client CA, a new certificate validity (20 s, 30 s, 60 s or 90
//! days; it starts at 20 s, so renewals happen), or the replicas' API server
//! link (a fault proxy in front of the API server) black-holed or refused for
//! 5–15 s (the first deck draws the partition first and the refusal sixth,
//! or at the first draw after the partition ended, so that both come up in
//! the short run; none starts within 40 s of the end,
//! so that the connections a partition killed are found dead before the
//! faults stop). After a revocation or a CA
//! rotation the soak, like an operator, writes a fresh one-time token into
//! the configuration Secret; it also does so when the agent reports a refused
//! token or has been `ConnectionFailed` for 6 s (a token is spent when the
//! answer to it is lost), or when a maintenance failed for 15 s or the last
//! token written did not connect. Every 2–6 s an application is added (names
//! are never reused), changed (description, credentials, bundles, request
//! parameters, API targets) or removed, or a Runtime label is changed behind
//! the agent's back. For a run of length d, the leading replica is restarted
//! every max(20 s, d/8)–max(40 s, d/4) (SIGKILL and SIGTERM in turn, so the
//! standby takes over under load, by expiry or by hand-over), and the
//! apiserver + etcd every max(30 s, d/5)–max(60 s, d/2.5)
//! (`TestEnv::restart`: SIGKILL, then a new process over the same data, port
//! and certificates). Request faults are cleared when the run time is over;
//! "after the faults stop" is measured from then.

mod common;

#[path = "soak/agent.rs"]
mod agent;
#[path = "soak/director.rs"]
mod director;
#[path = "soak/watch.rs"]
mod watch;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{World, CA_NS, CONFIG_NAME, NS, RUNTIME_ID};
use compass_runtime_agent::certificates::ClientCredentials;
use compass_runtime_agent::config::LogFormat;
use compass_runtime_agent::crd::application::{Application, ApplicationSpec};
use compass_runtime_agent::crd::{CompassConnection, ConnectionState, COMPASS_CONNECTION_NAME};
use compass_sim::{FaultKind, FaultTimes};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::ByteString;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use test_support::{FaultProxy, Mode};

use agent::{
    AgentConfig, AgentProcess, Counters, DIRECTOR_PAGE_SIZE, LEASE, LEASE_DURATION,
    MAX_RETRY_DELAY, REQUEST_TIMEOUT, SYNC_PERIOD,
};
use director::Director;
use watch::Record;

const DEFAULT_DURATION: Duration = Duration::from_secs(90);
const INITIAL_APPS: usize = 14;
const UNMANAGED_APP: &str = "operator-owned";
const CERT_SECRET: &str = "cluster-client-certificates";
const CA_SECRET: &str = "ca-certificates";
const EVENTS_URL: &str = "https://gateway.kyma.local";
const CONSOLE_URL: &str = "https://console.kyma.local";
/// How long after the faults stop the agent may take to be Synchronized with
/// the cluster matching the Director: two sync periods, plus the longest
/// backoff that may be pending, plus a request that may still be running,
/// plus a lease duration (a leader killed just before may not have been
/// replaced yet).
const RECOVERY_BOUND: Duration = Duration::from_secs(
    2 * SYNC_PERIOD.as_secs()
        + MAX_RETRY_DELAY.as_secs()
        + REQUEST_TIMEOUT.as_secs()
        + LEASE_DURATION.as_secs(),
);
/// How long to keep waiting past the bound, to report how long it took.
const RECOVERY_GIVE_UP: Duration = Duration::from_secs(120);

// ---- options ----

struct Options {
    duration: Duration,
    seed: u64,
}

/// `90s`, `10m`, `1m30s`, `1h`, `500ms` or plain seconds.
fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let number: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "h" => Duration::from_secs(3600),
            "m" => Duration::from_secs(60),
            "s" => Duration::from_secs(1),
            "ms" => Duration::from_millis(1),
            _ => return None,
        };
        total += unit * number as u32;
        rest = &rest[unit_len..];
    }
    (total > Duration::ZERO).then_some(total)
}

/// `Ok(None)`: not this test's turn (`--list`, `--ignored`, or a filter that
/// does not match "soak"). Unknown flags (what cargo test passes on to
/// libtest harnesses) are ignored.
fn parse_options(args: &[String]) -> Result<Option<Options>, String> {
    let mut duration = std::env::var("SOAK_DURATION").ok();
    let mut seed = std::env::var("SOAK_SEED").ok();
    let mut filters = Vec::new();
    let mut exact = false;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = || inline.clone().or_else(|| args.next().cloned());
        match flag {
            "--duration" => duration = value(),
            "--seed" => seed = value(),
            "--list" => {
                println!("soak: test");
                return Ok(None);
            }
            "--ignored" => return Ok(None),
            "--exact" => exact = true,
            // libtest's flags that take a value
            "--test-threads" | "--skip" | "--format" | "--color" | "--logfile"
            | "--shuffle-seed" | "-Z" => {
                value();
            }
            other if other.starts_with('-') => {}
            filter => filters.push(filter.to_string()),
        }
    }
    if !filters.is_empty()
        && !filters.iter().any(|f| {
            if exact {
                f == "soak"
            } else {
                "soak".contains(f.as_str())
            }
        })
    {
        return Ok(None);
    }
    let duration = match duration {
        Some(text) => parse_duration(&text).ok_or(format!("cannot read the duration {text:?}"))?,
        None => DEFAULT_DURATION,
    };
    let seed = match seed {
        Some(text) => text
            .trim()
            .parse()
            .map_err(|_| format!("cannot read the seed {text:?}"))?,
        None => rand::random(),
    };
    Ok(Some(Options { duration, seed }))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse_options(&args) {
        Ok(Some(options)) => options,
        Ok(None) => return,
        Err(message) => panic!("soak: {message}"),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let violations = runtime.block_on(soak(options));
    runtime.shutdown_timeout(Duration::from_secs(5));
    if !violations.is_empty() {
        panic!(
            "the fault soak found {} invariant violation(s):\n{}",
            violations.len(),
            violations.join("\n")
        );
    }
}

// ---- faults ----

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    Http500,
    Http503,
    GraphqlError,
    NullData,
    MalformedJson,
    Delay,
    DropConnection,
    /// 401/403 from the certificate-secured Connector, 1–3 in a row.
    Refusal,
    /// A page whose list is `null`.
    NullList,
    /// An answer of 2 MiB, above the agent's 1 MiB limit.
    Oversized,
    /// The first application removed between two page requests.
    MidPagingRemoval,
    /// A redirect to a plain-http listener that must never be called.
    Redirect,
    Revocation,
    CaRotation,
    Validity,
    /// The API server link black-holed for 5–15 s: open connections carry
    /// nothing, for ever; new ones too while it lasts.
    ApiPartition,
    /// The API server link refused for 5–15 s: every connection reset.
    ApiRefusal,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::Http500 => "http500",
            Fault::Http503 => "http503",
            Fault::GraphqlError => "graphqlError",
            Fault::NullData => "nullData",
            Fault::MalformedJson => "malformedJson",
            Fault::Delay => "delay",
            Fault::DropConnection => "dropConnection",
            Fault::Refusal => "401/403 burst",
            Fault::NullList => "nullList",
            Fault::Oversized => "oversized answer",
            Fault::MidPagingRemoval => "removal between pages",
            Fault::Redirect => "redirect to http",
            Fault::Revocation => "certificate revocation",
            Fault::CaRotation => "CA rotation",
            Fault::Validity => "certificate validity change",
            Fault::ApiPartition => "API server partition",
            Fault::ApiRefusal => "API server refusal",
        }
    }

    /// One deck: the older request faults twice, the others once.
    fn deck(rng: &mut StdRng) -> Vec<Fault> {
        let mut deck = Vec::new();
        for fault in [
            Fault::Http500,
            Fault::Http503,
            Fault::GraphqlError,
            Fault::NullData,
            Fault::MalformedJson,
            Fault::Delay,
            Fault::DropConnection,
        ] {
            deck.extend([fault, fault]);
        }
        deck.extend([
            Fault::Refusal,
            Fault::NullList,
            Fault::Oversized,
            Fault::MidPagingRemoval,
            Fault::Redirect,
            Fault::Revocation,
            Fault::CaRotation,
            Fault::Validity,
            Fault::ApiPartition,
            Fault::ApiRefusal,
        ]);
        deck.shuffle(rng);
        deck
    }
}

/// Operations a request fault may hit ("*" = any).
const OPERATIONS: [&str; 7] = [
    "configuration",
    "configuration",
    "signCertificateSigningRequest",
    "runtime",
    "applicationsForRuntime",
    "applicationsForRuntime",
    "*",
];

/// No more request faults are queued while this many wait for a request.
const MAX_PENDING_FAULTS: usize = 5;

// ---- the soak ----

struct Soak {
    world: World,
    record: Arc<Record>,
    rng: StdRng,
    director: Director,
    agent_config: AgentConfig,
    incarnation: usize,
    tokens: Vec<String>,
    tokens_after_faults: u32,
    operator_tokens: u32,
    failed_since: Option<Instant>,
    last_token: Instant,
    faults: BTreeMap<Fault, u32>,
    faults_skipped: u32,
    label_drifts: u32,
    agent_kills: u32,
    agent_terms: u32,
    last_was_sigterm: Option<bool>,
    apiserver_restarts: Vec<Duration>,
    /// Applications a pending `RemoveFirstApplication` fault will remove (id,
    /// name): already gone from the soak's Director.
    pending_removals: Vec<(String, String)>,
    /// A plain-http listener redirects point at; it counts connections.
    redirect_target: RedirectTarget,
    /// The replicas: two, behind the Lease.
    agents: Vec<AgentProcess>,
    /// Between the replicas and the API server (the soak's own watches
    /// and checks go straight to it).
    api_link: FaultProxy,
    /// When the API server link fault in place ends.
    api_link_heals: Option<Instant>,
}

/// A plain-http listener that counts the connections it gets: redirects point
/// at it, and the agent must never follow them.
struct RedirectTarget {
    port: u16,
    connections: Arc<std::sync::atomic::AtomicUsize>,
}

impl RedirectTarget {
    async fn start() -> RedirectTarget {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a listener");
        let port = listener.local_addr().expect("an address").port();
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = connections.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(stream);
            }
        });
        RedirectTarget { port, connections }
    }

    fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn between(rng: &mut StdRng, low: f64, high: f64) -> Duration {
    Duration::from_secs_f64(rng.random_range(low..high.max(low + 0.001)))
}

async fn soak(options: Options) -> Vec<String> {
    // Before World::new, so that its `info` logging (every simulator request)
    // does not bury the soak's own output.
    // The soak's own watchers report their errors as figures, not log lines.
    compass_runtime_agent::telemetry::logging::init(
        LogFormat::Text,
        "warn,kube_client=off,kube_runtime=off,hyper=off,hyper_util=off,rustls=off",
    );
    let wall = Instant::now();
    let duration = options.duration;
    let seed = options.seed;
    println!(
        "fault soak: {:.0} s of faults, seed {seed} (replay: SOAK_SEED={seed} SOAK_DURATION={}s)",
        duration.as_secs_f64(),
        duration.as_secs()
    );
    let mut rng = StdRng::seed_from_u64(seed);

    let world = World::new().await;
    world.sim.set_cert_validity(Duration::from_secs(20));
    // The soak's model of the Director must know which application a
    // removal between two page requests takes (the first served): in the
    // Director's order one added before the fault strikes may come first, in
    // the order of creation it never does. (The agent's handling of the
    // Director's order is tested in tests/synchronization.rs.)
    world.sim.set_list_order(compass_sim::ListOrder::Creation);
    let mut director = Director::new();
    for _ in 0..INITIAL_APPS {
        director.add(&world.sim, &mut rng);
    }
    director.added = 0;
    let unmanaged_version = create_unmanaged_application(&world.client).await;
    let record = Record::new(director.names.clone(), UNMANAGED_APP);
    let watch_client = world.env.client().await;
    let watchers = vec![
        tokio::spawn(watch::watch_applications(
            watch_client.clone(),
            record.clone(),
            unmanaged_version.clone(),
        )),
        tokio::spawn(watch::watch_certificates(
            watch_client,
            record.clone(),
            NS,
            CERT_SECRET,
            CA_NS,
            CA_SECRET,
        )),
        tokio::spawn(watch::sample_agent(record.clone())),
    ];
    let log_dir = tempfile::tempdir().expect("a temp dir");
    let api_link = FaultProxy::tcp_to_apiserver(&world.env.kube_config())
        .await
        .expect("the fault proxy in front of the API server");
    let kubeconfig = log_dir.path().join("kubeconfig");
    test_support::write_kubeconfig(
        &api_link.kubeconfig(
            kube::config::Kubeconfig::read_from(world.env.kubeconfig_path())
                .expect("the test environment's kubeconfig"),
        ),
        &kubeconfig,
    )
    .expect("the agents' kubeconfig is written");
    let agent_config = AgentConfig {
        kubeconfig,
        compass_ca_bundle: world
            .settings
            .compass_ca_bundle
            .clone()
            .expect("World sets it"),
        log_dir: log_dir.path().to_path_buf(),
    };
    let mut soak = Soak {
        world,
        record: record.clone(),
        rng,
        director,
        agent_config,
        incarnation: 0,
        tokens: Vec::new(),
        tokens_after_faults: 0,
        operator_tokens: 0,
        failed_since: None,
        last_token: Instant::now(),
        faults: BTreeMap::new(),
        faults_skipped: 0,
        label_drifts: 0,
        agent_kills: 0,
        agent_terms: 0,
        last_was_sigterm: None,
        apiserver_restarts: Vec::new(),
        pending_removals: Vec::new(),
        redirect_target: RedirectTarget::start().await,
        agents: Vec::new(),
        api_link,
        api_link_heals: None,
    };

    // Connect and synchronize once before the faults start.
    soak.write_token().await;
    for _ in 0..2 {
        let agent = soak.start_agent().await;
        soak.agents.push(agent);
    }
    let connected = Instant::now();
    test_support::wait_for(
        "the agent to be Synchronized before the faults start",
        Duration::from_secs(120),
        || async {
            (state(&soak.world.client).await == Some(ConnectionState::Synchronized)).then_some(())
        },
    )
    .await;
    let first_sync = connected.elapsed();
    let rss_start = soak.leader_rss().await;
    soak.event(format!(
        "agent Synchronized {:.1} s after start ({} applications); faults start",
        first_sync.as_secs_f64(),
        soak.director.apps.len()
    ));

    // ---- the faults ----
    let d = duration.as_secs_f64();
    let faults_started = Instant::now();
    let end = faults_started + duration;
    let mut deck = Fault::deck(&mut soak.rng);
    // Both API server link faults come up in the short run.
    for (fault, from_end) in [(Fault::ApiPartition, 1), (Fault::ApiRefusal, 6)] {
        let at = deck.iter().position(|f| *f == fault).expect("in the deck");
        let card = deck.remove(at);
        let place = deck.len() + 1 - from_end;
        deck.insert(place, card);
    }
    let mut next_fault = faults_started + between(&mut soak.rng, 2.0, 5.0);
    let mut next_change = faults_started + between(&mut soak.rng, 2.0, 6.0);
    let agent_every = (20f64.max(d / 8.0), 40f64.max(d / 4.0));
    let apiserver_every = (30f64.max(d / 5.0), 60f64.max(d / 2.5));
    let mut next_agent_restart =
        faults_started + between(&mut soak.rng, agent_every.0, agent_every.1);
    let mut next_apiserver_restart =
        faults_started + between(&mut soak.rng, apiserver_every.0, apiserver_every.1);
    while Instant::now() < end {
        soak.replace_exited_agents().await;
        soak.operator().await;
        let now = Instant::now();
        soak.heal_api_link(now);
        if now >= next_fault {
            if deck.is_empty() {
                deck = Fault::deck(&mut soak.rng);
            }
            let fault = deck.pop().expect("a full deck");
            // A link fault ends 25 s before the faults stop, so that the
            // connections it killed are found dead (a ping unanswered for
            // 15 + 10 s) within the soak's run, not in its recovery time.
            let link_fault_fits = end.saturating_duration_since(now) > Duration::from_secs(40);
            let link_fault = matches!(fault, Fault::ApiPartition | Fault::ApiRefusal);
            if link_fault && soak.api_link_heals.is_some() {
                // One is in place: this one comes at the next draw.
                deck.push(fault);
            } else if link_fault && !link_fault_fits {
                soak.faults_skipped += 1;
                soak.event(format!(
                    "fault {}: skipped (too close to the end)",
                    fault.name()
                ));
            } else {
                soak.inject(fault).await;
            }
            next_fault = Instant::now() + between(&mut soak.rng, 2.0, 5.0);
        }
        if now >= next_change {
            soak.change_director();
            next_change = Instant::now() + between(&mut soak.rng, 2.0, 6.0);
        }
        if now >= next_agent_restart {
            soak.restart_leader().await;
            next_agent_restart =
                Instant::now() + between(&mut soak.rng, agent_every.0, agent_every.1);
        }
        if now >= next_apiserver_restart {
            soak.restart_apiserver().await;
            next_apiserver_restart =
                Instant::now() + between(&mut soak.rng, apiserver_every.0, apiserver_every.1);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // ---- the faults stop ----
    soak.heal_api_link(Instant::now() + Duration::from_secs(3600));
    soak.world.sim.clear_faults();
    soak.settle_pending_removals();
    let faults_stopped = Instant::now();
    let fault_time = faults_stopped - faults_started;
    let stopped_at = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
        .expect("now is a valid time");
    soak.event(
        "faults stop; waiting for Synchronized and the cluster to match the Director".into(),
    );
    let mut last_difference = String::from("(not Synchronized yet)");
    let recovery = loop {
        soak.replace_exited_agents().await;
        soak.operator().await;
        if let Some(connection) = connection(&soak.world.client).await {
            let status = connection.status.unwrap_or_default();
            let fresh = status
                .synchronization_status
                .as_ref()
                .and_then(|s| s.last_attempt.as_ref())
                .is_some_and(|t| t.0 >= stopped_at);
            if status.connection_state == ConnectionState::Synchronized && fresh {
                match soak.compare().await {
                    Ok(()) => break Some(faults_stopped.elapsed()),
                    Err(difference) => last_difference = difference,
                }
            } else {
                last_difference = format!(
                    "state {}, last sync attempt {:?}",
                    status.connection_state,
                    status
                        .synchronization_status
                        .and_then(|s| s.last_attempt)
                        .map(|t| t.0)
                );
            }
        }
        if faults_stopped.elapsed() > RECOVERY_GIVE_UP {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    match recovery {
        Some(took) if took <= RECOVERY_BOUND => soak.event(format!(
            "Synchronized and matching the Director {:.1} s after the faults stopped",
            took.as_secs_f64()
        )),
        Some(took) => soak.record.violation(format!(
            "Synchronized and matching the Director only {:.1} s after the faults stopped (bound {} s)",
            took.as_secs_f64(),
            RECOVERY_BOUND.as_secs()
        )),
        None => soak.record.violation(format!(
            "not Synchronized and matching the Director {} s after the faults stopped: {last_difference}",
            RECOVERY_GIVE_UP.as_secs()
        )),
    }

    // ---- final checks ----
    soak.check_final_credentials().await;
    match Api::<Application>::all(soak.world.client.clone())
        .get_opt(UNMANAGED_APP)
        .await
    {
        Ok(Some(app)) if app.metadata.resource_version.as_deref() == Some(&unmanaged_version) => {}
        other => soak.record.violation(format!(
            "the Application the agent does not manage changed: {:?}",
            other.map(|a| a.map(|a| a.metadata.resource_version))
        )),
    }
    let rss_end = soak.leader_rss().await;
    let transitions = soak.lease_transitions().await;
    for agent in std::mem::take(&mut soak.agents) {
        soak.stop_agent(agent, true).await;
    }
    let redirected = soak.redirect_target.connections();
    if redirected > 0 {
        soak.record.violation(format!(
            "{redirected} connection(s) reached the plain-http host a redirect pointed at"
        ));
    }
    for watcher in &watchers {
        watcher.abort();
    }
    soak.scan_logs();
    let checked_runs = soak.check_memory();

    // ---- report ----
    let violations = soak.record.violations();
    let table = soak.table(Summary {
        fault_time,
        wall: wall.elapsed(),
        seed,
        first_sync,
        recovery,
        rss_start,
        rss_end,
        checked_runs,
        transitions,
        violations: violations.len(),
    });
    println!("\n{table}");
    if violations.is_empty() && std::env::var_os("SOAK_KEEP_LOGS").is_none() {
        drop(log_dir);
    } else {
        let requests: String = soak
            .world
            .sim
            .request_log()
            .iter()
            .filter_map(|entry| serde_json::to_string(entry).ok())
            .map(|line| line + "\n")
            .collect();
        let _ = std::fs::write(log_dir.path().join("compass-sim-requests.jsonl"), requests);
        let kept = log_dir.keep();
        println!(
            "the agent's logs and compass-sim's request log are kept in {}",
            kept.display()
        );
        for violation in &violations {
            println!("VIOLATION {violation}");
        }
    }
    violations
}

struct Summary {
    fault_time: Duration,
    wall: Duration,
    seed: u64,
    first_sync: Duration,
    recovery: Option<Duration>,
    rss_start: u64,
    rss_end: u64,
    checked_runs: usize,
    transitions: i32,
    violations: usize,
}

impl Soak {
    fn event(&self, what: String) {
        println!("[{:7.1}s] {what}", self.record.elapsed());
    }

    /// Like an operator: a fresh one-time token in the configuration Secret.
    async fn write_token(&mut self) {
        let token = self
            .world
            .sim
            .issue_token(RUNTIME_ID)
            .expect("a token is issued");
        let mut secret = Secret::default();
        secret.metadata.name = Some(CONFIG_NAME.into());
        secret.data = Some(
            self.world
                .config_values(&token)
                .into_iter()
                .map(|(k, v)| (k, ByteString(v.into_bytes())))
                .collect(),
        );
        let api = Api::<Secret>::namespaced(self.world.client.clone(), NS);
        let secret = &secret;
        test_support::wait_for(
            "the configuration Secret to be written",
            Duration::from_secs(60),
            || async {
                api.patch(
                    CONFIG_NAME,
                    &PatchParams::apply("soak").force(),
                    &Patch::Apply(secret),
                )
                .await
                .map(|_| ())
            },
        )
        .await;
        self.tokens.push(token);
        self.last_token = Instant::now();
    }

    /// The operator's side: a refused token, or a connection failed for 6 s,
    /// gets a fresh token; so does a maintenance that failed for 15 s, or in
    /// which the last token written did not connect either (the agent keeps
    /// its certificate and waits for the operator then).
    async fn operator(&mut self) {
        let Some(connection) = connection(&self.world.client).await else {
            return;
        };
        let status = connection.status.unwrap_or_default();
        let (failed_for, token_refused) = match status.connection_state {
            ConnectionState::ConnectionFailed => (
                Duration::from_secs(6),
                status
                    .connection_status
                    .error
                    .to_lowercase()
                    .contains("token"),
            ),
            ConnectionState::ConnectionMaintenanceFailed => (
                Duration::from_secs(15),
                // The agent's words when the token written last did not
                // connect either (not its hint that a new token would help).
                status
                    .connection_status
                    .error
                    .contains("did not connect either"),
            ),
            _ => {
                self.failed_since = None;
                return;
            }
        };
        let since = *self.failed_since.get_or_insert_with(Instant::now);
        let refused = token_refused;
        let long = since.elapsed() >= failed_for;
        let quiet = self.last_token.elapsed();
        if (refused && quiet >= Duration::from_secs(2)) || (long && quiet >= Duration::from_secs(6))
        {
            self.event(format!(
                "operator: {} ({}), writes a fresh token",
                status.connection_state,
                shorten(&status.connection_status.error, 100)
            ));
            self.write_token().await;
            self.operator_tokens += 1;
            self.failed_since = None;
        }
    }

    async fn inject(&mut self, fault: Fault) {
        let sim = &self.world.sim;
        let description = match fault {
            Fault::Revocation => {
                let revoked = sim
                    .revoke_runtime_certificates(RUNTIME_ID)
                    .expect("the runtime exists");
                self.write_token().await;
                self.tokens_after_faults += 1;
                format!("revoked the runtime's {revoked} certificate(s); wrote a fresh token")
            }
            Fault::CaRotation => {
                sim.rotate_ca().expect("the CA rotates");
                self.write_token().await;
                self.tokens_after_faults += 1;
                "rotated the client CA; wrote a fresh token".to_string()
            }
            Fault::Validity => {
                // Mostly short, so that renewals keep happening.
                let choices = [20, 20, 30, 60, 2160 * 3600];
                let seconds = choices[self.rng.random_range(0..choices.len())];
                sim.set_cert_validity(Duration::from_secs(seconds));
                format!("certificate validity now {seconds} s")
            }
            Fault::MidPagingRemoval => {
                let waiting = sim
                    .faults()
                    .iter()
                    .any(|f| f.kind == FaultKind::RemoveFirstApplication);
                if waiting || self.director.apps.len() <= DIRECTOR_PAGE_SIZE as usize {
                    self.faults_skipped += 1;
                    self.event(
                        "fault removal between pages: skipped (one waits, or one page only)".into(),
                    );
                    return;
                }
                let Some((id, name)) = self.director.forget_first(sim) else {
                    return;
                };
                sim.inject_fault(
                    "applicationsForRuntime",
                    FaultKind::RemoveFirstApplication,
                    FaultTimes::Next(1),
                );
                self.pending_removals.push((id, name.clone()));
                format!("{name} goes between two page requests of the next sync")
            }
            Fault::ApiPartition | Fault::ApiRefusal => {
                let seconds = self.rng.random_range(5..=15);
                let (mode, what) = match fault {
                    Fault::ApiPartition => (Mode::BlackHole, "black-holed"),
                    _ => (Mode::Refuse, "refused"),
                };
                self.api_link.set_mode(mode);
                self.api_link_heals = Some(Instant::now() + Duration::from_secs(seconds));
                format!("the replicas' API server link {what} for {seconds} s")
            }
            Fault::Refusal => {
                let times = self.rng.random_range(1..=3);
                for _ in 0..times {
                    let kind = if self.rng.random_bool(0.5) {
                        FaultKind::Http401
                    } else {
                        FaultKind::Http403
                    };
                    sim.inject(compass_sim::Fault {
                        endpoint: Some(compass_sim::Endpoint::ConnectorCert),
                        ..compass_sim::Fault::new("*", kind, FaultTimes::Next(1))
                    });
                }
                format!("the certificate-secured Connector refuses the next {times} request(s)")
            }
            request_fault => {
                if sim.faults().len() >= MAX_PENDING_FAULTS {
                    self.faults_skipped += 1;
                    self.event(format!(
                        "fault {}: skipped, {MAX_PENDING_FAULTS} faults wait for requests",
                        request_fault.name()
                    ));
                    return;
                }
                let operation = match request_fault {
                    Fault::NullList | Fault::Oversized => "applicationsForRuntime",
                    _ => OPERATIONS[self.rng.random_range(0..OPERATIONS.len())],
                };
                let (kind, times) = match request_fault {
                    Fault::Http500 => (FaultKind::Http500, self.rng.random_range(1..=3)),
                    Fault::Http503 => (FaultKind::Http503, self.rng.random_range(1..=3)),
                    Fault::GraphqlError => (FaultKind::GraphqlError, self.rng.random_range(1..=3)),
                    Fault::NullData => (FaultKind::NullData, self.rng.random_range(1..=3)),
                    Fault::MalformedJson => {
                        (FaultKind::MalformedJson, self.rng.random_range(1..=3))
                    }
                    Fault::NullList => (FaultKind::NullList, self.rng.random_range(1..=3)),
                    Fault::Oversized => (FaultKind::Oversized { megabytes: 2 }, 1),
                    Fault::Redirect => (
                        FaultKind::RedirectToHttp {
                            port: self.redirect_target.port,
                        },
                        self.rng.random_range(1..=2),
                    ),
                    Fault::Delay => (
                        FaultKind::Delay {
                            ms: REQUEST_TIMEOUT.as_millis() as u64
                                + self.rng.random_range(500..3000),
                        },
                        self.rng.random_range(1..=2),
                    ),
                    _ => (FaultKind::DropConnection, self.rng.random_range(1..=3)),
                };
                sim.inject_fault(operation, kind, FaultTimes::Next(times));
                format!("{} on the next {times} {operation} request(s)", kind.name())
            }
        };
        *self.faults.entry(fault).or_default() += 1;
        self.event(format!("fault: {description}"));
    }

    /// Ends the API server link fault in place once it is due at `now`.
    fn heal_api_link(&mut self, now: Instant) {
        if self.api_link_heals.is_some_and(|at| now >= at) {
            self.api_link_heals = None;
            self.api_link.set_mode(Mode::Pass);
            let counters = self.api_link.counters();
            self.event(format!(
                "the replicas' API server link works again ({} connections black-holed, {} reset so far)",
                counters.black_holed, counters.reset
            ));
        }
    }

    fn change_director(&mut self) {
        let sim = &self.world.sim;
        let count = self.director.apps.len();
        let roll = self.rng.random_range(0..100);
        let description = if count < 8 || (count < 24 && roll < 35) {
            let name = self.director.add(sim, &mut self.rng);
            format!("Director: added {name}")
        } else if roll < 75 {
            match self.director.modify(sim, &mut self.rng) {
                Some((name, what)) => format!("Director: changed {name} ({what})"),
                None => return,
            }
        } else if roll < 95 {
            match self.director.remove(sim, &mut self.rng) {
                Some(name) => format!("Director: removed {name}"),
                None => return,
            }
        } else {
            sim.set_runtime_label(
                RUNTIME_ID,
                "runtime_consoleUrl",
                serde_json::json!("https://drifted.example.com"),
            )
            .expect("the runtime exists");
            self.label_drifts += 1;
            "Director: runtime_consoleUrl changed behind the agent's back".to_string()
        };
        self.event(description);
    }

    async fn start_agent(&mut self) -> AgentProcess {
        self.incarnation += 1;
        let agent = AgentProcess::start(&self.agent_config, self.incarnation).await;
        self.record
            .figures()
            .agents
            .insert(agent.incarnation, (agent.pid, agent.metrics_url.clone()));
        agent
    }

    /// A replica that exited by itself is a violation; it is replaced.
    async fn replace_exited_agents(&mut self) {
        for index in 0..self.agents.len() {
            if let Some(status) = self.agents[index].exited() {
                let incarnation = self.agents[index].incarnation;
                let tail = log_tail(&self.agent_config.log_dir, incarnation);
                self.record.violation(format!(
                    "agent {incarnation} exited by itself ({status}); its log ends:\n{tail}"
                ));
                self.record.figures().agents.remove(&incarnation);
                self.agents[index] = self.start_agent().await;
            }
        }
    }

    /// The incarnation holding the Lease, if any.
    async fn leader(&self) -> Option<usize> {
        let lease = Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(
            self.world.client.clone(),
            NS,
        )
        .get_opt(LEASE)
        .await
        .ok()??;
        let holder = lease.spec?.holder_identity?;
        self.agents
            .iter()
            .map(|a| a.incarnation)
            .find(|i| agent::identity(*i) == holder)
    }

    async fn lease_transitions(&self) -> i32 {
        Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(self.world.client.clone(), NS)
            .get_opt(LEASE)
            .await
            .ok()
            .flatten()
            .and_then(|lease| lease.spec?.lease_transitions)
            .unwrap_or(0)
    }

    /// The leader's RSS (the first replica's when none leads).
    async fn leader_rss(&self) -> u64 {
        let leader = self.leader().await;
        let agent = self
            .agents
            .iter()
            .find(|a| Some(a.incarnation) == leader)
            .or(self.agents.first());
        agent
            .and_then(|a| agent::memory_kib(a.pid))
            .map(|(rss, _)| rss)
            .unwrap_or(0)
    }

    /// Records the last counters and peak memory of a replica, then ends it
    /// (SIGTERM, which must end it with 0, or SIGKILL).
    async fn stop_agent(&mut self, agent: AgentProcess, terminate: bool) {
        if let Some(text) = agent::scrape(&agent.metrics_url).await {
            self.record
                .counters(agent.incarnation, Counters::parse(&text));
        }
        {
            let mut figures = self.record.figures();
            figures.agents.remove(&agent.incarnation);
            if let Some((_, hwm)) = agent::memory_kib(agent.pid) {
                let peak = figures.peak_kib.entry(agent.incarnation).or_default();
                *peak = (*peak).max(hwm);
            }
        }
        let incarnation = agent.incarnation;
        if terminate {
            match agent.terminate(Duration::from_secs(30)).await {
                Ok((status, _)) if status.success() => {}
                Ok((status, took)) => {
                    let tail = log_tail(&self.agent_config.log_dir, incarnation);
                    self.record.violation(format!(
                        "after SIGTERM agent {incarnation} exited with {status} after {took:?}; its log ends:\n{tail}"
                    ))
                }
                Err(error) => self.record.violation(error),
            }
        } else {
            agent.kill().await;
        }
    }

    /// Restarts the leader (a random replica when none leads), so that the
    /// standby takes over under load: SIGTERM (a hand-over) and SIGKILL (the
    /// Lease expires) take turns, the first one at random.
    async fn restart_leader(&mut self) {
        let terminate = match self.last_was_sigterm {
            None => self.rng.random_bool(0.5),
            Some(sigterm) => !sigterm,
        };
        self.last_was_sigterm = Some(terminate);
        let leader = self.leader().await;
        let index = self
            .agents
            .iter()
            .position(|a| Some(a.incarnation) == leader)
            .unwrap_or_else(|| self.rng.random_range(0..self.agents.len()));
        let started = Instant::now();
        let agent = self.agents.remove(index);
        let stopped = agent.incarnation;
        self.stop_agent(agent, terminate).await;
        if terminate {
            self.agent_terms += 1;
        } else {
            self.agent_kills += 1;
        }
        let agent = self.start_agent().await;
        self.agents.push(agent);
        self.event(format!(
            "{} agent {stopped} restarted ({}, {:.1} s)",
            if leader.is_some() {
                "leading"
            } else {
                "(no leader)"
            },
            if terminate { "SIGTERM" } else { "SIGKILL" },
            started.elapsed().as_secs_f64()
        ));
    }

    /// After the faults are cleared: the applications that a removal fault
    /// that never struck would have removed go now (the soak's Director has
    /// forgotten them already).
    fn settle_pending_removals(&mut self) {
        for (id, name) in std::mem::take(&mut self.pending_removals) {
            let still_there = self
                .world
                .sim
                .applications(RUNTIME_ID)
                .is_ok_and(|apps| apps.iter().any(|a| a.id == id));
            if still_there {
                self.world
                    .sim
                    .remove_application(RUNTIME_ID, &id)
                    .expect("the application is removed");
                self.event(format!(
                    "{name}: its removal between pages never struck; removed now"
                ));
            }
        }
    }

    async fn restart_apiserver(&mut self) {
        let started = Instant::now();
        tokio::task::block_in_place(|| self.world.env.restart())
            .unwrap_or_else(|e| panic!("the apiserver did not restart: {e:#}"));
        let took = started.elapsed();
        // The objects survived (etcd kept its data), or the soak cannot go on.
        let namespaces = Api::<Namespace>::all(self.world.client.clone());
        test_support::wait_for(
            "kyma-system to exist after the apiserver restart",
            Duration::from_secs(30),
            || async { namespaces.get_opt(NS).await.ok().flatten() },
        )
        .await;
        self.apiserver_restarts.push(took);
        self.event(format!(
            "apiserver + etcd restarted ({:.1} s)",
            took.as_secs_f64()
        ));
    }

    async fn compare(&self) -> Result<(), String> {
        self.director
            .compare(&self.world.client, &self.world.sim, NS)
            .await?;
        let labels = self
            .world
            .sim
            .runtime_labels(RUNTIME_ID)
            .map_err(|e| e.to_string())?;
        for (key, value) in [
            ("runtime_eventServiceUrl", EVENTS_URL),
            ("runtime_consoleUrl", CONSOLE_URL),
        ] {
            if labels.get(key).and_then(|v| v.as_str()) != Some(value) {
                return Err(format!("Runtime label {key} is {:?}", labels.get(key)));
            }
        }
        Ok(())
    }

    /// The stored credentials are whole and really authenticate.
    async fn check_final_credentials(&self) {
        let secret = Api::<Secret>::namespaced(self.world.client.clone(), NS)
            .get_opt(CERT_SECRET)
            .await;
        let data: BTreeMap<String, String> = match secret {
            Ok(Some(secret)) => secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                .collect(),
            other => {
                self.record.violation(format!(
                    "no client certificate Secret at the end: {:?}",
                    other.map(|s| s.is_some())
                ));
                return;
            }
        };
        let field = |key: &str| data.get(key).cloned().unwrap_or_default();
        if let Err(error) =
            ClientCredentials::new(field("key"), field("crt"), field("crtChain"), String::new())
        {
            self.record.violation(format!(
                "the final client certificate Secret is broken: {error}"
            ));
        } else if !common::director_accepts(&self.world.sim, &field("key"), &field("crtChain"))
            .await
        {
            self.record
                .violation("the final client certificate is refused by the Director");
        }
    }

    /// No token, credential, private key line or `PRIVATE KEY` in any log.
    fn scan_logs(&self) {
        let mut secrets: Vec<(&str, &str)> = Vec::new();
        secrets.extend(self.tokens.iter().map(|t| ("a one-time token", t.as_str())));
        secrets.extend(
            self.director
                .secret_values
                .iter()
                .map(|s| ("an application credential", s.as_str())),
        );
        let fragments: Vec<String> = self
            .record
            .figures()
            .key_fragments
            .iter()
            .cloned()
            .collect();
        secrets.extend(
            fragments
                .iter()
                .map(|f| ("a line of a private key", f.as_str())),
        );
        secrets.push(("a PEM private key", "PRIVATE KEY"));
        for incarnation in 1..=self.incarnation {
            let (log, err) = agent::log_paths(&self.agent_config.log_dir, incarnation);
            for path in [log, err] {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                for (what, value) in &secrets {
                    if text.contains(value) {
                        self.record.violation(format!(
                            "{} contains {what} ({}…)",
                            path.file_name().unwrap_or_default().to_string_lossy(),
                            &value[..value.len().min(6)]
                        ));
                    }
                }
                if text.contains("panicked at") {
                    self.record.violation(format!(
                        "{} shows a panic",
                        path.file_name().unwrap_or_default().to_string_lossy()
                    ));
                }
            }
        }
    }

    /// For every run of the agent process that lasted at least 40 s: the peak
    /// RSS of its second half (the first 10 s left out) may exceed that of
    /// its first half by at most max(25 %, 16 MiB). Returns how many runs were
    /// long enough to judge.
    fn check_memory(&self) -> usize {
        let samples = self.record.figures().rss.clone();
        let mut by_run: BTreeMap<usize, Vec<(f64, u64)>> = BTreeMap::new();
        for (t, incarnation, kib) in samples {
            by_run.entry(incarnation).or_default().push((t, kib));
        }
        let mut checked = 0;
        for (incarnation, samples) in by_run {
            let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
                continue;
            };
            if last.0 - first.0 < 40.0 {
                continue;
            }
            let from = first.0 + 10.0;
            let middle = (from + last.0) / 2.0;
            let peak = |range: &dyn Fn(f64) -> bool| {
                samples
                    .iter()
                    .filter(|(t, _)| range(*t))
                    .map(|(_, kib)| *kib)
                    .max()
                    .unwrap_or(0)
            };
            let early = peak(&|t| t >= from && t < middle);
            let late = peak(&|t| t >= middle);
            let allowed = early + (early / 4).max(16 * 1024);
            checked += 1;
            if late > allowed {
                self.record.violation(format!(
                    "agent run {incarnation}: RSS grew from a peak of {} to {} (allowed {})",
                    mib(early),
                    mib(late),
                    mib(allowed)
                ));
            }
        }
        checked
    }

    fn table(&self, summary: Summary) -> String {
        let figures = self.record.figures();
        let mut counters = Counters::default();
        for c in figures.counters.values() {
            counters.add(c);
        }
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|(fault, n)| format!("{} {n}", fault.name()))
            .collect();
        let total_faults: u32 = self.faults.values().sum();
        let mut hits: BTreeMap<String, u32> = BTreeMap::new();
        for entry in self.world.sim.request_log() {
            if let compass_sim::Outcome::Fault { fault } = entry.outcome {
                let kind = fault.split('(').next().unwrap_or_default().to_string();
                *hits.entry(kind).or_default() += 1;
            }
        }
        let requests = self.world.sim.request_log().len();
        let hit_total: u32 = hits.values().sum();
        let modified: u32 = self.director.modified.values().sum();
        let peak = figures.peak_kib.values().copied().max().unwrap_or(0);
        let restarts: Vec<String> = self
            .apiserver_restarts
            .iter()
            .map(|d| format!("{:.1}", d.as_secs_f64()))
            .collect();
        let mut t = String::new();
        let mut row = |figure: &str, value: String| {
            let _ = writeln!(t, "| {figure} | {value} |");
        };
        row("figure", "value".into());
        row("---", "---".into());
        row(
            "run time",
            format!(
                "{:.1} s of faults, {:.1} s in all (setup, first sync {:.1} s, recovery, checks)",
                summary.fault_time.as_secs_f64(),
                summary.wall.as_secs_f64(),
                summary.first_sync.as_secs_f64()
            ),
        );
        row("seed", summary.seed.to_string());
        row(
            "faults injected",
            format!("{total_faults}: {}", faults.join(", ")),
        );
        if self.faults_skipped > 0 {
            row(
                "request faults skipped (5 already waiting)",
                self.faults_skipped.to_string(),
            );
        }
        row(
            "requests to compass-sim / answered by a fault (delays the client gave up on are not logged)",
            format!(
                "{requests} / {hit_total} ({})",
                hits.iter()
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        row(
            "Director changes",
            format!(
                "{INITIAL_APPS} at the start ({DIRECTOR_PAGE_SIZE} per page); {} added, {modified} changed, {} removed, {} removed between page requests, {} label drifts; {} at the end",
                self.director.added,
                self.director.removed,
                self.director.removed_mid_paging,
                self.label_drifts,
                self.director.apps.len()
            ),
        );
        row(
            "one-time tokens written",
            format!(
                "{} (1 at start, {} after revocations/rotations, {} by the operator rule)",
                self.tokens.len(),
                self.tokens_after_faults,
                self.operator_tokens
            ),
        );
        let presented = self
            .world
            .sim
            .request_log()
            .iter()
            .filter(|e| {
                matches!(e.endpoint, compass_sim::Endpoint::ConnectorToken)
                    && e.operations.iter().any(|o| o == "configuration")
                    && matches!(e.outcome, compass_sim::Outcome::Ok)
            })
            .count();
        row("one-time tokens used by the agent", presented.to_string());
        row(
            "leader restarts (two replicas behind a Lease)",
            format!(
                "{} ({} SIGKILL, {} SIGTERM); {} Lease transitions (the Lease changed hands)",
                self.agent_kills + self.agent_terms,
                self.agent_kills,
                self.agent_terms,
                summary.transitions
            ),
        );
        row(
            "connections to the plain-http redirect target",
            self.redirect_target.connections().to_string(),
        );
        row(
            "apiserver + etcd restarts",
            if restarts.is_empty() {
                "0".to_string()
            } else {
                format!("{} (each took {} s)", restarts.len(), restarts.join(", "))
            },
        );
        row(
            "reconciles",
            format!(
                "{:.0} ({:.0} failed)",
                counters.reconciles, counters.reconciles_failed
            ),
        );
        row("syncs", format!("{:.0}", counters.syncs));
        row(
            "certificate renewals",
            format!(
                "{:.0} ({:.0} failed)",
                counters.renewals, counters.renewals_failed
            ),
        );
        row(
            "connections established with a token (the first included)",
            format!(
                "{:.0} ({:.0} failed)",
                counters.establishments, counters.establishments_failed
            ),
        );
        row(
            "client certificate Secret versions checked",
            format!(
                "{} ({} certificates)",
                figures.certificate_versions,
                figures.certificate_serials.len()
            ),
        );
        row(
            "Application deletions seen",
            figures.application_deletions.to_string(),
        );
        row(
            "recovery after the faults stopped",
            match summary.recovery {
                Some(d) => format!(
                    "{:.1} s (bound {} s)",
                    d.as_secs_f64(),
                    RECOVERY_BOUND.as_secs()
                ),
                None => format!("not within {} s", RECOVERY_GIVE_UP.as_secs()),
            },
        );
        row(
            "agent RSS",
            format!(
                "{} after the first sync, {} at the end, peak {} (VmHWM); growth judged on {} run(s) ≥ 40 s",
                mib(summary.rss_start),
                mib(summary.rss_end),
                mib(peak),
                summary.checked_runs
            ),
        );
        row(
            "watch errors (apiserver restarts)",
            figures.watch_errors.to_string(),
        );
        row("invariant violations", summary.violations.to_string());
        t
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((index, _)) => format!("{}…", &text[..index]),
        None => text.to_string(),
    }
}

fn log_tail(log_dir: &Path, incarnation: usize) -> String {
    let (log, err) = agent::log_paths(log_dir, incarnation);
    let mut lines: Vec<String> = Vec::new();
    for path in [log, err] {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        lines.extend(text.lines().map(str::to_string));
    }
    let from = lines.len().saturating_sub(20);
    lines[from..].join("\n")
}

async fn connection(client: &Client) -> Option<CompassConnection> {
    Api::<CompassConnection>::all(client.clone())
        .get_opt(COMPASS_CONNECTION_NAME)
        .await
        .ok()
        .flatten()
}

async fn state(client: &Client) -> Option<ConnectionState> {
    connection(client)
        .await
        .and_then(|c| c.status)
        .map(|s| s.connection_state)
}

/// An Application without `compassMetadata`: the agent must leave it alone.
/// Returns its resourceVersion.
async fn create_unmanaged_application(client: &Client) -> String {
    let app = Application::new(
        UNMANAGED_APP,
        ApplicationSpec {
            description: "Made by an operator, not by Compass".into(),
            ..ApplicationSpec::default()
        },
    );
    Api::<Application>::all(client.clone())
        .create(&PostParams::default(), &app)
        .await
        .expect("the unmanaged Application is created")
        .metadata
        .resource_version
        .expect("a resourceVersion")
}
