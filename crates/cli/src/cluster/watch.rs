//! `gregor cluster watch`: a live view of the cluster while brokers die and come back.
//!
//! Three owned tasks feed one view ([`view::View`]) over a channel:
//! - the metadata follower: `WatchMetadata` on any controller, each record applied to a local
//!   image with the controller's own `apply` and diffed against the image before it
//!   ([`diff::diff`]), so every leader change, ISR shrink or expansion and broker (un)fencing is
//!   seen as it is applied, in log order. A broken stream reopens on another controller at the
//!   next offset; the view is kept meanwhile. The catch-up at start is the baseline, not events:
//!   it ends at the first quiet moment of the stream ([`CATCH_UP_QUIET`]).
//! - the quorum poller: `DescribeCluster` every `--interval` (leader, term; "controller
//!   unreachable" when no voter answers).
//! - the progress poller: `DescribeReplicas` on each partition leader's replication endpoint every
//!   `--interval`, for the high watermarks.
//!
//! On a terminal the screen is redrawn in place (crossterm: alternate screen, raw mode for the
//! `q` key); otherwise (or with `--plain`) each event is one timestamped line, so the watch can
//! be piped and tested. `--once` prints one frame and exits; `--duration` bounds a run.

mod diff;
mod view;

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::Local;
use clap::Args;
use crossterm::event::{Event, EventStream, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::style::{Attribute, Color, Stylize};
use crossterm::{cursor, execute, queue, terminal};
use futures::StreamExt;
use gregor_broker::quorum::REPLICATION;
use gregor_broker::quorum::watch::apply_event;
use gregor_controller::client::ControllerClient;
use gregor_controller::metadata::{BrokerId, MetadataImage};
use gregor_proto::controller::v1 as pb;
use gregor_proto::replication::v1 as rpb;
use gregor_proto::replication::v1::replication_client::ReplicationClient;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

use self::diff::{Change, Quorum, QuorumState};
use self::view::{Filter, Line, Tone, View};
use super::DEFAULT_CONTROLLERS;
use crate::verify::parse_duration;

/// The end of the start-up catch-up: this long without a record means the stream reached the
/// controller's applied offset (the controller sends its backlog back to back).
const CATCH_UP_QUIET: Duration = Duration::from_millis(300);
/// Time allowed to open the metadata stream on one round of voters.
const OPEN_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause before reopening a broken stream.
const REOPEN_BACKOFF: Duration = Duration::from_millis(200);
/// Bound on one `DescribeCluster` (the client tries every voter inside it).
const QUORUM_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on one leader's `DescribeReplicas`.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(1);
/// Connect timeout for replication endpoints.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// How long `--once` waits for the quorum and the high watermarks once the metadata is in.
const ONCE_SETTLE: Duration = Duration::from_secs(3);
/// How long `--once` waits for the metadata at all.
const ONCE_TIMEOUT: Duration = Duration::from_secs(10);
/// Screen refresh without news (fades the change marks, moves the clock).
const SCREEN_TICK: Duration = Duration::from_secs(1);

#[derive(Debug, Args)]
pub(crate) struct WatchArgs {
    /// Controller address(es), `HOST:PORT[,HOST:PORT...]` (default: a `gregor dev` cluster's
    /// three controllers). The metadata stream and the quorum status fail over between them.
    #[arg(long, default_value = DEFAULT_CONTROLLERS)]
    controller: String,
    /// One timestamped line per event instead of the live screen (the default when stdout is
    /// not a terminal).
    #[arg(long)]
    plain: bool,
    /// Print the current view once (partitions with their high watermarks) and exit.
    #[arg(long, conflicts_with_all = ["plain", "duration"])]
    once: bool,
    /// Stop after this long (e.g. 30s, 2m); default: until Ctrl-C (or `q` on the screen).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Show only this topic (repeatable; default: every topic but the internal `__` ones).
    #[arg(long = "topic")]
    topics: Vec<String>,
    /// Also show internal topics (`__consumer_offsets`).
    #[arg(long)]
    include_internal: bool,
    /// How often the quorum status and the leaders' high watermarks are polled.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    interval: Duration,
}

/// What the tasks tell the view.
#[derive(Debug)]
enum Update {
    /// A new image and the changes that led to it (none for the start-up baseline).
    Metadata {
        image: Arc<MetadataImage>,
        changes: Vec<Change>,
    },
    /// The metadata stream broke (`false`) or reopened (`true`).
    Stream(bool),
    /// The metadata stream cannot go on (a record this build cannot decode).
    StreamFailed(String),
    /// A quorum poll: the answer, or why no controller gave one.
    Quorum(Result<Quorum, String>),
    /// A round of high watermarks.
    Progress(HashMap<(String, u32), i64>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Screen,
    Plain,
    Once,
}

pub(crate) async fn run(args: WatchArgs) -> anyhow::Result<()> {
    if args.interval.is_zero() {
        bail!("--interval must be positive");
    }
    let voters: Vec<String> = args
        .controller
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect();
    if voters.is_empty() {
        bail!("--controller: no address given");
    }
    // Cluster id unknown yet: DescribeCluster accepts any; the stream gets its own client.
    let client = Arc::new(ControllerClient::new(voters.clone(), "").context("--controller")?);
    let mode = if args.once {
        Mode::Once
    } else if args.plain || !std::io::stdout().is_terminal() {
        Mode::Plain
    } else {
        Mode::Screen
    };
    let filter = Filter {
        topics: args.topics.clone(),
        include_internal: args.include_internal,
    };
    let stop = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let (tx, rx) = mpsc::channel(1024);
    let (image_tx, image_rx) = watch::channel(None);
    let (cluster_tx, cluster_rx) = watch::channel(String::new());
    tasks.spawn(follow_metadata(
        voters,
        cluster_rx.clone(),
        tx.clone(),
        image_tx,
        stop.clone(),
    ));
    tasks.spawn(poll_quorum(
        Arc::clone(&client),
        args.interval,
        tx.clone(),
        cluster_tx,
        stop.clone(),
    ));
    tasks.spawn(poll_progress(
        image_rx,
        cluster_rx,
        filter.clone(),
        args.interval,
        tx,
        stop.clone(),
    ));
    let view = View::new(filter, args.controller.clone());
    let deadline = args.duration.map(|d| Instant::now() + d);
    let result = match mode {
        Mode::Once => once(view, rx).await,
        Mode::Plain => plain(view, rx, deadline).await,
        Mode::Screen => screen(view, rx, deadline).await,
    };
    stop.cancel();
    while tasks.join_next().await.is_some() {}
    result
}

/// Applies one update; returns the `--plain` lines it produced (state lines for the first
/// image and the first quorum answer, then one line per event).
fn apply(view: &mut View, update: Update) -> Vec<String> {
    let at = Local::now();
    let now = std::time::Instant::now();
    match update {
        Update::Metadata { image, changes } => {
            let first = view.image().is_none();
            let events = view.on_metadata(image, changes, at, now);
            let mut lines = if first {
                view.state_lines(at)
            } else {
                Vec::new()
            };
            lines.extend(events.iter().map(view::Stamped::plain));
            lines
        }
        Update::Stream(up) => {
            view.on_stream(up);
            Vec::new()
        }
        Update::StreamFailed(e) => {
            view.on_stream(false);
            vec![view::plain_line(at, "stream-failed", &e)]
        }
        Update::Quorum(r) => {
            let first = matches!(view.quorum(), QuorumState::Unknown);
            let state = match r {
                Ok(q) => QuorumState::Up(q),
                Err(error) => QuorumState::Down {
                    error,
                    last: view.quorum().last().cloned(),
                },
            };
            let events = view.on_quorum(state, at, now);
            if first {
                view.quorum_line(at).into_iter().collect()
            } else {
                events.iter().map(view::Stamped::plain).collect()
            }
        }
        Update::Progress(hw) => {
            view.on_progress(hw);
            Vec::new()
        }
    }
}

/// `--plain`: lines as events happen, until the deadline or Ctrl-C.
async fn plain(
    mut view: View,
    mut rx: mpsc::Receiver<Update>,
    deadline: Option<Instant>,
) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let end = until(deadline);
    tokio::pin!(end);
    loop {
        let update = tokio::select! {
            u = rx.recv() => u,
            () = &mut end => return Ok(()),
            r = tokio::signal::ctrl_c() => return r.context("wait for Ctrl-C"),
        };
        let Some(update) = update else {
            bail!("the watch tasks stopped");
        };
        let mut out = stdout.lock();
        for line in apply(&mut view, update) {
            // A closed pipe (`| head`) ends the watch quietly.
            if writeln!(out, "{line}").is_err() {
                return Ok(());
            }
        }
        if out.flush().is_err() {
            return Ok(());
        }
    }
}

/// `--once`: one frame, once the metadata is in and the quorum and the high watermarks had a
/// chance to answer.
async fn once(mut view: View, mut rx: mpsc::Receiver<Update>) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut settle_end: Option<Instant> = None;
    loop {
        let wait_until = settle_end.unwrap_or(start + ONCE_TIMEOUT);
        let update = tokio::select! {
            u = rx.recv() => u,
            () = tokio::time::sleep_until(wait_until) => None,
        };
        match update {
            Some(update) => {
                let progress = matches!(update, Update::Progress(_));
                apply(&mut view, update);
                if view.image().is_some() && settle_end.is_none() {
                    settle_end = Some(Instant::now() + ONCE_SETTLE);
                }
                // The progress poller only runs on a caught-up image: its first round completes
                // the frame (the quorum answered too, or it would not know the cluster id).
                if progress && view.image().is_some() {
                    break;
                }
            }
            None if view.image().is_some() => break,
            None => bail!(
                "no controller answered at {} within {ONCE_TIMEOUT:?}",
                describe_quorum(&view)
            ),
        }
    }
    let frame = view.screen(std::time::Instant::now(), Local::now(), None, false);
    let mut out = std::io::stdout().lock();
    for line in &frame {
        writeln!(out, "{}", view::text(line))?;
    }
    Ok(())
}

