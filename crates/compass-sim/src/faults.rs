//! Injectable faults, keyed by GraphQL operation (the top-level field name).

use serde::{Deserialize, Serialize};

use crate::log::Endpoint;

/// What happens to a request that a fault matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum FaultKind {
    /// HTTP 500 with a plain-text body.
    Http500,
    /// HTTP 503 with a plain-text body.
    Http503,
    /// HTTP 200 with `data: null` and an `errors` array.
    GraphqlError,
    /// HTTP 200 with `{"data": null}` and no errors.
    NullData,
    /// HTTP 200, `application/json`, with a body that is not JSON.
    MalformedJson,
    /// Waits `ms` milliseconds, then serves the request normally.
    Delay { ms: u64 },
    /// Serves the request at once (the answer shows the state of that
    /// moment), then holds the answer `ms` milliseconds before sending it.
    SlowAnswer { ms: u64 },
    /// Closes the connection without answering.
    DropConnection,
    /// HTTP 401 with a GraphQL-shaped error body (an auth proxy's refusal).
    Http401,
    /// HTTP 403 with a GraphQL-shaped error body.
    Http403,
    /// HTTP 307 to the same path on plain `http://127.0.0.1:{port}`.
    RedirectToHttp { port: u16 },
    /// HTTP 200 with a body of `megabytes` MiB that never closes its JSON.
    Oversized { megabytes: u32 },
    /// Serves the request, with the list of its answer (`data` of the page)
    /// set to `null`.
    NullList,
    /// On a request for a page after the first (`after` set): removes the
    /// runtime's first application, then serves the page, so the pages shift
    /// by one under the client. Requests for a first page pass untouched
    /// and leave the fault in place.
    RemoveFirstApplication,
}

impl FaultKind {
    pub fn name(&self) -> String {
        match self {
            FaultKind::Http500 => "http500".into(),
            FaultKind::Http503 => "http503".into(),
            FaultKind::GraphqlError => "graphqlError".into(),
            FaultKind::NullData => "nullData".into(),
            FaultKind::MalformedJson => "malformedJson".into(),
            FaultKind::Delay { ms } => format!("delay({ms}ms)"),
            FaultKind::SlowAnswer { ms } => format!("slowAnswer({ms}ms)"),
            FaultKind::DropConnection => "dropConnection".into(),
            FaultKind::Http401 => "http401".into(),
            FaultKind::Http403 => "http403".into(),
            FaultKind::RedirectToHttp { port } => format!("redirectToHttp({port})"),
            FaultKind::Oversized { megabytes } => format!("oversized({megabytes}MiB)"),
            FaultKind::NullList => "nullList".into(),
            FaultKind::RemoveFirstApplication => "removeFirstApplication".into(),
        }
    }
}

/// How many matching requests a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FaultTimes {
    /// The next N matching requests, then the fault is gone.
    Next(u32),
    /// Every matching request until the faults are cleared.
    UntilCleared,
}

/// One injected fault as the admin API takes and shows it:
/// `{"operation": "applicationsForRuntime", "kind": "http503", "times": 2}`;
/// `times` absent = until cleared; `operation` `"*"` = every operation;
/// `endpoint` (`connector-token`, `connector-cert`, `director`) optional.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    pub operation: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<Endpoint>,
    #[serde(flatten)]
    pub kind: FaultKind,
    /// Remaining hits; `None` = until cleared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u32>,
}

impl Fault {
    pub fn new(operation: impl Into<String>, kind: FaultKind, times: FaultTimes) -> Self {
        Self {
            operation: operation.into(),
            endpoint: None,
            kind,
            times: match times {
                FaultTimes::Next(n) => Some(n),
                FaultTimes::UntilCleared => None,
            },
        }
    }

    fn matches(&self, endpoint: Endpoint, operations: &[String]) -> bool {
        self.endpoint.is_none_or(|e| e == endpoint)
            && (self.operation == "*" || operations.contains(&self.operation))
    }
}

