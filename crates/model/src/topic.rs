//! Topic names and ids.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The longest topic name Kafka accepts (249: a partition directory name `<topic>-<partition>`
/// must still fit in a 255-byte file name).
pub const TOPIC_NAME_LEN_MAX: usize = 249;

/// A topic name that follows Kafka's rules: 1 to 249 characters of ASCII letters, digits,
/// `.`, `_` and `-`, and neither `.` nor `..`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TopicName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicNameError {
    #[error("topic name is empty")]
    Empty,
    #[error("topic name cannot be \".\" or \"..\"")]
    Dots,
    #[error("topic name is {len} characters long; the limit is {TOPIC_NAME_LEN_MAX}")]
    TooLong { len: usize },
    #[error(
        "topic name {name:?} contains {bad:?}; allowed are ASCII letters, digits, '.', '_' and '-'"
    )]
    IllegalChar { name: String, bad: char },
}

impl TopicName {
    pub fn new(name: impl Into<String>) -> Result<TopicName, TopicNameError> {
        let name = name.into();
        if name.is_empty() {
            return Err(TopicNameError::Empty);
        }
        if name == "." || name == ".." {
            return Err(TopicNameError::Dots);
        }
        if name.len() > TOPIC_NAME_LEN_MAX {
            return Err(TopicNameError::TooLong { len: name.len() });
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(TopicNameError::IllegalChar { name, bad });
        }
        Ok(TopicName(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Kafka warns that `.` and `_` collide in metric names; so do we, by refusing a topic
    /// whose collision key equals an existing topic's.
    pub fn collision_key(&self) -> String {
        self.0.replace('.', "_")
    }
}

impl TryFrom<String> for TopicName {
    type Error = TopicNameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        TopicName::new(s)
    }
}

impl From<TopicName> for String {
    fn from(t: TopicName) -> String {
        t.0
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A topic's 128-bit id (Kafka's topic UUID). Never all zeroes for a real topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TopicId(pub [u8; 16]);

impl TopicId {
    pub const ZERO: TopicId = TopicId([0; 16]);

    pub fn to_hex(self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The canonical 36-character UUID form (`8-4-4-4-12` hex digits), as the gRPC API
    /// carries topic ids.
    pub fn to_uuid_string(self) -> String {
        let h = self.to_hex();
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }

    /// Parses the UUID form, with or without dashes.
    pub fn parse(text: &str) -> Option<TopicId> {
        let hex: Vec<u8> = text.bytes().filter(|&b| b != b'-').collect();
        if hex.len() != 32 || text.len() > 36 {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, pair) in hex.chunks(2).enumerate() {
            let s = std::str::from_utf8(pair).ok()?;
            out[i] = u8::from_str_radix(s, 16).ok()?;
        }
        Some(TopicId(out))
    }
}

impl fmt::Display for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn kafka_rules_are_enforced() {
        assert!(TopicName::new("orders.v1_eu-west").is_ok());
        assert_eq!(TopicName::new(""), Err(TopicNameError::Empty));
        assert_eq!(TopicName::new(".."), Err(TopicNameError::Dots));
        assert!(matches!(
            TopicName::new("a b"),
            Err(TopicNameError::IllegalChar { bad: ' ', .. })
        ));
        assert!(matches!(
            TopicName::new("x".repeat(250)),
            Err(TopicNameError::TooLong { .. })
        ));
        assert!(TopicName::new("x".repeat(249)).is_ok());
    }

    #[test]
    fn topic_ids_round_trip_through_uuid_text() {
        let id = TopicId([0xab; 16]);
        let text = id.to_uuid_string();
        assert_eq!(text.len(), 36);
        assert_eq!(TopicId::parse(&text), Some(id));
        assert_eq!(TopicId::parse(&id.to_hex()), Some(id));
        assert_eq!(TopicId::parse("nope"), None);
    }

    proptest! {
        #[test]
        fn accepted_names_are_safe_directory_names(s in "\\PC{0,300}") {
            if let Ok(name) = TopicName::new(s) {
                prop_assert!(!name.as_str().contains('/'));
                prop_assert!(name.as_str().len() <= TOPIC_NAME_LEN_MAX);
            }
        }
    }
}
