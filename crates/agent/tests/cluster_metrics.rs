//! The cluster metrics line (`APP_METRICS_LOGGING_TIME_INTERVAL`): the agent
//! binary, as a ServiceAccount under the RBAC of `deploy/agent/` or of Kyma's
//! manifests, logs the Nodes and PersistentVolumes of a real API server in
//! the original agent's JSON line, in either log format; without the rights
//! it says once at start that the line is off and logs none.

mod common;

use std::path::{Path, PathBuf};

use common::accounts::{self, service_account_token, token_client};
use common::{free_port, World, LONG, NS, SHORT};
use compass_runtime_agent::crd::ConnectionState;
use k8s_openapi::api::core::v1::{Node, PersistentVolume};
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};
use tokio::process::{Child, Command};

const SERVICE_ACCOUNT: &str = "compass-runtime-agent";
const SERVICE_ACCOUNT_USER: &str = "system:serviceaccount:kyma-system:compass-runtime-agent";
const MESSAGE: &str = "Cluster metrics logged successfully.";
const NOT_SERVED: &str = "metrics.k8s.io is not served";

/// Kyma's own ServiceAccount and RBAC for the original agent.
fn kyma_rbac() -> Vec<Value> {
    accounts::yaml_documents(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/kyma/compass-runtime-agent.yaml"),
    )
}

/// Whether a ClusterRole rule is one of those for the metrics line.
fn is_metrics_rule(rule: &Value) -> bool {
    let has = |field: &str, value: &str| {
        rule[field]
            .as_array()
            .is_some_and(|values| values.iter().any(|v| v == value))
    };
    has("resources", "nodes") || has("resources", "persistentvolumes")
}

/// Applies `rbac` and returns a kubeconfig with a bound token of the
/// agent's ServiceAccount (checked to be that identity).
async fn service_account_kubeconfig(world: &World, rbac: &[Value], dir: &Path) -> PathBuf {
    accounts::apply_rbac(&world.client, rbac).await;
    let token = service_account_token(&world.client, NS, SERVICE_ACCOUNT).await;
    token_client(world, &token, SERVICE_ACCOUNT_USER).await;
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    accounts::write_token_kubeconfig(world, &token, dir)
}

