//! Consumer-group coordinator failover on three real `gregor server` processes (issue #5): the
//! coordinator of a group is the leader of its `__consumer_offsets` partition; kill -9 that
//! broker and the group must keep consuming (its coordinator moves to the new leader, which
//! loads the partition's groups from its replica), and every offset committed before the kill
//! must still be returned by OffsetFetch afterwards (commits are acknowledged only once
//! replicated).
//!
//! Every wait polls observable state with a deadline; the cluster's children are killed by PID
//! when it drops.

// Test code: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fault;
mod ports;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use fault::{Cluster, DEADLINE};
use gregor_broker::group::records::partition_for;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

/// Fence a dead broker after 3 s (controller keys), so the kill costs seconds.
const FAST_FENCING: &[(&str, &str)] = &[
    ("broker.session.timeout.ms", "3000"),
    ("broker.heartbeat.interval.ms", "500"),
];

const TOPIC: &str = "t-group-failover";
const GROUP: &str = "g-failover";
const PARTITIONS: i32 = 6;
const PER_PARTITION: i64 = 100;
/// `offsets.topic.num.partitions` default.
const OFFSETS_PARTITIONS: i32 = 50;

/// Consumes until `done(seen)` holds (bounded), then commits the consumer's positions
/// synchronously and returns them (partition → next offset).
fn consume_and_commit(
    consumer: &BaseConsumer,
    seen: &mut BTreeSet<(i32, i64)>,
    done: impl Fn(&BTreeSet<(i32, i64)>) -> bool,
    deadline: Duration,
) -> anyhow::Result<BTreeMap<i32, i64>> {
    let until = Instant::now() + deadline;
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    while !done(seen) {
        ensure!(
            Instant::now() < until,
            "consumed {} of {} within {deadline:?}",
            seen.len(),
            i64::from(PARTITIONS) * PER_PARTITION
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                seen.insert((m.partition(), m.offset()));
                next.insert(m.partition(), m.offset() + 1);
            }
            // Errors while a broker is down (the coordinator moving) are what this test rides out.
            Some(Err(e)) => println!("consumer: {e}"),
            None => {}
        }
    }
    let mut tpl = TopicPartitionList::new();
    for (p, o) in &next {
        tpl.add_partition_offset(TOPIC, *p, Offset::Offset(*o))?;
    }
    // librdkafka re-finds a moved coordinator itself; the commit must then be accepted.
    consumer.commit(&tpl, CommitMode::Sync).context("commit")?;
    Ok(next)
}

/// The group's committed offsets (OffsetFetch through the current coordinator).
fn committed(consumer: &BaseConsumer) -> anyhow::Result<BTreeMap<i32, i64>> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(TOPIC, p);
    }
    let got = consumer.committed_offsets(tpl, Duration::from_secs(10))?;
    Ok(got
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_group_coordinator_keeps_the_group_and_its_commits() -> anyhow::Result<()> {
    let mut c = Cluster::start(FAST_FENCING).await?;
    let result = scenario(&mut c).await;
    if result.is_err() {
        c.print_tails();
    }
    result
}

async fn scenario(c: &mut Cluster) -> anyhow::Result<()> {
    c.create_topic(TOPIC, PARTITIONS, 3, &[]).await?;
    for p in 0..PARTITIONS {
        c.wait_partition(TOPIC, p, DEADLINE, "full ISR", |v| {
            v.leader >= 0 && v.isr.len() == 3
        })
        .await?;
    }
    let config = c.client_config();
    tokio::task::spawn_blocking({
        let config = config.clone();
        move || -> anyhow::Result<()> {
            let mut pc = config.clone();
            pc.set("acks", "all").set("enable.idempotence", "true");
            let producer: BaseProducer = pc.create()?;
            for p in 0..PARTITIONS {
                for i in 0..PER_PARTITION {
                    let v = format!("{p}-{i}");
                    producer
                        .send(BaseRecord::<(), _>::to(TOPIC).partition(p).payload(&v))
                        .map_err(|(e, _)| e)?;
                    producer.poll(Duration::ZERO);
                }
            }
            producer.flush(Duration::from_secs(30))?;
            Ok(())
        }
    })
    .await??;

    let mut cc = config.clone();
    cc.set("group.id", GROUP)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500");
    let total = (i64::from(PARTITIONS) * PER_PARTITION) as usize;
    let (consumer, mut seen, before) = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = cc.create()?;
        consumer.subscribe(&[TOPIC])?;
        let mut seen = BTreeSet::new();
        let next = consume_and_commit(&consumer, &mut seen, |s| s.len() >= total / 2, DEADLINE)?;
        let before = committed(&consumer)?;
        ensure!(before == next, "committed {before:?}, positions {next:?}");
        anyhow::Ok((consumer, seen, before))
    })
    .await??;
    ensure!(!before.is_empty(), "nothing committed before the kill");

    // The coordinator: the leader of the group's offsets partition.
    let offsets_partition = partition_for(GROUP, OFFSETS_PARTITIONS);
    let coordinator = c.leader_of("__consumer_offsets", offsets_partition).await?;
    c.kill9(coordinator).await?;
    let view = c
        .wait_partition(
            "__consumer_offsets",
            offsets_partition,
            DEADLINE,
            "new coordinator",
            |v| v.leader >= 0 && v.leader != coordinator,
        )
        .await?;
    println!(
        "killed coordinator {coordinator}; __consumer_offsets-{offsets_partition} now led by {}",
        view.leader
    );

    let (after_kill, final_commit, after) = tokio::task::spawn_blocking(move || {
        // OffsetFetch through the new coordinator still has every pre-kill commit.
        let after_kill = committed(&consumer)?;
        let next = consume_and_commit(
            &consumer,
            &mut seen,
            |s| s.len() >= total,
            Duration::from_secs(60),
        )?;
        let after = committed(&consumer)?;
        anyhow::Ok((after_kill, next, after))
    })
    .await??;
    ensure!(
        after_kill == before,
        "commits before the kill {before:?}, after it {after_kill:?}"
    );
    for (p, o) in &final_commit {
        ensure!(
            after.get(p) == Some(o),
            "partition {p}: committed {o} after the failover, OffsetFetch says {:?}",
            after.get(p)
        );
    }
    for p in 0..PARTITIONS {
        ensure!(
            after.get(&p) == Some(&PER_PARTITION),
            "partition {p}: final committed offset {:?}, want {PER_PARTITION}",
            after.get(&p)
        );
    }
    Ok(())
}
