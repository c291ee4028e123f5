//! What the Director wants the cluster to hold: each application as
//! converted ([`WantedApplication`], with its [`WantedSecret`]s), and the
//! form in which a sync holds it from its arrival to the plan
//! ([`HeldApplication`]). Nothing may be written until the whole fetch has
//! succeeded, so every application's wanted state waits in memory: packed
//! ([`PackedApplication`]), or, when the cluster already holds it exactly,
//! settled to the names of its Secrets.

use std::collections::BTreeMap;
use std::sync::Arc;

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

/// A credentials or request-parameters Secret, before it gets its owner.
/// A sync holds one for each bundle's credentials and parameters of every
/// application that may be written until the Director fetch completes, so
/// it is one allocation: its name, its `app` and `bundleId` labels and its
/// data one after the other (labels derived, fixed keys stored once each).
#[derive(Clone, PartialEq, Eq)]
pub struct WantedSecret {
    /// The name, the `app` label, the `bundleId` label, then each data entry
    /// in key order as its key's length (one byte), the key, its value's
    /// length (four bytes, little-endian) and the value.
    bytes: Box<[u8]>,
    /// Where the name, the `app` label and the `bundleId` label end.
    ends: [u32; 3],
}

impl WantedSecret {
    /// `app` is the Application's name (the `app` label), `bundle_id` the
    /// bundle the Secret belongs to (the `bundleId` label).
    pub fn new(name: &str, app: &str, bundle_id: &str, data: SecretData) -> WantedSecret {
        let data_len: usize = data
            .0
            .iter()
            .map(|(key, value)| 1 + key.len() + 4 + value.len())
            .sum();
        let mut bytes = Vec::with_capacity(name.len() + app.len() + bundle_id.len() + data_len);
        let mut ends = [0u32; 3];
        for (end, part) in ends.iter_mut().zip([name, app, bundle_id]) {
            bytes.extend_from_slice(part.as_bytes());
            *end = bytes.len() as u32;
        }
        for (key, value) in &data.0 {
            // Keys are the agent's own few short words.
            bytes.push(key.len() as u8);
            bytes.extend_from_slice(key.as_bytes());
            bytes.extend_from_slice(&(value.len() as u32).to_le_bytes());
            bytes.extend_from_slice(value);
        }
        WantedSecret {
            bytes: bytes.into_boxed_slice(),
            ends,
        }
    }

    fn text(&self, part: usize) -> &str {
        let start = match part {
            0 => 0,
            _ => self.ends[part - 1] as usize,
        };
        // Written from `&str`s at these bounds in `new`.
        std::str::from_utf8(&self.bytes[start..self.ends[part] as usize]).unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        self.text(0)
    }

    /// The Application's name (the `app` label).
    pub fn app(&self) -> &str {
        self.text(1)
    }

    /// The bundle the Secret belongs to (the `bundleId` label).
    pub fn bundle_id(&self) -> &str {
        self.text(2)
    }

    /// The same data and `app` label under another name and bundle.
    #[cfg(test)]
    pub fn renamed(&self, name: &str, bundle_id: &str) -> WantedSecret {
        let data = &self.bytes[self.ends[2] as usize..];
        let mut bytes = Vec::new();
        let mut ends = [0u32; 3];
        for (end, part) in ends.iter_mut().zip([name, self.app(), bundle_id]) {
            bytes.extend_from_slice(part.as_bytes());
            *end = bytes.len() as u32;
        }
        bytes.extend_from_slice(data);
        WantedSecret {
            bytes: bytes.into_boxed_slice(),
            ends,
        }
    }

    /// The memory it takes, in bytes.
    pub fn size_in_memory(&self) -> usize {
        std::mem::size_of::<WantedSecret>() + self.bytes.len()
    }

    /// Its data: keys and values in key order.
    pub fn data(&self) -> DataEntries<'_> {
        DataEntries(&self.bytes[self.ends[2] as usize..])
    }

    /// The digest of this data ([`data_hash`]): what the plan compares with
    /// the digest of a Secret's data in the cluster.
    pub fn data_hash(&self) -> DataDigest {
        data_hash(self.data().iter())
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
            (SECRET_APP_LABEL, self.app()),
            (SECRET_BUNDLE_LABEL, self.bundle_id()),
        ]
    }
}

