//! Prometheus remote-write 1.0 receiver: `POST /api/v1/write`.
//!
//! Path of a request: check `Content-Type`/`Content-Encoding` -> buffer the body (bounded by
//! the snappy worst case of `max_request_body_bytes`) -> read the snappy length header and
//! refuse oversize bodies before allocating -> decompress into a reused per-thread buffer and
//! decode ([`wire`], no allocation per label) into a [`RawMetricBatch`] ->
//! [`MetricsAppender::append_raw`] -> 204. [`proto`] holds the same messages as prost types,
//! for senders and tests.
//!
//! Answers follow Prometheus's own receiver, because Prometheus's sender acts on them: 204 when
//! everything was stored (identical re-sends included); 400 with the first reason when the
//! store rejected some samples (the accepted ones stay stored, and Prometheus drops the batch
//! instead of retrying it forever); 503 with `Retry-After` when Lookout is overloaded or not
//! ready, so the sender backs off and retries. Overload is 503 here, not the 429 the other
//! protocols use: Prometheus 2.x treats 429 as non-recoverable and drops the batch unless
//! `retry_on_http_429` is set, which it is not by default.

pub mod proto;
pub mod wire;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use store::model::RawMetricBatch;
use store::{AppendReport, MetricBatch, MetricMetadata, MetricsAppender, Sample, Series};

use crate::error::{ErrorClass, IngestError};
use crate::{telemetry, IngestLimits};

/// Protocol name in self-metrics and logs.
pub const PROTOCOL: &str = "remote_write";

const CONTENT_TYPE: &str = "application/x-protobuf";
const CONTENT_ENCODING: &str = "snappy";
/// The only protobuf message a 1.0 receiver understands; 2.0 senders fall back on 415.
const PROTO_MESSAGE: &str = "prometheus.WriteRequest";
const VERSION_HEADER: &str = "x-prometheus-remote-write-version";

/// Bodies decompressing to more than this are decoded on the blocking pool, so one large
/// request cannot hold up a runtime worker for tens of milliseconds.
const BLOCKING_DECODE_BYTES: usize = 1 << 20;

struct WriteState {
    sink: Arc<dyn MetricsAppender>,
    limits: IngestLimits,
}

/// The remote-write routes, to be merged into the HTTP server's router.
pub fn router(sink: Arc<dyn MetricsAppender>, limits: IngestLimits) -> Router {
    // the limit applies to the decompressed size; the compressed body may exceed it by
    // snappy's worst-case expansion (incompressible input), and no more
    let wire_limit = limits
        .max_request_body_bytes
        .saturating_add(limits.max_request_body_bytes / 6)
        .saturating_add(32);
    let state = Arc::new(WriteState { sink, limits });
    Router::new()
        .route("/api/v1/write", post(write))
        .layer(DefaultBodyLimit::max(wire_limit))
        .with_state(state)
}

async fn write(State(state): State<Arc<WriteState>>, request: Request) -> Response {
    match handle(&state, request).await {
        Ok(()) => {
            telemetry::REQUESTS
                .with_label_values(&[PROTOCOL, "ok"])
                .inc();
            StatusCode::NO_CONTENT.into_response()
        }
        Err(Failure { error, outcome }) => {
            let overloaded = error.class() == ErrorClass::Overloaded;
            let status = if overloaded {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                error.status()
            };
            let outcome = outcome.unwrap_or(if status.is_server_error() {
                "5xx"
            } else {
                "4xx"
            });
            telemetry::REQUESTS
                .with_label_values(&[PROTOCOL, outcome])
                .inc();
            if status.is_server_error() {
                tracing::warn!(protocol = PROTOCOL, status = status.as_u16(), error = %error, "remote-write request failed");
            } else {
                tracing::debug!(protocol = PROTOCOL, status = status.as_u16(), error = %error, "remote-write request refused");
            }
            let mut response = error.into_response();
            *response.status_mut() = status;
            response
        }
    }
}

/// An error answer plus the outcome label it is counted under (`partial` when some samples
/// of the request were stored).
struct Failure {
    error: IngestError,
    outcome: Option<&'static str>,
}

impl From<IngestError> for Failure {
    fn from(error: IngestError) -> Self {
        Failure {
            error,
            outcome: None,
        }
    }
}

