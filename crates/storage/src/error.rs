//! Typed storage errors.
//!
//! Every variant keeps enough context (offsets, paths, the underlying `io::Error`) for an operator to
//! act on it. Each variant is one class of failure (corrupt batch, invalid record, too large, I/O,
//! ...), so the broker's single Kafka-error-code function maps them without parsing messages.

use std::io;
use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Everything that can go wrong in the storage engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The batch bytes are damaged: bad CRC, inconsistent lengths, records that do not end at the
    /// batch end. Kafka: `CORRUPT_MESSAGE` (2).
    #[error("corrupt record batch: {reason}")]
    CorruptMessage {
        /// What check failed.
        reason: String,
    },
    /// The batch is well formed but not acceptable: wrong magic, non-zero client base offset, more
    /// than one batch, inconsistent offset range. Kafka: `INVALID_RECORD` (87).
    #[error("invalid record: {reason}")]
    InvalidRecord {
        /// What check failed.
        reason: String,
    },
    /// A batch is larger than `max.message.bytes`. Kafka: `MESSAGE_TOO_LARGE` (10).
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    MessageTooLarge {
        /// Size of the batch in bytes.
        size: usize,
        /// The configured limit.
        max: u32,
    },
    /// The record set is larger than a whole segment. Kafka: `RECORD_LIST_TOO_LARGE` (18).
    #[error("record set of {size} bytes exceeds segment.bytes {max}")]
    RecordListTooLarge {
        /// Size of the record set in bytes.
        size: usize,
        /// The configured segment size.
        max: u64,
    },
    /// The compression codec bits name no known codec. Kafka: `UNSUPPORTED_COMPRESSION_TYPE` (76).
    #[error("unsupported compression codec {codec}")]
    UnsupportedCompression {
        /// The codec id found in the attributes (`attributes & 7`).
        codec: u8,
    },
    /// A read or truncation point lies outside the log. Kafka: `OFFSET_OUT_OF_RANGE` (1).
    #[error("offset {offset} is out of range [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        /// The requested offset.
        offset: i64,
        /// Current log start offset.
        log_start_offset: i64,
        /// Current log end offset.
        log_end_offset: i64,
    },
    /// A follower append whose first offset is not the log end offset, or whose batches are not
    /// contiguous.
    #[error("non-contiguous append: expected offset {expected}, got {actual}")]
    NonContiguousAppend {
        /// The offset the log expected next.
        expected: i64,
        /// The offset found in the batch.
        actual: i64,
    },
    /// An operating-system I/O error (disk full, EIO, permissions). Kafka: `KAFKA_STORAGE_ERROR` (56).
    #[error("{op} {path}: {source}")]
    Io {
        /// What we were doing.
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A checkpoint or marker file failed its magic, version, length or CRC check.
    #[error("corrupt checkpoint {path}: {reason}")]
    CorruptCheckpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What check failed.
        reason: String,
    },
    /// A sealed (non-active) segment is damaged. Sealed segments were fsynced at roll, so this is a
    /// disk fault; we refuse to guess rather than silently drop acknowledged data.
    #[error("corrupt segment {path} at position {position}: {reason}")]
    CorruptSegment {
        /// The segment file.
        path: PathBuf,
        /// Byte position of the first bad batch.
        position: u64,
        /// What check failed.
        reason: String,
    },
    /// An earlier write failed and could not be rolled back; the log refuses further writes until
    /// it is reopened (which runs recovery).
    #[error("log {path} is offline after an unrecoverable write failure")]
    LogOffline {
        /// The partition directory.
        path: PathBuf,
    },
    /// The log was closed or deleted; reopen it to use it again.
    #[error("log {path} is closed")]
    Closed {
        /// The partition directory.
        path: PathBuf,
    },
    /// An idempotent batch whose sequence does not follow the producer's last one, or a new
    /// epoch that does not start at sequence 0. Kafka: `OUT_OF_ORDER_SEQUENCE_NUMBER` (45).
    #[error("producer {producer_id}: {reason}")]
    OutOfOrderSequence {
        /// The producer id.
        producer_id: i64,
        /// Expected and found sequence.
        reason: String,
    },
    /// An idempotent batch from an older producer epoch. Kafka: `INVALID_PRODUCER_EPOCH` (47).
    #[error("producer {producer_id}: epoch {epoch} is older than the current epoch {current}")]
    InvalidProducerEpoch {
        /// The producer id.
        producer_id: i64,
        /// The batch's epoch.
        epoch: i16,
        /// The producer's current epoch in this partition.
        current: i16,
    },
    /// Another process (or another [`crate::LogManager`] in this one) holds the data
    /// directory's lock file: two owners would append to and recover the same segments.
    #[error("{path} is locked: another gregor process is using this data directory")]
    DirectoryLocked {
        /// The lock file.
        path: PathBuf,
        /// What `flock` said.
        #[source]
        source: io::Error,
    },
    /// The caller passed an argument that makes no sense for this log.
    #[error("invalid argument: {reason}")]
    InvalidArgument {
        /// What is wrong.
        reason: String,
    },
}

impl StorageError {
    pub(crate) fn corrupt(reason: impl Into<String>) -> Self {
        StorageError::CorruptMessage {
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        StorageError::InvalidRecord {
            reason: reason.into(),
        }
    }
}

/// Attaches an operation name and path to an `io::Error`.
pub(crate) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| StorageError::Io {
            op,
            path: path.to_path_buf(),
            source,
        })
    }
}
