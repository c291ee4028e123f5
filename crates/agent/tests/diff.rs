//! `compass-runtime-agent diff`, run as an operator runs it before a swap: the
//! binary as a child process, with a kubeconfig and the agent's `APP_*`
//! settings. On what the Go agent leaves for an unchanged Director it shows
//! no change (exit 0); after a Director change it shows exactly that change
//! (exit 1), which the agent's sync then makes; it moves no resourceVersion,
//! sends Compass no write, and works under a get/list/watch-only account,
//! saying what it may not read when a read is missing (exit 2).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::earlier_release::pkcs8_pem;
use common::go_left::as_the_go_agent_leaves_it;
use common::{accounts, kyma, World, CA_NS, LONG, NS, RUNTIME_ID};
use compass_runtime_agent::cli::diff::report::in_id_order;
use compass_runtime_agent::crd::application::Application;
use compass_runtime_agent::crd::{ConnectionState, COMPASS_CONNECTION_NAME};
use compass_runtime_agent::sync::names;
use compass_sim::model::Credential;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::{json, Value};

/// What the command printed and how it ended.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "-o json prints JSON ({e}): {}\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// `compass-runtime-agent diff [args]` with only a kubeconfig and the
/// settings that point the agent at this world (the simulator's CA).
async fn diff(world: &World, kubeconfig: &Path, args: &[&str]) -> Run {
    diff_with(world, kubeconfig, &[], args).await
}

