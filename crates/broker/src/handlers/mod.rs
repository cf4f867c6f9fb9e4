//! The API registry: one module per Kafka API, each declaring the versions it serves.
//!
//! [`SUPPORTED`] (and so the ApiVersions response) is generated from the same macro invocation
//! that generates body decoding and dispatch, so an API cannot be advertised without a handler,
//! nor handled without being advertised.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes, VersionRange};
use tokio_util::sync::CancellationToken;

use crate::admin::{ErrorTally, ResponseErrors};
use crate::broker::Broker;
use crate::cluster::BoxFuture;

pub mod api_versions;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sync_group;

/// The codec's errors (it reports `anyhow` errors), boxed so the crate's errors keep them as
/// sources without depending on `anyhow`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a handler sees besides its request.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// Broker state.
    pub broker: Arc<Broker>,
    /// Cancelled when the server shuts down; long polls return early on it.
    pub shutdown: CancellationToken,
    /// The request's API version.
    pub api_version: i16,
    /// The client id from the request header.
    pub client_id: Option<String>,
    /// The client's address (group members' `client_host`).
    pub peer: std::net::SocketAddr,
    /// The name of the listener the request arrived on (`PLAINTEXT`, `EXTERNAL`, ...): Metadata,
    /// FindCoordinator and DescribeCluster advertise that listener's endpoints.
    pub listener: Arc<str>,
}

/// A handler's outcome. Only Produce uses anything but `Respond`.
pub enum Reply<R> {
    /// Send this response.
    Respond(R),
    /// Send nothing (acks=0).
    NoResponse,
    /// Send nothing and close the connection (acks=0 with a partition error, as Kafka does, so
    /// the producer notices).
    Close,
    /// The request has had its effect (an acks=all produce has appended); this resolves to the
    /// response (once the high watermark passed the batches). The connection reads and handles
    /// its next requests meanwhile and still answers in order (`server`).
    Deferred(BoxFuture<'static, R>),
}

impl<R> std::fmt::Debug for Reply<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Reply::Respond(_) => "Respond",
            Reply::NoResponse => "NoResponse",
            Reply::Close => "Close",
            Reply::Deferred(_) => "Deferred",
        })
    }
}

/// A handled request's encoded answer and the error codes in it (the request metrics).
#[derive(Debug)]
pub struct Answer {
    /// The response frame; `Ok(None)`: send nothing; `Err`: close the connection.
    pub frame: Result<Option<Bytes>, CloseConnection>,
    /// The error codes the response carries.
    pub errors: ErrorTally,
}

/// What [`dispatch`] hands the connection.
pub enum Dispatched {
    /// Answered.
    Done(Answer),
    /// Had its effect; the answer follows when the future completes.
    Deferred(BoxFuture<'static, Answer>),
}

impl std::fmt::Debug for Dispatched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dispatched::Done(a) => f.debug_tuple("Done").field(a).finish(),
            Dispatched::Deferred(_) => f.write_str("Deferred"),
        }
    }
}

/// Why a frame could not be turned into a request. Every case closes the connection without a
/// response, as Kafka does: without a parsed request there is no well-formed reply to send.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than the fixed header fields.
    #[error("frame of {0} bytes is too short for a request header")]
    TooShort(usize),
    /// API key Kafka does not define.
    #[error("unknown api key {0}")]
    UnknownApiKey(i16),
    /// Known key, but this broker does not serve it at this version (or at all).
    #[error("unsupported version {version} of {key:?}")]
    UnsupportedVersion {
        /// The API.
        key: ApiKey,
        /// The requested version.
        version: i16,
    },
    /// The request header does not parse.
    #[error("malformed request header")]
    Header(#[source] BoxError),
    /// The body does not parse at the header's version.
    #[error("malformed {key:?} v{version} body")]
    Body {
        /// The API.
        key: ApiKey,
        /// The version.
        version: i16,
        /// The decoder's complaint.
        #[source]
        source: BoxError,
    },
}

/// A request frame, decoded.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // built once per request and consumed at once
pub enum Decoded {
    /// ApiVersions at a version above ours: answered with a v0 UNSUPPORTED_VERSION (KIP-511).
    ApiVersionsTooNew {
        /// Correlation id to echo.
        correlation_id: i32,
        /// The version the client asked for (the request metrics' label).
        version: i16,
    },
    /// A request for a supported API and version.
    Request {
        /// The header.
        header: RequestHeader,
        /// The body.
        request: ApiRequest,
    },
}

