//! Lookout's collector: ingest protocols decoded into the store's signal model.
pub mod scrape;
