//! Queries over the replica for IT analysts: raw ranges, aggregates over windows, interpolated
//! values and latest values, as CLI commands (`cli`) and read-only HTTP routes (`http`).
//!
//! - [`core`] is the arithmetic, pure and streaming: aggregates and interpolation turn an ascending
//!   stream of points (blocks of columns, for aggregates) into rows, and series are picked from the
//!   catalog by name or glob. It needs only points and series info: no RocksDB, no HTTP.
//! - [`request`] checks a query as typed ([`request::QueryRequest::parse`]); [`error`] says why one
//!   was refused or failed.
//! - [`source`] says where points come from (a replica the query owns, or the running receiver's,
//!   read a batch per lock); [`engine`] runs a checked request over a source, series by series,
//!   and [`output`] writes its rows as they come; [`listing`] writes the series listing.
//! - [`cli`] and [`http`] are the adapters: `diode-receiver series | query`, and the handlers of
//!   `/api/v1/series` and `/api/v1/query`.
//!
//! # Definitions
//!
//! **Range.** `--from`/`--to` (`from`/`to`) are both inclusive; from > to is an error. Defaults:
//! the last hour (`-1h` to `now`); for `--latest`, no bound.
//!
//! **Selection.** `--series` is a glob (`*` any run of characters, `/` and tags included; `?` one
//! character) over the display form `name` or `name{key=value,…}`, or, without `*`/`?`, an exact
//! display form or a bare name (which selects every tag set of that name). Series come out sorted
//! by display form. `--good-only` keeps only good-quality points (OPC UA severity Good); otherwise
//! every point counts with its value, whatever its quality, and its quality is shown.
//!
//! **Windows** (`--every D`). Window k is `[k·D, (k+1)·D)` in ns since the Unix epoch (UTC), so
//! a point exactly on a boundary belongs to the window that starts there and windows of a day
//! start at 00:00 UTC. Every window that holds an instant of the range and has data is reported,
//! **whole**: it aggregates all its points even where it reaches before `from` or after `to`, so
//! a window's figures never depend on the range asked. The last window may still be filling
//! (`to` = now).
//!
//! **Empty windows** (no selected point, and for `twa` no time covered by a value) are left out,
//! as PI and Prometheus leave them out, and a series' windows run only over its own data (from
//! the window of its first point to the window of its last), so a range of decades over seconds
//! of data costs what the data costs. `--empty-windows` (`empty_windows=true`) reports every
//! window of the range instead: `count` 0 and null for every other aggregate (except `twa`,
//! below).
//!
//! **Aggregates** over the window's selected points: `count` (points, strings included), `min`,
//! `max`, `sum`, `mean` (over numbers: floats, integers, booleans as 0/1; strings have none),
//! `stddev` (the *sample* standard deviation, dividing by n − 1; null below two numbers),
//! `first` and `last` (the values of the earliest and latest point, as stored). A numeric
//! aggregate over a selection that also holds series of strings only leaves those series out and
//! names them in a note (HTTP: `"note"` in the trailer; CLI: on standard error); when every
//! selected series holds strings, the query is refused.
//!
//! **`twa`**, the time-weighted average, follows OPC UA Part 13 TimeAverage2 (simple bounds):
//! each point *governs* the time from its timestamp to the next point's. The window average is
//! the area under the signal divided by the time covered, both over `[start, end)` only:
//! - carry-in: the last point before the window's start governs the window up to its first point
//!   (`step`: its value holds; `linear`: the line from it to the next point, cut at the start);
//! - `step`: a value holds until the next point; `linear`: straight lines between consecutive
//!   points, cut at both window edges (the end edge uses the first point after the window);
//! - the series' last point governs to the end of its own window (no later point to draw a line
//!   to, so its value holds there, as TimeAverage2 does without an end bound); windows after the
//!   series' last point, and time before its first point, have no data: left out;
//! - without `--good-only`, every point counts with its value; with `--good-only`, time governed
//!   by a non-good point is left out of both the area and the covered time (TimeAverage2: "the
//!   time interval is reduced by the duration of the non-Good data"), and a line that would end
//!   at a non-good point holds its good starting value instead;
//! - strings govern time that is left out, like non-good points;
//! - a window whose covered time is zero (no data at all) has a null `twa`; an empty window
//!   between two points has one (the carried value, or the mean of the line across it).
//!
//! **Interpolation** (`--interpolate D`): instants `from, from + D, …` up to `to` (aligned to
//! `--from`, not the epoch). At each instant: the point at exactly that time if there is one;
//! otherwise, between the last point before and the first point after, `linear` draws the
//! straight line (floats and integers, as a float; quality the worse of the two; booleans and
//! strings take the earlier value) and `previous` takes the earlier point. No extrapolation:
//! before the first point and after the last, the value is null (the instant is still listed).
//! With `--good-only` non-good points are skipped and the neighbours are the nearest good points
//! (OPC UA's interpolated bounds).
//!
//! **Latest** (`--latest`): the last point of each series within the range (by default, the last
//! point stored); with `--good-only`, the last good one.
//!
//! **Row limit.** HTTP pages with `limit` and `next` (see [`http`]). The CLI stops at `--limit`
//! rows (default [`http::DEFAULT_LIMIT`], as HTTP), names the row it would have written next on
//! standard error and exits non-zero, so a script cannot take a cut answer for a whole one.
//!
//! **Cost over HTTP**: a time limit, query slots and slow clients: see [`http`].

pub mod cli;
pub mod core;
pub mod engine;
pub mod error;
pub mod http;
pub mod listing;
pub mod output;
pub mod request;
pub mod source;
