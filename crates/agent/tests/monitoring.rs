//! `deploy/monitoring/`: the alerting rules, their PrometheusRule and
//! PodMonitor, and the Grafana dashboard, tested as an operator relies on them:
//!
//! - `promtool check rules` and `promtool test rules` pass, and each alert's
//!   tests fail without that alert (so every alert has a test that fires it);
//! - every alert says what to do, has a runbook section and tests that keep
//!   it quiet; the PrometheusRule carries exactly the rules of `rules.yaml`;
//!   the PodMonitor scrapes the Pods of Kyma's Deployment and of `deploy/`'s
//!   under the job the rules select;
//! - every metric a rule or a panel names is served by a running agent (a
//!   rename fails here);
//! - a real Prometheus (Debian's, on loopback, a temporary storage directory,
//!   1 s scrape and evaluation) with the same rules, test-sized, scrapes the
//!   agent binary while compass-sim's faults drive it into each state: each
//!   alert fires, alone, and resolves when the fault ends; every dashboard
//!   query returns data.
//!
//! promtool and prometheus come from Debian's `prometheus` package
//! (`.ci/run` installs it). Without them the tests that need them are skipped
//! and say so, unless `CI` is set: then they fail.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{free_port, tool_is_installed, World, LONG, NS, RUNTIME_ID, SHORT};
use compass_runtime_agent::certificates::renewal;
use compass_runtime_agent::certificates::ClientCredentials;
use compass_runtime_agent::crd::application::{Application, ApplicationSpec};
use compass_runtime_agent::crd::ConnectionState;
use compass_sim::{Endpoint, Fault, FaultKind, FaultTimes};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{DeleteParams, PostParams};
use kube::Api;
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;
use test_support::wait_for;
use tokio::process::{Child, Command};

/// The job the rules select (`up{job="compass-runtime-agent"}`).
const JOB: &str = "compass-runtime-agent";
const LEASE: &str = "compass-runtime-agent";

fn monitoring_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/monitoring")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn yaml(path: &Path) -> Yaml {
    serde_yaml::from_str(&read(path))
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
}

// ---------------------------------------------------------------------------
// The rules and the dashboard, as data
// ---------------------------------------------------------------------------

struct Alert {
    name: String,
    expr: String,
    for_: String,
    rule: Yaml,
}

fn alerts_of(rules: &Yaml) -> Vec<Alert> {
    let groups = rules["groups"]
        .as_sequence()
        .expect("the rule file has groups");
    groups
        .iter()
        .flat_map(|group| group["rules"].as_sequence().expect("a group has rules"))
        .map(|rule| Alert {
            name: rule["alert"]
                .as_str()
                .expect("every rule is an alert")
                .to_string(),
            expr: rule["expr"]
                .as_str()
                .expect("an alert has expr")
                .to_string(),
            for_: rule["for"].as_str().unwrap_or("0s").to_string(),
            rule: rule.clone(),
        })
        .collect()
}

fn rules() -> Yaml {
    yaml(&monitoring_dir().join("rules.yaml"))
}

fn dashboard() -> Json {
    let path = monitoring_dir().join("dashboard.json");
    serde_json::from_str(&read(&path))
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Every panel's queries, rows' nested panels included: (panel title, expr).
fn panel_queries(dashboard: &Json) -> Vec<(String, String)> {
    fn walk(panels: &Json, out: &mut Vec<(String, String)>) {
        for panel in panels.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("(untitled)").to_string();
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push((title.clone(), expr.to_string()));
                }
            }
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// The dashboard's variables as the test evaluates its queries: a constant
/// is its value, a query variable with "All" is its `allValue`, and
/// Grafana's `$__rate_interval` is 1m (four 1 s scrapes fit many times).
fn dashboard_variables(dashboard: &Json) -> Vec<(String, String)> {
    let mut values = vec![("__rate_interval".to_string(), "1m".to_string())];
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let name = variable["name"].as_str().expect("a variable has a name");
        match variable["type"].as_str() {
            Some("constant") => values.push((
                name.into(),
                variable["query"]
                    .as_str()
                    .expect("a constant's value")
                    .into(),
            )),
            Some("query") => values.push((
                name.into(),
                variable["allValue"]
                    .as_str()
                    .unwrap_or_else(|| panic!("the variable {name} has no allValue"))
                    .into(),
            )),
            _ => {}
        }
    }
    // Longest first, so that `$instance_x` would not be cut by `$instance`.
    values.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
    values
}

fn with_variables(expr: &str, variables: &[(String, String)]) -> String {
    let mut expr = expr.to_string();
    for (name, value) in variables {
        expr = expr
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("${name}"), value);
    }
    assert!(
        !expr.contains('$'),
        "a dashboard query uses a variable the dashboard does not define: {expr}"
    );
    expr
}

