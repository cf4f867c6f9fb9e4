//! The Kafka listener: accepts connections, frames requests, answers them in order.
//!
//! One task per connection, owned by the server's `JoinSet`. It runs two halves: the reader
//! decodes and handles requests one at a time, in arrival order, so their effects (appends,
//! commits) happen in that order as in Kafka; the writer sends the answers in the same order.
//! Between them is a bounded queue ([`PIPELINE_DEPTH`]). Most answers are ready when the
//! handler returns. An acks=all produce is answered once the high watermark passes its
//! batches; it is queued as a deferred answer, so the reader goes on with the connection's next
//! pipelined request while the replicas fetch. Kafka instead mutes a connection until its
//! response is sent, which leaves one produce per connection in replication at a time; the
//! client sees the same thing either way: each request's effect in order, every response in
//! order (docs/replication.md, "Pipelined acks=all produce").

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use kafka_protocol::messages::ApiKey;

use crate::admin::ErrorTally;
use crate::broker::Broker;
use crate::error::{BrokerError, Result};
use crate::handlers::{self, Decoded, RequestContext, api_versions};

/// How long shutdown waits for open connections to finish their current request.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Kafka's UNSUPPORTED_VERSION: the error code of the v0 answer to a too-new ApiVersions.
const UNSUPPORTED_VERSION: i16 = 35;

/// Answers a connection may have queued for the writer (deferred acks=all produces and the
/// answers behind them). The reader waits when the queue is full, so a client that pipelines
/// without reading its responses is held back by the socket, as before.
pub const PIPELINE_DEPTH: usize = 16;

/// A frame's buffer starts at this size and takes the rest of the declared size only once this
/// much has arrived, so a peer that declares 100 MB and sends 10 bytes costs 256 KiB, not 100 MB.
const READ_CHUNK: usize = 256 * 1024;

/// Why a connection ended. Only logged.
#[derive(Debug, thiserror::Error)]
enum ConnectionEnd {
    #[error("peer closed the connection")]
    Eof,
    #[error("idle for longer than connections.max.idle.ms")]
    Idle,
    #[error("invalid request size {0}")]
    BadSize(i32),
    #[error("server shutting down")]
    Shutdown,
    #[error("undecodable request")]
    Decode(#[from] handlers::DecodeError),
    #[error("handler closed the connection")]
    Close(#[from] handlers::CloseConnection),
    #[error("socket error")]
    Io(#[from] std::io::Error),
}

/// Serves Kafka clients on `listener` (the first configured listener, by its name) until
/// `shutdown` is cancelled; see [`run_listeners`].
pub async fn run(
    listener: TcpListener,
    broker: Arc<Broker>,
    shutdown: CancellationToken,
) -> Result<()> {
    let name = broker.config().listener_name.clone();
    run_listeners(vec![(name, listener)], broker, shutdown).await
}

/// Serves Kafka clients on every `(listener name, socket)` until `shutdown` is cancelled, then
/// drains connections (bounded by [`SHUTDOWN_GRACE`]), stops the storage background task and
/// closes the logs. Each connection knows the name of the listener it arrived on, so Metadata
/// answers with that listener's advertised endpoints.
pub async fn run_listeners(
    listeners: Vec<(String, TcpListener)>,
    broker: Arc<Broker>,
    shutdown: CancellationToken,
) -> Result<()> {
    // One accept loop per listener feeds one channel; the loops end with `shutdown`.
    let (tx, mut accepted) = tokio::sync::mpsc::channel::<Accepted>(64);
    let mut accept_loops = JoinSet::new();
    for (name, listener) in listeners {
        let local = listener.local_addr().map_err(|source| BrokerError::Io {
            context: "listener address",
            source,
        })?;
        let name: Arc<str> = Arc::from(name);
        tracing::info!(%local, listener = %name, advertised = ?broker.advertised_for(&name), "kafka listener started");
        accept_loops.spawn(accept_loop(name, listener, tx.clone(), shutdown.clone()));
    }
    drop(tx);
    // Session timers of groups reloaded from __consumer_offsets need the runtime, and so does
    // the task that follows the offsets partitions' leadership.
    broker.groups().start(&broker);

    let background_cancel = CancellationToken::new();
    let background = tokio::spawn(
        Arc::clone(broker.log_manager())
            .run_background(background_cancel.clone(), broker.retention_check_interval()),
    );

    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            // Reap finished connection tasks so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            next = accepted.recv() => match next {
                Some((listener, stream, peer)) => {
                    let broker = Arc::clone(&broker);
                    let shutdown = shutdown.clone();
                    connections.spawn(async move {
                        match serve_connection(stream, peer, listener, broker, shutdown).await {
                            ConnectionEnd::Eof | ConnectionEnd::Shutdown => tracing::debug!(%peer, "connection closed"),
                            end => tracing::info!(%peer, reason = %end, detail = ?end, "closing connection"),
                        }
                    });
                }
                // Every accept loop ended (only on shutdown).
                None => break,
            },
        }
    }
    // The accept loops see the same token; waiting for them closes the listening sockets.
    while accept_loops.join_next().await.is_some() {}
    drop(accepted);

