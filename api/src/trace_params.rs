//! Parameters of the trace APIs: trace ids, span durations at nanosecond precision (Go's
//! `time.ParseDuration` syntax plus Prometheus's units), logfmt tags, and the time window of
//! a request. Errors name the parameter, as the Prometheus API's do.

use store::traces::TraceId;

use crate::error::ApiError;
use crate::params::{invalid_param, parse_time, Params};

/// The window of searches and RED queries when `start` is not given: the last hour.
pub const DEFAULT_WINDOW_MS: i64 = 3_600_000;

/// Most results one search may ask for (Lookout's summaries and Jaeger's full traces).
pub const MAX_SEARCH_LIMIT: usize = 5_000;

const NANOS_PER_MS: u64 = 1_000_000;

/// A Lookout trace id: exactly 32 hex characters, not all zeros. The message says which rule
/// was broken.
pub fn parse_trace_id(text: &str) -> Result<TraceId, String> {
    if text.len() != 32 {
        return Err(format!(
            "trace id {text:?} must be 32 hex characters, got {}",
            text.chars().count()
        ));
    }
    if let Some(c) = text.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(format!("trace id {text:?} is not hex: {c:?}"));
    }
    // checked above: 32 hex digits, so only the all-zeros rule can still fail
    TraceId::from_hex(text)
}

/// A Jaeger trace id: 1 to 32 hex characters, left-padded with zeros (Jaeger's
/// `TraceIDFromString` accepts 64-bit ids written as 16 characters or fewer).
pub fn parse_jaeger_trace_id(text: &str) -> Result<TraceId, String> {
    if text.is_empty() || text.len() > 32 {
        return Err(format!(
            "trace id {text:?} must be 1 to 32 hex characters, got {}",
            text.chars().count()
        ));
    }
    if let Some(c) = text.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(format!("trace id {text:?} is not hex: {c:?}"));
    }
    TraceId::from_hex(&format!("{text:0>32}"))
}

/// Units of span durations, longest spelling first where one is a prefix of another.
const UNITS: [(&str, u128); 11] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000), // U+00B5 MICRO SIGN, as Go accepts
    ("μs", 1_000), // U+03BC GREEK SMALL LETTER MU
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
    ("d", 86_400_000_000_000),
    ("w", 604_800_000_000_000),
    ("y", 31_536_000_000_000_000),
];

/// Parses a span duration into nanoseconds: Go's `time.ParseDuration` syntax (`1.5s`,
/// `250ms`, `100us`, `1h30m`), Prometheus's `d`, `w`, `y`, or a bare number of seconds
/// (`0.25`), as Prometheus's API reads durations. Negative durations are refused.
pub fn parse_nanos(text: &str) -> Result<u64, String> {
    let bad = || {
        format!("cannot parse {text:?} to a valid duration (expected e.g. 100ms, 1.5s, 2m, 250us)")
    };
    if text.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        if let Ok(secs) = text.parse::<f64>() {
            let nanos = secs * 1e9;
            if !nanos.is_finite() || nanos >= u64::MAX as f64 {
                return Err(bad());
            }
            return Ok(nanos.round() as u64);
        }
    }
    if text.is_empty() {
        return Err(bad());
    }
    let mut rest = text;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let int_part = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac_part = "";
        if let Some(after) = rest.strip_prefix('.') {
            let n = after.bytes().take_while(u8::is_ascii_digit).count();
            frac_part = &after[..n];
            rest = &after[n..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(bad());
        }
        let (unit, scale) = UNITS
            .iter()
            .find(|(u, _)| rest.starts_with(u))
            .copied()
            .ok_or_else(bad)?;
        rest = &rest[unit.len()..];
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| bad())?
        };
        // at most 18 fraction digits count: finer than a nanosecond of any unit here
        let frac_digits = &frac_part[..frac_part.len().min(18)];
        let frac: u128 = if frac_digits.is_empty() {
            0
        } else {
            frac_digits.parse().map_err(|_| bad())?
        };
        let frac_nanos = frac * scale / 10u128.pow(frac_digits.len() as u32);
        total = whole
            .checked_mul(scale)
            .and_then(|w| w.checked_add(frac_nanos))
            .and_then(|v| v.checked_add(total))
            .ok_or_else(bad)?;
    }
    u64::try_from(total).map_err(|_| bad())
}

/// An optional duration parameter in nanoseconds.
pub fn nanos_param(params: &Params, name: &str) -> Result<Option<u64>, ApiError> {
    params
        .get(name)
        .map(|text| parse_nanos(text).map_err(|e| invalid_param(name, e)))
        .transpose()
}

