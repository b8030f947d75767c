//! The broker over a real loopback socket: every API at every advertised version answers
//! with a response that decodes, and produce/fetch/list-offsets agree with each other.
#![allow(clippy::unwrap_used)] // test helpers panic on purpose

use crate::common::{TestBroker, batch, batch_with_producer};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use weir_broker::api::SUPPORTED;

fn sb(s: &str) -> kafka_protocol::protocol::StrBytes {
    kafka_protocol::protocol::StrBytes::from_string(s.to_string())
}

fn tn(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.into()))
}

/// Proves: ApiVersions lists exactly the table, and an unknown ApiVersions version gets the
/// v0-format answer with UNSUPPORTED_VERSION (KIP-511).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_versions_advertises_the_table_and_downgrades() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    for v in 0..=3 {
        let r: ApiVersionsResponse = c
            .request(ApiKey::ApiVersions, v, &ApiVersionsRequest::default())
            .await;
        assert_eq!(r.error_code, 0);
        assert_eq!(r.api_keys.len(), SUPPORTED.len());
        let produce = r
            .api_keys
            .iter()
            .find(|k| k.api_key == ApiKey::Produce as i16)
            .unwrap();
        assert_eq!((produce.min_version, produce.max_version), (0, 9));
    }
    // v4 is beyond our range: the answer comes in the v0 format.
    let mut bytes = c
        .request_bytes(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await
        .unwrap();
    let _ = <ApiVersionsResponse as kafka_protocol::protocol::Decodable>::decode(&mut bytes, 3)
        .unwrap();
    let mut raw = bytes::BytesMut::new();
    use bytes::BufMut;
    // size, api key 18, version 9, correlation id 77, client id null
    raw.put_i32(10);
    raw.put_i16(18);
    raw.put_i16(9);
    raw.put_i32(77);
    raw.put_i16(-1);
    c.send_raw(&raw).await;
    let mut resp = c.read_frame().await.unwrap();
    use bytes::Buf;
    assert_eq!(resp.get_i32(), 77);
    let r =
        <ApiVersionsResponse as kafka_protocol::protocol::Decodable>::decode(&mut resp, 0).unwrap();
    assert_eq!(r.error_code, ResponseError::UnsupportedVersion.code());
    assert!(!r.api_keys.is_empty());
    b.stop().await;
}

/// Proves: a produced batch is fetched back byte for byte (offsets assigned in place), for
/// every compression codec, and a fetch from inside a batch returns the whole batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_then_fetch_serves_stored_bytes() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    c.create_topic("t", 1).await;
    let mut expected_offset = 0;
    for codec in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let sent = batch(10, 1_700_000_000_000, codec);
        let (err, base) = c.produce("t", 0, sent.clone()).await;
        assert_eq!(err, 0, "{codec:?}");
        assert_eq!(base, expected_offset);
        // Fetch from the middle of the batch: the whole batch comes back.
        let p = c.fetch("t", 0, expected_offset + 5, 0, 0).await;
        assert_eq!(p.error_code, 0);
        let got = p.records.unwrap();
        assert_eq!(
            &got[8..],
            &sent[8..sent.len()],
            "stored bytes differ past the base offset ({codec:?})"
        );
        let mut g = got.clone();
        let decoded = RecordBatchDecoder::decode(&mut g).unwrap();
        assert_eq!(decoded.records.len(), 10);
        assert_eq!(decoded.records[0].offset, expected_offset);
        assert_eq!(decoded.records[9].value.as_deref(), Some(&b"value-9"[..]));
        expected_offset += 10;
    }
    let p = c.fetch("t", 0, expected_offset + 1, 0, 0).await;
    assert_eq!(p.error_code, ResponseError::OffsetOutOfRange.code());
    b.stop().await;
}

/// Proves: a fetch at the log end waits for an append (long poll) and answers as soon as one
/// arrives, well before max.wait.ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_long_poll_wakes_on_append() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    c.create_topic("lp", 1).await;
    let addr = b.addr;
    let waiter = tokio::spawn(async move {
        let mut c2 = crate::common::Client::connect(addr).await;
        let started = std::time::Instant::now();
        let p = c2.fetch("lp", 0, 0, 20_000, 1).await;
        (p, started.elapsed())
    });
    // The waiter's fetch must be parked before we produce; give it a moment by polling the
    // broker with a metadata request (ordering on a different connection is not guaranteed, so
    // the assertion below only requires the answer to come well before the 20 s deadline).
    let _: MetadataResponse = c
        .request(ApiKey::Metadata, 12, &MetadataRequest::default())
        .await;
    let (err, _) = c.produce("lp", 0, batch(3, 1, Compression::None)).await;
    assert_eq!(err, 0);
    let (p, waited) = waiter.await.unwrap();
    assert_eq!(p.error_code, 0);
    assert!(!p.records.unwrap().is_empty());
    assert!(
        waited < std::time::Duration::from_secs(15),
        "long poll woke after {waited:?}"
    );
    b.stop().await;
}

