//! Outcome classification of failed sends: definite `fail` or indeterminate `info`.
//!
//! A false `fail` makes the checker report an aborted read (or hide a lost write) that never
//! happened, so only errors that Kafka returns *before* the record is appended are definite
//! (`shared/reference/reliability.md` §1.2):
//!
//! | Code | Name | Why definite |
//! |---:|---|---|
//! | 19 | `NOT_ENOUGH_REPLICAS` | checked before the append; nothing written |
//! | 2 | `CORRUPT_MESSAGE` | the batch failed validation |
//! | 10 | `MESSAGE_TOO_LARGE` | rejected before the append |
//! | 87 | `INVALID_RECORD` | rejected by validation |
//! | 21 | `INVALID_REQUIRED_ACKS` | rejected before anything else |
//! | 3 | `UNKNOWN_TOPIC_OR_PARTITION` | no log to append to |
//!
//! Everything else is `info`: `NOT_ENOUGH_REPLICAS_AFTER_APPEND` (20, the record *is* in the
//! log), `REQUEST_TIMED_OUT` (7), disconnects, client-side delivery timeouts (librdkafka's
//! negative local codes such as `-192 _MSG_TIMED_OUT`), and codes this table does not know.
//!
//! **`NOT_LEADER_OR_FOLLOWER` (6) is `info`.** Kafka returns it before the append when the
//! broker is not the leader, but its `DelayedProduce` also returns it for a request that was
//! already appended when leadership moved while it waited for the ISR. The client cannot tell
//! the two apart. Jepsen's own client treats it as `fail` for single-op sends; we choose `info`
//! because a wrong `info` only weakens the aborted-read check, while a wrong `fail` produces a
//! false anomaly. (Gregor's broker follows Kafka here; see `docs/durability.md`.)
//!
//! **Retries.** A client that retried reports the *last* attempt's error. An earlier attempt may
//! have timed out after appending, so even 19 is only definite when the send was attempted
//! once (`retries=0`). [`Attempts::MayHaveRetried`] therefore makes every error `info`.

use crate::history::OpType;

/// Codes returned only before anything is appended (§1.2).
pub const DEFINITE_CODES: [i32; 6] = [19, 2, 10, 87, 21, 3];

/// How many times the client may have sent the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempts {
    /// Exactly one attempt (the producer runs with `retries=0`).
    Single,
    /// The client may have retried; the reported error is the last attempt's.
    MayHaveRetried,
}

/// The outcome class (`fail` or `info`) of a send that completed with Kafka or librdkafka error
/// `code` (positive: broker error codes; negative: librdkafka local errors).
pub fn classify_send_error(code: i32, attempts: Attempts) -> OpType {
    match attempts {
        Attempts::Single if DEFINITE_CODES.contains(&code) => OpType::Fail,
        _ => OpType::Info,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pre_append_codes_of_single_attempts_are_definite() {
        for code in DEFINITE_CODES {
            assert_eq!(classify_send_error(code, Attempts::Single), OpType::Fail);
            assert_eq!(
                classify_send_error(code, Attempts::MayHaveRetried),
                OpType::Info
            );
        }
        // 20 appended, 7 timed out, 6 ambiguous, -192 librdkafka delivery timeout, -195
        // transport failure, 0 never reaches here but must not be definite either.
        for code in [20, 7, 6, 5, 45, 47, 56, -192, -195, 0, 9999] {
            assert_eq!(
                classify_send_error(code, Attempts::Single),
                OpType::Info,
                "{code}"
            );
        }
    }
}