async fn handle(state: &WriteState, request: Request) -> Result<(), Failure> {
    check_headers(request.headers())?;
    let body = Bytes::from_request(request, &())
        .await
        .map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                IngestError::BodyTooLarge {
                    limit: state.limits.max_request_body_bytes,
                }
            } else {
                IngestError::Malformed(format!(
                    "reading the request body failed: {}",
                    rejection.body_text()
                ))
            }
        })?;

    let limit = state.limits.max_request_body_bytes;
    let decoded_len = decompressed_len(&body, limit)?;
    let decoded = if decoded_len > BLOCKING_DECODE_BYTES {
        tokio::task::spawn_blocking(move || decode_raw(&body, limit))
            .await
            .map_err(|e| {
                // only a runtime shutdown cancels the task: tell the sender to retry
                IngestError::Store(store::StoreError::Unavailable(format!(
                    "remote-write decoding task did not finish: {e}"
                )))
            })??
    } else {
        decode_raw(&body, limit)?
    };

    let samples_in = decoded.batch.sample_count() as u64;
    let report = if decoded.batch.is_empty() && decoded.batch.metadata.is_empty() {
        AppendReport::default()
    } else {
        state
            .sink
            .append_raw(decoded.batch)
            .await
            .map_err(IngestError::Store)?
    };
    telemetry::record_append(PROTOCOL, &report);
    if decoded.histogram_samples > 0 {
        telemetry::record_rejected(PROTOCOL, "native_histogram", decoded.histogram_samples);
    }

    let rejected = report.rejected_total();
    if rejected == 0 && decoded.histogram_samples == 0 {
        return Ok(());
    }
    let outcome = if report.accepted_samples > 0 || report.duplicate_samples > 0 {
        "partial"
    } else {
        "rejected"
    };
    let mut message = String::new();
    if rejected > 0 {
        let reasons: Vec<String> = report
            .rejected_samples
            .iter()
            .map(|(r, n)| format!("{r}={n}"))
            .collect();
        message.push_str(&format!(
            "{rejected} of {samples_in} samples rejected ({}); first: {}",
            reasons.join(", "),
            report
                .first_rejection
                .as_deref()
                .unwrap_or("no detail given"),
        ));
    }
    if let Some(first) = &decoded.first_histogram_series {
        if !message.is_empty() {
            message.push_str("; ");
        }
        message.push_str(&format!(
            "{} native histogram samples rejected: native histograms are not supported (first in {first})",
            decoded.histogram_samples
        ));
    }
    message.push_str(&format!(
        "; {} samples stored, {} identical re-sends ignored",
        report.accepted_samples, report.duplicate_samples
    ));
    Err(Failure {
        error: IngestError::Rejected(message),
        outcome: Some(outcome),
    })
}

fn check_headers(headers: &HeaderMap) -> Result<(), IngestError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("<non-ascii>"));
    if !content_type.is_some_and(is_write_request_type) {
        return Err(IngestError::UnsupportedContentType {
            got: content_type.unwrap_or("<none>").to_string(),
            expected: "application/x-protobuf (prometheus.WriteRequest)",
        });
    }
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("<non-ascii>"));
    if !encoding.is_some_and(|e| e.trim().eq_ignore_ascii_case(CONTENT_ENCODING)) {
        return Err(IngestError::UnsupportedContentType {
            got: format!("Content-Encoding: {}", encoding.unwrap_or("<none>")),
            expected: "Content-Encoding: snappy",
        });
    }
    if let Some(version) = headers.get(VERSION_HEADER) {
        // 1.0 senders send 0.1.0; anything else is decoded as 1.0 all the same
        tracing::trace!(protocol = PROTOCOL, version = ?version, "remote-write version header");
    }
    Ok(())
}

/// `application/x-protobuf`, optionally with `proto=prometheus.WriteRequest`.
fn is_write_request_type(value: &str) -> bool {
    let mut parts = value.split(';');
    let media = parts.next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case(CONTENT_TYPE) {
        return false;
    }
    parts.all(|param| match param.split_once('=') {
        Some((k, v)) if k.trim().eq_ignore_ascii_case("proto") => {
            v.trim().trim_matches('"') == PROTO_MESSAGE
        }
        _ => true,
    })
}

/// The decompressed size announced by the snappy header, refused when over the limit; read
/// before anything is allocated so a tiny body cannot claim gigabytes.
fn decompressed_len(body: &[u8], limit: usize) -> Result<usize, IngestError> {
    let len = snap::raw::decompress_len(body)
        .map_err(|e| IngestError::Malformed(format!("invalid snappy block body: {e}")))?;
    if len > limit {
        return Err(IngestError::BodyTooLarge { limit });
    }
    Ok(len)
}

/// A decoded request, converted to the signal model.
#[derive(Debug, Default)]
pub struct Decoded {
    pub batch: MetricBatch,
    /// Native histogram samples seen (not stored).
    pub histogram_samples: u64,
    /// The first series carrying native histograms, for the error message.
    pub first_histogram_series: Option<String>,
}

/// A decoded request in the store's allocation-light batch form.
#[derive(Debug, Default)]
pub struct DecodedRaw {
    pub batch: RawMetricBatch,
    /// Native histogram samples seen (not stored).
    pub histogram_samples: u64,
    /// The first series carrying native histograms, for the error message.
    pub first_histogram_series: Option<String>,
}

/// A thread keeps its decompression buffer for the next request only up to this size:
/// runtime workers decode bodies up to [`BLOCKING_DECODE_BYTES`] and keep theirs, while the
/// many blocking-pool threads that decode larger bodies keep nothing.
const REUSED_BUFFER_BYTES: usize = BLOCKING_DECODE_BYTES;

