//! OTLP trace ingest over the wire: the HTTP router driven in-process, the gRPC service on a
//! real port with the generated client; stores are the in-memory doubles.

use std::time::Duration;

use axum::http::{header, StatusCode};
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind as K;
use tokio::sync::Semaphore;
use tonic::codec::CompressionEncoding;

use super::*;
use crate::otlp::status::RpcStatus;
use crate::otlp::test_support::{self, assert_garbage_and_other_methods_refused, gzip, serve_grpc};
use crate::traces::test_support::{
    kv_str, otlp_span, request, requests, with_attrs, Events, MemMetrics, MemTraces, Mode,
};
use store::traces::{SpanId, TraceId};

struct Setup {
    ingest: Arc<TraceIngest>,
    traces: Arc<MemTraces>,
    metrics: Arc<MemMetrics>,
    events: Events,
}

fn setup_with(mode: Mode, limits: TraceLimits, gate: Option<Arc<Semaphore>>) -> Setup {
    let events = Events::default();
    let traces = MemTraces::new(mode, events.clone());
    let metrics = match gate {
        Some(g) => MemMetrics::gated(events.clone(), g),
        None => MemMetrics::new(events.clone()),
    };
    let ingest = TraceIngest::new(
        traces.clone(),
        metrics.clone(),
        metrics.clone(),
        limits,
        DeriveConfig {
            flush_interval: Duration::from_millis(20),
            ..Default::default()
        },
    )
    .unwrap();
    Setup {
        ingest,
        traces,
        metrics,
        events,
    }
}

fn setup(mode: Mode) -> Setup {
    setup_with(mode, TraceLimits::default(), None)
}

const CALLS_FRONTEND: &str = "traces_spanmetrics_calls_total{service=\"frontend\", span_kind=\"SPAN_KIND_SERVER\", span_name=\"GET /\", status_code=\"STATUS_CODE_UNSET\"}";

fn sample_request() -> ExportTraceServiceRequest {
    requests(&[
        (
            "frontend",
            vec![
                otlp_span(1, 1, 0, "GET /", K::Server, 50),
                otlp_span(1, 2, 1, "POST /checkout", K::Client, 40),
            ],
        ),
        (
            "checkout",
            vec![otlp_span(1, 3, 2, "POST /checkout", K::Server, 30)],
        ),
    ])
}

async fn post(
    app: axum::Router,
    content_type: Option<&str>,
    gzip: bool,
    body: Vec<u8>,
) -> (StatusCode, axum::http::HeaderMap, Bytes) {
    let encoding = gzip.then_some("gzip");
    test_support::post(app, "/v1/traces", content_type, encoding, body).await
}

#[tokio::test]
async fn protobuf_export_stores_spans_and_derived_series() {
    let s = setup(Mode::Accept);
    let (status, headers, body) = post(
        router(s.ingest.clone()),
        Some("application/x-protobuf"),
        false,
        sample_request().encode_to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/x-protobuf");
    let resp = ExportTraceServiceResponse::decode(body).unwrap();
    assert_eq!(resp.partial_success, None);
    assert_eq!(s.traces.span_count(), 3);
    // acknowledged, so the derived series are already stored
    assert_eq!(s.metrics.last(CALLS_FRONTEND), Some(1.0));
    assert_eq!(
        s.metrics
            .last("traces_service_graph_request_total{client=\"frontend\", server=\"checkout\"}"),
        Some(1.0)
    );
    assert_eq!(
        s.metrics.last(
            "traces_service_graph_request_total{client=\"user\", connection_type=\"virtual_node\", server=\"frontend\"}"
        ),
        Some(1.0)
    );
    let events = s.events.lock().clone();
    assert_eq!(events.first().map(String::as_str), Some("spans 3"));
    assert!(
        events.get(1).is_some_and(|e| e.starts_with("metrics ")),
        "{events:?}"
    );
}

const JSON_BODY: &str = r#"{"resourceSpans":[{
  "resource":{"attributes":[{"key":"service.name","value":{"stringValue":"json-svc"}}]},
  "scopeSpans":[{"scope":{"name":"manual"},"spans":[
    {"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174",
     "parentSpanId":"EEE19B7EC3C1B173","name":"I'm a server span",
     "startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000",
     "kind":"SPAN_KIND_SERVER","status":{"code":"STATUS_CODE_ERROR","message":"boom"},
     "attributes":[{"key":"my.span.attr","value":{"stringValue":"some value"}},
                   {"key":"retries","value":{"intValue":"3"}}]},
    {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b175",
     "name":"numbers","kind":1,"status":{"code":0},
     "startTimeUnixNano":1544712660000000000,"endTimeUnixNano":1544712660500000000}
  ]}]}]}"#;

