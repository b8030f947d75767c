//! The cluster as a client of the coordinators sees it: brokers, topics, partitions, leaders
//! and ISRs, and SASL users' SCRAM credentials, in Weir's types. The broker keeps one up to date from the watch stream
//! ([`ClusterView::apply`]); the operator takes one from DescribeCluster
//! ([`ClusterView::from_description`]). Both read this shape, so a field means the same thing
//! on either side, and the wire's raw ids are checked in one place.
//!
//! The coordinators' own records (`weir_metadata::state`) hold more than this (incarnations,
//! directory ids, replicas that came back empty, a reassignment's original list): what only
//! the quorum decides with stays there and does not travel.

use std::collections::{BTreeMap, BTreeSet};
use weir_model::acl::AclBinding;
use weir_model::{
    BrokerEpoch, BrokerId, LeaderEpoch, PartitionEpoch, PartitionId, ScramCredential,
    ScramMechanism, TopicId, TopicName,
};
use weir_proto::v1;

/// A broker as the coordinators know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerView {
    pub id: BrokerId,
    /// The first listener's advertised host and port.
    pub kafka_host: String,
    pub kafka_port: i32,
    /// Every listener's advertised host and port, by listener name. Empty for a broker that
    /// registered without them: `kafka_host:kafka_port` is then its only address.
    pub endpoints: BTreeMap<String, (String, i32)>,
    pub internal_addr: String,
    pub rack: Option<String>,
    /// The epoch of the broker's current registration: a replica fetch must carry it.
    pub epoch: BrokerEpoch,
    /// Not heartbeating: its partitions have moved to others.
    pub fenced: bool,
    pub shutting_down: bool,
}

/// One partition's placement, leader and ISR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionView {
    pub index: PartitionId,
    /// Preference order: `replicas[0]` is the preferred leader. During a reassignment, the
    /// union of the old and the target replicas.
    pub replicas: Vec<BrokerId>,
    /// None while the partition is offline.
    pub leader: Option<BrokerId>,
    pub leader_epoch: LeaderEpoch,
    pub partition_epoch: PartitionEpoch,
    pub isr: Vec<BrokerId>,
    /// Replicas a reassignment is adding (catching up) and removing.
    pub adding: Vec<BrokerId>,
    pub removing: Vec<BrokerId>,
}

