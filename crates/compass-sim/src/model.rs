//! The data compass-sim serves, as public serde types.
//!
//! The JSON shape follows the Director's (camelCase, `targetURL`,
//! `tokenEndpointURL`), and is the same in the library API, the admin API and
//! scenario files.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// `{name: [values]}`, the Director's `HttpHeaders` and `QueryParams` scalars.
pub type MultiMap = BTreeMap<String, Vec<String>>;

/// An application as the Director returns it for a runtime.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Application {
    /// May be left out where the admin API takes the id from the path.
    #[serde(default)]
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The application's system number: `applicationsForRuntime` serves its
    /// name as `<name>-<systemNumber>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_number: Option<String>,
    #[serde(default)]
    pub labels: Map<String, Value>,
    #[serde(default)]
    pub auths: Vec<AppAuth>,
    #[serde(default)]
    pub bundles: Vec<Bundle>,
}

/// One of the application's system auths; the agent only reads its id.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppAuth {
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Bundle {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Stringified JSON (the Director's `JSONSchema` scalar). A JSON object or
    /// array given here is stringified on input.
    #[serde(
        default,
        deserialize_with = "string_or_json",
        skip_serializing_if = "Option::is_none"
    )]
    pub instance_auth_request_input_schema: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_instance_auth: Option<InstanceAuth>,
    #[serde(default)]
    pub api_definitions: Vec<ApiDefinition>,
    #[serde(default)]
    pub event_definitions: Vec<EventDefinition>,
}

/// A bundle's `defaultInstanceAuth` (the Director's `Auth` type, the parts the
/// agent reads).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstanceAuth {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<Credential>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_headers: Option<MultiMap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_query_params: Option<MultiMap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_auth: Option<RequestAuth>,
}

/// `{"basic": {...}}` or `{"oauth": {...}}`; served as the `CredentialData` union.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Credential {
    Basic(BasicCredential),
    Oauth(OAuthCredential),
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BasicCredential {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OAuthCredential {
    pub client_id: String,
    pub client_secret: String,
    /// The token endpoint.
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestAuth {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csrf: Option<CsrfAuth>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsrfAuth {
    #[serde(rename = "tokenEndpointURL", alias = "tokenEndpointUrl")]
    pub token_endpoint_url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiDefinition {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(rename = "targetURL", alias = "targetUrl")]
    pub target_url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventDefinition {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The subject values the Connector hands out, except the common name (which is
/// the id of the SystemAuth the one-time token belongs to).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubjectTemplate {
    pub organization: String,
    pub organizational_unit: String,
    pub locality: String,
    pub province: String,
    pub country: String,
}

impl Default for SubjectTemplate {
    fn default() -> Self {
        Self {
            organization: "Org".into(),
            organizational_unit: "OrgUnit".into(),
            locality: "Locality".into(),
            province: "State".into(),
            country: "PL".into(),
        }
    }
}

/// What the admin API and scenario files take to create a runtime.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeSpec {
    pub id: String,
    pub tenant: String,
    /// Defaults to the id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub labels: Map<String, Value>,
    /// Defaults to `O=Org,OU=OrgUnit,L=Locality,ST=State,C=PL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<SubjectTemplate>,
    /// What the Connector asks for in `keyAlgorithm`; default `rsa2048`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_algorithm: Option<String>,
}

impl RuntimeSpec {
    pub fn new(id: impl Into<String>, tenant: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            tenant: tenant.into(),
            ..Self::default()
        }
    }
}

fn string_or_json<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => Some(other.to_string()),
    })
}

/// Builds `count` applications with `bundles` bundles each, every bundle with
/// `apis` API definitions and `events` event definitions, and alternating Basic
/// and OAuth default instance auths. Names and ids are deterministic.
pub fn generate_applications(
    count: usize,
    bundles: usize,
    apis: usize,
    events: usize,
) -> Vec<Application> {
    (0..count)
        .map(|a| Application {
            id: format!("app-{a:05}"),
            name: format!("application-{a:05}"),
            provider_name: Some("compass-sim".into()),
            description: Some(format!("Generated application {a}")),
            system_number: None,
            labels: Map::new(),
            auths: vec![AppAuth {
                id: format!("app-{a:05}-auth"),
            }],
            bundles: (0..bundles)
                .map(|b| generate_bundle(&format!("app-{a:05}-bundle-{b:04}"), b, apis, events))
                .collect(),
        })
        .collect()
}

