//! openraft's `RaftStateMachine`: applies commands to the in-memory [`MetadataImage`] and
//! persists snapshots through the [`KvBackend`].

use std::collections::VecDeque;
use std::io::Cursor;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, EntryPayload, RaftSnapshotBuilder, SnapshotMeta, StorageIOError, StoredMembership,
};
use tokio::sync::watch;

use super::{KvBackend, KvOp, StoreError, keys};
use crate::metadata::{Command, CommandResult, MetadataImage};
use crate::raft_types::{Entry, LogId, NodeId, StorageError, TypeConfig};

/// How many applied commands stay in memory for brokers that are slightly behind; a broker
/// further behind gets a snapshot of the image instead.
const RETAINED_RECORDS: usize = 4096;

/// One applied command and its offset (the Raft log index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataRecord {
    /// Log index of the command.
    pub offset: u64,
    /// The command.
    pub command: Command,
}

/// What a reader that has everything before `from` must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordsSince {
    /// These records, in order (possibly none yet).
    Records(Vec<MetadataRecord>),
    /// The records were dropped from memory: start over from this image.
    Snapshot(MetadataImage),
}

#[derive(Debug, Default)]
struct SmState {
    last_applied: Option<LogId>,
    membership: StoredMembership<NodeId, BasicNode>,
    image: MetadataImage,
    /// The last [`RETAINED_RECORDS`] applied commands, ascending by offset.
    recent: VecDeque<MetadataRecord>,
    /// Offsets at or below this are not in `recent` (purged from memory or from a snapshot).
    recent_floor: u64,
}

/// A read-only handle on the applied metadata, shared with the broker-facing service.
#[derive(Debug, Clone)]
pub struct MetadataView {
    state: Arc<RwLock<SmState>>,
    applied: watch::Receiver<u64>,
}

impl MetadataView {
    fn read(&self) -> RwLockReadGuard<'_, SmState> {
        // Writers replace whole values; a poisoned lock still holds a consistent state.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the current image.
    pub fn image(&self) -> MetadataImage {
        self.read().image.clone()
    }

    /// The offset of the last applied entry.
    pub fn applied_offset(&self) -> u64 {
        self.read().image.offset
    }

    /// A receiver that changes whenever entries are applied (value: last applied offset).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.applied.clone()
    }

    /// The records after `from - 1`, i.e. with `offset >= from`, or a snapshot when they are
    /// no longer retained.
    pub fn records_since(&self, from: u64) -> RecordsSince {
        // Offsets start at 1 (Raft index 0 is never a command).
        let from = from.max(1);
        let s = self.read();
        if from <= s.recent_floor && s.image.offset >= from {
            return RecordsSince::Snapshot(s.image.clone());
        }
        RecordsSince::Records(
            s.recent
                .iter()
                .filter(|r| r.offset >= from)
                .cloned()
                .collect(),
        )
    }
}

/// The controller state machine over a [`KvBackend`].
#[derive(Debug)]
pub struct StateMachineStore<B> {
    kv: Arc<B>,
    state: Arc<RwLock<SmState>>,
    applied_tx: watch::Sender<u64>,
    snapshot_seq: u64,
}

fn read_snapshot(e: impl Into<StoreError>) -> StorageError {
    StorageIOError::read_snapshot(None, &e.into()).into()
}

fn write_snapshot(e: impl Into<StoreError>) -> StorageError {
    StorageIOError::write_snapshot(None, &e.into()).into()
}

impl<B: KvBackend> StateMachineStore<B> {
    /// Opens the state machine, restoring the last persisted snapshot if there is one.
    pub fn open(kv: Arc<B>) -> Result<Self, StoreError> {
        let mut state = SmState::default();
        if let Some((meta, data)) = load_snapshot(kv.as_ref())? {
            state.image = MetadataImage::decode(&data)?;
            state.last_applied = meta.last_log_id;
            state.membership = meta.last_membership;
            state.recent_floor = state.image.offset;
        }
        let (applied_tx, _) = watch::channel(state.image.offset);
        Ok(Self {
            kv,
            state: Arc::new(RwLock::new(state)),
            applied_tx,
            snapshot_seq: 0,
        })
    }

    /// A read handle for the broker-facing service and for tests.
    pub fn view(&self) -> MetadataView {
        MetadataView {
            state: self.state.clone(),
            applied: self.applied_tx.subscribe(),
        }
    }

    fn write(&self) -> RwLockWriteGuard<'_, SmState> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// A persisted snapshot: its meta and the encoded image.
type StoredSnapshot = (SnapshotMeta<NodeId, BasicNode>, Vec<u8>);

fn load_snapshot<B: KvBackend>(kv: &B) -> Result<Option<StoredSnapshot>, StoreError> {
    let (Some(meta), Some(data)) = (kv.get(keys::SNAPSHOT_META)?, kv.get(keys::SNAPSHOT_DATA)?)
    else {
        return Ok(None);
    };
    Ok(Some((serde_json::from_slice(&meta)?, data)))
}

/// Builds a snapshot from a copy of the state taken when the builder was created.
#[derive(Debug)]
pub struct SnapshotBuilder<B> {
    kv: Arc<B>,
    last_applied: Option<LogId>,
    membership: StoredMembership<NodeId, BasicNode>,
    image: MetadataImage,
    seq: u64,
}

impl<B: KvBackend> RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder<B> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let data = self.image.encode();
        let snapshot_id = match self.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, self.seq),
            None => format!("none-{}", self.seq),
        };
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
            snapshot_id,
        };
        persist_snapshot(self.kv.as_ref(), &meta, &data).await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

