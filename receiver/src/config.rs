//! diode-receiver's TOML configuration: every setting, its default and its limits.
//!
//! Unknown keys are errors; relative paths are taken from the config file's folder.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use diode_common::keys::{TrustedKey, TrustedKeys, parse_public_key};
use serde::Deserialize;

use crate::time::parse_rfc3339;

pub use crate::config_error::ConfigError;

/// `Ok` when `holds`, otherwise the setting's message.
fn ensure(holds: bool, message: &'static str) -> Result<(), ConfigError> {
    if holds { Ok(()) } else { Err(ConfigError::Setting(message)) }
}

/// The whole of `receiver.toml` (see `config/receiver.toml`, which documents every setting with
/// its default). Read once at start by [`ReceiverConfig::load`]; nothing changes it while running.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    /// Where the RocksDB replica lives; created on first start.
    pub replica_dir: PathBuf,
    /// `[replica]`: how the replica writes.
    #[serde(default)]
    pub replica: ReplicaSettings,
    /// `[link]`: where datagrams arrive. A receiver has either `[link]` or `[upstream]`.
    #[serde(default)]
    pub link: Option<LinkConfig>,
    /// `[upstream]`: another receiver to replicate from over QUIC, instead of the diode link.
    #[serde(default)]
    pub upstream: Option<UpstreamConfig>,
    /// `[serve]`: serve this receiver's verified segments to downstream receivers over QUIC.
    #[serde(default)]
    pub serve: Option<ServeConfig>,
    /// `[keys]`: the link key (with `[link]`) and the trusted signing keys; required.
    pub keys: KeysConfig,
    /// `[reassembly]`: the bounds on segments being rebuilt and waiting to be applied.
    #[serde(default)]
    pub reassembly: ReassemblyConfig,
    /// `[http]`: the metrics, status and query listener; off unless `listen` is set.
    #[serde(default)]
    pub http: HttpConfig,
    /// `[log]`: the log line format.
    #[serde(default)]
    pub log: LogConfig,
    /// `[[sinks.postgres]]`, `[[sinks.parquet]]`, `[[sinks.nats]]`: where the replica's data flows on to.
    #[serde(default)]
    pub sinks: crate::sinks::config::SinksConfig,
}

/// `[replica]`: how the replica writes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaSettings {
    /// Whether each apply waits for the write-ahead log to reach the disk.
    #[serde(default)]
    pub sync: ReplicaSync,
    /// Seconds without a segment writing into a closed hour before the receiver merges that
    /// hour's chunks into one entry per series (an hour is closed once the newest data is ten
    /// minutes past its end). 0 merges as soon as it closes.
    #[serde(default = "default_merge_quiet_s")]
    pub merge_quiet_s: u32,
}

impl Default for ReplicaSettings {
    fn default() -> Self {
        ReplicaSettings { sync: ReplicaSync::default(), merge_quiet_s: default_merge_quiet_s() }
    }
}

fn default_merge_quiet_s() -> u32 {
    60
}

/// `replica.sync`: `never` (default) or `always`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplicaSync {
    /// The write-ahead log is written to the OS, not synced: a killed receiver loses nothing, a
    /// power cut can lose the last segments applied, which then show as gaps and are refilled.
    #[default]
    Never,
    /// Every apply and beacon syncs the write-ahead log: nothing applied is lost to a power cut,
    /// at the cost of one fsync per segment.
    Always,
}

/// `[link]`: the receiving end of the one-way link.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkConfig {
    /// Address the datagrams arrive on.
    pub listen: SocketAddr,
    /// Kernel receive buffer in bytes; large, since nothing can slow the sender down. Default
    /// 32 MiB; raise `net.core.rmem_max` to at least this.
    #[serde(default = "default_receive_buffer")]
    pub receive_buffer_bytes: usize,
}

/// `[serve]`: replication to downstream receivers over QUIC (IT side only).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// UDP address QUIC listens on.
    pub listen: SocketAddr,
    /// This receiver's certificate (PEM, from `diode-receiver tls-keygen cert`).
    pub certificate: PathBuf,
    /// Its private key (PEM); refused unless only its owner can read it (0600).
    pub private_key: PathBuf,
    /// The authority that signed the downstreams' certificates (`tls-keygen ca`): only
    /// downstreams presenting a certificate it signed are served.
    pub ca_certificate: PathBuf,
    /// Downstreams connected at once; more are refused.
    #[serde(default = "default_max_downstreams")]
    pub max_downstreams: usize,
    /// Applied segments held for downstreams that are behind; one further behind catches up
    /// from the audit log instead.
    #[serde(default = "default_feed_segments")]
    pub feed_segments: usize,
    /// KiB each connection may have sent and not yet had acknowledged: its buffer. A downstream
    /// that stops reading holds up only its own connection once this is full.
    #[serde(default = "default_send_window_kib")]
    pub send_window_kib: u64,
}

