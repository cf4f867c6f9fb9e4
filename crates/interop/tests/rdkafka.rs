//! librdkafka 2.12.1 (the `rdkafka` crate, static build) against an in-process Gregor broker:
//! produce with every acks value and codec, consume by `assign` from the beginning, an offset
//! and a timestamp, admin create/delete topics, metadata. Every wait has a deadline.
//!
//! Consumers set `group.id` but only `assign` and never commit (`enable.auto.commit=false`,
//! `enable.auto.offset.store=false`). With a `group.id` librdkafka still starts its group state
//! machine and sends FindCoordinator, which makes the broker create `__consumer_offsets`; tests
//! that list topics ignore it. Fetching is unaffected.
//!
//! The idempotent producer (`enable.idempotence=true`, 5 in flight) is checked for exactly-once
//! appends and per-partition order.

// Test code: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use gregor_interop::InteropBroker;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Message, Timestamp};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

/// Upper bound for any single wait.
const DEADLINE: Duration = Duration::from_secs(20);

fn config(tb: &InteropBroker) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &tb.addr)
        .set("broker.address.family", "v4");
    c
}

fn consumer(tb: &InteropBroker) -> BaseConsumer {
    config(tb)
        .set("group.id", "gregor-interop-assign-only")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .create()
        .unwrap()
}

/// (offset, key, value, timestamp) of a record.
type Rec = (i64, String, String, i64);

/// Assigns `topic`-0 at `start` and polls until `count` records arrived (deadline bounded).
fn consume(tb: &InteropBroker, topic: &str, start: Offset, count: usize) -> Vec<Rec> {
    let c = consumer(tb);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, start).unwrap();
    c.assign(&tpl).unwrap();
    let deadline = Instant::now() + DEADLINE;
    let mut out = Vec::new();
    while out.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "only {} of {count} records from {start:?}",
            out.len()
        );
        match c.poll(left.min(Duration::from_millis(500))) {
            None => {}
            Some(Err(e)) => panic!("consumer error: {e}"),
            Some(Ok(m)) => {
                let ts = match m.timestamp() {
                    Timestamp::CreateTime(t) => t,
                    other => panic!("expected CreateTime, got {other:?}"),
                };
                out.push((
                    m.offset(),
                    String::from_utf8(m.key().unwrap().to_vec()).unwrap(),
                    String::from_utf8(m.payload().unwrap().to_vec()).unwrap(),
                    ts,
                ));
            }
        }
    }
    out
}

#[test]
fn produce_every_acks_and_codec_then_consume_from_beginning_offset_and_timestamp() {
    let tb = InteropBroker::start().unwrap();
    let topic = "rd-roundtrip";
    let mut expected: Vec<Rec> = Vec::new();
    let mut ts = 1_600_000_000_000_i64;
    for acks in ["0", "1", "all"] {
        for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
            let producer: FutureProducer = config(&tb)
                .set("acks", acks)
                .set("compression.type", codec)
                .set("linger.ms", "5")
                .set("message.timeout.ms", "20000")
                .create()
                .unwrap();
            let mut deliveries = Vec::new();
            for i in 0..4 {
                let key = format!("{acks}-{codec}-{i}");
                let value = format!("value {i} {codec} acks={acks}");
                ts += 1000;
                let queued = producer
                    .send_result(
                        FutureRecord::to(topic)
                            .partition(0)
                            .key(&key)
                            .payload(&value)
                            .timestamp(ts),
                    )
                    .map_err(|(e, _)| e)
                    .unwrap();
                deliveries.push(queued);
                expected.push((expected.len() as i64, key, value, ts));
            }
            for (i, d) in deliveries.into_iter().enumerate() {
                let delivery = tb
                    .block_on(DEADLINE, d)
                    .unwrap()
                    .expect("delivery report")
                    .map_err(|(e, _)| e)
                    .unwrap_or_else(|e| panic!("acks={acks} codec={codec}: {e}"));
                let want = (expected.len() - 4 + i) as i64;
                if acks == "0" {
                    // No reply, so librdkafka does not know the offset (it reports a logical
                    // offset, -1000 in 2.12.1).
                    assert!(delivery.offset < 0, "acks=0 offset {}", delivery.offset);
                } else {
                    assert_eq!(delivery.offset, want, "acks={acks} codec={codec}");
                }
            }
            producer.flush(DEADLINE).unwrap();
            // acks=0 has no reply: wait for the broker's high watermark before the next
            // producer (a new connection) could overtake it.
            let hw = tb
                .wait_for_high_watermark(topic, 0, expected.len() as i64, DEADLINE)
                .unwrap();
            assert_eq!(hw, expected.len() as i64, "acks={acks} codec={codec}");
        }
    }
    assert_eq!(tb.log_end_offset(topic, 0).unwrap(), 60);

    let c = consumer(&tb);
    assert_eq!(c.fetch_watermarks(topic, 0, DEADLINE).unwrap(), (0, 60));
    let want = expected[53].clone();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(want.3))
        .unwrap();
    let found = c.offsets_for_times(tpl, DEADLINE).unwrap();
    assert_eq!(
        found.find_partition(topic, 0).unwrap().offset(),
        Offset::Offset(want.0),
        "offsets_for_times"
    );
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(ts + 10_000))
        .unwrap();
    let found = c.offsets_for_times(tpl, DEADLINE).unwrap();
    assert_eq!(
        found.find_partition(topic, 0).unwrap().offset(),
        Offset::End,
        "no record at or after a future timestamp"
    );
    drop(c);

    assert_eq!(consume(&tb, topic, Offset::Beginning, 60), expected);
    assert_eq!(consume(&tb, topic, Offset::Offset(30), 30), expected[30..]);
    assert_eq!(
        consume(&tb, topic, Offset::Offset(want.0), 60 - want.0 as usize),
        expected[want.0 as usize..]
    );
    tb.stop().unwrap();
}

