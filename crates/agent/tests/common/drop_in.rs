//! The life of the agent in a cluster, run as production runs it (a
//! ServiceAccount's client, some RBAC): connect, synchronize Applications with
//! their Secrets, renew on `refreshCredentialsNow`, reconnect after the
//! CompassConnection is deleted, then restart with an empty memory while the
//! Director changes, and stay `Synchronized` throughout.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use compass_runtime_agent::crd::application::Application;
use compass_runtime_agent::crd::{CompassConnection, ConnectionState, COMPASS_CONNECTION_NAME};
use compass_runtime_agent::sync::names;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ListParams};
use kube::runtime::watcher;
use kube::{Api, Client};

use super::{World, LONG, NS, RUNTIME_ID, SHORT};

/// The names of the Secrets an Application refers to.
pub fn referred_secrets(app: &Application) -> BTreeSet<String> {
    let mut referred = BTreeSet::new();
    for entry in app.spec.services.iter().flat_map(|s| &s.entries) {
        if let Some(credentials) = &entry.credentials {
            referred.insert(credentials.secret_name.clone());
        }
        if !entry.request_parameters_secret_name.is_empty() {
            referred.insert(entry.request_parameters_secret_name.clone());
        }
    }
    referred
}

/// Every state `compass-connection` passes through while it is recorded.
pub struct StateRecorder {
    seen: Arc<Mutex<Vec<ConnectionState>>>,
    task: tokio::task::JoinHandle<()>,
}

impl StateRecorder {
    pub fn start(client: &Client) -> StateRecorder {
        let api: Api<CompassConnection> = Api::all(client.clone());
        let config =
            watcher::Config::default().fields(&format!("metadata.name={COMPASS_CONNECTION_NAME}"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let task = tokio::spawn(async move {
            let mut events = std::pin::pin!(watcher::watcher(api, config));
            while let Some(event) = events.next().await {
                let object = match event {
                    Ok(watcher::Event::Apply(object) | watcher::Event::InitApply(object)) => object,
                    _ => continue,
                };
                if let Some(status) = object.status {
                    record.lock().unwrap().push(status.connection_state);
                }
            }
        });
        StateRecorder { seen, task }
    }

    pub fn stop(self) -> Vec<ConnectionState> {
        self.task.abort();
        self.seen.lock().unwrap().clone()
    }
}

/// Failed writes counted in the agent's metrics (a write the role does not
/// allow shows here first).
fn failed_writes(metrics: &str) -> Vec<String> {
    metrics
        .lines()
        .filter(|line| line.starts_with("compass_runtime_agent_kubernetes_writes_total"))
        .filter(|line| line.contains("outcome=\"Failure\""))
        .filter(|line| !line.ends_with(" 0"))
        .map(String::from)
        .collect()
}

/// Runs the whole life; `agent_client` is how the agent talks to the API
/// server. Returns nothing: it panics at the first thing a user would notice.
/// Whether the role the agent runs under grants watch on the Applications
/// and the credential Secrets (this project's does, Kyma's does not).
pub enum Rbac {
    Watches,
    NoWatch,
}

/// Reads of the cluster by syncs, `how` ("Listed" or "Kept"), in `/metrics`.
fn cluster_reads(metrics: &str, how: &str) -> u64 {
    let series = "compass_runtime_agent_kubernetes_cluster_reads_total";
    super::metric_sum(metrics, series, &format!("how=\"{how}\"")) as u64
}

pub async fn run(world: &mut World, agent_client: &Client, rbac: Rbac) {
    let admin = world.client.clone();
    let director_apps = compass_sim::model::generate_applications(3, 2, 1, 1);
    for app in &director_apps {
        world
            .sim
            .put_application(RUNTIME_ID, app.clone())
            .expect("the application is added");
    }
    // Names are normalized, as the Director serves them and today's Kyma
    // agent keeps them.
    let name_of = |director_name: &str| names::normalize_application_name(director_name);
    let applications: Api<Application> = Api::all(admin.clone());
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), NS);

