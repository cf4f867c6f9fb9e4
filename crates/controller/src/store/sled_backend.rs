//! The sled-backed [`KvBackend`]. sled 0.34 only fsyncs on its own every 500 ms, so durability
//! comes from the explicit [`KvBackend::flush`] the log store awaits before acknowledging.

use std::path::Path;

use super::{KvBackend, KvOp, KvPair, StoreError};

/// One sled tree holding the controller's Raft state.
#[derive(Debug, Clone)]
pub struct SledBackend {
    db: sled::Db,
    tree: sled::Tree,
}

impl SledBackend {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            // Controller metadata is small; keep sled's page cache modest.
            .cache_capacity(64 << 20)
            .open()?;
        let tree = db.open_tree("raft")?;
        Ok(Self { db, tree })
    }
}

impl KvBackend for SledBackend {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree.get(key)?.map(|v| v.to_vec()))
    }

    fn range(&self, from: &[u8], to: &[u8]) -> Result<Vec<KvPair>, StoreError> {
        if from >= to {
            return Ok(vec![]);
        }
        self.tree
            .range(from..to)
            .map(|r| {
                let (k, v) = r?;
                Ok((k.to_vec(), v.to_vec()))
            })
            .collect()
    }

    fn last_in(&self, from: &[u8], to: &[u8]) -> Result<Option<KvPair>, StoreError> {
        if from >= to {
            return Ok(None);
        }
        match self.tree.range(from..to).next_back() {
            Some(r) => {
                let (k, v) = r?;
                Ok(Some((k.to_vec(), v.to_vec())))
            }
            None => Ok(None),
        }
    }

    fn write(&self, ops: Vec<KvOp>) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for op in ops {
            match op {
                KvOp::Put(k, v) => batch.insert(k, v),
                KvOp::Delete(k) => batch.remove(k),
                KvOp::DeleteRange(from, to) => {
                    if from < to {
                        for k in self.tree.range(from..to).keys() {
                            batch.remove(k?);
                        }
                    }
                }
            }
        }
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_async().await?;
        Ok(())
    }
}
