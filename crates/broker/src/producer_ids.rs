//! Producer ids for InitProducerId, handed out from blocks like Kafka's `ProducerIdManager`.
//!
//! [`ProducerIdAllocator`] is the seam: in a cluster
//! [`ControllerProducerIds`](crate::quorum::ControllerProducerIds) takes blocks of
//! [`BLOCK_SIZE`] from the controller (`AllocateProducerIds`, KIP-730); the single-node seam
//! without a controller uses [`LocalProducerIdAllocator`], which reserves blocks in a small file
//! in the data directory. The broker code above the trait does not change.
//!
//! The file records the first id of the *next* block and is rewritten (durably) before any id of
//! a new block is handed out, so ids never repeat across restarts; a crash wastes at most the
//! rest of one block, as in Kafka.
//!
//! ```text
//! `gregor_storage::checkpoint::seal`: magic "GRPI" | version u16 BE | body length u32 BE |
//! next_block_start i64 BE | crc32c of everything before it, u32 BE
//! ```
//!
//! written atomically (temp file, fsync, rename, fsync directory) as `metadata_store`.

use std::fs;
use std::path::{Path, PathBuf};

use gregor_storage::StorageError;
use gregor_storage::checkpoint::{seal, unseal, write_atomic};
use parking_lot::Mutex;

/// Ids per block (Kafka's `ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE`).
pub const BLOCK_SIZE: i64 = 1000;
/// File name inside the data directory.
pub const FILE_NAME: &str = "gregor-producer-ids";

const MAGIC: [u8; 4] = *b"GRPI";
const VERSION: u16 = 1;

/// Why a producer id could not be allocated.
#[derive(Debug, thiserror::Error)]
pub enum ProducerIdError {
    /// Filesystem failure.
    #[error("{op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file could not be replaced atomically.
    #[error("write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: StorageError,
    },
    /// The file exists but cannot be trusted.
    #[error("corrupt producer id file {path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What check failed.
        reason: String,
    },
    /// Every non-negative i64 has been handed out.
    #[error("producer ids exhausted")]
    Exhausted,
    /// The controller did not hand out a block.
    #[error("controller: {0}")]
    Controller(String),
}

/// Hands out producer ids that are never reused.
pub trait ProducerIdAllocator: Send + Sync + std::fmt::Debug {
    /// A fresh producer id. May block on disk (or, later, on the controller).
    fn next_id(&self) -> Result<i64, ProducerIdError>;
}

/// Encodes the file contents: the next block start in the shared sealed envelope.
pub fn encode(next_block_start: i64) -> Vec<u8> {
    seal(MAGIC, VERSION, &next_block_start.to_be_bytes())
}

/// Decodes the file contents; `Err(reason)` names the failed check.
pub fn decode(bytes: &[u8]) -> Result<i64, String> {
    let body = unseal(Path::new(FILE_NAME), bytes, MAGIC, VERSION).map_err(|e| match e {
        StorageError::CorruptCheckpoint { reason, .. } => reason,
        other => other.to_string(),
    })?;
    let body: [u8; 8] = body
        .try_into()
        .map_err(|_| format!("body is {} bytes, expected 8", body.len()))?;
    let next = i64::from_be_bytes(body);
    if next < 0 {
        return Err(format!("negative next block start {next}"));
    }
    Ok(next)
}

#[derive(Debug)]
struct Block {
    /// Next id to hand out.
    next: i64,
    /// First id after the block (the persisted next block start).
    end: i64,
}

/// [`ProducerIdAllocator`] for a single node: blocks reserved in `<data dir>/gregor-producer-ids`.
#[derive(Debug)]
pub struct LocalProducerIdAllocator {
    path: PathBuf,
    block: Mutex<Option<Block>>,
}

impl LocalProducerIdAllocator {
    /// An allocator for `dir/gregor-producer-ids`; the directory must exist. Nothing is read
    /// until the first id is needed.
    pub fn new(dir: &Path) -> Self {
        LocalProducerIdAllocator {
            path: dir.join(FILE_NAME),
            block: Mutex::new(None),
        }
    }

    fn io(&self, op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ProducerIdError {
        let path = path.to_path_buf();
        move |source| ProducerIdError::Io { op, path, source }
    }

    fn load(&self) -> Result<i64, ProducerIdError> {
        match fs::read(&self.path) {
            Ok(b) => decode(&b).map_err(|reason| ProducerIdError::Corrupt {
                path: self.path.clone(),
                reason,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(self.io("read", &self.path)(e)),
        }
    }

    fn save(&self, next_block_start: i64) -> Result<(), ProducerIdError> {
        write_atomic(&self.path, &encode(next_block_start)).map_err(|source| {
            ProducerIdError::Write {
                path: self.path.clone(),
                source,
            }
        })
    }
}

impl ProducerIdAllocator for LocalProducerIdAllocator {
    fn next_id(&self) -> Result<i64, ProducerIdError> {
        let mut guard = self.block.lock();
        if let Some(b) = guard.as_mut()
            && b.next < b.end
        {
            let id = b.next;
            b.next += 1;
            return Ok(id);
        }
        // Reserve the next block durably before using any id from it.
        let start = match guard.as_ref() {
            Some(b) => b.end,
            None => self.load()?,
        };
        let end = start
            .checked_add(BLOCK_SIZE)
            .ok_or(ProducerIdError::Exhausted)?;
        self.save(end)?;
        tracing::debug!(start, end, "reserved producer id block");
        *guard = Some(Block {
            next: start + 1,
            end,
        });
        Ok(start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_across_blocks_and_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let a = LocalProducerIdAllocator::new(dir.path());
        let first: Vec<i64> = (0..1500).map(|_| a.next_id().unwrap()).collect();
        assert_eq!(first, (0..1500).collect::<Vec<_>>());
        assert_eq!(
            decode(&fs::read(dir.path().join(FILE_NAME)).unwrap()),
            Ok(2000)
        );
        drop(a);
        // A restart skips the rest of the reserved block: no id is ever handed out twice.
        let b = LocalProducerIdAllocator::new(dir.path());
        assert_eq!(b.next_id().unwrap(), 2000);
        assert_eq!(b.next_id().unwrap(), 2001);
        assert!(!dir.path().join(FILE_NAME).with_extension("tmp").exists());
    }

    #[test]
    fn damage_is_an_error_not_a_reset() {
        let bytes = encode(5000);
        assert_eq!(decode(&bytes), Ok(5000));
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x20;
            assert!(decode(&b).is_err(), "flip at {i}");
        }
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode(&encode(-1)).is_err());
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE_NAME), b"garbage").unwrap();
        let a = LocalProducerIdAllocator::new(dir.path());
        assert!(matches!(a.next_id(), Err(ProducerIdError::Corrupt { .. })));
    }

    #[test]
    fn exhaustion_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE_NAME), encode(i64::MAX - 10)).unwrap();
        let a = LocalProducerIdAllocator::new(dir.path());
        assert!(matches!(a.next_id(), Err(ProducerIdError::Exhausted)));
    }
}
