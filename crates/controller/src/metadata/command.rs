//! The state-machine commands and their versioned wire/disk encoding.
//!
//! Encoding: `[tag: u8][version: u8][body]`. Tags are stable and never reused; a body layout
//! change gets a new version while the old one stays decodable. Unknown tags and versions are
//! typed errors ([`DecodeError::UnknownTag`], [`DecodeError::UnsupportedVersion`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::codec::{DecodeError, Reader, Writer};
use super::{BrokerId, Endpoint};

/// Stable command tags. Append only; a retired tag is never reused.
mod tag {
    pub(super) const REGISTER_BROKER: u8 = 1;
    pub(super) const FENCE_BROKER: u8 = 2;
    pub(super) const UNFENCE_BROKER: u8 = 3;
    pub(super) const CREATE_TOPIC: u8 = 4;
    pub(super) const DELETE_TOPIC: u8 = 5;
    pub(super) const CREATE_PARTITIONS: u8 = 6;
    pub(super) const ALTER_PARTITION: u8 = 7;
    pub(super) const ELECT_LEADER: u8 = 8;
    pub(super) const ALTER_CONFIGS: u8 = 9;
    pub(super) const ALLOCATE_PRODUCER_IDS: u8 = 10;
}

/// The first version of every command.
const V1: u8 = 1;
/// `RegisterBroker` v2 adds `clean_shutdown` (KIP-966). v1 records decode with
/// `clean_shutdown: false`, the safe reading ("unknown").
const REGISTER_BROKER_V2: u8 = 2;

/// One change to the cluster metadata, replicated through the controller quorum.
///
/// Broker heartbeats are not commands: logging one per broker per interval would grow the log
/// without changing the image. A heartbeat is planned into [`Command::UnfenceBroker`] /
/// [`Command::FenceBroker`] when it changes something (see [`crate::planner`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A broker (re)joins. Its epoch is the offset of this record.
    RegisterBroker {
        /// Broker id (`node.id`).
        broker_id: BrokerId,
        /// Chosen once per process start: a new value is a new registration.
        incarnation: Uuid,
        /// Listeners clients connect to.
        endpoints: Vec<Endpoint>,
        /// Rack, for rack-aware placement.
        rack: Option<String>,
        /// The broker's previous shutdown was clean. `false` (unclean or unknown) removes it
        /// from every Eligible Leader Replica set and, without adding it to an ELR, from every
        /// ISR: it may have lost unflushed data (KIP-966).
        clean_shutdown: bool,
    },
    /// Stop treating a broker as alive: no leaderships, not in ISRs.
    FenceBroker {
        /// The broker.
        broker_id: BrokerId,
        /// Must match its current registration.
        broker_epoch: u64,
    },
    /// A registered broker has caught up with the metadata and may lead again.
    UnfenceBroker {
        /// The broker.
        broker_id: BrokerId,
        /// Must match its current registration.
        broker_epoch: u64,
    },
    /// Create a topic with a fixed assignment. Each partition starts with ISR = replicas and the
    /// first replica as leader, epochs 0.
    CreateTopic {
        /// Topic name.
        name: String,
        /// Chosen by the caller so that apply needs no randomness.
        topic_id: Uuid,
        /// Replica list per partition, preferred leader first.
        assignments: Vec<Vec<BrokerId>>,
        /// Topic-level config overrides.
        configs: BTreeMap<String, String>,
    },
    /// Delete a topic and all its partitions.
    DeleteTopic {
        /// Topic name.
        name: String,
    },
    /// Append partitions to a topic.
    CreatePartitions {
        /// Topic name.
        topic: String,
        /// Replica lists of the new partitions, in partition order.
        assignments: Vec<Vec<BrokerId>>,
    },
    /// ISR change requested by a partition leader (KIP-497), guarded by the partition epoch.
    AlterPartition {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: u32,
        /// The requesting leader.
        broker_id: BrokerId,
        /// The requesting leader's broker epoch.
        broker_epoch: u64,
        /// The leader epoch the leader believes is current.
        leader_epoch: i32,
        /// The partition epoch the leader believes is current.
        partition_epoch: i32,
        /// The new ISR (must contain the leader).
        new_isr: Vec<BrokerId>,
    },
    /// Controller-driven leader and/or ISR change, guarded by the partition epoch.
    ElectLeader {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: u32,
        /// The partition epoch the plan was made against.
        partition_epoch: i32,
        /// The new leader; `None` leaves the partition offline.
        leader: Option<BrokerId>,
        /// The new ISR.
        isr: Vec<BrokerId>,
    },
    /// Set (`Some`) or delete (`None`) config keys.
    AlterConfigs {
        /// Which configs.
        resource: ConfigResource,
        /// Changes in order.
        changes: Vec<(String, Option<String>)>,
    },
    /// Reserve a block of producer ids for a broker's idempotent producers.
    AllocateProducerIds {
        /// The requesting broker.
        broker_id: BrokerId,
        /// Its broker epoch.
        broker_epoch: u64,
        /// Block size.
        count: u32,
    },
}

