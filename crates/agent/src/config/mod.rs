//! Configuration: the agent's `APP_*` settings and the one-time connection
//! parameters read from a Secret or ConfigMap.

pub mod parse;
pub mod settings;
pub mod source;

pub use parse::NamespacedName;
pub use settings::{LogFormat, Settings, SourceKind};
pub use source::{
    ConnectionParameters, RuntimeParameters, SourceError, SourceLocation, SourceOrigin,
};
