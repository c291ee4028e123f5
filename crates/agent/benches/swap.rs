//! Swapping with the Go agent Kyma ships, both ways, measured: what does a
//! swap rewrite? (spec, section 7; Kyma issue 20). A measurement run by hand,
//! never a test: the Go agent's binary comes from a fetched snapshot of
//! application-connector-manager and is given by `GO_AGENT_BIN`.
//!
//!     GO_AGENT_BIN=/work/goagent/compass-runtime-agent-go BENCH_APPLICATIONS=200 \
//!         cargo bench -p compass-runtime-agent --bench swap
//!
//! (`cargo test -p compass-runtime-agent --bench swap -- --bench` runs the
//! same program on a debug build.) The agents' logs stay in
//! `target/tmp/swap-logs/`.
//!
//! A real kube-apiserver with Kyma's CRDs (`tests/fixtures/kyma/crds.yaml`),
//! compass-sim with `BENCH_APPLICATIONS` (200) applications × 2 bundles × 3
//! APIs and 1 event (seven of them varied: see `director_applications`),
//! and both agents as processes with Kyma's settings
//! (`APP_SKIP_COMPASS_TLS_VERIFY=true`, the CA Secret
//! `istio-system/kyma-gateway-certs-cacert`; sync period 5s, minimal sync
//! time 2s). Four runs, each on what the one before left:
//!
//! 1. the Go agent connects with a fresh token and synchronizes, one more
//!    sync, stop;
//! 2. the Go agent again (control: what a plain restart of the Go agent
//!    rewrites), one sync after its start, stop;
//! 3. our agent (`CARGO_BIN_EXE_compass-runtime-agent`, the binary cargo
//!    builds with this bench), one sync after its start, stop;
//! 4. the Go agent again, one sync after its start, stop.
//!
//! After each run: uid and resourceVersion of every Application, every
//! Secret in kyma-system and istio-system (but the configuration Secret) and
//! `compass-connection`; the objects whose resourceVersion moved, with the
//! JSON paths that differ (old → new), Connector requests with the token,
//! signing requests, and each agent's own count of Kubernetes writes (ours:
//! `compass_runtime_agent_kubernetes_writes_total`; the Go agent's:
//! controller-runtime's `rest_client_requests_total` on its metrics port,
//! POST/PUT/PATCH/DELETE).
//!
//! Two things the Go agent needs outside a cluster: its cluster-metrics
//! logger builds `rest.InClusterConfig()` at start (fatal without
//! `KUBERNETES_SERVICE_HOST`/`_PORT` and a service-account token file), so it
//! runs under `unshare --mount` with a tmpfs over `/run` holding a dummy
//! `/run/secrets/kubernetes.io/serviceaccount/token` (the logger's first
//! tick is 30 min away; the agent's own client uses `KUBECONFIG`), which
//! needs root or CAP_SYS_ADMIN; and controller-runtime's metrics server
//! binds `:8080` (no setting changes it), which must be free. Both agents
//! reach compass-sim through a small TLS front (see `Front`): the Go agent's
//! Director query selects `group` and `version` of API and event
//! definitions, which compass-sim does not serve.
//!
//! Under `cargo test --all-targets` (no `--bench` argument) it does nothing;
//! without `GO_AGENT_BIN` it says so and exits 0. Never fails on a time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::ByteString;
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde::Deserialize;
use serde_json::Value;

const RUNTIME_ID: &str = "runtime-swap";
const TENANT: &str = "tenant-swap";
const NS: &str = "kyma-system";
const CA_NS: &str = "istio-system";
const CONFIG_NAME: &str = "compass-agent-configuration";
const CERTIFICATES: &str = "cluster-client-certificates";
const CONNECTION: &str = "compass-connection";

fn application_resource() -> ApiResource {
    ApiResource {
        group: "applicationconnector.kyma-project.io".into(),
        version: "v1alpha1".into(),
        api_version: "applicationconnector.kyma-project.io/v1alpha1".into(),
        kind: "Application".into(),
        plural: "applications".into(),
    }
}

fn connection_resource() -> ApiResource {
    ApiResource {
        group: "compass.kyma-project.io".into(),
        version: "v1alpha1".into(),
        api_version: "compass.kyma-project.io/v1alpha1".into(),
        kind: "CompassConnection".into(),
        plural: "compassconnections".into(),
    }
}

/// The apiserver, compass-sim and the settings both agents get.
struct Stage {
    env: test_support::TestEnv,
    client: Client,
    sim: compass_sim::CompassSim,
    fronts: (Front, Front),
    /// The agents' logs, kept: `target/tmp/swap-logs/`.
    work: PathBuf,
}

