//! What the Director wants, as a sync holds it between the fetch and the
//! writes. Nothing may be written until the whole fetch has succeeded, so
//! every application's wanted state waits in memory; packed, a thousand
//! typical ones take 2.5 MB instead of 13 MB.

use std::io;

use sha1::{Digest, Sha1};

use super::convert::{WantedApplication, WantedSecret};
use super::name_list::NameList;
use crate::crd::application::{Application, ApplicationSpec};

/// A digest of the fields of an Application the agent writes: equal digests,
/// equal owned fields. Others' fields (e.g. `encodeUrl`, which the original
/// CRD defaults, or a `status`) are not in it. Nor is the order of the lists
/// that come from the Director's lists (services, their entries, client
/// ids): the Director orders them by random ids, not by creation, and the
/// same content in another order is the same Application.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct OwnedDigest([u8; 20]);

impl OwnedDigest {
    pub fn of(spec: &ApplicationSpec) -> OwnedDigest {
        let mut services = spec.services.clone();
        for service in &mut services {
            service
                .entries
                .sort_by(|a, b| (&a.id, a.entry_type as u8).cmp(&(&b.id, b.entry_type as u8)));
        }
        services.sort_by(|a, b| a.id.cmp(&b.id));
        let compass_metadata = spec.compass_metadata.clone().map(|mut metadata| {
            metadata.authentication.client_ids.sort();
            metadata
        });
        // The owned fields serialize canonically: structs in field order,
        // maps in key order (BTreeMap), no floats.
        let owned = (
            &spec.description,
            spec.skip_verify,
            spec.labels.as_ref(),
            &services,
            compass_metadata.as_ref(),
        );
        let mut hasher = HashWriter(Sha1::new());
        // Writing to a hasher cannot fail, and these types always serialize.
        let _ = serde_json::to_writer(&mut hasher, &owned);
        OwnedDigest(hasher.0.finalize().into())
    }
}

impl std::fmt::Debug for OwnedDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OwnedDigest({})", hex::encode(self.0))
    }
}

struct HashWriter(Sha1);

impl io::Write for HashWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// An `Application` kept as its JSON text, LZ4-compressed: about a fifth of
/// the memory of the parsed object (the text repeats its names and URLs);
/// unpacked only when it is written.
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
pub struct PendingApplication {
    pub name: String,
    pub application_id: String,
    pub owned: OwnedDigest,
    pub content: Content,
    /// Why the Director's answer for it did not come whole, if it did not:
    /// then it is neither written nor deleted.
    pub inconsistency: Option<String>,
}

/// What a pending application keeps of the Director's wanted state.
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
    /// sync of 10,000 applications holds this instead of 25 MB of packed
    /// Applications and Secret data.
    Settled { secret_names: NameList },
}

impl PendingApplication {
    /// The same, marked as not whole when `inconsistency` says why.
    pub fn incomplete(mut self, inconsistency: Option<String>) -> PendingApplication {
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

impl From<WantedApplication> for PendingApplication {
    fn from(wanted: WantedApplication) -> PendingApplication {
        let application = &wanted.application;
        PendingApplication {
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
    use crate::crd::application::{CompassMetadata, Entry, EntryType, Service};
    use std::collections::BTreeMap;

    fn application() -> Application {
        let mut app = Application::new(
            "shop",
            ApplicationSpec {
                description: "Shop".into(),
                labels: Some(BTreeMap::from([("connected-app".into(), "shop".into())])),
                services: vec![Service {
                    id: "b-1".into(),
                    entries: vec![Entry {
                        entry_type: EntryType::Api,
                        id: "api-1".into(),
                        name: "Orders API".into(),
                        target_url: "https://shop.example.com/orders".into(),
                        central_gateway_url: "http://gateway/shop/orders".into(),
                        ..Entry::default()
                    }],
                    ..Service::default()
                }],
                compass_metadata: Some(CompassMetadata {
                    application_id: "app-1".into(),
                    ..CompassMetadata::default()
                }),
                ..ApplicationSpec::default()
            },
        );
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
    fn the_digest_changes_with_each_owned_field_and_only_with_them() {
        let app = application();
        let digest = OwnedDigest::of(&app.spec);
        assert_eq!(
            OwnedDigest::of(&application().spec),
            digest,
            "deterministic"
        );

        let changes: [fn(&mut ApplicationSpec); 5] = [
            |spec| spec.description.push('!'),
            |spec| spec.skip_verify = !spec.skip_verify,
            |spec| spec.labels = None,
            |spec| spec.services[0].entries[0].name.push('!'),
            |spec| {
                spec.compass_metadata
                    .as_mut()
                    .unwrap()
                    .application_id
                    .push('!')
            },
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut spec = app.spec.clone();
            change(&mut spec);
            assert_ne!(OwnedDigest::of(&spec), digest, "owned change {i}");
        }

        let mut others = app.spec.clone();
        others.encode_url = Some(true);
        others.tenant = Some("t".into());
        assert_eq!(OwnedDigest::of(&others), digest, "others' fields");
    }

    #[test]
    fn the_order_of_the_directors_lists_is_not_in_the_digest() {
        let entry = |entry_type, id: &str| Entry {
            entry_type,
            id: id.into(),
            name: format!("{id} name"),
            ..Entry::default()
        };
        let service = |id: &str, entries| Service {
            id: id.into(),
            name: format!("{id} name"),
            entries,
            ..Service::default()
        };
        let mut spec = application().spec;
        spec.services = vec![
            service(
                "b-1",
                vec![
                    entry(EntryType::Api, "api-1"),
                    entry(EntryType::Api, "api-2"),
                    entry(EntryType::Events, "ev-1"),
                ],
            ),
            service("b-2", vec![entry(EntryType::Api, "api-3")]),
        ];
        spec.compass_metadata
            .as_mut()
            .unwrap()
            .authentication
            .client_ids = vec!["auth-1".into(), "auth-2".into()];
        let digest = OwnedDigest::of(&spec);

        let mut reordered = spec.clone();
        reordered.services.reverse();
        reordered.services[1].entries.reverse();
        reordered
            .compass_metadata
            .as_mut()
            .unwrap()
            .authentication
            .client_ids
            .reverse();
        assert_ne!(reordered, spec);
        assert_eq!(OwnedDigest::of(&reordered), digest, "the same content");

        let mut changed = reordered.clone();
        changed.services[1].entries[0].name.push('!');
        assert_ne!(OwnedDigest::of(&changed), digest, "a change still shows");
    }

    #[test]
    fn pending_keeps_name_id_and_secrets() {
        let pending = PendingApplication::from(WantedApplication {
            application: application(),
            secrets: vec![],
        });
        assert_eq!(pending.name, "shop");
        assert_eq!(pending.application_id, "app-1");
        assert_eq!(pending.owned, OwnedDigest::of(&application().spec));
        assert!(!pending.is_settled());
    }
}
