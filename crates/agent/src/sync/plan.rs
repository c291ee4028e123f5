//! The sync plan: what to create, update and delete so that the cluster holds
//! what the Director assigns, as data. Pure, so that "an unchanged sync writes
//! nothing" and "someone else's Application is never touched" are unit facts.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use super::convert::{WantedApplication, WantedSecret, DATA_HASH_ANNOTATION, SECRET_APP_LABEL};
use crate::k8s::crd::application::{
    Application, ApplicationSpec, MANAGED_BY_LABEL, MANAGED_BY_VALUE,
};

/// What the cluster holds now.
#[derive(Clone, Debug, Default)]
pub struct ActualState {
    /// Every Application in the cluster, ours or not.
    pub applications: Vec<Application>,
    /// The Secrets in the integration namespace that look like credential or
    /// request-parameter Secrets (they carry the `bundleId` label).
    pub secrets: Vec<Secret>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ApplicationAction {
    Create(Box<Application>),
    Update(Box<Application>),
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
pub fn plan(wanted: Vec<WantedApplication>, actual: &ActualState) -> Plan {
    let actual_apps: BTreeMap<&str, &Application> = actual
        .applications
        .iter()
        .filter_map(|app| app.metadata.name.as_deref().map(|name| (name, app)))
        .collect();
    let actual_secrets: BTreeMap<&str, &Secret> = actual
        .secrets
        .iter()
        .filter_map(|secret| secret.metadata.name.as_deref().map(|name| (name, secret)))
        .collect();
    let labelled = secrets_by_labelled_app(&actual.secrets);

    let mut plans = Vec::new();
    let mut wanted_names = BTreeSet::new();
    for wanted_app in wanted {
        let name = wanted_app.application.name_any();
        let application_id = wanted_app
            .application
            .spec
            .compass_metadata
            .as_ref()
            .map(|m| m.application_id.clone())
            .unwrap_or_default();
        if !wanted_names.insert(name.clone()) {
            plans.push(ApplicationPlan {
                name: name.clone(),
                application_id,
                action: ApplicationAction::Conflict(format!(
                    "the Director has more than one application named {name:?}; only the first is synchronized"
                )),
                existing_uid: None,
                secrets: Vec::new(),
            });
            continue;
        }
        plans.push(plan_wanted(
            wanted_app,
            name,
            application_id,
            &actual_apps,
            &actual_secrets,
            &labelled,
        ));
    }

    for (name, app) in &actual_apps {
        if wanted_names.contains(*name) || !app.is_managed_by_compass() {
            continue;
        }
        let secrets = referenced_secrets(app)
            .into_iter()
            .chain(labelled.get(*name).cloned().unwrap_or_default())
            .filter(|secret| actual_secrets.contains_key(secret.as_str()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(SecretAction::Delete)
            .collect();
        plans.push(ApplicationPlan {
            name: name.to_string(),
            application_id: app
                .spec
                .compass_metadata
                .as_ref()
                .map(|m| m.application_id.clone())
                .unwrap_or_default(),
            action: ApplicationAction::Delete,
            existing_uid: app.metadata.uid.clone(),
            secrets,
        });
    }
    Plan {
        applications: plans,
    }
}

fn plan_wanted(
    wanted_app: WantedApplication,
    name: String,
    application_id: String,
    actual_apps: &BTreeMap<&str, &Application>,
    actual_secrets: &BTreeMap<&str, &Secret>,
    labelled: &BTreeMap<&str, Vec<String>>,
) -> ApplicationPlan {
    let existing = actual_apps.get(name.as_str()).copied();
    let action = match existing {
        None => ApplicationAction::Create(Box::new(wanted_app.application)),
        Some(app) if !app.is_managed_by_compass() => {
            return ApplicationPlan {
                name: name.clone(),
                application_id,
                action: ApplicationAction::Conflict(format!(
                    "an Application named {name:?} exists and is not managed by Compass; it is left alone"
                )),
                existing_uid: None,
                secrets: Vec::new(),
            };
        }
        Some(app) if owned_fields_differ(&wanted_app.application, app) => {
            ApplicationAction::Update(Box::new(wanted_app.application))
        }
        Some(_) => ApplicationAction::Unchanged,
    };
    let existing_uid = existing.and_then(|app| app.metadata.uid.clone());

    let mut secrets = Vec::new();
    let wanted_secret_names: BTreeSet<String> =
        wanted_app.secrets.iter().map(|s| s.name.clone()).collect();
    for secret in wanted_app.secrets {
        match actual_secrets.get(secret.name.as_str()) {
            None => secrets.push(SecretAction::Create(secret)),
            Some(actual) if secret_differs(&secret, actual, existing_uid.as_deref()) => {
                secrets.push(SecretAction::Update(secret))
            }
            Some(_) => {}
        }
    }
    if let Some(app) = existing {
        let stale: BTreeSet<String> = referenced_secrets(app)
            .into_iter()
            .chain(labelled.get(name.as_str()).cloned().unwrap_or_default())
            .filter(|secret| {
                !wanted_secret_names.contains(secret)
                    && actual_secrets.contains_key(secret.as_str())
            })
            .collect();
        secrets.extend(stale.into_iter().map(SecretAction::Delete));
    }
    ApplicationPlan {
        name,
        application_id,
        action,
        existing_uid,
        secrets,
    }
}

/// Only the fields the agent writes count; others (e.g. `encodeUrl`, which the
/// original CRD defaults, or a `status`) are someone else's.
fn owned_fields_differ(wanted: &Application, actual: &Application) -> bool {
    let managed_label = actual
        .metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(MANAGED_BY_LABEL))
        .map(String::as_str);
    managed_label != Some(MANAGED_BY_VALUE) || owned_spec(&wanted.spec) != owned_spec(&actual.spec)
}

type OwnedSpec<'a> = (
    &'a str,
    bool,
    Option<&'a BTreeMap<String, String>>,
    &'a [crate::k8s::crd::application::Service],
    Option<&'a crate::k8s::crd::application::CompassMetadata>,
);

fn owned_spec(spec: &ApplicationSpec) -> OwnedSpec<'_> {
    (
        &spec.description,
        spec.skip_verify,
        spec.labels.as_ref(),
        &spec.services,
        spec.compass_metadata.as_ref(),
    )
}

fn secret_differs(wanted: &WantedSecret, actual: &Secret, owner_uid: Option<&str>) -> bool {
    let recorded_hash = actual
        .metadata
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(DATA_HASH_ANNOTATION));
    let data_matches = match recorded_hash {
        // Written by this agent: the digest tells, no data needed.
        Some(hash) => *hash == wanted.data_hash(),
        // Written by someone else (e.g. the Go agent): compare the data.
        None => {
            let actual_data: BTreeMap<&str, &[u8]> = actual
                .data
                .iter()
                .flatten()
                .map(|(key, value)| (key.as_str(), value.0.as_slice()))
                .collect();
            let wanted_data: BTreeMap<&str, &[u8]> = wanted
                .data
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_slice()))
                .collect();
            actual_data == wanted_data
        }
    };
    let labels = actual.metadata.labels.clone().unwrap_or_default();
    let labels_match = wanted
        .labels
        .iter()
        .all(|(key, value)| labels.get(key) == Some(value));
    let owned_by_app = match owner_uid {
        Some(uid) => actual
            .owner_references()
            .iter()
            .any(|owner| owner.uid == uid),
        None => false,
    };
    !data_matches || !labels_match || !owned_by_app
}

