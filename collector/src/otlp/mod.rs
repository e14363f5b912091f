//! OTLP ingest over gRPC and HTTP: metrics here, [`traces`] and [`logs`] in their modules.
//!
//! One transport per protocol serves every signal: [`grpc::OtlpGrpcService`] and
//! [`http::export_router`] are generic over [`signal::OtlpSignal`], which each signal
//! implements (its message types, decoding and export).
//!
//! Metrics write path: [`grpc`] (`MetricsService`) or [`http`] (`POST /v1/metrics`, protobuf
//! or JSON, optionally gzip) hand the payload to [`export::MetricsExport`], which decodes an
//! `ExportMetricsServiceRequest` -> [`convert`] maps it to a [`store::MetricBatch`] per the
//! OpenTelemetry Prometheus-compatibility spec (names and units in [`names`],
//! delta-to-cumulative state in [`delta`]) -> [`store::MetricsAppender::append`] -> the answer
//! carries a partial success when the converter or the store refused anything.

pub mod convert;
pub mod delta;
pub mod export;
pub mod grpc;
pub mod http;
mod json;
mod json_common;
pub mod logs;
pub mod names;
pub mod signal;
pub mod status;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod test_support;
pub mod traces;

pub use export::{PROTOCOL_GRPC, PROTOCOL_HTTP};
pub use grpc::metrics_service;
pub use http::router;
