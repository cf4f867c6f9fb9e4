//! One segment file `<base_offset:020>.log` and its in-memory indexes.
//!
//! Reads use positional I/O (`read_exact_at`) so they need only `&self`; appends go through the file
//! cursor with one vectored write per call.

use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::batch::{self, BatchHeader, HEADER_LEN, ValidationMode};
use crate::checkpoint::EpochEntry;
use crate::error::{IoContext, Result, StorageError};
use crate::index::{SegmentIndex, SegmentMeta, offset_index_path, time_index_path};

/// Path of the segment with `base_offset` in `dir`.
pub fn segment_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{base_offset:020}.log"))
}

/// Base offset from a segment file name (`00000000000000000042.log` → 42).
pub fn parse_segment_name(name: &str) -> Option<i64> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Result of scanning a segment file from the start.
#[derive(Debug)]
pub(crate) struct Scan {
    pub(crate) index: SegmentIndex,
    pub(crate) meta: SegmentMeta,
    pub(crate) bytes_since_index: u64,
    /// First invalid byte position and why, if the file does not end on a valid batch boundary.
    pub(crate) invalid: Option<(u64, String)>,
}

/// Tracks index and metadata as batches are added in order.
fn track(
    index: &mut SegmentIndex,
    meta: &mut SegmentMeta,
    bytes_since_index: &mut u64,
    interval: u32,
    h: &BatchHeader,
    pos: u64,
) {
    // Callers guarantee both fit in u32 (see `Segment::fits`).
    let rel = (h.base_offset - meta.base_offset) as u32;
    let indexed = pos > 0 && *bytes_since_index >= u64::from(interval);
    if indexed {
        index.push_offset(rel, pos as u32);
        *bytes_since_index = 0;
    }
    *bytes_since_index += h.total_size() as u64;
    if meta.first_batch_timestamp < 0 && meta.size == pos && pos == 0 {
        meta.first_batch_timestamp = h.max_timestamp;
    }
    if h.max_timestamp > meta.max_timestamp {
        meta.max_timestamp = h.max_timestamp;
        meta.offset_of_max_timestamp = h.base_offset;
    }
    if indexed && meta.offset_of_max_timestamp >= meta.base_offset {
        index.push_time(
            meta.max_timestamp,
            (meta.offset_of_max_timestamp - meta.base_offset) as u32,
        );
    }
    meta.size = pos + h.total_size() as u64;
    meta.next_offset = h.next_offset();
}

/// A segment: an append-only file of batches plus its sparse indexes.
#[derive(Debug)]
pub(crate) struct Segment {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    pub(crate) meta: SegmentMeta,
    pub(crate) index: SegmentIndex,
    bytes_since_index: u64,
    /// When the segment was created or loaded; segment.ms falls back to it without timestamps.
    pub(crate) created_ms: i64,
    /// A failed write could not be rolled back: the file holds bytes we do not account for.
    pub(crate) broken: bool,
}

impl Segment {
    /// Creates an empty segment file (replacing any stale file of that name).
    pub(crate) fn create(dir: &Path, base_offset: i64, now_ms: i64) -> Result<Self> {
        let path = segment_path(dir, base_offset);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .ctx("create segment", &path)?;
        Ok(Segment {
            dir: dir.to_path_buf(),
            path,
            file,
            meta: SegmentMeta::empty(base_offset),
            index: SegmentIndex::default(),
            bytes_since_index: 0,
            created_ms: now_ms,
            broken: false,
        })
    }

    fn open_file(dir: &Path, base_offset: i64) -> Result<(PathBuf, File, u64)> {
        let path = segment_path(dir, base_offset);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .ctx("open segment", &path)?;
        let len = file.metadata().ctx("stat segment", &path)?.len();
        Ok((path, file, len))
    }

