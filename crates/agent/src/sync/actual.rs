//! What the cluster holds, as the plan needs it: a short summary of each
//! Application and credential Secret, made as each object is read and kept
//! instead of the object, which is never held whole beyond its parsing.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

use super::compact::{CompactText, NameList};
use super::digest::{data_hash, DataDigest, OwnedDigest};
use crate::crd::application::Application;
use crate::crd::labels::{
    MANAGED_BY_LABEL, MANAGED_BY_VALUE, SECRET_APP_LABEL, SECRET_BUNDLE_LABEL,
};

/// What the cluster holds now.
#[derive(Clone, Debug, Default)]
pub struct ActualState {
    /// Every Application in the cluster, ours or not (shared with the
    /// [`SummaryCache`], so the summaries are in memory once).
    pub applications: Vec<Arc<ActualApplication>>,
    /// The Secrets in the integration namespace that look like credential or
    /// request-parameter Secrets (they carry the `bundleId` label), or, when
    /// the agent may not list Secrets, those read one by one by name.
    pub secrets: Vec<ActualSecret>,
    /// Whether `secrets` is a list of them all, not just the named ones.
    pub secrets_listed: bool,
}

/// What the cluster holds, by name: built once per sync, for the plan and
/// for comparing each Director application as it arrives.
#[derive(Debug)]
pub struct ActualIndex<'a> {
    pub applications: BTreeMap<&'a str, &'a ActualApplication>,
    /// By hash: only looked up, never walked, and 40,000 at 10,000
    /// applications, where a tree's string comparisons were a tenth of an
    /// idle sync's CPU.
    pub secrets: SecretsByName<'a>,
}

/// The cluster's Secrets by name: a hash table of their places in the
/// list, 4 bytes a Secret (a map of names to references takes 24, 1.5 MB
/// at 40,000, built for the fetch and again for the plan of every sync).
pub struct SecretsByName<'a> {
    secrets: &'a [ActualSecret],
    places: hashbrown::HashTable<u32>,
    hasher: hashbrown::DefaultHashBuilder,
}

impl<'a> SecretsByName<'a> {
    pub fn new(secrets: &'a [ActualSecret]) -> SecretsByName<'a> {
        let hasher = hashbrown::DefaultHashBuilder::default();
        let mut places = hashbrown::HashTable::with_capacity(secrets.len());
        for (place, secret) in secrets.iter().enumerate() {
            let Ok(place) = u32::try_from(place) else {
                break;
            };
            let hash = hasher.hash_one(secret.name());
            // Of two Secrets listed under one name (never, in one list),
            // the later counts, as a map's insert would have it.
            let entry = places.entry(
                hash,
                |&other: &u32| secrets[other as usize].name() == secret.name(),
                |&other| hasher.hash_one(secrets[other as usize].name()),
            );
            match entry {
                hashbrown::hash_table::Entry::Occupied(mut entry) => *entry.get_mut() = place,
                hashbrown::hash_table::Entry::Vacant(entry) => {
                    entry.insert(place);
                }
            }
        }
        SecretsByName {
            secrets,
            places,
            hasher,
        }
    }

    pub fn len(&self) -> usize {
        self.places.len()
    }

    pub fn is_empty(&self) -> bool {
        self.places.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&'a ActualSecret> {
        let secrets = self.secrets;
        self.places
            .find(self.hasher.hash_one(name), |&place| {
                secrets[place as usize].name() == name
            })
            .map(|&place| &secrets[place as usize])
    }

    /// The Secret of that name, with its name borrowed from the summary.
    pub fn get_key_value(&self, name: &str) -> Option<(&'a str, &'a ActualSecret)> {
        self.get(name).map(|secret| (secret.name(), secret))
    }
}

impl std::fmt::Debug for SecretsByName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.places.iter().map(|&place| {
                let secret = &self.secrets[place as usize];
                (secret.name(), secret)
            }))
            .finish()
    }
}

impl<'a> ActualIndex<'a> {
    pub fn new(actual: &'a ActualState) -> ActualIndex<'a> {
        ActualIndex {
            applications: actual
                .applications
                .iter()
                .map(|app| (app.name.as_str(), app.as_ref()))
                .collect(),
            secrets: SecretsByName::new(&actual.secrets),
        }
    }
}

/// An Application in the cluster, summarized.
#[derive(Clone, Debug, PartialEq)]
pub struct ActualApplication {
    pub name: String,
    pub uid: Option<String>,
    /// The version it was read at.
    pub resource_version: Option<String>,
    /// `spec.compassMetadata.applicationId`; `None` when the Application has no
    /// `compassMetadata`, i.e. is not the agent's to manage.
    pub compass_application_id: Option<String>,
    /// Whether it carries the agent's managed-by label.
    pub has_managed_by_label: bool,
    /// The fields the agent writes, as a digest.
    pub owned: OwnedDigest,
    /// The Secrets its entries point at (credentials, request parameters).
    pub referenced_secrets: NameList,
}

impl ActualApplication {
    pub fn is_managed_by_compass(&self) -> bool {
        self.compass_application_id.is_some()
    }

