//! The sync plan (`sync::plan`) for a random Director snapshot against a
//! random, non-empty cluster: what decides deletions.
//!
//! Input: bytes, decoded with `arbitrary::Unstructured` into
//! - a snapshot: up to 6 Director applications (names, ids and bundle ids
//!   from small pools so that they collide; Basic, OAuth or no credentials,
//!   request parameters or none), converted with `to_wanted_application`
//!   (names normalized or not), some marked as not whole (`incomplete`);
//! - a cluster: up to 8 objects, each an Application as an earlier sync wrote
//!   it (of one of the snapshot's applications, possibly under its other name,
//!   or of another; with or without `compassMetadata`, uid, managed-by label,
//!   changed fields) together with its Secrets (the agent's, written as the
//!   Go agent writes them, or an earlier release's, with the managed-by
//!   label; stale, its digest not known, without owner, someone else's, or
//!   missing), a hand-made
//!   Application summary (random referenced Secrets), or a stray Secret;
//! - `Deletions::Allowed` or `Skipped`.
//!
//! Properties (the doc comment of `plan` and issue #16, item 7): no panic;
//! the plan is deterministic; an Application without `compassMetadata` is
//! never updated, deleted or replaced (nor created over); an Application is
//! never deleted while its name or its Director application is in the
//! snapshot, and replaced only by a plan of that Director application that
//! writes it under another name; a Director name claimed twice writes
//! nothing; no Secret a wanted Application refers to is deleted, neither
//! directly nor by deleting an Application that owns it (garbage
//! collection); a Secret that is not the agent's
//! (`ActualSecret::is_the_agents`) is never written or deleted; with
//! `Deletions::Skipped` nothing is deleted at all.
//!
//! The inputs of what it found on 2026-11-27 (fuzz/README.md, "Findings";
//! all fixed) are seeds in `corpus/plan_invariants`, replayed first on every
//! run.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};

