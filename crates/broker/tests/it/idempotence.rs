//! The idempotent producer over the wire (reliability.md D8, B18; D9's restart half): raw
//! InitProducerId and Produce requests through `gregor-client`.

use bytes::Bytes;
use gregor_client::Connection;
use gregor_client::kafka_protocol::messages::{InitProducerIdRequest, ProducerId, TransactionalId};
use gregor_client::kafka_protocol::protocol::StrBytes;

use crate::common::{TestBroker, batch, produce};

/// A client batch of `n` records from producer `pid`/`epoch` starting at sequence `seq`.
fn idem(pid: i64, epoch: i16, seq: i32, n: usize, tag: &str) -> Bytes {
    let values: Vec<String> = (0..n).map(|i| format!("{tag}-{i}")).collect();
    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
    let mut b = batch(&refs, gregor_broker::broker::now_ms()).to_vec();
    b[43..51].copy_from_slice(&pid.to_be_bytes());
    b[51..53].copy_from_slice(&epoch.to_be_bytes());
    b[53..57].copy_from_slice(&seq.to_be_bytes());
    let crc = gregor_storage::batch::compute_crc(&b);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(b)
}

async fn init_producer_id(c: &mut Connection) -> (i64, i16) {
    let resp = c
        .send(
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        )
        .await
        .unwrap();
    assert_eq!(resp.error_code, 0);
    (resp.producer_id.0, resp.producer_epoch)
}

#[tokio::test]
async fn init_producer_id_hands_out_unique_ids_at_every_version_and_refuses_transactions() {
    let tb = TestBroker::start().await;
    let mut c = tb.connect().await;
    let empty = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str(""))));
    assert_eq!(c.send(&empty).await.unwrap().error_code, 42);
    let mut ids = Vec::new();
    for v in 0..=5 {
        let req = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let resp = c.send_version(&req, v).await.unwrap();
        assert_eq!((resp.error_code, resp.producer_epoch), (0, 0), "v{v}");
        ids.push(resp.producer_id.0);
        // KIP-360 bump request of a non-transactional producer: Kafka hands out a new id with
        // epoch 0, ignoring the old one.
        if v >= 3 {
            let bump = req
                .clone()
                .with_producer_id(resp.producer_id)
                .with_producer_epoch(0);
            let resp = c.send_version(&bump, v).await.unwrap();
            assert_eq!((resp.error_code, resp.producer_epoch), (0, 0), "bump v{v}");
            ids.push(resp.producer_id.0);
            // Only one of id and epoch set → INVALID_REQUEST (42).
            let half = req.clone().with_producer_id(ProducerId(5));
            let resp = c.send_version(&half, v).await.unwrap();
            assert_eq!((resp.error_code, resp.producer_id.0), (42, -1), "v{v}");
        }
        // Transactional id: no transaction coordinator → COORDINATOR_NOT_AVAILABLE (15).
        let txn = req.with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("t"))));
        let resp = c.send_version(&txn, v).await.unwrap();
        assert_eq!((resp.error_code, resp.producer_id.0), (15, -1), "txn v{v}");
    }
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "{ids:?}");
    // Ids never repeat across a restart.
    let dir = tb.stop().await;
    let tb = TestBroker::start_in(dir, |_| {}).await;
    let mut c = tb.connect().await;
    let (next, _) = init_producer_id(&mut c).await;
    assert!(ids.iter().all(|&id| id < next), "{next} after {ids:?}");
}