/// The Secrets an Application's entries point at.
fn referenced_secrets(app: &Application) -> BTreeSet<String> {
    app.spec
        .services
        .iter()
        .flat_map(|service| &service.entries)
        .flat_map(|entry| {
            let credentials = entry.credentials.as_ref().map(|c| c.secret_name.clone());
            let parameters =
                Some(entry.request_parameters_secret_name.clone()).filter(|name| !name.is_empty());
            credentials.into_iter().chain(parameters)
        })
        .filter(|name| !name.is_empty())
        .collect()
}

/// The Secrets the agent made for each application (by label), found even
/// when the Application no longer points at them (e.g. after a failed earlier
/// sync). Built once per plan: a lookup per application would be quadratic.
fn secrets_by_labelled_app(secrets: &[Secret]) -> BTreeMap<&str, Vec<String>> {
    let mut by_app: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for secret in secrets {
        let labels = secret.metadata.labels.as_ref();
        let label = |key: &str| labels.and_then(|l| l.get(key)).map(String::as_str);
        if label(MANAGED_BY_LABEL) != Some(MANAGED_BY_VALUE) {
            continue;
        }
        if let (Some(app), Some(name)) = (label(SECRET_APP_LABEL), secret.metadata.name.clone()) {
            by_app.entry(app).or_default().push(name);
        }
    }
    by_app
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compass::model::{self, Auth, Credential};
    use crate::sync::convert::{to_wanted_application, ConversionSettings};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use k8s_openapi::ByteString;

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

    /// The cluster as it is after applying `wanted` (with uids, as the apiserver sets).
    fn applied(wanted: &[WantedApplication]) -> ActualState {
        let mut state = ActualState::default();
        for (i, w) in wanted.iter().enumerate() {
            let mut app = w.application.clone();
            let uid = format!("uid-{i}");
            app.metadata.uid = Some(uid.clone());
            state.applications.push(app);
            for s in &w.secrets {
                state.secrets.push(secret_in_cluster(s, &uid));
            }
        }
        state
    }

    fn secret_in_cluster(wanted: &WantedSecret, owner_uid: &str) -> Secret {
        let mut secret = Secret::default();
        secret.metadata.name = Some(wanted.name.clone());
        secret.metadata.labels = Some(wanted.labels.clone());
        secret.metadata.owner_references = Some(vec![OwnerReference {
            uid: owner_uid.into(),
            ..OwnerReference::default()
        }]);
        secret.data = Some(
            wanted
                .data
                .iter()
                .map(|(k, v)| (k.clone(), ByteString(v.clone())))
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
        let mut state = applied(&[wanted("shop", "p")]);
        state.applications[0].spec.encode_url = Some(true);
        state.applications[0].spec.tenant = Some("t".into());
        state.applications[0].status = Some(Default::default());
        assert_eq!(plan(vec![wanted("shop", "p")], &state).writes(), 0);
    }

    #[test]
    fn a_changed_credential_updates_only_the_secret() {
        let state = applied(&[wanted("shop", "old")]);
        let plan = plan(vec![wanted("shop", "new")], &state);
        let app = &plan.applications[0];
        assert_eq!(app.action, ApplicationAction::Unchanged);
        assert!(
            matches!(&app.secrets[..], [SecretAction::Update(s)] if s.data["password"] == b"new")
        );
    }

    #[test]
    fn a_changed_application_is_updated() {
        let state = applied(&[wanted("shop", "p")]);
        let mut changed = director_app("shop", "p");
        changed.description = Some("new text".into());
        let plan = plan(vec![to_wanted_application(&changed, &settings())], &state);
        assert!(
            matches!(&plan.applications[0].action, ApplicationAction::Update(app) if app.spec.description == "new text")
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
        state.applications.push(foreign.clone());
        let plan_without = plan(vec![], &state);
        assert!(plan_without.applications.is_empty(), "{plan_without:?}");
        // Even when the Director has an application of the same name.
        foreign.metadata.name = Some("shop".into());
        let state = ActualState {
            applications: vec![foreign],
            secrets: vec![],
        };
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
        let mut state = applied(&wanted_apps);
        let hash = wanted_apps[0].secrets[0].data_hash();
        state.secrets[0].data = None;
        state.secrets[0].metadata.annotations =
            Some(BTreeMap::from([(DATA_HASH_ANNOTATION.to_string(), hash)]));
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
        let mut state = applied(&[wanted("shop", "p")]);
        state.secrets[0].metadata.owner_references = None;
        let plan = plan(vec![wanted("shop", "p")], &state);
        assert!(matches!(
            plan.applications[0].secrets[..],
            [SecretAction::Update(_)]
        ));
    }

    #[test]
    fn an_application_that_lost_its_managed_by_label_is_updated() {
        let mut state = applied(&[wanted("shop", "p")]);
        state.applications[0].metadata.labels = None;
        let plan = plan(vec![wanted("shop", "p")], &state);
        assert!(matches!(
            plan.applications[0].action,
            ApplicationAction::Update(_)
        ));
    }
}
