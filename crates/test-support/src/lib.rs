//! Test support: a real kube-apiserver + etcd on loopback (the approach
//! controller-runtime calls envtest), and small helpers for tests against it.
//!
//! The environment is the `kube-testenv` program of `testenv/` in this
//! repository (embedded etcd + in-process kube-apiserver, built from the upstream
//! Go modules at pinned versions by `testenv/build.sh`, which caches the binary).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use test_support::TestEnv;
//! let env = TestEnv::global(); // started once per test binary
//! let client = env.client().await; // one client per tokio runtime
//! let version = client.apiserver_version().await?;
//! assert_eq!(version.git_version, env.server_version());
//! # Ok(()) }
//! ```
//!
//! Environment variables:
//! - `USE_EXISTING_CLUSTER=true`: [`TestEnv::global`] uses the cluster of
//!   `KUBECONFIG` (or `~/.kube/config`) and starts nothing.
//! - `TESTENV_BIN`: path of a `kube-testenv` binary to use instead of running
//!   `testenv/build.sh`.
//! - `TESTENV_START_TIMEOUT`: seconds to wait for the apiserver to be ready
//!   (default 120).
//! - `TESTENV_VERBOSE=1`: copy the output of etcd and kube-apiserver to stderr.
//! - `TESTENV_KEEP_DATA=1`: keep the data directory (certificates, kubeconfig,
//!   etcd data) after the environment stops; its path is printed.

#![warn(missing_docs)]

use std::collections::VecDeque;
use std::fmt::Debug;
use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, GroupVersionKind};

/// Lines of etcd / kube-apiserver output kept for error messages.
const LOG_TAIL_LINES: usize = 60;

/// A Kubernetes API server for tests: a `kube-testenv` process (etcd +
/// kube-apiserver) started by this crate, or an existing cluster
/// (`USE_EXISTING_CLUSTER=true`).
///
/// An environment from [`TestEnv::start_new`] stops when dropped. The one from
/// [`TestEnv::global`] lives in a static and stops when the test binary exits,
/// however it exits: the process watches the pipe on its standard input, which
/// the kernel closes when this process ends (normally, by panic or by SIGKILL).
pub struct TestEnv {
    kube_config: kube::Config,
    kubeconfig_path: PathBuf,
    server_version: String,
    server_url: String,
    process: Option<Process>,
}

/// The running `kube-testenv` child.
struct Process {
    child: Mutex<Child>,
    /// Held open for the life of the environment: EOF tells the child to stop.
    stdin: Mutex<Option<ChildStdin>>,
    data_dir: PathBuf,
    keep_data: bool,
}

impl Debug for TestEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestEnv")
            .field("server_url", &self.server_url)
            .field("server_version", &self.server_version)
            .field("kubeconfig_path", &self.kubeconfig_path)
            .field("existing_cluster", &self.is_existing_cluster())
            .field("process_id", &self.process_id())
            .finish()
    }
}

static GLOBAL: OnceLock<Result<TestEnv, String>> = OnceLock::new();

