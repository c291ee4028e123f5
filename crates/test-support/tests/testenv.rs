//! Proves the test environment: a real kube-apiserver at the pinned version,
//! real storage, independent environments, CRD installation, RBAC, and no
//! process left behind.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, ObjectMeta, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use test_support::{install_crds, unique_name, wait_for, TestEnv};

/// The k8s.io/kubernetes version that testenv/go.mod pins.
fn pinned_version() -> String {
    let go_mod = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testenv/go.mod");
    let text = std::fs::read_to_string(&go_mod).expect("reading testenv/go.mod");
    text.lines()
        .find_map(|l| {
            let mut it = l.split_whitespace();
            (it.next() == Some("k8s.io/kubernetes")).then(|| it.next().map(str::to_owned))?
        })
        .expect("k8s.io/kubernetes in testenv/go.mod")
}

async fn create_namespace(client: &kube::Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    api.create(&PostParams::default(), &ns)
        .await
        .expect("creating a namespace");
}

async fn delete_namespace(client: &kube::Client, name: &str) {
    // Without kube-controller-manager a namespace stays Terminating; deleting
    // still matters on an existing cluster.
    let api: Api<Namespace> = Api::all(client.clone());
    let _ = api.delete(name, &DeleteParams::default()).await;
}

#[tokio::test]
async fn env_starts_and_reports_the_pinned_version() {
    let env = TestEnv::global();
    let client = env.client().await;
    let info = client.apiserver_version().await.expect("GET /version");
    println!(
        "/version: gitVersion={} major={} minor={} platform={} (existing cluster: {})",
        info.git_version,
        info.major,
        info.minor,
        info.platform,
        env.is_existing_cluster()
    );
    assert_eq!(info.git_version, env.server_version());
    if !env.is_existing_cluster() {
        assert_eq!(
            info.git_version,
            pinned_version(),
            "testenv/go.mod pins another version"
        );
        assert!(env.kubeconfig_path().is_file());
        assert!(
            env.server_url().starts_with("https://127.0.0.1:"),
            "{}",
            env.server_url()
        );
    }
}

#[tokio::test]
async fn a_namespace_can_be_created_and_read_back() {
    let env = TestEnv::global();
    let client = env.client().await;
    let name = unique_name("ns-roundtrip");
    create_namespace(&client, &name).await;
    let api: Api<Namespace> = Api::all(client.clone());
    let got = api.get(&name).await.expect("reading the namespace back");
    assert_eq!(got.metadata.name.as_deref(), Some(name.as_str()));
    assert!(got.metadata.uid.is_some(), "the apiserver assigns a uid");
    let phase = wait_for(
        "the namespace to be Active",
        Duration::from_secs(10),
        || async {
            let ns = api.get(&name).await.ok()?;
            ns.status?.phase.filter(|p| p == "Active")
        },
    )
    .await;
    println!("namespace {name} is {phase}");
    delete_namespace(&client, &name).await;
}

#[tokio::test]
async fn a_new_env_is_independent_of_the_global_one() {
    let global = TestEnv::global();
    let started = Instant::now();
    let other = TestEnv::start_new().expect("starting a second environment");
    println!("second environment ready in {:?}", started.elapsed());
    assert_ne!(global.server_url(), other.server_url());

    let (g, o) = (global.client().await, other.client().await);
    let name = unique_name("independent");
    let cm = |name: &str| ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some([("k".to_string(), "v".to_string())].into()),
        ..Default::default()
    };
    let g_api: Api<ConfigMap> = Api::namespaced(g.clone(), "default");
    let o_api: Api<ConfigMap> = Api::namespaced(o.clone(), "default");
    g_api
        .create(&PostParams::default(), &cm(&name))
        .await
        .unwrap();
    assert!(g_api.get_opt(&name).await.unwrap().is_some());
    assert!(
        o_api.get_opt(&name).await.unwrap().is_none(),
        "a ConfigMap created in the global env is visible in the new one"
    );
    let other_name = unique_name("only-in-new");
    o_api
        .create(&PostParams::default(), &cm(&other_name))
        .await
        .unwrap();
    assert!(g_api.get_opt(&other_name).await.unwrap().is_none());
    g_api.delete(&name, &DeleteParams::default()).await.unwrap();

    // Dropping the environment stops its process and removes its data.
    let pid = other.process_id().expect("a started env has a process");
    let data_dir = other.data_dir().unwrap().to_path_buf();
    drop(o);
    drop(other);
    assert!(
        !process_alive(pid),
        "kube-testenv {pid} still runs after Drop"
    );
    assert!(
        !data_dir.exists(),
        "{} still exists after Drop",
        data_dir.display()
    );
}

