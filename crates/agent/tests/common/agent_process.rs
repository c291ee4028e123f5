//! The agent binary as its own process, as a Pod runs it: its settings in
//! `APP_*` variables, a kubeconfig, its log in a file, its health port.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::{Child, Command};

use super::free_port;

/// A running agent binary.
pub struct AgentProcess {
    child: Child,
    /// `http://127.0.0.1:<health port>`.
    pub health: String,
    log: PathBuf,
    err: PathBuf,
}

impl AgentProcess {
    /// Starts the binary with `KUBECONFIG=kubeconfig`, the variables of `env`
    /// (later ones win), its health port free on loopback, metrics only
    /// there, and its log in `dir`.
    pub fn spawn(kubeconfig: &Path, env: &[(String, String)], dir: &Path) -> AgentProcess {
        let port = free_port();
        let log = dir.join(format!("agent-{port}.log"));
        let err = dir.join(format!("agent-{port}.err"));
        let child = Command::new(env!("CARGO_BIN_EXE_compass-runtime-agent"))
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("KUBECONFIG", kubeconfig)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("APP_HEALTH_ADDRESS", "127.0.0.1")
            .env("APP_HEALTH_PORT", port.to_string())
            .env("APP_METRICS_ADDRESS", "")
            .stdout(std::fs::File::create(&log).expect("log file"))
            .stderr(std::fs::File::create(&err).expect("log file"))
            .kill_on_drop(true)
            .spawn()
            .expect("the agent binary starts");
        AgentProcess {
            child,
            health: format!("http://127.0.0.1:{port}"),
            log,
            err,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Panics (with the log) when the process has ended.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("the child can be asked") {
            panic!("the agent exited with {status}; log:\n{}", self.log());
        }
    }

    /// Its log so far (stdout and stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
            + &std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// `GET <health><path>`: status and text, or `None` when it does not
    /// answer (not listening yet).
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        let response = reqwest::Client::new()
            .get(format!("{}{path}", self.health))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        let status = response.status().as_u16();
        Some((status, response.text().await.unwrap_or_default()))
    }

    /// Waits until `/healthz` answers at all; panics if the agent exits.
    pub async fn wait_for_health_endpoint(&mut self, timeout: Duration) -> (u16, String) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            self.assert_running();
            if let Some(answer) = self.get("/healthz").await {
                return answer;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "/healthz did not answer within {timeout:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The value of the sample `line_prefix` (a metric with its labels) in
    /// `/metrics`, if there is one.
    pub async fn metric(&self, line_prefix: &str) -> Option<f64> {
        let (_, text) = self.get("/metrics").await?;
        text.lines()
            .find_map(|line| line.strip_prefix(line_prefix)?.trim().parse().ok())
    }

    /// SIGTERM, as the kubelet sends it; waits up to `within` for the exit
    /// and returns its code.
    pub async fn terminate(&mut self, within: Duration) -> Option<i32> {
        if let Some(pid) = self.pid() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        tokio::time::timeout(within, self.child.wait())
            .await
            .ok()
            .and_then(Result::ok)
            .and_then(|status| status.code())
    }
}
