//! The formatting helpers behind the template filters `humanize`, `duration` and `time`
//! (`urlencode` is minijinja's own), usable from Rust as well.
//!
//! They follow Prometheus's template functions so numbers and times look the same in a
//! Lookout message as in an Alertmanager one: `humanize` uses SI prefixes with four
//! significant digits, times are UTC.

use store::timefmt::DateTime;

/// Prometheus's `humanize`: SI prefixes (k, M, G... for |v| >= 1; m, u, n... below), four
/// significant digits. `1234.5` -> `1.234k`, `0.0042` -> `4.2m`.
pub fn humanize(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format_g4(v);
    }
    let mut x = v;
    if v.abs() >= 1.0 {
        let mut prefix = "";
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if x.abs() < 1000.0 {
                break;
            }
            prefix = p;
            x /= 1000.0;
        }
        format!("{}{prefix}", format_g4(x))
    } else {
        let mut prefix = "";
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if x.abs() >= 1.0 {
                break;
            }
            prefix = p;
            x *= 1000.0;
        }
        format!("{}{prefix}", format_g4(x))
    }
}

/// C's `%.4g`: four significant digits, trailing zeros removed, exponent form for very
/// large or small magnitudes.
fn format_g4(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if v == 0.0 {
        return "0".into();
    }
    // Round to 4 significant digits first: rounding can carry into the next power of ten.
    let sci = format!("{v:.3e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..4).contains(&exp) {
        let m = trim_zeros(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{m}e{sign}{:02}", exp.abs());
    }
    let decimals = usize::try_from(3 - exp).unwrap_or(0);
    trim_zeros(&format!("{v:.decimals$}")).to_string()
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// A duration in milliseconds as Prometheus prints one: `5m`, `1h30m`, `2d3h`, `750ms`.
/// Negative durations print as `0s`.
pub fn duration(ms: i64) -> String {
    if ms <= 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let mut secs = ms / 1000;
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        let n = secs / size;
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
            secs %= size;
        }
    }
    out
}

/// Unix milliseconds as `2006-01-02 15:04:05 UTC`.
pub fn time(ms: i64) -> String {
    let date_time = DateTime::from_unix_secs(ms.div_euclid(1000)).format(' ');
    format!("{date_time} UTC")
}

/// Unix milliseconds as RFC 3339 in UTC with second precision (`2006-01-02T15:04:05Z`,
/// `.250`-style milliseconds only when not zero), as Alertmanager's JSON carries times.
pub use store::timefmt::format_rfc3339_millis_if_nonzero as rfc3339;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humanize_matches_prometheus() {
        assert_eq!(humanize(0.0), "0");
        assert_eq!(humanize(1.0), "1");
        assert_eq!(humanize(1234.5), "1.234k");
        assert_eq!(humanize(1_500_000.0), "1.5M");
        assert_eq!(humanize(0.0042), "4.2m");
        assert_eq!(humanize(-2500.0), "-2.5k");
        assert_eq!(humanize(2.71234), "2.712");
        assert_eq!(humanize(999.99), "1000");
        assert_eq!(humanize(f64::NAN), "NaN");
        assert_eq!(humanize(f64::INFINITY), "+Inf");
        assert_eq!(format_g4(1.0e-7), "1e-07");
        assert_eq!(format_g4(123_456.0), "1.235e+05");
    }

    #[test]
    fn durations_and_times() {
        assert_eq!(duration(300_000), "5m");
        assert_eq!(duration(5_400_000), "1h30m");
        assert_eq!(duration(90_061_000), "1d1h1m1s");
        assert_eq!(duration(750), "750ms");
        assert_eq!(duration(-5), "0s");
        assert_eq!(time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(time(1_136_214_245_000), "2006-01-02 15:04:05 UTC");
        assert_eq!(time(1_709_210_096_000), "2024-02-29 12:34:56 UTC");
    }
}
