//! Go's `time.Time` on the wire: RFC 3339 with nanoseconds, written as
//! `Time.MarshalJSON` writes it and read as `Time.UnmarshalJSON` reads it.
//!
//! Reading follows Go's `time.Parse(time.RFC3339, ...)`, which is what Go falls back to
//! (its strict mode is disabled), so everything a Go service accepts is accepted here:
//! a comma before the fraction, any number of fraction digits (the first nine count),
//! a one-digit hour, offsets up to `±24:00` and minutes up to 60, year 0000. What Go
//! refuses is refused too: a lower-case `t` or `z`, a space for the `T`, seconds 60.

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
        let CivilTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
            nanosecond: nanos,
        } = self.civil();
        // One frame writes a timestamp per entry: digits go into a stack buffer, with
        // no formatting machinery, for the four-digit years Go's RFC 3339 allows.
        let mut text = [0u8; 38];
        let mut len = 1;
        text[0] = b'"';
        if (0..=9999).contains(&year) {
            put_digits(&mut text, &mut len, year as u32, 4);
        } else {
            let _ = write!(out, "\"{year:04}");
            len = 0;
        }
        for (sep, value) in [
            (b'-', month),
            (b'-', day),
            (b'T', hour),
            (b':', minute),
            (b':', second),
        ] {
            text[len] = sep;
            len += 1;
            put_digits(&mut text, &mut len, value, 2);
        }
        if nanos != 0 {
            text[len] = b'.';
            len += 1;
            let mut digits = 9;
            let mut fraction = nanos;
            while fraction % 10 == 0 {
                fraction /= 10;
                digits -= 1;
            }
            put_digits(&mut text, &mut len, fraction, digits);
        }
        if self.offset_seconds == 0 {
            text[len] = b'Z';
            len += 1;
        } else {
            text[len] = if self.offset_seconds < 0 { b'-' } else { b'+' };
            len += 1;
            let minutes = self.offset_seconds.unsigned_abs() / 60;
            put_digits(&mut text, &mut len, minutes / 60 % 100, 2);
            text[len] = b':';
            len += 1;
            put_digits(&mut text, &mut len, minutes % 60, 2);
        }
        text[len] = b'"';
        len += 1;
        // Only ASCII digits and punctuation were written.
        out.push_str(std::str::from_utf8(&text[..len]).unwrap_or_default());
    }
}

/// Writes `value` as exactly `width` decimal digits (zero-padded) at `text[*len..]`.
fn put_digits(text: &mut [u8], len: &mut usize, mut value: u32, width: usize) {
    for at in (*len..*len + width).rev() {
        text[at] = b'0' + (value % 10) as u8;
        value /= 10;
    }
    *len += width;
}

/// Nanoseconds from the Unix epoch to Go's zero time, 0001-01-01T00:00:00Z: the time Go
/// writes for an unset `time.Time`.
pub const ZERO_TIME_UNIX_NANOS: i128 = -62_135_596_800 * 1_000_000_000;

/// Why a timestamp was refused, in Go's words where Go has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeError {
    /// The text does not have the RFC 3339 shape at `at` (a byte offset).
    Shape { at: usize },
    /// A field is outside its range ("month", "day", "hour", ...).
    Range(&'static str),
}

impl std::fmt::Display for TimeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Shape { at } => write!(f, "not an RFC 3339 timestamp (at byte {at})"),
            Self::Range(field) => write!(f, "{field} out of range"),
        }
    }
}

impl std::error::Error for TimeError {}