/// What an [`Command::AlterConfigs`] applies to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConfigResource {
    /// Cluster-wide defaults.
    Cluster,
    /// One broker.
    Broker(BrokerId),
    /// One topic.
    Topic(String),
}

impl Command {
    /// The stable tag written in front of this command.
    pub fn tag(&self) -> u8 {
        match self {
            Command::RegisterBroker { .. } => tag::REGISTER_BROKER,
            Command::FenceBroker { .. } => tag::FENCE_BROKER,
            Command::UnfenceBroker { .. } => tag::UNFENCE_BROKER,
            Command::CreateTopic { .. } => tag::CREATE_TOPIC,
            Command::DeleteTopic { .. } => tag::DELETE_TOPIC,
            Command::CreatePartitions { .. } => tag::CREATE_PARTITIONS,
            Command::AlterPartition { .. } => tag::ALTER_PARTITION,
            Command::ElectLeader { .. } => tag::ELECT_LEADER,
            Command::AlterConfigs { .. } => tag::ALTER_CONFIGS,
            Command::AllocateProducerIds { .. } => tag::ALLOCATE_PRODUCER_IDS,
        }
    }

    /// The version this build writes for this command.
    pub fn version(&self) -> u8 {
        match self {
            Command::RegisterBroker { .. } => REGISTER_BROKER_V2,
            _ => V1,
        }
    }

