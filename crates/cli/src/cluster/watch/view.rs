//! What `gregor cluster watch` shows (pure): the latest image, quorum and high watermarks, the
//! recent events, and their rendering as `--plain` lines or as screen lines of styled spans.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Local};
use gregor_controller::metadata::MetadataImage;

use super::diff::{Change, QuorumState, Severity, diff_quorum, ids, opt};

/// Events kept for the recent-events pane.
const EVENTS_KEPT: usize = 200;
/// How long a partition row stays marked after it changed.
const HIGHLIGHT: Duration = Duration::from_secs(10);
/// Width of the kind column in `--plain` lines (the longest kind).
const KIND_WIDTH: usize = 22;

/// Which topics are shown.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    /// Only these topics (empty: every topic).
    pub(crate) topics: Vec<String>,
    /// Show topics whose name starts with `__` (Kafka's internal topics) without naming them.
    pub(crate) include_internal: bool,
}

impl Filter {
    pub(crate) fn shows(&self, topic: &str) -> bool {
        if !self.topics.is_empty() {
            return self.topics.iter().any(|t| t == topic);
        }
        self.include_internal || !topic.starts_with("__")
    }

    fn shows_change(&self, c: &Change) -> bool {
        c.topic().is_none_or(|t| self.shows(t))
    }
}

/// A change and when the watch saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stamped {
    pub(crate) at: DateTime<Local>,
    pub(crate) change: Change,
}

impl Stamped {
    /// The `--plain` line: `TIMESTAMP KIND TEXT`.
    pub(crate) fn plain(&self) -> String {
        plain_line(self.at, self.change.kind(), &self.change.to_string())
    }
}

/// `TIMESTAMP KIND TEXT` with an RFC 3339 local timestamp (milliseconds).
pub(crate) fn plain_line(at: DateTime<Local>, kind: &str, text: &str) -> String {
    format!(
        "{} {kind:<KIND_WIDTH$} {text}",
        at.format("%Y-%m-%dT%H:%M:%S%.3f%:z")
    )
}

/// How a span is drawn on a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tone {
    Plain,
    /// Titles and column headers.
    Header,
    /// Lost a replica, a broker, a leader or the controller.
    Bad,
    /// Below full replication (fewer in-sync replicas than replicas).
    Warn,
    /// Recovered.
    Good,
    /// Changed recently.
    Changed,
}

impl From<Severity> for Tone {
    fn from(s: Severity) -> Self {
        match s {
            Severity::Bad => Tone::Bad,
            Severity::Good => Tone::Good,
            Severity::Neutral => Tone::Changed,
        }
    }
}

/// One piece of a screen line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) text: String,
    pub(crate) tone: Tone,
}

/// One screen line.
pub(crate) type Line = Vec<Span>;

fn span(text: impl Into<String>, tone: Tone) -> Span {
    Span {
        text: text.into(),
        tone,
    }
}

/// A line's text without styles.
pub(crate) fn text(line: &Line) -> String {
    line.iter().map(|s| s.text.as_str()).collect()
}

/// Everything the watch knows.
#[derive(Debug)]
pub(crate) struct View {
    filter: Filter,
    /// The controller addresses watched (for the title).
    controllers: String,
    /// The metadata, once the stream caught up.
    image: Option<Arc<MetadataImage>>,
    /// Whether the metadata stream is open (it reopens on another controller when it breaks).
    stream_up: bool,
    quorum: QuorumState,
    /// When the quorum became unreachable.
    down_since: Option<DateTime<Local>>,
    /// High watermark per partition, from the last round of `DescribeReplicas`.
    hw: HashMap<(String, u32), i64>,
    events: VecDeque<Stamped>,
    /// When each partition last changed (marked for [`HIGHLIGHT`]).
    touched: HashMap<(String, u32), Instant>,
}

