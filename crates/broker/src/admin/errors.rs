//! The error codes of a response, as Kafka's `AbstractResponse.errorCounts()` reports them for
//! its `ErrorsPerSec` metric: every non-zero error code anywhere in the response (top level,
//! per topic, per partition, per group), counted by code.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;

/// Non-zero error codes of one response, counted by code. Empty (and allocation-free) for a
/// response without errors.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ErrorTally(Vec<(i16, u32)>);

impl ErrorTally {
    /// Counts `code` once (0, NONE, is not an error).
    pub fn add(&mut self, code: i16) {
        if code == 0 {
            return;
        }
        match self.0.iter_mut().find(|(c, _)| *c == code) {
            Some((_, n)) => *n += 1,
            None => self.0.push((code, 1)),
        }
    }

    /// `(code, count)` pairs in first-seen order.
    pub fn counts(&self) -> &[(i16, u32)] {
        &self.0
    }

    /// Whether no error was counted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Kafka's name of an error code (`NOT_LEADER_OR_FOLLOWER`), the `error` label of
/// `errors_total` as in Kafka's `ErrorsPerSec{error=...}`. Codes the codec does not know are
/// `UNKNOWN_<code>`.
pub fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE".to_string(),
        Some(ResponseError::Unknown(c)) => format!("UNKNOWN_{c}"),
        // The codec names its variants in CamelCase (`NotLeaderOrFollower`); Kafka's names are
        // the same words in SCREAMING_SNAKE_CASE.
        Some(e) => {
            let camel = e.to_string();
            let mut out = String::with_capacity(camel.len() + 8);
            for (i, ch) in camel.chars().enumerate() {
                if ch.is_ascii_uppercase() && i > 0 {
                    out.push('_');
                }
                out.push(ch.to_ascii_uppercase());
            }
            out
        }
    }
}

/// A response type whose error codes can be counted.
pub trait ResponseErrors {
    /// Adds every error code of the response to `tally`.
    fn tally(&self, tally: &mut ErrorTally);
}

impl ResponseErrors for ProduceResponse {
    fn tally(&self, t: &mut ErrorTally) {
        for p in self.responses.iter().flat_map(|r| &r.partition_responses) {
            t.add(p.error_code);
        }
    }
}

impl ResponseErrors for FetchResponse {
    fn tally(&self, t: &mut ErrorTally) {
        t.add(self.error_code);
        for p in self.responses.iter().flat_map(|r| &r.partitions) {
            t.add(p.error_code);
        }
    }
}

impl ResponseErrors for ListOffsetsResponse {
    fn tally(&self, t: &mut ErrorTally) {
        for p in self.topics.iter().flat_map(|r| &r.partitions) {
            t.add(p.error_code);
        }
    }
}

impl ResponseErrors for MetadataResponse {
    fn tally(&self, t: &mut ErrorTally) {
        t.add(self.error_code);
        for topic in &self.topics {
            t.add(topic.error_code);
            for p in &topic.partitions {
                t.add(p.error_code);
            }
        }
    }
}

impl ResponseErrors for ApiVersionsResponse {
    fn tally(&self, t: &mut ErrorTally) {
        t.add(self.error_code);
    }
}

impl ResponseErrors for CreateTopicsResponse {
    fn tally(&self, t: &mut ErrorTally) {
        for topic in &self.topics {
            t.add(topic.error_code);
        }
    }
}

impl ResponseErrors for DeleteTopicsResponse {
    fn tally(&self, t: &mut ErrorTally) {
        for topic in &self.responses {
            t.add(topic.error_code);
        }
    }
}

impl ResponseErrors for DescribeConfigsResponse {
    fn tally(&self, t: &mut ErrorTally) {
        for r in &self.results {
            t.add(r.error_code);
        }
    }
}

impl ResponseErrors for CreatePartitionsResponse {
    fn tally(&self, t: &mut ErrorTally) {
        for r in &self.results {
            t.add(r.error_code);
        }
    }
}

impl ResponseErrors for IncrementalAlterConfigsResponse {
    fn tally(&self, t: &mut ErrorTally) {
        for r in &self.responses {
            t.add(r.error_code);
        }
    }
}

