//! Consumer groups with librdkafka (through the `rdkafka` crate), against the reference Kafka
//! and against Weir: members join and leave a group sharing six partitions while a producer
//! writes, and the group's committed offsets are where a restarted group resumes.
//!
//! The members (see `weir_e2e::group`) use the eager protocol with the `roundrobin` assignor,
//! process each record by recording it, and commit synchronously what they processed every
//! 200 ms and in the revoke callback. A referee checks on every assignment that no partition
//! is held by two members at once, within a generation or across one.
#![allow(clippy::unwrap_used)] // test code panics on purpose

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use weir_e2e::admin::create_topic_blocking;
use weir_e2e::group::{
    Member, Tracker, acked_ends, assert_acked_read, assert_resumes_at, committed, member_config,
    produce_tail,
};
use weir_e2e::workload::Workload;
use weir_e2e::{Running, Target, targets};

const PARTITIONS: i32 = 6;
/// One record every 4 ms, round-robin: about 40 records/s per partition.
const INTERVAL: Duration = Duration::from_millis(4);
const COMMIT_EVERY: Duration = Duration::from_millis(200);
/// A join or leave is seen within a heartbeat (500 ms) and settles in about one more; this is
/// the bound, not the expectation.
const SETTLE: Duration = Duration::from_secs(30);
const CLOSE: Duration = Duration::from_secs(30);
const CATCH_UP: Duration = Duration::from_secs(30);
/// Records each member reads between two membership changes.
const PROGRESS: usize = 30;
/// Records per partition written after the group committed everything and closed.
const TAIL: i64 = 10;

/// One broker at a time: a JVM and half a dozen consumers per test are plenty for two cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn run_on(target: Target, name: &str, test: fn(Target, &str)) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !targets().contains(&target) {
        eprintln!("skipped {name}: {target:?} is not in WEIR_E2E_TARGETS");
        return;
    }
    let t = Instant::now();
    test(target, name);
    println!("[{name}] passed in {:?}", t.elapsed());
}

/// Proves: on the reference Kafka, two and then three members share six partitions, one
/// leaves, no partition is ever held by two members, every acknowledged record is read, and a
/// group restarted after committing everything resumes exactly at its committed offsets.
#[test]
fn members_join_and_leave_kafka() {
    run_on(
        Target::Kafka,
        "members_join_and_leave_kafka",
        members_join_and_leave,
    );
}

/// Proves the same on Weir.
#[test]
fn members_join_and_leave_weir() {
    run_on(
        Target::Weir,
        "members_join_and_leave_weir",
        members_join_and_leave,
    );
}

fn members_join_and_leave(target: Target, name: &str) {
    let broker = Running::start(target).unwrap();
    let bootstrap = broker.bootstrap();
    let topic = "groups-share";
    let group = "e2e-share";
    create_topic_blocking(&bootstrap, topic, PARTITIONS).unwrap();

    let w = Workload::start(&bootstrap, topic, PARTITIONS, INTERVAL).unwrap();
    w.wait_acks_everywhere(5, Instant::now(), SETTLE).unwrap();

    let tracker = Tracker::new();
    let config = member_config(&bootstrap, group);
    let start = |m: &str| Member::start(m, &config, topic, &tracker, COMMIT_EVERY).unwrap();
    let progress = |members: &[&str]| {
        let before: HashMap<String, usize> = count_by_member(&tracker);
        for m in members {
            let had = before.get(*m).copied().unwrap_or(0);
            tracker.wait_consumed_by(m, had + PROGRESS, SETTLE);
        }
    };

    // Two members.
    let t = Instant::now();
    let a = start("a");
    let b = start("b");
    let g1 = tracker.wait_stable(&["a", "b"], PARTITIONS, SETTLE);
    println!(
        "[{name}] a and b share the partitions in generation {g1} after {:?}: {:?}",
        t.elapsed(),
        tracker.held()
    );
    progress(&["a", "b"]);

    // A third joins.
    let t = Instant::now();
    let c = start("c");
    let g2 = tracker.wait_stable(&["a", "b", "c"], PARTITIONS, SETTLE);
    println!(
        "[{name}] c joined: generation {g2} after {:?}: {:?}",
        t.elapsed(),
        tracker.held()
    );
    assert!(
        g2 > g1,
        "a join starts a new generation: {g2} after {g1}\n{}",
        tracker.history()
    );
    for (m, (_, parts)) in tracker.held() {
        assert_eq!(
            parts.len(),
            2,
            "roundrobin gives each of 3 members 2 of 6 partitions; {m} holds {parts:?}"
        );
    }
    progress(&["a", "b", "c"]);

    // One leaves.
    let t = Instant::now();
    a.stop(CLOSE).unwrap();
    let g3 = tracker.wait_stable(&["b", "c"], PARTITIONS, SETTLE);
    println!(
        "[{name}] a left: generation {g3} after {:?}: {:?}",
        t.elapsed(),
        tracker.held()
    );
    assert!(
        g3 > g2,
        "a leave starts a new generation: {g3} after {g2}\n{}",
        tracker.history()
    );
    progress(&["b", "c"]);

    // The producer stops; the members catch up, commit everything and close.
    let outcome = w.finish(CATCH_UP).unwrap();
    assert!(
        outcome.failures.is_empty(),
        "{} records not acknowledged, e.g. {:?}",
        outcome.failures.len(),
        outcome.failures.first()
    );
    let ends = acked_ends(&outcome, PARTITIONS);
    tracker.wait_consumed(topic, &BTreeMap::new(), &ends, CATCH_UP);
    b.stop(CLOSE).unwrap();
    c.stop(CLOSE).unwrap();
    tracker.assert_clean();

    // Every acknowledged record was read; and since each revoke commits what was processed,
    // a partition is handed over at the exact position: nothing is read twice.
    let twice = assert_acked_read(&outcome, &tracker);
    assert!(
        twice.is_empty(),
        "{} records read more than once, e.g. ((partition, offset), readers) {:?}\n{}",
        twice.len(),
        &twice[..twice.len().min(10)],
        tracker.history()
    );

    // Everything read is committed.
    let done = committed(&bootstrap, group, topic, PARTITIONS, SETTLE).unwrap();
    let want: BTreeMap<i32, Option<i64>> = ends.iter().map(|(p, e)| (*p, Some(*e))).collect();
    assert_eq!(
        done,
        want,
        "committed offsets after the members closed (left) vs. end offsets (right)\n{}",
        tracker.history()
    );
    println!(
        "[{name}] {} acknowledged records read once each across generations {g1}..={g3}; committed {done:?}",
        outcome.acks.len()
    );

    // A restarted group resumes at the committed offsets: nothing committed is read again,
    // nothing after it is skipped.
    let t = Instant::now();
    let new_ends = produce_tail(&bootstrap, topic, &ends, TAIL, CATCH_UP).unwrap();
    assert_resumes_at(&config, topic, &["d", "e"], &ends, &new_ends, SETTLE);
    println!(
        "[{name}] the restarted group read exactly the {TAIL} new records per partition in {:?}",
        t.elapsed()
    );
}

fn count_by_member(tracker: &Tracker) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for r in tracker.consumed_records() {
        *out.entry(r.member).or_default() += 1;
    }
    out
}
