//! What every log protocol shares once its wire format is decoded: the per-record limits, the
//! rejection bookkeeping that becomes an OTLP partial success or a Loki 400, severity from
//! names and from the line itself, and invalid UTF-8 replaced (and counted) rather than
//! refused.

use store::logs::{LogBatch, LogRecord, Severity};
use store::traces::{SpanId, TraceId};

use super::LogLimits;
use crate::error::count_reason;

/// Why a record was rejected; the names are the `reason` label of
/// `lookout_logs_rejected_records_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RejectReason {
    /// The body is longer than `max_body_bytes`.
    BodyTooLarge,
    /// More than `max_attributes` record (or resource) attributes.
    TooManyAttributes,
    /// An attribute value longer than `max_attribute_value_bytes`.
    AttributeValueTooLarge,
    /// A trace id that is neither empty, all zero, nor 16 bytes.
    InvalidTraceId,
    /// A span id that is neither empty, all zero, nor 8 bytes.
    InvalidSpanId,
    /// A Loki entry whose timestamp is not Unix nanoseconds.
    InvalidTimestamp,
    /// A Loki stream whose label set does not parse.
    InvalidLabels,
    /// The log store refused it (too old, too far in the future...).
    Store,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::BodyTooLarge => "body_too_large",
            RejectReason::TooManyAttributes => "too_many_attributes",
            RejectReason::AttributeValueTooLarge => "attribute_value_too_large",
            RejectReason::InvalidTraceId => "invalid_trace_id",
            RejectReason::InvalidSpanId => "invalid_span_id",
            RejectReason::InvalidTimestamp => "invalid_timestamp",
            RejectReason::InvalidLabels => "invalid_labels",
            RejectReason::Store => "store",
        }
    }
}

/// What a protocol's converter made of a request.
#[derive(Debug, Default)]
pub struct ConvertedLogs {
    /// The records that passed every check, in request order.
    pub batch: LogBatch,
    /// Records rejected by the converter.
    pub rejected: u64,
    pub rejected_by_reason: Vec<(RejectReason, u64)>,
    /// The first rejection in full, for the partial-success (or 400) message.
    pub first_rejection: Option<String>,
    /// Strings in which invalid UTF-8 was replaced by U+FFFD.
    pub invalid_utf8: u64,
}

impl ConvertedLogs {
    /// Counts a rejected record; `message` is built only for the first.
    pub fn reject(&mut self, reason: RejectReason, message: impl FnOnce() -> String) {
        self.rejected += 1;
        count_reason(&mut self.rejected_by_reason, reason);
        self.first_rejection.get_or_insert_with(message);
    }

    /// Keeps `record` if it is within `limits`, rejects it naming the limit otherwise.
    pub fn push(&mut self, record: LogRecord, limits: &LogLimits) {
        match check_limits(&record, limits) {
            Ok(()) => self.batch.records.push(record),
            Err((reason, problem)) => {
                self.reject(reason, || format!("{}: {problem}", describe(&record)))
            }
        }
    }
}

/// At most this many characters of a body quoted in a rejection message.
const MESSAGE_BODY_CHARS: usize = 64;

/// A record as a rejection message names it: its service and the start of its body.
pub fn describe(record: &LogRecord) -> String {
    let short: String = record.body.chars().take(MESSAGE_BODY_CHARS).collect();
    let ellipsis = if short.len() < record.body.len() {
        "..."
    } else {
        ""
    };
    format!(
        "log record of service {:?} (body {short:?}{ellipsis})",
        record.service
    )
}

