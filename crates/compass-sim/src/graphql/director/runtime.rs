//! A runtime and its labels as the Director serves them.

use async_graphql::{Object, SimpleObject, ID};
use serde_json::Map;

use crate::graphql::scalars::{Any, Labels};

/// The labels, or the one with `key`.
pub(super) fn filter_labels(
    labels: &Map<String, serde_json::Value>,
    key: Option<String>,
) -> Labels {
    match key {
        None => Labels(labels.clone()),
        Some(key) => Labels(
            labels
                .iter()
                .filter(|(k, _)| **k == key)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
    }
}

pub struct Runtime {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) description: Option<String>,
    pub(super) labels: Map<String, serde_json::Value>,
}

#[Object(name = "Runtime")]
impl Runtime {
    async fn id(&self) -> ID {
        ID(self.id.clone())
    }
    async fn name(&self) -> &str {
        &self.name
    }
    async fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }
    async fn labels(&self, key: Option<String>) -> Option<Labels> {
        Some(filter_labels(&self.labels, key))
    }
}

#[derive(SimpleObject)]
#[graphql(name = "Label")]
pub struct Label {
    pub(super) key: String,
    pub(super) value: Any,
}
