//! Parquet for data lakes: one file per hour of data time in Hive partitions
//! (`<dir>/date=YYYY-MM-DD/hour=HH/part-0.parquet`), zstd, typed columns, written under a
//! temporary name, synced and renamed, so a reader sees the old file or the new, never a part.
//!
//! An hour's file is always written whole from the replica (its merged, last-write-wins points),
//! never appended: exporting an hour again, after late data, replaces the file with the hour as
//! the replica now holds it, so no point is ever in two files or twice in one. The continuous
//! sink ([`ParquetSink`]) marks the hours each applied segment touched and writes an hour once the
//! wall clock is `close_after_s` past its end; its cursor stays before the first segment whose
//! hour is not written yet, so a restart marks those hours again. `diode-receiver export parquet`
//! ([`export`]) writes a range of hours from a read-only replica.
//!
//! Columns: `series` (string, dictionary-encoded), `tags` (string: a JSON object), `time`
//! (timestamp, ns, UTC), `value_f64`, `value_i64`, `value_bool`, `value_text` (the one of the
//! point's kind set, the others null), `quality` (uint32, OPC UA status code).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use arrow_array::builder::{BooleanBufferBuilder, NullBufferBuilder, StringBuilder};
use arrow_array::types::{ArrowPrimitiveType, Float64Type, Int32Type, Int64Type};
use arrow_array::{
    ArrayRef, BooleanArray, DictionaryArray, Int32Array, PrimitiveArray, RecordBatch, StringArray,
    TimestampNanosecondArray, UInt32Array,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use diode_common::codec::{SeriesColumns, Values};
use diode_common::record::Value;
use diode_replica::{BUCKET_NS, Replica, SeriesInfo, bucket_start};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use super::config::ParquetSinkConfig;
use super::{Batch, Sink, SinkError};
use crate::locks;
use crate::query::core::glob::glob_matches;
use crate::state::Shared;
use crate::time::now_ns;

/// Rows per Arrow record batch (and at most per Parquet row group flush).
const ROWS_PER_BATCH: usize = 128 * 1024;
/// Name of every hour's file inside its partition folder.
const FILE_NAME: &str = "part-0.parquet";

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ParquetError {
    /// Creating, writing, syncing or renaming a file or folder failed (a full disk, permissions):
    /// the hour's previous file, if any, is left as it was.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The Parquet writer refused the columns: a bug, since the schema is fixed.
    #[error("cannot encode {path} as Parquet: {source}")]
    Encode {
        /// The file being written.
        path: PathBuf,
        /// What the writer said.
        source: parquet::errors::ParquetError,
    },
    /// The Arrow columns could not be built from the points: a bug, since the schema is fixed.
    #[error("cannot build the columns of {path}: {source}")]
    Arrow {
        /// The file being written.
        path: PathBuf,
        /// What Arrow said.
        source: arrow_schema::ArrowError,
    },
    /// Reading the replica failed.
    #[error(transparent)]
    Replica(#[from] diode_replica::ReplicaError),
}

impl From<ParquetError> for SinkError {
    fn from(error: ParquetError) -> SinkError {
        match error {
            ParquetError::Replica(error) => SinkError::Replica(error),
            other => SinkError::Target(other.to_string()),
        }
    }
}

/// Read access to the replica: a read-only replica of the CLI, or the running receiver's, locked
/// only for one series' scan at a time so apply is never held up for a whole hour.
pub trait ReplicaAccess {
    /// Runs `read` with the replica, locked (if at all) only for the call.
    fn with_replica<R>(&self, read: impl FnOnce(&Replica) -> R) -> R;
}

impl ReplicaAccess for Replica {
    fn with_replica<R>(&self, read: impl FnOnce(&Replica) -> R) -> R {
        read(self)
    }
}

impl ReplicaAccess for RwLock<Replica> {
    fn with_replica<R>(&self, read: impl FnOnce(&Replica) -> R) -> R {
        read(&locks::read(self))
    }
}

/// Which series go into the files: glob patterns on the name; none: all.
#[derive(Debug, Clone, Default)]
pub struct SeriesFilter {
    /// Globs on the series name (`*` and `?`).
    pub patterns: Vec<String>,
}

impl SeriesFilter {
    /// Whether the series goes into the files.
    pub fn matches(&self, info: &SeriesInfo) -> bool {
        self.patterns.is_empty() || self.patterns.iter().any(|pattern| glob_matches(pattern, &info.key.name))
    }
}

/// The file of the hour starting at `hour_start_ns` under `directory`.
pub fn hour_path(directory: &Path, hour_start_ns: i64) -> PathBuf {
    let time = jiff::Timestamp::from_nanosecond(i128::from(hour_start_ns)).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    // A timestamp formats in UTC.
    directory
        .join(format!("date={}", time.strftime("%Y-%m-%d")))
        .join(format!("hour={}", time.strftime("%H")))
        .join(FILE_NAME)
}

/// The files' columns: series name and tags (dictionary-encoded), time (UTC, ns), one value
/// column per type, and quality.
pub fn schema() -> Arc<Schema> {
    let dictionary = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    Arc::new(Schema::new(vec![
        Field::new("series", dictionary.clone(), false),
        Field::new("tags", dictionary, false),
        Field::new("time", DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())), false),
        Field::new("value_f64", DataType::Float64, true),
        Field::new("value_i64", DataType::Int64, true),
        Field::new("value_bool", DataType::Boolean, true),
        Field::new("value_text", DataType::Utf8, true),
        Field::new("quality", DataType::UInt32, false),
    ]))
}

