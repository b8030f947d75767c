//! A small async Kafka client for consumer-group status, for the operator.
//!
//! It speaks the Kafka protocol over tokio TCP with `kafka-protocol`'s generated messages, and
//! answers two questions: how is a group doing ([`Client::describe_group`]: state, members and
//! their assignments, and per partition the committed offset, the end offset and the lag), and
//! which groups exist ([`Client::list_groups`]). It reads and never changes anything, so every
//! call may be retried. librdkafka is not an option: the operator carries no C library but glibc.
//!
//! - [`config`]: [`ClientConfig`] and its limits (response size, timeout, retries).
//! - `connection`: one TCP connection: framing, correlation ids, ApiVersions negotiation.
//! - `client`: [`Client`]: a connection per broker, Metadata, FindCoordinator, retries.
//! - `group`: the group calls and the types they return.
//! - [`error`]: [`Error`], with the broker, the API and Kafka's error name.
//!
//! The path of a describe:
//!
//! ```text
//! describe_group(g)
//!   ├─ FindCoordinator(g) ─────────────── any broker (newest metadata, then bootstrap)
//!   ├─ DescribeGroups([g]) ─┐
//!   ├─ OffsetFetch(g, all) ─┴──────────── the coordinator
//!   ├─ Metadata(topics with offsets) ──── any broker: partition leaders
//!   └─ ListOffsets(latest) ────────────── each leader, one request per leader, concurrently
//!        NOT_LEADER_OR_FOLLOWER etc.: those partitions again, after fresh metadata
//! NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS, an unreachable broker: the whole describe
//! again, a bounded number of times with a doubling backoff.
//! ```

pub mod config;
pub mod error;

mod client;
mod connection;
mod group;

pub use client::{BrokerRef, Client};
pub use config::{ClientConfig, Isolation};
pub use error::Error;
pub use group::{GroupDescription, GroupListing, Member, PartitionOffsets, TopicPartition};
pub use kafka_protocol::messages::ApiKey;
pub use weir_model::{BrokerId, Offset, PartitionId};