impl TestEnv {
    /// The environment shared by all tests of this test binary, started on first
    /// use (blocking; safe from any thread or tokio runtime).
    ///
    /// With `USE_EXISTING_CLUSTER=true` it uses the cluster of `KUBECONFIG`
    /// instead (envtest convention) and starts nothing.
    ///
    /// Panics (in every test that calls it) when the environment cannot start,
    /// with the reason and the tail of the apiserver's log.
    pub fn global() -> &'static TestEnv {
        let env = GLOBAL.get_or_init(|| {
            let result = if use_existing_cluster() {
                TestEnv::existing()
            } else {
                TestEnv::start()
            };
            match result {
                Ok(env) => {
                    env.announce();
                    Ok(env)
                }
                Err(e) => Err(format!("{e:#}")),
            }
        });
        match env {
            Ok(env) => env,
            Err(e) => panic!("testenv: the shared test environment did not start: {e}"),
        }
    }

    /// A fresh, separate environment owned by the caller (own etcd +
    /// apiserver); stopped on Drop.
    ///
    /// This starts a new process even with `USE_EXISTING_CLUSTER=true`.
    pub fn start_new() -> anyhow::Result<TestEnv> {
        let env = TestEnv::start()?;
        env.announce();
        Ok(env)
    }

    /// [`kube::Config`] for the admin user (`system:masters`).
    ///
    /// Build a new client per tokio runtime: a [`kube::Client`] must not outlive
    /// the runtime it was created on. TLS verification is on, with the
    /// apiserver's CA from the kubeconfig.
    pub fn kube_config(&self) -> kube::Config {
        install_crypto_provider();
        self.kube_config.clone()
    }

    /// A new admin [`kube::Client`] bound to the current tokio runtime.
    pub async fn client(&self) -> kube::Client {
        kube::Client::try_from(self.kube_config()).expect("testenv: building a kube client")
    }

    /// A kubeconfig file for the admin user: usable by `kubectl`-style tools
    /// and by the agent's own binary under test.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    /// The apiserver's version as `/version` reports it, e.g. `"v1.37.2"`.
    pub fn server_version(&self) -> &str {
        &self.server_version
    }

    /// The apiserver's URL, e.g. `https://127.0.0.1:40123`.
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// Whether this is an existing cluster (`USE_EXISTING_CLUSTER=true`) rather
    /// than a process started by this crate.
    pub fn is_existing_cluster(&self) -> bool {
        self.process.is_none()
    }

    /// The process id of the `kube-testenv` process, `None` for an existing
    /// cluster.
    pub fn process_id(&self) -> Option<u32> {
        self.process
            .as_ref()
            .map(|p| p.child.lock().unwrap_or_else(|e| e.into_inner()).id())
    }

    /// The data directory of the started environment (`pki/` with the CA,
    /// serving, admin and service-account keys, `kubeconfig`, `etcd/`); `None`
    /// for an existing cluster. Deleted when the environment stops unless
    /// `TESTENV_KEEP_DATA=1`.
    pub fn data_dir(&self) -> Option<&Path> {
        self.process.as_ref().map(|p| p.data_dir.as_path())
    }

    /// Kills etcd and kube-apiserver (SIGKILL, like a crashed control plane)
    /// and starts them again over the same data directory and on the same
    /// port, so that the cluster's objects survive and clients — including
    /// other processes using [`TestEnv::kubeconfig_path`] — reconnect with the
    /// credentials they have. Returns when the apiserver answers them again.
    ///
    /// kube-testenv makes new certificates at every start; the old CA, serving
    /// certificate and admin credentials are put back once the new process is
    /// ready, and the apiserver reloads them (it watches those files). Tokens
    /// of service accounts do not survive (their signing key is not reloaded).
    /// Errors for an existing cluster.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let Some(process) = self.process.as_mut() else {
            bail!("an existing cluster (USE_EXISTING_CLUSTER=true) cannot be restarted");
        };
        let port: u16 = self
            .server_url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| anyhow!("no port in {}", self.server_url))?;
        let data_dir = process.data_dir.clone();
        let pki = data_dir.join("pki");
        let mut saved = Vec::new();
        for name in [
            "ca.crt",
            "ca.key",
            "apiserver.crt",
            "apiserver.key",
            "admin.crt",
            "admin.key",
        ] {
            let path = pki.join(name);
            saved.push((
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
                path,
            ));
        }
        saved.push((
            std::fs::read(&self.kubeconfig_path)?,
            self.kubeconfig_path.clone(),
        ));

        {
            let child = process.child.get_mut().unwrap_or_else(|e| e.into_inner());
            let _ = child.kill();
            let _ = child.wait();
        }
        // The old process is gone; its Drop must not remove the data dir.
        process.keep_data = true;

        let bin = testenv_binary()?;
        let mut attempt = 1;
        let mut restarted = loop {
            match TestEnv::launch(&bin, data_dir.clone(), port, true) {
                Ok(env) => break env,
                Err(e) if attempt < 5 && format!("{e:#}").contains("address already in use") => {
                    // The port was taken meanwhile (e.g. as a client's
                    // ephemeral port); it is free again soon.
                    eprintln!("testenv: restart: port {port} in use, retrying: {e:#}");
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(500 * attempt));
                }
                Err(e) => return Err(e.context("restarting kube-testenv")),
            }
        };
        self.process = restarted.process.take();

        for (content, path) in &saved {
            // Renamed into place: the apiserver never reads a half-written file.
            let tmp = path.with_extension("restore");
            std::fs::write(&tmp, content)
                .and_then(|()| std::fs::rename(&tmp, path))
                .with_context(|| format!("restoring {}", path.display()))?;
        }
        let config = self.kube_config();
        on_private_runtime(async move {
            let client = kube::Client::try_from(config)?;
            let deadline = Instant::now() + Duration::from_secs(90);
            loop {
                match client.apiserver_version().await {
                    Ok(_) => return Ok(()),
                    Err(e) if Instant::now() >= deadline => {
                        bail!("the restarted apiserver refuses the old credentials: {e}")
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        })
    }

    fn announce(&self) {
        if self.is_existing_cluster() {
            eprintln!(
                "testenv: existing cluster {} (USE_EXISTING_CLUSTER=true) at {} (kubeconfig {})",
                self.server_version,
                self.server_url,
                self.kubeconfig_path.display()
            );
        } else {
            eprintln!(
                "testenv: kube-apiserver {} at {} (kubeconfig {})",
                self.server_version,
                self.server_url,
                self.kubeconfig_path.display()
            );
        }
    }

    /// Uses the cluster of `KUBECONFIG` / `~/.kube/config`.
    fn existing() -> anyhow::Result<TestEnv> {
        let kubeconfig_path = existing_kubeconfig_path()?;
        let (kube_config, server_version) = on_private_runtime(async {
            let config = kube::Config::from_kubeconfig(&KubeConfigOptions::default())
                .await
                .context("loading the kubeconfig of KUBECONFIG (USE_EXISTING_CLUSTER=true)")?;
            install_crypto_provider();
            let client = kube::Client::try_from(config.clone())?;
            let info = client
                .apiserver_version()
                .await
                .context("asking the existing cluster for /version")?;
            Ok((config, info.git_version))
        })?;
        Ok(TestEnv {
            server_url: kube_config
                .cluster_url
                .to_string()
                .trim_end_matches('/')
                .to_string(),
            kube_config,
            kubeconfig_path,
            server_version,
            process: None,
        })
    }

    /// Starts a `kube-testenv` process, retrying when its ports clashed.
    fn start() -> anyhow::Result<TestEnv> {
        let bin = testenv_binary()?;
        let mut attempt = 1;
        loop {
            match TestEnv::start_once(&bin) {
                Ok(env) => return Ok(env),
                Err(e) if attempt < 3 && format!("{e:#}").contains("address already in use") => {
                    eprintln!("testenv: port clash, retrying: {e:#}");
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn start_once(bin: &Path) -> anyhow::Result<TestEnv> {
        TestEnv::launch(bin, new_data_dir()?, 0, false)
    }

    /// Starts kube-testenv over `data_dir` (new, or kept from a stopped
    /// process when `restart`: then a failed start leaves it in place) with
    /// the apiserver on `secure_port` (0 = a free one).
    fn launch(
        bin: &Path,
        data_dir: PathBuf,
        secure_port: u16,
        restart: bool,
    ) -> anyhow::Result<TestEnv> {
        let keep_data = env_flag("TESTENV_KEEP_DATA");
        let verbose = env_flag("TESTENV_VERBOSE");
        let timeout = Duration::from_secs(
            std::env::var("TESTENV_START_TIMEOUT")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(120),
        );

        // Ports: 0 lets kube-testenv pick free loopback ports itself; it holds
        // the apiserver's listener from the moment it picks it, and retries etcd
        // on a clash, so no port can be taken between picking and binding.
        let mut cmd = Command::new(bin);
        cmd.arg("--data-dir")
            .arg(&data_dir)
            .args([
                "--bind-address=127.0.0.1",
                "--etcd-client-port=0",
                "--etcd-peer-port=0",
            ])
            .arg(format!("--secure-port={secure_port}"))
            .arg(format!("--ready-timeout={}s", timeout.as_secs()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if !keep_data {
            cmd.arg("--remove-data-dir");
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");

        let mut process = Process {
            child: Mutex::new(child),
            stdin: Mutex::new(stdin),
            data_dir: data_dir.clone(),
            keep_data: keep_data || restart,
        };

        // Drain stderr (the etcd and apiserver logs) for the life of the
        // process, keeping the tail for error messages.
        let log_tail = Arc::new(Mutex::new(VecDeque::with_capacity(LOG_TAIL_LINES)));
        spawn_log_drain(stderr, log_tail.clone(), verbose);

        // Read stdout on a thread so that waiting has a deadline.
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::Builder::new()
            .name("testenv-stdout".into())
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let _ = tx.send(line);
                }
            })
            .context("spawning a thread")?;

        let tail = || {
            let lines = log_tail.lock().unwrap_or_else(|e| e.into_inner());
            let v: Vec<_> = lines.iter().cloned().collect();
            v.join("\n")
        };
        let started = Instant::now();
        let deadline = started + timeout + Duration::from_secs(5);
        let ready = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.starts_with("READY ") => break line,
                Ok(line) if line.starts_with("ERROR ") => {
                    drop(process);
                    bail!(
                        "kube-testenv failed: {}\n--- last output of kube-testenv ---\n{}",
                        &line[6..],
                        tail()
                    );
                }
                Ok(_) => continue,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    drop(process);
                    bail!(
                        "kube-testenv not ready after {:?}\n--- last output of kube-testenv ---\n{}",
                        timeout,
                        tail()
                    );
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = process.child.lock().unwrap().wait().ok();
                    drop(process);
                    bail!(
                        "kube-testenv exited ({status:?}) before it was ready\n--- last output of kube-testenv ---\n{}",
                        tail()
                    );
                }
            }
        };

        let field = |key: &str| -> anyhow::Result<String> {
            ready
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("no {key}= in kube-testenv's line {ready:?}"))
        };
        let kubeconfig_path = PathBuf::from(field("kubeconfig")?);
        let server_version = field("version")?;
        let server_url = field("server")?;
        let kube_config = load_kubeconfig(&kubeconfig_path)?;
        if verbose {
            eprintln!("testenv: ready after {:?}: {ready}", started.elapsed());
        }
        if keep_data {
            eprintln!("testenv: data dir {} will be kept", data_dir.display());
        }
        process.keep_data = keep_data;
        Ok(TestEnv {
            kube_config,
            kubeconfig_path,
            server_version,
            server_url,
            process: Some(process),
        })
    }
}

impl Drop for Process {
    /// Stops kube-testenv at once (SIGKILL: its data is throwaway, and a
    /// graceful apiserver shutdown costs a second) and removes the data dir.
    fn drop(&mut self) {
        drop(self.stdin.lock().unwrap_or_else(|e| e.into_inner()).take());
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        let _ = child.kill();
        let _ = child.wait();
        if !self.keep_data {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

fn spawn_log_drain(
    stderr: impl Read + Send + 'static,
    tail: Arc<Mutex<VecDeque<String>>>,
    verbose: bool,
) {
    let _ = std::thread::Builder::new()
        .name("testenv-log".into())
        .spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if verbose {
                    eprintln!("[kube-testenv] {line}");
                }
                let mut t = tail.lock().unwrap_or_else(|e| e.into_inner());
                if t.len() == LOG_TAIL_LINES {
                    t.pop_front();
                }
                t.push_back(line);
            }
        });
}

fn env_flag(name: &str) -> bool {
    matches!(
        std::env::var(name)
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Ok("1" | "true" | "yes" | "on")
    )
}

fn use_existing_cluster() -> bool {
    env_flag("USE_EXISTING_CLUSTER")
}

fn existing_kubeconfig_path() -> anyhow::Result<PathBuf> {
    if let Some(list) = std::env::var_os("KUBECONFIG") {
        if let Some(first) = std::env::split_paths(&list).find(|p| !p.as_os_str().is_empty()) {
            return Ok(first);
        }
    }
    let home =
        std::env::var_os("HOME").ok_or_else(|| anyhow!("neither KUBECONFIG nor HOME is set"))?;
    Ok(PathBuf::from(home).join(".kube").join("config"))
}

/// A new, empty directory under the system temp dir.
fn new_data_dir() -> anyhow::Result<PathBuf> {
    let base = std::env::temp_dir();
    for _ in 0..100 {
        let dir = base.join(format!(
            "kube-testenv-{}-{}",
            std::process::id(),
            random_suffix(8)
        ));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
        }
    }
    bail!("could not create a data dir under {}", base.display())
}

