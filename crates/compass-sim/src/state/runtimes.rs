//! Runtimes: registered as the Director registers them (with
//! `isNormalized: "true"`), their labels, and their applications kept in the
//! order they were put and in the Director's order.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Shared, SimError, State};
use crate::ca::Subject;
use crate::model::{Application, RuntimeSpec};
use crate::names::IS_NORMALIZED_LABEL;
use crate::order::ListOrder;

/// A runtime as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeInfo {
    pub id: String,
    pub tenant: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub labels: Map<String, Value>,
    /// The subject the Connector hands out, but for its CN, which is the
    /// SystemAuth of each one-time token (`O=..,OU=..,L=..,ST=..,C=..`).
    pub subject: String,
    /// The `keyAlgorithm` the Connector asks for.
    pub key_algorithm: String,
    /// Its SystemAuths: one per token issued for it (the CN of the
    /// certificates signed with that token and its successors).
    pub system_auths: Vec<String>,
    /// In the order they were put.
    pub application_ids: Vec<String>,
}

pub(crate) struct RuntimeState {
    pub spec: RuntimeSpec,
    /// In the order they were put.
    applications: Vec<Arc<Application>>,
    /// The same, in the Director's order; made when first asked for after a
    /// change.
    served: Option<Arc<[Arc<Application>]>>,
}

impl RuntimeState {
    pub(super) fn new(spec: RuntimeSpec) -> Self {
        Self {
            spec,
            applications: Vec::new(),
            served: None,
        }
    }

    /// The subject the Connector hands out to a holder of `system_auth`'s
    /// token, and checks in its CSR.
    pub fn subject(&self, system_auth: &str) -> Subject {
        let t = self.spec.subject.clone().unwrap_or_default();
        Subject {
            common_name: system_auth.to_string(),
            country: t.country,
            organization: t.organization,
            organizational_unit: t.organizational_unit,
            locality: t.locality,
            province: t.province,
        }
    }

    pub fn key_algorithm(&self) -> String {
        self.spec
            .key_algorithm
            .clone()
            .unwrap_or_else(|| "rsa2048".to_string())
    }

    pub fn name(&self) -> String {
        self.spec
            .name
            .clone()
            .unwrap_or_else(|| self.spec.id.clone())
    }

    pub fn applications(&self) -> &[Arc<Application>] {
        &self.applications
    }

    /// Changes the applications (in the order they were put).
    pub fn change_applications<T>(&mut self, f: impl FnOnce(&mut Vec<Arc<Application>>) -> T) -> T {
        self.served = None;
        f(&mut self.applications)
    }

    /// The applications in the Director's order.
    pub fn served(&mut self, order: ListOrder) -> Arc<[Arc<Application>]> {
        let applications = &self.applications;
        self.served
            .get_or_insert_with(|| {
                order
                    .arranged(applications, |a| a.id.as_str())
                    .into_iter()
                    .cloned()
                    .collect()
            })
            .clone()
    }

    /// After a change of the list order: the served order is made anew.
    pub(super) fn forget_served_order(&mut self) {
        self.served = None;
    }
}

impl Shared {
    /// Registers a runtime; as the Director, it gets `isNormalized: "true"`
    /// unless its labels say otherwise.
    pub fn create_runtime(&self, mut spec: RuntimeSpec) -> Result<(), SimError> {
        if spec.id.trim().is_empty() {
            return Err(SimError::InvalidInput("a runtime needs an id".into()));
        }
        if spec.tenant.trim().is_empty() {
            return Err(SimError::InvalidInput(format!(
                "runtime {:?} needs a tenant",
                spec.id
            )));
        }
        let mut state = self.state();
        if state.runtimes.contains_key(&spec.id) {
            return Err(SimError::RuntimeExists(spec.id));
        }
        if spec
            .labels
            .get(IS_NORMALIZED_LABEL)
            .is_none_or(Value::is_null)
        {
            spec.labels
                .insert(IS_NORMALIZED_LABEL.into(), Value::String("true".into()));
        }
        state
            .runtimes
            .insert(spec.id.clone(), RuntimeState::new(spec));
        Ok(())
    }

    /// Deletes a runtime with its SystemAuths: its tokens and certificates
    /// no longer authenticate.
    pub fn delete_runtime(&self, id: &str) -> Result<(), SimError> {
        let mut state = self.state();
        state
            .runtimes
            .remove(id)
            .ok_or_else(|| SimError::UnknownRuntime(id.to_string()))?;
        state.system_auths.retain(|_, auth| auth.runtime_id != id);
        Ok(())
    }

    pub fn with_runtime<T>(
        &self,
        id: &str,
        f: impl FnOnce(&mut RuntimeState) -> T,
    ) -> Result<T, SimError> {
        let mut state = self.state();
        let runtime = state
            .runtimes
            .get_mut(id)
            .ok_or_else(|| SimError::UnknownRuntime(id.to_string()))?;
        Ok(f(runtime))
    }

    pub fn runtime_info(&self, id: &str) -> Result<RuntimeInfo, SimError> {
        let state = self.state();
        let runtime = state
            .runtimes
            .get(id)
            .ok_or_else(|| SimError::UnknownRuntime(id.to_string()))?;
        Ok(runtime_info(&state, runtime))
    }

    pub fn runtimes(&self) -> Vec<RuntimeInfo> {
        let state = self.state();
        state
            .runtimes
            .values()
            .map(|runtime| runtime_info(&state, runtime))
            .collect()
    }

    pub fn runtime_labels(&self, id: &str) -> Result<Map<String, Value>, SimError> {
        self.with_runtime(id, |rt| rt.spec.labels.clone())
    }

    pub fn set_runtime_label(&self, id: &str, key: &str, value: Value) -> Result<(), SimError> {
        self.with_runtime(id, |rt| {
            rt.spec.labels.insert(key.to_string(), value);
        })
    }

    /// Removes a label; true when the runtime had it.
    pub fn delete_runtime_label(&self, id: &str, key: &str) -> Result<bool, SimError> {
        self.with_runtime(id, |rt| rt.spec.labels.remove(key).is_some())
    }
}

fn runtime_info(state: &State, rt: &RuntimeState) -> RuntimeInfo {
    let subject = rt.subject("").to_compass_string();
    let mut system_auths: Vec<String> = state
        .system_auths
        .iter()
        .filter(|(_, auth)| auth.runtime_id == rt.spec.id)
        .map(|(id, _)| id.clone())
        .collect();
    system_auths.sort();
    RuntimeInfo {
        id: rt.spec.id.clone(),
        tenant: rt.spec.tenant.clone(),
        name: rt.name(),
        description: rt.spec.description.clone(),
        labels: rt.spec.labels.clone(),
        subject: subject.strip_suffix(",CN=").unwrap_or(&subject).to_string(),
        key_algorithm: rt.key_algorithm(),
        system_auths,
        application_ids: rt.applications.iter().map(|a| a.id.clone()).collect(),
    }
}
