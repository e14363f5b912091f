//! Prometheus rule files and their evaluation.

pub mod manager;
