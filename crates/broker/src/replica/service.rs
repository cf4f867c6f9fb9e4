//! The leader side of the `Replication` gRPC service (proto/replication.proto).
//!
//! `Fetch`: the caller's cluster id must match (else FAILED_PRECONDITION for the whole call).
//! Per partition: the caller must be an assigned replica and this node the leader (else 6),
//! the caller's leader epoch must be ours (74 older / 75 newer). Then divergence (KIP-320's
//! DivergingEpoch): `(epoch, end) = end_offset_for_epoch(last_fetched_epoch)`; if the epoch
//! differs or `end < fetch_offset` the reply carries `diverging_epoch` and no records. Only a
//! fetch offset that is neither diverged nor out of range is recorded as the caller's progress
//! (which may advance the HW and so complete acks=all produces).
//! Otherwise whole batches from `fetch_offset` up to the log end (followers read past the HW).
//! When no partition has anything to say, the call waits (up to `max_wait_ms`) on the
//! partitions' log-end and HW watches; shutdown ends the wait.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use gregor_proto::replication::v1::replication_server::Replication;
use gregor_proto::replication::v1::{
    DescribeReplicasReply, DescribeReplicasRequest, EpochEndOffset, LeaderPartitionStatus,
    PartitionData, PartitionFetch, ReplicaFetchReply, ReplicaFetchRequest, ReplicaProgress,
};
use kafka_protocol::ResponseError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::broker::{Broker, Partition, now_ms};
use crate::cluster::BrokerId;
use crate::error::{self, BrokerError, Result, to_status};
use crate::replica::leader::{FetchPosition, fetch_position};

/// The `Replication` service of one broker.
#[derive(Debug, Clone)]
pub struct ReplicationService {
    broker: Arc<Broker>,
    shutdown: CancellationToken,
}

impl ReplicationService {
    /// The service for `broker`; long polls end when `shutdown` is cancelled.
    pub fn new(broker: Arc<Broker>, shutdown: CancellationToken) -> Self {
        ReplicationService { broker, shutdown }
    }

    fn check_cluster(&self, theirs: &str) -> Result<()> {
        let ours = self.broker.cluster_id();
        if ours != theirs {
            return Err(BrokerError::ClusterIdMismatch {
                ours,
                theirs: theirs.to_string(),
            });
        }
        Ok(())
    }
}

/// One requested partition.
struct Slot {
    fetch: PartitionFetch,
    partition: Option<Arc<Partition>>,
    /// A failure found while validating the request (unknown partition, fencing, not leader).
    error: Option<i16>,
    /// The HW at the first read: a change is worth answering early for.
    first_hw: Option<i64>,
}

fn error_data(fetch: &PartitionFetch, code: i16) -> PartitionData {
    PartitionData {
        topic: fetch.topic.clone(),
        partition: fetch.partition,
        error_code: i32::from(code),
        high_watermark: -1,
        log_start_offset: -1,
        log_end_offset: -1,
        diverging_epoch: None,
        records: Bytes::new(),
    }
}

/// Reads one partition for a follower. `Ok((data, worth_answering))`.
fn read_partition(
    broker: &Broker,
    replica: BrokerId,
    slot: &mut Slot,
    budget: usize,
    first: bool,
) -> Result<(PartitionData, bool)> {
    let Some(p) = slot.partition.as_ref() else {
        return Err(BrokerError::UnknownTopicOrPartition {
            topic: slot.fetch.topic.clone(),
            partition: slot.fetch.partition,
        });
    };
    let f = &slot.fetch;
    // Leadership may have moved during the long poll: check again on every read.
    p.check_replica_fetch(replica, f.current_leader_epoch)?;
    let log = p.log.read();
    let hw = if broker
        .failpoints()
        .withhold_high_watermark
        .load(Ordering::SeqCst)
    {
        log.log_start_offset()
    } else {
        log.high_watermark()
    };
    let mut data = PartitionData {
        topic: f.topic.clone(),
        partition: f.partition,
        error_code: 0,
        high_watermark: hw,
        log_start_offset: log.log_start_offset(),
        log_end_offset: log.log_end_offset(),
        diverging_epoch: None,
        records: Bytes::new(),
    };
    match fetch_position(
        f.last_fetched_epoch,
        f.fetch_offset,
        |e| log.end_offset_for_epoch(e),
        log.log_start_offset(),
        log.log_end_offset(),
    ) {
        FetchPosition::Valid => {}
        // The follower holds an epoch newer than any this leader knows: it cannot be a
        // replica of this leadership's history; it waits for new metadata.
        FetchPosition::UnknownEpoch => {
            return Err(BrokerError::UnknownLeaderEpoch(f.last_fetched_epoch));
        }
        FetchPosition::Diverging { epoch, end_offset } => {
            data.diverging_epoch = Some(EpochEndOffset { epoch, end_offset });
            return Ok((data, true));
        }
        FetchPosition::OutOfRange => {
            // With the leader's log bounds, so a follower behind the log start can restart
            // there.
            data.error_code = i32::from(ResponseError::OffsetOutOfRange.code());
            return Ok((data, true));
        }
    }
    let limit = budget.min(f.max_bytes as usize);
    let read = log.read(f.fetch_offset, limit, i64::MAX, first)?;
    drop(log);
    let mut records = read.records;
    if !records.is_empty() && broker.failpoints().take_corruption() {
        let mut b = BytesMut::from(&records[..]);
        let last = b.len() - 1;
        b[last] ^= 0xff;
        records = b.freeze();
        tracing::warn!(tp = %p.tp, "failpoint: corrupting a record set sent to a follower");
    }
    let hw_moved = *slot.first_hw.get_or_insert(hw) != hw;
    let worth = !records.is_empty() || hw_moved;
    data.records = records;
    Ok((data, worth))
}