/// Proves: idempotent producer state: a retried batch is acknowledged with its first offset
/// and not appended twice; a gap in sequences is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_produce_dedupes_and_refuses_gaps() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    c.create_topic("idem", 1).await;
    let r: InitProducerIdResponse = c
        .request(
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60000)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        )
        .await;
    assert_eq!(r.error_code, 0);
    let pid = r.producer_id.0;
    let first = batch_with_producer(5, 1, Compression::None, pid, 0, 0);
    assert_eq!(c.produce("idem", 0, first.clone()).await, (0, 0));
    assert_eq!(
        c.produce("idem", 0, first).await,
        (0, 0),
        "duplicate gets its original offset"
    );
    let second = batch_with_producer(5, 1, Compression::None, pid, 0, 5);
    assert_eq!(c.produce("idem", 0, second).await, (0, 5));
    let gap = batch_with_producer(5, 1, Compression::None, pid, 0, 20);
    let (err, _) = c.produce("idem", 0, gap).await;
    assert_eq!(err, ResponseError::OutOfOrderSequenceNumber.code());
    let p = c.fetch("idem", 0, 0, 0, 0).await;
    let mut recs = p.records.unwrap();
    let mut n = 0;
    while !recs.is_empty() {
        n += RecordBatchDecoder::decode(&mut recs).unwrap().records.len();
    }
    assert_eq!(n, 10, "exactly two batches stored");
    b.stop().await;
}

