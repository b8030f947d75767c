//! Replica moves for broker scale-down (drain) and scale-up (spread): pure functions from the
//! coordinators' view of a cluster to the reassignments to ask for.
//!
//! A scale-down never removes a broker that still holds a replica: the operator first moves
//! every replica off the brokers that go away (`plan_drain`), waits until the coordinators
//! report the moves complete (`drained`), and only then lowers the StatefulSet's replicas. A
//! reassignment adds the new replica, waits for it to join the ISR and only then drops the old
//! one, so no acknowledged record is ever on fewer replicas than before.

use crate::admin::ClusterView;
use std::collections::{BTreeMap, BTreeSet};
use weir_model::{BrokerId, PartitionId, TopicName};

/// A reassignment to ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Move {
    pub topic: TopicName,
    pub partition: PartitionId,
    pub replicas: Vec<BrokerId>,
}

/// Why a drain cannot go ahead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "topic {topic:?} has replication factor {replicas}, more than the {brokers} brokers that would remain"
    )]
    TooFewBrokers {
        topic: String,
        replicas: usize,
        brokers: usize,
    },
}

/// Replicas per broker over every partition (counting replicas being added).
fn load(view: &ClusterView, brokers: &BTreeSet<BrokerId>) -> BTreeMap<BrokerId, usize> {
    let mut load: BTreeMap<BrokerId, usize> = brokers.iter().map(|b| (*b, 0)).collect();
    for p in view.topics.values().flat_map(|t| &t.partitions) {
        for r in p.replicas.iter().chain(&p.adding) {
            if let Some(n) = load.get_mut(r) {
                *n += 1;
            }
        }
    }
    load
}

/// The least loaded broker of `candidates` not in `exclude` (ties go to the lowest id, so
/// plans are deterministic).
fn least_loaded(load: &BTreeMap<BrokerId, usize>, exclude: &[BrokerId]) -> Option<BrokerId> {
    load.iter()
        .filter(|(b, _)| !exclude.contains(b))
        .min_by_key(|(b, n)| (**n, **b))
        .map(|(b, _)| *b)
}

/// Moves that take every replica off `leaving`, onto the least loaded of `staying`. Partitions
/// already moving are left alone until their move completes (the next reconcile plans them).
pub fn plan_drain(
    view: &ClusterView,
    staying: &BTreeSet<BrokerId>,
    leaving: &BTreeSet<BrokerId>,
) -> Result<Vec<Move>, PlanError> {
    let mut load = load(view, staying);
    let mut moves = Vec::new();
    for topic in view.topics.values() {
        for p in &topic.partitions {
            if !p.replicas.iter().any(|r| leaving.contains(r)) {
                continue;
            }
            // A partition mid-move lists its old and new replicas together: wait for the move
            // rather than reading the union as its replication factor.
            if !p.adding.is_empty() || !p.removing.is_empty() {
                continue;
            }
            if p.replicas.len() > staying.len() {
                return Err(PlanError::TooFewBrokers {
                    topic: topic.name.to_string(),
                    replicas: p.replicas.len(),
                    brokers: staying.len(),
                });
            }
            let mut target = p.replicas.clone();
            for i in 0..target.len() {
                if !leaving.contains(&target[i]) {
                    continue;
                }
                // Not a broker the partition has, had, or was just given.
                let mut exclude = p.replicas.clone();
                exclude.extend(target.iter().copied());
                let Some(b) = least_loaded(&load, &exclude) else {
                    return Err(PlanError::TooFewBrokers {
                        topic: topic.name.to_string(),
                        replicas: p.replicas.len(),
                        brokers: staying.len(),
                    });
                };
                target[i] = b;
                if let Some(n) = load.get_mut(&b) {
                    *n += 1;
                }
            }
            moves.push(Move {
                topic: topic.name.clone(),
                partition: p.index,
                replicas: target,
            });
        }
    }
    Ok(moves)
}

/// Whether no partition has, or is getting, a replica on `leaving`, and nothing is moving.
pub fn drained(view: &ClusterView, leaving: &BTreeSet<BrokerId>) -> bool {
    view.topics.values().flat_map(|t| &t.partitions).all(|p| {
        p.adding.is_empty()
            && p.removing.is_empty()
            && !p.replicas.iter().any(|r| leaving.contains(r))
    })
}

