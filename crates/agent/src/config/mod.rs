//! Configuration: the agent's `APP_*` settings and the one-time connection
//! parameters read from a Secret or ConfigMap.

pub mod parse;