/// One bundle with `apis` API definitions and `events` event definitions.
pub fn generate_bundle(id: &str, index: usize, apis: usize, events: usize) -> Bundle {
    let credential = if index % 2 == 0 {
        Credential::Basic(BasicCredential {
            username: format!("user-{index}"),
            password: format!("password-{index}"),
        })
    } else {
        Credential::Oauth(OAuthCredential {
            client_id: format!("client-{index}"),
            client_secret: format!("secret-{index}"),
            url: "https://oauth.example.com/token".into(),
        })
    };
    Bundle {
        id: id.to_string(),
        name: format!("Bundle {index}"),
        description: Some(format!("Generated bundle {index}")),
        instance_auth_request_input_schema: None,
        default_instance_auth: Some(InstanceAuth {
            credential: Some(credential),
            additional_headers: Some(MultiMap::from([(
                "X-Generated".to_string(),
                vec!["yes".to_string()],
            )])),
            additional_query_params: None,
            request_auth: None,
        }),
        api_definitions: (0..apis)
            .map(|i| ApiDefinition {
                id: format!("{id}-api-{i:04}"),
                name: format!("API {i}"),
                description: None,
                target_url: format!("https://api.example.com/{id}/{i}"),
            })
            .collect(),
        event_definitions: (0..events)
            .map(|i| EventDefinition {
                id: format!("{id}-event-{i:04}"),
                name: format!("Events {i}"),
                description: None,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_json_uses_the_directors_names() {
        let json = serde_json::json!({
            "id": "a1", "name": "app", "providerName": "p", "description": "d",
            "labels": {"scenarios": ["DEFAULT"]},
            "auths": [{"id": "x"}],
            "bundles": [{
                "id": "b1", "name": "bundle",
                "instanceAuthRequestInputSchema": {"type": "object"},
                "defaultInstanceAuth": {
                    "credential": {"oauth": {"clientId": "c", "clientSecret": "s", "url": "https://t"}},
                    "additionalHeaders": {"h": ["v"]},
                    "additionalQueryParams": {"q": ["1", "2"]},
                    "requestAuth": {"csrf": {"tokenEndpointURL": "https://csrf"}}
                },
                "apiDefinitions": [{"id": "api", "name": "n", "targetURL": "https://x"}],
                "eventDefinitions": [{"id": "ev", "name": "e"}]
            }]
        });
        let app: Application = serde_json::from_value(json).unwrap();
        let bundle = &app.bundles[0];
        assert_eq!(
            bundle.instance_auth_request_input_schema.as_deref(),
            Some(r#"{"type":"object"}"#)
        );
        let auth = bundle.default_instance_auth.as_ref().unwrap();
        assert!(matches!(auth.credential, Some(Credential::Oauth(_))));
        assert_eq!(
            auth.request_auth
                .as_ref()
                .unwrap()
                .csrf
                .as_ref()
                .unwrap()
                .token_endpoint_url,
            "https://csrf"
        );
        assert_eq!(bundle.api_definitions[0].target_url, "https://x");
        let back = serde_json::to_value(&app).unwrap();
        assert_eq!(
            back["bundles"][0]["apiDefinitions"][0]["targetURL"],
            "https://x"
        );
    }

    #[test]
    fn unknown_fields_are_refused_so_typos_show() {
        let err = serde_json::from_str::<Application>(r#"{"id":"a","name":"n","bundels":[]}"#)
            .unwrap_err();
        assert!(err.to_string().contains("bundels"), "{err}");
    }

    #[test]
    fn generated_applications_have_the_asked_shape() {
        let apps = generate_applications(3, 2, 4, 1);
        assert_eq!(apps.len(), 3);
        assert!(apps.iter().all(|a| a.bundles.len() == 2));
        assert!(apps[0].bundles.iter().all(|b| b.api_definitions.len() == 4));
        assert_eq!(apps[2].bundles[1].event_definitions.len(), 1);
    }
}
