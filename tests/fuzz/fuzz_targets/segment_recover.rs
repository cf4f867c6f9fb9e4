//! Recovery of the active segment from arbitrary file contents: opening must succeed, and every
//! batch served afterwards must pass full validation, with indexes that agree with the data.
//!
//! The first input byte picks how the segment is built, so the fuzzer also starts from valid data:
//! 0 = the bytes as they are, 1 = valid batches followed by the bytes, 2 = valid batches XORed
//! with the bytes.
#![no_main]

use gregor_storage::batch::{self, BatchIter, ValidationMode, build_batch};
use gregor_storage::{LogConfig, PartitionLog};
use libfuzzer_sys::fuzz_target;

fn valid_segment(n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut offset = 0i64;
    for i in 0..n {
        let value = vec![i as u8; 10 + i * 7];
        let recs: Vec<(i64, &[u8])> = (0..=i % 3).map(|j| (1000 + j as i64, value.as_slice())).collect();
        let mut b = build_batch(offset, &recs).expect("encode a fixture batch").to_vec();
        b[12..16].copy_from_slice(&0i32.to_be_bytes());
        offset += recs.len() as i64;
        out.extend_from_slice(&b);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let segment = match mode % 3 {
        0 => rest.to_vec(),
        1 => {
            let mut s = valid_segment(4);
            s.extend_from_slice(rest);
            s
        }
        _ => {
            let mut s = valid_segment(6);
            for (i, b) in rest.iter().enumerate() {
                let at = i * 7 % s.len();
                s[at] ^= b;
            }
            s
        }
    };
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join(format!("{:020}.log", 0)), &segment).unwrap();
    let config = LogConfig {
        index_interval_bytes: 64,
        ..LogConfig::default()
    };
    let log = PartitionLog::open(tmp.path(), config, 0).expect("the active segment always recovers");
    log.verify().expect("indexes agree with the recovered data");
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let r = log.read(offset, usize::MAX, i64::MAX, true).unwrap();
        assert!(!r.records.is_empty());
        for item in BatchIter::new(r.records) {
            let (h, bytes) = item.unwrap();
            batch::validate(&bytes, ValidationMode::Replica).expect("served batches are valid");
            assert_eq!(h.base_offset, offset);
            offset = h.next_offset();
        }
    }
    assert_eq!(offset, log.log_end_offset());
});
