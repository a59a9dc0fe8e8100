//! The receiving side (`[upstream]`): connects to an upstream receiver, says what it holds, and
//! hands every segment it is sent to the apply thread, which verifies it again (trusted OT keys
//! with their validity windows, payload hash, chain with stored neighbours) exactly as it verifies
//! segments from the diode link, through the same function. A segment altered anywhere between
//! the OT sender and here is refused and counted by reason, never stored.
//!
//! The apply queue exerts back-pressure here (unlike on the diode link, where nothing may wait):
//! the reader waits for room, QUIC flow control stops the upstream's writes to this connection,
//! and the upstream catches it up later from its audit log. A lost connection is retried after
//! 100 ms, doubling to 10 s; each new connection resumes from what the replica holds then.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::SyncSender;
use std::time::Duration;

use diode_replica::Replica;

use super::protocol::{
    self, Hello, MAX_DOWNSTREAM_FRAME_BYTES, MAX_POSITION_RANGES, MAX_POSITION_STREAMS, PROTOCOL_VERSION, Progress,
    SequenceRange, StreamPosition, ToDownstream, ToUpstream,
};
use super::tls::{self, TlsError, TlsFiles};
use super::{FrameError, UpstreamLink, read_frame};
use crate::locks;
use crate::state::Shared;
use crate::state::Work;

/// First and longest wait before connecting again.
const RECONNECT_FIRST: Duration = Duration::from_millis(100);
/// Longest wait before connecting again: the wait doubles from [`RECONNECT_FIRST`] up to this.
const RECONNECT_LONGEST: Duration = Duration::from_secs(10);
/// How long a connection attempt (handshake included) and the upstream's welcome may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the downstream reports its progress.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// What `[upstream]` sets.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// The upstream's UDP address and port, `upstream.address`.
    pub address: SocketAddr,
    /// The name in the upstream's certificate to check (a DNS name or an IP address).
    pub server_name: String,
    /// This receiver's name, shown in the upstream's status and metrics.
    pub name: String,
    /// This receiver's client certificate and key, and the CA that the upstream's certificate
    /// must chain to.
    pub tls: TlsFiles,
}

/// Why following the upstream could not start.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// A certificate, key or CA file of `[upstream]` is missing, unreadable or invalid; the
    /// cause names the file.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// No local UDP socket could be opened to connect from (no address of the upstream's family
    /// on this host, or the host is out of sockets).
    #[error("cannot open a UDP socket for QUIC: {0}")]
    Socket(std::io::Error),
}

/// Why one connection to the upstream ended (logged, then retried).
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The connection could not be started, such as a `server_name` that is not a valid name.
    #[error("cannot connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The handshake failed or the connection was lost: the upstream is down or unreachable,
    /// refused this receiver's certificate, or presented one not valid for `server_name` or not
    /// signed by `ca_certificate`.
    #[error("the connection failed: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// The handshake or the upstream's welcome took longer than 10 s: the upstream is
    /// unreachable or not listening on that port.
    #[error("no answer within {CONNECT_TIMEOUT:?}")]
    Timeout,
    /// The upstream's first message was not a welcome, or it sent a second one: not a diode
    /// upstream of this version.
    #[error("the upstream's first message was not a welcome")]
    NoWelcome,
    /// A frame from the upstream was cut short, over its limit or not a valid message (a
    /// version mismatch among them).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// Sending the hello to the upstream failed: the connection is gone.
    #[error("cannot send to the upstream: {0}")]
    Write(#[from] quinn::WriteError),
    /// The receiver is shutting down; not retried and not counted as a failure.
    #[error("the receiver is stopping")]
    Stopping,
}

/// The client endpoint `[upstream]` describes (inside a tokio runtime).
pub fn endpoint(settings: &UpstreamSettings) -> Result<quinn::Endpoint, FollowError> {
    let config = tls::client_config(&settings.tls)?;
    let bind: SocketAddr = if settings.address.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" }.parse().expect("valid");
    let mut endpoint = quinn::Endpoint::client(bind).map_err(FollowError::Socket)?;
    endpoint.set_default_client_config(config);
    Ok(endpoint)
}

