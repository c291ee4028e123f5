//! Kubeconfigs and what a kube client needs: the file of an existing cluster,
//! a [`kube::Config`] from a file, the rustls crypto provider.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context as _};
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::blocking::on_private_runtime;

/// The first file of `KUBECONFIG`, else `~/.kube/config`.
pub(crate) fn existing_kubeconfig_path() -> anyhow::Result<PathBuf> {
    if let Some(list) = std::env::var_os("KUBECONFIG") {
        if let Some(first) = std::env::split_paths(&list).find(|p| !p.as_os_str().is_empty()) {
            return Ok(first);
        }
    }
    let home =
        std::env::var_os("HOME").ok_or_else(|| anyhow!("neither KUBECONFIG nor HOME is set"))?;
    Ok(PathBuf::from(home).join(".kube").join("config"))
}

pub(crate) fn load_kubeconfig(path: &Path) -> anyhow::Result<kube::Config> {
    let kubeconfig = Kubeconfig::read_from(path)
        .with_context(|| format!("reading kubeconfig {}", path.display()))?;
    on_private_runtime(async move {
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .context("building a kube::Config from the kubeconfig")
    })
}

/// Installs the rustls aws-lc-rs crypto provider as the process default, once
/// (kube's rustls client needs one); an already installed provider is kept.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}