#[tokio::test]
async fn a_restarted_env_keeps_its_objects_address_and_credentials() {
    // start_new starts a process even with USE_EXISTING_CLUSTER=true.
    let mut env = TestEnv::start_new().expect("starting an environment");
    let client = env.client().await;
    let name = unique_name("survives-restart");
    create_namespace(&client, &name).await;
    let (url, pid) = (env.server_url().to_string(), env.process_id().unwrap());

    let started = Instant::now();
    env.restart().expect("the environment restarts");
    println!("restarted in {:?}", started.elapsed());
    assert!(!process_alive(pid), "the old kube-testenv {pid} still runs");
    assert_ne!(env.process_id(), Some(pid));
    assert_eq!(env.server_url(), url);

    // The client made before the restart works again, with the same
    // credentials, and the namespace is still there.
    let api: Api<Namespace> = Api::all(client.clone());
    wait_for(
        "the old client to read the namespace",
        Duration::from_secs(30),
        || async { api.get_opt(&name).await.ok().flatten() },
    )
    .await;
    // So does a new client from the kubeconfig file.
    let from_file = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(env.kubeconfig_path()).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    let fresh = kube::Client::try_from(from_file).unwrap();
    assert!(Api::<Namespace>::all(fresh)
        .get_opt(&name)
        .await
        .unwrap()
        .is_some());

    let data_dir = env.data_dir().unwrap().to_path_buf();
    let new_pid = env.process_id().unwrap();
    drop(client);
    drop(env);
    assert!(
        !process_alive(new_pid),
        "kube-testenv {new_pid} still runs after Drop"
    );
    assert!(
        !data_dir.exists(),
        "{} still exists after Drop",
        data_dir.display()
    );
}

fn widget_crd(group: &str) -> CustomResourceDefinition {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": format!("widgets.{group}") },
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": { "plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList" },
            "versions": [{
                "name": "v1alpha1",
                "served": true,
                "storage": true,
                "subresources": { "status": {} },
                "schema": { "openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {
                            "type": "object",
                            "required": ["size"],
                            "properties": { "size": { "type": "integer", "minimum": 1 } }
                        },
                        "status": { "type": "object", "x-kubernetes-preserve-unknown-fields": true }
                    }
                }}
            }]
        }
    }))
    .expect("a valid CRD")
}

#[tokio::test]
async fn install_crds_makes_custom_objects_creatable() {
    let env = TestEnv::global();
    let client = env.client().await;
    let group = "testsupport.compass-runtime-agent.test";
    let crd = widget_crd(group);
    install_crds(&client, std::slice::from_ref(&crd))
        .await
        .expect("installing the CRD");
    // Installing again (create or replace) is fine.
    install_crds(&client, &[crd])
        .await
        .expect("re-installing the CRD");

    let gvk = GroupVersionKind::gvk(group, "v1alpha1", "Widget");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "widgets");
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let name = unique_name("widget");
    let mut obj = DynamicObject::new(&name, &ar);
    obj.data = serde_json::json!({ "spec": { "size": 3 } });
    api.create(&PostParams::default(), &obj)
        .await
        .expect("creating a Widget");
    let got = api.get(&name).await.expect("reading the Widget back");
    assert_eq!(got.data["spec"]["size"], 3);

    // The schema is enforced by the real apiserver.
    let mut bad = DynamicObject::new(&unique_name("bad-widget"), &ar);
    bad.data = serde_json::json!({ "spec": { "size": "big" } });
    match api.create(&PostParams::default(), &bad).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 422, "{status:?}"),
        other => panic!("expected 422 Invalid for a string size, got {other:?}"),
    }
    let listed = api.list(&ListParams::default()).await.unwrap();
    assert!(listed
        .items
        .iter()
        .any(|w| w.metadata.name.as_deref() == Some(name.as_str())));
    api.delete(&name, &DeleteParams::default()).await.unwrap();
}

