//! The agent's settings: `APP_*` environment variables (and the same as flags),
//! with the original component's names and defaults.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::parse::{
    parse_byte_size, parse_fraction, parse_go_bool, parse_go_duration, NamespacedName,
};

/// Where the one-time connection parameters live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SourceKind {
    /// The Secret, and when there is none, a ConfigMap of the same name: an
    /// operator who follows today's Kyma (a Secret) and one who follows the
    /// older documentation (a ConfigMap) both get connected.
    Auto,
    Secret,
    ConfigMap,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Args, Clone, Debug)]
pub struct Settings {
    /// The Secret or ConfigMap (see --agent-configuration-source) holding CONNECTOR_URL, RUNTIME_ID, TENANT and TOKEN, as namespace/name.
    #[arg(long, env = "APP_AGENT_CONFIGURATION_SECRET", default_value = "kyma-system/compass-agent-configuration", value_parser = NamespacedName::parse)]
    pub agent_configuration_secret: NamespacedName,

    /// Whether the connection parameters are read from a Secret, a ConfigMap, or (auto) the Secret and else the ConfigMap.
    #[arg(
        long,
        env = "APP_AGENT_CONFIGURATION_SOURCE",
        value_enum,
        default_value = "auto"
    )]
    pub agent_configuration_source: SourceKind,

    /// How often the CompassConnection is reconciled when nothing happens.
    #[arg(long, env = "APP_CONTROLLER_SYNC_PERIOD", default_value = "20s", value_parser = parse_go_duration)]
    pub controller_sync_period: Duration,

    /// The shortest time between two connection checks or two synchronizations (unless resyncNow is set).
    #[arg(long, env = "APP_MINIMAL_COMPASS_SYNC_TIME", default_value = "10s", value_parser = parse_go_duration)]
    pub minimal_compass_sync_time: Duration,

    /// Renew the certificate when less than this share of its lifetime is left.
    #[arg(long, env = "APP_CERT_VALIDITY_RENEWAL_THRESHOLD", default_value = "0.3", value_parser = parse_fraction)]
    pub cert_validity_renewal_threshold: f64,

    /// The Secret for the client certificate (keys crt, key, crtChain), as namespace/name.
    #[arg(long, env = "APP_CLUSTER_CERTIFICATES_SECRET", default_value = "kyma-system/cluster-client-certificates", value_parser = NamespacedName::parse)]
    pub cluster_certificates_secret: NamespacedName,

    /// The Secret for the Compass CA certificate (key cacert), as namespace/name.
    #[arg(long, env = "APP_CA_CERTIFICATES_SECRET", default_value = "istio-system/ca-certificates", value_parser = NamespacedName::parse)]
    pub ca_certificates_secret: NamespacedName,

    /// Accept any server certificate from Compass. Only for development.
    #[arg(long, env = "APP_SKIP_COMPASS_TLS_VERIFY", default_value = "false", value_parser = parse_go_bool, action = clap::ArgAction::Set)]
    pub skip_compass_tls_verify: bool,

    /// A PEM bundle of CA certificates trusted for Compass in addition to the system roots.
    #[arg(long, env = "APP_COMPASS_CA_BUNDLE")]
    pub compass_ca_bundle: Option<PathBuf>,

    /// Written into each Application's spec.skipVerify.
    #[arg(long, env = "APP_SKIP_APPS_TLS_VERIFY", default_value = "false", value_parser = parse_go_bool, action = clap::ArgAction::Set)]
    pub skip_apps_tls_verify: bool,

    /// The Central Application Gateway, the base of each API entry's centralGatewayUrl.
    #[arg(
        long,
        env = "APP_CENTRAL_GATEWAY_SERVICE_URL",
        default_value = "http://central-application-gateway.kyma-system.svc.cluster.local:8082"
    )]
    pub central_gateway_service_url: String,

    /// Log the name of each GraphQL operation sent to Compass (never its variables).
    #[arg(long, env = "APP_QUERY_LOGGING", default_value = "false", value_parser = parse_go_bool, action = clap::ArgAction::Set)]
    pub query_logging: bool,

    /// The Runtime's label runtime_eventServiceUrl in the Director.
    #[arg(
        long,
        env = "APP_RUNTIME_EVENTS_URL",
        default_value = "https://gateway.kyma.local"
    )]
    pub runtime_events_url: String,

    /// The Runtime's label runtime_consoleUrl in the Director.
    #[arg(
        long,
        env = "APP_RUNTIME_CONSOLE_URL",
        default_value = "https://console.kyma.local"
    )]
    pub runtime_console_url: String,

    /// How often the cluster's nodes and volumes are logged in one JSON line
    /// ("Cluster metrics logged successfully.") for log-based metering, as
    /// the original does; 0 turns the line off.
    #[arg(long, env = "APP_METRICS_LOGGING_TIME_INTERVAL", default_value = "30m", value_parser = parse_go_duration)]
    pub metrics_logging_time_interval: Duration,

    /// Port of /healthz and /readyz.
    #[arg(long, env = "APP_HEALTH_PORT", default_value_t = 8090)]
    pub health_port: u16,

    /// Address the health endpoints listen on.
    #[arg(long, env = "APP_HEALTH_ADDRESS", default_value = "0.0.0.0")]
    pub health_address: std::net::IpAddr,

    /// Address and port of the Prometheus metrics; empty disables them.
    #[arg(long, env = "APP_METRICS_ADDRESS", default_value = "127.0.0.1:9090")]
    pub metrics_address: String,

    /// The namespace of the Applications' credential Secrets.
    #[arg(long, env = "APP_INTEGRATION_NAMESPACE", default_value = "kyma-system")]
    pub integration_namespace: String,

    /// Accept plain http URLs for Compass (the CONNECTOR_URL and the URLs the
    /// Connector sends). Only for development: the token and the credentials
    /// would travel unencrypted.
    #[arg(long, env = "APP_COMPASS_ALLOW_HTTP", default_value = "false", value_parser = parse_go_bool, action = clap::ArgAction::Set)]
    pub compass_allow_http: bool,

    /// The largest answer from Compass the agent reads, in bytes (Ki, Mi, Gi
    /// suffixes): far above the largest real Director page.
    #[arg(long, env = "APP_COMPASS_MAX_RESPONSE_SIZE", default_value = "32Mi", value_parser = parse_byte_size)]
    pub compass_max_response_size: u64,

    /// Timeout of one request to Compass.
    #[arg(long, env = "APP_COMPASS_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_go_duration)]
    pub compass_request_timeout: Duration,

    /// Deadline of one request to the Kubernetes API that is not a watch:
    /// its answer must begin within it, and may not pause for longer. New
    /// connections must be made within it too (at most 10 s).
    #[arg(long, env = "APP_KUBERNETES_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_go_duration)]
    pub kubernetes_request_timeout: Duration,

    /// Deadline of one reconcile cycle: a cycle still running after it is
    /// abandoned and counted as failed (category CycleTimeout). It must
    /// exceed the longest healthy cycle (the Connector, every Director page,
    /// reading and writing the cluster). /healthz fails when, while a cycle
    /// was due, none has recorded its outcome for twice this plus
    /// APP_MAX_RETRY_DELAY.
    #[arg(long, env = "APP_CYCLE_TIMEOUT", default_value = "5m", value_parser = parse_go_duration)]
    pub cycle_timeout: Duration,

    /// How long the agent waits at start for the API server to answer
    /// (serving /healthz meanwhile) before it exits non-zero.
    #[arg(long, env = "APP_STARTUP_TIMEOUT", default_value = "5m", value_parser = parse_go_duration)]
    pub startup_timeout: Duration,

    /// How often the certificate-secured Connector is asked for its
    /// configuration (new management URLs) when nothing else calls for it;
    /// it is asked at once when renewal is due, when refreshCredentialsNow is
    /// set and when the Director refuses the certificate. 0: every cycle, as
    /// the original agent does.
    #[arg(long, env = "APP_CONNECTOR_CHECK_INTERVAL", default_value = "1h", value_parser = parse_go_duration)]
    pub connector_check_interval: Duration,

    /// The longest wait between two attempts after failures (the backoff's cap).
    #[arg(long, env = "APP_MAX_RETRY_DELAY", default_value = "5m", value_parser = parse_go_duration)]
    pub max_retry_delay: Duration,

    /// Page size of the Director's lists (at most 200).
    #[arg(long, env = "APP_DIRECTOR_PAGE_SIZE", default_value_t = 200)]
    pub director_page_size: u32,

    /// How many Applications are written at the same time.
    #[arg(long, env = "APP_APPLY_CONCURRENCY", default_value_t = 8)]
    pub apply_concurrency: usize,

    /// Objects per list call when reading Applications and Secrets (five times
    /// as many when only their metadata is listed): less memory per call,
    /// more calls. 100 Applications are about 0.5 MB of response text.
    #[arg(long, env = "APP_KUBERNETES_LIST_PAGE_SIZE", default_value_t = 100)]
    pub kubernetes_list_page_size: u32,

    /// Log format.
    #[arg(long, env = "APP_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Log filter (tracing's EnvFilter syntax).
    #[arg(long, env = "APP_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Elect a leader through a Lease so that only one replica writes.
    #[arg(long, env = "APP_LEADER_ELECTION", default_value = "false", value_parser = parse_go_bool, action = clap::ArgAction::Set)]
    pub leader_election: bool,

    /// The Lease used for leader election, as namespace/name.
    #[arg(long, env = "APP_LEADER_ELECTION_LEASE", default_value = "kyma-system/compass-runtime-agent", value_parser = NamespacedName::parse)]
    pub leader_election_lease: NamespacedName,

    /// How long a leader's Lease is valid without renewal.
    #[arg(long, env = "APP_LEADER_ELECTION_LEASE_DURATION", default_value = "15s", value_parser = parse_go_duration)]
    pub leader_election_lease_duration: Duration,

    /// This replica's name in the Lease; default `POD_NAME`, else host name and process id.
    #[arg(long, env = "APP_LEADER_ELECTION_IDENTITY")]
    pub leader_election_identity: Option<String>,
}

