//! Parameters of the logs API: the query (errors carry the position), the time window at
//! nanosecond precision (RFC 3339 or Unix seconds, as the Prometheus API reads times),
//! limit, direction, histogram step and grouping, and the fields API's `top`.

use std::time::{SystemTime, UNIX_EPOCH};

use store::logs::{Direction, LogQuery};

use crate::error::ApiError;
use crate::params::{invalid_param, parse_duration_ms, parse_time_nanos, Params};
use crate::trace_params::search_limit;

/// The window when `start` is not given: the hour before `end`.
pub const DEFAULT_WINDOW_NANOS: u64 = 3_600 * NANOS_PER_SEC;

/// Records a search answers when `limit` is not given (the tail's backlog too).
pub const DEFAULT_LIMIT: usize = 100;

/// Values listed per field when `top` is not given, and the most `top` may ask for.
pub const DEFAULT_TOP: usize = 10;
pub const MAX_TOP: usize = 1_000;

/// Most histogram buckets one request may ask for (Prometheus's limit on points per series).
pub const MAX_BUCKETS: u64 = 11_000;

/// Buckets the default step aims at: `(end - start) / 60`, at least a second.
const DEFAULT_BUCKETS: u64 = 60;

pub const NANOS_PER_SEC: u64 = 1_000_000_000;

pub fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The `query` parameter parsed; absent or empty matches every record. A parse error is
/// `invalid parameter "query": <message> at position N` with `position` set.
pub fn query_param(params: &Params) -> Result<LogQuery, ApiError> {
    let text = params.get("query").unwrap_or_default();
    LogQuery::parse(text).map_err(|e| invalid_param("query", &e).at_position(e.position))
}

/// A time parameter as Unix nanoseconds; times before 1970 are 0 (no record is older),
/// times past what u64 holds saturate.
pub fn time_nanos_param(params: &Params, name: &str) -> Result<Option<u64>, ApiError> {
    params
        .get(name)
        .map(|text| {
            let nanos = parse_time_nanos(text).map_err(|e| invalid_param(name, e))?;
            Ok(u64::try_from(nanos.max(0)).unwrap_or(u64::MAX))
        })
        .transpose()
}

/// `[start, end]` in Unix nanoseconds, both inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub start: u64,
    pub end: u64,
}

impl Window {
    /// `end` defaults to `now`, `start` to an hour before `end`; `end` before `start` is
    /// refused (equal is an instant).
    pub fn from_params(params: &Params, now: u64) -> Result<Window, ApiError> {
        let end = time_nanos_param(params, "end")?.unwrap_or(now);
        let start =
            time_nanos_param(params, "start")?.unwrap_or(end.saturating_sub(DEFAULT_WINDOW_NANOS));
        if end < start {
            return Err(invalid_param(
                "end",
                "end time must not be before start time",
            ));
        }
        Ok(Window { start, end })
    }
}

/// `limit`: 1 to 5000, [`DEFAULT_LIMIT`] when absent.
pub fn limit_param(params: &Params) -> Result<usize, ApiError> {
    search_limit(params, "limit", DEFAULT_LIMIT)
}

/// `direction`: `backward` (newest first, the default) or `forward`, case-insensitive.
pub fn direction_param(params: &Params) -> Result<Direction, ApiError> {
    match params.get("direction") {
        None => Ok(Direction::Backward),
        Some(text) => match text.to_ascii_lowercase().as_str() {
            "backward" => Ok(Direction::Backward),
            "forward" => Ok(Direction::Forward),
            _ => Err(invalid_param(
                "direction",
                format!("{text:?} is not a direction (backward or forward)"),
            )),
        },
    }
}

/// The histogram's bucket width in nanoseconds: `step` as a Prometheus duration or float
/// seconds, by default `(end - start) / 60` and at least a second; more than
/// [`MAX_BUCKETS`] buckets are refused.
pub fn step_param(params: &Params, window: Window) -> Result<u64, ApiError> {
    let range = window.end - window.start;
    let step = match params.get("step") {
        None => (range / DEFAULT_BUCKETS).max(NANOS_PER_SEC),
        Some(text) => {
            let ms = parse_duration_ms(text).map_err(|e| invalid_param("step", e))?;
            if ms <= 0 {
                return Err(invalid_param(
                    "step",
                    "zero or negative histogram steps are not accepted. Try a positive duration such as 1m",
                ));
            }
            u64::try_from(ms)
                .unwrap_or(u64::MAX)
                .saturating_mul(1_000_000)
        }
    };
    if range / step >= MAX_BUCKETS {
        return Err(invalid_param(
            "step",
            format!(
                "exceeded maximum resolution of {MAX_BUCKETS} buckets. Try a larger step (at least {}s)",
                (range / (MAX_BUCKETS - 1)).div_ceil(NANOS_PER_SEC)
            ),
        ));
    }
    Ok(step)
}

