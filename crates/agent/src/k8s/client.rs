//! The agent's client of the API server: kube's request stack (base URI,
//! authentication, extra headers, retries of 429/503/504 that honour
//! `Retry-After`) over a transport in which nothing waits for ever.
//!
//! - TCP and TLS together must connect within [`Deadlines::connect`]; the
//!   sockets send TCP keepalives.
//! - HTTP/2 where the API server offers it (it does), as client-go speaks
//!   it: one connection, pinged after [`PING_AFTER_IDLE`] without a byte from
//!   the server and closed when the ping is not answered within
//!   [`PING_TIMEOUT`]. A connection across a partition (it stops carrying
//!   traffic without being closed) is so dropped with every request on it,
//!   watches included, and never handed out again.
//! - A request that is not a watch must get its answer within
//!   [`Deadlines::request`], and its body may not pause for longer than that
//!   (with HTTP/1.1, a connection whose request timed out is closed). A
//!   watch's answer must begin within it too; its events may pause for as
//!   long as the watch lasts (kube-runtime's watcher restarts a watch that
//!   stays silent past its server-side timeout).
//!
//! Each timeout is counted in `kubernetes_request_timeouts_total`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body as HttpBody, Frame};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kube::client::retry::RetryPolicy;
use kube::client::{Body, ClientBuilder, ConfigExt, DynBody};
use tower::{BoxError, Layer, Service, ServiceBuilder, ServiceExt as _};

use super::metrics::KubernetesMetrics;

/// A connection that has carried nothing from the server for this long is
/// pinged (client-go: 30 s read-idle).
pub const PING_AFTER_IDLE: Duration = Duration::from_secs(15);
/// A ping not answered within this closes the connection (client-go: 15 s).
pub const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// TCP keepalive probes start after this much silence on a socket.
pub const TCP_KEEPALIVE: Duration = Duration::from_secs(30);
/// An idle pooled connection is closed after this.
const POOL_IDLE: Duration = Duration::from_secs(60);

/// How long the API server may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadlines {
    /// The answer to a request that is not a watch, and each pause in its
    /// body (`APP_KUBERNETES_REQUEST_TIMEOUT`).
    pub request: Duration,
    /// TCP and TLS handshake of a new connection.
    pub connect: Duration,
}

