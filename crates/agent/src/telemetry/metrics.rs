//! The metrics registry: each layer registers its own metrics (the Compass
//! clients, the Kubernetes side, the controller), all prefixed
//! `compass_runtime_agent_`, units in the names, labels only from small fixed
//! sets (never names, URLs or errors). Served at `/metrics`.

pub use prometheus_client::registry::Registry;

pub struct MetricsRegistry {
    registry: Registry,
}

impl MetricsRegistry {
    /// A registry with the agent's prefix, filled by `register`.
    pub fn new(register: impl FnOnce(&mut Registry)) -> MetricsRegistry {
        let mut registry = Registry::with_prefix("compass_runtime_agent");
        register(&mut registry);
        MetricsRegistry { registry }
    }

    /// The OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
