//! OTLP/JSON decoding of an `ExportLogsServiceRequest`.
//!
//! opentelemetry-proto's serde derive covers the OTLP JSON mapping (hex trace and span ids,
//! 64-bit integers as strings); this module closes the gaps, as the trace receiver's does:
//! - invalid UTF-8 in the body is replaced by U+FFFD (and counted) before parsing, so a push
//!   with one bad byte in one line keeps all its records;
//! - `severityNumber` may be the enum name (`"SEVERITY_NUMBER_WARN"`), which protobuf JSON
//!   printers write by default: rewritten to its number; an unknown name is a 400 naming it;
//! - an id that is not hex (base64, as protobuf's generic JSON mapping writes bytes) is a 400
//!   saying ids are hex. Ids of the wrong length decode, and the converter rejects those
//!   records one by one;
//! - a body or attribute value whose `AnyValue` fails to decode (`{"intValue": "x"}`) would
//!   arrive as an empty value (serde drops errors inside the flattened oneof): it is refused
//!   with a 400 naming the record instead.

use opentelemetry_proto::tonic::logs::v1::SeverityNumber;
use serde_json::Value;

use super::DecodedLogs;
use crate::logs::record::lossy_str;
use crate::otlp::json_common::{array_mut, check_hex, enum_number, malformed, typed};
use crate::IngestError;

const REQUEST: &str = "ExportLogsServiceRequest";

/// The JSON keys of the `AnyValue` oneof.
const ANY_VALUE_KEYS: [&str; 7] = [
    "stringValue",
    "boolValue",
    "intValue",
    "doubleValue",
    "arrayValue",
    "kvlistValue",
    "bytesValue",
];

/// Decodes an OTLP/JSON logs export request; anything that would not arrive intact is a
/// [`IngestError::Malformed`] naming the problem.
pub(crate) fn decode_request(payload: &[u8]) -> Result<DecodedLogs, IngestError> {
    let mut invalid_utf8 = 0;
    let text = lossy_str(payload, &mut invalid_utf8);
    let mut value: Value = serde_json::from_str(&text).map_err(|e| malformed(REQUEST, e))?;
    drop(text);
    normalise(&mut value)?;
    Ok(DecodedLogs {
        request: typed(REQUEST, &value)?,
        invalid_utf8,
    })
}

/// At most this many characters of a body in an error message.
const MESSAGE_BODY_CHARS: usize = 64;

fn describe(record: &Value) -> String {
    match record.get("body").and_then(|b| b.get("stringValue")) {
        Some(Value::String(s)) => {
            let short: String = s.chars().take(MESSAGE_BODY_CHARS).collect();
            format!("log record {short:?}")
        }
        _ => "log record".to_string(),
    }
}

/// Rewrites severity names to numbers and checks ids and values, in place.
fn normalise(request: &mut Value) -> Result<(), IngestError> {
    for rl in array_mut(request, "resourceLogs") {
        if let Some(resource) = rl.get("resource") {
            check_key_values(resource.get("attributes"), "resource")?;
        }
        for sl in array_mut(rl, "scopeLogs") {
            for record in array_mut(sl, "logRecords") {
                let what = describe(record);
                for key in ["traceId", "spanId"] {
                    check_hex(record.get(key), key, &what)?;
                }
                if let Some(body) = record.get("body") {
                    check_any_value(body, &format!("{what}: body"))?;
                }
                check_key_values(record.get("attributes"), &what)?;
                enum_number(
                    record.get_mut("severityNumber"),
                    |s| {
                        SeverityNumber::from_str_name(s)
                            .map(|n| n as i32)
                            // a number in a string, as 64-bit integers are written
                            .or_else(|| s.parse::<i32>().ok())
                    },
                    |s| {
                        format!(
                            "{what}: unknown severityNumber {s:?}; expected \
                             SEVERITY_NUMBER_UNSPECIFIED, SEVERITY_NUMBER_TRACE ... \
                             SEVERITY_NUMBER_FATAL4 or a number from 0 to 24"
                        )
                    },
                )?;
            }
        }
    }
    Ok(())
}

fn check_key_values(kvs: Option<&Value>, what: &str) -> Result<(), IngestError> {
    let Some(Value::Array(kvs)) = kvs else {
        return Ok(());
    };
    for kv in kvs {
        if let Some(v) = kv.get("value") {
            let key = kv.get("key").and_then(Value::as_str).unwrap_or("");
            check_any_value(v, &format!("{what}: attribute {key:?}"))?;
        }
    }
    Ok(())
}