/// The active faults, first added first matched.
#[derive(Debug, Default)]
pub struct FaultTable {
    faults: Vec<Fault>,
}

impl FaultTable {
    pub fn add(&mut self, fault: Fault) {
        if fault.times != Some(0) {
            self.faults.push(fault);
        }
    }

    pub fn clear(&mut self) {
        self.faults.clear();
    }

    /// Removes the faults for one operation.
    pub fn clear_operation(&mut self, operation: &str) {
        self.faults.retain(|f| f.operation != operation);
    }

    pub fn list(&self) -> Vec<Fault> {
        self.faults.clone()
    }

    /// The fault for this request, if any, counting the hit.
    pub fn take(&mut self, endpoint: Endpoint, operations: &[String]) -> Option<FaultKind> {
        self.take_if(endpoint, operations, |_| true)
    }

    /// The first fault for this request, counting the hit, if `applies` says
    /// it applies to it; else none, and nothing is counted.
    pub fn take_if(
        &mut self,
        endpoint: Endpoint,
        operations: &[String],
        applies: impl Fn(FaultKind) -> bool,
    ) -> Option<FaultKind> {
        let index = self
            .faults
            .iter()
            .position(|f| f.matches(endpoint, operations))?;
        if !applies(self.faults[index].kind) {
            return None;
        }
        let fault = &mut self.faults[index];
        let kind = fault.kind;
        if let Some(left) = fault.times.as_mut() {
            *left -= 1;
            if *left == 0 {
                self.faults.remove(index);
            }
        }
        Some(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_counted_fault_hits_n_times_then_goes() {
        let mut table = FaultTable::default();
        table.add(Fault::new(
            "runtime",
            FaultKind::Http500,
            FaultTimes::Next(2),
        ));
        let q = ops(&["runtime"]);
        assert_eq!(table.take(Endpoint::Director, &q), Some(FaultKind::Http500));
        assert_eq!(table.take(Endpoint::Director, &q), Some(FaultKind::Http500));
        assert_eq!(table.take(Endpoint::Director, &q), None);
        assert!(table.list().is_empty());
    }

    #[test]
    fn an_open_fault_stays_until_cleared() {
        let mut table = FaultTable::default();
        table.add(Fault::new(
            "*",
            FaultKind::NullData,
            FaultTimes::UntilCleared,
        ));
        for _ in 0..5 {
            assert_eq!(
                table.take(Endpoint::ConnectorToken, &ops(&["configuration"])),
                Some(FaultKind::NullData)
            );
        }
        table.clear();
        assert_eq!(
            table.take(Endpoint::ConnectorToken, &ops(&["configuration"])),
            None
        );
    }

    #[test]
    fn faults_match_only_their_operation_and_endpoint() {
        let mut table = FaultTable::default();
        let mut fault = Fault::new(
            "configuration",
            FaultKind::Http503,
            FaultTimes::UntilCleared,
        );
        fault.endpoint = Some(Endpoint::ConnectorCert);
        table.add(fault);
        assert_eq!(
            table.take(Endpoint::ConnectorToken, &ops(&["configuration"])),
            None
        );
        assert_eq!(
            table.take(Endpoint::ConnectorCert, &ops(&["revokeCertificate"])),
            None
        );
        assert_eq!(
            table.take(Endpoint::ConnectorCert, &ops(&["configuration"])),
            Some(FaultKind::Http503)
        );
    }

    #[test]
    fn fault_json_is_flat() {
        let fault: Fault = serde_json::from_str(
            r#"{"operation":"applicationsForRuntime","kind":"delay","ms":250,"times":1}"#,
        )
        .unwrap();
        assert_eq!(fault.kind, FaultKind::Delay { ms: 250 });
        assert_eq!(fault.times, Some(1));
        let open: Fault =
            serde_json::from_str(r#"{"operation":"runtime","kind":"dropConnection"}"#).unwrap();
        assert_eq!(open.times, None);
        assert_eq!(
            serde_json::to_value(&open).unwrap(),
            serde_json::json!({"operation":"runtime","kind":"dropConnection"})
        );
    }
}