/// Follows the upstream until the task is dropped: connects, resumes, reconnects with back-off.
/// Segments go to `queue` (the apply thread's); a thread of its own waits for room there.
pub async fn follow(
    endpoint: quinn::Endpoint,
    settings: UpstreamSettings,
    shared: Arc<Shared>,
    queue: SyncSender<Work>,
) {
    let link = Arc::clone(shared.replication.upstream.get_or_init(|| Arc::new(UpstreamLink::new(settings.address))));
    let (segments, bridge) = bridge(queue);
    tracing::info!(upstream = %settings.address, server_name = %settings.server_name, "following an upstream receiver over QUIC");
    let mut wait = RECONNECT_FIRST;
    while !shared.stop.load(Ordering::Relaxed) {
        let result = session(&endpoint, &settings, &shared, &link, &segments).await;
        link.connected.store(false, Ordering::Relaxed);
        match result {
            Err(SessionError::Stopping) => break,
            Err(error) => {
                link.failures.fetch_add(1, Ordering::Relaxed);
                let text = error.to_string();
                shared.log.warn("upstream_connection", || {
                    format!("replication from {} ({}): {text}; retrying", settings.address, settings.server_name)
                });
                *locks::lock(&link.last_error) = Some(text);
            }
            Ok(()) => wait = RECONNECT_FIRST,
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(RECONNECT_LONGEST);
    }
    drop(segments);
    let _ = bridge.join();
}

/// A channel the async reader can wait on, and the thread that moves its segments into the apply
/// thread's queue (which blocks when full: back-pressure).
fn bridge(queue: SyncSender<Work>) -> (tokio::sync::mpsc::Sender<Work>, std::thread::JoinHandle<()>) {
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Work>(1);
    let thread = std::thread::Builder::new()
        .name("upstream-feed".into())
        .spawn(move || {
            while let Some(work) = receiver.blocking_recv() {
                if queue.send(work).is_err() {
                    return;
                }
            }
        })
        .expect("a thread can be started");
    (sender, thread)
}

async fn session(
    endpoint: &quinn::Endpoint,
    settings: &UpstreamSettings,
    shared: &Arc<Shared>,
    link: &UpstreamLink,
    segments: &tokio::sync::mpsc::Sender<Work>,
) -> Result<(), SessionError> {
    let connecting = endpoint.connect(settings.address, &settings.server_name)?;
    let connection = tokio::time::timeout(CONNECT_TIMEOUT, connecting).await.map_err(|_| SessionError::Timeout)??;
    let (mut send, mut receive) = connection.open_bi().await?;
    let hello = {
        let shared = Arc::clone(shared);
        let name = settings.name.clone();
        tokio::task::spawn_blocking(move || hello(&locks::read(&shared.replica), name))
            .await
            .expect("reading positions does not panic")
    };
    send.write_all(&protocol::encode(&ToUpstream::Hello(hello))).await?;
    let welcome = tokio::time::timeout(CONNECT_TIMEOUT, read_frame(&mut receive, MAX_DOWNSTREAM_FRAME_BYTES))
        .await
        .map_err(|_| SessionError::Timeout)??;
    match welcome.map(|body| protocol::decode_to_downstream(&body)).transpose().map_err(FrameError::Protocol)? {
        Some(ToDownstream::Welcome { .. }) => {}
        _ => return Err(SessionError::NoWelcome),
    }
    link.connects.fetch_add(1, Ordering::Relaxed);
    link.connected.store(true, Ordering::Relaxed);
    *locks::lock(&link.last_error) = None;
    tracing::info!(upstream = %settings.address, "connected to the upstream receiver");
    let reporter = {
        let shared = Arc::clone(shared);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(PROGRESS_INTERVAL);
            loop {
                ticks.tick().await;
                let progress = progress(&shared);
                if send.write_all(&protocol::encode(&ToUpstream::Progress(progress))).await.is_err() {
                    return;
                }
            }
        })
    };
    let result = read_segments(&mut receive, shared, link, segments).await;
    reporter.abort();
    connection.close(0u32.into(), b"downstream closing");
    result
}

async fn read_segments(
    receive: &mut quinn::RecvStream,
    shared: &Shared,
    link: &UpstreamLink,
    segments: &tokio::sync::mpsc::Sender<Work>,
) -> Result<(), SessionError> {
    while let Some(body) = read_frame(receive, MAX_DOWNSTREAM_FRAME_BYTES).await? {
        match protocol::decode_to_downstream(&body).map_err(FrameError::Protocol)? {
            ToDownstream::Segment(sealed) => {
                link.segments_received.fetch_add(1, Ordering::Relaxed);
                link.bytes_received.fetch_add(sealed.0.len() as u64, Ordering::Relaxed);
                let work = Work::Segment { bytes: sealed.0, recovered_by_fec: false };
                // Counted as the link's segments are (the apply thread takes them off once
                // applied); the upstream is pushed back by the queue, never shed.
                shared.counters.apply_queue_bytes.fetch_add(work.bytes(), Ordering::Relaxed);
                if segments.send(work).await.is_err() || shared.stop.load(Ordering::Relaxed) {
                    return Err(SessionError::Stopping);
                }
            }
            ToDownstream::Welcome { .. } => return Err(SessionError::NoWelcome),
        }
    }
    Ok(())
}

fn progress(shared: &Shared) -> Progress {
    let counters = locks::read(&shared.replica).counters();
    Progress {
        segments_applied: counters.segments_applied,
        points_applied: counters.points_applied,
        segments_refused: shared.counters.rejected().values().sum(),
    }
}

/// The hello for what `replica` holds: per stream, its applied sequences as ranges. Past the
/// protocol's limits it claims less than it holds (the upstream then sends some segments again,
/// which apply finds already applied).
pub fn hello(replica: &Replica, name: String) -> Hello {
    let mut positions = Vec::new();
    let mut ranges_left = MAX_POSITION_RANGES;
    for stream in replica.streams().into_iter().take(MAX_POSITION_STREAMS) {
        let mut held = Vec::new();
        let mut next = 1u64;
        let missing = stream.missing.iter().filter(|range| *range.start() <= stream.highest_applied);
        for range in missing.map(|range| (*range.start(), (*range.end()).min(stream.highest_applied))) {
            if range.0 > next {
                held.push(SequenceRange { first: next, last: range.0 - 1 });
            }
            next = range.1.saturating_add(1);
        }
        if stream.highest_applied >= next {
            held.push(SequenceRange { first: next, last: stream.highest_applied });
        }
        held.truncate(ranges_left);
        ranges_left -= held.len();
        positions.push(StreamPosition { sender_id: stream.sender_id, epoch: stream.epoch, held });
    }
    Hello { version: PROTOCOL_VERSION, name, positions }
}
