//! Forward error correction: one sealed segment becomes one erasure-coded block.
//!
//! The segment is cut into `original_count` equal symbols (the last one zero-padded) and
//! `repair_count` repair symbols are added with a Reed-Solomon code over GF(2^16)
//! (`reed-solomon-simd`). The code is MDS: *any* `original_count` distinct symbols of the
//! `original_count + repair_count` rebuild the segment exactly, whatever mix of originals and
//! repairs they are. The receiver never asks for anything, so the number of repair symbols is the
//! whole of its defence against loss; [`repair_floor_for_loss`] sizes it for a design loss rate.
//!
//! Everything here is checked against [`FecParams::validate`], because the parameters also arrive
//! from the network: bad values give a [`FecError`], never a panic.

use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};

/// Hard limit on the length of one segment (16 MiB), whatever the configuration says.
pub const MAX_SEGMENT_LENGTH: u32 = 16 * 1024 * 1024;
/// Most original symbols in one block (a limit of the GF(2^16) code as we use it).
pub const MAX_ORIGINAL_COUNT: u16 = 32_768;
/// Most repair symbols in one block.
pub const MAX_REPAIR_COUNT: u16 = 32_768;

/// Errors of the erasure code. Parameters come from the network, so every variant can be caused
/// by outside data and must be handled, not unwrapped.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FecError {
    /// A segment of no bytes was offered, or parameters announce a `segment_length` of 0.
    #[error("segment is empty: a block needs at least one byte")]
    EmptySegment,
    /// The segment is longer than [`MAX_SEGMENT_LENGTH`].
    #[error("segment is {segment_length} bytes; the hard limit is {maximum} bytes")]
    SegmentTooLong {
        /// The segment's length, in bytes.
        segment_length: usize,
        /// [`MAX_SEGMENT_LENGTH`].
        maximum: u32,
    },
    /// The symbol size is odd or below 2: GF(2^16) works on pairs of bytes.
    #[error("symbol size {symbol_size} bytes is invalid: it must be even and at least 2")]
    InvalidSymbolSize {
        /// The symbol size given, in bytes.
        symbol_size: u16,
    },
    /// Cut into symbols of this size, the segment needs more than [`MAX_ORIGINAL_COUNT`]
    /// originals.
    #[error(
        "{original_count} original symbols needed, more than the {maximum} a block can hold: \
         use a larger symbol size or a smaller segment"
    )]
    TooManyOriginalSymbols {
        /// Original symbols the segment needs.
        original_count: usize,
        /// [`MAX_ORIGINAL_COUNT`].
        maximum: u16,
    },
    /// More than [`MAX_REPAIR_COUNT`] repair symbols were asked for (the overhead is too high for
    /// the segment) or announced.
    #[error("{repair_count} repair symbols asked for; at most {maximum} are possible")]
    TooManyRepairSymbols {
        /// Repair symbols asked for.
        repair_count: usize,
        /// [`MAX_REPAIR_COUNT`].
        maximum: u16,
    },
    /// The repair overhead is negative, NaN or infinite.
    #[error("repair overhead {repair_overhead} is invalid: it must be a finite number >= 0")]
    InvalidRepairOverhead {
        /// The overhead given, in repair symbols per original symbol.
        repair_overhead: f64,
    },
    /// The announced `original_count` is not `ceil(segment_length / symbol_size)`: the
    /// parameters contradict each other.
    #[error(
        "original count {original_count} does not fit a {segment_length}-byte segment cut into \
         {symbol_size}-byte symbols (expected {expected})"
    )]
    OriginalCountMismatch {
        /// The announced segment length, in bytes.
        segment_length: u32,
        /// The announced symbol size, in bytes.
        symbol_size: u16,
        /// The announced original count.
        original_count: u16,
        /// The original count the length and symbol size give.
        expected: usize,
    },
    /// [`BlockEncoder::encode`] was given a segment whose length is not the parameters'
    /// `segment_length`.
    #[error("segment is {found} bytes but the parameters say {expected}")]
    SegmentLengthMismatch {
        /// The parameters' `segment_length`.
        expected: u32,
        /// The segment's length, in bytes.
        found: usize,
    },
    /// A symbol's index is not below the block's `original_count + repair_count`.
    #[error("symbol index {index} is outside the block's {total} symbols")]
    SymbolIndexOutOfRange {
        /// The symbol's index.
        index: u16,
        /// Symbols in the block, originals and repairs.
        total: u32,
    },
    /// A symbol is not exactly `symbol_size` bytes.
    #[error("symbol is {found} bytes; this block's symbols are {expected} bytes")]
    WrongSymbolLength {
        /// The block's symbol size, in bytes.
        expected: u16,
        /// The symbol's length, in bytes.
        found: usize,
    },
    /// [`BlockDecoder::finish`] was called before `original_count` distinct symbols had arrived
    /// (check [`BlockDecoder::is_complete`] first), or the decoder failed to restore an original,
    /// which an MDS code rules out.
    #[error("{received} distinct symbols received; {needed} are needed to rebuild the segment")]
    NotEnoughSymbols {
        /// Distinct symbols held.
        received: u32,
        /// The block's `original_count`.
        needed: u16,
    },
    /// A design loss rate outside `[0, 1)`, or NaN.
    #[error("loss rate {loss_rate} is invalid: it must be in [0, 1)")]
    InvalidLossRate {
        /// The rate given: the probability that one symbol is lost.
        loss_rate: f64,
    },
    /// A target block loss probability outside `(0, 1)`, or NaN.
    #[error("target block loss probability {probability} is invalid: it must be in (0, 1)")]
    InvalidTargetProbability {
        /// The probability given.
        probability: f64,
    },
    /// Even [`MAX_REPAIR_COUNT`] repair symbols leave the block's loss probability above the
    /// target: the design loss rate is too high for blocks of this size.
    #[error(
        "no repair count up to {maximum} keeps a block of {original_count} symbols below loss \
         probability {target} at loss rate {loss_rate}: lower the design loss rate"
    )]
    LossTargetUnreachable {
        /// Original symbols in the block.
        original_count: u16,
        /// The design loss rate per symbol.
        loss_rate: f64,
        /// The block loss probability asked for.
        target: f64,
        /// [`MAX_REPAIR_COUNT`].
        maximum: u16,
    },
    /// The Reed-Solomon library refused the block or a symbol. Parameters that pass
    /// [`FecParams::validate`] and symbols that pass the checks here should never cause it; it is
    /// reported rather than unwrapped because the parameters come from the network.
    #[error("Reed-Solomon codec refused the block: {0}")]
    ReedSolomon(#[from] reed_solomon_simd::Error),
}

