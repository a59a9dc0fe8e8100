//! The serving side (`[serve]`): a QUIC endpoint that sends this receiver's verified segments to
//! downstream receivers, one task per connection.
//!
//! A connection first subscribes to the feed of applied segments, then catches up: it reads from
//! the audit log, in batches taken under the replica's read lock and released before sending,
//! every stored segment the downstream's hello does not claim. Then it sends what the feed
//! brings (new segments and late ones that fill gaps). The feed is a bounded broadcast channel
//! that the apply thread never waits on: a downstream slower than apply only holds up its own
//! connection (QUIC flow control stops its writes), falls behind the feed, and catches up from the
//! audit log again, never slowing apply or the other downstreams. Each connection remembers what
//! the downstream holds or was sent ([`Held`]) so nothing is sent twice on one connection.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use diode_replica::{ReplicaError, SegmentKey};
use tokio::sync::broadcast;

use super::protocol::{self, Hello, MAX_UPSTREAM_FRAME_BYTES, PROTOCOL_VERSION, ToDownstream, ToUpstream};
use super::tls::{self, TlsError, TlsFiles};
use super::{AppliedSegment, DownstreamConnection, FrameError, read_frame};
use crate::locks;
use crate::state::Shared;
use crate::time::now_ns;

/// How long a new connection may take to open its stream and say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Catch-up reads at most this many bytes (or [`CATCH_UP_BATCH_SEGMENTS`]) under one read lock.
const CATCH_UP_BATCH_BYTES: usize = 8 * 1024 * 1024;
/// Catch-up reads at most this many segments (or [`CATCH_UP_BATCH_BYTES`]) under one read lock.
const CATCH_UP_BATCH_SEGMENTS: usize = 256;

/// What `[serve]` sets.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// The UDP address and port the QUIC endpoint listens on, `serve.listen`.
    pub listen: SocketAddr,
    /// This receiver's certificate and key, and the CA that downstreams' certificates must chain
    /// to.
    pub tls: TlsFiles,
    /// Most downstreams connected or connecting at once; more are refused and logged.
    pub max_downstreams: usize,
    /// Applied segments the feed holds for connections that are behind.
    pub feed_segments: usize,
    /// Bytes each connection may have sent and not yet acknowledged (its buffer).
    pub send_window_bytes: u64,
}

/// Why serving could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A certificate, key or CA file of `[serve]` is missing, unreadable or invalid; the cause
    /// names the file.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The UDP port cannot be bound: in use by another process, or an address this host does
    /// not have.
    #[error("cannot listen for replication (QUIC) on {listen}; change serve.listen")]
    Listen {
        /// `serve.listen`.
        listen: SocketAddr,
        /// What the operating system said.
        source: std::io::Error,
    },
}

