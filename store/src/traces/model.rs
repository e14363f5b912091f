//! The trace signal model: what OTLP trace ingest is converted into, once, at the edge.
//!
//! It follows OTLP's shape (resource → spans) closely so nothing a user sent is lost, but owns
//! its types so the store does not depend on protobuf code. Times are nanoseconds since the
//! Unix epoch, as in OTLP.

use std::fmt;
use std::sync::Arc;

/// The resource attribute naming a span's service.
pub const SERVICE_NAME_ATTR: &str = "service.name";

/// The service of spans whose resource has no `service.name` (OTel resource semantic
/// conventions).
pub const UNKNOWN_SERVICE: &str = "unknown_service";

/// A 16-byte trace id; never all zero once accepted.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TraceId(pub [u8; 16]);

/// An 8-byte span id; never all zero once accepted.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SpanId(pub [u8; 8]);

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

fn parse_hex<const N: usize>(text: &str, what: &str) -> Result<[u8; N], String> {
    if text.len() != 2 * N {
        return Err(format!(
            "{what} {text:?} must be {} hex characters, got {}",
            2 * N,
            text.len()
        ));
    }
    if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{what} {text:?} is not hex"));
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        let pair = text
            .get(2 * i..2 * i + 2)
            .ok_or_else(|| format!("{what} {text:?} is not hex"))?;
        *byte = u8::from_str_radix(pair, 16).map_err(|_| format!("{what} {text:?} is not hex"))?;
    }
    if out.iter().all(|&b| b == 0) {
        return Err(format!("{what} must not be all zeros"));
    }
    Ok(out)
}

impl TraceId {
    /// Parses 32 hex characters (either case); all zeros is invalid.
    pub fn from_hex(text: &str) -> Result<Self, String> {
        parse_hex::<16>(text, "trace id").map(TraceId)
    }

    /// From OTLP bytes: exactly 16, not all zero.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let arr: [u8; 16] = bytes
            .try_into()
            .map_err(|_| format!("trace id must be 16 bytes, got {}", bytes.len()))?;
        if arr == [0; 16] {
            return Err("trace id must not be all zeros".into());
        }
        Ok(TraceId(arr))
    }

    pub fn is_valid(&self) -> bool {
        self.0 != [0; 16]
    }
}

impl SpanId {
    /// Parses 16 hex characters (either case); all zeros is invalid.
    pub fn from_hex(text: &str) -> Result<Self, String> {
        parse_hex::<8>(text, "span id").map(SpanId)
    }

    /// From OTLP bytes: exactly 8, not all zero.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let arr: [u8; 8] = bytes
            .try_into()
            .map_err(|_| format!("span id must be 8 bytes, got {}", bytes.len()))?;
        if arr == [0; 8] {
            return Err("span id must not be all zeros".into());
        }
        Ok(SpanId(arr))
    }

    pub fn is_valid(&self) -> bool {
        self.0 != [0; 8]
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({self})")
    }
}

/// OTLP's span kind, with OTLP's numbering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(u8)]
pub enum SpanKind {
    #[default]
    Unspecified = 0,
    Internal = 1,
    Server = 2,
    Client = 3,
    Producer = 4,
    Consumer = 5,
}

impl SpanKind {
    /// From OTLP's number; unknown numbers are `Unspecified`, as the spec asks receivers to do.
    pub fn from_i32(n: i32) -> Self {
        match n {
            1 => SpanKind::Internal,
            2 => SpanKind::Server,
            3 => SpanKind::Client,
            4 => SpanKind::Producer,
            5 => SpanKind::Consumer,
            _ => SpanKind::Unspecified,
        }
    }

