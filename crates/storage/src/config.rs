//! Per-partition log configuration, named after Kafka's topic configs.

/// Which timestamp a batch carries once it is in the log (`message.timestamp.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampType {
    /// Keep the producer's timestamps (Kafka's default).
    #[default]
    CreateTime,
    /// Overwrite the batch's max timestamp with the broker's clock at append.
    LogAppendTime,
}

/// Configuration of one partition log. `Default` gives Kafka's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll the active segment before it grows past this size.
    pub segment_bytes: u64,
    /// `segment.ms`: roll once the incoming batch's max timestamp is this much later than the max
    /// timestamp of the segment's first batch.
    pub segment_ms: i64,
    /// `index.interval.bytes`: bytes of batches between two sparse index entries.
    pub index_interval_bytes: u32,
    /// `flush.messages`: fsync after this many appended records (`u64::MAX` = never).
    pub flush_messages: u64,
    /// `flush.ms`: fsync when the oldest unflushed append is this old (`i64::MAX` = never).
    pub flush_ms: i64,
    /// `retention.ms`: delete sealed segments whose newest timestamp is older (-1 = unlimited).
    pub retention_ms: i64,
    /// `retention.bytes`: delete the oldest sealed segments while the log is larger (-1 = unlimited).
    pub retention_bytes: i64,
    /// `max.message.bytes`: largest accepted batch.
    pub max_message_bytes: u32,
    /// `message.timestamp.type`.
    pub message_timestamp_type: TimestampType,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: 7 * 24 * 60 * 60 * 1000,
            index_interval_bytes: 4096,
            flush_messages: u64::MAX,
            flush_ms: i64::MAX,
            retention_ms: 7 * 24 * 60 * 60 * 1000,
            retention_bytes: -1,
            max_message_bytes: 1_048_588,
            message_timestamp_type: TimestampType::CreateTime,
        }
    }
}
