//! The embedded consumer protocol (protocol type `consumer`): the topics a member subscribes
//! to and the partitions it was assigned. One decoder for every reader: the group coordinator
//! (OffsetDelete refuses to delete the offsets of a topic the group subscribes to, as Kafka's
//! does), `weir group describe`, and `weir-kafka-admin` for the operator.
//!
//! A classic group's leader decides the assignment and sends each member its share as opaque
//! bytes in SyncGroup; DescribeGroups returns the same bytes. For groups whose protocol type
//! is `consumer` they are Kafka's `ConsumerProtocolAssignment`. Other protocol types (Kafka
//! Connect's `connect`, for example) have their own formats.
//!
//! Layout (big-endian, no tagged fields in any version):
//!
//! ```text
//! Subscription: version i16 | topics [string] | user data bytes | (v1+) owned partitions ...
//! Assignment:
//!   version              i16   0 to 3 are defined; every one has the fields below, and a
//!                              newer version may append fields, which a reader ignores
//!   topic count          i32   then, per topic:
//!     topic name         i16 length, then that many bytes of UTF-8
//!     partition count    i32   then that many
//!     partition          i32
//!   user data            i32 length (-1: null), then that many bytes
//! ```
//!
//! The user data is the assignor's (the sticky assignors put their generation there); some
//! clients leave it out entirely, which is read as null. Every count is checked against the
//! bytes that remain before anything is allocated, so a corrupt length cannot make a reader
//! reserve gigabytes.

use bytes::Buf;

/// Why assignment bytes do not decode: where, and what. Not a [`crate::GroupError`]: no
/// Kafka request fails on it; readers show it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("at byte {at}: {reason}")]
pub struct DecodeError {
    pub at: usize,
    pub reason: String,
}

/// The topics of a `consumer` protocol subscription, or None when the bytes are not one.
pub fn subscribed_topics(mut b: &[u8]) -> Option<Vec<String>> {
    let _version = get_i16(&mut b)?;
    let n = get_i32(&mut b)?;
    if n < 0 {
        return Some(Vec::new());
    }
    let mut topics = Vec::with_capacity((n as usize).min(b.len() / 2));
    for _ in 0..n {
        topics.push(get_str(&mut b)?);
    }
    Some(topics)
}

fn get_i16(b: &mut &[u8]) -> Option<i16> {
    (b.remaining() >= 2).then(|| b.get_i16())
}

fn get_i32(b: &mut &[u8]) -> Option<i32> {
    (b.remaining() >= 4).then(|| b.get_i32())
}

fn get_str(b: &mut &[u8]) -> Option<String> {
    let len = usize::try_from(get_i16(b)?).ok()?;
    if b.remaining() < len {
        return None;
    }
    let s = std::str::from_utf8(&b[..len]).ok()?.to_string();
    b.advance(len);
    Some(s)
}

/// The partitions of one topic assigned to a member, sorted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicAssignment {
    pub topic: String,
    pub partitions: Vec<i32>,
}

/// A decoded `ConsumerProtocolAssignment`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    pub version: i16,
    /// In the order the leader wrote them.
    pub topics: Vec<TopicAssignment>,
    pub user_data: Option<Vec<u8>>,
}

/// Encoded size of the smallest topic entry: an empty name and no partitions.
const TOPIC_ENTRY_BYTES_MIN: usize = 2 + 4;
const PARTITION_BYTES: usize = 4;

