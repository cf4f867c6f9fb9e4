//! InitProducerId (key 22): a producer id and epoch for an idempotent producer.
//!
//! Only the non-transactional form is served, with Kafka's rules
//! (`KafkaApis.handleInitProducerIdRequest`, `TransactionCoordinator.handleInitProducerId`):
//!
//! - `transactional_id` null → a fresh producer id with epoch 0. Kafka ignores the v3+
//!   `producer_id`/`producer_epoch` fields here, so an idempotent producer's KIP-360 "epoch
//!   bump" (after an unresolved sequence) gets a new id with epoch 0 too — and so does it here;
//! - an empty `transactional_id` → INVALID_REQUEST (42), as Kafka;
//! - `producer_id` and `producer_epoch` must be both -1 or both set, else INVALID_REQUEST (42);
//! - `transactional_id` set → COORDINATOR_NOT_AVAILABLE (15): there is no transaction
//!   coordinator (FindCoordinator answers the same for transaction keys), which clients treat
//!   as retriable rather than as a fatal authorization error.
//!
//! Ids come from the broker's [`ProducerIdAllocator`](crate::producer_ids::ProducerIdAllocator),
//! run on the blocking pool (a new block is fsynced).

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::protocol::VersionRange;

use super::{Reply, RequestContext};
use crate::error::{self, BrokerError, Result};

/// Served versions. v0–5 are what the codec has; v6 (KIP-939 two-phase commit) only concerns
/// transactional producers.
pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 5 };

/// `RecordBatch.NO_PRODUCER_ID`.
const NO_PRODUCER_ID: i64 = -1;
/// `RecordBatch.NO_PRODUCER_EPOCH`.
const NO_PRODUCER_EPOCH: i16 = -1;

fn validate(req: &InitProducerIdRequest) -> Result<()> {
    if let Some(id) = &req.transactional_id {
        if id.0.is_empty() {
            // Kafka's TransactionCoordinator: an empty transactional id is INVALID_REQUEST.
            return Err(BrokerError::InvalidRequest("empty transactional id".into()));
        }
        return Err(BrokerError::TransactionsUnsupported(format!(
            "transactional id {:?}: transactions are not supported",
            id.0.as_str()
        )));
    }
    match (req.producer_id.0, req.producer_epoch) {
        (NO_PRODUCER_ID, NO_PRODUCER_EPOCH) => Ok(()),
        (NO_PRODUCER_ID, _) | (_, NO_PRODUCER_EPOCH) => Err(BrokerError::InvalidRequest(
            "producer id and epoch must both be set or both be -1".into(),
        )),
        _ => Ok(()),
    }
}

/// Handles InitProducerId.
pub async fn handle(
    ctx: &RequestContext,
    req: InitProducerIdRequest,
) -> Reply<InitProducerIdResponse> {
    let outcome = match validate(&req) {
        Ok(()) => ctx.broker.blocking(|b| b.allocate_producer_id()).await,
        Err(e) => Err(e),
    };
    let resp = InitProducerIdResponse::default();
    Reply::Respond(match outcome {
        Ok(id) => {
            tracing::debug!(producer_id = id, client = ?ctx.client_id, "allocated producer id");
            resp.with_producer_id(ProducerId(id)).with_producer_epoch(0)
        }
        Err(e) => {
            tracing::debug!(error = %error::message(&e), "InitProducerId rejected");
            resp.with_error_code(error::code(&e))
                .with_producer_id(ProducerId(NO_PRODUCER_ID))
                .with_producer_epoch(NO_PRODUCER_EPOCH)
        }
    })
}