impl ResponseErrors for DescribeClusterResponse {
    fn tally(&self, t: &mut ErrorTally) {
        t.add(self.error_code);
    }
}

impl ResponseErrors for FindCoordinatorResponse {
    fn tally(&self, t: &mut ErrorTally) {
        // v0-v3 answer at the top level, v4+ per coordinator key.
        t.add(self.error_code);
        for c in &self.coordinators {
            t.add(c.error_code);
        }
    }
}

impl ResponseErrors for JoinGroupResponse {
    fn tally(&self, t: &mut ErrorTally) {
        t.add(self.error_code);
    }
}

impl ResponseErrors for SyncGroupResponse {
    fn tally(&self, t: &mut ErrorTally) {
        t.add(self.error_code);
    }
}

impl ResponseErrors for HeartbeatResponse {
    fn tally(&self, t: &mut ErrorTally) {
        t.add(self.error_code);
    }
}

impl ResponseErrors for LeaveGroupResponse {
    fn tally(&self, t: &mut ErrorTally) {
        t.add(self.error_code);
        for m in &self.members {
            t.add(m.error_code);
        }
    }
}

impl ResponseErrors for OffsetCommitResponse {
    fn tally(&self, t: &mut ErrorTally) {
        for p in self.topics.iter().flat_map(|r| &r.partitions) {
            t.add(p.error_code);
        }
    }
}

impl ResponseErrors for OffsetFetchResponse {
    fn tally(&self, t: &mut ErrorTally) {
        // v0-v7 answer one group (top level), v8+ several (per group).
        t.add(self.error_code);
        for p in self.topics.iter().flat_map(|r| &r.partitions) {
            t.add(p.error_code);
        }
        for g in &self.groups {
            t.add(g.error_code);
            for p in g.topics.iter().flat_map(|r| &r.partitions) {
                t.add(p.error_code);
            }
        }
    }
}

impl ResponseErrors for ListGroupsResponse {
    fn tally(&self, t: &mut ErrorTally) {
        t.add(self.error_code);
    }
}

impl ResponseErrors for DescribeGroupsResponse {
    fn tally(&self, t: &mut ErrorTally) {
        for g in &self.groups {
            t.add(g.error_code);
        }
    }
}

impl ResponseErrors for DeleteGroupsResponse {
    fn tally(&self, t: &mut ErrorTally) {
        for g in &self.results {
            t.add(g.error_code);
        }
    }
}

impl ResponseErrors for OffsetDeleteResponse {
    fn tally(&self, t: &mut ErrorTally) {
        t.add(self.error_code);
        for p in self.topics.iter().flat_map(|r| &r.partitions) {
            t.add(p.error_code);
        }
    }
}

impl ResponseErrors for InitProducerIdResponse {
    fn tally(&self, t: &mut ErrorTally) {
        t.add(self.error_code);
    }
}

impl ResponseErrors for OffsetForLeaderEpochResponse {
    fn tally(&self, t: &mut ErrorTally) {
        for p in self.topics.iter().flat_map(|r| &r.partitions) {
            t.add(p.error_code);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(error_name(6), "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(error_name(19), "NOT_ENOUGH_REPLICAS");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(35), "UNSUPPORTED_VERSION");
        assert_eq!(error_name(0), "NONE");
        assert_eq!(error_name(9999), "UNKNOWN_9999");
    }

    #[test]
    fn a_produce_response_counts_every_partition_error_by_code() {
        let partition =
            |code| produce_response::PartitionProduceResponse::default().with_error_code(code);
        let response = ProduceResponse::default().with_responses(vec![
            produce_response::TopicProduceResponse::default().with_partition_responses(vec![
                partition(0),
                partition(6),
                partition(6),
            ]),
            produce_response::TopicProduceResponse::default()
                .with_partition_responses(vec![partition(19)]),
        ]);
        let mut tally = ErrorTally::default();
        response.tally(&mut tally);
        assert_eq!(tally.counts(), &[(6, 2), (19, 1)]);
        let mut clean = ErrorTally::default();
        ProduceResponse::default().tally(&mut clean);
        assert!(clean.is_empty());
    }
}
