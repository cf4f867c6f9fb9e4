//! Restart persistence and graceful shutdown.

use std::time::{Duration, Instant};

use crate::api::fetch_request;
use crate::common::*;

#[tokio::test]
async fn topics_ids_and_data_survive_a_restart() {
    let tb = TestBroker::start().await;
    tb.create_topic("keep", 2);
    let id = tb.broker.topic("keep").unwrap().id;
    let cluster = tb.broker.cluster_id();
    let mut c = tb.connect().await;
    assert_eq!(
        produce(&mut c, "keep", 1, batch(&["x", "y"], 1)).await,
        (0, 0)
    );
    drop(c);
    let dir = tb.stop().await;
    let tb = TestBroker::start_in(dir, |_| {}).await;
    assert_eq!(tb.broker.cluster_id(), cluster);
    let t = tb.broker.topic("keep").unwrap();
    assert_eq!((t.id, t.partitions.len()), (id, 2));
    assert_eq!(tb.log_end_offset("keep", 1), 2);
    let mut c = tb.connect().await;
    let resp = c.send(&fetch_request("keep", 1, 0, 0)).await.unwrap();
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.high_watermark, 2, "high watermark restored");
    assert_eq!(
        gregor_client::records::decode_records(p.records.as_ref().unwrap())
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn shutdown_ends_parked_fetches_and_closes_storage() {
    let tb = TestBroker::start().await;
    tb.create_topic("s", 1);
    let mut c = tb.connect().await;
    let fetch = tokio::spawn(async move { c.send(&fetch_request("s", 0, 0, 60_000)).await });
    // Make sure the fetch is in flight: a second connection's round trip orders after it is
    // accepted; then stop.
    tb.assert_alive().await;
    let started = Instant::now();
    let _dir = tb.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "did not wait for the 60 s long poll"
    );
    let _ = tokio::time::timeout(DEADLINE, fetch).await.unwrap();
}
