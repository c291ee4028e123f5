//! The reconcile of the single cluster-scoped `compass-connection`:
//! `decide` (pure: the next step, the status transition, the next run and
//! its backoff, the conditions), `reconcile` (the I/O around it, within the
//! cycle's deadline), `connection` (establish with the token, maintain with
//! the certificate), `synchronize` (Applications: `plan_sync` reads and
//! plans, the rest applies; `read_gate`, the fetch's wait for the read), `context` (what a reconcile needs), `remembered`
//! (what it keeps between runs), `progress` (what a cycle waits for, and
//! whether one is overdue), `errors` and `metrics`. Running it (the
//! kube-runtime controller, election, the configuration source, the
//! shutdown) is `crate::agent`.

pub mod certificate_in_use;
pub mod connection;
pub mod context;
pub mod decide;
pub mod errors;
pub mod metrics;
pub mod progress;
pub mod read_gate;
pub mod reconcile;
pub mod remembered;
pub mod synchronize;

pub use context::Context;
pub use reconcile::{error_policy, reconcile};
