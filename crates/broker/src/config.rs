//! Broker configuration: Kafka's property names and defaults, layered and validated once.
//!
//! Precedence, lowest first: built-in defaults (Kafka's) < TOML file (`gregor.toml`, keys are the
//! Kafka names, e.g. `"log.dirs" = "/data"` or `[log] dirs = "/data"`) < `GREGOR_*` environment
//! variables (`GREGOR_LOG_DIRS` for `log.dirs`) < explicit overrides (the CLI's flags). Every
//! layer goes through the same [`BrokerConfig::set`], so a key means the same thing everywhere,
//! and [`BrokerConfig::validate`] runs once at the end.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use gregor_config::{ConfigError, env_name};
use gregor_config::{parse, read_toml_file};
use gregor_storage::TimestampType;

/// A `host:port` a listener binds to or a client is told to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or address; empty means "all interfaces" for a bind address.
    pub host: String,
    /// TCP port; 0 for a bind address means "any free port".
    pub port: u16,
}

impl Endpoint {
    /// Parses one `PLAINTEXT://host:port` (the scheme is optional; only PLAINTEXT), for keys
    /// that take exactly one address.
    pub fn parse_listener(value: &str) -> Result<Endpoint, String> {
        let value = value.trim();
        if value.contains(',') {
            return Err("only one listener is supported".into());
        }
        let rest = match value.split_once("://") {
            Some((scheme, rest)) => {
                if !scheme.eq_ignore_ascii_case("PLAINTEXT") {
                    return Err(format!(
                        "listener scheme {scheme} is not supported (PLAINTEXT only)"
                    ));
                }
                rest
            }
            None => value,
        };
        Endpoint::parse_host_port(rest)
    }

    /// Parses `host:port` (`[v6]:port` too).
    fn parse_host_port(rest: &str) -> Result<Endpoint, String> {
        let (host, port) = rest.rsplit_once(':').ok_or("expected host:port")?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = port
            .parse::<u16>()
            .map_err(|e| format!("bad port {port:?}: {e}"))?;
        Ok(Endpoint { host, port })
    }

    /// The address to bind: an empty host means all interfaces.
    pub fn bind_addr(&self) -> String {
        let host = if self.host.is_empty() {
            "0.0.0.0"
        } else {
            self.host.as_str()
        };
        if host.contains(':') {
            format!("[{host}]:{}", self.port)
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// One entry of `listeners` or `advertised.listeners`: `NAME://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// The listener name (upper case), e.g. `PLAINTEXT`, `INTERNAL`, `EXTERNAL`.
    pub name: String,
    /// Its address.
    pub endpoint: Endpoint,
}

/// The name of a listener given without one (`host:port`), and Kafka's default listener name.
pub const DEFAULT_LISTENER_NAME: &str = "PLAINTEXT";

/// Kafka's default `listener.security.protocol.map`.
pub const DEFAULT_SECURITY_PROTOCOL_MAP: &str =
    "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL";

/// Parses Kafka's `listeners` syntax: a comma-separated list of `NAME://host:port`. A bare
/// `host:port` is named `PLAINTEXT` (Gregor's shorthand). Names are case-insensitive (stored
/// upper case) and must be distinct, like Kafka's.
pub fn parse_listeners(value: &str) -> Result<Vec<Listener>, String> {
    let mut out: Vec<Listener> = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, rest) = match item.split_once("://") {
            Some((name, rest)) => (name.to_ascii_uppercase(), rest),
            None => (DEFAULT_LISTENER_NAME.to_string(), item),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("bad listener name {name:?}"));
        }
        if out.iter().any(|l| l.name == name) {
            return Err(format!("listener name {name} appears twice"));
        }
        let endpoint = Endpoint::parse_host_port(rest)?;
        out.push(Listener { name, endpoint });
    }
    if out.is_empty() {
        return Err("no listener given".into());
    }
    Ok(out)
}

/// Parses `listener.security.protocol.map`: `NAME:PROTOCOL,...`.
pub fn parse_protocol_map(value: &str) -> Result<Vec<(String, String)>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|pair| match pair.split_once(':') {
            Some((name, protocol)) if !name.trim().is_empty() && !protocol.trim().is_empty() => {
                Ok((
                    name.trim().to_ascii_uppercase(),
                    protocol.trim().to_ascii_uppercase(),
                ))
            }
            _ => Err(format!("expected NAME:PROTOCOL, got {pair:?}")),
        })
        .collect()
}

