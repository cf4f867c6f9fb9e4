//! `gregor-interop`: real-client interop tests that need a heavy build. Today that is
//! librdkafka 2.12.1 through the `rdkafka` crate (statically built, a dev-dependency of this
//! crate only, so no other crate pays its ~90 s clean compile).
//!
//! The library part is the shared harness: [`InteropBroker`] runs an in-process Gregor node as
//! `gregor server` runs it by default — a controller that is the quorum's only voter and a broker
//! registered with it (`gregor_broker::quorum`), so topics, leaders and producer ids come from the
//! controller — on `127.0.0.1:0` with a fresh temp data dir, on its own small tokio runtime. Tests stay
//! synchronous (librdkafka's consumer API blocks), and async work (rdkafka's `FutureProducer`)
//! runs through [`InteropBroker::block_on`]. Every wait the harness offers takes a deadline.
//!
//! The tests themselves are in `tests/rdkafka.rs` (one binary).

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use gregor_broker::quorum::{QuorumBroker, QuorumConfig};
use gregor_broker::{Broker, BrokerConfig};
use gregor_controller::cluster_id::ClusterId;
use gregor_controller::node::{ControllerNode, NodeConfig};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Why the harness failed.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// Socket, runtime or temp-dir setup failed.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// The broker refused to open, or failed while running or shutting down.
    #[error("broker: {0}")]
    Broker(#[from] gregor_broker::BrokerError),
    /// A wait ran past its deadline.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The controller failed to start or stop.
    #[error("controller: {0}")]
    Controller(#[from] gregor_controller::error::ControllerError),
}

/// An in-process broker for interop tests. Dropping it stops the broker and its runtime;
/// [`InteropBroker::stop`] does the same and reports a failed shutdown.
#[derive(Debug)]
pub struct InteropBroker {
    /// `127.0.0.1:port` for clients' `bootstrap.servers`.
    pub addr: String,
    /// The broker itself, for white-box waits and checks.
    pub broker: Arc<Broker>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<gregor_broker::Result<()>>>,
    member: Option<QuorumBroker>,
    controller: Option<ControllerNode>,
    controller_stop: CancellationToken,
    runtime: Option<Runtime>,
    /// The data directory, removed on drop.
    pub dir: tempfile::TempDir,
}

impl InteropBroker {
    /// Starts a broker with the default configuration (Kafka's defaults; auto-create on).
    pub fn start() -> Result<Self, HarnessError> {
        Self::start_with(|_| {})
    }

    /// Starts a broker after `f` adjusted its configuration. The listener is always
    /// 127.0.0.1:0 and the log dir a fresh temp dir.
    pub fn start_with(f: impl FnOnce(&mut BrokerConfig)) -> Result<Self, HarnessError> {
        let dir = tempfile::tempdir()?;
        let mut config = BrokerConfig {
            log_dir: dir.path().to_path_buf(),
            ..BrokerConfig::default()
        };
        f(&mut config);
        config.log_dir = dir.path().to_path_buf();
        config.listener = gregor_broker::config::Endpoint {
            host: "127.0.0.1".into(),
            port: 0,
        };
        // Two workers: the broker keeps serving while a test blocks in `block_on`.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("gregor-interop-broker")
            .enable_all()
            .build()?;
        let shutdown = CancellationToken::new();
        let controller_stop = CancellationToken::new();
        let metadata_dir = dir.path().join("metadata");
        let (listener, bound, controller, member) = runtime.block_on(async {
            let ctl = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let ctl_addr = ctl.local_addr()?.to_string();
            // `node.id` is validated non-negative.
            let id = u64::try_from(config.node_id).unwrap_or_default();
            let node = NodeConfig::new(
                id,
                ClusterId::random(),
                metadata_dir,
                std::collections::BTreeMap::from([(id, ctl_addr.clone())]),
            );
            let controller = ControllerNode::start(node, ctl, controller_stop.clone()).await?;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let bound = listener.local_addr()?;
            let replication = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await?
                .local_addr()?;
            let quorum = QuorumConfig {
                voters: vec![ctl_addr],
                cluster_id: Some(controller.cluster_id().to_string()),
                heartbeat_interval: Duration::from_millis(200),
                rack: None,
            };
            let member =
                gregor_broker::quorum::start(config, quorum, bound, replication, shutdown.clone())
                    .await?;
            Ok::<_, HarnessError>((listener, bound, controller, member))
        })?;
        let broker = Arc::clone(&member.broker);
        let task = runtime.spawn(gregor_broker::run(
            listener,
            Arc::clone(&broker),
            shutdown.clone(),
        ));
        Ok(InteropBroker {
            addr: bound.to_string(),
            broker,
            shutdown,
            task: Some(task),
            member: Some(member),
            controller: Some(controller),
            controller_stop,
            runtime: Some(runtime),
            dir,
        })
    }

    /// Runs a future (an rdkafka delivery future, say) to completion on the harness runtime,
    /// giving up after `deadline`.
    pub fn block_on<F: Future>(
        &self,
        deadline: Duration,
        fut: F,
    ) -> Result<F::Output, HarnessError> {
        let runtime = self
            .runtime
            .as_ref()
            .ok_or_else(|| HarnessError::Timeout("the runtime is gone".into()))?;
        runtime
            .block_on(async { tokio::time::timeout(deadline, fut).await })
            .map_err(|_| HarnessError::Timeout(format!("future not done within {deadline:?}")))
    }

    /// Waits until `topic`-`partition`'s high watermark reaches `at_least` (woken by the
    /// partition's watch, no polling), at most `deadline`. Returns the high watermark.
    pub fn wait_for_high_watermark(
        &self,
        topic: &str,
        partition: i32,
        at_least: i64,
        deadline: Duration,
    ) -> Result<i64, HarnessError> {
        let mut rx = self.broker.partition(topic, partition)?.subscribe();
        self.block_on(deadline, async move {
            rx.wait_for(|hw| *hw >= at_least).await.map(|hw| *hw)
        })
        .map_err(|_| {
            HarnessError::Timeout(format!("{topic}-{partition} never reached {at_least}"))
        })?
        .map_err(|_| HarnessError::Timeout(format!("{topic}-{partition} was deleted")))
    }

    /// The log end offset of a partition, read from the broker.
    pub fn log_end_offset(&self, topic: &str, partition: i32) -> Result<i64, HarnessError> {
        Ok(self
            .broker
            .partition(topic, partition)?
            .log
            .read()
            .log_end_offset())
    }

    /// Stops the broker (drains connections, closes the logs, controlled shutdown) and then the
    /// controller, within 20 s each.
    pub fn stop(mut self) -> Result<(), HarnessError> {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            self.block_on(Duration::from_secs(20), task)?
                .map_err(|e| HarnessError::Io(io::Error::other(e)))??;
        }
        if let Some(member) = self.member.take() {
            self.block_on(Duration::from_secs(20), member.shutdown())?;
        }
        self.controller_stop.cancel();
        if let Some(controller) = self.controller.take() {
            self.block_on(Duration::from_secs(20), controller.shutdown())??;
        }
        Ok(())
    }
}

impl Drop for InteropBroker {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.controller_stop.cancel();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
    }
}
