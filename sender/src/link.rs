//! The link thread: turns sealed segments into paced UDP datagrams toward the receiver, adds the
//! carousel and the beacons, and never reads anything from the socket.
//!
//! The socket is used only with `send_to`; it is never connected and never read, so nothing the IT
//! side sends can reach diode-sender (and on a real diode nothing can come back at all).

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use diode_common::beacon::{Beacon, EpochReason};
use diode_common::keys::SenderKey;
use diode_common::packet::{self, LinkKey};
use diode_common::seal;

use crate::clock::now_ns;
use crate::framed_log;
use crate::pipeline::{EpochState, Progress, SealedEntry, SegmentIndex, split_segment_entry};
use crate::schedule::{CodingSettings, EncodedSegment, Purpose, Scheduler, TokenBucket};

/// Bytes the IP and UDP headers add to every datagram sent to `destination`.
pub fn ip_udp_overhead(destination: &SocketAddr) -> usize {
    packet::ip_udp_overhead(destination.is_ipv4())
}

/// Counters the link thread keeps for metrics and beacons.
#[derive(Debug, Default)]
pub struct LinkCounters {
    /// Datagrams the kernel accepted (symbols and beacons), since the process started.
    pub datagrams_sent: AtomicU64,
    /// Bytes those datagrams take on the wire, IP and UDP headers included.
    pub wire_bytes_sent: AtomicU64,
    /// Symbols sent in segments' first pass.
    pub live_datagrams: AtomicU64,
    /// Repair symbols sent again under `link.repeat_repair_after_ms`.
    pub repeat_datagrams: AtomicU64,
    /// Symbols the carousel re-sent.
    pub carousel_datagrams: AtomicU64,
    /// Signed beacons sent.
    pub beacons_sent: AtomicU64,
    /// Segments whose first pass is complete.
    pub segments_sent: AtomicU64,
    /// Sends the kernel refused (full buffer, interface down); those datagrams are lost like
    /// any other, and FEC, the carousel and resend cover them.
    pub send_errors: AtomicU64,
    /// Segments the carousel has taken up for a pass.
    pub carousel_segments: AtomicU64,
}

/// The link thread's settings, from `[link]` and `[carousel]`, in bytes and nanoseconds.
pub struct LinkSettings {
    /// `link.destination`: the receiver's address.
    pub destination: SocketAddr,
    /// `link.bind`: the local address sent from.
    pub bind: SocketAddr,
    /// `link.send_buffer_bytes`: the kernel send buffer asked for.
    pub send_buffer_bytes: usize,
    /// `link.rate_mbit_s` in bytes per second on the wire: the pace of every datagram.
    pub rate_bytes_per_s: f64,
    /// How segments become symbols.
    pub coding: CodingSettings,
    /// The carousel goes round the most recent segments within all three bounds.
    pub carousel_window_segments: u64,
    /// The window's size in bytes of sealed segments.
    pub carousel_window_bytes: u64,
    /// The window's age: segments sealed longer ago than this many ns are left out.
    pub carousel_window_ns: i64,
    /// The carousel's share of the rate, in bytes per second; `None`: carousel off.
    pub carousel_rate_bytes_per_s: Option<f64>,
    /// Time between signed beacons, in ns.
    pub beacon_interval_ns: i64,
    /// The data directory, where the link keeps its sent cursor.
    pub data_dir: PathBuf,
}

/// Everything the link thread needs, handed over when it starts.
pub struct LinkContext {
    /// Its settings.
    pub settings: LinkSettings,
    /// Signs the beacons.
    pub key: Arc<SenderKey>,
    /// Authenticates every datagram.
    pub link_key: LinkKey,
    /// The current epoch, named in beacons.
    pub epoch: EpochState,
    /// The current epoch's segment log, read by the carousel.
    pub segment_dir: PathBuf,
    /// Where retained segments are in that log, shared with the sealer.
    pub index: Arc<RwLock<SegmentIndex>>,
    /// The sealer's progress; the link sets `sent_through`.
    pub progress: Arc<Progress>,
    /// The link's counters, read by metrics.
    pub counters: Arc<LinkCounters>,
    /// Set to finish: the thread sends what is queued, a last beacon, and returns.
    pub stop: Arc<AtomicBool>,
}