impl Assignment {
    /// Decodes assignment bytes. Empty bytes are a member without an assignment yet (during a
    /// rebalance), returned as version 0 with no topics.
    pub fn decode(bytes: &[u8]) -> Result<Assignment, DecodeError> {
        if bytes.is_empty() {
            return Ok(Assignment {
                version: 0,
                topics: Vec::new(),
                user_data: None,
            });
        }
        let mut r = Reader { bytes, at: 0 };
        let version = r.i16("version")?;
        if version < 0 {
            return Err(r.invalid(format!("version {version} is negative")));
        }
        let topic_count = r.count("topic count", TOPIC_ENTRY_BYTES_MIN)?;
        let mut topics = Vec::with_capacity(topic_count);
        for _ in 0..topic_count {
            let name_len = r.i16("topic name length")?;
            let name_len = usize::try_from(name_len)
                .map_err(|_| r.invalid(format!("topic name length {name_len} is negative")))?;
            let name = r.take(name_len, "topic name")?;
            let topic = std::str::from_utf8(name)
                .map_err(|e| r.invalid(format!("topic name is not UTF-8 ({e})")))?
                .to_string();
            let partition_count = r.count("partition count", PARTITION_BYTES)?;
            let mut partitions = Vec::with_capacity(partition_count);
            for _ in 0..partition_count {
                partitions.push(r.i32("partition")?);
            }
            partitions.sort_unstable();
            topics.push(TopicAssignment { topic, partitions });
        }
        let user_data = if r.remaining() == 0 {
            None
        } else {
            match r.i32("user data length")? {
                -1 => None,
                len => {
                    let len = usize::try_from(len)
                        .map_err(|_| r.invalid(format!("user data length {len} is negative")))?;
                    Some(r.take(len, "user data")?.to_vec())
                }
            }
        };
        // Anything after the user data belongs to a newer version: ignored, as Kafka does.
        Ok(Assignment {
            version,
            topics,
            user_data,
        })
    }

    /// Encodes with this assignment's version in the layout above (tests and tools build
    /// assignments with it).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&(self.topics.len() as i32).to_be_bytes());
        for t in &self.topics {
            out.extend_from_slice(&(t.topic.len() as i16).to_be_bytes());
            out.extend_from_slice(t.topic.as_bytes());
            out.extend_from_slice(&(t.partitions.len() as i32).to_be_bytes());
            for p in &t.partitions {
                out.extend_from_slice(&p.to_be_bytes());
            }
        }
        match &self.user_data {
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(data) => {
                out.extend_from_slice(&(data.len() as i32).to_be_bytes());
                out.extend_from_slice(data);
            }
        }
        out
    }
}

