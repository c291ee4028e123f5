//! The `kube-testenv` process: starting it over a data directory, reading its
//! `READY` line, keeping the tail of its log for error messages, and stopping
//! it.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};

use crate::kubeconfig::load_kubeconfig;
use crate::names::random_suffix;
use crate::settings::env_flag;

/// Lines of etcd / kube-apiserver output kept for error messages.
const LOG_TAIL_LINES: usize = 60;

/// The running `kube-testenv` child.
pub(crate) struct Process {
    pub(crate) child: Mutex<Child>,
    /// Held open for the life of the environment: EOF tells the child to stop.
    stdin: Mutex<Option<ChildStdin>>,
    pub(crate) data_dir: PathBuf,
    /// Whether Drop leaves the data directory in place.
    pub(crate) keep_data: bool,
}

/// A kube-testenv process that said it is ready, and what it said.
pub(crate) struct Launched {
    pub(crate) process: Process,
    pub(crate) kube_config: kube::Config,
    pub(crate) kubeconfig_path: PathBuf,
    pub(crate) server_version: String,
    pub(crate) server_url: String,
}

/// Starts kube-testenv over `data_dir` (new, or kept from a stopped
/// process when `restart`: then a failed start leaves it in place) with
/// the apiserver on `secure_port` (0 = a free one).
pub(crate) fn launch(
    bin: &Path,
    data_dir: PathBuf,
    secure_port: u16,
    restart: bool,
    apiserver_args: &[String],
) -> anyhow::Result<Launched> {
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
    if !apiserver_args.is_empty() {
        cmd.arg("--").args(apiserver_args);
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
    Ok(Launched {
        process,
        kube_config,
        kubeconfig_path,
        server_version,
        server_url,
    })
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

/// A new, empty directory under the system temp dir.
pub(crate) fn new_data_dir() -> anyhow::Result<PathBuf> {
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
