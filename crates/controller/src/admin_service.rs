//! The `ControllerAdmin` gRPC service: describe the quorum, and admin writes through it.
//!
//! * `DescribeCluster` is answered by any controller: a follower forwards it once to the leader
//!   (so the voters' matched indexes and lags come from the leader's replication metrics) and
//!   falls back to its own view, `from_leader = false`, when the leader cannot be reached.
//! * Writes (`CreateTopic`, `DeleteTopic`, `CreatePartitions`, `AlterConfigs`,
//!   `AllocateProducerIds`) run on the leader only: it confirms its leadership and waits until its
//!   image has applied everything committed before (`ensure_linearizable`), plans with the pure
//!   [`crate::planner`] on that image, proposes, and answers once a majority committed the entry.
//!   Other controllers answer `Unavailable` with the leader's address (`x-gregor-leader`).
//! * `ListTopics` returns the answering controller's own applied image, never forwarded.
//!
//! This is the API a broker uses to forward Kafka's CreateTopics, DeleteTopics,
//! CreatePartitions, IncrementalAlterConfigs and InitProducerId (block allocation) to the quorum.

use std::collections::BTreeMap;
use std::time::Duration;

use gregor_proto::controller::v1 as pb;
use gregor_proto::controller::v1::controller_admin_client::ControllerAdminClient;
use gregor_proto::controller::v1::controller_admin_server::ControllerAdmin;
use openraft::ServerState;
use openraft::error::{CheckIsLeaderError, RaftError};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::broker_service::{not_leader, rejected};
use crate::cluster_id::ClusterId;
use crate::error::{ControllerError, to_status};
use crate::grpc::check_cluster;
use crate::metadata::{BrokerId, Command, CommandResult, ConfigResource, MetadataImage};
use crate::node::propose;
use crate::planner::{self, CreateTopicRequest, PlanError};
use crate::raft_types::Raft;
use crate::store::MetadataView;

/// How long a write waits for the leader to confirm its leadership with a quorum.
const LEADERSHIP_CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// Time budget of a forwarded `DescribeCluster`.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves `gregor.controller.v1.ControllerAdmin`.
#[derive(Clone)]
pub struct AdminService {
    raft: Raft,
    view: MetadataView,
    cluster_id: ClusterId,
}

impl std::fmt::Debug for AdminService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminService")
            .field("cluster_id", &self.cluster_id)
            .finish_non_exhaustive()
    }
}

/// Checks a request's cluster id; empty (a tool that does not know it) is accepted.
fn check_optional_cluster(ours: &ClusterId, theirs: &str) -> Result<(), Status> {
    if theirs.is_empty() {
        Ok(())
    } else {
        check_cluster(ours, theirs)
    }
}

fn assignments(a: &[Vec<BrokerId>]) -> Vec<pb::PartitionAssignment> {
    a.iter()
        .map(|r| pb::PartitionAssignment {
            replicas: r.clone(),
        })
        .collect()
}

/// The highest index matched by a majority of `matched` (one entry per voter).
pub fn quorum_index(matched: &[u64]) -> u64 {
    let mut sorted = matched.to_vec();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted.get(sorted.len() / 2).copied().unwrap_or(0)
}

impl AdminService {
    /// A service over one controller's Raft handle and applied metadata.
    pub fn new(raft: Raft, view: MetadataView, cluster_id: ClusterId) -> Self {
        Self {
            raft,
            view,
            cluster_id,
        }
    }

