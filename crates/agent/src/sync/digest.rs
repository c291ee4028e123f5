//! The digests the plan compares, made alike on both sides (what the Director
//! wants and what the cluster holds): of the fields of an Application the
//! agent writes, and of a Secret's data.

use std::collections::BTreeMap;

use sha1::{Digest, Sha1};

use crate::crd::application::{
    ApplicationSpec, Authentication, CompassMetadata, Credentials, CsrfInfo, Entry, Service,
};

/// A digest of the fields of an Application the agent writes: equal digests,
/// equal owned fields. Others' fields (e.g. `encodeUrl`, which the original
/// CRD defaults, or a `status`) are not in it. Nor is the order of the lists
/// that come from the Director's lists (services, their entries, client
/// ids): the Director orders them by random ids, not by creation, and the
/// same content in another order is the same Application. Values that are
/// written alike are alike here (an unset `identifier` and `""`, no
/// credentials and empty ones): what counts is what the cluster would hold.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct OwnedDigest([u8; 20]);

impl OwnedDigest {
    /// Walks the owned fields into the hash in a canonical order, each text
    /// prefixed by its length and each optional value by whether it is set,
    /// so no two different contents feed the same bytes. Nothing is copied:
    /// the lists are sorted as references. (It ran once per application on
    /// both sides of every sync, and cloning the services to sort them and
    /// writing them as JSON was a fifth of an idle sync's CPU.)
    pub fn of(spec: &ApplicationSpec) -> OwnedDigest {
        // Destructured without `..`: a field added to the resource must be
        // placed here, as owned or not, before this compiles.
        let ApplicationSpec {
            description,
            skip_verify,
            labels,
            services,
            compass_metadata,
            skip_installation: _,
            encode_url: _,
            access_label: _,
            tenant: _,
            group: _,
            tags: _,
            display_name: _,
            provider_display_name: _,
            long_description: _,
        } = spec;
        let mut feed = Feed(Sha1::new());
        feed.text(description);
        feed.flag(*skip_verify);
        feed.optional(labels.as_ref(), Feed::map);
        let mut services: Vec<&Service> = services.iter().collect();
        services.sort_by(|a, b| a.id.cmp(&b.id));
        feed.count(services.len());
        for service in services {
            feed.service(service);
        }
        feed.optional(compass_metadata.as_ref(), Feed::compass_metadata);
        OwnedDigest(feed.0.finalize().into())
    }
}

impl std::fmt::Debug for OwnedDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OwnedDigest({})", hex::encode(self.0))
    }
}

/// The owned fields going into the hash.
struct Feed(Sha1);

impl Feed {
    fn count(&mut self, count: usize) {
        self.0.update((count as u64).to_be_bytes());
    }

    fn text(&mut self, text: &str) {
        self.count(text.len());
        self.0.update(text.as_bytes());
    }

    fn flag(&mut self, flag: bool) {
        self.0.update([u8::from(flag)]);
    }

    fn optional<T: ?Sized>(&mut self, value: Option<&T>, feed: impl FnOnce(&mut Feed, &T)) {
        self.flag(value.is_some());
        if let Some(value) = value {
            feed(self, value);
        }
    }

    fn optional_text(&mut self, text: Option<&str>) {
        self.optional(text, Feed::text);
    }

    fn texts(&mut self, texts: &[String]) {
        self.count(texts.len());
        for text in texts {
            self.text(text);
        }
    }

    fn map(&mut self, map: &BTreeMap<String, String>) {
        self.count(map.len());
        for (key, value) in map {
            self.text(key);
            self.text(value);
        }
    }

