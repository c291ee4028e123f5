//! The Director: `runtime(id)`, `applicationsForRuntime` (paged at every
//! level), `application(id)` and `setRuntimeLabel`, in the tenant of the
//! caller's SystemAuth (the `Tenant` header plays no part, as behind Compass's
//! gateway), with the Director's error shapes and list order.

use std::sync::Arc;

use async_graphql::{Context, EmptySubscription, Object, Result, Schema, SimpleObject, Union, ID};
use serde_json::Map;

use super::errors;
use super::paging::{page_slice, PageSlice};
use super::scalars::{Any, HttpHeaders, JsonSchema, Labels, PageCursor, QueryParams};
use crate::model;
use crate::order::ListOrder;
use crate::state::{Shared, SystemAuthIdentity};

pub type DirectorSchema = Schema<DirectorQuery, DirectorMutation, EmptySubscription>;

/// Who calls: the SystemAuth that the client certificate's CN names, with
/// its runtime and tenant; and the `Tenant` header as sent (logged, not used).
#[derive(Debug, Clone)]
pub struct DirectorCaller {
    pub identity: SystemAuthIdentity,
    pub tenant_header: Option<String>,
}

pub fn schema_without_data() -> DirectorSchema {
    Schema::build(DirectorQuery, DirectorMutation, EmptySubscription).finish()
}

fn caller<'a>(ctx: &'a Context<'_>) -> Result<(&'a Arc<Shared>, &'a SystemAuthIdentity)> {
    Ok((
        ctx.data::<Arc<Shared>>()?,
        &ctx.data::<DirectorCaller>()?.identity,
    ))
}

/// Whether runtime `id` exists in the caller's tenant (another tenant's
/// runtime does not exist for it).
fn in_tenant(shared: &Shared, caller: &SystemAuthIdentity, id: &str) -> bool {
    shared
        .with_runtime(id, |rt| rt.spec.tenant == caller.tenant)
        .unwrap_or(false)
}

fn filter_labels(labels: &Map<String, serde_json::Value>, key: Option<String>) -> Labels {
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

fn slice(total: usize, first: Option<i32>, after: Option<PageCursor>) -> Result<PageSlice> {
    page_slice(total, first, after.as_ref().map(|c| c.0.as_str())).map_err(|e| e.into_graphql())
}

#[derive(SimpleObject)]
pub struct PageInfo {
    start_cursor: PageCursor,
    end_cursor: PageCursor,
    has_next_page: bool,
}

impl From<&PageSlice> for PageInfo {
    fn from(page: &PageSlice) -> Self {
        PageInfo {
            start_cursor: PageCursor(page.start_cursor.clone()),
            end_cursor: PageCursor(page.end_cursor.clone()),
            has_next_page: page.has_next_page,
        }
    }
}

pub struct Runtime {
    id: String,
    name: String,
    description: Option<String>,
    labels: Map<String, serde_json::Value>,
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
    key: String,
    value: Any,
}

#[derive(SimpleObject)]
#[graphql(name = "ApplicationPage")]
pub struct ApplicationPage {
    data: Vec<Application>,
    page_info: PageInfo,
    total_count: i32,
}

#[derive(SimpleObject)]
#[graphql(name = "AppSystemAuth")]
pub struct AppSystemAuth {
    id: ID,
}

/// An application as served: its name as the list it is served in gives
/// it, its lists in the Director's order.
pub struct Application {
    app: Arc<model::Application>,
    name: String,
    order: ListOrder,
}

impl Application {
    /// As `application(id)` serves it: the name as registered.
    fn as_registered(app: Arc<model::Application>, order: ListOrder) -> Application {
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

#[derive(SimpleObject)]
#[graphql(name = "APIDefinition")]
pub struct ApiDefinition {
    id: ID,
    name: String,
    description: Option<String>,
    #[graphql(name = "targetURL")]
    target_url: String,
    /// Always null here; the Go agent selects it (and does not use it).
    group: Option<String>,
    version: Option<Version>,
}

/// Compass's `Version`; never set by the simulator, but selectable, as the
/// Go agent's query selects it.
#[derive(SimpleObject)]
pub struct Version {
    value: String,
    deprecated: Option<bool>,
    deprecated_since: Option<String>,
    for_removal: Option<bool>,
}

#[derive(SimpleObject)]
#[graphql(name = "APIDefinitionPage")]
pub struct ApiDefinitionPage {
    data: Vec<ApiDefinition>,
    page_info: PageInfo,
    total_count: i32,
}

#[derive(SimpleObject)]
#[graphql(name = "EventDefinition")]
pub struct EventDefinition {
    id: ID,
    name: String,
    description: Option<String>,
    group: Option<String>,
    version: Option<Version>,
}

#[derive(SimpleObject)]
#[graphql(name = "EventDefinitionPage")]
pub struct EventDefinitionPage {
    data: Vec<EventDefinition>,
    page_info: PageInfo,
    total_count: i32,
}

pub struct Auth(model::InstanceAuth);

#[Object(name = "Auth")]
impl Auth {
    async fn credential(&self) -> Option<CredentialData> {
        self.0.credential.as_ref().map(|c| match c {
            model::Credential::Basic(b) => CredentialData::Basic(BasicCredentialData {
                username: b.username.clone(),
                password: b.password.clone(),
            }),
            model::Credential::Oauth(o) => CredentialData::OAuth(OAuthCredentialData {
                client_id: ID(o.client_id.clone()),
                client_secret: o.client_secret.clone(),
                url: o.url.clone(),
            }),
        })
    }
    async fn additional_headers(&self) -> Option<HttpHeaders> {
        self.0.additional_headers.clone().map(HttpHeaders)
    }
    async fn additional_query_params(&self) -> Option<QueryParams> {
        self.0.additional_query_params.clone().map(QueryParams)
    }
    async fn request_auth(&self) -> Option<CredentialRequestAuth> {
        self.0.request_auth.as_ref().map(|r| CredentialRequestAuth {
            csrf: r.csrf.as_ref().map(|c| CsrfTokenCredentialRequestAuth {
                token_endpoint_url: c.token_endpoint_url.clone(),
            }),
        })
    }
}

#[derive(Union)]
#[graphql(name = "CredentialData")]
pub enum CredentialData {
    Basic(BasicCredentialData),
    OAuth(OAuthCredentialData),
}

#[derive(SimpleObject)]
#[graphql(name = "BasicCredentialData")]
pub struct BasicCredentialData {
    username: String,
    password: String,
}

#[derive(SimpleObject)]
#[graphql(name = "OAuthCredentialData")]
pub struct OAuthCredentialData {
    client_id: ID,
    client_secret: String,
    url: String,
}

#[derive(SimpleObject)]
#[graphql(name = "CredentialRequestAuth")]
pub struct CredentialRequestAuth {
    csrf: Option<CsrfTokenCredentialRequestAuth>,
}

#[derive(SimpleObject)]
#[graphql(name = "CSRFTokenCredentialRequestAuth")]
pub struct CsrfTokenCredentialRequestAuth {
    #[graphql(name = "tokenEndpointURL")]
    token_endpoint_url: String,
}

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
