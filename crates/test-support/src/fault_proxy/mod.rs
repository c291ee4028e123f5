//! The fault proxy: a TCP proxy on loopback whose behaviour a test switches
//! at any time ([`FaultProxy`], [`Mode`]).

mod certificates;
mod connections;
mod http;
mod redirect;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use hyper::body::Bytes;
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use hyper::StatusCode;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

pub use certificates::{ServingCert, TlsUpstream};
pub use redirect::write_kubeconfig;

use connections::{ClientTcp, Control, Counted, Direction, Gate, Shared};

/// What the proxy does with connections, switched with
/// [`FaultProxy::set_mode`]. See [`FaultProxy`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward both ways.
    Pass,
    /// Reset every open connection, and every new one at once.
    Refuse,
    /// Carry nothing on open connections, for ever, and on new ones while
    /// the mode lasts.
    BlackHole,
    /// Answer every HTTP request with this (TLS-terminating proxy only;
    /// [`FaultProxy::set_mode`] panics on a raw TCP proxy).
    Answer(Answer),
}

/// The answer of [`Mode::Answer`]: a status, headers and a body. By default
/// the body is a Kubernetes `Status` object for the status code, as the API
/// server sends one (`application/json`), so that a kube client reads it as an
/// API error with that code.
///
/// ```
/// use test_support::Answer;
/// let overloaded = Answer::too_many_requests(2); // 429, Retry-After: 2
/// let down = Answer::status(503).header("Retry-After", "5");
/// let odd = Answer::status(500).body("text/plain", "no");
/// # let _ = (overloaded, down, odd);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    status: StatusCode,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
}

impl Answer {
    /// Status `code` with a Kubernetes `Status` body. Panics when `code` is
    /// not an HTTP status (100–999).
    pub fn status(code: u16) -> Answer {
        let status = StatusCode::from_u16(code)
            .unwrap_or_else(|_| panic!("Answer::status: {code} is not an HTTP status"));
        Answer {
            status,
            headers: vec![(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            body: Bytes::from(kubernetes_status(status, None)),
        }
    }

    /// 429 with `Retry-After: seconds` and the `Status` body an overloaded API
    /// server sends (reason `TooManyRequests`, `details.retryAfterSeconds`).
    pub fn too_many_requests(retry_after_seconds: u32) -> Answer {
        let status = StatusCode::TOO_MANY_REQUESTS;
        Answer {
            status,
            headers: vec![
                (CONTENT_TYPE, HeaderValue::from_static("application/json")),
                (RETRY_AFTER, HeaderValue::from(retry_after_seconds)),
            ],
            body: Bytes::from(kubernetes_status(status, Some(retry_after_seconds))),
        }
    }

    /// 503 with a `Status` body (reason `ServiceUnavailable`).
    pub fn service_unavailable() -> Answer {
        Answer::status(503)
    }

    /// Adds a header (after those already there). Panics on a name or value
    /// HTTP does not allow.
    pub fn header(mut self, name: &str, value: &str) -> Answer {
        let name = HeaderName::from_bytes(name.as_bytes())
            .unwrap_or_else(|e| panic!("Answer::header: {name:?}: {e}"));
        let value = HeaderValue::from_str(value)
            .unwrap_or_else(|e| panic!("Answer::header: {value:?}: {e}"));
        self.headers.push((name, value));
        self
    }

    /// Replaces the body and its `Content-Type`. Panics on a content type
    /// HTTP does not allow.
    pub fn body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Answer {
        let value = HeaderValue::from_str(content_type)
            .unwrap_or_else(|e| panic!("Answer::body: {content_type:?}: {e}"));
        self.headers.retain(|(name, _)| name != CONTENT_TYPE);
        self.headers.push((CONTENT_TYPE, value));
        self.body = Bytes::from(body.into());
        self
    }

    /// The status code.
    pub fn status_code(&self) -> u16 {
        self.status.as_u16()
    }
}

/// The API server's `Status` object for an error answer.
fn kubernetes_status(status: StatusCode, retry_after_seconds: Option<u32>) -> String {
    let reason = match status.as_u16() {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        410 => "Gone",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "",
    };
    let mut value = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": if status.is_success() { "Success" } else { "Failure" },
        "message": format!("{status} (answered by the test's fault proxy)"),
        "reason": reason,
        "code": status.as_u16(),
    });
    if let Some(seconds) = retry_after_seconds {
        value["details"] = serde_json::json!({ "retryAfterSeconds": seconds });
    }
    value.to_string()
}

/// What a proxy has done so far ([`FaultProxy::counters`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Connections accepted (refused ones included).
    pub accepted: u64,
    /// Connections open now: accepted and neither closed nor reset
    /// (black-holed ones included).
    pub open: u64,
    /// Connections reset: open ones when the mode turned to refuse, new ones
    /// while it lasted.
    pub reset: u64,
    /// Connections black-holed: open ones when the mode turned to black-hole,
    /// new ones while it lasted.
    pub black_holed: u64,
    /// Bytes written to the upstream (the raw proxy: as received; the
    /// TLS-terminating proxy: the decrypted HTTP).
    pub bytes_to_upstream: u64,
    /// Bytes written to clients (the raw proxy: as received from the
    /// upstream; the TLS-terminating proxy: the HTTP before encryption, the
    /// proxy's own answers included).
    pub bytes_to_client: u64,
    /// Requests the proxy answered itself ([`Mode::Answer`]).
    pub answered: u64,
}

