//! Idempotent-producer state of one partition: for every producer id, its epoch and the metadata
//! of its last [`NUM_BATCHES_TO_RETAIN`] batches (Kafka's `ProducerStateManager`).
//!
//! The state is a pure function of the log: [`ProducerStateManager::update`] applied to every
//! batch header in offset order rebuilds it, so a follower or a new leader can derive it from its
//! own log (headers only, no decompression). [`PartitionLog`](crate::PartitionLog) keeps it up to
//! date on every append, snapshots it ([`ProducerSnapshot`]) at segment roll, truncation and
//! clean close, and rebuilds it at open from the snapshot plus the batches after it.
//!
//! The leader calls [`ProducerStateManager::check`] under the partition write lock before
//! appending a client batch. The rules are Kafka's (`ProducerAppendInfo.checkSequence`,
//! `ProducerStateEntry.findDuplicateBatch`), see `reliability.md` §1.6:
//!
//! - a batch of the current epoch whose first and last sequence equal one of the retained
//!   batches is a duplicate: answered with the original offsets, not appended;
//! - an epoch older than the producer's → `INVALID_PRODUCER_EPOCH` (47);
//! - a newer epoch must start at sequence 0, otherwise `OUT_OF_ORDER_SEQUENCE_NUMBER` (45);
//! - in the current epoch the first sequence must be the last one + 1 (wrapping from
//!   `i32::MAX` to 0), otherwise 45;
//! - a producer id with no state (never seen, or evicted by retention) is accepted at any
//!   sequence (KIP-360: modern brokers no longer answer `UNKNOWN_PRODUCER_ID`).

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;

use crate::batch::BatchHeader;
use crate::checkpoint::{Reader, read_optional, seal, unseal, write_atomic};
use crate::error::{Result, StorageError};

/// Batches remembered per producer (Kafka's `ProducerStateEntry.NUM_BATCHES_TO_RETAIN`).
pub const NUM_BATCHES_TO_RETAIN: usize = 5;
/// `RecordBatch.NO_PRODUCER_ID`.
pub const NO_PRODUCER_ID: i64 = -1;
/// `RecordBatch.NO_PRODUCER_EPOCH`.
pub const NO_PRODUCER_EPOCH: i16 = -1;
/// `RecordBatch.NO_SEQUENCE`.
pub const NO_SEQUENCE: i32 = -1;
/// File name of the producer-state snapshot inside a partition directory.
pub const SNAPSHOT_FILE: &str = "producer.snapshot";

const SNAPSHOT_MAGIC: [u8; 4] = *b"GRPS";
const SNAPSHOT_VERSION: u16 = 1;
/// Encoded size of one batch entry: first/last sequence, first/last offset, timestamp.
const BATCH_ENTRY_LEN: usize = 4 + 4 + 8 + 8 + 8;
/// Smallest encoded producer: id, epoch, batch count and one batch.
const MIN_PRODUCER_LEN: usize = 8 + 4 + 4 + BATCH_ENTRY_LEN;

/// `seq + increment`, wrapping from `i32::MAX` to 0 as Kafka's `incrementSequence`.
pub fn increment_sequence(seq: i32, increment: i32) -> i32 {
    if seq > i32::MAX - increment {
        increment - (i32::MAX - seq) - 1
    } else {
        seq + increment
    }
}

/// Whether `next` directly follows `last` (wrapping at `i32::MAX`).
pub fn in_sequence(last: i32, next: i32) -> bool {
    i64::from(next) == i64::from(last) + 1 || (next == 0 && last == i32::MAX)
}

/// The sequence of a batch's last record.
pub fn last_sequence(header: &BatchHeader) -> i32 {
    if header.base_sequence == NO_SEQUENCE {
        return NO_SEQUENCE;
    }
    increment_sequence(header.base_sequence, header.last_offset_delta.max(0))
}

/// What the log holds about one appended batch of a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    /// Sequence of the first record.
    pub first_seq: i32,
    /// Sequence of the last record.
    pub last_seq: i32,
    /// Offset of the first record.
    pub first_offset: i64,
    /// Offset of the last record.
    pub last_offset: i64,
    /// The batch's max timestamp as stored (the append time on LogAppendTime topics).
    pub timestamp: i64,
}

