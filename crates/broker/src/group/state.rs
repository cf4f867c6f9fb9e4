//! The classic consumer-group protocol as a pure state machine: one [`Group`] per group id, fed
//! events plus the current (monotonic) time in milliseconds, answering with [`Output`]s.
//!
//! Nothing here does I/O, spawns, sleeps or reads a clock. Timers are explicit deadlines:
//! [`Group::next_deadline`] says when the driver must feed [`Event::Tick`]. Delayed JoinGroup and
//! SyncGroup answers are outputs addressed to the request that is waiting ([`RequestId`]); the
//! driver keeps the channels. The rules follow Kafka's `GroupCoordinator`/`ClassicGroup` (3.x/4.x)
//! closely enough that the same request sequence yields the same error codes; the unit tests at
//! the bottom pin each fencing rule.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;

use super::GroupError;

/// Identifies one waiting request; chosen by the driver, echoed in [`Output::Reply`].
pub type RequestId = u64;

/// How long a new member's JoinGroup may wait before the member is dropped (Kafka's
/// `NewMemberJoinTimeoutMs`): a new member cannot heartbeat, so its session timeout does not apply.
pub const NEW_MEMBER_JOIN_TIMEOUT_MS: i64 = 5 * 60 * 1000;

/// Group settings (broker config `group.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms` (Kafka default 6000).
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms` (Kafka default 1800000).
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms` (Kafka default 3000).
    pub initial_rebalance_delay_ms: i32,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            min_session_timeout_ms: 6000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3000,
        }
    }
}

impl GroupConfig {
    /// JoinGroup's session timeout must lie in the configured bounds (INVALID_SESSION_TIMEOUT).
    pub fn check_session_timeout(&self, ms: i32) -> Result<(), GroupError> {
        if ms < self.min_session_timeout_ms || ms > self.max_session_timeout_ms {
            Err(GroupError::InvalidSessionTimeout)
        } else {
            Ok(())
        }
    }
}

/// Group states, named as Kafka names them in DescribeGroups and ListGroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members (offsets may exist).
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignment.
    CompletingRebalance,
    /// Assigned; members heartbeat.
    Stable,
    /// Deleted; any request that still holds it gets COORDINATOR_NOT_AVAILABLE.
    Dead,
}

impl GroupState {
    /// Kafka's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// One protocol a member supports (e.g. `range` with its subscription bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protocol {
    /// Protocol (assignor) name.
    pub name: String,
    /// Opaque metadata (for consumers: the subscription).
    pub metadata: Bytes,
}

/// A JoinGroup request.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// Waiting request.
    pub req: RequestId,
    /// The member id sent ("" for a new member).
    pub member_id: String,
    /// A member id the driver generated, used if the coordinator assigns one.
    pub fresh_member_id: String,
    /// `group.instance.id` (static membership, KIP-345).
    pub group_instance_id: Option<String>,
    /// Client id from the request header.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Rebalance timeout (v0: the session timeout).
    pub rebalance_timeout_ms: i32,
    /// Protocol type (`consumer`, `connect`, ...).
    pub protocol_type: String,
    /// Supported protocols in preference order.
    pub protocols: Vec<Protocol>,
    /// v4+: a new dynamic member first gets MEMBER_ID_REQUIRED (KIP-394).
    pub require_known_member_id: bool,
    /// v9+: a static leader rejoining a stable group may skip the assignment.
    pub supports_skip_assignment: bool,
}

/// A SyncGroup request.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    /// Waiting request.
    pub req: RequestId,
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub group_instance_id: Option<String>,
    /// Generation the member believes in.
    pub generation_id: i32,
    /// v5+: must match the group's protocol type if given.
    pub protocol_type: Option<String>,
    /// v5+: must match the selected protocol if given.
    pub protocol_name: Option<String>,
    /// The leader's assignment (empty for followers).
    pub assignments: Vec<(String, Bytes)>,
}

/// A Heartbeat request.
#[derive(Debug, Clone)]
pub struct HeartbeatRequest {
    /// Waiting request.
    pub req: RequestId,
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub group_instance_id: Option<String>,
    /// Generation.
    pub generation_id: i32,
}

/// One member leaving (LeaveGroup v3+ batches them).
#[derive(Debug, Clone)]
pub struct LeavingMember {
    /// Member id ("" to remove a static member by instance id).
    pub member_id: String,
    /// Static instance id.
    pub group_instance_id: Option<String>,
}

/// Inputs.
#[derive(Debug, Clone)]
pub enum Event {
    /// JoinGroup.
    Join(JoinRequest),
    /// SyncGroup.
    Sync(SyncRequest),
    /// Heartbeat.
    Heartbeat(HeartbeatRequest),
    /// LeaveGroup.
    Leave {
        /// Waiting request.
        req: RequestId,
        /// Who leaves.
        members: Vec<LeavingMember>,
    },
    /// A deadline from [`Group::next_deadline`] passed.
    Tick,
    /// The group-metadata write of generation `generation` was not replicated in time (or
    /// failed): as Kafka does when storing a SyncGroup assignment fails, the group rebalances
    /// (its members were answered with the error and rejoin). Ignored when the group has moved
    /// on to another generation meanwhile.
    StoreFailed {
        /// The generation whose metadata was written.
        generation: i32,
    },
}