/// `text` without ANSI escape sequences (`ESC [ … letter`).
fn strip_colours(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

/// The agent binary, its stdout and stderr in files.
struct AgentProcess {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl AgentProcess {
    fn start(world: &World, kubeconfig: &Path, dir: &Path, env: &[(&str, &str)]) -> AgentProcess {
        let stdout = dir.join("agent.log");
        let stderr = dir.join("agent.err");
        let child = Command::new(env!("CARGO_BIN_EXE_compass-runtime-agent"))
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("KUBECONFIG", kubeconfig)
            .env(
                "APP_COMPASS_CA_BUNDLE",
                world.settings.compass_ca_bundle.as_ref().unwrap(),
            )
            .env("APP_MINIMAL_COMPASS_SYNC_TIME", "1s")
            .env("APP_CONTROLLER_SYNC_PERIOD", "3s")
            .env("APP_COMPASS_REQUEST_TIMEOUT", "3s")
            .env("APP_MAX_RETRY_DELAY", "4s")
            .env("APP_HEALTH_ADDRESS", "127.0.0.1")
            .env("APP_HEALTH_PORT", free_port().to_string())
            .env("APP_METRICS_ADDRESS", "")
            .env("APP_LOG_LEVEL", "info")
            .envs(env.iter().copied())
            .stdout(std::fs::File::create(&stdout).expect("log file"))
            .stderr(std::fs::File::create(&stderr).expect("log file"))
            .kill_on_drop(true)
            .spawn()
            .expect("the agent binary starts");
        AgentProcess {
            child,
            stdout,
            stderr,
        }
    }

    /// stdout, without the terminal colours of the text log.
    fn stdout(&self) -> String {
        strip_colours(&std::fs::read_to_string(&self.stdout).unwrap_or_default())
    }

    fn output(&self) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            self.stdout(),
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }

    /// The complete lines of stdout containing `text`.
    fn lines_with(&self, text: &str) -> Vec<String> {
        let log = self.stdout();
        let complete = log.rfind('\n').map_or("", |end| &log[..end]);
        complete
            .lines()
            .filter(|line| line.contains(text))
            .map(String::from)
            .collect()
    }

    /// The cluster metrics lines so far, each parsed; a line with the message
    /// that is not exactly one JSON object fails the test.
    fn metrics_lines(&self) -> Vec<Value> {
        self.lines_with(MESSAGE)
            .iter()
            .map(|line| {
                assert!(
                    line.starts_with('{'),
                    "the metrics line is a JSON line of its own: {line}"
                );
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
            })
            .filter(|line: &Value| line["metrics"] == true)
            .collect()
    }

    /// Waits until stdout has at least `count` lines containing `text`,
    /// failing if the agent exits meanwhile.
    async fn wait_for_lines(&mut self, text: &str, count: usize) -> Vec<String> {
        let what = format!("{count} log line(s) with {text:?}");
        test_support::wait_for(&what, LONG, || {
            if let Some(status) = self.child.try_wait().expect("the agent's status") {
                panic!("the agent exited with {status}; {}", self.output());
            }
            let lines = self.lines_with(text);
            let output = self.output();
            async move {
                if lines.len() >= count {
                    Ok(lines)
                } else {
                    Err(format!("{} such lines; {output}", lines.len()))
                }
            }
        })
        .await
    }

    fn assert_running(&mut self) {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "the agent still runs; {}",
            self.output()
        );
    }
}

/// Creates a Node as a kubelet registers one (no kubelet here: the object
/// only), with its capacity in the status.
async fn create_node(client: &Client, name: &str, labels: Value, capacity: Option<Value>) {
    let api = Api::<Node>::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
    }))
    .unwrap();
    api.create(&PostParams::default(), &node)
        .await
        .unwrap_or_else(|e| panic!("Node {name} is created: {e}"));
    if let Some(capacity) = capacity {
        api.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"capacity": capacity}})),
        )
        .await
        .unwrap_or_else(|e| panic!("Node {name}'s capacity is written: {e}"));
    }
}

async fn create_volume(client: &Client, name: &str, storage: &str, claim: Option<(&str, &str)>) {
    let mut spec = json!({
        "capacity": {"storage": storage},
        "accessModes": ["ReadWriteOnce"],
        "hostPath": {"path": format!("/tmp/{name}")},
    });
    if let Some((namespace, claim)) = claim {
        spec["claimRef"] =
            json!({"kind": "PersistentVolumeClaim", "namespace": namespace, "name": claim});
    }
    let volume: PersistentVolume =
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap();
    Api::<PersistentVolume>::all(client.clone())
        .create(&PostParams::default(), &volume)
        .await
        .unwrap_or_else(|e| panic!("PersistentVolume {name} is created: {e}"));
}

