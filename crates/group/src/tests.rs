//! The classic protocol's rules, one scenario per test, and a property test over random
//! sequences of requests and clock ticks.

use super::*;
use bytes::Bytes;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

fn config(delay: i32) -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay_ms: delay,
        ..GroupConfig::default()
    }
}

fn req(member_id: &str, instance: Option<&str>) -> JoinRequest {
    JoinRequest {
        member_id: member_id.into(),
        instance_id: instance.map(str::to_string),
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(b"meta"))],
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 30_000,
        require_known_member_id: true,
    }
}

fn join_reply(effects: &Effects, w: u64) -> Option<&JoinResponse> {
    effects.replies.iter().find_map(|r| match r {
        Reply::Join(Waiter(x), resp) if *x == w => Some(resp),
        _ => None,
    })
}

/// Joins a new dynamic member through the MEMBER_ID_REQUIRED round trip; returns its id and
/// the effects of the second JoinGroup.
fn join_new(g: &mut Group, c: &GroupConfig, name: &str, w: u64, now: u64) -> (String, Effects) {
    let (out, _) = g.join(c, req("", None), name.into(), Waiter(w), now, 0);
    let JoinOutcome::Reply(r) = out else {
        panic!("first join must answer MEMBER_ID_REQUIRED")
    };
    assert_eq!(r.error, Some(GroupError::MemberIdRequired));
    assert_eq!(r.member_id, name);
    let (out, effects) = g.join(c, req(name, None), String::new(), Waiter(w), now, 0);
    assert!(matches!(out, JoinOutcome::Wait));
    (name.to_string(), effects)
}

fn sync_leader(g: &mut Group, c: &GroupConfig, leader: &str, generation: i32, w: u64) -> Effects {
    let members: Vec<String> = g.members().map(|m| m.id.clone()).collect();
    let assignments: BTreeMap<String, Bytes> = members
        .iter()
        .map(|m| (m.clone(), Bytes::from(format!("assignment-of-{m}"))))
        .collect();
    let (out, _) = g.sync(
        leader,
        None,
        generation,
        None,
        None,
        assignments,
        Waiter(w),
        0,
    );
    let SyncOutcome::Persist {
        generation,
        assignments,
    } = out
    else {
        panic!("the leader's sync must ask to persist, got {out:?}")
    };
    g.sync_persisted(c, generation, assignments, Ok(()), 0, 0)
}

