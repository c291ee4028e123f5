//! The proxy's connections: the registry a mode change walks, what a
//! connection's state does to its I/O, the accept loop and the task that
//! serves one connection.
//!
//! A mode change takes effect on every open connection before
//! [`FaultProxy::set_mode`](super::FaultProxy::set_mode) returns: the state
//! of each connection is changed under the registry's lock, and every read or
//! write of a connection looks at that state first ([`Gate`]). New
//! connections are admitted under the same lock, so none slips between a mode
//! change and the walk over the open ones.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::{Answer, Counters, Front, Mode};

const OPEN: u8 = 0;
const BLACK_HOLED: u8 = 1;
const RESET: u8 = 2;

/// A poisoned lock only means a panicking test thread; the data is still fine.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the proxy and its connections share.
pub(super) struct Shared {
    registry: Mutex<Registry>,
    counters: CounterCells,
    /// Whether this proxy can answer HTTP (it terminates TLS).
    answers_http: bool,
}

struct Registry {
    mode: Mode,
    next_id: u64,
    /// The connections not given up yet (black-holed ones included).
    connections: HashMap<u64, Arc<Control>>,
}

#[derive(Default)]
struct CounterCells {
    accepted: AtomicU64,
    reset: AtomicU64,
    black_holed: AtomicU64,
    bytes_to_upstream: AtomicU64,
    bytes_to_client: AtomicU64,
    answered: AtomicU64,
}

/// Which way bytes written through a [`Counted`] stream go.
#[derive(Clone, Copy)]
pub(super) enum Direction {
    ToUpstream,
    ToClient,
}

/// What [`Shared::admit`] decided for a new connection.
enum Admission {
    /// Reset at once (refuse mode).
    Refused,
    /// Held and never served (black-hole mode); its socket is parked.
    BlackHoled(u64, Arc<Control>),
    /// Served (pass or answer mode).
    Open(u64, Arc<Control>, ClientTcp),
}

impl Shared {
    pub(super) fn new(answers_http: bool) -> Shared {
        Shared {
            registry: Mutex::new(Registry {
                mode: Mode::Pass,
                next_id: 0,
                connections: HashMap::new(),
            }),
            counters: CounterCells::default(),
            answers_http,
        }
    }

    pub(super) fn mode(&self) -> Mode {
        lock(&self.registry).mode.clone()
    }

    /// The answer to give to a request arriving now, if the mode is `Answer`.
    pub(super) fn answer(&self) -> Option<Answer> {
        match &lock(&self.registry).mode {
            Mode::Answer(answer) => Some(answer.clone()),
            _ => None,
        }
    }

