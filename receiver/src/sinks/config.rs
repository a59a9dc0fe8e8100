//! `[sinks]` in `receiver.toml`: `[[sinks.postgres]]`, `[[sinks.parquet]]` and `[[sinks.nats]]`
//! tables, their defaults and their checks. Documented setting by setting in `config/receiver.toml`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config_error::ConfigError;

/// `[sinks]`: every sink the receiver feeds from its replica.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinksConfig {
    /// `[[sinks.postgres]]`: each a PostgreSQL database fed with the replica's points.
    #[serde(default)]
    pub postgres: Vec<PostgresSinkConfig>,
    /// `[[sinks.parquet]]`: each a folder of hourly Parquet files in Hive partitions.
    #[serde(default)]
    pub parquet: Vec<ParquetSinkConfig>,
    /// `[[sinks.nats]]`: each a NATS JetStream stream fed with the replica's points.
    #[serde(default)]
    pub nats: Vec<NatsSinkConfig>,
}

/// Settings every sink has.
#[derive(Debug, Clone, Copy)]
pub struct SinkLimits {
    /// Most points read from the replica and exported in one step (one transaction, one pass).
    pub batch_points: usize,
    /// Most applied segments in one step.
    pub batch_segments: usize,
    /// First wait after a failure; doubled after each one, up to `retry_longest_ms`.
    pub retry_first_ms: u64,
    /// Longest wait between retries, in ms.
    pub retry_longest_ms: u64,
}

impl Default for SinkLimits {
    fn default() -> Self {
        SinkLimits { batch_points: 200_000, batch_segments: 1_024, retry_first_ms: 500, retry_longest_ms: 30_000 }
    }
}

/// `[[sinks.postgres]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSinkConfig {
    /// Names the sink in status, metrics and its cursor (`[A-Za-z0-9_-]`, 1 to 64 bytes, unique).
    pub name: String,
    /// libpq-style connection string (`host=… port=… user=… dbname=…` or `postgresql://…`),
    /// without the password.
    pub connection: String,
    /// A file holding the password (first line), readable by the receiver only; unset: none.
    pub password_file: Option<PathBuf>,
    /// Schema of the tables (created if missing).
    #[serde(default = "default_schema")]
    pub schema: String,
    /// Prefix of the table names: `<prefix>series`, `<prefix>points`, `<prefix>cursors`.
    #[serde(default = "default_table_prefix")]
    pub table_prefix: String,
    /// Time a connection attempt and each statement may take.
    #[serde(default = "default_statement_timeout_ms")]
    pub statement_timeout_ms: u64,
    /// Most points read from the replica and exported in one step (one transaction, one pass).
    #[serde(default = "default_batch_points")]
    pub batch_points: usize,
    /// Most applied segments in one step.
    #[serde(default = "default_batch_segments")]
    pub batch_segments: usize,
    /// First wait after a failure; doubled after each one, up to `retry_longest_ms`.
    #[serde(default = "default_retry_first_ms")]
    pub retry_first_ms: u64,
    /// Longest wait between retries, in ms (default 30,000).
    #[serde(default = "default_retry_longest_ms")]
    pub retry_longest_ms: u64,
}

/// `[[sinks.parquet]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParquetSinkConfig {
    /// Names the sink in status, metrics and its cursor (`[A-Za-z0-9_-]`, 1 to 64 bytes, unique).
    pub name: String,
    /// Folder of the Hive-partitioned files (`date=YYYY-MM-DD/hour=HH/part-0.parquet`).
    pub directory: PathBuf,
    /// An hour of data time is written once wall-clock time is this far past its end; data
    /// arriving later rewrites that hour's file (atomically).
    #[serde(default = "default_close_after_s")]
    pub close_after_s: u64,
    /// Series to export: glob patterns on the series name (`*` and `?`); empty: all.
    #[serde(default)]
    pub series: Vec<String>,
    /// Most points read from the replica and exported in one step (one transaction, one pass).
    #[serde(default = "default_batch_points")]
    pub batch_points: usize,
    /// Most applied segments in one step.
    #[serde(default = "default_batch_segments")]
    pub batch_segments: usize,
    /// First wait after a failure; doubled after each one, up to `retry_longest_ms`.
    #[serde(default = "default_retry_first_ms")]
    pub retry_first_ms: u64,
    /// Longest wait between retries, in ms (default 30,000).
    #[serde(default = "default_retry_longest_ms")]
    pub retry_longest_ms: u64,
}

