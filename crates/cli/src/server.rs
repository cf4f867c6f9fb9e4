//! `gregor server`: run one node until SIGINT/SIGTERM.
//!
//! `process.roles` (flag `--process-roles`, key `process.roles`, env `GREGOR_PROCESS_ROLES`)
//! picks what runs: `broker,controller` (the default), `broker` or `controller`.
//!
//! * **Default: a single-voter combined node.** With `controller.quorum.voters` unset the node
//!   is the quorum's only voter: its controller binds `controller.listener` (default
//!   `127.0.0.1:0`), the Raft store lives in `metadata.log.dir` (default `<log.dirs>/metadata`,
//!   a directory the log manager does not take for a partition) and the cluster id is made up
//!   on first start. The broker registers with it like any other broker.
//! * A broker (alone or combined) registers with the quorum (`gregor_broker::quorum`), binds
//!   `replication.listener` and advertises the bound address, follows the metadata stream, and
//!   serves Kafka once it caught up and was unfenced. A broker-only process needs
//!   `controller.quorum.voters`.
//!
//! * Every process serves the admin HTTP port on `admin.listener` (default `127.0.0.1:0`):
//!   `/health`, `/ready` and Prometheus `/metrics` (see [`crate::admin`]), started first and
//!   stopped last.
//!
//! Configuration ([`NodeConfig`]): one load for the whole process. Each layer (defaults < TOML
//! file < `GREGOR_*` env < flags / `--override`) is read once; the broker's keys go to
//! `BrokerConfig`, the controller's to `ControllerConfig` (each skipping the other's keys, unknown
//! keys are errors), each is validated, then the cross-role defaults are filled in.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use gregor_broker::BrokerConfig;
use gregor_broker::quorum::QuorumConfig;
use gregor_controller::ControllerConfig;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::admin::AdminState;
use crate::parse_key_value;

#[derive(Debug, Args)]
pub(crate) struct ServerArgs {
    /// TOML file with Kafka property names (`"log.dirs" = "/data"`). Read when given, or when
    /// ./gregor.toml exists.
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// `node.id`.
    #[arg(long)]
    node_id: Option<i32>,
    /// `listeners`, e.g. `PLAINTEXT://127.0.0.1:9092`, or several named ones
    /// (`INTERNAL://0.0.0.0:9092,EXTERNAL://0.0.0.0:19092`, with
    /// `--override listener.security.protocol.map=INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT`).
    #[arg(long)]
    listeners: Option<String>,
    /// `advertised.listeners`: the addresses clients are told to use, per listener name.
    #[arg(long)]
    advertised_listeners: Option<String>,
    /// `log.dirs`: where partition data and metadata live.
    #[arg(long)]
    log_dirs: Option<String>,
    /// `process.roles`: `broker,controller` (default), `broker` or `controller`.
    #[arg(long)]
    process_roles: Option<String>,
    /// `controller.quorum.voters`: `id@host:port,...`, e.g. `1@127.0.0.1:9093` (default: this
    /// node is the only voter).
    #[arg(long)]
    controller_quorum_voters: Option<String>,
    /// `controller.listener`: the controller's bind address (default: its voter address, or
    /// 127.0.0.1:0 for a sole voter).
    #[arg(long)]
    controller_listener: Option<String>,
    /// `metadata.log.dir`: the controller's Raft store and meta.properties (default
    /// `<log.dirs>/metadata`).
    #[arg(long)]
    metadata_log_dir: Option<String>,
    /// `cluster.id`: needed to format a fresh multi-voter quorum (the same on every voter).
    #[arg(long)]
    cluster_id: Option<String>,
    /// Any other property, `key=value` (like kafka-server-start's --override); repeatable.
    #[arg(long = "override", value_parser = parse_key_value)]
    overrides: Vec<(String, String)>,
}

impl ServerArgs {
    /// Flags as `(kafka key, value)` pairs, the last and strongest config layer.
    fn overrides(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let named = [
            ("node.id", self.node_id.map(|v| v.to_string())),
            ("listeners", self.listeners.clone()),
            ("advertised.listeners", self.advertised_listeners.clone()),
            ("log.dirs", self.log_dirs.clone()),
            ("process.roles", self.process_roles.clone()),
            (
                "controller.quorum.voters",
                self.controller_quorum_voters.clone(),
            ),
            ("controller.listener", self.controller_listener.clone()),
            ("metadata.log.dir", self.metadata_log_dir.clone()),
            ("cluster.id", self.cluster_id.clone()),
        ];
        for (key, value) in named {
            if let Some(v) = value {
                out.push((key.to_string(), v));
            }
        }
        out.extend(self.overrides.iter().cloned());
        out
    }
}

