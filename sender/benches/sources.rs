//! Plant source throughput through the sources' own processing code, from received messages to
//! durable records, against the target of 500,000 points/s per core for MQTT:
//!
//! - MQTT Sparkplug B: NDATA messages of 100 metrics by alias (floats, integers, booleans) from 10
//!   edge nodes born first, through `mqtt::Decoding` (the decoder the MQTT source runs on its
//!   blocking thread) in batches of up to 4,096 messages, each batch then spooled through group
//!   commit (`sources::submit`) into a real spool with `fsync = "always"` before the next, as the
//!   source does before it acknowledges;
//! - MQTT JSON: one sample per message (`{"timestamp": …, "value": …, "quality": …}` on 1,000
//!   topics, series from a topic template), and messages of 100 samples (an array);
//! - OPC UA: data change notifications (DataValues with source timestamps and status codes) made
//!   records by the source's mapping and spooled the same way (the client's network side is the
//!   server's to set: see the README for the end-to-end figure).
//!
//! The broker's and the server's side (TCP, MQTT framing, OPC UA decoding) is not included: this is
//! the sender's cost per point once a message is in. Run with
//! `cargo bench -p diode-sender --bench sources [-- sparkplug|json|opcua]`; best of three, wall
//! and on-CPU (whole process: decoding, committing and sealing threads).

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread;

use diode_common::keys::SenderKey;
use diode_common::record::SeriesKey;
use diode_sender::commit::Committer;
use diode_sender::config::{FsyncPolicy, MqttSourceConfig, MqttSubscriptionConfig, PayloadFormat};
use diode_sender::pipeline::{Pipeline, PipelineSettings, SealedEntry};
use diode_sender::sources::json_payload::{TimeUnit, ValueType};
use diode_sender::sources::mqtt::Decoding;
use diode_sender::sources::sparkplug::{Metric, MetricValue, Payload};
use diode_sender::sources::{SourceCounters, Warnings, opcua, submit};
use prost::Message;
use rumqttc::{Publish, QoS};

#[path = "../../benches/support/measure.rs"]
mod measure;

use measure::{best_of, process_cpu_seconds};

/// The allocator the appliance's binary uses, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const START_MS: u64 = 1_767_225_600_000;
const NODES: usize = 10;
const METRICS_PER_MESSAGE: usize = 100;
/// Messages per batch, as the MQTT source takes them at most.
const BATCH_MESSAGES: usize = 4_096;

/// A fresh folder for a run's source state (the Sparkplug births log).
fn state_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

fn now_ns() -> i64 {
    diode_sender::clock::now_ns()
}

/// A pipeline in a fresh folder with a stand-in link that takes every sealed segment.
struct Spool {
    _dir: tempfile::TempDir,
    committer: Committer,
    link: Option<thread::JoinHandle<()>>,
    pipeline: Arc<Mutex<Pipeline>>,
}

impl Spool {
    fn new() -> Spool {
        let dir = tempfile::tempdir().expect("temp dir");
        let settings = PipelineSettings {
            sender_id: 1,
            data_dir: dir.path().to_owned(),
            max_records: 50_000,
            max_age_ns: 1_000_000_000,
            zstd_level: 3,
            spool_max_bytes: 1 << 32,
            fsync: FsyncPolicy::Always,
            max_unsent_bytes: 1 << 30,
            retention_bytes: 1 << 32,
        };
        let (segments, sealed) = sync_channel(64);
        let pipeline = Pipeline::open(settings, SenderKey::from_seed([5; 32]), now_ns(), segments).expect("pipeline");
        let progress = pipeline.progress();
        let link = thread::spawn(move || drain(sealed, &progress));
        let pipeline = Arc::new(Mutex::new(pipeline));
        let committer = Committer::start(Arc::clone(&pipeline)).expect("committer");
        Spool { _dir: dir, committer, link: Some(link), pipeline }
    }

    fn finish(mut self) -> u64 {
        let accepted = {
            let mut pipeline = self.pipeline.lock().expect("pipeline lock");
            pipeline.flush(now_ns()).expect("flush");
            pipeline.progress().records_accepted.load(Ordering::Relaxed)
        };
        drop(self.committer);
        drop(self.pipeline);
        self.link.take().expect("link").join().expect("link thread");
        accepted
    }
}

