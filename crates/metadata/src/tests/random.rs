//! Random command sequences over a few brokers keep every invariant, move epochs only forward
//! (by exactly one per change), report exactly what changed, leave the state alone when
//! refused, and survive a JSON round trip.

use super::*;
use proptest::prelude::*;
use std::collections::BTreeSet;

/// A command with its epochs and ISRs still to be resolved against the state, so that many
/// are valid (current epochs, the real leader) and many are not.
#[derive(Clone, Debug)]
enum Op {
    Register {
        broker: u8,
        incarnation: u8,
    },
    Fence {
        broker: u8,
        epoch: Epoch,
    },
    Unfence {
        broker: u8,
        epoch: Epoch,
    },
    Shutdown {
        broker: u8,
        epoch: Epoch,
    },
    CreateTopic {
        topic: u8,
        assignment: Lists,
        unclean: bool,
    },
    DeleteTopic {
        topic: u8,
    },
    CreatePartitions {
        topic: u8,
        assignment: Lists,
    },
    AlterConfigs {
        topic: u8,
        unclean: bool,
    },
    AlterPartition {
        topic: u8,
        partition: u8,
        /// `None`: the current leader.
        broker: Option<u8>,
        epoch: Epoch,
        leader_epoch_off: i32,
        partition_epoch_off: i32,
        /// Bit `i` keeps `replicas[i]`; `None`: every live replica.
        isr_mask: Option<u8>,
        with_leader: bool,
    },
    Reassign {
        topic: u8,
        partition: u8,
        target: Lists,
    },
    Cancel {
        topic: u8,
        partition: u8,
    },
    Elect {
        only: Option<(u8, u8)>,
    },
    Allocate {
        broker: u8,
        count: i32,
    },
}

/// Replica lists: mostly valid (`Valid`: each seed picks `len` distinct registered brokers),
/// sometimes raw picks that may repeat a broker, name an unregistered one or be empty.
#[derive(Clone, Debug)]
enum Lists {
    Valid { len: u8, seeds: Vec<u64> },
    Raw(Vec<Vec<u8>>),
}

#[derive(Clone, Copy, Debug)]
enum Epoch {
    Current,
    Other(i64),
}

/// "c.d" and "c_d" collide.
const TOPICS: [&str; 4] = ["a", "b", "c.d", "c_d"];

fn epoch() -> impl Strategy<Value = Epoch> {
    prop_oneof![3 => Just(Epoch::Current), 1 => (0i64..40).prop_map(Epoch::Other)]
}

fn lists(count: std::ops::Range<usize>) -> impl Strategy<Value = Lists> {
    prop_oneof![
        6 => (1u8..=3, prop::collection::vec(any::<u64>(), count.clone()))
            .prop_map(|(len, seeds)| Lists::Valid { len, seeds }),
        1 => prop::collection::vec(prop::collection::vec(0u8..6, 0..4), count).prop_map(Lists::Raw),
    ]
}

/// `len` distinct brokers of `1..=brokers`, in an order drawn from `seed`.
fn pick(seed: u64, len: u8, brokers: u8) -> Vec<BrokerId> {
    let mut ids: Vec<u8> = (0..brokers).collect();
    ids.sort_by_key(|i| (seed ^ u64::from(*i)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40);
    ids.truncate(usize::from(len));
    ids.into_iter().map(|i| b(i32::from(i) + 1)).collect()
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0u8..8, 0u8..3).prop_map(|(broker, incarnation)| Op::Register { broker, incarnation }),
        3 => (0u8..8, epoch()).prop_map(|(broker, epoch)| Op::Fence { broker, epoch }),
        3 => (0u8..8, epoch()).prop_map(|(broker, epoch)| Op::Unfence { broker, epoch }),
        1 => (0u8..8, epoch()).prop_map(|(broker, epoch)| Op::Shutdown { broker, epoch }),
        2 => (0u8..4, lists(0..4), prop::bool::weighted(0.3))
            .prop_map(|(topic, assignment, unclean)| Op::CreateTopic { topic, assignment, unclean }),
        1 => (0u8..4).prop_map(|topic| Op::DeleteTopic { topic }),
        1 => (0u8..4, lists(0..3))
            .prop_map(|(topic, assignment)| Op::CreatePartitions { topic, assignment }),
        1 => (0u8..4, any::<bool>()).prop_map(|(topic, unclean)| Op::AlterConfigs { topic, unclean }),
        6 => (
            (0u8..4, 0u8..10, prop::option::weighted(0.2, 0u8..6), epoch()),
            (prop_oneof![4 => Just(0), 1 => -1i32..2], prop_oneof![4 => Just(0), 1 => -1i32..2]),
            (prop::option::weighted(0.6, any::<u8>()), prop::bool::weighted(0.9)),
        )
            .prop_map(|((topic, partition, broker, epoch), (le, pe), (isr_mask, with_leader))| {
                Op::AlterPartition {
                    topic,
                    partition,
                    broker,
                    epoch,
                    leader_epoch_off: le,
                    partition_epoch_off: pe,
                    isr_mask,
                    with_leader,
                }
            }),
        3 => (0u8..4, 0u8..10, lists(1..2))
            .prop_map(|(topic, partition, target)| Op::Reassign { topic, partition, target }),
        1 => (0u8..4, 0u8..10).prop_map(|(topic, partition)| Op::Cancel { topic, partition }),
        2 => prop::option::of((0u8..4, 0u8..3)).prop_map(|only| Op::Elect { only }),
        1 => (0u8..8, -2i32..200_000).prop_map(|(broker, count)| Op::Allocate { broker, count }),
    ]
}

