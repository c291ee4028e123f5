//! The image, built and run as Kyma runs it: `scripts/image.sh` builds it
//! with podman (a static binary in an image `FROM scratch`, no registry), and
//! the container is started as Kyma's Deployment
//! (`tests/fixtures/kyma/compass-runtime-agent.yaml`) starts it: its `args`,
//! its environment, UID/GID 65535, a read-only root filesystem, no
//! capabilities, no privilege escalation, and the Pod's in-cluster
//! configuration (`KUBERNETES_SERVICE_HOST`/`PORT` and a ServiceAccount token,
//! CA and namespace mounted read-only at
//! `/var/run/secrets/kubernetes.io/serviceaccount`), under Kyma's RBAC and
//! CRDs. Compass is compass-sim, reached by a host name that only the
//! container's `/etc/hosts` knows.
//!
//! Needs podman (with runc, the cgroupfs manager and no default ulimits on
//! these machines; `.ci/run` installs and configures them). Without podman
//! the test is skipped and says so, unless `CI` is set: then it fails.
//!
//! Two deviations from a Pod, both forced by host networking (the API server
//! and compass-sim listen on the host's loopback): the health port is a free
//! one instead of 8090 (`APP_HEALTH_PORT`), and the loopback metrics listener
//! (`APP_METRICS_ADDRESS`, default `127.0.0.1:9090`, which Kyma does not set)
//! is a free port too; another process on the machine may hold either.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::accounts::{self, service_account_token};
use common::{free_port, tool_is_installed, World, LONG, NS, RUNTIME_ID, TENANT};
use compass_runtime_agent::crd::application::Application;
use compass_runtime_agent::crd::ConnectionState;
use compass_runtime_agent::sync::names;
use compass_sim::{CompassSim, SimConfig};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use serde_json::Value;

/// The tag the test builds; `scripts/image.sh`'s default is `:dev`.
const IMAGE: &str = "localhost/compass-runtime-agent:test";
/// Where the image has its binary: what Kyma's Deployment passes as `args`.
const BINARY: &str = "/app/compass-runtime-agent";
/// A Compass host name that only the container's `/etc/hosts` knows.
const COMPASS_HOST: &str = "compass.local";
const SERVICE_ACCOUNT: &str = "compass-runtime-agent";
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Kubernetes' default `terminationGracePeriodSeconds`; Kyma's Deployment
/// sets none.
const GRACE_PERIOD: Duration = Duration::from_secs(30);

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/kyma")
        .join(name)
}

fn kyma_objects() -> Vec<Value> {
    accounts::yaml_documents(&fixture("compass-runtime-agent.yaml"))
}

fn kyma_crds() -> Vec<CustomResourceDefinition> {
    accounts::yaml_documents(&fixture("crds.yaml"))
        .into_iter()
        .map(|crd| serde_json::from_value(crd).expect("a Kyma CRD parses"))
        .collect()
}

fn kyma_deployment() -> Deployment {
    let deployment = kyma_objects()
        .into_iter()
        .find(|o| o["kind"] == "Deployment")
        .expect("Kyma's Deployment is in the fixture");
    serde_json::from_value(deployment).expect("Kyma's Deployment parses")
}

/// `podman <args>`, its output; fails the test when podman cannot be run.
async fn podman(args: &[&str]) -> Output {
    tokio::process::Command::new("podman")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap_or_else(|e| panic!("podman {args:?} cannot be run: {e}"))
}

