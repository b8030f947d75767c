use super::*;

#[test]
fn init_cluster_sets_the_id_once() {
    let mut c = Cluster::default();
    let (_, changes) = c.ok(Command::InitCluster {
        cluster_id: "abc".into(),
    });
    assert!(changes.is_empty());
    assert_eq!((c.state.cluster_id.as_str(), c.state.version), ("abc", 1));
    // The same id again is a no-op; another id is refused.
    c.ok(Command::InitCluster {
        cluster_id: "abc".into(),
    });
    assert_eq!(c.state.version, 1);
    let e = c.err(Command::InitCluster {
        cluster_id: "xyz".into(),
    });
    assert_eq!(e, MetadataError::AlreadyInitialised);
    assert_eq!(e.kafka_code(), 104);
}

#[test]
fn registration_is_fenced_idempotent_per_incarnation_and_a_restart_fences_the_old_one() {
    let mut c = Cluster::with_brokers(3);
    let first = c.epoch(2);
    // The same incarnation again: same epoch, nothing changes.
    let version = c.state.version;
    assert_eq!(c.register(2, "first"), first);
    assert_eq!(c.state.version, version);
    assert!(!c.state.brokers[&b(2)].fenced);

    c.create("t", &[&[2, 1, 3]]);
    assert_eq!(c.shape("t", 0), (Some(2), vec![2, 1, 3], 0, 0));
    // A restart: new epoch (the log index), fenced, and out of leadership and the ISR.
    let second = c.register(2, "second");
    assert_eq!(second, BrokerEpoch(c.index as i64));
    assert!(c.state.brokers[&b(2)].fenced);
    assert_eq!(c.shape("t", 0), (Some(1), vec![1, 3], 1, 1));
    // The old incarnation's epoch is now stale.
    let e = c.err(Command::ControlledShutdown {
        id: b(2),
        epoch: first,
    });
    assert_eq!(e.kafka_code(), 77);
}

#[test]
fn a_registration_keeps_its_listeners_and_bad_ones_are_refused() {
    let mut c = Cluster::with_brokers(1);
    let e = |listener: &str, addr: &str| Endpoint {
        listener: listener.into(),
        addr: addr.into(),
    };
    let register = |endpoints: Vec<Endpoint>| Command::RegisterBroker {
        id: b(7),
        kafka_addr: "b7:9092".into(),
        internal_addr: "b7:9093".into(),
        rack: None,
        incarnation: "one".into(),
        directory_id: "dir-7".into(),
        endpoints,
    };
    let good = vec![e("PLAINTEXT", "b7:9092"), e("CLIENT", "kafka.example:9094")];
    c.ok(register(good.clone()));
    assert_eq!(c.state.brokers[&b(7)].endpoints, good);
    for (bad, says) in [
        (vec![e("A", "h:1"), e("A", "h:2")], "named twice"),
        (vec![e("", "h:1")], "listener name"),
        (vec![e("A", "")], "no address"),
        (
            (0..=weir_model::limits::LISTENERS_MAX)
                .map(|i| e(&format!("L{i}"), "h:1"))
                .collect(),
            "at most",
        ),
    ] {
        let refused = c.err(register(bad)).to_string();
        assert!(refused.contains(says), "{refused}");
    }
}

