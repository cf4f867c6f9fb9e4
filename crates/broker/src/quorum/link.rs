//! [`QuorumLink`]: the [`ClusterLink`] of a cluster member, and the heartbeat loop.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gregor_controller::client::{ClientError, ControllerClient};
use gregor_controller::metadata::MetadataImage;
use gregor_proto::controller::v1 as pb;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{REPLICATION, to_broker_error};
use crate::cluster::{AlterIsr, BoxFuture, BrokerId, ClusterLink, IsrCommitted};
use crate::error::Result;

/// How long an AlterPartition may take (the leader retries on its next ISR check anyway).
const ALTER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the controlled-shutdown heartbeat may take.
const FENCE_TIMEOUT: Duration = Duration::from_secs(3);

/// A broker's link to the controller quorum.
#[derive(Debug)]
pub struct QuorumLink {
    node_id: BrokerId,
    client: Arc<ControllerClient>,
    /// The broker epoch (the offset of the current registration); 0 before registering.
    epoch: Arc<AtomicU64>,
    image: watch::Receiver<Arc<MetadataImage>>,
}

impl QuorumLink {
    /// A link for broker `node_id`, reading endpoints from `image`.
    pub fn new(
        node_id: BrokerId,
        client: Arc<ControllerClient>,
        image: watch::Receiver<Arc<MetadataImage>>,
    ) -> Self {
        Self {
            node_id,
            client,
            epoch: Arc::new(AtomicU64::new(0)),
            image,
        }
    }

    /// The current broker epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The shared epoch cell (the producer-id allocator quotes it).
    pub(crate) fn epoch_cell(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.epoch)
    }

    /// Registers (or re-registers the same incarnation, which is idempotent) and remembers the
    /// epoch.
    pub async fn register(
        &self,
        registration: &pb::RegisterBrokerRequest,
        deadline: Duration,
    ) -> Result<u64, ClientError> {
        let epoch = self
            .client
            .register_broker(registration.clone(), deadline)
            .await?;
        self.epoch.store(epoch, Ordering::Release);
        Ok(epoch)
    }

    fn heartbeat_request(&self, want_fence: bool) -> pb::HeartbeatRequest {
        pb::HeartbeatRequest {
            cluster_id: String::new(),
            broker_id: self.node_id,
            broker_epoch: self.epoch(),
            metadata_offset: self.image.borrow().offset,
            want_fence,
        }
    }
}

/// `host:port` of `broker`'s endpoint `name` in `image`.
pub fn endpoint(image: &MetadataImage, broker: BrokerId, name: &str) -> Option<String> {
    let b = image.brokers.get(&broker)?;
    let e = b.endpoints.iter().find(|e| e.name == name)?;
    Some(if e.host.contains(':') {
        format!("[{}]:{}", e.host, e.port)
    } else {
        format!("{}:{}", e.host, e.port)
    })
}

impl ClusterLink for QuorumLink {
    fn node_id(&self) -> BrokerId {
        self.node_id
    }

    fn broker_epoch(&self) -> u64 {
        self.epoch()
    }

    fn replication_address(&self, broker: BrokerId) -> Option<String> {
        endpoint(&self.image.borrow(), broker, REPLICATION)
    }

    fn alter_isr(&self, request: AlterIsr) -> BoxFuture<'_, Result<IsrCommitted>> {
        Box::pin(async move {
            let subject = format!("{}-{}", request.topic, request.partition);
            let reply = self
                .client
                .alter_partition(
                    pb::AlterPartitionRequest {
                        cluster_id: String::new(),
                        broker_id: self.node_id,
                        broker_epoch: self.epoch(),
                        topic: request.topic,
                        partition: request.partition,
                        leader_epoch: request.leader_epoch,
                        partition_epoch: request.partition_epoch,
                        new_isr: request.new_isr,
                    },
                    ALTER_TIMEOUT,
                )
                .await
                .map_err(|e| to_broker_error(e, &subject))?;
            Ok(IsrCommitted {
                leader_epoch: reply.leader_epoch,
                partition_epoch: reply.partition_epoch,
                isr: reply.isr,
            })
        })
    }
}

