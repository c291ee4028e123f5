//! Applications as the sync bench's Director serves them, converted, and the
//! cluster as the agent would have written them: shared by the benches that
//! run the sync's pure parts without I/O (`plan`, `idle`).

use std::collections::BTreeMap;
use std::sync::Arc;

use compass_runtime_agent::compass::model::{self, ApiDefinition, Auth, Credential, SystemAuth};
use compass_runtime_agent::sync::{
    to_wanted_application, ActualApplication, ActualSecret, ActualState, ConversionSettings,
    WantedApplication,
};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::ByteString;

pub fn director_application(i: usize) -> model::Application {
    let bundle = |b: usize| model::Bundle {
        id: format!("bundle-{i}-{b}"),
        name: format!("Bundle {b}"),
        description: Some("A bundle".into()),
        instance_auth_request_input_schema: None,
        default_instance_auth: Some(Auth {
            credential: Some(if b % 2 == 0 {
                Credential::Basic {
                    username: format!("user-{i}"),
                    password: format!("password-{i}-{b}"),
                }
            } else {
                Credential::OAuth {
                    client_id: format!("client-{i}"),
                    client_secret: format!("secret-{i}-{b}"),
                    url: "https://oauth.example.com/token".into(),
                }
            }),
            additional_headers: Some(BTreeMap::from([(
                "X-Tenant".to_string(),
                vec![format!("tenant-{i}")],
            )])),
            ..Auth::default()
        }),
        api_definitions: (0..3)
            .map(|a| ApiDefinition {
                id: format!("api-{i}-{b}-{a}"),
                name: format!("API {a}"),
                description: Some("An API".into()),
                target_url: format!("https://app-{i}.example.com/api/{b}/{a}"),
            })
            .collect(),
        event_definitions: vec![],
    };
    model::Application {
        id: format!("application-id-{i:08}"),
        name: format!("application-{i}"),
        provider_name: Some("Provider".into()),
        description: Some("An application".into()),
        labels: None,
        auths: vec![SystemAuth {
            id: format!("auth-{i}"),
        }],
        bundles: vec![bundle(0), bundle(1)],
    }
}

pub fn wanted(count: usize) -> Vec<WantedApplication> {
    let settings = conversion_settings();
    (0..count)
        .map(|i| to_wanted_application(&director_application(i), &settings))
        .collect()
}

/// What the agent reads back after writing `wanted` into an empty cluster.
pub fn written(wanted: &[WantedApplication]) -> ActualState {
    let mut state = ActualState {
        secrets_listed: true,
        ..ActualState::default()
    };
    for (i, w) in wanted.iter().enumerate() {
        let uid = format!("00000000-0000-0000-0000-{i:012}");
        let mut application = w.application.clone();
        application.metadata.uid = Some(uid.clone());
        application.metadata.resource_version = Some(format!("{}", 1000 + i));
        state
            .applications
            .push(Arc::new(ActualApplication::from(application)));
        for secret in &w.secrets {
            let mut object = Secret::default();
            object.metadata.name = Some(secret.name().to_string());
            object.metadata.labels = Some(secret.labels());
            object.metadata.owner_references = Some(vec![OwnerReference {
                uid: uid.clone(),
                ..OwnerReference::default()
            }]);
            object.data = Some(
                secret
                    .data()
                    .iter()
                    .map(|(key, value)| (key.to_string(), ByteString(value.to_vec())))
                    .collect(),
            );
            state.secrets.push(ActualSecret::from(object));
        }
    }
    state
}

pub fn conversion_settings() -> ConversionSettings {
    ConversionSettings {
        central_gateway_url: "http://central-application-gateway.kyma-system:8082".into(),
        skip_apps_tls_verify: false,
        normalize_application_names: false,
    }
}

/// The sizes a bench runs at: the comma-separated list in `variable`, else
/// `defaults` under `cargo bench` (which passes `--bench`), else one small
/// size: under `cargo test` a bench is a quick smoke run.
pub fn sizes(variable: &str, defaults: &[usize]) -> Vec<usize> {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    match std::env::var(variable) {
        Ok(list) => list
            .split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{variable}: numbers, not {n:?}"))
            })
            .collect(),
        Err(_) if !benchmarking => vec![50],
        Err(_) => defaults.to_vec(),
    }
}