    /// Whether it is the agent's as the agent writes it: managed by Compass
    /// and labelled so. Only then can the cluster be said to hold a wanted
    /// application already, whatever else matches.
    pub fn is_the_agents_as_written(&self) -> bool {
        self.is_managed_by_compass() && self.has_managed_by_label
    }
}

impl From<&Application> for ActualApplication {
    fn from(app: &Application) -> ActualApplication {
        let mut referenced: Vec<&str> = app
            .spec
            .services
            .iter()
            .flat_map(|service| &service.entries)
            .flat_map(|entry| {
                let credentials = entry.credentials.as_ref().map(|c| c.secret_name.as_str());
                let parameters = Some(entry.request_parameters_secret_name.as_str());
                credentials.into_iter().chain(parameters)
            })
            .filter(|name| !name.is_empty())
            .collect();
        referenced.sort();
        referenced.dedup();
        // Every API entry of a bundle names the same Secrets: keep one each.
        let referenced_secrets: NameList = referenced.into_iter().collect();
        ActualApplication {
            name: app.metadata.name.clone().unwrap_or_default(),
            uid: app.metadata.uid.clone(),
            resource_version: app.metadata.resource_version.clone(),
            compass_application_id: app
                .spec
                .compass_metadata
                .as_ref()
                .map(|metadata| metadata.application_id.clone()),
            has_managed_by_label: has_label(&app.metadata, MANAGED_BY_LABEL, MANAGED_BY_VALUE),
            owned: OwnedDigest::of(&app.spec),
            referenced_secrets,
        }
    }
}

impl From<Application> for ActualApplication {
    fn from(app: Application) -> ActualApplication {
        ActualApplication::from(&app)
    }
}

/// An Application as a metadata-only list shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct ListedApplication {
    pub name: String,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

impl From<ListedMetadata> for ListedApplication {
    fn from(listed: ListedMetadata) -> ListedApplication {
        ListedApplication {
            name: listed.metadata.name.unwrap_or_default(),
            uid: listed.metadata.uid,
            resource_version: listed.metadata.resource_version,
        }
    }
}

/// An item of a metadata-only list, as far as the agent reads it. The rest
/// of its metadata is skipped by the parser and never allocated: above all
/// `managedFields`, a JSON tree per object, larger than the rest of its
/// metadata.
#[derive(Debug, Default, PartialEq, Deserialize)]
pub struct ListedMetadata {
    #[serde(default)]
    pub metadata: ReadMetadata,
}

/// The metadata fields the agent reads of a listed object.
#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ReadMetadata {
    pub name: Option<String>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    pub owner_references: Option<Vec<OwnerUid>>,
}

/// An owner reference, as far as the agent reads it.
#[derive(Debug, PartialEq, Deserialize)]
pub struct OwnerUid {
    pub uid: String,
}

impl ListedMetadata {
    /// What a metadata-only list would show of an object with this metadata.
    pub fn of(metadata: &ObjectMeta) -> ListedMetadata {
        ListedMetadata {
            metadata: ReadMetadata {
                name: metadata.name.clone(),
                uid: metadata.uid.clone(),
                resource_version: metadata.resource_version.clone(),
                labels: metadata.labels.clone(),
                owner_references: metadata.owner_references.as_ref().map(|owners| {
                    owners
                        .iter()
                        .map(|owner| OwnerUid {
                            uid: owner.uid.clone(),
                        })
                        .collect()
                }),
            },
        }
    }
}

/// The Application summaries of the last read. An Application whose uid and
/// resourceVersion have not moved is the same object, so its summary stands
/// and it need not be read again: an idle sync lists metadata only, not
/// every Application's whole spec.
#[derive(Debug, Default)]
pub struct SummaryCache {
    by_uid: HashMap<CompactText, Arc<ActualApplication>>,
}

impl SummaryCache {
    /// The summaries still valid for what a metadata list showed, and the
    /// names of the Applications that must be read again (new or changed).
    pub fn reuse(
        &self,
        listed: Vec<ListedApplication>,
    ) -> (Vec<Arc<ActualApplication>>, Vec<String>) {
        let mut known = Vec::with_capacity(listed.len());
        let mut to_read = Vec::new();
        for application in listed {
            let cached = application
                .uid
                .as_deref()
                .and_then(|uid| self.by_uid.get(&CompactText::new(uid)))
                .filter(|cached| {
                    application.resource_version.is_some()
                        && cached.resource_version == application.resource_version
                        && cached.name == application.name
                });
            match cached {
                Some(summary) => known.push(summary.clone()),
                None => to_read.push(application.name),
            }
        }
        (known, to_read)
    }

    /// Keeps these summaries, and only these, for the next read.
    pub fn replace(&mut self, summaries: &[Arc<ActualApplication>]) {
        // Refilled in place: no second map while the old one is dropped.
        self.by_uid.clear();
        for summary in summaries {
            if let Some(uid) = &summary.uid {
                self.by_uid.insert(CompactText::new(uid), summary.clone());
            }
        }
    }