impl Settings {
    /// Settings with every default, for tests and tools: the process's
    /// `APP_*` environment is not read (a test must not depend on the shell
    /// it runs in, and a bad value there must not panic here).
    pub fn defaults() -> Settings {
        use clap::{CommandFactory, FromArgMatches};

        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            settings: Settings,
        }
        let command = Only::command().mut_args(|arg| arg.env(None));
        let matches = command.get_matches_from(["agent"]);
        // Every setting has a default that parses; a unit test keeps it so.
        Only::from_arg_matches(&matches)
            .map(|only| only.settings)
            .unwrap_or_else(|error| panic!("the default settings do not parse: {error}"))
    }
}

impl Settings {
    /// The effective settings on one line (`APP_X=value, …`), logged at start
    /// as the original agent logs its "Env config". Settings hold no secret.
    pub fn summary(&self) -> String {
        [
            (
                "APP_AGENT_CONFIGURATION_SECRET",
                self.agent_configuration_secret.to_string(),
            ),
            (
                "APP_AGENT_CONFIGURATION_SOURCE",
                format!("{:?}", self.agent_configuration_source),
            ),
            (
                "APP_CONTROLLER_SYNC_PERIOD",
                format!("{:?}", self.controller_sync_period),
            ),
            (
                "APP_MINIMAL_COMPASS_SYNC_TIME",
                format!("{:?}", self.minimal_compass_sync_time),
            ),
            (
                "APP_CERT_VALIDITY_RENEWAL_THRESHOLD",
                self.cert_validity_renewal_threshold.to_string(),
            ),
            (
                "APP_CLUSTER_CERTIFICATES_SECRET",
                self.cluster_certificates_secret.to_string(),
            ),
            (
                "APP_CA_CERTIFICATES_SECRET",
                self.ca_certificates_secret.to_string(),
            ),
            (
                "APP_SKIP_COMPASS_TLS_VERIFY",
                self.skip_compass_tls_verify.to_string(),
            ),
            (
                "APP_COMPASS_CA_BUNDLE",
                format!("{:?}", self.compass_ca_bundle),
            ),
            (
                "APP_SKIP_APPS_TLS_VERIFY",
                self.skip_apps_tls_verify.to_string(),
            ),
            (
                "APP_CENTRAL_GATEWAY_SERVICE_URL",
                self.central_gateway_service_url.to_string(),
            ),
            ("APP_QUERY_LOGGING", self.query_logging.to_string()),
            (
                "APP_RUNTIME_EVENTS_URL",
                self.runtime_events_url.to_string(),
            ),
            (
                "APP_RUNTIME_CONSOLE_URL",
                self.runtime_console_url.to_string(),
            ),
            (
                "APP_METRICS_LOGGING_TIME_INTERVAL",
                format!("{:?}", self.metrics_logging_time_interval),
            ),
            ("APP_HEALTH_PORT", self.health_port.to_string()),
            ("APP_HEALTH_ADDRESS", self.health_address.to_string()),
            ("APP_METRICS_ADDRESS", self.metrics_address.to_string()),
            (
                "APP_INTEGRATION_NAMESPACE",
                self.integration_namespace.to_string(),
            ),
            (
                "APP_COMPASS_ALLOW_HTTP",
                self.compass_allow_http.to_string(),
            ),
            (
                "APP_COMPASS_MAX_RESPONSE_SIZE",
                self.compass_max_response_size.to_string(),
            ),
            (
                "APP_COMPASS_REQUEST_TIMEOUT",
                format!("{:?}", self.compass_request_timeout),
            ),
            (
                "APP_KUBERNETES_REQUEST_TIMEOUT",
                format!("{:?}", self.kubernetes_request_timeout),
            ),
            ("APP_CYCLE_TIMEOUT", format!("{:?}", self.cycle_timeout)),
            ("APP_STARTUP_TIMEOUT", format!("{:?}", self.startup_timeout)),
            (
                "APP_CONNECTOR_CHECK_INTERVAL",
                format!("{:?}", self.connector_check_interval),
            ),
            ("APP_MAX_RETRY_DELAY", format!("{:?}", self.max_retry_delay)),
            (
                "APP_DIRECTOR_PAGE_SIZE",
                self.director_page_size.to_string(),
            ),
            ("APP_APPLY_CONCURRENCY", self.apply_concurrency.to_string()),
            (
                "APP_KUBERNETES_LIST_PAGE_SIZE",
                self.kubernetes_list_page_size.to_string(),
            ),
            ("APP_LOG_FORMAT", format!("{:?}", self.log_format)),
            ("APP_LOG_LEVEL", self.log_level.to_string()),
            ("APP_LEADER_ELECTION", self.leader_election.to_string()),
            (
                "APP_LEADER_ELECTION_LEASE",
                self.leader_election_lease.to_string(),
            ),
            (
                "APP_LEADER_ELECTION_LEASE_DURATION",
                format!("{:?}", self.leader_election_lease_duration),
            ),
            (
                "APP_LEADER_ELECTION_IDENTITY",
                format!("{:?}", self.leader_election_identity),
            ),
        ]
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        settings: Settings,
    }

