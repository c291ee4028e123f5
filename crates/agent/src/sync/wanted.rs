//! What the Director wants the cluster to hold: each application as
//! converted ([`WantedApplication`], with its [`WantedSecret`]s), and the
//! form in which a sync holds it from its arrival to the plan
//! ([`HeldApplication`]). Nothing may be written until the whole fetch has
//! succeeded, so every application's wanted state waits in memory: packed
//! ([`PackedApplication`]), or, when the cluster already holds it exactly,
//! settled to the names of its Secrets.

use std::collections::BTreeMap;

use super::compact::NameList;
use super::digest::{data_hash, DataDigest, OwnedDigest};
use crate::crd::application::Application;
use crate::crd::labels::{SECRET_APP_LABEL, SECRET_BUNDLE_LABEL};

/// What the cluster should hold for one Director application.
#[derive(Clone, Debug, PartialEq)]
pub struct WantedApplication {
    pub application: Application,
    pub secrets: Vec<WantedSecret>,
}

/// A credentials or request-parameters Secret, before it gets its owner. Kept
/// lean (labels derived, fixed keys not allocated): a sync holds one for each
/// bundle's credentials and parameters until the Director fetch completes.
#[derive(Clone, PartialEq, Eq)]
pub struct WantedSecret {
    pub name: String,
    /// The Application's name (the `app` label).
    pub app: String,
    /// The bundle the Secret belongs to (the `bundleId` label).
    pub bundle_id: String,
    pub data: SecretData,
}

impl WantedSecret {
    /// The digest of this data ([`data_hash`]): what the plan compares with
    /// the digest of a Secret's data in the cluster.
    pub fn data_hash(&self) -> DataDigest {
        data_hash(self.data.iter())
    }

    /// The labels the agent puts on the Secret: the Go agent's (`makeSecret`),
    /// no more, so that a swap either way rewrites no Secret.
    pub fn labels(&self) -> BTreeMap<String, String> {
        self.label_values()
            .into_iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    pub fn label_values(&self) -> [(&'static str, &str); 2] {
        [
            (SECRET_APP_LABEL, &self.app),
            (SECRET_BUNDLE_LABEL, &self.bundle_id),
        ]
    }
}

/// A Secret's data: a few fixed keys (`username`, `clientId`, `headers`, …),
/// in key order.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretData(Vec<(&'static str, Vec<u8>)>);

impl SecretData {
    pub fn new(mut entries: Vec<(&'static str, Vec<u8>)>) -> SecretData {
        entries.sort_by_key(|(key, _)| *key);
        entries.dedup_by_key(|(key, _)| *key);
        SecretData(entries)
    }

    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, value)| value.as_slice())
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Keys and values in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.0.iter().map(|(key, value)| (*key, value.as_slice()))
    }
}

impl std::fmt::Debug for WantedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WantedSecret")
            .field("name", &self.name)
            .field("app", &self.app)
            .field("bundle_id", &self.bundle_id)
            .field(
                "keys",
                &self.data.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// An `Application` kept as its JSON text, LZ4-compressed: a fraction of the
/// memory of the parsed object (the text repeats its names and URLs, which
/// compress well); unpacked only when it is written.
#[derive(Clone, PartialEq, Eq)]
pub struct PackedApplication(Box<[u8]>);

/// A packed Application that does not unpack: never expected, since the
/// agent packed it itself, but reported rather than trusted.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("its packed text is damaged")]
    Decompress(#[from] lz4_flex::block::DecompressError),
    #[error("its packed text is not an Application")]
    Json(#[from] serde_json::Error),
}

impl PackedApplication {
    pub fn pack(application: &Application) -> PackedApplication {
        // Cannot fail: string keys only. An empty text would fail `unpack`,
        // and so that Application's write, not the agent.
        let json = serde_json::to_vec(application).unwrap_or_default();
        PackedApplication(lz4_flex::block::compress_prepend_size(&json).into_boxed_slice())
    }

    pub fn unpack(&self) -> Result<Application, UnpackError> {
        let json = lz4_flex::block::decompress_size_prepended(&self.0)?;
        Ok(serde_json::from_slice(&json)?)
    }

    /// Its size in memory, in bytes.
    pub fn packed_len(&self) -> usize {
        self.0.len()
    }
}

impl std::fmt::Debug for PackedApplication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.unpack() {
            Ok(application) => application.fmt(f),
            Err(error) => write!(f, "PackedApplication(<{error}>)"),
        }
    }
}

