"""Error behaviour worth comparing between targets: the error code a broker returns, and what
each client makes of it. Expected values are what Apache Kafka 4 answers."""

from __future__ import annotations

import time

import kafka
import kafka.errors as kerr
import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import NewTopic
from kafka.admin import NewTopic as KpNewTopic

import clients
from clients import CLIENTS, Record
from helpers import WAIT_S, admin, assign_consumer, consume, create_topic

# Broker error codes (Kafka protocol), checked through confluent-kafka's KafkaError codes.
UNKNOWN_TOPIC_OR_PARTITION = 3
INVALID_TOPIC_EXCEPTION = 17
TOPIC_ALREADY_EXISTS = 36
INVALID_PARTITIONS = 37
INVALID_REPLICATION_FACTOR = 38
INVALID_CONFIG = 40


def confluent_create_error(bootstrap: str, topic: NewTopic) -> KafkaError:
    client = admin(bootstrap)
    with pytest.raises(KafkaException) as info:
        client.create_topics([topic], operation_timeout=WAIT_S)[topic.topic].result(timeout=WAIT_S)
    return info.value.args[0]


def kp_create(bootstrap: str, topic: KpNewTopic) -> None:
    client = kafka.KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(WAIT_S * 1000))
    try:
        client.create_topics([topic], timeout_ms=int(WAIT_S * 1000))
    finally:
        client.close()


def assert_not_listed(bootstrap: str, topic: str) -> None:
    assert topic not in admin(bootstrap).list_topics(timeout=WAIT_S).topics


@pytest.mark.parametrize("client", CLIENTS)
def test_creating_an_existing_topic_fails_with_topic_already_exists(broker, topic_name, client):
    """A second CreateTopics for the same name returns TOPIC_ALREADY_EXISTS (36) and leaves the
    first topic's partition count alone."""
    topic = topic_name()
    create_topic(broker.bootstrap, topic, partitions=2)
    if client == "confluent":
        err = confluent_create_error(broker.bootstrap, NewTopic(topic, num_partitions=5, replication_factor=1))
        assert err.code() == TOPIC_ALREADY_EXISTS, err
    else:
        with pytest.raises(kerr.TopicAlreadyExistsError):
            kp_create(broker.bootstrap, KpNewTopic(topic, num_partitions=5, replication_factor=1))
    assert len(admin(broker.bootstrap).list_topics(topic=topic, timeout=WAIT_S).topics[topic].partitions) == 2


INVALID_NAMES = {
    "slash": "bad/name",
    "space": "with space",
    "dot": ".",
    "dotdot": "..",
    "too-long": "x" * 250,
}


@pytest.mark.parametrize("name", INVALID_NAMES.values(), ids=INVALID_NAMES.keys())
@pytest.mark.parametrize("client", CLIENTS)
def test_invalid_topic_name_is_rejected_with_invalid_topic_exception(broker, client, name):
    """Names outside [A-Za-z0-9._-]{1,249}, and '.' and '..', get INVALID_TOPIC_EXCEPTION (17)
    from the broker, and no topic is created."""
    if client == "confluent":
        err = confluent_create_error(broker.bootstrap, NewTopic(name, num_partitions=1, replication_factor=1))
        assert err.code() == INVALID_TOPIC_EXCEPTION, err
    else:
        with pytest.raises(kerr.InvalidTopicError):
            kp_create(broker.bootstrap, KpNewTopic(name, num_partitions=1, replication_factor=1))
    assert_not_listed(broker.bootstrap, name)


BAD_CREATES = {
    "zero-partitions": (dict(num_partitions=0, replication_factor=1), INVALID_PARTITIONS),
    "replication-2-on-1-broker": (dict(num_partitions=1, replication_factor=2), INVALID_REPLICATION_FACTOR),
    "config-not-a-number": (dict(num_partitions=1, replication_factor=1, config={"retention.ms": "abc"}), INVALID_CONFIG),
    "config-unknown-name": (dict(num_partitions=1, replication_factor=1, config={"no.such.config": "1"}), INVALID_CONFIG),
}


