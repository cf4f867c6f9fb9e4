//! acks=all / acks=1 semantics with RF=3 and min.insync.replicas=2.

use gregor_client::kafka_protocol::messages::ProduceRequest;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_all_returns_after_both_followers_have_the_batch() {
    let mut c = Cluster::start(3, |_| {}).await;
    c.create_topic(vec![1, 2, 3], 1);
    let mut conn = c.connect(1).await;
    for i in 0..3 {
        let r = produce(&mut conn, -1, 10_000, &format!("v{i}")).await;
        assert_eq!(r.error_code, 0);
        assert_eq!(r.base_offset, i);
        // The ack means the whole ISR has it: both followers' logs hold the batch already.
        assert!(c.leo(2) > i, "follower 2 has offset {i}");
        assert!(c.leo(3) > i, "follower 3 has offset {i}");
        assert!(c.hw(1) > i);
    }
    // Consumers read from the leader only, never above the HW. Stop follower 3 so the HW stays
    // at 3 while the leader's log grows.
    c.stop_node(3).await;
    let r = produce(&mut conn, 1, 10_000, "v3").await;
    assert_eq!(r.error_code, 0);
    wait_until("follower 2 to fetch offset 3", || c.leo(2) == 4).await;
    assert_eq!(c.leo(1), 4);
    assert_eq!(c.hw(1), 3, "follower 3 (in the ISR) does not have offset 3");
    let d = fetch(&mut conn, 0, 1).await;
    assert_eq!(d.error_code, 0);
    assert_eq!(d.high_watermark, 3);
    assert_eq!(record_count(&d.records), 3);
    let d = fetch(&mut conn, 3, 1).await;
    assert_eq!(record_count(&d.records), 0, "offset 3 is above the HW");
    // Epoch fencing and follower reads.
    assert_eq!(fetch(&mut conn, 0, 0).await.error_code, 74);
    let stale = fetch(&mut conn, 0, 2).await;
    assert_eq!(stale.error_code, 75);
    let mut follower = c.connect(2).await;
    let d = fetch(&mut follower, 0, -1).await;
    assert_eq!(d.error_code, 6, "a follower does not serve consumers");
    assert_eq!(
        d.current_leader.leader_id.0, 1,
        "the leader hint names broker 1"
    );
    assert_eq!(d.current_leader.leader_epoch, 1);
    let r = produce(&mut follower, 1, 1000, "x").await;
    assert_eq!(r.error_code, 6, "a follower does not accept produce");
    assert_eq!(c.leo(2), 4, "nothing appended on the follower");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_enough_replicas_appends_nothing() {
    let c = Cluster::start(3, |_| {}).await;
    // No expansion may commit during the test.
    c.ctl.block_alter_isr(true);
    c.create_topic(vec![1, 2, 3], 1);
    let mut a = c.ctl.get(TOPIC, 0);
    a.isr = vec![1];
    a.partition_epoch += 1;
    c.ctl.set(TOPIC, 0, a);
    let mut conn = c.connect(1).await;
    let r = produce(&mut conn, -1, 10_000, "x").await;
    assert_eq!(r.error_code, 19, "NOT_ENOUGH_REPLICAS");
    assert_eq!(c.leo(1), 0, "nothing appended");
    // acks=1 still appends.
    assert_eq!(produce(&mut conn, 1, 10_000, "y").await.error_code, 0);
    assert_eq!(c.leo(1), 1);
    c.ctl.block_alter_isr(false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isr_shrinking_below_min_while_waiting_fails_with_20() {
    let mut c = Cluster::start(3, |_| {}).await;
    c.create_topic(vec![1, 2, 3], 1);
    c.stop_node(2).await;
    c.stop_node(3).await;
    let mut conn = c.connect(1).await;
    let waiting = tokio::spawn(async move { produce(&mut conn, -1, 15_000, "x").await });
    wait_until("the batch to be appended", || c.leo(1) == 1).await;
    assert_eq!(c.hw(1), 0);
    // The controller commits a shrink to {1} (below min.insync.replicas=2).
    let mut a = c.ctl.get(TOPIC, 0);
    a.isr = vec![1];
    a.partition_epoch += 1;
    c.ctl.set(TOPIC, 0, a);
    let r = tokio::time::timeout(DEADLINE, waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.error_code, 20, "NOT_ENOUGH_REPLICAS_AFTER_APPEND");
    assert_eq!(c.leo(1), 1, "the batch stays in the log (indeterminate)");
    assert_eq!(
        c.hw(1),
        0,
        "KIP-966: no HW movement below min.insync.replicas"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_all_times_out_when_a_follower_in_the_isr_is_down() {
    let mut c = Cluster::start(3, |_| {}).await;
    c.create_topic(vec![1, 2, 3], 1);
    c.stop_node(3).await;
    let mut conn = c.connect(1).await;
    let started = std::time::Instant::now();
    let r = produce(&mut conn, -1, 300, "x").await;
    assert_eq!(r.error_code, 7, "REQUEST_TIMED_OUT");
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    assert_eq!(c.leo(1), 1);
    // Leadership moving away while a request waits fails it with 6.
    let waiting = tokio::spawn(async move { produce(&mut conn, -1, 15_000, "y").await });
    wait_until("the second batch to be appended", || c.leo(1) == 2).await;
    c.ctl.elect(TOPIC, 0, 2, Some(vec![2]));
    let r = tokio::time::timeout(DEADLINE, waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.error_code, 6, "NOT_LEADER_OR_FOLLOWER after the append");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_deadline_covers_every_partition_of_a_request() {
    use gregor_broker::cluster::PartitionAssignment;
    use gregor_client::kafka_protocol::messages::produce_request::{
        PartitionProduceData, TopicProduceData,
    };
    use gregor_client::kafka_protocol::messages::{ProduceRequest, TopicName};
    use gregor_client::kafka_protocol::protocol::StrBytes;

    let mut c = Cluster::start(3, |_| {}).await;
    for n in c.nodes.values() {
        n.broker
            .create_topic("m", 2, 1, Default::default(), false)
            .unwrap();
    }
    for p in 0..2 {
        c.ctl.set(
            "m",
            p,
            PartitionAssignment {
                leader: Some(1),
                leader_epoch: 1,
                partition_epoch: 1,
                replicas: vec![1, 2, 3],
                isr: vec![1, 2, 3],
                elr: Vec::new(),
            },
        );
    }
    c.stop_node(3).await;
    let mut conn = c.connect(1).await;
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(1000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("m")))
                .with_partition_data(
                    (0..2)
                        .map(|p| {
                            PartitionProduceData::default()
                                .with_index(p)
                                .with_records(Some(batch("x")))
                        })
                        .collect(),
                ),
        ]);
    let started = std::time::Instant::now();
    let resp = tokio::time::timeout(DEADLINE, conn.send(&req))
        .await
        .unwrap()
        .unwrap();
    let elapsed = started.elapsed();
    let codes: Vec<i16> = resp.responses[0]
        .partition_responses
        .iter()
        .map(|p| p.error_code)
        .collect();
    assert_eq!(
        codes,
        vec![7, 7],
        "both partitions time out (follower 3 is down)"
    );
    // The request's timeout bounds the whole request, not each partition in turn.
    assert!(
        elapsed < std::time::Duration::from_millis(1900),
        "waited {elapsed:?}"
    );
}

/// A connection keeps handling its pipelined requests while an acks=all produce on it waits
/// for replication, and still answers in request order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_appended_while_an_acks_all_produce_waits() {
    let mut c = Cluster::start(3, |_| {}).await;
    // The ISR stays {1, 2, 3}, so the HW cannot pass what follower 3 lacks.
    c.ctl.block_alter_isr(true);
    c.create_topic(vec![1, 2, 3], 1);
    c.stop_node(3).await;
    let conn = c.connect(1).await;
    let version = conn.version_for::<ProduceRequest>().unwrap();
    let (mut writer, mut reader) = conn.into_split();
    let first = writer
        .write_request(&produce_request(-1, 20_000, "waits"), version)
        .await
        .unwrap();
    let second = writer
        .write_request(&produce_request(1, 20_000, "behind it"), version)
        .await
        .unwrap();
    // The acks=1 request behind the waiting one is appended without waiting for it.
    wait_until("the pipelined acks=1 batch to be appended", || {
        c.leo(1) == 2
    })
    .await;
    assert_eq!(c.hw(1), 0, "follower 3 has nothing: the HW stays");
    // Nothing is answered out of order: the acks=1 answer waits behind the acks=all one, which
    // completes once follower 3 is back and has fetched both batches.
    c.start_node(3).await;
    let r = tokio::time::timeout(
        DEADLINE,
        reader.read_response::<ProduceRequest>(version, first),
    )
    .await
    .expect("the acks=all answer in time")
    .expect("the first answer is the acks=all request's");
    let p = &r.responses[0].partition_responses[0];
    assert_eq!((p.error_code, p.base_offset), (0, 0));
    assert!(c.hw(1) >= 1);
    let r = reader
        .read_response::<ProduceRequest>(version, second)
        .await
        .expect("the second answer is the acks=1 request's");
    let p = &r.responses[0].partition_responses[0];
    assert_eq!((p.error_code, p.base_offset), (0, 1));
    c.ctl.block_alter_isr(false);
}
