//! The query benchmark's record: the data set (with how it was loaded, kept next to the
//! servers' data as `dataset.json` so `--reuse-data` can query it again), the stores' state,
//! every case's timings, ratios and agreement, the printed table and the JSON results.

use serde::{Deserialize, Serialize};

use super::cases::CaseResult;
use super::load::LoadReport;
use super::state::StoreState;
use crate::fleet::FleetParams;
use crate::report::Machine;

/// The target: Lookout's p99 at most this fraction of Prometheus's.
pub const P99_TARGET: f64 = 0.5;

/// `dataset.json`: what was loaded into the data directories.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Dataset {
    pub params: FleetParams,
    pub series: u64,
    pub samples: u64,
    pub start_ms: i64,
    /// Exclusive end of the data (the last scrape is one interval before).
    pub end_ms: i64,
    pub created_at_ms: i64,
    /// Written only once both servers accepted every sample.
    pub complete: bool,
    /// Lookout binary and version that loaded the data.
    pub loaded_with: String,
    pub loads: Vec<serde_json::Value>,
    pub load_wall_secs: f64,
}

impl Dataset {
    pub fn new(params: &FleetParams, start_ms: i64, now_ms: i64, loaded_with: String) -> Self {
        Dataset {
            series: params.series() as u64,
            samples: params.total_samples(),
            start_ms,
            end_ms: start_ms + params.steps() as i64 * params.interval_ms,
            created_at_ms: now_ms,
            complete: false,
            loaded_with,
            loads: Vec::new(),
            load_wall_secs: 0.0,
            params: params.clone(),
        }
    }

    pub fn add_load(&mut self, r: &LoadReport) {
        self.loads
            .push(serde_json::to_value(r).unwrap_or(serde_json::Value::Null));
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct QueryResults {
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    pub machine: Machine,
    pub lookout_bin: String,
    pub lookout_version: String,
    pub prometheus_version: String,
    /// Whether this run loaded the data or reused data loaded earlier.
    pub reused_data: bool,
    pub dataset: Dataset,
    pub states: Vec<StoreState>,
    pub cases: Vec<CaseResult>,
    pub mismatched_cases: Vec<String>,
    pub failed_cases: Vec<String>,
    /// Cases whose p99 ratio is above [`P99_TARGET`].
    pub target_missed: Vec<String>,
}

impl QueryResults {
    pub fn summarize(&mut self) {
        let id = |c: &CaseResult| format!("{} {}", c.query, c.range);
        self.mismatched_cases = self
            .cases
            .iter()
            .filter(|c| c.agreement.as_ref().is_some_and(|a| !a.ok()))
            .map(id)
            .collect();
        self.failed_cases = self
            .cases
            .iter()
            .filter(|c| {
                c.lookout.error.is_some()
                    || c.prometheus.error.is_some()
                    || c.agreement_error.is_some()
            })
            .map(id)
            .collect();
        self.target_missed = self
            .cases
            .iter()
            .filter(|c| c.p99_ratio.is_none_or(|r| r > P99_TARGET))
            .map(id)
            .collect();
    }

    pub fn table(&self) -> String {
        let d = &self.dataset;
        let p = &d.params;
        let mut out = format!(
            "data: {} series ({} jobs x {} instances x {} series), {}s interval, {:.1}h, {} samples\n",
            d.series,
            p.jobs,
            p.instances_per_job,
            crate::fleet::SERIES_PER_TARGET,
            p.interval_ms / 1000,
            (d.end_ms - d.start_ms) as f64 / 3.6e6,
            d.samples
        );
        for s in &self.states {
            out.push_str(&format!("{}: {}\n", s.server, s.summary));
        }
        out.push_str(&format!(
            "\n{:<20} {:>5} {:>5} {:>5} {:>9} {:>9} {:>9} {:>9} {:>7} {:>7} {:>8} {:>8}  {}\n",
            "query",
            "range",
            "step",
            "runs",
            "L p50 ms",
            "L p99 ms",
            "P p50 ms",
            "P p99 ms",
            "p50 L/P",
            "p99 L/P",
            "L cpu ms",
            "P cpu ms",
            "answers"
        ));
        let ms = |v: Option<f64>| {
            v.map(|x| format!("{:.1}", x * 1000.0))
                .unwrap_or_else(|| "-".into())
        };
        let r2 = |v: Option<f64>| v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "-".into());
        for c in &self.cases {
            let answers = match (&c.agreement, &c.agreement_error) {
                (Some(a), _) if a.ok() => format!("same ({} series)", a.lookout_series),
                (Some(a), _) => format!(
                    "MISMATCH: {} differences ({} vs {} series)",
                    a.mismatches, a.lookout_series, a.prometheus_series
                ),
                (None, Some(e)) => format!("NOT COMPARED: {e}"),
                (None, None) => "-".into(),
            };
            out.push_str(&format!(
                "{:<20} {:>5} {:>5} {:>5} {:>9} {:>9} {:>9} {:>9} {:>7} {:>7} {:>8} {:>8}  {}\n",
                c.query,
                c.range,
                format!("{}s", c.step_secs),
                c.runs,
                ms(c.lookout.p50_secs),
                ms(c.lookout.p99_secs),
                ms(c.prometheus.p50_secs),
                ms(c.prometheus.p99_secs),
                r2(c.p50_ratio),
                r2(c.p99_ratio),
                ms(c.lookout.median_cpu_secs),
                ms(c.prometheus.median_cpu_secs),
                answers
            ));
            for (who, t) in [("lookout", &c.lookout), ("prometheus", &c.prometheus)] {
                if let Some(e) = &t.error {
                    out.push_str(&format!("    {who} failed: {e}\n"));
                }
            }
            if let Some(a) = c.agreement.as_ref().filter(|a| !a.ok()) {
                for e in &a.examples {
                    out.push_str(&format!("    {e}\n"));
                }
            }
        }
        out.push_str(&format!(
            "\np99 target (Lookout <= {P99_TARGET}x Prometheus): met in {} of {} cases\n",
            self.cases.len() - self.target_missed.len(),
            self.cases.len()
        ));
        if !self.target_missed.is_empty() {
            out.push_str(&format!("  missed: {}\n", self.target_missed.join("; ")));
        }
        if !self.mismatched_cases.is_empty() {
            out.push_str(&format!(
                "\n!!! ANSWERS DIFFER in {} case(s): {} !!!\n",
                self.mismatched_cases.len(),
                self.mismatched_cases.join("; ")
            ));
        }
        if !self.failed_cases.is_empty() {
            out.push_str(&format!(
                "\n!!! FAILED case(s): {} !!!\n",
                self.failed_cases.join("; ")
            ));
        }
        out
    }
}
