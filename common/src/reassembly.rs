//! Reassembly: turns authenticated symbol datagrams, in any order, into whole segments.
//!
//! A sans-IO state machine with quinn-proto's verbs: inputs are `handle_*` calls, outputs are
//! `poll_*` calls, and the caller owns every clock and socket.
//!
//! - [`Reassembler::handle_symbol`]: one [`SymbolPacket`] that [`crate::packet::decode_datagram`]
//!   has already authenticated; returns the segment it completes, if any.
//! - [`Reassembler::handle_symbol_unless_applied`]: the same, consulting the caller's persistent
//!   set of applied segments before a new segment takes memory, so replayed symbols of segments
//!   applied long ago (or before a restart) cost nothing.
//! - [`Reassembler::handle_epoch`]: a sender's epoch, from a verified beacon (never from a
//!   symbol: a symbol carries only a link MAC, not the sender's signature).
//! - [`Reassembler::handle_dropped`]: the caller could not take a completed segment (shed, or
//!   not applied), so a later copy of it is reassembled again.
//! - [`Reassembler::handle_timeout`]: the time reached the deadline [`Reassembler::poll_timeout`]
//!   gave; idle segments are abandoned.
//! - [`Reassembler::poll_event`]: what happened to incomplete segments (abandoned, evicted),
//!   oldest first.
//! - [`Reassembler::poll_timeout`]: the next time `handle_timeout` has work to do, if any.
//!
//! Times are `now_ms` from any monotonic millisecond clock. Nothing here blocks, sleeps or reads a
//! clock.
//!
//! Rules:
//! - Each segment is yielded **once**: the ids of the last `completed_memory` completed segments
//!   are remembered, and their late symbols (repairs that were not needed, duplicates) are counted
//!   and dropped. A segment re-sent after its id fell out of that memory (an operator's `resend`
//!   days later, the carousel) is yielded again; the receiver's replica applies segments
//!   idempotently, so this costs work, not correctness.
//! - A symbol whose FEC parameters differ from those of the first symbol seen for its segment is
//!   counted and dropped.
//! - Every epoch is accepted. A resend of an older epoch (what `diode-receiver gaps` asks an
//!   operator for) and the tail of an epoch still in flight when the next one starts are
//!   reassembled like any other segment; the replica verifies each against its own neighbours.
//!   Epochs are only moved by what is signed ([`Reassembler::handle_epoch`], from verified
//!   beacons), and only for counting: symbols of epochs older than a sender's newest verified
//!   epoch are counted in `older_epoch_symbols`.
//! - Memory is bounded: at most `max_segments_in_flight` incomplete segments and
//!   `max_buffered_bytes` of symbol data. Over a limit, the incomplete segment with the oldest
//!   last activity is evicted ([`Event::Evicted`]), never the one being fed. A segment with no new
//!   symbol for `segment_timeout_ms` is abandoned ([`Event::Abandoned`]).

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::fec::{BlockDecoder, FecError, MAX_SEGMENT_LENGTH, RepairWorkspace, SymbolOutcome};
use crate::packet::{SegmentId, SymbolPacket};

/// Most events kept until [`Reassembler::poll_event`] takes them; beyond, they are counted in
/// [`ReassemblyStats::events_dropped`] and lost.
pub const MAX_PENDING_EVENTS: usize = 4096;

/// Bounds on everything the reassembler holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReassemblyLimits {
    /// Incomplete segments held at once.
    pub max_segments_in_flight: usize,
    /// Bytes held at once over all incomplete segments: symbol data plus each symbol's and each
    /// segment's bookkeeping (see [`BlockDecoder::buffered_bytes`]).
    pub max_buffered_bytes: usize,
    /// An incomplete segment with no new symbol for this long is abandoned.
    pub segment_timeout_ms: u64,
    /// Symbols of longer segments are dropped (counted in `oversized_segment_symbols`).
    pub max_segment_length: u32,
    /// How many recently completed segment ids are remembered to drop their late symbols.
    pub completed_memory: usize,
    /// How many senders' newest epochs are remembered; the least recently heard is forgotten.
    pub max_senders: usize,
}

impl Default for ReassemblyLimits {
    fn default() -> Self {
        Self {
            max_segments_in_flight: 256,
            max_buffered_bytes: 256 * 1024 * 1024,
            segment_timeout_ms: 30_000,
            max_segment_length: 1024 * 1024,
            completed_memory: 65_536,
            max_senders: 64,
        }
    }
}

