//! Grouping records by series: all at once ([`group_records`]), or record by record as a source
//! produces them ([`Grouper`]), which gives the same groups without the source building a
//! [`Record`] (and a clone of its series key) for each value.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::record::{Quality, Record, SeriesKey, Value};

use super::SeriesColumns;

/// Groups records by series, in order of each series' first appearance. Within a series the input
/// order is kept: late, out-of-order and duplicate timestamps are normal and round-trip as they are.
pub fn group_records(records: &[Record]) -> Vec<SeriesColumns> {
    // As many series as the thread's last call found (a source's frames mostly hold the same
    // series), at most one per record: the maps and the groups start at that size instead of
    // growing from empty (rehashing was a sixth of grouping a 5,000-series frame).
    let expected_series = LAST_GROUP_COUNT.get().min(records.len());
    // foldhash rather than SipHash: hashing each record's key was a tenth of the sender's CPU.
    let mut index_of: foldhash::HashMap<&SeriesKey, usize> =
        foldhash::HashMap::with_capacity_and_hasher(expected_series, Default::default());
    // Records of one series usually share its key's text (sources clone one key), so most are
    // found by the key's identity, two words, without hashing or comparing its text. Exact: every
    // record is borrowed for the whole call, so no identity is reused by another key meanwhile.
    let mut index_of_identity: foldhash::HashMap<(usize, usize), usize> =
        foldhash::HashMap::with_capacity_and_hasher(expected_series, Default::default());
    // First pass: each record's group, and each group's first record and size, so the columns
    // are allocated once at their final size.
    let mut first_and_count: Vec<(usize, usize)> = Vec::with_capacity(expected_series);
    let mut slots: Vec<usize> = Vec::with_capacity(records.len());
    let mut previous: Option<((usize, usize), usize)> = None;
    for (position, record) in records.iter().enumerate() {
        let identity = record.series.identity();
        let index = match previous {
            // Sources often send runs of one series.
            Some((previous_identity, index)) if previous_identity == identity => index,
            _ => match index_of_identity.get(&identity) {
                Some(&index) => index,
                None => {
                    let index = *index_of.entry(&record.series).or_insert_with(|| {
                        first_and_count.push((position, 0));
                        first_and_count.len() - 1
                    });
                    index_of_identity.insert(identity, index);
                    index
                }
            },
        };
        previous = Some((identity, index));
        first_and_count[index].1 += 1;
        slots.push(index);
    }
    let mut groups: Vec<SeriesColumns> = first_and_count
        .iter()
        .map(|&(first, count)| {
            SeriesColumns::with_capacity(records[first].series.clone(), &records[first].value, count)
        })
        .collect();
    for (record, &index) in records.iter().zip(&slots) {
        groups[index].push(record.timestamp_ns, record.value.clone(), record.quality);
    }
    LAST_GROUP_COUNT.set(groups.len());
    groups
}

thread_local! {
    /// How many series [`group_records`] found in its last call on this thread: only a size hint.
    static LAST_GROUP_COUNT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Groups records by series as they come, into frames of at most `max_records` records each:
/// what `records.chunks(max_records).map(group_records)` gives, without the records. A parser
/// pushes each value with a borrowed key, so a record costs no key clone and no [`Record`] to
/// build and drop. The open frame's records wait in one buffer, reused frame after frame; when
/// the frame closes, each series' columns are allocated once, at their final size, and filled.
///
/// Keys are found by identity first ([`SeriesKey::identity`]), then by text. An identity is only
/// remembered while the grouper holds a clone of its key, so an address freed by the caller and
/// reused for another key can never be mistaken for it.
#[derive(Debug)]
pub struct Grouper {
    number: u64,
    max_records: usize,
    frames: Vec<Vec<SeriesColumns>>,
    /// The open frame's groups: each one's key, first row (its first value's kind types the
    /// column) and number of rows. Their columns are built when the frame closes, each at its
    /// final size: growing every series' three columns push by push took about a tenth of the
    /// sender's CPU on 1,000-line HTTP writes (README, "Figures").
    groups: Vec<OpenGroup>,
    /// The open frame's records in push order, each with its group's index; reused frame after
    /// frame.
    rows: Vec<Row>,
    records: usize,
    index_of: foldhash::HashMap<SeriesKey, usize>,
    index_of_identity: foldhash::HashMap<(usize, usize), usize>,
    /// Keys equal to a group's key but not sharing its text, kept alive so that their identity
    /// stays theirs while it is in `index_of_identity`.
    aliases: Vec<SeriesKey>,
    previous: Option<((usize, usize), usize)>,
}

/// A series' group in the open frame.
#[derive(Debug)]
struct OpenGroup {
    key: SeriesKey,
    first_row: usize,
    rows: usize,
}

/// One record of the open frame.
#[derive(Debug)]
struct Row {
    group: usize,
    timestamp_ns: i64,
    value: Value,
    quality: Quality,
}

/// Where [`Grouper::push_at`] last put a series' record: which grouper, which of its frames
/// (counted from 1; 0 for none), the group's index in it, and the identity of the key pushed. A
/// stale slot, or one from another grouper, is harmless: it is used only by the grouper and in
/// the frame it names, for a key of that identity, which that grouper still holds then, so the
/// key pushed is the very key the slot was made for.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GroupSlot {
    grouper: u64,
    frame: usize,
    index: usize,
    identity: (usize, usize),
}

