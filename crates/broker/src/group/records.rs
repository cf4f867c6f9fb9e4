//! The `__consumer_offsets` record formats, byte-compatible with Kafka's: keys and values of
//! `OffsetCommitKey`/`OffsetCommitValue` and `GroupMetadataKey`/`GroupMetadataValue`.
//!
//! kafka-protocol 0.18 does not generate these (they are coordinator records, not API
//! messages), so they are written by hand. Writes use the versions Kafka 3.x writes (offset key
//! v1, offset value v3, group key v2, group value v3). Reads accept offset values v0-v3 and group
//! values v0-v3; anything else (including the flexible v4 values of newer Kafka) is reported as
//! [`RecordError`] and skipped by the loader, never panicking on disk input.

use std::collections::BTreeSet;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ConsumerProtocolSubscription;
use kafka_protocol::protocol::Decodable;

use super::state::{CommittedOffset, StoredGroup, StoredMember};

/// Why a `__consumer_offsets` record could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The bytes end before the field does.
    #[error("record truncated while reading {0}")]
    Truncated(&'static str),
    /// A string that is not UTF-8.
    #[error("field {0} is not UTF-8")]
    Utf8(&'static str),
    /// A key or value version this broker does not read.
    #[error("unsupported {what} version {version}")]
    Version {
        /// Key or value kind.
        what: &'static str,
        /// The version found.
        version: i16,
    },
    /// A record without a key.
    #[error("record has no key")]
    NoKey,
}

/// A decoded `__consumer_offsets` key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    /// Committed offset of (group, topic, partition).
    Offset {
        /// Group.
        group: String,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
    },
    /// Metadata of a group.
    Group(String),
}

impl Key {
    /// The group the key belongs to.
    pub fn group(&self) -> &str {
        match self {
            Key::Offset { group, .. } | Key::Group(group) => group,
        }
    }
}

/// `abs(groupId.hashCode()) % partitions`, with Java's `String.hashCode` over UTF-16 units and
/// Kafka's `Utils.abs` (which maps `Integer.MIN_VALUE` to 0), so a group lands on the same
/// `__consumer_offsets` partition as it would in Kafka.
pub fn partition_for(group_id: &str, partitions: i32) -> i32 {
    let mut h: i32 = 0;
    for unit in group_id.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions.max(1)
}

fn put_str(buf: &mut BytesMut, s: &str) {
    // Kafka strings are at most i16::MAX bytes; group ids and topics are far below that.
    let len = s.len().min(i16::MAX as usize);
    buf.put_i16(len as i16);
    buf.put_slice(&s.as_bytes()[..len]);
}

fn put_nullable_str(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(buf, s),
        None => buf.put_i16(-1),
    }
}

fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    buf.put_i32(b.len() as i32);
    buf.put_slice(b);
}

/// `OffsetCommitKey` v1.
pub fn offset_key(group: &str, topic: &str, partition: i32) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(1);
    put_str(&mut b, group);
    put_str(&mut b, topic);
    b.put_i32(partition);
    b.freeze()
}

/// `OffsetCommitValue` v3.
pub fn offset_value(o: &CommittedOffset) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(3);
    b.put_i64(o.offset);
    b.put_i32(o.leader_epoch);
    put_str(&mut b, o.metadata.as_deref().unwrap_or(""));
    b.put_i64(o.commit_timestamp);
    b.freeze()
}

/// `GroupMetadataKey` v2.
pub fn group_key(group: &str) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(2);
    put_str(&mut b, group);
    b.freeze()
}

/// `GroupMetadataValue` v3.
pub fn group_value(g: &StoredGroup) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(3);
    put_str(&mut b, &g.protocol_type);
    b.put_i32(g.generation);
    put_nullable_str(&mut b, g.protocol.as_deref());
    put_nullable_str(&mut b, g.leader.as_deref());
    b.put_i64(g.current_state_timestamp);
    b.put_i32(g.members.len() as i32);
    for m in &g.members {
        put_str(&mut b, &m.member_id);
        put_nullable_str(&mut b, m.group_instance_id.as_deref());
        put_str(&mut b, &m.client_id);
        put_str(&mut b, &m.client_host);
        b.put_i32(m.rebalance_timeout_ms);
        b.put_i32(m.session_timeout_ms);
        put_bytes(&mut b, &m.subscription);
        put_bytes(&mut b, &m.assignment);
    }
    b.freeze()
}