impl View {
    pub(crate) fn new(filter: Filter, controllers: String) -> Self {
        Self {
            filter,
            controllers,
            image: None,
            stream_up: false,
            quorum: QuorumState::Unknown,
            down_since: None,
            hw: HashMap::new(),
            events: VecDeque::new(),
            touched: HashMap::new(),
        }
    }

    /// The image, once the stream caught up.
    pub(crate) fn image(&self) -> Option<&MetadataImage> {
        self.image.as_deref()
    }

    /// The quorum as last polled.
    pub(crate) fn quorum(&self) -> &QuorumState {
        &self.quorum
    }

    /// A new image with the changes that led to it (empty for the first, baseline image).
    /// Returns the events that pass the filter, in order.
    pub(crate) fn on_metadata(
        &mut self,
        image: Arc<MetadataImage>,
        changes: Vec<Change>,
        at: DateTime<Local>,
        now: Instant,
    ) -> Vec<Stamped> {
        self.image = Some(image);
        self.stream_up = true;
        self.record(changes, at, now)
    }

    /// The metadata stream broke (`false`) or was reopened (`true`).
    pub(crate) fn on_stream(&mut self, up: bool) {
        self.stream_up = up;
    }

    /// A quorum poll's outcome. Returns the events.
    pub(crate) fn on_quorum(
        &mut self,
        state: QuorumState,
        at: DateTime<Local>,
        now: Instant,
    ) -> Vec<Stamped> {
        let changes = diff_quorum(&self.quorum, &state);
        match (&self.quorum, &state) {
            (QuorumState::Down { .. }, QuorumState::Down { .. }) => {}
            (_, QuorumState::Down { .. }) => self.down_since = Some(at),
            _ => self.down_since = None,
        }
        self.quorum = state;
        self.record(changes, at, now)
    }

    /// A round of high watermarks (partitions whose leader did not answer are left out).
    pub(crate) fn on_progress(&mut self, hw: HashMap<(String, u32), i64>) {
        self.hw = hw;
    }

    fn record(&mut self, changes: Vec<Change>, at: DateTime<Local>, now: Instant) -> Vec<Stamped> {
        let mut out = Vec::new();
        for change in changes {
            if !self.filter.shows_change(&change) {
                continue;
            }
            if let Some((t, p)) = change.partition() {
                self.touched.insert((t.to_owned(), p), now);
            }
            let e = Stamped { at, change };
            if self.events.len() == EVENTS_KEPT {
                self.events.pop_front();
            }
            self.events.push_back(e.clone());
            out.push(e);
        }
        out
    }

    /// The `--plain` lines describing the current state (printed once, when the stream first
    /// caught up): the brokers, then every shown partition.
    pub(crate) fn state_lines(&self, at: DateTime<Local>) -> Vec<String> {
        let Some(image) = self.image() else {
            return Vec::new();
        };
        let mut out = vec![plain_line(
            at,
            "synced",
            &format!(
                "metadata offset {}, {} brokers, {} topics",
                image.offset,
                image.brokers.len(),
                image.topics.len()
            ),
        )];
        for b in image.brokers.values() {
            let state = if b.fenced { "fenced" } else { "alive" };
            out.push(plain_line(
                at,
                "state",
                &format!("broker {}: {state} (epoch {})", b.id, b.epoch),
            ));
        }
        for (name, t) in &image.topics {
            if !self.filter.shows(name) {
                continue;
            }
            for (i, p) in t.partitions.iter().enumerate() {
                out.push(plain_line(
                    at,
                    "state",
                    &format!(
                        "{name}-{i}: leader {}, epoch {}, isr {}, replicas {}",
                        opt(p.leader),
                        p.leader_epoch,
                        ids(&p.isr),
                        ids(&p.replicas)
                    ),
                ));
            }
        }
        out
    }