/// A cursor over the timestamp's bytes.
struct Reader<'a> {
    text: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn digit(&self, offset: usize) -> Option<u32> {
        match self.text.get(self.at + offset) {
            Some(b @ b'0'..=b'9') => Some(u32::from(b - b'0')),
            _ => None,
        }
    }

    fn shape<T>(&self) -> Result<T, TimeError> {
        Err(TimeError::Shape { at: self.at })
    }

    /// Exactly `width` digits.
    fn fixed(&mut self, width: usize) -> Result<u32, TimeError> {
        let mut value = 0;
        for offset in 0..width {
            match self.digit(offset) {
                Some(d) => value = value * 10 + d,
                None => return self.shape(),
            }
        }
        self.at += width;
        Ok(value)
    }

    /// One or two digits (Go's layout `15` for the hour).
    fn one_or_two(&mut self) -> Result<u32, TimeError> {
        let Some(first) = self.digit(0) else {
            return self.shape();
        };
        match self.digit(1) {
            Some(second) => {
                self.at += 2;
                Ok(first * 10 + second)
            }
            None => {
                self.at += 1;
                Ok(first)
            }
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), TimeError> {
        if self.text.get(self.at) == Some(&byte) {
            self.at += 1;
            Ok(())
        } else {
            self.shape()
        }
    }
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in(month: u32, year: i64) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl WireTime {
    /// Reads an RFC 3339 timestamp (without its JSON quotes) as Go's `time.Parse` with
    /// the `RFC3339` layout does; see the module notes for what that accepts.
    pub fn parse_rfc3339(text: &[u8]) -> Result<Self, TimeError> {
        let mut r = Reader { text, at: 0 };
        let year = i64::from(r.fixed(4)?);
        r.expect(b'-')?;
        let month = r.fixed(2)?;
        if !(1..=12).contains(&month) {
            return Err(TimeError::Range("month"));
        }
        r.expect(b'-')?;
        let day = r.fixed(2)?;
        r.expect(b'T')?;
        let hour = r.one_or_two()?;
        if hour > 23 {
            return Err(TimeError::Range("hour"));
        }
        r.expect(b':')?;
        let minute = r.fixed(2)?;
        if minute > 59 {
            return Err(TimeError::Range("minute"));
        }
        r.expect(b':')?;
        let second = r.fixed(2)?;
        if second > 59 {
            return Err(TimeError::Range("second"));
        }
        let mut nanosecond = 0;
        if matches!(text.get(r.at), Some(b'.' | b',')) && r.digit(1).is_some() {
            // Go reads every digit and keeps the first nine.
            r.at += 1;
            let mut scale = 100_000_000;
            while let Some(d) = r.digit(0) {
                nanosecond += d * scale;
                scale /= 10;
                r.at += 1;
            }
        }
        let offset_seconds = match text.get(r.at) {
            Some(b'Z') => {
                r.at += 1;
                0
            }
            Some(sign @ (b'+' | b'-')) => {
                let negative = *sign == b'-';
                r.at += 1;
                let hours = r.fixed(2)?;
                r.expect(b':')?;
                let minutes = r.fixed(2)?;
                // Go compares with > rather than >=: some write offsets of 24 hours.
                if hours > 24 {
                    return Err(TimeError::Range("time zone offset hour"));
                }
                if minutes > 60 {
                    return Err(TimeError::Range("time zone offset minute"));
                }
                let seconds = (hours * 60 + minutes) as i32 * 60;
                if negative {
                    -seconds
                } else {
                    seconds
                }
            }
            _ => return r.shape(),
        };
        if r.at != text.len() {
            return r.shape();
        }
        if day < 1 || day > days_in(month, year) {
            return Err(TimeError::Range("day"));
        }
        Ok(Self::from_civil(
            year,
            month,
            day,
            hour,
            minute,
            second,
            nanosecond,
            offset_seconds,
        ))
    }

    /// Whether this is Go's zero time (unset), whatever the zone it is written in.
    pub fn is_zero(&self) -> bool {
        self.unix_nanos == ZERO_TIME_UNIX_NANOS
    }
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

    fn parsed(text: &str) -> Result<String, TimeError> {
        let mut out = String::new();
        WireTime::parse_rfc3339(text.as_bytes())?.write_json(&mut out);
        Ok(out)
    }

    #[test]
    fn reads_what_go_reads() {
        for (text, written) in [
            ("2024-05-01T12:00:00Z", "2024-05-01T12:00:00Z"),
            ("2024-05-01T12:00:00.5Z", "2024-05-01T12:00:00.5Z"),
            ("2024-05-01T12:00:00,5Z", "2024-05-01T12:00:00.5Z"),
            (
                "2024-05-01T12:00:00.123456789Z",
                "2024-05-01T12:00:00.123456789Z",
            ),
            (
                "2024-05-01T12:00:00.1234567891Z",
                "2024-05-01T12:00:00.123456789Z",
            ),
            (
                "2024-05-01T12:00:00.000000000000001Z",
                "2024-05-01T12:00:00Z",
            ),
            ("2024-05-01T2:00:00Z", "2024-05-01T02:00:00Z"),
            ("2024-05-01T12:00:00+24:00", "2024-05-01T12:00:00+24:00"),
            ("2024-05-01T12:00:00-05:60", "2024-05-01T12:00:00-06:00"),
            ("0000-01-01T00:00:00Z", "0000-01-01T00:00:00Z"),
            ("0000-02-29T00:00:00Z", "0000-02-29T00:00:00Z"),
            (
                "2024-02-29T23:59:59.999999999-00:30",
                "2024-02-29T23:59:59.999999999-00:30",
            ),
        ] {
            assert_eq!(
                parsed(text).as_deref(),
                Ok(&*format!("\"{written}\"")),
                "{text}"
            );
        }
    }

    #[test]
    fn refuses_what_go_refuses() {
        for text in [
            "",
            "2024-05-01",
            "2024-05-01t12:00:00Z",
            "2024-05-01 12:00:00Z",
            "2024-05-01T12:00:00z",
            "2024-05-01T12:00:00",
            "2024-05-01T12:00:00.Z",
            "2024-05-01T12:00:60Z",
            "2024-05-01T24:00:00Z",
            "2024-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-05-00T00:00:00Z",
            "2024-05-01T12:00:00+25:00",
            "2024-05-01T12:00:00+02:61",
            "2024-05-01T12:00:00+0200",
            "2024-05-01T12:00:00Z ",
            "+024-05-01T12:00:00Z",
            "12024-05-01T12:00:00Z",
        ] {
            assert!(parsed(text).is_err(), "{text}");
        }
    }

    #[test]
    fn zero_time() {
        assert!(WireTime::parse_rfc3339(b"0001-01-01T00:00:00Z")
            .unwrap()
            .is_zero());
        assert!(WireTime::parse_rfc3339(b"0001-01-01T01:00:00+01:00")
            .unwrap()
            .is_zero());
        assert!(!WireTime::now().is_zero());
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
}
