//! The fault proxy with real sockets on loopback: each mode of the raw TCP
//! proxy against a small line server, the TLS-terminating proxy against a
//! TLS HTTP server with a real HTTP client, and both in front of the test
//! kube-apiserver with a kube client.
//!
//! Where a test shows that nothing arrives, it reads with a short deadline
//! (`SILENCE`): absence can only be observed over some time. Everything else
//! waits for what it expects, with a deadline.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{SelfSubjectReview, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use test_support::{
    unique_name, wait_for, write_kubeconfig, Answer, Counters, FaultProxy, Mode, ServingCert,
    TestEnv, TlsUpstream,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// How long a test watches a connection to see that nothing arrives.
const SILENCE: Duration = Duration::from_millis(400);
/// The deadline of anything that is expected to happen.
const DEADLINE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// A line server: says "hello\n" when a connection opens, then echoes each
// byte upper-cased, so that each direction is seen on its own.

struct LineServer {
    addr: SocketAddr,
    accepted: Arc<AtomicU64>,
    open: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl LineServer {
    async fn start() -> LineServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (accepted, open) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (a, o) = (accepted.clone(), open.clone());
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let (mut tcp, _) = listener.accept().await.unwrap();
                a.fetch_add(1, Ordering::SeqCst);
                o.fetch_add(1, Ordering::SeqCst);
                let o = o.clone();
                connections.spawn(async move {
                    let _ = tcp.write_all(b"hello\n").await;
                    let mut buf = [0u8; 1024];
                    while let Ok(n @ 1..) = tcp.read(&mut buf).await {
                        buf[..n].make_ascii_uppercase();
                        if tcp.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    o.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        LineServer {
            addr,
            accepted,
            open,
            task,
        }
    }

    fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    fn open(&self) -> u64 {
        self.open.load(Ordering::SeqCst)
    }
}

impl Drop for LineServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn connect(addr: SocketAddr) -> TcpStream {
    tokio::time::timeout(DEADLINE, TcpStream::connect(addr))
        .await
        .expect("connect within the deadline")
        .expect("connect")
}

/// Reads exactly `expected.len()` bytes and checks them.
async fn expect_bytes(tcp: &mut TcpStream, expected: &[u8], what: &str) {
    let mut buf = vec![0u8; expected.len()];
    match tokio::time::timeout(DEADLINE, tcp.read_exact(&mut buf)).await {
        Ok(Ok(_)) => assert_eq!(
            String::from_utf8_lossy(&buf),
            String::from_utf8_lossy(expected),
            "{what}"
        ),
        Ok(Err(e)) => panic!("{what}: expected {expected:?}, the read failed: {e}"),
        Err(_) => panic!("{what}: expected {expected:?}, nothing came within {DEADLINE:?}"),
    }
}

/// Nothing arrives for `SILENCE`, and the connection is not closed either.
async fn expect_silence(tcp: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(SILENCE, tcp.read(&mut buf)).await {
        Err(_) => {}
        Ok(Ok(0)) => panic!("{what}: expected silence, the connection was closed"),
        Ok(Ok(n)) => panic!(
            "{what}: expected silence, got {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Ok(Err(e)) => panic!("{what}: expected silence, the read failed: {e}"),
    }
}

/// The connection is reset (a read fails with ECONNRESET).
async fn expect_reset(tcp: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(DEADLINE, tcp.read(&mut buf)).await {
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset => {}
        Ok(Err(e)) => panic!("{what}: expected a reset, the read failed otherwise: {e}"),
        Ok(Ok(0)) => panic!("{what}: expected a reset, got an orderly close (FIN)"),
        Ok(Ok(n)) => panic!(
            "{what}: expected a reset, got {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(_) => panic!("{what}: expected a reset, nothing happened within {DEADLINE:?}"),
    }
}

/// The connection ends (closed or reset) within the deadline.
async fn expect_end(tcp: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(DEADLINE, tcp.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(n)) => panic!(
            "{what}: expected the end, got {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(_) => panic!("{what}: expected the connection to end within {DEADLINE:?}"),
    }
}

async fn wait_for_counters(proxy: &FaultProxy, what: &str, check: impl Fn(&Counters) -> bool) {
    wait_for(what, DEADLINE, || async {
        let counters = proxy.counters();
        if check(&counters) {
            Ok(counters)
        } else {
            Err(counters)
        }
    })
    .await;
}

// ---------------------------------------------------------------------------
// The raw TCP proxy.

#[tokio::test]
async fn pass_forwards_both_ways() {
    let server = LineServer::start().await;
    let proxy = FaultProxy::tcp(server.addr).await.unwrap();
    assert_eq!(proxy.mode(), Mode::Pass);
    assert_eq!(proxy.upstream(), server.addr);
    assert!(proxy.addr().ip().is_loopback());

    let mut tcp = connect(proxy.addr()).await;
    expect_bytes(&mut tcp, b"hello\n", "the server's greeting").await;
    tcp.write_all(b"ping\n").await.unwrap();
    expect_bytes(&mut tcp, b"PING\n", "the echo").await;
    wait_for_counters(&proxy, "1 connection, 5 bytes up, 11 down", |c| {
        *c == Counters {
            accepted: 1,
            open: 1,
            bytes_to_upstream: 5,
            bytes_to_client: 11,
            ..Counters::default()
        }
    })
    .await;

    // The client's close reaches the server, and the proxy forgets the
    // connection.
    drop(tcp);
    wait_for("the server to see the close", DEADLINE, || async {
        server.open() == 0
    })
    .await;
    wait_for_counters(&proxy, "no open connection", |c| c.open == 0).await;
}

#[tokio::test]
async fn refuse_resets_open_and_new_connections_then_pass_works_again() {
    let server = LineServer::start().await;
    let proxy = FaultProxy::tcp(server.addr).await.unwrap();
    let mut open = connect(proxy.addr()).await;
    expect_bytes(&mut open, b"hello\n", "the greeting before the fault").await;

    proxy.set_mode(Mode::Refuse);
    expect_reset(&mut open, "the connection open when the mode turned").await;
    let mut new = connect(proxy.addr()).await;
    expect_reset(&mut new, "a connection opened while refusing").await;
    wait_for_counters(&proxy, "2 connections reset, none open", |c| {
        c.accepted == 2 && c.reset == 2 && c.open == 0
    })
    .await;
    assert_eq!(
        server.accepted(),
        1,
        "a refused connection reached the server"
    );

    proxy.set_mode(Mode::Pass);
    let mut after = connect(proxy.addr()).await;
    expect_bytes(&mut after, b"hello\n", "the greeting after the fault").await;
    after.write_all(b"back\n").await.unwrap();
    expect_bytes(&mut after, b"BACK\n", "the echo after the fault").await;
    assert_eq!(proxy.counters().reset, 2);
}

#[tokio::test]
async fn a_black_holed_connection_stays_dead_while_new_ones_work_after_pass() {
    let server = LineServer::start().await;
    let proxy = FaultProxy::tcp(server.addr).await.unwrap();
    let mut old = connect(proxy.addr()).await;
    expect_bytes(&mut old, b"hello\n", "the greeting before the fault").await;
    wait_for_counters(&proxy, "the greeting counted", |c| c.bytes_to_client == 6).await;

    proxy.set_mode(Mode::BlackHole);
    old.write_all(b"ping\n").await.unwrap();
    expect_silence(&mut old, "the open connection, black-holed").await;
    let mut during = connect(proxy.addr()).await;
    wait_for_counters(&proxy, "the new connection accepted", |c| c.accepted == 2).await;
    expect_silence(&mut during, "a connection opened during the black hole").await;
    let counters = proxy.counters();
    assert_eq!(
        (counters.black_holed, counters.open, counters.reset),
        (2, 2, 0),
        "{counters:?}"
    );
    assert_eq!(
        (counters.bytes_to_upstream, counters.bytes_to_client),
        (0, 6),
        "bytes went through a black hole: {counters:?}"
    );
    assert_eq!(
        server.accepted(),
        1,
        "a black-holed connection reached the server"
    );

    // Back to pass: the black-holed connections stay dead (and open), a new
    // one works.
    proxy.set_mode(Mode::Pass);
    old.write_all(b"again\n").await.unwrap();
    expect_silence(&mut old, "the black-holed connection after pass").await;
    expect_silence(
        &mut during,
        "the connection opened during the black hole, after pass",
    )
    .await;
    let mut new = connect(proxy.addr()).await;
    expect_bytes(&mut new, b"hello\n", "a new connection's greeting").await;
    new.write_all(b"new\n").await.unwrap();
    expect_bytes(&mut new, b"NEW\n", "a new connection's echo").await;
    wait_for_counters(&proxy, "only the new connection's bytes", |c| {
        c.bytes_to_upstream == 4 && c.bytes_to_client == 6 + 6 + 4 && c.open == 3
    })
    .await;

    // Refuse resets black-holed connections too: a test can end them.
    proxy.set_mode(Mode::Refuse);
    expect_reset(&mut old, "the black-holed connection, refused").await;
    expect_reset(&mut during, "the connection black-holed at accept, refused").await;
    expect_reset(&mut new, "the passing connection, refused").await;
    wait_for_counters(&proxy, "all reset", |c| c.open == 0 && c.reset == 3).await;
}

#[tokio::test]
#[should_panic(expected = "Mode::Answer needs a proxy that terminates TLS")]
async fn a_raw_proxy_cannot_answer_http() {
    let server = LineServer::start().await;
    let proxy = FaultProxy::tcp(server.addr).await.unwrap();
    proxy.set_mode(Mode::Answer(Answer::service_unavailable()));
}

#[tokio::test]
async fn dropping_the_proxy_ends_its_connections_and_closes_its_port() {
    let server = LineServer::start().await;
    let proxy = FaultProxy::tcp(server.addr).await.unwrap();
    let mut black_holed = connect(proxy.addr()).await;
    expect_bytes(&mut black_holed, b"hello\n", "greeting").await;
    proxy.set_mode(Mode::BlackHole);
    let mut held = connect(proxy.addr()).await;
    // connect returns once the kernel has the connection; the proxy accepts
    // it a moment later, and black-holes it only if the mode still says so.
    wait_for_counters(&proxy, "the second connection black-holed", |c| {
        c.black_holed == 2
    })
    .await;
    proxy.set_mode(Mode::Pass);
    let mut passing = connect(proxy.addr()).await;
    expect_bytes(&mut passing, b"hello\n", "greeting").await;
    wait_for_counters(&proxy, "3 open connections", |c| c.open == 3).await;
    wait_for(
        "the server to hold the 2 connections that reached it",
        DEADLINE,
        || async { server.open() == 2 },
    )
    .await;

    let addr = proxy.addr();
    drop(proxy);
    expect_end(&mut black_holed, "a black-holed connection").await;
    expect_end(&mut held, "a connection black-holed at accept").await;
    expect_end(&mut passing, "a passing connection").await;
    wait_for(
        "the server to see the proxy's connections closed",
        DEADLINE,
        || async { server.open() == 0 },
    )
    .await;
    wait_for("the proxy's port to refuse", DEADLINE, || async {
        TcpStream::connect(addr).await.is_err()
    })
    .await;
}

// ---------------------------------------------------------------------------
// The TLS-terminating proxy in front of a TLS HTTP server.

/// An HTTPS server (HTTP/1.1) that answers `200 upstream: <method> <path>`
/// with `x-upstream: yes`, and counts the requests it saw.
struct HttpsServer {
    addr: SocketAddr,
    ca_pem: String,
    requests: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl HttpsServer {
    async fn start() -> HttpsServer {
        use hyper::service::service_fn;
        let cert = ServingCert::generate().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(cert.server_config().unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicU64::new(0));
        let seen = requests.clone();
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let (acceptor, seen) = (acceptor.clone(), seen.clone());
                connections.spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = service_fn(move |request: hyper::Request<_>| {
                        seen.fetch_add(1, Ordering::SeqCst);
                        let text = format!("upstream: {} {}", request.method(), request.uri());
                        async move {
                            let mut response = hyper::Response::new(text);
                            response
                                .headers_mut()
                                .insert("x-upstream", "yes".parse().unwrap());
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        HttpsServer {
            addr,
            ca_pem: cert.ca_pem().to_string(),
            requests,
            task,
        }
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn tls_proxy_in_front_of(server: &HttpsServer) -> FaultProxy {
    let upstream = TlsUpstream::new(server.addr, "127.0.0.1", &server.ca_pem).unwrap();
    FaultProxy::tls(upstream, ServingCert::generate().unwrap())
        .await
        .unwrap()
}

/// A reqwest client (rustls; offers h2 and http/1.1) that trusts only the
/// proxy's CA.
fn http_client(proxy: &FaultProxy) -> reqwest::Client {
    test_support::install_crypto_provider();
    let ca = reqwest::Certificate::from_pem(proxy.ca_pem().unwrap().as_bytes()).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .timeout(DEADLINE)
        .build()
        .unwrap()
}

#[tokio::test]
async fn answer_mode_answers_with_the_chosen_status_and_headers() {
    let server = HttpsServer::start().await;
    let proxy = tls_proxy_in_front_of(&server).await;
    let client = http_client(&proxy);
    let url = |path: &str| format!("https://127.0.0.1:{}{path}", proxy.addr().port());

    let passed = client.get(url("/first")).send().await.unwrap();
    assert_eq!(passed.status(), 200);
    assert_eq!(
        passed.version(),
        reqwest::Version::HTTP_11,
        "the proxy offers only http/1.1"
    );
    assert_eq!(passed.headers()["x-upstream"], "yes");
    assert_eq!(passed.text().await.unwrap(), "upstream: GET /first");

    proxy.set_mode(Mode::Answer(Answer::too_many_requests(2)));
    let answered = client.get(url("/overloaded")).send().await.unwrap();
    assert_eq!(answered.status(), 429);
    assert_eq!(answered.headers()["retry-after"], "2");
    assert_eq!(answered.headers()["content-type"], "application/json");
    assert!(answered.headers().get("x-upstream").is_none());
    let status: serde_json::Value = answered.json().await.unwrap();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "TooManyRequests");
    assert_eq!(status["code"], 429);
    assert_eq!(status["details"]["retryAfterSeconds"], 2);

    let unavailable = Answer::status(503)
        .header("x-fault", "yes")
        .body("text/plain", "down");
    proxy.set_mode(Mode::Answer(unavailable));
    let answered = client
        .post(url("/write"))
        .body("a request body the proxy reads and drops")
        .send()
        .await
        .unwrap();
    assert_eq!(answered.status(), 503);
    assert_eq!(answered.headers()["x-fault"], "yes");
    assert_eq!(answered.headers()["content-type"], "text/plain");
    assert_eq!(answered.text().await.unwrap(), "down");

    proxy.set_mode(Mode::Pass);
    let passed = client.get(url("/again")).send().await.unwrap();
    assert_eq!(passed.status(), 200);
    assert_eq!(passed.text().await.unwrap(), "upstream: GET /again");

    assert_eq!(server.requests.load(Ordering::SeqCst), 2);
    let counters = proxy.counters();
    assert_eq!(counters.answered, 2, "{counters:?}");
    // The answers came on the client's pooled keep-alive connection: the mode
    // is read per request, not per connection.
    assert_eq!(counters.accepted, 1, "{counters:?}");
    assert!(counters.bytes_to_upstream > 0 && counters.bytes_to_client > 0);
}

#[tokio::test]
async fn the_tls_proxy_refuses_and_black_holes_at_the_tcp_level() {
    let server = HttpsServer::start().await;
    let proxy = tls_proxy_in_front_of(&server).await;
    let client = http_client(&proxy);
    let url = format!("https://127.0.0.1:{}/x", proxy.addr().port());
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);

    // The client's pooled connection is reset, and so is the next one.
    proxy.set_mode(Mode::Refuse);
    let refused = client.get(&url).send().await;
    assert!(
        refused.is_err(),
        "a request on the pooled connection: {refused:?}"
    );
    let refused = client.get(&url).send().await;
    assert!(
        refused.is_err(),
        "a request on a new connection: {refused:?}"
    );
    wait_for_counters(&proxy, "both connections reset", |c| {
        c.accepted == 2 && c.reset == 2 && c.open == 0
    })
    .await;

    proxy.set_mode(Mode::Pass);
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);

    proxy.set_mode(Mode::BlackHole);
    let upstream_bytes = proxy.counters().bytes_to_upstream;
    let hung = tokio::time::timeout(SILENCE, client.get(&url).send()).await;
    assert!(hung.is_err(), "a request through the black hole: {hung:?}");
    assert_eq!(proxy.counters().bytes_to_upstream, upstream_bytes);
    assert_eq!(server.requests.load(Ordering::SeqCst), 2);
}

// ---------------------------------------------------------------------------
// In front of the test kube-apiserver.

/// A ServiceAccount that may list namespaces, and its token; deleted on drop.
struct NamespaceReader {
    client: kube::Client,
    name: String,
    token: String,
}

impl NamespaceReader {
    async fn create(client: &kube::Client) -> NamespaceReader {
        let name = unique_name("fault-proxy-reader");
        let meta = || ObjectMeta {
            name: Some(name.clone()),
            namespace: None,
            ..Default::default()
        };
        let pp = PostParams::default();
        let account = ServiceAccount {
            metadata: meta(),
            ..Default::default()
        };
        Api::<ServiceAccount>::namespaced(client.clone(), "default")
            .create(&pp, &account)
            .await
            .unwrap();
        let role = ClusterRole {
            metadata: meta(),
            rules: Some(vec![PolicyRule {
                api_groups: Some(vec![String::new()]),
                resources: Some(vec!["namespaces".into()]),
                verbs: vec!["get".into(), "list".into()],
                ..Default::default()
            }]),
            ..Default::default()
        };
        Api::<ClusterRole>::all(client.clone())
            .create(&pp, &role)
            .await
            .unwrap();
        let binding = ClusterRoleBinding {
            metadata: meta(),
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "ClusterRole".into(),
                name: name.clone(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name: name.clone(),
                namespace: Some("default".into()),
                ..Default::default()
            }]),
        };
        Api::<ClusterRoleBinding>::all(client.clone())
            .create(&pp, &binding)
            .await
            .unwrap();
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                expiration_seconds: Some(3600),
                ..Default::default()
            }),
            ..Default::default()
        };
        let answer: TokenRequest = Api::<ServiceAccount>::namespaced(client.clone(), "default")
            .create_subresource("token", &name, &pp, &request)
            .await
            .unwrap();
        let token = answer
            .status
            .and_then(|status| status.token)
            .expect("the TokenRequest answer carries a token");
        NamespaceReader {
            client: client.clone(),
            name,
            token,
        }
    }

    fn user(&self) -> String {
        format!("system:serviceaccount:default:{}", self.name)
    }

    async fn delete(self) {
        let dp = DeleteParams::default();
        let _ = Api::<ServiceAccount>::namespaced(self.client.clone(), "default")
            .delete(&self.name, &dp)
            .await;
        let _ = Api::<ClusterRoleBinding>::all(self.client.clone())
            .delete(&self.name, &dp)
            .await;
        let _ = Api::<ClusterRole>::all(self.client.clone())
            .delete(&self.name, &dp)
            .await;
    }
}

async fn namespace_names(client: &kube::Client) -> Result<Vec<String>, kube::Error> {
    let list = Api::<Namespace>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|ns| ns.metadata.name)
        .collect())
}

#[tokio::test]
async fn a_kube_client_with_a_token_works_through_the_tls_proxy() {
    let env = TestEnv::global();
    let reader = NamespaceReader::create(&env.client().await).await;
    let proxy = FaultProxy::tls_to_apiserver(&env.kube_config())
        .await
        .unwrap();

    let mut config = proxy.kube_config(env.kube_config());
    config.auth_info = AuthInfo {
        token: Some(reader.token.clone().into()),
        ..Default::default()
    };
    // See the 429 itself rather than kube's retries of it.
    config.default_retry = false;
    let client = kube::Client::try_from(config).unwrap();
    // The binding reaches the API server's authorizer a moment after it is
    // created.
    let names = wait_for(
        "the ServiceAccount to list namespaces through the proxy",
        DEADLINE,
        || namespace_names(&client),
    )
    .await;
    assert!(names.iter().any(|n| n == "default"), "{names:?}");
    let review = Api::<SelfSubjectReview>::all(client.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .unwrap();
    let user = review
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username);
    assert_eq!(
        user.as_deref(),
        Some(reader.user().as_str()),
        "the token passes"
    );

    proxy.set_mode(Mode::Answer(Answer::too_many_requests(1)));
    match namespace_names(&client).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 429, "{status:?}"),
        other => panic!("expected the proxy's 429, got {other:?}"),
    }
    proxy.set_mode(Mode::Pass);
    namespace_names(&client)
        .await
        .expect("a list after the overload");

    // The same through a kubeconfig file, as a child process would read it.
    let mut kubeconfig = proxy.kubeconfig(Kubeconfig::read_from(env.kubeconfig_path()).unwrap());
    for user in &mut kubeconfig.auth_infos {
        user.auth_info = Some(AuthInfo {
            token: Some(reader.token.clone().into()),
            ..Default::default()
        });
    }
    let path = std::env::temp_dir().join(format!("{}.kubeconfig", unique_name("fault-proxy")));
    write_kubeconfig(&kubeconfig, &path).unwrap();
    let from_file = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&path).unwrap(),
        &KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let _ = std::fs::remove_file(&path);
    let from_file = kube::Client::try_from(from_file).unwrap();
    let before = proxy.counters().accepted;
    namespace_names(&from_file)
        .await
        .expect("a list with the kubeconfig file");
    assert!(
        proxy.counters().accepted > before,
        "the file's client went through the proxy"
    );
    reader.delete().await;
}

#[tokio::test]
async fn an_admin_client_goes_through_the_raw_proxy_and_into_its_black_hole() {
    let env = TestEnv::global();
    let proxy = FaultProxy::tcp_to_apiserver(&env.kube_config())
        .await
        .unwrap();
    let config = proxy.kube_config(env.kube_config());
    let client = kube::Client::try_from(config.clone()).unwrap();
    // The admin's client certificate passes through raw TCP.
    let names = namespace_names(&client)
        .await
        .expect("a list through the proxy");
    assert!(names.iter().any(|n| n == "default"), "{names:?}");

    proxy.set_mode(Mode::BlackHole);
    let hung = tokio::time::timeout(SILENCE, namespace_names(&client)).await;
    assert!(hung.is_err(), "a list through the black hole: {hung:?}");

    // A new client opens a new connection, which passes again.
    proxy.set_mode(Mode::Pass);
    let fresh = kube::Client::try_from(config).unwrap();
    namespace_names(&fresh)
        .await
        .expect("a new client's list after the black hole");
    assert!(proxy.counters().black_holed >= 1);
}
