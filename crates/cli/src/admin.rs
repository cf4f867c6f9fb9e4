//! The admin HTTP port of `gregor server` (`admin.listener`) and `gregor admin`, its client.
//!
//! | path | answer |
//! |---|---|
//! | `/health` | 200 `ok` while the process runs (liveness) |
//! | `/ready` | 200 `ready` when every role of the process is ready, else 503 `not ready: <reason>` |
//! | `/metrics` | Prometheus metrics, OpenMetrics text (the broker's and the controller's) |
//!
//! Readiness, role by role (`docs/admin.md`):
//! * broker: it registered with the controller quorum, its metadata image holds that
//!   registration unfenced and has caught up to it (`gregor_broker::admin::readiness`, checked
//!   live, so a broker fenced later turns not ready), and its Kafka listeners are served (they
//!   are bound before registering; the broker is published here right before its accept loops
//!   start). Not ready again from the moment shutdown begins.
//! * controller: it knows the quorum's leader (a quorum that lost its majority has none).
//!
//! The server is an axum router on its own task, started before the roles (so `/health`
//! answers and `/ready` says why not during start-up) and stopped last. Each scrape builds a
//! registry from the roles present: the broker's request families are shared handles and its
//! partition gauges and the controller's gauges are collectors reading live state, so nothing is
//! copied in the background and no value can be stale.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use bytes::Bytes;
use clap::{Args, Subcommand};
use gregor_broker::Broker;
use gregor_controller::config::ProcessRoles;
use gregor_controller::metrics::{ControllerMetrics, RaftCollector};
use http_body_util::{BodyExt, Empty};
use prometheus_client::registry::Registry;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// OpenMetrics text, what `prometheus_client` encodes (Prometheus asks for it first).
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// How long open admin connections may finish after shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// What the admin port reports on: the process's roles as they come up.
#[derive(Debug)]
pub(crate) struct AdminState {
    roles: ProcessRoles,
    /// The process's shutdown: not ready once it is cancelled.
    shutdown: CancellationToken,
    /// Set once the broker registered, caught up and is about to serve Kafka.
    broker: OnceLock<Arc<Broker>>,
    /// Set once the controller started.
    controller: OnceLock<watch::Receiver<ControllerMetrics>>,
}

impl AdminState {
    pub(crate) fn new(roles: ProcessRoles, shutdown: CancellationToken) -> Self {
        Self {
            roles,
            shutdown,
            broker: OnceLock::new(),
            controller: OnceLock::new(),
        }
    }

    /// Publishes the broker (call right before its Kafka listeners are served).
    pub(crate) fn set_broker(&self, broker: Arc<Broker>) {
        let _ = self.broker.set(broker);
    }

    /// Publishes the controller's metrics watch.
    pub(crate) fn set_controller(&self, metrics: watch::Receiver<ControllerMetrics>) {
        let _ = self.controller.set(metrics);
    }

    /// `Ok` when every role is ready, else why not.
    pub(crate) fn readiness(&self) -> Result<(), String> {
        if self.shutdown.is_cancelled() {
            return Err("shutting down".into());
        }
        if self.roles.controller {
            let Some(metrics) = self.controller.get() else {
                return Err("controller starting".into());
            };
            if metrics.borrow().current_leader.is_none() {
                return Err("controller: no quorum leader known".into());
            }
        }
        if self.roles.broker {
            let Some(broker) = self.broker.get() else {
                return Err("broker: registering with the controller quorum".into());
            };
            gregor_broker::admin::readiness(broker).map_err(|e| format!("broker: {e}"))?;
        }
        Ok(())
    }

    /// Every metric of the process in OpenMetrics text.
    pub(crate) fn metrics_text(&self) -> Result<String, std::fmt::Error> {
        let mut registry = Registry::default();
        if let Some(broker) = self.broker.get() {
            gregor_broker::admin::register(broker, &mut registry);
        }
        if let Some(metrics) = self.controller.get() {
            registry.register_collector(Box::new(RaftCollector::new(metrics.clone())));
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry)?;
        Ok(text)
    }
}

async fn health() -> &'static str {
    "ok\n"
}

async fn ready(State(state): State<Arc<AdminState>>) -> (StatusCode, String) {
    match state.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n".into()),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

async fn metrics(State(state): State<Arc<AdminState>>) -> axum::response::Response {
    match state.metrics_text() {
        Ok(text) => ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot encode metrics");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n").into_response()
        }
    }
}

/// Serves the admin port on `listener` until `stop`, then lets open requests finish (bounded
/// by [`SHUTDOWN_GRACE`]).
pub(crate) async fn serve(
    listener: TcpListener,
    state: Arc<AdminState>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let router = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(state);
    let server = std::future::IntoFuture::into_future(
        axum::serve(listener, router).with_graceful_shutdown(stop.clone().cancelled_owned()),
    );
    tokio::pin!(server);
    tokio::select! {
        served = &mut server => served,
        () = stop.cancelled() => tokio::time::timeout(SHUTDOWN_GRACE, server)
            .await
            .unwrap_or(Ok(())),
    }
}

#[derive(Debug, Args)]
pub(crate) struct AdminArgs {
    #[command(subcommand)]
    endpoint: Endpoint,
}

/// Which node to ask.
#[derive(Debug, Clone, Args)]
struct Target {
    /// The node's `admin.listener` address (`host:port`).
    #[arg(long, short = 'a')]
    admin_server: String,
    /// Give up after this many milliseconds.
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
}

#[derive(Debug, Clone, Subcommand)]
enum Endpoint {
    /// GET /health: exits 0 if the node's process answers (liveness).
    Health(Target),
    /// GET /ready: exits 0 if the node is ready, else prints why not and exits 1.
    Ready(Target),
    /// GET /metrics: prints the node's Prometheus metrics.
    Metrics(Target),
}

/// `gregor admin health|ready|metrics`: GETs the endpoint, prints the body, and fails unless
/// the answer is 200 (a container healthcheck without curl).
pub(crate) async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let (path, target) = match &args.endpoint {
        Endpoint::Health(t) => ("/health", t),
        Endpoint::Ready(t) => ("/ready", t),
        Endpoint::Metrics(t) => ("/metrics", t),
    };
    let addr = &target.admin_server;
    let timeout = Duration::from_millis(target.timeout_ms);
    let (status, body) = tokio::time::timeout(timeout, get_url(addr, path))
        .await
        .with_context(|| format!("no answer from {addr} within {timeout:?}"))??;
    print!("{}", String::from_utf8_lossy(&body));
    if status != StatusCode::OK {
        bail!("{addr}{path}: HTTP {status}");
    }
    Ok(())
}

/// One HTTP/1.1 GET through hyper's client connection.
async fn get_url(addr: &str, path: &str) -> anyhow::Result<(StatusCode, Bytes)> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect to {addr}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    let request = hyper::Request::get(path)
        .header(header::HOST, addr)
        .body(Empty::<Bytes>::new())?;
    let exchange = async move {
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, body))
    };
    tokio::pin!(exchange);
    // The connection future drives the socket; the exchange finishes first unless the
    // connection fails (a body already received is still read if it ends first).
    tokio::select! {
        biased;
        done = &mut exchange => done,
        driven = connection => {
            driven?;
            exchange.await
        }
    }
}
