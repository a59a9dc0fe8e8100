//! Times as users write them (RFC 3339, epoch numbers, `now`, `-1h`) and as diode stores them
//! (i64 nanoseconds since the Unix epoch, UTC).

use std::num::{ParseIntError, TryFromIntError};

/// Why a time or a duration as written was refused. Each message quotes what was written.
#[derive(Debug, thiserror::Error)]
pub enum TimeError {
    /// Not an RFC 3339 time such as `2026-01-01T00:00:00Z`.
    #[error("{text:?} is not an RFC 3339 time")]
    NotRfc3339 {
        /// What was written.
        text: String,
        /// What the time parser said.
        source: jiff::Error,
    },
    /// A valid RFC 3339 time outside what i64 nanoseconds hold (about 1677 to 2262).
    #[error("{text:?} is outside the supported range")]
    OutsideRange {
        /// What was written.
        text: String,
        /// The failed conversion.
        source: TryFromIntError,
    },
    /// A duration that is empty (or only spaces).
    #[error("empty duration; write e.g. 1m, 15s, 1h30m")]
    EmptyDuration,
    /// Not a run of number–unit pairs.
    #[error("{text:?} is not a duration; write e.g. 1m, 15s, 1h30m, 500ms")]
    NotADuration {
        /// What was written.
        text: String,
    },
    /// A number in a duration beyond i64.
    #[error("{text:?}: number too large")]
    NumberTooLarge {
        /// What was written.
        text: String,
        /// What the number parser said.
        source: ParseIntError,
    },
    /// A unit other than ns, us, ms, s, m, h, d or w.
    #[error("{text:?}: unknown unit {unit:?}; use ns, us, ms, s, m, h, d or w")]
    UnknownUnit {
        /// What was written.
        text: String,
        /// The unit that is not known.
        unit: String,
    },
    /// A duration longer than i64 nanoseconds hold (about 292 years).
    #[error("{text:?} is too long")]
    DurationTooLong {
        /// What was written.
        text: String,
    },
    /// An epoch number whose nanoseconds do not fit in i64.
    #[error("{text:?} is out of range")]
    EpochOutOfRange {
        /// What was written.
        text: String,
    },
    /// Not a time in any accepted form; the source says why it is not the form it looked like.
    #[error("{text:?} is not a time; write RFC 3339 (2026-01-01T00:00:00Z), an epoch number, now, or -1h")]
    NotATime {
        /// What was written.
        text: String,
        /// Why the likeliest form failed.
        source: Box<TimeError>,
    },
}

impl TimeError {
    /// The message followed by its causes, on one line (`a: b: c`), for messages that quote it.
    pub fn with_causes(&self) -> String {
        let mut line = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(error) = cause {
            line.push_str(": ");
            line.push_str(&error.to_string());
            cause = error.source();
        }
        line
    }
}

pub use diode_host::clock::now_ns;

/// `2026-01-01T00:00:00Z` or with an offset, to ns since the Unix epoch.
pub fn parse_rfc3339(text: &str) -> Result<i64, TimeError> {
    let timestamp: jiff::Timestamp =
        text.trim().parse().map_err(|source| TimeError::NotRfc3339 { text: text.to_owned(), source })?;
    i64::try_from(timestamp.as_nanosecond()).map_err(|source| TimeError::OutsideRange { text: text.to_owned(), source })
}

/// RFC 3339 in UTC with as many fractional digits as needed.
pub fn format_rfc3339(timestamp_ns: i64) -> String {
    match jiff::Timestamp::from_nanosecond(i128::from(timestamp_ns)) {
        Ok(timestamp) => timestamp.to_string(),
        Err(_) => format!("{timestamp_ns}ns"),
    }
}

/// A duration such as `500ms`, `10s`, `1m`, `1h`, `1d`, `2w` (or a sum like `1h30m`), in ns.
pub fn parse_duration(text: &str) -> Result<i64, TimeError> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(TimeError::EmptyDuration);
    }
    let mut total: i64 = 0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(TimeError::NotADuration { text: text.to_owned() });
        }
        let number: i64 =
            rest[..digits].parse().map_err(|source| TimeError::NumberTooLarge { text: text.to_owned(), source })?;
        rest = &rest[digits..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit_ns: i64 = match &rest[..unit_end] {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" | "min" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "d" => 86_400_000_000_000,
            "w" => 604_800_000_000_000,
            unit => return Err(TimeError::UnknownUnit { text: text.to_owned(), unit: unit.to_owned() }),
        };
        rest = &rest[unit_end..];
        total = number
            .checked_mul(unit_ns)
            .and_then(|ns| total.checked_add(ns))
            .ok_or_else(|| TimeError::DurationTooLong { text: text.to_owned() })?;
    }
    Ok(total)
}

/// A point in time as an analyst writes it: RFC 3339, `now`, `now-1h` or `-1h` (relative to now),
/// or an epoch number whose size tells its unit (s, ms, us or ns).
pub fn parse_time(text: &str, now_ns: i64) -> Result<i64, TimeError> {
    let text = text.trim();
    if text == "now" {
        return Ok(now_ns);
    }
    if let Some(ago) = text.strip_prefix("now-").or_else(|| text.strip_prefix('-'))
        && !ago.chars().all(|c| c.is_ascii_digit())
    {
        return Ok(now_ns - parse_duration(ago)?);
    }
    if let Ok(number) = text.parse::<i64>() {
        let scale = diode_common::record::epoch_unit_ns_by_magnitude(number);
        return number.checked_mul(scale).ok_or_else(|| TimeError::EpochOutOfRange { text: text.to_owned() });
    }
    parse_rfc3339(text).map_err(|source| TimeError::NotATime { text: text.to_owned(), source: Box::new(source) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_through_nanoseconds() {
        let ns = parse_rfc3339("2026-01-01T00:00:00.5Z").unwrap();
        assert_eq!(ns, 1_767_225_600_500_000_000);
        assert_eq!(format_rfc3339(ns), "2026-01-01T00:00:00.5Z");
        assert_eq!(parse_rfc3339("2026-01-01T01:00:00+01:00").unwrap(), 1_767_225_600_000_000_000);
    }

    #[test]
    fn durations_accept_units_and_sums() {
        assert_eq!(parse_duration("1h30m").unwrap(), 5_400_000_000_000);
        assert_eq!(parse_duration("500ms").unwrap(), 500_000_000);
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn relative_and_epoch_times_are_understood() {
        let now = 1_800_000_000_000_000_000;
        assert_eq!(parse_time("now", now).unwrap(), now);
        assert_eq!(parse_time("-1h", now).unwrap(), now - 3_600_000_000_000);
        assert_eq!(parse_time("now-1m", now).unwrap(), now - 60_000_000_000);
        assert_eq!(parse_time("1700000000", now).unwrap(), 1_700_000_000_000_000_000);
        assert_eq!(parse_time("1700000000000", now).unwrap(), 1_700_000_000_000_000_000);
        assert_eq!(parse_time("1700000000000000000", now).unwrap(), 1_700_000_000_000_000_000);
        let error = parse_time("yesterday", now).unwrap_err().to_string();
        assert!(error.contains("RFC 3339"), "{error}");
    }
}
