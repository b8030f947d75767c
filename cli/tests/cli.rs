//! The `weir` binary against a real cluster: `WEIR_TEST_BOOTSTRAP`, or a `weir dev` each test
//! starts (see `common`).

mod common;

use common::{Cluster, assert_success, json, json_lines, run_weir, unique_topic};
use std::time::Duration;

fn topic_names(cluster: &Cluster) -> Vec<String> {
    let list = json(&cluster.ok(&["-o", "json", "topic", "list"]));
    list["topics"]
        .as_array()
        .expect("topics array")
        .iter()
        .map(|t| t["name"].as_str().expect("name").to_string())
        .collect()
}

fn config_value(describe: &serde_json::Value, name: &str) -> Option<(String, String)> {
    describe["configs"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
        .map(|c| {
            (
                c["value"].as_str().unwrap_or_default().to_string(),
                c["source"].as_str().unwrap_or_default().to_string(),
            )
        })
}

/// create, list, describe, alter (partitions and configs) and delete work end to end.
#[test]
fn topic_create_list_describe_alter_delete_round_trip() {
    let cluster = Cluster::start();
    let topic = unique_topic("admin");
    let t = topic.as_str();

    let created = json(&cluster.ok(&[
        "-o",
        "json",
        "topic",
        "create",
        t,
        "--partitions",
        "2",
        "--replication-factor",
        "1",
        "--config",
        "retention.ms=3600000",
    ]));
    assert_eq!(created["created"], true);
    assert!(topic_names(&cluster).contains(&topic));

    // Creating it again fails with a clear message, unless --if-not-exists.
    let again = cluster.weir(&["topic", "create", t]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    cluster.ok(&["topic", "create", t, "--if-not-exists"]);

    let d = json(&cluster.ok(&["-o", "json", "topic", "describe", t]));
    assert_eq!(d["partitions"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        d["partitions"][0]["replicas"].as_array().map(Vec::len),
        Some(1)
    );
    assert!(d["partitions"][0]["leader"].is_i64());
    assert_eq!(
        config_value(&d, "retention.ms"),
        Some(("3600000".to_string(), "topic".to_string()))
    );
    let table = cluster.ok(&["topic", "describe", t]);
    assert!(
        table.contains("PARTITION") && table.contains("retention.ms"),
        "{table}"
    );

    cluster.ok(&[
        "topic",
        "alter",
        t,
        "--partitions",
        "3",
        "--config",
        "retention.bytes=1048576",
        "--delete-config",
        "retention.ms",
    ]);
    let d = json(&cluster.ok(&["-o", "json", "topic", "describe", t]));
    assert_eq!(d["partitions"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        config_value(&d, "retention.bytes"),
        Some(("1048576".to_string(), "topic".to_string()))
    );
    let retention_ms = config_value(&d, "retention.ms");
    assert!(
        retention_ms
            .as_ref()
            .is_none_or(|(_, source)| source != "topic"),
        "retention.ms still set on the topic: {retention_ms:?}"
    );

    // Fewer partitions is refused before anything is sent.
    let shrink = cluster.weir(&["topic", "alter", t, "--partitions", "1"]);
    assert!(!shrink.status.success());
    assert!(String::from_utf8_lossy(&shrink.stderr).contains("never removed"));

    let deleted = json(&cluster.ok(&["-o", "json", "topic", "delete", t]));
    assert_eq!(deleted["deleted"], true);
    cluster.wait_for(
        "the deleted topic to leave the list",
        Duration::from_secs(30),
        || !topic_names(&cluster).contains(&topic),
    );
    let missing = cluster.weir(&["topic", "describe", t]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("does not exist"));
    cluster.ok(&["topic", "delete", t, "--if-exists"]);
}

/// Lines with keys and headers come back from consume with the same key, value and headers,
/// in order, and --count, offset:N and timestamp:MS select the right records.
#[test]
fn produce_lines_then_consume_them_back() {
    let cluster = Cluster::start();
    let topic = unique_topic("pc");
    let t = topic.as_str();
    cluster.ok(&[
        "topic",
        "create",
        t,
        "--partitions",
        "1",
        "--replication-factor",
        "1",
    ]);

    let first = cluster.weir_with_stdin(
        &[
            "-o",
            "json",
            "produce",
            "-t",
            t,
            "-K",
            ":",
            "-H",
            "source=test",
            "-H",
            "n=1",
        ],
        b"k1:v1\nk2:v2:with:colons\nno key here\n",
    );
    assert_success(&["produce"], &first);
    let summary = json(&String::from_utf8_lossy(&first.stderr));
    assert_eq!(summary["records"], 3);
    assert_eq!(summary["failed"], 0);
    assert_eq!(summary["partitions"][0]["first_offset"], 0);
    assert_eq!(summary["partitions"][0]["last_offset"], 2);

    let second =
        cluster.weir_with_stdin(&["produce", "-t", t, "--acks", "1"], b"later-1\nlater-2\n");
    assert_success(&["produce"], &second);
    assert!(String::from_utf8_lossy(&second.stderr).contains("2 record(s) produced"));

    // Without --count: everything up to the end, then exit.
    let all = json_lines(&cluster.ok(&["-o", "json", "consume", "-t", t, "--from", "beginning"]));
    assert_eq!(all.len(), 5, "{all:?}");
    let values: Vec<&str> = all
        .iter()
        .map(|r| r["value"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        values,
        ["v1", "v2:with:colons", "no key here", "later-1", "later-2"]
    );
    assert_eq!(all[0]["key"], "k1");
    assert_eq!(all[1]["key"], "k2");
    assert!(all[2]["key"].is_null());
    assert_eq!(
        all[0]["headers"],
        serde_json::json!([{"key": "source", "value": "test"}, {"key": "n", "value": "1"}])
    );
    assert_eq!(all[3]["headers"], serde_json::json!([]));
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r["offset"], i as u64);
        assert_eq!(r["partition"], 0);
        assert!(r["timestamp"].is_i64());
    }

    let two = json_lines(&cluster.ok(&["-o", "json", "consume", "-t", t, "--count", "2"]));
    assert_eq!(two.len(), 2);
    assert_eq!(two[1]["value"], "v2:with:colons");

    let from_offset =
        json_lines(&cluster.ok(&["-o", "json", "consume", "-t", t, "--from", "offset:3"]));
    assert_eq!(from_offset.len(), 2);
    assert_eq!(from_offset[0]["value"], "later-1");

    // The first record at or after the 4th record's timestamp is the first record with that
    // timestamp (client clocks may put several records in one millisecond).
    let ts = all[3]["timestamp"].as_i64().expect("timestamp");
    let expected: Vec<&serde_json::Value> = all
        .iter()
        .filter(|r| r["timestamp"].as_i64() >= Some(ts))
        .collect();
    let from_ts = json_lines(&cluster.ok(&[
        "-o",
        "json",
        "consume",
        "-t",
        t,
        "--from",
        &format!("timestamp:{ts}"),
    ]));
    assert_eq!(from_ts.iter().collect::<Vec<_>>(), expected);

    let from_end = cluster.ok(&["-o", "json", "consume", "-t", t, "--from", "end"]);
    assert!(from_end.trim().is_empty(), "{from_end}");

    // The table for people has one line per record after the header.
    let table = cluster.ok(&["consume", "-t", t, "-p", "0"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 6, "{table}");
    assert!(lines[0].starts_with("PARTITION"));
    assert!(
        lines[1].contains("k1") && lines[1].contains("source=test") && lines[1].ends_with("v1")
    );

    // Asking for more than there is ends with an error once --timeout-ms passes quietly.
    let short = cluster.weir(&["consume", "-t", t, "--count", "9", "--timeout-ms", "300"]);
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("received 5 of 9"));
}

/// Bad flag values are refused before any connection, with a message naming what is accepted.
#[test]
fn invalid_flags_fail_with_a_clear_message() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["produce", "-t", "x", "--acks", "2"],
            "acks must be 0, 1 or all",
        ),
        (
            &["consume", "-t", "x", "--from", "middle"],
            "beginning, end, offset:N or timestamp:MS",
        ),
        (
            &["consume", "-t", "x", "--from", "offset:abc"],
            "not a number",
        ),
        (
            &["topic", "create", "bad name"],
            "allowed are ASCII letters",
        ),
        (
            &["topic", "create", "x", "--partitions", "0"],
            "partitions must be 1",
        ),
        (
            &["topic", "create", "x", "--config", "novalue"],
            "expected KEY=VALUE",
        ),
        (
            &["--brokers", "localhost", "topic", "list"],
            "expected HOST:PORT",
        ),
        (
            &["-o", "yaml", "topic", "list"],
            "possible values: table, json",
        ),
        (&["topic", "alter", "x"], "required"),
        (
            &["bench", "produce", "--record-size", "0"],
            "record size must be 1",
        ),
        (
            &["bench", "produce", "--compression", "brotli"],
            "possible values",
        ),
    ];
    for (args, expected) in cases {
        let out = run_weir(args, b"");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "weir {args:?}: {stderr}");
        assert!(
            stderr.contains(expected),
            "weir {args:?}: expected {expected:?} in {stderr}"
        );
    }
}

