//! diode-sender's TOML configuration: every setting, its default and its limits.
//!
//! Unknown keys are errors (a misspelt setting must not be silently ignored on a plant network),
//! and every value is checked against its bounds before anything starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The whole of `sender.toml` (see `config/sender.toml`, which documents every setting with its
/// default). Read once at start by [`SenderConfig::load`]; nothing changes it while running.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SenderConfig {
    /// Names this sender in every segment and datagram; unique per receiver.
    pub sender_id: u64,
    /// Where the spool and the sealed-segment log live.
    pub data_dir: PathBuf,
    /// `[keys]`: the signing and link key files; required.
    pub keys: KeysConfig,
    /// `[link]`: where and how fast datagrams go, and how much FEC they carry; required.
    pub link: LinkConfig,
    /// `[segments]`: when records are sealed into a segment and how long segments are kept.
    #[serde(default)]
    pub segments: SegmentConfig,
    /// `[spool]`: the disk budget and durability of accepted, not yet sealed records.
    #[serde(default)]
    pub spool: SpoolConfig,
    /// `[carousel]`: background re-sending of recent segments; on by default.
    #[serde(default)]
    pub carousel: CarouselConfig,
    /// `[ingest]`: the line protocol listeners; all off by default.
    #[serde(default)]
    pub ingest: IngestConfig,
    /// `[simulator]`: a built-in plant for demos and tests; off by default.
    #[serde(default)]
    pub simulator: SimulatorConfig,
    /// Plant servers the sender connects out to (MQTT brokers, OPC UA servers).
    #[serde(default)]
    pub sources: SourcesConfig,
    /// `[metrics]`: the Prometheus listener; off unless `listen` is set.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// `[log]`: the log line format.
    #[serde(default)]
    pub log: LogConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
