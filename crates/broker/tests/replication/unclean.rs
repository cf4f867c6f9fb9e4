//! D5 of reliability.md §6.3: Kafka's `logsShouldNotDivergeOnUncleanLeaderElections` (alternating
//! single-broker writes across unclean elections leave no divergent logs, KIP-101/279) and the
//! KIP-320 consumer side (the truncation those elections cause is signalled, not silently
//! skipped).

use std::sync::atomic::Ordering;

use bytes::Bytes;
use gregor_storage::BatchIter;

use crate::harness::*;

fn unclean(c: &mut gregor_broker::BrokerConfig) {
    c.min_insync_replicas = 1;
    // A leader whose follower is gone shrinks the ISR to itself (its own AlterIsr) soon, so
    // acks=1 writes to it become visible to consumers.
    c.replica_lag_time_max_ms = 600;
}

/// A consumer as Kafka's tracks it (KIP-320): its position, the leader epoch of the last record
/// consumed, and what it has consumed (offset, value).
#[derive(Debug, Default)]
struct Consumer {
    position: i64,
    last_epoch: i32,
    consumed: Vec<(i64, String)>,
}

impl Consumer {
    /// Reads from the position up to the leader's HW, fetching with `leader_epoch` as
    /// `current_leader_epoch`.
    async fn poll(&mut self, conn: &mut gregor_client::Connection, leader_epoch: i32) {
        let d = fetch(conn, self.position, leader_epoch).await;
        assert_eq!(d.error_code, 0, "consumer fetch at {}", self.position);
        for item in BatchIter::new(d.records.unwrap_or_default()) {
            let (h, raw): (_, Bytes) = item.unwrap();
            for r in gregor_client::records::decode_records(&raw).unwrap() {
                if r.offset >= self.position {
                    let v = String::from_utf8(r.value.unwrap().to_vec()).unwrap();
                    self.consumed.push((r.offset, v));
                }
            }
            self.position = h.last_offset() + 1;
            self.last_epoch = h.partition_leader_epoch;
        }
        assert_eq!(self.position, d.high_watermark, "consumed up to the HW");
    }

    /// The reset Kafka's consumer does on a detected truncation (KIP-320): back to the end
    /// offset the leader reported; what it consumed from there on is known to be gone.
    fn truncate_to(&mut self, end_offset: i64) {
        self.position = end_offset;
        self.consumed.retain(|(o, _)| *o < end_offset);
    }
}

/// Waits until both replicas are in the ISR with the same log end and HW, then checks that the
/// logs and epoch caches are identical.
async fn wait_healed(c: &Cluster, leo: i64) {
    wait_until(
        &format!("both replicas in the ISR at log end and HW {leo}"),
        || {
            c.ctl.get(TOPIC, 0).isr.len() == 2
                && [1, 2].iter().all(|&id| c.leo(id) == leo && c.hw(id) == leo)
        },
    )
    .await;
    assert_eq!(
        c.batches(1),
        c.batches(2),
        "identical (offset, epoch, CRC) sequences"
    );
    assert_eq!(c.epochs(1), c.epochs(2), "identical epoch caches");
}

