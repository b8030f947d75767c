//! ACLs on a SASL listener, through the Kafka protocol: CreateAcls, DescribeAcls and
//! DeleteAcls; every checked API refusing with Kafka's code; DENY winning; prefixed ACLs; a
//! super user; Metadata hiding what a principal may not describe.
#![allow(clippy::unwrap_used)] // test helpers panic on purpose

use crate::common::*;
use crate::sasl::{metadata, plain_login, sasl_client, system};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use weir_auth::Mechanism;
use weir_broker::listener::ListenerConfig;
use weir_broker::sasl::ScramUser;
use weir_model::acl::{Operation, PatternType, Permission, ResourceType};

const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
const GROUP_AUTHORIZATION_FAILED: i16 = 30;
const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.into())
}

/// SASL_PLAINTEXT with users admin (a super user), alice and bob; no ACL means no access.
async fn broker() -> TestBroker {
    TestBroker::start_with_clock(
        |c| {
            c.listeners
                .push(ListenerConfig::parse("SASL=SASL_PLAINTEXT://127.0.0.1:0").unwrap());
            c.sasl.mechanisms = vec![Mechanism::Plain];
            c.sasl.scram_users = ["admin=a", "alice=a", "bob=b"]
                .iter()
                .map(|u| ScramUser::parse(u).unwrap())
                .collect();
            c.authorizer.super_users = ["User:admin".to_string()].into();
            c.authorizer.allow_if_no_acl = false;
        },
        system(),
    )
    .await
}

async fn login(b: &TestBroker, user: &str) -> Client {
    let mut c = sasl_client(b).await;
    let password = if user == "bob" { "b" } else { "a" };
    assert_eq!(plain_login(&mut c, user, password).await.error_code, 0);
    c
}

fn acl(
    rt: ResourceType,
    name: &str,
    pattern: PatternType,
    who: &str,
    op: Operation,
    p: Permission,
) -> AclCreation {
    AclCreation::default()
        .with_resource_type(rt.code())
        .with_resource_name(s(name))
        .with_resource_pattern_type(pattern.code())
        .with_principal(s(who))
        .with_host(s("*"))
        .with_operation(op.code())
        .with_permission_type(p.code())
}

async fn create_acls(c: &mut Client, acls: Vec<AclCreation>) -> Vec<i16> {
    let r: CreateAclsResponse = c
        .request(
            ApiKey::CreateAcls,
            3,
            &CreateAclsRequest::default().with_creations(acls),
        )
        .await;
    r.results.iter().map(|r| r.error_code).collect()
}

async fn topics_seen(c: &mut Client) -> Vec<String> {
    let r: MetadataResponse = c
        .request(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(None),
        )
        .await;
    let mut names: Vec<String> = r
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
        .collect();
    names.sort();
    names
}

async fn fetch_code(c: &mut Client, topic: &str) -> i16 {
    c.fetch(topic, 0, 0, 0, 0).await.error_code
}

async fn produce_code(c: &mut Client, topic: &str) -> i16 {
    c.produce(topic, 0, batch(1, 1_700_000_000_000, Compression::None))
        .await
        .0
}

async fn join_code(c: &mut Client, group: &str) -> i16 {
    let req = JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(""))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default().with_name(s("range")),
        ]);
    let r: JoinGroupResponse = c.request(ApiKey::JoinGroup, 9, &req).await;
    r.error_code
}

async fn find_coordinator_code(c: &mut Client, group: &str) -> i16 {
    let req = FindCoordinatorRequest::default()
        .with_key_type(0)
        .with_coordinator_keys(vec![s(group)]);
    let r: FindCoordinatorResponse = c.request(ApiKey::FindCoordinator, 4, &req).await;
    r.coordinators[0].error_code
}

async fn commit_code(c: &mut Client, group: &str, topic: &str) -> i16 {
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(s(""))
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partitions(vec![
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(0),
                ]),
        ]);
    let r: OffsetCommitResponse = c.request(ApiKey::OffsetCommit, 9, &req).await;
    r.topics[0].partitions[0].error_code
}