/// Smallest `max_message_bytes` of a NATS sink: one point of the longest string value diode
/// carries (64 KiB), every byte escaped as `\u00XX` in JSON, still fits one message.
pub const MIN_NATS_MESSAGE_BYTES: usize = 512 * 1024;

/// `[[sinks.nats]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSinkConfig {
    /// Names the sink in status, metrics, its cursor and its messages' `Nats-Msg-Id`
    /// (`[A-Za-z0-9_-]`, 1 to 64 bytes, unique).
    pub name: String,
    /// Servers to connect to (`nats://host:4222`, `tls://host:4222`), without credentials; the
    /// client also learns the cluster's other servers from them.
    pub servers: Vec<String>,
    /// The JetStream stream (created if missing, capturing `<subject_prefix>.>`).
    #[serde(default = "default_nats_stream")]
    pub stream: String,
    /// First tokens of every subject: points go to `<prefix>.points.<sender>.<series>`, sealed
    /// segments to `<prefix>.segments.<sender>`.
    #[serde(default = "default_nats_subject_prefix")]
    pub subject_prefix: String,
    /// Copies of the stream kept by the cluster, when the sink creates it (1, 3 or 5 usually).
    #[serde(default = "default_nats_replicas")]
    pub replicas: usize,
    /// How long the server remembers a `Nats-Msg-Id` to drop a republished message, in seconds,
    /// when the sink creates the stream.
    #[serde(default = "default_nats_duplicate_window_s")]
    pub duplicate_window_s: u64,
    /// Oldest message the stream keeps, in seconds, when the sink creates it (0: no limit).
    #[serde(default)]
    pub max_age_s: u64,
    /// Most bytes the stream keeps, when the sink creates it (0: no limit); the oldest go first.
    #[serde(default)]
    pub max_bytes: u64,
    /// Also publish each applied segment's sealed, signed bytes on `<prefix>.segments.<sender>`.
    #[serde(default)]
    pub segments: bool,
    /// User name for user and password authentication; needs `password_file`.
    pub user: Option<String>,
    /// A file holding the password (first line), readable by the receiver only.
    pub password_file: Option<PathBuf>,
    /// A file holding an authentication token (first line); instead of `user`.
    pub token_file: Option<PathBuf>,
    /// PEM file of the authority that signed the servers' certificates; set: TLS is required.
    pub tls_ca_certificate: Option<PathBuf>,
    /// PEM certificate of this receiver, for servers that verify clients (with `tls_client_key`).
    pub tls_client_certificate: Option<PathBuf>,
    /// PEM private key of `tls_client_certificate`.
    pub tls_client_key: Option<PathBuf>,
    /// Connecting, each stream request and each publish acknowledgement may take this long, in ms.
    #[serde(default = "default_nats_timeout_ms")]
    pub timeout_ms: u64,
    /// Most bytes of one message's body; a series with more points in one segment is split into
    /// several messages. Must be below the servers' `max_payload`.
    #[serde(default = "default_nats_max_message_bytes")]
    pub max_message_bytes: usize,
    /// Most messages published and not yet acknowledged at once.
    #[serde(default = "default_nats_max_in_flight")]
    pub max_in_flight: usize,
    /// Most points read from the replica and exported in one step (one transaction, one pass).
    #[serde(default = "default_batch_points")]
    pub batch_points: usize,
    /// Most applied segments in one step.
    #[serde(default = "default_batch_segments")]
    pub batch_segments: usize,
    /// First wait after a failure; doubled after each one, up to `retry_longest_ms`.
    #[serde(default = "default_retry_first_ms")]
    pub retry_first_ms: u64,
    /// Longest wait between retries, in ms (default 30,000).
    #[serde(default = "default_retry_longest_ms")]
    pub retry_longest_ms: u64,
}

fn default_batch_points() -> usize {
    SinkLimits::default().batch_points
}

fn default_batch_segments() -> usize {
    SinkLimits::default().batch_segments
}

fn default_retry_first_ms() -> u64 {
    SinkLimits::default().retry_first_ms
}

fn default_retry_longest_ms() -> u64 {
    SinkLimits::default().retry_longest_ms
}

