//! Telemetry: logs, the metrics registry and the health endpoints, apart
//! from the logic. Wired in from the top (`crate::agent`, `crate::cli`):
//! nothing below them uses it.

pub mod health;
pub mod logging;
pub mod metrics;
