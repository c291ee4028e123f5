//! A Director application becomes an `Application` resource and the Secrets
//! that hold its bundles' credentials and request parameters.

use std::collections::BTreeMap;

use crate::compass::model::{self, Credential, Parameters};
use crate::crd::application::{
    Application, ApplicationSpec, ApplicationStatus, Authentication, CompassMetadata, Credentials,
    CsrfInfo, Entry, EntryType, InstallationStatus, Service,
};
use crate::crd::labels::{CONNECTED_APP_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE};

use super::names;
use super::wanted::{SecretData, WantedApplication, WantedSecret};

pub const DEFAULT_DESCRIPTION: &str = "Description not provided";

/// The settings the conversion depends on.
#[derive(Clone, Debug)]
pub struct ConversionSettings {
    /// `APP_CENTRAL_GATEWAY_SERVICE_URL`.
    pub central_gateway_url: String,
    /// `APP_SKIP_APPS_TLS_VERIFY`.
    pub skip_apps_tls_verify: bool,
    /// Whether Application names are the Director's names normalized (see
    /// [`names::normalize_application_name`]) or the Director's names as
    /// they are: decided per sync by the runtime's `isNormalized` label.
    pub normalize_application_names: bool,
}

impl ConversionSettings {
    /// The Application's name for a Director application's name.
    pub fn application_name(&self, director_name: &str) -> String {
        if self.normalize_application_names {
            names::normalize_application_name(director_name)
        } else {
            director_name.to_string()
        }
    }
}

/// Converts one Director application. Pure: the same input always gives the
/// same output, which is what lets an unchanged sync write nothing.
pub fn to_wanted_application(
    app: &model::Application,
    settings: &ConversionSettings,
) -> WantedApplication {
    let name = settings.application_name(&app.name);
    let mut secrets = Vec::new();
    let services = app
        .bundles
        .iter()
        .map(|bundle| to_service(&name, bundle, settings, &mut secrets))
        .collect();
    let spec = ApplicationSpec {
        description: description_or_default(app.description.as_deref()),
        skip_verify: settings.skip_apps_tls_verify,
        labels: Some(BTreeMap::from([(
            CONNECTED_APP_LABEL.to_string(),
            name.clone(),
        )])),
        services,
        compass_metadata: Some(CompassMetadata {
            application_id: app.id.clone(),
            authentication: Authentication {
                client_ids: app.auths.iter().map(|auth| auth.id.clone()).collect(),
            },
        }),
        ..ApplicationSpec::default()
    };
    let mut application = Application::new(&name, spec);
    // What the original agent's create writes besides (Go writes an unset
    // string as "" and an unset struct whole); its updates never touch these.
    application.spec.display_name = Some(String::new());
    application.spec.provider_display_name = Some(String::new());
    application.spec.long_description = Some(String::new());
    application.spec.encode_url = Some(false);
    application.status = Some(ApplicationStatus {
        installation_status: Some(InstallationStatus {
            status: String::new(),
            description: Some(String::new()),
        }),
    });
    application.metadata.labels = Some(BTreeMap::from([(
        MANAGED_BY_LABEL.to_string(),
        MANAGED_BY_VALUE.to_string(),
    )]));
    WantedApplication {
        application,
        secrets,
    }
}

fn to_service(
    app_name: &str,
    bundle: &model::Bundle,
    settings: &ConversionSettings,
    secrets: &mut Vec<WantedSecret>,
) -> Service {
    let auth = bundle.default_instance_auth.as_ref();
    let credentials = auth.and_then(|auth| credentials_of(app_name, bundle, auth, secrets));
    let parameters_secret =
        auth.and_then(|auth| request_parameters_of(app_name, bundle, auth, secrets));
    let api_entries = bundle.api_definitions.iter().map(|api| Entry {
        entry_type: EntryType::Api,
        id: api.id.clone(),
        name: api.name.clone(),
        target_url: api.target_url.clone(),
        central_gateway_url: names::central_gateway_url(
            &settings.central_gateway_url,
            app_name,
            &bundle.name,
            &api.name,
        ),
        credentials: credentials.clone(),
        request_parameters_secret_name: parameters_secret.clone().unwrap_or_default(),
        ..Entry::default()
    });
    let event_entries = bundle.event_definitions.iter().map(|event| Entry {
        entry_type: EntryType::Events,
        id: event.id.clone(),
        name: event.name.clone(),
        ..Entry::default()
    });
    Service {
        id: bundle.id.clone(),
        name: names::service_name(&bundle.name, &bundle.id),
        display_name: bundle.name.clone(),
        description: description_or_default(bundle.description.as_deref()),
        // The original agent leaves it empty (the application's provider is
        // not the bundle's); the same here, so a swap rewrites nothing.
        provider_display_name: String::new(),
        auth_create_parameter_schema: bundle.instance_auth_request_input_schema.clone(),
        entries: api_entries.chain(event_entries).collect(),
        ..Service::default()
    }
}

