//! Leader epochs and log reconciliation: the directed scenarios D1–D4 of reliability.md §6.3.

use crate::harness::*;

fn min_isr_1(c: &mut gregor_broker::BrokerConfig) {
    c.min_insync_replicas = 1;
}

async fn wait_in_sync(c: &Cluster, a: i32, b: i32, leo: i64) {
    wait_until(&format!("brokers {a} and {b} to reach {leo}"), || {
        c.leo(a) == leo && c.leo(b) == leo
    })
    .await;
    assert_eq!(c.batches(a), c.batches(b), "identical batch sequences");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d1_epoch_workflow() {
    let mut c = Cluster::start(2, min_isr_1).await;
    c.create_topic(vec![1, 2], 1);
    let mut conn = c.connect(1).await;
    assert_eq!(produce(&mut conn, -1, 10_000, "a").await.error_code, 0);
    // Bounce the leader: 2 takes over in epoch 2.
    c.stop_node(1).await;
    c.ctl.elect(TOPIC, 0, 2, Some(vec![2]));
    let mut conn = c.connect(2).await;
    assert_eq!(produce(&mut conn, -1, 10_000, "b").await.error_code, 0);
    c.start_node(1).await;
    wait_until("broker 1 to rejoin the ISR", || {
        c.ctl.get(TOPIC, 0).isr.len() == 2
    })
    .await;
    // Bounce the new leader: 1 takes over in epoch 3.
    c.stop_node(2).await;
    c.ctl.elect(TOPIC, 0, 1, Some(vec![1]));
    let mut conn = c.connect(1).await;
    assert_eq!(produce(&mut conn, -1, 10_000, "c").await.error_code, 0);
    c.start_node(2).await;
    wait_in_sync(&c, 1, 2, 3).await;
    for id in [1, 2] {
        assert_eq!(
            c.epochs(id),
            vec![(1, 0), (2, 1), (3, 2)],
            "epoch cache of {id}"
        );
        let epochs: Vec<i32> = c.batches(id).iter().map(|b| b.1).collect();
        assert_eq!(
            epochs,
            vec![1, 2, 3],
            "every batch stamped with its leader's epoch"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d2_kip101_acked_record_survives_a_follower_restart_without_hw() {
    let mut c = Cluster::start(2, min_isr_1).await;
    c.create_topic(vec![1, 2], 1);
    c.broker(1)
        .failpoints()
        .withhold_high_watermark
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let mut conn = c.connect(1).await;
    let r = produce(&mut conn, -1, 10_000, "acked").await;
    assert_eq!(r.error_code, 0);
    assert_eq!(c.leo(2), 1);
    assert_eq!(c.hw(2), 0, "the follower never learned the HW");
    // Restart the follower, then lose the leader before the follower fetches again.
    c.stop_node(2).await;
    c.stop_node(1).await;
    c.start_node(2).await;
    c.ctl.elect(TOPIC, 0, 2, Some(vec![2]));
    assert_eq!(c.leo(2), 1, "pre-KIP-101 brokers truncated to the HW here");
    c.start_node(1).await;
    let mut conn = c.connect(2).await;
    assert_eq!(produce(&mut conn, -1, 10_000, "next").await.error_code, 0);
    wait_in_sync(&c, 1, 2, 2).await;
    let d = fetch(&mut conn, 0, -1).await;
    assert_eq!(
        record_count(&d.records),
        2,
        "the acked record is still there"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d3_divergent_logs_reconcile() {
    let mut c = Cluster::start(2, min_isr_1).await;
    c.create_topic(vec![1, 2], 1);
    let mut conn = c.connect(1).await;
    for i in 0..10 {
        assert_eq!(
            produce(&mut conn, -1, 10_000, &format!("old{i}"))
                .await
                .error_code,
            0
        );
    }
    wait_in_sync(&c, 1, 2, 10).await;
    // Byte length of the first 5 batches in the leader's segment.
    let cut: u64 = {
        let p = c.broker(1).partition(TOPIC, 0).unwrap();
        let log = p.log.read();
        let read = log.read(0, 1 << 20, i64::MAX, true).unwrap();
        gregor_storage::BatchIter::new(read.records)
            .take(5)
            .map(|b| b.unwrap().1.len() as u64)
            .sum()
    };
    c.stop_node(2).await;
    c.stop_node(1).await;
    // Lose the leader's tail: no clean-shutdown marker, segment cut after 5 batches.
    let dir = c.dir(1).join(format!("{TOPIC}-0"));
    std::fs::remove_file(dir.join("clean-shutdown")).unwrap();
    let segment = dir.join(format!("{:020}.log", 0));
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();
    f.set_len(cut).unwrap();
    drop(f);
    c.start_node(1).await;
    assert_eq!(c.leo(1), 5);
    c.ctl.elect(TOPIC, 0, 1, Some(vec![1]));
    let mut conn = c.connect(1).await;
    for i in 0..10 {
        assert_eq!(
            produce(&mut conn, -1, 10_000, &format!("new{i}"))
                .await
                .error_code,
            0
        );
    }
    c.start_node(2).await;
    wait_in_sync(&c, 1, 2, 15).await;
    assert!(
        c.broker(2)
            .replica_stats()
            .truncations
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    c.broker(2)
        .partition(TOPIC, 0)
        .unwrap()
        .log
        .read()
        .verify()
        .unwrap();
    let epochs: Vec<i32> = c.batches(2).iter().map(|b| b.1).collect();
    assert_eq!(epochs, [[1; 5], [2; 5], [2; 5]].concat());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d4_fast_leader_changes() {
    let mut c = Cluster::start(2, min_isr_1).await;
    c.create_topic(vec![1, 2], 1);
    let (mut leader, mut follower) = (1, 2);
    for i in 0..5 {
        let mut conn = c.connect(leader).await;
        let r = produce(&mut conn, -1, 10_000, &format!("v{i}")).await;
        assert_eq!(r.error_code, 0, "round {i}");
        drop(conn);
        c.restart_node(follower).await;
        wait_until("the follower to catch up", || c.leo(follower) == i + 1).await;
        c.stop_node(leader).await;
        c.ctl.elect(TOPIC, 0, follower, Some(vec![follower]));
        c.start_node(leader).await;
        std::mem::swap(&mut leader, &mut follower);
    }
    wait_in_sync(&c, 1, 2, 5).await;
    let epochs: Vec<i32> = c.batches(1).iter().map(|b| b.1).collect();
    assert_eq!(epochs, vec![1, 2, 3, 4, 5]);
}