/// How one segment is coded. Travels in every symbol datagram, so it is validated on arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FecParams {
    /// Exact length of the segment in bytes (the padding of the last symbol is cut off).
    pub segment_length: u32,
    /// Bytes per symbol, even (GF(2^16) works on byte pairs).
    pub symbol_size: u16,
    /// Symbols carrying the segment itself: `ceil(segment_length / symbol_size)`.
    pub original_count: u16,
    /// Extra symbols computed from the originals; any `repair_count` symbols may be lost.
    pub repair_count: u16,
}

impl FecParams {
    /// Parameters for a segment: `repair_count = max(min_repair, ceil(original_count *
    /// repair_overhead))`, the last symbol zero-padded.
    ///
    /// A pure percentage is too little for small blocks: at 5 % loss a 10-symbol block with 2
    /// repairs is lost 2 % of the time. Pass [`repair_floor_for_loss`] as `min_repair` (or use
    /// [`FecParams::for_segment_at_loss`]) to bound the loss probability of every block.
    pub fn for_segment(
        segment_length: usize,
        symbol_size: u16,
        repair_overhead: f64,
        min_repair: u16,
    ) -> Result<FecParams, FecError> {
        let original_count = original_count_for(segment_length, symbol_size)?;
        if !repair_overhead.is_finite() || repair_overhead < 0.0 {
            return Err(FecError::InvalidRepairOverhead { repair_overhead });
        }
        // Compare in f64 first so that a huge overhead cannot wrap when converted.
        let by_overhead = (f64::from(original_count) * repair_overhead).ceil();
        if by_overhead > f64::from(MAX_REPAIR_COUNT) {
            return Err(FecError::TooManyRepairSymbols {
                repair_count: by_overhead as usize,
                maximum: MAX_REPAIR_COUNT,
            });
        }
        let repair_count = (by_overhead as u16).max(min_repair);
        let params = FecParams { segment_length: segment_length as u32, symbol_size, original_count, repair_count };
        params.validate()?;
        Ok(params)
    }

    /// Like [`FecParams::for_segment`], with `min_repair` chosen so that, if every symbol is lost
    /// independently with probability `design_loss_rate`, the block is lost with probability at
    /// most `max_block_loss_probability`. This is the rule the loss simulations use.
    pub fn for_segment_at_loss(
        segment_length: usize,
        symbol_size: u16,
        repair_overhead: f64,
        design_loss_rate: f64,
        max_block_loss_probability: f64,
    ) -> Result<FecParams, FecError> {
        let original_count = original_count_for(segment_length, symbol_size)?;
        let floor = repair_floor_for_loss(original_count, design_loss_rate, max_block_loss_probability)?;
        Self::for_segment(segment_length, symbol_size, repair_overhead, floor)
    }

    /// Checks every relation between the fields. Call it on anything that came from outside.
    pub fn validate(&self) -> Result<(), FecError> {
        if self.segment_length == 0 {
            return Err(FecError::EmptySegment);
        }
        if self.segment_length > MAX_SEGMENT_LENGTH {
            return Err(FecError::SegmentTooLong {
                segment_length: self.segment_length as usize,
                maximum: MAX_SEGMENT_LENGTH,
            });
        }
        check_symbol_size(self.symbol_size)?;
        let expected = (self.segment_length as usize).div_ceil(usize::from(self.symbol_size));
        if usize::from(self.original_count) != expected {
            return Err(FecError::OriginalCountMismatch {
                segment_length: self.segment_length,
                symbol_size: self.symbol_size,
                original_count: self.original_count,
                expected,
            });
        }
        if self.original_count > MAX_ORIGINAL_COUNT {
            return Err(FecError::TooManyOriginalSymbols {
                original_count: usize::from(self.original_count),
                maximum: MAX_ORIGINAL_COUNT,
            });
        }
        if self.repair_count > MAX_REPAIR_COUNT {
            return Err(FecError::TooManyRepairSymbols {
                repair_count: usize::from(self.repair_count),
                maximum: MAX_REPAIR_COUNT,
            });
        }
        // Belt and braces: the limits above are within what the codec supports.
        debug_assert!(
            self.repair_count == 0
                || ReedSolomonEncoder::supports(usize::from(self.original_count), usize::from(self.repair_count))
        );
        Ok(())
    }

    /// Original plus repair symbols (up to 65,536, hence `u32`).
    pub fn total_count(&self) -> u32 {
        u32::from(self.original_count) + u32::from(self.repair_count)
    }

    /// Bytes of the originals including the padding of the last symbol.
    pub fn padded_length(&self) -> usize {
        usize::from(self.original_count) * usize::from(self.symbol_size)
    }

