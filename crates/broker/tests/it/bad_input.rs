//! The bad-input matrix B1–B22 (reliability.md §6.4): exact Kafka codes or the documented
//! connection close, nothing appended, and other connections unaffected.

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use gregor_client::connection::encode_request;
use gregor_client::kafka_protocol::messages::create_topics_request::{
    CreatableTopic, CreatableTopicConfig,
};
use gregor_client::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use gregor_client::kafka_protocol::messages::*;
use gregor_client::kafka_protocol::protocol::{Decodable, StrBytes};
use gregor_client::{ClientError, Connection};
use tokio::io::AsyncWriteExt;

use crate::api::{fetch_request, list_offsets_request};
use crate::common::*;

/// The broker must close the connection without answering.
async fn assert_closed(c: &mut Connection) {
    match tokio::time::timeout(DEADLINE, c.read_frame())
        .await
        .expect("closed in time")
    {
        Err(ClientError::Closed { .. }) | Err(ClientError::Io { .. }) => {}
        other => panic!("expected the connection to be closed, got {other:?}"),
    }
}

/// Produces `records` raw to `t`-0 with acks=1 and returns the partition's error code.
async fn produce_code(tb: &TestBroker, topic: &str, records: Bytes) -> i16 {
    let mut c = tb.connect().await;
    produce(&mut c, topic, 0, records).await.0
}

fn fix_crc(b: &mut [u8]) {
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
}

fn frame<R: gregor_client::kafka_protocol::protocol::Request>(req: &R, version: i16) -> BytesMut {
    encode_request(
        req,
        version,
        7,
        Some(StrBytes::from_static_str("bad-input")),
    )
    .unwrap()
}

/// Header-only frame: size, api key, version, correlation id, client id (-1), then `body`.
fn raw_frame(key: i16, version: i16, body: &[u8]) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.put_i32((2 + 2 + 4 + 2 + body.len()) as i32);
    b.put_i16(key);
    b.put_i16(version);
    b.put_i32(7);
    b.put_i16(-1);
    b.put_slice(body);
    b.to_vec()
}

#[tokio::test]
async fn b1_b2_bad_size_prefix_closes_before_allocating() {
    let tb = TestBroker::start().await;
    tb.create_topic("t", 1);
    for prefix in [
        &[0xff, 0xff, 0xff, 0xff][..],
        &[0x80, 0, 0, 0],
        &0x0640_0001i32.to_be_bytes(),
        b"GET / HTTP/1.1\r\n\r\n",
    ] {
        let mut c = tb.connect_raw().await;
        c.write_frame(prefix).await.unwrap();
        assert_closed(&mut c).await;
    }
    assert_eq!(tb.log_end_offset("t", 0), 0);
    tb.assert_alive().await;
}

#[tokio::test]
async fn b2_frame_size_limit_is_configurable() {
    let tb = TestBroker::start_with(|c| c.socket_request_max_bytes = 1024).await;
    let mut c = tb.connect_raw().await;
    let big = frame(
        &produce_request(1, vec![("t", 0, Some(Bytes::from(vec![0u8; 2000])))]),
        9,
    );
    c.write_frame(&big).await.unwrap();
    assert_closed(&mut c).await;
    tb.assert_alive().await;
}

#[tokio::test]
async fn b3_truncated_frame_is_closed_by_the_idle_timeout() {
    let tb = TestBroker::start_with(|c| c.connections_max_idle_ms = 300).await;
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut s = tokio::net::TcpStream::connect(&tb.addr).await.unwrap();
        // Declares 1000 bytes, sends 10, stalls.
        s.write_all(&[0, 0, 3, 232, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0])
            .await
            .unwrap();
        stalled.push(s);
    }
    tb.assert_alive().await;
    let start = Instant::now();
    for s in stalled {
        let mut s = s;
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(DEADLINE, tokio::io::AsyncReadExt::read(&mut s, &mut buf))
            .await
            .expect("closed by idle timeout");
        assert!(matches!(n, Ok(0) | Err(_)), "no response, just a close");
    }
    assert!(start.elapsed() < Duration::from_secs(10));
    // An idle but otherwise healthy connection is closed too.
    let mut c = tb.connect().await;
    assert_closed(&mut c).await;
}