/// Turns an op into a command against the current state; brokers are `1..=brokers` (an op's
/// broker number beyond that names an unregistered broker for assignments).
fn resolve(state: &MetadataState, brokers: u8, op: &Op) -> Command {
    let broker = |n: u8| b(i32::from(n % brokers) + 1);
    let any_broker = |n: u8| b(i32::from(n % (brokers + 1)) + 1);
    let epoch_of = |id: BrokerId, e: Epoch| match (e, state.brokers.get(&id)) {
        (Epoch::Current, Some(r)) => r.epoch,
        (Epoch::Current, None) => BrokerEpoch(0),
        (Epoch::Other(e), _) => BrokerEpoch(e),
    };
    let topic = |n: u8| t(TOPICS[usize::from(n) % TOPICS.len()]);
    let lists = |l: &Lists| match l {
        Lists::Valid { len, seeds } => seeds
            .iter()
            .map(|seed| pick(*seed, *len, brokers))
            .collect::<Vec<_>>(),
        Lists::Raw(raw) => raw
            .iter()
            .map(|l| l.iter().map(|n| any_broker(*n)).collect())
            .collect(),
    };
    let configs = |unclean_on: bool| {
        if unclean_on {
            unclean()
        } else {
            BTreeMap::new()
        }
    };
    match op {
        Op::Register {
            broker: n,
            incarnation,
        } => Command::RegisterBroker {
            id: broker(*n),
            kafka_addr: "k".into(),
            internal_addr: "i".into(),
            rack: None,
            incarnation: incarnation.to_string(),
            // Incarnation 2 comes back with another data directory (a lost disk), and 0 does
            // not say which it has.
            directory_id: match incarnation {
                0 => String::new(),
                2 => format!("dir-{n}-new"),
                _ => format!("dir-{n}"),
            },
            endpoints: Vec::new(),
        },
        Op::Fence { broker: n, epoch } => Command::FenceBroker {
            id: broker(*n),
            epoch: epoch_of(broker(*n), *epoch),
        },
        Op::Unfence { broker: n, epoch } => Command::UnfenceBroker {
            id: broker(*n),
            epoch: epoch_of(broker(*n), *epoch),
        },
        Op::Shutdown { broker: n, epoch } => Command::ControlledShutdown {
            id: broker(*n),
            epoch: epoch_of(broker(*n), *epoch),
        },
        Op::CreateTopic {
            topic: n,
            assignment,
            unclean,
        } => Command::CreateTopic {
            name: topic(*n),
            id: TopicId([n + 1; 16]),
            assignment: lists(assignment),
            configs: configs(*unclean),
        },
        Op::DeleteTopic { topic: n } => Command::DeleteTopic { name: topic(*n) },
        Op::CreatePartitions {
            topic: n,
            assignment,
        } => Command::CreatePartitions {
            name: topic(*n),
            assignment: lists(assignment),
        },
        Op::AlterConfigs { topic: n, unclean } => Command::AlterConfigs {
            name: topic(*n),
            configs: configs(*unclean),
        },
        Op::AlterPartition {
            topic: n,
            partition,
            broker: by,
            epoch,
            leader_epoch_off,
            partition_epoch_off,
            isr_mask,
            with_leader,
        } => {
            let name = topic(*n);
            let partition = in_range(state, &name, *partition);
            let p = state.partition(&name, partition);
            let leader = p.and_then(|p| p.leader).unwrap_or(b(1));
            let proposer = by.map(any_broker).unwrap_or(leader);
            let mut new_isr: Vec<BrokerId> = p
                .map(|p| {
                    p.replicas
                        .iter()
                        .enumerate()
                        .filter(|(i, r)| {
                            let keep = match isr_mask {
                                Some(mask) => mask & (1 << i) != 0,
                                None => state.is_live(**r),
                            };
                            keep && **r != leader
                        })
                        .map(|(_, r)| *r)
                        .collect()
                })
                .unwrap_or_default();
            if *with_leader {
                new_isr.push(leader);
            }
            Command::AlterPartition {
                broker: proposer,
                broker_epoch: epoch_of(proposer, *epoch),
                topic: state.topics.get(&name).map_or(TopicId([9; 16]), |t| t.id),
                partition,
                leader_epoch: LeaderEpoch(p.map_or(0, |p| p.leader_epoch.0) + leader_epoch_off),
                partition_epoch: PartitionEpoch(
                    p.map_or(0, |p| p.partition_epoch.0) + partition_epoch_off,
                ),
                new_isr,
            }
        }
        Op::Reassign {
            topic: n,
            partition,
            target,
        } => Command::Reassign {
            name: topic(*n),
            partition: in_range(state, &topic(*n), *partition),
            target: lists(target).into_iter().next().unwrap_or_default(),
        },
        Op::Cancel {
            topic: n,
            partition,
        } => Command::CancelReassignment {
            name: topic(*n),
            partition: in_range(state, &topic(*n), *partition),
        },
        Op::Elect { only } => Command::ElectPreferredLeaders {
            partitions: only
                .iter()
                .map(|(n, p)| (topic(*n), i32::from(*p)))
                .collect(),
        },
        Op::Allocate { broker: n, count } => Command::AllocateProducerIds {
            broker: broker(*n),
            count: *count,
        },
    }
}