/// The whole configuration of one process: the broker's and the controller's settings, each
/// with Kafka's names, loaded from the same layers and validated once.
#[derive(Debug, Clone)]
pub(crate) struct NodeConfig {
    /// The broker's settings (used when `process.roles` has `broker`).
    pub broker: BrokerConfig,
    /// The controller's settings, plus `process.roles` and the quorum address list.
    pub controller: ControllerConfig,
}

impl NodeConfig {
    /// Loads both roles' settings from the same layers and fills in the cross-role defaults
    /// (`metadata.log.dir` = `<log.dirs>/metadata`).
    pub fn load(
        file: Option<&std::path::Path>,
        env: &HashMap<String, String>,
        overrides: &[(String, String)],
    ) -> anyhow::Result<Self> {
        let mut controller =
            ControllerConfig::load(file, env, overrides, gregor_broker::config::KEYS)?;
        let broker = broker_config(file, env, overrides)?;
        if controller.metadata_log_dir.is_none() {
            controller.metadata_log_dir = Some(broker.log_dir.join(METADATA_DIR));
        }
        Ok(NodeConfig { broker, controller })
    }
}

/// The default metadata directory's name inside `log.dirs`: no `-<number>` suffix, so the log
/// manager never takes it for a partition (`TopicPartition::from_dir_name`).
const METADATA_DIR: &str = "metadata";

pub(crate) async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => Some(path.clone()),
        None => {
            let default = PathBuf::from("gregor.toml");
            std::fs::exists(&default)
                .unwrap_or(false)
                .then_some(default)
        }
    };
    let env: HashMap<String, String> = std::env::vars().collect();
    let config = NodeConfig::load(file.as_deref(), &env, &args.overrides())?;
    let shutdown = CancellationToken::new();
    let signals = tokio::spawn(cancel_on_signal(shutdown.clone()));
    let result = serve(config, &shutdown).await;
    signals.abort();
    result
}

/// Starts the admin HTTP port, the controller role (if configured), then serves the broker
/// role (if configured) until `shutdown`; then stops the broker (controlled shutdown first),
/// the controller, so the broker's last heartbeat still finds it, and the admin port last.
async fn serve(config: NodeConfig, shutdown: &CancellationToken) -> anyhow::Result<()> {
    let roles = &config.controller;
    // First, so `/health` answers and `/ready` says why not while the roles start.
    let admin = Arc::new(AdminState::new(roles.process_roles, shutdown.clone()));
    let admin_bind = config.broker.admin_listener.bind_addr();
    let admin_socket = TcpListener::bind(&admin_bind)
        .await
        .with_context(|| format!("bind the admin listener on {admin_bind}"))?;
    println!(
        "gregor {} serving admin HTTP on {} (/health, /ready, /metrics)",
        env!("CARGO_PKG_VERSION"),
        admin_socket.local_addr()?
    );
    let admin_stop = CancellationToken::new();
    let mut admin_task = JoinSet::new();
    admin_task.spawn(crate::admin::serve(
        admin_socket,
        Arc::clone(&admin),
        admin_stop.clone(),
    ));
    let result = serve_roles(config, shutdown, &admin).await;
    admin_stop.cancel();
    while let Some(done) = admin_task.join_next().await {
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "admin HTTP server failed"),
            Err(e) => tracing::warn!(error = %e, "admin HTTP server panicked"),
        }
    }
    result
}

/// The roles of [`serve`], publishing each to `admin` as it comes up.
async fn serve_roles(
    config: NodeConfig,
    shutdown: &CancellationToken,
    admin: &AdminState,
) -> anyhow::Result<()> {
    let roles = &config.controller;
    // Its own token: the controller outlives the broker's controlled shutdown.
    let controller_stop = CancellationToken::new();
    let controller = if roles.process_roles.controller {
        let node = gregor_controller::config::start(roles, controller_stop.clone())
            .await
            .context("start the controller")?;
        admin.set_controller(node.raft().metrics());
        println!(
            "gregor {} serving the controller quorum on {} (node {}, cluster {}), metadata in {}",
            env!("CARGO_PKG_VERSION"),
            node.local_addr(),
            node.id(),
            node.cluster_id(),
            roles.metadata_dir()?.display()
        );
        Some(node)
    } else {
        None
    };
    let result = if roles.process_roles.broker {
        let voters: Vec<String> = if roles.quorum_voters.is_empty() {
            controller
                .iter()
                .map(|n| n.local_addr().to_string())
                .collect()
        } else {
            roles.quorum_voters.values().cloned().collect()
        };
        let quorum = QuorumConfig {
            voters,
            cluster_id: controller
                .as_ref()
                .map(|n| n.cluster_id().to_string())
                .or_else(|| roles.cluster_id.as_ref().map(|c| c.to_string())),
            heartbeat_interval: Duration::from_millis(roles.broker_heartbeat_interval_ms),
            rack: None,
        };
        run_broker(config.broker.clone(), quorum, shutdown.clone(), admin).await
    } else {
        shutdown.cancelled().await;
        Ok(())
    };
    shutdown.cancel();
    controller_stop.cancel();
    if let Some(node) = controller {
        node.shutdown().await.context("stop the controller")?;
    }
    result
}

