//! Hostile clients against a live broker: fetches that repeat a partition and ask for
//! gigabytes, frames announced and never sent, garbage inside every codec, and Metadata
//! requests naming 100,000 topics. While each runs, a canary producer on its own connection
//! must finish its produce requests within a deadline, and the memory the broker takes must
//! stay under a ceiling.
//!
//! The broker runs in this test process (as in the other broker tests), so memory is the
//! process's peak RSS: each test resets the kernel's high-water mark (`/proc/self/clear_refs`,
//! value 5) and reads `VmHWM` after the hostile traffic, so the growth it asserts is the
//! broker's (plus the test clients', which keep little). Tests take a lock so that one test's
//! traffic does not count against another's ceiling.
#![allow(clippy::unwrap_used)] // test helpers panic on purpose

mod common;

use bytes::{BufMut, Bytes, BytesMut};
use common::{Client, TestBroker, batch};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use weir_model::limits::{
    AUTO_CREATE_TOPICS_PER_REQUEST_MAX, FETCH_BYTES_MAX, FRAME_READ_MS_MAX,
    METADATA_REQUEST_TOPICS_MAX,
};

/// One test at a time: the memory ceilings are process-wide.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const CANARY_TOPIC: &str = "canary";
/// Produce requests the canary must complete while hostile traffic runs.
const CANARY_REQUESTS: usize = 50;
/// Time the canary has for them; an unloaded broker needs well under a second.
const CANARY_DEADLINE: Duration = Duration::from_secs(20);

/// Resets this process's peak RSS to its current RSS and returns it, in bytes.
fn reset_peak_rss() -> u64 {
    std::fs::write("/proc/self/clear_refs", "5").expect("reset the RSS high-water mark");
    status_bytes("VmHWM:")
}

/// A `/proc/self/status` field given in kB, in bytes.
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    let kb: u64 = line
        .trim_start_matches(field)
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kb * 1024
}

/// Asserts that peak RSS rose by at most `ceiling` bytes since `base`.
fn assert_peak_growth_below(base: u64, ceiling: u64, what: &str) {
    let peak = status_bytes("VmHWM:");
    let grew = peak.saturating_sub(base);
    eprintln!("{what}: peak RSS grew by {} MiB", grew >> 20);
    assert!(
        grew <= ceiling,
        "{what}: peak RSS grew by {} MiB, over the {} MiB ceiling",
        grew >> 20,
        ceiling >> 20
    );
}

/// Starts a broker with the canary topic in place.
async fn broker() -> TestBroker {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    c.create_topic(CANARY_TOPIC, 1).await;
    b
}

/// Produces [`CANARY_REQUESTS`] batches on a fresh connection; panics past the deadline.
async fn canary(addr: SocketAddr) -> Duration {
    let started = Instant::now();
    let run = async {
        let mut c = Client::connect(addr).await;
        for i in 0..CANARY_REQUESTS {
            let (code, _) = c
                .produce(CANARY_TOPIC, 0, batch(1, i as i64, Compression::None))
                .await;
            assert_eq!(code, 0, "canary produce {i}");
        }
    };
    tokio::time::timeout(CANARY_DEADLINE, run)
        .await
        .unwrap_or_else(|_| panic!("the canary did not finish within {CANARY_DEADLINE:?}"));
    let took = started.elapsed();
    eprintln!("canary: {CANARY_REQUESTS} produce requests in {took:?}");
    took
}

/// A batch of `n` records with `value_bytes`-byte values.
fn big_batch(n: usize, value_bytes: usize) -> Bytes {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32 - 1,
            timestamp: 1,
            key: None,
            value: Some(Bytes::from(vec![b'x'; value_bytes])),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
}