/// Opens the send-only socket.
pub fn open_socket(settings: &LinkSettings) -> anyhow::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if settings.bind.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).context("cannot create a UDP socket")?;
    socket.set_send_buffer_size(settings.send_buffer_bytes).context("cannot set the UDP send buffer size")?;
    // The socket must have a local address to send from; it is never read.
    socket.set_recv_buffer_size(1).ok();
    socket
        .bind(&settings.bind.into())
        .with_context(|| format!("cannot bind the sending socket to {}", settings.bind))?;
    Ok(socket.into())
}

fn sent_cursor_path(context: &LinkContext) -> PathBuf {
    context.settings.data_dir.join(format!("sent-through-{}", context.epoch.epoch))
}

fn load_sent_cursor(context: &LinkContext) -> u64 {
    std::fs::read_to_string(sent_cursor_path(context)).ok().and_then(|text| text.trim().parse().ok()).unwrap_or(0)
}

fn store_sent_cursor(context: &LinkContext, sequence: u64) {
    let path = sent_cursor_path(context);
    let temporary = path.with_extension("new");
    // Losing this file only means re-sending some segments after a restart, which is harmless.
    if std::fs::write(&temporary, format!("{sequence}\n")).is_ok() {
        let _ = std::fs::rename(&temporary, &path);
    }
}

/// Reads a retained segment back from the segment log.
pub fn read_retained(segment_dir: &std::path::Path, index: &RwLock<SegmentIndex>, sequence: u64) -> Option<Vec<u8>> {
    let location = index.read().expect("segment index lock").entries.get(&sequence)?.location;
    let content = framed_log::read_at(segment_dir, location).ok()?;
    split_segment_entry(&content).map(|(_, sealed)| sealed.to_vec())
}

/// Runs until `stop` is set and everything queued is sent.
pub fn run(context: LinkContext, segments: Receiver<SealedEntry>) -> anyhow::Result<()> {
    let socket = open_socket(&context.settings)?;
    let destination = context.settings.destination;
    let overhead = ip_udp_overhead(&destination);
    let start_ns = now_ns();
    let mut scheduler =
        Scheduler::new(context.settings.coding.clone(), context.settings.carousel_rate_bytes_per_s, start_ns);
    let burst_bytes = (context.settings.rate_bytes_per_s * 0.002).max(8.0 * 1500.0);
    let mut bucket = TokenBucket::new(context.settings.rate_bytes_per_s, burst_bytes, start_ns);
    let mut datagram = Vec::with_capacity(65_536);
    let mut sent_through = load_sent_cursor(&context);
    // The head a beacon announces is the last segment whose first pass is complete.
    let mut head = (sent_through, retained_hash(&context, sent_through));
    let mut in_flight: HashMap<u64, seal::SegmentHash> = HashMap::new();
    requeue_unsent(&context, &mut scheduler, &mut in_flight, sent_through);
    context.progress.sent_through.store(sent_through, Ordering::Relaxed);
    let mut next_beacon_ns = start_ns;
    let mut beacon_counter = 0u64;
    let mut carousel_next = 0u64;
    let mut last_cursor_store_ns = start_ns;
    let mut channel_open = true;
    loop {
        let now = now_ns();
        loop {
            match segments.try_recv() {
                Ok(entry) => queue_live(&mut scheduler, &mut in_flight, &entry),
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    channel_open = false;
                    break;
                }
            }
        }
        if now >= next_beacon_ns {
            beacon_counter += 1;
            send_beacon(&context, &socket, head, beacon_counter, now, &mut datagram);
            bucket.spend(datagram.len() + overhead, now);
            next_beacon_ns = now + context.settings.beacon_interval_ns;
        }
        if scheduler.wants_carousel_segment(now)
            && let Some(segment) = next_carousel_segment(&context, &mut carousel_next)
        {
            context.counters.carousel_segments.fetch_add(1, Ordering::Relaxed);
            scheduler.push_carousel(segment);
        }
        let wire_estimate = usize::from(context.settings.coding.symbol_size) + packet::DATAGRAM_OVERHEAD + overhead;
        let wait = bucket.wait_ns(wire_estimate, now);
        if wait > 0 {
            sleep_ns(wait.min(next_beacon_ns - now).max(1));
            continue;
        }
        match scheduler.next(now, wire_estimate) {
            Some(slot) => {
                let packet = slot.segment.packet(context.settings.coding.sender_id, slot.index);
                packet::encode_symbol(&packet, &context.link_key, &mut datagram)
                    .context("encoding a symbol datagram")?;
                send(&context, &socket, &datagram);
                bucket.spend(datagram.len() + overhead, now);
                let counter = match slot.purpose {
                    Purpose::Live => &context.counters.live_datagrams,
                    Purpose::RepairRepeat => &context.counters.repeat_datagrams,
                    Purpose::Carousel => &context.counters.carousel_datagrams,
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                let stopping = context.stop.load(Ordering::Relaxed) || !channel_open;
                if stopping && scheduler.is_idle() {
                    // A last beacon, so the receiver knows the final head at once.
                    beacon_counter += 1;
                    send_beacon(&context, &socket, head, beacon_counter, now_ns(), &mut datagram);
                    store_sent_cursor(&context, sent_through);
                    return Ok(());
                }
                let until_beacon = Duration::from_nanos((next_beacon_ns - now).max(0) as u64);
                let nap = until_beacon.min(Duration::from_millis(5));
                match segments.recv_timeout(nap) {
                    Ok(entry) => queue_live(&mut scheduler, &mut in_flight, &entry),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => channel_open = false,
                }
            }
        }
        for sequence in scheduler.take_finished() {
            let hash = in_flight.remove(&sequence).unwrap_or_default();
            if sequence > sent_through {
                sent_through = sequence;
                head = (sequence, hash);
            }
            context.counters.segments_sent.fetch_add(1, Ordering::Relaxed);
        }
        context.progress.sent_through.store(sent_through, Ordering::Relaxed);
        if now - last_cursor_store_ns > 1_000_000_000 {
            store_sent_cursor(&context, sent_through);
            last_cursor_store_ns = now;
        }
    }
}