/// The scanned series of one record batch, turned into Arrow columns only when the batch is
/// full: each column is then one allocation of its exact size, filled a series' run at a time.
#[derive(Default)]
struct Rows {
    /// Each scanned block with its series' dictionary key.
    blocks: Vec<(i32, SeriesColumns)>,
    /// The dictionaries: each series' name and tags, by key.
    names: Vec<String>,
    tags: Vec<String>,
    /// Rows in `blocks`.
    len: usize,
}

impl Rows {
    /// Adds one series' blocks under a new dictionary key; returns their points.
    fn push_series(&mut self, info: &SeriesInfo, blocks: Vec<SeriesColumns>) -> u64 {
        let key = self.names.len() as i32;
        self.names.push(info.key.name.to_string());
        self.tags.push(tags_json(info));
        let points: usize = blocks.iter().map(SeriesColumns::len).sum();
        self.len += points;
        self.blocks.extend(blocks.into_iter().map(|block| (key, block)));
        points as u64
    }

    fn finish(&mut self, schema: &Arc<Schema>) -> Result<RecordBatch, arrow_schema::ArrowError> {
        let Rows { blocks, names, tags, len } = std::mem::take(self);
        let (mut keys, mut times, mut qualities) =
            (Vec::with_capacity(len), Vec::with_capacity(len), Vec::with_capacity(len));
        for (key, block) in &blocks {
            keys.extend(std::iter::repeat_n(*key, block.len()));
            times.extend_from_slice(&block.timestamps_ns);
            qualities.extend(block.qualities.iter().map(|quality| quality.0));
        }
        let keys = Int32Array::from(keys);
        let series = DictionaryArray::<Int32Type>::try_new(keys.clone(), Arc::new(StringArray::from(names)))?;
        let tags = DictionaryArray::<Int32Type>::try_new(keys, Arc::new(StringArray::from(tags)))?;
        let f64s = primitive_column::<Float64Type>(
            &blocks,
            len,
            |values| match values {
                Values::F64(values) => Some(values),
                _ => None,
            },
            |value| if let Value::F64(value) = value { Some(*value) } else { None },
        );
        let i64s = primitive_column::<Int64Type>(
            &blocks,
            len,
            |values| match values {
                Values::I64(values) => Some(values),
                _ => None,
            },
            |value| if let Value::I64(value) = value { Some(*value) } else { None },
        );
        let columns: Vec<ArrayRef> = vec![
            Arc::new(series),
            Arc::new(tags),
            Arc::new(TimestampNanosecondArray::from(times).with_timezone("UTC")),
            f64s,
            i64s,
            bool_column(&blocks, len),
            text_column(&blocks, len),
            Arc::new(UInt32Array::from(qualities)),
        ];
        RecordBatch::try_new(Arc::clone(schema), columns)
    }
}

