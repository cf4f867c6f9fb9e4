//! Controller configuration with Kafka's property names, layered and validated once, and
//! [`run`]: a controller process from configuration to shutdown.
//!
//! Precedence, lowest first, as for the broker (`gregor_broker::config`): built-in defaults <
//! TOML file (Kafka names as keys, nested tables flattened with dots) < `GREGOR_*` environment
//! variables (`GREGOR_CONTROLLER_QUORUM_VOTERS` for `controller.quorum.voters`) < explicit
//! overrides (the CLI's flags). Every layer goes through [`ControllerConfig::set`] and
//! [`ControllerConfig::validate`] runs once at the end. A file shared with the broker may hold
//! the broker's keys: the caller names them (`foreign_keys`) and they are skipped here, while
//! an unknown key is still an error.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `node.id` | 1 | this node's id; a controller must be one of the voters |
//! | `process.roles` | `broker,controller` | `broker`, `controller` or `broker,controller` |
//! | `controller.quorum.voters` | unset: this node alone | the static voter set, `id@host:port,...`; the addresses peers, brokers and tools connect to. Unset, the node is the only voter and uses its bound controller address; a broker-only process must set it |
//! | `controller.listener` | this node's voter address; `127.0.0.1:0` when the voters are unset | the controller's bind address, `host:port` or `CONTROLLER://host:port` |
//! | `metadata.log.dir` | `<log.dirs>/metadata` (filled in by the process, which knows `log.dirs`) | `meta.properties` and the Raft store |
//! | `cluster.id` | none | required to format a fresh multi-voter quorum; checked against `meta.properties` |
//! | `broker.heartbeat.interval.ms` | 200 | how often brokers heartbeat |
//! | `broker.session.timeout.ms` | 900 | a broker silent this long is fenced |

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cluster_id::{ClusterId, read_cluster_id};
pub use gregor_config::{ConfigError, env_name, read_toml_file};
use gregor_config::{bad_value, parse};

use crate::error::ControllerError;
use crate::node::{ControllerNode, NodeConfig};
use crate::planner::{DEFAULT_HEARTBEAT_INTERVAL_MS, DEFAULT_SESSION_TIMEOUT_MS};
use crate::raft_types::NodeId;

/// Which roles this process runs (`process.roles`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessRoles {
    /// Serves Kafka clients.
    pub broker: bool,
    /// Is a voter of the controller quorum.
    pub controller: bool,
}

impl ProcessRoles {
    fn parse(value: &str) -> Result<Self, String> {
        let mut roles = ProcessRoles {
            broker: false,
            controller: false,
        };
        for role in value.split(',').map(str::trim) {
            let slot = match role {
                "broker" => &mut roles.broker,
                "controller" => &mut roles.controller,
                other => return Err(format!("unknown role {other:?} (broker, controller)")),
            };
            if *slot {
                return Err(format!("role {role} given twice"));
            }
            *slot = true;
        }
        Ok(roles)
    }
}

/// Controller settings. Field docs give the property name and default.
#[derive(Debug, Clone, PartialEq)]
pub struct ControllerConfig {
    /// `node.id` (default 1).
    pub node_id: NodeId,
    /// `process.roles` (default `broker,controller`).
    pub process_roles: ProcessRoles,
    /// `controller.quorum.voters`: id → `host:port`. Empty (the default) means "unset": this
    /// node is the only voter, at the address its controller listener binds.
    pub quorum_voters: BTreeMap<NodeId, String>,
    /// `controller.listener`: bind address (default: this node's voter address, or
    /// [`SINGLE_VOTER_LISTENER`] when the voters are unset).
    pub listener: Option<String>,
    /// `metadata.log.dir` (default: `<log.dirs>/metadata`, set by the process that knows
    /// `log.dirs`; [`start`] refuses to run without one).
    pub metadata_log_dir: Option<PathBuf>,
    /// `cluster.id` (no default; see [`resolve_cluster_id`]).
    pub cluster_id: Option<ClusterId>,
    /// `broker.heartbeat.interval.ms` (default 200).
    pub broker_heartbeat_interval_ms: u64,
    /// `broker.session.timeout.ms` (default 900).
    pub broker_session_timeout_ms: u64,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            node_id: 1,
            process_roles: ProcessRoles {
                broker: true,
                controller: true,
            },
            quorum_voters: BTreeMap::new(),
            listener: None,
            metadata_log_dir: None,
            cluster_id: None,
            broker_heartbeat_interval_ms: DEFAULT_HEARTBEAT_INTERVAL_MS,
            broker_session_timeout_ms: DEFAULT_SESSION_TIMEOUT_MS,
        }
    }
}