/// The repository root, from this crate's manifest dir (crates/test-support).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..")
}

/// `TESTENV_BIN`, or the path printed by `testenv/build.sh` (which builds the
/// binary the first time and is quick afterwards). Run once per process.
fn testenv_binary() -> anyhow::Result<PathBuf> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| find_or_build_binary().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn find_or_build_binary() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("TESTENV_BIN").filter(|s| !s.is_empty()) {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!("TESTENV_BIN={} is not a file", bin.display());
        }
        return Ok(bin);
    }
    let script = repo_root().join("testenv").join("build.sh");
    let started = Instant::now();
    // stderr is inherited: a cold build takes minutes and says so.
    let out = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}); set TESTENV_BIN to use a prebuilt kube-testenv",
            script.display(),
            out.status
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let path = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| PathBuf::from(l.trim()))
        .ok_or_else(|| anyhow!("{} printed no path", script.display()))?;
    if !path.is_file() {
        bail!(
            "{} printed {}, which is not a file",
            script.display(),
            path.display()
        );
    }
    if started.elapsed() > Duration::from_secs(10) {
        eprintln!(
            "testenv: built {} in {:?}",
            path.display(),
            started.elapsed()
        );
    }
    Ok(path)
}

fn load_kubeconfig(path: &Path) -> anyhow::Result<kube::Config> {
    let kubeconfig = Kubeconfig::read_from(path)
        .with_context(|| format!("reading kubeconfig {}", path.display()))?;
    on_private_runtime(async move {
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .context("building a kube::Config from the kubeconfig")
    })
}