#[tokio::test]
async fn b4_unknown_api_key_closes() {
    let tb = TestBroker::start().await;
    let mut c = tb.connect_raw().await;
    c.write_frame(&raw_frame(9999, 0, &[])).await.unwrap();
    assert_closed(&mut c).await;
    // A key Kafka defines but we do not serve (EndTxn): closed as well (B6).
    let mut c = tb.connect_raw().await;
    c.write_frame(&raw_frame(ApiKey::EndTxn as i16, 0, &[0, 1, b'g']))
        .await
        .unwrap();
    assert_closed(&mut c).await;
    // Shorter than a header.
    let mut c = tb.connect_raw().await;
    c.write_frame(&[0, 0, 0, 2, 0, 3]).await.unwrap();
    assert_closed(&mut c).await;
    tb.assert_alive().await;
}

#[tokio::test]
async fn b5_too_new_api_versions_gets_a_v0_unsupported_version_reply() {
    let tb = TestBroker::start().await;
    for version in [5i16, 99, i16::MAX] {
        let mut c = tb.connect_raw().await;
        // A flexible header (v2): client id then an empty tagged-field section, then a body we
        // cannot know the layout of.
        let mut body = BytesMut::new();
        body.put_i16(ApiKey::ApiVersions as i16);
        body.put_i16(version);
        body.put_i32(4242);
        body.put_i16(2);
        body.put_slice(b"it");
        body.put_u8(0);
        body.put_slice(&[3, b'a', 3, b'1', 0]);
        let mut f = BytesMut::new();
        f.put_i32(body.len() as i32);
        f.put_slice(&body);
        let mut resp = c.send_raw(&f).await.unwrap();
        let header = ResponseHeader::decode(&mut resp, 0).unwrap();
        assert_eq!(header.correlation_id, 4242);
        let body = ApiVersionsResponse::decode(&mut resp, 0).unwrap();
        assert_eq!(body.error_code, 35, "UNSUPPORTED_VERSION");
        assert!(
            body.api_keys
                .iter()
                .any(|k| k.api_key == ApiKey::ApiVersions as i16 && k.max_version == 4)
        );
        assert!(
            body.api_keys
                .iter()
                .any(|k| k.api_key == ApiKey::Produce as i16)
        );
        // The connection stays usable: the client retries at a version we serve.
        let ok = c
            .send_version(&ApiVersionsRequest::default(), 0)
            .await
            .unwrap();
        assert_eq!(ok.error_code, 0);
    }
}

#[tokio::test]
async fn b6_unsupported_version_of_a_known_api_closes() {
    let tb = TestBroker::start().await;
    tb.create_topic("t", 1);
    // Produce v13 (topic ids) is not advertised; Produce v2 does not exist any more.
    for (key, version) in [
        (ApiKey::Produce as i16, 13i16),
        (ApiKey::Produce as i16, 2),
        (ApiKey::Fetch as i16, 13),
        (ApiKey::Metadata as i16, 13),
        (ApiKey::Metadata as i16, -1),
    ] {
        let mut c = tb.connect_raw().await;
        c.write_frame(&raw_frame(key, version, &[0, 0, 0, 0]))
            .await
            .unwrap();
        assert_closed(&mut c).await;
    }
    assert_eq!(tb.log_end_offset("t", 0), 0);
    tb.assert_alive().await;
}

