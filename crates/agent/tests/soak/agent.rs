//! The agent as a process: started from the test binary's sibling
//! `compass-runtime-agent`, killed (SIGKILL) or stopped (SIGTERM) like a Pod,
//! its memory read from /proc and its metrics scraped.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::common::free_port;

/// The short settings: "two sync periods" is measurable in seconds.
pub const SYNC_PERIOD: Duration = Duration::from_secs(3);
pub const MINIMAL_SYNC_TIME: Duration = Duration::from_secs(1);
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(4);
/// Two replicas run, behind a Lease of this duration: a leader killed by
/// SIGKILL is replaced by the standby within it.
pub const LEASE_DURATION: Duration = Duration::from_secs(5);
pub const LEASE: &str = "compass-runtime-agent";
/// Four applications per Director page: the soak's 14 to 24 applications
/// come in several pages, so changes between page requests matter.
pub const DIRECTOR_PAGE_SIZE: u32 = 4;
/// Far above a page of the soak's applications, far below the fault's
/// oversized answers.
pub const MAX_RESPONSE_SIZE: &str = "1Mi";

/// The Lease identity of an incarnation.
pub fn identity(incarnation: usize) -> String {
    format!("soak-agent-{incarnation}")
}

/// What every incarnation of the agent shares.
pub struct AgentConfig {
    pub kubeconfig: PathBuf,
    pub compass_ca_bundle: PathBuf,
    /// Log files go here, one pair per incarnation.
    pub log_dir: PathBuf,
}

pub struct AgentProcess {
    child: Child,
    pub pid: u32,
    pub incarnation: usize,
    pub metrics_url: String,
}

pub fn log_paths(log_dir: &Path, incarnation: usize) -> (PathBuf, PathBuf) {
    (
        log_dir.join(format!("agent-{incarnation}.log")),
        log_dir.join(format!("agent-{incarnation}.err")),
    )
}

impl AgentProcess {
    /// Starts the binary and waits (polling, 30 s at most) until its metrics
    /// endpoint answers.
    pub async fn start(config: &AgentConfig, incarnation: usize) -> AgentProcess {
        let (log, err) = log_paths(&config.log_dir, incarnation);
        let (health_port, metrics_port) = (free_port(), free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_compass-runtime-agent"))
            .env("KUBECONFIG", &config.kubeconfig)
            .env("APP_COMPASS_CA_BUNDLE", &config.compass_ca_bundle)
            .env(
                "APP_MINIMAL_COMPASS_SYNC_TIME",
                format!("{}s", MINIMAL_SYNC_TIME.as_secs()),
            )
            .env(
                "APP_CONTROLLER_SYNC_PERIOD",
                format!("{}s", SYNC_PERIOD.as_secs()),
            )
            .env(
                "APP_COMPASS_REQUEST_TIMEOUT",
                format!("{}s", REQUEST_TIMEOUT.as_secs()),
            )
            .env(
                "APP_MAX_RETRY_DELAY",
                format!("{}s", MAX_RETRY_DELAY.as_secs()),
            )
            .env("APP_HEALTH_ADDRESS", "127.0.0.1")
            .env("APP_HEALTH_PORT", health_port.to_string())
            .env("APP_METRICS_ADDRESS", format!("127.0.0.1:{metrics_port}"))
            .env("APP_DIRECTOR_PAGE_SIZE", DIRECTOR_PAGE_SIZE.to_string())
            .env("APP_COMPASS_MAX_RESPONSE_SIZE", MAX_RESPONSE_SIZE)
            .env("APP_LEADER_ELECTION", "true")
            .env("APP_LEADER_ELECTION_LEASE", format!("kyma-system/{LEASE}"))
            .env(
                "APP_LEADER_ELECTION_LEASE_DURATION",
                format!("{}s", LEASE_DURATION.as_secs()),
            )
            .env("APP_LEADER_ELECTION_IDENTITY", identity(incarnation))
            .env("APP_LOG_LEVEL", "info")
            // Operation names in the log: more text in which a secret could hide.
            .env("APP_QUERY_LOGGING", "true")
            .stdout(std::fs::File::create(&log).expect("log file"))
            .stderr(std::fs::File::create(&err).expect("log file"))
            .kill_on_drop(true)
            .spawn()
            .expect("the agent binary starts");
        let pid = child.id().expect("a started child has a pid");
        let process = AgentProcess {
            child,
            pid,
            incarnation,
            metrics_url: format!("http://127.0.0.1:{metrics_port}/metrics"),
        };
        test_support::wait_for(
            "the agent's metrics endpoint",
            Duration::from_secs(30),
            || async { scrape(&process.metrics_url).await },
        )
        .await;
        process
    }

    /// `Some(status)` when the process has exited (by itself: the soak only
    /// ever ends it through `kill` or `terminate`, which consume it).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGKILL, like a node failure or an OOM kill.
    pub async fn kill(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// SIGTERM, like a rolling update; the agent should finish its cycle and
    /// exit 0. Returns the exit status, or an error after `timeout` (then the
    /// process is killed).
    pub async fn terminate(mut self, timeout: Duration) -> Result<(ExitStatus, Duration), String> {
        let started = Instant::now();
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        if !sent.as_ref().is_ok_and(|status| status.success()) {
            return Err(format!("kill -TERM {} failed: {sent:?}", self.pid));
        }
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(Ok(status)) => Ok((status, started.elapsed())),
            Ok(Err(e)) => Err(format!("waiting for the agent: {e}")),
            Err(_) => {
                let _ = self.child.start_kill();
                let _ = self.child.wait().await;
                Err(format!(
                    "the agent did not exit within {timeout:?} after SIGTERM"
                ))
            }
        }
    }
}

/// The metrics text, if the endpoint answers within 2 s.
pub async fn scrape(url: &str) -> Option<String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .ok()?;
    let response = client.get(url).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.text().await.ok()
}