    /// Repair symbols per original symbol actually used.
    pub fn overhead(&self) -> f64 {
        f64::from(self.repair_count) / f64::from(self.original_count.max(1))
    }
}

fn check_symbol_size(symbol_size: u16) -> Result<(), FecError> {
    if symbol_size < 2 || !symbol_size.is_multiple_of(2) {
        return Err(FecError::InvalidSymbolSize { symbol_size });
    }
    Ok(())
}

/// `ceil(segment_length / symbol_size)`, checked against every limit.
pub fn original_count_for(segment_length: usize, symbol_size: u16) -> Result<u16, FecError> {
    if segment_length == 0 {
        return Err(FecError::EmptySegment);
    }
    if segment_length > MAX_SEGMENT_LENGTH as usize {
        return Err(FecError::SegmentTooLong { segment_length, maximum: MAX_SEGMENT_LENGTH });
    }
    check_symbol_size(symbol_size)?;
    let original_count = segment_length.div_ceil(usize::from(symbol_size));
    if original_count > usize::from(MAX_ORIGINAL_COUNT) {
        return Err(FecError::TooManyOriginalSymbols { original_count, maximum: MAX_ORIGINAL_COUNT });
    }
    Ok(original_count as u16)
}

/// Probability that a block of `original_count + repair_count` symbols cannot be rebuilt when
/// each symbol is lost independently with probability `loss_rate`: P(Binomial(n, p) > repair).
///
/// Costs O(n) logarithms; n is at most 65,536.
pub fn block_loss_probability(original_count: u16, repair_count: u16, loss_rate: f64) -> f64 {
    let n = u32::from(original_count) + u32::from(repair_count);
    let repair = u32::from(repair_count);
    if original_count == 0 || loss_rate.is_nan() || loss_rate <= 0.0 {
        return 0.0;
    }
    if loss_rate >= 1.0 {
        return 1.0;
    }
    let ln_p = loss_rate.ln();
    let ln_q = (-loss_rate).ln_1p();
    // ln C(n, i), built incrementally: ln C(n, i+1) = ln C(n, i) + ln(n - i) - ln(i + 1).
    let mut ln_binomial = 0.0_f64;
    let mut tail = 0.0_f64;
    for i in 0..=n {
        if i > repair {
            let ln_term = ln_binomial + f64::from(i) * ln_p + f64::from(n - i) * ln_q;
            tail += ln_term.exp();
        }
        if i < n {
            ln_binomial += f64::from(n - i).ln() - f64::from(i + 1).ln();
        }
    }
    tail.clamp(0.0, 1.0)
}

/// Smallest repair count that keeps a block of `original_count` symbols below
/// `max_block_loss_probability` at an independent per-symbol `design_loss_rate`.
///
/// The loss probability falls strictly as repair symbols are added, so a binary search finds it.
pub fn repair_floor_for_loss(
    original_count: u16,
    design_loss_rate: f64,
    max_block_loss_probability: f64,
) -> Result<u16, FecError> {
    if !(0.0..1.0).contains(&design_loss_rate) {
        return Err(FecError::InvalidLossRate { loss_rate: design_loss_rate });
    }
    if !(max_block_loss_probability > 0.0 && max_block_loss_probability < 1.0) {
        return Err(FecError::InvalidTargetProbability { probability: max_block_loss_probability });
    }
    let meets =
        |repair: u16| block_loss_probability(original_count, repair, design_loss_rate) <= max_block_loss_probability;
    // Each probe costs a logarithm and an exponential per symbol of the block, so the search
    // brackets the floor by doubling from one repair symbol (floors are a few dozen) instead of
    // starting from a block of `MAX_REPAIR_COUNT` repairs: the sender sizes every segment it
    // sends this way, and probing from the top was over half of its link thread's CPU in the
    // throughput harness (0.29-0.37 against 0.13-0.14 CPU-s for 10 M points).
    if meets(0) {
        return Ok(0);
    }
    let mut high = 1_u16;
    while !meets(high) {
        if high == MAX_REPAIR_COUNT {
            return Err(FecError::LossTargetUnreachable {
                original_count,
                loss_rate: design_loss_rate,
                target: max_block_loss_probability,
                maximum: MAX_REPAIR_COUNT,
            });
        }
        high = high.saturating_mul(2).min(MAX_REPAIR_COUNT);
    }
    // The floor is in (high / 2, high]: high / 2 was probed and did not meet the target.
    let mut low = high / 2 + 1;
    while low < high {
        let middle = low + (high - low) / 2;
        if meets(middle) {
            high = middle;
        } else {
            low = middle + 1;
        }
    }
    Ok(low)
}

/// Encodes one segment: returns the `original_count` original symbols followed by the
/// `repair_count` repair symbols, in index order, each `symbol_size` bytes.
///
/// Simple, and copies every symbol; a sender encoding segment after segment should keep a
/// [`BlockEncoder`], which copies nothing but the padded last symbol and reuses its memory.
pub fn encode(segment: &[u8], params: &FecParams) -> Result<Vec<Vec<u8>>, FecError> {
    let mut encoder = BlockEncoder::new();
    let block = encoder.encode(segment, params)?;
    let symbols: Vec<Vec<u8>> = block.symbols().map(<[u8]>::to_vec).collect();
    assert_eq!(symbols.len(), params.total_count() as usize);
    Ok(symbols)
}

/// A reusable encoder: keeps the Reed-Solomon working memory from one segment to the next.
#[derive(Default)]
pub struct BlockEncoder {
    codec: Option<ReedSolomonEncoder>,
}

impl std::fmt::Debug for BlockEncoder {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("BlockEncoder").finish_non_exhaustive()
    }
}

