//! The broker as a cluster member (`gregor_broker::quorum`): a single-voter controller in the
//! same process, the broker registered with it, topics only from the controller's image, and
//! the admin APIs forwarded to the controller with Kafka's error codes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gregor_broker::quorum::{QuorumBroker, QuorumConfig};
use gregor_broker::{Broker, BrokerConfig};
use gregor_client::Connection;
use gregor_client::kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use gregor_client::kafka_protocol::messages::create_topics_request::{
    CreatableTopic, CreatableTopicConfig,
};
use gregor_client::kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use gregor_client::kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use gregor_client::kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use gregor_client::kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use gregor_client::kafka_protocol::messages::*;
use gregor_client::kafka_protocol::protocol::StrBytes;
use gregor_controller::cluster_id::ClusterId;
use gregor_controller::node::{ControllerNode, NodeConfig};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::common::{DEADLINE, run_with_deadline};

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

/// A controller (sole voter) and a broker registered with it, serving Kafka on 127.0.0.1:0.
struct Cluster {
    addr: String,
    broker: Arc<Broker>,
    member: Option<QuorumBroker>,
    controller: Option<ControllerNode>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<gregor_broker::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let shutdown = CancellationToken::new();
        let ctl_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ctl_addr = ctl_listener.local_addr().unwrap().to_string();
        let node_config = NodeConfig::new(
            1,
            ClusterId::new("it-cluster").unwrap(),
            dir.path().join("metadata"),
            BTreeMap::from([(1, ctl_addr.clone())]),
        );
        let controller = ControllerNode::start(node_config, ctl_listener, CancellationToken::new())
            .await
            .unwrap();
        let config = BrokerConfig {
            log_dir: dir.path().join("logs"),
            listener: gregor_broker::config::Endpoint {
                host: "127.0.0.1".into(),
                port: 0,
            },
            ..BrokerConfig::default()
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let bound = listener.local_addr().unwrap();
        let repl = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let quorum = QuorumConfig {
            voters: vec![ctl_addr],
            cluster_id: None,
            heartbeat_interval: Duration::from_millis(200),
            rack: None,
        };
        let member = tokio::time::timeout(
            DEADLINE,
            gregor_broker::quorum::start(
                config,
                quorum,
                bound,
                repl.local_addr().unwrap(),
                shutdown.clone(),
            ),
        )
        .await
        .expect("joined in time")
        .unwrap();
        let broker = Arc::clone(&member.broker);
        let task = tokio::spawn(gregor_broker::run(
            listener,
            Arc::clone(&broker),
            shutdown.clone(),
        ));
        Cluster {
            addr: bound.to_string(),
            broker,
            member: Some(member),
            controller: Some(controller),
            shutdown,
            task: Some(task),
            _dir: dir,
        }
    }

    async fn connect(&self) -> Connection {
        tokio::time::timeout(DEADLINE, Connection::connect(&self.addr))
            .await
            .unwrap()
            .unwrap()
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.task.take() {
            tokio::time::timeout(DEADLINE, t)
                .await
                .unwrap()
                .unwrap()
                .unwrap();
        }
        if let Some(m) = self.member.take() {
            tokio::time::timeout(DEADLINE, m.shutdown()).await.unwrap();
        }
        if let Some(c) = self.controller.take() {
            tokio::time::timeout(DEADLINE, c.shutdown())
                .await
                .unwrap()
                .unwrap();
        }
    }
}

fn creatable(name: &str, partitions: i32, rf: i16) -> CreatableTopic {
    CreatableTopic::default()
        .with_name(TopicName(s(name)))
        .with_num_partitions(partitions)
        .with_replication_factor(rf)
}

async fn create(c: &mut Connection, topics: Vec<CreatableTopic>, validate_only: bool) -> Vec<i16> {
    let req = CreateTopicsRequest::default()
        .with_topics(topics)
        .with_timeout_ms(10_000)
        .with_validate_only(validate_only);
    c.send(&req)
        .await
        .unwrap()
        .topics
        .iter()
        .map(|t| t.error_code)
        .collect()
}

