//! Test support for code that programs against the store contracts: [`MemQuerier`], the
//! [`MetricsQuerier`] contract over a plain map, so query code (the PromQL engine, the HTTP
//! API) can be tested without the TSDB.

use std::collections::BTreeMap;

use crate::contract::{LabelMatcher, MetricsQuerier};
use crate::error::Result;
use crate::model::{Labels, MetricMetadata, Sample, Series};

/// An in-memory querier. Samples must be in time order per series.
#[derive(Clone, Debug, Default)]
pub struct MemQuerier {
    pub series: BTreeMap<Labels, Vec<Sample>>,
    pub metadata: Vec<MetricMetadata>,
}

impl MemQuerier {
    /// Label sets matching any of `sets` (all when empty); time ranges are ignored, as
    /// Prometheus ignores them for its head.
    fn matching<'a>(
        &'a self,
        sets: &'a [Vec<LabelMatcher>],
    ) -> impl Iterator<Item = &'a Labels> + 'a {
        self.series.keys().filter(move |l| {
            sets.is_empty()
                || sets
                    .iter()
                    .any(|set| set.iter().all(|m| m.matches_labels(l)))
        })
    }
}

impl MetricsQuerier for MemQuerier {
    fn select(&self, matchers: &[LabelMatcher], mint: i64, maxt: i64) -> Result<Vec<Series>> {
        Ok(self
            .series
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
            .collect())
    }

    fn series(&self, sets: &[Vec<LabelMatcher>], _: i64, _: i64) -> Result<Vec<Labels>> {
        Ok(self.matching(sets).cloned().collect())
    }

    fn label_names(&self, sets: &[Vec<LabelMatcher>], _: i64, _: i64) -> Result<Vec<String>> {
        let mut names: Vec<String> = self
            .matching(sets)
            .flat_map(|l| l.iter().map(|x| x.name.clone()))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn label_values(
        &self,
        name: &str,
        sets: &[Vec<LabelMatcher>],
        _: i64,
        _: i64,
    ) -> Result<Vec<String>> {
        let mut values: Vec<String> = self
            .matching(sets)
            .filter_map(|l| l.get(name).map(str::to_string))
            .collect();
        values.sort();
        values.dedup();
        Ok(values)
    }

    fn metadata(&self) -> Result<Vec<MetricMetadata>> {
        Ok(self.metadata.clone())
    }
}