/// Proves: every advertised version of every API gets a response that decodes in that version
/// (catches handlers that set a field their version does not have).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_version_answers() {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    c.create_topic("all", 2).await;
    c.produce("all", 0, batch(4, 1000, Compression::None)).await;
    for &(api, lo, hi) in SUPPORTED {
        let lo = if api == ApiKey::Produce { 3 } else { lo };
        for v in lo..=hi {
            macro_rules! check {
                ($req:expr, $resp:ty) => {{
                    let _r: $resp = c.request(api, v, &$req).await;
                }};
            }
            match api {
                ApiKey::ApiVersions => check!(ApiVersionsRequest::default(), ApiVersionsResponse),
                ApiKey::Metadata => {
                    let topics = if v == 0 { Some(vec![]) } else { None };
                    check!(
                        MetadataRequest::default().with_topics(topics),
                        MetadataResponse
                    );
                    let one = vec![
                        metadata_request::MetadataRequestTopic::default()
                            .with_name(Some(tn("all"))),
                    ];
                    check!(
                        MetadataRequest::default().with_topics(Some(one)),
                        MetadataResponse
                    );
                }
                ApiKey::Produce => {
                    let (err, _) = c.produce("all", 1, batch(1, 1000, Compression::None)).await;
                    assert_eq!(err, 0);
                    use kafka_protocol::messages::produce_request::{
                        PartitionProduceData, TopicProduceData,
                    };
                    let req = ProduceRequest::default().with_acks(1).with_topic_data(vec![
                        TopicProduceData::default()
                            .with_name(tn("all"))
                            .with_partition_data(vec![
                                PartitionProduceData::default()
                                    .with_index(1)
                                    .with_records(Some(batch(1, 1000, Compression::None))),
                            ]),
                    ]);
                    check!(req, ProduceResponse);
                }
                ApiKey::Fetch => {
                    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
                    let req = FetchRequest::default()
                        .with_max_bytes(1 << 20)
                        .with_topics(vec![
                            FetchTopic::default()
                                .with_topic(tn("all"))
                                .with_partitions(vec![
                                    FetchPartition::default()
                                        .with_partition(0)
                                        .with_partition_max_bytes(1 << 20),
                                ]),
                        ]);
                    check!(req, FetchResponse);
                }
                ApiKey::ListOffsets => {
                    for ts in [-1i64, -2, if v >= 7 { -3 } else { -1 }, 1001] {
                        let req = ListOffsetsRequest::default()
                            .with_replica_id(BrokerId(-1))
                            .with_topics(vec![
                                ListOffsetsTopic::default()
                                    .with_name(tn("all"))
                                    .with_partitions(vec![
                                        ListOffsetsPartition::default()
                                            .with_partition_index(0)
                                            .with_timestamp(ts),
                                    ]),
                            ]);
                        check!(req, ListOffsetsResponse);
                    }
                }
                ApiKey::OffsetForLeaderEpoch => {
                    let req = OffsetForLeaderEpochRequest::default().with_topics(vec![
                        OffsetForLeaderTopic::default()
                            .with_topic(tn("all"))
                            .with_partitions(vec![
                                OffsetForLeaderPartition::default()
                                    .with_partition(0)
                                    .with_leader_epoch(0),
                            ]),
                    ]);
                    check!(req, OffsetForLeaderEpochResponse);
                }
                ApiKey::CreateTopics => {
                    let req = CreateTopicsRequest::default().with_topics(vec![
                        CreatableTopic::default()
                            .with_name(tn(&format!("ct-{v}")))
                            .with_num_partitions(1)
                            .with_replication_factor(1),
                    ]);
                    check!(req, CreateTopicsResponse);
                    let bad = CreateTopicsRequest::default().with_topics(vec![
                        CreatableTopic::default()
                            .with_name(tn("bad name"))
                            .with_num_partitions(1)
                            .with_replication_factor(3),
                    ]);
                    check!(bad, CreateTopicsResponse);
                }
                ApiKey::DeleteTopics => {
                    let req = if v >= 6 {
                        DeleteTopicsRequest::default().with_topics(vec![
                            delete_topics_request::DeleteTopicState::default()
                                .with_name(Some(tn(&format!("ct-{}", 2 + v % 6)))),
                        ])
                    } else {
                        DeleteTopicsRequest::default().with_topic_names(vec![tn("nope")])
                    };
                    check!(req, DeleteTopicsResponse);
                }
                ApiKey::DeleteRecords => {
                    use kafka_protocol::messages::delete_records_request::{
                        DeleteRecordsPartition, DeleteRecordsTopic,
                    };
                    let req = DeleteRecordsRequest::default().with_topics(vec![
                        DeleteRecordsTopic::default()
                            .with_name(tn("all"))
                            .with_partitions(vec![
                                DeleteRecordsPartition::default()
                                    .with_partition_index(1)
                                    .with_offset(0),
                            ]),
                    ]);
                    check!(req, DeleteRecordsResponse);
                }
                ApiKey::InitProducerId => check!(
                    InitProducerIdRequest::default()
                        .with_transactional_id(None)
                        .with_producer_id(ProducerId(-1))
                        .with_producer_epoch(-1),
                    InitProducerIdResponse
                ),
                ApiKey::DescribeConfigs => {
                    let req = DescribeConfigsRequest::default()
                        .with_include_synonyms(true)
                        .with_include_documentation(v >= 3)
                        .with_resources(vec![
                            DescribeConfigsResource::default()
                                .with_resource_type(2)
                                .with_resource_name(StrBytes::from_static_str("all")),
                            DescribeConfigsResource::default()
                                .with_resource_type(4)
                                .with_resource_name(StrBytes::from_static_str("1")),
                        ]);
                    check!(req, DescribeConfigsResponse);
                }
                ApiKey::AlterConfigs => {
                    use kafka_protocol::messages::alter_configs_request::{
                        AlterConfigsResource, AlterableConfig,
                    };
                    let req = AlterConfigsRequest::default().with_resources(vec![
                        AlterConfigsResource::default()
                            .with_resource_type(2)
                            .with_resource_name(StrBytes::from_static_str("all"))
                            .with_configs(vec![
                                AlterableConfig::default()
                                    .with_name(StrBytes::from_static_str("retention.ms"))
                                    .with_value(Some(StrBytes::from_static_str("100000"))),
                            ]),
                    ]);
                    check!(req, AlterConfigsResponse);
                }
                ApiKey::IncrementalAlterConfigs => {
                    use kafka_protocol::messages::incremental_alter_configs_request::{
                        AlterConfigsResource, AlterableConfig,
                    };
                    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
                        AlterConfigsResource::default()
                            .with_resource_type(2)
                            .with_resource_name(StrBytes::from_static_str("all"))
                            .with_configs(vec![
                                AlterableConfig::default()
                                    .with_name(StrBytes::from_static_str("segment.bytes"))
                                    .with_config_operation(0)
                                    .with_value(Some(StrBytes::from_static_str("1048576"))),
                            ]),
                    ]);
                    check!(req, IncrementalAlterConfigsResponse);
                }
                ApiKey::CreatePartitions => {
                    use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
                    let req = CreatePartitionsRequest::default().with_topics(vec![
                        CreatePartitionsTopic::default()
                            .with_name(tn("all"))
                            .with_count(2 + v as i32 + 1),
                    ]);
                    check!(req, CreatePartitionsResponse);
                }
                ApiKey::DescribeCluster => check!(
                    DescribeClusterRequest::default().with_endpoint_type(1),
                    DescribeClusterResponse
                ),
                ApiKey::FindCoordinator => {
                    let req = if v >= 4 {
                        FindCoordinatorRequest::default().with_coordinator_keys(vec![sb("g-all")])
                    } else {
                        FindCoordinatorRequest::default().with_key(sb("g-all"))
                    };
                    let r: FindCoordinatorResponse = c.request(api, v, &req).await;
                    let (code, node) = if v >= 4 {
                        (r.coordinators[0].error_code, r.coordinators[0].node_id.0)
                    } else {
                        (r.error_code, r.node_id.0)
                    };
                    assert_eq!((code, node), (0, 1), "FindCoordinator v{v}");
                }
                ApiKey::JoinGroup => {
                    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
                    let req = JoinGroupRequest::default()
                        .with_group_id(GroupId(sb(&format!("g-join-{v}"))))
                        .with_session_timeout_ms(10_000)
                        .with_rebalance_timeout_ms(10_000)
                        .with_protocol_type(sb("consumer"))
                        .with_protocols(vec![
                            JoinGroupRequestProtocol::default()
                                .with_name(sb("range"))
                                .with_metadata(bytes::Bytes::from_static(&[0, 0, 0, 0, 0, 0])),
                        ]);
                    let r: JoinGroupResponse = c.request(api, v, &req).await;
                    // v4+: a new member first learns its id (KIP-394); before, it joins at once.
                    let want = if v >= 4 { 79 } else { 0 };
                    assert_eq!(r.error_code, want, "JoinGroup v{v}");
                    assert!(!r.member_id.is_empty());
                }
                ApiKey::SyncGroup => check!(
                    SyncGroupRequest::default()
                        .with_group_id(GroupId(sb("nope")))
                        .with_member_id(sb("m"))
                        .with_protocol_type(if v >= 5 { Some(sb("consumer")) } else { None })
                        .with_protocol_name(if v >= 5 { Some(sb("range")) } else { None }),
                    SyncGroupResponse
                ),
                ApiKey::Heartbeat => {
                    let r: HeartbeatResponse = c
                        .request(
                            api,
                            v,
                            &HeartbeatRequest::default()
                                .with_group_id(GroupId(sb("nope")))
                                .with_member_id(sb("m")),
                        )
                        .await;
                    assert_eq!(r.error_code, 25, "Heartbeat v{v}: UNKNOWN_MEMBER_ID");
                }
                ApiKey::LeaveGroup => {
                    use kafka_protocol::messages::leave_group_request::MemberIdentity;
                    let req = if v >= 3 {
                        LeaveGroupRequest::default()
                            .with_group_id(GroupId(sb("nope")))
                            .with_members(vec![MemberIdentity::default().with_member_id(sb("m"))])
                    } else {
                        LeaveGroupRequest::default()
                            .with_group_id(GroupId(sb("nope")))
                            .with_member_id(sb("m"))
                    };
                    check!(req, LeaveGroupResponse);
                }
                ApiKey::OffsetCommit => {
                    use kafka_protocol::messages::offset_commit_request::{
                        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
                    };
                    let req = OffsetCommitRequest::default()
                        .with_group_id(GroupId(sb("g-commit")))
                        .with_generation_id_or_member_epoch(-1)
                        .with_topics(vec![
                            OffsetCommitRequestTopic::default()
                                .with_name(tn("all"))
                                .with_partitions(vec![
                                    OffsetCommitRequestPartition::default()
                                        .with_partition_index(0)
                                        .with_committed_offset(i64::from(v))
                                        .with_committed_metadata(Some(sb("meta"))),
                                ]),
                        ]);
                    let r: OffsetCommitResponse = c.request(api, v, &req).await;
                    assert_eq!(r.topics[0].partitions[0].error_code, 0, "OffsetCommit v{v}");
                }
                ApiKey::OffsetFetch => {
                    use kafka_protocol::messages::offset_fetch_request::{
                        OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
                    };
                    if v >= 8 {
                        let req = OffsetFetchRequest::default().with_groups(vec![
                            OffsetFetchRequestGroup::default()
                                .with_group_id(GroupId(sb("g-commit")))
                                .with_topics(Some(vec![
                                    OffsetFetchRequestTopics::default()
                                        .with_name(tn("all"))
                                        .with_partition_indexes(vec![0]),
                                ])),
                        ]);
                        let r: OffsetFetchResponse = c.request(api, v, &req).await;
                        let p = &r.groups[0].topics[0].partitions[0];
                        assert_eq!(
                            (p.committed_offset, p.metadata.as_deref()),
                            (9, Some("meta"))
                        );
                    } else {
                        let req = OffsetFetchRequest::default()
                            .with_group_id(GroupId(sb("g-commit")))
                            .with_topics(Some(vec![
                                OffsetFetchRequestTopic::default()
                                    .with_name(tn("all"))
                                    .with_partition_indexes(vec![0]),
                            ]));
                        let r: OffsetFetchResponse = c.request(api, v, &req).await;
                        assert_eq!(
                            r.topics[0].partitions[0].committed_offset, 9,
                            "OffsetFetch v{v}"
                        );
                    }
                }
                ApiKey::DescribeGroups => check!(
                    DescribeGroupsRequest::default()
                        .with_groups(vec![GroupId(sb("g-commit")), GroupId(sb("nope"))]),
                    DescribeGroupsResponse
                ),
                ApiKey::ListGroups => {
                    let r: ListGroupsResponse =
                        c.request(api, v, &ListGroupsRequest::default()).await;
                    assert!(
                        r.groups.iter().any(|g| g.group_id.0.as_str() == "g-commit"),
                        "ListGroups v{v}"
                    );
                }
                ApiKey::DeleteGroups => {
                    let r: DeleteGroupsResponse = c
                        .request(
                            api,
                            v,
                            &DeleteGroupsRequest::default()
                                .with_groups_names(vec![GroupId(sb("nope"))]),
                        )
                        .await;
                    assert_eq!(
                        r.results[0].error_code, 69,
                        "DeleteGroups v{v}: GROUP_ID_NOT_FOUND"
                    );
                }
                ApiKey::OffsetDelete => check!(
                    OffsetDeleteRequest::default().with_group_id(GroupId(sb("nope"))),
                    OffsetDeleteResponse
                ),
                ApiKey::ConsumerGroupHeartbeat => {
                    let req = ConsumerGroupHeartbeatRequest::default()
                        .with_group_id(GroupId(sb(&format!("g-848-{v}"))))
                        .with_member_id(sb(&format!("member-{v}")))
                        .with_member_epoch(0)
                        .with_rebalance_timeout_ms(10_000)
                        .with_subscribed_topic_names(Some(vec![tn("all")]))
                        .with_topic_partitions(Some(vec![]));
                    let r: ConsumerGroupHeartbeatResponse = c.request(api, v, &req).await;
                    assert_eq!(r.error_code, 0, "ConsumerGroupHeartbeat v{v}");
                    let got: usize = r
                        .assignment
                        .map(|a| a.topic_partitions.iter().map(|t| t.partitions.len()).sum())
                        .unwrap_or(0);
                    // CreatePartitions above grew the topic; a lone member gets all of it.
                    assert!(got >= 2, "one member gets every partition, got {got}");
                }
                // A SASL listener's: every version is exercised in sasl.rs (this connection is
                // PLAINTEXT, which closes on them).
                ApiKey::SaslHandshake | ApiKey::SaslAuthenticate => {}
                ApiKey::DescribeUserScramCredentials => {
                    let r: DescribeUserScramCredentialsResponse = c
                        .request(api, v, &DescribeUserScramCredentialsRequest::default())
                        .await;
                    assert_eq!(r.error_code, 0, "DescribeUserScramCredentials v{v}");
                }
                ApiKey::AlterUserScramCredentials => check!(
                    AlterUserScramCredentialsRequest::default(),
                    AlterUserScramCredentialsResponse
                ),
                ApiKey::CreateAcls => check!(CreateAclsRequest::default(), CreateAclsResponse),
                ApiKey::DescribeAcls => {
                    let any = DescribeAclsRequest::default()
                        .with_resource_type_filter(1)
                        .with_resource_name_filter(None)
                        .with_pattern_type_filter(1)
                        .with_principal_filter(None)
                        .with_host_filter(None)
                        .with_operation(1)
                        .with_permission_type(1);
                    let r: DescribeAclsResponse = c.request(api, v, &any).await;
                    assert_eq!(r.error_code, 0, "DescribeAcls v{v}");
                }
                ApiKey::DeleteAcls => check!(DeleteAclsRequest::default(), DeleteAclsResponse),
                other => panic!("{other:?} is advertised but not exercised here"),
            }
        }
    }
    b.stop().await;
}

