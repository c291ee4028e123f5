//! A Director application → the `Application` resource and its Secrets
//! (`sync::to_wanted_application`), the names derived on the way
//! (`sync::names`), and the plan for an empty cluster (`sync::plan`).
//!
//! Input: a Director application as JSON, with its bundles and their API and
//! event definitions inline (as the client assembles them from all pages), and
//! optionally `centralGatewayUrl`, `skipVerify` and `normalizeNames`. Any other
//! input is taken as lines of text: application name, application id, bundle
//! name, bundle id, API name, gateway URL, and `normalize` to normalize names.
//!
//! Properties: no panic; the conversion is deterministic and faithful (names,
//! ids, credentials, parameters); service names are at most 63 characters of
//! `[a-z0-9-]` ending in 5 hex digits; normalized names are at most 57
//! characters of `[a-z0-9-]`, never starting with `-`; Secret names keep the
//! application part within 27 characters, so they fit in 63 with a UUID and
//! are valid DNS labels when the application name and bundle id are;
//! normalized application names are `mp` or `mp-…` of `[-a-z0-9]`, without
//! runs of `-` or a trailing one, and normalizing them again changes nothing.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};

use compass_runtime_agent::compass::model::{
    self, ApiDefinition, Auth, Bundle, Credential, EventDefinition, SystemAuth,
};
use compass_runtime_agent::sync::names;
use compass_runtime_agent::sync::{
    plan, to_wanted_application, ActualState, ApplicationAction, ConversionSettings, Deletions,
};
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;

