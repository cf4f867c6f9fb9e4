//! A leader's bookkeeping for one partition, as pure functions of its inputs: follower progress,
//! the high watermark, the ISR changes to propose and which fetch positions count as progress.
//! No I/O, no clock reads: the caller passes `now_ms` and the log end offset, so every rule here
//! is unit-tested directly.

use std::collections::BTreeMap;

use crate::cluster::BrokerId;

/// What the leader knows of one follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerProgress {
    /// The follower's log end offset: the fetch offset of its last fetch (-1: never fetched in
    /// this leadership term).
    pub leo: i64,
    /// When the follower was last caught up with the leader's log end (-1: never).
    pub last_caught_up_ms: i64,
    /// The leader's log end offset when the previous fetch was served.
    last_fetch_leader_leo: i64,
    /// When the previous fetch was served.
    last_fetch_ms: i64,
}

impl FollowerProgress {
    fn new(caught_up_ms: i64) -> Self {
        FollowerProgress {
            leo: -1,
            last_caught_up_ms: caught_up_ms,
            last_fetch_leader_leo: -1,
            last_fetch_ms: -1,
        }
    }
}

/// One leadership term of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderState {
    /// The leader epoch of the term.
    pub epoch: i32,
    /// The log end offset when the term began (where the epoch starts in the epoch cache).
    pub epoch_start_offset: i64,
    /// Every assigned replica but the leader itself.
    pub followers: BTreeMap<BrokerId, FollowerProgress>,
}

impl LeaderState {
    /// A new term. Followers in the committed ISR count as caught up *now* (as in Kafka), so a
    /// new leader does not shrink the ISR before they had `replica.lag.time.max.ms` to fetch;
    /// the others have never been caught up.
    pub fn new(
        epoch: i32,
        epoch_start_offset: i64,
        me: BrokerId,
        replicas: &[BrokerId],
        isr: &[BrokerId],
        now_ms: i64,
    ) -> Self {
        let mut state = LeaderState {
            epoch,
            epoch_start_offset,
            followers: BTreeMap::new(),
        };
        state.sync_replicas(me, replicas, isr, now_ms);
        state
    }

    /// Follows a reassignment within the term: new replicas start unknown, removed ones are
    /// forgotten, progress of the others is kept.
    pub fn sync_replicas(
        &mut self,
        me: BrokerId,
        replicas: &[BrokerId],
        isr: &[BrokerId],
        now_ms: i64,
    ) {
        self.followers.retain(|id, _| replicas.contains(id));
        for &id in replicas.iter().filter(|&&id| id != me) {
            self.followers.entry(id).or_insert_with(|| {
                FollowerProgress::new(if isr.contains(&id) { now_ms } else { -1 })
            });
        }
    }

    /// A follower fetched at `fetch_offset` while the leader's log ended at `leader_leo`.
    ///
    /// Kafka's caught-up rule (`Replica.updateFetchStateOrThrow`): a fetch at the leader's log
    /// end makes the follower caught up now; a fetch at or past the leader's log end *as of the
    /// previous fetch* makes it caught up as of that previous fetch. So a follower that keeps up
    /// with a steady stream of appends stays in sync even though it never equals the log end.
    /// Returns false for a broker that is not a follower of this partition.
    pub fn record_fetch(
        &mut self,
        follower: BrokerId,
        fetch_offset: i64,
        leader_leo: i64,
        now_ms: i64,
    ) -> bool {
        let Some(p) = self.followers.get_mut(&follower) else {
            return false;
        };
        if fetch_offset >= leader_leo {
            p.last_caught_up_ms = now_ms;
        } else if p.last_fetch_leader_leo >= 0 && fetch_offset >= p.last_fetch_leader_leo {
            p.last_caught_up_ms = p.last_caught_up_ms.max(p.last_fetch_ms);
        }
        p.leo = fetch_offset;
        p.last_fetch_leader_leo = leader_leo;
        p.last_fetch_ms = now_ms;
        true
    }

