//! Building and reading RecordBatch v2 payloads.

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use crate::error::{ClientError, Result};

/// One record to produce.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerRecord {
    /// The key (`None` is Kafka's null key).
    pub key: Option<Bytes>,
    /// The value (`None` is a tombstone).
    pub value: Option<Bytes>,
    /// Headers in order.
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Create time in ms since the epoch.
    pub timestamp: i64,
}

/// One record read back, with the offset and timestamp the log gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    /// The record's offset in its partition.
    pub offset: i64,
    /// Its timestamp (create or log-append time, see `log_append_time`).
    pub timestamp: i64,
    /// Whether the timestamp is the broker's log-append time.
    pub log_append_time: bool,
    /// The key.
    pub key: Option<Bytes>,
    /// The value.
    pub value: Option<Bytes>,
    /// Headers in order.
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// Parses a compression name as Kafka's tools spell it (`none`, `gzip`, `snappy`, `lz4`, `zstd`).
pub fn parse_compression(name: &str) -> Result<Compression> {
    Ok(match name {
        "none" => Compression::None,
        "gzip" => Compression::Gzip,
        "snappy" => Compression::Snappy,
        "lz4" => Compression::Lz4,
        "zstd" => Compression::Zstd,
        other => {
            return Err(ClientError::Invalid(format!(
                "unknown compression '{other}' (none, gzip, snappy, lz4, zstd)"
            )));
        }
    })
}

/// Encodes `records` as one RecordBatch v2 with base offset 0, as a non-idempotent producer
/// sends it (producer id, epoch and base sequence all -1).
pub fn encode_batch(records: &[ProducerRecord], compression: Compression) -> Result<Bytes> {
    if records.is_empty() {
        return Err(ClientError::Invalid(
            "a batch needs at least one record".into(),
        ));
    }
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let offset = i as i64;
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset,
                // The encoder starts a new batch whenever offset - sequence changes, so a run of
                // "no sequence" records must carry sequence = offset - 1 to share one batch whose
                // base sequence is -1.
                sequence: offset as i32 - 1,
                timestamp: r.timestamp,
                key: r.key.clone(),
                value: r.value.clone(),
                headers: r
                    .headers
                    .iter()
                    .map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone()))
                    .collect::<IndexMap<_, _>>(),
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .map_err(|e| ClientError::Codec(format!("record batch: {e}")))?;
    Ok(buf.freeze())
}

/// Sets the first and max timestamps of a batch built by [`encode_batch`] whose records all have
/// timestamp delta 0 (one timestamp for the whole batch), and recomputes its CRC-32C. A load
/// generator encodes a batch once and re-stamps copies of it instead of encoding every time.
pub fn restamp_batch(batch: &mut [u8], timestamp: i64) -> Result<()> {
    // RecordBatch v2: crc at 17..21 covers 21..; firstTimestamp 27..35, maxTimestamp 35..43.
    if batch.len() < 61 || batch[16] != 2 {
        return Err(ClientError::Invalid("not a RecordBatch v2".into()));
    }
    batch[27..35].copy_from_slice(&timestamp.to_be_bytes());
    batch[35..43].copy_from_slice(&timestamp.to_be_bytes());
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// Decodes every record in a fetch response's `records` bytes. A trailing partial batch (the
/// broker may cut the last one at `max_bytes`) is ignored, as Kafka clients do.
pub fn decode_records(records: &Bytes) -> Result<Vec<ConsumedRecord>> {
    let mut out = Vec::new();
    let mut rest = records.clone();
    while rest.len() >= 12 {
        let batch_len = i32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]);
        let total = usize::try_from(batch_len)
            .map_err(|_| ClientError::Codec(format!("negative batch length {batch_len}")))?
            + 12;
        if total > rest.len() {
            break;
        }
        let mut batch = rest.split_to(total);
        let set = RecordBatchDecoder::decode(&mut batch)
            .map_err(|e| ClientError::Codec(format!("record batch: {e}")))?;
        out.extend(set.records.into_iter().filter(|r| !r.control).map(|r| {
            ConsumedRecord {
                offset: r.offset,
                timestamp: r.timestamp,
                log_append_time: r.timestamp_type == TimestampType::LogAppend,
                key: r.key,
                value: r.value,
                headers: r
                    .headers
                    .into_iter()
                    .map(|(k, v)| (k.as_str().to_string(), v))
                    .collect(),
            }
        }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: usize) -> ProducerRecord {
        ProducerRecord {
            key: i.is_multiple_of(2).then(|| Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("value-{i}"))),
            headers: vec![("h".into(), Some(Bytes::from_static(b"x")))],
            timestamp: 1_700_000_000_000 + i as i64,
        }
    }

    #[test]
    fn one_batch_round_trips_with_every_codec() {
        for name in ["none", "gzip", "snappy", "lz4", "zstd"] {
            let records: Vec<_> = (0..10).map(rec).collect();
            let batch = encode_batch(&records, parse_compression(name).unwrap()).unwrap();
            // Exactly one batch: its declared length covers all the bytes.
            let len = i32::from_be_bytes([batch[8], batch[9], batch[10], batch[11]]) as usize;
            assert_eq!(len + 12, batch.len(), "{name}: one batch");
            assert_eq!(
                crc32c::crc32c(&batch[21..]).to_be_bytes(),
                batch[17..21],
                "{name}: crc"
            );
            let back = decode_records(&batch).unwrap();
            assert_eq!(back.len(), 10);
            for (i, r) in back.iter().enumerate() {
                assert_eq!(r.offset, i as i64);
                assert_eq!(r.value, records[i].value);
                assert_eq!(r.key, records[i].key);
                assert_eq!(r.timestamp, records[i].timestamp);
            }
        }
    }

    #[test]
    fn a_restamped_batch_decodes_with_the_new_timestamp() {
        for name in ["none", "lz4"] {
            let records: Vec<_> = (0..5)
                .map(|_| ProducerRecord {
                    value: Some(Bytes::from_static(b"v")),
                    timestamp: 1_000,
                    ..ProducerRecord::default()
                })
                .collect();
            let batch = encode_batch(&records, parse_compression(name).unwrap()).unwrap();
            let mut copy = batch.to_vec();
            restamp_batch(&mut copy, 1_700_000_000_123).unwrap();
            // decode_records checks the CRC (the kafka-protocol decoder verifies it).
            let back = decode_records(&Bytes::from(copy)).unwrap();
            assert_eq!(back.len(), 5, "{name}");
            assert!(
                back.iter().all(|r| r.timestamp == 1_700_000_000_123),
                "{name}"
            );
        }
        assert!(restamp_batch(&mut [0u8; 10], 1).is_err());
    }

    #[test]
    fn a_cut_trailing_batch_is_ignored() {
        let a = encode_batch(&[rec(1)], Compression::None).unwrap();
        let b = encode_batch(&[rec(2)], Compression::None).unwrap();
        let mut both = BytesMut::from(&a[..]);
        both.extend_from_slice(&b[..b.len() - 3]);
        assert_eq!(decode_records(&both.freeze()).unwrap().len(), 1);
    }
}