/// A cluster that is not there is named, with what to try, well within the request timeout.
#[test]
fn unreachable_broker_is_reported_quickly() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let brokers = format!("127.0.0.1:{port}");
    let started = std::time::Instant::now();
    let out = run_weir(&["--brokers", &brokers, "topic", "list"], b"");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("could not reach {brokers}")) && stderr.contains("weir dev"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}

/// Errors about topics and partitions say what is missing.
#[test]
fn missing_topic_and_partition_are_named() {
    let cluster = Cluster::start();
    let topic = unique_topic("missing");
    let out = cluster.weir(&["consume", "-t", &topic]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));

    cluster.ok(&[
        "topic",
        "create",
        &topic,
        "--partitions",
        "1",
        "--replication-factor",
        "1",
    ]);
    let out = cluster.weir(&["consume", "-t", &topic, "--partition", "4"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("there is no partition 4"));
    cluster.ok(&["topic", "delete", &topic]);
}

/// A short bench run prints parseable JSON with throughput and latency quantiles, and the
/// consume bench reads back exactly what the produce bench wrote.
#[test]
fn bench_produce_then_consume_report_json() {
    let cluster = Cluster::start();
    let topic = unique_topic("bench");
    let t = topic.as_str();
    let produced = json(&cluster.ok(&[
        "-o",
        "json",
        "bench",
        "produce",
        "-t",
        t,
        "--records",
        "5000",
        "--record-size",
        "64",
        "--partitions",
        "2",
        "--replication-factor",
        "1",
        "--acks",
        "1",
        "--linger-ms",
        "2",
        "--batch-size",
        "65536",
        "--batch-records",
        "500",
        "--producers",
        "2",
        "--compression",
        "lz4",
    ]));
    assert_eq!(produced["mode"], "produce");
    assert_eq!(produced["records"], 5000);
    assert_eq!(produced["bytes"], 5000 * 64);
    assert_eq!(produced["failed"], 0);
    assert!(produced["records_per_sec"].as_f64() > Some(0.0));
    assert!(produced["mb_per_sec"].as_f64() > Some(0.0));
    let latency = &produced["latency_ms"];
    let (p50, p99, p999) = (
        latency["p50"].as_f64(),
        latency["p99"].as_f64(),
        latency["p99_9"].as_f64(),
    );
    assert!(p50 > Some(0.0) && p50 <= p99 && p99 <= p999, "{latency}");
    assert_eq!(produced["settings"]["partitions"], 2);
    assert_eq!(produced["settings"]["producers"], 2);

    let consumed = json(&cluster.ok(&["-o", "json", "bench", "consume", "-t", t]));
    assert_eq!(consumed["mode"], "consume");
    assert_eq!(consumed["records"], 5000);
    assert_eq!(consumed["bytes"], 5000 * 64);
    assert!(consumed["records_per_sec"].as_f64() > Some(0.0));

    let line = cluster.ok(&["bench", "consume", "-t", t, "--records", "100"]);
    assert!(line.starts_with("consume: 100 records"), "{line}");
    cluster.ok(&["topic", "delete", t]);
}

