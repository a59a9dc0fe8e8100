//! The receive side of `diode-receiver run`: the one UDP socket (bound, read only), the link key,
//! and the loop that rebuilds segments from datagrams and hands them and beacons to the apply
//! thread, shedding a completed segment whole when the apply queue is full.

use std::collections::HashMap;
use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::{Duration, Instant};

use anyhow::Context;
use diode_common::beacon::Beacon;
use diode_common::beacon::{BeaconOrder, peek_order};
use diode_common::keys::TrustedKeys;
use diode_common::packet::{self, Datagram, LinkKey};
use diode_common::reassembly::{Event, Reassembler, ReassemblyLimits};
use diode_replica::{Replica, SegmentKey};

use crate::config::ReceiverConfig;
use crate::locks;
use crate::state::Work;
use crate::state::{Shared, VerifiedBeacon};

/// Reads `keys.link_key`, refusing a file that group or others can access (as the sender does).
pub fn load_link_key(config: &ReceiverConfig) -> anyhow::Result<LinkKey> {
    let path = config.keys.link_key.as_ref().context("keys.link_key is missing; [link] needs it")?;
    let key = diode_host::keyfile::read_secret_key(path, "copy link.key from the sender and `chmod 600` it")?;
    Ok(LinkKey::from_bytes(*key))
}

/// The one UDP socket, bound to `link.listen` with the configured receive buffer, read only.
pub fn open_socket(config: &ReceiverConfig) -> anyhow::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let link = config.link.as_ref().context("[link] is missing")?;
    let listen = link.listen;
    let domain = if listen.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).context("cannot create a UDP socket")?;
    socket.set_recv_buffer_size(link.receive_buffer_bytes).context("cannot set the UDP receive buffer")?;
    let granted = socket.recv_buffer_size().unwrap_or(0);
    if granted < link.receive_buffer_bytes {
        tracing::warn!(
            requested = link.receive_buffer_bytes,
            granted,
            "the kernel granted a smaller UDP receive buffer; raise net.core.rmem_max to avoid drops in bursts"
        );
    }
    socket.bind(&listen.into()).with_context(|| format!("cannot listen on {listen}; is another receiver running?"))?;
    let socket: UdpSocket = socket.into();
    socket.set_read_timeout(Some(Duration::from_millis(50)))?;
    Ok(socket)
}

/// The reassembler's bounds from `[reassembly]`, in bytes and counts.
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
    let mut beacons = BeaconFilter::from_replica(&locks::read(&shared.replica));
    let started = Instant::now();
    let mut last_stats_ms = 0;
    let mut buffer = vec![0u8; 65_536];
    let mut read_timeout = None;
    let counters = &shared.counters;
    while !shared.stop.load(Ordering::Relaxed) {
        let now_ms = started.elapsed().as_millis() as u64;
        if reassembler.poll_timeout().is_some_and(|deadline| now_ms >= deadline) {
            reassembler.handle_timeout(now_ms);
            report_events(&shared, &mut reassembler);
        }
        if now_ms >= last_stats_ms + STATS_INTERVAL_MS {
            *locks::lock(&counters.reassembly) = reassembler.stats().clone();
            last_stats_ms = now_ms;
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
                // Asked once per new segment copy: replays of applied segments take no memory. A
                // replica busy applying is not waited for; the copy is then taken and found applied.
                let is_applied = |id: packet::SegmentId| {
                    shared.replica.try_read().is_ok_and(|replica| {
                        replica.is_applied(SegmentKey {
                            sender_id: id.sender_id,
                            epoch: id.epoch,
                            sequence: id.sequence,
                        })
                    })
                };
                if let Some(completed) = reassembler.handle_symbol_unless_applied(&symbol, now_ms, is_applied) {
                    counters.segments_completed.fetch_add(1, Ordering::Relaxed);
                    if completed.recovered_by_fec {
                        counters.segments_recovered_by_fec.fetch_add(1, Ordering::Relaxed);
                    }
                    let work = Work::Segment { bytes: completed.bytes, recovered_by_fec: completed.recovered_by_fec };
                    offer(&queue, work, &shared, &mut reassembler, completed_id(&symbol));
                }
            }
            Datagram::Beacon(beacon_packet) => {
                if let Some(beacon) = beacons.admit(beacon_packet.body, &trusted, &shared) {
                    reassembler.handle_epoch(beacon.sender_id, beacon.epoch, now_ms);
                    let sender_id = beacon.sender_id;
                    let verified = VerifiedBeacon { beacon, raw: beacon_packet.body.to_vec() };
                    locks::lock(&shared.beacons).insert(sender_id, verified);
                }
            }
        }
        report_events(&shared, &mut reassembler);
    }
    Ok(())
}