/// A Secret's data as it is built: a few fixed keys (`username`,
/// `clientId`, `headers`, …), in key order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretData(Vec<(&'static str, Vec<u8>)>);

impl SecretData {
    pub fn new(mut entries: Vec<(&'static str, Vec<u8>)>) -> SecretData {
        entries.sort_by_key(|(key, _)| *key);
        entries.dedup_by_key(|(key, _)| *key);
        SecretData(entries)
    }
}

/// The data of a [`WantedSecret`], read in place.
#[derive(Clone, Copy)]
pub struct DataEntries<'a>(&'a [u8]);

impl<'a> DataEntries<'a> {
    pub fn get(&self, key: &str) -> Option<&'a [u8]> {
        self.iter().find(|(k, _)| *k == key).map(|(_, value)| value)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Keys and values in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> {
        let mut rest = self.0;
        std::iter::from_fn(move || {
            let (&key_len, after) = rest.split_first()?;
            let (key, after) = after.split_at_checked(key_len as usize)?;
            let (value_len, after) = after.split_first_chunk::<4>()?;
            let (value, after) = after.split_at_checked(u32::from_le_bytes(*value_len) as usize)?;
            rest = after;
            Some((std::str::from_utf8(key).unwrap_or_default(), value))
        })
    }
}

impl std::fmt::Debug for WantedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WantedSecret")
            .field("name", &self.name())
            .field("app", &self.app())
            .field("bundle_id", &self.bundle_id())
            .field(
                "keys",
                &self.data().iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// An `Application` kept as its JSON text, LZ4-compressed: a fraction of the
/// memory of the parsed object (the text repeats its names and URLs, which
/// compress well); unpacked only when it is written. Those packed by one
/// [`Packer`] share a dictionary, the first one's text: the Applications of
/// one Director have most of their text in common (field names, the
/// gateway's URL), which a dictionary compresses and a text alone cannot.
#[derive(Clone)]
pub struct PackedApplication {
    text: Box<[u8]>,
    /// Empty for one packed alone.
    dictionary: Arc<[u8]>,
}

/// A packed Application that does not unpack: never expected, since the
/// agent packed it itself, but reported rather than trusted.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("its packed text is damaged")]
    Decompress(#[from] lz4_flex::block::DecompressError),
    #[error("its packed text is not an Application")]
    Json(#[from] serde_json::Error),
}

/// LZ4 looks back at most 64 KiB: more of a dictionary is never used.
const DICTIONARY_MAX: usize = 64 * 1024;

impl PackedApplication {
    /// Packs one Application on its own, without a dictionary.
    pub fn pack(application: &Application) -> PackedApplication {
        PackedApplication::compress(&json_of(application), Arc::from([]))
    }

    fn compress(json: &[u8], dictionary: Arc<[u8]>) -> PackedApplication {
        PackedApplication {
            text: lz4_flex::block::compress_prepend_size_with_dict(json, &dictionary)
                .into_boxed_slice(),
            dictionary,
        }
    }

    pub fn unpack(&self) -> Result<Application, UnpackError> {
        Ok(serde_json::from_slice(&self.json()?)?)
    }

    fn json(&self) -> Result<Vec<u8>, lz4_flex::block::DecompressError> {
        lz4_flex::block::decompress_size_prepended_with_dict(&self.text, &self.dictionary)
    }

    /// Its size in memory, in bytes (the shared dictionary not counted).
    pub fn packed_len(&self) -> usize {
        self.text.len()
    }
}

/// The same Application, however it was packed.
impl PartialEq for PackedApplication {
    fn eq(&self, other: &PackedApplication) -> bool {
        match (self.json(), other.json()) {
            (Ok(mine), Ok(theirs)) => mine == theirs,
            _ => self.text == other.text && self.dictionary == other.dictionary,
        }
    }
}

impl Eq for PackedApplication {}

impl std::fmt::Debug for PackedApplication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.unpack() {
            Ok(application) => application.fmt(f),
            Err(error) => write!(f, "PackedApplication(<{error}>)"),
        }
    }
}

/// Packs the Applications of one sync against one dictionary: the text of
/// the first it packs.
#[derive(Debug, Default)]
pub struct Packer {
    dictionary: Option<Arc<[u8]>>,
}

impl Packer {
    pub fn pack(&mut self, application: &Application) -> PackedApplication {
        let json = json_of(application);
        let dictionary = self
            .dictionary
            .get_or_insert_with(|| Arc::from(&json[json.len().saturating_sub(DICTIONARY_MAX)..]));
        PackedApplication::compress(&json, dictionary.clone())
    }
}

