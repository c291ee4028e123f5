//! The drop-in: the agent under what Kyma's application-connector module
//! deploys for the original agent today (`tests/fixtures/kyma/`, verbatim):
//! its CRDs (no status subresources), its ServiceAccount and RBAC (get,
//! create, update, delete; no patch, no list or watch on Secrets, no Events,
//! no ConfigMaps), its Deployment's settings, and the binary started as that
//! Deployment starts it (its args, as UID 65535 on a read-only root
//! filesystem, with a bound ServiceAccount token).

mod common;

use std::path::Path;
use std::time::Duration;

use common::accounts::{self, service_account_token, token_client};
use common::agent_process::AgentProcess;
use common::{free_port, CONFIG_NAME, LONG, NS, RUNTIME_ID};
use compass_runtime_agent::agent::Agent;
use compass_runtime_agent::config::SourceKind;
use compass_runtime_agent::crd::application::Application;
use compass_runtime_agent::crd::ConnectionState;
use compass_runtime_agent::sync::names;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use tokio_util::sync::CancellationToken;

use common::kyma::{
    deployment as kyma_deployment, settings as kyma_settings, world as kyma_world, SERVICE_ACCOUNT,
    SERVICE_ACCOUNT_USER,
};

#[test]
fn kymas_deployment_settings_are_the_agents() {
    let settings = kyma_settings();
    assert_eq!(
        settings.agent_configuration_secret.to_string(),
        "kyma-system/compass-agent-configuration"
    );
    // Not set by Kyma: the Secret, and else a ConfigMap of that name.
    assert_eq!(settings.agent_configuration_source, SourceKind::Auto);
    assert_eq!(
        settings.ca_certificates_secret.to_string(),
        "istio-system/kyma-gateway-certs-cacert"
    );
    assert_eq!(settings.controller_sync_period, Duration::from_secs(180));
    assert_eq!(settings.minimal_compass_sync_time, Duration::from_secs(15));
    assert!(settings.skip_compass_tls_verify);
    assert_eq!(settings.health_port, 8090);
    assert!(!settings.leader_election, "Kyma grants no Leases");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_kymas_rbac_and_crds_the_agent_connects_synchronizes_renews_reconnects_and_restarts()
{
    let mut world = kyma_world().await;
    let token = service_account_token(&world.client, NS, SERVICE_ACCOUNT).await;
    let client = token_client(&world, &token, SERVICE_ACCOUNT_USER).await;
    common::drop_in::run(&mut world, &client, common::drop_in::Rbac::NoWatch).await;
}

/// The Go agent's state contract, which the components that provision
/// runtimes wait on: one Application that cannot be written (its name is
/// taken by an Application that is not Compass's) leaves the runtime
/// `Synchronized`, the others written, and the failure where Kyma's CRD keeps
/// it (`synchronizationStatus.error`; the per-application results are pruned).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_kymas_crds_one_application_that_cannot_be_written_leaves_the_runtime_synchronized() {
    use compass_runtime_agent::crd::application::ApplicationSpec;
    use kube::api::PostParams;

    let mut world = kyma_world().await;
    let token = service_account_token(&world.client, NS, SERVICE_ACCOUNT).await;
    let client = token_client(&world, &token, SERVICE_ACCOUNT_USER).await;
    let applications: Api<Application> = Api::all(world.client.clone());
    let foreign = Application::new(
        "mp-taken",
        ApplicationSpec {
            description: "not from Compass".into(),
            ..Default::default()
        },
    );
    applications
        .create(&PostParams::default(), &foreign)
        .await
        .expect("someone else's Application");
    let mut director = compass_sim::model::generate_applications(3, 1, 1, 0);
    director[0].name = "taken".into();
    for app in &director {
        world.sim.put_application(RUNTIME_ID, app.clone()).unwrap();
    }
    world.configure_with_fresh_token().await;
    world.start_agent_as(client).await;
    let connection = world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    let status = connection.status.unwrap();
    let sync = status
        .synchronization_status
        .expect("a synchronization status");
    assert!(
        sync.error.starts_with(
            "1 of 3 applications could not be synchronized: mp-taken: an Application named \"mp-taken\" exists and is not managed by Compass"
        ),
        "{}",
        sync.error
    );
    assert!(
        sync.applications.is_empty(),
        "Kyma's CRD prunes the per-application results"
    );
    for app in &director[1..] {
        let name = names::normalize_application_name(&app.name);
        assert!(
            applications.get_opt(&name).await.unwrap().is_some(),
            "{name} is written"
        );
    }
    let taken = applications.get("mp-taken").await.unwrap();
    assert_eq!(taken.spec.description, "not from Compass", "left alone");
    let metrics = world.metrics_text().await;
    assert!(
        metrics
            .lines()
            .any(|line| line == "compass_runtime_agent_applications_failed 1"),
        "{metrics}"
    );
    world.stop_agent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_kymas_rbac_a_config_map_alone_and_leader_election_are_clear_errors_not_crashes() {
    let mut world = kyma_world().await;
    let token = world.sim.issue_token(RUNTIME_ID).expect("a token");
    world.write_config_map(world.config_values(&token)).await;
    let service_token = service_account_token(&world.client, NS, SERVICE_ACCOUNT).await;
    let client = token_client(&world, &service_token, SERVICE_ACCOUNT_USER).await;

    // Leader election cannot work without Leases, which Kyma does not grant:
    // one clear error at start, not a replica that stands by forever.
    let mut electing = world.settings.clone();
    electing.leader_election = true;
    let refused = Agent::start(client.clone(), electing, CancellationToken::new()).await;
    let error = refused
        .err()
        .expect("the agent refuses to start")
        .to_string();
    assert!(
        error
            .contains("may not get, create and update the Lease kyma-system/compass-runtime-agent"),
        "{error}"
    );

    world.start_agent_as(client).await;
    let failed = world
        .wait_for_connection("a status that says why", LONG, |c| {
            c.status
                .as_ref()
                .is_some_and(|s| s.connection_status.error.contains("does not exist"))
        })
        .await;
    let status = failed.status.unwrap();
    assert_eq!(status.connection_state, ConnectionState::ConnectionFailed);
    let error = &status.connection_status.error;
    assert!(
        error.contains(&format!("Secret {NS}/{CONFIG_NAME} does not exist"))
            && error.contains("may not read ConfigMaps"),
        "{error}"
    );
    world.stop_agent().await;
}

/// The sum of a metric's samples whose labels contain `with`.
fn metric(text: &str, name: &str, with: &str) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(name) && line.contains(with))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_kymas_rbac_a_new_configuration_is_used_without_a_watch_and_without_waiting_out_the_backoff(
) {
    let mut world = kyma_world().await;
    world.settings.max_retry_delay = Duration::from_secs(120);
    let service_token = service_account_token(&world.client, NS, SERVICE_ACCOUNT).await;
    let client = token_client(&world, &service_token, SERVICE_ACCOUNT_USER).await;
    world.start_agent_as(client).await;
    // Five failed attempts without a configuration: the next waits at least
    // 8 s (the base of 1 s doubled four times, and at least half of that).
    test_support::wait_for("five failed connection attempts", LONG, || async {
        let failures = metric(
            &world.metrics_text().await,
            "compass_runtime_agent_connection_establishments_total",
            "outcome=\"Failure\"",
        );
        (failures >= 5.0).then_some(())
    })
    .await;
    let written = std::time::Instant::now();
    world.configure_with_fresh_token().await;
    world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    // Kyma grants no watch on Secrets: the agent reads the source every
    // minimal sync time (1 s here) and tries at once when it changed.
    assert!(
        written.elapsed() < Duration::from_secs(7),
        "connected {:?} after the configuration was written; the backoff was not cut short",
        written.elapsed()
    );
    world.stop_agent().await;
}

