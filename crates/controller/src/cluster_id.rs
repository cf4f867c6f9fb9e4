//! Cluster identity: formatting a data directory once (like `kafka-storage format`) and refusing
//! to start on, or talk to, another cluster's data.

use std::fmt;
use std::io::Write;
use std::path::Path;

use crate::error::ControllerError;
use crate::raft_types::NodeId;

const META_FILE: &str = "meta.properties";
const META_VERSION: &str = "1";

/// A cluster id: 1 to 64 characters of `[A-Za-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClusterId(String);

impl ClusterId {
    /// Validates a configured cluster id.
    pub fn new(s: impl Into<String>) -> Result<Self, ControllerError> {
        let s = s.into();
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(s))
        } else {
            Err(ControllerError::InvalidConfig(format!(
                "cluster id {s:?} must be 1-64 characters of [A-Za-z0-9_-]"
            )))
        }
    }

    /// A fresh random id (for `gregor storage random-uuid`-style tooling and tests).
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Formats `dir` for (`cluster_id`, `node_id`) on first start; afterwards verifies it matches.
///
/// Returns `true` when the directory was formatted by this call.
pub fn format_or_verify(
    dir: &Path,
    cluster_id: &ClusterId,
    node_id: NodeId,
) -> Result<bool, ControllerError> {
    let path = dir.join(META_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let (found_cluster, found_node) = parse_meta(&text)?;
            if found_cluster != cluster_id.as_str() {
                return Err(ControllerError::ClusterIdMismatch {
                    expected: cluster_id.to_string(),
                    found: found_cluster,
                });
            }
            if found_node != node_id {
                return Err(ControllerError::NodeIdMismatch {
                    configured: node_id,
                    found: found_node,
                });
            }
            Ok(false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            write_meta(dir, cluster_id, node_id)?;
            Ok(true)
        }
        Err(e) => Err(ControllerError::io(
            format!("reading {}", path.display()),
            e,
        )),
    }
}

/// The cluster id `dir` was formatted with, or `None` when it is not formatted yet.
pub fn read_cluster_id(dir: &Path) -> Result<Option<ClusterId>, ControllerError> {
    let path = dir.join(META_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let (cluster, _) = parse_meta(&text)?;
            ClusterId::new(cluster).map(Some)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ControllerError::io(
            format!("reading {}", path.display()),
            e,
        )),
    }
}

fn parse_meta(text: &str) -> Result<(String, NodeId), ControllerError> {
    let malformed = |reason: String| ControllerError::MalformedMeta {
        file: META_FILE.into(),
        reason,
    };
    let mut version = None;
    let mut cluster = None;
    let mut node = None;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| malformed(format!("line {line:?} is not key=value")))?;
        match k.trim() {
            "version" => version = Some(v.trim().to_owned()),
            "cluster.id" => cluster = Some(v.trim().to_owned()),
            "node.id" => {
                node = Some(
                    v.trim()
                        .parse::<NodeId>()
                        .map_err(|e| malformed(format!("node.id: {e}")))?,
                )
            }
            _ => {}
        }
    }
    if version.as_deref() != Some(META_VERSION) {
        return Err(malformed(format!("unsupported version {version:?}")));
    }
    match (cluster, node) {
        (Some(c), Some(n)) => Ok((c, n)),
        _ => Err(malformed("cluster.id and node.id are required".into())),
    }
}

/// Writes the file atomically: temp file, fsync, rename, fsync of the directory.
fn write_meta(dir: &Path, cluster_id: &ClusterId, node_id: NodeId) -> Result<(), ControllerError> {
    let io = |what: &str, e| ControllerError::io(format!("{what} in {}", dir.display()), e);
    std::fs::create_dir_all(dir).map_err(|e| io("creating the data directory", e))?;
    let tmp = dir.join(format!("{META_FILE}.tmp"));
    let mut f = std::fs::File::create(&tmp).map_err(|e| io("creating meta.properties", e))?;
    let body = format!(
        "# Written by gregor when this directory was formatted. Do not edit.\nversion={META_VERSION}\ncluster.id={cluster_id}\nnode.id={node_id}\n"
    );
    f.write_all(body.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| io("writing meta.properties", e))?;
    std::fs::rename(&tmp, dir.join(META_FILE)).map_err(|e| io("renaming meta.properties", e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("syncing the data directory", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_once_then_verifies_and_refuses_another_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let a = ClusterId::new("cluster-a").unwrap();
        assert!(format_or_verify(dir.path(), &a, 1).unwrap());
        assert!(!format_or_verify(dir.path(), &a, 1).unwrap());
        let b = ClusterId::new("cluster-b").unwrap();
        assert!(matches!(
            format_or_verify(dir.path(), &b, 1),
            Err(ControllerError::ClusterIdMismatch { expected, found })
                if expected == "cluster-b" && found == "cluster-a"
        ));
        assert!(matches!(
            format_or_verify(dir.path(), &a, 2),
            Err(ControllerError::NodeIdMismatch {
                configured: 2,
                found: 1
            })
        ));
    }

    #[test]
    fn malformed_meta_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(META_FILE),
            "version=9\ncluster.id=x\nnode.id=1\n",
        )
        .unwrap();
        let a = ClusterId::new("x").unwrap();
        assert!(matches!(
            format_or_verify(dir.path(), &a, 1),
            Err(ControllerError::MalformedMeta { .. })
        ));
        std::fs::write(dir.path().join(META_FILE), "version=1\nnode.id=one\n").unwrap();
        assert!(matches!(
            format_or_verify(dir.path(), &a, 1),
            Err(ControllerError::MalformedMeta { .. })
        ));
    }

    #[test]
    fn cluster_ids_are_validated() {
        assert!(ClusterId::new("").is_err());
        assert!(ClusterId::new("a b").is_err());
        assert!(ClusterId::new("x".repeat(65)).is_err());
        assert!(ClusterId::new(ClusterId::random().as_str()).is_ok());
    }
}