/// Runs `fut` to completion on a new current-thread runtime on a new thread,
/// so that it works whether or not the caller is inside a tokio runtime.
fn on_private_runtime<T, Fut>(fut: Fut) -> anyhow::Result<T>
where
    T: Send + 'static,
    Fut: Future<Output = anyhow::Result<T>> + Send + 'static,
{
    std::thread::Builder::new()
        .name("testenv-init".into())
        .spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("building a tokio runtime")?
                .block_on(fut)
        })
        .context("spawning a thread")?
        .join()
        .map_err(|_| anyhow!("testenv-init thread panicked"))?
}

/// Installs the rustls aws-lc-rs crypto provider as the process default, once
/// (kube's rustls client needs one); an already installed provider is kept.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}

/// Create or replace CRDs (server-side apply, field manager `test-support`,
/// forced) and wait — polling with a deadline of 30 s per CRD — until each is
/// `Established` and `NamesAccepted`, every served version is in discovery and
/// its resources can be listed.
pub async fn install_crds(
    client: &kube::Client,
    crds: &[CustomResourceDefinition],
) -> anyhow::Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let pp = PatchParams::apply("test-support").force();
    for crd in crds {
        let name = crd
            .metadata
            .name
            .clone()
            .ok_or_else(|| anyhow!("a CRD without metadata.name"))?;
        let mut crd = crd.clone();
        crd.metadata.resource_version = None;
        crd.metadata.managed_fields = None;
        crd.status = None;
        let mut value = serde_json::to_value(&crd)?;
        value["apiVersion"] = "apiextensions.k8s.io/v1".into();
        value["kind"] = "CustomResourceDefinition".into();
        api.patch(&name, &pp, &Patch::Apply(&value))
            .await
            .with_context(|| format!("applying CRD {name}"))?;
    }
    for crd in crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        wait_crd_servable(client, &api, crd, &name)
            .await
            .with_context(|| format!("waiting for CRD {name} to be servable"))?;
    }
    Ok(())
}