/// `by`: absent, or `severity` for counts per severity range.
pub fn by_severity_param(params: &Params) -> Result<bool, ApiError> {
    match params.get("by") {
        None => Ok(false),
        Some("severity") => Ok(true),
        Some(other) => Err(invalid_param(
            "by",
            format!("cannot group by {other:?} (only \"severity\")"),
        )),
    }
}

/// `top`: values listed per field, 1 to [`MAX_TOP`].
pub fn top_param(params: &Params) -> Result<usize, ApiError> {
    let Some(text) = params.get("top") else {
        return Ok(DEFAULT_TOP);
    };
    match text.parse::<usize>() {
        Ok(n) if (1..=MAX_TOP).contains(&n) => Ok(n),
        _ => Err(invalid_param(
            "top",
            format!("{text:?} is not a whole number from 1 to {MAX_TOP}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params::from_pairs(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    const NOW: u64 = 1_700_000_000 * NANOS_PER_SEC;

    #[test]
    fn window_defaults_and_precision() {
        assert_eq!(
            Window::from_params(&params(&[]), NOW).ok(),
            Some(Window {
                start: NOW - DEFAULT_WINDOW_NANOS,
                end: NOW
            })
        );
        let w = Window::from_params(
            &params(&[
                ("start", "2023-11-14T22:13:20.000000001Z"),
                ("end", "1700000000.5"),
            ]),
            0,
        );
        assert_eq!(
            w.ok(),
            Some(Window {
                start: NOW + 1,
                end: NOW + NANOS_PER_SEC / 2
            })
        );
        // before 1970 is clamped, an instant is allowed
        let w = Window::from_params(&params(&[("start", "-5"), ("end", "0")]), NOW);
        assert_eq!(w.ok(), Some(Window { start: 0, end: 0 }));
        let err = Window::from_params(&params(&[("start", "10"), ("end", "9")]), NOW)
            .expect_err("end before start");
        assert_eq!(
            err.message,
            "invalid parameter \"end\": end time must not be before start time"
        );
        let err =
            Window::from_params(&params(&[("start", "yesterday")]), NOW).expect_err("bad start");
        assert_eq!(
            err.message,
            "invalid parameter \"start\": cannot parse \"yesterday\" to a valid timestamp"
        );
    }

    #[test]
    fn steps() {
        let hour = Window {
            start: NOW - DEFAULT_WINDOW_NANOS,
            end: NOW,
        };
        assert_eq!(
            step_param(&params(&[]), hour).ok(),
            Some(60 * NANOS_PER_SEC)
        );
        let instant = Window {
            start: NOW,
            end: NOW,
        };
        assert_eq!(step_param(&params(&[]), instant).ok(), Some(NANOS_PER_SEC));
        assert_eq!(
            step_param(&params(&[("step", "1m30s")]), hour).ok(),
            Some(90 * NANOS_PER_SEC)
        );
        assert_eq!(
            step_param(&params(&[("step", "0.5")]), hour).ok(),
            Some(NANOS_PER_SEC / 2)
        );
        for bad in ["0", "-1", "x", "1ms"] {
            assert!(
                step_param(&params(&[("step", bad)]), hour).is_err(),
                "{bad}"
            );
        }
        let err = step_param(&params(&[("step", "0.1")]), hour).expect_err("too many");
        assert!(
            err.message.contains("maximum resolution"),
            "{}",
            err.message
        );
    }

    #[test]
    fn limits_directions_tops_and_groupings() {
        assert_eq!(limit_param(&params(&[])).ok(), Some(DEFAULT_LIMIT));
        assert_eq!(limit_param(&params(&[("limit", "5000")])).ok(), Some(5000));
        for bad in ["0", "5001", "-1", "ten"] {
            let err = limit_param(&params(&[("limit", bad)])).expect_err(bad);
            assert!(err.message.starts_with("invalid parameter \"limit\""));
        }
        assert_eq!(
            direction_param(&params(&[("direction", "FORWARD")])).ok(),
            Some(Direction::Forward)
        );
        assert_eq!(
            direction_param(&params(&[])).ok(),
            Some(Direction::Backward)
        );
        assert!(direction_param(&params(&[("direction", "up")])).is_err());
        assert_eq!(top_param(&params(&[])).ok(), Some(DEFAULT_TOP));
        assert!(top_param(&params(&[("top", "0")])).is_err());
        assert!(top_param(&params(&[("top", "1001")])).is_err());
        assert_eq!(by_severity_param(&params(&[])).ok(), Some(false));
        assert_eq!(
            by_severity_param(&params(&[("by", "severity")])).ok(),
            Some(true)
        );
        assert!(by_severity_param(&params(&[("by", "service")])).is_err());
    }
}
