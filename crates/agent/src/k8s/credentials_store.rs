//! The client certificate and CA Secrets: keys `crt`, `key`, `crtChain` in
//! APP_CLUSTER_CERTIFICATES_SECRET and `cacert` in APP_CA_CERTIFICATES_SECRET.
//! Keys the agent does not own are kept: writes merge, never replace.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};

use crate::certificates::{CertificateError, ClientCredentials};
use crate::config::NamespacedName;
use crate::k8s::{patch_params, write_params};

pub const CERTIFICATE_KEY: &str = "crt";
pub const PRIVATE_KEY_KEY: &str = "key";
pub const CHAIN_KEY: &str = "crtChain";
pub const CA_KEY: &str = "cacert";

#[derive(Debug, thiserror::Error)]
pub enum CredentialsStoreError {
    #[error("the client certificate Secret {0} does not exist")]
    Missing(String),
    #[error("the client certificate Secret {secret} has no {key:?} key")]
    MissingKey { secret: String, key: &'static str },
    #[error("the credentials in Secret {secret} are not usable: {source}")]
    Invalid {
        secret: String,
        #[source]
        source: CertificateError,
    },
    #[error("cannot read Secret {secret}: {source}")]
    Read {
        secret: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot write Secret {secret}: {source}")]
    Write {
        secret: String,
        #[source]
        source: kube::Error,
    },
    #[error("the client certificate could not be stored in Secret {secret}, so the one-time token was not used: {source}")]
    NotWritable {
        secret: String,
        #[source]
        source: kube::Error,
    },
}

#[derive(Clone)]
pub struct CredentialsStore {
    client: Client,
    certificates: NamespacedName,
    ca: NamespacedName,
}

impl CredentialsStore {
    pub fn new(
        client: Client,
        certificates: NamespacedName,
        ca: NamespacedName,
    ) -> CredentialsStore {
        CredentialsStore {
            client,
            certificates,
            ca,
        }
    }

    fn api(&self, name: &NamespacedName) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &name.namespace)
    }

    /// Reads and checks the stored credentials.
    pub async fn load(&self) -> Result<ClientCredentials, CredentialsStoreError> {
        let secret_name = self.certificates.to_string();
        let secret = self
            .api(&self.certificates)
            .get_opt(&self.certificates.name)
            .await
            .map_err(|source| CredentialsStoreError::Read {
                secret: secret_name.clone(),
                source,
            })?
            .ok_or_else(|| CredentialsStoreError::Missing(secret_name.clone()))?;
        let data = secret.data.unwrap_or_default();
        let text = |key: &'static str| -> Result<String, CredentialsStoreError> {
            data.get(key)
                .map(|value| String::from_utf8_lossy(&value.0).into_owned())
                .filter(|value| !value.trim().is_empty())
                .ok_or(CredentialsStoreError::MissingKey {
                    secret: secret_name.clone(),
                    key,
                })
        };
        let key = text(PRIVATE_KEY_KEY)?;
        let certificate = text(CERTIFICATE_KEY)?;
        let chain = text(CHAIN_KEY).unwrap_or_default();
        // The CA is informative for the agent itself; an unreadable CA Secret
        // must not make working client credentials unusable.
        let ca = self.load_ca().await.unwrap_or_default();
        ClientCredentials::new(key, certificate, chain, ca).map_err(|source| {
            CredentialsStoreError::Invalid {
                secret: secret_name,
                source,
            }
        })
    }

    async fn load_ca(&self) -> Option<String> {
        let secret = self.api(&self.ca).get_opt(&self.ca.name).await.ok()??;
        let value = secret.data?.remove(CA_KEY)?;
        Some(String::from_utf8_lossy(&value.0).into_owned())
    }

    /// Proves, changing nothing, that the client certificate Secret can be
    /// written: a dry run of the same call `save` makes (RBAC and admission
    /// both answer a dry run). Checked before a one-time token is spent, so
    /// that a token is never traded for a certificate that cannot be kept.
    pub async fn check_writable(&self) -> Result<(), CredentialsStoreError> {
        let name = &self.certificates;
        let api = self.api(name);
        let refused = |source| CredentialsStoreError::NotWritable {
            secret: name.to_string(),
            source,
        };
        let dry_patch = PatchParams {
            dry_run: true,
            ..patch_params()
        };
        let patch = serde_json::json!({ "data": {} });
        match api
            .patch(&name.name, &dry_patch, &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => {
                let secret = opaque_secret(name, BTreeMap::new());
                let dry_create = PostParams {
                    dry_run: true,
                    ..write_params()
                };
                api.create(&dry_create, &secret)
                    .await
                    .map(|_| ())
                    .map_err(refused)
            }
            Err(error) => Err(refused(error)),
        }
    }

    /// Stores checked credentials: the client Secret first (what the agent needs
    /// to work), then the CA Secret. Other keys in both Secrets are kept.
    pub async fn save(&self, credentials: &ClientCredentials) -> Result<(), CredentialsStoreError> {
        self.merge_into(
            &self.certificates,
            BTreeMap::from([
                (CERTIFICATE_KEY, credentials.certificate_pem()),
                (PRIVATE_KEY_KEY, credentials.key_pem()),
                (CHAIN_KEY, credentials.chain_pem()),
            ]),
        )
        .await?;
        if !credentials.ca_pem().is_empty() {
            self.merge_into(&self.ca, BTreeMap::from([(CA_KEY, credentials.ca_pem())]))
                .await?;
        }
        Ok(())
    }

    async fn merge_into(
        &self,
        name: &NamespacedName,
        values: BTreeMap<&str, &str>,
    ) -> Result<(), CredentialsStoreError> {
        let api = self.api(name);
        let write_error = |source| CredentialsStoreError::Write {
            secret: name.to_string(),
            source,
        };
        let data: BTreeMap<String, ByteString> = values
            .into_iter()
            .map(|(key, value)| (key.to_string(), ByteString(value.as_bytes().to_vec())))
            .collect();
        // A merge patch changes only our keys; creating comes first only when the
        // Secret is missing.
        let patch = serde_json::json!({ "data": data });
        match api
            .patch(&name.name, &patch_params(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => {
                let secret = opaque_secret(name, data);
                match api.create(&write_params(), &secret).await {
                    Ok(_) => Ok(()),
                    // Created meanwhile by someone else: merge into theirs.
                    Err(kube::Error::Api(status)) if status.code == 409 => api
                        .patch(&name.name, &patch_params(), &Patch::Merge(&patch))
                        .await
                        .map(|_| ())
                        .map_err(write_error),
                    Err(error) => Err(write_error(error)),
                }
            }
            Err(error) => Err(write_error(error)),
        }
    }
}

fn opaque_secret(name: &NamespacedName, data: BTreeMap<String, ByteString>) -> Secret {
    let mut secret = Secret::default();
    secret.metadata.name = Some(name.name.clone());
    secret.metadata.namespace = Some(name.namespace.clone());
    secret.type_ = Some("Opaque".into());
    secret.data = Some(data);
    secret
}
