//! The broker's side of the admin HTTP port (`admin.listener`, served by `gregor server`):
//! readiness and Prometheus metrics. The HTTP server itself is the process's (crates/cli), which
//! also adds the controller's metrics; this module only reads the broker's live state.
//!
//! # Layout
//!
//! - This module: [`readiness`] (is this broker registered, unfenced and caught up?) and
//!   [`register`], which adds the broker's metrics to a `prometheus_client` registry.
//! - [`requests`]: [`RequestMetrics`], the per-API request counters, error counters and latency
//!   histograms, owned by the [`Broker`] and updated at the single dispatch point
//!   (`server::handle_frame`).
//! - [`partitions`]: a scrape-time collector of the per-partition gauges (leader, ISR, HW, LEO,
//!   under-replicated, ...) and the broker-wide totals. Nothing is copied in the background:
//!   every scrape reads the replica state and the logs as they are, so a gauge cannot go stale.
//! - [`errors`]: the error codes of every response type (what `errors_total` counts).
//!
//! Metric names follow Kafka's (as the Prometheus JMX exporter spells them, e.g.
//! `kafka_cluster_partition_underreplicated`) where Kafka has the same metric, and start with
//! `gregor_` where it has none. `docs/admin.md` lists them all.

pub mod errors;
pub mod partitions;
pub mod requests;

use std::sync::Arc;

use gregor_controller::metadata::MetadataImage;
use prometheus_client::registry::Registry;

use crate::broker::Broker;
use crate::cluster::BrokerId;
pub use errors::{ErrorTally, ResponseErrors};
pub use requests::RequestMetrics;

/// Why a broker is not ready to serve clients (the `/ready` answer's reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    /// The broker's metadata image has no registration of this node yet.
    #[error("broker {node} is not in the metadata image yet")]
    Unregistered {
        /// This node.
        node: BrokerId,
    },
    /// The image holds an older registration than the one this process made.
    #[error("the metadata image holds registration {seen} of broker {node}, not {registered}")]
    OldRegistration {
        /// This node.
        node: BrokerId,
        /// The registration epoch in the image.
        seen: u64,
        /// The epoch this process registered with.
        registered: u64,
    },
    /// The controller fenced this broker (not yet unfenced after registering, missed
    /// heartbeats, or a controlled shutdown).
    #[error("broker {node} is fenced by the controller")]
    Fenced {
        /// This node.
        node: BrokerId,
    },
    /// The image has not reached this broker's own registration.
    #[error("metadata at offset {offset}, behind the registration at {registered}")]
    CatchingUp {
        /// The image's offset.
        offset: u64,
        /// The registration offset (the broker epoch).
        registered: u64,
    },
}

/// Whether broker `node`, registered at `epoch` (its broker epoch: the registration's offset),
/// may serve clients according to `image`: the image holds that registration, unfenced, and has
/// caught up to it. The same condition `quorum::start` waits for before serving, evaluated
/// again at every call, so a broker the controller fences later reports not ready.
pub fn image_readiness(image: &MetadataImage, node: BrokerId, epoch: u64) -> Result<(), NotReady> {
    let registration = image
        .brokers
        .get(&node)
        .ok_or(NotReady::Unregistered { node })?;
    if registration.epoch != epoch {
        return Err(NotReady::OldRegistration {
            node,
            seen: registration.epoch,
            registered: epoch,
        });
    }
    if registration.fenced {
        return Err(NotReady::Fenced { node });
    }
    if image.offset < epoch {
        return Err(NotReady::CatchingUp {
            offset: image.offset,
            registered: epoch,
        });
    }
    Ok(())
}

/// [`image_readiness`] of a running broker, from its current image. A single node without a
/// controller (no quorum) is always ready.
pub fn readiness(broker: &Broker) -> Result<(), NotReady> {
    if !broker.in_cluster() {
        return Ok(());
    }
    image_readiness(
        &broker.image(),
        broker.config().node_id,
        broker.link().broker_epoch(),
    )
}

/// Adds the broker's metrics to `registry`: the request families (shared handles, so the
/// registry may be built per scrape) and the scrape-time partition collector.
pub fn register(broker: &Arc<Broker>, registry: &mut Registry) {
    broker.request_metrics().register(registry);
    registry.register_collector(Box::new(partitions::PartitionCollector::new(Arc::clone(
        broker,
    ))));
}

#[cfg(test)]
mod tests {
    use gregor_controller::metadata::BrokerRegistration;
    use uuid::Uuid;

    use super::*;

    fn image(offset: u64, epoch: u64, fenced: bool) -> MetadataImage {
        let mut image = MetadataImage {
            offset,
            ..MetadataImage::default()
        };
        image.brokers.insert(
            2,
            BrokerRegistration {
                id: 2,
                epoch,
                incarnation: Uuid::nil(),
                endpoints: Vec::new(),
                rack: None,
                fenced,
            },
        );
        image
    }

    #[test]
    fn ready_only_when_registered_unfenced_and_caught_up() {
        assert_eq!(
            image_readiness(&MetadataImage::default(), 2, 7),
            Err(NotReady::Unregistered { node: 2 })
        );
        assert_eq!(
            image_readiness(&image(9, 5, false), 2, 7),
            Err(NotReady::OldRegistration {
                node: 2,
                seen: 5,
                registered: 7
            })
        );
        assert_eq!(
            image_readiness(&image(9, 7, true), 2, 7),
            Err(NotReady::Fenced { node: 2 })
        );
        // Unfenced in a snapshot that ends before the registration cannot happen in a real
        // stream, but the offset rule stands on its own.
        assert_eq!(
            image_readiness(&image(6, 7, false), 2, 7),
            Err(NotReady::CatchingUp {
                offset: 6,
                registered: 7
            })
        );
        assert_eq!(image_readiness(&image(7, 7, false), 2, 7), Ok(()));
        assert_eq!(image_readiness(&image(12, 7, false), 2, 7), Ok(()));
    }
}
