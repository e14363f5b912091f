//! OTLP/gRPC tests: a real tonic server on 127.0.0.1:0 called with the generated client.

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;

use super::*;
use crate::otlp::status::{RetryInfo, RpcStatus};
use crate::otlp::test_support::{gauge_request, RecordingSink, SinkMode};
use prost::Message;

/// Starts the service on an ephemeral port; returns its `http://` address.
async fn start(sink: Arc<RecordingSink>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = metrics_service(sink, IngestLimits::default());
    tokio::spawn(async move {
        Server::builder()
            .add_service(svc)
            .serve_with_incoming(TcpIncoming::from(listener))
            .await
    });
    format!("http://{addr}")
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