macro_rules! limits_of {
    ($sink:ty) => {
        impl $sink {
            /// The sink's batch and retry limits.
            pub fn limits(&self) -> SinkLimits {
                SinkLimits {
                    batch_points: self.batch_points,
                    batch_segments: self.batch_segments,
                    retry_first_ms: self.retry_first_ms,
                    retry_longest_ms: self.retry_longest_ms,
                }
            }
        }
    };
}
limits_of!(PostgresSinkConfig);
limits_of!(ParquetSinkConfig);
limits_of!(NatsSinkConfig);

fn default_schema() -> String {
    "public".to_owned()
}

fn default_table_prefix() -> String {
    "diode_".to_owned()
}

fn default_statement_timeout_ms() -> u64 {
    30_000
}

fn default_close_after_s() -> u64 {
    300
}

fn default_nats_stream() -> String {
    "DIODE".to_owned()
}

fn default_nats_subject_prefix() -> String {
    "diode".to_owned()
}

fn default_nats_replicas() -> usize {
    1
}

fn default_nats_duplicate_window_s() -> u64 {
    120
}

fn default_nats_timeout_ms() -> u64 {
    10_000
}

fn default_nats_max_message_bytes() -> usize {
    MIN_NATS_MESSAGE_BYTES
}

fn default_nats_max_in_flight() -> usize {
    4_096
}

