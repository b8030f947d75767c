//! Consumer-group status: [`Client::describe_group`] and [`Client::list_groups`].

use crate::client::{BrokerRef, Client, Cluster};
use crate::config::Isolation;
use crate::error::Error;
use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::{
    ApiKey, BrokerId as WireBrokerId, DescribeGroupsRequest, DescribeGroupsResponse, GroupId,
    ListGroupsRequest, ListOffsetsRequest, ListOffsetsResponse, OffsetFetchRequest,
    OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use std::collections::{BTreeMap, BTreeSet};
use tokio::task::{JoinError, JoinSet};
use weir_model::{BrokerId, Offset, PartitionId};

/// A partition of a topic.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: PartitionId,
}

/// A group as its coordinator describes it, with its committed offsets and their lag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    /// Kafka's name for the state: `Empty`, `PreparingRebalance`, `CompletingRebalance`,
    /// `Stable` or `Dead`. DescribeGroups describes classic groups only: a KIP-848 group
    /// (`group.protocol=consumer`) shows as `Dead` without members, with its offsets.
    pub state: String,
    /// `consumer` for Kafka consumers; empty while the group has no members.
    pub protocol_type: String,
    /// The assignor the members agreed on (`range`, `roundrobin`, ...).
    pub protocol: String,
    pub coordinator: BrokerRef,
    /// Sorted by member id.
    pub members: Vec<Member>,
    /// Every partition the group has a committed offset in, sorted by topic and partition.
    pub partitions: Vec<PartitionOffsets>,
}

/// A member of a classic group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// The partitions the group's leader gave it, sorted: decoded for protocol type
    /// `consumer`; empty for other protocol types, during a rebalance, and when the bytes do
    /// not decode (logged).
    pub assignment: Vec<TopicPartition>,
}

/// A partition's committed offset, end offset and lag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub topic: String,
    pub partition: PartitionId,
    pub committed: Offset,
    /// The end of the log at its leader (see [`Isolation`]), `None` when it could not be
    /// learned: the topic or partition no longer exists, it has no leader, its leader kept
    /// moving through the retries, or did not answer within the request timeout.
    pub end: Option<Offset>,
    /// `end - committed`. Negative when the committed offset lies past the end (the log was
    /// truncated or recreated, or a read_uncommitted consumer committed inside an open
    /// transaction and lag is measured read_committed).
    pub lag: Option<i64>,
}

/// A group as ListGroups lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    pub protocol_type: String,
    /// From ListGroups v4 (Kafka 2.6) on.
    pub state: Option<String>,
    /// `classic` or `consumer`, from ListGroups v5 (Kafka 3.8) on.
    pub group_type: Option<String>,
    /// The broker that listed it: the group's coordinator.
    pub coordinator: BrokerRef,
}

const GROUP_ID_NOT_FOUND: i16 = ResponseError::GroupIdNotFound.code();
const UNKNOWN_TOPIC_OR_PARTITION: i16 = ResponseError::UnknownTopicOrPartition.code();
/// ListOffsets' timestamp for "the end of the log".
const LATEST_TIMESTAMP: i64 = -1;

impl Client {
    /// Describes `group`: FindCoordinator, then DescribeGroups and OffsetFetch (every topic) at
    /// the coordinator, then Metadata and ListOffsets(latest) at each partition's leader, one
    /// request per leader, concurrently.
    ///
    /// A moving coordinator (NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS,
    /// COORDINATOR_NOT_AVAILABLE) or an unreachable broker is retried with fresh metadata; a
    /// moving partition leader is retried for its partitions only, which end without an end
    /// offset if it does not settle. A group its coordinator does not know, or knows as Dead
    /// with no offsets, is [`Error::GroupNotFound`].
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription, Error> {
        self.retrying("describe_group", || async {
            self.describe_group_once(group).await
        })
        .await
    }