    /// Opens an existing segment. With `trust_index`, a valid index file whose recorded size
    /// matches the file is used as is; otherwise (or if none matches) the file is scanned and every
    /// batch CRC-checked. With `recover_with` (the active segment after an unclean shutdown) a bad
    /// tail is cut off, and a batch whose leader epoch disagrees with the epoch cache counts as
    /// bad too: the epoch lies outside the CRC, so this is the only way to catch a damaged epoch.
    /// Without it a bad batch is a `CorruptSegment` error (sealed segments were fsynced at roll,
    /// so damage there is a disk fault). Returns the segment and the bytes cut.
    pub(crate) fn open(
        dir: &Path,
        base_offset: i64,
        now_ms: i64,
        interval: u32,
        trust_index: bool,
        recover_with: Option<&[EpochEntry]>,
    ) -> Result<(Self, u64)> {
        let (path, mut file, len) = Self::open_file(dir, base_offset)?;
        let mut seg = Segment {
            dir: dir.to_path_buf(),
            path,
            file: file
                .try_clone()
                .ctx("dup segment", &segment_path(dir, base_offset))?,
            meta: SegmentMeta::empty(base_offset),
            index: SegmentIndex::default(),
            bytes_since_index: 0,
            created_ms: now_ms,
            broken: false,
        };
        if trust_index {
            match SegmentIndex::load(dir, base_offset, len) {
                Ok(Some((index, meta))) if meta.next_offset >= base_offset => {
                    seg.bytes_since_index =
                        len - index.offsets.last().map_or(0, |e| u64::from(e.position));
                    seg.index = index;
                    seg.meta = meta;
                    file.seek(SeekFrom::Start(len)).ctx("seek", &seg.path)?;
                    seg.file = file;
                    return Ok((seg, 0));
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "ignoring damaged index, rebuilding"),
            }
        }
        let scan = scan_file(
            &file,
            &seg.path,
            base_offset,
            len,
            interval,
            true,
            recover_with,
        )?;
        let mut cut = 0;
        if let Some((pos, reason)) = &scan.invalid {
            if recover_with.is_none() {
                return Err(StorageError::CorruptSegment {
                    path: seg.path.clone(),
                    position: *pos,
                    reason: reason.clone(),
                });
            }
            tracing::warn!(path = %seg.path.display(), position = pos, %reason,
                "truncating invalid tail of the active segment");
            file.set_len(*pos).ctx("truncate segment", &seg.path)?;
            file.sync_all().ctx("fsync segment", &seg.path)?;
            cut = len - pos;
        }
        file.seek(SeekFrom::Start(scan.meta.size))
            .ctx("seek", &seg.path)?;
        seg.file = file;
        seg.index = scan.index;
        seg.meta = scan.meta;
        seg.bytes_since_index = scan.bytes_since_index;
        Ok((seg, cut))
    }

    pub(crate) fn base_offset(&self) -> i64 {
        self.meta.base_offset
    }

    pub(crate) fn size(&self) -> u64 {
        self.meta.size
    }