/// Proves: a fetch that lists one partition hundreds of times and asks for i32::MAX bytes
/// reads that partition once, within the clamped sizes; many at once leave the broker's
/// memory bounded and the canary served. (Before the fix each such fetch read the partition
/// once per listing: 4 concurrent fetches here took well over a gigabyte.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_repeating_a_partition_with_huge_sizes_read_it_once() {
    let _serial = SERIAL.lock().await;
    let b = broker().await;
    let mut c = b.client().await;
    c.create_topic("big", 1).await;
    // 8 batches of 256 KiB: 2 MiB in the partition.
    for _ in 0..8 {
        assert_eq!(c.produce("big", 0, big_batch(1, 256 * 1024)).await.0, 0);
    }
    const LISTINGS: usize = 150;
    const FETCHES: usize = 6;
    let req = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(i32::MAX)
        .with_topics(
            (0..3)
                .map(|_| {
                    FetchTopic::default()
                        .with_topic(TopicName(StrBytes::from_static_str("big")))
                        .with_partitions(
                            (0..LISTINGS / 3)
                                .map(|_| {
                                    FetchPartition::default()
                                        .with_partition(0)
                                        .with_fetch_offset(0)
                                        .with_partition_max_bytes(i32::MAX)
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
    let base = reset_peak_rss();
    let hostile = (0..FETCHES).map(|_| {
        let req = req.clone();
        let addr = b.addr;
        tokio::spawn(async move {
            let mut c = Client::connect(addr).await;
            for _ in 0..3 {
                let resp: FetchResponse = c.request(ApiKey::Fetch, 12, &req).await;
                assert_eq!(resp.responses.len(), 1, "the topic is answered once");
                let parts = &resp.responses[0].partitions;
                assert_eq!(parts.len(), 1, "the partition is answered once");
                assert_eq!(parts[0].error_code, 0);
                let bytes = parts[0].records.as_ref().map_or(0, |r| r.len());
                assert!(
                    bytes > 0 && bytes <= FETCH_BYTES_MAX as usize,
                    "{bytes} bytes"
                );
            }
        })
    });
    let hostile: Vec<_> = hostile.collect();
    canary(b.addr).await;
    for h in hostile {
        h.await.unwrap();
    }
    assert_peak_growth_below(base, 256 << 20, "repeated-partition fetches");
    b.stop().await;
}

/// Proves: a request's `max_bytes` bounds the batches one response holds, over all its
/// partitions, with the first batch allowed past it (KIP-74).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_response_holds_at_most_max_bytes_over_all_partitions() {
    let _serial = SERIAL.lock().await;
    let b = broker().await;
    let mut c = b.client().await;
    c.create_topic("wide", 4).await;
    for p in 0..4 {
        for _ in 0..4 {
            assert_eq!(c.produce("wide", p, big_batch(1, 64 * 1024)).await.0, 0);
        }
    }
    let fetch = |max_bytes: i32| {
        FetchRequest::default()
            .with_max_bytes(max_bytes)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_static_str("wide")))
                    .with_partitions(
                        (0..4)
                            .map(|p| {
                                FetchPartition::default()
                                    .with_partition(p)
                                    .with_partition_max_bytes(i32::MAX)
                            })
                            .collect(),
                    ),
            ])
    };
    let total = |r: &FetchResponse| -> usize {
        r.responses[0]
            .partitions
            .iter()
            .map(|p| p.records.as_ref().map_or(0, |r| r.len()))
            .sum()
    };
    let r: FetchResponse = c.request(ApiKey::Fetch, 12, &fetch(300 * 1024)).await;
    assert!(total(&r) <= 300 * 1024, "{} bytes", total(&r));
    assert!(total(&r) >= 200 * 1024, "{} bytes", total(&r));
    // Zero (or less) still returns the first batch, and only it.
    let r: FetchResponse = c.request(ApiKey::Fetch, 12, &fetch(0)).await;
    let batch = total(&r);
    assert!(batch > 64 * 1024 && batch < 65 * 1024, "{batch} bytes");
    let r: FetchResponse = c.request(ApiKey::Fetch, 12, &fetch(-1)).await;
    assert_eq!(total(&r), batch);
    b.stop().await;
}

