//! Log compaction through the Kafka protocol: a compacted topic created with small segments,
//! many values written for a few keys (plain and compressed batches, encoded by the Kafka
//! codec crate as a client would), and the broker's background cleaner observed from a
//! consumer's point of view.
// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use crate::common::TestBroker;
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const KEYS: usize = 4;
const ROUNDS: usize = 150;

fn tn(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.into()))
}

/// One batch: a record per key (or `key: None`), values naming the round.
fn batch(round: usize, compression: Compression, keyless: bool) -> Bytes {
    let records: Vec<Record> = (0..KEYS)
        .map(|k| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: k as i64,
            sequence: k as i32 - 1,
            timestamp: weir_model::Timestamp::now().get(),
            key: (!keyless).then(|| Bytes::from(format!("key-{k}"))),
            value: Some(Bytes::from(format!("value-{k}-round-{round}"))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("encode batch");
    buf.freeze()
}

/// Every record from offset 0 up to the high watermark, as a consumer reads them: fetching
/// from the offset after the last batch seen (which steps over the gaps compaction leaves).
async fn read_all(c: &mut crate::common::Client, topic: &str) -> (Vec<Record>, i64) {
    let mut out = Vec::new();
    let mut next = 0i64;
    loop {
        let p = c.fetch(topic, 0, next, 0, 1).await;
        assert_eq!(p.error_code, 0, "fetch at {next}");
        let hw = p.high_watermark;
        let Some(mut bytes) = p.records.filter(|b| !b.is_empty()) else {
            assert!(
                next >= hw,
                "no records at {next} below the high watermark {hw}"
            );
            return (out, hw);
        };
        // Batch headers give each batch's last offset even when its last records are gone
        // (baseOffset at 0, batchLength at 8, lastOffsetDelta at 23).
        let mut last = next - 1;
        let mut at = 0usize;
        while at + 27 <= bytes.len() {
            let b = &bytes[at..];
            let base = i64::from_be_bytes(b[0..8].try_into().unwrap());
            let len = i32::from_be_bytes(b[8..12].try_into().unwrap()) as usize;
            let delta = i32::from_be_bytes(b[23..27].try_into().unwrap()) as i64;
            last = last.max(base + delta);
            at += 12 + len;
        }
        for set in RecordBatchDecoder::decode_all(&mut bytes).expect("batches decode") {
            out.extend(set.records.into_iter().filter(|r| r.offset >= next));
        }
        next = last + 1;
        if next >= hw {
            return (out, hw);
        }
    }
}

/// Proves: on a topic with cleanup.policy=compact, a real client writing many values for a
/// few keys reads back, after the background cleaner ran, only a few records, among them the
/// newest value of every key, at the offsets they were written at, in increasing order; a
/// keyless record is refused with INVALID_RECORD (87); DescribeConfigs lists the compaction
/// keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_topic_keeps_the_newest_value_of_each_key() {
    let b = TestBroker::start_with(|c| {
        c.log_cleaner.backoff_ms = 20;
    })
    .await;
    let mut c = b.client().await;
    let topic = "compacted";
    let configs = [
        ("cleanup.policy", "compact"),
        ("segment.bytes", "2048"),
        ("min.cleanable.dirty.ratio", "0.01"),
        ("delete.retention.ms", "1000"),
    ];
    let req = CreateTopicsRequest::default().with_topics(vec![
        CreatableTopic::default()
            .with_name(tn(topic))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(StrBytes::from_static_str(k))
                            .with_value(Some(StrBytes::from_static_str(v)))
                    })
                    .collect(),
            ),
    ]);
    let resp: CreateTopicsResponse = c.request(ApiKey::CreateTopics, 7, &req).await;
    assert_eq!(
        resp.topics[0].error_code, 0,
        "{:?}",
        resp.topics[0].error_message
    );

    let req = DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str(topic))
            .with_configuration_keys(None),
    ]);
    let resp: DescribeConfigsResponse = c.request(ApiKey::DescribeConfigs, 4, &req).await;
    let described: BTreeMap<String, String> = resp.results[0]
        .configs
        .iter()
        .map(|e| {
            (
                e.name.to_string(),
                e.value.as_ref().map(|v| v.to_string()).unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        resp.results[0].error_code, 0,
        "{:?}",
        resp.results[0].error_message
    );
    assert_eq!(described["cleanup.policy"], "compact", "{described:?}");
    assert_eq!(described["min.cleanable.dirty.ratio"], "0.01");
    assert_eq!(described["delete.retention.ms"], "1000");
    assert_eq!(described["min.compaction.lag.ms"], "0");
    assert!(described.contains_key("max.compaction.lag.ms"));

    let (code, _) = c.produce(topic, 0, batch(0, Compression::None, true)).await;
    assert_eq!(code, 87, "a keyless record is INVALID_RECORD");

    // What was written at each offset, from the produce answers.
    let mut written: BTreeMap<i64, (String, String)> = BTreeMap::new();
    let codecs = [
        Compression::None,
        Compression::Lz4,
        Compression::Zstd,
        Compression::Gzip,
    ];
    for round in 0..ROUNDS {
        let (code, base) = c
            .produce(topic, 0, batch(round, codecs[round % codecs.len()], false))
            .await;
        assert_eq!(code, 0, "round {round}");
        for k in 0..KEYS {
            written.insert(
                base + k as i64,
                (format!("key-{k}"), format!("value-{k}-round-{round}")),
            );
        }
    }
    let total = written.len();

    // The cleaner runs every 20 ms; wait for it to have compacted the sealed segments.
    let deadline = Instant::now() + Duration::from_secs(60);
    let records = loop {
        let (records, hw) = read_all(&mut c, topic).await;
        assert_eq!(hw, total as i64, "the log end never moves");
        if records.len() <= total / 5 {
            break records;
        }
        assert!(
            Instant::now() < deadline,
            "still {} of {total} records after 60 s",
            records.len()
        );
    };
    for w in records.windows(2) {
        assert!(w[0].offset < w[1].offset, "offsets increase");
    }
    let mut newest: BTreeMap<String, String> = BTreeMap::new();
    for r in &records {
        let (k, v) = &written[&r.offset];
        let key = String::from_utf8(r.key.clone().unwrap().to_vec()).unwrap();
        let value = String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap();
        assert_eq!((&key, &value), (k, v), "offset {}", r.offset);
        newest.insert(key, value);
    }
    for k in 0..KEYS {
        assert_eq!(
            newest.get(&format!("key-{k}")),
            Some(&format!("value-{k}-round-{}", ROUNDS - 1)),
            "the newest value of key-{k}"
        );
    }
    b.stop().await;
}
