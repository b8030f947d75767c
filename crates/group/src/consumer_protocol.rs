//! Reading the embedded consumer protocol (protocol type `consumer`): the topics a member
//! subscribes to and the partitions it was assigned. The coordinator treats these bytes as
//! opaque except for two things Kafka also peeks at: OffsetDelete refuses to delete the offsets
//! of a topic the group subscribes to, and lag is reported per assigned partition.
//!
//! ```text
//! Subscription: version i16 | topics [string] | user data bytes | (v1+) owned partitions ...
//! Assignment:   version i16 | [topic string | partitions [i32]] | user data bytes
//! ```

use bytes::Buf;
use std::collections::BTreeMap;

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

/// The partitions of a `consumer` protocol assignment, by topic, or None when the bytes are
/// not one. An empty assignment (no bytes) is an empty map.
pub fn assigned_partitions(mut b: &[u8]) -> Option<BTreeMap<String, Vec<i32>>> {
    let mut out = BTreeMap::new();
    if b.is_empty() {
        return Some(out);
    }
    let _version = get_i16(&mut b)?;
    let n = get_i32(&mut b)?;
    for _ in 0..n.max(0) {
        let topic = get_str(&mut b)?;
        let count = get_i32(&mut b)?;
        let mut parts = Vec::with_capacity((count.max(0) as usize).min(b.len() / 4));
        for _ in 0..count.max(0) {
            parts.push(get_i32(&mut b)?);
        }
        out.insert(topic, parts);
    }
    Some(out)
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};

    fn put_str(b: &mut BytesMut, s: &str) {
        b.put_i16(s.len() as i16);
        b.put_slice(s.as_bytes());
    }

    /// Proves: a librdkafka-shaped subscription and assignment decode, and garbage is None.
    #[test]
    fn decodes_subscriptions_and_assignments() {
        let mut s = BytesMut::new();
        s.put_i16(1);
        s.put_i32(2);
        put_str(&mut s, "a");
        put_str(&mut s, "b");
        s.put_i32(-1);
        s.put_i32(0);
        assert_eq!(subscribed_topics(&s), Some(vec!["a".into(), "b".into()]));

        let mut a = BytesMut::new();
        a.put_i16(0);
        a.put_i32(1);
        put_str(&mut a, "a");
        a.put_i32(2);
        a.put_i32(0);
        a.put_i32(3);
        a.put_i32(-1);
        let got = assigned_partitions(&a).expect("decodes");
        assert_eq!(got.get("a"), Some(&vec![0, 3]));
        assert_eq!(assigned_partitions(&[]), Some(BTreeMap::new()));
        assert_eq!(assigned_partitions(&[0, 0, 0, 0, 0, 5, 0]), None);
        assert_eq!(subscribed_topics(&[0]), None);
    }
}
