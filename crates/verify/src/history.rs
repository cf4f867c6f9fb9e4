//! The history: one event per invocation and per completion, as JSON Lines.
//!
//! Field names follow `shared/reference/reliability.md` §3.6: `t_ns` (the harness's monotonic
//! clock), `process`, `type` (`invoke` | `ok` | `fail` | `info`), `f` (`send` | `poll`),
//! `partition`, `value`, `offset`, `error_code`, `leader_epoch`, plus `session` (the producer
//! session for sends, the consumer assignment for polls), `error` (a human-readable cause),
//! `corrupt` (why a polled payload failed its check) and `final_read` (the poll belongs to the
//! read after healing).
//!
//! Sends: an `invoke` with the value, then exactly one completion (`ok` with the offset, `fail`
//! or `info` with the error). Polls: one `ok` event per record read, with its offset and value;
//! an `invoke` before a poll is optional and ignored by the checker.

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::error::HistoryError;

/// The phase of an operation (Jepsen's `:type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpType {
    /// The operation starts.
    Invoke,
    /// It took effect (a send was acknowledged, a poll returned this record).
    Ok,
    /// It definitely did not take effect.
    Fail,
    /// Unknown: it may or may not have taken effect.
    Info,
}

/// The operation (Jepsen's `:f`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpFn {
    /// Produce one value to one partition.
    Send,
    /// Read records from one partition.
    Poll,
}

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Nanoseconds since the history's start, on the harness's monotonic clock.
    pub t_ns: u64,
    /// The client (producer or consumer) that ran the operation.
    pub process: u64,
    /// `invoke`, `ok`, `fail` or `info`.
    #[serde(rename = "type")]
    pub kind: OpType,
    /// `send` or `poll`.
    pub f: OpFn,
    /// The partition of the topic under test.
    pub partition: i32,
    /// The value sent or read (absent for a poll whose payload is corrupt beyond decoding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<u64>,
    /// The offset acknowledged (send) or read (poll).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    /// The Kafka error code of a failed send (librdkafka's negative codes for local errors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i32>,
    /// The leader epoch of a polled record's batch, when the client exposes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_epoch: Option<i32>,
    /// The producer session (sends) or consumer assignment (polls) within `process`.
    #[serde(default)]
    pub session: u64,
    /// A human-readable error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why a polled record's payload failed its self-check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrupt: Option<String>,
    /// The poll is part of the final read after healing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub final_read: bool,
}

/// Which send an event belongs to: the writer, its session, the partition and the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendId {
    /// The producer (Jepsen's process).
    pub process: u64,
    /// The producer session (a new producer instance, e.g. after a client crash, is a new one).
    pub session: u64,
    /// The partition written.
    pub partition: i32,
    /// The unique value.
    pub value: u64,
}

impl Event {
    /// A send invocation.
    pub fn send_invoke(t_ns: u64, id: SendId) -> Self {
        let mut e = Self::bare(
            t_ns,
            id.process,
            id.session,
            OpType::Invoke,
            OpFn::Send,
            id.partition,
        );
        e.value = Some(id.value);
        e
    }

    /// An acknowledged send.
    pub fn send_ok(t_ns: u64, id: SendId, offset: i64) -> Self {
        let mut e = Self::bare(
            t_ns,
            id.process,
            id.session,
            OpType::Ok,
            OpFn::Send,
            id.partition,
        );
        e.value = Some(id.value);
        e.offset = Some(offset);
        e
    }

    /// A send that ended in `kind` (`fail` or `info`, see [`crate::classify_send_error`]).
    pub fn send_error(
        t_ns: u64,
        id: SendId,
        kind: OpType,
        error_code: Option<i32>,
        error: impl Into<String>,
    ) -> Self {
        let mut e = Self::bare(t_ns, id.process, id.session, kind, OpFn::Send, id.partition);
        e.value = Some(id.value);
        e.error_code = error_code;
        e.error = Some(error.into());
        e
    }

    /// A poll (or, with [`Event::in_final_read`], the final read of a partition) starts. The
    /// checker ignores poll invocations except that a final-read one marks the final read as
    /// done, so a final read that returned nothing still counts.
    pub fn poll_invoke(t_ns: u64, process: u64, session: u64, partition: i32) -> Self {
        Self::bare(
            t_ns,
            process,
            session,
            OpType::Invoke,
            OpFn::Poll,
            partition,
        )
    }