/// Why a set of limits cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitsError {
    /// `max_segments_in_flight` is 0: no segment could ever be reassembled.
    #[error("max_segments_in_flight is 0; at least 1 segment must be allowed in flight")]
    NoSegmentsInFlight,
    /// `max_senders` is 0: no sender's epoch could be remembered.
    #[error("max_senders is 0; at least 1 sender must be allowed")]
    NoSenders,
    /// `max_segment_length` is 0 or above the format's [`MAX_SEGMENT_LENGTH`].
    #[error("max_segment_length {max_segment_length} must be between 1 and {hard_limit} bytes")]
    SegmentLength {
        /// The configured limit, in bytes.
        max_segment_length: u32,
        /// [`MAX_SEGMENT_LENGTH`].
        hard_limit: u32,
    },
    /// `max_buffered_bytes` is below `max_segment_length`, so a segment of the largest allowed
    /// length could never be held whole.
    #[error(
        "max_buffered_bytes {max_buffered_bytes} is smaller than max_segment_length \
         {max_segment_length}: one whole segment must fit"
    )]
    BufferTooSmall {
        /// The configured memory budget, in bytes.
        max_buffered_bytes: usize,
        /// The configured segment length limit, in bytes.
        max_segment_length: u32,
    },
}

impl ReassemblyLimits {
    /// Checks that the limits can work together; [`Reassembler::new`] panics on limits that fail.
    pub fn validate(&self) -> Result<(), LimitsError> {
        if self.max_segments_in_flight == 0 {
            return Err(LimitsError::NoSegmentsInFlight);
        }
        if self.max_senders == 0 {
            return Err(LimitsError::NoSenders);
        }
        if self.max_segment_length == 0 || self.max_segment_length > MAX_SEGMENT_LENGTH {
            return Err(LimitsError::SegmentLength {
                max_segment_length: self.max_segment_length,
                hard_limit: MAX_SEGMENT_LENGTH,
            });
        }
        // Roughly one segment's data must fit; segments whose bookkeeping would not fit are
        // refused symbol by symbol (`oversized_segment_symbols`), so the budget always holds.
        if self.max_buffered_bytes < self.max_segment_length as usize {
            return Err(LimitsError::BufferTooSmall {
                max_buffered_bytes: self.max_buffered_bytes,
                max_segment_length: self.max_segment_length,
            });
        }
        Ok(())
    }
}

/// A rebuilt segment, exactly the bytes the sender sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedSegment {
    /// The sender named by the segment's symbol datagrams.
    pub sender_id: u64,
    /// The epoch named by the segment's symbol datagrams.
    pub epoch: u64,
    /// The sequence named by the segment's symbol datagrams.
    pub sequence: u64,
    /// The sealed segment, `segment_length` bytes. Only the link MACs of its symbols were
    /// checked: open it with [`crate::seal::open`] before trusting anything in it, including
    /// whether it matches the id above.
    pub bytes: Vec<u8>,
    /// True if some original symbol was missing and the Reed-Solomon decoder rebuilt it.
    pub recovered_by_fec: bool,
}

impl CompletedSegment {
    /// The segment's id, as its datagrams named it.
    pub fn id(&self) -> SegmentId {
        SegmentId { sender_id: self.sender_id, epoch: self.epoch, sequence: self.sequence }
    }
}

/// Something that happened to an incomplete segment, reported by [`Reassembler::poll_event`].
/// `symbols_needed` is the segment's `original_count`; `symbols_received` the distinct symbols
/// that had arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// No new symbol for `segment_timeout_ms`.
    Abandoned {
        /// The segment's sender.
        sender_id: u64,
        /// The segment's epoch.
        epoch: u64,
        /// The segment's sequence.
        sequence: u64,
        /// Distinct symbols that had arrived.
        symbols_received: u16,
        /// Symbols the segment needed: its `original_count`.
        symbols_needed: u16,
    },
    /// Dropped to stay within `max_segments_in_flight` or `max_buffered_bytes`.
    Evicted {
        /// The segment's sender.
        sender_id: u64,
        /// The segment's epoch.
        epoch: u64,
        /// The segment's sequence.
        sequence: u64,
        /// Distinct symbols that had arrived.
        symbols_received: u16,
        /// Symbols the segment needed: its `original_count`.
        symbols_needed: u16,
    },
}

/// Counters, for metrics. All are totals since creation except the two gauges at the end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReassemblyStats {
    /// New symbols stored.
    pub symbols_accepted: u64,
    /// Symbols whose index had already arrived for an incomplete segment.
    pub duplicate_symbols: u64,
    /// Symbols of a segment completed recently (unneeded repairs, duplicates, resends).
    pub symbols_for_completed_segments: u64,
    /// Symbols of an epoch older than their sender's newest verified epoch (accepted: resends of
    /// an old epoch, or its tail still arriving after the next epoch began).
    pub older_epoch_symbols: u64,
    /// Symbols dropped before taking memory because the caller's applied set already holds their
    /// segment (replays, late copies of segments applied before a restart).
    pub symbols_for_applied_segments: u64,
    /// Symbols whose parameters, index or length disagree with their segment.
    pub inconsistent_parameters: u64,
    /// Symbols of segments longer than `max_segment_length`, or whose symbols are so small that
    /// the segment could not fit in `max_buffered_bytes` with its bookkeeping.
    pub oversized_segment_symbols: u64,
    /// Symbols that arrived after their segment had enough (only if one finish failed).
    pub surplus_symbols: u64,
    /// Segments rebuilt and yielded (a segment yielded again after it left the completed memory
    /// counts again).
    pub segments_completed: u64,
    /// Completed segments that needed the Reed-Solomon decoder.
    pub segments_recovered_by_fec: u64,
    /// Segments that had enough symbols but could not be decoded (should never happen: MDS).
    pub segments_failed_decoding: u64,
    /// Incomplete segments abandoned after `segment_timeout_ms` without a new symbol
    /// ([`Event::Abandoned`]).
    pub segments_abandoned: u64,
    /// Incomplete segments evicted to stay within the limits ([`Event::Evicted`]).
    pub segments_evicted: u64,
    /// Senders whose newest epoch was forgotten to stay within `max_senders`.
    pub senders_forgotten: u64,
    /// Events lost because more than [`MAX_PENDING_EVENTS`] waited for `poll_event`.
    pub events_dropped: u64,
    /// Gauge: bytes of symbol data held now.
    pub buffered_bytes: usize,
    /// Gauge: incomplete segments held now.
    pub segments_in_flight: usize,
}

