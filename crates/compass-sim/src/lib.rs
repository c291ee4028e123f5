//! compass-sim: a local Compass (Connector + Director) with a real CA, mTLS,
//! paging and injectable faults, for testing, demonstrating and benchmarking
//! the Compass Runtime Agent.
//!
//! ```no_run
//! # async fn demo() -> Result<(), compass_sim::SimError> {
//! use compass_sim::{CompassSim, SimConfig};
//! let sim = CompassSim::start(SimConfig::default()).await?;
//! sim.create_runtime("my-runtime", "my-tenant")?;
//! let token = sim.issue_token("my-runtime")?;
//! println!("CONNECTOR_URL={} TOKEN={token}", sim.connector_url());
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

pub mod ca;
pub mod clock;
pub mod faults;
pub mod graphql;
pub mod log;
pub mod model;
pub mod names;
pub mod order;
pub mod scenario;

mod admin;
mod api;
mod config;
mod gateway;
mod server;
mod state;
mod tls;

pub use crate::ca::{CertRefusal, ClientIdentity, Subject};
pub use crate::clock::Clock;
pub use crate::config::{CaPem, SimConfig};
pub use crate::faults::{Fault, FaultKind, FaultTimes};
pub use crate::gateway::{CONNECTOR_PATH, DIRECTOR_PATH};
pub use crate::graphql::{connector_sdl, director_sdl};
pub use crate::log::{Caller, Endpoint, Outcome, RequestLogEntry};
pub use crate::model::{Application, RuntimeSpec, SubjectTemplate};
pub use crate::names::ApplicationNames;
pub use crate::order::ListOrder;
pub use crate::scenario::Scenario;
pub use crate::server::{CompassSim, TlsHandshakes};
pub use crate::state::{CertificateInfo, RuntimeInfo, Settings, SimError, Urls};
pub use crate::tls::{install_crypto_provider, HandshakeCounter};