    /// OTLP's enum name, as Tempo's span metrics label it (`SPAN_KIND_SERVER`).
    pub fn otlp_name(self) -> &'static str {
        match self {
            SpanKind::Unspecified => "SPAN_KIND_UNSPECIFIED",
            SpanKind::Internal => "SPAN_KIND_INTERNAL",
            SpanKind::Server => "SPAN_KIND_SERVER",
            SpanKind::Client => "SPAN_KIND_CLIENT",
            SpanKind::Producer => "SPAN_KIND_PRODUCER",
            SpanKind::Consumer => "SPAN_KIND_CONSUMER",
        }
    }

    /// Short lower-case name used in the APIs and search (`server`, `client`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            SpanKind::Unspecified => "unspecified",
            SpanKind::Internal => "internal",
            SpanKind::Server => "server",
            SpanKind::Client => "client",
            SpanKind::Producer => "producer",
            SpanKind::Consumer => "consumer",
        }
    }

    /// Parses [`SpanKind::as_str`] or [`SpanKind::otlp_name`], case-insensitively.
    pub fn parse(text: &str) -> Option<Self> {
        let lower = text.to_ascii_lowercase();
        let short = lower.strip_prefix("span_kind_").unwrap_or(&lower);
        [
            SpanKind::Unspecified,
            SpanKind::Internal,
            SpanKind::Server,
            SpanKind::Client,
            SpanKind::Producer,
            SpanKind::Consumer,
        ]
        .into_iter()
        .find(|k| k.as_str() == short)
    }
}

/// OTLP's span status code, with OTLP's numbering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(u8)]
pub enum StatusCode {
    #[default]
    Unset = 0,
    Ok = 1,
    Error = 2,
}

impl StatusCode {
    /// From OTLP's number; unknown numbers are `Unset`.
    pub fn from_i32(n: i32) -> Self {
        match n {
            1 => StatusCode::Ok,
            2 => StatusCode::Error,
            _ => StatusCode::Unset,
        }
    }

    /// OTLP's enum name, as Tempo's span metrics label it (`STATUS_CODE_ERROR`).
    pub fn otlp_name(self) -> &'static str {
        match self {
            StatusCode::Unset => "STATUS_CODE_UNSET",
            StatusCode::Ok => "STATUS_CODE_OK",
            StatusCode::Error => "STATUS_CODE_ERROR",
        }
    }

    /// Short lower-case name used in the APIs (`unset`, `ok`, `error`).
    pub fn as_str(self) -> &'static str {
        match self {
            StatusCode::Unset => "unset",
            StatusCode::Ok => "ok",
            StatusCode::Error => "error",
        }
    }
}

/// An attribute value (OTLP `AnyValue`). An empty OTLP value becomes `Str("")`.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    Str(String),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(Vec<u8>),
    Array(Vec<AttrValue>),
    KvList(Vec<(String, AttrValue)>),
}

impl AttrValue {
    /// The value as text, as tag search compares it: strings as they are, numbers and booleans
    /// in their usual spelling, arrays and maps as JSON.
    pub fn to_text(&self) -> String {
        match self {
            AttrValue::Str(s) => s.clone(),
            AttrValue::Bool(b) => b.to_string(),
            AttrValue::Int(i) => i.to_string(),
            AttrValue::Double(d) => d.to_string(),
            AttrValue::Bytes(b) => b.iter().map(|x| format!("{x:02x}")).collect(),
            AttrValue::Array(_) | AttrValue::KvList(_) => self.to_json(),
        }
    }

    /// The value as JSON text.
    pub fn to_json(&self) -> String {
        match self {
            AttrValue::Str(s) => serde_json::Value::String(s.clone()).to_string(),
            AttrValue::Bool(b) => b.to_string(),
            AttrValue::Int(i) => i.to_string(),
            AttrValue::Double(d) if d.is_finite() => d.to_string(),
            AttrValue::Double(d) => serde_json::Value::String(d.to_string()).to_string(),
            AttrValue::Bytes(_) => serde_json::Value::String(self.to_text()).to_string(),
            AttrValue::Array(items) => {
                let parts: Vec<String> = items.iter().map(AttrValue::to_json).collect();
                format!("[{}]", parts.join(","))
            }
            AttrValue::KvList(kvs) => {
                let parts: Vec<String> = kvs
                    .iter()
                    .map(|(k, v)| {
                        format!("{}:{}", serde_json::Value::String(k.clone()), v.to_json())
                    })
                    .collect();
                format!("{{{}}}", parts.join(","))
            }
        }
    }
}