use compass_runtime_agent::compass::model::{
    self, ApiDefinition, Auth, Bundle, Credential, EventDefinition, SystemAuth,
};
use compass_runtime_agent::crd::application::{Application, ApplicationSpec, CompassMetadata};
use compass_runtime_agent::crd::labels::{
    MANAGED_BY_LABEL, MANAGED_BY_VALUE, SECRET_APP_LABEL, SECRET_BUNDLE_LABEL,
};
use compass_runtime_agent::sync::digest::data_hash;
use compass_runtime_agent::sync::names;
use compass_runtime_agent::sync::{
    plan, to_wanted_application, ActualApplication, ActualSecret, ActualState, ApplicationAction,
    ConversionSettings, DataDigest, Deletions, HeldApplication, OwnedDigest, SecretAction,
    WantedSecret,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

/// `n` times in `d`; never once the input is used up (where
/// `Unstructured::ratio` would always say yes).
fn chance(u: &mut Unstructured, n: u8, d: u8) -> Result<bool> {
    Ok(u.int_in_range(1..=d)? > d - n)
}

/// Director names: valid and invalid Kubernetes names, names that normalize
/// to each other (`shop`, `Shop`, `mp-shop`), and long ones sharing their
/// first 26 characters (their Secret names collide after the cut).
const APP_NAMES: &[&str] = &[
    "shop",
    "Shop",
    "mp-shop",
    "crm",
    "mp-crm",
    "My Shop",
    "averyveryverylongapplicationname-one",
    "averyveryverylongapplicationname-two",
    "mp-mp-mp-mp-mp-mp-mp-mp-mp-shop.v1",
    "a",
    "",
];
const APP_IDS: &[&str] = &["id-1", "id-2", "id-3", "id-4", ""];
const BUNDLE_IDS: &[&str] = &["b1", "b2", "6f2b6e2e-1b43-4e0a-a1c2-3f1b8a0c9d11"];
const VALUES: &[&str] = &["p", "q", "changed"];

/// Anything at all, kept short.
fn free_text(u: &mut Unstructured) -> Result<String> {
    let len = u.int_in_range(0..=12)?.min(u.len());
    Ok(String::from_utf8_lossy(u.bytes(len)?).into_owned())
}

/// One of `pool`, now and then anything at all.
fn text(u: &mut Unstructured, pool: &[&str]) -> Result<String> {
    if chance(u, 1, 16)? {
        return free_text(u);
    }
    Ok(u.choose(pool)?.to_string())
}

fn parameters(u: &mut Unstructured) -> Result<Option<model::Parameters>> {
    Ok(match u.int_in_range(0..=3)? {
        0 | 1 => None,
        2 => Some(BTreeMap::new()),
        _ => Some(BTreeMap::from([("h".to_string(), vec![text(u, VALUES)?])])),
    })
}

fn bundle(u: &mut Unstructured) -> Result<Bundle> {
    let credential = match u.int_in_range(0..=2)? {
        0 => None,
        1 => Some(Credential::Basic {
            username: "u".into(),
            password: text(u, VALUES)?,
        }),
        _ => Some(Credential::OAuth {
            client_id: "c".into(),
            client_secret: text(u, VALUES)?,
            url: "https://token.example.com".into(),
        }),
    };
    let additional_headers = parameters(u)?;
    let additional_query_params = parameters(u)?;
    let default_instance_auth = if chance(u, 1, 6)? {
        None
    } else {
        Some(Auth {
            credential,
            additional_headers,
            additional_query_params,
            ..Auth::default()
        })
    };
    let api_definitions = (0..u.int_in_range(0..=2)?)
        .map(|i| ApiDefinition {
            id: format!("api-{i}"),
            name: "Orders API".into(),
            description: None,
            target_url: "https://shop.example.com/orders".into(),
        })
        .collect();
    let event_definitions = (0..u.int_in_range(0..=1)?)
        .map(|i| EventDefinition {
            id: format!("event-{i}"),
            name: "Orders events".into(),
            description: None,
        })
        .collect();
    Ok(Bundle {
        id: text(u, BUNDLE_IDS)?,
        name: "Bundle".into(),
        description: None,
        instance_auth_request_input_schema: None,
        default_instance_auth,
        api_definitions,
        event_definitions,
    })
}

fn director_application(u: &mut Unstructured) -> Result<model::Application> {
    let mut bundles = Vec::new();
    for _ in 0..u.int_in_range(0..=3)? {
        bundles.push(bundle(u)?);
    }
    Ok(model::Application {
        id: text(u, APP_IDS)?,
        name: text(u, APP_NAMES)?,
        provider_name: None,
        description: if chance(u, 1, 4)? {
            Some(text(u, VALUES)?)
        } else {
            None
        },
        labels: None,
        auths: if u.arbitrary()? {
            vec![SystemAuth { id: "auth".into() }]
        } else {
            vec![]
        },
        bundles,
    })
}

fn settings(normalize: bool, skip_verify: bool) -> ConversionSettings {
    ConversionSettings {
        central_gateway_url: "http://gateway:8082".into(),
        skip_apps_tls_verify: skip_verify,
        normalize_application_names: normalize,
    }
}

/// Every Secret name the pools can make, and a few others: stray Secrets and
/// hand-made references land on the names the conversion uses.
fn secret_names() -> &'static [String] {
    static NAMES: OnceLock<Vec<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let mut all = BTreeSet::from(["unrelated".to_string(), String::new()]);
        for app in APP_NAMES {
            for name in [app.to_string(), names::normalize_application_name(app)] {
                for bundle in BUNDLE_IDS {
                    all.insert(names::credentials_secret_name(&name, bundle));
                    all.insert(names::request_parameters_secret_name(&name, bundle));
                }
            }
        }
        all.into_iter().collect()
    })
}

fn secret_name(u: &mut Unstructured) -> Result<String> {
    if chance(u, 1, 16)? {
        return free_text(u);
    }
    Ok(u.choose(secret_names())?.clone())
}

fn app_label(u: &mut Unstructured) -> Result<Option<String>> {
    Ok(if u.arbitrary()? {
        let name = text(u, APP_NAMES)?;
        Some(if u.arbitrary()? {
            names::normalize_application_name(&name)
        } else {
            name
        })
    } else {
        None
    })
}

