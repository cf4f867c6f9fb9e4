//! `gregor`: one binary for running a node and for talking to a cluster.
//!
//! # Layout
//! - `topic`: `gregor topic create|list|describe|delete|alter` (kafka-topics.sh flag names).
//! - `produce`: lines from stdin to a topic, with Kafka's partitioners.
//! - `consume`: records from a topic to stdout.
//! - `server`: run one node (config layering lives in the broker crate).
//! - `admin`: the node's admin HTTP port (`/health`, `/ready`, Prometheus `/metrics`) and
//!   `gregor admin health|ready|metrics`, its client (the compose healthcheck).
//! - `tools`: `dump-log` and other inspection commands.
//! - `group`: `gregor group list|describe|delete|reset-offsets` (kafka-consumer-groups.sh).
//! - `cluster`: `gregor cluster describe` (the controller quorum and its brokers) and
//!   `gregor cluster watch` (a live view of leaders, ISRs and high watermarks, with events).
//! - `perf`: `gregor perf produce|consume` (kafka-producer-perf-test / rdkafka_performance).
//! - `dev`: `gregor dev`, a local N-node cluster of `gregor server` children (see
//!   `docs/dev.md`).
//! - `verify`: `gregor verify`, the durability check (producers, readers, a seeded fault plan on
//!   a dev or compose cluster, the gregor-verify checker and its §6.6 report).
//!
//! Clap types stay in this crate: the library crates take plain values.

mod admin;
mod cluster;
mod consume;
mod dev;
mod group;
mod perf;
mod produce;
mod server;
mod tools;
mod topic;
mod verify;

use clap::{Parser, Subcommand};

/// Default bootstrap address, like Kafka's tools.
pub(crate) const DEFAULT_BOOTSTRAP: &str = "127.0.0.1:9092";

#[derive(Debug, Parser)]
#[command(
    name = "gregor",
    version,
    about = "Gregor: a Kafka-compatible streaming cluster"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node: the Kafka listener and the partition logs.
    Server(server::ServerArgs),
    /// Ask a node's admin HTTP port: health, readiness or Prometheus metrics.
    Admin(admin::AdminArgs),
    /// Create, list, describe, delete and alter topics.
    Topic(topic::TopicArgs),
    /// Produce lines from stdin, one record per line.
    Produce(produce::ProduceArgs),
    /// Consume records and print their values, one per line.
    Consume(consume::ConsumeArgs),
    /// Inspection tools (dump-log).
    Tools(tools::ToolsArgs),
    /// List, describe, delete consumer groups and reset their offsets.
    Group(group::GroupArgs),
    /// Describe the controller quorum and its brokers, or watch the cluster live.
    Cluster(cluster::ClusterArgs),
    /// Load generators: produce or consume N records and report throughput and latency.
    Perf(perf::PerfArgs),
    /// Run a local cluster: N combined broker + controller processes on 127.0.0.1.
    Dev(dev::DevArgs),
    /// Durability check: produce self-checking records (optionally under a seeded fault plan),
    /// read them back and report lost, duplicated or reordered records.
    Verify(verify::VerifyArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // A server logs its lifecycle; client commands keep stderr quiet unless RUST_LOG says more.
    let default_level = if matches!(cli.command, Command::Server(_)) {
        "info"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Server(args) => server::run(args).await,
            Command::Admin(args) => admin::run(args).await,
            Command::Tools(args) => tools::run(args),
            Command::Topic(args) => topic::run(args).await,
            Command::Produce(args) => produce::run(args).await,
            Command::Consume(args) => consume::run(args).await,
            Command::Group(args) => group::run(args).await,
            Command::Cluster(args) => cluster::run(args).await,
            Command::Perf(args) => perf::run(args).await,
            Command::Dev(args) => dev::run(args).await,
            Command::Verify(args) => verify::run(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Parses `key=value` for repeatable `--config` flags.
pub(crate) fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected key=value, got '{s}'")),
    }
}
