//! The MQTT source: a client (rumqttc) that subscribes to plant topics on a broker in the OT
//! network and spools what they carry: Sparkplug B, JSON or line protocol, per subscription.
//!
//! Durability: QoS 1 messages are acknowledged (PUBACK) only after their records are in the
//! spool, with rumqttc's manual acks, in the order they arrived (as MQTT requires). With
//! `clean_session = false` the broker keeps every unacknowledged message for this client id, so
//! a sender that crashes is sent them again when it returns: at least once, and a value stored
//! twice is the same point (last write wins), so nothing is lost and nothing doubles.
//!
//! Two tasks: the network task polls the event loop (connects, reconnects with back-off,
//! subscribes after every CONNACK) and hands publishes over a bounded queue
//! (`max_pending_messages`: a full queue stops reading, so the broker holds the rest); the
//! processing task takes whatever is queued as one batch, decodes it on a blocking thread,
//! spools it through group commit, and then acknowledges it. Malformed payloads are counted and
//! logged with their topic (rate-limited), and acknowledged: redelivery would not mend them.
//!
//! Sparkplug births are remembered across restarts in `<data_dir>/sources/mqtt-<n>/births.log`,
//! written and synced before the birth is acknowledged, so that data sent by alias while the
//! sender was down can still be named when the broker delivers it.

use std::collections::{BTreeMap, VecDeque};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use diode_common::record::Record;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS, SubscribeFilter, TlsConfiguration, Transport};
use tokio::sync::mpsc;

use super::json_payload::{JsonMapping, SeriesTemplate};
use super::sparkplug::{self, SparkplugDecoder};
use super::{Backoff, SourceCounters, Warnings};
use crate::clock::now_ns;
use crate::commit::Committer;
use crate::config::{MqttSourceConfig, MqttSubscriptionConfig, PayloadFormat};
use crate::line_protocol::{self, ParseOptions};

/// Messages one batch takes at most (each batch is one spool commit).
const MAX_BATCH_MESSAGES: usize = 4_096;
/// Records one batch gathers before it is committed.
const MAX_BATCH_RECORDS: usize = 200_000;
/// A births log this much larger than the births it holds is rewritten.
const BIRTHS_LOG_SLACK_BYTES: u64 = 4 * 1024 * 1024;

pub use super::addresses::broker_address;

/// Whether `topic` matches the MQTT topic filter `filter` (`+` one level, `#` the rest).
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    let mut levels = topic.split('/');
    for part in filter.split('/') {
        match (part, levels.next()) {
            ("#", _) => return !topic.starts_with('$') || !filter.starts_with('#'),
            ("+", Some(_)) => {}
            (part, Some(level)) if part == level => {}
            _ => return false,
        }
    }
    levels.next().is_none()
}

/// How one subscription's payloads become records.
enum Decoder {
    Sparkplug(Box<SparkplugDecoder>),
    Json(JsonMapping),
    LineProtocol(ParseOptions),
}

/// Every subscription's decoder and the Sparkplug births log: what turns a batch of publishes
/// into records. The source moves it to a blocking thread for each batch and back; the sources
/// bench drives it directly.
pub struct Decoding {
    filters: Vec<String>,
    decoders: Vec<Decoder>,
    births: Option<BirthsLog>,
}

/// What a batch gave.
#[derive(Default)]
pub struct BatchOutcome {
    /// Records decoded, to spool.
    pub records: Vec<Record>,
    /// Messages that did not decode (counted and acknowledged: resending would not mend them).
    pub malformed: u64,
    /// Values of a kind diode does not store (arrays, data sets, …), skipped.
    pub unsupported: u64,
    /// Sparkplug sequence gaps, unknown aliases and data before a birth.
    pub sequence_gaps: u64,
    /// Sparkplug NDEATH and DDEATH messages handled.
    pub deaths: u64,
    /// (group, edge node) to ask for a rebirth.
    pub rebirths: Vec<(String, String)>,
    /// (kind, topic, problem) for the rate-limited log.
    pub problems: Vec<(&'static str, String, String)>,
}

impl Decoding {
    /// The decoders of `config`'s subscriptions, with Sparkplug births restored from `births_path`.
    pub fn new(config: &MqttSourceConfig, births_path: &Path) -> anyhow::Result<Decoding> {
        let mut decoders = Vec::new();
        for subscription in &config.subscriptions {
            decoders.push(decoder(subscription)?);
        }
        let has_sparkplug = config.subscriptions.iter().any(|s| s.format == PayloadFormat::SparkplugB);
        let mut decoding = Decoding {
            filters: config.subscriptions.iter().map(|s| s.topic.clone()).collect(),
            decoders,
            births: None,
        };
        if has_sparkplug {
            let log = BirthsLog::open(births_path)
                .with_context(|| format!("cannot open the Sparkplug births log {}", births_path.display()))?;
            for (subscription, topic, payload) in log.entries() {
                if let Some(Decoder::Sparkplug(decoder)) = decoding.decoders.get_mut(subscription) {
                    // A birth that no longer decodes (the subscription changed) is skipped.
                    let _ = decoder.restore_birth(topic, payload);
                }
            }
            decoding.births = Some(log);
        }
        Ok(decoding)
    }

