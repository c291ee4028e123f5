//! The `compass-runtime-agent` binary: a thin shell over the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use compass_runtime_agent::agent::{install_crypto_provider, Agent};
use compass_runtime_agent::config::Settings;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "compass-runtime-agent", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    settings: Settings,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent (the default).
    Run,
    /// Print the CustomResourceDefinitions (CompassConnection, Application) as YAML.
    Crd,
    /// Show the connection, the certificate and the last synchronization.
    /// Exit code: 0 healthy, 1 not healthy, 2 cannot tell (e.g. no access).
    Status {
        /// `table` or `json`.
        #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
        output: OutputFormat,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum OutputFormat {
    Table,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Crd => match compass_runtime_agent::k8s::crd::to_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("error: cannot render the CRDs as YAML: {error}");
                ExitCode::FAILURE
            }
        },
        Command::Run => run(cli.settings),
        Command::Status { output } => status(cli.settings, output),
    }
}

/// `compass-runtime-agent status`: reads with the caller's kubeconfig.
fn status(settings: Settings, output: OutputFormat) -> ExitCode {
    use compass_runtime_agent::k8s::crd::compass_connection::{
        CompassConnection, COMPASS_CONNECTION_NAME,
    };
    use compass_runtime_agent::status_report;

    install_crypto_provider();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(async move {
        let client = match kube::Client::try_default().await {
            Ok(client) => client,
            Err(error) => {
                eprintln!("error: cannot configure the Kubernetes client (KUBECONFIG or in-cluster): {error}");
                return ExitCode::from(2);
            }
        };
        let connections: kube::Api<CompassConnection> = kube::Api::all(client.clone());
        let connection = match connections.get_opt(COMPASS_CONNECTION_NAME).await {
            Ok(Some(connection)) => connection,
            Ok(None) => {
                eprintln!("CompassConnection {COMPASS_CONNECTION_NAME} does not exist: is the agent running?");
                return ExitCode::from(1);
            }
            Err(error) => {
                eprintln!("error: cannot read CompassConnection {COMPASS_CONNECTION_NAME}: {error}");
                return ExitCode::from(2);
            }
        };
        let certificate = status_report::stored_certificate(client, &settings).await;
        let now = jiff::Timestamp::now();
        let report = status_report::report(&connection, certificate, now);
        match output {
            OutputFormat::Table => print!("{}", status_report::render_table(&report, now)),
            OutputFormat::Json => match serde_json::to_string_pretty(&report) {
                Ok(json) => println!("{json}"),
                Err(error) => {
                    eprintln!("error: cannot render the status as JSON: {error}");
                    return ExitCode::from(2);
                }
            },
        }
        if report.healthy {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }
    })
}

fn run(settings: Settings) -> ExitCode {
    compass_runtime_agent::telemetry::logging::init(settings.log_format, &settings.log_level);
    install_crypto_provider();
    // Two workers whatever the node's size: the agent waits on the network,
    // and each worker thread costs memory (its stack, its malloc arena).
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let client = match kube::Client::try_default().await {
            Ok(client) => client,
            Err(error) => {
                tracing::error!(%error, "cannot configure the Kubernetes client (in-cluster or KUBECONFIG)");
                return ExitCode::FAILURE;
            }
        };
        let shutdown = CancellationToken::new();
        let agent = match Agent::start(client, settings, shutdown.clone()).await {
            Ok(agent) => agent,
            Err(error) => {
                tracing::error!(%error, "cannot start the agent");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(health = %agent.endpoints.health, metrics = ?agent.endpoints.metrics, "compass-runtime-agent started");
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            shutdown.cancel();
        });
        agent.wait().await;
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
