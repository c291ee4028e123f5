//! The simulator's state and the operations on it, shared by the GraphQL
//! resolvers, the admin API and the library API.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ca::{self, CaError, CertRefusal, CertificateAuthority, ClientIdentity, Subject};
use crate::clock::{rfc3339, Clock};
use crate::faults::FaultTable;
use crate::log::RequestLog;
use crate::model::{Application, RuntimeSpec};
use crate::names::{ApplicationNames, IS_NORMALIZED_LABEL};
use crate::order::ListOrder;

/// Errors of the library and admin API.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("runtime {0:?} does not exist")]
    UnknownRuntime(String),
    #[error("runtime {0:?} already exists")]
    RuntimeExists(String),
    #[error("application {app:?} does not exist in runtime {runtime:?}")]
    UnknownApplication { runtime: String, app: String },
    #[error("certificate with fingerprint {0:?} was not issued by compass-sim")]
    UnknownCertificate(String),
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// Global knobs, changeable at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Validity of issued client certificates (Compass default 2160h).
    pub cert_validity: Duration,
    /// Lifetime of one-time tokens (default 60 minutes).
    pub token_ttl: Duration,
    /// Also check the CSR key against the asked `keyAlgorithm`.
    pub strict: bool,
    /// The order of the Director's lists (default: a random seed).
    pub list_order: ListOrder,
    /// What the Director does to application names (default: as Compass).
    pub application_names: ApplicationNames,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            cert_validity: Duration::from_secs(2160 * 3600),
            token_ttl: Duration::from_secs(60 * 60),
            strict: false,
            list_order: ListOrder::from_env_or_random(),
            application_names: ApplicationNames::default(),
        }
    }
}

/// A client certificate compass-sim issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateInfo {
    /// Lower-case hex of the SHA-1 of the certificate's DER: what tells
    /// certificates apart (they all have the serial number 2, as Compass's).
    pub fingerprint: String,
    /// Lower-case hex.
    pub serial: String,
    /// The certificate's CN: the SystemAuth its one-time token belonged to.
    pub system_auth: String,
    pub runtime_id: String,
    pub not_before: String,
    pub not_after: String,
    pub revoked: bool,
    /// Which client CA signed it (1 = the first; each rotation adds one).
    pub ca_generation: u32,
}

/// The Connector's `CertificationResult`, each field base64 of PEM.
#[derive(Debug, Clone)]
pub struct CertificationResult {
    pub certificate_chain: String,
    pub ca_certificate: String,
    pub client_certificate: String,
}

/// A runtime as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeInfo {
    pub id: String,
    pub tenant: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub labels: Map<String, Value>,
    /// The subject the Connector hands out, but for its CN, which is the
    /// SystemAuth of each one-time token (`O=..,OU=..,L=..,ST=..,C=..`).
    pub subject: String,
    /// The `keyAlgorithm` the Connector asks for.
    pub key_algorithm: String,
    /// Its SystemAuths: one per token issued for it (the CN of the
    /// certificates signed with that token and its successors).
    pub system_auths: Vec<String>,
    /// In the order they were put.
    pub application_ids: Vec<String>,
}

pub(crate) struct RuntimeState {
    pub spec: RuntimeSpec,
    /// In the order they were put.
    applications: Vec<Arc<Application>>,
    /// The same, in the Director's order; made when first asked for after a
    /// change.
    served: Option<Arc<[Arc<Application>]>>,
}

impl RuntimeState {
    fn new(spec: RuntimeSpec) -> Self {
        Self {
            spec,
            applications: Vec::new(),
            served: None,
        }
    }

    /// The subject the Connector hands out to a holder of `system_auth`'s
    /// token, and checks in its CSR.
    pub fn subject(&self, system_auth: &str) -> Subject {
        let t = self.spec.subject.clone().unwrap_or_default();
        Subject {
            common_name: system_auth.to_string(),
            country: t.country,
            organization: t.organization,
            organizational_unit: t.organizational_unit,
            locality: t.locality,
            province: t.province,
        }
    }

    pub fn key_algorithm(&self) -> String {
        self.spec
            .key_algorithm
            .clone()
            .unwrap_or_else(|| "rsa2048".to_string())
    }