impl Stage {
    /// Copied from the tests' `World::with_crds`: a fresh apiserver with
    /// Kyma's CRDs, the two namespaces, compass-sim with the runtime and the
    /// generated applications, and the configuration Secret with a fresh
    /// one-time token.
    async fn new(applications: usize) -> Stage {
        test_support::install_crypto_provider();
        let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("swap-logs");
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).expect("the log directory is created");
        let env = tokio::task::spawn_blocking(test_support::TestEnv::start_new)
            .await
            .expect("start thread")
            .expect("a test apiserver starts");
        let client = env.client().await;
        test_support::install_crds(&client, &kyma_crds())
            .await
            .expect("Kyma's CRDs install");
        for name in [NS, CA_NS] {
            let mut namespace = Namespace::default();
            namespace.metadata.name = Some(name.into());
            Api::<Namespace>::all(client.clone())
                .create(&PostParams::default(), &namespace)
                .await
                .expect("namespace is created");
        }
        let sim = compass_sim::CompassSim::start(compass_sim::SimConfig::default())
            .await
            .expect("compass-sim starts");
        sim.create_runtime(RUNTIME_ID, TENANT)
            .expect("runtime is created");
        sim.set_applications(RUNTIME_ID, director_applications(applications))
            .expect("applications are set");
        let fronts = start_fronts(&sim, &client);
        let token = sim.issue_token(RUNTIME_ID).expect("token is issued");
        let mut secret = Secret::default();
        secret.metadata.name = Some(CONFIG_NAME.into());
        secret.data = Some(
            [
                (
                    "CONNECTOR_URL",
                    sim.connector_url()
                        .replace(&origin_of(sim.connector_url()), &fronts.0.origin),
                ),
                ("RUNTIME_ID", RUNTIME_ID.to_string()),
                ("TENANT", TENANT.to_string()),
                ("TOKEN", token),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.into_bytes())))
            .collect(),
        );
        Api::<Secret>::namespaced(client.clone(), NS)
            .patch(
                CONFIG_NAME,
                &PatchParams::apply("swap-bench").force(),
                &Patch::Apply(&secret),
            )
            .await
            .expect("configuration Secret is written");
        Stage {
            env,
            client,
            sim,
            fronts,
            work,
        }
    }

    /// Kyma's settings for the agent (`tests/fixtures/kyma`'s Deployment),
    /// with short periods and a free health port.
    fn kyma_settings(&self) -> Vec<(String, String)> {
        [
            (
                "APP_AGENT_CONFIGURATION_SECRET",
                "kyma-system/compass-agent-configuration".to_string(),
            ),
            ("APP_CONTROLLER_SYNC_PERIOD", "5s".into()),
            ("APP_MINIMAL_COMPASS_SYNC_TIME", "2s".into()),
            ("APP_CERT_VALIDITY_RENEWAL_THRESHOLD", "0.3".into()),
            (
                "APP_CLUSTER_CERTIFICATES_SECRET",
                "kyma-system/cluster-client-certificates".into(),
            ),
            (
                "APP_CA_CERTIFICATES_SECRET",
                "istio-system/kyma-gateway-certs-cacert".into(),
            ),
            ("APP_SKIP_COMPASS_TLS_VERIFY", "true".into()),
            ("APP_SKIP_APPS_TLS_VERIFY", "false".into()),
            ("APP_GATEWAY_PORT", "8080".into()),
            ("APP_UPLOAD_SERVICE_URL", "".into()),
            ("APP_QUERY_LOGGING", "false".into()),
            ("APP_METRICS_LOGGING_TIME_INTERVAL", "30m".into()),
            (
                "APP_RUNTIME_EVENTS_URL",
                "https://gateway.kyma.example.com".into(),
            ),
            (
                "APP_RUNTIME_CONSOLE_URL",
                "https://console.kyma.example.com".into(),
            ),
            ("APP_HEALTH_PORT", free_port().to_string()),
            (
                "APP_CENTRAL_GATEWAY_SERVICE_URL",
                "http://central-application-gateway.kyma-system.svc.cluster.local:8082".into(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn connections(&self) -> Api<DynamicObject> {
        Api::all_with(self.client.clone(), &connection_resource())
    }

    async fn connection_status(&self) -> Value {
        self.connections()
            .get_opt(CONNECTION)
            .await
            .expect("compass-connection can be read")
            .map(|c| c.data["status"].clone())
            .unwrap_or(Value::Null)
    }

    async fn application_count(&self) -> usize {
        Api::<DynamicObject>::all_with(self.client.clone(), &application_resource())
            .list(&ListParams::default())
            .await
            .expect("Applications list")
            .items
            .len()
    }

    /// Every object either agent may write, by `Kind namespace/name`.
    async fn snapshot(&self) -> Snapshot {
        let mut objects = BTreeMap::new();
        let applications =
            Api::<DynamicObject>::all_with(self.client.clone(), &application_resource())
                .list(&ListParams::default())
                .await
                .expect("Applications list")
                .items;
        for app in applications {
            let name = app.metadata.name.clone().unwrap_or_default();
            objects.insert(
                format!("Application {name}"),
                serde_json::to_value(app).unwrap(),
            );
        }
        for namespace in [NS, CA_NS] {
            let secrets = Api::<Secret>::namespaced(self.client.clone(), namespace)
                .list(&ListParams::default())
                .await
                .expect("Secrets list")
                .items;
            for secret in secrets {
                let name = secret.metadata.name.clone().unwrap_or_default();
                if namespace == NS && name == CONFIG_NAME {
                    continue;
                }
                objects.insert(
                    format!("Secret {namespace}/{name}"),
                    serde_json::to_value(secret).unwrap(),
                );
            }
        }
        if let Some(connection) = self.connections().get_opt(CONNECTION).await.unwrap() {
            objects.insert(
                format!("CompassConnection {CONNECTION}"),
                serde_json::to_value(connection).unwrap(),
            );
        }
        Snapshot { objects }
    }

    /// The apiserver's own count of write requests so far
    /// (`apiserver_request_total`, verbs POST, PUT, PATCH, APPLY, DELETE and
    /// DELETECOLLECTION), by resource, but the apiserver's own lease renewals.
    /// During a run only the agent writes: the bench reads, and the fronts
    /// read the certificate Secret.
    async fn apiserver_writes(&self) -> BTreeMap<String, u64> {
        let request = http::Request::get("/metrics").body(Vec::new()).unwrap();
        let text = self
            .client
            .request_text(request)
            .await
            .expect("the apiserver's metrics");
        let label = |line: &str, name: &str| {
            let start = line.find(&format!("{name}=\""))? + name.len() + 2;
            let end = start + line[start..].find('"')?;
            Some(line[start..end].to_string())
        };
        let mut writes = BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| l.starts_with("apiserver_request_total{"))
        {
            let verb = label(line, "verb").unwrap_or_default();
            if ![
                "POST",
                "PUT",
                "PATCH",
                "APPLY",
                "DELETE",
                "DELETECOLLECTION",
            ]
            .contains(&verb.as_str())
            {
                continue;
            }
            let resource = label(line, "resource").unwrap_or_default();
            // The apiserver's own heartbeat (neither agent elects a leader
            // here).
            if resource == "leases" {
                continue;
            }
            let value = line
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0) as u64;
            *writes.entry(format!("{verb} {resource}")).or_insert(0) += value;
        }
        writes
    }

    /// Starts the Compass figures of a run from zero.
    fn reset_figures(&self) {
        self.sim.clear_request_log();
        for front in [&self.fronts.0, &self.fronts.1] {
            front.rewritten_queries.store(0, Ordering::Relaxed);
        }
    }

    fn sim_figures(&self) -> SimFigures {
        let log = self.sim.request_log();
        SimFigures {
            token_requests: log
                .iter()
                .filter(|e| matches!(e.endpoint, compass_sim::Endpoint::ConnectorToken))
                .count(),
            signing_requests: log
                .iter()
                .filter(|e| {
                    e.operations
                        .iter()
                        .any(|o| o == "signCertificateSigningRequest")
                })
                .count(),
            director_requests: log
                .iter()
                .filter(|e| matches!(e.endpoint, compass_sim::Endpoint::Director))
                .count(),
            rewritten_queries: [&self.fronts.0, &self.fronts.1]
                .iter()
                .map(|f| f.rewritten_queries.swap(0, Ordering::Relaxed))
                .sum(),
        }
    }

    /// Waits until `compass-connection` is `Synchronized` with a
    /// `synchronizationStatus.lastAttempt` other than `previous` and not
    /// before the agent's start (whole seconds, as the field holds them), and, when
    /// `applications` is given, that many Applications exist. Fails at once
    /// when the agent's process ends. Returns the status.
    async fn wait_for_sync(
        &self,
        agent: &mut Agent,
        previous: Option<&str>,
        applications: Option<usize>,
        timeout: Duration,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        let not_before = agent
            .started
            .round(
                jiff::TimestampRound::new()
                    .smallest(jiff::Unit::Second)
                    .mode(jiff::RoundMode::Trunc),
            )
            .unwrap();
        let mut last = Value::Null;
        loop {
            if let Some(status) = agent.child.try_wait().unwrap() {
                panic!(
                    "{} ended ({status}) while waiting for a sync; last status {last}; its log ({}) ends:\n{}",
                    agent.name,
                    agent.log.display(),
                    tail(&agent.log, 40)
                );
            }
            let status = self.connection_status().await;
            let state = status["connectionState"].as_str();
            let attempt = status["synchronizationStatus"]["lastAttempt"].as_str();
            let attempt_ok = attempt.is_some_and(|a| {
                Some(a) != previous && a.parse::<jiff::Timestamp>().is_ok_and(|t| t >= not_before)
            });
            if state == Some("Synchronized") && attempt_ok {
                match applications {
                    Some(count) if self.application_count().await != count => {}
                    _ => return status,
                }
            }
            last = status;
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {} to sync; last status {last}; its log ({}) ends:\n{}",
                agent.name,
                agent.log.display(),
                tail(&agent.log, 40)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A TLS front for one of compass-sim's listeners. The Go agent's Director
/// query asks for `group` and `version { value deprecated deprecatedSince
/// forRemoval }` of every API and event definition; compass-sim does not
/// serve those fields (its applications have no such data) and rejects the
/// whole query. The front removes the two selections from a query (the same
/// answer as a Director returning `null` for them), forwards everything else
/// unchanged, and points the Compass URLs in answers at the fronts. Both
/// agents go through it (same URLs in `compass-connection`). The front of the
/// certificate-secured listener presents the client certificate stored in
/// `kyma-system/cluster-client-certificates`, so compass-sim sees the
/// runtime's own identity. HTTP/1.1, one request per connection.
struct Front {
    origin: String,
    rewritten_queries: Arc<AtomicUsize>,
}

struct FrontShared {
    upstream: String,
    certificate_from: Option<Client>,
    server_ca: String,
    origins: Vec<(String, String)>,
    tls: Arc<rustls::ServerConfig>,
    runtime: tokio::runtime::Handle,
    rewritten_queries: Arc<AtomicUsize>,
}

fn origin_of(url: &str) -> String {
    let url = url::Url::parse(url).expect("a URL");
    url.origin().ascii_serialization()
}

/// Starts the fronts of compass-sim's token-secured and certificate-secured
/// listeners.
fn start_fronts(sim: &compass_sim::CompassSim, client: &Client) -> (Front, Front) {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()])
        .expect("a server certificate");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let tls = Arc::new(
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)
            .expect("a TLS server configuration"),
    );
    let token_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mtls_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let token_origin = format!("https://{}", token_listener.local_addr().unwrap());
    let mtls_origin = format!("https://{}", mtls_listener.local_addr().unwrap());
    let sim_token = origin_of(sim.connector_url());
    let sim_mtls = origin_of(sim.director_url());
    let origins = vec![
        (sim_token.clone(), token_origin.clone()),
        (sim_mtls.clone(), mtls_origin.clone()),
    ];
    let front = |listener: std::net::TcpListener,
                 origin: String,
                 upstream: String,
                 certificate_from: Option<Client>| {
        let rewritten_queries = Arc::new(AtomicUsize::new(0));
        let shared = Arc::new(FrontShared {
            upstream,
            certificate_from,
            server_ca: sim.server_ca_pem().to_string(),
            origins: origins.clone(),
            tls: tls.clone(),
            runtime: tokio::runtime::Handle::current(),
            rewritten_queries: rewritten_queries.clone(),
        });
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let shared = shared.clone();
                std::thread::spawn(move || {
                    if let Err(e) = serve_one(&shared, stream) {
                        eprintln!("front of {}: {e}", shared.upstream);
                    }
                });
            }
        });
        Front {
            origin,
            rewritten_queries,
        }
    };
    (
        front(token_listener, token_origin, sim_token, None),
        front(mtls_listener, mtls_origin, sim_mtls, Some(client.clone())),
    )
}

