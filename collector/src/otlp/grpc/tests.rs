//! OTLP/gRPC tests: a real tonic server on 127.0.0.1:0 called with the generated client.

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;

use super::*;
use crate::otlp::status::{RetryInfo, RpcStatus};
use crate::otlp::test_support::{
    gauge_request, grpc_raw_with, serve_grpc, RecordingSink, SinkMode,
};
use prost::Message;

/// Starts the service on an ephemeral port; returns its `http://` address.
async fn start(sink: Arc<RecordingSink>) -> String {
    start_with(sink, IngestLimits::default()).await
}

async fn start_with(sink: Arc<RecordingSink>, limits: IngestLimits) -> String {
    serve_grpc(metrics_service(sink, limits)).await
}

#[tokio::test]
async fn export_over_grpc_with_and_without_gzip() {
    let sink = RecordingSink::new(SinkMode::Accept);
    let addr = start(sink.clone()).await;

    let mut plain = MetricsServiceClient::connect(addr.clone()).await.unwrap();
    let resp = plain
        .export(gauge_request("grpc.plain", 1.0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.partial_success, None);

    let mut gz = MetricsServiceClient::connect(addr)
        .await
        .unwrap()
        .send_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Gzip);
    let resp = gz
        .export(gauge_request("grpc.gzip", 2.0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.partial_success, None);

    assert_eq!(
        sink.rendered(),
        vec![
            "grpc_gzip{attr=\"v\", job=\"svc\"} 2".to_string(),
            "grpc_plain{attr=\"v\", job=\"svc\"} 1".to_string(),
        ]
    );
}

#[tokio::test]
async fn store_rejections_are_a_partial_success() {
    let sink = RecordingSink::new(SinkMode::RejectOne);
    let addr = start(sink).await;
    let mut client = MetricsServiceClient::connect(addr).await.unwrap();
    let resp = client
        .export(gauge_request("grpc.partial", 1.0))
        .await
        .unwrap()
        .into_inner();
    let ps = resp.partial_success.unwrap();
    assert_eq!(ps.rejected_data_points, 1);
    assert_eq!(ps.error_message, "sample too old");
}

#[tokio::test]
async fn overloaded_store_is_resource_exhausted_with_retry_info() {
    let sink = RecordingSink::new(SinkMode::Overloaded);
    let addr = start(sink).await;
    let mut client = MetricsServiceClient::connect(addr).await.unwrap();
    let err = client
        .export(gauge_request("grpc.overload", 1.0))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    assert!(
        err.message().contains("retry after 5s"),
        "{}",
        err.message()
    );
    let st = RpcStatus::decode(err.details()).unwrap();
    let info = RetryInfo::decode(st.details[0].value.as_slice()).unwrap();
    assert_eq!(info.retry_delay.map(|d| d.seconds), Some(5));
}

#[tokio::test]
async fn unavailable_store_is_unavailable() {
    let sink = RecordingSink::new(SinkMode::Unavailable);
    let addr = start(sink).await;
    let mut client = MetricsServiceClient::connect(addr).await.unwrap();
    let err = client
        .export(gauge_request("grpc.unavail", 1.0))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
}

/// Sends bytes as they are (what the generated client cannot, since it encodes a message);
/// decodes the answer.
async fn export_raw(
    addr: &str,
    path: &'static str,
    body: Vec<u8>,
    gzip: bool,
) -> Result<ExportMetricsServiceResponse, tonic::Status> {
    let answer = grpc_raw_with(addr, path, body, gzip).await?;
    Ok(ExportMetricsServiceResponse::decode(answer.as_slice()).unwrap())
}

#[tokio::test]
async fn raw_valid_bytes_are_exported() {
    let sink = RecordingSink::new(SinkMode::Accept);
    let addr = start(sink.clone()).await;
    let body = gauge_request("grpc.raw", 4.0).encode_to_vec();
    let resp = export_raw(&addr, EXPORT_PATH, body, false).await.unwrap();
    assert_eq!(resp.partial_success, None);
    assert_eq!(
        sink.rendered(),
        vec!["grpc_raw{attr=\"v\", job=\"svc\"} 4".to_string()]
    );
}

#[tokio::test]
async fn truncated_protobuf_is_invalid_argument() {
    let sink = RecordingSink::new(SinkMode::Accept);
    let addr = start(sink.clone()).await;
    let body = gauge_request("grpc.truncated", 1.0).encode_to_vec();
    for gzip in [false, true] {
        let err = export_raw(&addr, EXPORT_PATH, body[..body.len() / 2].to_vec(), gzip)
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        assert!(
            err.message()
                .starts_with("failed to decode protobuf ExportMetricsServiceRequest"),
            "{}",
            err.message()
        );
        assert!(err.details().is_empty());
    }
    assert!(sink.batches.lock().is_empty());
}

#[tokio::test]
async fn invalid_utf8_string_is_invalid_argument() {
    let sink = RecordingSink::new(SinkMode::Accept);
    let addr = start(sink.clone()).await;
    let body = gauge_request("grpc.utf8.ZQZQ", 1.0).encode_to_vec();
    let at = body.windows(4).position(|w| w == b"ZQZQ").unwrap();
    let mut bad = body.clone();
    bad[at..at + 4].copy_from_slice(b"\xff\xfe\xfd\xfc");
    let err = export_raw(&addr, EXPORT_PATH, bad, false)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("UTF-8"), "{}", err.message());
    assert!(sink.batches.lock().is_empty());
    // the server is still serving
    export_raw(&addr, EXPORT_PATH, body, false).await.unwrap();
}

#[tokio::test]
async fn oversized_message_is_invalid_argument_naming_the_limit() {
    let sink = RecordingSink::new(SinkMode::Accept);
    let limits = IngestLimits {
        max_request_body_bytes: 1000,
    };
    let addr = start_with(sink.clone(), limits).await;
    let big = gauge_request(&"x".repeat(2000), 1.0).encode_to_vec();
    let err = export_raw(&addr, EXPORT_PATH, big.clone(), false)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("max_request_body_bytes=1000"),
        "{}",
        err.message()
    );
    // gzip: small on the wire, over the limit once inflated; refused without a retry hint
    let err = export_raw(&addr, EXPORT_PATH, big, true).await.unwrap_err();
    assert!(
        matches!(
            err.code(),
            tonic::Code::ResourceExhausted | tonic::Code::InvalidArgument
        ),
        "{err:?}"
    );
    assert!(err.details().is_empty(), "{err:?}");
    assert!(sink.batches.lock().is_empty());
    // a message within the limit still goes through
    let small = gauge_request("grpc.small", 1.0).encode_to_vec();
    export_raw(&addr, EXPORT_PATH, small, true).await.unwrap();
    assert_eq!(sink.rendered().len(), 1);
}

#[tokio::test]
async fn unknown_method_is_unimplemented() {
    let sink = RecordingSink::new(SinkMode::Accept);
    let addr = start(sink).await;
    let err = export_raw(
        &addr,
        "/opentelemetry.proto.collector.metrics.v1.MetricsService/Nope",
        Vec::new(),
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);
}