#[test]
fn create_topic_uses_live_replicas_and_refuses_bad_assignments() {
    let mut c = Cluster::with_brokers(3);
    c.fence(2);
    c.create("t", &[&[2, 1, 3], &[1, 2, 3]]);
    assert_eq!(c.shape("t", 0), (Some(1), vec![1, 3], 0, 0));
    assert_eq!(c.shape("t", 1), (Some(1), vec![1, 3], 0, 0));

    // No live replica: every replica is in the ISR and the partition starts offline.
    c.fence(1);
    c.fence(3);
    c.create("offline", &[&[1, 2]]);
    assert_eq!(c.shape("offline", 0), (None, vec![1, 2], 0, 0));
    c.unfence(2);
    assert_eq!(c.shape("offline", 0), (Some(2), vec![1, 2], 1, 1));

    let create = |name: &str, assignment: Vec<Vec<BrokerId>>| Command::CreateTopic {
        name: t(name),
        id: TopicId([99; 16]),
        assignment,
        configs: BTreeMap::new(),
    };
    assert!(matches!(
        c.err(create("t", vec![bs(&[1])])),
        MetadataError::TopicExists(_)
    ));
    c.create("a.b", &[&[1]]);
    assert!(matches!(
        c.err(create("a_b", vec![bs(&[1])])),
        MetadataError::TopicExists(_)
    ));
    for assignment in [
        vec![],
        vec![bs(&[1, 2]), bs(&[1])],
        vec![bs(&[])],
        vec![bs(&[1, 1])],
        vec![bs(&[1, 7])],
    ] {
        let e = c.err(create("new", assignment.clone()));
        assert!(
            matches!(e, MetadataError::InvalidReplicaAssignment(_)),
            "{assignment:?}: {e}"
        );
    }
}

#[test]
fn fencing_the_leader_elects_the_first_live_isr_member_in_replica_order() {
    let mut c = Cluster::with_brokers(4);
    c.create("t", &[&[1, 2, 3, 4]]);
    // 2 falls out of sync: it must not be elected although it comes first.
    c.alter_isr("t", 0, &[1, 3, 4]).expect("shrink");
    assert_eq!(c.shape("t", 0), (Some(1), vec![1, 3, 4], 0, 1));
    let (_, changes) = c.fence(1);
    assert_eq!(
        changes.brokers.iter().copied().collect::<Vec<_>>(),
        bs(&[1])
    );
    assert!(changes.topics.contains(&t("t")));
    assert_eq!(c.shape("t", 0), (Some(3), vec![3, 4], 1, 2));
    // A follower fenced: out of the ISR, the leader stays and its epoch does not move.
    c.fence(4);
    assert_eq!(c.shape("t", 0), (Some(3), vec![3], 1, 3));
}

#[test]
fn the_last_isr_member_stays_while_offline_and_leads_again_when_unfenced() {
    let mut c = Cluster::with_brokers(3);
    c.create("t", &[&[1, 2, 3]]);
    c.alter_isr("t", 0, &[1]).expect("shrink");
    c.fence(1);
    // Out-of-sync 2 and 3 are live but may not lead: offline, ISR kept as [1].
    assert_eq!(c.shape("t", 0), (None, vec![1], 1, 2));
    assert_eq!(c.state.offline_partitions(), vec![(t("t"), 0)]);
    c.unfence(1);
    assert_eq!(c.shape("t", 0), (Some(1), vec![1], 2, 3));
}

#[test]
fn the_last_isr_member_back_with_an_empty_disk_is_never_elected() {
    let mut c = Cluster::with_brokers(3);
    c.create("t", &[&[1, 2, 3]]);
    // 2 and 3 fall out of the ISR, then 1, the last member, dies.
    c.fence(2);
    c.fence(3);
    c.fence(1);
    assert_eq!(c.shape("t", 0).0, None);
    assert_eq!(c.p("t", 0).isr, bs(&[1]));
    // 1 comes back with another data directory: it holds nothing, so it leaves the ISR even
    // as its last member, and the partition stays offline whoever is live.
    c.register_in(1, "after-disk-loss", "dir-1-new");
    assert_eq!(c.p("t", 0).isr, Vec::<BrokerId>::new());
    assert_eq!(c.p("t", 0).emptied, bs(&[1]));
    c.unfence(1);
    c.register(2, "back");
    c.unfence(2);
    assert_eq!(c.p("t", 0).leader, None);
    assert!(c.state.check_invariants().is_ok());
    // Unclean election, once allowed, picks a replica that still has its log, not 1.
    c.ok(Command::AlterConfigs {
        name: t("t"),
        configs: [(
            "unclean.leader.election.enable".to_string(),
            "true".to_string(),
        )]
        .into(),
    });
    assert_eq!(c.shape("t", 0).0, Some(2));
    assert_eq!(c.p("t", 0).isr, bs(&[2]));
    // 1 rejoins the ISR once it has caught up, and is no longer marked empty.
    c.alter_isr("t", 0, &[2, 1]).expect("ISR expansion");
    assert_eq!(c.p("t", 0).emptied, Vec::<BrokerId>::new());
}

