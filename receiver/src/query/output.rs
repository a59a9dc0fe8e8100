//! Writing rows as they are computed: table, CSV, JSON or JSON lines.
//!
//! Nothing here holds more than one row, except the table, which holds its first
//! [`TABLE_SAMPLE_ROWS`] rows to size its columns and pads later rows to the same widths. JSON is
//! one object `{"<list>": [row, …]}` written row by row, with `"next"` after the list when the
//! query is paginated (HTTP). A page that is cut short (HTTP `limit`) or fails after rows were
//! sent ends with a trailer: `"next"`/`"error"` keys in JSON, a `{"next": …}` or `{"error": …}`
//! line in JSON lines, a `# next: …` or `# error: …` line in CSV. A page that left series out
//! (strings under numeric aggregates) says so the same way, as `"note"`.

use std::io::{self, Write};

use diode_common::record::{Quality, Value};

use crate::time::format_rfc3339;

/// Rows a table reads before it fixes its column widths.
pub const TABLE_SAMPLE_ROWS: usize = 100;

/// How query and listing rows are written (`--format`, HTTP `format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    #[default]
    Table,
    /// Comma-separated values with a header line, fields quoted where needed.
    Csv,
    /// One JSON document.
    Json,
    /// One JSON object per line.
    Jsonl,
}

impl Format {
    /// Reads an HTTP `format` value (`ndjson` is taken for `jsonl`).
    pub fn parse(text: &str) -> Result<Format, String> {
        match text {
            "table" => Ok(Format::Table),
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            "jsonl" | "ndjson" => Ok(Format::Jsonl),
            _ => Err(format!("{text:?} is not an output format; use json, jsonl, csv or table")),
        }
    }

    /// The HTTP `Content-Type` of an answer in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Table => "text/plain; charset=utf-8",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Json => "application/json",
            Format::Jsonl => "application/x-ndjson",
        }
    }
}

/// How times are written (`--time-format`, HTTP `time_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum TimeFormat {
    /// `2026-01-01T00:00:00.5Z` (UTC, as many fractional digits as needed).
    #[default]
    Rfc3339,
    /// Integer nanoseconds since the Unix epoch.
    Ns,
    /// Integer milliseconds since the Unix epoch (rounded down).
    Ms,
}

impl TimeFormat {
    /// Reads an HTTP `time_format` value.
    pub fn parse(text: &str) -> Result<TimeFormat, String> {
        match text {
            "rfc3339" => Ok(TimeFormat::Rfc3339),
            "ns" => Ok(TimeFormat::Ns),
            "ms" => Ok(TimeFormat::Ms),
            _ => Err(format!("{text:?} is not a time format; use rfc3339, ns or ms")),
        }
    }
}