async fn persist_snapshot<B: KvBackend>(
    kv: &B,
    meta: &SnapshotMeta<NodeId, BasicNode>,
    data: &[u8],
) -> Result<(), StorageError> {
    let m = serde_json::to_vec(meta).map_err(write_snapshot)?;
    kv.write(vec![
        KvOp::Put(keys::SNAPSHOT_META.to_vec(), m),
        KvOp::Put(keys::SNAPSHOT_DATA.to_vec(), data.to_vec()),
    ])
    .map_err(write_snapshot)?;
    // The log may be purged up to this snapshot next, so it must be durable first.
    kv.flush().await.map_err(write_snapshot)
}

impl<B: KvBackend> RaftStateMachine<TypeConfig> for StateMachineStore<B> {
    type SnapshotBuilder = SnapshotBuilder<B>;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership<NodeId, BasicNode>), StorageError> {
        let s = self.write();
        Ok((s.last_applied, s.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut results = Vec::new();
        let last = {
            let mut s = self.write();
            for entry in entries {
                let index = entry.log_id.index;
                s.last_applied = Some(entry.log_id);
                let result = match entry.payload {
                    EntryPayload::Blank => {
                        s.image.offset = index;
                        CommandResult::Applied
                    }
                    EntryPayload::Membership(m) => {
                        s.image.offset = index;
                        s.membership = StoredMembership::new(Some(entry.log_id), m);
                        CommandResult::Applied
                    }
                    EntryPayload::Normal(command) => {
                        let r = s.image.apply(index, &command);
                        s.recent.push_back(MetadataRecord {
                            offset: index,
                            command,
                        });
                        if s.recent.len() > RETAINED_RECORDS
                            && let Some(dropped) = s.recent.pop_front()
                        {
                            s.recent_floor = dropped.offset;
                        }
                        r
                    }
                };
                results.push(result);
            }
            s.image.offset
        };
        self.applied_tx.send_replace(last);
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshot_seq += 1;
        let s = self.write();
        SnapshotBuilder {
            kv: self.kv.clone(),
            last_applied: s.last_applied,
            membership: s.membership.clone(),
            image: s.image.clone(),
            seq: self.snapshot_seq,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let image = MetadataImage::decode(&data).map_err(read_snapshot)?;
        persist_snapshot(self.kv.as_ref(), meta, &data).await?;
        let offset = {
            let mut s = self.write();
            s.image = image;
            s.last_applied = meta.last_log_id;
            s.membership = meta.last_membership.clone();
            // Records before the snapshot are gone; readers behind it get the image.
            s.recent.clear();
            s.recent_floor = s.image.offset;
            s.image.offset
        };
        self.applied_tx.send_replace(offset);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(load_snapshot(self.kv.as_ref())
            .map_err(read_snapshot)?
            .map(|(meta, data)| Snapshot {
                meta,
                snapshot: Box::new(Cursor::new(data)),
            }))
    }
}

#[cfg(test)]
mod tests {
    use openraft::testing::log_id;

    use super::*;
    use crate::store::MemBackend;

    fn entry(index: u64, command: Command) -> Entry {
        Entry {
            log_id: log_id(1, 1, index),
            payload: EntryPayload::Normal(command),
        }
    }

    #[tokio::test]
    async fn readers_behind_the_retained_records_get_a_snapshot() {
        let kv = Arc::new(MemBackend::default());
        let mut sm = StateMachineStore::open(kv.clone()).unwrap();
        let register = Command::RegisterBroker {
            broker_id: 1,
            incarnation: uuid::Uuid::from_u128(1),
            endpoints: vec![],
            rack: None,
            clean_shutdown: true,
        };
        let unfence = Command::UnfenceBroker {
            broker_id: 1,
            broker_epoch: 1,
        };
        let results = sm
            .apply([entry(1, register.clone()), entry(2, unfence.clone())])
            .await
            .unwrap();
        assert_eq!(results[1], CommandResult::Applied);
        let view = sm.view();
        assert_eq!(
            view.records_since(2),
            RecordsSince::Records(vec![MetadataRecord {
                offset: 2,
                command: unfence
            }])
        );
        assert_eq!(view.records_since(3), RecordsSince::Records(vec![]));

        // Persist a snapshot, then reopen: the records before it are gone from memory, so a
        // reader from offset 1 gets the image, and one past it gets records.
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        let image = view.image();
        let reopened = StateMachineStore::open(kv).unwrap().view();
        assert_eq!(
            reopened.records_since(1),
            RecordsSince::Snapshot(image.clone())
        );
        assert_eq!(reopened.records_since(3), RecordsSince::Records(vec![]));
        assert_eq!(reopened.applied_offset(), 2);
        assert!(image.is_active(1));
    }
}
