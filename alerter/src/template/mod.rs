//! Message templates (minijinja) with built-in Chinese and English defaults.

use serde::{Deserialize, Serialize};

/// The language of the built-in templates (`language: zh|en` in `alerting:` or per
/// receiver config).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Zh,
    #[default]
    En,
}