/// How often the receive thread publishes the reassembler's counters for metrics.
const STATS_INTERVAL_MS: u64 = 500;
/// Senders whose newest verified beacon is remembered (beyond, beacons are simply verified).
const MAX_BEACON_SENDERS: usize = 1024;

/// Keeps only beacons newer than the newest verified one of their sender. A replayed beacon is
/// dropped on what it claims before its signature is checked (a claim of being newer still has to
/// verify), so a replay flood costs neither an ed25519 check nor a write, and an old beacon can
/// never move the announced head back. Seeded from the replica's stored latest beacons, so a
/// restart does not reopen the door.
struct BeaconFilter {
    newest: HashMap<u64, BeaconOrder>,
}

impl BeaconFilter {
    fn from_replica(replica: &Replica) -> BeaconFilter {
        let mut newest = HashMap::new();
        for stream in replica.streams() {
            if newest.contains_key(&stream.sender_id) {
                continue;
            }
            if let Ok(Some((summary, _))) = replica.last_beacon(stream.sender_id) {
                newest.insert(stream.sender_id, summary.order());
            }
        }
        BeaconFilter { newest }
    }

    fn is_stale(&self, sender_id: u64, order: BeaconOrder) -> bool {
        self.newest.get(&sender_id).is_some_and(|newest| order <= *newest)
    }

