//! Test doubles for the OTLP receivers: a sink that records batches or fails on demand, and
//! small request builders; and the calls every receiver's tests make (also Loki's): an HTTP
//! POST through a router in-process, a gRPC service on a real port, a raw gRPC call.

use std::io::Write;
use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use bytes::Bytes;
use flate2::write::GzEncoder;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use parking_lot::Mutex;
use store::{AppendReport, MetricBatch, MetricsAppender, RejectReason, StoreError};
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tower::ServiceExt;

use super::grpc::OtlpGrpcService;
use super::signal::OtlpSignal;

/// What the recording sink does with each append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SinkMode {
    Accept,
    Overloaded,
    Unavailable,
    /// Accepts all but reports one sample as too old.
    RejectOne,
}

pub struct RecordingSink {
    pub mode: SinkMode,
    pub batches: Mutex<Vec<MetricBatch>>,
}

impl RecordingSink {
    pub fn new(mode: SinkMode) -> Arc<Self> {
        Arc::new(RecordingSink {
            mode,
            batches: Mutex::new(Vec::new()),
        })
    }

    /// Every stored series as `name{labels} value`, sorted.
    pub fn rendered(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .batches
            .lock()
            .iter()
            .flat_map(|b| b.series.iter())
            .flat_map(|s| {
                s.samples
                    .iter()
                    .map(move |x| format!("{} {}", s.labels, x.value))
            })
            .collect();
        v.sort();
        v
    }
}

#[async_trait]
impl MetricsAppender for RecordingSink {
    async fn append(&self, batch: MetricBatch) -> store::Result<AppendReport> {
        match self.mode {
            SinkMode::Overloaded => Err(StoreError::Overloaded("wal queue full".to_string())),
            SinkMode::Unavailable => Err(StoreError::Unavailable("shutting down".to_string())),
            SinkMode::Accept | SinkMode::RejectOne => {
                let n = batch.sample_count() as u64;
                let mut report = AppendReport {
                    accepted_samples: n,
                    ..Default::default()
                };
                if self.mode == SinkMode::RejectOne && n > 0 {
                    report.accepted_samples -= 1;
                    report.reject(RejectReason::TooOld, 1, || "sample too old".to_string());
                }
                self.batches.lock().push(batch);
                Ok(report)
            }
        }
    }
}

pub const T1: u64 = 1_700_000_000_000_000_000;

/// A request with one gauge point `name{attr="v"} value` from service `svc`.
pub fn gauge_request(name: &str, value: f64) -> ExportMetricsServiceRequest {
    let kv = |k: &str, v: &str| KeyValue {
        key: k.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.to_string())),
        }),
        ..Default::default()
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "svc")],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: name.to_string(),
                    data: Some(Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            attributes: vec![kv("attr", "v")],
                            time_unix_nano: T1,
                            value: Some(number_data_point::Value::AsDouble(value)),
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Sends `POST path` through `app` in-process, with the `Content-Type` and `Content-Encoding`
/// given; returns the answer's status, headers and body.
pub async fn post(
    app: Router,
    path: &str,
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, HeaderMap, Bytes) {
    let mut req = Request::post(path);
    if let Some(ct) = content_type {
        req = req.header(header::CONTENT_TYPE, ct);
    }
    if let Some(enc) = content_encoding {
        req = req.header(header::CONTENT_ENCODING, enc);
    }
    let resp = app
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, headers, bytes)
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// Starts `svc` on an ephemeral port; returns its `http://` address.
pub async fn serve_grpc<S: OtlpSignal>(svc: OtlpGrpcService<S>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        Server::builder()
            .add_service(svc)
            .serve_with_incoming(TcpIncoming::from(listener))
            .await
    });
    format!("http://{addr}")
}

/// Sends and receives bytes as they are.
#[derive(Clone, Copy)]
pub struct RawCodec;

pub struct RawEncoder;
pub struct RawBytesDecoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawBytesDecoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawBytesDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawBytesDecoder {
        RawBytesDecoder
    }
}

/// Calls `path` on the gRPC server at `addr` with `body` as the message, bytes as they are;
/// returns the answer's bytes.
pub async fn grpc_raw(addr: &str, path: &str, body: Vec<u8>) -> Result<Vec<u8>, tonic::Status> {
    grpc_raw_with(addr, path, body, false).await
}

/// [`grpc_raw`], the message gzip-compressed when `gzip`.
pub async fn grpc_raw_with(
    addr: &str,
    path: &str,
    body: Vec<u8>,
    gzip: bool,
) -> Result<Vec<u8>, tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(addr.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    if gzip {
        grpc = grpc.send_compressed(tonic::codec::CompressionEncoding::Gzip);
    }
    grpc.ready().await.unwrap();
    grpc.unary(
        tonic::Request::new(body),
        ::http::uri::PathAndQuery::try_from(path).unwrap(),
        RawCodec,
    )
    .await
    .map(tonic::Response::into_inner)
}

/// The gRPC service at `addr` answers bytes that are no protobuf, sent to `export_path`, with
/// `INVALID_ARGUMENT` naming the `request` message, and another method of the same service
/// with `UNIMPLEMENTED`.
pub async fn assert_garbage_and_other_methods_refused(
    addr: &str,
    export_path: &str,
    request: &str,
) {
    let err = grpc_raw(addr, export_path, vec![0xff; 3])
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains(request), "{}", err.message());
    let other = export_path.replace("/Export", "/Other");
    let err = grpc_raw(addr, &other, Vec::new()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented, "{other}");
}
