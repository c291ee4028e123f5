//! A runtime's applications: put, replaced and removed by the library and
//! admin API, served in the Director's order.

use std::sync::Arc;

use super::{Shared, SimError};
use crate::model::Application;

impl Shared {
    /// Adds or replaces (by id) an application; true when it was new.
    pub fn put_application(&self, runtime_id: &str, app: Application) -> Result<bool, SimError> {
        validate_application(&app)?;
        self.with_runtime(runtime_id, |rt| {
            rt.change_applications(|apps| match apps.iter_mut().find(|a| a.id == app.id) {
                Some(existing) => {
                    *existing = Arc::new(app);
                    false
                }
                None => {
                    apps.push(Arc::new(app));
                    true
                }
            })
        })
    }

    pub fn replace_applications(
        &self,
        runtime_id: &str,
        apps: Vec<Application>,
    ) -> Result<(), SimError> {
        let mut seen = std::collections::HashSet::new();
        for app in &apps {
            validate_application(app)?;
            if !seen.insert(app.id.clone()) {
                return Err(SimError::InvalidInput(format!(
                    "application id {:?} appears twice",
                    app.id
                )));
            }
        }
        self.with_runtime(runtime_id, |rt| {
            rt.change_applications(|stored| *stored = apps.into_iter().map(Arc::new).collect())
        })
    }

    pub fn remove_application(&self, runtime_id: &str, app_id: &str) -> Result<(), SimError> {
        self.with_runtime(runtime_id, |rt| {
            rt.change_applications(|apps| {
                let before = apps.len();
                apps.retain(|a| a.id != app_id);
                before != apps.len()
            })
        })?
        .then_some(())
        .ok_or_else(|| SimError::UnknownApplication {
            runtime: runtime_id.to_string(),
            app: app_id.to_string(),
        })
    }

    /// Removes the runtime's first application in the Director's order, if any.
    pub fn remove_first_application(&self, runtime_id: &str) {
        let mut state = self.state();
        let order = state.settings.list_order;
        if let Some(rt) = state.runtimes.get_mut(runtime_id) {
            if let Some(first) = rt.served(order).first().map(|a| a.id.clone()) {
                rt.change_applications(|apps| apps.retain(|a| a.id != first));
            }
        }
    }

    /// A runtime's applications in the order they were put.
    pub fn applications(&self, runtime_id: &str) -> Result<Vec<Arc<Application>>, SimError> {
        self.with_runtime(runtime_id, |rt| rt.applications().to_vec())
    }

    /// A runtime's applications in the Director's order.
    pub fn served_applications(
        &self,
        runtime_id: &str,
    ) -> Result<Arc<[Arc<Application>]>, SimError> {
        let mut state = self.state();
        let order = state.settings.list_order;
        let rt = state
            .runtimes
            .get_mut(runtime_id)
            .ok_or_else(|| SimError::UnknownRuntime(runtime_id.to_string()))?;
        Ok(rt.served(order))
    }
}

fn validate_application(app: &Application) -> Result<(), SimError> {
    if app.id.trim().is_empty() || app.name.trim().is_empty() {
        return Err(SimError::InvalidInput(
            "an application needs an id and a name".into(),
        ));
    }
    let mut bundle_ids = std::collections::HashSet::new();
    for bundle in &app.bundles {
        if !bundle_ids.insert(bundle.id.as_str()) {
            return Err(SimError::InvalidInput(format!(
                "bundle id {:?} appears twice in application {:?}",
                bundle.id, app.id
            )));
        }
    }
    Ok(())
}