/// The first limit `record` breaks, with the reason label and the problem in words.
pub fn check_limits(record: &LogRecord, limits: &LogLimits) -> Result<(), (RejectReason, String)> {
    if record.body.len() > limits.max_body_bytes {
        return Err((
            RejectReason::BodyTooLarge,
            format!(
                "body of {} bytes exceeds the limit max_body_bytes={}",
                record.body.len(),
                limits.max_body_bytes
            ),
        ));
    }
    for (what, attrs) in [
        ("attributes", &record.attributes),
        ("resource attributes", &record.resource),
    ] {
        if attrs.len() > limits.max_attributes {
            return Err((
                RejectReason::TooManyAttributes,
                format!(
                    "{} {what} exceed the limit max_attributes={}",
                    attrs.len(),
                    limits.max_attributes
                ),
            ));
        }
        if let Some((key, value)) = attrs
            .iter()
            .find(|(_, v)| v.len() > limits.max_attribute_value_bytes)
        {
            return Err((
                RejectReason::AttributeValueTooLarge,
                format!(
                    "the value of {key:?} ({} bytes) exceeds the limit \
                     max_attribute_value_bytes={}",
                    value.len(),
                    limits.max_attribute_value_bytes
                ),
            ));
        }
    }
    Ok(())
}

/// A trace id as OTLP sends it: empty or all zero is none; 16 bytes is an id; anything else
/// is an error naming the length.
pub fn trace_id(bytes: &[u8]) -> Result<Option<TraceId>, String> {
    if bytes.iter().all(|&b| b == 0) && (bytes.is_empty() || bytes.len() == 16) {
        return Ok(None);
    }
    TraceId::from_bytes(bytes).map(Some)
}

/// A span id as OTLP sends it: empty or all zero is none; 8 bytes is an id.
pub fn span_id(bytes: &[u8]) -> Result<Option<SpanId>, String> {
    if bytes.iter().all(|&b| b == 0) && (bytes.is_empty() || bytes.len() == 8) {
        return Ok(None);
    }
    SpanId::from_bytes(bytes).map(Some)
}

/// The severity number to store: the sender's when it is one (1 to 24), else the first of
/// the range `text` names (`WARN` -> 13), else 0.
pub fn severity_number(number: i32, text: &str) -> u8 {
    match u8::try_from(number) {
        Ok(n @ 1..=24) => n,
        _ => Severity::parse(text).map_or(0, Severity::default_number),
    }
}

/// Bytes as text: valid UTF-8 as it is (no copy), invalid sequences replaced by U+FFFD, each
/// string that needed it counted in `invalid`.
pub fn lossy_string(bytes: Vec<u8>, invalid: &mut u64) -> String {
    match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => {
            *invalid += 1;
            String::from_utf8_lossy(e.as_bytes()).into_owned()
        }
    }
}

/// Like [`lossy_string`] for borrowed bytes; counts every invalid sequence replaced (one
/// body may hold many), since a JSON request is repaired as a whole.
pub fn lossy_str<'a>(bytes: &'a [u8], invalid: &mut u64) -> std::borrow::Cow<'a, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => {
            *invalid += bytes
                .utf8_chunks()
                .filter(|c| !c.invalid().is_empty())
                .count() as u64;
            String::from_utf8_lossy(bytes)
        }
    }
}

/// Keys whose value names a record's level, as Loki 3 looks for them (labels, structured
/// metadata, logfmt and JSON lines).
pub const LEVEL_KEYS: [&str; 4] = ["level", "severity", "detected_level", "lvl"];

/// How many leading tokens may be looked at for a level word: a date, a time and a thread or
/// process id may come first (`2024-05-01 10:00:00,123 [42] ERROR ...`).
const LEADING_TOKENS: usize = 4;

/// The severity a log line states, found cheaply (a few substring searches and the first
/// tokens, never a full parse):
/// 1. a logfmt `level=`/`lvl=`/`severity=` pair (value bare or quoted);
/// 2. a JSON `"level": "..."` (or `"severity"`, `"lvl"`) member;
/// 3. a level word among the first tokens: `ERROR`, `[WARN]`, `info:`, `<error>`. The first
///    token may be in any case; later ones must be upper case or bracketed / followed by a
///    colon, and only tokens with a digit (dates, times, ids) may come before it, so prose
///    that merely mentions an error is not taken for one.
pub fn detect_severity(line: &str) -> Option<Severity> {
    logfmt_level(line)
        .or_else(|| json_level(line))
        .or_else(|| leading_level(line))
}

