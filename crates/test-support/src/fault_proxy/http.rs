//! The TLS-terminating proxy's HTTP/1.1: each request is answered by the
//! proxy itself in answer mode, else forwarded over the connection's own TLS
//! connection to the upstream.
//!
//! The mode is read when a request arrives, not when its connection was
//! opened: a client's pooled keep-alive connection gets the proxy's answers
//! as soon as the mode says so, and forwarded answers again afterwards. A
//! response in flight (a watch) goes on streaming when the mode turns to
//! answer, as an overloaded API server lets running requests finish.

use std::convert::Infallible;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use anyhow::Context as _;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::certificates::TlsUpstream;
use super::connections::{lock, ClientTcp, Control, Counted, Direction, Gate, Shared};
use super::Answer;

/// Serves one client connection: the TLS handshake, then HTTP/1.1 until the
/// client closes it.
pub(super) async fn serve(
    acceptor: TlsAcceptor,
    upstream: TlsUpstream,
    client: Gate<ClientTcp>,
    control: Arc<Control>,
    shared: Arc<Shared>,
) {
    let Ok(tls) = acceptor.accept(client).await else {
        return;
    };
    let io = TokioIo::new(Counted::new(tls, shared.clone(), Direction::ToClient));
    let exchange = Arc::new(Exchange {
        upstream,
        control,
        shared,
        sender: tokio::sync::Mutex::new(None),
        drivers: Mutex::new(JoinSet::new()),
    });
    let service = service_fn(move |request| {
        let exchange = exchange.clone();
        async move { Ok::<_, Infallible>(exchange.handle(request).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, service)
        .await;
}

/// One client connection's requests and its connection to the upstream.
struct Exchange {
    upstream: TlsUpstream,
    control: Arc<Control>,
    shared: Arc<Shared>,
    /// The upstream connection, made at the first forwarded request and made
    /// anew when the upstream closed it. HTTP/1.1 serves one request at a
    /// time, so one is enough.
    sender: tokio::sync::Mutex<Option<SendRequest<Incoming>>>,
    /// The tasks driving the upstream connections; aborted when the client's
    /// connection ends (this is dropped).
    drivers: Mutex<JoinSet<()>>,
}

impl Exchange {
    async fn handle(&self, request: Request<Incoming>) -> Response<ProxyBody> {
        if let Some(answer) = self.shared.answer() {
            // Read the request to its end, so that the connection can carry
            // the next one.
            let mut body = request.into_body();
            while let Some(Ok(_)) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {}
            self.shared.count_answered();
            return answer.response();
        }
        match self.forward(request).await {
            Ok(response) => response.map(ProxyBody::Upstream),
            Err(e) => {
                let mut response = Response::new(ProxyBody::full(format!(
                    "fault proxy: the upstream did not answer: {e:#}\n"
                )));
                *response.status_mut() = StatusCode::BAD_GATEWAY;
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                response
            }
        }
    }

    async fn forward(&self, mut request: Request<Incoming>) -> anyhow::Result<Response<Incoming>> {
        let mut sender = self.sender.lock().await;
        let mut retried = false;
        loop {
            let ready = match sender.as_mut() {
                Some(sender) => sender.ready().await.is_ok(),
                None => false,
            };
            if !ready {
                *sender = Some(self.connect().await?);
            }
            let current = sender.as_mut().expect("connected above");
            match current.try_send_request(request).await {
                Ok(response) => return Ok(response),
                Err(mut e) => {
                    *sender = None;
                    // The upstream closed the connection before the request
                    // went out: send it once more, on a new one.
                    match e.take_message() {
                        Some(unsent) if !retried => {
                            request = unsent;
                            retried = true;
                        }
                        _ => return Err(e.into_error()).context("forwarding the request"),
                    }
                }
            }
        }
    }

    async fn connect(&self) -> anyhow::Result<SendRequest<Incoming>> {
        let addr = self.upstream.addr();
        let tcp = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        let _ = tcp.set_nodelay(true);
        let tls = TlsConnector::from(self.upstream.client_config())
            .connect(
                self.upstream.server_name(),
                Gate::new(tcp, self.control.clone()),
            )
            .await
            .with_context(|| format!("TLS handshake with {addr}"))?;
        let io = TokioIo::new(Counted::new(
            tls,
            self.shared.clone(),
            Direction::ToUpstream,
        ));
        let (sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .context("HTTP/1.1 handshake")?;
        let mut drivers = lock(&self.drivers);
        while drivers.try_join_next().is_some() {}
        drivers.spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }
}

impl Answer {
    fn response(&self) -> Response<ProxyBody> {
        let mut response = Response::new(ProxyBody::Full(Some(self.body.clone())));
        *response.status_mut() = self.status;
        for (name, value) in &self.headers {
            response.headers_mut().append(name, value.clone());
        }
        response
    }
}

/// A response body: the upstream's, streamed, or the proxy's own.
pub(super) enum ProxyBody {
    Upstream(Incoming),
    Full(Option<Bytes>),
}

impl ProxyBody {
    fn full(text: String) -> ProxyBody {
        ProxyBody::Full(Some(Bytes::from(text)))
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ProxyBody::Upstream(body) => Pin::new(body).poll_frame(cx),
            ProxyBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream(body) => body.is_end_stream(),
            ProxyBody::Full(data) => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream(body) => body.size_hint(),
            ProxyBody::Full(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}