/// `[upstream]`: the receiver this one replicates from over QUIC, instead of `[link]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The upstream's `serve.listen` address.
    pub address: SocketAddr,
    /// A name in the upstream's certificate (its `tls-keygen cert --name`).
    pub server_name: String,
    /// This receiver's name in the upstream's status and metrics.
    #[serde(default = "default_downstream_name")]
    pub name: String,
    /// This receiver's certificate (PEM, from `diode-receiver tls-keygen cert`), presented to the
    /// upstream.
    pub certificate: PathBuf,
    /// Its private key (PEM); refused unless only its owner can read it (0600).
    pub private_key: PathBuf,
    /// The authority that signed the upstream's certificate: any other upstream is refused.
    pub ca_certificate: PathBuf,
}

fn default_max_downstreams() -> usize {
    16
}

fn default_feed_segments() -> usize {
    64
}

fn default_send_window_kib() -> u64 {
    32 * 1024
}

fn default_downstream_name() -> String {
    "downstream".to_owned()
}

/// `[keys]`: what authenticates datagrams and segments.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    /// The link key shared with the sender (32 bytes, hex); needed with `[link]` only.
    #[serde(default)]
    pub link_key: Option<PathBuf>,
    /// Public keys whose segments are accepted, with optional validity windows.
    pub trusted: Vec<TrustedKeyConfig>,
}

/// `[[keys.trusted]]`: one sender signing key whose segments and beacons are accepted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedKeyConfig {
    /// A `signing.pub` written by `diode-sender keygen`.
    pub public_key: PathBuf,
    /// Segments sealed before this instant (RFC 3339) are refused; unset: no lower bound.
    pub valid_from: Option<String>,
    /// Segments sealed at or after this instant (RFC 3339) are refused: set it to retire or
    /// revoke the key.
    pub valid_until: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
/// `[reassembly]`: bounds on the segments being rebuilt from symbols, checked as datagrams
/// arrive.
pub struct ReassemblyConfig {
    /// Incomplete segments held at once; beyond it the one idle longest is evicted (and counted).
    /// Default 256.
    pub max_segments_in_flight: usize,
    /// MiB held at once over all incomplete segments, bookkeeping included; default 256.
    pub max_buffered_mib: usize,
    /// An incomplete segment with no new symbol for this long is given up (the carousel or a
    /// resend brings it back); default 30,000.
    pub segment_timeout_ms: u64,
    /// Largest segment accepted, in KiB (the sender's segments must fit); default 16,384.
    pub max_segment_kib: u32,
    /// Verified segments waiting to be applied; when full, newly completed segments are shed
    /// (whole, never partly) and counted, to be filled by the carousel or a resend. Default 256.
    pub apply_queue_segments: usize,
    /// MiB those segments may hold (the one being applied included); a segment that would go
    /// beyond it is shed the same way, though one segment alone is always taken. Default 256:
    /// 256 segments of large strings (up to 16 MiB each) would otherwise queue 4 GiB.
    pub apply_queue_mib: usize,
}

impl Default for ReassemblyConfig {
    fn default() -> Self {
        Self {
            max_segments_in_flight: 256,
            max_buffered_mib: 256,
            segment_timeout_ms: 30_000,
            max_segment_kib: 16 * 1024,
            apply_queue_segments: 256,
            apply_queue_mib: 256,
        }
    }
}

/// `[http]`: the one HTTP listener, for Prometheus, status and queries.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Where `/metrics`, `/status` and `/api/v1/...` are served; unset: no HTTP listener.
    pub listen: Option<SocketAddr>,
    /// If set, API requests need `Authorization: Bearer <token>` (`/metrics` stays open).
    pub bearer_token: Option<String>,
    /// Connections open at once; at the cap a new connection replaces the longest idle one.
    /// Default 1024.
    pub max_connections: usize,
    /// Time a request head may take from its first byte; default 10,000 ms.
    pub header_timeout_ms: u64,
    /// Time a connection may stay open with no request; default 75,000 ms.
    pub idle_timeout_ms: u64,
    /// Time a response may wait for its client to read any of it; a query whose client stops
    /// reading ends after it and frees its slot. Default 30,000 ms.
    pub write_timeout_ms: u64,
    /// Time a query may run, waiting for its client included; then it ends with an error.
    /// Default 30,000 ms.
    pub query_timeout_ms: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: None,
            bearer_token: None,
            max_connections: 1_024,
            header_timeout_ms: 10_000,
            idle_timeout_ms: 75_000,
            write_timeout_ms: 30_000,
            query_timeout_ms: 30_000,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