/// Proves: admin refusals carry Kafka's error codes and say what is allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_refusals_explain_themselves() {
    use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    c.create_topic("exists", 1).await;
    let req = CreateTopicsRequest::default().with_topics(vec![
        CreatableTopic::default()
            .with_name(tn("exists"))
            .with_num_partitions(1)
            .with_replication_factor(1),
        CreatableTopic::default()
            .with_name(tn("has space"))
            .with_num_partitions(1)
            .with_replication_factor(1),
        CreatableTopic::default()
            .with_name(tn("rf3"))
            .with_num_partitions(1)
            .with_replication_factor(3),
        CreatableTopic::default()
            .with_name(tn("cfg"))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(vec![
                CreatableTopicConfig::default()
                    .with_name(StrBytes::from_static_str("retention.ms"))
                    .with_value(Some(StrBytes::from_static_str("forever"))),
            ]),
        CreatableTopic::default()
            .with_name(tn("zero"))
            .with_num_partitions(0)
            .with_replication_factor(1),
    ]);
    let r: CreateTopicsResponse = c.request(ApiKey::CreateTopics, 7, &req).await;
    let codes: Vec<i16> = r.topics.iter().map(|t| t.error_code).collect();
    assert_eq!(
        codes,
        vec![
            ResponseError::TopicAlreadyExists.code(),
            ResponseError::InvalidTopicException.code(),
            ResponseError::InvalidReplicationFactor.code(),
            ResponseError::InvalidConfig.code(),
            ResponseError::InvalidPartitions.code(),
        ]
    );
    let msg = r.topics[3].error_message.as_ref().unwrap().to_string();
    assert!(msg.contains("integer"), "{msg}");
    b.stop().await;
}