/// `[keys]`: the secret key files `diode-sender keygen` writes; both must be mode 0600.
pub struct KeysConfig {
    /// The ed25519 key that signs every segment and beacon; the receiver trusts its public half.
    pub signing_key: PathBuf,
    /// The key shared with the receiver that authenticates every datagram on the link.
    pub link_key: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
/// `[link]`: the one-way link to the receiver: destination, pacing and FEC.
pub struct LinkConfig {
    /// The receiver's address. Datagrams go there and nothing ever comes back.
    pub destination: SocketAddr,
    /// Local address to send from; the default, `0.0.0.0:0`, lets the kernel choose.
    #[serde(default = "default_bind")]
    pub bind: SocketAddr,
    /// Link MTU in bytes (IP header included); default 1500, 576 to 65535.
    #[serde(default = "default_mtu")]
    pub mtu: usize,
    /// Paced rate in Mbit/s, counting every byte the link carries (IP and UDP headers, FEC and
    /// carousel included); default 100. Set it below the diode's capacity.
    #[serde(default = "default_rate")]
    pub rate_mbit_s: f64,
    /// Repair symbols as a fraction of original symbols (0.2 = 20 %, the default).
    #[serde(default = "default_overhead")]
    pub repair_overhead: f64,
    /// Repair symbols every segment gets at least, however small; default 2.
    #[serde(default = "default_min_repair")]
    pub min_repair_symbols: u16,
    /// Random loss rate (0.05 = 5 %) that even the smallest segment must survive: small segments
    /// get more repair symbols than `repair_overhead` alone would give them. Default 0.05.
    #[serde(default = "default_design_loss")]
    pub design_loss_rate: f64,
    /// Segments whose symbols are interleaved, so a burst of loss spreads over several; default 8.
    #[serde(default = "default_interleave")]
    pub interleave_segments: usize,
    /// Send every segment's repair symbols a second time after this delay; 0 (the default) turns
    /// it off.
    #[serde(default)]
    pub repeat_repair_after_ms: u64,
    /// Milliseconds between signed beacons; default 1000.
    #[serde(default = "default_beacon_interval")]
    pub beacon_interval_ms: u64,
    /// Kernel send buffer in bytes; default 4 MiB.
    #[serde(default = "default_send_buffer")]
    pub send_buffer_bytes: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
/// `[segments]`: when waiting records are sealed into a signed segment, and how much of the
/// sealed-segment log is kept.
pub struct SegmentConfig {
    /// Seal when this many records are waiting; default 250,000. A segment also stops short of
    /// [`diode_common::codec::MAX_PAYLOAD_BOUND_BYTES`] (only large string values reach it).
    pub max_records: usize,
    /// Seal when the oldest waiting record has waited this long; default 1000 ms.
    pub max_age_ms: u64,
    /// zstd compression level of segment payloads; default 3. A segment of one spool frame
    /// holding at least half of `max_records` is sent as spooled (zstd 1) instead of encoded again.
    pub zstd_level: i32,
    /// How much of the sealed-segment log is kept for carousel and resend, in MiB; default 1024.
    pub retention_mib: u64,
    /// Sealed but unsent MiB at which sealing pauses (and the spool starts to fill); default 256.
    pub max_unsent_mib: u64,
    /// Seal on a thread of its own (true, the default), so sources go on while a segment is
    /// encoded, or on the thread that accepted the records (false: one core for both).
    pub sealer_thread: bool,
    /// Threads that encode segments for the sealing thread, so several segments are encoded at
    /// once on as many cores while it signs and writes them in order; 0 encodes on the sealing
    /// thread itself. Default: the machine's cores, at most 8. Unused without `sealer_thread`.
    pub encoder_threads: usize,
}

impl Default for SegmentConfig {
    fn default() -> Self {
        Self {
            max_records: 250_000,
            max_age_ms: 1_000,
            zstd_level: 3,
            retention_mib: 1024,
            max_unsent_mib: 256,
            sealer_thread: true,
            encoder_threads: std::thread::available_parallelism().map_or(1, |cores| cores.get().min(8)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
/// `spool.fsync`: when accepted records reach the disk.
pub enum FsyncPolicy {
    /// fsync before every acknowledgement: nothing acknowledged is ever lost.
    Always,
    /// Leave flushing to the kernel: a power cut may lose acknowledged records (a process crash
    /// does not, since the data is in the page cache).
    Never,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
/// `[spool]`: the write-ahead store of accepted records, before they are sealed.
pub struct SpoolConfig {
    /// Records accepted but not yet sealed may take this many MiB of disk before sources are told
    /// "full"; default 1024.
    pub max_mib: u64,
    /// When an acknowledged record is on disk; default `always`.
    pub fsync: FsyncPolicy,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self { max_mib: 1024, fsync: FsyncPolicy::Always }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
/// `[carousel]`: re-sends recent segments in the background, so a receiver that missed some
/// catches up without an operator. The window is the most recent segments within all three
/// bounds.
pub struct CarouselConfig {
    /// Whether the carousel runs; default on.
    pub enabled: bool,
    /// Re-send the most recent segments, oldest first, round and round: at most this many
    /// (default 2000),
    pub window_segments: u64,
    /// at most this many MiB of them (default 256),
    pub window_mib: u64,
    /// and none sealed longer ago than this many seconds (default 3600).
    pub window_seconds: u64,
    /// Share of `link.rate_mbit_s` the carousel may use; default 0.1.
    pub rate_fraction: f64,
}

impl Default for CarouselConfig {
    fn default() -> Self {
        Self { enabled: true, window_segments: 2_000, window_mib: 256, window_seconds: 3_600, rate_fraction: 0.1 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
/// `[simulator]`: a built-in plant that produces seeded samples, for demos, tests and capacity
/// measurements.
pub struct SimulatorConfig {
    /// Whether the simulator runs; default off.
    pub enabled: bool,
    /// Series it writes; default 1000.
    pub series: usize,
    /// Samples per second of each series; default 1.
    pub rate_hz: f64,
    /// Seed of its values: the same seed gives the same records; default 1.
    pub seed: u64,
    /// Stop after this many records (0: run until stopped). Used by demos and tests.
    #[serde(default)]
    pub max_records: u64,
    /// Produce samples as fast as the spool accepts them instead of in real time: the benchmark
    /// mode, which measures the sender's capacity. Default: real time.
    #[serde(default = "default_realtime")]
    pub realtime: bool,
    /// Timestamp of the first sample (ns since the Unix epoch); default: the start time. Fixing it
    /// makes the produced records reproducible, so tests can compare the replica with them.
    #[serde(default)]
    pub start_ns: Option<i64>,
}

fn default_realtime() -> bool {
    true
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self { enabled: false, series: 1_000, rate_hz: 1.0, seed: 1, max_records: 0, realtime: true, start_ns: None }
    }
}

/// Line protocol listeners; each is off unless its address is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// InfluxDB-compatible HTTP API (`/api/v2/write`, `/write`, `/ping`, `/health`).
    pub http_listen: Option<SocketAddr>,
    /// Raw line protocol over TCP, newline-delimited.
    pub tcp_listen: Option<SocketAddr>,
    /// Raw line protocol over UDP, one batch per datagram.
    pub udp_listen: Option<SocketAddr>,
    /// If set, HTTP writes need `Authorization: Token <token>` (or v1's `p=<token>`).
    pub token: Option<String>,
    /// Largest HTTP body (after gunzip) and longest TCP line, in bytes; default 32 MiB.
    pub max_body_bytes: usize,
    /// A field whose integer value is the record's quality (an OPC UA status code).
    pub quality_field: Option<String>,
    /// A tag whose value is the record's quality (a status code, or good/uncertain/bad).
    pub quality_tag: Option<String>,
    /// HTTP connections open at once; at the cap a new connection replaces the longest idle one.
    /// Default 1024.
    pub max_connections: usize,
    /// Time a request head may take from its first byte; default 10,000 ms.
    pub header_timeout_ms: u64,
    /// Time an HTTP connection may stay open with no request; default 75,000 ms.
    pub idle_timeout_ms: u64,
    /// Time a response may wait for its client to read any of it; default 30,000 ms.
    pub write_timeout_ms: u64,
    /// Time a write's body may take to arrive once its head has; default 60,000 ms.
    pub body_timeout_ms: u64,
    /// HTTP writes read, parsed and spooled at once; more are answered 503 with Retry-After.
    /// Default 16.
    pub max_concurrent_writes: usize,
    /// TCP line protocol connections served at once; more wait in the listen backlog. Default 256.
    pub tcp_max_connections: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            http_listen: None,
            tcp_listen: None,
            udp_listen: None,
            token: None,
            max_body_bytes: 32 * 1024 * 1024,
            quality_field: None,
            quality_tag: None,
            max_connections: 1_024,
            header_timeout_ms: 10_000,
            idle_timeout_ms: 75_000,
            write_timeout_ms: 30_000,
            body_timeout_ms: 60_000,
            max_concurrent_writes: 16,
            tcp_max_connections: 256,
        }
    }
}

/// `[metrics]`: the Prometheus listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where Prometheus scrapes `/metrics`; unset: no metrics listener.
    pub listen: Option<SocketAddr>,
    /// Connections open at once on the metrics listener (timeouts as `[ingest]`'s defaults);
    /// default 64.
    #[serde(default = "default_metrics_max_connections")]
    pub max_connections: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { listen: None, max_connections: default_metrics_max_connections() }
    }
}

fn default_metrics_max_connections() -> usize {
    64
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
/// `log.format`: how log lines are written (the level comes from `RUST_LOG`).
pub enum LogFormat {
    /// Human-readable lines, the default.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
/// `[log]`: logging settings.
pub struct LogConfig {
    /// The log line format; default `text`.
    #[serde(default)]
    pub format: LogFormat,
}

/// `[[sources.mqtt]]` and `[[sources.opcua]]`: clients the sender runs towards plant servers on
/// the OT network. None by default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcesConfig {
    /// One entry per `[[sources.mqtt]]` block.
    #[serde(default)]
    pub mqtt: Vec<MqttSourceConfig>,
    /// One entry per `[[sources.opcua]]` block.
    #[serde(default)]
    pub opcua: Vec<OpcuaSourceConfig>,
}

/// One MQTT broker connection and its subscriptions.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSourceConfig {
    /// Names the source in logs and metrics; default: the broker URL.
    #[serde(default)]
    pub name: Option<String>,
    /// `mqtt://host[:1883]` or `mqtts://host[:8883]` (TLS).
    pub url: String,
    /// The MQTT client id; with `clean_session = false` the broker keeps this client's
    /// subscriptions and unacknowledged QoS 1 messages across reconnects and sender restarts.
    /// Default `diode-sender`.
    #[serde(default = "default_mqtt_client_id")]
    pub client_id: String,
    /// Ask the broker to forget this client's session at each connect; default false, so no
    /// QoS 1 message is lost while the sender is away.
    #[serde(default)]
    pub clean_session: bool,
    /// MQTT user name; unset: connect without one.
    #[serde(default)]
    pub username: Option<String>,
    /// MQTT password, sent with `username`.
    #[serde(default)]
    pub password: Option<String>,
    /// CA certificates (PEM) that sign the broker's certificate; required with mqtts://.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain and key (PEM) for brokers that require client authentication.
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    /// The private key (PEM) of `client_cert_file`.
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
    /// MQTT keep-alive interval in seconds; default 30.
    #[serde(default = "default_mqtt_keep_alive")]
    pub keep_alive_s: u64,
    /// Largest MQTT packet accepted, in bytes; default 1 MiB.
    #[serde(default = "default_mqtt_max_packet")]
    pub max_packet_bytes: usize,
    /// Messages received but not yet durable (and so not yet acknowledged) at most; when full the
    /// sender stops reading and the broker holds the rest. Default 10,000.
    #[serde(default = "default_mqtt_max_pending")]
    pub max_pending_messages: usize,
    /// First reconnect delay after a lost connection, doubling up to `reconnect_max_ms`; default
    /// 500.
    #[serde(default = "default_reconnect_min")]
    pub reconnect_min_ms: u64,
    /// Longest reconnect delay; default 30,000.
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max_ms: u64,
    /// `[[sources.mqtt.subscriptions]]`: the topic filters read; at least one.
    pub subscriptions: Vec<MqttSubscriptionConfig>,
}

/// The payload formats an MQTT subscription may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadFormat {
    /// `sparkplug_b`: Sparkplug B births, data and deaths.
    SparkplugB,
    /// `json`: one object (or an array of objects) per message, read through JSON pointers.
    Json,
    /// `line_protocol`: InfluxDB line protocol, mapped as on the HTTP listener.
    LineProtocol,
}

/// One topic filter and how its payloads are read.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSubscriptionConfig {
    /// An MQTT topic filter (`+` and `#` wildcards).
    pub topic: String,
    /// 0 (at most once) or 1 (acknowledged once durable: a sender crash means redelivery).
    #[serde(default = "default_qos")]
    pub qos: u8,
    /// How the subscription's payloads are decoded; required.
    pub format: PayloadFormat,
    /// Sparkplug B: starts every series name (`<prefix><group>/<node>[/<device>]/<metric>`).
    #[serde(default)]
    pub series_prefix: String,
    /// Sparkplug B: ask an edge node for a rebirth after a sequence gap or an unknown alias, at
    /// most once per this interval; 0: never ask (the sender then publishes nothing).
    #[serde(default = "default_rebirth_interval")]
    pub rebirth_interval_ms: u64,
    /// JSON: the series name, from the topic: `{topic}` and `{1}`, `{2}`, … (its levels).
    #[serde(default = "default_json_series")]
    pub series: String,
    /// JSON: a JSON pointer (RFC 6901) to a sample's value; default `/value`.
    #[serde(default = "default_value_pointer")]
    pub value_pointer: String,
    /// JSON: a pointer to a sample's time; default `/timestamp` (absent: the receiving clock).
    #[serde(default = "default_time_pointer")]
    pub time_pointer: String,
    /// JSON: a pointer to a sample's quality; default `/quality` (absent: good).
    #[serde(default = "default_quality_pointer")]
    pub quality_pointer: String,
    /// JSON: unit of numeric times: auto, s, ms, us or ns.
    #[serde(default = "default_time_unit")]
    pub time_unit: crate::sources::json_payload::TimeUnit,
    /// JSON: "float" stores every number as a float; "auto" keeps integers as integers.
    #[serde(default = "default_value_type")]
    pub value_type: crate::sources::json_payload::ValueType,
    /// Line protocol: timestamp precision (ns, us, ms, s, m, h).
    #[serde(default = "default_precision")]
    pub precision: String,
    /// Line protocol: the tag that carries a line's quality, as in `[ingest]`.
    #[serde(default)]
    pub quality_tag: Option<String>,
    /// Line protocol: the field that carries a line's quality, as in `[ingest]`.
    #[serde(default)]
    pub quality_field: Option<String>,
}

/// OPC UA security policies diode offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SecurityPolicy {
    /// No security: only with security mode `None`.
    None,
    /// Basic256Sha256, with security mode `Sign` or `SignAndEncrypt`.
    Basic256Sha256,
}

/// OPC UA message security modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SecurityMode {
    /// Messages neither signed nor encrypted.
    None,
    /// Messages signed, readable on the wire.
    Sign,
    /// Messages signed and encrypted.
    SignAndEncrypt,
}

/// Deadband filters of monitored items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadbandType {
    /// Every change of value, status or timestamp is reported.
    None,
    /// Changes larger than `deadband_value`, in the variable's units.
    Absolute,
    /// Changes larger than `deadband_value` percent of the variable's EURange.
    Percent,
}

