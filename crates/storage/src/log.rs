//! [`PartitionLog`]: one partition's segments, offsets, epochs and durability state.

use std::collections::BTreeMap;
use std::fs;
use std::io::IoSlice;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use parking_lot::Mutex;

use crate::batch::{self, BatchHeader, BatchIter, HEADER_LEN, ValidationMode};
use crate::checkpoint::{
    CLEAN_SHUTDOWN_FILE, CleanShutdown, EpochEntry, PartitionCheckpoint, TMP_SUFFIX, sync_dir,
};
use crate::config::{LogConfig, TimestampType};
use crate::epoch::EpochCache;
use crate::error::{IoContext, Result, StorageError};
use crate::producer_state::{ProducerCheck, ProducerSnapshot, ProducerStateManager};
use crate::segment::{Segment, parse_segment_name, scan_file};

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset assigned to the first record.
    pub base_offset: i64,
    /// Offset of the last record.
    pub last_offset: i64,
    /// The broker time stamped into the batch for LogAppendTime topics, -1 for CreateTime.
    pub log_append_time_ms: i64,
    /// Log end offset after the append.
    pub log_end_offset: i64,
    /// Max timestamp of the appended batch(es) as stored.
    pub max_timestamp: i64,
    /// Number of records appended.
    pub record_count: u32,
}

/// Whole batches read from the log plus the offsets a Fetch response reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    /// Zero or more whole batches, exactly as stored.
    pub records: Bytes,
    /// Log start offset at the time of the read.
    pub log_start_offset: i64,
    /// Log end offset at the time of the read.
    pub log_end_offset: i64,
    /// High watermark at the time of the read.
    pub high_watermark: i64,
}

/// A record found by a timestamp lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampOffset {
    /// The record's timestamp.
    pub timestamp: i64,
    /// The record's exact offset.
    pub offset: i64,
}

/// What a retention pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionOutcome {
    /// Number of segments deleted.
    pub segments_deleted: usize,
    /// Log start offset afterwards.
    pub log_start_offset: i64,
}

/// Summary of one segment, for tools and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Base offset (file name).
    pub base_offset: i64,
    /// Offset after the last batch.
    pub next_offset: i64,
    /// Bytes in the file.
    pub size: u64,
    /// Largest batch max timestamp, -1 if none.
    pub max_timestamp: i64,
    /// Number of offset-index entries.
    pub offset_index_entries: usize,
    /// Number of time-index entries.
    pub time_index_entries: usize,
}

/// What [`PartitionLog::open`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecoveryInfo {
    /// The clean-shutdown marker was present and matched, so no scan was needed.
    pub clean: bool,
    /// Bytes cut off the active segment's tail.
    pub truncated_bytes: u64,
}

/// One partition's log. Not internally synchronized: wrap it in a lock (see
/// [`crate::SharedLog`]). Reads take `&self` and use positional I/O.
#[derive(Debug)]
pub struct PartitionLog {
    dir: PathBuf,
    config: LogConfig,
    /// Keyed by base offset; the last one is the active segment. Never empty.
    segments: BTreeMap<i64, Segment>,
    log_start_offset: i64,
    high_watermark: i64,
    epochs: EpochCache,
    unflushed_records: u64,
    first_unflushed_ms: Option<i64>,
    /// Everything below this offset has been fsynced.
    flushed_offset: i64,
    /// Writes of the checkpoint file, shared with the background pass that writes it outside
    /// the log's lock ([`checkpoint_if_changed`]).
    checkpoint_file: Arc<CheckpointFile>,
    recovery: RecoveryInfo,
    /// A write failed and could not be undone; only reopening (recovery) helps.
    offline: bool,
    /// Closed or deleted; the clean-shutdown marker (if any) describes the files as they are.
    closed: bool,
    /// Idempotent-producer state of every batch in the log (see [`crate::producer_state`]).
    producers: ProducerStateManager,
}

fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl PartitionLog {
    /// Opens (or creates) the log in `dir`, recovering the active segment if the last shutdown was
    /// not clean: its tail is CRC-checked and cut at the first torn or corrupt batch, and its
    /// indexes are rebuilt.
    pub fn open(dir: impl Into<PathBuf>, config: LogConfig, now_ms: i64) -> Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir).ctx("create dir", &dir)?;
        let mut bases = Vec::new();
        for entry in fs::read_dir(&dir).ctx("list dir", &dir)? {
            let entry = entry.ctx("list dir", &dir)?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(TMP_SUFFIX) {
                // An atomic replace that did not finish; the target still holds the old version.
                let p = entry.path();
                fs::remove_file(&p).ctx("delete temp file", &p)?;
            } else if let Some(base) = parse_segment_name(&name) {
                bases.push(base);
            }
        }
        bases.sort_unstable();
        let checkpoint_read = PartitionCheckpoint::read(&dir)?;
        let checkpoint = checkpoint_read.clone().unwrap_or_default();
        let checkpoint_read = checkpoint_read.unwrap_or(PartitionCheckpoint {
            high_watermark: -1,
            ..PartitionCheckpoint::default()
        });
        let marker = match CleanShutdown::read(&dir) {
            Ok(m) => m,
            Err(e @ StorageError::CorruptCheckpoint { .. }) => {
                tracing::warn!(error = %e, "ignoring damaged clean-shutdown marker");
                None
            }
            Err(e) => return Err(e),
        };
        let marker_path = dir.join(CLEAN_SHUTDOWN_FILE);
        if marker_path.exists() {
            // Removed (durably) before any write, so a crash from here on forces a scan.
            fs::remove_file(&marker_path).ctx("delete marker", &marker_path)?;
            sync_dir(&dir)?;
        }

        let interval = config.index_interval_bytes;
        let mut segments = BTreeMap::new();
        let mut recovery = RecoveryInfo::default();
        if bases.is_empty() {
            let start = checkpoint.log_start_offset.max(0);
            segments.insert(start, Segment::create(&dir, start, now_ms)?);
            sync_dir(&dir)?;
        }
        for (i, &base) in bases.iter().enumerate() {
            let active = i + 1 == bases.len();
            let seg = if active {
                let len = fs::metadata(crate::segment::segment_path(&dir, base))
                    .ctx("stat segment", &dir)?
                    .len();
                let clean =
                    marker.is_some_and(|m| m.active_base_offset == base && m.active_size == len);
                let (seg, cut) = Segment::open(
                    &dir,
                    base,
                    now_ms,
                    interval,
                    clean,
                    Some(&checkpoint.epochs),
                )?;
                recovery = RecoveryInfo {
                    clean: clean && cut == 0,
                    truncated_bytes: cut,
                };
                seg
            } else {
                Segment::open(&dir, base, now_ms, interval, true, None)?.0
            };
            segments.insert(base, seg);
        }

        let mut log = PartitionLog {
            dir,
            config,
            segments,
            log_start_offset: 0,
            high_watermark: 0,
            epochs: EpochCache::new(checkpoint.epochs),
            unflushed_records: 0,
            first_unflushed_ms: None,
            flushed_offset: 0,
            checkpoint_file: Arc::new(CheckpointFile::new()),
            recovery,
            offline: false,
            closed: false,
            producers: ProducerStateManager::new(),
        };
        if !log.recovery.clean {
            // Recovered bytes may so far live only in the page cache.
            log.active().flush()?;
        }
        let leo = log.log_end_offset();
        log.flushed_offset = leo;
        log.log_start_offset = checkpoint.log_start_offset.max(log.first().base_offset());
        if log.log_start_offset > leo {
            let start = log.log_start_offset;
            log.truncate_fully_and_start_at(start, now_ms)?;
        }
        log.epochs.truncate_from_end(log.log_end_offset());
        log.epochs.truncate_from_start(log.log_start_offset);
        log.high_watermark = checkpoint
            .high_watermark
            .clamp(log.log_start_offset, log.log_end_offset());
        log.delete_segments_below_log_start()?;
        let current = PartitionCheckpoint {
            high_watermark: log.high_watermark,
            log_start_offset: log.log_start_offset,
            epochs: log.epochs.entries().to_vec(),
        };
        if current != checkpoint_read {
            log.write_checkpoint()?;
        } else {
            log.checkpoint_file
                .written_high_watermark
                .store(log.high_watermark, Ordering::Relaxed);
        }
        log.load_producer_state()?;
        Ok(log)
    }

    fn active(&self) -> &Segment {
        // Invariant: `segments` is never empty.
        self.segments
            .values()
            .next_back()
            .unwrap_or_else(|| unreachable!("a partition log always has an active segment"))
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .values_mut()
            .next_back()
            .unwrap_or_else(|| unreachable!("a partition log always has an active segment"))
    }

    fn first(&self) -> &Segment {
        self.segments
            .values()
            .next()
            .unwrap_or_else(|| unreachable!("a partition log always has an active segment"))
    }

    fn check_writable(&self) -> Result<()> {
        if self.closed {
            return Err(StorageError::Closed {
                path: self.dir.clone(),
            });
        }
        if self.offline {
            return Err(StorageError::LogOffline {
                path: self.dir.clone(),
            });
        }
        Ok(())
    }

    /// Appends exactly one producer batch, assigning offsets from the log end offset.
    ///
    /// Validates everything but never decompresses (see [`crate::batch`]). Only the base offset and
    /// the leader epoch are rewritten; for LogAppendTime topics also the timestamp-type bit and the
    /// max timestamp, with the CRC recomputed incrementally over the new header and the untouched
    /// records. The write is one vectored write of the rewritten header and the producer's bytes.
    pub fn append_as_leader(
        &mut self,
        records: Bytes,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo> {
        self.check_writable()?;
        if records.len() > self.config.max_message_bytes as usize {
            return Err(StorageError::MessageTooLarge {
                size: records.len(),
                max: self.config.max_message_bytes,
            });
        }
        if records.len() as u64 > self.config.segment_bytes {
            return Err(StorageError::RecordListTooLarge {
                size: records.len(),
                max: self.config.segment_bytes,
            });
        }
        let parsed = BatchHeader::parse(&records)?;
        if parsed.total_size() < records.len() {
            return Err(StorageError::invalid(
                "a produce request may carry exactly one record batch per partition",
            ));
        }
        let h = batch::validate(&records, ValidationMode::Client)?;
        if h.base_offset != 0 {
            return Err(StorageError::invalid(format!(
                "the base offset of a client record batch must be 0, got {}",
                h.base_offset
            )));
        }
        if let Some(latest) = self.epochs.latest()
            && leader_epoch < latest
        {
            return Err(StorageError::InvalidArgument {
                reason: format!("leader epoch {leader_epoch} is below the latest epoch {latest}"),
            });
        }
        let base = self.log_end_offset();
        let append_time = self.config.message_timestamp_type == TimestampType::LogAppendTime;
        let max_timestamp = if append_time { now_ms } else { h.max_timestamp };
        let last = base + i64::from(h.last_offset_delta);
        self.maybe_roll(records.len() as u64, max_timestamp, last, now_ms)?;
        if self.epochs.assign(leader_epoch, base) {
            self.write_checkpoint()?;
        }

        let mut hdr = [0u8; HEADER_LEN];
        hdr.copy_from_slice(&records[..HEADER_LEN]);
        hdr[0..8].copy_from_slice(&base.to_be_bytes());
        hdr[12..16].copy_from_slice(&leader_epoch.to_be_bytes());
        let mut stored = BatchHeader {
            base_offset: base,
            partition_leader_epoch: leader_epoch,
            ..h
        };
        if append_time {
            stored.attributes |= 0x08;
            stored.max_timestamp = now_ms;
            hdr[21..23].copy_from_slice(&stored.attributes.to_be_bytes());
            hdr[35..43].copy_from_slice(&now_ms.to_be_bytes());
            let crc = batch::crc32c_parts(&[&hdr[21..], &records[HEADER_LEN..]]);
            hdr[17..21].copy_from_slice(&crc.to_be_bytes());
            stored.crc = crc;
        }
        let interval = self.config.index_interval_bytes;
        let mut bufs = [IoSlice::new(&hdr), IoSlice::new(&records[HEADER_LEN..])];
        self.write_active(&mut bufs, &[stored], interval)?;
        self.producers.update(&stored);
        self.after_append(h.record_count as u64, now_ms)?;
        Ok(AppendInfo {
            base_offset: base,
            last_offset: last,
            log_append_time_ms: if append_time { now_ms } else { -1 },
            log_end_offset: self.log_end_offset(),
            max_timestamp,
            record_count: h.record_count as u32,
        })
    }

    /// Appends batches copied from the leader, offsets already assigned. The first base offset
    /// must equal the log end offset and the batches must be contiguous; every batch is
    /// CRC-checked; rising epochs are recorded in the epoch cache before the data is written.
    pub fn append_as_follower(&mut self, records: Bytes) -> Result<AppendInfo> {
        self.check_writable()?;
        let leo = self.log_end_offset();
        if records.len() as u64 > self.config.segment_bytes {
            return Err(StorageError::RecordListTooLarge {
                size: records.len(),
                max: self.config.segment_bytes,
            });
        }
        let mut headers = Vec::new();
        let mut expected = leo;
        let mut latest_epoch = self.epochs.latest();
        let mut max_timestamp = -1;
        let mut count: u64 = 0;
        for item in BatchIter::new(records.clone()) {
            let (_, bytes) = item?;
            let h = batch::validate(&bytes, ValidationMode::Replica)?;
            if h.base_offset != expected {
                return Err(StorageError::NonContiguousAppend {
                    expected,
                    actual: h.base_offset,
                });
            }
            // Recovery checks stored epochs against the cache, so the cache must describe every
            // batch; a leader's log never goes back in epochs.
            if latest_epoch.is_some_and(|l| h.partition_leader_epoch < l) {
                return Err(StorageError::invalid(format!(
                    "batch at offset {} has leader epoch {} below the latest epoch {:?}",
                    h.base_offset, h.partition_leader_epoch, latest_epoch
                )));
            }
            if h.partition_leader_epoch >= 0 {
                latest_epoch = Some(h.partition_leader_epoch);
            }
            expected = h.next_offset();
            max_timestamp = max_timestamp.max(h.max_timestamp);
            count += h.record_count as u64;
            headers.push(h);
        }
        let Some(last) = headers.last().map(BatchHeader::last_offset) else {
            return Ok(AppendInfo {
                base_offset: leo,
                last_offset: leo - 1,
                log_append_time_ms: -1,
                log_end_offset: leo,
                max_timestamp: -1,
                record_count: 0,
            });
        };
        let now_ms = wall_clock_ms();
        self.maybe_roll(records.len() as u64, max_timestamp, last, now_ms)?;
        let mut changed = false;
        for h in &headers {
            changed |= self.epochs.assign(h.partition_leader_epoch, h.base_offset);
        }
        if changed {
            self.write_checkpoint()?;
        }
        let interval = self.config.index_interval_bytes;
        self.write_active(&mut [IoSlice::new(&records)], &headers, interval)?;
        for h in &headers {
            self.producers.update(h);
        }
        self.after_append(count, now_ms)?;
        Ok(AppendInfo {
            base_offset: leo,
            last_offset: last,
            log_append_time_ms: -1,
            log_end_offset: self.log_end_offset(),
            max_timestamp,
            record_count: u32::try_from(count).unwrap_or(u32::MAX),
        })
    }

    fn write_active(
        &mut self,
        bufs: &mut [IoSlice<'_>],
        headers: &[BatchHeader],
        interval: u32,
    ) -> Result<()> {
        let active = self.active_mut();
        let result = active.append(bufs, headers, interval);
        if active.broken {
            self.offline = true;
        }
        result
    }

    fn after_append(&mut self, records: u64, now_ms: i64) -> Result<()> {
        self.unflushed_records = self.unflushed_records.saturating_add(records);
        self.first_unflushed_ms.get_or_insert(now_ms);
        if self.unflushed_records >= self.config.flush_messages {
            self.flush()?;
        }
        Ok(())
    }

    /// Rolls the active segment when the incoming bytes would overflow `segment.bytes` or the
    /// index fields, or when `segment.ms` has passed since the first batch's max timestamp.
    fn maybe_roll(
        &mut self,
        bytes: u64,
        max_timestamp: i64,
        last_offset: i64,
        now_ms: i64,
    ) -> Result<()> {
        let cfg = &self.config;
        let active = self.active();
        if active.size() == 0 {
            return Ok(());
        }
        let by_size = active.size().saturating_add(bytes) > cfg.segment_bytes;
        let waited = if active.meta.first_batch_timestamp >= 0 {
            max_timestamp.saturating_sub(active.meta.first_batch_timestamp)
        } else {
            now_ms.saturating_sub(active.created_ms)
        };
        let by_time = waited > cfg.segment_ms;
        if by_size || by_time || !active.fits(bytes, last_offset) {
            self.roll(now_ms)?;
        }
        Ok(())
    }

    /// Seals the active segment (fsync, index files) and starts a new one at the log end offset.
    fn roll(&mut self, now_ms: i64) -> Result<()> {
        let leo = self.log_end_offset();
        self.active().seal()?;
        // The snapshot bounds the replay at the next open to the new active segment.
        self.write_producer_snapshot()?;
        self.flushed_offset = leo;
        self.unflushed_records = 0;
        self.first_unflushed_ms = None;
        let seg = Segment::create(&self.dir, leo, now_ms)?;
        self.segments.insert(leo, seg);
        sync_dir(&self.dir)?;
        tracing::debug!(dir = %self.dir.display(), base_offset = leo, "rolled segment");
        Ok(())
    }

    /// Whole batches starting with the one containing `offset`, bounded by `max_bytes` (except
    /// the first batch with `min_one_batch`, KIP-74) and never including a batch whose last
    /// offset is `>= max_offset`.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_batch: bool,
    ) -> Result<ReadResult> {
        let leo = self.log_end_offset();
        if offset < self.log_start_offset || offset > leo {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: leo,
            });
        }
        let mut result = ReadResult {
            records: Bytes::new(),
            log_start_offset: self.log_start_offset,
            log_end_offset: leo,
            high_watermark: self.high_watermark,
        };
        let from = self
            .segments
            .range(..=offset)
            .next_back()
            .map_or(self.first().base_offset(), |(&b, _)| b);
        for seg in self.segments.range(from..).map(|(_, s)| s) {
            if let Some(records) = seg.read(offset, max_bytes, max_offset, min_one_batch)? {
                result.records = records;
                break;
            }
        }
        Ok(result)
    }

    /// Earliest record with timestamp `>= ts` at or after the log start (ListOffsets by time).
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<TimestampOffset>> {
        for seg in self.segments.values() {
            if seg.next_offset() <= self.log_start_offset || seg.meta.max_timestamp < ts {
                continue;
            }
            if let Some((timestamp, offset)) = seg.find_timestamp(ts, self.log_start_offset)? {
                return Ok(Some(TimestampOffset { timestamp, offset }));
            }
        }
        Ok(None)
    }

    /// The earliest record with the largest timestamp (ListOffsets MAX_TIMESTAMP, KIP-734).
    pub fn max_timestamp_offset(&self) -> Result<Option<TimestampOffset>> {
        let mut best: Option<&Segment> = None;
        for seg in self.segments.values() {
            if seg.next_offset() <= self.log_start_offset || seg.meta.offset_of_max_timestamp < 0 {
                continue;
            }
            if best.is_none_or(|b| seg.meta.max_timestamp > b.meta.max_timestamp) {
                best = Some(seg);
            }
        }
        let Some(seg) = best else { return Ok(None) };
        Ok(seg
            .max_timestamp_record()?
            .map(|(timestamp, offset)| TimestampOffset { timestamp, offset }))
    }

    /// First offset still readable.
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    /// Offset the next appended record gets.
    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset()
    }

    /// The high watermark (committed offset bound).
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// Sets the high watermark, clamped into `[log_start, log_end]`. Persisted by the next
    /// checkpoint.
    pub fn set_high_watermark(&mut self, hw: i64) {
        self.high_watermark = hw.clamp(self.log_start_offset, self.log_end_offset());
    }

    /// Everything below this offset has been fsynced (the recovery point).
    pub fn flushed_offset(&self) -> i64 {
        self.flushed_offset
    }

    /// The latest leader epoch in the epoch cache.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.epochs.latest()
    }

    /// The leader-epoch cache, ascending.
    pub fn epoch_entries(&self) -> Vec<EpochEntry> {
        self.epochs.entries().to_vec()
    }

    /// A new leader's term (KIP-101): records that `epoch` starts at the log end offset, before
    /// anything is written in it, so followers asking for an older epoch learn where it ended.
    /// Persisted at once. Returns whether the cache changed (an equal or older epoch is ignored).
    pub fn assign_epoch_at_end(&mut self, epoch: i32) -> Result<bool> {
        self.check_writable()?;
        let leo = self.log_end_offset();
        if !self.epochs.assign(epoch, leo) {
            return Ok(false);
        }
        self.write_checkpoint()?;
        Ok(true)
    }

    /// Drops epoch-cache entries that start at or after the log end: terms in which this replica
    /// led but wrote nothing. A follower's cache must describe only the batches it holds, or the
    /// leader's older batches would look like they go back in epochs. Persisted when changed.
    pub fn drop_epochs_past_end(&mut self) -> Result<bool> {
        self.check_writable()?;
        let leo = self.log_end_offset();
        if !self.epochs.truncate_from_end(leo) {
            return Ok(false);
        }
        self.write_checkpoint()?;
        Ok(true)
    }

    /// KIP-101/279 OffsetForLeaderEpoch: the largest epoch `<= epoch` and its end offset, or
    /// `None` if unknown.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        self.epochs.end_offset_for(epoch, self.log_end_offset())
    }

    /// Removes every batch whose last offset is `>= offset` (replica reconciliation) and the
    /// epoch-cache entries starting at or after the new log end. A batch spanning `offset` is
    /// removed whole, so the log end may end up below `offset`.
    pub fn truncate_to(&mut self, offset: i64) -> Result<()> {
        self.check_writable()?;
        if offset >= self.log_end_offset() {
            return Ok(());
        }
        if offset <= self.first().base_offset() {
            return self.truncate_fully_and_start_at(offset.max(0), wall_clock_ms());
        }
        let doomed: Vec<i64> = self
            .segments
            .range(offset..)
            .map(|(&b, _)| b)
            .rev()
            .collect();
        for base in doomed {
            if let Some(seg) = self.segments.remove(&base) {
                seg.delete_files()?;
            }
        }
        let interval = self.config.index_interval_bytes;
        let active = self.active_mut();
        active.truncate_to(offset, interval)?;
        // Truncated bytes must not come back after a power loss and diverge from the leader.
        active.flush()?;
        sync_dir(&self.dir)?;
        let leo = self.log_end_offset();
        self.epochs.truncate_from_end(leo);
        self.high_watermark = self.high_watermark.min(leo);
        self.log_start_offset = self.log_start_offset.min(leo);
        self.flushed_offset = self.flushed_offset.min(leo);
        self.write_checkpoint()?;
        // Producer state must not remember truncated batches, and the batches that fell out of
        // the 5-batch window may matter again: rebuild from the snapshot (or the log start) and
        // re-snapshot at the new end.
        self.load_producer_state()?;
        self.write_producer_snapshot()
    }

    /// A follower that fell behind the leader's log start (retention deleted what it needs):
    /// deletes every segment and restarts the log, empty, at `offset` (Kafka's
    /// `truncateFullyAndStartAt`). The epoch cache and producer state start over with it.
    pub fn reset_to(&mut self, offset: i64) -> Result<()> {
        self.check_writable()?;
        self.truncate_fully_and_start_at(offset.max(0), wall_clock_ms())
    }

    /// Deletes every segment and starts an empty log at `offset`.
    fn truncate_fully_and_start_at(&mut self, offset: i64, now_ms: i64) -> Result<()> {
        let all: Vec<i64> = self.segments.keys().rev().copied().collect();
        for base in all {
            if let Some(seg) = self.segments.remove(&base) {
                seg.delete_files()?;
            }
        }
        self.segments
            .insert(offset, Segment::create(&self.dir, offset, now_ms)?);
        sync_dir(&self.dir)?;
        self.log_start_offset = offset;
        self.high_watermark = offset;
        self.flushed_offset = offset;
        self.unflushed_records = 0;
        self.first_unflushed_ms = None;
        self.epochs = EpochCache::default();
        self.producers = ProducerStateManager::new();
        self.write_checkpoint()?;
        self.write_producer_snapshot()
    }

    /// The idempotent-producer state of the log.
    pub fn producer_state(&self) -> &ProducerStateManager {
        &self.producers
    }

    /// Checks a client batch header against the producer state (see
    /// [`ProducerStateManager::check`]). The leader calls it under the partition's write lock
    /// right before [`PartitionLog::append_as_leader`], which records the batch; a
    /// [`ProducerCheck::Duplicate`] must be answered with its original offsets and not appended.
    pub fn check_producer(&self, header: &BatchHeader) -> Result<ProducerCheck> {
        self.producers.check(header)
    }

    /// Atomically writes the producer-state snapshot at the log end offset.
    pub fn write_producer_snapshot(&mut self) -> Result<()> {
        ProducerSnapshot {
            offset: self.log_end_offset(),
            state: self.producers.clone(),
        }
        .write(&self.dir)
    }

    /// Rebuilds the producer state: the snapshot if it lies within the log (else nothing), then
    /// the headers of every batch from the snapshot offset to the log end (no record data is
    /// read, nothing is decompressed), then evicts producers below the log start offset. A
    /// damaged snapshot is logged and ignored: the log itself is the truth.
    fn load_producer_state(&mut self) -> Result<()> {
        let leo = self.log_end_offset();
        let first = self.first().base_offset();
        let (mut state, from) = match ProducerSnapshot::read(&self.dir) {
            Ok(Some(s)) if s.offset <= leo && s.offset >= first => (s.state, s.offset),
            Ok(Some(s)) => {
                tracing::debug!(
                    dir = %self.dir.display(),
                    snapshot = s.offset,
                    first,
                    leo,
                    "producer snapshot outside the log; rebuilding from the log start"
                );
                (ProducerStateManager::new(), first)
            }
            Ok(None) => (ProducerStateManager::new(), first),
            Err(e @ StorageError::CorruptCheckpoint { .. }) => {
                tracing::warn!(error = %e, "ignoring damaged producer snapshot; rebuilding");
                (ProducerStateManager::new(), first)
            }
            Err(e) => return Err(e),
        };
        for seg in self.segments.values() {
            if seg.next_offset() <= from {
                continue;
            }
            seg.for_each_header_from(from, |h| {
                if h.base_offset >= from {
                    state.update(h);
                }
            })?;
        }
        state.evict_below(self.log_start_offset);
        self.producers = state;
        Ok(())
    }

    /// Moves the log start offset forward (DeleteRecords). It may not pass the high watermark.
    /// Segments wholly below it are deleted.
    pub fn advance_log_start_offset(&mut self, offset: i64) -> Result<()> {
        if offset <= self.log_start_offset {
            return Ok(());
        }
        if offset > self.high_watermark {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: self.log_end_offset(),
            });
        }
        self.log_start_offset = offset;
        self.epochs.truncate_from_start(offset);
        self.producers.evict_below(offset);
        // Checkpoint first: a crash then leaves extra segments, never a log start pointing at
        // deleted data.
        self.write_checkpoint()?;
        self.delete_segments_below_log_start()?;
        Ok(())
    }

    fn delete_segments_below_log_start(&mut self) -> Result<usize> {
        let mut deleted = 0;
        loop {
            let mut it = self.segments.keys();
            let (Some(&first), Some(&second)) = (it.next(), it.next()) else {
                break;
            };
            if second > self.log_start_offset {
                break;
            }
            if let Some(seg) = self.segments.remove(&first) {
                seg.delete_files()?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    /// Deletes sealed segments breaching `retention.ms` (by their newest timestamp) or
    /// `retention.bytes`, oldest first, never the active segment and only segments wholly below
    /// the high watermark; moves the log start offset accordingly.
    pub fn apply_retention(&mut self, now_ms: i64) -> Result<RetentionOutcome> {
        let cfg = &self.config;
        let sealed: Vec<&Segment> = {
            let n = self.segments.len() - 1;
            self.segments.values().take(n).collect()
        };
        let mut k = 0;
        if cfg.retention_ms >= 0 {
            while let Some(seg) = sealed.get(k) {
                if seg.next_offset() > self.high_watermark {
                    break;
                }
                let newest = if seg.meta.max_timestamp >= 0 {
                    seg.meta.max_timestamp
                } else {
                    modified_ms(seg.path()).unwrap_or(now_ms)
                };
                if now_ms.saturating_sub(newest) <= cfg.retention_ms {
                    break;
                }
                k += 1;
            }
        }
        if cfg.retention_bytes >= 0 {
            let mut excess = i128::from(self.size_bytes())
                - sealed[..k]
                    .iter()
                    .map(|s| i128::from(s.size()))
                    .sum::<i128>()
                - i128::from(cfg.retention_bytes);
            while let Some(seg) = sealed.get(k) {
                if seg.next_offset() > self.high_watermark || excess < i128::from(seg.size()) {
                    break;
                }
                excess -= i128::from(seg.size());
                k += 1;
            }
        }
        let mut deleted = 0;
        if k > 0 {
            let new_start = self
                .segments
                .keys()
                .nth(k)
                .copied()
                .unwrap_or_else(|| self.log_end_offset());
            if new_start > self.log_start_offset {
                self.log_start_offset = new_start;
                self.epochs.truncate_from_start(new_start);
                self.producers.evict_below(new_start);
            }
            self.write_checkpoint()?;
            deleted = self.delete_segments_below_log_start()?;
        }
        Ok(RetentionOutcome {
            segments_deleted: deleted,
            log_start_offset: self.log_start_offset,
        })
    }

    /// fsyncs the active segment (sealed segments were fsynced at roll).
    pub fn flush(&mut self) -> Result<()> {
        self.active().flush()?;
        self.flushed_offset = self.log_end_offset();
        self.unflushed_records = 0;
        self.first_unflushed_ms = None;
        Ok(())
    }

    /// Flushes if the oldest unflushed append is at least `flush.ms` old.
    pub fn maybe_flush(&mut self, now_ms: i64) -> Result<()> {
        if let Some(t) = self.first_unflushed_ms
            && now_ms.saturating_sub(t) >= self.config.flush_ms
        {
            self.flush()?;
        }
        Ok(())
    }

    /// Atomically writes the checkpoint (high watermark, log start, epoch cache).
    pub fn write_checkpoint(&mut self) -> Result<()> {
        let (seq, checkpoint) = self.checkpoint_snapshot();
        self.checkpoint_file.write(&self.dir, seq, &checkpoint)
    }

    /// The checkpoint's current contents and their place in the order of snapshots. Taken
    /// under the log's lock (read or write), so a later sequence number never holds older state.
    fn checkpoint_snapshot(&self) -> (u64, PartitionCheckpoint) {
        let seq = self
            .checkpoint_file
            .next_seq
            .fetch_add(1, Ordering::Relaxed);
        let checkpoint = PartitionCheckpoint {
            high_watermark: self.high_watermark,
            log_start_offset: self.log_start_offset,
            epochs: self.epochs.entries().to_vec(),
        };
        (seq, checkpoint)
    }

    /// The checkpoint's current contents if the high watermark moved since the file was last
    /// written; the caller writes it with [`write_checkpoint_snapshot`] after releasing the
    /// lock.
    pub(crate) fn checkpoint_if_changed(&self) -> Option<CheckpointSnapshot> {
        let written = self
            .checkpoint_file
            .written_high_watermark
            .load(Ordering::Relaxed);
        if self.closed || self.high_watermark == written {
            return None;
        }
        let (seq, checkpoint) = self.checkpoint_snapshot();
        Some(CheckpointSnapshot {
            dir: self.dir.clone(),
            file: Arc::clone(&self.checkpoint_file),
            seq,
            checkpoint,
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Replaces the configuration; takes effect at the next append or retention pass.
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    /// Total bytes of all segment files.
    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(Segment::size).sum()
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What the last open found (clean shutdown, bytes truncated).
    pub fn recovery_info(&self) -> RecoveryInfo {
        self.recovery
    }

    /// Summaries of all segments, oldest first.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        self.segments
            .values()
            .map(|s| SegmentInfo {
                base_offset: s.base_offset(),
                next_offset: s.next_offset(),
                size: s.size(),
                max_timestamp: s.meta.max_timestamp,
                offset_index_entries: s.index.offsets.len(),
                time_index_entries: s.index.times.len(),
            })
            .collect()
    }

    /// Re-reads every segment, CRC-checks every batch and checks that the in-memory indexes and
    /// metadata agree with the data. For tests and tools; costs a full read of the log.
    pub fn verify(&self) -> Result<()> {
        let mut expected_base = None;
        for seg in self.segments.values() {
            let bad = |reason: String| StorageError::CorruptSegment {
                path: seg.path().to_path_buf(),
                position: 0,
                reason,
            };
            if let Some(e) = expected_base
                && e != seg.base_offset()
            {
                return Err(bad(format!(
                    "segment starts at {}, previous ended at {e}",
                    seg.base_offset()
                )));
            }
            expected_base = Some(seg.next_offset());
            let file = fs::File::open(seg.path()).ctx("open segment", seg.path())?;
            let scan = scan_file(
                &file,
                seg.path(),
                seg.base_offset(),
                seg.size(),
                1,
                true,
                None,
            )?;
            if let Some((position, reason)) = scan.invalid {
                return Err(StorageError::CorruptSegment {
                    path: seg.path().to_path_buf(),
                    position,
                    reason,
                });
            }
            let (m, s) = (&scan.meta, &seg.meta);
            if (
                m.size,
                m.next_offset,
                m.max_timestamp,
                m.offset_of_max_timestamp,
            ) != (
                s.size,
                s.next_offset,
                s.max_timestamp,
                s.offset_of_max_timestamp,
            ) {
                return Err(bad(format!("metadata {s:?} disagrees with the data {m:?}")));
            }
            // With interval 1 the scan indexed every batch but the first (position 0).
            let batches: Vec<(u32, u32)> = std::iter::once((0, 0))
                .chain(
                    scan.index
                        .offsets
                        .iter()
                        .map(|e| (e.relative_offset, e.position)),
                )
                .filter(|_| seg.size() > 0)
                .collect();
            for e in &seg.index.offsets {
                if !batches.contains(&(e.relative_offset, e.position)) {
                    return Err(bad(format!(
                        "offset index entry {e:?} points at no batch start"
                    )));
                }
            }
            for e in &seg.index.times {
                let base = seg.base_offset() + i64::from(e.relative_offset);
                let Some((_, h)) = seg.locate(base)? else {
                    return Err(bad(format!("time index entry {e:?} points past the end")));
                };
                if h.base_offset != base || h.max_timestamp != e.timestamp {
                    return Err(bad(format!(
                        "time index entry {e:?} disagrees with batch {h:?}"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Flushes and writes indexes, the checkpoint and the clean-shutdown marker.
    pub fn close(mut self) -> Result<()> {
        self.close_in_place()
    }

    pub(crate) fn close_in_place(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        if self.offline {
            self.closed = true;
            // No marker: the next open must scan and repair.
            return Ok(());
        }
        self.flush()?;
        self.active().seal()?;
        self.write_checkpoint()?;
        self.write_producer_snapshot()?;
        let active = self.active();
        CleanShutdown {
            active_base_offset: active.base_offset(),
            active_size: active.size(),
            log_end_offset: active.next_offset(),
        }
        .write(&self.dir)?;
        // A closed log must not be written again without reopening (the marker would lie).
        self.closed = true;
        self.checkpoint_file.retire();
        Ok(())
    }

    /// Removes the partition directory and everything in it.
    pub fn delete(mut self) -> Result<()> {
        self.delete_in_place()
    }

    pub(crate) fn delete_in_place(&mut self) -> Result<()> {
        self.closed = true;
        // A background checkpoint write in progress finishes first; later ones are dropped.
        self.checkpoint_file.retire();
        fs::remove_dir_all(&self.dir).ctx("delete partition dir", &self.dir)?;
        if let Some(parent) = self.dir.parent() {
            sync_dir(parent)?;
        }
        Ok(())
    }
}

/// Orders the writes of one partition's checkpoint file.
///
/// The periodic high-watermark checkpoint (every 5 s) writes and fsyncs the file *outside* the
/// log's lock, so appends and reads never wait for that fsync (it stalled a partition, and the
/// runtime worker blocked on its lock, for the length of an fsync every 5 s; docs/benchmarks.md).
/// Other checkpoint writes (epoch changes, truncation, retention, close) stay synchronous under
/// the log's write lock. Every snapshot gets a sequence number under the log's lock; writes are
/// serialized here and a snapshot older than the last one written is dropped, so the file never
/// goes back to older state. Lock order: log lock, then `written`; the background pass takes
/// `written` without holding the log lock.
#[derive(Debug)]
struct CheckpointFile {
    next_seq: AtomicU64,
    /// The sequence number of the last snapshot written; `None` once the log is closed or
    /// deleted (nothing more may be written).
    written: Mutex<Option<u64>>,
    /// The high watermark in the file (-1: unknown).
    written_high_watermark: AtomicI64,
}

impl CheckpointFile {
    fn new() -> Self {
        CheckpointFile {
            next_seq: AtomicU64::new(0),
            written: Mutex::new(Some(0)),
            written_high_watermark: AtomicI64::new(-1),
        }
    }

    fn write(&self, dir: &Path, seq: u64, checkpoint: &PartitionCheckpoint) -> Result<()> {
        let mut written = self.written.lock();
        let Some(last) = written.as_mut() else {
            return Ok(());
        };
        if seq < *last {
            return Ok(());
        }
        checkpoint.write(dir)?;
        *last = seq;
        self.written_high_watermark
            .store(checkpoint.high_watermark, Ordering::Relaxed);
        Ok(())
    }

    fn retire(&self) {
        *self.written.lock() = None;
    }
}

/// A checkpoint taken under the log's lock, to be written after releasing it.
#[derive(Debug)]
pub(crate) struct CheckpointSnapshot {
    dir: PathBuf,
    file: Arc<CheckpointFile>,
    seq: u64,
    checkpoint: PartitionCheckpoint,
}

impl CheckpointSnapshot {
    /// Writes the snapshot unless a newer one was written meanwhile or the log was closed.
    pub(crate) fn write(&self) -> Result<()> {
        self.file.write(&self.dir, self.seq, &self.checkpoint)
    }
}

fn modified_ms(path: &Path) -> Option<i64> {
    let t = fs::metadata(path).ok()?.modified().ok()?;
    i64::try_from(t.duration_since(UNIX_EPOCH).ok()?.as_millis()).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn log_with_records(dir: &Path, n: usize) -> PartitionLog {
        let mut log = PartitionLog::open(dir, LogConfig::default(), NOW).unwrap();
        let values: Vec<(i64, &[u8])> = (0..n).map(|i| (NOW + i as i64, &b"v"[..])).collect();
        log.append_as_leader(batch::build_batch(0, &values).unwrap(), 1, NOW)
            .unwrap();
        log
    }

    fn checkpointed_hw(dir: &Path) -> i64 {
        PartitionCheckpoint::read(dir)
            .unwrap()
            .unwrap()
            .high_watermark
    }

    #[test]
    fn a_background_checkpoint_never_overwrites_newer_state() {
        let tmp = tempfile::tempdir().unwrap();
        let mut log = log_with_records(tmp.path(), 10);
        log.set_high_watermark(5);
        // Taken under the lock, written later (the background pass).
        let stale = log.checkpoint_if_changed().unwrap();
        // Meanwhile the state moves on and is written synchronously (an epoch change, say).
        log.set_high_watermark(8);
        log.write_checkpoint().unwrap();
        assert_eq!(checkpointed_hw(tmp.path()), 8);
        stale.write().unwrap();
        assert_eq!(
            checkpointed_hw(tmp.path()),
            8,
            "the older snapshot was dropped"
        );
        // Nothing changed since: no snapshot. A newer one is written.
        assert!(log.checkpoint_if_changed().is_none());
        log.set_high_watermark(9);
        log.checkpoint_if_changed().unwrap().write().unwrap();
        assert_eq!(checkpointed_hw(tmp.path()), 9);
    }

    #[test]
    fn no_checkpoint_is_written_after_close_or_delete() {
        let tmp = tempfile::tempdir().unwrap();
        let mut log = log_with_records(tmp.path(), 4);
        log.set_high_watermark(2);
        let pending = log.checkpoint_if_changed().unwrap();
        log.set_high_watermark(4);
        log.close_in_place().unwrap();
        assert_eq!(checkpointed_hw(tmp.path()), 4);
        pending.write().unwrap();
        assert_eq!(
            checkpointed_hw(tmp.path()),
            4,
            "a closed log's files stay as closed"
        );
        assert!(log.checkpoint_if_changed().is_none());

        let dir = tmp.path().join("deleted");
        let mut log = log_with_records(&dir, 4);
        log.set_high_watermark(3);
        let pending = log.checkpoint_if_changed().unwrap();
        log.delete_in_place().unwrap();
        pending.write().unwrap();
        assert!(
            !dir.exists(),
            "nothing recreated the deleted partition's files"
        );
    }
}