/// An `AnyValue` object with a member set must decode to that member: serde turns errors
/// inside the flattened oneof into an empty value, which would lose the value silently.
fn check_any_value(v: &Value, what: &str) -> Result<(), IngestError> {
    let Value::Object(obj) = v else {
        return Ok(());
    };
    for key in ANY_VALUE_KEYS {
        let Some(member) = obj.get(key).filter(|m| !m.is_null()) else {
            continue;
        };
        let ok = match key {
            "stringValue" => member.is_string(),
            "boolValue" => member.is_boolean(),
            "intValue" => {
                member.is_i64() || member.as_str().is_some_and(|s| s.parse::<i64>().is_ok())
            }
            "doubleValue" => member.is_number(),
            "bytesValue" => member.is_string(),
            "arrayValue" => {
                if let Some(values) = member.get("values").and_then(Value::as_array) {
                    for item in values {
                        check_any_value(item, what)?;
                    }
                }
                member.is_object()
            }
            _ => {
                check_key_values(member.get("values"), what)?;
                member.is_object()
            }
        };
        if !ok {
            let shown: String = member.to_string().chars().take(64).collect();
            return Err(IngestError::Malformed(format!(
                "{what}: invalid {key} {shown}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as V;

    use super::*;

    fn one_record(fields: &str) -> String {
        format!(
            r#"{{"resourceLogs":[{{"resource":{{"attributes":[
              {{"key":"service.name","value":{{"stringValue":"json-svc"}}}}]}},
              "scopeLogs":[{{"scope":{{"name":"lib","version":"1"}},"logRecords":[{{
              "timeUnixNano":"1700000000000000000","body":{{"stringValue":"hello"}}{fields}}}]}}]}}]}}"#
        )
    }

    fn record(d: &DecodedLogs) -> &opentelemetry_proto::tonic::logs::v1::LogRecord {
        &d.request.resource_logs[0].scope_logs[0].log_records[0]
    }

    #[test]
    fn hex_ids_and_severity_names_decode() {
        let d = decode_request(
            one_record(
                r#","traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"eee19b7ec3c1b174",
                "severityNumber":"SEVERITY_NUMBER_WARN","severityText":"WARN""#,
            )
            .as_bytes(),
        )
        .unwrap();
        let r = record(&d);
        assert_eq!(r.trace_id.len(), 16);
        assert_eq!(r.trace_id[0], 0x5b);
        assert_eq!(r.span_id[7], 0x74);
        assert_eq!(r.severity_number, 13);
        assert_eq!(r.time_unix_nano, 1_700_000_000_000_000_000);
        assert_eq!(d.invalid_utf8, 0);
        for (n, want) in [("17", 17), ("\"21\"", 21)] {
            let d = decode_request(one_record(&format!(r#","severityNumber":{n}"#)).as_bytes())
                .unwrap();
            assert_eq!(record(&d).severity_number, want);
        }
    }

    #[test]
    fn unknown_severity_names_and_base64_ids_are_refused() {
        let msg = decode_request(one_record(r#","severityNumber":"LOUD""#).as_bytes())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("unknown severityNumber \"LOUD\""), "{msg}");
        assert!(msg.contains("\"hello\""), "{msg}");
        let msg = decode_request(one_record(r#","traceId":"W47/95gDgQPSabYzgT/GDA==""#).as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("traceId") && msg.contains("not base64"),
            "{msg}"
        );
    }

    #[test]
    fn invalid_utf8_is_replaced_and_counted_before_parsing() {
        let body = one_record("").replace("hello", "hel\u{1}lo");
        let mut bytes = body.into_bytes();
        let at = bytes.iter().position(|&b| b == 1).unwrap();
        bytes[at] = 0xff;
        let d = decode_request(&bytes).unwrap();
        assert_eq!(d.invalid_utf8, 1);
        assert_eq!(
            record(&d).body.clone().unwrap().value,
            Some(V::StringValue("hel\u{fffd}lo".into()))
        );
    }

    #[test]
    fn values_that_do_not_decode_are_refused_not_emptied() {
        let body = one_record("").replace(r#"{"stringValue":"hello"}"#, r#"{"intValue":"x"}"#);
        let msg = decode_request(body.as_bytes()).unwrap_err().to_string();
        assert!(msg.contains("body: invalid intValue \"x\""), "{msg}");
        let body = one_record(r#","attributes":[{"key":"n","value":{"boolValue":"yes"}}]"#);
        let msg = decode_request(body.as_bytes()).unwrap_err().to_string();
        assert!(msg.contains("attribute \"n\": invalid boolValue"), "{msg}");
        let body = one_record(
            r#","attributes":[{"key":"a","value":{"arrayValue":{"values":[{"intValue":"1"},{"doubleValue":"z"}]}}}]"#,
        );
        let msg = decode_request(body.as_bytes()).unwrap_err().to_string();
        assert!(msg.contains("invalid doubleValue"), "{msg}");
        // good values of every kind decode
        let body = one_record(
            r#","attributes":[{"key":"i","value":{"intValue":"7"}},{"key":"d","value":{"doubleValue":1.5}},
            {"key":"b","value":{"boolValue":true}},{"key":"m","value":{"kvlistValue":{"values":[{"key":"x","value":{"stringValue":"y"}}]}}},
            {"key":"e","value":{}}]"#,
        );
        let d = decode_request(body.as_bytes()).unwrap();
        assert_eq!(record(&d).attributes.len(), 5);
    }

    #[test]
    fn not_json_is_malformed() {
        let err = decode_request(b"{not json").unwrap_err();
        assert!(matches!(err, IngestError::Malformed(_)));
        assert!(
            err.to_string().starts_with("failed to decode JSON"),
            "{err}"
        );
        assert!(matches!(
            decode_request(br#"{"resourceLogs":{}}"#).unwrap_err(),
            IngestError::Malformed(_)
        ));
    }
}
