//! `Application` (applicationconnector.kyma-project.io/v1alpha1, cluster-scoped):
//! the resource through which Kyma exposes an external application's APIs and
//! events. The agent manages only Applications whose `spec.compassMetadata` is
//! set. Every field of the original CRD is modelled, with its JSON name, so that
//! the CRD generated from these types is a superset of the one Kyma installs.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(
    CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema,
)]
#[kube(
    group = "applicationconnector.kyma-project.io",
    version = "v1alpha1",
    kind = "Application",
    plural = "applications",
    singular = "application",
    shortname = "app",
    status = "ApplicationStatus",
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSpec {
    #[serde(default)]
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_installation: Option<bool>,
    #[serde(default)]
    pub skip_verify: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encode_url: Option<bool>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub services: Vec<Service>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compass_metadata: Option<CompassMetadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long_description: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompassMetadata {
    /// The Director application id.
    #[serde(default)]
    pub application_id: String,
    pub authentication: Authentication,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Authentication {
    /// The ids of the application's system auths.
    pub client_ids: Vec<String>,
}

/// One service per Director bundle.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    pub id: String,
    pub name: String,
    /// The original agent writes `""`; read back as `None`.
    #[serde(
        default,
        serialize_with = "none_as_empty",
        deserialize_with = "empty_as_none"
    )]
    pub identifier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    pub display_name: String,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long_description: Option<String>,
    /// Required by the original CRD; the original agent writes it even when empty.
    #[serde(default)]
    pub provider_display_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_create_parameter_schema: Option<String>,
    #[serde(default)]
    pub entries: Vec<Entry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

/// `API` or `Events`.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum EntryType {
    #[default]
    #[serde(rename = "API")]
    Api,
    Events,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    #[serde(rename = "type")]
    pub entry_type: EntryType,
    // These four are written even when empty, as the original agent writes
    // them: an Application one agent wrote is then the same object to the other.
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub target_url: String,
    #[serde(default)]
    pub central_gateway_url: String,
    /// Deprecated; the original agent writes `""`, read back as `None`.
    #[serde(
        default,
        serialize_with = "none_as_empty",
        deserialize_with = "empty_as_none"
    )]
    pub gateway_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub specification_url: Option<String>,
    #[serde(
        default,
        serialize_with = "credentials_or_empty",
        deserialize_with = "credentials_unless_empty"
    )]
    pub credentials: Option<Credentials>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub request_parameters_secret_name: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    /// `OAuth` or `Basic`.
    #[serde(rename = "type")]
    pub credential_type: String,
    pub secret_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub authentication_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csrf_info: Option<CsrfInfo>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct CsrfInfo {
    #[serde(rename = "tokenEndpointURL")]
    pub token_endpoint_url: String,
}

/// The original agent writes `credentials: {type: "", secretName: ""}` on entries
/// without credentials (a Go struct cannot be omitted); read that as "none" so
/// that taking over its Applications does not look like a change.
fn credentials_unless_empty<'de, D>(deserializer: D) -> Result<Option<Credentials>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let credentials = Option::<Credentials>::deserialize(deserializer)?;
    Ok(credentials.filter(|c| !(c.credential_type.is_empty() && c.secret_name.is_empty())))
}

/// No credentials are written as the original agent writes them, `{type: "",
/// secretName: ""}` (a Go struct cannot be left out), so that what one agent
/// wrote is the same object to the other.
fn credentials_or_empty<S>(
    credentials: &Option<Credentials>,
    serializer: S,
) -> Result<S::Ok, S::Error>
where
    S: serde::Serializer,
{
    match credentials {
        Some(credentials) => credentials.serialize(serializer),
        None => Credentials {
            credential_type: String::new(),
            secret_name: String::new(),
            authentication_url: String::new(),
            csrf_info: None,
        }
        .serialize(serializer),
    }
}

/// `None` is written as `""`, as the original agent writes an unset string.
fn none_as_empty<S>(value: &Option<String>, serializer: S) -> Result<S::Ok, S::Error>
where
    S: serde::Serializer,
{
    serializer.serialize_str(value.as_deref().unwrap_or_default())
}

/// `""` (or null) is read as `None`: the round trip of [`none_as_empty`].
fn empty_as_none<'de, D>(deserializer: D) -> Result<Option<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let value = Option::<String>::deserialize(deserializer)?;
    Ok(value.filter(|text| !text.is_empty()))
}

/// Written by Kyma's application operator, never by the agent.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation_status: Option<InstallationStatus>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct InstallationStatus {
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl Application {
    /// Whether the agent manages this Application (it carries Compass metadata).
    pub fn is_managed_by_compass(&self) -> bool {
        self.spec.compass_metadata.is_some()
    }
}
