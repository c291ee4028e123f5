//! The digests the plan compares, made alike on both sides (what the Director
//! wants and what the cluster holds): of the fields of an Application the
//! agent writes, and of a Secret's data.

use std::io;

use sha1::{Digest, Sha1};

use crate::crd::application::ApplicationSpec;

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

/// sha1 over the keys and values in key order, each prefixed by its length.
pub fn data_hash<'a>(data: impl Iterator<Item = (&'a str, &'a [u8])>) -> DataDigest {
    let mut hasher = Sha1::new();
    for (key, value) in data {
        hasher.update((key.len() as u64).to_be_bytes());
        hasher.update(key.as_bytes());
        hasher.update((value.len() as u64).to_be_bytes());
        hasher.update(value);
    }
    DataDigest(hasher.finalize().into())
}

/// The digest of a Secret's data ([`data_hash`]): its 20 bytes in place, not
/// as hex text in a `String` and its buffer, in every Secret summary and
/// every entry of the digest cache.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DataDigest([u8; 20]);

impl std::fmt::Display for DataDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::fmt::Debug for DataDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DataDigest({self})")
    }
}

#[cfg(test)]
pub(in crate::sync) mod tests {
    use super::*;
    use crate::crd::application::{CompassMetadata, Entry, EntryType, Service};
    use std::collections::BTreeMap;

    /// The spec of a typical Application: one service with one API entry.
    pub(in crate::sync) fn spec() -> ApplicationSpec {
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
        }
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
        let mut spec = spec();
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
    fn the_digest_changes_with_each_owned_field_and_only_with_them() {
        let digest = OwnedDigest::of(&spec());
        assert_eq!(OwnedDigest::of(&spec()), digest, "deterministic");

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
            let mut spec = spec();
            change(&mut spec);
            assert_ne!(OwnedDigest::of(&spec), digest, "owned change {i}");
        }

        let mut others = spec();
        others.encode_url = Some(true);
        others.tenant = Some("t".into());
        assert_eq!(OwnedDigest::of(&others), digest, "others' fields");
    }
}
