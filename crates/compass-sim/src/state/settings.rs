//! The settings that can change while the simulator runs.

use std::time::Duration;

use crate::names::ApplicationNames;
use crate::order::ListOrder;

/// Global knobs, changeable at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Validity of issued client certificates (Compass default 2160h).
    pub cert_validity: Duration,
    /// Lifetime of one-time tokens (default 60 minutes).
    pub token_ttl: Duration,
    /// Also check the CSR key against the asked `keyAlgorithm`.
    pub strict: bool,
    /// The order of the Director's lists (default: a random seed).
    pub list_order: ListOrder,
    /// What the Director does to application names (default: as Compass).
    pub application_names: ApplicationNames,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            cert_validity: Duration::from_secs(2160 * 3600),
            token_ttl: Duration::from_secs(60 * 60),
            strict: false,
            list_order: ListOrder::from_env_or_random(),
            application_names: ApplicationNames::default(),
        }
    }
}