    async fn describe_group_once(&self, group: &str) -> Result<GroupDescription, Error> {
        let coordinator = self.find_coordinator(group).await?;
        let at = coordinator.address();
        let subject = format!("group {group}");

        let (_, described) = self
            .request(&at, |_version| {
                DescribeGroupsRequest::default()
                    .with_groups(vec![GroupId(StrBytes::from_string(group.to_string()))])
            })
            .await?;
        let described = described_group(described, group, &at, &subject)?;

        let (version, fetched) = self
            .request(&at, |version| offset_fetch_request(group, version))
            .await?;
        let committed = committed_offsets(fetched, version, &at, &subject)?;

        if described.state == "Dead" && described.members.is_empty() && committed.is_empty() {
            return Err(Error::GroupNotFound {
                group: group.to_string(),
            });
        }

        let ends = self
            .end_offsets(committed.keys().cloned().collect())
            .await?;
        let partitions = committed
            .into_iter()
            .map(|(tp, committed)| {
                let end = ends.get(&tp).copied();
                PartitionOffsets {
                    lag: end.map(|e| e.get() - committed.get()),
                    topic: tp.topic,
                    partition: tp.partition,
                    committed,
                    end,
                }
            })
            .collect();
        Ok(GroupDescription {
            group_id: group.to_string(),
            state: described.state,
            protocol_type: described.protocol_type,
            protocol: described.protocol,
            coordinator,
            members: described.members,
            partitions,
        })
    }

    /// The end offset of each partition, from its leader. Partitions whose end cannot be
    /// learned are left out (see [`PartitionOffsets::end`]).
    async fn end_offsets(
        &self,
        partitions: BTreeSet<TopicPartition>,
    ) -> Result<BTreeMap<TopicPartition, Offset>, Error> {
        let mut ends = BTreeMap::new();
        let mut pending = partitions;
        let mut retry = 0;
        let mut last_error: Option<String> = None;
        while !pending.is_empty() {
            if retry > 0 {
                tokio::time::sleep(self.config().backoff(retry - 1)).await;
            }
            let topics: BTreeSet<String> = pending.iter().map(|tp| tp.topic.clone()).collect();
            let cluster = self
                .metadata(&topics.into_iter().collect::<Vec<_>>())
                .await?;
            let by_leader = route(&mut pending, &cluster);

            let mut tasks = JoinSet::new();
            for (leader, partitions) in by_leader {
                let client = self.clone();
                tasks.spawn(async move {
                    let result = client.list_offsets(&leader.address(), &partitions).await;
                    (leader, partitions, result)
                });
            }
            while let Some(joined) = tasks.join_next().await {
                let (leader, asked, result) = joined.unwrap_or_else(propagate_panic);
                match result {
                    Ok(answers) => {
                        for (tp, answer) in answers {
                            if !asked.contains(&tp) {
                                continue;
                            }
                            take_answer(
                                &leader,
                                tp,
                                answer,
                                &mut pending,
                                &mut ends,
                                &mut last_error,
                            );
                        }
                    }
                    Err(e) if e.is_retriable() => last_error = Some(e.to_string()),
                    // A leader that hangs costs one timeout, not one per retry, and does not
                    // hide the rest of the group's status.
                    Err(e @ Error::Timeout { .. }) => {
                        tracing::warn!(leader = %leader, error = %weir_model::Chain(&e), "no end offsets");
                        pending.retain(|tp| !asked.contains(tp));
                    }
                    Err(e) => return Err(e),
                }
            }
            if retry >= self.config().retries_max {
                break;
            }
            retry += 1;
        }
        if !pending.is_empty() {
            tracing::warn!(
                partitions = pending.len(),
                last_error = last_error.as_deref().unwrap_or("no leader"),
                "no end offset after retries"
            );
        }
        Ok(ends)
    }

