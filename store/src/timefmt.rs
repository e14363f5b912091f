//! Gregorian calendar math and RFC 3339 text for Unix times: the one copy the API, the
//! alerter, its templates and PromQL's date functions share.
//!
//! Dates are proleptic Gregorian in UTC (Howard Hinnant's `days_from_civil` and
//! `civil_from_days`, exact for every `i64` day count the callers can produce). The
//! formatters differ only in how much fraction they print, because each mirrors the wire
//! format of the surface that uses it; the parser reads RFC 3339 as the HTTP API accepts it.

/// Whether `year` has a 29 February.
pub fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// Days in `month` (1..=12) of `year`.
pub fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a date (`month` 1..=12, `day` 1..=31).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let (month, day) = (i64::from(month), i64::from(day));
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date (year, month 1..=12, day 1..=31) of a day count since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    // both are small and positive by construction: day 1..=31, month 1..=12
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A UTC calendar time to the second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl DateTime {
    /// The calendar time of Unix seconds.
    pub fn from_unix_secs(secs: i64) -> DateTime {
        let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
        // 0..86_400 fits a u32
        let rem = secs.rem_euclid(86_400) as u32;
        DateTime {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem / 60 % 60,
            second: rem % 60,
        }
    }

    /// `YYYY-MM-DD<sep>HH:MM:SS`, no fraction or zone.
    pub fn format(&self, sep: char) -> String {
        let DateTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
        } = self;
        format!("{year:04}-{month:02}-{day:02}{sep}{hour:02}:{minute:02}:{second:02}")
    }
}

/// Unix milliseconds as `2006-01-02T15:04:05.000Z`: always three fraction digits
/// (Alertmanager's v2 API, the notification attempts log).
pub fn format_rfc3339_millis(ms: i64) -> String {
    let date_time = DateTime::from_unix_secs(ms.div_euclid(1000)).format('T');
    format!("{date_time}.{:03}Z", ms.rem_euclid(1000))
}

/// Unix milliseconds as `2006-01-02T15:04:05Z`, with `.250`-style milliseconds only when
/// they are not zero (the webhook payload and the templates' `rfc3339` filter).
pub fn format_rfc3339_millis_if_nonzero(ms: i64) -> String {
    let date_time = DateTime::from_unix_secs(ms.div_euclid(1000)).format('T');
    match ms.rem_euclid(1000) {
        0 => format!("{date_time}Z"),
        frac => format!("{date_time}.{frac:03}Z"),
    }
}

