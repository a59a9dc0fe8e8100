//! `diode-receiver run`: the receive thread rebuilds segments from datagrams, the apply thread
//! verifies and applies them, and the HTTP listener serves metrics, status and queries.
//!
//! The receive thread never blocks on the apply thread: when the apply queue is full it sheds the
//! newly completed segment whole (counted; the carousel or a resend brings it back), so a slow
//! disk can never make the kernel drop datagrams of segments already half received.
//! Nothing here ever sends a packet.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;
use diode_common::beacon::Beacon;
use diode_common::keys::{TrustedKeys, encode_hex};
use diode_common::packet::{self, Datagram, LinkKey};
use diode_common::reassembly::{Event, Reassembler, ReassemblyLimits};
use diode_common::seal;

use crate::config::ReceiverConfig;
use crate::counters::{RateLimitedLog, ReceiverCounters};
use crate::replica::{ApplyOutcome, HeadCheck, Replica, ReplicaError};
use crate::time::now_ns;

/// Work for the apply thread.
pub enum Work {
    Segment { bytes: Vec<u8>, recovered_by_fec: bool },
    Beacon { beacon: Box<Beacon>, raw: Vec<u8> },
}

pub struct Shared {
    pub counters: ReceiverCounters,
    pub log: RateLimitedLog,
    pub replica: RwLock<Replica>,
    pub stop: AtomicBool,
}

/// Reads `keys.link_key`, refusing a file that group or others can access (as the sender does).
pub fn load_link_key(config: &ReceiverConfig) -> anyhow::Result<LinkKey> {
    let key = diode_host::keyfile::read_secret_key(
        &config.keys.link_key,
        "copy link.key from the sender and `chmod 600` it",
    )?;
    Ok(LinkKey::from_bytes(*key))
}

pub fn open_socket(config: &ReceiverConfig) -> anyhow::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let listen = config.link.listen;
    let domain = if listen.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).context("cannot create a UDP socket")?;
    socket.set_recv_buffer_size(config.link.receive_buffer_bytes).context("cannot set the UDP receive buffer")?;
    let granted = socket.recv_buffer_size().unwrap_or(0);
    if granted < config.link.receive_buffer_bytes {
        tracing::warn!(
            requested = config.link.receive_buffer_bytes,
            granted,
            "the kernel granted a smaller UDP receive buffer; raise net.core.rmem_max to avoid drops in bursts"
        );
    }
    socket.bind(&listen.into()).with_context(|| format!("cannot listen on {listen}; is another receiver running?"))?;
    let socket: UdpSocket = socket.into();
    socket.set_read_timeout(Some(Duration::from_millis(50)))?;
    Ok(socket)
}

pub fn reassembly_limits(config: &ReceiverConfig) -> ReassemblyLimits {
    ReassemblyLimits {
        max_segments_in_flight: config.reassembly.max_segments_in_flight,
        max_buffered_bytes: config.reassembly.max_buffered_mib * 1024 * 1024,
        segment_timeout_ms: config.reassembly.segment_timeout_ms,
        max_segment_length: config.reassembly.max_segment_kib * 1024,
        ..ReassemblyLimits::default()
    }
}

/// Longest the receive loop waits for a datagram before it looks at the stop flag again.
const STOP_CHECK: Duration = Duration::from_millis(100);