    /// The beacon in `bytes` if it is newer than every verified one of its sender and verifies.
    fn admit(&mut self, bytes: &[u8], trusted: &TrustedKeys, shared: &Shared) -> Option<Beacon> {
        if let Some((sender_id, order)) = peek_order(bytes)
            && self.is_stale(sender_id, order)
        {
            shared.counters.beacons_replayed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        match Beacon::open(bytes, trusted) {
            Ok(beacon) => {
                // `peek_order` read these very bytes, so a verified beacon is known to be newer.
                debug_assert_eq!(peek_order(bytes), Some((beacon.sender_id, beacon.order())));
                if self.newest.len() < MAX_BEACON_SENDERS || self.newest.contains_key(&beacon.sender_id) {
                    self.newest.insert(beacon.sender_id, beacon.order());
                }
                Some(beacon)
            }
            Err(error) => {
                shared.counters.reject("bad_beacon");
                shared.log.warn("bad_beacon", || format!("dropped a beacon: {error}"));
                None
            }
        }
    }
}

fn completed_id(symbol: &packet::SymbolPacket<'_>) -> packet::SegmentId {
    symbol.segment_id()
}

/// Hands a completed segment to the apply thread, or sheds it whole when the queue is full (in
/// segments, or in bytes: one segment alone is always taken).
fn offer(queue: &SyncSender<Work>, work: Work, shared: &Shared, reassembler: &mut Reassembler, id: packet::SegmentId) {
    let bytes = work.bytes();
    let queue_bytes = &shared.counters.apply_queue_bytes;
    let queued = queue_bytes.load(Ordering::Relaxed);
    let full = if queued > 0 && queued.saturating_add(bytes) > shared.apply_queue_limit_bytes {
        Some("bytes")
    } else {
        queue_bytes.fetch_add(bytes, Ordering::Relaxed);
        match queue.try_send(work) {
            Ok(()) => None,
            Err(TrySendError::Full(_)) => {
                queue_bytes.fetch_sub(bytes, Ordering::Relaxed);
                Some("segments")
            }
            Err(TrySendError::Disconnected(_)) => {
                shared.stop.store(true, Ordering::Relaxed);
                None
            }
        }
    };
    if let Some(unit) = full {
        shared.counters.segments_shed.fetch_add(1, Ordering::Relaxed);
        // Forget it was completed, so the carousel's or a resend's copy is taken next time.
        reassembler.handle_dropped(id);
        shared.log.warn("shed", || {
            format!(
                "apply queue full ({unit}): shed segment {} of epoch {} (the carousel or a resend will bring it back)",
                id.sequence, id.epoch
            )
        });
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

#[cfg(test)]
mod tests {

    use super::*;
    use diode_common::fec::{self, FecParams};
    use diode_common::packet::SymbolPacket;
    use diode_replica::Replica;

    fn shared(dir: &std::path::Path) -> Shared {
        Shared::new(Replica::open(&dir.join("replica")).unwrap())
    }

    fn signed_beacon(key: &diode_common::keys::SenderKey, head_sequence: u64, sent_at_ns: i64) -> Vec<u8> {
        use diode_common::beacon::EpochReason;
        Beacon {
            epoch_reason: EpochReason::Continuing,
            sender_id: 9,
            key_id: key.key_id(),
            epoch: 4,
            head_sequence,
            head_hash: [1; 32],
            sent_at_ns,
            epoch_started_at_ns: 1,
            oldest_retained_sequence: 1,
            records_sealed: 0,
            datagrams_sent: 0,
            previous_epoch: 0,
            previous_epoch_last_sequence: 0,
            previous_epoch_last_hash: [0; 32],
            spooled_records: 0,
            beacon_counter: 1,
            link_rate_kbit_s: 1,
            software: "0.1.0 (test)".to_owned(),
        }
        .sign(key)
    }

    #[test]
    fn replayed_beacons_are_dropped_before_their_signature_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let shared = shared(dir.path());
        let key = diode_common::keys::SenderKey::from_seed([5; 32]);
        let trusted = TrustedKeys::single(key.public_key());
        let mut filter = BeaconFilter::from_replica(&locks::read(&shared.replica));
        let old = signed_beacon(&key, 10, 1_000);
        let new = signed_beacon(&key, 11, 2_000);
        assert!(filter.admit(&old, &trusted, &shared).is_some());
        assert!(filter.admit(&new, &trusted, &shared).is_some());
        // The old one again, ten times: never verified (an empty trust set would count bad_beacon
        // if it were), never passed on.
        let nobody = TrustedKeys::new(Vec::new());
        for _ in 0..10 {
            assert!(filter.admit(&old, &nobody, &shared).is_none());
            assert!(filter.admit(&new, &nobody, &shared).is_none());
        }
        assert_eq!(shared.counters.beacons_replayed.load(Ordering::Relaxed), 20);
        assert!(shared.counters.rejected().is_empty(), "{:?}", shared.counters.rejected());
        // A forged claim of being newer still has to verify.
        let forged = signed_beacon(&diode_common::keys::SenderKey::from_seed([6; 32]), 99, 9_000);
        assert!(filter.admit(&forged, &trusted, &shared).is_none());
        assert_eq!(shared.counters.rejected().get("bad_beacon"), Some(&1));
    }

    #[test]
    fn the_newest_stored_beacon_still_filters_replays_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let shared = shared(dir.path());
        let key = diode_common::keys::SenderKey::from_seed([5; 32]);
        let trusted = TrustedKeys::single(key.public_key());
        let stored = signed_beacon(&key, 11, 2_000);
        let beacon = Beacon::open(&stored, &trusted).unwrap();
        locks::write(&shared.replica).record_beacon(&beacon, &stored, 3_000).unwrap();
        let mut filter = BeaconFilter::from_replica(&locks::read(&shared.replica));
        assert!(filter.admit(&signed_beacon(&key, 10, 1_000), &trusted, &shared).is_none());
        assert!(filter.admit(&signed_beacon(&key, 11, 2_001), &trusted, &shared).is_some());
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

    /// The queue's byte bound sheds a segment though the queue has places left, takes a segment
    /// alone whatever its size, and frees its bytes once the apply thread is done with it.
    #[test]
    fn the_apply_queue_sheds_by_bytes_and_always_takes_one_segment() {
        let dir = tempfile::tempdir().unwrap();
        let shared = Shared { apply_queue_limit_bytes: 2_000, ..shared(dir.path()) };
        let mut reassembler = Reassembler::new(ReassemblyLimits::default());
        let (queue, applier) = std::sync::mpsc::sync_channel(8);
        let id = |sequence| packet::SegmentId { sender_id: 1, epoch: 1, sequence };
        let offer_sequence = |reassembler: &mut Reassembler, sequence| {
            let bytes = complete(reassembler, sequence).expect("completes");
            offer(&queue, Work::Segment { bytes, recovered_by_fec: false }, &shared, reassembler, id(sequence));
        };

        // 3,000 bytes are beyond the 2,000 allowed, but an empty queue takes a segment alone.
        offer_sequence(&mut reassembler, 1);
        assert_eq!(shared.counters.apply_queue_bytes.load(Ordering::Relaxed), 3_000);
        offer_sequence(&mut reassembler, 2);
        assert_eq!(shared.counters.segments_shed.load(Ordering::Relaxed), 1, "shed by bytes, with places left");
        assert_eq!(shared.counters.apply_queue_bytes.load(Ordering::Relaxed), 3_000);

        // The apply thread takes the first and is done with it: the shed segment's next copy is taken.
        let Ok(work) = applier.try_recv() else { panic!("the first segment was queued") };
        shared.counters.apply_queue_bytes.fetch_sub(work.bytes(), Ordering::Relaxed);
        offer_sequence(&mut reassembler, 2);
        assert_eq!(shared.counters.segments_shed.load(Ordering::Relaxed), 1);
        assert!(matches!(applier.try_recv(), Ok(Work::Segment { bytes, .. }) if bytes == vec![2u8; 3_000]));
    }
}