/// A value column of a primitive type: the values of the blocks of that kind (`whole`) and of
/// the rows of that kind in mixed blocks (`one`), null in every other row.
fn primitive_column<T: ArrowPrimitiveType>(
    blocks: &[(i32, SeriesColumns)],
    len: usize,
    whole: impl Fn(&Values) -> Option<&Vec<T::Native>>,
    one: impl Fn(&Value) -> Option<T::Native>,
) -> ArrayRef {
    let any =
        blocks.iter().any(|(_, block)| whole(&block.values).is_some() || matches!(block.values, Values::Mixed(_)));
    if !any {
        return Arc::new(PrimitiveArray::<T>::new_null(len));
    }
    let mut values: Vec<T::Native> = Vec::with_capacity(len);
    let mut nulls = NullBufferBuilder::new(len);
    for (_, block) in blocks {
        if let Some(slice) = whole(&block.values) {
            values.extend_from_slice(slice);
            nulls.append_n_non_nulls(slice.len());
        } else if let Values::Mixed(mixed) = &block.values {
            for value in mixed {
                let value = one(value);
                nulls.append(value.is_some());
                values.push(value.unwrap_or_default());
            }
        } else {
            values.resize(values.len() + block.len(), T::Native::default());
            nulls.append_n_nulls(block.len());
        }
    }
    Arc::new(PrimitiveArray::<T>::new(values.into(), nulls.finish()))
}

/// The `value_bool` column: the booleans, null in rows of other kinds.
fn bool_column(blocks: &[(i32, SeriesColumns)], len: usize) -> ArrayRef {
    let any = blocks.iter().any(|(_, block)| matches!(block.values, Values::Bool(_) | Values::Mixed(_)));
    if !any {
        return Arc::new(BooleanArray::new_null(len));
    }
    let (mut values, mut nulls) = (BooleanBufferBuilder::new(len), NullBufferBuilder::new(len));
    for (_, block) in blocks {
        match &block.values {
            Values::Bool(bools) => {
                values.append_slice(bools);
                nulls.append_n_non_nulls(bools.len());
            }
            Values::Mixed(mixed) => {
                for value in mixed {
                    let value = if let Value::Bool(value) = value { Some(*value) } else { None };
                    nulls.append(value.is_some());
                    values.append(value.unwrap_or_default());
                }
            }
            _ => {
                values.append_n(block.len(), false);
                nulls.append_n_nulls(block.len());
            }
        }
    }
    Arc::new(BooleanArray::new(values.finish(), nulls.finish()))
}

/// The `value_text` column: the strings, null in rows of other kinds.
fn text_column(blocks: &[(i32, SeriesColumns)], len: usize) -> ArrayRef {
    let text = |value: &Value| if let Value::String(text) = value { Some(text.len()) } else { None };
    let bytes: Option<usize> = blocks
        .iter()
        .filter_map(|(_, block)| match &block.values {
            Values::String(texts) => Some(texts.iter().map(String::len).sum()),
            Values::Mixed(mixed) => mixed.iter().filter_map(text).reduce(|a, b| a + b),
            _ => None,
        })
        .reduce(|a, b| a + b);
    let Some(bytes) = bytes else {
        return Arc::new(StringArray::new_null(len));
    };
    let mut texts = StringBuilder::with_capacity(len, bytes);
    for (_, block) in blocks {
        match &block.values {
            Values::String(strings) => strings.iter().for_each(|text| texts.append_value(text)),
            Values::Mixed(mixed) => {
                for value in mixed {
                    texts.append_option(if let Value::String(text) = value { Some(text) } else { None });
                }
            }
            _ => texts.append_nulls(block.len()),
        }
    }
    Arc::new(texts.finish())
}

fn tags_json(info: &SeriesInfo) -> String {
    let tags: serde_json::Map<String, serde_json::Value> =
        info.key.tags.iter().map(|(key, value)| (key.clone(), serde_json::Value::from(value.as_str()))).collect();
    serde_json::Value::Object(tags).to_string()
}

