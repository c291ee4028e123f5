//! What `compass-runtime-agent status` prints: the CompassConnection (and the
//! certificate Secret's subject, the configured runtime id) as a table or
//! JSON, and whether the connection is healthy, for scripts. Pure but for
//! `stored_certificate` and `configured_runtime_id`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use jiff::Timestamp;
use serde::Serialize;

use crate::certificates::CertificateInfo;
use crate::crd::compass_connection::{
    ApplicationSyncResult, CompassConnection, ConnectionState, SyncOperation,
};

/// Everything the command shows, in the shape `-o json` prints.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    pub healthy: bool,
    /// Why it is not healthy; empty when it is.
    pub problems: Vec<String>,
    pub state: ConnectionState,
    /// The runtime id: `RUNTIME_ID` of the configuration source (the
    /// certificate's common name is not it: Compass names the SystemAuth of
    /// the one-time token there).
    pub runtime_id: Option<String>,
    pub connector_url: String,
    pub director_url: String,
    pub certificate: CertificateReport,
    pub established: Option<Timestamp>,
    pub renewed: Option<Timestamp>,
    /// The last connection check, and the last that succeeded.
    pub last_check: Option<Timestamp>,
    pub last_successful_check: Option<Timestamp>,
    pub error: String,
    pub synchronization: Option<SynchronizationReport>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateReport {
    pub subject: Option<String>,
    pub not_before: Option<Timestamp>,
    pub not_after: Option<Timestamp>,
    /// Why the certificate Secret could not be read, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SynchronizationReport {
    pub last_attempt: Option<Timestamp>,
    pub last_successful_fetch: Option<Timestamp>,
    pub last_successful_application: Option<Timestamp>,
    pub error: String,
    /// How many Applications had each result in the last synchronization.
    pub counts: BTreeMap<String, usize>,
    pub applications: Vec<ApplicationSyncResult>,
}

/// The report, from the resource, what the certificate Secret held (or why
/// it could not be read), the configured runtime id, and the time now.
pub fn report(
    connection: &CompassConnection,
    certificate: Result<CertificateInfo, String>,
    runtime_id: Option<String>,
    now: Timestamp,
) -> StatusReport {
    let status = connection.status.clone().unwrap_or_default();
    let connection_status = &status.connection_status;
    let time =
        |t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| t.as_ref().map(|t| t.0);
    let (subject, unreadable) = match &certificate {
        Ok(info) => (Some(info.subject.clone()), None),
        Err(why) => (None, Some(why.clone())),
    };
    let certificate = CertificateReport {
        subject,
        not_before: time(&connection_status.certificate_status.not_before),
        not_after: time(&connection_status.certificate_status.not_after),
        unreadable,
    };
    let synchronization = status.synchronization_status.as_ref().map(|sync| {
        let mut counts = BTreeMap::new();
        for result in &sync.applications {
            *counts.entry(operation_name(result.operation)).or_insert(0) += 1;
        }
        SynchronizationReport {
            last_attempt: time(&sync.last_attempt),
            last_successful_fetch: time(&sync.last_successful_fetch),
            last_successful_application: time(&sync.last_successful_application),
            error: sync.error.clone(),
            counts,
            applications: sync.applications.clone(),
        }
    });
    let mut problems = Vec::new();
    if connection.status.is_none() {
        problems.push("the agent has not written a status yet".to_string());
    } else if status.connection_state != ConnectionState::Synchronized {
        problems.push(format!("the state is {}", status.connection_state));
    }
    match certificate.not_after {
        Some(not_after) if not_after <= now => {
            problems.push(format!("the client certificate expired at {not_after}"))
        }
        None if connection.status.is_some() => {
            problems.push("the agent holds no client certificate".to_string())
        }
        _ => {}
    }
    StatusReport {
        healthy: problems.is_empty(),
        problems,
        state: status.connection_state,
        runtime_id,
        connector_url: connection.spec.management_info.connector_url.clone(),
        director_url: connection.spec.management_info.director_url.clone(),
        certificate,
        established: time(&connection_status.established),
        renewed: time(&connection_status.renewed),
        last_check: time(&connection_status.last_sync),
        last_successful_check: time(&connection_status.last_success),
        error: connection_status.error.clone(),
        synchronization,
    }
}

fn operation_name(operation: SyncOperation) -> String {
    format!("{operation:?}")
}

/// The certificate the agent stores, for the report; why not, as text. The
/// one read this module does (the command and the demo share it); it writes
/// nothing (a PKCS#8 key is left for the agent to rewrite).
pub async fn stored_certificate(
    client: kube::Client,
    settings: &crate::config::Settings,
) -> Result<CertificateInfo, String> {
    crate::k8s::credentials_store::CredentialsStore::new(
        client,
        settings.cluster_certificates_secret.clone(),
        settings.ca_certificates_secret.clone(),
    )
    .read()
    .await
    .map(|stored| stored.credentials.info().clone())
    .map_err(|error| crate::report::report(&error))
}

