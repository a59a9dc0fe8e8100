//! The PostgreSQL sink (TimescaleDB when the extension is installed): each batch is one
//! transaction that copies the points (binary `COPY`) straight into the points table, or, when
//! some are there already (corrections), into a temporary staging table and upserts them from it;
//! it also upserts the series it names and moves the sink's cursor row, so a
//! crash anywhere before the commit leaves nothing and a crash after it repeats nothing.
//!
//! Tables (`<schema>.<prefix>…`, created if missing):
//!
//! | table | columns |
//! |---|---|
//! | `series` | `series_id integer` primary key, `name text`, `tags jsonb`, `kind text` (`f64`, `i64`, `bool`, `string`, kind of the first value) |
//! | `points` | `series_id integer`, `time timestamptz` (µs), `time_ns bigint` (exact), `value_f64 double precision`, `value_i64 bigint`, `value_bool boolean`, `value_text text` (the one of the point's kind; others null), `quality bigint` (OPC UA status code); primary key (`series_id`, `time`, `time_ns`) |
//! | `cursors` | `sink text` primary key, `apply_number bigint`, `updated_at timestamptz` |

use std::collections::HashSet;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use diode_common::codec::{SeriesColumns, Values};
use diode_common::record::{Value, ValueKind};
use futures_util::SinkExt;
use tokio_postgres::{Client, NoTls};

use super::config::PostgresSinkConfig;
use super::{Batch, Sink, SinkError};
use crate::state::Shared;

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01T00:00:00Z).
const POSTGRES_EPOCH_US: i64 = 946_684_800_000_000;
/// Bytes of COPY data sent at once.
const COPY_CHUNK_BYTES: usize = 1024 * 1024;

/// A PostgreSQL sink: its settings, its own single-threaded runtime and its connection.
pub struct PostgresSink {
    config: PostgresSinkConfig,
    runtime: Option<tokio::runtime::Runtime>,
    client: Option<Client>,
    /// Series already upserted on this connection.
    known_series: HashSet<u32>,
    /// The cursor row's value as of the last commit.
    cursor: u64,
}

/// The error of a PostgreSQL call with what was being done, the server's message and the chain
/// of causes (a refused connection, a failed password).
fn describe(action: &str, error: &tokio_postgres::Error) -> SinkError {
    let mut text = match error.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => error.to_string(),
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    SinkError::Target(format!("PostgreSQL, {action}: {text}"))
}

impl PostgresSink {
    /// A sink writing as `config` says; it connects (and creates its tables) when started.
    pub fn new(config: PostgresSinkConfig) -> PostgresSink {
        PostgresSink { config, runtime: None, client: None, known_series: HashSet::new(), cursor: 0 }
    }

    fn table(&self, name: &str) -> String {
        format!("{}.{}{name}", self.config.schema, self.config.table_prefix)
    }

    fn staging(&self) -> String {
        format!("{}staging", self.config.table_prefix)
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.config.statement_timeout_ms)
    }

    fn connection_config(&self) -> Result<tokio_postgres::Config, SinkError> {
        let name = &self.config.name;
        let mut config: tokio_postgres::Config = self.config.connection.parse().map_err(|error| {
            SinkError::Target(format!("sinks.postgres {name}: connection is not a valid connection string: {error}"))
        })?;
        if let Some(path) = &self.config.password_file {
            let text = std::fs::read_to_string(path).map_err(|error| {
                SinkError::Target(format!(
                    "sinks.postgres {name}: cannot read password_file {}: {error}",
                    path.display()
                ))
            })?;
            config.password(text.lines().next().unwrap_or_default());
        }
        config.connect_timeout(self.timeout());
        config.application_name("diode-receiver");
        Ok(config)
    }

    /// Runs `work` on the sink's runtime, bounded by the statement timeout.
    fn block_on<T>(
        runtime: &tokio::runtime::Runtime,
        timeout: Duration,
        action: &str,
        work: impl Future<Output = Result<T, SinkError>>,
    ) -> Result<T, SinkError> {
        runtime.block_on(async {
            match tokio::time::timeout(timeout, work).await {
                Ok(result) => result,
                Err(_) => Err(SinkError::Target(format!(
                    "PostgreSQL, {action}: no answer within statement_timeout_ms ({} ms)",
                    timeout.as_millis()
                ))),
            }
        })
    }

    fn runtime(&mut self) -> Result<&tokio::runtime::Runtime, SinkError> {
        if self.runtime.is_none() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|error| SinkError::Target(format!("cannot start the PostgreSQL sink's runtime: {error}")))?;
            self.runtime = Some(runtime);
        }
        Ok(self.runtime.as_ref().expect("set above"))
    }

    fn setup_statements(&self) -> Vec<String> {
        let (series, points, cursors) = (self.table("series"), self.table("points"), self.table("cursors"));
        vec![
            format!("CREATE SCHEMA IF NOT EXISTS {}", self.config.schema),
            format!(
                "CREATE TABLE IF NOT EXISTS {series} (series_id integer PRIMARY KEY, name text NOT NULL, \
                 tags jsonb NOT NULL, kind text NOT NULL)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {points} (series_id integer NOT NULL, time timestamptz NOT NULL, \
                 time_ns bigint NOT NULL, value_f64 double precision, value_i64 bigint, value_bool boolean, \
                 value_text text, quality bigint NOT NULL, PRIMARY KEY (series_id, time, time_ns))"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {cursors} (sink text PRIMARY KEY, apply_number bigint NOT NULL, \
                 updated_at timestamptz NOT NULL DEFAULT now())"
            ),
            format!("CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {points}) ON COMMIT DELETE ROWS", self.staging()),
        ]
    }
}

