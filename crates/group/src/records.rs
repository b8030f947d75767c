//! The keys and values of `__consumer_offsets` records, in Apache Kafka's own formats.
//!
//! Kafka's formats (not a Weir-specific one) so that a tool that reads Kafka's offsets topic
//! (`kafka-console-consumer --formatter ...OffsetsMessageFormatter`, Burrow, lag exporters)
//! reads Weir's too. Two kinds of record share the topic, told apart by the key's version:
//!
//! ```text
//! key v0/v1  (offset commit):  version i16 | group string | topic string | partition i32
//! key v2     (group metadata): version i16 | group string
//! value of an offset commit, v3:  version i16 | offset i64 | leader epoch i32 | metadata string
//!                                 | commit timestamp i64
//! value of a group, v3:  version i16 | protocol type string | generation i32
//!                        | protocol nullable string | leader nullable string
//!                        | state timestamp i64 | members [ member id string
//!                        | instance id nullable string | client id string | client host string
//!                        | rebalance timeout i32 | session timeout i32 | subscription bytes
//!                        | assignment bytes ]
//! ```
//! A record with a null value is a tombstone: the offset or the group was deleted. Older value
//! versions (0–2 for offsets, 0–2 for groups) are decoded too, so a log written by an older
//! writer still loads; Weir writes only the versions above.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use weir_model::{LeaderEpoch, Offset, PartitionId, Timestamp};

/// What a record's key names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordKey {
    Offset {
        group: String,
        topic: String,
        partition: PartitionId,
    },
    Group {
        group: String,
    },
}

impl RecordKey {
    pub fn group(&self) -> &str {
        match self {
            RecordKey::Offset { group, .. } | RecordKey::Group { group } => group,
        }
    }
}

/// A committed offset as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: Offset,
    /// None when the client did not say (Kafka's record holds -1 then).
    pub leader_epoch: Option<LeaderEpoch>,
    pub metadata: String,
    pub commit_timestamp: Timestamp,
}

/// A member as stored in a group record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// The member's metadata for the group's chosen protocol.
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// A group as stored: its generation, chosen protocol and members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub state_timestamp: i64,
    pub members: Vec<StoredMember>,
}

