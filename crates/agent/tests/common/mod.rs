//! End-to-end harness: a real kube-apiserver (its own per test, since
//! `compass-connection` and Applications are cluster-scoped and cannot be
//! isolated by name), compass-sim over real TLS, and the agent in-process.

#![allow(dead_code)]

pub mod accounts;
pub mod agent_process;
pub mod drop_in;
pub mod earlier_release;
pub mod go_agent;
pub mod go_form;
pub mod go_left;
pub mod kyma;

use std::collections::BTreeMap;
use std::time::Duration;

use compass_runtime_agent::agent::Agent;
use compass_runtime_agent::config::{NamespacedName, Settings, SourceKind};
use compass_runtime_agent::crd::{
    self, CompassConnection, ConnectionState, COMPASS_CONNECTION_NAME,
};
use compass_sim::{CompassSim, SimConfig};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::ByteString;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use test_support::TestEnv;
use tokio_util::sync::CancellationToken;

pub const RUNTIME_ID: &str = "runtime-e2e";
pub const TENANT: &str = "tenant-e2e";
pub const NS: &str = "kyma-system";
pub const CA_NS: &str = "istio-system";
pub const CONFIG_NAME: &str = "compass-agent-configuration";

pub struct World {
    pub env: TestEnv,
    pub client: Client,
    pub sim: CompassSim,
    pub settings: Settings,
    agent: Option<Agent>,
    _ca_bundle: tempfile::NamedTempFile,
}

/// Timeouts: generous, since two cores run two apiservers at a time.
pub const SHORT: Duration = Duration::from_secs(30);
pub const LONG: Duration = Duration::from_secs(90);

impl World {
    /// A fresh apiserver with the project's CRDs, compass-sim with runtime
    /// `runtime-e2e`, and settings pointing at both. The agent is not started.
    pub async fn new() -> World {
        World::with_crds(crd::all()).await
    }

    pub async fn with_crds(
        crds: Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>,
    ) -> World {
        World::with_crds_and_apiserver_args(crds, Vec::new()).await
    }

    /// [`World::with_crds`] on an apiserver started with extra flags (an
    /// audit log, say).
    pub async fn with_crds_and_apiserver_args(
        crds: Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>,
        apiserver_args: Vec<String>,
    ) -> World {
        World::with_crds_apiserver_args_and_sim(crds, apiserver_args, SimConfig::default()).await
    }

    /// [`World::with_crds_and_apiserver_args`] with compass-sim started as
    /// `sim_config` says (a proxy in front of its gateway, say).
    pub async fn with_crds_apiserver_args_and_sim(
        crds: Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>,
        apiserver_args: Vec<String>,
        sim_config: SimConfig,
    ) -> World {
        compass_runtime_agent::agent::install_crypto_provider();
        let env = tokio::task::spawn_blocking(move || {
            TestEnv::start_new_with_apiserver_args(&apiserver_args)
        })
        .await
        .expect("start thread")
        .expect("a test apiserver starts");
        let client = env.client().await;
        test_support::install_crds(&client, &crds)
            .await
            .expect("CRDs install");
        for ns in [NS, CA_NS] {
            let mut namespace = Namespace::default();
            namespace.metadata.name = Some(ns.into());
            Api::<Namespace>::all(client.clone())
                .create(&PostParams::default(), &namespace)
                .await
                .expect("namespace is created");
        }
        let sim = CompassSim::start(sim_config)
            .await
            .expect("compass-sim starts");
        sim.create_runtime(RUNTIME_ID, TENANT)
            .expect("runtime is created");
        let ca_bundle = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(ca_bundle.path(), sim.server_ca_pem()).expect("CA bundle is written");

        let mut settings = Settings::defaults();
        settings.minimal_compass_sync_time = Duration::from_secs(1);
        settings.controller_sync_period = Duration::from_secs(3);
        settings.max_retry_delay = Duration::from_secs(8);
        settings.compass_request_timeout = Duration::from_secs(3);
        settings.compass_ca_bundle = Some(ca_bundle.path().to_path_buf());
        settings.health_address = "127.0.0.1".parse().unwrap();
        settings.health_port = 0;
        settings.metrics_address = "127.0.0.1:0".into();
        settings.log_level = "info".into();
        compass_runtime_agent::telemetry::logging::init(settings.log_format, "info");
        World {
            env,
            client,
            sim,
            settings,
            agent: None,
            _ca_bundle: ca_bundle,
        }
    }

