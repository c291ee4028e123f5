//! The command line of `compass-runtime-agent`: `run` (the default), `crd`,
//! `status` and `diff`. `main.rs` only calls [`main`].

pub mod diff;
mod setup;
pub mod status;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::agent::{install_crypto_provider, Agent, StartError};
use crate::config::Settings;
use crate::report::Report;

/// The binary's name, and its path in the image (where Kyma's Deployment
/// expects it: `/app/compass-runtime-agent`).
pub const BINARY_NAME: &str = "compass-runtime-agent";

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
    /// Show what one synchronization would change (Applications, Secrets,
    /// the Runtime's labels, compass-connection), writing nothing.
    /// Exit code: 0 no change, 1 changes, 2 trouble (e.g. cannot read).
    Diff {
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

/// The command line as the agent reads it. Kyma's Deployment starts the
/// original image, which has no ENTRYPOINT, with
/// `args: ["/app/compass-runtime-agent"]`; under this image's ENTRYPOINT the
/// binary then receives its own path as its first argument. That argument
/// is dropped, so the same Deployment starts either image.
pub fn effective_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut args: Vec<OsString> = args.into_iter().collect();
    let names_the_binary = args.get(1).is_some_and(|first| {
        std::path::Path::new(first)
            .file_name()
            .is_some_and(|name| name == BINARY_NAME)
    });
    if names_the_binary {
        args.remove(1);
    }
    args
}

/// The binary's entry point.
pub fn main() -> ExitCode {
    let cli = Cli::parse_from(effective_args(std::env::args_os()));
    match cli.command.unwrap_or(Command::Run) {
        Command::Crd => match crate::crd::to_yaml() {
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
        Command::Status { output } => show_status(cli.settings, output),
        Command::Diff { output } => ExitCode::from(diff::main(
            cli.settings,
            match output {
                OutputFormat::Table => diff::Format::Text,
                OutputFormat::Json => diff::Format::Json,
            },
        )),
    }
}

/// `compass-runtime-agent status`: reads with the caller's kubeconfig.
fn show_status(settings: Settings, output: OutputFormat) -> ExitCode {
    use crate::crd::compass_connection::{CompassConnection, COMPASS_CONNECTION_NAME};

    install_crypto_provider();
    let Some(runtime) = setup::current_thread_runtime() else {
        return ExitCode::from(2);
    };
    runtime.block_on(async move {
        let metrics = std::sync::Arc::default();
        let client = match setup::kubernetes_client(&settings, metrics).await {
            Ok(client) => client,
            Err(error) => {
                eprintln!("error: {error}");
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
                eprintln!("error: cannot read CompassConnection {COMPASS_CONNECTION_NAME}: {}", Report(&error));
                return ExitCode::from(2);
            }
        };
        let certificate = status::stored_certificate(client.clone(), &settings).await;
        let runtime_id = status::configured_runtime_id(client, &settings).await;
        let now = jiff::Timestamp::now();
        let report = status::report(&connection, certificate, runtime_id, now);
        match output {
            OutputFormat::Table => print!("{}", status::render_table(&report, now)),
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
    crate::telemetry::logging::init(settings.log_format, &settings.log_level);
    // Before any thread is started (see agent::memory).
    crate::agent::memory::limit_malloc_arenas();
    tracing::info!(settings = %settings.summary(), "effective settings");
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
        let config = match kube::Config::infer().await {
            Ok(config) => config,
            Err(error) => {
                tracing::error!(error = %Report(&error), "cannot configure the Kubernetes client (in-cluster or KUBECONFIG)");
                return ExitCode::FAILURE;
            }
        };
        let shutdown = CancellationToken::new();
        // Before starting: the start may wait for the API server.
        tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                wait_for_signal().await;
                tracing::info!("shutting down");
                shutdown.cancel();
            }
        });
        let agent = match Agent::connect(config, settings, shutdown.clone()).await {
            Ok(agent) => agent,
            Err(StartError::Stopped) => return ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!(error = %Report(&error), "cannot start the agent");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(health = %agent.endpoints.health, metrics = ?agent.endpoints.metrics, "compass-runtime-agent started");
        // A controller that ended by itself (logged where it was seen) ends
        // the process non-zero, so that the kubelet restarts it.
        match agent.wait().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_binarys_own_path_as_first_argument_is_dropped() {
        // Kyma's Deployment: `args: ["/app/compass-runtime-agent"]` after our ENTRYPOINT.
        assert_eq!(
            effective_args(args(&[
                "/app/compass-runtime-agent",
                "/app/compass-runtime-agent"
            ])),
            args(&["/app/compass-runtime-agent"])
        );
        assert_eq!(
            effective_args(args(&[
                "compass-runtime-agent",
                "/usr/local/bin/compass-runtime-agent",
                "status"
            ])),
            args(&["compass-runtime-agent", "status"])
        );
    }

    #[test]
    fn subcommands_flags_and_no_arguments_are_kept() {
        for list in [
            &["/app/compass-runtime-agent"][..],
            &["/app/compass-runtime-agent", "run"],
            &["/app/compass-runtime-agent", "status", "-o", "json"],
            &["/app/compass-runtime-agent", "--health-port=8091"],
            // Only the binary's own name counts, not a look-alike.
            &[
                "/app/compass-runtime-agent",
                "/app/compass-runtime-agent-v2",
            ],
        ] {
            assert_eq!(effective_args(args(list)), args(list));
        }
    }

    #[test]
    fn the_command_line_of_kymas_deployment_runs_the_agent() {
        let cli = Cli::try_parse_from(effective_args(args(&[
            "/app/compass-runtime-agent",
            "/app/compass-runtime-agent",
        ])))
        .expect("Kyma's args parse");
        assert!(matches!(cli.command, None | Some(Command::Run)));
    }
}
