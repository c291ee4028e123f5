//! The sync plan: what to create, update and delete so that the cluster holds
//! what the Director assigns, as data. Pure, so that "an unchanged sync writes
//! nothing" and "someone else's Application is never touched" are unit facts.

use std::collections::{BTreeMap, BTreeSet};

// foldhash, not SipHash: see the agent's Cargo.toml.
use hashbrown::{HashMap, HashSet};

use super::actual::{ActualApplication, ActualIndex, ActualSecret, ActualState, SecretsByName};
use super::digest::OwnedDigest;
use super::names;
use super::wanted::{
    Content, HeldApplication, PackedApplication, Packer, WantedApplication, WantedSecret,
};
use crate::crd::labels::SECRET_APP_LABEL;

#[derive(Clone, Debug, PartialEq)]
pub enum ApplicationAction {
    Create(PackedApplication),
    Update(PackedApplication),
    Delete,
    Unchanged,
    /// The Director application cannot be synchronized, for the reason given:
    /// its name is taken by an Application the agent does not manage, another
    /// Director application has the same name, or it is not a valid name.
    /// Nothing is written for it, and nothing of its is deleted.
    Refused(String),
}

#[derive(Clone, Debug, PartialEq)]
pub enum SecretAction {
    Create(WantedSecret),
    Update(WantedSecret),
    Delete(String),
}

impl SecretAction {
    pub fn secret_name(&self) -> &str {
        match self {
            SecretAction::Create(secret) | SecretAction::Update(secret) => secret.name(),
            SecretAction::Delete(name) => name,
        }
    }
}

/// An Application that stands under an old name of the Director application
/// (its name was normalized differently, or renamed in the Director): it is
/// deleted, with its Secrets, once the Application under the new name has
/// been written, never before.
#[derive(Clone, Debug, PartialEq)]
pub struct Replaced {
    pub name: String,
    /// Its uid when read: only that Application is deleted, not one made
    /// anew under its name since.
    pub uid: Option<String>,
    /// Its Secrets that no wanted Application refers to (after the
    /// 27-character cut an old and a new Secret name can be the same).
    pub secrets: Vec<String>,
}

/// Everything to do for one Application; applied independently of the others.
#[derive(Clone, Debug, PartialEq)]
pub struct ApplicationPlan {
    pub name: String,
    pub application_id: String,
    pub action: ApplicationAction,
    /// The uid of the Application in the cluster, when it exists (owner of
    /// its Secrets). Boxed, so that a plan is no larger than the held
    /// application it is made from: the plan is made in the list of them.
    pub existing_uid: Option<Box<str>>,
    pub secrets: Vec<SecretAction>,
    /// Applications under old names of this one, deleted after it is written.
    pub replaces: Vec<Replaced>,
}

// The plan of an idle sync at 10,000 applications is made in the list of
// held applications (see `plan`); a larger plan would need a list of its own.
const _: () = assert!(
    std::mem::size_of::<ApplicationPlan>() <= std::mem::size_of::<HeldApplication>()
        && std::mem::align_of::<ApplicationPlan>() == std::mem::align_of::<HeldApplication>()
);

impl ApplicationPlan {
    /// The number of API writes this plan makes.
    pub fn writes(&self) -> usize {
        let application = match self.action {
            ApplicationAction::Create(_)
            | ApplicationAction::Update(_)
            | ApplicationAction::Delete => 1,
            ApplicationAction::Unchanged | ApplicationAction::Refused(_) => 0,
        };
        let replaced: usize = self.replaces.iter().map(|old| 1 + old.secrets.len()).sum();
        application + self.secrets.len() + replaced
    }

    fn refused(wanted: HeldApplication, reason: String) -> ApplicationPlan {
        ApplicationPlan::refusal(wanted.name, wanted.application_id, reason)
    }

