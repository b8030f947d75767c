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
//! - A pause is not silence. A process stopped (SIGSTOP, a VM freeze, a long GC-like stall of
//!   the runtime) hears no heartbeat, yet its clock runs on; judged on that clock, every lease
//!   looks expired the moment it resumes, and a leader that was not deposed meanwhile would
//!   fence every broker. So the leader's timers [`Leases::observe`] the clock every
//!   `LEASE_CHECK_INTERVAL`, and a gap between two observations longer than the pause gap
//!   means this process did not run: every lease starts afresh, as for a new leader, and the
//!   check that noticed fences nobody. Only timer-driven observations count: heartbeats queued
//!   during the pause are served first on resume and would hide it. The cost is the same as
//!   the grace period's: a broker that died during the pause is fenced one session later.
//! - A deposed leader does not fence either: it confirms its leadership with a quorum (Raft's
//!   ReadIndex) before proposing a fence, and Raft rejects a deposed leader's proposals anyway.
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
#[derive(Debug)]
pub struct Leases {
    leases: HashMap<BrokerId, Lease>,
    /// The last time a timer looked at the clock; `None` before the first look.
    observed: Option<Instant>,
    /// A longer gap between two observations means the process was paused.
    pause_gap: Duration,
}

/// What one lease check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// The unfenced brokers whose lease expired, with the epoch to fence.
    Expired(Vec<(BrokerId, BrokerEpoch)>),
    /// The clock jumped by `gap` since the last observation: this process was paused, so every
    /// lease started afresh and nobody is fenced.
    Rearmed { gap: Duration },
}

impl Leases {
    /// An empty table that takes a gap longer than `pause_gap` between two observations for
    /// a pause of the process.
    pub fn new(pause_gap: Duration) -> Leases {
        Leases {
            leases: HashMap::new(),
            observed: None,
            pause_gap,
        }
    }