async fn metadata(c: &mut Connection) -> MetadataResponse {
    c.send(&MetadataRequest::default().with_topics(None))
        .await
        .unwrap()
}

fn partition_counts(m: &MetadataResponse) -> BTreeMap<String, usize> {
    m.topics
        .iter()
        .map(|t| (t.name.as_ref().unwrap().0.to_string(), t.partitions.len()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_requests_go_through_the_controller_with_kafka_error_codes() {
    let cl = Cluster::start().await;
    let mut c = cl.connect().await;

    // The registered broker is the only broker, and the controller id is a live broker.
    let m = metadata(&mut c).await;
    assert_eq!(m.brokers.len(), 1);
    assert_eq!(m.brokers[0].node_id.0, 1);
    assert_eq!(m.controller_id.0, 1);
    assert_eq!(m.cluster_id.as_ref().unwrap().as_str(), "it-cluster");

    let codes = create(
        &mut c,
        vec![
            creatable("ok", 2, 1),
            creatable("defaults", -1, -1),
            creatable("bad rf", 1, 1)
                .with_name(TopicName(s("bad-rf")))
                .with_replication_factor(3),
            creatable("zero", 0, 1),
            creatable("bad name!", 1, 1),
            creatable("bad-config", 1, 1).with_configs(vec![
                CreatableTopicConfig::default()
                    .with_name(s("retention.ms"))
                    .with_value(Some(s("soon"))),
            ]),
        ],
        false,
    )
    .await;
    // INVALID_REPLICATION_FACTOR 38, INVALID_PARTITIONS 37, INVALID_TOPIC_EXCEPTION 17,
    // INVALID_CONFIG 40.
    assert_eq!(codes, vec![0, 0, 38, 37, 17, 40]);
    assert_eq!(
        create(&mut c, vec![creatable("ok", 1, 1)], false).await,
        vec![36]
    );
    assert_eq!(
        create(&mut c, vec![creatable("dry", 1, 1)], true).await,
        vec![0]
    );
    assert_eq!(
        create(&mut c, vec![creatable("ok", 1, 1)], true).await,
        vec![36]
    );

    // The next Metadata on the same connection sees the creations (the broker waited for its
    // image), with the image's leadership.
    let m = metadata(&mut c).await;
    let counts = partition_counts(&m);
    assert_eq!(
        counts,
        BTreeMap::from([("defaults".to_string(), 1), ("ok".to_string(), 2)])
    );
    for t in &m.topics {
        for p in &t.partitions {
            assert_eq!((p.error_code, p.leader_id.0, p.leader_epoch), (0, 1, 0));
            assert_eq!(p.isr_nodes, vec![BrokerId(1)]);
            assert!(p.offline_replicas.is_empty());
        }
    }
    // The broker holds a log for every partition (it is their only replica).
    assert!(cl.broker.partition("ok", 1).is_ok());

    // CreatePartitions grows the topic through the controller.
    let req = CreatePartitionsRequest::default()
        .with_topics(vec![
            CreatePartitionsTopic::default()
                .with_name(TopicName(s("ok")))
                .with_count(4),
            CreatePartitionsTopic::default()
                .with_name(TopicName(s("ok")))
                .with_count(1)
                .with_name(TopicName(s("defaults"))),
        ])
        .with_timeout_ms(10_000);
    let resp = c.send(&req).await.unwrap();
    let codes: Vec<i16> = resp.results.iter().map(|r| r.error_code).collect();
    assert_eq!(codes, vec![0, 37]);
    assert_eq!(partition_counts(&metadata(&mut c).await)["ok"], 4);
    assert!(cl.broker.partition("ok", 3).is_ok());

    // IncrementalAlterConfigs: the override reaches the image, DescribeConfigs and the log.
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s("ok"))
            .with_configs(vec![
                AlterableConfig::default()
                    .with_name(s("retention.ms"))
                    .with_config_operation(0)
                    .with_value(Some(s("12345"))),
            ]),
    ]);
    let resp = c.send(&req).await.unwrap();
    assert_eq!(resp.responses[0].error_code, 0);
    let image = cl.broker.image();
    assert_eq!(
        image.topics["ok"]
            .configs
            .get("retention.ms")
            .map(String::as_str),
        Some("12345")
    );
    assert_eq!(
        cl.broker
            .partition("ok", 0)
            .unwrap()
            .log
            .read()
            .config()
            .retention_ms,
        12345
    );
    let req = DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s("ok"))
            .with_configuration_keys(Some(vec![s("retention.ms")])),
    ]);
    let resp = c.send(&req).await.unwrap();
    let value = resp.results[0].configs[0]
        .value
        .as_ref()
        .unwrap()
        .to_string();
    assert_eq!(value, "12345");

    // DeleteTopics: gone from Metadata and from disk.
    let dir = cl.broker.config().log_dir.join("ok-0");
    assert!(dir.exists());
    let req = DeleteTopicsRequest::default()
        .with_topics(vec![
            DeleteTopicState::default().with_name(Some(TopicName(s("ok")))),
            DeleteTopicState::default().with_name(Some(TopicName(s("never")))),
        ])
        .with_timeout_ms(10_000);
    let resp = c.send(&req).await.unwrap();
    let codes: Vec<i16> = resp.responses.iter().map(|r| r.error_code).collect();
    assert_eq!(codes, vec![0, 3]);
    assert!(!partition_counts(&metadata(&mut c).await).contains_key("ok"));
    assert!(
        !dir.exists(),
        "the deleted topic's log directory is removed"
    );

    cl.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_ids_coordinator_and_auto_creation_come_from_the_quorum() {
    let cl = Cluster::start().await;
    let mut c = cl.connect().await;

    // Producer ids: blocks from the controller, never repeated.
    let mut ids = Vec::new();
    for _ in 0..3 {
        let resp = c
            .send(
                &InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_transaction_timeout_ms(60_000)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
            )
            .await
            .unwrap();
        assert_eq!(resp.error_code, 0);
        ids.push(resp.producer_id.0);
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

    // FindCoordinator creates __consumer_offsets through the controller (RF capped at the one
    // voter) and names this broker, the leader of the group's partition.
    let resp = c
        .send_version(
            &FindCoordinatorRequest::default()
                .with_key(s("g"))
                .with_key_type(0),
            3,
        )
        .await
        .unwrap();
    assert_eq!((resp.error_code, resp.node_id.0), (0, 1));
    let image = cl.broker.image();
    let offsets = &image.topics["__consumer_offsets"];
    assert_eq!(offsets.partitions.len(), 50);
    assert!(offsets.partitions.iter().all(|p| p.replicas == vec![1]));

    // Auto-creation on Metadata goes through the controller too.
    let req = MetadataRequest::default()
        .with_topics(Some(vec![
            metadata_request::MetadataRequestTopic::default().with_name(Some(TopicName(s("auto")))),
        ]))
        .with_allow_auto_topic_creation(true);
    let resp = c.send(&req).await.unwrap();
    assert_eq!(resp.topics[0].error_code, 0);
    assert_eq!(resp.topics[0].partitions.len(), 1);
    assert!(cl.broker.image().topics.contains_key("auto"));

    // A real client sees the cluster's broker and topics.
    let out = run_with_deadline(
        "kcat",
        &["-b", cl.addr.as_str(), "-L", "-J"],
        None,
        Duration::from_secs(30),
    )
    .await;
    assert!(out.status.success(), "{}", out.stderr);
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(json["brokers"].as_array().unwrap().len(), 1);
    assert_eq!(json["brokers"][0]["name"].as_str().unwrap(), cl.addr);
    assert!(
        json["topics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["topic"] == "auto")
    );

    cl.stop().await;
}