/// Proves: two batches for one partition in one produce are refused with INVALID_RECORD and
/// neither is stored (Kafka's rule for Produce v3+).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_batches_for_one_partition_are_refused() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    c.create_topic("multi", 1).await;
    let mut two = batch(2, 1, Compression::None).to_vec();
    two.extend_from_slice(&batch(2, 1, Compression::None));
    let (err, _) = c.produce("multi", 0, bytes::Bytes::from(two)).await;
    assert_eq!(err, ResponseError::InvalidRecord.code());
    let p = c.fetch("multi", 0, 0, 0, 0).await;
    assert_eq!(p.high_watermark, 0);
    b.stop().await;
}

/// Proves: `__consumer_offsets` is written only by the group coordinator: a client's Produce,
/// DeleteRecords and CreatePartitions on it are refused with INVALID_TOPIC_EXCEPTION, and its
/// log is unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offsets_topic_is_internal() {
    use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
    use kafka_protocol::messages::delete_records_request::{
        DeleteRecordsPartition, DeleteRecordsTopic,
    };
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    // The first FindCoordinator creates it.
    let r: FindCoordinatorResponse = c
        .request(
            ApiKey::FindCoordinator,
            3,
            &FindCoordinatorRequest::default().with_key(sb("g")),
        )
        .await;
    assert_eq!(r.error_code, 0);
    let before = c
        .fetch("__consumer_offsets", 0, 0, 0, 0)
        .await
        .high_watermark;
    let (err, _) = c
        .produce("__consumer_offsets", 0, batch(2, 1, Compression::None))
        .await;
    assert_eq!(err, ResponseError::InvalidTopicException.code());
    let r: DeleteRecordsResponse = c
        .request(
            ApiKey::DeleteRecords,
            2,
            &DeleteRecordsRequest::default().with_topics(vec![
                DeleteRecordsTopic::default()
                    .with_name(tn("__consumer_offsets"))
                    .with_partitions(vec![
                        DeleteRecordsPartition::default()
                            .with_partition_index(0)
                            .with_offset(-1),
                    ]),
            ]),
        )
        .await;
    assert_eq!(
        r.topics[0].partitions[0].error_code,
        ResponseError::InvalidTopicException.code()
    );
    let r: CreatePartitionsResponse = c
        .request(
            ApiKey::CreatePartitions,
            3,
            &CreatePartitionsRequest::default().with_topics(vec![
                CreatePartitionsTopic::default()
                    .with_name(tn("__consumer_offsets"))
                    .with_count(60),
            ]),
        )
        .await;
    assert_eq!(
        r.results[0].error_code,
        ResponseError::InvalidTopicException.code()
    );
    let after = c
        .fetch("__consumer_offsets", 0, 0, 0, 0)
        .await
        .high_watermark;
    assert_eq!(before, after);
    b.stop().await;
}

