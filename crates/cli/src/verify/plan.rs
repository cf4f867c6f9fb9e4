//! The fault plan: which fault happens when, derived from the seed alone (pure, so a run can be
//! repeated: the same `--seed`, `--faults`, `--fault-interval` and `--duration` give the same
//! plan).
//!
//! Fault `k` (1-based) is injected at `k * interval` and healed half an interval later, so the
//! cluster is whole again before the next one; no fault is injected unless it can be healed
//! before the workload ends. Each fault's kind and target are drawn from a ChaCha RNG seeded with
//! the seed; a leader kill draws a partition, whose leader is looked up only when it happens.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A kind of fault (`--faults`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum FaultKind {
    /// `kill -9` a random node; healed by starting it again.
    Kill9,
    /// Freeze a random node (SIGSTOP / `docker pause`); healed by resuming it.
    Pause,
    /// Stop a random node cleanly (SIGTERM / `docker stop`); healed by starting it.
    Restart,
    /// `kill -9` the current leader of a random partition; healed by starting it.
    LeaderKill,
}

impl FaultKind {
    /// The `--faults` spelling.
    pub(crate) fn name(self) -> &'static str {
        match self {
            FaultKind::Kill9 => "kill9",
            FaultKind::Pause => "pause",
            FaultKind::Restart => "restart",
            FaultKind::LeaderKill => "leader-kill",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FaultKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.trim() {
            "kill9" | "kill" => FaultKind::Kill9,
            "pause" => FaultKind::Pause,
            "restart" => FaultKind::Restart,
            "leader-kill" => FaultKind::LeaderKill,
            other => {
                return Err(format!(
                    "unknown fault {other:?} (kill9, pause, restart, leader-kill)"
                ));
            }
        })
    }
}

/// Whom a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// Node id (1-based).
    Node(i32),
    /// The leader of this partition at injection time.
    LeaderOf(i32),
}

/// One planned fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlannedFault {
    /// Since the workload started.
    pub(crate) at: Duration,
    /// When it is healed, since the workload started.
    pub(crate) heal_at: Duration,
    /// What.
    pub(crate) kind: FaultKind,
    /// Whom.
    pub(crate) target: Target,
}

/// Builds the plan. `nodes` are the node ids that may be hit, `partitions` the topic's
/// partition count. Empty when `kinds` is empty.
pub(crate) fn plan(
    kinds: &[FaultKind],
    interval: Duration,
    duration: Duration,
    nodes: &[i32],
    partitions: i32,
    seed: u64,
) -> Vec<PlannedFault> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::new();
    if kinds.is_empty() || nodes.is_empty() || interval.is_zero() {
        return out;
    }
    for k in 1u32.. {
        let at = interval * k;
        let heal_at = at + interval / 2;
        if heal_at >= duration {
            break;
        }
        let kind = kinds[rng.random_range(0..kinds.len())];
        let target = match kind {
            FaultKind::LeaderKill => Target::LeaderOf(rng.random_range(0..partitions.max(1))),
            _ => Target::Node(nodes[rng.random_range(0..nodes.len())]),
        };
        out.push(PlannedFault {
            at,
            heal_at,
            kind,
            target,
        });
    }
    out
}

/// Parses a duration as `500ms`, `10s`, `2m` or a bare number of seconds.
pub(crate) fn parse_duration(value: &str) -> Result<Duration, String> {
    let v = value.trim();
    let (number, unit) = match v.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => v.split_at(i),
        None => (v, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("bad duration {value:?} (e.g. 500ms, 10s, 2m)"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        _ => Err(format!("bad duration unit in {value:?} (ms, s or m)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn the_same_seed_gives_the_same_plan_and_another_seed_another() {
        let kinds = [FaultKind::Kill9, FaultKind::Pause, FaultKind::LeaderKill];
        let a = plan(&kinds, 2 * S, 60 * S, &[1, 2, 3], 6, 7);
        let b = plan(&kinds, 2 * S, 60 * S, &[1, 2, 3], 6, 7);
        let c = plan(&kinds, 2 * S, 60 * S, &[1, 2, 3], 6, 8);
        assert_eq!(a, b);
        assert_ne!(a, c);
        // Every kind and every node shows up over 29 draws.
        for kind in kinds {
            assert!(a.iter().any(|f| f.kind == kind), "{kind} never drawn");
        }
        for node in [1, 2, 3] {
            assert!(a.iter().any(|f| f.target == Target::Node(node)));
        }
    }

    #[test]
    fn faults_are_spaced_and_healed_before_the_next_and_before_the_end() {
        let p = plan(&[FaultKind::LeaderKill], 10 * S, 30 * S, &[1, 2, 3], 3, 1);
        // 10 s and 20 s; a third at 30 s could not be healed in time.
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p[0].at, 10 * S);
        assert_eq!(p[0].heal_at, 15 * S);
        assert_eq!(p[1].at, 20 * S);
        for (f, next) in p.iter().zip(p.iter().skip(1)) {
            assert!(f.heal_at < next.at);
        }
        for f in &p {
            assert!(matches!(f.target, Target::LeaderOf(0..3)), "{f:?}");
            assert!(f.heal_at < 30 * S);
        }
        // Nothing fits: no faults.
        assert!(plan(&[FaultKind::Kill9], 10 * S, 14 * S, &[1], 1, 1).is_empty());
        assert!(plan(&[], 1 * S, 60 * S, &[1], 1, 1).is_empty());
    }

    #[test]
    fn fault_lists_and_durations_parse() {
        let kinds: Result<Vec<FaultKind>, _> = "kill9,pause,restart,leader-kill"
            .split(',')
            .map(str::parse)
            .collect();
        assert_eq!(
            kinds.unwrap(),
            vec![
                FaultKind::Kill9,
                FaultKind::Pause,
                FaultKind::Restart,
                FaultKind::LeaderKill
            ]
        );
        assert!("partition".parse::<FaultKind>().is_err());
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("10s").unwrap(), 10 * S);
        assert_eq!(parse_duration("2m").unwrap(), 120 * S);
        assert_eq!(parse_duration("7").unwrap(), 7 * S);
        assert!(parse_duration("10h").is_err());
        assert!(parse_duration("s").is_err());
    }
}