#[tokio::test]
async fn b7_malformed_bodies_close_without_allocating_by_declared_lengths() {
    let tb = TestBroker::start().await;
    tb.create_topic("t", 1);
    let meta = frame(
        &MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(name("t"))),
        ])),
        1,
    );
    let mut cases: Vec<Vec<u8>> = Vec::new();
    // Truncated body.
    let mut truncated = meta[..meta.len() - 2].to_vec();
    let n = (truncated.len() - 4) as i32;
    truncated[..4].copy_from_slice(&n.to_be_bytes());
    cases.push(truncated);
    // Huge array counts (2^31-1 topics, produce partitions) in a tiny frame.
    cases.push(raw_frame(
        ApiKey::Metadata as i16,
        0,
        &[0x7f, 0xff, 0xff, 0xff],
    ));
    cases.push(raw_frame(
        ApiKey::Metadata as i16,
        1,
        &[0x03, 0x3c, 0x0c, 0x00, 0xb6],
    ));
    cases.push(raw_frame(
        ApiKey::Produce as i16,
        3,
        &[0xff, 0xff, 0, 1, 0, 0, 0x13, 0x88, 0x7f, 0xff, 0xff, 0xff],
    ));
    // Negative string length.
    cases.push(raw_frame(
        ApiKey::CreateTopics as i16,
        2,
        &[0, 0, 0, 1, 0xff, 0x00],
    ));
    // Flexible version: compact array with a varint that never ends, and bad tagged fields.
    let mut flex = BytesMut::new();
    flex.put_i32(0);
    flex.put_i16(ApiKey::Metadata as i16);
    flex.put_i16(12);
    flex.put_i32(7);
    flex.put_i16(-1);
    flex.put_u8(0);
    flex.put_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    let n = flex.len() - 4;
    flex[..4].copy_from_slice(&(n as i32).to_be_bytes());
    cases.push(flex.to_vec());
    let mut tags = frame(&MetadataRequest::default().with_topics(None), 12).to_vec();
    let last = tags.len() - 1;
    tags[last] = 5; // claims 5 tagged fields that are not there
    cases.push(tags);
    for case in cases {
        let mut c = tb.connect_raw().await;
        c.write_frame(&case).await.unwrap();
        assert_closed(&mut c).await;
    }
    // Trailing bytes after a valid body are ignored, as Kafka's parsers do (librdkafka 2.x
    // sends 3 extra bytes with Metadata v12 and depends on it).
    let mut trailing = meta.to_vec();
    trailing.extend_from_slice(&[1, 2, 3]);
    let n = (trailing.len() - 4) as i32;
    trailing[..4].copy_from_slice(&n.to_be_bytes());
    let mut c = tb.connect_raw().await;
    let mut resp = c.send_raw(&trailing).await.unwrap();
    assert_eq!(
        ResponseHeader::decode(&mut resp, 0).unwrap().correlation_id,
        7
    );
    assert_eq!(
        MetadataResponse::decode(&mut resp, 1).unwrap().topics[0].error_code,
        0
    );
    assert_eq!(tb.log_end_offset("t", 0), 0);
    tb.assert_alive().await;
}

#[tokio::test]
async fn b8_to_b12_b20_invalid_batches_are_rejected_per_partition() {
    let tb = TestBroker::start().await;
    tb.create_topic("t", 1);
    let good = batch(&["a", "b", "c"], 1000);
    let mutate = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = good.to_vec();
        f(&mut b);
        Bytes::from(b)
    };
    let cases: Vec<(&str, Bytes, i16)> = vec![
        (
            "B8 crc mismatch",
            mutate(&|b| {
                let l = b.len() - 1;
                b[l] ^= 0xff;
            }),
            2,
        ),
        ("B9 magic v1", mutate(&|b| b[16] = 1), 87),
        ("B9 magic v0", mutate(&|b| b[16] = 0), 87),
        (
            "B10 two batches",
            {
                let mut two = good.to_vec();
                two.extend_from_slice(&good);
                Bytes::from(two)
            },
            87,
        ),
        ("B11 base offset != 0", mutate(&|b| b[7] = 5), 87),
        (
            "B12 batch length past the end",
            mutate(&|b| {
                let len = i32::from_be_bytes(b[8..12].try_into().unwrap()) + 10;
                b[8..12].copy_from_slice(&len.to_be_bytes());
            }),
            2,
        ),
        (
            "B12 shorter than a header",
            Bytes::from(good[..40].to_vec()),
            2,
        ),
        (
            "B12 record count != lastOffsetDelta+1",
            mutate(&|b| {
                b[57..61].copy_from_slice(&5i32.to_be_bytes());
                fix_crc(b);
            }),
            87,
        ), // per-record validation: INVALID_RECORD, as §6.4 allows
        (
            "B12 record length past the batch end",
            mutate(&|b| {
                b[61] = 0x7e; // first record's length varint
                fix_crc(b);
            }),
            2,
        ),
        (
            "B20 unknown compression codec",
            mutate(&|b| {
                b[22] = (b[22] & !7) | 5;
                fix_crc(b);
            }),
            76,
        ),
        ("empty records", Bytes::new(), 87),
    ];
    for (what, records, want) in cases {
        assert_eq!(produce_code(&tb, "t", records).await, want, "{what}");
        assert_eq!(tb.log_end_offset("t", 0), 0, "{what}: nothing appended");
    }
    // A null record set as well.
    let mut c = tb.connect().await;
    let resp = c
        .send(&produce_request(1, vec![("t", 0, None)]))
        .await
        .unwrap();
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 87);
    assert_eq!(tb.log_end_offset("t", 0), 0);
    // The good batch still goes in.
    assert_eq!(produce_code(&tb, "t", good.clone()).await, 0);
    assert_eq!(tb.log_end_offset("t", 0), 3);
    tb.assert_alive().await;
}

