//! What the library and admin API refuse.

use crate::ca::CaError;

/// Errors of the library and admin API.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("runtime {0:?} does not exist")]
    UnknownRuntime(String),
    #[error("runtime {0:?} already exists")]
    RuntimeExists(String),
    #[error("application {app:?} does not exist in runtime {runtime:?}")]
    UnknownApplication { runtime: String, app: String },
    #[error("certificate with fingerprint {0:?} was not issued by compass-sim")]
    UnknownCertificate(String),
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}
