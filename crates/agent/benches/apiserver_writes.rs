//! What one write costs kube-apiserver + etcd, in CPU time: the floor under
//! the first sync. Applications and credential Secrets exactly as the agent
//! writes them (taken from a real first sync of 100 applications), created
//! in batches by a plain client in several ways; the apiserver's CPU seconds
//! per batch are read from `/proc`. Batches of the different ways alternate,
//! three rounds, so that the machine's drift spreads over all of them.
//! Prints a table; never fails on a figure.
//!
//!     cargo bench -p compass-runtime-agent --bench apiserver_writes
//!
//! The ways: the kube client's `create` (JSON, the whole object answered and
//! parsed); the same JSON with the answer ignored (what the agent does for
//! Secrets); the answer as metadata only (`Accept: …;as=PartialObjectMetadata`);
//! Secrets sent and answered as protobuf; and the first of these at 2, 16 and
//! 32 requests in flight instead of 8.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use compass_runtime_agent::crd::application::Application;
use compass_runtime_agent::crd::ConnectionState;
use futures::stream::{self, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{ListParams, ObjectMeta, PostParams};
use kube::Api;

const APPLICATIONS_PATH: &str = "/apis/applicationconnector.kyma-project.io/v1alpha1/applications";
const METADATA_ANSWER: &str =
    "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1, application/json";
const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Way {
    /// `Api::create`: JSON, the answer parsed into the object.
    KubeCreate,
    /// JSON, the answer read and ignored.
    AnswerIgnored,
    /// JSON, the answer as `PartialObjectMetadata`.
    MetadataAnswer,
    /// Protobuf both ways (core types only: Secrets).
    Protobuf,
}

#[derive(Clone, Copy)]
enum Kind {
    Application,
    Secret,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Application => "Application",
            Kind::Secret => "Secret",
        }
    }
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/<pid>/stat");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("stat has a command")
        .1
        .split_whitespace()
        .collect();
    let ticks = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

