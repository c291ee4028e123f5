//! The Director: `runtime(id)`, `applicationsForRuntime` (paged at every
//! level) and `setRuntimeLabel`, for the runtime whose client certificate and
//! `Tenant` header the request carries.

use std::sync::Arc;

use async_graphql::{
    Context, EmptySubscription, Error, Object, Result, Schema, SimpleObject, Union, ID,
};
use serde_json::Map;

use super::paging::{page_slice, PageSlice};
use super::scalars::{Any, HttpHeaders, JsonSchema, Labels, PageCursor, QueryParams};
use crate::ca::ClientIdentity;
use crate::model;
use crate::state::Shared;

pub type DirectorSchema = Schema<DirectorQuery, DirectorMutation, EmptySubscription>;

/// The verified client certificate and the `Tenant` header of a request.
#[derive(Debug, Clone)]
pub struct DirectorCaller {
    pub identity: ClientIdentity,
    pub tenant: Option<String>,
}

pub fn schema_without_data() -> DirectorSchema {
    Schema::build(DirectorQuery, DirectorMutation, EmptySubscription).finish()
}

/// Refuses a request that does not carry the tenant of the certificate's
/// runtime, or that asks about another runtime.
fn authorize<'a>(ctx: &'a Context<'_>, runtime_id: &str) -> Result<&'a Arc<Shared>> {
    let shared = ctx.data::<Arc<Shared>>()?;
    let caller = ctx.data::<DirectorCaller>()?;
    let own = &caller.identity.runtime_id;
    let tenant = shared
        .with_runtime(own, |rt| rt.spec.tenant.clone())
        .map_err(|_| {
            Error::new(format!(
                "runtime {own:?} (the client certificate's CN) does not exist"
            ))
        })?;
    match caller.tenant.as_deref().map(str::trim) {
        None | Some("") => {
            return Err(Error::new(
                "missing Tenant header: every Director request needs the runtime's tenant",
            ))
        }
        Some(given) if given != tenant => {
            return Err(Error::new(format!(
                "Tenant header {given:?} is not the tenant of runtime {own:?}"
            )))
        }
        Some(_) => {}
    }
    if runtime_id != own {
        return Err(Error::new(format!(
            "access denied: the client certificate belongs to runtime {own:?}, not to runtime {runtime_id:?}"
        )));
    }
    Ok(shared)
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
    page_slice(total, first, after.as_ref().map(|c| c.0.as_str())).map_err(Error::new)
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

pub struct Application(Arc<model::Application>);

#[Object(name = "Application")]
impl Application {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn provider_name(&self) -> Option<&str> {
        self.0.provider_name.as_deref()
    }
    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }
    async fn labels(&self, key: Option<String>) -> Option<Labels> {
        Some(filter_labels(&self.0.labels, key))
    }
    async fn auths(&self) -> Option<Vec<AppSystemAuth>> {
        Some(
            self.0
                .auths
                .iter()
                .map(|a| AppSystemAuth {
                    id: ID(a.id.clone()),
                })
                .collect(),
        )
    }
    /// One bundle by id, as the real Director serves it; the agent uses it
    /// to follow a bundle's API and event definition pages.
    async fn bundle(&self, id: ID) -> Option<Bundle> {
        self.0
            .bundles
            .iter()
            .position(|b| b.id == id.0)
            .map(|index| Bundle {
                app: self.0.clone(),
                index,
            })
    }
    async fn bundles(
        &self,
        #[graphql(default = 200)] first: Option<i32>,
        after: Option<PageCursor>,
    ) -> Result<Option<BundlePage>> {
        let page = slice(self.0.bundles.len(), first, after)?;
        Ok(Some(BundlePage {
            data: page
                .range
                .clone()
                .map(|index| Bundle {
                    app: self.0.clone(),
                    index,
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
        let apis = &self.get().api_definitions;
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
        let events = &self.get().event_definitions;
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
    async fn runtime(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Runtime>> {
        let shared = authorize(ctx, &id)?;
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
    /// follow an application's bundle pages.
    async fn application(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Application>> {
        let shared = ctx.data::<Arc<Shared>>()?;
        let caller = ctx.data::<DirectorCaller>()?;
        let own = caller.identity.runtime_id.clone();
        let shared = authorize(ctx, &own).map(|_| shared)?;
        let apps = shared
            .applications(&own)
            .map_err(|e| Error::new(e.to_string()))?;
        Ok(apps
            .iter()
            .find(|a| a.id == id.0)
            .map(|a| Application(a.clone())))
    }

    async fn applications_for_runtime(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "runtimeID")] runtime_id: ID,
        #[graphql(default = 200)] first: Option<i32>,
        after: Option<PageCursor>,
    ) -> Result<ApplicationPage> {
        let shared = authorize(ctx, &runtime_id)?;
        let apps = shared
            .applications(&runtime_id)
            .map_err(|e| Error::new(e.to_string()))?;
        let page = slice(apps.len(), first, after)?;
        Ok(ApplicationPage {
            data: apps[page.range.clone()]
                .iter()
                .map(|a| Application(a.clone()))
                .collect(),
            page_info: PageInfo::from(&page),
            total_count: page.total as i32,
        })
    }
}

pub struct DirectorMutation;

#[Object(name = "Mutation")]
impl DirectorMutation {
    async fn set_runtime_label(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "runtimeID")] runtime_id: ID,
        key: String,
        value: Any,
    ) -> Result<Label> {
        let shared = authorize(ctx, &runtime_id)?;
        if key.trim().is_empty() {
            return Err(Error::new("label key must not be empty"));
        }
        shared
            .set_runtime_label(&runtime_id, &key, value.0.clone())
            .map_err(|e| Error::new(e.to_string()))?;
        Ok(Label { key, value })
    }
}
