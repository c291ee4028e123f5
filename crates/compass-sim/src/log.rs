//! The request log: one entry per GraphQL request, with secrets redacted.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The three GraphQL endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Endpoint {
    /// Token-secured Connector (`gateway`, no client certificate).
    #[serde(rename = "connector-token")]
    ConnectorToken,
    /// Certificate-secured Connector (`gateway-mtls`).
    #[serde(rename = "connector-cert")]
    ConnectorCert,
    /// Director (`gateway-mtls`).
    #[serde(rename = "director")]
    Director,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Endpoint::ConnectorToken => "connector-token",
            Endpoint::ConnectorCert => "connector-cert",
            Endpoint::Director => "director",
        })
    }
}

/// Who called, as far as the simulator could tell (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Caller {
    /// The runtime of the SystemAuth that the Connector-Token or the client
    /// certificate's CN stands for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_id: Option<String>,
    /// The client certificate's fingerprint (lower-case hex SHA-1 of its DER).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// The `Tenant` header as the client sent it (Director); the tenant a
    /// request acts in is its SystemAuth's, whatever this says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "camelCase")]
pub enum Outcome {
    /// Answered without GraphQL errors.
    Ok,
    /// Answered with GraphQL errors (HTTP 200); the messages, joined.
    Error { message: String },
    /// Refused before GraphQL ran (bad request, bad client certificate).
    Refused { status: u16, message: String },
    /// An injected fault answered (or delayed) it.
    Fault { fault: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestLogEntry {
    pub seq: u64,
    /// RFC 3339, simulator clock.
    pub time: String,
    pub endpoint: Endpoint,
    /// Top-level field names, e.g. `["applicationsForRuntime"]`.
    pub operations: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_name: Option<String>,
    pub caller: Caller,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The GraphQL variables with secrets replaced (the CSR by its length).
    pub variables: Value,
    pub outcome: Outcome,
}

/// Variable names whose values are never logged.
const SECRET_WORDS: [&str; 6] = [
    "token",
    "password",
    "secret",
    "credential",
    "privatekey",
    "private_key",
];

/// Replaces secret-bearing values: a `csr` by its length, anything named like
/// a token, password, secret or credential by `"<redacted>"`, at any depth.
pub fn redact_variables(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let lower = k.to_ascii_lowercase();
                    let redacted = if lower == "csr" {
                        match v {
                            Value::String(s) => Value::String(format!("<csr: {} chars>", s.len())),
                            _ => Value::String("<csr>".into()),
                        }
                    } else if SECRET_WORDS.iter().any(|w| lower.contains(w)) {
                        Value::String("<redacted>".into())
                    } else {
                        redact_variables(v)
                    };
                    (k.clone(), redacted)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact_variables).collect()),
        other => other.clone(),
    }
}

/// A bounded in-memory log (oldest entries dropped past `capacity`).
#[derive(Debug)]
pub struct RequestLog {
    entries: std::collections::VecDeque<RequestLogEntry>,
    next_seq: u64,
    capacity: usize,
}

impl RequestLog {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Default::default(),
            next_seq: 1,
            capacity: capacity.max(1),
        }
    }

    /// Appends an entry, giving it the next sequence number.
    pub fn push(&mut self, mut entry: RequestLogEntry) {
        entry.seq = self.next_seq;
        self.next_seq += 1;
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
    }

    pub fn entries(&self) -> Vec<RequestLogEntry> {
        self.entries.iter().cloned().collect()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_redacted_and_the_csr_is_logged_by_length() {
        let vars = json!({
            "csr": "QUJD",
            "runtimeId": "rt-1",
            "key": "runtime_eventServiceUrl",
            "input": {"clientSecret": "s3cr3t", "password": "p", "name": "n"},
            "oneTimeToken": "tok"
        });
        let out = redact_variables(&vars);
        assert_eq!(out["csr"], "<csr: 4 chars>");
        assert_eq!(out["runtimeId"], "rt-1");
        assert_eq!(out["key"], "runtime_eventServiceUrl");
        assert_eq!(out["input"]["clientSecret"], "<redacted>");
        assert_eq!(out["input"]["password"], "<redacted>");
        assert_eq!(out["input"]["name"], "n");
        assert_eq!(out["oneTimeToken"], "<redacted>");
        assert!(!out.to_string().contains("s3cr3t"));
    }

    #[test]
    fn the_log_keeps_the_newest_entries() {
        let mut log = RequestLog::new(2);
        for _ in 0..3 {
            log.push(RequestLogEntry {
                seq: 0,
                time: String::new(),
                endpoint: Endpoint::Director,
                operations: vec![],
                operation_name: None,
                caller: Caller::default(),
                request_id: None,
                variables: Value::Null,
                outcome: Outcome::Ok,
            });
        }
        let seqs: Vec<u64> = log.entries().iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![2, 3]);
    }
}