#[derive(Debug)]
struct InFlight {
    decoder: BlockDecoder,
    last_activity_ms: u64,
}

#[derive(Debug, Clone, Copy)]
struct SenderState {
    newest_epoch: u64,
    last_heard_ms: u64,
}

/// Remembers the last N completed segment ids, in completion order.
#[derive(Debug, Default)]
struct CompletedMemory {
    /// Id to the generation at which it was (last) remembered.
    ids: HashMap<SegmentId, u64>,
    order: VecDeque<(SegmentId, u64)>,
    next_generation: u64,
}

impl CompletedMemory {
    fn contains(&self, id: &SegmentId) -> bool {
        self.ids.contains_key(id)
    }

    fn remember(&mut self, id: SegmentId, capacity: usize) {
        if capacity == 0 {
            return;
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        self.ids.insert(id, generation);
        self.order.push_back((id, generation));
        // Forget the oldest live ids beyond capacity; entries left behind by `forget` are
        // skipped, and compacted away before they can pile up.
        while self.ids.len() > capacity {
            let Some((old, old_generation)) = self.order.pop_front() else {
                break;
            };
            if self.ids.get(&old) == Some(&old_generation) {
                self.ids.remove(&old);
            }
        }
        if self.order.len() > 2 * capacity {
            let ids = &self.ids;
            self.order.retain(|(id, generation)| ids.get(id) == Some(generation));
        }
        debug_assert!(self.ids.len() <= capacity);
        debug_assert!(self.order.len() <= 2 * capacity);
    }

    fn forget(&mut self, id: &SegmentId) -> bool {
        self.ids.remove(id).is_some()
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct Reassembler {
    limits: ReassemblyLimits,
    in_flight: BTreeMap<SegmentId, InFlight>,
    senders: HashMap<u64, SenderState>,
    completed: CompletedMemory,
    pending_events: VecDeque<Event>,
    /// Never later than the earliest time an in-flight segment goes idle: exact after
    /// `handle_timeout`, lowered as segments start (a deadline that fires early finds nothing to
    /// abandon and is recomputed).
    next_timeout_ms: Option<u64>,
    stats: ReassemblyStats,
    /// The Reed-Solomon working memory, reused from one repaired segment to the next.
    repair: RepairWorkspace,
}

enum Removal {
    Evicted,
    Abandoned,
}

impl Reassembler {
    /// A reassembler that holds nothing yet and keeps within `limits`.
    ///
    /// # Panics
    /// If `limits` fail [`ReassemblyLimits::validate`]: check them when loading the configuration.
    pub fn new(limits: ReassemblyLimits) -> Self {
        if let Err(error) = limits.validate() {
            panic!("invalid reassembly limits: {error}");
        }
        Self {
            limits,
            in_flight: BTreeMap::new(),
            senders: HashMap::new(),
            completed: CompletedMemory::default(),
            pending_events: VecDeque::new(),
            next_timeout_ms: None,
            stats: ReassemblyStats::default(),
            repair: RepairWorkspace::new(),
        }
    }

    /// The limits it was created with.
    pub fn limits(&self) -> &ReassemblyLimits {
        &self.limits
    }

    /// The counters and gauges so far, for metrics.
    pub fn stats(&self) -> &ReassemblyStats {
        &self.stats
    }

    /// Feeds one authenticated symbol. Returns the segment when this symbol completes it.
    #[must_use = "a completed segment is yielded once; dropping it loses it until a resend"]
    pub fn handle_symbol(&mut self, packet: &SymbolPacket<'_>, now_ms: u64) -> Option<CompletedSegment> {
        self.handle_symbol_unless_applied(packet, now_ms, |_| false)
    }

    /// Feeds one authenticated symbol, first asking `is_applied` whether its segment is already
    /// applied when the symbol would start a new incomplete segment (so at most once per segment
    /// copy, never per symbol): an applied segment's symbols are counted and dropped before they
    /// take memory or evict anything. Returns the segment when this symbol completes it.
    #[must_use = "a completed segment is yielded once; dropping it loses it until a resend"]
    pub fn handle_symbol_unless_applied(
        &mut self,
        packet: &SymbolPacket<'_>,
        now_ms: u64,
        is_applied: impl FnOnce(SegmentId) -> bool,
    ) -> Option<CompletedSegment> {
        let id = packet.segment_id();
        if self.senders.get(&id.sender_id).is_some_and(|state| id.epoch < state.newest_epoch) {
            self.stats.older_epoch_symbols += 1;
        }
        if self.completed.contains(&id) {
            self.stats.symbols_for_completed_segments += 1;
            return None;
        }
        if packet.params.segment_length > self.limits.max_segment_length {
            self.stats.oversized_segment_symbols += 1;
            return None;
        }
        if !self.in_flight.contains_key(&id) && is_applied(id) {
            self.stats.symbols_for_applied_segments += 1;
            return None;
        }
        let completed = self.feed(id, packet, now_ms);
        self.check_invariants();
        completed
    }

    /// Records that `sender_id` is at `epoch`, from a verified beacon: the only input that moves a
    /// sender's epoch. Nothing is dropped for it; an older `epoch` changes nothing.
    pub fn handle_epoch(&mut self, sender_id: u64, epoch: u64, now_ms: u64) {
        match self.senders.get_mut(&sender_id) {
            Some(state) => {
                state.last_heard_ms = state.last_heard_ms.max(now_ms);
                state.newest_epoch = state.newest_epoch.max(epoch);
            }
            None => {
                self.make_room_for_a_sender();
                self.senders.insert(sender_id, SenderState { newest_epoch: epoch, last_heard_ms: now_ms });
            }
        }
        self.check_invariants();
    }

    fn make_room_for_a_sender(&mut self) {
        while self.senders.len() >= self.limits.max_senders {
            let Some(quietest) = self
                .senders
                .iter()
                .min_by_key(|(sender_id, state)| (state.last_heard_ms, **sender_id))
                .map(|(sender_id, _)| *sender_id)
            else {
                break;
            };
            self.senders.remove(&quietest);
            self.stats.senders_forgotten += 1;
        }
    }

    fn feed(&mut self, id: SegmentId, packet: &SymbolPacket<'_>, now_ms: u64) -> Option<CompletedSegment> {
        match self.in_flight.get(&id) {
            Some(entry) if entry.decoder.params() != &packet.params => {
                self.stats.inconsistent_parameters += 1;
                return None;
            }
            Some(_) => {}
            None => {
                let decoder = match BlockDecoder::new(packet.params) {
                    Ok(decoder) => decoder,
                    Err(_) => {
                        self.stats.inconsistent_parameters += 1;
                        return None;
                    }
                };
                // Check the symbol before making room for it, so a bad symbol evicts nothing.
                if decoder.check_symbol(packet.symbol_index, packet.symbol).is_err() {
                    self.stats.inconsistent_parameters += 1;
                    return None;
                }
                // A segment that could not fit whole while incomplete would evict everything else
                // and still overflow the budget.
                if BlockDecoder::max_incomplete_bytes(&packet.params) > self.limits.max_buffered_bytes {
                    self.stats.oversized_segment_symbols += 1;
                    return None;
                }
                while self.in_flight.len() >= self.limits.max_segments_in_flight {
                    if !self.evict_oldest_except(id) {
                        break;
                    }
                }
                self.stats.buffered_bytes += decoder.buffered_bytes();
                self.in_flight.insert(id, InFlight { decoder, last_activity_ms: now_ms });
                let deadline = now_ms.saturating_add(self.limits.segment_timeout_ms);
                self.next_timeout_ms = Some(self.next_timeout_ms.map_or(deadline, |next| next.min(deadline)));
                self.stats.segments_in_flight = self.in_flight.len();
            }
        }
        let entry = self.in_flight.get_mut(&id)?;
        let buffered_before = entry.decoder.buffered_bytes();
        match entry.decoder.add_symbol(packet.symbol_index, packet.symbol) {
            Ok(SymbolOutcome::Stored) => {
                self.stats.symbols_accepted += 1;
                entry.last_activity_ms = entry.last_activity_ms.max(now_ms);
                let added = entry.decoder.buffered_bytes() - buffered_before;
                self.stats.buffered_bytes += added;
            }
            Ok(SymbolOutcome::Duplicate) => {
                self.stats.duplicate_symbols += 1;
                return None;
            }
            Ok(SymbolOutcome::AlreadyComplete) => {
                self.stats.surplus_symbols += 1;
                return None;
            }
            Err(_) => {
                self.stats.inconsistent_parameters += 1;
                return None;
            }
        }
        if entry.decoder.is_complete() {
            return self.complete(id);
        }
        while self.stats.buffered_bytes > self.limits.max_buffered_bytes {
            if !self.evict_oldest_except(id) {
                break;
            }
        }
        None
    }

    fn complete(&mut self, id: SegmentId) -> Option<CompletedSegment> {
        let entry = self.in_flight.remove(&id)?;
        self.stats.segments_in_flight = self.in_flight.len();
        self.stats.buffered_bytes -= entry.decoder.buffered_bytes();
        let recovered_by_fec = entry.decoder.needs_repair();
        let expected_length = entry.decoder.params().segment_length as usize;
        match entry.decoder.finish_with(&mut self.repair) {
            Ok(bytes) => {
                assert_eq!(bytes.len(), expected_length);
                self.completed.remember(id, self.limits.completed_memory);
                self.stats.segments_completed += 1;
                if recovered_by_fec {
                    self.stats.segments_recovered_by_fec += 1;
                }
                Some(CompletedSegment {
                    sender_id: id.sender_id,
                    epoch: id.epoch,
                    sequence: id.sequence,
                    bytes,
                    recovered_by_fec,
                })
            }
            Err(FecError::NotEnoughSymbols { .. }) => {
                unreachable!("complete() is only called on a complete block")
            }
            Err(_) => {
                self.stats.segments_failed_decoding += 1;
                None
            }
        }
    }

    /// Evicts the incomplete segment with the oldest last activity, other than `keep`.
    /// Returns false if there is none.
    fn evict_oldest_except(&mut self, keep: SegmentId) -> bool {
        let oldest = self
            .in_flight
            .iter()
            .filter(|(id, _)| **id != keep)
            .min_by_key(|(id, entry)| (entry.last_activity_ms, **id))
            .map(|(id, _)| *id);
        match oldest {
            Some(id) => {
                self.remove(id, Removal::Evicted);
                true
            }
            None => false,
        }
    }

    fn remove(&mut self, id: SegmentId, why: Removal) {
        let Some(entry) = self.in_flight.remove(&id) else {
            return;
        };
        self.stats.segments_in_flight = self.in_flight.len();
        self.stats.buffered_bytes -= entry.decoder.buffered_bytes();
        let symbols_received = entry.decoder.received_count() as u16;
        let symbols_needed = entry.decoder.params().original_count;
        let (sender_id, epoch, sequence) = (id.sender_id, id.epoch, id.sequence);
        let event = match why {
            Removal::Evicted => {
                self.stats.segments_evicted += 1;
                Event::Evicted { sender_id, epoch, sequence, symbols_received, symbols_needed }
            }
            Removal::Abandoned => {
                self.stats.segments_abandoned += 1;
                Event::Abandoned { sender_id, epoch, sequence, symbols_received, symbols_needed }
            }
        };
        if self.pending_events.len() >= MAX_PENDING_EVENTS {
            self.stats.events_dropped += 1;
        } else {
            self.pending_events.push_back(event);
        }
    }

    /// Abandons incomplete segments idle for `segment_timeout_ms` at `now_ms`; their
    /// [`Event::Abandoned`] join the events [`Reassembler::poll_event`] yields.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let mut idle: Vec<(u64, SegmentId)> = self
            .in_flight
            .iter()
            .filter(|(_, entry)| now_ms.saturating_sub(entry.last_activity_ms) >= self.limits.segment_timeout_ms)
            .map(|(id, entry)| (entry.last_activity_ms, *id))
            .collect();
        idle.sort_unstable();
        for (_, id) in idle {
            self.remove(id, Removal::Abandoned);
        }
        self.next_timeout_ms = self
            .in_flight
            .values()
            .map(|entry| entry.last_activity_ms.saturating_add(self.limits.segment_timeout_ms))
            .min();
        self.check_invariants();
    }

    /// The next event (evictions, supersessions and abandons, in the order they happened).
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.pending_events.pop_front()
    }

    /// When [`Reassembler::handle_timeout`] should next be called (same clock as `now_ms`), or
    /// `None` while nothing is in flight. Never later than the real deadline; calling early is
    /// harmless.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<u64> {
        self.next_timeout_ms
    }