impl PartitionView {
    /// A partition led by `replicas[0]`, all in sync, at epoch 0: what a new topic starts as.
    pub fn new(index: PartitionId, replicas: Vec<BrokerId>) -> PartitionView {
        PartitionView {
            index,
            leader: replicas.first().copied(),
            isr: replicas.clone(),
            replicas,
            leader_epoch: LeaderEpoch(0),
            partition_epoch: PartitionEpoch(0),
            adding: Vec::new(),
            removing: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicView {
    pub name: TopicName,
    pub id: TopicId,
    /// Only the configs set on the topic; unset keys take the cluster's defaults.
    pub configs: BTreeMap<String, String>,
    /// In index order: `partitions[i].index == i`.
    pub partitions: Vec<PartitionView>,
}

impl TopicView {
    pub fn partition(&self, index: PartitionId) -> Option<&PartitionView> {
        usize::try_from(index.get())
            .ok()
            .and_then(|i| self.partitions.get(i))
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterView {
    pub cluster_id: String,
    /// The metadata version this view is at; it only grows in one cluster.
    pub version: i64,
    pub brokers: BTreeMap<BrokerId, BrokerView>,
    pub topics: BTreeMap<TopicName, TopicView>,
    /// The coordinators' Raft leader, when known.
    pub coordinator_leader: Option<i32>,
    /// SASL users' SCRAM credentials, by user name.
    pub users: BTreeMap<String, BTreeMap<ScramMechanism, ScramCredential>>,
    /// The cluster's ACLs.
    pub acls: BTreeSet<AclBinding>,
}

impl ClusterView {
    pub fn topic(&self, name: &str) -> Option<&TopicView> {
        TopicName::new(name).ok().and_then(|n| self.topics.get(&n))
    }

    pub fn topic_by_id(&self, id: TopicId) -> Option<&TopicView> {
        self.topics.values().find(|t| t.id == id)
    }

    /// Brokers clients may be sent to: registered and not fenced.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerView> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    /// The brokers a client that came through `listener` may be sent to, with their address
    /// on it: live ones that have that listener (Kafka leaves the others out).
    pub fn live_brokers_on<'a>(
        &'a self,
        listener: &'a str,
    ) -> impl Iterator<Item = (&'a BrokerView, &'a str, i32)> {
        self.live_brokers()
            .filter_map(move |b| b.endpoint(listener).map(|(host, port)| (b, host, port)))
    }

    /// Every partition of every topic.
    pub fn partitions(&self) -> impl Iterator<Item = (&TopicView, &PartitionView)> {
        self.topics
            .values()
            .flat_map(|t| t.partitions.iter().map(move |p| (t, p)))
    }

    /// Partitions with fewer in-sync replicas than replicas.
    pub fn under_replicated(&self) -> usize {
        self.partitions()
            // A replica still being added (a reassignment) is catching up, not missing.
            .filter(|(_, p)| p.isr.len() < p.replicas.len().saturating_sub(p.adding.len()))
            .count()
    }

    /// The view a DescribeCluster answer gives. Malformed records are skipped as in
    /// [`ClusterView::apply`].
    pub fn from_description(d: v1::DescribeClusterResponse) -> ClusterView {
        let mut view = ClusterView::default();
        view.apply(&v1::MetadataUpdate {
            version: d.version,
            full: true,
            cluster_id: d.cluster_id,
            brokers: d.brokers,
            topics: d.topics,
            removed_brokers: Vec::new(),
            removed_topics: Vec::new(),
            coordinator_leader: d.coordinator_leader,
            users: Vec::new(),
            removed_users: Vec::new(),
            added_acls: Vec::new(),
            removed_acls: Vec::new(),
        });
        view
    }

    /// Applies one update from the watch stream. Malformed records (a bad topic name or id)
    /// are skipped with a warning: the coordinator validated them, so this is a bug elsewhere,
    /// and one bad record must not stop the broker following the rest.
    pub fn apply(&mut self, update: &v1::MetadataUpdate) {
        if update.full {
            self.brokers.clear();
            self.topics.clear();
            self.users.clear();
            self.acls.clear();
            self.version = update.version;
        }
        if !update.cluster_id.is_empty() {
            self.cluster_id = update.cluster_id.clone();
        }
        self.version = self.version.max(update.version);
        self.coordinator_leader = update.coordinator_leader;
        for b in &update.brokers {
            match BrokerView::from_wire(b) {
                Some(view) => {
                    self.brokers.insert(view.id, view);
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
        self.apply_users(update);
        for t in &update.topics {
            match TopicView::from_wire(t) {
                // A re-created topic replaces the old one of the same name.
                Some(view) => {
                    self.topics.insert(view.name.clone(), view);
                }
                None => {
                    tracing::warn!(topic = %t.name, id = %t.id, "skipping a malformed topic record")
                }
            }
        }
    }
}

impl ClusterView {
    /// A user's credential for one mechanism.
    pub fn scram(&self, user: &str, m: ScramMechanism) -> Option<&ScramCredential> {
        self.users.get(user).and_then(|c| c.get(&m))
    }

    /// Users and ACLs: what the broker authenticates and authorizes with.
    fn apply_users(&mut self, update: &v1::MetadataUpdate) {
        for name in &update.removed_users {
            self.users.remove(name);
        }
        for u in &update.users {
            let mut creds = BTreeMap::new();
            for c in &u.credentials {
                match weir_proto::convert::scram_credential_from(c) {
                    Some((m, credential)) => {
                        creds.insert(m, credential);
                    }
                    None => {
                        tracing::warn!(user = %u.name, mechanism = c.mechanism, "skipping a malformed SCRAM credential")
                    }
                }
            }
            self.users.insert(u.name.clone(), creds);
        }
        for a in &update.removed_acls {
            if let Some(a) = weir_proto::convert::acl_from(a) {
                self.acls.remove(&a);
            }
        }
        for a in &update.added_acls {
            match weir_proto::convert::acl_from(a) {
                Some(a) => {
                    self.acls.insert(a);
                }
                None => tracing::warn!(acl = ?a, "skipping a malformed ACL"),
            }
        }
    }
}

impl BrokerView {
    /// `host:port`, brackets around an IPv6 host.
    pub fn kafka_addr(&self) -> String {
        if self.kafka_host.contains(':') {
            format!("[{}]:{}", self.kafka_host, self.kafka_port)
        } else {
            format!("{}:{}", self.kafka_host, self.kafka_port)
        }
    }

    /// Where a client that connected through `listener` reaches this broker: that listener's
    /// address, or None if the broker has no such listener.
    pub fn endpoint(&self, listener: &str) -> Option<(&str, i32)> {
        if self.endpoints.is_empty() {
            return Some((&self.kafka_host, self.kafka_port));
        }
        self.endpoints
            .get(listener)
            .map(|(host, port)| (host.as_str(), *port))
    }

    fn from_wire(b: &v1::Broker) -> Option<BrokerView> {
        let (kafka_host, kafka_port) = split_host_port(&b.kafka_addr)?;
        let mut endpoints = BTreeMap::new();
        for e in &b.endpoints {
            match split_host_port(&e.addr) {
                Some(hp) => {
                    endpoints.insert(e.listener.clone(), hp);
                }
                None => {
                    tracing::warn!(broker = b.id, listener = %e.listener, addr = %e.addr, "skipping a listener with a bad address")
                }
            }
        }
        Some(BrokerView {
            id: BrokerId(b.id),
            kafka_host,
            kafka_port,
            endpoints,
            internal_addr: b.internal_addr.clone(),
            rack: b.rack.clone(),
            epoch: BrokerEpoch(b.epoch),
            fenced: b.fenced,
            shutting_down: b.shutting_down,
        })
    }
}

/// `host:port` (brackets around an IPv6 host) as host and port.
fn split_host_port(addr: &str) -> Option<(String, i32)> {
    let (host, port) = addr.rsplit_once(':')?;
    let host = host.trim_matches(|c| c == '[' || c == ']');
    (!host.is_empty()).then_some(())?;
    Some((host.to_string(), port.parse().ok()?))
}

impl TopicView {
    /// The topic a wire record describes; None when its name or id is malformed or its
    /// partitions are not numbered `0..n` in order.
    pub fn from_wire(t: &v1::Topic) -> Option<TopicView> {
        let ids = |v: &[i32]| v.iter().map(|&b| BrokerId(b)).collect();
        let partitions: Vec<PartitionView> = t
            .partitions
            .iter()
            .map(|p| PartitionView {
                index: PartitionId(p.partition),
                replicas: ids(&p.replicas),
                leader: p.leader.map(BrokerId),
                leader_epoch: LeaderEpoch(p.leader_epoch),
                partition_epoch: PartitionEpoch(p.partition_epoch),
                isr: ids(&p.isr),
                adding: ids(&p.adding_replicas),
                removing: ids(&p.removing_replicas),
            })
            .collect();
        let in_order = partitions
            .iter()
            .enumerate()
            .all(|(i, p)| usize::try_from(p.index.get()).is_ok_and(|x| x == i));
        in_order.then_some(())?;
        Some(TopicView {
            name: TopicName::new(t.name.clone()).ok()?,
            id: TopicId::parse(&t.id)?,
            configs: t
                .configs
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            partitions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire_topic(name: &str, id: &str, indexes: &[i32]) -> v1::Topic {
        v1::Topic {
            name: name.into(),
            id: id.into(),
            configs: Default::default(),
            partitions: indexes
                .iter()
                .map(|&i| v1::Partition {
                    partition: i,
                    replicas: vec![1, 2],
                    leader: Some(1),
                    isr: vec![1],
                    ..Default::default()
                })
                .collect(),
        }
    }

    fn broker(id: i32, addr: &str) -> v1::Broker {
        v1::Broker {
            id,
            kafka_addr: addr.into(),
            ..Default::default()
        }
    }

    const ID: &str = "00000000-0000-0000-0000-000000000001";

    #[test]
    fn a_description_becomes_a_view_and_malformed_records_are_skipped() {
        let view = ClusterView::from_description(v1::DescribeClusterResponse {
            cluster_id: "c".into(),
            version: 7,
            brokers: vec![
                broker(1, "h1:9092"),
                broker(2, "[::1]:9092"),
                broker(3, "no-port"),
            ],
            topics: vec![
                wire_topic("t", ID, &[0, 1]),
                wire_topic("bad name!", ID, &[0]),
                wire_topic("gaps", ID, &[0, 2]),
                wire_topic("badid", "x", &[0]),
            ],
            ..Default::default()
        });
        assert_eq!(view.version, 7);
        assert_eq!(
            view.brokers.keys().copied().collect::<Vec<_>>(),
            [BrokerId(1), BrokerId(2)]
        );
        assert_eq!(view.brokers[&BrokerId(2)].kafka_addr(), "[::1]:9092");
        assert_eq!(view.brokers[&BrokerId(1)].kafka_addr(), "h1:9092");
        assert_eq!(view.topics.len(), 1, "{:?}", view.topics.keys());
        let t = view.topic("t").unwrap();
        assert_eq!(
            t.partition(PartitionId(1)).unwrap().leader,
            Some(BrokerId(1))
        );
        assert!(t.partition(PartitionId(2)).is_none());
        assert_eq!(view.under_replicated(), 2);
    }

    #[test]
    fn a_client_gets_the_address_of_the_listener_it_came_through() {
        let mut b = broker(1, "plain:9092");
        b.endpoints = vec![
            v1::Endpoint {
                listener: "PLAIN".into(),
                addr: "plain:9092".into(),
            },
            v1::Endpoint {
                listener: "TLS".into(),
                addr: "[::1]:9094".into(),
            },
            v1::Endpoint {
                listener: "BAD".into(),
                addr: "no-port".into(),
            },
        ];
        let old = broker(2, "old:9092");
        let view = ClusterView::from_description(v1::DescribeClusterResponse {
            brokers: vec![b, old],
            ..Default::default()
        });
        let b = &view.brokers[&BrokerId(1)];
        assert_eq!(b.endpoint("TLS"), Some(("::1", 9094)));
        assert_eq!(b.endpoint("PLAIN"), Some(("plain", 9092)));
        assert_eq!(b.endpoint("BAD"), None);
        assert_eq!(b.endpoint("OTHER"), None);
        // A broker that registered no listeners has one address, whatever the listener.
        assert_eq!(
            view.brokers[&BrokerId(2)].endpoint("TLS"),
            Some(("old", 9092))
        );
    }

    #[test]
    fn updates_add_replace_and_remove_and_a_full_update_starts_over() {
        let mut view = ClusterView::default();
        view.apply(&v1::MetadataUpdate {
            version: 3,
            full: true,
            brokers: vec![broker(1, "h:1"), broker(2, "h:2")],
            topics: vec![wire_topic("t", ID, &[0])],
            ..Default::default()
        });
        view.apply(&v1::MetadataUpdate {
            version: 4,
            removed_brokers: vec![2],
            removed_topics: vec![ID.into()],
            ..Default::default()
        });
        assert_eq!(view.version, 4);
        assert_eq!(view.brokers.len(), 1);
        assert!(view.topics.is_empty());
        view.apply(&v1::MetadataUpdate {
            version: 2,
            full: true,
            topics: vec![wire_topic("u", ID, &[0])],
            ..Default::default()
        });
        // A full update replaces everything, its version too.
        assert_eq!(view.version, 2);
        assert!(view.brokers.is_empty());
        assert!(view.topic("u").is_some());
    }
}
