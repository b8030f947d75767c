//! A replicated cluster under faults: three coordinators and three (or four) brokers as real
//! processes, each in a network namespace of its own, while an idempotent acks=all librdkafka
//! producer writes to a topic with replication factor 3 and `min.insync.replicas=2`.
//!
//! Each test injects one fault (kill -9 of the leading broker or of the Raft leader, a SIGSTOP
//! past the broker's lease, a network cut, a partition that strands records on a deposed
//! leader, a reassignment under load), waits for the cluster to recover, then reads every
//! partition back and checks that every acknowledged record is stored exactly once, at its
//! acknowledged offset, in send order, that nothing is stored twice, and that every replica's
//! log holds the same bytes. Each prints (see
//! `--nocapture`) how long the partition took to accept writes again and the longest stall.
//!
//! The tests take turns (one cluster at a time: two cores cannot run two clusters, two
//! producers and the timing of 3 s leases side by side), and skip with a message where
//! network namespaces are not available or the binaries are not built (see
//! `weir_e2e::cluster::unavailable_reason`).
#![allow(clippy::unwrap_used)] // test code panics on purpose

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use weir_e2e::cluster::{ClusterConfig, Node, TestCluster, find_partition, unavailable_reason};
use weir_e2e::workload::{Outcome, Workload, read_all, verify};

const TOPIC: &str = "faults";
const PARTITIONS: i32 = 3;
const TOPIC_CONFIG: &[(&str, &str)] = &[("min.insync.replicas", "2")];
/// One record every 2 ms, round-robin: about 170 records/s per partition.
const INTERVAL: Duration = Duration::from_millis(2);
/// Acknowledgements per partition that show the topic accepts writes.
const ACKS_FLOWING: usize = 50;
/// The lease is 3 s; election, metadata propagation and a client's retry come on top.
const FAILOVER: Duration = Duration::from_secs(20);
/// A restarted or healed broker registers, truncates, catches up and rejoins the ISR.
const REJOIN: Duration = Duration::from_secs(30);
const FINISH: Duration = Duration::from_secs(60);
/// With the producer stopped, followers fetch the last batches within a fetch round or two.
const REPLICAS_AGREE: Duration = Duration::from_secs(15);
/// A reassignment is planned: the producer's `request.timeout.ms` (5 s) is far too long.
const PLANNED_MOVE_STALL_MAX: Duration = Duration::from_secs(2);

static SERIAL: Mutex<()> = Mutex::new(());

/// A started cluster; the serial lock is released after the cluster is gone.
struct Fixture {
    cluster: TestCluster,
    _serial: MutexGuard<'static, ()>,
}

impl Fixture {
    /// `None` (and a message) when cluster tests cannot run on this machine.
    fn start(name: &str, brokers: usize) -> Option<Fixture> {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(why) = unavailable_reason() {
            eprintln!("skipped {name}: {why}");
            return None;
        }
        let t = Instant::now();
        let mut cluster = TestCluster::start(ClusterConfig {
            brokers,
            ..ClusterConfig::default()
        })
        .unwrap();
        // Manual placement: partition 0 prefers broker 1, and every broker leads one partition.
        cluster
            .create_topic(
                TOPIC,
                PARTITIONS,
                3,
                TOPIC_CONFIG,
                &[vec![1, 2, 3], vec![2, 3, 1], vec![3, 1, 2]],
            )
            .unwrap();
        println!(
            "[{name}] cluster of 3 coordinators and {brokers} brokers up, topic in sync, in {:?}",
            t.elapsed()
        );
        Some(Fixture {
            cluster,
            _serial: serial,
        })
    }

    fn workload(&self) -> Workload {
        let w = Workload::start(&self.cluster.bootstrap(), TOPIC, PARTITIONS, INTERVAL).unwrap();
        w.wait_acks_everywhere(ACKS_FLOWING, Instant::now(), Duration::from_secs(20))
            .unwrap();
        w
    }

