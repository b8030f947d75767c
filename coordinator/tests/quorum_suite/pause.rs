//! A real `weir-coordinator` process stopped with SIGSTOP and resumed with SIGCONT: a pause is
//! not silence from the brokers.

#![allow(clippy::unwrap_used)] // test code panics on purpose

use crate::common::*;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);
/// Longer than the session timeout below, so every lease looks expired on resume.
const PAUSE: Duration = Duration::from_secs(3);

/// The coordinator's "fencing" log lines.
fn fencings(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("broker lease expired; fencing"))
        .collect()
}

/// A leader paused (SIGSTOP) for three times the session timeout fences, on resume, no broker
/// that heartbeated before the pause and heartbeats again after; a broker that stays silent
/// after the resume is still fenced. A single voter stays leader through its pause, so a
/// wrong fence would commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_fences_only_brokers_silent_after_it_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_port_addr();
    let args = [
        "--broker-session-timeout-ms",
        "1000",
        "--heartbeat-interval-ms",
        "200",
    ];
    let args = args.map(String::from);
    let mut coordinator = Proc::new(1, &addr, dir.path(), &format!("1={addr}"), &args);
    coordinator.start();
    wait_ready(&addr).await;

    let e1 = register_broker(&addr, 1).await;
    let e2 = register_broker(&addr, 2).await;
    let beats = [
        spawn_heartbeats(addr.clone(), 1, e1),
        spawn_heartbeats(addr.clone(), 2, e2),
    ];
    wait_for("both brokers unfenced", WAIT, || async {
        let d = describe(&addr).await?;
        (d.brokers.len() == 2 && d.brokers.iter().all(|b| !b.fenced)).then_some(())
    })
    .await;
    for b in beats {
        b.abort();
    }
    // Both brokers' last heartbeats just before the pause.
    let mut client = control(&addr).await;
    for (id, epoch) in [(1, e1), (2, e2)] {
        let r = heartbeat(&mut client, id, epoch).await.unwrap();
        assert!(!r.fenced && r.error.is_none(), "{r:?}");
    }

    coordinator.signal("STOP");
    // The stimulus itself: the process must stay stopped this long.
    tokio::time::sleep(PAUSE).await;
    coordinator.signal("CONT");
    let beats = spawn_heartbeats(addr.clone(), 1, e1);

    // Broker 2 stays silent after the resume: fenced a session timeout later.
    wait_for("the silent broker fenced", WAIT, || async {
        let d = describe(&addr).await?;
        d.brokers.iter().find(|b| b.id == 2)?.fenced.then_some(())
    })
    .await;
    let d = describe(&addr).await.unwrap();
    assert!(!d.brokers.iter().find(|b| b.id == 1).unwrap().fenced);
    let log = coordinator.log();
    let fenced = fencings(&log);
    assert!(
        fenced.iter().all(|l| l.contains("broker=2")),
        "only the silent broker is fenced, but: {fenced:#?}"
    );
    assert!(log.contains("(paused?)"), "the pause was noticed:\n{log}");
    beats.abort();
    assert!(coordinator.terminate().success());
}