/// What the Director wants for one application, waiting to be planned.
#[derive(Clone, Debug, PartialEq)]
pub struct HeldApplication {
    pub name: String,
    pub application_id: String,
    pub owned: OwnedDigest,
    pub content: Content,
    /// Why the Director's answer for it did not come whole, if it did not:
    /// then it is neither written nor deleted.
    pub inconsistency: Option<String>,
}

/// What a held application keeps of the Director's wanted state.
#[derive(Clone, Debug, PartialEq)]
pub enum Content {
    /// Everything a write needs.
    Full {
        application: PackedApplication,
        secrets: Vec<WantedSecret>,
    },
    /// The cluster already held exactly this when the fetch compared it
    /// ([`super::plan::settle`]): nothing of it will be written, so only the
    /// names of its Secrets are kept (the plan must not delete them). An idle
    /// sync holds this for every application, instead of its packed
    /// Application and its Secrets' data.
    Settled { secret_names: NameList },
}

impl HeldApplication {
    /// The same, marked as not whole when `inconsistency` says why.
    pub fn incomplete(mut self, inconsistency: Option<String>) -> HeldApplication {
        self.inconsistency = inconsistency;
        self
    }

    /// The names of the Secrets it refers to.
    pub fn secret_names(&self) -> impl Iterator<Item = &str> {
        let (wanted, settled) = match &self.content {
            Content::Full { secrets, .. } => (Some(secrets), None),
            Content::Settled { secret_names } => (None, Some(secret_names)),
        };
        let wanted = wanted.into_iter().flatten().map(|s| s.name.as_str());
        let settled = settled.into_iter().flat_map(NameList::iter);
        wanted.chain(settled)
    }

    pub fn is_settled(&self) -> bool {
        matches!(self.content, Content::Settled { .. })
    }
}

impl From<WantedApplication> for HeldApplication {
    fn from(wanted: WantedApplication) -> HeldApplication {
        let application = &wanted.application;
        HeldApplication {
            name: application.metadata.name.clone().unwrap_or_default(),
            application_id: application
                .spec
                .compass_metadata
                .as_ref()
                .map(|metadata| metadata.application_id.clone())
                .unwrap_or_default(),
            owned: OwnedDigest::of(&application.spec),
            content: Content::Full {
                application: PackedApplication::pack(application),
                secrets: wanted.secrets,
            },
            inconsistency: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A typical Application with a label of its own.
    fn application() -> Application {
        let mut app = Application::new("shop", crate::sync::digest::tests::spec());
        app.metadata.labels = Some(BTreeMap::from([("l".into(), "v".into())]));
        app
    }

    #[test]
    fn a_packed_application_unpacks_to_the_same_application() {
        let app = application();
        let packed = PackedApplication::pack(&app);
        assert_eq!(packed.unpack().unwrap(), app);
        let json_len = serde_json::to_vec(&app).unwrap().len();
        assert!(
            packed.packed_len() < json_len,
            "{} ≥ {json_len}",
            packed.packed_len()
        );
    }

    #[test]
    fn damaged_packed_text_is_an_error_not_a_panic() {
        let packed = PackedApplication::pack(&application());
        let mut bytes = packed.0.to_vec();
        bytes.truncate(bytes.len() / 2);
        let damaged = PackedApplication(bytes.into_boxed_slice());
        assert!(damaged.unpack().is_err());
    }

    #[test]
    fn a_held_application_keeps_name_id_and_digest() {
        let held = HeldApplication::from(WantedApplication {
            application: application(),
            secrets: vec![],
        });
        assert_eq!(held.name, "shop");
        assert_eq!(held.application_id, "app-1");
        assert_eq!(held.owned, OwnedDigest::of(&application().spec));
        assert!(!held.is_settled());
    }
}