    /// Notes that a timer ran at `now`. When the last observation is more than the pause gap
    /// ago, the process was paused: every lease is renewed to `now` and the gap is returned.
    pub fn observe(&mut self, now: Instant) -> Option<Duration> {
        let gap = self
            .observed
            .map(|before| now.saturating_duration_since(before));
        self.observed = Some(self.observed.map_or(now, |before| before.max(now)));
        let gap = gap.filter(|g| *g > self.pause_gap)?;
        for lease in self.leases.values_mut() {
            lease.renewed = lease.renewed.max(now);
        }
        Some(gap)
    }

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
        self.observed = Some(now);
        for (id, b) in &state.brokers {
            self.renew(*id, b.epoch, now);
        }
    }

    /// Observes `now` (see [`Leases::observe`]); unless that found a pause, the unfenced
    /// brokers whose lease expired at `now`, with the epoch to fence. A broker without a lease
    /// for its current epoch (registered through an earlier leader, or re-registered) gets one
    /// starting now.
    pub fn check(&mut self, state: &MetadataState, now: Instant, timeout: Duration) -> Check {
        if let Some(gap) = self.observe(now) {
            return Check::Rearmed { gap };
        }
        Check::Expired(self.expired(state, now, timeout))
    }

    fn expired(
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

    const TICK: Duration = Duration::from_millis(200);
    const PAUSE_GAP: Duration = Duration::from_millis(500);
    const TIMEOUT: Duration = Duration::from_secs(6);

    fn state(brokers: &[(i32, i64, bool)]) -> MetadataState {
        let mut s = MetadataState::default();
        for &(id, epoch, fenced) in brokers {
            s.brokers.insert(
                BrokerId(id),
                BrokerRecord {
                    id: BrokerId(id),
                    kafka_addr: String::new(),
                    endpoints: Vec::new(),
                    internal_addr: String::new(),
                    rack: None,
                    epoch: BrokerEpoch(epoch),
                    incarnation: String::new(),
                    directory_id: String::new(),
                    fenced,
                    shutting_down: false,
                },
            );
        }
        s
    }

    /// The brokers to fence at `now`; panics if the check saw a pause.
    fn expired(l: &mut Leases, s: &MetadataState, now: Instant) -> Vec<(BrokerId, BrokerEpoch)> {
        match l.check(s, now, TIMEOUT) {
            Check::Expired(out) => out,
            other => panic!("expected a lease check, got {other:?}"),
        }
    }

    /// The leader's timers running from `from` to `to` without a pause, checking every tick;
    /// returns every broker fenced on the way.
    fn run(l: &mut Leases, s: &MetadataState, from: Instant, to: Instant) -> Vec<BrokerId> {
        let mut fenced = Vec::new();
        let mut now = from;
        while now < to {
            now = (now + TICK).min(to);
            fenced.extend(expired(l, s, now).into_iter().map(|(id, _)| id));
        }
        fenced
    }

    /// Only unfenced brokers whose heartbeats stopped for longer than the timeout expire.
    #[test]
    fn silent_unfenced_brokers_expire() {
        let t0 = Instant::now();
        let s = state(&[(1, 10, false), (2, 11, false), (3, 12, true)]);
        let mut l = Leases::new(PAUSE_GAP);
        assert!(expired(&mut l, &s, t0).is_empty());
        assert!(run(&mut l, &s, t0, t0 + Duration::from_secs(5)).is_empty());
        l.renew(BrokerId(1), BrokerEpoch(10), t0 + Duration::from_secs(5));
        let fenced = run(
            &mut l,
            &s,
            t0 + Duration::from_secs(5),
            t0 + Duration::from_millis(6200),
        );
        assert_eq!(fenced, vec![BrokerId(2)]);
    }

    /// A new leader gives every broker a full session before fencing it.
    #[test]
    fn a_new_leader_grants_a_grace_period() {
        let t0 = Instant::now();
        let s = state(&[(1, 10, false)]);
        let mut l = Leases::new(PAUSE_GAP);
        l.renew(BrokerId(1), BrokerEpoch(10), t0);
        let later = t0 + Duration::from_secs(60);
        l.restart_all(&s, later);
        assert!(run(&mut l, &s, later, later + Duration::from_secs(6)).is_empty());
        assert_eq!(
            expired(&mut l, &s, later + Duration::from_millis(6200)),
            vec![(BrokerId(1), BrokerEpoch(10))]
        );
    }

    /// A re-registration (new epoch) starts a new lease rather than inheriting the old one.
    #[test]
    fn a_new_epoch_starts_a_new_lease() {
        let t0 = Instant::now();
        let mut l = Leases::new(PAUSE_GAP);
        l.restart_all(&state(&[(1, 10, false)]), t0);
        // Renewed until 30 s, then re-registered with epoch 20 (through another leader).
        let now = t0 + Duration::from_secs(30);
        let mut t = t0;
        while t < now {
            l.renew(BrokerId(1), BrokerEpoch(10), t);
            t += TICK;
            assert!(l.observe(t).is_none());
        }
        let s = state(&[(1, 20, false)]);
        assert!(expired(&mut l, &s, now).is_empty());
        assert!(run(&mut l, &s, now, now + Duration::from_secs(6)).is_empty());
        assert_eq!(
            expired(&mut l, &s, now + Duration::from_millis(6200)),
            vec![(BrokerId(1), BrokerEpoch(20))]
        );
    }

    /// A leader paused for longer than the session timeout fences nobody on resume: brokers
    /// that heartbeated before the pause and heartbeat again after keep their lease, and one
    /// that stays silent after the resume is fenced a full session timeout later.
    #[test]
    fn a_pause_is_not_silence_but_silence_after_it_still_fences() {
        let t0 = Instant::now();
        let s = state(&[(1, 10, false), (2, 11, false)]);
        let mut l = Leases::new(PAUSE_GAP);
        l.restart_all(&s, t0);
        let before_pause = t0 + Duration::from_secs(2);
        assert!(run(&mut l, &s, t0, before_pause).is_empty());
        l.renew(BrokerId(1), BrokerEpoch(10), before_pause);
        l.renew(BrokerId(2), BrokerEpoch(11), before_pause);

        // Stopped for 30 s (> TIMEOUT); the first timer after the resume sees the jump.
        let resumed = before_pause + Duration::from_secs(30);
        assert_eq!(
            l.check(&s, resumed, TIMEOUT),
            Check::Rearmed {
                gap: Duration::from_secs(30)
            }
        );
        // Broker 1 heartbeats again; broker 2 does not.
        let mut fenced = Vec::new();
        let mut now = resumed;
        while now < resumed + TIMEOUT + Duration::from_secs(1) {
            if now < resumed + Duration::from_secs(20) {
                l.renew(BrokerId(1), BrokerEpoch(10), now);
            }
            now += TICK;
            fenced.extend(expired(&mut l, &s, now));
            if !fenced.is_empty() {
                break;
            }
        }
        assert_eq!(fenced, vec![(BrokerId(2), BrokerEpoch(11))]);
        assert!(
            now > resumed + TIMEOUT,
            "the silent broker got a full session after the resume, fenced at {:?}",
            now - resumed
        );
    }

    /// A pause noticed by the standalone timer (not the check) re-arms the leases too, and
    /// heartbeats served after the resume do not hide it.
    #[test]
    fn a_pause_seen_by_any_timer_rearms_every_lease() {
        let t0 = Instant::now();
        let s = state(&[(1, 10, false), (2, 11, false)]);
        let mut l = Leases::new(PAUSE_GAP);
        l.restart_all(&s, t0);
        let resumed = t0 + Duration::from_secs(10);
        // A heartbeat queued during the pause is served first.
        l.renew(BrokerId(1), BrokerEpoch(10), resumed);
        assert_eq!(l.observe(resumed), Some(Duration::from_secs(10)));
        assert!(expired(&mut l, &s, resumed + TICK).is_empty());
        // Timers a little late (within the pause gap) are not a pause.
        assert_eq!(l.observe(resumed + TICK + PAUSE_GAP), None);
    }
}
