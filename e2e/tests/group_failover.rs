//! The broker coordinating a consumer group is killed with `kill -9` while the group consumes
//! and commits: the group carries on (librdkafka finds the coordinator again), its committed
//! offsets never go backwards, every acknowledged record is read, and a fresh member of the
//! group starts exactly at the last committed offsets.
//!
//! Three settings of the same scenario:
//!
//! - a replicated Weir cluster (3 coordinators and 3 brokers as processes in network
//!   namespaces; see `weir_e2e::cluster`): the group's coordinator moves to another broker;
//! - the reference Kafka, a single node killed and restarted: the group comes back with it
//!   from `__consumer_offsets` (this is what checks the scenario itself against Kafka);
//! - `weir dev`, killed and restarted the same way.
//!
//! Workload: a producer writes `p{partition}-{seq}` records (idempotent, acks=all) to six
//! partitions; two members (see `weir_e2e::group`) read them, commit what they processed every
//! 200 ms and on revoke; an observer reads the group's committed offsets (OffsetFetch) every
//! 200 ms throughout.
#![allow(clippy::unwrap_used)] // test code panics on purpose

use rdkafka::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use weir_e2e::admin::create_topic_blocking;
use weir_e2e::cluster::{ClusterConfig, Node, TestCluster, unavailable_reason};
use weir_e2e::group::{
    Coordinator, Member, Tracker, acked_ends, assert_acked_read, assert_resumes_at, committed,
    committed_with, find_coordinator, member_config, produce_tail,
};
use weir_e2e::workload::{Workload, producer_config};
use weir_e2e::{Running, Target, targets};

const TOPIC: &str = "group-failover";
const GROUP: &str = "e2e-failover";
const PARTITIONS: i32 = 6;
/// One record every 4 ms, round-robin: about 40 records/s per partition.
const INTERVAL: Duration = Duration::from_millis(4);
const COMMIT_EVERY: Duration = Duration::from_millis(200);
const OBSERVE_EVERY: Duration = Duration::from_millis(100);
const SETTLE: Duration = Duration::from_secs(30);
/// From the kill until every partition has a new commit: a broker's lease (3 s), the offsets
/// partition's new leader loading the group, librdkafka's coordinator query and retries.
const RECOVER: Duration = Duration::from_secs(60);
const CATCH_UP: Duration = Duration::from_secs(60);
const PROGRESS: usize = 30;
const TAIL: i64 = 10;

/// One broker or cluster at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Proves: when the broker coordinating the group is killed, the group's coordinator moves to
/// another broker, the members carry on from their committed offsets, no commit is lost or
/// goes backwards, and a fresh member starts at the last committed offsets.
#[test]
fn coordinator_broker_killed_in_cluster() {
    let name = "coordinator_broker_killed_in_cluster";
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(why) = unavailable_reason() {
        eprintln!("skipped {name}: {why}");
        return;
    }
    let t = Instant::now();
    let args = [
        "--group-initial-rebalance-delay-ms",
        "0",
        "--offsets-topic-partitions",
        "6",
        "--offsets-topic-replication-factor",
        "3",
    ];
    let mut cluster = TestCluster::start(ClusterConfig {
        broker_args: args.iter().map(|s| s.to_string()).collect(),
        ..ClusterConfig::default()
    })
    .unwrap();
    cluster
        .create_topic(TOPIC, PARTITIONS, 3, &[("min.insync.replicas", "2")], &[])
        .unwrap();
    let bootstrap = cluster.bootstrap();
    println!("[{name}] cluster up, topic in sync, in {:?}", t.elapsed());

    let killed = group_rides_through_coordinator_kill(name, &bootstrap, &mut |c| {
        let addr = cluster.kafka_addr(c.node_id);
        assert_eq!(
            format!("{}:{}", c.host, c.port),
            addr,
            "FindCoordinator's address for broker {}",
            c.node_id
        );
        cluster.kill9(Node::Broker(c.node_id))
    });
    let now = find_coordinator(&bootstrap, GROUP, RECOVER).unwrap();
    assert_ne!(
        now.node_id, killed.node_id,
        "the group's coordinator moved off the killed broker"
    );
    println!(
        "[{name}] the group moved from broker {} to broker {}; passed in {:?}",
        killed.node_id,
        now.node_id,
        t.elapsed()
    );
    cluster.assert_no_crashes().unwrap();
}

/// Proves: the scenario holds on the reference Kafka, whose single node is killed and
/// restarted: the group resumes from what `__consumer_offsets` held.
#[test]
fn coordinator_killed_and_restarted_kafka() {
    single_node(Target::Kafka, "coordinator_killed_and_restarted_kafka");
}

