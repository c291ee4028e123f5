//! The environment variables that steer the test environment (listed in the
//! crate's documentation).

/// Whether the variable `name` is set to `1`, `true`, `yes` or `on` (any case).
pub(crate) fn env_flag(name: &str) -> bool {
    matches!(
        std::env::var(name)
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Ok("1" | "true" | "yes" | "on")
    )
}

pub(crate) fn use_existing_cluster() -> bool {
    env_flag("USE_EXISTING_CLUSTER")
}
