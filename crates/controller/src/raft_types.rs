//! The openraft type configuration of the controller quorum.

use std::io::Cursor;

use crate::metadata::{Command, CommandResult};

/// A controller's node id (`node.id` of a process with the `controller` role).
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// openraft types for the controller quorum. (The macro requires this field order, and its
    /// `SnapshotData` needs `Cursor` in scope.)
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        Responder = openraft::impls::OneshotResponder<TypeConfig>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The Raft handle of the controller quorum.
pub type Raft = openraft::Raft<TypeConfig>;
/// openraft's storage error for our node id.
pub type StorageError = openraft::StorageError<NodeId>;
/// A log id.
pub type LogId = openraft::LogId<NodeId>;
/// A log entry.
pub type Entry = openraft::Entry<TypeConfig>;
