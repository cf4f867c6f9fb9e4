//! A metadata-aware client for a whole cluster: routes partition requests to leaders and sends
//! admin requests to any broker. Thin on purpose: the CLI, `perf` and the test suites share it.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    BrokerId, CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest,
    DescribeConfigsRequest, FetchRequest, IncrementalAlterConfigsRequest, ListOffsetsRequest,
    MetadataRequest, MetadataResponse, ProduceRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::connection::Connection;
use crate::error::{ClientError, Result};

/// Kafka's resource type for topics in the config APIs.
const RESOURCE_TOPIC: i8 = 2;
/// Attempts for a request that fails with a retriable error (leader moved, topic being created).
const ATTEMPTS: u32 = 8;
/// Pause between such attempts, like `retry.backoff.ms` (Kafka's default is 100 ms).
const RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// What a produce request achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Produced {
    /// Offset given to the first record.
    pub base_offset: i64,
    /// Log-append time, or -1 when the topic uses create time.
    pub log_append_time_ms: i64,
}

/// What a fetch returned for one partition.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Raw record batches.
    pub records: Bytes,
    /// The partition's high watermark.
    pub high_watermark: i64,
    /// The partition's log start offset.
    pub log_start_offset: i64,
}

/// One topic config as DescribeConfigs returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// Kafka's config name.
    pub name: String,
    /// Its value.
    pub value: Option<String>,
    /// Whether it is the default (not set on the topic).
    pub is_default: bool,
}

/// A client for a whole cluster.
#[derive(Debug)]
pub struct Client {
    bootstrap: Vec<String>,
    /// Connections by broker id; `-1` is the bootstrap connection.
    conns: HashMap<i32, Connection>,
    /// Broker addresses by id, from the last metadata.
    brokers: HashMap<i32, String>,
    /// Leaders by (topic, partition), from the last metadata.
    leaders: HashMap<(String, i32), i32>,
}

impl Client {
    /// Connects to the first reachable address of a comma-separated bootstrap list.
    pub async fn connect(bootstrap: &str) -> Result<Self> {
        let bootstrap: Vec<String> = bootstrap
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        let mut last = None;
        for addr in &bootstrap {
            match Connection::connect(addr).await {
                Ok(conn) => {
                    let mut conns = HashMap::new();
                    conns.insert(-1, conn);
                    return Ok(Self {
                        bootstrap,
                        conns,
                        brokers: HashMap::new(),
                        leaders: HashMap::new(),
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| ClientError::Invalid("empty bootstrap list".into())))
    }

    /// The bootstrap addresses.
    pub fn bootstrap(&self) -> &[String] {
        &self.bootstrap
    }

    /// Any live connection (the bootstrap one first) for cluster-wide requests.
    pub fn any(&mut self) -> Result<&mut Connection> {
        let key = if self.conns.contains_key(&-1) {
            -1
        } else {
            *self
                .conns
                .keys()
                .next()
                .ok_or_else(|| ClientError::Unavailable("no connection".into()))?
        };
        self.conns
            .get_mut(&key)
            .ok_or_else(|| ClientError::Unavailable("no connection".into()))
    }

    async fn broker(&mut self, id: i32) -> Result<&mut Connection> {
        if !self.conns.contains_key(&id) {
            let addr = self.brokers.get(&id).cloned().ok_or_else(|| {
                ClientError::Unavailable(format!("broker {id} is not in the metadata"))
            })?;
            let conn = Connection::connect(&addr).await?;
            self.conns.insert(id, conn);
        }
        self.conns
            .get_mut(&id)
            .ok_or_else(|| ClientError::Unavailable(format!("broker {id}")))
    }

    /// Fetches metadata for `topics` (all topics when `None`) and refreshes the routing tables.
    pub async fn metadata(
        &mut self,
        topics: Option<&[String]>,
        allow_auto_create: bool,
    ) -> Result<MetadataResponse> {
        let req = MetadataRequest::default()
            .with_topics(topics.map(|ts| {
                ts.iter()
                    .map(|t| {
                        MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(t.clone()))))
                    })
                    .collect()
            }))
            .with_allow_auto_topic_creation(allow_auto_create);
        let resp = match self.any()?.send(&req).await {
            Ok(r) => r,
            Err(e) => {
                // The bootstrap connection may be to a broker that died; try the others.
                self.conns.remove(&-1);
                let mut last = e;
                let mut found = None;
                for addr in self.bootstrap.clone() {
                    match Connection::connect(&addr).await {
                        Ok(mut c) => match c.send(&req).await {
                            Ok(r) => {
                                self.conns.insert(-1, c);
                                found = Some(r);
                                break;
                            }
                            Err(e) => last = e,
                        },
                        Err(e) => last = e,
                    }
                }
                found.ok_or(last)?
            }
        };
        for b in &resp.brokers {
            let addr = format!("{}:{}", b.host.as_str(), b.port);
            if self.brokers.get(&b.node_id.0) != Some(&addr) {
                self.conns.remove(&b.node_id.0);
                self.brokers.insert(b.node_id.0, addr);
            }
        }
        for t in &resp.topics {
            let Some(name) = &t.name else { continue };
            for p in &t.partitions {
                self.leaders.insert(
                    (name.0.as_str().to_string(), p.partition_index),
                    p.leader_id.0,
                );
            }
        }
        Ok(resp)
    }