/// One producer's state in a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    /// The producer's current epoch.
    pub epoch: i16,
    /// Its last batches of that epoch, oldest first, at most [`NUM_BATCHES_TO_RETAIN`].
    pub batches: VecDeque<BatchMetadata>,
}

impl ProducerEntry {
    /// Sequence of the last record appended, or [`NO_SEQUENCE`].
    pub fn last_seq(&self) -> i32 {
        self.batches.back().map_or(NO_SEQUENCE, |b| b.last_seq)
    }

    /// Offset of the last record appended, or -1.
    pub fn last_offset(&self) -> i64 {
        self.batches.back().map_or(-1, |b| b.last_offset)
    }

    fn find(&self, first_seq: i32, last_seq: i32) -> Option<BatchMetadata> {
        self.batches
            .iter()
            .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
            .copied()
    }
}

/// What [`ProducerStateManager::check`] decided for a client batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProducerCheck {
    /// Append it (also for batches without a producer id).
    Append,
    /// A retry of a batch already in the log: answer with these offsets, append nothing.
    Duplicate(BatchMetadata),
}

/// The producer state of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProducerStateManager {
    producers: BTreeMap<i64, ProducerEntry>,
}

impl ProducerStateManager {
    /// No producers.
    pub fn new() -> Self {
        Self::default()
    }

    /// The state of `producer_id`, if any.
    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Number of producers with state.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// Whether no producer has state.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Checks a client batch (its header as the producer sent it) against the state: duplicate,
    /// acceptable, or [`StorageError::InvalidProducerEpoch`] /
    /// [`StorageError::OutOfOrderSequence`]. Changes nothing.
    pub fn check(&self, header: &BatchHeader) -> Result<ProducerCheck> {
        let pid = header.producer_id;
        if pid == NO_PRODUCER_ID {
            return Ok(ProducerCheck::Append);
        }
        let Some(entry) = self.producers.get(&pid) else {
            // KIP-360: no state (new producer, or evicted) → any sequence is accepted.
            return Ok(ProducerCheck::Append);
        };
        let epoch = header.producer_epoch;
        let first_seq = header.base_sequence;
        let last_seq = last_sequence(header);
        // Duplicates are looked for before any check, as Kafka's `analyzeAndValidateProducerState`.
        if epoch == entry.epoch
            && let Some(original) = entry.find(first_seq, last_seq)
        {
            return Ok(ProducerCheck::Duplicate(original));
        }
        if epoch < entry.epoch {
            return Err(StorageError::InvalidProducerEpoch {
                producer_id: pid,
                epoch,
                current: entry.epoch,
            });
        }
        if epoch != entry.epoch {
            if first_seq != 0 && entry.epoch != NO_PRODUCER_EPOCH {
                return Err(StorageError::OutOfOrderSequence {
                    producer_id: pid,
                    reason: format!(
                        "invalid sequence number for new epoch {epoch} (current {}): {first_seq}, \
                         expected 0",
                        entry.epoch
                    ),
                });
            }
            return Ok(ProducerCheck::Append);
        }
        let last = entry.last_seq();
        if entry.epoch != NO_PRODUCER_EPOCH && !in_sequence(last, first_seq) {
            return Err(StorageError::OutOfOrderSequence {
                producer_id: pid,
                reason: format!(
                    "out of order sequence number in epoch {epoch}: {first_seq}, expected {}",
                    increment_sequence(last, 1)
                ),
            });
        }
        Ok(ProducerCheck::Append)
    }

    /// Records a batch as stored in the log (offsets assigned). Used for leader appends,
    /// follower appends and replay alike, so it never rejects: the log is the truth. A new
    /// epoch forgets the old epoch's batches.
    pub fn update(&mut self, header: &BatchHeader) {
        let pid = header.producer_id;
        if pid == NO_PRODUCER_ID || header.is_control() {
            return;
        }
        let entry = self.producers.entry(pid).or_insert_with(|| ProducerEntry {
            epoch: header.producer_epoch,
            batches: VecDeque::with_capacity(NUM_BATCHES_TO_RETAIN),
        });
        if entry.epoch != header.producer_epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        entry.batches.push_back(BatchMetadata {
            first_seq: header.base_sequence,
            last_seq: last_sequence(header),
            first_offset: header.base_offset,
            last_offset: header.last_offset(),
            timestamp: header.max_timestamp,
        });
        while entry.batches.len() > NUM_BATCHES_TO_RETAIN {
            entry.batches.pop_front();
        }
    }