/// The runtime the agent is configured for: `RUNTIME_ID` of its configuration
/// source, for the report; `None` when the source cannot be read.
pub async fn configured_runtime_id(
    client: kube::Client,
    settings: &crate::config::Settings,
) -> Option<String> {
    let location = crate::config::source::SourceLocation {
        kind: settings.agent_configuration_source,
        name: settings.agent_configuration_secret.clone(),
        may_read_config_map: settings.agent_configuration_source
            != crate::config::SourceKind::Secret,
    };
    crate::config::source::RuntimeParameters::read(&client, &location)
        .await
        .ok()
        .map(|parameters| parameters.runtime_id)
}

/// The report as a table for a terminal.
pub fn render_table(report: &StatusReport, now: Timestamp) -> String {
    let mut out = String::new();
    let dash = || "-".to_string();
    let at = |t: Option<Timestamp>| t.map(|t| ago(t, now)).unwrap_or_else(dash);
    let health = if report.healthy {
        "healthy".to_string()
    } else {
        format!("NOT healthy: {}", report.problems.join("; "))
    };
    let _ = writeln!(out, "CompassConnection compass-connection");
    let rows = [
        ("State", format!("{} ({health})", report.state)),
        ("Runtime ID", report.runtime_id.clone().unwrap_or_else(dash)),
        ("Connector URL", or_dash(&report.connector_url)),
        ("Director URL", or_dash(&report.director_url)),
        (
            "Certificate",
            match (&report.certificate.subject, &report.certificate.unreadable) {
                (Some(subject), _) => subject.clone(),
                (None, Some(why)) => format!("- ({why})"),
                (None, None) => dash(),
            },
        ),
        (
            "Expires",
            report
                .certificate
                .not_after
                .map(|t| until(t, now))
                .unwrap_or_else(dash),
        ),
        ("Established", at(report.established)),
        ("Renewed", at(report.renewed)),
        ("Last check", at(report.last_check)),
        ("Last success", at(report.last_successful_check)),
        ("Error", or_dash(&report.error)),
    ];
    for (label, value) in rows {
        let _ = writeln!(out, "  {:<16}{value}", format!("{label}:"));
    }
    let Some(sync) = &report.synchronization else {
        let _ = writeln!(out, "\nSynchronization: not yet");
        return out;
    };
    let _ = writeln!(out, "\nSynchronization");
    let _ = writeln!(out, "  {:<16}{}", "Last attempt:", at(sync.last_attempt));
    let _ = writeln!(
        out,
        "  {:<16}{}",
        "Last applied:",
        at(sync.last_successful_application)
    );
    let _ = writeln!(out, "  {:<16}{}", "Error:", or_dash(&sync.error));
    let counts = sync
        .counts
        .iter()
        .map(|(operation, n)| format!("{n} {}", operation.to_lowercase()))
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(
        out,
        "\nApplications ({}{}{})",
        sync.applications.len(),
        if counts.is_empty() { "" } else { ": " },
        counts
    );
    if sync.applications.is_empty() {
        return out;
    }
    let name_width = sync
        .applications
        .iter()
        .map(|a| a.name.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(4, 60);
    let id_width = sync
        .applications
        .iter()
        .map(|a| a.application_id.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(14, 40);
    let _ = writeln!(
        out,
        "  {:<name_width$}  {:<id_width$}  {:<9}  ERROR",
        "NAME", "APPLICATION ID", "RESULT"
    );
    for app in &sync.applications {
        let row = format!(
            "  {:<name_width$}  {:<id_width$}  {:<9}  {}",
            app.name,
            or_dash(&app.application_id),
            operation_name(app.operation),
            app.error
        );
        let _ = writeln!(out, "{}", row.trim_end());
    }
    out
}

fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".into()
    } else {
        text.into()
    }
}

fn ago(t: Timestamp, now: Timestamp) -> String {
    let seconds = (now.as_second() - t.as_second()).max(0);
    format!("{t} ({} ago)", human(seconds))
}

fn until(t: Timestamp, now: Timestamp) -> String {
    let seconds = t.as_second() - now.as_second();
    if seconds <= 0 {
        format!("{t} (expired {} ago)", human(-seconds))
    } else {
        format!("{t} (in {})", human(seconds))
    }
}