/// Removes the selections `group` and `version { ... }` from a GraphQL
/// query; `None` when it has neither.
fn without_unserved_fields(query: &str) -> Option<String> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let chars: Vec<char> = query.chars().collect();
    let mut out = String::new();
    let mut changed = false;
    let mut i = 0;
    while i < chars.len() {
        let starts_token = i == 0 || !is_name(chars[i - 1]);
        let word_at = |word: &str| {
            let w: Vec<char> = word.chars().collect();
            starts_token
                && chars[i..].starts_with(&w)
                && chars.get(i + w.len()).is_none_or(|c| !is_name(*c))
        };
        if word_at("group") {
            i += "group".len();
            changed = true;
            continue;
        }
        if word_at("version") {
            let mut j = i + "version".len();
            while chars.get(j).is_some_and(|c| c.is_whitespace()) {
                j += 1;
            }
            if chars.get(j) == Some(&'{') {
                let mut depth = 0;
                while j < chars.len() {
                    match chars[j] {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
                i = j + 1;
                changed = true;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    changed.then_some(out)
}

fn serve_one(shared: &FrontShared, stream: std::net::TcpStream) -> Result<(), String> {
    use std::io::{Read, Write};
    let connection =
        rustls::ServerConnection::new(shared.tls.clone()).map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(connection, stream);
    // The request: head, then a Content-Length or chunked body.
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let read = tls.read(&mut chunk).map_err(|e| e.to_string())?;
        if read == 0 {
            return Ok(()); // a connection closed without a request
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or("GET").to_string();
    let target = parts.next().unwrap_or("/").to_string();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut body = buffer[head_end..].to_vec();
    if let Some(length) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        while body.len() < length {
            let read = tls.read(&mut chunk).map_err(|e| e.to_string())?;
            if read == 0 {
                return Err("the request body ended early".into());
            }
            body.extend_from_slice(&chunk[..read]);
        }
    } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        while !body.ends_with(b"0\r\n\r\n") {
            let read = tls.read(&mut chunk).map_err(|e| e.to_string())?;
            if read == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..read]);
        }
        let mut decoded = Vec::new();
        let mut rest = &body[..];
        while let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&rest[..line_end])
                    .split(';')
                    .next()
                    .unwrap_or("0")
                    .trim(),
                16,
            )
            .unwrap_or(0);
            if size == 0 {
                break;
            }
            let start = line_end + 2;
            decoded.extend_from_slice(&rest[start..start + size]);
            rest = &rest[start + size + 2..];
        }
        body = decoded;
    }
    if let Ok(mut request) = serde_json::from_slice::<Value>(&body) {
        if let Some(query) = request["query"].as_str().and_then(without_unserved_fields) {
            request["query"] = Value::String(query);
            body = serde_json::to_vec(&request).unwrap();
            shared.rewritten_queries.fetch_add(1, Ordering::Relaxed);
        }
    }
    let (status, content_type, answer) = shared
        .runtime
        .block_on(forward(shared, &method, &target, &headers, body))?;
    let mut answer = String::from_utf8_lossy(&answer).to_string();
    for (from, to) in &shared.origins {
        answer = answer.replace(from.as_str(), to.as_str());
    }
    let response = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        answer.len()
    );
    tls.write_all(response.as_bytes())
        .map_err(|e| e.to_string())?;
    tls.flush().map_err(|e| e.to_string())?;
    tls.conn.send_close_notify();
    let _ = tls.flush();
    Ok(())
}