    /// Adds or refreshes one summary, e.g. of an Application just written.
    pub fn insert(&mut self, summary: ActualApplication) {
        if let Some(uid) = summary.uid.as_deref() {
            self.by_uid.insert(CompactText::new(uid), Arc::new(summary));
        }
    }

    pub fn len(&self) -> usize {
        self.by_uid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_uid.is_empty()
    }
}

/// The labels of a Secret that the agent reads; the others are not kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SecretLabels<'a> {
    pub app: Option<&'a str>,
    pub bundle: Option<&'a str>,
    pub managed_by: Option<&'a str>,
}

impl<'a> SecretLabels<'a> {
    /// Picks them out of all of a Secret's labels.
    pub fn of(labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> SecretLabels<'a> {
        let mut read = SecretLabels::default();
        for (key, value) in labels {
            match key {
                SECRET_APP_LABEL => read.app = Some(value),
                SECRET_BUNDLE_LABEL => read.bundle = Some(value),
                MANAGED_BY_LABEL => read.managed_by = Some(value),
                _ => {}
            }
        }
        read
    }
}

/// A credentials or request-parameters Secret in the cluster, summarized.
/// A cluster holds several for each application (up to one for each
/// bundle's credentials and one for its request parameters), so each is kept
/// to what the plan compares.
#[derive(Clone, PartialEq)]
pub struct ActualSecret {
    /// Its name, `app` label, `bundleId` label and owner uids in one string,
    /// one allocation where there would be five. The name comes first; a
    /// label that is part of the name (the agent's names are made of the
    /// application's name and the bundle id) is not written again, only
    /// where it stands (`app`, `bundle`); the owner uids follow from
    /// `owners`, each ended by a NUL (which no uid holds). A cluster holds
    /// four such Secrets for each application.
    text: Box<str>,
    name_end: u16,
    app: (u16, u16),
    bundle: (u16, u16),
    owners: u16,
    /// Whether it carries the `app` and the `bundleId` label (an empty label
    /// value is still a label).
    has_app_label: bool,
    has_bundle_label: bool,
    /// Whether it carries the managed-by label (which earlier releases of
    /// this agent put on Secrets; today's writes carry only `app` and
    /// `bundleId`, as the Go agent's do).
    pub has_managed_by_label: bool,
    /// The digest of its data ([`data_hash`]), computed from the data when it
    /// was read in full, or known for this version of the Secret
    /// ([`SecretDigestCache`]). `None` when only the metadata was read and
    /// the digest is not known: the plan then takes the data as changed.
    /// (The data-digest annotation of earlier releases is not read: an edit
    /// of the data by hand would leave it behind, stale.)
    pub data_hash: Option<DataDigest>,
}

impl ActualSecret {
    /// From the metadata alone: no digest of the data (see
    /// [`SecretDigestCache`] for where it comes from then).
    pub fn from_metadata(metadata: ObjectMeta) -> ActualSecret {
        ActualSecret::from_parts(
            metadata.name,
            metadata.labels,
            metadata
                .owner_references
                .unwrap_or_default()
                .into_iter()
                .map(|owner| owner.uid),
        )
    }