/// The receive loop: datagrams in, completed segments and beacons out to the apply queue. It
/// drives the reassembler with its verbs: `handle_*` for each datagram and when its
/// `poll_timeout` deadline passes, `poll_event` after each.
pub fn receive_loop(
    socket: UdpSocket,
    link_key: LinkKey,
    trusted: TrustedKeys,
    limits: ReassemblyLimits,
    queue: SyncSender<Work>,
    shared: Arc<Shared>,
) -> anyhow::Result<()> {
    let mut reassembler = Reassembler::new(limits);
    let started = Instant::now();
    let mut buffer = vec![0u8; 65_536];
    let mut read_timeout = None;
    let counters = &shared.counters;
    while !shared.stop.load(Ordering::Relaxed) {
        let now_ms = started.elapsed().as_millis() as u64;
        if reassembler.poll_timeout().is_some_and(|deadline| now_ms >= deadline) {
            reassembler.handle_timeout(now_ms);
            report_events(&shared, &mut reassembler);
        }
        // Wait for a datagram until the reassembler's next deadline, and never longer than
        // STOP_CHECK so that a stop request is seen. A timeout shorter than needed only costs a
        // loop, so the socket is only told when the wait must shrink or can grow back.
        let wait = reassembler
            .poll_timeout()
            .map_or(STOP_CHECK, |deadline| Duration::from_millis(deadline.saturating_sub(now_ms)))
            .clamp(Duration::from_millis(1), STOP_CHECK);
        if read_timeout.is_none_or(|current| wait < current || (wait == STOP_CHECK && current != STOP_CHECK)) {
            socket.set_read_timeout(Some(wait)).context("setting the link socket's read timeout")?;
            read_timeout = Some(wait);
        }
        let length = match socket.recv(&mut buffer) {
            Ok(length) => length,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("receiving datagrams failed"),
        };
        counters.datagrams_received.fetch_add(1, Ordering::Relaxed);
        counters.bytes_received.fetch_add(length as u64, Ordering::Relaxed);
        let datagram = match packet::decode_datagram(&buffer[..length], &link_key) {
            Ok(datagram) => datagram,
            Err(error) => {
                let reason = packet_error_reason(&error);
                counters.reject(reason);
                shared.log.warn(reason, || format!("dropped a datagram: {error}"));
                continue;
            }
        };
        match datagram {
            Datagram::Symbol(symbol) => {
                if let Some(completed) = reassembler.handle_symbol(&symbol, now_ms) {
                    counters.segments_completed.fetch_add(1, Ordering::Relaxed);
                    if completed.recovered_by_fec {
                        counters.segments_recovered_by_fec.fetch_add(1, Ordering::Relaxed);
                    }
                    let work = Work::Segment { bytes: completed.bytes, recovered_by_fec: completed.recovered_by_fec };
                    offer(&queue, work, &shared, &mut reassembler, completed_id(&symbol));
                }
            }
            Datagram::Beacon(beacon_packet) => match Beacon::open(beacon_packet.body, &trusted) {
                Ok(beacon) => {
                    reassembler.handle_epoch(beacon.sender_id, beacon.epoch, now_ms);
                    let work = Work::Beacon { beacon: Box::new(beacon), raw: beacon_packet.body.to_vec() };
                    // Beacons are small and frequent; losing one to a full queue costs nothing.
                    let _ = queue.try_send(work);
                }
                Err(error) => {
                    counters.reject("bad_beacon");
                    shared.log.warn("bad_beacon", || format!("dropped a beacon: {error}"));
                }
            },
        }
        report_events(&shared, &mut reassembler);
    }
    Ok(())
}

fn completed_id(symbol: &packet::SymbolPacket<'_>) -> packet::SegmentId {
    symbol.segment_id()
}

/// Hands a completed segment to the apply thread, or sheds it whole when the queue is full.
fn offer(queue: &SyncSender<Work>, work: Work, shared: &Shared, reassembler: &mut Reassembler, id: packet::SegmentId) {
    match queue.try_send(work) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            shared.counters.segments_shed.fetch_add(1, Ordering::Relaxed);
            // Forget it was completed, so the carousel's or a resend's copy is taken next time.
            reassembler.handle_dropped(id);
            shared.log.warn("shed", || {
                format!(
                    "apply queue full: shed segment {} of epoch {} (the carousel or a resend will bring it back)",
                    id.sequence, id.epoch
                )
            });
        }
        Err(TrySendError::Disconnected(_)) => shared.stop.store(true, Ordering::Relaxed),
    }
}

