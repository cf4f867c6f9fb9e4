//! Kafka RecordBatch v2: header parsing, validation and iteration.
//!
//! Layout (all big-endian): baseOffset i64 `[0..8]`, batchLength i32 `[8..12]` (= total − 12),
//! partitionLeaderEpoch i32 `[12..16]`, magic i8 `[16]`, crc u32 `[17..21]`, attributes i16
//! `[21..23]`, lastOffsetDelta i32 `[23..27]`, baseTimestamp i64 `[27..35]`, maxTimestamp i64
//! `[35..43]`, producerId i64 `[43..51]`, producerEpoch i16 `[51..53]`, baseSequence i32 `[53..57]`,
//! recordCount i32 `[57..61]`, then the records. The CRC-32C covers `[21..end]`, so the base offset
//! and the leader epoch can be rewritten without recomputing it.
//!
//! Validation never decompresses: the append path stays O(bytes) with no allocation, and a
//! decompression bomb cannot cost the broker memory. Compressed batches are checked for framing,
//! CRC and codec only; their records are decoded only when a timestamp lookup needs them.

use bytes::Bytes;

use crate::error::{Result, StorageError};

/// Bytes before `batchLength` counts: baseOffset + batchLength.
pub const LOG_OVERHEAD: usize = 12;
/// Size of the v2 batch header.
pub const HEADER_LEN: usize = 61;
/// The only supported magic.
pub const MAGIC_V2: i8 = 2;
/// Position of the magic byte (the same in every message format version).
pub const MAGIC_OFFSET: usize = 16;
/// Position of the CRC.
pub const CRC_OFFSET: usize = 17;
/// Start of the CRC-covered bytes.
pub const ATTRIBUTES_OFFSET: usize = 21;
/// Position of maxTimestamp.
pub const MAX_TIMESTAMP_OFFSET: usize = 35;
/// Position of partitionLeaderEpoch.
pub const LEADER_EPOCH_OFFSET: usize = 12;

const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;

/// Compression codec from the attribute bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// No compression.
    None,
    /// gzip.
    Gzip,
    /// snappy (xerial framing).
    Snappy,
    /// lz4.
    Lz4,
    /// zstd.
    Zstd,
}

impl Compression {
    /// Decodes `attributes & 7`.
    pub fn from_attributes(attributes: i16) -> Result<Self> {
        match attributes & 7 {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            codec => Err(StorageError::UnsupportedCompression { codec: codec as u8 }),
        }
    }

    /// Kafka's name for the codec.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// The parsed 61-byte header of a RecordBatch v2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Bytes after the batchLength field (total size − 12).
    pub batch_length: i32,
    /// Epoch of the leader that appended the batch.
    pub partition_leader_epoch: i32,
    /// Message format version; always 2 after a successful parse.
    pub magic: i8,
    /// Stored CRC-32C of `[21..end]`.
    pub crc: u32,
    /// Compression, timestamp type, transactional and control bits.
    pub attributes: i16,
    /// Offset of the last record relative to `base_offset`.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch (the append time for LogAppendTime).
    pub max_timestamp: i64,
    /// Idempotent producer id, or -1.
    pub producer_id: i64,
    /// Idempotent producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records.
    pub record_count: i32,
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

impl BatchHeader {
    /// Parses the header at the start of `buf` (which may hold more bytes than one batch).
    ///
    /// Checks only what is needed to frame the batch: enough bytes for a header, magic 2 and a
    /// batchLength that covers at least the header. Use [`validate`] for the full check.
    pub fn parse(buf: &[u8]) -> Result<Self> {
        if buf.len() <= MAGIC_OFFSET {
            return Err(StorageError::corrupt(format!(
                "{} bytes is shorter than a batch header",
                buf.len()
            )));
        }
        let magic = buf[MAGIC_OFFSET] as i8;
        if magic != MAGIC_V2 {
            return Err(StorageError::invalid(format!(
                "unsupported message format magic {magic}, only v2 is accepted"
            )));
        }
        if buf.len() < HEADER_LEN {
            return Err(StorageError::corrupt(format!(
                "{} bytes is shorter than a batch header",
                buf.len()
            )));
        }
        let batch_length = be_i32(buf, 8);
        if batch_length < (HEADER_LEN - LOG_OVERHEAD) as i32 {
            return Err(StorageError::corrupt(format!(
                "batchLength {batch_length} is shorter than the header"
            )));
        }
        Ok(BatchHeader {
            base_offset: be_i64(buf, 0),
            batch_length,
            partition_leader_epoch: be_i32(buf, LEADER_EPOCH_OFFSET),
            magic,
            crc: u32::from_be_bytes([buf[17], buf[18], buf[19], buf[20]]),
            attributes: be_i16(buf, 21),
            last_offset_delta: be_i32(buf, 23),
            base_timestamp: be_i64(buf, 27),
            max_timestamp: be_i64(buf, MAX_TIMESTAMP_OFFSET),
            producer_id: be_i64(buf, 43),
            producer_epoch: be_i16(buf, 51),
            base_sequence: be_i32(buf, 53),
            record_count: be_i32(buf, 57),
        })
    }

