//! The library API: what a test does with a running compass-sim (its URLs
//! and CAs, runtimes, applications, tokens, certificates, settings, the
//! request log and faults), each a call into the shared state.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::clock::Clock;
use crate::faults::{Fault, FaultKind, FaultTimes};
use crate::log::RequestLogEntry;
use crate::model::{Application, RuntimeSpec, SubjectTemplate};
use crate::names::ApplicationNames;
use crate::order::ListOrder;
use crate::scenario::{self, Scenario};
use crate::server::CompassSim;
use crate::state::{CertificateInfo, RuntimeInfo, Settings, SimError, Urls};

impl CompassSim {
    pub fn urls(&self) -> &Urls {
        &self.shared.urls
    }

    /// The token-secured Connector (`CONNECTOR_URL`).
    pub fn connector_url(&self) -> &str {
        &self.shared.urls.connector_url
    }

    /// The certificate-secured Connector.
    pub fn cert_secured_connector_url(&self) -> &str {
        &self.shared.urls.cert_secured_connector_url
    }

    pub fn director_url(&self) -> &str {
        &self.shared.urls.director_url
    }

    /// The admin API's base URL (`http://127.0.0.1:PORT`), if it is on.
    pub fn admin_url(&self) -> Option<&str> {
        self.shared.urls.admin_url.as_deref()
    }

    /// The CA that issued the HTTPS server certificate: trust this.
    pub fn server_ca_pem(&self) -> &str {
        &self.shared.server_ca_pem
    }

    /// The current client CA (what the Connector returns as `caCertificate`).
    pub fn client_ca_pem(&self) -> String {
        self.shared.client_ca_pem()
    }

    /// The simulator's clock; `advance` ages tokens and certificates.
    pub fn clock(&self) -> &Clock {
        &self.shared.clock
    }

    pub fn advance_clock(&self, by: Duration) {
        self.shared.clock.advance(by)
    }

    // ---- runtimes ----

    pub fn create_runtime(&self, id: &str, tenant: &str) -> Result<(), SimError> {
        self.shared.create_runtime(RuntimeSpec::new(id, tenant))
    }

    pub fn create_runtime_with(&self, spec: RuntimeSpec) -> Result<(), SimError> {
        self.shared.create_runtime(spec)
    }

    pub fn delete_runtime(&self, id: &str) -> Result<(), SimError> {
        self.shared.delete_runtime(id)
    }

    pub fn runtime(&self, id: &str) -> Result<RuntimeInfo, SimError> {
        self.shared.runtime_info(id)
    }

    pub fn runtimes(&self) -> Vec<RuntimeInfo> {
        self.shared.runtimes()
    }

    /// What the Connector asks for in `keyAlgorithm` (`rsa2048`, `rsa4096`, or
    /// anything else to test the agent's refusal).
    pub fn set_key_algorithm(&self, runtime_id: &str, algorithm: &str) -> Result<(), SimError> {
        self.shared.with_runtime(runtime_id, |rt| {
            rt.spec.key_algorithm = Some(algorithm.to_string())
        })
    }

    /// The subject values (other than CN) the Connector hands out and checks.
    pub fn set_subject(&self, runtime_id: &str, subject: SubjectTemplate) -> Result<(), SimError> {
        self.shared
            .with_runtime(runtime_id, |rt| rt.spec.subject = Some(subject))
    }

    pub fn runtime_labels(&self, runtime_id: &str) -> Result<Map<String, Value>, SimError> {
        self.shared.runtime_labels(runtime_id)
    }

    pub fn set_runtime_label(
        &self,
        runtime_id: &str,
        key: &str,
        value: Value,
    ) -> Result<(), SimError> {
        self.shared.set_runtime_label(runtime_id, key, value)
    }

    /// Removes a runtime label (as the Director's `deleteRuntimeLabel`); true
    /// when the runtime had it.
    pub fn delete_runtime_label(&self, runtime_id: &str, key: &str) -> Result<bool, SimError> {
        self.shared.delete_runtime_label(runtime_id, key)
    }

    // ---- tokens and certificates ----

    /// A new one-time token for the token-secured Connector, for a new
    /// SystemAuth of the runtime (the CN of the certificate it leads to).
    pub fn issue_token(&self, runtime_id: &str) -> Result<String, SimError> {
        self.shared.issue_token(runtime_id)
    }

