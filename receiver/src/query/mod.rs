//! Queries over the replica for IT analysts: raw ranges (with bounding values), aggregates over
//! windows, interpolated values, values at given times, plot values and latest values, as CLI
//! commands (`cli`) and read-only HTTP routes (`http`).
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
//! **Empty windows** (no selected point, and no value from the time-weighted aggregates: `twa`,
//! the `time` basis, the quality durations, `time_in_state`) are left out, as PI and Prometheus
//! leave them out, and a series' windows run only over its own data (from the window of its first
//! point to the window of its last), so a range of decades over seconds of data costs what the
//! data costs. `--empty-windows` (`empty_windows=true`) reports every window of the range
//! instead: `count` 0 and null for every other aggregate (except the time-weighted ones, to which
//! a value carried in from before the window still gives a result).
//!
//! **Aggregates** over the window's selected points: `count` (points of any kind: numbers,
//! booleans and strings), `min`, `max`, `sum`, `mean` (over numbers: floats, integers, booleans as
//! 0/1; strings have none), `stddev` (the *sample* standard deviation, dividing by n − 1; null
//! below two numbers), `stddev_population` (dividing by n; null without a number), `range`
//! (`max − min`), `delta` (the latest number minus the earliest, by time: last − first; 0 for one
//! number), `first` and `last` (the values of the earliest and latest point, as stored). A numeric
//! aggregate over a selection that also holds series of strings only leaves those series out and
//! names them in a note (HTTP: `"note"` in the trailer; CLI: on standard error); when every
//! selected series holds strings, the query is refused. `time_in_state` likewise leaves out series
//! without booleans.
//!
//! **Basis** (`--basis event|time`) of `mean`, `stddev` and `stddev_population`. `event` (the
//! default) weighs every point the same, however long its value held. `time` weighs each value by
//! the time it *governs* in the window, stepped (as `twa` step, below: carry-in, last point to the
//! end of its window, strings and, under `--good-only`, non-good points leave their time out):
//! with spans `w` and total `W = Σw`, the mean is `Σw·x / W` (so `mean` equals `twa` step), the
//! population standard deviation `√(Σw·(x − mean)² / W)`, and `stddev` treats the spans as
//! reliability weights, `√(Σw·(x − mean)² / (W − Σw²/W))`, which is the n − 1 form when every span
//! is equal and null when one value held the whole covered time.
//!
//! **Quality durations**: `duration_good` and `duration_bad` are the seconds of the window
//! governed by good and by bad points (OPC UA severities; uncertain counts as neither);
//! `percent_good` and `percent_bad` are those as a percentage (0 to 100) of the time governed by
//! any point. Time governed by nothing (before the series' first point; after its last point's
//! window) is in neither the durations nor the whole, so a series that starts mid-window is 100 %
//! good if all its points are good; a window governed by nothing at all has nulls. A point governs
//! as for `twa` step: the carry-in from before the window governs up to the first point inside,
//! and the series' last point to the end of its own window. They measure quality, so they cannot
//! be combined with `--good-only`.
//!
//! **`time_in_state`** (booleans) gives two columns, `time_true` and `time_false`: the seconds of
//! the window governed by a true and by a false point, with the same governing rule; points of
//! other kinds (and, under `--good-only`, non-good points) govern time counted in neither; null
//! when no boolean governs any time.
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
//! **Boundaries** of raw reads (`--boundary`, OPC UA ReadRaw's bounds, PI's boundary types):
//! - `inside` (the default): the points in `[from, to]`;
//! - `outside`: also, per series, the last point before `from` and the first point after `to`
//!   (OPC UA's bounding values), except at an end where a point lies exactly (it is that end's
//!   bound); nothing is added where the series has no point beyond an end;
//! - `interpolated`: also, per series, a row at `from` and one at `to` with the value
//!   interpolated there between the points around it as `--interpolate` with `linear` reads it
//!   (floats and integers on the straight line, quality the worse of the two neighbours, so a
//!   bad neighbour makes the end bad; booleans and strings take the earlier point's value and
//!   quality), except at an end where a point lies exactly (that point is the end's value, once);
//!   before the series' first point or after its last, the end is listed with no value (no
//!   extrapolation); `from` = `to` gives one row.
//!
//! With `--good-only` the bounds are read from good points only: a bad neighbour is skipped and
//! the nearest good point on that side is used instead.
//!
//! **At times** (`--at T1,T2,…`, OPC UA ReadAtTime): one row per series and time, times sorted
//! and repeats dropped, at most [`request::MAX_AT_TIMES`]; `--from`/`--to` default to no bound
//! and, when given, keep only the times between them. `--at-mode interpolated` (the default) reads
//! as `--interpolate` with `linear` does (the point at that time, else the line between the points
//! around it; no value before the first point or after the last); `--at-mode previous` takes the
//! last point at or before the time, and keeps holding the series' last value after its last
//! point (the value a display of "now" shows); no value before the first point. `--good-only`
//! reads from good points only.
//!
//! **Plot** (`--plot N`, like PI's PlotValues): the range is cut into N equal intervals from
//! `from` (width `⌈(to − from + 1 ns) / N⌉`, the last one cut at `to`; N from 1 to
//! [`core::plot::MAX_PLOT_INTERVALS`]) and each interval with points gives at most five of them:
//! the first, the last, the smallest and the largest number (the earliest on a tie) and the first
//! bad-quality point, in time order, each once (one point can be several of them). Strings have
//! no smallest or largest. Drawn as lines, they keep every peak, dip and failure of the raw data
//! at a few thousand points. With `--good-only`, non-good points are left out first.
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