/// One OPC UA server connection.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpcuaSourceConfig {
    /// Names the source in logs and metrics, and is the `server` tag of every series it
    /// writes; default: the endpoint's host:port.
    #[serde(default)]
    pub name: Option<String>,
    /// `opc.tcp://host:port[/path]`.
    pub endpoint: String,
    /// Default `None`; `Basic256Sha256` needs the certificate settings below.
    #[serde(default = "default_security_policy")]
    pub security_policy: SecurityPolicy,
    /// Default `None`; must be `Sign` or `SignAndEncrypt` with `Basic256Sha256`.
    #[serde(default = "default_security_mode")]
    pub security_mode: SecurityMode,
    /// The sender's application instance certificate (DER) and private key (PEM); required
    /// when security is not None.
    #[serde(default)]
    pub certificate_file: Option<PathBuf>,
    /// The private key (PEM) of `certificate_file`.
    #[serde(default)]
    pub private_key_file: Option<PathBuf>,
    /// The server certificate (DER) to accept, pinned: any other is refused.
    #[serde(default)]
    pub server_certificate_file: Option<PathBuf>,
    /// A folder of trusted server certificates (DER, `*.der`): the server's must be among them.
    #[serde(default)]
    pub trusted_server_certificates_dir: Option<PathBuf>,
    /// OPC UA user name; unset: anonymous.
    #[serde(default)]
    pub username: Option<String>,
    /// Password sent with `username`.
    #[serde(default)]
    pub password: Option<String>,
    /// Starts every series name.
    #[serde(default)]
    pub series_prefix: String,
    /// How often the server publishes the subscription's changes; default 1000 ms.
    #[serde(default = "default_publishing_interval")]
    pub publishing_interval_ms: u64,
    /// How often the server samples each variable (0: as fast as it can); default 1000 ms.
    #[serde(default = "default_sampling_interval")]
    pub sampling_interval_ms: u64,
    /// Values the server keeps per item between publishes; default 10.
    #[serde(default = "default_queue_size")]
    pub queue_size: u32,
    /// Which changes the server reports; default `none` (every change).
    #[serde(default = "default_deadband_type")]
    pub deadband_type: DeadbandType,
    /// The deadband's size, in units or percent by `deadband_type`; default 0.
    #[serde(default)]
    pub deadband_value: f64,
    /// First reconnect delay after a lost connection, doubling up to `reconnect_max_ms`; default
    /// 500.
    #[serde(default = "default_reconnect_min")]
    pub reconnect_min_ms: u64,
    /// Longest reconnect delay; default 30,000.
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max_ms: u64,
    /// After an outage, read what was missed from the server's history (HistoryRead raw).
    #[serde(default = "default_true")]
    pub history_backfill: bool,
    /// How far back a backfill reaches at most, in seconds; default 86,400.
    #[serde(default = "default_backfill_max")]
    pub history_backfill_max_s: u64,
    /// Variables monitored at most (a bound on a browse filter that matches too much); default
    /// 10,000.
    #[serde(default = "default_max_monitored")]
    pub max_monitored_items: usize,
    /// `[[sources.opcua.nodes]]`: variables monitored by NodeId.
    #[serde(default)]
    pub nodes: Vec<OpcuaNodeConfig>,
    /// `[[sources.opcua.browse]]`: folders whose matching variables are monitored.
    #[serde(default)]
    pub browse: Vec<OpcuaBrowseConfig>,
}