impl Sink for PostgresSink {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn start(&mut self, _stored: u64, _shared: &Shared) -> Result<u64, SinkError> {
        self.client = None;
        self.known_series.clear();
        let config = self.connection_config()?;
        let (timeout, statements) = (self.timeout(), self.setup_statements());
        let (points, cursors, name) = (self.table("points"), self.table("cursors"), self.config.name.clone());
        let runtime = self.runtime()?;
        let (client, cursor) = Self::block_on(runtime, timeout, "connecting", async {
            let (client, connection) = config.connect(NoTls).await.map_err(|error| describe("connecting", &error))?;
            tokio::spawn(async move {
                // Ends when the client is dropped or the server goes away; the next call then fails.
                let _ = connection.await;
            });
            client
                .batch_execute(&format!("SET statement_timeout = {}", timeout.as_millis()))
                .await
                .map_err(|error| describe("setting the statement timeout", &error))?;
            for statement in &statements {
                client.batch_execute(statement).await.map_err(|error| describe("creating the tables", &error))?;
            }
            let timescale = client
                .query_opt("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'", &[])
                .await
                .map_err(|error| describe("looking for TimescaleDB", &error))?
                .is_some();
            if timescale {
                client
                    .execute(
                        "SELECT create_hypertable($1::text::regclass, 'time', if_not_exists => TRUE, migrate_data => TRUE)",
                        &[&points],
                    )
                    .await
                    .map_err(|error| describe("making the points table a hypertable", &error))?;
            }
            client
                .execute(
                    &format!("INSERT INTO {cursors} (sink, apply_number) VALUES ($1, 0) ON CONFLICT DO NOTHING"),
                    &[&name],
                )
                .await
                .map_err(|error| describe("creating the cursor row", &error))?;
            let row = client
                .query_one(&format!("SELECT apply_number FROM {cursors} WHERE sink = $1"), &[&name])
                .await
                .map_err(|error| describe("reading the cursor", &error))?;
            let cursor: i64 = row.get(0);
            Ok((client, cursor))
        })?;
        tracing::info!(sink = %self.config.name, cursor, "PostgreSQL sink connected");
        self.client = Some(client);
        self.cursor = u64::try_from(cursor).map_err(|_| {
            SinkError::Target(format!("PostgreSQL: the cursor row of {} is negative", self.config.name))
        })?;
        Ok(self.cursor)
    }

