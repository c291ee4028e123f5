//! The labels and annotations the agent puts on the objects it writes: the
//! names the original agent used (and tools select by).
//!
//! Credential and request-parameter Secrets carry exactly the Go agent's
//! labels (`app`, `bundleId`) and no annotation, so that either agent finds
//! the other's Secrets as it would write them and rewrites none. Earlier
//! releases of this agent also put the managed-by label and a data-digest
//! annotation (`compass-runtime-agent.kyma-project.io/data-hash`) on them;
//! such Secrets are still the agent's (`ActualSecret::is_the_agents`), their
//! annotation is not read (the digest comes from the data, cached by uid and
//! resourceVersion: `sync::actual::SecretDigestCache`), and they keep both
//! until their data changes and they are rewritten.

/// On every Application the agent manages (and, from earlier releases, on
/// Secrets it wrote).
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
