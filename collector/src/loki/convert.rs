//! Loki streams -> [`LogRecord`]s, whichever encoding they came in:
//!
//! - **service**: the first of the stream labels `service_name, service, app, application,
//!   name, app_kubernetes_io_name, container, container_name, component, workload, job` (the
//!   order Loki 3 derives `service_name` in) that is set, else `unknown_service`;
//! - **severity**: a `level` / `severity` / `detected_level` / `lvl` stream label, else the
//!   same key in the entry's structured metadata (the value kept as the severity text), else
//!   detected from the line ([`crate::logs::record::detect_severity`]: logfmt `level=`, JSON
//!   `"level":`, a leading `ERROR` / `[WARN]` word);
//! - **resource**: the stream labels; **attributes**: the structured metadata, as sent;
//! - **trace / span id**: from a `trace_id` / `traceID` (`span_id` / `spanID`) structured
//!   metadata pair holding a valid hex id, so Loki pushes from OpenTelemetry pipelines link to
//!   their traces; the pair stays an attribute either way;
//! - **time**: the entry's timestamp (ns); observed: the receive time;
//! - a stream whose labels do not parse rejects its entries (`invalid_labels`), an entry
//!   whose timestamp is not Unix nanoseconds is rejected (`invalid_timestamp`), and the
//!   per-record limits apply (a line over `max_body_bytes` is `body_too_large`).

use store::logs::model::UNKNOWN_SERVICE;
use store::logs::{LogRecord, Severity};
use store::traces::{SpanId, TraceId};

use crate::logs::record::{detect_severity, ConvertedLogs, RejectReason, LEVEL_KEYS};
use crate::logs::LogLimits;

/// Stream labels naming the service, in the order they are looked for.
pub const SERVICE_LABELS: [&str; 11] = [
    "service_name",
    "service",
    "app",
    "application",
    "name",
    "app_kubernetes_io_name",
    "container",
    "container_name",
    "component",
    "workload",
    "job",
];

/// A stream as decoded from either encoding.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamIn {
    /// The label set, or why it did not parse (the protobuf push sends it as text).
    pub labels: Result<Vec<(String, String)>, String>,
    /// The label set as sent, for messages.
    pub labels_text: String,
    pub entries: Vec<EntryIn>,
}

/// An entry as decoded from either encoding.
#[derive(Clone, Debug, PartialEq)]
pub struct EntryIn {
    /// Unix nanoseconds, or the problem with the timestamp as sent.
    pub timestamp: Result<u64, String>,
    pub line: String,
    pub metadata: Vec<(String, String)>,
}

/// At most this many characters of a label set in a message.
const MESSAGE_LABEL_CHARS: usize = 200;

fn short(text: &str) -> String {
    let s: String = text.chars().take(MESSAGE_LABEL_CHARS).collect();
    if s.len() < text.len() {
        format!("{s}...")
    } else {
        s
    }
}

fn lookup<'a>(pairs: &'a [(String, String)], keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| {
        pairs
            .iter()
            .find(|(n, v)| n == k && !v.is_empty())
            .map(|(_, v)| v.as_str())
    })
}

/// A hex id from the structured metadata pair whose key, lower-cased without `_` and `-`,
/// is `key` (`traceid`, `spanid`).
fn metadata_id<T>(
    metadata: &[(String, String)],
    key: &str,
    parse: fn(&str) -> Result<T, String>,
) -> Option<T> {
    metadata.iter().find_map(|(k, v)| {
        let normal: String = k
            .chars()
            .filter(|c| *c != '_' && *c != '-')
            .map(|c| c.to_ascii_lowercase())
            .collect();
        (normal == key).then(|| parse(v).ok()).flatten()
    })
}

/// Converts decoded streams into `out`; `now_ns` is the observed time.
pub fn convert_streams(
    streams: Vec<StreamIn>,
    limits: &LogLimits,
    now_ns: u64,
    out: &mut ConvertedLogs,
) {
    for stream in streams {
        let labels = match stream.labels {
            Ok(labels) => labels,
            Err(e) => {
                let text = short(&stream.labels_text);
                for _ in &stream.entries {
                    out.reject(RejectReason::InvalidLabels, || {
                        format!("stream {text:?}: invalid labels: {e}")
                    });
                }
                continue;
            }
        };
        let service = lookup(&labels, &SERVICE_LABELS)
            .unwrap_or(UNKNOWN_SERVICE)
            .to_string();
        let stream_level = lookup(&labels, &LEVEL_KEYS).map(str::to_string);
        for entry in stream.entries {
            let time = match entry.timestamp {
                Ok(t) => t,
                Err(e) => {
                    let text = short(&stream.labels_text);
                    out.reject(RejectReason::InvalidTimestamp, || {
                        format!("entry of stream {text:?}: {e}")
                    });
                    continue;
                }
            };
            let level = stream_level
                .clone()
                .or_else(|| lookup(&entry.metadata, &LEVEL_KEYS).map(str::to_string));
            let named = level.as_deref().and_then(Severity::parse);
            let severity = named.or_else(|| detect_severity(&entry.line));
            let record = LogRecord {
                time_unix_nano: time,
                observed_unix_nano: now_ns,
                severity_number: severity.map_or(0, Severity::default_number),
                severity_text: level.unwrap_or_default(),
                service: service.clone(),
                trace_id: metadata_id(&entry.metadata, "traceid", TraceId::from_hex),
                span_id: metadata_id(&entry.metadata, "spanid", SpanId::from_hex),
                body: entry.line,
                resource: labels.clone(),
                attributes: entry.metadata,
            };
            out.push(record, limits);
        }
    }
}