/// Broker settings. Field docs give the Kafka property name and the Kafka default.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerConfig {
    /// `node.id` (Kafka has no default; a single node uses 1).
    pub node_id: i32,
    /// `listeners` (default `PLAINTEXT://:9092`): the first listener's address. Code that runs
    /// one listener sets only this; see [`BrokerConfig::listeners`] for all of them.
    pub listener: Endpoint,
    /// The first listener's name (default `PLAINTEXT`).
    pub listener_name: String,
    /// The other entries of `listeners`, in order (default none). Unlike the first, they need
    /// a fixed port or an `advertised.listeners` entry (Gregor's choice: only the first
    /// listener's port 0 is filled in from the bound address).
    pub extra_listeners: Vec<Listener>,
    /// `advertised.listeners` (default: none, i.e. every listener advertises its own address,
    /// with the bound address filled in). Listeners not named here advertise their own.
    pub advertised_listeners: Vec<Listener>,
    /// `listener.security.protocol.map` (default Kafka's, [`DEFAULT_SECURITY_PROTOCOL_MAP`]):
    /// every listener's name must map to `PLAINTEXT`, the only protocol served.
    pub listener_security_protocol_map: Vec<(String, String)>,
    /// `inter.broker.listener.name` (Kafka: derived from `security.inter.broker.protocol`,
    /// i.e. `PLAINTEXT`). Brokers replicate over gRPC (`replication.listener`), so this only
    /// names the listener whose address the broker reports as its own elsewhere (logs, the
    /// endpoint used when a request's listener is unknown); it must name a listener.
    pub inter_broker_listener_name: Option<String>,
    /// `log.dirs` (Kafka's `log.dir` default `/tmp/kafka-logs`); exactly one directory.
    pub log_dir: PathBuf,
    /// `num.partitions` (default 1): partitions of auto-created topics and CreateTopics with -1.
    pub num_partitions: i32,
    /// `auto.create.topics.enable` (default true).
    pub auto_create_topics_enable: bool,
    /// `default.replication.factor` (default 1; a single node supports nothing else).
    pub default_replication_factor: i16,
    /// `delete.topic.enable` (default true).
    pub delete_topic_enable: bool,
    /// `socket.request.max.bytes` (default 104857600): larger frames close the connection.
    pub socket_request_max_bytes: i32,
    /// `connections.max.idle.ms` (default 600000).
    pub connections_max_idle_ms: i64,
    /// `log.retention.ms` (default 604800000, i.e. `log.retention.hours=168`).
    pub log_retention_ms: i64,
    /// `log.retention.bytes` (default -1, unlimited).
    pub log_retention_bytes: i64,
    /// `log.segment.bytes` (default 1073741824).
    pub log_segment_bytes: i64,
    /// `log.roll.ms` (default 604800000, i.e. `log.roll.hours=168`).
    pub log_roll_ms: i64,
    /// `log.index.interval.bytes` (default 4096).
    pub log_index_interval_bytes: i32,
    /// `log.flush.interval.messages` (default Long.MAX: leave flushing to the OS).
    pub log_flush_interval_messages: i64,
    /// `log.flush.interval.ms` (default Long.MAX here; Kafka leaves it unset).
    pub log_flush_interval_ms: i64,
    /// `log.retention.check.interval.ms` (default 300000).
    pub log_retention_check_interval_ms: i64,
    /// `message.max.bytes` (default 1048588): the largest record batch a topic accepts.
    pub message_max_bytes: i32,
    /// `min.insync.replicas` (default 1).
    pub min_insync_replicas: i32,
    /// `offsets.topic.num.partitions` (default 50): partitions of `__consumer_offsets`.
    pub offsets_topic_num_partitions: i32,
    /// `offsets.topic.replication.factor` (default 3); like Kafka's auto-creation, the topic is
    /// created with min(this, live brokers).
    pub offsets_topic_replication_factor: i16,
    /// `offset.metadata.max.bytes` (default 4096): longer commit metadata is rejected.
    pub offset_metadata_max_bytes: i32,
    /// `offsets.commit.timeout.ms` (default 5000): how long an offset commit waits for the
    /// `__consumer_offsets` replicas before it fails with REQUEST_TIMED_OUT.
    pub offsets_commit_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms` (default 3000).
    pub group_initial_rebalance_delay_ms: i32,
    /// `group.min.session.timeout.ms` (default 6000).
    pub group_min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms` (default 1800000).
    pub group_max_session_timeout_ms: i32,
    /// `log.message.timestamp.type` (default `CreateTime`; or `LogAppendTime`).
    pub log_message_timestamp_type: TimestampType,
    /// `log.message.timestamp.before.max.ms` (default Long.MAX, i.e. unbounded): how far in the
    /// past a CreateTime timestamp may be.
    pub log_message_timestamp_before_max_ms: i64,
    /// `log.message.timestamp.after.max.ms` (default 3600000 = 1 h since Kafka 4.0, KIP-1030): how
    /// far in the future a CreateTime timestamp may be.
    pub log_message_timestamp_after_max_ms: i64,
    /// `replication.listener` (Gregor's; default `127.0.0.1:0`, an ephemeral port): where the
    /// broker serves the gRPC `Replication` service followers fetch from. Advertised to the
    /// controller as the `REPLICATION` endpoint.
    pub replication_listener: Endpoint,
    /// `admin.listener` (Gregor's; default `127.0.0.1:0`, an ephemeral port, printed at start):
    /// the process's admin HTTP port with `/health`, `/ready` and Prometheus `/metrics`
    /// (`docs/admin.md`). Loopback by default like the other Gregor-only listeners: metrics have
    /// no authentication; bind `0.0.0.0:PORT` to let a Prometheus elsewhere scrape it.
    pub admin_listener: Endpoint,
    /// `replica.fetch.max.bytes` (default 1048576): record bytes per partition in one replica
    /// fetch (at least one batch is always sent).
    pub replica_fetch_max_bytes: i32,
    /// `replica.fetch.response.max.bytes` (default 10485760): record bytes in one replica fetch
    /// reply.
    pub replica_fetch_response_max_bytes: i32,
    /// `replica.fetch.wait.max.ms` (default 500): how long a leader holds a replica fetch when no
    /// partition has data.
    pub replica_fetch_wait_max_ms: i32,
    /// `replica.fetch.backoff.ms` (default 1000): pause after a failed replica fetch.
    pub replica_fetch_backoff_ms: i32,
    /// `replica.lag.time.max.ms` (default 30000): a follower that has not caught up with the
    /// leader's log end for this long leaves the ISR.
    pub replica_lag_time_max_ms: i64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            node_id: 1,
            listener: Endpoint {
                host: String::new(),
                port: 9092,
            },
            listener_name: DEFAULT_LISTENER_NAME.to_string(),
            extra_listeners: Vec::new(),
            advertised_listeners: Vec::new(),
            listener_security_protocol_map: parse_protocol_map(DEFAULT_SECURITY_PROTOCOL_MAP)
                .unwrap_or_default(),
            inter_broker_listener_name: None,
            log_dir: PathBuf::from("/tmp/kafka-logs"),
            num_partitions: 1,
            auto_create_topics_enable: true,
            default_replication_factor: 1,
            delete_topic_enable: true,
            socket_request_max_bytes: 104_857_600,
            connections_max_idle_ms: 600_000,
            log_retention_ms: 604_800_000,
            log_retention_bytes: -1,
            log_segment_bytes: 1_073_741_824,
            log_roll_ms: 604_800_000,
            log_index_interval_bytes: 4096,
            log_flush_interval_messages: i64::MAX,
            log_flush_interval_ms: i64::MAX,
            log_retention_check_interval_ms: 300_000,
            message_max_bytes: 1_048_588,
            min_insync_replicas: 1,
            offsets_topic_num_partitions: 50,
            offsets_topic_replication_factor: 3,
            offset_metadata_max_bytes: 4096,
            offsets_commit_timeout_ms: 5000,
            group_initial_rebalance_delay_ms: 3000,
            group_min_session_timeout_ms: 6000,
            group_max_session_timeout_ms: 1_800_000,
            log_message_timestamp_type: TimestampType::CreateTime,
            log_message_timestamp_before_max_ms: i64::MAX,
            log_message_timestamp_after_max_ms: 3_600_000,
            replication_listener: Endpoint {
                host: "127.0.0.1".into(),
                port: 0,
            },
            admin_listener: Endpoint {
                host: "127.0.0.1".into(),
                port: 0,
            },
            replica_fetch_max_bytes: 1_048_576,
            replica_fetch_response_max_bytes: 10_485_760,
            replica_fetch_wait_max_ms: 500,
            replica_fetch_backoff_ms: 1000,
            replica_lag_time_max_ms: 30_000,
        }
    }
}