async fn forward(
    shared: &FrontShared,
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> Result<(reqwest::StatusCode, String, Vec<u8>), String> {
    let mut builder = reqwest::Client::builder()
        .tls_certs_merge(
            reqwest::Certificate::from_pem_bundle(shared.server_ca.as_bytes())
                .map_err(|e| e.to_string())?,
        )
        .timeout(Duration::from_secs(60));
    if let Some(client) = &shared.certificate_from {
        let stored = Api::<Secret>::namespaced(client.clone(), NS)
            .get(CERTIFICATES)
            .await
            .map_err(|e| format!("the client certificate cannot be read: {e}"))?;
        let data = stored.data.unwrap_or_default();
        let text = |key: &str| {
            data.get(key)
                .map(|v| String::from_utf8_lossy(&v.0).to_string())
                .unwrap_or_default()
        };
        let chain = match text("crtChain") {
            chain if chain.is_empty() => text("crt"),
            chain => chain,
        };
        builder = builder.identity(
            reqwest::Identity::from_pem(format!("{}\n{chain}", text("key")).as_bytes())
                .map_err(|e| format!("the stored client certificate does not load: {e}"))?,
        );
    }
    let client = builder.build().map_err(|e| e.to_string())?;
    let mut request = client.request(
        reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?,
        format!("{}{target}", shared.upstream),
    );
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        if [
            "host",
            "content-length",
            "connection",
            "transfer-encoding",
            "accept-encoding",
        ]
        .contains(&lower.as_str())
        {
            continue;
        }
        request = request.header(name, value);
    }
    let response = request
        .body(body)
        .send()
        .await
        .map_err(|e| format!("compass-sim does not answer: {e}"))?;
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let answer = response.bytes().await.map_err(|e| e.to_string())?;
    Ok((status, content_type, answer.to_vec()))
}