macro_rules! registry {
    ($( $key:ident => $module:ident, $req:ident; )*) => {
        /// Every API this broker serves and its version range, from the handler modules.
        pub const SUPPORTED: &[(ApiKey, VersionRange)] = &[ $( (ApiKey::$key, $module::VERSIONS), )* ];

        /// A decoded request body of a supported API.
        #[derive(Debug)]
        #[allow(clippy::large_enum_variant)]
        pub enum ApiRequest {
            $(
                #[doc = concat!("`", stringify!($req), "`.")]
                $key($req),
            )*
        }

        fn decode_body(key: ApiKey, version: i16, body: &mut Bytes) -> Result<ApiRequest, DecodeError> {
            let wrap = |source: BoxError| DecodeError::Body { key, version, source };
            match key {
                $( ApiKey::$key => <$req>::decode(body, version).map(ApiRequest::$key).map_err(|e| wrap(e.into())), )*
                _ => Err(DecodeError::UnsupportedVersion { key, version }),
            }
        }

        /// The name Kafka gives a served API (its `request` metric tag: `Produce`,
        /// `ApiVersions`, ...); `None` for APIs this broker does not serve.
        pub fn api_name(key: ApiKey) -> Option<&'static str> {
            match key {
                $( ApiKey::$key => Some(stringify!($key)), )*
                _ => None,
            }
        }

        /// Runs the handler for `request` and encodes its response frame (size prefix
        /// included), now or, for a deferred reply, when its future completes.
        pub async fn dispatch(ctx: &RequestContext, correlation_id: i32, request: ApiRequest) -> Dispatched {
            match request {
                $( ApiRequest::$key(req) => finish(correlation_id, ctx.api_version, $module::handle(ctx, req).await), )*
            }
        }
    };
}

registry! {
    Produce => produce, ProduceRequest;
    Fetch => fetch, FetchRequest;
    ListOffsets => list_offsets, ListOffsetsRequest;
    Metadata => metadata, MetadataRequest;
    ApiVersions => api_versions, ApiVersionsRequest;
    CreateTopics => create_topics, CreateTopicsRequest;
    DeleteTopics => delete_topics, DeleteTopicsRequest;
    DescribeConfigs => describe_configs, DescribeConfigsRequest;
    CreatePartitions => create_partitions, CreatePartitionsRequest;
    IncrementalAlterConfigs => incremental_alter_configs, IncrementalAlterConfigsRequest;
    DescribeCluster => describe_cluster, DescribeClusterRequest;
    FindCoordinator => find_coordinator, FindCoordinatorRequest;
    JoinGroup => join_group, JoinGroupRequest;
    SyncGroup => sync_group, SyncGroupRequest;
    Heartbeat => heartbeat, HeartbeatRequest;
    LeaveGroup => leave_group, LeaveGroupRequest;
    OffsetCommit => offset_commit, OffsetCommitRequest;
    OffsetFetch => offset_fetch, OffsetFetchRequest;
    ListGroups => list_groups, ListGroupsRequest;
    DescribeGroups => describe_groups, DescribeGroupsRequest;
    DeleteGroups => delete_groups, DeleteGroupsRequest;
    OffsetDelete => offset_delete, OffsetDeleteRequest;
    InitProducerId => init_producer_id, InitProducerIdRequest;
    OffsetForLeaderEpoch => offset_for_leader_epoch, OffsetForLeaderEpochRequest;
}

