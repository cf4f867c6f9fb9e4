//! Human-readable listing of on-disk log state, for `gregor tools dump-log <dir>`.
//!
//! Read-only and tolerant: damage is reported in the listing rather than aborting it.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::batch::{self, BatchHeader, HEADER_LEN, ValidationMode};
use crate::checkpoint::{CleanShutdown, PartitionCheckpoint};
use crate::error::{IoContext, Result};
use crate::index::SegmentIndex;
use crate::segment::parse_segment_name;

/// Writes a listing of `path` to `out`. `path` may be a data directory (every partition in it),
/// a partition directory, or a single `.log` segment file.
pub fn dump_log(path: &Path, out: &mut impl Write) -> Result<()> {
    let w = |out: &mut dyn Write, s: String| -> Result<()> {
        out.write_all(s.as_bytes()).ctx("write dump", path)
    };
    if path.is_file() {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some(base) = parse_segment_name(&name) else {
            return w(out, format!("{}: not a segment file\n", path.display()));
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        return dump_segment(dir, base, out);
    }
    let mut entries: Vec<_> = fs::read_dir(path)
        .ctx("list dir", path)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    let is_partition = entries.iter().any(|p| {
        p.file_name()
            .is_some_and(|n| parse_segment_name(&n.to_string_lossy()).is_some())
    });
    if is_partition {
        return dump_partition(path, out);
    }
    for p in entries.iter().filter(|p| p.is_dir()) {
        dump_partition(p, out)?;
    }
    Ok(())
}

/// Lists one partition directory.
pub fn dump_partition(dir: &Path, out: &mut impl Write) -> Result<()> {
    let mut text = format!("partition {}\n", dir.display());
    match PartitionCheckpoint::read(dir) {
        Ok(Some(c)) => {
            let epochs: Vec<String> = c
                .epochs
                .iter()
                .map(|e| format!("{}@{}", e.epoch, e.start_offset))
                .collect();
            text += &format!(
                "  checkpoint: high_watermark={} log_start_offset={} epochs=[{}]\n",
                c.high_watermark,
                c.log_start_offset,
                epochs.join(", ")
            );
        }
        Ok(None) => text += "  checkpoint: missing\n",
        Err(e) => text += &format!("  checkpoint: CORRUPT ({e})\n"),
    }
    match CleanShutdown::read(dir) {
        Ok(Some(m)) => {
            text += &format!(
                "  clean-shutdown marker: active_base_offset={} active_size={} log_end_offset={}\n",
                m.active_base_offset, m.active_size, m.log_end_offset
            );
        }
        Ok(None) => text += "  clean-shutdown marker: none (next open scans the active segment)\n",
        Err(e) => text += &format!("  clean-shutdown marker: CORRUPT ({e})\n"),
    }
    out.write_all(text.as_bytes()).ctx("write dump", dir)?;
    let mut bases: Vec<i64> = fs::read_dir(dir)
        .ctx("list dir", dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| parse_segment_name(&e.file_name().to_string_lossy()))
        .collect();
    bases.sort_unstable();
    for base in bases {
        dump_segment(dir, base, out)?;
    }
    Ok(())
}

/// Lists one segment: every batch with its CRC status, then both indexes.
pub fn dump_segment(dir: &Path, base_offset: i64, out: &mut impl Write) -> Result<()> {
    let path = crate::segment::segment_path(dir, base_offset);
    let file = File::open(&path).ctx("open segment", &path)?;
    let len = file.metadata().ctx("stat segment", &path)?.len();
    let mut text = format!("  segment {} size={len}\n", path.display());
    let mut pos = 0u64;
    let mut buf = Vec::new();
    let mut hdr = [0u8; HEADER_LEN];
    let mut batches = 0u64;
    while pos < len {
        let avail = (len - pos).min(HEADER_LEN as u64) as usize;
        file.read_exact_at(&mut hdr[..avail], pos)
            .ctx("read segment", &path)?;
        let h = match BatchHeader::parse(&hdr[..avail]) {
            Ok(h) => h,
            Err(e) => {
                text += &format!("    position={pos}: unreadable batch header ({e}); stopping\n");
                break;
            }
        };
        let size = h.total_size() as u64;
        if size > len - pos {
            text += &format!(
                "    position={pos}: batch of {size} bytes runs past the end of the file (torn write); stopping\n"
            );
            break;
        }
        buf.resize(h.total_size(), 0);
        file.read_exact_at(&mut buf, pos)
            .ctx("read segment", &path)?;
        let status = match batch::validate(&buf, ValidationMode::Replica) {
            Ok(_) => "ok".to_string(),
            Err(e) => format!("INVALID ({e})"),
        };
        let compression = h.compression().map_or("unknown", |c| c.name());
        text += &format!(
            "    base_offset={} last_offset={} count={} epoch={} max_timestamp={} compression={} size={} position={} crc={:#010x} {}\n",
            h.base_offset,
            h.last_offset(),
            h.record_count,
            h.partition_leader_epoch,
            h.max_timestamp,
            compression,
            size,
            pos,
            h.crc,
            status
        );
        batches += 1;
        pos += size;
    }
    text += &format!("    {batches} batches\n");
    match SegmentIndex::load(dir, base_offset, len) {
        Ok(Some((index, meta))) => {
            text += &format!(
                "    index: next_offset={} max_timestamp={} offset_of_max_timestamp={} first_batch_timestamp={}\n",
                meta.next_offset,
                meta.max_timestamp,
                meta.offset_of_max_timestamp,
                meta.first_batch_timestamp
            );
            text += &format!("    offset index: {} entries\n", index.offsets.len());
            for e in &index.offsets {
                text += &format!(
                    "      offset={} position={}\n",
                    base_offset + i64::from(e.relative_offset),
                    e.position
                );
            }
            text += &format!("    time index: {} entries\n", index.times.len());
            for e in &index.times {
                text += &format!(
                    "      timestamp={} offset={}\n",
                    e.timestamp,
                    base_offset + i64::from(e.relative_offset)
                );
            }
        }
        Ok(None) => {
            text += "    index files: missing or stale (kept in memory for the active segment; rebuilt at open)\n"
        }
        Err(e) => text += &format!("    index files: CORRUPT ({e})\n"),
    }
    out.write_all(text.as_bytes()).ctx("write dump", &path)
}