/// Proves: connections that announce 100 MiB frames and send a few bytes take neither the
/// shared read budget nor memory for the announced size, the canary is served meanwhile, and
/// each is closed once its frame is overdue. (Before the fix eleven such connections took the
/// whole 1 GiB budget and every other client waited.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_announced_and_never_sent_neither_stall_others_nor_stay_open() {
    let _serial = SERIAL.lock().await;
    let b = broker().await;
    const STALLED: usize = 24;
    let base = reset_peak_rss();
    let mut stalled = Vec::new();
    for _ in 0..STALLED {
        let mut s = TcpStream::connect(b.addr).await.unwrap();
        s.write_all(&(100i32 * 1024 * 1024).to_be_bytes())
            .await
            .unwrap();
        s.write_all(&[7u8; 44]).await.unwrap();
        stalled.push(s);
    }
    let started = Instant::now();
    canary(b.addr).await;
    assert_peak_growth_below(base, 64 << 20, "stalled frames");
    // Each stalled connection is closed by the broker within the frame deadline.
    let limit = Duration::from_millis(FRAME_READ_MS_MAX) + Duration::from_secs(10);
    for s in &mut stalled {
        let mut buf = [0u8; 8];
        let left = limit.saturating_sub(started.elapsed());
        let n = tokio::time::timeout(left, s.read(&mut buf))
            .await
            .expect("a stalled frame's connection is closed within the frame deadline");
        assert!(matches!(n, Ok(0) | Err(_)), "closed, not answered");
    }
    let closed_after = started.elapsed();
    eprintln!("stalled connections closed after {closed_after:?}");
    assert!(
        closed_after + Duration::from_secs(1) >= Duration::from_millis(FRAME_READ_MS_MAX),
        "closed before the deadline ({closed_after:?})"
    );
    b.stop().await;
}

/// A tiny deterministic generator (xorshift64*), so a failure replays from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// A valid request header for `api` v`version` followed by `body`, framed.
fn garbage_frame(api: ApiKey, version: i16, body: &[u8]) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(77)
        .with_client_id(Some(StrBytes::from_static_str("hostile")));
    let mut b = BytesMut::new();
    header
        .encode(&mut b, api.request_header_version(version))
        .unwrap();
    b.put_slice(body);
    let mut f = (b.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(&b);
    f
}

/// Sends one frame, half-closes, and waits for an answer or a close. Err if neither comes.
async fn poke(addr: SocketAddr, frame: &[u8]) -> Result<(), String> {
    let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    s.write_all(frame).await.ok();
    s.shutdown().await.ok();
    let mut sink = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut sink))
        .await
        .map(|_| ())
        .map_err(|_| "no answer and no close within 10 s".to_string())
}

/// Proves: random bytes after a valid header, for every API and version the broker serves,
/// get an answer or a closed connection, never a hang or a crash, while the canary is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_inside_every_codec_is_answered_or_closed() {
    let _serial = SERIAL.lock().await;
    let b = TestBroker::start_with(|c| c.fetch_wait_ms_max = 1000).await;
    let mut c = b.client().await;
    c.create_topic(CANARY_TOPIC, 1).await;
    let base = reset_peak_rss();
    let addr = b.addr;
    let garbage = tokio::spawn(async move {
        let mut rng = Rng(0x5eed_cafe_f00d_0001);
        let mut sent = 0usize;
        for &(api, lo, hi) in weir_broker::api::SUPPORTED {
            for version in lo..=hi {
                for len in [0usize, 1, 3, 8, 17, 64, 300, 4096] {
                    let frame = garbage_frame(api, version, &rng.bytes(len));
                    poke(addr, &frame)
                        .await
                        .unwrap_or_else(|e| panic!("{api:?} v{version}, {len} bytes: {e}"));
                    sent += 1;
                }
            }
        }
        sent
    });
    canary(b.addr).await;
    let sent = garbage.await.unwrap();
    eprintln!("garbage frames: {sent}");
    canary(b.addr).await;
    assert_peak_growth_below(base, 128 << 20, "garbage in every codec");
    b.stop().await;
}

