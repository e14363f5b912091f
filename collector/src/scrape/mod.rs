//! Prometheus scraping (being written).
pub mod config;
pub use config::{RelabelAction, RelabelConfig, ScrapeConfig, StaticConfig};