/// `podman <args>`, which must succeed; its standard output, trimmed.
async fn podman_ok(args: &[&str]) -> String {
    let output = podman(args).await;
    assert!(
        output.status.success(),
        "podman {args:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Builds the image with `scripts/image.sh`; returns what it printed (the
/// sizes). Its progress goes to this process' standard error.
async fn build_image() -> String {
    let started = Instant::now();
    let output = tokio::process::Command::new("bash")
        .arg(repository_root().join("scripts/image.sh"))
        .arg(IMAGE)
        .current_dir(repository_root())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .await
        .expect("bash runs scripts/image.sh");
    let printed = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "scripts/image.sh {IMAGE} failed ({}): {printed}",
        output.status
    );
    assert_eq!(
        printed.lines().last(),
        Some(IMAGE),
        "its last line: {printed}"
    );
    eprintln!(
        "scripts/image.sh built {IMAGE} in {:.0?}:\n{printed}",
        started.elapsed()
    );
    printed
}

/// A container that is removed when the test ends, also on a panic.
struct Container {
    name: String,
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = std::process::Command::new("podman")
            .args(["rm", "--force", "--time", "0", &self.name])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Container {
    async fn inspect(&self, format: &str) -> String {
        podman_ok(&["inspect", "--format", format, &self.name]).await
    }

    async fn logs(&self) -> String {
        let output = podman(&["logs", &self.name]).await;
        String::from_utf8_lossy(&output.stdout).to_string()
            + &String::from_utf8_lossy(&output.stderr)
    }

    /// The agent's process id on the host, once the container runs.
    async fn pid(&self) -> u32 {
        let pid: u32 = self
            .inspect("{{.State.Pid}}")
            .await
            .parse()
            .expect("a process id");
        assert!(pid > 0, "the container runs: {}", self.logs().await);
        pid
    }
}

/// What the mounted ServiceAccount directory holds, and the in-cluster
/// address of the API server.
struct InCluster {
    dir: tempfile::TempDir,
    host: String,
    port: u16,
    token: String,
}

/// A Pod's service-account volume for Kyma's ServiceAccount: a bound token
/// from the TokenRequest API, the API server's CA and the namespace, readable
/// by any user (the kubelet's default mode 0644).
async fn in_cluster(world: &World) -> InCluster {
    use std::os::unix::fs::PermissionsExt;
    let token = service_account_token(&world.client, NS, SERVICE_ACCOUNT).await;
    let kubeconfig = kube::config::Kubeconfig::read_from(world.env.kubeconfig_path())
        .expect("the test environment's kubeconfig parses");
    let cluster = kubeconfig.clusters[0]
        .cluster
        .clone()
        .expect("a cluster in the kubeconfig");
    let ca = match (
        &cluster.certificate_authority_data,
        &cluster.certificate_authority,
    ) {
        (Some(data), _) => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(data)
                .expect("certificate-authority-data is base64")
        }
        (None, Some(path)) => std::fs::read(path).expect("the API server's CA file"),
        (None, None) => panic!("the kubeconfig names no CA for the API server"),
    };
    let server: reqwest::Url = cluster
        .server
        .as_deref()
        .expect("the API server's address")
        .parse()
        .expect("the API server's URL");
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for (name, content) in [
        ("token", token.as_bytes()),
        ("ca.crt", &ca[..]),
        ("namespace", NS.as_bytes()),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, content).expect("a service-account file is written");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    InCluster {
        dir,
        host: server.host_str().expect("a host").to_string(),
        port: server.port_or_known_default().expect("a port"),
        token,
    }
}

/// The ports the agent serves on, free on the host (see the module's doc).
struct Ports {
    health: u16,
    metrics: u16,
}

/// `podman run` for Kyma's container: the image's ENTRYPOINT with the
/// Deployment's args, environment and security context, the in-cluster
/// configuration, host networking and the Compass host name in `/etc/hosts`.
/// `extra` are more `podman run` options (before the image).
async fn run_as_kyma(
    deployment: &Deployment,
    cluster: &InCluster,
    ports: &Ports,
    extra_env: &[(&str, &str)],
    extra: &[String],
) -> Container {
    let pod = deployment.spec.template.spec.clone().unwrap();
    let container = &pod.containers[0];
    let pod_security = pod.security_context.clone().unwrap();
    let security = container.security_context.clone().unwrap();
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    let dropped = security.capabilities.clone().unwrap().drop.unwrap();
    assert_eq!(dropped, ["ALL"]);
    let uid = pod_security.run_as_user.expect("runAsUser");
    let gid = pod_security.run_as_group.expect("runAsGroup");
    assert!(container.command.is_none(), "Kyma sets args only");
    let args = container.args.clone().expect("Kyma's args");
    assert_eq!(args, [BINARY]);

    let name = test_support::unique_name("compass-runtime-agent-test");
    let mut run: Vec<String> = [
        "run",
        "--detach",
        "--name",
        &name,
        "--label",
        "compass-runtime-agent.test=container",
        // Host networking: the API server and compass-sim are on loopback.
        "--network",
        "host",
        "--add-host",
        &format!("{COMPASS_HOST}:127.0.0.1"),
        "--user",
        &format!("{uid}:{gid}"),
        // readOnlyRootFilesystem: no tmpfs either (podman adds /run, /tmp
        // and /var/tmp unless told not to; a Pod has none).
        "--read-only",
        "--read-only-tmpfs=false",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--stop-timeout",
        &GRACE_PERIOD.as_secs().to_string(),
        // A safety net: a container left behind by a killed test ends itself.
        "--timeout",
        "900",
        "--volume",
        &format!("{}:{SERVICE_ACCOUNT_DIR}:ro", cluster.dir.path().display()),
        "--env",
        &format!("KUBERNETES_SERVICE_HOST={}", cluster.host),
        "--env",
        &format!("KUBERNETES_SERVICE_PORT={}", cluster.port),
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let mut env: Vec<(String, String)> = container
        .env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|var| (var.name, var.value.unwrap_or_default()))
        .collect();
    env.push(("APP_HEALTH_PORT".into(), ports.health.to_string()));
    env.push((
        "APP_METRICS_ADDRESS".into(),
        format!("127.0.0.1:{}", ports.metrics),
    ));
    for (key, value) in extra_env {
        env.retain(|(k, _)| k != key);
        env.push((key.to_string(), value.to_string()));
    }
    for (key, value) in env {
        run.push("--env".into());
        run.push(format!("{key}={value}"));
    }
    run.extend(extra.iter().cloned());
    run.push(IMAGE.into());
    run.extend(args);
    let run: Vec<&str> = run.iter().map(String::as_str).collect();
    let container = Container { name };
    podman_ok(&run).await;
    container
}

/// Waits for `/healthz` to answer `ok`, failing at once when the container
/// has stopped.
async fn wait_for_health(container: &Container, port: u16) {
    let url = format!("http://127.0.0.1:{port}/healthz");
    let answered = test_support::wait_for("/healthz of the container", LONG, || {
        let url = url.clone();
        async move {
            let state = container.inspect("{{.State.Status}}").await;
            if state != "running" {
                panic!(
                    "the container is {state}, not running: {}",
                    container.logs().await
                );
            }
            reqwest::get(url).await.map_err(|e| e.to_string())
        }
    })
    .await;
    assert_eq!(answered.status(), 200);
    assert_eq!(answered.text().await.unwrap(), "ok");
}

/// A field of `/proc/<pid>/status`, e.g. `Uid`.
fn proc_status(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .trim()
        .to_string()
}

/// Sends SIGTERM, as the kubelet does, and returns the exit code and how long
/// the agent took; fails when it runs longer than the grace period.
async fn terminate(container: &Container) -> (i32, Duration) {
    let sent = Instant::now();
    podman_ok(&["kill", "--signal", "TERM", &container.name]).await;
    let waited = tokio::time::timeout(GRACE_PERIOD, podman(&["wait", &container.name])).await;
    let took = sent.elapsed();
    let output = match waited {
        Ok(output) => output,
        Err(_) => panic!(
            "still running {GRACE_PERIOD:?} after SIGTERM: {}",
            container.logs().await
        ),
    };
    assert!(
        output.status.success(),
        "podman wait: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let waited: i32 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("podman wait prints the exit code");
    let inspected: i32 = container
        .inspect("{{.State.ExitCode}}")
        .await
        .parse()
        .expect("an exit code");
    assert_eq!(waited, inspected, "podman wait and podman inspect agree");
    (waited, took)
}

/// The files of the image, as `podman export` of a container never started
/// (so without the mount points a start adds).
async fn image_files() -> Vec<String> {
    let name = test_support::unique_name("compass-runtime-agent-files");
    let created = Container { name };
    podman_ok(&["create", "--name", &created.name, IMAGE]).await;
    let exported = tempfile::NamedTempFile::new().expect("a temp file");
    let path = exported.path().to_str().unwrap().to_string();
    podman_ok(&["export", "--output", &path, &created.name]).await;
    let listing = tokio::process::Command::new("tar")
        .args(["-tf", &path])
        .output()
        .await
        .expect("tar runs");
    assert!(listing.status.success(), "tar -tf of the export");
    String::from_utf8_lossy(&listing.stdout)
        .lines()
        .map(|line| {
            line.trim_start_matches("./")
                .trim_end_matches('/')
                .to_string()
        })
        .filter(|line| !line.is_empty() && line != ".")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_runs_as_kymas_deployment_runs_it_synchronizes_and_stops_on_sigterm_with_0() {
    if !tool_is_installed(
        "podman",
        "the image is neither built nor run",
        "Debian: apt-get install podman runc; .ci/run does it and configures them",
    ) {
        return;
    }
    let built = build_image().await;

    // The image: the binary where Kyma looks, started by the ENTRYPOINT, as
    // UID/GID 65535, with the CA certificates; nothing else.
    let config: Value = serde_json::from_str(
        &podman_ok(&["image", "inspect", "--format", "{{json .Config}}", IMAGE]).await,
    )
    .expect("the image's configuration is JSON");
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!([BINARY]),
        "{config}"
    );
    assert_eq!(config["User"], "65535:65535", "{config}");
    let mut files = image_files().await;
    files.sort();
    assert_eq!(
        files,
        [
            "app",
            "app/compass-runtime-agent",
            "etc",
            "etc/ssl",
            "etc/ssl/certs",
            "etc/ssl/certs/ca-certificates.crt"
        ],
        "the image's files"
    );

    // Kyma's CRDs, ServiceAccount and RBAC; compass-sim as Compass at a host
    // name, with a server certificate for that name.
    let mut world = World::with_crds(kyma_crds()).await;
    let applied = accounts::apply_rbac(&world.client, &kyma_objects()).await;
    assert_eq!(
        applied, 9,
        "ServiceAccount, ClusterRole and 3 Roles with their bindings"
    );
    world.sim = CompassSim::start(SimConfig {
        public_host: Some(COMPASS_HOST.into()),
        ..SimConfig::default()
    })
    .await
    .expect("compass-sim starts");
    world
        .sim
        .create_runtime(RUNTIME_ID, TENANT)
        .expect("runtime is created");
    let mut apps = compass_sim::model::generate_applications(2, 1, 1, 1);
    let second_app = apps.pop().unwrap();
    let first_app = apps.pop().unwrap();
    world
        .sim
        .put_application(RUNTIME_ID, first_app.clone())
        .expect("an application");
    world.configure_with_fresh_token().await;
    assert!(
        world
            .sim
            .connector_url()
            .starts_with(&format!("https://{COMPASS_HOST}:")),
        "CONNECTOR_URL names the host: {}",
        world.sim.connector_url()
    );
    let cluster = in_cluster(&world).await;
    let deployment = kyma_deployment();

    // 1. As Kyma runs it: APP_SKIP_COMPASS_TLS_VERIFY=true, from Kyma's env.
    let ports = Ports {
        health: free_port(),
        metrics: free_port(),
    };
    let started = Instant::now();
    let agent = run_as_kyma(&deployment, &cluster, &ports, &[], &[]).await;
    wait_for_health(&agent, ports.health).await;
    let pid = agent.pid().await;

    // The process: Kyma's args after the ENTRYPOINT, as 65535, without
    // capabilities or a way to gain any, on a read-only root.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("its command line");
    let cmdline: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|arg| !arg.is_empty())
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect();
    assert_eq!(cmdline, [BINARY, BINARY], "ENTRYPOINT + Kyma's args");
    for field in ["Uid", "Gid"] {
        let ids = proc_status(pid, field);
        assert!(
            ids.split_whitespace().all(|id| id == "65535"),
            "{field}: {ids}"
        );
    }
    for field in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(proc_status(pid, field), "0000000000000000", "{field}");
    }
    assert_eq!(proc_status(pid, "NoNewPrivs"), "1");
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let root = mounts
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .expect("the root mount");
    assert!(
        root.split(' ')
            .nth(5)
            .is_some_and(|options| options.split(',').any(|o| o == "ro")),
        "the root is read-only: {root}"
    );
    assert!(
        !mounts.lines().any(|l| l.split(' ').nth(8) == Some("tmpfs")
            && ["/tmp", "/run", "/var/tmp"].contains(&l.split(' ').nth(4).unwrap_or_default())),
        "no writable tmpfs a Pod would not have: {mounts}"
    );
    // The Compass host name is known to the container's /etc/hosts alone.
    let hosts = std::fs::read_to_string(format!("/proc/{pid}/root/etc/hosts")).unwrap();
    assert!(hosts.contains(COMPASS_HOST), "{hosts}");
    let host_hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    assert!(
        !host_hosts.contains(COMPASS_HOST),
        "{COMPASS_HOST} must not be in the host's /etc/hosts for the test to mean something"
    );

    let connection = world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    let synchronized_after = started.elapsed();
    let rss = proc_status(pid, "VmRSS");
    let peak = proc_status(pid, "VmHWM");
    let first_name = names::normalize_application_name(&first_app.name);
    let applications = Api::<Application>::all(world.client.clone());
    if let Err(error) = applications.get(&first_name).await {
        panic!(
            "Application {first_name}: {error}; log: {}",
            agent.logs().await
        );
    }
    assert!(
        connection
            .status
            .as_ref()
            .is_some_and(|s| s.connection_status.error.is_empty()),
        "{connection:?}"
    );
    let metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", ports.health))
        .await
        .expect("/metrics on the health port");
    assert_eq!(metrics.status(), 200);
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains("compass_runtime_agent_connection_state{state=\"Synchronized\"} 1"),
        "{metrics}"
    );
    let log = agent.logs().await;
    assert!(log.contains("Kubernetes access checked"), "{log}");
    assert!(
        log.contains("read one by one by name"),
        "Kyma's RBAC: {log}"
    );
    assert!(!log.contains(&cluster.token), "the token is never logged");
    assert_eq!(agent.inspect("{{.State.Status}}").await, "running");

    let (code, took) = terminate(&agent).await;
    assert_eq!(
        code,
        0,
        "exit code after SIGTERM; log: {}",
        agent.logs().await
    );
    eprintln!(
        "container (as Kyma runs it): Synchronized {synchronized_after:.1?} after podman run; \
         RSS at Synchronized {rss} (peak {peak}); exit {code} {took:.1?} after SIGTERM"
    );

    // 2. Trust from the image's CA bundle path: the same container with
    // verification on and compass-sim's CA where the image has its CA
    // certificates. It takes over the stored certificate and synchronizes a
    // new application, over TLS verified for the host name.
    let ca_file = tempfile::NamedTempFile::new().expect("a temp file");
    std::fs::write(ca_file.path(), world.sim.server_ca_pem()).unwrap();
    std::fs::set_permissions(
        ca_file.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    world
        .sim
        .put_application(RUNTIME_ID, second_app.clone())
        .expect("a second application");
    let ports = Ports {
        health: free_port(),
        metrics: free_port(),
    };
    let verifying = run_as_kyma(
        &deployment,
        &cluster,
        &ports,
        &[("APP_SKIP_COMPASS_TLS_VERIFY", "false")],
        &[
            "--volume".into(),
            format!(
                "{}:/etc/ssl/certs/ca-certificates.crt:ro",
                ca_file.path().display()
            ),
        ],
    )
    .await;
    wait_for_health(&verifying, ports.health).await;
    let second_name = names::normalize_application_name(&second_app.name);
    test_support::wait_for(
        "the second application, synchronized with verified TLS",
        LONG,
        || async {
            match applications.get_opt(&second_name).await {
                Ok(Some(application)) => Ok(application),
                Ok(None) => Err(format!("no Application {second_name} yet")),
                Err(error) => Err(error.to_string()),
            }
        },
    )
    .await;
    world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    let log = verifying.logs().await;
    let (code, _) = terminate(&verifying).await;
    assert_eq!(code, 0, "exit code after SIGTERM; log: {log}");

    println!("{built}");
    println!(
        "RSS of the agent in the container at Synchronized: {rss} (peak {peak}); \
         Synchronized {synchronized_after:.1?} after podman run"
    );
}