/// `45s`, `12m`, `3h5m`, `89d4h`: the two largest units.
fn human(seconds: i64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds % 86_400 / 3_600,
        seconds % 3_600 / 60,
        seconds % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s}s"),
        (0, _, _) => format!("{h}h{m}m"),
        _ => format!("{d}d{h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::compass_connection::{
        CertificateStatus, CompassConnectionSpec, CompassConnectionStatus, ConnectionStatus,
        ManagementInfo, SynchronizationStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).unwrap()
    }

    fn connection(state: ConnectionState, not_after: i64) -> CompassConnection {
        let mut connection = CompassConnection::new(
            "compass-connection",
            CompassConnectionSpec {
                management_info: ManagementInfo {
                    director_url: "https://director.example/graphql".into(),
                    connector_url: "https://connector.example/graphql".into(),
                },
                ..CompassConnectionSpec::default()
            },
        );
        connection.status = Some(CompassConnectionStatus {
            connection_state: state,
            connection_status: ConnectionStatus {
                established: Some(Time(at(-3_600))),
                certificate_status: CertificateStatus {
                    not_after: Some(Time(at(not_after))),
                    ..CertificateStatus::default()
                },
                ..ConnectionStatus::default()
            },
            synchronization_status: Some(SynchronizationStatus {
                last_attempt: Some(Time(at(-5))),
                applications: vec![
                    result("orders", SyncOperation::Created, ""),
                    result("billing", SyncOperation::Unchanged, ""),
                    result("Bad_Name", SyncOperation::Failed, "invalid name"),
                ],
                ..SynchronizationStatus::default()
            }),
            ..CompassConnectionStatus::default()
        });
        connection
    }

    fn result(name: &str, operation: SyncOperation, error: &str) -> ApplicationSyncResult {
        ApplicationSyncResult {
            name: name.into(),
            application_id: format!("id-{name}"),
            operation,
            error: error.into(),
        }
    }

    /// As Compass issues it: the CN is the SystemAuth, the serial 2.
    fn certificate() -> Result<CertificateInfo, String> {
        Ok(CertificateInfo {
            subject: "C=DE, O=Org, CN=5b0f3c2e-1d4a-4f6b-8c7d-9e0a1b2c3d4e".into(),
            common_name: "5b0f3c2e-1d4a-4f6b-8c7d-9e0a1b2c3d4e".into(),
            serial: "02".into(),
            not_before: at(-3_600),
            not_after: at(86_400),
        })
    }

    fn runtime() -> Option<String> {
        Some("runtime-1".into())
    }

    #[test]
    fn synchronized_with_a_valid_certificate_is_healthy() {
        let report = report(
            &connection(ConnectionState::Synchronized, 86_400),
            certificate(),
            runtime(),
            at(0),
        );
        assert!(report.healthy, "{:?}", report.problems);
        assert_eq!(
            report.runtime_id.as_deref(),
            Some("runtime-1"),
            "the configured runtime, not the certificate's CN"
        );
        let sync = report.synchronization.as_ref().unwrap();
        assert_eq!(sync.counts["Created"], 1);
        assert_eq!(sync.counts["Failed"], 1);
    }

    #[test]
    fn another_state_or_an_expired_certificate_is_not_healthy() {
        let failed = report(
            &connection(ConnectionState::SynchronizationFailed, 86_400),
            certificate(),
            runtime(),
            at(0),
        );
        assert!(!failed.healthy);
        assert_eq!(failed.problems, ["the state is SynchronizationFailed"]);

        let expired = report(
            &connection(ConnectionState::Synchronized, -1),
            certificate(),
            runtime(),
            at(0),
        );
        assert!(!expired.healthy);
        assert!(
            expired.problems[0].contains("expired"),
            "{:?}",
            expired.problems
        );
    }

    #[test]
    fn a_resource_without_status_is_not_healthy() {
        let mut fresh = connection(ConnectionState::Synchronized, 0);
        fresh.status = None;
        let report = report(&fresh, Err("not found".into()), None, at(0));
        assert!(!report.healthy);
        assert_eq!(report.problems, ["the agent has not written a status yet"]);
    }

    #[test]
    fn the_table_shows_state_certificate_and_each_application() {
        let report = report(
            &connection(ConnectionState::Synchronized, 90 * 86_400),
            certificate(),
            runtime(),
            at(0),
        );
        let table = render_table(&report, at(0));
        assert!(
            table.contains("State:          Synchronized (healthy)"),
            "{table}"
        );
        assert!(table.contains("Runtime ID:     runtime-1"), "{table}");
        assert!(table.contains("(in 90d0h)"), "{table}");
        assert!(table.contains("Established:    "), "{table}");
        assert!(table.contains("(1h0m ago)"), "{table}");
        assert!(
            table.contains("Applications (3: 1 created, 1 failed, 1 unchanged)"),
            "{table}"
        );
        let bad = table.lines().find(|l| l.contains("Bad_Name")).unwrap();
        assert!(
            bad.contains("Failed") && bad.ends_with("invalid name"),
            "{bad}"
        );
    }

    #[test]
    fn an_unreadable_certificate_secret_is_shown_with_its_reason() {
        let report = report(
            &connection(ConnectionState::Synchronized, 100),
            Err("secrets \"cluster-client-certificates\" is forbidden".into()),
            runtime(),
            at(0),
        );
        let table = render_table(&report, at(0));
        assert!(table.contains("Certificate:    - (secrets"), "{table}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(
            json["certificate"]["unreadable"],
            "secrets \"cluster-client-certificates\" is forbidden"
        );
        assert_eq!(json["state"], "Synchronized");
        assert_eq!(json["directorUrl"], "https://director.example/graphql");
    }

    #[test]
    fn durations_show_their_two_largest_units() {
        assert_eq!(human(45), "45s");
        assert_eq!(human(125), "2m5s");
        assert_eq!(human(3 * 3600 + 300), "3h5m");
        assert_eq!(human(89 * 86_400 + 4 * 3600 + 59), "89d4h");
    }
}