/// A credential Secret in the cluster, as the input makes it; summarized
/// the way the agent summarizes a listed one ([`Self::summary`]).
#[derive(Clone)]
struct SecretParts {
    name: String,
    data_hash: Option<DataDigest>,
    app_label: Option<String>,
    bundle_label: Option<String>,
    has_managed_by_label: bool,
    owner_uids: Vec<String>,
}

impl SecretParts {
    fn summary(&self) -> ActualSecret {
        let mut labels = BTreeMap::new();
        for (key, value) in [
            (SECRET_APP_LABEL, self.app_label.as_deref()),
            (SECRET_BUNDLE_LABEL, self.bundle_label.as_deref()),
            (
                MANAGED_BY_LABEL,
                self.has_managed_by_label.then_some(MANAGED_BY_VALUE),
            ),
        ] {
            if let Some(value) = value {
                labels.insert(key.to_string(), value.to_string());
            }
        }
        let mut summary = ActualSecret::from_metadata(ObjectMeta {
            name: Some(self.name.clone()),
            labels: Some(labels),
            owner_references: Some(
                self.owner_uids
                    .iter()
                    .map(|uid| OwnerReference {
                        uid: uid.clone(),
                        ..OwnerReference::default()
                    })
                    .collect(),
            ),
            ..ObjectMeta::default()
        });
        summary.data_hash = self.data_hash;
        summary
    }
}

/// The digest of data other than any wanted: stale.
fn stale_digest(value: &str) -> DataDigest {
    data_hash(std::iter::once(("stale", value.as_bytes())))
}

/// A Secret the agent wrote earlier for `wanted` (owned by `owner`): labels
/// `app` and `bundleId`, as the Go agent writes them; or a variation of it,
/// or none.
fn secret_in_cluster(
    u: &mut Unstructured,
    wanted: &WantedSecret,
    owner: Option<&str>,
) -> Result<Option<SecretParts>> {
    let agents = SecretParts {
        name: wanted.name().to_string(),
        data_hash: Some(wanted.data_hash()),
        app_label: Some(wanted.app().to_string()),
        bundle_label: Some(wanted.bundle_id().to_string()),
        has_managed_by_label: false,
        owner_uids: owner.into_iter().map(String::from).collect(),
    };
    Ok(Some(match u.int_in_range(0..=8)? {
        0 => return Ok(None),
        1..=3 => agents,
        // Stale data (or a digest not known), lost owner reference, another
        // owner.
        4 => SecretParts {
            data_hash: if u.arbitrary()? {
                None
            } else {
                Some(stale_digest("0"))
            },
            ..agents
        },
        5 => SecretParts {
            owner_uids: if u.arbitrary()? {
                vec![]
            } else {
                vec!["uid-other".into()]
            },
            ..agents
        },
        // An earlier release's: the managed-by label besides `app` and
        // `bundleId` (or, now and then, instead of them).
        6 => SecretParts {
            has_managed_by_label: true,
            app_label: if chance(u, 1, 4)? {
                None
            } else {
                agents.app_label.clone()
            },
            bundle_label: if chance(u, 1, 4)? {
                None
            } else {
                agents.bundle_label.clone()
            },
            data_hash: if u.arbitrary()? {
                None
            } else {
                Some(wanted.data_hash())
            },
            ..agents
        },
        // Someone else's Secret of that name: an `app` label or a `bundleId`
        // label alone (listed with the agent's: the list selects by
        // `bundleId`), or none.
        _ => {
            let app_label = u.arbitrary::<bool>()?.then(|| wanted.app().to_string());
            let bundle_label =
                (app_label.is_none() && u.arbitrary()?).then(|| wanted.bundle_id().to_string());
            SecretParts {
                has_managed_by_label: false,
                app_label,
                bundle_label,
                data_hash: None,
                owner_uids: vec![],
                ..agents
            }
        }
    }))
}

