"""Produce and fetch through both Python clients: acks, keys, headers, compression, timestamps."""

from __future__ import annotations

import kafka
import pytest
from confluent_kafka import TopicPartition

import clients
from clients import CLIENTS, CODECS, Record, Stored
from helpers import WAIT_S, assign_consumer, create_topic, now_ms


def stored(records: list[Record], acks: list[tuple[int, int]]) -> list[Stored]:
    """What a consumer must see for `records`, given the (partition, offset) the producer got."""
    return [Stored(r.key, r.value, r.headers, p, o, 0) for r, (p, o) in zip(records, acks)]


@pytest.mark.parametrize("acks", ["1", "all"], ids=lambda a: f"acks={a}")
@pytest.mark.parametrize("client", CLIENTS)
def test_keyed_records_with_headers_read_back_per_partition(broker, topic_name, client, acks):
    """Records with keys and headers, produced with acks=1 or all to explicit partitions, get
    consecutive offsets per partition and read back unchanged with the same client."""
    topic = topic_name()
    create_topic(broker.bootstrap, topic, partitions=2)
    records = [
        Record(f"key-{i}".encode(), f"value-{i}".encode(), (("seq", str(i).encode()), ("client", client.encode())), i % 2)
        for i in range(10)
    ]
    acked = clients.produce(client, broker.bootstrap, topic, records, acks=acks)

    assert [p for p, _ in acked] == [i % 2 for i in range(10)]
    for partition in (0, 1):
        assert [o for p, o in acked if p == partition] == list(range(5))
        got = clients.read(client, broker.bootstrap, topic, partition, 5)
        assert got == [s for s in stored(records, acked) if s.partition == partition]


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("producer", CLIENTS)
def test_compressed_batches_read_back_by_both_clients(broker, topic_name, producer, codec):
    """A batch compressed with each codec by either client is decoded by both clients."""
    topic = topic_name()
    create_topic(broker.bootstrap, topic)
    # Repetitive values so the codec really shrinks the batch.
    records = [Record(f"k{i}".encode(), (f"{codec}-record-{i}-" * 40).encode()) for i in range(50)]
    acked = clients.produce(producer, broker.bootstrap, topic, records, compression=codec)
    assert acked == [(0, i) for i in range(50)]

    for reader in CLIENTS:
        assert clients.read(reader, broker.bootstrap, topic, 0, 50) == stored(records, acked), reader


@pytest.mark.parametrize("client", CLIENTS)
def test_null_key_null_value_and_empty_bytes_stay_distinct(broker, topic_name, client):
    """A null key, a null value (tombstone) and empty bytes each read back as they were written."""
    topic = topic_name()
    create_topic(broker.bootstrap, topic)
    records = [Record(None, b"no key"), Record(b"tombstone", None), Record(b"", b""), Record(b"k", b"v")]
    acked = clients.produce(client, broker.bootstrap, topic, records)

    assert clients.read(client, broker.bootstrap, topic, 0, 4) == stored(records, acked)


def test_large_record_round_trips(broker, topic_name):
    """A 900 KB value (just under the default 1 MB max.message.bytes) is stored and fetched whole."""
    topic = topic_name()
    create_topic(broker.bootstrap, topic)
    value = bytes(range(256)) * (900_000 // 256)
    acked = clients.produce("confluent", broker.bootstrap, topic, [Record(b"big", value)])

    [got] = clients.read("kafka-python", broker.bootstrap, topic, 0, 1)
    assert (got.offset, len(got.value), got.value == value) == (acked[0][1], len(value), True)


@pytest.mark.parametrize("client", CLIENTS)
def test_idempotent_producer_writes_each_record_once(broker, topic_name, client):
    """With enable.idempotence (InitProducerId, producer id and sequence numbers in each batch)
    every record is written exactly once, in order."""
    topic = topic_name()
    create_topic(broker.bootstrap, topic)
    records = [Record(f"k{i}".encode(), f"v{i}".encode()) for i in range(20)]
    acked = clients.produce(client, broker.bootstrap, topic, records, acks="all", idempotent=True)

    assert acked == [(0, i) for i in range(20)]
    assert clients.read(client, broker.bootstrap, topic, 0, 20) == stored(records, acked)


def test_explicit_timestamps_round_trip_and_list_offsets_finds_them(broker, topic_name):
    """CreateTime timestamps set by the producer come back unchanged, and ListOffsets answers
    earliest, latest and by-timestamp queries for them (kafka-python and confluent alike)."""
    topic = topic_name()
    create_topic(broker.bootstrap, topic)
    base = now_ms() - 600_000  # in the past: Kafka 4 rejects CreateTime more than 1 h ahead
    records = [Record(f"k{i}".encode(), f"v{i}".encode(), timestamp=base + i * 1000) for i in range(10)]
    clients.produce("confluent", broker.bootstrap, topic, records)

    got = clients.read("kafka-python", broker.bootstrap, topic, 0, 10)
    assert [r.timestamp for r in got] == [base + i * 1000 for i in range(10)]

    tp = kafka.TopicPartition(topic, 0)
    consumer = kafka.KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False)
    try:
        assert consumer.beginning_offsets([tp]) == {tp: 0}
        assert consumer.end_offsets([tp]) == {tp: 10}
        found = consumer.offsets_for_times({tp: base + 3500})[tp]
        assert (found.offset, found.timestamp) == (4, base + 4000)
        assert consumer.offsets_for_times({tp: base + 10_000})[tp] is None  # after the last record
    finally:
        consumer.close()

    c = assign_consumer(broker.bootstrap)
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=WAIT_S) == (0, 10)
        [found] = c.offsets_for_times([TopicPartition(topic, 0, base + 7000)], timeout=WAIT_S)
        assert found.offset == 7
    finally:
        c.close()
