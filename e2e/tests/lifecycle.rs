//! `weir dev` as a user runs it: it says where it listens, stops cleanly on Ctrl-C (SIGINT)
//! and SIGTERM, and comes back with everything it had.
#![allow(clippy::unwrap_used)] // test code panics on purpose

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::process::Command;
use std::time::{Duration, Instant};
use weir_e2e::{WeirProcess, free_port};

fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_exit(p: &mut WeirProcess, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = p.child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "weir did not exit within {timeout:?}"
        );
        std::thread::park_timeout(Duration::from_millis(10));
    }
}

/// Proves: SIGINT and SIGTERM both end `weir dev` with exit code 0 after flushing, the startup
/// message tells the user how to connect, and records are all there after a restart.
#[test]
fn ctrl_c_and_sigterm_stop_cleanly_and_keep_data() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let mut weir = WeirProcess::start(&data, port, &[]).unwrap();
    let bootstrap = weir.bootstrap();

    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("acks", "all")
        .create()
        .unwrap();
    for i in 0..1000 {
        producer
            .send(BaseRecord::<(), _>::to("life").payload(&format!("{i}")))
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    drop(producer);

    for sig in ["INT", "TERM"] {
        signal(weir.child.id(), sig);
        let status = wait_exit(&mut weir, Duration::from_secs(20));
        assert!(status.success(), "SIG{sig}: exit status {status}");
        let log = std::fs::read_to_string(data.with_extension("log")).unwrap();
        assert!(
            log.contains(&format!("kcat -b {bootstrap} -L")),
            "startup says how to connect:\n{log}"
        );
        assert!(
            log.contains("stopped cleanly"),
            "SIG{sig}: shutdown is reported:\n{log}"
        );
        weir.restart().unwrap();
    }

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "weir-e2e-unused")
        .create()
        .unwrap();
    let (low, high) = consumer
        .fetch_watermarks("life", 0, Duration::from_secs(10))
        .unwrap();
    assert_eq!(
        (low, high),
        (0, 1000),
        "all records are still there after two restarts"
    );
}
