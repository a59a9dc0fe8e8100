//! What the link sends next, and when: FEC encoding, interleaving, delayed repair repeats, the
//! carousel and the token-bucket pacer. Pure logic, fed segments and the time, so that the order
//! and the rate of datagrams are tested without sockets.
//!
//! Order of precedence for each datagram slot: repair repeats that are due, then the carousel if
//! its own bucket (a fraction of the link rate) has credit, then live symbols, then the carousel
//! again if the live queue is idle (still within its fraction, so it stays a background trickle).

use std::collections::VecDeque;
use std::sync::Arc;

use diode_common::fec::{self, FecParams};
use diode_common::packet::SymbolPacket;

/// How segments become symbols.
#[derive(Debug, Clone)]
pub struct CodingSettings {
    /// Written into every symbol's header.
    pub sender_id: u64,
    /// Bytes of each symbol: the most a datagram of `link.mtu` carries.
    pub symbol_size: u16,
    /// `link.repair_overhead`: repair symbols per original symbol.
    pub repair_overhead: f64,
    /// `link.min_repair_symbols`: repair symbols every segment gets at least.
    pub min_repair: u16,
    /// Random loss rate every segment, however small, is coded to survive with probability at
    /// least `1 - MAX_BLOCK_LOSS_PROBABILITY` (a floor under `repair_overhead` for small segments).
    pub design_loss_rate: f64,
    /// How many consecutive segments are interleaved symbol by symbol.
    pub interleave_segments: usize,
    /// Send each segment's repair symbols again this long after the first pass; `None`: never.
    pub repeat_repair_after_ns: Option<i64>,
}

/// With random loss at the design rate, at most one segment in a million needs the carousel.
pub const MAX_BLOCK_LOSS_PROBABILITY: f64 = 1e-6;

/// One segment cut into symbols.
#[derive(Debug)]
pub struct EncodedSegment {
    /// The segment's epoch.
    pub epoch: u64,
    /// Its sequence in that epoch.
    pub sequence: u64,
    /// Its FEC block: symbol size, original and repair counts.
    pub params: FecParams,
    /// Original symbols then repair symbols, indexed as on the wire.
    pub symbols: Vec<Vec<u8>>,
}

impl EncodedSegment {
    /// Cuts a sealed segment into symbols, with enough repair symbols for `repair_overhead`,
    /// `min_repair` and the design loss rate, whichever asks most.
    pub fn encode(
        settings: &CodingSettings,
        epoch: u64,
        sequence: u64,
        bytes: &[u8],
    ) -> Result<EncodedSegment, fec::FecError> {
        let originals = fec::original_count_for(bytes.len(), settings.symbol_size)?;
        let floor = fec::repair_floor_for_loss(originals, settings.design_loss_rate, MAX_BLOCK_LOSS_PROBABILITY)?
            .max(settings.min_repair);
        let params = FecParams::for_segment(bytes.len(), settings.symbol_size, settings.repair_overhead, floor)?;
        let symbols = fec::encode(bytes, &params)?;
        Ok(EncodedSegment { epoch, sequence, params, symbols })
    }

    /// Symbol `index` as a packet ready to be written into a datagram.
    pub fn packet(&self, sender_id: u64, index: u16) -> SymbolPacket<'_> {
        SymbolPacket {
            sender_id,
            epoch: self.epoch,
            sequence: self.sequence,
            symbol_index: index,
            params: self.params,
            symbol: &self.symbols[usize::from(index)],
        }
    }
}

/// Why a datagram is sent; counted separately in the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Purpose {
    /// The segment's first pass.
    Live,
    /// Its repair symbols sent again after `link.repeat_repair_after_ms`.
    RepairRepeat,
    /// A carousel pass over a recent segment.
    Carousel,
}

/// The next datagram to send: a symbol of a segment.
#[derive(Debug, Clone)]
pub struct Slot {
    /// The segment the symbol belongs to.
    pub segment: Arc<EncodedSegment>,
    /// The symbol's index in it.
    pub index: u16,
    /// Why it is sent.
    pub purpose: Purpose,
}

/// A token bucket counting bytes on the wire.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate_bytes_per_s: f64,
    burst_bytes: f64,
    tokens: f64,
    last_ns: i64,
}