    fn refusal(name: String, application_id: String, reason: String) -> ApplicationPlan {
        ApplicationPlan {
            name,
            application_id,
            action: ApplicationAction::Refused(reason),
            existing_uid: None,
            secrets: Vec::new(),
            replaces: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub applications: Vec<ApplicationPlan>,
    /// Applications to delete (or replace) that wait for a later cycle.
    pub deferred: Vec<Deferred>,
}

/// An Application whose deletion waits: it owns Secrets that a wanted
/// Application refers to, which the garbage collector would delete with it.
/// Once the wanted Application's plan has written them (as their owner), a
/// later cycle deletes it.
#[derive(Clone, Debug, PartialEq)]
pub struct Deferred {
    pub name: String,
    pub owned_secrets: Vec<String>,
}

impl Plan {
    pub fn writes(&self) -> usize {
        self.applications.iter().map(ApplicationPlan::writes).sum()
    }
}

/// Whether the plan may delete: not when the Director's list of applications
/// did not come whole (it cannot tell which are gone, nor which Secret an
/// application it missed refers to). Skipped: no Application and no Secret
/// is deleted; creates and updates go on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deletions {
    Allowed,
    Skipped,
}

/// Compares what the Director wants with what the cluster has.
///
/// What it never does, whatever the input: touch an Application without
/// `compassMetadata`; delete an Application whose Director application is in
/// the snapshot (unless it is replaced, after its successor is written);
/// delete a Secret that a wanted Application refers to, directly or through
/// the garbage collector (an Application that owns one is not deleted until
/// the Secret has a new owner); write or delete a Secret that is not the
/// agent's; delete anything with [`Deletions::Skipped`].
pub fn plan<W: Into<HeldApplication>>(
    wanted: impl IntoIterator<Item = W>,
    actual: &ActualState,
    deletions: Deletions,
) -> Plan {
    let wanted: Vec<HeldApplication> = wanted.into_iter().map(Into::into).collect();
    let ActualIndex {
        applications: actual_apps,
        secrets: actual_secrets,
    } = ActualIndex::new(actual);
    let labelled = secrets_by_labelled_app(&actual.secrets);
    // What the snapshot holds, whatever becomes of each application, as far
    // as the cluster is concerned: the sets borrow the cluster's names, not
    // the held applications', which each go into their plan below (a copy of
    // every wanted name would be the plan's largest memory).
    let Snapshot {
        refusals: mut name_refusals,
        claimed,
        in_snapshot,
        wanted_secrets,
    } = Snapshot::of(&wanted, &actual_apps, &actual_secrets);

    // Each held application becomes its plan where it lies (a plan is no
    // larger, so the list is reused): the two lists are never both in memory.
    let mut plans: Vec<ApplicationPlan> = wanted
        .into_iter()
        .enumerate()
        .map(|(index, wanted_app)| {
            if let Some(problem) = wanted_app.inconsistency.clone() {
                let reason = format!(
                    "the Director's answer for it did not come whole ({problem}); it is left as it is"
                );
                return ApplicationPlan::refused(wanted_app, reason);
            }
            if let Some(reason) = name_refusals.remove(&index) {
                return ApplicationPlan::refused(wanted_app, reason);
            }
            plan_wanted(
                wanted_app,
                &actual_apps,
                &actual_secrets,
                &labelled,
                &wanted_secrets,
                deletions,
            )
        })
        .collect();

    // Applications under an old name of a Director application still in the
    // snapshot: each waits for the plan that writes it under its current name.
    let renamed: HashSet<&str> = actual_apps
        .iter()
        .filter(|(name, _)| !claimed.contains(*name))
        .filter_map(|(_, app)| app.compass_application_id.as_deref())
        .filter(|id| in_snapshot.contains(id))
        .collect();
    let successor_of: HashMap<&str, usize> = plans
        .iter()
        .enumerate()
        .filter(|(_, plan)| !matches!(plan.action, ApplicationAction::Refused(_)))
        .filter_map(|(index, plan)| {
            renamed
                .get(plan.application_id.as_str())
                .map(|id| (*id, index))
        })
        .collect();

    // Only when some Application may be deleted (none in an idle sync): a
    // map over every wanted Secret's owners.
    let may_delete = |name: &str, app: &ActualApplication| {
        !claimed.contains(name) && app.is_managed_by_compass() && deletions == Deletions::Allowed
    };
    let wanted_by_owner = if actual_apps.iter().any(|(name, app)| may_delete(name, app)) {
        wanted_secrets_by_owner(&actual.secrets, &wanted_secrets)
    } else {
        HashMap::new()
    };
    let mut deferred = Vec::new();
    for (name, app) in &actual_apps {
        if !may_delete(name, app) {
            continue;
        }
        let secrets: Vec<String> = app
            .referenced_secrets
            .iter()
            .chain(labelled.get(*name).into_iter().flatten().copied())
            .filter(|secret| is_deletable(secret, &actual_secrets, &wanted_secrets))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(String::from)
            .collect();
        // Deleting an Application lets the garbage collector delete the
        // Secrets it owns; one a wanted Application refers to gets that
        // Application as its owner when its plan writes it (plans run in any
        // order), so this one waits for a later cycle.
        let owns_wanted: Vec<String> = app
            .uid
            .as_deref()
            .and_then(|uid| wanted_by_owner.get(uid))
            .into_iter()
            .flatten()
            .map(|secret| secret.to_string())
            .collect();
        let application_id = app.compass_application_id.clone().unwrap_or_default();
        if in_snapshot.contains(application_id.as_str()) {
            // Still in the Director under another name: replaced once the new
            // one is written; left alone while the new one cannot be. The
            // successor takes over the Secrets it shares before the delete.
            if let Some(&index) = successor_of.get(application_id.as_str()) {
                let successor = &plans[index];
                let rewritten: BTreeSet<&str> = successor
                    .secrets
                    .iter()
                    .map(SecretAction::secret_name)
                    .collect();
                if owns_wanted
                    .iter()
                    .all(|secret| rewritten.contains(secret.as_str()))
                {
                    plans[index].replaces.push(Replaced {
                        name: name.to_string(),
                        uid: app.uid.clone(),
                        secrets,
                    });
                } else {
                    deferred.push(Deferred {
                        name: name.to_string(),
                        owned_secrets: owns_wanted,
                    });
                }
            }
            continue;
        }
        if !owns_wanted.is_empty() {
            deferred.push(Deferred {
                name: name.to_string(),
                owned_secrets: owns_wanted,
            });
            continue;
        }
        plans.push(ApplicationPlan {
            name: name.to_string(),
            application_id,
            action: ApplicationAction::Delete,
            existing_uid: app.uid.as_deref().map(Box::from),
            secrets: secrets.into_iter().map(SecretAction::Delete).collect(),
            replaces: Vec::new(),
        });
    }
    Plan {
        applications: plans,
        deferred,
    }
}

/// What the plan needs to know of the whole snapshot, in the cluster's
/// names (borrowed from the cluster state, which outlives the plan).
struct Snapshot<'a> {
    /// Why an application (by its place in the snapshot) is refused for its
    /// name: another one has the same, or Kubernetes would refuse it.
    refusals: HashMap<usize, String>,
    /// The Applications in the cluster whose name a Director application has.
    claimed: HashSet<&'a str>,
    /// The Director application ids of Applications in the cluster that are
    /// in the snapshot (under whatever name).
    in_snapshot: HashSet<&'a str>,
    /// The Secrets in the cluster that a Director application refers to.
    wanted_secrets: HashSet<&'a str>,
}

impl<'a> Snapshot<'a> {
    fn of(
        wanted: &[HeldApplication],
        actual_apps: &BTreeMap<&'a str, &'a ActualApplication>,
        actual_secrets: &SecretsByName<'a>,
    ) -> Snapshot<'a> {
        // How many applications claim each name; the ids only of a name
        // claimed more than once (rare), not a list for every name.
        let mut claims: HashMap<&str, usize> = HashMap::with_capacity(wanted.len());
        for app in wanted {
            *claims.entry(app.name.as_str()).or_default() += 1;
        }
        let mut refusals = HashMap::new();
        for (index, app) in wanted.iter().enumerate() {
            let claimants = claims[app.name.as_str()];
            if claimants > 1 {
                let ids: Vec<&str> = wanted
                    .iter()
                    .filter(|other| other.name == app.name)
                    .map(|other| other.application_id.as_str())
                    .collect();
                // Every one of them, so that no winner can flip between cycles.
                let reason = format!(
                    "{} Director applications have the name {:?} (ids {}); none of them is synchronized until the names differ",
                    ids.len(),
                    app.name,
                    ids.join(", ")
                );
                refusals.insert(index, reason);
                continue;
            }
            let has_secrets = app.secret_names().next().is_some();
            if let Err(reason) = names::check_application_name(&app.name, has_secrets) {
                refusals.insert(index, reason);
            }
        }
        let claimed = actual_apps
            .keys()
            .copied()
            .filter(|name| claims.contains_key(name))
            .collect();
        drop(claims);
        let wanted_ids: HashSet<&str> = wanted
            .iter()
            .map(|app| app.application_id.as_str())
            .collect();
        let in_snapshot = actual_apps
            .values()
            .filter_map(|app| app.compass_application_id.as_deref())
            .filter(|id| wanted_ids.contains(id))
            .collect();
        let wanted_secrets = wanted
            .iter()
            .flat_map(HeldApplication::secret_names)
            .filter_map(|secret| actual_secrets.get_key_value(secret).map(|(name, _)| name))
            .collect();
        Snapshot {
            refusals,
            claimed,
            in_snapshot,
            wanted_secrets,
        }
    }
}

