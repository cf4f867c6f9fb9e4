//! In-process replication cluster: N brokers in temp dirs, each serving Kafka and the gRPC
//! `Replication` service on 127.0.0.1:0, wired to a [`FakeController`] that holds the
//! authoritative partition assignments, commits AlterIsr like the real controller (epoch
//! checks, partition epoch bump) and pushes every change to every live broker.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use gregor_broker::cluster::{
    AlterIsr, BoxFuture, BrokerId, ClusterLink, IsrCommitted, PartitionAssignment,
};
use gregor_broker::metadata_store::{
    ClusterMetadata, FileMetadataStore, MetadataStore, MetadataStoreError,
};
use gregor_broker::{Broker, BrokerConfig, BrokerError};
use gregor_client::Connection;
use gregor_client::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use gregor_client::kafka_protocol::messages::fetch_response::PartitionData;
use gregor_client::kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use gregor_client::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use gregor_client::kafka_protocol::messages::produce_response::PartitionProduceResponse;
use gregor_client::kafka_protocol::messages::{
    FetchRequest, OffsetForLeaderEpochRequest, ProduceRequest, TopicName,
};
use gregor_client::kafka_protocol::protocol::StrBytes;
use gregor_client::kafka_protocol::records::Compression;
use gregor_client::records::{ProducerRecord, encode_batch};
use gregor_storage::BatchIter;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Upper bound for any single wait in a test.
pub const DEADLINE: Duration = Duration::from_secs(20);
/// The cluster id every test broker shares.
pub const CLUSTER_ID: &str = "replication-test";
pub const TOPIC: &str = "t";

/// Polls `cond` every few ms until it holds; panics after [`DEADLINE`].
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A metadata file store whose first load yields the shared cluster id.
#[derive(Debug)]
struct SharedIdStore(FileMetadataStore);

impl MetadataStore for SharedIdStore {
    fn load(&self) -> Result<Option<ClusterMetadata>, MetadataStoreError> {
        Ok(Some(self.0.load()?.unwrap_or(ClusterMetadata {
            cluster_id: CLUSTER_ID.into(),
            topics: BTreeMap::new(),
        })))
    }
    fn save(&self, m: &ClusterMetadata) -> Result<(), MetadataStoreError> {
        self.0.save(m)
    }
}

#[derive(Default)]
struct Inner {
    assignments: BTreeMap<(String, i32), PartitionAssignment>,
    brokers: BTreeMap<BrokerId, (String, Weak<Broker>)>,
}

/// The authoritative metadata and a controller-like AlterIsr.
#[derive(Default)]
pub struct FakeController {
    inner: Mutex<Inner>,
    /// While true, AlterIsr calls wait (D6).
    blocked: watch::Sender<bool>,
    /// AlterIsr calls received so far (including blocked ones).
    pub alter_calls: watch::Sender<u64>,
}

impl std::fmt::Debug for FakeController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FakeController")
    }
}

impl FakeController {
    fn push(&self, topic: &str, partition: i32) {
        let (a, brokers) = {
            let inner = self.inner.lock();
            let Some(a) = inner
                .assignments
                .get(&(topic.to_string(), partition))
                .cloned()
            else {
                return;
            };
            let brokers: Vec<_> = inner
                .brokers
                .values()
                .filter_map(|(_, b)| b.upgrade())
                .collect();
            (a, brokers)
        };
        for b in brokers {
            b.apply_assignment(topic, partition, a.clone()).unwrap();
        }
    }

    /// Replaces an assignment and pushes it to every live broker.
    pub fn set(&self, topic: &str, partition: i32, a: PartitionAssignment) {
        self.inner
            .lock()
            .assignments
            .insert((topic.to_string(), partition), a);
        self.push(topic, partition);
    }

    pub fn get(&self, topic: &str, partition: i32) -> PartitionAssignment {
        self.inner.lock().assignments[&(topic.to_string(), partition)].clone()
    }