/// The values of every record in broker `id`'s log, in offset order.
fn values(c: &Cluster, id: i32) -> Vec<(i64, String)> {
    let p = c.broker(id).partition(TOPIC, 0).unwrap();
    let log = p.log.read();
    let read = log.read(0, 1 << 20, i64::MAX, true).unwrap();
    gregor_client::records::decode_records(&read.records)
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r.offset,
                String::from_utf8(r.value.unwrap().to_vec()).unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d5_unclean_elections_do_not_leave_divergent_logs() {
    let mut c = Cluster::start(2, unclean).await;
    c.create_topic(vec![1, 2], 1);
    let mut conn = c.connect(1).await;
    assert_eq!(produce(&mut conn, -1, 10_000, "common").await.error_code, 0);
    wait_healed(&c, 1).await;
    let mut consumer = Consumer::default();
    consumer.poll(&mut conn, 1).await;
    let mut kept = vec![(0, "common".to_string())];
    let mut epoch_starts = vec![(1, 0)];

    let (mut leader, mut follower) = (1, 2);
    for round in 0..3i64 {
        let start = c.leo(leader);
        // Rounds lose more, as many, and fewer records than the new leader then writes at the
        // same offsets: a consumer that skipped silently would miss records in the first case.
        let (lost, written) = (2 + round, 4 - round);

        // The follower goes away; the leader shrinks the ISR to itself and, with
        // min.insync.replicas=1, keeps acking and exposing acks=1 writes alone.
        c.stop_node(follower).await;
        wait_until("the leader to shrink the ISR to itself", || {
            c.ctl.get(TOPIC, 0).isr == vec![leader]
        })
        .await;
        if round == 1 {
            // A fail-over the stopped replica never sees: the leader is re-elected in a new
            // epoch, so the records about to be lost carry an epoch unknown to the replica
            // elected next. Its answers then name an older epoch (KIP-279's iteration on the
            // follower, "largest epoch ≤ the requested one" for the consumer).
            c.ctl.elect(TOPIC, 0, leader, None);
        }
        let epoch = c.ctl.get(TOPIC, 0).leader_epoch;
        let mut conn = c.connect(leader).await;
        for i in 0..lost {
            let r = produce(&mut conn, 1, 10_000, &format!("lost-{round}-{i}")).await;
            assert_eq!((r.error_code, r.base_offset), (0, start + i));
        }
        wait_until("the lone leader's HW to cover its writes", || {
            c.hw(leader) == start + lost
        })
        .await;
        consumer.poll(&mut conn, epoch).await;
        assert_eq!(consumer.position, start + lost);
        assert_eq!(consumer.last_epoch, epoch);
        drop(conn);

        // The leader dies; the stale follower comes back and is elected uncleanly (it is not in
        // the ISR), with ISR {itself} and a new leader epoch, as the controller does with
        // unclean.leader.election.enable=true. It writes different records at the same offsets.
        c.stop_node(leader).await;
        c.start_node(follower).await;
        c.ctl.elect(TOPIC, 0, follower, Some(vec![follower]));
        let new_epoch = epoch + 1;
        epoch_starts.push((new_epoch, start));
        // The newest epoch the new leader knows: the lost records' epoch unless round 1 hid it.
        let known_epoch = if round == 1 { epoch - 1 } else { epoch };
        let mut conn = c.connect(follower).await;
        for i in 0..written {
            let value = format!("kept-{round}-{i}");
            let r = produce(&mut conn, 1, 10_000, &value).await;
            assert_eq!((r.error_code, r.base_offset), (0, start + i));
            kept.push((start + i, value));
        }
        wait_until("the new leader's HW to cover its writes", || {
            c.hw(follower) == start + written
        })
        .await;

        // KIP-320, consumer side. Its fetch with the epoch it knows is fenced, not answered
        // with data from the new leader's log at its (no longer meaningful) position.
        let d = fetch(&mut conn, consumer.position, epoch).await;
        assert_eq!(d.error_code, 74, "FENCED_LEADER_EPOCH");
        assert_eq!(record_count(&d.records), 0);
        assert_eq!(
            (d.current_leader.leader_id.0, d.current_leader.leader_epoch),
            (follower, new_epoch),
            "the new leader in the hint"
        );
        // With the new epoch it validates its position: the end of the epoch of the last record
        // it consumed is below the position, so the log was truncated under it.
        let (error, answered_epoch, end_offset) =
            offset_for_leader_epoch(&mut conn, new_epoch, consumer.last_epoch).await;
        assert_eq!((error, answered_epoch), (0, known_epoch));
        assert_eq!(end_offset, start, "the divergence point");
        assert!(
            end_offset < consumer.position,
            "truncation detected: end offset {end_offset} < position {}",
            consumer.position
        );
        consumer.truncate_to(end_offset);
        consumer.poll(&mut conn, new_epoch).await;
        assert_eq!(
            consumer.consumed, kept,
            "the consumer's view after the reset"
        );
        drop(conn);

        // The old leader returns as a follower: it truncates at the divergence found by epoch
        // (not at its HW, which covered its lost records) and copies the new leader's records.
        // The new leader proposes it for the ISR only once its log matches: a fetch offset
        // that counts lost records is no progress. (AlterIsr is held so the proposal can be
        // inspected at the moment it is made.)
        c.ctl.block_alter_isr(true);
        let mut calls = c.ctl.alter_calls.subscribe();
        let before = *calls.borrow_and_update();
        c.start_node(leader).await;
        tokio::time::timeout(DEADLINE, calls.wait_for(|n| *n > before))
            .await
            .expect("the new leader proposes the returning replica for the ISR")
            .unwrap();
        assert_eq!(c.ctl.get(TOPIC, 0).isr, vec![follower]);
        assert_eq!(
            c.batches(leader),
            c.batches(follower),
            "broker {leader} proposed for the ISR with a log identical to the leader's"
        );
        c.ctl.block_alter_isr(false);
        wait_healed(&c, start + written).await;
        assert!(
            c.broker(leader)
                .replica_stats()
                .truncations
                .load(Ordering::Relaxed)
                >= 1,
            "broker {leader} truncated its lost records"
        );
        std::mem::swap(&mut leader, &mut follower);
    }

    // Both logs hold exactly the records of the surviving leaders, every batch stamped with
    // the epoch it was written in, and the epoch caches agree on every epoch's start (epoch 3
    // held only lost records: it is gone from both).
    for id in [1, 2] {
        assert_eq!(values(&c, id), kept, "records of broker {id}");
        assert_eq!(c.epochs(id), epoch_starts, "epoch cache of {id}");
        c.broker(id)
            .partition(TOPIC, 0)
            .unwrap()
            .log
            .read()
            .verify()
            .unwrap();
    }
    let epochs: Vec<i32> = c.batches(1).iter().map(|b| b.1).collect();
    assert_eq!(
        epochs,
        [vec![1], vec![2; 4], vec![4; 3], vec![5; 2]].concat()
    );
    assert_eq!(consumer.consumed, kept);
}
