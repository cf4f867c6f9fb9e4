//! The broker's state: cluster metadata (topics, ids, partition counts, config overrides) and one
//! open log per local partition, plus the per-partition watch that wakes long-polling fetches.
//!
//! Two metadata sources, one shape:
//!
//! * **cluster** ([`Broker::open_cluster`], what `gregor server` runs): topics come only from the
//!   controller's [`MetadataImage`], which [`crate::quorum`] follows and hands to
//!   [`Broker::apply_image`]; admin operations (create/delete topics, partitions, configs) are
//!   forwarded to the controller and return once this broker's own image has the change.
//! * **local** ([`Broker::open`], the single-node seam the broker crate's own tests use): a
//!   [`MetadataStore`] file persisted *before* changes become visible; a single-node image is
//!   synthesized from it so request handlers have one path.
//!
//! Either way the broker publishes its image on a watch ([`Broker::image`]); Metadata,
//! DescribeCluster and FindCoordinator answer from it.
//!
//! Reads take a short `RwLock` read on the topic map and clone `Arc`s out. Metadata changes do
//! file I/O, fsync or controller round trips, so callers on the runtime run them through
//! `spawn_blocking` (see [`Broker::blocking`]).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gregor_controller::metadata::{
    BrokerRegistration, Endpoint as ImageEndpoint, MetadataImage, PartitionState, TopicImage,
};
use gregor_storage::{LogConfig, LogManager, SharedLog, TimestampType, TopicPartition};
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;
use uuid::Uuid;

use crate::admin::RequestMetrics;
use crate::cluster::{BrokerId, ClusterLink, LocalLink, PartitionAssignment};
use crate::config::{BrokerConfig, Endpoint, Listener};
use crate::error::{BrokerError, Result};
use crate::group::{CoordinatorConfig, GroupCoordinator, OFFSETS_TOPIC};
use crate::metadata_store::{ClusterMetadata, FileMetadataStore, MetadataStore, TopicMetadata};
use crate::producer_ids::{LocalProducerIdAllocator, ProducerIdAllocator};
use crate::quorum::QuorumMetadata;
use crate::quorum::reconcile::{self, Action, LocalState};
use crate::replica::{Failpoints, ReplicaState, ReplicaStats};
use crate::topic_config;

/// The leader epoch of a single node's partitions (they never change leaders). Replicated
/// partitions take theirs from the [`PartitionAssignment`].
pub const LEADER_EPOCH: i32 = 0;

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

/// One partition this node holds a replica of (as leader or follower).
pub struct Partition {
    /// Topic and partition index.
    pub tp: TopicPartition,
    /// The partition's log. Appends take the write lock for the (page-cache) append only.
    pub log: SharedLog,
    /// The high watermark, published whenever it moves (and re-published when the replica
    /// state changes) so fetch long-polls and acks=all waits wake without polling. Dropped with
    /// the partition, which also wakes waiters.
    pub(crate) hw: watch::Sender<i64>,
    /// The log end offset, published after every append: replica fetches long-poll on it.
    pub(crate) leo: watch::Sender<i64>,
    /// Role, assignment and leader bookkeeping (see [`crate::replica`]). Lock order: this lock
    /// before the log's; never held across an `.await`.
    pub(crate) replica: Mutex<ReplicaState>,
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
    /// A partition of node `node` with its first assignment applied (a leader records its epoch
    /// in the log's epoch cache, which may write the checkpoint).
    pub fn new(
        tp: TopicPartition,
        log: SharedLog,
        assignment: PartitionAssignment,
        node: BrokerId,
    ) -> Result<Self> {
        let (hw, leo) = {
            let l = log.read();
            (l.high_watermark(), l.log_end_offset())
        };
        let partition = Partition {
            tp,
            log,
            hw: watch::Sender::new(hw),
            leo: watch::Sender::new(leo),
            replica: Mutex::new(ReplicaState::new(node)),
        };
        partition.apply_assignment(assignment, now_ms())?;
        Ok(partition)
    }

