//! diode-sender's TOML configuration: every setting, its default and its limits.
//!
//! Unknown keys are errors (a misspelt setting must not be silently ignored on a plant network),
//! and every value is checked against its bounds before anything starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SenderConfig {
    /// Names this sender in every segment and datagram; unique per receiver.
    pub sender_id: u64,
    /// Where the spool and the sealed-segment log live.
    pub data_dir: PathBuf,
    pub keys: KeysConfig,
    pub link: LinkConfig,
    #[serde(default)]
    pub segments: SegmentConfig,
    #[serde(default)]
    pub spool: SpoolConfig,
    #[serde(default)]
    pub carousel: CarouselConfig,
    #[serde(default)]
    pub ingest: IngestConfig,
    #[serde(default)]
    pub simulator: SimulatorConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub log: LogConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    pub signing_key: PathBuf,
    pub link_key: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkConfig {
    /// The receiver's address. Datagrams go there and nothing ever comes back.
    pub destination: SocketAddr,
    /// Local address to send from; the default lets the kernel choose.
    #[serde(default = "default_bind")]
    pub bind: SocketAddr,
    /// Link MTU in bytes (IP header included).
    #[serde(default = "default_mtu")]
    pub mtu: usize,
    /// Paced rate, counting every byte the link carries (IP and UDP headers included).
    #[serde(default = "default_rate")]
    pub rate_mbit_s: f64,
    /// Repair symbols as a fraction of original symbols (0.2 = 20 %).
    #[serde(default = "default_overhead")]
    pub repair_overhead: f64,
    /// Repair symbols every segment gets at least, however small.
    #[serde(default = "default_min_repair")]
    pub min_repair_symbols: u16,
    /// Random loss rate (0.05 = 5 %) that even the smallest segment must survive: small segments
    /// get more repair symbols than `repair_overhead` alone would give them.
    #[serde(default = "default_design_loss")]
    pub design_loss_rate: f64,
    /// Segments whose symbols are interleaved, so a burst of loss spreads over several.
    #[serde(default = "default_interleave")]
    pub interleave_segments: usize,
    /// Send every segment's repair symbols a second time after this delay; 0 turns it off.
    #[serde(default)]
    pub repeat_repair_after_ms: u64,
    /// Seconds between signed beacons.
    #[serde(default = "default_beacon_interval")]
    pub beacon_interval_ms: u64,
    /// Kernel send buffer in bytes.
    #[serde(default = "default_send_buffer")]
    pub send_buffer_bytes: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SegmentConfig {
    /// Seal when this many records are waiting.
    pub max_records: usize,
    /// Seal when the oldest waiting record has waited this long.
    pub max_age_ms: u64,
    pub zstd_level: i32,
    /// How much of the sealed-segment log is kept for carousel and resend, in MiB.
    pub retention_mib: u64,
    /// Sealed but unsent bytes at which sealing pauses (and the spool starts to fill).
    pub max_unsent_mib: u64,
}

impl Default for SegmentConfig {
    fn default() -> Self {
        Self { max_records: 50_000, max_age_ms: 1_000, zstd_level: 3, retention_mib: 1024, max_unsent_mib: 256 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// fsync before every acknowledgement: nothing acknowledged is ever lost.
    Always,
    /// Leave flushing to the kernel: a power cut may lose acknowledged records (a process crash
    /// does not, since the data is in the page cache).
    Never,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Records accepted but not yet sealed may take this much disk before sources get "full".
    pub max_mib: u64,
    pub fsync: FsyncPolicy,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self { max_mib: 1024, fsync: FsyncPolicy::Always }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CarouselConfig {
    pub enabled: bool,
    /// Re-send the most recent segments, oldest first, round and round: at most this many,
    pub window_segments: u64,
    /// at most this many MiB of them,
    pub window_mib: u64,
    /// and none sealed longer ago than this.
    pub window_seconds: u64,
    /// Share of the link rate the carousel may use.
    pub rate_fraction: f64,
}

impl Default for CarouselConfig {
    fn default() -> Self {
        Self { enabled: true, window_segments: 2_000, window_mib: 256, window_seconds: 3_600, rate_fraction: 0.1 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulatorConfig {
    pub enabled: bool,
    pub series: usize,
    pub rate_hz: f64,
    pub seed: u64,
    /// Stop after this many records (0: run until stopped). Used by demos and tests.
    #[serde(default)]
    pub max_records: u64,
    /// Produce samples as fast as the spool accepts them instead of in real time: the benchmark
    /// mode, which measures the sender's capacity.
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
    /// Largest HTTP body (after gunzip) and longest TCP line, in bytes.
    pub max_body_bytes: usize,
    /// A field whose integer value is the record's quality (an OPC UA status code).
    pub quality_field: Option<String>,
    /// A tag whose value is the record's quality (a status code, or good/uncertain/bad).
    pub quality_tag: Option<String>,
    /// HTTP connections open at once; at the cap a new connection replaces the longest idle one.
    pub max_connections: usize,
    /// Time a request head may take from its first byte.
    pub header_timeout_ms: u64,
    /// Time an HTTP connection may stay open with no request.
    pub idle_timeout_ms: u64,
    /// Time a response may wait for its client to read any of it.
    pub write_timeout_ms: u64,
    /// Time a write's body may take to arrive once its head has.
    pub body_timeout_ms: u64,
    /// HTTP writes read, parsed and spooled at once; more are answered 503 with Retry-After.
    pub max_concurrent_writes: usize,
    /// TCP line protocol connections served at once; more wait in the listen backlog.
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where Prometheus scrapes `/metrics`; unset: no metrics listener.
    pub listen: Option<SocketAddr>,
    /// Connections open at once on the metrics listener (timeouts as `[ingest]`'s defaults).
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
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    #[serde(default)]
    pub format: LogFormat,
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
    }

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
        assert_eq!(config.segments.max_records, 50_000);
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