/// One variable by NodeId.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpcuaNodeConfig {
    /// `ns=2;s=Line1.Temp`, `ns=3;i=1042`, …
    pub node_id: String,
    /// The series name (after `series_prefix`); default: the node's display name.
    #[serde(default)]
    pub series: Option<String>,
}

/// Every variable under a folder, found by browsing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpcuaBrowseConfig {
    /// The folder (or object) browsed, as a NodeId.
    pub root: String,
    /// A glob (`*` any run of characters, `?` one) on the browse path below the root, e.g.
    /// `Line1/*/Temp*`; a variable is taken when its path matches.
    #[serde(default = "default_browse_filter")]
    pub filter: String,
    /// Levels below the root browsed at most.
    #[serde(default = "default_browse_depth")]
    pub max_depth: usize,
}

fn default_mqtt_client_id() -> String {
    "diode-sender".to_owned()
}
fn default_mqtt_keep_alive() -> u64 {
    30
}
fn default_mqtt_max_packet() -> usize {
    1024 * 1024
}
fn default_mqtt_max_pending() -> usize {
    10_000
}
fn default_reconnect_min() -> u64 {
    500
}
fn default_reconnect_max() -> u64 {
    30_000
}
fn default_qos() -> u8 {
    1
}
fn default_rebirth_interval() -> u64 {
    10_000
}
fn default_json_series() -> String {
    "{topic}".to_owned()
}
fn default_value_pointer() -> String {
    "/value".to_owned()
}
fn default_time_pointer() -> String {
    "/timestamp".to_owned()
}
fn default_quality_pointer() -> String {
    "/quality".to_owned()
}
fn default_time_unit() -> crate::sources::json_payload::TimeUnit {
    crate::sources::json_payload::TimeUnit::Auto
}
fn default_value_type() -> crate::sources::json_payload::ValueType {
    crate::sources::json_payload::ValueType::Float
}
fn default_precision() -> String {
    "ns".to_owned()
}
fn default_security_policy() -> SecurityPolicy {
    SecurityPolicy::None
}
fn default_security_mode() -> SecurityMode {
    SecurityMode::None
}
fn default_publishing_interval() -> u64 {
    1_000
}
fn default_sampling_interval() -> u64 {
    1_000
}
fn default_queue_size() -> u32 {
    10
}
fn default_deadband_type() -> DeadbandType {
    DeadbandType::None
}
fn default_true() -> bool {
    true
}
fn default_backfill_max() -> u64 {
    86_400
}
fn default_max_monitored() -> usize {
    10_000
}
fn default_browse_filter() -> String {
    "*".to_owned()
}
fn default_browse_depth() -> usize {
    8
}