    pub(crate) fn next_offset(&self) -> i64 {
        self.meta.next_offset
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `bytes` more bytes ending at `last_offset` still fit the u32 index fields.
    pub(crate) fn fits(&self, bytes: u64, last_offset: i64) -> bool {
        self.meta.size + bytes <= u64::from(u32::MAX)
            && last_offset - self.meta.base_offset <= i64::from(u32::MAX)
    }

    /// Appends `bufs` (the bytes of `headers`' batches, in order) with one vectored write loop.
    /// On failure the file is cut back to its old size; if even that fails the segment is marked
    /// broken.
    pub(crate) fn append(
        &mut self,
        bufs: &mut [IoSlice<'_>],
        headers: &[BatchHeader],
        interval: u32,
    ) -> Result<()> {
        let start = self.meta.size;
        if let Err(source) = write_all_vectored(&mut self.file, bufs) {
            let rollback = self
                .file
                .set_len(start)
                .and_then(|()| self.file.seek(SeekFrom::Start(start)).map(|_| ()));
            if rollback.is_err() {
                self.broken = true;
            }
            return Err(StorageError::Io {
                op: "append",
                path: self.path.clone(),
                source,
            });
        }
        let mut pos = start;
        for h in headers {
            track(
                &mut self.index,
                &mut self.meta,
                &mut self.bytes_since_index,
                interval,
                h,
                pos,
            );
            pos += h.total_size() as u64;
        }
        Ok(())
    }

    /// fsyncs the segment data.
    pub(crate) fn flush(&self) -> Result<()> {
        self.file.sync_data().ctx("fsync segment", &self.path)
    }

    /// Makes the segment durable and writes its indexes: called at roll and clean close.
    pub(crate) fn seal(&self) -> Result<()> {
        self.flush()?;
        self.index.write(&self.dir, &self.meta)
    }

    fn read_at(&self, buf: &mut [u8], pos: u64) -> Result<()> {
        self.file
            .read_exact_at(buf, pos)
            .ctx("read segment", &self.path)
    }

    /// Reads and parses the batch header at `pos` (which must be a batch boundary below `size`).
    pub(crate) fn read_header(&self, pos: u64) -> Result<BatchHeader> {
        let avail = (self.meta.size - pos).min(HEADER_LEN as u64) as usize;
        let mut hdr = [0u8; HEADER_LEN];
        self.read_at(&mut hdr[..avail], pos)?;
        BatchHeader::parse(&hdr[..avail]).map_err(|e| StorageError::CorruptSegment {
            path: self.path.clone(),
            position: pos,
            reason: e.to_string(),
        })
    }

    /// Reads `len` bytes at `pos` into one buffer that becomes `Bytes` without a copy.
    ///
    /// `pread` fills the buffer's spare capacity directly (rustix's `spare_capacity` sets the
    /// length to what was read), so the buffer is not zeroed first: zeroing was about 5 % of a
    /// leader's CPU while serving followers (docs/benchmarks.md).
    pub(crate) fn read_bytes(&self, pos: u64, len: usize) -> Result<Bytes> {
        let mut buf = Vec::with_capacity(len);
        while buf.len() < len {
            let at = pos + buf.len() as u64;
            match rustix::io::pread(&self.file, rustix::buffer::spare_capacity(&mut buf), at) {
                Ok(0) => {
                    return Err(io::Error::from(io::ErrorKind::UnexpectedEof))
                        .ctx("read segment", &self.path);
                }
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(io::Error::from(e)).ctx("read segment", &self.path),
            }
        }
        // The allocator may have given more capacity than asked; only `len` bytes are wanted.
        buf.truncate(len);
        Ok(Bytes::from(buf))
    }

    /// Position and header of the first batch whose last offset is `>= offset`, starting the
    /// walk at `pos`.
    fn walk_from(&self, mut pos: u64, offset: i64) -> Result<Option<(u64, BatchHeader)>> {
        while pos < self.meta.size {
            let h = self.read_header(pos)?;
            if h.last_offset() >= offset {
                return Ok(Some((pos, h)));
            }
            pos += h.total_size() as u64;
        }
        Ok(None)
    }

    fn relative(&self, offset: i64) -> u32 {
        (offset - self.meta.base_offset).clamp(0, i64::from(u32::MAX)) as u32
    }

    /// Position and header of the batch containing `offset` (or the first after it).
    pub(crate) fn locate(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>> {
        if offset >= self.meta.next_offset {
            return Ok(None);
        }
        let pos = u64::from(self.index.lookup_offset(self.relative(offset)));
        self.walk_from(pos, offset)
    }

    /// Calls `f` with the header of every batch whose last offset is `>= offset`, in offset
    /// order. Reads headers only (61 bytes per batch), never record data.
    pub(crate) fn for_each_header_from(
        &self,
        offset: i64,
        mut f: impl FnMut(&BatchHeader),
    ) -> Result<()> {
        let Some((mut pos, _)) = self.locate(offset)? else {
            return Ok(());
        };
        while pos < self.meta.size {
            let h = self.read_header(pos)?;
            f(&h);
            pos += h.total_size() as u64;
        }
        Ok(())
    }

    /// Whole batches from the one containing `offset`; `None` if the segment ends before it.
    pub(crate) fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_batch: bool,
    ) -> Result<Option<Bytes>> {
        let Some((pos, first)) = self.locate(offset)? else {
            return Ok(None);
        };
        if first.last_offset() >= max_offset {
            return Ok(Some(Bytes::new()));
        }
        let first_size = first.total_size();
        let avail = usize::try_from(self.meta.size - pos).unwrap_or(usize::MAX);
        let mut want = max_bytes.min(avail);
        if want < first_size {
            if !min_one_batch {
                return Ok(Some(Bytes::new()));
            }
            want = first_size;
        }
        let mut buf = vec![0u8; want];
        self.read_at(&mut buf, pos)?;
        let mut end = 0;
        while let Ok(h) = BatchHeader::parse(&buf[end..]) {
            let size = h.total_size();
            if h.last_offset() >= max_offset || end + size > buf.len() {
                break;
            }
            end += size;
        }
        buf.truncate(end);
        Ok(Some(Bytes::from(buf)))
    }

    /// Earliest record with timestamp `>= ts` and offset `>= min_offset`: `(timestamp, offset)`.
    pub(crate) fn find_timestamp(&self, ts: i64, min_offset: i64) -> Result<Option<(i64, i64)>> {
        if self.meta.max_timestamp < ts {
            return Ok(None);
        }
        let start_rel = self.index.lookup_time(ts);
        let mut pos = u64::from(self.index.lookup_offset(start_rel));
        while pos < self.meta.size {
            let h = self.read_header(pos)?;
            if h.max_timestamp >= ts && h.last_offset() >= min_offset {
                let batch = self.read_bytes(pos, h.total_size())?;
                let records = batch::record_timestamps(&batch)?;
                if let Some(&(o, t)) = records.iter().find(|&&(o, t)| t >= ts && o >= min_offset) {
                    return Ok(Some((t, o)));
                }
            }
            pos += h.total_size() as u64;
        }
        Ok(None)
    }

    /// The earliest record carrying the segment's max timestamp: `(timestamp, offset)`.
    pub(crate) fn max_timestamp_record(&self) -> Result<Option<(i64, i64)>> {
        let m = &self.meta;
        if m.offset_of_max_timestamp < m.base_offset {
            return Ok(None);
        }
        let Some((pos, h)) = self.locate(m.offset_of_max_timestamp)? else {
            return Ok(None);
        };
        let batch = self.read_bytes(pos, h.total_size())?;
        let records = batch::record_timestamps(&batch)?;
        let found = records
            .iter()
            .find(|&&(_, t)| t == h.max_timestamp)
            .map_or((h.max_timestamp, h.base_offset), |&(o, t)| (t, o));
        Ok(Some(found))
    }

    /// Removes every batch whose last offset is `>= offset`. Returns whether anything was cut.
    pub(crate) fn truncate_to(&mut self, offset: i64, interval: u32) -> Result<bool> {
        let Some((pos, _)) = self.locate(offset)? else {
            return Ok(false);
        };
        self.file.set_len(pos).ctx("truncate segment", &self.path)?;
        self.file
            .seek(SeekFrom::Start(pos))
            .ctx("seek", &self.path)?;
        let scan = scan_file(
            &self.file,
            &self.path,
            self.meta.base_offset,
            pos,
            interval,
            false,
            None,
        )?;
        if let Some((position, reason)) = scan.invalid {
            return Err(StorageError::CorruptSegment {
                path: self.path.clone(),
                position,
                reason,
            });
        }
        self.index = scan.index;
        self.meta = scan.meta;
        self.bytes_since_index = scan.bytes_since_index;
        Ok(true)
    }

    /// Deletes the segment file and its index files.
    pub(crate) fn delete_files(self) -> Result<()> {
        let base = self.meta.base_offset;
        let dir = self.dir.clone();
        let path = self.path.clone();
        drop(self);
        fs::remove_file(&path).ctx("delete segment", &path)?;
        for p in [offset_index_path(&dir, base), time_index_path(&dir, base)] {
            match fs::remove_file(&p) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(StorageError::Io {
                        op: "delete index",
                        path: p,
                        source: e,
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Scans `len` bytes of a segment from position 0, rebuilding its index and metadata. With
/// `check_crc` every batch is fully validated; otherwise only framing and offsets are checked.
pub(crate) fn scan_file(
    file: &File,
    path: &Path,
    base_offset: i64,
    len: u64,
    interval: u32,
    check_crc: bool,
    epochs: Option<&[EpochEntry]>,
) -> Result<Scan> {
    let mut index = SegmentIndex::default();
    let mut meta = SegmentMeta::empty(base_offset);
    let mut bytes_since_index = 0u64;
    let mut pos = 0u64;
    let mut buf = Vec::new();
    let mut hdr = [0u8; HEADER_LEN];
    let invalid = loop {
        if pos == len {
            break None;
        }
        if len - pos < HEADER_LEN as u64 {
            break Some((
                pos,
                format!("{} trailing bytes, less than a header", len - pos),
            ));
        }
        file.read_exact_at(&mut hdr, pos)
            .ctx("read segment", path)?;
        let h = match BatchHeader::parse(&hdr) {
            Ok(h) => h,
            Err(e) => break Some((pos, e.to_string())),
        };
        let size = h.total_size() as u64;
        if size > len - pos {
            break Some((
                pos,
                format!("batch of {size} bytes runs past the end of the file"),
            ));
        }
        if check_crc {
            buf.resize(h.total_size(), 0);
            file.read_exact_at(&mut buf, pos)
                .ctx("read segment", path)?;
            if let Err(e) = batch::validate(&buf, ValidationMode::Replica) {
                break Some((pos, e.to_string()));
            }
        }
        if h.base_offset != meta.next_offset {
            break Some((
                pos,
                format!(
                    "batch base offset {} where {} was expected",
                    h.base_offset, meta.next_offset
                ),
            ));
        }
        if let Some(entries) = epochs
            && !epoch_consistent(entries, &h)
        {
            break Some((
                pos,
                format!(
                    "batch at offset {} has leader epoch {}, which the epoch cache does not place there",
                    h.base_offset, h.partition_leader_epoch
                ),
            ));
        }
        if pos + size > u64::from(u32::MAX) || h.last_offset() - base_offset > i64::from(u32::MAX) {
            break Some((
                pos,
                "batch does not fit the segment's index range".to_string(),
            ));
        }
        track(
            &mut index,
            &mut meta,
            &mut bytes_since_index,
            interval,
            &h,
            pos,
        );
        pos += size;
    };
    Ok(Scan {
        index,
        meta,
        bytes_since_index,
        invalid,
    })
}

/// Whether the epoch cache (written before any batch of a new epoch) agrees with `h`'s epoch.
/// Below the first entry (batches under a clamped log start) only "not newer" can be checked.
fn epoch_consistent(entries: &[EpochEntry], h: &BatchHeader) -> bool {
    match entries
        .iter()
        .rev()
        .find(|e| e.start_offset <= h.base_offset)
    {
        Some(covering) => covering.epoch == h.partition_leader_epoch,
        None => entries
            .first()
            .is_none_or(|first| h.partition_leader_epoch <= first.epoch),
    }
}

/// Writes all of `bufs`, handling partial writes and `EINTR`.
fn write_all_vectored(file: &mut File, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        match file.write_vectored(bufs) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