/// How a proxy serves a connection that is open.
enum Front {
    Tcp {
        upstream: SocketAddr,
    },
    Tls {
        acceptor: TlsAcceptor,
        upstream: TlsUpstream,
    },
}

impl Front {
    async fn serve(&self, client: Gate<ClientTcp>, control: Arc<Control>, shared: Arc<Shared>) {
        match self {
            Front::Tcp { upstream } => forward_tcp(*upstream, client, control, shared).await,
            Front::Tls { acceptor, upstream } => {
                http::serve(acceptor.clone(), upstream.clone(), client, control, shared).await
            }
        }
    }
}

/// The raw proxy's forwarding: bytes both ways until both sides are done.
/// When the upstream cannot be reached the client's connection is closed.
async fn forward_tcp(
    upstream: SocketAddr,
    client: Gate<ClientTcp>,
    control: Arc<Control>,
    shared: Arc<Shared>,
) {
    let Ok(tcp) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = tcp.set_nodelay(true);
    let mut upstream = Counted::new(
        Gate::new(tcp, control),
        shared.clone(),
        Direction::ToUpstream,
    );
    let mut client = Counted::new(client, shared, Direction::ToClient);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

/// A proxy on `127.0.0.1` (a free port) in front of one upstream (the tests'
/// kube-apiserver, compass-sim) whose behaviour a test switches at any time,
/// to see what the agent does when the network or the server fails it.
///
/// Modes ([`Mode`]):
/// - **pass**: forward both ways.
/// - **refuse**: every open connection is reset (RST: `SO_LINGER` 0, then
///   close); new connections are accepted and reset at once, for as long as
///   the mode lasts. Black-holed connections are reset too.
/// - **black-hole**: open connections carry nothing, for ever: nothing is read,
///   forwarded, written or closed, even after the mode goes back to pass (a
///   connection across a partition whose conntrack entry was lost stays
///   dead). New connections accepted meanwhile are black-holed too (accepted,
///   never forwarded). After the mode goes back to pass, new connections work.
///   A black-holed connection ends when a later refuse mode resets it, or when
///   the proxy is dropped.
/// - **answer** (TLS-terminating proxy only): each HTTP request that arrives
///   while the mode lasts is answered by the proxy, with the status, headers
///   and body of an [`Answer`] (e.g. 429 with `Retry-After`, 503), on new and
///   on already open keep-alive connections; a response already streaming (a
///   watch) goes on.
///
/// A mode change reaches every open connection before
/// [`FaultProxy::set_mode`] returns (a reset itself is sent by the
/// connection's task a moment later). A new connection gets the mode of the
/// moment the proxy accepts it, which is a little after the client's
/// `connect` returned (the kernel completes the handshake): a test that
/// switches the mode right after connecting waits for
/// [`Counters::accepted`] first.
///
/// Two kinds of proxy, one type:
/// - [`FaultProxy::tcp`] (or [`FaultProxy::tcp_to_apiserver`]) forwards raw
///   TCP: TLS, client certificates and HTTP/2 pass through untouched. Modes
///   pass, refuse, black-hole.
/// - [`FaultProxy::tls`] (or [`FaultProxy::tls_to_apiserver`]) terminates TLS
///   with a certificate of its own ([`ServingCert`]: generated, or the test's)
///   and forwards the decrypted HTTP/1.1 requests over its own TLS connection
///   to the upstream, which it verifies ([`TlsUpstream`]). All four modes; the
///   refuse and black-hole modes act on the client's TCP connection as in the
///   raw proxy. Limits:
///   - It offers only `http/1.1` in ALPN: a client that offers `h2` and
///     `http/1.1` (reqwest, hyper, Go's client-go) speaks HTTP/1.1 through it;
///     one that insists on HTTP/2 cannot use it. kube-rs's client speaks
///     HTTP/1.1 anyway.
///   - Client certificates do not pass through: the proxy asks for none and
///     presents none upstream. Requests reach the upstream with the client's
///     headers, so a bearer token (a ServiceAccount's) authenticates as it
///     would directly; an admin kubeconfig's client certificate does not
///     (use the raw proxy for that).
///   - No protocol upgrades (exec, attach, port-forward, WebSockets).
///
/// The kube configuration of a client through the proxy:
/// [`FaultProxy::kube_config`] (in-process) and [`FaultProxy::kubeconfig`]
/// with [`write_kubeconfig`] (a child process, through `KUBECONFIG`). Note
/// that a [`kube::Config`] retries 429, 503 and 504 answers itself unless
/// its `default_retry` is off.
///
/// A proxy belongs to the tokio runtime it was started on (its tasks run
/// there), like a [`kube::Client`]. Dropping it stops its listener and ends
/// every connection, black-holed ones included.
///
/// ```no_run
/// # async fn demo() -> anyhow::Result<()> {
/// use test_support::{Answer, FaultProxy, Mode, TestEnv};
/// let env = TestEnv::global();
/// // The agent talks to the API server through a proxy that terminates TLS.
/// let proxy = FaultProxy::tls_to_apiserver(&env.kube_config()).await?;
/// let mut config = proxy.kube_config(env.kube_config());
/// config.auth_info = kube::config::AuthInfo {
///     token: Some("a ServiceAccount's token".to_string().into()),
///     ..Default::default()
/// };
/// // ... start the agent with `config` ...
/// proxy.set_mode(Mode::Answer(Answer::too_many_requests(2)));
/// // ... the agent backs off and says so ...
/// proxy.set_mode(Mode::BlackHole);
/// // ... no request may hang the agent while it reports healthy ...
/// proxy.set_mode(Mode::Pass);
/// assert!(proxy.counters().answered > 0);
/// # Ok(()) }
/// ```
pub struct FaultProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    /// The CA of the TLS-terminating proxy's certificate.
    ca_pem: Option<String>,
    shared: Arc<Shared>,
    accept_loop: JoinHandle<()>,
}

