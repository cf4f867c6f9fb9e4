//! Python clients: confluent-kafka (librdkafka 2.x) and kafka-python (pure Python). Each script
//! checks exact contents itself and exits non-zero on any mismatch.

use std::time::Duration;

use crate::common::*;

async fn run_script(script: &str, records: usize) {
    let tb = TestBroker::start().await;
    let path = repo_tests_dir().join("interop").join(script);
    let out = run_with_deadline(
        "python3",
        &[path.to_str().unwrap(), &tb.addr],
        None,
        Duration::from_secs(90),
    )
    .await;
    assert!(
        out.status.success(),
        "{script} failed:\nstdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    assert!(
        out.stdout.contains(&format!("ok: {records} records")),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn confluent_kafka_roundtrip() {
    run_script("confluent_roundtrip.py", 60).await;
}

#[tokio::test]
async fn kafka_python_roundtrip() {
    run_script("kafka_python_roundtrip.py", 60).await;
}

/// An idempotent librdkafka producer (`enable.idempotence=true`, 5 in flight) through
/// confluent-kafka: every record exactly once, each partition in order; the broker holds
/// producer state for exactly one producer id on every partition.
#[tokio::test]
async fn confluent_kafka_idempotent_producer() {
    let tb = TestBroker::start().await;
    tb.create_topic("ck-idem", 3);
    let path = repo_tests_dir()
        .join("interop")
        .join("confluent_idempotent.py");
    let out = run_with_deadline(
        "python3",
        &[path.to_str().unwrap(), &tb.addr, "ck-idem", "3", "3000"],
        None,
        Duration::from_secs(90),
    )
    .await;
    assert!(
        out.status.success(),
        "confluent_idempotent.py failed:\nstdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    assert!(out.stdout.contains("ok: 3000 records"), "{}", out.stdout);
    for p in 0..3 {
        let partition = tb.broker.partition("ck-idem", p).unwrap();
        let log = partition.log.read();
        assert_eq!(log.log_end_offset(), 1000, "partition {p}");
        assert_eq!(log.producer_state().len(), 1, "one idempotent producer");
    }
}
