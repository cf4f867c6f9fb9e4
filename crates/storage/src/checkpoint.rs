//! Small on-disk state files: the per-partition checkpoint and the clean-shutdown marker, plus the
//! sealed-file container and atomic-write helper that the index files use too.
//!
//! Every file is `magic (4) | version u16 | body length u32 | body | crc32c u32`, big-endian, the
//! CRC covering everything before it. Files are replaced atomically: write a temp file, fsync it,
//! rename it over the old one, fsync the directory. A crash therefore leaves either the old or the
//! new file, never a torn one, and any damage found later is a disk fault that we report.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result, StorageError};

/// File name of the partition checkpoint inside a partition directory.
pub const CHECKPOINT_FILE: &str = "partition.checkpoint";
/// File name of the clean-shutdown marker inside a partition directory.
pub const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";
/// Suffix of temp files written during an atomic replace; leftovers are deleted at open.
pub const TMP_SUFFIX: &str = ".tmp";

const CHECKPOINT_MAGIC: [u8; 4] = *b"GRCK";
const MARKER_MAGIC: [u8; 4] = *b"GRCS";
const CHECKPOINT_VERSION: u16 = 1;
const MARKER_VERSION: u16 = 1;
const ENVELOPE: usize = 4 + 2 + 4 + 4;

/// One entry of the leader-epoch cache: `epoch` started at `start_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    /// The leader epoch.
    pub epoch: i32,
    /// First offset written in that epoch.
    pub start_offset: i64,
}

/// Durable per-partition state (`partition.checkpoint`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartitionCheckpoint {
    /// High watermark at the time of the write.
    pub high_watermark: i64,
    /// Log start offset (DeleteRecords and retention move it).
    pub log_start_offset: i64,
    /// Leader-epoch cache, ascending by epoch and start offset.
    pub epochs: Vec<EpochEntry>,
}

/// Contents of the clean-shutdown marker: what the active segment looked like at close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanShutdown {
    /// Base offset of the active segment.
    pub active_base_offset: i64,
    /// Size of the active segment file in bytes.
    pub active_size: u64,
    /// Log end offset.
    pub log_end_offset: i64,
}

/// Wraps `body` in the sealed envelope (magic, version, length, body, CRC-32C over all of it).
/// Every small state file Gregor writes uses it, so one format and one check guard them all.
pub fn seal(magic: [u8; 4], version: u16, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + ENVELOPE);
    out.extend_from_slice(&magic);
    out.extend_from_slice(&version.to_be_bytes());
    // Bodies are bounded by segment metadata sizes, far below 4 GiB.
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    let crc = crate::batch::crc32c(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// Checks the envelope and returns the body; any failed check is [`StorageError::CorruptCheckpoint`].
pub fn unseal<'a>(path: &Path, bytes: &'a [u8], magic: [u8; 4], version: u16) -> Result<&'a [u8]> {
    let bad = |reason: String| StorageError::CorruptCheckpoint {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.len() < ENVELOPE {
        return Err(bad(format!(
            "{} bytes is shorter than the envelope",
            bytes.len()
        )));
    }
    let (payload, crc_bytes) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_be_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
    let computed = crate::batch::crc32c(payload);
    if stored != computed {
        return Err(bad(format!(
            "CRC mismatch: stored {stored:#010x}, computed {computed:#010x}"
        )));
    }
    if payload[..4] != magic {
        return Err(bad(format!("bad magic {:?}", &payload[..4])));
    }
    let found = u16::from_be_bytes([payload[4], payload[5]]);
    if found != version {
        return Err(bad(format!(
            "unsupported version {found}, expected {version}"
        )));
    }
    let len = u32::from_be_bytes([payload[6], payload[7], payload[8], payload[9]]) as usize;
    let body = &payload[10..];
    if body.len() != len {
        return Err(bad(format!(
            "body is {} bytes, header says {len}",
            body.len()
        )));
    }
    Ok(body)
}

/// Replaces `path` atomically with `contents`: temp file, fsync, rename, fsync the directory.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(TMP_SUFFIX);
    let tmp = PathBuf::from(tmp);
    {
        let mut f = File::create(&tmp).ctx("create", &tmp)?;
        f.write_all(contents).ctx("write", &tmp)?;
        f.sync_all().ctx("fsync", &tmp)?;
    }
    fs::rename(&tmp, path).ctx("rename", path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// fsyncs a directory so that creates, renames and deletes in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .ctx("open dir", dir)?
        .sync_all()
        .ctx("fsync dir", dir)
}

