//! The report of `compass-runtime-agent diff` as text for a terminal: what
//! changes, marked as diff(1) marks lines (`+` create, `~` update, `-`
//! delete, `!` fails), then what was read and what cannot be known.

use std::fmt::Write as _;

use serde_json::Value;

use super::report::{
    ApplicationChange, ApplicationVerb, Change, DiffReport, FieldChange, SecretChange, SecretVerb,
};

/// The longest value quoted in a field line.
const VALUE_LEN: usize = 60;

pub fn render(report: &DiffReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Dry run of one synchronization of runtime {} (Director {}); nothing was written.",
        report.runtime_id, report.director_url
    );
    let summary = &report.summary;
    let counts = &summary.applications;
    let _ = writeln!(
        out,
        "\nApplications: {} in the Director; {}",
        summary.director_applications,
        counted(&[
            (counts.create, "to create"),
            (counts.update, "to update"),
            (counts.delete, "to delete"),
            (counts.fail, "failing"),
            (counts.deferred, "deleted later"),
            (counts.unchanged, "unchanged"),
        ])
    );
    for application in &report.applications {
        application_lines(&mut out, application);
    }

    let _ = writeln!(out, "\nRuntime labels in the Director:");
    if report.runtime_labels.is_empty() {
        let _ = writeln!(out, "  no change");
    }
    for label in &report.runtime_labels {
        let from = label
            .from
            .as_ref()
            .map(quoted)
            .unwrap_or_else(|| "(none)".into());
        let _ = writeln!(
            out,
            "  ~ {}: {from} → {}",
            label.key,
            quoted(&Value::String(label.to.clone()))
        );
    }

    let _ = writeln!(out, "\nCertificate Secrets:");
    if report.certificate_secrets.is_empty() {
        let _ = writeln!(out, "  no change");
    }
    for secret in &report.certificate_secrets {
        secret_line(&mut out, "  ", secret);
    }

    let connection = &report.compass_connection;
    let _ = writeln!(out, "\ncompass-connection:");
    let _ = writeln!(
        out,
        "  state after the cycle: {}{}",
        connection.state,
        if connection
            .fields
            .iter()
            .any(|f| f.path == "status.connectionState")
        {
            ""
        } else {
            " (no change)"
        }
    );
    for field in &connection.fields {
        field_line(&mut out, "  ", field);
    }
    let _ = writeln!(out, "  also written, not counted as changes:");
    for line in &connection.also_written {
        let _ = writeln!(out, "    - {line}");
    }

    if !report.notes.is_empty() {
        let _ = writeln!(out, "\nNotes:");
        for note in &report.notes {
            let _ = writeln!(out, "  - {note}");
        }
    }
    let _ = writeln!(out, "\nRead: {}.", report.read.join("; "));
    let _ = writeln!(out, "\nNot known without connecting:");
    for unknown in &report.unknown {
        let _ = writeln!(out, "  - {unknown}");
    }
    let _ = writeln!(out, "\n{}", result_line(report));
    out
}

fn application_lines(out: &mut String, application: &ApplicationChange) {
    let (mark, what) = match application.action {
        ApplicationVerb::Create => ("+", "create".to_string()),
        ApplicationVerb::Update => ("~", "update".to_string()),
        ApplicationVerb::Delete => ("-", "delete".to_string()),
        ApplicationVerb::Unchanged => (" ", "unchanged".to_string()),
        ApplicationVerb::Fail => ("!", "fails".to_string()),
        ApplicationVerb::Deferred => (".", "deleted at a later cycle".to_string()),
    };
    let mut what = what;
    if !application.replaces.is_empty() {
        what.push_str(&format!(", replaces {}", application.replaces.join(", ")));
    }
    if let Some(successor) = &application.replaced_by {
        what.push_str(&format!(", replaced by {successor}"));
    }
    if let Some(reason) = &application.reason {
        what.push_str(&format!(": {reason}"));
    }
    let _ = writeln!(out, "  {mark} Application {}  {what}", application.name);
    for field in &application.fields {
        field_line(out, "      ", field);
    }
    for secret in &application.secrets {
        secret_line(out, "      ", secret);
    }
}