/// Parses logfmt `key=value` pairs: `a=b c="d e"`. Values may be double-quoted (with `\"`,
/// `\\`, `\n`, `\t` escapes); an unquoted value runs to the next space and may be empty.
pub fn parse_logfmt(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            if c == '"' {
                return Err(format!("a tag key cannot contain '\"' (in {text:?})"));
            }
            key.push(c);
        }
        if chars.next_if_eq(&'=').is_none() {
            return Err(format!("tag {key:?} has no value: write key=value"));
        }
        if key.is_empty() {
            return Err(format!("a tag has an empty key (in {text:?})"));
        }
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            loop {
                match chars.next() {
                    None => return Err(format!("tag {key:?}: unterminated quoted value")),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some('n') => value.push('\n'),
                        Some('t') => value.push('\t'),
                        Some('r') => value.push('\r'),
                        Some(c @ ('"' | '\\')) => value.push(c),
                        Some(c) => {
                            return Err(format!("tag {key:?}: unknown escape \\{c} in value"))
                        }
                        None => return Err(format!("tag {key:?}: unterminated quoted value")),
                    },
                    Some(c) => value.push(c),
                }
            }
            if chars.peek().is_some_and(|c| !c.is_whitespace()) {
                return Err(format!(
                    "tag {key:?}: a space must follow the closing quote of its value"
                ));
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                value.push(c);
            }
        }
        out.push((key, value));
    }
}

/// Every `tags` parameter as logfmt, all pairs together.
pub fn tags_param(params: &Params) -> Result<Vec<(String, String)>, ApiError> {
    let mut tags = Vec::new();
    for text in params.all("tags") {
        tags.extend(parse_logfmt(text).map_err(|e| invalid_param("tags", e))?);
    }
    Ok(tags)
}

/// `true`/`false` (or `1`/`0`), case-insensitive.
pub fn bool_param(params: &Params, name: &str) -> Result<Option<bool>, ApiError> {
    match params.get(name) {
        None => Ok(None),
        Some(text) => match text.to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(Some(true)),
            "false" | "0" => Ok(Some(false)),
            _ => Err(invalid_param(
                name,
                format!("cannot parse {text:?} as a boolean (true or false)"),
            )),
        },
    }
}

/// A positive result limit, `default` when absent, at most [`MAX_SEARCH_LIMIT`].
pub fn search_limit(params: &Params, name: &str, default: usize) -> Result<usize, ApiError> {
    let Some(text) = params.get(name) else {
        return Ok(default);
    };
    match text.parse::<usize>() {
        Ok(n) if (1..=MAX_SEARCH_LIMIT).contains(&n) => Ok(n),
        _ => Err(invalid_param(
            name,
            format!("{text:?} is not a whole number from 1 to {MAX_SEARCH_LIMIT}"),
        )),
    }
}

/// A request's time window in milliseconds: `start`/`end` as RFC 3339 or Unix seconds,
/// `end` defaulting to now and `start` to an hour before `end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub start_ms: i64,
    pub end_ms: i64,
}

impl Window {
    /// `allow_empty`: whether `start == end` is accepted (searches take it as an instant; the
    /// RED queries need a range to take an `increase` over).
    pub fn from_params(params: &Params, now_ms: i64, allow_empty: bool) -> Result<Self, ApiError> {
        let end_ms = match params.get("end") {
            None => now_ms,
            Some(text) => parse_time(text).map_err(|e| invalid_param("end", e))?,
        };
        let start_ms = match params.get("start") {
            None => end_ms.saturating_sub(DEFAULT_WINDOW_MS),
            Some(text) => parse_time(text).map_err(|e| invalid_param("start", e))?,
        };
        if end_ms < start_ms || (!allow_empty && end_ms == start_ms) {
            let rule = if allow_empty {
                "must not be before"
            } else {
                "must be after"
            };
            return Err(invalid_param("end", format!("end time {rule} start time")));
        }
        Ok(Window { start_ms, end_ms })
    }

    pub fn range_ms(&self) -> i64 {
        self.end_ms.saturating_sub(self.start_ms)
    }

    pub fn start_nanos(&self) -> u64 {
        ms_to_nanos(self.start_ms)
    }

    pub fn end_nanos(&self) -> u64 {
        ms_to_nanos(self.end_ms)
    }
}