    /// Forgets producers whose last batch lies below `log_start_offset` (retention deleted it),
    /// as Kafka's `evictUnretainedProducers`; such a producer is then accepted at any sequence.
    pub fn evict_below(&mut self, log_start_offset: i64) {
        self.producers
            .retain(|_, e| e.last_offset() >= log_start_offset);
    }

    /// Forgets every batch at or above `offset` (and producers left with none).
    pub fn truncate_from(&mut self, offset: i64) {
        self.producers.retain(|_, e| {
            while e.batches.back().is_some_and(|b| b.last_offset >= offset) {
                e.batches.pop_back();
            }
            !e.batches.is_empty()
        });
    }
}

/// The producer state as of `offset`: it reflects every batch below `offset` and none at or
/// above it. Stored as `producer.snapshot` in the partition directory.
///
/// ```text
/// sealed envelope (magic "GRPS", version 1; see `checkpoint`) around:
/// offset i64 | producers u32 | per producer (ascending id):
///   producer_id i64 | epoch i32 | batches u32 (1..=5) | per batch (oldest first):
///     first_seq i32 | last_seq i32 | first_offset i64 | last_offset i64 | timestamp i64
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerSnapshot {
    /// Offset the snapshot is valid at (the log end offset when it was taken).
    pub offset: i64,
    /// The state.
    pub state: ProducerStateManager,
}

impl ProducerSnapshot {
    /// Serializes into the sealed format.
    pub fn encode(&self) -> Vec<u8> {
        let producers = &self.state.producers;
        let mut body = Vec::with_capacity(12 + producers.len() * (16 + 5 * BATCH_ENTRY_LEN));
        body.extend_from_slice(&self.offset.to_be_bytes());
        body.extend_from_slice(&(producers.len() as u32).to_be_bytes());
        for (pid, e) in producers {
            body.extend_from_slice(&pid.to_be_bytes());
            body.extend_from_slice(&i32::from(e.epoch).to_be_bytes());
            body.extend_from_slice(&(e.batches.len() as u32).to_be_bytes());
            for b in &e.batches {
                body.extend_from_slice(&b.first_seq.to_be_bytes());
                body.extend_from_slice(&b.last_seq.to_be_bytes());
                body.extend_from_slice(&b.first_offset.to_be_bytes());
                body.extend_from_slice(&b.last_offset.to_be_bytes());
                body.extend_from_slice(&b.timestamp.to_be_bytes());
            }
        }
        seal(SNAPSHOT_MAGIC, SNAPSHOT_VERSION, &body)
    }

    /// Parses and checks the sealed format. Never panics: any damage is a
    /// [`StorageError::CorruptCheckpoint`] naming `path`.
    pub fn decode(path: &Path, bytes: &[u8]) -> Result<Self> {
        let body = unseal(path, bytes, SNAPSHOT_MAGIC, SNAPSHOT_VERSION)?;
        let mut r = Reader::new(path, body);
        let offset = r.i64()?;
        if offset < 0 {
            return Err(r.corrupt(format!("negative snapshot offset {offset}")));
        }
        let count = r.u32()? as usize;
        if count > r.remaining_entries(MIN_PRODUCER_LEN) {
            return Err(r.corrupt(format!("{count} producers do not fit in the body")));
        }
        let mut producers = BTreeMap::new();
        let mut previous = None;
        for _ in 0..count {
            let pid = r.i64()?;
            if pid < 0 || previous.is_some_and(|p| p >= pid) {
                return Err(r.corrupt(format!("producer id {pid} is negative or out of order")));
            }
            previous = Some(pid);
            let epoch = r.i32()?;
            let epoch = i16::try_from(epoch)
                .map_err(|_| r.corrupt(format!("producer epoch {epoch} out of range")))?;
            let n = r.u32()? as usize;
            if n == 0 || n > NUM_BATCHES_TO_RETAIN {
                return Err(r.corrupt(format!("producer {pid} has {n} batches")));
            }
            let mut batches = VecDeque::with_capacity(n);
            for _ in 0..n {
                let b = BatchMetadata {
                    first_seq: r.i32()?,
                    last_seq: r.i32()?,
                    first_offset: r.i64()?,
                    last_offset: r.i64()?,
                    timestamp: r.i64()?,
                };
                if b.first_offset < 0 || b.first_offset > b.last_offset || b.last_offset >= offset {
                    return Err(r.corrupt(format!(
                        "producer {pid}: batch offsets {}..={} invalid below snapshot offset \
                         {offset}",
                        b.first_offset, b.last_offset
                    )));
                }
                batches.push_back(b);
            }
            producers.insert(pid, ProducerEntry { epoch, batches });
        }
        r.finish()?;
        Ok(ProducerSnapshot {
            offset,
            state: ProducerStateManager { producers },
        })
    }