/// Unix nanoseconds as `2006-01-02T15:04:05.000000000Z`: always nine fraction digits
/// (the logs API).
pub fn format_rfc3339_nanos(unix_nanos: u64) -> String {
    // u64::MAX / 10^9 fits an i64
    let secs = (unix_nanos / 1_000_000_000) as i64;
    let date_time = DateTime::from_unix_secs(secs).format('T');
    format!("{date_time}.{:09}Z", unix_nanos % 1_000_000_000)
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` (`T` or `t`, `Z` or `z`, one to nine
/// fraction digits, a real calendar date, no leap second) into Unix nanoseconds; `None`
/// when malformed.
pub fn parse_rfc3339_nanos(text: &str) -> Option<i128> {
    let b = text.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    // a run of ASCII digits (`str::parse` alone would take a sign)
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let s = text.get(r)?;
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (year, month, day) = (i64::from(num(0..4)?), num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut rest = &text[19..];
    let mut nanos = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        let padded = format!("{:0<9}", &frac[..digits]);
        nanos = padded.parse().ok()?;
        rest = &frac[digits..];
    }
    let offset_secs = match rest {
        "Z" | "z" => 0,
        _ => {
            let rb = rest.as_bytes();
            if rb.len() != 6 || rb[3] != b':' {
                return None;
            }
            let sign = match rb[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            // `rest` is the last six bytes of `text`; `num` insists on ASCII digits
            let at = text.len() - rest.len();
            let (h, m) = (num(at + 1..at + 3)?, num(at + 4..at + 6)?);
            if h > 23 || m > 59 {
                return None;
            }
            sign * i64::from(h * 3600 + m * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset_secs;
    Some(i128::from(secs) * 1_000_000_000 + i128::from(nanos))
}

/// [`parse_rfc3339_nanos`] in Unix milliseconds (the fraction beyond them dropped, rounding
/// toward the past).
pub fn parse_rfc3339_millis(text: &str) -> Option<i64> {
    i64::try_from(parse_rfc3339_nanos(text)?.div_euclid(1_000_000)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_math() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(-719_162), (1, 1, 1));
        for days in [-1_000_000, -1, 0, 59, 11_016, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert!(is_leap_year(2000) && is_leap_year(2024));
        assert!(!is_leap_year(1900) && !is_leap_year(2023));
        assert_eq!(days_in_month(2024, 2), 29);
        assert_eq!(days_in_month(2100, 2), 28);
        assert_eq!(days_in_month(2023, 4), 30);
        assert_eq!(days_in_month(2023, 12), 31);
        assert_eq!(
            DateTime::from_unix_secs(1_709_210_096).format(' '),
            "2024-02-29 12:34:56"
        );
    }

    #[test]
    fn formats_milliseconds() {
        assert_eq!(format_rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_rfc3339_millis(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(
            format_rfc3339_millis(1_709_251_198_500),
            "2024-02-29T23:59:58.500Z"
        );
        assert_eq!(
            format_rfc3339_millis_if_nonzero(1_136_214_245_000),
            "2006-01-02T15:04:05Z"
        );
        assert_eq!(
            format_rfc3339_millis_if_nonzero(1_136_214_245_250),
            "2006-01-02T15:04:05.250Z"
        );
        assert_eq!(
            format_rfc3339_millis_if_nonzero(-62_135_596_800_000),
            "0001-01-01T00:00:00Z"
        );
    }

    #[test]
    fn formats_nanoseconds() {
        assert_eq!(format_rfc3339_nanos(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            format_rfc3339_nanos(1_435_781_451_781_000_123),
            "2015-07-01T20:10:51.781000123Z"
        );
        assert_eq!(
            format_rfc3339_nanos(1_709_164_800_000_000_000),
            "2024-02-29T00:00:00.000000000Z"
        );
        assert_eq!(
            format_rfc3339_nanos(u64::MAX),
            "2554-07-21T23:34:33.709551615Z"
        );
        for t in [1u64, 951_782_400_999_999_999, 4_102_444_800_000_000_000] {
            assert_eq!(
                parse_rfc3339_nanos(&format_rfc3339_nanos(t)),
                Some(i128::from(t))
            );
        }
    }

    #[test]
    fn parses_offsets_and_fractions() {
        let ms = parse_rfc3339_millis("2024-02-29T23:59:58.5Z").unwrap();
        assert_eq!(format_rfc3339_millis(ms), "2024-02-29T23:59:58.500Z");
        assert_eq!(parse_rfc3339_millis("1970-01-01T08:00:00+08:00"), Some(0));
        assert_eq!(
            parse_rfc3339_millis("2015-07-01T18:10:51.781-02:00"),
            Some(1_435_781_451_781)
        );
        assert_eq!(
            parse_rfc3339_millis("1970-01-01T00:00:01.123456789Z"),
            Some(1123)
        );
        assert_eq!(
            parse_rfc3339_nanos("1970-01-01t00:00:01.123456789z"),
            Some(1_123_456_789)
        );
        assert_eq!(
            parse_rfc3339_nanos("1969-12-31T23:59:59.5Z"),
            Some(-500_000_000)
        );
        assert_eq!(parse_rfc3339_millis("1969-12-31T23:59:59.5Z"), Some(-500));
    }

    #[test]
    fn rejects_malformed_times() {
        for junk in [
            "2024-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-04-31T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:60Z",
            "2024-01-01 00:00",
            "2024-01-01 00:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00.1234567890Z",
            "2024-01-01T00:00:00.é",
            "２０２４-01-01T00:00:00Z",
            "2024-01-01T00:00:00+08",
            "2024-01-01T00:00:00+24:00",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00+0é:00",
            "2024-01-01T00:00:00+-1:00",
            "2024-01-01T00:00:00+01:+1",
        ] {
            assert!(parse_rfc3339_nanos(junk).is_none(), "{junk}");
        }
    }
}
