//! Durable Raft state: log, vote, committed pointer and snapshots, over a small key-value trait.
//!
//! [`KvBackend`] is the swap point: [`SledBackend`] is the production store, [`MemBackend`] keeps
//! everything in memory for the simulation. The openraft traits are implemented once, on top of
//! the trait, by [`LogStore`] and [`StateMachineStore`].
//!
//! Key layout (one keyspace, so a batch is atomic across log, meta and snapshot):
//! - `l` + index (u64 BE) → JSON of the openraft entry (commands inside are our binary encoding)
//! - `m:vote`, `m:committed`, `m:purged` → JSON
//! - `s:meta` → JSON snapshot meta, `s:data` → encoded [`crate::metadata::MetadataImage`]
//!
//! The state machine itself is in memory and rebuilt on start from the last snapshot plus the
//! committed log (openraft re-applies up to the saved committed id); only snapshots are persisted
//! by the state machine, so apply costs no I/O.

// openraft fixes the error type of its storage traits; it is large but not ours to shrink.
#![allow(clippy::result_large_err)]

mod log;
mod mem;
mod sled_backend;
mod state_machine;

use std::future::Future;

pub use log::LogStore;
pub use mem::MemBackend;
pub use sled_backend::SledBackend;
pub use state_machine::{MetadataRecord, MetadataView, RecordsSince, StateMachineStore};

/// Errors of a [`KvBackend`] and of decoding what it holds.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed.
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    /// Stored JSON did not decode.
    #[error("corrupt stored value: {0}")]
    Json(#[from] serde_json::Error),
    /// A stored image did not decode.
    #[error("corrupt stored image: {0}")]
    Image(#[from] crate::metadata::DecodeError),
    /// A key did not have the expected shape.
    #[error("corrupt key {0:?}")]
    BadKey(Vec<u8>),
}

/// A key and its value.
pub type KvPair = (Vec<u8>, Vec<u8>);

/// One write in an atomic batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvOp {
    /// Insert or overwrite.
    Put(Vec<u8>, Vec<u8>),
    /// Remove one key.
    Delete(Vec<u8>),
    /// Remove every key in `[from, to)`.
    DeleteRange(Vec<u8>, Vec<u8>),
}

/// The minimal ordered key-value store the Raft storage needs.
pub trait KvBackend: Send + Sync + 'static {
    /// Reads one key.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Entries with `from <= key < to`, ascending.
    fn range(&self, from: &[u8], to: &[u8]) -> Result<Vec<KvPair>, StoreError>;
    /// The greatest entry with `from <= key < to`.
    fn last_in(&self, from: &[u8], to: &[u8]) -> Result<Option<KvPair>, StoreError>;
    /// Applies all ops atomically (all or none become visible, and survive a crash together).
    fn write(&self, ops: Vec<KvOp>) -> Result<(), StoreError>;
    /// Makes every completed write durable.
    fn flush(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

pub(crate) mod keys {
    pub(crate) const LOG_PREFIX: u8 = b'l';
    pub(crate) const VOTE: &[u8] = b"m:vote";
    pub(crate) const COMMITTED: &[u8] = b"m:committed";
    pub(crate) const PURGED: &[u8] = b"m:purged";
    pub(crate) const SNAPSHOT_META: &[u8] = b"s:meta";
    pub(crate) const SNAPSHOT_DATA: &[u8] = b"s:data";

    pub(crate) fn log(index: u64) -> Vec<u8> {
        let mut k = Vec::with_capacity(9);
        k.push(LOG_PREFIX);
        k.extend_from_slice(&index.to_be_bytes());
        k
    }
    /// Exclusive upper bound of every log key.
    pub(crate) fn log_end() -> Vec<u8> {
        vec![LOG_PREFIX + 1]
    }
}

/// Opens a sled-backed log store and state machine in `dir`.
pub fn open_sled(
    dir: &std::path::Path,
) -> Result<(LogStore<SledBackend>, StateMachineStore<SledBackend>), StoreError> {
    let kv = std::sync::Arc::new(SledBackend::open(dir)?);
    Ok((LogStore::new(kv.clone()), StateMachineStore::open(kv)?))
}

#[cfg(test)]
mod suite_tests;
