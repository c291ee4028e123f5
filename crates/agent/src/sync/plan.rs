//! The sync plan: what to create, update and delete so that the cluster holds
//! what the Director assigns, as data. Pure, so that "an unchanged sync writes
//! nothing" and "someone else's Application is never touched" are unit facts.

use std::collections::{BTreeMap, BTreeSet};

use super::actual::{ActualApplication, ActualSecret, ActualState};
use super::convert::{WantedSecret, SECRET_APP_LABEL};
use super::pending::{PackedApplication, PendingApplication};
use crate::k8s::crd::application::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};

#[derive(Clone, Debug, PartialEq)]
pub enum ApplicationAction {
    Create(PackedApplication),
    Update(PackedApplication),
    Delete,
    Unchanged,
    /// The Director has an application whose name is taken by an Application
    /// the agent does not manage (or by another Director application).
    Conflict(String),
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
            SecretAction::Create(secret) | SecretAction::Update(secret) => &secret.name,
            SecretAction::Delete(name) => name,
        }
    }
}

/// Everything to do for one Application; applied independently of the others.
#[derive(Clone, Debug, PartialEq)]
pub struct ApplicationPlan {
    pub name: String,
    pub application_id: String,
    pub action: ApplicationAction,
    /// The uid of the Application in the cluster, when it exists (owner of its Secrets).
    pub existing_uid: Option<String>,
    pub secrets: Vec<SecretAction>,
}

impl ApplicationPlan {
    /// The number of API writes this plan makes.
    pub fn writes(&self) -> usize {
        let application = match self.action {
            ApplicationAction::Create(_)
            | ApplicationAction::Update(_)
            | ApplicationAction::Delete => 1,
            ApplicationAction::Unchanged | ApplicationAction::Conflict(_) => 0,
        };
        application + self.secrets.len()
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub applications: Vec<ApplicationPlan>,
}

impl Plan {
    pub fn writes(&self) -> usize {
        self.applications.iter().map(ApplicationPlan::writes).sum()
    }
}

/// Compares what the Director wants with what the cluster has.
pub fn plan<W: Into<PendingApplication>>(
    wanted: impl IntoIterator<Item = W>,
    actual: &ActualState,
) -> Plan {
    let actual_apps: BTreeMap<&str, &ActualApplication> = actual
        .applications
        .iter()
        .map(|app| (app.name.as_str(), app.as_ref()))
        .collect();
    let actual_secrets: BTreeMap<&str, &ActualSecret> = actual
        .secrets
        .iter()
        .map(|secret| (secret.name.as_str(), secret))
        .collect();
    let labelled = secrets_by_labelled_app(&actual.secrets);

    let mut plans = Vec::new();
    let mut wanted_names = BTreeSet::new();
    for wanted_app in wanted {
        let wanted_app: PendingApplication = wanted_app.into();
        if !wanted_names.insert(wanted_app.name.clone()) {
            let name = wanted_app.name;
            plans.push(ApplicationPlan {
                action: ApplicationAction::Conflict(format!(
                    "the Director has more than one application named {name:?}; only the first is synchronized"
                )),
                name,
                application_id: wanted_app.application_id,
                existing_uid: None,
                secrets: Vec::new(),
            });
            continue;
        }
        plans.push(plan_wanted(
            wanted_app,
            &actual_apps,
            &actual_secrets,
            &labelled,
        ));
    }

    for (name, app) in &actual_apps {
        if wanted_names.contains(*name) || !app.is_managed_by_compass() {
            continue;
        }
        let secrets = app
            .referenced_secrets
            .iter()
            .map(String::as_str)
            .chain(labelled.get(*name).into_iter().flatten().copied())
            .filter(|secret| actual_secrets.contains_key(secret))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|secret| SecretAction::Delete(secret.to_string()))
            .collect();
        plans.push(ApplicationPlan {
            name: name.to_string(),
            application_id: app.compass_application_id.clone().unwrap_or_default(),
            action: ApplicationAction::Delete,
            existing_uid: app.uid.clone(),
            secrets,
        });
    }
    Plan {
        applications: plans,
    }
}