/// Why a record could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("record truncated while reading {0}")]
    Truncated(&'static str),
    #[error("unknown {what} version {version}")]
    UnknownVersion { what: &'static str, version: i16 },
    #[error("{0} is not valid UTF-8")]
    Utf8(&'static str),
    #[error("negative length for {0}")]
    NegativeLength(&'static str),
}

pub fn encode_offset_key(group: &str, topic: &str, partition: PartitionId) -> Bytes {
    let mut b = BytesMut::with_capacity(10 + group.len() + topic.len());
    b.put_i16(1);
    put_str(&mut b, group);
    put_str(&mut b, topic);
    b.put_i32(partition.get());
    b.freeze()
}

pub fn encode_group_key(group: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(4 + group.len());
    b.put_i16(2);
    put_str(&mut b, group);
    b.freeze()
}

pub fn encode_offset_value(v: &OffsetValue) -> Bytes {
    let mut b = BytesMut::with_capacity(28 + v.metadata.len());
    b.put_i16(3);
    b.put_i64(v.offset.get());
    b.put_i32(v.leader_epoch.map_or(-1, LeaderEpoch::get));
    put_str(&mut b, &v.metadata);
    b.put_i64(v.commit_timestamp.get());
    b.freeze()
}

pub fn encode_group_value(v: &GroupValue) -> Bytes {
    let mut b = BytesMut::with_capacity(64);
    b.put_i16(3);
    put_str(&mut b, &v.protocol_type);
    b.put_i32(v.generation);
    put_nullable_str(&mut b, v.protocol.as_deref());
    put_nullable_str(&mut b, v.leader.as_deref());
    b.put_i64(v.state_timestamp);
    b.put_i32(v.members.len() as i32);
    for m in &v.members {
        put_str(&mut b, &m.member_id);
        put_nullable_str(&mut b, m.instance_id.as_deref());
        put_str(&mut b, &m.client_id);
        put_str(&mut b, &m.client_host);
        b.put_i32(m.rebalance_timeout_ms);
        b.put_i32(m.session_timeout_ms);
        b.put_i32(m.subscription.len() as i32);
        b.put_slice(&m.subscription);
        b.put_i32(m.assignment.len() as i32);
        b.put_slice(&m.assignment);
    }
    b.freeze()
}

pub fn decode_key(mut b: &[u8]) -> Result<RecordKey, RecordError> {
    let version = get_i16(&mut b, "key version")?;
    match version {
        0 | 1 => Ok(RecordKey::Offset {
            group: get_str(&mut b, "group")?,
            topic: get_str(&mut b, "topic")?,
            partition: PartitionId(get_i32(&mut b, "partition")?),
        }),
        2 => Ok(RecordKey::Group {
            group: get_str(&mut b, "group")?,
        }),
        version => Err(RecordError::UnknownVersion {
            what: "key",
            version,
        }),
    }
}

pub fn decode_offset_value(mut b: &[u8]) -> Result<OffsetValue, RecordError> {
    let version = get_i16(&mut b, "offset value version")?;
    // Version 4 is Kafka's flexible (tagged-field) layout, not read here.
    if !(0..=3).contains(&version) {
        return Err(RecordError::UnknownVersion {
            what: "offset value",
            version,
        });
    }
    let offset = Offset(get_i64(&mut b, "offset")?);
    // Kafka's -1 (and versions without the field): the client did not say.
    let leader_epoch = if version >= 3 {
        Some(get_i32(&mut b, "leader epoch")?).filter(|e| *e >= 0)
    } else {
        None
    }
    .map(LeaderEpoch);
    let metadata = get_str(&mut b, "metadata")?;
    let commit_timestamp = Timestamp(get_i64(&mut b, "commit timestamp")?);
    // v1 carried an expire timestamp, dropped since; nothing after the commit time is needed.
    Ok(OffsetValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp,
    })
}

pub fn decode_group_value(mut b: &[u8]) -> Result<GroupValue, RecordError> {
    let version = get_i16(&mut b, "group value version")?;
    // Version 4 is Kafka's flexible (tagged-field) layout, not read here.
    if !(0..=3).contains(&version) {
        return Err(RecordError::UnknownVersion {
            what: "group value",
            version,
        });
    }
    let protocol_type = get_str(&mut b, "protocol type")?;
    let generation = get_i32(&mut b, "generation")?;
    let protocol = get_nullable_str(&mut b, "protocol")?;
    let leader = get_nullable_str(&mut b, "leader")?;
    let state_timestamp = if version >= 2 {
        get_i64(&mut b, "state timestamp")?
    } else {
        -1
    };
    let count = get_i32(&mut b, "member count")?;
    if count < 0 {
        return Err(RecordError::NegativeLength("members"));
    }
    // Each member takes at least 20 bytes: never reserve more than the record could hold.
    let mut members = Vec::with_capacity((count as usize).min(b.len() / 20));
    for _ in 0..count {
        let member_id = get_str(&mut b, "member id")?;
        let instance_id = if version >= 3 {
            get_nullable_str(&mut b, "instance id")?
        } else {
            None
        };
        let client_id = get_str(&mut b, "client id")?;
        let client_host = get_str(&mut b, "client host")?;
        let rebalance_timeout_ms = if version >= 1 {
            get_i32(&mut b, "rebalance timeout")?
        } else {
            -1
        };
        let session_timeout_ms = get_i32(&mut b, "session timeout")?;
        let subscription = get_bytes(&mut b, "subscription")?;
        let assignment = get_bytes(&mut b, "assignment")?;
        members.push(StoredMember {
            member_id,
            instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    Ok(GroupValue {
        protocol_type,
        generation,
        protocol,
        leader,
        state_timestamp,
        members,
    })
}

fn put_str(b: &mut BytesMut, s: &str) {
    // Group ids, topics and metadata are bounded well below i16::MAX by the request limits
    // (offset metadata by offset.metadata.max.bytes); truncating here would corrupt the
    // record, so a longer string is a bug in the caller.
    debug_assert!(s.len() <= i16::MAX as usize);
    b.put_i16(s.len() as i16);
    b.put_slice(s.as_bytes());
}

fn put_nullable_str(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(b, s),
        None => b.put_i16(-1),
    }
}

fn get_i16(b: &mut &[u8], what: &'static str) -> Result<i16, RecordError> {
    if b.remaining() < 2 {
        return Err(RecordError::Truncated(what));
    }
    Ok(b.get_i16())
}

fn get_i32(b: &mut &[u8], what: &'static str) -> Result<i32, RecordError> {
    if b.remaining() < 4 {
        return Err(RecordError::Truncated(what));
    }
    Ok(b.get_i32())
}

fn get_i64(b: &mut &[u8], what: &'static str) -> Result<i64, RecordError> {
    if b.remaining() < 8 {
        return Err(RecordError::Truncated(what));
    }
    Ok(b.get_i64())
}

fn get_nullable_str(b: &mut &[u8], what: &'static str) -> Result<Option<String>, RecordError> {
    let len = get_i16(b, what)?;
    if len < 0 {
        return Ok(None);
    }
    let len = len as usize;
    if b.remaining() < len {
        return Err(RecordError::Truncated(what));
    }
    let s = std::str::from_utf8(&b[..len])
        .map_err(|_| RecordError::Utf8(what))?
        .to_string();
    b.advance(len);
    Ok(Some(s))
}

fn get_str(b: &mut &[u8], what: &'static str) -> Result<String, RecordError> {
    get_nullable_str(b, what)?.ok_or(RecordError::NegativeLength(what))
}

fn get_bytes(b: &mut &[u8], what: &'static str) -> Result<Bytes, RecordError> {
    let len = get_i32(b, what)?;
    if len < 0 {
        return Ok(Bytes::new());
    }
    let len = len as usize;
    if b.remaining() < len {
        return Err(RecordError::Truncated(what));
    }
    let out = Bytes::copy_from_slice(&b[..len]);
    b.advance(len);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves: both kinds of key and value round-trip, and the offset key's bytes are Kafka's
    /// (version 1, then length-prefixed strings).
    #[test]
    fn keys_and_values_round_trip_in_kafkas_layout() {
        let k = encode_offset_key("g", "t", PartitionId(7));
        assert_eq!(&k[..], &[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 7]);
        assert_eq!(
            decode_key(&k),
            Ok(RecordKey::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: PartitionId(7)
            })
        );
        let g = encode_group_key("group-1");
        assert_eq!(
            decode_key(&g),
            Ok(RecordKey::Group {
                group: "group-1".into()
            })
        );
        let v = OffsetValue {
            offset: Offset(42),
            leader_epoch: Some(LeaderEpoch(3)),
            metadata: "meta".into(),
            commit_timestamp: Timestamp(1_700_000_000_000),
        };
        let unsaid = OffsetValue {
            leader_epoch: None,
            ..v.clone()
        };
        let bytes = encode_offset_value(&unsaid);
        assert_eq!(
            &bytes[10..14],
            &[0xff; 4],
            "no leader epoch is Kafka's -1 on disk"
        );
        assert_eq!(decode_offset_value(&bytes), Ok(unsaid));
        assert_eq!(decode_offset_value(&encode_offset_value(&v)), Ok(v));
        let gv = GroupValue {
            protocol_type: "consumer".into(),
            generation: 5,
            protocol: Some("range".into()),
            leader: Some("m-1".into()),
            state_timestamp: 9,
            members: vec![StoredMember {
                member_id: "m-1".into(),
                instance_id: Some("i-1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 45_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        assert_eq!(decode_group_value(&encode_group_value(&gv)), Ok(gv));
    }

    /// Proves: truncated and nonsense input is an error, never a panic or a huge allocation.
    #[test]
    fn truncated_and_hostile_records_are_errors() {
        let k = encode_offset_key("group", "topic", PartitionId(1));
        for cut in 0..k.len() {
            assert!(decode_key(&k[..cut]).is_err(), "cut at {cut}");
        }
        assert!(matches!(
            decode_key(&[0, 9]),
            Err(RecordError::UnknownVersion { .. })
        ));
        // A group value claiming two billion members in a few bytes.
        let mut b = BytesMut::new();
        b.put_i16(3);
        put_str(&mut b, "consumer");
        b.put_i32(1);
        b.put_i16(-1);
        b.put_i16(-1);
        b.put_i64(0);
        b.put_i32(i32::MAX);
        assert_eq!(
            decode_group_value(&b),
            Err(RecordError::Truncated("member id"))
        );
    }
}