#[test]
fn a_lost_disk_restarts_the_leadership_of_partitions_it_stays_out_of_the_isr_of() {
    let mut c = Cluster::with_brokers(3);
    c.create("t", &[&[1, 2, 3]]);
    // 3 is already out of the ISR and marked; it loses its disk again: leader 1's memory of
    // its fetch position is stale all the same, so the leader epoch moves on.
    c.register_in(3, "new-disk", "dir-3-new");
    assert_eq!(c.shape("t", 0), (Some(1), vec![1, 2], 1, 1));
    c.register_in(3, "newer-disk", "dir-3-newer");
    assert_eq!(c.shape("t", 0), (Some(1), vec![1, 2], 2, 2));
    assert!(c.state.check_invariants().is_ok());
}

#[test]
fn a_restart_with_the_same_or_an_unknown_directory_is_not_a_lost_disk() {
    let mut c = Cluster::with_brokers(3);
    c.create("t", &[&[1, 2, 3]]);
    c.fence(2);
    c.fence(3);
    c.fence(1);
    // Same directory: 1 still holds every committed record and leads again.
    c.register_in(1, "again", "dir-1");
    c.unfence(1);
    assert_eq!(c.shape("t", 0).0, Some(1));
    // A broker that does not say (an older one) is taken at its word, as before.
    c.fence(1);
    c.register_in(1, "older", "");
    c.unfence(1);
    assert_eq!(c.shape("t", 0).0, Some(1));
    assert!(c.p("t", 0).emptied.is_empty());
}

#[test]
fn a_follower_back_with_an_empty_disk_leaves_the_isr_and_is_marked() {
    let mut c = Cluster::with_brokers(3);
    c.create("t", &[&[1, 2, 3]]);
    c.register_in(3, "new-disk", "dir-3-new");
    // Leader 1 stays, at a new epoch: it forgets where 3's old process had fetched to.
    assert_eq!(c.shape("t", 0), (Some(1), vec![1, 2], 1, 1));
    assert_eq!(c.p("t", 0).emptied, bs(&[3]));
    // Another lost disk, of the leader: 2 leads, 1 is marked too.
    c.register_in(1, "new-disk", "dir-1-new");
    assert_eq!(c.shape("t", 0).0, Some(2));
    assert_eq!(c.p("t", 0).isr, bs(&[2]));
    assert_eq!(c.p("t", 0).emptied, bs(&[3, 1]));
}

#[test]
fn unclean_election_picks_the_first_live_replica_alone_in_the_isr() {
    let mut c = Cluster::with_brokers(3);
    c.create_with("t", &[&[1, 2, 3]], unclean());
    c.alter_isr("t", 0, &[1]).expect("shrink");
    c.fence(1);
    assert_eq!(c.shape("t", 0), (Some(2), vec![2], 1, 2));
}

#[test]
fn enabling_unclean_election_brings_offline_partitions_back() {
    let mut c = Cluster::with_brokers(3);
    c.create("t", &[&[1, 2, 3]]);
    c.alter_isr("t", 0, &[1]).expect("shrink");
    c.fence(1);
    assert_eq!(c.p("t", 0).leader, None);
    c.ok(Command::AlterConfigs {
        name: t("t"),
        configs: unclean(),
    });
    assert_eq!(c.shape("t", 0), (Some(2), vec![2], 2, 3));
    assert!(c.state.topics[&t("t")].unclean_leader_election());
}