/// One cell of a row.
#[derive(Debug, Clone, Copy)]
pub enum Cell<'a> {
    /// Text as it is (a series name, a kind).
    Text(&'a str),
    /// A time in ns since the Unix epoch, written in the writer's [`TimeFormat`].
    Time(i64),
    /// A stored value, as its kind writes it.
    Value(&'a Value),
    /// A computed number (an aggregate).
    Number(f64),
    /// A count.
    Count(u64),
    /// A quality (an OPC UA status code), as it prints.
    Quality(Quality),
    /// A series' tags.
    Tags(&'a [(String, String)]),
    /// A yes/no column.
    Flag(bool),
    /// No value (an empty window, before the first point).
    Null,
}

/// How a cursor-paginated page ends (HTTP); the CLI has neither.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trailer {
    /// Where the next page starts, when this one was cut at the limit.
    pub next: Option<String>,
    /// Why the query stopped early, when it failed after rows were written.
    pub error: Option<String>,
    /// What the answer left out, and why.
    pub note: Option<String>,
}

/// Writes rows in one [`Format`]. Call [`finish`](Self::finish) at the end.
pub struct RowWriter<W: Write> {
    out: W,
    format: Format,
    time_format: TimeFormat,
    columns: Vec<&'static str>,
    /// JSON: the key of the row list; and whether `"next"` is always written.
    list_key: &'static str,
    paginated: bool,
    rows: u64,
    /// Table: the first rows, until the widths are known.
    sample: Vec<Vec<(String, bool)>>,
    widths: Option<Vec<usize>>,
    /// CSV: a cell's text and the row being built, kept from row to row.
    scratch: String,
    line: String,
}

impl<W: Write> RowWriter<W> {
    /// A writer of rows with these `columns`; JSON lists them under `list_key`, and with
    /// `paginated` always writes `"next"`. Writes the header (CSV) or the opening (JSON) now.
    pub fn new(
        out: W,
        format: Format,
        time_format: TimeFormat,
        columns: Vec<&'static str>,
        list_key: &'static str,
        paginated: bool,
    ) -> io::Result<RowWriter<W>> {
        let mut writer = RowWriter {
            out,
            format,
            time_format,
            columns,
            list_key,
            paginated,
            rows: 0,
            sample: Vec::new(),
            widths: None,
            scratch: String::new(),
            line: String::new(),
        };
        match format {
            Format::Csv => {
                let header: Vec<String> = writer.columns.iter().map(|c| csv_field(c)).collect();
                writeln!(writer.out, "{}", header.join(","))?;
            }
            Format::Json => write!(writer.out, "{{\"{}\":[", writer.list_key)?,
            Format::Table | Format::Jsonl => {}
        }
        Ok(writer)
    }

    /// Rows written so far.
    pub fn rows_written(&self) -> u64 {
        self.rows
    }

    /// Writes one row; `cells` match the columns given at creation, in order.
    pub fn write_row(&mut self, cells: &[Cell<'_>]) -> io::Result<()> {
        debug_assert_eq!(cells.len(), self.columns.len());
        match self.format {
            Format::Csv => self.write_csv(cells)?,
            Format::Json => {
                self.out.write_all(if self.rows == 0 { b"\n" } else { b",\n" })?;
                self.write_json_object(cells)?;
            }
            Format::Jsonl => {
                self.write_json_object(cells)?;
                self.out.write_all(b"\n")?;
            }
            Format::Table => self.write_table_row(cells)?,
        }
        self.rows += 1;
        Ok(())
    }

    /// Ends the output (closing JSON, flushing a short table) and hands back the writer.
    pub fn finish(mut self, trailer: &Trailer) -> io::Result<W> {
        match self.format {
            Format::Json => {
                self.out.write_all(if self.rows == 0 { b"]" } else { b"\n]" })?;
                if self.paginated || trailer.next.is_some() {
                    self.out.write_all(b",\"next\":")?;
                    write_json_string_or_null(&mut self.out, trailer.next.as_deref())?;
                }
                for (key, text) in [("note", &trailer.note), ("error", &trailer.error)] {
                    if let Some(text) = text {
                        write!(self.out, ",\"{key}\":")?;
                        serde_json::to_writer(&mut self.out, text)?;
                    }
                }
                self.out.write_all(b"}\n")?;
            }
            Format::Jsonl => {
                for (key, text) in [("next", &trailer.next), ("note", &trailer.note), ("error", &trailer.error)] {
                    if let Some(text) = text {
                        write!(self.out, "{{\"{key}\":")?;
                        serde_json::to_writer(&mut self.out, text)?;
                        self.out.write_all(b"}\n")?;
                    }
                }
            }
            Format::Csv | Format::Table => {
                if self.format == Format::Table {
                    self.flush_table_sample()?;
                }
                for (key, text) in [("next", &trailer.next), ("note", &trailer.note), ("error", &trailer.error)] {
                    if let Some(text) = text {
                        writeln!(self.out, "# {key}: {}", text.replace(['\n', '\r'], " "))?;
                    }
                }
            }
        }
        self.out.flush()?;
        Ok(self.out)
    }

    /// Plain text of a cell (CSV before escaping, and tables); `true` when it reads as a number.
    fn plain(&self, cell: &Cell<'_>) -> (String, bool) {
        let mut text = String::new();
        let numeric = plain_text(self.time_format, cell, &mut text);
        (text, numeric)
    }

    /// Builds the row in a reused line buffer and writes it at once: no allocation per cell.
    fn write_csv(&mut self, cells: &[Cell<'_>]) -> io::Result<()> {
        let (mut line, mut text) = (std::mem::take(&mut self.line), std::mem::take(&mut self.scratch));
        line.clear();
        for (index, cell) in cells.iter().enumerate() {
            if index > 0 {
                line.push(',');
            }
            // Numbers never need quoting: written straight into the line.
            if push_number(self.time_format, cell, &mut line) {
                continue;
            }
            text.clear();
            plain_text(self.time_format, cell, &mut text);
            push_csv_field(&mut line, &text);
        }
        line.push('\n');
        let written = self.out.write_all(line.as_bytes());
        (self.line, self.scratch) = (line, text);
        written
    }

    fn write_json_object(&mut self, cells: &[Cell<'_>]) -> io::Result<()> {
        self.out.write_all(b"{")?;
        for (index, cell) in cells.iter().enumerate() {
            if index > 0 {
                self.out.write_all(b",")?;
            }
            let column = self.columns[index];
            write!(self.out, "\"{column}\":")?;
            self.write_json_value(cell)?;
        }
        self.out.write_all(b"}")
    }

    fn write_json_value(&mut self, cell: &Cell<'_>) -> io::Result<()> {
        match cell {
            Cell::Text(text) => serde_json::to_writer(&mut self.out, text)?,
            Cell::Time(t) => match self.time_format {
                TimeFormat::Rfc3339 => serde_json::to_writer(&mut self.out, &format_rfc3339(*t))?,
                TimeFormat::Ns => write!(self.out, "{t}")?,
                TimeFormat::Ms => write!(self.out, "{}", t.div_euclid(1_000_000))?,
            },
            Cell::Value(Value::F64(x)) | Cell::Number(x) => serde_json::to_writer(&mut self.out, x)?,
            Cell::Value(Value::I64(x)) => write!(self.out, "{x}")?,
            Cell::Value(Value::Bool(x)) | Cell::Flag(x) => write!(self.out, "{x}")?,
            Cell::Value(Value::String(text)) => serde_json::to_writer(&mut self.out, text)?,
            Cell::Count(n) => write!(self.out, "{n}")?,
            Cell::Quality(q) => serde_json::to_writer(&mut self.out, &q.to_string())?,
            Cell::Tags(tags) => {
                let object: serde_json::Map<String, serde_json::Value> =
                    tags.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
                serde_json::to_writer(&mut self.out, &object)?;
            }
            Cell::Null => self.out.write_all(b"null")?,
        }
        Ok(())
    }

    fn write_table_row(&mut self, cells: &[Cell<'_>]) -> io::Result<()> {
        let row: Vec<(String, bool)> = cells
            .iter()
            .map(|cell| match cell {
                // Nulls are mostly missing numbers (values, aggregates): aligned like them.
                Cell::Null => ("-".to_owned(), true),
                cell => self.plain(cell),
            })
            .collect();
        if self.widths.is_none() {
            self.sample.push(row);
            if self.sample.len() >= TABLE_SAMPLE_ROWS {
                self.flush_table_sample()?;
            }
            return Ok(());
        }
        self.print_table_row(&row)
    }

    fn flush_table_sample(&mut self) -> io::Result<()> {
        if self.widths.is_some() {
            return Ok(());
        }
        let mut widths: Vec<usize> = self.columns.iter().map(|c| c.chars().count()).collect();
        for row in &self.sample {
            for (width, (text, _)) in widths.iter_mut().zip(row) {
                *width = (*width).max(text.chars().count());
            }
        }
        self.widths = Some(widths);
        let header: Vec<(String, bool)> = self.columns.iter().map(|c| ((*c).to_owned(), false)).collect();
        self.print_table_row(&header)?;
        for row in std::mem::take(&mut self.sample) {
            self.print_table_row(&row)?;
        }
        Ok(())
    }

    fn print_table_row(&mut self, row: &[(String, bool)]) -> io::Result<()> {
        let widths = self.widths.as_ref().expect("widths fixed before printing");
        let mut line = String::new();
        for (index, ((text, numeric), width)) in row.iter().zip(widths).enumerate() {
            if index > 0 {
                line.push_str("  ");
            }
            let pad = width.saturating_sub(text.chars().count());
            let last = index + 1 == row.len();
            if *numeric {
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(text);
            } else {
                line.push_str(text);
                if !last {
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
        }
        writeln!(self.out, "{line}")
    }
}

fn write_json_string_or_null(out: &mut impl Write, text: Option<&str>) -> io::Result<()> {
    match text {
        Some(text) => serde_json::to_writer(out, text).map_err(io::Error::from),
        None => out.write_all(b"null"),
    }
}

/// A CSV field, quoted (RFC 4180) when it holds a comma, a quote, a line break or a leading `#`
/// (so it cannot be taken for a trailer line).
pub fn csv_field(text: &str) -> String {
    let mut field = String::with_capacity(text.len());
    push_csv_field(&mut field, text);
    field
}

/// Appends [`csv_field`]`(text)` to `out`.
fn push_csv_field(out: &mut String, text: &str) {
    if text.bytes().any(|byte| matches!(byte, b',' | b'"' | b'\n' | b'\r')) || text.starts_with('#') {
        out.push('"');
        out.push_str(&text.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(text);
    }
}

/// Appends `cell` to `out` and says `true` when it is a number (a time in nanoseconds or
/// milliseconds, a count, an integer or float); else `false`, writing nothing.
fn push_number(time_format: TimeFormat, cell: &Cell<'_>, out: &mut String) -> bool {
    let mut integers = itoa::Buffer::new();
    match cell {
        Cell::Time(t) if time_format == TimeFormat::Ns => out.push_str(integers.format(*t)),
        Cell::Time(t) if time_format == TimeFormat::Ms => out.push_str(integers.format(t.div_euclid(1_000_000))),
        Cell::Count(n) => out.push_str(integers.format(*n)),
        Cell::Number(x) | Cell::Value(Value::F64(x)) => push_f64(out, *x),
        Cell::Value(Value::I64(n)) => out.push_str(integers.format(*n)),
        _ => return false,
    }
    true
}

/// Appends `x` as `{}` formats it: the fewest digits that read back as exactly `x`, never an
/// exponent; several times faster, with `ryu` (which JSON output uses too), between 10^-5 and
/// 10^16, and `{}` elsewhere. The two differ only where two numbers of the fewest digits are
/// equally near `x` (`ryu` takes the even one, `{}` rounds up): both read back as `x`.
fn push_f64(out: &mut String, x: f64) {
    use std::fmt::Write as _;
    if x.is_finite() {
        let mut buffer = ryu::Buffer::new();
        let text = buffer.format_finite(x);
        if !text.contains('e') {
            out.push_str(text.strip_suffix(".0").unwrap_or(text));
            return;
        }
    }
    // Writing to a String cannot fail.
    let _ = write!(out, "{x}");
}

/// Appends the plain text of `cell` (CSV before escaping, and tables) to `text`; `true` when it
/// reads as a number.
fn plain_text(time_format: TimeFormat, cell: &Cell<'_>, text: &mut String) -> bool {
    use std::fmt::Write as _;
    if push_number(time_format, cell, text) {
        return true;
    }
    // Writing to a String cannot fail.
    let _ = match cell {
        Cell::Text(cell) => text.write_str(cell),
        Cell::Time(t) => match time_format {
            TimeFormat::Rfc3339 => text.write_str(&format_rfc3339(*t)),
            TimeFormat::Ns => write!(text, "{t}"),
            TimeFormat::Ms => write!(text, "{}", t.div_euclid(1_000_000)),
        },
        Cell::Value(value) => write!(text, "{value}"),
        Cell::Number(x) => write!(text, "{x}"),
        Cell::Count(n) => write!(text, "{n}"),
        Cell::Quality(q) => write!(text, "{q}"),
        Cell::Tags(tags) => tags.iter().enumerate().try_for_each(|(index, (k, v))| {
            let separator = if index > 0 { "," } else { "" };
            write!(text, "{separator}{k}={v}")
        }),
        Cell::Flag(flag) => write!(text, "{flag}"),
        Cell::Null => Ok(()),
    };
    match cell {
        Cell::Time(_) => time_format != TimeFormat::Rfc3339,
        Cell::Value(value) => !matches!(value, Value::String(_)),
        Cell::Number(_) | Cell::Count(_) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `push_number` writes for `cell`.
    fn pushed(time_format: TimeFormat, cell: &Cell<'_>) -> String {
        let mut out = String::new();
        assert!(push_number(time_format, cell, &mut out), "{cell:?} is a number");
        out
    }

    #[test]
    fn numbers_read_back_exactly_in_as_few_digits_as_the_standard_formatting() {
        let mut floats = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.1,
            520.37,
            1e-5,
            9.999_999_999_999_999e-6,
            1e-4,
            1e15,
            1e16,
            9_999_999_999_999_998.0,
            1e17,
            123_456_789_012_345_680.0,
            -1_149_636_667_324_797.2,
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            f64::EPSILON,
            5e-324,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ];
        // Seeded: raw bit patterns (every exponent), and readings quantised to 0 to 9 decimals.
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..300_000 {
            floats.push(f64::from_bits(next()));
            let digits = (next() % 10) as i32;
            floats.push((next() % 2_000_000_000) as f64 / 10f64.powi(digits) - 1e5);
        }
        let (mut same, mut ties) = (0, 0);
        for x in floats {
            let value = Value::F64(x);
            let text = pushed(TimeFormat::Ns, &Cell::Number(x));
            assert_eq!(pushed(TimeFormat::Ns, &Cell::Value(&value)), text);
            let standard = format!("{x}");
            if text == standard {
                same += 1;
                continue;
            }
            // A tie between two shortest forms: the same length, and both read back as x.
            assert!(x.is_finite(), "{x}: {text} against {standard}");
            assert_eq!(text.len(), standard.len(), "{:#018x}: {text} against {standard}", x.to_bits());
            assert_eq!(text.parse::<f64>().unwrap().to_bits(), x.to_bits(), "{text}");
            assert_eq!(standard.parse::<f64>().unwrap().to_bits(), x.to_bits(), "{standard}");
            assert!(!text.contains('e'), "{text}");
            ties += 1;
        }
        assert!(ties * 1_000 < same, "{ties} ties in {same}");
        for n in [i64::MIN, -1_000_001, -1, 0, 1, 999_999, 1_000_000, i64::MAX] {
            assert_eq!(pushed(TimeFormat::Ns, &Cell::Time(n)), n.to_string());
            assert_eq!(pushed(TimeFormat::Ms, &Cell::Time(n)), n.div_euclid(1_000_000).to_string());
            assert_eq!(pushed(TimeFormat::Ns, &Cell::Value(&Value::I64(n))), n.to_string());
        }
        for n in [0, 1, u64::MAX] {
            assert_eq!(pushed(TimeFormat::Ns, &Cell::Count(n)), n.to_string());
        }
        let mut unused = String::new();
        for cell in [Cell::Time(0), Cell::Text("1"), Cell::Null, Cell::Quality(Quality::GOOD)] {
            assert!(!push_number(TimeFormat::Rfc3339, &cell, &mut unused), "{cell:?}");
        }
        assert!(unused.is_empty());
    }

    fn render(format: Format, time_format: TimeFormat, rows: &[Vec<Cell<'_>>], trailer: &Trailer) -> String {
        let mut writer =
            RowWriter::new(Vec::new(), format, time_format, vec!["series", "time", "value", "quality"], "rows", false)
                .unwrap();
        for row in rows {
            writer.write_row(row).unwrap();
        }
        String::from_utf8(writer.finish(trailer).unwrap()).unwrap()
    }

    fn sample_rows<'a>(value: &'a Value, text: &'a Value) -> Vec<Vec<Cell<'a>>> {
        vec![
            vec![
                Cell::Text("a{x=1,y=2}"),
                Cell::Time(1_767_225_600_500_000_000),
                Cell::Value(value),
                Cell::Quality(Quality::GOOD),
            ],
            vec![Cell::Text("b"), Cell::Time(0), Cell::Value(text), Cell::Quality(Quality::BAD)],
            vec![Cell::Text("c"), Cell::Time(-1), Cell::Null, Cell::Null],
        ]
    }

    #[test]
    fn csv_quotes_what_needs_quoting_and_leaves_nulls_empty() {
        let (value, text) = (Value::F64(1.5), Value::String("say \"hi\", then go".into()));
        let csv = render(Format::Csv, TimeFormat::Rfc3339, &sample_rows(&value, &text), &Trailer::default());
        assert_eq!(
            csv,
            "series,time,value,quality\n\
             \"a{x=1,y=2}\",2026-01-01T00:00:00.5Z,1.5,good\n\
             b,1970-01-01T00:00:00Z,\"say \"\"hi\"\", then go\",bad\n\
             c,1969-12-31T23:59:59.999999999Z,,\n"
        );
    }

    #[test]
    fn json_is_one_document_with_typed_values() {
        let (value, text) = (Value::F64(1.5), Value::String("x".into()));
        let json = render(Format::Json, TimeFormat::Ns, &sample_rows(&value, &text), &Trailer::default());
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed["rows"][0]["time"], 1_767_225_600_500_000_000i64);
        assert_eq!(parsed["rows"][0]["value"], 1.5);
        assert_eq!(parsed["rows"][1]["value"], "x");
        assert_eq!(parsed["rows"][2]["value"], serde_json::Value::Null);
        assert!(parsed.get("next").is_none());
    }

    #[test]
    fn empty_json_is_still_valid_and_trailers_close_it() {
        let trailer = Trailer { next: Some("/api/v1/query?from=5".into()), ..Trailer::default() };
        let json = render(Format::Json, TimeFormat::Ms, &[], &trailer);
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed["rows"], serde_json::json!([]));
        assert_eq!(parsed["next"], "/api/v1/query?from=5");
    }

    #[test]
    fn notes_close_json_and_end_csv_and_json_lines() {
        let trailer = Trailer { note: Some("left out valve/state".into()), ..Trailer::default() };
        let json: serde_json::Value =
            serde_json::from_str(&render(Format::Json, TimeFormat::Ns, &[], &trailer)).unwrap();
        assert_eq!(json["note"], "left out valve/state");
        assert!(render(Format::Csv, TimeFormat::Ns, &[], &trailer).ends_with("# note: left out valve/state\n"));
        assert!(
            render(Format::Jsonl, TimeFormat::Ns, &[], &trailer).ends_with("{\"note\":\"left out valve/state\"}\n")
        );
    }

    #[test]
    fn jsonl_writes_one_object_per_line_and_ms_round_down() {
        let (value, text) = (Value::I64(7), Value::Bool(true));
        let jsonl = render(Format::Jsonl, TimeFormat::Ms, &sample_rows(&value, &text), &Trailer::default());
        let lines: Vec<serde_json::Value> = jsonl.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["value"], 7);
        assert_eq!(lines[1]["value"], true);
        assert_eq!(lines[2]["time"], -1);
    }

    #[test]
    fn tables_align_columns_from_the_sampled_rows() {
        let (value, text) = (Value::F64(12.25), Value::F64(3.0));
        let table = render(Format::Table, TimeFormat::Ns, &sample_rows(&value, &text), &Trailer::default());
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "series      time                 value  quality");
        assert_eq!(lines[1], "a{x=1,y=2}  1767225600500000000  12.25  good");
        assert_eq!(lines[2], "b                             0      3  bad");
        assert_eq!(lines[3], "c                            -1      -        -");
    }
}
