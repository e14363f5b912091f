//! OTLP logs: conversion of every field, limits and partial success, invalid UTF-8 in
//! protobuf and JSON, and the answers over HTTP and gRPC.

use axum::http::{header, StatusCode};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord as OtlpRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use store::logs::LogRecord;
use store::traces::{SpanId, TraceId};
use tonic::codec::CompressionEncoding;

use super::*;
use crate::logs::test_support::{setup, setup_with, wait_metric, Mode, Setup};
use crate::logs::{LogLimits, RejectReason};
use crate::otlp::status::RpcStatus;
use crate::otlp::test_support::{
    self, assert_garbage_and_other_methods_refused, grpc_raw, gzip, serve_grpc,
};
use crate::traces::test_support::{kv, kv_int, kv_str};

const T: u64 = 1_700_000_000_000_000_000;

fn otlp_record(body: &str) -> OtlpRecord {
    OtlpRecord {
        time_unix_nano: T,
        observed_time_unix_nano: T + 5,
        severity_number: 17,
        severity_text: "ERROR".into(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(body.into())),
        }),
        ..Default::default()
    }
}

fn request_of(service: Option<&str>, records: Vec<OtlpRecord>) -> ExportLogsServiceRequest {
    let mut attributes = vec![kv_str("host.name", "h1")];
    if let Some(s) = service {
        attributes.insert(0, kv_str("service.name", s));
    }
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes,
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "app.logger".into(),
                    version: "1.2".into(),
                    ..Default::default()
                }),
                log_records: records,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn convert(req: ExportLogsServiceRequest, limits: &LogLimits) -> ConvertedLogs {
    let mut out = ConvertedLogs::default();
    convert::convert_request(req, limits, 99, &mut out);
    out
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn every_field_is_converted() {
    let mut r = otlp_record("ignored");
    r.trace_id = vec![0xab; 16];
    r.span_id = vec![0xcd; 8];
    r.event_name = "order.placed".into();
    r.body = Some(AnyValue {
        value: Some(any_value::Value::KvlistValue(KeyValueList {
            values: vec![kv_str("msg", "hi"), kv_int("n", 2)],
        })),
    });
    r.attributes = vec![
        kv_str("http.route", "/api/users"),
        kv_int("count", 42),
        kv("ok", any_value::Value::BoolValue(true)),
        kv("ratio", any_value::Value::DoubleValue(0.5)),
        kv("raw", any_value::Value::BytesValue(vec![0xde, 0xad])),
        kv(
            "list",
            any_value::Value::ArrayValue(ArrayValue {
                values: vec![
                    AnyValue {
                        value: Some(any_value::Value::IntValue(1)),
                    },
                    AnyValue {
                        value: Some(any_value::Value::StringValue("a".into())),
                    },
                ],
            }),
        ),
        KeyValue {
            key: "empty".into(),
            value: None,
            ..Default::default()
        },
    ];
    let mut req = request_of(Some("checkout"), vec![r]);
    req.resource_logs[0]
        .resource
        .as_mut()
        .unwrap()
        .attributes
        .push(kv_int("pid", 7));
    let out = convert(req, &LogLimits::default());
    assert_eq!(out.rejected, 0);
    assert_eq!(
        out.batch.records,
        vec![LogRecord {
            time_unix_nano: T,
            observed_unix_nano: T + 5,
            severity_number: 17,
            severity_text: "ERROR".into(),
            service: "checkout".into(),
            trace_id: Some(TraceId([0xab; 16])),
            span_id: Some(SpanId([0xcd; 8])),
            body: r#"{"msg":"hi","n":2}"#.into(),
            resource: pairs(&[
                ("service.name", "checkout"),
                ("host.name", "h1"),
                ("pid", "7")
            ]),
            attributes: pairs(&[
                ("http.route", "/api/users"),
                ("count", "42"),
                ("ok", "true"),
                ("ratio", "0.5"),
                ("raw", "dead"),
                ("list", r#"[1,"a"]"#),
                ("empty", ""),
                (convert::SCOPE_NAME_ATTR, "app.logger"),
                (convert::SCOPE_VERSION_ATTR, "1.2"),
                (convert::EVENT_NAME_ATTR, "order.placed"),
            ]),
        }]
    );
}

#[test]
fn defaults_times_severity_service_and_ids() {
    let mut unset = otlp_record("a");
    unset.time_unix_nano = 0;
    unset.observed_time_unix_nano = 0;
    unset.severity_number = 0;
    unset.severity_text = "Warning".into();
    unset.trace_id = vec![0; 16];
    unset.span_id = vec![0; 8];
    let mut observed_only = otlp_record("b");
    observed_only.time_unix_nano = 0;
    observed_only.severity_number = 0;
    observed_only.severity_text = String::new();
    observed_only.body = None;
    let mut req = request_of(None, vec![unset, observed_only]);
    req.resource_logs[0].scope_logs[0].scope = None;
    let out = convert(req, &LogLimits::default());
    let [a, b] = &out.batch.records[..] else {
        panic!("{:?}", out.batch.records);
    };
    assert_eq!((a.time_unix_nano, a.observed_unix_nano), (99, 99));
    assert_eq!(
        (a.severity_number, a.severity_text.as_str()),
        (13, "Warning")
    );
    assert_eq!(a.service, "unknown_service");
    assert_eq!((a.trace_id, a.span_id), (None, None));
    assert_eq!(a.attributes, vec![]);
    assert_eq!((b.time_unix_nano, b.observed_unix_nano), (T + 5, T + 5));
    assert_eq!((b.severity_number, b.body.as_str()), (0, ""));
}

#[test]
fn wrong_length_ids_and_limits_reject_only_their_records() {
    let mut bad_trace = otlp_record("bad trace");
    bad_trace.trace_id = vec![1; 8];
    let mut bad_span = otlp_record("bad span");
    bad_span.trace_id = vec![1; 16];
    bad_span.span_id = vec![1; 3];
    let mut many = otlp_record("many");
    many.attributes = (0..3).map(|i| kv_int(&format!("a{i}"), i)).collect();
    let mut long_value = otlp_record("long value");
    long_value.attributes = vec![kv_str("sql", &"x".repeat(33))];
    let req = request_of(
        Some("svc"),
        vec![
            bad_trace,
            otlp_record("good"),
            bad_span,
            otlp_record(&"y".repeat(101)),
            many,
            long_value,
        ],
    );
    let limits = LogLimits {
        max_body_bytes: 100,
        max_attributes: 4,
        max_attribute_value_bytes: 32,
        ..Default::default()
    };
    let out = convert(req, &limits);
    let bodies: Vec<&str> = out.batch.records.iter().map(|r| r.body.as_str()).collect();
    // `many` has 3 attributes plus the 2 scope attributes: 5 > 4
    assert_eq!(bodies, vec!["good"]);
    assert_eq!(out.rejected, 5);
    assert_eq!(
        out.rejected_by_reason,
        vec![
            (RejectReason::InvalidTraceId, 1),
            (RejectReason::InvalidSpanId, 1),
            (RejectReason::BodyTooLarge, 1),
            (RejectReason::TooManyAttributes, 1),
            (RejectReason::AttributeValueTooLarge, 1),
        ]
    );
    assert_eq!(
        out.first_rejection.unwrap(),
        "log record of service \"svc\": trace id must be 16 bytes, got 8"
    );
}

#[test]
fn protobuf_with_invalid_utf8_is_kept_with_replacements() {
    let mut r = otlp_record("body QQ here");
    r.attributes = vec![kv_str("user", "QQ")];
    let mut bytes = request_of(Some("svc"), vec![r, otlp_record("clean")]).encode_to_vec();
    let mut replaced = 0;
    while let Some(at) = bytes.windows(2).position(|w| w == b"QQ") {
        bytes[at] = 0xc3; // a lead byte followed by an ASCII byte: invalid
        replaced += 1;
    }
    assert_eq!(replaced, 2);
    assert!(ExportLogsServiceRequest::decode(bytes.as_slice()).is_err());
    let decoded = decode_protobuf(&bytes).unwrap();
    assert_eq!(decoded.invalid_utf8, 2);
    let out = convert(decoded.request, &LogLimits::default());
    assert_eq!(out.batch.records.len(), 2);
    assert_eq!(out.batch.records[0].body, "body \u{fffd}Q here");
    assert_eq!(out.batch.records[0].attributes[0].1, "\u{fffd}Q");
    assert_eq!(out.batch.records[1].body, "clean");
    // a payload broken in other ways still fails, with prost's message
    let err = decode_protobuf(&bytes[..bytes.len() - 3]).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("failed to decode protobuf ExportLogsServiceRequest"),
        "{err}"
    );
    let err = decode_protobuf(b"\xff\xff\xff").unwrap_err();
    assert!(matches!(err, IngestError::Malformed(_)), "{err}");
}

// ---- over HTTP ----

async fn post(
    s: &Setup,
    content_type: &str,
    gzip: bool,
    body: Vec<u8>,
) -> (StatusCode, axum::http::HeaderMap, bytes::Bytes) {
    let (encoding, body) = if gzip {
        (Some("gzip"), self::gzip(&body))
    } else {
        (None, body)
    };
    let app = router(s.ingest.clone());
    test_support::post(app, "/v1/logs", Some(content_type), encoding, body).await
}

const JSON_BODY: &str = r#"{"resourceLogs":[{"resource":{"attributes":[
  {"key":"service.name","value":{"stringValue":"json-svc"}}]},
  "scopeLogs":[{"scope":{"name":"py.logger"},"logRecords":[
   {"timeUnixNano":"1700000000000000000","severityNumber":"SEVERITY_NUMBER_ERROR",
    "severityText":"ERROR","body":{"stringValue":"payment failed"},
    "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
    "attributes":[{"key":"order","value":{"intValue":"17"}}]}]}]}]}"#;

