//! The checker's own suite (reliability.md §6.5 C4): one hand-made history per anomaly type,
//! each detected, a valid history judged valid, and property tests over a correct log model.

// Test code: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use gregor_verify::{
    CheckOptions, Event, FaultWindow, LostReason, OpType, RunInfo, SendId, check, decode_payload,
    encode_payload, make_value, read_jsonl, render, results_json, write_jsonl,
};
use proptest::prelude::*;

/// Builds histories with a ticking clock.
#[derive(Default)]
struct H {
    t: u64,
    events: Vec<Event>,
    final_reads: u64,
}

const PRODUCER: u64 = 1;
const CONSUMER: u64 = 100;

fn v(seq: u64) -> u64 {
    make_value(1, seq).unwrap()
}

fn id(partition: i32, value: u64) -> SendId {
    SendId {
        process: PRODUCER,
        session: 0,
        partition,
        value,
    }
}

impl H {
    fn tick(&mut self) -> u64 {
        self.t += 1_000_000; // 1 ms per event
        self.t
    }
    fn ok(&mut self, partition: i32, value: u64, offset: i64) -> &mut Self {
        let t = self.tick();
        self.events
            .push(Event::send_invoke(t, id(partition, value)));
        let t = self.tick();
        self.events
            .push(Event::send_ok(t, id(partition, value), offset));
        self
    }
    fn end(&mut self, partition: i32, value: u64, kind: OpType, code: i32) -> &mut Self {
        let t = self.tick();
        self.events
            .push(Event::send_invoke(t, id(partition, value)));
        let t = self.tick();
        self.events.push(Event::send_error(
            t,
            id(partition, value),
            kind,
            Some(code),
            "error",
        ));
        self
    }
    fn poll(&mut self, session: u64, partition: i32, offset: i64, value: u64) -> &mut Self {
        let t = self.tick();
        self.events.push(Event::poll_ok(
            t, CONSUMER, session, partition, offset, value,
        ));
        self
    }
    /// A final read: a fresh consumer session reading `records` of `partition` in order, after
    /// an invoke that marks the final read as done even if it returns nothing.
    fn final_read(&mut self, partition: i32, records: &[(i64, u64)]) -> &mut Self {
        self.final_reads += 1;
        let session = 1000 + self.final_reads;
        let t = self.tick();
        self.events
            .push(Event::poll_invoke(t, CONSUMER + 1, session, partition).in_final_read());
        for &(offset, value) in records {
            let t = self.tick();
            self.events.push(
                Event::poll_ok(t, CONSUMER + 1, session, partition, offset, value).in_final_read(),
            );
        }
        self
    }
    fn check(&self, idempotent: bool) -> gregor_verify::CheckResult {
        check(
            &self.events,
            &CheckOptions {
                idempotent,
                fault_windows: Vec::new(),
            },
        )
    }
}

/// Three acked values on partition 0 at offsets 0..3, read back in full.
fn healthy() -> H {
    let mut h = H::default();
    h.ok(0, v(0), 0).ok(0, v(1), 1).ok(0, v(2), 2);
    h.final_read(0, &[(0, v(0)), (1, v(1)), (2, v(2))]);
    h
}

#[test]
fn a_correct_history_is_valid() {
    let mut h = healthy();
    // An indeterminate send that did commit, one that did not, and a definite failure.
    h.end(0, v(3), OpType::Info, 7)
        .end(0, v(4), OpType::Info, -192)
        .end(0, v(5), OpType::Fail, 19);
    h.final_read(0, &[(0, v(0)), (1, v(1)), (2, v(2)), (3, v(3))]);
    let r = h.check(true);
    assert!(r.valid, "{r:#?}");
    assert_eq!(
        (
            r.counts.invoked,
            r.counts.ok,
            r.counts.fail,
            r.counts.info,
            r.counts.info_seen
        ),
        (6, 3, 1, 2, 1)
    );
    assert_eq!((r.acked_lost, r.unseen.count), (0, 0));
    assert_eq!(r.latency.samples, 3);
    assert_eq!(r.latency.p50_us, 1000); // invoke → ok is one 1 ms tick
    let text = render(&RunInfo::default(), &r);
    assert!(text.ends_with("VALID\n"), "{text}");
}