    /// Reads `dir/producer.snapshot`; `None` if there is none.
    pub fn read(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(SNAPSHOT_FILE);
        match read_optional(&path)? {
            Some(bytes) => Self::decode(&path, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Atomically replaces `dir/producer.snapshot`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        write_atomic(&dir.join(SNAPSHOT_FILE), &self.encode())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client batch header: `count` records from `seq`, at log offset `offset` once stored.
    fn hdr(pid: i64, epoch: i16, seq: i32, count: i32, offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset: offset,
            batch_length: 49,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 1,
            max_timestamp: 1 + offset,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            record_count: count,
        }
    }

    /// Checks then (if accepted) appends like the leader: offsets from `leo`.
    fn produce(
        s: &mut ProducerStateManager,
        leo: &mut i64,
        h: BatchHeader,
    ) -> Result<ProducerCheck> {
        let c = s.check(&h)?;
        if c == ProducerCheck::Append {
            s.update(&BatchHeader {
                base_offset: *leo,
                ..h
            });
            *leo += i64::from(h.record_count);
        }
        Ok(c)
    }

    /// The outcome written as the Kafka code the vectors in reliability.md use (45, 47); the
    /// broker's one `error_code` function sends exactly these for the two variants.
    fn code(r: Result<ProducerCheck>) -> i16 {
        match r {
            Ok(_) => 0,
            Err(StorageError::OutOfOrderSequence { .. }) => 45,
            Err(StorageError::InvalidProducerEpoch { .. }) => 47,
            Err(e) => panic!("unexpected error {e}"),
        }
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        assert_eq!(increment_sequence(5, 3), 8);
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
        assert!(in_sequence(i32::MAX, 0));
        assert!(in_sequence(-1, 0));
        assert!(!in_sequence(i32::MAX, i32::MIN));
        assert_eq!(last_sequence(&hdr(1, 0, i32::MAX - 1, 4, 0)), 1);
    }

    /// reliability.md D8: resends of the last 5 batches → original offsets, nothing appended;
    /// batch −6 → 45; gap → 45; old epoch → 47; new epoch with seq ≠ 0 → 45.
    #[test]
    fn d8_idempotent_window() {
        let mut s = ProducerStateManager::new();
        let mut leo = 100;
        let mut originals = Vec::new();
        for i in 0..8 {
            let h = hdr(7, 3, i * 2, 2, 0);
            assert_eq!(produce(&mut s, &mut leo, h).unwrap(), ProducerCheck::Append);
            originals.push(leo - 2);
        }
        assert_eq!(leo, 116);
        // The last five batches (seq 6..15) are duplicates with their original offsets.
        for i in 3..8 {
            match produce(&mut s, &mut leo, hdr(7, 3, i * 2, 2, 0)).unwrap() {
                ProducerCheck::Duplicate(b) => {
                    assert_eq!(b.first_offset, originals[i as usize]);
                    assert_eq!(b.last_offset, originals[i as usize] + 1);
                    assert_eq!((b.first_seq, b.last_seq), (i * 2, i * 2 + 1));
                }
                other => panic!("batch {i}: {other:?}"),
            }
        }
        assert_eq!(leo, 116, "duplicates append nothing");
        // Batch −6 fell out of the window.
        assert_eq!(code(produce(&mut s, &mut leo, hdr(7, 3, 4, 2, 0))), 45);
        // Same first sequence but a different range is not a duplicate.
        assert_eq!(code(produce(&mut s, &mut leo, hdr(7, 3, 14, 1, 0))), 45);
        // Gap.
        assert_eq!(code(produce(&mut s, &mut leo, hdr(7, 3, 17, 1, 0))), 45);
        // Old epoch, even with the next sequence.
        assert_eq!(code(produce(&mut s, &mut leo, hdr(7, 2, 16, 1, 0))), 47);
        // Old epoch resending a batch of the current window is not a duplicate either.
        assert_eq!(code(produce(&mut s, &mut leo, hdr(7, 2, 14, 2, 0))), 47);
        // New epoch must start at 0.
        assert_eq!(code(produce(&mut s, &mut leo, hdr(7, 4, 16, 1, 0))), 45);
        assert_eq!(leo, 116, "rejections append nothing");
        // In sequence still works, then a new epoch from 0 resets the window.
        assert_eq!(code(produce(&mut s, &mut leo, hdr(7, 3, 16, 1, 0))), 0);
        assert_eq!(code(produce(&mut s, &mut leo, hdr(7, 4, 0, 3, 0))), 0);
        assert_eq!(s.get(7).unwrap().epoch, 4);
        assert_eq!(s.get(7).unwrap().batches.len(), 1);
        assert_eq!(code(produce(&mut s, &mut leo, hdr(7, 3, 17, 1, 0))), 47);
        assert_eq!(code(produce(&mut s, &mut leo, hdr(7, 4, 3, 1, 0))), 0);
        assert_eq!(leo, 121);
    }

    /// B18: the same vectors through the error codes only, plus KIP-360's unknown producer.
    #[test]
    fn b18_unknown_producer_any_sequence_and_other_producers_independent() {
        let mut s = ProducerStateManager::new();
        let mut leo = 0;
        // Unknown producer: any first sequence is accepted (no UNKNOWN_PRODUCER_ID).
        assert_eq!(code(produce(&mut s, &mut leo, hdr(1, 0, 42, 1, 0))), 0);
        assert_eq!(code(produce(&mut s, &mut leo, hdr(1, 0, 44, 1, 0))), 45);
        assert_eq!(code(produce(&mut s, &mut leo, hdr(1, 0, 43, 1, 0))), 0);
        // Another producer is unaffected.
        assert_eq!(code(produce(&mut s, &mut leo, hdr(2, 5, 0, 1, 0))), 0);
        // Non-idempotent batches are never checked nor recorded.
        assert_eq!(code(produce(&mut s, &mut leo, hdr(-1, -1, -1, 3, 0))), 0);
        assert_eq!(code(produce(&mut s, &mut leo, hdr(-1, -1, -1, 3, 0))), 0);
        assert_eq!(s.len(), 2);
        assert_eq!(leo, 9);
    }

    #[test]
    fn sequence_wraps_from_max_to_zero() {
        let mut s = ProducerStateManager::new();
        let mut leo = 0;
        assert_eq!(
            code(produce(&mut s, &mut leo, hdr(1, 0, i32::MAX - 1, 2, 0))),
            0
        );
        assert_eq!(s.get(1).unwrap().last_seq(), i32::MAX);
        assert_eq!(code(produce(&mut s, &mut leo, hdr(1, 0, 0, 1, 0))), 0);
        // A batch spanning the wrap.
        let mut s = ProducerStateManager::new();
        assert_eq!(
            code(produce(&mut s, &mut leo, hdr(1, 0, i32::MAX - 1, 4, 0))),
            0
        );
        assert_eq!(s.get(1).unwrap().last_seq(), 1);
        assert!(matches!(
            produce(&mut s, &mut leo, hdr(1, 0, i32::MAX - 1, 4, 0)),
            Ok(ProducerCheck::Duplicate(_))
        ));
        assert_eq!(code(produce(&mut s, &mut leo, hdr(1, 0, 2, 1, 0))), 0);
    }

    #[test]
    fn truncation_and_eviction() {
        let mut s = ProducerStateManager::new();
        let mut leo = 0;
        for i in 0..4 {
            produce(&mut s, &mut leo, hdr(1, 0, i, 1, 0)).unwrap();
        }
        produce(&mut s, &mut leo, hdr(2, 0, 0, 1, 0)).unwrap();
        // Offsets 0..=3 are producer 1, 4 is producer 2.
        s.truncate_from(2);
        assert_eq!(s.get(1).unwrap().last_seq(), 1);
        assert!(s.get(2).is_none());
        s.evict_below(2);
        assert!(s.is_empty());
    }

    #[test]
    fn replay_rebuilds_the_same_state() {
        let mut s = ProducerStateManager::new();
        let mut leo = 0;
        let mut log = Vec::new();
        for (pid, epoch, seq, n) in [(1, 0, 0, 2), (2, 0, 0, 1), (1, 0, 2, 3), (1, 1, 0, 1)] {
            let h = hdr(pid, epoch, seq, n, 0);
            produce(&mut s, &mut leo, h).unwrap();
            log.push(BatchHeader {
                base_offset: leo - i64::from(n),
                ..h
            });
        }
        let mut rebuilt = ProducerStateManager::new();
        for h in &log {
            rebuilt.update(h);
        }
        assert_eq!(rebuilt, s);
    }

    #[test]
    fn snapshot_round_trips_and_detects_damage() {
        let mut s = ProducerStateManager::new();
        let mut leo = 0;
        for i in 0..7i32 {
            produce(&mut s, &mut leo, hdr(i64::from(i % 3), 0, i / 3, 1, 0)).unwrap();
        }
        let snap = ProducerSnapshot {
            offset: leo,
            state: s,
        };
        let bytes = snap.encode();
        let p = Path::new("producer.snapshot");
        assert_eq!(ProducerSnapshot::decode(p, &bytes).unwrap(), snap);
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            assert!(ProducerSnapshot::decode(p, &b).is_err(), "flip at {i}");
        }
        for len in 0..bytes.len() {
            assert!(ProducerSnapshot::decode(p, &bytes[..len]).is_err());
        }
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(ProducerSnapshot::read(dir.path()).unwrap(), None);
        snap.write(dir.path()).unwrap();
        assert_eq!(ProducerSnapshot::read(dir.path()).unwrap(), Some(snap));
    }

    #[test]
    fn snapshot_rejects_sealed_but_inconsistent_bodies() {
        let p = Path::new("x");
        let body = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = Vec::new();
            b.extend_from_slice(&10i64.to_be_bytes());
            b.extend_from_slice(&1u32.to_be_bytes());
            b.extend_from_slice(&5i64.to_be_bytes());
            b.extend_from_slice(&0i32.to_be_bytes());
            b.extend_from_slice(&1u32.to_be_bytes());
            for v in [0i32, 0] {
                b.extend_from_slice(&v.to_be_bytes());
            }
            for v in [3i64, 3, 0] {
                b.extend_from_slice(&v.to_be_bytes());
            }
            f(&mut b);
            seal(SNAPSHOT_MAGIC, SNAPSHOT_VERSION, &b)
        };
        ProducerSnapshot::decode(p, &body(&|_| {})).unwrap();
        // Batch at or beyond the snapshot offset.
        let bad = body(&|b| b[0..8].copy_from_slice(&3i64.to_be_bytes()));
        assert!(ProducerSnapshot::decode(p, &bad).is_err());
        // Huge producer count.
        let bad = body(&|b| b[8..12].copy_from_slice(&u32::MAX.to_be_bytes()));
        assert!(ProducerSnapshot::decode(p, &bad).is_err());
        // Epoch outside i16.
        let bad = body(&|b| b[20..24].copy_from_slice(&70000i32.to_be_bytes()));
        assert!(ProducerSnapshot::decode(p, &bad).is_err());
        // Zero batches.
        let bad = body(&|b| b[24..28].copy_from_slice(&0u32.to_be_bytes()));
        assert!(ProducerSnapshot::decode(p, &bad).is_err());
        // Trailing bytes.
        let bad = body(&|b| b.push(0));
        assert!(ProducerSnapshot::decode(p, &bad).is_err());
    }
}