    pub fn name(&self) -> String {
        self.spec
            .name
            .clone()
            .unwrap_or_else(|| self.spec.id.clone())
    }

    pub fn applications(&self) -> &[Arc<Application>] {
        &self.applications
    }

    /// Changes the applications (in the order they were put).
    pub fn change_applications<T>(&mut self, f: impl FnOnce(&mut Vec<Arc<Application>>) -> T) -> T {
        self.served = None;
        f(&mut self.applications)
    }

    /// The applications in the Director's order.
    pub fn served(&mut self, order: ListOrder) -> Arc<[Arc<Application>]> {
        let applications = &self.applications;
        self.served
            .get_or_insert_with(|| {
                order
                    .arranged(applications, |a| a.id.as_str())
                    .into_iter()
                    .cloned()
                    .collect()
            })
            .clone()
    }
}

/// Who a caller acts as, resolved from its one-time token or from the CN of
/// its client certificate, as Compass's gateway resolves it: the SystemAuth,
/// its runtime and the runtime's tenant. The `Tenant` header plays no part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemAuthIdentity {
    pub system_auth: String,
    pub runtime_id: String,
    pub tenant: String,
}

/// A SystemAuth of a runtime: made for each one-time token issued for the
/// runtime; it holds one live token at a time.
struct SystemAuthRecord {
    runtime_id: String,
    live_token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenState {
    Live,
    Used,
    /// A newer token was issued for its SystemAuth before it was used.
    Replaced,
}

struct TokenRecord {
    system_auth: String,
    runtime_id: String,
    expires_at: SystemTime,
    state: TokenState,
}

struct CertRecord {
    serial: String,
    system_auth: String,
    runtime_id: String,
    not_before: SystemTime,
    not_after: SystemTime,
    revoked: bool,
    ca_generation: u32,
}

#[derive(Default)]
pub(crate) struct State {
    pub runtimes: BTreeMap<String, RuntimeState>,
    system_auths: HashMap<String, SystemAuthRecord>,
    tokens: HashMap<String, TokenRecord>,
    /// By fingerprint.
    certificates: BTreeMap<String, CertRecord>,
    pub settings: Settings,
}

/// The URLs clients use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Urls {
    /// Token-secured Connector (`CONNECTOR_URL`).
    pub connector_url: String,
    /// Certificate-secured Connector (`certificateSecuredConnectorURL`).
    pub cert_secured_connector_url: String,
    pub director_url: String,
    /// `None` when the admin listener is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_url: Option<String>,
}

pub(crate) struct ClientCa {
    pub ca: CertificateAuthority,
    pub generation: u32,
}

/// Everything the servers share.
pub(crate) struct Shared {
    pub clock: Clock,
    pub urls: Urls,
    pub server_ca_pem: String,
    state: Mutex<State>,
    client_ca: RwLock<Arc<ClientCa>>,
    pub faults: Mutex<FaultTable>,
    pub log: Mutex<RequestLog>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    pub fn new(
        clock: Clock,
        urls: Urls,
        server_ca_pem: String,
        client_ca: CertificateAuthority,
        settings: Settings,
        log_capacity: usize,
    ) -> Self {
        Self {
            clock,
            urls,
            server_ca_pem,
            state: Mutex::new(State {
                settings,
                ..State::default()
            }),
            client_ca: RwLock::new(Arc::new(ClientCa {
                ca: client_ca,
                generation: 1,
            })),
            faults: Mutex::new(FaultTable::default()),
            log: Mutex::new(RequestLog::new(log_capacity)),
        }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    pub fn faults(&self) -> MutexGuard<'_, FaultTable> {
        lock(&self.faults)
    }

