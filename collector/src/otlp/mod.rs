//! OTLP metrics ingest over gRPC and HTTP.
//!
//! Write path: [`grpc`] (tonic `MetricsService`) or [`http`] (`POST /v1/metrics`, protobuf or
//! JSON, optionally gzip) decode an `ExportMetricsServiceRequest` -> [`convert`] maps it to a
//! [`store::MetricBatch`] per the OpenTelemetry Prometheus-compatibility spec (names and units
//! in [`names`], delta-to-cumulative state in [`delta`]) -> [`store::MetricsAppender::append`]
//! -> the answer carries a partial success when the converter or the store refused anything.
//!
//! [`traces`] is OTLP trace ingest (`TraceService`, `/v1/traces`), sharing the wire helpers.

pub mod convert;
pub mod delta;
mod export;
pub mod grpc;
pub mod http;
mod json;
pub mod names;
pub mod status;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod test_support;
pub mod traces;

pub use export::{PROTOCOL_GRPC, PROTOCOL_HTTP};
pub use grpc::metrics_service;
pub use http::router;
