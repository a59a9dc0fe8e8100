//! The one way both appliances serve HTTP (the sender's ingest and metrics listeners, the
//! receiver's API): hyper's HTTP/1 server with the limits `axum::serve` does not set, so that slow
//! and hostile clients cannot stop an appliance.
//!
//! - **Connection cap** ([`HttpLimits::max_connections`]). At the cap, a new connection takes the
//!   place of the connection that has been idle longest (no request in progress: waiting for its
//!   first request, between keep-alive requests, or still sending a request head); when every
//!   connection is busy with a request, the new one is closed at once. So idle connections, however
//!   many, never keep a working client out, and a request in progress is never cut off.
//! - **Header timeout** ([`HttpLimits::header_timeout`]): a request head must arrive whole within
//!   this time of its first byte (slowloris).
//! - **Idle timeout** ([`HttpLimits::idle_timeout`]): a connection with no request in progress and
//!   no byte of a new one is closed after this long.
//! - **Write timeout** ([`HttpLimits::write_timeout`]): a client that takes nothing of its
//!   response for this long is disconnected, which ends the response (and frees whatever produced
//!   it, such as a query slot).
//! - **Accept errors** (out of descriptors, …) are logged at most every ten seconds and retried
//!   after a back-off of 10 ms doubling to 1 s; out of descriptors, the longest idle connection is
//!   closed first to make room. The listener never stops.
//!
//! - **Accept queue** ([`bind`]): 4,096 connections deep (as far as `net.core.somaxconn` allows)
//!   instead of tokio's 1,024, so a burst of connects queues while the accept loop makes room
//!   rather than having its handshakes dropped, which a working client would see as a connect
//!   timeout.
//!
//! Request bodies are the handler's business (the sender's ingest bounds their size and read
//! time); these limits hold for every route.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tower::ServiceExt;

use crate::backoff::{Backoff, RateLimitedWarning, out_of_descriptors};
use crate::fd_limit;
use crate::sync::lock;

/// Default [`HttpLimits::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 1_024;
/// Default [`HttpLimits::header_timeout`].
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`HttpLimits::idle_timeout`]: longer than collectors' usual 10 s flush interval, so
/// their keep-alive connections are reused rather than closed under them.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// Default [`HttpLimits::write_timeout`].
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// The limits of one HTTP listener (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Time from the first byte of a request head to its end.
    pub header_timeout: Duration,
    /// Time a connection may stay open with no request in progress and no byte of a new one.
    pub idle_timeout: Duration,
    /// Time a response may wait for the client to take any of it.
    pub write_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
        }
    }
}

/// `no head started` in [`Connection::head_started_ms`].
const NONE: u64 = u64::MAX;

/// What the listener knows of one connection, shared with the connection's task.
struct Connection {
    /// Requests whose response has not been sent whole yet.
    in_flight: AtomicUsize,
    /// When the connection last became idle: accepted, or its last response sent (ms since the
    /// listener started).
    idle_since_ms: AtomicU64,
    /// When the first byte of a request head arrived while idle, or [`NONE`].
    head_started_ms: AtomicU64,
    /// Wakes the connection's task to recompute its deadline.
    changed: Notify,
    /// Tells the connection's task to close (the listener needs its place).
    evict: Notify,
}

/// The open connections of one listener.
struct Registry {
    started: Instant,
    open: Mutex<HashMap<u64, Arc<Connection>>>,
    next_id: AtomicU64,
}

impl Registry {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    fn instant(&self, ms: u64) -> Instant {
        self.started + Duration::from_millis(ms)
    }

    fn len(&self) -> usize {
        lock(&self.open).len()
    }

