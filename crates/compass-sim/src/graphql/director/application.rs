//! An application and its bundles as served: names as the list they come in
//! gives them, every list in the Director's order and paged.

use std::sync::Arc;

use async_graphql::{Object, Result, SimpleObject, ID};

use super::credentials::Auth;
use super::definitions::{ApiDefinition, ApiDefinitionPage, EventDefinition, EventDefinitionPage};
use super::page::{slice, PageInfo};
use super::runtime::filter_labels;
use crate::graphql::scalars::{JsonSchema, Labels, PageCursor};
use crate::model;
use crate::order::ListOrder;

#[derive(SimpleObject)]
#[graphql(name = "ApplicationPage")]
pub struct ApplicationPage {
    pub(super) data: Vec<Application>,
    pub(super) page_info: PageInfo,
    pub(super) total_count: i32,
}

#[derive(SimpleObject)]
#[graphql(name = "AppSystemAuth")]
pub struct AppSystemAuth {
    pub(super) id: ID,
}

/// An application as served: its name as the list it is served in gives
/// it, its lists in the Director's order.
pub struct Application {
    pub(super) app: Arc<model::Application>,
    pub(super) name: String,
    pub(super) order: ListOrder,
}
impl Application {
    /// As `application(id)` serves it: the name as registered.
    pub(super) fn as_registered(app: Arc<model::Application>, order: ListOrder) -> Application {
        Application {
            name: app.name.clone(),
            app,
            order,
        }
    }
}

#[Object(name = "Application")]
impl Application {
    async fn id(&self) -> ID {
        ID(self.app.id.clone())
    }
    async fn name(&self) -> &str {
        &self.name
    }
    async fn system_number(&self) -> Option<&str> {
        self.app.system_number.as_deref()
    }
    async fn provider_name(&self) -> Option<&str> {
        self.app.provider_name.as_deref()
    }
    async fn description(&self) -> Option<&str> {
        self.app.description.as_deref()
    }
    async fn labels(&self, key: Option<String>) -> Option<Labels> {
        Some(filter_labels(&self.app.labels, key))
    }
    async fn auths(&self) -> Option<Vec<AppSystemAuth>> {
        Some(
            self.order
                .arranged(&self.app.auths, |a| a.id.as_str())
                .into_iter()
                .map(|a| AppSystemAuth {
                    id: ID(a.id.clone()),
                })
                .collect(),
        )
    }
    /// One bundle by id, as the real Director serves it; the agent uses it
    /// to follow a bundle's API and event definition pages.
    async fn bundle(&self, id: ID) -> Option<Bundle> {
        self.app
            .bundles
            .iter()
            .position(|b| b.id == id.0)
            .map(|index| Bundle {
                app: self.app.clone(),
                index,
                order: self.order,
            })
    }
    async fn bundles(
        &self,
        #[graphql(default = 200)] first: Option<i32>,
        after: Option<PageCursor>,
    ) -> Result<Option<BundlePage>> {
        let served = self.order.arrange(&self.app.bundles, |b| b.id.as_str());
        let page = slice(served.len(), first, after)?;
        Ok(Some(BundlePage {
            data: served[page.range.clone()]
                .iter()
                .map(|&index| Bundle {
                    app: self.app.clone(),
                    index,
                    order: self.order,
                })
                .collect(),
            page_info: PageInfo::from(&page),
            total_count: page.total as i32,
        }))
    }
}

#[derive(SimpleObject)]
#[graphql(name = "BundlePage")]
pub struct BundlePage {
    data: Vec<Bundle>,
    page_info: PageInfo,
    total_count: i32,
}

pub struct Bundle {
    app: Arc<model::Application>,
    index: usize,
    order: ListOrder,
}

impl Bundle {
    fn get(&self) -> &model::Bundle {
        &self.app.bundles[self.index]
    }
}

#[Object(name = "Bundle")]
impl Bundle {
    async fn id(&self) -> ID {
        ID(self.get().id.clone())
    }
    async fn name(&self) -> &str {
        &self.get().name
    }
    async fn description(&self) -> Option<&str> {
        self.get().description.as_deref()
    }
    async fn instance_auth_request_input_schema(&self) -> Option<JsonSchema> {
        self.get()
            .instance_auth_request_input_schema
            .clone()
            .map(JsonSchema)
    }
    async fn default_instance_auth(&self) -> Option<Auth> {
        self.get().default_instance_auth.clone().map(Auth)
    }
    async fn api_definitions(
        &self,
        #[graphql(default = 200)] first: Option<i32>,
        after: Option<PageCursor>,
    ) -> Result<Option<ApiDefinitionPage>> {
        let apis = self
            .order
            .arranged(&self.get().api_definitions, |a| a.id.as_str());
        let page = slice(apis.len(), first, after)?;
        Ok(Some(ApiDefinitionPage {
            data: apis[page.range.clone()]
                .iter()
                .map(|a| ApiDefinition {
                    id: ID(a.id.clone()),
                    name: a.name.clone(),
                    description: a.description.clone(),
                    target_url: a.target_url.clone(),
                    group: None,
                    version: None,
                })
                .collect(),
            page_info: PageInfo::from(&page),
            total_count: page.total as i32,
        }))
    }
    async fn event_definitions(
        &self,
        #[graphql(default = 200)] first: Option<i32>,
        after: Option<PageCursor>,
    ) -> Result<Option<EventDefinitionPage>> {
        let events = self
            .order
            .arranged(&self.get().event_definitions, |e| e.id.as_str());
        let page = slice(events.len(), first, after)?;
        Ok(Some(EventDefinitionPage {
            data: events[page.range.clone()]
                .iter()
                .map(|e| EventDefinition {
                    id: ID(e.id.clone()),
                    name: e.name.clone(),
                    description: e.description.clone(),
                    group: None,
                    version: None,
                })
                .collect(),
            page_info: PageInfo::from(&page),
            total_count: page.total as i32,
        }))
    }
}
