//! The metadata stream follower: `WatchMetadata` from the broker's next offset, on any voter,
//! applied to a local [`MetadataImage`] with the controller's own deterministic `apply`.
//!
//! The image lives in memory only: a restarted broker streams from offset 1 and the controller
//! answers with its snapshot plus the records after it, which is small for metadata.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use gregor_controller::client::ControllerClient;
use gregor_controller::metadata::{Command, MetadataImage};
use gregor_proto::controller::v1 as pb;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;

/// Time allowed to open a stream before trying again.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause before reopening a broken stream.
const REOPEN_BACKOFF: Duration = Duration::from_millis(100);

/// Why an event could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// A record or snapshot did not decode.
    #[error("undecodable metadata at offset {offset}")]
    Decode {
        /// Its offset.
        offset: u64,
        /// Why.
        #[source]
        source: gregor_controller::metadata::DecodeError,
    },
}

/// Applies one stream event to `image`. Returns whether the image changed. Records at or below
/// the image's offset (a reconnect overlapping what was applied) are skipped.
pub fn apply_event(
    image: &mut MetadataImage,
    event: pb::MetadataEvent,
) -> Result<bool, WatchError> {
    use pb::metadata_event::Event;
    match event.event {
        Some(Event::Record(r)) => {
            if r.offset <= image.offset {
                return Ok(false);
            }
            let cmd = Command::decode(&r.command).map_err(|source| WatchError::Decode {
                offset: r.offset,
                source,
            })?;
            // Rejections are part of the deterministic history too: apply leaves the image
            // unchanged (but for the offset), exactly as on the controller.
            let _ = image.apply(r.offset, &cmd);
            Ok(true)
        }
        Some(Event::Snapshot(s)) => {
            if s.offset <= image.offset {
                return Ok(false);
            }
            *image = MetadataImage::decode(&s.image).map_err(|source| WatchError::Decode {
                offset: s.offset,
                source,
            })?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Follows the metadata stream until `stop`, reconnecting to any voter, and hands every new
/// image to [`Broker::apply_image`] (on the blocking pool: it opens and deletes logs).
pub async fn run(client: Arc<ControllerClient>, broker: Arc<Broker>, stop: CancellationToken) {
    let mut image = MetadataImage::default();
    loop {
        let opened = tokio::select! {
            r = client.watch_metadata(image.offset + 1, OPEN_TIMEOUT) => r,
            () = stop.cancelled() => return,
        };
        let mut stream = match opened {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "metadata stream unavailable");
                tokio::select! {
                    () = tokio::time::sleep(REOPEN_BACKOFF) => continue,
                    () = stop.cancelled() => return,
                }
            }
        };
        loop {
            let next = tokio::select! {
                m = stream.message() => m,
                () = stop.cancelled() => return,
            };
            let event = match next {
                Ok(Some(event)) => event,
                Ok(None) => break,
                Err(status) => {
                    tracing::debug!(%status, "metadata stream broke; reopening");
                    break;
                }
            };
            // Records that arrived together (a broker failure moves many leaderships in one
            // planning round) are applied to the image together and handed over once.
            let mut events = vec![event];
            let mut ended = false;
            while let Some(more) = stream.message().now_or_never() {
                match more {
                    Ok(Some(e)) => events.push(e),
                    Ok(None) | Err(_) => {
                        ended = true;
                        break;
                    }
                }
            }
            let changed = events.into_iter().try_fold(false, |changed, e| {
                Ok::<_, WatchError>(apply_event(&mut image, e)? | changed)
            });
            match changed {
                Ok(false) => {}
                Ok(true) => {
                    let snapshot = Arc::new(image.clone());
                    let b = Arc::clone(&broker);
                    match tokio::task::spawn_blocking(move || b.apply_image(snapshot)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::error!(
                            error = %crate::error::message(&e),
                            offset = image.offset,
                            "cannot apply the metadata image"
                        ),
                        Err(e) => tracing::error!(error = %e, "metadata apply task failed"),
                    }
                }
                Err(e) => {
                    // A record this broker cannot read (a newer controller?): stop applying
                    // rather than diverge; reopening would only meet it again.
                    tracing::error!(error = %e, "cannot decode the metadata stream");
                    stop.cancelled().await;
                    return;
                }
            }
            if ended {
                break;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(REOPEN_BACKOFF) => {}
            () = stop.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use gregor_controller::metadata::Endpoint;
    use pb::metadata_event::Event;
    use uuid::Uuid;

    use super::*;

    fn record(offset: u64, cmd: &Command) -> pb::MetadataEvent {
        pb::MetadataEvent {
            event: Some(Event::Record(pb::MetadataRecord {
                offset,
                command: cmd.encode().into(),
            })),
        }
    }

    #[test]
    fn records_apply_in_order_and_replays_are_skipped() {
        let register = Command::RegisterBroker {
            broker_id: 1,
            clean_shutdown: true,
            incarnation: Uuid::from_u128(7),
            endpoints: vec![Endpoint {
                name: "PLAINTEXT".into(),
                host: "h".into(),
                port: 1,
            }],
            rack: None,
        };
        let mut image = MetadataImage::default();
        assert!(apply_event(&mut image, record(3, &register)).unwrap());
        assert_eq!(image.offset, 3);
        assert_eq!(image.brokers[&1].epoch, 3);
        // The same record again after a reconnect changes nothing.
        assert!(!apply_event(&mut image, record(3, &register)).unwrap());
        let snapshot = image.encode();
        let mut other = MetadataImage::default();
        let ev = pb::MetadataEvent {
            event: Some(Event::Snapshot(pb::MetadataSnapshot {
                offset: 3,
                image: snapshot.into(),
            })),
        };
        assert!(apply_event(&mut other, ev).unwrap());
        assert_eq!(other, image);
        let bad = pb::MetadataEvent {
            event: Some(Event::Record(pb::MetadataRecord {
                offset: 4,
                command: vec![250, 1].into(),
            })),
        };
        assert!(apply_event(&mut image, bad).is_err());
    }
}
