//! OTLP/HTTP handler tests, driving the router in-process.

use axum::http::{Request, StatusCode};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use tower::ServiceExt;

use super::*;
use crate::otlp::status::RpcStatus;
use crate::otlp::test_support::{gauge_request, gzip, post, RecordingSink, SinkMode};

const JSON_BODY: &str = r#"{
  "resourceMetrics": [{
    "resource": {"attributes": [
      {"key": "service.name", "value": {"stringValue": "json-svc"}},
      {"key": "service.instance.id", "value": {"stringValue": "i-1"}}
    ]},
    "scopeMetrics": [{
      "scope": {"name": "my.library", "version": "1.0.0"},
      "metrics": [
        {"name": "my.counter", "unit": "1", "description": "I am a Counter",
         "sum": {"aggregationTemporality": 2, "isMonotonic": true,
                 "dataPoints": [{"asDouble": 5, "startTimeUnixNano": "1544712660300000000",
                                 "timeUnixNano": "1544712660300000000",
                                 "attributes": [{"key": "my.counter.attr", "value": {"stringValue": "x"}}]}]}},
        {"name": "my.gauge", "unit": "By", "gauge": {"dataPoints": [
          {"asInt": "7", "timeUnixNano": "1544712660300000000"}]}},
        {"name": "my.histogram", "unit": "ms", "histogram": {"aggregationTemporality": 2, "dataPoints": [
          {"startTimeUnixNano": "1544712660300000000", "timeUnixNano": "1544712660300000000",
           "count": "3", "sum": 2, "bucketCounts": ["1", "2"], "explicitBounds": [1]}]}}
      ]
    }]
  }]
}"#;

async fn send(
    sink: Arc<RecordingSink>,
    limits: IngestLimits,
    content_type: Option<&str>,
    gzip: bool,
    body: Vec<u8>,
) -> (StatusCode, HeaderMap, Bytes) {
    let encoding = gzip.then_some("gzip");
    post(
        router(sink, limits),
        "/v1/metrics",
        content_type,
        encoding,
        body,
    )
    .await
}

#[tokio::test]
async fn protobuf_export_is_stored_and_answered_in_protobuf() {
    let sink = RecordingSink::new(SinkMode::Accept);
    let body = gauge_request("http.pb.gauge", 3.5).encode_to_vec();
    let (status, headers, bytes) = send(
        sink.clone(),
        IngestLimits::default(),
        Some(PROTOBUF),
        false,
        body,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], PROTOBUF);
    let resp = ExportMetricsServiceResponse::decode(bytes).unwrap();
    assert_eq!(resp.partial_success, None);
    assert_eq!(
        sink.rendered(),
        vec!["http_pb_gauge{attr=\"v\", job=\"svc\"} 3.5".to_string()]
    );
}