#[test]
fn stale_epochs_are_ignored_or_refused() {
    let mut c = Cluster::with_brokers(3);
    c.create("t", &[&[1, 2, 3]]);
    let old = c.epoch(1);
    c.register(1, "second");
    c.unfence(1);
    let version = c.state.version;
    // A lease expiry or an unfence for an older incarnation is not news.
    for command in [
        Command::FenceBroker {
            id: b(1),
            epoch: old,
        },
        Command::UnfenceBroker {
            id: b(1),
            epoch: old,
        },
    ] {
        let (reply, changes) = c.ok(command);
        assert_eq!((reply, changes), (Reply::Done, Changes::default()));
    }
    // Fencing twice: the second is a no-op.
    c.fence(2);
    let version_after_fence = c.state.version;
    assert!(version_after_fence > version);
    let epoch = c.epoch(2);
    c.ok(Command::FenceBroker { id: b(2), epoch });
    assert_eq!(c.state.version, version_after_fence);

    let e = c.err(Command::ControlledShutdown {
        id: b(1),
        epoch: old,
    });
    assert!(matches!(e, MetadataError::StaleBrokerEpoch { .. }));
    let e = c.err(Command::ControlledShutdown {
        id: b(9),
        epoch: old,
    });
    assert_eq!(e, MetadataError::UnknownBroker(b(9)));
    assert_eq!(e.kafka_code(), 102);
    assert_eq!(
        c.err(Command::FenceBroker {
            id: b(9),
            epoch: old
        }),
        MetadataError::UnknownBroker(b(9))
    );
}

#[test]
fn alter_partition_checks_in_order_topic_partition_broker_epochs_leader_isr() {
    let mut c = Cluster::with_brokers(3);
    let id = c.create("t", &[&[1, 2, 3]]);
    c.fence(1); // 2 leads at leader epoch 1, partition epoch 1
    c.fence(3); // partition epoch 2
    c.unfence(3);
    let (e2, e3) = (c.epoch(2), c.epoch(3));
    let alter = |broker: i32, broker_epoch, topic, partition, leader, version, isr: &[i32]| {
        Command::AlterPartition {
            broker: b(broker),
            broker_epoch,
            topic,
            partition,
            leader_epoch: LeaderEpoch(leader),
            partition_epoch: PartitionEpoch(version),
            new_isr: bs(isr),
        }
    };
    let (stale, other) = (BrokerEpoch(-1), TopicId([7; 16]));
    // Each step fixes the field the previous one failed on, so each must fail on the next.
    let steps = [
        (alter(9, stale, other, 5, 0, 0, &[2, 1]), 3),
        (alter(9, stale, id, 5, 0, 0, &[2, 1]), 3),
        (alter(9, stale, id, 0, 0, 0, &[2, 1]), 102),
        (alter(3, stale, id, 0, 0, 0, &[2, 1]), 77),
        (alter(3, e3, id, 0, 0, 0, &[2, 1]), 74),
        (alter(3, e3, id, 0, 1, 0, &[2, 1]), 6),
        (alter(2, e2, id, 0, 1, 0, &[2, 1]), 95),
        (alter(2, e2, id, 0, 1, 2, &[2, 1]), 107),
    ];
    for (command, code) in steps {
        let e = c.err(command);
        assert_eq!(e.kafka_code(), code, "{e}");
    }
    let e = c.err(alter(2, e2, id, 0, 1, 2, &[2, 1]));
    assert_eq!(e.to_string(), "invalid ISR: broker 1 is fenced");
    let good = alter(2, e2, id, 0, 1, 2, &[2, 3]);
    let (reply, _) = c.ok(good.clone());
    assert_eq!(reply, Reply::Partition(c.p("t", 0).clone()));
    assert_eq!(c.shape("t", 0), (Some(2), vec![2, 3], 1, 3));
    // The same set in another order is no change; the old partition epoch is now stale.
    let version = c.state.version;
    c.alter_isr("t", 0, &[3, 2]).expect("same ISR");
    assert_eq!(c.state.version, version);
    assert_eq!(c.err(good).kafka_code(), 95);
}

