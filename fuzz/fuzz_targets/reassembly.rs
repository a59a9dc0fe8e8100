//! Fuzzes the reassembler with sequences of validly authenticated datagrams built from the input:
//! symbols of small segments (genuine FEC symbols of deterministic content, with fuzz-chosen ids,
//! lengths, symbol sizes, repair counts and indices), clock jumps, timeout polls, epoch changes and
//! forgotten completions, under small limits.
//!
//! Checked after every step: no panic; memory and segment limits hold; every completed segment is
//! bit-exact; no segment is yielded twice while its id is within the completed memory.
#![no_main]

use std::collections::{HashMap, VecDeque};

use diode_common::fec::{self, FecParams};
use diode_common::packet::{Datagram, LinkKey, SegmentId, SymbolPacket, decode_datagram, encode_symbol};
use diode_common::reassembly::{Reassembler, ReassemblyLimits};
use diode_common::rng::SeededRng;
use libfuzzer_sys::fuzz_target;

const COMPLETED_MEMORY: usize = 8;

fn limits() -> ReassemblyLimits {
    ReassemblyLimits {
        max_segments_in_flight: 4,
        max_buffered_bytes: 8192,
        segment_timeout_ms: 1000,
        max_segment_length: 4096,
        completed_memory: COMPLETED_MEMORY,
        max_senders: 3,
    }
}

/// Reads the fuzz input a byte at a time; zeros once exhausted.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&first, rest)) => {
                self.0 = rest;
                first
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }
}

/// The content of a segment is a function of its id and length, so any completion can be checked.
fn content(id: SegmentId, length: usize) -> Vec<u8> {
    let mut rng = SeededRng::new(id.sender_id ^ (id.epoch << 8) ^ (id.sequence << 16) ^ (length as u64) << 32);
    (0..length).map(|_| rng.next_u64() as u8).collect()
}

fuzz_target!(|data: &[u8]| {
    let key = LinkKey::from_bytes([0x24; 32]);
    let limits = limits();
    let mut reassembler = Reassembler::new(limits.clone());
    let mut input = Input(data);
    let mut now_ms = 0_u64;
    let mut symbols: HashMap<(SegmentId, FecParams), Vec<Vec<u8>>> = HashMap::new();
    // A model of the completed memory: the last COMPLETED_MEMORY live completions.
    let mut remembered: VecDeque<SegmentId> = VecDeque::new();
    let mut datagram = Vec::new();
    let mut steps = 0;
    while !input.0.is_empty() && steps < 2000 {
        steps += 1;
        let id = |input: &mut Input<'_>| SegmentId {
            sender_id: u64::from(input.byte() % 4),
            epoch: u64::from(input.byte() % 3),
            sequence: u64::from(input.byte() % 8),
        };
        match input.byte() % 8 {
            0..=3 => {
                let id = id(&mut input);
                let segment_length = 1 + usize::from(input.u16() % 5000);
                let symbol_size = 2 * (16 + u16::from(input.byte()));
                let repair = u16::from(input.byte() % 8);
                let Ok(params) = FecParams::for_segment(segment_length, symbol_size, 0.0, repair) else {
                    continue;
                };
                let index = input.u16() % params.total_count() as u16;
                let block = symbols.entry((id, params)).or_insert_with(|| {
                    fec::encode(&content(id, segment_length), &params).expect("valid params encode")
                });
                let packet = SymbolPacket {
                    sender_id: id.sender_id,
                    epoch: id.epoch,
                    sequence: id.sequence,
                    symbol_index: index,
                    params,
                    symbol: &block[usize::from(index)],
                };
                encode_symbol(&packet, &key, &mut datagram).expect("valid symbol encodes");
                let Ok(Datagram::Symbol(packet)) = decode_datagram(&datagram, &key) else {
                    panic!("an encoded symbol must decode");
                };
                if let Some(done) = reassembler.handle_symbol(&packet, now_ms) {
                    assert_eq!(done.bytes, content(done.id(), done.bytes.len()));
                    assert_eq!(done.bytes.len(), segment_length);
                    assert!(
                        !remembered.contains(&done.id()),
                        "segment {:?} yielded twice within the completed memory",
                        done.id()
                    );
                    remembered.push_back(done.id());
                    while remembered.len() > COMPLETED_MEMORY {
                        remembered.pop_front();
                    }
                }
            }
            4 => now_ms += u64::from(input.byte()) * 20,
            5 => {
                reassembler.handle_timeout(now_ms);
                while reassembler.poll_event().is_some() {}
                // The next deadline lies ahead: everything idle up to now was abandoned.
                if let Some(deadline) = reassembler.poll_timeout() {
                    assert!(deadline > now_ms);
                }
            }
            6 => {
                let id = id(&mut input);
                reassembler.handle_epoch(id.sender_id, id.epoch, now_ms);
            }
            _ => {
                let id = id(&mut input);
                let forgotten = reassembler.handle_dropped(id);
                assert_eq!(forgotten, remembered.contains(&id));
                remembered.retain(|remembered| *remembered != id);
            }
        }
        let stats = reassembler.stats();
        assert!(stats.buffered_bytes <= limits.max_buffered_bytes);
        assert!(stats.segments_in_flight <= limits.max_segments_in_flight);
        for id in &remembered {
            assert!(reassembler.was_completed(*id));
        }
    }
    reassembler.handle_timeout(now_ms + limits.segment_timeout_ms);
    assert_eq!(reassembler.poll_timeout(), None);
    assert_eq!(reassembler.stats().segments_in_flight, 0);
    assert_eq!(reassembler.stats().buffered_bytes, 0);
});