#[tokio::test]
async fn b13_too_large_batches() {
    let tb = TestBroker::start().await;
    let mut c = tb.connect().await;
    let cfg = |k: &str, v: &str| {
        CreatableTopicConfig::default()
            .with_name(StrBytes::from_string(k.into()))
            .with_value(Some(StrBytes::from_string(v.into())))
    };
    let req = CreateTopicsRequest::default().with_topics(vec![
        CreatableTopic::default()
            .with_name(name("small"))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(vec![cfg("max.message.bytes", "200")]),
        CreatableTopic::default()
            .with_name(name("seg"))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(vec![
                cfg("segment.bytes", "1048576"),
                cfg("max.message.bytes", "4000000"),
            ]),
    ]);
    let resp = c.send(&req).await.unwrap();
    assert!(resp.topics.iter().all(|t| t.error_code == 0), "{resp:?}");
    let big_value = "x".repeat(300);
    assert_eq!(
        produce_code(&tb, "small", batch(&[&big_value], 1)).await,
        10,
        "MESSAGE_TOO_LARGE"
    );
    assert_eq!(tb.log_end_offset("small", 0), 0);
    assert_eq!(produce_code(&tb, "small", batch(&["tiny"], 1)).await, 0);
    let huge: String = (0..1_200_000)
        .map(|i| char::from(b'a' + (i * 7 % 26) as u8))
        .collect();
    assert_eq!(
        produce_code(&tb, "seg", batch(&[&huge], 1)).await,
        18,
        "RECORD_LIST_TOO_LARGE"
    );
    assert_eq!(tb.log_end_offset("seg", 0), 0);
    // The broker-wide message.max.bytes applies to topics without an override.
    let tb2 = TestBroker::start_with(|c| c.message_max_bytes = 100).await;
    tb2.create_topic("t", 1);
    assert_eq!(produce_code(&tb2, "t", batch(&[&big_value], 1)).await, 10);
    tb.assert_alive().await;
}

#[tokio::test]
async fn b14_invalid_required_acks() {
    let tb = TestBroker::start().await;
    tb.create_topic("t", 2);
    let mut c = tb.connect().await;
    for acks in [2i16, -2, 100] {
        let req = produce_request(
            acks,
            vec![
                ("t", 0, Some(batch(&["a"], 1))),
                ("t", 1, Some(batch(&["b"], 1))),
            ],
        );
        let resp = c.send(&req).await.unwrap();
        for p in &resp.responses[0].partition_responses {
            assert_eq!(p.error_code, 21, "acks={acks}");
        }
    }
    assert_eq!(
        (tb.log_end_offset("t", 0), tb.log_end_offset("t", 1)),
        (0, 0)
    );
    tb.assert_alive().await;
}

#[tokio::test]
async fn b15_acks_all_below_min_insync_replicas() {
    let tb = TestBroker::start().await;
    let mut c = tb.connect().await;
    let req = CreateTopicsRequest::default().with_topics(vec![
        CreatableTopic::default()
            .with_name(name("isr"))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(vec![
                CreatableTopicConfig::default()
                    .with_name(StrBytes::from_static_str("min.insync.replicas"))
                    .with_value(Some(StrBytes::from_static_str("2"))),
            ]),
    ]);
    assert_eq!(c.send(&req).await.unwrap().topics[0].error_code, 0);
    let resp = c
        .send(&produce_request(
            -1,
            vec![("isr", 0, Some(batch(&["a"], 1)))],
        ))
        .await
        .unwrap();
    assert_eq!(
        resp.responses[0].partition_responses[0].error_code, 19,
        "NOT_ENOUGH_REPLICAS"
    );
    assert_eq!(tb.log_end_offset("isr", 0), 0, "nothing appended");
    // acks=1 does not wait for the ISR.
    let resp = c
        .send(&produce_request(
            1,
            vec![("isr", 0, Some(batch(&["a"], 1)))],
        ))
        .await
        .unwrap();
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
    tb.assert_alive().await;
}

