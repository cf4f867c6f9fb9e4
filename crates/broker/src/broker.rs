//! The broker's state: cluster metadata (topics, ids, partition counts, config overrides) and one
//! open log per partition, plus the per-partition watch that wakes long-polling fetches.
//!
//! Reads take a short `RwLock` read on the topic map and clone `Arc`s out. Metadata changes are
//! serialized by one admin mutex, persisted through the [`MetadataStore`] *before* they become
//! visible, and then swapped in. They do file I/O and fsync, so callers on the runtime run them
//! through `spawn_blocking` (see [`Broker::blocking`]).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gregor_storage::{LogConfig, LogManager, SharedLog, TimestampType, TopicPartition};
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;
use uuid::Uuid;

use crate::cluster::{ClusterLink, LocalLink, PartitionAssignment};
use crate::config::{BrokerConfig, Endpoint, Listener};
use crate::error::{BrokerError, Result};
use crate::group::{CoordinatorConfig, GroupCoordinator, OFFSETS_TOPIC};
use crate::metadata_store::{ClusterMetadata, FileMetadataStore, MetadataStore, TopicMetadata};
use crate::producer_ids::{LocalProducerIdAllocator, ProducerIdAllocator};
use crate::topic_config;

/// Leader epoch of every partition: a single node never changes leaders.
pub const LEADER_EPOCH: i32 = 0;

/// Checks a client's `current_leader_epoch` against ours (KIP-320). Negative means "not
/// given" (Kafka reads any negative epoch as absent), so with our epoch 0 a single node can
/// only ever answer UNKNOWN_LEADER_EPOCH, never FENCED_LEADER_EPOCH.
pub fn check_leader_epoch(epoch: i32) -> Result<()> {
    match epoch {
        e if e < 0 => Ok(()),
        e if e < LEADER_EPOCH => Err(BrokerError::FencedLeaderEpoch(e)),
        e if e > LEADER_EPOCH => Err(BrokerError::UnknownLeaderEpoch(e)),
        _ => Ok(()),
    }
}

/// Current wall-clock time in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The CreateTime bounds of a topic (KIP-937): a batch is accepted when its timestamps lie in
/// `[now - before_max_ms, now + after_max_ms]`. LogAppendTime topics accept any timestamp (the
/// broker overwrites it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampPolicy {
    /// `message.timestamp.type=LogAppendTime`: no bounds apply.
    pub log_append_time: bool,
    /// `message.timestamp.before.max.ms`.
    pub before_max_ms: i64,
    /// `message.timestamp.after.max.ms`.
    pub after_max_ms: i64,
}

impl TimestampPolicy {
    /// Checks the timestamps of a record batch header against the bounds at `now_ms`.
    ///
    /// Only the header is read: its `baseTimestamp` (the first record's) and `maxTimestamp`. Kafka
    /// checks every record, which needs decompression; a record with a negative timestamp delta
    /// (older than the batch's first record) is therefore not bounded here. -1 (no timestamp)
    /// is skipped, as in Kafka.
    pub fn check(&self, base_timestamp: i64, max_timestamp: i64, now_ms: i64) -> Result<()> {
        if self.log_append_time {
            return Ok(());
        }
        let min = now_ms.saturating_sub(self.before_max_ms);
        let max = now_ms.saturating_add(self.after_max_ms);
        for timestamp in [base_timestamp, max_timestamp] {
            if timestamp != NO_TIMESTAMP && (timestamp < min || timestamp > max) {
                return Err(BrokerError::InvalidTimestamp {
                    timestamp,
                    min,
                    max,
                });
            }
        }
        Ok(())
    }
}

/// Kafka's `RecordBatch.NO_TIMESTAMP`.
pub const NO_TIMESTAMP: i64 = -1;

/// One partition this node leads.
pub struct Partition {
    /// Topic and partition index.
    pub tp: TopicPartition,
    /// The partition's log. Appends take the write lock for the (page-cache) append only.
    pub log: SharedLog,
    /// The high watermark, published after every append so fetch long-polls wake without
    /// polling. Dropped with the partition, which also wakes waiters.
    hw: watch::Sender<i64>,
    /// What the metadata says about this partition (leader, epochs, replicas, ISR).
    assignment: RwLock<PartitionAssignment>,
}

impl std::fmt::Debug for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partition")
            .field("tp", &self.tp)
            .field("high_watermark", &*self.hw.borrow())
            .finish()
    }
}

