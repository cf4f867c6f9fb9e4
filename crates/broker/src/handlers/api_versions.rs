//! ApiVersions (key 18): the versions of every API this broker serves, derived from
//! [`super::SUPPORTED`].

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::VersionRange;

use super::{BoxError, Reply, RequestContext, SUPPORTED, encode_response};

/// Served versions. v3+ is flexible; the response header is v0 regardless (KIP-511).
pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 4 };

fn api_keys() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|(key, range)| {
            ApiVersion::default()
                .with_api_key(*key as i16)
                .with_min_version(range.min)
                .with_max_version(range.max)
        })
        .collect()
}

/// Kafka's rule for `client_software_name`/`version`: `[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?`.
fn valid_software_field(s: &str) -> bool {
    let b = s.as_bytes();
    let edge = |c: &u8| c.is_ascii_alphanumeric();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            edge(first)
                && edge(last)
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'.')
        }
        _ => false,
    }
}

/// Handles ApiVersions.
pub async fn handle(ctx: &RequestContext, req: ApiVersionsRequest) -> Reply<ApiVersionsResponse> {
    let mut resp = ApiVersionsResponse::default().with_api_keys(api_keys());
    if ctx.api_version >= 3
        && !(valid_software_field(&req.client_software_name)
            && valid_software_field(&req.client_software_version))
    {
        // Kafka rejects malformed client software fields with INVALID_REQUEST (KIP-511).
        resp.error_code = ResponseError::InvalidRequest.code();
    }
    Reply::Respond(resp)
}

/// The KIP-511 answer to an ApiVersions request newer than ours: a v0 body with
/// UNSUPPORTED_VERSION and our key list, so the client can retry at a version we serve.
pub fn too_new_response(correlation_id: i32) -> Result<Bytes, BoxError> {
    let resp = ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(api_keys());
    encode_response(correlation_id, 0, &resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn software_fields_follow_kafkas_pattern() {
        for ok in [
            "librdkafka",
            "2.0.2",
            "a",
            "confluent-kafka-python",
            "1.0-SNAPSHOT",
        ] {
            assert!(valid_software_field(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "a b", "a_b", ".x"] {
            assert!(!valid_software_field(bad), "{bad}");
        }
    }
}