/// The Director's applications: generated ones (`generate_applications(n,
/// 2, 3, 1)`: Basic and OAuth credentials, a header per bundle), seven of
/// them varied where the two agents' converters could differ: a bundle name
/// without an ASCII letter or digit; characters Go's JSON escapes (`<>&`) in
/// a header and an API description, and an empty query-parameter map;
/// Director labels, no provider and no description; a CSRF request auth and
/// an input schema; a bundle without credentials and one with query
/// parameters; bundles with no APIs or nothing at all; a name that needs
/// normalizing.
fn director_applications(count: usize) -> Vec<compass_sim::model::Application> {
    use compass_sim::model::{CsrfAuth, MultiMap, RequestAuth};
    let mut apps = compass_sim::model::generate_applications(count, 2, 3, 1);
    if count < 7 {
        return apps;
    }
    apps[0].bundles[0].name = "日本語".into();
    let auth = apps[1].bundles[1].default_instance_auth.as_mut().unwrap();
    auth.additional_headers = Some(MultiMap::from([(
        "X-Filter".to_string(),
        vec!["a<b & c>d".to_string()],
    )]));
    auth.additional_query_params = Some(MultiMap::new());
    apps[1].bundles[0].api_definitions[0].description = Some("<v1> & more".into());
    apps[2].labels = serde_json::from_value(serde_json::json!({
        "scenarios": ["DEFAULT"],
        "owner": "team-a"
    }))
    .unwrap();
    apps[2].provider_name = None;
    apps[2].description = None;
    let bundle = &mut apps[3].bundles[0];
    bundle.instance_auth_request_input_schema = Some(r#"{"type":"object"}"#.into());
    bundle.default_instance_auth.as_mut().unwrap().request_auth = Some(RequestAuth {
        csrf: Some(CsrfAuth {
            token_endpoint_url: "https://csrf.example.com/token".into(),
        }),
    });
    apps[4].bundles[1].default_instance_auth = None;
    apps[4].bundles[0]
        .default_instance_auth
        .as_mut()
        .unwrap()
        .additional_query_params = Some(MultiMap::from([(
        "api-version".to_string(),
        vec!["1".to_string(), "2".to_string()],
    )]));
    apps[5].bundles[0].api_definitions.clear();
    apps[5].bundles[1].api_definitions.clear();
    apps[5].bundles[1].event_definitions.clear();
    apps[6].name = "Application_With.UPPER case-6".into();
    apps
}

fn kyma_crds() -> Vec<CustomResourceDefinition> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kyma/crds.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|document| Value::deserialize(document).expect("valid YAML"))
        .filter(|document| document["kind"] == "CustomResourceDefinition")
        .map(|document| serde_json::from_value(document).expect("a CRD"))
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[derive(Clone, Copy, Default)]
struct SimFigures {
    token_requests: usize,
    signing_requests: usize,
    director_requests: usize,
    /// Queries whose `group` / `version` selections the fronts removed.
    rewritten_queries: usize,
}

/// A running agent process.
struct Agent {
    name: String,
    child: Child,
    log: PathBuf,
    metrics_url: String,
    started: jiff::Timestamp,
    go: bool,
}

impl Agent {
    fn start_go(stage: &Stage, binary: &str, run: usize) -> Agent {
        let log = stage.work.join(format!("run{run}-go-agent.log"));
        let output = std::fs::File::create(&log).unwrap();
        let port = stage
            .env
            .server_url()
            .rsplit(':')
            .next()
            .unwrap()
            .to_string();
        // A private mount namespace with a dummy service-account token for the
        // Go agent's cluster-metrics logger (see the module's comment); the
        // agent ends with the bench (setpriv --pdeathsig). Named as in Kyma's
        // image (`/app/compass-runtime-agent`): client-go takes its field
        // manager, seen in managedFields, from argv[0].
        let script = "mount -t tmpfs tmpfs /run \
             && mkdir -p /run/secrets/kubernetes.io/serviceaccount \
             && printf swap-bench > /run/secrets/kubernetes.io/serviceaccount/token \
             && exec -a compass-runtime-agent \"$1\"";
        let child = Command::new("setpriv")
            .args([
                "--pdeathsig",
                "TERM",
                "unshare",
                "--mount",
                "bash",
                "-c",
                script,
            ])
            .args(["go-agent", binary])
            .envs(stage.kyma_settings())
            .env("KUBECONFIG", stage.env.kubeconfig_path())
            .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
            .env("KUBERNETES_SERVICE_PORT", port)
            .stdin(Stdio::null())
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .spawn()
            .expect("unshare starts the Go agent");
        Agent {
            name: format!("the Go agent (run {run})"),
            child,
            log,
            metrics_url: "http://127.0.0.1:8080/metrics".into(),
            started: jiff::Timestamp::now(),
            go: true,
        }
    }

    fn start_ours(stage: &Stage, run: usize) -> Agent {
        let log = stage.work.join(format!("run{run}-our-agent.log"));
        let output = std::fs::File::create(&log).unwrap();
        let metrics_port = free_port();
        let child = Command::new("setpriv")
            .args([
                "--pdeathsig",
                "TERM",
                env!("CARGO_BIN_EXE_compass-runtime-agent"),
            ])
            .envs(stage.kyma_settings())
            .env("KUBECONFIG", stage.env.kubeconfig_path())
            .env("APP_HEALTH_ADDRESS", "127.0.0.1")
            .env("APP_METRICS_ADDRESS", format!("127.0.0.1:{metrics_port}"))
            .env("APP_LOG_LEVEL", "info")
            .stdin(Stdio::null())
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .spawn()
            .expect("our agent starts");
        Agent {
            name: format!("our agent (run {run})"),
            child,
            log,
            metrics_url: format!("http://127.0.0.1:{metrics_port}/metrics"),
            started: jiff::Timestamp::now(),
            go: false,
        }
    }

    /// The Kubernetes writes the agent counted itself so far, and the
    /// counter lines behind the figure (the Go agent's: all its requests).
    async fn writes(&self) -> (Option<u64>, Vec<String>) {
        let Some(text) = async {
            reqwest::get(&self.metrics_url)
                .await
                .ok()?
                .text()
                .await
                .ok()
        }
        .await
        else {
            return (None, Vec::new());
        };
        let family = if self.go {
            "rest_client_requests_total{"
        } else {
            "compass_runtime_agent_kubernetes_writes_total{"
        };
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(family)).collect();
        let value = |l: &str| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
        let total = lines
            .iter()
            .filter(|l| {
                !self.go
                    || ["POST", "PUT", "PATCH", "DELETE"]
                        .iter()
                        .any(|m| l.contains(&format!("method=\"{m}\"")))
            })
            .filter_map(|l| value(l))
            .sum::<f64>() as u64;
        let shown = lines
            .iter()
            .filter(|l| value(l).is_some_and(|v| v > 0.0))
            .map(|l| l.to_string())
            .collect();
        (Some(total), shown)
    }

    /// SIGTERM, then waits (30 s, then SIGKILL).
    fn stop(mut self) -> (ExitStatus, String) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break self.child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        (status, log)
    }
}

