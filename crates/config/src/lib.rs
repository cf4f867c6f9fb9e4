//! The configuration rules every Gregor role shares, so the broker's and the controller's settings
//! layer the same way: defaults < TOML file < `GREGOR_*` environment < command-line overrides,
//! keyed by Kafka's property names and validated once by each role's config type.
//!
//! # Layout
//! - [`ConfigError`]: why a configuration was rejected, naming the key and the layer.
//! - [`env_name`]: `log.dirs` → `GREGOR_LOG_DIRS`.
//! - [`read_toml_file`]: a TOML file as `(dotted key, value)` pairs; `[log] dirs = ".."` and
//!   `"log.dirs" = ".."` mean the same.
//! - [`parse`] and [`bad_value`]: typed values with errors that say where they came from.

use std::path::{Path, PathBuf};

/// Why a configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No role knows the key.
    #[error("unknown config key {key:?} (from {origin})")]
    UnknownKey {
        /// The key as given.
        key: String,
        /// Which layer supplied it.
        origin: String,
    },
    /// The value does not parse as the key's type.
    #[error("config {key}: cannot parse {value:?} (from {origin}): {reason}")]
    BadValue {
        /// The key.
        key: String,
        /// The rejected value.
        value: String,
        /// Which layer supplied it.
        origin: String,
        /// What was expected.
        reason: String,
    },
    /// The values parse but do not make sense, alone or together.
    #[error("config {key}: {reason}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The config file could not be read.
    #[error("cannot read config file {path}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML.
    #[error("cannot parse config file {path}")]
    ParseFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: toml::de::Error,
    },
}

/// The environment variable that sets `key`: `GREGOR_` + upper case, dots to underscores.
pub fn env_name(key: &str) -> String {
    format!("GREGOR_{}", key.to_ascii_uppercase().replace('.', "_"))
}

/// Reads a TOML config file into `(dotted key, value)` pairs: nested tables are flattened with
/// dots, arrays joined with commas, strings taken as they are and other scalars in TOML syntax.
pub fn read_toml_file(path: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    let table: toml::Table = toml::from_str(&text).map_err(|source| ConfigError::ParseFile {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    flatten("", &table, &mut out);
    Ok(out)
}

fn flatten(prefix: &str, table: &toml::Table, out: &mut Vec<(String, String)>) {
    let text = |v: &toml::Value| match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => flatten(&key, t, out),
            toml::Value::Array(items) => {
                let joined: Vec<String> = items.iter().map(text).collect();
                out.push((key, joined.join(",")));
            }
            other => out.push((key, text(other))),
        }
    }
}

/// Parses `value` (trimmed) as `T`, naming the key and layer when it does not parse.
pub fn parse<T: std::str::FromStr>(key: &str, value: &str, origin: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    value
        .trim()
        .parse::<T>()
        .map_err(|e| bad_value(key, value, origin, e.to_string()))
}

/// A [`ConfigError::BadValue`] for `key` = `value` from `origin`.
pub fn bad_value(key: &str, value: &str, origin: &str, reason: String) -> ConfigError {
    ConfigError::BadValue {
        key: key.to_owned(),
        value: value.to_owned(),
        origin: origin.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_tables_and_dotted_keys_mean_the_same() {
        let dir = std::env::temp_dir().join(format!("gregor-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.toml");
        std::fs::write(&path, "\"log.dirs\" = \"/a\"\n[log.retention]\nms = 5\n[x]\nv = [\"1@h:1\", \"2@h:2\"]\nb = true\n").unwrap();
        let mut pairs = read_toml_file(&path).unwrap();
        pairs.sort();
        assert_eq!(
            pairs,
            [
                ("log.dirs".to_string(), "/a".to_string()),
                ("log.retention.ms".to_string(), "5".to_string()),
                ("x.b".to_string(), "true".to_string()),
                ("x.v".to_string(), "1@h:1,2@h:2".to_string()),
            ]
        );
        std::fs::write(&path, "not = [toml").unwrap();
        assert!(matches!(
            read_toml_file(&path),
            Err(ConfigError::ParseFile { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn values_parse_with_their_origin_named() {
        assert_eq!(env_name("log.retention.ms"), "GREGOR_LOG_RETENTION_MS");
        assert_eq!(parse::<i64>("k", " 42 ", "file").unwrap(), 42);
        let e = parse::<i32>("num.partitions", "many", "GREGOR_NUM_PARTITIONS").unwrap_err();
        assert_eq!(
            e.to_string(),
            "config num.partitions: cannot parse \"many\" (from GREGOR_NUM_PARTITIONS): invalid digit found in string"
        );
    }
}
