//! `gregor server`: run one node until SIGINT/SIGTERM.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use gregor_broker::{Broker, BrokerConfig};
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
    /// `listeners`, e.g. `PLAINTEXT://127.0.0.1:9092`.
    #[arg(long)]
    listeners: Option<String>,
    /// `advertised.listeners`: the address clients are told to use.
    #[arg(long)]
    advertised_listeners: Option<String>,
    /// `log.dirs`: where partition data and metadata live.
    #[arg(long)]
    log_dirs: Option<String>,
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
    let config = BrokerConfig::load(file.as_deref(), &env, &args.overrides())?;
    let bind = config.listener.bind_addr();
    let listener = TcpListener::bind(&bind)
        .await
        .with_context(|| format!("bind the Kafka listener on {bind}"))?;
    let bound = listener.local_addr()?;
    let broker = Arc::new(
        tokio::task::spawn_blocking(move || Broker::open(config, bound))
            .await
            .context("open the broker")??,
    );
    let shutdown = CancellationToken::new();
    let signals = tokio::spawn(cancel_on_signal(shutdown.clone()));
    println!(
        "gregor {} serving Kafka on {bound} (advertised {}), data in {}",
        env!("CARGO_PKG_VERSION"),
        broker.advertised().bind_addr(),
        broker.config().log_dir.display()
    );
    let result = gregor_broker::run(listener, broker, shutdown).await;
    signals.abort();
    result?;
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
