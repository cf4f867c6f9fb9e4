//! Errors of this crate.

/// Why a record payload is not one [`crate::encode_payload`] wrote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// Shorter than the fixed framing.
    #[error("payload of {len} bytes is shorter than the framing")]
    Short {
        /// Bytes received.
        len: usize,
    },
    /// The CRC-32C does not match the bytes.
    #[error("payload CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Crc {
        /// The CRC in the payload.
        stored: u32,
        /// The CRC of the bytes received.
        computed: u32,
    },
    /// The CRC matches but the magic is not ours (a record some other writer produced).
    #[error("payload magic is not GVv1")]
    Magic,
    /// The declared filler length disagrees with the payload size.
    #[error("payload declares {declared} filler bytes but carries {actual}")]
    Length {
        /// Filler length in the header.
        declared: usize,
        /// Filler bytes present.
        actual: usize,
    },
}

/// Reading or writing a JSON-Lines history failed.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The file could not be read or written.
    #[error("history file i/o")]
    Io(#[source] std::io::Error),
    /// A line is not a valid event.
    #[error("history line {line}: not a valid event")]
    Parse {
        /// 1-based line number.
        line: usize,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// An event could not be serialized.
    #[error("serialize an event")]
    Serialize(#[source] serde_json::Error),
}
