"""Admin APIs through both Python clients: CreateTopics, Metadata, DescribeConfigs, DeleteTopics."""

from __future__ import annotations

from confluent_kafka import TopicCollection
from confluent_kafka.admin import ConfigResource, NewTopic
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource as KpConfigResource
from kafka.admin import ConfigResourceType as KpConfigResourceType
from kafka.admin import NewTopic as KpNewTopic

from helpers import WAIT_S, admin, wait_topic_ready, wait_until

RETENTION_MS = "3600000"


def kp_admin(broker) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=broker.bootstrap, client_id="weir-e2e", request_timeout_ms=int(WAIT_S * 1000))


def test_confluent_admin_creates_describes_and_deletes_a_topic(broker, topic_name):
    """confluent-kafka: a topic created with 3 partitions and retention.ms is listed, described
    with those partitions and that config, then deleted and gone from metadata."""
    topic = topic_name()
    client = admin(broker.bootstrap)
    futures = client.create_topics(
        [NewTopic(topic, num_partitions=3, replication_factor=1, config={"retention.ms": RETENTION_MS})],
        operation_timeout=WAIT_S,
    )
    assert futures[topic].result(timeout=WAIT_S) is None
    wait_topic_ready(broker.bootstrap, topic, 3)

    assert topic in client.list_topics(timeout=WAIT_S).topics
    desc = client.describe_topics(TopicCollection([topic]))[topic].result(timeout=WAIT_S)
    assert desc.name == topic
    assert not desc.is_internal
    assert [p.id for p in desc.partitions] == [0, 1, 2]
    for p in desc.partitions:
        assert p.leader is not None
        assert [r.id for r in p.replicas] == [p.leader.id]
        assert [r.id for r in p.isr] == [p.leader.id]

    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = client.describe_configs([resource])[resource].result(timeout=WAIT_S)
    assert configs["retention.ms"].value == RETENTION_MS
    assert not configs["retention.ms"].is_default
    assert configs["cleanup.policy"].value == "delete"

    assert client.delete_topics([topic], operation_timeout=WAIT_S)[topic].result(timeout=WAIT_S) is None
    wait_until(lambda: topic not in client.list_topics(timeout=5).topics, f"{topic} to disappear")


def test_kafka_python_admin_creates_describes_and_deletes_a_topic(broker, topic_name):
    """kafka-python: the same lifecycle through its own protocol implementation."""
    topic = topic_name()
    client = kp_admin(broker)
    try:
        created = client.create_topics(
            [KpNewTopic(topic, num_partitions=2, replication_factor=1, topic_configs={"retention.ms": RETENTION_MS})],
            timeout_ms=int(WAIT_S * 1000),
        )
        [result] = created["topics"]
        assert (result["name"], result["error_code"]) == (topic, 0)
        wait_until(lambda: topic in client.list_topics(), f"{topic} listed")

        [desc] = client.describe_topics([topic])
        assert (desc["name"], desc["error_code"], desc["is_internal"]) == (topic, 0, False)
        assert sorted(p["partition_index"] for p in desc["partitions"]) == [0, 1]
        for p in desc["partitions"]:
            assert p["error_code"] == 0
            assert p["replica_nodes"] == [p["leader_id"]]
            assert p["isr_nodes"] == [p["leader_id"]]

        configs = client.describe_configs([KpConfigResource(KpConfigResourceType.TOPIC, topic, ["retention.ms"])])
        assert configs["topic"][topic]["retention.ms"]["value"] == RETENTION_MS

        deleted = client.delete_topics([topic], timeout_ms=int(WAIT_S * 1000))
        assert [(t["name"], t["error_code"]) for t in deleted["topics"]] == [(topic, 0)]
        wait_until(lambda: topic not in client.list_topics(), f"{topic} to disappear")
    finally:
        client.close()


def test_list_topics_shows_every_created_topic_with_its_partition_count(broker, topic_name):
    """Metadata for all topics includes each new topic with the partition count it was created with."""
    topics = {topic_name(): n for n in (1, 2, 4)}
    client = admin(broker.bootstrap)
    futures = client.create_topics(
        [NewTopic(t, num_partitions=n, replication_factor=1) for t, n in topics.items()], operation_timeout=WAIT_S
    )
    for f in futures.values():
        f.result(timeout=WAIT_S)
    for t, n in topics.items():
        wait_topic_ready(broker.bootstrap, t, n)

    listed = client.list_topics(timeout=WAIT_S).topics
    assert {t: len(listed[t].partitions) for t in topics} == topics