    pub fn log(&self) -> MutexGuard<'_, RequestLog> {
        lock(&self.log)
    }

    pub fn client_ca(&self) -> Arc<ClientCa> {
        self.client_ca
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn client_ca_pem(&self) -> String {
        self.client_ca().ca.cert_pem().to_string()
    }

    pub fn settings(&self) -> Settings {
        self.state().settings
    }

    pub fn update_settings(&self, f: impl FnOnce(&mut Settings)) -> Settings {
        let mut state = self.state();
        let order = state.settings.list_order;
        f(&mut state.settings);
        if state.settings.list_order != order {
            for runtime in state.runtimes.values_mut() {
                runtime.served = None;
            }
        }
        state.settings
    }

    // ---- runtimes ----

    /// Registers a runtime; as the Director, it gets `isNormalized: "true"`
    /// unless its labels say otherwise.
    pub fn create_runtime(&self, mut spec: RuntimeSpec) -> Result<(), SimError> {
        if spec.id.trim().is_empty() {
            return Err(SimError::InvalidInput("a runtime needs an id".into()));
        }
        if spec.tenant.trim().is_empty() {
            return Err(SimError::InvalidInput(format!(
                "runtime {:?} needs a tenant",
                spec.id
            )));
        }
        let mut state = self.state();
        if state.runtimes.contains_key(&spec.id) {
            return Err(SimError::RuntimeExists(spec.id));
        }
        if spec
            .labels
            .get(IS_NORMALIZED_LABEL)
            .is_none_or(Value::is_null)
        {
            spec.labels
                .insert(IS_NORMALIZED_LABEL.into(), Value::String("true".into()));
        }
        state
            .runtimes
            .insert(spec.id.clone(), RuntimeState::new(spec));
        Ok(())
    }

    /// Deletes a runtime with its SystemAuths: its tokens and certificates
    /// no longer authenticate.
    pub fn delete_runtime(&self, id: &str) -> Result<(), SimError> {
        let mut state = self.state();
        state
            .runtimes
            .remove(id)
            .ok_or_else(|| SimError::UnknownRuntime(id.to_string()))?;
        state.system_auths.retain(|_, auth| auth.runtime_id != id);
        Ok(())
    }

    pub fn with_runtime<T>(
        &self,
        id: &str,
        f: impl FnOnce(&mut RuntimeState) -> T,
    ) -> Result<T, SimError> {
        let mut state = self.state();
        let runtime = state
            .runtimes
            .get_mut(id)
            .ok_or_else(|| SimError::UnknownRuntime(id.to_string()))?;
        Ok(f(runtime))
    }

    pub fn runtime_info(&self, id: &str) -> Result<RuntimeInfo, SimError> {
        let state = self.state();
        let runtime = state
            .runtimes
            .get(id)
            .ok_or_else(|| SimError::UnknownRuntime(id.to_string()))?;
        Ok(runtime_info(&state, runtime))
    }

    pub fn runtimes(&self) -> Vec<RuntimeInfo> {
        let state = self.state();
        state
            .runtimes
            .values()
            .map(|runtime| runtime_info(&state, runtime))
            .collect()
    }

    pub fn runtime_labels(&self, id: &str) -> Result<Map<String, Value>, SimError> {
        self.with_runtime(id, |rt| rt.spec.labels.clone())
    }

    pub fn set_runtime_label(&self, id: &str, key: &str, value: Value) -> Result<(), SimError> {
        self.with_runtime(id, |rt| {
            rt.spec.labels.insert(key.to_string(), value);
        })
    }

    /// Removes a label; true when the runtime had it.
    pub fn delete_runtime_label(&self, id: &str, key: &str) -> Result<bool, SimError> {
        self.with_runtime(id, |rt| rt.spec.labels.remove(key).is_some())
    }

    // ---- applications ----

    /// Adds or replaces (by id) an application; true when it was new.
    pub fn put_application(&self, runtime_id: &str, app: Application) -> Result<bool, SimError> {
        validate_application(&app)?;
        self.with_runtime(runtime_id, |rt| {
            rt.change_applications(|apps| match apps.iter_mut().find(|a| a.id == app.id) {
                Some(existing) => {
                    *existing = Arc::new(app);
                    false
                }
                None => {
                    apps.push(Arc::new(app));
                    true
                }
            })
        })
    }

    pub fn replace_applications(
        &self,
        runtime_id: &str,
        apps: Vec<Application>,
    ) -> Result<(), SimError> {
        let mut seen = std::collections::HashSet::new();
        for app in &apps {
            validate_application(app)?;
            if !seen.insert(app.id.clone()) {
                return Err(SimError::InvalidInput(format!(
                    "application id {:?} appears twice",
                    app.id
                )));
            }
        }
        self.with_runtime(runtime_id, |rt| {
            rt.change_applications(|stored| *stored = apps.into_iter().map(Arc::new).collect())
        })
    }

    pub fn remove_application(&self, runtime_id: &str, app_id: &str) -> Result<(), SimError> {
        self.with_runtime(runtime_id, |rt| {
            rt.change_applications(|apps| {
                let before = apps.len();
                apps.retain(|a| a.id != app_id);
                before != apps.len()
            })
        })?
        .then_some(())
        .ok_or_else(|| SimError::UnknownApplication {
            runtime: runtime_id.to_string(),
            app: app_id.to_string(),
        })
    }

    /// Removes the runtime's first application in the Director's order, if any.
    pub fn remove_first_application(&self, runtime_id: &str) {
        let mut state = self.state();
        let order = state.settings.list_order;
        if let Some(rt) = state.runtimes.get_mut(runtime_id) {
            if let Some(first) = rt.served(order).first().map(|a| a.id.clone()) {
                rt.change_applications(|apps| apps.retain(|a| a.id != first));
            }
        }
    }

    /// A runtime's applications in the order they were put.
    pub fn applications(&self, runtime_id: &str) -> Result<Vec<Arc<Application>>, SimError> {
        self.with_runtime(runtime_id, |rt| rt.applications().to_vec())
    }

    /// A runtime's applications in the Director's order.
    pub fn served_applications(
        &self,
        runtime_id: &str,
    ) -> Result<Arc<[Arc<Application>]>, SimError> {
        let mut state = self.state();
        let order = state.settings.list_order;
        let rt = state
            .runtimes
            .get_mut(runtime_id)
            .ok_or_else(|| SimError::UnknownRuntime(runtime_id.to_string()))?;
        Ok(rt.served(order))
    }

    // ---- SystemAuths and tokens ----

    /// A one-time token for a runtime, as the Director's
    /// `requestOneTimeTokenForRuntime`: for a new SystemAuth of the runtime.
    pub fn issue_token(&self, runtime_id: &str) -> Result<String, SimError> {
        let mut state = self.state();
        if !state.runtimes.contains_key(runtime_id) {
            return Err(SimError::UnknownRuntime(runtime_id.to_string()));
        }
        let system_auth = uuid::Uuid::new_v4().to_string();
        state.system_auths.insert(
            system_auth.clone(),
            SystemAuthRecord {
                runtime_id: runtime_id.to_string(),
                live_token: None,
            },
        );
        Ok(self.new_token(&mut state, &system_auth))
    }

    /// A new one-time token for the same SystemAuth, as every `configuration`
    /// call makes the Connector generate: it replaces the SystemAuth's token
    /// if that one was not used yet.
    pub fn issue_token_for(&self, identity: &SystemAuthIdentity) -> Result<String, String> {
        let mut state = self.state();
        if !state.system_auths.contains_key(&identity.system_auth) {
            return Err(format!(
                "SystemAuth {:?} no longer exists",
                identity.system_auth
            ));
        }
        Ok(self.new_token(&mut state, &identity.system_auth))
    }

    fn new_token(&self, state: &mut State, system_auth: &str) -> String {
        let now = self.clock.now();
        // Spent and expired tokens are kept for clear refusals, but not forever.
        state
            .tokens
            .retain(|_, t| t.expires_at + Duration::from_secs(24 * 3600) > now);
        let token = new_token();
        let Some(auth) = state.system_auths.get_mut(system_auth) else {
            return token;
        };
        if let Some(previous) = auth.live_token.replace(token.clone()) {
            if let Some(record) = state.tokens.get_mut(&previous) {
                if record.state == TokenState::Live {
                    record.state = TokenState::Replaced;
                }
            }
        }
        let runtime_id = auth.runtime_id.clone();
        state.tokens.insert(
            token.clone(),
            TokenRecord {
                system_auth: system_auth.to_string(),
                runtime_id,
                expires_at: now + state.settings.token_ttl,
                state: TokenState::Live,
            },
        );
        token
    }

    /// The SystemAuth a token belongs to, without spending it.
    pub fn token_system_auth(&self, token: &str) -> Option<String> {
        self.state()
            .tokens
            .get(token)
            .map(|t| t.system_auth.clone())
    }

    /// The runtime a token belongs to, without spending it (for the log).
    pub fn token_owner(&self, token: &str) -> Option<String> {
        self.state().tokens.get(token).map(|t| t.runtime_id.clone())
    }

    /// Spends a one-time token; the identity it stands for, or the error the
    /// Connector answers.
    pub fn spend_token(&self, token: Option<&str>) -> Result<SystemAuthIdentity, String> {
        const PREFIX: &str = "Failed to authenticate request, token is invalid";
        let token = token.filter(|t| !t.is_empty()).ok_or_else(|| {
            "Failed to authenticate request, token not provided: send the one-time token in the Connector-Token header".to_string()
        })?;
        let now = self.clock.now();
        let mut state = self.state();
        let record = state
            .tokens
            .get_mut(token)
            .ok_or_else(|| format!("{PREFIX}: unknown token"))?;
        match record.state {
            TokenState::Used => return Err(format!("{PREFIX}: the token has already been used")),
            TokenState::Replaced => {
                return Err(format!(
                    "{PREFIX}: a newer token was issued for its SystemAuth"
                ))
            }
            TokenState::Live => {}
        }
        if now >= record.expires_at {
            return Err(format!(
                "{PREFIX}: the token expired at {}",
                rfc3339(record.expires_at)
            ));
        }
        record.state = TokenState::Used;
        let system_auth = record.system_auth.clone();
        let runtime_id = record.runtime_id.clone();
        drop(state);
        self.system_auth(&system_auth)
            .ok_or_else(|| format!("{PREFIX}: runtime {runtime_id:?} no longer exists"))
    }

    /// The SystemAuth with this id, its runtime and the runtime's tenant.
    pub fn system_auth(&self, id: &str) -> Option<SystemAuthIdentity> {
        let state = self.state();
        let auth = state.system_auths.get(id)?;
        let runtime = state.runtimes.get(&auth.runtime_id)?;
        Some(SystemAuthIdentity {
            system_auth: id.to_string(),
            runtime_id: auth.runtime_id.clone(),
            tenant: runtime.spec.tenant.clone(),
        })
    }

    /// The subject string and key algorithm the Connector hands out.
    pub fn csr_info(&self, identity: &SystemAuthIdentity) -> Result<(String, String), SimError> {
        self.with_runtime(&identity.runtime_id, |rt| {
            (
                rt.subject(&identity.system_auth).to_compass_string(),
                rt.key_algorithm(),
            )
        })
    }

    // ---- certificates ----

    /// Checks and signs a CSR for a SystemAuth; the error is what the
    /// Connector answers.
    pub fn sign_csr(
        &self,
        identity: &SystemAuthIdentity,
        csr: &str,
    ) -> Result<CertificationResult, String> {
        const PREFIX: &str = "Error while signing Certificate Signing Request";
        let runtime_id = &identity.runtime_id;
        let (subject, key_algorithm, settings) = {
            let state = self.state();
            let rt = state
                .runtimes
                .get(runtime_id)
                .ok_or_else(|| format!("{PREFIX}: runtime {runtime_id:?} does not exist"))?;
            (
                rt.subject(&identity.system_auth),
                rt.key_algorithm(),
                state.settings,
            )
        };
        let valid = ca::validate_csr(csr, &subject, &key_algorithm, settings.strict)
            .map_err(|e| format!("{PREFIX}: {e}"))?;
        let client_ca = self.client_ca();
        let issued = client_ca
            .ca
            .sign_client_certificate(&valid, &subject, self.clock.now(), settings.cert_validity)
            .map_err(|e| format!("{PREFIX}: {e}"))?;
        self.state().certificates.insert(
            issued.fingerprint.clone(),
            CertRecord {
                serial: issued.serial.clone(),
                system_auth: identity.system_auth.clone(),
                runtime_id: runtime_id.clone(),
                not_before: issued.not_before,
                not_after: issued.not_after,
                revoked: false,
                ca_generation: client_ca.generation,
            },
        );
        let ca_pem = client_ca.ca.cert_pem();
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
        Ok(CertificationResult {
            certificate_chain: b64(&format!("{}{}", issued.pem, ca_pem)),
            ca_certificate: b64(ca_pem),
            client_certificate: b64(&issued.pem),
        })
    }

    pub fn check_client_certificate(
        &self,
        der: Option<&[u8]>,
    ) -> Result<ClientIdentity, CertRefusal> {
        self.client_ca().ca.check_client_certificate(
            der,
            |fingerprint| {
                self.state()
                    .certificates
                    .get(fingerprint)
                    .is_some_and(|c| c.revoked)
            },
            self.clock.now(),
        )
    }

    /// Revokes one certificate by its fingerprint (hex, colons and case
    /// ignored).
    pub fn revoke_certificate(&self, fingerprint: &str) -> Result<(), SimError> {
        let fingerprint = fingerprint.to_ascii_lowercase().replace(':', "");
        let mut state = self.state();
        let cert = state
            .certificates
            .get_mut(&fingerprint)
            .ok_or(SimError::UnknownCertificate(fingerprint))?;
        cert.revoked = true;
        Ok(())
    }

    /// Revokes every certificate of a runtime; returns how many were revoked.
    pub fn revoke_runtime_certificates(&self, runtime_id: &str) -> Result<usize, SimError> {
        let mut state = self.state();
        if !state.runtimes.contains_key(runtime_id) {
            return Err(SimError::UnknownRuntime(runtime_id.to_string()));
        }
        let mut count = 0;
        for cert in state.certificates.values_mut() {
            if cert.runtime_id == runtime_id && !cert.revoked {
                cert.revoked = true;
                count += 1;
            }
        }
        Ok(count)
    }

    pub fn certificates(&self) -> Vec<CertificateInfo> {
        self.state()
            .certificates
            .iter()
            .map(|(fingerprint, c)| CertificateInfo {
                fingerprint: fingerprint.clone(),
                serial: c.serial.clone(),
                system_auth: c.system_auth.clone(),
                runtime_id: c.runtime_id.clone(),
                not_before: rfc3339(c.not_before),
                not_after: rfc3339(c.not_after),
                revoked: c.revoked,
                ca_generation: c.ca_generation,
            })
            .collect()
    }

    /// Replaces the client CA with a new one; returns the new CA's PEM.
    pub fn rotate_ca(&self) -> Result<String, SimError> {
        let next = CertificateAuthority::generate_rsa("compass-sim client CA")?;
        let pem = next.cert_pem().to_string();
        let mut guard = self.client_ca.write().unwrap_or_else(|p| p.into_inner());
        let generation = guard.generation + 1;
        *guard = Arc::new(ClientCa {
            ca: next,
            generation,
        });
        Ok(pem)
    }
}

