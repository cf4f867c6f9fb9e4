//! The per-run report: `shared/reference/reliability.md` §6.6 as text, and `results.json`.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::check::CheckResult;

/// What the report says about the run itself.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunInfo {
    /// Scenario id or test name, e.g. `F2` or `leader_kill9`.
    pub scenario: String,
    /// The seed, for randomized runs.
    pub seed: Option<u64>,
    /// Wall time of the workload.
    pub duration: Duration,
    /// How many faults were injected.
    pub faults: usize,
    /// What kind, e.g. `leader kill -9`.
    pub fault_kind: String,
    /// The producers' `acks` (`all`, `1`, `0`).
    pub acks: String,
}

/// The human-readable report (§6.6 template). Lines for figures this checker cannot compute
/// (replica divergence, metadata invariants, elections) say so instead of inventing a number.
pub fn render(run: &RunInfo, r: &CheckResult) -> String {
    let mut out = String::new();
    let seed = run.seed.map_or_else(|| "-".to_string(), |s| s.to_string());
    // Writing to a String cannot fail; the results are ignored.
    let _ = writeln!(
        out,
        "scenario={} seed={seed} duration={:.1}s faults={} ({})",
        run.scenario,
        run.duration.as_secs_f64(),
        run.faults,
        run.fault_kind
    );
    let c = &r.counts;
    let _ = writeln!(
        out,
        "writes: invoked {}  ok {}  fail(definite) {}  info {} (of which seen later: {})",
        c.invoked, c.ok, c.fail, c.info, c.info_seen
    );
    let _ = writeln!(
        out,
        "acked lost (acks={}): {} of {}   lost incl. info-but-visible: {}   duplicates: {}{}   inconsistent offsets: {}",
        run.acks,
        r.acked_lost,
        c.ok,
        r.lost.count,
        r.duplicates.count,
        if r.idempotent {
            ""
        } else {
            " (allowed: not idempotent)"
        },
        r.inconsistent_offsets.count
    );
    let _ = writeln!(
        out,
        "aborted reads: {}   nonmonotonic-send: {}{}   poll-skip: {}   nonmonotonic-poll: {}   corrupt: {}",
        r.aborted_reads.count,
        r.nonmonotonic_sends.count,
        if r.idempotent { "" } else { " (allowed)" },
        r.poll_skips.count,
        r.nonmonotonic_polls.count,
        r.corrupt.count
    );
    let _ = writeln!(
        out,
        "unseen{}: {}   stale reads: {}   records read: {} (final read: {})",
        if r.has_final_read {
            " after final read"
        } else {
            " (no final read: may be delayed)"
        },
        r.unseen.count,
        r.stale_reads,
        c.polled,
        c.final_read
    );
    let _ = writeln!(
        out,
        "replica divergence: not checked here   epochs monotonic: not checked here"
    );
    let windows: Vec<u64> = r
        .availability
        .windows
        .iter()
        .filter_map(|w| w.longest_ack_gap_ns)
        .collect();
    let per_fault = if windows.is_empty() {
        "no fault windows".to_string()
    } else {
        let mean = windows.iter().sum::<u64>() / windows.len() as u64;
        let max = windows.iter().copied().max().unwrap_or(0);
        format!("mean {}  max {}", secs(mean), secs(max))
    };
    let _ = writeln!(
        out,
        "unavailability per fault (longest gap between acks): {per_fault}   overall longest gap: {}",
        r.availability
            .longest_ack_gap_ns
            .map_or_else(|| "-".to_string(), secs)
    );
    let _ = writeln!(
        out,
        "produce latency p50/p99/max: {} / {} / {} ({} acked sends)",
        ms(r.latency.p50_us),
        ms(r.latency.p99_us),
        ms(r.latency.max_us),
        r.latency.samples
    );
    for w in &r.availability.windows {
        let _ = writeln!(
            out,
            "  fault {:>8.2}s..{:.2}s {}: longest gap {}, p50/p99 {} / {} ({} acked)",
            w.window.start_ns as f64 / 1e9,
            w.window.end_ns as f64 / 1e9,
            w.window.label,
            w.longest_ack_gap_ns.map_or_else(|| "-".to_string(), secs),
            ms(w.latency.p50_us),
            ms(w.latency.p99_us),
            w.latency.samples
        );
    }
    if r.valid {
        out.push_str("VALID\n");
    } else {
        let _ = writeln!(out, "INVALID: {}", r.fatal.join(", "));
    }
    out
}

/// The machine-readable results document: the run, then every field of the result.
pub fn results_json(run: &RunInfo, r: &CheckResult) -> serde_json::Value {
    serde_json::json!({ "run": run, "results": r })
}

fn secs(ns: u64) -> String {
    format!("{:.2} s", ns as f64 / 1e9)
}

fn ms(us: u64) -> String {
    format!("{:.1} ms", us as f64 / 1e3)
}