impl FaultProxy {
    /// A raw TCP proxy in front of `upstream`, in [`Mode::Pass`].
    pub async fn tcp(upstream: SocketAddr) -> anyhow::Result<FaultProxy> {
        FaultProxy::start(upstream, Front::Tcp { upstream }, None).await
    }

    /// A raw TCP proxy in front of the API server of `config` (e.g.
    /// [`TestEnv::kube_config`](crate::TestEnv::kube_config)); clients reach
    /// it with [`FaultProxy::kube_config`] or [`FaultProxy::kubeconfig`].
    pub async fn tcp_to_apiserver(config: &kube::Config) -> anyhow::Result<FaultProxy> {
        let upstream = certificates::resolve(&config.cluster_url).await?;
        FaultProxy::tcp(upstream).await
    }

    /// A TLS-terminating HTTP/1.1 proxy in front of `upstream`, presenting
    /// `cert`, in [`Mode::Pass`].
    pub async fn tls(upstream: TlsUpstream, cert: ServingCert) -> anyhow::Result<FaultProxy> {
        let acceptor = TlsAcceptor::from(cert.server_config()?);
        let addr = upstream.addr();
        let front = Front::Tls { acceptor, upstream };
        FaultProxy::start(addr, front, Some(cert.ca_pem().to_string())).await
    }

    /// A TLS-terminating proxy in front of the API server of `config` (e.g.
    /// [`TestEnv::kube_config`](crate::TestEnv::kube_config)), with a
    /// certificate of a new CA ([`ServingCert::generate`]); clients reach it
    /// with [`FaultProxy::kube_config`] or [`FaultProxy::kubeconfig`], which
    /// trust that CA. Clients must authenticate with a bearer token (see
    /// [`FaultProxy`]).
    pub async fn tls_to_apiserver(config: &kube::Config) -> anyhow::Result<FaultProxy> {
        let upstream = TlsUpstream::of_apiserver(config).await?;
        FaultProxy::tls(upstream, ServingCert::generate()?).await
    }

    async fn start(
        upstream: SocketAddr,
        front: Front,
        ca_pem: Option<String>,
    ) -> anyhow::Result<FaultProxy> {
        let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
            .await
            .context("binding the fault proxy to 127.0.0.1")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(ca_pem.is_some()));
        let accept_loop = tokio::spawn(connections::accept_loop(
            listener,
            shared.clone(),
            Arc::new(front),
        ));
        Ok(FaultProxy {
            addr,
            upstream,
            ca_pem,
            shared,
            accept_loop,
        })
    }

    /// Where the proxy listens (`127.0.0.1` and a port of its own).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The upstream's address.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// The PEM of the CA that clients of the TLS-terminating proxy must
    /// trust; `None` for a raw TCP proxy.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// Switches the mode; every open connection is in it when this returns
    /// (see [`FaultProxy`]).
    ///
    /// Panics on [`Mode::Answer`] for a raw TCP proxy, which cannot answer
    /// HTTP.
    pub fn set_mode(&self, mode: Mode) {
        self.shared.set_mode(mode);
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        self.shared.mode()
    }

    /// The counters now.
    pub fn counters(&self) -> Counters {
        self.shared.counters()
    }
}

impl fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("upstream", &self.upstream)
            .field("terminates_tls", &self.ca_pem.is_some())
            .field("mode", &self.mode())
            .field("counters", &self.counters())
            .finish()
    }
}

impl Drop for FaultProxy {
    /// Stops the listener and ends every connection (their tasks are aborted
    /// with the accept loop, which owns them).
    fn drop(&mut self) {
        self.accept_loop.abort();
        self.shared.forget_all();
    }
}
