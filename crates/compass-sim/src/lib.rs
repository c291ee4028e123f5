//! compass-sim: a local Compass (Connector + Director) with a real CA, mTLS,
//! paging and injectable faults, for testing, demonstrating and benchmarking
//! the Compass Runtime Agent.
//!
//! ```no_run
//! # async fn demo() -> Result<(), compass_sim::SimError> {
//! use compass_sim::{CompassSim, SimConfig};
//! let sim = CompassSim::start(SimConfig::default()).await?;
//! sim.create_runtime("my-runtime", "my-tenant")?;
//! let token = sim.issue_token("my-runtime")?;
//! println!("CONNECTOR_URL={} TOKEN={token}", sim.connector_url());
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

pub mod ca;
pub mod clock;
pub mod faults;
pub mod graphql;
pub mod log;
pub mod model;
pub mod names;
pub mod order;
pub mod scenario;

mod admin;
mod gateway;
mod state;
mod tls;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use crate::ca::{CertRefusal, ClientIdentity, Subject};
pub use crate::clock::Clock;
pub use crate::faults::{Fault, FaultKind, FaultTimes};
pub use crate::gateway::{CONNECTOR_PATH, DIRECTOR_PATH};
pub use crate::graphql::{connector_sdl, director_sdl};
pub use crate::log::{Caller, Endpoint, Outcome, RequestLogEntry};
pub use crate::model::{Application, RuntimeSpec, SubjectTemplate};
pub use crate::names::ApplicationNames;
pub use crate::order::ListOrder;
pub use crate::scenario::Scenario;
pub use crate::state::{CertificateInfo, RuntimeInfo, Settings, SimError, Urls};
pub use crate::tls::{install_crypto_provider, HandshakeCounter};

use crate::ca::CertificateAuthority;
use crate::state::Shared;

/// A CA to load instead of generating one.
#[derive(Clone)]
pub struct CaPem {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for CaPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaPem")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// How to start compass-sim. `Default`: every listener on 127.0.0.1 with a
/// free port, Compass's defaults (2160h certificates, 60-minute tokens, lists
/// in an order of a random seed, names normalized by the Director), no strict
/// key check, fresh CAs.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// `gateway`: the token-secured Connector (server TLS only).
    pub gateway_addr: SocketAddr,
    /// `gateway-mtls`: the certificate-secured Connector and the Director.
    pub mtls_gateway_addr: SocketAddr,
    /// Plain-HTTP admin API; `None` turns it off. Keep it on loopback.
    pub admin_addr: Option<SocketAddr>,
    /// Host name in the URLs handed out; default: the listen IP, or
    /// `localhost` when listening on all interfaces.
    pub public_host: Option<String>,
    /// Extra DNS names / IPs for the server certificate (always has
    /// `localhost`, 127.0.0.1 and ::1).
    pub server_names: Vec<String>,
    pub cert_validity: Duration,
    pub token_ttl: Duration,
    pub strict: bool,
    /// The order of the Director's lists; default [`ListOrder::Seeded`] with
    /// `COMPASS_SIM_LIST_ORDER_SEED` or a random seed.
    pub list_order: ListOrder,
    /// What the Director does to application names; default as Compass.
    pub application_names: ApplicationNames,
    /// The client CA (signs CSRs; trusted by the mTLS endpoints).
    pub client_ca: Option<CaPem>,
    /// The CA that issues the HTTPS server certificate.
    pub server_ca: Option<CaPem>,
    /// Runtimes and applications to seed at start.
    pub scenario: Option<Scenario>,
    /// How many request log entries to keep.
    pub request_log_capacity: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        let loopback = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        let settings = Settings::default();
        Self {
            gateway_addr: loopback,
            mtls_gateway_addr: loopback,
            admin_addr: Some(loopback),
            public_host: None,
            server_names: Vec::new(),
            cert_validity: settings.cert_validity,
            token_ttl: settings.token_ttl,
            strict: settings.strict,
            list_order: settings.list_order,
            application_names: settings.application_names,
            client_ca: None,
            server_ca: None,
            scenario: None,
            request_log_capacity: 10_000,
        }
    }
}

/// A running compass-sim. Dropping it stops the listeners; `shutdown` also
/// waits for them.
pub struct CompassSim {
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    handshakes: TlsHandshakes,
}

/// TLS handshakes each listener has completed so far.
#[derive(Clone, Debug, Default)]
pub struct TlsHandshakes {
    /// The token-secured Connector's listener.
    pub token_secured: Arc<tls::HandshakeCounter>,
    /// The mTLS listener: the certificate-secured Connector and the Director.
    pub certificate_secured: Arc<tls::HandshakeCounter>,
}

impl Drop for CompassSim {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn bind(addr: SocketAddr, what: &str) -> Result<(TcpListener, SocketAddr), SimError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| SimError::Io {
            context: format!("binding the {what} listener on {addr}"),
            source,
        })?;
    let local = listener.local_addr().map_err(|source| SimError::Io {
        context: format!("reading the {what} listener's address"),
        source,
    })?;
    Ok((listener, local))
}

fn url_host(host: &str) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
        _ => host.to_string(),
    }
}

fn default_host(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        "localhost".to_string()
    } else {
        addr.ip().to_string()
    }
}

fn load_ca(
    pem: Option<&CaPem>,
    generate: impl FnOnce() -> Result<CertificateAuthority, ca::CaError>,
) -> Result<CertificateAuthority, SimError> {
    Ok(match pem {
        Some(p) => CertificateAuthority::from_pem(&p.cert_pem, &p.key_pem)?,
        None => generate()?,
    })
}