impl MqttSourceConfig {
    /// The name in logs and metrics.
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.url.clone())
    }
}

impl OpcuaSourceConfig {
    /// The name in logs and metrics and the `server` tag: `name`, else the endpoint's host:port.
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            let rest = self.endpoint.strip_prefix("opc.tcp://").unwrap_or(&self.endpoint);
            rest.split('/').next().unwrap_or(rest).to_owned()
        })
    }
}

impl SourcesConfig {
    /// Checks every source; errors name the setting as `sources.mqtt[i].…`.
    pub fn check(&self) -> anyhow::Result<()> {
        for (i, mqtt) in self.mqtt.iter().enumerate() {
            mqtt.check(&format!("sources.mqtt[{i}]"))?;
        }
        for (i, opcua) in self.opcua.iter().enumerate() {
            opcua.check(&format!("sources.opcua[{i}]"))?;
        }
        Ok(())
    }
}

impl MqttSourceConfig {
    /// Checks one broker connection and its subscriptions; `at` names it in errors.
    fn check(&self, at: &str) -> anyhow::Result<()> {
        use anyhow::ensure;
        let mqtt = self;
        ensure!(
            mqtt.url.starts_with("mqtt://") || mqtt.url.starts_with("mqtts://"),
            "{at}.url = \"{}\" must start with mqtt:// or mqtts://",
            mqtt.url
        );
        crate::sources::addresses::broker_address(&mqtt.url).map_err(|e| anyhow::anyhow!("{at}.url: {e}"))?;
        ensure!(
            !mqtt.url.starts_with("mqtts://") || mqtt.ca_file.is_some(),
            "{at}.ca_file is required with an mqtts:// url (the CA that signs the broker's certificate)"
        );
        ensure!(
            mqtt.client_cert_file.is_some() == mqtt.client_key_file.is_some(),
            "{at}.client_cert_file and {at}.client_key_file go together"
        );
        ensure!(mqtt.password.is_none() || mqtt.username.is_some(), "{at}.password is set without {at}.username");
        ensure!(!mqtt.client_id.is_empty() && mqtt.client_id.len() <= 256, "{at}.client_id must be 1 to 256 bytes");
        ensure!(
            (5..=3_600).contains(&mqtt.keep_alive_s),
            "{at}.keep_alive_s = {} must be between 5 and 3600",
            mqtt.keep_alive_s
        );
        ensure!(
            (1024..=256 * 1024 * 1024).contains(&mqtt.max_packet_bytes),
            "{at}.max_packet_bytes = {} must be between 1024 and 268435456",
            mqtt.max_packet_bytes
        );
        ensure!(
            (1..=1_000_000).contains(&mqtt.max_pending_messages),
            "{at}.max_pending_messages = {} must be between 1 and 1000000",
            mqtt.max_pending_messages
        );
        check_reconnect(at, mqtt.reconnect_min_ms, mqtt.reconnect_max_ms)?;
        ensure!(!mqtt.subscriptions.is_empty(), "{at}.subscriptions is empty: add a [[{at}.subscriptions]] topic");
        for (j, subscription) in mqtt.subscriptions.iter().enumerate() {
            subscription.check(&format!("{at}.subscriptions[{j}]"))?;
        }
        Ok(())
    }
}

impl MqttSubscriptionConfig {
    /// Checks one subscription against its payload format; `at` names it in errors.
    fn check(&self, at: &str) -> anyhow::Result<()> {
        use anyhow::{bail, ensure};
        let subscription = self;
        ensure!(subscription.qos <= 1, "{at}.qos = {} must be 0 or 1", subscription.qos);
        check_topic_filter(&subscription.topic)
            .map_err(|e| anyhow::anyhow!("{at}.topic = \"{}\": {e}", subscription.topic))?;
        match subscription.format {
            PayloadFormat::Json => {
                crate::sources::json_payload::SeriesTemplate::parse(&subscription.series)
                    .map_err(|e| anyhow::anyhow!("{at}.series: {e}"))?;
                for (name, pointer) in [
                    ("value_pointer", &subscription.value_pointer),
                    ("time_pointer", &subscription.time_pointer),
                    ("quality_pointer", &subscription.quality_pointer),
                ] {
                    ensure!(
                        pointer.is_empty() || pointer.starts_with('/'),
                        "{at}.{name} = \"{pointer}\" is not a JSON pointer: it must be empty or start with /"
                    );
                }
            }
            PayloadFormat::LineProtocol => {
                if let Err(e) = subscription.precision.parse::<crate::line_protocol::Precision>() {
                    bail!("{at}.precision = \"{}\": {e}", subscription.precision);
                }
            }
            PayloadFormat::SparkplugB => {
                ensure!(
                    subscription.topic.starts_with("spBv1.0/") || subscription.topic == "#",
                    "{at}.topic = \"{}\" is not a Sparkplug B topic (spBv1.0/…)",
                    subscription.topic
                );
            }
        }
        Ok(())
    }
}

