//! Bad input over a live connection: random frames, mutated valid requests, lying lengths.
//! Each one gets a response or a closed connection within a bounded time, never a crash or a
//! hang, and the broker keeps serving other clients and the data it already holds.
#![allow(clippy::unwrap_used)] // test helpers panic on purpose

use crate::common::{Client, TestBroker, batch};
use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::Compression;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longer than any wait the broker bounds, so that no answer can only mean a hang: a mutated
/// CreateTopics may ask for thousands of partitions, which the broker answers within two admin
/// waits (the coordinators' commit, then opening the logs before its metadata shows them).
const PATIENCE: Duration = Duration::from_millis(2 * weir_model::limits::ADMIN_WAIT_MS_MAX + 5_000);

/// Sends `payload` as one frame and waits for the broker to answer or close. Returns whether a
/// response came back (as opposed to a closed connection).
async fn poke(addr: SocketAddr, frame: &[u8]) -> Result<bool, String> {
    let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    s.write_all(frame).await.ok();
    // Half-close: the broker sees EOF after our frame, so a frame it is still waiting on ends.
    s.shutdown().await.ok();
    let mut sink = Vec::new();
    match tokio::time::timeout(PATIENCE, s.read_to_end(&mut sink)).await {
        Ok(_) => Ok(!sink.is_empty()),
        Err(_) => Err(format!(
            "no answer and no close within {PATIENCE:?} for a {}-byte frame",
            frame.len()
        )),
    }
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(body.len() + 4);
    f.extend_from_slice(&(body.len() as i32).to_be_bytes());
    f.extend_from_slice(body);
    f
}

fn encode_request<R: Encodable>(api: ApiKey, version: i16, req: &R) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(9)
        .with_client_id(Some(StrBytes::from_static_str("fuzz")));
    let mut b = BytesMut::new();
    header
        .encode(&mut b, api.request_header_version(version))
        .unwrap();
    req.encode(&mut b, version).unwrap();
    b.to_vec()
}

fn valid_requests() -> Vec<Vec<u8>> {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    let topic = TopicName(StrBytes::from_static_str("fuzz"));
    vec![
        encode_request(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()),
        encode_request(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(Some(vec![
                metadata_request::MetadataRequestTopic::default().with_name(Some(topic.clone())),
            ])),
        ),
        encode_request(
            ApiKey::Metadata,
            4,
            &MetadataRequest::default().with_topics(None),
        ),
        encode_request(
            ApiKey::Produce,
            9,
            &ProduceRequest::default().with_acks(1).with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(topic.clone())
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(batch(3, 5, Compression::None))),
                    ]),
            ]),
        ),
        encode_request(
            ApiKey::Produce,
            3,
            &ProduceRequest::default()
                .with_acks(-1)
                .with_topic_data(vec![
                    TopicProduceData::default()
                        .with_name(topic.clone())
                        .with_partition_data(vec![
                            PartitionProduceData::default()
                                .with_index(0)
                                .with_records(Some(batch(2, 5, Compression::Gzip))),
                        ]),
                ]),
        ),
        encode_request(
            ApiKey::Fetch,
            12,
            &FetchRequest::default()
                .with_max_wait_ms(10)
                .with_max_bytes(1 << 20)
                .with_topics(vec![
                    FetchTopic::default()
                        .with_topic(topic.clone())
                        .with_partitions(vec![
                            FetchPartition::default()
                                .with_partition(0)
                                .with_partition_max_bytes(1 << 20),
                        ]),
                ]),
        ),
        encode_request(
            ApiKey::CreateTopics,
            7,
            &CreateTopicsRequest::default().with_topics(vec![
                create_topics_request::CreatableTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("fuzz-new")))
                    .with_num_partitions(1)
                    .with_replication_factor(1),
            ]),
        ),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, xor: u8 },
    Truncate { len: usize },
    Insert { at: usize, bytes: Vec<u8> },
    Overwrite { at: usize, bytes: Vec<u8> },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(at, xor)| Mutation::Flip { at, xor }),
        any::<usize>().prop_map(|len| Mutation::Truncate { len }),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        // Lengths and counts: 0xff.. and 0x7f.. make huge or negative sizes.
        (
            any::<usize>(),
            prop_oneof![
                Just(vec![0x7f, 0xff, 0xff, 0xff]),
                Just(vec![0xff, 0xff, 0xff, 0xff]),
                Just(vec![0xff, 0xff, 0xff, 0xff, 0x0f])
            ]
        )
            .prop_map(|(at, bytes)| Mutation::Overwrite { at, bytes }),
    ]
}

fn apply(mut body: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        if body.is_empty() {
            break;
        }
        match m {
            Mutation::Flip { at, xor } => {
                let i = at % body.len();
                body[i] ^= xor;
            }
            Mutation::Truncate { len } => body.truncate(len % body.len()),
            Mutation::Insert { at, bytes } => {
                let i = at % body.len();
                body.splice(i..i, bytes.iter().copied());
            }
            Mutation::Overwrite { at, bytes } => {
                let i = at % body.len();
                for (k, b) in bytes.iter().enumerate() {
                    if let Some(slot) = body.get_mut(i + k) {
                        *slot = *b;
                    }
                }
            }
        }
    }
    body
}