/// A Secret the plan may delete: it exists, it is the agent's, and no wanted
/// Application refers to it.
fn is_deletable(
    secret: &str,
    actual_secrets: &SecretsByName,
    wanted_secrets: &HashSet<&str>,
) -> bool {
    actual_secrets
        .get(secret)
        .is_some_and(|actual| actual.is_the_agents())
        && !wanted_secrets.contains(secret)
}

fn plan_wanted(
    wanted_app: HeldApplication,
    actual_apps: &BTreeMap<&str, &ActualApplication>,
    actual_secrets: &SecretsByName,
    labelled: &HashMap<&str, Vec<&str>>,
    all_wanted_secrets: &HashSet<&str>,
    deletions: Deletions,
) -> ApplicationPlan {
    let existing = actual_apps.get(wanted_app.name.as_str()).copied();
    if existing.is_some_and(|app| !app.is_managed_by_compass()) {
        let reason = format!(
            "an Application named {:?} exists and is not managed by Compass; it is left alone",
            wanted_app.name
        );
        return ApplicationPlan::refused(wanted_app, reason);
    }
    let foreign = wanted_app.secret_names().find(|secret| {
        actual_secrets
            .get(secret)
            .is_some_and(|actual| !actual.is_the_agents())
    });
    if let Some(secret) = foreign {
        let reason = format!(
            "a Secret named {secret:?} exists and is not the agent's (it has neither the agent's labels nor the Go agent's); it is left alone"
        );
        return ApplicationPlan::refused(wanted_app, reason);
    }
    // Secrets of the existing Application it no longer wants; a held
    // application wants a handful, so they are searched, not put in a set.
    let stale: BTreeSet<&str> = match existing.filter(|_| deletions == Deletions::Allowed) {
        Some(app) => app
            .referenced_secrets
            .iter()
            .chain(
                labelled
                    .get(wanted_app.name.as_str())
                    .into_iter()
                    .flatten()
                    .copied(),
            )
            .filter(|secret| {
                !wanted_app.secret_names().any(|wanted| wanted == *secret)
                    && is_deletable(secret, actual_secrets, all_wanted_secrets)
            })
            .collect(),
        None => BTreeSet::new(),
    };
    let HeldApplication {
        name,
        application_id,
        owned,
        content,
        inconsistency: _,
    } = wanted_app;
    let existing_uid = existing.and_then(|app| app.uid.as_deref()).map(Box::from);
    let mut secrets = Vec::new();
    let action = match content {
        Content::Settled { .. } => match existing {
            // Compared with this same cluster state when it arrived.
            Some(app) if app.has_managed_by_label && app.owned == owned => {
                ApplicationAction::Unchanged
            }
            // Only if the plan were given another cluster state than the
            // fetch compared with; the next sync writes it.
            _ => {
                let reason = "the cluster changed while the Director's answer was compared with it; it is synchronized at the next cycle";
                return ApplicationPlan::refusal(name, application_id, reason.into());
            }
        },
        Content::Full {
            application,
            secrets: wanted_secrets,
        } => {
            for secret in wanted_secrets {
                match actual_secrets.get(secret.name()) {
                    None => secrets.push(SecretAction::Create(secret)),
                    Some(actual) if secret_differs(&secret, actual, existing_uid.as_deref()) => {
                        secrets.push(SecretAction::Update(secret))
                    }
                    Some(_) => {}
                }
            }
            match existing {
                None => ApplicationAction::Create(application),
                // Only the fields the agent writes count, and its managed-by label.
                Some(app) if !app.has_managed_by_label || app.owned != owned => {
                    ApplicationAction::Update(application)
                }
                Some(_) => ApplicationAction::Unchanged,
            }
        }
    };
    secrets.extend(
        stale
            .into_iter()
            .map(|secret| SecretAction::Delete(secret.to_string())),
    );
    ApplicationPlan {
        name,
        application_id,
        action,
        existing_uid,
        secrets,
        replaces: Vec::new(),
    }
}

/// How a Director application is held from its arrival to the plan: settled
/// at once when the cluster has been read and holds it exactly ([`settle`]),
/// packed for writing otherwise. Packing (and its CPU) is spent only on what
/// may be written. `owned` is the digest of its owned fields
/// ([`OwnedDigest::of`]), made once by the caller.
pub fn hold(
    wanted: WantedApplication,
    owned: OwnedDigest,
    actual: Option<&ActualIndex>,
    packer: &mut Packer,
) -> HeldApplication {
    let name = wanted.application.metadata.name.clone().unwrap_or_default();
    if actual.is_some_and(|actual| holds_already(&name, owned, &wanted.secrets, actual)) {
        return HeldApplication {
            application_id: wanted
                .application
                .spec
                .compass_metadata
                .as_ref()
                .map(|metadata| metadata.application_id.clone())
                .unwrap_or_default(),
            name,
            owned,
            content: Content::Settled {
                secret_names: wanted.secrets.iter().map(WantedSecret::name).collect(),
            },
            inconsistency: None,
        };
    }
    HeldApplication::packed_with(wanted, owned, packer)
}

/// Keeps only the names of a held application the cluster already holds
/// exactly: the plan would write nothing for it (see [`plan_wanted`]), so its
/// packed Application and its Secrets' data need not wait in memory for the
/// rest of the fetch. One that did not come whole is kept as it is.
pub fn settle(held: HeldApplication, actual: &ActualIndex) -> HeldApplication {
    let holds = match &held.content {
        Content::Full { secrets, .. } => {
            held.inconsistency.is_none() && holds_already(&held.name, held.owned, secrets, actual)
        }
        Content::Settled { .. } => false,
    };
    if !holds {
        return held;
    }
    let secret_names = held.secret_names().collect();
    HeldApplication {
        content: Content::Settled { secret_names },
        ..held
    }
}

/// Whether the cluster holds exactly what is wanted: [`plan_wanted`] would
/// plan `Unchanged` and no Secret write. (Stale Secrets are still found by
/// the plan, from the names.)
fn holds_already(
    name: &str,
    owned: OwnedDigest,
    secrets: &[WantedSecret],
    actual: &ActualIndex,
) -> bool {
    let Some(existing) = actual.applications.get(name) else {
        return false;
    };
    existing.is_the_agents_as_written()
        && existing.owned == owned
        && secrets.iter().all(|secret| {
            actual.secrets.get(secret.name()).is_some_and(|found| {
                found.is_the_agents() && !secret_differs(secret, found, existing.uid.as_deref())
            })
        })
}