    /// This controller's own answer to `DescribeCluster`.
    fn local_describe(&self) -> pb::DescribeClusterReply {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let from_leader = m.state == ServerState::Leader;
        let last = m.last_log_index.unwrap_or(0);
        let replication = m.replication.clone().unwrap_or_default();
        let mut voters = Vec::new();
        let mut matched_all = Vec::new();
        for id in membership.voter_ids() {
            let address = membership
                .get_node(&id)
                .map(|n| n.addr.clone())
                .unwrap_or_default();
            let matched = if !from_leader {
                None
            } else if id == m.id {
                Some(last)
            } else {
                replication
                    .get(&id)
                    .map(|l| l.as_ref().map_or(0, |l| l.index))
            };
            matched_all.push(matched.unwrap_or(0));
            voters.push(pb::VoterStatus {
                id,
                address,
                matched_index: matched,
                lag: matched.map(|i| last.saturating_sub(i)),
            });
        }
        let leader_address = m
            .current_leader
            .and_then(|id| membership.get_node(&id))
            .map(|n| n.addr.clone())
            .unwrap_or_default();
        let image = self.view.image();
        pb::DescribeClusterReply {
            cluster_id: self.cluster_id.to_string(),
            answered_by: m.id,
            from_leader,
            leader_id: m.current_leader,
            leader_address,
            term: m.current_term,
            committed_index: if from_leader {
                quorum_index(&matched_all)
            } else {
                0
            },
            applied_index: m.last_applied.map_or(0, |l| l.index),
            last_log_index: last,
            voters,
            brokers: image
                .brokers
                .values()
                .map(|b| pb::BrokerStatus {
                    id: b.id,
                    epoch: b.epoch,
                    fenced: b.fenced,
                    rack: b.rack.clone().unwrap_or_default(),
                    endpoints: b
                        .endpoints
                        .iter()
                        .map(|e| pb::Endpoint {
                            name: e.name.clone(),
                            host: e.host.clone(),
                            port: u32::from(e.port),
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    async fn forward_describe(&self, address: &str) -> Result<pb::DescribeClusterReply, Status> {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| Status::unavailable(e.to_string()))?
            .connect_timeout(FORWARD_TIMEOUT)
            .timeout(FORWARD_TIMEOUT);
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let reply = ControllerAdminClient::new(channel)
            .describe_cluster(pb::DescribeClusterRequest {
                cluster_id: self.cluster_id.to_string(),
                forwarded: true,
            })
            .await?;
        Ok(reply.into_inner())
    }

    /// Confirms leadership with a quorum and waits until everything committed before is applied
    /// locally, so plans see every acknowledged write.
    async fn linearize(&self) -> Result<(), ControllerError> {
        match tokio::time::timeout(LEADERSHIP_CHECK_TIMEOUT, self.raft.ensure_linearizable()).await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_))))
            | Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_))))
            | Err(_) => Err(not_leader(&self.raft)),
            Ok(Err(RaftError::Fatal(_))) => Err(ControllerError::ShuttingDown),
        }
    }

    /// Plans on the linearized image and commits every planned command. Returns the offset of
    /// the last one (the applied offset when nothing was planned) and each apply result.
    async fn write(
        &self,
        plan: impl FnOnce(&MetadataImage) -> Result<Vec<Command>, PlanError>,
    ) -> Result<(u64, Vec<CommandResult>), ControllerError> {
        self.linearize().await?;
        let cmds = plan(&self.view.image())?;
        let mut offset = self.view.applied_offset();
        let mut results = Vec::with_capacity(cmds.len());
        for cmd in cmds {
            let committed = propose(&self.raft, cmd).await?;
            offset = committed.offset;
            results.push(rejected(committed.result)?);
        }
        Ok((offset, results))
    }
}

#[tonic::async_trait]
impl ControllerAdmin for AdminService {
    async fn describe_cluster(
        &self,
        request: Request<pb::DescribeClusterRequest>,
    ) -> Result<Response<pb::DescribeClusterReply>, Status> {
        let req = request.into_inner();
        check_optional_cluster(&self.cluster_id, &req.cluster_id)?;
        let local = self.local_describe();
        if local.from_leader || req.forwarded || local.leader_address.is_empty() {
            return Ok(Response::new(local));
        }
        match self.forward_describe(&local.leader_address).await {
            Ok(reply) => Ok(Response::new(reply)),
            Err(e) => {
                tracing::debug!(error = %e, "describe: leader unreachable, answering locally");
                Ok(Response::new(local))
            }
        }
    }