/// Writes the hour starting at `hour_start_ns` (every matching series, as the replica holds it
/// now) to its file under `directory`, replacing it atomically; removes the file when the hour
/// holds no point. Returns the points written.
pub fn write_hour(
    replica: &impl ReplicaAccess,
    series: &[SeriesInfo],
    directory: &Path,
    hour_start_ns: i64,
) -> Result<u64, ParquetError> {
    let path = hour_path(directory, hour_start_ns);
    let folder = path.parent().expect("an hour file has a folder").to_owned();
    let temporary = folder.join(format!(".{FILE_NAME}.tmp"));
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ParquetError::Io { path, source }
    };
    let hour_end_ns = hour_start_ns.saturating_add(BUCKET_NS - 1);
    let in_hour: Vec<&SeriesInfo> = series
        .iter()
        .filter(|info| info.first_timestamp_ns <= hour_end_ns && info.last_timestamp_ns >= hour_start_ns)
        .collect();
    let schema = schema();
    let mut writer: Option<ArrowWriter<File>> = None;
    let mut rows = Rows::default();
    let mut written = 0u64;
    for info in in_hour {
        let blocks: Vec<SeriesColumns> = replica.with_replica(|replica| {
            replica.scan_columns(info.id, hour_start_ns, hour_end_ns).collect::<Result<Vec<_>, _>>()
        })?;
        if blocks.is_empty() {
            continue;
        }
        written += rows.push_series(info, blocks);
        if rows.len >= ROWS_PER_BATCH {
            let writer = match writer.as_mut() {
                Some(writer) => writer,
                None => writer.insert(open_writer(&folder, &temporary, &schema)?),
            };
            let batch = rows.finish(&schema).map_err(|source| ParquetError::Arrow { path: path.clone(), source })?;
            writer.write(&batch).map_err(|source| ParquetError::Encode { path: path.clone(), source })?;
        }
    }
    if written == 0 {
        match std::fs::remove_file(&path) {
            Ok(()) => sync_folder(&folder)?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(io(&path)(error)),
        }
        return Ok(0);
    }
    let mut writer = match writer {
        Some(writer) => writer,
        None => open_writer(&folder, &temporary, &schema)?,
    };
    if rows.len > 0 {
        let batch = rows.finish(&schema).map_err(|source| ParquetError::Arrow { path: path.clone(), source })?;
        writer.write(&batch).map_err(|source| ParquetError::Encode { path: path.clone(), source })?;
    }
    let file = writer.into_inner().map_err(|source| ParquetError::Encode { path: path.clone(), source })?;
    file.sync_all().map_err(io(&temporary))?;
    drop(file);
    std::fs::rename(&temporary, &path).map_err(io(&path))?;
    sync_folder(&folder)?;
    Ok(written)
}

fn open_writer(folder: &Path, temporary: &Path, schema: &Arc<Schema>) -> Result<ArrowWriter<File>, ParquetError> {
    std::fs::create_dir_all(folder).map_err(|source| ParquetError::Io { path: folder.to_owned(), source })?;
    let file = File::create(temporary).map_err(|source| ParquetError::Io { path: temporary.to_owned(), source })?;
    // Dictionaries only where values repeat (names, tags, quality codes): building one for
    // measurements costs a hash per value and is thrown away. Sorted times delta-encode well.
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).expect("1 is a valid zstd level")))
        .set_max_row_group_row_count(Some(1024 * 1024))
        .set_dictionary_enabled(false)
        .set_column_dictionary_enabled(ColumnPath::from("series"), true)
        .set_column_dictionary_enabled(ColumnPath::from("tags"), true)
        .set_column_dictionary_enabled(ColumnPath::from("quality"), true)
        .set_column_dictionary_enabled(ColumnPath::from("value_text"), true)
        .set_column_encoding(ColumnPath::from("time"), Encoding::DELTA_BINARY_PACKED)
        // Min and max per column chunk (what readers prune row groups with), not per page.
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .build();
    ArrowWriter::try_new(file, Arc::clone(schema), Some(properties))
        .map_err(|source| ParquetError::Encode { path: temporary.to_owned(), source })
}

fn sync_folder(folder: &Path) -> Result<(), ParquetError> {
    File::open(folder)
        .and_then(|handle| handle.sync_all())
        .map_err(|source| ParquetError::Io { path: folder.to_owned(), source })
}

/// The catalog's series that `filter` selects, in id order.
pub fn selected_series(replica: &impl ReplicaAccess, filter: &SeriesFilter) -> Vec<SeriesInfo> {
    replica.with_replica(|replica| replica.series_list().into_iter().filter(|info| filter.matches(info)).collect())
}

/// What [`export`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportSummary {
    /// Hour files written.
    pub hours: u64,
    /// Points written in them.
    pub points: u64,
}

