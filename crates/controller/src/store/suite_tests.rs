//! openraft's storage conformance suite on both backends.

use std::sync::Arc;

use openraft::testing::{StoreBuilder, Suite};

use super::*;
use crate::raft_types::{StorageError, TypeConfig};

struct SledBuilder;

impl
    StoreBuilder<
        TypeConfig,
        LogStore<SledBackend>,
        StateMachineStore<SledBackend>,
        tempfile::TempDir,
    > for SledBuilder
{
    async fn build(
        &self,
    ) -> Result<
        (
            tempfile::TempDir,
            LogStore<SledBackend>,
            StateMachineStore<SledBackend>,
        ),
        StorageError,
    > {
        let dir = tempfile::tempdir().map_err(|e| openraft::StorageIOError::write(&e))?;
        let (log, sm) = open_sled(dir.path()).map_err(|e| openraft::StorageIOError::write(&e))?;
        Ok((dir, log, sm))
    }
}

struct MemBuilder;

impl StoreBuilder<TypeConfig, LogStore<MemBackend>, StateMachineStore<MemBackend>> for MemBuilder {
    async fn build(
        &self,
    ) -> Result<((), LogStore<MemBackend>, StateMachineStore<MemBackend>), StorageError> {
        let kv = Arc::new(MemBackend::default());
        let sm =
            StateMachineStore::open(kv.clone()).map_err(|e| openraft::StorageIOError::write(&e))?;
        Ok(((), LogStore::new(kv), sm))
    }
}

#[test]
fn sled_store_passes_the_openraft_suite() -> Result<(), StorageError> {
    Suite::test_all(SledBuilder)
}

#[test]
fn mem_store_passes_the_openraft_suite() -> Result<(), StorageError> {
    Suite::test_all(MemBuilder)
}
