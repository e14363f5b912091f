//! WeCom (企业微信) group robot notifier.

mod config;

pub use config::{WeComConfig, WeComMsgType};
