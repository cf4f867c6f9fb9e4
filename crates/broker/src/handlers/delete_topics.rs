//! DeleteTopics (key 20): by name (v0–v5) or by name or id (v6).

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};
use kafka_protocol::protocol::VersionRange;
use uuid::Uuid;

use super::{Reply, RequestContext, str_bytes, topic_name};
use crate::error::{self, BrokerError};

/// Served versions.
pub const VERSIONS: VersionRange = VersionRange { min: 1, max: 6 };

/// Handles DeleteTopics.
pub async fn handle(ctx: &RequestContext, req: DeleteTopicsRequest) -> Reply<DeleteTopicsResponse> {
    // Normalize both request shapes to (name, id) pairs.
    let targets: Vec<(Option<String>, Uuid)> = if ctx.api_version >= 6 {
        req.topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id))
            .collect()
    } else {
        req.topic_names
            .iter()
            .map(|n| (Some(n.0.to_string()), Uuid::nil()))
            .collect()
    };
    let mut responses = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        let resolved = match (&name, id.is_nil()) {
            (Some(n), _) => Ok(n.clone()),
            (None, false) => ctx
                .broker
                .topic_by_id(id)
                .map(|t| t.name.clone())
                .ok_or(BrokerError::UnknownTopicId(id)),
            (None, true) => Err(BrokerError::InvalidRequest(
                "neither a topic name nor an id".into(),
            )),
        };
        let outcome = match resolved {
            Ok(n) => {
                let n2 = n.clone();
                ctx.broker
                    .blocking(move |b| b.delete_topic(&n2))
                    .await
                    .map(|id| (n, id))
            }
            Err(e) => Err(e),
        };
        let mut result = DeletableTopicResult::default()
            .with_name(name.clone().map(topic_name))
            .with_topic_id(id);
        match outcome {
            Ok((n, deleted_id)) => {
                result.name = Some(topic_name(n));
                result.topic_id = deleted_id;
            }
            Err(e) => {
                result.error_code = error::code(&e);
                result.error_message = Some(str_bytes(error::message(&e)));
            }
        }
        responses.push(result);
    }
    Reply::Respond(DeleteTopicsResponse::default().with_responses(responses))
}