#[test]
fn alter_partition_refuses_isrs_that_break_the_rules() {
    let mut c = Cluster::with_brokers(4);
    c.create("t", &[&[1, 2, 3]]);
    for (isr, why) in [
        (&[][..], "the new ISR is empty"),
        (&[2, 3], "the new ISR leaves out the leader, broker 1"),
        (&[1, 1], "broker 1 is listed twice"),
        (&[1, 4], "broker 4 is not a replica of this partition"),
    ] {
        let e = c.alter_isr("t", 0, isr).expect_err("refused");
        assert_eq!(e, MetadataError::IneligibleReplica(why.to_string()));
    }
    c.shutdown(3);
    let e = c.alter_isr("t", 0, &[1, 3]).expect_err("refused");
    assert_eq!(e.to_string(), "invalid ISR: broker 3 is shutting down");
}

#[test]
fn reassignment_adds_catches_up_then_completes_moving_leadership() {
    let mut c = Cluster::with_brokers(5);
    c.create("t", &[&[1, 2, 3]]);
    c.ok(Command::Reassign {
        name: t("t"),
        partition: 0,
        target: bs(&[3, 4, 5]),
    });
    let p = c.p("t", 0).clone();
    assert_eq!(p.replicas, bs(&[3, 4, 5, 1, 2]));
    assert_eq!(
        p.reassignment.as_ref().map(|r| r.adding()),
        Some(bs(&[4, 5]))
    );
    assert_eq!(
        p.reassignment.as_ref().map(|r| r.removing()),
        Some(bs(&[1, 2]))
    );
    // The ISR follows the new replica order.
    assert_eq!(c.shape("t", 0), (Some(1), vec![3, 1, 2], 0, 1));
    assert_eq!(c.state.reassignments().len(), 1);
    // Asking again for the same target changes nothing.
    let version = c.state.version;
    c.ok(Command::Reassign {
        name: t("t"),
        partition: 0,
        target: bs(&[3, 4, 5]),
    });
    assert_eq!(c.state.version, version);

    // 4 catches up: not complete yet. The leader keeps the ISR in replica order.
    let (reply, _) = c.alter_isr("t", 0, &[1, 2, 3, 4]).expect("expand");
    assert!(matches!(reply, Reply::Partition(ref p) if p.reassignment.is_some()));
    assert_eq!(c.shape("t", 0), (Some(1), vec![3, 4, 1, 2], 0, 2));
    // 5 catches up: complete. 1 and 2 leave; 1 led, so 3 (first in target order) leads.
    let (reply, _) = c.alter_isr("t", 0, &[1, 2, 3, 4, 5]).expect("expand");
    let Reply::Partition(p) = reply else {
        panic!("{reply:?}")
    };
    assert_eq!((p.replicas, p.reassignment), (bs(&[3, 4, 5]), None));
    assert_eq!(c.shape("t", 0), (Some(3), vec![3, 4, 5], 1, 3));
    assert!(c.state.reassignments().is_empty());
}

