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