#[test]
fn lost_write_is_detected_by_both_rules() {
    // Acked at offset 1, but the final read has another value there and nothing for v(1): the
    // Jepsen frontier rule. v(3) acked at 5, beyond everything read: the ducktape rule.
    let mut h = H::default();
    h.ok(0, v(0), 0).ok(0, v(1), 1).ok(0, v(3), 5);
    h.final_read(0, &[(0, v(0)), (1, v(2))]);
    let r = h.check(false);
    assert!(!r.valid);
    assert!(r.fatal.contains(&"lost"));
    assert_eq!(r.acked_lost, 2);
    let text = render(&RunInfo::default(), &r);
    assert!(text.contains("acked lost (acks=): 2 of 3"), "{text}");
    assert!(
        text.ends_with("INVALID: lost, inconsistent-offsets\n"),
        "{text}"
    );
    let reasons: Vec<(u64, LostReason)> = r
        .lost
        .examples
        .iter()
        .map(|l| (l.value, l.reason))
        .collect();
    assert_eq!(
        reasons,
        [
            (v(1), LostReason::BelowReadFrontier),
            (v(3), LostReason::AbsentFromFinalRead)
        ]
    );
    // Offset 1 holds two values: also inconsistent.
    assert_eq!(r.inconsistent_offsets.count, 1);
}

#[test]
fn lost_without_final_read_uses_the_read_frontier_only() {
    let mut h = H::default();
    h.ok(0, v(0), 0).ok(0, v(1), 1).ok(0, v(2), 2);
    h.poll(0, 0, 0, v(0)).poll(0, 0, 2, v(2));
    let r = h.check(false);
    assert!(!r.has_final_read);
    assert_eq!(r.lost.count, 1, "{r:#?}");
    assert_eq!(r.lost.examples[0].value, v(1));
    assert_eq!(r.poll_skips.count, 1); // the same consumer jumped over offset 1
}

#[test]
fn unseen_without_final_read_is_reported_but_not_fatal() {
    let mut h = H::default();
    h.ok(0, v(0), 0).ok(0, v(1), 1);
    h.poll(0, 0, 0, v(0));
    let r = h.check(true);
    assert!(r.valid, "{r:#?}");
    assert_eq!(r.unseen.count, 1);
    assert_eq!(r.unseen.examples[0].value, v(1));
    assert_eq!(r.lost.count, 0);
    // After a final read that misses it, the same value is lost.
    h.final_read(0, &[(0, v(0))]);
    let r = h.check(true);
    assert_eq!((r.unseen.count, r.acked_lost), (1, 1));
    assert!(!r.valid);
}

#[test]
fn the_final_read_judges_only_the_partitions_it_covered() {
    // Partition 1 was never read finally: its unread value is unseen, not lost.
    let mut h = healthy();
    h.ok(1, v(7), 0);
    let r = h.check(true);
    assert!(r.valid, "{r:#?}");
    assert_eq!((r.unseen.count, r.lost.count), (1, 0));
    // Once partition 1's final read (empty) is recorded, it is lost.
    h.final_read(1, &[]);
    let r = h.check(true);
    assert_eq!(r.acked_lost, 1);
    assert_eq!(r.lost.examples[0].reason, LostReason::AbsentFromFinalRead);
}

#[test]
fn read_then_truncated_is_a_stale_read_and_lost() {
    // An info send read by a live consumer, then gone from the final log.
    let mut h = H::default();
    h.ok(0, v(0), 0).end(0, v(1), OpType::Info, 20);
    h.poll(0, 0, 0, v(0)).poll(0, 0, 1, v(1));
    h.final_read(0, &[(0, v(0))]);
    let r = h.check(false);
    assert_eq!((r.stale_reads, r.lost.count, r.acked_lost), (1, 1, 0));
    assert!(r.lost.examples[0].read_earlier);
    assert!(!r.valid);
}

#[test]
fn duplicate_is_fatal_only_when_idempotent() {
    let mut h = healthy();
    h.final_read(0, &[(0, v(0)), (1, v(1)), (2, v(2)), (3, v(2))]);
    let r = h.check(false);
    assert_eq!(r.duplicates.count, 1);
    assert_eq!(r.duplicates.examples[0].positions, [(0, 2), (0, 3)]);
    assert!(r.valid, "{r:#?}");
    let r = h.check(true);
    assert_eq!(r.fatal, ["duplicate"]);
}