#[test]
fn reassignment_completes_at_once_when_the_target_is_in_sync() {
    let mut c = Cluster::with_brokers(3);
    c.create("t", &[&[1, 2, 3]]);
    c.ok(Command::Reassign {
        name: t("t"),
        partition: 0,
        target: bs(&[2, 3]),
    });
    let p = c.p("t", 0);
    assert_eq!(
        (p.replicas.clone(), p.reassignment.clone()),
        (bs(&[2, 3]), None)
    );
    assert_eq!(c.shape("t", 0), (Some(2), vec![2, 3], 1, 1));
    // Reassigning to the current replicas is a no-op.
    let version = c.state.version;
    c.ok(Command::Reassign {
        name: t("t"),
        partition: 0,
        target: bs(&[2, 3]),
    });
    assert_eq!(c.state.version, version);
    for target in [bs(&[]), bs(&[2, 2]), bs(&[2, 8])] {
        let e = c.err(Command::Reassign {
            name: t("t"),
            partition: 0,
            target,
        });
        assert_eq!(e.kafka_code(), 39);
    }
    let e = c.err(Command::Reassign {
        name: t("t"),
        partition: 1,
        target: bs(&[1]),
    });
    assert_eq!(e.kafka_code(), 3);
}

#[test]
fn cancelling_a_reassignment_restores_the_original_replicas() {
    let mut c = Cluster::with_brokers(4);
    c.create("t", &[&[1, 2]]);
    let cancel = Command::CancelReassignment {
        name: t("t"),
        partition: 0,
    };
    assert_eq!(c.err(cancel.clone()).kafka_code(), 85);
    c.ok(Command::Reassign {
        name: t("t"),
        partition: 0,
        target: bs(&[3, 4]),
    });
    c.alter_isr("t", 0, &[1, 2, 3]).expect("3 catches up");
    c.ok(cancel.clone());
    let p = c.p("t", 0);
    assert_eq!(
        (p.replicas.clone(), p.reassignment.clone()),
        (bs(&[1, 2]), None)
    );
    // Replica 3 was removed: a new leader epoch fences its fetches still in flight.
    assert_eq!(c.shape("t", 0), (Some(1), vec![1, 2], 1, 3));

    // When only new replicas are in sync, cancelling would lose the data: refused.
    c.ok(Command::Reassign {
        name: t("t"),
        partition: 0,
        target: bs(&[3, 4]),
    });
    c.alter_isr("t", 0, &[1, 3]).expect("3 in, 2 out");
    c.fence(1);
    assert_eq!(c.shape("t", 0), (Some(3), vec![3], 2, 6));
    assert_eq!(c.err(cancel).kafka_code(), 39);
    // Reassigning back to the original replicas is the same as cancelling.
    assert_eq!(
        c.err(Command::Reassign {
            name: t("t"),
            partition: 0,
            target: bs(&[1, 2]),
        })
        .kafka_code(),
        39
    );
}

#[test]
fn changing_a_running_reassignment_keeps_its_original() {
    let mut c = Cluster::with_brokers(5);
    c.create("t", &[&[1, 2]]);
    c.ok(Command::Reassign {
        name: t("t"),
        partition: 0,
        target: bs(&[3]),
    });
    c.alter_isr("t", 0, &[1, 2]).expect("no change");
    c.ok(Command::Reassign {
        name: t("t"),
        partition: 0,
        target: bs(&[4, 5]),
    });
    let p = c.p("t", 0);
    assert_eq!(p.replicas, bs(&[4, 5, 1, 2]));
    assert_eq!(
        p.reassignment.as_ref().map(|r| r.original.clone()),
        Some(bs(&[1, 2]))
    );
}

#[test]
fn controlled_shutdown_moves_leadership_and_retries_the_rest() {
    let mut c = Cluster::with_brokers(3);
    c.create("t", &[&[1, 2, 3], &[1, 2, 3], &[2, 1, 3]]);
    c.alter_isr("t", 1, &[1]).expect("shrink");
    // Partition 0 moves to 2, partition 1 has no other ISR member so 1 keeps it, partition 2
    // loses 1 from its ISR.
    assert_eq!(c.shutdown(1), 1);
    assert_eq!(c.shape("t", 0), (Some(2), vec![2, 3], 1, 1));
    assert_eq!(c.shape("t", 1), (Some(1), vec![1], 0, 1));
    assert_eq!(c.shape("t", 2), (Some(2), vec![2, 3], 0, 1));
    assert!(!c.state.is_live(b(1)));
    assert_eq!(c.state.leaderships(b(1)), 1);
    // Repeating changes nothing...
    let version = c.state.version;
    assert_eq!(c.shutdown(1), 1);
    assert_eq!(c.state.version, version);
    // ... until the leader, though shutting down, lets 3 back into the ISR.
    c.alter_isr("t", 1, &[1, 3]).expect("expand");
    assert_eq!(c.shutdown(1), 0);
    assert_eq!(c.shape("t", 1), (Some(3), vec![3], 1, 3));
}

