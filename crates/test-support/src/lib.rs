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
//! In front of it (or of compass-sim), a [`FaultProxy`] lets a test reset,
//! black-hole or answer (429, 503, …) the agent's connections at any time; see
//! its documentation.
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

mod binary;
mod blocking;
mod crds;
mod environment;
mod fault_proxy;
mod kubeconfig;
mod names;
mod process;
mod settings;
mod wait;

pub use crds::install_crds;
pub use environment::TestEnv;
pub use fault_proxy::{
    write_kubeconfig, Answer, Counters, FaultProxy, Mode, ServingCert, TlsUpstream,
};
pub use kubeconfig::install_crypto_provider;
pub use names::unique_name;
pub use wait::{wait_for, Awaited};