#[tokio::test]
async fn b16_unknown_topic_or_partition_and_neighbours_unaffected() {
    let tb = TestBroker::start_with(|c| c.auto_create_topics_enable = false).await;
    tb.create_topic("t", 2);
    let mut c = tb.connect().await;
    let req = produce_request(
        1,
        vec![
            ("t", 0, Some(batch(&["ok0"], 1))),
            ("t", 7, Some(batch(&["bad partition"], 1))),
            (
                "t",
                1,
                Some(batch(&["bad crc"], 1)).map(|b| {
                    let mut v = b.to_vec();
                    let l = v.len() - 1;
                    v[l] ^= 1;
                    Bytes::from(v)
                }),
            ),
            ("missing", 0, Some(batch(&["x"], 1))),
        ],
    );
    let resp = c.send(&req).await.unwrap();
    let codes: Vec<(String, i32, i16)> = resp
        .responses
        .iter()
        .flat_map(|t| {
            t.partition_responses
                .iter()
                .map(move |p| (t.name.0.to_string(), p.index, p.error_code))
        })
        .collect();
    assert_eq!(
        codes,
        vec![
            ("t".into(), 0, 0),
            ("t".into(), 7, 3),
            ("t".into(), 1, 2),
            ("missing".into(), 0, 3)
        ]
    );
    assert_eq!(
        (tb.log_end_offset("t", 0), tb.log_end_offset("t", 1)),
        (1, 0)
    );
    assert!(tb.broker.topic("missing").is_none());
    let resp = c.send(&fetch_request("missing", 0, 0, 0)).await.unwrap();
    assert_eq!(resp.responses[0].partitions[0].error_code, 3);
    assert_eq!(
        resp.responses[0].partitions[0]
            .records
            .as_ref()
            .map(|r| r.len()),
        Some(0),
        "records never null"
    );
    tb.assert_alive().await;
}

#[tokio::test]
async fn b17_leader_epoch_and_offset_out_of_range() {
    let tb = TestBroker::start().await;
    tb.create_topic("t", 1);
    let mut c = tb.connect().await;
    produce(&mut c, "t", 0, batch(&["a", "b"], 1)).await;
    let mut req = fetch_request("t", 0, 0, 0);
    req.topics[0].partitions[0].current_leader_epoch = 5;
    assert_eq!(
        c.send(&req).await.unwrap().responses[0].partitions[0].error_code,
        75,
        "UNKNOWN_LEADER_EPOCH"
    );
    req.topics[0].partitions[0].current_leader_epoch = 0;
    assert_eq!(
        c.send(&req).await.unwrap().responses[0].partitions[0].error_code,
        0
    );
    for offset in [3, 1000, -5] {
        let resp = c.send(&fetch_request("t", 0, offset, 0)).await.unwrap();
        assert_eq!(
            resp.responses[0].partitions[0].error_code, 1,
            "offset {offset}: OFFSET_OUT_OF_RANGE"
        );
    }
    // The log end offset itself is in range (empty answer, not an error).
    let resp = c.send(&fetch_request("t", 0, 2, 0)).await.unwrap();
    assert_eq!(resp.responses[0].partitions[0].error_code, 0);
    let mut lo = list_offsets_request("t", 0, -1);
    lo.topics[0].partitions[0].current_leader_epoch = 9;
    assert_eq!(
        c.send(&lo).await.unwrap().topics[0].partitions[0].error_code,
        75
    );
    assert_eq!(tb.log_end_offset("t", 0), 2);
    tb.assert_alive().await;
}

