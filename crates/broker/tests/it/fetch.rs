//! Fetch semantics: long polling woken by appends, limits, mid-batch offsets, high watermark.

use std::time::{Duration, Instant};

use gregor_client::kafka_protocol::messages::FetchRequest;
use gregor_client::records::decode_records;

use crate::api::fetch_request;
use crate::common::*;

fn values(resp: &gregor_client::kafka_protocol::messages::FetchResponse) -> Vec<(i64, String)> {
    resp.responses
        .iter()
        .flat_map(|t| t.partitions.iter())
        .flat_map(|p| decode_records(p.records.as_ref().unwrap()).unwrap())
        .map(|r| {
            (
                r.offset,
                String::from_utf8(r.value.unwrap().to_vec()).unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn long_poll_wakes_on_append_without_waiting_for_the_timeout() {
    let tb = TestBroker::start().await;
    tb.create_topic("lp", 1);
    let mut consumer = tb.connect().await;
    let started = Instant::now();
    let fetch = tokio::spawn(async move {
        let resp = consumer
            .send(&fetch_request("lp", 0, 0, 15_000))
            .await
            .unwrap();
        (values(&resp), started.elapsed())
    });
    // Wait until the fetch is parked, observed through the partition's subscriber count... the
    // simplest observable: produce, then the fetch must return with the record well before 15 s.
    let mut producer = tb.connect().await;
    assert_eq!(
        produce(&mut producer, "lp", 0, batch(&["wake"], 1)).await,
        (0, 0)
    );
    let (got, elapsed) = tokio::time::timeout(DEADLINE, fetch)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, vec![(0, "wake".to_string())]);
    assert!(
        elapsed < Duration::from_secs(10),
        "woken by the append, took {elapsed:?}"
    );
}

#[tokio::test]
async fn long_poll_times_out_empty_after_max_wait() {
    let tb = TestBroker::start().await;
    tb.create_topic("lp", 1);
    let mut c = tb.connect().await;
    let started = Instant::now();
    let resp = c.send(&fetch_request("lp", 0, 0, 300)).await.unwrap();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(290),
        "waited max_wait_ms, took {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(5));
    let p = &resp.responses[0].partitions[0];
    assert_eq!((p.error_code, p.high_watermark), (0, 0));
    assert_eq!(
        p.records.as_ref().map(|r| r.len()),
        Some(0),
        "empty, never null"
    );
    // min_bytes = 0 answers at once.
    let mut req = fetch_request("lp", 0, 0, 10_000);
    req.min_bytes = 0;
    let started = Instant::now();
    c.send(&req).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn mid_batch_offset_returns_the_containing_batch() {
    let tb = TestBroker::start().await;
    tb.create_topic("mb", 1);
    let mut c = tb.connect().await;
    produce(&mut c, "mb", 0, batch(&["a", "b", "c"], 1)).await;
    produce(&mut c, "mb", 0, batch(&["d", "e"], 1)).await;
    let resp = c.send(&fetch_request("mb", 0, 1, 0)).await.unwrap();
    let got = values(&resp);
    // The whole first batch comes back (clients skip offsets below the one they asked for).
    assert_eq!(got.first(), Some(&(0, "a".to_string())));
    assert!(got.contains(&(1, "b".to_string())) && got.contains(&(4, "e".to_string())));
    let resp = c.send(&fetch_request("mb", 0, 4, 0)).await.unwrap();
    assert_eq!(
        values(&resp),
        vec![(3, "d".to_string()), (4, "e".to_string())]
    );
}

#[tokio::test]
async fn max_bytes_limits_but_one_batch_always_fits() {
    let tb = TestBroker::start().await;
    tb.create_topic("mx", 2);
    let mut c = tb.connect().await;
    let big = "v".repeat(2000);
    let batch_len = batch(&[&format!("0{big}")], 1).len() as i32;
    for i in 0..5 {
        produce(&mut c, "mx", 0, batch(&[&format!("{i}{big}")], 1)).await;
        produce(&mut c, "mx", 1, batch(&[&format!("{i}{big}")], 1)).await;
    }
    // Partition limit smaller than one batch: still exactly one batch (KIP-74).
    let mut req: FetchRequest = fetch_request("mx", 0, 0, 0);
    req.topics[0].partitions[0].partition_max_bytes = 100;
    assert_eq!(values(&c.send(&req).await.unwrap()).len(), 1);
    // Partition limit of ~2.5 batches: two whole batches.
    req.topics[0].partitions[0].partition_max_bytes = batch_len * 5 / 2;
    assert_eq!(values(&c.send(&req).await.unwrap()).len(), 2);
    // Response limit across partitions: the first partition fills it, the second gets nothing
    // (only the first partition with data is guaranteed one batch).
    let mut both = fetch_request("mx", 0, 0, 0);
    let mut p1 = both.topics[0].partitions[0].clone();
    p1.partition = 1;
    both.topics[0].partitions.push(p1);
    both.max_bytes = 100;
    let resp = c.send(&both).await.unwrap();
    let counts: Vec<usize> = resp.responses[0]
        .partitions
        .iter()
        .map(|p| decode_records(p.records.as_ref().unwrap()).unwrap().len())
        .collect();
    assert_eq!(counts, vec![1, 0]);
}

#[tokio::test]
async fn consumers_never_see_past_the_high_watermark() {
    let tb = TestBroker::start().await;
    tb.create_topic("hw", 1);
    let mut c = tb.connect().await;
    produce(&mut c, "hw", 0, batch(&["a", "b"], 1)).await;
    let p = tb.broker.partition("hw", 0).unwrap();
    // Simulate a replica lagging: hold the HW at 1 (a single node never does this itself).
    p.log.write().set_high_watermark(0);
    let resp = c.send(&fetch_request("hw", 0, 0, 0)).await.unwrap();
    assert_eq!(resp.responses[0].partitions[0].high_watermark, 0);
    assert!(values(&resp).is_empty());
    let lo = c
        .send(&crate::api::list_offsets_request("hw", 0, -1))
        .await
        .unwrap();
    assert_eq!(
        lo.topics[0].partitions[0].offset, 0,
        "latest = high watermark"
    );
    p.log.write().set_high_watermark(2);
    assert_eq!(
        values(&c.send(&fetch_request("hw", 0, 0, 0)).await.unwrap()).len(),
        2
    );
}

#[tokio::test]
async fn fetch_sessions_are_not_created() {
    let tb = TestBroker::start().await;
    tb.create_topic("s", 1);
    let mut c = tb.connect().await;
    let mut req = fetch_request("s", 0, 0, 0);
    req.session_epoch = 0; // "create a session"
    let resp = c.send(&req).await.unwrap();
    assert_eq!(
        (resp.error_code, resp.session_id),
        (0, 0),
        "session id 0: keep sending full fetches"
    );
    req.session_id = 1234;
    req.session_epoch = 1;
    assert_eq!(
        c.send(&req).await.unwrap().error_code,
        70,
        "FETCH_SESSION_ID_NOT_FOUND"
    );
}