    // 1. Connect and synchronize.
    world.configure_with_fresh_token().await;
    world.start_agent_as(agent_client.clone()).await;
    let connection = world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    let sync_error = connection
        .status
        .and_then(|s| s.synchronization_status)
        .map(|s| s.error);
    assert_eq!(sync_error.as_deref(), Some(""), "no synchronization error");
    let in_cluster = applications
        .list(&ListParams::default())
        .await
        .expect("Applications list")
        .items;
    let found: BTreeSet<String> = in_cluster
        .iter()
        .filter_map(|a| a.metadata.name.clone())
        .collect();
    let expected: BTreeSet<String> = director_apps.iter().map(|a| name_of(&a.name)).collect();
    assert_eq!(
        found, expected,
        "the Director's applications, under their normalized names"
    );
    let mut referred = BTreeSet::new();
    for app in &in_cluster {
        referred.extend(referred_secrets(app));
    }
    assert!(
        referred.len() >= 6,
        "3 applications × 2 bundles with credentials: {referred:?}"
    );
    for name in &referred {
        let secret = secrets.get_opt(name).await.expect("Secrets can be read");
        assert!(secret.is_some(), "the credential Secret {NS}/{name} exists");
    }
    let certificate = world
        .certificate_secret()
        .await
        .expect("the client certificate Secret");
    for key in ["crt", "key", "crtChain"] {
        assert!(
            certificate.get(key).is_some_and(|v| !v.is_empty()),
            "key {key}"
        );
    }
    let ca = &world.settings.ca_certificates_secret;
    let ca_secret = Api::<Secret>::namespaced(admin.clone(), &ca.namespace)
        .get(&ca.name)
        .await
        .unwrap_or_else(|e| panic!("the CA Secret {ca} exists: {e}"));
    assert!(
        ca_secret.data.unwrap_or_default().contains_key("cacert"),
        "key cacert in {ca}"
    );

    // 2. Renewal on request.
    let old_crt = certificate["crt"].clone();
    world.ask_for_renewal().await;
    let renewed = world
        .wait_for_new_certificate(&old_crt, "refreshCredentialsNow")
        .await;
    world
        .wait_for_connection("refreshCredentialsNow cleared", SHORT, |c| {
            !c.spec.refresh_credentials_now
        })
        .await;
    // A swap back to the Go agent now: it reads the renewed key and
    // certificates, the status and the Applications.
    super::go_agent::assert_go_agent_takes_over(&admin, &world.settings, "after a renewal").await;

    // 3. Deleting the CompassConnection connects anew with the configured token.
    let csrs = world.csr_count();
    world.configure_with_fresh_token().await;
    world
        .connections()
        .delete(COMPASS_CONNECTION_NAME, &DeleteParams::default())
        .await
        .expect("the CompassConnection is deleted");
    let reconnected = world
        .wait_for_new_certificate(&renewed["crt"], "deleting the CompassConnection")
        .await;
    assert!(world.csr_count() > csrs, "a new certificate was signed");
    assert!(
        super::director_accepts(&world.sim, &reconnected["key"], &reconnected["crtChain"]).await,
        "the new certificate authenticates"
    );
    world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;

    // 4. A restart with an empty memory while the Director changes.
    world.stop_agent().await;
    let mut changed = director_apps[0].clone();
    changed.description = Some("changed while the agent was down".into());
    world
        .sim
        .put_application(RUNTIME_ID, changed.clone())
        .expect("the application changes");
    let removed = director_apps[1].clone();
    let removed_name = name_of(&removed.name);
    let removed_secrets =
        referred_secrets(&applications.get(&removed_name).await.expect("it exists"));
    world
        .sim
        .remove_application(RUNTIME_ID, &removed.id)
        .expect("the application is removed");
    let recorder = StateRecorder::start(&admin);
    world.start_agent_as(agent_client.clone()).await;
    let changed_name = name_of(&changed.name);
    test_support::wait_for(
        "the changed application updated and the removed one deleted",
        LONG,
        || async {
            let updated = applications
                .get(&changed_name)
                .await
                .map_err(|e| e.to_string())?;
            if updated.spec.description != "changed while the agent was down" {
                return Err(format!("description still {:?}", updated.spec.description));
            }
            if applications
                .get_opt(&removed_name)
                .await
                .map_err(|e| e.to_string())?
                .is_some()
            {
                return Err(format!("{removed_name} still exists"));
            }
            for secret in &removed_secrets {
                if secrets
                    .get_opt(secret)
                    .await
                    .map_err(|e| e.to_string())?
                    .is_some()
                {
                    return Err(format!("its Secret {secret} still exists"));
                }
            }
            Ok(())
        },
    )
    .await;
    world
        .wait_for_state(ConnectionState::Synchronized, SHORT)
        .await;
    let states = recorder.stop();
    assert!(
        !states.is_empty(),
        "the restarted agent's statuses were seen"
    );
    assert!(
        states
            .iter()
            .all(|state| *state == ConnectionState::Synchronized),
        "Synchronized throughout after the restart, but saw {states:?}"
    );
    let metrics = world.metrics_text().await;
    assert_eq!(
        failed_writes(&metrics),
        Vec::<String>::new(),
        "no write was refused"
    );