/// Counts and logs what the reassembler reports about incomplete segments.
fn report_events(shared: &Shared, reassembler: &mut Reassembler) {
    while let Some(event) = reassembler.poll_event() {
        match event {
            Event::Abandoned { sequence, epoch, symbols_received, symbols_needed, .. } => {
                shared.counters.segments_abandoned.fetch_add(1, Ordering::Relaxed);
                shared.log.warn("abandoned", || {
                    format!("gave up segment {sequence} of epoch {epoch}: {symbols_received} of {symbols_needed} symbols arrived")
                });
            }
            Event::Evicted { .. } => {
                shared.counters.segments_evicted.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn packet_error_reason(error: &packet::PacketError) -> &'static str {
    match error {
        packet::PacketError::BadMac => "bad_mac",
        _ => "malformed_datagram",
    }
}

/// The apply loop: verify, check, apply exactly once; record beacons.
pub fn apply_loop(queue: Receiver<Work>, trusted: TrustedKeys, shared: Arc<Shared>) -> anyhow::Result<()> {
    let counters = &shared.counters;
    for work in queue {
        match work {
            Work::Segment { bytes, .. } => apply_segment(&bytes, &trusted, &shared)?,
            Work::Beacon { beacon, raw } => {
                let mut replica = shared.replica.write().expect("replica lock");
                let head =
                    replica.record_beacon(&beacon, &raw, now_ns()).context("cannot record a beacon in the replica")?;
                if let HeadCheck::Differs { segment, signed_hash, stored_hash } = head {
                    counters.beacon_head_mismatches.fetch_add(1, Ordering::Relaxed);
                    shared.log.warn("beacon_head_mismatch", || {
                        format!(
                            "the signed beacon of sender {} epoch {} says its head {} hashes to {}, the stored \
                             segment to {}: a forked chain (state lost without a new epoch?) or a misused key; run \
                             `diode-receiver audit verify` and compare with the sender",
                            segment.sender_id,
                            segment.epoch,
                            segment.sequence,
                            encode_hex(&signed_hash),
                            encode_hex(&stored_hash)
                        )
                    });
                }
                counters.beacons_accepted.fetch_add(1, Ordering::Relaxed);
                counters.last_beacon_received_ns.store(now_ns(), Ordering::Relaxed);
                counters.announced_head.store(beacon.head_sequence, Ordering::Relaxed);
                counters.gap_segments.store(gap_count(&replica), Ordering::Relaxed);
            }
        }
    }
    Ok(())
}

fn gap_count(replica: &Replica) -> u64 {
    replica.gaps().iter().map(|gap| gap.last_sequence - gap.first_sequence + 1).sum()
}

/// Verifies and applies one segment. Errors of the segment are counted and logged; only errors of
/// the replica itself (a failing disk) stop the receiver.
pub fn apply_segment(bytes: &[u8], trusted: &TrustedKeys, shared: &Shared) -> anyhow::Result<()> {
    let counters = &shared.counters;
    let (segment, series) = match seal::open_records(bytes, trusted) {
        Ok(opened) => opened,
        Err(error) => {
            let reason = error.reason_label();
            counters.reject(reason);
            shared.log.warn(reason, || format!("refused a segment: {error}"));
            return Ok(());
        }
    };
    let mut replica = shared.replica.write().expect("replica lock");
    match replica.apply(&segment, &series, now_ns()) {
        Ok(ApplyOutcome::Applied { points, .. }) => {
            counters.segments_applied.fetch_add(1, Ordering::Relaxed);
            counters.points_applied.fetch_add(points, Ordering::Relaxed);
            counters.last_apply_ns.store(now_ns(), Ordering::Relaxed);
            counters.applied_head.fetch_max(segment.header.sequence, Ordering::Relaxed);
            counters.gap_segments.store(gap_count(&replica), Ordering::Relaxed);
        }
        Ok(ApplyOutcome::AlreadyApplied) => {
            counters.segments_already_applied.fetch_add(1, Ordering::Relaxed);
        }
        Err(error @ (ReplicaError::ChainMismatch { .. } | ReplicaError::InconsistentSegment { .. })) => {
            let reason =
                if matches!(error, ReplicaError::ChainMismatch { .. }) { "chain_mismatch" } else { "bad_payload" };
            counters.reject(reason);
            shared.log.warn(reason, || format!("refused a segment: {error}"));
        }
        Err(error) => return Err(error).context("cannot write to the replica"),
    }
    Ok(())
}

pub fn run(config: ReceiverConfig) -> anyhow::Result<()> {
    let link_key = load_link_key(&config)?;
    let trusted = config.trusted_keys()?;
    let replica = Replica::open(&config.replica_dir)
        .with_context(|| format!("cannot open the replica in {}", config.replica_dir.display()))?;
    let socket = open_socket(&config)?;
    tracing::info!(listen = %config.link.listen, replica = %config.replica_dir.display(), "diode-receiver starting");
    let shared = Arc::new(Shared {
        counters: ReceiverCounters::default(),
        log: RateLimitedLog::default(),
        replica: RwLock::new(replica),
        stop: AtomicBool::new(false),
    });
    let (queue_tx, queue_rx) = std::sync::mpsc::sync_channel(config.reassembly.apply_queue_segments);
    let receive = {
        let shared = Arc::clone(&shared);
        let trusted = trusted.clone();
        let limits = reassembly_limits(&config);
        thread::Builder::new()
            .name("receive".into())
            .spawn(move || receive_loop(socket, link_key, trusted, limits, queue_tx, shared))?
    };
    let apply = {
        let shared = Arc::clone(&shared);
        thread::Builder::new().name("apply".into()).spawn(move || apply_loop(queue_rx, trusted, shared))?
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let http = config.http.clone();
    runtime.block_on(async {
        if let Some(listen) = http.listen {
            let shared = Arc::clone(&shared);
            let token = http.bearer_token.clone();
            tokio::spawn(async move {
                if let Err(error) = crate::http::serve(listen, shared, token).await {
                    tracing::error!("{error:#}");
                }
            });
        }
        let stopped_by_thread = async {
            while !shared.stop.load(Ordering::Relaxed) && !apply.is_finished() && !receive.is_finished() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::select! {
            _ = shutdown_signal() => {}
            _ = stopped_by_thread => {}
        }
    });
    shared.stop.store(true, Ordering::Relaxed);
    let receive_result = receive.join().map_err(|_| anyhow::anyhow!("the receive thread panicked"))?;
    let apply_result = apply.join().map_err(|_| anyhow::anyhow!("the apply thread panicked"))?;
    shared.replica.read().expect("replica lock").flush().context("cannot flush the replica")?;
    receive_result?;
    apply_result?;
    tracing::info!(
        points = shared.counters.points_applied.load(Ordering::Relaxed),
        segments = shared.counters.segments_applied.load(Ordering::Relaxed),
        "diode-receiver stopped"
    );
    Ok(())
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
    tracing::info!("shutdown requested");
}

#[cfg(test)]
mod tests {
    use super::*;
    use diode_common::fec::{self, FecParams};
    use diode_common::packet::SymbolPacket;

    fn shared(dir: &std::path::Path) -> Shared {
        Shared {
            counters: ReceiverCounters::default(),
            log: RateLimitedLog::default(),
            replica: RwLock::new(Replica::open(&dir.join("replica")).unwrap()),
            stop: AtomicBool::new(false),
        }
    }

    /// Feeds every symbol of a small segment to the reassembler; returns what completed.
    fn complete(reassembler: &mut Reassembler, sequence: u64) -> Option<Vec<u8>> {
        let segment = vec![sequence as u8; 3_000];
        let params = FecParams::for_segment(segment.len(), 1_024, 0.2, 1).unwrap();
        let mut completed = None;
        for (index, symbol) in fec::encode(&segment, &params).unwrap().iter().enumerate() {
            let packet = SymbolPacket { sender_id: 1, epoch: 1, sequence, symbol_index: index as u16, params, symbol };
            completed = completed.or(reassembler.handle_symbol(&packet, 0).map(|c| c.bytes));
        }
        completed
    }

    #[test]
    fn an_overloaded_receiver_sheds_whole_segments_and_takes_them_again_when_load_falls() {
        let dir = tempfile::tempdir().unwrap();
        let shared = shared(dir.path());
        let mut reassembler = Reassembler::new(ReassemblyLimits::default());
        let (queue, applier) = std::sync::mpsc::sync_channel(1);
        let id = |sequence| packet::SegmentId { sender_id: 1, epoch: 1, sequence };

        // The apply thread is busy: the queue holds one segment and the next is shed whole.
        let first = complete(&mut reassembler, 1).unwrap();
        offer(&queue, Work::Segment { bytes: first, recovered_by_fec: false }, &shared, &mut reassembler, id(1));
        let second = complete(&mut reassembler, 2).unwrap();
        offer(&queue, Work::Segment { bytes: second, recovered_by_fec: false }, &shared, &mut reassembler, id(2));
        assert_eq!(shared.counters.segments_shed.load(Ordering::Relaxed), 1);

        // Load falls: the queue drains, and the carousel's copy of the shed segment is taken.
        assert!(matches!(applier.try_recv(), Ok(Work::Segment { .. })));
        let again = complete(&mut reassembler, 2).expect("a shed segment is rebuilt from its next copy");
        offer(&queue, Work::Segment { bytes: again, recovered_by_fec: false }, &shared, &mut reassembler, id(2));
        assert_eq!(shared.counters.segments_shed.load(Ordering::Relaxed), 1);
        assert!(matches!(applier.try_recv(), Ok(Work::Segment { bytes, .. }) if bytes == vec![2u8; 3_000]));
    }
}
