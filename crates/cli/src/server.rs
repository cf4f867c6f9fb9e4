//! `gregor server`: run one node until SIGINT/SIGTERM.
//!
//! `process.roles` (flag `--process-roles`, key `process.roles`, env `GREGOR_PROCESS_ROLES`)
//! picks what runs: `broker` (the default: the single-node Kafka broker, exactly as before),
//! `controller` (a controller-quorum voter only) or `broker,controller` (both in one process on
//! separate ports; the broker still keeps its own file-based metadata for now). The controller's
//! settings are layered by `gregor_controller::ControllerConfig`, the broker's by
//! `BrokerConfig`; a shared config file may hold both, each side skipping the other's keys.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use gregor_broker::{Broker, BrokerConfig};
use gregor_controller::ControllerConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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
    /// `process.roles`: `broker` (default), `controller`, or `broker,controller`.
    #[arg(long)]
    process_roles: Option<String>,
    /// `controller.quorum.voters`: `id@host:port,...`, e.g. `1@127.0.0.1:9093`.
    #[arg(long)]
    controller_quorum_voters: Option<String>,
    /// `controller.listener`: the controller's bind address (default: its voter address).
    #[arg(long)]
    controller_listener: Option<String>,
    /// `metadata.log.dir`: the controller's Raft store and meta.properties.
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
    let overrides = args.overrides();
    let roles = ControllerConfig::load(
        file.as_deref(),
        &env,
        &overrides,
        gregor_broker::config::KEYS,
    )?;
    let shutdown = CancellationToken::new();
    let signals = tokio::spawn(cancel_on_signal(shutdown.clone()));
    let result = serve(&roles, file.as_deref(), &env, &overrides, &shutdown).await;
    signals.abort();
    result
}

/// Starts the controller role (if configured), then serves the broker role (if configured)
/// until `shutdown`; then stops the controller.
async fn serve(
    roles: &ControllerConfig,
    file: Option<&std::path::Path>,
    env: &HashMap<String, String>,
    overrides: &[(String, String)],
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let controller = if roles.process_roles.controller {
        let node = gregor_controller::config::start(roles, shutdown.clone())
            .await
            .context("start the controller")?;
        println!(
            "gregor {} serving the controller quorum on {} (node {}, cluster {}), metadata in {}",
            env!("CARGO_PKG_VERSION"),
            node.local_addr(),
            node.id(),
            node.cluster_id(),
            roles.metadata_log_dir.display()
        );
        Some(node)
    } else {
        None
    };
    let result = if roles.process_roles.broker {
        run_broker(file, env, overrides, shutdown.clone()).await
    } else {
        shutdown.cancelled().await;
        Ok(())
    };
    shutdown.cancel();
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
    file: Option<&std::path::Path>,
    env: &HashMap<String, String>,
    overrides: &[(String, String)],
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let config = broker_config(file, env, overrides)?;
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
    let broker = Arc::new(
        tokio::task::spawn_blocking(move || Broker::open(config, bound))
            .await
            .context("open the broker")??,
    );
    println!(
        "gregor {} serving Kafka on {bound} (advertised {}), data in {}",
        env!("CARGO_PKG_VERSION"),
        broker.advertised().bind_addr(),
        broker.config().log_dir.display()
    );
    for (name, socket) in sockets.iter().skip(1) {
        println!(
            "listener {name} on {} (advertised {})",
            socket.local_addr()?,
            broker.advertised_for(name).bind_addr()
        );
    }
    gregor_broker::server::run_listeners(sockets, broker, shutdown).await?;
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