async fn wait_crd_servable(
    client: &kube::Client,
    api: &Api<CustomResourceDefinition>,
    crd: &CustomResourceDefinition,
    name: &str,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut pause = Duration::from_millis(10);
    loop {
        let last = match crd_servable(client, api, crd, name).await {
            Ok(()) => return Ok(()),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() >= deadline {
            bail!("not servable after 30s; last: {last}");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

async fn crd_servable(
    client: &kube::Client,
    api: &Api<CustomResourceDefinition>,
    crd: &CustomResourceDefinition,
    name: &str,
) -> anyhow::Result<()> {
    let current = api.get(name).await?;
    let conditions = current
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    for wanted in ["Established", "NamesAccepted"] {
        let ok = conditions
            .iter()
            .any(|c| c.type_ == wanted && c.status == "True");
        if !ok {
            bail!("condition {wanted} is not True (conditions: {conditions:?})");
        }
    }
    let spec = &crd.spec;
    for version in spec.versions.iter().filter(|v| v.served) {
        let group_version = format!("{}/{}", spec.group, version.name);
        let resources = client
            .list_api_group_resources(&group_version)
            .await
            .with_context(|| format!("discovery of {group_version}"))?;
        if !resources
            .resources
            .iter()
            .any(|r| r.name == spec.names.plural)
        {
            bail!(
                "{} not yet in discovery of {group_version}",
                spec.names.plural
            );
        }
        let gvk = GroupVersionKind::gvk(&spec.group, &version.name, &spec.names.kind);
        let ar = ApiResource::from_gvk_with_plural(&gvk, &spec.names.plural);
        let objects: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        objects
            .list_metadata(&ListParams::default().limit(1))
            .await
            .with_context(|| format!("listing {}.{group_version}", spec.names.plural))?;
    }
    Ok(())
}

/// What a polled function of [`wait_for`] returns: `Some(x)`, `true` or `Ok(x)`
/// mean done; `None`, `false` or `Err(e)` mean not yet (an `Err` is shown as
/// the last value seen if the deadline passes).
pub trait Awaited {
    /// The value [`wait_for`] returns when done.
    type Ready;
    /// `Ok(ready)` when done, else `Err(description of this value)`.
    fn into_ready(self) -> Result<Self::Ready, String>;
}

impl<T> Awaited for Option<T> {
    type Ready = T;
    fn into_ready(self) -> Result<T, String> {
        self.ok_or_else(|| "None".to_string())
    }
}

impl Awaited for bool {
    type Ready = ();
    fn into_ready(self) -> Result<(), String> {
        if self {
            Ok(())
        } else {
            Err("false".to_string())
        }
    }
}

impl<T, E: Debug> Awaited for Result<T, E> {
    type Ready = T;
    fn into_ready(self) -> Result<T, String> {
        self.map_err(|e| format!("Err({e:?})"))
    }
}

/// Poll `f` until it returns `Some`/`true`/`Ok` or the deadline passes; on
/// timeout panic with a message saying what was awaited and the last value
/// seen. Polls quickly at first (10 ms), backing off to 250 ms; a call of `f`
/// that hangs past the deadline counts as a timeout.
///
/// ```no_run
/// # async fn demo(client: kube::Client) {
/// use std::time::Duration;
/// use k8s_openapi::api::core::v1::ConfigMap;
/// let api: kube::Api<ConfigMap> = kube::Api::namespaced(client, "default");
/// let cm = test_support::wait_for("ConfigMap demo to exist", Duration::from_secs(10), || async {
///     api.get_opt("demo").await
/// })
/// .await;
/// # }
/// ```
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T::Ready
where
    T: Awaited,
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let started = tokio::time::Instant::now();
    let deadline = started + timeout;
    let mut pause = Duration::from_millis(10);
    let mut last = String::from("(f never returned)");
    let mut polls = 0u64;
    loop {
        polls += 1;
        match tokio::time::timeout_at(deadline, f()).await {
            Ok(value) => match value.into_ready() {
                Ok(ready) => return ready,
                Err(seen) => last = seen,
            },
            Err(_) => {
                last =
                    format!("(the last call was still running at the deadline; before it: {last})")
            }
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            panic!(
                "timed out after {:?} waiting for {what}; polled {polls} times; last value seen: {last}",
                now - started
            );
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// A unique, DNS-safe name for test isolation: prefix + short random suffix.
///
/// The prefix is lower-cased and reduced to `[a-z0-9-]` (other characters
/// become `-`), and shortened so that the whole name is a valid DNS-1123 label
/// (at most 63 characters); the suffix is 6 characters of `[a-z0-9]`. An empty
/// prefix becomes `test`.
pub fn unique_name(prefix: &str) -> String {
    const SUFFIX: usize = 6;
    let mut p: String = prefix
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    p.truncate(63 - SUFFIX - 1);
    let p = p.trim_matches('-');
    let p = if p.is_empty() { "test" } else { p };
    format!("{p}-{}", random_suffix(SUFFIX))
}

/// `len` characters of `[a-z0-9]`, unique within the process and random across
/// processes.
fn random_suffix(len: usize) -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static STATE: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    let mut h = STATE.get_or_init(Default::default).build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    let mut n = h.finish();
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| {
            let c = ALPHABET[(n % 36) as usize] as char;
            n /= 36;
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_are_dns_labels_and_differ() {
        let a = unique_name("My_Test.Name");
        let b = unique_name("My_Test.Name");
        assert_ne!(a, b);
        assert!(a.starts_with("my-test-name-"), "{a}");
        let long = unique_name(&"x".repeat(100));
        assert!(long.len() <= 63, "{long}");
        assert!(unique_name("").starts_with("test-"));
        for n in [a, b, long, unique_name("--a--")] {
            assert!(
                n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !n.starts_with('-')
                    && !n.ends_with('-'),
                "{n}"
            );
        }
    }

    #[tokio::test]
    async fn wait_for_returns_the_ready_value() {
        let mut n = 0;
        let v = wait_for("n to reach 3", Duration::from_secs(5), || {
            n += 1;
            let n = n;
            async move { (n >= 3).then_some(n) }
        })
        .await;
        assert_eq!(v, 3);
        wait_for("true", Duration::from_secs(1), || async { true }).await;
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for the impossible; polled")]
    async fn wait_for_panics_with_what_and_last_value() {
        let r: Result<(), String> = Err("still red".into());
        wait_for("the impossible", Duration::from_millis(100), || {
            let r = r.clone();
            async move { r }
        })
        .await;
    }

    #[tokio::test]
    async fn wait_for_message_names_the_last_value() {
        let handle = tokio::spawn(async {
            wait_for("green", Duration::from_millis(50), || async {
                Err::<(), _>("still red")
            })
            .await
        });
        let err = handle.await.unwrap_err().into_panic();
        let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(
            msg.contains("waiting for green") && msg.contains("still red"),
            "{msg}"
        );
    }
}