    /// Stops the workload, reads the topic back and checks it; prints the report.
    fn finish(
        &mut self,
        name: &str,
        w: Workload,
        fault_at: Instant,
        partition: Option<i32>,
    ) -> Outcome {
        let outcome = w.finish(FINISH).unwrap();
        println!("{}", outcome.report(name, fault_at, partition));
        let stored = read_all(&self.cluster.bootstrap(), TOPIC, PARTITIONS, FINISH).unwrap();
        let n = verify(&outcome, &stored).unwrap();
        println!("[{name}] {n} records stored, every acknowledged one exactly once and in order");
        let sizes = self
            .cluster
            .wait_replicas_identical(TOPIC, REPLICAS_AGREE)
            .unwrap();
        println!("[{name}] every replica holds the same bytes: (partition, bytes) {sizes:?}");
        assert!(
            sizes.iter().all(|&(_, b)| b > 0),
            "empty replica logs: {sizes:?}"
        );
        assert!(
            outcome.failures.is_empty(),
            "{} records failed for good, e.g. {:?}",
            outcome.failures.len(),
            &outcome.failures[..outcome.failures.len().min(5)]
        );
        self.cluster.assert_no_crashes().unwrap();
        outcome
    }
}

/// Proves: kill -9 of the broker leading a partition loses no acknowledged record, another
/// replica takes over and accepts writes, and the restarted broker rejoins the ISR.
#[test]
fn leader_broker_killed() {
    let name = "leader_broker_killed";
    let Some(mut f) = Fixture::start(name, 3) else {
        return;
    };
    let w = f.workload();
    let c = &mut f.cluster;
    let old = c.leader_of(TOPIC, 0).unwrap();

    let fault_at = Instant::now();
    c.kill9(Node::Broker(old)).unwrap();
    let new = c.wait_leader_not(TOPIC, 0, old, FAILOVER).unwrap();
    println!(
        "[{name}] broker {old} killed; broker {new} leads partition 0 after {:?}",
        fault_at.elapsed()
    );
    w.wait_acks(Some(0), ACKS_FLOWING, Instant::now(), FAILOVER)
        .unwrap();

    c.restart(Node::Broker(old)).unwrap();
    let restarted_at = Instant::now();
    c.wait_brokers_ready(REJOIN).unwrap();
    c.wait_topic_in_sync(TOPIC, REJOIN).unwrap();
    println!(
        "[{name}] broker {old} restarted and back in every ISR after {:?}",
        restarted_at.elapsed()
    );
    w.wait_acks_everywhere(ACKS_FLOWING, Instant::now(), FAILOVER)
        .unwrap();
    f.finish(name, w, fault_at, Some(0));
}

/// Proves: kill -9 of the coordinators' Raft leader does not stop the brokers serving (none
/// is fenced), a new Raft leader commits metadata changes, and the restarted coordinator
/// catches up.
#[test]
fn coordinator_leader_killed() {
    let name = "coordinator_leader_killed";
    let Some(mut f) = Fixture::start(name, 3) else {
        return;
    };
    let w = f.workload();
    let c = &mut f.cluster;
    let old = c.wait_coordinator_leader(FAILOVER).unwrap();

    let fault_at = Instant::now();
    c.kill9(Node::Coordinator(old)).unwrap();
    let new = c.wait_coordinator_leader_not(old, FAILOVER).unwrap();
    println!(
        "[{name}] coordinator {old} killed; coordinator {new} leads after {:?}",
        fault_at.elapsed()
    );
    w.wait_acks_everywhere(ACKS_FLOWING, Instant::now(), FAILOVER)
        .unwrap();
    // Heartbeats found the new leader in time: nobody lost its lease.
    c.wait_brokers_ready(Duration::from_secs(10)).unwrap();
    // The new leader commits: a topic created now gets leaders and full ISRs.
    c.create_topic("after-failover", 1, 3, TOPIC_CONFIG, &[])
        .unwrap();

    c.restart(Node::Coordinator(old)).unwrap();
    let restarted_at = Instant::now();
    let deadline = restarted_at + REJOIN;
    loop {
        // The restarted coordinator answers itself and has applied the topic created without it.
        match c.describe_via(old) {
            Ok(d)
                if d.coordinator_leader.is_some_and(|l| l > 0)
                    && d.topics.iter().any(|t| t.name == "after-failover") =>
            {
                break;
            }
            Ok(_) | Err(_) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100))
            }
            other => {
                panic!("restarted coordinator {old} did not catch up within {REJOIN:?}: {other:?}")
            }
        }
    }
    println!(
        "[{name}] coordinator {old} restarted and caught up after {:?}",
        restarted_at.elapsed()
    );
    w.wait_acks_everywhere(ACKS_FLOWING, Instant::now(), FAILOVER)
        .unwrap();
    c.wait_brokers_ready(Duration::from_secs(10)).unwrap();
    f.finish(name, w, fault_at, None);
}