impl BlockEncoder {
    /// An encoder without working memory: the first [`encode`](Self::encode) allocates it for
    /// that block's shape, and later calls reuse it.
    pub fn new() -> Self {
        Self::default()
    }

    /// Encodes one segment. The originals are lent straight out of `segment`; only the padded
    /// last symbol is copied, and the repairs live in this encoder until the next call.
    pub fn encode<'a>(&'a mut self, segment: &'a [u8], params: &FecParams) -> Result<EncodedBlock<'a>, FecError> {
        params.validate()?;
        if segment.len() != params.segment_length as usize {
            return Err(FecError::SegmentLengthMismatch { expected: params.segment_length, found: segment.len() });
        }
        let symbol_size = usize::from(params.symbol_size);
        let original_count = usize::from(params.original_count);
        let full_length = (original_count - 1) * symbol_size;
        let mut last_original = segment[full_length..].to_vec();
        debug_assert!(!last_original.is_empty() && last_original.len() <= symbol_size);
        last_original.resize(symbol_size, 0);
        if params.repair_count == 0 {
            return Ok(EncodedBlock { params: *params, segment, last_original, repairs: None });
        }
        let repair_count = usize::from(params.repair_count);
        match &mut self.codec {
            Some(codec) => codec.reset(original_count, repair_count, symbol_size)?,
            None => self.codec = Some(ReedSolomonEncoder::new(original_count, repair_count, symbol_size)?),
        }
        let codec = self.codec.as_mut().expect("the codec was set just above");
        for symbol in segment[..full_length].chunks_exact(symbol_size) {
            codec.add_original_shard(symbol)?;
        }
        codec.add_original_shard(&last_original)?;
        let repairs = codec.encode()?;
        Ok(EncodedBlock { params: *params, segment, last_original, repairs: Some(repairs) })
    }
}

/// The symbols of one encoded segment, borrowed from the segment and the [`BlockEncoder`].
pub struct EncodedBlock<'a> {
    params: FecParams,
    segment: &'a [u8],
    last_original: Vec<u8>,
    repairs: Option<reed_solomon_simd::EncoderResult<'a>>,
}

impl std::fmt::Debug for EncodedBlock<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("EncodedBlock").field("params", &self.params).finish_non_exhaustive()
    }
}

impl EncodedBlock<'_> {
    /// The parameters the block was encoded with: what every symbol datagram of it carries.
    pub fn params(&self) -> &FecParams {
        &self.params
    }

    /// Symbol `index` (originals first, then repairs), or `None` past the end.
    pub fn symbol(&self, index: u16) -> Option<&[u8]> {
        let index = usize::from(index);
        let original_count = usize::from(self.params.original_count);
        let symbol_size = usize::from(self.params.symbol_size);
        if index + 1 < original_count {
            Some(&self.segment[index * symbol_size..(index + 1) * symbol_size])
        } else if index + 1 == original_count {
            Some(&self.last_original)
        } else {
            self.repairs.as_ref()?.recovery(index - original_count)
        }
    }

    /// All symbols in index order.
    pub fn symbols(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.params.total_count())
            .map(|index| self.symbol(index as u16).expect("every index below total_count has a symbol"))
    }
}

/// A sending order for the symbols of several blocks that spreads each block evenly over the
/// whole group: symbol `i` of a block of `n` symbols is sent at fraction `(i + ½) / n` of the
/// group's span. A burst of B consecutive lost datagrams out of a group of N then costs every
/// block about `B × n / N` symbols, the same share of each, instead of wiping out one block.
///
/// Returns `(block position in symbol_counts, symbol index)` pairs; ties keep block order.
pub fn interleave(symbol_counts: &[u32]) -> Vec<(usize, u32)> {
    let total: usize = symbol_counts.iter().map(|&count| count as usize).sum();
    let mut order: Vec<(usize, u32)> = Vec::with_capacity(total);
    for (block, &count) in symbol_counts.iter().enumerate() {
        order.extend((0..count).map(|index| (block, index)));
    }
    // Compare (2a + 1) / 2n_a with (2b + 1) / 2n_b exactly, by cross-multiplying.
    order.sort_by(|&(block_a, a), &(block_b, b)| {
        let left = (2 * u64::from(a) + 1) * u64::from(symbol_counts[block_b]);
        let right = (2 * u64::from(b) + 1) * u64::from(symbol_counts[block_a]);
        left.cmp(&right).then(block_a.cmp(&block_b))
    });
    order
}

/// What [`BlockDecoder::add_symbol`] did with a symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymbolOutcome {
    /// New symbol, kept.
    Stored,
    /// This index was already received; ignored.
    Duplicate,
    /// The block already has enough symbols; ignored, not kept.
    AlreadyComplete,
}

/// Bytes a stored symbol costs beyond its data: its `(index, Vec)` slot and the allocator's
/// header for the copy. Counted so that a memory budget holds for small symbols too.
pub const SYMBOL_OVERHEAD_BYTES: usize = std::mem::size_of::<(u16, Vec<u8>)>() + 16;

/// Collects the symbols of one block, in any order, and rebuilds the segment.
///
/// Memory grows with the symbols received (at most `original_count` of them are kept), not with
/// what the parameters announce.
#[derive(Debug)]
pub struct BlockDecoder {
    params: FecParams,
    /// One bit per symbol index: received or not.
    received: Vec<u64>,
    originals: Vec<(u16, Vec<u8>)>,
    repairs: Vec<(u16, Vec<u8>)>,
    buffered_bytes: usize,
}