fn logfmt_level(line: &str) -> Option<Severity> {
    for key in ["level=", "lvl=", "severity="] {
        let mut from = 0;
        while let Some(pos) = line.get(from..).and_then(|rest| rest.find(key)) {
            let at = from + pos;
            from = at + key.len();
            // a whole key: at the start or after a separator
            let boundary = line[..at]
                .chars()
                .next_back()
                .is_none_or(|c| c.is_whitespace() || c == ',' || c == '{');
            if !boundary {
                continue;
            }
            let value = line[from..].trim_start_matches('"');
            let end = value
                .find(|c: char| c.is_whitespace() || c == '"' || c == ',')
                .unwrap_or(value.len());
            if let Some(s) = Severity::parse(&value[..end]) {
                return Some(s);
            }
        }
    }
    None
}

fn json_level(line: &str) -> Option<Severity> {
    if !line.trim_start().starts_with('{') {
        return None;
    }
    for key in ["\"level\"", "\"severity\"", "\"lvl\""] {
        let Some(pos) = line.find(key) else {
            continue;
        };
        let rest = line[pos + key.len()..].trim_start();
        let Some(rest) = rest.strip_prefix(':') else {
            continue;
        };
        let rest = rest.trim_start();
        let value = match rest.strip_prefix('"') {
            Some(quoted) => quoted.split('"').next().unwrap_or(""),
            // a number: OTLP-style severity numbers in a JSON line
            None => {
                let end = rest
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(rest.len());
                if let Ok(n @ 1..=24) = rest[..end].parse::<u8>() {
                    return Some(Severity::from_number(n));
                }
                continue;
            }
        };
        if let Some(s) = Severity::parse(value) {
            return Some(s);
        }
    }
    None
}