struct Input {
    director: Vec<model::Application>,
    normalize: bool,
    wanted: Vec<HeldApplication>,
    actual: ActualState,
    deletions: Deletions,
}

fn input(u: &mut Unstructured) -> Result<Input> {
    let deletions = if chance(u, 1, 4)? {
        Deletions::Skipped
    } else {
        Deletions::Allowed
    };
    let normalize = u.arbitrary()?;
    let skip_verify = chance(u, 1, 8)?;
    let current = settings(normalize, skip_verify);
    let mut director = Vec::new();
    for _ in 0..u.int_in_range(0..=6)? {
        // Not a run of `shop`s (the first of every pool) once the input is
        // used up.
        if u.is_empty() {
            break;
        }
        director.push(director_application(u)?);
    }
    let mut wanted = Vec::new();
    for app in &director {
        let held = HeldApplication::from(to_wanted_application(app, &current));
        wanted.push(if chance(u, 1, 8)? {
            held.incomplete(Some("a list of it did not come whole".into()))
        } else {
            held
        });
    }

    let mut applications: Vec<ActualApplication> = Vec::new();
    let mut secrets: Vec<SecretParts> = Vec::new();
    for index in 0..u.int_in_range(1..=8)? {
        if index > 0 && u.is_empty() {
            break;
        }
        match u.int_in_range(0..=5)? {
            // An Application an earlier sync wrote, with its Secrets.
            0..=3 => {
                let mut source = if !director.is_empty() && chance(u, 2, 3)? {
                    u.choose(&director)?.clone()
                } else {
                    director_application(u)?
                };
                // Changed or renamed in the Director since.
                if chance(u, 1, 4)? {
                    source.description = Some(text(u, VALUES)?);
                }
                if chance(u, 1, 8)? {
                    source.name = text(u, APP_NAMES)?;
                }
                // Written under the other naming now and then: an old name.
                let earlier = settings(normalize ^ chance(u, 1, 3)?, skip_verify);
                let written = to_wanted_application(&source, &earlier);
                let mut app: Application = written.application;
                app.metadata.uid = (!chance(u, 1, 10)?).then(|| format!("uid-{index}"));
                if chance(u, 1, 6)? {
                    // Someone else's Application (or one made by hand): no
                    // compassMetadata, whatever else it says.
                    app.spec.compass_metadata = None;
                }
                if chance(u, 1, 8)? {
                    app.metadata.labels = None;
                }
                if chance(u, 1, 10)? {
                    app.spec.encode_url = Some(true);
                }
                let summary = ActualApplication::from(&app);
                for secret in &written.secrets {
                    if let Some(secret) = secret_in_cluster(u, secret, summary.uid.as_deref())? {
                        secrets.push(secret);
                    }
                }
                applications.push(summary);
            }
            // A summary made by hand: any name, any id, any references.
            4 => {
                let spec = ApplicationSpec {
                    compass_metadata: Some(CompassMetadata::default()),
                    ..ApplicationSpec::default()
                };
                let mut referenced_secrets = Vec::new();
                for _ in 0..u.int_in_range(0..=3)? {
                    referenced_secrets.push(secret_name(u)?);
                }
                referenced_secrets.sort();
                referenced_secrets.dedup();
                applications.push(ActualApplication {
                    name: text(u, APP_NAMES)?,
                    uid: Some(format!("uid-{index}")),
                    resource_version: Some("1".into()),
                    compass_application_id: if chance(u, 3, 4)? {
                        Some(text(u, APP_IDS)?)
                    } else {
                        None
                    },
                    has_managed_by_label: u.arbitrary()?,
                    owned: OwnedDigest::of(&spec),
                    referenced_secrets: referenced_secrets.iter().map(String::as_str).collect(),
                });
            }
            // A stray Secret: the agent's left over, the Go agent's, or not.
            _ => secrets.push(SecretParts {
                name: secret_name(u)?,
                data_hash: if u.arbitrary()? {
                    Some(stale_digest(&text(u, VALUES)?))
                } else {
                    None
                },
                app_label: app_label(u)?,
                bundle_label: if u.arbitrary()? {
                    Some(text(u, BUNDLE_IDS)?)
                } else {
                    None
                },
                has_managed_by_label: u.arbitrary()?,
                owner_uids: if u.arbitrary()? {
                    vec![format!("uid-{}", u.int_in_range(0..=7)?)]
                } else {
                    vec![]
                },
            }),
        }
    }
    // Names are unique in a cluster (Applications cluster-wide, Secrets in
    // the integration namespace): the first of a name stands.
    let mut seen = BTreeSet::new();
    applications.retain(|app| seen.insert(app.name.clone()));
    let mut seen = BTreeSet::new();
    secrets.retain(|secret| seen.insert(secret.name.clone()));
    assert!(!applications.is_empty() || !secrets.is_empty());

    Ok(Input {
        director,
        normalize,
        wanted,
        actual: ActualState {
            applications: applications.into_iter().map(Arc::new).collect(),
            secrets: secrets.iter().map(SecretParts::summary).collect(),
            secrets_listed: u.arbitrary()?,
        },
        deletions,
    })
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(input) = input(&mut u) else {
        return;
    };
    check(&input);
});

