//! FEC and receive-path benchmarks: the numbers behind the choice of `reed-solomon-simd`.
//!
//! - `fec_encode`: one 1 MiB block, 1392-byte symbols, 15 % repair, `reed-solomon-simd` (through
//!   `fec::encode`, through a reused `BlockEncoder`, and the crate's own `encode` on symbols
//!   already cut) against `raptorq` (the
//!   same symbol size, a multiple of raptorq's 8-byte alignment).
//! - `fec_decode`: the same block with 8 % of its symbols lost (the same indices for both codes).
//! - `receive_path`: `decode_datagram` alone, and `decode_datagram` + `Reassembler::handle_symbol`,
//!   per datagram, over all the datagrams of one 1 MiB segment.
//! - `repair_floor`: `fec::repair_floor_for_loss` at the sender's default design loss (5 %, 10⁻⁶)
//!   for a live 1 s segment (21 symbols) and a 50,000-record harness segment (63), which the
//!   sender computes for every segment it sends.
//!
//! Throughput is reported in bytes of segment per second (elements per second for the receive
//! path). Run with `cargo bench -p diode-common --bench fec`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use diode_common::fec::{self, BlockDecoder, BlockEncoder, FecParams};
use diode_common::packet::{Datagram, LinkKey, SymbolPacket, decode_datagram, encode_symbol};
use diode_common::reassembly::{Reassembler, ReassemblyLimits};
use diode_common::rng::SeededRng;
use raptorq::{Decoder, Encoder, EncodingPacket};

const SEGMENT_LENGTH: usize = 1024 * 1024;
const SYMBOL_SIZE: u16 = 1392;
const REPAIR_OVERHEAD: f64 = 0.15;
const LOSS: f64 = 0.08;

fn segment() -> Vec<u8> {
    let mut rng = SeededRng::new(42);
    (0..SEGMENT_LENGTH).map(|_| rng.next_u64() as u8).collect()
}

fn params() -> FecParams {
    FecParams::for_segment(SEGMENT_LENGTH, SYMBOL_SIZE, REPAIR_OVERHEAD, 0).unwrap()
}

/// Which of `total` symbols survive 8 % loss: the same pattern for both codes.
fn surviving(total: usize) -> Vec<bool> {
    let mut rng = SeededRng::new(8);
    let mut keep = vec![true; total];
    let lost = (total as f64 * LOSS).round() as usize;
    let mut indices: Vec<usize> = (0..total).collect();
    rng.shuffle(&mut indices);
    for &index in &indices[..lost] {
        keep[index] = false;
    }
    keep
}

fn raptorq_encode(data: &[u8], repair: u32) -> (Encoder, Vec<EncodingPacket>) {
    let encoder = Encoder::with_defaults(data, SYMBOL_SIZE);
    let packets = encoder.get_encoded_packets(repair);
    (encoder, packets)
}

fn bench_encode(c: &mut Criterion) {
    let data = segment();
    let params = params();
    let mut group = c.benchmark_group("fec_encode_1MiB_15pct");
    group.throughput(Throughput::Bytes(SEGMENT_LENGTH as u64));
    group.bench_function("reed-solomon-simd", |b| b.iter(|| fec::encode(black_box(&data), &params).unwrap()));
    // What a sender should use: nothing copied but the padded last symbol, memory reused.
    let mut encoder = BlockEncoder::new();
    group.bench_function("reed-solomon-simd-BlockEncoder", |b| {
        b.iter(|| {
            let block = encoder.encode(black_box(&data), &params).unwrap();
            black_box(block.symbol(params.total_count() as u16 - 1).unwrap()[0])
        })
    });
    // The crate alone, on symbols already cut: what `fec::encode` adds is cutting and copying.
    let mut padded_last = data[data.len() - data.len() % usize::from(SYMBOL_SIZE)..].to_vec();
    padded_last.resize(usize::from(SYMBOL_SIZE), 0);
    let mut shards: Vec<&[u8]> = data.chunks_exact(usize::from(SYMBOL_SIZE)).collect();
    shards.push(&padded_last);
    assert_eq!(shards.len(), usize::from(params.original_count));
    group.bench_function("reed-solomon-simd-raw", |b| {
        b.iter(|| {
            reed_solomon_simd::encode(
                usize::from(params.original_count),
                usize::from(params.repair_count),
                black_box(&shards),
            )
            .unwrap()
        })
    });
    group.bench_function("raptorq", |b| b.iter(|| raptorq_encode(black_box(&data), u32::from(params.repair_count))));
    group.finish();
}