// ---------------------------------------------------------------------------
// The binary, as Kyma's Deployment starts it
// ---------------------------------------------------------------------------

/// What the kubelet would run for Kyma's container with this image: the
/// ENTRYPOINT (our binary) followed by the Deployment's `args`, with the
/// Deployment's environment, as its `runAsUser`/`runAsGroup`, and with the
/// root filesystem read-only (a private mount namespace in which `/` is
/// remounted read-only). The Pod's service-account token is a kubeconfig
/// here, since the API server is not at the in-cluster address.
fn kyma_container_command(
    deployment: &Deployment,
    kubeconfig: &Path,
    health_port: u16,
) -> tokio::process::Command {
    let pod = deployment.spec.template.spec.clone().unwrap();
    let container = &pod.containers[0];
    let pod_security = pod.security_context.clone().unwrap();
    let security = container.security_context.clone().unwrap();
    assert_eq!(security.read_only_root_filesystem, Some(true));
    let uid = pod_security.run_as_user.expect("runAsUser");
    let gid = pod_security.run_as_group.expect("runAsGroup");
    assert!(container.command.is_none(), "Kyma sets args only");
    let args = container.args.clone().expect("Kyma's args");
    assert_eq!(args, ["/app/compass-runtime-agent"]);

    let mut command = tokio::process::Command::new("unshare");
    command
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(r#"uid=$0 gid=$1; shift; mount -o remount,bind,ro / && exec setpriv --reuid="$uid" --regid="$gid" --clear-groups --inh-caps=-all --bounding-set=-all -- "$@""#)
        .arg(uid.to_string())
        .arg(gid.to_string())
        .arg(env!("CARGO_BIN_EXE_compass-runtime-agent"))
        .args(&args)
        .env_clear()
        .env("KUBECONFIG", kubeconfig)
        .env("PATH", "/usr/bin:/bin");
    for var in container.env.clone().unwrap_or_default() {
        command.env(var.name, var.value.unwrap_or_default());
    }
    // The one change: a free port instead of 8090, which another test may hold.
    command.env("APP_HEALTH_PORT", health_port.to_string());
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_started_as_kymas_deployment_starts_it_synchronizes_and_serves_health_and_metrics_on_8090s_port(
) {
    let world = kyma_world().await;
    let app = compass_sim::model::generate_applications(1, 1, 1, 1).remove(0);
    world
        .sim
        .put_application(RUNTIME_ID, app.clone())
        .expect("an application");
    // Kyma's Deployment trusts any Compass server certificate; its
    // CONNECTOR_URL is the simulator's.
    world.configure_with_fresh_token().await;

    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let token = service_account_token(&world.client, NS, SERVICE_ACCOUNT).await;
    let kubeconfig = accounts::write_token_kubeconfig(&world, &token, dir.path());
    let port = free_port();
    let log = dir.path().join("agent.log");
    let mut agent = kyma_container_command(&kyma_deployment(), &kubeconfig, port)
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(dir.path().join("agent.err")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .expect(
            "unshare and setpriv start (the test needs root, as CI has, for a mount namespace)",
        );
    let pid = agent.id().expect("the agent runs");

    let log_text = || {
        std::fs::read_to_string(&log).unwrap_or_default()
            + &std::fs::read_to_string(dir.path().join("agent.err")).unwrap_or_default()
    };
    let health = format!("http://127.0.0.1:{port}");
    let answered = test_support::wait_for("/healthz on the health port", LONG, || {
        let exited = agent.try_wait().ok().flatten();
        let url = format!("{health}/healthz");
        let log = log_text();
        async move {
            if let Some(status) = exited {
                panic!("the agent exited with {status}: {log}");
            }
            reqwest::get(url).await.map_err(|e| e.to_string())
        }
    })
    .await;
    assert_eq!(answered.status(), 200);
    assert_eq!(answered.text().await.unwrap(), "ok");

    // It is the agent, as UID 65535, on a read-only root.
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("the process' binary");
    assert!(exe.ends_with("compass-runtime-agent"), "{}", exe.display());
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap()
        .to_string();
    assert!(
        uid_line.split_whitespace().skip(1).all(|id| id == "65535"),
        "{uid_line}"
    );
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let root = mounts
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .expect("the root mount");
    assert!(
        root.split(' ')
            .nth(5)
            .is_some_and(|options| options.split(',').any(|o| o == "ro")),
        "{root}"
    );

    world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    let name = names::normalize_application_name(&app.name);
    Api::<Application>::all(world.client.clone())
        .get(&name)
        .await
        .unwrap_or_else(|e| panic!("Application {name}: {e}; log: {}", log_text()));
    let metrics = reqwest::get(format!("{health}/metrics"))
        .await
        .expect("/metrics on the health port");
    assert_eq!(metrics.status(), 200);
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains("compass_runtime_agent_connection_state{state=\"Synchronized\"} 1"),
        "{metrics}"
    );
    assert!(
        agent.try_wait().unwrap().is_none(),
        "still running: {}",
        log_text()
    );
    let text = log_text();
    assert!(
        text.contains("Kubernetes access checked"),
        "the mode is logged: {text}"
    );
    assert!(text.contains("read one by one by name"), "{text}");
    assert!(
        text.contains("cluster_state=\"read at every sync\""),
        "no watch under Kyma's RBAC: {text}"
    );
    assert!(
        !text.contains(&token),
        "the ServiceAccount token is never logged"
    );
    agent.kill().await.ok();
}

/// The image's ENTRYPOINT with what a Pod spec may pass: Kyma's args (the
/// binary's own path), a subcommand after them or alone, or nothing.
#[test]
fn the_binary_takes_kymas_args_a_subcommand_or_none() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_compass-runtime-agent"))
            .args(args)
            .env_clear()
            .env("KUBECONFIG", "/nonexistent/kubeconfig")
            .output()
            .expect("the binary runs")
    };
    for args in [&["crd"][..], &["/app/compass-runtime-agent", "crd"]] {
        let output = run(args);
        assert!(output.status.success(), "{args:?}: {output:?}");
        let yaml = String::from_utf8_lossy(&output.stdout);
        assert!(
            yaml.contains("name: compassconnections.compass.kyma-project.io"),
            "{args:?}"
        );
    }
    // No arguments, or only Kyma's: the agent itself, which here finds no cluster.
    for args in [&[][..], &["/app/compass-runtime-agent"]] {
        let output = run(args);
        let log = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {log}");
        assert!(
            log.contains("cannot configure the Kubernetes client"),
            "{args:?}: {log}"
        );
        assert!(!log.contains("unrecognized subcommand"), "{args:?}: {log}");
    }
}