    /// The `--plain` line for the first quorum answer.
    pub(crate) fn quorum_line(&self, at: DateTime<Local>) -> Option<String> {
        match &self.quorum {
            QuorumState::Up(q) => Some(plain_line(
                at,
                "state",
                &format!(
                    "controller leader {} (term {}, voters {})",
                    opt(q.leader),
                    q.term,
                    ids(&q.voters)
                ),
            )),
            QuorumState::Down { error, .. } => Some(plain_line(
                at,
                "controller-unreachable",
                &format!("no controller answers ({error})"),
            )),
            QuorumState::Unknown => None,
        }
    }

    /// The screen: header, partition table and recent events, fitted to `height` lines (no
    /// limit: everything, for `--once`). `interactive` adds the key hint to the title.
    pub(crate) fn screen(
        &self,
        now: Instant,
        wall: DateTime<Local>,
        height: Option<usize>,
        interactive: bool,
    ) -> Vec<Line> {
        let mut lines = self.header(wall, interactive);
        let mut table = self.table(now);
        let events: Vec<Line> = self
            .events
            .iter()
            .map(|e| {
                vec![
                    span(e.at.format("%H:%M:%S%.3f ").to_string(), Tone::Plain),
                    span(
                        format!("{:<KIND_WIDTH$} {}", e.change.kind(), e.change),
                        e.change.severity().into(),
                    ),
                ]
            })
            .collect();
        let Some(height) = height else {
            lines.append(&mut table);
            lines.push(Vec::new());
            lines.push(vec![span("Recent events:", Tone::Header)]);
            lines.extend(events);
            return lines;
        };
        // Events get a third of the screen (at least 3 lines); the table the rest.
        let room = height.saturating_sub(lines.len());
        let event_rows = events.len().min((height / 3).max(3));
        let table_room = room.saturating_sub(event_rows + 2).max(2);
        if table.len() > table_room {
            let hidden = table.len() - (table_room - 1);
            table.truncate(table_room - 1);
            table.push(vec![span(
                format!("… {hidden} more partitions (a taller terminal, or --topic)"),
                Tone::Header,
            )]);
        }
        lines.append(&mut table);
        lines.push(Vec::new());
        lines.push(vec![span("Recent events:", Tone::Header)]);
        let skip = events.len().saturating_sub(event_rows);
        lines.extend(events.into_iter().skip(skip));
        lines.truncate(height);
        lines
    }

    fn header(&self, wall: DateTime<Local>, interactive: bool) -> Vec<Line> {
        let mut title = format!(
            "gregor cluster watch · {} · {}",
            self.controllers,
            wall.format("%H:%M:%S")
        );
        if interactive {
            title.push_str(" · q quits");
        }
        let controller = match &self.quorum {
            QuorumState::Unknown => vec![span("Controller: asking…", Tone::Plain)],
            QuorumState::Up(q) => {
                let leader = match q.leader {
                    Some(id) if q.leader_address.is_empty() => format!("leader {id}"),
                    Some(id) => format!("leader {id} ({})", q.leader_address),
                    None => "no leader (election in progress)".to_owned(),
                };
                let tone = if q.leader.is_some() {
                    Tone::Plain
                } else {
                    Tone::Bad
                };
                vec![
                    span("Controller: ", Tone::Plain),
                    span(leader, tone),
                    span(
                        format!(
                            ", term {}, voters {}, answered by {}",
                            q.term,
                            ids(&q.voters),
                            q.answered_by
                        ),
                        Tone::Plain,
                    ),
                ]
            }
            QuorumState::Down { error, last } => {
                let since = self
                    .down_since
                    .map(|t| t.format(" since %H:%M:%S").to_string())
                    .unwrap_or_default();
                let last = last
                    .as_ref()
                    .map(|q| format!(" (last leader {})", opt(q.leader)))
                    .unwrap_or_default();
                vec![
                    span("Controller: ", Tone::Plain),
                    span(format!("UNREACHABLE{since}{last}: {error}"), Tone::Bad),
                ]
            }
        };
        let metadata = match self.image() {
            None => vec![span("Metadata: catching up…", Tone::Plain)],
            Some(image) => {
                let mut l = vec![span(
                    format!("Metadata: offset {}", image.offset),
                    Tone::Plain,
                )];
                if !self.stream_up {
                    l.push(span(" (stream broken, reconnecting)", Tone::Bad));
                }
                l
            }
        };
        let mut brokers = vec![span("Brokers:", Tone::Plain)];
        if let Some(image) = self.image() {
            if image.brokers.is_empty() {
                brokers.push(span(" none registered", Tone::Plain));
            }
            for b in image.brokers.values() {
                let (state, tone) = if b.fenced {
                    ("FENCED", Tone::Bad)
                } else {
                    ("alive", Tone::Good)
                };
                brokers.push(span(format!("  {} ", b.id), Tone::Plain));
                brokers.push(span(state, tone));
                brokers.push(span(format!(" (epoch {})", b.epoch), Tone::Plain));
            }
        }
        vec![
            vec![span(title, Tone::Header)],
            controller,
            metadata,
            brokers,
            Vec::new(),
        ]
    }

