//! The merge policy of a partition being written.
//!
//! Tantivy's default (`LogMergePolicy`: merge 8 segments of about the same size, levels
//! 1.7x apart, up to 10M documents) keeps re-merging a growing hourly partition: a record
//! is rewritten once per level it climbs, and a level's merge rebuilds the term dictionary
//! of every segment in it. Log lines are mostly unique identifiers, so building term
//! dictionaries (FSTs) is the bulk of a merge's cost, and under a steady load merges took
//! more CPU than indexing itself.
//!
//! This policy bounds what a record costs:
//! * *small* segments (those a commit cut short, under a light load or from commits forced
//!   by WAL truncation) are merged by the log policy among themselves, so a trickle of
//!   records committed every second does not leave thousands of tiny segments;
//! * *large* segments (the size a writer flushes when its memory budget is full, or small
//!   ones merged together) are left alone until a partition holds more than
//!   `max_large_segments` of them; then the `fan_in` smallest are merged into one. A record
//!   is therefore rewritten at most once on the small side and, for partitions that outgrow
//!   the cap, about `log_fan_in(segments / cap)` times on the large side;
//! * a partition whose time is over is merged into one segment once it is cold (the
//!   indexer's final merge), when it has more than a few segments.
//!
//! Searches read every segment of a partition: the cap keeps a hot partition at a few dozen
//! segments, where a term lookup costs well under a millisecond per partition.

use tantivy::index::SegmentMeta;
use tantivy::indexer::{LogMergePolicy, MergeCandidate, MergePolicy};

/// Segments with fewer documents than this are small.
pub(super) const SMALL_SEGMENT_DOCS: u32 = 100_000;
/// Large segments a partition keeps before the smallest are merged.
pub(super) const MAX_LARGE_SEGMENTS: usize = 24;
/// Large segments merged at once when there are too many.
pub(super) const LARGE_FAN_IN: usize = 8;

#[derive(Debug)]
pub(super) struct PartitionMergePolicy {
    small: LogMergePolicy,
    small_docs: u32,
    max_large_segments: usize,
    fan_in: usize,
}

impl PartitionMergePolicy {
    pub fn new(small_docs: u32, max_large_segments: usize, fan_in: usize) -> Self {
        let mut small = LogMergePolicy::default();
        // segments at or above the small size are never the log policy's
        small.set_max_docs_before_merge(small_docs.saturating_sub(1) as usize);
        PartitionMergePolicy {
            small,
            small_docs,
            max_large_segments: max_large_segments.max(1),
            fan_in: fan_in.max(2),
        }
    }
}

impl Default for PartitionMergePolicy {
    fn default() -> Self {
        PartitionMergePolicy::new(SMALL_SEGMENT_DOCS, MAX_LARGE_SEGMENTS, LARGE_FAN_IN)
    }
}

impl MergePolicy for PartitionMergePolicy {
    fn compute_merge_candidates(&self, segments: &[SegmentMeta]) -> Vec<MergeCandidate> {
        let mut out = self.small.compute_merge_candidates(segments);
        let mut large: Vec<&SegmentMeta> = segments
            .iter()
            .filter(|s| s.num_docs() >= self.small_docs)
            .collect();
        if large.len() > self.max_large_segments {
            large.sort_by_key(|s| s.num_docs());
            let n = self.fan_in.min(large.len());
            out.push(MergeCandidate(large[..n].iter().map(|s| s.id()).collect()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tantivy::index::SegmentId;
    use tantivy::schema::Schema;
    use tantivy::Index;

    fn index() -> Index {
        Index::create_in_ram(Schema::builder().build())
    }

    fn segments(index: &Index, sizes: &[u32]) -> Vec<SegmentMeta> {
        sizes
            .iter()
            .map(|n| index.new_segment_meta(SegmentId::generate_random(), *n))
            .collect()
    }

    fn merged_sizes(metas: &[SegmentMeta], c: &MergeCandidate) -> Vec<u32> {
        let mut v: Vec<u32> =
            c.0.iter()
                .filter_map(|id| metas.iter().find(|m| m.id() == *id))
                .map(|m| m.num_docs())
                .collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn large_segments_under_the_cap_are_left_alone() {
        let inv = index();
        let metas = segments(&inv, &[200_000; 24]);
        let policy = PartitionMergePolicy::new(100_000, 24, 8);
        assert!(policy.compute_merge_candidates(&metas).is_empty());
    }

    #[test]
    fn over_the_cap_the_smallest_large_segments_merge() {
        let inv = index();
        let mut sizes = vec![1_600_000; 5];
        sizes.extend([
            200_000, 150_000, 300_000, 120_000, 110_000, 130_000, 140_000,
        ]);
        sizes.extend([250_000; 5]);
        // 17 large segments, cap 16
        let metas = segments(&inv, &sizes);
        let policy = PartitionMergePolicy::new(100_000, 16, 4);
        let c = policy.compute_merge_candidates(&metas);
        assert_eq!(c.len(), 1);
        assert_eq!(
            merged_sizes(&metas, &c[0]),
            vec![110_000, 120_000, 130_000, 140_000]
        );
    }

    #[test]
    fn small_segments_merge_among_themselves() {
        let inv = index();
        let mut sizes = vec![500; 8];
        sizes.extend([400_000; 3]);
        let metas = segments(&inv, &sizes);
        let policy = PartitionMergePolicy::new(100_000, 24, 8);
        let c = policy.compute_merge_candidates(&metas);
        assert_eq!(c.len(), 1);
        assert_eq!(merged_sizes(&metas, &c[0]), vec![500; 8]);
    }

    #[test]
    fn a_few_small_segments_wait() {
        let inv = index();
        let metas = segments(&inv, &[500, 700, 900, 50_000]);
        let policy = PartitionMergePolicy::default();
        assert!(policy.compute_merge_candidates(&metas).is_empty());
    }
}
