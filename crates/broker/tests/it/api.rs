//! Each API at each advertised version, plus the semantics of the admin APIs.

use gregor_broker::handlers::SUPPORTED;
use gregor_client::kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use gregor_client::kafka_protocol::messages::create_topics_request::{
    CreatableTopic, CreatableTopicConfig,
};
use gregor_client::kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use gregor_client::kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use gregor_client::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use gregor_client::kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use gregor_client::kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsTopic,
};
use gregor_client::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use gregor_client::kafka_protocol::messages::*;
use gregor_client::kafka_protocol::protocol::{Message, StrBytes};

use crate::common::*;

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

pub fn fetch_request(topic: &str, partition: i32, offset: i64, max_wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(50 * 1024 * 1024)
        .with_session_epoch(-1)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(name(topic))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(partition)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(1024 * 1024),
                ]),
        ])
}

pub fn list_offsets_request(topic: &str, partition: i32, timestamp: i64) -> ListOffsetsRequest {
    ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(name(topic))
                .with_partitions(vec![
                    ListOffsetsPartition::default()
                        .with_partition_index(partition)
                        .with_timestamp(timestamp),
                ]),
        ])
}

#[tokio::test]
async fn api_versions_is_derived_from_the_handler_registry() {
    let tb = TestBroker::start().await;
    let mut c = tb.connect_raw().await;
    for v in 0..=4 {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(s("it"))
            .with_client_software_version(s("1.0"));
        let resp = c.send_version(&req, v).await.unwrap();
        assert_eq!(resp.error_code, 0, "v{v}");
        let got: Vec<(i16, i16, i16)> = resp
            .api_keys
            .iter()
            .map(|k| (k.api_key, k.min_version, k.max_version))
            .collect();
        let want: Vec<(i16, i16, i16)> = SUPPORTED
            .iter()
            .map(|(k, r)| (*k as i16, r.min, r.max))
            .collect();
        assert_eq!(got, want, "v{v}");
    }
    // Nothing we do not implement is advertised (transactions are not implemented).
    assert!(
        !SUPPORTED
            .iter()
            .any(|(k, _)| *k == ApiKey::AddPartitionsToTxn)
    );
    assert!(SUPPORTED.iter().any(|(k, _)| *k == ApiKey::InitProducerId));
    // v3+ validates the client software fields like Kafka (INVALID_REQUEST 42).
    let bad = ApiVersionsRequest::default()
        .with_client_software_name(s("bad name"))
        .with_client_software_version(s("1"));
    assert_eq!(c.send_version(&bad, 3).await.unwrap().error_code, 42);
}

