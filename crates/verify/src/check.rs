//! The checker: §3.6 analyses 1–8 and 11 of `shared/reference/reliability.md` over one history.
//!
//! Everything is built in one pass over the events plus sorts, so it is O(n log n):
//! * sends are paired invoke → completion by their unique value;
//! * the *version order* maps (partition, offset) to the values seen there, from acknowledged
//!   sends and from every poll (polls are always safe, whatever their op's outcome);
//! * read sets: values read by any poll, and by the final read.
//!
//! See [`CheckResult`] for what each anomaly means and which ones make a run invalid.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::history::{Event, OpFn, OpType};
use crate::value::seq_of;

/// How many examples of each anomaly the result keeps (the counts are always exact).
pub const MAX_EXAMPLES: usize = 50;

/// What the checker needs to know about the run that the history does not say.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// The producers ran with `enable.idempotence=true`: duplicates and nonmonotonic sends are
    /// fatal (without idempotence a retry may legitimately append twice or reorder).
    pub idempotent: bool,
    /// Fault windows `[start_ns, end_ns)` on the history's clock, for per-fault availability.
    pub fault_windows: Vec<FaultWindow>,
}

/// One injected fault, from its injection to its healing (or to the next fault).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FaultWindow {
    /// When the fault was injected (history clock).
    pub start_ns: u64,
    /// When it was healed.
    pub end_ns: u64,
    /// What it was, e.g. `kill -9 node 2`.
    pub label: String,
}

/// Exact count plus up to [`MAX_EXAMPLES`] examples.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Anomalies<T> {
    /// How many were found.
    pub count: usize,
    /// The first [`MAX_EXAMPLES`] of them.
    pub examples: Vec<T>,
}

impl<T> Default for Anomalies<T> {
    fn default() -> Self {
        Anomalies {
            count: 0,
            examples: Vec::new(),
        }
    }
}

impl<T> Anomalies<T> {
    fn push(&mut self, t: T) {
        self.count += 1;
        if self.examples.len() < MAX_EXAMPLES {
            self.examples.push(t);
        }
    }

    /// No anomaly of this kind.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// Why a value counts as lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LostReason {
    /// Jepsen's rule: its offset is at or below the highest offset anyone read in its
    /// partition, yet it is missing (from the partition's final read, or, without one, from
    /// every read).
    BelowReadFrontier,
    /// The ducktape rule: absent from the final read of its partition, beyond everything read
    /// (or with no known offset). After healing and a read up to the high watermark this is
    /// loss, not delay.
    AbsentFromFinalRead,
}

/// A must-have-committed value missing from the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LostWrite {
    /// The value.
    pub value: u64,
    /// Its partition.
    pub partition: i32,
    /// The acknowledged (or earlier read) offset, if known.
    pub offset: Option<i64>,
    /// True if the send was acknowledged (`ok`); false for an `info` send proven visible by a
    /// read.
    pub acked: bool,
    /// True if some poll before the final read returned it (a read of data later truncated).
    pub read_earlier: bool,
    /// Which rule found it.
    pub reason: LostReason,
}

/// An acknowledged value no poll ever returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unseen {
    /// The value.
    pub value: u64,
    /// Its partition.
    pub partition: i32,
    /// Its acknowledged offset.
    pub offset: Option<i64>,
}

/// One (partition, offset) with more than one value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InconsistentOffset {
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
    /// Every value seen there (acknowledged or read).
    pub values: Vec<u64>,
}

/// One value at more than one position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Duplicate {
    /// The value.
    pub value: u64,
    /// Every (partition, offset) it was seen at.
    pub positions: Vec<(i32, i64)>,
}

/// A definitely failed value that a poll returned (Jepsen's G1a).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AbortedRead {
    /// The value.
    pub value: u64,
    /// The error code of its failed send.
    pub error_code: Option<i32>,
    /// Where it was read.
    pub partition: i32,
    /// The offset it was read at.
    pub offset: i64,
}