/// A Metadata v12 request naming `names`, auto-creation allowed.
fn metadata_naming(names: impl Iterator<Item = String>) -> MetadataRequest {
    MetadataRequest::default()
        .with_allow_auto_topic_creation(true)
        .with_topics(Some(
            names
                .map(|n| {
                    MetadataRequestTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(n))))
                })
                .collect(),
        ))
}

/// The topics the broker reports.
async fn topic_count(c: &mut Client) -> usize {
    let all: MetadataResponse = c
        .request(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(None),
        )
        .await;
    all.topics.len()
}

/// Proves: a Metadata request naming 100,000 topics is answered, auto-creates at most the
/// per-request limit, answers names past the per-request bound without looking them up, and
/// leaves the broker serving the canary. (Before the fix it created topics one by one until
/// the file-descriptor limit.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_naming_100000_topics_creates_at_most_the_limit() {
    let _serial = SERIAL.lock().await;
    let b = broker().await;
    let mut c = b.client().await;
    let before = topic_count(&mut c).await;
    let base = reset_peak_rss();
    const NAMED: usize = 100_000;
    let req = metadata_naming((0..NAMED).map(|i| format!("flood-{i}")));
    let started = Instant::now();
    let canary_run = tokio::spawn(canary(b.addr));
    let resp: MetadataResponse = tokio::time::timeout(
        Duration::from_secs(120),
        c.request(ApiKey::Metadata, 12, &req),
    )
    .await
    .expect("the flood is answered");
    eprintln!("100,000-topic Metadata answered in {:?}", started.elapsed());
    canary_run.await.unwrap();
    assert_eq!(resp.topics.len(), NAMED, "every name is answered");
    let created = resp.topics.iter().filter(|t| t.error_code == 0).count();
    let unknown = ResponseError::UnknownTopicOrPartition.code();
    let invalid = ResponseError::InvalidRequest.code();
    assert_eq!(created, AUTO_CREATE_TOPICS_PER_REQUEST_MAX);
    assert!(
        resp.topics[AUTO_CREATE_TOPICS_PER_REQUEST_MAX..METADATA_REQUEST_TOPICS_MAX]
            .iter()
            .all(|t| t.error_code == unknown)
    );
    assert!(
        resp.topics[METADATA_REQUEST_TOPICS_MAX..]
            .iter()
            .all(|t| t.error_code == invalid)
    );
    assert_eq!(
        topic_count(&mut c).await,
        before + AUTO_CREATE_TOPICS_PER_REQUEST_MAX
    );
    canary(b.addr).await;
    assert_peak_growth_below(base, 512 << 20, "metadata flood");
    b.stop().await;
}

/// Proves: when the client of a flooding Metadata request goes away, the broker stops
/// auto-creating for it instead of working through the names nobody will read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_creation_stops_when_the_client_leaves() {
    let _serial = SERIAL.lock().await;
    let b = broker().await;
    let mut c = b.client().await;
    let before = topic_count(&mut c).await;
    let req = metadata_naming((0..10_000).map(|i| format!("gone-{i}")));
    let mut leaver = Client::connect(b.addr).await;
    let frame = leaver.stream_frame(ApiKey::Metadata, 12, &req);
    leaver.send_raw(&frame).await;
    drop(leaver);
    // The count settles: wait until it has not moved for a second (bounded).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = (topic_count(&mut c).await, Instant::now());
    while last.1.elapsed() < Duration::from_secs(1) {
        assert!(Instant::now() < deadline, "topic creation never settled");
        tokio::time::sleep(Duration::from_millis(100)).await; // polling interval
        let n = topic_count(&mut c).await;
        if n != last.0 {
            last = (n, Instant::now());
        }
    }
    let created = last.0 - before;
    eprintln!("created for a client that left: {created}");
    assert!(
        created < AUTO_CREATE_TOPICS_PER_REQUEST_MAX / 4,
        "{created} topics created for a client that left"
    );
    canary(b.addr).await;
    b.stop().await;
}