    /// Elects `leader` with a new leader epoch; `isr` replaces the ISR when given.
    pub fn elect(&self, topic: &str, partition: i32, leader: BrokerId, isr: Option<Vec<BrokerId>>) {
        let mut a = self.get(topic, partition);
        a.leader = Some(leader);
        a.leader_epoch += 1;
        a.partition_epoch += 1;
        if let Some(isr) = isr {
            a.isr = isr;
        }
        self.set(topic, partition, a);
    }

    pub fn block_alter_isr(&self, blocked: bool) {
        self.blocked.send_replace(blocked);
    }

    async fn alter_isr(&self, req: AlterIsr) -> Result<IsrCommitted, BrokerError> {
        self.alter_calls.send_modify(|n| *n += 1);
        let mut rx = self.blocked.subscribe();
        while *rx.borrow_and_update() {
            if rx.changed().await.is_err() {
                break;
            }
        }
        let committed = {
            let mut inner = self.inner.lock();
            let Some(a) = inner
                .assignments
                .get_mut(&(req.topic.clone(), req.partition))
            else {
                return Err(BrokerError::InvalidRequest("unknown partition".into()));
            };
            if a.leader_epoch != req.leader_epoch || a.partition_epoch != req.partition_epoch {
                return Err(BrokerError::InvalidRequest(format!(
                    "stale AlterIsr: held ({}, {}), got ({}, {})",
                    a.leader_epoch, a.partition_epoch, req.leader_epoch, req.partition_epoch
                )));
            }
            a.isr = req.new_isr.clone();
            a.partition_epoch += 1;
            IsrCommitted {
                leader_epoch: a.leader_epoch,
                partition_epoch: a.partition_epoch,
                isr: a.isr.clone(),
            }
        };
        self.push(&req.topic, req.partition);
        Ok(committed)
    }
}

#[derive(Debug)]
struct FakeLink {
    node: BrokerId,
    ctl: Arc<FakeController>,
}

impl ClusterLink for FakeLink {
    fn node_id(&self) -> BrokerId {
        self.node
    }
    fn broker_epoch(&self) -> u64 {
        1
    }
    fn replication_address(&self, broker: BrokerId) -> Option<String> {
        self.ctl
            .inner
            .lock()
            .brokers
            .get(&broker)
            .map(|(a, _)| a.clone())
    }
    fn alter_isr(&self, request: AlterIsr) -> BoxFuture<'_, gregor_broker::Result<IsrCommitted>> {
        Box::pin(self.ctl.alter_isr(request))
    }
}

pub struct Node {
    pub broker: Arc<Broker>,
    pub kafka: String,
    pub replication: String,
    kafka_stop: CancellationToken,
    repl_stop: CancellationToken,
    kafka_task: JoinHandle<gregor_broker::Result<()>>,
    repl_task: JoinHandle<gregor_broker::Result<()>>,
}

pub struct Cluster {
    pub ctl: Arc<FakeController>,
    pub nodes: BTreeMap<BrokerId, Node>,
    dirs: BTreeMap<BrokerId, tempfile::TempDir>,
    configure: fn(&mut BrokerConfig),
}

fn default_config(c: &mut BrokerConfig) {
    c.replica_fetch_backoff_ms = 20;
    c.replica_fetch_wait_max_ms = 200;
    c.min_insync_replicas = 2;
}

impl Cluster {
    /// `n` brokers (ids 1..=n) with min.insync.replicas=2, fast fetch backoff, and `configure`.
    pub async fn start(n: i32, configure: fn(&mut BrokerConfig)) -> Cluster {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter("gregor_broker=debug")
            .try_init();
        let mut c = Cluster {
            ctl: Arc::new(FakeController::default()),
            nodes: BTreeMap::new(),
            dirs: BTreeMap::new(),
            configure,
        };
        for id in 1..=n {
            c.dirs.insert(id, tempfile::tempdir().unwrap());
            c.start_node(id).await;
        }
        c
    }

    pub fn dir(&self, id: BrokerId) -> &std::path::Path {
        self.dirs[&id].path()
    }