#[tokio::test]
async fn protobuf_json_and_gzip_are_stored_and_counted() {
    let s = setup(Mode::Accept);
    let pb =
        request_of(Some("pb-svc"), vec![otlp_record("one"), otlp_record("two")]).encode_to_vec();
    for gzip in [false, true] {
        let (status, headers, body) = post(&s, "application/x-protobuf", gzip, pb.clone()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "application/x-protobuf");
        assert_eq!(
            ExportLogsServiceResponse::decode(body).unwrap(),
            ExportLogsServiceResponse::default()
        );
    }
    let (status, headers, body) = post(&s, "application/json", true, JSON_BODY.into()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(&body[..], b"{}");
    let records = s.logs.records();
    assert_eq!(records.len(), 5);
    let json = &records[4];
    assert_eq!(json.service, "json-svc");
    assert_eq!(json.severity_number, 17);
    assert_eq!(
        json.trace_id.unwrap().to_string(),
        "5b8efff798038103d269b633813fc60c"
    );
    assert_eq!(json.attributes[0], ("order".into(), "17".into()));
    wait_metric(
        &s.metrics,
        "lookout_log_records_total{service=\"pb-svc\", severity=\"error\"}",
        4.0,
    )
    .await;
    wait_metric(
        &s.metrics,
        "lookout_log_records_total{service=\"json-svc\", severity=\"error\"}",
        1.0,
    )
    .await;
}

#[tokio::test]
async fn rejections_are_a_partial_success_naming_the_limit() {
    let s = setup_with(
        Mode::Accept,
        LogLimits {
            max_body_bytes: 10,
            ..Default::default()
        },
    );
    let req = request_of(
        Some("svc"),
        vec![otlp_record("this body is too long"), otlp_record("fits")],
    );
    let (status, _, body) = post(
        &s,
        "application/json",
        false,
        serde_json::to_vec(&req).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let resp: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(resp["partialSuccess"]["rejectedLogRecords"], 1);
    let msg = resp["partialSuccess"]["errorMessage"].as_str().unwrap();
    assert!(
        msg.contains("max_body_bytes=10") && msg.contains("this body is too long"),
        "{msg}"
    );
    assert_eq!(s.logs.bodies(), vec!["fits"]);

    // the store's rejections join the count, after the converter's
    let s = setup_with(
        Mode::RejectOne,
        LogLimits {
            max_body_bytes: 10,
            ..Default::default()
        },
    );
    let req = request_of(
        Some("svc"),
        vec![
            otlp_record("too long for it"),
            otlp_record("old"),
            otlp_record("kept"),
        ],
    );
    let (_, _, body) = post(&s, "application/x-protobuf", false, req.encode_to_vec()).await;
    let ps = ExportLogsServiceResponse::decode(body)
        .unwrap()
        .partial_success
        .unwrap();
    assert_eq!(ps.rejected_log_records, 2);
    assert!(
        ps.error_message
            .starts_with("2 log records rejected; first: ")
            && ps.error_message.contains("max_body_bytes=10"),
        "{}",
        ps.error_message
    );
    assert_eq!(s.logs.bodies(), vec!["kept"]);
}

#[tokio::test]
async fn invalid_utf8_over_http_is_stored_replaced() {
    let s = setup(Mode::Accept);
    let mut pb = request_of(Some("svc"), vec![otlp_record("bad QQ")]).encode_to_vec();
    let at = pb.windows(2).position(|w| w == b"QQ").unwrap();
    pb[at] = 0xff;
    let (status, _, body) = post(&s, "application/x-protobuf", false, pb).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        ExportLogsServiceResponse::decode(body).unwrap(),
        ExportLogsServiceResponse::default()
    );
    let mut json = JSON_BODY
        .replace("payment failed", "payment QQ")
        .into_bytes();
    let at = json.windows(2).position(|w| w == b"QQ").unwrap();
    json[at] = 0xfe;
    let (status, _, _) = post(&s, "application/json", true, json).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        s.logs.bodies(),
        vec!["bad \u{fffd}Q".to_string(), "payment \u{fffd}Q".to_string()]
    );
}

