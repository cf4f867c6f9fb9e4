//! Feeds arbitrary bytes through the broker's whole request decode path (the frame body after
//! the size prefix: header, support check, body). It must return Ok or Err, never panic, and
//! never allocate by a length the input declares (libFuzzer's -rss_limit_mb / -malloc_limit_mb
//! catch that). The stable proptest fallback is `crates/broker/tests/it/decode_fuzz.rs`.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = gregor_broker::handlers::decode_frame(Bytes::copy_from_slice(data));
});
