//! Batch validation, framing and record decoding must never panic on arbitrary bytes, and must
//! answer either Ok or a typed validation error.
#![no_main]

use bytes::Bytes;
use gregor_storage::StorageError;
use gregor_storage::batch::{self, BatchIter, ValidationMode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for mode in [ValidationMode::Client, ValidationMode::Replica] {
        match batch::validate(data, mode) {
            Ok(h) => {
                assert_eq!(h.total_size(), data.len());
                assert_eq!(batch::compute_crc(data), h.crc);
            }
            Err(
                StorageError::CorruptMessage { .. }
                | StorageError::InvalidRecord { .. }
                | StorageError::UnsupportedCompression { .. },
            ) => {}
            Err(e) => panic!("untyped validation error: {e:?}"),
        }
    }
    for item in BatchIter::new(Bytes::copy_from_slice(data)) {
        let Ok((_, one)) = item else { break };
        let _ = batch::record_timestamps(&one);
    }
});