/// Proves: a leader frozen (SIGSTOP) past its lease is fenced and replaced, writes continue on
/// the new leader, and when it wakes up it does not act as leader: nothing acknowledged is
/// lost or duplicated, and it rejoins the ISR.
#[test]
fn leader_broker_paused_past_lease() {
    let name = "leader_broker_paused_past_lease";
    let Some(mut f) = Fixture::start(name, 3) else {
        return;
    };
    let w = f.workload();
    let c = &mut f.cluster;
    let old = c.leader_of(TOPIC, 0).unwrap();

    let fault_at = Instant::now();
    c.pause(Node::Broker(old)).unwrap();
    c.wait_broker_fenced(old, FAILOVER).unwrap();
    let fenced_after = fault_at.elapsed();
    let new = c.wait_leader_not(TOPIC, 0, old, FAILOVER).unwrap();
    println!(
        "[{name}] broker {old} paused; fenced after {fenced_after:?}; broker {new} leads partition 0 after {:?}",
        fault_at.elapsed()
    );
    w.wait_acks(Some(0), ACKS_FLOWING, Instant::now(), FAILOVER)
        .unwrap();

    c.resume(Node::Broker(old)).unwrap();
    let resumed_at = Instant::now();
    c.wait_brokers_ready(REJOIN).unwrap();
    c.wait_topic_in_sync(TOPIC, REJOIN).unwrap();
    println!(
        "[{name}] broker {old} resumed and back in every ISR after {:?}",
        resumed_at.elapsed()
    );
    w.wait_acks_everywhere(ACKS_FLOWING, Instant::now(), FAILOVER)
        .unwrap();
    f.finish(name, w, fault_at, Some(0));
}

/// Proves: a leader cut off from the network (from everyone: peers, coordinators, clients)
/// is replaced, and after the cut heals it rejoins without losing or duplicating anything.
#[test]
fn leader_broker_cut_off() {
    let name = "leader_broker_cut_off";
    let Some(mut f) = Fixture::start(name, 3) else {
        return;
    };
    let w = f.workload();
    let c = &mut f.cluster;
    let old = c.leader_of(TOPIC, 0).unwrap();

    let fault_at = Instant::now();
    c.cut(Node::Broker(old)).unwrap();
    let new = c.wait_leader_not(TOPIC, 0, old, FAILOVER).unwrap();
    println!(
        "[{name}] broker {old} cut off; broker {new} leads partition 0 after {:?}",
        fault_at.elapsed()
    );
    w.wait_acks(Some(0), ACKS_FLOWING, Instant::now(), FAILOVER)
        .unwrap();

    c.heal(Node::Broker(old)).unwrap();
    let healed_at = Instant::now();
    c.wait_brokers_ready(REJOIN).unwrap();
    c.wait_topic_in_sync(TOPIC, REJOIN).unwrap();
    println!(
        "[{name}] broker {old} healed and back in every ISR after {:?}",
        healed_at.elapsed()
    );
    w.wait_acks_everywhere(ACKS_FLOWING, Instant::now(), FAILOVER)
        .unwrap();
    f.finish(name, w, fault_at, Some(0));
}