/// Whether a Secret of the agent's must be written again: its data, its
/// `app` or `bundleId` label or its owner is not what is wanted. Other labels
/// and annotations do not count: a Secret of an earlier release (with the
/// managed-by label and a data-digest annotation) that holds the wanted data
/// is left as it is, as the Go agent's Secrets are.
fn secret_differs(wanted: &WantedSecret, actual: &ActualSecret, owner_uid: Option<&str>) -> bool {
    // The digest of the data as read (or as known for its resourceVersion);
    // none known counts as different.
    let data_matches = actual.data_hash == Some(wanted.data_hash());
    let labels_match = wanted
        .label_values()
        .iter()
        .all(|(key, value)| actual.label(key) == Some(*value));
    let owned_by_app = owner_uid.is_some_and(|uid| actual.is_owned_by(uid));
    !data_matches || !labels_match || !owned_by_app
}

/// The Secrets a wanted Application refers to, by the uid of each of their
/// owners. Built once per plan: a scan of every Secret for each Application
/// gone from the Director would be quadratic.
fn wanted_secrets_by_owner<'a>(
    secrets: &'a [ActualSecret],
    wanted_secrets: &HashSet<&str>,
) -> HashMap<&'a str, Vec<&'a str>> {
    let mut by_owner: HashMap<&str, Vec<&str>> = HashMap::new();
    for secret in secrets {
        if !wanted_secrets.contains(secret.name()) {
            continue;
        }
        for owner in secret.owner_uids() {
            let owned = by_owner.entry(owner).or_default();
            // An owner named twice in one Secret counts once.
            if owned.last() != Some(&secret.name()) {
                owned.push(secret.name());
            }
        }
    }
    by_owner
}

/// The Secrets the agent (this one, an earlier release, or the Go agent) made
/// for each application (by their `app` label), found even when the
/// Application no longer points at them (e.g. after a failed earlier sync).
/// Only the agent's ([`ActualSecret::is_the_agents`]): someone else's Secret
/// with an `app` label is no application's. Built once per plan: a lookup per
/// application would be quadratic.
fn secrets_by_labelled_app(secrets: &[ActualSecret]) -> HashMap<&str, Vec<&str>> {
    let mut by_app: HashMap<&str, Vec<&str>> = HashMap::new();
    for secret in secrets {
        if !secret.is_the_agents() {
            continue;
        }
        if let Some(app) = secret.label(SECRET_APP_LABEL) {
            by_app.entry(app).or_default().push(secret.name());
        }
    }
    by_app
}

#[cfg(test)]
pub(in crate::sync) mod tests {
    use super::*;
    use crate::compass::model::{self, Auth, Credential};
    use crate::crd::application::{Application, ApplicationSpec};
    use crate::sync::convert::{to_wanted_application, ConversionSettings};
    use k8s_openapi::api::core::v1::Secret;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use k8s_openapi::ByteString;
    use std::sync::Arc;

    /// The plan when deletions are allowed (a list that came whole).
    fn planned<W: Into<HeldApplication>>(
        wanted: impl IntoIterator<Item = W>,
        actual: &ActualState,
    ) -> Plan {
        plan(wanted, actual, Deletions::Allowed)
    }

    pub(in crate::sync) fn settings() -> ConversionSettings {
        ConversionSettings {
            central_gateway_url: "http://gateway:8082".into(),
            skip_apps_tls_verify: false,
            normalize_application_names: false,
        }
    }

    pub(in crate::sync) fn director_app(name: &str, password: &str) -> model::Application {
        model::Application {
            id: format!("{name}-id"),
            name: name.into(),
            provider_name: None,
            description: None,
            labels: None,
            auths: vec![],
            bundles: vec![model::Bundle {
                id: format!("{name}-bundle"),
                name: "Bundle".into(),
                description: None,
                instance_auth_request_input_schema: None,
                default_instance_auth: Some(Auth {
                    credential: Some(Credential::Basic {
                        username: "u".into(),
                        password: password.into(),
                    }),
                    ..Auth::default()
                }),
                api_definitions: vec![model::ApiDefinition {
                    id: "api".into(),
                    name: "api".into(),
                    description: None,
                    target_url: "https://x".into(),
                }],
                event_definitions: vec![],
            }],
        }
    }

    pub(in crate::sync) fn wanted(name: &str, password: &str) -> WantedApplication {
        to_wanted_application(&director_app(name, password), &settings())
    }

    /// The objects in the cluster after applying `wanted` (with uids, as the apiserver sets).
    pub(in crate::sync) fn applied_objects(
        wanted: &[WantedApplication],
    ) -> (Vec<Application>, Vec<Secret>) {
        let (mut apps, mut secrets) = (Vec::new(), Vec::new());
        for (i, w) in wanted.iter().enumerate() {
            let mut app = w.application.clone();
            let uid = format!("uid-{i}");
            app.metadata.uid = Some(uid.clone());
            apps.push(app);
            for s in &w.secrets {
                secrets.push(secret_in_cluster(s, &uid));
            }
        }
        (apps, secrets)
    }

    /// What the agent reads of those objects.
    pub(in crate::sync) fn summarize(apps: &[Application], secrets: Vec<Secret>) -> ActualState {
        ActualState {
            applications: apps
                .iter()
                .map(|app| Arc::new(ActualApplication::from(app)))
                .collect(),
            secrets: secrets.into_iter().map(ActualSecret::from).collect(),
            secrets_listed: true,
        }
    }

    pub(in crate::sync) fn applied(wanted: &[WantedApplication]) -> ActualState {
        let (apps, secrets) = applied_objects(wanted);
        summarize(&apps, secrets)
    }

    fn secret_in_cluster(wanted: &WantedSecret, owner_uid: &str) -> Secret {
        let mut secret = Secret::default();
        secret.metadata.name = Some(wanted.name().to_string());
        secret.metadata.labels = Some(wanted.labels());
        secret.metadata.owner_references = Some(vec![OwnerReference {
            uid: owner_uid.into(),
            ..OwnerReference::default()
        }]);
        secret.data = Some(
            wanted
                .data()
                .iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                .collect(),
        );
        secret
    }