    /// ListOffsets(latest) for `partitions` at `leader`: per partition, the offset or the
    /// error code.
    async fn list_offsets(
        &self,
        leader: &str,
        partitions: &BTreeSet<TopicPartition>,
    ) -> Result<Vec<(TopicPartition, Result<Offset, i16>)>, Error> {
        let config = self.config();
        let isolation = match config.isolation {
            Isolation::ReadUncommitted => 0,
            Isolation::ReadCommitted => 1,
        };
        // The broker's own wait (v10+, for tiered-storage lookups) ends before ours, so a slow
        // lookup comes back as its error rather than as our timeout.
        let timeout_ms =
            i32::try_from((config.request_timeout / 2).as_millis()).unwrap_or(i32::MAX);
        let (_, response) = self
            .request(leader, |version| {
                list_offsets_request(partitions, version, isolation, timeout_ms)
            })
            .await?;
        Ok(list_offsets_answers(response))
    }

    /// Every group of every broker, sorted by group id. Fails if a broker does not answer.
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>, Error> {
        self.retrying("list_groups", || self.list_groups_once())
            .await
    }

    async fn list_groups_once(&self) -> Result<Vec<GroupListing>, Error> {
        let cluster = self.metadata(&[]).await?;
        let mut tasks = JoinSet::new();
        for broker in cluster.brokers.into_values() {
            let client = self.clone();
            tasks.spawn(async move {
                let result = client
                    .request(&broker.address(), |_version| ListGroupsRequest::default())
                    .await;
                (broker, result)
            });
        }
        let mut groups = BTreeMap::new();
        while let Some(joined) = tasks.join_next().await {
            let (broker, result) = joined.unwrap_or_else(propagate_panic);
            let (version, response) = result?;
            if response.error_code != 0 {
                return Err(Error::Kafka {
                    broker: broker.address(),
                    api: ApiKey::ListGroups,
                    subject: "the groups it coordinates".into(),
                    code: response.error_code,
                    message: None,
                });
            }
            for g in response.groups {
                let group_id = g.group_id.0.to_string();
                // A group moving between coordinators can be listed by both; keep one.
                groups.entry(group_id.clone()).or_insert(GroupListing {
                    group_id,
                    protocol_type: g.protocol_type.to_string(),
                    state: (version >= 4).then(|| g.group_state.to_string()),
                    group_type: (version >= 5).then(|| g.group_type.to_string()),
                    coordinator: broker.clone(),
                });
            }
        }
        Ok(groups.into_values().collect())
    }
}

/// Takes one partition's ListOffsets answer from `leader`: an end offset, a retriable error
/// (the partition is asked again), or another error (given up, with a warning).
fn take_answer(
    leader: &impl std::fmt::Display,
    tp: TopicPartition,
    answer: Result<Offset, i16>,
    pending: &mut BTreeSet<TopicPartition>,
    ends: &mut BTreeMap<TopicPartition, Offset>,
    last_error: &mut Option<String>,
) {
    match answer {
        Ok(offset) => {
            pending.remove(&tp);
            ends.insert(tp, offset);
        }
        // Metadata just named this leader, so even
        // UNKNOWN_TOPIC_OR_PARTITION means it moved: ask again.
        Err(code) if ResponseError::try_from_code(code).is_some_and(|e| e.is_retriable()) => {
            *last_error = Some(format!(
                "{}-{} at {leader}: {}",
                tp.topic,
                tp.partition,
                crate::error::kafka_error_name(code)
            ));
        }
        Err(code) => {
            tracing::warn!(
                topic = %tp.topic, partition = tp.partition.get(),
                leader = %leader, error = %crate::error::kafka_error_name(code),
                "no end offset"
            );
            pending.remove(&tp);
        }
    }
}

/// A task of ours panicked: a bug; carry the panic on in the caller.
fn propagate_panic<T>(e: JoinError) -> T {
    match e.try_into_panic() {
        Ok(payload) => std::panic::resume_unwind(payload),
        // Nothing aborts these tasks while they are awaited here.
        Err(e) => panic!("a ListOffsets task was cancelled: {e}"),
    }
}

