//! Synchronization: Director applications → `Application` resources and their
//! Secrets. `convert` and `plan` are pure; `apply` does the writes.

pub mod convert;
pub mod names;
pub mod plan;

pub use convert::{to_wanted_application, ConversionSettings, WantedApplication, WantedSecret};
pub use plan::{plan, ActualState, ApplicationAction, ApplicationPlan, Plan, SecretAction};
