//! The cluster as this broker last heard of it from the coordinators' watch stream.
//!
//! Replaced whole on every update (copy on write behind an `Arc`): readers (Metadata,
//! DescribeConfigs) take a consistent snapshot without holding a lock while they encode.

use std::collections::BTreeMap;
use weir_model::{BrokerEpoch, BrokerId, LeaderEpoch, PartitionEpoch, TopicId, TopicName};
use weir_proto::v1;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerInfo {
    pub id: BrokerId,
    pub kafka_host: String,
    pub kafka_port: i32,
    pub internal_addr: String,
    pub rack: Option<String>,
    /// The epoch of the broker's current registration: a replica fetch must carry it.
    pub epoch: BrokerEpoch,
    pub fenced: bool,
    pub shutting_down: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionInfo {
    pub index: i32,
    pub replicas: Vec<BrokerId>,
    pub leader: Option<BrokerId>,
    pub leader_epoch: LeaderEpoch,
    pub partition_epoch: PartitionEpoch,
    pub isr: Vec<BrokerId>,
    pub adding: Vec<BrokerId>,
    pub removing: Vec<BrokerId>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: TopicName,
    pub id: TopicId,
    pub configs: BTreeMap<String, String>,
    pub partitions: Vec<PartitionInfo>,
}

impl TopicInfo {
    pub fn partition(&self, index: i32) -> Option<&PartitionInfo> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.get(i))
    }
}

#[derive(Clone, Debug, Default)]
pub struct ClusterView {
    pub cluster_id: String,
    pub version: i64,
    pub brokers: BTreeMap<BrokerId, BrokerInfo>,
    pub topics: BTreeMap<TopicName, TopicInfo>,
    /// The coordinators' Raft leader, when known.
    pub coordinator_leader: Option<i32>,
}

impl ClusterView {
    pub fn topic(&self, name: &str) -> Option<&TopicInfo> {
        TopicName::new(name).ok().and_then(|n| self.topics.get(&n))
    }

    pub fn topic_by_id(&self, id: TopicId) -> Option<&TopicInfo> {
        self.topics.values().find(|t| t.id == id)
    }

    /// Whether broker `me` is ready for traffic (its Kubernetes readiness): registered and
    /// unfenced, and in the ISR of every partition it replicates that has a leader. A broker
    /// restarting after a crash is not ready until it has caught up, so a rolling restart waits
    /// for it before taking down the next one. Partitions it is being added to (reassignment)
    /// do not count: a copy in progress is not a reason to hold up the rollout.
    pub fn readiness(&self, me: BrokerId) -> Result<(), String> {
        match self.brokers.get(&me) {
            None => {
                return Err(format!(
                    "broker {me} is not registered with the coordinators"
                ));
            }
            Some(b) if b.fenced => {
                return Err(format!(
                    "broker {me} is fenced (not caught up with metadata)"
                ));
            }
            Some(_) => {}
        }
        let mut behind = Vec::new();
        for t in self.topics.values() {
            for p in &t.partitions {
                let follows = p.replicas.contains(&me) && !p.adding.contains(&me);
                let led_elsewhere = p.leader.is_some_and(|l| l != me);
                if follows && led_elsewhere && !p.isr.contains(&me) {
                    behind.push(format!("{}-{}", t.name, p.index));
                }
            }
        }
        if behind.is_empty() {
            return Ok(());
        }
        let n = behind.len();
        behind.truncate(10);
        Err(format!(
            "broker {me} is not yet in sync for {n} partition(s): {}",
            behind.join(", ")
        ))
    }

    /// Brokers clients may be sent to: registered and not fenced.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerInfo> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    /// Applies one update from the watch stream. Malformed records (a bad topic name or id)
    /// are skipped with a warning: the coordinator validated them, so this is a bug elsewhere,
    /// and one bad record must not stop the broker following the rest.
    pub fn apply(&mut self, update: &v1::MetadataUpdate) {
        if update.full {
            self.brokers.clear();
            self.topics.clear();
        }
        if !update.cluster_id.is_empty() {
            self.cluster_id = update.cluster_id.clone();
        }
        self.version = self.version.max(update.version);
        if update.full {
            self.version = update.version;
        }
        self.coordinator_leader = update.coordinator_leader;
        for b in &update.brokers {
            match broker_info(b) {
                Some(info) => {
                    self.brokers.insert(info.id, info);
                }
                None => {
                    tracing::warn!(broker = b.id, addr = %b.kafka_addr, "skipping a broker record with a bad address")
                }
            }
        }
        for id in &update.removed_brokers {
            self.brokers.remove(&BrokerId(*id));
        }
        for id in &update.removed_topics {
            if let Some(id) = TopicId::parse(id) {
                self.topics.retain(|_, t| t.id != id);
            }
        }
        for t in &update.topics {
            match topic_info(t) {
                Some(info) => {
                    // A re-created topic replaces the old one of the same name.
                    self.topics.insert(info.name.clone(), info);
                }
                None => {
                    tracing::warn!(topic = %t.name, id = %t.id, "skipping a malformed topic record")
                }
            }
        }
    }
}