    #[test]
    fn an_empty_cluster_gets_every_application_and_secret_created() {
        let plan = planned(
            vec![wanted("shop", "p"), wanted("crm", "p")],
            &ActualState::default(),
        );
        assert_eq!(plan.applications.len(), 2);
        for app in &plan.applications {
            assert!(
                matches!(app.action, ApplicationAction::Create(_)),
                "{:?}",
                app.action
            );
            assert!(
                matches!(app.secrets[..], [SecretAction::Create(_)]),
                "{:?}",
                app.secrets
            );
        }
        assert_eq!(plan.writes(), 4);
    }

    #[test]
    fn an_unchanged_director_plans_zero_writes() {
        let state = applied(&[wanted("shop", "p"), wanted("crm", "p")]);
        let plan = planned(vec![wanted("shop", "p"), wanted("crm", "p")], &state);
        assert_eq!(plan.writes(), 0, "{plan:?}");
        assert!(plan
            .applications
            .iter()
            .all(|a| a.action == ApplicationAction::Unchanged));
    }

    #[test]
    fn fields_owned_by_others_do_not_count_as_a_change() {
        let (mut apps, secrets) = applied_objects(&[wanted("shop", "p")]);
        apps[0].spec.encode_url = Some(true);
        apps[0].spec.tenant = Some("t".into());
        apps[0].status = Some(Default::default());
        let state = summarize(&apps, secrets);
        assert_eq!(planned(vec![wanted("shop", "p")], &state).writes(), 0);
    }

    #[test]
    fn a_changed_credential_updates_only_the_secret() {
        let state = applied(&[wanted("shop", "old")]);
        let plan = planned(vec![wanted("shop", "new")], &state);
        let app = &plan.applications[0];
        assert_eq!(app.action, ApplicationAction::Unchanged);
        assert!(
            matches!(&app.secrets[..], [SecretAction::Update(s)] if s.data().get("password") == Some(&b"new"[..]))
        );
    }

    #[test]
    fn a_changed_application_is_updated() {
        let state = applied(&[wanted("shop", "p")]);
        let mut changed = director_app("shop", "p");
        changed.description = Some("new text".into());
        let plan = planned(vec![to_wanted_application(&changed, &settings())], &state);
        assert!(
            matches!(&plan.applications[0].action, ApplicationAction::Update(app) if app.unpack().unwrap().spec.description == "new text")
        );
        assert!(plan.applications[0].secrets.is_empty());
    }

    #[test]
    fn a_secret_no_longer_referred_to_is_deleted() {
        let state = applied(&[wanted("shop", "p")]);
        let mut without_credentials = director_app("shop", "p");
        without_credentials.bundles[0].default_instance_auth = None;
        let plan = planned(
            vec![to_wanted_application(&without_credentials, &settings())],
            &state,
        );
        let app = &plan.applications[0];
        assert!(matches!(app.action, ApplicationAction::Update(_)));
        assert_eq!(
            app.secrets,
            vec![SecretAction::Delete("shop-shop-bundle".into())]
        );
    }

    #[test]
    fn an_application_gone_from_the_director_is_deleted_with_its_secrets() {
        let state = applied(&[wanted("shop", "p"), wanted("crm", "p")]);
        let plan = planned(vec![wanted("shop", "p")], &state);
        let deleted: Vec<_> = plan
            .applications
            .iter()
            .filter(|a| a.action == ApplicationAction::Delete)
            .collect();
        assert_eq!(deleted.len(), 1);
        assert_eq!(deleted[0].name, "crm");
        assert_eq!(
            deleted[0].secrets,
            vec![SecretAction::Delete("crm-crm-bundle".into())]
        );
    }

    #[test]
    fn a_snapshot_that_did_not_come_whole_deletes_nothing_but_still_creates_and_updates() {
        let state = applied(&[wanted("shop", "p"), wanted("crm", "p")]);
        let plan = plan(
            vec![wanted("shop", "changed"), wanted("erp", "p")],
            &state,
            Deletions::Skipped,
        );
        let actions: BTreeMap<&str, &ApplicationAction> = plan
            .applications
            .iter()
            .map(|a| (a.name.as_str(), &a.action))
            .collect();
        assert!(!actions.contains_key("crm"), "crm is kept: {plan:?}");
        assert!(plan
            .applications
            .iter()
            .all(|a| a.action != ApplicationAction::Delete
                && a.secrets
                    .iter()
                    .all(|s| !matches!(s, SecretAction::Delete(_)))));
        assert!(
            plan.writes() >= 2,
            "erp created, shop's Secret updated: {plan:?}"
        );
    }

    #[test]
    fn applications_without_compass_metadata_are_never_touched() {
        let mut state = applied(&[]);
        let mut foreign = Application::new("foreign", ApplicationSpec::default());
        foreign.metadata.uid = Some("u".into());
        state
            .applications
            .push(Arc::new(ActualApplication::from(&foreign)));
        let plan_without = planned(Vec::<WantedApplication>::new(), &state);
        assert!(plan_without.applications.is_empty(), "{plan_without:?}");
        // Even when the Director has an application of the same name.
        foreign.metadata.name = Some("shop".into());
        let state = summarize(&[foreign], vec![]);
        let plan = planned(vec![wanted("shop", "p")], &state);
        assert!(
            matches!(&plan.applications[0].action, ApplicationAction::Refused(m) if m.contains("not managed"))
        );
        assert_eq!(plan.writes(), 0);
    }

    #[test]
    fn every_application_of_a_duplicate_name_is_refused_so_no_winner_can_flip() {
        let mut second = director_app("shop", "b");
        second.id = "shop-id-2".into();
        let duplicates = || {
            vec![
                wanted("shop", "a"),
                to_wanted_application(&second, &settings()),
                wanted("crm", "p"),
            ]
        };
        let plan = planned(duplicates(), &ActualState::default());
        for app in plan.applications.iter().filter(|a| a.name == "shop") {
            assert!(
                matches!(&app.action, ApplicationAction::Refused(m) if m.contains("2 Director applications") && m.contains("shop-id-2")),
                "{:?}",
                app.action
            );
        }
        let crm = plan.applications.iter().find(|a| a.name == "crm").unwrap();
        assert!(
            matches!(crm.action, ApplicationAction::Create(_)),
            "the others are synchronized"
        );
        assert_eq!(plan.writes(), 2, "crm and its Secret only");

        // An Application of that name from an earlier sync is neither
        // updated nor deleted meanwhile, whichever order the Director answers in.
        let state = applied(&[wanted("shop", "a")]);
        for mut order in [duplicates(), duplicates().into_iter().rev().collect()] {
            order.retain(|w| w.application.metadata.name.as_deref() == Some("shop"));
            let plan = planned(order, &state);
            assert_eq!(plan.writes(), 0, "{plan:?}");
        }
    }

