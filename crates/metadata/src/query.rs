//! Read helpers for the coordinator and the brokers, and the invariant checks.

use crate::apply::is_live_in;
use crate::state::*;
use std::collections::BTreeSet;
use weir_model::{BrokerId, TopicId, TopicName};

/// The topic config that lets an out-of-sync replica become leader.
pub const UNCLEAN_LEADER_ELECTION_KEY: &str = "unclean.leader.election.enable";

impl TopicRecord {
    /// Whether `unclean.leader.election.enable` is set to true (Kafka's default is false).
    pub fn unclean_leader_election(&self) -> bool {
        self.configs
            .get(UNCLEAN_LEADER_ELECTION_KEY)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    }

    /// The number of replicas each partition has, or will have once a running reassignment
    /// completes (partition 0's; every partition is created with the same number).
    pub fn replication_factor(&self) -> usize {
        self.partitions
            .first()
            .map_or(0, |p| match &p.reassignment {
                Some(r) => r.target.len(),
                None => p.replicas.len(),
            })
    }
}

impl PartitionRecord {
    /// The record's own invariants: replicas non-empty without duplicates; ISR non-empty,
    /// without duplicates, a subset of the replicas; the leader, if any, in the ISR; during a
    /// reassignment, replicas = target followed by the original replicas not in it.
    pub fn check(&self) -> Result<(), String> {
        if self.replicas.is_empty() {
            return Err("no replicas".to_string());
        }
        if has_duplicates(&self.replicas) {
            return Err(format!("duplicate replicas {:?}", self.replicas));
        }
        // Empty only while offline after the last in-sync replica lost its disk.
        if self.isr.is_empty() && self.leader.is_some() {
            return Err("empty ISR with a leader".to_string());
        }
        if let Some(b) = self.emptied.iter().find(|b| !self.replicas.contains(b)) {
            return Err(format!("emptied replica {b} is not a replica"));
        }
        if has_duplicates(&self.isr) {
            return Err(format!("duplicate ISR members {:?}", self.isr));
        }
        if let Some(b) = self.isr.iter().find(|b| !self.replicas.contains(b)) {
            return Err(format!("ISR member {b} is not a replica"));
        }
        if let Some(leader) = self.leader
            && !self.isr.contains(&leader)
        {
            return Err(format!("leader {leader} is not in the ISR {:?}", self.isr));
        }
        if let Some(r) = &self.reassignment {
            if r.target.is_empty() || has_duplicates(&r.target) {
                return Err(format!("bad reassignment target {:?}", r.target));
            }
            let expected: Vec<BrokerId> = r
                .target
                .iter()
                .chain(r.original.iter().filter(|b| !r.target.contains(b)))
                .copied()
                .collect();
            if self.replicas != expected {
                return Err(format!(
                    "replicas {:?} during a reassignment to {:?} from {:?}",
                    self.replicas, r.target, r.original
                ));
            }
        }
        Ok(())
    }
}

fn has_duplicates(list: &[BrokerId]) -> bool {
    list.iter().collect::<BTreeSet<_>>().len() != list.len()
}

impl MetadataState {
    pub fn topic(&self, name: &TopicName) -> Option<&TopicRecord> {
        self.topics.get(name)
    }

    /// The topic with this id. A scan over the topics: ids are not indexed.
    pub fn topic_by_id(&self, id: TopicId) -> Option<&TopicRecord> {
        self.topics.values().find(|t| t.id == id)
    }

    pub fn partition(&self, name: &TopicName, partition: i32) -> Option<&PartitionRecord> {
        let i = usize::try_from(partition).ok()?;
        self.topics.get(name)?.partitions.get(i)
    }

    /// Registered, unfenced and not shutting down: a broker that may lead and join ISRs.
    pub fn is_live(&self, id: BrokerId) -> bool {
        is_live_in(&self.brokers, id)
    }