/// The variables' own queries (`label_values(<selector>, <label>)`).
fn variable_queries(dashboard: &Json) -> Vec<String> {
    dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|variable| variable["type"] == "query")
        .map(|variable| {
            variable["definition"]
                .as_str()
                .or(variable["query"]["query"].as_str())
                .or(variable["query"].as_str())
                .expect("a query variable has a query")
                .to_string()
        })
        .collect()
}

/// The agent's metric names in a PromQL expression (all carry the prefix).
fn agent_metric_names(expr: &str) -> BTreeSet<String> {
    const PREFIX: &str = "compass_runtime_agent_";
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find(PREFIX) {
        let preceded_by_word = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        if !preceded_by_word {
            names.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    names
}

/// The sample names a scrape of this `/metrics` text can yield: each family
/// with its type's suffixes (OpenMetrics names a counter's family without
/// `_total`), and every sample's name.
fn served_names(metrics: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in metrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split_whitespace();
            let (Some(name), Some(kind)) = (words.next(), words.next()) else {
                continue;
            };
            match kind {
                "counter" => {
                    names.insert(format!("{name}_total"));
                }
                "histogram" => {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        names.insert(format!("{name}{suffix}"));
                    }
                }
                _ => {
                    names.insert(name.to_string());
                }
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_string());
        }
    }
    names
}

/// Seconds of a Prometheus duration (`30s`, `5m`, `1h`, `1h30m`).
fn seconds(duration: &str) -> u64 {
    let mut total = 0;
    let mut number = String::new();
    let mut chars = duration.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let value: u64 = number
            .parse()
            .unwrap_or_else(|_| panic!("not a duration: {duration}"));
        number.clear();
        total += value
            * match c {
                's' => 1,
                'm' if chars.peek() == Some(&'s') => {
                    chars.next();
                    0
                }
                'm' => 60,
                'h' => 3600,
                'd' => 86400,
                'w' => 7 * 86400,
                _ => panic!("not a duration: {duration}"),
            };
    }
    assert!(number.is_empty(), "not a duration: {duration}");
    total
}

// ---------------------------------------------------------------------------
// promtool and prometheus
// ---------------------------------------------------------------------------

/// Whether Debian's `prometheus` package's `binary` is here; with `CI` set
/// it must be.
fn installed(binary: &str, for_what: &str) -> bool {
    tool_is_installed(
        binary,
        &format!("{for_what} did not run"),
        "Debian: apt-get install --no-install-recommends prometheus; .ci/run does it",
    )
}

fn version(binary: &str) -> String {
    let output = std::process::Command::new(binary)
        .arg("--version")
        .output()
        .expect("the binary runs");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Runs promtool; (success, stdout + stderr).
fn promtool(args: &[&str], dir: &Path) -> (bool, String) {
    let output = std::process::Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool runs");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

fn rule_test_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(monitoring_dir().join("tests"))
        .expect("deploy/monitoring/tests exists")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no promtool tests in deploy/monitoring/tests"
    );
    files
}

#[test]
fn promtool_passes_the_rules_and_their_tests_and_each_alerts_tests_fail_without_it() {
    if !installed("promtool", "the rule tests") {
        return;
    }
    println!("{}", version("promtool"));
    let dir = monitoring_dir();
    let (ok, output) = promtool(&["check", "rules", "rules.yaml"], &dir);
    assert!(ok, "promtool check rules failed:\n{output}");
    let files = rule_test_files();
    let names: Vec<String> = files
        .iter()
        .map(|f| format!("tests/{}", f.file_name().unwrap().to_string_lossy()))
        .collect();
    let mut args = vec!["test", "rules"];
    args.extend(names.iter().map(String::as_str));
    let (ok, output) = promtool(&args, &dir);
    assert!(ok, "promtool test rules failed:\n{output}");
    println!("{output}");

    // Each alert removed in turn: its tests must fail, naming it.
    let rules_text = read(&dir.join("rules.yaml"));
    let rules = rules();
    for alert in alerts_of(&rules) {
        let scratch = tempfile::tempdir().expect("temp dir");
        let mut without: Yaml = serde_yaml::from_str(&rules_text).unwrap();
        for group in without["groups"].as_sequence_mut().unwrap() {
            group["rules"]
                .as_sequence_mut()
                .unwrap()
                .retain(|rule| rule["alert"].as_str() != Some(alert.name.as_str()));
        }
        std::fs::write(
            scratch.path().join("rules.yaml"),
            serde_yaml::to_string(&without).unwrap(),
        )
        .unwrap();
        std::fs::create_dir(scratch.path().join("tests")).unwrap();
        for file in &files {
            let text = read(file);
            assert!(
                text.contains("rule_files: [../rules.yaml]"),
                "{} must say rule_files: [../rules.yaml]",
                file.display()
            );
            std::fs::write(
                scratch.path().join("tests").join(file.file_name().unwrap()),
                text,
            )
            .unwrap();
        }
        let (ok, output) = promtool(&args, scratch.path());
        assert!(
            !ok && output.contains(&alert.name),
            "without {} the rule tests still pass (or do not name it):\n{output}",
            alert.name
        );
    }
}