/// Sends a benign request at every advertised version and decodes the answer, so every
/// version's encoding is exercised.
#[tokio::test]
async fn every_advertised_version_answers() {
    let tb = TestBroker::start().await;
    tb.create_topic("v", 1);
    let mut c = tb.connect().await;
    let range = |k: ApiKey| SUPPORTED.iter().find(|(x, _)| *x == k).unwrap().1;
    for v in range(ApiKey::Metadata).min..=range(ApiKey::Metadata).max {
        let req = MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(name("v"))),
        ]));
        let resp = c.send_version(&req, v).await.unwrap();
        assert_eq!(resp.topics[0].error_code, 0, "metadata v{v}");
        assert_eq!(resp.topics[0].partitions.len(), 1);
        assert_eq!(
            resp.brokers[0].port,
            tb.addr.rsplit(':').next().unwrap().parse::<i32>().unwrap()
        );
        if v >= 10 {
            assert_eq!(resp.topics[0].topic_id, tb.broker.topic("v").unwrap().id);
        }
    }
    let mut expected_offset = 0;
    for v in range(ApiKey::Produce).min..=range(ApiKey::Produce).max {
        let req = produce_request(-1, vec![("v", 0, Some(batch(&[&format!("p{v}")], 1000)))]);
        let resp = c.send_version(&req, v).await.unwrap();
        let p = &resp.responses[0].partition_responses[0];
        assert_eq!(
            (p.error_code, p.base_offset),
            (0, expected_offset),
            "produce v{v}"
        );
        expected_offset += 1;
    }
    for v in range(ApiKey::Fetch).min..=range(ApiKey::Fetch).max {
        let resp = c
            .send_version(&fetch_request("v", 0, 3, 0), v)
            .await
            .unwrap();
        let p = &resp.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "fetch v{v}");
        assert_eq!(p.high_watermark, expected_offset);
        let records = gregor_client::records::decode_records(p.records.as_ref().unwrap()).unwrap();
        assert_eq!(records[0].offset, 3, "fetch v{v}");
        assert_eq!(records[0].value.as_deref(), Some(&b"p6"[..]));
    }
    for v in range(ApiKey::ListOffsets).min..=range(ApiKey::ListOffsets).max {
        let resp = c
            .send_version(&list_offsets_request("v", 0, -1), v)
            .await
            .unwrap();
        let p = &resp.topics[0].partitions[0];
        assert_eq!(
            (p.error_code, p.offset),
            (0, expected_offset),
            "list offsets v{v}"
        );
    }
    for v in range(ApiKey::CreateTopics).min..=range(ApiKey::CreateTopics).max {
        let t = format!("created-{v}");
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(5000)
            .with_topics(vec![
                CreatableTopic::default()
                    .with_name(name(&t))
                    .with_num_partitions(2)
                    .with_replication_factor(1),
            ]);
        let resp = c.send_version(&req, v).await.unwrap();
        assert_eq!(resp.topics[0].error_code, 0, "create topics v{v}");
        assert_eq!(tb.broker.topic(&t).unwrap().partitions.len(), 2);
        if v >= 7 {
            assert_eq!(resp.topics[0].topic_id, tb.broker.topic(&t).unwrap().id);
        }
    }
    for v in range(ApiKey::CreatePartitions).min..=range(ApiKey::CreatePartitions).max {
        let t = format!("created-{}", v + 2);
        let req = CreatePartitionsRequest::default()
            .with_timeout_ms(5000)
            .with_topics(vec![
                CreatePartitionsTopic::default()
                    .with_name(name(&t))
                    .with_count(3),
            ]);
        let resp = c.send_version(&req, v).await.unwrap();
        assert_eq!(resp.results[0].error_code, 0, "create partitions v{v}");
        assert_eq!(tb.broker.topic(&t).unwrap().partitions.len(), 3);
    }
    for v in range(ApiKey::DescribeConfigs).min..=range(ApiKey::DescribeConfigs).max {
        let req = DescribeConfigsRequest::default()
            .with_include_synonyms(true)
            .with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("v")),
                DescribeConfigsResource::default()
                    .with_resource_type(4)
                    .with_resource_name(s("1")),
            ]);
        let resp = c.send_version(&req, v).await.unwrap();
        assert_eq!(resp.results[0].error_code, 0, "describe configs v{v}");
        assert!(
            resp.results[0]
                .configs
                .iter()
                .any(|e| e.name.as_str() == "retention.ms"),
            "v{v}: {resp:?}"
        );
        assert_eq!(resp.results[1].error_code, 0);
    }
    for v in range(ApiKey::IncrementalAlterConfigs).min..=range(ApiKey::IncrementalAlterConfigs).max
    {
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("v"))
                .with_configs(vec![
                    AlterableConfig::default()
                        .with_name(s("retention.ms"))
                        .with_config_operation(0)
                        .with_value(Some(s(&format!("{}", 1000 + v)))),
                ]),
        ]);
        let resp = c.send_version(&req, v).await.unwrap();
        assert_eq!(
            resp.responses[0].error_code, 0,
            "incremental alter configs v{v}"
        );
        let retention = tb
            .broker
            .topic("v")
            .unwrap()
            .configs
            .get("retention.ms")
            .cloned();
        assert_eq!(retention, Some(format!("{}", 1000 + v)));
    }
    for v in range(ApiKey::DescribeCluster).min..=range(ApiKey::DescribeCluster).max {
        let req = DescribeClusterRequest::default().with_endpoint_type(1);
        let resp = c.send_version(&req, v).await.unwrap();
        assert_eq!(resp.error_code, 0, "describe cluster v{v}");
        assert_eq!(resp.cluster_id.as_str(), tb.broker.cluster_id());
        assert_eq!(resp.brokers.len(), 1);
    }
    for v in range(ApiKey::DeleteTopics).min..=range(ApiKey::DeleteTopics).max {
        let t = format!("created-{}", v + 1);
        let req = if v >= 6 {
            DeleteTopicsRequest::default()
                .with_topics(vec![DeleteTopicState::default().with_name(Some(name(&t)))])
        } else {
            DeleteTopicsRequest::default().with_topic_names(vec![name(&t)])
        };
        let resp = c.send_version(&req.with_timeout_ms(5000), v).await.unwrap();
        assert_eq!(resp.responses[0].error_code, 0, "delete topics v{v}");
        assert!(tb.broker.topic(&t).is_none());
    }
    // Keep kafkajs's ceilings served (Fetch v11, Metadata v6).
    assert!(range(ApiKey::Fetch).min <= 11 && range(ApiKey::Metadata).min <= 6);
    let _ = ApiVersionsRequest::VERSIONS;
}