    #[test]
    fn defaults_are_the_original_components() {
        let s = Cli::try_parse_from(["agent"]).unwrap().settings;
        assert_eq!(
            s.agent_configuration_secret.to_string(),
            "kyma-system/compass-agent-configuration"
        );
        assert_eq!(s.controller_sync_period, Duration::from_secs(20));
        assert_eq!(s.minimal_compass_sync_time, Duration::from_secs(10));
        assert_eq!(s.cert_validity_renewal_threshold, 0.3);
        assert_eq!(
            s.cluster_certificates_secret.to_string(),
            "kyma-system/cluster-client-certificates"
        );
        assert_eq!(
            s.ca_certificates_secret.to_string(),
            "istio-system/ca-certificates"
        );
        assert!(!s.skip_compass_tls_verify && !s.skip_apps_tls_verify && !s.query_logging);
        assert_eq!(
            s.central_gateway_service_url,
            "http://central-application-gateway.kyma-system.svc.cluster.local:8082"
        );
        assert_eq!(s.runtime_events_url, "https://gateway.kyma.local");
        assert_eq!(s.runtime_console_url, "https://console.kyma.local");
        assert_eq!(s.health_port, 8090);
        assert_eq!(s.integration_namespace, "kyma-system");
        assert_eq!(
            s.metrics_logging_time_interval,
            Duration::from_secs(30 * 60)
        );
    }