/// `[log]`: logging settings (the level comes from `RUST_LOG`).
pub struct LogConfig {
    /// One JSON object per line instead of text; default false.
    #[serde(default)]
    pub json: bool,
}

fn default_receive_buffer() -> usize {
    32 * 1024 * 1024
}

impl ReceiverConfig {
    /// Reads, parses and checks a config file; relative paths become relative to its folder.
    pub fn load(path: &Path) -> Result<ReceiverConfig, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let mut config: ReceiverConfig =
            toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.to_owned(), source })?;
        config.resolve_paths(path.parent().unwrap_or(Path::new(".")));
        config.check().map_err(|source| ConfigError::Invalid { path: path.to_owned(), source: Box::new(source) })?;
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let mut paths = vec![&mut self.replica_dir];
        paths.extend(self.keys.link_key.as_mut());
        paths.extend(self.keys.trusted.iter_mut().map(|key| &mut key.public_key));
        if let Some(serve) = &mut self.serve {
            paths.extend([&mut serve.certificate, &mut serve.private_key, &mut serve.ca_certificate]);
        }
        if let Some(upstream) = &mut self.upstream {
            paths.extend([&mut upstream.certificate, &mut upstream.private_key, &mut upstream.ca_certificate]);
        }
        for path in paths {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
        self.sinks.resolve_paths(base);
    }

    /// Checks every setting against its bounds and every validity time; the error names the
    /// setting and its range.
    pub fn check(&self) -> Result<(), ConfigError> {
        ensure(!self.keys.trusted.is_empty(), "keys.trusted is empty; add the sender's signing.pub")?;
        self.check_replication()?;
        let r = &self.reassembly;
        ensure(
            (1..=65_536).contains(&r.max_segments_in_flight),
            "reassembly.max_segments_in_flight must be 1..=65536",
        )?;
        ensure((1..=65_536).contains(&r.max_buffered_mib), "reassembly.max_buffered_mib must be 1..=65536")?;
        ensure(r.segment_timeout_ms >= 100, "reassembly.segment_timeout_ms must be at least 100")?;
        ensure((1..=16 * 1024).contains(&r.max_segment_kib), "reassembly.max_segment_kib must be 1..=16384")?;
        ensure((1..=65_536).contains(&r.apply_queue_segments), "reassembly.apply_queue_segments must be 1..=65536")?;
        ensure((1..=65_536).contains(&r.apply_queue_mib), "reassembly.apply_queue_mib must be 1..=65536")?;
        let http = &self.http;
        ensure((1..=65_536).contains(&http.max_connections), "http.max_connections must be 1..=65536")?;
        ensure(
            (100..=3_600_000).contains(&http.header_timeout_ms),
            "http.header_timeout_ms must be 100..=3600000 (an hour)",
        )?;
        ensure(
            (100..=3_600_000).contains(&http.idle_timeout_ms),
            "http.idle_timeout_ms must be 100..=3600000 (an hour)",
        )?;
        ensure(
            (100..=3_600_000).contains(&http.write_timeout_ms),
            "http.write_timeout_ms must be 100..=3600000 (an hour)",
        )?;
        ensure(
            (100..=86_400_000).contains(&http.query_timeout_ms),
            "http.query_timeout_ms must be 100..=86400000 (a day)",
        )?;
        self.sinks.check()?;
        for key in &self.keys.trusted {
            for text in [&key.valid_from, &key.valid_until].into_iter().flatten() {
                parse_rfc3339(text).map_err(|source| ConfigError::Validity {
                    key: key.public_key.clone(),
                    text: text.clone(),
                    source,
                })?;
            }
        }
        Ok(())
    }

    /// `[link]` or `[upstream]` (exactly one), and the limits of `[serve]` and `[upstream]`.
    fn check_replication(&self) -> Result<(), ConfigError> {
        ensure(
            self.link.is_some() != self.upstream.is_some(),
            "set either [link] (segments from the diode) or [upstream] (segments from another receiver over QUIC), \
             exactly one of them",
        )?;
        ensure(
            self.link.is_none() || self.keys.link_key.is_some(),
            "keys.link_key is missing; [link] needs the link key copied from the sender",
        )?;
        if let Some(serve) = &self.serve {
            ensure((1..=1_024).contains(&serve.max_downstreams), "serve.max_downstreams must be 1..=1024")?;
            ensure((1..=65_536).contains(&serve.feed_segments), "serve.feed_segments must be 1..=65536")?;
            ensure(
                (64..=1_048_576).contains(&serve.send_window_kib),
                "serve.send_window_kib must be 64..=1048576 (64 KiB to 1 GiB)",
            )?;
        }
        if let Some(upstream) = &self.upstream {
            ensure(
                crate::replicate::protocol::is_valid_name(&upstream.name),
                "upstream.name must be 1 to 64 characters of A-Z a-z 0-9 . _ -",
            )?;
            ensure(
                !upstream.server_name.is_empty() && upstream.server_name.len() <= 253,
                "upstream.server_name must be a name in the upstream's certificate (1 to 253 characters)",
            )?;
            ensure(
                self.serve.as_ref().is_none_or(|serve| serve.listen != upstream.address),
                "serve.listen and upstream.address are the same address; a receiver cannot follow itself",
            )?;
        }
        Ok(())
    }

    /// Reads every trusted public key file.
    pub fn trusted_keys(&self) -> Result<TrustedKeys, ConfigError> {
        let mut keys = Vec::new();
        for entry in &self.keys.trusted {
            let contents = std::fs::read(&entry.public_key)
                .map_err(|source| ConfigError::ReadTrustedKey { path: entry.public_key.clone(), source })?;
            let public_key = parse_public_key(&contents, &entry.public_key.display().to_string())?;
            let mut key = TrustedKey::new(public_key);
            key.valid_from_ns = entry.valid_from.as_deref().map(parse_rfc3339).transpose()?;
            key.valid_until_ns = entry.valid_until.as_deref().map(parse_rfc3339).transpose()?;
            keys.push(key);
        }
        Ok(TrustedKeys::new(keys))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        replica_dir = "replica"
        [link]
        listen = "127.0.0.1:7400"
        [keys]
        link_key = "keys/link.key"
        [[keys.trusted]]
        public_key = "keys/signing.pub"
    "#;

    #[test]
    fn a_minimal_config_takes_the_defaults() {
        let config: ReceiverConfig = toml::from_str(MINIMAL).unwrap();
        config.check().unwrap();
        assert_eq!(config.reassembly.apply_queue_segments, 256);
        assert_eq!(config.reassembly.apply_queue_mib, 256);
        assert!(config.http.listen.is_none());
        let text = format!("{MINIMAL}\n[reassembly]\napply_queue_mib = 0\n");
        let error = toml::from_str::<ReceiverConfig>(&text).unwrap().check().unwrap_err().to_string();
        assert!(error.contains("reassembly.apply_queue_mib"), "{error}");
    }

    #[test]
    fn the_example_config_in_the_repository_is_valid() {
        let config: ReceiverConfig = toml::from_str(include_str!("../../config/receiver.toml")).unwrap();
        config.check().unwrap();
    }

    #[test]
    fn http_limits_default_to_the_documented_values_and_name_the_setting_when_out_of_range() {
        let config: ReceiverConfig = toml::from_str(MINIMAL).unwrap();
        let http = &config.http;
        assert_eq!(
            (http.max_connections, http.header_timeout_ms, http.idle_timeout_ms, http.write_timeout_ms),
            (1_024, 10_000, 75_000, 30_000)
        );
        assert_eq!(http.query_timeout_ms, 30_000);
        let text = format!("{MINIMAL}\n[http]\nquery_timeout_ms = 0\n");
        let error = toml::from_str::<ReceiverConfig>(&text).unwrap().check().unwrap_err().to_string();
        assert!(error.contains("http.query_timeout_ms"), "{error}");
        let text = format!("{MINIMAL}\n[http]\nmax_connections = 0\n");
        let error = toml::from_str::<ReceiverConfig>(&text).unwrap().check().unwrap_err().to_string();
        assert!(error.contains("http.max_connections"), "{error}");
        let error = toml::from_str::<ReceiverConfig>(&format!("{MINIMAL}\n[http]\nmax_conections = 5\n"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("max_conections"), "{error}");
    }

    #[test]
    fn a_config_without_trusted_keys_says_what_to_add() {
        let mut config: ReceiverConfig = toml::from_str(MINIMAL).unwrap();
        config.keys.trusted.clear();
        assert!(config.check().unwrap_err().to_string().contains("signing.pub"));
    }

    #[test]
    fn a_bad_validity_time_names_the_key_and_the_format() {
        let mut config: ReceiverConfig = toml::from_str(MINIMAL).unwrap();
        config.keys.trusted[0].valid_until = Some("next tuesday".into());
        let error = format!("{:#}", config.check().unwrap_err());
        assert!(error.contains("RFC 3339") && error.contains("signing.pub"), "{error}");
    }
}