fn describe_quorum(view: &View) -> String {
    match view.quorum() {
        QuorumState::Down { error, .. } => format!("the given addresses ({error})"),
        _ => "the given addresses".to_owned(),
    }
}

/// The live screen, until the deadline, `q`, Esc or Ctrl-C.
async fn screen(
    mut view: View,
    mut rx: mpsc::Receiver<Update>,
    deadline: Option<Instant>,
) -> anyhow::Result<()> {
    let mut term = Screen::enter().context("set up the terminal")?;
    let mut keys = EventStream::new();
    let mut tick = tokio::time::interval(SCREEN_TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let end = until(deadline);
    tokio::pin!(end);
    loop {
        tokio::select! {
            u = rx.recv() => {
                let Some(u) = u else { bail!("the watch tasks stopped") };
                apply(&mut view, u);
                // A burst (many partitions electing at once) is drawn once.
                while let Ok(u) = rx.try_recv() {
                    apply(&mut view, u);
                }
            }
            k = keys.next() => match k {
                Some(Ok(Event::Key(k))) if quits(&k) => return Ok(()),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e).context("read the terminal"),
                None => return Ok(()),
            },
            _ = tick.tick() => {}
            () = &mut end => return Ok(()),
        }
        term.draw(&view).context("draw")?;
    }
}