/// `--follow` prints records produced after it started, and Ctrl-C (SIGINT) ends it cleanly.
#[test]
fn follow_prints_new_records_until_interrupted() {
    use std::io::BufRead;
    let cluster = Cluster::start();
    let topic = unique_topic("follow");
    let t = topic.as_str();
    cluster.ok(&[
        "topic",
        "create",
        t,
        "--partitions",
        "1",
        "--replication-factor",
        "1",
    ]);

    let mut follower = cluster.spawn(&[
        "-o", "json", "consume", "-t", t, "--from", "end", "--follow",
    ]);
    let stdout = follower.stdout.take().expect("stdout");
    let (line_tx, line_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if line_tx.send(line).is_err() {
                break;
            }
        }
    });

    // The follower starts at the end as of its assignment, which we cannot observe from here;
    // so keep producing until one of our records shows up.
    let mut seen = None;
    for attempt in 0..100 {
        cluster.ok_with_stdin(
            &["produce", "-t", t],
            format!("record-{attempt}\n").as_bytes(),
        );
        if let Ok(line) = line_rx.recv_timeout(Duration::from_millis(500)) {
            seen = Some(line);
            break;
        }
    }
    let record = json(&seen.expect("the follower printed a record produced after it started"));
    assert!(
        record["value"]
            .as_str()
            .is_some_and(|v| v.starts_with("record-")),
        "{record}"
    );

    let pid = follower.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(follower.wait());
    });
    let status = done_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the follower stopped after SIGINT")
        .expect("wait");
    assert!(status.success(), "{status}");
    cluster.ok(&["topic", "delete", t]);
}
