//! What the OTLP/JSON decoders of every signal ([`super::json`] for metrics, and those of
//! traces and logs) share: parsing and the typed decoding with errors naming the request, the
//! walk over nested arrays, enum names rewritten to their numbers, and the check that ids are
//! hex.

use std::fmt::Display;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::IngestError;

/// The error for a body that does not decode as the OTLP/JSON `request`
/// (`ExportLogsServiceRequest`).
pub(crate) fn malformed(request: &str, e: impl Display) -> IngestError {
    IngestError::Malformed(format!("failed to decode JSON {request}: {e}"))
}

/// Parses a body as JSON, for the fixes before the typed decoding.
pub(crate) fn parse(request: &str, payload: &[u8]) -> Result<Value, IngestError> {
    serde_json::from_slice(payload).map_err(|e| malformed(request, e))
}

/// The typed decoding of the (fixed) JSON.
pub(crate) fn typed<T: DeserializeOwned>(request: &str, value: &Value) -> Result<T, IngestError> {
    T::deserialize(value).map_err(|e| malformed(request, e))
}

/// The array under `key` of a JSON object, empty when absent or not an array (the typed
/// decoding reports the latter).
pub(crate) fn array_mut<'a>(v: &'a mut Value, key: &str) -> &'a mut [Value] {
    v.get_mut(key)
        .and_then(Value::as_array_mut)
        .map_or(&mut [], Vec::as_mut_slice)
}

/// Rewrites an enum field given by name (`"SPAN_KIND_SERVER"`, as protobuf's JSON printers
/// write by default) to its `number`; a name it does not know is refused with the message
/// `unknown` makes of it. Numbers and absent fields are left as they are.
pub(crate) fn enum_number(
    field: Option<&mut Value>,
    number: impl FnOnce(&str) -> Option<i32>,
    unknown: impl FnOnce(&str) -> String,
) -> Result<(), IngestError> {
    let Some(field) = field else {
        return Ok(());
    };
    if let Value::String(s) = field {
        let Some(n) = number(s) else {
            return Err(IngestError::Malformed(unknown(s)));
        };
        *field = Value::from(n);
    }
    Ok(())
}

/// An id, when present as a string, must be hex (either case); `what` names the item in the
/// error (`span "GET /"`).
pub(crate) fn check_hex(v: Option<&Value>, key: &str, what: &str) -> Result<(), IngestError> {
    let Some(Value::String(s)) = v else {
        return Ok(());
    };
    if s.len() % 2 == 0 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(());
    }
    let shown: String = s.chars().take(64).collect();
    Err(IngestError::Malformed(format!(
        "{what}: {key} {shown:?} is not hex; OTLP/JSON encodes trace and span ids as hex \
         strings (32 and 16 characters), not base64"
    )))
}