/// Attributes in the order they were sent (OTLP keys are unique; the collector keeps the last
/// of duplicates).
pub type Attributes = Vec<(String, AttrValue)>;

/// The first value of `key` in `attrs`.
pub fn attr<'a>(attrs: &'a Attributes, key: &str) -> Option<&'a AttrValue> {
    attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// The first value of `key` in `attrs` if it is a string.
pub fn attr_str<'a>(attrs: &'a Attributes, key: &str) -> Option<&'a str> {
    match attr(attrs, key) {
        Some(AttrValue::Str(s)) => Some(s),
        _ => None,
    }
}

/// What produced a group of spans: a service instance (OTLP `Resource`).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Resource {
    /// `service.name`, or [`UNKNOWN_SERVICE`] when absent.
    pub service_name: String,
    /// All resource attributes, `service.name` included.
    pub attributes: Attributes,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct SpanEvent {
    pub time_unix_nano: u64,
    pub name: String,
    pub attributes: Attributes,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct SpanLink {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub trace_state: String,
    pub attributes: Attributes,
}

/// One span. `end_unix_nano >= start_unix_nano` once accepted (the collector normalises).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Span {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// `None` for a root span.
    pub parent_span_id: Option<SpanId>,
    pub trace_state: String,
    pub name: String,
    pub kind: SpanKind,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub attributes: Attributes,
    pub events: Vec<SpanEvent>,
    pub links: Vec<SpanLink>,
    pub status_code: StatusCode,
    pub status_message: String,
    /// Instrumentation scope (OTLP `InstrumentationScope`).
    pub scope_name: String,
    pub scope_version: String,
    /// OTLP's dropped counts, kept so the UI can say something was cut.
    pub dropped_attributes_count: u32,
    pub dropped_events_count: u32,
    pub dropped_links_count: u32,
}

impl Span {
    pub fn duration_nanos(&self) -> u64 {
        self.end_unix_nano.saturating_sub(self.start_unix_nano)
    }
}

/// Spans sharing one resource.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ResourceSpans {
    pub resource: Arc<Resource>,
    pub spans: Vec<Span>,
}

/// One ingest request's spans, as the collector hands them to the store.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct SpanBatch {
    pub resource_spans: Vec<ResourceSpans>,
}

impl SpanBatch {
    pub fn span_count(&self) -> usize {
        self.resource_spans.iter().map(|r| r.spans.len()).sum()
    }
}

/// A span as read back: the span and the resource it came with.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredSpan {
    pub resource: Arc<Resource>,
    pub span: Span,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_from_hex_and_bytes() {
        let id = TraceId::from_hex("0AF7651916CD43DD8448EB211C80319C").expect("valid");
        assert_eq!(id.to_string(), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(TraceId::from_bytes(&id.0), Ok(id));
        for bad in [
            "0af7651916cd43dd8448eb211c80319",
            "+af7651916cd43dd8448eb211c80319c",
            "0af7651916cd43dd8448eb211c80319g",
            "00000000000000000000000000000000",
            "0af7651916cd43dd8448eb211c8031é",
        ] {
            assert!(TraceId::from_hex(bad).is_err(), "{bad}");
        }
        assert!(SpanId::from_hex("b7ad6b7169203331").is_ok());
        assert!(SpanId::from_hex("+7ad6b7169203331").is_err());
        assert!(SpanId::from_bytes(&[0; 8]).is_err());
        assert!(SpanId::from_bytes(&[1; 7]).is_err());
    }
}