/// A cursor over the bytes that names the field and byte position of whatever goes wrong.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn invalid(&self, reason: String) -> DecodeError {
        DecodeError {
            at: self.at,
            reason,
        }
    }

    fn take(&mut self, len: usize, field: &str) -> Result<&'a [u8], DecodeError> {
        if len > self.remaining() {
            return Err(self.invalid(format!(
                "{field} needs {len} bytes, only {} remain",
                self.remaining()
            )));
        }
        let slice = &self.bytes[self.at..self.at + len];
        self.at += len;
        Ok(slice)
    }

    fn i16(&mut self, field: &str) -> Result<i16, DecodeError> {
        let b = self.take(2, field)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self, field: &str) -> Result<i32, DecodeError> {
        let b = self.take(4, field)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// An array length, checked against what the remaining bytes can hold at `entry_bytes_min`
    /// bytes an entry.
    fn count(&mut self, field: &str, entry_bytes_min: usize) -> Result<usize, DecodeError> {
        let n = self.i32(field)?;
        let n = usize::try_from(n).map_err(|_| self.invalid(format!("{field} {n} is negative")))?;
        if n > self.remaining() / entry_bytes_min {
            return Err(self.invalid(format!(
                "{field} {n} cannot fit in the {} bytes that remain",
                self.remaining()
            )));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_str(b: &mut bytes::BytesMut, s: &str) {
        use bytes::BufMut;
        b.put_i16(s.len() as i16);
        b.put_slice(s.as_bytes());
    }

    /// Proves: a librdkafka-shaped subscription decodes, and garbage is None.
    #[test]
    fn decodes_subscriptions() {
        use bytes::BufMut;
        let mut s = bytes::BytesMut::new();
        s.put_i16(1);
        s.put_i32(2);
        put_str(&mut s, "a");
        put_str(&mut s, "b");
        s.put_i32(-1);
        s.put_i32(0);
        assert_eq!(subscribed_topics(&s), Some(vec!["a".into(), "b".into()]));
        assert_eq!(subscribed_topics(&[0]), None);
    }

    fn assignment(topics: &[(&str, &[i32])], user_data: Option<&[u8]>) -> Assignment {
        Assignment {
            version: 0,
            topics: topics
                .iter()
                .map(|(t, p)| TopicAssignment {
                    topic: t.to_string(),
                    partitions: p.to_vec(),
                })
                .collect(),
            user_data: user_data.map(<[u8]>::to_vec),
        }
    }

    /// Bytes as the Java client's ConsumerProtocol.serializeAssignment writes them (version 3,
    /// topic "orders" partitions 0 and 2, null user data), spelled out by hand.
    const JAVA_V3: &[u8] = &[
        0, 3, // version
        0, 0, 0, 1, // one topic
        0, 6, b'o', b'r', b'd', b'e', b'r', b's', // "orders"
        0, 0, 0, 2, // two partitions
        0, 0, 0, 0, 0, 0, 0, 2, // 0, 2
        0xff, 0xff, 0xff, 0xff, // null user data
    ];

    #[test]
    fn decodes_the_java_clients_bytes() {
        let a = Assignment::decode(JAVA_V3).unwrap();
        assert_eq!(a.version, 3);
        assert_eq!(
            a.topics,
            vec![TopicAssignment {
                topic: "orders".into(),
                partitions: vec![0, 2]
            }]
        );
        assert_eq!(a.user_data, None);
    }

    #[test]
    fn round_trips_several_topics_and_user_data() {
        let a = assignment(
            &[("a", &[0, 1, 5]), ("b.c", &[]), ("d", &[7])],
            Some(b"\x00\x01gen"),
        );
        assert_eq!(Assignment::decode(&a.encode()).unwrap(), a);
    }

    #[test]
    fn partitions_come_out_sorted() {
        let mut a = assignment(&[("t", &[3, 0, 2])], None);
        let decoded = Assignment::decode(&a.encode()).unwrap();
        a.topics[0].partitions.sort_unstable();
        assert_eq!(decoded, a);
    }

    #[test]
    fn empty_bytes_are_no_assignment_and_missing_user_data_is_null() {
        assert!(Assignment::decode(&[]).unwrap().topics.is_empty());
        // librdkafka and some older clients end right after the partitions.
        let mut bytes = assignment(&[("t", &[1])], None).encode();
        bytes.truncate(bytes.len() - 4);
        let a = Assignment::decode(&bytes).unwrap();
        assert_eq!(
            (a.topics[0].partitions.as_slice(), a.user_data),
            (&[1][..], None)
        );
    }

    #[test]
    fn trailing_fields_of_a_newer_version_are_ignored() {
        let mut a = assignment(&[("t", &[0])], Some(b"u"));
        a.version = 9;
        let mut bytes = a.encode();
        bytes.extend_from_slice(b"future field");
        assert_eq!(Assignment::decode(&bytes).unwrap(), a);
    }

    #[test]
    fn every_truncation_is_an_error_that_names_the_field() {
        let bytes = assignment(&[("orders", &[0, 1])], Some(b"data")).encode();
        // Cutting inside the user data length leaves 1 to 3 stray bytes: an error too. Cutting
        // exactly before it is the "user data left out" case above.
        let before_user_data = bytes.len() - 8;
        for cut in 1..bytes.len() {
            if cut == before_user_data {
                continue;
            }
            let e = Assignment::decode(&bytes[..cut]).unwrap_err().to_string();
            assert!(
                e.contains("at byte") && e.contains("remain"),
                "cut at {cut}: {e}"
            );
        }
    }

    #[test]
    fn lengths_are_checked_before_allocating() {
        // A topic count of 2^31-1 in 10 bytes: refused without reserving anything.
        let e = Assignment::decode(&[0, 0, 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0])
            .unwrap_err()
            .to_string();
        assert!(e.contains("topic count 2147483647 cannot fit"), "{e}");
        let e = Assignment::decode(&[0, 0, 0xff, 0xff, 0xff, 0xfe])
            .unwrap_err()
            .to_string();
        assert!(e.contains("topic count -2 is negative"), "{e}");
        let e = Assignment::decode(&[0xff, 0xff, 0, 0, 0, 0])
            .unwrap_err()
            .to_string();
        assert!(e.contains("version -1 is negative"), "{e}");
        let bad_name = [0, 0, 0, 0, 0, 1, 0, 2, 0xff, 0xfe, 0, 0, 0, 0];
        let e = Assignment::decode(&bad_name).unwrap_err().to_string();
        assert!(e.contains("not UTF-8"), "{e}");
    }
}