fn leading_level(line: &str) -> Option<Severity> {
    for (i, token) in line.split_whitespace().take(LEADING_TOKENS).enumerate() {
        let trimmed = token.trim_start_matches(['[', '(', '<']);
        let opened = trimmed.len() < token.len();
        let word = trimmed.trim_end_matches([']', ')', '>', ':', ',']);
        let closed = word.len() < trimmed.len();
        let decorated = opened || closed;
        let upper = word.chars().any(|c| c.is_ascii_alphabetic())
            && !word.chars().any(|c| c.is_ascii_lowercase());
        if i == 0 || decorated || upper {
            // a level word is letters only (a trailing digit, as in `WARN2`, aside)
            if word.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) {
                if let Some(s) = Severity::parse(word) {
                    if s != Severity::Unspecified {
                        return Some(s);
                    }
                }
            }
        }
        if !token.chars().any(|c| c.is_ascii_digit()) {
            return None;
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn severity_is_found_in_logfmt_json_and_leading_words() {
        let cases: &[(&str, Option<Severity>)] = &[
            ("ts=1 level=error msg=boom", Some(Severity::Error)),
            ("level=WARN msg=x", Some(Severity::Warn)),
            ("lvl=\"debug\" msg=x", Some(Severity::Debug)),
            ("msg=x severity=info", Some(Severity::Info)),
            ("msg=x sublevel=error", None),
            (
                r#"{"ts":1,"level":"fatal","msg":"x"}"#,
                Some(Severity::Fatal),
            ),
            (
                r#"{"severity": "Warning", "msg":"x"}"#,
                Some(Severity::Warn),
            ),
            (r#"{"level": 17}"#, Some(Severity::Error)),
            ("ERROR something broke", Some(Severity::Error)),
            ("[WARN] disk almost full", Some(Severity::Warn)),
            ("info: server started", Some(Severity::Info)),
            ("Error connecting to db", Some(Severity::Error)),
            (
                "2024-05-01 10:00:00,123 [42] ERROR payment failed",
                Some(Severity::Error),
            ),
            (
                "2024-05-01T10:00:00Z <debug> cache miss",
                Some(Severity::Debug),
            ),
            ("I0501 10:00:00.000 glog line", None),
            ("GET /api/users 500 error", None),
            ("the error was handled", None),
            ("2024-05-01 user error handled", None),
            ("", None),
        ];
        for (line, want) in cases {
            assert_eq!(detect_severity(line), *want, "{line:?}");
        }
    }

    #[test]
    fn severity_number_prefers_the_number_then_the_text() {
        assert_eq!(severity_number(9, "ERROR"), 9);
        assert_eq!(severity_number(0, "ERROR"), 17);
        assert_eq!(severity_number(0, "warning"), 13);
        assert_eq!(severity_number(0, ""), 0);
        assert_eq!(severity_number(99, "info"), 9);
        assert_eq!(severity_number(-3, "nonsense"), 0);
    }

    #[test]
    fn ids_empty_or_zero_are_none_and_wrong_lengths_errors() {
        assert_eq!(trace_id(&[]).unwrap(), None);
        assert_eq!(trace_id(&[0; 16]).unwrap(), None);
        assert_eq!(trace_id(&[1; 16]).unwrap(), Some(TraceId([1; 16])));
        assert!(trace_id(&[1; 8]).unwrap_err().contains("16 bytes, got 8"));
        assert!(trace_id(&[0; 4]).is_err());
        assert_eq!(span_id(&[0; 8]).unwrap(), None);
        assert_eq!(span_id(&[2; 8]).unwrap(), Some(SpanId([2; 8])));
        assert!(span_id(&[2; 16]).unwrap_err().contains("8 bytes, got 16"));
    }

    #[test]
    fn invalid_utf8_is_replaced_and_counted() {
        let mut n = 0;
        assert_eq!(lossy_string(b"ok".to_vec(), &mut n), "ok");
        assert_eq!(n, 0);
        assert_eq!(
            lossy_string(b"a\xffb\xfe".to_vec(), &mut n),
            "a\u{fffd}b\u{fffd}"
        );
        assert_eq!(n, 1);
        let mut n = 0;
        assert_eq!(lossy_str(b"x\xffy\xc3", &mut n), "x\u{fffd}y\u{fffd}");
        assert_eq!(n, 2);
    }

    #[test]
    fn limits_name_themselves() {
        let limits = LogLimits {
            max_body_bytes: 10,
            max_attributes: 2,
            max_attribute_value_bytes: 4,
            ..Default::default()
        };
        let ok = LogRecord {
            service: "svc".into(),
            body: "short".into(),
            attributes: vec![("a".into(), "1234".into())],
            ..Default::default()
        };
        assert_eq!(check_limits(&ok, &limits), Ok(()));
        let long = LogRecord {
            body: "x".repeat(11),
            ..ok.clone()
        };
        let (reason, msg) = check_limits(&long, &limits).unwrap_err();
        assert_eq!(reason, RejectReason::BodyTooLarge);
        assert!(msg.contains("max_body_bytes=10"), "{msg}");
        let many = LogRecord {
            resource: vec![("a".into(), "".into()); 3],
            ..ok.clone()
        };
        let (reason, msg) = check_limits(&many, &limits).unwrap_err();
        assert_eq!(reason, RejectReason::TooManyAttributes);
        assert!(msg.contains("3 resource attributes") && msg.contains("max_attributes=2"));
        let big = LogRecord {
            attributes: vec![("k".into(), "12345".into())],
            ..ok
        };
        let (reason, msg) = check_limits(&big, &limits).unwrap_err();
        assert_eq!(reason, RejectReason::AttributeValueTooLarge);
        assert!(msg.contains("\"k\"") && msg.contains("max_attribute_value_bytes=4"));
    }
}
