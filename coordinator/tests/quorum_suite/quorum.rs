//! Coordinators in one process over real gRPC on loopback, with real data directories.

#![allow(clippy::unwrap_used)] // test code panics on purpose

use crate::common::*;
use std::collections::HashMap;
use std::time::Duration;
use weir_proto::v1 as pb;

const WAIT: Duration = Duration::from_secs(20);

fn topic<'a>(d: &'a pb::DescribeClusterResponse, name: &str) -> Option<&'a pb::Topic> {
    d.topics.iter().find(|t| t.name == name)
}

/// A leader is elected; a CreateTopic sent to a follower is forwarded, visible on all three,
/// and reaches a watch stream as a full update followed by a delta.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_forwards_writes_that_every_coordinator_and_watcher_sees() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_cluster(3, dir.path(), |_| {}).await;
    let addrs: Vec<String> = cluster.iter().map(|h| h.local_addr().to_string()).collect();
    let leader = wait_for_leader(&cluster).await;
    let follower = &addrs[(leader + 1) % 3];
    let ready = wait_ready(follower).await;
    assert_eq!(ready.coordinators.len(), 3);
    assert!(ready.coordinators.iter().all(|c| c.voter));

    let epoch = register_broker(follower, 1).await;
    heartbeat_until_unfenced(follower, 1, epoch).await;

    let mut watch = control(follower)
        .await
        .watch(pb::WatchRequest { broker_id: 1 })
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert!(first.full, "the first update is full");
    assert_eq!(first.cluster_id, ready.cluster_id);
    // The follower may not have applied the unfencing yet: the stream is eventually consistent.
    assert!(first.brokers.iter().any(|b| b.id == 1));
    assert!(first.coordinator_leader.is_some_and(|l| l >= 1));

    let mut admin_client = admin(follower).await;
    let mut request = create_topic_request("orders", Some(3), None);
    request
        .configs
        .insert("retention.ms".into(), "60000".into());
    let created = admin_client
        .create_topic(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.error, None);
    let t = created
        .topic
        .expect("the created topic, read back from the follower");
    assert_eq!(t.partitions.len(), 3);
    assert!(
        t.partitions
            .iter()
            .all(|p| p.leader == Some(1) && p.replicas == [1])
    );

    for addr in &addrs {
        wait_for("the topic on every coordinator", WAIT, || async {
            let d = describe(addr).await?;
            let t = topic(&d, "orders")?;
            (t.partitions.len() == 3
                && t.configs.get("retention.ms").map(String::as_str) == Some("60000"))
            .then_some(())
        })
        .await;
    }

    let delta = tokio::time::timeout(WAIT, async {
        loop {
            let u = watch.message().await.unwrap().unwrap();
            if u.topics.iter().any(|t| t.name == "orders") {
                return u;
            }
        }
    })
    .await
    .expect("a delta naming the topic");
    assert!(!delta.full);
    assert!(delta.version > first.version);

    // Refusals come back as Kafka codes in the response, through the follower too.
    let again = admin_client
        .create_topic(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.error.map(|e| e.code), Some(36));
    let mut bad = create_topic_request("bad-config", Some(1), Some(1));
    bad.configs.insert("retention.ms".into(), "soon".into());
    let refused = admin_client.create_topic(bad).await.unwrap().into_inner();
    let e = refused.error.expect("INVALID_CONFIG");
    assert_eq!(e.code, 40);
    assert!(e.message.contains("retention.ms"), "{}", e.message);
    // Zero is a value, not "the default" (absent is): refused, as Kafka refuses it.
    for (partitions, rf, code) in [(Some(0), None, 37), (None, Some(0), 38)] {
        let zero = create_topic_request("zero", partitions, rf);
        let refused = admin_client.create_topic(zero).await.unwrap().into_inner();
        assert_eq!(
            refused.error.map(|e| e.code),
            Some(code),
            "{partitions:?} {rf:?}"
        );
    }
    let too_many = admin_client
        .create_topic(create_topic_request("rf3", Some(1), Some(3)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(too_many.error.map(|e| e.code), Some(38));
    let check = admin_client
        .create_topic(pb::CreateTopicRequest {
            validate_only: true,
            ..create_topic_request("dry", Some(2), Some(1))
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(check.error, None);
    assert!(topic(&describe(follower).await.unwrap(), "dry").is_none());

    let altered = admin_client
        .alter_configs(pb::AlterConfigsRequest {
            name: "orders".into(),
            set: [("segment.ms".to_string(), "1000".to_string())].into(),
            delete: vec!["retention.ms".into()],
            replace: false,
            validate_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(altered.error, None);
    assert_eq!(
        altered.configs,
        [("segment.ms".to_string(), "1000".to_string())].into()
    );
    let grown = admin_client
        .create_partitions(pb::CreatePartitionsRequest {
            name: "orders".into(),
            count: 5,
            assignment: Vec::new(),
            validate_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(grown.error, None);
    let deleted = admin_client
        .delete_topic(pb::DeleteTopicRequest {
            name: "orders".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.error, None);
    assert_eq!(deleted.topic_id, t.id);
    let removal = tokio::time::timeout(WAIT, async {
        loop {
            let u = watch.message().await.unwrap().unwrap();
            if u.removed_topics.contains(&t.id) {
                return u;
            }
        }
    })
    .await
    .expect("a delta removing the topic");
    assert!(!removal.full);

    for h in cluster {
        h.shutdown().await;
    }
}

/// A broker that stops heartbeating is fenced and its leaderships move to the other replica;
/// once it heartbeats again and is back in sync, preferred leader election gives its
/// leadership back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_broker_is_fenced_and_its_leadership_moves() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_cluster(1, dir.path(), |c| {
        c.broker_session_timeout = Duration::from_millis(1000);
        c.broker_heartbeat_interval = Duration::from_millis(200);
        c.leader_rebalance_interval = Duration::from_millis(300);
    })
    .await;
    let addr = cluster[0].local_addr().to_string();
    wait_ready(&addr).await;

    let epochs = HashMap::from([
        (1, register_broker(&addr, 1).await),
        (2, register_broker(&addr, 2).await),
    ]);
    let mut beats: HashMap<i32, _> = epochs
        .iter()
        .map(|(id, epoch)| (*id, spawn_heartbeats(addr.clone(), *id, *epoch)))
        .collect();
    wait_for("both brokers unfenced", WAIT, || async {
        let d = describe(&addr).await?;
        (d.brokers.len() == 2 && d.brokers.iter().all(|b| !b.fenced)).then_some(())
    })
    .await;

    let mut admin_client = admin(&addr).await;
    let created = admin_client
        .create_topic(create_topic_request("replicated", Some(2), Some(2)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.error, None);
    let p0 = created.topic.unwrap().partitions[0].clone();
    assert_eq!(p0.isr.len(), 2);
    let leader = p0.leader.expect("a leader");
    assert_eq!(leader, p0.replicas[0], "the preferred replica leads");
    let other = if leader == 1 { 2 } else { 1 };
    let leader_epoch = epochs[&leader];
    beats.remove(&leader).unwrap().abort();

    let moved = wait_for("the silent leader fenced and replaced", WAIT, || async {
        let d = describe(&addr).await?;
        let fenced = d.brokers.iter().find(|b| b.id == leader)?.fenced;
        let p = topic(&d, "replicated")?.partitions[0].clone();
        (fenced && p.leader == Some(other)).then_some(p)
    })
    .await;
    assert_eq!(moved.isr, vec![other]);
    assert!(moved.leader_epoch > p0.leader_epoch);

    // A heartbeat from an older incarnation is refused.
    let mut client = control(&addr).await;
    let stale = heartbeat(&mut client, leader, leader_epoch - 1)
        .await
        .unwrap();
    assert_eq!(stale.error.map(|e| e.code), Some(77));

    // The broker comes back, its partner puts it back in the ISR, and the preferred replica
    // leads again.
    beats.insert(leader, spawn_heartbeats(addr.clone(), leader, leader_epoch));
    wait_for("the broker unfenced again", WAIT, || async {
        let d = describe(&addr).await?;
        (!d.brokers.iter().find(|b| b.id == leader)?.fenced).then_some(())
    })
    .await;
    let d = describe(&addr).await.unwrap();
    let t = topic(&d, "replicated").unwrap();
    let p = &t.partitions[0];
    let other_epoch = epochs[&other];
    let altered = client
        .alter_partition(pb::AlterPartitionRequest {
            broker_id: other,
            broker_epoch: other_epoch,
            topic_id: t.id.clone(),
            partition: 0,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            new_isr: vec![other, leader],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(altered.error, None);
    wait_for("preferred leadership restored", WAIT, || async {
        let d = describe(&addr).await?;
        (topic(&d, "replicated")?.partitions[0].leader == Some(leader)).then_some(())
    })
    .await;

    // Producer ids come in disjoint blocks of 1000.
    let a = client
        .allocate_producer_ids(pb::AllocateProducerIdsRequest {
            broker_id: leader,
            broker_epoch: leader_epoch,
        })
        .await
        .unwrap()
        .into_inner();
    let b = client
        .allocate_producer_ids(pb::AllocateProducerIdsRequest {
            broker_id: leader,
            broker_epoch: leader_epoch,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((a.error, a.count), (None, 1000));
    assert_eq!(b.first, a.first + 1000);

    for (_, b) in beats {
        b.abort();
    }
    for h in cluster {
        h.shutdown().await;
    }
}

/// A coordinator started with `join` becomes a voter through AddCoordinator (sent to a
/// follower) and leaves through RemoveCoordinator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_is_added_and_removed_at_run_time() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_cluster(3, dir.path(), |_| {}).await;
    let leader = wait_for_leader(&cluster).await;
    let follower = cluster[(leader + 1) % 3].local_addr().to_string();
    wait_ready(&follower).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let new_addr = listener.local_addr().unwrap().to_string();
    let mut config = test_config(4, dir.path());
    config.join = true;
    let joining = weir_coordinator::start_with_listener(config, listener)
        .await
        .unwrap();

    let mut admin_client = admin(&follower).await;
    let added = admin_client
        .add_coordinator(pb::AddCoordinatorRequest {
            id: 4,
            addr: new_addr.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        added
            .coordinators
            .iter()
            .any(|c| c.id == 4 && c.voter && c.addr == new_addr),
        "{:?}",
        added.coordinators
    );
    let seen = wait_for(
        "the new voter to know the quorum and the state",
        WAIT,
        || async {
            let d = describe(&new_addr).await?;
            (d.coordinators.len() == 4
                && d.coordinators.iter().all(|c| c.voter)
                && !d.cluster_id.is_empty())
            .then_some(d)
        },
    )
    .await;
    assert!(seen.coordinator_leader.is_some_and(|l| l >= 1));

    let removed = admin(cluster[leader].local_addr())
        .await
        .remove_coordinator(pb::RemoveCoordinatorRequest { id: 4 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(removed.coordinators.len(), 3, "{:?}", removed.coordinators);
    wait_for("every member to drop coordinator 4", WAIT, || async {
        let d = describe(&follower).await?;
        (d.coordinators.len() == 3 && d.coordinators.iter().all(|c| c.id != 4)).then_some(())
    })
    .await;

    joining.shutdown().await;
    for h in cluster {
        h.shutdown().await;
    }
}