impl OpcuaSourceConfig {
    /// Checks one server connection and the variables it names; `at` names it in errors.
    fn check(&self, at: &str) -> anyhow::Result<()> {
        use anyhow::ensure;
        let opcua = self;
        ensure!(
            opcua.endpoint.starts_with("opc.tcp://"),
            "{at}.endpoint = \"{}\" must start with opc.tcp://",
            opcua.endpoint
        );
        let secure = opcua.security_policy != SecurityPolicy::None;
        ensure!(
            secure == (opcua.security_mode != SecurityMode::None),
            "{at}: security_policy = {:?} and security_mode = {:?} do not go together (None with None; Basic256Sha256 with Sign or SignAndEncrypt)",
            opcua.security_policy,
            opcua.security_mode
        );
        if secure {
            ensure!(
                opcua.certificate_file.is_some() && opcua.private_key_file.is_some(),
                "{at}: security_policy = {:?} needs certificate_file and private_key_file (the sender's application certificate)",
                opcua.security_policy
            );
            ensure!(
                opcua.server_certificate_file.is_some() || opcua.trusted_server_certificates_dir.is_some(),
                "{at}: security_policy = {:?} needs server_certificate_file (pinned) or trusted_server_certificates_dir",
                opcua.security_policy
            );
        }
        ensure!(opcua.password.is_none() || opcua.username.is_some(), "{at}.password is set without {at}.username");
        ensure!(
            (10..=3_600_000).contains(&opcua.publishing_interval_ms),
            "{at}.publishing_interval_ms = {} must be between 10 and 3600000",
            opcua.publishing_interval_ms
        );
        ensure!(
            opcua.sampling_interval_ms <= 3_600_000,
            "{at}.sampling_interval_ms = {} must be at most 3600000 (0: the fastest the server offers)",
            opcua.sampling_interval_ms
        );
        ensure!(
            (1..=100_000).contains(&opcua.queue_size),
            "{at}.queue_size = {} must be between 1 and 100000",
            opcua.queue_size
        );
        ensure!(
            opcua.deadband_value >= 0.0 && opcua.deadband_value.is_finite(),
            "{at}.deadband_value = {} must be a finite number ≥ 0",
            opcua.deadband_value
        );
        ensure!(
            opcua.deadband_type != DeadbandType::Percent || opcua.deadband_value <= 100.0,
            "{at}.deadband_value = {} must be at most 100 with deadband_type = \"percent\"",
            opcua.deadband_value
        );
        check_reconnect(at, opcua.reconnect_min_ms, opcua.reconnect_max_ms)?;
        ensure!(
            (1..=1_000_000).contains(&opcua.max_monitored_items),
            "{at}.max_monitored_items = {} must be between 1 and 1000000",
            opcua.max_monitored_items
        );
        ensure!(
            !opcua.nodes.is_empty() || !opcua.browse.is_empty(),
            "{at} names no variables: add [[{at}.nodes]] or [[{at}.browse]]"
        );
        for (j, node) in opcua.nodes.iter().enumerate() {
            crate::sources::addresses::parse_node_id(&node.node_id)
                .map_err(|e| anyhow::anyhow!("{at}.nodes[{j}].node_id = \"{}\": {e}", node.node_id))?;
        }
        for (j, browse) in opcua.browse.iter().enumerate() {
            crate::sources::addresses::parse_node_id(&browse.root)
                .map_err(|e| anyhow::anyhow!("{at}.browse[{j}].root = \"{}\": {e}", browse.root))?;
            ensure!(
                (1..=32).contains(&browse.max_depth),
                "{at}.browse[{j}].max_depth = {} must be between 1 and 32",
                browse.max_depth
            );
        }
        Ok(())
    }
}

impl SourcesConfig {
    fn resolve_paths(&mut self, base: &Path) {
        let mqtt_paths =
            self.mqtt.iter_mut().flat_map(|m| [&mut m.ca_file, &mut m.client_cert_file, &mut m.client_key_file]);
        let opcua_paths = self.opcua.iter_mut().flat_map(|o| {
            [
                &mut o.certificate_file,
                &mut o.private_key_file,
                &mut o.server_certificate_file,
                &mut o.trusted_server_certificates_dir,
            ]
        });
        for path in mqtt_paths.chain(opcua_paths).flatten() {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
    }
}

fn check_reconnect(at: &str, min_ms: u64, max_ms: u64) -> anyhow::Result<()> {
    anyhow::ensure!((10..=600_000).contains(&min_ms), "{at}.reconnect_min_ms = {min_ms} must be between 10 and 600000");
    anyhow::ensure!(
        (min_ms..=3_600_000).contains(&max_ms),
        "{at}.reconnect_max_ms = {max_ms} must be between reconnect_min_ms ({min_ms}) and 3600000"
    );
    Ok(())
}

/// An MQTT topic filter: not empty, `#` only as the whole last level, `+` only as a whole level.
fn check_topic_filter(filter: &str) -> Result<(), &'static str> {
    if filter.is_empty() || filter.len() > 65_535 {
        return Err("a topic filter is 1 to 65535 bytes");
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i + 1 != levels.len()) {
            return Err("# must be the whole last level");
        }
        if level.contains('+') && *level != "+" {
            return Err("+ must be a whole level");
        }
    }
    Ok(())
}

fn default_bind() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}
fn default_mtu() -> usize {
    1500
}
fn default_rate() -> f64 {
    100.0
}
fn default_overhead() -> f64 {
    0.2
}
fn default_min_repair() -> u16 {
    2
}
fn default_design_loss() -> f64 {
    0.05
}
fn default_interleave() -> usize {
    8
}
fn default_beacon_interval() -> u64 {
    1_000
}
fn default_send_buffer() -> usize {
    4 * 1024 * 1024
}

impl SenderConfig {
    /// Reads, parses and checks a config file; the error names the file and the problem.
    pub fn load(path: &Path) -> anyhow::Result<SenderConfig> {
        use anyhow::Context;
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
        let mut config: SenderConfig =
            toml::from_str(&text).with_context(|| format!("config file {} is not valid", path.display()))?;
        config.resolve_paths(path.parent().unwrap_or(Path::new(".")));
        config.check().with_context(|| format!("config file {} is not valid", path.display()))?;
        Ok(config)
    }