thread_local! {
    /// The decompression buffer, reused: a fresh multi-megabyte buffer per request costs an
    /// allocation, zeroing and page faults.
    static DECOMPRESSED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Decompresses and decodes a remote-write body into the store's raw batch form (what the
/// receiver hands to [`MetricsAppender::append_raw`]).
pub fn decode_raw(body: &[u8], limit: usize) -> Result<DecodedRaw, IngestError> {
    let len = decompressed_len(body, limit)?;
    DECOMPRESSED.with(|cell| {
        let mut owned;
        let mut cached = cell.try_borrow_mut().ok();
        let raw: &mut Vec<u8> = match cached.as_deref_mut() {
            Some(buf) => buf,
            None => {
                owned = Vec::new();
                &mut owned
            }
        };
        // every byte up to `len` is overwritten by the decompressor
        raw.resize(len, 0);
        let result = decompress_and_decode(body, &mut raw[..len]);
        if raw.capacity() > REUSED_BUFFER_BYTES {
            *raw = Vec::new();
        }
        result
    })
}

fn decompress_and_decode(body: &[u8], raw: &mut [u8]) -> Result<DecodedRaw, IngestError> {
    let n = snap::raw::Decoder::new()
        .decompress(body, raw)
        .map_err(|e| IngestError::Malformed(format!("invalid snappy block body: {e}")))?;
    let decoded = wire::decode_write_request(&raw[..n]).map_err(|e| match e {
        wire::WireError::Utf8 { .. } => IngestError::Malformed(e.to_string()),
        wire::WireError::Malformed { .. } => {
            IngestError::Malformed(format!("invalid prometheus.WriteRequest protobuf: {e}"))
        }
    })?;
    Ok(DecodedRaw {
        batch: decoded.batch,
        histogram_samples: decoded.histogram_samples,
        first_histogram_series: decoded.first_histogram_series,
    })
}

/// Decompresses and decodes a remote-write body into an owned [`MetricBatch`]: the receiver's
/// decoding ([`decode_raw`]) plus the conversion every [`MetricsAppender::append`] caller
/// pays. Public so the benchmark can measure the decode path on its own.
pub fn decode(body: &[u8], limit: usize) -> Result<Decoded, IngestError> {
    let raw = decode_raw(body, limit)?;
    Ok(Decoded {
        batch: raw.batch.into_metric_batch(),
        histogram_samples: raw.histogram_samples,
        first_histogram_series: raw.first_histogram_series,
    })
}

/// Converts decoded messages to the signal model, moving every string and sample buffer
/// instead of copying it.
pub fn convert(request: proto::WriteRequest) -> Result<Decoded, IngestError> {
    let mut out = Decoded {
        batch: MetricBatch {
            series: Vec::with_capacity(request.timeseries.len()),
            metadata: Vec::new(),
        },
        ..Decoded::default()
    };
    for (index, ts) in request.timeseries.into_iter().enumerate() {
        if !ts.histograms.is_empty() {
            out.histogram_samples += ts.histograms.len() as u64;
            if out.first_histogram_series.is_none() {
                out.first_histogram_series = Some(describe_series(index, &ts.labels));
            }
        }
        if ts.samples.is_empty() {
            continue;
        }
        let labels = ts
            .labels
            .into_iter()
            .map(|l| utf8_label(index, l))
            .collect::<Result<Vec<_>, _>>()?;
        let samples = ts
            .samples
            .into_iter()
            .map(|s| Sample::new(s.timestamp, s.value))
            .collect();
        out.batch.series.push(Series {
            labels: store::Labels::new(labels),
            samples,
        });
    }
    out.batch.metadata = request
        .metadata
        .into_iter()
        .map(|m| MetricMetadata {
            metric_type: proto::MetricKind::to_store(m.r#type),
            metric_family: m.metric_family_name,
            help: m.help,
            unit: m.unit,
        })
        .collect();
    Ok(out)
}

fn utf8_label(series: usize, label: proto::Label) -> Result<store::Label, IngestError> {
    let name = String::from_utf8(label.name).map_err(|e| {
        IngestError::Malformed(format!(
            "timeseries[{series}]: label name {:?} is not valid UTF-8",
            String::from_utf8_lossy(e.as_bytes())
        ))
    })?;
    let value = String::from_utf8(label.value).map_err(|e| {
        IngestError::Malformed(format!(
            "timeseries[{series}]: value {:?} of label {name:?} is not valid UTF-8",
            String::from_utf8_lossy(e.as_bytes())
        ))
    })?;
    Ok(store::Label { name, value })
}

fn describe_series(index: usize, labels: &[proto::Label]) -> String {
    let pairs: Vec<String> = labels
        .iter()
        .map(|l| {
            format!(
                "{}={:?}",
                String::from_utf8_lossy(&l.name),
                String::from_utf8_lossy(&l.value)
            )
        })
        .collect();
    format!("timeseries[{index}] {{{}}}", pairs.join(", "))
}

#[cfg(test)]
mod tests;
