//! Finding the `kube-testenv` binary: `TESTENV_BIN`, or the one
//! `testenv/build.sh` builds and caches.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};

/// The repository root, from this crate's manifest dir (crates/test-support).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..")
}

/// `TESTENV_BIN`, or the path printed by `testenv/build.sh` (which builds the
/// binary the first time and is quick afterwards). Run once per process.
pub(crate) fn testenv_binary() -> anyhow::Result<PathBuf> {
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