fn secret_line(out: &mut String, indent: &str, secret: &SecretChange) {
    let (mark, verb) = match secret.action {
        SecretVerb::Create => ("+", "create"),
        SecretVerb::Update => ("~", "update"),
        SecretVerb::Delete => ("-", "delete"),
    };
    let mut what = verb.to_string();
    if !secret.keys.is_empty() {
        what.push_str(&format!(" (keys {})", secret.keys.join(", ")));
    }
    if !secret.fields.is_empty() {
        let fields: Vec<String> = secret.fields.iter().map(field_text).collect();
        what.push_str(&format!(": {}", fields.join(", ")));
    }
    if let Some(reason) = &secret.reason {
        what.push_str(&format!(" ({reason})"));
    }
    let _ = writeln!(
        out,
        "{indent}{mark} Secret {}/{}  {what}",
        secret.namespace, secret.name
    );
}

/// `data.password` (changed), `+data.clientId` (added), `-data.username`
/// (removed): a Secret's fields, never values.
fn field_text(field: &FieldChange) -> String {
    match field.change {
        Change::Added => format!("+{}", field.path),
        Change::Removed => format!("-{}", field.path),
        Change::Changed => field.path.clone(),
    }
}

fn field_line(out: &mut String, indent: &str, field: &FieldChange) {
    let values = match (&field.from, &field.to, field.change) {
        (Some(from), Some(to), _) => format!(": {} → {}", quoted(from), quoted(to)),
        (None, Some(to), _) => format!(": {}", quoted(to)),
        (Some(from), None, Change::Removed) => format!(" (was {})", quoted(from)),
        _ => String::new(),
    };
    let mark = match field.change {
        Change::Added => "+",
        Change::Removed => "-",
        Change::Changed => "~",
    };
    let _ = writeln!(out, "{indent}{mark} {}{values}", field.path);
}

/// A value as JSON, cut to [`VALUE_LEN`] characters.
fn quoted(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() <= VALUE_LEN {
        return text;
    }
    let cut: String = text.chars().take(VALUE_LEN).collect();
    format!("{cut}…")
}

/// `1 to create, 2 unchanged`; the counts that are not zero.
fn counted(counts: &[(usize, &str)]) -> String {
    let parts: Vec<String> = counts
        .iter()
        .filter(|(count, _)| *count > 0)
        .map(|(count, what)| format!("{count} {what}"))
        .collect();
    if parts.is_empty() {
        "none in the cluster either".into()
    } else {
        parts.join(", ")
    }
}