    /// Relative paths in a config file are relative to the file, not to the working directory.
    fn resolve_paths(&mut self, base: &Path) {
        for path in [&mut self.data_dir, &mut self.keys.signing_key, &mut self.keys.link_key] {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
        self.sources.resolve_paths(base);
    }

    /// Checks every setting against its bounds; the error names the setting, its value and the
    /// allowed range.
    pub fn check(&self) -> anyhow::Result<()> {
        use anyhow::ensure;
        let link = &self.link;
        ensure!((576..=65_535).contains(&link.mtu), "link.mtu = {} is outside 576..=65535", link.mtu);
        ensure!(
            link.rate_mbit_s > 0.0 && link.rate_mbit_s <= 100_000.0,
            "link.rate_mbit_s = {} must be above 0 and at most 100000",
            link.rate_mbit_s
        );
        ensure!(
            (0.0..=4.0).contains(&link.repair_overhead),
            "link.repair_overhead = {} must be between 0.0 and 4.0 (0.2 means 20 %)",
            link.repair_overhead
        );
        ensure!(
            (0.0..=0.5).contains(&link.design_loss_rate),
            "link.design_loss_rate = {} must be between 0.0 and 0.5",
            link.design_loss_rate
        );
        ensure!(
            (1..=64).contains(&link.interleave_segments),
            "link.interleave_segments = {} must be between 1 and 64",
            link.interleave_segments
        );
        ensure!(link.beacon_interval_ms >= 100, "link.beacon_interval_ms must be at least 100");
        let segments = &self.segments;
        ensure!(
            (1..=1_000_000).contains(&segments.max_records),
            "segments.max_records = {} must be between 1 and 1000000",
            segments.max_records
        );
        ensure!(
            (1..=60_000).contains(&segments.max_age_ms),
            "segments.max_age_ms = {} must be between 1 and 60000",
            segments.max_age_ms
        );
        ensure!((1..=19).contains(&segments.zstd_level), "segments.zstd_level must be between 1 and 19");
        ensure!(
            segments.encoder_threads <= 64,
            "segments.encoder_threads = {} must be between 0 and 64 (one per core is enough)",
            segments.encoder_threads
        );
        ensure!(segments.retention_mib >= 1, "segments.retention_mib must be at least 1");
        ensure!(segments.max_unsent_mib >= 1, "segments.max_unsent_mib must be at least 1");
        ensure!(self.spool.max_mib >= 1, "spool.max_mib must be at least 1");
        ensure!(
            (1024..=1024 * 1024 * 1024).contains(&self.ingest.max_body_bytes),
            "ingest.max_body_bytes = {} must be between 1024 and 1073741824",
            self.ingest.max_body_bytes
        );
        self.check_connection_limits()?;
        let carousel = &self.carousel;
        ensure!(
            (0.0..=0.9).contains(&carousel.rate_fraction),
            "carousel.rate_fraction = {} must be between 0.0 and 0.9",
            carousel.rate_fraction
        );
        let simulator = &self.simulator;
        ensure!(
            !simulator.enabled || (1..=1_000_000).contains(&simulator.series),
            "simulator.series = {} must be between 1 and 1000000",
            simulator.series
        );
        ensure!(
            !simulator.enabled || (simulator.rate_hz > 0.0 && simulator.rate_hz <= 10_000.0),
            "simulator.rate_hz = {} must be above 0 and at most 10000",
            simulator.rate_hz
        );
        self.sources.check()?;
        Ok(())
    }

    /// The connection caps and timeouts of the listeners.
    fn check_connection_limits(&self) -> anyhow::Result<()> {
        use anyhow::ensure;
        let ingest = &self.ingest;
        for (name, value) in [
            ("ingest.max_connections", ingest.max_connections),
            ("ingest.tcp_max_connections", ingest.tcp_max_connections),
            ("metrics.max_connections", self.metrics.max_connections),
        ] {
            ensure!((1..=65_536).contains(&value), "{name} = {value} must be between 1 and 65536");
        }
        ensure!(
            (1..=1_024).contains(&ingest.max_concurrent_writes),
            "ingest.max_concurrent_writes = {} must be between 1 and 1024",
            ingest.max_concurrent_writes
        );
        for (name, value) in [
            ("ingest.header_timeout_ms", ingest.header_timeout_ms),
            ("ingest.idle_timeout_ms", ingest.idle_timeout_ms),
            ("ingest.write_timeout_ms", ingest.write_timeout_ms),
            ("ingest.body_timeout_ms", ingest.body_timeout_ms),
        ] {
            ensure!((100..=3_600_000).contains(&value), "{name} = {value} must be between 100 and 3600000 (an hour)");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        sender_id = 1
        data_dir = "state"
        [keys]
        signing_key = "keys/signing.key"
        link_key = "keys/link.key"
        [link]
        destination = "127.0.0.1:7400"
    "#;

    #[test]
    fn a_minimal_config_takes_the_documented_defaults() {
        let config: SenderConfig = toml::from_str(MINIMAL).unwrap();
        config.check().unwrap();
        assert_eq!(config.link.mtu, 1500);
        assert_eq!(config.segments.max_age_ms, 1_000);
        assert_eq!(config.spool.fsync, FsyncPolicy::Always);
    }

    #[test]
    fn the_example_config_in_the_repository_is_valid() {
        let config: SenderConfig = toml::from_str(include_str!("../../config/sender.toml")).unwrap();
        config.check().unwrap();
    }

    #[test]
    fn a_section_may_set_only_some_of_its_settings() {
        let text = format!("{MINIMAL}\n[segments]\nmax_age_ms = 1000\n[simulator]\nenabled = true\n");
        let config: SenderConfig = toml::from_str(&text).unwrap();
        assert_eq!(config.segments.max_age_ms, 1000);
        assert_eq!(config.segments.max_records, 250_000);
        assert!(config.simulator.enabled && config.simulator.realtime);
    }

    #[test]
    fn a_misspelt_setting_is_an_error_naming_it() {
        let text = MINIMAL.replace("[link]", "[link]\nrate_mbits = 5");
        let error = toml::from_str::<SenderConfig>(&text).unwrap_err().to_string();
        assert!(error.contains("rate_mbits"), "{error}");
    }

    #[test]
    fn out_of_range_values_name_the_setting_and_the_bounds() {
        let mut config: SenderConfig = toml::from_str(MINIMAL).unwrap();
        config.link.mtu = 100;
        let error = config.check().unwrap_err().to_string();
        assert!(error.contains("link.mtu = 100"), "{error}");
        let mut config: SenderConfig = toml::from_str(MINIMAL).unwrap();
        config.segments.encoder_threads = 1_000;
        let error = config.check().unwrap_err().to_string();
        assert!(error.contains("segments.encoder_threads = 1000 must be between 0 and 64"), "{error}");
    }

    const SOURCES: &str = r#"
        [[sources.mqtt]]
        url = "mqtt://broker.ot.local"
        [[sources.mqtt.subscriptions]]
        topic = "spBv1.0/plant/#"
        format = "sparkplug_b"
        [[sources.mqtt.subscriptions]]
        topic = "plant/+/+"
        format = "json"
        series = "plant1/{2}/{3}"
        [[sources.opcua]]
        endpoint = "opc.tcp://plc1.ot.local:4840"
        [[sources.opcua.browse]]
        root = "ns=2;s=Line1"
    "#;

    fn with_sources(edit: impl Fn(&str) -> String) -> anyhow::Result<SenderConfig> {
        let text = format!("{MINIMAL}\n{}", edit(SOURCES));
        let config: SenderConfig = toml::from_str(&text)?;
        config.check()?;
        Ok(config)
    }

    #[test]
    fn sources_take_the_documented_defaults() {
        let config = with_sources(str::to_owned).unwrap();
        let mqtt = &config.sources.mqtt[0];
        assert_eq!((mqtt.client_id.as_str(), mqtt.clean_session, mqtt.keep_alive_s), ("diode-sender", false, 30));
        assert_eq!(mqtt.subscriptions[0].qos, 1);
        assert_eq!(mqtt.subscriptions[1].value_pointer, "/value");
        assert_eq!(mqtt.display_name(), "mqtt://broker.ot.local");
        let opcua = &config.sources.opcua[0];
        assert_eq!((opcua.security_policy, opcua.security_mode), (SecurityPolicy::None, SecurityMode::None));
        assert_eq!((opcua.publishing_interval_ms, opcua.queue_size, opcua.history_backfill), (1_000, 10, true));
        assert_eq!(opcua.browse[0].filter, "*");
        assert_eq!(opcua.display_name(), "plc1.ot.local:4840");
    }

    #[test]
    fn a_misspelt_source_setting_is_an_error_naming_it() {
        let error = with_sources(|s| s.replace("format = \"json\"", "format = \"json\"\nqso = 1")).unwrap_err();
        assert!(format!("{error:#}").contains("qso"), "{error:#}");
        let error = with_sources(|s| s.replace("sparkplug_b", "sparkplug")).unwrap_err();
        assert!(format!("{error:#}").contains("sparkplug"), "{error:#}");
    }

    #[test]
    fn out_of_range_source_settings_name_the_setting() {
        let cases = [
            (
                "format = \"sparkplug_b\"",
                "format = \"sparkplug_b\"\nqos = 2",
                "sources.mqtt[0].subscriptions[0].qos = 2",
            ),
            ("plant1/{2}/{3}", "plant1/{x}", "sources.mqtt[0].subscriptions[1].series"),
            ("mqtt://broker.ot.local", "mqtts://broker.ot.local", "sources.mqtt[0].ca_file"),
            ("mqtt://broker.ot.local", "http://broker", "sources.mqtt[0].url"),
            ("root = \"ns=2;s=Line1\"", "root = \"Line1\"", "sources.opcua[0].browse[0].root"),
            (
                "endpoint = \"opc.tcp://plc1.ot.local:4840\"",
                "endpoint = \"opc.tcp://plc1:4840\"\nsecurity_mode = \"Sign\"",
                "sources.opcua[0]",
            ),
            (
                "endpoint = \"opc.tcp://plc1.ot.local:4840\"",
                "endpoint = \"opc.tcp://plc1:4840\"\nqueue_size = 0",
                "sources.opcua[0].queue_size = 0",
            ),
        ];
        for (from, to, named) in cases {
            let error = with_sources(|s| s.replacen(from, to, 1)).unwrap_err();
            assert!(format!("{error:#}").contains(named), "{to}: {error:#}");
        }
    }

    #[test]
    fn connection_limits_default_to_the_documented_values_and_name_the_setting_when_out_of_range() {
        let config: SenderConfig = toml::from_str(MINIMAL).unwrap();
        let ingest = &config.ingest;
        assert_eq!(
            (ingest.max_connections, ingest.header_timeout_ms, ingest.idle_timeout_ms, ingest.write_timeout_ms),
            (1_024, 10_000, 75_000, 30_000)
        );
        assert_eq!(
            (ingest.body_timeout_ms, ingest.max_concurrent_writes, ingest.tcp_max_connections),
            (60_000, 16, 256)
        );
        assert_eq!(config.metrics.max_connections, 64);
        let text = format!("{MINIMAL}\n[ingest]\nmax_connections = 0\n");
        let error = toml::from_str::<SenderConfig>(&text).unwrap().check().unwrap_err().to_string();
        assert!(error.contains("ingest.max_connections = 0"), "{error}");
        let text = format!("{MINIMAL}\n[ingest]\nheader_timeout_ms = 5\n");
        let error = toml::from_str::<SenderConfig>(&text).unwrap().check().unwrap_err().to_string();
        assert!(error.contains("ingest.header_timeout_ms = 5"), "{error}");
        let text = format!("{MINIMAL}\n[metrics]\nmax_connections = 100000\n");
        let error = toml::from_str::<SenderConfig>(&text).unwrap().check().unwrap_err().to_string();
        assert!(error.contains("metrics.max_connections = 100000"), "{error}");
    }

    #[test]
    fn relative_paths_are_taken_from_the_config_file_location() {
        let mut config: SenderConfig = toml::from_str(MINIMAL).unwrap();
        config.resolve_paths(Path::new("/etc/diode"));
        assert_eq!(config.keys.link_key, Path::new("/etc/diode/keys/link.key"));
    }
}