/// Why one connection ended early (logged; the downstream reconnects).
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The QUIC or TLS handshake failed: most often a downstream certificate not signed by
    /// `serve.ca_certificate`, an expired one, or a client that does not speak this protocol.
    #[error("the TLS handshake failed: {0}")]
    Handshake(quinn::ConnectionError),
    /// The connection was lost or closed after the handshake (the downstream stopped, the
    /// network failed or idled out).
    #[error("the connection failed: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// The downstream opened no stream or sent no hello within 10 s.
    #[error("no hello within {HELLO_TIMEOUT:?}")]
    HelloTimeout,
    /// The downstream's first message was not a hello, or it sent a second hello: not a diode
    /// downstream of this version.
    #[error("the downstream's first message was not a hello")]
    NoHello,
    /// A frame from the downstream was cut short, over its limit or not a valid message.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// Sending to the downstream failed: the connection is gone.
    #[error("cannot send to the downstream: {0}")]
    Write(#[from] quinn::WriteError),
    /// Catch-up could not read this receiver's replica or audit log; the cause says what failed.
    #[error("cannot read the replica: {0}")]
    Replica(#[from] ReplicaError),
}

/// The QUIC endpoint `[serve]` describes, bound (inside a tokio runtime).
pub fn bind(settings: &ServeSettings) -> Result<quinn::Endpoint, ServeError> {
    let config = tls::server_config(&settings.tls, settings.send_window_bytes)?;
    quinn::Endpoint::server(config, settings.listen)
        .map_err(|source| ServeError::Listen { listen: settings.listen, source })
}

/// Serves downstreams on `endpoint` until the task is dropped.
pub async fn serve(endpoint: quinn::Endpoint, settings: ServeSettings, shared: Arc<Shared>) {
    let feed = shared.replication.start_feed(settings.feed_segments);
    tracing::info!(listen = %settings.listen, "serving replication to downstream receivers over QUIC");
    let mut next_number = 0u64;
    // Connections being served or still in their handshake: at most `max_downstreams`.
    let active = Arc::new(AtomicUsize::new(0));
    while let Some(incoming) = endpoint.accept().await {
        if active.load(Ordering::Relaxed) >= settings.max_downstreams {
            shared.log.warn("replication_refused", || {
                format!(
                    "refused a replication connection from {}: {} downstreams are connected or connecting \
                     (serve.max_downstreams)",
                    incoming.remote_address(),
                    settings.max_downstreams
                )
            });
            incoming.refuse();
            continue;
        }
        next_number += 1;
        active.fetch_add(1, Ordering::Relaxed);
        let (shared, feed, number, active) = (Arc::clone(&shared), feed.clone(), next_number, Arc::clone(&active));
        tokio::spawn(async move {
            let peer = incoming.remote_address();
            if let Err(error) = connection(incoming, &shared, &feed, number).await {
                shared.log.warn("replication_connection", || format!("replication to {peer} ended: {error}"));
            }
            locks::lock(&shared.replication.downstreams).remove(&number);
            active.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn connection(
    incoming: quinn::Incoming,
    shared: &Arc<Shared>,
    feed: &broadcast::Sender<AppliedSegment>,
    number: u64,
) -> Result<(), ConnectionError> {
    let connection = incoming.await.map_err(ConnectionError::Handshake)?;
    let peer = connection.remote_address();
    let (mut send, mut receive, frame) = tokio::time::timeout(HELLO_TIMEOUT, async {
        let (send, mut receive) = connection.accept_bi().await?;
        let frame = read_frame(&mut receive, MAX_UPSTREAM_FRAME_BYTES).await?;
        Ok::<_, ConnectionError>((send, receive, frame))
    })
    .await
    .map_err(|_| ConnectionError::HelloTimeout)??;
    let hello = match frame.map(|body| protocol::decode_to_upstream(&body)).transpose().map_err(FrameError::Protocol)? {
        Some(ToUpstream::Hello(hello)) => hello,
        _ => return Err(ConnectionError::NoHello),
    };
    // Subscribe before catching up, so nothing applied meanwhile is missed.
    let mut live = feed.subscribe();
    let stats = Arc::new(DownstreamConnection {
        peer,
        name: hello.name.clone(),
        connected_at_ns: now_ns(),
        segments_sent: AtomicU64::new(0),
        bytes_sent: AtomicU64::new(0),
        catch_ups: AtomicU64::new(0),
        downstream_segments: AtomicU64::new(0),
        downstream_points: AtomicU64::new(0),
        downstream_refused: AtomicU64::new(0),
        lag_segments: AtomicU64::new(0),
        last_progress_ns: AtomicI64::new(0),
    });
    locks::lock(&shared.replication.downstreams).insert(number, Arc::clone(&stats));
    tracing::info!(%peer, name = %hello.name, "a downstream receiver connected");
    send.write_all(&protocol::encode(&ToDownstream::Welcome { version: PROTOCOL_VERSION })).await?;
    let mut progress = {
        let (shared, stats) = (Arc::clone(shared), Arc::clone(&stats));
        tokio::spawn(async move { read_progress(&mut receive, &shared, &stats).await })
    };
    let mut held = held_from(&hello);
    let result = async {
        catch_up(shared, &mut held, &mut send, &stats).await?;
        loop {
            match live.recv().await {
                Ok(segment) => {
                    if held.entry((segment.sender_id, segment.epoch)).or_default().insert(segment.sequence) {
                        send_segment(&mut send, &segment.sealed, &stats).await?;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    stats.catch_ups.fetch_add(1, Ordering::Relaxed);
                    catch_up(shared, &mut held, &mut send, &stats).await?;
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            }
        }
    };
    let outcome = tokio::select! {
        outcome = result => {
            progress.abort();
            outcome
        }
        read = &mut progress => match read {
            Ok(Err(error)) => Err(error),
            _ => Ok(()),
        },
    };
    tracing::info!(%peer, name = %stats.name, "a downstream receiver disconnected");
    outcome
}

/// Reads the downstream's progress reports until it closes its side.
async fn read_progress(
    receive: &mut quinn::RecvStream,
    shared: &Shared,
    stats: &DownstreamConnection,
) -> Result<(), ConnectionError> {
    while let Some(body) = read_frame(receive, MAX_UPSTREAM_FRAME_BYTES).await? {
        match protocol::decode_to_upstream(&body).map_err(FrameError::Protocol)? {
            ToUpstream::Progress(progress) => {
                let ours = locks::read(&shared.replica).counters().segments_applied;
                stats.downstream_segments.store(progress.segments_applied, Ordering::Relaxed);
                stats.downstream_points.store(progress.points_applied, Ordering::Relaxed);
                stats.downstream_refused.store(progress.segments_refused, Ordering::Relaxed);
                stats.lag_segments.store(ours.saturating_sub(progress.segments_applied), Ordering::Relaxed);
                stats.last_progress_ns.store(now_ns(), Ordering::Relaxed);
            }
            ToUpstream::Hello(_) => return Err(ConnectionError::NoHello),
        }
    }
    Ok(())
}

async fn send_segment(
    send: &mut quinn::SendStream,
    sealed: &[u8],
    stats: &DownstreamConnection,
) -> Result<(), ConnectionError> {
    send.write_all(&protocol::encode_segment(sealed)).await?;
    stats.segments_sent.fetch_add(1, Ordering::Relaxed);
    stats.bytes_sent.fetch_add(sealed.len() as u64, Ordering::Relaxed);
    Ok(())
}

/// Sends every stored segment the downstream neither holds nor was sent, stream by stream, gap by
/// gap of what it holds, in batches read under the replica's read lock.
async fn catch_up(
    shared: &Arc<Shared>,
    held: &mut BTreeMap<(u64, u64), Held>,
    send: &mut quinn::SendStream,
    stats: &DownstreamConnection,
) -> Result<(), ConnectionError> {
    let streams: Vec<(u64, u64, u64)> = locks::read(&shared.replica)
        .streams()
        .iter()
        .filter(|stream| stream.highest_applied > 0)
        .map(|stream| (stream.sender_id, stream.epoch, stream.highest_applied))
        .collect();
    for (sender_id, epoch, highest_applied) in streams {
        let gaps = held.entry((sender_id, epoch)).or_default().gaps_through(highest_applied);
        for (first, last) in gaps {
            let mut from = Some(first);
            while let Some(start) = from {
                let shared = Arc::clone(shared);
                let batch = tokio::task::spawn_blocking(move || read_batch(&shared, sender_id, epoch, start, last))
                    .await
                    .expect("a catch-up read does not panic")?;
                let stream = held.entry((sender_id, epoch)).or_default();
                for (sequence, sealed) in batch.segments {
                    if stream.insert(sequence) {
                        send_segment(send, &sealed, stats).await?;
                    }
                }
                from = batch.resume;
            }
        }
    }
    Ok(())
}

/// Stored segments of one stream from `first` to `last`, at most one batch of them.
struct Batch {
    segments: Vec<(u64, Vec<u8>)>,
    /// Where the next batch starts, if the range is not done.
    resume: Option<u64>,
}

fn read_batch(shared: &Shared, sender_id: u64, epoch: u64, first: u64, last: u64) -> Result<Batch, ReplicaError> {
    let replica = locks::read(&shared.replica);
    let mut segments = Vec::new();
    let mut bytes = 0usize;
    for stored in replica.segments(SegmentKey { sender_id, epoch, sequence: first }) {
        let stored = match stored {
            Ok(stored) => stored,
            Err(error @ ReplicaError::AuditEntryDamaged { .. }) => {
                // Not sendable; `audit verify` names it. The downstream shows it as a gap.
                shared.log.warn("replication_damaged_entry", || format!("not replicated: {error}"));
                continue;
            }
            Err(error) => return Err(error),
        };
        let key = stored.key;
        if key.sender_id != sender_id || key.epoch != epoch || key.sequence > last {
            break;
        }
        bytes += stored.sealed.len();
        segments.push((key.sequence, stored.sealed));
        if bytes >= CATCH_UP_BATCH_BYTES || segments.len() >= CATCH_UP_BATCH_SEGMENTS {
            let resume = key.sequence.checked_add(1).filter(|next| *next <= last);
            return Ok(Batch { segments, resume });
        }
    }
    Ok(Batch { segments, resume: None })
}

fn held_from(hello: &Hello) -> BTreeMap<(u64, u64), Held> {
    hello
        .positions
        .iter()
        .map(|position| {
            let mut held = Held::default();
            for range in &position.held {
                held.insert_range(range.first, range.last);
            }
            ((position.sender_id, position.epoch), held)
        })
        .collect()
}

/// The sequences of one stream a downstream holds or was sent on this connection: disjoint,
/// non-adjacent ranges `start..=end`, keyed by start.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Held {
    ranges: BTreeMap<u64, u64>,
}

impl Held {
    /// Whether `sequence` is held or was sent.
    pub fn contains(&self, sequence: u64) -> bool {
        self.ranges.range(..=sequence).next_back().is_some_and(|(_, &end)| sequence <= end)
    }

    /// Adds `sequence`; false if it was already held.
    pub fn insert(&mut self, sequence: u64) -> bool {
        if self.contains(sequence) {
            return false;
        }
        self.insert_range(sequence, sequence);
        true
    }

    /// Adds `first..=last` (`first <= last`), merging with touching ranges.
    pub fn insert_range(&mut self, first: u64, last: u64) {
        debug_assert!(first <= last);
        let (mut start, mut end) = (first, last);
        if let Some((&before_start, &before_end)) = self.ranges.range(..=start).next_back()
            && before_end.saturating_add(1) >= start
        {
            start = before_start;
            end = end.max(before_end);
        }
        let overlapping: Vec<u64> =
            self.ranges.range(start..=end.saturating_add(1)).map(|(&range_start, _)| range_start).collect();
        for range_start in overlapping {
            let range_end = self.ranges.remove(&range_start).expect("listed above");
            end = end.max(range_end);
        }
        self.ranges.insert(start, end);
    }

    /// The ranges of `1..=through` not held, ascending.
    pub fn gaps_through(&self, through: u64) -> Vec<(u64, u64)> {
        let mut gaps = Vec::new();
        let mut next = 1u64;
        for (&start, &end) in &self.ranges {
            if start > through {
                break;
            }
            if start > next {
                gaps.push((next, start - 1));
            }
            next = end.saturating_add(1);
            if end == u64::MAX {
                return gaps;
            }
        }
        if next <= through {
            gaps.push((next, through));
        }
        gaps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_ranges_merge_and_leave_exactly_the_gaps() {
        let mut held = Held::default();
        held.insert_range(1, 10);
        held.insert_range(20, 30);
        assert_eq!(held.gaps_through(40), vec![(11, 19), (31, 40)]);
        assert!(held.insert(11));
        assert!(!held.insert(11));
        held.insert_range(12, 19);
        assert_eq!(held.gaps_through(40), vec![(31, 40)]);
        assert_eq!(held.ranges.len(), 1);
        held.insert_range(35, 36);
        assert_eq!(held.gaps_through(40), vec![(31, 34), (37, 40)]);
        assert_eq!(held.gaps_through(33), vec![(31, 33)]);
        assert_eq!(Held::default().gaps_through(3), vec![(1, 3)]);
        assert_eq!(Held::default().gaps_through(0), vec![]);
    }
}