    #[test]
    fn the_summary_names_every_setting_by_its_variable() {
        let summary = Settings::defaults().summary();
        assert!(summary.starts_with(
            "APP_AGENT_CONFIGURATION_SECRET=kyma-system/compass-agent-configuration, "
        ));
        assert!(
            summary.contains("APP_CONTROLLER_SYNC_PERIOD=20s"),
            "{summary}"
        );
        assert!(
            summary.contains("APP_SKIP_COMPASS_TLS_VERIFY=false"),
            "{summary}"
        );
        assert!(
            summary.contains("APP_METRICS_LOGGING_TIME_INTERVAL=1800s"),
            "{summary}"
        );
        assert_eq!(summary.matches("APP_").count(), 36, "{summary}");
    }

    #[test]
    fn booleans_take_every_form_go_takes() {
        let s = Cli::try_parse_from([
            "agent",
            "--skip-compass-tls-verify=1",
            "--skip-apps-tls-verify=T",
            "--query-logging=TRUE",
            "--leader-election=f",
        ])
        .unwrap()
        .settings;
        assert!(s.skip_compass_tls_verify && s.skip_apps_tls_verify && s.query_logging);
        assert!(!s.leader_election);
        let error = Cli::try_parse_from(["agent", "--query-logging=yes"])
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.contains("query-logging") && error.contains("not a boolean"),
            "{error}"
        );
    }

    /// Run by `defaults_ignore_the_environment` in a process of its own,
    /// with a bad `APP_HEALTH_PORT` set.
    #[test]
    #[ignore = "run by defaults_ignore_the_environment with a bad APP_HEALTH_PORT"]
    fn defaults_in_a_bad_environment() {
        assert_eq!(
            std::env::var("APP_HEALTH_PORT").as_deref(),
            Ok("not-a-port")
        );
        assert_eq!(Settings::defaults().health_port, 8090);
    }

    #[test]
    fn defaults_ignore_the_environment() {
        // In a child process: setting a variable here would race with the
        // other tests, which parse the environment.
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "config::settings::tests::defaults_in_a_bad_environment",
                "--ignored",
                "--test-threads=1",
            ])
            .env("APP_HEALTH_PORT", "not-a-port")
            .output()
            .expect("the test binary runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    #[test]
    fn flags_take_go_durations_and_bare_names() {
        let s = Cli::try_parse_from([
            "agent",
            "--controller-sync-period=1m30s",
            "--agent-configuration-secret=my-config",
            "--skip-compass-tls-verify=true",
        ])
        .unwrap()
        .settings;
        assert_eq!(s.controller_sync_period, Duration::from_secs(90));
        assert_eq!(
            s.agent_configuration_secret.to_string(),
            "default/my-config"
        );
        assert!(s.skip_compass_tls_verify);
    }

    #[test]
    fn a_malformed_setting_is_a_clear_error() {
        let error = Cli::try_parse_from(["agent", "--minimal-compass-sync-time=ten"])
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.contains("minimal-compass-sync-time") && error.contains("Go's format"),
            "{error}"
        );
        let error = Cli::try_parse_from(["agent", "--cert-validity-renewal-threshold=3"])
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("between 0 and 1"), "{error}");
    }
}
