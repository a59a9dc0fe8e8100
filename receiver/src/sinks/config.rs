//! `[sinks]` in `receiver.toml`: `[[sinks.postgres]]` and `[[sinks.parquet]]` tables, their
//! defaults and their checks. Documented setting by setting in `config/receiver.toml`.

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
        let paths = self
            .postgres
            .iter_mut()
            .filter_map(|sink| sink.password_file.as_mut())
            .chain(self.parquet.iter_mut().map(|sink| &mut sink.directory));
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
            .chain(self.parquet.iter().map(|sink| ("sinks.parquet", &sink.name, sink.limits())));
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
        Ok(())
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
}