impl BlockDecoder {
    /// A decoder for one block, once `params` pass [`FecParams::validate`] (they come from the
    /// network). Allocates only the bitmap of received indices, one bit per symbol; symbols take
    /// memory as they arrive.
    pub fn new(params: FecParams) -> Result<Self, FecError> {
        params.validate()?;
        Ok(Self {
            params,
            received: vec![0; (params.total_count() as usize).div_ceil(64)],
            originals: Vec::new(),
            repairs: Vec::new(),
            buffered_bytes: Self::fixed_bytes(&params),
        })
    }

    /// What a decoder costs before any symbol: itself and its bitmap of received indices.
    fn fixed_bytes(params: &FecParams) -> usize {
        std::mem::size_of::<Self>() + (params.total_count() as usize).div_ceil(64) * 8
    }

    /// The most memory a decoder for `params` can hold while incomplete (`original_count - 1`
    /// symbols): a caller with a memory budget refuses blocks that could not fit.
    pub fn max_incomplete_bytes(params: &FecParams) -> usize {
        Self::fixed_bytes(params)
            + usize::from(params.original_count.saturating_sub(1))
                * (usize::from(params.symbol_size) + SYMBOL_OVERHEAD_BYTES)
    }

    /// The parameters this decoder was made with: every later symbol of the segment must carry
    /// the same.
    pub fn params(&self) -> &FecParams {
        &self.params
    }

    /// Checks a symbol without storing it; `Ok(true)` if its index was already received.
    pub fn check_symbol(&self, index: u16, symbol: &[u8]) -> Result<bool, FecError> {
        let total = self.params.total_count();
        if u32::from(index) >= total {
            return Err(FecError::SymbolIndexOutOfRange { index, total });
        }
        if symbol.len() != usize::from(self.params.symbol_size) {
            return Err(FecError::WrongSymbolLength { expected: self.params.symbol_size, found: symbol.len() });
        }
        Ok(self.has_symbol(index))
    }

    fn has_symbol(&self, index: u16) -> bool {
        let index = usize::from(index);
        self.received[index / 64] & (1 << (index % 64)) != 0
    }

    /// Feeds one symbol. Duplicates and symbols beyond what is needed are ignored.
    pub fn add_symbol(&mut self, index: u16, symbol: &[u8]) -> Result<SymbolOutcome, FecError> {
        if self.check_symbol(index, symbol)? {
            return Ok(SymbolOutcome::Duplicate);
        }
        if self.is_complete() {
            return Ok(SymbolOutcome::AlreadyComplete);
        }
        let slot = usize::from(index);
        self.received[slot / 64] |= 1 << (slot % 64);
        if index < self.params.original_count {
            self.originals.push((index, symbol.to_vec()));
        } else {
            self.repairs.push((index - self.params.original_count, symbol.to_vec()));
        }
        self.buffered_bytes += symbol.len() + SYMBOL_OVERHEAD_BYTES;
        debug_assert!(self.received_count() <= u32::from(self.params.original_count));
        Ok(SymbolOutcome::Stored)
    }

    /// Distinct symbols kept so far.
    pub fn received_count(&self) -> u32 {
        (self.originals.len() + self.repairs.len()) as u32
    }

    /// Distinct original symbols kept so far.
    pub fn original_received_count(&self) -> u32 {
        self.originals.len() as u32
    }

    /// Memory held: symbol data, each symbol's bookkeeping ([`SYMBOL_OVERHEAD_BYTES`]) and the
    /// decoder itself.
    pub fn buffered_bytes(&self) -> usize {
        self.buffered_bytes
    }

    /// True once `original_count` distinct symbols have arrived: [`BlockDecoder::finish`] will
    /// succeed.
    pub fn is_complete(&self) -> bool {
        self.received_count() >= u32::from(self.params.original_count)
    }

    /// True if rebuilding needs the Reed-Solomon decoder (some original symbol is missing).
    pub fn needs_repair(&self) -> bool {
        self.original_received_count() < u32::from(self.params.original_count)
    }

    /// Rebuilds the segment: exactly `segment_length` bytes. Without a missing original this is a
    /// plain concatenation; otherwise the missing originals are decoded from the repairs.
    pub fn finish(self) -> Result<Vec<u8>, FecError> {
        self.finish_with(&mut RepairWorkspace::new())
    }

    /// [`finish`](Self::finish) with the Reed-Solomon working memory of earlier blocks: a caller
    /// that rebuilds block after block (the receiver at any loss) keeps one workspace.
    pub fn finish_with(self, workspace: &mut RepairWorkspace) -> Result<Vec<u8>, FecError> {
        let rebuilt = self.rebuild(workspace);
        workspace.release_if_large();
        rebuilt
    }

    fn rebuild(mut self, workspace: &mut RepairWorkspace) -> Result<Vec<u8>, FecError> {
        if !self.is_complete() {
            return Err(FecError::NotEnoughSymbols {
                received: self.received_count(),
                needed: self.params.original_count,
            });
        }
        let original_count = usize::from(self.params.original_count);
        let symbol_size = usize::from(self.params.symbol_size);
        self.originals.sort_unstable_by_key(|(index, _)| *index);
        let mut segment = Vec::with_capacity(self.params.padded_length());
        if self.originals.len() == original_count {
            for (position, (index, symbol)) in self.originals.iter().enumerate() {
                debug_assert_eq!(usize::from(*index), position);
                segment.extend_from_slice(symbol);
            }
        } else {
            let decoder = workspace.decoder(original_count, usize::from(self.params.repair_count), symbol_size)?;
            for (index, symbol) in &self.originals {
                decoder.add_original_shard(usize::from(*index), symbol)?;
            }
            for (index, symbol) in &self.repairs {
                decoder.add_recovery_shard(usize::from(*index), symbol)?;
            }
            let restored = decoder.decode()?;
            let mut received = self.originals.iter().peekable();
            for position in 0..original_count {
                match received.peek() {
                    Some((index, symbol)) if usize::from(*index) == position => {
                        segment.extend_from_slice(symbol);
                        received.next();
                    }
                    _ => {
                        let symbol = restored.restored_original(position).ok_or(FecError::NotEnoughSymbols {
                            received: self.received_count(),
                            needed: self.params.original_count,
                        })?;
                        segment.extend_from_slice(symbol);
                    }
                }
            }
        }
        assert_eq!(segment.len(), self.params.padded_length());
        segment.truncate(self.params.segment_length as usize);
        Ok(segment)
    }
}