    async fn create_topic(
        &self,
        request: Request<pb::CreateTopicRequest>,
    ) -> Result<Response<pb::CreateTopicReply>, Status> {
        let req = request.into_inner();
        check_optional_cluster(&self.cluster_id, &req.cluster_id)?;
        let replication_factor = u16::try_from(req.replication_factor).map_err(|_| {
            to_status(&ControllerError::Plan(
                PlanError::InvalidReplicationFactor {
                    replication_factor: u16::MAX,
                    active: 0,
                },
            ))
        })?;
        let topic_id = Uuid::new_v4();
        let plan_req = CreateTopicRequest {
            name: req.name,
            topic_id,
            partitions: req.partitions,
            replication_factor,
            configs: req.configs.into_iter().collect::<BTreeMap<_, _>>(),
        };
        let mut planned = Vec::new();
        let (offset, _) = self
            .write(|image| {
                let cmds = planner::plan_create_topic(image, &plan_req)?;
                if let Some(Command::CreateTopic { assignments, .. }) = cmds.first() {
                    planned.clone_from(assignments);
                }
                Ok(cmds)
            })
            .await
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::CreateTopicReply {
            topic_id: topic_id.to_string(),
            offset,
            assignments: assignments(&planned),
        }))
    }

    async fn delete_topic(
        &self,
        request: Request<pb::DeleteTopicRequest>,
    ) -> Result<Response<pb::DeleteTopicReply>, Status> {
        let req = request.into_inner();
        check_optional_cluster(&self.cluster_id, &req.cluster_id)?;
        let (offset, _) = self
            .write(|image| planner::plan_delete_topic(image, &req.name))
            .await
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::DeleteTopicReply { offset }))
    }

    async fn create_partitions(
        &self,
        request: Request<pb::CreatePartitionsRequest>,
    ) -> Result<Response<pb::CreatePartitionsReply>, Status> {
        let req = request.into_inner();
        check_optional_cluster(&self.cluster_id, &req.cluster_id)?;
        let mut planned = Vec::new();
        let (offset, _) = self
            .write(|image| {
                let cmds = planner::plan_create_partitions(image, &req.topic, req.total)?;
                if let Some(Command::CreatePartitions { assignments, .. }) = cmds.first() {
                    planned.clone_from(assignments);
                }
                Ok(cmds)
            })
            .await
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::CreatePartitionsReply {
            offset,
            assignments: assignments(&planned),
        }))
    }

    async fn alter_configs(
        &self,
        request: Request<pb::AlterConfigsRequest>,
    ) -> Result<Response<pb::AlterConfigsReply>, Status> {
        use pb::alter_configs_request::ResourceType;
        let req = request.into_inner();
        check_optional_cluster(&self.cluster_id, &req.cluster_id)?;
        let bad = |m: String| to_status(&ControllerError::Payload(m));
        let resource = match ResourceType::try_from(req.resource_type) {
            Ok(ResourceType::Cluster) => ConfigResource::Cluster,
            Ok(ResourceType::Broker) => ConfigResource::Broker(
                req.resource_name
                    .parse()
                    .map_err(|e| bad(format!("broker id {:?}: {e}", req.resource_name)))?,
            ),
            Ok(ResourceType::Topic) => ConfigResource::Topic(req.resource_name),
            Err(_) => return Err(bad(format!("resource type {}", req.resource_type))),
        };
        let changes: Vec<(String, Option<String>)> =
            req.changes.into_iter().map(|c| (c.key, c.value)).collect();
        let (offset, _) = self
            .write(|image| planner::plan_alter_configs(image, &resource, &changes))
            .await
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::AlterConfigsReply { offset }))
    }

    async fn allocate_producer_ids(
        &self,
        request: Request<pb::AllocateProducerIdsRequest>,
    ) -> Result<Response<pb::AllocateProducerIdsReply>, Status> {
        let req = request.into_inner();
        check_optional_cluster(&self.cluster_id, &req.cluster_id)?;
        let (offset, results) = self
            .write(|image| {
                planner::plan_allocate_producer_ids(
                    image,
                    req.broker_id,
                    req.broker_epoch,
                    req.count,
                )
            })
            .await
            .map_err(|e| to_status(&e))?;
        match results.as_slice() {
            [CommandResult::ProducerIds { first, count }] => {
                Ok(Response::new(pb::AllocateProducerIdsReply {
                    first: *first,
                    count: *count,
                    offset,
                }))
            }
            other => Err(to_status(&ControllerError::Payload(format!(
                "unexpected result {other:?}"
            )))),
        }
    }

    async fn list_topics(
        &self,
        request: Request<pb::ListTopicsRequest>,
    ) -> Result<Response<pb::ListTopicsReply>, Status> {
        let req = request.into_inner();
        check_optional_cluster(&self.cluster_id, &req.cluster_id)?;
        let image = self.view.image();
        Ok(Response::new(pb::ListTopicsReply {
            applied_index: image.offset,
            topics: image
                .topics
                .iter()
                .map(|(name, t)| pb::TopicStatus {
                    name: name.clone(),
                    topic_id: t.id.to_string(),
                    assignments: t
                        .partitions
                        .iter()
                        .map(|p| pb::PartitionAssignment {
                            replicas: p.replicas.clone(),
                        })
                        .collect(),
                    configs: t.configs.clone().into_iter().collect(),
                })
                .collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_index_is_the_majority_match() {
        assert_eq!(quorum_index(&[]), 0);
        assert_eq!(quorum_index(&[7]), 7);
        assert_eq!(quorum_index(&[10, 3, 8]), 8);
        assert_eq!(quorum_index(&[10, 0, 0]), 0);
        assert_eq!(quorum_index(&[5, 9, 1, 9, 2]), 5);
    }
}