// Protobuf by hand: the few fields a credential Secret has, in the
// apiserver's envelope ("k8s\0" + runtime.Unknown{typeMeta, raw}).
fn length_delimited(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    let mut varint = |mut value: u64| {
        while value >= 0x80 {
            out.push((value as u8) | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    };
    varint(u64::from((field << 3) | 2));
    varint(bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn map_entry(out: &mut Vec<u8>, field: u32, key: &str, value: &[u8]) {
    let mut entry = Vec::new();
    length_delimited(&mut entry, 1, key.as_bytes());
    length_delimited(&mut entry, 2, value);
    length_delimited(out, field, &entry);
}

fn secret_as_protobuf(secret: &Secret) -> Vec<u8> {
    let mut metadata = Vec::new();
    let name = secret.metadata.name.as_deref().unwrap_or_default();
    length_delimited(&mut metadata, 1, name.as_bytes());
    for (key, value) in secret.metadata.labels.iter().flatten() {
        map_entry(&mut metadata, 11, key, value.as_bytes());
    }
    for (key, value) in secret.metadata.annotations.iter().flatten() {
        map_entry(&mut metadata, 12, key, value.as_bytes());
    }
    for owner in secret.metadata.owner_references.iter().flatten() {
        let mut reference = Vec::new();
        length_delimited(&mut reference, 1, owner.kind.as_bytes());
        length_delimited(&mut reference, 3, owner.name.as_bytes());
        length_delimited(&mut reference, 4, owner.uid.as_bytes());
        length_delimited(&mut reference, 5, owner.api_version.as_bytes());
        length_delimited(&mut metadata, 13, &reference);
    }
    let mut body = Vec::new();
    length_delimited(&mut body, 1, &metadata);
    for (key, value) in secret.data.iter().flatten() {
        map_entry(&mut body, 2, key, &value.0);
    }
    length_delimited(
        &mut body,
        3,
        secret.type_.as_deref().unwrap_or("Opaque").as_bytes(),
    );
    let mut type_meta = Vec::new();
    length_delimited(&mut type_meta, 1, b"v1");
    length_delimited(&mut type_meta, 2, b"Secret");
    let mut envelope = b"k8s\0".to_vec();
    length_delimited(&mut envelope, 1, &type_meta);
    length_delimited(&mut envelope, 2, &body);
    envelope
}

async fn post(
    client: &kube::Client,
    path: String,
    content_type: &str,
    accept: &str,
    body: Vec<u8>,
) {
    let request = http::Request::post(path)
        .header("content-type", content_type)
        .header("accept", accept)
        .body(kube::client::Body::from(body))
        .unwrap();
    let response = client.send(request).await.expect("the write is sent");
    assert!(
        response.status().is_success(),
        "the apiserver refused a write: {}",
        response.status()
    );
}

async fn write_secret(client: &kube::Client, namespace: &str, way: Way, secret: Secret) {
    let path = format!("/api/v1/namespaces/{namespace}/secrets");
    let json = || serde_json::to_vec(&secret).unwrap();
    match way {
        Way::KubeCreate => {
            Api::<Secret>::namespaced(client.clone(), namespace)
                .create(&PostParams::default(), &secret)
                .await
                .expect("the Secret is created");
        }
        Way::AnswerIgnored => {
            post(client, path, "application/json", "application/json", json()).await
        }
        Way::MetadataAnswer => {
            post(client, path, "application/json", METADATA_ANSWER, json()).await
        }
        Way::Protobuf => {
            post(
                client,
                path,
                PROTOBUF,
                PROTOBUF,
                secret_as_protobuf(&secret),
            )
            .await
        }
    }
}

async fn write_application(client: &kube::Client, way: Way, application: Application) {
    let json = || serde_json::to_vec(&application).unwrap();
    let path = APPLICATIONS_PATH.to_string();
    match way {
        Way::KubeCreate | Way::Protobuf => {
            Api::<Application>::all(client.clone())
                .create(&PostParams::default(), &application)
                .await
                .expect("the Application is created");
        }
        Way::AnswerIgnored => {
            post(client, path, "application/json", "application/json", json()).await
        }
        Way::MetadataAnswer => {
            post(client, path, "application/json", METADATA_ANSWER, json()).await
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes --bench; under `cargo test` this is a quick smoke run.
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let (rounds, secrets_per_batch) = if benchmarking { (3, 1000) } else { (1, 8) };
    let applications_per_batch = secrets_per_batch / 4;

    // The objects, as the agent writes them.
    let mut world = World::new().await;
    let director =
        compass_sim::model::generate_applications(if benchmarking { 100 } else { 2 }, 2, 3, 2);
    world.sim.set_applications(RUNTIME_ID, director).unwrap();
    world.configure_with_fresh_token().await;
    world.start_agent().await;
    world
        .wait_for_state(ConnectionState::Synchronized, Duration::from_secs(300))
        .await;
    world.stop_agent().await;
    let client = world.client.clone();
    let applications = Api::<Application>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let secrets = Api::<Secret>::namespaced(client.clone(), NS)
        .list(&ListParams::default().labels("bundleId"))
        .await
        .unwrap()
        .items;
    let copy_meta = |from: &ObjectMeta, name: String| ObjectMeta {
        name: Some(name),
        labels: from.labels.clone(),
        annotations: from.annotations.clone(),
        owner_references: from.owner_references.clone(),
        ..ObjectMeta::default()
    };

    let pid = world.env.process_id().expect("a local test apiserver");
    let ways = [
        (Way::KubeCreate, 8),
        (Way::AnswerIgnored, 8),
        (Way::MetadataAnswer, 8),
        (Way::Protobuf, 8),
        (Way::KubeCreate, 2),
        (Way::KubeCreate, 16),
        (Way::KubeCreate, 32),
    ];
    // (kind, way, in flight) → (apiserver CPU seconds, wall seconds, writes)
    let mut totals = BTreeMap::<(&str, String, usize), (f64, f64, usize)>::new();
    for round in 0..rounds {
        for (way, in_flight) in ways {
            for kind in [Kind::Application, Kind::Secret] {
                if matches!((kind, way), (Kind::Application, Way::Protobuf)) {
                    continue; // custom resources speak JSON only
                }
                let tag = format!("r{round}-{:?}-{in_flight}", way).to_lowercase();
                let cpu_before = cpu_seconds(pid);
                let started = Instant::now();
                let count = match kind {
                    Kind::Secret => {
                        let mut namespace = Namespace::default();
                        namespace.metadata.name = Some(tag.clone());
                        Api::<Namespace>::all(client.clone())
                            .create(&PostParams::default(), &namespace)
                            .await
                            .unwrap();
                        let batch = (0..secrets_per_batch).map(|i| {
                            let template = &secrets[i % secrets.len()];
                            Secret {
                                metadata: copy_meta(&template.metadata, format!("s-{i}")),
                                data: template.data.clone(),
                                type_: template.type_.clone(),
                                ..Secret::default()
                            }
                        });
                        stream::iter(batch)
                            .map(|secret| write_secret(&client, &tag, way, secret))
                            .buffer_unordered(in_flight)
                            .collect::<Vec<()>>()
                            .await
                            .len()
                    }
                    Kind::Application => {
                        let batch = (0..applications_per_batch).map(|i| {
                            let template = &applications[i % applications.len()];
                            Application {
                                metadata: copy_meta(&template.metadata, format!("{tag}-{i}")),
                                spec: template.spec.clone(),
                                status: None,
                            }
                        });
                        stream::iter(batch)
                            .map(|application| write_application(&client, way, application))
                            .buffer_unordered(in_flight)
                            .collect::<Vec<()>>()
                            .await
                            .len()
                    }
                };
                let wall = started.elapsed().as_secs_f64();
                let cpu = cpu_seconds(pid) - cpu_before;
                let total = totals
                    .entry((kind.name(), format!("{way:?}"), in_flight))
                    .or_default();
                total.0 += cpu;
                total.1 += wall;
                total.2 += count;
            }
        }
    }

    println!("What one write costs kube-apiserver + etcd ({} round(s), {secrets_per_batch} Secrets or {applications_per_batch} Applications per batch)", rounds);
    println!("| object | way | in flight | apiserver CPU per write | wall time per write |");
    println!("|---|---|---|---|---|");
    for ((kind, way, in_flight), (cpu, wall, count)) in totals {
        println!(
            "| {kind} | {way} | {in_flight} | {:.2} ms | {:.2} ms |",
            cpu * 1000.0 / count as f64,
            wall * 1000.0 / count as f64
        );
    }
}
