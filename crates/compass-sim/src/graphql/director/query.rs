//! The queries: `runtime`, `application` and `applicationsForRuntime`.

use async_graphql::{Context, Object, Result, ID};

use super::application::{Application, ApplicationPage};
use super::page::{slice, PageInfo};
use super::runtime::Runtime;
use super::{caller, in_tenant};
use crate::graphql::errors;
use crate::graphql::scalars::PageCursor;

pub struct DirectorQuery;

#[Object(name = "Query")]
impl DirectorQuery {
    /// A runtime of the caller's tenant; `null` for any other id, without
    /// an error.
    async fn runtime(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Runtime>> {
        let (shared, caller) = caller(ctx)?;
        if !in_tenant(shared, caller, &id) {
            return Ok(None);
        }
        Ok(shared
            .with_runtime(&id, |rt| Runtime {
                id: rt.spec.id.clone(),
                name: rt.name(),
                description: rt.spec.description.clone(),
                labels: rt.spec.labels.clone(),
            })
            .ok())
    }

    /// One application by id, visible to a runtime only when it is assigned
    /// to it (as the Director's scenario check does); the agent uses it to
    /// follow an application's bundle pages. Its name is the registered one.
    async fn application(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Application>> {
        let (shared, caller) = caller(ctx)?;
        let order = shared.settings().list_order;
        let apps = shared
            .applications(&caller.runtime_id)
            .map_err(|e| errors::internal(e.to_string()))?;
        Ok(apps
            .iter()
            .find(|a| a.id == id.0)
            .map(|a| Application::as_registered(a.clone(), order)))
    }

    /// The applications of a runtime of the caller's tenant, in the
    /// Director's order, their names as the Director serves them to it.
    async fn applications_for_runtime(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "runtimeID")] runtime_id: ID,
        #[graphql(default = 200)] first: Option<i32>,
        after: Option<PageCursor>,
    ) -> Result<ApplicationPage> {
        let (shared, caller) = caller(ctx)?;
        if !in_tenant(shared, caller, &runtime_id) {
            return Err(errors::invalid_data("runtime does not exist"));
        }
        let settings = shared.settings();
        let apps = shared
            .served_applications(&runtime_id)
            .map_err(|_| errors::invalid_data("runtime does not exist"))?;
        let page = slice(apps.len(), first, after)?;
        let labels = shared
            .runtime_labels(&runtime_id)
            .map_err(|_| errors::invalid_data("runtime does not exist"))?;
        Ok(ApplicationPage {
            data: apps[page.range.clone()]
                .iter()
                .map(|a| Application {
                    name: settings.application_names.served(
                        &labels,
                        &a.name,
                        a.system_number.as_deref(),
                    ),
                    app: a.clone(),
                    order: settings.list_order,
                })
                .collect(),
            page_info: PageInfo::from(&page),
            total_count: page.total as i32,
        })
    }
}
