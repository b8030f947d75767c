//! What the Kafka listener and `/metrics` serve from: the partitions this broker hosts
//! ([`BrokerState`]) and the group coordinator, which runs on top of them and is not part of
//! them.

use crate::groups::Coordinator;
use crate::state::BrokerState;
use std::sync::Arc;

/// The broker's services, shared by every connection.
#[derive(Clone, Debug)]
pub struct Services {
    pub state: Arc<BrokerState>,
    /// The consumer groups this broker coordinates.
    pub groups: Arc<Coordinator>,
}
