//! Email notifier (SMTP via lettre).

mod config;

pub use config::EmailConfig;
