//! openraft's `RaftLogStorage` over a [`KvBackend`].

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{RaftLogReader, StorageIOError, Vote};

use super::{KvBackend, KvOp, StoreError, keys};
use crate::raft_types::{Entry, LogId, NodeId, StorageError, TypeConfig};

/// The Raft log, vote and committed pointer. Clones share the backend (one is the log reader).
#[derive(Debug)]
pub struct LogStore<B> {
    kv: Arc<B>,
}

impl<B> Clone for LogStore<B> {
    fn clone(&self) -> Self {
        Self {
            kv: self.kv.clone(),
        }
    }
}

fn read_err(e: impl Into<StoreError>) -> StorageError {
    StorageIOError::read_logs(&e.into()).into()
}

fn write_err(e: impl Into<StoreError>) -> StorageError {
    StorageIOError::write_logs(&e.into()).into()
}

impl<B: KvBackend> LogStore<B> {
    /// A log store over `kv`.
    pub fn new(kv: Arc<B>) -> Self {
        Self { kv }
    }

    fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        match self.kv.get(key)? {
            Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
            None => Ok(None),
        }
    }

    fn decode_entry(v: &[u8]) -> Result<Entry, StoreError> {
        Ok(serde_json::from_slice(v)?)
    }
}

impl<B: KvBackend> RaftLogReader<TypeConfig> for LogStore<B> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let from = match range.start_bound() {
            Bound::Included(i) => keys::log(*i),
            Bound::Excluded(i) => keys::log(i.saturating_add(1)),
            Bound::Unbounded => keys::log(0),
        };
        let to = match range.end_bound() {
            Bound::Included(i) if *i == u64::MAX => keys::log_end(),
            Bound::Included(i) => keys::log(i + 1),
            Bound::Excluded(i) => keys::log(*i),
            Bound::Unbounded => keys::log_end(),
        };
        self.kv
            .range(&from, &to)
            .map_err(read_err)?
            .iter()
            .map(|(_, v)| Self::decode_entry(v).map_err(read_err))
            .collect()
    }
}

impl<B: KvBackend> RaftLogStorage<TypeConfig> for LogStore<B> {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.get_json(keys::PURGED).map_err(read_err)?;
        let last = self
            .kv
            .last_in(&keys::log(0), &keys::log_end())
            .map_err(read_err)?;
        let last_log_id = match last {
            Some((_, v)) => Some(Self::decode_entry(&v).map_err(read_err)?.log_id),
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        let err = |e: StoreError| StorageError::from(StorageIOError::write_vote(&e));
        let v = serde_json::to_vec(vote).map_err(|e| err(e.into()))?;
        self.kv
            .write(vec![KvOp::Put(keys::VOTE.to_vec(), v)])
            .map_err(err)?;
        // A vote must be durable before it is acted on.
        self.kv.flush().await.map_err(err)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.get_json(keys::VOTE)
            .map_err(|e| StorageIOError::read_vote(&e).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not flushed: losing it on a crash only means re-applying less on restart; it can never
        // point past what this node has durably appended.
        let v = serde_json::to_vec(&committed).map_err(write_err)?;
        self.kv
            .write(vec![KvOp::Put(keys::COMMITTED.to_vec(), v)])
            .map_err(write_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self
            .get_json::<Option<LogId>>(keys::COMMITTED)
            .map_err(read_err)?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut ops = Vec::new();
        for e in entries {
            let v = serde_json::to_vec(&e).map_err(write_err)?;
            ops.push(KvOp::Put(keys::log(e.log_id.index), v));
        }
        self.kv.write(ops).map_err(write_err)?;
        // Acknowledge only once the entries are on disk: a vote counted by the leader must
        // survive this node crashing.
        match self.kv.flush().await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(write_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.kv
            .write(vec![KvOp::DeleteRange(
                keys::log(log_id.index),
                keys::log_end(),
            )])
            .map_err(write_err)?;
        self.kv.flush().await.map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let v = serde_json::to_vec(&Some(log_id)).map_err(write_err)?;
        // One batch: the purged marker and the deletion become durable together.
        self.kv
            .write(vec![
                KvOp::Put(keys::PURGED.to_vec(), v),
                KvOp::DeleteRange(keys::log(0), keys::log(log_id.index.saturating_add(1))),
            ])
            .map_err(write_err)
    }
}