    /// A new world whose agent has connected with a fresh token and
    /// synchronized once.
    pub async fn connected() -> World {
        World::connected_with(|_| {}).await
    }

    /// [`World::connected`], with settings changed by `adjust` first.
    pub async fn connected_with(adjust: impl FnOnce(&mut Settings)) -> World {
        let mut world = World::new().await;
        adjust(&mut world.settings);
        world.configure_with_fresh_token().await;
        world.start_agent().await;
        world
            .wait_for_state(ConnectionState::Synchronized, LONG)
            .await;
        world
    }

    pub fn config_values(&self, token: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                "CONNECTOR_URL".to_string(),
                self.sim.connector_url().to_string(),
            ),
            ("RUNTIME_ID".to_string(), RUNTIME_ID.to_string()),
            ("TENANT".to_string(), TENANT.to_string()),
            ("TOKEN".to_string(), token.to_string()),
        ])
    }

    /// Writes the configuration Secret with a fresh one-time token.
    pub async fn configure_with_fresh_token(&self) -> String {
        let token = self.sim.issue_token(RUNTIME_ID).expect("token is issued");
        self.write_config_secret(self.config_values(&token)).await;
        token
    }

    pub async fn write_config_secret(&self, values: BTreeMap<String, String>) {
        let mut secret = Secret::default();
        secret.metadata.name = Some(CONFIG_NAME.into());
        secret.data = Some(
            values
                .into_iter()
                .map(|(k, v)| (k, ByteString(v.into_bytes())))
                .collect(),
        );
        Api::<Secret>::namespaced(self.client.clone(), NS)
            .patch(
                CONFIG_NAME,
                &PatchParams::apply("e2e").force(),
                &Patch::Apply(&secret),
            )
            .await
            .expect("configuration Secret is written");
    }

    pub async fn write_config_map(&self, values: BTreeMap<String, String>) {
        let mut map = ConfigMap::default();
        map.metadata.name = Some(CONFIG_NAME.into());
        map.data = Some(values);
        Api::<ConfigMap>::namespaced(self.client.clone(), NS)
            .patch(
                CONFIG_NAME,
                &PatchParams::apply("e2e").force(),
                &Patch::Apply(&map),
            )
            .await
            .expect("configuration ConfigMap is written");
    }

    /// Replaces the agent's settings with `settings`, keeping the ones that
    /// make it work in this world (the simulator's CA, short periods, free
    /// local ports).
    pub fn adopt_settings(&mut self, settings: Settings) {
        let world = &self.settings;
        self.settings = Settings {
            minimal_compass_sync_time: world.minimal_compass_sync_time,
            controller_sync_period: world.controller_sync_period,
            max_retry_delay: world.max_retry_delay,
            compass_request_timeout: world.compass_request_timeout,
            compass_ca_bundle: world.compass_ca_bundle.clone(),
            health_address: world.health_address,
            health_port: world.health_port,
            metrics_address: world.metrics_address.clone(),
            log_level: world.log_level.clone(),
            ..settings
        };
    }

    pub fn use_config_map(&mut self) {
        self.settings.agent_configuration_source = SourceKind::ConfigMap;
        self.settings.agent_configuration_secret =
            NamespacedName::parse(&format!("{NS}/{CONFIG_NAME}")).unwrap();
    }

    pub async fn start_agent(&mut self) {
        let client = self.env.client().await;
        self.start_agent_as(client).await;
    }

    /// Starts the agent with the given client, e.g. one that impersonates the
    /// agent's ServiceAccount.
    pub async fn start_agent_as(&mut self, client: Client) {
        assert!(self.agent.is_none(), "the agent is already running");
        let agent = Agent::start(client, self.settings.clone(), CancellationToken::new())
            .await
            .expect("the agent starts");
        self.agent = Some(agent);
    }

    pub async fn stop_agent(&mut self) {
        if let Some(agent) = self.agent.take() {
            agent.stop().await;
        }
    }

    /// Connects the runtime once with a fresh token and stops the agent:
    /// the certificate Secret and `compass-connection` as a connected agent
    /// leaves them, for a test that starts from there.
    pub async fn connect_once(&mut self) {
        self.configure_with_fresh_token().await;
        self.start_agent().await;
        self.wait_for_state(ConnectionState::Synchronized, LONG)
            .await;
        self.stop_agent().await;
    }

    pub fn agent(&self) -> &Agent {
        self.agent.as_ref().expect("the agent runs")
    }

    /// The running agent's `/metrics`, as Prometheus scrapes it.
    pub async fn metrics_text(&self) -> String {
        let address = self.agent().endpoints.metrics.expect("metrics are served");
        reqwest::get(format!("http://{address}/metrics"))
            .await
            .expect("metrics answer")
            .text()
            .await
            .expect("metrics body")
    }

    pub fn connections(&self) -> Api<CompassConnection> {
        Api::all(self.client.clone())
    }

    /// Puts `true` into `spec.refreshCredentialsNow`, as an operator does.
    pub async fn ask_for_renewal(&self) {
        self.set_spec_flag("refreshCredentialsNow").await;
    }

    /// Puts `true` into the spec's `flag`, as an operator does.
    async fn set_spec_flag(&self, flag: &str) {
        self.connections()
            .patch(
                COMPASS_CONNECTION_NAME,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {flag: true}})),
            )
            .await
            .unwrap_or_else(|e| panic!("{flag} is set: {e}"));
    }

    /// Puts `true` into `spec.resyncNow`, as an operator does, and waits
    /// until the agent has synchronized for it: the flag cleared and one
    /// more synchronization in `/metrics` (Kyma's CRD keeps no
    /// `observedGeneration` to tell by).
    pub async fn resync_and_wait(&self) {
        let syncs = || async { sync_count(&self.metrics_text().await) };
        let before = syncs().await;
        self.set_spec_flag("resyncNow").await;
        test_support::wait_for("the sync asked for by resyncNow", LONG, || async {
            let cleared = self.connection().await.is_some_and(|c| !c.spec.resync_now);
            cleared && syncs().await > before
        })
        .await;
    }

    /// Waits until the agent has made `count` more synchronizations (by
    /// its period; `/metrics` counts them).
    pub async fn wait_for_more_syncs(&self, count: u64) {
        let syncs = || async { sync_count(&self.metrics_text().await) };
        let until = syncs().await + count;
        test_support::wait_for("the agent's next synchronizations", LONG, || async {
            syncs().await >= until
        })
        .await;
    }

    pub async fn connection(&self) -> Option<CompassConnection> {
        self.connections()
            .get_opt(COMPASS_CONNECTION_NAME)
            .await
            .expect("CompassConnection can be read")
    }

    pub async fn state(&self) -> Option<ConnectionState> {
        self.connection()
            .await
            .and_then(|c| c.status)
            .map(|s| s.connection_state)
    }

    /// Waits until the CompassConnection satisfies `check`; on timeout, fails
    /// with the last status seen.
    pub async fn wait_for_connection<F>(
        &self,
        what: &str,
        timeout: Duration,
        check: F,
    ) -> CompassConnection
    where
        F: Fn(&CompassConnection) -> bool,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = None;
        loop {
            if let Some(connection) = self.connection().await {
                if check(&connection) {
                    return connection;
                }
                last = connection.status.clone();
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("timed out after {timeout:?} waiting for {what}; last status: {last:#?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn wait_for_state(
        &self,
        state: ConnectionState,
        timeout: Duration,
    ) -> CompassConnection {
        self.wait_for_connection(&format!("state {state}"), timeout, |c| {
            c.status.as_ref().map(|s| s.connection_state) == Some(state)
        })
        .await
    }

    pub async fn certificate_secret(&self) -> Option<BTreeMap<String, String>> {
        let secret = Api::<Secret>::namespaced(self.client.clone(), NS)
            .get_opt("cluster-client-certificates")
            .await
            .expect("Secret can be read")?;
        Some(
            secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                .collect(),
        )
    }

    /// Waits until the stored certificate is no longer `old_crt` and the state
    /// is `Synchronized` again; returns the new certificate Secret's data.
    pub async fn wait_for_new_certificate(
        &self,
        old_crt: &str,
        what: &str,
    ) -> BTreeMap<String, String> {
        let deadline = tokio::time::Instant::now() + LONG;
        loop {
            let now = self
                .certificate_secret()
                .await
                .expect("the certificate Secret exists");
            if now["crt"] != old_crt && self.state().await == Some(ConnectionState::Synchronized) {
                return now;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no new certificate after {what}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Signing requests the sim has seen so far.
    pub fn csr_count(&self) -> usize {
        self.sim
            .request_log()
            .iter()
            .filter(|e| {
                e.operations
                    .iter()
                    .any(|o| o == "signCertificateSigningRequest")
            })
            .count()
    }
}

/// A client that presents the stored certificate to compass-sim's Director
/// and asks for the runtime: proves the credentials really authenticate.
pub async fn director_accepts(sim: &CompassSim, key_pem: &str, chain_pem: &str) -> bool {
    let identity = reqwest::Identity::from_pem(format!("{key_pem}\n{chain_pem}").as_bytes())
        .expect("identity parses");
    let client = reqwest::Client::builder()
        .tls_certs_merge(
            reqwest::Certificate::from_pem_bundle(sim.server_ca_pem().as_bytes()).unwrap(),
        )
        .identity(identity)
        .build()
        .unwrap();
    let response = client
        .post(sim.director_url())
        .header("Tenant", TENANT)
        .json(&serde_json::json!({
            "query": "query($id: ID!) { runtime(id: $id) { labels } }",
            "variables": { "id": RUNTIME_ID }
        }))
        .send()
        .await
        .expect("the Director answers");
    if !response.status().is_success() {
        return false;
    }
    let body: serde_json::Value = response.json().await.unwrap();
    body["errors"].is_null() && !body["data"]["runtime"].is_null()
}

/// Parses a Deployment's `APP_*` variables exactly as the agent does (each
/// is also a flag). A name the agent does not know, which it would silently
/// ignore, is an error here unless it is in `ignored`.
pub fn settings_of(
    deployment: &k8s_openapi::api::apps::v1::Deployment,
    ignored: &[&str],
) -> Settings {
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct AgentFlags {
        #[command(flatten)]
        settings: Settings,
    }

    let command = AgentFlags::command();
    let flag_of_env: BTreeMap<String, String> = command
        .get_arguments()
        .filter_map(|arg| {
            let env = arg.get_env()?.to_str()?.to_string();
            Some((env, arg.get_long()?.to_string()))
        })
        .collect();
    let container = &deployment.spec.template.spec.as_ref().unwrap().containers[0];
    let mut args = vec!["compass-runtime-agent".to_string()];
    for var in container.env.clone().unwrap_or_default() {
        if !var.name.starts_with("APP_") || ignored.contains(&var.name.as_str()) {
            continue;
        }
        let flag = flag_of_env.get(&var.name).unwrap_or_else(|| {
            panic!(
                "the Deployment sets {}, which is not a setting of the agent (known: {:?})",
                var.name,
                flag_of_env.keys().collect::<Vec<_>>()
            )
        });
        let value = var
            .value
            .unwrap_or_else(|| panic!("{} has no literal value", var.name));
        args.push(format!("--{flag}={value}"));
    }
    AgentFlags::try_parse_from(&args)
        .unwrap_or_else(|e| {
            panic!("the agent would refuse the Deployment's settings {args:?}: {e}")
        })
        .settings
}

/// A port free on loopback now, for a server a test starts later. Drawn
/// below the kernel's ephemeral range (`ip_local_port_range`), from which
/// `bind(0)` and every outgoing connection take theirs: a port from inside
/// it could be taken by another test's connection in the seconds before the
/// server binds it (seen: compass-sim's gateway "Address already in use"
/// while four tests ran at once).
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let ephemeral_start: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_start.max(10_001));
    for _ in 0..1000 {
        // A random draw: RandomState is seeded afresh each time.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u8(0);
        let port = low + (hasher.finish() % u64::from(high - low)) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {low} and {high} in 1000 draws")
}

/// Whether the command `binary` is here to run (`--version` succeeds). With
/// `CI` set it must be: CI installs it (`.ci/run`), so its absence fails the
/// test instead of skipping what needs it. Otherwise the test says it skips
/// (`without_it`) and how to install it (`install`).
pub fn tool_is_installed(binary: &str, without_it: &str, install: &str) -> bool {
    let found = std::process::Command::new(binary)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        let ci = std::env::var_os("CI").is_some_and(|value| !value.is_empty());
        assert!(
            !ci,
            "CI is set but {binary} is not installed, so {without_it} ({install})"
        );
        eprintln!("SKIPPED: {binary} is not installed, so {without_it} ({install})");
    }
    found
}

/// How many synchronizations the agent's `/metrics` counts.
pub fn sync_count(metrics: &str) -> u64 {
    metric_sum(
        metrics,
        "compass_runtime_agent_sync_duration_seconds_count",
        "",
    ) as u64
}

/// The sum of the samples of the series `name` in a `/metrics` text whose
/// labels contain `with` (every sample of it when `with` is empty).
pub fn metric_sum(metrics: &str, name: &str, with: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with([' ', '{']))
        })
        .filter(|line| line.contains(with))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