    fn register(&self) -> (u64, Arc<Connection>) {
        let connection = Arc::new(Connection {
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(self.now_ms()),
            head_started_ms: AtomicU64::new(NONE),
            changed: Notify::new(),
            evict: Notify::new(),
        });
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.open).insert(id, Arc::clone(&connection));
        (id, connection)
    }

    fn remove(&self, id: u64) {
        lock(&self.open).remove(&id);
    }

    /// Closes the connection idle longest, if any is idle; it stops counting at once.
    fn evict_one(&self) -> bool {
        let mut open = lock(&self.open);
        let victim = open
            .iter()
            .filter(|(_, connection)| connection.in_flight.load(Ordering::Acquire) == 0)
            .min_by_key(|(_, connection)| connection.idle_since_ms.load(Ordering::Relaxed))
            .map(|(id, _)| *id);
        match victim.and_then(|id| open.remove(&id)) {
            Some(connection) => {
                connection.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

impl Connection {
    /// When this connection times out unless something happens first; `None` while a request is
    /// in progress.
    fn deadline(&self, registry: &Registry, limits: &HttpLimits) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let head_started_ms = self.head_started_ms.load(Ordering::Acquire);
        Some(if head_started_ms != NONE {
            registry.instant(head_started_ms) + limits.header_timeout
        } else {
            registry.instant(self.idle_since_ms.load(Ordering::Acquire)) + limits.idle_timeout
        })
    }

    /// Bytes arrived: when idle, they start a request head, and the header timeout runs.
    fn bytes_read(&self, registry: &Registry) {
        if self.in_flight.load(Ordering::Acquire) == 0
            && self
                .head_started_ms
                .compare_exchange(NONE, registry.now_ms(), Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.changed.notify_one();
        }
    }
}

/// A request in progress on a connection, from its head until its response is sent whole.
struct InFlight {
    connection: Arc<Connection>,
    registry: Arc<Registry>,
}

impl InFlight {
    fn start(connection: &Arc<Connection>, registry: &Arc<Registry>) -> InFlight {
        connection.in_flight.fetch_add(1, Ordering::AcqRel);
        connection.head_started_ms.store(NONE, Ordering::Release);
        connection.changed.notify_one();
        InFlight { connection: Arc::clone(connection), registry: Arc::clone(registry) }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.connection.idle_since_ms.store(self.registry.now_ms(), Ordering::Release);
        self.connection.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.connection.changed.notify_one();
    }
}

/// A response body that holds its request's [`InFlight`] until it is sent whole or dropped.
struct TrackedBody {
    body: Body,
    _in_flight: InFlight,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(context)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The connection's socket: notes the first byte of each request head, and fails a write the
/// client has taken nothing of for [`HttpLimits::write_timeout`].
struct GuardedStream {
    stream: TcpStream,
    connection: Arc<Connection>,
    registry: Arc<Registry>,
    write_timeout: Duration,
    /// Armed while a write waits for the client.
    write_deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl GuardedStream {
    /// A write is pending: fails once it has been pending for the write timeout.
    fn pending_write(&mut self, context: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let timeout = self.write_timeout;
        let deadline = self.write_deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match deadline.as_mut().poll(context) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the client took nothing of the response for {} ms", timeout.as_millis()),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Wraps a write-side poll with the write timeout.
    fn guard_write<T>(
        &mut self,
        context: &mut Context<'_>,
        poll: impl FnOnce(Pin<&mut TcpStream>, &mut Context<'_>) -> Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        match poll(Pin::new(&mut self.stream), context) {
            Poll::Ready(result) => {
                self.write_deadline = None;
                Poll::Ready(result)
            }
            Poll::Pending => match self.pending_write(context) {
                Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
                _ => Poll::Pending,
            },
        }
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(self: Pin<&mut Self>, context: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.stream).poll_read(context, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.connection.bytes_read(&this.registry);
        }
        result
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(self: Pin<&mut Self>, context: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        self.get_mut().guard_write(context, |stream, context| stream.poll_write(context, data))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.get_mut().guard_write(context, |stream, context| stream.poll_write_vectored(context, buffers))
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.get_mut().guard_write(context, |stream, context| stream.poll_flush(context))
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.get_mut().guard_write(context, |stream, context| stream.poll_shutdown(context))
    }
}

/// How many finished handshakes the kernel keeps for the accept loop (it caps this at
/// `net.core.somaxconn`).
pub const ACCEPT_QUEUE: u32 = 4_096;

/// A TCP listener on `listen` with an [`ACCEPT_QUEUE`]-deep accept queue and `SO_REUSEADDR` (as
/// `TcpListener::bind` sets it), for [`serve`] and the appliances' other TCP listeners.
pub async fn bind(listen: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if listen.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(listen)?;
    socket.listen(ACCEPT_QUEUE)
}

/// Serves `app` on `listener` with `limits` until the task running it is dropped. `setting`
/// names the connection cap's setting in warnings (e.g. `http.max_connections`).
pub async fn serve(listener: TcpListener, app: axum::Router, limits: HttpLimits, setting: &'static str) {
    fd_limit::reserve(limits.max_connections, setting);
    let registry = Arc::new(Registry { started: Instant::now(), open: Mutex::default(), next_id: AtomicU64::new(0) });
    let accept_failed = RateLimitedWarning::default();
    let cap_reached = RateLimitedWarning::default();
    let mut backoff = Backoff::default();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => {
                backoff.reset();
                accepted
            }
            Err(error) => {
                // Out of descriptors: the longest idle connection gives up its own.
                let evicted = out_of_descriptors(&error) && registry.evict_one();
                accept_failed.warn(|| format!("accepting an HTTP connection failed: {error}; retrying"));
                if evicted {
                    tokio::task::yield_now().await;
                } else {
                    tokio::time::sleep(backoff.next_wait()).await;
                }
                continue;
            }
        };
        if registry.len() >= limits.max_connections && !registry.evict_one() {
            cap_reached.warn(|| {
                format!(
                    "{} HTTP connections are busy with requests ({setting}); closed a new connection from {peer}",
                    limits.max_connections
                )
            });
            continue;
        }
        let _ = stream.set_nodelay(true);
        let (id, connection) = registry.register();
        tokio::spawn(serve_connection(stream, app.clone(), limits, Arc::clone(&registry), id, connection));
    }
}

/// Serves one connection until it ends, times out or is evicted.
async fn serve_connection(
    stream: TcpStream,
    app: axum::Router,
    limits: HttpLimits,
    registry: Arc<Registry>,
    id: u64,
    connection: Arc<Connection>,
) {
    let io = GuardedStream {
        stream,
        connection: Arc::clone(&connection),
        registry: Arc::clone(&registry),
        write_timeout: limits.write_timeout,
        write_deadline: None,
    };
    let service = {
        let (connection, registry) = (Arc::clone(&connection), Arc::clone(&registry));
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let in_flight = InFlight::start(&connection, &registry);
            let response = app.clone().oneshot(request.map(Body::new));
            async move {
                let response = response.await.unwrap_or_else(|never: Infallible| match never {});
                Ok::<_, Infallible>(response.map(|body| Body::new(TrackedBody { body, _in_flight: in_flight })))
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The header and idle timeouts are kept here (hyper's header timeout also runs while idle).
    builder.timer(TokioTimer::new()).header_read_timeout(None).keep_alive(true);
    let serving = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(serving);
    let mut closing = false;
    loop {
        let deadline = connection.deadline(&registry, &limits);
        tokio::select! {
            result = serving.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!("HTTP connection ended: {error}");
                }
                break;
            }
            () = connection.changed.notified() => {}
            () = connection.evict.notified(), if !closing => {
                if connection.in_flight.load(Ordering::Acquire) == 0 {
                    break;
                }
                // A request started meanwhile: finish it, then close.
                serving.as_mut().graceful_shutdown();
                closing = true;
            }
            () = sleep_until(deadline) => {
                // Re-read: a request may have started since the deadline was computed.
                if connection.deadline(&registry, &limits).is_some_and(|deadline| deadline <= Instant::now()) {
                    tracing::debug!("closed an HTTP connection that timed out");
                    break;
                }
            }
        }
    }
    registry.remove(id);
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}
