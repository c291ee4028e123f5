//! TLS on both sides of the terminating proxy: the certificate it shows its
//! clients ([`ServingCert`]) and how it reaches and checks its upstream
//! ([`TlsUpstream`]).

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context as _};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// ALPN of both sides: the proxy speaks HTTP/1.1 only (see the module
/// documentation).
const HTTP_1_1: &[u8] = b"http/1.1";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The certificate the TLS-terminating proxy presents to its clients, and the
/// CA its clients must trust for it.
///
/// [`ServingCert::generate`] makes a new CA and a certificate for
/// `127.0.0.1`, `::1` and `localhost` signed by it (rcgen, ECDSA P-256);
/// [`ServingCert::from_pem`] takes one the test made.
pub struct ServingCert {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    ca_pem: String,
}

impl ServingCert {
    /// A new CA, and a serving certificate for `127.0.0.1`, `::1` and
    /// `localhost` issued by it.
    pub fn generate() -> anyhow::Result<ServingCert> {
        let ca_key = KeyPair::generate().context("generating the CA's key")?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "test-support fault proxy CA");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca, ca_key);

        let key = KeyPair::generate().context("generating the serving key")?;
        let mut leaf = CertificateParams::new(vec![
            "127.0.0.1".to_string(),
            "::1".to_string(),
            "localhost".to_string(),
        ])?;
        leaf.distinguished_name
            .push(DnType::CommonName, "test-support fault proxy");
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = leaf.signed_by(&key, &issuer)?;

        Ok(ServingCert {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::try_from(key.serialize_der())
                .map_err(|e| anyhow!("the serving key: {e}"))?,
            ca_pem: ca_cert.pem(),
        })
    }

    /// A certificate chain and its key (PEM), and the PEM of the CA that
    /// clients are to trust for it.
    pub fn from_pem(chain_pem: &str, key_pem: &str, ca_pem: &str) -> anyhow::Result<ServingCert> {
        let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .context("reading the certificate chain")?;
        if chain.is_empty() {
            bail!("no certificate in the chain's PEM");
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).context("reading the key")?;
        CertificateDer::from_pem_slice(ca_pem.as_bytes()).context("reading the CA")?;
        Ok(ServingCert {
            chain,
            key,
            ca_pem: ca_pem.to_string(),
        })
    }

    /// The PEM of the CA that clients of the proxy must trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A rustls server configuration with this certificate, as the proxy
    /// uses it (and a test's own TLS server may): no client certificate
    /// asked for, ALPN `http/1.1` only.
    pub fn server_config(&self) -> anyhow::Result<Arc<ServerConfig>> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .context("the serving certificate and its key")?;
        config.alpn_protocols = vec![HTTP_1_1.to_vec()];
        Ok(Arc::new(config))
    }
}

impl Clone for ServingCert {
    fn clone(&self) -> Self {
        ServingCert {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            ca_pem: self.ca_pem.clone(),
        }
    }
}

impl fmt::Debug for ServingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServingCert")
            .field("chain", &self.chain.len())
            .finish_non_exhaustive()
    }
}

/// Where the TLS-terminating proxy forwards to, and how it checks the
/// upstream's certificate. The proxy presents no client certificate to it.
#[derive(Clone)]
pub struct TlsUpstream {
    addr: SocketAddr,
    server_name: ServerName<'static>,
    config: Arc<ClientConfig>,
}

impl TlsUpstream {
    /// The upstream at `addr`, whose certificate must be valid for
    /// `server_name` (a DNS name or an IP address) and issued by a CA of
    /// `ca_pem`.
    pub fn new(addr: SocketAddr, server_name: &str, ca_pem: &str) -> anyhow::Result<TlsUpstream> {
        let roots = CertificateDer::pem_slice_iter(ca_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .context("reading the upstream's CA")?;
        TlsUpstream::with_roots(addr, server_name, roots)
    }

    /// The API server of `config` (its `cluster_url`, checked with its
    /// `root_cert` or `root_cert_file`, and `tls_server_name` when set), as
    /// [`TestEnv::kube_config`](crate::TestEnv::kube_config) gives it.
    ///
    /// Errors when the configuration has no CA of its own (a cluster whose
    /// certificate the system's roots trust) or skips verification.
    pub async fn of_apiserver(config: &kube::Config) -> anyhow::Result<TlsUpstream> {
        if config.cluster_url.scheme_str() != Some("https") {
            bail!("the API server's URL {} is not https", config.cluster_url);
        }
        let addr = resolve(&config.cluster_url).await?;
        let host = url_host(&config.cluster_url)?;
        let server_name = config.tls_server_name.as_deref().unwrap_or(&host);
        if config.accept_invalid_certs {
            bail!("the kube config skips TLS verification; the fault proxy verifies its upstream");
        }
        let roots = if let Some(path) = &config.root_cert_file {
            let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("reading {}", path.display()))?
        } else if let Some(ders) = &config.root_cert {
            ders.iter()
                .map(|der| CertificateDer::from(der.clone()))
                .collect()
        } else {
            bail!(
                "the kube config names no CA for {}; the fault proxy needs it to verify the upstream",
                config.cluster_url
            );
        };
        TlsUpstream::with_roots(addr, server_name, roots)
    }

    fn with_roots(
        addr: SocketAddr,
        server_name: &str,
        roots: Vec<CertificateDer<'static>>,
    ) -> anyhow::Result<TlsUpstream> {
        let mut store = RootCertStore::empty();
        for root in roots {
            store.add(root).context("adding the upstream's CA")?;
        }
        if store.is_empty() {
            bail!("no CA certificate for the upstream");
        }
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(store)
            .with_no_client_auth();
        config.alpn_protocols = vec![HTTP_1_1.to_vec()];
        let server_name = ServerName::try_from(server_name.to_string())
            .map_err(|e| anyhow!("server name {server_name:?}: {e}"))?;
        Ok(TlsUpstream {
            addr,
            server_name,
            config: Arc::new(config),
        })
    }

    /// The upstream's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(super) fn server_name(&self) -> ServerName<'static> {
        self.server_name.clone()
    }

    pub(super) fn client_config(&self) -> Arc<ClientConfig> {
        self.config.clone()
    }
}

impl fmt::Debug for TlsUpstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsUpstream")
            .field("addr", &self.addr)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// The host of `url`, without the brackets of an IPv6 address.
pub(super) fn url_host(url: &hyper::Uri) -> anyhow::Result<String> {
    let host = url.host().ok_or_else(|| anyhow!("no host in {url}"))?;
    Ok(host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string())
}

/// The first address of `url`'s host and port (443 for https, else 80).
pub(super) async fn resolve(url: &hyper::Uri) -> anyhow::Result<SocketAddr> {
    let host = url_host(url)?;
    let port = url.port_u16().unwrap_or(match url.scheme_str() {
        Some("https") => 443,
        _ => 80,
    });
    let mut addrs = tokio::net::lookup_host((host.as_str(), port))
        .await
        .with_context(|| format!("resolving {host}"))?;
    addrs.next().ok_or_else(|| anyhow!("{host} has no address"))
}
