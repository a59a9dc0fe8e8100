//! Fuzzes the Sparkplug B decoder: any topic and payload, fed through one decoder in sequence (so
//! births, aliases, sequence numbers and deaths interact), must give records that pass
//! `Record::validate` or an error, never a panic.
//!
//! The input is split into messages at 0xFF 0x00; in each, the first byte picks a topic (message
//! type, node, device) and the rest is the payload.
#![no_main]

use diode_sender::sources::sparkplug::SparkplugDecoder;
use libfuzzer_sys::fuzz_target;

const TOPICS: [&str; 10] = [
    "spBv1.0/g/NBIRTH/n",
    "spBv1.0/g/NDATA/n",
    "spBv1.0/g/NDEATH/n",
    "spBv1.0/g/DBIRTH/n/d",
    "spBv1.0/g/DDATA/n/d",
    "spBv1.0/g/DDEATH/n/d",
    "spBv1.0/g/DDATA/n/e",
    "spBv1.0/g/NCMD/n",
    "spBv1.0/STATE/host",
    "spBv1.0/g/NDATA",
];

fuzz_target!(|data: &[u8]| {
    let mut decoder = SparkplugDecoder::new("p/", 1_000);
    let mut now_ns = 1_767_225_600_000_000_000i64;
    for message in data.split(|&b| b == 0xFF) {
        let Some((&selector, payload)) = message.split_first() else { continue };
        let topic = TOPICS[usize::from(selector) % TOPICS.len()];
        now_ns += i64::from(selector) * 1_000_000;
        if let Ok(outcome) = decoder.handle(topic, payload, now_ns) {
            for record in &outcome.records {
                assert_eq!(record.validate(), Ok(()), "{record:?}");
                assert!(record.series.name.starts_with("p/g/n/"), "{}", record.series.name);
            }
        }
        let _ = decoder.restore_birth(topic, payload);
    }
});