    fn export(&mut self, batch: &Batch, _shared: &Shared) -> Result<u64, SinkError> {
        let copy = encode_copy(batch);
        let new_series = self.new_series_rows(batch);
        let statements = Statements {
            series: self.table("series"),
            points: self.table("points"),
            cursors: self.table("cursors"),
            staging: self.staging(),
        };
        let (name, from, to) = (self.config.name.clone(), self.cursor as i64, batch.last_apply_number() as i64);
        let timeout = self.timeout();
        let client = self.client.as_mut().ok_or_else(|| SinkError::Target("PostgreSQL: not connected".to_owned()))?;
        let runtime = self.runtime.as_ref().expect("a connected sink has its runtime");
        Self::block_on(runtime, timeout, "exporting a batch", async {
            let mut transaction = client.transaction().await.map_err(|error| describe("beginning", &error))?;
            if !new_series.ids.is_empty() {
                transaction
                    .execute(
                        &format!(
                            "INSERT INTO {} SELECT id, name, tags::jsonb, kind FROM \
                             unnest($1::integer[], $2::text[], $3::text[], $4::text[]) AS s(id, name, tags, kind) \
                             ON CONFLICT (series_id) DO UPDATE SET name = EXCLUDED.name, tags = EXCLUDED.tags, \
                             kind = EXCLUDED.kind",
                            statements.series
                        ),
                        &[&new_series.ids, &new_series.names, &new_series.tags, &new_series.kinds],
                    )
                    .await
                    .map_err(|error| describe("upserting series", &error))?;
            }
            // Usually every point is new: copy straight into the points table, inside a savepoint.
            // A point already there (a correction) fails that copy; then the batch goes through
            // the staging table and an upsert instead.
            let direct = transaction.savepoint("direct_copy").await.map_err(|error| describe("a savepoint", &error))?;
            match copy_in(&direct, &statements.points, &copy).await {
                Ok(()) => direct.commit().await.map_err(|error| describe("releasing the savepoint", &error))?,
                Err(error) if error.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
                    direct.rollback().await.map_err(|error| describe("rolling back the savepoint", &error))?;
                    copy_in(&transaction, &statements.staging, &copy)
                        .await
                        .map_err(|error| describe("copying points", &error))?;
                    transaction
                        .execute(
                            &format!(
                                "INSERT INTO {} SELECT * FROM {} ON CONFLICT (series_id, time, time_ns) DO UPDATE SET \
                                 value_f64 = EXCLUDED.value_f64, value_i64 = EXCLUDED.value_i64, \
                                 value_bool = EXCLUDED.value_bool, value_text = EXCLUDED.value_text, \
                                 quality = EXCLUDED.quality",
                                statements.points, statements.staging
                            ),
                            &[],
                        )
                        .await
                        .map_err(|error| describe("upserting points", &error))?;
                }
                Err(error) => return Err(describe("copying points", &error)),
            }
            let moved = transaction
                .execute(
                    &format!(
                        "UPDATE {} SET apply_number = $1, updated_at = now() WHERE sink = $2 AND apply_number = $3",
                        statements.cursors
                    ),
                    &[&to, &name, &from],
                )
                .await
                .map_err(|error| describe("moving the cursor", &error))?;
            if moved != 1 {
                return Err(SinkError::Target(format!(
                    "PostgreSQL: the cursor row of sink {name} is no longer {from}: another receiver writes to the same \
                     tables under this sink name; give each receiver its own sink name or table_prefix"
                )));
            }
            transaction.commit().await.map_err(|error| describe("committing", &error))
        })?;
        self.known_series.extend(new_series.ids.iter().map(|&id| id as u32));
        self.cursor = batch.last_apply_number();
        Ok(self.cursor)
    }

    fn idle(&mut self, _shared: &Shared) -> Result<u64, SinkError> {
        Ok(self.cursor)
    }
}

/// Binary COPY of `copy` into `table` (its columns in the points table's order).
async fn copy_in(
    transaction: &tokio_postgres::Transaction<'_>,
    table: &str,
    copy: &[Bytes],
) -> Result<(), tokio_postgres::Error> {
    let sink = transaction
        .copy_in(&format!(
            "COPY {table} (series_id, time, time_ns, value_f64, value_i64, value_bool, value_text, quality) \
             FROM STDIN (FORMAT binary)"
        ))
        .await?;
    futures_util::pin_mut!(sink);
    for chunk in copy {
        sink.send(chunk.clone()).await?;
    }
    sink.finish().await?;
    Ok(())
}

struct Statements {
    series: String,
    points: String,
    cursors: String,
    staging: String,
}

/// Series rows to upsert, as columns for `unnest`.
#[derive(Default)]
struct SeriesRows {
    ids: Vec<i32>,
    names: Vec<String>,
    tags: Vec<String>,
    kinds: Vec<String>,
}