#[tokio::test]
async fn acks_zero_sends_nothing_and_closes_on_error() {
    let tb = TestBroker::start_with(|c| c.auto_create_topics_enable = false).await;
    tb.create_topic("t", 1);
    let mut c = tb.connect().await;
    let v = c.version_for::<ProduceRequest>().unwrap();
    c.write_request(
        &produce_request(0, vec![("t", 0, Some(batch(&["a"], 1)))]),
        v,
    )
    .await
    .unwrap();
    // The next response on the connection belongs to the next request: none was sent for acks=0.
    let resp = c
        .send(&MetadataRequest::default().with_topics(Some(vec![])))
        .await
        .unwrap();
    assert_eq!(resp.brokers.len(), 1);
    assert_eq!(tb.log_end_offset("t", 0), 1);
    c.write_request(
        &produce_request(0, vec![("nope", 0, Some(batch(&["a"], 1)))]),
        v,
    )
    .await
    .unwrap();
    assert_closed(&mut c).await;
    tb.assert_alive().await;
}

#[tokio::test]
async fn b22_pipelined_requests_are_answered_in_order() {
    let tb = TestBroker::start_with(|c| c.auto_create_topics_enable = false).await;
    tb.create_topic("t", 1);
    let mut c = tb.connect().await;
    let pv = c.version_for::<ProduceRequest>().unwrap();
    let mut sent = Vec::new();
    for i in 0..100 {
        let kind = i % 5;
        let corr = match kind {
            0 => {
                c.write_request(
                    &produce_request(1, vec![("t", 0, Some(batch(&[&format!("m{i}")], 1)))]),
                    pv,
                )
                .await
            }
            1 => {
                c.write_request(
                    &produce_request(2, vec![("t", 0, Some(batch(&["bad acks"], 1)))]),
                    pv,
                )
                .await
            }
            2 => {
                c.write_request(&fetch_request("t", 0, 1_000_000, 0), 11)
                    .await
            }
            3 => {
                c.write_request(
                    &MetadataRequest::default()
                        .with_topics(Some(vec![
                            MetadataRequestTopic::default().with_name(Some(name("nope"))),
                        ]))
                        .with_allow_auto_topic_creation(false),
                    9,
                )
                .await
            }
            _ => c.write_request(&list_offsets_request("t", 0, -1), 7).await,
        }
        .unwrap();
        sent.push((kind, corr));
    }
    let mut produced = 0;
    for (kind, corr) in sent {
        match kind {
            0 => {
                let r = c.read_response::<ProduceRequest>(pv, corr).await.unwrap();
                assert_eq!(r.responses[0].partition_responses[0].base_offset, produced);
                produced += 1;
            }
            1 => assert_eq!(
                c.read_response::<ProduceRequest>(pv, corr)
                    .await
                    .unwrap()
                    .responses[0]
                    .partition_responses[0]
                    .error_code,
                21
            ),
            2 => assert_eq!(
                c.read_response::<FetchRequest>(11, corr)
                    .await
                    .unwrap()
                    .responses[0]
                    .partitions[0]
                    .error_code,
                1
            ),
            3 => assert_eq!(
                c.read_response::<MetadataRequest>(9, corr)
                    .await
                    .unwrap()
                    .topics[0]
                    .error_code,
                3
            ),
            _ => assert_eq!(
                c.read_response::<ListOffsetsRequest>(7, corr)
                    .await
                    .unwrap()
                    .topics[0]
                    .partitions[0]
                    .offset,
                produced
            ),
        }
    }
    assert_eq!(tb.log_end_offset("t", 0), 20);
    tb.assert_alive().await;
}

