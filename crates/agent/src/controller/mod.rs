//! The reconcile of the single cluster-scoped `compass-connection`: `decide`
//! (pure: the next step, the status, backoff), `reconcile` (the I/O around
//! it), `connection` (token and certificate), `synchronize` (Applications),
//! `context`, `errors` and `metrics`. Running it (the kube-runtime
//! controller, election, the configuration source, the shutdown) is
//! `crate::process`.

pub mod connection;
pub mod context;
pub mod decide;
pub mod errors;
pub mod metrics;
pub mod progress;
pub mod reconcile;
pub mod remembered;
pub mod synchronize;

pub use context::Context;
pub use reconcile::{error_policy, reconcile};
