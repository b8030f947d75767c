//! Tests of `apply` (one per rule), of placement, and a property test over random command
//! sequences.

mod apply;
mod placement;
mod random;

use crate::*;
use std::collections::BTreeMap;
use weir_model::{BrokerEpoch, BrokerId, LeaderEpoch, PartitionEpoch, TopicId, TopicName};

pub(super) fn b(id: i32) -> BrokerId {
    BrokerId(id)
}

pub(super) fn bs(ids: &[i32]) -> Vec<BrokerId> {
    ids.iter().map(|i| BrokerId(*i)).collect()
}

pub(super) fn t(name: &str) -> TopicName {
    TopicName::new(name).expect("a valid topic name")
}

/// A state plus a log index that advances with every command, checking after each one that
/// the invariants hold and that a refused command changed nothing.
#[derive(Debug, Default)]
pub(super) struct Cluster {
    pub state: MetadataState,
    pub index: u64,
}

impl Cluster {
    /// An initialised cluster with brokers `1..=n`, registered and unfenced.
    pub fn with_brokers(n: i32) -> Cluster {
        let mut c = Cluster::default();
        c.ok(Command::InitCluster {
            cluster_id: "test".to_string(),
        });
        for id in 1..=n {
            c.register(id, "first");
            c.unfence(id);
        }
        c
    }

    pub fn apply(&mut self, command: Command) -> ApplyResult {
        self.index += 1;
        let before = self.state.clone();
        let result = self.state.apply(self.index, &command);
        if result.is_err() {
            assert_eq!(
                before, self.state,
                "a refused {command:?} changed the state"
            );
        }
        if let Err(broken) = self.state.check_invariants() {
            panic!("after {command:?}: {broken}");
        }
        result
    }

    pub fn ok(&mut self, command: Command) -> (Reply, Changes) {
        let shown = format!("{command:?}");
        self.apply(command)
            .unwrap_or_else(|e| panic!("{shown} refused: {e}"))
    }

    pub fn err(&mut self, command: Command) -> MetadataError {
        let shown = format!("{command:?}");
        match self.apply(command) {
            Ok(r) => panic!("{shown} accepted: {r:?}"),
            Err(e) => e,
        }
    }

    pub fn register(&mut self, id: i32, incarnation: &str) -> BrokerEpoch {
        self.register_in(id, incarnation, &format!("dir-{id}"))
    }

    /// Registers with the data directory `directory_id` (another one than before: a lost disk).
    pub fn register_in(&mut self, id: i32, incarnation: &str, directory_id: &str) -> BrokerEpoch {
        match self.ok(Command::RegisterBroker {
            id: b(id),
            kafka_addr: format!("b{id}:9092"),
            internal_addr: format!("b{id}:9093"),
            rack: None,
            incarnation: incarnation.to_string(),
            directory_id: directory_id.to_string(),
            endpoints: Vec::new(),
        }) {
            (Reply::BrokerRegistered { epoch }, _) => epoch,
            other => panic!("unexpected {other:?}"),
        }
    }

    pub fn epoch(&self, id: i32) -> BrokerEpoch {
        self.state.brokers[&b(id)].epoch
    }

    pub fn fence(&mut self, id: i32) -> (Reply, Changes) {
        let epoch = self.epoch(id);
        self.ok(Command::FenceBroker { id: b(id), epoch })
    }

    pub fn unfence(&mut self, id: i32) -> (Reply, Changes) {
        let epoch = self.epoch(id);
        self.ok(Command::UnfenceBroker { id: b(id), epoch })
    }

    /// Controlled shutdown; returns the leaderships it still holds.
    pub fn shutdown(&mut self, id: i32) -> u32 {
        let epoch = self.epoch(id);
        match self.ok(Command::ControlledShutdown { id: b(id), epoch }) {
            (Reply::RemainingLeaderships(n), _) => n,
            other => panic!("unexpected {other:?}"),
        }
    }

    pub fn create(&mut self, name: &str, assignment: &[&[i32]]) -> TopicId {
        self.create_with(name, assignment, BTreeMap::new())
    }

    pub fn create_with(
        &mut self,
        name: &str,
        assignment: &[&[i32]],
        configs: BTreeMap<String, String>,
    ) -> TopicId {
        let id = TopicId([self.state.topics.len() as u8 + 1; 16]);
        self.ok(Command::CreateTopic {
            name: t(name),
            id,
            assignment: assignment.iter().map(|r| bs(r)).collect(),
            configs,
        });
        id
    }

    pub fn p(&self, name: &str, partition: i32) -> &PartitionRecord {
        self.state
            .partition(&t(name), partition)
            .expect("the partition exists")
    }

    /// AlterPartition from the current leader with the current epochs.
    pub fn alter_isr(&mut self, name: &str, partition: i32, isr: &[i32]) -> ApplyResult {
        let p = self.p(name, partition).clone();
        let leader = p.leader.expect("the partition has a leader");
        let command = Command::AlterPartition {
            broker: leader,
            broker_epoch: self.epoch(leader.0),
            topic: self.state.topics[&t(name)].id,
            partition,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            new_isr: bs(isr),
        };
        self.apply(command)
    }

    /// Leader, ISR and the two epochs, for compact assertions.
    pub fn shape(&self, name: &str, partition: i32) -> (Option<i32>, Vec<i32>, i32, i32) {
        let p = self.p(name, partition);
        (
            p.leader.map(|l| l.0),
            p.isr.iter().map(|b| b.0).collect(),
            p.leader_epoch.0,
            p.partition_epoch.0,
        )
    }
}

pub(super) fn unclean() -> BTreeMap<String, String> {
    BTreeMap::from([(UNCLEAN_LEADER_ELECTION_KEY.to_string(), "true".to_string())])
}
