//! Broker leases, kept by the Raft leader only.
//!
//! Semantics (as Kafka's KRaft controller):
//! - A lease is keyed by broker id and epoch. A heartbeat from the broker's current epoch
//!   renews it; a registration starts a new one.
//! - Leases are not replicated: they are a property of the current leader's clock. When a
//!   coordinator becomes leader it starts every registered broker's lease afresh ("grace
//!   period"), so a leader change never fences healthy brokers that were heartbeating to the old
//!   leader. The cost is that a broker that died just before the change is fenced up to one
//!   session timeout later than it would have been.
//! - An unfenced broker whose lease is older than the session timeout is fenced through Raft
//!   (`FenceBroker{id, epoch}`); the state machine ignores the command if the broker has since
//!   re-registered with a newer epoch.
//!
//! This module is pure: time comes in as an argument.

use std::collections::HashMap;
use std::time::{Duration, Instant};
use weir_metadata::MetadataState;
use weir_model::{BrokerEpoch, BrokerId};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Lease {
    epoch: BrokerEpoch,
    renewed: Instant,
}

/// The leader's table of broker leases.
#[derive(Debug, Default)]
pub struct Leases {
    leases: HashMap<BrokerId, Lease>,
}

impl Leases {
    /// Renews (or starts) `id`'s lease for `epoch` at `now`.
    pub fn renew(&mut self, id: BrokerId, epoch: BrokerEpoch, now: Instant) {
        self.leases.insert(
            id,
            Lease {
                epoch,
                renewed: now,
            },
        );
    }

    /// Starts every broker's lease afresh: this coordinator just became the leader.
    pub fn restart_all(&mut self, state: &MetadataState, now: Instant) {
        self.leases.clear();
        for (id, b) in &state.brokers {
            self.renew(*id, b.epoch, now);
        }
    }

    /// The unfenced brokers whose lease expired at `now`, with the epoch to fence. A broker
    /// without a lease for its current epoch (registered through an earlier leader, or
    /// re-registered) gets one starting now.
    pub fn expired(
        &mut self,
        state: &MetadataState,
        now: Instant,
        timeout: Duration,
    ) -> Vec<(BrokerId, BrokerEpoch)> {
        self.leases.retain(|id, _| state.brokers.contains_key(id));
        let mut out = Vec::new();
        for (id, b) in &state.brokers {
            let lease = self.leases.entry(*id).or_insert(Lease {
                epoch: b.epoch,
                renewed: now,
            });
            if lease.epoch != b.epoch {
                *lease = Lease {
                    epoch: b.epoch,
                    renewed: now,
                };
            }
            if !b.fenced && now.saturating_duration_since(lease.renewed) > timeout {
                out.push((*id, b.epoch));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_metadata::BrokerRecord;

    fn state(brokers: &[(i32, i64, bool)]) -> MetadataState {
        let mut s = MetadataState::default();
        for &(id, epoch, fenced) in brokers {
            s.brokers.insert(
                BrokerId(id),
                BrokerRecord {
                    id: BrokerId(id),
                    kafka_addr: String::new(),
                    internal_addr: String::new(),
                    rack: None,
                    epoch: BrokerEpoch(epoch),
                    incarnation: String::new(),
                    fenced,
                    shutting_down: false,
                },
            );
        }
        s
    }

    /// Only unfenced brokers whose heartbeats stopped for longer than the timeout expire.
    #[test]
    fn silent_unfenced_brokers_expire() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(6);
        let s = state(&[(1, 10, false), (2, 11, false), (3, 12, true)]);
        let mut l = Leases::default();
        assert!(l.expired(&s, t0, timeout).is_empty());
        l.renew(BrokerId(1), BrokerEpoch(10), t0 + Duration::from_secs(5));
        let out = l.expired(&s, t0 + Duration::from_secs(7), timeout);
        assert_eq!(out, vec![(BrokerId(2), BrokerEpoch(11))]);
    }

    /// A new leader gives every broker a full session before fencing it.
    #[test]
    fn a_new_leader_grants_a_grace_period() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(6);
        let s = state(&[(1, 10, false)]);
        let mut l = Leases::default();
        l.renew(BrokerId(1), BrokerEpoch(10), t0);
        let later = t0 + Duration::from_secs(60);
        l.restart_all(&s, later);
        assert!(
            l.expired(&s, later + Duration::from_secs(5), timeout)
                .is_empty()
        );
        assert_eq!(
            l.expired(&s, later + Duration::from_secs(7), timeout).len(),
            1
        );
    }

    /// A re-registration (new epoch) starts a new lease rather than inheriting the old one.
    #[test]
    fn a_new_epoch_starts_a_new_lease() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(6);
        let mut l = Leases::default();
        l.renew(BrokerId(1), BrokerEpoch(10), t0);
        let s = state(&[(1, 20, false)]);
        let now = t0 + Duration::from_secs(30);
        assert!(l.expired(&s, now, timeout).is_empty());
        assert_eq!(
            l.expired(&s, now + Duration::from_secs(7), timeout),
            vec![(BrokerId(1), BrokerEpoch(20))]
        );
    }
}
