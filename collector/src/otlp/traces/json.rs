//! OTLP/JSON decoding of an `ExportTraceServiceRequest`.
//!
//! opentelemetry-proto's serde derive covers most of the OTLP JSON mapping, including the one
//! that differs from protobuf's canonical JSON: trace and span ids are **hex** strings, not
//! base64. This module closes the gaps that would lose data or answer unhelpfully:
//! - enum fields (`kind`, `status.code`) are plain `i32`s, so the enum *names* protobuf JSON
//!   printers write by default (`"kind": "SPAN_KIND_SERVER"`) would not decode. They are
//!   rewritten to their numbers first; an unknown name is a 400 naming it.
//! - an id that is not hex (a client encoding ids as base64, as protobuf's generic JSON mapping
//!   does) is a 400 naming the span and saying ids are hex, instead of a bare "invalid
//!   character" from the hex decoder. Ids of the wrong length decode, and the converter
//!   rejects those spans one by one.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode};
use serde_json::Value;

use crate::otlp::json_common::{array_mut, check_hex, enum_number, parse, typed};
use crate::IngestError;

const REQUEST: &str = "ExportTraceServiceRequest";

/// Decodes an OTLP/JSON trace export request; anything that would not arrive intact is a
/// [`IngestError::Malformed`] naming the problem.
pub(crate) fn decode_request(payload: &[u8]) -> Result<ExportTraceServiceRequest, IngestError> {
    let mut value = parse(REQUEST, payload)?;
    normalise(&mut value)?;
    typed(REQUEST, &value)
}

/// Rewrites enum names to numbers and checks ids are hex, in place.
fn normalise(request: &mut Value) -> Result<(), IngestError> {
    for rs in array_mut(request, "resourceSpans") {
        for ss in array_mut(rs, "scopeSpans") {
            for span in array_mut(ss, "spans") {
                let name = span
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .chars()
                    .take(128)
                    .collect::<String>();
                let what = format!("span {name:?}");
                for key in ["traceId", "spanId", "parentSpanId"] {
                    check_hex(span.get(key), key, &what)?;
                }
                for link in array_mut(span, "links") {
                    for key in ["traceId", "spanId"] {
                        check_hex(link.get(key), key, &what)?;
                    }
                }
                enum_number(
                    span.get_mut("kind"),
                    |s| SpanKind::from_str_name(s).map(|k| k as i32),
                    |s| {
                        format!(
                            "{what}: unknown kind {s:?}; expected one of \
                             SPAN_KIND_UNSPECIFIED, SPAN_KIND_INTERNAL, SPAN_KIND_SERVER, \
                             SPAN_KIND_CLIENT, SPAN_KIND_PRODUCER, SPAN_KIND_CONSUMER or their \
                             numbers"
                        )
                    },
                )?;
                enum_number(
                    span.get_mut("status").and_then(|s| s.get_mut("code")),
                    |s| StatusCode::from_str_name(s).map(|c| c as i32),
                    |s| {
                        format!(
                            "{what}: unknown status code {s:?}; expected one of \
                             STATUS_CODE_UNSET, STATUS_CODE_OK, STATUS_CODE_ERROR or their \
                             numbers"
                        )
                    },
                )?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn one_span(fields: &str) -> String {
        format!(
            r#"{{"resourceSpans":[{{"resource":{{"attributes":[
              {{"key":"service.name","value":{{"stringValue":"json-svc"}}}}]}},
              "scopeSpans":[{{"scope":{{"name":"lib","version":"1"}},"spans":[{{
              "traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174",
              "name":"GET /x","startTimeUnixNano":"1544712660000000000",
              "endTimeUnixNano":"1544712661000000000"{fields}}}]}}]}}]}}"#
        )
    }

    fn span(req: &ExportTraceServiceRequest) -> &opentelemetry_proto::tonic::trace::v1::Span {
        &req.resource_spans[0].scope_spans[0].spans[0]
    }

    #[test]
    fn hex_ids_decode_to_bytes() {
        let req = decode_request(one_span("").as_bytes()).unwrap();
        let s = span(&req);
        assert_eq!(
            s.trace_id,
            vec![
                0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f,
                0xc6, 0x0c
            ]
        );
        assert_eq!(
            s.span_id,
            vec![0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74]
        );
        assert!(s.parent_span_id.is_empty());
        assert_eq!(s.start_time_unix_nano, 1_544_712_660_000_000_000);
    }

    #[test]
    fn enum_names_and_numbers_decode_alike() {
        for (fields, kind, code) in [
            (
                r#","kind":"SPAN_KIND_SERVER","status":{"code":"STATUS_CODE_ERROR"}"#,
                2,
                2,
            ),
            (r#","kind":3,"status":{"code":1}"#, 3, 1),
            (r#","kind":"SPAN_KIND_CONSUMER""#, 5, 0),
        ] {
            let req = decode_request(one_span(fields).as_bytes()).unwrap();
            assert_eq!(span(&req).kind, kind, "{fields}");
            assert_eq!(span(&req).status.clone().unwrap_or_default().code, code);
        }
    }

    #[test]
    fn unknown_enum_names_are_malformed_naming_them() {
        let err = decode_request(one_span(r#","kind":"SERVER""#).as_bytes()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, IngestError::Malformed(_)));
        assert!(
            msg.contains("\"SERVER\"") && msg.contains("GET /x"),
            "{msg}"
        );
        let msg = decode_request(one_span(r#","status":{"code":"ERROR"}"#).as_bytes())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("unknown status code \"ERROR\""), "{msg}");
    }

    #[test]
    fn base64_ids_are_refused_saying_ids_are_hex() {
        // the same trace id, base64 as protobuf's generic JSON mapping would write it
        let body = one_span("").replace(
            "5B8EFFF798038103D269B633813FC60C",
            "W47/95gDgQPSabYzgT/GDA==",
        );
        let err = decode_request(body.as_bytes()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, IngestError::Malformed(_)));
        assert!(
            msg.contains("traceId") && msg.contains("not base64") && msg.contains("GET /x"),
            "{msg}"
        );
        let body = one_span(r#","links":[{"traceId":"zz","spanId":"EEE19B7EC3C1B174"}]"#);
        let msg = decode_request(body.as_bytes()).unwrap_err().to_string();
        assert!(msg.contains("traceId \"zz\" is not hex"), "{msg}");
    }

    #[test]
    fn wrong_length_hex_ids_decode_for_the_converter_to_reject() {
        let body = one_span("").replace("EEE19B7EC3C1B174", "EEE19B7E");
        let req = decode_request(body.as_bytes()).unwrap();
        assert_eq!(span(&req).span_id.len(), 4);
    }

    #[test]
    fn not_json_is_malformed() {
        let err = decode_request(b"{not json").unwrap_err();
        assert!(
            err.to_string().starts_with("failed to decode JSON"),
            "{err}"
        );
        let err = decode_request(br#"{"resourceSpans":{}}"#).unwrap_err();
        assert!(matches!(err, IngestError::Malformed(_)));
    }
}
