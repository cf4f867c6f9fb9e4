//! The `ControllerAdmin` service over loopback gRPC: describe from any controller, topic,
//! partition, config and producer-id writes on the leader (followers point at it), and every
//! controller's image agreeing afterwards.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Context;
use gregor_controller::broker_service::leader_hint;
use gregor_controller::metadata::{Command, CommandResult};
use gregor_controller::node::RaftTiming;
use gregor_proto::controller::v1 as pb;
use gregor_proto::controller::v1::controller_admin_client::ControllerAdminClient;
use tonic::transport::Channel;

use crate::grpc_cluster::Cluster;

async fn admin(addr: &str) -> anyhow::Result<ControllerAdminClient<Channel>> {
    Ok(ControllerAdminClient::connect(format!("http://{addr}")).await?)
}

fn create(name: &str, partitions: u32, rf: u32) -> pb::CreateTopicRequest {
    pb::CreateTopicRequest {
        cluster_id: String::new(),
        name: name.into(),
        partitions,
        replication_factor: rf,
        configs: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_writes_go_through_the_leader_and_describe_reports_the_quorum() -> anyhow::Result<()>
{
    tokio::time::timeout(Duration::from_secs(50), async {
        // No heartbeats in this test: keep registered brokers unfenced for its whole length.
        let c = Cluster::start_with_session_timeout(RaftTiming::default(), 600_000).await?;
        let leader = c.wait_leader(None).await?;
        let follower = *c
            .voters
            .keys()
            .find(|id| **id != leader)
            .context("no follower")?;
        let mut on_leader = admin(&c.voters[&leader]).await?;
        let mut on_follower = admin(&c.voters[&follower]).await?;

        // Three brokers on three racks.
        let mut epochs = BTreeMap::new();
        for (id, rack) in [(1, "a"), (2, "b"), (3, "c")] {
            let (epoch, r) = c
                .propose(
                    leader,
                    Command::RegisterBroker {
                        broker_id: id,
                        incarnation: uuid::Uuid::new_v4(),
                        endpoints: vec![],
                        rack: Some(rack.into()),
                        clean_shutdown: true,
                    },
                )
                .await?;
            assert_eq!(
                r,
                CommandResult::BrokerRegistered {
                    broker_epoch: epoch
                }
            );
            let unfence = Command::UnfenceBroker {
                broker_id: id,
                broker_epoch: epoch,
            };
            assert_eq!(c.propose(leader, unfence).await?.1, CommandResult::Applied);
            epochs.insert(id, epoch);
        }

        // A follower refuses writes and names the leader.
        let status = on_follower
            .create_topic(create("orders", 6, 2))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(
            leader_hint(&status).as_deref(),
            Some(c.voters[&leader].as_str())
        );

        // Balanced, rack-aware placement: 6 partitions x 2 replicas on 3 brokers.
        let created = on_leader
            .create_topic(create("orders", 6, 2))
            .await?
            .into_inner();
        assert_eq!(created.assignments.len(), 6);
        let mut leads = BTreeMap::<i32, usize>::new();
        let mut replicas = BTreeMap::<i32, usize>::new();
        for a in &created.assignments {
            let set: BTreeSet<i32> = a.replicas.iter().copied().collect();
            assert_eq!(set.len(), 2, "{a:?}");
            *leads.entry(a.replicas[0]).or_default() += 1;
            for r in &a.replicas {
                *replicas.entry(*r).or_default() += 1;
            }
        }
        assert_eq!(leads.values().copied().collect::<Vec<_>>(), [2, 2, 2]);
        assert_eq!(replicas.values().copied().collect::<Vec<_>>(), [4, 4, 4]);

        // Typed refusals.
        let again = on_leader
            .create_topic(create("orders", 1, 1))
            .await
            .unwrap_err();
        assert_eq!(again.code(), tonic::Code::AlreadyExists);
        let bad_name = on_leader
            .create_topic(create("a/b", 1, 1))
            .await
            .unwrap_err();
        assert_eq!(bad_name.code(), tonic::Code::InvalidArgument);
        let too_many = on_leader.create_topic(create("x", 1, 4)).await.unwrap_err();
        assert_eq!(too_many.code(), tonic::Code::InvalidArgument);
        let foreign = pb::CreateTopicRequest {
            cluster_id: "another-cluster".into(),
            ..create("y", 1, 1)
        };
        let foreign = on_leader.create_topic(foreign).await.unwrap_err();
        assert_eq!(foreign.code(), tonic::Code::FailedPrecondition);

        // More partitions, configs, producer ids, a deletion.
        let grown = on_leader
            .create_partitions(pb::CreatePartitionsRequest {
                cluster_id: c.cluster_id.to_string(),
                topic: "orders".into(),
                total: 8,
            })
            .await?
            .into_inner();
        assert_eq!(grown.assignments.len(), 2);
        on_leader
            .alter_configs(pb::AlterConfigsRequest {
                cluster_id: String::new(),
                resource_type: pb::alter_configs_request::ResourceType::Topic.into(),
                resource_name: "orders".into(),
                changes: vec![pb::ConfigChange {
                    key: "retention.ms".into(),
                    value: Some("60000".into()),
                }],
            })
            .await?;
        let pids = |count| pb::AllocateProducerIdsRequest {
            cluster_id: String::new(),
            broker_id: 1,
            broker_epoch: epochs[&1],
            count,
        };
        let first = on_leader
            .allocate_producer_ids(pids(1000))
            .await?
            .into_inner();
        let second = on_leader
            .allocate_producer_ids(pids(1000))
            .await?
            .into_inner();
        assert_eq!((first.first, second.first), (0, 1000));
        on_leader.create_topic(create("scratch", 1, 3)).await?;
        let deleted = on_leader
            .delete_topic(pb::DeleteTopicRequest {
                cluster_id: String::new(),
                name: "scratch".into(),
            })
            .await?
            .into_inner();
        let gone = on_leader
            .delete_topic(pb::DeleteTopicRequest {
                cluster_id: String::new(),
                name: "scratch".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(gone.code(), tonic::Code::NotFound);

        // Every controller applied the same topics.
        c.wait_applied(deleted.offset).await?;
        for addr in c.voters.values() {
            let topics = admin(addr)
                .await?
                .list_topics(pb::ListTopicsRequest::default())
                .await?;
            let topics = topics.into_inner();
            assert!(topics.applied_index >= deleted.offset);
            let names: Vec<&str> = topics.topics.iter().map(|t| t.name.as_str()).collect();
            assert_eq!(names, ["orders"], "on {addr}");
            let orders = &topics.topics[0];
            assert_eq!(orders.topic_id, created.topic_id);
            assert_eq!(orders.assignments.len(), 8);
            assert_eq!(
                orders.configs.get("retention.ms").map(String::as_str),
                Some("60000")
            );
        }

        // Describe from a follower is forwarded to the leader: voters with their lag, brokers.
        let d = on_follower
            .describe_cluster(pb::DescribeClusterRequest::default())
            .await?
            .into_inner();
        assert_eq!(d.cluster_id, c.cluster_id.to_string());
        assert!(d.from_leader, "{d:?}");
        assert_eq!((d.answered_by, d.leader_id), (leader, Some(leader)));
        assert_eq!(d.leader_address, c.voters[&leader]);
        assert!(d.term >= 1);
        assert!(d.committed_index >= deleted.offset, "{d:?}");
        let ids: Vec<u64> = d.voters.iter().map(|v| v.id).collect();
        assert_eq!(ids, [1, 2, 3]);
        for v in &d.voters {
            let matched = v
                .matched_index
                .context("leader knows every voter's match")?;
            assert_eq!(v.lag, Some(d.last_log_index - matched));
        }
        let brokers: Vec<(i32, bool, &str)> = d
            .brokers
            .iter()
            .map(|b| (b.id, b.fenced, b.rack.as_str()))
            .collect();
        assert_eq!(brokers, [(1, false, "a"), (2, false, "b"), (3, false, "c")]);
        c.shutdown().await
    })
    .await
    .context("test deadline")?
}