/// An agent left running (a panic on the way) is stopped; one whose
/// bench process dies gets SIGTERM (`setpriv --pdeathsig`).
impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

struct Snapshot {
    objects: BTreeMap<String, Value>,
}

impl Snapshot {
    fn count(&self, kind: &str) -> usize {
        self.objects
            .keys()
            .filter(|k| k.starts_with(&format!("{kind} ")))
            .count()
    }

    fn certificate(&self) -> Option<&Value> {
        self.objects
            .get(&format!("Secret {NS}/{CERTIFICATES}"))
            .map(|s| &s["data"]["crt"])
    }
}

/// One differing JSON path of one object.
struct Difference {
    object: String,
    path: String,
    before: Option<Value>,
    after: Option<Value>,
}

/// What one run rewrote, against the snapshot before it.
struct Comparison {
    direction: String,
    applications: usize,
    secrets: usize,
    rewritten: Vec<String>,
    replaced: Vec<String>,
    created: Vec<String>,
    deleted: Vec<String>,
    differences: Vec<Difference>,
    certificate_changed: bool,
    sim: SimFigures,
    agent_writes: Option<u64>,
    /// The apiserver's count of write requests during the run, by verb and
    /// resource.
    apiserver_writes: BTreeMap<String, u64>,
    exit: String,
    notes: Vec<String>,
}

impl Comparison {
    fn rewritten_of(&self, kind: &str) -> usize {
        self.rewritten
            .iter()
            .filter(|k| k.starts_with(&format!("{kind} ")))
            .count()
    }

    fn replaced_of(&self, kind: &str) -> usize {
        self.replaced
            .iter()
            .filter(|k| k.starts_with(&format!("{kind} ")))
            .count()
    }

    /// Differing paths, array indexes folded, with how many objects show
    /// each, for Applications and Secrets (the connection's status moves on
    /// every sync by design).
    fn path_counts(&self) -> BTreeMap<String, (usize, &Difference)> {
        let mut counts: BTreeMap<String, (usize, &Difference)> = BTreeMap::new();
        for difference in &self.differences {
            let kind = difference.object.split(' ').next().unwrap_or("");
            let key = format!("{kind} {}", fold_indexes(&difference.path));
            counts.entry(key).or_insert((0, difference)).0 += 1;
        }
        counts
    }
}

fn compare(
    direction: &str,
    before: &Snapshot,
    after: &Snapshot,
    sim: SimFigures,
    agent_writes: Option<u64>,
    exit: String,
) -> Comparison {
    let mut comparison = Comparison {
        direction: direction.into(),
        applications: after.count("Application"),
        secrets: after.count("Secret"),
        rewritten: Vec::new(),
        replaced: Vec::new(),
        created: Vec::new(),
        deleted: Vec::new(),
        differences: Vec::new(),
        certificate_changed: before.certificate() != after.certificate(),
        sim,
        agent_writes,
        apiserver_writes: BTreeMap::new(),
        exit,
        notes: Vec::new(),
    };
    for (key, old) in &before.objects {
        let Some(new) = after.objects.get(key) else {
            comparison.deleted.push(key.clone());
            continue;
        };
        if old["metadata"]["uid"] != new["metadata"]["uid"] {
            comparison.replaced.push(key.clone());
        } else if old["metadata"]["resourceVersion"] != new["metadata"]["resourceVersion"] {
            comparison.rewritten.push(key.clone());
        } else {
            continue;
        }
        let mut found = Vec::new();
        json_diff("", &comparable(old), &comparable(new), &mut found);
        for (path, before, after) in found {
            comparison.differences.push(Difference {
                object: key.clone(),
                path,
                before,
                after,
            });
        }
    }
    for key in after.objects.keys() {
        if !before.objects.contains_key(key) {
            comparison.created.push(key.clone());
        }
    }
    comparison
}

/// The object without `resourceVersion`, with `managedFields` reduced to
/// `manager operation (subresource) time` per entry, and Secret data
/// decoded where it is text.
fn comparable(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(metadata) = object["metadata"].as_object_mut() {
        metadata.remove("resourceVersion");
        if let Some(fields) = metadata.remove("managedFields") {
            let entries: Vec<Value> = fields
                .as_array()
                .into_iter()
                .flatten()
                .map(|f| {
                    Value::String(format!(
                        "{} {}{} {}",
                        f["manager"].as_str().unwrap_or("?"),
                        f["operation"].as_str().unwrap_or("?"),
                        f["subresource"]
                            .as_str()
                            .map(|s| format!(" ({s})"))
                            .unwrap_or_default(),
                        f["time"].as_str().unwrap_or("?")
                    ))
                })
                .collect();
            metadata.insert("managedFields".into(), Value::Array(entries));
        }
    }
    if let Some(data) = object.get_mut("data").and_then(Value::as_object_mut) {
        if object_is_secret_data(data) {
            for value in data.values_mut() {
                if let Some(text) = value.as_str().and_then(|encoded| {
                    base64::engine::general_purpose::STANDARD
                        .decode(encoded)
                        .ok()
                        .and_then(|bytes| String::from_utf8(bytes).ok())
                }) {
                    *value = Value::String(text);
                }
            }
        }
    }
    object
}

fn object_is_secret_data(data: &serde_json::Map<String, Value>) -> bool {
    data.values().all(Value::is_string)
}

fn json_diff(
    path: &str,
    old: &Value,
    new: &Value,
    out: &mut Vec<(String, Option<Value>, Option<Value>)>,
) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => json_diff(&child, x, y, out),
                    (x, y) => out.push((child, x.cloned(), y.cloned())),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                json_diff(&format!("{path}[{i}]"), x, y, out);
            }
        }
        (a, b) if a != b => out.push((path.to_string(), Some(a.clone()), Some(b.clone()))),
        _ => {}
    }
}

