//! Writing JSON the way Go's `encoding/json` does: its string escaping and its
//! RFC 3339 timestamps with nanoseconds.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// A point in time as Go marshals it: nanoseconds since the Unix epoch, written in the
/// zone `offset_seconds` east of UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WireTime {
    pub unix_nanos: i128,
    pub offset_seconds: i32,
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// A proleptic Gregorian date to days since 1970-01-01.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A wall-clock reading in fields, as a Python `datetime` holds it (nanoseconds aside).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CivilTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub nanosecond: u32,
}

impl WireTime {
    /// The system clock now, in UTC (the epoch itself if the clock is set before it).
    pub fn now() -> Self {
        let unix_nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        Self {
            unix_nanos,
            offset_seconds: 0,
        }
    }

    /// What a wall clock in the time's zone shows.
    pub fn civil(&self) -> CivilTime {
        let local = self.unix_nanos + i128::from(self.offset_seconds) * 1_000_000_000;
        let secs = local.div_euclid(1_000_000_000) as i64;
        let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
        let sod = secs.rem_euclid(86_400) as u32;
        CivilTime {
            year,
            month,
            day,
            hour: sod / 3600,
            minute: sod / 60 % 60,
            second: sod % 60,
            nanosecond: local.rem_euclid(1_000_000_000) as u32,
        }
    }

    /// The time a wall clock in the zone `offset_seconds` east of UTC shows.
    #[allow(clippy::too_many_arguments)]
    pub fn from_civil(
        year: i64,
        month: u32,
        day: u32,
        hour: u32,
        minute: u32,
        second: u32,
        nanosecond: u32,
        offset_seconds: i32,
    ) -> Self {
        let days = days_from_civil(year, month, day);
        let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second)
            - i64::from(offset_seconds);
        Self {
            unix_nanos: i128::from(secs) * 1_000_000_000 + i128::from(nanosecond),
            offset_seconds,
        }
    }

    /// Appends the time as Go's `time.Time.MarshalJSON` would, quotes included:
    /// RFC 3339, fractional seconds with trailing zeros trimmed, `Z` for UTC.
    pub fn write_json(&self, out: &mut String) {
        let t = self.civil();
        let _ = write!(
            out,
            "\"{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            t.year, t.month, t.day, t.hour, t.minute, t.second
        );
        if t.nanosecond != 0 {
            let frac = format!("{:09}", t.nanosecond);
            out.push('.');
            out.push_str(frac.trim_end_matches('0'));
        }
        if self.offset_seconds == 0 {
            out.push_str("Z\"");
        } else {
            let sign = if self.offset_seconds < 0 { '-' } else { '+' };
            let minutes = self.offset_seconds.unsigned_abs() / 60;
            let _ = write!(out, "{sign}{:02}:{:02}\"", minutes / 60, minutes % 60);
        }
    }
}

/// Appends `s` as a JSON string with Go's escaping: `"` and `\`, the short escapes
/// `\b \f \n \r \t`, other control characters as `\u00XX`, and, as Go's HTML-safe
/// default does, `<`, `>`, `&`, U+2028 and U+2029 as `\u` escapes.
pub fn write_json_str(out: &mut String, s: &str) {
    out.push('"');
    let mut plain_from = 0;
    for (at, c) in s.char_indices() {
        let escape: Option<&str> = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            '\u{8}' => Some("\\b"),
            '\u{c}' => Some("\\f"),
            '\0'..='\u{1f}' | '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => Some(""),
            _ => None,
        };
        let Some(escape) = escape else {
            continue;
        };
        out.push_str(&s[plain_from..at]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push_str(escape);
        }
        plain_from = at + c.len_utf8();
    }
    out.push_str(&s[plain_from..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(unix_nanos: i128, offset_seconds: i32) -> String {
        let mut out = String::new();
        WireTime {
            unix_nanos,
            offset_seconds,
        }
        .write_json(&mut out);
        out
    }

    #[test]
    fn times_as_go_writes_them() {
        assert_eq!(time(0, 0), "\"1970-01-01T00:00:00Z\"");
        assert_eq!(
            time(1_700_000_000_123_456_789, 0),
            "\"2023-11-14T22:13:20.123456789Z\""
        );
        assert_eq!(
            time(1_700_000_000_120_000_000, 0),
            "\"2023-11-14T22:13:20.12Z\""
        );
        assert_eq!(
            time(1_700_000_000_000_000_000, 7200),
            "\"2023-11-15T00:13:20+02:00\""
        );
        assert_eq!(
            time(1_700_000_000_000_000_000, -19_800),
            "\"2023-11-14T16:43:20-05:30\""
        );
        // Go's zero time, year 1.
        assert_eq!(
            time(-62_135_596_800_000_000_000, 0),
            "\"0001-01-01T00:00:00Z\""
        );
        assert_eq!(time(951_782_400_000_000_000, 0), "\"2000-02-29T00:00:00Z\"");
    }

    #[test]
    fn civil_fields() {
        let t = WireTime::from_civil(2024, 2, 29, 23, 59, 58, 123_456_789, -3600);
        let fields = (2024, 2, 29, 23, 59, 58, 123_456_789);
        let c = t.civil();
        assert_eq!(
            (
                c.year,
                c.month,
                c.day,
                c.hour,
                c.minute,
                c.second,
                c.nanosecond
            ),
            fields
        );
        let utc = WireTime {
            offset_seconds: 0,
            ..t
        }
        .civil();
        assert_eq!((utc.month, utc.day, utc.hour), (3, 1, 0));
        assert!(WireTime::now().civil().year >= 2024);
    }

    #[test]
    fn civil_round_trip() {
        let t = WireTime::from_civil(2023, 11, 15, 0, 13, 20, 5, 7200);
        assert_eq!(t.unix_nanos, 1_700_000_000_000_000_005);
        let mut out = String::new();
        t.write_json(&mut out);
        assert_eq!(out, "\"2023-11-15T00:13:20.000000005+02:00\"");
        for days in [-719_162i64, -1, 0, 59, 11_016, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn strings_as_go_escapes_them() {
        let mut out = String::new();
        write_json_str(&mut out, "a\"b\\c\n\t\u{1}<&>\u{2028}é\u{8}\u{c}");
        assert_eq!(out, r#""a\"b\\c\n\t\u0001\u003c\u0026\u003e\u2028é\b\f""#);
    }
}