    /// Total size of the batch in bytes, header included.
    pub fn total_size(&self) -> usize {
        // batch_length >= 49 was checked by `parse`, so the cast is lossless.
        self.batch_length as usize + LOG_OVERHEAD
    }

    /// Offset of the last record (`base_offset + last_offset_delta`).
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// Offset after the last record.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }

    /// The compression codec, or `UnsupportedCompression`.
    pub fn compression(&self) -> Result<Compression> {
        Compression::from_attributes(self.attributes)
    }

    /// Whether the batch carries LogAppendTime timestamps.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }

    /// Whether the batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    /// Whether the batch is a control batch (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }
}

/// CRC-32C (Castagnoli) of `data`.
///
/// `crc-fast` folds with carry-less multiplication (PCLMULQDQ/VPCLMULQDQ) and runs about 4x faster
/// than the `crc32c` crate's SSE4.2 loop here (1 MiB: 11 µs vs 40 µs). The append path checksums
/// every byte it writes, so this is most of its CPU cost beyond the copy into the page cache.
pub fn crc32c(data: &[u8]) -> u32 {
    crc_fast::crc32_iscsi(data)
}

/// CRC-32C of the concatenation of `parts`, without concatenating them.
pub fn crc32c_parts(parts: &[&[u8]]) -> u32 {
    let mut digest = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi);
    for p in parts {
        digest.update(p);
    }
    digest.finalize() as u32
}

/// Computes the CRC-32C a batch should carry.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c(&batch[ATTRIBUTES_OFFSET.min(batch.len())..])
}

/// How strictly offsets inside the batch are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidationMode {
    /// A producer's batch: at least one record and `recordCount == lastOffsetDelta + 1`.
    Client,
    /// A batch copied from a leader: compaction may have removed records, so only
    /// `recordCount <= lastOffsetDelta + 1` is required.
    Replica,
}

