//! The mutation `setRuntimeLabel`, refused as the Director refuses it.

use async_graphql::{Context, Object, Result, ID};

use super::runtime::Label;
use super::{caller, in_tenant};
use crate::graphql::errors;
use crate::graphql::scalars::Any;

pub struct DirectorMutation;

/// The label the Director lets no one set.
const IMMUTABLE_LABEL: &str = "runtimeType";

/// The label of formations, which are not set as a label.
const SCENARIOS_LABEL: &str = "scenarios";

#[Object(name = "Mutation")]
impl DirectorMutation {
    /// Sets a label of a runtime of the caller's tenant, its value kept as
    /// the JSON it is; refused as the Director refuses it.
    async fn set_runtime_label(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "runtimeID")] runtime_id: ID,
        key: String,
        value: Any,
    ) -> Result<Label> {
        let (shared, caller) = caller(ctx)?;
        if key.trim().is_empty() {
            return Err(errors::invalid_data("key: cannot be blank"));
        }
        if !in_tenant(shared, caller, &runtime_id) {
            return Err(errors::internal(format!(
                "Runtime with ID {} doesn't exist",
                runtime_id.0
            )));
        }
        if key == IMMUTABLE_LABEL {
            return Err(errors::invalid_data(format!(
                "could not set unmodifiable label with key {key}"
            )));
        }
        if key == SCENARIOS_LABEL {
            return Err(errors::internal(format!(
                "label with key {key} cannot be set explicitly"
            )));
        }
        shared
            .set_runtime_label(&runtime_id, &key, value.0.clone())
            .map_err(|e| errors::internal(e.to_string()))?;
        Ok(Label { key, value })
    }
}