/// A member as the leader sees it in its JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub group_instance_id: Option<String>,
    /// Metadata for the selected protocol.
    pub metadata: Bytes,
}

/// JoinGroup's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResponse {
    /// Error, if any.
    pub error: Option<GroupError>,
    /// The member's id (also set with MEMBER_ID_REQUIRED).
    pub member_id: String,
    /// Generation (-1 on error).
    pub generation_id: i32,
    /// Group protocol type.
    pub protocol_type: Option<String>,
    /// Selected protocol.
    pub protocol_name: Option<String>,
    /// Leader's member id.
    pub leader: String,
    /// v9: the static leader need not run the assignor.
    pub skip_assignment: bool,
    /// All members with metadata, for the leader only.
    pub members: Vec<JoinedMember>,
}

impl JoinResponse {
    fn error(member_id: impl Into<String>, error: GroupError) -> JoinResponse {
        JoinResponse {
            error: Some(error),
            member_id: member_id.into(),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            skip_assignment: false,
            members: Vec::new(),
        }
    }
}

/// SyncGroup's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResponse {
    /// Error, if any.
    pub error: Option<GroupError>,
    /// Group protocol type.
    pub protocol_type: Option<String>,
    /// Selected protocol.
    pub protocol_name: Option<String>,
    /// This member's assignment.
    pub assignment: Bytes,
}

impl SyncResponse {
    fn error(error: GroupError) -> SyncResponse {
        SyncResponse {
            error: Some(error),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// An answer to a waiting request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// JoinGroup.
    Join(JoinResponse),
    /// SyncGroup.
    Sync(SyncResponse),
    /// Heartbeat.
    Heartbeat(Option<GroupError>),
    /// LeaveGroup: a request-level error, or one result per leaving member.
    Leave(Result<Vec<Option<GroupError>>, GroupError>),
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Answer request `.0`.
    Reply(RequestId, Reply),
    /// Persist the group's metadata (generation, members, assignment) before sending the
    /// replies of the same step.
    StoreGroup,
}

/// A group member.
#[derive(Debug, Clone)]
pub struct Member {
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub group_instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// Protocol type.
    pub protocol_type: String,
    /// Supported protocols in preference order.
    pub protocols: Vec<Protocol>,
    /// Current assignment.
    pub assignment: Bytes,
    awaiting_join: Option<(RequestId, bool)>,
    awaiting_sync: Option<RequestId>,
    is_new: bool,
    expires_at: i64,
}

impl Member {
    fn matches(&self, protocols: &[Protocol]) -> bool {
        self.protocols == protocols
    }

    /// This member's metadata for `protocol` (empty if it does not support it).
    pub fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|p| p.name == protocol)
            .map(|p| p.metadata.clone())
            .unwrap_or_default()
    }

    /// Members waiting in a rebalance count as alive; their deadline is the rebalance's.
    fn kept_alive(&self) -> bool {
        !self.is_new && (self.awaiting_join.is_some() || self.awaiting_sync.is_some())
    }
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The offset.
    pub offset: i64,
    /// Leader epoch of the committed record (-1 unknown).
    pub leader_epoch: i32,
    /// Client metadata.
    pub metadata: Option<String>,
    /// Wall-clock commit time (ms).
    pub commit_timestamp: i64,
}

/// Topic and partition.
pub type TopicPartitionKey = (String, i32);

#[derive(Debug, Clone, Copy)]
struct JoinTimer {
    deadline: i64,
    /// `group.initial.rebalance.delay.ms` phase: completes only on its deadline.
    initial: bool,
    remaining_ms: i64,
    new_member_added: bool,
}

/// Member data as persisted in `__consumer_offsets` (GroupMetadataValue members).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMember {
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub group_instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Metadata for the selected protocol.
    pub subscription: Bytes,
    /// Assignment.
    pub assignment: Bytes,
}

/// Group metadata as persisted in `__consumer_offsets` (GroupMetadataValue).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredGroup {
    /// Protocol type ("" if none).
    pub protocol_type: String,
    /// Generation.
    pub generation: i32,
    /// Selected protocol.
    pub protocol: Option<String>,
    /// Leader.
    pub leader: Option<String>,
    /// Wall-clock time of the last state change (ms), filled in by the driver.
    pub current_state_timestamp: i64,
    /// Members.
    pub members: Vec<StoredMember>,
}

/// One member in DescribeGroups.
#[derive(Debug, Clone)]
pub struct MemberSummary {
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub group_instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Metadata for the selected protocol (Stable only, as Kafka does).
    pub metadata: Bytes,
    /// Assignment (Stable only).
    pub assignment: Bytes,
}

/// DescribeGroups' view of a group.
#[derive(Debug, Clone)]
pub struct GroupSummary {
    /// State.
    pub state: GroupState,
    /// Protocol type ("" if none).
    pub protocol_type: String,
    /// Selected protocol (Stable only).
    pub protocol: String,
    /// Members.
    pub members: Vec<MemberSummary>,
}