/// Mostly an existing partition of the topic; `n >= 8` keeps `n - 8`, which may not exist.
fn in_range(state: &MetadataState, name: &TopicName, n: u8) -> i32 {
    match state.topic(name) {
        Some(t) if n < 8 => i32::from(n) % t.partitions.len().max(1) as i32,
        _ => i32::from(n % 8),
    }
}

/// Checks one step from `before` to `after` (the command was applied at `index`).
fn check_step(
    before: &MetadataState,
    after: &MetadataState,
    command: &Command,
    index: u64,
    result: &ApplyResult,
) -> Result<(), TestCaseError> {
    if let Err(broken) = after.check_invariants() {
        return Err(TestCaseError::fail(broken));
    }
    // No partition stays offline that could lead: without unclean election while an ISR
    // member is live, with it while any replica is.
    for (topic, i, p) in after.partitions() {
        // A replica back with an empty disk is never a candidate while it is marked.
        let candidates: Vec<BrokerId> = if topic.unclean_leader_election() {
            p.replicas
                .iter()
                .filter(|b| !p.emptied.contains(b))
                .copied()
                .collect()
        } else {
            p.isr.clone()
        };
        prop_assert!(
            p.leader.is_some() || !candidates.iter().any(|b| after.is_live(*b)),
            "{}-{} is offline with a live candidate: {:?}",
            topic.name,
            i,
            p
        );
    }
    let (_, changes) = match result {
        Err(_) => {
            prop_assert_eq!(before, after, "a refused command changed the state");
            return Ok(());
        }
        Ok(ok) => ok,
    };
    if before == after {
        prop_assert!(changes.is_empty());
    } else {
        prop_assert_eq!(after.version, index);
    }
    // Changes name exactly the records that differ.
    let brokers: BTreeSet<BrokerId> = before
        .brokers
        .keys()
        .chain(after.brokers.keys())
        .filter(|id| before.brokers.get(id) != after.brokers.get(id))
        .copied()
        .collect();
    prop_assert_eq!(&brokers, &changes.brokers);
    let topics: BTreeSet<TopicName> = before
        .topics
        .keys()
        .chain(after.topics.keys())
        .filter(|name| before.topics.get(name) != after.topics.get(name))
        .cloned()
        .collect();
    prop_assert_eq!(&topics, &changes.topics);
    let removed: Vec<TopicId> = before
        .topics
        .iter()
        .filter(|(name, _)| !after.topics.contains_key(name))
        .map(|(_, t)| t.id)
        .collect();
    prop_assert_eq!(&removed, &changes.removed_topics);
    // A broker back with another data directory: the leaders of its partitions start over.
    let lost_disk = match command {
        Command::RegisterBroker {
            id,
            incarnation,
            directory_id,
            ..
        } => before
            .brokers
            .get(id)
            .is_some_and(|b| {
                b.incarnation != *incarnation
                    && !b.directory_id.is_empty()
                    && !directory_id.is_empty()
                    && b.directory_id != *directory_id
            })
            .then_some(*id),
        _ => None,
    };
    // Epochs: +1 for each change, the leader epoch only when the leader changed or a replica
    // lost its disk under the same leader.
    for (name, old) in &before.topics {
        let Some(new) = after.topics.get(name) else {
            continue;
        };
        for (p, q) in old.partitions.iter().zip(&new.partitions) {
            // Only a leader's AlterPartition grows an ISR, and a new leader comes from the old
            // ISR; unclean election is the exception to both.
            let unclean_election =
                new.unclean_leader_election() && q.isr == q.leader.into_iter().collect::<Vec<_>>();
            let grown = q.isr.iter().any(|b| !p.isr.contains(b));
            prop_assert!(
                !grown || unclean_election || matches!(command, Command::AlterPartition { .. }),
                "the ISR grew from {:?} to {:?}",
                p.isr,
                q.isr
            );
            if let Some(leader) = q.leader
                && q.leader != p.leader
            {
                // An AlterPartition that completes a reassignment may elect a member it added.
                let proposed = match command {
                    Command::AlterPartition { new_isr, .. } => new_isr.contains(&leader),
                    _ => false,
                };
                prop_assert!(
                    p.isr.contains(&leader) || proposed || unclean_election,
                    "{leader} led out of the ISR {:?}",
                    p.isr
                );
            }
            let restarted = q.leader.is_some()
                && q.leader == p.leader
                && lost_disk.is_some_and(|id| p.replicas.contains(&id));
            let changed = restarted
                || (&p.replicas, p.leader, &p.isr, &p.reassignment, &p.emptied)
                    != (&q.replicas, q.leader, &q.isr, &q.reassignment, &q.emptied);
            // A marked replica is never elected while it is marked, and only a lost disk marks.
            if let Some(leader) = q.leader {
                prop_assert!(
                    !q.emptied.contains(&leader),
                    "{leader} leads with an empty log"
                );
            }
            let marked = q.emptied.iter().any(|b| !p.emptied.contains(b));
            prop_assert!(
                !marked || matches!(command, Command::RegisterBroker { .. }),
                "marked {:?} -> {:?}",
                p.emptied,
                q.emptied
            );
            prop_assert_eq!(
                q.partition_epoch.0,
                p.partition_epoch.0 + i32::from(changed)
            );
            // A removed replica's fetches in flight must be fenced: removing one bumps too.
            let removed = p.replicas.iter().any(|b| !q.replicas.contains(b));
            prop_assert_eq!(
                q.leader_epoch.0,
                p.leader_epoch.0 + i32::from(p.leader != q.leader || restarted || removed)
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_commands_keep_the_invariants(
        brokers in 3u8..=5,
        ops in prop::collection::vec(op(), 1..60),
    ) {
        let mut c = Cluster::with_brokers(i32::from(brokers));
        let live = c.state.live_brokers();
        for (n, name) in TOPICS[..2].iter().enumerate() {
            let assignment = crate::placement::assign(&live, 3, 3, n).expect("placement");
            c.ok(Command::CreateTopic {
                name: t(name),
                id: TopicId([n as u8 + 1; 16]),
                assignment,
                configs: BTreeMap::new(),
            });
        }
        for op in &ops {
            let command = resolve(&c.state, brokers, op);
            c.index += 1;
            let before = c.state.clone();
            let result = c.state.apply(c.index, &command);
            check_step(&before, &c.state, &command, c.index, &result)
                .map_err(|e| TestCaseError::fail(format!("{command:?} -> {result:?}: {e}")))?;
            let json = serde_json::to_string(&c.state).expect("serialize");
            let back: MetadataState = serde_json::from_str(&json).expect("deserialize");
            prop_assert_eq!(&back, &c.state);
        }
    }
}
