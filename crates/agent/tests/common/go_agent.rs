//! What the Go agent makes of the objects our agent left: the program in
//! `testenv/goagent-load` loads them with the Go agent's own calls
//! (`pem.Decode` + `x509.ParsePKCS1PrivateKey`, `x509.ParseCertificate` of
//! each chain block, `tls.X509KeyPair`, the CompassConnection and
//! Application JSON as its types read it). Built once per test binary; needs
//! only Go's standard library.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use compass_runtime_agent::config::Settings;
use compass_runtime_agent::crd::{CompassConnection, COMPASS_CONNECTION_NAME};
use k8s_openapi::api::core::v1::Secret;
use kube::api::ListParams;
use kube::{Api, Client};
use serde_json::{json, Value};

use super::NS;

fn loader() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testenv/goagent-load");
        let binary = Path::new(env!("CARGO_TARGET_TMPDIR")).join("goagent-load");
        let output = Command::new("go")
            .arg("build")
            .arg("-o")
            .arg(&binary)
            .arg(".")
            .current_dir(&source)
            .output()
            .expect("go runs (Go is a test dependency: it builds the test apiserver)");
        assert!(
            output.status.success(),
            "go build of {} failed: {}",
            source.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        binary
    })
}

/// Loads the objects as the Go agent would on its start and in a cycle.
/// `Ok(report)` when it could work from them, `Err(what it could not load)`.
pub fn go_agent_loads(input: &Value) -> Result<String, String> {
    let mut child = Command::new(loader())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the Go loader starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.to_string().as_bytes())
        .expect("the input is written");
    let output = child.wait_with_output().expect("the Go loader ends");
    let text = String::from_utf8_lossy(&output.stdout).trim().to_string();
    match output.status.success() {
        true => Ok(text),
        false => Err(format!("{text}{}", String::from_utf8_lossy(&output.stderr))),
    }
}

/// Everything the agent left that the Go agent reads: both credential
/// Secrets, `compass-connection`, the managed Applications and the Secrets
/// in the integration namespace that carry the `bundleId` label. Read with
/// `client` (an admin's).
pub async fn left_in_the_cluster(client: &Client, settings: &Settings) -> Value {
    let secret = |name: &compass_runtime_agent::config::NamespacedName| {
        let api: Api<Secret> = Api::namespaced(client.clone(), &name.namespace);
        let name = name.name.clone();
        async move {
            api.get(&name)
                .await
                .unwrap_or_else(|e| panic!("the Secret {name} can be read: {e}"))
        }
    };
    let certificates = secret(&settings.cluster_certificates_secret).await;
    let ca = secret(&settings.ca_certificates_secret).await;
    let connection = Api::<CompassConnection>::all(client.clone())
        .get(COMPASS_CONNECTION_NAME)
        .await
        .expect("compass-connection can be read");
    let applications: Vec<Value> = Api::<kube::api::DynamicObject>::all_with(
        client.clone(),
        &kube::api::ApiResource::erase::<compass_runtime_agent::crd::application::Application>(&()),
    )
    .list(&ListParams::default())
    .await
    .expect("Applications list")
    .items
    .into_iter()
    .map(|app| serde_json::to_value(app).expect("an Application is JSON"))
    .filter(|app| app["spec"]["compassMetadata"].is_object())
    .collect();
    let secrets: Vec<Value> = Api::<Secret>::namespaced(client.clone(), NS)
        .list(&ListParams::default().labels("bundleId"))
        .await
        .expect("Secrets list")
        .items
        .into_iter()
        .map(|s| serde_json::to_value(s).expect("a Secret is JSON"))
        .collect();
    json!({
        "clusterCertificates": certificates,
        "caCertificates": ca,
        "compassConnection": connection,
        "applications": applications,
        "secrets": secrets,
        "settings": {
            "renewalThreshold": settings.cert_validity_renewal_threshold,
            "minimalSyncSeconds": settings.minimal_compass_sync_time.as_secs_f64(),
        },
    })
}

/// Asserts that the Go agent could take over from what is in the cluster now
/// and would not renew at once; returns its report.
pub async fn assert_go_agent_takes_over(
    client: &Client,
    settings: &Settings,
    when: &str,
) -> String {
    let input = left_in_the_cluster(client, settings).await;
    let report = go_agent_loads(&input).unwrap_or_else(|error| {
        panic!("{when}: the Go agent cannot start from what we left: {error}")
    });
    assert!(
        report.contains("renews at once: false"),
        "{when}: the Go agent would renew at once: {report}"
    );
    report
}