    /// The partition's current assignment.
    pub fn assignment(&self) -> PartitionAssignment {
        self.replica.lock().assignment().clone()
    }

    /// Subscribes to high-watermark changes. Subscribe *before* reading, so an append between
    /// the read and the wait is not missed.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.hw.subscribe()
    }

    /// Subscribes to log-end-offset changes (replica fetch long-polls).
    pub fn subscribe_log_end(&self) -> watch::Receiver<i64> {
        self.leo.subscribe()
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
    /// The topic's partition count (in a cluster, not every partition is local).
    pub partition_count: i32,
    /// The partitions this broker holds a log of, in partition order. On a single node that is
    /// every partition (index = partition number); in a cluster only those it is a replica of.
    pub partitions: Vec<Arc<Partition>>,
}

impl Topic {
    /// The local partition with this index, if this broker holds it.
    pub fn local(&self, partition: i32) -> Option<&Arc<Partition>> {
        self.partitions
            .binary_search_by_key(&partition, |p| p.tp.partition)
            .ok()
            .and_then(|i| self.partitions.get(i))
    }
}

/// Where topics come from.
enum MetadataSource {
    /// A single node's metadata file. The mutex serializes persist-then-publish.
    Local {
        store: Box<dyn MetadataStore>,
        admin: Mutex<ClusterMetadata>,
    },
    /// The controller quorum.
    Quorum(Arc<QuorumMetadata>),
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
    metadata: MetadataSource,
    /// What each listener advertises, by listener name (`advertised` is one of them).
    advertised_by_listener: Vec<Listener>,
    logs: Arc<LogManager>,
    state: RwLock<State>,
    /// The metadata image the broker currently serves (controller's, or synthesized locally).
    image: watch::Sender<Arc<MetadataImage>>,
    /// What the reconciler applied so far; its mutex serializes image application.
    applied: Mutex<LocalState>,
    /// The offset the image must reach before logs found on disk may be deleted (the broker's
    /// registration; see [`reconcile::plan`]). `u64::MAX` until the quorum link sets it.
    catch_up_offset: std::sync::atomic::AtomicU64,
    /// Consumer groups and committed offsets (`__consumer_offsets`).
    groups: GroupCoordinator,
    /// Producer ids for InitProducerId.
    producer_ids: Box<dyn ProducerIdAllocator>,
    /// The rest of the cluster (a [`LocalLink`] on a single node).
    link: Arc<dyn ClusterLink>,
    /// Bumped whenever a partition's role, leader or leader epoch changes: the follower
    /// fetchers re-read which partitions they follow from where.
    replica_changes: watch::Sender<u64>,
    /// Wakes the ISR maintenance task early (a follower outside the ISR made progress).
    isr_check: tokio::sync::Notify,
    /// Replication counters.
    replica_stats: ReplicaStats,
    /// Fault injection for tests of the replication protocol (all off by default).
    failpoints: Failpoints,
    /// Per-API request counts, errors and latencies (the admin port's `/metrics`).
    request_metrics: RequestMetrics,
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
    ///
    /// This is the single-node seam (a local metadata file, no controller) that the broker
    /// crate's tests use; `gregor server` runs [`Broker::open_cluster`].
    pub fn open(config: BrokerConfig, bound: SocketAddr) -> Result<Broker> {
        std::fs::create_dir_all(&config.log_dir).map_err(|source| BrokerError::Io {
            context: "create log.dirs",
            source,
        })?;
        let store = Box::new(FileMetadataStore::new(&config.log_dir));
        Broker::open_with_store(config, bound, store)
    }

    /// Like [`Broker::open`] with another metadata store.
    pub fn open_with_store(
        config: BrokerConfig,
        bound: SocketAddr,
        store: Box<dyn MetadataStore>,
    ) -> Result<Broker> {
        let link = Arc::new(LocalLink::new(config.node_id));
        Broker::open_with_link(config, bound, store, link)
    }