/// Proves: records a leader appended but never replicated (acks=1, written while it was cut
/// off from its followers and the coordinators) are truncated when it rejoins as a follower:
/// once it leads again, its log holds every acks=all record exactly once and none of the
/// stranded ones.
#[test]
fn deposed_leader_truncates_unreplicated_records() {
    let name = "deposed_leader_truncates_unreplicated_records";
    let Some(mut f) = Fixture::start(name, 3) else {
        return;
    };
    let w = f.workload();
    let c = &mut f.cluster;
    let p0 = c.partition(TOPIC, 0).unwrap();
    let old = p0.leader.expect("partition 0 has a leader");
    assert_eq!(
        old, p0.replicas[0],
        "partition 0 is led by its preferred replica: {p0:?}"
    );

    // A plain acks=1 producer, already holding metadata that names `old` as the leader.
    let stray: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", c.kafka_addr(old))
        .set("acks", "1")
        .set("enable.idempotence", "false")
        .set("linger.ms", "0")
        .set("message.timeout.ms", "3000")
        .set("request.timeout.ms", "2000")
        .set("log_level", "4")
        .create()
        .unwrap();
    stray
        .client()
        .fetch_metadata(Some(TOPIC), Duration::from_secs(5))
        .unwrap();

    // Only the test process can reach the leader now: not its followers, not the coordinators.
    let fault_at = Instant::now();
    c.isolate_from_peers(Node::Broker(old)).unwrap();
    let mut stranded = Vec::new();
    for i in 0..20 {
        let v = format!("stranded-{i}");
        let r = c.block_on(stray.send(
            FutureRecord::<(), _>::to(TOPIC).partition(0).payload(&v),
            Timeout::After(Duration::from_secs(1)),
        ));
        match r {
            Ok(d) => stranded.push((d.offset, v)),
            Err((e, _)) => panic!("the isolated leader refused an acks=1 record {v}: {e}"),
        }
    }
    let stranded_in = fault_at.elapsed();
    drop(stray);
    println!(
        "[{name}] broker {old} isolated; {} acks=1 records it alone has, offsets {:?}..={:?}, written in {stranded_in:?}",
        stranded.len(),
        stranded.first().map(|s| s.0),
        stranded.last().map(|s| s.0)
    );
    assert!(
        stranded_in < Duration::from_millis(c.config().broker_session_timeout_ms),
        "the stranded records were written within the lease"
    );

    let new = c.wait_leader_not(TOPIC, 0, old, FAILOVER).unwrap();
    println!(
        "[{name}] broker {new} leads partition 0 after {:?}",
        fault_at.elapsed()
    );
    w.wait_acks(Some(0), ACKS_FLOWING, Instant::now(), FAILOVER)
        .unwrap();

    c.unblock(Node::Broker(old)).unwrap();
    let healed_at = Instant::now();
    c.wait_brokers_ready(REJOIN).unwrap();
    c.wait_topic_in_sync(TOPIC, REJOIN).unwrap();
    println!(
        "[{name}] broker {old} back in every ISR after {:?}",
        healed_at.elapsed()
    );

    // Leadership back to the old leader, so the read below comes from its log.
    c.elect_preferred_leader(TOPIC, 0).unwrap();
    c.wait_leader_is(TOPIC, 0, old, FAILOVER).unwrap();
    w.wait_acks(Some(0), ACKS_FLOWING, Instant::now(), FAILOVER)
        .unwrap();

    let outcome = w.finish(FINISH).unwrap();
    println!("{}", outcome.report(name, fault_at, Some(0)));
    let stored = read_all(&c.bootstrap(), TOPIC, PARTITIONS, FINISH).unwrap();
    let survivors: Vec<&(i64, String)> = stored[&0]
        .iter()
        .filter(|(_, v)| v.starts_with("stranded-"))
        .collect();
    assert!(
        survivors.is_empty(),
        "records only the deposed leader had survived its return: {survivors:?}"
    );
    let n = verify(&outcome, &stored).unwrap();
    println!(
        "[{name}] {n} records stored, every acknowledged one exactly once and in order, no stranded one"
    );
    // Not only the leader's log: the three replicas hold the very same batches.
    let sizes = c.wait_replicas_identical(TOPIC, REPLICAS_AGREE).unwrap();
    println!("[{name}] every replica holds the same bytes: (partition, bytes) {sizes:?}");
    assert!(
        sizes.iter().all(|&(_, b)| b > 0),
        "empty replica logs: {sizes:?}"
    );
    assert!(
        outcome.failures.is_empty(),
        "failed records: {:?}",
        outcome.failures
    );
    let log = c.log(Node::Broker(old)).to_lowercase();
    assert!(
        log.contains("truncat"),
        "broker {old}'s log does not mention truncation (see {})",
        c.log_path(Node::Broker(old)).display()
    );
    c.assert_no_crashes().unwrap();
}