impl Deadlines {
    /// The connect deadline is the request's, at most 10 s.
    pub fn for_request_timeout(request: Duration) -> Deadlines {
        Deadlines {
            request,
            connect: request.min(Duration::from_secs(10)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot set up TLS for the API server")]
    Tls(#[source] kube::Error),
    #[error("the API server name {0:?} (tls-server-name) is not a valid TLS server name")]
    ServerName(String),
    #[error("cannot set up the API server's authentication")]
    Auth(#[source] kube::Error),
}

/// A client of the API server of `config` with `deadlines`. A
/// configuration that goes through an HTTP or SOCKS proxy (`proxy-url` in a
/// kubeconfig) gets kube's own transport, with the same deadline on every
/// read instead.
pub fn build(
    config: kube::Config,
    deadlines: Deadlines,
    metrics: Arc<KubernetesMetrics>,
) -> Result<kube::Client, ClientError> {
    if config.proxy_url.is_some() {
        return through_proxy(config, deadlines);
    }
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_keepalive(Some(TCP_KEEPALIVE));
    http.set_connect_timeout(Some(deadlines.connect));
    let tls = config.rustls_client_config().map_err(ClientError::Tls)?;
    let mut https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    if let Some(name) = &config.tls_server_name {
        let server_name = name
            .clone()
            .try_into()
            .map_err(|_| ClientError::ServerName(name.clone()))?;
        https = https
            .with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(server_name));
    }
    // The TLS handshake counts against the connect deadline too.
    let mut connector =
        hyper_timeout::TimeoutConnector::new(https.enable_all_versions().wrap_connector(http));
    connector.set_connect_timeout(Some(deadlines.connect));
    let transport: hyper_util::client::legacy::Client<_, Body> =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE)
            .http2_keep_alive_interval(PING_AFTER_IDLE)
            .http2_keep_alive_timeout(PING_TIMEOUT)
            .http2_keep_alive_while_idle(true)
            .build(connector);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(
            config
                .default_retry
                .then(|| tower::retry::RetryLayer::new(RetryPolicy::server_retry())),
        )
        .option_layer(config.auth_layer().map_err(ClientError::Auth)?)
        .layer(config.extra_headers_layer().map_err(ClientError::Auth)?)
        .layer(DeadlineLayer {
            request: deadlines.request,
            metrics,
        })
        .service(transport.map_err(BoxError::from));
    Ok(ClientBuilder::new(service, config.default_namespace).build())
}

/// kube's own transport, for a configuration with a proxy: its read
/// timeout is per connection, so watches get it too and are restarted
/// when they stay silent for longer (kube-runtime's watcher does that).
fn through_proxy(
    mut config: kube::Config,
    deadlines: Deadlines,
) -> Result<kube::Client, ClientError> {
    config.connect_timeout = Some(deadlines.connect);
    config.read_timeout = Some(deadlines.request.max(Duration::from_secs(300)));
    config.write_timeout = Some(deadlines.request);
    config.reset_reader_on_write = true;
    kube::Client::try_from(config).map_err(ClientError::Tls)
}

/// Whether a request is a watch: its answer is a stream of events that may
/// be silent for minutes.
pub fn is_watch(uri: &http::Uri) -> bool {
    uri.query().is_some_and(|query| {
        query
            .split('&')
            .any(|pair| matches!(pair, "watch=true" | "watch=1"))
    })
}

/// Whether an error, or one of its causes, is a timeout of an I/O operation.
fn is_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if error
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        cause = error.source();
    }
    false
}

/// What did not come in time.
#[derive(Debug, thiserror::Error)]
pub enum RequestTimedOut {
    #[error("the API server did not answer within {0:?}")]
    Answer(Duration),
    #[error("the API server's answer paused for longer than {0:?}")]
    Body(Duration),
}

/// Puts the request deadline on each request (see the module's text).
#[derive(Clone)]
struct DeadlineLayer {
    request: Duration,
    metrics: Arc<KubernetesMetrics>,
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = DeadlineService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DeadlineService {
            inner,
            request: self.request,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
struct DeadlineService<S> {
    inner: S,
    request: Duration,
    metrics: Arc<KubernetesMetrics>,
}

type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<Response<Box<DynBody>>, BoxError>> + Send>>;

impl<S, B> Service<Request<Body>> for DeadlineService<S>
where
    S: Service<Request<Body>, Response = Response<B>, Error = BoxError>,
    S::Future: Send + 'static,
    B: HttpBody<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Box<DynBody>>;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let deadline = self.request;
        let body_pause = (!is_watch(request.uri())).then_some(deadline);
        let metrics = self.metrics.clone();
        let answer = self.inner.call(request);
        Box::pin(async move {
            match tokio::time::timeout(deadline, answer).await {
                Ok(Ok(response)) => Ok(response.map(|body| {
                    Box::new(DeadlineBody {
                        inner: body,
                        pause: body_pause.map(|limit| (limit, Box::pin(tokio::time::sleep(limit)))),
                        metrics,
                    }) as Box<DynBody>
                })),
                Ok(Err(error)) => {
                    if is_timeout(error.as_ref()) {
                        // A connection (TCP or TLS) not made in time.
                        metrics.record_request_timeout();
                    }
                    Err(error)
                }
                Err(_) => {
                    metrics.record_request_timeout();
                    Err(Box::new(RequestTimedOut::Answer(deadline)) as BoxError)
                }
            }
        })
    }
}

/// A body that fails when it pauses for longer than its limit (none for a
/// watch).
pub struct DeadlineBody<B> {
    inner: B,
    pause: Option<(Duration, Pin<Box<tokio::time::Sleep>>)>,
    metrics: Arc<KubernetesMetrics>,
}

impl<B> HttpBody for DeadlineBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some((limit, sleep)) = this.pause.as_mut() {
                    sleep.as_mut().reset(tokio::time::Instant::now() + *limit);
                }
                Poll::Ready(frame.map(|frame| frame.map_err(Into::into)))
            }
            Poll::Pending => {
                let Some((limit, sleep)) = this.pause.as_mut() else {
                    return Poll::Pending;
                };
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.metrics.record_request_timeout();
                Poll::Ready(Some(Err(Box::new(RequestTimedOut::Body(*limit)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A plain-HTTP server that answers each request with `answer`, which
    /// may stall where the test wants.
    async fn server<F, Fut>(answer: F) -> String
    where
        F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let answer = Arc::new(answer);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let answer = answer.clone();
                tokio::spawn(async move {
                    // The request head; the tests send no body.
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if socket.read(&mut byte).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    answer(socket).await
                });
            }
        });
        format!("http://{address}")
    }

    fn client(url: &str, deadline: Duration) -> (kube::Client, Arc<KubernetesMetrics>) {
        let metrics = Arc::new(KubernetesMetrics::default());
        let config = kube::Config::new(url.parse().unwrap());
        let client = build(
            config,
            Deadlines::for_request_timeout(deadline),
            metrics.clone(),
        )
        .unwrap();
        (client, metrics)
    }

    fn get(path: &str) -> Request<Vec<u8>> {
        Request::get(path).body(Vec::new()).unwrap()
    }

    const DEADLINE: Duration = Duration::from_millis(300);

    #[tokio::test]
    async fn a_request_without_an_answer_fails_at_its_deadline_and_is_counted() {
        let url = server(|socket| async move {
            // Holds the connection open and says nothing.
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(socket);
        })
        .await;
        let (client, metrics) = client(&url, DEADLINE);
        let started = std::time::Instant::now();
        let error = client
            .request_text(get("/api/v1/namespaces"))
            .await
            .unwrap_err();
        let took = started.elapsed();
        assert!(
            error.to_string().contains("did not answer within 300ms")
                || format!("{error:?}").contains("Answer(300ms)"),
            "{error:?}"
        );
        assert!(took < Duration::from_secs(5), "took {took:?}");
        assert_eq!(metrics.request_timeouts(), 1);
    }

    #[tokio::test]
    async fn a_connection_whose_tls_handshake_never_ends_fails_in_time_and_is_counted() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            // Accepts, and never says a word of TLS.
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        // The connect deadline, not the request's, ends it.
        let metrics = Arc::new(KubernetesMetrics::default());
        let deadlines = Deadlines {
            request: Duration::from_secs(20),
            connect: DEADLINE,
        };
        let config = kube::Config::new(format!("https://{address}").parse().unwrap());
        let client = build(config, deadlines, metrics.clone()).unwrap();
        let started = std::time::Instant::now();
        let error = client
            .request_text(get("/api/v1/namespaces"))
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5), "{error:?}");
        assert_eq!(metrics.request_timeouts(), 1, "{error:?}");
    }

    #[tokio::test]
    async fn an_answer_that_pauses_longer_than_the_deadline_fails() {
        let url = server(|mut socket| async move {
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"kind\":")
                .await;
            tokio::time::sleep(Duration::from_secs(60)).await;
        })
        .await;
        let (client, metrics) = client(&url, DEADLINE);
        let error = client
            .request_text(get("/api/v1/namespaces"))
            .await
            .unwrap_err();
        assert!(format!("{error:?}").contains("Body(300ms)"), "{error:?}");
        assert_eq!(metrics.request_timeouts(), 1);
    }

    #[tokio::test]
    async fn a_watch_may_stay_silent_longer_than_the_deadline() {
        let url = server(|mut socket| async move {
            let event = br#"{"type":"ADDED","object":{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"a"}}}"#;
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
                .await;
            // Silent for three deadlines, then one event and the end.
            tokio::time::sleep(DEADLINE * 3).await;
            let chunk = format!("{:x}\r\n", event.len() + 1);
            let _ = socket.write_all(chunk.as_bytes()).await;
            let _ = socket.write_all(event).await;
            let _ = socket.write_all(b"\n\r\n0\r\n\r\n").await;
            tokio::time::sleep(Duration::from_secs(60)).await;
        })
        .await;
        let (client, metrics) = client(&url, DEADLINE);
        let events = client
            .request_events::<k8s_openapi::api::core::v1::Namespace>(get(
                "/api/v1/namespaces?watch=true",
            ))
            .await
            .expect("the watch's answer begins at once");
        let events: Vec<_> = futures::StreamExt::collect(events).await;
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(events[0].is_ok(), "{events:?}");
        assert_eq!(metrics.request_timeouts(), 0);
    }

    #[test]
    fn watches_are_told_by_their_query() {
        for (uri, watch) in [
            ("/api/v1/secrets?watch=true&resourceVersion=1", true),
            ("/api/v1/secrets?fieldSelector=a&watch=1", true),
            ("/api/v1/secrets?watch=false", false),
            ("/api/v1/secrets?allowWatchBookmarks=true", false),
            ("/api/v1/secrets", false),
            ("/apis/x/v1/watchers?name=watch=true", false),
        ] {
            assert_eq!(is_watch(&uri.parse().unwrap()), watch, "{uri}");
        }
    }

    #[test]
    fn the_connect_deadline_is_at_most_ten_seconds() {
        assert_eq!(
            Deadlines::for_request_timeout(Duration::from_secs(30)).connect,
            Duration::from_secs(10)
        );
        assert_eq!(
            Deadlines::for_request_timeout(Duration::from_secs(3)).connect,
            Duration::from_secs(3)
        );
    }
}