fn json_of(application: &Application) -> Vec<u8> {
    // Cannot fail: string keys only. An empty text would fail `unpack`,
    // and so that Application's write, not the agent.
    serde_json::to_vec(application).unwrap_or_default()
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
        let wanted = wanted.into_iter().flatten().map(WantedSecret::name);
        let settled = settled.into_iter().flat_map(NameList::iter);
        wanted.chain(settled)
    }

    pub fn is_settled(&self) -> bool {
        matches!(self.content, Content::Settled { .. })
    }

    /// The memory its wanted state takes while it waits, in bytes (its
    /// names and digests not counted): what settling it would give back.
    pub fn wanted_size(&self) -> usize {
        match &self.content {
            Content::Full {
                application,
                secrets,
            } => {
                application.packed_len()
                    + secrets
                        .iter()
                        .map(WantedSecret::size_in_memory)
                        .sum::<usize>()
            }
            Content::Settled { .. } => 0,
        }
    }
}

/// How much wanted state, in bytes, a sync holds whole while the cluster is
/// still being read. Until the read ends, no arriving application can be
/// settled to its names, so each waits whole; past this the Director fetch
/// pauses before it hands over its next page until the read has ended.
/// Without a bound an idle sync whose cluster read is slower than the fetch
/// would hold most of the Director's applications whole (the largest part
/// of its memory at 10,000 applications, BENCHMARKS.md); with it, the fetch
/// loses at most the read's time. A first sync reads an empty cluster at
/// once and never waits.
pub const UNREAD_HOLD_BUDGET: usize = 1024 * 1024;

/// Whether the Director fetch waits for the cluster read before it hands
/// over its next page: `held_whole` bytes of wanted state wait
/// ([`UNREAD_HOLD_BUDGET`]), or the last fetch's answers are known
/// (`answers_known`): only against the cluster as read can an answer the
/// agent remembers be settled without parsing it (`known_answers`), so an
/// idle sync waits from its first page (the page waits as its text, about
/// as large as held whole), and a first sync never. Never when the agent may
/// not list the credential Secrets (Kyma's RBAC): then the read cannot
/// settle what arrives, and waiting would only delay.
pub fn fetch_waits_for_cluster(
    held_whole: usize,
    answers_known: bool,
    cluster_read: bool,
    secrets_listed: bool,
) -> bool {
    secrets_listed && !cluster_read && (answers_known || held_whole >= UNREAD_HOLD_BUDGET)
}

impl From<WantedApplication> for HeldApplication {
    /// Packed on its own: see [`HeldApplication::packed`] for a sync's.
    fn from(wanted: WantedApplication) -> HeldApplication {
        let owned = OwnedDigest::of(&wanted.application.spec);
        let application = PackedApplication::pack(&wanted.application);
        HeldApplication::with(wanted, application, owned)
    }
}

impl HeldApplication {
    /// Held whole, packed by the sync's `packer`.
    pub fn packed(wanted: WantedApplication, packer: &mut Packer) -> HeldApplication {
        let owned = OwnedDigest::of(&wanted.application.spec);
        HeldApplication::packed_with(wanted, owned, packer)
    }

    /// The same, the digest of its owned fields already made: it is the
    /// dearest part of holding an application.
    pub fn packed_with(
        wanted: WantedApplication,
        owned: OwnedDigest,
        packer: &mut Packer,
    ) -> HeldApplication {
        let application = packer.pack(&wanted.application);
        HeldApplication::with(wanted, application, owned)
    }