/// Reads a whole file, `None` if it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StorageError::Io {
            op: "read",
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// Big-endian cursor over a checked body; every read is bounds-checked.
pub(crate) struct Reader<'a> {
    path: &'a Path,
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(path: &'a Path, buf: &'a [u8]) -> Self {
        Reader { path, buf, pos: 0 }
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        let end = self.pos + N;
        let Some(s) = self.buf.get(self.pos..end) else {
            return Err(StorageError::CorruptCheckpoint {
                path: self.path.to_path_buf(),
                reason: format!(
                    "body ends at {} while reading {N} bytes at {}",
                    self.buf.len(),
                    self.pos
                ),
            });
        };
        self.pos = end;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub(crate) fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_be_bytes(self.take()?))
    }
    pub(crate) fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.take()?))
    }
    pub(crate) fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_be_bytes(self.take()?))
    }
    pub(crate) fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.take()?))
    }

    /// Number of `entry_size`-byte entries still available, for bounding `Vec` capacity.
    pub(crate) fn remaining_entries(&self, entry_size: usize) -> usize {
        (self.buf.len() - self.pos) / entry_size
    }

    pub(crate) fn finish(self) -> Result<()> {
        if self.pos != self.buf.len() {
            return Err(StorageError::CorruptCheckpoint {
                path: self.path.to_path_buf(),
                reason: format!("{} trailing bytes", self.buf.len() - self.pos),
            });
        }
        Ok(())
    }

    pub(crate) fn corrupt(&self, reason: String) -> StorageError {
        StorageError::CorruptCheckpoint {
            path: self.path.to_path_buf(),
            reason,
        }
    }
}

impl PartitionCheckpoint {
    /// Serializes into the sealed format.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(20 + 12 * self.epochs.len());
        body.extend_from_slice(&self.high_watermark.to_be_bytes());
        body.extend_from_slice(&self.log_start_offset.to_be_bytes());
        body.extend_from_slice(&(self.epochs.len() as u32).to_be_bytes());
        for e in &self.epochs {
            body.extend_from_slice(&e.epoch.to_be_bytes());
            body.extend_from_slice(&e.start_offset.to_be_bytes());
        }
        seal(CHECKPOINT_MAGIC, CHECKPOINT_VERSION, &body)
    }

    /// Parses and checks a checkpoint read from `path`.
    pub fn decode(path: &Path, bytes: &[u8]) -> Result<Self> {
        let body = unseal(path, bytes, CHECKPOINT_MAGIC, CHECKPOINT_VERSION)?;
        let mut r = Reader::new(path, body);
        let high_watermark = r.i64()?;
        let log_start_offset = r.i64()?;
        let n = r.u32()? as usize;
        if n > r.remaining_entries(12) {
            return Err(r.corrupt(format!("{n} epoch entries do not fit the body")));
        }
        let mut epochs = Vec::with_capacity(n);
        for _ in 0..n {
            let epoch = r.i32()?;
            let start_offset = r.i64()?;
            if let Some(prev) = epochs.last().copied() {
                let prev: EpochEntry = prev;
                if epoch <= prev.epoch || start_offset < prev.start_offset {
                    return Err(r.corrupt("epoch entries are not ascending".to_string()));
                }
            }
            epochs.push(EpochEntry {
                epoch,
                start_offset,
            });
        }
        r.finish()?;
        Ok(PartitionCheckpoint {
            high_watermark,
            log_start_offset,
            epochs,
        })
    }

    /// Reads `<dir>/partition.checkpoint`; `None` if absent.
    pub fn read(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(CHECKPOINT_FILE);
        match read_optional(&path)? {
            Some(bytes) => Self::decode(&path, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Atomically writes `<dir>/partition.checkpoint`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        write_atomic(&dir.join(CHECKPOINT_FILE), &self.encode())
    }
}

impl CleanShutdown {
    /// Serializes into the sealed format.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(24);
        body.extend_from_slice(&self.active_base_offset.to_be_bytes());
        body.extend_from_slice(&self.active_size.to_be_bytes());
        body.extend_from_slice(&self.log_end_offset.to_be_bytes());
        seal(MARKER_MAGIC, MARKER_VERSION, &body)
    }

    /// Parses and checks a marker read from `path`.
    pub fn decode(path: &Path, bytes: &[u8]) -> Result<Self> {
        let body = unseal(path, bytes, MARKER_MAGIC, MARKER_VERSION)?;
        let mut r = Reader::new(path, body);
        let m = CleanShutdown {
            active_base_offset: r.i64()?,
            active_size: r.u64()?,
            log_end_offset: r.i64()?,
        };
        r.finish()?;
        Ok(m)
    }

    /// Reads `<dir>/clean-shutdown`; `None` if absent.
    pub fn read(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(CLEAN_SHUTDOWN_FILE);
        match read_optional(&path)? {
            Some(bytes) => Self::decode(&path, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Atomically writes `<dir>/clean-shutdown`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        write_atomic(&dir.join(CLEAN_SHUTDOWN_FILE), &self.encode())
    }
}
