//! The Director's applications, as the agent reads them (the subset of the
//! Director schema in its queries), with every page already followed.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Application {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub provider_name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub labels: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub auths: Vec<SystemAuth>,
    /// All bundles, every page followed.
    #[serde(skip)]
    pub bundles: Vec<Bundle>,
}

#[derive(Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SystemAuth {
    pub id: String,
}

#[derive(Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Bundle {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// The `JSONSchema` scalar: a JSON document as a string.
    #[serde(default)]
    pub instance_auth_request_input_schema: Option<String>,
    #[serde(default)]
    pub default_instance_auth: Option<Auth>,
    /// All API definitions, every page followed.
    #[serde(skip)]
    pub api_definitions: Vec<ApiDefinition>,
    /// All event definitions, every page followed.
    #[serde(skip)]
    pub event_definitions: Vec<EventDefinition>,
}

/// `HttpHeaders` and `QueryParams`: a name and its values.
pub type Parameters = BTreeMap<String, Vec<String>>;

#[derive(Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Auth {
    #[serde(default)]
    pub credential: Option<Credential>,
    #[serde(default)]
    pub additional_headers: Option<Parameters>,
    #[serde(default)]
    pub additional_query_params: Option<Parameters>,
    #[serde(default)]
    pub request_auth: Option<RequestAuth>,
}

/// The `CredentialData` union, told apart by `__typename`.
#[derive(Deserialize, Clone, PartialEq, Eq)]
#[serde(tag = "__typename")]
pub enum Credential {
    #[serde(rename = "BasicCredentialData")]
    Basic { username: String, password: String },
    #[serde(rename = "OAuthCredentialData", rename_all = "camelCase")]
    OAuth {
        client_id: String,
        client_secret: String,
        url: String,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Basic { .. } => f.write_str("Basic(<redacted>)"),
            Credential::OAuth { url, .. } => write!(f, "OAuth(url: {url:?}, <redacted>)"),
        }
    }
}

#[derive(Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestAuth {
    #[serde(default)]
    pub csrf: Option<CsrfRequestAuth>,
}

#[derive(Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CsrfRequestAuth {
    #[serde(rename = "tokenEndpointURL")]
    pub token_endpoint_url: String,
}

#[derive(Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ApiDefinition {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(rename = "targetURL", default)]
    pub target_url: String,
}

#[derive(Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct EventDefinition {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
}

fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}
