//! ISR changes: KIP-497 (a shrink counts only once committed) and KIP-966 (no HW movement below
//! min.insync.replicas).

use std::sync::atomic::Ordering;

use crate::harness::*;

fn fast_lag(c: &mut gregor_broker::BrokerConfig) {
    c.replica_lag_time_max_ms = 600;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d6_hw_waits_for_the_shrink_to_commit() {
    let mut c = Cluster::start(3, fast_lag).await;
    c.create_topic(vec![1, 2, 3], 1);
    let mut conn = c.connect(1).await;
    assert_eq!(produce(&mut conn, -1, 10_000, "a").await.error_code, 0);
    c.ctl.block_alter_isr(true);
    c.stop_node(3).await;
    assert_eq!(produce(&mut conn, 1, 10_000, "b").await.error_code, 0);
    let waiting = tokio::spawn(async move { produce(&mut conn, -1, 15_000, "c").await });
    wait_until("follower 2 to have everything", || c.leo(2) == 3).await;
    // The leader notices the lagging follower and asks the controller, which holds the call.
    let mut calls = c.ctl.alter_calls.subscribe();
    tokio::time::timeout(DEADLINE, calls.wait_for(|n| *n >= 1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.ctl.get(TOPIC, 0).isr, vec![1, 2, 3]);
    assert_eq!(
        c.hw(1),
        1,
        "HW stays at follower 3's LEO until the shrink commits"
    );
    assert!(!waiting.is_finished(), "acks=all waits");
    c.ctl.block_alter_isr(false);
    wait_until("the shrink to commit", || {
        c.ctl.get(TOPIC, 0).isr == vec![1, 2]
    })
    .await;
    let r = tokio::time::timeout(DEADLINE, waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.error_code, 0);
    assert_eq!(r.base_offset, 2);
    wait_until("the HW to reach the log end", || c.hw(1) == 3).await;
    assert!(
        c.broker(1)
            .replica_stats()
            .isr_changes
            .load(Ordering::Relaxed)
            >= 1
    );
    // Follower 3 comes back, catches up and is added again.
    c.start_node(3).await;
    wait_until("follower 3 to rejoin the ISR", || {
        c.ctl.get(TOPIC, 0).isr.len() == 3
    })
    .await;
    assert_eq!(c.leo(3), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d7_no_hw_movement_below_min_insync_replicas() {
    let c = Cluster::start(3, |_| {}).await;
    c.ctl.block_alter_isr(true);
    c.create_topic(vec![1, 2, 3], 1);
    let mut a = c.ctl.get(TOPIC, 0);
    a.isr = vec![1];
    a.partition_epoch += 1;
    c.ctl.set(TOPIC, 0, a);
    let mut conn = c.connect(1).await;
    for i in 0..3 {
        assert_eq!(
            produce(&mut conn, 1, 10_000, &format!("v{i}"))
                .await
                .error_code,
            0
        );
    }
    wait_until("the followers to copy everything", || {
        c.leo(2) == 3 && c.leo(3) == 3
    })
    .await;
    // The expansion is proposed but held by the controller: the committed ISR is {1} < 2.
    let mut calls = c.ctl.alter_calls.subscribe();
    tokio::time::timeout(DEADLINE, calls.wait_for(|n| *n >= 1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        c.hw(1),
        0,
        "KIP-966: the HW does not advance for acks=1 either"
    );
    let d = fetch(&mut conn, 0, 1).await;
    assert_eq!(d.error_code, 0);
    assert_eq!(d.high_watermark, 0);
    assert_eq!(record_count(&d.records), 0, "consumers see nothing new");
    c.ctl.block_alter_isr(false);
    wait_until("the expansion to commit", || {
        c.ctl.get(TOPIC, 0).isr.len() == 3
    })
    .await;
    wait_until("the HW to advance", || c.hw(1) == 3).await;
    assert_eq!(record_count(&fetch(&mut conn, 0, 1).await.records), 3);
}