/// Two Nodes with capacities (one labelled with an instance type, one with
/// quantities in non-canonical form), one without a status, a bound and an
/// unbound PersistentVolume; returns the `clusterInfo` the original agent
/// logs for them (the API server's quantities, in canonical form as Go's
/// `Quantity.String()` gives them; no metrics.k8s.io here: `usage` empty).
async fn create_cluster_objects(client: &Client) -> Value {
    create_node(
        client,
        "node-a",
        json!({"beta.kubernetes.io/instance-type": "m5.xlarge", "kubernetes.io/os": "linux"}),
        Some(json!({"cpu": "4", "memory": "16Gi", "ephemeral-storage": "100Gi", "pods": "110", "hugepages-2Mi": "0"})),
    )
    .await;
    create_node(
        client,
        "node-b",
        json!({"node.kubernetes.io/instance-type": "not-the-beta-label"}),
        Some(json!({"cpu": "2000m", "memory": "1024Mi", "ephemeral-storage": "20G", "pods": "64"})),
    )
    .await;
    create_node(client, "node-c", json!({}), None).await;
    create_volume(client, "pv-bound", "5Gi", Some(("shop", "orders-data"))).await;
    create_volume(client, "pv-free", "500Mi", None).await;
    json!({
        "resources": [
            {"nodeName": "node-a", "instanceType": "m5.xlarge",
             "capacity": {"cpu": "4", "ephemeralStorage": "100Gi", "memory": "16Gi", "pods": "110"}},
            {"nodeName": "node-b", "instanceType": "",
             "capacity": {"cpu": "2", "ephemeralStorage": "20G", "memory": "1Gi", "pods": "64"}},
            {"nodeName": "node-c", "instanceType": "",
             "capacity": {"cpu": "0", "ephemeralStorage": "0", "memory": "0", "pods": "0"}},
        ],
        "usage": [],
        "persistentVolumes": [
            {"name": "pv-bound", "capacity": "5Gi", "claim": {"name": "orders-data", "namespace": "shop"}},
            {"name": "pv-free", "capacity": "500Mi"},
        ],
    })
}