    fn service(&mut self, service: &Service) {
        let Service {
            id,
            name,
            identifier,
            labels,
            display_name,
            description,
            long_description,
            provider_display_name,
            auth_create_parameter_schema,
            entries,
            tags,
        } = service;
        self.text(id);
        self.text(name);
        // Written as `""` when unset.
        self.text(identifier.as_deref().unwrap_or_default());
        self.optional(labels.as_ref(), Feed::map);
        self.text(display_name);
        self.text(description);
        self.optional_text(long_description.as_deref());
        self.text(provider_display_name);
        self.optional_text(auth_create_parameter_schema.as_deref());
        let mut entries: Vec<&Entry> = entries.iter().collect();
        entries.sort_by(|a, b| (&a.id, a.entry_type as u8).cmp(&(&b.id, b.entry_type as u8)));
        self.count(entries.len());
        for entry in entries {
            self.entry(entry);
        }
        self.optional(tags.as_deref(), Feed::texts);
    }

    fn entry(&mut self, entry: &Entry) {
        let Entry {
            entry_type,
            id,
            name,
            target_url,
            central_gateway_url,
            gateway_url,
            access_label,
            api_type,
            specification_url,
            credentials,
            request_parameters_secret_name,
        } = entry;
        self.0.update([*entry_type as u8]);
        self.text(id);
        self.text(name);
        self.text(target_url);
        self.text(central_gateway_url);
        // Written as `""` when unset.
        self.text(gateway_url.as_deref().unwrap_or_default());
        self.optional_text(access_label.as_deref());
        self.optional_text(api_type.as_deref());
        self.optional_text(specification_url.as_deref());
        // None is written as empty credentials, and read back as none.
        let Credentials {
            credential_type,
            secret_name,
            authentication_url,
            csrf_info,
        } = credentials.as_ref().unwrap_or(&NO_CREDENTIALS);
        self.text(credential_type);
        self.text(secret_name);
        self.text(authentication_url);
        self.optional(
            csrf_info.as_ref(),
            |feed, CsrfInfo { token_endpoint_url }| feed.text(token_endpoint_url),
        );
        self.text(request_parameters_secret_name);
    }

    fn compass_metadata(&mut self, metadata: &CompassMetadata) {
        let CompassMetadata {
            application_id,
            authentication: Authentication { client_ids },
        } = metadata;
        self.text(application_id);
        let mut client_ids: Vec<&String> = client_ids.iter().collect();
        client_ids.sort();
        self.count(client_ids.len());
        for client_id in client_ids {
            self.text(client_id);
        }
    }
}

/// What an entry without credentials is written with.
static NO_CREDENTIALS: Credentials = Credentials {
    credential_type: String::new(),
    secret_name: String::new(),
    authentication_url: String::new(),
    csrf_info: None,
};

/// A digest of everything the cluster holds for one application when it
/// holds it as wanted: the Application's owned fields ([`OwnedDigest`]), and
/// each of its Secrets' name, data ([`DataDigest`]) and the two labels that
/// say whose they are. Made alike from what the Director wants and from what
/// the cluster holds, so that one comparison tells whether the cluster still
/// holds a remembered answer ([`super::known_answers`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct WantedDigest([u8; 20]);

/// One Secret as [`WantedDigest`] takes it.
pub struct SecretFacts<'a> {
    pub name: &'a str,
    pub data: DataDigest,
    pub app: &'a str,
    pub bundle_id: &'a str,
}

impl WantedDigest {
    /// `secrets` in any order: they are taken by name.
    pub fn of<'a>(
        owned: OwnedDigest,
        secrets: impl IntoIterator<Item = SecretFacts<'a>>,
    ) -> WantedDigest {
        let mut secrets: Vec<SecretFacts> = secrets.into_iter().collect();
        secrets.sort_by(|a, b| a.name.cmp(b.name));
        let mut feed = Feed(Sha1::new());
        feed.0.update(owned.0);
        feed.count(secrets.len());
        for secret in secrets {
            feed.text(secret.name);
            feed.0.update(secret.data.0);
            feed.text(secret.app);
            feed.text(secret.bundle_id);
        }
        WantedDigest(feed.0.finalize().into())
    }
}

