//! The `Replication` service called directly (fencing, divergence), a corrupt batch on the wire,
//! and OffsetForLeaderEpoch through the Kafka port.

use std::sync::atomic::Ordering;

use gregor_proto::replication::v1::replication_client::ReplicationClient;
use gregor_proto::replication::v1::{
    DescribeReplicasRequest, PartitionData, PartitionFetch, ReplicaFetchRequest,
};

use crate::harness::*;

fn min_isr_1(c: &mut gregor_broker::BrokerConfig) {
    c.min_insync_replicas = 1;
}

async fn replica_fetch(
    addr: &str,
    cluster_id: &str,
    replica_id: i32,
    epoch: i32,
    fetch_offset: i64,
    last_fetched_epoch: i32,
) -> Result<PartitionData, tonic::Status> {
    let mut client = ReplicationClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let reply = tokio::time::timeout(
        DEADLINE,
        client.fetch(ReplicaFetchRequest {
            cluster_id: cluster_id.into(),
            replica_id,
            broker_epoch: 1,
            max_wait_ms: 0,
            max_bytes: 1 << 20,
            partitions: vec![PartitionFetch {
                topic: TOPIC.into(),
                partition: 0,
                current_leader_epoch: epoch,
                fetch_offset,
                last_fetched_epoch,
                log_start_offset: 0,
                max_bytes: 1 << 20,
            }],
        }),
    )
    .await
    .unwrap()?;
    Ok(reply.into_inner().partitions.remove(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_fetch_is_fenced_and_detects_divergence() {
    let c = Cluster::start(3, min_isr_1).await;
    // Broker 3 runs but is not a replica.
    c.create_topic(vec![1, 2], 1);
    let mut conn = c.connect(1).await;
    assert_eq!(produce(&mut conn, -1, 10_000, "a").await.error_code, 0);
    assert_eq!(produce(&mut conn, -1, 10_000, "b").await.error_code, 0);
    let leader = c.nodes[&1].replication.clone();
    let status = replica_fetch(&leader, "other-cluster", 2, 1, 0, -1)
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert_eq!(
        replica_fetch(&leader, CLUSTER_ID, 2, 0, 0, -1)
            .await
            .unwrap()
            .error_code,
        74
    );
    assert_eq!(
        replica_fetch(&leader, CLUSTER_ID, 2, 2, 0, -1)
            .await
            .unwrap()
            .error_code,
        75
    );
    assert_eq!(
        replica_fetch(&leader, CLUSTER_ID, 3, 1, 0, -1)
            .await
            .unwrap()
            .error_code,
        6
    );
    let follower = c.nodes[&2].replication.clone();
    assert_eq!(
        replica_fetch(&follower, CLUSTER_ID, 1, 1, 0, -1)
            .await
            .unwrap()
            .error_code,
        6
    );
    // In sync: records from the offset, the HW and the log end.
    let d = replica_fetch(&leader, CLUSTER_ID, 2, 1, 0, -1)
        .await
        .unwrap();
    assert_eq!(d.error_code, 0);
    assert_eq!(d.log_end_offset, 2);
    assert_eq!(d.high_watermark, 2);
    assert!(d.diverging_epoch.is_none());
    assert!(!d.records.is_empty());
    // A follower claiming offsets past the end of epoch 1 diverged: told where epoch 1 ends.
    let d = replica_fetch(&leader, CLUSTER_ID, 2, 1, 5, 1)
        .await
        .unwrap();
    let div = d.diverging_epoch.expect("diverging epoch");
    assert_eq!((div.epoch, div.end_offset), (1, 2));
    assert!(d.records.is_empty());
    // An epoch the leader never had: wait for metadata.
    assert_eq!(
        replica_fetch(&leader, CLUSTER_ID, 2, 1, 2, 7)
            .await
            .unwrap()
            .error_code,
        75
    );
    // DescribeReplicas reports the follower's progress: the offset of its last fetch that was
    // neither diverged nor refused (the two above are not progress), here at the log end.
    let d = replica_fetch(&leader, CLUSTER_ID, 2, 1, 2, 1)
        .await
        .unwrap();
    assert_eq!((d.error_code, d.diverging_epoch), (0, None));
    let mut client = ReplicationClient::connect(format!("http://{leader}"))
        .await
        .unwrap();
    let reply = client
        .describe_replicas(DescribeReplicasRequest {
            cluster_id: CLUSTER_ID.into(),
            partitions: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.broker_id, 1);
    let p = reply.partitions.iter().find(|p| p.topic == TOPIC).unwrap();
    assert_eq!(p.high_watermark, 2);
    assert_eq!(p.replicas, vec![1, 2]);
    let f = p.progress.iter().find(|r| r.broker_id == 2).unwrap();
    assert_eq!(f.log_end_offset, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_refuses_a_corrupt_batch() {
    let c = Cluster::start(2, min_isr_1).await;
    c.create_topic(vec![1, 2], 1);
    let leader = c.broker(1);
    leader
        .failpoints()
        .corrupt_fetch_records
        .store(1, Ordering::SeqCst);
    let mut conn = c.connect(1).await;
    assert_eq!(produce(&mut conn, 1, 10_000, "x").await.error_code, 0);
    let follower = c.broker(2);
    wait_until("the follower to refuse the corrupt set", || {
        follower
            .replica_stats()
            .rejected_fetches
            .load(Ordering::SeqCst)
            == 1
    })
    .await;
    assert_eq!(
        leader
            .failpoints()
            .corrupt_fetch_records
            .load(Ordering::SeqCst),
        0
    );
    // The retry brings the intact batch; the corrupt one never reached the log.
    wait_until("the follower to catch up", || c.leo(2) == 1).await;
    assert_eq!(c.batches(1), c.batches(2));
    follower
        .partition(TOPIC, 0)
        .unwrap()
        .log
        .read()
        .verify()
        .unwrap();
    assert_eq!(
        follower
            .replica_stats()
            .rejected_fetches
            .load(Ordering::SeqCst),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_for_leader_epoch_over_kafka() {
    let mut c = Cluster::start(2, min_isr_1).await;
    c.create_topic(vec![1, 2], 1);
    let mut conn = c.connect(1).await;
    assert_eq!(produce(&mut conn, -1, 10_000, "a").await.error_code, 0);
    assert_eq!(produce(&mut conn, -1, 10_000, "b").await.error_code, 0);
    wait_until("the follower to catch up", || c.leo(2) == 2).await;
    c.stop_node(1).await;
    c.ctl.elect(TOPIC, 0, 2, Some(vec![2]));
    let mut conn = c.connect(2).await;
    assert_eq!(produce(&mut conn, -1, 10_000, "c").await.error_code, 0);
    c.start_node(1).await;
    assert_eq!(offset_for_leader_epoch(&mut conn, 2, 1).await, (0, 1, 2));
    assert_eq!(offset_for_leader_epoch(&mut conn, 2, 2).await, (0, 2, 3));
    assert_eq!(offset_for_leader_epoch(&mut conn, -1, 0).await, (0, 0, 0));
    assert_eq!(offset_for_leader_epoch(&mut conn, 2, 9).await, (0, -1, -1));
    assert_eq!(offset_for_leader_epoch(&mut conn, 1, 1).await.0, 74);
    assert_eq!(offset_for_leader_epoch(&mut conn, 3, 1).await.0, 75);
    let mut old = c.connect(1).await;
    assert_eq!(
        offset_for_leader_epoch(&mut old, 2, 1).await.0,
        6,
        "only the leader answers"
    );
}