/// A timestamp in Unix nanoseconds as JSON pushes send it: a decimal string (a plain
/// integer is accepted too).
pub fn parse_ns(text: &str) -> Result<u64, String> {
    text.parse::<u64>().map_err(|_| {
        let shown: String = text.chars().take(64).collect();
        format!("invalid timestamp {shown:?}: expected Unix nanoseconds as a decimal string")
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn labels(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn entry(line: &str, metadata: &[(&str, &str)]) -> EntryIn {
        EntryIn {
            timestamp: Ok(1_700_000_000_000_000_000),
            line: line.to_string(),
            metadata: labels(metadata),
        }
    }

    fn convert(streams: Vec<StreamIn>) -> ConvertedLogs {
        let mut out = ConvertedLogs::default();
        convert_streams(streams, &LogLimits::default(), 42, &mut out);
        out
    }

    fn stream(l: &[(&str, &str)], entries: Vec<EntryIn>) -> StreamIn {
        StreamIn {
            labels: Ok(labels(l)),
            labels_text: String::new(),
            entries,
        }
    }

    #[test]
    fn every_field_of_a_record() {
        let out = convert(vec![stream(
            &[("job", "varlogs"), ("app", "checkout"), ("env", "prod")],
            vec![entry(
                "payment failed",
                &[
                    ("level", "ERROR"),
                    ("trace_id", "5b8efff798038103d269b633813fc60c"),
                    ("spanID", "EEE19B7EC3C1B174"),
                ],
            )],
        )]);
        assert_eq!(out.rejected, 0);
        let r = &out.batch.records[0];
        assert_eq!(r.time_unix_nano, 1_700_000_000_000_000_000);
        assert_eq!(r.observed_unix_nano, 42);
        assert_eq!(r.service, "checkout");
        assert_eq!((r.severity_number, r.severity_text.as_str()), (17, "ERROR"));
        assert_eq!(
            r.trace_id.unwrap().to_string(),
            "5b8efff798038103d269b633813fc60c"
        );
        assert_eq!(r.span_id.unwrap().to_string(), "eee19b7ec3c1b174");
        assert_eq!(r.body, "payment failed");
        assert_eq!(
            r.resource,
            labels(&[("job", "varlogs"), ("app", "checkout"), ("env", "prod")])
        );
        assert_eq!(r.attributes.len(), 3);
    }

    #[test]
    fn service_follows_loki_3_label_order() {
        for (l, want) in [
            (vec![("job", "j"), ("container", "c")], "c"),
            (vec![("job", "j")], "j"),
            (vec![("app", "a"), ("service_name", "s")], "s"),
            (vec![("service", ""), ("application", "x")], "x"),
            (vec![("env", "prod")], UNKNOWN_SERVICE),
        ] {
            let out = convert(vec![stream(&l, vec![entry("x", &[])])]);
            assert_eq!(out.batch.records[0].service, want, "{l:?}");
        }
    }

    #[test]
    fn severity_from_labels_then_metadata_then_the_line() {
        type Pairs<'a> = Vec<(&'a str, &'a str)>;
        let cases: Vec<(Pairs, Pairs, &str, u8, &str)> = vec![
            (
                vec![("level", "warn")],
                vec![("level", "error")],
                "ERROR x",
                13,
                "warn",
            ),
            (
                vec![],
                vec![("detected_level", "debug")],
                "ERROR x",
                5,
                "debug",
            ),
            (vec![], vec![], "level=error msg=x", 17, ""),
            (vec![], vec![], r#"{"level":"info","msg":"x"}"#, 9, ""),
            (vec![], vec![], "[WARN] disk", 13, ""),
            (vec![], vec![], "just words", 0, ""),
            // a level name nobody knows: kept as text, the line decides the number
            (vec![("lvl", "loud")], vec![], "FATAL boom", 21, "loud"),
        ];
        for (l, m, line, number, text) in cases {
            let out = convert(vec![stream(&l, vec![entry(line, &m)])]);
            let r = &out.batch.records[0];
            assert_eq!(
                (r.severity_number, r.severity_text.as_str()),
                (number, text),
                "{l:?} {m:?} {line}"
            );
        }
    }

    #[test]
    fn bad_ids_in_metadata_are_only_attributes() {
        let out = convert(vec![stream(
            &[("app", "a")],
            vec![entry("x", &[("trace_id", "nothex"), ("span_id", "00")])],
        )]);
        let r = &out.batch.records[0];
        assert_eq!((r.trace_id, r.span_id), (None, None));
        assert_eq!(r.attributes.len(), 2);
    }

    #[test]
    fn bad_labels_timestamps_and_long_lines_reject_only_their_entries() {
        let bad_labels = StreamIn {
            labels: Err("expected '}'".into()),
            labels_text: "{app=\"x\"".into(),
            entries: vec![entry("a", &[]), entry("b", &[])],
        };
        let mut bad_ts = entry("c", &[]);
        bad_ts.timestamp = parse_ns("yesterday");
        let long = entry(&"x".repeat(300 * 1024), &[]);
        let out = convert(vec![
            bad_labels,
            stream(&[("app", "ok")], vec![bad_ts, entry("good", &[]), long]),
        ]);
        assert_eq!(out.batch.records.len(), 1);
        assert_eq!(out.batch.records[0].body, "good");
        assert_eq!(out.rejected, 4);
        assert_eq!(
            out.rejected_by_reason,
            vec![
                (RejectReason::InvalidLabels, 2),
                (RejectReason::InvalidTimestamp, 1),
                (RejectReason::BodyTooLarge, 1)
            ]
        );
        let first = out.first_rejection.unwrap();
        assert!(first.contains("invalid labels: expected '}'"), "{first}");
        assert!(parse_ns("yesterday")
            .unwrap_err()
            .contains("invalid timestamp \"yesterday\""));
    }
}