    /// Like [`Broker::open_with_store`] with the link to the rest of the cluster (in-process
    /// replication tests use a fake controller). Every partition starts as a single node's (led
    /// by `link.node_id()` at epoch 0) until the test pushes its real assignment with
    /// [`Broker::apply_assignment`].
    pub fn open_with_link(
        config: BrokerConfig,
        bound: SocketAddr,
        store: Box<dyn MetadataStore>,
        link: Arc<dyn ClusterLink>,
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
        let producer_ids = Box::new(LocalProducerIdAllocator::new(&config.log_dir));
        let source = MetadataSource::Local {
            store,
            admin: Mutex::new(metadata.clone()),
        };
        let broker = Broker::new(config, bound, source, producer_ids, link, None)?;
        let mut state = State::default();
        for (name, meta) in &metadata.topics {
            let topic = broker.build_topic(name, meta, &[])?;
            state.by_id.insert(meta.id, name.clone());
            state.topics.insert(name.clone(), Arc::new(topic));
        }
        *broker.state.write() = state;
        broker.publish_local_image(&metadata);
        // A restarted coordinator rebuilds groups and offsets before serving anyone.
        broker.groups.load(&broker)?;
        Ok(broker)
    }

    /// Opens the broker of a cluster: the partition logs on disk, and no topics until the
    /// controller's image arrives through [`Broker::apply_image`] (see [`crate::quorum`], which
    /// also loads the consumer groups once the image caught up). `image` is the watch the quorum
    /// link reads too.
    pub fn open_cluster(
        config: BrokerConfig,
        bound: SocketAddr,
        quorum: Arc<QuorumMetadata>,
        producer_ids: Box<dyn ProducerIdAllocator>,
        link: Arc<dyn ClusterLink>,
        image: watch::Sender<Arc<MetadataImage>>,
    ) -> Result<Broker> {
        config.validate()?;
        std::fs::create_dir_all(&config.log_dir).map_err(|source| BrokerError::Io {
            context: "create log.dirs",
            source,
        })?;
        Broker::new(
            config,
            bound,
            MetadataSource::Quorum(quorum),
            producer_ids,
            link,
            Some(image),
        )
    }

    fn new(
        config: BrokerConfig,
        bound: SocketAddr,
        metadata: MetadataSource,
        producer_ids: Box<dyn ProducerIdAllocator>,
        link: Arc<dyn ClusterLink>,
        image: Option<watch::Sender<Arc<MetadataImage>>>,
    ) -> Result<Broker> {
        let logs = Arc::new(LogManager::open(
            &config.log_dir,
            default_log_config(&config),
            now_ms(),
        )?);
        // Logs found on disk are known to the reconciler (so deleted topics' logs go), but have
        // no assignment applied yet.
        let mut applied = LocalState::default();
        for (tp, _) in logs.partitions() {
            applied.partitions.insert((tp.topic, tp.partition), None);
        }
        let advertised = config.advertised_endpoint(bound);
        let advertised_by_listener = config.advertised_endpoints(bound);
        let groups = GroupCoordinator::new(CoordinatorConfig::from_broker(&config));
        Ok(Broker {
            config,
            advertised,
            advertised_by_listener,
            metadata,
            logs,
            state: RwLock::new(State::default()),
            image: image.unwrap_or_else(|| watch::Sender::new(Arc::default())),
            applied: Mutex::new(applied),
            catch_up_offset: std::sync::atomic::AtomicU64::new(u64::MAX),
            groups,
            producer_ids,
            link,
            replica_changes: watch::Sender::new(0),
            isr_check: tokio::sync::Notify::new(),
            replica_stats: ReplicaStats::default(),
            failpoints: Failpoints::default(),
            request_metrics: RequestMetrics::default(),
        })
    }

