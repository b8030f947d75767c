//! Real `weir-coordinator` processes killed with SIGKILL and restarted: a coordinator recovers
//! from its snapshot plus the log after it, and catches up with what it missed.

#![allow(clippy::unwrap_used)] // test code panics on purpose

use crate::common::*;
use std::path::Path;
use std::time::Duration;
use weir_proto::v1 as pb;

const WAIT: Duration = Duration::from_secs(20);
const SNAPSHOT_EVERY: u64 = 20;

/// The index in the restarted coordinator's "loaded snapshot at index N" line.
fn loaded_snapshot_index(log: &str) -> Option<u64> {
    let at = log.find("loaded snapshot at index ")? + "loaded snapshot at index ".len();
    log[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}

fn snapshot_file_index(dir: &Path) -> Option<u64> {
    let bytes = std::fs::read(dir.join("snapshot.json")).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v["meta"]["last_log_id"]["index"].as_u64()
}

async fn create_topics(addrs: &[String], names: impl Iterator<Item = String>) {
    for (i, name) in names.enumerate() {
        let addr = addrs[i % addrs.len()].clone();
        wait_for("a topic created", WAIT, || {
            let addr = addr.clone();
            let name = name.clone();
            async move {
                let mut client =
                    weir_proto::v1::admin_client::AdminClient::connect(format!("http://{addr}"))
                        .await
                        .ok()?;
                let r = client
                    .create_topic(create_topic_request(&name, Some(1), Some(1)))
                    .await
                    .ok()?
                    .into_inner();
                match r.error {
                    None => Some(()),
                    // A retry of a write that committed before its answer was lost.
                    Some(e) if e.code == 36 => Some(()),
                    Some(e) => panic!("creating {name}: {e:?}"),
                }
            }
        })
        .await;
    }
}

async fn wait_for_topics(addr: &str, count: usize) -> pb::DescribeClusterResponse {
    wait_for(&format!("{count} topics on {addr}"), WAIT, || async {
        let d = describe(addr).await?;
        (d.topics.len() == count).then_some(d)
    })
    .await
}

/// Waits for a leader other than `not`, as seen from `addr`.
async fn wait_for_leader_other_than(addr: &str, not: i32) -> i32 {
    wait_for("a new leader", WAIT, || async {
        let d = describe(addr).await?;
        d.coordinator_leader.filter(|&l| l >= 1 && l != not)
    })
    .await
}

/// Three coordinator processes with a snapshot every 20 entries: a killed follower, and then
/// a killed leader, each restart from their snapshot plus log and have every topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_restarts_from_snapshot_plus_log() {
    let dir = tempfile::tempdir().unwrap();
    let addrs: Vec<String> = (0..3).map(|_| free_port_addr()).collect();
    let peers = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={a}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut procs: Vec<Proc> = addrs
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            let snapshot_every =
                ["--snapshot-every", &SNAPSHOT_EVERY.to_string()].map(String::from);
            Proc::new(i as u64 + 1, addr, dir.path(), &peers, &snapshot_every)
        })
        .collect();
    for p in &mut procs {
        p.start();
    }
    let ready = wait_ready(&addrs[0]).await;
    let by_id = |id: i32| (id - 1) as usize;

    let epoch = register_broker(&addrs[0], 1).await;
    heartbeat_until_unfenced(&addrs[0], 1, epoch).await;
    create_topics(&addrs, (0..50).map(|i| format!("topic-{i:02}"))).await;
    for addr in &addrs {
        wait_for_topics(addr, 50).await;
    }

    // A follower killed with SIGKILL misses some writes, then recovers.
    let leader = describe(&addrs[0]).await.unwrap().coordinator_leader;
    let leader = leader.filter(|&l| l >= 1);
    assert!(leader.is_some(), "leader known: {ready:?}");
    let leader = leader.unwrap_or_default();
    let follower = by_id(leader) % 3; // the next id after the leader, 0-based
    procs[follower].kill9();
    let survivors: Vec<String> = (0..3)
        .filter(|i| *i != follower)
        .map(|i| addrs[i].clone())
        .collect();
    create_topics(&survivors, (50..55).map(|i| format!("topic-{i:02}"))).await;
    procs[follower].start();
    let d = wait_for_topics(&addrs[follower], 55).await;
    assert_eq!(d.cluster_id, ready.cluster_id);
    check_recovered_from_snapshot(&procs[follower]).await;

    // The leader killed with SIGKILL: another takes over, and the old one recovers.
    let leader = describe(&addrs[0]).await.unwrap().coordinator_leader;
    let leader = by_id(leader.expect("a coordinator leader"));
    procs[leader].kill9();
    let survivors: Vec<String> = (0..3)
        .filter(|i| *i != leader)
        .map(|i| addrs[i].clone())
        .collect();
    wait_for_leader_other_than(&survivors[0], leader as i32 + 1).await;
    create_topics(&survivors, (55..60).map(|i| format!("topic-{i:02}"))).await;
    procs[leader].start();
    let d = wait_for_topics(&addrs[leader], 60).await;
    assert!(d.topics.iter().any(|t| t.name == "topic-00"));
    assert!(d.topics.iter().any(|t| t.name == "topic-59"));
    check_recovered_from_snapshot(&procs[leader]).await;

    // SIGTERM stops a coordinator cleanly.
    for p in &mut procs {
        let status = p.terminate();
        assert!(
            status.success(),
            "coordinator {} exited with {status}",
            p.id
        );
    }
}

/// The restarted coordinator's log says it loaded a snapshot at an index past the start, and
/// its data directory holds that snapshot (or a later one).
async fn check_recovered_from_snapshot(p: &Proc) {
    let loaded = wait_for("the 'loaded snapshot' log line", WAIT, || async {
        loaded_snapshot_index(&p.log())
    })
    .await;
    assert!(
        loaded >= SNAPSHOT_EVERY,
        "loaded snapshot at index {loaded}"
    );
    let on_disk = snapshot_file_index(&p.dir).expect("snapshot.json with an index");
    assert!(on_disk >= loaded);
    eprintln!(
        "coordinator {} loaded its snapshot at index {loaded}; snapshot.json is at {on_disk}",
        p.id
    );
}