/// `VmRSS` and `VmHWM` of a process, in KiB.
pub fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status.lines().find_map(|line| {
            line.strip_prefix(name)?
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// The counters the soak reports, as one incarnation's metrics show them.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    pub reconciles: f64,
    pub reconciles_failed: f64,
    pub syncs: f64,
    pub renewals: f64,
    pub renewals_failed: f64,
    pub establishments: f64,
    pub establishments_failed: f64,
}

impl Counters {
    pub fn parse(text: &str) -> Counters {
        const P: &str = "compass_runtime_agent_";
        let ok = Some(r#"outcome="Success""#);
        let failed = Some(r#"outcome="Failure""#);
        Counters {
            reconciles: metric_sum(text, &format!("{P}reconciles_total"), None),
            reconciles_failed: metric_sum(text, &format!("{P}reconciles_total"), failed),
            syncs: metric_sum(text, &format!("{P}sync_duration_seconds_count"), None),
            renewals: metric_sum(text, &format!("{P}certificate_renewals_total"), ok),
            renewals_failed: metric_sum(text, &format!("{P}certificate_renewals_total"), failed),
            establishments: metric_sum(text, &format!("{P}connection_establishments_total"), ok),
            establishments_failed: metric_sum(
                text,
                &format!("{P}connection_establishments_total"),
                failed,
            ),
        }
    }

    pub fn add(&mut self, other: &Counters) {
        self.reconciles += other.reconciles;
        self.reconciles_failed += other.reconciles_failed;
        self.syncs += other.syncs;
        self.renewals += other.renewals;
        self.renewals_failed += other.renewals_failed;
        self.establishments += other.establishments;
        self.establishments_failed += other.establishments_failed;
    }
}

/// The sum of a metric's samples whose labels contain `labels` (all when None).
fn metric_sum(text: &str, name: &str, labels: Option<&str>) -> f64 {
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter(|line| labels.is_none_or(|l| line.contains(l)))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