#[tokio::test]
async fn rbac_is_enforced_for_an_impersonated_user() {
    let env = TestEnv::global();
    let admin = env.client().await;
    let secrets: Api<Secret> = Api::namespaced(admin, "default");
    secrets
        .list(&ListParams::default())
        .await
        .expect("the admin may list secrets");

    let mut config = env.kube_config();
    config.auth_info.impersonate = Some("system:serviceaccount:default:testenv-nobody".into());
    let nobody = kube::Client::try_from(config).unwrap();
    let secrets: Api<Secret> = Api::namespaced(nobody, "default");
    match secrets.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403, "{status:?}");
            println!(
                "impersonated ServiceAccount denied as expected: {}",
                status.message
            );
        }
        other => panic!("expected 403 Forbidden for an unprivileged user, got {other:?}"),
    }
}

fn process_alive(pid: u32) -> bool {
    // A zombie (state Z) has exited; only its parent has not reaped it yet.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

const CHILD_MODE: &str = "TEST_SUPPORT_CHILD_MODE";

/// Not a test on its own: the body of the child process of
/// [`no_process_is_left_when_the_test_binary_is_killed`]. It starts the global
/// environment, prints its pid and data dir, then waits to be killed (or
/// panics, in mode `panic`).
#[test]
#[ignore = "run by no_process_is_left_when_the_test_binary_is_killed"]
fn child_holds_the_global_env() {
    let Ok(mode) = std::env::var(CHILD_MODE) else {
        return;
    };
    let env = TestEnv::global();
    println!(
        "CHILD pid={} data={}",
        env.process_id().unwrap(),
        env.data_dir().unwrap().display()
    );
    if mode == "panic" {
        panic!("a test that panics while the global env runs");
    }
    std::thread::sleep(Duration::from_secs(120));
}

/// Runs this test binary's `child_holds_the_global_env` and ends it (SIGKILL or
/// its own panic); then the kube-testenv process must go away by itself.
fn child_env_is_cleaned_up(mode: &str) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_holds_the_global_env",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_MODE, mode)
        .env_remove("USE_EXISTING_CLUSTER")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut pid_and_dir = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("CHILD pid=") {
            let (pid, dir) = rest.split_once(" data=").unwrap();
            pid_and_dir = Some((pid.parse::<u32>().unwrap(), dir.to_string()));
            break;
        }
    }
    let (pid, dir) = pid_and_dir.expect("the child printed its kube-testenv pid");
    assert!(process_alive(pid));
    if mode == "kill" {
        child.kill().unwrap(); // SIGKILL: no destructor, no atexit
    }
    let status = child.wait().unwrap();
    println!("test binary ({mode}) ended: {status}; waiting for kube-testenv {pid} to exit");
    let started = Instant::now();
    while process_alive(pid) || Path::new(&dir).exists() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "kube-testenv {pid} alive={} / data dir {dir} exists={} 20s after its test binary ended",
            process_alive(pid),
            Path::new(&dir).exists()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "kube-testenv {pid} exited and removed its data {:?} after the test binary ended",
        started.elapsed()
    );
}

#[test]
fn no_process_is_left_when_the_test_binary_is_killed() {
    child_env_is_cleaned_up("kill");
}

#[test]
fn no_process_is_left_when_a_test_panics() {
    child_env_is_cleaned_up("panic");
}
