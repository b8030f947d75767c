//! The cluster as this broker last heard of it from the coordinators' watch stream: the
//! shared [`ClusterView`] of `weir_coordinator_client::view`, replaced whole on every update
//! (copy on write behind an `Arc`), so readers (Metadata, DescribeConfigs) take a consistent
//! snapshot without holding a lock while they encode. What only a broker asks of it is here.

pub use weir_coordinator_client::view::{BrokerView, ClusterView, PartitionView, TopicView};
use weir_model::BrokerId;

/// Whether broker `me` is ready for traffic (its Kubernetes readiness): registered and
/// unfenced, and in the ISR of every partition it replicates that has a leader. A broker
/// restarting after a crash is not ready until it has caught up, so a rolling restart waits
/// for it before taking down the next one. Partitions it is being added to (reassignment)
/// do not count: a copy in progress is not a reason to hold up the rollout.
pub fn readiness(view: &ClusterView, me: BrokerId) -> Result<(), String> {
    match view.brokers.get(&me) {
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
    for t in view.topics.values() {
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

#[cfg(test)]
mod readiness_tests {
    use super::*;
    use std::collections::BTreeMap;
    use weir_model::{BrokerEpoch, LeaderEpoch, PartitionEpoch, PartitionId, TopicId, TopicName};

    fn view(fenced: bool, isr: Vec<i32>, adding: Vec<i32>) -> ClusterView {
        let b = BrokerId;
        let mut v = ClusterView::default();
        for id in 0..3 {
            v.brokers.insert(
                b(id),
                BrokerView {
                    id: b(id),
                    kafka_host: "h".into(),
                    kafka_port: 9092,
                    endpoints: BTreeMap::new(),
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
            TopicView {
                name,
                id: TopicId([1; 16]),
                configs: BTreeMap::new(),
                partitions: vec![PartitionView {
                    index: PartitionId(0),
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
        assert!(readiness(&view(false, vec![0, 1], vec![]), me).is_ok());
        let e = readiness(&view(false, vec![0], vec![]), me).unwrap_err();
        assert!(e.contains("t-0"), "{e}");
        let e = readiness(&view(true, vec![0, 1], vec![]), me).unwrap_err();
        assert!(e.contains("fenced"), "{e}");
        let e = readiness(&view(false, vec![0], vec![]), BrokerId(7)).unwrap_err();
        assert!(e.contains("not registered"), "{e}");
        // Being copied to as a reassignment target does not hold readiness back.
        assert!(readiness(&view(false, vec![0], vec![1]), me).is_ok());
        // The leader itself is ready whatever the ISR.
        assert!(readiness(&view(false, vec![0], vec![]), BrokerId(0)).is_ok());
    }
}
