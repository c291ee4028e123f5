//! Telemetry: logs, metrics and health endpoints, apart from the logic.

pub mod cluster_metrics;
pub mod health;
pub mod logging;
pub mod metrics;