/// A bounds-checked reader over untrusted bytes.
struct Reader(Bytes);

impl Reader {
    fn need(&self, n: usize, what: &'static str) -> Result<(), RecordError> {
        if self.0.remaining() < n {
            Err(RecordError::Truncated(what))
        } else {
            Ok(())
        }
    }
    fn i16(&mut self, what: &'static str) -> Result<i16, RecordError> {
        self.need(2, what)?;
        Ok(self.0.get_i16())
    }
    fn i32(&mut self, what: &'static str) -> Result<i32, RecordError> {
        self.need(4, what)?;
        Ok(self.0.get_i32())
    }
    fn i64(&mut self, what: &'static str) -> Result<i64, RecordError> {
        self.need(8, what)?;
        Ok(self.0.get_i64())
    }
    fn nullable_str(&mut self, what: &'static str) -> Result<Option<String>, RecordError> {
        let len = self.i16(what)?;
        if len < 0 {
            return Ok(None);
        }
        let len = len as usize;
        self.need(len, what)?;
        let raw = self.0.split_to(len);
        String::from_utf8(raw.to_vec())
            .map(Some)
            .map_err(|_| RecordError::Utf8(what))
    }
    fn str(&mut self, what: &'static str) -> Result<String, RecordError> {
        Ok(self.nullable_str(what)?.unwrap_or_default())
    }
    fn bytes(&mut self, what: &'static str) -> Result<Bytes, RecordError> {
        let len = self.i32(what)?;
        if len < 0 {
            return Ok(Bytes::new());
        }
        let len = len as usize;
        self.need(len, what)?;
        Ok(self.0.split_to(len))
    }
}

/// Reads a key.
pub fn decode_key(key: Bytes) -> Result<Key, RecordError> {
    let mut r = Reader(key);
    match r.i16("key version")? {
        0 | 1 => Ok(Key::Offset {
            group: r.str("group")?,
            topic: r.str("topic")?,
            partition: r.i32("partition")?,
        }),
        2 => Ok(Key::Group(r.str("group")?)),
        version => Err(RecordError::Version {
            what: "key",
            version,
        }),
    }
}

/// Reads an `OffsetCommitValue` (v0-v3).
pub fn decode_offset_value(value: Bytes) -> Result<CommittedOffset, RecordError> {
    let mut r = Reader(value);
    let version = r.i16("offset value version")?;
    if !(0..=3).contains(&version) {
        return Err(RecordError::Version {
            what: "offset value",
            version,
        });
    }
    let offset = r.i64("offset")?;
    let leader_epoch = if version >= 3 {
        r.i32("leader epoch")?
    } else {
        -1
    };
    let metadata = r.nullable_str("metadata")?;
    let commit_timestamp = r.i64("commit timestamp")?;
    if version == 1 {
        r.i64("expire timestamp")?;
    }
    Ok(CommittedOffset {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp,
    })
}