    /// Opens broker `id` from its directory, pushes the current assignments, then serves.
    pub async fn start_node(&mut self, id: BrokerId) {
        let mut config = BrokerConfig {
            node_id: id,
            log_dir: self.dirs[&id].path().to_path_buf(),
            ..BrokerConfig::default()
        };
        config.listener = gregor_broker::config::Endpoint {
            host: "127.0.0.1".into(),
            port: 0,
        };
        default_config(&mut config);
        (self.configure)(&mut config);
        let kafka = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let repl = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let bound = kafka.local_addr().unwrap();
        let link = Arc::new(FakeLink {
            node: id,
            ctl: Arc::clone(&self.ctl),
        });
        let store = Box::new(SharedIdStore(FileMetadataStore::new(&config.log_dir)));
        let broker = Arc::new(Broker::open_with_link(config, bound, store, link).unwrap());
        let repl_addr = repl.local_addr().unwrap().to_string();
        let assignments: Vec<_> = {
            let mut inner = self.ctl.inner.lock();
            inner
                .brokers
                .insert(id, (repl_addr.clone(), Arc::downgrade(&broker)));
            inner
                .assignments
                .iter()
                .map(|(k, a)| (k.clone(), a.clone()))
                .collect()
        };
        for ((topic, p), a) in assignments {
            broker.apply_assignment(&topic, p, a).unwrap();
        }
        let kafka_stop = CancellationToken::new();
        let repl_stop = CancellationToken::new();
        let kafka_task = tokio::spawn(gregor_broker::run(
            kafka,
            Arc::clone(&broker),
            kafka_stop.clone(),
        ));
        let repl_task = tokio::spawn(gregor_broker::replica::serve(
            repl,
            Arc::clone(&broker),
            repl_stop.clone(),
        ));
        self.nodes.insert(
            id,
            Node {
                broker,
                kafka: bound.to_string(),
                replication: repl_addr,
                kafka_stop,
                repl_stop,
                kafka_task,
                repl_task,
            },
        );
    }

    /// Stops broker `id` cleanly (replication first, then Kafka, which closes the logs).
    pub async fn stop_node(&mut self, id: BrokerId) {
        let node = self.nodes.remove(&id).expect("running node");
        node.repl_stop.cancel();
        tokio::time::timeout(DEADLINE, node.repl_task)
            .await
            .expect("replication stops in time")
            .unwrap()
            .unwrap();
        node.kafka_stop.cancel();
        tokio::time::timeout(DEADLINE, node.kafka_task)
            .await
            .expect("kafka stops in time")
            .unwrap()
            .unwrap();
        self.ctl.inner.lock().brokers.remove(&id);
        let weak = Arc::downgrade(&node.broker);
        drop(node.broker);
        // Nothing else may keep the broker (and its open logs) alive.
        wait_until("the broker to be dropped", || weak.upgrade().is_none()).await;
    }

    pub async fn restart_node(&mut self, id: BrokerId) {
        self.stop_node(id).await;
        self.start_node(id).await;
    }

    pub fn broker(&self, id: BrokerId) -> &Arc<Broker> {
        &self.nodes[&id].broker
    }

    /// Creates `TOPIC` (one partition, locally rf=1) on every running broker, then assigns it
    /// replicas 1..=n led by `leader` at epoch 1.
    pub fn create_topic(&self, replicas: Vec<BrokerId>, leader: BrokerId) {
        for n in self.nodes.values() {
            n.broker
                .create_topic(TOPIC, 1, 1, Default::default(), false)
                .unwrap();
        }
        self.ctl.set(
            TOPIC,
            0,
            PartitionAssignment {
                leader: Some(leader),
                leader_epoch: 1,
                partition_epoch: 1,
                isr: replicas.clone(),
                replicas,
                elr: Vec::new(),
            },
        );
    }

    pub fn leo(&self, id: BrokerId) -> i64 {
        self.broker(id)
            .partition(TOPIC, 0)
            .unwrap()
            .log
            .read()
            .log_end_offset()
    }

    pub fn hw(&self, id: BrokerId) -> i64 {
        self.broker(id)
            .partition(TOPIC, 0)
            .unwrap()
            .log
            .read()
            .high_watermark()
    }