impl Partition {
    fn new(tp: TopicPartition, log: SharedLog, assignment: PartitionAssignment) -> Self {
        let hw = log.read().high_watermark();
        Partition {
            tp,
            log,
            hw: watch::Sender::new(hw),
            assignment: RwLock::new(assignment),
        }
    }

    /// The partition's current assignment.
    pub fn assignment(&self) -> PartitionAssignment {
        self.assignment.read().clone()
    }

    /// Subscribes to high-watermark changes. Subscribe *before* reading, so an append between
    /// the read and the wait is not missed.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.hw.subscribe()
    }

    /// Publishes a new high watermark (single node: HW = log end offset after each append).
    pub fn publish_high_watermark(&self, hw: i64) {
        self.hw.send_replace(hw);
    }
}

/// A snapshot of one topic. Replaced as a whole when its metadata changes; the partitions
/// themselves are shared between snapshots.
#[derive(Debug)]
pub struct Topic {
    /// Topic name.
    pub name: String,
    /// Topic id.
    pub id: Uuid,
    /// Config overrides.
    pub configs: BTreeMap<String, String>,
    /// Partitions, index = partition number.
    pub partitions: Vec<Arc<Partition>>,
}

#[derive(Debug, Default)]
struct State {
    topics: HashMap<String, Arc<Topic>>,
    by_id: HashMap<Uuid, String>,
}

/// The broker: configuration, metadata and partition logs. Shared by all connections.
pub struct Broker {
    config: BrokerConfig,
    advertised: Endpoint,
    /// What each listener advertises, by listener name (`advertised` is one of them).
    advertised_by_listener: Vec<Listener>,
    store: Box<dyn MetadataStore>,
    logs: Arc<LogManager>,
    /// Serializes metadata changes so persist-then-publish is atomic with respect to others.
    admin: Mutex<ClusterMetadata>,
    state: RwLock<State>,
    /// Consumer groups and committed offsets (`__consumer_offsets`).
    groups: GroupCoordinator,
    /// Producer ids for InitProducerId.
    producer_ids: Box<dyn ProducerIdAllocator>,
    /// The rest of the cluster (a [`LocalLink`] on a single node).
    link: Arc<dyn ClusterLink>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("node_id", &self.config.node_id)
            .field("advertised", &self.advertised)
            .field("topics", &self.state.read().topics.len())
            .finish_non_exhaustive()
    }
}

/// Checks a topic name against Kafka's rules (`Topic.validate`).
pub fn validate_topic_name(name: &str) -> Result<()> {
    let err = |reason| {
        Err(BrokerError::InvalidTopic {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return err("topic name is empty");
    }
    if name == "." || name == ".." {
        return err("topic name cannot be \".\" or \"..\"");
    }
    if name.len() > 249 {
        return err("topic name is longer than 249 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return err("topic name may only contain ASCII alphanumerics, '.', '_' and '-'");
    }
    Ok(())
}

/// A Kafka-style cluster id: 16 random bytes, URL-safe base64 without padding (22 chars).
fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = Uuid::new_v4().into_bytes();
    let mut out = String::with_capacity(22);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in bytes {
        acc = (acc << 8) | b as u32;
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(ALPHABET[((acc >> bits) & 63) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (6 - bits)) & 63) as usize] as char);
    }
    out
}

impl Broker {
    /// Opens the data directory (creating it), loads the metadata and opens every partition log.
    /// `bound` is the listener's actual address, used for the advertised endpoint.
    pub fn open(config: BrokerConfig, bound: SocketAddr) -> Result<Broker> {
        std::fs::create_dir_all(&config.log_dir).map_err(|source| BrokerError::Io {
            context: "create log.dirs",
            source,
        })?;
        let store = Box::new(FileMetadataStore::new(&config.log_dir));
        Broker::open_with_store(config, bound, store)
    }