    /// The high watermark the replicas allow: the smallest log end offset over `maximal_isr`
    /// (the committed ISR plus members of an expansion in flight, KIP-497), or `None` while the
    /// committed ISR is smaller than `min_isr` (KIP-966: the HW does not move at all then). A
    /// member that has not fetched in this term holds the HW at -1. The caller never moves the
    /// HW backwards.
    pub fn high_watermark(
        &self,
        me: BrokerId,
        leader_leo: i64,
        maximal_isr: &[BrokerId],
        committed_isr_len: usize,
        min_isr: i32,
    ) -> Option<i64> {
        if (committed_isr_len as i64) < i64::from(min_isr) {
            return None;
        }
        let hw = maximal_isr
            .iter()
            .map(|id| {
                if *id == me {
                    leader_leo
                } else {
                    self.followers.get(id).map_or(-1, |p| p.leo)
                }
            })
            .min()
            .unwrap_or(leader_leo);
        Some(hw)
    }

    /// The ISR to propose, if it should change. Shrink: a committed ISR member (never the
    /// leader) that has not been caught up for more than `lag_max_ms`. Expand: an assigned
    /// replica outside the ISR whose log end reached both the HW and the start of this epoch
    /// (so it holds everything committed, including what earlier terms committed). Both are
    /// decided in one proposal; the order follows `replicas`.
    #[allow(clippy::too_many_arguments)] // each input is one rule's operand
    pub fn isr_change(
        &self,
        me: BrokerId,
        replicas: &[BrokerId],
        committed_isr: &[BrokerId],
        high_watermark: i64,
        lag_max_ms: i64,
        now_ms: i64,
    ) -> Option<Vec<BrokerId>> {
        let in_sync = |id: BrokerId| -> bool {
            if id == me {
                return true;
            }
            let Some(p) = self.followers.get(&id) else {
                return false;
            };
            if committed_isr.contains(&id) {
                p.last_caught_up_ms >= 0 && now_ms - p.last_caught_up_ms <= lag_max_ms
            } else {
                p.leo >= 0 && p.leo >= high_watermark && p.leo >= self.epoch_start_offset
            }
        };
        let mut proposed: Vec<BrokerId> =
            replicas.iter().copied().filter(|&id| in_sync(id)).collect();
        // A member of the ISR that is no longer assigned stays until a reassignment removes it:
        // only the controller drops replicas.
        for &id in committed_isr {
            if !replicas.contains(&id) && !proposed.contains(&id) {
                proposed.push(id);
            }
        }
        if !proposed.contains(&me) {
            proposed.insert(0, me);
        }
        let mut a = proposed.clone();
        let mut b = committed_isr.to_vec();
        a.sort_unstable();
        b.sort_unstable();
        (a != b).then_some(proposed)
    }
}