/// Every key the broker accepts, in one place. The env name of each is derived by
/// [`env_name`] (`log.dirs` → `GREGOR_LOG_DIRS`).
pub const KEYS: &[&str] = &[
    "node.id",
    "listeners",
    "advertised.listeners",
    "listener.security.protocol.map",
    "inter.broker.listener.name",
    "log.dirs",
    "log.dir",
    "num.partitions",
    "auto.create.topics.enable",
    "default.replication.factor",
    "delete.topic.enable",
    "socket.request.max.bytes",
    "connections.max.idle.ms",
    "log.retention.ms",
    "log.retention.bytes",
    "log.segment.bytes",
    "log.roll.ms",
    "log.index.interval.bytes",
    "log.flush.interval.messages",
    "log.flush.interval.ms",
    "log.retention.check.interval.ms",
    "message.max.bytes",
    "min.insync.replicas",
    "offsets.topic.num.partitions",
    "offsets.topic.replication.factor",
    "offset.metadata.max.bytes",
    "offsets.commit.timeout.ms",
    "group.initial.rebalance.delay.ms",
    "group.min.session.timeout.ms",
    "group.max.session.timeout.ms",
    "log.message.timestamp.type",
    "log.message.timestamp.before.max.ms",
    "log.message.timestamp.after.max.ms",
    "replication.listener",
    "admin.listener",
    "replica.fetch.max.bytes",
    "replica.fetch.response.max.bytes",
    "replica.fetch.wait.max.ms",
    "replica.fetch.backoff.ms",
    "replica.lag.time.max.ms",
];

/// Parses a `message.timestamp.type` value. Kafka accepts exactly these two spellings.
pub fn parse_timestamp_type(value: &str) -> Result<TimestampType, String> {
    match value {
        "CreateTime" => Ok(TimestampType::CreateTime),
        "LogAppendTime" => Ok(TimestampType::LogAppendTime),
        other => Err(format!(
            "{other:?} is not a timestamp type; use CreateTime or LogAppendTime"
        )),
    }
}

/// Kafka's spelling of a timestamp type.
pub fn timestamp_type_name(t: TimestampType) -> &'static str {
    match t {
        TimestampType::CreateTime => "CreateTime",
        TimestampType::LogAppendTime => "LogAppendTime",
    }
}

