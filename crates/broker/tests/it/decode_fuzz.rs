//! Stable-toolchain fuzzing of the request decode path (the cargo-fuzz target `request_decode`
//! in `fuzz/` runs the same function under libFuzzer): random bytes and mutated valid frames
//! must decode or fail, never panic or allocate by a declared length.

use bytes::Bytes;
use gregor_broker::handlers::decode_frame;
use gregor_client::connection::encode_request;
use gregor_client::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use gregor_client::kafka_protocol::messages::*;
use gregor_client::kafka_protocol::protocol::{Request, StrBytes};
use proptest::prelude::*;

use crate::api::{fetch_request, list_offsets_request};
use crate::common::{batch, name, produce_request};

fn body_of<R: Request>(req: &R, version: i16) -> Vec<u8> {
    encode_request(req, version, 1, Some(StrBytes::from_static_str("fuzz"))).unwrap()[4..].to_vec()
}

/// Valid frames of several APIs and versions, as mutation seeds.
fn seeds() -> Vec<Vec<u8>> {
    vec![
        body_of(&ApiVersionsRequest::default(), 3),
        body_of(
            &MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(name("t"))),
            ])),
            12,
        ),
        body_of(&MetadataRequest::default().with_topics(None), 1),
        body_of(
            &produce_request(1, vec![("t", 0, Some(batch(&["a", "b"], 1)))]),
            9,
        ),
        body_of(
            &produce_request(-1, vec![("t", 0, Some(batch(&["a"], 1)))]),
            3,
        ),
        body_of(&fetch_request("t", 0, 0, 100), 12),
        body_of(&fetch_request("t", 0, 0, 100), 4),
        body_of(&list_offsets_request("t", 0, -1), 10),
        body_of(&DescribeClusterRequest::default(), 1),
        body_of(&DescribeConfigsRequest::default(), 4),
        body_of(&CreateTopicsRequest::default(), 7),
        body_of(&DeleteTopicsRequest::default(), 6),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_frame(Bytes::from(bytes));
    }

    #[test]
    fn random_bodies_behind_valid_headers_never_panic(key in 0usize..23, version in -1i16..16, body in proptest::collection::vec(any::<u8>(), 0..128)) {
        let keys = [0i16, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15, 16, 18, 19, 20, 32, 37, 42, 44, 47, 60, 9999];
        let mut frame = Vec::new();
        frame.extend_from_slice(&keys[key].to_be_bytes());
        frame.extend_from_slice(&version.to_be_bytes());
        frame.extend_from_slice(&1i32.to_be_bytes());
        frame.extend_from_slice(&(-1i16).to_be_bytes());
        frame.extend_from_slice(&body);
        let _ = decode_frame(Bytes::from(frame));
    }

    #[test]
    fn mutated_valid_frames_never_panic(
        seed in 0usize..12,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut frame = seeds()[seed].clone();
        for (at, value) in edits {
            let i = at.index(frame.len());
            frame[i] = value;
        }
        if truncate {
            frame.truncate(cut.index(frame.len() + 1));
        }
        let _ = decode_frame(Bytes::from(frame));
    }
}

#[test]
fn unmutated_seeds_decode() {
    for (i, seed) in seeds().into_iter().enumerate() {
        assert!(decode_frame(Bytes::from(seed)).is_ok(), "seed {i}");
    }
}