/// The controller's bind address when `controller.quorum.voters` is unset: loopback, any free
/// port (the single voter's address is whatever it bound).
pub const SINGLE_VOTER_LISTENER: &str = "127.0.0.1:0";

/// Every key this configuration accepts.
pub const KEYS: &[&str] = &[
    "node.id",
    "process.roles",
    "controller.quorum.voters",
    "controller.listener",
    "metadata.log.dir",
    "cluster.id",
    "broker.heartbeat.interval.ms",
    "broker.session.timeout.ms",
];

/// Parses `controller.quorum.voters`: `id@host:port[,id@host:port...]`.
pub fn parse_voters(value: &str) -> Result<BTreeMap<NodeId, String>, String> {
    let mut voters = BTreeMap::new();
    for entry in value.split(',').map(str::trim) {
        let (id, addr) = entry
            .split_once('@')
            .ok_or_else(|| format!("{entry:?} is not id@host:port"))?;
        let id: NodeId = id
            .trim()
            .parse()
            .map_err(|e| format!("voter id {id:?}: {e}"))?;
        let addr = parse_host_port(addr)?;
        if voters.insert(id, addr).is_some() {
            return Err(format!("voter {id} is listed twice"));
        }
    }
    Ok(voters)
}

/// `host:port` or `CONTROLLER://host:port`, with a non-empty host and a numeric port.
fn parse_host_port(value: &str) -> Result<String, String> {
    let value = value.trim();
    let rest = match value.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("CONTROLLER") => rest,
        Some((scheme, _)) => return Err(format!("scheme {scheme} (only CONTROLLER://)")),
        None => value,
    };
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| format!("{value:?} is not host:port"))?;
    if host.is_empty() {
        return Err(format!("{value:?} has no host"));
    }
    port.parse::<u16>()
        .map_err(|e| format!("port {port:?}: {e}"))?;
    Ok(rest.to_owned())
}