/// Groups `pending` by the leader to ask. Drops partitions whose end cannot be learned at all
/// (topic or partition gone, topic refused); keeps leaderless ones for the next round.
fn route(
    pending: &mut BTreeSet<TopicPartition>,
    cluster: &Cluster,
) -> BTreeMap<BrokerRef, BTreeSet<TopicPartition>> {
    let mut by_leader: BTreeMap<BrokerRef, BTreeSet<TopicPartition>> = BTreeMap::new();
    pending.retain(|tp| {
        let Some(topic) = cluster.topics.get(&tp.topic) else {
            return false;
        };
        match topic.error_code {
            0 => {}
            // A deleted topic's offsets stay committed until they expire; no point retrying.
            UNKNOWN_TOPIC_OR_PARTITION => return false,
            code => {
                return ResponseError::try_from_code(code).is_some_and(|e| e.is_retriable());
            }
        }
        let Some(leader) = topic.leaders.get(&tp.partition) else {
            return false;
        };
        if let Some(broker) = leader.and_then(|id: BrokerId| cluster.brokers.get(&id)) {
            by_leader
                .entry(broker.clone())
                .or_default()
                .insert(tp.clone());
        }
        true
    });
    by_leader
}

fn list_offsets_request(
    partitions: &BTreeSet<TopicPartition>,
    version: i16,
    isolation: i8,
    timeout_ms: i32,
) -> ListOffsetsRequest {
    let mut topics: BTreeMap<&str, Vec<ListOffsetsPartition>> = BTreeMap::new();
    for tp in partitions {
        topics.entry(&tp.topic).or_default().push(
            ListOffsetsPartition::default()
                .with_partition_index(tp.partition.get())
                .with_timestamp(LATEST_TIMESTAMP),
        );
    }
    let mut request = ListOffsetsRequest::default()
        // -1: a client, not a follower.
        .with_replica_id(WireBrokerId(-1))
        .with_topics(
            topics
                .into_iter()
                .map(|(name, partitions)| {
                    ListOffsetsTopic::default()
                        .with_name(TopicName(StrBytes::from_string(name.to_string())))
                        .with_partitions(partitions)
                })
                .collect(),
        );
    // Isolation arrived in v2, the timeout (for tiered storage lookups) in v10; an older
    // version refuses to encode a field it does not have.
    if version >= 2 {
        request.isolation_level = isolation;
    }
    if version >= 10 {
        request.timeout_ms = timeout_ms;
    }
    request
}

fn list_offsets_answers(
    response: ListOffsetsResponse,
) -> Vec<(TopicPartition, Result<Offset, i16>)> {
    let mut out = Vec::new();
    for t in response.topics {
        for p in t.partitions {
            let tp = TopicPartition {
                topic: t.name.0.to_string(),
                partition: PartitionId(p.partition_index),
            };
            let answer = match p.error_code {
                0 if p.offset >= 0 => Ok(Offset(p.offset)),
                // No error and no offset: nothing the leader can say; counts as unknown.
                0 => Err(ResponseError::UnknownServerError.code()),
                code => Err(code),
            };
            out.push((tp, answer));
        }
    }
    out
}

fn offset_fetch_request(group: &str, version: i16) -> OffsetFetchRequest {
    let group_id = GroupId(StrBytes::from_string(group.to_string()));
    // v8 batched the groups (KIP-709). Null topics: every partition with a committed offset.
    // Member id null and epoch -1: an outside reader, not a KIP-848 member.
    if version >= 8 {
        OffsetFetchRequest::default().with_groups(vec![
            OffsetFetchRequestGroup::default()
                .with_group_id(group_id)
                .with_topics(None),
        ])
    } else {
        OffsetFetchRequest::default()
            .with_group_id(group_id)
            .with_topics(None)
    }
}

