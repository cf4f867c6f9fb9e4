//! Debian kcat (librdkafka 2.0.2) against the broker: metadata, produce with every acks value
//! and codec, consume from the beginning, an offset and a timestamp.

use std::time::Duration;

use gregor_client::kafka_protocol::records::Compression;
use gregor_client::records::encode_batch;

use crate::common::*;

const KCAT_DEADLINE: Duration = Duration::from_secs(30);

async fn kcat(tb: &TestBroker, args: &[&str], stdin: Option<&[u8]>) -> String {
    let mut all = vec![
        "-b",
        tb.addr.as_str(),
        "-X",
        "socket.timeout.ms=10000",
        "-m",
        "15",
    ];
    all.extend_from_slice(args);
    let out = run_with_deadline("kcat", &all, stdin, KCAT_DEADLINE).await;
    assert!(
        out.status.success(),
        "kcat {args:?} failed: {}\n{}",
        out.stderr,
        out.stdout
    );
    out.stdout
}

async fn consume(tb: &TestBroker, topic: &str, from: &str) -> Vec<String> {
    let out = kcat(
        tb,
        &[
            "-C",
            "-t",
            topic,
            "-p",
            "0",
            "-o",
            from,
            "-e",
            "-q",
            "-f",
            "%k=%s@%o\n",
        ],
        None,
    )
    .await;
    out.lines().map(String::from).collect()
}

#[tokio::test]
async fn kcat_lists_metadata() {
    let tb = TestBroker::start().await;
    tb.create_topic("alpha", 3);
    tb.create_topic("beta", 1);
    let out = kcat(&tb, &["-L", "-J"], None).await;
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let brokers = json["brokers"].as_array().unwrap();
    assert_eq!(brokers.len(), 1);
    assert_eq!(brokers[0]["id"], 1);
    assert_eq!(brokers[0]["name"].as_str().unwrap(), tb.addr.clone());
    let mut topics: Vec<(String, usize)> = json["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["topic"].as_str().unwrap().to_string(),
                t["partitions"].as_array().unwrap().len(),
            )
        })
        .collect();
    topics.sort();
    assert_eq!(topics, vec![("alpha".into(), 3), ("beta".into(), 1)]);
}

#[tokio::test]
async fn kcat_produces_with_every_acks_and_codec_and_consumes_exactly() {
    let tb = TestBroker::start().await;
    tb.create_topic("kc", 1);
    let mut expected = Vec::new();
    for acks in ["0", "1", "all"] {
        for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
            let mut input = String::new();
            for i in 0..3 {
                let (k, v) = (
                    format!("{acks}-{codec}-{i}"),
                    format!("value {i} via {codec} acks={acks}"),
                );
                input.push_str(&format!("{k}={v}\n"));
                expected.push(format!("{k}={v}@{}", expected.len()));
            }
            let acks_arg = format!("acks={acks}");
            kcat(
                &tb,
                &[
                    "-P", "-t", "kc", "-p", "0", "-K", "=", "-z", codec, "-X", &acks_arg,
                ],
                Some(input.as_bytes()),
            )
            .await;
            // acks=0 gets no reply; wait for the append itself.
            wait_for_hw(&tb, "kc", 0, expected.len() as i64).await;
        }
    }
    assert_eq!(consume(&tb, "kc", "beginning").await, expected);
    assert_eq!(consume(&tb, "kc", "40").await, expected[40..].to_vec());
    // Auto-created on produce (kcat asks Metadata first).
    kcat(&tb, &["-P", "-t", "auto-kc", "-K", "="], Some(b"a=b\n")).await;
    assert_eq!(
        consume(&tb, "auto-kc", "beginning").await,
        vec!["a=b@0".to_string()]
    );
}

#[tokio::test]
async fn kcat_consumes_from_a_timestamp() {
    let tb = TestBroker::start().await;
    tb.create_topic("ts", 1);
    let mut c = tb.connect().await;
    for (i, ts) in [1_000i64, 2_000, 3_000, 4_000].iter().enumerate() {
        let rec = record(&format!("v{i}"), *ts);
        let b = encode_batch(&[rec], Compression::None).unwrap();
        assert_eq!(produce(&mut c, "ts", 0, b).await, (0, i as i64));
    }
    assert_eq!(
        consume(&tb, "ts", "s@2500").await,
        vec!["k-v2=v2@2".to_string(), "k-v3=v3@3".to_string()]
    );
    assert_eq!(consume(&tb, "ts", "s@1000").await.len(), 4);
}