/// Proves: without an ACL nothing is allowed (a SASL listener's default); ALLOWs grant what
/// they name and what it implies; a prefixed ACL covers the names it starts; DENY wins over
/// ALLOW; each refusal carries Kafka's code; Metadata lists only describable topics; ACL
/// changes by a non-super user are refused; DeleteAcls takes access away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acls_decide_every_checked_api() {
    use Operation::*;
    use PatternType::*;
    use Permission::*;
    use ResourceType::*;
    let b = broker().await;
    let mut admin = login(&b, "admin").await;
    for t in ["orders", "eu-orders", "eu-secret"] {
        admin.create_topic(t, 1).await;
    }
    let mut alice = login(&b, "alice").await;
    let mut bob = login(&b, "bob").await;

    // Nothing yet: no topic is seen, nothing produced, no ACL made by a non-super user.
    assert!(topics_seen(&mut alice).await.is_empty());
    assert_eq!(
        produce_code(&mut alice, "orders").await,
        TOPIC_AUTHORIZATION_FAILED
    );
    let own = acl(Topic, "orders", Literal, "User:alice", All, Allow);
    assert_eq!(
        create_acls(&mut alice, vec![own]).await,
        [CLUSTER_AUTHORIZATION_FAILED]
    );

    let made = create_acls(
        &mut admin,
        vec![
            acl(Topic, "orders", Literal, "User:alice", Write, Allow),
            acl(Topic, "eu-", Prefixed, "User:bob", Read, Allow),
            acl(Topic, "eu-secret", Literal, "User:bob", Read, Deny),
            acl(Group, "eu-", Prefixed, "User:bob", Read, Allow),
            acl(Topic, "orders", Literal, "bob", Read, Allow),
        ],
    )
    .await;
    assert_eq!(
        made,
        [0, 0, 0, 0, 42],
        "a principal without its type is INVALID_REQUEST"
    );

    assert_eq!(produce_code(&mut alice, "orders").await, 0);
    assert_eq!(
        produce_code(&mut bob, "orders").await,
        TOPIC_AUTHORIZATION_FAILED
    );
    assert_eq!(fetch_code(&mut bob, "eu-orders").await, 0, "prefixed READ");
    assert_eq!(
        fetch_code(&mut alice, "eu-orders").await,
        TOPIC_AUTHORIZATION_FAILED
    );
    assert_eq!(
        fetch_code(&mut bob, "eu-secret").await,
        TOPIC_AUTHORIZATION_FAILED,
        "DENY wins"
    );
    assert_eq!(
        topics_seen(&mut alice).await,
        ["orders"],
        "WRITE implies DESCRIBE"
    );
    assert_eq!(
        topics_seen(&mut bob).await,
        ["eu-orders", "eu-secret"],
        "eu-secret's DENY READ leaves DESCRIBE"
    );
    assert_eq!(
        topics_seen(&mut admin).await,
        ["eu-orders", "eu-secret", "orders"]
    );

    // Groups: READ on the group for joining and committing, READ on the topic for committing.
    assert_eq!(
        find_coordinator_code(&mut alice, "eu-group").await,
        GROUP_AUTHORIZATION_FAILED
    );
    assert_eq!(
        find_coordinator_code(&mut bob, "eu-group").await,
        0,
        "READ implies DESCRIBE"
    );
    assert_eq!(
        join_code(&mut alice, "eu-group").await,
        GROUP_AUTHORIZATION_FAILED
    );
    assert_eq!(
        commit_code(&mut alice, "eu-group", "eu-orders").await,
        GROUP_AUTHORIZATION_FAILED
    );
    assert_eq!(
        commit_code(&mut bob, "eu-group", "orders").await,
        TOPIC_AUTHORIZATION_FAILED
    );
    assert_eq!(commit_code(&mut bob, "eu-group", "eu-orders").await, 0);

    // Topic creation and an admin call.
    let create = CreateTopicsRequest::default().with_topics(vec![
        create_topics_request::CreatableTopic::default()
            .with_name(TopicName(s("new")))
            .with_num_partitions(1)
            .with_replication_factor(1),
    ]);
    let r: CreateTopicsResponse = alice.request(ApiKey::CreateTopics, 7, &create).await;
    assert_eq!(r.topics[0].error_code, TOPIC_AUTHORIZATION_FAILED);
    let r: DescribeClusterResponse = alice
        .request(
            ApiKey::DescribeCluster,
            1,
            &DescribeClusterRequest::default().with_endpoint_type(1),
        )
        .await;
    assert_eq!(r.error_code, CLUSTER_AUTHORIZATION_FAILED);

    // DescribeAcls shows bob's three; deleting his topic ACLs takes his reads away.
    let described: DescribeAclsResponse = admin
        .request(
            ApiKey::DescribeAcls,
            3,
            &DescribeAclsRequest::default()
                .with_resource_type_filter(1)
                .with_pattern_type_filter(1)
                .with_operation(1)
                .with_permission_type(1)
                .with_principal_filter(Some(s("User:bob")))
                .with_resource_name_filter(None)
                .with_host_filter(None),
        )
        .await;
    assert_eq!(
        described
            .resources
            .iter()
            .map(|r| r.acls.len())
            .sum::<usize>(),
        3
    );
    let filter = DeleteAclsFilter::default()
        .with_resource_type_filter(Topic.code())
        .with_pattern_type_filter(1)
        .with_principal_filter(Some(s("User:bob")))
        .with_resource_name_filter(None)
        .with_host_filter(None)
        .with_operation(1)
        .with_permission_type(1);
    let r: DeleteAclsResponse = admin
        .request(
            ApiKey::DeleteAcls,
            3,
            &DeleteAclsRequest::default().with_filters(vec![filter]),
        )
        .await;
    assert_eq!(r.filter_results[0].matching_acls.len(), 2);
    assert_eq!(
        fetch_code(&mut bob, "eu-orders").await,
        TOPIC_AUTHORIZATION_FAILED
    );
    assert!(metadata(&mut bob).await.is_ok());
    b.stop().await;
}
