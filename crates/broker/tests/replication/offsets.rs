//! ListOffsets after a leader change (OFFSET_NOT_AVAILABLE) and a follower that fell behind the
//! leader's log start.

use std::sync::atomic::Ordering;

use gregor_client::kafka_protocol::messages::ListOffsetsRequest;
use gregor_client::kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsTopic,
};
use gregor_client::kafka_protocol::messages::{BrokerId, TopicName};
use gregor_client::kafka_protocol::protocol::StrBytes;

use crate::harness::*;

fn min_isr_1(c: &mut gregor_broker::BrokerConfig) {
    c.min_insync_replicas = 1;
}

/// ListOffsets "latest" on `TOPIC`-0: (error code, offset, leader epoch).
async fn latest(conn: &mut gregor_client::Connection) -> (i16, i64, i32) {
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                .with_partitions(vec![
                    ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_current_leader_epoch(-1)
                        .with_timestamp(-1),
                ]),
        ]);
    let resp = tokio::time::timeout(DEADLINE, conn.send(&req))
        .await
        .unwrap()
        .unwrap();
    let p = &resp.topics[0].partitions[0];
    (p.error_code, p.offset, p.leader_epoch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_offsets_waits_for_a_new_leaders_hw() {
    let mut c = Cluster::start(2, min_isr_1).await;
    c.create_topic(vec![1, 2], 1);
    c.broker(1)
        .failpoints()
        .withhold_high_watermark
        .store(true, Ordering::SeqCst);
    let mut conn = c.connect(1).await;
    for v in ["a", "b"] {
        assert_eq!(produce(&mut conn, -1, 10_000, v).await.error_code, 0);
    }
    assert_eq!(latest(&mut conn).await, (0, 2, 1));
    assert_eq!(c.hw(2), 0);
    c.stop_node(1).await;
    // Broker 2 leads epoch 2 from offset 2 with an HW of 0: its "latest" could go backwards.
    c.ctl.elect(TOPIC, 0, 2, Some(vec![2, 1]));
    let mut conn = c.connect(2).await;
    assert_eq!(latest(&mut conn).await.0, 78, "OFFSET_NOT_AVAILABLE");
    // Broker 1 returns and fetches: the HW reaches the epoch start.
    c.start_node(1).await;
    wait_until("the new leader's HW to catch up", || c.hw(2) == 2).await;
    assert_eq!(latest(&mut conn).await, (0, 2, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_behind_the_leaders_log_start_restarts_there() {
    let mut c = Cluster::start(2, min_isr_1).await;
    c.create_topic(vec![1, 2], 1);
    let mut conn = c.connect(1).await;
    for i in 0..5 {
        assert_eq!(
            produce(&mut conn, -1, 10_000, &format!("a{i}"))
                .await
                .error_code,
            0
        );
    }
    c.stop_node(2).await;
    let mut a = c.ctl.get(TOPIC, 0);
    a.isr = vec![1];
    a.partition_epoch += 1;
    c.ctl.set(TOPIC, 0, a);
    for i in 0..5 {
        assert_eq!(
            produce(&mut conn, -1, 10_000, &format!("b{i}"))
                .await
                .error_code,
            0
        );
    }
    {
        let p = c.broker(1).partition(TOPIC, 0).unwrap();
        p.log.write().advance_log_start_offset(8).unwrap();
    }
    c.start_node(2).await;
    wait_until("the follower to catch up", || c.leo(2) == 10).await;
    let p = c.broker(2).partition(TOPIC, 0).unwrap();
    assert_eq!(p.log.read().log_start_offset(), 8);
    assert_eq!(c.batches(1), c.batches(2));
    p.log.read().verify().unwrap();
}
