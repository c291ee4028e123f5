//! `compass-sim`: runs a local Compass (Connector + Director) until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use compass_sim::{ApplicationNames, CaPem, CompassSim, ListOrder, Scenario, SimConfig};

#[derive(Parser, Debug)]
#[command(
    name = "compass-sim",
    version,
    about = "A local Compass (Connector + Director) with a real CA, mTLS, paging and faults"
)]
struct Args {
    /// Token-secured Connector listener ("gateway"); port 0 = a free port.
    #[arg(long, env = "COMPASS_SIM_GATEWAY", default_value = "127.0.0.1:0")]
    gateway: SocketAddr,
    /// Certificate-secured Connector and Director listener ("gateway-mtls").
    #[arg(long, env = "COMPASS_SIM_MTLS_GATEWAY", default_value = "127.0.0.1:0")]
    mtls_gateway: SocketAddr,
    /// Admin API listener (plain HTTP, no authentication: keep it on loopback).
    #[arg(long, env = "COMPASS_SIM_ADMIN", default_value = "127.0.0.1:0")]
    admin: SocketAddr,
    /// Turns the admin API off.
    #[arg(long)]
    no_admin: bool,
    /// Host name in the URLs handed out (default: the listen IP).
    #[arg(long, env = "COMPASS_SIM_PUBLIC_HOST")]
    public_host: Option<String>,
    /// Extra DNS names or IPs for the server certificate (repeatable).
    #[arg(long = "server-name")]
    server_names: Vec<String>,
    /// Scenario file (YAML or JSON) seeding runtimes and applications.
    #[arg(long, env = "COMPASS_SIM_SCENARIO")]
    scenario: Option<PathBuf>,
    /// Validity of issued client certificates.
    #[arg(long, default_value = "2160h", value_parser = humantime::parse_duration)]
    cert_validity: Duration,
    /// Lifetime of one-time tokens.
    #[arg(long, default_value = "60m", value_parser = humantime::parse_duration)]
    token_ttl: Duration,
    /// Also check that the CSR key matches the asked keyAlgorithm.
    #[arg(long)]
    strict: bool,
    /// The seed of the Director's list order (default: random, or
    /// COMPASS_SIM_LIST_ORDER_SEED); the same seed, the same order.
    #[arg(long, conflicts_with = "lists_in_creation_order")]
    list_order_seed: Option<u64>,
    /// Serve lists in the order of creation (not what Compass does).
    #[arg(long)]
    lists_in_creation_order: bool,
    /// Serve application names as registered, whatever the runtime's
    /// isNormalized label (not what Compass does).
    #[arg(long)]
    names_as_registered: bool,
    /// Where to write server-ca.pem, client-ca.pem and urls.json.
    #[arg(long, env = "COMPASS_SIM_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Client CA certificate to load (with --client-ca-key).
    #[arg(long, requires = "client_ca_key")]
    client_ca_cert: Option<PathBuf>,
    #[arg(long, requires = "client_ca_cert")]
    client_ca_key: Option<PathBuf>,
    /// Server CA certificate to load (with --server-ca-key).
    #[arg(long, requires = "server_ca_key")]
    server_ca_cert: Option<PathBuf>,
    #[arg(long, requires = "server_ca_cert")]
    server_ca_key: Option<PathBuf>,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
}

fn read_ca(cert: Option<PathBuf>, key: Option<PathBuf>) -> anyhow::Result<Option<CaPem>> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(CaPem {
            cert_pem: std::fs::read_to_string(&cert)
                .with_context(|| format!("reading {}", cert.display()))?,
            key_pem: std::fs::read_to_string(&key)
                .with_context(|| format!("reading {}", key.display()))?,
        })),
        _ => Ok(None),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Args {
        gateway,
        mtls_gateway,
        admin,
        no_admin,
        public_host,
        server_names,
        scenario,
        cert_validity,
        token_ttl,
        strict,
        list_order_seed,
        lists_in_creation_order,
        names_as_registered,
        state_dir,
        client_ca_cert,
        client_ca_key,
        server_ca_cert,
        server_ca_key,
        log_json,
    } = Args::parse();

    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if log_json {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    compass_sim::install_crypto_provider();

    let scenario = scenario
        .map(|path| Scenario::from_file(&path))
        .transpose()?;
    let seeded: Vec<String> = scenario
        .iter()
        .flat_map(|s| s.runtimes.iter().map(|r| r.spec.id.clone()))
        .collect();
    let defaults = SimConfig::default();
    let list_order = match (lists_in_creation_order, list_order_seed) {
        (true, _) => ListOrder::Creation,
        (false, Some(seed)) => ListOrder::Seeded(seed),
        (false, None) => defaults.list_order,
    };
    let application_names = if names_as_registered {
        ApplicationNames::AsRegistered
    } else {
        defaults.application_names
    };
    let config = SimConfig {
        gateway_addr: gateway,
        mtls_gateway_addr: mtls_gateway,
        admin_addr: (!no_admin).then_some(admin),
        public_host,
        server_names,
        cert_validity,
        token_ttl,
        strict,
        list_order,
        application_names,
        client_ca: read_ca(client_ca_cert, client_ca_key)?,
        server_ca: read_ca(server_ca_cert, server_ca_key)?,
        scenario,
        ..defaults
    };
    let sim = CompassSim::start(config).await?;

    if let Some(dir) = &state_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join("server-ca.pem"), sim.server_ca_pem())?;
        std::fs::write(dir.join("client-ca.pem"), sim.client_ca_pem())?;
        std::fs::write(
            dir.join("urls.json"),
            serde_json::to_string_pretty(sim.urls())?,
        )?;
    }

    println!("compass-sim is running");
    println!("  connector (token):  {}", sim.connector_url());
    println!("  connector (mTLS):   {}", sim.cert_secured_connector_url());
    println!("  director (mTLS):    {}", sim.director_url());
    if let Some(admin) = sim.admin_url() {
        println!("  admin API:          {admin}/admin/info");
    }
    if let ListOrder::Seeded(seed) = sim.settings().list_order {
        println!("  list order seed:    {seed} (--list-order-seed {seed} serves this order again)");
    }
    match &state_dir {
        Some(dir) => println!(
            "  server CA:          {}",
            dir.join("server-ca.pem").display()
        ),
        None => println!("  server CA:          use --state-dir, or GET /admin/server-ca.pem"),
    }
    for runtime in &seeded {
        let token = sim.issue_token(runtime)?;
        let tenant = sim.runtime(runtime)?.tenant;
        println!("  runtime {runtime} (tenant {tenant}): TOKEN={token}");
    }

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        stopped = tokio::signal::ctrl_c() => stopped?,
        _ = terminate.recv() => {}
    }
    println!("compass-sim stopping");
    sim.shutdown().await;
    Ok(())
}
