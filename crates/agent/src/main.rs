//! The `compass-runtime-agent` binary: a thin shell over the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "compass-runtime-agent", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions (CompassConnection, Application) as YAML.
    Crd,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Crd) => match compass_runtime_agent::k8s::crd::to_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("error: cannot render the CRDs as YAML: {error}");
                ExitCode::FAILURE
            }
        },
        None => {
            eprintln!("the agent's run loop is not wired yet");
            ExitCode::FAILURE
        }
    }
}
