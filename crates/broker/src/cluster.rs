//! The broker's view of the rest of the cluster, and the seam between the data plane and the
//! metadata plane.
//!
//! The replication code (leaders computing the HW and the ISR, followers fetching) needs three
//! things from "the cluster": who it is (node id, broker epoch), where other brokers' replication
//! endpoints are, and a way to ask the controller to change an ISR (KIP-497 AlterPartition). It
//! gets them through [`ClusterLink`]. The metadata path (the quorum link in a cluster, or the
//! local metadata file of a single node) pushes each partition's [`PartitionAssignment`] into the
//! broker with [`crate::Broker::apply_assignment`].
//!
//! [`LocalLink`] is the single-node implementation: one broker, ISR = {itself}, so an ISR change
//! never needs a controller.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;

use crate::error::{BrokerError, Result};

/// A broker id (`node.id`).
pub type BrokerId = i32;

/// What the metadata says about one partition: the controller image's partition state, or a
/// single node's fixed defaults (leader = itself, epoch 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionAssignment {
    /// The current leader; `None` when the partition is offline.
    pub leader: Option<BrokerId>,
    /// Bumped by the controller on every leader change (and on controller-made ISR changes).
    pub leader_epoch: i32,
    /// Bumped on every change of the partition (KIP-497's guard for AlterPartition).
    pub partition_epoch: i32,
    /// Assigned replicas, preferred leader first.
    pub replicas: Vec<BrokerId>,
    /// The committed in-sync replicas.
    pub isr: Vec<BrokerId>,
    /// Eligible leader replicas (KIP-966); empty when unknown.
    pub elr: Vec<BrokerId>,
}

impl PartitionAssignment {
    /// A single node's partition: led by `node`, epoch 0, replicas = ISR = {node}.
    pub fn single_node(node: BrokerId) -> Self {
        PartitionAssignment {
            leader: Some(node),
            leader_epoch: 0,
            partition_epoch: 0,
            replicas: vec![node],
            isr: vec![node],
            elr: Vec::new(),
        }
    }
}

/// A leader's request to change a partition's ISR (KIP-497).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterIsr {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// The leader epoch the leader holds.
    pub leader_epoch: i32,
    /// The partition epoch the change is based on.
    pub partition_epoch: i32,
    /// The proposed ISR (contains the leader).
    pub new_isr: Vec<BrokerId>,
}

/// The partition as the controller committed it after an [`AlterIsr`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrCommitted {
    /// Leader epoch after the change.
    pub leader_epoch: i32,
    /// Partition epoch after the change.
    pub partition_epoch: i32,
    /// The committed ISR.
    pub isr: Vec<BrokerId>,
}

/// A boxed future, so [`ClusterLink`] stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the data plane needs from the cluster.
pub trait ClusterLink: Send + Sync + Debug {
    /// This broker's id.
    fn node_id(&self) -> BrokerId;

    /// This broker's current broker epoch (its registration offset; 0 on a single node).
    fn broker_epoch(&self) -> u64;

    /// `host:port` of another broker's replication (gRPC) listener, from its registration.
    fn replication_address(&self, broker: BrokerId) -> Option<String>;

    /// Asks the controller to change an ISR and waits for the commit. A refusal (stale epochs,
    /// not the leader, an ineligible replica) is an error and changed nothing.
    fn alter_isr(&self, request: AlterIsr) -> BoxFuture<'_, Result<IsrCommitted>>;
}

/// The single-node link: no other brokers, and an ISR change is committed at once (a single
/// node's ISR is always {itself}, so the replication code never asks for one).
#[derive(Debug, Clone)]
pub struct LocalLink {
    node_id: BrokerId,
}

impl LocalLink {
    /// The link of single node `node_id`.
    pub fn new(node_id: BrokerId) -> Self {
        LocalLink { node_id }
    }
}

impl ClusterLink for LocalLink {
    fn node_id(&self) -> BrokerId {
        self.node_id
    }

    fn broker_epoch(&self) -> u64 {
        0
    }

    fn replication_address(&self, _broker: BrokerId) -> Option<String> {
        None
    }

    fn alter_isr(&self, request: AlterIsr) -> BoxFuture<'_, Result<IsrCommitted>> {
        let node = self.node_id;
        Box::pin(async move {
            if request.new_isr != [node] {
                return Err(BrokerError::InvalidRequest(format!(
                    "a single node cannot have ISR {:?}",
                    request.new_isr
                )));
            }
            Ok(IsrCommitted {
                leader_epoch: request.leader_epoch,
                partition_epoch: request.partition_epoch + 1,
                isr: request.new_isr,
            })
        })
    }
}
