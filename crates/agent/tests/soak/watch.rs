//! The invariants checked continuously, by watching the cluster while the
//! faults run: Application deletions against the Director, every version of
//! the client certificate Secret and the CA Secret, and the agent's memory.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use compass_runtime_agent::certificates::ClientCredentials;
use compass_runtime_agent::crd::application::Application;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, ResourceExt};

use crate::agent::{memory_kib, scrape, Counters};
use crate::director::DirectorNames;

/// Findings and figures, shared by the watchers and the main loop.
pub struct Record {
    pub started: Instant,
    violations: Mutex<Vec<String>>,
    pub director: DirectorNames,
    pub unmanaged_app: String,
    inner: Mutex<Figures>,
}

#[derive(Default)]
pub struct Figures {
    pub application_deletions: u32,
    pub certificate_versions: u32,
    pub certificate_serials: BTreeSet<String>,
    pub ca_versions: u32,
    /// Lines of every private key seen, to look for in the logs.
    pub key_fragments: BTreeSet<String>,
    pub watch_errors: u32,
    /// The agent replicas now running, by incarnation: pid, metrics URL.
    pub agents: BTreeMap<usize, (u32, String)>,
    /// (seconds since start, incarnation, VmRSS KiB)
    pub rss: Vec<(f64, usize, u64)>,
    /// Per incarnation: peak (VmHWM) KiB and its last counters.
    pub peak_kib: BTreeMap<usize, u64>,
    pub counters: BTreeMap<usize, Counters>,
}

impl Record {
    pub fn new(director: DirectorNames, unmanaged_app: &str) -> Arc<Record> {
        Arc::new(Record {
            started: Instant::now(),
            violations: Mutex::new(Vec::new()),
            director,
            unmanaged_app: unmanaged_app.to_string(),
            inner: Mutex::new(Figures::default()),
        })
    }

    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    pub fn violation(&self, what: impl Into<String>) {
        let what = what.into();
        let line = format!("[{:7.1}s] {what}", self.elapsed());
        println!("VIOLATION {line}");
        self.violations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line);
    }

    pub fn violations(&self) -> Vec<String> {
        self.violations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn figures(&self) -> std::sync::MutexGuard<'_, Figures> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps the latest counters of an incarnation (counters only grow, so a
    /// scrape that raced with a newer one is dropped).
    pub fn counters(&self, incarnation: usize, counters: Counters) {
        let mut figures = self.figures();
        let entry = figures.counters.entry(incarnation).or_default();
        if counters.reconciles >= entry.reconciles {
            *entry = counters;
        }
    }

    fn director_has(&self, name: &str) -> bool {
        self.director
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(name)
    }

    fn deleted(&self, name: &str, how: &str) {
        self.figures().application_deletions += 1;
        if name == self.unmanaged_app {
            self.violation(format!(
                "Application {name}, which the agent does not manage, was deleted ({how})"
            ));
        } else if self.director_has(name) {
            self.violation(format!(
                "Application {name} was deleted ({how}) while the Director has it"
            ));
        }
    }
}

/// Watches every Application. A Delete (or, across a watch gap, an
/// Application missing from the re-list) of one the Director still has is a
/// violation; so is any change to the Application the agent does not manage.
pub async fn watch_applications(client: Client, record: Arc<Record>, unmanaged_version: String) {
    let api: Api<Application> = Api::all(client);
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut known: BTreeSet<String> = BTreeSet::new();
    let mut relisted: Option<BTreeSet<String>> = None;
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Init) => relisted = Some(BTreeSet::new()),
            Ok(Event::InitApply(app)) | Ok(Event::Apply(app)) => {
                let name = app.name_any();
                if name == record.unmanaged_app
                    && app.resource_version().as_deref() != Some(unmanaged_version.as_str())
                {
                    record.violation(format!(
                        "Application {name}, which the agent does not manage, was changed"
                    ));
                }
                if let Some(relisted) = relisted.as_mut() {
                    relisted.insert(name.clone());
                }
                known.insert(name);
            }
            Ok(Event::InitDone) => {
                if let Some(relisted) = relisted.take() {
                    for gone in known.difference(&relisted) {
                        record.deleted(gone, "missing when the watch re-listed");
                    }
                    known = relisted;
                }
            }
            Ok(Event::Delete(app)) => {
                let name = app.name_any();
                known.remove(&name);
                record.deleted(&name, "watch event");
            }
            Err(_) => record.figures().watch_errors += 1,
        }
    }
}