fn bench_decode(c: &mut Criterion) {
    let data = segment();
    let params = params();
    let symbols = fec::encode(&data, &params).unwrap();
    let keep = surviving(symbols.len());
    let (encoder, packets) = raptorq_encode(&data, u32::from(params.repair_count));
    let config = encoder.get_config();
    assert_eq!(config.source_blocks(), 1, "one raptorq block, like one RS block");
    assert_eq!(packets.len(), symbols.len());
    let kept_packets: Vec<EncodingPacket> =
        packets.into_iter().zip(&keep).filter(|(_, keep)| **keep).map(|(packet, _)| packet).collect();

    let mut group = c.benchmark_group("fec_decode_1MiB_8pct_lost");
    group.throughput(Throughput::Bytes(SEGMENT_LENGTH as u64));
    group.bench_function("reed-solomon-simd", |b| {
        b.iter(|| {
            let mut decoder = BlockDecoder::new(params).unwrap();
            for (index, symbol) in symbols.iter().enumerate() {
                if keep[index] {
                    decoder.add_symbol(index as u16, symbol).unwrap();
                    if decoder.is_complete() {
                        break;
                    }
                }
            }
            let rebuilt = decoder.finish().unwrap();
            debug_assert_eq!(rebuilt, data);
            rebuilt
        })
    });
    group.bench_function("raptorq", |b| {
        b.iter_batched(
            || kept_packets.clone(),
            |packets| {
                let mut decoder = Decoder::new(config);
                for packet in packets {
                    if let Some(rebuilt) = decoder.decode(packet) {
                        return rebuilt;
                    }
                }
                panic!("raptorq could not decode")
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
    // Outside the timing: both really rebuild the segment.
    let mut decoder = Decoder::new(config);
    let rebuilt = kept_packets.iter().find_map(|packet| decoder.decode(packet.clone())).unwrap();
    assert_eq!(rebuilt, data);
}

fn bench_receive_path(c: &mut Criterion) {
    let key = LinkKey::from_bytes([3; 32]);
    let data = segment();
    let params = FecParams::for_segment(SEGMENT_LENGTH, 1394, REPAIR_OVERHEAD, 2).unwrap();
    let datagrams: Vec<Vec<u8>> = fec::encode(&data, &params)
        .unwrap()
        .iter()
        .enumerate()
        .map(|(index, symbol)| {
            let mut out = Vec::new();
            let packet =
                SymbolPacket { sender_id: 1, epoch: 1, sequence: 1, symbol_index: index as u16, params, symbol };
            encode_symbol(&packet, &key, &mut out).unwrap();
            out
        })
        .collect();
    // Originals only, so that every datagram is fed and the segment completes at the last one.
    let originals = &datagrams[..usize::from(params.original_count)];

    let mut group = c.benchmark_group("receive_path_per_datagram");
    group.throughput(Throughput::Elements(originals.len() as u64));
    group.bench_function("decode_datagram", |b| {
        b.iter(|| {
            for datagram in originals {
                black_box(decode_datagram(black_box(datagram), &key).unwrap());
            }
        })
    });
    group.bench_function("decode_datagram+reassembly", |b| {
        b.iter_batched(
            || Reassembler::new(ReassemblyLimits::default()),
            |mut reassembler| {
                let mut completed = None;
                for datagram in originals {
                    let Ok(Datagram::Symbol(packet)) = decode_datagram(datagram, &key) else { unreachable!() };
                    completed = reassembler.handle_symbol(&packet, 0).or(completed);
                }
                completed.expect("the segment completes")
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn bench_repair_floor(c: &mut Criterion) {
    let mut group = c.benchmark_group("repair_floor");
    for originals in [21_u16, 63] {
        group.bench_function(format!("{originals}_originals"), |b| {
            b.iter(|| fec::repair_floor_for_loss(black_box(originals), 0.05, 1e-6).unwrap())
        });
    }
    group.finish();
}

fn configured() -> Criterion {
    Criterion::default().sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4))
}

criterion_group! {
    name = benches;
    config = configured();
    targets = bench_encode, bench_decode, bench_receive_path, bench_repair_floor
}
criterion_main!(benches);