@pytest.mark.parametrize("args,code", BAD_CREATES.values(), ids=BAD_CREATES.keys())
def test_create_topic_with_bad_arguments_fails_with_specific_code(broker, topic_name, args, code):
    """CreateTopics validates partitions, replication factor and configs, each with its own code."""
    topic = topic_name()
    err = confluent_create_error(broker.bootstrap, NewTopic(topic, **args))
    assert err.code() == code, err
    assert_not_listed(broker.bootstrap, topic)


def test_deleting_an_unknown_topic_fails_with_unknown_topic_or_partition(broker, topic_name):
    """DeleteTopics for a name that was never created returns UNKNOWN_TOPIC_OR_PARTITION (3)."""
    topic = topic_name()
    client = admin(broker.bootstrap)
    with pytest.raises(KafkaException) as info:
        client.delete_topics([topic], operation_timeout=WAIT_S)[topic].result(timeout=WAIT_S)
    assert info.value.args[0].code() == UNKNOWN_TOPIC_OR_PARTITION


@pytest.fixture
def three_records(broker, topic_name) -> str:
    topic = topic_name()
    create_topic(broker.bootstrap, topic)
    clients.produce("confluent", broker.bootstrap, topic, [Record(b"k", f"v{i}".encode()) for i in range(3)])
    return topic


def test_fetch_past_the_end_with_reset_error_fails_in_confluent(broker, three_records):
    """Fetching offset 100 of a 3-record partition gets OFFSET_OUT_OF_RANGE; with
    auto.offset.reset=error librdkafka reports it as _AUTO_OFFSET_RESET for that partition."""
    consumer = assign_consumer(broker.bootstrap, auto_offset_reset="error")
    try:
        consumer.assign([TopicPartition(three_records, 0, 100)])
        deadline = time.monotonic() + WAIT_S
        msg = None
        while msg is None and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
        assert msg is not None, "no error reported"
        assert msg.error() is not None, f"got a record at offset {msg.offset()}"
        assert msg.error().code() == KafkaError._AUTO_OFFSET_RESET
        assert "Offset out of range" in msg.error().str()
        assert (msg.topic(), msg.partition(), msg.offset()) == (three_records, 0, 100)
    finally:
        consumer.close()


def test_fetch_past_the_end_with_reset_none_raises_in_kafka_python(broker, three_records):
    """kafka-python with auto_offset_reset='none' raises OffsetOutOfRangeError naming the
    partition and the offset it asked for."""
    tp = kafka.TopicPartition(three_records, 0)
    consumer = kafka.KafkaConsumer(
        bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False, auto_offset_reset="none"
    )
    try:
        consumer.assign([tp])
        consumer.seek(tp, 100)
        deadline = time.monotonic() + WAIT_S
        with pytest.raises(kerr.OffsetOutOfRangeError) as info:
            while time.monotonic() < deadline:
                assert consumer.poll(timeout_ms=500) == {}, "got records past the end"
        assert info.value.args[0] == {tp: 100}
    finally:
        consumer.close()


@pytest.mark.parametrize("client", CLIENTS)
def test_fetch_past_the_end_with_reset_earliest_restarts_at_log_start(broker, three_records, client):
    """With auto.offset.reset=earliest the same out-of-range fetch resets to offset 0."""
    if client == "confluent":
        consumer = assign_consumer(broker.bootstrap, auto_offset_reset="earliest")
        try:
            consumer.assign([TopicPartition(three_records, 0, 100)])
            offsets = [m.offset() for m in consume(consumer, 3)]
        finally:
            consumer.close()
    else:
        tp = kafka.TopicPartition(three_records, 0)
        consumer = kafka.KafkaConsumer(
            bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        try:
            consumer.assign([tp])
            consumer.seek(tp, 100)
            offsets = []
            deadline = time.monotonic() + WAIT_S
            while len(offsets) < 3 and time.monotonic() < deadline:
                offsets += [r.offset for r in consumer.poll(timeout_ms=500).get(tp, [])]
        finally:
            consumer.close()
    assert offsets == [0, 1, 2]