    fn normalized(app: &model::Application) -> WantedApplication {
        let settings = ConversionSettings {
            normalize_application_names: true,
            ..settings()
        };
        to_wanted_application(app, &settings)
    }

    #[test]
    fn an_application_under_its_old_name_is_replaced_once_the_new_one_is_written() {
        // Named as the Director names it (isNormalized "true"), then normalized.
        let state = applied(&[wanted("shop", "p")]);
        let plan = planned(vec![normalized(&director_app("shop", "p"))], &state);
        assert_eq!(plan.applications.len(), 1, "no separate deletion: {plan:?}");
        let new = &plan.applications[0];
        assert_eq!(new.name, "mp-shop");
        assert!(matches!(new.action, ApplicationAction::Create(_)));
        assert!(
            matches!(&new.secrets[..], [SecretAction::Create(s)] if s.name() == "mp-shop-shop-bundle")
        );
        assert_eq!(
            new.replaces,
            vec![Replaced {
                name: "shop".into(),
                uid: Some("uid-0".into()),
                secrets: vec!["shop-shop-bundle".into()],
            }]
        );
        assert_eq!(plan.writes(), 4, "create two, delete two");
    }

    #[test]
    fn a_secret_both_names_share_after_the_cut_moves_to_the_new_application() {
        // Both names begin with the same 26 characters, so their credential
        // Secrets have the same name.
        let old_name = "mp-mp-mp-mp-mp-mp-mp-mp-mp-shop.v1";
        let mut app = director_app(old_name, "p");
        app.bundles[0].id = "6f2b6e2e-1b43-4e0a-a1c2-3f1b8a0c9d11".into();
        let state = applied(&[to_wanted_application(&app, &settings())]);
        let new = normalized(&app);
        assert_eq!(
            new.application.metadata.name.as_deref(),
            Some("mp-mp-mp-mp-mp-mp-mp-mp-mp-mp-shop-v1")
        );
        let shared = new.secrets[0].name().to_string();
        assert_eq!(state.secrets[0].name(), shared, "the same Secret name");
        let plan = planned(vec![new], &state);
        let new = &plan.applications[0];
        // Rewritten for its new owner (labels, owner reference), not deleted.
        assert!(matches!(&new.secrets[..], [SecretAction::Update(s)] if s.name() == shared));
        assert_eq!(
            new.replaces,
            vec![Replaced {
                name: old_name.into(),
                uid: Some("uid-0".into()),
                secrets: vec![],
            }]
        );
    }

    #[test]
    fn an_old_name_stays_while_the_new_one_cannot_be_written() {
        let state = applied(&[wanted("shop", "p")]);
        // The new name collides with another Director application's.
        let mut other = director_app("Shop", "q");
        other.id = "other-id".into();
        let plan = planned(
            vec![normalized(&director_app("shop", "p")), normalized(&other)],
            &state,
        );
        assert!(plan
            .applications
            .iter()
            .all(|a| matches!(a.action, ApplicationAction::Refused(_)) && a.replaces.is_empty()));
        assert_eq!(
            plan.writes(),
            0,
            "shop is neither replaced nor deleted: {plan:?}"
        );
    }

    #[test]
    fn an_application_gone_from_the_director_loses_no_secret_another_one_refers_to() {
        // Two names that share their first 26 characters, and a bundle id in
        // both: their credential Secrets have one name.
        let with_bundle = |name: &str, id: &str| {
            let mut app = director_app(name, "p");
            app.id = id.into();
            app.bundles[0].id = "6f2b6e2e-1b43-4e0a-a1c2-3f1b8a0c9d11".into();
            to_wanted_application(&app, &settings())
        };
        let gone = with_bundle("averyveryverylongapplicationname-one", "one");
        let kept = with_bundle("averyveryverylongapplicationname-two", "two");
        let shared = kept.secrets[0].name();
        assert_eq!(gone.secrets[0].name(), shared);
        let gone_name = gone.application.metadata.name.clone().unwrap();

        // The gone one owns the shared Secret: deleting it would let the
        // garbage collector take the Secret while the kept one's plan runs.
        let state = applied(std::slice::from_ref(&gone));
        let first = planned(vec![kept.clone()], &state);
        assert!(
            first
                .applications
                .iter()
                .all(|a| a.action != ApplicationAction::Delete),
            "{first:?}"
        );
        assert_eq!(
            first.deferred,
            vec![Deferred {
                name: gone_name.clone(),
                owned_secrets: vec![shared.to_string()]
            }]
        );
        let two = first
            .applications
            .iter()
            .find(|a| a.application_id == "two")
            .unwrap();
        assert!(matches!(&two.secrets[..], [SecretAction::Update(s)] if s.name() == shared));

        // Next cycle: the kept one wrote the Secret as its owner; now the gone
        // one goes, without it.
        let (mut apps, _) = applied_objects(&[gone, kept.clone()]);
        apps[1].metadata.uid = Some("uid-kept".into());
        let secrets = vec![secret_in_cluster(&kept.secrets[0], "uid-kept")];
        let state = summarize(&apps, secrets);
        let second = planned(vec![kept], &state);
        let deleted = second
            .applications
            .iter()
            .find(|a| a.action == ApplicationAction::Delete)
            .expect("the one gone from the Director is deleted now");
        assert_eq!(deleted.name, gone_name);
        assert!(deleted.secrets.is_empty(), "{deleted:?}");
        assert!(second.deferred.is_empty());
    }

    #[test]
    fn a_secret_that_is_not_the_agents_is_never_deleted() {
        let wanted_apps = [wanted("shop", "p")];
        let (apps, mut secrets) = applied_objects(&wanted_apps);
        // Referred to by the Application, read by name, but someone else's:
        // no labels at all, or only the bundleId label.
        for labels in [
            BTreeMap::new(),
            BTreeMap::from([("bundleId".to_string(), "shop-bundle".to_string())]),
        ] {
            secrets[0].metadata.labels = Some(labels);
            let state = summarize(&apps, secrets.clone());
            // Gone from the Director: the Application goes, the Secret stays.
            let gone = planned(Vec::<WantedApplication>::new(), &state);
            assert_eq!(gone.applications[0].action, ApplicationAction::Delete);
            assert!(gone.applications[0].secrets.is_empty(), "{gone:?}");
            // Without credentials now: the Secret is not stale, it is not ours.
            let mut without = director_app("shop", "p");
            without.bundles[0].default_instance_auth = None;
            let changed = planned(vec![to_wanted_application(&without, &settings())], &state);
            assert!(
                changed.applications[0]
                    .secrets
                    .iter()
                    .all(|s| !matches!(s, SecretAction::Delete(_))),
                "{changed:?}"
            );
        }
    }