    /// Encodes as `[tag][version][body]`.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(self.tag());
        w.u8(self.version());
        match self {
            Command::RegisterBroker {
                broker_id,
                incarnation,
                endpoints,
                rack,
                clean_shutdown,
            } => {
                w.i32(*broker_id);
                w.uuid(*incarnation);
                w.len(endpoints.len());
                for e in endpoints {
                    w.str(&e.name);
                    w.str(&e.host);
                    w.u16(e.port);
                }
                w.opt_str(rack.as_deref());
                w.bool(*clean_shutdown);
            }
            Command::FenceBroker {
                broker_id,
                broker_epoch,
            }
            | Command::UnfenceBroker {
                broker_id,
                broker_epoch,
            } => {
                w.i32(*broker_id);
                w.u64(*broker_epoch);
            }
            Command::CreateTopic {
                name,
                topic_id,
                assignments,
                configs,
            } => {
                w.str(name);
                w.uuid(*topic_id);
                encode_assignments(&mut w, assignments);
                w.str_map(configs);
            }
            Command::DeleteTopic { name } => w.str(name),
            Command::CreatePartitions { topic, assignments } => {
                w.str(topic);
                encode_assignments(&mut w, assignments);
            }
            Command::AlterPartition {
                topic,
                partition,
                broker_id,
                broker_epoch,
                leader_epoch,
                partition_epoch,
                new_isr,
            } => {
                w.str(topic);
                w.u32(*partition);
                w.i32(*broker_id);
                w.u64(*broker_epoch);
                w.i32(*leader_epoch);
                w.i32(*partition_epoch);
                w.i32s(new_isr);
            }
            Command::ElectLeader {
                topic,
                partition,
                partition_epoch,
                leader,
                isr,
            } => {
                w.str(topic);
                w.u32(*partition);
                w.i32(*partition_epoch);
                w.opt_i32(*leader);
                w.i32s(isr);
            }
            Command::AlterConfigs { resource, changes } => {
                match resource {
                    ConfigResource::Cluster => w.u8(0),
                    ConfigResource::Broker(id) => {
                        w.u8(1);
                        w.i32(*id);
                    }
                    ConfigResource::Topic(name) => {
                        w.u8(2);
                        w.str(name);
                    }
                }
                w.len(changes.len());
                for (k, v) in changes {
                    w.str(k);
                    w.opt_str(v.as_deref());
                }
            }
            Command::AllocateProducerIds {
                broker_id,
                broker_epoch,
                count,
            } => {
                w.i32(*broker_id);
                w.u64(*broker_epoch);
                w.u32(*count);
            }
        }
        w.into_inner()
    }

    /// Decodes one command; the whole input must be consumed.
    pub fn decode(bytes: &[u8]) -> Result<Command, DecodeError> {
        let mut r = Reader::new(bytes);
        let tag = r.u8()?;
        let version = r.u8()?;
        let kind = match tag {
            tag::REGISTER_BROKER => "RegisterBroker",
            tag::FENCE_BROKER => "FenceBroker",
            tag::UNFENCE_BROKER => "UnfenceBroker",
            tag::CREATE_TOPIC => "CreateTopic",
            tag::DELETE_TOPIC => "DeleteTopic",
            tag::CREATE_PARTITIONS => "CreatePartitions",
            tag::ALTER_PARTITION => "AlterPartition",
            tag::ELECT_LEADER => "ElectLeader",
            tag::ALTER_CONFIGS => "AlterConfigs",
            tag::ALLOCATE_PRODUCER_IDS => "AllocateProducerIds",
            other => return Err(DecodeError::UnknownTag(other)),
        };
        let newest = match tag {
            tag::REGISTER_BROKER => REGISTER_BROKER_V2,
            _ => V1,
        };
        if !(V1..=newest).contains(&version) {
            return Err(DecodeError::UnsupportedVersion { kind, version });
        }
        let cmd = match tag {
            tag::REGISTER_BROKER => {
                let broker_id = r.i32()?;
                let incarnation = r.uuid()?;
                let n = r.len(10)?;
                let mut endpoints = Vec::with_capacity(n);
                for _ in 0..n {
                    endpoints.push(Endpoint {
                        name: r.str()?,
                        host: r.str()?,
                        port: r.u16()?,
                    });
                }
                let rack = r.opt_str()?;
                let clean_shutdown = if version >= REGISTER_BROKER_V2 {
                    r.bool()?
                } else {
                    false
                };
                Command::RegisterBroker {
                    broker_id,
                    incarnation,
                    endpoints,
                    rack,
                    clean_shutdown,
                }
            }
            tag::FENCE_BROKER => Command::FenceBroker {
                broker_id: r.i32()?,
                broker_epoch: r.u64()?,
            },
            tag::UNFENCE_BROKER => Command::UnfenceBroker {
                broker_id: r.i32()?,
                broker_epoch: r.u64()?,
            },
            tag::CREATE_TOPIC => Command::CreateTopic {
                name: r.str()?,
                topic_id: r.uuid()?,
                assignments: decode_assignments(&mut r)?,
                configs: r.str_map()?,
            },
            tag::DELETE_TOPIC => Command::DeleteTopic { name: r.str()? },
            tag::CREATE_PARTITIONS => Command::CreatePartitions {
                topic: r.str()?,
                assignments: decode_assignments(&mut r)?,
            },
            tag::ALTER_PARTITION => Command::AlterPartition {
                topic: r.str()?,
                partition: r.u32()?,
                broker_id: r.i32()?,
                broker_epoch: r.u64()?,
                leader_epoch: r.i32()?,
                partition_epoch: r.i32()?,
                new_isr: r.i32s()?,
            },
            tag::ELECT_LEADER => Command::ElectLeader {
                topic: r.str()?,
                partition: r.u32()?,
                partition_epoch: r.i32()?,
                leader: r.opt_i32()?,
                isr: r.i32s()?,
            },
            tag::ALTER_CONFIGS => {
                let resource = match r.u8()? {
                    0 => ConfigResource::Cluster,
                    1 => ConfigResource::Broker(r.i32()?),
                    2 => ConfigResource::Topic(r.str()?),
                    v => {
                        return Err(DecodeError::Invalid {
                            field: "config resource kind",
                            value: u64::from(v),
                        });
                    }
                };
                let n = r.len(5)?;
                let mut changes = Vec::with_capacity(n);
                for _ in 0..n {
                    changes.push((r.str()?, r.opt_str()?));
                }
                Command::AlterConfigs { resource, changes }
            }
            // The tag was validated above; this arm is the only remaining one.
            _ => Command::AllocateProducerIds {
                broker_id: r.i32()?,
                broker_epoch: r.u64()?,
                count: r.u32()?,
            },
        };
        r.finish()?;
        Ok(cmd)
    }
}

