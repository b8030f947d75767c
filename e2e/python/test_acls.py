"""ACLs against Weir and the reference Kafka, configured alike (Kafka's StandardAuthorizer;
super users User:ANONYMOUS and User:admin; a resource no ACL names is open to everyone), with
librdkafka over SASL_SSL: the admin makes ACLs, and the other users' produce, fetch, group
join, offset commit, topic creation and admin call are refused with Kafka's error codes; DENY
wins over ALLOW; a prefixed ACL covers the names it starts; Metadata hides what a principal
may not describe. Every test removes the ACLs it made."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType,
                                   AdminClient, NewTopic, ResourcePatternType, ResourceType)

from conftest import ADMIN_USER, OTHER_USER, SASL_USER
from helpers import WAIT_S, consume, wait_until


def conf(broker, user) -> dict:
    if broker.sasl_bootstrap is None:
        pytest.skip("an external broker: no SASL_SSL listener configured by these tests")
    return {
        "bootstrap.servers": broker.sasl_bootstrap,
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": str(broker.tls.ca),
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": user[0],
        "sasl.password": user[1],
    }


def acl(rt, name, pattern, user, op, permission=AclPermissionType.ALLOW) -> AclBinding:
    return AclBinding(rt, name, pattern, f"User:{user[0]}", "*", op, permission)


class Acls:
    """Makes ACLs as the admin and removes them all at the end."""

    def __init__(self, broker):
        self.admin = AdminClient(conf(broker, ADMIN_USER))
        self.made: list[AclBinding] = []

    def add(self, *bindings: AclBinding) -> None:
        for f in self.admin.create_acls(list(bindings)).values():
            f.result(timeout=WAIT_S)
        self.made += bindings

    def remove_all(self) -> None:
        if self.made:
            filters = [AclBindingFilter(b.restype, b.name, b.resource_pattern_type, b.principal, b.host,
                                        b.operation, b.permission_type) for b in self.made]
            for f in self.admin.delete_acls(filters).values():
                f.result(timeout=WAIT_S)


@pytest.fixture
def acls(broker):
    made = Acls(broker)
    try:
        yield made
    finally:
        made.remove_all()


def make_topic(acls: Acls, name: str) -> None:
    acls.admin.create_topics([NewTopic(name, 1, 1)])[name].result(timeout=WAIT_S)


def produce_error(broker, user, topic: str):
    """The delivery error of one record, or None."""
    errors = []
    p = Producer({**conf(broker, user), "acks": "all", "message.timeout.ms": 10000})
    p.produce(topic, value=b"x", partition=0, on_delivery=lambda err, _msg: errors.append(err))
    p.flush(WAIT_S)
    assert len(errors) == 1, errors
    return errors[0]


def first_error(consumer: Consumer) -> KafkaError:
    """Polls until the consumer reports an error other than end-of-partition."""
    def poll():
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() and msg.error().code() != KafkaError._PARTITION_EOF:
            return msg.error()
        return None
    return wait_until(poll, what="a consumer error")


def test_missing_acls_refuse_each_api_with_kafkas_code(broker, acls):
    """Alice may do everything to topics starting with T-<id> and read group g-<id>; bob may
    only describe the topic and the group, and is refused: produce and fetch TOPIC_AUTHORIZATION_FAILED, joining a
    group and committing GROUP_AUTHORIZATION_FAILED, creating a topic under the prefix
    TOPIC_AUTHORIZATION_FAILED, and an admin call on the cluster (CreateAcls, once the cluster
    is named by an ACL) CLUSTER_AUTHORIZATION_FAILED. Alice succeeds at each."""
    tag = uuid.uuid4().hex[:8]
    topic, group = f"T-{tag}-data", f"g-{tag}"
    acls.add(acl(ResourceType.TOPIC, f"T-{tag}", ResourcePatternType.PREFIXED, SASL_USER, AclOperation.ALL),
             acl(ResourceType.GROUP, group, ResourcePatternType.LITERAL, SASL_USER, AclOperation.READ),
             acl(ResourceType.BROKER, "kafka-cluster", ResourcePatternType.LITERAL, SASL_USER,
                 AclOperation.DESCRIBE),
             # Bob may see the topic and find the group's coordinator (else his client stops
             # at Metadata or FindCoordinator, before the fetch, join or commit refused here).
             acl(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, OTHER_USER, AclOperation.DESCRIBE),
             acl(ResourceType.GROUP, group, ResourcePatternType.LITERAL, OTHER_USER, AclOperation.DESCRIBE))
    make_topic(acls, topic)

    assert produce_error(broker, SASL_USER, topic) is None
    assert produce_error(broker, OTHER_USER, topic).code() == KafkaError.TOPIC_AUTHORIZATION_FAILED

    bob = Consumer({**conf(broker, OTHER_USER), "group.id": f"other-{tag}", "enable.partition.eof": False})
    try:
        bob.assign([TopicPartition(topic, 0, 0)])
        assert first_error(bob).code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    finally:
        bob.close()

    bob = Consumer({**conf(broker, OTHER_USER), "group.id": group, "auto.offset.reset": "earliest"})
    try:
        bob.subscribe([topic])
        assert first_error(bob).code() == KafkaError.GROUP_AUTHORIZATION_FAILED
        with pytest.raises(KafkaException) as refused:
            bob.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
        assert refused.value.args[0].code() == KafkaError.GROUP_AUTHORIZATION_FAILED
    finally:
        bob.close()

    alice = Consumer({**conf(broker, SASL_USER), "group.id": group, "auto.offset.reset": "earliest"})
    try:
        alice.subscribe([topic])
        assert [m.value() for m in consume(alice, 1)] == [b"x"]
        alice.commit(asynchronous=False)
    finally:
        alice.close()

    bob_admin = AdminClient(conf(broker, OTHER_USER))
    with pytest.raises(KafkaException) as refused:
        bob_admin.create_topics([NewTopic(f"T-{tag}-new", 1, 1)])[f"T-{tag}-new"].result(timeout=WAIT_S)
    assert refused.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    any_acl = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                               AclOperation.ANY, AclPermissionType.ANY)
    # An admin call on the cluster (CreateAcls: ALTER on the cluster).
    own = acl(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, OTHER_USER, AclOperation.ALL)
    with pytest.raises(KafkaException) as refused:
        bob_admin.create_acls([own])[own].result(timeout=WAIT_S)
    assert refused.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    # Alice, with DESCRIBE on the cluster, lists the ACLs.
    alice_admin = AdminClient(conf(broker, SASL_USER))  # must outlive its futures
    described = alice_admin.describe_acls(any_acl).result(timeout=WAIT_S)
    assert any(b.name == group for b in described)


def test_deny_wins_and_prefixed_acls_cover_their_names(broker, acls):
    """Bob may read every topic starting with P-<id>- but P-<id>-secret, which a DENY names."""
    tag = uuid.uuid4().hex[:8]
    open_topic, secret = f"P-{tag}-open", f"P-{tag}-secret"
    acls.add(acl(ResourceType.TOPIC, f"P-{tag}-", ResourcePatternType.PREFIXED, OTHER_USER, AclOperation.READ),
             acl(ResourceType.TOPIC, secret, ResourcePatternType.LITERAL, OTHER_USER, AclOperation.READ,
                 AclPermissionType.DENY))
    for t in (open_topic, secret):
        make_topic(acls, t)
    p = Producer(conf(broker, ADMIN_USER))
    for t in (open_topic, secret):
        p.produce(t, value=b"v", partition=0)
    assert p.flush(WAIT_S) == 0

    bob = Consumer({**conf(broker, OTHER_USER), "group.id": f"unused-{tag}", "enable.partition.eof": False})
    try:
        bob.assign([TopicPartition(open_topic, 0, 0)])
        assert [m.value() for m in consume(bob, 1)] == [b"v"]
        bob.assign([TopicPartition(secret, 0, 0)])
        assert first_error(bob).code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    finally:
        bob.close()


def test_metadata_hides_topics_a_principal_may_not_describe(broker, acls):
    """A topic only alice is named for is in her Metadata and not in bob's."""
    tag = uuid.uuid4().hex[:8]
    topic = f"M-{tag}"
    acls.add(acl(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, SASL_USER, AclOperation.WRITE))
    make_topic(acls, topic)
    assert topic in AdminClient(conf(broker, SASL_USER)).list_topics(timeout=WAIT_S).topics
    assert topic not in AdminClient(conf(broker, OTHER_USER)).list_topics(timeout=WAIT_S).topics
    assert topic in AdminClient(conf(broker, ADMIN_USER)).list_topics(timeout=WAIT_S).topics
