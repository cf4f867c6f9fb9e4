//! The controller's Prometheus metrics, read from openraft's metrics watch at scrape time
//! ([`RaftCollector`]; `gregor server` adds it to its admin port's `/metrics`).
//!
//! Names: `kafka_controller_kafkacontroller_activecontrollercount` is Kafka's (1 on the active
//! controller, so the sum over the quorum is 1 when it has a leader); the Raft gauges mirror
//! KRaft's `raft-metrics` (current leader, epoch, log end) as `gregor_controller_*`. openraft
//! 0.9 does not publish the commit index, so the applied index (≤ committed, equal once the
//! state machine caught up) stands for it.

use openraft::{RaftMetrics, ServerState};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use tokio::sync::watch;

use crate::raft_types::NodeId;

/// openraft's metrics of this controller.
pub type ControllerMetrics = RaftMetrics<NodeId, openraft::BasicNode>;

/// Encodes the latest [`ControllerMetrics`] at every scrape.
#[derive(Debug)]
pub struct RaftCollector {
    metrics: watch::Receiver<ControllerMetrics>,
}

impl RaftCollector {
    /// A collector reading `metrics` (from `Raft::metrics()`).
    pub fn new(metrics: watch::Receiver<ControllerMetrics>) -> Self {
        Self { metrics }
    }
}

/// An optional index as a gauge value: -1 for none.
fn index(i: Option<u64>) -> i64 {
    i.map_or(-1, |i| i64::try_from(i).unwrap_or(i64::MAX))
}

/// The gauges of one metrics snapshot: (name, help, value).
pub fn gauges(m: &ControllerMetrics) -> [(&'static str, &'static str, i64); 6] {
    [
        (
            "kafka_controller_kafkacontroller_activecontrollercount",
            "1 if this controller is the quorum's leader (the active controller)",
            i64::from(m.state == ServerState::Leader),
        ),
        (
            "gregor_controller_leader",
            "The controller quorum's leader node id as this controller knows it (-1: none)",
            index(m.current_leader),
        ),
        (
            "gregor_controller_term",
            "The current Raft term (KRaft's epoch)",
            index(Some(m.current_term)),
        ),
        (
            "gregor_controller_last_log_index",
            "The index of the last entry in this controller's Raft log (-1: empty)",
            index(m.last_log_index),
        ),
        (
            "gregor_controller_applied_index",
            "The index of the last entry applied to the metadata image (-1: none); committed entries are applied at once",
            index(m.last_applied.map(|l| l.index)),
        ),
        (
            "gregor_controller_voters",
            "Voters in the quorum's membership",
            m.membership_config.membership().voter_ids().count() as i64,
        ),
    ]
}

impl Collector for RaftCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        // Copy out of the watch: no lock is held while encoding.
        let snapshot = gauges(&self.metrics.borrow());
        for (name, help, value) in snapshot {
            let family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(value).encode(family)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use openraft::{BasicNode, CommittedLeaderId, LogId, Membership, StoredMembership, Vote};
    use prometheus_client::registry::Registry;

    use super::*;

    #[test]
    fn leader_metrics_render_in_prometheus_text() {
        let voters: BTreeMap<NodeId, BasicNode> = (1..=3)
            .map(|id| (id, BasicNode::new(format!("n{id}:9093"))))
            .collect();
        let membership = Membership::new(vec![voters.keys().copied().collect()], voters.clone());
        let mut m = ControllerMetrics::new_initial(2);
        m.state = ServerState::Leader;
        m.current_leader = Some(2);
        m.current_term = 4;
        m.vote = Vote::new_committed(4, 2);
        m.last_log_index = Some(17);
        m.last_applied = Some(LogId::new(CommittedLeaderId::new(4, 2), 17));
        m.membership_config = Arc::new(StoredMembership::new(None, membership));
        let (_tx, rx) = watch::channel(m);
        let mut registry = Registry::default();
        registry.register_collector(Box::new(RaftCollector::new(rx)));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "# TYPE kafka_controller_kafkacontroller_activecontrollercount gauge",
            "kafka_controller_kafkacontroller_activecontrollercount 1",
            "gregor_controller_leader 2",
            "gregor_controller_term 4",
            "gregor_controller_last_log_index 17",
            "gregor_controller_applied_index 17",
            "gregor_controller_voters 3",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
        let follower = ControllerMetrics::new_initial(3);
        let g = gauges(&follower);
        assert_eq!(g[0].2, 0, "not the active controller");
        assert_eq!(g[1].2, -1, "no leader known");
        assert_eq!(g[4].2, -1, "nothing applied");
    }
}