/// One classic group: membership, generation, assignment and committed offsets.
#[derive(Debug, Clone)]
pub struct Group {
    id: String,
    config: GroupConfig,
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    static_members: HashMap<String, String>,
    /// KIP-394: member ids handed out with MEMBER_ID_REQUIRED, with their expiry.
    pending_members: BTreeMap<String, i64>,
    /// Members that have not sent SyncGroup since the join completed.
    pending_sync: BTreeSet<String>,
    join: Option<JoinTimer>,
    sync_deadline: Option<i64>,
    subscribed_topics: Option<BTreeSet<String>>,
    /// Committed offsets.
    pub offsets: BTreeMap<TopicPartitionKey, CommittedOffset>,
}

impl Group {
    /// A new, empty group.
    pub fn new(id: impl Into<String>, config: GroupConfig) -> Group {
        Group {
            id: id.into(),
            config,
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending_members: BTreeMap::new(),
            pending_sync: BTreeSet::new(),
            join: None,
            sync_deadline: None,
            subscribed_topics: None,
            offsets: BTreeMap::new(),
        }
    }

    /// A group reloaded from `__consumer_offsets`: Stable with its members (who get a fresh
    /// session from `now`), or Empty.
    pub fn load(
        id: impl Into<String>,
        config: GroupConfig,
        stored: StoredGroup,
        offsets: BTreeMap<TopicPartitionKey, CommittedOffset>,
        now: i64,
    ) -> Group {
        let mut g = Group::new(id, config);
        g.offsets = offsets;
        g.generation = stored.generation;
        g.protocol_type = (!stored.protocol_type.is_empty()).then_some(stored.protocol_type);
        g.protocol_name = stored.protocol.clone();
        let protocol = stored.protocol.unwrap_or_default();
        for m in stored.members {
            if let Some(instance) = &m.group_instance_id {
                g.static_members
                    .insert(instance.clone(), m.member_id.clone());
            }
            let member = Member {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                protocols: vec![Protocol {
                    name: protocol.clone(),
                    metadata: m.subscription,
                }],
                assignment: m.assignment,
                awaiting_join: None,
                awaiting_sync: None,
                is_new: false,
                expires_at: now + i64::from(m.session_timeout_ms),
            };
            g.members.insert(m.member_id, member);
        }
        if !g.members.is_empty() {
            g.leader = stored
                .leader
                .filter(|l| g.members.contains_key(l))
                .or_else(|| g.members.keys().next().cloned());
            g.state = GroupState::Stable;
            g.subscribed_topics = g.compute_subscribed_topics();
        }
        g
    }

    /// Group id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Current state.
    pub fn state(&self) -> GroupState {
        self.state
    }

    /// Current generation.
    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// Protocol type, if any member ever joined.
    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    /// Selected protocol of the current generation.
    pub fn protocol_name(&self) -> Option<&str> {
        self.protocol_name.as_deref()
    }

    /// Leader's member id.
    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    /// Members by id.
    pub fn members(&self) -> &BTreeMap<String, Member> {
        &self.members
    }

    /// Marks the group deleted (DeleteGroups). Requests that still hold it see Dead.
    pub fn mark_dead(&mut self) {
        self.state = GroupState::Dead;
        self.join = None;
        self.sync_deadline = None;
    }

    /// DeleteGroups' check: only empty groups can be deleted.
    pub fn check_deletable(&self) -> Result<(), GroupError> {
        match self.state {
            GroupState::Dead => Err(GroupError::GroupIdNotFound),
            GroupState::Empty => Ok(()),
            _ => Err(GroupError::NonEmptyGroup),
        }
    }

    /// OffsetDelete: which of `topics` may have their offsets deleted. `Err` is a group-level
    /// error; `Ok(per topic)` says per topic whether it is subscribed (GROUP_SUBSCRIBED_TO_TOPIC).
    pub fn check_offset_delete<'a>(
        &self,
        topics: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<Option<GroupError>>, GroupError> {
        match self.state {
            GroupState::Dead => Err(GroupError::GroupIdNotFound),
            GroupState::Empty => Ok(topics.into_iter().map(|_| None).collect()),
            _ if self.protocol_type.as_deref() == Some("consumer") => Ok(topics
                .into_iter()
                .map(|t| {
                    self.subscribed_topics
                        .as_ref()
                        .is_some_and(|s| s.contains(t))
                        .then_some(GroupError::GroupSubscribedToTopic)
                })
                .collect()),
            _ => Err(GroupError::NonEmptyGroup),
        }
    }