impl std::fmt::Debug for WantedDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WantedDigest({})", hex::encode(self.0))
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

    /// The digest as it was made before the walk: the owned fields, lists
    /// sorted, written as JSON into SHA-1. JSON writes what the cluster
    /// holds, so it is the reference for which specs are the same.
    fn as_json(spec: &ApplicationSpec) -> Vec<u8> {
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
        let owned = (
            &spec.description,
            spec.skip_verify,
            spec.labels.as_ref(),
            &services,
            compass_metadata.as_ref(),
        );
        serde_json::to_vec(&owned).unwrap()
    }

    /// A value drawn from a few, so that two draws are often equal.
    fn pick(rng: &mut impl rand::Rng, choices: &[&str]) -> String {
        choices[rng.random_range(0..choices.len())].to_string()
    }

    fn maybe(rng: &mut impl rand::Rng, choices: &[&str]) -> Option<String> {
        rng.random_bool(0.5).then(|| pick(rng, choices))
    }

    fn random_entry(rng: &mut impl rand::Rng) -> Entry {
        let texts = ["", "a", "b", "<&>"];
        Entry {
            entry_type: if rng.random_bool(0.5) {
                EntryType::Api
            } else {
                EntryType::Events
            },
            id: pick(rng, &["e1", "e2", "e3"]),
            name: pick(rng, &texts),
            target_url: pick(rng, &texts),
            central_gateway_url: pick(rng, &texts),
            gateway_url: maybe(rng, &texts),
            access_label: maybe(rng, &texts),
            api_type: maybe(rng, &texts),
            specification_url: maybe(rng, &texts),
            credentials: rng.random_bool(0.6).then(|| Credentials {
                credential_type: pick(rng, &["", "OAuth", "Basic"]),
                secret_name: pick(rng, &["", "s1"]),
                authentication_url: pick(rng, &["", "https://a"]),
                csrf_info: rng.random_bool(0.3).then(|| CsrfInfo {
                    token_endpoint_url: pick(rng, &texts),
                }),
            }),
            request_parameters_secret_name: pick(rng, &["", "p1"]),
        }
    }

    fn random_labels(rng: &mut impl rand::Rng) -> Option<BTreeMap<String, String>> {
        rng.random_bool(0.6).then(|| {
            (0..rng.random_range(0..3))
                .map(|_| (pick(rng, &["k1", "k2"]), pick(rng, &["", "v"])))
                .collect()
        })
    }

    fn random_spec(rng: &mut impl rand::Rng) -> ApplicationSpec {
        let texts = ["", "a", "b"];
        let services = (0..rng.random_range(0..3))
            .map(|_| Service {
                id: pick(rng, &["s1", "s2", "s3"]),
                name: pick(rng, &texts),
                identifier: maybe(rng, &texts),
                labels: random_labels(rng),
                display_name: pick(rng, &texts),
                description: pick(rng, &texts),
                long_description: maybe(rng, &texts),
                provider_display_name: pick(rng, &texts),
                auth_create_parameter_schema: maybe(rng, &texts),
                entries: (0..rng.random_range(0..3))
                    .map(|_| random_entry(rng))
                    .collect(),
                tags: rng
                    .random_bool(0.3)
                    .then(|| vec![pick(rng, &texts), pick(rng, &texts)]),
            })
            .collect();
        ApplicationSpec {
            description: pick(rng, &texts),
            skip_verify: rng.random_bool(0.5),
            labels: random_labels(rng),
            services,
            compass_metadata: rng.random_bool(0.8).then(|| CompassMetadata {
                application_id: pick(rng, &["app-1", "app-2"]),
                authentication: Authentication {
                    client_ids: (0..rng.random_range(0..3))
                        .map(|_| pick(rng, &["c1", "c2"]))
                        .collect(),
                },
            }),
            // Others' fields: never in either digest.
            encode_url: rng.random_bool(0.5).then_some(true),
            tenant: maybe(rng, &texts),
            ..ApplicationSpec::default()
        }
    }

    /// A change that may or may not change what is written: a value drawn
    /// again, an unset text set to `""`, no credentials made empty ones, a
    /// list reordered.
    fn nudge(rng: &mut impl rand::Rng, spec: &mut ApplicationSpec) {
        let service_count = spec.services.len();
        let service =
            (service_count > 0).then(|| &mut spec.services[rng.random_range(0..service_count)]);
        match (rng.random_range(0..9), service) {
            (0, _) => *spec = random_spec(rng),
            (1, _) => spec.services.reverse(),
            (2, _) => spec.description = pick(rng, &["", "a"]),
            (3, Some(service)) => {
                service.identifier = service.identifier.take().or(Some(String::new()))
            }
            (4, Some(service)) => service.entries.reverse(),
            (5, Some(service)) => {
                if let Some(entry) = service.entries.first_mut() {
                    entry.credentials = match entry.credentials.take() {
                        None => Some(NO_CREDENTIALS.clone()),
                        Some(_) => None,
                    };
                    entry.gateway_url = entry.gateway_url.take().or(Some(String::new()));
                }
            }
            (6, Some(service)) => match service.entries.first_mut() {
                Some(entry) => nudge_one_field_of_entry(rng, entry),
                None => nudge_one_field_of_service(rng, service),
            },
            (7, Some(service)) => nudge_one_field_of_service(rng, service),
            (_, _) => {
                if let Some(metadata) = &mut spec.compass_metadata {
                    metadata.authentication.client_ids.reverse();
                }
            }
        }
    }

    /// One field of the entry drawn again (it may come out the same).
    fn nudge_one_field_of_entry(rng: &mut impl rand::Rng, entry: &mut Entry) {
        let drawn = random_entry(rng);
        match rng.random_range(0..11) {
            0 => entry.entry_type = drawn.entry_type,
            1 => entry.id = drawn.id,
            2 => entry.name = drawn.name,
            3 => entry.target_url = drawn.target_url,
            4 => entry.central_gateway_url = drawn.central_gateway_url,
            5 => entry.gateway_url = drawn.gateway_url,
            6 => entry.access_label = drawn.access_label,
            7 => entry.api_type = drawn.api_type,
            8 => entry.specification_url = drawn.specification_url,
            9 => entry.credentials = drawn.credentials,
            _ => entry.request_parameters_secret_name = drawn.request_parameters_secret_name,
        }
    }

    /// One field of the service drawn again (it may come out the same).
    fn nudge_one_field_of_service(rng: &mut impl rand::Rng, service: &mut Service) {
        let texts = ["", "a", "b"];
        match rng.random_range(0..10) {
            0 => service.id = pick(rng, &["s1", "s2"]),
            1 => service.name = pick(rng, &texts),
            2 => service.identifier = maybe(rng, &texts),
            3 => service.labels = random_labels(rng),
            4 => service.display_name = pick(rng, &texts),
            5 => service.description = pick(rng, &texts),
            6 => service.long_description = maybe(rng, &texts),
            7 => service.provider_display_name = pick(rng, &texts),
            8 => service.auth_create_parameter_schema = maybe(rng, &texts),
            _ => service.tags = rng.random_bool(0.5).then(|| vec![pick(rng, &texts)]),
        }
    }

    /// Two specs have the same digest exactly when they are written as the
    /// same JSON: the walk neither misses a difference the cluster would
    /// hold nor sees one it would not. Random specs from small pools, and
    /// each compared with a nudged copy of itself, so that both equal and
    /// different pairs come up many times.
    #[test]
    fn equal_digests_exactly_when_the_written_fields_are_equal() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(31);
        let (mut same, mut different) = (0, 0);
        for _ in 0..20_000 {
            let spec = random_spec(&mut rng);
            let mut other = spec.clone();
            for _ in 0..rng.random_range(1..3) {
                nudge(&mut rng, &mut other);
            }
            let written_alike = as_json(&spec) == as_json(&other);
            assert_eq!(
                OwnedDigest::of(&spec) == OwnedDigest::of(&other),
                written_alike,
                "{spec:#?}\n{other:#?}"
            );
            if written_alike {
                same += 1;
            } else {
                different += 1;
            }
        }
        assert!(same > 2_000 && different > 2_000, "{same} / {different}");
    }
}