    /// Like [`Broker::open`] with another metadata store (the controller seam).
    pub fn open_with_store(
        config: BrokerConfig,
        bound: SocketAddr,
        store: Box<dyn MetadataStore>,
    ) -> Result<Broker> {
        config.validate()?;
        let metadata = match store.load()? {
            Some(m) => m,
            None => {
                let m = ClusterMetadata {
                    cluster_id: new_cluster_id(),
                    topics: BTreeMap::new(),
                };
                store.save(&m)?;
                m
            }
        };
        let logs = Arc::new(LogManager::open(
            &config.log_dir,
            default_log_config(&config),
            now_ms(),
        )?);
        let advertised = config.advertised_endpoint(bound);
        let advertised_by_listener = config.advertised_endpoints(bound);
        let groups = GroupCoordinator::new(CoordinatorConfig::from_broker(&config));
        // The controller-backed allocator replaces this one when brokers join the quorum.
        let producer_ids = Box::new(LocalProducerIdAllocator::new(&config.log_dir));
        let link = Arc::new(LocalLink::new(config.node_id));
        let broker = Broker {
            config,
            advertised,
            advertised_by_listener,
            store,
            logs,
            admin: Mutex::new(metadata.clone()),
            state: RwLock::new(State::default()),
            groups,
            producer_ids,
            link,
        };
        let mut state = State::default();
        for (name, meta) in &metadata.topics {
            let topic = broker.build_topic(name, meta, &[])?;
            state.by_id.insert(meta.id, name.clone());
            state.topics.insert(name.clone(), Arc::new(topic));
        }
        *broker.state.write() = state;
        // A restarted coordinator rebuilds groups and offsets before serving anyone.
        broker.groups.load(&broker)?;
        Ok(broker)
    }

    /// The configuration the broker runs with.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// The rest of the cluster.
    pub fn link(&self) -> &Arc<dyn ClusterLink> {
        &self.link
    }

    /// Takes in what the metadata says about one partition. Unknown partitions are ignored.
    pub fn apply_assignment(
        &self,
        topic: &str,
        partition: i32,
        assignment: PartitionAssignment,
    ) -> Result<()> {
        if let Ok(p) = self.partition(topic, partition) {
            *p.assignment.write() = assignment;
        }
        Ok(())
    }

    /// The group coordinator.
    pub fn groups(&self) -> &GroupCoordinator {
        &self.groups
    }

    /// A fresh producer id (InitProducerId). Blocking: reserving a new block fsyncs.
    pub fn allocate_producer_id(&self) -> Result<i64> {
        Ok(self.producer_ids.next_id()?)
    }

    /// The endpoint of the inter-broker listener (the first one unless
    /// `inter.broker.listener.name` says otherwise).
    pub fn advertised(&self) -> &Endpoint {
        &self.advertised
    }

    /// What every listener advertises, by name: the endpoints a broker registers.
    pub fn advertised_listeners(&self) -> &[Listener] {
        &self.advertised_by_listener
    }

    /// The endpoint clients that connected through `listener` are told to use (Kafka answers
    /// Metadata, FindCoordinator and DescribeCluster with the endpoints of the listener the
    /// request arrived on). An unknown name gets [`Broker::advertised`].
    pub fn advertised_for(&self, listener: &str) -> &Endpoint {
        self.advertised_by_listener
            .iter()
            .find(|l| l.name == listener)
            .map_or(&self.advertised, |l| &l.endpoint)
    }

    /// The cluster id (persisted with the metadata).
    pub fn cluster_id(&self) -> String {
        self.admin.lock().cluster_id.clone()
    }

    /// The partition logs (for the storage background task).
    pub fn log_manager(&self) -> &Arc<LogManager> {
        &self.logs
    }