/// Two acknowledged sends of one producer session to one partition whose offsets do not follow
/// their send order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NonmonotonicSend {
    /// The producer.
    pub process: u64,
    /// Its session.
    pub session: u64,
    /// The partition.
    pub partition: i32,
    /// The earlier send: (value, offset).
    pub earlier: (u64, i64),
    /// The later send, at an offset not above the earlier one's.
    pub later: (u64, i64),
}

/// Two successive reads of one consumer session on one partition that skip or go back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PollAnomaly {
    /// The consumer.
    pub process: u64,
    /// Its assignment session.
    pub session: u64,
    /// The partition.
    pub partition: i32,
    /// The previous offset read.
    pub previous: i64,
    /// The next offset read.
    pub next: i64,
    /// For a skip: the first offset in the version order that was jumped over.
    pub skipped: Option<i64>,
}

/// A polled record whose payload failed its self-check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Corrupt {
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: Option<i64>,
    /// The decoder's complaint.
    pub why: String,
}

/// Operation counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Sends invoked.
    pub invoked: usize,
    /// Sends acknowledged.
    pub ok: usize,
    /// Sends that definitely failed.
    pub fail: usize,
    /// Sends with an unknown outcome (incl. sends never completed).
    pub info: usize,
    /// `info` sends that some poll later returned (so they did commit).
    pub info_seen: usize,
    /// Records returned by polls (all reads).
    pub polled: usize,
    /// Records returned by the final read.
    pub final_read: usize,
}

/// Availability figures (analysis 11).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Availability {
    /// Longest interval between two successive acknowledged sends (or from the last one to the
    /// last send event of the history), in nanoseconds.
    pub longest_ack_gap_ns: Option<u64>,
    /// The same per fault window: the longest gap overlapping the window.
    pub windows: Vec<WindowFigure>,
}

/// Availability during one fault window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WindowFigure {
    /// The fault.
    pub window: FaultWindow,
    /// Longest interval without an acknowledged send that overlaps the window.
    pub longest_ack_gap_ns: Option<u64>,
    /// Latency of the acknowledged sends invoked during the window.
    pub latency: Latency,
}

/// Produce latency of acknowledged sends (invoke → ok), microseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Latency {
    /// Sends measured.
    pub samples: u64,
    /// Median.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Maximum.
    pub max_us: u64,
}

/// Everything the checker found. `valid` is false iff a fatal anomaly was found; `fatal` names
/// them.
///
/// Fatal always: `lost`, `inconsistent_offsets`, `aborted_reads`, `poll_skips`,
/// `nonmonotonic_polls`, `corrupt`. Fatal with idempotence only: `duplicates`,
/// `nonmonotonic_sends`. Never fatal by itself: `unseen` (without a final read it may be delay;
/// with one, every unseen acknowledged value is also in `lost`) and `stale_reads` (every stale
/// read of a must-have-committed value is also in `lost`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    /// No fatal anomaly.
    pub valid: bool,
    /// Names of the fatal anomalies found.
    pub fatal: Vec<&'static str>,
    /// The run was idempotent (from [`CheckOptions`]).
    pub idempotent: bool,
    /// The history contains a final read (of at least one partition; the ducktape rule applies
    /// to the partitions it covered).
    pub has_final_read: bool,
    /// Operation counts.
    pub counts: Counts,
    /// Must-have-committed values missing from the log (analysis 3).
    pub lost: Anomalies<LostWrite>,
    /// Of `lost`, those that were acknowledged.
    pub acked_lost: usize,
    /// Acknowledged values no poll returned (analysis 4).
    pub unseen: Anomalies<Unseen>,
    /// Values read before the final read and absent from it (analysis 8, dirty/stale reads).
    pub stale_reads: usize,
    /// Analysis 1.
    pub inconsistent_offsets: Anomalies<InconsistentOffset>,
    /// Analysis 2.
    pub duplicates: Anomalies<Duplicate>,
    /// Analysis 5 (G1a).
    pub aborted_reads: Anomalies<AbortedRead>,
    /// Analysis 6.
    pub nonmonotonic_sends: Anomalies<NonmonotonicSend>,
    /// Analysis 7: a successive read jumped over an offset of the version order.
    pub poll_skips: Anomalies<PollAnomaly>,
    /// Analysis 7: a successive read went back or repeated an offset.
    pub nonmonotonic_polls: Anomalies<PollAnomaly>,
    /// Records whose payload failed the end-to-end check.
    pub corrupt: Anomalies<Corrupt>,
    /// Analysis 11.
    pub availability: Availability,
    /// Analysis 11.
    pub latency: Latency,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Pending,
    Ok(i64),
    Fail(Option<i32>),
    Info,
}

