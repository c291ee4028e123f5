//! A bundle's API and event definitions as served.

use async_graphql::{SimpleObject, ID};

use super::page::PageInfo;

#[derive(SimpleObject)]
#[graphql(name = "APIDefinition")]
pub struct ApiDefinition {
    pub(super) id: ID,
    pub(super) name: String,
    pub(super) description: Option<String>,
    #[graphql(name = "targetURL")]
    pub(super) target_url: String,
    /// Always null here; the Go agent selects it (and does not use it).
    pub(super) group: Option<String>,
    pub(super) version: Option<Version>,
}

/// Compass's `Version`; never set by the simulator, but selectable, as the
/// Go agent's query selects it.
#[derive(SimpleObject)]
pub struct Version {
    pub(super) value: String,
    pub(super) deprecated: Option<bool>,
    pub(super) deprecated_since: Option<String>,
    pub(super) for_removal: Option<bool>,
}

#[derive(SimpleObject)]
#[graphql(name = "APIDefinitionPage")]
pub struct ApiDefinitionPage {
    pub(super) data: Vec<ApiDefinition>,
    pub(super) page_info: PageInfo,
    pub(super) total_count: i32,
}

#[derive(SimpleObject)]
#[graphql(name = "EventDefinition")]
pub struct EventDefinition {
    pub(super) id: ID,
    pub(super) name: String,
    pub(super) description: Option<String>,
    pub(super) group: Option<String>,
    pub(super) version: Option<Version>,
}

#[derive(SimpleObject)]
#[graphql(name = "EventDefinitionPage")]
pub struct EventDefinitionPage {
    pub(super) data: Vec<EventDefinition>,
    pub(super) page_info: PageInfo,
    pub(super) total_count: i32,
}