    /// One record returned by a poll.
    pub fn poll_ok(
        t_ns: u64,
        process: u64,
        session: u64,
        partition: i32,
        offset: i64,
        value: u64,
    ) -> Self {
        let mut e = Self::bare(t_ns, process, session, OpType::Ok, OpFn::Poll, partition);
        e.offset = Some(offset);
        e.value = Some(value);
        e
    }

    /// One record returned by a poll whose payload failed its check (`value` if still readable).
    pub fn poll_corrupt(
        t_ns: u64,
        process: u64,
        session: u64,
        partition: i32,
        offset: i64,
        why: impl Into<String>,
    ) -> Self {
        let mut e = Self::bare(t_ns, process, session, OpType::Ok, OpFn::Poll, partition);
        e.offset = Some(offset);
        e.corrupt = Some(why.into());
        e
    }

    /// Marks a poll as part of the final read.
    pub fn in_final_read(mut self) -> Self {
        self.final_read = true;
        self
    }

    fn bare(t_ns: u64, process: u64, session: u64, kind: OpType, f: OpFn, partition: i32) -> Self {
        Event {
            t_ns,
            process,
            kind,
            f,
            partition,
            value: None,
            offset: None,
            error_code: None,
            leader_epoch: None,
            session,
            error: None,
            corrupt: None,
            final_read: false,
        }
    }
}

/// A thread-safe, append-only history with its own monotonic clock. Clones share the history.
#[derive(Debug, Clone)]
pub struct Recorder {
    start: Instant,
    events: Arc<Mutex<Vec<Event>>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// An empty history whose clock starts now.
    pub fn new() -> Self {
        Recorder {
            start: Instant::now(),
            events: Arc::default(),
        }
    }

    /// Nanoseconds since the start (the `t_ns` of events recorded now).
    pub fn now_ns(&self) -> u64 {
        self.t_ns(Instant::now())
    }

    /// `at` on the history's clock (0 if before the start).
    pub fn t_ns(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.start).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Appends an event.
    pub fn record(&self, event: Event) {
        self.events.lock().push(event);
    }

    /// A copy of the events so far, in recording order.
    pub fn snapshot(&self) -> Vec<Event> {
        self.events.lock().clone()
    }

    /// The number of events so far.
    pub fn len(&self) -> usize {
        self.events.lock().len()
    }

    /// True before the first event.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Writes `events` as JSON Lines.
pub fn write_jsonl(mut out: impl Write, events: &[Event]) -> Result<(), HistoryError> {
    for e in events {
        serde_json::to_writer(&mut out, e).map_err(HistoryError::Serialize)?;
        out.write_all(b"\n").map_err(HistoryError::Io)?;
    }
    out.flush().map_err(HistoryError::Io)
}

/// Writes `events` as JSON Lines to a new file at `path`.
pub fn save_jsonl(path: &Path, events: &[Event]) -> Result<(), HistoryError> {
    let file = std::fs::File::create(path).map_err(HistoryError::Io)?;
    write_jsonl(std::io::BufWriter::new(file), events)
}

/// Reads a JSON-Lines history (blank lines are skipped).
pub fn read_jsonl(input: impl BufRead) -> Result<Vec<Event>, HistoryError> {
    let mut out = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line = line.map_err(HistoryError::Io)?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str(&line).map_err(|source| HistoryError::Parse {
                line: i + 1,
                source,
            })?,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn id(value: u64) -> SendId {
        SendId {
            process: 2,
            session: 0,
            partition: 0,
            value,
        }
    }

    #[test]
    fn jsonl_round_trips_and_uses_the_documented_field_names() {
        let events = vec![
            Event::send_invoke(1, id(42)),
            Event::send_ok(5, id(42), 7),
            Event::send_error(6, id(43), OpType::Info, Some(7), "timed out"),
            Event::poll_ok(9, 3, 0, 0, 7, 42).in_final_read(),
            Event::poll_corrupt(10, 3, 0, 0, 8, "crc"),
        ];
        let mut buf = Vec::new();
        write_jsonl(&mut buf, &events).unwrap();
        let text = String::from_utf8(buf.clone()).unwrap();
        let first: serde_json::Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
        assert_eq!(first["type"], "ok");
        assert_eq!(first["f"], "send");
        assert_eq!(first["t_ns"], 5);
        assert_eq!(first["offset"], 7);
        assert_eq!(read_jsonl(&buf[..]).unwrap(), events);
        assert!(matches!(
            read_jsonl(&b"{\"t_ns\": 1}\n"[..]),
            Err(HistoryError::Parse { line: 1, .. })
        ));
    }
}
