//! [`MetadataState::apply`]: one method per command.
//!
//! Every method validates the whole command before it mutates anything, so a refused command
//! leaves the state exactly as it was. Partition records change only through [`commit`], which
//! bumps the epochs and asserts the record's invariants.

use crate::state::*;
use std::collections::BTreeMap;
use weir_model::limits::PRODUCER_ID_BLOCK_MAX;
use weir_model::limits::{LISTENER_NAME_BYTES_MAX, LISTENERS_MAX, PARTITIONS_PER_TOPIC_MAX};
use weir_model::{BrokerEpoch, BrokerId, LeaderEpoch, PartitionEpoch, TopicId, TopicName};

/// An accepted command: its reply, and `Some(changes)` when it changed the state (the version
/// then moves to the command's index) or `None` when it changed nothing.
pub(crate) type Outcome = Result<(Reply, Option<Changes>), MetadataError>;

type Brokers = BTreeMap<BrokerId, BrokerRecord>;

/// What a RegisterBroker command says about the broker.
struct Registration<'a> {
    kafka_addr: &'a str,
    internal_addr: &'a str,
    rack: Option<&'a str>,
    incarnation: &'a str,
    directory_id: &'a str,
    endpoints: &'a [Endpoint],
}

/// A registration's listeners: at most [`LISTENERS_MAX`], each named (uniquely, at most
/// [`LISTENER_NAME_BYTES_MAX`] bytes) and with an address.
fn check_endpoints(endpoints: &[Endpoint]) -> Result<(), MetadataError> {
    let refuse = |why: String| Err(MetadataError::InvalidRequest(why));
    if endpoints.len() > LISTENERS_MAX {
        return refuse(format!(
            "{} listeners; at most {LISTENERS_MAX}",
            endpoints.len()
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for e in endpoints {
        if e.listener.is_empty() || e.listener.len() > LISTENER_NAME_BYTES_MAX {
            return refuse(format!(
                "listener name {:?}: 1 to {LISTENER_NAME_BYTES_MAX} bytes",
                e.listener
            ));
        }
        if e.addr.is_empty() {
            return refuse(format!("listener {} has no address", e.listener));
        }
        if !seen.insert(e.listener.as_str()) {
            return refuse(format!("listener {} is named twice", e.listener));
        }
    }
    Ok(())
}

impl MetadataState {
    /// Applies one command at log index `index`. Pure: the same state, index and command give
    /// the same result on every coordinator.
    ///
    /// A refused command returns `Err` and changes nothing. An accepted command that changes
    /// something sets [`MetadataState::version`] to `index` and reports the records it touched;
    /// one that changes nothing (a repeat, a stale epoch) leaves the version alone.
    pub fn apply(&mut self, index: u64, command: &Command) -> ApplyResult {
        let (reply, changes) = match command {
            Command::InitCluster { cluster_id } => self.init_cluster(cluster_id),
            Command::RegisterBroker {
                id,
                kafka_addr,
                internal_addr,
                rack,
                incarnation,
                directory_id,
                endpoints,
            } => self.register_broker(
                index,
                *id,
                Registration {
                    kafka_addr,
                    internal_addr,
                    rack: rack.as_deref(),
                    incarnation,
                    directory_id,
                    endpoints,
                },
            ),
            Command::FenceBroker { id, epoch } => self.fence_broker(*id, *epoch),
            Command::UnfenceBroker { id, epoch } => self.unfence_broker(*id, *epoch),
            Command::ControlledShutdown { id, epoch } => self.controlled_shutdown(*id, *epoch),
            Command::CreateTopic {
                name,
                id,
                assignment,
                configs,
            } => self.create_topic(name, *id, assignment, configs),
            Command::DeleteTopic { name } => self.delete_topic(name),
            Command::CreatePartitions { name, assignment } => {
                self.create_partitions(name, assignment)
            }
            Command::AlterConfigs { name, configs } => self.alter_configs(name, configs),
            Command::AlterPartition {
                broker,
                broker_epoch,
                topic,
                partition,
                leader_epoch,
                partition_epoch,
                new_isr,
            } => self.alter_partition(
                *broker,
                *broker_epoch,
                *topic,
                *partition,
                *leader_epoch,
                *partition_epoch,
                new_isr,
            ),
            Command::Reassign {
                name,
                partition,
                target,
            } => self.reassign(name, *partition, target),
            Command::CancelReassignment { name, partition } => {
                self.cancel_reassignment(name, *partition)
            }
            Command::ElectPreferredLeaders { partitions } => {
                self.elect_preferred_leaders(partitions)
            }
            Command::AllocateProducerIds { broker, count } => {
                self.allocate_producer_ids(*broker, *count)
            }
            Command::AlterScramCredentials(a) => self.alter_scram_credentials(a),
            Command::CreateAcls(acls) => self.create_acls(acls),
            Command::DeleteAcls(filters) => self.delete_acls(filters),
        }?;
        match changes {
            Some(changes) => {
                self.version = index;
                Ok((reply, changes))
            }
            None => Ok((reply, Changes::default())),
        }
    }

    fn init_cluster(&mut self, cluster_id: &str) -> Outcome {
        if cluster_id.is_empty() {
            return Err(MetadataError::InvalidRequest(
                "the cluster id is empty".to_string(),
            ));
        }
        if self.cluster_id == cluster_id {
            return Ok((Reply::Done, None));
        }
        if !self.cluster_id.is_empty() {
            return Err(MetadataError::AlreadyInitialised);
        }
        self.cluster_id = cluster_id.to_string();
        Ok((Reply::Done, Some(Changes::default())))
    }

    fn register_broker(&mut self, index: u64, id: BrokerId, reg: Registration<'_>) -> Outcome {
        if id.0 < 0 {
            return Err(MetadataError::InvalidRequest(format!(
                "broker id {id} is negative"
            )));
        }
        check_endpoints(reg.endpoints)?;
        let epoch = i64::try_from(index).map_err(|e| {
            MetadataError::InvalidRequest(format!("log index {index} is not a broker epoch: {e}"))
        })?;
        let (restart, disk_lost) = match self.brokers.get(&id) {
            Some(current) if current.incarnation == reg.incarnation => {
                return Ok((
                    Reply::BrokerRegistered {
                        epoch: current.epoch,
                    },
                    None,
                ));
            }
            // An unknown directory (an older broker's record, or a broker that does not say)
            // is not evidence of a lost disk.
            Some(current) => (
                true,
                !current.directory_id.is_empty()
                    && !reg.directory_id.is_empty()
                    && current.directory_id != reg.directory_id,
            ),
            None => (false, false),
        };
        let epoch = BrokerEpoch(epoch);
        self.brokers.insert(
            id,
            BrokerRecord {
                id,
                kafka_addr: reg.kafka_addr.to_string(),
                endpoints: reg.endpoints.to_vec(),
                internal_addr: reg.internal_addr.to_string(),
                rack: reg.rack.map(str::to_string),
                epoch,
                incarnation: reg.incarnation.to_string(),
                directory_id: reg.directory_id.to_string(),
                fenced: true,
                shutting_down: false,
            },
        );
        let mut changes = Changes::default();
        changes.brokers.insert(id);
        if disk_lost {
            self.forget_lost_replica(id, &mut changes);
        } else if restart {
            // The old incarnation's memory is gone: whatever it led or was in sync with must
            // be handled as if it had been fenced.
            self.fence_from_partitions(id, &mut changes);
        }
        Ok((Reply::BrokerRegistered { epoch }, Some(changes)))
    }

    /// Broker `id` came back with an empty data directory: it holds nothing it held before.
    /// It leaves every ISR, the last member included (an empty ISR keeps the partition offline:
    /// electing it would make the other replicas truncate what was committed), and is marked
    /// `emptied` so that an unclean election prefers any replica that still has a log.
    fn forget_lost_replica(&mut self, id: BrokerId, changes: &mut Changes) {
        let brokers = &self.brokers;
        for topic in self.topics.values_mut() {
            let unclean = topic.unclean_leader_election();
            let mut changed = false;
            for p in &mut topic.partitions {
                if !p.replicas.contains(&id) {
                    continue;
                }
                let mut next = p.clone();
                next.isr.retain(|b| *b != id);
                if !next.emptied.contains(&id) {
                    next.emptied.push(id);
                }
                if next.leader == Some(id) || next.leader.is_none() {
                    next.leader = first_live_in_isr(&next, brokers);
                    if next.leader.is_none() && unclean {
                        elect_unclean(&mut next, brokers);
                    }
                }
                let same_leader = next.leader.is_some() && next.leader == p.leader;
                let committed = commit(p, next);
                if same_leader {
                    // The leader still remembers the fetch position of the lost replica's
                    // old process and would propose it back into the ISR from that stale
                    // position (found by the replication simulation; Kafka's KIP-903). A new
                    // leader epoch makes it start over: it learns positions from fetches in
                    // the new epoch only, and fetches of the old process are fenced.
                    p.leader_epoch = LeaderEpoch(p.leader_epoch.0 + 1);
                    if !committed {
                        p.partition_epoch = PartitionEpoch(p.partition_epoch.0 + 1);
                    }
                }
                changed |= committed || same_leader;
            }
            if changed {
                changes.topics.insert(topic.name.clone());
            }
        }
    }

    fn fence_broker(&mut self, id: BrokerId, epoch: BrokerEpoch) -> Outcome {
        let broker = self
            .brokers
            .get_mut(&id)
            .ok_or(MetadataError::UnknownBroker(id))?;
        // A lease that expired for an older incarnation, or a second expiry, is not news.
        if broker.epoch != epoch || broker.fenced {
            return Ok((Reply::Done, None));
        }
        broker.fenced = true;
        let mut changes = Changes::default();
        changes.brokers.insert(id);
        self.fence_from_partitions(id, &mut changes);
        Ok((Reply::Done, Some(changes)))
    }

    /// Takes broker `id` (already marked fenced) out of every partition: out of each ISR it is
    /// not the last member of, and out of leadership. A partition it led gets the first live
    /// ISR member in replica order; failing that, with unclean election enabled, the first live
    /// replica (alone in the ISR); failing that it goes offline with its ISR as it is, so the
    /// last in-sync member can lead again without loss.
    fn fence_from_partitions(&mut self, id: BrokerId, changes: &mut Changes) {
        let brokers = &self.brokers;
        for topic in self.topics.values_mut() {
            let unclean = topic.unclean_leader_election();
            let mut changed = false;
            for p in &mut topic.partitions {
                if p.leader != Some(id) && !p.isr.contains(&id) {
                    continue;
                }
                let mut next = p.clone();
                if next.isr.len() > 1 {
                    next.isr.retain(|b| *b != id);
                }
                if next.leader == Some(id) {
                    next.leader = first_live_in_isr(&next, brokers);
                    if next.leader.is_none() && unclean {
                        elect_unclean(&mut next, brokers);
                    }
                }
                changed |= commit(p, next);
            }
            if changed {
                changes.topics.insert(topic.name.clone());
            }
        }
    }

    fn unfence_broker(&mut self, id: BrokerId, epoch: BrokerEpoch) -> Outcome {
        let broker = self
            .brokers
            .get_mut(&id)
            .ok_or(MetadataError::UnknownBroker(id))?;
        if broker.epoch != epoch {
            return Ok((Reply::Done, None));
        }
        let mut changes = Changes::default();
        if broker.fenced {
            broker.fenced = false;
            changes.brokers.insert(id);
        }
        self.elect_offline(None, &mut changes);
        Ok((Reply::Done, (!changes.is_empty()).then_some(changes)))
    }

    /// Gives a leader to every offline partition (of topic `only`, or of all topics) that can
    /// have one: the first live ISR member in replica order, or, where the topic allows unclean
    /// election, the first live replica.
    fn elect_offline(&mut self, only: Option<&TopicName>, changes: &mut Changes) {
        let brokers = &self.brokers;
        for topic in self.topics.values_mut() {
            if only.is_some_and(|name| *name != topic.name) {
                continue;
            }
            let unclean = topic.unclean_leader_election();
            let mut changed = false;
            for p in &mut topic.partitions {
                if p.leader.is_some() {
                    continue;
                }
                let mut next = p.clone();
                next.leader = first_live_in_isr(&next, brokers);
                if next.leader.is_none() && unclean {
                    elect_unclean(&mut next, brokers);
                }
                changed |= commit(p, next);
            }
            if changed {
                changes.topics.insert(topic.name.clone());
            }
        }
    }

    fn controlled_shutdown(&mut self, id: BrokerId, epoch: BrokerEpoch) -> Outcome {
        let broker = self.broker_at(id, epoch)?;
        let mut changes = Changes::default();
        if !broker.shutting_down {
            changes.brokers.insert(id);
        }
        self.brokers
            .entry(id)
            .and_modify(|b| b.shutting_down = true);
        let brokers = &self.brokers;
        let mut remaining: u32 = 0;
        for topic in self.topics.values_mut() {
            let mut changed = false;
            for p in &mut topic.partitions {
                if p.leader != Some(id) && !p.isr.contains(&id) {
                    continue;
                }
                let mut next = p.clone();
                if next.leader == Some(id) {
                    // `id` is no longer live, so this never picks it.
                    if let Some(successor) = first_live_in_isr(&next, brokers) {
                        next.leader = Some(successor);
                        next.isr.retain(|b| *b != id);
                    }
                } else if next.isr.len() > 1 {
                    next.isr.retain(|b| *b != id);
                }
                changed |= commit(p, next);
                if p.leader == Some(id) {
                    remaining += 1;
                }
            }
            if changed {
                changes.topics.insert(topic.name.clone());
            }
        }
        Ok((
            Reply::RemainingLeaderships(remaining),
            (!changes.is_empty()).then_some(changes),
        ))
    }

    fn create_topic(
        &mut self,
        name: &TopicName,
        id: TopicId,
        assignment: &[Vec<BrokerId>],
        configs: &BTreeMap<String, String>,
    ) -> Outcome {
        let key = name.collision_key();
        if self.topics.contains_key(name) || self.topics.keys().any(|t| t.collision_key() == key) {
            return Err(MetadataError::TopicExists(name.clone()));
        }
        if id == TopicId::ZERO {
            return Err(MetadataError::InvalidRequest(
                "a topic id cannot be all zeroes".to_string(),
            ));
        }
        if let Some(other) = self.topics.values().find(|t| t.id == id) {
            return Err(MetadataError::InvalidRequest(format!(
                "topic id {} is already used by topic '{}'",
                id.to_uuid_string(),
                other.name
            )));
        }
        if assignment.is_empty() {
            return Err(MetadataError::InvalidReplicaAssignment(
                "the assignment has no partitions".to_string(),
            ));
        }
        check_partition_count(0, assignment.len())?;
        self.check_assignment(assignment, assignment[0].len())?;
        let partitions = assignment
            .iter()
            .map(|replicas| new_partition(replicas, &self.brokers))
            .collect();
        self.topics.insert(
            name.clone(),
            TopicRecord {
                name: name.clone(),
                id,
                configs: configs.clone(),
                partitions,
            },
        );
        let mut changes = Changes::default();
        changes.topics.insert(name.clone());
        Ok((Reply::TopicCreated { id }, Some(changes)))
    }

    fn delete_topic(&mut self, name: &TopicName) -> Outcome {
        let topic = self
            .topics
            .remove(name)
            .ok_or_else(|| MetadataError::UnknownTopic(name.to_string()))?;
        let mut changes = Changes::default();
        changes.topics.insert(name.clone());
        changes.removed_topics.push(topic.id);
        Ok((Reply::TopicDeleted { id: topic.id }, Some(changes)))
    }

    fn create_partitions(&mut self, name: &TopicName, assignment: &[Vec<BrokerId>]) -> Outcome {
        let topic = self
            .topics
            .get(name)
            .ok_or_else(|| MetadataError::UnknownTopic(name.to_string()))?;
        if assignment.is_empty() {
            return Err(MetadataError::InvalidPartitions(format!(
                "no partitions to add to topic '{name}'"
            )));
        }
        check_partition_count(topic.partitions.len(), assignment.len())?;
        self.check_assignment(assignment, topic.replication_factor())?;
        let added: Vec<PartitionRecord> = assignment
            .iter()
            .map(|replicas| new_partition(replicas, &self.brokers))
            .collect();
        if let Some(topic) = self.topics.get_mut(name) {
            topic.partitions.extend(added);
        }
        let mut changes = Changes::default();
        changes.topics.insert(name.clone());
        Ok((Reply::Done, Some(changes)))
    }

    fn alter_configs(&mut self, name: &TopicName, configs: &BTreeMap<String, String>) -> Outcome {
        let topic = self
            .topics
            .get_mut(name)
            .ok_or_else(|| MetadataError::UnknownTopic(name.to_string()))?;
        if topic.configs == *configs {
            return Ok((Reply::Done, None));
        }
        topic.configs = configs.clone();
        let mut changes = Changes::default();
        changes.topics.insert(name.clone());
        // Enabling unclean election is the operator saying "bring the offline partitions back
        // at any cost": do it now rather than waiting for the next broker to unfence.
        self.elect_offline(Some(name), &mut changes);
        Ok((Reply::Done, Some(changes)))
    }

    #[allow(clippy::too_many_arguments)]
    fn alter_partition(
        &mut self,
        broker: BrokerId,
        broker_epoch: BrokerEpoch,
        topic_id: TopicId,
        partition: i32,
        leader_epoch: LeaderEpoch,
        partition_epoch: PartitionEpoch,
        new_isr: &[BrokerId],
    ) -> Outcome {
        let topic = self
            .topics
            .values()
            .find(|t| t.id == topic_id)
            .ok_or_else(|| MetadataError::UnknownTopic(topic_id.to_uuid_string()))?;
        let name = topic.name.clone();
        let unclean = topic.unclean_leader_election();
        let p = partition_of(topic, partition)?;
        self.broker_at(broker, broker_epoch)?;
        if p.leader_epoch != leader_epoch {
            return Err(MetadataError::FencedLeaderEpoch {
                given: leader_epoch,
                current: p.leader_epoch,
            });
        }
        if p.leader != Some(broker) {
            return Err(MetadataError::NotLeader(broker));
        }
        if p.partition_epoch != partition_epoch {
            return Err(MetadataError::InvalidUpdateVersion {
                given: partition_epoch,
                current: p.partition_epoch,
            });
        }
        self.check_new_isr(p, broker, new_isr)?;
        if p.isr.len() == new_isr.len() && new_isr.iter().all(|b| p.isr.contains(b)) {
            return Ok((Reply::Partition(p.clone()), None));
        }
        let mut next = p.clone();
        next.isr = next
            .replicas
            .iter()
            .filter(|b| new_isr.contains(b))
            .copied()
            .collect();
        if next
            .reassignment
            .as_ref()
            .is_some_and(|r| r.target.iter().all(|b| next.isr.contains(b)))
        {
            complete_reassignment(&mut next, &self.brokers, unclean);
        }
        self.commit_partition(&name, partition, next);
        let record = partition_of(&self.topics[&name], partition)?.clone();
        let mut changes = Changes::default();
        changes.topics.insert(name);
        Ok((Reply::Partition(record), Some(changes)))
    }

    /// The ISR a leader proposes must be non-empty, include the leader, list only replicas,
    /// each once, and only live brokers. The leader itself is exempt from the liveness check: it
    /// may be in controlled shutdown, still leading because no other ISR member was live, and
    /// must be able to grow the ISR so that leadership can move.
    fn check_new_isr(
        &self,
        p: &PartitionRecord,
        leader: BrokerId,
        new_isr: &[BrokerId],
    ) -> Result<(), MetadataError> {
        let refuse = |why: String| Err(MetadataError::IneligibleReplica(why));
        if new_isr.is_empty() {
            return refuse("the new ISR is empty".to_string());
        }
        if !new_isr.contains(&leader) {
            return refuse(format!(
                "the new ISR leaves out the leader, broker {leader}"
            ));
        }
        for (i, b) in new_isr.iter().enumerate() {
            if new_isr[..i].contains(b) {
                return refuse(format!("broker {b} is listed twice"));
            }
            if !p.replicas.contains(b) {
                return refuse(format!("broker {b} is not a replica of this partition"));
            }
            if *b == leader {
                continue;
            }
            match self.brokers.get(b) {
                None => return refuse(format!("broker {b} is not registered")),
                Some(r) if r.fenced => return refuse(format!("broker {b} is fenced")),
                Some(r) if r.shutting_down => {
                    return refuse(format!("broker {b} is shutting down"));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Starts, changes or (with `target` equal to the original replicas) cancels a
    /// reassignment. While it runs, `replicas` is the target followed by the original
    /// replicas not in it; it completes as soon as every target replica is in the ISR.
    ///
    /// Changing a running reassignment keeps its `original`, so cancelling always goes back
    /// to the replicas before the first reassignment. Replicas of the previous target that
    /// are in neither the new target nor the original are dropped (from the ISR too). If that
    /// would drop every ISR member the command is refused: it would throw away the only
    /// in-sync copies.
    fn reassign(&mut self, name: &TopicName, partition: i32, target: &[BrokerId]) -> Outcome {
        self.check_replica_list(target)?;
        let p = self.partition_checked(name, partition)?;
        let original = match &p.reassignment {
            Some(r) => r.original.clone(),
            None if p.replicas == target => return Ok((Reply::Done, None)),
            None => p.replicas.clone(),
        };
        if original == target {
            return self.cancel_reassignment(name, partition);
        }
        let replicas: Vec<BrokerId> = target
            .iter()
            .chain(original.iter().filter(|b| !target.contains(b)))
            .copied()
            .collect();
        if !p.isr.iter().any(|b| replicas.contains(b)) {
            return Err(MetadataError::InvalidReplicaAssignment(format!(
                "{name}-{partition}: replicas {replicas:?} include no member of the ISR {:?}; \
                 let the running reassignment finish or include an in-sync replica",
                p.isr
            )));
        }
        let mut next = p.clone();
        next.reassignment = Some(Reassignment {
            target: target.to_vec(),
            original,
        });
        let unclean = self.topics[name].unclean_leader_election();
        reshape(&mut next, replicas, &self.brokers, unclean);
        if target.iter().all(|b| next.isr.contains(b)) {
            complete_reassignment(&mut next, &self.brokers, unclean);
        }
        if !self.commit_partition(name, partition, next) {
            return Ok((Reply::Done, None));
        }
        let mut changes = Changes::default();
        changes.topics.insert(name.clone());
        Ok((Reply::Done, Some(changes)))
    }

    /// Goes back to the original replicas: ISR = ISR ∩ original (in original order); a leader
    /// outside the original replicas is replaced by the first live member of that ISR (or the
    /// partition goes offline). If no ISR member is an original replica, the cancel is refused
    /// (InvalidReplicaAssignment): it would throw away the only in-sync copies.
    fn cancel_reassignment(&mut self, name: &TopicName, partition: i32) -> Outcome {
        let p = self.partition_checked(name, partition)?;
        let Some(reassignment) = &p.reassignment else {
            return Err(MetadataError::NoReassignmentInProgress {
                topic: name.to_string(),
                partition,
            });
        };
        let original = reassignment.original.clone();
        if !p.isr.iter().any(|b| original.contains(b)) {
            return Err(MetadataError::InvalidReplicaAssignment(format!(
                "{name}-{partition}: no member of the ISR {:?} is an original replica {:?}; \
                 cancelling would lose the in-sync copies",
                p.isr, original
            )));
        }
        let mut next = p.clone();
        next.reassignment = None;
        let unclean = self.topics[name].unclean_leader_election();
        reshape(&mut next, original, &self.brokers, unclean);
        if !self.commit_partition(name, partition, next) {
            return Ok((Reply::Done, None));
        }
        let mut changes = Changes::default();
        changes.topics.insert(name.clone());
        Ok((Reply::Done, Some(changes)))
    }

    fn elect_preferred_leaders(&mut self, partitions: &[(TopicName, i32)]) -> Outcome {
        let brokers = &self.brokers;
        let mut changes = Changes::default();
        let mut elected: u32 = 0;
        let mut elect = |topic: &TopicName, p: &mut PartitionRecord| {
            let preferred = p.replicas[0];
            if p.leader != Some(preferred)
                && p.isr.contains(&preferred)
                && is_live_in(brokers, preferred)
            {
                let mut next = p.clone();
                next.leader = Some(preferred);
                commit(p, next);
                elected += 1;
                changes.topics.insert(topic.clone());
            }
        };
        if partitions.is_empty() {
            for topic in self.topics.values_mut() {
                for p in &mut topic.partitions {
                    elect(&topic.name, p);
                }
            }
        } else {
            for (name, partition) in partitions {
                let p = self.topics.get_mut(name).and_then(|t| {
                    usize::try_from(*partition)
                        .ok()
                        .and_then(|i| t.partitions.get_mut(i))
                });
                if let Some(p) = p {
                    elect(name, p);
                }
            }
        }
        let changed = elected > 0;
        Ok((Reply::Elected(elected), changed.then_some(changes)))
    }

    fn allocate_producer_ids(&mut self, broker: BrokerId, count: i32) -> Outcome {
        if !(1..=PRODUCER_ID_BLOCK_MAX).contains(&count) {
            return Err(MetadataError::InvalidRequest(format!(
                "a block of {count} producer ids; it must hold 1 to {PRODUCER_ID_BLOCK_MAX}"
            )));
        }
        if !self.brokers.contains_key(&broker) {
            return Err(MetadataError::UnknownBroker(broker));
        }
        let first = self.next_producer_id;
        self.next_producer_id = first.checked_add(i64::from(count)).ok_or_else(|| {
            MetadataError::InvalidRequest("the producer ids are exhausted".to_string())
        })?;
        Ok((
            Reply::ProducerIds { first, count },
            Some(Changes::default()),
        ))
    }

    /// The broker, if registered with exactly this epoch.
    fn broker_at(&self, id: BrokerId, epoch: BrokerEpoch) -> Result<&BrokerRecord, MetadataError> {
        let broker = self
            .brokers
            .get(&id)
            .ok_or(MetadataError::UnknownBroker(id))?;
        if broker.epoch != epoch {
            return Err(MetadataError::StaleBrokerEpoch {
                id,
                given: epoch,
                current: broker.epoch,
            });
        }
        Ok(broker)
    }

    fn partition_checked(
        &self,
        name: &TopicName,
        partition: i32,
    ) -> Result<&PartitionRecord, MetadataError> {
        let topic = self
            .topics
            .get(name)
            .ok_or_else(|| MetadataError::UnknownTopic(name.to_string()))?;
        partition_of(topic, partition)
    }

    /// Replaces a partition's record through [`commit`]; returns whether it changed. The
    /// partition must exist (the caller looked it up).
    fn commit_partition(
        &mut self,
        name: &TopicName,
        partition: i32,
        next: PartitionRecord,
    ) -> bool {
        let p = self
            .topics
            .get_mut(name)
            .and_then(|t| {
                usize::try_from(partition)
                    .ok()
                    .and_then(|i| t.partitions.get_mut(i))
            })
            .expect("the caller looked the partition up");
        commit(p, next)
    }

    /// A replica list (a partition of an assignment, or a reassignment target): non-empty, no
    /// broker twice, every broker registered.
    fn check_replica_list(&self, replicas: &[BrokerId]) -> Result<(), MetadataError> {
        let refuse = |why: String| Err(MetadataError::InvalidReplicaAssignment(why));
        if replicas.is_empty() {
            return refuse("a replica list is empty".to_string());
        }
        for (i, b) in replicas.iter().enumerate() {
            if replicas[..i].contains(b) {
                return refuse(format!("broker {b} appears twice in {replicas:?}"));
            }
            if !self.brokers.contains_key(b) {
                return refuse(format!("broker {b} in {replicas:?} is not registered"));
            }
        }
        Ok(())
    }

    /// Every list valid, and all of length `replication_factor`.
    fn check_assignment(
        &self,
        assignment: &[Vec<BrokerId>],
        replication_factor: usize,
    ) -> Result<(), MetadataError> {
        for replicas in assignment {
            self.check_replica_list(replicas)?;
            if replicas.len() != replication_factor {
                return Err(MetadataError::InvalidReplicaAssignment(format!(
                    "replica list {replicas:?} has {} replicas; every partition must have {}",
                    replicas.len(),
                    replication_factor
                )));
            }
        }
        Ok(())
    }
}

fn check_partition_count(existing: usize, added: usize) -> Result<(), MetadataError> {
    let total = existing.saturating_add(added);
    if total > PARTITIONS_PER_TOPIC_MAX as usize {
        return Err(MetadataError::InvalidPartitions(format!(
            "{total} partitions; a topic may have at most {PARTITIONS_PER_TOPIC_MAX}"
        )));
    }
    Ok(())
}

fn partition_of(topic: &TopicRecord, partition: i32) -> Result<&PartitionRecord, MetadataError> {
    usize::try_from(partition)
        .ok()
        .and_then(|i| topic.partitions.get(i))
        .ok_or_else(|| MetadataError::UnknownPartition {
            topic: topic.name.to_string(),
            partition,
        })
}

pub(crate) fn is_live_in(brokers: &Brokers, id: BrokerId) -> bool {
    brokers
        .get(&id)
        .is_some_and(|b| !b.fenced && !b.shutting_down)
}

/// A new partition: the live replicas are its ISR and the first of them leads. With no live
/// replica, every replica is in the ISR (they are all empty) and it starts offline.
fn new_partition(replicas: &[BrokerId], brokers: &Brokers) -> PartitionRecord {
    let live: Vec<BrokerId> = replicas
        .iter()
        .filter(|b| is_live_in(brokers, **b))
        .copied()
        .collect();
    let (leader, isr) = match live.first() {
        Some(first) => (Some(*first), live.clone()),
        None => (None, replicas.to_vec()),
    };
    PartitionRecord {
        replicas: replicas.to_vec(),
        leader,
        leader_epoch: LeaderEpoch(0),
        partition_epoch: PartitionEpoch(0),
        isr,
        reassignment: None,
        emptied: Vec::new(),
    }
}

/// The first replica in replica order that is in the ISR and live.
fn first_live_in_isr(p: &PartitionRecord, brokers: &Brokers) -> Option<BrokerId> {
    p.replicas
        .iter()
        .find(|b| p.isr.contains(b) && is_live_in(brokers, **b))
        .copied()
}

/// Unclean election: the first live replica that still has its log leads, alone in the ISR.
/// Leaves the partition offline if there is none: a replica that came back with an empty disk
/// (`emptied`) is never elected, for every other replica would then truncate to nothing; the
/// operator's remedy is a reassignment or deleting the topic.
fn elect_unclean(p: &mut PartitionRecord, brokers: &Brokers) {
    if let Some(b) = p
        .replicas
        .iter()
        .find(|b| is_live_in(brokers, **b) && !p.emptied.contains(b))
    {
        p.leader = Some(*b);
        p.isr = vec![*b];
    }
}

/// Sets the replicas to `replicas` and the ISR to ISR ∩ `replicas` (in replica order), which
/// the caller guarantees is non-empty. The leader stays if it is still a replica and live;
/// otherwise the first live ISR member leads. If there is none, a leader that is still a
/// replica (one in controlled shutdown) keeps leading; else, with `unclean` election, the
/// first live replica leads alone in the ISR; else the partition goes offline.
fn reshape(p: &mut PartitionRecord, replicas: Vec<BrokerId>, brokers: &Brokers, unclean: bool) {
    p.isr = replicas
        .iter()
        .filter(|b| p.isr.contains(b))
        .copied()
        .collect();
    assert!(
        !p.isr.is_empty(),
        "reshaping to {replicas:?} would empty the ISR"
    );
    p.replicas = replicas;
    let keep = p
        .leader
        .is_some_and(|l| p.isr.contains(&l) && is_live_in(brokers, l));
    if !keep {
        p.leader = first_live_in_isr(p, brokers).or(p.leader.filter(|l| p.isr.contains(l)));
        if p.leader.is_none() && unclean {
            elect_unclean(p, brokers);
        }
    }
}

/// Completes a reassignment whose target replicas are all in the ISR: the target becomes the
/// replica list, the removed replicas leave the ISR, and leadership moves if the leader was
/// removed.
fn complete_reassignment(p: &mut PartitionRecord, brokers: &Brokers, unclean: bool) {
    let Some(reassignment) = p.reassignment.take() else {
        return;
    };
    reshape(p, reassignment.target, brokers, unclean);
}

/// Replaces `current` with `next` if they differ, bumping the partition epoch, and the leader
/// epoch if the leader changed (to or from `None` included). The epochs in `next` are ignored.
/// Returns whether anything changed.
fn commit(current: &mut PartitionRecord, mut next: PartitionRecord) -> bool {
    next.leader_epoch = current.leader_epoch;
    next.partition_epoch = current.partition_epoch;
    // A replica back in the ISR has caught up: it holds a log again.
    next.emptied
        .retain(|b| !next.isr.contains(b) && next.replicas.contains(b));
    if next == *current {
        return false;
    }
    // A new leader, or a replica removed (a reassignment completed or was cancelled): a new
    // leader epoch. The removed replica's fetches still in flight carry the old epoch, and the
    // leader must refuse them: one that arrives after the replica was removed, its log
    // deleted and then added back would otherwise report the old log's end for the new, empty
    // one, and the leader would count it for the watermark and the ISR (found by the
    // simulation; Kafka's `triggerLeaderEpochBumpForReplicaReassignmentIfNeeded`).
    let replica_removed = current.replicas.iter().any(|b| !next.replicas.contains(b));
    if next.leader != current.leader || replica_removed {
        next.leader_epoch = LeaderEpoch(current.leader_epoch.0 + 1);
    }
    next.partition_epoch = PartitionEpoch(current.partition_epoch.0 + 1);
    if let Err(broken) = next.check() {
        panic!("partition record invariant broken: {broken}: {next:?}");
    }
    *current = next;
    true
}