/// Milliseconds since the epoch as nanoseconds; times before 1970 are 0 (no span starts
/// there), times past what u64 nanoseconds hold saturate.
pub fn ms_to_nanos(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0).saturating_mul(NANOS_PER_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_name_the_broken_rule() {
        let id = "0af7651916cd43dd8448eb211c80319c";
        assert_eq!(
            parse_trace_id(id).map(|t| t.to_string()),
            Ok(id.to_string())
        );
        assert_eq!(
            parse_trace_id("ABCDEF0123456789abcdef0123456789").map(|t| t.to_string()),
            Ok("abcdef0123456789abcdef0123456789".to_string())
        );
        let short = parse_trace_id("abc").expect_err("must fail");
        assert!(
            short.contains("must be 32 hex characters, got 3"),
            "{short}"
        );
        let not_hex = parse_trace_id("0af7651916cd43dd8448eb211c80319g").expect_err("must fail");
        assert!(not_hex.contains("is not hex: 'g'"), "{not_hex}");
        // from_str_radix would take "+f" as a hex byte: refused here before it gets there
        let plus = parse_trace_id("+f+f651916cd43dd8448eb211c80319c").expect_err("must fail");
        assert!(plus.contains("is not hex: '+'"), "{plus}");
        let zeros = parse_trace_id(&"0".repeat(32)).expect_err("must fail");
        assert!(zeros.contains("must not be all zeros"), "{zeros}");
        // multi-byte characters are counted as characters and never split
        let wide = parse_trace_id("é".repeat(16).as_str()).expect_err("must fail");
        assert!(wide.contains("is not hex: 'é'"), "{wide}");
    }

    #[test]
    fn jaeger_ids_are_left_padded() {
        assert_eq!(
            parse_jaeger_trace_id("1f").map(|t| t.to_string()),
            Ok(format!("{}1f", "0".repeat(30)))
        );
        assert!(parse_jaeger_trace_id("").is_err());
        assert!(parse_jaeger_trace_id(&"a".repeat(33)).is_err());
        assert!(parse_jaeger_trace_id("0").is_err());
        assert!(parse_jaeger_trace_id("xyz").is_err());
    }

    #[test]
    fn durations_in_go_and_prometheus_syntax() {
        assert_eq!(parse_nanos("100ms"), Ok(100_000_000));
        assert_eq!(parse_nanos("1.5s"), Ok(1_500_000_000));
        assert_eq!(parse_nanos("1h30m"), Ok(5_400_000_000_000));
        assert_eq!(parse_nanos("250us"), Ok(250_000));
        assert_eq!(parse_nanos("250µs"), Ok(250_000));
        assert_eq!(parse_nanos("250μs"), Ok(250_000));
        assert_eq!(parse_nanos("7ns"), Ok(7));
        assert_eq!(parse_nanos(".5ms"), Ok(500_000));
        assert_eq!(parse_nanos("1d"), Ok(86_400_000_000_000));
        assert_eq!(parse_nanos("0.25"), Ok(250_000_000));
        assert_eq!(parse_nanos("2"), Ok(2_000_000_000));
        assert_eq!(parse_nanos("0"), Ok(0));
        assert_eq!(parse_nanos("1.000000001s"), Ok(1_000_000_001));
        for bad in [
            "", "x", "-1s", "ms", "1sec", "10q", "1e400", "NaN", "inf", "1s-",
        ] {
            let err = parse_nanos(bad).expect_err(bad);
            assert!(err.contains("cannot parse"), "{bad}: {err}");
        }
        assert!(parse_nanos("99999999999y").is_err(), "overflow is refused");
    }

    #[test]
    fn logfmt_tags() {
        assert_eq!(
            parse_logfmt(r#"a=b  c="d e" http.status_code=500 empty= q="x\"y\\z""#),
            Ok(vec![
                ("a".into(), "b".into()),
                ("c".into(), "d e".into()),
                ("http.status_code".into(), "500".into()),
                ("empty".into(), String::new()),
                ("q".into(), "x\"y\\z".into()),
            ])
        );
        assert_eq!(parse_logfmt("  "), Ok(vec![]));
        assert!(parse_logfmt("a")
            .expect_err("must fail")
            .contains("has no value"));
        assert!(parse_logfmt("=b")
            .expect_err("must fail")
            .contains("empty key"));
        assert!(parse_logfmt("a=\"b")
            .expect_err("must fail")
            .contains("unterminated"));
        assert!(parse_logfmt("a=\"b\"c")
            .expect_err("must fail")
            .contains("closing quote"));
        assert!(parse_logfmt("a=\"\\q\"")
            .expect_err("must fail")
            .contains("unknown escape"));
    }

    #[test]
    fn windows_default_to_the_last_hour() {
        let p = Params::from_pairs(vec![]);
        assert_eq!(
            Window::from_params(&p, 10_000_000, false).ok(),
            Some(Window {
                start_ms: 10_000_000 - DEFAULT_WINDOW_MS,
                end_ms: 10_000_000
            })
        );
        let p = Params::from_pairs(vec![
            ("start".into(), "100".into()),
            ("end".into(), "100".into()),
        ]);
        assert!(Window::from_params(&p, 0, true).is_ok());
        let err = Window::from_params(&p, 0, false).expect_err("must fail");
        assert_eq!(
            err.message,
            "invalid parameter \"end\": end time must be after start time"
        );
        assert_eq!(ms_to_nanos(-5), 0);
        assert_eq!(ms_to_nanos(1_500), 1_500_000_000);
    }
}