async fn still_serves(addr: SocketAddr) {
    let mut c = Client::connect(addr).await;
    let r: ApiVersionsResponse = c
        .request(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    assert_eq!(r.error_code, 0);
    // The canary's name appears in no request the fuzzer mutates (a mutated API key can turn
    // a produce to "fuzz" into a legitimate DeleteRecords on it).
    let p = c.fetch("canary-topic", 0, 0, 0, 0).await;
    assert_eq!(p.error_code, 0);
    assert!(
        !p.records.unwrap().is_empty(),
        "data produced before the fuzzing is still served"
    );
}

/// Proves: random and mutated frames never crash or hang the broker, and a well-behaved client
/// on another connection is served throughout.
#[test]
fn random_and_mutated_requests_never_take_the_broker_down() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let broker = rt.block_on(async {
        // A mutated Fetch can ask to wait for ever; the broker caps it, and the cap here is
        // well inside `poke`'s patience so "no answer" can only mean a hang.
        let b = TestBroker::start_with(|c| c.fetch_wait_ms_max = 1000).await;
        let mut c = b.client().await;
        c.create_topic("fuzz", 1).await;
        c.create_topic("canary-topic", 1).await;
        let canary = batch(4, 1, Compression::None);
        assert_eq!(c.produce("canary-topic", 0, canary).await.0, 0);
        b
    });
    let addr = broker.addr;
    let valid = valid_requests();

    let mut runner = TestRunner::new(Config {
        cases: 3000,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (0..valid.len(), proptest::collection::vec(mutation(), 1..4));
    let answered = std::sync::atomic::AtomicUsize::new(0);
    let closed = std::sync::atomic::AtomicUsize::new(0);
    runner
        .run(&strategy, |(which, muts)| {
            let body = apply(valid[which].clone(), &muts);
            let got = rt
                .block_on(poke(addr, &framed(&body)))
                .map_err(TestCaseError::fail)?;
            let counter = if got { &answered } else { &closed };
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
    let (answered, closed) = (answered.into_inner(), closed.into_inner());
    eprintln!("mutated requests: {answered} answered, {closed} closed the connection");
    // Both paths were exercised: mutations the decoder accepts reach the handlers.
    assert!(
        answered > 20 && closed > 20,
        "{answered} answered, {closed} closed"
    );

    let mut runner = TestRunner::new(Config {
        cases: 1500,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&proptest::collection::vec(any::<u8>(), 0..512), |body| {
            rt.block_on(poke(addr, &framed(&body)))
                .map_err(TestCaseError::fail)?;
            Ok(())
        })
        .unwrap();

    rt.block_on(still_serves(addr));
    rt.block_on(broker.stop());
}

/// Proves: frame sizes outside 1..=request_bytes_max close the connection at once (no
/// allocation of the announced size), and a frame that never completes does not block others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_frame_sizes_are_refused() {
    let b = TestBroker::start_with(|c| c.request_bytes_max = 1024 * 1024).await;
    let mut c = b.client().await;
    c.create_topic("canary-topic", 1).await;
    let canary = batch(4, 1, Compression::None);
    assert_eq!(c.produce("canary-topic", 0, canary).await.0, 0);
    for size in [0i32, -1, i32::MIN, 1024 * 1024 + 1, i32::MAX] {
        let mut s = TcpStream::connect(b.addr).await.unwrap();
        s.write_all(&size.to_be_bytes()).await.unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("closed promptly");
        assert!(
            matches!(n, Ok(0) | Err(_)),
            "size {size}: connection should be closed"
        );
    }
    // A client that announces 1000 bytes and sends 10 keeps only its own connection waiting.
    let mut stuck = TcpStream::connect(b.addr).await.unwrap();
    stuck.write_all(&1000i32.to_be_bytes()).await.unwrap();
    stuck.write_all(&[0u8; 10]).await.unwrap();
    still_serves(b.addr).await;
    drop(stuck);

    // An array count of 2^31-1 in a Metadata v4 request: must not allocate for it.
    let mut body = BytesMut::new();
    body.put_i16(ApiKey::Metadata as i16);
    body.put_i16(4);
    body.put_i32(1);
    body.put_i16(-1);
    body.put_i32(i32::MAX);
    body.put_slice(&[0u8; 32]);
    poke(b.addr, &framed(&body)).await.unwrap();
    // And the same in a flexible (compact) version: unsigned varint 0xffffffff.
    let mut body = BytesMut::new();
    body.put_i16(ApiKey::Metadata as i16);
    body.put_i16(12);
    body.put_i32(2);
    body.put_i16(-1);
    body.put_u8(0); // header tagged fields
    body.put_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    body.put_slice(&[0u8; 32]);
    poke(b.addr, &framed(&body)).await.unwrap();
    still_serves(b.addr).await;
    b.stop().await;
}

/// Proves: past `connections_max` a new connection is closed at once, the ones already open
/// keep working, and a freed slot is usable again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_are_closed() {
    let b = TestBroker::start_with(|c| c.connections_max = 2).await;
    let mut first = b.client().await;
    let mut second = b.client().await;
    // Both are being served (a response proves the broker accepted and holds them).
    for c in [&mut first, &mut second] {
        let r: ApiVersionsResponse = c
            .request(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
            .await;
        assert_eq!(r.error_code, 0);
    }
    let mut third = TcpStream::connect(b.addr).await.unwrap();
    let mut buf = [0u8; 8];
    let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf))
        .await
        .expect("closed promptly");
    assert!(
        matches!(n, Ok(0) | Err(_)),
        "third connection should be closed"
    );
    let r: ApiVersionsResponse = first
        .request(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    assert_eq!(r.error_code, 0, "existing connections are unaffected");

    drop(second);
    // The slot frees when the broker notices the close; wait for that condition.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = Client::connect(b.addr).await;
        if let Ok(Ok(_)) = tokio::time::timeout(
            Duration::from_secs(2),
            c.request_bytes(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()),
        )
        .await
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a freed slot was never reusable"
        );
    }
    b.stop().await;
}