/// The ISR the high watermark is computed over (KIP-497's "maximal ISR"): the committed ISR
/// plus every member of a proposal in flight. An expansion counts at once (conservative: one
/// more replica must have the data); a shrink counts only once committed.
pub fn maximal_isr(committed: &[BrokerId], in_flight: Option<&[BrokerId]>) -> Vec<BrokerId> {
    let mut out = committed.to_vec();
    for &id in in_flight.unwrap_or(&[]) {
        if !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

/// Where a follower truncates on a `diverging_epoch` reply (KIP-279, Kafka's
/// `AbstractFetcherThread.getOffsetTruncationState`). `leader` is the leader's (epoch, end
/// offset), `local` the follower's own end offset for that epoch (`end_offset_for_epoch`), `leo`
/// the follower's log end. If the follower does not know the leader's epoch it truncates to the
/// end of its largest smaller epoch and asks again on the next fetch; never to its HW.
pub fn truncation_offset(leader: (i32, i64), local: Option<(i32, i64)>, leo: i64) -> i64 {
    let (leader_epoch, leader_end) = leader;
    let target = match local {
        _ if leader_epoch < 0 => leader_end,
        None => leader_end,
        Some((epoch, end)) if epoch != leader_epoch => end,
        Some((_, end)) => end.min(leader_end),
    };
    target.clamp(0, leo.max(0))
}

/// How a leader judges a follower's fetch position (Kafka's `Partition.fetchRecords` with its
/// divergence check, KIP-320).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchPosition {
    /// Consistent with the leader's log: served from, and recorded as the follower's log end.
    Valid,
    /// The follower's log diverged from the leader's: the leader's (epoch, end offset) for the
    /// follower's last fetched epoch, to truncate by.
    Diverging {
        /// The largest leader epoch ≤ the follower's last fetched epoch.
        epoch: i32,
        /// Where that epoch ends in the leader's log.
        end_offset: i64,
    },
    /// The follower holds an epoch newer than every epoch the leader knows.
    UnknownEpoch,
    /// Outside the leader's `[log start, log end]`.
    OutOfRange,
}

/// Classifies a follower fetch at `fetch_offset` whose last fetched batch carried
/// `last_fetched_epoch` (-1: none). `end_for_epoch` is the leader's `end_offset_for_epoch`.
///
/// Only a [`FetchPosition::Valid`] offset says anything about the follower's log: the fetch
/// offset of a diverged follower counts records the leader does not have, so recording it as
/// progress would let that follower into the ISR and move the HW over offsets whose records
/// differ on the two replicas (Kafka updates the follower's fetch state only when no diverging
/// epoch was found).
pub fn fetch_position(
    last_fetched_epoch: i32,
    fetch_offset: i64,
    end_for_epoch: impl FnOnce(i32) -> Option<(i32, i64)>,
    log_start: i64,
    log_end: i64,
) -> FetchPosition {
    if last_fetched_epoch >= 0 {
        match end_for_epoch(last_fetched_epoch) {
            None => return FetchPosition::UnknownEpoch,
            Some((epoch, end_offset))
                if epoch != last_fetched_epoch || end_offset < fetch_offset =>
            {
                return FetchPosition::Diverging { epoch, end_offset };
            }
            Some(_) => {}
        }
    }
    if fetch_offset < log_start || fetch_offset > log_end {
        return FetchPosition::OutOfRange;
    }
    FetchPosition::Valid
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_positions() {
        // Leader epochs: 1 over [0, 5), 3 over [5, 8); log [2, 8).
        let ends = |e: i32| match e {
            0 => Some((0, 0)),
            1 | 2 => Some((1, 5)),
            3 => Some((3, 8)),
            _ => None,
        };
        let pos = |last: i32, offset: i64| fetch_position(last, offset, ends, 2, 8);
        assert_eq!(pos(-1, 4), FetchPosition::Valid);
        assert_eq!(pos(1, 5), FetchPosition::Valid);
        assert_eq!(pos(3, 8), FetchPosition::Valid);
        // Same epoch, but the follower has more of it than the leader.
        assert_eq!(
            pos(1, 7),
            FetchPosition::Diverging {
                epoch: 1,
                end_offset: 5
            }
        );
        // An epoch the leader never saw (the follower's own term): its largest smaller one.
        assert_eq!(
            pos(2, 5),
            FetchPosition::Diverging {
                epoch: 1,
                end_offset: 5
            }
        );
        assert_eq!(pos(4, 8), FetchPosition::UnknownEpoch);
        assert_eq!(pos(-1, 9), FetchPosition::OutOfRange);
        assert_eq!(pos(-1, 1), FetchPosition::OutOfRange);
    }

    #[test]
    fn caught_up_follows_kafkas_rule() {
        let mut s = LeaderState::new(1, 0, 1, &[1, 2, 3], &[1, 2], 1000);
        assert_eq!(s.followers[&2].last_caught_up_ms, 1000);
        assert_eq!(s.followers[&3].last_caught_up_ms, -1);
        // At the log end: caught up now.
        assert!(s.record_fetch(2, 10, 10, 2000));
        assert_eq!(s.followers[&2].last_caught_up_ms, 2000);
        // Behind the current end, but at the end as of the previous fetch: caught up then.
        assert!(s.record_fetch(2, 10, 15, 3000));
        assert_eq!(s.followers[&2].last_caught_up_ms, 2000);
        assert!(s.record_fetch(2, 15, 20, 4000));
        assert_eq!(s.followers[&2].last_caught_up_ms, 3000);
        // Behind both: no change.
        assert!(s.record_fetch(2, 16, 30, 5000));
        assert_eq!(s.followers[&2].last_caught_up_ms, 3000);
        assert_eq!(s.followers[&2].leo, 16);
        assert!(!s.record_fetch(9, 0, 0, 0), "not a follower");
    }

    #[test]
    fn high_watermark_is_min_over_maximal_isr_and_needs_min_isr() {
        let mut s = LeaderState::new(1, 0, 1, &[1, 2, 3], &[1, 2, 3], 0);
        s.record_fetch(2, 7, 10, 0);
        s.record_fetch(3, 4, 10, 0);
        assert_eq!(s.high_watermark(1, 10, &[1, 2, 3], 3, 2), Some(4));
        assert_eq!(s.high_watermark(1, 10, &[1, 2], 2, 2), Some(7));
        // KIP-966: below min.insync.replicas the HW does not move, whatever the LEOs.
        assert_eq!(s.high_watermark(1, 10, &[1], 1, 2), None);
        assert_eq!(s.high_watermark(1, 10, &[1], 1, 1), Some(10));
        // A member that never fetched holds it.
        let fresh = LeaderState::new(2, 10, 1, &[1, 2], &[1, 2], 0);
        assert_eq!(fresh.high_watermark(1, 10, &[1, 2], 2, 1), Some(-1));
    }

    #[test]
    fn maximal_isr_counts_expansions_not_shrinks() {
        assert_eq!(maximal_isr(&[1, 2, 3], Some(&[1, 2])), vec![1, 2, 3]);
        assert_eq!(maximal_isr(&[1, 2], Some(&[1, 2, 3])), vec![1, 2, 3]);
        assert_eq!(maximal_isr(&[1], None), vec![1]);
    }

    #[test]
    fn isr_shrinks_laggards_and_expands_caught_up_replicas() {
        let mut s = LeaderState::new(3, 5, 1, &[1, 2, 3], &[1, 2], 0);
        // Nothing to do yet: 2 counts as caught up at the start, 3 never fetched.
        assert_eq!(s.isr_change(1, &[1, 2, 3], &[1, 2], 5, 100, 50), None);
        // 2 lags past the bound: shrink.
        assert_eq!(
            s.isr_change(1, &[1, 2, 3], &[1, 2], 5, 100, 101),
            Some(vec![1])
        );
        // 3 catches up to the HW and the epoch start: expand.
        s.record_fetch(2, 8, 8, 100);
        s.record_fetch(3, 5, 8, 100);
        assert_eq!(
            s.isr_change(1, &[1, 2, 3], &[1, 2], 5, 100, 150),
            Some(vec![1, 2, 3])
        );
        // ... but not if its log ends before the start of this epoch.
        let mut t = LeaderState::new(3, 9, 1, &[1, 2, 3], &[1, 2], 0);
        t.record_fetch(2, 9, 9, 0);
        t.record_fetch(3, 8, 9, 0);
        assert_eq!(t.isr_change(1, &[1, 2, 3], &[1, 2], 5, 100, 10), None);
        // Unknown followers in the ISR are kept until lagging (and the leader always stays).
        assert_eq!(t.isr_change(1, &[1, 2, 3], &[2, 1], 5, 100, 10), None);
    }

    #[test]
    fn truncation_offset_follows_kip_279() {
        // Same epoch known on both: the smaller end.
        assert_eq!(truncation_offset((3, 20), Some((3, 25)), 30), 20);
        assert_eq!(truncation_offset((3, 20), Some((3, 15)), 30), 15);
        // The follower does not know epoch 3: the end of its largest smaller epoch (asks again).
        assert_eq!(truncation_offset((3, 20), Some((2, 12)), 30), 12);
        // No epoch info at all: the leader's end.
        assert_eq!(truncation_offset((3, 20), None, 30), 20);
        // Never past the own log end.
        assert_eq!(truncation_offset((3, 50), Some((3, 60)), 30), 30);
        assert_eq!(truncation_offset((-1, -1), None, 30), 0);
    }
}