fn encode_assignments(w: &mut Writer, assignments: &[Vec<BrokerId>]) {
    w.len(assignments.len());
    for replicas in assignments {
        w.i32s(replicas);
    }
}

fn decode_assignments(r: &mut Reader<'_>) -> Result<Vec<Vec<BrokerId>>, DecodeError> {
    let n = r.len(4)?;
    (0..n).map(|_| r.i32s()).collect()
}

// openraft stores and ships `Command` through serde. Going through our own encoding keeps one
// versioned format on disk and on the wire instead of a derived, evolving serde layout.
impl Serialize for Command {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.encode())
    }
}

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Command;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an encoded metadata command")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Command, E> {
                Command::decode(v).map_err(E::custom)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Command, A::Error> {
                let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
                while let Some(b) = seq.next_element::<u8>()? {
                    bytes.push(b);
                }
                Command::decode(&bytes).map_err(serde::de::Error::custom)
            }
        }
        d.deserialize_bytes(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn every_command() -> Vec<Command> {
        let id = Uuid::from_u128(0x1234_5678_9abc_def0_1122_3344_5566_7788);
        vec![
            Command::RegisterBroker {
                broker_id: 1,
                incarnation: id,
                endpoints: vec![Endpoint {
                    name: "PLAINTEXT".into(),
                    host: "127.0.0.1".into(),
                    port: 9092,
                }],
                rack: Some("r1".into()),
                clean_shutdown: true,
            },
            Command::RegisterBroker {
                broker_id: 2,
                incarnation: id,
                endpoints: vec![],
                rack: None,
                clean_shutdown: false,
            },
            Command::FenceBroker {
                broker_id: 3,
                broker_epoch: 17,
            },
            Command::UnfenceBroker {
                broker_id: 3,
                broker_epoch: 18,
            },
            Command::CreateTopic {
                name: "orders".into(),
                topic_id: id,
                assignments: vec![vec![1, 2, 3], vec![2, 3, 1]],
                configs: BTreeMap::from([("retention.ms".into(), "1000".into())]),
            },
            Command::DeleteTopic {
                name: "orders".into(),
            },
            Command::CreatePartitions {
                topic: "orders".into(),
                assignments: vec![vec![3, 1]],
            },
            Command::AlterPartition {
                topic: "orders".into(),
                partition: 1,
                broker_id: 2,
                broker_epoch: 9,
                leader_epoch: 4,
                partition_epoch: 7,
                new_isr: vec![2, 3],
            },
            Command::ElectLeader {
                topic: "orders".into(),
                partition: 0,
                partition_epoch: 3,
                leader: None,
                isr: vec![1],
            },
            Command::ElectLeader {
                topic: "t".into(),
                partition: 2,
                partition_epoch: 0,
                leader: Some(-5),
                isr: vec![-5],
            },
            Command::AlterConfigs {
                resource: ConfigResource::Topic("orders".into()),
                changes: vec![("a".into(), Some("b".into())), ("c".into(), None)],
            },
            Command::AlterConfigs {
                resource: ConfigResource::Broker(4),
                changes: vec![],
            },
            Command::AlterConfigs {
                resource: ConfigResource::Cluster,
                changes: vec![("x".into(), None)],
            },
            Command::AllocateProducerIds {
                broker_id: 1,
                broker_epoch: 2,
                count: 1000,
            },
        ]
    }

    #[test]
    fn every_command_round_trips() {
        for cmd in every_command() {
            let bytes = cmd.encode();
            assert_eq!(bytes[0], cmd.tag());
            assert_eq!(bytes[1], cmd.version());
            assert_eq!(Command::decode(&bytes), Ok(cmd));
        }
    }

    #[test]
    fn round_trips_through_serde_json_as_openraft_does() {
        for cmd in every_command() {
            let json = serde_json::to_vec(&cmd).unwrap();
            let back: Command = serde_json::from_slice(&json).unwrap();
            assert_eq!(back, cmd);
        }
    }

    #[test]
    fn tags_are_stable() {
        // Changing a tag breaks every existing log on disk: this test pins them.
        let tags: Vec<u8> = every_command().iter().map(Command::tag).collect();
        assert_eq!(tags, vec![1, 1, 2, 3, 4, 5, 6, 7, 8, 8, 9, 9, 9, 10]);
        // And the exact bytes of one command, so a silent layout change fails here.
        let bytes = Command::FenceBroker {
            broker_id: 3,
            broker_epoch: 17,
        }
        .encode();
        assert_eq!(bytes, [2, 1, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 17]);
    }

    #[test]
    fn register_broker_v1_still_decodes_as_an_unknown_shutdown() {
        // The exact v1 layout (before `clean_shutdown`): id 7, incarnation, no endpoints, no rack.
        let id = Uuid::from_u128(5);
        let mut v1 = vec![1, 1, 0, 0, 0, 7];
        v1.extend_from_slice(id.as_bytes());
        v1.extend_from_slice(&[0, 0, 0, 0, 0]);
        let expected = Command::RegisterBroker {
            broker_id: 7,
            incarnation: id,
            endpoints: vec![],
            rack: None,
            clean_shutdown: false,
        };
        assert_eq!(Command::decode(&v1), Ok(expected.clone()));
        // v2 is v1 plus one flag byte.
        let mut v2 = v1.clone();
        v2[1] = 2;
        v2.push(0);
        assert_eq!(expected.encode(), v2);
        let mut v3 = expected.encode();
        v3[1] = 3;
        assert_eq!(
            Command::decode(&v3),
            Err(DecodeError::UnsupportedVersion {
                kind: "RegisterBroker",
                version: 3
            })
        );
    }

    #[test]
    fn unknown_tag_is_a_typed_error() {
        assert_eq!(Command::decode(&[0, 1]), Err(DecodeError::UnknownTag(0)));
        assert_eq!(
            Command::decode(&[200, 1, 0]),
            Err(DecodeError::UnknownTag(200))
        );
    }

    #[test]
    fn unknown_version_is_a_typed_error() {
        let mut bytes = Command::DeleteTopic { name: "t".into() }.encode();
        bytes[1] = 2;
        assert_eq!(
            Command::decode(&bytes),
            Err(DecodeError::UnsupportedVersion {
                kind: "DeleteTopic",
                version: 2
            })
        );
    }

    #[test]
    fn every_truncation_and_extension_is_an_error_not_a_panic() {
        for cmd in every_command() {
            let bytes = cmd.encode();
            for cut in 0..bytes.len() {
                assert!(
                    Command::decode(&bytes[..cut]).is_err(),
                    "{cmd:?} cut at {cut} decoded"
                );
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(Command::decode(&longer), Err(DecodeError::Trailing(1)));
        }
    }

    #[test]
    fn corrupt_bytes_from_json_are_rejected_by_serde() {
        let err = serde_json::from_str::<Command>("[99, 1]").unwrap_err();
        assert!(err.to_string().contains("unknown command tag 99"), "{err}");
    }
}