    #[test]
    fn with_deletions_skipped_not_even_a_stale_secret_is_deleted() {
        let state = applied(&[wanted("shop", "p")]);
        let mut without = director_app("shop", "p");
        without.bundles[0].default_instance_auth = None;
        let wanted_now = || vec![to_wanted_application(&without, &settings())];
        let stale = |plan: &Plan| {
            plan.applications[0]
                .secrets
                .iter()
                .filter(|s| matches!(s, SecretAction::Delete(_)))
                .count()
        };
        assert_eq!(stale(&plan(wanted_now(), &state, Deletions::Allowed)), 1);
        assert_eq!(stale(&plan(wanted_now(), &state, Deletions::Skipped)), 0);
    }

    #[test]
    fn names_kubernetes_would_refuse_are_refused_before_any_write() {
        let plan = planned(vec![wanted("My Shop", "p")], &ActualState::default());
        assert!(
            matches!(&plan.applications[0].action, ApplicationAction::Refused(m) if m.contains("not a valid Kubernetes object name")),
            "{plan:?}"
        );
        assert_eq!(plan.writes(), 0);
        let long = format!("mp-{}", "a".repeat(70));
        let plan = planned(vec![wanted(&long, "p")], &ActualState::default());
        assert!(
            matches!(&plan.applications[0].action, ApplicationAction::Refused(m) if m.contains("at most 63")),
            "{plan:?}"
        );
    }

    #[test]
    fn a_secret_of_the_wanted_name_that_is_not_the_agents_is_left_alone() {
        let wanted_apps = [wanted("shop", "p")];
        let (_, mut secrets) = applied_objects(&wanted_apps);
        secrets[0].metadata.labels = Some(BTreeMap::from([(
            "owner".to_string(),
            "someone-else".to_string(),
        )]));
        let state = summarize(&[], secrets.clone());
        let plan = planned(vec![wanted("shop", "p")], &state);
        assert!(
            matches!(&plan.applications[0].action, ApplicationAction::Refused(m) if m.contains("not the agent's")),
            "{plan:?}"
        );
        assert_eq!(plan.writes(), 0, "neither the Application nor the Secret");
        // The Go agent's credential Secrets (app and bundleId labels) are the agent's.
        secrets[0].metadata.labels = Some(BTreeMap::from([
            ("app".to_string(), "shop".to_string()),
            ("bundleId".to_string(), "shop-bundle".to_string()),
        ]));
        let state = summarize(&[], secrets);
        let plan = planned(vec![wanted("shop", "p")], &state);
        assert!(matches!(
            plan.applications[0].action,
            ApplicationAction::Create(_)
        ));
    }