/// D8/B18: resends of the last 5 batches → original offsets, nothing appended; batch −6 → 45;
/// gap → 45; old epoch → 47; new epoch with seq ≠ 0 → 45.
#[tokio::test]
async fn d8_b18_duplicates_gaps_and_epochs() {
    let tb = TestBroker::start().await;
    tb.create_topic("idem", 2);
    let mut c = tb.connect().await;
    let (pid, epoch) = init_producer_id(&mut c).await;
    let mut sent = Vec::new();
    for i in 0..7 {
        let b = idem(pid, epoch, i * 3, 3, &format!("b{i}"));
        let (code, offset) = produce(&mut c, "idem", 0, b.clone()).await;
        assert_eq!((code, offset), (0, i64::from(i) * 3));
        sent.push(b);
    }
    assert_eq!(tb.log_end_offset("idem", 0), 21);
    for (i, b) in sent.iter().enumerate().skip(2) {
        let (code, offset) = produce(&mut c, "idem", 0, b.clone()).await;
        assert_eq!((code, offset), (0, i as i64 * 3), "duplicate {i}");
    }
    assert_eq!(
        tb.log_end_offset("idem", 0),
        21,
        "duplicates append nothing"
    );
    // Batch −6 fell out of the window.
    assert_eq!(produce(&mut c, "idem", 0, sent[1].clone()).await.0, 45);
    // Gap.
    assert_eq!(
        produce(&mut c, "idem", 0, idem(pid, epoch, 22, 1, "gap"))
            .await
            .0,
        45
    );
    // New epoch with seq ≠ 0.
    assert_eq!(
        produce(&mut c, "idem", 0, idem(pid, epoch + 1, 21, 1, "e"))
            .await
            .0,
        45
    );
    // New epoch from 0 is accepted; the old epoch is then stale.
    assert_eq!(
        produce(&mut c, "idem", 0, idem(pid, epoch + 1, 0, 1, "e1")).await,
        (0, 21)
    );
    assert_eq!(
        produce(&mut c, "idem", 0, idem(pid, epoch, 21, 1, "old"))
            .await
            .0,
        47
    );
    assert_eq!(
        tb.log_end_offset("idem", 0),
        22,
        "rejections append nothing"
    );
    // Partitions are independent; an unknown producer may start anywhere (KIP-360).
    assert_eq!(
        produce(&mut c, "idem", 1, idem(pid, epoch + 1, 9, 1, "p1")).await,
        (0, 0)
    );
    assert_eq!(
        produce(&mut c, "idem", 1, idem(pid + 1000, 0, 77, 2, "x")).await,
        (0, 1)
    );
    // Plain batches are untouched by all this.
    assert_eq!(
        produce(&mut c, "idem", 0, batch(&["plain"], 1000)).await,
        (0, 22)
    );
    assert_eq!(
        produce(&mut c, "idem", 0, batch(&["plain"], 1000)).await,
        (0, 23)
    );
}

/// D9's restart half: the dedupe state is rebuilt at startup, so a retry sent after a restart
/// gets its original offsets and nothing is appended; the sequence continues where it was.
#[tokio::test]
async fn dedupe_state_survives_a_restart() {
    let tb = TestBroker::start_with(|c| c.log_segment_bytes = 1024).await;
    tb.create_topic("r", 1);
    let mut c = tb.connect().await;
    let (pid, epoch) = init_producer_id(&mut c).await;
    let mut sent = Vec::new();
    for i in 0..20 {
        let b = idem(pid, epoch, i * 2, 2, &format!("r{i}"));
        assert_eq!(
            produce(&mut c, "r", 0, b.clone()).await,
            (0, i64::from(i) * 2)
        );
        sent.push(b);
    }
    let segments = tb
        .broker
        .partition("r", 0)
        .unwrap()
        .log
        .read()
        .segments()
        .len();
    assert!(segments > 1, "the test should cross segment rolls");
    drop(c);
    let dir = tb.stop().await;
    let tb = TestBroker::start_in(dir, |c| c.log_segment_bytes = 1024).await;
    let mut c = tb.connect().await;
    for (i, b) in sent.iter().enumerate().skip(15) {
        assert_eq!(produce(&mut c, "r", 0, b.clone()).await, (0, i as i64 * 2));
    }
    assert_eq!(tb.log_end_offset("r", 0), 40, "nothing appended");
    assert_eq!(produce(&mut c, "r", 0, sent[14].clone()).await.0, 45);
    assert_eq!(
        produce(&mut c, "r", 0, idem(pid, epoch, 40, 1, "next")).await,
        (0, 40)
    );
}