impl ControllerConfig {
    /// Builds the configuration from all layers and validates it.
    ///
    /// `file` is the TOML file (if any), `env` the process environment (only [`env_name`] of
    /// [`KEYS`] is read), `overrides` the CLI's `(kafka key, value)` pairs, and `foreign_keys`
    /// the keys another role of the process owns (skipped here).
    pub fn load(
        file: Option<&Path>,
        env: &HashMap<String, String>,
        overrides: &[(String, String)],
        foreign_keys: &[&str],
    ) -> Result<Self, ConfigError> {
        let mut config = Self::default();
        let file_pairs = match file {
            Some(path) => read_toml_file(path)?,
            None => Vec::new(),
        };
        let origin = file.map(|p| p.display().to_string()).unwrap_or_default();
        let ours = |key: &str| KEYS.contains(&key) || !foreign_keys.contains(&key);
        for (key, value) in file_pairs.iter().filter(|(k, _)| ours(k)) {
            config.set(key, value, &origin)?;
        }
        for key in KEYS {
            if let Some(value) = env.get(&env_name(key)) {
                config.set(key, value, &env_name(key))?;
            }
        }
        for (key, value) in overrides.iter().filter(|(k, _)| ours(k)) {
            config.set(key, value, "command line")?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Sets one property by its Kafka name. `origin` names the layer for error messages.
    pub fn set(&mut self, key: &str, value: &str, origin: &str) -> Result<(), ConfigError> {
        match key {
            "node.id" => self.node_id = parse(key, value, origin)?,
            "process.roles" => {
                self.process_roles =
                    ProcessRoles::parse(value).map_err(|r| bad_value(key, value, origin, r))?;
            }
            "controller.quorum.voters" => {
                self.quorum_voters =
                    parse_voters(value).map_err(|r| bad_value(key, value, origin, r))?;
            }
            "controller.listener" => {
                self.listener =
                    Some(parse_host_port(value).map_err(|r| bad_value(key, value, origin, r))?);
            }
            "metadata.log.dir" => self.metadata_log_dir = Some(PathBuf::from(value.trim())),
            "cluster.id" => {
                self.cluster_id = Some(
                    ClusterId::new(value.trim())
                        .map_err(|e| bad_value(key, value, origin, e.to_string()))?,
                );
            }
            "broker.heartbeat.interval.ms" => {
                self.broker_heartbeat_interval_ms = parse(key, value, origin)?;
            }
            "broker.session.timeout.ms" => {
                self.broker_session_timeout_ms = parse(key, value, origin)?;
            }
            _ => {
                return Err(ConfigError::UnknownKey {
                    key: key.to_owned(),
                    origin: origin.to_owned(),
                });
            }
        }
        Ok(())
    }

    /// Checks the values once, after all layers are applied. The quorum settings are only
    /// checked when this process runs the controller role.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: String| Err(ConfigError::Invalid { key, reason });
        if !self.process_roles.broker && !self.process_roles.controller {
            return invalid("process.roles", "must name at least one role".into());
        }
        if self.broker_heartbeat_interval_ms == 0 {
            return invalid("broker.heartbeat.interval.ms", "must be >= 1".into());
        }
        if self.broker_session_timeout_ms <= self.broker_heartbeat_interval_ms {
            return invalid(
                "broker.session.timeout.ms",
                format!(
                    "{} must exceed broker.heartbeat.interval.ms ({})",
                    self.broker_session_timeout_ms, self.broker_heartbeat_interval_ms
                ),
            );
        }
        if !self.process_roles.controller {
            if self.quorum_voters.is_empty() {
                return invalid(
                    "controller.quorum.voters",
                    "a broker-only process must name the controller quorum".into(),
                );
            }
            return Ok(());
        }
        if !self.quorum_voters.is_empty() && !self.quorum_voters.contains_key(&self.node_id) {
            return invalid(
                "controller.quorum.voters",
                format!(
                    "node.id {} is not one of the voters {:?}",
                    self.node_id,
                    self.quorum_voters.keys().collect::<Vec<_>>()
                ),
            );
        }
        if self
            .metadata_log_dir
            .as_ref()
            .is_some_and(|d| d.as_os_str().is_empty())
        {
            return invalid("metadata.log.dir", "must not be empty".into());
        }
        Ok(())
    }

    /// The address the controller binds: `controller.listener`, else its own voter address,
    /// else (voters unset) [`SINGLE_VOTER_LISTENER`].
    pub fn bind_address(&self) -> &str {
        self.listener
            .as_deref()
            .or_else(|| self.quorum_voters.get(&self.node_id).map(String::as_str))
            .unwrap_or(SINGLE_VOTER_LISTENER)
    }

    /// Whether this node bootstraps the quorum: the lowest voter id, or the single voter when
    /// the voters are unset (see [`start`]).
    pub fn is_bootstrap_voter(&self) -> bool {
        self.quorum_voters.is_empty() || self.quorum_voters.keys().next() == Some(&self.node_id)
    }

    /// The metadata directory, or an error when the process did not set one.
    pub fn metadata_dir(&self) -> Result<&Path, ControllerError> {
        self.metadata_log_dir
            .as_deref()
            .ok_or_else(|| ControllerError::InvalidConfig("metadata.log.dir is not set".into()))
    }
}

/// The cluster id to run with:
///
/// 1. an existing `meta.properties` in `metadata.log.dir` wins (a configured `cluster.id` must
///    match it);
/// 2. else the configured `cluster.id` (the directory is formatted with it);
/// 3. else, for a single-voter quorum only, a new random id;
/// 4. else an error: the voters of a fresh multi-voter quorum must agree on one id, so it has
///    to be configured (like `kafka-storage format --cluster-id`).
pub fn resolve_cluster_id(config: &ControllerConfig) -> Result<ClusterId, ControllerError> {
    let dir = config.metadata_dir()?;
    match (read_cluster_id(dir)?, &config.cluster_id) {
        (Some(found), Some(configured)) if &found != configured => {
            Err(ControllerError::ClusterIdMismatch {
                expected: configured.to_string(),
                found: found.to_string(),
            })
        }
        (Some(found), _) => Ok(found),
        (None, Some(configured)) => Ok(configured.clone()),
        (None, None) if config.quorum_voters.len() <= 1 => Ok(ClusterId::random()),
        (None, None) => Err(ControllerError::InvalidConfig(format!(
            "{} is not formatted and cluster.id is not set: a fresh quorum of {} voters needs the \
             same cluster.id on every voter",
            dir.display(),
            config.quorum_voters.len()
        ))),
    }
}

/// Starts the controller role: resolves the cluster id, formats or verifies
/// `metadata.log.dir`, opens the Raft store, binds the listener and serves until `shutdown`.
///
/// Bootstrap rule: only the lowest voter id calls openraft's `initialize` with the static voter
/// set, on every start; openraft accepts it only while that node's Raft state is pristine (no
/// vote, no log), so it takes effect exactly once, on a fresh cluster. The other voters never
/// initialize: they learn the membership from the first leader's log. A fresh cluster
/// therefore forms once the lowest voter and one other voter are up.
pub async fn start(
    config: &ControllerConfig,
    shutdown: CancellationToken,
) -> Result<ControllerNode, ControllerError> {
    if !config.process_roles.controller {
        return Err(ControllerError::InvalidConfig(
            "process.roles does not include controller".into(),
        ));
    }
    let cluster_id = resolve_cluster_id(config)?;
    let bind = config.bind_address().to_owned();
    let listener = TcpListener::bind(&bind)
        .await
        .map_err(|e| ControllerError::io(format!("binding the controller listener {bind}"), e))?;
    // Voters unset: this node alone, at the address it actually bound.
    let voters = if config.quorum_voters.is_empty() {
        let bound = listener
            .local_addr()
            .map_err(|e| ControllerError::io("reading the controller listener address", e))?;
        BTreeMap::from([(config.node_id, bound.to_string())])
    } else {
        config.quorum_voters.clone()
    };
    let node_config = NodeConfig {
        broker_session_timeout_ms: config.broker_session_timeout_ms,
        broker_disconnect_grace_ms: config.broker_heartbeat_interval_ms,
        initialize: config.is_bootstrap_voter(),
        ..NodeConfig::new(
            config.node_id,
            cluster_id,
            config.metadata_dir()?.to_path_buf(),
            voters,
        )
    };
    ControllerNode::start(node_config, listener, shutdown).await
}

/// Runs the controller role until `shutdown` is cancelled, then stops it cleanly.
pub async fn run(
    config: ControllerConfig,
    shutdown: CancellationToken,
) -> Result<(), ControllerError> {
    let node = start(&config, shutdown.clone()).await?;
    tracing::info!(
        node_id = node.id(),
        addr = %node.local_addr(),
        "controller serving"
    );
    shutdown.cancelled().await;
    node.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_are_a_combined_single_voter_node() {
        let c = ControllerConfig::load(None, &env(&[]), &[], &[]).unwrap();
        assert_eq!(c, ControllerConfig::default());
        assert!(c.process_roles.broker && c.process_roles.controller);
        assert!(c.quorum_voters.is_empty());
        assert_eq!(c.bind_address(), SINGLE_VOTER_LISTENER);
        assert!(c.is_bootstrap_voter());
        assert!(
            c.metadata_dir().is_err(),
            "the process fills it in from log.dirs"
        );
        // A broker-only process must be told where the quorum is.
        let broker_only = kv(&[("process.roles", "broker")]);
        assert!(matches!(
            ControllerConfig::load(None, &env(&[]), &broker_only, &[]),
            Err(ConfigError::Invalid {
                key: "controller.quorum.voters",
                ..
            })
        ));
    }

    #[test]
    fn layers_apply_in_order_file_env_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gregor.toml");
        std::fs::write(
            &file,
            "\"node.id\" = 2\n\"log.dirs\" = \"/data\"\n[process]\nroles = \"controller\"\n\
             [controller.quorum]\nvoters = [\"1@127.0.0.1:19093\", \"2@127.0.0.1:19094\"]\n\
             [broker.session.timeout]\nms = 5000\n",
        )
        .unwrap();
        let e = env(&[
            ("GREGOR_BROKER_SESSION_TIMEOUT_MS", "3000"),
            ("GREGOR_METADATA_LOG_DIR", "/env/meta"),
            ("GREGOR_LOG_DIRS", "/ignored"),
        ]);
        let o = kv(&[
            ("metadata.log.dir", "/cli/meta"),
            ("controller.listener", "CONTROLLER://127.0.0.1:29094"),
            ("listeners", "PLAINTEXT://127.0.0.1:9092"),
        ]);
        let c = ControllerConfig::load(Some(&file), &e, &o, &["log.dirs", "listeners"]).unwrap();
        assert_eq!(c.node_id, 2);
        assert!(c.process_roles.controller && !c.process_roles.broker);
        assert_eq!(c.quorum_voters.len(), 2);
        assert_eq!(c.quorum_voters[&2], "127.0.0.1:19094");
        assert_eq!(c.broker_session_timeout_ms, 3000);
        assert_eq!(c.metadata_log_dir, Some(PathBuf::from("/cli/meta")));
        assert_eq!(c.bind_address(), "127.0.0.1:29094");
        assert!(!c.is_bootstrap_voter());
    }

