//! Sparse offset and time indexes of one segment.
//!
//! The offset index maps the base offset of every batch that starts at least
//! `index.interval.bytes` after the previous entry to its file position. The time index maps the
//! segment's running max timestamp to the first batch that reached it, so every batch before an
//! entry has a smaller max timestamp. Both live in memory; a sealed segment's indexes are written
//! whole at roll (and the active one's at clean close) into `<base>.index` / `<base>.timeindex`
//! using the sealed envelope of [`crate::checkpoint`]. A file that is missing, fails its CRC or
//! describes a different segment size is ignored and rebuilt by scanning the segment.

use std::path::{Path, PathBuf};

use crate::checkpoint::{Reader, read_optional, seal, unseal, write_atomic};
use crate::error::Result;

const OFFSET_MAGIC: [u8; 4] = *b"GROI";
const TIME_MAGIC: [u8; 4] = *b"GRTI";
const VERSION: u16 = 1;

/// Facts about a segment that are cheap to keep and expensive to recompute (they need a scan).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentMeta {
    /// Base offset of the segment (its file name).
    pub base_offset: i64,
    /// Size of the segment file the index describes.
    pub size: u64,
    /// Offset after the last batch.
    pub next_offset: i64,
    /// Largest batch max timestamp, -1 if none.
    pub max_timestamp: i64,
    /// Base offset of the first batch with `max_timestamp`, -1 if none.
    pub offset_of_max_timestamp: i64,
    /// Max timestamp of the first batch (segment.ms rolls from it), -1 if none.
    pub first_batch_timestamp: i64,
}

impl SegmentMeta {
    /// Metadata of an empty segment.
    pub fn empty(base_offset: i64) -> Self {
        SegmentMeta {
            base_offset,
            size: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            offset_of_max_timestamp: -1,
            first_batch_timestamp: -1,
        }
    }
}

/// One offset-index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    /// Batch base offset relative to the segment base offset.
    pub relative_offset: u32,
    /// File position of the batch.
    pub position: u32,
}

/// One time-index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    /// Running max timestamp of the segment.
    pub timestamp: i64,
    /// Base offset, relative to the segment, of the first batch that reached it.
    pub relative_offset: u32,
}

/// Both indexes of one segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentIndex {
    /// Offset entries, ascending in both fields.
    pub offsets: Vec<OffsetEntry>,
    /// Time entries, ascending in both fields.
    pub times: Vec<TimeEntry>,
}

/// Path of the offset index of the segment with `base_offset`.
pub fn offset_index_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{base_offset:020}.index"))
}

/// Path of the time index of the segment with `base_offset`.
pub fn time_index_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{base_offset:020}.timeindex"))
}

impl SegmentIndex {
    /// Position of the last indexed batch whose base offset is `<= relative_offset`, or 0.
    pub fn lookup_offset(&self, relative_offset: u32) -> u32 {
        let i = self
            .offsets
            .partition_point(|e| e.relative_offset <= relative_offset);
        if i == 0 {
            0
        } else {
            self.offsets[i - 1].position
        }
    }

    /// Relative offset from which a scan for the first batch with max timestamp `>= ts` can start:
    /// every batch before it has a smaller max timestamp.
    pub fn lookup_time(&self, ts: i64) -> u32 {
        let i = self.times.partition_point(|e| e.timestamp < ts);
        if i == 0 {
            0
        } else {
            self.times[i - 1].relative_offset
        }
    }

    /// Appends an offset entry if it keeps the index ascending.
    pub fn push_offset(&mut self, relative_offset: u32, position: u32) {
        if self
            .offsets
            .last()
            .is_none_or(|l| l.relative_offset < relative_offset && l.position < position)
        {
            self.offsets.push(OffsetEntry {
                relative_offset,
                position,
            });
        }
    }

    /// Appends a time entry if the timestamp is a new maximum.
    pub fn push_time(&mut self, timestamp: i64, relative_offset: u32) {
        if self
            .times
            .last()
            .is_none_or(|l| l.timestamp < timestamp && l.relative_offset <= relative_offset)
        {
            self.times.push(TimeEntry {
                timestamp,
                relative_offset,
            });
        }
    }

    /// Drops entries at or past `size` bytes / `next_relative` offsets (after a truncation).
    pub fn truncate(&mut self, size: u64, next_relative: u32) {
        self.offsets
            .retain(|e| u64::from(e.position) < size && e.relative_offset < next_relative);
        self.times.retain(|e| e.relative_offset < next_relative);
    }