/// The committed offsets in an OffsetFetch response, by partition. Partitions without an
/// offset (-1) are left out, and so are partitions the coordinator answered with an error
/// (logged): one unreadable partition should not hide the group's status.
fn committed_offsets(
    response: OffsetFetchResponse,
    version: i16,
    broker: &str,
    subject: &str,
) -> Result<BTreeMap<TopicPartition, Offset>, Error> {
    let kafka_error = |code: i16| Error::Kafka {
        broker: broker.to_string(),
        api: ApiKey::OffsetFetch,
        subject: subject.to_string(),
        code,
        message: None,
    };
    let mut out = BTreeMap::new();
    let mut add = |topic: &TopicName, partition: i32, offset: i64, code: i16| {
        if code != 0 {
            tracing::warn!(
                topic = topic.0.as_str(), partition, error = %crate::error::kafka_error_name(code),
                "committed offset not readable"
            );
        } else if offset >= 0 {
            out.insert(
                TopicPartition {
                    topic: topic.0.to_string(),
                    partition: PartitionId(partition),
                },
                Offset(offset),
            );
        }
    };
    if version >= 8 {
        let group = response
            .groups
            .into_iter()
            .next()
            .ok_or_else(|| Error::Protocol {
                broker: broker.to_string(),
                api: ApiKey::OffsetFetch,
                reason: format!("no answer for {subject}"),
            })?;
        match group.error_code {
            0 => {}
            // The new coordinator's answer for a group it does not know: no offsets.
            GROUP_ID_NOT_FOUND => return Ok(BTreeMap::new()),
            code => return Err(kafka_error(code)),
        }
        for t in &group.topics {
            for p in &t.partitions {
                add(&t.name, p.partition_index, p.committed_offset, p.error_code);
            }
        }
    } else {
        match response.error_code {
            0 => {}
            GROUP_ID_NOT_FOUND => return Ok(BTreeMap::new()),
            code => return Err(kafka_error(code)),
        }
        for t in &response.topics {
            for p in &t.partitions {
                add(&t.name, p.partition_index, p.committed_offset, p.error_code);
            }
        }
    }
    Ok(out)
}

/// The parts of a DescribeGroups answer the description keeps.
#[derive(Debug)]
struct Described {
    state: String,
    protocol_type: String,
    protocol: String,
    members: Vec<Member>,
}

fn described_group(
    response: DescribeGroupsResponse,
    group: &str,
    broker: &str,
    subject: &str,
) -> Result<Described, Error> {
    let g = response
        .groups
        .into_iter()
        .find(|g| g.group_id.0.as_str() == group)
        .ok_or_else(|| Error::Protocol {
            broker: broker.to_string(),
            api: ApiKey::DescribeGroups,
            reason: format!("no answer for {subject}"),
        })?;
    match g.error_code {
        0 => {}
        // DescribeGroups v6 (Kafka 4.0) answers GROUP_ID_NOT_FOUND where older versions answer
        // Dead: for an unknown group, and for a KIP-848 group (not a classic one). The
        // committed offsets decide whether the group exists.
        GROUP_ID_NOT_FOUND => {
            return Ok(Described {
                state: "Dead".into(),
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            });
        }
        code => {
            return Err(Error::Kafka {
                broker: broker.to_string(),
                api: ApiKey::DescribeGroups,
                subject: subject.to_string(),
                code,
                message: g.error_message.map(|m| m.to_string()),
            });
        }
    }
    let consumer = g.protocol_type.as_str() == "consumer";
    let mut members: Vec<Member> = g
        .members
        .into_iter()
        .map(|m| {
            let assignment = if consumer {
                decode_assignment(&m.member_assignment).unwrap_or_else(|e| {
                    tracing::warn!(
                        group, member = m.member_id.as_str(), error = %weir_model::Chain(&*e),
                        "assignment does not decode"
                    );
                    Vec::new()
                })
            } else {
                Vec::new()
            };
            Member {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.map(|s| s.to_string()),
                client_id: m.client_id.to_string(),
                client_host: m.client_host.to_string(),
                assignment,
            }
        })
        .collect();
    members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
    Ok(Described {
        state: g.group_state.to_string(),
        protocol_type: g.protocol_type.to_string(),
        protocol: g.protocol_data.to_string(),
        members,
    })
}

