//! Request parameters as Prometheus reads them: URL query and, for POST, an
//! `application/x-www-form-urlencoded` body (body values first, as Go's `r.Form`), and the
//! parsing of times, durations and `match[]` selectors with Prometheus's error wording.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, Method};
use promql_parser::parser::Expr;
use store::promql::parse as parse_promql;
use store::timefmt::{parse_rfc3339_millis, parse_rfc3339_nanos};
use store::LabelMatcher;

use crate::error::ApiError;

/// Largest form body accepted on POST (queries with many `match[]` can be long).
const MAX_FORM_BYTES: usize = 4 * 1024 * 1024;

/// Earliest and latest times, used when `start`/`end` are omitted.
pub const MIN_TIME_MS: i64 = i64::MIN / 2;
pub const MAX_TIME_MS: i64 = i64::MAX / 2;

/// All parameters of a request, in Go's `r.Form` order.
#[derive(Debug, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    #[cfg(test)]
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        Params { pairs }
    }

    /// The first value of `name`, if present and non-empty (Go's `r.FormValue`).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// Every value of `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

fn decode(bytes: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(bytes).into_owned().collect()
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let query = req
            .uri()
            .query()
            .map(|q| decode(q.as_bytes()))
            .unwrap_or_default();
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if req.method() != Method::POST || !is_form {
            return Ok(Params { pairs: query });
        }
        let body: Bytes = axum::body::to_bytes(req.into_body(), MAX_FORM_BYTES)
            .await
            .map_err(|e| ApiError::bad_data(format!("error parsing form values: {e}")))?;
        let mut pairs = decode(&body);
        pairs.extend(query);
        Ok(Params { pairs })
    }
}

/// `invalid parameter "name": message`, Prometheus's wrapping of parameter errors.
pub fn invalid_param(name: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::bad_data(format!("invalid parameter {name:?}: {message}"))
}

/// Parses a time as Prometheus does: Unix seconds with an optional fraction (rounded to
/// milliseconds), or RFC 3339. Returns milliseconds since the epoch.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let bad = || format!("cannot parse {text:?} to a valid timestamp");
    if let Ok(secs) = text.parse::<f64>() {
        // Go's ParseFloat accepts what Rust's does here except "infinity" spellings, which
        // cannot be timestamps anyway
        if !secs.is_finite() {
            return Err(bad());
        }
        let ms = (secs.trunc() * 1000.0) + (secs.fract() * 1000.0).round();
        if ms.abs() >= 9.2e18 {
            return Err(bad());
        }
        return Ok(ms as i64);
    }
    parse_rfc3339_millis(text).ok_or_else(bad)
}

/// A time parameter that may be absent.
pub fn time_param(params: &Params, name: &str, default_ms: i64) -> Result<i64, ApiError> {
    match params.get(name) {
        None => Ok(default_ms),
        Some(text) => parse_time(text).map_err(|e| invalid_param(name, e)),
    }
}

/// Parses a time at nanosecond precision (for the logs API, whose records carry nanosecond
/// times): Unix seconds with up to nine fraction digits read exactly, other numbers as
/// [`parse_time`] reads them, or RFC 3339 with up to nine fraction digits. Returns
/// nanoseconds since the epoch.
pub fn parse_time_nanos(text: &str) -> Result<i128, String> {
    let bad = || format!("cannot parse {text:?} to a valid timestamp");
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let plain = !int.is_empty()
        && int.len() <= 12
        && frac.len() <= 9
        && int.bytes().all(|c| c.is_ascii_digit())
        && frac.bytes().all(|c| c.is_ascii_digit());
    if plain {
        let whole: i128 = int.parse().map_err(|_| bad())?;
        let frac_nanos: i128 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<9}").parse().map_err(|_| bad())?
        };
        let nanos = whole * 1_000_000_000 + frac_nanos;
        return Ok(if text.starts_with('-') { -nanos } else { nanos });
    }
    if text.parse::<f64>().is_ok() {
        return parse_time(text).map(|ms| i128::from(ms) * 1_000_000);
    }
    parse_rfc3339_nanos(text).ok_or_else(bad)
}

/// Parses a duration as Prometheus does: float seconds or a Prometheus duration string.
/// Returns milliseconds (sub-millisecond parts are dropped).
pub fn parse_duration_ms(text: &str) -> Result<i64, String> {
    if let Ok(secs) = text.parse::<f64>() {
        let ms = secs * 1000.0;
        if !ms.is_finite() || ms.abs() >= 9.2e15 {
            return Err(format!(
                "cannot parse {text:?} to a valid duration. It overflows int64"
            ));
        }
        return Ok(ms as i64);
    }
    store::duration::parse_duration(text)
        .ok()
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .ok_or_else(|| format!("cannot parse {text:?} to a valid duration"))
}

/// The optional `timeout` parameter.
pub fn timeout_param(params: &Params) -> Result<Option<Duration>, ApiError> {
    match params.get("timeout") {
        None => Ok(None),
        Some(text) => {
            let ms = parse_duration_ms(text).map_err(|e| invalid_param("timeout", e))?;
            Ok(Some(Duration::from_millis(ms.max(0) as u64)))
        }
    }
}

