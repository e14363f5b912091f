//! What `lookout-bench rules` writes: per server, the evaluation rounds measured and their
//! medians; per group_wait, the end-to-end latency; the printed table.

use std::fmt::Write as _;

use serde::Serialize;

use super::latency::LatencyRun;
use crate::report::{median, Machine};

/// One complete evaluation round: every group evaluated again since the previous one.
#[derive(Clone, Debug, Serialize)]
pub struct Round {
    /// Seconds since the measurement started.
    pub at_secs: f64,
    /// Sum over groups of the server's last evaluation duration.
    pub total_secs: f64,
    /// The slowest group's last duration.
    pub max_group_secs: f64,
}

/// What a server answered about its rules at the end: whether it evaluated the same work.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RuleHealth {
    pub groups: usize,
    pub rules: usize,
    /// Rules whose last evaluation failed (`health` other than `ok`).
    pub unhealthy: usize,
    pub first_error: Option<String>,
    pub alerts_pending: usize,
    pub alerts_firing: usize,
    /// `"<alertname> <state>"` -> alerts.
    pub by_alert: std::collections::BTreeMap<String, usize>,
}

#[derive(Clone, Debug, Serialize)]
pub struct EvalRun {
    pub server: String,
    pub version: String,
    pub series: u64,
    pub rules: usize,
    pub groups: usize,
    pub interval_secs: u64,
    pub backfill_samples: u64,
    pub backfill_secs: f64,
    pub rounds: Vec<Round>,
    /// Median over rounds of the sum over groups of the last evaluation duration.
    pub median_total_secs: Option<f64>,
    pub median_max_group_secs: Option<f64>,
    /// Server CPU per round over the measurement (rule evaluation plus ingesting the live
    /// samples, the same for both servers: one sample per series per interval).
    pub cpu_secs_per_round: Option<f64>,
    /// CPU used by every other process on the machine per round over the same window (the
    /// harness's feeder included): how contended the cores were.
    pub other_cpu_secs_per_round: Option<f64>,
    pub health: RuleHealth,
    pub error: Option<String>,
}

impl EvalRun {
    pub fn summarize(&mut self) {
        let totals: Vec<f64> = self.rounds.iter().map(|r| r.total_secs).collect();
        let maxes: Vec<f64> = self.rounds.iter().map(|r| r.max_group_secs).collect();
        self.median_total_secs = median(&totals);
        self.median_max_group_secs = median(&maxes);
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct RulesResults {
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    pub machine: Machine,
    pub command: String,
    pub eval: Vec<EvalRun>,
    /// Lookout's median total over Prometheus's (lower is better).
    pub eval_ratio: Option<f64>,
    pub latency: Vec<LatencyRun>,
}

impl RulesResults {
    pub fn summarize(&mut self) {
        let median_of = |name: &str| {
            self.eval
                .iter()
                .find(|e| e.server == name)
                .and_then(|e| e.median_total_secs)
        };
        self.eval_ratio = match (median_of("lookout"), median_of("prometheus")) {
            (Some(l), Some(p)) if p > 0.0 => Some(l / p),
            _ => None,
        };
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let ms = |v: Option<f64>| v.map_or("-".to_string(), |s| format!("{:.1} ms", s * 1000.0));
        let _ = writeln!(
            out,
            "\nRule evaluation (sum over groups of the last evaluation duration, median of rounds)"
        );
        let _ = writeln!(
            out,
            "{:<12} {:>9} {:>6} {:>7} {:>12} {:>12} {:>12} {:>10} {:>9}",
            "server",
            "series",
            "rules",
            "rounds",
            "sum/round",
            "max group",
            "CPU/round",
            "unhealthy",
            "firing"
        );
        for e in &self.eval {
            let _ = writeln!(
                out,
                "{:<12} {:>9} {:>6} {:>7} {:>12} {:>12} {:>12} {:>12} {:>10} {:>9}{}",
                e.server,
                e.series,
                e.rules,
                e.rounds.len(),
                ms(e.median_total_secs),
                ms(e.median_max_group_secs),
                ms(e.cpu_secs_per_round),
                ms(e.other_cpu_secs_per_round),
                e.health.unhealthy,
                e.health.alerts_firing,
                e.error
                    .as_ref()
                    .map(|m| format!("  FAILED: {m}"))
                    .unwrap_or_default()
            );
        }
        if let Some(r) = self.eval_ratio {
            let _ = writeln!(out, "lookout / prometheus: {r:.3}");
        }
        if !self.latency.is_empty() {
            let _ = writeln!(
                out,
                "\nEnd-to-end latency, remote write -> robot (for 0s, interval 1s)"
            );
            let _ = writeln!(
                out,
                "{:>10} {:>7} {:>7} {:>9} {:>9} {:>9} {:>9} {:>10}",
                "group_wait", "trials", "missed", "p50", "p90", "max", "target", "p90 met"
            );
            for l in &self.latency {
                let _ = writeln!(
                    out,
                    "{:>8}ms {:>7} {:>7} {:>7.0}ms {:>7.0}ms {:>7.0}ms {:>7.0}ms {:>10}",
                    l.group_wait_ms,
                    l.trials,
                    l.missed,
                    l.latency.p50_ms,
                    l.latency.p90_ms,
                    l.latency.max_ms,
                    l.target_ms,
                    if l.p90_within_target { "yes" } else { "NO" }
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(server: &str, totals: &[f64]) -> EvalRun {
        let mut e = EvalRun {
            server: server.into(),
            version: String::new(),
            series: 104_000,
            rules: 1000,
            groups: 10,
            interval_secs: 15,
            backfill_samples: 0,
            backfill_secs: 0.0,
            rounds: totals
                .iter()
                .enumerate()
                .map(|(i, t)| Round {
                    at_secs: i as f64 * 15.0,
                    total_secs: *t,
                    max_group_secs: t / 10.0,
                })
                .collect(),
            median_total_secs: None,
            median_max_group_secs: None,
            cpu_secs_per_round: Some(1.0),
            other_cpu_secs_per_round: Some(0.1),
            health: RuleHealth::default(),
            error: None,
        };
        e.summarize();
        e
    }

    #[test]
    fn medians_and_ratio() {
        let mut r = RulesResults {
            started_at_ms: 0,
            finished_at_ms: 0,
            machine: Machine::probe(),
            command: "bench/run.sh rules".into(),
            eval: vec![
                run("prometheus", &[2.0, 4.0, 3.0]),
                run("lookout", &[1.0, 0.5, 9.0]),
            ],
            eval_ratio: None,
            latency: Vec::new(),
        };
        r.summarize();
        assert_eq!(r.eval[0].median_total_secs, Some(3.0));
        assert_eq!(r.eval[1].median_total_secs, Some(1.0));
        assert_eq!(r.eval_ratio, Some(1.0 / 3.0));
        let t = r.table();
        assert!(t.contains("3000.0 ms"), "{t}");
        assert!(t.contains("lookout / prometheus: 0.333"), "{t}");
    }

    #[test]
    fn no_ratio_without_both_servers() {
        let mut r = RulesResults {
            started_at_ms: 0,
            finished_at_ms: 0,
            machine: Machine::probe(),
            command: String::new(),
            eval: vec![run("prometheus", &[2.0])],
            eval_ratio: None,
            latency: Vec::new(),
        };
        r.summarize();
        assert_eq!(r.eval_ratio, None);
        assert!(!r.table().contains("lookout / prometheus"));
    }
}
