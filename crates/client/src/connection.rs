//! One TCP connection to one broker: framing, correlation ids and API-version negotiation.

use std::collections::HashMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{
    Decodable, Encodable, HeaderVersion, Request, StrBytes, VersionRange,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::error::{ClientError, Result};

/// The largest response frame the client accepts (a fetch is bounded by its `max_bytes`).
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// A connection to one broker. Requests may be pipelined with [`Connection::write_request`] and
/// [`Connection::read_response`]; Kafka answers them in order.
#[derive(Debug)]
pub struct Connection {
    addr: String,
    stream: TcpStream,
    next_correlation: i32,
    client_id: StrBytes,
    /// What the broker said it supports, by API key; empty until negotiated.
    broker_versions: HashMap<i16, VersionRange>,
}

impl Connection {
    /// Connects and negotiates API versions (ApiVersions v3, falling back to v0 like Kafka's
    /// clients do when the broker answers `UNSUPPORTED_VERSION`).
    pub async fn connect(addr: &str) -> Result<Self> {
        let mut conn = Self::connect_raw(addr).await?;
        conn.negotiate().await?;
        Ok(conn)
    }

    /// Connects without sending anything: for tests that speak raw frames.
    pub async fn connect_raw(addr: &str) -> Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| ClientError::Io {
                op: "connect to",
                addr: addr.to_string(),
                source,
            })?;
        // Requests are small and latency matters more than packet count.
        let _ = stream.set_nodelay(true);
        Ok(Self {
            addr: addr.to_string(),
            stream,
            next_correlation: 1,
            client_id: StrBytes::from_static_str("gregor"),
            broker_versions: HashMap::new(),
        })
    }

    /// The address this connection was made to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    async fn negotiate(&mut self) -> Result<()> {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("gregor"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let resp = match self.send_version(&req, 3).await {
            Ok(r) if r.error_code == 0 => r,
            // A broker that does not speak v3 answers with a v0 body; ask again in v0.
            Ok(_) | Err(ClientError::Codec(_)) => self.send_version(&req, 0).await?,
            Err(e) => return Err(e),
        };
        if let Some(e) = ClientError::from_code(resp.error_code, None) {
            return Err(e);
        }
        self.broker_versions = versions_of(&resp);
        Ok(())
    }

    /// The version range the broker advertised for `key`, if any.
    pub fn broker_versions(&self, key: ApiKey) -> Option<VersionRange> {
        self.broker_versions.get(&(key as i16)).copied()
    }

    /// The highest version of `R` that both sides speak.
    pub fn version_for<R: Request>(&self) -> Result<i16> {
        negotiated::<R>(&self.broker_versions)
    }

    /// Sends `req` at the highest common version and waits for its response.
    pub async fn send<R: Request>(&mut self, req: &R) -> Result<R::Response> {
        let version = self.version_for::<R>()?;
        self.send_version(req, version).await
    }

    /// Sends `req` at `version` and waits for its response.
    pub async fn send_version<R: Request>(&mut self, req: &R, version: i16) -> Result<R::Response> {
        let correlation = self.write_request(req, version).await?;
        self.read_response::<R>(version, correlation).await
    }

    /// Encodes and writes one request; returns its correlation id. Use for pipelining and for
    /// requests that get no response (Produce with `acks=0`).
    pub async fn write_request<R: Request>(&mut self, req: &R, version: i16) -> Result<i32> {
        let correlation = self.next_correlation;
        self.next_correlation = self.next_correlation.wrapping_add(1);
        let frame = encode_request(req, version, correlation, Some(self.client_id.clone()))?;
        self.write_frame(&frame).await?;
        Ok(correlation)
    }

    /// Reads the response to the request with `correlation`, sent at `version`.
    pub async fn read_response<R: Request>(
        &mut self,
        version: i16,
        correlation: i32,
    ) -> Result<R::Response> {
        let mut frame = self.read_frame().await?;
        decode_response::<R>(&mut frame, version, correlation)
    }

    /// Writes bytes exactly as given (a size-prefixed frame, or deliberately malformed input).
    pub async fn write_frame(&mut self, bytes: &[u8]) -> Result<()> {
        write_frame(&mut self.stream, &self.addr, bytes).await
    }

    /// Reads one size-prefixed response frame and returns its contents (header + body).
    /// A clean close by the broker is [`ClientError::Closed`].
    pub async fn read_frame(&mut self) -> Result<Bytes> {
        read_frame(&mut self.stream, &self.addr).await
    }

    /// Writes a raw frame and reads one response frame back.
    pub async fn send_raw(&mut self, frame: &[u8]) -> Result<Bytes> {
        self.write_frame(frame).await?;
        self.read_frame().await
    }

    /// Splits the connection into a writer and a reader that can live in different tasks, so
    /// requests can be pipelined while responses are read (a producer with several requests in
    /// flight). Kafka answers in request order; the caller pairs correlation ids with responses.
    pub fn into_split(self) -> (RequestWriter, ResponseReader) {
        let (read, write) = self.stream.into_split();
        (
            RequestWriter {
                addr: self.addr.clone(),
                stream: write,
                next_correlation: self.next_correlation,
                client_id: self.client_id,
                broker_versions: self.broker_versions,
            },
            ResponseReader {
                addr: self.addr,
                stream: read,
            },
        )
    }
}

/// The writing half of a [`Connection`] (see [`Connection::into_split`]).
#[derive(Debug)]
pub struct RequestWriter {
    addr: String,
    stream: OwnedWriteHalf,
    next_correlation: i32,
    client_id: StrBytes,
    broker_versions: HashMap<i16, VersionRange>,
}

impl RequestWriter {
    /// The highest version of `R` that both sides speak.
    pub fn version_for<R: Request>(&self) -> Result<i16> {
        negotiated::<R>(&self.broker_versions)
    }

