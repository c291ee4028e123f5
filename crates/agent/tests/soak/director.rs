//! The Director's applications as the soak changes them at random, and the
//! exact comparison of the cluster with them at the end.
//!
//! Application names are never reused (`mp-soak-0001`, `mp-soak-0002`, …), so
//! a deletion after a re-add cannot be mistaken for one of the same name. They
//! are in today's Kyma agent's normal form already, which keeps them as they
//! are: the Director's name is the Application's.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use compass_runtime_agent::crd::application::{Application as AppResource, EntryType};
use compass_runtime_agent::sync::names;
use compass_sim::model::{
    ApiDefinition, AppAuth, Application, BasicCredential, Bundle, Credential, CsrfAuth,
    EventDefinition, InstanceAuth, MultiMap, OAuthCredential, RequestAuth,
};
use compass_sim::CompassSim;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use rand::rngs::StdRng;
use rand::Rng;

use crate::common::RUNTIME_ID;

/// Names of the applications the Director has right now, shared with the
/// Application watcher. Updated so that it never claims less than the
/// simulator has: added after the simulator has an application, removed
/// before the simulator forgets it.
pub type DirectorNames = Arc<Mutex<BTreeSet<String>>>;

pub struct Director {
    pub apps: BTreeMap<String, Application>,
    pub names: DirectorNames,
    next_app: u32,
    /// Every password and client secret ever handed to the Director.
    pub secret_values: Vec<String>,
    pub added: u32,
    pub modified: BTreeMap<&'static str, u32>,
    pub removed: u32,
    /// Removed by the simulator between two page requests.
    pub removed_mid_paging: u32,
}