fn broker_info(b: &v1::Broker) -> Option<BrokerInfo> {
    let (host, port) = b.kafka_addr.rsplit_once(':')?;
    Some(BrokerInfo {
        id: BrokerId(b.id),
        kafka_host: host.trim_matches(|c| c == '[' || c == ']').to_string(),
        kafka_port: port.parse().ok()?,
        internal_addr: b.internal_addr.clone(),
        rack: b.rack.clone(),
        epoch: BrokerEpoch(b.epoch),
        fenced: b.fenced,
        shutting_down: b.shutting_down,
    })
}

fn topic_info(t: &v1::Topic) -> Option<TopicInfo> {
    Some(TopicInfo {
        name: TopicName::new(t.name.clone()).ok()?,
        id: TopicId::parse(&t.id)?,
        configs: t
            .configs
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        partitions: t
            .partitions
            .iter()
            .map(|p| PartitionInfo {
                index: p.partition,
                replicas: p.replicas.iter().map(|&b| BrokerId(b)).collect(),
                leader: p.leader.map(BrokerId),
                leader_epoch: LeaderEpoch(p.leader_epoch),
                partition_epoch: PartitionEpoch(p.partition_epoch),
                isr: p.isr.iter().map(|&b| BrokerId(b)).collect(),
                adding: p.adding_replicas.iter().map(|&b| BrokerId(b)).collect(),
                removing: p.removing_replicas.iter().map(|&b| BrokerId(b)).collect(),
            })
            .collect(),
    })
}

#[cfg(test)]
mod readiness_tests {
    use super::*;

    fn view(fenced: bool, isr: Vec<i32>, adding: Vec<i32>) -> ClusterView {
        let b = BrokerId;
        let mut v = ClusterView::default();
        for id in 0..3 {
            v.brokers.insert(
                b(id),
                BrokerInfo {
                    id: b(id),
                    kafka_host: "h".into(),
                    kafka_port: 9092,
                    internal_addr: "h:9093".into(),
                    rack: None,
                    epoch: BrokerEpoch(1),
                    fenced: fenced && id == 1,
                    shutting_down: false,
                },
            );
        }
        let name = TopicName::new("t").unwrap();
        v.topics.insert(
            name.clone(),
            TopicInfo {
                name,
                id: TopicId([1; 16]),
                configs: BTreeMap::new(),
                partitions: vec![PartitionInfo {
                    index: 0,
                    replicas: vec![b(0), b(1)],
                    leader: Some(b(0)),
                    leader_epoch: LeaderEpoch(1),
                    partition_epoch: PartitionEpoch(1),
                    isr: isr.into_iter().map(b).collect(),
                    adding: adding.into_iter().map(b).collect(),
                    removing: Vec::new(),
                }],
            },
        );
        v
    }

    #[test]
    fn a_broker_is_ready_once_registered_unfenced_and_in_sync_everywhere_it_follows() {
        let me = BrokerId(1);
        assert!(view(false, vec![0, 1], vec![]).readiness(me).is_ok());
        let e = view(false, vec![0], vec![]).readiness(me).unwrap_err();
        assert!(e.contains("t-0"), "{e}");
        assert!(
            view(true, vec![0, 1], vec![])
                .readiness(me)
                .unwrap_err()
                .contains("fenced")
        );
        assert!(
            view(false, vec![0], vec![])
                .readiness(BrokerId(7))
                .unwrap_err()
                .contains("not registered")
        );
        // Being copied to as a reassignment target does not hold readiness back.
        assert!(view(false, vec![0], vec![1]).readiness(me).is_ok());
        // The leader itself is ready whatever the ISR.
        assert!(view(false, vec![0], vec![]).readiness(BrokerId(0)).is_ok());
    }
}