fn check(input: &Input) {
    let Input {
        director,
        normalize,
        wanted,
        actual,
        deletions,
    } = input;
    let result = plan(wanted.clone(), actual, *deletions);
    assert_eq!(
        result,
        plan(wanted.clone(), actual, *deletions),
        "the plan is deterministic"
    );
    let context = || {
        format!("\nsnapshot (normalized: {normalize}): {director:#?}\ncluster: {actual:#?}\ndeletions: {deletions:?}\nplan: {result:#?}")
    };

    let actual_apps: BTreeMap<&str, &ActualApplication> = actual
        .applications
        .iter()
        .map(|app| (app.name.as_str(), app.as_ref()))
        .collect();
    let actual_secrets: BTreeMap<&str, &ActualSecret> = actual
        .secrets
        .iter()
        .map(|secret| (secret.name(), secret))
        .collect();
    let mut claims: BTreeMap<&str, usize> = BTreeMap::new();
    for app in wanted {
        *claims.entry(app.name.as_str()).or_default() += 1;
    }
    let snapshot_ids: BTreeSet<&str> = wanted.iter().map(|a| a.application_id.as_str()).collect();
    let wanted_secrets: BTreeSet<&str> = wanted
        .iter()
        .flat_map(HeldApplication::secret_names)
        .collect();
    let managed = |name: &str| {
        actual_apps
            .get(name)
            .is_some_and(|app| app.is_managed_by_compass())
    };

    // Every wanted application has exactly one plan, in order, first.
    assert!(result.applications.len() >= wanted.len(), "{}", context());
    for (app, planned) in wanted.iter().zip(&result.applications) {
        assert_eq!(planned.name, app.name, "{}", context());
        assert_eq!(planned.application_id, app.application_id, "{}", context());
        if app.inconsistency.is_some() || claims[app.name.as_str()] > 1 {
            // Not whole, or a name claimed twice: nothing written for it,
            // nothing of its deleted, whichever order the Director answers in.
            assert!(
                matches!(planned.action, ApplicationAction::Refused(_)),
                "{}",
                context()
            );
        }
        if matches!(planned.action, ApplicationAction::Refused(_)) {
            assert_eq!(planned.writes(), 0, "{}", context());
        }
        if matches!(planned.action, ApplicationAction::Delete) {
            panic!("a wanted application is deleted: {}", context());
        }
    }
    // After them, deletions only.
    for extra in &result.applications[wanted.len()..] {
        assert!(
            matches!(extra.action, ApplicationAction::Delete),
            "{}",
            context()
        );
    }

    for planned in &result.applications {
        let name = planned.name.as_str();
        match &planned.action {
            ApplicationAction::Create(_) => assert!(
                !actual_apps.contains_key(name),
                "created over an existing Application {name:?}: {}",
                context()
            ),
            ApplicationAction::Update(_) | ApplicationAction::Unchanged => assert!(
                managed(name),
                "{name:?} has no compassMetadata but is planned {:?}: {}",
                planned.action,
                context()
            ),
            ApplicationAction::Delete => {
                assert!(
                    managed(name),
                    "{name:?} deleted without compassMetadata: {}",
                    context()
                );
                assert!(
                    !claims.contains_key(name),
                    "{name:?} deleted while the snapshot has that name: {}",
                    context()
                );
                let id = actual_apps[name].compass_application_id.as_deref();
                assert!(
                    !id.is_some_and(|id| snapshot_ids.contains(id)),
                    "{name:?} deleted while its Director application {id:?} is in the snapshot: {}",
                    context()
                );
                assert_eq!(planned.application_id, id.unwrap_or_default());
                assert_eq!(*deletions, Deletions::Allowed, "{}", context());
                // Deleting an Application deletes the Secrets it owns
                // (garbage collection), and the plans are applied in any
                // order: it must own none a wanted Application refers to.
                if let Some(uid) = actual_apps[name].uid.as_deref() {
                    for secret in &actual.secrets {
                        assert!(
                            !(secret.is_owned_by(uid)
                                && wanted_secrets.contains(secret.name())),
                            "{name:?} deleted while it owns Secret {:?}, which a wanted Application refers to: {}",
                            secret.name(),
                            context()
                        );
                    }
                }
            }
            ApplicationAction::Refused(_) => {
                assert!(planned.secrets.is_empty() && planned.replaces.is_empty())
            }
        }

        for old in &planned.replaces {
            let old_name = old.name.as_str();
            assert_eq!(*deletions, Deletions::Allowed, "{}", context());
            assert!(
                matches!(
                    planned.action,
                    ApplicationAction::Create(_)
                        | ApplicationAction::Update(_)
                        | ApplicationAction::Unchanged
                ),
                "{old_name:?} replaced by a plan that writes nothing: {}",
                context()
            );
            assert!(
                managed(old_name),
                "{old_name:?} replaced without compassMetadata: {}",
                context()
            );
            assert!(
                old_name != name && !claims.contains_key(old_name),
                "{old_name:?} replaced while the snapshot has that name: {}",
                context()
            );
            assert_eq!(
                actual_apps[old_name].compass_application_id.as_deref(),
                Some(planned.application_id.as_str()),
                "{old_name:?} replaced by another Director application's plan: {}",
                context()
            );
        }

        let deleted = planned
            .secrets
            .iter()
            .filter_map(|secret| match secret {
                SecretAction::Delete(name) => Some(name),
                _ => None,
            })
            .chain(planned.replaces.iter().flat_map(|old| &old.secrets));
        for secret in deleted {
            assert!(
                *deletions == Deletions::Allowed,
                "Secret {secret:?} deleted with deletions skipped: {}",
                context()
            );
            assert!(
                !wanted_secrets.contains(secret.as_str()),
                "Secret {secret:?} deleted while a wanted Application refers to it: {}",
                context()
            );
            let found = actual_secrets.get(secret.as_str());
            assert!(
                found.is_some(),
                "Secret {secret:?} deleted but not in the cluster: {}",
                context()
            );
            assert!(
                found.is_some_and(|s| s.is_the_agents()),
                "Secret {secret:?} deleted but it is not the agent's: {}",
                context()
            );
        }
        for secret in &planned.secrets {
            let secret_name = secret.secret_name();
            match secret {
                SecretAction::Create(_) => {
                    assert!(!actual_secrets.contains_key(secret_name), "{}", context())
                }
                SecretAction::Update(_) => assert!(
                    actual_secrets
                        .get(secret_name)
                        .is_some_and(|s| s.is_the_agents()),
                    "Secret {secret_name:?} overwritten but it is not the agent's: {}",
                    context()
                ),
                SecretAction::Delete(_) => {}
            }
            if !matches!(secret, SecretAction::Delete(_)) {
                assert!(
                    wanted_secrets.contains(secret_name),
                    "{secret_name:?}: {}",
                    context()
                );
            }
        }
    }
}