/// The Reed-Solomon decoder's working memory, kept from one repaired block to the next: making a
/// decoder allocates and clears its work space each time (about 0.2–0.3 ms for the harness's
/// 170-symbol segments, as long as rebuilding one). A workspace grown for a block larger than
/// [`RepairWorkspace::KEPT_BYTES`] is let go after it, so one rare large segment does not hold
/// its memory for good.
#[derive(Default)]
pub struct RepairWorkspace {
    decoder: Option<ReedSolomonDecoder>,
    /// Symbol bytes (originals and repairs) of the block the decoder was last shaped for.
    shaped_for_bytes: usize,
}

impl std::fmt::Debug for RepairWorkspace {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("RepairWorkspace").field("shaped_for_bytes", &self.shaped_for_bytes).finish()
    }
}

impl RepairWorkspace {
    /// Largest block (original and repair symbol bytes) whose working memory is kept.
    pub const KEPT_BYTES: usize = 4 * 1024 * 1024;

    /// An empty workspace: the first repaired block allocates.
    pub fn new() -> Self {
        Self::default()
    }

    fn decoder(
        &mut self,
        original_count: usize,
        repair_count: usize,
        symbol_size: usize,
    ) -> Result<&mut ReedSolomonDecoder, FecError> {
        match &mut self.decoder {
            Some(decoder) => decoder.reset(original_count, repair_count, symbol_size)?,
            None => self.decoder = Some(ReedSolomonDecoder::new(original_count, repair_count, symbol_size)?),
        }
        self.shaped_for_bytes = (original_count + repair_count) * symbol_size;
        Ok(self.decoder.as_mut().expect("the decoder was set just above"))
    }

    fn release_if_large(&mut self) {
        if self.shaped_for_bytes > Self::KEPT_BYTES {
            self.decoder = None;
            self.shaped_for_bytes = 0;
        }
    }
}