    /// The SystemAuth a token belongs to (the CN of the subject the
    /// Connector hands out for it), without spending it.
    pub fn token_system_auth(&self, token: &str) -> Option<String> {
        self.shared.token_system_auth(token)
    }

    pub fn settings(&self) -> Settings {
        self.shared.settings()
    }

    pub fn set_cert_validity(&self, validity: Duration) {
        self.shared.update_settings(|s| s.cert_validity = validity);
    }

    pub fn set_token_ttl(&self, ttl: Duration) {
        self.shared.update_settings(|s| s.token_ttl = ttl);
    }

    pub fn set_strict(&self, strict: bool) {
        self.shared.update_settings(|s| s.strict = strict);
    }

    /// Changes the order of the Director's lists, e.g. another seed to serve
    /// the same content in another order.
    pub fn set_list_order(&self, order: ListOrder) {
        self.shared.update_settings(|s| s.list_order = order);
    }

    /// Changes what the Director does to application names.
    pub fn set_application_names(&self, names: ApplicationNames) {
        self.shared.update_settings(|s| s.application_names = names);
    }

    /// Replaces the client CA; certificates of the old one are refused from
    /// now on. Returns the new CA's PEM.
    pub fn rotate_ca(&self) -> Result<String, SimError> {
        self.shared.rotate_ca()
    }

    /// Revokes one certificate by its fingerprint (the lower-case hex SHA-1
    /// of its DER, as [`CertificateInfo::fingerprint`]; colons and case
    /// ignored).
    pub fn revoke_certificate(&self, fingerprint: &str) -> Result<(), SimError> {
        self.shared.revoke_certificate(fingerprint)
    }

    /// Revokes every certificate issued to a runtime; returns how many.
    pub fn revoke_runtime_certificates(&self, runtime_id: &str) -> Result<usize, SimError> {
        self.shared.revoke_runtime_certificates(runtime_id)
    }

    pub fn certificates(&self) -> Vec<CertificateInfo> {
        self.shared.certificates()
    }

    // ---- applications ----

    /// Adds or replaces (by id) an application of a runtime.
    pub fn put_application(&self, runtime_id: &str, app: Application) -> Result<(), SimError> {
        self.shared.put_application(runtime_id, app).map(|_| ())
    }

    /// Replaces all applications of a runtime.
    pub fn set_applications(
        &self,
        runtime_id: &str,
        apps: Vec<Application>,
    ) -> Result<(), SimError> {
        self.shared.replace_applications(runtime_id, apps)
    }

    pub fn remove_application(&self, runtime_id: &str, app_id: &str) -> Result<(), SimError> {
        self.shared.remove_application(runtime_id, app_id)
    }

    /// A runtime's applications, in the order they were put.
    pub fn applications(&self, runtime_id: &str) -> Result<Vec<Application>, SimError> {
        Ok(self
            .shared
            .applications(runtime_id)?
            .iter()
            .map(|a| (**a).clone())
            .collect())
    }

    /// The ids of a runtime's applications in the order the Director serves
    /// them now.
    pub fn served_application_ids(&self, runtime_id: &str) -> Result<Vec<String>, SimError> {
        Ok(self
            .shared
            .served_applications(runtime_id)?
            .iter()
            .map(|a| a.id.clone())
            .collect())
    }

    /// Seeds runtimes, applications and settings from a scenario.
    pub fn apply_scenario(&self, scenario: &Scenario) -> Result<(), SimError> {
        scenario::seed(&self.shared, scenario)
    }

    // ---- request log and faults ----

    pub fn request_log(&self) -> Vec<RequestLogEntry> {
        self.shared.log().entries()
    }

    pub fn clear_request_log(&self) {
        self.shared.log().clear()
    }

    /// Injects a fault for one operation (`"*"` = all), e.g.
    /// `inject_fault("applicationsForRuntime", FaultKind::Http503, FaultTimes::Next(2))`.
    pub fn inject_fault(&self, operation: &str, kind: FaultKind, times: FaultTimes) {
        self.shared.faults().add(Fault::new(operation, kind, times));
    }

    /// Injects a fault with every option (e.g. limited to one endpoint).
    pub fn inject(&self, fault: Fault) {
        self.shared.faults().add(fault);
    }

    pub fn faults(&self) -> Vec<Fault> {
        self.shared.faults().list()
    }

    pub fn clear_faults(&self) {
        self.shared.faults().clear()
    }
}