/// The last line: what changes, and the exit code.
pub fn result_line(report: &DiffReport) -> String {
    if !report.changes {
        return "No change (exit 0).".into();
    }
    let summary = &report.summary;
    let a = &summary.applications;
    let s = &summary.secrets;
    let parts = [
        (a.create + a.update + a.delete, "Application(s)"),
        (s.create + s.update + s.delete, "Secret(s)"),
        (summary.runtime_labels, "Runtime label(s)"),
        (summary.certificate_secrets, "certificate Secret(s)"),
        (
            summary.compass_connection_fields,
            "compass-connection field(s)",
        ),
    ];
    let changed: Vec<String> = parts
        .iter()
        .filter(|(count, _)| *count > 0)
        .map(|(count, what)| format!("{count} {what}"))
        .collect();
    format!("Changes: {} (exit 1).", changed.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::diff::report::{ConnectionChange, LabelChange, Summary, SCHEMA_VERSION};
    use crate::crd::compass_connection::ConnectionState;
    use serde_json::json;

    fn report() -> DiffReport {
        let mut update = ApplicationChange::new("mp-shop", "id-1", ApplicationVerb::Update);
        update.fields.push(FieldChange {
            path: "spec.services[0].entries[1].targetUrl".into(),
            change: Change::Changed,
            from: Some(json!("https://old.example.com/api")),
            to: Some(json!("https://new.example.com/api")),
        });
        update.secrets.push(SecretChange {
            namespace: "kyma-system".into(),
            name: "mp-shop-b1".into(),
            action: SecretVerb::Update,
            fields: vec![FieldChange {
                path: "data.password".into(),
                change: Change::Changed,
                from: None,
                to: None,
            }],
            keys: vec![],
            reason: None,
        });
        let mut create = ApplicationChange::new("mp-new", "id-2", ApplicationVerb::Create);
        create.secrets.push(SecretChange {
            namespace: "kyma-system".into(),
            name: "mp-new-b2".into(),
            action: SecretVerb::Create,
            fields: vec![],
            keys: vec!["clientId".into(), "clientSecret".into()],
            reason: None,
        });
        let mut delete = ApplicationChange::new("mp-gone", "id-3", ApplicationVerb::Delete);
        delete.secrets.push(SecretChange {
            namespace: "kyma-system".into(),
            name: "mp-gone-b3".into(),
            action: SecretVerb::Delete,
            fields: vec![],
            keys: vec![],
            reason: None,
        });
        DiffReport {
            schema_version: SCHEMA_VERSION,
            changes: false,
            runtime_id: "runtime-1".into(),
            director_url: "https://compass.example.com/director/graphql".into(),
            read: vec!["compass-connection".into(), "the Director".into()],
            summary: Summary::default(),
            applications: vec![create, update, delete],
            runtime_labels: vec![LabelChange {
                key: "runtime_consoleUrl".into(),
                from: None,
                to: "https://console.example.com".into(),
            }],
            certificate_secrets: vec![],
            compass_connection: ConnectionChange {
                state: ConnectionState::Synchronized,
                fields: vec![],
                also_written: vec!["timestamps".into()],
            },
            notes: vec![],
            unknown: vec!["the Connector's answer".into()],
        }
        .finish(4, 0)
    }

    #[test]
    fn the_text_shows_each_change_with_its_fields_and_the_exit_code() {
        let text = render(&report());
        for line in [
            "Applications: 4 in the Director; 1 to create, 1 to update, 1 to delete",
            "  + Application mp-new  create",
            "      + Secret kyma-system/mp-new-b2  create (keys clientId, clientSecret)",
            "  ~ Application mp-shop  update",
            "      ~ spec.services[0].entries[1].targetUrl: \"https://old.example.com/api\" → \"https://new.example.com/api\"",
            "      ~ Secret kyma-system/mp-shop-b1  update: data.password",
            "  - Application mp-gone  delete",
            "      - Secret kyma-system/mp-gone-b3  delete",
            "  ~ runtime_consoleUrl: (none) → \"https://console.example.com\"",
            "Certificate Secrets:\n  no change",
            "  state after the cycle: Synchronized (no change)",
            "  - the Connector's answer",
            "Changes: 3 Application(s), 3 Secret(s), 1 Runtime label(s) (exit 1).",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
    }

    #[test]
    fn nothing_to_change_says_so_and_exit_0() {
        let mut idle = report();
        idle.applications.clear();
        idle.runtime_labels.clear();
        let idle = idle.finish(4, 4);
        let text = render(&idle);
        assert!(
            text.contains("Applications: 4 in the Director; 4 unchanged"),
            "{text}"
        );
        assert!(
            text.contains("Runtime labels in the Director:\n  no change"),
            "{text}"
        );
        assert!(text.ends_with("No change (exit 0).\n"), "{text}");
    }

    #[test]
    fn long_values_are_cut() {
        let long = Value::String("x".repeat(200));
        let text = quoted(&long);
        assert_eq!(text.chars().count(), VALUE_LEN + 1);
        assert!(text.ends_with('…'));
    }
}