/// Fully validates exactly one batch occupying all of `batch`.
///
/// Checks magic, that batchLength matches the slice, the CRC, the codec, the offset range, and for
/// uncompressed batches walks every record (lengths, varints, headers) and checks the count and that
/// the records end exactly at the batch end.
pub fn validate(batch: &[u8], mode: ValidationMode) -> Result<BatchHeader> {
    let header = BatchHeader::parse(batch)?;
    if header.total_size() != batch.len() {
        return Err(StorageError::corrupt(format!(
            "batchLength {} implies {} bytes but {} were given",
            header.batch_length,
            header.total_size(),
            batch.len()
        )));
    }
    let crc = compute_crc(batch);
    if crc != header.crc {
        return Err(StorageError::corrupt(format!(
            "CRC mismatch: stored {:#010x}, computed {crc:#010x}",
            header.crc
        )));
    }
    let compression = header.compression()?;
    if header.record_count < 0 || header.last_offset_delta < 0 {
        return Err(StorageError::invalid(format!(
            "negative record count {} or last offset delta {}",
            header.record_count, header.last_offset_delta
        )));
    }
    let span = i64::from(header.last_offset_delta) + 1;
    match mode {
        ValidationMode::Client => {
            if header.record_count == 0 || i64::from(header.record_count) != span {
                return Err(StorageError::invalid(format!(
                    "record count {} does not match last offset delta {}",
                    header.record_count, header.last_offset_delta
                )));
            }
        }
        ValidationMode::Replica => {
            if i64::from(header.record_count) > span {
                return Err(StorageError::invalid(format!(
                    "record count {} exceeds the offset range of last offset delta {}",
                    header.record_count, header.last_offset_delta
                )));
            }
        }
    }
    if compression == Compression::None {
        let mut walker = RecordWalker::new(&batch[HEADER_LEN..]);
        let mut count: i64 = 0;
        while let Some(record) = walker.next_record()? {
            count += 1;
            if count > i64::from(header.record_count) {
                return Err(StorageError::corrupt(format!(
                    "more records than the declared count {}",
                    header.record_count
                )));
            }
            if record.offset_delta < 0 || record.offset_delta > header.last_offset_delta {
                return Err(StorageError::corrupt(format!(
                    "record offset delta {} outside [0, {}]",
                    record.offset_delta, header.last_offset_delta
                )));
            }
        }
        if count != i64::from(header.record_count) {
            return Err(StorageError::corrupt(format!(
                "found {count} records, header declares {}",
                header.record_count
            )));
        }
    }
    Ok(header)
}

/// The fields of one record needed for offset and timestamp lookups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordInfo {
    /// Offset relative to the batch base offset.
    pub offset_delta: i32,
    /// Timestamp relative to the batch base timestamp.
    pub timestamp_delta: i64,
}

/// Walks uncompressed v2 records, checking every length against the remaining bytes so hostile
/// input can neither panic nor make us allocate.
#[derive(Debug)]
pub struct RecordWalker<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> RecordWalker<'a> {
    /// Walks the records in `buf` (the bytes after the batch header).
    pub fn new(buf: &'a [u8]) -> Self {
        RecordWalker { buf, pos: 0 }
    }

    /// The next record, `None` at the exact end, or `CorruptMessage`.
    pub fn next_record(&mut self) -> Result<Option<RecordInfo>> {
        if self.pos == self.buf.len() {
            return Ok(None);
        }
        let len = read_varint(self.buf, &mut self.pos)?;
        if len < 0 {
            return Err(StorageError::corrupt(format!(
                "negative record length {len}"
            )));
        }
        let len = len as usize;
        let end = self
            .pos
            .checked_add(len)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| StorageError::corrupt("record extends past the batch end"))?;
        let body = &self.buf[..end];
        let mut p = self.pos;
        // attributes
        if p >= end {
            return Err(StorageError::corrupt("record shorter than its attributes"));
        }
        p += 1;
        let timestamp_delta = read_varlong(body, &mut p)?;
        let offset_delta = read_varint(body, &mut p)?;
        skip_bytes(body, &mut p, true)?; // key
        skip_bytes(body, &mut p, true)?; // value
        let headers = read_varint(body, &mut p)?;
        if headers < 0 {
            return Err(StorageError::corrupt(format!(
                "negative header count {headers}"
            )));
        }
        for _ in 0..headers {
            skip_bytes(body, &mut p, false)?; // header key may not be null
            skip_bytes(body, &mut p, true)?;
        }
        if p != end {
            return Err(StorageError::corrupt(format!(
                "record fields end at {p}, record length says {end}"
            )));
        }
        self.pos = end;
        Ok(Some(RecordInfo {
            offset_delta,
            timestamp_delta,
        }))
    }
}

