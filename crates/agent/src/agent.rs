//! The agent's entry points, as the command line, the tests and the demo
//! name them; the process itself lives in [`crate::process`].

pub use crate::process::{install_crypto_provider, Agent, AgentMetrics, Endpoints, StartError};