impl TokenBucket {
    /// A full bucket filling at `rate_bytes_per_s` up to `burst_bytes`; both must be positive.
    pub fn new(rate_bytes_per_s: f64, burst_bytes: f64, now_ns: i64) -> TokenBucket {
        assert!(rate_bytes_per_s > 0.0 && burst_bytes > 0.0);
        TokenBucket { rate_bytes_per_s, burst_bytes, tokens: burst_bytes, last_ns: now_ns }
    }

    fn refill(&mut self, now_ns: i64) {
        if now_ns > self.last_ns {
            let elapsed_s = (now_ns - self.last_ns) as f64 / 1e9;
            self.tokens = (self.tokens + elapsed_s * self.rate_bytes_per_s).min(self.burst_bytes);
            self.last_ns = now_ns;
        }
    }

    /// Nanoseconds to wait before `cost_bytes` may be spent (0: now).
    pub fn wait_ns(&mut self, cost_bytes: usize, now_ns: i64) -> i64 {
        self.refill(now_ns);
        let missing = cost_bytes as f64 - self.tokens;
        if missing <= 0.0 { 0 } else { (missing / self.rate_bytes_per_s * 1e9).ceil() as i64 }
    }

    /// Whether `cost_bytes` may be spent now.
    pub fn has(&mut self, cost_bytes: usize, now_ns: i64) -> bool {
        self.wait_ns(cost_bytes, now_ns) == 0
    }

    /// Spends `cost_bytes`; the balance may go negative, which delays the next spend.
    pub fn spend(&mut self, cost_bytes: usize, now_ns: i64) {
        self.refill(now_ns);
        self.tokens -= cost_bytes as f64;
    }
}

/// A group of segments being interleaved.
#[derive(Debug, Default)]
struct Interleave {
    segments: Vec<Arc<EncodedSegment>>,
    round: usize,
    position: usize,
}

impl Interleave {
    fn next(&mut self) -> Option<(Arc<EncodedSegment>, u16)> {
        let longest = self.segments.iter().map(|s| s.symbols.len()).max().unwrap_or(0);
        while self.round < longest {
            while self.position < self.segments.len() {
                let segment = &self.segments[self.position];
                self.position += 1;
                if self.round < segment.symbols.len() {
                    return Some((Arc::clone(segment), self.round as u16));
                }
            }
            self.position = 0;
            self.round += 1;
        }
        None
    }
}

/// A carousel pass over one segment: every symbol, in order.
#[derive(Debug)]
struct CarouselPass {
    segment: Arc<EncodedSegment>,
    next_index: usize,
}

/// Decides which symbol goes next: due repair repeats first, then the carousel within its share
/// of the rate, then live segments interleaved in groups. Pure: the caller brings the time.
pub struct Scheduler {
    settings: CodingSettings,
    waiting: VecDeque<Arc<EncodedSegment>>,
    current: Interleave,
    repeats: VecDeque<(i64, Arc<EncodedSegment>)>,
    repeat: Option<CarouselPass>,
    carousel: Option<CarouselPass>,
    carousel_bucket: Option<TokenBucket>,
    /// Sequences whose first pass is complete, reported to the caller.
    finished_first_pass: Vec<u64>,
}

impl Scheduler {
    /// `carousel_rate_bytes_per_s`: `None` turns the carousel off.
    pub fn new(settings: CodingSettings, carousel_rate_bytes_per_s: Option<f64>, now_ns: i64) -> Scheduler {
        assert!(settings.interleave_segments >= 1);
        let carousel_bucket = carousel_rate_bytes_per_s
            .filter(|rate| *rate > 0.0)
            .map(|rate| TokenBucket::new(rate, 16.0 * 1500.0, now_ns));
        Scheduler {
            settings,
            waiting: VecDeque::new(),
            current: Interleave::default(),
            repeats: VecDeque::new(),
            repeat: None,
            carousel: None,
            carousel_bucket,
            finished_first_pass: Vec::new(),
        }
    }

    /// The coding settings it was made with.
    pub fn settings(&self) -> &CodingSettings {
        &self.settings
    }

    /// Queues a newly sealed segment for its first pass.
    pub fn push_live(&mut self, segment: Arc<EncodedSegment>) {
        self.waiting.push_back(segment);
    }