fn drain(sealed: Receiver<SealedEntry>, progress: &diode_sender::pipeline::Progress) {
    for entry in sealed {
        progress.sent_through.store(entry.sequence, Ordering::Relaxed);
    }
}

fn subscription(topic: &str, format: PayloadFormat) -> MqttSubscriptionConfig {
    let text = format!(
        "topic = \"{topic}\"\nformat = \"{}\"\nseries = \"plant/{{2}}/{{3}}\"\n",
        match format {
            PayloadFormat::SparkplugB => "sparkplug_b",
            PayloadFormat::Json => "json",
            PayloadFormat::LineProtocol => "line_protocol",
        }
    );
    let mut subscription: MqttSubscriptionConfig = toml::from_str(&text).expect("subscription");
    subscription.time_unit = TimeUnit::Milliseconds;
    subscription.value_type = ValueType::Float;
    subscription
}

fn source(subscription: MqttSubscriptionConfig) -> MqttSourceConfig {
    let mut config: MqttSourceConfig =
        toml::from_str("url = \"mqtt://127.0.0.1\"\nsubscriptions = []\n").expect("source config");
    config.subscriptions = vec![subscription];
    config
}

/// Decodes `messages` batch by batch with the MQTT source's decoder and spools each batch
/// before the next; returns the points spooled.
fn run_mqtt(config: &MqttSourceConfig, births: &[Publish], messages: &[Publish], state: &Path) -> u64 {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let spool = Spool::new();
    let counters = SourceCounters::default();
    let warnings = Warnings::new("bench");
    let mut decoding = Decoding::new(config, &state.join("births.log")).expect("decoders");
    let outcome = decoding.decode(births, now_ns()).expect("births");
    runtime.block_on(submit(&spool.committer, &counters, &warnings, outcome.records));
    for batch in messages.chunks(BATCH_MESSAGES) {
        let outcome = decoding.decode(batch, now_ns()).expect("decode");
        assert_eq!(outcome.malformed + outcome.sequence_gaps, 0, "{:?}", outcome.problems.first());
        runtime.block_on(submit(&spool.committer, &counters, &warnings, outcome.records));
    }
    spool.finish()
}

fn sparkplug_messages(messages_per_node: usize) -> (Vec<Publish>, Vec<Publish>) {
    let kind = |i: usize| i % 10;
    let value = |i: usize, k: u64| match kind(i) {
        0..=6 => MetricValue::DoubleValue(20.0 + ((k * 31 + i as u64) % 997) as f64 * 0.013),
        7 | 8 => MetricValue::LongValue(k * 7 + i as u64),
        _ => MetricValue::BooleanValue((k + i as u64).is_multiple_of(3)),
    };
    let datatype = |i: usize| match kind(i) {
        0..=6 => 10,
        7 | 8 => 4,
        _ => 11,
    };
    let mut births = Vec::new();
    for node in 0..NODES {
        let metrics = (0..METRICS_PER_MESSAGE)
            .map(|i| Metric {
                name: Some(format!("Area{}/Tag{i:03}", i / 10)),
                alias: Some(i as u64),
                datatype: Some(datatype(i)),
                value: Some(value(i, 0)),
                ..Metric::default()
            })
            .collect();
        let payload = Payload { timestamp: Some(START_MS), seq: Some(0), metrics, ..Payload::default() };
        births.push(Publish::new(
            format!("spBv1.0/plant/NBIRTH/edge{node}"),
            QoS::AtLeastOnce,
            payload.encode_to_vec(),
        ));
    }
    let mut messages = Vec::new();
    for k in 1..=messages_per_node as u64 {
        for node in 0..NODES {
            let metrics = (0..METRICS_PER_MESSAGE)
                .map(|i| Metric {
                    alias: Some(i as u64),
                    timestamp: Some(START_MS + k * 100),
                    value: Some(value(i, k)),
                    ..Metric::default()
                })
                .collect();
            let payload =
                Payload { timestamp: Some(START_MS + k * 100), seq: Some(k % 256), metrics, ..Payload::default() };
            messages.push(Publish::new(
                format!("spBv1.0/plant/NDATA/edge{node}"),
                QoS::AtLeastOnce,
                payload.encode_to_vec(),
            ));
        }
    }
    (births, messages)
}