#[tokio::test]
async fn json_export_with_hex_ids_and_enum_names() {
    for gz in [false, true] {
        let s = setup(Mode::Accept);
        let body = if gz {
            gzip(JSON_BODY.as_bytes())
        } else {
            JSON_BODY.as_bytes().to_vec()
        };
        let (status, headers, body) =
            post(router(s.ingest.clone()), Some("application/json"), gz, body).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        assert_eq!(&body[..], b"{}");
        let batches = s.traces.batches.lock();
        let spans = &batches[0].resource_spans[0].spans;
        assert_eq!(
            batches[0].resource_spans[0].resource.service_name,
            "json-svc"
        );
        assert_eq!(
            spans[0].trace_id,
            TraceId::from_hex("5b8efff798038103d269b633813fc60c").unwrap()
        );
        assert_eq!(
            spans[0].span_id,
            SpanId::from_hex("eee19b7ec3c1b174").unwrap()
        );
        assert_eq!(
            spans[0].parent_span_id,
            Some(SpanId::from_hex("eee19b7ec3c1b173").unwrap())
        );
        assert_eq!(spans[0].kind, store::traces::SpanKind::Server);
        assert_eq!(spans[0].status_code, store::traces::StatusCode::Error);
        assert_eq!(spans[0].status_message, "boom");
        assert_eq!(spans[0].attributes[1].1, store::traces::AttrValue::Int(3));
        assert_eq!(spans[1].kind, store::traces::SpanKind::Internal);
        assert_eq!(spans[1].duration_nanos(), 500_000_000);
        drop(batches);
        assert_eq!(
            s.metrics.last("traces_spanmetrics_calls_total{service=\"json-svc\", span_kind=\"SPAN_KIND_SERVER\", span_name=\"I'm a server span\", status_code=\"STATUS_CODE_ERROR\"}"),
            Some(1.0)
        );
    }
}

