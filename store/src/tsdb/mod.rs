//! The metrics time-series database.
//!
//! PLACEHOLDER: an in-memory map with the final public API, so other crates build and test
//! against it while the real engine (WAL, head, chunks, index, blocks) is written.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::RwLock;

use crate::config::MetricsStoreOptions;
use crate::contract::{AppendReport, LabelMatcher, MetricsAppender, MetricsQuerier};
use crate::error::Result;
use crate::model::{Labels, MetricBatch, MetricMetadata, Series};

/// Size and shape of the store, for `/metrics` and status endpoints.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StoreStats {
    pub series: u64,
    pub head_samples: u64,
    pub blocks: u64,
    pub wal_bytes: u64,
    pub block_bytes: u64,
}

pub struct MetricsStore {
    #[allow(dead_code)]
    options: MetricsStoreOptions,
    series: RwLock<HashMap<Labels, Vec<crate::model::Sample>>>,
}

impl MetricsStore {
    /// Opens (creating if needed) the store and replays its WAL. Blocking: call from
    /// `spawn_blocking` or before the runtime starts serving.
    pub fn open(options: MetricsStoreOptions) -> Result<Arc<MetricsStore>> {
        Ok(Arc::new(MetricsStore { options, series: RwLock::new(HashMap::new()) }))
    }

    /// Persists the head to a block and deletes the WAL segments it covered.
    pub async fn flush(&self) -> Result<()> {
        Ok(())
    }

    /// Flushes and stops background work. Appends after `close` fail as unavailable.
    pub async fn close(&self) -> Result<()> {
        Ok(())
    }

    pub fn stats(&self) -> StoreStats {
        let s = self.series.read();
        StoreStats {
            series: s.len() as u64,
            head_samples: s.values().map(|v| v.len() as u64).sum(),
            ..Default::default()
        }
    }
}

#[async_trait]
impl MetricsAppender for MetricsStore {
    async fn append(&self, batch: MetricBatch) -> Result<AppendReport> {
        let mut report = AppendReport::default();
        let mut map = self.series.write();
        for s in batch.series {
            report.accepted_samples += s.samples.len() as u64;
            map.entry(s.labels).or_default().extend(s.samples);
        }
        Ok(report)
    }
}

impl MetricsQuerier for MetricsStore {
    fn select(&self, matchers: &[LabelMatcher], mint: i64, maxt: i64) -> Result<Vec<Series>> {
        let map = self.series.read();
        let mut out: Vec<Series> = map
            .iter()
            .filter(|(l, _)| matchers.iter().all(|m| m.matches_labels(l)))
            .map(|(l, s)| Series {
                labels: l.clone(),
                samples: s
                    .iter()
                    .filter(|x| x.timestamp_ms >= mint && x.timestamp_ms <= maxt)
                    .copied()
                    .collect(),
            })
            .filter(|s| !s.samples.is_empty())
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }

    fn series(&self, sets: &[Vec<LabelMatcher>], mint: i64, maxt: i64) -> Result<Vec<Labels>> {
        let mut out = Vec::new();
        if sets.is_empty() {
            out.extend(self.select(&[], mint, maxt)?.into_iter().map(|s| s.labels));
        }
        for set in sets {
            out.extend(self.select(set, mint, maxt)?.into_iter().map(|s| s.labels));
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    fn label_names(&self, sets: &[Vec<LabelMatcher>], mint: i64, maxt: i64) -> Result<Vec<String>> {
        let mut names: Vec<String> = self
            .series(sets, mint, maxt)?
            .iter()
            .flat_map(|l| l.iter().map(|x| x.name.clone()).collect::<Vec<_>>())
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn label_values(
        &self,
        name: &str,
        sets: &[Vec<LabelMatcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>> {
        let mut values: Vec<String> = self
            .series(sets, mint, maxt)?
            .iter()
            .filter_map(|l| l.get(name).map(str::to_string))
            .collect();
        values.sort();
        values.dedup();
        Ok(values)
    }

    fn metadata(&self) -> Result<Vec<MetricMetadata>> {
        Ok(Vec::new())
    }
}
