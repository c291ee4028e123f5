//! The `compass-runtime-agent` binary: a thin shell over the library.

fn main() -> std::process::ExitCode {
    compass_runtime_agent::cli::main()
}