#[tokio::test]
async fn metadata_auto_creates_and_resolves_ids() {
    let tb = TestBroker::start().await;
    let mut c = tb.connect().await;
    let topic = |n: &str| MetadataRequestTopic::default().with_name(Some(name(n)));
    let req = MetadataRequest::default()
        .with_topics(Some(vec![topic("auto")]))
        .with_allow_auto_topic_creation(true);
    let resp = c.send(&req).await.unwrap();
    assert_eq!(resp.topics[0].error_code, 0);
    assert_eq!(resp.topics[0].partitions.len(), 1, "num.partitions default");
    let id = resp.topics[0].topic_id;
    assert!(!id.is_nil());
    assert_eq!(resp.topics[0].partitions[0].leader_epoch, 0);

    let req = MetadataRequest::default()
        .with_topics(Some(vec![topic("no-auto")]))
        .with_allow_auto_topic_creation(false);
    assert_eq!(c.send(&req).await.unwrap().topics[0].error_code, 3);
    let req = MetadataRequest::default()
        .with_topics(Some(vec![topic("bad name!")]))
        .with_allow_auto_topic_creation(true);
    assert_eq!(
        c.send(&req).await.unwrap().topics[0].error_code,
        17,
        "INVALID_TOPIC_EXCEPTION"
    );

    let by_id = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default()
            .with_topic_id(id)
            .with_name(None),
    ]));
    let resp = c.send_version(&by_id, 12).await.unwrap();
    assert_eq!(
        resp.topics[0]
            .name
            .as_ref()
            .map(|n| n.0.to_string())
            .as_deref(),
        Some("auto")
    );
    let unknown = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default()
            .with_topic_id(uuid::Uuid::new_v4())
            .with_name(None),
    ]));
    assert_eq!(
        c.send_version(&unknown, 12).await.unwrap().topics[0].error_code,
        100,
        "UNKNOWN_TOPIC_ID"
    );

    let all = c
        .send(&MetadataRequest::default().with_topics(None))
        .await
        .unwrap();
    let names: Vec<String> = all
        .topics
        .iter()
        .map(|t| t.name.as_ref().unwrap().0.to_string())
        .collect();
    assert_eq!(names, vec!["auto".to_string()]);
    let none = c
        .send(&MetadataRequest::default().with_topics(Some(vec![])))
        .await
        .unwrap();
    assert!(none.topics.is_empty());
    // Auto-creation disabled broker-wide.
    let tb2 = TestBroker::start_with(|c| c.auto_create_topics_enable = false).await;
    let mut c2 = tb2.connect().await;
    let req = MetadataRequest::default()
        .with_topics(Some(vec![topic("x")]))
        .with_allow_auto_topic_creation(true);
    assert_eq!(c2.send(&req).await.unwrap().topics[0].error_code, 3);
}