fn retained_hash(context: &LinkContext, sequence: u64) -> seal::SegmentHash {
    read_retained(&context.segment_dir, &context.index, sequence)
        .and_then(|bytes| seal::SegmentHeader::from_bytes(&bytes).ok())
        .map_or(seal::GENESIS_HASH, |header| header.hash())
}

fn queue_live(scheduler: &mut Scheduler, in_flight: &mut HashMap<u64, seal::SegmentHash>, entry: &SealedEntry) {
    if let Ok(header) = seal::SegmentHeader::from_bytes(&entry.bytes) {
        in_flight.insert(entry.sequence, header.hash());
    }
    match EncodedSegment::encode(scheduler.settings(), entry.epoch, entry.sequence, &entry.bytes) {
        Ok(segment) => scheduler.push_live(Arc::new(segment)),
        // Cannot happen for segments the sealer made within the configured bounds.
        Err(error) => {
            tracing::error!(sequence = entry.sequence, %error, "cannot FEC-encode a segment; it stays in the log for resend")
        }
    }
}

/// After a restart, segments sealed but not yet sent go out first.
fn requeue_unsent(
    context: &LinkContext,
    scheduler: &mut Scheduler,
    in_flight: &mut HashMap<u64, seal::SegmentHash>,
    sent_through: u64,
) {
    let sequences: Vec<u64> = context
        .index
        .read()
        .expect("segment index lock")
        .entries
        .range(sent_through + 1..)
        .map(|(seq, _)| *seq)
        .collect();
    if !sequences.is_empty() {
        tracing::info!(count = sequences.len(), first = sequences[0], "re-sending segments sealed before the restart");
    }
    for sequence in sequences {
        if let Some(bytes) = read_retained(&context.segment_dir, &context.index, sequence) {
            let entry = SealedEntry { epoch: context.epoch.epoch, sequence, bytes: Arc::new(bytes), record_count: 0 };
            queue_live(scheduler, in_flight, &entry);
        }
    }
}

