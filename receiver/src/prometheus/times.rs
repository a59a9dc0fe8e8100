//! Times and durations as the Prometheus API takes and writes them: Unix seconds with up to
//! three decimals or RFC 3339, and seconds or PromQL durations; in milliseconds.

use super::parse::parse_duration_ns;

/// Nanoseconds in a millisecond: the API's times are in ms, the replica's in ns.
pub const NS_PER_MS: i64 = 1_000_000;

/// A time as Prometheus takes it: Unix seconds with an optional fraction, or RFC 3339; in ms.
pub fn parse_time_ms(text: &str) -> Result<i64, String> {
    let cannot = || format!("cannot parse {text:?} to a valid timestamp; use Unix seconds or RFC 3339");
    if let Some((seconds, fraction)) = split_decimal(text) {
        let ms = seconds.checked_mul(1000).and_then(|ms| ms.checked_add(fraction)).ok_or_else(cannot)?;
        return Ok(ms);
    }
    let timestamp: jiff::Timestamp = text.parse().map_err(|_| cannot())?;
    Ok(timestamp.as_millisecond())
}

/// `[-]digits[.digits]` as whole seconds and signed milliseconds (the fraction cut to ms).
fn split_decimal(text: &str) -> Option<(i64, i64)> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let seconds: i64 = whole.parse().ok()?;
    let ms: i64 = format!("{:0<3}", &fraction[..fraction.len().min(3)]).parse().ok()?;
    Some(if negative { (-seconds, -ms) } else { (seconds, ms) })
}

/// A duration as Prometheus takes it: seconds (`15`, `0.5`) or a PromQL duration (`5m`,
/// `1h30m`); in ms.
pub fn parse_duration_ms(text: &str) -> Result<i64, String> {
    if let Some((seconds, ms)) = split_decimal(text) {
        return seconds
            .checked_mul(1000)
            .and_then(|s| s.checked_add(ms))
            .ok_or_else(|| format!("{text:?} is too long"));
    }
    let ns = parse_duration_ns(text)
        .ok_or_else(|| format!("cannot parse {text:?} to a valid duration; use seconds or e.g. 5m, 1h30m"))?;
    Ok(ns / NS_PER_MS)
}

/// Unix seconds with up to three decimals, as Prometheus writes times.
pub fn format_time_ms(ms: i64) -> String {
    let mut out = String::new();
    write_time_ms(ms, &mut out);
    out
}

/// [`format_time_ms`], appended to `out`.
pub fn write_time_ms(ms: i64, out: &mut String) {
    use std::fmt::Write;
    let sign = if ms < 0 { "-" } else { "" };
    let (seconds, fraction) = (ms.unsigned_abs() / 1000, ms.unsigned_abs() % 1000);
    let _ = match fraction {
        0 => write!(out, "{sign}{seconds}"),
        f if f % 100 == 0 => write!(out, "{sign}{seconds}.{}", f / 100),
        f if f % 10 == 0 => write!(out, "{sign}{seconds}.{:02}", f / 10),
        f => write!(out, "{sign}{seconds}.{f:03}"),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_read_as_prometheus_reads_them() {
        assert_eq!(parse_time_ms("1435781451.781"), Ok(1_435_781_451_781));
        assert_eq!(parse_time_ms("1435781451"), Ok(1_435_781_451_000));
        assert_eq!(parse_time_ms("-1.5"), Ok(-1_500));
        assert_eq!(parse_time_ms("2015-07-01T20:10:51.781Z"), Ok(1_435_781_451_781));
        assert!(parse_time_ms("yesterday").unwrap_err().contains("\"yesterday\""));
        assert_eq!(parse_duration_ms("15"), Ok(15_000));
        assert_eq!(parse_duration_ms("0.5"), Ok(500));
        assert_eq!(parse_duration_ms("1h30m"), Ok(5_400_000));
        assert!(parse_duration_ms("5 parsecs").is_err());
    }

    #[test]
    fn times_are_written_as_prometheus_writes_them() {
        assert_eq!(format_time_ms(1_435_781_451_781), "1435781451.781");
        assert_eq!(format_time_ms(1_435_781_451_000), "1435781451");
        assert_eq!(format_time_ms(1_435_781_451_500), "1435781451.5");
        assert_eq!(format_time_ms(-1_500), "-1.5");
    }
}