/// Proves: an acks=0 produce that fails closes the connection (the client's only signal), and
/// one that succeeds gets no response but is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_zero_errors_close_the_connection() {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    c.create_topic("a0", 1).await;
    let req = |topic: &str| {
        ProduceRequest::default().with_acks(0).with_topic_data(vec![
            TopicProduceData::default()
                .with_name(tn(topic))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(batch(3, 1, Compression::None))),
                ]),
        ])
    };
    // A successful acks=0 produce, then a request that does get a response: the first
    // response on the wire must be the metadata one.
    let mut raw = c.stream_frame(ApiKey::Produce, 9, &req("a0"));
    let metadata = c.stream_frame(ApiKey::Metadata, 12, &MetadataRequest::default());
    // size (4), api key (2), version (2), then the correlation id.
    let metadata_id = i32::from_be_bytes(metadata[8..12].try_into().unwrap());
    raw.extend(metadata);
    c.send_raw(&raw).await;
    let mut resp = c.read_frame().await.unwrap();
    let h = <ResponseHeader as kafka_protocol::protocol::Decodable>::decode(&mut resp, 1).unwrap();
    assert_eq!(
        h.correlation_id, metadata_id,
        "the acks=0 produce got no response"
    );
    assert_eq!(c.fetch("a0", 0, 0, 0, 0).await.high_watermark, 3);

    let raw = c.stream_frame(ApiKey::Produce, 9, &req("no-such-topic"));
    c.send_raw(&raw).await;
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), c.read_frame()).await;
    assert!(
        matches!(closed, Ok(Err(_))),
        "connection closed after a failed acks=0 produce"
    );
    b.stop().await;
}

