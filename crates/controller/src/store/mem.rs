//! An in-memory [`KvBackend`] for simulations and tests. Clones share the data, so a "restarted"
//! node reopens what the previous one wrote.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{KvBackend, KvOp, KvPair, StoreError};

/// In-memory ordered map; `flush` is a no-op.
#[derive(Debug, Clone, Default)]
pub struct MemBackend {
    map: Arc<Mutex<BTreeMap<Vec<u8>, Vec<u8>>>>,
}

impl MemBackend {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<Vec<u8>, Vec<u8>>> {
        // A panic while holding this lock cannot leave the map half-written (every op is one
        // map call), so a poisoned lock is still consistent.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl KvBackend for MemBackend {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().get(key).cloned())
    }

    fn range(&self, from: &[u8], to: &[u8]) -> Result<Vec<KvPair>, StoreError> {
        if from >= to {
            return Ok(vec![]);
        }
        Ok(self
            .lock()
            .range(from.to_vec()..to.to_vec())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn last_in(&self, from: &[u8], to: &[u8]) -> Result<Option<KvPair>, StoreError> {
        if from >= to {
            return Ok(None);
        }
        Ok(self
            .lock()
            .range(from.to_vec()..to.to_vec())
            .next_back()
            .map(|(k, v)| (k.clone(), v.clone())))
    }

    fn write(&self, ops: Vec<KvOp>) -> Result<(), StoreError> {
        let mut map = self.lock();
        for op in ops {
            match op {
                KvOp::Put(k, v) => {
                    map.insert(k, v);
                }
                KvOp::Delete(k) => {
                    map.remove(&k);
                }
                KvOp::DeleteRange(from, to) => {
                    if from < to {
                        let doomed: Vec<Vec<u8>> =
                            map.range(from..to).map(|(k, _)| k.clone()).collect();
                        for k in doomed {
                            map.remove(&k);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