// ---------------------------------------------------------------------------
// The files themselves
// ---------------------------------------------------------------------------

/// `alertname`s of the promtool tests: those expected to fire, and those
/// expected to stay quiet at some evaluation.
fn tested_alerts() -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut fire, mut quiet) = (BTreeSet::new(), BTreeSet::new());
    for file in rule_test_files() {
        let tests = yaml(&file);
        for test in tests["tests"].as_sequence().into_iter().flatten() {
            for case in test["alert_rule_test"].as_sequence().into_iter().flatten() {
                let name = case["alertname"].as_str().unwrap_or_default().to_string();
                let expected = case["exp_alerts"].as_sequence().map_or(0, Vec::len);
                if expected > 0 {
                    fire.insert(name);
                } else {
                    quiet.insert(name);
                }
            }
        }
    }
    (fire, quiet)
}

#[test]
fn every_alert_says_what_to_do_outlasts_a_failed_cycle_and_has_a_runbook_and_tests_both_ways() {
    let alerts = alerts_of(&rules());
    let names: BTreeSet<&str> = alerts.iter().map(|a| a.name.as_str()).collect();
    for wanted in [
        "CompassRuntimeAgentAbsent",
        "CompassRuntimeAgentStuck",
        "CompassRuntimeAgentConnectionFailed",
        "CompassRuntimeAgentSynchronizationFailing",
        "CompassRuntimeAgentApplicationsFailing",
        "CompassRuntimeAgentCertificateNotRenewed",
        "CompassRuntimeAgentCertificateExpiresSoon",
    ] {
        assert!(names.contains(wanted), "no alert {wanted} in {names:?}");
    }
    let readme = read(&monitoring_dir().join("README.md"));
    let (fire, quiet) = tested_alerts();
    for alert in &alerts {
        let name = &alert.name;
        let severity = alert.rule["labels"]["severity"].as_str();
        assert!(
            matches!(severity, Some("critical" | "warning")),
            "{name}: severity {severity:?}"
        );
        for key in ["summary", "description"] {
            let text = alert.rule["annotations"][key].as_str().unwrap_or_default();
            assert!(text.len() > 20, "{name} has no real {key}: {text:?}");
        }
        let anchor = name.to_lowercase();
        assert_eq!(
            alert.rule["annotations"]["runbook"].as_str(),
            Some(format!("deploy/monitoring/README.md#{anchor}").as_str()),
            "{name}'s runbook annotation"
        );
        assert!(
            readme.lines().any(|line| line == format!("### {name}")),
            "README.md has no runbook section ### {name}"
        );
        // Kyma retries a failed cycle after 15 s, doubling up to 5 min: an
        // alert must outlast a failure that a retry or two mends.
        assert!(
            seconds(&alert.for_) >= 300,
            "{name} has for: {}, which a failed cycle or two can fill",
            alert.for_
        );
        assert!(fire.contains(name), "no promtool test fires {name}");
        assert!(
            quiet.contains(name),
            "no promtool test expects {name} to stay quiet"
        );
    }
}