impl PostgresSink {
    fn new_series_rows(&self, batch: &Batch) -> SeriesRows {
        let mut rows = SeriesRows::default();
        let mut ids: Vec<u32> = batch.series.keys().copied().filter(|id| !self.known_series.contains(id)).collect();
        ids.sort_unstable();
        for id in ids {
            let info = &batch.series[&id];
            let tags: serde_json::Map<String, serde_json::Value> = info
                .key
                .tags
                .iter()
                .map(|(key, value)| (key.clone(), serde_json::Value::from(value.as_str())))
                .collect();
            rows.ids.push(id as i32);
            rows.names.push(info.key.name.to_string());
            rows.tags.push(serde_json::Value::Object(tags).to_string());
            rows.kinds.push(kind_name(info.kind).to_owned());
        }
        rows
    }
}

/// The name of a value type in the series table's `kind` column.
pub fn kind_name(kind: ValueKind) -> &'static str {
    match kind {
        ValueKind::F64 => "f64",
        ValueKind::I64 => "i64",
        ValueKind::Bool => "bool",
        ValueKind::String => "string",
    }
}

/// The points of `batch` in PostgreSQL's binary COPY format, in chunks of about 1 MiB.
pub fn encode_copy(batch: &Batch) -> Vec<Bytes> {
    let mut chunks = Vec::new();
    let mut out = BytesMut::with_capacity(COPY_CHUNK_BYTES + 4096);
    out.put_slice(b"PGCOPY\n\xff\r\n\0");
    out.put_i32(0); // flags
    out.put_i32(0); // header extension length
    for segment in &batch.segments {
        for series in &segment.series {
            encode_series(&mut out, series.series_id, &series.columns, &mut chunks);
        }
    }
    out.put_i16(-1);
    chunks.push(out.freeze());
    chunks
}

fn encode_series(out: &mut BytesMut, series_id: u32, columns: &SeriesColumns, chunks: &mut Vec<Bytes>) {
    for (row, &timestamp_ns) in columns.timestamps_ns.iter().enumerate() {
        if out.len() >= COPY_CHUNK_BYTES {
            chunks.push(std::mem::replace(out, BytesMut::with_capacity(COPY_CHUNK_BYTES + 4096)).freeze());
        }
        out.put_i16(8);
        out.put_i32(4);
        out.put_i32(series_id as i32);
        out.put_i32(8);
        out.put_i64(timestamp_ns.div_euclid(1_000) - POSTGRES_EPOCH_US);
        out.put_i32(8);
        out.put_i64(timestamp_ns);
        match &columns.values {
            Values::F64(values) => put_value(out, &Value::F64(values[row])),
            Values::I64(values) => put_value(out, &Value::I64(values[row])),
            Values::Bool(values) => put_value(out, &Value::Bool(values[row])),
            Values::String(values) => put_text(out, &values[row]),
            Values::Mixed(values) => put_value(out, &values[row]),
        }
        out.put_i32(8);
        out.put_i64(i64::from(columns.qualities[row].0));
    }
}

/// The four value columns of one point: its own kind's set, the others null.
fn put_value(out: &mut BytesMut, value: &Value) {
    match value {
        Value::F64(value) => {
            out.put_i32(8);
            out.put_f64(*value);
            out.put_slice(&[0xff; 12]); // three nulls (-1 lengths)
        }
        Value::I64(value) => {
            out.put_i32(-1);
            out.put_i32(8);
            out.put_i64(*value);
            out.put_slice(&[0xff; 8]);
        }
        Value::Bool(value) => {
            out.put_slice(&[0xff; 8]);
            out.put_i32(1);
            out.put_u8(u8::from(*value));
            out.put_i32(-1);
        }
        Value::String(value) => put_text(out, value),
    }
}

/// The text column of a string point. PostgreSQL's `text` cannot hold U+0000, which diode's
/// strings may: each is written as U+2400 (SYMBOL FOR NULL, `␀`) rather than failing the batch
/// forever.
fn put_text(out: &mut BytesMut, value: &str) {
    out.put_slice(&[0xff; 12]);
    if value.contains('\0') {
        let replaced = value.replace('\0', "\u{2400}");
        out.put_i32(replaced.len() as i32);
        out.put_slice(replaced.as_bytes());
    } else {
        out.put_i32(value.len() as i32);
        out.put_slice(value.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nul_in_a_string_value_is_written_as_the_symbol_for_null() {
        let mut out = BytesMut::new();
        put_text(&mut out, "a\0b");
        assert_eq!(&out[12..16], &5i32.to_be_bytes());
        assert_eq!(&out[16..], "a\u{2400}b".as_bytes());
    }
}