/// Proves: moving a partition to a different replica set (adding broker 4, removing broker 1)
/// while a producer writes to it loses nothing, costs the producer no delivery error and
/// stalls its writes for less than 2 s.
#[test]
fn reassignment_under_load() {
    let name = "reassignment_under_load";
    let Some(mut f) = Fixture::start(name, 4) else {
        return;
    };
    let w = f.workload();
    let c = &mut f.cluster;
    let target = vec![2, 3, 4];

    let fault_at = Instant::now();
    c.reassign(TOPIC, 0, &target).unwrap();
    let mut want = target.clone();
    want.sort_unstable();
    c.wait_for(
        "partition 0 moved to [2, 3, 4], all in sync",
        Duration::from_secs(45),
        |d| {
            let p = find_partition(d, TOPIC, 0)?;
            let mut isr = p.isr.clone();
            isr.sort_unstable();
            (p.replicas == target
                && isr == want
                && p.leader.is_some_and(|l| target.contains(&l))
                && p.adding_replicas.is_empty()
                && p.removing_replicas.is_empty())
            .then_some(())
        },
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = c.reassignments().unwrap();
        if r.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "reassignments still listed: {r:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "[{name}] partition 0 moved to {target:?} in {:?}",
        fault_at.elapsed()
    );
    w.wait_acks(Some(0), ACKS_FLOWING, Instant::now(), FAILOVER)
        .unwrap();
    let outcome = f.finish(name, w, fault_at, Some(0));
    // The old leader hands over and answers what it still holds (NOT_LEADER_OR_FOLLOWER), so
    // the client retries at once on the new leader: no request timeout's worth of silence.
    let (stall, _) = outcome.longest_stall(Some(0)).unwrap();
    assert!(
        stall < PLANNED_MOVE_STALL_MAX,
        "a planned move stalled writes to partition 0 for {stall:?}"
    );
    if !outcome.client_errors.is_empty() {
        println!(
            "[{name}] the producer saw {} client-level (retried) errors, e.g. {:?}",
            outcome.client_errors.len(),
            &outcome.client_errors[..outcome.client_errors.len().min(5)]
        );
    }
}

/// Proves the empty-disk double fault loses nothing that survives anywhere: the last in-sync
/// replica of a partition dies, comes back with an empty data directory, and is NOT elected
/// (which would make the two other replicas truncate every committed record to match its
/// empty log). The partition stays offline, the other replicas keep their logs byte for byte,
/// and when the operator allows an unclean election a replica that still has its log leads,
/// with every record acknowledged while all three were in sync.
#[test]
fn last_in_sync_replica_back_with_an_empty_disk() {
    const EMPTIED: &str = "emptied";
    let name = "last_in_sync_replica_back_with_an_empty_disk";
    let Some(mut f) = Fixture::start(name, 3) else {
        return;
    };
    let c = &mut f.cluster;
    c.create_topic(
        EMPTIED,
        1,
        3,
        &[("min.insync.replicas", "1")],
        &[vec![1, 2, 3]],
    )
    .unwrap();
    // Phase 1: records committed on all three replicas.
    let w = Workload::start(&c.bootstrap(), EMPTIED, 1, INTERVAL).unwrap();
    w.wait_acks_everywhere(200, Instant::now(), Duration::from_secs(20))
        .unwrap();
    let committed = w.finish(FINISH).unwrap();
    assert!(committed.failures.is_empty(), "{:?}", committed.failures);
    c.wait_replicas_identical(EMPTIED, REPLICAS_AGREE).unwrap();

    // 2 and 3 die: 1 is the ISR alone and acknowledges records only it holds.
    c.kill9(Node::Broker(2)).unwrap();
    c.kill9(Node::Broker(3)).unwrap();
    c.wait_for("the ISR shrunk to broker 1", FAILOVER, |d| {
        let p = find_partition(d, EMPTIED, 0)?;
        (p.leader == Some(1) && p.isr == [1]).then_some(())
    })
    .unwrap();
    let kept: Vec<Vec<u8>> = [2, 3]
        .iter()
        .map(|&b| c.replica_log(b, EMPTIED, 0).unwrap())
        .collect();
    let alone: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", c.kafka_addr(1))
        .set("acks", "all")
        .set("message.timeout.ms", "10000")
        .create()
        .unwrap();
    for i in 0..20 {
        let key = format!("k{i}");
        let record = FutureRecord::to(EMPTIED)
            .partition(0)
            .payload("only-on-1")
            .key(&key);
        c.block_on(alone.send(record, Timeout::After(Duration::from_secs(10))))
            .map_err(|(e, _)| e)
            .expect("acknowledged by broker 1 alone");
    }
    drop(alone);

    // 1 dies and its disk is lost; all three come back.
    let fault_at = Instant::now();
    c.kill9(Node::Broker(1)).unwrap();
    std::fs::remove_dir_all(c.dir().join(Node::Broker(1).to_string())).unwrap();
    for b in [2, 3, 1] {
        c.restart(Node::Broker(b)).unwrap();
    }
    // Every broker is unfenced: each unfencing was a chance to elect, so the outcome is final.
    c.wait_brokers_ready(REJOIN).unwrap();
    let p = c.partition(EMPTIED, 0).unwrap();
    assert_eq!(
        (p.leader, p.isr.as_slice()),
        (None, &[][..]),
        "broker 1 came back empty and must not lead: {p:?}"
    );
    for (b, before) in [2, 3].iter().zip(&kept) {
        let now = c.replica_log(*b, EMPTIED, 0).unwrap();
        assert!(
            now == *before,
            "broker {b}'s log changed while offline: {} bytes before, {} after",
            before.len(),
            now.len()
        );
    }
    println!(
        "[{name}] broker 1 back empty after {:?}: partition offline, replicas 2 and 3 intact",
        fault_at.elapsed()
    );

    // The operator's choice: an unclean election. It picks a replica that has its log.
    c.admin_call("AlterConfigs", |mut a| async move {
        a.alter_configs(weir_proto::v1::AlterConfigsRequest {
            name: EMPTIED.into(),
            set: [("unclean.leader.election.enable".into(), "true".into())].into(),
            ..Default::default()
        })
        .await
    })
    .unwrap();
    let leader = c.wait_leader_not(EMPTIED, 0, -1, FAILOVER).unwrap();
    assert_ne!(leader, 1, "the empty replica was elected");
    let stored = read_all(&c.bootstrap(), EMPTIED, 1, FINISH).unwrap();
    let n = verify(&committed, &stored).unwrap();
    println!(
        "[{name}] broker {leader} leads; {n} records stored, every one committed while in sync"
    );
    // Broker 1 copies the log back and rejoins the ISR.
    c.wait_topic_in_sync(EMPTIED, REJOIN).unwrap();
    c.wait_replicas_identical(EMPTIED, REPLICAS_AGREE).unwrap();
    c.assert_no_crashes().unwrap();
}