/// Builds the Reed-Solomon code's tables now rather than at the first repaired block: they are
/// built once per process (about 13 ms here, more under load), and a receive thread building them
/// when the first segment needs repair stops reading its socket meanwhile.
pub fn warm_up() {
    // Any decoder builds every table its engine uses; its own memory is tiny for one symbol.
    let _ = ReedSolomonDecoder::new(1, 1, 2);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SeededRng;
    use proptest::prelude::*;

    fn random_bytes(rng: &mut SeededRng, length: usize) -> Vec<u8> {
        (0..length).map(|_| rng.next_u64() as u8).collect()
    }

    #[test]
    fn repair_count_is_the_larger_of_the_overhead_and_the_floor() {
        let params = FecParams::for_segment(10_000, 1000, 0.15, 2).unwrap();
        assert_eq!((params.original_count, params.repair_count), (10, 2));
        let params = FecParams::for_segment(100_000, 1000, 0.15, 2).unwrap();
        assert_eq!((params.original_count, params.repair_count), (100, 15));
        let params = FecParams::for_segment(1, 1000, 0.15, 3).unwrap();
        assert_eq!((params.original_count, params.repair_count), (1, 3));
    }

    #[test]
    fn bad_parameters_are_errors_not_panics() {
        assert_eq!(FecParams::for_segment(0, 1000, 0.1, 1), Err(FecError::EmptySegment));
        assert!(matches!(FecParams::for_segment(100, 999, 0.1, 1), Err(FecError::InvalidSymbolSize { .. })));
        assert!(matches!(FecParams::for_segment(100, 0, 0.1, 1), Err(FecError::InvalidSymbolSize { .. })));
        assert!(matches!(
            FecParams::for_segment(MAX_SEGMENT_LENGTH as usize + 1, 1000, 0.1, 1),
            Err(FecError::SegmentTooLong { .. })
        ));
        assert!(matches!(
            FecParams::for_segment(MAX_SEGMENT_LENGTH as usize, 2, 0.1, 1),
            Err(FecError::TooManyOriginalSymbols { .. })
        ));
        assert!(matches!(
            FecParams::for_segment(100_000, 1000, f64::NAN, 1),
            Err(FecError::InvalidRepairOverhead { .. })
        ));
        assert!(matches!(FecParams::for_segment(100_000, 1000, 1e300, 1), Err(FecError::TooManyRepairSymbols { .. })));
        let wrong_count = FecParams { segment_length: 100, symbol_size: 10, original_count: 11, repair_count: 1 };
        assert!(matches!(wrong_count.validate(), Err(FecError::OriginalCountMismatch { expected: 10, .. })));
        let too_much_repair =
            FecParams { repair_count: MAX_REPAIR_COUNT + 1, ..FecParams::for_segment(100, 10, 0.0, 0).unwrap() };
        assert!(matches!(too_much_repair.validate(), Err(FecError::TooManyRepairSymbols { .. })));
    }

    #[test]
    fn a_16_mib_segment_fits_with_512_byte_symbols_and_full_repair() {
        let params = FecParams::for_segment(MAX_SEGMENT_LENGTH as usize, 512, 1.0, 0).unwrap();
        assert_eq!(params.original_count, MAX_ORIGINAL_COUNT);
        assert_eq!(params.repair_count, MAX_REPAIR_COUNT);
        assert!(BlockDecoder::new(params).is_ok());
    }

    #[test]
    fn all_originals_rebuild_without_the_reed_solomon_decoder() {
        let mut rng = SeededRng::new(3);
        let segment = random_bytes(&mut rng, 5_001);
        let params = FecParams::for_segment(segment.len(), 100, 0.2, 2).unwrap();
        let symbols = encode(&segment, &params).unwrap();
        let mut decoder = BlockDecoder::new(params).unwrap();
        for (index, symbol) in symbols.iter().enumerate().take(51).rev() {
            assert_eq!(decoder.add_symbol(index as u16, symbol), Ok(SymbolOutcome::Stored));
        }
        assert!(decoder.is_complete() && !decoder.needs_repair());
        assert_eq!(decoder.finish().unwrap(), segment);
    }

    #[test]
    fn duplicates_and_surplus_symbols_are_ignored() {
        let segment = vec![7_u8; 1000];
        let params = FecParams::for_segment(segment.len(), 100, 0.5, 0).unwrap();
        let symbols = encode(&segment, &params).unwrap();
        let mut decoder = BlockDecoder::new(params).unwrap();
        assert_eq!(decoder.add_symbol(12, &symbols[12]), Ok(SymbolOutcome::Stored));
        assert_eq!(decoder.add_symbol(12, &symbols[12]), Ok(SymbolOutcome::Duplicate));
        for index in 0..9 {
            decoder.add_symbol(index, &symbols[usize::from(index)]).unwrap();
        }
        assert!(decoder.is_complete());
        assert_eq!(decoder.add_symbol(9, &symbols[9]), Ok(SymbolOutcome::AlreadyComplete));
        assert_eq!(decoder.received_count(), 10);
        assert_eq!(decoder.finish().unwrap(), segment);
    }

    #[test]
    fn finishing_too_early_is_an_error() {
        let params = FecParams::for_segment(1000, 100, 0.5, 0).unwrap();
        let decoder = BlockDecoder::new(params).unwrap();
        assert_eq!(decoder.finish(), Err(FecError::NotEnoughSymbols { received: 0, needed: 10 }));
    }

    #[test]
    fn out_of_range_or_wrongly_sized_symbols_are_rejected() {
        let params = FecParams::for_segment(1000, 100, 0.5, 0).unwrap();
        let mut decoder = BlockDecoder::new(params).unwrap();
        assert!(matches!(decoder.add_symbol(15, &[0; 100]), Err(FecError::SymbolIndexOutOfRange { .. })));
        assert!(matches!(decoder.add_symbol(3, &[0; 99]), Err(FecError::WrongSymbolLength { .. })));
        assert_eq!(decoder.received_count(), 0);
    }

    #[test]
    fn zero_repair_blocks_are_allowed_and_need_every_original() {
        let segment = vec![1_u8, 2, 3];
        let params = FecParams::for_segment(3, 2, 0.0, 0).unwrap();
        let symbols = encode(&segment, &params).unwrap();
        assert_eq!(symbols, vec![vec![1, 2], vec![3, 0]]);
        let mut decoder = BlockDecoder::new(params).unwrap();
        decoder.add_symbol(1, &symbols[1]).unwrap();
        decoder.add_symbol(0, &symbols[0]).unwrap();
        assert_eq!(decoder.finish().unwrap(), segment);
    }

    #[test]
    fn block_loss_probability_matches_hand_computed_values() {
        // One original, one repair, p = 0.2: lost only if both are lost.
        assert!((block_loss_probability(1, 1, 0.2) - 0.04).abs() < 1e-12);
        // Ten originals, two repairs, p = 0.05: 1 - P(X <= 2), X ~ Bin(12, 0.05).
        let expected = 1.0 - (0.95_f64.powi(12) + 12.0 * 0.05 * 0.95_f64.powi(11) + 66.0 * 0.0025 * 0.95_f64.powi(10));
        assert!((block_loss_probability(10, 2, 0.05) - expected).abs() < 1e-12);
        assert_eq!(block_loss_probability(10, 2, 0.0), 0.0);
        assert_eq!(block_loss_probability(10, 2, 1.0), 1.0);
    }

    #[test]
    fn the_repair_floor_is_the_smallest_count_meeting_the_target() {
        for original_count in [1_u16, 2, 10, 50, 188, 752] {
            let floor = repair_floor_for_loss(original_count, 0.2, 1e-6).unwrap();
            assert!(block_loss_probability(original_count, floor, 0.2) <= 1e-6);
            assert!(block_loss_probability(original_count, floor - 1, 0.2) > 1e-6);
        }
        assert_eq!(repair_floor_for_loss(5, 0.0, 1e-6), Ok(0));
        assert!(repair_floor_for_loss(5, 1.0, 1e-6).is_err());
        assert!(repair_floor_for_loss(5, 0.1, 0.0).is_err());
        assert!(matches!(repair_floor_for_loss(30_000, 0.6, 1e-6), Err(FecError::LossTargetUnreachable { .. })));
    }

    #[test]
    fn the_bracketed_search_finds_the_floor_a_scan_from_zero_finds() {
        for loss_rate in [0.01, 0.05, 0.2] {
            for original_count in (1_u16..=64).chain([100, 255, 256, 257, 730, 1_000]) {
                let scanned = (0..=MAX_REPAIR_COUNT)
                    .find(|&repair| block_loss_probability(original_count, repair, loss_rate) <= 1e-6)
                    .unwrap();
                assert_eq!(
                    repair_floor_for_loss(original_count, loss_rate, 1e-6),
                    Ok(scanned),
                    "{original_count} originals at {loss_rate} loss"
                );
            }
        }
    }

    #[test]
    fn a_reused_block_encoder_gives_the_same_symbols_as_a_fresh_one() {
        let mut rng = SeededRng::new(11);
        let mut encoder = BlockEncoder::new();
        for (length, symbol_size, overhead) in [(10_000, 100, 0.2), (333, 64, 1.0), (5, 2, 0.0), (70_000, 1394, 0.15)] {
            let segment = random_bytes(&mut rng, length);
            let params = FecParams::for_segment(length, symbol_size, overhead, 0).unwrap();
            let block = encoder.encode(&segment, &params).unwrap();
            let reused: Vec<Vec<u8>> = block.symbols().map(<[u8]>::to_vec).collect();
            assert_eq!(reused, encode(&segment, &params).unwrap());
            assert_eq!(block.symbol(params.total_count() as u16), None);
        }
        let params = FecParams::for_segment(100, 10, 0.5, 0).unwrap();
        assert!(matches!(encoder.encode(&[0; 99], &params), Err(FecError::SegmentLengthMismatch { .. })));
    }

    /// One workspace rebuilds block after block of changing shapes (a larger one than it keeps
    /// among them) exactly as fresh decoders do, dropping a different seeded choice of symbols each
    /// time.
    #[test]
    fn a_reused_repair_workspace_rebuilds_what_fresh_decoders_do() {
        let mut rng = SeededRng::new(12);
        let mut workspace = RepairWorkspace::new();
        let shapes = [
            (10_000, 100, 0.2),
            (333, 64, 1.0),
            (70_000, 1394, 0.15),
            (RepairWorkspace::KEPT_BYTES + 1, 1400, 0.2),
            (240_000, 1400, 0.2),
            (10_000, 100, 0.2),
        ];
        for (length, symbol_size, overhead) in shapes {
            let segment = random_bytes(&mut rng, length);
            let params = FecParams::for_segment(length, symbol_size, overhead, 0).unwrap();
            let symbols = encode(&segment, &params).unwrap();
            let mut kept: Vec<u16> = (0..params.total_count() as u16).collect();
            // Lose as many originals as there are repairs, at seeded places.
            for _ in 0..params.repair_count {
                let lost = (rng.next_u64() % u64::from(params.original_count)) as u16;
                kept.retain(|&index| index != lost);
            }
            let decoder = |workspace: Option<&mut RepairWorkspace>| {
                let mut decoder = BlockDecoder::new(params).unwrap();
                for &index in &kept {
                    decoder.add_symbol(index, &symbols[usize::from(index)]).unwrap();
                }
                match workspace {
                    Some(workspace) => decoder.finish_with(workspace).unwrap(),
                    None => decoder.finish().unwrap(),
                }
            };
            let reused = decoder(Some(&mut workspace));
            assert_eq!(reused, segment, "{length} bytes");
            assert_eq!(reused, decoder(None));
            let kept_memory = workspace.decoder.is_some();
            let block_bytes = params.total_count() as usize * usize::from(symbol_size);
            assert_eq!(kept_memory, block_bytes <= RepairWorkspace::KEPT_BYTES);
        }
    }

    #[test]
    fn interleaving_spreads_every_block_over_the_whole_group() {
        let order = interleave(&[2, 4, 1]);
        assert_eq!(order, vec![(1, 0), (0, 0), (1, 1), (2, 0), (1, 2), (0, 1), (1, 3)]);
        // Every symbol exactly once, and each block's symbols in index order.
        let counts = [100_u32, 7, 1, 55, 3];
        let order = interleave(&counts);
        assert_eq!(order.len(), 166);
        for (block, &count) in counts.iter().enumerate() {
            let indices: Vec<u32> = order.iter().filter(|(b, _)| *b == block).map(|(_, index)| *index).collect();
            assert_eq!(indices, (0..count).collect::<Vec<_>>());
        }
        assert!(interleave(&[]).is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_original_count_distinct_symbols_rebuild_the_segment(
            seed in any::<u64>(),
            segment_length in 1_usize..20_000,
            symbol_half in 1_u16..600,
            repair_overhead in 0.0_f64..1.5,
            min_repair in 0_u16..8,
            duplicate_every in 1_usize..5,
        ) {
            let mut rng = SeededRng::new(seed);
            let segment = random_bytes(&mut rng, segment_length);
            let symbol_size = symbol_half * 2;
            let params = match FecParams::for_segment(
                segment_length, symbol_size, repair_overhead, min_repair) {
                Ok(params) => params,
                Err(FecError::TooManyOriginalSymbols { .. }) => return Ok(()),
                Err(error) => panic!("unexpected {error}"),
            };
            let symbols = encode(&segment, &params).unwrap();
            prop_assert_eq!(symbols.len(), params.total_count() as usize);
            // A random subset of exactly original_count distinct indices, in random order,
            // with some duplicates mixed in.
            let mut indices: Vec<usize> = (0..symbols.len()).collect();
            rng.shuffle(&mut indices);
            indices.truncate(usize::from(params.original_count));
            let mut decoder = BlockDecoder::new(params).unwrap();
            for (position, &index) in indices.iter().enumerate() {
                prop_assert!(!decoder.is_complete());
                decoder.add_symbol(index as u16, &symbols[index]).unwrap();
                if position % duplicate_every == 0 {
                    prop_assert_eq!(
                        decoder.add_symbol(index as u16, &symbols[index]).unwrap(),
                        SymbolOutcome::Duplicate
                    );
                }
            }
            prop_assert!(decoder.is_complete());
            let rebuilt = decoder.finish().unwrap();
            prop_assert_eq!(rebuilt, segment);
        }
    }
}