fn plan_wanted(
    wanted_app: PendingApplication,
    actual_apps: &BTreeMap<&str, &ActualApplication>,
    actual_secrets: &BTreeMap<&str, &ActualSecret>,
    labelled: &BTreeMap<&str, Vec<&str>>,
) -> ApplicationPlan {
    let PendingApplication {
        name,
        application_id,
        owned,
        application,
        secrets: wanted_secrets,
    } = wanted_app;
    let existing = actual_apps.get(name.as_str()).copied();
    let action = match existing {
        None => ApplicationAction::Create(application),
        Some(app) if !app.is_managed_by_compass() => {
            return ApplicationPlan {
                action: ApplicationAction::Conflict(format!(
                    "an Application named {name:?} exists and is not managed by Compass; it is left alone"
                )),
                name,
                application_id,
                existing_uid: None,
                secrets: Vec::new(),
            };
        }
        // Only the fields the agent writes count, and its managed-by label.
        Some(app) if !app.has_managed_by_label || app.owned != owned => {
            ApplicationAction::Update(application)
        }
        Some(_) => ApplicationAction::Unchanged,
    };
    let existing_uid = existing.and_then(|app| app.uid.clone());

    let mut secrets = Vec::new();
    let wanted_secret_names: BTreeSet<String> =
        wanted_secrets.iter().map(|s| s.name.clone()).collect();
    for secret in wanted_secrets {
        match actual_secrets.get(secret.name.as_str()) {
            None => secrets.push(SecretAction::Create(secret)),
            Some(actual) if secret_differs(&secret, actual, existing_uid.as_deref()) => {
                secrets.push(SecretAction::Update(secret))
            }
            Some(_) => {}
        }
    }
    if let Some(app) = existing {
        let stale: BTreeSet<&str> = app
            .referenced_secrets
            .iter()
            .map(String::as_str)
            .chain(labelled.get(name.as_str()).into_iter().flatten().copied())
            .filter(|secret| {
                !wanted_secret_names.contains(*secret) && actual_secrets.contains_key(secret)
            })
            .collect();
        secrets.extend(
            stale
                .into_iter()
                .map(|secret| SecretAction::Delete(secret.to_string())),
        );
    }
    ApplicationPlan {
        name,
        application_id,
        action,
        existing_uid,
        secrets,
    }
}

fn secret_differs(wanted: &WantedSecret, actual: &ActualSecret, owner_uid: Option<&str>) -> bool {
    // A digest recorded by this agent, or one of the data read in full.
    let data_matches = actual.data_hash.as_deref() == Some(wanted.data_hash().as_str());
    let labels_match = wanted
        .label_values()
        .iter()
        .all(|(key, value)| actual.label(key) == Some(*value));
    let owned_by_app = owner_uid.is_some_and(|uid| actual.is_owned_by(uid));
    !data_matches || !labels_match || !owned_by_app
}

