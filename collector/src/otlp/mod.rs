//! OTLP ingest (being written).