/// The optional `limit` parameter (0 or absent: no limit).
pub fn limit_param(params: &Params) -> Result<Option<usize>, ApiError> {
    match params.get("limit") {
        None => Ok(None),
        Some(text) => {
            let n: i64 = text.parse().map_err(|_| {
                invalid_param("limit", format!("cannot parse {text:?} to a valid limit"))
            })?;
            if n < 0 {
                return Err(invalid_param("limit", "limit must be non-negative"));
            }
            Ok(if n == 0 { None } else { Some(n as usize) })
        }
    }
}

/// Parses every `match[]` as a series selector into matcher sets (an `or` selector
/// contributes one set per alternative).
pub fn match_params(params: &Params) -> Result<Vec<Vec<LabelMatcher>>, ApiError> {
    let mut sets = Vec::new();
    for text in params.all("match[]") {
        sets.extend(parse_selector(text).map_err(|e| invalid_param("match[]", e))?);
    }
    Ok(sets)
}

fn parse_selector(text: &str) -> Result<Vec<Vec<LabelMatcher>>, String> {
    let expr = parse_promql(text).map_err(|e| e.to_string())?;
    let Expr::VectorSelector(vs) = expr else {
        return Err(format!(
            "expected a series selector such as up{{job=\"x\"}}, got {text:?}"
        ));
    };
    store::promql::selector_matcher_sets(&vs).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_unix_seconds_with_fraction() {
        assert_eq!(parse_time("1435781451.781"), Ok(1_435_781_451_781));
        assert_eq!(parse_time("0"), Ok(0));
        assert_eq!(parse_time("-1.5"), Ok(-1500));
        assert_eq!(parse_time("1e3"), Ok(1_000_000));
    }

    #[test]
    fn parses_rfc3339() {
        assert_eq!(
            parse_time("2015-07-01T20:10:51.781Z"),
            Ok(1_435_781_451_781)
        );
        assert_eq!(
            parse_time("2015-07-01T22:10:51.781+02:00"),
            Ok(1_435_781_451_781)
        );
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_time("2024-02-29T00:00:00Z"), Ok(1_709_164_800_000));
        assert_eq!(
            parse_time("2015-07-01T18:10:51.781-02:00"),
            Ok(1_435_781_451_781)
        );
    }

    #[test]
    fn parses_times_to_the_nanosecond() {
        assert_eq!(
            parse_time_nanos("1700000000.123456789"),
            Ok(1_700_000_000_123_456_789)
        );
        assert_eq!(
            parse_time_nanos("1700000000"),
            Ok(1_700_000_000_000_000_000)
        );
        assert_eq!(parse_time_nanos("-1.5"), Ok(-1_500_000_000));
        assert_eq!(parse_time_nanos("1e3"), Ok(1_000_000_000_000));
        assert_eq!(
            parse_time_nanos("2015-07-01T20:10:51.781000123Z"),
            Ok(1_435_781_451_781_000_123)
        );
        assert_eq!(parse_time_nanos("1969-12-31T23:59:59.5Z"), Ok(-500_000_000));
        assert_eq!(parse_time("1969-12-31T23:59:59.5Z"), Ok(-500));
        assert_eq!(parse_time_nanos("1."), Ok(1_000_000_000));
        for bad in [
            "",
            "x",
            "1.1234567891x",
            "NaN",
            "--1",
            "2015-07-01T20:10:51",
        ] {
            assert!(parse_time_nanos(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn rejects_signs_inside_utc_offsets() {
        assert!(parse_time("2015-07-01T20:10:51+-1:00").is_err());
        assert!(parse_time("2015-07-01T20:10:51+01:+1").is_err());
    }

    #[test]
    fn rejects_bad_times_in_prometheus_words() {
        assert_eq!(
            parse_time("x"),
            Err("cannot parse \"x\" to a valid timestamp".to_string())
        );
        for bad in [
            "2023-02-29T00:00:00Z",
            "2015-07-01 20:10:51Z",
            "NaN",
            "inf",
            "2015-07-01T20:10:51",
        ] {
            assert!(parse_time(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn parses_durations_as_prometheus() {
        assert_eq!(parse_duration_ms("15"), Ok(15_000));
        assert_eq!(parse_duration_ms("0.5"), Ok(500));
        assert_eq!(parse_duration_ms("1m30s"), Ok(90_000));
        assert_eq!(
            parse_duration_ms("x"),
            Err("cannot parse \"x\" to a valid duration".to_string())
        );
    }

    #[test]
    fn first_value_wins_and_all_values_are_kept() {
        let p = Params::from_pairs(vec![
            ("match[]".into(), "up".into()),
            ("a".into(), "1".into()),
            ("match[]".into(), "down".into()),
            ("a".into(), "2".into()),
        ]);
        assert_eq!(p.get("a"), Some("1"));
        assert_eq!(p.all("match[]"), vec!["up", "down"]);
        assert_eq!(p.get("missing"), None);
    }

    #[test]
    fn match_param_must_be_a_selector() {
        let p = Params::from_pairs(vec![("match[]".into(), "sum(up)".into())]);
        let Err(err) = match_params(&p) else {
            panic!("sum(up) must be refused as a match[] selector");
        };
        assert!(
            err.message.starts_with("invalid parameter \"match[]\""),
            "{}",
            err.message
        );
        let p = Params::from_pairs(vec![("match[]".into(), "up{job=\"a\"}".into())]);
        assert_eq!(match_params(&p).map(|s| s.len()).ok(), Some(1));
    }
}
