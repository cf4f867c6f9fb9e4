//! Where the single node keeps its cluster metadata (cluster id, topics, topic ids, partition
//! counts, per-topic config overrides).
//!
//! Only the single-node seam without a controller uses it ([`crate::Broker::open`]: this crate's
//! tests, the interop harness, benchmarks); `gregor server` takes its metadata from the
//! controller quorum ([`crate::quorum`]). The broker only calls
//! [`MetadataStore::load`] at startup and [`MetadataStore::save`] after each change, with the
//! whole (small) state. [`FileMetadataStore`] writes it as one file:
//!
//! ```text
//! `gregor_storage::checkpoint::seal`: magic "GRMD" | version u16 BE | body length u32 BE | body
//! (JSON) | crc32c of everything before it, u32 BE
//! ```
//!
//! written atomically (temp file, fsync, rename, fsync directory), so a crash leaves either the
//! old or the new state, and a flipped byte is detected rather than silently believed.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use gregor_storage::StorageError;
use gregor_storage::checkpoint::{seal, unseal, write_atomic};
use serde::{Deserialize, Serialize};

/// Everything the broker persists about the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterMetadata {
    /// Kafka's 22-character cluster id, made once when the data dir is first used.
    pub cluster_id: String,
    /// Topics by name.
    pub topics: BTreeMap<String, TopicMetadata>,
}

/// One topic as persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicMetadata {
    /// Topic id (UUID v4), stable for the topic's lifetime.
    pub id: uuid::Uuid,
    /// Number of partitions, numbered 0..count.
    pub partitions: i32,
    /// Per-topic config overrides (Kafka names → values), already validated.
    pub configs: BTreeMap<String, String>,
}

/// Why the metadata could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum MetadataStoreError {
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
        source: gregor_storage::StorageError,
    },
    /// The file exists but is not a metadata file we can trust.
    #[error("corrupt metadata file {path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What check failed.
        reason: String,
    },
}

/// Loads and saves the broker's cluster metadata.
pub trait MetadataStore: Send + Sync + std::fmt::Debug {
    /// The saved state, or `None` if nothing was ever saved.
    fn load(&self) -> Result<Option<ClusterMetadata>, MetadataStoreError>;
    /// Replaces the saved state; durable when it returns.
    fn save(&self, metadata: &ClusterMetadata) -> Result<(), MetadataStoreError>;
}

const MAGIC: [u8; 4] = *b"GRMD";
const VERSION: u16 = 1;
/// File name inside the data directory.
pub const FILE_NAME: &str = "gregor-cluster.meta";

/// [`MetadataStore`] backed by one file in the data directory.
#[derive(Debug)]
pub struct FileMetadataStore {
    path: PathBuf,
}

impl FileMetadataStore {
    /// A store for `dir/gregor-cluster.meta`; the directory must exist.
    pub fn new(dir: &Path) -> Self {
        FileMetadataStore {
            path: dir.join(FILE_NAME),
        }
    }

    /// Path of the metadata file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(
        &self,
        op: &'static str,
        path: &Path,
    ) -> impl FnOnce(std::io::Error) -> MetadataStoreError {
        let path = path.to_path_buf();
        move |source| MetadataStoreError::Io { op, path, source }
    }
}

/// Serializes metadata into the on-disk format: JSON in the sealed envelope shared by every
/// Gregor state file (magic, version, length, CRC-32C).
pub fn encode(metadata: &ClusterMetadata) -> Vec<u8> {
    // Serializing plain structs of strings and numbers cannot fail.
    let body = serde_json::to_vec(metadata).unwrap_or_default();
    seal(MAGIC, VERSION, &body)
}

/// Parses the on-disk format; `Err(reason)` names the failed check.
pub fn decode(bytes: &[u8]) -> Result<ClusterMetadata, String> {
    let body = unseal(Path::new(FILE_NAME), bytes, MAGIC, VERSION).map_err(|e| match e {
        StorageError::CorruptCheckpoint { reason, .. } => reason,
        other => other.to_string(),
    })?;
    serde_json::from_slice(body).map_err(|e| format!("bad body: {e}"))
}

impl MetadataStore for FileMetadataStore {
    fn load(&self) -> Result<Option<ClusterMetadata>, MetadataStoreError> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io("read", &self.path)(e)),
        };
        decode(&bytes)
            .map(Some)
            .map_err(|reason| MetadataStoreError::Corrupt {
                path: self.path.clone(),
                reason,
            })
    }

    fn save(&self, metadata: &ClusterMetadata) -> Result<(), MetadataStoreError> {
        write_atomic(&self.path, &encode(metadata)).map_err(|source| MetadataStoreError::Write {
            path: self.path.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ClusterMetadata {
        let mut topics = BTreeMap::new();
        let mut configs = BTreeMap::new();
        configs.insert("retention.ms".to_string(), "1000".to_string());
        topics.insert(
            "t".to_string(),
            TopicMetadata {
                id: uuid::Uuid::new_v4(),
                partitions: 3,
                configs,
            },
        );
        ClusterMetadata {
            cluster_id: "abc".into(),
            topics,
        }
    }

    #[test]
    fn round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileMetadataStore::new(dir.path());
        assert_eq!(store.load().unwrap(), None);
        let m = sample();
        store.save(&m).unwrap();
        assert_eq!(store.load().unwrap(), Some(m.clone()));
        assert!(
            !store.path().with_extension("meta.tmp").exists(),
            "temp file renamed away"
        );
        let mut m2 = m;
        m2.topics.clear();
        store.save(&m2).unwrap();
        assert_eq!(store.load().unwrap(), Some(m2));
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let bytes = encode(&sample());
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert!(decode(&b).is_err(), "flip at byte {i} went unnoticed");
        }
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode(&[]).is_err());
    }

    #[test]
    fn corrupt_file_is_an_error_not_an_empty_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileMetadataStore::new(dir.path());
        store.save(&sample()).unwrap();
        let mut bytes = fs::read(store.path()).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 1;
        fs::write(store.path(), bytes).unwrap();
        assert!(matches!(
            store.load(),
            Err(MetadataStoreError::Corrupt { .. })
        ));
    }
}
