//! Swapping both ways with the Go agent Kyma ships (spec, section 7): our
//! agent starts from the objects the Go agent leaves, keeping every one of
//! them (same uid, same resourceVersion) without spending a token; and the Go
//! agent's own loading code reads what our agent leaves.

mod common;

use std::collections::BTreeMap;

use common::earlier_release::pkcs8_pem;
use common::go_left::as_the_go_agent_leaves_it;
use common::{go_agent, World, CA_NS, LONG, NS, SHORT};
use compass_runtime_agent::crd::application::Application;
use compass_runtime_agent::crd::ConnectionState;
use compass_sim::model::{generate_applications, MultiMap};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

/// The Director's applications of the swap: generated ones (Basic and OAuth
/// credentials, headers), plus the cases where the two agents' converters
/// once differed: a bundle name without an ASCII letter or digit, request
/// parameters with one empty map, and characters Go's JSON escapes.
fn director_applications() -> Vec<compass_sim::model::Application> {
    let mut apps = generate_applications(4, 2, 2, 1);
    apps[0].bundles[0].name = "日本語".into();
    let auth = apps[1].bundles[1].default_instance_auth.as_mut().unwrap();
    auth.additional_headers = Some(MultiMap::from([(
        "X-Filter".to_string(),
        vec!["a<b & c>d".to_string()],
    )]));
    auth.additional_query_params = Some(MultiMap::new());
    apps
}

/// uid and resourceVersion of every Application and Secret the agent may
/// write, and of both credential Secrets.
async fn identities(world: &World) -> BTreeMap<String, (String, String)> {
    let mut found = BTreeMap::new();
    let applications = Api::<Application>::all(world.client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    for app in applications {
        found.insert(
            format!("Application {}", app.name_any()),
            (app.uid().unwrap(), app.resource_version().unwrap()),
        );
    }
    for namespace in [NS, CA_NS] {
        let secrets = Api::<Secret>::namespaced(world.client.clone(), namespace)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items;
        for secret in secrets {
            if secret.name_any() == common::CONFIG_NAME {
                continue;
            }
            found.insert(
                format!("Secret {namespace}/{}", secret.name_any()),
                (secret.uid().unwrap(), secret.resource_version().unwrap()),
            );
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_from_the_go_agent_keeps_every_object_and_spends_no_token_and_a_swap_back_loads() {
    let mut world = World::new().await;

    // The cluster as the Go agent leaves it.
    let director = director_applications();
    let go_secret_count = as_the_go_agent_leaves_it(&mut world, &director).await;
    assert!(go_secret_count >= 12, "{go_secret_count} Secrets");
    let before = identities(&world).await;
    let csrs = world.csr_count();

    // Our agent takes over, with an empty memory.
    let started = jiff::Timestamp::now();
    world.start_agent().await;
    let connection = world
        .wait_for_connection("a synchronization after the swap", LONG, |c| {
            c.status.as_ref().is_some_and(|s| {
                s.connection_state == ConnectionState::Synchronized
                    && s.synchronization_status.as_ref().is_some_and(|sync| {
                        sync.last_attempt
                            .as_ref()
                            .is_some_and(|t| t.0.as_second() >= started.as_second())
                            && sync.applications.len() == director.len()
                    })
            })
        })
        .await;
    let sync = connection.status.unwrap().synchronization_status.unwrap();
    assert_eq!(sync.error, "", "no synchronization error");
    let after = identities(&world).await;
    let rewritten: Vec<&String> = before
        .iter()
        .filter(|(name, identity)| after.get(*name) != Some(identity))
        .map(|(name, _)| name)
        .collect();
    assert_eq!(
        rewritten,
        Vec::<&String>::new(),
        "objects the Go agent wrote were rewritten or replaced by the swap"
    );
    assert_eq!(before.len(), after.len(), "no object was added: {after:?}");
    assert_eq!(world.csr_count(), csrs, "no new certificate was asked for");
    assert_eq!(
        world.agent().metrics.kubernetes.successful_writes(),
        0,
        "the swap wrote nothing but the status"
    );

    // And back: the Go agent loads everything our agent now stands behind.
    world.stop_agent().await;
    let report =
        go_agent::assert_go_agent_takes_over(&world.client, &world.settings, "after the swap")
            .await;
    assert!(report.contains("4 Application(s)"), "{report}");
}

/// What the Go agent's loading code makes of a PKCS#8 key, which our agent
/// wrote before this release: it cannot start from it. Our agent rewrites
/// such a key as PKCS#1 when it loads it, and the Go agent then starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pkcs8_key_left_by_an_earlier_release_is_rewritten_so_the_go_agent_can_start() {
    let mut world = World::connected().await;
    world.stop_agent().await;
    let certificate = world.certificate_secret().await.unwrap();
    assert!(
        certificate["key"].starts_with("-----BEGIN RSA PRIVATE KEY-----\n"),
        "the agent writes PKCS#1, as the Go agent does"
    );
    // The same key as PKCS#8.
    let key = rcgen::KeyPair::from_pem(&certificate["key"]).unwrap();
    let cluster = &world.settings.cluster_certificates_secret;
    let secrets: Api<Secret> = Api::namespaced(world.client.clone(), &cluster.namespace);
    let pkcs8 = pkcs8_pem(&key.serialize_der());
    secrets
        .patch(
            &cluster.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"key": pkcs8}})),
        )
        .await
        .unwrap();
    let refused = go_agent::go_agent_loads(
        &go_agent::left_in_the_cluster(&world.client, &world.settings).await,
    )
    .expect_err("the Go agent refuses a PKCS#8 key");
    assert!(refused.contains("Failed to decode client key"), "{refused}");

    world.start_agent().await;
    test_support::wait_for("the key rewritten as PKCS#1", SHORT, || async {
        let stored = world.certificate_secret().await.unwrap_or_default();
        match stored.get("key") {
            Some(key) if key.starts_with("-----BEGIN RSA PRIVATE KEY-----") => Ok(()),
            other => Err(format!("key starts {:?}", other.map(|k| &k[..30]))),
        }
    })
    .await;
    let rewritten =
        rcgen::KeyPair::from_pem(&world.certificate_secret().await.unwrap()["key"]).unwrap();
    assert_eq!(
        rewritten.public_key_raw(),
        key.public_key_raw(),
        "the same key"
    );
    world
        .wait_for_state(ConnectionState::Synchronized, SHORT)
        .await;
    world.stop_agent().await;
    go_agent::assert_go_agent_takes_over(&world.client, &world.settings, "after the rewrite").await;
}