/// Proves: InitProducerId without a transactional id always hands out a new producer id, so a
/// client naming someone else's id cannot fence that producer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_producer_id_never_reuses_a_named_id() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    let init = |pid: i64, epoch: i16| {
        InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
    };
    let first: InitProducerIdResponse = c.request(ApiKey::InitProducerId, 4, &init(-1, -1)).await;
    let second: InitProducerIdResponse = c
        .request(ApiKey::InitProducerId, 4, &init(first.producer_id.0, 0))
        .await;
    assert_ne!(second.producer_id, first.producer_id);
    assert_eq!(second.producer_epoch, 0);
    b.stop().await;
}

/// Proves: lowering retention.ms empties a topic, the active segment included (as in Kafka),
/// and offsets carry on from where they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowering_retention_empties_the_topic() {
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let b = TestBroker::start_with(|c| {
        c.retention_check_interval_ms = 20;
        c.flush_check_interval_ms = 20;
    })
    .await;
    let mut c = b.client().await;
    c.create_topic("purge", 1).await;
    assert_eq!(
        c.produce("purge", 0, batch(5, 1_000, Compression::None))
            .await
            .0,
        0
    );
    let alter = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("purge"))
            .with_configs(vec![
                AlterableConfig::default()
                    .with_name(StrBytes::from_static_str("retention.ms"))
                    .with_config_operation(0)
                    .with_value(Some(StrBytes::from_static_str("1000"))),
            ]),
    ]);
    let r: IncrementalAlterConfigsResponse =
        c.request(ApiKey::IncrementalAlterConfigs, 1, &alter).await;
    assert_eq!(r.responses[0].error_code, 0);
    let earliest = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(tn("purge"))
                .with_partitions(vec![
                    ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(-2),
                ]),
        ]);
    wait_for_log_start(&mut c, &earliest, 5, "retention never emptied the topic").await;
    let (err, base) = c
        .produce(
            "purge",
            0,
            batch(1, weir_model::Timestamp::now().get(), Compression::None),
        )
        .await;
    assert_eq!((err, base), (0, 5));
    b.stop().await;
}

/// Asks for partition 0's log start (`earliest`, a ListOffsets request) until it is `offset`;
/// panics with `what` after 20 s.
async fn wait_for_log_start(
    c: &mut crate::common::Client,
    earliest: &ListOffsetsRequest,
    offset: i64,
    what: &str,
) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let r: ListOffsetsResponse = c.request(ApiKey::ListOffsets, 7, earliest).await;
        if r.topics[0].partitions[0].offset == offset {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{what}");
    }
}