impl ReplicationService {
    async fn fetch_inner(&self, req: ReplicaFetchRequest) -> Result<ReplicaFetchReply> {
        self.check_cluster(&req.cluster_id)?;
        let broker = &self.broker;
        let now = now_ms();
        let mut receivers = Vec::new();
        let mut slots = Vec::with_capacity(req.partitions.len());
        let mut wake_isr = false;
        for fetch in req.partitions {
            let (partition, error) = match broker.partition(&fetch.topic, fetch.partition) {
                Err(e) => (None, Some(error::code(&e))),
                Ok(p) => {
                    let min_isr = broker.min_isr_of(&fetch.topic);
                    match p.record_follower_fetch(
                        req.replica_id,
                        fetch.current_leader_epoch,
                        (fetch.fetch_offset, fetch.last_fetched_epoch),
                        min_isr,
                        now,
                    ) {
                        Ok(outside_isr) => {
                            wake_isr |= outside_isr;
                            receivers.push(p.subscribe_log_end());
                            receivers.push(p.subscribe());
                            (Some(p), None)
                        }
                        Err(e) => (Some(p), Some(error::code(&e))),
                    }
                }
            };
            slots.push(Slot {
                fetch,
                partition,
                error,
                first_hw: None,
            });
        }
        if wake_isr {
            broker.isr_check().notify_one();
        }
        let deadline = Instant::now() + Duration::from_millis(u64::from(req.max_wait_ms));
        loop {
            let mut budget = req.max_bytes as usize;
            let mut answer = false;
            let mut out = Vec::with_capacity(slots.len());
            for slot in &mut slots {
                if let Some(code) = slot.error {
                    answer = true;
                    out.push(error_data(&slot.fetch, code));
                    continue;
                }
                let first = out.iter().all(|d: &PartitionData| d.records.is_empty());
                match read_partition(broker, req.replica_id, slot, budget, first) {
                    Ok((data, worth)) => {
                        answer |= worth;
                        budget = budget.saturating_sub(data.records.len());
                        out.push(data);
                    }
                    Err(e) => {
                        answer = true;
                        out.push(error_data(&slot.fetch, error::code(&e)));
                    }
                }
            }
            if answer || Instant::now() >= deadline || self.shutdown.is_cancelled() {
                return Ok(ReplicaFetchReply { partitions: out });
            }
            tokio::select! {
                _ = crate::replica::any_changed(&mut receivers) => {}
                _ = tokio::time::sleep_until(deadline) => {}
                _ = self.shutdown.cancelled() => {}
            }
        }
    }

    fn describe_inner(&self, req: DescribeReplicasRequest) -> Result<DescribeReplicasReply> {
        self.check_cluster(&req.cluster_id)?;
        let now = now_ms();
        let partitions: Vec<Arc<Partition>> = if req.partitions.is_empty() {
            self.broker
                .all_partitions()
                .into_iter()
                .map(|(p, _)| p)
                .collect()
        } else {
            req.partitions
                .iter()
                .filter_map(|r| self.broker.partition(&r.topic, r.partition).ok())
                .collect()
        };
        let partitions = partitions
            .iter()
            .filter_map(|p| {
                let s = p.leader_status(now)?;
                Some(LeaderPartitionStatus {
                    topic: p.tp.topic.clone(),
                    partition: p.tp.partition,
                    leader_epoch: s.assignment.leader_epoch,
                    partition_epoch: s.assignment.partition_epoch,
                    high_watermark: s.high_watermark,
                    log_start_offset: s.log_start_offset,
                    replicas: s.assignment.replicas.clone(),
                    isr: s.assignment.isr.clone(),
                    progress: s
                        .progress
                        .iter()
                        .map(|&(broker_id, log_end_offset, lag_ms)| ReplicaProgress {
                            broker_id,
                            log_end_offset,
                            lag_ms,
                        })
                        .collect(),
                })
            })
            .collect();
        Ok(DescribeReplicasReply {
            broker_id: self.broker.link().node_id(),
            partitions,
        })
    }
}

#[tonic::async_trait]
impl Replication for ReplicationService {
    async fn fetch(
        &self,
        request: Request<ReplicaFetchRequest>,
    ) -> std::result::Result<Response<ReplicaFetchReply>, Status> {
        self.fetch_inner(request.into_inner())
            .await
            .map(Response::new)
            .map_err(|e| to_status(&e))
    }

    async fn describe_replicas(
        &self,
        request: Request<DescribeReplicasRequest>,
    ) -> std::result::Result<Response<DescribeReplicasReply>, Status> {
        self.describe_inner(request.into_inner())
            .map(Response::new)
            .map_err(|e| to_status(&e))
    }
}