/// A name NATS takes as a stream name or subject token: ASCII letters, digits, `_` and `-`.
fn is_nats_token(text: &str) -> bool {
    !text.is_empty() && text.len() <= 64 && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn ensure(holds: bool, message: String) -> Result<(), ConfigError> {
    if holds { Ok(()) } else { Err(ConfigError::Sink(message)) }
}

/// A name PostgreSQL takes without quoting: ASCII letters, digits and `_`, not starting with a digit.
fn is_plain_identifier(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 40
        && !text.starts_with(|c: char| c.is_ascii_digit())
        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl SinksConfig {
    /// Resolves relative paths against the config file's folder.
    pub fn resolve_paths(&mut self, base: &Path) {
        let nats = self.nats.iter_mut().flat_map(|sink| {
            [
                &mut sink.password_file,
                &mut sink.token_file,
                &mut sink.tls_ca_certificate,
                &mut sink.tls_client_certificate,
                &mut sink.tls_client_key,
            ]
            .into_iter()
            .filter_map(Option::as_mut)
        });
        let paths = self
            .postgres
            .iter_mut()
            .filter_map(|sink| sink.password_file.as_mut())
            .chain(self.parquet.iter_mut().map(|sink| &mut sink.directory))
            .chain(nats);
        for path in paths {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
    }

    /// Checks every sink's settings, naming the sink and the setting that is wrong; names must be
    /// unique across all sinks, since each names a cursor in the replica.
    pub fn check(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::BTreeSet::new();
        let all = self
            .postgres
            .iter()
            .map(|sink| ("sinks.postgres", &sink.name, sink.limits()))
            .chain(self.parquet.iter().map(|sink| ("sinks.parquet", &sink.name, sink.limits())))
            .chain(self.nats.iter().map(|sink| ("sinks.nats", &sink.name, sink.limits())));
        for (table, name, limits) in all {
            ensure(
                !name.is_empty()
                    && name.len() <= diode_replica::MAX_SINK_NAME_BYTES
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
                format!("{table}: name {name:?} must be 1 to 64 letters, digits, '_' or '-'"),
            )?;
            ensure(names.insert(name.clone()), format!("{table}: name {name:?} is used by another sink"))?;
            ensure(
                (1..=10_000_000).contains(&limits.batch_points),
                format!("{table} {name}: batch_points must be 1..=10000000"),
            )?;
            ensure(
                (1..=100_000).contains(&limits.batch_segments),
                format!("{table} {name}: batch_segments must be 1..=100000"),
            )?;
            ensure(
                limits.retry_first_ms >= 10 && limits.retry_first_ms <= limits.retry_longest_ms,
                format!("{table} {name}: retry_first_ms must be at least 10 and at most retry_longest_ms"),
            )?;
            ensure(
                limits.retry_longest_ms <= 3_600_000,
                format!("{table} {name}: retry_longest_ms must be at most 3600000 (an hour)"),
            )?;
        }
        for sink in &self.postgres {
            let name = &sink.name;
            ensure(
                is_plain_identifier(&sink.schema),
                format!("sinks.postgres {name}: schema {:?} must be letters, digits and '_'", sink.schema),
            )?;
            ensure(
                sink.table_prefix.is_empty() || is_plain_identifier(&sink.table_prefix),
                format!("sinks.postgres {name}: table_prefix {:?} must be letters, digits and '_'", sink.table_prefix),
            )?;
            ensure(
                (100..=3_600_000).contains(&sink.statement_timeout_ms),
                format!("sinks.postgres {name}: statement_timeout_ms must be 100..=3600000"),
            )?;
            sink.connection.parse::<tokio_postgres::Config>().map_err(|error| {
                ConfigError::Sink(format!(
                    "sinks.postgres {name}: connection is not a valid connection string: {error}"
                ))
            })?;
        }
        for sink in &self.parquet {
            let name = &sink.name;
            ensure(
                sink.close_after_s <= 7 * 86_400,
                format!("sinks.parquet {name}: close_after_s must be at most 604800 (a week)"),
            )?;
            ensure(
                sink.series.iter().all(|pattern| !pattern.is_empty()),
                format!("sinks.parquet {name}: series patterns must not be empty"),
            )?;
        }
        self.nats.iter().try_for_each(NatsSinkConfig::check)
    }
}

impl NatsSinkConfig {
    /// Checks the settings only NATS sinks have.
    fn check(&self) -> Result<(), ConfigError> {
        let name = &self.name;
        ensure(!self.servers.is_empty(), format!("sinks.nats {name}: servers must name at least one server"))?;
        for server in &self.servers {
            ensure(
                !server.contains('@'),
                format!(
                    "sinks.nats {name}: server {server:?} carries credentials; give user and password_file or \
                     token_file instead"
                ),
            )?;
            server.parse::<async_nats::ServerAddr>().map_err(|error| {
                ConfigError::Sink(format!(
                    "sinks.nats {name}: server {server:?} is not a NATS address such as nats://10.0.0.7:4222: {error}"
                ))
            })?;
        }
        ensure(
            is_nats_token(&self.stream),
            format!("sinks.nats {name}: stream {:?} must be 1 to 64 letters, digits, '_' or '-'", self.stream),
        )?;
        ensure(
            self.subject_prefix.len() <= 128 && self.subject_prefix.split('.').all(is_nats_token),
            format!(
                "sinks.nats {name}: subject_prefix {:?} must be tokens of letters, digits, '_' or '-' joined by '.'",
                self.subject_prefix
            ),
        )?;
        ensure((1..=5).contains(&self.replicas), format!("sinks.nats {name}: replicas must be 1..=5"))?;
        ensure(
            (1..=86_400).contains(&self.duplicate_window_s)
                && (self.max_age_s == 0 || self.duplicate_window_s <= self.max_age_s),
            format!("sinks.nats {name}: duplicate_window_s must be 1..=86400 and at most max_age_s when that is set"),
        )?;
        ensure(
            self.user.is_some() == self.password_file.is_some(),
            format!("sinks.nats {name}: user and password_file go together"),
        )?;
        ensure(
            self.user.is_none() || self.token_file.is_none(),
            format!("sinks.nats {name}: give either user and password_file or token_file, not both"),
        )?;
        ensure(
            self.tls_client_certificate.is_some() == self.tls_client_key.is_some(),
            format!("sinks.nats {name}: tls_client_certificate and tls_client_key go together"),
        )?;
        ensure(
            (100..=3_600_000).contains(&self.timeout_ms),
            format!("sinks.nats {name}: timeout_ms must be 100..=3600000"),
        )?;
        ensure(
            (MIN_NATS_MESSAGE_BYTES..=64 * 1024 * 1024).contains(&self.max_message_bytes),
            format!(
                "sinks.nats {name}: max_message_bytes must be {}..=67108864 (the servers' max_payload must be larger)",
                MIN_NATS_MESSAGE_BYTES
            ),
        )?;
        ensure(
            (1..=65_536).contains(&self.max_in_flight),
            format!("sinks.nats {name}: max_in_flight must be 1..=65536"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<(), String> {
        let config: SinksConfig = toml::from_str(text).map_err(|error| error.to_string())?;
        config.check().map_err(|error| error.to_string())
    }

    #[test]
    fn sinks_are_checked_and_errors_name_the_sink_and_setting() {
        assert!(parse("[[postgres]]\nname = \"pg\"\nconnection = \"host=127.0.0.1 user=diode\"\n").is_ok());
        let error = parse("[[postgres]]\nname = \"pg one\"\nconnection = \"host=x\"\n").unwrap_err();
        assert!(error.contains("sinks.postgres") && error.contains("pg one"), "{error}");
        let error = parse(
            "[[postgres]]\nname = \"a\"\nconnection = \"host=x\"\n[[parquet]]\nname = \"a\"\ndirectory = \"d\"\n",
        )
        .unwrap_err();
        assert!(error.contains("used by another sink"), "{error}");
        let error =
            parse("[[postgres]]\nname = \"pg\"\nconnection = \"host=x\"\ntable_prefix = \"x; drop\"\n").unwrap_err();
        assert!(error.contains("table_prefix"), "{error}");
        let error = parse("[[parquet]]\nname = \"lake\"\ndirectory = \"d\"\nbatch_points = 0\n").unwrap_err();
        assert!(error.contains("lake") && error.contains("batch_points"), "{error}");
        let error = parse("[[postgres]]\nname = \"pg\"\nconnection = \"port=notaport\"\n").unwrap_err();
        assert!(error.contains("connection"), "{error}");
    }

    #[test]
    fn nats_sinks_are_checked_and_errors_name_the_sink_and_setting() {
        let nats = "[[nats]]\nname = \"bus\"\nservers = [\"nats://127.0.0.1:4222\"]\n";
        assert!(parse(nats).is_ok());
        for (extra, setting) in [
            ("stream = \"a.b\"", "stream"),
            ("subject_prefix = \"a..b\"", "subject_prefix"),
            ("subject_prefix = \"a.>\"", "subject_prefix"),
            ("replicas = 7", "replicas"),
            ("duplicate_window_s = 0", "duplicate_window_s"),
            ("max_age_s = 60", "duplicate_window_s"),
            ("user = \"diode\"", "password_file"),
            ("max_message_bytes = 1000", "max_message_bytes"),
            ("max_in_flight = 0", "max_in_flight"),
            ("tls_client_key = \"k\"", "tls_client_certificate"),
        ] {
            let error = parse(&format!("{nats}{extra}\n")).unwrap_err();
            assert!(error.contains("sinks.nats bus") && error.contains(setting), "{extra}: {error}");
        }
        let error = parse("[[nats]]\nname = \"bus\"\nservers = []\n").unwrap_err();
        assert!(error.contains("servers"), "{error}");
        let error = parse("[[nats]]\nname = \"bus\"\nservers = [\"nats://u:p@h:4222\"]\n").unwrap_err();
        assert!(error.contains("password_file"), "{error}");
        let error = parse("[[nats]]\nname = \"bus\"\nservers = [\"nats://h:notaport\"]\n").unwrap_err();
        assert!(error.contains("not a NATS address"), "{error}");
    }

    #[test]
    fn the_documented_nats_block_checks_and_names_the_defaults() {
        let example = include_str!("../../../config/receiver.toml");
        let block = &example[example.find("# [[sinks.nats]]").expect("a documented NATS block")..];
        let settings: String = block
            .lines()
            .filter_map(|line| line.strip_prefix("# "))
            .filter(|line| line.starts_with("[[") || line.contains(" = "))
            .filter(|line| !line.starts_with("token_file"))
            .map(|line| format!("{}\n", line.replace("[[sinks.nats]]", "[[nats]]")))
            .collect();
        let documented: SinksConfig = toml::from_str(&settings).expect("the documented block parses");
        documented.check().expect("the documented block checks");
        let defaults: SinksConfig =
            toml::from_str("[[nats]]\nname = \"bus\"\nservers = [\"nats://h:4222\"]\n").unwrap();
        let (documented, defaults) = (&documented.nats[0], &defaults.nats[0]);
        assert_eq!(
            (&documented.stream, &documented.subject_prefix, documented.replicas, documented.duplicate_window_s),
            (&defaults.stream, &defaults.subject_prefix, defaults.replicas, defaults.duplicate_window_s)
        );
        assert_eq!(
            (documented.max_age_s, documented.max_bytes, documented.segments, documented.timeout_ms),
            (defaults.max_age_s, defaults.max_bytes, defaults.segments, defaults.timeout_ms)
        );
        assert_eq!(
            (documented.max_message_bytes, documented.max_in_flight),
            (defaults.max_message_bytes, defaults.max_in_flight)
        );
    }
}