    // 5. Idle syncs (by the period; resyncNow would read afresh): where
    // the RBAC grants watch, a sync after which nothing changed lists
    // nothing; else every sync reads the cluster.
    match rbac {
        Rbac::Watches => {
            test_support::wait_for("an idle sync that lists nothing", LONG, || async {
                cluster_reads(&world.metrics_text().await, "Kept") > 0
            })
            .await;
            // resyncNow reads the cluster afresh all the same.
            let listed = cluster_reads(&world.metrics_text().await, "Listed");
            world.resync_and_wait().await;
            let metrics = world.metrics_text().await;
            assert!(
                cluster_reads(&metrics, "Listed") > listed,
                "resyncNow listed the cluster"
            );
        }
        Rbac::NoWatch => {
            world.wait_for_more_syncs(2).await;
            let metrics = world.metrics_text().await;
            assert_eq!(cluster_reads(&metrics, "Kept"), 0, "nothing is kept");
            assert!(cluster_reads(&metrics, "Listed") >= 2);
        }
    }

    let remaining: BTreeSet<String> = applications
        .list(&ListParams::default())
        .await
        .expect("Applications list")
        .items
        .into_iter()
        .filter_map(|a| a.metadata.name)
        .collect();
    assert_eq!(remaining.len(), 2, "{remaining:?}");
    world.stop_agent().await;
    super::go_agent::assert_go_agent_takes_over(&admin, &world.settings, "after a restart").await;
}

/// Every Application event (`added <name>`, `modified <name>`, `deleted
/// <name>`) while it is recorded, in the order the API server sent them.
pub struct ApplicationEvents {
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ApplicationEvents {
    /// Returns once the watch is established.
    pub async fn start(client: &Client) -> ApplicationEvents {
        use kube::runtime::watcher::Event;
        let api: Api<Application> = Api::all(client.clone());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut known: BTreeSet<String> = BTreeSet::new();
            let mut events = std::pin::pin!(watcher::watcher(api, watcher::Config::default()));
            let mut ready = Some(ready_tx);
            while let Some(event) = events.next().await {
                let Ok(event) = event else { continue };
                let line = match event {
                    Event::InitApply(object) => {
                        known.insert(object.metadata.name.unwrap_or_default());
                        continue;
                    }
                    Event::InitDone => {
                        if let Some(ready) = ready.take() {
                            let _ = ready.send(());
                        }
                        continue;
                    }
                    Event::Init => continue,
                    Event::Apply(object) => {
                        let name = object.metadata.name.unwrap_or_default();
                        if known.insert(name.clone()) {
                            format!("added {name}")
                        } else {
                            format!("modified {name}")
                        }
                    }
                    Event::Delete(object) => {
                        let name = object.metadata.name.unwrap_or_default();
                        known.remove(&name);
                        format!("deleted {name}")
                    }
                };
                record.lock().unwrap().push(line);
            }
        });
        tokio::time::timeout(SHORT, ready_rx)
            .await
            .expect("the Application watch starts")
            .expect("the watch task runs");
        ApplicationEvents { seen, task }
    }

    pub fn stop(self) -> Vec<String> {
        self.task.abort();
        self.seen.lock().unwrap().clone()
    }
}
