//! The labels and annotations the agent puts on the objects it writes: names
//! the original agent used (and tools select by), plus this agent's data
//! digest.

/// On every Application the agent manages.
pub const MANAGED_BY_LABEL: &str = "applicationconnector.kyma-project.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "compass-runtime-agent";

/// In an Application's `spec.labels`: its own name.
pub const CONNECTED_APP_LABEL: &str = "connected-app";

/// On a credential or request-parameters Secret: the Application's name.
pub const SECRET_APP_LABEL: &str = "app";
/// On a credential or request-parameters Secret: the bundle's id.
pub const SECRET_BUNDLE_LABEL: &str = "bundleId";

/// On `compass-connection`: a digest of the one-time token the agent last
/// presented to the Connector (never the token), so that a new token in the
/// configuration source is recognized as the operator's signal.
pub const PRESENTED_TOKEN_ANNOTATION: &str =
    "compass-runtime-agent.kyma-project.io/presented-token";

/// A digest of a Secret's data, written by the agent, so that a sync can tell
/// an unchanged Secret from its metadata alone (without reading every
/// credential each cycle). Whoever can read it can read the data anyway.
pub const DATA_HASH_ANNOTATION: &str = "compass-runtime-agent.kyma-project.io/data-hash";