/// Proves the same of `weir dev`: committed offsets and the group survive a kill -9.
#[test]
fn coordinator_killed_and_restarted_weir_dev() {
    single_node(Target::Weir, "coordinator_killed_and_restarted_weir_dev");
}

fn single_node(target: Target, name: &str) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !targets().contains(&target) {
        eprintln!("skipped {name}: {target:?} is not in WEIR_E2E_TARGETS");
        return;
    }
    let t = Instant::now();
    let mut broker = Running::start(target).unwrap();
    let bootstrap = broker.bootstrap();
    create_topic_blocking(&bootstrap, TOPIC, PARTITIONS).unwrap();
    let killed = group_rides_through_coordinator_kill(name, &bootstrap, &mut |c| {
        assert_eq!(
            format!("{}:{}", c.host, c.port),
            bootstrap,
            "FindCoordinator names the only broker"
        );
        broker.kill9()?;
        broker.restart()
    });
    let now = find_coordinator(&bootstrap, GROUP, RECOVER).unwrap();
    assert_eq!(now, killed, "the only broker coordinates the group again");
    println!("[{name}] passed in {:?}", t.elapsed());
}

/// The scenario of the module documentation; `kill` kills the coordinator it is given (and,
/// on a single node, starts it again). Returns the coordinator that was killed.
fn group_rides_through_coordinator_kill(
    name: &str,
    bootstrap: &str,
    kill: &mut dyn FnMut(&Coordinator) -> anyhow::Result<()>,
) -> Coordinator {
    let mut pconfig = producer_config(bootstrap);
    pconfig.set("log_level", "3");
    let w = Workload::start_with(pconfig, TOPIC, PARTITIONS, INTERVAL).unwrap();
    w.wait_acks_everywhere(5, Instant::now(), SETTLE).unwrap();

    let tracker = Tracker::new();
    let mut config = member_config(bootstrap, GROUP);
    // A dead broker costs a reconnect back-off of at most half a second, not ten. Sessions
    // outlast the coordinator's absence (Kafka's default, 45 s): a single node killed with
    // `kill -9` recovers its logs before it serves again, which took 10 s on a loaded 2-core
    // machine; with 6 s sessions Kafka expires both members meanwhile, and one is handed the
    // other's partitions before the other learns it lost them, which is not what this
    // scenario checks.
    config
        .set("session.timeout.ms", "45000")
        .set("max.poll.interval.ms", "60000")
        .set("reconnect.backoff.ms", "50")
        .set("reconnect.backoff.max.ms", "500")
        .set("topic.metadata.refresh.interval.ms", "1000");
    let a = Member::start("a", &config, TOPIC, &tracker, COMMIT_EVERY).unwrap();
    let b = Member::start("b", &config, TOPIC, &tracker, COMMIT_EVERY).unwrap();
    let g = tracker.wait_stable(&["a", "b"], PARTITIONS, SETTLE);
    for m in ["a", "b"] {
        tracker.wait_consumed_by(m, PROGRESS, SETTLE);
    }
    let observer = Observer::start(bootstrap);
    observer.wait_observations(3, SETTLE);

    let coordinator = find_coordinator(bootstrap, GROUP, SETTLE).unwrap();
    println!(
        "[{name}] a and b share the partitions in generation {g}; coordinator is broker {} at {}:{}",
        coordinator.node_id, coordinator.host, coordinator.port
    );
    let fault_at = Instant::now();
    kill(&coordinator).unwrap();
    println!(
        "[{name}] the kill of broker {} returned after {:?}",
        coordinator.node_id,
        fault_at.elapsed()
    );

    // The group carries on: every partition is committed again, both members read more.
    let consumed_at_fault = tracker.consumed_records().len();
    let deadline = Instant::now() + RECOVER;
    loop {
        tracker.assert_clean();
        let since: BTreeSet<i32> = tracker
            .commits()
            .iter()
            .filter(|c| c.at > fault_at)
            .map(|c| c.partition)
            .collect();
        let read_since = tracker.consumed_records().len() - consumed_at_fault;
        if since.len() == PARTITIONS as usize && read_since >= 2 * PROGRESS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{RECOVER:?} after the kill, partitions committed since: {since:?}, records read since: \
             {read_since}\n{}",
            tracker.history()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "[{name}] every partition committed again {:?} after the kill; the members saw {} errors and warnings on the way",
        fault_at.elapsed(),
        tracker.errors().len()
    );
    let g_after = tracker.wait_stable(&["a", "b"], PARTITIONS, SETTLE);

    // The producer stops; the members catch up, commit everything and close.
    let outcome = w.finish(CATCH_UP).unwrap();
    println!("{}", outcome.report(name, fault_at, None));
    let ends = acked_ends(&outcome, PARTITIONS);
    tracker.wait_consumed(TOPIC, &BTreeMap::new(), &ends, CATCH_UP);
    a.stop(SETTLE).unwrap();
    b.stop(SETTLE).unwrap();
    let observed = observer.stop();
    tracker.assert_clean();

    // At least once: every acknowledged record was read (a commit lost with the coordinator
    // may make a member read some again).
    let twice = assert_acked_read(&outcome, &tracker);

    // Committed offsets never went backwards: neither in what the members were told was
    // committed, nor in what the coordinator answered the observer, before and after the kill.
    let mut commits = tracker.commits();
    commits.sort_by_key(|c| c.at);
    let mut problems = Vec::new();
    let mut high: BTreeMap<i32, (i64, String)> = BTreeMap::new();
    for c in &commits {
        if let Some((h, who)) = high.get(&c.partition)
            && c.offset < *h
        {
            problems.push(format!(
                "partition {}: {} committed {} in generation {} after {who} had committed {h}",
                c.partition, c.member, c.offset, c.generation
            ));
        }
        let e = high
            .entry(c.partition)
            .or_insert((c.offset, c.member.clone()));
        if c.offset >= e.0 {
            *e = (c.offset, c.member.clone());
        }
    }
    let mut seen: BTreeMap<i32, i64> = BTreeMap::new();
    for (at, offsets) in &observed {
        for (&p, &o) in offsets {
            let Some(o) = o else {
                if let Some(prev) = seen.get(&p) {
                    problems.push(format!(
                        "partition {p}: OffsetFetch at +{:?} from the kill found no committed offset after {prev}",
                        at.saturating_duration_since(fault_at)
                    ));
                }
                continue;
            };
            if let Some(&prev) = seen.get(&p)
                && o < prev
            {
                problems.push(format!(
                    "partition {p}: OffsetFetch went from {prev} back to {o} ({} the kill)",
                    if *at > fault_at { "after" } else { "before" }
                ));
            }
            seen.insert(p, o.max(seen.get(&p).copied().unwrap_or(o)));
        }
    }
    assert!(
        problems.is_empty(),
        "committed offsets went backwards:\n  {}\n{}",
        problems.join("\n  "),
        tracker.history()
    );
    let after_kill = observed.iter().filter(|(at, _)| *at > fault_at).count();
    assert!(
        after_kill > 0,
        "the observer read no committed offsets after the kill ({} before)",
        observed.len()
    );

    // Everything read is committed; a fresh member starts exactly there.
    let done = committed(bootstrap, GROUP, TOPIC, PARTITIONS, SETTLE).unwrap();
    let want: BTreeMap<i32, Option<i64>> = ends.iter().map(|(p, e)| (*p, Some(*e))).collect();
    assert_eq!(
        done,
        want,
        "committed offsets after the members closed (left) vs. end offsets (right)\n{}",
        tracker.history()
    );
    let new_ends = produce_tail(bootstrap, TOPIC, &ends, TAIL, CATCH_UP).unwrap();
    assert_resumes_at(&config, TOPIC, &["fresh"], &ends, &new_ends, SETTLE);
    println!(
        "[{name}] {} acknowledged records all read ({} read twice), generations {g}..={g_after}; \
         {} OffsetFetch answers ({after_kill} after the kill) never went backwards; a fresh member \
         started at {done:?}",
        outcome.acks.len(),
        twice.len(),
        observed.len()
    );
    coordinator
}

/// Reads the group's committed offsets every [`OBSERVE_EVERY`] on a thread of its own,
/// through a client that never joins the group. Errors (no coordinator for a while) are
/// skipped.
struct Observer {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Observation>>>,
    thread: Option<JoinHandle<()>>,
}

type Observation = (Instant, BTreeMap<i32, Option<i64>>);

impl Observer {
    fn start(bootstrap: &str) -> Observer {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", GROUP)
            .set("enable.auto.commit", "false")
            .set("reconnect.backoff.max.ms", "500")
            .set("log_level", "2")
            .create()
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, seen) = (stop.clone(), seen.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(offsets) =
                        committed_with(&consumer, TOPIC, PARTITIONS, Duration::from_secs(2))
                    {
                        seen.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push((Instant::now(), offsets));
                    }
                    // Pacing: a sample every OBSERVE_EVERY, not a wait for a condition.
                    std::thread::sleep(OBSERVE_EVERY);
                }
            })
        };
        Observer {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    fn wait_observations(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.seen.lock().unwrap_or_else(|e| e.into_inner()).len() < n {
            assert!(
                Instant::now() < deadline,
                "no {n} OffsetFetch answers within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(mut self) -> Vec<Observation> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        std::mem::take(&mut *self.seen.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