/// The carousel walks the most recent `window` sent segments, oldest first, round and round.
fn next_carousel_segment(context: &LinkContext, cursor: &mut u64) -> Option<Arc<EncodedSegment>> {
    let sent_through = context.progress.sent_through.load(Ordering::Relaxed);
    if sent_through == 0 {
        return None;
    }
    let window_start = carousel_window_start(context, sent_through, now_ns())?;
    if *cursor < window_start || *cursor > sent_through {
        *cursor = window_start;
    }
    let sequence = *cursor;
    *cursor += 1;
    let bytes = read_retained(&context.segment_dir, &context.index, sequence)?;
    EncodedSegment::encode(&context.settings.coding, context.epoch.epoch, sequence, &bytes).ok().map(Arc::new)
}

/// The oldest sequence of the carousel's window: the most recent sent segments, going back while
/// the count, byte and age bounds all hold.
fn carousel_window_start(context: &LinkContext, sent_through: u64, now: i64) -> Option<u64> {
    let settings = &context.settings;
    let index = context.index.read().expect("segment index lock");
    let mut start = None;
    let mut bytes = 0u64;
    for (count, (sequence, entry)) in index.entries.range(..=sent_through).rev().enumerate() {
        bytes += entry.size_bytes;
        let within = (count as u64) < settings.carousel_window_segments
            && bytes <= settings.carousel_window_bytes
            && now - entry.sealed_at_ns <= settings.carousel_window_ns;
        if !within {
            break;
        }
        start = Some(*sequence);
    }
    start
}

fn send_beacon(
    context: &LinkContext,
    socket: &UdpSocket,
    (head_sequence, head_hash): (u64, seal::SegmentHash),
    counter: u64,
    now: i64,
    datagram: &mut Vec<u8>,
) {
    let epoch = &context.epoch;
    let beacon = Beacon {
        epoch_reason: if counter == 1 { epoch.reason } else { EpochReason::Continuing },
        sender_id: context.settings.coding.sender_id,
        key_id: context.key.key_id(),
        epoch: epoch.epoch,
        head_sequence,
        head_hash,
        sent_at_ns: now,
        epoch_started_at_ns: epoch.started_at_ns,
        oldest_retained_sequence: context.progress.oldest_retained_sequence.load(Ordering::Relaxed),
        records_sealed: context.progress.records_sealed.load(Ordering::Relaxed),
        datagrams_sent: context.counters.datagrams_sent.load(Ordering::Relaxed),
        previous_epoch: epoch.previous_epoch,
        previous_epoch_last_sequence: epoch.previous_last_sequence,
        previous_epoch_last_hash: epoch.previous_last_hash,
        spooled_records: context.progress.spooled_records.load(Ordering::Relaxed),
        beacon_counter: counter,
        link_rate_kbit_s: (context.settings.rate_bytes_per_s * 8.0 / 1000.0).min(f64::from(u32::MAX)) as u32,
        software: crate::VERSION.to_owned(),
    };
    let body = beacon.sign(&context.key);
    if packet::encode_beacon(beacon.sender_id, epoch.epoch, head_sequence, &body, &context.link_key, datagram).is_ok() {
        send(context, socket, datagram);
        context.counters.beacons_sent.fetch_add(1, Ordering::Relaxed);
    }
}

fn send(context: &LinkContext, socket: &UdpSocket, datagram: &[u8]) {
    match socket.send_to(datagram, context.settings.destination) {
        Ok(_) => {
            context.counters.datagrams_sent.fetch_add(1, Ordering::Relaxed);
            context
                .counters
                .wire_bytes_sent
                .fetch_add((datagram.len() + ip_udp_overhead(&context.settings.destination)) as u64, Ordering::Relaxed);
        }
        Err(error) => {
            // A full kernel buffer or a down interface: the datagram is lost like any other, and
            // FEC, the carousel and resend cover it.
            if context.counters.send_errors.fetch_add(1, Ordering::Relaxed).is_multiple_of(1000) {
                tracing::warn!(%error, "sending a datagram failed (counted; the carousel and resend cover it)");
            }
        }
    }
}

fn sleep_ns(ns: i64) {
    std::thread::sleep(Duration::from_nanos(ns as u64));
}