/// The broker's configuration: its own layering, minus the controller's keys.
fn broker_config(
    file: Option<&std::path::Path>,
    env: &HashMap<String, String>,
    overrides: &[(String, String)],
) -> anyhow::Result<BrokerConfig> {
    let controller_only = |k: &str| {
        gregor_controller::config::KEYS.contains(&k) && !gregor_broker::config::KEYS.contains(&k)
    };
    let overrides: Vec<(String, String)> = overrides
        .iter()
        .filter(|(k, _)| !controller_only(k))
        .cloned()
        .collect();
    let file_pairs = match file {
        Some(path) => gregor_controller::config::read_toml_file(path)?,
        None => Vec::new(),
    };
    if !file_pairs.iter().any(|(k, _)| controller_only(k)) {
        return Ok(BrokerConfig::load(file, env, &overrides)?);
    }
    // The file also holds controller keys: the broker's layers by hand, skipping those.
    let origin = file.map(|p| p.display().to_string()).unwrap_or_default();
    let mut config = BrokerConfig::default();
    for (key, value) in file_pairs.iter().filter(|(k, _)| !controller_only(k)) {
        config.set(key, value, &origin)?;
    }
    for key in gregor_broker::config::KEYS {
        let name = gregor_broker::config::env_name(key);
        if let Some(value) = env.get(&name) {
            config.set(key, value, &name)?;
        }
    }
    for (key, value) in &overrides {
        config.set(key, value, "command line")?;
    }
    config.validate()?;
    Ok(config)
}

async fn run_broker(
    config: BrokerConfig,
    quorum: QuorumConfig,
    shutdown: CancellationToken,
    admin: &AdminState,
) -> anyhow::Result<()> {
    // Every named listener; the first one's bound address fills in its advertised endpoint.
    let mut sockets = Vec::new();
    for l in config.listeners() {
        let bind = l.endpoint.bind_addr();
        let socket = TcpListener::bind(&bind)
            .await
            .with_context(|| format!("bind the Kafka listener {} on {bind}", l.name))?;
        sockets.push((l.name.to_string(), socket));
    }
    let bound = match sockets.first() {
        Some((_, s)) => s.local_addr()?,
        None => anyhow::bail!("no Kafka listener configured"),
    };
    let replication_bind = config.replication_listener.bind_addr();
    let replication_listener = TcpListener::bind(&replication_bind)
        .await
        .with_context(|| format!("bind the replication listener on {replication_bind}"))?;
    let replication: SocketAddr = replication_listener.local_addr()?;
    let member = gregor_broker::quorum::start(config, quorum, bound, replication, shutdown.clone())
        .await
        .context("join the controller quorum")?;
    let broker = Arc::clone(&member.broker);
    // Replication and the Kafka listeners stop in that order: `run_listeners` closes the logs
    // when it returns, and fetchers must not append to closed logs.
    let replication_stop = CancellationToken::new();
    let kafka_stop = CancellationToken::new();
    let mut replicating = tokio::spawn(gregor_broker::replica::serve(
        replication_listener,
        Arc::clone(&broker),
        replication_stop.clone(),
    ));
    for (name, socket) in sockets.iter().skip(1) {
        println!(
            "listener {name} on {} (advertised {})",
            socket.local_addr()?,
            broker.advertised_for(name).bind_addr()
        );
    }
    println!(
        "gregor {} serving Kafka on {bound} (advertised {}, replication {replication}, broker {}), data in {}",
        env!("CARGO_PKG_VERSION"),
        broker.advertised().bind_addr(),
        broker.config().node_id,
        broker.config().log_dir.display()
    );
    // The sockets listen since they were bound; their accept loops start with `serving`.
    admin.set_broker(Arc::clone(&broker));
    let serving = gregor_broker::server::run_listeners(sockets, broker, kafka_stop.clone());
    tokio::pin!(serving);
    let (served, replicated) = tokio::select! {
        served = &mut serving => {
            // The Kafka listener failed on its own: stop replication too.
            replication_stop.cancel();
            (served, replicating.await)
        }
        replicated = &mut replicating => {
            kafka_stop.cancel();
            (serving.await, replicated)
        }
        () = shutdown.cancelled() => {
            replication_stop.cancel();
            let replicated = replicating.await;
            kafka_stop.cancel();
            (serving.await, replicated)
        }
    };
    member.shutdown().await;
    served?;
    replicated.context("the replication task panicked")??;
    Ok(())
}

/// Cancels `token` on SIGINT or SIGTERM (docker stop), so shutdown is clean either way.
async fn cancel_on_signal(token: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C still works");
            let _ = tokio::signal::ctrl_c().await;
            token.cancel();
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    token.cancel();
}