#[derive(Debug, Clone)]
struct Send {
    process: u64,
    session: u64,
    partition: i32,
    invoke_ns: u64,
    complete_ns: Option<u64>,
    outcome: Outcome,
}

#[derive(Debug, Clone)]
struct Read<'a> {
    process: u64,
    session: u64,
    partition: i32,
    offset: i64,
    value: u64,
    event: &'a Event,
}

/// Checks one history.
pub fn check(events: &[Event], options: &CheckOptions) -> CheckResult {
    let mut sends: HashMap<u64, Send> = HashMap::new();
    let mut reads: Vec<Read<'_>> = Vec::new();
    let mut corrupt = Anomalies::default();
    // Partitions the final read covered (its invoke marks a partition even if it was empty).
    let mut final_partitions: HashSet<i32> = HashSet::new();
    let mut end_ns = 0u64;
    for e in events {
        if e.f == OpFn::Send {
            // Availability ends with the last send activity, not with the final read.
            end_ns = end_ns.max(e.t_ns);
        }
        if e.final_read {
            final_partitions.insert(e.partition);
        }
        match (e.f, e.kind) {
            (OpFn::Send, kind) => {
                let Some(value) = e.value else { continue };
                let entry = sends.entry(value).or_insert(Send {
                    process: e.process,
                    session: e.session,
                    partition: e.partition,
                    invoke_ns: e.t_ns,
                    complete_ns: None,
                    outcome: Outcome::Pending,
                });
                if kind != OpType::Invoke {
                    entry.complete_ns = Some(e.t_ns);
                    entry.outcome = match (kind, e.offset) {
                        (OpType::Ok, Some(offset)) if offset >= 0 => Outcome::Ok(offset),
                        // acks=0 or an unknown offset: acknowledged without a position.
                        (OpType::Ok, _) => Outcome::Ok(-1),
                        (OpType::Fail, _) => Outcome::Fail(e.error_code),
                        _ => Outcome::Info,
                    };
                }
            }
            (OpFn::Poll, OpType::Invoke) => {}
            (OpFn::Poll, _) => {
                if let Some(why) = &e.corrupt {
                    corrupt.push(Corrupt {
                        partition: e.partition,
                        offset: e.offset,
                        why: why.clone(),
                    });
                    continue;
                }
                if let (Some(value), Some(offset)) = (e.value, e.offset) {
                    reads.push(Read {
                        process: e.process,
                        session: e.session,
                        partition: e.partition,
                        offset,
                        value,
                        event: e,
                    });
                }
            }
        }
    }

    let has_final_read = !final_partitions.is_empty();
    let mut r = CheckResult {
        idempotent: options.idempotent,
        has_final_read,
        corrupt,
        ..CheckResult::default()
    };

    // Analysis 1 and 2: version order and positions per value.
    let mut version: BTreeMap<(i32, i64), BTreeSet<u64>> = BTreeMap::new();
    let mut positions: HashMap<u64, BTreeSet<(i32, i64)>> = HashMap::new();
    for (&value, s) in &sends {
        if let Outcome::Ok(offset) = s.outcome
            && offset >= 0
        {
            version
                .entry((s.partition, offset))
                .or_default()
                .insert(value);
            positions
                .entry(value)
                .or_default()
                .insert((s.partition, offset));
        }
    }
    for rd in &reads {
        version
            .entry((rd.partition, rd.offset))
            .or_default()
            .insert(rd.value);
        positions
            .entry(rd.value)
            .or_default()
            .insert((rd.partition, rd.offset));
    }
    for (&(partition, offset), values) in &version {
        if values.len() > 1 {
            r.inconsistent_offsets.push(InconsistentOffset {
                partition,
                offset,
                values: values.iter().copied().collect(),
            });
        }
    }
    let mut dup_values: Vec<(&u64, &BTreeSet<(i32, i64)>)> =
        positions.iter().filter(|(_, p)| p.len() > 1).collect();
    dup_values.sort_unstable();
    for (&value, p) in dup_values {
        r.duplicates.push(Duplicate {
            value,
            positions: p.iter().copied().collect(),
        });
    }

    // Read sets and the read frontier per partition.
    let mut read_any: HashMap<u64, i64> = HashMap::new();
    let mut read_final: HashSet<u64> = HashSet::new();
    let mut read_before_final: HashSet<u64> = HashSet::new();
    let mut frontier: HashMap<i32, i64> = HashMap::new();
    for rd in &reads {
        read_any.entry(rd.value).or_insert(rd.offset);
        if rd.event.final_read {
            read_final.insert(rd.value);
            r.counts.final_read += 1;
        } else {
            read_before_final.insert(rd.value);
        }
        let f = frontier.entry(rd.partition).or_insert(rd.offset);
        *f = (*f).max(rd.offset);
    }
    r.counts.polled = reads.len();

    // Counts, lost, unseen, aborted reads; in value order so examples are deterministic.
    let mut values: Vec<u64> = sends.keys().copied().collect();
    values.sort_unstable();
    for &value in &values {
        let s = &sends[&value];
        r.counts.invoked += 1;
        let seen_at = read_any.get(&value).copied();
        let (acked, offset) = match s.outcome {
            Outcome::Ok(o) => {
                r.counts.ok += 1;
                (true, (o >= 0).then_some(o).or(seen_at))
            }
            Outcome::Fail(code) => {
                r.counts.fail += 1;
                if let Some(at) = seen_at {
                    r.aborted_reads.push(AbortedRead {
                        value,
                        error_code: code,
                        partition: s.partition,
                        offset: at,
                    });
                }
                continue;
            }
            Outcome::Info | Outcome::Pending => {
                r.counts.info += 1;
                if seen_at.is_none() {
                    // Never seen: it may never have been appended. Not an anomaly.
                    continue;
                }
                r.counts.info_seen += 1;
                (false, seen_at)
            }
        };
        if acked && seen_at.is_none() {
            r.unseen.push(Unseen {
                value,
                partition: s.partition,
                offset,
            });
        }
        let below_frontier = offset
            .zip(frontier.get(&s.partition))
            .is_some_and(|(o, &f)| o <= f);
        let final_covers = final_partitions.contains(&s.partition);
        let missing = if final_covers {
            !read_final.contains(&value)
        } else {
            seen_at.is_none() && below_frontier
        };
        if missing {
            if acked {
                r.acked_lost += 1;
            }
            let read_earlier = read_before_final.contains(&value);
            if final_covers && read_earlier {
                r.stale_reads += 1;
            }
            r.lost.push(LostWrite {
                value,
                partition: s.partition,
                offset,
                acked,
                read_earlier,
                reason: if below_frontier {
                    LostReason::BelowReadFrontier
                } else {
                    LostReason::AbsentFromFinalRead
                },
            });
        }
    }
    // Values read that nobody sent in this history are not ours to judge (e.g. a previous run);
    // the payload check already guarantees they are well-formed.

    // Analysis 6: per (producer session, partition), acknowledged offsets follow send order.
    // (process, session, partition) → (invoke time, seq, value, offset) per acknowledged send.
    type Stream = Vec<(u64, u64, u64, i64)>;
    let mut streams: BTreeMap<(u64, u64, i32), Stream> = BTreeMap::new();
    for (&value, s) in &sends {
        if let Outcome::Ok(offset) = s.outcome
            && offset >= 0
        {
            streams
                .entry((s.process, s.session, s.partition))
                .or_default()
                .push((s.invoke_ns, seq_of(value), value, offset));
        }
    }
    for ((process, session, partition), mut stream) in streams {
        stream.sort_unstable();
        for w in stream.windows(2) {
            let (_, _, v0, o0) = w[0];
            let (_, _, v1, o1) = w[1];
            if o1 <= o0 {
                r.nonmonotonic_sends.push(NonmonotonicSend {
                    process,
                    session,
                    partition,
                    earlier: (v0, o0),
                    later: (v1, o1),
                });
            }
        }
    }

    // Analysis 7: per consumer session and partition, successive reads in history order.
    let mut last: HashMap<(u64, u64, i32), i64> = HashMap::new();
    for rd in &reads {
        let key = (rd.process, rd.session, rd.partition);
        if let Some(previous) = last.insert(key, rd.offset) {
            let anomaly = |skipped| PollAnomaly {
                process: rd.process,
                session: rd.session,
                partition: rd.partition,
                previous,
                next: rd.offset,
                skipped,
            };
            if rd.offset <= previous {
                r.nonmonotonic_polls.push(anomaly(None));
            } else if rd.offset > previous + 1
                && let Some((&(_, skipped), _)) = version
                    .range((rd.partition, previous + 1)..(rd.partition, rd.offset))
                    .next()
            {
                r.poll_skips.push(anomaly(Some(skipped)));
            }
        }
    }

    // Analysis 11: availability and latency.
    let mut acks: Vec<u64> = sends
        .values()
        .filter(|s| matches!(s.outcome, Outcome::Ok(_)))
        .filter_map(|s| s.complete_ns)
        .collect();
    acks.sort_unstable();
    r.availability = availability(&acks, end_ns, &options.fault_windows);
    for w in &mut r.availability.windows {
        let (start, end) = (w.window.start_ns, w.window.end_ns);
        w.latency = latency(
            sends
                .values()
                .filter(|s| s.invoke_ns >= start && s.invoke_ns < end),
        );
    }
    r.latency = latency(sends.values());

    let fatal = [
        ("lost", r.lost.count),
        ("inconsistent-offsets", r.inconsistent_offsets.count),
        ("aborted-read", r.aborted_reads.count),
        ("poll-skip", r.poll_skips.count),
        ("nonmonotonic-poll", r.nonmonotonic_polls.count),
        ("corrupt", r.corrupt.count),
        (
            "duplicate",
            if options.idempotent {
                r.duplicates.count
            } else {
                0
            },
        ),
        (
            "nonmonotonic-send",
            if options.idempotent {
                r.nonmonotonic_sends.count
            } else {
                0
            },
        ),
    ];
    r.fatal = fatal
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(name, _)| *name)
        .collect();
    r.valid = r.fatal.is_empty();
    r
}

