//! Prometheus scraping.
//!
//! * [`config`]: `scrape_configs` as in Prometheus's file (fixed shapes).
//! * [`target`]: static targets -> target labels (`relabel_configs`) and scrape URL; one
//!   scrape -> the batch appended (target labels merged per `honor_labels`,
//!   `metric_relabel_configs`, `up` and the other report series, stale markers).
//! * [`relabel`]: the relabel actions with Prometheus's semantics.
//! * [`parse`]: text exposition format 0.0.4.
//! * [`manager`]: [`ScrapeManager`], one task per target.
//! * [`validate`]: every problem of a set of `scrape_configs`, for `lookout check-config`.

pub mod config;
pub mod manager;
pub mod parse;
pub mod relabel;
pub mod target;

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

pub use config::{RelabelAction, RelabelConfig, ScrapeConfig, StaticConfig};
pub use manager::ScrapeManager;
pub use target::TargetHealth;

use store::Labels;

/// Settings from the config's `global` section that scraping uses.
#[derive(Clone, Debug, PartialEq)]
pub struct ScrapeGlobal {
    pub scrape_interval: Duration,
    /// Capped at a job's interval when the job sets no timeout, as in Prometheus.
    pub scrape_timeout: Duration,
    /// Largest accepted scrape response body.
    pub max_body_bytes: usize,
}

impl Default for ScrapeGlobal {
    fn default() -> Self {
        ScrapeGlobal {
            scrape_interval: Duration::from_secs(15),
            scrape_timeout: Duration::from_secs(10),
            max_body_bytes: 64 * 1024 * 1024,
        }
    }
}

/// One active target, for `/api/v1/targets`.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetStatus {
    pub job: String,
    /// Labels before relabelling, `__` ones included.
    pub discovered_labels: Labels,
    pub labels: Labels,
    pub scrape_url: String,
    pub scrape_interval: Duration,
    pub scrape_timeout: Duration,
    pub last_scrape: Option<SystemTime>,
    pub last_scrape_duration: Option<Duration>,
    pub last_error: Option<String>,
    pub health: TargetHealth,
}

/// Every problem in `configs`, each naming the job and what is wrong; empty when valid.
pub fn validate(configs: &[ScrapeConfig], global: &ScrapeGlobal) -> Vec<String> {
    let mut errors = Vec::new();
    let mut names = HashSet::new();
    for (i, cfg) in configs.iter().enumerate() {
        let prefix = format!("scrape_configs[{i}] (job {:?})", cfg.job_name);
        if cfg.job_name.is_empty() {
            errors.push(format!("{prefix}: job_name must not be empty"));
        } else if !names.insert(cfg.job_name.as_str()) {
            errors.push(format!("{prefix}: duplicate job_name {:?}", cfg.job_name));
        }
        let (interval, timeout) = target::interval_and_timeout(cfg, global);
        if interval.is_zero() {
            errors.push(format!("{prefix}: scrape_interval must be greater than 0"));
        }
        if timeout.is_zero() {
            errors.push(format!("{prefix}: scrape_timeout must be greater than 0"));
        }
        if timeout > interval {
            errors.push(format!(
                "{prefix}: scrape_timeout {} is greater than scrape_interval {}",
                store::duration::format_duration(timeout),
                store::duration::format_duration(interval)
            ));
        }
        if let Err(problems) = target::targets_for(cfg, global) {
            errors.extend(problems.into_iter().map(|p| format!("{prefix}: {p}")));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_reports_every_problem() {
        let yaml = r#"
- job_name: a
  scrape_interval: 10s
  scrape_timeout: 15s
  scheme: ftp
  static_configs: [ { targets: ["http://host:9100", "ok:9100", "bad port:x"] } ]
  relabel_configs:
    - { source_labels: [x], regex: "(" , target_label: y }
    - { source_labels: [x], action: replace }
- job_name: a
  static_configs: [ { targets: ["h:1"] } ]
"#;
        let configs: Vec<ScrapeConfig> = match serde_yaml::from_str(yaml) {
            Ok(c) => c,
            Err(e) => panic!("test config does not parse: {e}"),
        };
        let errors = validate(&configs, &ScrapeGlobal::default());
        let want = [
            "scrape_configs[0] (job \"a\"): scrape_timeout 15s is greater than scrape_interval 10s",
            "unknown scheme \"ftp\"",
            "target \"http://host:9100\": address must be host:port, without a scheme",
            "target \"bad port:x\"",
            "relabel_configs[0]: invalid regex \"(\"",
            "relabel_configs[1]: action replace requires target_label",
            "scrape_configs[1] (job \"a\"): duplicate job_name \"a\"",
        ];
        for w in want {
            assert!(
                errors.iter().any(|e| e.contains(w)),
                "missing {w:?} in {errors:#?}"
            );
        }
        assert_eq!(errors.len(), want.len(), "{errors:#?}");
    }

    #[test]
    fn valid_config_has_no_problems() {
        let configs: Vec<ScrapeConfig> = match serde_yaml::from_str(
            "- { job_name: node, static_configs: [ { targets: ['localhost:9100', '[::1]:9100', 'example.org'] } ] }",
        ) {
            Ok(c) => c,
            Err(e) => panic!("test config does not parse: {e}"),
        };
        assert_eq!(
            validate(&configs, &ScrapeGlobal::default()),
            Vec::<String>::new()
        );
    }
}
