//! Harness for the `weir` binary's integration tests: a cluster to talk to, and a way to run
//! the binary against it with a bound on its run time.
//!
//! The cluster is `WEIR_TEST_BOOTSTRAP` when set (for example the reference Apache Kafka from
//! `scripts/kafka-reference.sh`); otherwise each test starts its own `weir dev` on a free port
//! with a temporary data folder, and stops it when the test ends.

#![allow(dead_code)] // Each test binary uses a different part of the harness.

use std::io::Write;
use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const WEIR: &str = env!("CARGO_BIN_EXE_weir");
/// Bound on one `weir` invocation.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on `weir dev` becoming ready.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often we check a child process or a condition.
const CHECK_INTERVAL: Duration = Duration::from_millis(20);

pub struct Cluster {
    pub bootstrap: String,
    dev: Option<Child>,
    _data: Option<tempfile::TempDir>,
}

impl Cluster {
    pub fn start() -> Cluster {
        if let Ok(bootstrap) = std::env::var("WEIR_TEST_BOOTSTRAP") {
            return Cluster {
                bootstrap,
                dev: None,
                _data: None,
            };
        }
        let data = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let bootstrap = format!("127.0.0.1:{port}");
        let dev = Command::new(WEIR)
            .args(["dev", "--kafka-addr", &bootstrap, "--data-dir"])
            .arg(data.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start weir dev");
        let mut cluster = Cluster {
            bootstrap,
            dev: Some(dev),
            _data: Some(data),
        };
        cluster.wait_ready();
        cluster
    }

    /// Waits until `weir topic list` answers, or the dev process exits.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(dev) = self.dev.as_mut()
                && let Ok(Some(status)) = dev.try_wait()
            {
                panic!("weir dev exited before it was ready: {status}");
            }
            let out = self.weir(&["topic", "list", "--request-timeout-ms", "1000"]);
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "weir dev on {} not ready in {STARTUP_TIMEOUT:?}: {}",
                self.bootstrap,
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(CHECK_INTERVAL);
        }
    }

    /// Runs `weir --brokers <cluster> ARGS`.
    pub fn weir(&self, args: &[&str]) -> Output {
        self.weir_with_stdin(args, b"")
    }

    pub fn weir_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut full = vec!["--brokers", &self.bootstrap];
        full.extend_from_slice(args);
        run_weir(&full, stdin)
    }

    /// Starts `weir --brokers <cluster> ARGS` with stdout piped, for commands that keep running.
    pub fn spawn(&self, args: &[&str]) -> Child {
        Command::new(WEIR)
            .args(["--brokers", &self.bootstrap])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn weir")
    }

    /// Runs `weir` and asserts that it succeeded; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_with_stdin(args, b"")
    }

    pub fn ok_with_stdin(&self, args: &[&str], stdin: &[u8]) -> String {
        let out = self.weir_with_stdin(args, stdin);
        assert_success(args, &out);
        String::from_utf8(out.stdout).expect("stdout is UTF-8")
    }

    /// Waits until `check` holds, polling; panics with `what` after `timeout`.
    pub fn wait_for(&self, what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(CHECK_INTERVAL);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut dev) = self.dev.take() {
            let _ = dev.kill();
            let _ = dev.wait();
        }
    }
}

pub fn assert_success(args: &[&str], out: &Output) {
    assert!(
        out.status.success(),
        "weir {args:?} failed with {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs the binary with `args` exactly, feeding `stdin`, killing it after [`COMMAND_TIMEOUT`].
pub fn run_weir(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(WEIR)
        .args(args)
        .env_remove("WEIR_BROKERS")
        .env_remove("WEIR_OUTPUT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn weir");
    let mut input = child.stdin.take().expect("stdin");
    let stdin = stdin.to_vec();
    // A writer thread, so a child that does not read stdin cannot block us.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let pid = child.id();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let out = child.wait_with_output();
        let _ = done_tx.send(());
        out
    });
    if done_rx.recv_timeout(COMMAND_TIMEOUT).is_err() {
        let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        panic!("weir {args:?} did not finish in {COMMAND_TIMEOUT:?}");
    }
    let _ = writer.join();
    waiter
        .join()
        .expect("waiter thread")
        .expect("wait for weir")
}

/// A topic name no other test (or earlier run against a shared cluster) uses.
pub fn unique_topic(label: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "cli-{label}-{}-{nanos:x}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

pub fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}
