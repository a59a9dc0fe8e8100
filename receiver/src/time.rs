//! Times as users write them (RFC 3339, epoch numbers, `now`, `-1h`) and as diode stores them
//! (i64 nanoseconds since the Unix epoch, UTC).

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};

pub fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos().min(i64::MAX as u128) as i64)
}

/// `2026-01-01T00:00:00Z` or with an offset, to ns since the Unix epoch.
pub fn parse_rfc3339(text: &str) -> anyhow::Result<i64> {
    let timestamp: jiff::Timestamp =
        text.trim().parse().with_context(|| format!("{text:?} is not an RFC 3339 time"))?;
    i64::try_from(timestamp.as_nanosecond()).with_context(|| format!("{text:?} is outside the supported range"))
}

/// RFC 3339 in UTC with as many fractional digits as needed.
pub fn format_rfc3339(timestamp_ns: i64) -> String {
    match jiff::Timestamp::from_nanosecond(i128::from(timestamp_ns)) {
        Ok(timestamp) => timestamp.to_string(),
        Err(_) => format!("{timestamp_ns}ns"),
    }
}

/// A duration such as `500ms`, `10s`, `1m`, `1h`, `1d`, `2w` (or a sum like `1h30m`), in ns.
pub fn parse_duration(text: &str) -> anyhow::Result<i64> {
    let mut rest = text.trim();
    if rest.is_empty() {
        bail!("empty duration; write e.g. 1m, 15s, 1h30m");
    }
    let mut total: i64 = 0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            bail!("{text:?} is not a duration; write e.g. 1m, 15s, 1h30m, 500ms");
        }
        let number: i64 = rest[..digits].parse().with_context(|| format!("{text:?}: number too large"))?;
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
            unit => bail!("{text:?}: unknown unit {unit:?}; use ns, us, ms, s, m, h, d or w"),
        };
        rest = &rest[unit_end..];
        total = number
            .checked_mul(unit_ns)
            .and_then(|ns| total.checked_add(ns))
            .with_context(|| format!("{text:?} is too long"))?;
    }
    Ok(total)
}

/// A point in time as an analyst writes it: RFC 3339, `now`, `now-1h` or `-1h` (relative to now),
/// or an epoch number whose size tells its unit (s, ms, us or ns).
pub fn parse_time(text: &str, now_ns: i64) -> anyhow::Result<i64> {
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
        return number.checked_mul(scale).with_context(|| format!("{text:?} is out of range"));
    }
    parse_rfc3339(text).with_context(|| {
        format!("{text:?} is not a time; write RFC 3339 (2026-01-01T00:00:00Z), an epoch number, now, or -1h")
    })
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