fn random_text(rng: &mut StdRng, len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn uuid(rng: &mut StdRng) -> String {
    uuid::Builder::from_random_bytes(rng.random())
        .into_uuid()
        .to_string()
}

const WORDS: [&str; 8] = [
    "Orders",
    "Billing",
    "Stock",
    "Shipping",
    "Customers",
    "Returns",
    "Prices",
    "Reviews",
];

impl Director {
    pub fn new() -> Director {
        Director {
            apps: BTreeMap::new(),
            names: Arc::new(Mutex::new(BTreeSet::new())),
            next_app: 1,
            secret_values: Vec::new(),
            added: 0,
            modified: BTreeMap::new(),
            removed: 0,
            removed_mid_paging: 0,
        }
    }

    fn credential(&mut self, rng: &mut StdRng) -> Option<Credential> {
        let secret = format!("soak-secret-{}", random_text(rng, 24));
        self.secret_values.push(secret.clone());
        match rng.random_range(0..5) {
            0 => None,
            1 | 2 => Some(Credential::Basic(BasicCredential {
                username: format!("user-{}", random_text(rng, 6)),
                password: secret,
            })),
            _ => Some(Credential::Oauth(OAuthCredential {
                client_id: format!("client-{}", random_text(rng, 6)),
                client_secret: secret,
                url: "https://oauth.example.com/token".into(),
            })),
        }
    }

    fn bundle(&mut self, rng: &mut StdRng) -> Bundle {
        let id = uuid(rng);
        let word = WORDS[rng.random_range(0..WORDS.len())];
        let headers = rng.random_bool(0.5).then(|| {
            MultiMap::from([(
                "X-Soak".to_string(),
                vec![format!("h-{}", random_text(rng, 8))],
            )])
        });
        let query = rng
            .random_bool(0.3)
            .then(|| MultiMap::from([("tenant".to_string(), vec![random_text(rng, 5)])]));
        let csrf = rng.random_bool(0.3).then(|| RequestAuth {
            csrf: Some(CsrfAuth {
                token_endpoint_url: format!("https://{}.example.com/csrf", word.to_lowercase()),
            }),
        });
        let credential = self.credential(rng);
        let apis = rng.random_range(0..=3);
        let events = rng.random_range(if apis == 0 { 1 } else { 0 }..=2);
        Bundle {
            id: id.clone(),
            name: format!("{word} API {}", rng.random_range(1..100)),
            description: rng.random_bool(0.7).then(|| format!("The {word} bundle")),
            instance_auth_request_input_schema: None,
            default_instance_auth: Some(InstanceAuth {
                credential,
                additional_headers: headers,
                additional_query_params: query,
                request_auth: csrf,
            }),
            api_definitions: (0..apis)
                .map(|i| ApiDefinition {
                    id: uuid(rng),
                    name: format!("{word} v{i}"),
                    description: None,
                    target_url: format!(
                        "https://{}.example.com/v{i}/{}",
                        word.to_lowercase(),
                        random_text(rng, 4)
                    ),
                })
                .collect(),
            event_definitions: (0..events)
                .map(|i| EventDefinition {
                    id: uuid(rng),
                    name: format!("{}.event{i}", word.to_lowercase()),
                    description: None,
                })
                .collect(),
        }
    }

    /// A new application with a name never used before.
    pub fn add(&mut self, sim: &CompassSim, rng: &mut StdRng) -> String {
        let name = format!("mp-soak-{:04}", self.next_app);
        debug_assert_eq!(names::normalize_application_name(&name), name);
        self.next_app += 1;
        let bundles = (0..rng.random_range(1..=3))
            .map(|_| self.bundle(rng))
            .collect();
        let app = Application {
            id: uuid(rng),
            name: name.clone(),
            provider_name: Some("soak".into()),
            description: rng.random_bool(0.8).then(|| format!("Application {name}")),
            system_number: None,
            labels: Default::default(),
            auths: vec![AppAuth { id: uuid(rng) }],
            bundles,
        };
        sim.put_application(RUNTIME_ID, app.clone())
            .expect("the application is stored");
        self.lock_names().insert(name.clone());
        self.apps.insert(name.clone(), app);
        self.added += 1;
        name
    }

    /// Changes one application (never its name); returns its name and what changed.
    pub fn modify(&mut self, sim: &CompassSim, rng: &mut StdRng) -> Option<(String, &'static str)> {
        let name = self.pick(rng)?;
        let mut app = self.apps[&name].clone();
        let what = match rng.random_range(0..6) {
            0 => {
                app.description = Some(format!("Changed {}", random_text(rng, 6)));
                "description"
            }
            1 => {
                let index = rng.random_range(0..app.bundles.len());
                let credential = self.credential(rng);
                let auth = app.bundles[index]
                    .default_instance_auth
                    .get_or_insert_with(InstanceAuth::default);
                auth.credential = credential;
                "credentials"
            }
            2 if app.bundles.len() < 4 => {
                let bundle = self.bundle(rng);
                app.bundles.push(bundle);
                "bundle added"
            }
            3 if app.bundles.len() > 1 => {
                let index = rng.random_range(0..app.bundles.len());
                app.bundles.remove(index);
                "bundle removed"
            }
            4 => {
                let index = rng.random_range(0..app.bundles.len());
                let auth = app.bundles[index]
                    .default_instance_auth
                    .get_or_insert_with(InstanceAuth::default);
                auth.additional_headers = rng.random_bool(0.7).then(|| {
                    MultiMap::from([(
                        "X-Soak".to_string(),
                        vec![format!("h-{}", random_text(rng, 8))],
                    )])
                });
                "request parameters"
            }
            _ => {
                let index = rng.random_range(0..app.bundles.len());
                let bundle = &mut app.bundles[index];
                match bundle.api_definitions.first_mut() {
                    Some(api) => {
                        api.target_url =
                            format!("https://moved.example.com/{}", random_text(rng, 6));
                        "API target"
                    }
                    None => {
                        bundle.api_definitions.push(ApiDefinition {
                            id: uuid(rng),
                            name: "added".into(),
                            description: None,
                            target_url: "https://added.example.com".into(),
                        });
                        "API added"
                    }
                }
            }
        };
        sim.put_application(RUNTIME_ID, app.clone())
            .expect("the application is stored");
        self.apps.insert(name.clone(), app);
        *self.modified.entry(what).or_default() += 1;
        Some((name, what))
    }

    pub fn remove(&mut self, sim: &CompassSim, rng: &mut StdRng) -> Option<String> {
        let name = self.pick(rng)?;
        let app = self.apps.remove(&name).expect("picked from the map");
        self.lock_names().remove(&name);
        sim.remove_application(RUNTIME_ID, &app.id)
            .expect("the application is removed");
        self.removed += 1;
        Some(name)
    }

    /// The application the simulator serves first (the one a
    /// `RemoveFirstApplication` fault removes), forgotten now: from here on
    /// the agent may delete it. Its id and name.
    pub fn forget_first(&mut self, sim: &CompassSim) -> Option<(String, String)> {
        let first_id = sim
            .served_application_ids(RUNTIME_ID)
            .ok()?
            .into_iter()
            .next()?;
        let first = sim
            .applications(RUNTIME_ID)
            .ok()?
            .into_iter()
            .find(|app| app.id == first_id)?;
        self.apps.remove(&first.name)?;
        self.lock_names().remove(&first.name);
        self.removed_mid_paging += 1;
        Some((first.id, first.name))
    }

    fn pick(&self, rng: &mut StdRng) -> Option<String> {
        if self.apps.is_empty() {
            return None;
        }
        let index = rng.random_range(0..self.apps.len());
        self.apps.keys().nth(index).cloned()
    }

    fn lock_names(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.names.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Compares the cluster with the Director exactly: the managed
    /// Applications (names, ids, description, services, entries, credential
    /// references) and the credential and request-parameter Secrets (each one
    /// referenced exists with the Director's values; no others). The first
    /// difference found, if any.
    pub async fn compare(
        &self,
        client: &Client,
        sim: &CompassSim,
        namespace: &str,
    ) -> Result<(), String> {
        let in_sim: BTreeMap<String, Application> = sim
            .applications(RUNTIME_ID)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|app| (app.name.clone(), app))
            .collect();
        if in_sim != self.apps {
            return Err("the soak's record of the Director differs from compass-sim".into());
        }
        let resources: BTreeMap<String, AppResource> = Api::<AppResource>::all(client.clone())
            .list(&ListParams::default())
            .await
            .map_err(|e| format!("cannot list Applications: {e}"))?
            .items
            .into_iter()
            .filter(|app| app.spec.compass_metadata.is_some())
            .map(|app| (app.name_any(), app))
            .collect();
        let wanted: BTreeSet<&String> = self.apps.keys().collect();
        let found: BTreeSet<&String> = resources.keys().collect();
        if wanted != found {
            return Err(format!(
                "managed Applications {found:?}, the Director has {wanted:?}"
            ));
        }
        let secrets: BTreeMap<String, Secret> =
            Api::<Secret>::namespaced(client.clone(), namespace)
                .list(&ListParams::default().labels("bundleId"))
                .await
                .map_err(|e| format!("cannot list Secrets: {e}"))?
                .items
                .into_iter()
                .map(|secret| (secret.name_any(), secret))
                .collect();
        let mut wanted_secrets = BTreeSet::new();
        for (name, app) in &self.apps {
            let resource = &resources[name];
            compare_application(app, resource)?;
            for bundle in &app.bundles {
                let auth = bundle.default_instance_auth.clone().unwrap_or_default();
                if let Some(credential) = &auth.credential {
                    let secret_name = names::credentials_secret_name(name, &bundle.id);
                    let data = secret_data(&secrets, &secret_name)?;
                    let expected = match credential {
                        Credential::Basic(basic) => [
                            ("username", basic.username.as_str()),
                            ("password", basic.password.as_str()),
                        ],
                        Credential::Oauth(oauth) => [
                            ("clientId", oauth.client_id.as_str()),
                            ("clientSecret", oauth.client_secret.as_str()),
                        ],
                    };
                    for (key, value) in expected {
                        if data.get(key).map(String::as_str) != Some(value) {
                            return Err(format!(
                                "Secret {secret_name}: {key} is not the Director's current value"
                            ));
                        }
                    }
                    wanted_secrets.insert(secret_name);
                }
                let headers = auth.additional_headers.filter(|h| !h.is_empty());
                let query = auth.additional_query_params.filter(|q| !q.is_empty());
                if headers.is_some() || query.is_some() {
                    let secret_name = names::request_parameters_secret_name(name, &bundle.id);
                    let data = secret_data(&secrets, &secret_name)?;
                    for (key, value) in [("headers", headers), ("queryParameters", query)] {
                        let found = data
                            .get(key)
                            .map(|json| serde_json::from_str::<MultiMap>(json).ok());
                        let matches = match (&value, found) {
                            (None, None) => true,
                            (Some(expected), Some(Some(found))) => *expected == found,
                            _ => false,
                        };
                        if !matches {
                            return Err(format!(
                                "Secret {secret_name}: {key} is not the Director's {value:?}"
                            ));
                        }
                    }
                    wanted_secrets.insert(secret_name);
                }
            }
        }
        let stale: Vec<&String> = secrets
            .keys()
            .filter(|name| !wanted_secrets.contains(*name))
            .collect();
        if !stale.is_empty() {
            return Err(format!("Secrets no Director application needs: {stale:?}"));
        }
        Ok(())
    }
}

fn secret_data(
    secrets: &BTreeMap<String, Secret>,
    name: &str,
) -> Result<BTreeMap<String, String>, String> {
    let secret = secrets
        .get(name)
        .ok_or_else(|| format!("Secret {name} is missing"))?;
    Ok(secret
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
        .collect())
}

fn compare_application(app: &Application, resource: &AppResource) -> Result<(), String> {
    let name = &app.name;
    let spec = &resource.spec;
    let metadata = spec.compass_metadata.as_ref().expect("filtered on it");
    if metadata.application_id != app.id {
        return Err(format!(
            "{name}: applicationId {} instead of {}",
            metadata.application_id, app.id
        ));
    }
    let description = app
        .description
        .clone()
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "Description not provided".into());
    if spec.description != description {
        return Err(format!(
            "{name}: description {:?} instead of {description:?}",
            spec.description
        ));
    }
    let bundle_ids: Vec<&str> = app.bundles.iter().map(|b| b.id.as_str()).collect();
    let service_ids: Vec<&str> = spec.services.iter().map(|s| s.id.as_str()).collect();
    if bundle_ids != service_ids {
        return Err(format!(
            "{name}: services {service_ids:?} instead of bundles {bundle_ids:?}"
        ));
    }
    for (bundle, service) in app.bundles.iter().zip(&spec.services) {
        let auth = bundle.default_instance_auth.clone().unwrap_or_default();
        let apis: Vec<(&str, &str)> = bundle
            .api_definitions
            .iter()
            .map(|a| (a.id.as_str(), a.target_url.as_str()))
            .collect();
        let api_entries: Vec<(&str, &str)> = service
            .entries
            .iter()
            .filter(|e| e.entry_type == EntryType::Api)
            .map(|e| (e.id.as_str(), e.target_url.as_str()))
            .collect();
        if apis != api_entries {
            return Err(format!(
                "{name}/{}: API entries {api_entries:?} instead of {apis:?}",
                bundle.id
            ));
        }
        let events: Vec<&str> = bundle
            .event_definitions
            .iter()
            .map(|e| e.id.as_str())
            .collect();
        let event_entries: Vec<&str> = service
            .entries
            .iter()
            .filter(|e| e.entry_type == EntryType::Events)
            .map(|e| e.id.as_str())
            .collect();
        if events != event_entries {
            return Err(format!(
                "{name}/{}: event entries {event_entries:?} instead of {events:?}",
                bundle.id
            ));
        }
        for entry in service
            .entries
            .iter()
            .filter(|e| e.entry_type == EntryType::Api)
        {
            let secret = entry.credentials.as_ref().map(|c| c.secret_name.as_str());
            let expected = auth
                .credential
                .as_ref()
                .map(|_| names::credentials_secret_name(name, &bundle.id));
            if secret != expected.as_deref() {
                return Err(format!(
                    "{name}/{}: entry {} refers to credentials {secret:?} instead of {expected:?}",
                    bundle.id, entry.id
                ));
            }
        }
    }
    Ok(())
}