    /// The subscription a topic arrived under: the first whose filter matches.
    fn subscription_of(&self, topic: &str) -> Option<usize> {
        self.filters.iter().position(|filter| topic_matches(filter, topic))
    }

    /// Decodes a batch, in order; births are appended to the births log and synced before this
    /// returns (an error is the log's).
    pub fn decode(&mut self, batch: &[Publish], now_ns: i64) -> io::Result<BatchOutcome> {
        let mut outcome = BatchOutcome::default();
        let mut births_written = false;
        for publish in batch {
            let Some(index) = self.subscription_of(&publish.topic) else {
                outcome.malformed += 1;
                outcome.problems.push(("topic", publish.topic.clone(), "no subscription matches this topic".into()));
                continue;
            };
            match &mut self.decoders[index] {
                Decoder::Sparkplug(decoder) => match decoder.handle(&publish.topic, &publish.payload, now_ns) {
                    Ok(result) => {
                        let birth = matches!(
                            sparkplug::parse_topic(&publish.topic).map(|t| t.message_type),
                            Some(sparkplug::MessageType::NodeBirth | sparkplug::MessageType::DeviceBirth)
                        );
                        if birth && let Some(births) = &mut self.births {
                            births.append(index, &publish.topic, &publish.payload)?;
                            births_written = true;
                        }
                        outcome.malformed += result.malformed;
                        outcome.unsupported += result.unsupported;
                        outcome.sequence_gaps += result.sequence_gaps;
                        outcome.deaths += u64::from(result.death);
                        outcome.rebirths.extend(result.rebirth);
                        if let Some(problem) = result.problem {
                            outcome.problems.push(("sparkplug", publish.topic.clone(), problem));
                        }
                        outcome.records.extend(result.records);
                    }
                    Err(error) => {
                        outcome.malformed += 1;
                        outcome.problems.push(("payload", publish.topic.clone(), error.to_string()));
                    }
                },
                Decoder::Json(mapping) => {
                    match mapping.decode(&publish.topic, &publish.payload, now_ns, &mut outcome.records) {
                        Ok(decoded) => {
                            outcome.malformed += decoded.refused;
                            if let Some(error) = decoded.first_error {
                                outcome.problems.push(("payload", publish.topic.clone(), error.to_string()));
                            }
                        }
                        Err(error) => {
                            outcome.malformed += 1;
                            outcome.problems.push(("payload", publish.topic.clone(), error.to_string()));
                        }
                    }
                }
                Decoder::LineProtocol(options) => {
                    let Ok(text) = std::str::from_utf8(&publish.payload) else {
                        outcome.malformed += 1;
                        outcome.problems.push(("payload", publish.topic.clone(), "payload is not UTF-8".into()));
                        continue;
                    };
                    let options = ParseOptions { now_ns, ..options.clone() };
                    for line in text.lines() {
                        if let Err(error) = line_protocol::parse_lines(line, &options, &mut outcome.records) {
                            outcome.malformed += 1;
                            outcome.problems.push(("payload", publish.topic.clone(), error.to_string()));
                        }
                    }
                }
            }
        }
        if births_written && let Some(births) = &mut self.births {
            births.sync()?;
        }
        Ok(outcome)
    }
}

fn decoder(subscription: &MqttSubscriptionConfig) -> anyhow::Result<Decoder> {
    Ok(match subscription.format {
        PayloadFormat::SparkplugB => Decoder::Sparkplug(Box::new(SparkplugDecoder::new(
            &subscription.series_prefix,
            (subscription.rebirth_interval_ms as i64).saturating_mul(1_000_000),
        ))),
        PayloadFormat::Json => Decoder::Json(JsonMapping {
            series: SeriesTemplate::parse(&subscription.series).map_err(anyhow::Error::msg)?,
            value_pointer: subscription.value_pointer.clone(),
            time_pointer: subscription.time_pointer.clone(),
            time_unit: subscription.time_unit,
            quality_pointer: subscription.quality_pointer.clone(),
            value_type: subscription.value_type,
        }),
        PayloadFormat::LineProtocol => Decoder::LineProtocol(ParseOptions {
            precision: subscription.precision.parse().map_err(|e| anyhow::anyhow!("{e}"))?,
            now_ns: 0,
            quality_field: subscription.quality_field.clone(),
            quality_tag: subscription.quality_tag.clone(),
        }),
    })
}

/// Everything one MQTT source needs to run.
pub struct MqttSource {
    /// Its `[[sources.mqtt]]` settings.
    pub config: MqttSourceConfig,
    /// Where this source keeps its state (the Sparkplug births log).
    pub state_dir: PathBuf,
    /// The spool, through group commit: messages are acknowledged once it says durable.
    pub committer: Committer,
    /// Its counters on `/metrics`.
    pub counters: Arc<SourceCounters>,
}

impl MqttSource {
    /// Runs until the process ends: connects, subscribes, spools and acknowledges, reconnecting
    /// with back-off. Returns only on an error that retrying cannot mend (a bad TLS file, a
    /// spool that cannot be written).
    pub async fn run(self) -> anyhow::Result<()> {
        let name = self.config.display_name();
        let options = mqtt_options(&self.config)?;
        let decoding = Decoding::new(&self.config, &self.state_dir.join("births.log"))?;
        let request_capacity = self.config.max_pending_messages * 2 + 1_024;
        let mut options = options;
        options.set_request_channel_capacity(request_capacity);
        let (client, eventloop) = AsyncClient::new(options, request_capacity);
        let (queue, queued) = mpsc::channel(self.config.max_pending_messages);
        let warnings = Arc::new(Warnings::new(&name));
        tracing::info!(source = %name, url = %self.config.url, "MQTT source starting");
        let filters: Vec<SubscribeFilter> = self
            .config
            .subscriptions
            .iter()
            .map(|s| SubscribeFilter::new(s.topic.clone(), if s.qos == 0 { QoS::AtMostOnce } else { QoS::AtLeastOnce }))
            .collect();
        let network = tokio::spawn(network_task(
            eventloop,
            client.clone(),
            filters,
            queue,
            Arc::clone(&self.counters),
            Arc::clone(&warnings),
            Backoff::new(
                Duration::from_millis(self.config.reconnect_min_ms),
                Duration::from_millis(self.config.reconnect_max_ms),
            ),
        ));
        let result = process(decoding, queued, client, self.committer, &self.counters, &warnings).await;
        network.abort();
        result
    }
}

fn mqtt_options(config: &MqttSourceConfig) -> anyhow::Result<MqttOptions> {
    let (host, port, tls) = broker_address(&config.url).map_err(anyhow::Error::msg)?;
    let mut options = MqttOptions::new(config.client_id.clone(), host, port);
    options
        .set_manual_acks(true)
        .set_clean_session(config.clean_session)
        .set_keep_alive(Duration::from_secs(config.keep_alive_s))
        .set_max_packet_size(config.max_packet_bytes, config.max_packet_bytes);
    if let Some(username) = &config.username {
        options.set_credentials(username.clone(), config.password.clone().unwrap_or_default());
    }
    if tls {
        options.set_transport(Transport::Tls(TlsConfiguration::Rustls(Arc::new(tls_config(config)?))));
    }
    Ok(options)
}

/// A rustls client configuration (ring) trusting `ca_file`, with the client certificate if set.
fn tls_config(config: &MqttSourceConfig) -> anyhow::Result<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let ca_file = config.ca_file.as_ref().context("mqtts:// needs ca_file")?;
    let mut roots = rustls::RootCertStore::empty();
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca_file)
        .and_then(|certs| certs.collect())
        .with_context(|| format!("cannot read CA certificates from {}", ca_file.display()))?;
    let (added, _) = roots.add_parsable_certificates(certificates);
    anyhow::ensure!(added > 0, "{} holds no usable CA certificate (PEM)", ca_file.display());
    // rustls on *ring*, no aws-lc-rs (its C build) on the OT appliance; rustls 0.23.48 marks this
    // provider deprecated because *ring* has no post-quantum key exchange: the broker connection
    // uses classical ECDHE.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots);
    match (&config.client_cert_file, &config.client_key_file) {
        (Some(cert_file), Some(key_file)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
                .and_then(|certs| certs.collect())
                .with_context(|| format!("cannot read the client certificate {}", cert_file.display()))?;
            let key = PrivateKeyDer::from_pem_file(key_file)
                .with_context(|| format!("cannot read the client key {}", key_file.display()))?;
            builder.with_client_auth_cert(chain, key).context("the client certificate and key do not go together")
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// Polls the event loop forever: hands publishes to the processing task (waiting while its
/// queue is full), subscribes after every CONNACK, and backs off after every failure.
async fn network_task(
    mut eventloop: rumqttc::EventLoop,
    client: AsyncClient,
    filters: Vec<SubscribeFilter>,
    queue: mpsc::Sender<Publish>,
    counters: Arc<SourceCounters>,
    warnings: Arc<Warnings>,
    mut backoff: Backoff,
) {
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                counters.messages.fetch_add(1, Ordering::Relaxed);
                if queue.send(publish).await.is_err() {
                    return;
                }
            }
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                counters.connects.fetch_add(1, Ordering::Relaxed);
                backoff.reset();
                tracing::info!(session_present = ack.session_present, "connected to the MQTT broker");
                if let Err(error) = client.try_subscribe_many(filters.clone()) {
                    tracing::error!("cannot subscribe: {error}");
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                for (filter, code) in filters.iter().zip(&ack.return_codes) {
                    if matches!(code, rumqttc::SubscribeReasonCode::Failure) {
                        tracing::error!(topic = %filter.path, "the broker refused the subscription");
                    }
                }
            }
            Ok(_) => {}
            Err(error) => {
                counters.disconnects.fetch_add(1, Ordering::Relaxed);
                let delay = backoff.next_delay();
                warnings.warn("connection", || format!("MQTT connection failed: {error}; retrying in {delay:?}"));
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Takes batches from the queue, decodes, spools and acknowledges them, in order.
async fn process(
    mut decoding: Decoding,
    mut queued: mpsc::Receiver<Publish>,
    client: AsyncClient,
    committer: Committer,
    counters: &SourceCounters,
    warnings: &Warnings,
) -> anyhow::Result<()> {
    let mut acks: VecDeque<Publish> = VecDeque::new();
    loop {
        let mut batch = Vec::new();
        if acks.is_empty() {
            match queued.recv().await {
                Some(publish) => batch.push(publish),
                None => return Ok(()),
            }
        } else {
            // Acknowledgements waiting for room in the client's request queue: retry soon,
            // taking whatever arrives meanwhile.
            tokio::select! {
                publish = queued.recv() => match publish {
                    Some(publish) => batch.push(publish),
                    None => return Ok(()),
                },
                _ = tokio::time::sleep(Duration::from_millis(1)) => {}
            }
        }
        let mut payload_bytes = batch.iter().map(|p| p.payload.len()).sum::<usize>();
        while batch.len() < MAX_BATCH_MESSAGES && payload_bytes < MAX_BATCH_RECORDS * 16 {
            match queued.try_recv() {
                Ok(publish) => {
                    payload_bytes += publish.payload.len();
                    batch.push(publish);
                }
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            let (returned, outcome) = tokio::task::spawn_blocking(move || {
                let outcome = decoding.decode(&batch, now_ns());
                (decoding, (batch, outcome))
            })
            .await
            .context("the MQTT decoding task failed")?;
            decoding = returned;
            let (batch, outcome) = outcome;
            let outcome = outcome.context("cannot write the Sparkplug births log")?;
            report(&outcome, counters, warnings);
            for (group, node) in &outcome.rebirths {
                let (topic, payload) = sparkplug::rebirth_request(group, node, (now_ns() / 1_000_000) as u64);
                match client.try_publish(topic, QoS::AtMostOnce, false, payload) {
                    Ok(()) => {
                        counters.rebirth_requests.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(group = %group, edge_node = %node, "asked the edge node for a rebirth");
                    }
                    Err(error) => warnings.warn("rebirth", || format!("cannot publish a rebirth request: {error}")),
                }
            }
            super::submit(&committer, counters, warnings, outcome.records).await;
            acks.extend(batch.into_iter().filter(|p| p.qos != QoS::AtMostOnce));
        }
        while let Some(publish) = acks.front() {
            match client.try_ack(publish) {
                Ok(()) => {
                    acks.pop_front();
                }
                Err(rumqttc::ClientError::TryRequest(_)) => break,
                Err(error) => return Err(anyhow::anyhow!("cannot acknowledge to the broker: {error}")),
            }
        }
    }
}

fn report(outcome: &BatchOutcome, counters: &SourceCounters, warnings: &Warnings) {
    counters.malformed.fetch_add(outcome.malformed, Ordering::Relaxed);
    counters.unsupported.fetch_add(outcome.unsupported, Ordering::Relaxed);
    counters.sequence_gaps.fetch_add(outcome.sequence_gaps, Ordering::Relaxed);
    counters.deaths.fetch_add(outcome.deaths, Ordering::Relaxed);
    for (kind, topic, problem) in &outcome.problems {
        warnings.warn(kind, || format!("topic {topic}: {problem}"));
    }
}

/// Sparkplug births that must survive a restart: an append-only file of
/// `subscription u32 ‖ topic length u32 ‖ topic ‖ payload length u32 ‖ payload` (little endian).
/// A torn last entry (a crash mid-append) is cut off when the file is opened; superseded births
/// (a later NBIRTH replaces the node's and its devices') are dropped when it is rewritten.
pub struct BirthsLog {
    path: PathBuf,
    file: fs::File,
    size_bytes: u64,
    /// (subscription, group, node) → the NBIRTH (if any) and each device's DBIRTH.
    live: BTreeMap<(usize, String, String), LiveBirths>,
}

#[derive(Default)]
struct LiveBirths {
    node: Option<(String, Vec<u8>)>,
    devices: BTreeMap<String, (String, Vec<u8>)>,
}

impl BirthsLog {
    /// Opens (or creates) the log at `path`, cutting off a torn last entry.
    pub fn open(path: &Path) -> io::Result<BirthsLog> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let mut bytes = Vec::new();
        if let Ok(mut file) = fs::File::open(path) {
            file.read_to_end(&mut bytes)?;
        }
        let mut log = BirthsLog {
            path: path.to_owned(),
            file: fs::OpenOptions::new().create(true).append(true).open(path)?,
            size_bytes: 0,
            live: BTreeMap::new(),
        };
        let mut rest = bytes.as_slice();
        while let Some((subscription, topic, payload, after)) = read_entry(rest) {
            log.remember(subscription, topic, payload.to_vec());
            rest = after;
        }
        log.rewrite()?;
        Ok(log)
    }

    fn remember(&mut self, subscription: usize, topic: String, payload: Vec<u8>) {
        let Some(parsed) = sparkplug::parse_topic(&topic) else { return };
        let key = (subscription, parsed.group.to_owned(), parsed.node.to_owned());
        match (parsed.message_type, parsed.device) {
            (sparkplug::MessageType::NodeBirth, None) => {
                self.live.insert(key, LiveBirths { node: Some((topic, payload)), devices: BTreeMap::new() });
            }
            (sparkplug::MessageType::DeviceBirth, Some(device)) => {
                let device = device.to_owned();
                self.live.entry(key).or_default().devices.insert(device, (topic, payload));
            }
            _ => {}
        }
    }

    /// Every live birth, node births before their devices'.
    pub fn entries(&self) -> impl Iterator<Item = (usize, &str, &[u8])> {
        self.live.iter().flat_map(|((subscription, _, _), births)| {
            births
                .node
                .iter()
                .chain(births.devices.values())
                .map(move |(topic, payload)| (*subscription, topic.as_str(), payload.as_slice()))
        })
    }

    /// Appends a birth (made durable by [`sync`](Self::sync)).
    pub fn append(&mut self, subscription: usize, topic: &str, payload: &[u8]) -> io::Result<()> {
        let entry = encode_entry(subscription, topic, payload);
        self.file.write_all(&entry)?;
        self.size_bytes += entry.len() as u64;
        self.remember(subscription, topic.to_owned(), payload.to_vec());
        Ok(())
    }

    /// Syncs appended births; rewrites the file when superseded births dominate it.
    pub fn sync(&mut self) -> io::Result<()> {
        let live_bytes: u64 = self.entries().map(|(_, topic, payload)| 12 + (topic.len() + payload.len()) as u64).sum();
        if self.size_bytes > live_bytes * 2 + BIRTHS_LOG_SLACK_BYTES {
            return self.rewrite();
        }
        self.file.sync_data()
    }

    /// Writes only the live births to a new file and puts it in place.
    fn rewrite(&mut self) -> io::Result<()> {
        let temporary = self.path.with_extension("log.new");
        let mut bytes = Vec::new();
        for (subscription, topic, payload) in self.entries() {
            bytes.extend(encode_entry(subscription, topic, payload));
        }
        {
            let mut file = fs::File::create(&temporary)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
        }
        fs::rename(&temporary, &self.path)?;
        if let Some(dir) = self.path.parent() {
            fs::File::open(dir)?.sync_all()?;
        }
        self.file = fs::OpenOptions::new().append(true).open(&self.path)?;
        self.size_bytes = bytes.len() as u64;
        Ok(())
    }
}

fn encode_entry(subscription: usize, topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut entry = Vec::with_capacity(12 + topic.len() + payload.len());
    entry.extend((subscription as u32).to_le_bytes());
    entry.extend((topic.len() as u32).to_le_bytes());
    entry.extend(topic.as_bytes());
    entry.extend((payload.len() as u32).to_le_bytes());
    entry.extend(payload);
    entry
}

/// One entry and the bytes after it; `None` at the end or at a torn or damaged entry.
fn read_entry(bytes: &[u8]) -> Option<(usize, String, &[u8], &[u8])> {
    fn take_u32(bytes: &[u8]) -> Option<(usize, &[u8])> {
        let (head, rest) = bytes.split_first_chunk::<4>()?;
        Some((u32::from_le_bytes(*head) as usize, rest))
    }
    let (subscription, rest) = take_u32(bytes)?;
    let (topic_length, rest) = take_u32(rest)?;
    let topic = rest.get(..topic_length)?;
    let topic = std::str::from_utf8(topic).ok()?.to_owned();
    let (payload_length, rest) = take_u32(&rest[topic_length..])?;
    let payload = rest.get(..payload_length)?;
    Some((subscription, topic, payload, &rest[payload_length..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_give_host_port_and_tls() {
        assert_eq!(broker_address("mqtt://broker.ot.local"), Ok(("broker.ot.local".into(), 1883, false)));
        assert_eq!(broker_address("mqtts://10.0.0.5:8884/"), Ok(("10.0.0.5".into(), 8884, true)));
        assert_eq!(broker_address("mqtt://[::1]:1884"), Ok(("::1".into(), 1884, false)));
        for bad in ["tcp://x", "mqtt://", "mqtt://user:pw@host", "mqtt://host:99999", "mqtt://host/path"] {
            assert!(broker_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn topic_filters_match_like_a_broker() {
        assert!(topic_matches("spBv1.0/#", "spBv1.0/g/NDATA/n"));
        assert!(topic_matches("plant/+/temp", "plant/b3/temp"));
        assert!(!topic_matches("plant/+/temp", "plant/b3/x/temp"));
        assert!(topic_matches("plant/#", "plant"));
        assert!(!topic_matches("#", "$SYS/broker/load"));
        assert!(topic_matches("a/b", "a/b") && !topic_matches("a/b", "a/b/c"));
    }

    #[test]
    fn the_births_log_keeps_the_latest_births_and_survives_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("births.log");
        {
            let mut log = BirthsLog::open(&path).unwrap();
            log.append(0, "spBv1.0/g/NBIRTH/n", b"old").unwrap();
            log.append(0, "spBv1.0/g/DBIRTH/n/d", b"device").unwrap();
            log.append(0, "spBv1.0/g/NBIRTH/n", b"new").unwrap();
            log.append(0, "spBv1.0/g/DBIRTH/n/e", b"e").unwrap();
            log.append(1, "spBv1.0/h/NBIRTH/m", b"other").unwrap();
            log.sync().unwrap();
        }
        // A crash in the middle of an append.
        let mut file = fs::OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&encode_entry(0, "spBv1.0/g/NBIRTH/x", b"torn")[..9]).unwrap();
        drop(file);
        let log = BirthsLog::open(&path).unwrap();
        let entries: Vec<(usize, &str, &[u8])> = log.entries().collect();
        assert_eq!(
            entries,
            [
                (0, "spBv1.0/g/NBIRTH/n", &b"new"[..]),
                (0, "spBv1.0/g/DBIRTH/n/e", &b"e"[..]),
                (1, "spBv1.0/h/NBIRTH/m", &b"other"[..]),
            ]
        );
    }
}