    /// Writes both index files atomically.
    pub fn write(&self, dir: &Path, meta: &SegmentMeta) -> Result<()> {
        let mut body = meta_bytes(meta);
        body.extend_from_slice(&(self.offsets.len() as u32).to_be_bytes());
        for e in &self.offsets {
            body.extend_from_slice(&e.relative_offset.to_be_bytes());
            body.extend_from_slice(&e.position.to_be_bytes());
        }
        write_atomic(
            &offset_index_path(dir, meta.base_offset),
            &seal(OFFSET_MAGIC, VERSION, &body),
        )?;
        let mut body = meta_bytes(meta);
        body.extend_from_slice(&(self.times.len() as u32).to_be_bytes());
        for e in &self.times {
            body.extend_from_slice(&e.timestamp.to_be_bytes());
            body.extend_from_slice(&e.relative_offset.to_be_bytes());
        }
        write_atomic(
            &time_index_path(dir, meta.base_offset),
            &seal(TIME_MAGIC, VERSION, &body),
        )
    }

    /// Loads both index files. `Ok(None)` if either is missing or does not describe a segment
    /// with this base offset and `size`; `Err` only for I/O errors and damaged files.
    pub fn load(dir: &Path, base_offset: i64, size: u64) -> Result<Option<(Self, SegmentMeta)>> {
        let opath = offset_index_path(dir, base_offset);
        let tpath = time_index_path(dir, base_offset);
        let (Some(obytes), Some(tbytes)) = (read_optional(&opath)?, read_optional(&tpath)?) else {
            return Ok(None);
        };
        let mut index = SegmentIndex::default();
        let body = unseal(&opath, &obytes, OFFSET_MAGIC, VERSION)?;
        let mut r = Reader::new(&opath, body);
        let meta = read_meta(&mut r)?;
        if meta.base_offset != base_offset || meta.size != size {
            return Ok(None);
        }
        let n = r.u32()? as usize;
        if n > r.remaining_entries(8) {
            return Err(r.corrupt(format!("{n} entries do not fit the body")));
        }
        for _ in 0..n {
            let relative_offset = r.u32()?;
            let position = r.u32()?;
            if u64::from(position) >= size
                || index
                    .offsets
                    .last()
                    .is_some_and(|l| l.relative_offset >= relative_offset || l.position >= position)
            {
                return Err(r.corrupt("offset index entries out of order or range".to_string()));
            }
            index.offsets.push(OffsetEntry {
                relative_offset,
                position,
            });
        }
        r.finish()?;
        let body = unseal(&tpath, &tbytes, TIME_MAGIC, VERSION)?;
        let mut r = Reader::new(&tpath, body);
        if read_meta(&mut r)? != meta {
            return Ok(None);
        }
        let n = r.u32()? as usize;
        if n > r.remaining_entries(12) {
            return Err(r.corrupt(format!("{n} entries do not fit the body")));
        }
        for _ in 0..n {
            let timestamp = r.i64()?;
            let relative_offset = r.u32()?;
            if index
                .times
                .last()
                .is_some_and(|l| l.timestamp >= timestamp || l.relative_offset > relative_offset)
            {
                return Err(r.corrupt("time index entries out of order".to_string()));
            }
            index.times.push(TimeEntry {
                timestamp,
                relative_offset,
            });
        }
        r.finish()?;
        Ok(Some((index, meta)))
    }
}

fn meta_bytes(m: &SegmentMeta) -> Vec<u8> {
    let mut b = Vec::with_capacity(64);
    b.extend_from_slice(&m.base_offset.to_be_bytes());
    b.extend_from_slice(&m.size.to_be_bytes());
    b.extend_from_slice(&m.next_offset.to_be_bytes());
    b.extend_from_slice(&m.max_timestamp.to_be_bytes());
    b.extend_from_slice(&m.offset_of_max_timestamp.to_be_bytes());
    b.extend_from_slice(&m.first_batch_timestamp.to_be_bytes());
    b
}

fn read_meta(r: &mut Reader<'_>) -> Result<SegmentMeta> {
    Ok(SegmentMeta {
        base_offset: r.i64()?,
        size: r.u64()?,
        next_offset: r.i64()?,
        max_timestamp: r.i64()?,
        offset_of_max_timestamp: r.i64()?,
        first_batch_timestamp: r.i64()?,
    })
}