#[test]
fn inconsistent_offsets_are_detected() {
    let mut h = healthy();
    // A live consumer saw v(9) at offset 1 (later truncated and overwritten by v(1)).
    h.end(0, v(9), OpType::Info, -192);
    h.poll(5, 0, 1, v(9));
    let r = h.check(true);
    assert_eq!(r.inconsistent_offsets.count, 1);
    assert_eq!(r.inconsistent_offsets.examples[0].values, [v(1), v(9)]);
    assert!(r.fatal.contains(&"inconsistent-offsets"));
}

#[test]
fn aborted_read_is_detected() {
    let mut h = healthy();
    h.end(0, v(3), OpType::Fail, 19);
    h.final_read(0, &[(0, v(0)), (1, v(1)), (2, v(2)), (3, v(3))]);
    let r = h.check(true);
    assert_eq!(r.aborted_reads.count, 1);
    assert_eq!(r.aborted_reads.examples[0].error_code, Some(19));
    assert_eq!(r.fatal, ["aborted-read"]);
}

#[test]
fn poll_skip_is_detected() {
    let mut h = healthy();
    h.poll(1, 0, 0, v(0)).poll(1, 0, 2, v(2));
    let r = h.check(true);
    assert_eq!(r.poll_skips.count, 1);
    assert_eq!(r.poll_skips.examples[0].skipped, Some(1));
    assert_eq!(r.fatal, ["poll-skip"]);
    // A new session starting further on is not a skip.
    let mut h = healthy();
    h.poll(1, 0, 0, v(0)).poll(2, 0, 2, v(2));
    assert!(h.check(true).valid);
}

#[test]
fn nonmonotonic_poll_is_detected() {
    let mut h = healthy();
    h.poll(1, 0, 1, v(1))
        .poll(1, 0, 1, v(1))
        .poll(1, 0, 0, v(0));
    let r = h.check(true);
    assert_eq!(r.nonmonotonic_polls.count, 2);
    assert_eq!(r.fatal, ["nonmonotonic-poll"]);
}

#[test]
fn nonmonotonic_send_is_fatal_only_when_idempotent() {
    let mut h = H::default();
    h.ok(0, v(0), 1).ok(0, v(1), 0);
    h.final_read(0, &[(0, v(1)), (1, v(0))]);
    let r = h.check(false);
    assert_eq!(r.nonmonotonic_sends.count, 1);
    assert_eq!(r.nonmonotonic_sends.examples[0].earlier, (v(0), 1));
    assert!(r.valid);
    assert_eq!(h.check(true).fatal, ["nonmonotonic-send"]);
}

#[test]
fn corrupt_payload_is_detected() {
    let mut payload = encode_payload(v(1), 16);
    payload[10] ^= 0x40;
    let why = decode_payload(&payload).unwrap_err().to_string();
    let mut h = healthy();
    let t = h.tick();
    h.events
        .push(Event::poll_corrupt(t, CONSUMER, 3, 0, 1, why.clone()));
    let r = h.check(true);
    assert_eq!(r.corrupt.count, 1);
    assert_eq!(r.corrupt.examples[0].why, why);
    assert_eq!(r.fatal, ["corrupt"]);
}

#[test]
fn availability_gaps_overall_and_per_window() {
    let mut h = H::default();
    // acks at 2, 4 and 20 ms (the third send's invoke is at 19 ms).
    h.ok(0, v(0), 0).ok(0, v(1), 1);
    h.t = 18_000_000;
    h.ok(0, v(2), 2);
    let fault = |s: u64, e: u64| FaultWindow {
        start_ns: s * 1_000_000,
        end_ns: e * 1_000_000,
        label: "kill".into(),
    };
    let r = check(
        &h.events,
        &CheckOptions {
            idempotent: true,
            fault_windows: vec![fault(5, 6), fault(0, 3)],
        },
    );
    assert_eq!(r.availability.longest_ack_gap_ns, Some(16_000_000));
    let per: Vec<Option<u64>> = r
        .availability
        .windows
        .iter()
        .map(|w| w.longest_ack_gap_ns)
        .collect();
    assert_eq!(per, [Some(16_000_000), Some(2_000_000)]);
    // Sends invoked in [0, 3 ms): the first, 1 ms each.
    let w = &r.availability.windows[1];
    assert_eq!((w.latency.samples, w.latency.p99_us), (1, 1000));
    let text = render(&RunInfo::default(), &r);
    assert!(text.contains("max 0.02 s"), "{text}");
}