    /// `wanted` as the Go agent's `makeSecret` writes it for the Application
    /// `app` of uid `owner_uid`: labels `app` and `bundleId`, no annotation,
    /// one owner reference, the data (and `type` as the apiserver defaults it).
    fn go_secret_in_cluster(wanted: &WantedSecret, app: &str, owner_uid: &str) -> Secret {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": wanted.name(),
                "labels": {"app": wanted.app(), "bundleId": wanted.bundle_id()},
                "ownerReferences": [{
                    "apiVersion": "applicationconnector.kyma-project.io/v1alpha1",
                    "kind": "Application", "name": app, "uid": owner_uid
                }]
            },
            "type": "Opaque",
            "data": wanted.data().iter().map(|(key, value)| {
                use base64::Engine;
                (key.to_string(), base64::engine::general_purpose::STANDARD.encode(value))
            }).collect::<BTreeMap<_, _>>()
        }))
        .unwrap()
    }

    #[test]
    fn a_secret_exactly_as_the_go_agent_writes_it_is_not_rewritten() {
        let wanted_apps = [wanted("shop", "p")];
        let (apps, _) = applied_objects(&wanted_apps);
        let secret = go_secret_in_cluster(&wanted_apps[0].secrets[0], "shop", "uid-0");
        // What the agent writes is the same object.
        assert_eq!(
            wanted_apps[0].secrets[0].labels(),
            secret.metadata.labels.clone().unwrap()
        );
        let state = summarize(&apps, vec![secret]);
        let plan = planned(vec![wanted("shop", "p")], &state);
        assert_eq!(plan.writes(), 0, "{plan:?}");
        // Its data is still compared.
        let plan = planned(vec![wanted("shop", "changed")], &state);
        assert!(
            matches!(plan.applications[0].secrets[..], [SecretAction::Update(_)]),
            "{plan:?}"
        );
    }

    #[test]
    fn a_secret_of_an_earlier_release_is_rewritten_only_when_its_data_differs() {
        let wanted_apps = [wanted("shop", "p")];
        let (apps, _) = applied_objects(&wanted_apps);
        let wanted_secret = &wanted_apps[0].secrets[0];
        // Written by an earlier release: the managed-by label and a digest
        // annotation besides the Go agent's labels.
        let earlier = |data_of: &WantedSecret| {
            let mut secret = go_secret_in_cluster(data_of, "shop", "uid-0");
            secret.metadata.labels.as_mut().unwrap().insert(
                "applicationconnector.kyma-project.io/managed-by".into(),
                "compass-runtime-agent".into(),
            );
            secret.metadata.annotations = Some(BTreeMap::from([(
                "compass-runtime-agent.kyma-project.io/data-hash".to_string(),
                wanted_secret.data_hash().to_string(),
            )]));
            secret
        };
        let state = summarize(&apps, vec![earlier(wanted_secret)]);
        assert_eq!(
            planned(vec![wanted("shop", "p")], &state).writes(),
            0,
            "the extra label and annotation are no reason to write"
        );
        // The data edited by hand since: the annotation does not stand for it.
        let edited = wanted("shop", "edited by hand");
        let state = summarize(&apps, vec![earlier(&edited.secrets[0])]);
        let plan = planned(vec![wanted("shop", "p")], &state);
        assert!(
            matches!(plan.applications[0].secrets[..], [SecretAction::Update(_)]),
            "{plan:?}"
        );
    }

    #[test]
    fn secrets_the_go_agent_labelled_for_an_application_go_with_it() {
        let wanted_apps = [wanted("shop", "p")];
        let (apps, mut secrets) = applied_objects(&wanted_apps);
        // Left by the Go agent for a bundle the Application no longer has
        // (nothing refers to it), and one of someone else's with only an
        // `app` label.
        let old_bundle = wanted_apps[0].secrets[0].renamed("shop-old-bundle", "old-bundle");
        secrets.push(go_secret_in_cluster(&old_bundle, "shop", "uid-0"));
        let mut foreign = go_secret_in_cluster(&old_bundle, "shop", "uid-0");
        foreign.metadata.name = Some("shop-not-ours".into());
        foreign.metadata.labels = Some(BTreeMap::from([("app".into(), "shop".into())]));
        secrets.push(foreign);
        let state = summarize(&apps, secrets);

        let kept = planned(vec![wanted("shop", "p")], &state);
        assert_eq!(
            kept.applications[0].secrets,
            vec![SecretAction::Delete("shop-old-bundle".into())]
        );
        let gone = planned(Vec::<WantedApplication>::new(), &state);
        assert_eq!(gone.applications[0].action, ApplicationAction::Delete);
        assert_eq!(
            gone.applications[0].secrets,
            vec![
                SecretAction::Delete("shop-old-bundle".into()),
                SecretAction::Delete("shop-shop-bundle".into()),
            ]
        );
    }

    /// Each application compared with `state` as it arrives, as the sync does.
    pub(in crate::sync) fn on_arrival(
        wanted: &[WantedApplication],
        state: &ActualState,
    ) -> Vec<HeldApplication> {
        let index = ActualIndex::new(state);
        wanted
            .iter()
            .cloned()
            .map(|w| {
                let owned = OwnedDigest::of(&w.application.spec);
                hold(w, owned, Some(&index), &mut Packer::default())
            })
            .collect()
    }

    #[test]
    fn an_application_the_cluster_holds_keeps_only_its_names_and_plans_the_same() {
        let wanted_apps = [wanted("shop", "p"), wanted("crm", "p")];
        let state = applied(&wanted_apps);
        let arrived = on_arrival(&wanted_apps, &state);
        assert!(arrived.iter().all(HeldApplication::is_settled));
        assert_eq!(
            arrived[0].secret_names().collect::<Vec<_>>(),
            ["shop-shop-bundle"]
        );
        assert_eq!(
            plan(arrived, &state, Deletions::Allowed),
            planned(wanted_apps.to_vec(), &state)
        );
        // Settling later (an application that came before the cluster was
        // read) comes to the same.
        let index = ActualIndex::new(&state);
        let late = settle(HeldApplication::from(wanted("shop", "p")), &index);
        assert!(late.is_settled());
        assert_eq!(late, on_arrival(&[wanted("shop", "p")], &state)[0]);
    }

    #[test]
    fn an_application_or_secret_that_differs_is_kept_whole_for_its_write() {
        let state = applied(&[wanted("shop", "old"), wanted("crm", "p")]);
        let mut changed = director_app("crm", "p");
        changed.description = Some("new text".into());
        let wanted_apps = [
            wanted("shop", "new"),
            to_wanted_application(&changed, &settings()),
            wanted("hr", "p"),
        ];
        let arrived = on_arrival(&wanted_apps, &state);
        assert!(arrived.iter().all(|a| !a.is_settled()), "{arrived:?}");
        let plan = plan(arrived, &state, Deletions::Allowed);
        assert_eq!(plan, planned(wanted_apps.to_vec(), &state));
        assert_eq!(plan.writes(), 1 + 1 + 2, "{plan:?}");
    }

    #[test]
    fn settled_applications_still_lose_stale_secrets_and_keep_shared_ones() {
        // shop holds a stale Secret the Go agent labelled for it; crm, gone
        // from the Director, owns a Secret that shop refers to.
        let wanted_apps = [wanted("shop", "p")];
        let (mut apps, mut secrets) = applied_objects(&[wanted("shop", "p"), wanted("crm", "p")]);
        let old_bundle = wanted_apps[0].secrets[0].renamed("shop-old-bundle", "old-bundle");
        secrets.push(go_secret_in_cluster(&old_bundle, "shop", "uid-0"));
        apps[1].spec.services[0].entries[0]
            .credentials
            .as_mut()
            .unwrap()
            .secret_name = "shop-shop-bundle".into();
        let state = summarize(&apps, secrets);

        let arrived = on_arrival(&wanted_apps, &state);
        assert!(arrived[0].is_settled());
        let plan = plan(arrived, &state, Deletions::Allowed);
        assert_eq!(plan, planned(wanted_apps.to_vec(), &state));
        assert_eq!(
            plan.applications[0].secrets,
            vec![SecretAction::Delete("shop-old-bundle".into())]
        );
        let crm = &plan.applications[1];
        assert_eq!(crm.action, ApplicationAction::Delete);
        assert!(
            !crm.secrets
                .iter()
                .any(|s| s.secret_name() == "shop-shop-bundle"),
            "{crm:?}"
        );
    }

    #[test]
    fn an_application_that_did_not_come_whole_is_never_settled() {
        let state = applied(&[wanted("shop", "p")]);
        let incomplete =
            HeldApplication::from(wanted("shop", "p")).incomplete(Some("a page was lost".into()));
        let index = ActualIndex::new(&state);
        assert!(!settle(incomplete, &index).is_settled());
    }

    #[test]
    fn duplicate_names_are_refused_whether_settled_or_not() {
        let state = applied(&[wanted("shop", "p")]);
        let mut twin = director_app("shop", "p");
        twin.id = "another-id".into();
        let wanted_apps = [
            wanted("shop", "p"),
            to_wanted_application(&twin, &settings()),
        ];
        let plan = plan(on_arrival(&wanted_apps, &state), &state, Deletions::Allowed);
        assert_eq!(plan, planned(wanted_apps.to_vec(), &state));
        assert!(plan
            .applications
            .iter()
            .all(|a| matches!(a.action, ApplicationAction::Refused(_))));
    }

    #[test]
    fn a_secret_without_its_owner_reference_is_repaired() {
        let (apps, mut secrets) = applied_objects(&[wanted("shop", "p")]);
        secrets[0].metadata.owner_references = None;
        let state = summarize(&apps, secrets);
        let plan = planned(vec![wanted("shop", "p")], &state);
        assert!(matches!(
            plan.applications[0].secrets[..],
            [SecretAction::Update(_)]
        ));
    }

    #[test]
    fn an_application_that_lost_its_managed_by_label_is_updated() {
        let (mut apps, secrets) = applied_objects(&[wanted("shop", "p")]);
        apps[0].metadata.labels = None;
        let state = summarize(&apps, secrets);
        let plan = planned(vec![wanted("shop", "p")], &state);
        assert!(matches!(
            plan.applications[0].action,
            ApplicationAction::Update(_)
        ));
    }
}
