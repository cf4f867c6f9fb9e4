//! The per-partition gauges and the broker-wide replica totals, computed at scrape time.
//!
//! [`PartitionCollector::encode`] takes a [`BrokerSample`] (each local partition's replica
//! state and log offsets, read under their own locks, one partition at a time) and encodes it;
//! nothing is cached between scrapes. Leader-only gauges follow Kafka: a follower reports 0 for
//! `underreplicated`, `underminisr` and `insyncreplicascount`, so a sum over all brokers counts
//! every partition once.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::broker::Broker;
use crate::cluster::BrokerId;
use crate::replica::Role;

/// One local replica as a scrape sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionSample {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// The current leader (`None`: offline).
    pub leader: Option<BrokerId>,
    /// Whether this broker leads it.
    pub is_leader: bool,
    /// Assigned replicas.
    pub replicas: usize,
    /// The committed ISR's size, as this broker knows it.
    pub isr: usize,
    /// The topic's `min.insync.replicas`.
    pub min_isr: i32,
    /// Log start offset.
    pub log_start: i64,
    /// High watermark (on a follower: the leader's HW as last fetched).
    pub high_watermark: i64,
    /// Log end offset.
    pub log_end: i64,
}

impl PartitionSample {
    /// Kafka's `UnderReplicated`: a leader whose ISR is smaller than its replica set.
    pub fn under_replicated(&self) -> bool {
        self.is_leader && self.isr < self.replicas
    }

    /// Kafka's `UnderMinIsr`: a leader whose ISR is below the effective
    /// `min.insync.replicas` (capped at the replication factor), so acks=all produce fails.
    pub fn under_min_isr(&self) -> bool {
        let replicas = i32::try_from(self.replicas).unwrap_or(i32::MAX);
        let isr = i32::try_from(self.isr).unwrap_or(i32::MAX);
        self.is_leader && isr < self.min_isr.min(replicas)
    }
}

/// Everything one scrape reports about a broker's replicas.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerSample {
    /// Every local partition, by topic then partition.
    pub partitions: Vec<PartitionSample>,
    /// Fetched batches followers refused to append.
    pub rejected_fetches: u64,
    /// Divergence truncations followers performed.
    pub truncations: u64,
    /// ISR changes this broker's leaderships had committed.
    pub isr_changes: u64,
}

impl BrokerSample {
    /// Reads `broker`'s live state: each partition's replica state, then its log, never both
    /// locks at once.
    pub fn read(broker: &Broker) -> Self {
        let mut partitions = Vec::new();
        for topic in broker.topics() {
            let min_isr = broker.min_insync_replicas(&topic);
            for p in &topic.partitions {
                let (leader, is_leader, replicas, isr) = {
                    let st = p.replica.lock();
                    let a = st.assignment();
                    (
                        a.leader,
                        st.role() == Role::Leader,
                        a.replicas.len(),
                        a.isr.len(),
                    )
                };
                let (log_start, high_watermark, log_end) = {
                    let log = p.log.read();
                    (
                        log.log_start_offset(),
                        log.high_watermark(),
                        log.log_end_offset(),
                    )
                };
                partitions.push(PartitionSample {
                    topic: topic.name.clone(),
                    partition: p.tp.partition,
                    leader,
                    is_leader,
                    replicas,
                    isr,
                    min_isr,
                    log_start,
                    high_watermark,
                    log_end,
                });
            }
        }
        let stats = broker.replica_stats();
        BrokerSample {
            partitions,
            rejected_fetches: stats.rejected_fetches.load(Ordering::Relaxed),
            truncations: stats.truncations.load(Ordering::Relaxed),
            isr_changes: stats.isr_changes.load(Ordering::Relaxed),
        }
    }