fn quits(k: &KeyEvent) -> bool {
    k.kind == KeyEventKind::Press
        && (matches!(k.code, KeyCode::Char('q') | KeyCode::Esc)
            || (k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL)))
}

/// Completes at `deadline`, never without one.
async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The terminal in raw mode on the alternate screen; restored on drop (also when unwinding).
struct Screen {
    out: std::io::Stdout,
}

impl std::fmt::Debug for Screen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Screen")
    }
}

impl Screen {
    fn enter() -> std::io::Result<Self> {
        terminal::enable_raw_mode()?;
        // From here on, Drop restores the terminal.
        let mut s = Self {
            out: std::io::stdout(),
        };
        execute!(s.out, terminal::EnterAlternateScreen, cursor::Hide)?;
        Ok(s)
    }

    fn draw(&mut self, view: &View) -> std::io::Result<()> {
        let (width, height) = terminal::size()?;
        let lines = view.screen(
            std::time::Instant::now(),
            Local::now(),
            Some(usize::from(height)),
            true,
        );
        let mut out = self.out.lock();
        for (row, line) in lines.iter().enumerate() {
            queue!(
                out,
                cursor::MoveTo(0, u16::try_from(row).unwrap_or(u16::MAX))
            )?;
            write_line(&mut out, line, usize::from(width))?;
            queue!(out, terminal::Clear(terminal::ClearType::UntilNewLine))?;
        }
        let below = u16::try_from(lines.len()).unwrap_or(u16::MAX);
        if below < height {
            queue!(
                out,
                cursor::MoveTo(0, below),
                terminal::Clear(terminal::ClearType::FromCursorDown)
            )?;
        }
        out.flush()
    }
}

