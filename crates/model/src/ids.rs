//! Strongly typed ids and positions.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! newtype {
    ($(#[$doc:meta])* $name:ident($inner:ty)) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub $inner);

        impl $name {
            /// The raw value, for encoding at an edge (wire, disk).
            #[inline]
            pub const fn get(self) -> $inner {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

newtype!(
    /// The position of a record in a partition's log. Always `>= 0`; Kafka's negative
    /// sentinels (`-1` latest, `-2` earliest) are resolved before an `Offset` is built.
    Offset(i64)
);
newtype!(
    /// A partition's index within its topic, `0..partitions`.
    PartitionId(i32)
);
newtype!(
    /// The generation of a partition's leadership. Stamped into every batch the leader
    /// appends, so a follower can find where its log diverged from a new leader's (KIP-101).
    LeaderEpoch(i32)
);
newtype!(
    /// The id an idempotent producer was given by InitProducerId.
    ProducerId(i64)
);
newtype!(
    /// Bumped when a producer with the same id is re-initialised; fences the older instance.
    ProducerEpoch(i16)
);
newtype!(
    /// A broker's id in the cluster (Kafka's `node.id` for brokers). Stable across restarts.
    BrokerId(i32)
);
newtype!(
    /// A coordinator's id in the metadata quorum (its Raft node id).
    CoordinatorId(u64)
);
newtype!(
    /// Bumped at each change of a partition's record (leader, ISR, replicas); an ISR change
    /// proposed against an older one is refused.
    PartitionEpoch(i32)
);
newtype!(
    /// Bumped at each registration of a broker; requests from an older incarnation are refused.
    BrokerEpoch(i64)
);
newtype!(
    /// Milliseconds since the Unix epoch, as Kafka timestamps are.
    Timestamp(i64)
);

impl Offset {
    pub const ZERO: Offset = Offset(0);

    /// The offset `delta` records after this one.
    #[inline]
    pub fn plus(self, delta: i64) -> Offset {
        Offset(self.0 + delta)
    }
}

impl LeaderEpoch {
    /// The epoch a single-node broker leads with until a coordinator assigns epochs.
    pub const INITIAL: LeaderEpoch = LeaderEpoch(0);
}

impl Timestamp {
    /// The wall clock now. Only [`crate::SystemClock`] and tests call this; shells read their
    /// [`crate::Clock`], state machines get time passed in.
    pub fn now() -> Timestamp {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Timestamp(ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newtypes_serialize_as_their_raw_value() {
        assert_eq!(
            serde_json::to_string(&Offset(42)).ok().as_deref(),
            Some("42")
        );
        assert_eq!(Offset(5).plus(3), Offset(8));
        assert_eq!(PartitionId(3).to_string(), "3");
    }
}