#[test]
fn results_json_and_history_jsonl_round_trip() {
    let h = healthy();
    let mut buf = Vec::new();
    write_jsonl(&mut buf, &h.events).unwrap();
    let back = read_jsonl(&buf[..]).unwrap();
    assert_eq!(back, h.events);
    let r = check(&back, &CheckOptions::default());
    let doc = results_json(&RunInfo::default(), &r);
    assert_eq!(doc["results"]["valid"], true);
    assert_eq!(doc["results"]["counts"]["ok"], 3);
    assert_eq!(doc["results"]["lost"]["count"], 0);
}

/// A correct log model: `ops` sends (partition, outcome) by 2 writers round-robin, appended in
/// order; `info` sends are appended or not per `appended`; a live consumer reads a prefix of
/// every partition; then the final read reads everything.
/// (partition, offset, value, acked) of every acknowledged send.
type Sent = Vec<(i32, i64, u64, bool)>;

fn model(ops: &[(i32, u8, bool)], prefix: usize) -> (Vec<Event>, Sent) {
    let mut logs: Vec<Vec<u64>> = vec![Vec::new(); 3];
    let mut events = Vec::new();
    let mut sent = Vec::new(); // (partition, offset, value, acked)
    let mut t = 0;
    for (i, &(partition, outcome, appended)) in ops.iter().enumerate() {
        let writer = (i % 2) as u32;
        let value = make_value(writer, i as u64).unwrap();
        let sid = SendId {
            process: u64::from(writer),
            session: 0,
            partition,
            value,
        };
        t += 10;
        events.push(Event::send_invoke(t, sid));
        let log = &mut logs[partition as usize];
        t += 10;
        match outcome % 3 {
            0 => {
                log.push(value);
                let offset = log.len() as i64 - 1;
                events.push(Event::send_ok(t, sid, offset));
                sent.push((partition, offset, value, true));
            }
            1 => {
                if appended {
                    log.push(value);
                }
                events.push(Event::send_error(
                    t,
                    sid,
                    OpType::Info,
                    Some(-192),
                    "timeout",
                ));
            }
            _ => events.push(Event::send_error(t, sid, OpType::Fail, Some(19), "nope")),
        }
    }
    for (p, log) in logs.iter().enumerate() {
        for (o, &value) in log.iter().take(prefix).enumerate() {
            t += 1;
            events.push(Event::poll_ok(t, 50, 0, p as i32, o as i64, value));
        }
    }
    for (p, log) in logs.iter().enumerate() {
        t += 1;
        events.push(Event::poll_invoke(t, 60, 1, p as i32).in_final_read());
        for (o, &value) in log.iter().enumerate() {
            t += 1;
            events.push(Event::poll_ok(t, 60, 1, p as i32, o as i64, value).in_final_read());
        }
    }
    (events, sent)
}

proptest! {
    #[test]
    fn a_correct_log_is_always_valid(
        ops in prop::collection::vec((0i32..3, 0u8..3, any::<bool>()), 0..200),
        prefix in 0usize..50,
    ) {
        let (events, sent) = model(&ops, prefix);
        let r = check(&events, &CheckOptions { idempotent: true, fault_windows: Vec::new() });
        prop_assert!(r.valid, "{:#?}", r);
        prop_assert_eq!(r.counts.ok, sent.len());
        prop_assert_eq!(r.unseen.count, 0);
    }

    #[test]
    fn dropping_one_acked_value_from_the_final_read_is_always_detected(
        ops in prop::collection::vec((0i32..3, 0u8..3, any::<bool>()), 1..200),
        pick in any::<prop::sample::Index>(),
    ) {
        let (mut events, sent) = model(&ops, 0);
        prop_assume!(!sent.is_empty());
        let (partition, offset, value, _) = sent[pick.index(sent.len())];
        events.retain(|e| {
            !(e.final_read && e.kind == OpType::Ok && e.partition == partition
                && e.offset == Some(offset))
        });
        let r = check(&events, &CheckOptions { idempotent: true, fault_windows: Vec::new() });
        prop_assert!(!r.valid);
        prop_assert_eq!(r.acked_lost, 1);
        prop_assert_eq!(r.lost.examples[0].value, value);
    }
}