    fn from_parts<Uid: AsRef<str>>(
        name: Option<String>,
        labels: Option<BTreeMap<String, String>>,
        owner_uids: impl Iterator<Item = Uid>,
    ) -> ActualSecret {
        let labels = labels.unwrap_or_default();
        let read = SecretLabels::of(labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        ActualSecret::of(name.as_deref().unwrap_or_default(), read, owner_uids)
    }

    /// From its name, the labels the agent reads and its owners' uids.
    pub fn of<Uid: AsRef<str>>(
        name: &str,
        labels: SecretLabels<'_>,
        owner_uids: impl Iterator<Item = Uid>,
    ) -> ActualSecret {
        let mut text = String::with_capacity(name.len() + 40);
        text.push_str(name);
        // Kubernetes keeps a name to 253 bytes and a label to 63: every
        // place before the owners fits in 16 bits.
        let at = |index: usize| u16::try_from(index).unwrap_or(u16::MAX);
        let place =
            |text: &mut String, label: Option<&str>, in_name: fn(&str, &str) -> Option<usize>| {
                let label = label.unwrap_or_default();
                match in_name(name, label).filter(|_| !label.is_empty()) {
                    Some(start) => (at(start), at(start + label.len())),
                    None => {
                        let start = text.len();
                        text.push_str(label);
                        (at(start), at(text.len()))
                    }
                }
            };
        let app_place = place(&mut text, labels.app, |name, label| name.find(label));
        let bundle_place = place(&mut text, labels.bundle, |name, label| name.rfind(label));
        let owners = at(text.len());
        for uid in owner_uids {
            text.push_str(uid.as_ref());
            text.push('\0');
        }
        ActualSecret {
            text: text.into_boxed_str(),
            name_end: at(name.len()),
            app: app_place,
            bundle: bundle_place,
            owners,
            has_app_label: labels.app.is_some(),
            has_bundle_label: labels.bundle.is_some(),
            has_managed_by_label: labels.managed_by == Some(MANAGED_BY_VALUE),
            data_hash: None,
        }
    }

    fn part(&self, start: u16, end: u16) -> &str {
        self.text
            .get(usize::from(start)..usize::from(end))
            .unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        self.part(0, self.name_end)
    }

    /// The uids of its owners.
    pub fn owner_uids(&self) -> impl Iterator<Item = &str> {
        self.text
            .get(usize::from(self.owners)..)
            .unwrap_or_default()
            .split_terminator('\0')
    }

    /// Whether the Secret is the agent's to write: it carries the `app` and
    /// `bundleId` labels that this agent and the Go agent put on credential
    /// Secrets, or the managed-by label of this agent's earlier releases. Any
    /// other Secret of that name is someone else's and is never overwritten.
    pub fn is_the_agents(&self) -> bool {
        self.has_managed_by_label || (self.has_app_label && self.has_bundle_label)
    }

    /// The value of one of the labels the agent reads; `None` for others.
    pub fn label(&self, key: &str) -> Option<&str> {
        match key {
            SECRET_APP_LABEL => self
                .has_app_label
                .then(|| self.part(self.app.0, self.app.1)),
            SECRET_BUNDLE_LABEL => self
                .has_bundle_label
                .then(|| self.part(self.bundle.0, self.bundle.1)),
            MANAGED_BY_LABEL => self.has_managed_by_label.then_some(MANAGED_BY_VALUE),
            _ => None,
        }
    }

    pub fn is_owned_by(&self, uid: &str) -> bool {
        self.owner_uids().any(|owner| owner == uid)
    }
}

impl std::fmt::Debug for ActualSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActualSecret")
            .field("name", &self.name())
            .field("app_label", &self.label(SECRET_APP_LABEL))
            .field("bundle_label", &self.label(SECRET_BUNDLE_LABEL))
            .field("has_managed_by_label", &self.has_managed_by_label)
            .field("owner_uids", &self.owner_uids().collect::<Vec<_>>())
            .field("data_hash", &self.data_hash)
            .finish()
    }
}

impl From<Secret> for ActualSecret {
    /// From the whole Secret: its data digested.
    fn from(secret: Secret) -> ActualSecret {
        let digest = data_hash(
            secret
                .data
                .iter()
                .flatten()
                .map(|(key, value)| (key.as_str(), value.0.as_slice())),
        );
        let mut summary = ActualSecret::from_metadata(secret.metadata);
        summary.data_hash = Some(digest);
        summary
    }
}

/// A credential Secret as a list (or a read) shows it: its summary, and the
/// uid and resourceVersion that tell whether a digest of its data known from
/// earlier still holds.
#[derive(Clone, Debug, PartialEq)]
pub struct ListedSecret {
    pub summary: ActualSecret,
    pub uid: Option<CompactText>,
    pub resource_version: Option<CompactText>,
}

impl From<ListedMetadata> for ListedSecret {
    fn from(listed: ListedMetadata) -> ListedSecret {
        let ReadMetadata {
            name,
            uid,
            resource_version,
            labels,
            owner_references,
        } = listed.metadata;
        let owners = owner_references
            .into_iter()
            .flatten()
            .map(|owner| owner.uid);
        ListedSecret {
            summary: ActualSecret::from_parts(name, labels, owners),
            uid: uid.map(CompactText::from),
            resource_version: resource_version.map(CompactText::from),
        }
    }
}

impl From<Secret> for ListedSecret {
    fn from(secret: Secret) -> ListedSecret {
        let uid = secret.metadata.uid.as_deref().map(CompactText::new);
        let resource_version = secret
            .metadata
            .resource_version
            .as_deref()
            .map(CompactText::new);
        ListedSecret {
            summary: ActualSecret::from(secret),
            uid,
            resource_version,
        }
    }
}

/// The digests of the credential Secrets' data, by uid and resourceVersion.
/// The Secrets carry no digest of their own (the Go agent's carry none, and
/// the agent writes them as the Go agent does), and reading every Secret's
/// data at every sync is what an idle sync must not do: a Secret whose uid
/// and resourceVersion have not moved since it was read or written has the
/// same data, so its digest stands and a metadata-only list is enough.
///
/// A list sorted by uid, not a hash map: one entry for each credential
/// Secret of the cluster, kept between syncs, in the room of exactly that
/// many (a hash map keeps up to twice the room, and while it grows, its old
/// and new tables both). What a sync writes is appended
/// ([`SecretDigestCache::reserve`] makes the room once) and sorted in before
/// the next lookup.
#[derive(Debug, Default)]
pub struct SecretDigestCache {
    entries: Vec<DigestEntry>,
    /// How many of `entries`, from the start, are sorted by uid, one each.
    sorted: usize,
}

#[derive(Debug)]
struct DigestEntry {
    uid: CompactText,
    resource_version: CompactText,
    digest: DataDigest,
    /// Whether the read under way found its Secret (see
    /// [`SecretDigestCache::begin_read`]); in the struct's padding.
    seen: bool,
}

