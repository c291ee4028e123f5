//! The sync plan alone, without I/O: how its time grows with the number of
//! applications. Prints; never fails on a time.
//!
//!     cargo bench -p compass-runtime-agent --bench plan
//!     BENCH_PLAN_SIZES=1000,3000,10000,30000 cargo bench -p compass-runtime-agent --bench plan
//!
//! Each application as the sync bench's Director serves it (2 bundles × 3
//! APIs, 2 events, Basic or OAuth credentials and headers per bundle: four
//! Secrets), the cluster as the agent would have written it. Three cases:
//! the first sync (empty cluster), an idle sync (all unchanged) and every
//! application gone from the Director (all deleted). A plan that is linear
//! (or n log n) takes about the same time per application at every size.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use compass_runtime_agent::compass::model::{self, ApiDefinition, Auth, Credential, SystemAuth};
use compass_runtime_agent::sync::{
    self, to_wanted_application, ActualApplication, ActualSecret, ActualState, ConversionSettings,
    Deletions, HeldApplication, WantedApplication,
};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::ByteString;

fn director_application(i: usize) -> model::Application {
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

fn wanted(count: usize) -> Vec<WantedApplication> {
    let settings = ConversionSettings {
        central_gateway_url: "http://central-application-gateway.kyma-system:8082".into(),
        skip_apps_tls_verify: false,
        normalize_application_names: false,
    };
    (0..count)
        .map(|i| to_wanted_application(&director_application(i), &settings))
        .collect()
}

/// What the agent reads back after writing `wanted` into an empty cluster.
fn written(wanted: &[WantedApplication]) -> ActualState {
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

/// The fastest of five plans of `held` against `actual`, and its writes.
fn time_plan(held: &[HeldApplication], actual: &ActualState) -> (Duration, usize) {
    let mut best = Duration::MAX;
    let mut writes = 0;
    for _ in 0..5 {
        let input = held.to_vec();
        let started = Instant::now();
        let plan = sync::plan(input, actual, Deletions::Allowed);
        best = best.min(started.elapsed());
        writes = plan.writes();
        black_box(plan);
    }
    (best, writes)
}

fn main() {
    // `cargo bench` passes --bench; under `cargo test` this is a quick smoke run.
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let sizes: Vec<usize> = match std::env::var("BENCH_PLAN_SIZES") {
        Ok(list) => list
            .split(',')
            .map(|n| n.trim().parse().expect("BENCH_PLAN_SIZES: numbers"))
            .collect(),
        Err(_) if !benchmarking => vec![50],
        Err(_) => vec![1_000, 3_000, 10_000],
    };
    println!("compass-runtime-agent plan benchmark (no I/O; fastest of 5 plans)");
    println!("each application: 2 bundles × 3 APIs, 4 Secrets");
    println!(
        "| applications | first sync: time, per app, writes | idle: time, per app, writes | all gone: time, per app, writes |"
    );
    println!("|---|---|---|---|");
    for count in sizes {
        let wanted = wanted(count);
        let held: Vec<HeldApplication> =
            wanted.iter().cloned().map(HeldApplication::from).collect();
        let actual = written(&wanted);
        let first = time_plan(&held, &ActualState::default());
        let idle = time_plan(&held, &actual);
        let gone = time_plan(&[], &actual);
        assert_eq!(first.1, count * 5, "the first sync writes each object");
        assert_eq!(idle.1, 0, "an idle plan writes nothing");
        assert_eq!(gone.1, count * 5, "all gone: each object deleted");
        let cell = |(time, writes): (Duration, usize)| {
            format!(
                "{:.1} ms, {:.2} µs, {writes}",
                time.as_secs_f64() * 1e3,
                time.as_secs_f64() * 1e6 / count as f64
            )
        };
        println!(
            "| {count} | {} | {} | {} |",
            cell(first),
            cell(idle),
            cell(gone)
        );
    }
}