/// Reads a `GroupMetadataValue` (v0-v3).
pub fn decode_group_value(value: Bytes) -> Result<StoredGroup, RecordError> {
    let mut r = Reader(value);
    let version = r.i16("group value version")?;
    if !(0..=3).contains(&version) {
        return Err(RecordError::Version {
            what: "group value",
            version,
        });
    }
    let protocol_type = r.str("protocol type")?;
    let generation = r.i32("generation")?;
    let protocol = r.nullable_str("protocol")?;
    let leader = r.nullable_str("leader")?;
    let current_state_timestamp = if version >= 2 {
        r.i64("state timestamp")?
    } else {
        -1
    };
    let count = r.i32("member count")?;
    let mut members = Vec::new();
    for _ in 0..count.max(0) {
        let member_id = r.str("member id")?;
        let group_instance_id = if version >= 3 {
            r.nullable_str("group instance id")?
        } else {
            None
        };
        let client_id = r.str("client id")?;
        let client_host = r.str("client host")?;
        let rebalance_timeout_ms = if version >= 1 {
            r.i32("rebalance timeout")?
        } else {
            -1
        };
        let session_timeout_ms = r.i32("session timeout")?;
        let rebalance_timeout_ms = if rebalance_timeout_ms < 0 {
            session_timeout_ms
        } else {
            rebalance_timeout_ms
        };
        members.push(StoredMember {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription: r.bytes("subscription")?,
            assignment: r.bytes("assignment")?,
        });
    }
    Ok(StoredGroup {
        protocol_type,
        generation,
        protocol,
        leader,
        current_state_timestamp,
        members,
    })
}

/// The topics of a consumer-protocol subscription, or `None` if it does not parse (Kafka then
/// treats the group's subscriptions as unknown).
pub fn subscription_topics(metadata: &Bytes) -> Option<BTreeSet<String>> {
    let mut buf = metadata.clone();
    if buf.remaining() < 2 {
        return None;
    }
    // Newer subscription versions only append fields, so read them as the newest we know.
    let version = buf.get_i16().clamp(0, 3);
    let sub = ConsumerProtocolSubscription::decode(&mut buf, version).ok()?;
    Some(sub.topics.iter().map(|t| t.to_string()).collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn partition_matches_java_hash_code() {
        // "".hashCode() == 0; "a" == 97; "group" == 98629247; "console-consumer-1" (negative).
        assert_eq!(partition_for("", 50), 0);
        assert_eq!(partition_for("a", 50), 97 % 50);
        assert_eq!(partition_for("group", 50), 98_629_247 % 50);
        // Java: "polygenelubricants".hashCode() == Integer.MIN_VALUE → Utils.abs → 0.
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        // Negative hash: "test-group-zz".hashCode() computed the same way, abs taken.
        let mut h: i32 = 0;
        for c in "test-group-zz".encode_utf16() {
            h = h.wrapping_mul(31).wrapping_add(c as i32);
        }
        assert_eq!(partition_for("test-group-zz", 50), h.abs() % 50);
    }

    #[test]
    fn records_round_trip() {
        let key = offset_key("g", "t", 3);
        assert_eq!(
            decode_key(key).unwrap(),
            Key::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 3
            }
        );
        assert_eq!(decode_key(group_key("g")).unwrap(), Key::Group("g".into()));
        let o = CommittedOffset {
            offset: 42,
            leader_epoch: 0,
            metadata: Some("meta".into()),
            commit_timestamp: 1234,
        };
        assert_eq!(decode_offset_value(offset_value(&o)).unwrap(), o);
        let g = StoredGroup {
            protocol_type: "consumer".into(),
            generation: 7,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            current_state_timestamp: 99,
            members: vec![StoredMember {
                member_id: "m1".into(),
                group_instance_id: Some("i1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 10_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        assert_eq!(decode_group_value(group_value(&g)).unwrap(), g);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"\x00",
            b"\x00\x01\x00\x05ab",
            b"\x00\x09",
            b"\xff\xff",
        ] {
            assert!(decode_key(Bytes::copy_from_slice(bad)).is_err());
            assert!(decode_offset_value(Bytes::copy_from_slice(bad)).is_err());
            assert!(decode_group_value(Bytes::copy_from_slice(bad)).is_err());
        }
        // A member count far beyond the bytes present fails cleanly.
        let mut b = BytesMut::new();
        b.put_i16(3);
        put_str(&mut b, "consumer");
        b.put_i32(1);
        b.put_i16(-1);
        b.put_i16(-1);
        b.put_i64(0);
        b.put_i32(i32::MAX);
        assert!(decode_group_value(b.freeze()).is_err());
    }
}