impl SecretDigestCache {
    /// Starts a read of the cluster's Secrets: each digest is forgotten at
    /// [`Self::forget_unseen`] unless [`Self::resolve`] finds its Secret
    /// listed (at the same version) before.
    pub fn begin_read(&mut self) {
        self.sort();
        for entry in &mut self.entries {
            entry.seen = false;
        }
    }

    /// One page of the listed Secrets: those whose digest is known for the
    /// version listed go into `known`, summarized with it; the names of the
    /// others (new, changed, or not known) into `unknown`, to be read in
    /// full. A page at a time, so the list is never held whole beside the
    /// summaries.
    pub fn resolve(
        &mut self,
        page: Vec<ListedSecret>,
        known: &mut Vec<ActualSecret>,
        unknown: &mut Vec<String>,
    ) {
        self.sort();
        for listed in page {
            let entry = listed
                .uid
                .as_ref()
                .and_then(|uid| self.get_mut(uid))
                .filter(|entry| listed.resource_version.as_ref() == Some(&entry.resource_version));
            match entry {
                Some(entry) => {
                    entry.seen = true;
                    let mut summary = listed.summary;
                    summary.data_hash = Some(entry.digest);
                    known.push(summary);
                }
                None => unknown.push(listed.summary.name().to_string()),
            }
        }
    }

    /// Forgets the digests of the Secrets the read did not find, and gives
    /// back the room they took.
    pub fn forget_unseen(&mut self) {
        self.entries.retain(|entry| entry.seen);
        self.entries.shrink_to_fit();
        self.sorted = self.entries.len();
    }