    /// The number of partitions of `topic` (auto-creating it when the broker allows).
    pub async fn partition_count(&mut self, topic: &str) -> Result<i32> {
        let mut last = None;
        for _ in 0..ATTEMPTS {
            let resp = self.metadata(Some(&[topic.to_string()]), true).await?;
            let t = resp
                .topics
                .iter()
                .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic));
            match t {
                Some(t) if t.error_code == 0 && !t.partitions.is_empty() => {
                    return Ok(t.partitions.len() as i32);
                }
                Some(t) => {
                    let e = ClientError::from_code(t.error_code, Some(format!("topic {topic}")))
                        .unwrap_or_else(|| {
                            ClientError::Unavailable(format!("{topic} has no partitions"))
                        });
                    if !retriable(&e) {
                        return Err(e);
                    }
                    last = Some(e);
                }
                None => last = Some(ClientError::Unavailable(format!("no metadata for {topic}"))),
            }
            tokio::time::sleep(RETRY_BACKOFF).await;
        }
        Err(last.unwrap_or_else(|| ClientError::Unavailable(topic.to_string())))
    }

    /// The address of the broker that leads `topic`-`partition`, from fresh metadata: for
    /// callers that open their own (e.g. pipelined) connection to it.
    pub async fn leader_addr(&mut self, topic: &str, partition: i32) -> Result<String> {
        let _ = self.metadata(Some(&[topic.to_string()]), false).await?;
        let id = self
            .leaders
            .get(&(topic.to_string(), partition))
            .copied()
            .filter(|id| *id >= 0)
            .ok_or_else(|| {
                ClientError::from_code(5, Some(format!("{topic}-{partition} has no leader")))
                    .unwrap_or_else(|| ClientError::Unavailable(format!("{topic}-{partition}")))
            })?;
        self.brokers
            .get(&id)
            .cloned()
            .ok_or_else(|| ClientError::Unavailable(format!("broker {id} is not in the metadata")))
    }

    async fn leader(&mut self, topic: &str, partition: i32) -> Result<&mut Connection> {
        let key = (topic.to_string(), partition);
        if !self.leaders.contains_key(&key) {
            let _ = self.metadata(Some(&[topic.to_string()]), false).await?;
        }
        let id = *self.leaders.get(&key).ok_or_else(|| {
            ClientError::from_code(3, Some(format!("{topic}-{partition}")))
                .unwrap_or_else(|| ClientError::Unavailable(format!("{topic}-{partition}")))
        })?;
        if id < 0 {
            return Err(ClientError::from_code(
                5,
                Some(format!("{topic}-{partition} has no leader")),
            )
            .unwrap_or_else(|| ClientError::Unavailable(format!("{topic}-{partition}"))));
        }
        self.broker(id).await
    }

    /// Creates one topic. `replication_factor` -1 and `partitions` -1 mean the broker defaults.
    pub async fn create_topic(
        &mut self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &[(String, String)],
    ) -> Result<()> {
        let topic = CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.to_string())))
            .with_num_partitions(partitions)
            .with_replication_factor(replication_factor)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(StrBytes::from_string(k.clone()))
                            .with_value(Some(StrBytes::from_string(v.clone())))
                    })
                    .collect(),
            );
        let req = CreateTopicsRequest::default()
            .with_topics(vec![topic])
            .with_timeout_ms(30_000);
        let resp = self.any()?.send(&req).await?;
        for t in resp.topics {
            if let Some(e) =
                ClientError::from_code(t.error_code, t.error_message.map(|m| m.to_string()))
            {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Deletes topics by name.
    pub async fn delete_topics(&mut self, names: &[String]) -> Result<()> {
        let req = DeleteTopicsRequest::default()
            .with_topic_names(
                names
                    .iter()
                    .map(|n| TopicName(StrBytes::from_string(n.clone())))
                    .collect(),
            )
            .with_topics(
                names
                    .iter()
                    .map(|n| {
                        kafka_protocol::messages::delete_topics_request::DeleteTopicState::default()
                            .with_name(Some(TopicName(StrBytes::from_string(n.clone()))))
                    })
                    .collect(),
            )
            .with_timeout_ms(30_000);
        let resp = self.any()?.send(&req).await?;
        for r in resp.responses {
            if let Some(e) =
                ClientError::from_code(r.error_code, r.error_message.map(|m| m.to_string()))
            {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Raises a topic's partition count to `count`.
    pub async fn create_partitions(&mut self, name: &str, count: i32) -> Result<()> {
        let req = CreatePartitionsRequest::default()
            .with_topics(vec![
                CreatePartitionsTopic::default()
                    .with_name(TopicName(StrBytes::from_string(name.to_string())))
                    .with_count(count),
            ])
            .with_timeout_ms(30_000);
        let resp = self.any()?.send(&req).await?;
        for r in resp.results {
            if let Some(e) =
                ClientError::from_code(r.error_code, r.error_message.map(|m| m.to_string()))
            {
                return Err(e);
            }
        }
        Ok(())
    }

    /// A topic's configs.
    pub async fn describe_topic_configs(&mut self, name: &str) -> Result<Vec<ConfigEntry>> {
        let req = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(RESOURCE_TOPIC)
                .with_resource_name(StrBytes::from_string(name.to_string())),
        ]);
        let resp = self.any()?.send(&req).await?;
        let mut out = Vec::new();
        for r in resp.results {
            if let Some(e) =
                ClientError::from_code(r.error_code, r.error_message.map(|m| m.to_string()))
            {
                return Err(e);
            }
            out.extend(r.configs.into_iter().map(|c| ConfigEntry {
                name: c.name.to_string(),
                value: c.value.map(|v| v.to_string()),
                // config_source 5 is DEFAULT_CONFIG.
                is_default: c.config_source == 5,
            }));
        }
        Ok(out)
    }

    /// Sets and deletes topic configs (IncrementalAlterConfigs: op 0 = SET, 1 = DELETE).
    pub async fn alter_topic_configs(
        &mut self,
        name: &str,
        set: &[(String, String)],
        delete: &[String],
    ) -> Result<()> {
        let mut configs: Vec<AlterableConfig> = set
            .iter()
            .map(|(k, v)| {
                AlterableConfig::default()
                    .with_name(StrBytes::from_string(k.clone()))
                    .with_config_operation(0)
                    .with_value(Some(StrBytes::from_string(v.clone())))
            })
            .collect();
        configs.extend(delete.iter().map(|k| {
            AlterableConfig::default()
                .with_name(StrBytes::from_string(k.clone()))
                .with_config_operation(1)
        }));
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(RESOURCE_TOPIC)
                .with_resource_name(StrBytes::from_string(name.to_string()))
                .with_configs(configs),
        ]);
        let resp = self.any()?.send(&req).await?;
        for r in resp.responses {
            if let Some(e) =
                ClientError::from_code(r.error_code, r.error_message.map(|m| m.to_string()))
            {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Produces one batch to one partition. `acks` is 0, 1 or -1; with 0 there is no answer and
    /// `None` is returned once the request is written. Retriable errors are retried.
    pub async fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        batch: Bytes,
        acks: i16,
        timeout_ms: i32,
    ) -> Result<Option<Produced>> {
        let req = ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(timeout_ms)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(partition)
                            .with_records(Some(batch)),
                    ]),
            ]);
        let mut last = None;
        for _ in 0..ATTEMPTS {
            let result = self.produce_once(topic, partition, &req, acks).await;
            if let Some(done) = self.settle(topic, partition, result, &mut last).await {
                return done;
            }
        }
        Err(last.unwrap_or_else(|| ClientError::Unavailable("produce".into())))
    }

    async fn produce_once(
        &mut self,
        topic: &str,
        partition: i32,
        req: &ProduceRequest,
        acks: i16,
    ) -> Result<Option<Produced>> {
        let conn = self.leader(topic, partition).await?;
        if acks == 0 {
            let version = conn.version_for::<ProduceRequest>()?;
            let _ = conn.write_request(req, version).await?;
            return Ok(None);
        }
        let resp = conn.send(req).await?;
        let p = resp
            .responses
            .first()
            .and_then(|t| t.partition_responses.first())
            .ok_or_else(|| ClientError::Codec("empty produce response".into()))?;
        if let Some(e) = ClientError::from_code(
            p.error_code,
            p.error_message.as_ref().map(|m| m.to_string()),
        ) {
            return Err(e);
        }
        Ok(Some(Produced {
            base_offset: p.base_offset,
            log_append_time_ms: p.log_append_time_ms,
        }))
    }

    /// Fetches from one partition starting at `offset`.
    pub async fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_wait_ms: i32,
        max_bytes: i32,
    ) -> Result<Fetched> {
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(max_bytes)
            .with_session_epoch(-1)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(partition)
                            .with_fetch_offset(offset)
                            .with_partition_max_bytes(max_bytes),
                    ]),
            ]);
        let mut last = None;
        for _ in 0..ATTEMPTS {
            let result = self.fetch_once(topic, partition, &req).await;
            if let Some(done) = self.settle(topic, partition, result, &mut last).await {
                return done;
            }
        }
        Err(last.unwrap_or_else(|| ClientError::Unavailable("fetch".into())))
    }

    async fn fetch_once(
        &mut self,
        topic: &str,
        partition: i32,
        req: &FetchRequest,
    ) -> Result<Fetched> {
        let conn = self.leader(topic, partition).await?;
        // Topic ids (v13+) are not needed for a by-name fetch; stay at v12 at most.
        let version = conn.version_for::<FetchRequest>()?.min(12);
        let resp = conn.send_version(req, version).await?;
        if let Some(e) = ClientError::from_code(resp.error_code, None) {
            return Err(e);
        }
        let p = resp
            .responses
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or_else(|| ClientError::Codec("empty fetch response".into()))?;
        if let Some(e) = ClientError::from_code(p.error_code, None) {
            return Err(e);
        }
        Ok(Fetched {
            records: p.records.clone().unwrap_or_default(),
            high_watermark: p.high_watermark,
            log_start_offset: p.log_start_offset,
        })
    }

    /// ListOffsets for one partition: `timestamp` -2 earliest, -1 latest, -3 max timestamp, or a
    /// time in ms. Returns (offset, timestamp); offset -1 when no record is that late. Retriable
    /// errors (a leader that does not know a new partition yet) are retried.
    pub async fn list_offset(
        &mut self,
        topic: &str,
        partition: i32,
        timestamp: i64,
    ) -> Result<(i64, i64)> {
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partitions(vec![
                        ListOffsetsPartition::default()
                            .with_partition_index(partition)
                            .with_current_leader_epoch(-1)
                            .with_timestamp(timestamp),
                    ]),
            ]);
        let mut last = None;
        for _ in 0..ATTEMPTS {
            let result = self.list_offset_once(topic, partition, &req).await;
            if let Some(done) = self.settle(topic, partition, result, &mut last).await {
                return done;
            }
        }
        Err(last.unwrap_or_else(|| ClientError::Unavailable("list offsets".into())))
    }

    async fn list_offset_once(
        &mut self,
        topic: &str,
        partition: i32,
        req: &ListOffsetsRequest,
    ) -> Result<(i64, i64)> {
        let conn = self.leader(topic, partition).await?;
        let resp = conn.send(req).await?;
        let p = resp
            .topics
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or_else(|| ClientError::Codec("empty list-offsets response".into()))?;
        if let Some(e) = ClientError::from_code(p.error_code, None) {
            return Err(e);
        }
        Ok((p.offset, p.timestamp))
    }

    /// Decides what to do with one attempt's result: `Some` ends the request; `None` means the
    /// error was retriable, the route was forgotten and the backoff has passed.
    async fn settle<T>(
        &mut self,
        topic: &str,
        partition: i32,
        result: Result<T>,
        last: &mut Option<ClientError>,
    ) -> Option<Result<T>> {
        match result {
            Err(e) if retriable(&e) => {
                self.forget_route(topic, partition);
                *last = Some(e);
                tokio::time::sleep(RETRY_BACKOFF).await;
                None
            }
            other => Some(other),
        }
    }

    fn forget_route(&mut self, topic: &str, partition: i32) {
        if let Some(id) = self.leaders.remove(&(topic.to_string(), partition)) {
            self.conns.remove(&id);
        }
    }
}

/// Whether Kafka's clients would retry after this error.
pub fn retriable(e: &ClientError) -> bool {
    match e {
        ClientError::Kafka { code, .. } => {
            code.is_retriable() || matches!(code, ResponseError::UnknownTopicOrPartition)
        }
        ClientError::Io { .. } | ClientError::Closed { .. } | ClientError::Unavailable(_) => true,
        _ => false,
    }
}