/// Proves: one member joins, syncs and is Stable; a second member's join moves the group to
/// PreparingRebalance, the first learns it from its heartbeat, rejoins, and both get
/// generation 2 with the leader alone receiving the member list.
#[test]
fn second_member_triggers_a_rebalance_both_rejoin_into_the_next_generation() {
    let c = config(0);
    let mut g = Group::new(GroupId("g".into()), 0);
    let (a, effects) = join_new(&mut g, &c, "a", 1, 0);
    let r = join_reply(&effects, 1).expect("a alone completes the join at once");
    assert_eq!(
        (r.generation, r.leader.as_str(), r.members.len()),
        (Some(1), "a", 1)
    );
    let effects = sync_leader(&mut g, &c, &a, 1, 2);
    assert_eq!(effects.replies.len(), 1);
    assert_eq!(g.state(), GroupState::Stable);
    assert_eq!(g.heartbeat(&a, None, 1, 100), Ok(()));

    let (b, effects) = join_new(&mut g, &c, "b", 3, 200);
    assert!(effects.replies.is_empty(), "b waits for a to rejoin");
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(
        g.heartbeat(&a, None, 1, 300),
        Err(GroupError::RebalanceInProgress)
    );
    let (out, effects) = g.join(&c, req(&a, None), String::new(), Waiter(4), 400, 0);
    assert!(matches!(out, JoinOutcome::Wait));
    let ra = join_reply(&effects, 4).expect("a answered");
    let rb = join_reply(&effects, 3).expect("b answered");
    assert_eq!((ra.generation, rb.generation), (Some(2), Some(2)));
    assert_eq!(ra.leader, a);
    assert_eq!(ra.members.len(), 2);
    assert!(
        rb.members.is_empty(),
        "only the leader gets the member list"
    );

    // b syncs first and waits; the leader's sync completes both.
    assert!(matches!(
        g.sync(&b, None, 2, None, None, BTreeMap::new(), Waiter(5), 500)
            .0,
        SyncOutcome::Wait
    ));
    let effects = sync_leader(&mut g, &c, &a, 2, 6);
    let got: BTreeSet<u64> = effects
        .replies
        .iter()
        .map(|r| match r {
            Reply::Sync(Waiter(w), s) => {
                assert_eq!(s.error, None);
                *w
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(got, BTreeSet::from([5, 6]));
    // A member of an older generation is fenced.
    assert_eq!(
        g.heartbeat(&b, None, 1, 600),
        Err(GroupError::IllegalGeneration)
    );
    assert_eq!(
        g.validate_commit(&b, None, 1, 600),
        Err(GroupError::IllegalGeneration)
    );
    assert_eq!(g.validate_commit(&b, None, 2, 600), Ok(()));
}

/// Proves: a member that stops heartbeating is removed after its session timeout and the
/// others are asked to rejoin; a member that leaves is removed at once.
#[test]
fn expired_and_leaving_members_are_removed() {
    let c = config(0);
    let mut g = Group::new(GroupId("g".into()), 0);
    let (a, e) = join_new(&mut g, &c, "a", 1, 0);
    assert!(join_reply(&e, 1).is_some());
    let _ = sync_leader(&mut g, &c, &a, 1, 2);
    let (b, _) = join_new(&mut g, &c, "b", 3, 0);
    let (_, e) = g.join(&c, req(&a, None), String::new(), Waiter(4), 0, 0);
    assert_eq!(e.replies.len(), 2);
    let _ = sync_leader(&mut g, &c, &a, 2, 5);
    assert_eq!(g.state(), GroupState::Stable);

    // Only a heartbeats; b's session (10 s) runs out.
    assert_eq!(g.heartbeat(&a, None, 2, 9_000), Ok(()));
    let e = g.tick(&c, 10_001, 0);
    assert!(e.replies.is_empty());
    assert_eq!(g.member_count(), 1);
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    let (_, e) = g.join(&c, req(&a, None), String::new(), Waiter(6), 10_002, 0);
    assert_eq!(join_reply(&e, 6).and_then(|r| r.generation), Some(3));
    assert!(g.members().all(|m| m.id != b));

    // a leaves: the group is empty after the next generation.
    let (r, e) = g.leave(&c, &a, None, 10_003, 0);
    assert_eq!(r, Ok(()));
    assert!(e.store_group, "an emptied group is stored");
    assert_eq!(g.state(), GroupState::Empty);
    assert_eq!(
        g.leave(&c, &a, None, 10_004, 0).0,
        Err(GroupError::UnknownMemberId)
    );
}

/// Proves: the initial rebalance of an empty group waits for the delay and takes in members
/// arriving meanwhile, so they get one generation instead of one each.
#[test]
fn initial_delay_gathers_members_into_one_generation() {
    let c = config(3_000);
    let mut g = Group::new(GroupId("g".into()), 0);
    let (_, e) = join_new(&mut g, &c, "a", 1, 0);
    assert!(e.replies.is_empty());
    let (_, e) = join_new(&mut g, &c, "b", 2, 1_000);
    assert!(e.replies.is_empty());
    // The first delay ends with a new member added: it is extended once more.
    assert!(g.tick(&c, 3_000, 0).replies.is_empty());
    let e = g.tick(&c, 6_000, 0);
    let (ra, rb) = (join_reply(&e, 1), join_reply(&e, 2));
    assert_eq!(ra.and_then(|r| r.generation), Some(1));
    assert_eq!(rb.and_then(|r| r.generation), Some(1));
}

/// Proves: a static member restarting with a new member id in a Stable group takes over its
/// old identity without a rebalance, and the old id is fenced (KIP-345).
#[test]
fn static_member_restart_keeps_its_assignment_without_a_rebalance() {
    let c = config(0);
    let mut g = Group::new(GroupId("g".into()), 0);
    let (out, e) = g.join(&c, req("", Some("i-1")), "old".into(), Waiter(1), 0, 0);
    assert!(matches!(out, JoinOutcome::Wait));
    assert!(join_reply(&e, 1).is_some());
    let _ = sync_leader(&mut g, &c, "old", 1, 2);
    let (leader_static, _) = (g.leader().map(str::to_string), ());
    assert_eq!(leader_static.as_deref(), Some("old"));

    // Give the group a second static member so the restarting one is not the leader.
    let (_, _) = g.join(&c, req("", Some("i-2")), "two".into(), Waiter(3), 0, 0);
    let (_, e) = g.join(&c, req("old", Some("i-1")), String::new(), Waiter(4), 0, 0);
    assert_eq!(e.replies.len(), 2);
    let _ = sync_leader(&mut g, &c, "old", 2, 5);
    assert_eq!(g.state(), GroupState::Stable);

    let (out, e) = g.join(&c, req("", Some("i-2")), "two-new".into(), Waiter(6), 0, 0);
    let JoinOutcome::Reply(r) = out else {
        panic!("a returning static member is answered at once")
    };
    assert_eq!(
        (r.error, r.generation, r.member_id.as_str()),
        (None, Some(2), "two-new")
    );
    assert!(e.store_group);
    assert_eq!(g.state(), GroupState::Stable);
    assert_eq!(
        g.heartbeat("two", Some("i-2"), 2, 0),
        Err(GroupError::FencedInstanceId)
    );
    assert_eq!(g.heartbeat("two-new", Some("i-2"), 2, 0), Ok(()));
    let (out, _) = g.sync(
        "two-new",
        Some("i-2"),
        2,
        None,
        None,
        BTreeMap::new(),
        Waiter(7),
        0,
    );
    let SyncOutcome::Reply(s) = out else {
        panic!("Stable answers SyncGroup at once")
    };
    assert_eq!(s.assignment, Bytes::from("assignment-of-two"));
}

/// Proves: commits without a generation are taken only while the group is empty (the admin
/// path of `weir group reset-offsets`), and a group with members cannot be deleted.
#[test]
fn outside_commits_only_while_empty_and_no_delete_with_members() {
    let c = config(0);
    let mut g = Group::new(GroupId("g".into()), 0);
    assert_eq!(g.validate_commit("", None, -1, 0), Ok(()));
    let (a, _) = join_new(&mut g, &c, "a", 1, 0);
    let _ = sync_leader(&mut g, &c, &a, 1, 2);
    assert_eq!(
        g.validate_commit("stranger", None, -1, 0),
        Err(GroupError::UnknownMemberId)
    );
    assert_eq!(g.mark_dead(0), Err(GroupError::NonEmptyGroup));
    let (r, _) = g.leave(&c, &a, None, 0, 0);
    assert_eq!(r, Ok(()));
    assert_eq!(g.mark_dead(0), Ok(()));
    assert_eq!(
        g.heartbeat(&a, None, 1, 0),
        Err(GroupError::CoordinatorNotAvailable)
    );
}

/// Proves: a group stored after its sync loads back Stable with the same generation,
/// members and assignments (what a new coordinator does after a failover).
#[test]
fn stored_group_loads_back_stable() {
    let c = config(0);
    let mut g = Group::new(GroupId("g".into()), 0);
    let (a, _) = join_new(&mut g, &c, "a", 1, 0);
    let _ = sync_leader(&mut g, &c, &a, 1, 2);
    let stored = records::decode_group_value(&records::encode_group_value(&g.stored_value()))
        .expect("round trip");
    let mut h = Group::new(GroupId("g".into()), 0);
    h.load(stored, 1_000);
    assert_eq!(h.state(), GroupState::Stable);
    assert_eq!(h.generation(), 1);
    assert_eq!(h.heartbeat(&a, None, 1, 1_500), Ok(()));
    let (out, _) = h.sync(&a, None, 1, None, None, BTreeMap::new(), Waiter(9), 1_500);
    let SyncOutcome::Reply(s) = out else {
        panic!("Stable answers at once")
    };
    assert_eq!(s.assignment, Bytes::from(format!("assignment-of-{a}")));
    // Loaded members still expire if they never come back.
    let _ = h.tick(&c, 1_000 + 10_001 + 500, 0);
    assert_eq!(h.member_count(), 0);
}

/// Proves: the partition of a group is Kafka's (Java's String.hashCode, abs, modulo).
#[test]
fn partition_for_matches_javas_string_hashcode() {
    // "a".hashCode() == 97, "ab".hashCode() == 3105, "polygenelubricants".hashCode() ==
    // Integer.MIN_VALUE (Kafka's Utils.abs maps it to 0).
    assert_eq!(partition_for("a", 50), 97 % 50);
    assert_eq!(partition_for("ab", 50), 3105 % 50);
    assert_eq!(partition_for("polygenelubricants", 50), 0);
    // A negative hash: "zzzzzzzz" overflows.
    let h = "zzzzzzzz"
        .encode_utf16()
        .fold(0i32, |h, u| h.wrapping_mul(31).wrapping_add(i32::from(u)));
    assert_eq!(partition_for("zzzzzzzz", 50), h.abs() % 50);
}

#[derive(Clone, Debug)]
enum Op {
    Join(usize),
    Sync(usize),
    Heartbeat(usize),
    Leave(usize),
    Tick(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..4usize).prop_map(Op::Join),
        (0..4usize).prop_map(Op::Sync),
        (0..4usize).prop_map(Op::Heartbeat),
        (0..4usize).prop_map(Op::Leave),
        (1..15_000u64).prop_map(Op::Tick),
    ]
}

proptest! {
    /// Proves, over random interleavings of four clients: every waiting request is answered
    /// at most once; a Stable group has no waiting joins; every successful JoinGroup answer
    /// in a generation names the same leader and protocol; and members agree on the
    /// generation they were told.
    #[test]
    fn random_clients_never_get_two_answers_or_split_generations(ops in proptest::collection::vec(op(), 1..120)) {
        let c = config(0);
        let mut g = Group::new(GroupId("g".into()), 0);
        let mut now = 0u64;
        let mut next_waiter = 0u64;
        let mut answered: BTreeSet<u64> = BTreeSet::new();
        let mut outstanding: BTreeSet<u64> = BTreeSet::new();
        // What each client believes: member id and generation.
        let mut ids: Vec<String> = vec![String::new(); 4];
        let mut gens: Vec<i32> = vec![-1; 4];
        let mut by_waiter: BTreeMap<u64, usize> = BTreeMap::new();
        let mut leaders: BTreeMap<i32, String> = BTreeMap::new();
        let handle = |effects: Effects, answered: &mut BTreeSet<u64>, outstanding: &mut BTreeSet<u64>,
                          ids: &mut Vec<String>, gens: &mut Vec<i32>, by_waiter: &BTreeMap<u64, usize>,
                          leaders: &mut BTreeMap<i32, String>| -> Result<(), TestCaseError> {
            for r in effects.replies {
                let (w, client) = match &r {
                    Reply::Join(Waiter(w), _) | Reply::Sync(Waiter(w), _) => (*w, by_waiter[w]),
                };
                prop_assert!(answered.insert(w), "waiter {} answered twice", w);
                outstanding.remove(&w);
                if let Reply::Join(_, j) = r && j.error.is_none() {
                    ids[client] = j.member_id.clone();
                    let generation = j.generation.expect("a generation without an error");
                    gens[client] = generation;
                    let l = leaders.entry(generation).or_insert_with(|| j.leader.clone());
                    prop_assert_eq!(l, &j.leader);
                }
            }
            Ok(())
        };
        for op in ops {
            next_waiter += 1;
            let w = next_waiter;
            match op {
                Op::Join(i) => {
                    by_waiter.insert(w, i);
                    let mut r = req(&ids[i], None);
                    r.require_known_member_id = false;
                    let (out, e) = g.join(&c, r, format!("m{w}"), Waiter(w), now, 0);
                    match out {
                        JoinOutcome::Wait => { outstanding.insert(w); }
                        JoinOutcome::Reply(j) => {
                            answered.insert(w);
                            if j.error.is_none() { gens[i] = j.generation.expect("a generation without an error"); ids[i] = j.member_id; }
                            else if j.error == Some(GroupError::UnknownMemberId) { ids[i].clear(); }
                        }
                    }
                    handle(e, &mut answered, &mut outstanding, &mut ids, &mut gens, &by_waiter, &mut leaders)?;
                }
                Op::Sync(i) => {
                    by_waiter.insert(w, i);
                    let assignments: BTreeMap<String, Bytes> = g.members().map(|m| (m.id.clone(), Bytes::new())).collect();
                    let (outcome, replaced) = g.sync(&ids[i], None, gens[i], None, None, assignments, Waiter(w), now);
                    handle(Effects { replies: replaced, store_group: false }, &mut answered, &mut outstanding, &mut ids, &mut gens, &by_waiter, &mut leaders)?;
                    match outcome {
                        SyncOutcome::Wait => { outstanding.insert(w); }
                        SyncOutcome::Reply(_) => { answered.insert(w); }
                        SyncOutcome::Persist { generation, assignments } => {
                            outstanding.insert(w);
                            let e = g.sync_persisted(&c, generation, assignments, Ok(()), now, 0);
                            handle(e, &mut answered, &mut outstanding, &mut ids, &mut gens, &by_waiter, &mut leaders)?;
                        }
                    }
                }
                Op::Heartbeat(i) => { let _ = g.heartbeat(&ids[i], None, gens[i], now); }
                Op::Leave(i) => {
                    let (_, e) = g.leave(&c, &ids[i], None, now, 0);
                    handle(e, &mut answered, &mut outstanding, &mut ids, &mut gens, &by_waiter, &mut leaders)?;
                }
                Op::Tick(d) => {
                    now += d;
                    let e = g.tick(&c, now, 0);
                    handle(e, &mut answered, &mut outstanding, &mut ids, &mut gens, &by_waiter, &mut leaders)?;
                }
            }
            if g.state() == GroupState::Stable {
                prop_assert!(g.members().all(|m| m.assignment.is_empty() || g.generation() > 0));
            }
            prop_assert!(g.generation() >= 0);
        }
    }
}

/// Proves: the static leader restarting in a Stable group causes no rebalance either, and its
/// answer names the leader by the old member id (so it does not compute an assignment).
#[test]
fn static_leader_restart_causes_no_rebalance() {
    let c = config(0);
    let mut g = Group::new(GroupId("g".into()), 0);
    let (_, e) = g.join(&c, req("", Some("i-1")), "old".into(), Waiter(1), 0, 0);
    assert!(join_reply(&e, 1).is_some());
    let _ = sync_leader(&mut g, &c, "old", 1, 2);
    assert_eq!(g.state(), GroupState::Stable);
    let (out, e) = g.join(&c, req("", Some("i-1")), "new".into(), Waiter(3), 0, 0);
    let JoinOutcome::Reply(r) = out else {
        panic!("a returning static leader is answered at once")
    };
    assert_eq!(
        (r.error, r.generation, r.leader.as_str()),
        (None, Some(1), "old")
    );
    assert!(r.members.is_empty());
    assert!(e.store_group);
    assert_eq!(g.state(), GroupState::Stable);
    assert_eq!(g.leader(), Some("new"));
}