#[tokio::test]
async fn b19_timestamps_outside_the_topic_bounds_are_invalid_timestamp() {
    const HOUR: i64 = 3_600_000;
    let tb = TestBroker::start().await;
    let mut c = tb.connect().await;
    let topic_config = |k: &'static str, v: &'static str| {
        CreatableTopicConfig::default()
            .with_name(StrBytes::from_static_str(k))
            .with_value(Some(StrBytes::from_static_str(v)))
    };
    let req = CreateTopicsRequest::default().with_topics(vec![
        // before.max.ms = 1 h; after.max.ms keeps the Kafka 4 broker default (1 h).
        CreatableTopic::default()
            .with_name(name("ts"))
            .with_num_partitions(2)
            .with_replication_factor(1)
            .with_configs(vec![topic_config(
                "message.timestamp.before.max.ms",
                "3600000",
            )]),
        // LogAppendTime: the broker's clock replaces the producer's, so no bounds apply.
        CreatableTopic::default()
            .with_name(name("ts-lat"))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(vec![
                topic_config("message.timestamp.type", "LogAppendTime"),
                topic_config("message.timestamp.before.max.ms", "0"),
            ]),
    ]);
    let resp = c.send(&req).await.unwrap();
    assert!(resp.topics.iter().all(|t| t.error_code == 0), "{resp:?}");

    let now = gregor_broker::broker::now_ms();
    let too_old = batch(&["old"], now - 2 * HOUR);
    let too_new = batch(&["new"], now + 2 * HOUR);
    // Only the batch's max timestamp (the second record's) is out of bounds.
    let max_too_new = gregor_client::records::encode_batch(
        &[record("a", now), record("b", now + 2 * HOUR)],
        gregor_client::kafka_protocol::records::Compression::None,
    )
    .unwrap();
    for (what, bad) in [
        ("base timestamp 2 h old", too_old.clone()),
        ("timestamp 2 h ahead", too_new),
        ("max timestamp 2 h ahead", max_too_new),
    ] {
        let resp = c
            .send(&produce_request(
                1,
                vec![("ts", 0, Some(bad)), ("ts", 1, Some(batch(&["ok"], now)))],
            ))
            .await
            .unwrap();
        let parts = &resp.responses[0].partition_responses;
        assert_eq!(parts[0].error_code, 32, "{what}: INVALID_TIMESTAMP");
        assert_eq!(parts[0].base_offset, -1, "{what}");
        let msg = parts[0].error_message.as_ref().unwrap().to_string();
        assert!(msg.contains("out of range"), "{what}: {msg}");
        assert_eq!(
            parts[1].error_code, 0,
            "{what}: the neighbour is unaffected"
        );
    }
    assert_eq!(tb.log_end_offset("ts", 0), 0, "nothing appended");
    assert_eq!(tb.log_end_offset("ts", 1), 3, "neighbours appended");

    // acks=0 and an invalid timestamp: no reply, the connection is closed (as for any acks=0
    // partition error), nothing appended.
    let mut c0 = tb.connect().await;
    let v = c0.version_for::<ProduceRequest>().unwrap();
    c0.write_request(
        &produce_request(0, vec![("ts", 0, Some(too_old.clone()))]),
        v,
    )
    .await
    .unwrap();
    assert_closed(&mut c0).await;
    assert_eq!(
        tb.log_end_offset("ts", 0),
        0,
        "nothing appended with acks=0"
    );

    // A corrupt batch with a bad timestamp is reported as corrupt (CRC before timestamps).
    let mut corrupt = BytesMut::from(&too_old[..]);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    let (code, _) = produce(&mut c, "ts", 0, corrupt.freeze()).await;
    assert_eq!(code, 2, "CORRUPT_MESSAGE wins over INVALID_TIMESTAMP");

    // LogAppendTime topics take any producer timestamp.
    let (code, offset) = produce(&mut c, "ts-lat", 0, too_old.clone()).await;
    assert_eq!((code, offset), (0, 0), "LogAppendTime ignores the bounds");

    // The bounds are live topic configs: DescribeConfigs shows them, IncrementalAlterConfigs
    // widens them, and the same old batch is then accepted.
    let mut client = gregor_client::Client::connect(&tb.addr).await.unwrap();
    let configs = client.describe_topic_configs("ts").await.unwrap();
    let value = |k: &str| {
        configs
            .iter()
            .find(|e| e.name == k)
            .unwrap_or_else(|| panic!("{k} not described"))
            .clone()
    };
    let before = value("message.timestamp.before.max.ms");
    assert_eq!(
        (before.value.as_deref(), before.is_default),
        (Some("3600000"), false)
    );
    let after = value("message.timestamp.after.max.ms");
    assert_eq!(
        (after.value.as_deref(), after.is_default),
        (Some("3600000"), true)
    );
    assert_eq!(
        value("message.timestamp.type").value.as_deref(),
        Some("CreateTime")
    );
    client
        .alter_topic_configs(
            "ts",
            &[(
                "message.timestamp.before.max.ms".into(),
                i64::MAX.to_string(),
            )],
            &[],
        )
        .await
        .unwrap();
    let (code, offset) = produce(&mut c, "ts", 0, too_old).await;
    assert_eq!((code, offset), (0, 0), "accepted after widening the bound");
    tb.assert_alive().await;
}
