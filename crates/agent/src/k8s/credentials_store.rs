//! The client certificate and CA Secrets: keys `crt`, `key`, `crtChain` in
//! APP_CLUSTER_CERTIFICATES_SECRET and `cacert` in APP_CA_CERTIFICATES_SECRET.
//! Keys the agent does not own are kept: writes merge, never replace.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::PostParams;
use kube::{Api, Client};
use zeroize::Zeroizing;

use crate::certificates::{CertificateError, ClientCredentials};
use crate::config::NamespacedName;
use crate::k8s::errors::is_conflict;
use crate::k8s::replace::read_merge_replace;
use crate::k8s::write_params;
use crate::report::Report;

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
    #[error("the credentials in Secret {secret} are not usable")]
    Invalid {
        secret: String,
        #[source]
        source: CertificateError,
    },
    #[error("cannot read Secret {secret}")]
    Read {
        secret: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot write Secret {secret}")]
    Write {
        secret: String,
        #[source]
        source: kube::Error,
    },
    #[error("the credentials could not be stored in Secret {secret}, so the one-time token was not used")]
    NotWritable {
        secret: String,
        #[source]
        source: kube::Error,
    },
}

/// The stored credentials as read, and whether loading them would write
/// the key again (see [`CredentialsStore::load`]).
pub struct StoredCredentials {
    pub credentials: ClientCredentials,
    /// The key is stored in another form than PKCS#1 (PKCS#8, by an earlier
    /// release): `load` rewrites it as PKCS#1, the same key.
    pub key_needs_rewrite: bool,
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

    /// Reads and checks the stored credentials; a key stored in another form
    /// than PKCS#1 is written again as PKCS#1 (see [`Self::store_key_as_pkcs1`]).
    pub async fn load(&self) -> Result<ClientCredentials, CredentialsStoreError> {
        let stored = self.read().await?;
        if stored.key_needs_rewrite {
            self.store_key_as_pkcs1(&stored.credentials).await;
        }
        Ok(stored.credentials)
    }

    /// Reads and checks the stored credentials, writing nothing: what
    /// [`Self::load`] reads (`compass-runtime-agent diff` and `status` use it).
    pub async fn read(&self) -> Result<StoredCredentials, CredentialsStoreError> {
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
        let stored_key = Zeroizing::new(text(PRIVATE_KEY_KEY)?);
        let certificate = text(CERTIFICATE_KEY)?;
        let chain = text(CHAIN_KEY).unwrap_or_default();
        // The CA is informative for the agent itself; an unreadable CA Secret
        // must not make working client credentials unusable.
        let ca = self.load_ca().await;
        let credentials = ClientCredentials::new(stored_key.clone(), certificate, chain, ca)
            .map_err(|source| CredentialsStoreError::Invalid {
                secret: secret_name.clone(),
                source,
            })?;
        let key_needs_rewrite = credentials.key_pem() != stored_key.as_str();
        Ok(StoredCredentials {
            credentials,
            key_needs_rewrite,
        })
    }

    /// An RSA key stored as PKCS#8 (by an earlier release of this agent) is
    /// written again as PKCS#1, the same key, so that the original agent can
    /// start from this Secret after a swap back. Best effort: the credentials
    /// work either way, and the next renewal writes PKCS#1 anyway.
    async fn store_key_as_pkcs1(&self, credentials: &ClientCredentials) {
        let written = self
            .merge_into(
                &self.certificates,
                BTreeMap::from([(PRIVATE_KEY_KEY, credentials.key_pem())]),
            )
            .await;
        match written {
            Ok(()) => tracing::info!(
                secret = %self.certificates,
                "rewrote the client key as PKCS#1 (RSA PRIVATE KEY), the form the original agent reads"
            ),
            Err(error) => tracing::warn!(
                secret = %self.certificates,
                error = %Report(&error),
                "cannot rewrite the client key as PKCS#1; the original agent could not start from this Secret until the next renewal"
            ),
        }
    }

