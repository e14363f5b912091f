//! `scrape_configs` as in Prometheus's configuration file (the subset Lookout supports).
//! Unknown keys are errors, so a typo never silently changes behaviour.

use serde::{Deserialize, Serialize};
use store::duration::PromDuration;

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScrapeConfig {
    pub job_name: String,
    /// Defaults to `global.scrape_interval`.
    #[serde(default)]
    pub scrape_interval: Option<PromDuration>,
    /// Defaults to `global.scrape_timeout` (10s), and must not exceed the interval.
    #[serde(default)]
    pub scrape_timeout: Option<PromDuration>,
    #[serde(default = "default_metrics_path")]
    pub metrics_path: String,
    #[serde(default = "default_scheme")]
    pub scheme: String,
    #[serde(default)]
    pub honor_labels: bool,
    #[serde(default)]
    pub honor_timestamps: Option<bool>,
    #[serde(default)]
    pub params: std::collections::BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub static_configs: Vec<StaticConfig>,
    #[serde(default)]
    pub relabel_configs: Vec<RelabelConfig>,
    #[serde(default)]
    pub metric_relabel_configs: Vec<RelabelConfig>,
}

fn default_metrics_path() -> String {
    "/metrics".into()
}

fn default_scheme() -> String {
    "http".into()
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StaticConfig {
    pub targets: Vec<String>,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RelabelAction {
    #[default]
    Replace,
    Keep,
    Drop,
    Labeldrop,
    Labelkeep,
    Labelmap,
    Hashmod,
    Lowercase,
    Uppercase,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RelabelConfig {
    #[serde(default)]
    pub source_labels: Vec<String>,
    #[serde(default = "default_separator")]
    pub separator: String,
    #[serde(default)]
    pub target_label: Option<String>,
    #[serde(default = "default_regex")]
    pub regex: String,
    #[serde(default)]
    pub modulus: Option<u64>,
    #[serde(default = "default_replacement")]
    pub replacement: String,
    #[serde(default)]
    pub action: RelabelAction,
}

fn default_separator() -> String {
    ";".into()
}

fn default_regex() -> String {
    "(.*)".into()
}

fn default_replacement() -> String {
    "$1".into()
}
