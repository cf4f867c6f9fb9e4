//! Per-topic configuration: which Kafka topic configs the broker accepts, how each is validated,
//! and the effective value (override or broker default) shown by DescribeConfigs.

use std::collections::BTreeMap;

use crate::config::BrokerConfig;
use crate::error::BrokerError;

/// The value type of a topic config, as DescribeConfigs v3+ reports it (`ConfigType` in Kafka).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigKind {
    /// Kafka `STRING` (type id 2).
    String,
    /// Kafka `INT` (type id 3).
    Int,
    /// Kafka `LONG` (type id 5).
    Long,
    /// Kafka `LIST` (type id 7).
    List,
}

impl ConfigKind {
    /// The id DescribeConfigs puts in `config_type`.
    pub fn type_id(self) -> i8 {
        match self {
            ConfigKind::String => 2,
            ConfigKind::Int => 3,
            ConfigKind::Long => 5,
            ConfigKind::List => 7,
        }
    }
}

/// One supported topic config.
#[derive(Debug)]
pub struct TopicConfigDef {
    /// Kafka name.
    pub name: &'static str,
    /// Broker property that supplies the default.
    pub broker_key: &'static str,
    /// Value type.
    pub kind: ConfigKind,
    /// Documentation shown by DescribeConfigs v3+ when asked.
    pub doc: &'static str,
}

/// Every topic config the broker accepts; anything else is INVALID_CONFIG.
pub const TOPIC_CONFIGS: &[TopicConfigDef] = &[
    TopicConfigDef {
        name: "cleanup.policy",
        broker_key: "log.cleanup.policy",
        kind: ConfigKind::List,
        doc: "Retention policy for old segments; only \"delete\" is supported (no compaction).",
    },
    TopicConfigDef {
        name: "max.message.bytes",
        broker_key: "message.max.bytes",
        kind: ConfigKind::Int,
        doc: "Largest record batch size allowed by Kafka (after compression).",
    },
    TopicConfigDef {
        name: "message.timestamp.after.max.ms",
        broker_key: "log.message.timestamp.after.max.ms",
        kind: ConfigKind::Long,
        doc: "How far a CreateTime timestamp may be ahead of the broker's clock; later batches \
              are rejected with INVALID_TIMESTAMP.",
    },
    TopicConfigDef {
        name: "message.timestamp.before.max.ms",
        broker_key: "log.message.timestamp.before.max.ms",
        kind: ConfigKind::Long,
        doc: "How far a CreateTime timestamp may be behind the broker's clock; older batches \
              are rejected with INVALID_TIMESTAMP.",
    },
    TopicConfigDef {
        name: "message.timestamp.type",
        broker_key: "log.message.timestamp.type",
        kind: ConfigKind::String,
        doc: "CreateTime (keep the producer's timestamps) or LogAppendTime (the broker's clock \
              at append).",
    },
    TopicConfigDef {
        name: "min.insync.replicas",
        broker_key: "min.insync.replicas",
        kind: ConfigKind::Int,
        doc: "Minimum in-sync replicas that must acknowledge a write with acks=all.",
    },
    TopicConfigDef {
        name: "retention.bytes",
        broker_key: "log.retention.bytes",
        kind: ConfigKind::Long,
        doc: "Maximum size a partition can grow to before old segments are deleted; -1 = no limit.",
    },
    TopicConfigDef {
        name: "retention.ms",
        broker_key: "log.retention.ms",
        kind: ConfigKind::Long,
        doc: "Maximum time a segment is kept before it is deleted; -1 = no limit.",
    },
    TopicConfigDef {
        name: "segment.bytes",
        broker_key: "log.segment.bytes",
        kind: ConfigKind::Int,
        doc: "Segment file size; a new segment is rolled when it is reached.",
    },
];

/// Looks up a supported topic config by name.
pub fn def(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Smallest `segment.bytes` Kafka 4 accepts (1 MiB).
pub const MIN_SEGMENT_BYTES: i64 = 1024 * 1024;

/// Checks one override; returns the normalized value to store.
pub fn validate(name: &str, value: Option<&str>) -> Result<String, BrokerError> {
    let invalid = |why: String| BrokerError::InvalidConfig(format!("{name}: {why}"));
    if def(name).is_none() {
        return Err(invalid("unknown or unsupported topic config".into()));
    }
    let value = value
        .ok_or_else(|| invalid("value must not be null".into()))?
        .trim();
    let int = |min: i64, max: i64| -> Result<String, BrokerError> {
        let v: i64 = value
            .parse()
            .map_err(|_| invalid(format!("{value:?} is not a number")))?;
        if v < min || v > max {
            return Err(invalid(format!("{v} is outside [{min}, {max}]")));
        }
        Ok(v.to_string())
    };
    match name {
        "cleanup.policy" => {
            let policies: Vec<&str> = value
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .collect();
            if policies.contains(&"compact") {
                return Err(invalid(
                    "log compaction (cleanup.policy=compact) is not supported".into(),
                ));
            }
            if policies != ["delete"] {
                return Err(invalid(format!(
                    "{value:?} is not a valid policy; only \"delete\""
                )));
            }
            Ok("delete".into())
        }
        "max.message.bytes" => int(0, i32::MAX as i64),
        "min.insync.replicas" => int(1, i32::MAX as i64),
        "message.timestamp.after.max.ms" | "message.timestamp.before.max.ms" => int(0, i64::MAX),
        "message.timestamp.type" => crate::config::parse_timestamp_type(value)
            .map(|t| crate::config::timestamp_type_name(t).to_string())
            .map_err(invalid),
        "retention.bytes" | "retention.ms" => int(-1, i64::MAX),
        "segment.bytes" => int(MIN_SEGMENT_BYTES, i32::MAX as i64),
        _ => Err(invalid("unsupported".into())),
    }
}

/// Validates a whole set of overrides (CreateTopics configs).
pub fn validate_all<'a>(
    entries: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
) -> Result<BTreeMap<String, String>, BrokerError> {
    let mut out = BTreeMap::new();
    for (name, value) in entries {
        let v = validate(name, value)?;
        if out.insert(name.to_string(), v).is_some() {
            return Err(BrokerError::InvalidConfig(format!("{name} given twice")));
        }
    }
    Ok(out)
}