/// The line has exactly the original's fields and values.
fn assert_line(line: &Value, cluster_info: &Value) {
    assert_eq!(&line["clusterInfo"], cluster_info, "clusterInfo of {line}");
    assert_eq!(line["metrics"], true, "{line}");
    assert_eq!(line["level"], "info", "{line}");
    assert_eq!(line["msg"], MESSAGE, "{line}");
    let time = line["time"].as_str().expect("time is a string");
    time.parse::<jiff::Timestamp>()
        .unwrap_or_else(|e| panic!("time {time:?} is not RFC 3339: {e}"));
    let mut keys: Vec<&str> = line
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["clusterInfo", "level", "metrics", "msg", "time"],
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_manifests_rbac_the_line_lists_nodes_and_volumes_every_interval_and_a_refused_list_only_skips_it(
) {
    let world = World::new().await;
    let cluster_info = create_cluster_objects(&world.client).await;
    world.configure_with_fresh_token().await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let kubeconfig = service_account_kubeconfig(&world, &accounts::deploy_rbac(), dir.path()).await;
    let mut agent = AgentProcess::start(
        &world,
        &kubeconfig,
        dir.path(),
        &[
            ("APP_METRICS_LOGGING_TIME_INTERVAL", "1s"),
            ("APP_LOG_FORMAT", "json"),
        ],
    );

    let access = agent.wait_for_lines("Kubernetes access checked", 1).await;
    assert!(access[0].contains("logged every 1s"), "{}", access[0]);
    agent.wait_for_lines(MESSAGE, 3).await;
    let lines = agent.metrics_lines();
    assert!(lines.len() >= 3, "{}", agent.output());
    for line in &lines {
        assert_line(line, &cluster_info);
    }
    // JSON logs: every line of stdout is one JSON object.
    for line in agent.stdout().lines() {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
    // The API server serves no metrics.k8s.io: said once, not per line.
    let not_served = agent.lines_with(NOT_SERVED);
    assert_eq!(not_served.len(), 1, "{}", agent.output());
    world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;

    // The rights go while the agent runs: one warning per interval, no line,
    // nothing else is affected.
    let roles = Api::<ClusterRole>::all(world.client.clone());
    let role = roles.get(SERVICE_ACCOUNT).await.expect("the ClusterRole");
    let mut role = serde_json::to_value(role).unwrap();
    let rules: Vec<Value> = role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|rule| !is_metrics_rule(rule))
        .cloned()
        .collect();
    role["rules"] = rules.into();
    let role: ClusterRole = serde_json::from_value(role).unwrap();
    roles
        .replace(SERVICE_ACCOUNT, &PostParams::default(), &role)
        .await
        .expect("the ClusterRole is replaced");
    let warnings = agent
        .wait_for_lines("no cluster metrics line this time", 2)
        .await;
    assert!(
        warnings[0].contains("forbidden") && warnings[0].contains("\"level\":\"WARN\""),
        "{}",
        warnings[0]
    );
    let before = agent.metrics_lines().len();
    agent
        .wait_for_lines("no cluster metrics line this time", warnings.len() + 1)
        .await;
    assert_eq!(
        agent.metrics_lines().len(),
        before,
        "no line without the rights"
    );
    agent.assert_running();
    assert_eq!(
        world.state().await,
        Some(ConnectionState::Synchronized),
        "{}",
        agent.output()
    );
    assert_eq!(agent.lines_with(NOT_SERVED).len(), 1, "{}", agent.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_kymas_rbac_the_line_is_logged_as_json_in_the_text_log() {
    let world = World::new().await;
    let cluster_info = create_cluster_objects(&world.client).await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let kubeconfig = service_account_kubeconfig(&world, &kyma_rbac(), dir.path()).await;
    let mut agent = AgentProcess::start(
        &world,
        &kubeconfig,
        dir.path(),
        &[
            ("APP_METRICS_LOGGING_TIME_INTERVAL", "500ms"),
            ("APP_LOG_FORMAT", "text"),
        ],
    );
    agent.wait_for_lines(MESSAGE, 2).await;
    for line in agent.metrics_lines() {
        assert_line(&line, &cluster_info);
    }
    let access = agent.lines_with("Kubernetes access checked");
    assert!(
        access.len() == 1 && access[0].contains("cluster_metrics=logged every 500ms"),
        "{access:?}"
    );
    // The rest of the log is text.
    assert!(
        agent
            .stdout()
            .lines()
            .any(|line| line.contains(" INFO ") && !line.starts_with('{')),
        "{}",
        agent.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_list_on_nodes_and_volumes_the_line_is_off_said_once_and_the_agent_works() {
    let world = World::new().await;
    create_cluster_objects(&world.client).await;
    world.configure_with_fresh_token().await;
    // deploy/'s RBAC without the rules for the line (as it was before it).
    let mut rbac = accounts::deploy_rbac();
    for object in rbac.iter_mut().filter(|o| o["kind"] == "ClusterRole") {
        let rules: Vec<Value> = object["rules"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|rule| !is_metrics_rule(rule))
            .cloned()
            .collect();
        object["rules"] = rules.into();
    }
    let dir = tempfile::tempdir().expect("a temp dir");
    let kubeconfig = service_account_kubeconfig(&world, &rbac, dir.path()).await;
    let mut agent = AgentProcess::start(
        &world,
        &kubeconfig,
        dir.path(),
        &[("APP_METRICS_LOGGING_TIME_INTERVAL", "300ms")],
    );
    let access = agent.wait_for_lines("Kubernetes access checked", 1).await;
    assert!(
        access[0].contains("cluster_metrics=off (no list on nodes and persistentvolumes)"),
        "{}",
        access[0]
    );
    // Synchronized, and then another cycle: many intervals of 300 ms later.
    let synchronized = world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    let first_sync = synchronized.status.unwrap().connection_status.last_sync;
    world
        .wait_for_connection("a later cycle", SHORT, |c| {
            c.status
                .as_ref()
                .is_some_and(|s| s.connection_status.last_sync != first_sync)
        })
        .await;
    let connected = agent.lines_with("Kubernetes access checked");
    assert_eq!(connected.len(), 1, "{}", agent.output());
    assert!(agent.metrics_lines().is_empty(), "{}", agent.output());
    assert!(
        agent.lines_with("cluster metrics").is_empty()
            && agent.lines_with("nodes").len() == 1
            && agent.lines_with(NOT_SERVED).is_empty(),
        "one line about it, at start: {}",
        agent.output()
    );
    agent.assert_running();
}
