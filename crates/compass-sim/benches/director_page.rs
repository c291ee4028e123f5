//! How long compass-sim takes to serve one page of 200 applications (2 bundles
//! with 3 API definitions each) over mTLS, with the query the agent sends.
//! Prints a table; never fails on a time.
//!
//! `cargo bench -p compass-sim --bench director_page` (release), or
//! `cargo test -p compass-sim --bench director_page` (debug build, quicker to
//! compile). `COMPASS_SIM_BENCH_ITERATIONS` sets the number of timed requests.

use std::time::{Duration, Instant};

use compass_sim::model::generate_applications;
use compass_sim::{CompassSim, SimConfig, Subject};
use rcgen::{CertificateParams, KeyPair};
use serde_json::{json, Value};

const RUNTIME: &str = "bench-runtime";
const TENANT: &str = "bench-tenant";

const FULL_PAGE: &str = r#"
query($rt: ID!, $first: Int, $after: PageCursor) {
  applicationsForRuntime(runtimeID: $rt, first: $first, after: $after) {
    totalCount pageInfo { startCursor endCursor hasNextPage }
    data {
      id name providerName description labels auths { id }
      bundles(first: 200) {
        totalCount pageInfo { startCursor endCursor hasNextPage }
        data {
          id name description instanceAuthRequestInputSchema
          defaultInstanceAuth {
            credential {
              ... on BasicCredentialData { username password }
              ... on OAuthCredentialData { clientId clientSecret url }
            }
            additionalHeaders additionalQueryParams
            requestAuth { csrf { tokenEndpointURL } }
          }
          apiDefinitions(first: 200) { totalCount pageInfo { startCursor endCursor hasNextPage } data { id name description targetURL } }
          eventDefinitions(first: 200) { totalCount pageInfo { startCursor endCursor hasNextPage } data { id name description } }
        }
      }
    }
  }
}"#;

const IDS_ONLY: &str = r#"
query($rt: ID!, $first: Int) {
  applicationsForRuntime(runtimeID: $rt, first: $first) { totalCount data { id } }
}"#;

fn b64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn unb64(value: &Value) -> String {
    use base64::Engine as _;
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(value.as_str().unwrap())
            .unwrap(),
    )
    .unwrap()
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    body: Value,
    headers: &[(&str, &str)],
) -> (Value, usize) {
    let mut request = http.post(url).json(&body);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let text = request.send().await.unwrap().text().await.unwrap();
    let len = text.len();
    (serde_json::from_str(&text).unwrap(), len)
}

/// The token flow, returning an mTLS client for the Director.
async fn mtls_client(sim: &CompassSim) -> reqwest::Client {
    let trust = || reqwest::Certificate::from_pem(sim.server_ca_pem().as_bytes()).unwrap();
    let plain = reqwest::Client::builder()
        .tls_certs_only([trust()])
        .build()
        .unwrap();
    let token = sim.issue_token(RUNTIME).unwrap();
    let (config, _) = post(
        &plain,
        sim.connector_url(),
        json!({"query": "{ configuration { token { token } certificateSigningRequestInfo { subject } } }"}),
        &[("Connector-Token", &token)],
    )
    .await;
    let cfg = &config["data"]["configuration"];
    let subject = Subject::parse(
        cfg["certificateSigningRequestInfo"]["subject"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = subject.distinguished_name();
    let csr = b64(&params.serialize_request(&key).unwrap().pem().unwrap());
    let (signed, _) = post(
        &plain,
        sim.connector_url(),
        json!({
            "query": "mutation($csr: String!) { signCertificateSigningRequest(csr: $csr) { clientCertificate } }",
            "variables": {"csr": csr}
        }),
        &[("Connector-Token", cfg["token"]["token"].as_str().unwrap())],
    )
    .await;
    let cert = unb64(&signed["data"]["signCertificateSigningRequest"]["clientCertificate"]);
    let identity =
        reqwest::Identity::from_pem(format!("{cert}{}", key.serialize_pem()).as_bytes()).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([trust()])
        .identity(identity)
        .build()
        .unwrap()
}

struct Row {
    what: &'static str,
    times: Vec<Duration>,
    bytes: usize,
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

async fn measure(
    what: &'static str,
    http: &reqwest::Client,
    sim: &CompassSim,
    query: &str,
    iterations: usize,
) -> Row {
    let body = json!({"query": query, "variables": {"rt": RUNTIME, "first": 200}});
    for _ in 0..3 {
        post(
            http,
            sim.director_url(),
            body.clone(),
            &[("Tenant", TENANT)],
        )
        .await;
    }
    let mut times = Vec::with_capacity(iterations);
    let mut bytes = 0;
    for _ in 0..iterations {
        let started = Instant::now();
        let (answer, len) = post(
            http,
            sim.director_url(),
            body.clone(),
            &[("Tenant", TENANT)],
        )
        .await;
        times.push(started.elapsed());
        assert_eq!(
            answer["data"]["applicationsForRuntime"]["data"]
                .as_array()
                .map(Vec::len),
            Some(200),
            "unexpected answer"
        );
        bytes = len;
    }
    times.sort();
    Row { what, times, bytes }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing useful.
    let iterations: usize = std::env::var("COMPASS_SIM_BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let sim = CompassSim::start(SimConfig::default()).await.unwrap();
    sim.create_runtime(RUNTIME, TENANT).unwrap();
    sim.set_applications(RUNTIME, generate_applications(200, 2, 3, 0))
        .unwrap();
    let http = mtls_client(&sim).await;

    let rows = vec![
        measure(
            "200 apps x 2 bundles x 3 APIs, full agent query",
            &http,
            &sim,
            FULL_PAGE,
            iterations,
        )
        .await,
        measure("200 apps, ids only", &http, &sim, IDS_ONLY, iterations).await,
    ];

    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!();
    println!(
        "compass-sim Director page benchmark ({} build, {cores} cores, {iterations} timed requests each, one client, HTTP keep-alive, mTLS)",
        if cfg!(debug_assertions) { "debug" } else { "release" }
    );
    println!(
        "| {:<50} | {:>9} | {:>9} | {:>9} | {:>9} | {:>10} |",
        "request", "min ms", "median ms", "p90 ms", "max ms", "bytes"
    );
    println!(
        "|{:-<52}|{:->11}|{:->11}|{:->11}|{:->11}|{:->12}|",
        "", "", "", "", "", ""
    );
    for row in &rows {
        let n = row.times.len();
        println!(
            "| {:<50} | {:>9} | {:>9} | {:>9} | {:>9} | {:>10} |",
            row.what,
            ms(row.times[0]),
            ms(row.times[n / 2]),
            ms(row.times[(n * 9 / 10).min(n - 1)]),
            ms(row.times[n - 1]),
            row.bytes
        );
    }
    sim.shutdown().await;
}