#[test]
fn preferred_election_moves_leadership_back_to_the_first_replica() {
    let mut c = Cluster::with_brokers(3);
    c.create("t", &[&[1, 2, 3], &[2, 3, 1]]);
    c.create("u", &[&[1, 2]]);
    c.fence(1);
    assert!(!c.state.needs_preferred_election());
    c.unfence(1);
    // 1 is live but out of sync: not yet.
    assert!(!c.state.needs_preferred_election());
    c.alter_isr("t", 0, &[2, 3, 1]).expect("expand");
    c.alter_isr("u", 0, &[2, 1]).expect("expand");
    assert!(c.state.needs_preferred_election());
    // Listed partitions only; unknown ones are skipped.
    let (reply, changes) = c.ok(Command::ElectPreferredLeaders {
        partitions: vec![(t("t"), 0), (t("t"), 7), (t("nope"), 0)],
    });
    assert_eq!(reply, Reply::Elected(1));
    assert_eq!(changes.topics.into_iter().collect::<Vec<_>>(), vec![t("t")]);
    assert_eq!(c.shape("t", 0), (Some(1), vec![1, 2, 3], 2, 3));
    // An empty list means every partition.
    let (reply, _) = c.ok(Command::ElectPreferredLeaders { partitions: vec![] });
    assert_eq!(reply, Reply::Elected(1));
    assert_eq!(c.p("u", 0).leader, Some(b(1)));
    assert!(!c.state.needs_preferred_election());
    let version = c.state.version;
    let (reply, _) = c.ok(Command::ElectPreferredLeaders { partitions: vec![] });
    assert_eq!((reply, c.state.version), (Reply::Elected(0), version));
}

#[test]
fn producer_ids_come_in_consecutive_blocks() {
    let mut c = Cluster::with_brokers(1);
    let allocate = |count| Command::AllocateProducerIds {
        broker: b(1),
        count,
    };
    let (reply, changes) = c.ok(allocate(1000));
    assert_eq!(
        reply,
        Reply::ProducerIds {
            first: 0,
            count: 1000
        }
    );
    assert!(changes.is_empty());
    assert_eq!(c.state.version, c.index);
    let (reply, _) = c.ok(allocate(PRODUCER_ID_BLOCK_MAX));
    assert_eq!(
        reply,
        Reply::ProducerIds {
            first: 1000,
            count: PRODUCER_ID_BLOCK_MAX
        }
    );
    for count in [0, -1, PRODUCER_ID_BLOCK_MAX + 1] {
        assert_eq!(c.err(allocate(count)).kafka_code(), 42);
    }
    assert_eq!(
        c.err(Command::AllocateProducerIds {
            broker: b(5),
            count: 1
        }),
        MetadataError::UnknownBroker(b(5))
    );
}