fn runtime_info(state: &State, rt: &RuntimeState) -> RuntimeInfo {
    let subject = rt.subject("").to_compass_string();
    let mut system_auths: Vec<String> = state
        .system_auths
        .iter()
        .filter(|(_, auth)| auth.runtime_id == rt.spec.id)
        .map(|(id, _)| id.clone())
        .collect();
    system_auths.sort();
    RuntimeInfo {
        id: rt.spec.id.clone(),
        tenant: rt.spec.tenant.clone(),
        name: rt.name(),
        description: rt.spec.description.clone(),
        labels: rt.spec.labels.clone(),
        subject: subject.strip_suffix(",CN=").unwrap_or(&subject).to_string(),
        key_algorithm: rt.key_algorithm(),
        system_auths,
        application_ids: rt.applications.iter().map(|a| a.id.clone()).collect(),
    }
}

fn validate_application(app: &Application) -> Result<(), SimError> {
    if app.id.trim().is_empty() || app.name.trim().is_empty() {
        return Err(SimError::InvalidInput(
            "an application needs an id and a name".into(),
        ));
    }
    let mut bundle_ids = std::collections::HashSet::new();
    for bundle in &app.bundles {
        if !bundle_ids.insert(bundle.id.as_str()) {
            return Err(SimError::InvalidInput(format!(
                "bundle id {:?} appears twice in application {:?}",
                bundle.id, app.id
            )));
        }
    }
    Ok(())
}

/// 32 random bytes, URL-safe base64 (43 characters).
fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