    pub(super) fn set_mode(&self, mode: Mode) {
        if matches!(mode, Mode::Answer(_)) && !self.answers_http {
            panic!(
                "FaultProxy: Mode::Answer needs a proxy that terminates TLS and speaks HTTP \
                 (FaultProxy::tls or FaultProxy::tls_to_apiserver); this one forwards raw TCP"
            );
        }
        let mut registry = lock(&self.registry);
        match mode {
            Mode::Refuse => {
                for (_, control) in registry.connections.drain() {
                    control.reset();
                    self.counters.reset.fetch_add(1, Ordering::Relaxed);
                }
            }
            Mode::BlackHole => {
                for control in registry.connections.values() {
                    if control.black_hole() {
                        self.counters.black_holed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Mode::Pass | Mode::Answer(_) => {}
        }
        registry.mode = mode;
    }

    pub(super) fn counters(&self) -> Counters {
        let open = lock(&self.registry).connections.len() as u64;
        let c = &self.counters;
        let get = |cell: &AtomicU64| cell.load(Ordering::Relaxed);
        Counters {
            accepted: get(&c.accepted),
            open,
            reset: get(&c.reset),
            black_holed: get(&c.black_holed),
            bytes_to_upstream: get(&c.bytes_to_upstream),
            bytes_to_client: get(&c.bytes_to_client),
            answered: get(&c.answered),
        }
    }

    pub(super) fn count_answered(&self) {
        self.counters.answered.fetch_add(1, Ordering::Relaxed);
    }

    fn count_written(&self, direction: Direction, bytes: usize) {
        let cell = match direction {
            Direction::ToUpstream => &self.counters.bytes_to_upstream,
            Direction::ToClient => &self.counters.bytes_to_client,
        };
        cell.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Decides, under the registry's lock, what becomes of a new connection.
    fn admit(&self, tcp: TcpStream) -> Admission {
        self.counters.accepted.fetch_add(1, Ordering::Relaxed);
        let mut registry = lock(&self.registry);
        let state = match registry.mode {
            Mode::Refuse => {
                self.counters.reset.fetch_add(1, Ordering::Relaxed);
                drop(registry);
                let _ = tcp.set_zero_linger();
                return Admission::Refused;
            }
            Mode::BlackHole => BLACK_HOLED,
            Mode::Pass | Mode::Answer(_) => OPEN,
        };
        let id = registry.next_id;
        registry.next_id += 1;
        let control = Arc::new(Control {
            state: AtomicU8::new(state),
            changed: Notify::new(),
            parked: Mutex::new(None),
        });
        registry.connections.insert(id, control.clone());
        drop(registry);
        if state == BLACK_HOLED {
            self.counters.black_holed.fetch_add(1, Ordering::Relaxed);
            control.park(tcp);
            Admission::BlackHoled(id, control)
        } else {
            let _ = tcp.set_nodelay(true);
            let client = ClientTcp {
                tcp: Some(tcp),
                control: control.clone(),
            };
            Admission::Open(id, control, client)
        }
    }

    /// Forgets every connection (the proxy is dropped).
    pub(super) fn forget_all(&self) {
        let connections: Vec<_> = lock(&self.registry).connections.drain().collect();
        drop(connections);
    }
}

/// One client connection's state, as mode changes set it.
pub(super) struct Control {
    state: AtomicU8,
    /// Wakes the connection's task when it is reset.
    changed: Notify,
    /// The client's socket while no stream owns it: a connection black-holed
    /// when it was accepted, or one whose forwarding ended after it was
    /// black-holed. Kept open until the connection is reset or the proxy
    /// dropped.
    parked: Mutex<Option<TcpStream>>,
}

impl Control {
    fn state(&self) -> u8 {
        self.state.load(Ordering::SeqCst)
    }

    /// Black-holes an open connection; false when it was not open.
    fn black_hole(&self) -> bool {
        self.state
            .compare_exchange(OPEN, BLACK_HOLED, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    fn reset(&self) {
        self.state.store(RESET, Ordering::SeqCst);
        if let Some(tcp) = lock(&self.parked).take() {
            let _ = tcp.set_zero_linger();
        }
        self.changed.notify_one();
    }

    /// Keeps `tcp` open until the connection is reset (or at once resets it
    /// when that already happened).
    fn park(&self, tcp: TcpStream) {
        let mut parked = lock(&self.parked);
        if self.state() == RESET {
            drop(parked);
            let _ = tcp.set_zero_linger();
        } else {
            *parked = Some(tcp);
        }
    }

    /// Returns when the connection is reset. One waiter only: its task.
    async fn reset_requested(&self) {
        while self.state() != RESET {
            self.changed.notified().await;
        }
    }
}

fn reset_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionReset,
        "connection reset by the fault proxy",
    )
}

/// The client's socket. Closed with a RST (`SO_LINGER` 0) when its
/// connection was reset; parked, open, when it was black-holed.
pub(super) struct ClientTcp {
    tcp: Option<TcpStream>,
    control: Arc<Control>,
}

impl ClientTcp {
    fn tcp(&mut self) -> Pin<&mut TcpStream> {
        Pin::new(self.tcp.as_mut().expect("the socket is only taken on drop"))
    }
}

impl Drop for ClientTcp {
    fn drop(&mut self) {
        let Some(tcp) = self.tcp.take() else { return };
        match self.control.state() {
            RESET => {
                let _ = tcp.set_zero_linger();
            }
            BLACK_HOLED => self.control.park(tcp),
            _ => {}
        }
    }
}

impl AsyncRead for ClientTcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.tcp().poll_read(cx, buf)
    }
}

impl AsyncWrite for ClientTcp {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.tcp().poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tcp().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tcp().poll_shutdown(cx)
    }
}

/// A stream of one connection (its client side or its upstream side) that
/// carries bytes only while the connection is open: a black-holed
/// connection's reads and writes never complete, a reset one's fail.
pub(super) struct Gate<S> {
    inner: S,
    control: Arc<Control>,
}

impl<S> Gate<S> {
    pub(super) fn new(inner: S, control: Arc<Control>) -> Gate<S> {
        Gate { inner, control }
    }