#[test]
fn admin_creates_and_deletes_topics_and_metadata_lists_them() {
    let tb = InteropBroker::start_with(|c| c.auto_create_topics_enable = false).unwrap();
    let admin: AdminClient<_> = config(&tb).create().unwrap();
    let opts = AdminOptions::new().operation_timeout(Some(DEADLINE));
    let created = tb
        .block_on(
            DEADLINE,
            admin.create_topics(
                &[
                    NewTopic::new("rd-admin-a", 3, TopicReplication::Fixed(1))
                        .set("retention.ms", "3600000"),
                    NewTopic::new("rd-admin-b", 1, TopicReplication::Fixed(1)),
                ],
                &opts,
            ),
        )
        .unwrap()
        .unwrap();
    assert_eq!(
        created,
        vec![Ok("rd-admin-a".to_string()), Ok("rd-admin-b".to_string())]
    );
    // Per-topic errors: an existing topic and a replication factor a single node cannot hold.
    let again = tb
        .block_on(
            DEADLINE,
            admin.create_topics(
                &[
                    NewTopic::new("rd-admin-a", 1, TopicReplication::Fixed(1)),
                    NewTopic::new("rd-admin-c", 1, TopicReplication::Fixed(3)),
                ],
                &opts,
            ),
        )
        .unwrap()
        .unwrap();
    assert_eq!(
        again,
        vec![
            Err((
                "rd-admin-a".to_string(),
                RDKafkaErrorCode::TopicAlreadyExists
            )),
            Err((
                "rd-admin-c".to_string(),
                RDKafkaErrorCode::InvalidReplicationFactor
            )),
        ]
    );

    let c = consumer(&tb);
    let md = c.fetch_metadata(None, DEADLINE).unwrap();
    assert_eq!(md.brokers().len(), 1);
    assert_eq!(md.brokers()[0].host(), "127.0.0.1");
    // Internal topics (`__consumer_offsets`, created when the consumer's group.id makes
    // librdkafka look up its coordinator) are listed too, as Kafka does; only ours matter here.
    let mut topics: Vec<(String, usize)> = md
        .topics()
        .iter()
        .map(|t| (t.name().to_string(), t.partitions().len()))
        // See below: the consumer's coordinator lookup may have created it.
        .filter(|(name, _)| name != "__consumer_offsets")
        .collect();
    topics.sort();
    assert_eq!(
        topics,
        vec![("rd-admin-a".to_string(), 3), ("rd-admin-b".to_string(), 1)]
    );
    let a = md
        .topics()
        .iter()
        .find(|t| t.name() == "rd-admin-a")
        .unwrap();
    for p in a.partitions() {
        assert_eq!(p.leader(), md.brokers()[0].id());
        assert_eq!(p.replicas(), &[md.brokers()[0].id()]);
        assert_eq!(p.isr(), &[md.brokers()[0].id()]);
        assert!(p.error().is_none());
    }

    let deleted = tb
        .block_on(
            DEADLINE,
            admin.delete_topics(&["rd-admin-b", "rd-nope"], &opts),
        )
        .unwrap()
        .unwrap();
    assert_eq!(
        deleted,
        vec![
            Ok("rd-admin-b".to_string()),
            Err((
                "rd-nope".to_string(),
                RDKafkaErrorCode::UnknownTopicOrPartition
            )),
        ]
    );
    let md = c.fetch_metadata(None, DEADLINE).unwrap();
    // The consumer's group.id makes librdkafka look up its coordinator, which creates
    // `__consumer_offsets` whenever that query wins the race with this listing.
    let names: Vec<&str> = md
        .topics()
        .iter()
        .map(|t| t.name())
        .filter(|n| *n != "__consumer_offsets")
        .collect();
    assert_eq!(names, vec!["rd-admin-a"]);
    // Asking for a deleted topic (auto-create off) answers UNKNOWN_TOPIC_OR_PARTITION.
    let md = c.fetch_metadata(Some("rd-admin-b"), DEADLINE).unwrap();
    let err = md.topics()[0].error().map(RDKafkaErrorCode::from);
    assert_eq!(err, Some(RDKafkaErrorCode::UnknownTopicOrPartition));
    tb.stop().unwrap();
}

