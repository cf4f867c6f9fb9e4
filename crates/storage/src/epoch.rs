//! The leader-epoch cache: which epoch started at which offset (KIP-101/279).

use crate::checkpoint::EpochEntry;

/// Ascending list of `(epoch, start_offset)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochCache {
    entries: Vec<EpochEntry>,
}

impl EpochCache {
    /// A cache holding `entries` (assumed ascending; checkpoint decoding checks that).
    pub fn new(entries: Vec<EpochEntry>) -> Self {
        EpochCache { entries }
    }

    /// All entries, ascending.
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// The latest epoch, if any.
    pub fn latest(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// Records that `epoch` starts at `start_offset`. Returns whether the cache changed. Lower or
    /// equal epochs and negative epochs (batches written without one) are ignored.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 || self.latest().is_some_and(|l| epoch <= l) {
            return false;
        }
        // A new epoch can never start before an older one ends.
        self.entries.retain(|e| e.start_offset < start_offset);
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        true
    }

    /// Drops entries starting at or after `end_offset` (log truncated to `end_offset`).
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.start_offset < end_offset);
        before != self.entries.len()
    }

    /// Log start moved to `start_offset`: drop entries wholly below it and clamp the one that
    /// spans it.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let keep_from = self
            .entries
            .partition_point(|e| e.start_offset <= start_offset)
            .saturating_sub(1);
        let mut changed = keep_from > 0;
        self.entries.drain(..keep_from);
        if let Some(first) = self.entries.first_mut()
            && first.start_offset < start_offset
        {
            first.start_offset = start_offset;
            changed = true;
        }
        changed
    }

    /// Kafka's `LeaderEpochFileCache.endOffsetFor`: the largest epoch `<= requested` and the
    /// offset where the next epoch starts (or the log end offset for the latest epoch).
    pub fn end_offset_for(&self, requested: i32, log_end_offset: i64) -> Option<(i32, i64)> {
        if requested < 0 {
            return None;
        }
        if self.latest() == Some(requested) {
            return Some((requested, log_end_offset));
        }
        let higher = self.entries.iter().find(|e| e.epoch > requested)?;
        let floor = self.entries.iter().rev().find(|e| e.epoch <= requested);
        Some((floor.map_or(requested, |f| f.epoch), higher.start_offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> EpochCache {
        EpochCache::new(
            entries
                .iter()
                .map(|&(epoch, start_offset)| EpochEntry {
                    epoch,
                    start_offset,
                })
                .collect(),
        )
    }

    fn pairs(c: &EpochCache) -> Vec<(i32, i64)> {
        c.entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect()
    }

    #[test]
    fn assign_only_accepts_rising_epochs() {
        let mut c = EpochCache::default();
        assert!(c.assign(2, 0));
        assert!(!c.assign(2, 5));
        assert!(!c.assign(1, 5));
        assert!(!c.assign(-1, 5));
        assert!(c.assign(4, 10));
        assert_eq!(pairs(&c), vec![(2, 0), (4, 10)]);
        // A new epoch starting at an offset an older one claims replaces it.
        assert!(c.assign(5, 10));
        assert_eq!(pairs(&c), vec![(2, 0), (5, 10)]);
    }

    #[test]
    fn truncation_from_both_ends() {
        let mut c = cache(&[(1, 0), (3, 10), (5, 20)]);
        assert!(c.truncate_from_start(12));
        assert_eq!(pairs(&c), vec![(3, 12), (5, 20)]);
        assert!(!c.truncate_from_start(12));
        assert!(c.truncate_from_start(20));
        assert_eq!(pairs(&c), vec![(5, 20)]);
        let mut c = cache(&[(1, 0), (3, 10), (5, 20)]);
        assert!(c.truncate_from_end(20));
        assert_eq!(pairs(&c), vec![(1, 0), (3, 10)]);
        assert!(c.truncate_from_end(5));
        assert_eq!(pairs(&c), vec![(1, 0)]);
        assert!(!c.truncate_from_end(5));
    }

    #[test]
    fn end_offset_for_matches_kafka() {
        let c = cache(&[(1, 0), (3, 10), (5, 20)]);
        assert_eq!(c.end_offset_for(5, 30), Some((5, 30)));
        assert_eq!(c.end_offset_for(4, 30), Some((3, 20)));
        assert_eq!(c.end_offset_for(3, 30), Some((3, 20)));
        assert_eq!(c.end_offset_for(2, 30), Some((1, 10)));
        assert_eq!(c.end_offset_for(0, 30), Some((0, 0)));
        assert_eq!(c.end_offset_for(6, 30), None);
        assert_eq!(EpochCache::default().end_offset_for(0, 0), None);
    }
}
