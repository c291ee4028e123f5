//! The running simulator: the listeners bound, the URLs they hand out, the
//! CAs made or loaded, the scenario seeded, the servers started and stopped.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::ca::{self, CertificateAuthority};
use crate::clock::Clock;
use crate::config::{CaPem, SimConfig};
use crate::gateway::{self, CONNECTOR_PATH, DIRECTOR_PATH};
use crate::state::{Settings, Shared, SimError, Urls};
use crate::tls::{self, install_crypto_provider};
use crate::{admin, scenario};

/// A running compass-sim. Dropping it stops the listeners; `shutdown` also
/// waits for them.
pub struct CompassSim {
    pub(crate) shared: Arc<Shared>,
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
                config.public_mtls_port.unwrap_or(mtls_addr.port()),
                CONNECTOR_PATH
            ),
            director_url: format!(
                "https://{}:{}{}",
                host_for(mtls_addr),
                config.public_mtls_port.unwrap_or(mtls_addr.port()),
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
            scenario::seed(&shared, scenario)?;
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
}