    /// `None` when the stream may be used; else what every operation returns.
    /// A black-holed stream registers no waker: nothing is to wake it, and
    /// its task wakes when the connection is reset.
    fn blocked<T>(&self) -> Option<Poll<io::Result<T>>> {
        match self.control.state() {
            OPEN => None,
            BLACK_HOLED => Some(Poll::Pending),
            _ => Some(Poll::Ready(Err(reset_error()))),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Gate<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(blocked) = self.blocked() {
            return blocked;
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Gate<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(blocked) = self.blocked() {
            return blocked;
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(blocked) = self.blocked() {
            return blocked;
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(blocked) = self.blocked() {
            return blocked;
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A stream whose written bytes are counted as forwarded `direction`.
pub(super) struct Counted<S> {
    inner: S,
    shared: Arc<Shared>,
    direction: Direction,
}

impl<S> Counted<S> {
    pub(super) fn new(inner: S, shared: Arc<Shared>, direction: Direction) -> Counted<S> {
        Counted {
            inner,
            shared,
            direction,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            self.shared.count_written(self.direction, n);
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Accepts connections until the task is aborted (the proxy is dropped);
/// the connections' tasks live in a [`JoinSet`] owned by this one, so they
/// are aborted with it.
pub(super) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, front: Arc<Front>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => match shared.admit(tcp) {
                    Admission::Refused => {}
                    Admission::BlackHoled(id, control) => {
                        connections.spawn(run_connection(
                            shared.clone(),
                            front.clone(),
                            id,
                            control,
                            None,
                        ));
                    }
                    Admission::Open(id, control, client) => {
                        connections.spawn(run_connection(
                            shared.clone(),
                            front.clone(),
                            id,
                            control,
                            Some(client),
                        ));
                    }
                },
                Err(e) => {
                    // E.g. out of file descriptors: not a reason to stop, nor
                    // to spin until one is free.
                    eprintln!("fault proxy: accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Removes a connection from the registry when its task ends, however it
/// ends (also when aborted).
struct Registration {
    shared: Arc<Shared>,
    id: u64,
    control: Arc<Control>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.shared.registry).connections.remove(&self.id);
        if let Some(tcp) = lock(&self.control.parked).take() {
            if self.control.state() == RESET {
                let _ = tcp.set_zero_linger();
            }
        }
    }
}

/// Serves one connection until it ends or is reset; a black-holed one is held
/// until it is reset or the proxy dropped.
async fn run_connection(
    shared: Arc<Shared>,
    front: Arc<Front>,
    id: u64,
    control: Arc<Control>,
    client: Option<ClientTcp>,
) {
    let _registration = Registration {
        shared: shared.clone(),
        id,
        control: control.clone(),
    };
    let Some(client) = client else {
        control.reset_requested().await;
        return;
    };
    let serve = front.serve(Gate::new(client, control.clone()), control.clone(), shared);
    tokio::select! {
        biased;
        () = control.reset_requested() => {}
        () = serve => {
            // Forwarding can end after the connection was black-holed (the
            // upstream closed); the client's socket is parked, and stays open.
            if control.state() == BLACK_HOLED {
                control.reset_requested().await;
            }
        }
    }
}
