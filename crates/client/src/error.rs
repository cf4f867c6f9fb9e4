//! Client errors.

use kafka_protocol::ResponseError;

/// Everything that can go wrong talking to a Kafka-protocol broker.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The TCP connection could not be made or broke.
    #[error("{op} {addr}: {source}")]
    Io {
        /// What we were doing.
        op: &'static str,
        /// The broker address.
        addr: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The broker closed the connection instead of answering.
    #[error("{addr} closed the connection")]
    Closed {
        /// The broker address.
        addr: String,
    },
    /// A request could not be encoded or a response could not be decoded.
    #[error("codec: {0}")]
    Codec(String),
    /// The broker does not support any version of an API we need.
    #[error("the broker does not support {api} (we speak v{ours_min}-v{ours_max})")]
    Unsupported {
        /// The API name.
        api: String,
        /// Lowest version we speak.
        ours_min: i16,
        /// Highest version we speak.
        ours_max: i16,
    },
    /// The answer's correlation id did not match the request's.
    #[error("correlation id mismatch: sent {sent}, got {got}")]
    Correlation {
        /// What we sent.
        sent: i32,
        /// What came back.
        got: i32,
    },
    /// The broker answered with a Kafka error code.
    #[error("{}", display_kafka(*code, message.as_deref()))]
    Kafka {
        /// The Kafka error.
        code: ResponseError,
        /// The broker's message, when it sent one.
        message: Option<String>,
    },
    /// A response frame larger than the client accepts.
    #[error("response of {0} bytes is larger than the client accepts")]
    FrameTooLarge(usize),
    /// The request was malformed before it was sent (bad argument).
    #[error("{0}")]
    Invalid(String),
    /// No broker could be reached or no leader is known.
    #[error("{0}")]
    Unavailable(String),
    /// A client-side bound passed before the answer came (e.g. the idempotent producer's
    /// delivery timeout); the request's outcome is unknown.
    #[error("timed out: {0}")]
    TimedOut(String),
}

/// Renders a Kafka error the way Kafka's tools do: `NOT_ENOUGH_REPLICAS (19): message`.
pub fn display_kafka(code: ResponseError, message: Option<&str>) -> String {
    let name = screaming_snake(&format!("{code:?}"));
    match message {
        Some(m) if !m.is_empty() => format!("{name} ({}): {m}", code.code()),
        _ => format!("{name} ({}): {code}", code.code()),
    }
}

fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

impl ClientError {
    /// The error for a non-zero Kafka error code, `None` for 0.
    pub fn from_code(code: i16, message: Option<String>) -> Option<Self> {
        ResponseError::try_from_code(code).map(|code| Self::Kafka { code, message })
    }

    /// The Kafka error code, when the broker sent one.
    pub fn kafka_code(&self) -> Option<i16> {
        match self {
            Self::Kafka { code, .. } => Some(code.code()),
            _ => None,
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_errors_read_like_kafka() {
        let e = ClientError::from_code(19, Some("only 1 in sync".into())).unwrap();
        assert_eq!(e.to_string(), "NOT_ENOUGH_REPLICAS (19): only 1 in sync");
        let e = ClientError::from_code(3, None).unwrap();
        assert!(
            e.to_string()
                .starts_with("UNKNOWN_TOPIC_OR_PARTITION (3): "),
            "{e}"
        );
        assert!(ClientError::from_code(0, None).is_none());
    }
}