fn bench_sparkplug() {
    let (births, messages) = sparkplug_messages(2_000);
    let bytes: usize = messages.iter().map(|m| m.payload.len()).sum();
    let points = (messages.len() * METRICS_PER_MESSAGE) as f64;
    let config = source(subscription("spBv1.0/#", PayloadFormat::SparkplugB));
    let (timing, spooled) =
        best_of(process_cpu_seconds, state_dir, |state| run_mqtt(&config, &births, &messages, state.path()));
    assert_eq!(spooled, (births.len() + messages.len()) as u64 * METRICS_PER_MESSAGE as u64);
    println!(
        "MQTT Sparkplug B, {} NDATA of {METRICS_PER_MESSAGE} metrics by alias ({:.0} bytes each): {}",
        messages.len(),
        bytes as f64 / messages.len() as f64,
        timing.describe(points, "points")
    );
}

fn bench_json() {
    let config = source(subscription("plant/#", PayloadFormat::Json));
    let single: Vec<Publish> = (0..400_000u64)
        .map(|i| {
            let topic = format!("plant/area{}/tag{}", i % 10, (i / 10) % 100);
            let payload = format!(
                "{{\"timestamp\": {}, \"value\": {:.3}, \"quality\": 0}}",
                START_MS + i,
                20.0 + (i % 997) as f64 * 0.013
            );
            Publish::new(topic, QoS::AtLeastOnce, payload)
        })
        .collect();
    let (timing, spooled) =
        best_of(process_cpu_seconds, state_dir, |state| run_mqtt(&config, &[], &single, state.path()));
    assert_eq!(spooled, single.len() as u64);
    println!(
        "MQTT JSON, one sample per message ({} messages): {}",
        single.len(),
        timing.describe(single.len() as f64, "points")
    );

    let arrays: Vec<Publish> = (0..20_000u64)
        .map(|m| {
            let samples: Vec<String> = (0..100u64)
                .map(|i| {
                    let t = START_MS + m * 100 + i;
                    format!("{{\"timestamp\": {t}, \"value\": {:.3}, \"quality\": 0}}", 20.0 + (t % 997) as f64 * 0.013)
                })
                .collect();
            Publish::new(
                format!("plant/area{}/tag{}", m % 10, (m / 10) % 100),
                QoS::AtLeastOnce,
                format!("[{}]", samples.join(",")),
            )
        })
        .collect();
    let (timing, spooled) =
        best_of(process_cpu_seconds, state_dir, |state| run_mqtt(&config, &[], &arrays, state.path()));
    assert_eq!(spooled, arrays.len() as u64 * 100);
    println!(
        "MQTT JSON, arrays of 100 samples ({} messages): {}",
        arrays.len(),
        timing.describe(spooled as f64, "points")
    );
}

fn bench_opcua() {
    use ::opcua::types::{DataValue, StatusCode, Variant};
    let series: Vec<SeriesKey> = (0..1_000)
        .map(|i| SeriesKey::with_tags(format!("Plant/Line{}/Tag{i}", i / 100), vec![("server".into(), "plc1".into())]))
        .collect();
    let values: Vec<(usize, DataValue)> = (0..2_000_000usize)
        .map(|i| {
            let time = opcua::opcua_time(1_767_225_600_000_000_000 + i as i64 * 1_000);
            let data = DataValue {
                value: Some(Variant::Double(20.0 + (i % 997) as f64 * 0.013)),
                status: Some(StatusCode::from(if i.is_multiple_of(50) { 0x4090_0000 } else { 0 })),
                source_timestamp: Some(time),
                server_timestamp: Some(time),
                ..DataValue::default()
            };
            (i % series.len(), data)
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let (timing, spooled) = best_of(process_cpu_seconds, Spool::new, |spool| {
        let counters = SourceCounters::default();
        let warnings = Warnings::new("bench");
        for batch in values.chunks(100_000) {
            let now = now_ns();
            let records: Vec<_> =
                batch.iter().filter_map(|(i, data)| opcua::record_of(&series[*i], data, None, now).ok()).collect();
            runtime.block_on(submit(&spool.committer, &counters, &warnings, records));
        }
        spool.finish()
    });
    assert_eq!(spooled, values.len() as u64);
    println!("OPC UA notifications made records and spooled: {}", timing.describe(values.len() as f64, "points"));
}

fn main() {
    let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    if wanted("sparkplug") {
        bench_sparkplug();
    }
    if wanted("json") {
        bench_json();
    }
    if wanted("opcua") {
        bench_opcua();
    }
}