#[tokio::test]
async fn http_errors_have_the_right_status() {
    let s = setup(Mode::Accept);
    let (status, _, body) = post(&s, "application/x-protobuf", false, vec![0xff; 3]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let st = RpcStatus::decode(body).unwrap();
    assert!(
        st.message.contains("ExportLogsServiceRequest"),
        "{}",
        st.message
    );
    let (status, _, body) = post(
        &s,
        "application/json",
        false,
        b"{\"resourceLogs\":".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let st: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(st["message"].as_str().unwrap().contains("JSON"), "{st}");
    let (status, _, _) = post(&s, "text/plain", false, b"x".to_vec()).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(s.logs.records().is_empty());

    let small = setup_with(
        Mode::Accept,
        LogLimits {
            max_request_body_bytes: 50,
            ..Default::default()
        },
    );
    let big = request_of(Some("svc"), vec![otlp_record(&"z".repeat(100))]).encode_to_vec();
    let (status, _, body) = post(&small, "application/x-protobuf", false, big.clone()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(RpcStatus::decode(body)
        .unwrap()
        .message
        .contains("max_request_body_bytes=50"));

    for (mode, want) in [
        (Mode::Overloaded, StatusCode::TOO_MANY_REQUESTS),
        (Mode::Unavailable, StatusCode::SERVICE_UNAVAILABLE),
    ] {
        let s = setup(mode);
        let (status, headers, _) = post(&s, "application/x-protobuf", false, big.clone()).await;
        assert_eq!(status, want);
        assert_eq!(headers[header::RETRY_AFTER], "5");
    }
}

// ---- over gRPC ----

async fn start_grpc(ingest: Arc<LogIngest>) -> String {
    serve_grpc(grpc_service(ingest)).await
}

#[tokio::test]
async fn grpc_export_with_gzip_partial_success_and_invalid_utf8() {
    let s = setup_with(
        Mode::Accept,
        LogLimits {
            max_attributes: 2,
            ..Default::default()
        },
    );
    let addr = start_grpc(s.ingest.clone()).await;
    let mut client = LogsServiceClient::connect(addr.clone())
        .await
        .unwrap()
        .send_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Gzip);
    let resp = client
        .export(request_of(Some("grpc-svc"), vec![otlp_record("over grpc")]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.partial_success, None);

    let mut crowded = otlp_record("crowded");
    crowded.attributes = vec![kv_int("x", 1)];
    let resp = client
        .export(request_of(Some("grpc-svc"), vec![crowded]))
        .await
        .unwrap()
        .into_inner();
    let ps = resp.partial_success.unwrap();
    assert_eq!(ps.rejected_log_records, 1);
    assert!(
        ps.error_message.contains("max_attributes=2"),
        "{}",
        ps.error_message
    );

    // raw bytes with invalid UTF-8: the lenient decode keeps the record
    let mut pb = request_of(None, vec![otlp_record("raw QQ")]).encode_to_vec();
    let at = pb.windows(2).position(|w| w == b"QQ").unwrap();
    pb[at] = 0x80;
    let answer = grpc_raw(&addr, EXPORT_PATH, pb).await.unwrap();
    assert_eq!(
        ExportLogsServiceResponse::decode(answer.as_slice()).unwrap(),
        ExportLogsServiceResponse::default()
    );
    assert_eq!(
        s.logs.bodies(),
        vec!["over grpc".to_string(), "raw \u{fffd}Q".to_string()]
    );
    assert_garbage_and_other_methods_refused(&addr, EXPORT_PATH, "ExportLogsServiceRequest").await;
}

#[tokio::test]
async fn grpc_store_errors_are_retryable_codes() {
    for (mode, code) in [
        (Mode::Overloaded, tonic::Code::ResourceExhausted),
        (Mode::Unavailable, tonic::Code::Unavailable),
    ] {
        let s = setup(mode);
        let addr = start_grpc(s.ingest.clone()).await;
        let mut client = LogsServiceClient::connect(addr).await.unwrap();
        let err = client
            .export(request_of(Some("svc"), vec![otlp_record("x")]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), code);
        assert!(
            err.message().contains("retry after 5s"),
            "{}",
            err.message()
        );
    }
}
