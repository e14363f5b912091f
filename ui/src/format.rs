//! Numbers, durations and times as the pages show them. Times are shown in UTC so the
//! server-rendered page and the hydrated one agree to the character.

/// `2026-11-21 16:40:05` (UTC) for Unix seconds.
pub fn datetime(secs: f64) -> String {
    let (date, time) = date_and_time(secs);
    format!("{date} {time}")
}

/// `16:40:05` (UTC).
pub fn clock(secs: f64) -> String {
    date_and_time(secs).1
}

/// `11-21 16:40` (UTC): axis labels of ranges longer than a day.
pub fn month_day_clock(secs: f64) -> String {
    let (date, time) = date_and_time(secs);
    format!("{} {}", &date[5..], &time[..5])
}

fn date_and_time(secs: f64) -> (String, String) {
    let s = if secs.is_finite() {
        secs.floor() as i64
    } else {
        0
    };
    let days = s.div_euclid(86_400);
    let rem = s.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    (
        format!("{y:04}-{m:02}-{d:02}"),
        format!("{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60),
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// (year, month, day) to days since 1970-01-01.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A duration in seconds, compactly: `850µs`, `12.3ms`, `1.25s`, `3m 20s`, `2h 5m`.
pub fn duration_secs(s: f64) -> String {
    if !s.is_finite() {
        return "-".into();
    }
    let a = s.abs();
    if a == 0.0 {
        "0".into()
    } else if a < 1e-3 {
        format!("{:.0}µs", s * 1e6)
    } else if a < 1.0 {
        format!("{}ms", sig3(s * 1e3))
    } else if a < 60.0 {
        format!("{}s", sig3(s))
    } else if a < 3600.0 {
        format!("{}m {}s", (s / 60.0).floor(), (s % 60.0).floor())
    } else {
        format!("{}h {}m", (s / 3600.0).floor(), (s % 3600.0 / 60.0).floor())
    }
}

/// A value with at most 3 significant digits and an SI suffix: `0.123`, `12.3`, `4.56k`, `7.8M`.
pub fn si(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let a = v.abs();
    let (scaled, suffix) = if a >= 1e12 {
        (v / 1e12, "T")
    } else if a >= 1e9 {
        (v / 1e9, "G")
    } else if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    format!("{}{suffix}", sig3(scaled))
}

/// A ratio 0..1 as a percentage: `99.95%`, `100%`.
pub fn percent(r: f64) -> String {
    if !r.is_finite() {
        return "-".into();
    }
    let p = r * 100.0;
    if p >= 99.995 || p == 0.0 {
        format!("{p:.0}%")
    } else if p >= 99.0 {
        format!("{p:.2}%")
    } else {
        format!("{p:.1}%")
    }
}

/// Requests per second: `12.3/s`.
pub fn rate(r: f64) -> String {
    if !r.is_finite() {
        return "-".into();
    }
    format!("{}/s", si(r))
}

/// At most 3 significant digits, no trailing zeros.
fn sig3(v: f64) -> String {
    let a = v.abs();
    let decimals = if a >= 100.0 {
        0
    } else if a >= 10.0 {
        1
    } else if a >= 1.0 {
        2
    } else {
        3
    };
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_are_utc() {
        assert_eq!(datetime(0.0), "1970-01-01 00:00:00");
        assert_eq!(datetime(1_795_279_205.0), "2026-11-21 16:40:05");
        assert_eq!(month_day_clock(1_795_279_205.0), "11-21 16:40");
        for days in [-1000, 0, 59, 60, 11_000, 20_778] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn numbers_are_compact() {
        assert_eq!(si(1234.0), "1.23k");
        assert_eq!(si(0.5), "0.5");
        assert_eq!(si(12.0), "12");
        assert_eq!(si(f64::INFINITY), "+Inf");
        assert_eq!(percent(0.99951), "99.95%");
        assert_eq!(percent(1.0), "100%");
        assert_eq!(percent(0.873), "87.3%");
        assert_eq!(duration_secs(0.0123), "12.3ms");
        assert_eq!(duration_secs(200.0), "3m 20s");
        assert_eq!(duration_secs(0.0005), "500µs");
        assert_eq!(rate(2.5), "2.5/s");
    }
}