fn credentials_of(
    app_name: &str,
    bundle: &model::Bundle,
    auth: &model::Auth,
    secrets: &mut Vec<WantedSecret>,
) -> Option<Credentials> {
    let credential = auth.credential.as_ref()?;
    let secret_name = names::credentials_secret_name(app_name, &bundle.id);
    let (credential_type, authentication_url, data) = match credential {
        Credential::Basic { username, password } => (
            "Basic",
            String::new(),
            SecretData::new(vec![
                ("username", username.clone().into_bytes()),
                ("password", password.clone().into_bytes()),
            ]),
        ),
        Credential::OAuth {
            client_id,
            client_secret,
            url,
        } => (
            "OAuth",
            url.clone(),
            SecretData::new(vec![
                ("clientId", client_id.clone().into_bytes()),
                ("clientSecret", client_secret.clone().into_bytes()),
            ]),
        ),
    };
    secrets.push(WantedSecret::new(&secret_name, app_name, &bundle.id, data));
    let csrf_info = auth
        .request_auth
        .as_ref()
        .and_then(|request_auth| request_auth.csrf.as_ref())
        .map(|csrf| CsrfInfo {
            token_endpoint_url: csrf.token_endpoint_url.clone(),
        });
    Some(Credentials {
        credential_type: credential_type.to_string(),
        secret_name,
        authentication_url,
        csrf_info,
    })
}

fn request_parameters_of(
    app_name: &str,
    bundle: &model::Bundle,
    auth: &model::Auth,
    secrets: &mut Vec<WantedSecret>,
) -> Option<String> {
    let is_empty =
        |parameters: &Option<Parameters>| parameters.as_ref().is_none_or(|p| p.is_empty());
    if is_empty(&auth.additional_headers) && is_empty(&auth.additional_query_params) {
        return None;
    }
    // As the original agent: each map the Director sent (not null) is
    // written, an empty one as `{}`, once the other one has values.
    let mut entries = Vec::new();
    for (key, parameters) in [
        ("headers", &auth.additional_headers),
        ("queryParameters", &auth.additional_query_params),
    ] {
        if let Some(parameters) = parameters {
            entries.push((key, go_json(parameters)));
        }
    }
    let data = SecretData::new(entries);
    let name = names::request_parameters_secret_name(app_name, &bundle.id);
    secrets.push(WantedSecret::new(&name, app_name, &bundle.id, data));
    Some(name)
}

/// JSON as Go's `encoding/json` writes it: map keys in order (a `BTreeMap`
/// here), and `<`, `>`, `&`, U+2028 and U+2029 escaped as `\u003c` and so
/// on. serde_json writes those characters as they are, and they can only
/// stand inside strings, so replacing them afterwards is exact.
fn go_json(parameters: &Parameters) -> Vec<u8> {
    // A map of strings to string lists always serializes.
    let json = serde_json::to_string(parameters).unwrap_or_default();
    let mut escaped = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => escaped.push_str("\\u003c"),
            '>' => escaped.push_str("\\u003e"),
            '&' => escaped.push_str("\\u0026"),
            '\u{2028}' => escaped.push_str("\\u2028"),
            '\u{2029}' => escaped.push_str("\\u2029"),
            c => escaped.push(c),
        }
    }
    escaped.into_bytes()
}