    /// (base offset, leader epoch, CRC) of every batch in broker `id`'s log.
    pub fn batches(&self, id: BrokerId) -> Vec<(i64, i32, u32)> {
        let p = self.broker(id).partition(TOPIC, 0).unwrap();
        let log = p.log.read();
        let mut out = Vec::new();
        let mut offset = log.log_start_offset();
        while offset < log.log_end_offset() {
            let read = log.read(offset, 1 << 20, i64::MAX, true).unwrap();
            assert!(!read.records.is_empty());
            for item in BatchIter::new(read.records) {
                let (h, _) = item.unwrap();
                out.push((h.base_offset, h.partition_leader_epoch, h.crc));
                offset = h.last_offset() + 1;
            }
        }
        out
    }

    /// The epoch cache of broker `id`: (epoch, start offset).
    pub fn epochs(&self, id: BrokerId) -> Vec<(i32, i64)> {
        let p = self.broker(id).partition(TOPIC, 0).unwrap();
        let log = p.log.read();
        log.epoch_entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect()
    }

    pub async fn connect(&self, id: BrokerId) -> Connection {
        tokio::time::timeout(DEADLINE, Connection::connect(&self.nodes[&id].kafka))
            .await
            .unwrap()
            .unwrap()
    }
}

/// A one-record batch.
pub fn batch(value: &str) -> Bytes {
    encode_batch(
        &[ProducerRecord {
            key: None,
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
            headers: Vec::new(),
            timestamp: gregor_broker::broker::now_ms(),
        }],
        Compression::None,
    )
    .unwrap()
}

/// A produce request of one record to `TOPIC`-0.
pub fn produce_request(acks: i16, timeout_ms: i32, value: &str) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(timeout_ms)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(batch(value))),
                ]),
        ])
}

/// Produces one record to `TOPIC`-0 and returns the partition response.
pub async fn produce(
    conn: &mut Connection,
    acks: i16,
    timeout_ms: i32,
    value: &str,
) -> PartitionProduceResponse {
    let req = produce_request(acks, timeout_ms, value);
    let resp = tokio::time::timeout(DEADLINE, conn.send(&req))
        .await
        .unwrap()
        .unwrap();
    resp.responses[0].partition_responses[0].clone()
}

/// A consumer fetch of `TOPIC`-0 from `offset` (no waiting).
pub async fn fetch(conn: &mut Connection, offset: i64, leader_epoch: i32) -> PartitionData {
    let req = FetchRequest::default()
        .with_replica_id(gregor_client::kafka_protocol::messages::BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str(TOPIC)))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(offset)
                        .with_current_leader_epoch(leader_epoch)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ]);
    let resp = tokio::time::timeout(DEADLINE, conn.send(&req))
        .await
        .unwrap()
        .unwrap();
    resp.responses[0].partitions[0].clone()
}

/// Number of records in a fetched record set.
pub fn record_count(records: &Option<Bytes>) -> usize {
    records.as_ref().map_or(0, |r| {
        gregor_client::records::decode_records(r).unwrap().len()
    })
}

/// OffsetForLeaderEpoch (key 23) for `TOPIC`-0 as a consumer sends it: `current` is the leader
/// epoch the client knows (-1: unchecked), `epoch` the one whose end it asks for. Returns
/// (error code, epoch answered, end offset).
pub async fn offset_for_leader_epoch(
    conn: &mut Connection,
    current: i32,
    epoch: i32,
) -> (i16, i32, i64) {
    let req = OffsetForLeaderEpochRequest::default()
        .with_replica_id(gregor_client::kafka_protocol::messages::BrokerId(-1))
        .with_topics(vec![
            OffsetForLeaderTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str(TOPIC)))
                .with_partitions(vec![
                    OffsetForLeaderPartition::default()
                        .with_partition(0)
                        .with_current_leader_epoch(current)
                        .with_leader_epoch(epoch),
                ]),
        ]);
    let resp = tokio::time::timeout(DEADLINE, conn.send(&req))
        .await
        .unwrap()
        .unwrap();
    let p = &resp.topics[0].partitions[0];
    (p.error_code, p.leader_epoch, p.end_offset)
}