/// An idempotent producer (`enable.idempotence=true`, 5 requests in flight, many small
/// batches) writes N records over 4 partitions: every delivery succeeds, a full consume shows
/// every record exactly once at its reported offset, and each partition keeps production order.
#[test]
fn idempotent_producer_writes_each_record_once_in_order() {
    const N: usize = 2000;
    const PARTITIONS: i32 = 4;
    let tb = InteropBroker::start().unwrap();
    let topic = "rd-idempotent";
    tb.broker
        .create_topic(topic, PARTITIONS, 1, Default::default(), false)
        .unwrap();
    let producer: FutureProducer = config(&tb)
        .set("enable.idempotence", "true")
        .set("max.in.flight.requests.per.connection", "5")
        .set("acks", "all")
        .set("linger.ms", "1")
        .set("batch.num.messages", "7")
        .set("message.timeout.ms", "30000")
        .create()
        .unwrap();
    let mut deliveries = Vec::with_capacity(N);
    for i in 0..N {
        let value = i.to_string();
        let partition = i as i32 % PARTITIONS;
        let queued = producer
            .send_result(
                FutureRecord::to(topic)
                    .partition(partition)
                    .key(&value)
                    .payload(&value),
            )
            .map_err(|(e, _)| e)
            .unwrap();
        deliveries.push(queued);
    }
    let mut offsets = Vec::with_capacity(N);
    for (i, d) in deliveries.into_iter().enumerate() {
        let delivery = tb
            .block_on(DEADLINE, d)
            .unwrap()
            .expect("delivery report")
            .map_err(|(e, _)| e)
            .unwrap_or_else(|e| panic!("record {i}: {e}"));
        assert_eq!(delivery.partition, i as i32 % PARTITIONS);
        offsets.push(delivery.offset);
    }
    producer.flush(DEADLINE).unwrap();

    let c = consumer(&tb);
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let deadline = Instant::now() + DEADLINE;
    let mut seen: Vec<Vec<(i64, usize)>> = vec![Vec::new(); PARTITIONS as usize];
    let mut total = 0;
    while total < N {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "only {total} of {N} records consumed");
        match c.poll(left.min(Duration::from_millis(500))) {
            None => {}
            Some(Err(e)) => panic!("consumer error: {e}"),
            Some(Ok(m)) => {
                let v: usize = std::str::from_utf8(m.payload().unwrap())
                    .unwrap()
                    .parse()
                    .unwrap();
                seen[m.partition() as usize].push((m.offset(), v));
                total += 1;
            }
        }
    }
    for p in 0..PARTITIONS {
        let end = tb.log_end_offset(topic, p).unwrap();
        assert_eq!(
            end,
            (N as i32 / PARTITIONS) as i64,
            "no duplicates in partition {p}"
        );
    }
    let mut all: Vec<usize> = Vec::with_capacity(N);
    for (p, recs) in seen.iter().enumerate() {
        let values: Vec<usize> = recs.iter().map(|r| r.1).collect();
        let mut sorted = values.clone();
        sorted.sort_unstable();
        assert_eq!(values, sorted, "partition {p} keeps production order");
        for &(offset, v) in recs {
            assert_eq!(v % PARTITIONS as usize, p);
            assert_eq!(
                offsets[v], offset,
                "record {v} stored at its delivered offset"
            );
        }
        all.extend(values);
    }
    all.sort_unstable();
    assert_eq!(all, (0..N).collect::<Vec<_>>(), "every record exactly once");
    tb.stop().unwrap();
}