fn description_or_default(description: Option<&str>) -> String {
    match description {
        Some(text) if !text.is_empty() => text.to_string(),
        _ => DEFAULT_DESCRIPTION.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compass::model::*;

    fn settings() -> ConversionSettings {
        ConversionSettings {
            central_gateway_url:
                "http://central-application-gateway.kyma-system.svc.cluster.local:8082".into(),
            skip_apps_tls_verify: false,
            normalize_application_names: false,
        }
    }

    fn bundle(id: &str, name: &str, auth: Option<Auth>) -> Bundle {
        Bundle {
            id: id.into(),
            name: name.into(),
            description: None,
            instance_auth_request_input_schema: None,
            default_instance_auth: auth,
            api_definitions: vec![ApiDefinition {
                id: format!("{id}-api"),
                name: "Orders API".into(),
                description: None,
                target_url: "https://shop.example.com/orders".into(),
            }],
            event_definitions: vec![EventDefinition {
                id: format!("{id}-event"),
                name: "order.created".into(),
                description: None,
            }],
        }
    }

    fn application(bundles: Vec<Bundle>) -> model::Application {
        model::Application {
            id: "app-id".into(),
            name: "shop".into(),
            provider_name: Some("ACME".into()),
            description: None,
            labels: None,
            auths: vec![
                SystemAuth {
                    id: "auth-1".into(),
                },
                SystemAuth {
                    id: "auth-2".into(),
                },
            ],
            bundles,
        }
    }

    fn oauth() -> Auth {
        Auth {
            credential: Some(Credential::OAuth {
                client_id: "client".into(),
                client_secret: "secret".into(),
                url: "https://oauth.example.com/token".into(),
            }),
            additional_headers: Some(BTreeMap::from([("X-Tenant".into(), vec!["t1".into()])])),
            additional_query_params: Some(BTreeMap::new()),
            request_auth: Some(RequestAuth {
                csrf: Some(CsrfRequestAuth {
                    token_endpoint_url: "https://shop.example.com/csrf".into(),
                }),
            }),
        }
    }

    #[test]
    fn the_application_carries_name_label_description_default_and_compass_metadata() {
        let wanted = to_wanted_application(&application(vec![]), &settings());
        let app = &wanted.application;
        assert_eq!(app.metadata.name.as_deref(), Some("shop"));
        assert_eq!(
            app.metadata.labels.as_ref().unwrap()[MANAGED_BY_LABEL],
            "compass-runtime-agent"
        );
        assert_eq!(app.spec.description, "Description not provided");
        assert_eq!(app.spec.labels.as_ref().unwrap()["connected-app"], "shop");
        assert!(!app.spec.skip_verify);
        let metadata = app.spec.compass_metadata.as_ref().unwrap();
        assert_eq!(metadata.application_id, "app-id");
        assert_eq!(metadata.authentication.client_ids, ["auth-1", "auth-2"]);
        assert!(app.spec.services.is_empty());
        assert!(wanted.secrets.is_empty());
    }

    #[test]
    fn skip_verify_follows_the_setting() {
        let settings = ConversionSettings {
            skip_apps_tls_verify: true,
            ..settings()
        };
        assert!(
            to_wanted_application(&application(vec![]), &settings)
                .application
                .spec
                .skip_verify
        );
    }

    #[test]
    fn a_bundle_becomes_a_service_with_api_and_event_entries() {
        let wanted = to_wanted_application(
            &application(vec![bundle("b-1", "Orders Bundle", None)]),
            &settings(),
        );
        let service = &wanted.application.spec.services[0];
        assert_eq!(service.id, "b-1");
        assert_eq!(service.name, names::service_name("Orders Bundle", "b-1"));
        assert!(service.name.starts_with("orders-bundle-"));
        assert_eq!(service.display_name, "Orders Bundle");
        assert_eq!(service.description, "Description not provided");
        assert_eq!(
            service.provider_display_name, "",
            "the Go agent leaves it empty"
        );
        let api = &service.entries[0];
        assert_eq!(api.entry_type, EntryType::Api);
        assert_eq!(
            (api.id.as_str(), api.name.as_str()),
            ("b-1-api", "Orders API")
        );
        assert_eq!(api.target_url, "https://shop.example.com/orders");
        assert_eq!(
            api.central_gateway_url,
            "http://central-application-gateway.kyma-system.svc.cluster.local:8082/shop/orders-bundle/orders-api"
        );
        assert_eq!(api.credentials, None);
        assert_eq!(api.request_parameters_secret_name, "");
        let event = &service.entries[1];
        assert_eq!(event.entry_type, EntryType::Events);
        assert_eq!(
            (event.id.as_str(), event.name.as_str()),
            ("b-1-event", "order.created")
        );
        assert_eq!(event.target_url, "");
    }

    #[test]
    fn oauth_credentials_with_csrf_and_headers_make_two_secrets() {
        let wanted = to_wanted_application(
            &application(vec![bundle("b-1", "Orders", Some(oauth()))]),
            &settings(),
        );
        let api = &wanted.application.spec.services[0].entries[0];
        let credentials = api.credentials.as_ref().unwrap();
        assert_eq!(credentials.credential_type, "OAuth");
        assert_eq!(credentials.secret_name, "shop-b-1");
        assert_eq!(
            credentials.authentication_url,
            "https://oauth.example.com/token"
        );
        assert_eq!(
            credentials.csrf_info.as_ref().unwrap().token_endpoint_url,
            "https://shop.example.com/csrf"
        );
        assert_eq!(api.request_parameters_secret_name, "params-shop-b-1");
        assert!(
            wanted.application.spec.services[0].entries[1]
                .credentials
                .is_none(),
            "events have no credentials"
        );

        let [credentials_secret, parameters_secret] = &wanted.secrets[..] else {
            panic!("expected two secrets, found {:?}", wanted.secrets)
        };
        assert_eq!(credentials_secret.name(), "shop-b-1");
        assert_eq!(
            credentials_secret.data().get("clientId").unwrap(),
            b"client"
        );
        assert_eq!(
            credentials_secret.data().get("clientSecret").unwrap(),
            b"secret"
        );
        assert_eq!(credentials_secret.labels()["app"], "shop");
        assert_eq!(credentials_secret.labels()["bundleId"], "b-1");
        assert_eq!(parameters_secret.name(), "params-shop-b-1");
        assert_eq!(
            parameters_secret.data().get("headers").unwrap(),
            br#"{"X-Tenant":["t1"]}"#
        );
        assert_eq!(
            parameters_secret.data().get("queryParameters").unwrap(),
            b"{}",
            "an empty map the Director sent is written as {{}}, as the Go agent writes it"
        );
        assert!(
            !format!("{credentials_secret:?}").contains("secret\""),
            "Debug must not print values"
        );
    }

    #[test]
    fn basic_credentials_make_a_username_password_secret() {
        let auth = Auth {
            credential: Some(Credential::Basic {
                username: "user".into(),
                password: "pass".into(),
            }),
            ..Auth::default()
        };
        let wanted = to_wanted_application(
            &application(vec![bundle("b-2", "B", Some(auth))]),
            &settings(),
        );
        let credentials = wanted.application.spec.services[0].entries[0]
            .credentials
            .clone()
            .unwrap();
        assert_eq!(credentials.credential_type, "Basic");
        assert_eq!(credentials.authentication_url, "");
        assert_eq!(credentials.csrf_info, None);
        assert_eq!(wanted.secrets.len(), 1);
        assert_eq!(wanted.secrets[0].data().get("username").unwrap(), b"user");
        assert_eq!(wanted.secrets[0].data().get("password").unwrap(), b"pass");
    }

    #[test]
    fn query_parameters_alone_make_a_parameters_secret() {
        let auth = Auth {
            additional_query_params: Some(BTreeMap::from([(
                "q".into(),
                vec!["1".into(), "2".into()],
            )])),
            ..Auth::default()
        };
        let wanted = to_wanted_application(
            &application(vec![bundle("b-3", "B", Some(auth))]),
            &settings(),
        );
        assert_eq!(wanted.secrets.len(), 1);
        assert_eq!(
            wanted.secrets[0].data().get("queryParameters").unwrap(),
            br#"{"q":["1","2"]}"#
        );
        assert_eq!(
            wanted.application.spec.services[0].entries[0].credentials,
            None
        );
    }

    #[test]
    fn an_empty_bundle_is_a_service_without_entries() {
        let mut empty = bundle("b-4", "Empty", None);
        empty.api_definitions.clear();
        empty.event_definitions.clear();
        let wanted = to_wanted_application(&application(vec![empty]), &settings());
        assert!(wanted.application.spec.services[0].entries.is_empty());
    }

    #[test]
    fn descriptions_and_the_auth_schema_are_carried_over() {
        let mut app = application(vec![bundle("b-5", "B", None)]);
        app.description = Some("The shop".into());
        app.bundles[0].description = Some("Bundle text".into());
        app.bundles[0].instance_auth_request_input_schema = Some(r#"{"type":"object"}"#.into());
        let wanted = to_wanted_application(&app, &settings());
        assert_eq!(wanted.application.spec.description, "The shop");
        let service = &wanted.application.spec.services[0];
        assert_eq!(service.description, "Bundle text");
        assert_eq!(
            service.auth_create_parameter_schema.as_deref(),
            Some(r#"{"type":"object"}"#)
        );
    }

    #[test]
    fn a_normalized_name_is_used_wherever_the_application_name_is() {
        let settings = ConversionSettings {
            normalize_application_names: true,
            ..settings()
        };
        let mut app = application(vec![bundle("b-1", "Orders Bundle", Some(oauth()))]);
        app.name = "My Shop".into();
        let wanted = to_wanted_application(&app, &settings);
        let application = &wanted.application;
        assert_eq!(application.metadata.name.as_deref(), Some("mp-my-shop"));
        assert_eq!(
            application.spec.labels.as_ref().unwrap()["connected-app"],
            "mp-my-shop"
        );
        let service = &application.spec.services[0];
        // Bundle and API names are not touched by it.
        assert_eq!(service.display_name, "Orders Bundle");
        assert!(service.name.starts_with("orders-bundle-"));
        let api = &service.entries[0];
        assert_eq!(
            api.central_gateway_url,
            "http://central-application-gateway.kyma-system.svc.cluster.local:8082/mp-my-shop/orders-bundle/orders-api"
        );
        assert_eq!(
            api.credentials.as_ref().unwrap().secret_name,
            "mp-my-shop-b-1"
        );
        assert_eq!(api.request_parameters_secret_name, "params-mp-my-shop-b-1");
        for secret in &wanted.secrets {
            assert_eq!(secret.labels()["app"], "mp-my-shop", "{secret:?}");
        }
    }

    #[test]
    fn conversion_is_deterministic() {
        let app = application(vec![
            bundle("b-1", "Orders", Some(oauth())),
            bundle("b-2", "More", None),
        ]);
        assert_eq!(
            to_wanted_application(&app, &settings()),
            to_wanted_application(&app, &settings())
        );
    }

    /// The Go agent's converter and JSON tags, field by field, for one input
    /// that touches every field (values worked out from its code: Go writes
    /// unset strings as "" and unset structs whole). Only the deliberate
    /// differences of deploy/README.md's table are outside this pin.
    #[test]
    fn the_application_and_secrets_are_those_the_go_agent_writes() {
        let oauth_with_params = Auth {
            additional_headers: Some(BTreeMap::from([(
                "X-Filter".into(),
                vec!["a<b & c>d".into()],
            )])),
            additional_query_params: Some(BTreeMap::new()),
            ..oauth()
        };
        let basic = Auth {
            credential: Some(Credential::Basic {
                username: "user".into(),
                password: "pw".into(),
            }),
            additional_headers: None,
            additional_query_params: Some(BTreeMap::new()),
            request_auth: None,
        };
        let mut stock = bundle("b-2", "Stock Bundle", Some(basic));
        stock.description = Some("Stock levels".into());
        stock.instance_auth_request_input_schema = Some("{}".into());
        stock.event_definitions.clear();
        let wanted = to_wanted_application(
            &application(vec![
                bundle("b-1", "日本語", Some(oauth_with_params)),
                stock,
            ]),
            &settings(),
        );
        let gateway = "http://central-application-gateway.kyma-system.svc.cluster.local:8082";
        let expected = serde_json::json!({
            "apiVersion": "applicationconnector.kyma-project.io/v1alpha1",
            "kind": "Application",
            "metadata": {
                "name": "shop",
                "labels": {"applicationconnector.kyma-project.io/managed-by": "compass-runtime-agent"},
            },
            "spec": {
                "description": "Description not provided",
                "services": [
                    {
                        "id": "b-1",
                        "identifier": "",
                        // No ASCII letter or digit: the five hex characters alone.
                        "name": "ed9b6",
                        "displayName": "日本語",
                        "description": "Description not provided",
                        "entries": [
                            {
                                "type": "API",
                                "targetUrl": "https://shop.example.com/orders",
                                "credentials": {
                                    "type": "OAuth",
                                    "secretName": "shop-b-1",
                                    "authenticationUrl": "https://oauth.example.com/token",
                                    "csrfInfo": {"tokenEndpointURL": "https://shop.example.com/csrf"},
                                },
                                "requestParametersSecretName": "params-shop-b-1",
                                "name": "Orders API",
                                "id": "b-1-api",
                                "centralGatewayUrl": format!("{gateway}/shop//orders-api"),
                                "gatewayUrl": "",
                            },
                            {
                                "type": "Events",
                                "targetUrl": "",
                                "credentials": {"type": "", "secretName": ""},
                                "name": "order.created",
                                "id": "b-1-event",
                                "centralGatewayUrl": "",
                                "gatewayUrl": "",
                            },
                        ],
                        "providerDisplayName": "",
                    },
                    {
                        "id": "b-2",
                        "identifier": "",
                        "name": "stock-bundle-67272",
                        "displayName": "Stock Bundle",
                        "description": "Stock levels",
                        "authCreateParameterSchema": "{}",
                        "entries": [
                            {
                                "type": "API",
                                "targetUrl": "https://shop.example.com/orders",
                                "credentials": {"type": "Basic", "secretName": "shop-b-2"},
                                "name": "Orders API",
                                "id": "b-2-api",
                                "centralGatewayUrl": format!("{gateway}/shop/stock-bundle/orders-api"),
                                "gatewayUrl": "",
                            },
                        ],
                        "providerDisplayName": "",
                    },
                ],
                "labels": {"connected-app": "shop"},
                "compassMetadata": {
                    "applicationId": "app-id",
                    "authentication": {"clientIds": ["auth-1", "auth-2"]},
                },
                "displayName": "",
                "providerDisplayName": "",
                "longDescription": "",
                "skipVerify": false,
                "encodeUrl": false,
            },
            "status": {"installationStatus": {"status": "", "description": ""}},
        });
        assert_eq!(serde_json::to_value(&wanted.application).unwrap(), expected);

        type Labels = BTreeMap<String, String>;
        type Data<'a> = BTreeMap<&'a str, String>;
        let secrets: BTreeMap<&str, (Labels, Data)> = wanted
            .secrets
            .iter()
            .map(|secret| {
                let data = secret
                    .data()
                    .iter()
                    .map(|(key, value)| (key, String::from_utf8(value.to_vec()).unwrap()))
                    .collect();
                (secret.name(), (secret.labels(), data))
            })
            .collect();
        let labels = |bundle: &str| {
            BTreeMap::from([
                ("app".to_string(), "shop".to_string()),
                ("bundleId".to_string(), bundle.to_string()),
            ])
        };
        let expected_secrets = BTreeMap::from([
            (
                "shop-b-1",
                (
                    labels("b-1"),
                    BTreeMap::from([
                        ("clientId", "client".to_string()),
                        ("clientSecret", "secret".to_string()),
                    ]),
                ),
            ),
            (
                "params-shop-b-1",
                (
                    labels("b-1"),
                    // Go's encoding/json: keys in order, <>& escaped, an
                    // empty map written as {} once the other has values.
                    BTreeMap::from([
                        (
                            "headers",
                            r#"{"X-Filter":["a\u003cb \u0026 c\u003ed"]}"#.to_string(),
                        ),
                        ("queryParameters", "{}".to_string()),
                    ]),
                ),
            ),
            (
                "shop-b-2",
                (
                    labels("b-2"),
                    BTreeMap::from([
                        ("password", "pw".to_string()),
                        ("username", "user".to_string()),
                    ]),
                ),
            ),
        ]);
        assert_eq!(secrets, expected_secrets);
    }
}