    /// Segments waiting for their first pass, including those being sent.
    pub fn live_backlog(&self) -> usize {
        self.waiting.len() + self.current.segments.len()
    }

    /// True when the carousel has no segment in hand and could send one now.
    pub fn wants_carousel_segment(&mut self, now_ns: i64) -> bool {
        self.carousel.is_none() && self.carousel_bucket.as_mut().is_some_and(|bucket| bucket.has(1500, now_ns))
    }

    /// Hands the carousel its next segment, sent whole at the carousel's rate.
    pub fn push_carousel(&mut self, segment: Arc<EncodedSegment>) {
        self.carousel = Some(CarouselPass { segment, next_index: 0 });
    }

    /// Sequences whose first transmission completed since the last call.
    pub fn take_finished(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.finished_first_pass)
    }

    /// Picks the next symbol to send at `now_ns`, or `None` if there is nothing to send now.
    /// `wire_bytes` is the datagram's cost on the wire, used to charge the carousel's bucket.
    pub fn next(&mut self, now_ns: i64, wire_bytes: usize) -> Option<Slot> {
        if let Some(slot) = self.next_repeat(now_ns) {
            return Some(slot);
        }
        let carousel_credit = self.carousel_bucket.as_mut().is_some_and(|bucket| bucket.has(wire_bytes, now_ns));
        if carousel_credit && let Some(slot) = self.next_carousel(now_ns, wire_bytes) {
            return Some(slot);
        }
        if let Some(slot) = self.next_live(now_ns) {
            return Some(slot);
        }
        None
    }

    fn next_live(&mut self, now_ns: i64) -> Option<Slot> {
        loop {
            if let Some((segment, index)) = self.current.next() {
                return Some(Slot { segment, index, purpose: Purpose::Live });
            }
            // The group is done: report it, schedule repeats, and start the next group.
            for segment in self.current.segments.drain(..) {
                self.finished_first_pass.push(segment.sequence);
                if let Some(delay) = self.settings.repeat_repair_after_ns {
                    self.repeats.push_back((now_ns + delay, segment));
                }
            }
            if self.waiting.is_empty() {
                return None;
            }
            let take = self.waiting.len().min(self.settings.interleave_segments);
            self.current = Interleave { segments: self.waiting.drain(..take).collect(), round: 0, position: 0 };
        }
    }

    fn next_repeat(&mut self, now_ns: i64) -> Option<Slot> {
        loop {
            if let Some(pass) = &mut self.repeat {
                let segment = &pass.segment;
                if pass.next_index < segment.symbols.len() {
                    let index = pass.next_index as u16;
                    pass.next_index += 1;
                    return Some(Slot { segment: Arc::clone(segment), index, purpose: Purpose::RepairRepeat });
                }
                self.repeat = None;
            }
            match self.repeats.front() {
                Some((due, _)) if *due <= now_ns => {
                    let (_, segment) = self.repeats.pop_front().expect("front exists");
                    let first_repair = usize::from(segment.params.original_count);
                    self.repeat = Some(CarouselPass { segment, next_index: first_repair });
                }
                _ => return None,
            }
        }
    }

    fn next_carousel(&mut self, now_ns: i64, wire_bytes: usize) -> Option<Slot> {
        let pass = self.carousel.as_mut()?;
        let segment = Arc::clone(&pass.segment);
        let index = pass.next_index as u16;
        pass.next_index += 1;
        if pass.next_index >= segment.symbols.len() {
            self.carousel = None;
        }
        if let Some(bucket) = &mut self.carousel_bucket {
            bucket.spend(wire_bytes, now_ns);
        }
        Some(Slot { segment, index, purpose: Purpose::Carousel })
    }

    /// Time of the next scheduled repeat, so the caller knows how long it may sleep.
    pub fn next_repeat_due_ns(&self) -> Option<i64> {
        self.repeats.front().map(|(due, _)| *due)
    }

    /// Nothing live or repeated left to send (the carousel does not count).
    pub fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.current.segments.is_empty() && self.repeat.is_none() && self.repeats.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(interleave: usize, repeat: Option<i64>) -> CodingSettings {
        CodingSettings {
            sender_id: 1,
            symbol_size: 1000,
            repair_overhead: 0.2,
            min_repair: 1,
            design_loss_rate: 0.0,
            interleave_segments: interleave,
            repeat_repair_after_ns: repeat,
        }
    }

    fn segment(settings: &CodingSettings, sequence: u64, length: usize) -> Arc<EncodedSegment> {
        Arc::new(EncodedSegment::encode(settings, 1, sequence, &vec![sequence as u8; length]).unwrap())
    }

    fn drain(scheduler: &mut Scheduler, now_ns: i64) -> Vec<(u64, u16, Purpose)> {
        std::iter::from_fn(|| scheduler.next(now_ns, 1500))
            .map(|slot| (slot.segment.sequence, slot.index, slot.purpose))
            .collect()
    }

    #[test]
    fn symbols_of_consecutive_segments_are_interleaved() {
        let s = settings(3, None);
        let mut scheduler = Scheduler::new(s.clone(), None, 0);
        for sequence in 1..=3 {
            scheduler.push_live(segment(&s, sequence, 5_000));
        }
        let order = drain(&mut scheduler, 0);
        let sequences: Vec<u64> = order.iter().take(6).map(|(seq, _, _)| *seq).collect();
        assert_eq!(sequences, vec![1, 2, 3, 1, 2, 3]);
        assert_eq!(order.len(), 3 * (5 + 1));
        assert_eq!(scheduler.take_finished(), vec![1, 2, 3]);
    }

    #[test]
    fn every_symbol_is_sent_exactly_once_on_the_first_pass() {
        let s = settings(4, None);
        let mut scheduler = Scheduler::new(s.clone(), None, 0);
        let mut expected = 0;
        for sequence in 1..=10 {
            let seg = segment(&s, sequence, 1 + sequence as usize * 1_700);
            expected += seg.symbols.len();
            scheduler.push_live(seg);
        }
        let mut order = drain(&mut scheduler, 0);
        assert_eq!(order.len(), expected);
        order.sort();
        order.dedup();
        assert_eq!(order.len(), expected);
    }

    #[test]
    fn repair_symbols_are_repeated_only_after_the_delay() {
        let s = settings(1, Some(1_000));
        let mut scheduler = Scheduler::new(s.clone(), None, 0);
        let seg = segment(&s, 1, 10_000);
        let originals = usize::from(seg.params.original_count);
        let repairs = usize::from(seg.params.repair_count);
        scheduler.push_live(seg);
        assert_eq!(drain(&mut scheduler, 0).len(), originals + repairs);
        assert!(drain(&mut scheduler, 999).is_empty());
        let repeats = drain(&mut scheduler, 1_000);
        assert_eq!(repeats.len(), repairs);
        assert!(
            repeats
                .iter()
                .all(|(_, index, purpose)| usize::from(*index) >= originals && *purpose == Purpose::RepairRepeat)
        );
    }

    #[test]
    fn the_carousel_stays_within_its_share_of_the_link() {
        let s = settings(1, None);
        // 15,000 bytes/s for the carousel: ten 1,500-byte datagrams a second.
        let mut scheduler = Scheduler::new(s.clone(), Some(15_000.0), 0);
        let mut carousel_sent = 0;
        let mut now_ns = 0;
        for _ in 0..10_000 {
            if scheduler.wants_carousel_segment(now_ns) {
                scheduler.push_carousel(segment(&s, 1, 50_000));
            }
            if let Some(slot) = scheduler.next(now_ns, 1500)
                && slot.purpose == Purpose::Carousel
            {
                carousel_sent += 1;
            }
            now_ns += 1_000_000; // 10 s in 1 ms steps
        }
        // 10 s at 10 datagrams/s, plus the initial burst allowance of 16.
        assert!((100..=117).contains(&carousel_sent), "{carousel_sent}");
    }

    #[test]
    fn the_token_bucket_paces_to_its_rate() {
        let mut bucket = TokenBucket::new(1_000_000.0, 1500.0, 0);
        let mut now_ns = 0i64;
        for _ in 0..1000 {
            now_ns += bucket.wait_ns(1500, now_ns);
            bucket.spend(1500, now_ns);
        }
        // 1000 datagrams of 1500 bytes at 1 MB/s take 1.5 s, less the first one's burst credit.
        assert!((1_498_000_000..=1_500_000_000).contains(&now_ns), "{now_ns}");
    }
}