    #[test]
    fn bad_values_and_unknown_keys_are_refused() {
        let load = |o: &[(&str, &str)]| ControllerConfig::load(None, &env(&[]), &kv(o), &[]);
        assert!(matches!(
            load(&[("no.such.key", "1")]),
            Err(ConfigError::UnknownKey { .. })
        ));
        for (k, v) in [
            ("process.roles", "broker,zookeeper"),
            ("process.roles", "broker,broker"),
            ("controller.quorum.voters", "1@127.0.0.1"),
            ("controller.quorum.voters", "x@127.0.0.1:1"),
            ("controller.quorum.voters", "1@a:1,1@b:2"),
            ("controller.listener", "PLAINTEXT://127.0.0.1:1"),
            ("cluster.id", "has space"),
            ("node.id", "-1"),
        ] {
            assert!(
                matches!(load(&[(k, v)]), Err(ConfigError::BadValue { .. })),
                "{k}={v}"
            );
        }
        assert!(matches!(
            load(&[
                ("process.roles", "controller"),
                ("node.id", "4"),
                ("controller.quorum.voters", "1@h:1")
            ]),
            Err(ConfigError::Invalid {
                key: "controller.quorum.voters",
                ..
            })
        ));
        assert!(matches!(
            load(&[("broker.session.timeout.ms", "100")]),
            Err(ConfigError::Invalid {
                key: "broker.session.timeout.ms",
                ..
            })
        ));
        // A broker-only node need not be a voter.
        assert!(
            load(&[
                ("node.id", "4"),
                ("process.roles", "broker"),
                ("controller.quorum.voters", "1@h:1")
            ])
            .is_ok()
        );
    }

