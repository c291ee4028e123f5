//! [`TestEnv`]: the API server a test talks to, started by this crate or an
//! existing cluster, and what a test may ask of it (clients, its kubeconfig,
//! a restart).

use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use kube::config::KubeConfigOptions;

use crate::binary::testenv_binary;
use crate::blocking::on_private_runtime;
use crate::kubeconfig::{existing_kubeconfig_path, install_crypto_provider};
use crate::process::{launch, new_data_dir, Launched, Process};
use crate::settings::use_existing_cluster;

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
    /// Extra kube-apiserver flags it was started with (kept on restart).
    apiserver_args: Vec<String>,
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
                TestEnv::start(&[])
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
        TestEnv::start_new_with_apiserver_args(&[])
    }

    /// As [`TestEnv::start_new`], with extra kube-apiserver flags (e.g.
    /// `--audit-log-path=…` and `--audit-policy-file=…`), kept on
    /// [`TestEnv::restart`].
    pub fn start_new_with_apiserver_args(args: &[String]) -> anyhow::Result<TestEnv> {
        let env = TestEnv::start(args)?;
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
            match TestEnv::launch(&bin, data_dir.clone(), port, true, &self.apiserver_args) {
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
            apiserver_args: Vec::new(),
        })
    }

    /// Starts a `kube-testenv` process, retrying when its ports clashed.
    fn start(apiserver_args: &[String]) -> anyhow::Result<TestEnv> {
        let bin = testenv_binary()?;
        let mut attempt = 1;
        loop {
            match TestEnv::start_once(&bin, apiserver_args) {
                Ok(env) => return Ok(env),
                Err(e) if attempt < 3 && format!("{e:#}").contains("address already in use") => {
                    eprintln!("testenv: port clash, retrying: {e:#}");
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn start_once(bin: &Path, apiserver_args: &[String]) -> anyhow::Result<TestEnv> {
        TestEnv::launch(bin, new_data_dir()?, 0, false, apiserver_args)
    }

    /// A [`TestEnv`] over a kube-testenv process started by [`launch`].
    fn launch(
        bin: &Path,
        data_dir: PathBuf,
        secure_port: u16,
        restart: bool,
        apiserver_args: &[String],
    ) -> anyhow::Result<TestEnv> {
        let Launched {
            process,
            kube_config,
            kubeconfig_path,
            server_version,
            server_url,
        } = launch(bin, data_dir, secure_port, restart, apiserver_args)?;
        Ok(TestEnv {
            kube_config,
            kubeconfig_path,
            server_version,
            server_url,
            process: Some(process),
            apiserver_args: apiserver_args.to_vec(),
        })
    }
}
