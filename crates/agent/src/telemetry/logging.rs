//! Log setup: text or JSON, filtered by `APP_LOG_LEVEL`.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|error| {
        eprintln!("invalid APP_LOG_LEVEL {level:?} ({error}); using info");
        EnvFilter::new("info")
    });
    // Colours only for a person at a terminal: a Pod's log (a pipe to the
    // container runtime) gets plain text that log collectors can parse.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    let result = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    // A second init (tests start several agents in one process) is not an error.
    drop(result);
}