    /// Runs a blocking metadata operation off the async runtime.
    pub async fn blocking<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Broker) -> Result<T> + Send + 'static,
    {
        let broker = Arc::clone(self);
        tokio::task::spawn_blocking(move || f(&broker)).await?
    }

    /// A topic by name.
    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.state.read().topics.get(name).cloned()
    }

    /// A topic by id.
    pub fn topic_by_id(&self, id: Uuid) -> Option<Arc<Topic>> {
        let state = self.state.read();
        state
            .by_id
            .get(&id)
            .and_then(|name| state.topics.get(name))
            .cloned()
    }

    /// All topics, sorted by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        let mut all: Vec<_> = self.state.read().topics.values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// One partition, or UNKNOWN_TOPIC_OR_PARTITION.
    pub fn partition(&self, topic: &str, partition: i32) -> Result<Arc<Partition>> {
        self.topic(topic)
            .and_then(|t| {
                usize::try_from(partition)
                    .ok()
                    .and_then(|i| t.partitions.get(i).cloned())
            })
            .ok_or_else(|| BrokerError::UnknownTopicOrPartition {
                topic: topic.to_string(),
                partition,
            })
    }

    /// The effective `min.insync.replicas` of a topic.
    pub fn min_insync_replicas(&self, topic: &Topic) -> i32 {
        topic_config::effective_i64(&self.config, &topic.configs, "min.insync.replicas") as i32
    }

    /// The storage config for a topic: broker defaults with the topic's overrides applied.
    pub fn log_config(&self, overrides: &BTreeMap<String, String>) -> LogConfig {
        let mut c = default_log_config(&self.config);
        let get = |name| topic_config::effective_i64(&self.config, overrides, name);
        c.retention_ms = get("retention.ms");
        c.retention_bytes = get("retention.bytes");
        c.segment_bytes = get("segment.bytes").max(1) as u64;
        c.max_message_bytes = get("max.message.bytes").clamp(0, i32::MAX as i64) as u32;
        if let Some(t) = overrides.get("message.timestamp.type")
            && let Ok(t) = crate::config::parse_timestamp_type(t)
        {
            c.message_timestamp_type = t;
        }
        c
    }

    /// The timestamp rules Produce applies to a topic (`message.timestamp.*`, override or
    /// broker default).
    pub fn timestamp_policy(&self, topic: &Topic) -> TimestampPolicy {
        let get = |name| topic_config::effective_i64(&self.config, &topic.configs, name);
        let log_append_time = match topic.configs.get("message.timestamp.type") {
            Some(t) => crate::config::parse_timestamp_type(t).ok(),
            None => None,
        }
        .unwrap_or(self.config.log_message_timestamp_type)
            == TimestampType::LogAppendTime;
        TimestampPolicy {
            log_append_time,
            before_max_ms: get("message.timestamp.before.max.ms"),
            after_max_ms: get("message.timestamp.after.max.ms"),
        }
    }

    fn build_topic(
        &self,
        name: &str,
        meta: &TopicMetadata,
        existing: &[Arc<Partition>],
    ) -> Result<Topic> {
        let config = self.log_config(&meta.configs);
        let mut partitions = Vec::with_capacity(meta.partitions.max(0) as usize);
        for index in 0..meta.partitions {
            if let Some(p) = existing.get(index as usize) {
                partitions.push(Arc::clone(p));
                continue;
            }
            let tp = TopicPartition {
                topic: name.to_string(),
                partition: index,
            };
            let log = self.logs.get_or_create(&tp, config.clone(), now_ms())?;
            let assignment = PartitionAssignment::single_node(self.config.node_id);
            partitions.push(Arc::new(Partition::new(tp, log, assignment)));
        }
        Ok(Topic {
            name: name.to_string(),
            id: meta.id,
            configs: meta.configs.clone(),
            partitions,
        })
    }

    /// Persists `next`, then opens logs and publishes the topic. Caller holds the admin lock.
    fn commit(
        &self,
        admin: &mut ClusterMetadata,
        next: ClusterMetadata,
        name: &str,
    ) -> Result<Arc<Topic>> {
        self.store.save(&next)?;
        *admin = next;
        let meta = admin
            .topics
            .get(name)
            .ok_or_else(|| BrokerError::UnknownTopicOrPartition {
                topic: name.to_string(),
                partition: -1,
            })?;
        let existing = self
            .topic(name)
            .map(|t| t.partitions.clone())
            .unwrap_or_default();
        let topic = Arc::new(self.build_topic(name, meta, &existing)?);
        for p in &topic.partitions {
            p.log.write().set_config(self.log_config(&topic.configs));
        }
        let mut state = self.state.write();
        state.by_id.insert(topic.id, name.to_string());
        state.topics.insert(name.to_string(), Arc::clone(&topic));
        Ok(topic)
    }

    /// CreateTopics: validates and creates a topic. Blocking (fsync).
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<TopicMetadata> {
        validate_topic_name(name)?;
        let partitions = if partitions == -1 {
            self.config.num_partitions
        } else {
            partitions
        };
        if partitions < 1 {
            return Err(BrokerError::InvalidPartitions(format!(
                "number of partitions must be at least 1, got {partitions}"
            )));
        }
        let rf = if replication_factor == -1 {
            self.config.default_replication_factor
        } else {
            replication_factor
        };
        if rf != 1 {
            return Err(BrokerError::InvalidReplicationFactor(format!(
                "replication factor {rf} is larger than the 1 available broker"
            )));
        }
        let mut admin = self.admin.lock();
        if admin.topics.contains_key(name) {
            return Err(BrokerError::TopicAlreadyExists(name.to_string()));
        }
        let meta = TopicMetadata {
            id: Uuid::new_v4(),
            partitions,
            configs,
        };
        if validate_only {
            return Ok(meta);
        }
        let mut next = admin.clone();
        next.topics.insert(name.to_string(), meta.clone());
        self.commit(&mut admin, next, name)?;
        tracing::info!(topic = name, partitions, id = %meta.id, "created topic");
        Ok(meta)
    }

    /// Auto-creates a topic (Metadata/Produce) when `auto.create.topics.enable` allows it.
    /// Returns the topic if it exists afterwards. Blocking (fsync).
    pub fn ensure_topic(&self, name: &str) -> Result<Arc<Topic>> {
        if let Some(t) = self.topic(name) {
            return Ok(t);
        }
        // The group coordinator creates its internal topic itself, with its own settings.
        if !self.config.auto_create_topics_enable || name == OFFSETS_TOPIC {
            return Err(BrokerError::UnknownTopicOrPartition {
                topic: name.to_string(),
                partition: -1,
            });
        }
        match self.create_topic(name, -1, -1, BTreeMap::new(), false) {
            Ok(_) | Err(BrokerError::TopicAlreadyExists(_)) => {
                self.topic(name)
                    .ok_or_else(|| BrokerError::UnknownTopicOrPartition {
                        topic: name.to_string(),
                        partition: -1,
                    })
            }
            Err(e) => Err(e),
        }
    }

    /// DeleteTopics: forgets the topic, then deletes its logs. Blocking (fsync, file removal).
    pub fn delete_topic(&self, name: &str) -> Result<Uuid> {
        let mut admin = self.admin.lock();
        let Some(meta) = admin.topics.get(name).cloned() else {
            return Err(BrokerError::UnknownTopicOrPartition {
                topic: name.to_string(),
                partition: -1,
            });
        };
        if name == OFFSETS_TOPIC {
            return Err(BrokerError::InvalidRequest(format!(
                "internal topic {OFFSETS_TOPIC} cannot be deleted"
            )));
        }
        if !self.config.delete_topic_enable {
            return Err(BrokerError::InvalidRequest(
                "topic deletion is disabled".into(),
            ));
        }
        let mut next = admin.clone();
        next.topics.remove(name);
        self.store.save(&next)?;
        *admin = next;
        let removed = {
            let mut state = self.state.write();
            state.by_id.remove(&meta.id);
            state.topics.remove(name)
        };
        // Dropping the partitions drops their watch senders, which wakes waiting fetches.
        drop(removed);
        for partition in 0..meta.partitions {
            let tp = TopicPartition {
                topic: name.to_string(),
                partition,
            };
            self.logs.delete(&tp)?;
        }
        tracing::info!(topic = name, "deleted topic");
        Ok(meta.id)
    }

    /// CreatePartitions: grows a topic to `count` partitions. Blocking (fsync).
    pub fn create_partitions(&self, name: &str, count: i32, validate_only: bool) -> Result<()> {
        let mut admin = self.admin.lock();
        let Some(meta) = admin.topics.get(name).cloned() else {
            return Err(BrokerError::UnknownTopicOrPartition {
                topic: name.to_string(),
                partition: -1,
            });
        };
        if count <= meta.partitions {
            return Err(BrokerError::InvalidPartitions(format!(
                "topic {name} has {} partitions; the new count {count} must be larger",
                meta.partitions
            )));
        }
        if validate_only {
            return Ok(());
        }
        let mut next = admin.clone();
        if let Some(m) = next.topics.get_mut(name) {
            m.partitions = count;
        }
        self.commit(&mut admin, next, name)?;
        Ok(())
    }

    /// Replaces a topic's config overrides (already validated). Blocking (fsync).
    pub fn set_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<()> {
        let mut admin = self.admin.lock();
        if !admin.topics.contains_key(name) {
            return Err(BrokerError::UnknownTopicOrPartition {
                topic: name.to_string(),
                partition: -1,
            });
        }
        if validate_only {
            return Ok(());
        }
        let mut next = admin.clone();
        if let Some(m) = next.topics.get_mut(name) {
            m.configs = configs;
        }
        self.commit(&mut admin, next, name)?;
        Ok(())
    }

    /// Flushes and closes the partition logs. Called once, after the listener stopped.
    pub fn shutdown(&self) -> Result<()> {
        self.groups.shutdown();
        self.logs.shutdown()?;
        Ok(())
    }

    /// How often the storage background task checks retention.
    pub fn retention_check_interval(&self) -> Duration {
        Duration::from_millis(self.config.log_retention_check_interval_ms.max(1) as u64)
    }
}