/// The connection must be closed (no response is sent).
#[derive(Debug, thiserror::Error)]
pub enum CloseConnection {
    /// The handler asked for it (acks=0 with an error).
    #[error("closing after a failed acks=0 produce")]
    Requested,
    /// The response could not be encoded (a bug: a field set that the version lacks).
    #[error("cannot encode response")]
    Encode(#[source] BoxError),
}

/// The version range this broker serves for `key`, if any.
pub fn supported_versions(key: ApiKey) -> Option<VersionRange> {
    SUPPORTED.iter().find(|(k, _)| *k == key).map(|(_, r)| *r)
}

/// Decodes a request frame (without its size prefix): header, support check, body.
///
/// This is the whole untrusted-input path; the fuzz target and the proptest call it directly.
pub fn decode_frame(mut frame: Bytes) -> Result<Decoded, DecodeError> {
    if frame.len() < 8 {
        return Err(DecodeError::TooShort(frame.len()));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let key = ApiKey::try_from(raw_key).map_err(|()| DecodeError::UnknownApiKey(raw_key))?;
    let range = supported_versions(key).ok_or(DecodeError::UnsupportedVersion { key, version })?;
    if key == ApiKey::ApiVersions && version > range.max {
        // KIP-511: the client may be newer than us; its header layout may be too, but the
        // correlation id is always bytes 4..8.
        let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
        return Ok(Decoded::ApiVersionsTooNew {
            correlation_id,
            version,
        });
    }
    if version < range.min || version > range.max {
        return Err(DecodeError::UnsupportedVersion { key, version });
    }
    let header = RequestHeader::decode(&mut frame, key.request_header_version(version))
        .map_err(|e| DecodeError::Header(e.into()))?;
    let request = decode_body(key, version, &mut frame)?;
    if !frame.is_empty() {
        // Kafka's parsers ignore bytes after the body, and librdkafka 2.x relies on it (its
        // Metadata v12 requests carry 3 extra bytes), so this is logged, not rejected.
        tracing::debug!(
            ?key,
            version,
            left = frame.len(),
            "ignoring bytes after the request body"
        );
    }
    Ok(Decoded::Request { header, request })
}

/// Encodes `header + body` with its 4-byte size prefix.
pub fn encode_response<R: Encodable + HeaderVersion>(
    correlation_id: i32,
    version: i16,
    response: &R,
) -> Result<Bytes, BoxError> {
    let mut out = BytesMut::with_capacity(64);
    out.put_i32(0);
    // ApiVersions answers always use header v0 (KIP-511); `header_version` knows that.
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut out, R::header_version(version))
        .map_err(BoxError::from)?;
    response.encode(&mut out, version).map_err(BoxError::from)?;
    let size = i32::try_from(out.len() - 4)?;
    out[..4].copy_from_slice(&size.to_be_bytes());
    Ok(out.freeze())
}

/// Kafka's NETWORK_EXCEPTION ("the server disconnected before a response was received"): what
/// a client sees, and the request metrics count, when a request is answered by closing the
/// connection.
const NETWORK_EXCEPTION: i16 = 13;
/// Kafka's UNKNOWN_SERVER_ERROR: a response that could not be encoded.
const UNKNOWN_SERVER_ERROR: i16 = -1;

fn finish<R: Encodable + HeaderVersion + ResponseErrors + Send + 'static>(
    correlation_id: i32,
    version: i16,
    reply: Reply<R>,
) -> Dispatched {
    match reply {
        Reply::Respond(r) => Dispatched::Done(respond(correlation_id, version, &r)),
        Reply::NoResponse => Dispatched::Done(Answer {
            frame: Ok(None),
            errors: ErrorTally::default(),
        }),
        Reply::Close => {
            let mut errors = ErrorTally::default();
            errors.add(NETWORK_EXCEPTION);
            Dispatched::Done(Answer {
                frame: Err(CloseConnection::Requested),
                errors,
            })
        }
        Reply::Deferred(later) => Dispatched::Deferred(Box::pin(async move {
            respond(correlation_id, version, &later.await)
        })),
    }
}

/// Encodes `response` and tallies its error codes.
fn respond<R: Encodable + HeaderVersion + ResponseErrors>(
    correlation_id: i32,
    version: i16,
    response: &R,
) -> Answer {
    let mut errors = ErrorTally::default();
    response.tally(&mut errors);
    let frame = encode_response(correlation_id, version, response)
        .map(Some)
        .map_err(|e| {
            errors.add(UNKNOWN_SERVER_ERROR);
            CloseConnection::Encode(e)
        });
    Answer { frame, errors }
}

/// Kafka `AclOperation` bit positions used in authorized-operations bitfields.
mod acl_op {
    pub const READ: u32 = 3;
    pub const WRITE: u32 = 4;
    pub const CREATE: u32 = 5;
    pub const DELETE: u32 = 6;
    pub const ALTER: u32 = 7;
    pub const DESCRIBE: u32 = 8;
    pub const CLUSTER_ACTION: u32 = 9;
    pub const DESCRIBE_CONFIGS: u32 = 10;
    pub const ALTER_CONFIGS: u32 = 11;
    pub const IDEMPOTENT_WRITE: u32 = 12;
}

/// Operations a client may perform on a topic. There are no ACLs, so: all that apply to topics.
pub(crate) const TOPIC_AUTHORIZED_OPERATIONS: i32 = {
    use acl_op::*;
    ((1u32 << READ)
        | (1 << WRITE)
        | (1 << CREATE)
        | (1 << DELETE)
        | (1 << ALTER)
        | (1 << DESCRIBE)
        | (1 << DESCRIBE_CONFIGS)
        | (1 << ALTER_CONFIGS)) as i32
};

/// Operations a client may perform on the cluster (no ACLs: all that apply to clusters).
pub(crate) const CLUSTER_AUTHORIZED_OPERATIONS: i32 = {
    use acl_op::*;
    ((1u32 << CREATE)
        | (1 << ALTER)
        | (1 << DESCRIBE)
        | (1 << CLUSTER_ACTION)
        | (1 << DESCRIBE_CONFIGS)
        | (1 << ALTER_CONFIGS)
        | (1 << IDEMPOTENT_WRITE)) as i32
};

/// Shorthand for response strings.
pub(crate) fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// Topic name field from a string.
pub(crate) fn topic_name(s: impl Into<String>) -> TopicName {
    TopicName(str_bytes(s))
}