#[tokio::test]
async fn rejected_spans_are_a_partial_success_naming_the_first() {
    let s = setup(Mode::Accept);
    let mut bad = otlp_span(1, 9, 0, "bad id", K::Server, 1);
    bad.trace_id = vec![0; 16];
    let mut short = otlp_span(1, 8, 0, "short id", K::Server, 1);
    short.span_id = vec![1; 3];
    let req = request(
        "svc",
        vec![bad, otlp_span(1, 1, 0, "fine", K::Server, 1), short],
    );
    let (status, _, body) = post(
        router(s.ingest.clone()),
        Some("application/json"),
        false,
        serde_json::to_vec(&req).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let ps = &json["partialSuccess"];
    assert_eq!(ps["rejectedSpans"].as_i64(), Some(2), "{json}");
    assert_eq!(
        ps["errorMessage"].as_str(),
        Some("2 spans rejected; first: span \"bad id\" of service \"svc\": trace id must not be all zeros")
    );
    assert_eq!(s.traces.span_count(), 1);
}

#[tokio::test]
async fn store_rejections_join_the_partial_success() {
    let s = setup(Mode::RejectOne);
    let resp = s
        .ingest
        .run_export(|| Ok(sample_request()), PROTOCOL_HTTP)
        .await
        .unwrap();
    let ps = resp.partial_success.unwrap();
    assert_eq!(
        (ps.rejected_spans, ps.error_message.as_str()),
        (1, "span too old")
    );
}

#[tokio::test]
async fn truncated_values_are_a_warning_with_nothing_rejected() {
    let s = setup_with(
        Mode::Accept,
        TraceLimits {
            max_attribute_value_bytes: 4,
            ..Default::default()
        },
        None,
    );
    let req = request(
        "svc",
        vec![with_attrs(
            otlp_span(1, 1, 0, "op", K::Server, 1),
            vec![kv_str("db.statement", "SELECT * FROM orders")],
        )],
    );
    let resp = s
        .ingest
        .run_export(move || Ok(req), PROTOCOL_HTTP)
        .await
        .unwrap();
    let ps = resp.partial_success.unwrap();
    assert_eq!(ps.rejected_spans, 0);
    assert_eq!(
        ps.error_message,
        "1 attribute value(s) longer than max_attribute_value_bytes=4 truncated"
    );
    assert_eq!(
        <TraceIngest as OtlpSignal>::outcome(&ExportTraceServiceResponse {
            partial_success: Some(ps)
        }),
        "ok"
    );
}

#[tokio::test]
async fn malformed_payloads_are_400_with_a_status_body() {
    let s = setup(Mode::Accept);
    let (status, _, body) = post(
        router(s.ingest.clone()),
        Some("application/x-protobuf"),
        false,
        vec![0xff, 0xff, 0xff],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let st = RpcStatus::decode(body).unwrap();
    assert!(
        st.message.contains("ExportTraceServiceRequest"),
        "{}",
        st.message
    );

    let (status, _, body) = post(
        router(s.ingest.clone()),
        Some("application/json"),
        false,
        JSON_BODY
            .replace("EEE19B7EC3C1B174", "7uGbfsPBsXQ=")
            .into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(
        json["message"].as_str().unwrap().contains("not base64"),
        "{json}"
    );

    let (status, _, _) = post(
        router(s.ingest.clone()),
        Some("application/json"),
        true,
        b"not gzip".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(s.traces.span_count(), 0);
    assert!(s.metrics.appends.lock().is_empty());
}

#[tokio::test]
async fn too_many_spans_are_400_naming_the_limit() {
    let s = setup_with(
        Mode::Accept,
        TraceLimits {
            max_spans_per_request: 2,
            ..Default::default()
        },
        None,
    );
    let (status, _, body) = post(
        router(s.ingest.clone()),
        Some("application/json"),
        false,
        serde_json::to_vec(&sample_request()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        json["message"].as_str(),
        Some("the request has 3 spans, more than the limit max_spans_per_request=2")
    );
    assert_eq!(s.traces.span_count(), 0);
}

#[tokio::test]
async fn an_overloaded_store_is_429_and_an_unavailable_one_503_with_retry_after() {
    for (mode, want) in [
        (Mode::Overloaded, StatusCode::TOO_MANY_REQUESTS),
        (Mode::Unavailable, StatusCode::SERVICE_UNAVAILABLE),
    ] {
        let s = setup(mode);
        let (status, headers, _) = post(
            router(s.ingest.clone()),
            Some("application/x-protobuf"),
            false,
            sample_request().encode_to_vec(),
        )
        .await;
        assert_eq!(status, want);
        assert_eq!(headers[header::RETRY_AFTER], "5");
        // nothing stored, nothing derived: the retry counts once
        assert!(s.metrics.appends.lock().is_empty());
    }
}

#[tokio::test]
async fn body_limit_and_content_type_are_checked() {
    let s = setup_with(
        Mode::Accept,
        TraceLimits {
            max_request_body_bytes: 16,
            ..Default::default()
        },
        None,
    );
    let (status, _, _) = post(
        router(s.ingest.clone()),
        Some("application/x-protobuf"),
        false,
        sample_request().encode_to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, _, _) = post(router(s.ingest.clone()), Some("text/plain"), false, vec![]).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn the_answer_waits_for_the_derived_samples() {
    let gate = Arc::new(Semaphore::new(0));
    let s = setup_with(Mode::Accept, TraceLimits::default(), Some(gate.clone()));
    let app = router(s.ingest.clone());
    let pending = tokio::spawn(post(
        app,
        Some("application/x-protobuf"),
        false,
        sample_request().encode_to_vec(),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !pending.is_finished(),
        "answered before the derived samples were stored"
    );
    assert_eq!(s.traces.span_count(), 3, "spans are stored first");
    assert!(s.metrics.appends.lock().is_empty());
    gate.add_permits(1);
    let (status, _, _) = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(s.metrics.last(CALLS_FRONTEND), Some(1.0));
    let events = s.events.lock().clone();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0], "spans 3");
    assert!(events[1].starts_with("metrics "), "{events:?}");
}

#[tokio::test]
async fn a_restarted_ingest_continues_the_counters() {
    let s = setup(Mode::Accept);
    s.ingest
        .run_export(|| Ok(sample_request()), PROTOCOL_GRPC)
        .await
        .unwrap();
    s.ingest.shutdown().await;
    let again = TraceIngest::new(
        s.traces.clone(),
        s.metrics.clone(),
        s.metrics.clone(),
        TraceLimits::default(),
        DeriveConfig::default(),
    )
    .unwrap();
    // make sure the next flush is stamped after the first process's
    tokio::time::sleep(Duration::from_millis(5)).await;
    again
        .run_export(|| Ok(sample_request()), PROTOCOL_GRPC)
        .await
        .unwrap();
    assert_eq!(s.metrics.last(CALLS_FRONTEND), Some(2.0));
    assert_eq!(
        s.metrics
            .last("traces_service_graph_request_total{client=\"frontend\", server=\"checkout\"}"),
        Some(2.0)
    );
}

/// Starts the gRPC service on an ephemeral port; returns its `http://` address.
async fn start_grpc(ingest: Arc<TraceIngest>) -> String {
    serve_grpc(grpc_service(ingest)).await
}

#[tokio::test]
async fn grpc_export_with_and_without_gzip() {
    let s = setup(Mode::Accept);
    let addr = start_grpc(s.ingest.clone()).await;
    let mut plain = TraceServiceClient::connect(addr.clone()).await.unwrap();
    let resp = plain.export(sample_request()).await.unwrap().into_inner();
    assert_eq!(resp.partial_success, None);
    let mut gz = TraceServiceClient::connect(addr)
        .await
        .unwrap()
        .send_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Gzip);
    let resp = gz.export(sample_request()).await.unwrap().into_inner();
    assert_eq!(resp.partial_success, None);
    assert_eq!(s.traces.span_count(), 6);
    assert_eq!(s.metrics.last(CALLS_FRONTEND), Some(2.0));
}

#[tokio::test]
async fn grpc_errors_map_to_codes() {
    let s = setup(Mode::Accept);
    let addr = start_grpc(s.ingest.clone()).await;
    let mut client = TraceServiceClient::connect(addr).await.unwrap();
    let mut bad = sample_request();
    bad.resource_spans[0].scope_spans[0].spans[0].span_id = vec![7; 2];
    let resp = client.export(bad).await.unwrap().into_inner();
    assert_eq!(resp.partial_success.unwrap().rejected_spans, 1);

    let s = setup(Mode::Overloaded);
    let addr = start_grpc(s.ingest.clone()).await;
    let mut client = TraceServiceClient::connect(addr).await.unwrap();
    let err = client.export(sample_request()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    assert!(
        err.message().contains("retry after 5s"),
        "{}",
        err.message()
    );

    let s = setup_with(
        Mode::Accept,
        TraceLimits {
            max_spans_per_request: 1,
            ..Default::default()
        },
        None,
    );
    let addr = start_grpc(s.ingest.clone()).await;
    let mut client = TraceServiceClient::connect(addr).await.unwrap();
    let err = client.export(sample_request()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("max_spans_per_request=1"),
        "{}",
        err.message()
    );

    let s = setup_with(
        Mode::Accept,
        TraceLimits {
            max_request_body_bytes: 64,
            ..Default::default()
        },
        None,
    );
    let addr = start_grpc(s.ingest.clone()).await;
    let mut client = TraceServiceClient::connect(addr).await.unwrap();
    let err = client.export(sample_request()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("max_request_body_bytes=64"),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn grpc_garbage_is_invalid_argument_and_other_paths_unimplemented() {
    let s = setup(Mode::Accept);
    let addr = start_grpc(s.ingest.clone()).await;
    assert_garbage_and_other_methods_refused(&addr, EXPORT_PATH, "ExportTraceServiceRequest").await;
}