    /// Forgets every digest, e.g. before the Secrets are all read in full.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.entries.shrink_to_fit();
        self.sorted = 0;
    }

    /// Keeps the digest of a Secret read in full, and hands out its summary.
    pub fn add(&mut self, listed: ListedSecret) -> ActualSecret {
        if let (Some(uid), Some(resource_version), Some(digest)) = (
            listed.uid,
            listed.resource_version,
            listed.summary.data_hash,
        ) {
            self.entries.push(DigestEntry {
                uid,
                resource_version,
                digest,
                seen: true,
            });
        }
        listed.summary
    }

    /// Makes room for `additional` digests, e.g. of the Secrets a sync is
    /// about to write, in one step.
    pub fn reserve(&mut self, additional: usize) {
        self.entries.reserve_exact(additional);
    }

    /// Adds or refreshes the digest of one Secret, e.g. of one just written
    /// (under the resourceVersion the write returned).
    pub fn insert(&mut self, uid: &str, resource_version: &str, digest: DataDigest) {
        self.entries.push(DigestEntry {
            uid: CompactText::new(uid),
            resource_version: CompactText::new(resource_version),
            digest,
            seen: true,
        });
    }

    fn get_mut(&mut self, uid: &CompactText) -> Option<&mut DigestEntry> {
        debug_assert_eq!(self.sorted, self.entries.len());
        self.entries[..self.sorted]
            .binary_search_by(|entry| entry.uid.cmp(uid))
            .ok()
            .map(|index| &mut self.entries[index])
    }

    /// Sorts what was appended in, the latest entry of a uid winning.
    fn sort(&mut self) {
        if self.sorted == self.entries.len() {
            return;
        }
        // Stable: of one uid's entries, the one added last comes last.
        self.entries.sort_by(|a, b| a.uid.cmp(&b.uid));
        // `dedup_by` keeps the first of a run, so move the last one there.
        let mut index = 0;
        while index < self.entries.len() {
            let run = self.entries[index..]
                .iter()
                .take_while(|entry| entry.uid == self.entries[index].uid)
                .count();
            self.entries.swap(index, index + run - 1);
            index += run;
        }
        self.entries.dedup_by(|later, first| later.uid == first.uid);
        self.sorted = self.entries.len();
    }

    /// How many digests it holds (one written twice since the last lookup
    /// counts twice).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn has_label(metadata: &ObjectMeta, key: &str, value: &str) -> bool {
    metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(key))
        .is_some_and(|found| found == value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::application::{ApplicationSpec, CompassMetadata};

    fn application(name: &str, uid: &str, version: &str) -> Application {
        let mut app = Application::new(
            name,
            ApplicationSpec {
                compass_metadata: Some(CompassMetadata::default()),
                ..ApplicationSpec::default()
            },
        );
        app.metadata.uid = Some(uid.into());
        app.metadata.resource_version = Some(version.into());
        app
    }

    fn listed(name: &str, uid: &str, version: &str) -> ListedApplication {
        ListedApplication {
            name: name.into(),
            uid: Some(uid.into()),
            resource_version: Some(version.into()),
        }
    }

    #[test]
    fn every_secret_is_found_by_its_name_and_no_other_name_finds_one() {
        let labelled = |name: &str, bundle: &str| {
            let labels = SecretLabels {
                bundle: Some(bundle),
                ..SecretLabels::default()
            };
            ActualSecret::of(name, labels, std::iter::empty::<&str>())
        };
        let mut secrets: Vec<ActualSecret> = (0..5_000)
            .map(|i| labelled(&format!("app-{i}-bundle"), "first"))
            .collect();
        // A name listed twice (never, in one list): the later counts.
        secrets.push(labelled("app-7-bundle", "later"));
        let by_name = SecretsByName::new(&secrets);
        assert_eq!(by_name.len(), 5_000);
        for i in 0..5_000 {
            let name = format!("app-{i}-bundle");
            let found = by_name.get(&name).unwrap();
            assert_eq!(found.name(), name);
            let bundle = if i == 7 { "later" } else { "first" };
            assert_eq!(found.label(SECRET_BUNDLE_LABEL), Some(bundle));
            assert_eq!(by_name.get_key_value(&name).unwrap().0, name);
        }
        for absent in ["app-5000-bundle", "app-1-bundl", "", "app-1-bundle\0"] {
            assert!(by_name.get(absent).is_none(), "{absent:?}");
        }
        assert!(SecretsByName::new(&[]).get("app-1-bundle").is_none());
    }

    #[test]
    fn an_unmoved_resource_version_reuses_the_summary_and_anything_else_is_read() {
        let mut cache = SummaryCache::default();
        let shop = Arc::new(ActualApplication::from(application("shop", "u-1", "10")));
        let crm = Arc::new(ActualApplication::from(application("crm", "u-2", "11")));
        cache.replace(&[shop.clone(), crm]);

        let (known, to_read) = cache.reuse(vec![
            listed("shop", "u-1", "10"),  // unchanged
            listed("crm", "u-2", "12"),   // changed since
            listed("hr", "u-3", "13"),    // new
            listed("shop2", "u-4", "10"), // an unknown uid with a known version
        ]);
        assert_eq!(known, [shop]);
        assert_eq!(to_read, ["crm", "hr", "shop2"]);
    }

    #[test]
    fn an_application_the_agent_wrote_need_not_be_read() {
        let mut cache = SummaryCache::default();
        let written = ActualApplication::from(application("shop", "u-1", "10"));
        cache.insert(written.clone());
        let (known, to_read) = cache.reuse(vec![listed("shop", "u-1", "10")]);
        assert_eq!(known, [Arc::new(written)]);
        assert!(to_read.is_empty());
    }

    #[test]
    fn a_recreated_application_is_read_again() {
        let mut cache = SummaryCache::default();
        cache.replace(&[Arc::new(ActualApplication::from(application(
            "shop", "u-1", "10",
        )))]);
        let (known, to_read) = cache.reuse(vec![listed("shop", "u-9", "10")]);
        assert!(known.is_empty());
        assert_eq!(to_read, ["shop"]);
    }

    /// A credential Secret as the Go agent's `makeSecret` writes it (and this
    /// agent now too), as the apiserver stores it.
    fn go_secret(uid: &str, version: &str, password: &str) -> Secret {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "shop-b1", "namespace": "kyma-system",
                "uid": uid, "resourceVersion": version,
                "labels": {"app": "shop", "bundleId": "b1"},
                "ownerReferences": [{
                    "apiVersion": "applicationconnector.kyma-project.io/v1alpha1",
                    "kind": "Application", "name": "shop", "uid": "app-uid"
                }]
            },
            "type": "Opaque",
            "data": {"password": base64_of(password), "username": base64_of("u")}
        }))
        .unwrap()
    }

    fn base64_of(text: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    fn digest_of(password: &str) -> DataDigest {
        data_hash([("password", password.as_bytes()), ("username", &b"u"[..])].into_iter())
    }

    /// The same Secret under another name.
    fn renamed(secret: &ActualSecret, name: &str) -> ActualSecret {
        let labels = [SECRET_APP_LABEL, SECRET_BUNDLE_LABEL, MANAGED_BY_LABEL]
            .into_iter()
            .filter_map(|key| Some((key.to_string(), secret.label(key)?.to_string())))
            .collect();
        let owners: Vec<String> = secret.owner_uids().map(String::from).collect();
        let mut renamed =
            ActualSecret::from_parts(Some(name.to_string()), Some(labels), owners.into_iter());
        renamed.data_hash = secret.data_hash;
        renamed
    }

    #[test]
    fn a_summary_keeps_its_name_labels_and_owners_apart() {
        let labels = BTreeMap::from([
            (SECRET_APP_LABEL.to_string(), String::new()),
            ("other".to_string(), "x".to_string()),
        ]);
        let owners = ["u-1".to_string(), "u-2".to_string()];
        let secret =
            ActualSecret::from_parts(Some("shop-b".into()), Some(labels), owners.into_iter());
        assert_eq!(secret.name(), "shop-b");
        assert_eq!(
            secret.label(SECRET_APP_LABEL),
            Some(""),
            "empty, but a label"
        );
        assert_eq!(secret.label(SECRET_BUNDLE_LABEL), None);
        assert_eq!(secret.label("other"), None);
        assert!(!secret.is_the_agents());
        assert_eq!(secret.owner_uids().collect::<Vec<_>>(), ["u-1", "u-2"]);
        assert!(secret.is_owned_by("u-2") && !secret.is_owned_by("u-"));
        let bare = ActualSecret::from_parts(None, None, std::iter::empty::<String>());
        assert_eq!(bare.name(), "");
        assert_eq!(bare.owner_uids().count(), 0);
    }

    fn metadata_of(secret: &Secret) -> ListedSecret {
        ListedSecret::from(ListedMetadata::of(&secret.metadata))
    }

    #[test]
    fn a_secret_as_the_go_agent_writes_it_is_the_agents_and_its_data_is_digested() {
        let read = ListedSecret::from(go_secret("s-1", "5", "pw"));
        assert_eq!(read.uid, Some(CompactText::new("s-1")));
        assert_eq!(read.resource_version, Some(CompactText::new("5")));
        let summary = read.summary;
        assert!(summary.is_the_agents());
        assert!(!summary.has_managed_by_label);
        assert_eq!(summary.data_hash, Some(digest_of("pw")));
        assert_eq!(summary.label(SECRET_APP_LABEL), Some("shop"));
        assert!(summary.is_owned_by("app-uid"));
        // From the metadata alone, the digest is not known.
        assert_eq!(
            metadata_of(&go_secret("s-1", "5", "pw")).summary.data_hash,
            None
        );
    }

    #[test]
    fn the_data_hash_annotation_of_an_earlier_release_is_not_taken_for_the_data() {
        let mut secret = go_secret("s-1", "5", "edited by hand");
        secret
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string());
        secret.metadata.annotations = Some(std::collections::BTreeMap::from([(
            "compass-runtime-agent.kyma-project.io/data-hash".to_string(),
            digest_of("pw").to_string(),
        )]));
        assert_eq!(metadata_of(&secret).summary.data_hash, None);
        let summary = ActualSecret::from(secret);
        assert!(summary.is_the_agents() && summary.has_managed_by_label);
        assert_eq!(summary.data_hash, Some(digest_of("edited by hand")));
    }

    #[test]
    fn a_secret_summary_gives_back_its_labels_whether_or_not_they_are_in_its_name() {
        let summary = |name: &str, app: &str, bundle: &str| {
            ActualSecret::from_parts(
                Some(name.to_string()),
                Some(BTreeMap::from([
                    (SECRET_APP_LABEL.to_string(), app.to_string()),
                    (SECRET_BUNDLE_LABEL.to_string(), bundle.to_string()),
                ])),
                ["uid-1".to_string(), "uid-2".to_string()].into_iter(),
            )
        };
        // As the agent names them: both labels are parts of the name, which
        // holds them once.
        let ours = summary("shop-6a1f0c2e-bundle", "shop", "6a1f0c2e-bundle");
        assert_eq!(ours.name(), "shop-6a1f0c2e-bundle");
        assert_eq!(ours.label(SECRET_APP_LABEL), Some("shop"));
        assert_eq!(ours.label(SECRET_BUNDLE_LABEL), Some("6a1f0c2e-bundle"));
        assert_eq!(ours.owner_uids().collect::<Vec<_>>(), ["uid-1", "uid-2"]);
        assert_eq!(
            ours.text.len(),
            "shop-6a1f0c2e-bundle".len() + "uid-1\0uid-2\0".len()
        );
        // Someone else's naming, and empty labels.
        let theirs = summary("credentials", "crm", "b-7");
        assert_eq!(theirs.name(), "credentials");
        assert_eq!(theirs.label(SECRET_APP_LABEL), Some("crm"));
        assert_eq!(theirs.label(SECRET_BUNDLE_LABEL), Some("b-7"));
        assert_eq!(theirs.owner_uids().collect::<Vec<_>>(), ["uid-1", "uid-2"]);
        let empty = summary("credentials", "", "");
        assert_eq!(empty.label(SECRET_APP_LABEL), Some(""));
        assert_eq!(empty.label(SECRET_BUNDLE_LABEL), Some(""));
        assert!(empty.is_the_agents(), "an empty label is still a label");
    }

    #[test]
    fn a_secret_without_data_has_the_digest_of_no_data() {
        let mut secret = go_secret("s-1", "5", "pw");
        secret.data = None;
        assert_eq!(
            ActualSecret::from(secret).data_hash,
            Some(data_hash(std::iter::empty()))
        );
    }

    /// A cache that knows these Secrets, as after a read of them in full.
    fn cache_of(secrets: Vec<Secret>) -> SecretDigestCache {
        let mut cache = SecretDigestCache::default();
        cache.clear();
        for secret in secrets {
            cache.add(ListedSecret::from(secret));
        }
        cache
    }

    /// A read of these listed Secrets: the known summaries and the unknown
    /// names, over pages of two.
    fn read(
        cache: &mut SecretDigestCache,
        listed: Vec<ListedSecret>,
    ) -> (Vec<ActualSecret>, Vec<String>) {
        cache.begin_read();
        let (mut known, mut unknown) = (Vec::new(), Vec::new());
        let mut listed = listed.into_iter().peekable();
        while listed.peek().is_some() {
            let page: Vec<_> = listed.by_ref().take(2).collect();
            cache.resolve(page, &mut known, &mut unknown);
        }
        (known, unknown)
    }

    #[test]
    fn a_digest_is_reused_only_for_the_same_uid_and_resource_version() {
        let mut cache = cache_of(vec![
            go_secret("s-1", "5", "pw"),
            go_secret("s-2", "6", "other"),
        ]);
        assert_eq!(cache.len(), 2);
        let named = |uid: &str, version: &str, name: &str| {
            let mut listed = metadata_of(&go_secret(uid, version, "pw"));
            listed.summary = renamed(&listed.summary, name);
            listed
        };
        let (known, to_read) = read(
            &mut cache,
            vec![
                named("s-1", "5", "unchanged"),
                named("s-2", "7", "changed-since"),
                named("s-3", "5", "new-with-a-known-version"),
                named("s-9", "6", "recreated"),
            ],
        );
        assert_eq!(
            to_read,
            ["changed-since", "new-with-a-known-version", "recreated"]
        );
        assert_eq!(known.len(), 1);
        assert_eq!(known[0].name(), "unchanged");
        assert_eq!(known[0].data_hash, Some(digest_of("pw")));

        // Without a uid or a resourceVersion nothing is known.
        let mut anonymous = named("s-1", "5", "anonymous");
        anonymous.uid = None;
        let mut versionless = named("s-1", "5", "versionless");
        versionless.resource_version = None;
        let (known, to_read) = read(&mut cache, vec![anonymous, versionless]);
        assert!(known.is_empty());
        assert_eq!(to_read, ["anonymous", "versionless"]);
    }

    #[test]
    fn a_secret_the_agent_wrote_need_not_be_read_and_what_a_read_misses_is_forgotten() {
        let mut cache = SecretDigestCache::default();
        cache.insert("s-1", "8", digest_of("new"));
        let (known, to_read) = read(&mut cache, vec![metadata_of(&go_secret("s-1", "8", "new"))]);
        assert!(to_read.is_empty());
        assert_eq!(known[0].data_hash, Some(digest_of("new")));
        cache.forget_unseen();
        assert_eq!(cache.len(), 1, "listed, so kept");

        // Only what the last read found is kept.
        let (known, _) = read(&mut cache, vec![metadata_of(&go_secret("s-2", "9", "pw"))]);
        assert!(known.is_empty());
        cache.forget_unseen();
        assert_eq!(cache.len(), 0);
        let (known, to_read) = read(&mut cache, vec![metadata_of(&go_secret("s-1", "8", "new"))]);
        assert!(known.is_empty());
        assert_eq!(to_read, ["shop-b1"]);
    }

    #[test]
    fn of_a_secret_written_twice_the_later_digest_counts() {
        let mut cache = cache_of(vec![go_secret("s-2", "5", "pw")]);
        cache.reserve(3);
        cache.insert("s-1", "8", digest_of("first"));
        cache.insert("s-3", "3", digest_of("other"));
        cache.insert("s-1", "9", digest_of("second"));
        let (known, to_read) = read(
            &mut cache,
            vec![
                metadata_of(&go_secret("s-1", "9", "second")),
                metadata_of(&go_secret("s-2", "5", "pw")),
                metadata_of(&go_secret("s-3", "3", "other")),
            ],
        );
        assert!(to_read.is_empty(), "{to_read:?}");
        let digests: Vec<_> = known.iter().map(|k| k.data_hash).collect();
        assert_eq!(
            digests,
            [
                Some(digest_of("second")),
                Some(digest_of("pw")),
                Some(digest_of("other"))
            ]
        );
        assert_eq!(cache.len(), 3, "one digest each");
        // The first version's digest is gone.
        let (known, _) = read(
            &mut cache,
            vec![metadata_of(&go_secret("s-1", "8", "first"))],
        );
        assert!(known.is_empty());
    }

    #[test]
    fn the_cache_keeps_room_for_exactly_the_secrets_a_read_found() {
        let mut cache = SecretDigestCache::default();
        cache.reserve(100);
        for i in 0..100 {
            cache.insert(&format!("w-{i}"), "1", digest_of("pw"));
        }
        read(
            &mut cache,
            vec![
                metadata_of(&go_secret("w-1", "1", "pw")),
                metadata_of(&go_secret("w-2", "1", "pw")),
            ],
        );
        cache.forget_unseen();
        assert_eq!(
            cache.entries.capacity(),
            2,
            "the room a first sync's writes took is given back"
        );
    }

    #[test]
    fn replace_forgets_what_was_not_read_this_time() {
        let mut cache = SummaryCache::default();
        cache.replace(&[Arc::new(ActualApplication::from(application(
            "shop", "u-1", "10",
        )))]);
        cache.replace(&[Arc::new(ActualApplication::from(application(
            "crm", "u-2", "11",
        )))]);
        assert_eq!(cache.len(), 1);
        let (known, _) = cache.reuse(vec![listed("shop", "u-1", "10")]);
        assert!(known.is_empty());
    }
}
