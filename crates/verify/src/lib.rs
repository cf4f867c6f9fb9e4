//! `gregor-verify`: Jepsen-style histories and their checker, for Gregor's fault tests.
//!
//! A fault test records every produce and consume operation of its clients into a history
//! ([`Recorder`], JSON Lines via [`write_jsonl`]), injects faults, reads every partition back
//! after healing (the *final read*), and hands the history to [`check`]. The checker implements
//! analyses 1–8 and 11 of `shared/reference/reliability.md` §3.6 (the Jepsen queue checker's
//! rules: inconsistent offsets, duplicates, lost writes, unseen, aborted reads, nonmonotonic
//! sends, poll skips, nonmonotonic polls, plus payload corruption and availability/latency
//! figures) and [`render`] prints the §6.6 report.
//!
//! The crate knows no Kafka client: values are `u64`s, errors are `i32` codes (Kafka's, or
//! librdkafka's negative local codes). `docs/durability.md` ("End-to-end checks") explains the
//! classification rules and what each fault test proves.
//!
//! # Layout
//! - `value`: unique self-checking values `(writer << 40) | seq` and the CRC-32C record payload
//!   ([`make_value`], [`encode_payload`], [`decode_payload`]).
//! - `history`: the event model ([`Event`], [`OpType`], [`OpFn`], [`SendId`]), the thread-safe
//!   [`Recorder`] and JSON-Lines I/O.
//! - `outcome`: which send errors are definite failures ([`classify_send_error`]) and why.
//! - `check`: the analyses ([`check`], [`CheckOptions`], [`CheckResult`] and its anomaly types).
//! - `report`: the §6.6 text ([`render`]) and the `results.json` document ([`results_json`]).
//! - `error`: [`PayloadError`], [`HistoryError`].

mod check;
mod error;
mod history;
mod outcome;
mod report;
mod value;

pub use check::{
    AbortedRead, Anomalies, Availability, CheckOptions, CheckResult, Corrupt, Counts, Duplicate,
    FaultWindow, InconsistentOffset, Latency, LostReason, LostWrite, MAX_EXAMPLES,
    NonmonotonicSend, PollAnomaly, Unseen, WindowFigure, check,
};
pub use error::{HistoryError, PayloadError};
pub use history::{Event, OpFn, OpType, Recorder, SendId, read_jsonl, save_jsonl, write_jsonl};
pub use outcome::{Attempts, DEFINITE_CODES, classify_send_error};
pub use report::{RunInfo, render, results_json};
pub use value::{
    MAX_SEQ, MAX_WRITER, SEQ_BITS, decode_payload, encode_payload, make_value, seq_of, writer_of,
};