#[tokio::test]
async fn admin_errors_are_per_topic() {
    let tb = TestBroker::start().await;
    tb.create_topic("exists", 1);
    let mut c = tb.connect().await;
    let ct = |n: &str, p: i32, rf: i16| {
        CreatableTopic::default()
            .with_name(name(n))
            .with_num_partitions(p)
            .with_replication_factor(rf)
    };
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![
            ct("ok", 3, 1),
            ct("exists", 1, 1),
            ct("zero", 0, 1),
            ct("rf3", 1, 3),
            ct("bad/name", 1, 1),
            ct("defaults", -1, -1),
            ct("compact", 1, 1).with_configs(vec![
                CreatableTopicConfig::default()
                    .with_name(s("cleanup.policy"))
                    .with_value(Some(s("compact"))),
            ]),
            ct("unknowncfg", 1, 1).with_configs(vec![
                CreatableTopicConfig::default()
                    .with_name(s("foo.bar"))
                    .with_value(Some(s("1"))),
            ]),
            ct("cfg", 1, 1).with_configs(vec![
                CreatableTopicConfig::default()
                    .with_name(s("retention.ms"))
                    .with_value(Some(s("5000"))),
            ]),
        ]);
    let resp = c.send(&req).await.unwrap();
    let codes: Vec<i16> = resp.topics.iter().map(|t| t.error_code).collect();
    assert_eq!(codes, vec![0, 36, 37, 38, 17, 0, 40, 40, 0]);
    let compact_msg = resp.topics[6].error_message.as_ref().unwrap().to_string();
    assert!(compact_msg.contains("compact"), "{compact_msg}");
    assert_eq!(tb.broker.topic("ok").unwrap().partitions.len(), 3);
    assert_eq!(tb.broker.topic("defaults").unwrap().partitions.len(), 1);
    assert!(tb.broker.topic("compact").is_none());
    let cfg = resp.topics[8].configs.as_ref().unwrap();
    let retention = cfg
        .iter()
        .find(|e| e.name.as_str() == "retention.ms")
        .unwrap();
    assert_eq!(
        (retention.value.as_deref(), retention.config_source),
        (Some("5000"), 1)
    );

    // validate_only creates nothing.
    let req = CreateTopicsRequest::default()
        .with_validate_only(true)
        .with_topics(vec![ct("dry", 1, 1)]);
    assert_eq!(c.send(&req).await.unwrap().topics[0].error_code, 0);
    assert!(tb.broker.topic("dry").is_none());

    // CreatePartitions: shrinking or equal is INVALID_PARTITIONS; unknown topic 3.
    let req = CreatePartitionsRequest::default().with_topics(vec![
        CreatePartitionsTopic::default()
            .with_name(name("ok"))
            .with_count(2),
        CreatePartitionsTopic::default()
            .with_name(name("nope"))
            .with_count(2),
        CreatePartitionsTopic::default()
            .with_name(name("exists"))
            .with_count(4),
    ]);
    let codes: Vec<i16> = c
        .send(&req)
        .await
        .unwrap()
        .results
        .iter()
        .map(|r| r.error_code)
        .collect();
    assert_eq!(codes, vec![37, 3, 0]);
    assert_eq!(tb.broker.topic("exists").unwrap().partitions.len(), 4);

    // Alter configs: bad values and compact fail as INVALID_CONFIG without touching the topic.
    let alter = |n: &str, k: &str, op: i8, v: Option<&str>| {
        AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s(n))
            .with_configs(vec![
                AlterableConfig::default()
                    .with_name(s(k))
                    .with_config_operation(op)
                    .with_value(v.map(s)),
            ])
    };
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        alter("cfg", "retention.ms", 0, Some("notanumber")),
        alter("cfg", "cleanup.policy", 0, Some("compact")),
        alter("cfg", "segment.bytes", 0, Some("2097152")),
        alter("cfg", "retention.ms", 1, None),
        alter("nope", "retention.ms", 0, Some("1")),
        alter("cfg", "compression.type", 0, Some("gzip")),
        AlterConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name(s("1")),
    ]);
    let codes: Vec<i16> = c
        .send(&req)
        .await
        .unwrap()
        .responses
        .iter()
        .map(|r| r.error_code)
        .collect();
    assert_eq!(codes, vec![40, 40, 0, 0, 3, 40, 42]);
    let configs = tb.broker.topic("cfg").unwrap().configs.clone();
    assert_eq!(
        configs.get("segment.bytes").map(String::as_str),
        Some("2097152")
    );
    assert_eq!(
        configs.get("retention.ms"),
        None,
        "DELETE removed the override"
    );
    let log_config = tb
        .broker
        .partition("cfg", 0)
        .unwrap()
        .log
        .read()
        .config()
        .clone();
    assert_eq!(log_config.segment_bytes, 2097152, "applied to the open log");

    // DescribeConfigs: unknown topic 3, unknown resource type 42, key filter honoured.
    let req = DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s("nope")),
        DescribeConfigsResource::default()
            .with_resource_type(99)
            .with_resource_name(s("x")),
        DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s("cfg"))
            .with_configuration_keys(Some(vec![s("segment.bytes")])),
    ]);
    let resp = c.send(&req).await.unwrap();
    assert_eq!(resp.results[0].error_code, 3);
    assert_eq!(resp.results[1].error_code, 42);
    assert_eq!(resp.results[2].configs.len(), 1);
    assert_eq!(resp.results[2].configs[0].value.as_deref(), Some("2097152"));
    assert_eq!(resp.results[2].configs[0].config_source, 1);

    // DeleteTopics: unknown name 3, unknown id 100, by id works.
    let id = tb.broker.topic("ok").unwrap().id;
    let req = DeleteTopicsRequest::default().with_topics(vec![
        DeleteTopicState::default().with_name(Some(name("nope"))),
        DeleteTopicState::default()
            .with_name(None)
            .with_topic_id(uuid::Uuid::new_v4()),
        DeleteTopicState::default()
            .with_name(None)
            .with_topic_id(id),
    ]);
    let resp = c.send_version(&req, 6).await.unwrap();
    let codes: Vec<i16> = resp.responses.iter().map(|r| r.error_code).collect();
    assert_eq!(codes, vec![3, 100, 0]);
    assert_eq!(resp.responses[2].name.as_ref().unwrap().0.as_str(), "ok");
    assert!(tb.broker.topic("ok").is_none());
    // Describe cluster for controllers is not served by a broker endpoint.
    let resp = c
        .send_version(&DescribeClusterRequest::default().with_endpoint_type(2), 1)
        .await
        .unwrap();
    assert_eq!(resp.error_code, 115);
}

