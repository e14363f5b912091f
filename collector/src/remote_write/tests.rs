//! In-process round trips through the remote-write router (tower `oneshot`, no sockets).

// a failed unwrap is a failed test, which is what it should be
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use parking_lot::Mutex;
use prost::Message as _;
use store::{AppendReport, Labels, MetricBatch, MetricsAppender, RejectReason, StoreError};
use tower::ServiceExt as _;

use super::proto::{self, WriteRequest};
use super::*;

/// How the fake store reacts.
#[derive(Clone, Copy)]
enum Mode {
    Accept,
    /// Samples with a timestamp below this are rejected as too old.
    RejectBefore(i64),
    Overloaded,
}

struct Recorder {
    mode: Mode,
    batches: Mutex<Vec<MetricBatch>>,
}

impl Recorder {
    fn new(mode: Mode) -> Arc<Self> {
        Arc::new(Recorder {
            mode,
            batches: Mutex::new(Vec::new()),
        })
    }

    fn stored(&self) -> Vec<(String, Vec<(i64, f64)>)> {
        self.batches
            .lock()
            .iter()
            .flat_map(|b| b.series.iter())
            .map(|s| {
                (
                    s.labels.to_string(),
                    s.samples
                        .iter()
                        .map(|x| (x.timestamp_ms, x.value))
                        .collect(),
                )
            })
            .collect()
    }
}

#[async_trait]
impl MetricsAppender for Recorder {
    async fn append(&self, mut batch: MetricBatch) -> store::Result<AppendReport> {
        let mut report = AppendReport::default();
        match self.mode {
            Mode::Overloaded => return Err(StoreError::Overloaded("wal queue full".into())),
            Mode::Accept => report.accepted_samples = batch.sample_count() as u64,
            Mode::RejectBefore(min) => {
                for s in &mut batch.series {
                    let before = s.samples.len();
                    s.samples.retain(|x| x.timestamp_ms >= min);
                    let dropped = (before - s.samples.len()) as u64;
                    report.accepted_samples += s.samples.len() as u64;
                    if dropped > 0 {
                        let series = s.labels.to_string();
                        report.reject(RejectReason::TooOld, dropped, || {
                            format!("sample too old for series {series}")
                        });
                    }
                }
            }
        }
        self.batches.lock().push(batch);
        Ok(report)
    }
}

fn series(name: &str, extra: &[(&str, &str)], samples: &[(i64, f64)]) -> proto::TimeSeries {
    let mut labels = vec![proto::Label::new("__name__", name)];
    labels.extend(extra.iter().map(|(n, v)| proto::Label::new(*n, *v)));
    proto::TimeSeries {
        labels,
        samples: samples
            .iter()
            .map(|&(timestamp, value)| proto::Sample { value, timestamp })
            .collect(),
        exemplars: vec![],
        histograms: vec![],
    }
}

fn request(body: Vec<u8>, content_type: &str, encoding: Option<&str>) -> Request<Body> {
    let mut b = Request::post("/api/v1/write")
        .header(header::CONTENT_TYPE, content_type)
        .header("X-Prometheus-Remote-Write-Version", "0.1.0");
    if let Some(e) = encoding {
        b = b.header(header::CONTENT_ENCODING, e);
    }
    b.body(Body::from(body)).unwrap()
}

fn snappy_request(req: &WriteRequest) -> Request<Body> {
    let body = proto::encode_snappy(req).unwrap();
    request(body, "application/x-protobuf", Some("snappy"))
}

