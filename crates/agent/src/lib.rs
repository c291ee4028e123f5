//! The Compass Runtime Agent: connects a Kyma Runtime to Compass, keeps the
//! connection and its client certificate alive, and synchronizes the Runtime's
//! Applications from the Compass Director.

pub mod agent;
pub mod certificates;
pub mod cli;
pub mod compass;
pub mod config;
pub mod controller;
pub mod crd;
pub mod k8s;
pub mod report;
pub mod sync;
pub mod telemetry;