/// The runtime id of every line a reconcile logs (its span's `runtime_id`),
/// in the text log format.
fn logged_runtime_ids(log: &str) -> Vec<&str> {
    log.match_indices("runtime_id=")
        .map(|(at, key)| {
            // `runtime_id="…"` (a span's field is quoted in the text format)
            let value = log[at + key.len()..].trim_start_matches('"');
            let end = value
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                .unwrap_or(value.len());
            &value[..end]
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_names_the_configured_runtime_also_when_the_certificate_is_only_renewed() {
    // On a real Compass (and compass-sim) the certificate's CN is the
    // SystemAuth id, not the runtime's: a log searched by runtime id must
    // find the cycles that only maintain the connection, too.
    let world = kyma_world().await;
    world.configure_with_fresh_token().await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let token = service_account_token(&world.client, NS, SERVICE_ACCOUNT).await;
    let kubeconfig = accounts::write_token_kubeconfig(&world, &token, dir.path());
    let environment = common::kyma::environment();

    // The first process connects with the token; the second starts from the
    // stored certificate, so its cycles only maintain the connection.
    let mut first = AgentProcess::spawn(&kubeconfig, &environment, dir.path());
    world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    assert_eq!(first.terminate(LONG).await, Some(0), "{}", first.log());
    // The cycle that connects names it once, like every other.
    let first_log = first.log();
    let named_twice: Vec<&str> = first_log
        .lines()
        .filter(|line| line.matches("runtime_id=").count() > 1)
        .collect();
    assert!(
        named_twice.is_empty(),
        "lines name the runtime twice:\n{}",
        named_twice.join("\n")
    );
    let chain = world
        .certificate_secret()
        .await
        .expect("the client certificate Secret")["crtChain"]
        .clone();
    let (_, pem) = x509_parser::pem::parse_x509_pem(chain.as_bytes()).expect("a PEM certificate");
    let certificate = pem.parse_x509().expect("an X.509 certificate");
    let common_name = certificate
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .expect("a CN")
        .to_string();
    assert_ne!(
        common_name, RUNTIME_ID,
        "the test needs a CN other than the runtime id"
    );

    let second = AgentProcess::spawn(&kubeconfig, &environment, dir.path());
    let log = test_support::wait_for("a sync of the restarted agent", LONG, || {
        let log = second.log();
        async move {
            if log.contains("applications synchronized") {
                Ok(log)
            } else {
                Err("no sync logged yet".to_string())
            }
        }
    })
    .await;
    let ids = logged_runtime_ids(&log);
    assert!(!ids.is_empty(), "no line names the runtime:\n{log}");
    assert!(
        ids.iter().all(|id| *id == RUNTIME_ID),
        "lines name the runtime {ids:?}, not only {RUNTIME_ID}:\n{log}"
    );
}