const DEFAULT_GATEWAY: &str =
    "http://central-application-gateway.kyma-system.svc.cluster.local:8082";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Input {
    #[serde(flatten)]
    application: model::Application,
    #[serde(default)]
    bundles: Vec<InputBundle>,
    #[serde(default)]
    central_gateway_url: Option<String>,
    #[serde(default)]
    skip_verify: bool,
    #[serde(default)]
    normalize_names: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InputBundle {
    #[serde(flatten)]
    bundle: Bundle,
    #[serde(default)]
    api_definitions: Vec<ApiDefinition>,
    #[serde(default)]
    event_definitions: Vec<EventDefinition>,
}

fuzz_target!(|data: &[u8]| {
    let (application, settings) = match serde_json::from_slice::<Input>(data) {
        Ok(input) => {
            let mut application = input.application;
            application.bundles = input
                .bundles
                .into_iter()
                .map(|b| Bundle {
                    api_definitions: b.api_definitions,
                    event_definitions: b.event_definitions,
                    ..b.bundle
                })
                .collect();
            let settings = ConversionSettings {
                central_gateway_url: input
                    .central_gateway_url
                    .unwrap_or_else(|| DEFAULT_GATEWAY.into()),
                skip_apps_tls_verify: input.skip_verify,
                normalize_application_names: input.normalize_names,
            };
            (application, settings)
        }
        Err(_) => from_lines(&String::from_utf8_lossy(data)),
    };
    check_conversion(&application, &settings);
});

/// Raw strings straight into the model, so that byte-level mutations reach the
/// name functions without having to stay valid JSON.
fn from_lines(text: &str) -> (model::Application, ConversionSettings) {
    let mut lines = text.split('\n');
    let mut next = || lines.next().unwrap_or_default().to_string();
    let (app_name, app_id, bundle_name, bundle_id, api_name, gateway, naming) =
        (next(), next(), next(), next(), next(), next(), next());
    let application = model::Application {
        id: app_id,
        name: app_name,
        provider_name: None,
        description: None,
        labels: None,
        auths: vec![SystemAuth { id: "auth".into() }],
        bundles: vec![Bundle {
            id: bundle_id,
            name: bundle_name,
            description: None,
            instance_auth_request_input_schema: None,
            default_instance_auth: Some(Auth {
                credential: Some(Credential::Basic {
                    username: "user".into(),
                    password: "password".into(),
                }),
                additional_headers: Some(BTreeMap::from([("h".into(), vec!["v".into()])])),
                ..Auth::default()
            }),
            api_definitions: vec![ApiDefinition {
                id: "api".into(),
                name: api_name,
                description: None,
                target_url: "https://example.com".into(),
            }],
            event_definitions: vec![],
        }],
    };
    let settings = ConversionSettings {
        central_gateway_url: if gateway.is_empty() {
            DEFAULT_GATEWAY.into()
        } else {
            gateway
        },
        skip_apps_tls_verify: false,
        normalize_application_names: naming == "normalize",
    };
    (application, settings)
}

fn check_conversion(app: &model::Application, settings: &ConversionSettings) {
    let wanted = to_wanted_application(app, settings);
    assert_eq!(
        wanted,
        to_wanted_application(app, settings),
        "deterministic"
    );

    let name = settings.application_name(&app.name);
    check_application_name(&app.name);
    let resource = &wanted.application;
    assert_eq!(resource.metadata.name.as_deref(), Some(name.as_str()));
    let spec = &resource.spec;
    assert_eq!(spec.skip_verify, settings.skip_apps_tls_verify);
    assert_eq!(spec.labels.as_ref().unwrap()["connected-app"], name);
    assert!(!spec.description.is_empty());
    let metadata = spec.compass_metadata.as_ref().unwrap();
    assert_eq!(metadata.application_id, app.id);
    let auth_ids: Vec<&str> = app.auths.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(metadata.authentication.client_ids, auth_ids);

    assert_eq!(spec.services.len(), app.bundles.len());
    let secret_names: BTreeSet<&str> = wanted.secrets.iter().map(|s| s.name()).collect();
    assert!(wanted.secrets.len() <= 2 * app.bundles.len());
    let gateway = settings.central_gateway_url.trim_end_matches('/');
    for (service, bundle) in spec.services.iter().zip(&app.bundles) {
        assert_eq!(service.id, bundle.id);
        assert_eq!(service.display_name, bundle.name);
        check_service_name(&service.name, &bundle.name, &bundle.id);
        check_normalized(&bundle.name);
        assert_eq!(
            service.entries.len(),
            bundle.api_definitions.len() + bundle.event_definitions.len()
        );
        for (entry, api) in service.entries.iter().zip(&bundle.api_definitions) {
            assert_eq!(entry.id, api.id);
            assert_eq!(entry.target_url, api.target_url);
            check_normalized(&api.name);
            assert_eq!(
                entry.central_gateway_url,
                format!(
                    "{gateway}/{}/{}/{}",
                    name,
                    names::normalize(&bundle.name),
                    names::normalize(&api.name)
                )
            );
            if let Some(credentials) = &entry.credentials {
                assert!(secret_names.contains(credentials.secret_name.as_str()));
                assert_eq!(
                    credentials.secret_name,
                    names::credentials_secret_name(&name, &bundle.id)
                );
            }
            if !entry.request_parameters_secret_name.is_empty() {
                assert!(secret_names.contains(entry.request_parameters_secret_name.as_str()));
            }
        }
    }

    for secret in &wanted.secrets {
        let bundle_id = &secret.bundle_id().to_string();
        assert_eq!(secret.labels()["app"], name);
        assert!(!secret.data().is_empty());
        // Deterministic: the same data, the same digest.
        assert_eq!(secret.data_hash(), secret.clone().data_hash());
        assert!(secret.name().ends_with(&format!("-{bundle_id}")));
        let prefix_chars = secret.name().chars().count() - bundle_id.chars().count();
        assert!(prefix_chars <= 27, "{:?}", secret.name());
        if let Some(headers) = secret.data().get("headers") {
            let parsed: BTreeMap<String, Vec<String>> = serde_json::from_slice(headers).unwrap();
            // Bundle ids may repeat in a hostile answer: any bundle of that id.
            assert!(app.bundles.iter().any(|b| &b.id == bundle_id
                && b.default_instance_auth
                    .as_ref()
                    .and_then(|a| a.additional_headers.as_ref())
                    == Some(&parsed)));
        }
        if is_dns_label(&name) && is_dns_label(bundle_id) && bundle_id.len() <= 36 {
            assert!(is_dns_label(secret.name()), "{:?}", secret.name());
        }
    }
    for bundle in &app.bundles {
        for name in [
            names::credentials_secret_name(&app.name, &bundle.id),
            names::request_parameters_secret_name(&app.name, &bundle.id),
        ] {
            let prefix = name.chars().count() - bundle.id.chars().count();
            assert!(prefix <= 27, "{name:?}");
        }
    }

    // The plan for an empty cluster creates it when Kubernetes would take the
    // name; two of the same name are both refused.
    let valid = names::check_application_name(&name, !wanted.secrets.is_empty()).is_ok();
    let alone = plan(
        vec![wanted.clone()],
        &ActualState::default(),
        Deletions::Allowed,
    );
    assert_eq!(
        matches!(alone.applications[0].action, ApplicationAction::Create(_)),
        valid
    );
    let result = plan(
        vec![wanted.clone(), wanted],
        &ActualState::default(),
        Deletions::Allowed,
    );
    assert_eq!(result.applications.len(), 2);
    assert!(result
        .applications
        .iter()
        .all(|a| matches!(a.action, ApplicationAction::Refused(_))));
}

fn check_application_name(director_name: &str) {
    let normalized = names::normalize_application_name(director_name);
    assert!(
        normalized == "mp" || normalized.starts_with("mp-"),
        "{normalized:?}"
    );
    assert!(
        normalized
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
        "{normalized:?}"
    );
    assert!(
        !normalized.contains("--") && !normalized.ends_with('-'),
        "{normalized:?}"
    );
    if normalized != "mp" {
        assert_eq!(names::normalize_application_name(&normalized), normalized);
    }
    // One character for one: never longer than the prefix and the name.
    assert!(normalized.chars().count() <= 3 + director_name.chars().count());
}

fn check_normalized(name: &str) {
    let normalized = names::normalize(name);
    assert!(normalized.len() <= 57, "{normalized:?}");
    assert!(
        normalized
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
        "{normalized:?}"
    );
    assert!(!normalized.starts_with('-'), "{normalized:?}");
    // A dash is left at the end only where the cut at 57 fell after one (and
    // the leading dash, at most one, goes after the cut).
    if normalized.ends_with('-') {
        assert!(matches!(normalized.len(), 56 | 57), "{normalized:?}");
    } else {
        assert_eq!(names::normalize(&normalized), normalized);
    }
}

fn check_service_name(service_name: &str, bundle_name: &str, bundle_id: &str) {
    assert_eq!(service_name, names::service_name(bundle_name, bundle_id));
    assert!(service_name.len() <= 63, "{service_name:?}");
    let (stem, hash) = service_name.split_at(service_name.len() - 5);
    // As the original: a bundle name with no ASCII letter or digit gives the
    // five hex characters alone, without the `-`.
    assert!(
        stem.ends_with('-') || (stem.is_empty() && names::normalize(bundle_name).is_empty()),
        "{service_name:?}"
    );
    assert!(hash
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert!(
        service_name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
        "{service_name:?}"
    );
}

/// RFC 1123 label: at most 63 of `[a-z0-9-]`, alphanumeric at both ends.
fn is_dns_label(value: &str) -> bool {
    let alphanumeric =
        |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    !value.is_empty()
        && value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && alphanumeric(value.chars().next())
        && alphanumeric(value.chars().last())
}