/// The broker-level default for a topic config.
pub fn broker_default(config: &BrokerConfig, name: &str) -> String {
    match name {
        "cleanup.policy" => "delete".into(),
        "max.message.bytes" => config.message_max_bytes.to_string(),
        "min.insync.replicas" => config.min_insync_replicas.to_string(),
        "message.timestamp.after.max.ms" => config.log_message_timestamp_after_max_ms.to_string(),
        "message.timestamp.before.max.ms" => config.log_message_timestamp_before_max_ms.to_string(),
        "message.timestamp.type" => {
            crate::config::timestamp_type_name(config.log_message_timestamp_type).to_string()
        }
        "retention.bytes" => config.log_retention_bytes.to_string(),
        "retention.ms" => config.log_retention_ms.to_string(),
        "segment.bytes" => config.log_segment_bytes.to_string(),
        _ => String::new(),
    }
}

/// Whether the broker default differs from Kafka's own default (then DescribeConfigs reports
/// it as a static broker config rather than a default).
pub fn broker_default_is_static(config: &BrokerConfig, name: &str) -> bool {
    broker_default(config, name) != broker_default(&BrokerConfig::default(), name)
}

/// The effective numeric value of an integer topic config.
pub fn effective_i64(
    config: &BrokerConfig,
    overrides: &BTreeMap<String, String>,
    name: &str,
) -> i64 {
    overrides
        .get(name)
        .and_then(|v| v.parse().ok())
        .or_else(|| broker_default(config, name).parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_supported_configs() {
        assert_eq!(validate("retention.ms", Some("-1")).unwrap(), "-1");
        assert_eq!(validate("retention.bytes", Some(" 1024 ")).unwrap(), "1024");
        assert_eq!(
            validate("segment.bytes", Some("1048576")).unwrap(),
            "1048576"
        );
        assert_eq!(validate("min.insync.replicas", Some("2")).unwrap(), "2");
        assert_eq!(validate("max.message.bytes", Some("100")).unwrap(), "100");
        assert_eq!(
            validate("cleanup.policy", Some("delete")).unwrap(),
            "delete"
        );
        assert_eq!(
            validate("message.timestamp.type", Some("LogAppendTime")).unwrap(),
            "LogAppendTime"
        );
        assert_eq!(
            validate("message.timestamp.before.max.ms", Some("0")).unwrap(),
            "0"
        );
        assert_eq!(
            validate(
                "message.timestamp.after.max.ms",
                Some("9223372036854775807")
            )
            .unwrap(),
            "9223372036854775807"
        );
    }

    #[test]
    fn rejects_everything_else_as_invalid_config() {
        let cases: &[(&str, Option<&str>)] = &[
            ("cleanup.policy", Some("compact")),
            ("cleanup.policy", Some("delete,compact")),
            ("cleanup.policy", Some("shred")),
            ("retention.ms", Some("-2")),
            ("retention.ms", Some("soon")),
            ("segment.bytes", Some("100")),
            ("min.insync.replicas", Some("0")),
            ("max.message.bytes", Some("-5")),
            ("compression.type", Some("gzip")),
            ("message.timestamp.type", Some("logappendtime")),
            ("message.timestamp.after.max.ms", Some("-1")),
            ("message.timestamp.difference.max.ms", Some("1000")),
            ("retention.ms", None),
        ];
        for (k, v) in cases {
            let err = validate(k, *v).unwrap_err();
            assert!(
                matches!(err, BrokerError::InvalidConfig(_)),
                "{k}={v:?}: {err}"
            );
        }
        let msg = validate("cleanup.policy", Some("compact"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("compaction"), "{msg}");
    }

    #[test]
    fn effective_values_fall_back_to_broker_defaults() {
        let c = BrokerConfig {
            log_retention_ms: 5,
            ..BrokerConfig::default()
        };
        let mut o = BTreeMap::new();
        assert_eq!(effective_i64(&c, &o, "retention.ms"), 5);
        assert!(broker_default_is_static(&c, "retention.ms"));
        assert!(!broker_default_is_static(&c, "segment.bytes"));
        o.insert("retention.ms".into(), "9".into());
        assert_eq!(effective_i64(&c, &o, "retention.ms"), 9);
    }
}