/// Moves that even out replicas over `brokers` after a scale-up: replicas go from the most to
/// the least loaded broker until no two brokers differ by more than one, at most `moves_max`
/// at a time (each move copies a partition's whole log).
pub fn plan_spread(
    view: &ClusterView,
    brokers: &BTreeSet<BrokerId>,
    moves_max: usize,
) -> Vec<Move> {
    let mut load = load(view, brokers);
    let mut moves = Vec::new();
    let mut moved: BTreeSet<(TopicName, PartitionId)> = BTreeSet::new();
    while moves.len() < moves_max {
        let (Some((&hi, &hi_n)), Some((&lo, &lo_n))) = (
            load.iter().max_by_key(|(b, n)| (**n, -b.get())),
            load.iter().min_by_key(|(b, n)| (**n, **b)),
        ) else {
            break;
        };
        if hi_n <= lo_n + 1 {
            break;
        }
        // A partition on the busiest broker, not on the idlest, not moving, not yet planned.
        let candidate = view.topics.values().find_map(|t| {
            t.partitions
                .iter()
                .find(|p| {
                    p.replicas.contains(&hi)
                        && !p.replicas.contains(&lo)
                        && p.adding.is_empty()
                        && p.removing.is_empty()
                        && !moved.contains(&(t.name.clone(), p.index))
                })
                .map(|p| (t, p))
        });
        let Some((t, p)) = candidate else { break };
        let replicas = p
            .replicas
            .iter()
            .map(|r| if *r == hi { lo } else { *r })
            .collect();
        moved.insert((t.name.clone(), p.index));
        moves.push(Move {
            topic: t.name.clone(),
            partition: p.index,
            replicas,
        });
        if let Some(n) = load.get_mut(&hi) {
            *n -= 1;
        }
        if let Some(n) = load.get_mut(&lo) {
            *n += 1;
        }
    }
    moves
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::{PartitionView, TopicView};
    use weir_model::TopicId;

    fn view(parts: &[&[i32]]) -> ClusterView {
        let name = TopicName::new("t").unwrap();
        let topic = TopicView {
            name: name.clone(),
            id: TopicId([1; 16]),
            configs: BTreeMap::new(),
            partitions: parts
                .iter()
                .enumerate()
                .map(|(i, r)| PartitionView::new(PartitionId(i as i32), ids(r)))
                .collect(),
        };
        ClusterView {
            topics: [(name, topic)].into(),
            ..ClusterView::default()
        }
    }

    fn ids(v: &[i32]) -> Vec<BrokerId> {
        v.iter().map(|&b| BrokerId(b)).collect()
    }

    fn set(v: &[i32]) -> BTreeSet<BrokerId> {
        ids(v).into_iter().collect()
    }

    fn distinct(v: &[BrokerId]) -> BTreeSet<BrokerId> {
        v.iter().copied().collect()
    }

    fn partition(view: &mut ClusterView, index: usize) -> &mut PartitionView {
        let t = view.topics.values_mut().next().unwrap();
        &mut t.partitions[index]
    }

    /// Applies moves as if every reassignment had completed.
    fn apply(view: &mut ClusterView, moves: &[Move]) {
        for m in moves {
            let t = view.topics.get_mut(&m.topic).unwrap();
            let p = t
                .partitions
                .iter_mut()
                .find(|p| p.index == m.partition)
                .unwrap();
            p.replicas = m.replicas.clone();
            p.isr = m.replicas.clone();
        }
    }
    #[test]
    fn drain_moves_every_replica_off_the_leaving_brokers_without_duplicates() {
        let mut v = view(&[
            &[0, 1, 2],
            &[1, 2, 3],
            &[2, 3, 0],
            &[3, 0, 1],
            &[3],
            &[2, 3],
        ]);
        let moves = plan_drain(&v, &set(&[0, 1, 2]), &set(&[3])).unwrap();
        assert_eq!(moves.len(), 5, "{moves:?}");
        for m in &moves {
            assert!(!m.replicas.contains(&BrokerId(3)), "{m:?}");
            assert_eq!(distinct(&m.replicas).len(), m.replicas.len(), "{m:?}");
        }
        assert!(!drained(&v, &set(&[3])));
        apply(&mut v, &moves);
        assert!(drained(&v, &set(&[3])));
        assert!(
            plan_drain(&v, &set(&[0, 1, 2]), &set(&[3]))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn drain_of_two_brokers_from_one_partition_picks_two_different_brokers() {
        let v = view(&[&[3, 4, 0]]);
        let moves = plan_drain(&v, &set(&[0, 1, 2]), &set(&[3, 4])).unwrap();
        assert_eq!(moves.len(), 1);
        assert_eq!(distinct(&moves[0].replicas), set(&[0, 1, 2]), "{moves:?}");
    }

    #[test]
    fn drain_refuses_when_the_replication_factor_exceeds_the_remaining_brokers() {
        let v = view(&[&[0, 1, 2]]);
        let e = plan_drain(&v, &set(&[0, 1]), &set(&[2])).unwrap_err();
        assert!(e.to_string().contains("replication factor 3"), "{e}");
    }

    #[test]
    fn a_partition_mid_move_is_not_mistaken_for_a_larger_replication_factor() {
        // RF 3 moving from broker 3 to 2: replicas list the union while the move runs.
        let mut v = view(&[&[0, 1, 3, 2]]);
        partition(&mut v, 0).adding = ids(&[2]);
        partition(&mut v, 0).removing = ids(&[3]);
        assert_eq!(plan_drain(&v, &set(&[0, 1, 2]), &set(&[3])), Ok(Vec::new()));
    }

    #[test]
    fn drain_leaves_partitions_that_are_already_moving() {
        let mut v = view(&[&[0, 3]]);
        partition(&mut v, 0).adding = ids(&[1]);
        assert!(
            plan_drain(&v, &set(&[0, 1, 2]), &set(&[3]))
                .unwrap()
                .is_empty()
        );
        assert!(!drained(&v, &set(&[3])));
    }

    #[test]
    fn spread_evens_replicas_onto_a_new_broker() {
        let mut v = view(&[&[0, 1], &[1, 2], &[2, 0], &[0, 1], &[1, 2], &[2, 0]]);
        let brokers = set(&[0, 1, 2, 3]);
        let moves = plan_spread(&v, &brokers, 100);
        apply(&mut v, &moves);
        let l = load(&v, &brokers);
        let (min, max) = (l.values().min().unwrap(), l.values().max().unwrap());
        assert!(max - min <= 1, "{l:?}");
        assert_eq!(l[&BrokerId(3)], 3, "{l:?}");
        for (_, p) in v.partitions() {
            assert_eq!(distinct(&p.replicas).len(), 2);
        }
        assert!(plan_spread(&v, &brokers, 100).is_empty());
    }

    #[test]
    fn spread_respects_the_move_budget() {
        let v = view(&[&[0], &[0], &[0], &[0], &[0], &[0]]);
        assert_eq!(plan_spread(&v, &set(&[0, 1, 2]), 2).len(), 2);
    }
}
