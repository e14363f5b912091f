//! DingTalk custom robot notifier.

mod config;

pub use config::DingTalkConfig;
