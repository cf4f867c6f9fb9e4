//! Follower fetchers: one task per leader broker, each with exactly one `Replication.Fetch` in
//! flight for every partition this node follows from that leader.
//!
//! The manager ([`run_fetchers`]) starts and stops the per-leader tasks as roles change. A task
//! re-reads its partitions from the broker before every fetch, so a new leader or epoch takes
//! effect on the next request; a metadata change also abandons the request in flight and
//! fetches again at once (no backoff). Per partition reply:
//! - `diverging_epoch` → truncate (KIP-279, [`super::leader::truncation_offset`]) and fetch
//!   again;
//! - records → `append_as_follower` (every batch CRC-checked; a bad set is refused whole,
//!   nothing appended) and HW = min(leader HW, own LEO);
//! - an error code (6, 74, 75, ...) → the partition sits out until its metadata changes or
//!   `replica.fetch.backoff.ms` passes (the leader may simply not have seen the change yet).
//!
//! A failed call (leader down, connection refused) backs off `replica.fetch.backoff.ms` before
//! the next attempt, unless new metadata arrives first.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use gregor_proto::replication::v1::replication_client::ReplicationClient;
use gregor_proto::replication::v1::{PartitionFetch, ReplicaFetchRequest};
use gregor_storage::TopicPartition;
use kafka_protocol::ResponseError;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

use super::{FollowState, Role};
use crate::broker::{Broker, Partition};
use crate::cluster::BrokerId;

/// How long a fetch may take beyond its long-poll wait before the follower gives up on it
/// (Kafka's `replica.socket.timeout.ms` default).
const FETCH_TIMEOUT_SLACK: Duration = Duration::from_secs(30);

/// HTTP/2's largest SETTINGS_MAX_FRAME_SIZE (2^24 - 1, RFC 9113 §6.5.2).
const MAX_FRAME_SIZE: u32 = (1 << 24) - 1;

/// HTTP/2's largest flow-control window (2^31 - 1, RFC 9113 §6.9.1).
const MAX_WINDOW: u32 = (1 << 31) - 1;