#[tokio::test]
async fn list_offsets_earliest_latest_timestamp_and_max() {
    let tb = TestBroker::start().await;
    tb.create_topic("lo", 1);
    let mut c = tb.connect().await;
    assert_eq!(
        produce(&mut c, "lo", 0, batch(&["a", "b"], 1_000)).await,
        (0, 0)
    );
    assert_eq!(produce(&mut c, "lo", 0, batch(&["c"], 5_000)).await, (0, 2));
    assert_eq!(produce(&mut c, "lo", 0, batch(&["d"], 3_000)).await, (0, 3));
    let q = |ts: i64| list_offsets_request("lo", 0, ts);
    let mut ask = async |ts: i64| {
        let r = c.send(&q(ts)).await.unwrap();
        let p = r.topics[0].partitions[0].clone();
        (p.error_code, p.timestamp, p.offset)
    };
    assert_eq!(ask(-2).await, (0, -1, 0), "earliest");
    assert_eq!(ask(-1).await, (0, -1, 4), "latest");
    assert_eq!(ask(-3).await, (0, 5_000, 2), "max timestamp");
    assert_eq!(
        ask(2_000).await,
        (0, 5_000, 2),
        "first record at or after 2000"
    );
    assert_eq!(ask(500).await, (0, 1_000, 0));
    assert_eq!(ask(9_000).await, (0, -1, -1), "none that late");
    let r = c.send(&list_offsets_request("nope", 0, -1)).await.unwrap();
    assert_eq!(r.topics[0].partitions[0].error_code, 3);
}