/// Whether a heartbeat refusal means the registration is gone or replaced.
fn must_register_again(e: &ClientError) -> bool {
    matches!(e.kind(), Some("stale-broker-epoch" | "unknown-broker"))
}

/// Heartbeats every `interval` with the applied metadata offset, re-registers when the
/// controller says the epoch is stale, and on `stop` asks to be fenced (controlled shutdown)
/// before returning.
pub async fn run_heartbeats(
    link: Arc<QuorumLink>,
    registration: pb::RegisterBrokerRequest,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A heartbeat slower than a few intervals is as good as lost; the next tick tries again.
    let deadline = interval * 4;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stop.cancelled() => break,
        }
        let request = link.heartbeat_request(false);
        let result = tokio::select! {
            r = link.client.heartbeat(request, deadline) => r,
            () = stop.cancelled() => break,
        };
        match result {
            Ok(_) => {}
            Err(e) if must_register_again(&e) => {
                tracing::warn!(error = %e, "broker epoch is stale; registering again");
                if let Err(e) = link.register(&registration, deadline).await {
                    tracing::warn!(error = %e, "re-registration failed");
                }
            }
            Err(e) => tracing::debug!(error = %e, "heartbeat failed"),
        }
    }
    // Controlled shutdown: the controller moves leaderships away before the process goes.
    let request = link.heartbeat_request(true);
    match link.client.heartbeat(request, FENCE_TIMEOUT).await {
        Ok(reply) => tracing::info!(fenced = reply.fenced, "controlled shutdown heartbeat sent"),
        Err(e) => tracing::warn!(error = %e, "controlled shutdown heartbeat failed"),
    }
}

/// Holds a session stream open on the leader controller (re-opening it on the next leader), so
/// that the controller notices at once when this process dies: its sockets close and the
/// controller fences it after one heartbeat interval instead of the whole session timeout.
pub async fn run_session(link: Arc<QuorumLink>, interval: Duration, stop: CancellationToken) {
    // Short and flat: after a controller failover the new leader should hear from every live
    // broker well within the heartbeat interval.
    let retry = (interval / 4).clamp(Duration::from_millis(10), Duration::from_millis(100));
    loop {
        let request = pb::OpenSessionRequest {
            cluster_id: String::new(),
            broker_id: link.node_id,
            broker_epoch: link.epoch(),
        };
        let opened = tokio::select! {
            r = link.client.open_session(request, interval * 2) => r,
            () = stop.cancelled() => return,
        };
        match opened {
            Ok(mut stream) => loop {
                // Events carry nothing to act on; the stream's end is the signal.
                let next = tokio::select! {
                    m = stream.message() => m,
                    () = stop.cancelled() => return,
                };
                match next {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(error = %e, "controller session ended");
                        break;
                    }
                }
            },
            Err(e) => tracing::debug!(error = %e, "opening the controller session failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(retry) => {}
            () = stop.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use gregor_controller::metadata::{BrokerRegistration, Endpoint};
    use uuid::Uuid;

    use super::*;

    #[test]
    fn endpoints_come_from_the_registration() {
        let mut image = MetadataImage::default();
        image.brokers.insert(
            2,
            BrokerRegistration {
                id: 2,
                epoch: 5,
                incarnation: Uuid::nil(),
                endpoints: vec![
                    Endpoint {
                        name: "PLAINTEXT".into(),
                        host: "127.0.0.1".into(),
                        port: 9092,
                    },
                    Endpoint {
                        name: REPLICATION.into(),
                        host: "::1".into(),
                        port: 9094,
                    },
                ],
                rack: None,
                fenced: false,
            },
        );
        assert_eq!(
            endpoint(&image, 2, "PLAINTEXT").as_deref(),
            Some("127.0.0.1:9092")
        );
        assert_eq!(
            endpoint(&image, 2, REPLICATION).as_deref(),
            Some("[::1]:9094")
        );
        assert_eq!(endpoint(&image, 3, REPLICATION), None);
        assert_eq!(endpoint(&image, 2, "SSL"), None);
    }
}