/// Proves: retention is decided on the broker's clock, not the host's: records stamped now,
/// in a topic that keeps an hour, go as soon as the broker's (manual) clock moves two hours
/// on, and the next record gets the offset after them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_reads_the_brokers_clock() {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let clock = std::sync::Arc::new(weir_model::ManualClock::new(weir_model::Timestamp::now()));
    let b = TestBroker::start_with_clock(
        |c| {
            c.retention_check_interval_ms = 20;
            c.flush_check_interval_ms = 20;
        },
        clock.clone(),
    )
    .await;
    let mut c = b.client().await;
    c.create_topic_with("hour", 1, &[("retention.ms", "3600000")])
        .await;
    let stamped = weir_model::Clock::wall(&*clock).get();
    let (err, base) = c
        .produce("hour", 0, batch(5, stamped, Compression::None))
        .await;
    assert_eq!((err, base), (0, 0));
    let earliest = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(tn("hour"))
                .with_partitions(vec![
                    ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(-2),
                ]),
        ]);
    let r: ListOffsetsResponse = c.request(ApiKey::ListOffsets, 7, &earliest).await;
    assert_eq!(r.topics[0].partitions[0].offset, 0);
    clock.advance(2 * 3_600_000);
    wait_for_log_start(
        &mut c,
        &earliest,
        5,
        "retention never ran on the moved clock",
    )
    .await;
    let now = weir_model::Clock::wall(&*clock).get();
    let (err, base) = c.produce("hour", 0, batch(1, now, Compression::None)).await;
    assert_eq!((err, base), (0, 5));
    b.stop().await;
}

/// Proves: Produce v0-2 are advertised (librdkafka needs to see them) but using one closes the
/// connection, since Weir stores only RecordBatch v2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_below_v3_is_refused() {
    use bytes::BufMut;
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    // Produce v2: header (key 0, version 2, correlation id 5, null client id), acks 1,
    // timeout 1000, no topics.
    let mut raw = bytes::BytesMut::new();
    raw.put_i32(2 + 2 + 4 + 2 + 2 + 4 + 4);
    raw.put_i16(0);
    raw.put_i16(2);
    raw.put_i32(5);
    raw.put_i16(-1);
    raw.put_i16(1);
    raw.put_i32(1000);
    raw.put_i32(0);
    c.send_raw(&raw).await;
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), c.read_frame()).await;
    assert!(
        matches!(closed, Ok(Err(_))),
        "Produce v2 closes the connection"
    );
    // Other clients are unaffected.
    let mut other = b.client().await;
    let r: ApiVersionsResponse = other
        .request(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    assert_eq!(r.error_code, 0);
    b.stop().await;
}

/// Proves: with auto-creation off, Metadata for an unknown topic answers
/// UNKNOWN_TOPIC_OR_PARTITION and creates nothing; an invalid name is INVALID_TOPIC_EXCEPTION;
/// with it on (the default), the topic appears with the default partition count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_creation_follows_its_switch() {
    let ask = |name: &str| {
        MetadataRequest::default()
            .with_allow_auto_topic_creation(true)
            .with_topics(Some(vec![
                metadata_request::MetadataRequestTopic::default().with_name(Some(tn(name))),
            ]))
    };
    let off = TestBroker::start_with(|c| c.auto_create_topics = false).await;
    let mut c = off.client().await;
    let r: MetadataResponse = c.request(ApiKey::Metadata, 12, &ask("nope")).await;
    assert_eq!(
        r.topics[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    let r: MetadataResponse = c.request(ApiKey::Metadata, 12, &ask("bad name!")).await;
    assert_eq!(
        r.topics[0].error_code,
        ResponseError::InvalidTopicException.code()
    );
    let all: MetadataResponse = c
        .request(ApiKey::Metadata, 12, &MetadataRequest::default())
        .await;
    assert!(all.topics.is_empty(), "nothing was created");
    off.stop().await;

    let on = TestBroker::start_with(|c| c.default_partitions = 4).await;
    let mut c = on.client().await;
    let r: MetadataResponse = c.request(ApiKey::Metadata, 12, &ask("auto")).await;
    assert_eq!(r.topics[0].error_code, 0);
    assert_eq!(r.topics[0].partitions.len(), 4);
    // A client that says no (v4+) is not given a topic.
    let no = ask("not-wanted").with_allow_auto_topic_creation(false);
    let r: MetadataResponse = c.request(ApiKey::Metadata, 12, &no).await;
    assert_eq!(
        r.topics[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    on.stop().await;
}
