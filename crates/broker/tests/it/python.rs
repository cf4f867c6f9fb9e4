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