    /// The partition table (a header row, then one row per shown partition).
    fn table(&self, now: Instant) -> Vec<Line> {
        let Some(image) = self.image() else {
            return Vec::new();
        };
        let rows: Vec<(String, [String; 5], Tone, bool)> = image
            .topics
            .iter()
            .filter(|(name, _)| self.filter.shows(name))
            .flat_map(|(name, t)| {
                t.partitions.iter().enumerate().map(move |(i, p)| {
                    let key = (name.clone(), u32::try_from(i).unwrap_or(u32::MAX));
                    let tone = if p.leader.is_none() {
                        Tone::Bad
                    } else if p.isr.len() < p.replicas.len() {
                        Tone::Warn
                    } else {
                        Tone::Plain
                    };
                    let changed = self
                        .touched
                        .get(&key)
                        .is_some_and(|t| now.saturating_duration_since(*t) < HIGHLIGHT);
                    let hw = self
                        .hw
                        .get(&key)
                        .map_or_else(|| "-".to_owned(), ToString::to_string);
                    let isr = if p.elr.is_empty() {
                        ids(&p.isr)
                    } else {
                        format!("{} (elr {})", ids(&p.isr), ids(&p.elr))
                    };
                    (
                        format!("{name}-{i}"),
                        [
                            opt(p.leader),
                            p.leader_epoch.to_string(),
                            isr,
                            ids(&p.replicas),
                            hw,
                        ],
                        tone,
                        changed,
                    )
                })
            })
            .collect();
        if rows.is_empty() {
            return vec![vec![span("(no topics)", Tone::Plain)]];
        }
        let heads = ["LEADER", "EPOCH", "ISR", "REPLICAS", "HW"];
        let name_w = rows
            .iter()
            .map(|r| r.0.chars().count())
            .max()
            .unwrap_or(0)
            .max("PARTITION".len());
        let mut widths = heads.map(str::len);
        for (_, cols, _, _) in &rows {
            for (w, c) in widths.iter_mut().zip(cols) {
                *w = (*w).max(c.chars().count());
            }
        }
        let fmt_row = |name: &str, cols: &[&str]| {
            let mut s = format!("{name:<name_w$}");
            for (c, w) in cols.iter().zip(widths) {
                let _ = write!(s, "  {c:<w$}");
            }
            s.trim_end().to_owned()
        };
        let mut out = vec![vec![span(
            format!("  {}", fmt_row("PARTITION", &heads)),
            Tone::Header,
        )]];
        for (name, cols, tone, changed) in &rows {
            let cols: Vec<&str> = cols.iter().map(String::as_str).collect();
            out.push(vec![
                span(
                    if *changed { "* " } else { "  " },
                    if *changed { Tone::Changed } else { Tone::Plain },
                ),
                span(fmt_row(name, &cols), *tone),
            ]);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;

    use chrono::TimeZone;
    use gregor_controller::metadata::{BrokerRegistration, PartitionState, TopicImage};

    use super::super::diff::{Quorum, diff};
    use super::*;

    fn image(leader: i32, isr: &[i32], fenced: bool) -> MetadataImage {
        let part = |leader| PartitionState {
            replicas: vec![1, 2, 3],
            isr: isr.to_vec(),
            elr: Vec::new(),
            last_known_leader: None,
            leader: Some(leader),
            leader_epoch: 4,
            partition_epoch: 4,
        };
        let mut topics = BTreeMap::new();
        for name in ["orders", "__consumer_offsets"] {
            topics.insert(
                name.to_owned(),
                TopicImage {
                    id: uuid::Uuid::nil(),
                    partitions: vec![part(leader), part(2)],
                    configs: BTreeMap::new(),
                },
            );
        }
        MetadataImage {
            offset: 42,
            brokers: (1..=3)
                .map(|id| {
                    (
                        id,
                        BrokerRegistration {
                            id,
                            epoch: 7,
                            incarnation: uuid::Uuid::nil(),
                            endpoints: Vec::new(),
                            rack: None,
                            fenced: fenced && id == 1,
                        },
                    )
                })
                .collect(),
            topics,
            ..MetadataImage::default()
        }
    }

    fn at() -> DateTime<Local> {
        Local.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).unwrap()
    }

    #[test]
    fn internal_topics_are_hidden_unless_asked_for() {
        let f = Filter::default();
        assert!(f.shows("orders") && !f.shows("__consumer_offsets"));
        let f = Filter {
            include_internal: true,
            ..Filter::default()
        };
        assert!(f.shows("__consumer_offsets"));
        let f = Filter {
            topics: vec!["__consumer_offsets".into()],
            include_internal: false,
        };
        assert!(f.shows("__consumer_offsets") && !f.shows("orders"));
    }

    #[test]
    fn events_are_filtered_stamped_and_mark_their_partition() {
        let mut v = View::new(Filter::default(), "c:1".into());
        let now = Instant::now();
        let first = Arc::new(image(1, &[1, 2, 3], false));
        assert!(
            v.on_metadata(first.clone(), Vec::new(), at(), now)
                .is_empty()
        );
        let lines = v.state_lines(at());
        assert!(
            lines[0].ends_with("synced                 metadata offset 42, 3 brokers, 2 topics")
        );
        assert!(
            lines.iter().any(|l| l.ends_with(
                "state                  orders-0: leader 1, epoch 4, isr 1,2,3, replicas 1,2,3"
            )),
            "{lines:#?}"
        );
        assert!(!lines.iter().any(|l| l.contains("__consumer_offsets")));

        let second = Arc::new(image(2, &[2, 3], true));
        let events = v.on_metadata(second.clone(), diff(&first, &second), at(), now);
        let plain: Vec<String> = events.iter().map(Stamped::plain).collect();
        assert_eq!(
            plain,
            [
                "broker-fenced          broker 1 fenced",
                "leader-change          orders-0: leader 1 -> 2 (epoch 4)",
                "isr-shrink             orders-0: isr 1,2,3 -> 2,3 (out: 1)",
                "isr-shrink             orders-1: isr 1,2,3 -> 2,3 (out: 1)",
            ]
            .map(|s| format!("{} {s}", at().format("%Y-%m-%dT%H:%M:%S%.3f%:z"))),
            "the __consumer_offsets changes are filtered out"
        );

        let mut hw = HashMap::new();
        hw.insert(("orders".to_owned(), 0), 1234);
        v.on_progress(hw);
        let screen: Vec<String> = v.screen(now, at(), None, false).iter().map(text).collect();
        assert!(
            screen[0].starts_with("gregor cluster watch · c:1 · 03:04:05"),
            "{screen:#?}"
        );
        assert_eq!(screen[2], "Metadata: offset 42");
        assert_eq!(
            screen[3],
            "Brokers:  1 FENCED (epoch 7)  2 alive (epoch 7)  3 alive (epoch 7)"
        );
        assert_eq!(
            screen[5].split_whitespace().collect::<Vec<_>>(),
            ["PARTITION", "LEADER", "EPOCH", "ISR", "REPLICAS", "HW"]
        );
        assert_eq!(
            screen[6].split_whitespace().collect::<Vec<_>>(),
            ["*", "orders-0", "2", "4", "2,3", "1,2,3", "1234"],
            "changed rows are marked, HW from DescribeReplicas"
        );
        assert_eq!(
            screen[7].split_whitespace().collect::<Vec<_>>(),
            ["*", "orders-1", "2", "4", "2,3", "1,2,3", "-"]
        );
        assert!(screen.iter().any(|l| l == "Recent events:"));
        assert!(
            screen
                .last()
                .unwrap()
                .ends_with("isr-shrink             orders-1: isr 1,2,3 -> 2,3 (out: 1)")
        );
        // Under-replicated rows are drawn as warnings.
        let lines = v.screen(now, at(), None, false);
        assert_eq!(lines[6][1].tone, Tone::Warn);
        // The mark fades.
        let later = v.screen(now + HIGHLIGHT, at(), None, false);
        assert_eq!(text(&later[6][..1].to_vec()), "  ");
    }

    #[test]
    fn a_short_screen_keeps_the_header_and_the_latest_events() {
        let mut v = View::new(Filter::default(), "c:1".into());
        let now = Instant::now();
        let mut img = image(1, &[1, 2, 3], false);
        let t = img.topics.get_mut("orders").unwrap();
        t.partitions = vec![t.partitions[0].clone(); 30];
        v.on_metadata(Arc::new(img), Vec::new(), at(), now);
        for id in 0..10 {
            v.on_quorum(
                QuorumState::Up(Quorum {
                    cluster_id: "c".into(),
                    answered_by: 1,
                    from_leader: true,
                    leader: Some(id),
                    leader_address: String::new(),
                    term: id,
                    voters: vec![1, 2, 3],
                }),
                at(),
                now,
            );
        }
        let screen: Vec<String> = v
            .screen(now, at(), Some(20), true)
            .iter()
            .map(text)
            .collect();
        assert_eq!(screen.len(), 20, "{screen:#?}");
        assert!(screen[0].ends_with("q quits"));
        assert!(screen[1].starts_with("Controller: leader 9, term 9"));
        assert!(
            screen
                .iter()
                .any(|l| l.starts_with("… ") && l.contains("more partitions")),
            "{screen:#?}"
        );
        assert!(screen[19].ends_with("controller leader 8 -> 9 (term 9)"));
    }

    #[test]
    fn an_unreachable_quorum_is_shown_with_its_last_leader() {
        let mut v = View::new(Filter::default(), "c:1".into());
        let now = Instant::now();
        let up = Quorum {
            cluster_id: "c".into(),
            answered_by: 1,
            from_leader: true,
            leader: Some(1),
            leader_address: "h:1".into(),
            term: 2,
            voters: vec![1, 2, 3],
        };
        v.on_quorum(QuorumState::Up(up.clone()), at(), now);
        assert!(
            v.quorum_line(at())
                .unwrap()
                .ends_with("state                  controller leader 1 (term 2, voters 1,2,3)")
        );
        let events = v.on_quorum(
            QuorumState::Down {
                error: "refused".into(),
                last: Some(up),
            },
            at(),
            now,
        );
        assert_eq!(events.len(), 1);
        let screen: Vec<String> = v.screen(now, at(), None, false).iter().map(text).collect();
        assert_eq!(
            screen[1],
            "Controller: UNREACHABLE since 03:04:05 (last leader 1): refused"
        );
    }
}