    /// The metadata image the broker serves now.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.borrow().clone()
    }

    /// Subscribes to image changes.
    pub fn subscribe_image(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.image.subscribe()
    }

    /// Sets the offset (the broker's registration) from which an image is complete enough to
    /// delete logs found on disk that it does not mention.
    pub fn set_catch_up_offset(&self, offset: u64) {
        self.catch_up_offset
            .store(offset, std::sync::atomic::Ordering::Release);
    }

    /// Whether every log found at startup was closed cleanly (its clean-shutdown marker was
    /// present), i.e. nothing unflushed can have been lost. Vacuously true without logs.
    pub fn previous_shutdown_clean(&self) -> bool {
        self.logs
            .partitions()
            .iter()
            .all(|(_, log)| log.read().recovery_info().clean)
    }

    /// Whether topics come from the controller quorum.
    pub fn in_cluster(&self) -> bool {
        matches!(self.metadata, MetadataSource::Quorum(_))
    }

    /// The replication factor `__consumer_offsets` may have: the number of controller voters in
    /// a cluster (Kafka refuses to create it with fewer live brokers than
    /// `offsets.topic.replication.factor`; Gregor caps it so one node keeps working), 1 alone.
    pub fn offsets_topic_replication_cap(&self) -> i16 {
        match &self.metadata {
            MetadataSource::Local { .. } => 1,
            MetadataSource::Quorum(q) => i16::try_from(q.voter_count()).unwrap_or(i16::MAX),
        }
    }

    /// Publishes the single-node image of a local metadata file.
    fn publish_local_image(&self, metadata: &ClusterMetadata) {
        let node = self.config.node_id;
        let previous = self.image.borrow().offset;
        let mut img = MetadataImage {
            offset: previous + 1,
            ..MetadataImage::default()
        };
        img.brokers.insert(
            node,
            BrokerRegistration {
                id: node,
                epoch: 0,
                incarnation: Uuid::nil(),
                endpoints: self
                    .advertised_by_listener
                    .iter()
                    .map(|l| ImageEndpoint {
                        name: l.name.clone(),
                        host: l.endpoint.host.clone(),
                        port: l.endpoint.port,
                    })
                    .collect(),
                rack: None,
                fenced: false,
            },
        );
        for (name, meta) in &metadata.topics {
            let partition = PartitionState {
                replicas: vec![node],
                isr: vec![node],
                leader: Some(node),
                leader_epoch: LEADER_EPOCH,
                partition_epoch: 0,
                elr: Vec::new(),
                last_known_leader: None,
            };
            img.topics.insert(
                name.clone(),
                TopicImage {
                    id: meta.id,
                    partitions: vec![partition; meta.partitions.max(0) as usize],
                    configs: meta.configs.clone(),
                },
            );
        }
        self.image.send_replace(Arc::new(img));
    }

    /// Makes the broker match a controller image: opens logs of new local replicas, deletes
    /// logs of deleted topics, applies config overrides, publishes the topics, hands every
    /// changed assignment to [`Broker::apply_assignment`], then publishes the image. Blocking
    /// (file I/O); called by the quorum link for every image, in order.
    pub fn apply_image(&self, image: Arc<MetadataImage>) -> Result<()> {
        let mut applied = self.applied.lock();
        let node = self.config.node_id;
        let caught_up = image.offset
            >= self
                .catch_up_offset
                .load(std::sync::atomic::Ordering::Acquire);
        let actions = reconcile::plan(&image, node, &applied, caught_up);
        let mut opened: HashMap<(String, i32), Arc<Partition>> = HashMap::new();
        let mut deleted = Vec::new();
        let mut assigns = Vec::new();
        for action in actions {
            match action {
                Action::DeleteLog { topic, partition } => {
                    applied.partitions.remove(&(topic.clone(), partition));
                    deleted.push(TopicPartition { topic, partition });
                }
                Action::OpenLog { topic, partition } => {
                    let configs = image
                        .topics
                        .get(&topic)
                        .map(|t| t.configs.clone())
                        .unwrap_or_default();
                    let tp = TopicPartition {
                        topic: topic.clone(),
                        partition,
                    };
                    // A log found on disk with the same name is reused (it is this topic's:
                    // deleted topics' logs were removed above).
                    let log = match self.logs.get(&tp) {
                        Some(log) if !deleted.contains(&tp) => {
                            // Opened at start with the broker defaults: apply the topic's.
                            log.write().set_config(self.log_config(&configs));
                            log
                        }
                        _ => {
                            if deleted.contains(&tp) {
                                self.logs.delete(&tp)?;
                                deleted.retain(|d| d != &tp);
                            }
                            self.logs
                                .get_or_create(&tp, self.log_config(&configs), now_ms())?
                        }
                    };
                    // No assignment yet: the Assign action that follows is a change.
                    let p = Arc::new(Partition::new(tp, log, unassigned(), node)?);
                    opened.insert((topic, partition), p);
                }
                Action::SetConfigs { topic, configs } => {
                    // Logs opened by this plan already got the new configs; the topic's
                    // other local logs get them here.
                    let config = self.log_config(&configs);
                    if let Some(existing) = self.topic(&topic) {
                        for p in &existing.partitions {
                            p.log.write().set_config(config.clone());
                        }
                    }
                }
                Action::Assign {
                    topic,
                    partition,
                    assignment,
                } => assigns.push((topic, partition, assignment)),
            }
        }
        // The new topic map: every topic of the image, with its local partitions.
        let mut state = State::default();
        {
            let current = self.state.read();
            for (name, t) in &image.topics {
                let mut partitions = Vec::new();
                for index in 0..t.partitions.len() {
                    let Ok(index) = i32::try_from(index) else {
                        continue;
                    };
                    let key = (name.clone(), index);
                    if let Some(p) = opened.get(&key) {
                        partitions.push(Arc::clone(p));
                    } else if let Some(p) = current
                        .topics
                        .get(name)
                        .filter(|old| old.id == t.id)
                        .and_then(|old| old.local(index))
                    {
                        partitions.push(Arc::clone(p));
                    }
                }
                state.by_id.insert(t.id, name.clone());
                state.topics.insert(
                    name.clone(),
                    Arc::new(Topic {
                        name: name.clone(),
                        id: t.id,
                        configs: t.configs.clone(),
                        partition_count: i32::try_from(t.partitions.len()).unwrap_or(i32::MAX),
                        partitions,
                    }),
                );
            }
        }
        // Swap first, then delete: dropping the old partitions wakes their waiting fetches.
        let old = std::mem::replace(&mut *self.state.write(), state);
        drop(old);
        for tp in deleted {
            tracing::info!(topic = %tp.topic, partition = tp.partition, "deleting log of a deleted topic");
            self.logs.delete(&tp)?;
        }
        applied.topic_ids = image
            .topics
            .iter()
            .map(|(n, t)| (n.clone(), t.id))
            .collect();
        applied.topic_configs = image
            .topics
            .iter()
            .map(|(n, t)| (n.clone(), t.configs.clone()))
            .collect();
        self.apply_assignments(&assigns)?;
        for (topic, partition, assignment) in assigns {
            applied
                .partitions
                .insert((topic, partition), Some(assignment));
        }
        drop(applied);
        self.image.send_replace(image);
        Ok(())
    }

    /// Applies many partitions' assignments, in parallel when there are several: a leader
    /// change writes the partition's epoch cache with an fsync, and a dead broker moves a third
    /// of all leaderships at once (one after another, 50 `__consumer_offsets` partitions put
    /// the last new leader ~0.6 s late on this 2-core machine). Partitions are independent;
    /// a worker stops at its first error, which is returned.
    fn apply_assignments(&self, assigns: &[(String, i32, PartitionAssignment)]) -> Result<()> {
        const WORKERS: usize = 8;
        let apply_all = |part: &[(String, i32, PartitionAssignment)]| {
            part.iter()
                .try_for_each(|(t, p, a)| self.apply_assignment(t, *p, a.clone()))
        };
        if assigns.len() <= 1 {
            return apply_all(assigns);
        }
        let chunk = assigns.len().div_ceil(WORKERS);
        std::thread::scope(|scope| {
            let workers: Vec<_> = assigns
                .chunks(chunk)
                .map(|part| scope.spawn(move || apply_all(part)))
                .collect();
            // A panic stays a panic, as it would be without the workers; the scope joins the
            // rest after an error.
            workers
                .into_iter()
                .try_for_each(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
        })
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
    ///
    /// Idempotent and level-triggered: the partition derives its role (leader, follower of
    /// some broker, or none) from the assignment and this node's id, and acts only on what
    /// changed (see [`crate::replica`]). An assignment older than the one held (by leader epoch,
    /// then partition epoch) is ignored. A leader change may write the epoch cache (fsync).
    pub fn apply_assignment(
        &self,
        topic: &str,
        partition: i32,
        assignment: PartitionAssignment,
    ) -> Result<()> {
        let Ok(p) = self.partition(topic, partition) else {
            return Ok(());
        };
        let changed = p.apply_assignment(assignment, now_ms())?;
        if changed.role_changed {
            self.replica_changes.send_modify(|v| *v = v.wrapping_add(1));
        }
        if let Some(t) = self.topic(topic) {
            p.maybe_advance_high_watermark(self.min_insync_replicas(&t))?;
        }
        Ok(())
    }

    /// Notified when any partition's role, leader or leader epoch changes.
    pub fn replica_changes(&self) -> watch::Receiver<u64> {
        self.replica_changes.subscribe()
    }

    /// Wakes the ISR maintenance task.
    pub(crate) fn isr_check(&self) -> &tokio::sync::Notify {
        &self.isr_check
    }

    /// Per-API request metrics (recorded by the Kafka listener's dispatch).
    pub fn request_metrics(&self) -> &RequestMetrics {
        &self.request_metrics
    }

    /// Replication counters.
    pub fn replica_stats(&self) -> &ReplicaStats {
        &self.replica_stats
    }

    /// Fault injection for replication tests (see [`Failpoints`]).
    pub fn failpoints(&self) -> &Failpoints {
        &self.failpoints
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

    /// The cluster id: the quorum's, or the one persisted with a single node's metadata.
    pub fn cluster_id(&self) -> String {
        match &self.metadata {
            MetadataSource::Local { admin, .. } => admin.lock().cluster_id.clone(),
            MetadataSource::Quorum(q) => q.cluster_id().to_string(),
        }
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
            .and_then(|t| t.local(partition).cloned())
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
            partitions.push(Arc::new(Partition::new(
                tp,
                log,
                assignment,
                self.link.node_id(),
            )?));
        }
        Ok(Topic {
            name: name.to_string(),
            id: meta.id,
            configs: meta.configs.clone(),
            partition_count: meta.partitions,
            partitions,
        })
    }

    /// The local metadata file and its lock, or `None` in a cluster.
    fn local(&self) -> Option<(&dyn MetadataStore, &Mutex<ClusterMetadata>)> {
        match &self.metadata {
            MetadataSource::Local { store, admin } => Some((store.as_ref(), admin)),
            MetadataSource::Quorum(_) => None,
        }
    }

    /// Persists `next`, then opens logs and publishes the topic. Caller holds the admin lock.
    fn commit(
        &self,
        store: &dyn MetadataStore,
        admin: &mut ClusterMetadata,
        next: ClusterMetadata,
        name: &str,
    ) -> Result<Arc<Topic>> {
        store.save(&next)?;
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
        {
            let mut state = self.state.write();
            state.by_id.insert(topic.id, name.to_string());
            state.topics.insert(name.to_string(), Arc::clone(&topic));
        }
        self.publish_local_image(admin);
        // The metadata path hands every new partition its assignment once (the contract of
        // `apply_assignment`), on a single node as in a cluster.
        for p in topic.partitions.iter().skip(existing.len()) {
            self.apply_assignment(
                name,
                p.tp.partition,
                PartitionAssignment::single_node(self.config.node_id),
            )?;
        }
        Ok(topic)
    }

    /// Waits (bounded) until this broker's image reached `offset`, so a client's next request
    /// sees its own write. Blocking.
    fn await_image(&self, q: &QuorumMetadata, offset: u64) -> Result<()> {
        q.await_offset(self.image.subscribe(), offset)
    }

    /// CreateTopics: validates and creates a topic (through the controller in a cluster).
    /// Blocking (fsync or a controller round trip).
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
        let Some((store, admin)) = self.local() else {
            return self.create_topic_in_cluster(name, partitions, rf, configs, validate_only);
        };
        if rf != 1 {
            return Err(BrokerError::InvalidReplicationFactor(format!(
                "replication factor {rf} is larger than the 1 available broker"
            )));
        }
        let mut admin = admin.lock();
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
        self.commit(store, &mut admin, next, name)?;
        tracing::info!(topic = name, partitions, id = %meta.id, "created topic");
        Ok(meta)
    }

    fn create_topic_in_cluster(
        &self,
        name: &str,
        partitions: i32,
        rf: i16,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<TopicMetadata> {
        let MetadataSource::Quorum(q) = &self.metadata else {
            return Err(BrokerError::InvalidRequest("not in a cluster".into()));
        };
        let image = self.image();
        let active = image.brokers.values().filter(|b| !b.fenced).count();
        if rf < 1 || usize::try_from(rf).is_ok_and(|rf| rf > active) {
            return Err(BrokerError::InvalidReplicationFactor(format!(
                "replication factor {rf} is not between 1 and the {active} available brokers"
            )));
        }
        if validate_only {
            // Kafka's validate-only runs the same checks without the write; the controller's
            // own checks (placement) are the ones above.
            if image.topics.contains_key(name) {
                return Err(BrokerError::TopicAlreadyExists(name.to_string()));
            }
            return Ok(TopicMetadata {
                id: Uuid::nil(),
                partitions,
                configs,
            });
        }
        let (id, offset) = q.create_topic(name, partitions, rf, &configs)?;
        self.await_image(q, offset)?;
        tracing::info!(topic = name, partitions, id = %id, "created topic through the controller");
        Ok(TopicMetadata {
            id,
            partitions,
            configs,
        })
    }

    /// Auto-creates a topic (Metadata/Produce) when `auto.create.topics.enable` allows it.
    /// Returns the topic if it exists afterwards. Blocking (fsync or a controller round trip).
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

    /// DeleteTopics: forgets the topic, then deletes its logs. Blocking (fsync, file removal,
    /// or a controller round trip).
    pub fn delete_topic(&self, name: &str) -> Result<Uuid> {
        let unknown = || BrokerError::UnknownTopicOrPartition {
            topic: name.to_string(),
            partition: -1,
        };
        if name == OFFSETS_TOPIC && self.topic(name).is_some() {
            return Err(BrokerError::InvalidRequest(format!(
                "internal topic {OFFSETS_TOPIC} cannot be deleted"
            )));
        }
        let Some((store, admin)) = self.local() else {
            let MetadataSource::Quorum(q) = &self.metadata else {
                return Err(unknown());
            };
            let id = self.topic(name).map(|t| t.id).ok_or_else(unknown)?;
            if !self.config.delete_topic_enable {
                return Err(BrokerError::InvalidRequest(
                    "topic deletion is disabled".into(),
                ));
            }
            let offset = q.delete_topic(name)?;
            self.await_image(q, offset)?;
            tracing::info!(topic = name, "deleted topic through the controller");
            return Ok(id);
        };
        let mut admin = admin.lock();
        let Some(meta) = admin.topics.get(name).cloned() else {
            return Err(unknown());
        };
        if !self.config.delete_topic_enable {
            return Err(BrokerError::InvalidRequest(
                "topic deletion is disabled".into(),
            ));
        }
        let mut next = admin.clone();
        next.topics.remove(name);
        store.save(&next)?;
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
        self.publish_local_image(&admin);
        tracing::info!(topic = name, "deleted topic");
        Ok(meta.id)
    }

    /// CreatePartitions: grows a topic to `count` partitions. Blocking (fsync or a controller
    /// round trip).
    pub fn create_partitions(&self, name: &str, count: i32, validate_only: bool) -> Result<()> {
        let Some(current) = self.topic(name).map(|t| t.partition_count) else {
            return Err(BrokerError::UnknownTopicOrPartition {
                topic: name.to_string(),
                partition: -1,
            });
        };
        if count <= current {
            return Err(BrokerError::InvalidPartitions(format!(
                "topic {name} has {current} partitions; the new count {count} must be larger"
            )));
        }
        if validate_only {
            return Ok(());
        }
        let Some((store, admin)) = self.local() else {
            let MetadataSource::Quorum(q) = &self.metadata else {
                return Ok(());
            };
            let offset = q.create_partitions(name, count)?;
            return self.await_image(q, offset);
        };
        let mut admin = admin.lock();
        let mut next = admin.clone();
        match next.topics.get_mut(name) {
            Some(m) if m.partitions < count => m.partitions = count,
            Some(m) => {
                return Err(BrokerError::InvalidPartitions(format!(
                    "topic {name} has {} partitions; the new count {count} must be larger",
                    m.partitions
                )));
            }
            None => {
                return Err(BrokerError::UnknownTopicOrPartition {
                    topic: name.to_string(),
                    partition: -1,
                });
            }
        }
        self.commit(store, &mut admin, next, name)?;
        Ok(())
    }

    /// Replaces a topic's config overrides (already validated). Blocking (fsync or a
    /// controller round trip).
    pub fn set_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<()> {
        let Some(topic) = self.topic(name) else {
            return Err(BrokerError::UnknownTopicOrPartition {
                topic: name.to_string(),
                partition: -1,
            });
        };
        if validate_only {
            return Ok(());
        }
        let Some((store, admin)) = self.local() else {
            let MetadataSource::Quorum(q) = &self.metadata else {
                return Ok(());
            };
            let changes = config_changes(&topic.configs, &configs);
            if changes.is_empty() {
                return Ok(());
            }
            let offset = q.alter_topic_configs(name, changes)?;
            return self.await_image(q, offset);
        };
        let mut admin = admin.lock();
        if !admin.topics.contains_key(name) {
            return Err(BrokerError::UnknownTopicOrPartition {
                topic: name.to_string(),
                partition: -1,
            });
        }
        let mut next = admin.clone();
        if let Some(m) = next.topics.get_mut(name) {
            m.configs = configs;
        }
        self.commit(store, &mut admin, next, name)?;
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

/// The assignment of a partition before the metadata path handed it one.
fn unassigned() -> PartitionAssignment {
    PartitionAssignment {
        leader: None,
        leader_epoch: -1,
        partition_epoch: -1,
        replicas: Vec::new(),
        isr: Vec::new(),
        elr: Vec::new(),
    }
}

/// The changes that turn `current` config overrides into `wanted` (`None` deletes a key).
pub fn config_changes(
    current: &BTreeMap<String, String>,
    wanted: &BTreeMap<String, String>,
) -> Vec<(String, Option<String>)> {
    let removed = current
        .keys()
        .filter(|k| !wanted.contains_key(*k))
        .map(|k| (k.clone(), None));
    let set = wanted
        .iter()
        .filter(|(k, v)| current.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), Some(v.clone())));
    removed.chain(set).collect()
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
