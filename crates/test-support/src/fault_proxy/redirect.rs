//! Pointing a client at the proxy: a [`kube::Config`] for a client in the
//! test's process, a [`Kubeconfig`] (and its file) for a child process, a URL.

use std::path::Path;

use anyhow::{anyhow, Context as _};
use base64::Engine as _;
use kube::config::Kubeconfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::certificates::url_host;
use super::FaultProxy;

impl FaultProxy {
    /// `url` with its host and port replaced by the proxy's, e.g.
    /// `https://127.0.0.1:6443/api` → `https://127.0.0.1:40123/api`. For a URL
    /// in a configuration the agent reads (a Connector URL in front of
    /// compass-sim).
    pub fn redirect_url(&self, url: &str) -> anyhow::Result<String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| anyhow!("{url:?} is not an absolute URL"))?;
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        Ok(format!("{scheme}://{}{}", self.addr, &rest[end..]))
    }

    /// `config` (e.g. [`TestEnv::kube_config`](crate::TestEnv::kube_config))
    /// with the proxy as its server, for a client in this process.
    ///
    /// Through a raw TCP proxy the client still checks the API server's
    /// certificate, for the host it named before (`tls_server_name`); its
    /// credentials pass untouched. Through the TLS-terminating proxy the
    /// client trusts only the proxy's CA; set a bearer token in
    /// `auth_info`, since a client certificate does not reach the API server.
    pub fn kube_config(&self, mut config: kube::Config) -> kube::Config {
        let original_host = url_host(&config.cluster_url).ok();
        let url = self
            .redirect_url(&config.cluster_url.to_string())
            .and_then(|url| url.parse().context("the redirected URL"))
            .expect("a kube::Config's URL is absolute");
        config.cluster_url = url;
        match &self.ca_pem {
            Some(ca_pem) => {
                let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes())
                    .expect("the proxy's CA was read as PEM when it started");
                config.root_cert = Some(vec![ca.to_vec()]);
                config.root_cert_file = None;
                config.tls_server_name = None;
                config.accept_invalid_certs = false;
            }
            None => {
                if config.tls_server_name.is_none() {
                    config.tls_server_name = original_host;
                }
            }
        }
        config
    }

    /// `kubeconfig` with the proxy as the server of each of its clusters,
    /// for a child process (write it with [`write_kubeconfig`] and pass the
    /// path in `KUBECONFIG`). As [`FaultProxy::kube_config`]: through a raw
    /// proxy the API server's certificate is checked for its former host
    /// (`tls-server-name`); through the TLS-terminating proxy the clusters
    /// trust the proxy's CA (`certificate-authority-data`) instead of the API
    /// server's.
    pub fn kubeconfig(&self, mut kubeconfig: Kubeconfig) -> Kubeconfig {
        for named in &mut kubeconfig.clusters {
            let Some(cluster) = named.cluster.as_mut() else {
                continue;
            };
            let Some(server) = cluster.server.clone() else {
                continue;
            };
            let original_host = server
                .parse::<hyper::Uri>()
                .ok()
                .and_then(|url| url_host(&url).ok());
            if let Ok(redirected) = self.redirect_url(&server) {
                cluster.server = Some(redirected);
            }
            match &self.ca_pem {
                Some(ca_pem) => {
                    cluster.certificate_authority = None;
                    cluster.certificate_authority_data =
                        Some(base64::engine::general_purpose::STANDARD.encode(ca_pem));
                    cluster.insecure_skip_tls_verify = None;
                    cluster.tls_server_name = None;
                }
                None => {
                    if cluster.tls_server_name.is_none() {
                        cluster.tls_server_name = original_host;
                    }
                }
            }
        }
        kubeconfig
    }
}

/// Writes `kubeconfig` to `path` (as JSON, which every kubeconfig reader
/// takes: JSON is YAML).
pub fn write_kubeconfig(kubeconfig: &Kubeconfig, path: &Path) -> anyhow::Result<()> {
    let text = serde_json::to_vec_pretty(kubeconfig).context("encoding the kubeconfig")?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