/// Watches the client certificate Secret and the CA Secret: every version
/// must hold a key and a certificate that belong together (the agent's own
/// check, `ClientCredentials::new`), and a CA that parses; neither may be
/// deleted.
pub async fn watch_certificates(
    client: Client,
    record: Arc<Record>,
    namespace: &str,
    name: &str,
    ca_namespace: &str,
    ca_name: &str,
) {
    let secrets = watcher::watcher(
        Api::<Secret>::namespaced(client.clone(), namespace),
        watcher::Config::default().fields(&format!("metadata.name={name}")),
    )
    .default_backoff()
    .map(|event| (false, event));
    let ca = watcher::watcher(
        Api::<Secret>::namespaced(client, ca_namespace),
        watcher::Config::default().fields(&format!("metadata.name={ca_name}")),
    )
    .default_backoff()
    .map(|event| (true, event));
    let mut both = futures::stream::select(secrets.boxed(), ca.boxed());
    let mut seen_version: BTreeMap<bool, String> = BTreeMap::new();
    while let Some((is_ca, event)) = both.next().await {
        match event {
            Ok(Event::Apply(secret)) | Ok(Event::InitApply(secret)) => {
                let version = secret.resource_version().unwrap_or_default();
                if seen_version.get(&is_ca) == Some(&version) {
                    continue;
                }
                seen_version.insert(is_ca, version);
                let data: BTreeMap<String, String> = secret
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                    .collect();
                if is_ca {
                    check_ca(&record, &data);
                } else {
                    check_client_certificate(&record, &data);
                }
            }
            Ok(Event::Delete(secret)) => record.violation(format!(
                "Secret {}/{} was deleted",
                secret.namespace().unwrap_or_default(),
                secret.name_any()
            )),
            Ok(Event::Init) | Ok(Event::InitDone) => {}
            Err(_) => record.figures().watch_errors += 1,
        }
    }
}

fn check_client_certificate(record: &Record, data: &BTreeMap<String, String>) {
    let field = |key: &str| data.get(key).cloned().unwrap_or_default();
    let (key, crt, chain) = (field("key"), field("crt"), field("crtChain"));
    {
        let mut figures = record.figures();
        figures.certificate_versions += 1;
        for line in key
            .lines()
            .filter(|l| l.len() >= 48 && !l.contains("PRIVATE"))
        {
            figures.key_fragments.insert(line.to_string());
        }
    }
    if key.is_empty() || crt.is_empty() {
        record.violation(format!(
            "the client certificate Secret lacks {}",
            if key.is_empty() {
                "its key"
            } else {
                "its certificate"
            }
        ));
        return;
    }
    match ClientCredentials::new(key, crt, chain, String::new()) {
        Ok(credentials) => {
            record
                .figures()
                .certificate_serials
                .insert(credentials.info().serial.clone());
        }
        Err(error) => record.violation(format!(
            "the client certificate Secret holds credentials that do not work: {error}"
        )),
    }
}

fn check_ca(record: &Record, data: &BTreeMap<String, String>) {
    record.figures().ca_versions += 1;
    let cacert = data.get("cacert").cloned().unwrap_or_default();
    let parses = pem::parse_many(cacert.as_bytes())
        .ok()
        .and_then(|blocks| {
            blocks
                .into_iter()
                .find(|block| block.tag() == "CERTIFICATE")
        })
        .is_some_and(|block| x509_parser::parse_x509_certificate(block.contents()).is_ok());
    if !parses {
        record.violation("the CA Secret's cacert is not a certificate");
    }
}

/// Every second: each running replica's VmRSS (and VmHWM); every fifth
/// second its counters from /metrics.
pub async fn sample_agent(record: Arc<Record>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        n += 1;
        let agents = record.figures().agents.clone();
        for (incarnation, (pid, metrics)) in agents {
            if let Some((rss, hwm)) = memory_kib(pid) {
                let t = record.elapsed();
                let mut figures = record.figures();
                // The replica may have been replaced while /proc was read.
                if figures.agents.contains_key(&incarnation) {
                    figures.rss.push((t, incarnation, rss));
                    let peak = figures.peak_kib.entry(incarnation).or_default();
                    *peak = (*peak).max(hwm);
                }
            }
            if n % 5 == 0 {
                if let Some(text) = scrape(&metrics).await {
                    record.counters(incarnation, Counters::parse(&text));
                }
            }
        }
    }
}