fn fold_indexes(path: &str) -> String {
    let mut folded = String::new();
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                folded.push_str("[*]");
            }
            ']' => in_index = false,
            _ if in_index => {}
            _ => folded.push(c),
        }
    }
    folded
}

fn shown(value: &Option<Value>) -> String {
    let text = match value {
        None => "(absent)".to_string(),
        Some(v) => v.to_string(),
    };
    if text.chars().count() > 110 {
        format!("{}…", text.chars().take(110).collect::<String>())
    } else {
        text
    }
}

fn wait_for_port_8080_free() -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match std::net::TcpListener::bind("0.0.0.0:8080") {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                return Err(format!(
                    "port 8080 (the Go agent's controller-runtime metrics server) is taken: {e}"
                ))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

fn exit_text(status: ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("exit code {code}"),
        None => format!("ended by {status}"),
    }
}

/// What the Go agent's log says about a crash on what it found.
fn go_log_findings(log: &str) -> Vec<String> {
    let mut findings = Vec::new();
    for needle in [
        "Failed to decode client key",
        "level=fatal",
        "level=panic",
        "panic:",
    ] {
        let count = log.matches(needle).count();
        if count > 0 {
            findings.push(format!("log has {count}× {needle:?}"));
        }
    }
    let errors = log.lines().filter(|l| l.contains("level=error")).count();
    if errors > 0 {
        findings.push(format!("{errors} error line(s)"));
    }
    findings
}

/// Runs the Go agent until `syncs` syncs after its start ended Synchronized
/// (the first of them with all `applications` in place), then stops it.
async fn run_go(
    stage: &Stage,
    binary: &str,
    run: usize,
    applications: usize,
    before: &Snapshot,
    direction: &str,
    syncs: usize,
) -> (Comparison, Snapshot) {
    wait_for_port_8080_free().unwrap_or_else(|e| panic!("{e}"));
    let previous_status = stage.connection_status().await;
    let mut previous = previous_status["synchronizationStatus"]["lastAttempt"]
        .as_str()
        .map(str::to_string);
    stage.reset_figures();
    let writes_before = stage.apiserver_writes().await;
    let mut agent = Agent::start_go(stage, binary, run);
    let started = Instant::now();
    for sync in 0..syncs {
        let status = stage
            .wait_for_sync(
                &mut agent,
                previous.as_deref(),
                Some(applications),
                Duration::from_secs(600),
            )
            .await;
        eprintln!(
            "{}: sync {} done after {:.1} s (lastAttempt {})",
            agent.name,
            sync + 1,
            started.elapsed().as_secs_f64(),
            status["synchronizationStatus"]["lastAttempt"]
        );
        previous = status["synchronizationStatus"]["lastAttempt"]
            .as_str()
            .map(str::to_string);
    }
    let (writes, counters) = agent.writes().await;
    let sim = stage.sim_figures();
    let name = agent.name.clone();
    let log_path = agent.log.clone();
    let (status, log) = agent.stop();
    let after = stage.snapshot().await;
    let apiserver_writes = writes_during(&writes_before, &stage.apiserver_writes().await);
    let mut findings = go_log_findings(&log);
    findings.insert(0, exit_text(status));
    let mut comparison = compare(direction, before, &after, sim, writes, findings.join("; "));
    comparison
        .notes
        .push(format!("{name}'s log: {}", log_path.display()));
    comparison.notes.extend(counters);
    comparison.apiserver_writes = apiserver_writes;
    (comparison, after)
}

async fn run_ours(stage: &Stage, run: usize, before: &Snapshot) -> (Comparison, Snapshot) {
    let previous_status = stage.connection_status().await;
    let previous = previous_status["synchronizationStatus"]["lastAttempt"]
        .as_str()
        .map(str::to_string);
    stage.reset_figures();
    let writes_before = stage.apiserver_writes().await;
    let mut agent = Agent::start_ours(stage, run);
    let started = Instant::now();
    let status = stage
        .wait_for_sync(
            &mut agent,
            previous.as_deref(),
            None,
            Duration::from_secs(600),
        )
        .await;
    eprintln!(
        "{}: sync done after {:.1} s (lastAttempt {})",
        agent.name,
        started.elapsed().as_secs_f64(),
        status["synchronizationStatus"]["lastAttempt"]
    );
    let (writes, counters) = agent.writes().await;
    let sim = stage.sim_figures();
    let log_path = agent.log.clone();
    let (status, log) = agent.stop();
    let after = stage.snapshot().await;
    let apiserver_writes = writes_during(&writes_before, &stage.apiserver_writes().await);
    let mut comparison = compare(
        "Go → ours",
        before,
        &after,
        sim,
        writes,
        format!(
            "{}; {} ERROR/WARN line(s)",
            exit_text(status),
            log.lines()
                .filter(|l| l.contains("ERROR") || l.contains("WARN"))
                .count()
        ),
    );
    comparison
        .notes
        .push(format!("our agent's log: {}", log_path.display()));
    comparison.notes.extend(counters);
    comparison.apiserver_writes = apiserver_writes;
    (comparison, after)
}

/// The counts that grew between two readings of the apiserver's writes.
fn writes_during(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(key, value)| (key.clone(), value - before.get(key).copied().unwrap_or(0)))
        .filter(|(_, value)| *value > 0)
        .collect()
}

