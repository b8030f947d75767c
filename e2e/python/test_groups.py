"""Consumer groups: only on the reference Kafka until Weir has a group coordinator."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition

import clients
from clients import Record
from helpers import WAIT_S, consume, create_topic

pytestmark = pytest.mark.kafka_only(
    reason="group coordination (FindCoordinator, JoinGroup, SyncGroup, Heartbeat, OffsetCommit, "
    "OffsetFetch) is not implemented in Weir yet"
)


def group_consumer(bootstrap: str, group: str) -> Consumer:
    return Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })


def test_subscribed_group_consumes_every_partition_and_commits_offsets(broker, topic_name):
    """A subscribed consumer is assigned both partitions, reads all records, and its synchronous
    commit is what a new member of the same group reads back as committed offsets."""
    topic = topic_name()
    create_topic(broker.bootstrap, topic, partitions=2)
    records = [Record(f"k{i}".encode(), f"v{i}".encode(), partition=i % 2) for i in range(10)]
    clients.produce("confluent", broker.bootstrap, topic, records)
    group = f"e2e-group-{uuid.uuid4().hex[:8]}"

    consumer = group_consumer(broker.bootstrap, group)
    try:
        consumer.subscribe([topic])
        msgs = consume(consumer, 10)
        assert sorted((m.partition(), m.offset()) for m in msgs) == sorted((i % 2, i // 2) for i in range(10))
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()

    other = group_consumer(broker.bootstrap, group)
    try:
        committed = other.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=WAIT_S)
        assert [(tp.partition, tp.offset) for tp in committed] == [(0, 5), (1, 5)]
    finally:
        other.close()