#[test]
fn topics_are_deleted_grown_and_reconfigured() {
    let mut c = Cluster::with_brokers(3);
    let id = c.create("t", &[&[1, 2], &[2, 3]]);
    assert_eq!(
        c.state.topic_by_id(id).map(|t| t.name.clone()),
        Some(t("t"))
    );

    let grow = |assignment: Vec<Vec<BrokerId>>| Command::CreatePartitions {
        name: t("t"),
        assignment,
    };
    assert_eq!(c.err(grow(vec![])).kafka_code(), 37);
    assert_eq!(c.err(grow(vec![bs(&[1])])).kafka_code(), 39);
    c.ok(grow(vec![bs(&[3, 1])]));
    assert_eq!(c.shape("t", 2), (Some(3), vec![3, 1], 0, 0));
    assert_eq!(c.state.assigned_to(b(3)).len(), 2);

    let configs = BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]);
    c.ok(Command::AlterConfigs {
        name: t("t"),
        configs: configs.clone(),
    });
    assert_eq!(c.state.topics[&t("t")].configs, configs);

    let (reply, changes) = c.ok(Command::DeleteTopic { name: t("t") });
    assert_eq!(reply, Reply::TopicDeleted { id });
    assert_eq!(changes.removed_topics, vec![id]);
    assert!(c.state.topic_by_id(id).is_none());
    assert_eq!(
        c.err(Command::DeleteTopic { name: t("t") }),
        MetadataError::UnknownTopic("t".to_string())
    );
}

#[test]
fn every_error_has_its_kafka_code() {
    let e = MetadataError::TopicExists(t("t"));
    let all = [
        (e, 36),
        (MetadataError::UnknownTopic(String::new()), 3),
        (
            MetadataError::UnknownPartition {
                topic: String::new(),
                partition: 0,
            },
            3,
        ),
        (MetadataError::UnknownBroker(b(1)), 102),
        (
            MetadataError::StaleBrokerEpoch {
                id: b(1),
                given: BrokerEpoch(1),
                current: BrokerEpoch(2),
            },
            77,
        ),
        (MetadataError::InvalidPartitions(String::new()), 37),
        (MetadataError::InvalidReplicationFactor(String::new()), 38),
        (MetadataError::InvalidReplicaAssignment(String::new()), 39),
        (
            MetadataError::FencedLeaderEpoch {
                given: LeaderEpoch(0),
                current: LeaderEpoch(1),
            },
            74,
        ),
        (
            MetadataError::InvalidUpdateVersion {
                given: PartitionEpoch(0),
                current: PartitionEpoch(1),
            },
            95,
        ),
        (MetadataError::NotLeader(b(1)), 6),
        (MetadataError::IneligibleReplica(String::new()), 107),
        (
            MetadataError::NoReassignmentInProgress {
                topic: String::new(),
                partition: 0,
            },
            85,
        ),
        (MetadataError::AlreadyInitialised, 104),
        (MetadataError::InvalidRequest(String::new()), 42),
        (MetadataError::ResourceNotFound(String::new()), 91),
        (MetadataError::DuplicateResource(String::new()), 92),
        (MetadataError::UnacceptableCredential(String::new()), 93),
        (MetadataError::PolicyViolation(String::new()), 44),
    ];
    for (e, code) in all {
        // An exhaustive match: a new variant fails to compile here until it is listed above.
        match e {
            MetadataError::TopicExists(_)
            | MetadataError::UnknownTopic(_)
            | MetadataError::UnknownPartition { .. }
            | MetadataError::UnknownBroker(_)
            | MetadataError::StaleBrokerEpoch { .. }
            | MetadataError::InvalidPartitions(_)
            | MetadataError::InvalidReplicationFactor(_)
            | MetadataError::InvalidReplicaAssignment(_)
            | MetadataError::FencedLeaderEpoch { .. }
            | MetadataError::InvalidUpdateVersion { .. }
            | MetadataError::NotLeader(_)
            | MetadataError::IneligibleReplica(_)
            | MetadataError::NoReassignmentInProgress { .. }
            | MetadataError::AlreadyInitialised
            | MetadataError::InvalidRequest(_)
            | MetadataError::ResourceNotFound(_)
            | MetadataError::DuplicateResource(_)
            | MetadataError::UnacceptableCredential(_)
            | MetadataError::PolicyViolation(_) => assert_eq!(e.kafka_code(), code, "{e:?}"),
        }
    }
}
