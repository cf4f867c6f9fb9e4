//! The broker-facing service over loopback gRPC: registration on the leader, the ordered
//! metadata stream from a follower, heartbeat-driven unfencing and session-expiry fencing.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use gregor_controller::broker_service::leader_hint;
use gregor_controller::metadata::Command;
use gregor_controller::node::RaftTiming;
use gregor_proto::controller::v1 as pb;
use gregor_proto::controller::v1::broker_lifecycle_client::BrokerLifecycleClient;
use tonic::Streaming;

use crate::grpc_cluster::{Cluster, DEADLINE};

async fn client(addr: &str) -> anyhow::Result<BrokerLifecycleClient<tonic::transport::Channel>> {
    Ok(BrokerLifecycleClient::connect(format!("http://{addr}")).await?)
}

/// The next record on the stream, with its offset and decoded command.
async fn next_record(stream: &mut Streaming<pb::MetadataEvent>) -> anyhow::Result<(u64, Command)> {
    let event = tokio::time::timeout(DEADLINE, stream.message())
        .await
        .context("no metadata event before the deadline")??
        .context("stream ended")?;
    match event.event {
        Some(pb::metadata_event::Event::Record(r)) => Ok((r.offset, Command::decode(&r.command)?)),
        other => bail!("expected a record, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_register_watch_heartbeat_and_get_fenced() -> anyhow::Result<()> {
    tokio::time::timeout(Duration::from_secs(50), async {
        let c = Cluster::start(RaftTiming::default()).await?;
        let leader = c.wait_leader(None).await?;
        let follower = *c
            .voters
            .keys()
            .find(|id| **id != leader)
            .context("no follower")?;
        let cluster_id = c.cluster_id.to_string();
        let register = pb::RegisterBrokerRequest {
            cluster_id: cluster_id.clone(),
            broker_id: 7,
            incarnation_id: uuid::Uuid::new_v4().to_string(),
            endpoints: vec![pb::Endpoint {
                name: "PLAINTEXT".into(),
                host: "127.0.0.1".into(),
                port: 9092,
            }],
            rack: String::new(),
            clean_shutdown: false,
        };

        // A follower points at the leader.
        let status = client(&c.voters[&follower])
            .await?
            .register_broker(register.clone())
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(
            leader_hint(&status).as_deref(),
            Some(c.voters[&leader].as_str())
        );

        // Another cluster is refused.
        let foreign = pb::RegisterBrokerRequest {
            cluster_id: "other".into(),
            ..register.clone()
        };
        let status = client(&c.voters[&leader])
            .await?
            .register_broker(foreign)
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);

        let mut leader_client = client(&c.voters[&leader]).await?;
        let epoch = leader_client
            .register_broker(register)
            .await?
            .into_inner()
            .broker_epoch;

        // Watch from a follower: the registration arrives at its offset, fenced.
        let mut stream = client(&c.voters[&follower])
            .await?
            .watch_metadata(pb::WatchMetadataRequest {
                cluster_id: cluster_id.clone(),
                from_offset: 1,
            })
            .await?
            .into_inner();
        let (offset, cmd) = next_record(&mut stream).await?;
        assert_eq!(offset, epoch);
        assert!(
            matches!(cmd, Command::RegisterBroker { broker_id: 7, .. }),
            "{cmd:?}"
        );

        // A heartbeat that has not caught up keeps it fenced; one that has unfences it.
        let hb = |metadata_offset| pb::HeartbeatRequest {
            cluster_id: cluster_id.clone(),
            broker_id: 7,
            broker_epoch: epoch,
            metadata_offset,
            want_fence: false,
        };
        assert!(
            leader_client
                .heartbeat(hb(epoch - 1))
                .await?
                .into_inner()
                .fenced
        );
        // Start the stopwatch before sending: the controller's session clock starts when it
        // receives the heartbeat, which is after this instant but may be well before the reply
        // reaches us on a loaded machine.
        let last_heartbeat = Instant::now();
        let reply = leader_client.heartbeat(hb(epoch)).await?.into_inner();
        assert!(!reply.fenced);
        let (unfence_offset, cmd) = next_record(&mut stream).await?;
        assert!(unfence_offset > offset);
        assert_eq!(
            cmd,
            Command::UnfenceBroker {
                broker_id: 7,
                broker_epoch: epoch
            }
        );

        // Silence: the leader's planner fences it after the session timeout, not before.
        let (fence_offset, cmd) = next_record(&mut stream).await?;
        let silent = last_heartbeat.elapsed();
        assert!(fence_offset > unfence_offset);
        assert_eq!(
            cmd,
            Command::FenceBroker {
                broker_id: 7,
                broker_epoch: epoch
            }
        );
        assert!(
            silent >= Duration::from_millis(gregor_controller::planner::DEFAULT_SESSION_TIMEOUT_MS),
            "fenced after only {silent:?}"
        );

        // A stale epoch is refused.
        let stale = pb::HeartbeatRequest {
            broker_epoch: epoch + 1000,
            ..hb(epoch)
        };
        let status = leader_client.heartbeat(stale).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        drop(stream);
        c.shutdown().await
    })
    .await
    .context("test deadline")?
}