/// Writes every hour overlapping `from_ns..=to_ns` (whole hours) that holds points of the
/// selected series; `progress(hours done, hours in all, points so far)` after each hour.
pub fn export(
    replica: &Replica,
    filter: &SeriesFilter,
    from_ns: i64,
    to_ns: i64,
    directory: &Path,
    mut progress: impl FnMut(u64, u64, u64),
) -> Result<ExportSummary, ParquetError> {
    let series = selected_series(replica, filter);
    let first = series.iter().map(|info| info.first_timestamp_ns).min().unwrap_or(i64::MAX).max(from_ns);
    let last = series.iter().map(|info| info.last_timestamp_ns).max().unwrap_or(i64::MIN).min(to_ns);
    let mut summary = ExportSummary::default();
    if first > last {
        return Ok(summary);
    }
    let (first_hour, last_hour) = (bucket_start(first), bucket_start(last));
    let total = ((last_hour - first_hour) / BUCKET_NS + 1) as u64;
    for index in 0..total {
        let hour = first_hour + index as i64 * BUCKET_NS;
        let points = write_hour(replica, &series, directory, hour)?;
        if points > 0 {
            summary.hours += 1;
            summary.points += points;
        }
        progress(index + 1, total, summary.points);
    }
    Ok(summary)
}

/// The continuous Parquet sink.
pub struct ParquetSink {
    config: ParquetSinkConfig,
    filter: SeriesFilter,
    /// Hours touched and not written yet, with the first apply number that touched each.
    dirty: BTreeMap<i64, u64>,
    /// The last apply number read.
    position: u64,
}

impl ParquetSink {
    /// A sink writing as `config` says; it learns where to resume when started.
    pub fn new(config: ParquetSinkConfig) -> ParquetSink {
        let filter = SeriesFilter { patterns: config.series.clone() };
        ParquetSink { config, filter, dirty: BTreeMap::new(), position: 0 }
    }

    /// Everything before the first segment whose hour is not written yet.
    fn durable(&self) -> u64 {
        self.dirty.values().min().map_or(self.position, |first| first - 1)
    }

    /// Writes every dirty hour that has closed.
    fn write_closed(&mut self, shared: &Shared) -> Result<(), SinkError> {
        let close_after_ns = i64::try_from(self.config.close_after_s).unwrap_or(i64::MAX).saturating_mul(1_000_000_000);
        let now = now_ns();
        let closed: Vec<i64> = self
            .dirty
            .keys()
            .copied()
            .filter(|hour| hour.saturating_add(BUCKET_NS).saturating_add(close_after_ns) <= now)
            .collect();
        if closed.is_empty() {
            return Ok(());
        }
        let series = selected_series(&shared.replica, &self.filter);
        for hour in closed {
            write_hour(&shared.replica, &series, &self.config.directory, hour)?;
            self.dirty.remove(&hour);
        }
        Ok(())
    }
}

impl Sink for ParquetSink {
    fn kind(&self) -> &'static str {
        "parquet"
    }

    fn start(&mut self, stored: u64, _shared: &Shared) -> Result<u64, SinkError> {
        std::fs::create_dir_all(&self.config.directory).map_err(|error| {
            SinkError::Target(format!("cannot create the Parquet folder {}: {error}", self.config.directory.display()))
        })?;
        self.dirty.clear();
        self.position = stored;
        Ok(stored)
    }

    fn export(&mut self, batch: &Batch, shared: &Shared) -> Result<u64, SinkError> {
        for segment in &batch.segments {
            for series in &segment.series {
                let selected = batch.series.get(&series.series_id).is_some_and(|info| self.filter.matches(info));
                if !selected {
                    continue;
                }
                // Ascending timestamps: each hour starts a run.
                let mut previous_hour = None;
                for &timestamp_ns in &series.columns.timestamps_ns {
                    let hour = bucket_start(timestamp_ns);
                    if previous_hour != Some(hour) {
                        self.dirty.entry(hour).or_insert(segment.apply_number);
                        previous_hour = Some(hour);
                    }
                }
            }
            self.position = segment.apply_number;
        }
        self.write_closed(shared)?;
        Ok(self.durable())
    }

    fn idle(&mut self, shared: &Shared) -> Result<u64, SinkError> {
        self.write_closed(shared)?;
        Ok(self.durable())
    }
}