#[inline]
fn skip_bytes(buf: &[u8], pos: &mut usize, nullable: bool) -> Result<()> {
    let len = read_varint(buf, pos)?;
    if len < 0 {
        if nullable && len == -1 {
            return Ok(());
        }
        return Err(StorageError::corrupt(format!("invalid field length {len}")));
    }
    let end = pos
        .checked_add(len as usize)
        .filter(|&e| e <= buf.len())
        .ok_or_else(|| StorageError::corrupt("record field extends past the record end"))?;
    *pos = end;
    Ok(())
}

/// Reads an unsigned LEB128 varint of at most `max_bytes` bytes. One- and two-byte values (all
/// lengths below 16 KiB) take a fast path: the append path walks every record of every batch.
#[inline]
fn read_unsigned(buf: &[u8], pos: &mut usize, max_bytes: u32) -> Result<u64> {
    if let Some(&b0) = buf.get(*pos) {
        if b0 < 0x80 {
            *pos += 1;
            return Ok(u64::from(b0));
        }
        if let Some(&b1) = buf.get(*pos + 1)
            && b1 < 0x80
        {
            *pos += 2;
            return Ok(u64::from(b0 & 0x7f) | (u64::from(b1) << 7));
        }
    }
    read_unsigned_slow(buf, pos, max_bytes)
}

#[cold]
fn read_unsigned_slow(buf: &[u8], pos: &mut usize, max_bytes: u32) -> Result<u64> {
    let mut value: u64 = 0;
    for i in 0..max_bytes {
        let Some(&b) = buf.get(*pos) else {
            return Err(StorageError::corrupt("varint runs past the record end"));
        };
        *pos += 1;
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(StorageError::corrupt("varint is too long"))
}

/// Reads a zig-zag varint (at most 5 bytes).
#[inline]
pub(crate) fn read_varint(buf: &[u8], pos: &mut usize) -> Result<i32> {
    let raw = read_unsigned(buf, pos, 5)?;
    let raw = u32::try_from(raw).map_err(|_| StorageError::corrupt("varint overflows 32 bits"))?;
    Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
}

/// Reads a zig-zag varlong (at most 10 bytes).
#[inline]
pub(crate) fn read_varlong(buf: &[u8], pos: &mut usize) -> Result<i64> {
    let raw = read_unsigned(buf, pos, 10)?;
    Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
}

/// Iterates over the batches in a buffer, yielding each as a zero-copy `Bytes` slice.
///
/// Framing only (header parse and length); stops with an error at the first batch that does not fit.
#[derive(Debug, Clone)]
pub struct BatchIter {
    buf: Bytes,
    failed: bool,
}

impl BatchIter {
    /// Iterates over `buf`.
    pub fn new(buf: Bytes) -> Self {
        BatchIter { buf, failed: false }
    }
}

impl Iterator for BatchIter {
    type Item = Result<(BatchHeader, Bytes)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.buf.is_empty() {
            return None;
        }
        let header = match BatchHeader::parse(&self.buf) {
            Ok(h) => h,
            Err(e) => {
                self.failed = true;
                return Some(Err(e));
            }
        };
        let size = header.total_size();
        if size > self.buf.len() {
            self.failed = true;
            return Some(Err(StorageError::corrupt(format!(
                "batch of {size} bytes but only {} remain",
                self.buf.len()
            ))));
        }
        Some(Ok((header, self.buf.split_to(size))))
    }
}