    /// Encodes the sample: one family per gauge, one series per partition, then the totals.
    pub fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        type Value = fn(&PartitionSample) -> i64;
        let per_partition: [(&str, &str, Value); 10] = [
            (
                "gregor_partition_leader",
                "The partition's leader broker id (-1: no leader), as this replica knows it",
                |p| p.leader.map_or(-1, i64::from),
            ),
            (
                "gregor_partition_is_leader",
                "1 if this broker leads the partition",
                |p| i64::from(p.is_leader),
            ),
            (
                "kafka_cluster_partition_replicascount",
                "Assigned replicas (leader only, as Kafka; 0 on followers)",
                |p| if p.is_leader { p.replicas as i64 } else { 0 },
            ),
            (
                "kafka_cluster_partition_insyncreplicascount",
                "In-sync replicas (leader only, as Kafka; 0 on followers)",
                |p| if p.is_leader { p.isr as i64 } else { 0 },
            ),
            (
                "kafka_cluster_partition_underreplicated",
                "1 if this broker leads the partition and its ISR is smaller than its replica set",
                |p| i64::from(p.under_replicated()),
            ),
            (
                "kafka_cluster_partition_underminisr",
                "1 if this broker leads the partition and its ISR is below min.insync.replicas",
                |p| i64::from(p.under_min_isr()),
            ),
            (
                "kafka_log_log_logstartoffset",
                "The first offset in the local log",
                |p| p.log_start,
            ),
            (
                "kafka_log_log_logendoffset",
                "The local log end offset (LEO)",
                |p| p.log_end,
            ),
            (
                "gregor_partition_high_watermark",
                "The high watermark (HW): offsets below it are committed and visible to consumers",
                |p| p.high_watermark,
            ),
            (
                "gregor_partition_high_watermark_lag",
                "LEO minus HW: records appended locally that are not committed yet",
                |p| (p.log_end - p.high_watermark).max(0),
            ),
        ];
        for (name, help, value) in per_partition {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for p in &self.partitions {
                let labels = ([("topic", p.topic.as_str())], [("partition", p.partition)]);
                ConstGauge::new(value(p)).encode(family.encode_family(&labels)?)?;
            }
        }
        let count = |f: fn(&PartitionSample) -> bool| {
            self.partitions.iter().filter(|p| f(p)).count() as i64
        };
        let totals: [(&str, &str, i64); 4] = [
            (
                "kafka_server_replicamanager_partitioncount",
                "Partitions this broker holds a replica of",
                self.partitions.len() as i64,
            ),
            (
                "kafka_server_replicamanager_leadercount",
                "Partitions this broker leads",
                count(|p| p.is_leader),
            ),
            (
                "kafka_server_replicamanager_underreplicatedpartitions",
                "Partitions this broker leads whose ISR is smaller than their replica set",
                count(PartitionSample::under_replicated),
            ),
            (
                "kafka_server_replicamanager_underminisrpartitioncount",
                "Partitions this broker leads whose ISR is below min.insync.replicas",
                count(PartitionSample::under_min_isr),
            ),
        ];
        for (name, help, value) in totals {
            let family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(value).encode(family)?;
        }
        let counters: [(&str, &str, u64); 3] = [
            (
                "gregor_replica_isr_changes",
                "ISR changes committed for partitions this broker leads",
                self.isr_changes,
            ),
            (
                "gregor_replica_truncations",
                "Log truncations this broker performed as a follower (diverging epochs)",
                self.truncations,
            ),
            (
                "gregor_replica_rejected_fetches",
                "Fetched batches this broker refused to append as a follower (bad CRC, gaps)",
                self.rejected_fetches,
            ),
        ];
        for (name, help, value) in counters {
            let family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(value).encode(family)?;
        }
        Ok(())
    }
}

/// Reads a broker's replicas at every scrape ([`BrokerSample::read`]).
#[derive(Debug)]
pub struct PartitionCollector {
    broker: Arc<Broker>,
}

impl PartitionCollector {
    /// A collector of `broker`'s partitions.
    pub fn new(broker: Arc<Broker>) -> Self {
        Self { broker }
    }
}

impl Collector for PartitionCollector {
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        BrokerSample::read(&self.broker).encode(encoder)
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::registry::Registry;

    use super::*;

    /// A fixed sample, to test the rendering alone.
    #[derive(Debug)]
    struct Fixed(BrokerSample);

    impl Collector for Fixed {
        fn encode(&self, encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
            self.0.encode(encoder)
        }
    }

    fn sample(partition: i32, leader: Option<i32>, is_leader: bool, isr: usize) -> PartitionSample {
        PartitionSample {
            topic: "orders".into(),
            partition,
            leader,
            is_leader,
            replicas: 3,
            isr,
            min_isr: 2,
            log_start: 0,
            high_watermark: 40,
            log_end: 42,
        }
    }

    #[test]
    fn partition_gauges_render_in_prometheus_text() {
        let fixed = Fixed(BrokerSample {
            partitions: vec![
                sample(0, Some(1), true, 1),
                sample(1, Some(2), false, 3),
                sample(2, None, false, 0),
            ],
            rejected_fetches: 0,
            truncations: 2,
            isr_changes: 5,
        });
        let mut registry = Registry::default();
        registry.register_collector(Box::new(fixed));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "# TYPE kafka_cluster_partition_underreplicated gauge",
            r#"kafka_cluster_partition_underreplicated{topic="orders",partition="0"} 1"#,
            r#"kafka_cluster_partition_underreplicated{topic="orders",partition="1"} 0"#,
            r#"kafka_cluster_partition_underminisr{topic="orders",partition="0"} 1"#,
            r#"kafka_cluster_partition_insyncreplicascount{topic="orders",partition="0"} 1"#,
            r#"kafka_cluster_partition_insyncreplicascount{topic="orders",partition="1"} 0"#,
            r#"gregor_partition_leader{topic="orders",partition="1"} 2"#,
            r#"gregor_partition_leader{topic="orders",partition="2"} -1"#,
            r#"gregor_partition_is_leader{topic="orders",partition="0"} 1"#,
            r#"kafka_log_log_logendoffset{topic="orders",partition="0"} 42"#,
            r#"gregor_partition_high_watermark{topic="orders",partition="0"} 40"#,
            r#"gregor_partition_high_watermark_lag{topic="orders",partition="0"} 2"#,
            "kafka_server_replicamanager_partitioncount 3",
            "kafka_server_replicamanager_leadercount 1",
            "kafka_server_replicamanager_underreplicatedpartitions 1",
            "kafka_server_replicamanager_underminisrpartitioncount 1",
            "# TYPE gregor_replica_isr_changes counter",
            "gregor_replica_isr_changes_total 5",
            "gregor_replica_truncations_total 2",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
    }

    #[test]
    fn under_min_isr_uses_the_effective_minimum() {
        let mut p = sample(0, Some(1), true, 1);
        p.replicas = 1;
        assert!(!p.under_replicated());
        assert!(!p.under_min_isr(), "min.insync.replicas 2 capped at RF 1");
        p.replicas = 3;
        assert!(p.under_min_isr());
        p.is_leader = false;
        assert!(!p.under_replicated() && !p.under_min_isr(), "leader only");
    }
}