/// The Secrets the agent made for each application (by label), found even
/// when the Application no longer points at them (e.g. after a failed earlier
/// sync). Built once per plan: a lookup per application would be quadratic.
fn secrets_by_labelled_app(secrets: &[ActualSecret]) -> BTreeMap<&str, Vec<&str>> {
    let mut by_app: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for secret in secrets {
        if secret.label(MANAGED_BY_LABEL) != Some(MANAGED_BY_VALUE) {
            continue;
        }
        if let Some(app) = secret.label(SECRET_APP_LABEL) {
            by_app.entry(app).or_default().push(&secret.name);
        }
    }
    by_app
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compass::model::{self, Auth, Credential};
    use crate::k8s::crd::application::{Application, ApplicationSpec};
    use crate::sync::convert::{
        to_wanted_application, ConversionSettings, WantedApplication, DATA_HASH_ANNOTATION,
    };
    use k8s_openapi::api::core::v1::Secret;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use k8s_openapi::ByteString;
    use std::sync::Arc;

    fn settings() -> ConversionSettings {
        ConversionSettings {
            central_gateway_url: "http://gateway:8082".into(),
            skip_apps_tls_verify: false,
        }
    }

    fn director_app(name: &str, password: &str) -> model::Application {
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

    fn wanted(name: &str, password: &str) -> WantedApplication {
        to_wanted_application(&director_app(name, password), &settings())
    }

    /// The objects in the cluster after applying `wanted` (with uids, as the apiserver sets).
    fn applied_objects(wanted: &[WantedApplication]) -> (Vec<Application>, Vec<Secret>) {
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
    fn summarize(apps: &[Application], secrets: Vec<Secret>) -> ActualState {
        ActualState {
            applications: apps
                .iter()
                .map(|app| Arc::new(ActualApplication::from(app)))
                .collect(),
            secrets: secrets.into_iter().map(ActualSecret::from).collect(),
        }
    }

    fn applied(wanted: &[WantedApplication]) -> ActualState {
        let (apps, secrets) = applied_objects(wanted);
        summarize(&apps, secrets)
    }

    fn secret_in_cluster(wanted: &WantedSecret, owner_uid: &str) -> Secret {
        let mut secret = Secret::default();
        secret.metadata.name = Some(wanted.name.clone());
        secret.metadata.labels = Some(wanted.labels());
        secret.metadata.owner_references = Some(vec![OwnerReference {
            uid: owner_uid.into(),
            ..OwnerReference::default()
        }]);
        secret.data = Some(
            wanted
                .data
                .iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                .collect(),
        );
        secret
    }

    #[test]
    fn an_empty_cluster_gets_every_application_and_secret_created() {
        let plan = plan(
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
        let plan = plan(vec![wanted("shop", "p"), wanted("crm", "p")], &state);
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
        assert_eq!(plan(vec![wanted("shop", "p")], &state).writes(), 0);
    }

    #[test]
    fn a_changed_credential_updates_only_the_secret() {
        let state = applied(&[wanted("shop", "old")]);
        let plan = plan(vec![wanted("shop", "new")], &state);
        let app = &plan.applications[0];
        assert_eq!(app.action, ApplicationAction::Unchanged);
        assert!(
            matches!(&app.secrets[..], [SecretAction::Update(s)] if &s.data["password"] == b"new")
        );
    }

    #[test]
    fn a_changed_application_is_updated() {
        let state = applied(&[wanted("shop", "p")]);
        let mut changed = director_app("shop", "p");
        changed.description = Some("new text".into());
        let plan = plan(vec![to_wanted_application(&changed, &settings())], &state);
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
        let plan = plan(
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
        let plan = plan(vec![wanted("shop", "p")], &state);
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
    fn applications_without_compass_metadata_are_never_touched() {
        let mut state = applied(&[]);
        let mut foreign = Application::new("foreign", ApplicationSpec::default());
        foreign.metadata.uid = Some("u".into());
        state
            .applications
            .push(Arc::new(ActualApplication::from(&foreign)));
        let plan_without = plan(Vec::<WantedApplication>::new(), &state);
        assert!(plan_without.applications.is_empty(), "{plan_without:?}");
        // Even when the Director has an application of the same name.
        foreign.metadata.name = Some("shop".into());
        let state = summarize(&[foreign], vec![]);
        let plan = plan(vec![wanted("shop", "p")], &state);
        assert!(
            matches!(&plan.applications[0].action, ApplicationAction::Conflict(m) if m.contains("not managed"))
        );
        assert_eq!(plan.writes(), 0);
    }

    #[test]
    fn duplicate_director_names_are_a_conflict_not_a_flip_flop() {
        let plan = plan(
            vec![wanted("shop", "a"), wanted("shop", "b")],
            &ActualState::default(),
        );
        assert!(matches!(
            plan.applications[0].action,
            ApplicationAction::Create(_)
        ));
        assert!(
            matches!(&plan.applications[1].action, ApplicationAction::Conflict(m) if m.contains("more than one"))
        );
    }

    #[test]
    fn a_recorded_data_hash_stands_for_the_data() {
        let wanted_apps = [wanted("shop", "p")];
        let (apps, mut secrets) = applied_objects(&wanted_apps);
        let hash = wanted_apps[0].secrets[0].data_hash();
        secrets[0].data = None;
        secrets[0].metadata.annotations =
            Some(BTreeMap::from([(DATA_HASH_ANNOTATION.to_string(), hash)]));
        let state = summarize(&apps, secrets);
        assert_eq!(
            plan(vec![wanted("shop", "p")], &state).writes(),
            0,
            "the same hash is no change"
        );
        let plan = plan(vec![wanted("shop", "changed")], &state);
        assert!(
            matches!(plan.applications[0].secrets[..], [SecretAction::Update(_)]),
            "another hash is a change"
        );
    }

    #[test]
    fn a_secret_without_its_owner_reference_is_repaired() {
        let (apps, mut secrets) = applied_objects(&[wanted("shop", "p")]);
        secrets[0].metadata.owner_references = None;
        let state = summarize(&apps, secrets);
        let plan = plan(vec![wanted("shop", "p")], &state);
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
        let plan = plan(vec![wanted("shop", "p")], &state);
        assert!(matches!(
            plan.applications[0].action,
            ApplicationAction::Update(_)
        ));
    }
}