    /// The live brokers with their racks, sorted by id: the input of
    /// [`crate::placement::assign`].
    pub fn live_brokers(&self) -> Vec<(BrokerId, Option<String>)> {
        self.brokers
            .values()
            .filter(|b| self.is_live(b.id))
            .map(|b| (b.id, b.rack.clone()))
            .collect()
    }

    /// How many partitions `id` leads.
    pub fn leaderships(&self, id: BrokerId) -> usize {
        self.partitions()
            .filter(|(_, _, p)| p.leader == Some(id))
            .count()
    }

    /// Whether some partition's preferred replica (`replicas[0]`) is live and in sync but not
    /// leading, so that ElectPreferredLeaders with an empty list would do something.
    pub fn needs_preferred_election(&self) -> bool {
        self.partitions().any(|(_, _, p)| {
            let preferred = p.replicas[0];
            p.leader != Some(preferred) && p.isr.contains(&preferred) && self.is_live(preferred)
        })
    }

    /// The partitions with a reassignment in progress, in topic-name and partition order.
    pub fn reassignments(&self) -> Vec<(TopicName, i32, &PartitionRecord)> {
        self.partitions()
            .filter(|(_, _, p)| p.reassignment.is_some())
            .map(|(t, i, p)| (t.name.clone(), i, p))
            .collect()
    }

    /// The partitions without a leader.
    pub fn offline_partitions(&self) -> Vec<(TopicName, i32)> {
        self.partitions()
            .filter(|(_, _, p)| p.leader.is_none())
            .map(|(t, i, _)| (t.name.clone(), i))
            .collect()
    }

    /// The partitions `id` is a replica of (including as an adding or removing replica of a
    /// reassignment): what a broker must host.
    pub fn assigned_to(&self, id: BrokerId) -> Vec<(TopicName, i32, &PartitionRecord)> {
        self.partitions()
            .filter(|(_, _, p)| p.replicas.contains(&id))
            .map(|(t, i, p)| (t.name.clone(), i, p))
            .collect()
    }

    /// Every partition with its topic and index, in topic-name and partition order.
    pub fn partitions(&self) -> impl Iterator<Item = (&TopicRecord, i32, &PartitionRecord)> {
        self.topics.values().flat_map(|t| {
            t.partitions
                .iter()
                .zip(0..)
                .map(move |(p, i): (&PartitionRecord, i32)| (t, i, p))
        })
    }

    /// Checks every invariant `apply` maintains: each partition's own
    /// ([`PartitionRecord::check`]), and across records: map keys match the records, topics
    /// have at least one partition, topic ids are distinct and non-zero, no topic names
    /// collide, and a leader is always a registered, unfenced broker. For tests, and for a
    /// coordinator loading a snapshot.
    pub fn check_invariants(&self) -> Result<(), String> {
        for (id, b) in &self.brokers {
            if *id != b.id {
                return Err(format!("broker {id} is stored under the id {}", b.id));
            }
        }
        let mut ids = BTreeSet::new();
        let mut keys = BTreeSet::new();
        for (name, t) in &self.topics {
            if *name != t.name {
                return Err(format!("topic '{}' is stored under '{name}'", t.name));
            }
            if t.id == TopicId::ZERO || !ids.insert(t.id.0) {
                return Err(format!("topic '{name}' has a zero or duplicate id"));
            }
            if !keys.insert(name.collision_key()) {
                return Err(format!("topic '{name}' collides with another"));
            }
            if t.partitions.is_empty() {
                return Err(format!("topic '{name}' has no partitions"));
            }
        }
        for (t, i, p) in self.partitions() {
            p.check()
                .map_err(|e| format!("{}-{i}: {e}: {p:?}", t.name))?;
            if let Some(leader) = p.leader
                && self.brokers.get(&leader).is_none_or(|b| b.fenced)
            {
                return Err(format!(
                    "{}-{i}: leader {leader} is fenced or unregistered",
                    t.name
                ));
            }
        }
        Ok(())
    }
}