/// Broker-wide storage defaults from the broker config.
// Every field is set today; the struct update keeps this compiling when storage adds one.
#[allow(clippy::needless_update)]
pub fn default_log_config(config: &BrokerConfig) -> LogConfig {
    LogConfig {
        segment_bytes: config.log_segment_bytes.max(1) as u64,
        segment_ms: config.log_roll_ms,
        index_interval_bytes: config.log_index_interval_bytes.max(0) as u32,
        flush_messages: config.log_flush_interval_messages.max(1) as u64,
        flush_ms: config.log_flush_interval_ms,
        retention_ms: config.log_retention_ms,
        retention_bytes: config.log_retention_bytes,
        max_message_bytes: config.message_max_bytes.max(0) as u32,
        message_timestamp_type: config.log_message_timestamp_type,
        ..LogConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &std::path::Path) -> Broker {
        let config = BrokerConfig {
            log_dir: dir.to_path_buf(),
            ..BrokerConfig::default()
        };
        Broker::open(config, "127.0.0.1:9092".parse().unwrap()).unwrap()
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        for ok in ["a", "A-b_c.d", &"x".repeat(249)] {
            validate_topic_name(ok).unwrap();
        }
        for bad in ["", ".", "..", "a b", "ä", "a/b", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cluster_id_looks_like_kafkas() {
        let id = new_cluster_id();
        assert_eq!(id.len(), 22);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_ne!(id, new_cluster_id());
    }

    #[test]
    fn topics_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (cluster, id) = {
            let b = open(dir.path());
            let mut configs = BTreeMap::new();
            configs.insert("retention.ms".to_string(), "1000".to_string());
            let meta = b.create_topic("t", 3, -1, configs, false).unwrap();
            b.create_partitions("t", 4, false).unwrap();
            b.create_topic("gone", 1, 1, BTreeMap::new(), false)
                .unwrap();
            b.delete_topic("gone").unwrap();
            (b.cluster_id(), meta.id)
        };
        let b = open(dir.path());
        assert_eq!(b.cluster_id(), cluster);
        let t = b.topic("t").unwrap();
        assert_eq!(t.id, id);
        assert_eq!(t.partitions.len(), 4);
        assert_eq!(
            t.configs.get("retention.ms").map(String::as_str),
            Some("1000")
        );
        assert!(b.topic("gone").is_none());
        assert!(b.topic_by_id(id).is_some());
    }

    #[test]
    fn admin_errors() {
        let dir = tempfile::tempdir().unwrap();
        let b = open(dir.path());
        b.create_topic("t", 1, 1, BTreeMap::new(), false).unwrap();
        assert!(matches!(
            b.create_topic("t", 1, 1, BTreeMap::new(), false),
            Err(BrokerError::TopicAlreadyExists(_))
        ));
        assert!(matches!(
            b.create_topic("u", 0, 1, BTreeMap::new(), false),
            Err(BrokerError::InvalidPartitions(_))
        ));
        assert!(matches!(
            b.create_topic("u", 1, 3, BTreeMap::new(), false),
            Err(BrokerError::InvalidReplicationFactor(_))
        ));
        assert!(matches!(
            b.create_topic("u u", 1, 1, BTreeMap::new(), false),
            Err(BrokerError::InvalidTopic { .. })
        ));
        assert!(matches!(
            b.create_partitions("t", 1, false),
            Err(BrokerError::InvalidPartitions(_))
        ));
        assert!(matches!(
            b.delete_topic("nope"),
            Err(BrokerError::UnknownTopicOrPartition { .. })
        ));
        b.create_topic("v", 2, 1, BTreeMap::new(), true).unwrap();
        assert!(b.topic("v").is_none(), "validate_only creates nothing");
        assert!(matches!(
            b.partition("t", 1),
            Err(BrokerError::UnknownTopicOrPartition { .. })
        ));
        assert!(matches!(
            b.partition("t", -1),
            Err(BrokerError::UnknownTopicOrPartition { .. })
        ));
        assert!(b.partition("t", 0).is_ok());
    }

    #[test]
    fn auto_create_respects_config() {
        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig {
            log_dir: dir.path().to_path_buf(),
            auto_create_topics_enable: false,
            ..BrokerConfig::default()
        };
        let b = Broker::open(config, "127.0.0.1:9092".parse().unwrap()).unwrap();
        assert!(matches!(
            b.ensure_topic("x"),
            Err(BrokerError::UnknownTopicOrPartition { .. })
        ));
        let dir2 = tempfile::tempdir().unwrap();
        let b2 = open(dir2.path());
        assert_eq!(b2.ensure_topic("x").unwrap().partitions.len(), 1);
    }
}
