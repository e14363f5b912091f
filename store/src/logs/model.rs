//! The log signal model: what OTLP logs and Loki push are converted into, once, at the edge.
//!
//! Times are nanoseconds since the Unix epoch, as in OTLP. Attribute values are flattened to
//! text at the edge (OTLP `AnyValue`s that are not strings become their JSON text), because
//! logs are searched as text; the store keeps them in the order they were sent.

use crate::traces::model::{SpanId, TraceId};

/// The service of records whose resource (or Loki stream) names none.
pub use crate::traces::model::UNKNOWN_SERVICE;

/// One log record.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogRecord {
    /// When the event happened; the observed time when the sender left it unset.
    pub time_unix_nano: u64,
    /// When the first collector saw it (OTLP `observed_time_unix_nano`; the receive time for
    /// Loki push).
    pub observed_unix_nano: u64,
    /// OTLP severity number, 0 (unspecified) to 24. Ingest derives it from the severity text
    /// (or a Loki `level` label) when the sender gave none, so searches by severity work.
    pub severity_number: u8,
    /// As sent (`WARN`, `warning`, ...); empty when none.
    pub severity_text: String,
    /// `service.name` of the resource, or the Loki stream's service label.
    pub service: String,
    pub trace_id: Option<TraceId>,
    pub span_id: Option<SpanId>,
    pub body: String,
    /// Resource attributes (Loki: stream labels), `service.name` included.
    pub resource: Vec<(String, String)>,
    /// Record attributes (Loki: structured metadata).
    pub attributes: Vec<(String, String)>,
}

/// Records handed to the store in one append.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogBatch {
    pub records: Vec<LogRecord>,
}

/// The six severity ranges of the OTLP data model (numbers 1-4 trace, 5-8 debug, 9-12 info,
/// 13-16 warn, 17-20 error, 21-24 fatal); `Unspecified` is number 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Unspecified,
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

impl Severity {
    pub const ALL: [Severity; 7] = [
        Severity::Unspecified,
        Severity::Trace,
        Severity::Debug,
        Severity::Info,
        Severity::Warn,
        Severity::Error,
        Severity::Fatal,
    ];

    /// The range a severity number falls in (numbers above 24 count as fatal).
    pub fn from_number(n: u8) -> Severity {
        match n {
            0 => Severity::Unspecified,
            1..=4 => Severity::Trace,
            5..=8 => Severity::Debug,
            9..=12 => Severity::Info,
            13..=16 => Severity::Warn,
            17..=20 => Severity::Error,
            _ => Severity::Fatal,
        }
    }

    /// Lowest and highest severity number of the range.
    pub fn numbers(self) -> (u8, u8) {
        match self {
            Severity::Unspecified => (0, 0),
            Severity::Trace => (1, 4),
            Severity::Debug => (5, 8),
            Severity::Info => (9, 12),
            Severity::Warn => (13, 16),
            Severity::Error => (17, 20),
            Severity::Fatal => (21, 24),
        }
    }

    /// Lower-case name used in queries, the API and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unspecified => "unspecified",
            Severity::Trace => "trace",
            Severity::Debug => "debug",
            Severity::Info => "info",
            Severity::Warn => "warn",
            Severity::Error => "error",
            Severity::Fatal => "fatal",
        }
    }

    /// Parses a level name as loggers write it, case-insensitively: `warn`/`warning`,
    /// `error`/`err`, `fatal`/`critical`/`crit`/`panic`/`emerg`/`alert`, `info`/`notice`,
    /// `debug`/`dbg`, `trace`; also OTLP's `SEVERITY_NUMBER_WARN` style and a numbered
    /// short name such as `WARN2`.
    pub fn parse(text: &str) -> Option<Severity> {
        let lower = text.trim().to_ascii_lowercase();
        let name = lower.strip_prefix("severity_number_").unwrap_or(&lower);
        let name = name.trim_end_matches(|c: char| c.is_ascii_digit());
        Some(match name {
            "trace" => Severity::Trace,
            "debug" | "dbg" => Severity::Debug,
            "info" | "information" | "informational" | "notice" => Severity::Info,
            "warn" | "warning" => Severity::Warn,
            "error" | "err" | "eror" => Severity::Error,
            "fatal" | "critical" | "crit" | "panic" | "emerg" | "emergency" | "alert" => {
                Severity::Fatal
            }
            "unspecified" => Severity::Unspecified,
            _ => return None,
        })
    }

    /// The severity number to store for a range given by name only: the range's first
    /// number (`warn` -> 13), as the OTLP data model maps `WARN`.
    pub fn default_number(self) -> u8 {
        self.numbers().0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_ranges_and_names() {
        assert_eq!(Severity::from_number(0), Severity::Unspecified);
        assert_eq!(Severity::from_number(13), Severity::Warn);
        assert_eq!(Severity::from_number(20), Severity::Error);
        assert_eq!(Severity::from_number(24), Severity::Fatal);
        assert_eq!(Severity::from_number(200), Severity::Fatal);
        for s in Severity::ALL {
            let (lo, hi) = s.numbers();
            assert_eq!(Severity::from_number(lo), s);
            assert_eq!(Severity::from_number(hi), s);
            assert_eq!(Severity::parse(s.as_str()), Some(s));
        }
        assert_eq!(Severity::parse("WARNING"), Some(Severity::Warn));
        assert_eq!(
            Severity::parse("SEVERITY_NUMBER_ERROR3"),
            Some(Severity::Error)
        );
        assert_eq!(Severity::parse("critical"), Some(Severity::Fatal));
        assert_eq!(Severity::parse("loud"), None);
    }
}