/// Exact `(offset, timestamp)` of every record in a batch, decoding compressed batches.
///
/// For LogAppendTime batches every record carries the batch's max timestamp.
pub fn record_timestamps(batch: &Bytes) -> Result<Vec<(i64, i64)>> {
    let header = BatchHeader::parse(batch)?;
    let batch = batch.slice(..header.total_size().min(batch.len()));
    let append_time = header.is_log_append_time();
    let stamp = |offset_delta: i64, timestamp_delta: i64| {
        let ts = if append_time {
            header.max_timestamp
        } else {
            header.base_timestamp.saturating_add(timestamp_delta)
        };
        (header.base_offset.saturating_add(offset_delta), ts)
    };
    if header.compression()? == Compression::None {
        let mut walker = RecordWalker::new(batch.get(HEADER_LEN..).unwrap_or_default());
        let mut out = Vec::with_capacity(header.record_count.clamp(0, 4096) as usize);
        while let Some(r) = walker.next_record()? {
            out.push(stamp(i64::from(r.offset_delta), r.timestamp_delta));
        }
        return Ok(out);
    }
    let mut buf = batch.clone();
    let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut buf)
        .map_err(|e| StorageError::corrupt(format!("cannot decode batch: {e}")))?;
    Ok(set
        .records
        .iter()
        .map(|r| {
            let ts = if append_time {
                header.max_timestamp
            } else {
                r.timestamp
            };
            (r.offset, ts)
        })
        .collect())
}

/// Builds an uncompressed CreateTime batch of `(timestamp, value)` records with null keys, no
/// headers and no producer id, with kafka-protocol's encoder. For tests, tools and benchmarks;
/// producers build their own.
pub fn build_batch(base_offset: i64, records: &[(i64, &[u8])]) -> Result<Bytes> {
    use kafka_protocol::records::{
        Compression as Codec, Record, RecordBatchEncoder, RecordEncodeOptions,
        TimestampType as TsType,
    };
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (ts, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TsType::Creation,
            offset: base_offset + i as i64,
            // The encoder starts a new batch whenever offset - sequence changes; keeping it
            // constant gives one batch whose base sequence is -1 ("no sequence").
            sequence: i as i32 - 1,
            timestamp: *ts,
            key: None,
            value: Some(Bytes::copy_from_slice(value)),
            headers: Default::default(),
        })
        .collect();
    let mut out = bytes::BytesMut::new();
    RecordBatchEncoder::encode(
        &mut out,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Codec::None,
        },
    )
    .map_err(|e| StorageError::invalid(format!("cannot encode a batch: {e}")))?;
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_varlong(out: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        while z >= 0x80 {
            out.push((z as u8) | 0x80);
            z >>= 7;
        }
        out.push(z as u8);
    }

    #[test]
    fn varints_decode_zigzag_and_reject_overlong() {
        let cases: &[(&[u8], i32)] = &[
            (&[0x00], 0),
            (&[0x01], -1),
            (&[0x02], 1),
            (&[0xff, 0xff, 0xff, 0xff, 0x0f], i32::MIN),
        ];
        for &(bytes, v) in cases {
            let mut p = 0;
            assert_eq!(read_varint(bytes, &mut p).unwrap(), v);
            assert_eq!(p, bytes.len());
        }
        let mut p = 0;
        assert!(read_varint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01], &mut p).is_err());
        let mut p = 0;
        assert!(read_varint(&[0x80], &mut p).is_err());
        let mut out = Vec::new();
        put_varlong(&mut out, i64::MIN);
        let mut p = 0;
        assert_eq!(read_varlong(&out, &mut p).unwrap(), i64::MIN);
    }

    #[test]
    fn crc_matches_the_castagnoli_check_value_and_the_crc32c_crate() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c_parts(&[b"1234", b"", b"56789"]), 0xE306_9283);
        let b = build_batch(0, &[(1, b"v")]).unwrap();
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!(h.crc, ::crc32c::crc32c(&b[21..]));
        // Every length up to a few SIMD blocks, unaligned starts included.
        let data: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for start in 0..8 {
            for len in (0..600).chain([1023, 1024, 1025, 4000]) {
                let d = &data[start..start + len];
                assert_eq!(crc32c(d), ::crc32c::crc32c(d), "start {start} len {len}");
            }
        }
    }
}
