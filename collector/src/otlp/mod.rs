//! OTLP metrics ingest over gRPC and HTTP.
//!
//! Write path: [`grpc`] (tonic `MetricsService`) or [`http`] (`POST /v1/metrics`, protobuf or
//! JSON, optionally gzip) decode an `ExportMetricsServiceRequest` -> [`convert`] maps it to a
//! [`store::MetricBatch`] per the OpenTelemetry Prometheus-compatibility spec (names and units
//! in [`names`], delta-to-cumulative state in [`delta`]) -> [`store::MetricsAppender::append`]
//! -> the answer carries a partial success when the converter or the store refused anything.

pub mod convert;
pub mod delta;
pub mod names;