#[tokio::test]
async fn json_export_as_the_spec_shows_is_decoded() {
    let sink = RecordingSink::new(SinkMode::Accept);
    let (status, headers, bytes) = send(
        sink.clone(),
        IngestLimits::default(),
        Some("application/json; charset=utf-8"),
        false,
        JSON_BODY.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    assert_eq!(headers[header::CONTENT_TYPE], JSON);
    assert_eq!(&bytes[..], b"{}");
    let scope = "otel_scope_name=\"my.library\", otel_scope_version=\"1.0.0\"";
    let id = "instance=\"i-1\", job=\"json-svc\"";
    assert_eq!(
        sink.rendered(),
        vec![
            format!("my_counter_total{{{id}, my_counter_attr=\"x\", {scope}}} 5"),
            format!("my_gauge_bytes{{{id}, {scope}}} 7"),
            format!("my_histogram_milliseconds_bucket{{{id}, le=\"+Inf\", {scope}}} 3"),
            format!("my_histogram_milliseconds_bucket{{{id}, le=\"1\", {scope}}} 1"),
            format!("my_histogram_milliseconds_count{{{id}, {scope}}} 3"),
            format!("my_histogram_milliseconds_sum{{{id}, {scope}}} 2"),
        ]
    );
    let stored = sink.batches.lock();
    assert_eq!(
        stored[0].series[0].samples[0].timestamp_ms,
        1_544_712_660_300
    );
}

#[tokio::test]
async fn json_accepts_int64_as_numbers_too() {
    let body = JSON_BODY
        .replace(
            "\"timeUnixNano\": \"1544712660300000000\"",
            "\"timeUnixNano\": 1544712660300000000",
        )
        .replace("\"asInt\": \"7\"", "\"asInt\": 7")
        .replace("\"count\": \"3\"", "\"count\": 3");
    let sink = RecordingSink::new(SinkMode::Accept);
    let (status, _, bytes) = send(
        sink.clone(),
        IngestLimits::default(),
        Some(JSON),
        false,
        body.into_bytes(),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    assert_eq!(sink.rendered().len(), 6);
}

#[tokio::test]
async fn gzip_protobuf_is_inflated() {
    let sink = RecordingSink::new(SinkMode::Accept);
    let body = gzip(&gauge_request("http.gz.gauge", 1.0).encode_to_vec());
    let (status, _, _) = send(
        sink.clone(),
        IngestLimits::default(),
        Some(PROTOBUF),
        true,
        body,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        sink.rendered(),
        vec!["http_gz_gauge{attr=\"v\", job=\"svc\"} 1".to_string()]
    );
}

#[tokio::test]
async fn truncated_protobuf_is_a_400_naming_the_problem() {
    let sink = RecordingSink::new(SinkMode::Accept);
    let full = gauge_request("http.trunc", 1.0).encode_to_vec();
    let body = full[..full.len() - 5].to_vec();
    let (status, headers, bytes) = send(
        sink.clone(),
        IngestLimits::default(),
        Some(PROTOBUF),
        false,
        body,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(headers[header::CONTENT_TYPE], PROTOBUF);
    let st = RpcStatus::decode(bytes).unwrap();
    assert_eq!(st.code, tonic::Code::InvalidArgument as i32);
    assert!(
        st.message
            .starts_with("failed to decode protobuf ExportMetricsServiceRequest: "),
        "{}",
        st.message
    );
    assert!(sink.batches.lock().is_empty());
}

#[tokio::test]
async fn bad_json_is_a_400_in_json() {
    let sink = RecordingSink::new(SinkMode::Accept);
    let (status, _, bytes) = send(
        sink,
        IngestLimits::default(),
        Some(JSON),
        false,
        b"{\"resourceMetrics\": [".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["code"], 3);
    assert!(v["message"]
        .as_str()
        .unwrap()
        .starts_with("failed to decode JSON ExportMetricsServiceRequest"));
}

#[tokio::test]
async fn corrupt_gzip_is_a_400() {
    let sink = RecordingSink::new(SinkMode::Accept);
    let (status, _, bytes) = send(
        sink,
        IngestLimits::default(),
        Some(PROTOBUF),
        true,
        b"not gzip at all".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let st = RpcStatus::decode(bytes).unwrap();
    assert!(
        st.message.contains("failed to decompress gzip"),
        "{}",
        st.message
    );
}

#[tokio::test]
async fn wrong_content_type_is_a_415_naming_accepted_types() {
    let sink = RecordingSink::new(SinkMode::Accept);
    let (status, _, bytes) = send(
        sink.clone(),
        IngestLimits::default(),
        Some("text/plain"),
        false,
        b"x".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains("application/x-protobuf") && msg.contains("application/json"),
        "{msg}"
    );
    let (status, _, _) = send(sink, IngestLimits::default(), None, false, b"x".to_vec()).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn oversized_body_is_a_413_naming_the_limit() {
    let sink = RecordingSink::new(SinkMode::Accept);
    let limits = IngestLimits {
        max_request_body_bytes: 64,
    };
    let (status, _, bytes) = send(
        sink.clone(),
        limits.clone(),
        Some(PROTOBUF),
        false,
        vec![0u8; 65],
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let st = RpcStatus::decode(bytes).unwrap();
    assert!(
        st.message.contains("max_request_body_bytes=64"),
        "{}",
        st.message
    );

    // a small gzip body that inflates past the limit is refused the same way
    let bomb = gzip(&vec![0u8; 10_000]);
    assert!(bomb.len() < 64, "test body must compress below the limit");
    let (status, _, bytes) = send(sink.clone(), limits, Some(PROTOBUF), true, bomb).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let st = RpcStatus::decode(bytes).unwrap();
    assert!(
        st.message.contains("max_request_body_bytes=64"),
        "{}",
        st.message
    );
    assert!(sink.batches.lock().is_empty());
}

#[tokio::test]
async fn overloaded_store_is_a_429_with_retry_after() {
    let sink = RecordingSink::new(SinkMode::Overloaded);
    let body = gauge_request("http.overload", 1.0).encode_to_vec();
    let (status, headers, bytes) =
        send(sink, IngestLimits::default(), Some(PROTOBUF), false, body).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers[header::RETRY_AFTER], "5");
    let st = RpcStatus::decode(bytes).unwrap();
    assert_eq!(st.code, tonic::Code::ResourceExhausted as i32);
    assert!(st.message.contains("retry after 5s"), "{}", st.message);
    assert_eq!(st.details.len(), 1);
}

#[tokio::test]
async fn unavailable_store_is_a_503_with_retry_after() {
    let sink = RecordingSink::new(SinkMode::Unavailable);
    let body = gauge_request("http.unavail", 1.0).encode_to_vec();
    let (status, headers, _) =
        send(sink, IngestLimits::default(), Some(PROTOBUF), false, body).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers[header::RETRY_AFTER], "5");
}

#[tokio::test]
async fn rejections_come_back_as_partial_success() {
    // store refuses one sample
    let sink = RecordingSink::new(SinkMode::RejectOne);
    let body = gauge_request("http.partial", 1.0).encode_to_vec();
    let (status, _, bytes) = send(sink, IngestLimits::default(), Some(PROTOBUF), false, body).await;
    assert_eq!(status, StatusCode::OK);
    let ps = ExportMetricsServiceResponse::decode(bytes)
        .unwrap()
        .partial_success
        .unwrap();
    assert_eq!(ps.rejected_data_points, 1);
    assert_eq!(ps.error_message, "sample too old");

    // converter refuses a point: the spec's example has an exponential histogram
    let mut req: ExportMetricsServiceRequest = serde_json::from_str(JSON_BODY).unwrap();
    let mut exp = req.resource_metrics[0].scope_metrics[0].metrics[0].clone();
    exp.name = "http.exp".to_string();
    exp.data = Some(
        opentelemetry_proto::tonic::metrics::v1::metric::Data::ExponentialHistogram(
            opentelemetry_proto::tonic::metrics::v1::ExponentialHistogram {
                data_points: vec![Default::default()],
                aggregation_temporality: 2,
            },
        ),
    );
    req.resource_metrics[0].scope_metrics[0].metrics.push(exp);
    let sink = RecordingSink::new(SinkMode::Accept);
    let body = serde_json::to_vec(&req).unwrap();
    let (status, _, bytes) = send(
        sink.clone(),
        IngestLimits::default(),
        Some(JSON),
        false,
        body,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["partialSuccess"]["rejectedDataPoints"], 1);
    assert!(v["partialSuccess"]["errorMessage"]
        .as_str()
        .unwrap()
        .contains("not supported yet"));
    assert_eq!(sink.rendered().len(), 6);
}

#[tokio::test]
async fn unknown_content_encoding_is_refused() {
    let sink = RecordingSink::new(SinkMode::Accept);
    let app = router(sink, IngestLimits::default());
    let req = Request::post("/v1/metrics")
        .header(header::CONTENT_TYPE, PROTOBUF)
        .header(header::CONTENT_ENCODING, "br")
        .body(Body::from(vec![1u8]))
        .unwrap();
    let resp = app.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn export_into_the_real_store_reads_back() {
    use store::{LabelMatcher, MatchOp, MetricsQuerier};
    let dir = tempfile::tempdir().unwrap();
    let store =
        store::MetricsStore::open(store::config::MetricsStoreOptions::new(dir.path())).unwrap();
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut req = gauge_request("real.store.gauge", 42.0);
    let point = match &mut req.resource_metrics[0].scope_metrics[0].metrics[0].data {
        Some(opentelemetry_proto::tonic::metrics::v1::metric::Data::Gauge(g)) => {
            &mut g.data_points[0]
        }
        _ => unreachable!("gauge_request builds a gauge"),
    };
    point.time_unix_nano = now_ns;
    let app = router(store.clone(), IngestLimits::default());
    let resp = app
        .oneshot(
            Request::post("/v1/metrics")
                .header(header::CONTENT_TYPE, PROTOBUF)
                .body(Body::from(req.encode_to_vec()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let ms = (now_ns / 1_000_000) as i64;
    let m = LabelMatcher::new("__name__", MatchOp::Equal, "real_store_gauge").unwrap();
    let got = store.select(&[m], ms - 1, ms + 1).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].labels.to_string(),
        "real_store_gauge{attr=\"v\", job=\"svc\"}"
    );
    assert_eq!(got[0].samples, vec![store::Sample::new(ms, 42.0)]);
    store.close().await.unwrap();
}

#[tokio::test]
async fn json_ignores_unknown_fields_as_the_spec_requires() {
    let body = JSON_BODY
        .replacen(
            "\"resourceMetrics\"",
            "\"someFutureField\": {\"x\": 1}, \"resourceMetrics\"",
            1,
        )
        .replace(
            "\"isMonotonic\": true",
            "\"isMonotonic\": true, \"futureFlag\": 3",
        );
    let sink = RecordingSink::new(SinkMode::Accept);
    let (status, _, bytes) = send(
        sink.clone(),
        IngestLimits::default(),
        Some(JSON),
        false,
        body.into_bytes(),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    assert_eq!(sink.rendered().len(), 6);
}

/// A cumulative sum and a delta histogram with their temporalities written as enum names, as
/// protobuf's JSON printers emit them by default.
const JSON_ENUM_NAMES_BODY: &str = r#"{
  "resourceMetrics": [{
    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "enum-svc"}}]},
    "scopeMetrics": [{
      "metrics": [
        {"name": "enum.requests",
         "sum": {"aggregationTemporality": "AGGREGATION_TEMPORALITY_CUMULATIVE", "isMonotonic": true,
                 "dataPoints": [{"asInt": "5", "startTimeUnixNano": "1544712650300000000",
                                 "timeUnixNano": "1544712660300000000",
                                 "attributes": [{"key": "code", "value": {"stringValue": "200"}}]}]}},
        {"name": "enum.latency", "unit": "ms",
         "histogram": {"aggregationTemporality": "AGGREGATION_TEMPORALITY_DELTA", "dataPoints": [
          {"startTimeUnixNano": "1544712650300000000", "timeUnixNano": "1544712660300000000",
           "count": "3", "sum": 2, "bucketCounts": ["1", "2"], "explicitBounds": [1]}]}}
      ]
    }]
  }]
}"#;

#[tokio::test]
async fn json_enum_names_are_decoded_and_stored() {
    let sink = RecordingSink::new(SinkMode::Accept);
    let (status, _, bytes) = send(
        sink.clone(),
        IngestLimits::default(),
        Some(JSON),
        false,
        JSON_ENUM_NAMES_BODY.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    assert_eq!(&bytes[..], b"{}");
    let job = "job=\"enum-svc\"";
    assert_eq!(
        sink.rendered(),
        vec![
            format!("enum_latency_milliseconds_bucket{{{job}, le=\"+Inf\"}} 3"),
            format!("enum_latency_milliseconds_bucket{{{job}, le=\"1\"}} 1"),
            format!("enum_latency_milliseconds_count{{{job}}} 3"),
            format!("enum_latency_milliseconds_sum{{{job}}} 2"),
            format!("enum_requests_total{{code=\"200\", {job}}} 5"),
        ]
    );
}

#[tokio::test]
async fn json_unknown_enum_name_is_a_400_naming_it() {
    let sink = RecordingSink::new(SinkMode::Accept);
    let body = JSON_ENUM_NAMES_BODY.replace(
        "AGGREGATION_TEMPORALITY_CUMULATIVE",
        "AGGREGATION_TEMPORALITY_SOMETIMES",
    );
    let (status, _, bytes) = send(
        sink.clone(),
        IngestLimits::default(),
        Some(JSON),
        false,
        body.into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["code"], 3);
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains("AGGREGATION_TEMPORALITY_SOMETIMES") && msg.contains("enum.requests"),
        "{msg}"
    );
    assert!(sink.batches.lock().is_empty());
}

#[tokio::test]
async fn json_metric_data_that_fails_to_decode_is_a_400_not_dropped() {
    let sink = RecordingSink::new(SinkMode::Accept);
    let body = JSON_ENUM_NAMES_BODY.replace("\"isMonotonic\": true", "\"isMonotonic\": \"yes\"");
    let (status, _, bytes) = send(
        sink.clone(),
        IngestLimits::default(),
        Some(JSON),
        false,
        body.into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let msg = v["message"].as_str().unwrap();
    assert!(msg.contains("\"enum.requests\": invalid sum"), "{msg}");
    assert!(sink.batches.lock().is_empty());
}