/// Gaps between successive acknowledgements, and from the last one to `end_ns`, the last send
/// event (an outage at the end of the workload is still an outage).
fn availability(acks: &[u64], end_ns: u64, windows: &[FaultWindow]) -> Availability {
    let mut gaps: Vec<(u64, u64)> = acks.windows(2).map(|w| (w[0], w[1])).collect();
    if let Some(&last) = acks.last()
        && end_ns > last
    {
        gaps.push((last, end_ns));
    }
    let longest = |overlaps: &dyn Fn(u64, u64) -> bool| {
        gaps.iter()
            .filter(|(a, b)| overlaps(*a, *b))
            .map(|(a, b)| b - a)
            .max()
    };
    Availability {
        longest_ack_gap_ns: longest(&|_, _| true),
        windows: windows
            .iter()
            .map(|w| WindowFigure {
                window: w.clone(),
                longest_ack_gap_ns: longest(&|a, b| b > w.start_ns && a < w.end_ns),
                latency: Latency::default(),
            })
            .collect(),
    }
}

fn latency<'a>(sends: impl Iterator<Item = &'a Send>) -> Latency {
    // 1 µs to 1 h at 3 significant digits; larger values saturate (and show as max).
    let Ok(mut h) = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3) else {
        return Latency::default();
    };
    for s in sends {
        if let (Outcome::Ok(_), Some(done)) = (s.outcome, s.complete_ns) {
            h.saturating_record(done.saturating_sub(s.invoke_ns) / 1000);
        }
    }
    Latency {
        samples: h.len(),
        p50_us: h.value_at_quantile(0.5),
        p99_us: h.value_at_quantile(0.99),
        max_us: h.max(),
    }
}