fn apiserver_writes_text(writes: &BTreeMap<String, u64>) -> String {
    if writes.is_empty() {
        return "none".into();
    }
    writes
        .iter()
        .map(|(key, value)| format!("{value} {key}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_comparison(comparison: &Comparison) {
    println!();
    println!("## {}", comparison.direction);
    println!(
        "after it: {} Applications, {} Secrets; rewritten {} ({} Applications, {} Secrets, connection {}); replaced {} ({} Applications, {} Secrets); created {}; deleted {}",
        comparison.applications,
        comparison.secrets,
        comparison.rewritten.len(),
        comparison.rewritten_of("Application"),
        comparison.rewritten_of("Secret"),
        if comparison.rewritten_of("CompassConnection") > 0 { "yes" } else { "no" },
        comparison.replaced.len(),
        comparison.replaced_of("Application"),
        comparison.replaced_of("Secret"),
        comparison.created.len(),
        comparison.deleted.len()
    );
    println!(
        "agent's own count of Kubernetes writes: {}; Connector requests with the token: {}; signing requests: {}; Director requests: {} ({} without group/version); certificate changed: {}",
        comparison
            .agent_writes
            .map(|w| w.to_string())
            .unwrap_or_else(|| "n/a".into()),
        comparison.sim.token_requests,
        comparison.sim.signing_requests,
        comparison.sim.director_requests,
        comparison.sim.rewritten_queries,
        comparison.certificate_changed
    );
    println!(
        "writes the apiserver served during the run: {}",
        apiserver_writes_text(&comparison.apiserver_writes)
    );
    println!("process: {}", comparison.exit);
    for note in &comparison.notes {
        println!("{note}");
    }
    for (label, list) in [
        ("rewritten", &comparison.rewritten),
        ("replaced", &comparison.replaced),
        ("created", &comparison.created),
        ("deleted", &comparison.deleted),
    ] {
        if list.is_empty() {
            continue;
        }
        let shown: Vec<&str> = list.iter().take(8).map(String::as_str).collect();
        let more = list.len().saturating_sub(shown.len());
        println!(
            "{label}: {}{}",
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        );
    }
    let counts = comparison.path_counts();
    if !counts.is_empty() {
        println!("differing JSON paths (objects showing it; one example, before → after):");
        for (path, (count, example)) in counts {
            println!(
                "  {path}  ×{count}  e.g. {}: {} → {}",
                example.object,
                shown(&example.before),
                shown(&example.after)
            );
        }
    }
}

fn print_table(comparisons: &[Comparison]) {
    println!();
    println!("| direction | applications | secrets | rewritten applications | rewritten secrets | replaced (uid changed) | created / deleted | certificate changed? | token used? | agent's own write count¹ | writes the apiserver served | differing JSON paths (Applications and Secrets) |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for c in comparisons {
        let mut paths: Vec<String> = c
            .path_counts()
            .into_iter()
            .filter(|(path, _)| !path.starts_with("CompassConnection "))
            .map(|(path, (count, _))| format!("`{path}` ×{count}"))
            .collect();
        if paths.is_empty() {
            paths.push("none".into());
        }
        println!(
            "| {} | {} | {} | {} | {} | {} | {} / {} | {} | {} | {} | {} | {} |",
            c.direction,
            c.applications,
            c.secrets,
            c.rewritten_of("Application"),
            c.rewritten_of("Secret"),
            c.replaced.len(),
            c.created.len(),
            c.deleted.len(),
            if c.certificate_changed { "yes" } else { "no" },
            if c.sim.token_requests > 0 {
                format!("yes ({})", c.sim.token_requests)
            } else {
                "no".into()
            },
            c.agent_writes
                .map(|w| w.to_string())
                .unwrap_or_else(|| "n/a".into()),
            apiserver_writes_text(&c.apiserver_writes),
            paths.join("; ")
        );
    }
    println!();
    println!("¹ the Go agent: controller-runtime's rest_client_requests_total, POST/PUT/PATCH/DELETE, compass-connection included; ours: compass_runtime_agent_kubernetes_writes_total (Applications and Secrets)");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes --bench; under `cargo test --all-targets` nothing runs.
    if !std::env::args().any(|a| a == "--bench") {
        println!("swap: a measurement for `cargo bench` (needs GO_AGENT_BIN); nothing to do under `cargo test`");
        return;
    }
    let Some(go_agent) = std::env::var("GO_AGENT_BIN").ok().filter(|v| !v.is_empty()) else {
        println!("swap: GO_AGENT_BIN is not set (the Go agent's binary, built from application-connector-manager's components/compass-runtime-agent); nothing measured");
        return;
    };
    if let Err(e) = wait_for_port_8080_free() {
        println!("swap: {e}; nothing measured");
        return;
    }
    let applications: usize = std::env::var("BENCH_APPLICATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let stage = Stage::new(applications).await;
    let empty = Snapshot {
        objects: BTreeMap::new(),
    };
    eprintln!("the agents' logs: {}", stage.work.display());

    // 1. The Go agent connects with the token and synchronizes; one more sync.
    let (first, after_go) = run_go(
        &stage,
        &go_agent,
        1,
        applications,
        &empty,
        "(empty) → Go, connect + 2 syncs",
        2,
    )
    .await;
    // 2. Control: the Go agent restarted on what it left itself.
    let (control, after_control) = run_go(
        &stage,
        &go_agent,
        2,
        applications,
        &after_go,
        "Go → Go (restart, control)",
        1,
    )
    .await;
    // 3. Our agent on what the Go agent left.
    let (ours, after_ours) = run_ours(&stage, 3, &after_control).await;
    // 4. The Go agent on what ours left.
    let (back, _) = run_go(
        &stage,
        &go_agent,
        4,
        applications,
        &after_ours,
        "ours → Go",
        1,
    )
    .await;

    println!("swapping with the Go agent: what each run rewrote");
    println!(
        "machine: {} cores; apiserver {}; Go agent {}; our agent {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        stage.env.server_version(),
        go_agent,
        env!("CARGO_BIN_EXE_compass-runtime-agent")
    );
    println!("Director: {applications} applications × 2 bundles × 3 APIs, 1 event (Basic/OAuth credentials and headers per bundle; 7 varied, see director_applications)");
    for comparison in [&first, &control, &ours, &back] {
        print_comparison(comparison);
    }
    print_table(&[first, control, ours, back]);
}