async fn send(
    sink: Arc<Recorder>,
    limits: IngestLimits,
    req: Request<Body>,
) -> (StatusCode, Option<String>, String) {
    let resp = router(sink, limits).oneshot(req).await.unwrap();
    let status = resp.status();
    let retry = resp
        .headers()
        .get(header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().to_string());
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, retry, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn round_trip_stores_series_samples_and_metadata() {
    let sink = Recorder::new(Mode::Accept);
    let req = WriteRequest {
        timeseries: vec![
            // labels deliberately unsorted: the store's label set sorts them
            series(
                "http_requests_total",
                &[("job", "api"), ("code", "200")],
                &[(1000, 1.0), (2000, 2.5)],
            ),
            series("up", &[("job", "api")], &[(1000, 1.0)]),
        ],
        metadata: vec![proto::MetricMetadata {
            r#type: proto::MetricKind::Counter as i32,
            metric_family_name: "http_requests_total".into(),
            help: "Requests.".into(),
            unit: String::new(),
        }],
    };
    let (status, _, body) = send(sink.clone(), IngestLimits::default(), snappy_request(&req)).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(
        sink.stored(),
        vec![
            (
                r#"http_requests_total{code="200", job="api"}"#.to_string(),
                vec![(1000, 1.0), (2000, 2.5)]
            ),
            (r#"up{job="api"}"#.to_string(), vec![(1000, 1.0)]),
        ]
    );
    let batches = sink.batches.lock();
    assert_eq!(batches[0].metadata.len(), 1);
    assert_eq!(
        batches[0].metadata[0].metric_type,
        store::MetricType::Counter
    );
    assert_eq!(batches[0].metadata[0].help, "Requests.");
    assert_eq!(
        batches[0].series[0].labels,
        Labels::from_pairs([
            ("__name__", "http_requests_total"),
            ("code", "200"),
            ("job", "api")
        ])
    );
}

#[tokio::test]
async fn content_type_with_proto_parameter_is_accepted_and_v2_is_not() {
    let req = WriteRequest {
        timeseries: vec![series("m", &[], &[(1, 1.0)])],
        metadata: vec![],
    };
    let body = proto::encode_snappy(&req).unwrap();
    let ok = request(
        body.clone(),
        "application/x-protobuf;proto=prometheus.WriteRequest",
        Some("snappy"),
    );
    let (status, _, _) = send(Recorder::new(Mode::Accept), IngestLimits::default(), ok).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let v2 = request(
        body,
        "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        Some("snappy"),
    );
    let (status, _, msg) = send(Recorder::new(Mode::Accept), IngestLimits::default(), v2).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(msg.contains("io.prometheus.write.v2.Request"), "{msg}");
}

#[tokio::test]
async fn wrong_content_type_is_415_naming_it() {
    let sink = Recorder::new(Mode::Accept);
    let (status, _, msg) = send(
        sink.clone(),
        IngestLimits::default(),
        request(b"{}".to_vec(), "application/json", Some("snappy")),
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(
        msg.contains("application/json") && msg.contains("application/x-protobuf"),
        "{msg}"
    );
    assert!(sink.stored().is_empty());
}

#[tokio::test]
async fn missing_snappy_encoding_is_415() {
    let req = WriteRequest {
        timeseries: vec![series("m", &[], &[(1, 1.0)])],
        metadata: vec![],
    };
    let (status, _, msg) = send(
        Recorder::new(Mode::Accept),
        IngestLimits::default(),
        request(req.encode_to_vec(), "application/x-protobuf", None),
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(msg.contains("Content-Encoding: snappy"), "{msg}");
}

#[tokio::test]
async fn bad_snappy_is_400() {
    let sink = Recorder::new(Mode::Accept);
    // a valid length header (5) followed by a copy tag pointing before the start of output
    let body = vec![0x05, 0x01, 0xff, 0xff, 0xff];
    let (status, _, msg) = send(
        sink.clone(),
        IngestLimits::default(),
        request(body, "application/x-protobuf", Some("snappy")),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(msg.contains("invalid snappy"), "{msg}");
    assert!(sink.stored().is_empty());
}

#[tokio::test]
async fn truncated_protobuf_is_400() {
    let sink = Recorder::new(Mode::Accept);
    let req = WriteRequest {
        timeseries: vec![series(
            "http_requests_total",
            &[("job", "api")],
            &[(1000, 1.0)],
        )],
        metadata: vec![],
    };
    let mut raw = req.encode_to_vec();
    raw.truncate(raw.len() - 3);
    let body = snap::raw::Encoder::new().compress_vec(&raw).unwrap();
    let (status, _, msg) = send(
        sink.clone(),
        IngestLimits::default(),
        request(body, "application/x-protobuf", Some("snappy")),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        msg.contains("invalid prometheus.WriteRequest protobuf"),
        "{msg}"
    );
    assert!(sink.stored().is_empty());
}

#[tokio::test]
async fn oversize_is_413_before_decompressing() {
    let sink = Recorder::new(Mode::Accept);
    let limits = IngestLimits {
        max_request_body_bytes: 1024,
    };
    // highly compressible: small on the wire, over the limit once decompressed
    let req = WriteRequest {
        timeseries: vec![series("m", &[("pad", &"x".repeat(4096))], &[(1, 1.0)])],
        metadata: vec![],
    };
    let body = proto::encode_snappy(&req).unwrap();
    assert!(body.len() < 1024);
    let (status, _, msg) = send(
        sink.clone(),
        limits.clone(),
        request(body, "application/x-protobuf", Some("snappy")),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(msg.contains("max_request_body_bytes=1024"), "{msg}");

    // a header claiming an enormous size, with almost no body behind it
    let (status, _, _) = send(
        sink.clone(),
        limits.clone(),
        request(
            vec![0xff, 0xff, 0xff, 0xff, 0x0f, 0x00],
            "application/x-protobuf",
            Some("snappy"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    // a wire body over the limit is refused while buffering
    let (status, _, msg) = send(
        sink.clone(),
        limits,
        request(vec![0u8; 4096], "application/x-protobuf", Some("snappy")),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(msg.contains("max_request_body_bytes=1024"), "{msg}");
    assert!(sink.stored().is_empty());
}

#[tokio::test]
async fn invalid_utf8_label_is_400_naming_the_series() {
    let sink = Recorder::new(Mode::Accept);
    let mut bad = series("m", &[], &[(1, 1.0)]);
    bad.labels
        .push(proto::Label::new(b"job".to_vec(), vec![b'a', 0xff, b'b']));
    let req = WriteRequest {
        timeseries: vec![series("ok", &[], &[(1, 1.0)]), bad],
        metadata: vec![],
    };
    let (status, _, msg) = send(sink.clone(), IngestLimits::default(), snappy_request(&req)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        msg.contains("timeseries[1]") && msg.contains("\"job\"") && msg.contains("UTF-8"),
        "{msg}"
    );
    assert!(
        sink.stored().is_empty(),
        "a malformed request stores nothing"
    );
}

#[tokio::test]
async fn store_rejection_is_400_and_the_rest_is_stored() {
    let sink = Recorder::new(Mode::RejectBefore(1500));
    let req = WriteRequest {
        timeseries: vec![
            series("a", &[], &[(1000, 1.0), (2000, 2.0)]),
            series("b", &[], &[(3000, 3.0)]),
        ],
        metadata: vec![],
    };
    let (status, retry, msg) =
        send(sink.clone(), IngestLimits::default(), snappy_request(&req)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(retry, None);
    assert!(msg.contains("1 of 3 samples rejected (too_old=1)"), "{msg}");
    assert!(msg.contains("sample too old for series a{}"), "{msg}");
    assert!(msg.contains("2 samples stored"), "{msg}");
    assert_eq!(
        sink.stored(),
        vec![
            ("a{}".to_string(), vec![(2000, 2.0)]),
            ("b{}".to_string(), vec![(3000, 3.0)])
        ]
    );
}

#[tokio::test]
async fn native_histograms_are_rejected_with_a_reason_and_floats_kept() {
    let sink = Recorder::new(Mode::Accept);
    let mut h = series("latency", &[("job", "api")], &[]);
    h.histograms.push(proto::Histogram {
        count_int: 3,
        sum: 1.5,
        schema: 3,
        timestamp: 1000,
        ..Default::default()
    });
    let req = WriteRequest {
        timeseries: vec![h, series("up", &[], &[(1000, 1.0)])],
        metadata: vec![],
    };
    let (status, _, msg) = send(sink.clone(), IngestLimits::default(), snappy_request(&req)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(msg.contains("native histograms are not supported"), "{msg}");
    assert!(
        msg.contains("timeseries[0]") && msg.contains("latency"),
        "{msg}"
    );
    assert_eq!(sink.stored(), vec![("up{}".to_string(), vec![(1000, 1.0)])]);
}

#[tokio::test]
async fn overload_is_503_with_retry_after() {
    let req = WriteRequest {
        timeseries: vec![series("m", &[], &[(1, 1.0)])],
        metadata: vec![],
    };
    let (status, retry, msg) = send(
        Recorder::new(Mode::Overloaded),
        IngestLimits::default(),
        snappy_request(&req),
    )
    .await;
    // 503, not 429: Prometheus 2.x drops a batch answered 429 by default
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry.as_deref(), Some("5"));
    assert!(msg.contains("overloaded"), "{msg}");
}

#[tokio::test]
async fn large_bodies_decode_on_the_blocking_pool() {
    let sink = Recorder::new(Mode::Accept);
    let timeseries: Vec<_> = (0..20_000)
        .map(|i| {
            let inst = format!("host-{i}:9100");
            series(
                "node_cpu_seconds_total",
                &[("instance", inst.as_str()), ("job", "node")],
                &[(i, i as f64)],
            )
        })
        .collect();
    let req = WriteRequest {
        timeseries,
        metadata: vec![],
    };
    assert!(req.encoded_len() > BLOCKING_DECODE_BYTES);
    let (status, _, msg) = send(sink.clone(), IngestLimits::default(), snappy_request(&req)).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{msg}");
    assert_eq!(sink.stored().len(), 20_000);
}

#[test]
fn metadata_kinds_map_both_ways() {
    for t in [
        store::MetricType::Counter,
        store::MetricType::Gauge,
        store::MetricType::Histogram,
        store::MetricType::GaugeHistogram,
        store::MetricType::Summary,
        store::MetricType::Info,
        store::MetricType::StateSet,
        store::MetricType::Unknown,
    ] {
        assert_eq!(
            proto::MetricKind::to_store(proto::MetricKind::from_store(t) as i32),
            t
        );
    }
    assert_eq!(proto::MetricKind::to_store(42), store::MetricType::Unknown);
}
