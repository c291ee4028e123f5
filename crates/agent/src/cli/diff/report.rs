//! What `compass-runtime-agent diff` reports, in the shape `-o json` prints
//! (schema version 1, documented in the README), and the pure comparisons it
//! is made of: which fields of an object a write changes, which keys of a
//! Secret (never their values), the Runtime's labels, the certificate
//! Secrets, and `compass-connection`.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::DynamicObject;
use serde::Serialize;
use serde_json::{json, Value};

use crate::certificates::CertificateInfo;
use crate::compass::director::RuntimeLabelValues;
use crate::crd::application::Application;
use crate::crd::compass_connection::{CompassConnection, ConnectionState};
use crate::crd::labels::PRESENTED_TOKEN_ANNOTATION;

/// The version of the JSON below; a field is only ever added within it.
pub const SCHEMA_VERSION: u32 = 1;

/// One synchronization, as it would go now.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiffReport {
    pub schema_version: u32,
    /// Whether the sync would change anything that counts (exit code 1);
    /// see [`DiffReport::finish`].
    pub changes: bool,
    pub runtime_id: String,
    /// The Director that was read (`spec.managementInfo.directorUrl`).
    pub director_url: String,
    /// What was read, one entry each.
    pub read: Vec<String>,
    pub summary: Summary,
    /// Applications the sync would write, delete or fail on; unchanged ones
    /// are only counted, unless one of their Secrets changes.
    pub applications: Vec<ApplicationChange>,
    /// The Runtime's labels in the Director that the sync would set.
    pub runtime_labels: Vec<LabelChange>,
    /// The client certificate and CA Secrets.
    pub certificate_secrets: Vec<SecretChange>,
    pub compass_connection: ConnectionChange,
    /// What this sync would leave out, and why (e.g. no deletion when the
    /// Director's list did not come whole).
    pub notes: Vec<String>,
    /// What cannot be known without connecting or writing.
    pub unknown: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// How many applications the Director has for the Runtime.
    pub director_applications: usize,
    pub applications: ApplicationCounts,
    /// Credential and request-parameter Secrets (in the integration namespace).
    pub secrets: SecretCounts,
    pub runtime_labels: usize,
    pub certificate_secrets: usize,
    /// Fields of `compass-connection` that change (timestamps not counted).
    pub compass_connection_fields: usize,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationCounts {
    pub create: usize,
    pub update: usize,
    pub delete: usize,
    pub unchanged: usize,
    pub fail: usize,
    pub deferred: usize,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretCounts {
    pub create: usize,
    pub update: usize,
    pub delete: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ApplicationVerb {
    Create,
    Update,
    Delete,
    /// The Application stays as it is (listed when a Secret of its changes).
    Unchanged,
    /// Nothing is written for it; the sync reports it as failed (`reason`).
    Fail,
    /// To be deleted at a later cycle (`reason`).
    Deferred,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationChange {
    pub name: String,
    pub application_id: String,
    pub action: ApplicationVerb,
    /// For an update: the fields it changes.
    pub fields: Vec<FieldChange>,
    pub secrets: Vec<SecretChange>,
    /// Applications under an old name of this one, deleted once it is written.
    pub replaces: Vec<String>,
    /// For the delete of an Application under an old name: its successor.
    pub replaced_by: Option<String>,
    pub reason: Option<String>,
}

impl ApplicationChange {
    pub fn new(name: &str, application_id: &str, action: ApplicationVerb) -> ApplicationChange {
        ApplicationChange {
            name: name.to_string(),
            application_id: application_id.to_string(),
            action,
            fields: Vec::new(),
            secrets: Vec::new(),
            replaces: Vec::new(),
            replaced_by: None,
            reason: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SecretVerb {
    Create,
    Update,
    Delete,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretChange {
    pub namespace: String,
    pub name: String,
    pub action: SecretVerb,
    /// For an update: the fields it changes (`data.<key>` for data: never
    /// a value).
    pub fields: Vec<FieldChange>,
    /// For a create: the keys of its data.
    pub keys: Vec<String>,
    pub reason: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Change {
    Added,
    Removed,
    Changed,
}

/// One field a write changes: its path (`spec.services[0].entries[1].targetUrl`,
/// `metadata.labels["app.kubernetes.io/name"]`, `data.password`) and, for
/// an Application's or the Runtime's plain values, what it was and becomes.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldChange {
    pub path: String,
    pub change: Change,
    pub from: Option<Value>,
    pub to: Option<Value>,
}

impl FieldChange {
    fn changed(path: &str, from: impl Into<Value>, to: impl Into<Value>) -> FieldChange {
        FieldChange {
            path: path.to_string(),
            change: Change::Changed,
            from: Some(from.into()),
            to: Some(to.into()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelChange {
    pub key: String,
    /// The value the Runtime has now, if any (labels keep their JSON type).
    pub from: Option<Value>,
    pub to: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionChange {
    /// The state the cycle would report, if every write succeeds.
    pub state: ConnectionState,
    /// The fields that would change (counted).
    pub fields: Vec<FieldChange>,
    /// What the cycle writes too, not counted: every cycle's timestamps and
    /// this agent's own bookkeeping.
    pub also_written: Vec<String>,
}

impl DiffReport {
    /// Counts, and decides `changes`: an Application or Secret created,
    /// updated or deleted, a Runtime label set, a certificate Secret
    /// written, or a field of `compass-connection` other than its
    /// timestamps and the agent's bookkeeping. `unchanged_not_listed`:
    /// the unchanged Applications that are not in `applications`.
    pub fn finish(
        mut self,
        director_applications: usize,
        unchanged_not_listed: usize,
    ) -> DiffReport {
        let mut summary = Summary {
            director_applications,
            runtime_labels: self.runtime_labels.len(),
            certificate_secrets: self.certificate_secrets.len(),
            compass_connection_fields: self.compass_connection.fields.len(),
            ..Summary::default()
        };
        summary.applications.unchanged = unchanged_not_listed;
        for application in &self.applications {
            let counts = &mut summary.applications;
            match application.action {
                ApplicationVerb::Create => counts.create += 1,
                ApplicationVerb::Update => counts.update += 1,
                ApplicationVerb::Delete => counts.delete += 1,
                ApplicationVerb::Unchanged => counts.unchanged += 1,
                ApplicationVerb::Fail => counts.fail += 1,
                ApplicationVerb::Deferred => counts.deferred += 1,
            }
            for secret in &application.secrets {
                match secret.action {
                    SecretVerb::Create => summary.secrets.create += 1,
                    SecretVerb::Update => summary.secrets.update += 1,
                    SecretVerb::Delete => summary.secrets.delete += 1,
                }
            }
        }
        let a = &summary.applications;
        let s = &summary.secrets;
        self.changes = a.create + a.update + a.delete + s.create + s.update + s.delete > 0
            || summary.runtime_labels > 0
            || summary.certificate_secrets > 0
            || summary.compass_connection_fields > 0;
        self.summary = summary;
        self
    }
}

/// The fields in which `after` differs from `before`, as paths, in key
/// order; a subtree added or removed whole is one path, arrays are compared
/// index by index, and a `null` counts as absent. With `values`, plain
/// (non-object, non-array) values are carried as `from`/`to`; never for a
/// Secret.
pub fn field_changes(before: &Value, after: &Value, values: bool) -> Vec<FieldChange> {
    let mut out = Vec::new();
    walk("", before, after, values, &mut out);
    out
}

fn walk(path: &str, before: &Value, after: &Value, values: bool, out: &mut Vec<FieldChange>) {
    let plain = |value: &Value| {
        (values && !value.is_object() && !value.is_array() && !value.is_null())
            .then(|| value.clone())
    };
    let present = |value: Option<&Value>| value.filter(|v| !v.is_null()).cloned();
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            let keys: BTreeSet<&String> = b.keys().chain(a.keys()).collect();
            for key in keys {
                let child = child_path(path, key);
                match (present(b.get(key)), present(a.get(key))) {
                    (Some(x), Some(y)) => walk(&child, &x, &y, values, out),
                    (Some(x), None) => out.push(FieldChange {
                        path: child,
                        change: Change::Removed,
                        from: plain(&x),
                        to: None,
                    }),
                    (None, Some(y)) => out.push(FieldChange {
                        path: child,
                        change: Change::Added,
                        from: None,
                        to: plain(&y),
                    }),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(b), Value::Array(a)) => {
            for index in 0..b.len().max(a.len()) {
                let child = format!("{path}[{index}]");
                match (b.get(index), a.get(index)) {
                    (Some(x), Some(y)) => walk(&child, x, y, values, out),
                    (Some(x), None) => out.push(FieldChange {
                        path: child,
                        change: Change::Removed,
                        from: plain(x),
                        to: None,
                    }),
                    (None, Some(y)) => out.push(FieldChange {
                        path: child,
                        change: Change::Added,
                        from: None,
                        to: plain(y),
                    }),
                    (None, None) => {}
                }
            }
        }
        (b, a) if b == a => {}
        (b, a) => out.push(FieldChange {
            path: path.to_string(),
            change: Change::Changed,
            from: plain(b),
            to: plain(a),
        }),
    }
}

/// `parent.key`, or `parent["key"]` for a key that is not a plain name
/// (label keys such as `app.kubernetes.io/name`).
fn child_path(parent: &str, key: &str) -> String {
    let plain = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (parent.is_empty(), plain) {
        (true, true) => key.to_string(),
        (false, true) => format!("{parent}.{key}"),
        (_, false) => format!("{parent}[{}]", Value::String(key.to_string())),
    }
}

/// The fields an update of the Application `current` (as read, in full)
/// to `wanted` changes: what [`crate::k8s::applications::updated_application`]
/// makes of it, compared with it.
pub fn application_update_fields(
    current: &DynamicObject,
    wanted: &Application,
) -> Vec<FieldChange> {
    let mut after = current.clone();
    crate::k8s::applications::updated_application(&mut after, wanted);
    let as_json = |object: &DynamicObject| {
        let mut value = serde_json::to_value(object).unwrap_or(Value::Null);
        in_id_order(&mut value);
        value
    };
    field_changes(&as_json(current), &as_json(&after), true)
}

/// The lists that come from the Director's lists (services, their entries,
/// client ids) sorted by id on both sides: the Director's order is not
/// content (its lists come in an order of their own, and the agent does
/// not write for an order alone), so a field is named by its place in id
/// order rather than in whichever order the Director sent this time.
pub fn in_id_order(application: &mut Value) {
    let key = |value: &Value, field: &str| value[field].as_str().unwrap_or("").to_string();
    if let Some(services) = application["spec"]["services"].as_array_mut() {
        for service in services.iter_mut() {
            if let Some(entries) = service["entries"].as_array_mut() {
                entries.sort_by_key(|entry| (key(entry, "id"), key(entry, "type")));
            }
        }
        services.sort_by_key(|service| key(service, "id"));
    }
    if let Some(ids) =
        application["spec"]["compassMetadata"]["authentication"]["clientIds"].as_array_mut()
    {
        ids.sort_by_key(|id| id.as_str().unwrap_or("").to_string());
    }
}

/// The fields in which the Secret `body` (what a write sends: it replaces the
/// Secret whole) differs from `current`: labels, annotations, owner
/// references, type and the data's keys. Values of the data are compared by
/// digest and never carried.
pub fn secret_fields(current: &Secret, body: &Secret) -> Vec<FieldChange> {
    field_changes(&secret_view(current), &secret_view(body), false)
}

fn secret_view(secret: &Secret) -> Value {
    use sha1::Digest;
    let data: BTreeMap<&String, String> = secret
        .data
        .iter()
        .flatten()
        .map(|(key, value)| (key, hex::encode(sha1::Sha1::digest(&value.0))))
        .collect();
    json!({
        "metadata": {
            "labels": secret.metadata.labels,
            "annotations": secret.metadata.annotations,
            "ownerReferences": secret.metadata.owner_references,
        },
        "type": secret.type_,
        "data": data,
    })
}

/// The Runtime's URL labels that the sync would set: those missing or
/// different, and no others (as `controller::synchronize` labels it).
pub fn label_changes(labels: &RuntimeLabelValues, wanted: [(&str, &str); 2]) -> Vec<LabelChange> {
    wanted
        .into_iter()
        .filter(|(key, value)| labels.get(*key).and_then(Value::as_str) != Some(*value))
        .map(|(key, value)| LabelChange {
            key: key.to_string(),
            from: labels.get(key).cloned(),
            to: value.to_string(),
        })
        .collect()
}

/// What the connection's maintenance would write to the certificate Secrets,
/// as far as it can be known without asking the Connector.
pub struct CertificateFacts<'a> {
    pub certificate_secret: String,
    pub ca_secret: String,
    pub certificate: &'a CertificateInfo,
    /// The key is stored in another form than PKCS#1.
    pub key_needs_rewrite: bool,
    /// The CA Secret holds a `cacert`.
    pub ca_stored: bool,
    /// The chain holds a CA to store when the CA Secret has none.
    pub ca_in_chain: bool,
    /// When the certificate is due for renewal.
    pub renewal_due_at: Timestamp,
    pub now: Timestamp,
    /// `spec.refreshCredentialsNow`.
    pub refresh_asked: bool,
}

impl CertificateFacts<'_> {
    pub fn renews(&self) -> bool {
        self.refresh_asked || self.now >= self.renewal_due_at
    }
}

/// The certificate Secrets' changes: a renewal (due, or asked for), a key
/// written again as PKCS#1, a CA stored from the chain.
pub fn certificate_changes(facts: &CertificateFacts<'_>) -> Vec<SecretChange> {
    let (namespace, name) = split_name(&facts.certificate_secret);
    let data_fields = |keys: &[&str]| -> Vec<FieldChange> {
        keys.iter()
            .map(|key| FieldChange {
                path: format!("data.{key}"),
                change: Change::Changed,
                from: None,
                to: None,
            })
            .collect()
    };
    let mut changes = Vec::new();
    if facts.renews() {
        let why = if facts.refresh_asked {
            "spec.refreshCredentialsNow is set".to_string()
        } else {
            format!(
                "the certificate is due for renewal since {}",
                facts.renewal_due_at
            )
        };
        changes.push(SecretChange {
            namespace: namespace.clone(),
            name: name.clone(),
            action: SecretVerb::Update,
            fields: data_fields(&["crt", "crtChain", "key"]),
            keys: Vec::new(),
            reason: Some(format!(
                "renewal: {why}; a new key, signed by the Connector (not asked by diff)"
            )),
        });
    } else if facts.key_needs_rewrite {
        changes.push(SecretChange {
            namespace: namespace.clone(),
            name: name.clone(),
            action: SecretVerb::Update,
            fields: data_fields(&["key"]),
            keys: Vec::new(),
            reason: Some(
                "the key is stored as PKCS#8; the agent writes it again as PKCS#1 (the same key), the form the Go agent reads"
                    .into(),
            ),
        });
    }
    if !facts.ca_stored && (facts.ca_in_chain || facts.renews()) {
        let (namespace, name) = split_name(&facts.ca_secret);
        let source = if facts.renews() {
            "the Connector's answer to the renewal"
        } else {
            "the certificate chain"
        };
        changes.push(SecretChange {
            namespace,
            name,
            action: SecretVerb::Update,
            fields: vec![FieldChange {
                path: "data.cacert".into(),
                change: Change::Added,
                from: None,
                to: None,
            }],
            keys: Vec::new(),
            reason: Some(format!(
                "the CA Secret has no cacert; the agent stores the CA from {source}"
            )),
        });
    }
    changes
}

fn split_name(namespaced: &str) -> (String, String) {
    match namespaced.split_once('/') {
        Some((namespace, name)) => (namespace.to_string(), name.to_string()),
        None => (String::new(), namespaced.to_string()),
    }
}

/// What decides what the cycle writes to `compass-connection`.
pub struct ConnectionFacts<'a> {
    pub connection: &'a CompassConnection,
    /// The state and synchronization error the sync would report
    /// (`decide::after_apply`), every write succeeding.
    pub state: ConnectionState,
    pub sync_error: String,
    /// The stored certificate (before a renewal).
    pub certificate: &'a CertificateInfo,
    pub renews: bool,
    /// The configuration holds a token (its digest is recorded once).
    pub token_configured: bool,
}

/// What the cycle would write to `compass-connection`: the state, the
/// errors, the spec's flags and the certificate's validity as counted
/// fields; the timestamps and the agent's bookkeeping as `also_written`.
pub fn connection_change(facts: &ConnectionFacts<'_>) -> ConnectionChange {
    let connection = facts.connection;
    let status = connection.status.clone().unwrap_or_default();
    let mut fields = Vec::new();
    if status.connection_state != facts.state {
        fields.push(FieldChange::changed(
            "status.connectionState",
            status.connection_state.as_str(),
            facts.state.as_str(),
        ));
    }
    let connection_error = &status.connection_status.error;
    if !connection_error.is_empty() {
        fields.push(FieldChange::changed(
            "status.connectionStatus.error",
            connection_error.as_str(),
            "",
        ));
    }
    let sync_error = status
        .synchronization_status
        .as_ref()
        .map(|sync| sync.error.clone())
        .unwrap_or_default();
    if sync_error != facts.sync_error {
        fields.push(FieldChange::changed(
            "status.synchronizationStatus.error",
            sync_error,
            facts.sync_error.as_str(),
        ));
    }
    if connection.spec.resync_now {
        fields.push(FieldChange::changed("spec.resyncNow", true, false));
    }
    if connection.spec.refresh_credentials_now {
        fields.push(FieldChange::changed(
            "spec.refreshCredentialsNow",
            true,
            false,
        ));
    }
    let certificate_status = &status.connection_status.certificate_status;
    let mut also_written = vec![
        "status.connectionStatus.lastSync and lastSuccess, status.synchronizationStatus.lastAttempt, lastSuccessfulFetch and lastSuccessfulApplication: the time of the cycle (every cycle writes them)".to_string(),
    ];
    if facts.renews {
        also_written.push(
            "status.connectionStatus.renewed and certificateStatus: the renewed certificate's"
                .into(),
        );
    } else {
        let time = |t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
            t.as_ref().map(|t| t.0)
        };
        for (path, recorded, stored) in [
            (
                "status.connectionStatus.certificateStatus.notBefore",
                time(&certificate_status.not_before),
                facts.certificate.not_before,
            ),
            (
                "status.connectionStatus.certificateStatus.notAfter",
                time(&certificate_status.not_after),
                facts.certificate.not_after,
            ),
        ] {
            if recorded != Some(stored) {
                fields.push(FieldChange {
                    path: path.into(),
                    change: if recorded.is_some() {
                        Change::Changed
                    } else {
                        Change::Added
                    },
                    from: recorded.map(|t| Value::String(t.to_string())),
                    to: Some(Value::String(stored.to_string())),
                });
            }
        }
        if certificate_status.acquired.is_none() {
            also_written.push(
                "status.connectionStatus.certificateStatus.acquired: the time of the cycle".into(),
            );
        }
    }
    let token_recorded = connection
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|annotations| annotations.contains_key(PRESENTED_TOKEN_ANNOTATION));
    if !token_recorded && facts.token_configured {
        also_written.push(format!(
            "metadata.annotations[{}]: a digest of the token in the configuration (never the token), recorded once for a connection this agent did not make",
            Value::String(PRESENTED_TOKEN_ANNOTATION.into())
        ));
    }
    also_written.push(
        "status.conditions, observedGeneration, connectionStatus.configurationSource and synchronizationStatus.applications: this agent's own fields (Kyma's CRD prunes them)"
            .into(),
    );
    ConnectionChange {
        state: facts.state,
        fields,
        also_written,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::application::ApplicationSpec;
    use crate::crd::compass_connection::{
        CertificateStatus, CompassConnectionSpec, CompassConnectionStatus, ConnectionStatus,
        SynchronizationStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
    use k8s_openapi::ByteString;

    fn paths(changes: &[FieldChange]) -> Vec<(&str, Change)> {
        changes
            .iter()
            .map(|c| (c.path.as_str(), c.change))
            .collect()
    }

    #[test]
    fn a_changed_value_deep_in_a_list_is_named_by_its_path_with_both_values() {
        let before = json!({"spec": {"services": [{"entries": [
            {"targetUrl": "https://a"}, {"targetUrl": "https://b", "name": "orders"}
        ]}]}});
        let mut after = before.clone();
        after["spec"]["services"][0]["entries"][1]["targetUrl"] = json!("https://c");
        let changes = field_changes(&before, &after, true);
        assert_eq!(
            changes,
            vec![FieldChange {
                path: "spec.services[0].entries[1].targetUrl".into(),
                change: Change::Changed,
                from: Some(json!("https://b")),
                to: Some(json!("https://c")),
            }]
        );
    }

    #[test]
    fn added_and_removed_subtrees_are_one_path_each_and_null_is_absent() {
        let before = json!({"spec": {"services": [{"id": "1"}], "gone": {"a": 1}, "empty": null}});
        let after = json!({"spec": {"services": [{"id": "1"}, {"id": "2"}], "new": "x"}});
        assert_eq!(
            paths(&field_changes(&before, &after, true)),
            vec![
                ("spec.gone", Change::Removed),
                ("spec.new", Change::Added),
                ("spec.services[1]", Change::Added),
            ]
        );
        assert_eq!(field_changes(&before, &before, true), vec![]);
    }

    #[test]
    fn keys_that_are_not_plain_names_are_quoted() {
        let before = json!({"metadata": {"labels": {}}});
        let after = json!({"metadata": {"labels": {
            "applicationconnector.kyma-project.io/managed-by": "compass-runtime-agent",
            "connected-app": "shop"
        }}});
        assert_eq!(
            paths(&field_changes(&before, &after, false)),
            vec![
                (
                    "metadata.labels[\"applicationconnector.kyma-project.io/managed-by\"]",
                    Change::Added
                ),
                ("metadata.labels.connected-app", Change::Added),
            ]
        );
    }

    #[test]
    fn without_values_no_value_is_carried() {
        let changes = field_changes(&json!({"a": "secret-1"}), &json!({"a": "secret-2"}), false);
        assert_eq!(changes[0].from, None);
        assert_eq!(changes[0].to, None);
    }

    fn secret(data: &[(&str, &str)], labels: &[(&str, &str)]) -> Secret {
        let mut secret = Secret::default();
        secret.metadata.name = Some("shop-b1".into());
        secret.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        secret.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "applicationconnector.kyma-project.io/v1alpha1".into(),
            kind: "Application".into(),
            name: "shop".into(),
            uid: "uid-1".into(),
            ..OwnerReference::default()
        }]);
        secret.type_ = Some("Opaque".into());
        secret.data = Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        );
        secret
    }

    #[test]
    fn a_secret_update_names_the_keys_that_change_and_never_their_values() {
        let labels = [("app", "shop"), ("bundleId", "b1")];
        let current = secret(&[("username", "u"), ("password", "old-pw")], &labels);
        let body = secret(&[("username", "u"), ("password", "new-pw")], &labels);
        let changes = secret_fields(&current, &body);
        assert_eq!(paths(&changes), vec![("data.password", Change::Changed)]);
        let text = serde_json::to_string(&changes).unwrap();
        assert!(
            !text.contains("old-pw") && !text.contains("new-pw"),
            "{text}"
        );
        // A digest of a value is not printed either.
        assert!(
            !text.contains(&hex::encode(<sha1::Sha1 as sha1::Digest>::digest(
                b"new-pw"
            )))
        );
    }

    #[test]
    fn a_secret_rewrite_drops_other_labels_annotations_and_old_keys_and_takes_the_new_owner() {
        let mut current = secret(
            &[("username", "u"), ("password", "p")],
            &[("app", "shop"), ("bundleId", "b1"), ("team", "x")],
        );
        current.metadata.annotations = Some(BTreeMap::from([("note".into(), "n".into())]));
        let mut body = secret(
            &[("clientId", "c"), ("clientSecret", "s")],
            &[("app", "shop"), ("bundleId", "b1")],
        );
        body.metadata.owner_references.as_mut().unwrap()[0].uid = "uid-2".into();
        assert_eq!(
            paths(&secret_fields(&current, &body)),
            vec![
                ("data.clientId", Change::Added),
                ("data.clientSecret", Change::Added),
                ("data.password", Change::Removed),
                ("data.username", Change::Removed),
                ("metadata.annotations", Change::Removed),
                ("metadata.labels.team", Change::Removed),
                ("metadata.ownerReferences[0].uid", Change::Changed),
            ]
        );
    }

    #[test]
    fn an_application_update_names_the_owned_fields_it_changes_and_keeps_the_rest() {
        let wanted_spec = ApplicationSpec {
            description: "new".into(),
            labels: Some(BTreeMap::from([("connected-app".into(), "shop".into())])),
            ..ApplicationSpec::default()
        };
        let wanted = Application::new("shop", wanted_spec);
        let current: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "applicationconnector.kyma-project.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": "shop", "resourceVersion": "7",
                "labels": {"team": "x"}},
            "spec": {"description": "old", "skipVerify": false, "services": [],
                "labels": {"connected-app": "shop", "argocd": "y"}, "encodeUrl": true},
            "status": {"installationStatus": {"status": "deployed"}}
        }))
        .unwrap();
        let changes = application_update_fields(&current, &wanted);
        assert_eq!(
            paths(&changes),
            vec![
                (
                    "metadata.labels[\"applicationconnector.kyma-project.io/managed-by\"]",
                    Change::Added
                ),
                ("spec.description", Change::Changed),
            ],
            "someone else's labels, encodeUrl and the status are kept"
        );
        assert_eq!(changes[1].from, Some(json!("old")));
        assert_eq!(changes[1].to, Some(json!("new")));
    }

    #[test]
    fn an_application_whose_services_come_in_another_order_shows_only_what_changed() {
        let service = |id: &str, target: &str| {
            json!({"id": id, "name": id, "displayName": id, "description": "d",
                "entries": [{"type": "API", "id": format!("{id}-api"), "name": "a", "targetUrl": target}]})
        };
        let application = |services: Value| -> Application {
            serde_json::from_value(json!({
                "apiVersion": "applicationconnector.kyma-project.io/v1alpha1",
                "kind": "Application",
                "metadata": {"name": "shop", "labels": {
                    "applicationconnector.kyma-project.io/managed-by": "compass-runtime-agent"}},
                "spec": {"description": "d", "skipVerify": false,
                    "labels": {"connected-app": "shop"}, "services": services}
            }))
            .unwrap()
        };
        let written = application(json!([
            service("a", "https://a"),
            service("b", "https://b")
        ]));
        let current: DynamicObject =
            serde_json::from_value(serde_json::to_value(&written).unwrap()).unwrap();
        // The Director now sends b before a, and b's target changed.
        let wanted = application(json!([
            service("b", "https://b2"),
            service("a", "https://a")
        ]));
        assert_eq!(
            paths(&application_update_fields(&current, &wanted)),
            vec![("spec.services[1].entries[0].targetUrl", Change::Changed)],
            "the Director's order alone is no change; the field is named in id order"
        );
    }

    #[test]
    fn only_missing_or_different_runtime_labels_are_set() {
        let labels = RuntimeLabelValues::from([
            (
                "runtime_eventServiceUrl".to_string(),
                json!("https://gateway.a"),
            ),
            ("runtime_consoleUrl".to_string(), json!(42)),
            ("isNormalized".to_string(), json!("true")),
        ]);
        let wanted = [
            ("runtime_eventServiceUrl", "https://gateway.a"),
            ("runtime_consoleUrl", "https://console.a"),
        ];
        assert_eq!(
            label_changes(&labels, wanted),
            vec![LabelChange {
                key: "runtime_consoleUrl".into(),
                from: Some(json!(42)),
                to: "https://console.a".into(),
            }]
        );
        assert_eq!(label_changes(&RuntimeLabelValues::new(), wanted).len(), 2);
    }

    fn certificate() -> CertificateInfo {
        CertificateInfo {
            subject: "CN=runtime".into(),
            common_name: "runtime".into(),
            serial: "02".into(),
            not_before: Timestamp::from_second(1_700_000_000).unwrap(),
            not_after: Timestamp::from_second(1_800_000_000).unwrap(),
        }
    }

    fn facts(certificate: &CertificateInfo) -> CertificateFacts<'_> {
        CertificateFacts {
            certificate_secret: "kyma-system/cluster-client-certificates".into(),
            ca_secret: "istio-system/ca-certificates".into(),
            certificate,
            key_needs_rewrite: false,
            ca_stored: true,
            ca_in_chain: true,
            renewal_due_at: Timestamp::from_second(1_770_000_000).unwrap(),
            now: Timestamp::from_second(1_710_000_000).unwrap(),
            refresh_asked: false,
        }
    }

    #[test]
    fn certificate_secrets_change_for_a_pkcs8_key_a_missing_ca_or_a_renewal_only() {
        let certificate = certificate();
        assert_eq!(certificate_changes(&facts(&certificate)), vec![]);

        let rewrite = CertificateFacts {
            key_needs_rewrite: true,
            ..facts(&certificate)
        };
        let changes = certificate_changes(&rewrite);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].name, "cluster-client-certificates");
        assert_eq!(
            paths(&changes[0].fields),
            vec![("data.key", Change::Changed)]
        );

        let no_ca = CertificateFacts {
            ca_stored: false,
            ..facts(&certificate)
        };
        let changes = certificate_changes(&no_ca);
        assert_eq!(
            (changes[0].namespace.as_str(), changes[0].name.as_str()),
            ("istio-system", "ca-certificates")
        );
        assert_eq!(
            paths(&changes[0].fields),
            vec![("data.cacert", Change::Added)]
        );

        let due = CertificateFacts {
            now: Timestamp::from_second(1_780_000_000).unwrap(),
            key_needs_rewrite: true,
            ..facts(&certificate)
        };
        let changes = certificate_changes(&due);
        assert_eq!(changes.len(), 1, "a renewal writes a new key anyway");
        assert_eq!(
            paths(&changes[0].fields),
            vec![
                ("data.crt", Change::Changed),
                ("data.crtChain", Change::Changed),
                ("data.key", Change::Changed)
            ]
        );
        assert!(changes[0]
            .reason
            .as_ref()
            .unwrap()
            .contains("due for renewal"));
    }

    fn go_agent_connection(certificate: &CertificateInfo) -> CompassConnection {
        let mut connection =
            CompassConnection::new("compass-connection", CompassConnectionSpec::default());
        let an_hour_ago = Time(Timestamp::from_second(1_709_996_400).unwrap());
        connection.status = Some(CompassConnectionStatus {
            connection_state: ConnectionState::Synchronized,
            connection_status: ConnectionStatus {
                last_sync: Some(an_hour_ago.clone()),
                certificate_status: CertificateStatus {
                    acquired: Some(an_hour_ago.clone()),
                    not_before: Some(Time(certificate.not_before)),
                    not_after: Some(Time(certificate.not_after)),
                },
                ..ConnectionStatus::default()
            },
            synchronization_status: Some(SynchronizationStatus {
                last_attempt: Some(an_hour_ago),
                ..SynchronizationStatus::default()
            }),
            ..CompassConnectionStatus::default()
        });
        connection
    }

    #[test]
    fn the_go_agents_synchronized_connection_stays_as_it_is_but_for_timestamps_and_bookkeeping() {
        let certificate = certificate();
        let connection = go_agent_connection(&certificate);
        let change = connection_change(&ConnectionFacts {
            connection: &connection,
            state: ConnectionState::Synchronized,
            sync_error: String::new(),
            certificate: &certificate,
            renews: false,
            token_configured: true,
        });
        assert_eq!(change.fields, vec![]);
        assert_eq!(change.state, ConnectionState::Synchronized);
        assert!(
            change
                .also_written
                .iter()
                .any(|line| line.contains(PRESENTED_TOKEN_ANNOTATION)),
            "{:?}",
            change.also_written
        );
    }

    #[test]
    fn a_state_an_error_and_a_flag_that_change_are_counted() {
        let certificate = certificate();
        let mut connection = go_agent_connection(&certificate);
        connection.spec.resync_now = true;
        let status = connection.status.as_mut().unwrap();
        status.connection_state = ConnectionState::ConnectionMaintenanceFailed;
        status.connection_status.error = "the Connector refused".into();
        let change = connection_change(&ConnectionFacts {
            connection: &connection,
            state: ConnectionState::Synchronized,
            sync_error: "1 of 2 applications could not be synchronized: a: taken".into(),
            certificate: &certificate,
            renews: false,
            token_configured: false,
        });
        assert_eq!(
            paths(&change.fields),
            vec![
                ("status.connectionState", Change::Changed),
                ("status.connectionStatus.error", Change::Changed),
                ("status.synchronizationStatus.error", Change::Changed),
                ("spec.resyncNow", Change::Changed),
            ]
        );
        assert_eq!(
            change.fields[0].from,
            Some(json!("ConnectionMaintenanceFailed"))
        );
        assert_eq!(change.fields[0].to, Some(json!("Synchronized")));
    }

    #[test]
    fn changes_count_writes_labels_certificates_and_connection_fields_not_failures_alone() {
        let report = |applications: Vec<ApplicationChange>| DiffReport {
            schema_version: SCHEMA_VERSION,
            changes: false,
            runtime_id: "r".into(),
            director_url: "https://d".into(),
            read: vec![],
            summary: Summary::default(),
            applications,
            runtime_labels: vec![],
            certificate_secrets: vec![],
            compass_connection: ConnectionChange {
                state: ConnectionState::Synchronized,
                fields: vec![],
                also_written: vec![],
            },
            notes: vec![],
            unknown: vec![],
        };
        let idle = report(vec![]).finish(3, 2);
        assert!(!idle.changes);
        assert_eq!(idle.summary.applications.unchanged, 2);

        let failing = report(vec![ApplicationChange::new(
            "a",
            "1",
            ApplicationVerb::Fail,
        )])
        .finish(3, 2);
        assert!(!failing.changes, "a failure writes nothing by itself");

        let mut unchanged_with_secret =
            ApplicationChange::new("a", "1", ApplicationVerb::Unchanged);
        unchanged_with_secret.secrets.push(SecretChange {
            namespace: "kyma-system".into(),
            name: "a-b".into(),
            action: SecretVerb::Update,
            fields: vec![],
            keys: vec![],
            reason: None,
        });
        let secret_only = report(vec![unchanged_with_secret]).finish(3, 2);
        assert!(secret_only.changes);
        assert_eq!(secret_only.summary.applications.unchanged, 3);
        assert_eq!(secret_only.summary.secrets.update, 1);
    }
}