    /// Forgets that a segment was completed, so that a later resend of it is reassembled again
    /// (e.g. when the receiver shed it or could not apply it). Returns whether it was remembered.
    pub fn handle_dropped(&mut self, id: SegmentId) -> bool {
        self.completed.forget(&id)
    }

    /// Whether `id` is among the recently completed segments.
    pub fn was_completed(&self, id: SegmentId) -> bool {
        self.completed.contains(&id)
    }

    /// The newest verified epoch of `sender_id`, if it is remembered.
    pub fn newest_epoch(&self, sender_id: u64) -> Option<u64> {
        self.senders.get(&sender_id).map(|state| state.newest_epoch)
    }

    /// Incomplete segments held now, with (distinct symbols received, symbols needed).
    pub fn in_flight(&self) -> impl Iterator<Item = (SegmentId, u32, u16)> + '_ {
        self.in_flight
            .iter()
            .map(|(id, entry)| (*id, entry.decoder.received_count(), entry.decoder.params().original_count))
    }

    fn check_invariants(&self) {
        assert!(self.stats.buffered_bytes <= self.limits.max_buffered_bytes);
        assert!(self.in_flight.len() <= self.limits.max_segments_in_flight);
        assert!(self.senders.len() <= self.limits.max_senders);
        assert!(self.pending_events.len() <= MAX_PENDING_EVENTS);
        debug_assert_eq!(self.stats.segments_in_flight, self.in_flight.len());
        debug_assert_eq!(
            self.stats.buffered_bytes,
            self.in_flight.values().map(|entry| entry.decoder.buffered_bytes()).sum::<usize>()
        );
        debug_assert!(
            self.in_flight
                .values()
                .all(|entry| { !entry.decoder.is_complete() && entry.decoder.params().validate().is_ok() })
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fec::{self, FecParams};

    const SYMBOL_SIZE: u16 = 100;

    /// Runs the timeout at `now_ms` and takes every event.
    fn drain(reassembler: &mut Reassembler, now_ms: u64) -> Vec<Event> {
        reassembler.handle_timeout(now_ms);
        std::iter::from_fn(|| reassembler.poll_event()).collect()
    }

    fn limits() -> ReassemblyLimits {
        ReassemblyLimits {
            max_segments_in_flight: 4,
            max_buffered_bytes: 10_000,
            segment_timeout_ms: 1_000,
            max_segment_length: 5_000,
            completed_memory: 8,
            max_senders: 4,
        }
    }

    struct Segment {
        id: SegmentId,
        bytes: Vec<u8>,
        params: FecParams,
        symbols: Vec<Vec<u8>>,
    }

    impl Segment {
        fn new(sender_id: u64, epoch: u64, sequence: u64, length: usize) -> Self {
            let bytes: Vec<u8> = (0..length).map(|i| (i as u64 * 31 + sequence) as u8).collect();
            let params = FecParams::for_segment(length, SYMBOL_SIZE, 0.5, 1).unwrap();
            let symbols = fec::encode(&bytes, &params).unwrap();
            Self { id: SegmentId { sender_id, epoch, sequence }, bytes, params, symbols }
        }

        fn packet(&self, index: usize) -> SymbolPacket<'_> {
            SymbolPacket {
                sender_id: self.id.sender_id,
                epoch: self.id.epoch,
                sequence: self.id.sequence,
                symbol_index: index as u16,
                params: self.params,
                symbol: &self.symbols[index],
            }
        }
    }

    #[test]
    fn a_segment_completes_once_from_originals() {
        let segment = Segment::new(1, 1, 1, 450);
        let mut reassembler = Reassembler::new(limits());
        for index in 0..4 {
            assert!(reassembler.handle_symbol(&segment.packet(index), 0).is_none());
        }
        let done = reassembler.handle_symbol(&segment.packet(4), 0).unwrap();
        assert_eq!(done.bytes, segment.bytes);
        assert!(!done.recovered_by_fec);
        assert_eq!(done.id(), segment.id);
        for index in 0..segment.symbols.len() {
            assert!(reassembler.handle_symbol(&segment.packet(index), 5).is_none());
        }
        let stats = reassembler.stats();
        assert_eq!(stats.segments_completed, 1);
        assert_eq!(stats.symbols_for_completed_segments, segment.symbols.len() as u64);
        assert_eq!(stats.buffered_bytes, 0);
    }

    #[test]
    fn missing_originals_are_rebuilt_from_repairs() {
        let segment = Segment::new(1, 1, 1, 450);
        let mut reassembler = Reassembler::new(limits());
        let total = segment.symbols.len();
        let mut done = None;
        for index in (total - 5)..total {
            done = reassembler.handle_symbol(&segment.packet(index), 0);
        }
        let done = done.unwrap();
        assert!(done.recovered_by_fec);
        assert_eq!(done.bytes, segment.bytes);
        assert_eq!(reassembler.stats().segments_recovered_by_fec, 1);
    }

    #[test]
    fn duplicates_are_counted_and_ignored() {
        let segment = Segment::new(1, 1, 1, 450);
        let mut reassembler = Reassembler::new(limits());
        let _ = reassembler.handle_symbol(&segment.packet(0), 0);
        let _ = reassembler.handle_symbol(&segment.packet(0), 0);
        assert_eq!(reassembler.stats().duplicate_symbols, 1);
        let empty = BlockDecoder::new(segment.params).unwrap().buffered_bytes();
        assert_eq!(reassembler.stats().buffered_bytes, empty + 100 + fec::SYMBOL_OVERHEAD_BYTES);
    }

    #[test]
    fn symbols_disagreeing_with_the_first_are_dropped() {
        let segment = Segment::new(1, 1, 1, 450);
        let other = Segment::new(1, 1, 1, 650);
        let mut reassembler = Reassembler::new(limits());
        let _ = reassembler.handle_symbol(&segment.packet(0), 0);
        assert!(reassembler.handle_symbol(&other.packet(1), 0).is_none());
        assert_eq!(reassembler.stats().inconsistent_parameters, 1);
        let mut done = None;
        for index in 1..5 {
            done = reassembler.handle_symbol(&segment.packet(index), 0);
        }
        assert_eq!(done.unwrap().bytes, segment.bytes);
    }

    #[test]
    fn hand_built_packets_with_bad_fields_are_dropped() {
        let segment = Segment::new(1, 1, 1, 450);
        let mut reassembler = Reassembler::new(limits());
        let mut bad = segment.packet(0);
        bad.symbol_index = 60_000;
        assert!(reassembler.handle_symbol(&bad, 0).is_none());
        let mut bad = segment.packet(0);
        bad.params.original_count = 9;
        assert!(reassembler.handle_symbol(&bad, 0).is_none());
        let mut bad = segment.packet(0);
        bad.symbol = &bad.symbol[..10];
        assert!(reassembler.handle_symbol(&bad, 0).is_none());
        assert_eq!(reassembler.stats().inconsistent_parameters, 3);
        assert_eq!(reassembler.stats().segments_in_flight, 0);
    }

    #[test]
    fn oversized_segments_are_refused() {
        let segment = Segment::new(1, 1, 1, 5_001);
        let mut reassembler = Reassembler::new(limits());
        let _ = reassembler.handle_symbol(&segment.packet(0), 0);
        assert_eq!(reassembler.stats().oversized_segment_symbols, 1);
        assert_eq!(reassembler.stats().segments_in_flight, 0);
    }

    #[test]
    fn symbols_never_move_epochs_and_older_epochs_still_complete() {
        let old = Segment::new(1, 3, 10, 450);
        let new = Segment::new(1, 4, 0, 450);
        let mut reassembler = Reassembler::new(limits());
        let _ = reassembler.handle_symbol(&old.packet(0), 0);
        let _ = reassembler.handle_symbol(&new.packet(0), 1);
        // Symbols alone say nothing about epochs: a MAC is not a signature.
        assert_eq!(reassembler.newest_epoch(1), None);
        reassembler.handle_epoch(1, 4, 1);
        assert_eq!(reassembler.newest_epoch(1), Some(4));
        // Even a forged epoch far ahead, had it been verified, would not stop the old one.
        let forged = Segment::new(1, u64::MAX, 0, 450);
        let _ = reassembler.handle_symbol(&forged.packet(0), 1);
        let mut done = None;
        for index in 1..5 {
            done = reassembler.handle_symbol(&old.packet(index), 2);
        }
        assert_eq!(done.map(|segment| segment.bytes), Some(old.bytes.clone()));
        assert_eq!(reassembler.stats().older_epoch_symbols, 4);
        assert!(drain(&mut reassembler, 2).is_empty());
        // An older verified epoch does not move the newest back.
        reassembler.handle_epoch(1, 2, 3);
        assert_eq!(reassembler.newest_epoch(1), Some(4));
    }

    #[test]
    fn symbols_of_applied_segments_take_no_memory() {
        let applied = Segment::new(1, 3, 10, 450);
        let live = Segment::new(1, 3, 11, 450);
        let mut reassembler = Reassembler::new(limits());
        let mut asked = 0;
        for index in 0..5 {
            let done = reassembler.handle_symbol_unless_applied(&applied.packet(index), 0, |id| {
                asked += 1;
                id == applied.id
            });
            assert!(done.is_none());
        }
        assert_eq!(asked, 5);
        assert_eq!(reassembler.stats().symbols_for_applied_segments, 5);
        assert_eq!(reassembler.stats().segments_in_flight, 0);
        // The set is asked once per new segment, not once per symbol.
        let mut asked = 0;
        let mut done = None;
        for index in 0..5 {
            done = reassembler.handle_symbol_unless_applied(&live.packet(index), 0, |_| {
                asked += 1;
                false
            });
        }
        assert_eq!(asked, 1);
        assert!(done.is_some());
    }

    #[test]
    fn idle_segments_are_abandoned_after_the_timeout() {
        let segment = Segment::new(1, 1, 1, 450);
        let mut reassembler = Reassembler::new(limits());
        let _ = reassembler.handle_symbol(&segment.packet(0), 100);
        let _ = reassembler.handle_symbol(&segment.packet(1), 500);
        assert!(drain(&mut reassembler, 1_499).is_empty());
        assert_eq!(
            drain(&mut reassembler, 1_500),
            vec![Event::Abandoned { sender_id: 1, epoch: 1, sequence: 1, symbols_received: 2, symbols_needed: 5 }]
        );
        assert_eq!(reassembler.stats().segments_abandoned, 1);
        assert_eq!(reassembler.stats().buffered_bytes, 0);
    }

    #[test]
    fn too_many_segments_evict_the_least_recently_active() {
        let segments: Vec<Segment> = (0..6).map(|seq| Segment::new(1, 1, seq, 450)).collect();
        let mut reassembler = Reassembler::new(limits());
        for (time, segment) in segments.iter().enumerate() {
            let _ = reassembler.handle_symbol(&segment.packet(0), time as u64);
        }
        // Here segment 0 is touched again, so segment 1 is the least recently active.
        let mut reassembler2 = Reassembler::new(limits());
        for (time, segment) in segments.iter().enumerate().take(4) {
            let _ = reassembler2.handle_symbol(&segment.packet(0), time as u64);
        }
        let _ = reassembler2.handle_symbol(&segments[0].packet(1), 10);
        let _ = reassembler2.handle_symbol(&segments[4].packet(0), 11);
        let events = drain(&mut reassembler2, 11);
        assert!(matches!(events[..], [Event::Evicted { sequence: 1, .. }]));

        assert_eq!(reassembler.stats().segments_evicted, 2);
        let evicted: Vec<u64> = drain(&mut reassembler, 6)
            .iter()
            .map(|event| match event {
                Event::Evicted { sequence, .. } => *sequence,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(evicted, vec![0, 1]);
    }

    #[test]
    fn the_byte_limit_evicts_others_but_never_the_segment_being_fed() {
        let big = Segment::new(1, 1, 0, 5_000);
        let small: Vec<Segment> = (1..3).map(|seq| Segment::new(1, 1, seq, 2_000)).collect();
        // Room for the big segment while incomplete, and for little else.
        let limit = BlockDecoder::max_incomplete_bytes(&big.params) + 100;
        let mut reassembler = Reassembler::new(ReassemblyLimits { max_buffered_bytes: limit, ..limits() });
        for (time, segment) in small.iter().enumerate() {
            for index in 0..19 {
                let _ = reassembler.handle_symbol(&segment.packet(index), time as u64);
            }
        }
        let per_small = BlockDecoder::max_incomplete_bytes(&small[0].params);
        assert_eq!(reassembler.stats().buffered_bytes, 2 * per_small);
        for index in 0..49 {
            assert!(reassembler.handle_symbol(&big.packet(index), 10).is_none());
            assert!(reassembler.stats().buffered_bytes <= limit);
        }
        assert_eq!(reassembler.stats().segments_evicted, 2);
        let done = reassembler.handle_symbol(&big.packet(49), 11).unwrap();
        assert_eq!(done.bytes, big.bytes);
        assert_eq!(reassembler.stats().buffered_bytes, 0);
    }

    #[test]
    fn a_segment_whose_bookkeeping_cannot_fit_is_refused_not_let_overflow() {
        let big = Segment::new(1, 1, 0, 5_000);
        let limit = BlockDecoder::max_incomplete_bytes(&big.params) - 1;
        let mut reassembler = Reassembler::new(ReassemblyLimits { max_buffered_bytes: limit, ..limits() });
        for index in 0..50 {
            assert!(reassembler.handle_symbol(&big.packet(index), 0).is_none());
        }
        assert_eq!(reassembler.stats().oversized_segment_symbols, 50);
        assert_eq!(reassembler.stats().buffered_bytes, 0);
    }

    #[test]
    fn completed_ids_fall_out_of_memory_and_can_be_yielded_again() {
        let mut reassembler = Reassembler::new(limits());
        let first = Segment::new(1, 1, 0, 100);
        assert!(reassembler.handle_symbol(&first.packet(0), 0).is_some());
        for seq in 1..=8 {
            let segment = Segment::new(1, 1, seq, 100);
            assert!(reassembler.handle_symbol(&segment.packet(0), 0).is_some());
        }
        assert!(!reassembler.was_completed(first.id));
        assert!(reassembler.handle_symbol(&first.packet(1), 0).is_some());
    }

    #[test]
    fn a_forgotten_completion_can_be_reassembled_again() {
        let mut reassembler = Reassembler::new(limits());
        let segment = Segment::new(1, 1, 0, 100);
        assert!(reassembler.handle_symbol(&segment.packet(0), 0).is_some());
        assert!(reassembler.handle_symbol(&segment.packet(0), 0).is_none());
        assert!(reassembler.handle_dropped(segment.id));
        assert!(reassembler.handle_symbol(&segment.packet(0), 0).is_some());
    }

    #[test]
    fn the_quietest_sender_is_forgotten_beyond_max_senders() {
        let mut reassembler = Reassembler::new(limits());
        for sender in 0..5 {
            reassembler.handle_epoch(sender, 7, sender);
        }
        assert_eq!(reassembler.stats().senders_forgotten, 1);
        assert_eq!(reassembler.newest_epoch(0), None);
        assert_eq!(reassembler.newest_epoch(4), Some(7));
    }

    #[test]
    fn invalid_limits_are_explained() {
        let mut bad = limits();
        bad.max_buffered_bytes = 100;
        assert!(matches!(bad.validate(), Err(LimitsError::BufferTooSmall { .. })));
        assert!(ReassemblyLimits::default().validate().is_ok());
    }
}