/// Each grouper's number, for its slots (0 is no grouper's).
static NEXT_GROUPER: AtomicU64 = AtomicU64::new(1);

impl Grouper {
    /// An empty grouper that starts a new frame every `max_records` records (at least one).
    pub fn new(max_records: usize) -> Grouper {
        Grouper {
            number: NEXT_GROUPER.fetch_add(1, Ordering::Relaxed),
            max_records: max_records.max(1),
            frames: Vec::new(),
            groups: Vec::new(),
            rows: Vec::new(),
            records: 0,
            index_of: foldhash::HashMap::default(),
            index_of_identity: foldhash::HashMap::default(),
            aliases: Vec::new(),
            previous: None,
        }
    }

    /// Appends one record of `series`, after the records pushed before it.
    pub fn push(&mut self, series: &SeriesKey, timestamp_ns: i64, value: Value, quality: Quality) {
        self.push_at(&mut GroupSlot::default(), series, timestamp_ns, value, quality);
    }

    /// [`push`](Self::push) for a source that keeps a [`GroupSlot`] beside each series key it
    /// caches: the record goes straight to the group the slot names when the slot is this
    /// grouper's, for the open frame and this very key (same identity), without a lookup; the
    /// slot is updated.
    pub fn push_at(
        &mut self,
        slot: &mut GroupSlot,
        series: &SeriesKey,
        timestamp_ns: i64,
        value: Value,
        quality: Quality,
    ) {
        if self.rows.len() == self.max_records {
            self.close_frame();
        }
        let identity = series.identity();
        let frame = self.frames.len() + 1;
        let index = if slot.grouper == self.number && slot.frame == frame && slot.identity == identity {
            slot.index
        } else {
            match self.previous {
                // Sources often send runs of one series.
                Some((previous_identity, index)) if previous_identity == identity => index,
                _ => self.index_of(series, identity),
            }
        };
        // `identity` is held now (a group's key or an alias) until the frame closes.
        *slot = GroupSlot { grouper: self.number, frame, index, identity };
        self.previous = Some((identity, index));
        self.groups[index].rows += 1;
        self.rows.push(Row { group: index, timestamp_ns, value, quality });
        self.records += 1;
    }

    /// The group of `series` in the open frame, found or started; remembers `identity` for it.
    fn index_of(&mut self, series: &SeriesKey, identity: (usize, usize)) -> usize {
        if let Some(&index) = self.index_of_identity.get(&identity) {
            return index;
        }
        let index = match self.index_of.get(series) {
            Some(&index) => {
                // Equal text under another identity: hold the key, so its identity stays its own.
                self.aliases.push(series.clone());
                index
            }
            None => {
                self.groups.push(OpenGroup { key: series.clone(), first_row: self.rows.len(), rows: 0 });
                self.index_of.insert(series.clone(), self.groups.len() - 1);
                self.groups.len() - 1
            }
        };
        self.index_of_identity.insert(identity, index);
        index
    }

    fn close_frame(&mut self) {
        let mut columns: Vec<SeriesColumns> = self
            .groups
            .drain(..)
            .map(|group| SeriesColumns::with_capacity(group.key, &self.rows[group.first_row].value, group.rows))
            .collect();
        for Row { group, timestamp_ns, value, quality } in self.rows.drain(..) {
            columns[group].push(timestamp_ns, value, quality);
        }
        self.frames.push(columns);
        self.index_of.clear();
        self.index_of_identity.clear();
        self.aliases.clear();
        self.previous = None;
    }

    /// Records pushed so far.
    pub fn records(&self) -> usize {
        self.records
    }

    /// The frames, each grouped by series in order of each series' first record in that frame;
    /// none if nothing was pushed.
    pub fn finish(mut self) -> Vec<Vec<SeriesColumns>> {
        if !self.rows.is_empty() {
            self.close_frame();
        }
        self.frames
    }
}