impl BrokerConfig {
    /// Builds the configuration from all layers and validates it.
    ///
    /// `file` is the TOML file (if any), `env` the process environment (passed in so tests need
    /// no global state; only the names from [`KEYS`] via [`env_name`] are read), `overrides`
    /// the CLI's `(kafka key, value)` pairs.
    pub fn load(
        file: Option<&Path>,
        env: &HashMap<String, String>,
        overrides: &[(String, String)],
    ) -> Result<BrokerConfig, ConfigError> {
        let mut config = BrokerConfig::default();
        if let Some(path) = file {
            let origin = path.display().to_string();
            for (key, value) in read_toml_file(path)? {
                config.set(&key, &value, &origin)?;
            }
        }
        for key in KEYS {
            if let Some(value) = env.get(&env_name(key)) {
                config.set(key, value, &env_name(key))?;
            }
        }
        for (key, value) in overrides {
            config.set(key, value, "command line")?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Sets one property by its Kafka name. `origin` names the layer for error messages.
    pub fn set(&mut self, key: &str, value: &str, origin: &str) -> Result<(), ConfigError> {
        let bad = |v: &str, reason: String| ConfigError::BadValue {
            key: key.to_string(),
            value: v.to_string(),
            origin: origin.to_string(),
            reason,
        };
        #[allow(unused_variables)] // single-address keys (replication.listener) use it
        let listener = |v: &str| Endpoint::parse_listener(v).map_err(|reason| bad(v, reason));
        let listeners = |v: &str| parse_listeners(v).map_err(|reason| bad(v, reason));
        match key {
            "node.id" => self.node_id = parse(key, value, origin)?,
            "listeners" => {
                let mut all = listeners(value)?.into_iter();
                if let Some(first) = all.next() {
                    self.listener = first.endpoint;
                    self.listener_name = first.name;
                }
                self.extra_listeners = all.collect();
            }
            "advertised.listeners" => self.advertised_listeners = listeners(value)?,
            "listener.security.protocol.map" => {
                self.listener_security_protocol_map =
                    parse_protocol_map(value).map_err(|reason| bad(value, reason))?
            }
            "inter.broker.listener.name" => {
                self.inter_broker_listener_name = Some(value.trim().to_ascii_uppercase())
            }
            "log.dirs" | "log.dir" => {
                if value.contains(',') {
                    return Err(ConfigError::BadValue {
                        key: key.to_string(),
                        value: value.to_string(),
                        origin: origin.to_string(),
                        reason: "only one log directory is supported".into(),
                    });
                }
                self.log_dir = PathBuf::from(value.trim());
            }
            "num.partitions" => self.num_partitions = parse(key, value, origin)?,
            "auto.create.topics.enable" => {
                self.auto_create_topics_enable = parse(key, value, origin)?
            }
            "default.replication.factor" => {
                self.default_replication_factor = parse(key, value, origin)?
            }
            "delete.topic.enable" => self.delete_topic_enable = parse(key, value, origin)?,
            "socket.request.max.bytes" => {
                self.socket_request_max_bytes = parse(key, value, origin)?
            }
            "connections.max.idle.ms" => self.connections_max_idle_ms = parse(key, value, origin)?,
            "log.retention.ms" => self.log_retention_ms = parse(key, value, origin)?,
            "log.retention.bytes" => self.log_retention_bytes = parse(key, value, origin)?,
            "log.segment.bytes" => self.log_segment_bytes = parse(key, value, origin)?,
            "log.roll.ms" => self.log_roll_ms = parse(key, value, origin)?,
            "log.index.interval.bytes" => {
                self.log_index_interval_bytes = parse(key, value, origin)?
            }
            "log.flush.interval.messages" => {
                self.log_flush_interval_messages = parse(key, value, origin)?
            }
            "log.flush.interval.ms" => self.log_flush_interval_ms = parse(key, value, origin)?,
            "log.retention.check.interval.ms" => {
                self.log_retention_check_interval_ms = parse(key, value, origin)?
            }
            "message.max.bytes" => self.message_max_bytes = parse(key, value, origin)?,
            "min.insync.replicas" => self.min_insync_replicas = parse(key, value, origin)?,
            "offsets.topic.num.partitions" => {
                self.offsets_topic_num_partitions = parse(key, value, origin)?
            }
            "offsets.topic.replication.factor" => {
                self.offsets_topic_replication_factor = parse(key, value, origin)?
            }
            "offset.metadata.max.bytes" => {
                self.offset_metadata_max_bytes = parse(key, value, origin)?
            }
            "offsets.commit.timeout.ms" => {
                self.offsets_commit_timeout_ms = parse(key, value, origin)?
            }
            "group.initial.rebalance.delay.ms" => {
                self.group_initial_rebalance_delay_ms = parse(key, value, origin)?
            }
            "group.min.session.timeout.ms" => {
                self.group_min_session_timeout_ms = parse(key, value, origin)?
            }
            "group.max.session.timeout.ms" => {
                self.group_max_session_timeout_ms = parse(key, value, origin)?
            }
            "log.message.timestamp.type" => {
                self.log_message_timestamp_type =
                    parse_timestamp_type(value.trim()).map_err(|reason| ConfigError::BadValue {
                        key: key.to_string(),
                        value: value.to_string(),
                        origin: origin.to_string(),
                        reason,
                    })?
            }
            "log.message.timestamp.before.max.ms" => {
                self.log_message_timestamp_before_max_ms = parse(key, value, origin)?
            }
            "log.message.timestamp.after.max.ms" => {
                self.log_message_timestamp_after_max_ms = parse(key, value, origin)?
            }
            "replication.listener" => self.replication_listener = listener(value)?,
            "admin.listener" => self.admin_listener = listener(value)?,
            "replica.fetch.max.bytes" => self.replica_fetch_max_bytes = parse(key, value, origin)?,
            "replica.fetch.response.max.bytes" => {
                self.replica_fetch_response_max_bytes = parse(key, value, origin)?
            }
            "replica.fetch.wait.max.ms" => {
                self.replica_fetch_wait_max_ms = parse(key, value, origin)?
            }
            "replica.fetch.backoff.ms" => {
                self.replica_fetch_backoff_ms = parse(key, value, origin)?
            }
            "replica.lag.time.max.ms" => self.replica_lag_time_max_ms = parse(key, value, origin)?,
            _ => {
                return Err(ConfigError::UnknownKey {
                    key: key.to_string(),
                    origin: origin.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Checks every value once, after all layers are applied.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn check(
            ok: bool,
            key: &'static str,
            reason: impl FnOnce() -> String,
        ) -> Result<(), ConfigError> {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::Invalid {
                    key,
                    reason: reason(),
                })
            }
        }
        check(self.node_id >= 0, "node.id", || "must be >= 0".into())?;
        check(!self.log_dir.as_os_str().is_empty(), "log.dirs", || {
            "must not be empty".into()
        })?;
        check(self.num_partitions >= 1, "num.partitions", || {
            "must be >= 1".into()
        })?;
        check(
            self.default_replication_factor == 1,
            "default.replication.factor",
            || {
                format!(
                    "is {}, but a single node supports only 1",
                    self.default_replication_factor
                )
            },
        )?;
        check(
            self.socket_request_max_bytes >= 1,
            "socket.request.max.bytes",
            || "must be >= 1".into(),
        )?;
        check(
            self.connections_max_idle_ms >= 1,
            "connections.max.idle.ms",
            || "must be >= 1".into(),
        )?;
        check(self.log_retention_ms >= -1, "log.retention.ms", || {
            "must be >= -1".into()
        })?;
        check(
            self.log_retention_bytes >= -1,
            "log.retention.bytes",
            || "must be >= -1".into(),
        )?;
        check(
            self.log_segment_bytes >= 14 && self.log_segment_bytes <= i32::MAX as i64,
            "log.segment.bytes",
            || "must be in [14, 2147483647]".into(),
        )?;
        check(self.log_roll_ms >= 1, "log.roll.ms", || {
            "must be >= 1".into()
        })?;
        check(
            self.log_index_interval_bytes >= 0,
            "log.index.interval.bytes",
            || "must be >= 0".into(),
        )?;
        check(
            self.log_flush_interval_messages >= 1,
            "log.flush.interval.messages",
            || "must be >= 1".into(),
        )?;
        check(
            self.log_flush_interval_ms >= 0,
            "log.flush.interval.ms",
            || "must be >= 0".into(),
        )?;
        check(
            self.log_retention_check_interval_ms >= 1,
            "log.retention.check.interval.ms",
            || "must be >= 1".into(),
        )?;
        check(self.message_max_bytes >= 0, "message.max.bytes", || {
            "must be >= 0".into()
        })?;
        check(self.min_insync_replicas >= 1, "min.insync.replicas", || {
            "must be >= 1".into()
        })?;
        check(
            self.replica_fetch_max_bytes >= 0,
            "replica.fetch.max.bytes",
            || "must be >= 0".into(),
        )?;
        check(
            self.replica_fetch_response_max_bytes >= 0,
            "replica.fetch.response.max.bytes",
            || "must be >= 0".into(),
        )?;
        check(
            self.replica_fetch_backoff_ms >= 0,
            "replica.fetch.backoff.ms",
            || "must be >= 0".into(),
        )?;
        check(
            self.replica_lag_time_max_ms >= 1,
            "replica.lag.time.max.ms",
            || "must be >= 1".into(),
        )?;
        // A follower that waits in a long poll is not lagging; the wait must fit in the lag bound
        // (Kafka requires the same of its fetcher).
        check(
            self.replica_fetch_wait_max_ms >= 0
                && i64::from(self.replica_fetch_wait_max_ms) < self.replica_lag_time_max_ms,
            "replica.fetch.wait.max.ms",
            || {
                format!(
                    "must be >= 0 and below replica.lag.time.max.ms ({})",
                    self.replica_lag_time_max_ms
                )
            },
        )?;
        check(
            self.offsets_topic_num_partitions >= 1,
            "offsets.topic.num.partitions",
            || "must be >= 1".into(),
        )?;
        check(
            self.offsets_topic_replication_factor >= 1,
            "offsets.topic.replication.factor",
            || "must be >= 1".into(),
        )?;
        check(
            self.offset_metadata_max_bytes >= 0,
            "offset.metadata.max.bytes",
            || "must be >= 0".into(),
        )?;
        check(
            self.offsets_commit_timeout_ms >= 1,
            "offsets.commit.timeout.ms",
            || "must be >= 1".into(),
        )?;
        check(
            self.group_initial_rebalance_delay_ms >= 0,
            "group.initial.rebalance.delay.ms",
            || "must be >= 0".into(),
        )?;
        check(
            self.group_min_session_timeout_ms >= 0
                && self.group_min_session_timeout_ms <= self.group_max_session_timeout_ms,
            "group.min.session.timeout.ms",
            || "must be >= 0 and <= group.max.session.timeout.ms".into(),
        )?;
        check(
            self.log_message_timestamp_before_max_ms >= 0,
            "log.message.timestamp.before.max.ms",
            || "must be >= 0".into(),
        )?;
        check(
            self.log_message_timestamp_after_max_ms >= 0,
            "log.message.timestamp.after.max.ms",
            || "must be >= 0".into(),
        )?;
        self.validate_listeners()
    }

    /// Kafka's listener rules: every listener's name maps to a protocol (here: PLAINTEXT),
    /// advertised names are listener names with reachable hosts, the inter-broker name is a
    /// listener, and only the first listener may ask for port 0.
    fn validate_listeners(&self) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, reason: String| ConfigError::Invalid { key, reason };
        let names: Vec<&str> = self.listeners().map(|l| l.name).collect();
        for name in &names {
            match self
                .listener_security_protocol_map
                .iter()
                .find(|(n, _)| n == name)
            {
                Some((_, p)) if p == "PLAINTEXT" => {}
                Some((_, p)) => {
                    return Err(invalid(
                        "listener.security.protocol.map",
                        format!("listener {name} uses {p}; only PLAINTEXT is supported"),
                    ));
                }
                None => {
                    return Err(invalid(
                        "listener.security.protocol.map",
                        format!("has no entry for listener {name}"),
                    ));
                }
            }
        }
        for l in &self.extra_listeners {
            let advertised = self.advertised_listeners.iter().any(|a| a.name == l.name);
            if l.endpoint.port == 0 && !advertised {
                return Err(invalid(
                    "listeners",
                    format!(
                        "listener {} needs a fixed port or an advertised.listeners entry \
                         (only the first listener's port 0 is filled in at bind)",
                        l.name
                    ),
                ));
            }
        }
        for adv in &self.advertised_listeners {
            if !names.contains(&adv.name.as_str()) {
                return Err(invalid(
                    "advertised.listeners",
                    format!("{} is not a name in listeners", adv.name),
                ));
            }
            if adv.endpoint.host.is_empty() || adv.endpoint.host == "0.0.0.0" {
                return Err(invalid(
                    "advertised.listeners",
                    format!("{} must name a host clients can reach", adv.name),
                ));
            }
        }
        if let Some(name) = &self.inter_broker_listener_name
            && !names.contains(&name.as_str())
        {
            return Err(invalid(
                "inter.broker.listener.name",
                format!("{name} is not a name in listeners"),
            ));
        }
        Ok(())
    }

    /// Every listener as `(name, bind address)`, the first one first.
    pub fn listeners(&self) -> impl Iterator<Item = ListenerRef<'_>> {
        std::iter::once(ListenerRef {
            name: self.listener_name.as_str(),
            endpoint: &self.listener,
        })
        .chain(self.extra_listeners.iter().map(|l| ListenerRef {
            name: l.name.as_str(),
            endpoint: &l.endpoint,
        }))
    }

    /// What every listener advertises, by name, once the first listener is bound at `bound`:
    /// its `advertised.listeners` entry if any, else its own address with wildcards and port 0
    /// filled in from the bound address.
    pub fn advertised_endpoints(&self, bound: SocketAddr) -> Vec<Listener> {
        self.listeners()
            .enumerate()
            .map(|(i, l)| {
                let endpoint = match self.advertised_listeners.iter().find(|a| a.name == l.name) {
                    Some(adv) => adv.endpoint.clone(),
                    None => {
                        let port = if i == 0 {
                            bound.port()
                        } else {
                            l.endpoint.port
                        };
                        Endpoint {
                            host: advertised_host(&l.endpoint.host, bound),
                            port,
                        }
                    }
                };
                Listener {
                    name: l.name.to_string(),
                    endpoint,
                }
            })
            .collect()
    }

    /// The endpoint given to clients in Metadata and DescribeCluster, once the listener is
    /// bound: advertised listener if set, else the listener with the bound address filled in
    /// where it was a wildcard or port 0.
    ///
    /// With several listeners this is the inter-broker listener's (default: the first).
    pub fn advertised_endpoint(&self, bound: SocketAddr) -> Endpoint {
        let all = self.advertised_endpoints(bound);
        let wanted = self
            .inter_broker_listener_name
            .as_deref()
            .unwrap_or(self.listener_name.as_str());
        all.iter()
            .find(|l| l.name == wanted)
            .or(all.first())
            .map(|l| l.endpoint.clone())
            .unwrap_or_else(|| Endpoint {
                host: advertised_host(&self.listener.host, bound),
                port: bound.port(),
            })
    }
}

/// A borrowed view of one listener (see [`BrokerConfig::listeners`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerRef<'a> {
    /// The listener name.
    pub name: &'a str,
    /// Its bind address.
    pub endpoint: &'a Endpoint,
}

/// The host a listener bound to `host` advertises when `advertised.listeners` does not say: a
/// wildcard becomes the bound address, or `localhost` when that is a wildcard too.
fn advertised_host(host: &str, bound: SocketAddr) -> String {
    if host.is_empty() || host == "0.0.0.0" || host == "::" {
        if bound.ip().is_unspecified() {
            "localhost".to_string()
        } else {
            bound.ip().to_string()
        }
    } else {
        host.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `deploy/gregor.example.toml` documents every key with its default: it must load, change
    /// nothing, and name every key (`log.dir` is the one alias it may leave out).
    #[test]
    fn the_example_config_lists_every_key_with_its_default() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/gregor.example.toml");
        let loaded = BrokerConfig::load(Some(&path), &HashMap::new(), &[]).unwrap();
        assert_eq!(loaded, BrokerConfig::default());
        let text = std::fs::read_to_string(&path).unwrap();
        for key in KEYS.iter().filter(|k| **k != "log.dir") {
            assert!(
                text.contains(&format!("\"{key}\" =")),
                "{key} is missing from {path:?}"
            );
        }
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_kafkas() {
        let c = BrokerConfig::load(None, &HashMap::new(), &[]).unwrap();
        assert_eq!(c.socket_request_max_bytes, 104_857_600);
        assert_eq!(c.connections_max_idle_ms, 600_000);
        assert_eq!(c.message_max_bytes, 1_048_588);
        assert_eq!(c.num_partitions, 1);
        assert!(c.auto_create_topics_enable);
        assert_eq!(c.log_message_timestamp_type, TimestampType::CreateTime);
        assert_eq!(c.log_message_timestamp_before_max_ms, i64::MAX);
        assert_eq!(c.log_message_timestamp_after_max_ms, 3_600_000);
        assert_eq!(
            c.listener,
            Endpoint {
                host: String::new(),
                port: 9092
            }
        );
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gregor.toml");
        std::fs::write(
            &file,
            "\"num.partitions\" = 3\n\"log.retention.ms\" = 10\n[log]\ndirs = \"/from-file\"\nsegment.bytes = 2048\n",
        )
        .unwrap();
        let e = env(&[
            ("GREGOR_LOG_DIRS", "/from-env"),
            ("GREGOR_NUM_PARTITIONS", "5"),
            ("GREGOR_UNRELATED", "x"),
        ]);
        let flags = vec![("num.partitions".to_string(), "7".to_string())];
        let c = BrokerConfig::load(Some(&file), &e, &flags).unwrap();
        assert_eq!(c.num_partitions, 7, "flags beat env");
        assert_eq!(c.log_dir, PathBuf::from("/from-env"), "env beats file");
        assert_eq!(c.log_retention_ms, 10, "file beats defaults");
        assert_eq!(
            c.log_segment_bytes, 2048,
            "nested tables flatten to dotted keys"
        );
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gregor.toml");
        std::fs::write(&file, "\"no.such.key\" = 1\n").unwrap();
        assert!(matches!(
            BrokerConfig::load(Some(&file), &HashMap::new(), &[]),
            Err(ConfigError::UnknownKey { .. })
        ));
        std::fs::write(&file, "this is not toml = = =").unwrap();
        assert!(matches!(
            BrokerConfig::load(Some(&file), &HashMap::new(), &[]),
            Err(ConfigError::ParseFile { .. })
        ));
        let e = env(&[("GREGOR_NUM_PARTITIONS", "many")]);
        assert!(matches!(
            BrokerConfig::load(None, &e, &[]),
            Err(ConfigError::BadValue { .. })
        ));
        let e = env(&[("GREGOR_NUM_PARTITIONS", "0")]);
        assert!(matches!(
            BrokerConfig::load(None, &e, &[]),
            Err(ConfigError::Invalid {
                key: "num.partitions",
                ..
            })
        ));
        let e = env(&[("GREGOR_DEFAULT_REPLICATION_FACTOR", "3")]);
        assert!(BrokerConfig::load(None, &e, &[]).is_err());
        let e = env(&[("GREGOR_LOG_DIRS", "/a,/b")]);
        assert!(BrokerConfig::load(None, &e, &[]).is_err());
        let e = env(&[("GREGOR_LOG_MESSAGE_TIMESTAMP_TYPE", "createtime")]);
        assert!(matches!(
            BrokerConfig::load(None, &e, &[]),
            Err(ConfigError::BadValue { .. })
        ));
        let e = env(&[("GREGOR_LOG_MESSAGE_TIMESTAMP_AFTER_MAX_MS", "-1")]);
        assert!(matches!(
            BrokerConfig::load(None, &e, &[]),
            Err(ConfigError::Invalid { .. })
        ));
        // A follower's long poll must fit within the ISR lag bound.
        let flags = vec![
            ("replica.lag.time.max.ms".to_string(), "500".to_string()),
            ("replica.fetch.wait.max.ms".to_string(), "500".to_string()),
        ];
        assert!(matches!(
            BrokerConfig::load(None, &HashMap::new(), &flags),
            Err(ConfigError::Invalid {
                key: "replica.fetch.wait.max.ms",
                ..
            })
        ));
        let flags = vec![(
            "replication.listener".to_string(),
            "127.0.0.1:7001".to_string(),
        )];
        let c = BrokerConfig::load(None, &HashMap::new(), &flags).unwrap();
        assert_eq!(c.replication_listener.bind_addr(), "127.0.0.1:7001");
    }

    #[test]
    fn listeners_parse_and_advertise() {
        let l = Endpoint::parse_listener("PLAINTEXT://127.0.0.1:0").unwrap();
        assert_eq!(
            l,
            Endpoint {
                host: "127.0.0.1".into(),
                port: 0
            }
        );
        assert!(Endpoint::parse_listener("SSL://h:1").is_err());
        assert!(Endpoint::parse_listener("PLAINTEXT://a:1,PLAINTEXT://b:2").is_err());
        let mut c = BrokerConfig {
            listener: l,
            ..BrokerConfig::default()
        };
        let bound: SocketAddr = "127.0.0.1:4321".parse().unwrap();
        assert_eq!(
            c.advertised_endpoint(bound),
            Endpoint {
                host: "127.0.0.1".into(),
                port: 4321
            }
        );
        c.set(
            "advertised.listeners",
            "PLAINTEXT://broker.example:9092",
            "test",
        )
        .unwrap();
        assert_eq!(c.advertised_endpoint(bound).host, "broker.example");
    }

    /// Kafka's multi-listener setup (the compose file's): each listener advertises its own
    /// `advertised.listeners` entry; the first is the default and inter-broker listener.
    #[test]
    fn named_listeners_advertise_per_listener() {
        let flags: Vec<(String, String)> = [
            (
                "listeners",
                "INTERNAL://0.0.0.0:9092,external://0.0.0.0:19092",
            ),
            (
                "advertised.listeners",
                "INTERNAL://node-1:9092,EXTERNAL://127.0.0.1:19092",
            ),
            (
                "listener.security.protocol.map",
                "INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT",
            ),
            ("inter.broker.listener.name", "INTERNAL"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let c = BrokerConfig::load(None, &HashMap::new(), &flags).unwrap();
        assert_eq!(c.listener_name, "INTERNAL");
        assert_eq!(c.listener.port, 9092);
        let names: Vec<&str> = c.listeners().map(|l| l.name).collect();
        assert_eq!(names, ["INTERNAL", "EXTERNAL"], "names are upper-cased");
        let bound: SocketAddr = "0.0.0.0:9092".parse().unwrap();
        let adv = c.advertised_endpoints(bound);
        let find = |name: &str| {
            adv.iter()
                .find(|l| l.name == name)
                .unwrap()
                .endpoint
                .clone()
        };
        assert_eq!(find("INTERNAL").bind_addr(), "node-1:9092");
        assert_eq!(find("EXTERNAL").bind_addr(), "127.0.0.1:19092");
        assert_eq!(c.advertised_endpoint(bound).bind_addr(), "node-1:9092");

        // Without advertised entries each listener advertises its own address; the first
        // fills in its bound port.
        let flags = vec![
            (
                "listeners".to_string(),
                "A://127.0.0.1:0,B://127.0.0.2:7000".to_string(),
            ),
            (
                "listener.security.protocol.map".to_string(),
                "A:PLAINTEXT,B:PLAINTEXT".to_string(),
            ),
        ];
        let c = BrokerConfig::load(None, &HashMap::new(), &flags).unwrap();
        let adv = c.advertised_endpoints("127.0.0.1:4321".parse().unwrap());
        assert_eq!(adv[0].endpoint.bind_addr(), "127.0.0.1:4321");
        assert_eq!(adv[1].endpoint.bind_addr(), "127.0.0.2:7000");
    }

    #[test]
    fn listener_rules_are_kafkas() {
        let load = |pairs: &[(&str, &str)]| {
            let flags: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            BrokerConfig::load(None, &HashMap::new(), &flags)
        };
        // A name the protocol map does not know.
        assert!(matches!(
            load(&[("listeners", "INTERNAL://:9092")]),
            Err(ConfigError::Invalid {
                key: "listener.security.protocol.map",
                ..
            })
        ));
        // A protocol other than PLAINTEXT.
        assert!(load(&[("listeners", "SSL://:9093")]).is_err());
        // Duplicate names, an advertised name that is no listener, a bad inter-broker name.
        assert!(load(&[("listeners", "PLAINTEXT://:1,PLAINTEXT://:2")]).is_err());
        assert!(matches!(
            load(&[
                ("listeners", "PLAINTEXT://:9092"),
                ("advertised.listeners", "OTHER://h:1")
            ]),
            Err(ConfigError::Invalid {
                key: "advertised.listeners",
                ..
            })
        ));
        assert!(matches!(
            load(&[("inter.broker.listener.name", "NOPE")]),
            Err(ConfigError::Invalid {
                key: "inter.broker.listener.name",
                ..
            })
        ));
        // Only the first listener may ask for an ephemeral port it does not advertise.
        assert!(matches!(
            load(&[
                ("listeners", "PLAINTEXT://:0,B://:0"),
                (
                    "listener.security.protocol.map",
                    "PLAINTEXT:PLAINTEXT,B:PLAINTEXT"
                )
            ]),
            Err(ConfigError::Invalid {
                key: "listeners",
                ..
            })
        ));
        // The old single-listener spellings still work.
        let c = load(&[("listeners", "127.0.0.1:9092")]).unwrap();
        assert_eq!(c.listener_name, "PLAINTEXT");
        assert!(c.extra_listeners.is_empty());
    }

    #[test]
    fn every_key_is_settable() {
        for key in KEYS {
            let mut c = BrokerConfig::default();
            let value = match *key {
                "listeners"
                | "advertised.listeners"
                | "replication.listener"
                | "admin.listener" => "PLAINTEXT://h:1",
                "listener.security.protocol.map" => "PLAINTEXT:PLAINTEXT",
                "log.dirs" | "log.dir" => "/x",
                "auto.create.topics.enable" | "delete.topic.enable" => "false",
                "log.message.timestamp.type" => "LogAppendTime",
                _ => "1",
            };
            c.set(key, value, "test")
                .unwrap_or_else(|e| panic!("{key}: {e}"));
        }
    }
}