    /// The stored CA, empty when there is none or it cannot be read (logged).
    async fn load_ca(&self) -> String {
        match self.read_ca().await {
            Ok(ca) => ca.unwrap_or_default(),
            Err(error) => {
                tracing::warn!(secret = %self.ca, error = %Report(&error), "cannot read the CA Secret; going on without the stored CA");
                String::new()
            }
        }
    }

    /// The CA Secret's `cacert`: `None` when the Secret or the key is missing.
    pub async fn read_ca(&self) -> Result<Option<String>, kube::Error> {
        let secret = self.api(&self.ca).get_opt(&self.ca.name).await?;
        Ok(secret
            .and_then(|secret| secret.data?.remove(CA_KEY))
            .map(|value| String::from_utf8_lossy(&value.0).into_owned()))
    }

    /// Proves, changing nothing, that both Secrets, the client certificate's
    /// and the CA's, can be written: a dry run of the writes `save` makes
    /// (RBAC and admission both answer a dry run). Checked before a one-time
    /// token is spent, so that a token is never traded for credentials that
    /// cannot be kept.
    pub async fn check_writable(&self) -> Result<(), CredentialsStoreError> {
        self.check_secret_writable(&self.certificates).await?;
        self.check_secret_writable(&self.ca).await
    }

    async fn check_secret_writable(
        &self,
        name: &NamespacedName,
    ) -> Result<(), CredentialsStoreError> {
        let api = self.api(name);
        let refused = |source| CredentialsStoreError::NotWritable {
            secret: name.to_string(),
            source,
        };
        let dry_run = PostParams {
            dry_run: true,
            ..write_params()
        };
        match api.get_opt(&name.name).await.map_err(refused)? {
            Some(current) => api
                .replace(&name.name, &dry_run, &current)
                .await
                .map(|_| ())
                .map_err(refused),
            None => api
                .create(&dry_run, &opaque_secret(name, BTreeMap::new()))
                .await
                .map(|_| ())
                .map_err(refused),
        }
    }

    /// Stores checked client credentials (keys `crt`, `key`, `crtChain`):
    /// what the agent needs to work, so they go first. Other keys are kept.
    pub async fn save_client(
        &self,
        credentials: &ClientCredentials,
    ) -> Result<(), CredentialsStoreError> {
        self.merge_into(
            &self.certificates,
            BTreeMap::from([
                (CERTIFICATE_KEY, credentials.certificate_pem()),
                (PRIVATE_KEY_KEY, credentials.key_pem()),
                (CHAIN_KEY, credentials.chain_pem()),
            ]),
        )
        .await
    }

    /// Stores the Compass CA (key `cacert`), keeping other keys.
    pub async fn save_ca(&self, ca_pem: &str) -> Result<(), CredentialsStoreError> {
        self.merge_into(&self.ca, BTreeMap::from([(CA_KEY, ca_pem)]))
            .await
    }

    /// The CA Secret's name.
    pub fn ca_secret(&self) -> &NamespacedName {
        &self.ca
    }

    /// Sets `values` in the Secret, keeping its other keys: read it, change
    /// the keys, replace it at the version read (or create it when missing).
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
        let data = || -> BTreeMap<String, ByteString> {
            values
                .iter()
                .map(|(key, value)| (key.to_string(), ByteString(value.as_bytes().to_vec())))
                .collect()
        };
        // Changed or made meanwhile by someone else: merge into theirs.
        let api = &api;
        read_merge_replace(
            || async move { api.get_opt(&name.name).await.map_err(write_error) },
            |current: &mut Secret| current.data.get_or_insert_with(BTreeMap::new).extend(data()),
            |current| async move {
                api.replace(&name.name, &write_params(), &current)
                    .await
                    .map(|_| ())
                    .map_err(write_error)
            },
            || async move {
                api.create(&write_params(), &opaque_secret(name, data()))
                    .await
                    .map(|_| ())
                    .map_err(write_error)
            },
            |error| matches!(error, CredentialsStoreError::Write { source, .. } if is_conflict(source)),
        )
        .await
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
