//! The one-command demo: a local kube-apiserver (the test environment's),
//! compass-sim seeded with `crates/compass-sim/examples/demo.yaml`, and the
//! agent. It waits until `Synchronized`, prints the status and the
//! Applications, and keeps running until Ctrl-C.
//!
//!     cargo run -p compass-demo
//!     cargo run -p compass-demo -- --exit-when-synchronized

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use compass_runtime_agent::agent::{install_crypto_provider, Agent};
use compass_runtime_agent::cli::status;
use compass_runtime_agent::config::Settings;
use compass_runtime_agent::crd::application::Application;
use compass_runtime_agent::crd::{
    self, CompassConnection, ConnectionState, COMPASS_CONNECTION_NAME,
};
use compass_sim::{CompassSim, Scenario, SimConfig};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::ByteString;
use kube::api::{ListParams, PostParams};
use kube::{Api, ResourceExt};
use tokio_util::sync::CancellationToken;

const RUNTIME: &str = "demo-runtime";
const TENANT: &str = "demo-tenant";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let exit_when_synchronized = std::env::args().any(|a| a == "--exit-when-synchronized");
    install_crypto_provider();
    compass_runtime_agent::telemetry::logging::init(
        compass_runtime_agent::config::LogFormat::Text,
        "warn",
    );

    println!("starting a local kube-apiserver + etcd (the first run builds it: minutes) …");
    let env = tokio::task::spawn_blocking(test_support::TestEnv::start_new).await??;
    let client = env.client().await;
    test_support::install_crds(&client, &crd::all()).await?;
    for ns in ["kyma-system", "istio-system"] {
        let mut namespace = Namespace::default();
        namespace.metadata.name = Some(ns.into());
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await?;
    }

    let scenario_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../compass-sim/examples/demo.yaml"
    );
    let scenario = Scenario::from_file(std::path::Path::new(scenario_path))?;
    let sim = CompassSim::start(SimConfig {
        scenario: Some(scenario),
        ..SimConfig::default()
    })
    .await?;
    let token = sim.issue_token(RUNTIME)?;
    let ca_bundle = env
        .data_dir()
        .unwrap_or(std::path::Path::new("/tmp"))
        .join("compass-server-ca.pem");
    std::fs::write(&ca_bundle, sim.server_ca_pem())?;

    let mut config = Secret::default();
    config.metadata.name = Some("compass-agent-configuration".into());
    config.data = Some(
        BTreeMap::from([
            ("CONNECTOR_URL", sim.connector_url().to_string()),
            ("RUNTIME_ID", RUNTIME.to_string()),
            ("TENANT", TENANT.to_string()),
            ("TOKEN", token),
        ])
        .into_iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.into_bytes())))
        .collect(),
    );
    Api::<Secret>::namespaced(client.clone(), "kyma-system")
        .create(&PostParams::default(), &config)
        .await?;

    let mut settings = Settings::defaults();
    settings.compass_ca_bundle = Some(ca_bundle);
    settings.health_address = "127.0.0.1".parse()?;
    settings.health_port = 0;
    settings.metrics_address = "127.0.0.1:0".into();
    settings.minimal_compass_sync_time = Duration::from_secs(2);
    settings.controller_sync_period = Duration::from_secs(5);
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    // As in a cluster: the agent builds its client, with its deadlines.
    let agent = Agent::connect(env.kube_config(), settings.clone(), shutdown.clone()).await?;

    let connections: Api<CompassConnection> = Api::all(client.clone());
    let connection = loop {
        if let Some(connection) = connections.get_opt(COMPASS_CONNECTION_NAME).await? {
            if connection.status.as_ref().map(|s| s.connection_state)
                == Some(ConnectionState::Synchronized)
            {
                break connection;
            }
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(120),
            "the agent did not synchronize within 2 minutes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!(
        "\nSynchronized in {:.1} s\n",
        started.elapsed().as_secs_f64()
    );
    // The same table as `compass-runtime-agent status`.
    let certificate = status::stored_certificate(client.clone(), &settings).await;
    let runtime_id = status::configured_runtime_id(client.clone(), &settings).await;
    let now = jiff::Timestamp::now();
    let report = status::report(&connection, certificate, runtime_id, now);
    print!("{}", status::render_table(&report, now));
    let apps = Api::<Application>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    println!("\nApplication resources ({}):", apps.len());
    for app in apps.iter().take(25) {
        let entries: usize = app.spec.services.iter().map(|s| s.entries.len()).sum();
        println!(
            "  {:<28} services {:>2}  entries {:>3}",
            app.name_any(),
            app.spec.services.len(),
            entries
        );
    }
    if apps.len() > 25 {
        println!("  … and {} more", apps.len() - 25);
    }
    if exit_when_synchronized {
        agent.stop().await;
        return Ok(());
    }
    println!("\nThe agent keeps running. Try it:");
    println!("  export KUBECONFIG={}", env.kubeconfig_path().display());
    println!("  cargo run -q -p compass-runtime-agent -- status     # the table above, any time");
    if let Some(admin) = sim.admin_url() {
        println!("  compass-sim admin API: {admin}/admin/info");
        println!("  add an application:   curl -X PUT {admin}/admin/runtimes/{RUNTIME}/applications/app-new \\");
        println!("                          -H 'content-type: application/json' -d '{{\"name\":\"new-app\",\"bundles\":[]}}'");
    }
    println!(
        "  agent metrics:         http://{}/metrics",
        agent
            .endpoints
            .metrics
            .map(|a| a.to_string())
            .unwrap_or_default()
    );
    println!("Press Ctrl-C to stop.");
    tokio::signal::ctrl_c().await?;
    agent.stop().await;
    Ok(())
}