/// Writes `line`'s spans in their styles, cut at `width` characters.
fn write_line(out: &mut impl Write, line: &Line, width: usize) -> std::io::Result<()> {
    let mut left = width;
    for span in line {
        if left == 0 {
            break;
        }
        let text: String = span.text.chars().take(left).collect();
        left -= text.chars().count();
        let styled = match span.tone {
            Tone::Plain => text.stylize(),
            Tone::Header => text.attribute(Attribute::Bold),
            Tone::Bad => text.with(Color::Red).attribute(Attribute::Bold),
            Tone::Warn => text.with(Color::Yellow),
            Tone::Good => text.with(Color::Green),
            Tone::Changed => text.with(Color::Cyan).attribute(Attribute::Bold),
        };
        queue!(out, crossterm::style::PrintStyledContent(styled))?;
    }
    Ok(())
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = execute!(self.out, cursor::Show, terminal::LeaveAlternateScreen);
        let _ = terminal::disable_raw_mode();
    }
}

/// Follows the metadata stream until `stop`, once the cluster id is known: the start-up catch-up
/// becomes the baseline image,
/// then every record is one update with its changes. Reopens on any voter after a break.
async fn follow_metadata(
    voters: Vec<String>,
    mut cluster_rx: watch::Receiver<String>,
    tx: mpsc::Sender<Update>,
    image_tx: watch::Sender<Option<Arc<MetadataImage>>>,
    stop: CancellationToken,
) {
    // The stream is only served to a client of the right cluster: learn its id first (from the
    // quorum poller's DescribeCluster, which any tool may call).
    let cluster_id = tokio::select! {
        r = cluster_rx.wait_for(|c| !c.is_empty()) => match r {
            Ok(id) => id.clone(),
            Err(_) => return,
        },
        () = stop.cancelled() => return,
    };
    let client = match ControllerClient::new(voters, cluster_id) {
        Ok(c) => c,
        Err(e) => {
            let _ = tx.send(Update::StreamFailed(e.to_string())).await;
            return;
        }
    };
    let mut image = MetadataImage::default();
    let mut synced = false;
    loop {
        let opened = tokio::select! {
            r = client.watch_metadata(image.offset + 1, OPEN_TIMEOUT) => r,
            () = stop.cancelled() => return,
        };
        match opened {
            Ok(mut stream) => {
                if synced && tx.send(Update::Stream(true)).await.is_err() {
                    return;
                }
                loop {
                    let next = if synced {
                        tokio::select! {
                            m = stream.message() => Some(m),
                            () = stop.cancelled() => return,
                        }
                    } else {
                        tokio::select! {
                            m = tokio::time::timeout(CATCH_UP_QUIET, stream.message()) => m.ok(),
                            () = stop.cancelled() => return,
                        }
                    };
                    let before = synced.then(|| image.clone());
                    let (changed, baseline) = match next {
                        // Quiet: the catch-up is over; what we have is the baseline.
                        None => (false, true),
                        Some(Ok(Some(event))) => match apply_event(&mut image, event) {
                            Ok(changed) => (changed, false),
                            Err(e) => {
                                let _ = tx.send(Update::StreamFailed(e.to_string())).await;
                                stop.cancelled().await;
                                return;
                            }
                        },
                        Some(Ok(None)) => break,
                        Some(Err(status)) => {
                            tracing::debug!(%status, "metadata stream broke; reopening");
                            break;
                        }
                    };
                    if baseline {
                        synced = true;
                    } else if !changed || !synced {
                        continue;
                    }
                    let changes = before.map(|b| diff::diff(&b, &image)).unwrap_or_default();
                    let snapshot = Arc::new(image.clone());
                    image_tx.send_replace(Some(Arc::clone(&snapshot)));
                    let update = Update::Metadata {
                        image: snapshot,
                        changes,
                    };
                    if tx.send(update).await.is_err() {
                        return;
                    }
                }
                if synced && tx.send(Update::Stream(false)).await.is_err() {
                    return;
                }
            }
            Err(e) => tracing::debug!(error = %e, "metadata stream unavailable"),
        }
        tokio::select! {
            () = tokio::time::sleep(REOPEN_BACKOFF) => {}
            () = stop.cancelled() => return,
        }
    }
}

impl From<pb::DescribeClusterReply> for Quorum {
    fn from(d: pb::DescribeClusterReply) -> Self {
        Quorum {
            cluster_id: d.cluster_id,
            answered_by: d.answered_by,
            from_leader: d.from_leader,
            leader: d.leader_id,
            leader_address: d.leader_address,
            term: d.term,
            voters: d.voters.iter().map(|v| v.id).collect(),
        }
    }
}