    tracing::info!(
        open = connections.len(),
        "shutting down: draining connections"
    );
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "grace period over; aborting connections"
        );
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
    background_cancel.cancel();
    background.await?;
    let b = Arc::clone(&broker);
    tokio::task::spawn_blocking(move || b.shutdown()).await??;
    tracing::info!("broker stopped");
    Ok(())
}

/// A connection and the name of the listener it arrived on.
type Accepted = (Arc<str>, TcpStream, SocketAddr);

/// Accepts connections on one listener until `shutdown`, handing them to the server loop.
async fn accept_loop(
    name: Arc<str>,
    listener: TcpListener,
    tx: tokio::sync::mpsc::Sender<Accepted>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if tx.send((Arc::clone(&name), stream, peer)).await.is_err() {
                        return;
                    }
                }
                // Accept errors (e.g. EMFILE) are per-connection; keep serving the others.
                Err(e) => tracing::warn!(error = %e, listener = %name, "accept failed"),
            },
        }
    }
}

/// One answer in the connection's queue.
enum Pending {
    /// Encoded (or failed) already.
    Now(std::result::Result<Option<Bytes>, ConnectionEnd>),
    /// Encoded when its future completes (an acks=all produce waiting for replication).
    Later(crate::cluster::BoxFuture<'static, std::result::Result<Option<Bytes>, ConnectionEnd>>),
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    listener: Arc<str>,
    broker: Arc<Broker>,
    shutdown: CancellationToken,
) -> ConnectionEnd {
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    let (tx, rx) = tokio::sync::mpsc::channel(PIPELINE_DEPTH);
    // Both halves run to completion: the reader stops at EOF, idle, shutdown, a bad frame or a
    // handler's close, or when the writer is gone; the writer then sends what was queued.
    let (read_end, written) = tokio::join!(
        read_requests(read, tx, &broker, &shutdown, peer, &listener),
        write_responses(write, rx),
    );
    match written {
        Err(end) => end,
        Ok(()) => read_end,
    }
}

/// The reader half: frames, decodes and handles requests in order and queues their answers.
async fn read_requests(
    read: tokio::net::tcp::OwnedReadHalf,
    queue: tokio::sync::mpsc::Sender<Pending>,
    broker: &Arc<Broker>,
    shutdown: &CancellationToken,
    peer: SocketAddr,
    listener: &Arc<str>,
) -> ConnectionEnd {
    let mut read = BufReader::with_capacity(64 * 1024, read);
    let idle = Duration::from_millis(broker.config().connections_max_idle_ms.max(1) as u64);
    let max = broker.config().socket_request_max_bytes;
    loop {
        let frame = tokio::select! {
            _ = shutdown.cancelled() => return ConnectionEnd::Shutdown,
            // The writer failed (the peer is gone or a handler closed the connection).
            _ = queue.closed() => return ConnectionEnd::Eof,
            r = tokio::time::timeout(idle, read_frame(&mut read, max)) => match r {
                Err(_) => return ConnectionEnd::Idle,
                Ok(Err(end)) => return end,
                Ok(Ok(frame)) => frame,
            },
        };
        let pending = match handle_frame(frame, broker, shutdown, peer, listener).await {
            Ok(p) => p,
            Err(end) => return end,
        };
        // A handler that closes the connection (acks=0 with an error) stops it here, before
        // any later request has an effect, as Kafka does.
        let closing = matches!(pending, Pending::Now(Err(_)));
        if queue.send(pending).await.is_err() {
            return ConnectionEnd::Eof;
        }
        if closing {
            return ConnectionEnd::Eof;
        }
    }
}

/// The writer half: sends the queued answers in order, waiting for deferred ones. Returns when
/// the reader is done and everything queued is sent, or at the first failure.
async fn write_responses(
    mut write: tokio::net::tcp::OwnedWriteHalf,
    mut queue: tokio::sync::mpsc::Receiver<Pending>,
) -> std::result::Result<(), ConnectionEnd> {
    while let Some(pending) = queue.recv().await {
        let frame = match pending {
            Pending::Now(r) => r?,
            Pending::Later(f) => f.await?,
        };
        if let Some(bytes) = frame {
            write.write_all(&bytes).await?;
        }
    }
    Ok(())
}

/// Reads one size-prefixed frame. The size is checked before anything is allocated for it.
async fn read_frame<R: AsyncReadExt + Unpin>(
    read: &mut R,
    max: i32,
) -> Result<Bytes, ConnectionEnd> {
    let mut size = [0u8; 4];
    if let Err(e) = read.read_exact(&mut size).await {
        return Err(if e.kind() == std::io::ErrorKind::UnexpectedEof {
            ConnectionEnd::Eof
        } else {
            e.into()
        });
    }
    let size = i32::from_be_bytes(size);
    if size < 0 || size > max {
        return Err(ConnectionEnd::BadSize(size));
    }
    let size = size as usize;
    let mut buf = BytesMut::with_capacity(size.min(READ_CHUNK));
    while buf.len() < size {
        // Once the peer has sent a chunk's worth, the rest is allocated in one piece: growing
        // chunk by chunk copied a 1 MiB produce request about twice (docs/benchmarks.md).
        if buf.len() >= READ_CHUNK {
            buf.reserve(size - buf.len());
        }
        let want = size - buf.len();
        let n = (&mut *read).take(want as u64).read_buf(&mut buf).await?;
        if n == 0 {
            return Err(ConnectionEnd::Eof);
        }
    }
    Ok(buf.freeze())
}

/// Decodes and handles one frame; the answer may be deferred ([`Pending::Later`]).
///
/// The one place every Kafka request passes: it records the per-API request metrics (count,
/// latency from decoded request to encoded response, the response's error codes); a deferred
/// answer records them when it completes.
async fn handle_frame(
    frame: Bytes,
    broker: &Arc<Broker>,
    shutdown: &CancellationToken,
    peer: SocketAddr,
    listener: &Arc<str>,
) -> std::result::Result<Pending, ConnectionEnd> {
    let metrics = broker.request_metrics();
    let started = Instant::now();
    let decoded = handlers::decode_frame(frame).inspect_err(|e| metrics.record_refused(e))?;
    match decoded {
        Decoded::ApiVersionsTooNew {
            correlation_id,
            version,
        } => {
            tracing::debug!(%peer, "ApiVersions newer than ours; answering v0");
            let mut errors = ErrorTally::default();
            errors.add(UNSUPPORTED_VERSION);
            metrics.record(ApiKey::ApiVersions, version, started.elapsed(), &errors);
            Ok(Pending::Now(
                api_versions::too_new_response(correlation_id)
                    .map(Some)
                    .map_err(|e| ConnectionEnd::Close(handlers::CloseConnection::Encode(e))),
            ))
        }
        Decoded::Request { header, request } => {
            tracing::trace!(%peer, api_key = header.request_api_key, version = header.request_api_version, correlation_id = header.correlation_id, "request");
            let ctx = RequestContext {
                broker: Arc::clone(broker),
                shutdown: shutdown.clone(),
                api_version: header.request_api_version,
                client_id: header.client_id.as_ref().map(|c| c.to_string()),
                peer,
                listener: Arc::clone(listener),
            };
            let key = ApiKey::try_from(header.request_api_key).ok();
            let version = header.request_api_version;
            let owner = Arc::clone(broker);
            let record = move |answer: handlers::Answer| {
                if let Some(key) = key {
                    let metrics = owner.request_metrics();
                    metrics.record(key, version, started.elapsed(), &answer.errors);
                }
                answer.frame.map_err(ConnectionEnd::from)
            };
            Ok(
                match handlers::dispatch(&ctx, header.correlation_id, request).await {
                    handlers::Dispatched::Done(answer) => Pending::Now(record(answer)),
                    handlers::Dispatched::Deferred(later) => {
                        Pending::Later(Box::pin(async move { record(later.await) }))
                    }
                },
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frame_size_is_checked_before_reading_the_body() {
        let mut input: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame(&mut input, 100).await,
            Err(ConnectionEnd::BadSize(-1))
        ));
        let mut input: &[u8] = b"GET / HTTP/1.1\r\n";
        assert!(matches!(
            read_frame(&mut input, 104_857_600).await,
            Err(ConnectionEnd::BadSize(1_195_725_856))
        ));
        let mut input: &[u8] = &[0, 0, 0, 3, 1, 2, 3, 9];
        assert_eq!(&read_frame(&mut input, 100).await.unwrap()[..], &[1, 2, 3]);
        let mut input: &[u8] = &[0, 0, 0, 10, 1, 2];
        assert!(matches!(
            read_frame(&mut input, 100).await,
            Err(ConnectionEnd::Eof)
        ));
    }
}