impl CompassSim {
    /// Binds the listeners, creates (or loads) the CAs, seeds the scenario and
    /// starts serving.
    pub async fn start(config: SimConfig) -> Result<CompassSim, SimError> {
        install_crypto_provider();
        let (gateway, gateway_addr) = bind(config.gateway_addr, "gateway").await?;
        let (mtls, mtls_addr) = bind(config.mtls_gateway_addr, "gateway-mtls").await?;
        let admin = match config.admin_addr {
            Some(addr) => Some(bind(addr, "admin").await?),
            None => None,
        };

        let host_for = |addr: SocketAddr| {
            url_host(
                &config
                    .public_host
                    .clone()
                    .unwrap_or_else(|| default_host(addr)),
            )
        };
        let urls = Urls {
            connector_url: format!(
                "https://{}:{}{}",
                host_for(gateway_addr),
                gateway_addr.port(),
                CONNECTOR_PATH
            ),
            cert_secured_connector_url: format!(
                "https://{}:{}{}",
                host_for(mtls_addr),
                mtls_addr.port(),
                CONNECTOR_PATH
            ),
            director_url: format!(
                "https://{}:{}{}",
                host_for(mtls_addr),
                mtls_addr.port(),
                DIRECTOR_PATH
            ),
            admin_url: admin
                .as_ref()
                .map(|(_, a)| format!("http://{}:{}", url_host(&default_host(*a)), a.port())),
        };

        let server_ca = load_ca(config.server_ca.as_ref(), || {
            CertificateAuthority::generate_ecdsa("compass-sim server CA")
        })?;
        let mut names = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ];
        names.extend(config.public_host.iter().cloned());
        names.extend(config.server_names.iter().cloned());
        names.dedup();
        let (_, server_cert_der, server_key_der) = server_ca.issue_server_certificate(&names)?;
        let client_ca = load_ca(config.client_ca.as_ref(), || {
            CertificateAuthority::generate_rsa("compass-sim client CA")
        })?;

        let shared = Arc::new(Shared::new(
            Clock::new(),
            urls,
            server_ca.cert_pem().to_string(),
            client_ca,
            Settings {
                cert_validity: config.cert_validity,
                token_ttl: config.token_ttl,
                strict: config.strict,
                list_order: config.list_order,
                application_names: config.application_names,
            },
            config.request_log_capacity,
        ));
        if let Some(scenario) = &config.scenario {
            apply_scenario(&shared, scenario)?;
        }

        let tls_error = |e: rustls::Error| SimError::InvalidInput(format!("TLS setup: {e}"));
        let gateway_tls =
            tls::server_config(server_cert_der.clone(), server_key_der.clone(), false)
                .map_err(tls_error)?;
        let mtls_tls =
            tls::server_config(server_cert_der, server_key_der, true).map_err(tls_error)?;
        let routes = gateway::Gateway::new(shared.clone());
        let shutdown = CancellationToken::new();
        let handshakes = TlsHandshakes::default();
        let mut tasks = vec![
            tokio::spawn(tls::serve_tls(
                gateway,
                gateway_tls,
                routes.token_router(),
                shutdown.clone(),
                handshakes.token_secured.clone(),
            )),
            tokio::spawn(tls::serve_tls(
                mtls,
                mtls_tls,
                routes.mtls_router(),
                shutdown.clone(),
                handshakes.certificate_secured.clone(),
            )),
        ];
        if let Some((listener, _)) = admin {
            let router = admin::router(shared.clone());
            let stop = shutdown.clone();
            tasks.push(tokio::spawn(async move {
                let served = axum::serve(listener, router)
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await;
                if let Err(e) = served {
                    tracing::warn!(error = %e, "admin listener stopped");
                }
            }));
        }
        tracing::info!(
            connector = %shared.urls.connector_url,
            director = %shared.urls.director_url,
            list_order = ?config.list_order,
            application_names = ?config.application_names,
            "compass-sim started"
        );
        Ok(CompassSim {
            shared,
            shutdown,
            tasks,
            handshakes,
        })
    }

    /// Stops every listener and waits for them.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }

    /// TLS handshakes completed so far, per listener.
    pub fn tls_handshakes(&self) -> &TlsHandshakes {
        &self.handshakes
    }

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
        apply_scenario(&self.shared, scenario)
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

pub(crate) fn apply_scenario(shared: &Shared, scenario: &Scenario) -> Result<(), SimError> {
    // Refuse before changing anything, so a bad scenario leaves no half state.
    let mut ids = std::collections::HashSet::new();
    for runtime in &scenario.runtimes {
        let id = &runtime.spec.id;
        if !ids.insert(id.as_str()) || shared.runtime_info(id).is_ok() {
            return Err(SimError::RuntimeExists(id.clone()));
        }
    }
    let s = &scenario.settings;
    let cert_validity = s
        .cert_validity
        .as_deref()
        .map(scenario::parse_duration)
        .transpose()?;
    let token_ttl = s
        .token_ttl
        .as_deref()
        .map(scenario::parse_duration)
        .transpose()?;
    shared.update_settings(|settings| {
        if let Some(v) = cert_validity {
            settings.cert_validity = v;
        }
        if let Some(v) = token_ttl {
            settings.token_ttl = v;
        }
        if let Some(v) = s.strict {
            settings.strict = v;
        }
        if let Some(v) = s.list_order {
            settings.list_order = v;
        }
        if let Some(v) = s.application_names {
            settings.application_names = v;
        }
    });
    for runtime in &scenario.runtimes {
        shared.create_runtime(runtime.spec.clone())?;
        shared.replace_applications(&runtime.spec.id, runtime.all_applications())?;
    }
    Ok(())
}