/// Asks the quorum every `interval` until `stop`; publishes the cluster id (the progress
/// poller needs it).
async fn poll_quorum(
    client: Arc<ControllerClient>,
    interval: Duration,
    tx: mpsc::Sender<Update>,
    cluster_tx: watch::Sender<String>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let reply = tokio::select! {
            _ = tick.tick() => tokio::select! {
                r = client.describe_cluster(QUORUM_TIMEOUT) => r,
                () = stop.cancelled() => return,
            },
            () = stop.cancelled() => return,
        };
        let update = match reply {
            Ok(reply) => {
                if !reply.cluster_id.is_empty() {
                    cluster_tx.send_if_modified(|c| {
                        let changed = *c != reply.cluster_id;
                        c.clone_from(&reply.cluster_id);
                        changed
                    });
                }
                Ok(Quorum::from(reply))
            }
            Err(e) => Err(e.to_string()),
        };
        if tx.send(Update::Quorum(update)).await.is_err() {
            return;
        }
    }
}

/// Every `interval`, asks each leader of a shown partition for its high watermarks (one
/// `DescribeReplicas` per leader, concurrently, each bounded); partitions whose leader does not
/// answer are left out of the round.
async fn poll_progress(
    mut image_rx: watch::Receiver<Option<Arc<MetadataImage>>>,
    cluster_rx: watch::Receiver<String>,
    filter: Filter,
    interval: Duration,
    tx: mpsc::Sender<Update>,
    stop: CancellationToken,
) {
    // tonic's lazy channels reconnect by themselves: one per address for the whole watch.
    let mut channels: HashMap<String, Channel> = HashMap::new();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        let image = image_rx.borrow_and_update().clone();
        let cluster_id = cluster_rx.borrow().clone();
        let Some(image) = image.filter(|_| !cluster_id.is_empty()) else {
            continue;
        };
        let mut by_leader: BTreeMap<BrokerId, Vec<rpb::TopicPartitionRef>> = BTreeMap::new();
        for (name, t) in image.topics.iter().filter(|(n, _)| filter.shows(n)) {
            for (i, p) in t.partitions.iter().enumerate() {
                if let (Some(leader), Ok(partition)) = (p.leader, i32::try_from(i)) {
                    by_leader
                        .entry(leader)
                        .or_default()
                        .push(rpb::TopicPartitionRef {
                            topic: name.clone(),
                            partition,
                        });
                }
            }
        }
        let mut calls = Vec::new();
        for (leader, partitions) in by_leader {
            let Some(channel) = replication_channel(&image, leader, &mut channels) else {
                continue;
            };
            let req = rpb::DescribeReplicasRequest {
                cluster_id: cluster_id.clone(),
                partitions,
            };
            calls.push(async move {
                let mut client = ReplicationClient::new(channel);
                let call = client.describe_replicas(req);
                match tokio::time::timeout(PROGRESS_TIMEOUT, call).await {
                    Ok(Ok(reply)) => Some((leader, reply.into_inner())),
                    Ok(Err(status)) => {
                        tracing::debug!(leader, %status, "DescribeReplicas failed");
                        None
                    }
                    Err(_) => None,
                }
            });
        }
        let replies = tokio::select! {
            r = futures::future::join_all(calls) => r,
            () = stop.cancelled() => return,
        };
        let mut hw = HashMap::new();
        for (leader, reply) in replies.into_iter().flatten() {
            for s in reply.partitions {
                let Ok(partition) = u32::try_from(s.partition) else {
                    continue;
                };
                // Only the current leader's word counts (a deposed one may still answer).
                let current = image
                    .partition(&s.topic, partition)
                    .is_some_and(|p| p.leader == Some(leader));
                if current {
                    hw.insert((s.topic, partition), s.high_watermark);
                }
            }
        }
        if tx.send(Update::Progress(hw)).await.is_err() {
            return;
        }
    }
}

/// The (cached) channel to `broker`'s replication endpoint, if it registered one.
fn replication_channel(
    image: &MetadataImage,
    broker: BrokerId,
    channels: &mut HashMap<String, Channel>,
) -> Option<Channel> {
    let e = image
        .brokers
        .get(&broker)?
        .endpoints
        .iter()
        .find(|e| e.name == REPLICATION)?;
    let addr = format!("{}:{}", e.host, e.port);
    if let Some(c) = channels.get(&addr) {
        return Some(c.clone());
    }
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .ok()?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .connect_lazy();
    channels.insert(addr, channel.clone());
    Some(channel)
}
