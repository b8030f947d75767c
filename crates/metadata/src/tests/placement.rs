use super::*;
use crate::placement::assign;
use std::collections::BTreeSet;

fn plain(ids: &[i32]) -> Vec<(BrokerId, Option<String>)> {
    ids.iter().map(|i| (b(*i), None)).collect()
}

fn racked(brokers: &[(i32, &str)]) -> Vec<(BrokerId, Option<String>)> {
    brokers
        .iter()
        .map(|(i, rack)| (b(*i), Some(rack.to_string())))
        .collect()
}

fn ids(assignment: &[Vec<BrokerId>]) -> Vec<Vec<i32>> {
    assignment
        .iter()
        .map(|r| r.iter().map(|b| b.0).collect())
        .collect()
}

#[test]
fn matches_kafkas_round_robin_without_racks() {
    // Kafka's AdminUtilsTest.testReplicaAssignment: brokers 0..4, 10 partitions, rf 3, start 0.
    let got = assign(&plain(&[4, 3, 2, 1, 0]), 10, 3, 0).expect("assign");
    let want = [
        [0, 1, 2],
        [1, 2, 3],
        [2, 3, 4],
        [3, 4, 0],
        [4, 0, 1],
        [0, 2, 3],
        [1, 3, 4],
        [2, 4, 0],
        [3, 0, 1],
        [4, 1, 2],
    ];
    assert_eq!(ids(&got), want.map(|r| r.to_vec()).to_vec());
}

#[test]
fn matches_kafkas_rack_alternated_assignment() {
    // Kafka's AdminRackAwareTest: the rack-alternated list is 0, 3, 1, 5, 4, 2.
    let brokers = racked(&[
        (0, "rack1"),
        (1, "rack3"),
        (2, "rack3"),
        (3, "rack2"),
        (4, "rack2"),
        (5, "rack1"),
    ]);
    let got = assign(&brokers, 7, 3, 0).expect("assign");
    let want = [
        [0, 3, 1],
        [3, 1, 5],
        [1, 5, 4],
        [5, 4, 2],
        [4, 2, 0],
        [2, 0, 3],
        [0, 4, 2],
    ];
    assert_eq!(ids(&got), want.map(|r| r.to_vec()).to_vec());
}

#[test]
fn leaders_are_balanced_and_replicas_distinct() {
    for start in 0..7 {
        let got = assign(&plain(&[1, 2, 3, 4]), 12, 3, start).expect("assign");
        let mut leaders = BTreeMap::new();
        for replicas in &got {
            assert_eq!(replicas.iter().collect::<BTreeSet<_>>().len(), 3);
            *leaders.entry(replicas[0]).or_insert(0) += 1;
        }
        assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![3; 4]);
        // Replicas as a whole are balanced too: 12 * 3 over 4 brokers.
        let mut load = BTreeMap::new();
        for b in got.iter().flatten() {
            *load.entry(*b).or_insert(0) += 1;
        }
        assert_eq!(load.values().copied().collect::<Vec<_>>(), vec![9; 4]);
    }
    // `start` moves the first leader.
    let got = assign(&plain(&[1, 2, 3]), 1, 1, 4).expect("assign");
    assert_eq!(ids(&got), vec![vec![2]]);
}

#[test]
fn replicas_spread_over_racks_as_far_as_racks_allow() {
    let three = racked(&[(1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "c"), (6, "c")]);
    let rack = |id: BrokerId| three[(id.0 - 1) as usize].1.clone();
    for start in 0..6 {
        let got = assign(&three, 12, 3, start).expect("assign");
        for replicas in &got {
            let racks: BTreeSet<_> = replicas.iter().map(|b| rack(*b)).collect();
            assert_eq!(racks.len(), 3, "{replicas:?}");
        }
        let leaders: BTreeSet<_> = got.iter().map(|r| r[0]).collect();
        assert_eq!(leaders.len(), 6);
    }
    // Two racks, three replicas: both racks are used.
    let two = racked(&[(1, "a"), (2, "a"), (3, "b"), (4, "b")]);
    for replicas in assign(&two, 8, 3, 1).expect("assign") {
        let racks: BTreeSet<_> = replicas
            .iter()
            .map(|b| if b.0 <= 2 { "a" } else { "b" })
            .collect();
        assert_eq!(racks.len(), 2, "{replicas:?}");
        assert_eq!(replicas.iter().collect::<BTreeSet<_>>().len(), 3);
    }
    // Brokers without a rack form one rack of their own.
    let mixed = vec![
        (b(1), Some("a".to_string())),
        (b(2), None),
        (b(3), Some("a".to_string())),
        (b(4), None),
    ];
    for replicas in assign(&mixed, 4, 2, 0).expect("assign") {
        let without_rack = replicas.iter().filter(|b| b.0 % 2 == 0).count();
        assert_eq!(without_rack, 1, "{replicas:?}");
    }
}

#[test]
fn refuses_impossible_requests() {
    let brokers = plain(&[1, 2, 3]);
    let e = assign(&brokers, 3, 4, 0).expect_err("too many replicas");
    assert_eq!(e.kafka_code(), 38);
    assert!(e.to_string().contains("3 available brokers"), "{e}");
    assert_eq!(
        assign(&brokers, 3, 0, 0).expect_err("rf 0").kafka_code(),
        38
    );
    assert_eq!(
        assign(&[], 1, 1, 0).expect_err("no brokers").kafka_code(),
        38
    );
    assert_eq!(
        assign(&brokers, 0, 1, 0).expect_err("none").kafka_code(),
        37
    );
    // Duplicate ids count once.
    let twice = plain(&[1, 1, 2]);
    assert_eq!(
        assign(&twice, 1, 3, 0).expect_err("2 brokers").kafka_code(),
        38
    );
}
