//! Weir's shared vocabulary.
//!
//! Every crate above this one (storage, broker, CLI) speaks in these types instead of raw
//! integers, so an offset can never be passed where a partition id was meant. Kafka's `-1`
//! sentinels ("no leader", "latest", "no producer") are converted into `Option`s once, at the
//! protocol edge in the broker; nothing below the edge sees them.
//!
//! - [`acl`]: ACLs and ACL filters, with Kafka's numbers and names.
//! - [`clock`]: [`Clock`], the wall and monotonic time a shell reads, with a manual one for tests.
//! - [`ids`]: offsets, partition ids, leader epochs, producer ids and epochs, timestamps.
//! - [`topic`]: validated topic names and topic ids.
//! - [`error_chain`]: [`Chain`], an error and all its causes, for log lines.
//! - [`scram`]: SCRAM mechanisms and stored credentials.
//! - [`limits`]: every bound the system enforces, with their relations checked at compile time.

pub mod acl;
pub mod clock;
pub mod error_chain;
pub mod ids;
pub mod limits;
pub mod scram;
pub mod topic;
pub mod topic_config;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error_chain::Chain;
pub use ids::{
    BrokerEpoch, BrokerId, CoordinatorId, LeaderEpoch, Offset, PartitionEpoch, PartitionId,
    ProducerEpoch, ProducerId, Timestamp,
};
pub use scram::{ScramCredential, ScramMechanism};
pub use topic::{TopicId, TopicName, TopicNameError};
