//! How to start compass-sim: listeners, URLs, CAs, settings and a scenario.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::names::ApplicationNames;
use crate::order::ListOrder;
use crate::scenario::Scenario;
use crate::state::Settings;

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
    /// The port the certificate-secured URLs handed out name (the
    /// certificate-secured Connector's and the Director's), when it is not
    /// the listener's: a proxy in front of `gateway-mtls`, as the gateway of
    /// a real Compass is in front of its services.
    pub public_mtls_port: Option<u16>,
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
            public_mtls_port: None,
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
