//! Metadata records to protobuf messages, and metadata errors to `weir.v1.Error`: the one place
//! where `weir_metadata` types meet generated ones.

use crate::store::state_machine::Applied;
use weir_metadata::{
    BrokerRecord, MetadataError, MetadataState, PartitionRecord, TopicRecord, UserCredentials,
};
use weir_model::BrokerId;
pub use weir_proto::convert::{
    acl, acl_filter_from, acl_from, scram_credential, scram_credential_from,
};
use weir_proto::v1 as pb;

pub use weir_proto::codes::{
    INVALID_CONFIG, INVALID_PARTITIONS, INVALID_REPLICATION_FACTOR, INVALID_REQUEST,
    INVALID_TOPIC_EXCEPTION, POLICY_VIOLATION, UNKNOWN_TOPIC_ID, UNSUPPORTED_SASL_MECHANISM,
};

pub fn error(code: i32, message: impl Into<String>) -> Option<pb::Error> {
    Some(pb::Error {
        code,
        message: message.into(),
    })
}

pub fn metadata_error(e: &MetadataError) -> Option<pb::Error> {
    error(i32::from(e.kafka_code()), e.to_string())
}

fn ids(list: &[BrokerId]) -> Vec<i32> {
    list.iter().map(|b| b.get()).collect()
}

pub fn broker(b: &BrokerRecord) -> pb::Broker {
    pb::Broker {
        id: b.id.get(),
        kafka_addr: b.kafka_addr.clone(),
        internal_addr: b.internal_addr.clone(),
        rack: b.rack.clone(),
        epoch: b.epoch.get(),
        fenced: b.fenced,
        shutting_down: b.shutting_down,
        endpoints: b
            .endpoints
            .iter()
            .map(|e| pb::Endpoint {
                listener: e.listener.clone(),
                addr: e.addr.clone(),
            })
            .collect(),
    }
}

pub fn partition(index: i32, p: &PartitionRecord) -> pb::Partition {
    let (adding, removing) = match &p.reassignment {
        Some(r) => (ids(&r.adding()), ids(&r.removing())),
        None => (Vec::new(), Vec::new()),
    };
    pb::Partition {
        partition: index,
        replicas: ids(&p.replicas),
        leader: p.leader.map(BrokerId::get),
        leader_epoch: p.leader_epoch.get(),
        partition_epoch: p.partition_epoch.get(),
        isr: ids(&p.isr),
        adding_replicas: adding,
        removing_replicas: removing,
    }
}

pub fn topic(t: &TopicRecord) -> pb::Topic {
    pb::Topic {
        name: t.name.to_string(),
        id: t.id.to_uuid_string(),
        configs: t
            .configs
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        partitions: t
            .partitions
            .iter()
            .zip(0..)
            .map(|(p, i)| partition(i, p))
            .collect(),
    }
}

pub fn user(name: &str, creds: &UserCredentials) -> pb::User {
    pb::User {
        name: name.to_string(),
        credentials: creds.iter().map(|(m, c)| scram_credential(*m, c)).collect(),
    }
}

/// The whole state, replacing whatever the receiver knew.
pub fn full_update(state: &MetadataState, leader: Option<i32>) -> pb::MetadataUpdate {
    pb::MetadataUpdate {
        version: state.version as i64,
        full: true,
        cluster_id: state.cluster_id.clone(),
        brokers: state.brokers.values().map(broker).collect(),
        topics: state.topics.values().map(topic).collect(),
        removed_brokers: Vec::new(),
        removed_topics: Vec::new(),
        coordinator_leader: leader,
        users: state.users.iter().map(|(n, c)| user(n, c)).collect(),
        removed_users: Vec::new(),
        added_acls: state.acls.iter().map(acl).collect(),
        removed_acls: Vec::new(),
    }
}

/// The records one applied command changed.
pub fn delta_update(a: &Applied, leader: Option<i32>) -> pb::MetadataUpdate {
    pb::MetadataUpdate {
        version: a.index as i64,
        full: false,
        cluster_id: a.cluster_id.clone(),
        brokers: a.brokers.iter().map(broker).collect(),
        topics: a.topics.iter().map(topic).collect(),
        removed_brokers: Vec::new(),
        removed_topics: a
            .removed_topics
            .iter()
            .map(|t| t.to_uuid_string())
            .collect(),
        coordinator_leader: leader,
        users: a
            .users
            .iter()
            .filter_map(|(n, c)| c.as_ref().map(|c| user(n, c)))
            .collect(),
        removed_users: a
            .users
            .iter()
            .filter(|(_, c)| c.is_none())
            .map(|(n, _)| n.clone())
            .collect(),
        added_acls: a.acls_added.iter().map(acl).collect(),
        removed_acls: a.acls_removed.iter().map(acl).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_metadata::Reassignment;
    use weir_model::{LeaderEpoch, PartitionEpoch, TopicId, TopicName};

    /// No leader is absent on the wire; a reassignment shows as adding and removing replicas.
    #[test]
    fn partitions_carry_sentinels_and_reassignments() {
        let p = PartitionRecord {
            replicas: vec![BrokerId(3), BrokerId(1), BrokerId(2)],
            leader: None,
            leader_epoch: LeaderEpoch(4),
            partition_epoch: PartitionEpoch(9),
            isr: vec![BrokerId(1)],
            reassignment: Some(Reassignment {
                target: vec![BrokerId(3), BrokerId(1)],
                original: vec![BrokerId(1), BrokerId(2)],
            }),
            emptied: Vec::new(),
        };
        let pb = partition(2, &p);
        assert_eq!(pb.partition, 2);
        assert_eq!(pb.leader, None);
        assert_eq!(pb.adding_replicas, vec![3]);
        assert_eq!(pb.removing_replicas, vec![2]);
        assert_eq!((pb.leader_epoch, pb.partition_epoch), (4, 9));
        let t = TopicRecord {
            name: TopicName::new("t").unwrap(),
            id: TopicId([7; 16]),
            configs: [("retention.ms".to_string(), "5".to_string())].into(),
            partitions: vec![p],
        };
        let pt = topic(&t);
        assert_eq!(pt.id.len(), 36);
        assert_eq!(
            pt.configs.get("retention.ms").map(String::as_str),
            Some("5")
        );
    }

    #[test]
    fn metadata_errors_keep_code_and_message() {
        let e = MetadataError::UnknownTopic("x".into());
        let pb = metadata_error(&e).unwrap();
        assert_eq!(pb.code, 3);
        assert!(pb.message.contains('x'));
    }
}