/// A small tmpfs mounted over a broker's data directory, unmounted when dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: &std::path::Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(ok.success(), "mounting a tmpfs at {}", dir.display());
        SmallDisk(dir.to_path_buf())
    }

    /// Writes a filler file until the file system is full; returns its path.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        loop {
            match f.write_all(&chunk) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(28) => return path,
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Proves: a full disk on one broker of three loses nothing and does not break an idempotent
/// producer. The broker takes its log directory offline at the first failed write (every
/// append refused alike with KAFKA_STORAGE_ERROR, said at ERROR), its leaderships move to
/// in-sync followers, the librdkafka producer carries on there with no fatal error, and once
/// space returns the broker comes back by itself and rejoins every ISR.
#[test]
fn disk_full_on_one_broker() {
    let name = "disk_full_on_one_broker";
    let Some(mut f) = Fixture::start(name, 3) else {
        return;
    };
    // Broker 2, the preferred leader of partition 1, restarts on a 256 MiB disk of its own
    // (an empty one: it copies its replicas back and rejoins the ISRs).
    let c = &mut f.cluster;
    c.kill9(Node::Broker(2)).unwrap();
    let dir = c.dir().join(Node::Broker(2).to_string());
    std::fs::remove_dir_all(&dir).unwrap();
    let disk = SmallDisk::mount(&dir, "256m");
    c.restart(Node::Broker(2)).unwrap();
    c.wait_brokers_ready(REJOIN).unwrap();
    c.wait_topic_in_sync(TOPIC, REJOIN).unwrap();
    c.wait_leader_is(TOPIC, 1, 2, REJOIN).unwrap();
    let w = f.workload();
    let c = &mut f.cluster;

    let fault_at = Instant::now();
    let filler = disk.fill();
    let new = c.wait_leader_not(TOPIC, 1, 2, FAILOVER).unwrap();
    println!(
        "[{name}] broker 2's disk is full; broker {new} leads partition 1 after {:?}",
        fault_at.elapsed()
    );
    w.wait_acks_everywhere(ACKS_FLOWING, Instant::now(), FAILOVER)
        .unwrap();
    let log = c.log(Node::Broker(2));
    assert!(
        log.contains("log directory offline") && log.contains("No space left on device"),
        "broker 2 did not say why at ERROR:\n{}",
        c.log_tails(40)
    );

    std::fs::remove_file(&filler).unwrap();
    let freed_at = Instant::now();
    c.wait_topic_in_sync(TOPIC, REJOIN).unwrap();
    println!(
        "[{name}] space back; broker 2 in every ISR again after {:?}",
        freed_at.elapsed()
    );
    f.finish(name, w, fault_at, Some(1));
    drop(disk);
}