    /// Encodes and writes one request; returns its correlation id.
    pub async fn write_request<R: Request>(&mut self, req: &R, version: i16) -> Result<i32> {
        let correlation = self.next_correlation;
        self.next_correlation = self.next_correlation.wrapping_add(1);
        let frame = encode_request(req, version, correlation, Some(self.client_id.clone()))?;
        write_frame(&mut self.stream, &self.addr, &frame).await?;
        Ok(correlation)
    }
}

/// The reading half of a [`Connection`] (see [`Connection::into_split`]).
#[derive(Debug)]
pub struct ResponseReader {
    addr: String,
    stream: OwnedReadHalf,
}

impl ResponseReader {
    /// Reads the next response, which must answer the request with `correlation`, sent at
    /// `version`.
    pub async fn read_response<R: Request>(
        &mut self,
        version: i16,
        correlation: i32,
    ) -> Result<R::Response> {
        let mut frame = read_frame(&mut self.stream, &self.addr).await?;
        decode_response::<R>(&mut frame, version, correlation)
    }
}

/// Reads one size-prefixed frame; a clean close is [`ClientError::Closed`].
async fn read_frame<S: AsyncRead + Unpin>(stream: &mut S, addr: &str) -> Result<Bytes> {
    let mut len = [0u8; 4];
    match stream.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if is_closed(&e) => {
            return Err(ClientError::Closed {
                addr: addr.to_string(),
            });
        }
        Err(source) => {
            return Err(ClientError::Io {
                op: "read from",
                addr: addr.to_string(),
                source,
            });
        }
    }
    let len = i32::from_be_bytes(len);
    let len = usize::try_from(len)
        .map_err(|_| ClientError::Codec(format!("negative response size {len}")))?;
    if len > MAX_RESPONSE_BYTES {
        return Err(ClientError::FrameTooLarge(len));
    }
    let mut body = vec![0u8; len];
    match stream.read_exact(&mut body).await {
        Ok(_) => Ok(Bytes::from(body)),
        Err(e) if is_closed(&e) => Err(ClientError::Closed {
            addr: addr.to_string(),
        }),
        Err(source) => Err(ClientError::Io {
            op: "read from",
            addr: addr.to_string(),
            source,
        }),
    }
}

async fn write_frame<S: AsyncWrite + Unpin>(
    stream: &mut S,
    addr: &str,
    bytes: &[u8],
) -> Result<()> {
    stream
        .write_all(bytes)
        .await
        .map_err(|source| ClientError::Io {
            op: "write to",
            addr: addr.to_string(),
            source,
        })
}

fn is_closed(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe
    )
}

/// The highest version of `R` in both our range and the broker's advertised one.
fn negotiated<R: Request>(broker_versions: &HashMap<i16, VersionRange>) -> Result<i16> {
    let unsupported = || ClientError::Unsupported {
        api: api_name(R::KEY),
        ours_min: R::VERSIONS.min,
        ours_max: R::VERSIONS.max,
    };
    let theirs = broker_versions.get(&R::KEY).ok_or_else(unsupported)?;
    let both = R::VERSIONS.intersect(theirs);
    if both.is_empty() {
        return Err(unsupported());
    }
    Ok(both.max)
}

fn versions_of(resp: &ApiVersionsResponse) -> HashMap<i16, VersionRange> {
    resp.api_keys
        .iter()
        .map(|k| {
            (
                k.api_key,
                VersionRange {
                    min: k.min_version,
                    max: k.max_version,
                },
            )
        })
        .collect()
}

fn api_name(key: i16) -> String {
    ApiKey::try_from(key).map_or_else(|_| format!("api key {key}"), |k| format!("{k:?}"))
}

/// Encodes a whole size-prefixed request frame.
pub fn encode_request<R: Request>(
    req: &R,
    version: i16,
    correlation: i32,
    client_id: Option<StrBytes>,
) -> Result<BytesMut> {
    if version < R::VERSIONS.min || version > R::VERSIONS.max {
        return Err(ClientError::Invalid(format!(
            "{} v{version} is outside v{}-v{}",
            api_name(R::KEY),
            R::VERSIONS.min,
            R::VERSIONS.max
        )));
    }
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation)
        .with_client_id(client_id);
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i32(0);
    header
        .encode(&mut buf, R::header_version(version))
        .map_err(|e| ClientError::Codec(format!("request header: {e}")))?;
    req.encode(&mut buf, version)
        .map_err(|e| ClientError::Codec(format!("{} v{version}: {e}", api_name(R::KEY))))?;
    let size = i32::try_from(buf.len() - 4)
        .map_err(|_| ClientError::Invalid("request larger than 2 GiB".into()))?;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf)
}

/// Decodes a response frame (without its size prefix) for a request sent at `version`.
pub fn decode_response<R: Request>(
    frame: &mut Bytes,
    version: i16,
    correlation: i32,
) -> Result<R::Response> {
    let header_version = <R::Response as HeaderVersion>::header_version(version);
    let header = ResponseHeader::decode(frame, header_version)
        .map_err(|e| ClientError::Codec(format!("response header: {e}")))?;
    if header.correlation_id != correlation {
        return Err(ClientError::Correlation {
            sent: correlation,
            got: header.correlation_id,
        });
    }
    let resp = <R::Response as Decodable>::decode(frame, version).map_err(|e| {
        ClientError::Codec(format!("{} v{version} response: {e}", api_name(R::KEY)))
    })?;
    if frame.has_remaining() {
        return Err(ClientError::Codec(format!(
            "{} v{version} response has {} trailing bytes",
            api_name(R::KEY),
            frame.remaining()
        )));
    }
    Ok(resp)
}