/// Starts a fetch task for every leader this node follows partitions from, and stops the tasks
/// of leaders it no longer follows, until `shutdown`; then stops them all.
pub async fn run_fetchers(broker: Arc<Broker>, shutdown: CancellationToken) {
    let mut changes = broker.replica_changes();
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut running: HashMap<BrokerId, CancellationToken> = HashMap::new();
    loop {
        changes.borrow_and_update();
        let wanted: BTreeSet<BrokerId> = broker
            .all_partitions()
            .iter()
            .filter_map(|(p, _)| match p.role() {
                Role::Follower { leader } => Some(leader),
                _ => None,
            })
            .collect();
        running.retain(|id, token| {
            let keep = wanted.contains(id);
            if !keep {
                tracing::debug!(leader = id, "stopping the fetcher");
                token.cancel();
            }
            keep
        });
        for id in wanted {
            running.entry(id).or_insert_with(|| {
                tracing::debug!(leader = id, "starting a fetcher");
                let token = shutdown.child_token();
                tasks.spawn(fetch_from(Arc::clone(&broker), id, token.clone()));
                token
            });
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            changed = changes.changed() => if changed.is_err() { break },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    for token in running.values() {
        token.cancel();
    }
    while tasks.join_next().await.is_some() {}
}

/// Waits for `d`, new metadata or cancellation. Returns false on cancellation.
async fn pause(d: Duration, changes: &mut watch::Receiver<u64>, token: &CancellationToken) -> bool {
    tokio::select! {
        _ = token.cancelled() => false,
        _ = changes.changed() => true,
        _ = tokio::time::sleep(d) => true,
    }
}

/// The follower loop for one leader.
async fn fetch_from(broker: Arc<Broker>, leader: BrokerId, token: CancellationToken) {
    let config = broker.config().clone();
    let backoff = Duration::from_millis(config.replica_fetch_backoff_ms.max(0) as u64);
    let wait = Duration::from_millis(config.replica_fetch_wait_max_ms.max(0) as u64);
    let max_decode = (config.replica_fetch_response_max_bytes.max(0) as usize)
        .saturating_add(config.message_max_bytes.max(0) as usize)
        .saturating_add(1 << 20);
    // Flow-control window: the largest reply (every partition's bytes plus framing) fits.
    let window = u32::try_from(max_decode)
        .unwrap_or(MAX_WINDOW)
        .min(MAX_WINDOW);
    let mut changes = broker.replica_changes();
    let mut client: Option<(String, ReplicationClient<Channel>)> = None;
    // Partitions that got an error: (epoch, until). They sit out until the epoch changes or
    // the backoff passes.
    let mut paused: HashMap<TopicPartition, (i32, Instant)> = HashMap::new();
    while !token.is_cancelled() {
        changes.borrow_and_update();
        let now = Instant::now();
        let mut parts: Vec<(Arc<Partition>, FollowState)> = Vec::new();
        for (p, _) in broker.all_partitions() {
            let Some(s) = p.follow_state().filter(|s| s.leader == leader) else {
                continue;
            };
            match paused.get(&p.tp) {
                Some(&(epoch, until)) if epoch == s.leader_epoch && until > now => continue,
                Some(_) => {
                    paused.remove(&p.tp);
                }
                None => {}
            }
            parts.push((p, s));
        }
        if parts.is_empty() {
            let next = paused.values().map(|&(_, u)| u).min();
            let d = next.map_or(Duration::from_secs(3600), |u| {
                u.saturating_duration_since(now)
            });
            if !pause(d, &mut changes, &token).await {
                return;
            }
            continue;
        }
        let Some(address) = broker.link().replication_address(leader) else {
            tracing::debug!(leader, "no replication address for the leader yet");
            if !pause(backoff, &mut changes, &token).await {
                return;
            }
            continue;
        };
        if client.as_ref().is_none_or(|(a, _)| *a != address) {
            match Endpoint::from_shared(format!("http://{address}")) {
                Ok(e) => {
                    let channel = e
                        .connect_timeout(backoff.max(Duration::from_millis(100)))
                        // A reply is written as DATA frames of at most the receiver's
                        // SETTINGS_MAX_FRAME_SIZE, one write (and one wake-up here) each: at
                        // h2's 16 KiB default a 1 MiB reply took 64 writes. With the largest
                        // frame and a window that holds the largest reply, it takes one, and the
                        // leader never waits for a WINDOW_UPDATE in the middle of a reply.
                        .max_frame_size(MAX_FRAME_SIZE)
                        .initial_stream_window_size(window)
                        .initial_connection_window_size(window)
                        .connect_lazy();
                    let c = ReplicationClient::new(channel).max_decoding_message_size(max_decode);
                    client = Some((address.clone(), c));
                }
                Err(e) => {
                    tracing::warn!(leader, %address, error = %e, "invalid replication address");
                    if !pause(backoff, &mut changes, &token).await {
                        return;
                    }
                    continue;
                }
            }
        }
        let Some((_, c)) = client.as_mut() else {
            continue;
        };
        let request = ReplicaFetchRequest {
            cluster_id: broker.cluster_id(),
            replica_id: broker.link().node_id(),
            broker_epoch: broker.link().broker_epoch(),
            max_wait_ms: u32::try_from(wait.as_millis()).unwrap_or(u32::MAX),
            max_bytes: config.replica_fetch_response_max_bytes.max(0) as u32,
            partitions: parts
                .iter()
                .map(|(p, s)| PartitionFetch {
                    topic: p.tp.topic.clone(),
                    partition: p.tp.partition,
                    current_leader_epoch: s.leader_epoch,
                    fetch_offset: s.fetch_offset,
                    last_fetched_epoch: s.last_fetched_epoch,
                    log_start_offset: s.log_start_offset,
                    max_bytes: config.replica_fetch_max_bytes.max(0) as u32,
                })
                .collect(),
        };
        let reply = tokio::select! {
            _ = token.cancelled() => return,
            // New metadata: this request may be for the wrong leader or epoch; send a new one.
            _ = changes.changed() => continue,
            r = tokio::time::timeout(wait + FETCH_TIMEOUT_SLACK, c.fetch(request)) => r,
        };
        let reply = match reply {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(status)) => {
                tracing::debug!(leader, code = ?status.code(), message = status.message(), "replica fetch failed");
                if !pause(backoff, &mut changes, &token).await {
                    return;
                }
                continue;
            }
            Err(_) => {
                tracing::warn!(leader, "replica fetch timed out");
                continue;
            }
        };
        let until = Instant::now() + backoff;
        for data in reply.partitions {
            let Some((p, s)) = parts
                .iter()
                .find(|(p, _)| p.tp.topic == data.topic && p.tp.partition == data.partition)
            else {
                continue;
            };
            if data.error_code == i32::from(ResponseError::OffsetOutOfRange.code())
                && data.log_start_offset > s.fetch_offset
            {
                match p.reset_behind_leader(s.leader_epoch, data.log_start_offset) {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(e) => tracing::warn!(tp = %p.tp, error = %e, "cannot restart the log"),
                }
            }
            if data.error_code != 0 {
                tracing::debug!(tp = %p.tp, leader, code = data.error_code, "replica fetch error; waiting for new metadata");
                paused.insert(p.tp.clone(), (s.leader_epoch, until));
                continue;
            }
            if let Some(d) = data.diverging_epoch {
                broker
                    .replica_stats()
                    .truncations
                    .fetch_add(1, Ordering::Relaxed);
                if let Err(e) = p.truncate_diverged(s.leader_epoch, (d.epoch, d.end_offset)) {
                    tracing::warn!(tp = %p.tp, error = %e, "truncation failed");
                    paused.insert(p.tp.clone(), (s.leader_epoch, until));
                }
                continue;
            }
            if let Err(e) = p.append_fetched(
                s.leader_epoch,
                data.records,
                data.high_watermark,
                data.log_start_offset,
            ) {
                broker
                    .replica_stats()
                    .rejected_fetches
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(tp = %p.tp, leader, error = %e, "refused fetched records; nothing appended, fetching again");
                paused.insert(p.tp.clone(), (s.leader_epoch, until));
            }
        }
    }
}