    /// OffsetCommit's membership and generation check (Kafka's `validateOffsetCommit`). A valid
    /// member's session is refreshed, as a heartbeat would.
    pub fn validate_commit(
        &mut self,
        now: i64,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
    ) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if generation_id >= 0 || !member_id.is_empty() || group_instance_id.is_some() {
            self.validate_current_member(member_id, group_instance_id)?;
            if generation_id != self.generation {
                return Err(GroupError::IllegalGeneration);
            }
        } else if self.state != GroupState::Empty {
            // Once the group has members, only members may commit.
            return Err(GroupError::UnknownMemberId);
        }
        match self.state {
            GroupState::Empty => Ok(()),
            GroupState::Stable | GroupState::PreparingRebalance => {
                // Commits during PreparingRebalance are accepted: the heartbeat response tells
                // the member about the rebalance.
                self.refresh(now, member_id);
                Ok(())
            }
            GroupState::CompletingRebalance => Err(GroupError::RebalanceInProgress),
            GroupState::Dead => Err(GroupError::CoordinatorNotAvailable),
        }
    }

    /// DescribeGroups' view (metadata and assignments only when Stable, as Kafka does).
    pub fn summary(&self) -> GroupSummary {
        let stable = self.state == GroupState::Stable;
        let protocol = if stable {
            self.protocol_name.clone().unwrap_or_default()
        } else {
            String::new()
        };
        GroupSummary {
            state: self.state,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol: protocol.clone(),
            members: self
                .members
                .values()
                .map(|m| MemberSummary {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.metadata(&protocol)
                    } else {
                        Bytes::new()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect(),
        }
    }

    /// The metadata record to persist (without the timestamp, which is wall-clock).
    pub fn stored(&self) -> StoredGroup {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        StoredGroup {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol_name.clone(),
            leader: self.leader.clone(),
            current_state_timestamp: -1,
            members: self
                .members
                .values()
                .map(|m| StoredMember {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// When the driver must next feed [`Event::Tick`].
    pub fn next_deadline(&self) -> Option<i64> {
        let members = self
            .members
            .values()
            .filter(|m| !m.kept_alive())
            .map(|m| m.expires_at);
        let sync = if matches!(
            self.state,
            GroupState::CompletingRebalance | GroupState::Stable
        ) {
            self.sync_deadline
        } else {
            None
        };
        members
            .chain(self.pending_members.values().copied())
            .chain(self.join.map(|j| j.deadline))
            .chain(sync)
            .min()
    }

    /// Feeds one event at time `now` (monotonic ms).
    pub fn handle(&mut self, now: i64, event: Event) -> Vec<Output> {
        let mut out = Vec::new();
        match event {
            Event::Join(r) => {
                let req = r.req;
                if let Err(e) = self.join(now, r, &mut out) {
                    out.push(Output::Reply(req, Reply::Join(*e)));
                }
                if self.state == GroupState::PreparingRebalance {
                    self.try_complete_join(now, &mut out);
                }
            }
            Event::Sync(r) => {
                let req = r.req;
                if let Err(e) = self.sync(now, r, &mut out) {
                    out.push(Output::Reply(req, Reply::Sync(SyncResponse::error(e))));
                }
            }
            Event::Heartbeat(r) => {
                let result = self.heartbeat(now, &r).err();
                out.push(Output::Reply(r.req, Reply::Heartbeat(result)));
            }
            Event::Leave { req, members } => {
                let result = self.leave(now, &members, &mut out);
                out.push(Output::Reply(req, Reply::Leave(result)));
            }
            Event::Tick => self.tick(now, &mut out),
            Event::StoreFailed { generation } => {
                if generation == self.generation {
                    self.maybe_prepare_rebalance(now, &mut out);
                }
            }
        }
        out
    }

    // ---- JoinGroup ----

    fn join(
        &mut self,
        now: i64,
        r: JoinRequest,
        out: &mut Vec<Output>,
    ) -> Result<(), Box<JoinResponse>> {
        let fail = |e| Box::new(JoinResponse::error(r.member_id.clone(), e));
        self.config
            .check_session_timeout(r.session_timeout_ms)
            .map_err(fail)?;
        if self.state == GroupState::Dead {
            return Err(fail(GroupError::CoordinatorNotAvailable));
        }
        if !self.supports_protocols(&r.protocol_type, &r.protocols) {
            return Err(fail(GroupError::InconsistentGroupProtocol));
        }
        if r.member_id.is_empty() {
            let new_id = r.fresh_member_id.clone();
            if let Some(instance) = r.group_instance_id.clone() {
                match self.static_members.get(&instance).cloned() {
                    Some(old) => self.replace_static_member(now, old, new_id, r, out),
                    None => self.add_member_and_rebalance(now, new_id, r, out),
                }
            } else if r.require_known_member_id {
                // KIP-394: hand out the id and make the client come back with it, so a client
                // that times out and retries does not leave a ghost member behind.
                self.pending_members
                    .insert(new_id.clone(), now + i64::from(r.session_timeout_ms));
                return Err(Box::new(JoinResponse::error(
                    new_id,
                    GroupError::MemberIdRequired,
                )));
            } else {
                self.add_member_and_rebalance(now, new_id, r, out);
            }
            return Ok(());
        }
        if self.pending_members.remove(&r.member_id).is_some() {
            let id = r.member_id.clone();
            self.add_member_and_rebalance(now, id, r, out);
            return Ok(());
        }
        self.validate_current_member(&r.member_id, r.group_instance_id.as_deref())
            .map_err(fail)?;
        let member = &self.members[&r.member_id];
        match self.state {
            GroupState::PreparingRebalance => {
                self.update_member_and_rebalance(now, r, out);
            }
            GroupState::CompletingRebalance if member.matches(&r.protocols) => {
                // The member lost its JoinGroup response: answer with the current generation.
                let resp = self.join_response(&r.member_id, false);
                out.push(Output::Reply(r.req, Reply::Join(resp)));
            }
            GroupState::Stable if !self.is_leader(&r.member_id) && member.matches(&r.protocols) => {
                let resp = self.join_response(&r.member_id, false);
                out.push(Output::Reply(r.req, Reply::Join(resp)));
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                // Changed metadata, or the leader rejoining: a new rebalance.
                self.update_member_and_rebalance(now, r, out);
            }
            GroupState::Empty | GroupState::Dead => {
                return Err(fail(GroupError::UnknownMemberId));
            }
        }
        Ok(())
    }

    fn join_response(&self, member_id: &str, skip_assignment: bool) -> JoinResponse {
        let is_leader = self.is_leader(member_id);
        let protocol = self.protocol_name.clone().unwrap_or_default();
        JoinResponse {
            error: None,
            member_id: member_id.to_string(),
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            skip_assignment,
            members: if is_leader {
                self.members
                    .values()
                    .map(|m| JoinedMember {
                        member_id: m.member_id.clone(),
                        group_instance_id: m.group_instance_id.clone(),
                        metadata: m.metadata(&protocol),
                    })
                    .collect()
            } else {
                Vec::new()
            },
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        now: i64,
        member_id: String,
        r: JoinRequest,
        out: &mut Vec<Output>,
    ) {
        if self.state == GroupState::PreparingRebalance
            && self.generation == 0
            && let Some(j) = &mut self.join
        {
            j.new_member_added = true;
        }
        if self.members.is_empty() {
            self.protocol_type = Some(r.protocol_type.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(member_id.clone());
        }
        if let Some(instance) = &r.group_instance_id {
            self.static_members
                .insert(instance.clone(), member_id.clone());
        }
        self.members.insert(
            member_id.clone(),
            Member {
                member_id,
                group_instance_id: r.group_instance_id,
                client_id: r.client_id,
                client_host: r.client_host,
                session_timeout_ms: r.session_timeout_ms,
                rebalance_timeout_ms: r.rebalance_timeout_ms,
                protocol_type: r.protocol_type,
                protocols: r.protocols,
                assignment: Bytes::new(),
                awaiting_join: Some((r.req, r.supports_skip_assignment)),
                awaiting_sync: None,
                is_new: true,
                expires_at: now + NEW_MEMBER_JOIN_TIMEOUT_MS,
            },
        );
        self.maybe_prepare_rebalance(now, out);
    }

    fn update_member_and_rebalance(&mut self, now: i64, r: JoinRequest, out: &mut Vec<Output>) {
        if let Some(m) = self.members.get_mut(&r.member_id) {
            if let Some((old, _)) = m.awaiting_join.take() {
                // A retried JoinGroup supersedes the old one; the old caller must not hang.
                out.push(Output::Reply(
                    old,
                    Reply::Join(JoinResponse::error(
                        r.member_id.clone(),
                        GroupError::RebalanceInProgress,
                    )),
                ));
            }
            m.protocols = r.protocols;
            m.rebalance_timeout_ms = r.rebalance_timeout_ms;
            m.session_timeout_ms = r.session_timeout_ms;
            m.awaiting_join = Some((r.req, r.supports_skip_assignment));
        }
        self.maybe_prepare_rebalance(now, out);
    }

    fn replace_static_member(
        &mut self,
        now: i64,
        old_id: String,
        new_id: String,
        r: JoinRequest,
        out: &mut Vec<Output>,
    ) {
        let Some(mut member) = self.members.remove(&old_id) else {
            // The instance map pointed at a missing member: treat as a new static member.
            self.add_member_and_rebalance(now, new_id, r, out);
            return;
        };
        let old_leader = self.leader.clone().unwrap_or_default();
        // Fence the previous incarnation at once if it is waiting on join or sync.
        if let Some((req, _)) = member.awaiting_join.take() {
            out.push(Output::Reply(
                req,
                Reply::Join(JoinResponse::error(
                    old_id.clone(),
                    GroupError::FencedInstanceId,
                )),
            ));
        }
        if let Some(req) = member.awaiting_sync.take() {
            out.push(Output::Reply(
                req,
                Reply::Sync(SyncResponse::error(GroupError::FencedInstanceId)),
            ));
        }
        member.protocols = r.protocols;
        member.member_id = new_id.clone();
        member.expires_at = now + i64::from(member.session_timeout_ms);
        member.awaiting_join = Some((r.req, r.supports_skip_assignment));
        self.members.insert(new_id.clone(), member);
        if self.pending_sync.remove(&old_id) {
            self.pending_sync.insert(new_id.clone());
        }
        if self.leader.as_deref() == Some(old_id.as_str()) {
            self.leader = Some(new_id.clone());
        }
        if let Some(instance) = &r.group_instance_id {
            self.static_members.insert(instance.clone(), new_id.clone());
        }
        match self.state {
            GroupState::Stable => {
                if self.protocol_name.as_deref() == self.select_protocol().as_deref() {
                    // Same protocol: no rebalance; the member resumes with its assignment.
                    out.push(Output::StoreGroup);
                    let is_leader = self.is_leader(&new_id);
                    let member = self.members.get_mut(&new_id);
                    let skip = member
                        .and_then(|m| m.awaiting_join.take())
                        .is_some_and(|(_, skip)| skip);
                    let resp = if skip {
                        // v9: tell the leader it leads, but that it need not assign.
                        self.join_response(&new_id, is_leader)
                    } else {
                        // Before v9 the old leader id is returned so that the rejoined leader
                        // does not compute an assignment a stable group would ignore.
                        JoinResponse {
                            members: Vec::new(),
                            leader: old_leader,
                            ..self.join_response(&new_id, false)
                        }
                    };
                    out.push(Output::Reply(r.req, Reply::Join(resp)));
                } else {
                    self.maybe_prepare_rebalance(now, out);
                }
            }
            GroupState::CompletingRebalance => {
                // The leader may already be assigning with the old member id: redo it.
                self.prepare_rebalance(now, out);
            }
            GroupState::PreparingRebalance | GroupState::Empty | GroupState::Dead => {}
        }
    }

    fn maybe_prepare_rebalance(&mut self, now: i64, out: &mut Vec<Output>) {
        if matches!(
            self.state,
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty
        ) {
            self.prepare_rebalance(now, out);
        }
    }

    fn prepare_rebalance(&mut self, now: i64, out: &mut Vec<Output>) {
        if self.state == GroupState::CompletingRebalance {
            self.reset_assignment(GroupError::RebalanceInProgress, out);
        }
        self.pending_sync.clear();
        self.sync_deadline = None;
        let rebalance_timeout = self.rebalance_timeout();
        self.join = Some(if self.state == GroupState::Empty {
            // The first rebalance of an empty group waits a little for more members, so a group
            // that starts all at once does not rebalance once per member.
            let delay = i64::from(self.config.initial_rebalance_delay_ms);
            JoinTimer {
                deadline: now + delay,
                initial: true,
                remaining_ms: (rebalance_timeout - delay).max(0),
                new_member_added: false,
            }
        } else {
            JoinTimer {
                deadline: now + rebalance_timeout,
                initial: false,
                remaining_ms: 0,
                new_member_added: false,
            }
        });
        self.state = GroupState::PreparingRebalance;
    }

    fn reset_assignment(&mut self, error: GroupError, out: &mut Vec<Output>) {
        for m in self.members.values_mut() {
            m.assignment = Bytes::new();
            if let Some(req) = m.awaiting_sync.take() {
                out.push(Output::Reply(
                    req,
                    Reply::Sync(SyncResponse::error(error.clone())),
                ));
            }
        }
    }

    fn rebalance_timeout(&self) -> i64 {
        self.members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    fn all_members_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some())
    }

    fn try_complete_join(&mut self, now: i64, out: &mut Vec<Output>) {
        if self.state == GroupState::PreparingRebalance
            && self.join.is_some_and(|j| !j.initial)
            && self.all_members_joined()
        {
            self.complete_join(now, out);
        }
    }

    fn complete_join(&mut self, now: i64, out: &mut Vec<Output>) {
        // Dynamic members that did not rejoin in time are gone; static ones stay (they keep
        // their slot until their session expires).
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && m.group_instance_id.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in gone {
            self.remove_member(&id, out);
        }
        if !self.members.is_empty() && !self.elect_joined_leader() {
            // Nobody rejoined: wait another rebalance timeout for sessions to expire.
            self.join = Some(JoinTimer {
                deadline: now + self.rebalance_timeout(),
                initial: false,
                remaining_ms: 0,
                new_member_added: false,
            });
            return;
        }
        self.join = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.protocol_name = None;
            self.leader = None;
            self.subscribed_topics = None;
            self.state = GroupState::Empty;
            out.push(Output::StoreGroup);
            return;
        }
        self.protocol_name = self.select_protocol();
        self.subscribed_topics = self.compute_subscribed_topics();
        self.state = GroupState::CompletingRebalance;
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in &ids {
            let resp = self.join_response(id, false);
            if let Some(m) = self.members.get_mut(id) {
                if let Some((req, _)) = m.awaiting_join.take() {
                    out.push(Output::Reply(req, Reply::Join(resp)));
                }
                m.is_new = false;
                m.expires_at = now + i64::from(m.session_timeout_ms);
            }
        }
        self.pending_sync = ids.into_iter().collect();
        self.sync_deadline = Some(now + self.rebalance_timeout());
    }

    fn elect_joined_leader(&mut self) -> bool {
        let Some(leader) = self.leader.clone() else {
            return false;
        };
        if self
            .members
            .get(&leader)
            .is_some_and(|m| m.awaiting_join.is_some())
        {
            return true;
        }
        match self.members.values().find(|m| m.awaiting_join.is_some()) {
            Some(m) => {
                self.leader = Some(m.member_id.clone());
                true
            }
            None => false,
        }
    }

    /// The protocol every member supports that most members prefer.
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&str> = first
            .protocols
            .iter()
            .map(|p| p.name.as_str())
            .filter(|name| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|p| p.name == *name))
            })
            .collect();
        let mut votes: Vec<(&str, usize)> = candidates.iter().map(|c| (*c, 0)).collect();
        for m in self.members.values() {
            if let Some(choice) = m
                .protocols
                .iter()
                .find(|p| candidates.contains(&p.name.as_str()))
                && let Some(v) = votes.iter_mut().find(|(n, _)| *n == choice.name)
            {
                v.1 += 1;
            }
        }
        // Highest vote wins; ties go to the earlier candidate (deterministic).
        let mut best: Option<(&str, usize)> = None;
        for (name, n) in votes {
            if best.is_none_or(|(_, b)| n > b) {
                best = Some((name, n));
            }
        }
        best.map(|(n, _)| n.to_string())
    }

    fn supports_protocols(&self, protocol_type: &str, protocols: &[Protocol]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|p| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|q| q.name == p.name))
            })
    }

    fn compute_subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = BTreeSet::new();
        for m in self.members.values() {
            topics.extend(super::records::subscription_topics(&m.metadata(protocol))?);
        }
        Some(topics)
    }

    // ---- SyncGroup ----

    fn sync(&mut self, now: i64, r: SyncRequest, out: &mut Vec<Output>) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        self.validate_current_member(&r.member_id, r.group_instance_id.as_deref())?;
        if r.generation_id != self.generation {
            return Err(GroupError::IllegalGeneration);
        }
        if r.protocol_type
            .as_ref()
            .is_some_and(|t| self.protocol_type.as_ref() != Some(t))
            || r.protocol_name
                .as_ref()
                .is_some_and(|n| self.protocol_name.as_ref() != Some(n))
        {
            return Err(GroupError::InconsistentGroupProtocol);
        }
        match self.state {
            GroupState::Empty => Err(GroupError::UnknownMemberId),
            GroupState::PreparingRebalance => Err(GroupError::RebalanceInProgress),
            GroupState::CompletingRebalance => {
                if let Some(m) = self.members.get_mut(&r.member_id)
                    && let Some(old) = m.awaiting_sync.replace(r.req)
                {
                    out.push(Output::Reply(
                        old,
                        Reply::Sync(SyncResponse::error(GroupError::RebalanceInProgress)),
                    ));
                }
                self.synced(&r.member_id);
                if self.is_leader(&r.member_id) {
                    let mut given: HashMap<String, Bytes> = r.assignments.into_iter().collect();
                    for m in self.members.values_mut() {
                        // Members the leader left out get an empty assignment.
                        m.assignment = given.remove(&m.member_id).unwrap_or_default();
                    }
                    self.state = GroupState::Stable;
                    out.push(Output::StoreGroup);
                    let protocol_type = self.protocol_type.clone();
                    let protocol_name = self.protocol_name.clone();
                    for m in self.members.values_mut() {
                        if let Some(req) = m.awaiting_sync.take() {
                            m.expires_at = now + i64::from(m.session_timeout_ms);
                            out.push(Output::Reply(
                                req,
                                Reply::Sync(SyncResponse {
                                    error: None,
                                    protocol_type: protocol_type.clone(),
                                    protocol_name: protocol_name.clone(),
                                    assignment: m.assignment.clone(),
                                }),
                            ));
                        }
                    }
                }
                Ok(())
            }
            GroupState::Stable => {
                self.synced(&r.member_id);
                self.refresh(now, &r.member_id);
                let assignment = self.members[&r.member_id].assignment.clone();
                out.push(Output::Reply(
                    r.req,
                    Reply::Sync(SyncResponse {
                        error: None,
                        protocol_type: self.protocol_type.clone(),
                        protocol_name: self.protocol_name.clone(),
                        assignment,
                    }),
                ));
                Ok(())
            }
            GroupState::Dead => Err(GroupError::CoordinatorNotAvailable),
        }
    }

    fn synced(&mut self, member_id: &str) {
        self.pending_sync.remove(member_id);
        if self.pending_sync.is_empty() {
            self.sync_deadline = None;
        }
    }

    // ---- Heartbeat ----

    fn heartbeat(&mut self, now: i64, r: &HeartbeatRequest) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        self.validate_current_member(&r.member_id, r.group_instance_id.as_deref())?;
        if r.generation_id != self.generation {
            return Err(GroupError::IllegalGeneration);
        }
        match self.state {
            GroupState::Empty => Err(GroupError::UnknownMemberId),
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.refresh(now, &r.member_id);
                Ok(())
            }
            GroupState::PreparingRebalance => {
                self.refresh(now, &r.member_id);
                Err(GroupError::RebalanceInProgress)
            }
            GroupState::Dead => Err(GroupError::CoordinatorNotAvailable),
        }
    }

    // ---- LeaveGroup ----

    fn leave(
        &mut self,
        now: i64,
        leaving: &[LeavingMember],
        out: &mut Vec<Output>,
    ) -> Result<Vec<Option<GroupError>>, GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        let mut results = Vec::with_capacity(leaving.len());
        for l in leaving {
            let result = if l.member_id.is_empty() {
                // Administrative removal of a static member by instance id.
                match l
                    .group_instance_id
                    .as_ref()
                    .and_then(|i| self.static_members.get(i).cloned())
                {
                    Some(id) => {
                        self.remove_member_and_update(now, &id, out);
                        None
                    }
                    None => Some(GroupError::UnknownMemberId),
                }
            } else if self.pending_members.remove(&l.member_id).is_some() {
                self.try_complete_join(now, out);
                None
            } else if self.is_static_member_fenced(&l.member_id, l.group_instance_id.as_deref()) {
                Some(GroupError::FencedInstanceId)
            } else if self.members.contains_key(&l.member_id) {
                self.remove_member_and_update(now, &l.member_id, out);
                None
            } else {
                Some(GroupError::UnknownMemberId)
            };
            results.push(result);
        }
        Ok(results)
    }

    // ---- membership helpers ----

    fn is_leader(&self, member_id: &str) -> bool {
        self.leader.as_deref() == Some(member_id)
    }

    fn is_static_member_fenced(&self, member_id: &str, instance: Option<&str>) -> bool {
        instance
            .and_then(|i| self.static_members.get(i))
            .is_some_and(|current| current != member_id)
    }

    /// Kafka's `validateCurrentMember`: a given instance id must map to this member id
    /// (else FENCED_INSTANCE_ID), and the member must exist (else UNKNOWN_MEMBER_ID).
    fn validate_current_member(
        &self,
        member_id: &str,
        instance: Option<&str>,
    ) -> Result<(), GroupError> {
        match instance {
            Some(i) => match self.static_members.get(i) {
                Some(current) if current != member_id => Err(GroupError::FencedInstanceId),
                Some(_) => Ok(()),
                None => Err(GroupError::UnknownMemberId),
            },
            None if self.members.contains_key(member_id) => Ok(()),
            None => Err(GroupError::UnknownMemberId),
        }
    }

    fn refresh(&mut self, now: i64, member_id: &str) {
        if let Some(m) = self.members.get_mut(member_id) {
            m.expires_at = now + i64::from(m.session_timeout_ms);
        }
    }

    /// Removes a member, answering its waiting requests with UNKNOWN_MEMBER_ID.
    fn remove_member(&mut self, member_id: &str, out: &mut Vec<Output>) {
        let Some(mut m) = self.members.remove(member_id) else {
            return;
        };
        if let Some((req, _)) = m.awaiting_join.take() {
            out.push(Output::Reply(
                req,
                Reply::Join(JoinResponse::error("", GroupError::UnknownMemberId)),
            ));
        }
        if let Some(req) = m.awaiting_sync.take() {
            out.push(Output::Reply(
                req,
                Reply::Sync(SyncResponse::error(GroupError::UnknownMemberId)),
            ));
        }
        if let Some(i) = &m.group_instance_id
            && self.static_members.get(i).map(String::as_str) == Some(member_id)
        {
            self.static_members.remove(i);
        }
        self.synced(member_id);
        if self.is_leader(member_id) {
            self.leader = self.members.keys().next().cloned();
        }
    }

    fn remove_member_and_update(&mut self, now: i64, member_id: &str, out: &mut Vec<Output>) {
        self.remove_member(member_id, out);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.maybe_prepare_rebalance(now, out)
            }
            GroupState::PreparingRebalance => self.try_complete_join(now, out),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    // ---- timers ----

    fn tick(&mut self, now: i64, out: &mut Vec<Output>) {
        if let Some(j) = self.join
            && now >= j.deadline
            && self.state == GroupState::PreparingRebalance
        {
            if j.initial && j.new_member_added && j.remaining_ms > 0 {
                // Members still arriving: extend the initial delay, within the rebalance timeout.
                let delay = i64::from(self.config.initial_rebalance_delay_ms).min(j.remaining_ms);
                self.join = Some(JoinTimer {
                    deadline: now + delay,
                    initial: true,
                    remaining_ms: (j.remaining_ms - delay).max(0),
                    new_member_added: false,
                });
            } else {
                self.complete_join(now, out);
            }
        }
        if let Some(d) = self.sync_deadline
            && now >= d
        {
            self.sync_deadline = None;
            if matches!(
                self.state,
                GroupState::CompletingRebalance | GroupState::Stable
            ) {
                // Members that never sent SyncGroup after the join are dropped.
                let late: Vec<String> =
                    std::mem::take(&mut self.pending_sync).into_iter().collect();
                for id in late {
                    self.remove_member_and_update(now, &id, out);
                }
            }
        }
        let expired_pending: Vec<String> = self
            .pending_members
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        if !expired_pending.is_empty() {
            for id in expired_pending {
                self.pending_members.remove(&id);
            }
            self.try_complete_join(now, out);
        }
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| !m.kept_alive() && m.expires_at <= now)
            .map(|m| m.member_id.clone())
            .collect();
        for id in expired {
            tracing::info!(group = %self.id, member = %id, "member session expired");
            self.remove_member_and_update(now, &id, out);
        }
    }
}

#[cfg(test)]
mod tests;