#[test]
fn the_prometheus_rule_carries_the_rules_and_the_pod_monitor_scrapes_the_agents_pods() {
    let dir = monitoring_dir();
    let rule = yaml(&dir.join("prometheusrule.yaml"));
    assert_eq!(rule["kind"], "PrometheusRule");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(
        rule["spec"]["groups"],
        rules()["groups"],
        "prometheusrule.yaml is not rules.yaml: run deploy/monitoring/generate.sh"
    );

    let kustomization = yaml(&dir.join("kustomization.yaml"));
    assert_eq!(kustomization["kind"], "Component");
    assert_eq!(
        kustomization["apiVersion"],
        "kustomize.config.k8s.io/v1alpha1"
    );
    let resources: Vec<&str> = kustomization["resources"]
        .as_sequence()
        .expect("the component has resources")
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(resources, ["prometheusrule.yaml", "podmonitor.yaml"]);

    let monitor = yaml(&dir.join("podmonitor.yaml"));
    assert_eq!(monitor["kind"], "PodMonitor");
    let job_label = monitor["spec"]["jobLabel"]
        .as_str()
        .expect("the PodMonitor names the job by a Pod label");
    let selector = monitor["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .expect("the PodMonitor selects by labels");
    let endpoints = monitor["spec"]["podMetricsEndpoints"]
        .as_sequence()
        .expect("endpoints");
    assert_eq!(endpoints.len(), 1);
    let port = endpoints[0]["targetPort"].as_u64().expect("a port number");
    assert_eq!(endpoints[0]["path"], "/metrics");

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let deployments = [
        root.join("../../deploy/agent/deployment.yaml"),
        root.join("tests/fixtures/kyma/compass-runtime-agent.yaml"),
    ];
    for path in deployments {
        let deployment = common::accounts::yaml_documents(&path)
            .into_iter()
            .find(|o| o["kind"] == "Deployment")
            .expect("a Deployment");
        let deployment: Yaml = serde_json::from_value(deployment).unwrap();
        let what = path.display();
        assert_eq!(
            deployment["metadata"]["namespace"], monitor["metadata"]["namespace"],
            "{what}: the PodMonitor's namespace"
        );
        let template = &deployment["spec"]["template"];
        let labels = &template["metadata"]["labels"];
        for (key, value) in selector {
            assert_eq!(&labels[key], value, "{what}: Pod label {key:?}");
        }
        assert_eq!(
            labels[job_label].as_str(),
            Some(JOB),
            "{what}: the job the rules select comes from the Pod label {job_label}"
        );
        let container = &template["spec"]["containers"][0];
        let ports: Vec<u64> = container["ports"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|p| p["containerPort"].as_u64())
            .collect();
        assert!(ports.contains(&port), "{what}: no container port {port}");
        let health_port = container["env"]
            .as_sequence()
            .into_iter()
            .flatten()
            .find(|e| e["name"] == "APP_HEALTH_PORT")
            .and_then(|e| e["value"].as_str())
            .unwrap_or("8090");
        assert_eq!(
            health_port,
            port.to_string(),
            "{what}: the PodMonitor scrapes the health port, which serves /metrics"
        );
    }
}

#[test]
fn the_dashboard_is_a_grafana_dashboard_that_asks_for_its_data_source_and_lays_out_its_panels() {
    let dashboard = dashboard();
    assert_eq!(dashboard["uid"], "compass-runtime-agent");
    assert!(dashboard["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(dashboard["schemaVersion"].as_u64().is_some());
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    assert!(
        variables.iter().any(|v| v["name"] == "datasource"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"),
        "the importer picks the Prometheus data source through the variable `datasource`"
    );
    let mut ids = BTreeSet::new();
    let mut cells: BTreeMap<(u64, u64), String> = BTreeMap::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().expect("a panel has a title");
        assert!(
            ids.insert(panel["id"].as_u64().expect("a panel id")),
            "{title}: the panel id is taken"
        );
        let grid = &panel["gridPos"];
        let (x, y, w, h) = (
            grid["x"].as_u64().unwrap(),
            grid["y"].as_u64().unwrap(),
            grid["w"].as_u64().unwrap(),
            grid["h"].as_u64().unwrap(),
        );
        assert!(x + w <= 24, "{title} is wider than the dashboard");
        for column in x..x + w {
            for row in y..y + h {
                if let Some(other) = cells.insert((column, row), title.to_string()) {
                    panic!("{title} overlaps {other}");
                }
            }
        }
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{title}: the data source the importer chose"
        );
        let targets = panel["targets"].as_array().expect("a panel has queries");
        assert!(!targets.is_empty(), "{title} has no query");
        let refs: BTreeSet<&str> = targets
            .iter()
            .map(|t| t["refId"].as_str().expect("refId"))
            .collect();
        assert_eq!(refs.len(), targets.len(), "{title}: refIds repeat");
        for target in targets {
            assert!(
                target["expr"].as_str().is_some_and(|e| !e.is_empty()),
                "{title}: a query without expr"
            );
        }
        assert!(
            panel["description"].as_str().is_some_and(|d| d.len() > 20),
            "{title} does not say what it shows"
        );
    }
}

// ---------------------------------------------------------------------------
// The names against a running agent
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_rules_and_the_dashboard_name_is_served_by_the_agent() {
    let rules = rules();
    let dashboard = dashboard();
    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for alert in alerts_of(&rules) {
        for name in agent_metric_names(&alert.expr) {
            used.entry(name).or_default().insert(alert.name.clone());
        }
    }
    for (panel, expr) in panel_queries(&dashboard) {
        for name in agent_metric_names(&expr) {
            used.entry(name)
                .or_default()
                .insert(format!("panel {panel:?}"));
        }
    }
    for query in variable_queries(&dashboard) {
        for name in agent_metric_names(&query) {
            used.entry(name).or_default().insert("a variable".into());
        }
    }
    assert!(used.len() >= 10, "too few names found: {used:?}");

    // An agent that connected, wrote an Application and renewed once: every
    // family the rules and panels use has a sample.
    let mut world = World::new().await;
    for app in compass_sim::model::generate_applications(1, 1, 1, 0) {
        world.sim.put_application(RUNTIME_ID, app).unwrap();
    }
    world.configure_with_fresh_token().await;
    world.start_agent().await;
    world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    let before = world.certificate_secret().await.unwrap();
    world.ask_for_renewal().await;
    world
        .wait_for_new_certificate(&before["crt"], "refreshCredentialsNow")
        .await;
    let metrics = world.metrics_text().await;
    let served = served_names(&metrics);
    let missing: Vec<String> = used
        .iter()
        .filter(|(name, _)| !served.contains(*name))
        .map(|(name, users)| format!("{name} (used by {users:?})"))
        .collect();
    assert!(
        missing.is_empty(),
        "the agent does not serve {missing:#?}\n/metrics:\n{metrics}"
    );
    println!("{} metric names pinned: {:?}", used.len(), used.keys());

    // The next renewal the dashboard shows is the moment the agent renews
    // the certificate it now holds (its threshold and jitter), not an
    // estimate from the expiry.
    let renewed = world.certificate_secret().await.unwrap();
    let credentials = ClientCredentials::new(
        renewed["key"].clone(),
        renewed["crt"].clone(),
        renewed["crtChain"].clone(),
        String::new(),
    )
    .expect("the stored certificate loads");
    let due = renewal::renewal_due_at(
        credentials.info(),
        world.settings.cert_validity_renewal_threshold,
        world.settings.minimal_compass_sync_time,
    );
    fn sample(metrics: &str, name: &str) -> Option<f64> {
        metrics.lines().find_map(|line| {
            line.strip_prefix(&format!("compass_runtime_agent_{name} "))?
                .parse::<f64>()
                .ok()
        })
    }
    // The cycle that stored the certificate sets the gauge right after.
    let metrics = test_support::wait_for("the renewal moment in /metrics", SHORT, || {
        let world = &world;
        async move {
            let metrics = world.metrics_text().await;
            match sample(&metrics, "certificate_renewal_due_timestamp_seconds") {
                Some(value) if value == due.as_second() as f64 => Ok(metrics),
                other => Err(format!("{other:?}, the agent renews at {due}")),
            }
        }
    })
    .await;
    assert!(
        sample(&metrics, "certificate_renewal_due_timestamp_seconds")
            < sample(&metrics, "certificate_not_after_timestamp_seconds")
    );
    world.stop_agent().await;
}

// ---------------------------------------------------------------------------
// A real Prometheus scraping the agent
// ---------------------------------------------------------------------------

/// Test-sized durations: every `for:` and every range of the rules.
const TEST_FOR: &str = "3s";
const TEST_RANGE: &str = "20s";
/// Certificates in the certificate phase: issued for 180 s; the agent renews
/// when less than 0.9 of that is left (the jitter makes it up to 0.99), so a
/// fresh 90-day certificate is not due and a 180 s one is due 2–18 s after
/// it was issued.
const SHORT_VALIDITY: Duration = Duration::from_secs(180);
const RENEWAL_THRESHOLD: &str = "0.9";
/// The rules' thresholds, test-sized: "less than 7 days left" is 150 s,
/// which a 180 s certificate renewed when due never reaches, and an
/// unrenewed one does 30 s after it was issued; "a due cycle waiting for
/// 5 minutes" is 10 s (cycles are due every 3 s).
const THRESHOLDS: [(&str, &str); 2] = [("7 * 86400", "150"), ("5 * 60", "10")];

/// The rule file as the test runs it: the same rules with every `for:` and
/// every range test-sized, and the thresholds scaled to the test's
/// certificates and cycles.
fn test_sized_rules() -> String {
    let mut rules = rules();
    let mut found = [0; THRESHOLDS.len()];
    for group in rules["groups"].as_sequence_mut().unwrap() {
        for rule in group["rules"].as_sequence_mut().unwrap() {
            let mut expr = with_ranges(rule["expr"].as_str().unwrap(), TEST_RANGE);
            for (count, (production, test)) in found.iter_mut().zip(THRESHOLDS) {
                *count += expr.matches(production).count();
                expr = expr.replace(production, test);
            }
            rule["expr"] = Yaml::from(expr);
            rule["for"] = Yaml::from(TEST_FOR);
        }
    }
    for (count, (production, _)) in found.iter().zip(THRESHOLDS) {
        assert_eq!(
            *count, 1,
            "the rules no longer say `{production}` once; scale the new threshold here"
        );
    }
    serde_yaml::to_string(&rules).unwrap()
}

/// `expr` with the duration of every range selector (`[30m]`) replaced.
fn with_ranges(expr: &str, range: &str) -> String {
    let mut out = String::new();
    let mut rest = expr;
    while let Some(open) = rest.find('[') {
        let close = rest[open..].find(']').expect("a closed range") + open;
        let inside = &rest[open + 1..close];
        assert!(
            inside.chars().all(|c| c.is_ascii_alphanumeric()),
            "a subquery or an odd range in {expr}: [{inside}]"
        );
        seconds(inside);
        out.push_str(&rest[..open]);
        out.push_str(&format!("[{range}]"));
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

struct Prometheus {
    /// Killed when dropped.
    _child: Child,
    url: String,
    http: reqwest::Client,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Debian's Prometheus on a free loopback port with a temporary storage
    /// directory, scraping `target` every second as job
    /// `compass-runtime-agent`, evaluating `rules` every second.
    async fn start(rules: &str, target: &str) -> Prometheus {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("rules.yaml"), rules).unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files: [{rules}]\n\
             scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: ['{target}']\n",
            rules = dir.path().join("rules.yaml").display()
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let port = free_port();
        let log = dir.path().join("prometheus.log");
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--storage.tsdb.retention.time=1h")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.path().join("prometheus.err")).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("prometheus starts");
        let prometheus = Prometheus {
            _child: child,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            log: dir.path().join("prometheus.err"),
            _dir: dir,
        };
        wait_for("Prometheus to be ready", SHORT, || async {
            let response = prometheus
                .http
                .get(format!("{}/-/ready", prometheus.url))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if response.status().is_success() {
                Ok(())
            } else {
                Err(format!("{}: {}", response.status(), prometheus.log()))
            }
        })
        .await;
        prometheus
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `data` of an API answer.
    async fn api(&self, path: &str, params: &[(&str, &str)]) -> Result<Json, String> {
        let url = url::Url::parse_with_params(&format!("{}{path}", self.url), params)
            .map_err(|e| e.to_string())?;
        let answer: Json = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        if answer["status"] != "success" {
            return Err(format!("{path} {params:?}: {answer}"));
        }
        Ok(answer["data"].clone())
    }

    /// The firing alerts, by name.
    async fn firing(&self) -> Result<BTreeMap<String, Json>, String> {
        let data = self.api("/api/v1/alerts", &[]).await?;
        Ok(data["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|alert| alert["state"] == "firing")
            .map(|alert| {
                (
                    alert["labels"]["alertname"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    alert.clone(),
                )
            })
            .collect())
    }

    /// Waits until exactly `expected` fire; returns them.
    async fn wait_for_firing(&self, expected: &[&str], what: &str) -> BTreeMap<String, Json> {
        let expected: BTreeSet<&str> = expected.iter().copied().collect();
        wait_for(&format!("{what}: firing {expected:?}"), LONG, || async {
            let firing = self.firing().await?;
            let names: BTreeSet<&str> = firing.keys().map(String::as_str).collect();
            if names == expected {
                Ok(firing)
            } else {
                Err(format!("firing {names:?}"))
            }
        })
        .await
    }

    async fn query(&self, expr: &str) -> Result<Vec<Json>, String> {
        let data = self.api("/api/v1/query", &[("query", expr)]).await?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }
}

/// The agent binary, as a Deployment runs it, on fixed ports so that a
/// restarted one is the same scrape target.
struct AgentProcess {
    child: Option<Child>,
    health_port: u16,
    metrics_port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl AgentProcess {
    fn new() -> AgentProcess {
        let dir = tempfile::tempdir().expect("temp dir");
        AgentProcess {
            child: None,
            health_port: free_port(),
            metrics_port: free_port(),
            log: dir.path().join("agent.log"),
            _dir: dir,
        }
    }

    fn target(&self) -> String {
        format!("127.0.0.1:{}", self.health_port)
    }

    /// Starts it, with leader election (as `deploy/` runs it) or without
    /// (as Kyma's Deployment does).
    async fn start(&mut self, world: &World, leader_election: bool) {
        assert!(self.child.is_none(), "the agent runs already");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_compass-runtime-agent"))
            .env("KUBECONFIG", world.env.kubeconfig_path())
            .env(
                "APP_COMPASS_CA_BUNDLE",
                world.settings.compass_ca_bundle.as_ref().unwrap(),
            )
            .env("APP_MINIMAL_COMPASS_SYNC_TIME", "1s")
            .env("APP_CONTROLLER_SYNC_PERIOD", "3s")
            .env("APP_COMPASS_REQUEST_TIMEOUT", "3s")
            .env("APP_MAX_RETRY_DELAY", "4s")
            // The Connector is asked every cycle, so that its refusal shows.
            .env("APP_CONNECTOR_CHECK_INTERVAL", "0s")
            .env("APP_CERT_VALIDITY_RENEWAL_THRESHOLD", RENEWAL_THRESHOLD)
            .env("APP_HEALTH_ADDRESS", "127.0.0.1")
            .env("APP_HEALTH_PORT", self.health_port.to_string())
            .env(
                "APP_METRICS_ADDRESS",
                format!("127.0.0.1:{}", self.metrics_port),
            )
            .env("APP_KUBERNETES_REQUEST_TIMEOUT", "5s")
            .env("APP_LEADER_ELECTION", leader_election.to_string())
            .env("APP_LEADER_ELECTION_LEASE", format!("{NS}/{LEASE}"))
            .env("APP_LEADER_ELECTION_LEASE_DURATION", "4s")
            .env("APP_LEADER_ELECTION_IDENTITY", "monitored-replica")
            .env("APP_LOG_LEVEL", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("the agent binary starts");
        self.child = Some(child);
        let url = format!("http://{}/metrics", self.target());
        wait_for("the agent's /metrics", SHORT, || async {
            reqwest::get(&url).await.ok().map(|_| ())
        })
        .await;
    }

    /// Kills it as a node failure would.
    async fn kill(&mut self) {
        let mut child = self.child.take().expect("the agent runs");
        child.start_kill().unwrap();
        child.wait().await.unwrap();
    }
}

/// Drives one fault: `fault` starts it, `expected` must fire (alone), `heal`
/// ends it, and then nothing fires. Prints how long each took.
async fn phase<Fut1, Fut2>(
    prometheus: &Prometheus,
    name: &str,
    expected: &[&str],
    fault: Fut1,
    heal: impl FnOnce(BTreeMap<String, Json>) -> Fut2,
) where
    Fut1: std::future::Future<Output = ()>,
    Fut2: std::future::Future<Output = ()>,
{
    let started = Instant::now();
    fault.await;
    let firing = prometheus.wait_for_firing(expected, name).await;
    let fired_after = started.elapsed();
    for (alert, details) in &firing {
        let summary = details["annotations"]["summary"].as_str().unwrap_or("");
        assert!(!summary.is_empty(), "{alert} fired without a summary");
        println!("  {alert}: {summary}");
    }
    let healed = Instant::now();
    heal(firing).await;
    prometheus
        .wait_for_firing(&[], &format!("{name}, healed"))
        .await;
    println!(
        "{name}: {expected:?} fired {:.1} s after the fault, resolved {:.1} s after it ended",
        fired_after.as_secs_f64(),
        healed.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_fires_each_alert_for_its_fault_and_resolves_it_and_every_panel_has_data()
{
    if !installed("prometheus", "the alerts against a real Prometheus") {
        return;
    }
    let test_started = Instant::now();
    println!("{}", version("prometheus"));
    let world = World::new().await;
    for app in compass_sim::model::generate_applications(2, 1, 1, 0) {
        world.sim.put_application(RUNTIME_ID, app).unwrap();
    }
    world.configure_with_fresh_token().await;

    // Someone else holds the Lease: the agent stands by.
    let leases: Api<Lease> = Api::namespaced(world.client.clone(), NS);
    let mut foreign = Lease::default();
    foreign.metadata.name = Some(LEASE.into());
    foreign.spec = Some(LeaseSpec {
        holder_identity: Some("another-agent".into()),
        lease_duration_seconds: Some(3600),
        acquire_time: Some(MicroTime(jiff::Timestamp::now())),
        renew_time: Some(MicroTime(jiff::Timestamp::now())),
        ..LeaseSpec::default()
    });
    leases
        .create(&PostParams::default(), &foreign)
        .await
        .expect("the foreign Lease is created");

    let mut agent = AgentProcess::new();
    agent.start(&world, true).await;
    let prometheus = Prometheus::start(&test_sized_rules(), &agent.target()).await;

    let _logs = LogsOnFailure(vec![
        ("the agent", agent.log.clone()),
        ("Prometheus", prometheus.log.clone()),
    ]);

    // No leader: NoLeader fires; the Lease given up, the agent leads.
    phase(
        &prometheus,
        "a Lease held by another",
        &["CompassRuntimeAgentNoLeader"],
        async {},
        |_| async {
            leases
                .delete(LEASE, &DeleteParams::default())
                .await
                .expect("the foreign Lease is deleted");
            world
                .wait_for_state(ConnectionState::Synchronized, LONG)
                .await;
        },
    )
    .await;

    // The Connector refusing the certificate.
    phase(
        &prometheus,
        "the Connector refusing",
        &["CompassRuntimeAgentConnectionFailed"],
        async {
            world.sim.inject(Fault {
                endpoint: Some(Endpoint::ConnectorCert),
                ..Fault::new(
                    "configuration",
                    FaultKind::Http403,
                    FaultTimes::UntilCleared,
                )
            });
        },
        |_| async {
            assert_eq!(
                world.state().await,
                Some(ConnectionState::ConnectionMaintenanceFailed)
            );
            world.sim.clear_faults();
        },
    )
    .await;

    // The Director failing.
    phase(
        &prometheus,
        "the Director failing",
        &["CompassRuntimeAgentSynchronizationFailing"],
        async {
            world.sim.inject_fault(
                "applicationsForRuntime",
                FaultKind::GraphqlError,
                FaultTimes::UntilCleared,
            );
        },
        |_| async {
            assert_eq!(
                world.state().await,
                Some(ConnectionState::SynchronizationFailed)
            );
            world.sim.clear_faults();
        },
    )
    .await;

    // An Application that cannot be written: its name is taken by an
    // Application that is not Compass's.
    let applications: Api<Application> = Api::all(world.client.clone());
    let (world_, applications_) = (&world, &applications);
    phase(
        &prometheus,
        "an Application that cannot be written",
        &["CompassRuntimeAgentApplicationsFailing"],
        async {
            applications
                .create(
                    &PostParams::default(),
                    &Application::new(
                        "mp-taken",
                        ApplicationSpec {
                            description: "not from Compass".into(),
                            ..Default::default()
                        },
                    ),
                )
                .await
                .expect("someone else's Application");
            let mut taken = compass_sim::model::generate_applications(1, 1, 1, 0).remove(0);
            taken.id = "taken".into();
            taken.name = "taken".into();
            world.sim.put_application(RUNTIME_ID, taken).unwrap();
        },
        move |firing| async move {
            let summary = firing["CompassRuntimeAgentApplicationsFailing"]["annotations"]
                ["summary"]
                .as_str()
                .unwrap()
                .to_string();
            assert!(
                summary.ends_with(": 1."),
                "the summary counts the Application: {summary}"
            );
            assert_eq!(world_.state().await, Some(ConnectionState::Synchronized));
            applications_
                .delete("mp-taken", &DeleteParams::default())
                .await
                .expect("someone else's Application is deleted");
        },
    )
    .await;

    // A certificate that is not renewed: short-lived ones from now on, one
    // taken at once, then the Connector refuses to sign.
    world.sim.set_cert_validity(SHORT_VALIDITY);
    let before = world.certificate_secret().await.unwrap();
    world.ask_for_renewal().await;
    world
        .wait_for_new_certificate(&before["crt"], "refreshCredentialsNow")
        .await;
    phase(
        &prometheus,
        "a certificate that is not renewed",
        &[
            "CompassRuntimeAgentCertificateNotRenewed",
            "CompassRuntimeAgentCertificateExpiresSoon",
            "CompassRuntimeAgentConnectionFailed",
        ],
        async {
            world.sim.inject(Fault {
                endpoint: Some(Endpoint::ConnectorCert),
                ..Fault::new(
                    "signCertificateSigningRequest",
                    FaultKind::GraphqlError,
                    FaultTimes::UntilCleared,
                )
            });
        },
        |_| async {
            world.sim.clear_faults();
        },
    )
    .await;

    // Every panel of the dashboard has data, now that every fault happened.
    let dashboard = dashboard();
    let variables = dashboard_variables(&dashboard);
    for (panel, expr) in panel_queries(&dashboard) {
        let expr = with_variables(&expr, &variables);
        let result = prometheus
            .query(&expr)
            .await
            .unwrap_or_else(|e| panic!("panel {panel:?}: {e}"));
        let finite = result.iter().any(|sample| {
            sample["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(f64::is_finite)
        });
        assert!(
            finite,
            "panel {panel:?} has no data: {expr}\nanswer: {result:?}"
        );
        println!("panel {panel:?}: {} series", result.len());
    }
    for query in variable_queries(&dashboard) {
        let (selector, label) = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .and_then(|q| q.rsplit_once(','))
            .unwrap_or_else(|| panic!("not label_values(selector, label): {query}"));
        let values = prometheus
            .api(
                &format!("/api/v1/label/{}/values", label.trim()),
                &[("match[]", selector.trim())],
            )
            .await
            .unwrap();
        assert!(
            values.as_array().is_some_and(|v| !v.is_empty()),
            "the variable {query} has no values"
        );
    }

    // Back to 90-day certificates for what follows, which keeps the agent
    // from renewing for a while.
    world
        .sim
        .set_cert_validity(Duration::from_secs(2160 * 3600));
    let before = world.certificate_secret().await.unwrap();
    world.ask_for_renewal().await;
    world
        .wait_for_new_certificate(&before["crt"], "refreshCredentialsNow")
        .await;
    prometheus
        .wait_for_firing(&[], "with a 90-day certificate")
        .await;

    // The agent gone: Absent fires; back (now without leader election, as
    // Kyma runs it), it resolves.
    let started = Instant::now();
    agent.kill().await;
    prometheus
        .wait_for_firing(&["CompassRuntimeAgentAbsent"], "the agent killed")
        .await;
    let fired_after = started.elapsed();
    let healed = Instant::now();
    agent.start(&world, false).await;
    world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    prometheus.wait_for_firing(&[], "the agent back").await;
    println!(
        "the agent killed: [\"CompassRuntimeAgentAbsent\"] fired {:.1} s after the kill, resolved {:.1} s after the restart",
        fired_after.as_secs_f64(),
        healed.elapsed().as_secs_f64()
    );

    // The API server stops answering (its process stopped: connections stay
    // open and carry nothing, as in a partition): the agent's cycles cannot
    // record their outcome, Stuck fires; it answers again, Stuck resolves.
    let apiserver = world
        .env
        .process_id()
        .expect("the test's own apiserver process");
    phase(
        &prometheus,
        "the API server not answering",
        &["CompassRuntimeAgentStuck"],
        async { signal(apiserver, "STOP") },
        |_| async { signal(apiserver, "CONT") },
    )
    .await;
    world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    println!(
        "the real-Prometheus test took {:.0} s",
        test_started.elapsed().as_secs_f64()
    );
}

/// Sends `kill -<signal>` to `pid`.
fn signal(pid: u32, signal: &str) {
    let sent = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("kill runs");
    assert!(sent.success(), "kill -{signal} {pid} failed");
}

/// Prints the tails of these logs when the test fails.
struct LogsOnFailure(Vec<(&'static str, PathBuf)>);

impl Drop for LogsOnFailure {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for (what, path) in &self.0 {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            eprintln!(
                "--- the last lines of {what}'s log ({}):\n{tail}",
                path.display()
            );
        }
    }
}
