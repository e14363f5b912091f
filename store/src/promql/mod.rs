//! PromQL evaluation over a [`crate::MetricsQuerier`] (being written).
