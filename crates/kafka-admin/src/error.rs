//! The one error type of this crate.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::ApiKey;
use std::fmt;
use std::time::Duration;

/// Why a call failed. Every variant that involves a broker names it (`host:port`) and the API.
///
/// [`Error::is_retriable`] tells the caller whether trying again later can help; the client has
/// already retried those a bounded number of times ([`crate::ClientConfig::retries_max`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("no bootstrap broker is configured")]
    NoBootstrap,

    #[error("connecting to {broker}")]
    Connect {
        broker: String,
        #[source]
        source: std::io::Error,
    },

    #[error("connecting to {broker}: no connection within {timeout:?}")]
    ConnectTimeout { broker: String, timeout: Duration },

    #[error("{api:?} to {broker}: the connection failed")]
    Io {
        broker: String,
        api: ApiKey,
        #[source]
        source: std::io::Error,
    },

    #[error("{api:?} to {broker}: no response within {timeout:?}")]
    Timeout {
        broker: String,
        api: ApiKey,
        timeout: Duration,
    },

    /// The response's length prefix is above `response_bytes_max`; nothing was allocated for it.
    #[error(
        "{api:?} response from {broker} claims {len} bytes; the limit (response_bytes_max) is {max}"
    )]
    ResponseTooLarge {
        broker: String,
        api: ApiKey,
        len: i64,
        max: usize,
    },

    #[error("{api:?} response from {broker} has correlation id {got}, expected {expected}")]
    CorrelationMismatch {
        broker: String,
        api: ApiKey,
        expected: i32,
        got: i32,
    },

    #[error("decoding the {api:?} v{version} response from {broker}")]
    Decode {
        broker: String,
        api: ApiKey,
        version: i16,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A request this client built could not be encoded: a bug here, not a broker's fault.
    #[error("encoding the {api:?} v{version} request for {broker}")]
    Encode {
        broker: String,
        api: ApiKey,
        version: i16,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The broker does not serve the API, or no version of it this client speaks.
    #[error(
        "{broker} serves no version of {api:?} this client speaks (client v{}..=v{}, broker {})",
        client.0, client.1, BrokerRange(*broker_range)
    )]
    UnsupportedVersion {
        broker: String,
        api: ApiKey,
        client: (i16, i16),
        broker_range: Option<(i16, i16)>,
    },

    /// The broker answered with a Kafka error code.
    #[error(
        "{api:?} at {broker} for {subject}: {} ({code}){}",
        kafka_error_name(*code), Message(message.as_deref())
    )]
    Kafka {
        broker: String,
        api: ApiKey,
        /// What the error is about: `group g`, `orders-2`.
        subject: String,
        code: i16,
        message: Option<String>,
    },

    /// The broker's response does not make sense (a field out of range, an answer missing).
    #[error("{api:?} response from {broker}: {reason}")]
    Protocol {
        broker: String,
        api: ApiKey,
        reason: String,
    },

    /// The group's coordinator does not know it: never created, deleted, or expired (no members
    /// and no committed offsets).
    #[error("consumer group {group:?} does not exist")]
    GroupNotFound { group: String },
}

impl Error {
    /// Whether trying again (after refreshing metadata) can succeed: the broker was unreachable,
    /// or Kafka called the error retriable (NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS,
    /// NOT_LEADER_OR_FOLLOWER, ...). Timeouts are not: a broker that hangs would make every
    /// retry wait the whole request timeout again.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Connect { .. } | Error::Io { .. } => true,
            Error::Kafka { code, .. } => {
                ResponseError::try_from_code(*code).is_some_and(|e| e.is_retriable())
            }
            _ => false,
        }
    }

    /// The Kafka error code, for [`Error::Kafka`].
    pub fn kafka_code(&self) -> Option<i16> {
        match self {
            Error::Kafka { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Kafka's name for an error code, as its documentation and tools spell it
/// (`NOT_COORDINATOR`), derived from kafka-protocol's variant name (`NotCoordinator`).
pub fn kafka_error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE".to_string(),
        Some(ResponseError::Unknown(_)) => "UNKNOWN_ERROR_CODE".to_string(),
        Some(e) => {
            let camel = e.to_string();
            let mut name = String::with_capacity(camel.len() + 8);
            for (i, c) in camel.chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    name.push('_');
                }
                name.push(c.to_ascii_uppercase());
            }
            name
        }
    }
}

struct Message<'a>(Option<&'a str>);

impl fmt::Display for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(m) if !m.is_empty() => write!(f, ": {m}"),
            _ => Ok(()),
        }
    }
}

struct BrokerRange(Option<(i16, i16)>);

impl fmt::Display for BrokerRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some((lo, hi)) => write!(f, "v{lo}..=v{hi}"),
            None => f.write_str("does not list it"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_names_match_kafkas_spelling() {
        assert_eq!(kafka_error_name(16), "NOT_COORDINATOR");
        assert_eq!(kafka_error_name(14), "COORDINATOR_LOAD_IN_PROGRESS");
        assert_eq!(kafka_error_name(69), "GROUP_ID_NOT_FOUND");
        assert_eq!(kafka_error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(kafka_error_name(0), "NONE");
        assert_eq!(kafka_error_name(30_000), "UNKNOWN_ERROR_CODE");
    }

    #[test]
    fn kafka_errors_say_where_and_what() {
        let e = Error::Kafka {
            broker: "b1:9092".into(),
            api: ApiKey::DescribeGroups,
            subject: "group g".into(),
            code: 16,
            message: Some("moved".into()),
        };
        assert_eq!(
            e.to_string(),
            "DescribeGroups at b1:9092 for group g: NOT_COORDINATOR (16): moved"
        );
        assert!(e.is_retriable());
        let e = Error::Kafka {
            broker: "b1:9092".into(),
            api: ApiKey::OffsetFetch,
            subject: "group g".into(),
            code: 30,
            message: None,
        };
        assert_eq!(
            e.to_string(),
            "OffsetFetch at b1:9092 for group g: GROUP_AUTHORIZATION_FAILED (30)"
        );
        assert!(!e.is_retriable());
    }
}