/// [`diff`] with the `APP_*` variables of `environment` too (a Deployment's).
async fn diff_with(
    world: &World,
    kubeconfig: &Path,
    environment: &[(String, String)],
    args: &[&str],
) -> Run {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_compass-runtime-agent"))
        .arg("diff")
        .args(args)
        .env_clear()
        .envs(environment.iter().cloned())
        .env("KUBECONFIG", kubeconfig)
        .env(
            "APP_COMPASS_CA_BUNDLE",
            world.settings.compass_ca_bundle.as_ref().unwrap(),
        )
        .env("APP_COMPASS_REQUEST_TIMEOUT", "10s")
        .output()
        .await
        .expect("the binary runs");
    let run = Run {
        code: output.status.code().expect("the command exits"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    // What it prints never holds a credential of the simulator's.
    for secret in ["password-0", "secret-1", "changed-password"] {
        assert!(
            !run.stdout.contains(secret) && !run.stderr.contains(secret),
            "diff printed a credential value: {}{}",
            run.stdout,
            run.stderr
        );
    }
    run
}

/// uid and resourceVersion of every object a sync or a diff could write:
/// Applications, Secrets in the integration and CA namespaces (the
/// certificate Secrets included), `compass-connection`, and Events.
async fn identities(world: &World) -> BTreeMap<String, (String, String)> {
    let client = &world.client;
    let mut found = BTreeMap::new();
    let mut note = |kind: &str, name: String, uid: Option<String>, version: Option<String>| {
        found.insert(
            format!("{kind} {name}"),
            (uid.unwrap_or_default(), version.unwrap_or_default()),
        );
    };
    for app in Api::<Application>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
    {
        note(
            "Application",
            app.name_any(),
            app.uid(),
            app.resource_version(),
        );
    }
    for namespace in [NS, CA_NS] {
        for secret in Api::<Secret>::namespaced(client.clone(), namespace)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
        {
            let name = format!("{namespace}/{}", secret.name_any());
            note("Secret", name, secret.uid(), secret.resource_version());
        }
    }
    let connection = world.connection().await.expect("compass-connection");
    note(
        "CompassConnection",
        COMPASS_CONNECTION_NAME.into(),
        connection.uid(),
        connection.resource_version(),
    );
    for event in Api::<Event>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
    {
        let name = format!(
            "{}/{}",
            event.namespace().unwrap_or_default(),
            event.name_any()
        );
        note("Event", name, event.uid(), event.resource_version());
    }
    found
}

fn assert_nothing_moved(
    before: &BTreeMap<String, (String, String)>,
    after: &BTreeMap<String, (String, String)>,
    when: &str,
) {
    let moved: Vec<&String> = before
        .keys()
        .chain(after.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|name| before.get(*name) != after.get(*name))
        .collect();
    assert_eq!(
        moved,
        Vec::<&String>::new(),
        "{when}: objects changed or appeared"
    );
}

/// Compass was asked nothing but the Director's queries since `from` (no
/// label set, no Connector call, no certificate signed).
fn assert_compass_only_read(world: &World, from: usize) {
    let log = world.sim.request_log();
    let operations: BTreeSet<String> = log[from..]
        .iter()
        .flat_map(|entry| entry.operations.clone())
        .collect();
    assert!(!operations.is_empty(), "diff read the Director");
    for write in [
        "setRuntimeLabel",
        "configuration",
        "signCertificateSigningRequest",
    ] {
        assert!(
            !operations.contains(write),
            "diff sent {write} to Compass: {operations:?}"
        );
    }
}

/// `(name, action)` of each Application in the JSON report.
fn actions(report: &Value) -> Vec<(String, String)> {
    report["applications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|app| {
            (
                app["name"].as_str().unwrap().to_string(),
                app["action"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn field_paths(fields: &Value) -> Vec<String> {
    fields
        .as_array()
        .unwrap()
        .iter()
        .map(|field| field["path"].as_str().unwrap().to_string())
        .collect()
}

/// The leaf paths in which two JSON values differ: the test's own oracle
/// for what a write changed (objects by key, arrays by index).
fn changed_paths(path: &str, before: &Value, after: &Value, out: &mut Vec<String>) {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            let keys: BTreeSet<&String> = b.keys().chain(a.keys()).collect();
            for key in keys {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                changed_paths(
                    &child,
                    b.get(key).unwrap_or(&Value::Null),
                    a.get(key).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (Value::Array(b), Value::Array(a)) => {
            for index in 0..b.len().max(a.len()) {
                changed_paths(
                    &format!("{path}[{index}]"),
                    b.get(index).unwrap_or(&Value::Null),
                    a.get(index).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (b, a) if b != a => out.push(path.to_string()),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_a_swap_from_the_go_agent_diff_shows_no_change_then_exactly_the_directors_change_and_writes_nothing(
) {
    let mut world = World::new().await;
    let director = compass_sim::model::generate_applications(4, 2, 2, 1);
    as_the_go_agent_leaves_it(&mut world, &director).await;
    let admin = world.env.kubeconfig_path().to_path_buf();
    let before = identities(&world).await;
    let requests = world.sim.request_log().len();

    // 1. An unchanged Director: no change, exit 0.
    let text = diff(&world, &admin, &[]).await;
    assert_eq!(text.code, 0, "{}{}", text.stdout, text.stderr);
    assert!(
        text.stdout
            .contains("Applications: 4 in the Director; 4 unchanged"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout
            .contains("state after the cycle: Synchronized (no change)"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.ends_with("No change (exit 0).\n"),
        "{}",
        text.stdout
    );
    let json = diff(&world, &admin, &["-o", "json"]).await;
    assert_eq!(json.code, 0, "{}{}", json.stdout, json.stderr);
    let report = json.json();
    assert_eq!(report["schemaVersion"], 1);
    assert_eq!(report["changes"], false);
    assert_eq!(report["applications"], json!([]));
    assert_eq!(report["summary"]["applications"]["unchanged"], 4);
    assert_eq!(report["runtimeLabels"], json!([]));
    assert_eq!(report["certificateSecrets"], json!([]));
    assert_eq!(report["compassConnection"]["fields"], json!([]));
    assert_eq!(report["compassConnection"]["state"], "Synchronized");
    assert_nothing_moved(
        &before,
        &identities(&world).await,
        "diff on an unchanged Director",
    );
    assert_compass_only_read(&world, requests);

    // 2. The Director changes: an API's target URL and a password of
    // application 0, an application added, one removed.
    let mut changed = director[0].clone();
    changed.bundles[0].api_definitions[0].target_url = "https://changed.example.com/api".into();
    let Some(Credential::Basic(basic)) = changed.bundles[0]
        .default_instance_auth
        .as_mut()
        .and_then(|auth| auth.credential.as_mut())
    else {
        panic!("bundle 0 has Basic credentials");
    };
    basic.password = "changed-password".into();
    world
        .sim
        .put_application(RUNTIME_ID, changed.clone())
        .unwrap();
    let mut added = compass_sim::model::generate_applications(5, 1, 1, 0).remove(4);
    added.name = "added-later".into();
    world
        .sim
        .put_application(RUNTIME_ID, added.clone())
        .unwrap();
    let removed = &director[1];
    world
        .sim
        .remove_application(RUNTIME_ID, &removed.id)
        .unwrap();

    let changed_name = names::normalize_application_name(&changed.name);
    let added_name = names::normalize_application_name(&added.name);
    let removed_name = names::normalize_application_name(&removed.name);
    let changed_secret = names::credentials_secret_name(&changed_name, &changed.bundles[0].id);
    let added_secret = names::credentials_secret_name(&added_name, &added.bundles[0].id);
    let added_parameters = names::request_parameters_secret_name(&added_name, &added.bundles[0].id);
    // Each generated bundle has credentials and request parameters.
    let removed_secrets: Vec<String> = removed
        .bundles
        .iter()
        .flat_map(|bundle| {
            [
                names::credentials_secret_name(&removed_name, &bundle.id),
                names::request_parameters_secret_name(&removed_name, &bundle.id),
            ]
        })
        .collect();

    let requests = world.sim.request_log().len();
    let text = diff(&world, &admin, &[]).await;
    assert_eq!(text.code, 1, "{}{}", text.stdout, text.stderr);
    for line in [
        format!("  + Application {added_name}  create"),
        format!("      + Secret {NS}/{added_secret}  create (keys password, username)"),
        format!("      + Secret {NS}/{added_parameters}  create (keys headers)"),
        format!("  ~ Application {changed_name}  update"),
        format!(
            "      ~ spec.services[0].entries[0].targetUrl: \"{}\" → \"https://changed.example.com/api\"",
            director[0].bundles[0].api_definitions[0].target_url
        ),
        format!("      ~ Secret {NS}/{changed_secret}  update: data.password"),
        format!("  - Application {removed_name}  delete"),
        format!("      - Secret {NS}/{}  delete", removed_secrets[0]),
        format!("      - Secret {NS}/{}  delete", removed_secrets[3]),
        "Changes: 3 Application(s), 7 Secret(s) (exit 1).".to_string(),
    ] {
        assert!(text.stdout.contains(&line), "missing {line:?} in:\n{}", text.stdout);
    }

    let json = diff(&world, &admin, &["-o", "json"]).await;
    assert_eq!(json.code, 1, "{}{}", json.stdout, json.stderr);
    let report = json.json();
    assert_eq!(report["changes"], true);
    let mut expected = vec![
        (added_name.clone(), "create".to_string()),
        (changed_name.clone(), "update".to_string()),
        (removed_name.clone(), "delete".to_string()),
    ];
    expected.sort();
    assert_eq!(actions(&report), expected);
    let entry = |name: &str| -> Value {
        report["applications"]
            .as_array()
            .unwrap()
            .iter()
            .find(|app| app["name"] == name)
            .cloned()
            .unwrap()
    };
    let update = entry(&changed_name);
    assert_eq!(
        field_paths(&update["fields"]),
        ["spec.services[0].entries[0].targetUrl"]
    );
    assert_eq!(update["fields"][0]["to"], "https://changed.example.com/api");
    assert_eq!(update["secrets"].as_array().unwrap().len(), 1);
    assert_eq!(update["secrets"][0]["name"], changed_secret.as_str());
    assert_eq!(update["secrets"][0]["action"], "update");
    assert_eq!(
        field_paths(&update["secrets"][0]["fields"]),
        ["data.password"]
    );
    assert_eq!(update["secrets"][0]["fields"][0]["from"], Value::Null);
    assert_eq!(update["secrets"][0]["fields"][0]["to"], Value::Null);
    let create = entry(&added_name);
    let created: BTreeMap<&str, &Value> = create["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|secret| {
            assert_eq!(secret["action"], "create");
            (secret["name"].as_str().unwrap(), &secret["keys"])
        })
        .collect();
    assert_eq!(
        created,
        BTreeMap::from([
            (added_secret.as_str(), &json!(["password", "username"])),
            (added_parameters.as_str(), &json!(["headers"])),
        ])
    );
    let delete = entry(&removed_name);
    let deleted: BTreeSet<&str> = delete["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|secret| secret["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        deleted,
        removed_secrets
            .iter()
            .map(String::as_str)
            .collect::<BTreeSet<_>>()
    );
    assert_eq!(report["summary"]["applications"]["unchanged"], 2);
    assert_eq!(report["compassConnection"]["fields"], json!([]));
    assert_nothing_moved(
        &before,
        &identities(&world).await,
        "diff after a Director change",
    );
    assert_compass_only_read(&world, requests);

    // 3. The agent's sync then makes exactly that change.
    let applications: Api<DynamicObject> = Api::all_with(
        world.client.clone(),
        &ApiResource::erase::<Application>(&()),
    );
    let secrets: Api<Secret> = Api::namespaced(world.client.clone(), NS);
    let app_before = applications.get(&changed_name).await.unwrap();
    let secret_before = secrets.get(&changed_secret).await.unwrap();
    let started = jiff::Timestamp::now();
    world.start_agent().await;
    world
        .wait_for_connection("the sync after the diff", LONG, |c| {
            c.status.as_ref().is_some_and(|s| {
                s.connection_state == ConnectionState::Synchronized
                    && s.synchronization_status.as_ref().is_some_and(|sync| {
                        sync.last_attempt
                            .as_ref()
                            .is_some_and(|t| t.0.as_second() >= started.as_second())
                            && sync.last_successful_application.is_some()
                    })
            })
        })
        .await;
    world.stop_agent().await;
    let after = identities(&world).await;
    let mut rewritten = BTreeSet::new();
    let mut appeared = BTreeSet::new();
    let mut gone = BTreeSet::new();
    for name in before.keys().chain(after.keys()) {
        if !name.starts_with("Application ") && !name.starts_with(&format!("Secret {NS}/")) {
            continue;
        }
        match (before.get(name), after.get(name)) {
            (Some(b), Some(a)) if b != a => rewritten.insert(name.clone()),
            (None, Some(_)) => appeared.insert(name.clone()),
            (Some(_), None) => gone.insert(name.clone()),
            _ => false,
        };
    }
    let secret_key = |name: &str| format!("Secret {NS}/{name}");
    assert_eq!(
        rewritten,
        BTreeSet::from([
            format!("Application {changed_name}"),
            secret_key(&changed_secret)
        ]),
        "the sync rewrote what diff said it would update, and nothing else"
    );
    assert_eq!(
        appeared,
        BTreeSet::from([
            format!("Application {added_name}"),
            secret_key(&added_secret),
            secret_key(&added_parameters)
        ])
    );
    let mut expected_gone: BTreeSet<String> = removed_secrets
        .iter()
        .map(|name| secret_key(name))
        .collect();
    expected_gone.insert(format!("Application {removed_name}"));
    assert_eq!(gone, expected_gone);

    let app_after = applications.get(&changed_name).await.unwrap();
    // In id order: the Director's lists come in an order of their own,
    // which is no content (diff names fields so too).
    let view = |object: &DynamicObject| {
        let mut view =
            json!({"metadata": {"labels": object.metadata.labels}, "spec": object.data["spec"]});
        in_id_order(&mut view);
        view
    };
    let mut written = Vec::new();
    changed_paths("", &view(&app_before), &view(&app_after), &mut written);
    assert_eq!(
        written,
        field_paths(&update["fields"]),
        "the fields diff named"
    );
    let secret_after = secrets.get(&changed_secret).await.unwrap();
    let data_keys_changed: Vec<String> = secret_after
        .data
        .unwrap()
        .iter()
        .filter(|(key, value)| secret_before.data.as_ref().unwrap().get(*key) != Some(*value))
        .map(|(key, _)| format!("data.{key}"))
        .collect();
    assert_eq!(
        data_keys_changed,
        field_paths(&update["secrets"][0]["fields"])
    );

    // And now nothing is left to do.
    let again = diff(&world, &admin, &[]).await;
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
}

/// A ServiceAccount in `kyma-system` that may get, list and watch the
/// CompassConnection and Applications, and the Secrets of `secret_reads`
/// (namespace, verbs); returns a kubeconfig with its token.
async fn reader(
    world: &World,
    name: &str,
    secret_reads: &[(&str, &[&str])],
    dir: &Path,
) -> std::path::PathBuf {
    let mut objects = vec![
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": NS}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": name},
        "rules": [
            {"apiGroups": ["compass.kyma-project.io"], "resources": ["compassconnections"],
                "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["applicationconnector.kyma-project.io"], "resources": ["applications"],
                "verbs": ["get", "list", "watch"]},
        ]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": NS}]}),
    ];
    for (namespace, verbs) in secret_reads {
        objects.push(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": name, "namespace": namespace},
            "rules": [{"apiGroups": [""], "resources": ["secrets", "configmaps"], "verbs": verbs}]}));
        objects.push(
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": NS}]}),
        );
    }
    accounts::apply_rbac(&world.client, &objects).await;
    let token = accounts::service_account_token(&world.client, NS, name).await;
    let dir = dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    accounts::write_token_kubeconfig(world, &token, &dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_read_only_account_diff_works_and_without_a_read_it_says_which_and_exits_2() {
    let mut world = World::new().await;
    for app in compass_sim::model::generate_applications(2, 2, 1, 0) {
        world.sim.put_application(RUNTIME_ID, app).unwrap();
    }
    world.connect_once().await;
    // The key as an earlier release stored it: the agent would rewrite it.
    let certificate = world.certificate_secret().await.unwrap();
    let key = rcgen::KeyPair::from_pem(&certificate["key"]).unwrap();
    let cluster = &world.settings.cluster_certificates_secret;
    Api::<Secret>::namespaced(world.client.clone(), &cluster.namespace)
        .patch(
            &cluster.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"key": pkcs8_pem(&key.serialize_der())}})),
        )
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let read_only = reader(
        &world,
        "diff-reader",
        &[
            (NS, &["get", "list", "watch"]),
            (CA_NS, &["get", "list", "watch"]),
        ],
        dir.path(),
    )
    .await;
    let no_list = reader(
        &world,
        "diff-reader-no-list",
        &[(NS, &["get", "watch"]), (CA_NS, &["get"])],
        dir.path(),
    )
    .await;
    let no_ca = reader(
        &world,
        "diff-reader-no-ca",
        &[(NS, &["get", "list", "watch"])],
        dir.path(),
    )
    .await;
    let before = identities(&world).await;

    // As an admin, whose writes would be allowed, and with get/list/watch
    // only: it works, and shows the one change, the key.
    let admin = world.env.kubeconfig_path().to_path_buf();
    for (kubeconfig, how) in [
        (&admin, "(listed)"),
        (&read_only, "(listed)"),
        (
            &no_list,
            "one by one by name (this account may not list them)",
        ),
    ] {
        let run = diff(&world, kubeconfig, &["-o", "json"]).await;
        assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
        let report = run.json();
        assert_eq!(report["applications"], json!([]), "{report:#}");
        assert_eq!(report["summary"]["applications"]["unchanged"], 2);
        let certificates = report["certificateSecrets"].as_array().unwrap();
        assert_eq!(certificates.len(), 1, "{report:#}");
        assert_eq!(certificates[0]["name"], cluster.name.as_str());
        assert_eq!(field_paths(&certificates[0]["fields"]), ["data.key"]);
        assert!(
            certificates[0]["reason"]
                .as_str()
                .unwrap()
                .contains("PKCS#1"),
            "{report:#}"
        );
        let read = report["read"].as_array().unwrap();
        assert!(
            read.iter()
                .any(|line| line.as_str().unwrap().ends_with(how)),
            "{read:?}"
        );
    }

    // Without get on the CA Secret: exit 2, naming what it may not read.
    let run = diff(&world, &no_ca, &[]).await;
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "  - get Secret {} (the Compass CA)",
            world.settings.ca_certificates_secret
        )),
        "{}",
        run.stderr
    );
    let run = diff(&world, &no_ca, &["-o", "json"]).await;
    assert_eq!(run.code, 2);
    assert_eq!(
        run.json()["cannotRead"],
        json!([format!(
            "get Secret {} (the Compass CA)",
            world.settings.ca_certificates_secret
        )])
    );

    assert_nothing_moved(&before, &identities(&world).await, "diff runs");
    let stored = world.certificate_secret().await.unwrap();
    assert!(
        stored["key"].starts_with("-----BEGIN PRIVATE KEY-----"),
        "diff left the PKCS#8 key as it was"
    );

    // A cycle that would connect anew with the token cannot be shown: exit 2.
    world
        .connections()
        .patch_status(
            COMPASS_CONNECTION_NAME,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"connectionState": "ConnectionFailed"}})),
        )
        .await
        .unwrap();
    let run = diff(&world, &admin, &[]).await;
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("compass-connection is in state ConnectionFailed")
            && run.stderr.contains("connect anew with the one-time token"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stdout, "", "no report on stdout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_kymas_rbac_and_crds_diff_as_the_agents_own_account_reads_secrets_by_name_and_shows_a_removal_and_a_rename(
) {
    let mut world = kyma::world().await;
    // The agent's own naming rule is what the rename shows: a Director that
    // serves the names as registered, and a runtime without the label (the
    // real Director sets "true" on a new runtime and normalizes itself).
    world
        .sim
        .set_application_names(compass_sim::ApplicationNames::AsRegistered);
    world
        .sim
        .delete_runtime_label(RUNTIME_ID, names::IS_NORMALIZED_LABEL)
        .unwrap();
    let director = compass_sim::model::generate_applications(2, 1, 1, 0);
    for app in &director {
        world.sim.put_application(RUNTIME_ID, app.clone()).unwrap();
    }
    let token = accounts::service_account_token(&world.client, NS, kyma::SERVICE_ACCOUNT).await;
    let client = accounts::token_client(&world, &token, kyma::SERVICE_ACCOUNT_USER).await;
    world.configure_with_fresh_token().await;
    world.start_agent_as(client).await;
    world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    world.stop_agent().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = accounts::write_token_kubeconfig(&world, &token, dir.path());
    // Kyma's Deployment's settings (its CA Secret's name, its sync times).
    let environment = kyma::environment();
    let before = identities(&world).await;

    let run = diff_with(&world, &kubeconfig, &environment, &[]).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains(
            "the Secrets in kyma-system that the Applications refer to, one by one by name (this account may not list them)"
        ),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!(
            "Secret {} (the CA)",
            world.settings.ca_certificates_secret
        )),
        "{}",
        run.stdout
    );

    let removed = &director[1];
    world
        .sim
        .remove_application(RUNTIME_ID, &removed.id)
        .unwrap();
    let run = diff_with(&world, &kubeconfig, &environment, &["-o", "json"]).await;
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let report = run.json();
    let removed_name = names::normalize_application_name(&removed.name);
    assert_eq!(actions(&report), [(removed_name, "delete".to_string())]);
    assert_eq!(
        report["applications"][0]["secrets"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(report["summary"]["applications"]["unchanged"], 1);

    // The Director keeps its names from now on (isNormalized "true"): the
    // remaining Application is replaced by one under the Director's name.
    world
        .sim
        .set_runtime_label(RUNTIME_ID, "isNormalized", json!("true"))
        .unwrap();
    let run = diff_with(&world, &kubeconfig, &environment, &["-o", "json"]).await;
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let report = run.json();
    let kept = &director[0];
    let old_name = names::normalize_application_name(&kept.name);
    let removed_name = names::normalize_application_name(&removed.name);
    assert_eq!(
        actions(&report),
        [
            (kept.name.clone(), "create".to_string()),
            (old_name.clone(), "delete".to_string()),
            (removed_name, "delete".to_string()),
        ]
    );
    let applications = report["applications"].as_array().unwrap();
    assert_eq!(applications[0]["replaces"], json!([old_name]));
    assert_eq!(applications[0]["secrets"].as_array().unwrap().len(), 2);
    assert_eq!(applications[1]["replacedBy"], kept.name.as_str());
    assert_eq!(applications[1]["secrets"].as_array().unwrap().len(), 2);
    let text = diff_with(&world, &kubeconfig, &environment, &[]).await;
    assert!(
        text.stdout.contains(&format!(
            "  + Application {}  create, replaces {old_name}",
            kept.name
        )),
        "{}",
        text.stdout
    );
    assert_nothing_moved(&before, &identities(&world).await, "diff under Kyma's RBAC");
}
