//! Generic webhook notifier with Alertmanager's webhook JSON.

mod config;

pub use config::WebhookConfig;