    #[test]
    fn cluster_id_comes_from_the_directory_then_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = ControllerConfig {
            metadata_log_dir: Some(dir.path().to_path_buf()),
            quorum_voters: parse_voters("1@h:1,2@h:2,3@h:3").unwrap(),
            ..ControllerConfig::default()
        };
        assert!(matches!(
            resolve_cluster_id(&c),
            Err(ControllerError::InvalidConfig(_))
        ));
        let a = ClusterId::new("cluster-a").unwrap();
        c.cluster_id = Some(a.clone());
        assert_eq!(resolve_cluster_id(&c).unwrap(), a);
        crate::cluster_id::format_or_verify(dir.path(), &a, 1).unwrap();
        c.cluster_id = None;
        assert_eq!(resolve_cluster_id(&c).unwrap(), a);
        c.cluster_id = Some(ClusterId::new("cluster-b").unwrap());
        assert!(matches!(
            resolve_cluster_id(&c),
            Err(ControllerError::ClusterIdMismatch { .. })
        ));
        // A fresh single voter may make one up.
        let fresh = tempfile::tempdir().unwrap();
        let single = ControllerConfig {
            metadata_log_dir: Some(fresh.path().to_path_buf()),
            ..ControllerConfig::default()
        };
        assert!(resolve_cluster_id(&single).is_ok());
    }
}