    fn with(
        wanted: WantedApplication,
        packed: PackedApplication,
        owned: OwnedDigest,
    ) -> HeldApplication {
        let application = &wanted.application;
        HeldApplication {
            name: application.metadata.name.clone().unwrap_or_default(),
            application_id: application
                .spec
                .compass_metadata
                .as_ref()
                .map(|metadata| metadata.application_id.clone())
                .unwrap_or_default(),
            owned,
            content: Content::Full {
                application: packed,
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

    /// The Application of another Director application of the same shape.
    fn another_application(i: usize) -> Application {
        let mut spec = crate::sync::digest::tests::spec();
        spec.description = format!("application number {i}");
        Application::new(&format!("shop-{i}"), spec)
    }

    #[test]
    fn applications_packed_by_one_packer_unpack_to_themselves_in_less_memory() {
        let mut packer = Packer::default();
        let first = packer.pack(&another_application(0));
        assert_eq!(first.unpack().unwrap(), another_application(0));
        for i in 1..5 {
            let app = another_application(i);
            let shared = packer.pack(&app);
            let alone = PackedApplication::pack(&app);
            assert_eq!(shared.unpack().unwrap(), app);
            assert_eq!(shared, alone, "the same Application, however packed");
            assert!(
                shared.packed_len() < alone.packed_len(),
                "with the first one's text as dictionary: {} ≥ {}",
                shared.packed_len(),
                alone.packed_len()
            );
        }
        assert_ne!(first, packer.pack(&another_application(1)));
    }

    #[test]
    fn a_wanted_secret_gives_back_its_name_labels_and_data() {
        let data = SecretData::new(vec![
            ("username", b"user".to_vec()),
            ("password", "pässword".as_bytes().to_vec()),
            ("headers", Vec::new()),
        ]);
        let secret = WantedSecret::new("shop-bundle", "shop", "bundle-1", data);
        assert_eq!(secret.name(), "shop-bundle");
        assert_eq!(secret.app(), "shop");
        assert_eq!(secret.bundle_id(), "bundle-1");
        let entries: Vec<(&str, &[u8])> = secret.data().iter().collect();
        assert_eq!(
            entries,
            [
                ("headers", &b""[..]),
                ("password", "pässword".as_bytes()),
                ("username", &b"user"[..]),
            ],
            "every key, in key order, an empty value kept"
        );
        assert_eq!(secret.data().get("password"), Some("pässword".as_bytes()));
        assert!(!secret.data().contains_key("clientId"));
        assert_eq!(
            secret.data_hash(),
            data_hash(entries.into_iter()),
            "the digest of the data as given"
        );
        assert_eq!(
            secret.labels(),
            BTreeMap::from([
                (SECRET_APP_LABEL.to_string(), "shop".to_string()),
                (SECRET_BUNDLE_LABEL.to_string(), "bundle-1".to_string()),
            ])
        );
    }

    #[test]
    fn the_fetch_waits_for_the_cluster_past_the_budget_or_with_known_answers_while_it_is_read_and_can_settle(
    ) {
        let waits = |held_whole, answers_known, cluster_read, secrets_listed| {
            fetch_waits_for_cluster(held_whole, answers_known, cluster_read, secrets_listed)
        };
        // A first sync: nothing known, waits only past the budget.
        assert!(!waits(UNREAD_HOLD_BUDGET - 1, false, false, true));
        assert!(waits(UNREAD_HOLD_BUDGET, false, false, true));
        // An idle sync: its answers known, waits from the first page.
        assert!(waits(0, true, false, true));
        // The cluster read: no wait at all.
        assert!(!waits(UNREAD_HOLD_BUDGET * 10, true, true, true));
        // Secrets read one by one by name: the read settles nothing.
        assert!(!waits(UNREAD_HOLD_BUDGET * 10, true, false, false));
    }

    #[test]
    fn a_held_application_counts_its_packed_text_and_secrets_until_settled() {
        let data = SecretData::new(vec![("password", vec![b'p'; 100])]);
        let held = HeldApplication::from(WantedApplication {
            application: application(),
            secrets: vec![WantedSecret::new("shop-b", "shop", "b", data)],
        });
        let Content::Full { application, .. } = &held.content else {
            panic!("held whole");
        };
        let secret_bytes = std::mem::size_of::<WantedSecret>() + "shop-b".len() + "shop".len() + 1;
        assert!(
            held.wanted_size() >= application.packed_len() + secret_bytes + 100,
            "{}",
            held.wanted_size()
        );
        let settled = HeldApplication {
            content: Content::Settled {
                secret_names: ["shop-b"].into_iter().collect(),
            },
            ..held
        };
        assert_eq!(settled.wanted_size(), 0);
    }

    #[test]
    fn damaged_packed_text_is_an_error_not_a_panic() {
        let packed = PackedApplication::pack(&application());
        let mut bytes = packed.text.to_vec();
        bytes.truncate(bytes.len() / 2);
        let damaged = PackedApplication {
            text: bytes.into_boxed_slice(),
            dictionary: packed.dictionary,
        };
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