/// A `consumer` protocol assignment as sorted topic-partitions (`weir_group`'s decoder, the
/// one every reader uses). Empty bytes: no assignment yet (mid-rebalance).
pub(crate) fn decode_assignment(
    bytes: &Bytes,
) -> Result<Vec<TopicPartition>, Box<dyn std::error::Error + Send + Sync>> {
    let assignment = weir_group::consumer_protocol::Assignment::decode(bytes)?;
    let mut out: Vec<TopicPartition> = assignment
        .topics
        .into_iter()
        .flat_map(|t| {
            let topic = t.topic;
            t.partitions.into_iter().map(move |p| TopicPartition {
                topic: topic.clone(),
                partition: PartitionId(p),
            })
        })
        .collect();
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::ConsumerProtocolAssignment;
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as WireTp;
    use kafka_protocol::protocol::Encodable;

    fn encoded(version: i16, a: &ConsumerProtocolAssignment) -> Vec<u8> {
        let mut buf = bytes::BytesMut::new();
        buf.extend_from_slice(&version.to_be_bytes());
        a.encode(&mut buf, version).expect("encodes");
        buf.to_vec()
    }

    fn assignment() -> ConsumerProtocolAssignment {
        ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            WireTp::default()
                .with_topic(TopicName(StrBytes::from_static_str("b")))
                .with_partitions(vec![2, 0]),
            WireTp::default()
                .with_topic(TopicName(StrBytes::from_static_str("a")))
                .with_partitions(vec![1]),
        ])
    }

    fn tp(topic: &str, p: i32) -> TopicPartition {
        TopicPartition {
            topic: topic.into(),
            partition: PartitionId(p),
        }
    }

    #[test]
    fn assignments_decode_sorted_in_every_version() {
        for version in 0..=3 {
            let bytes = Bytes::from(encoded(version, &assignment()));
            assert_eq!(
                decode_assignment(&bytes).expect("decodes"),
                vec![tp("a", 1), tp("b", 0), tp("b", 2)],
                "version {version}"
            );
        }
    }

    #[test]
    fn assignments_without_user_data_and_of_newer_versions_decode() {
        let mut bytes = encoded(1, &assignment());
        // Null user data is the last four bytes; some clients do not write them at all.
        bytes.truncate(bytes.len() - 4);
        assert_eq!(
            decode_assignment(&Bytes::from(bytes))
                .expect("decodes")
                .len(),
            3
        );
        let mut bytes = encoded(3, &assignment());
        bytes[..2].copy_from_slice(&9i16.to_be_bytes());
        bytes.extend_from_slice(b"a field of version 9");
        assert_eq!(
            decode_assignment(&Bytes::from(bytes))
                .expect("decodes")
                .len(),
            3
        );
    }

    #[test]
    fn broken_assignments_are_errors_not_panics() {
        assert_eq!(decode_assignment(&Bytes::new()).expect("empty"), vec![]);
        for bad in [&[0u8][..], &[0xff, 0xff], &[0, 0, 0x7f, 0xff, 0xff, 0xff]] {
            assert!(
                decode_assignment(&Bytes::copy_from_slice(bad)).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn list_offsets_requests_only_carry_fields_their_version_has() {
        let parts: BTreeSet<TopicPartition> = [tp("a", 0), tp("a", 1), tp("b", 0)].into();
        for version in 1..=10 {
            let r = list_offsets_request(&parts, version, 1, 5000);
            let mut buf = bytes::BytesMut::new();
            r.encode(&mut buf, version)
                .unwrap_or_else(|e| panic!("v{version}: {e}"));
            assert_eq!(r.replica_id.0, -1);
            assert_eq!(r.topics.len(), 2);
            assert_eq!(r.isolation_level, if version >= 2 { 1 } else { 0 });
        }
        for version in 2..=9 {
            let r = offset_fetch_request("g", version);
            let mut buf = bytes::BytesMut::new();
            r.encode(&mut buf, version)
                .unwrap_or_else(|e| panic!("OffsetFetch v{version}: {e}"));
        }
    }
}
