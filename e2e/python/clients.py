"""The two Python clients behind one small interface, so a test can run with either of them.

    confluent     confluent-kafka (librdkafka 2.16, C)
    kafka-python  kafka-python (pure Python, its own protocol implementation)

Both produce a list of `Record`s and read a partition back with assign() — never subscribe():
group coordination is not something every target has.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

import kafka
from confluent_kafka import Producer, TopicPartition

from helpers import WAIT_S, assign_consumer, consume

CLIENTS = ("confluent", "kafka-python")
CODECS = ("gzip", "snappy", "lz4", "zstd")


@dataclass(frozen=True)
class Record:
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    partition: int | None = None  # None: the client's partitioner picks
    timestamp: int | None = None  # CreateTime in ms; None: the client sets "now"


@dataclass(frozen=True)
class Stored:
    """A record as a consumer saw it."""

    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    partition: int
    offset: int
    timestamp: int = field(compare=False)


def produce(client: str, bootstrap: str, topic: str, records: list[Record], **opts) -> list[tuple[int, int]]:
    """Produces `records` in order and waits for every ack; returns (partition, offset) of each.

    opts: acks ("1", "all"), compression (codec name), idempotent (bool).
    """
    if client == "confluent":
        return _confluent_produce(bootstrap, topic, records, **opts)
    if client == "kafka-python":
        return _kp_produce(bootstrap, topic, records, **opts)
    raise ValueError(client)


def read(client: str, bootstrap: str, topic: str, partition: int, count: int, offset: int = 0) -> list[Stored]:
    """Reads `count` records of one partition from `offset` with an assign()ed consumer."""
    if client == "confluent":
        return _confluent_read(bootstrap, topic, partition, count, offset)
    if client == "kafka-python":
        return _kp_read(bootstrap, topic, partition, count, offset)
    raise ValueError(client)


def _confluent_produce(bootstrap, topic, records, acks="all", compression="none", idempotent=False):
    producer = Producer({
        "bootstrap.servers": bootstrap,
        "acks": acks,
        "compression.type": compression,
        "enable.idempotence": idempotent,
        "linger.ms": 5,
    })
    results: list = [None] * len(records)

    def delivered(i):
        def cb(err, msg):
            results[i] = err if err else (msg.partition(), msg.offset())
        return cb

    for i, r in enumerate(records):
        kwargs = {"key": r.key, "value": r.value, "headers": list(r.headers), "on_delivery": delivered(i)}
        if r.partition is not None:
            kwargs["partition"] = r.partition
        if r.timestamp is not None:
            kwargs["timestamp"] = r.timestamp
        producer.produce(topic, **kwargs)
    assert producer.flush(WAIT_S) == 0, "confluent producer: records still in flight after flush"
    failed = [(i, e) for i, e in enumerate(results) if not isinstance(e, tuple)]
    assert not failed, f"delivery failed: {failed[:3]}"
    return results


def _kp_produce(bootstrap, topic, records, acks="all", compression="none", idempotent=False):
    producer = kafka.KafkaProducer(
        bootstrap_servers=bootstrap,
        acks=1 if acks == "1" else acks,
        compression_type=None if compression == "none" else compression,
        enable_idempotence=idempotent,
        linger_ms=5,
    )
    try:
        futures = [
            producer.send(
                topic, key=r.key, value=r.value, headers=list(r.headers), partition=r.partition, timestamp_ms=r.timestamp
            )
            for r in records
        ]
        producer.flush(timeout=WAIT_S)
        return [(m.partition, m.offset) for m in (f.get(timeout=WAIT_S) for f in futures)]
    finally:
        producer.close(timeout=WAIT_S)


def _confluent_read(bootstrap, topic, partition, count, offset):
    consumer = assign_consumer(bootstrap)
    try:
        consumer.assign([TopicPartition(topic, partition, offset)])
        msgs = consume(consumer, count)
    finally:
        consumer.close()
    return [
        Stored(m.key(), m.value(), tuple(m.headers() or ()), m.partition(), m.offset(), m.timestamp()[1]) for m in msgs
    ]


def _kp_read(bootstrap, topic, partition, count, offset):
    consumer = kafka.KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        client_id=f"weir-e2e-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="none",
    )
    tp = kafka.TopicPartition(topic, partition)
    out: list[Stored] = []
    try:
        consumer.assign([tp])
        consumer.seek(tp, offset)
        deadline = time.monotonic() + WAIT_S
        while len(out) < count:
            assert time.monotonic() < deadline, f"got {len(out)} of {count} records in {WAIT_S}s"
            for rec in consumer.poll(timeout_ms=500).get(tp, []):
                out.append(Stored(rec.key, rec.value, tuple(rec.headers or ()), rec.partition, rec.offset, rec.timestamp))
    finally:
        consumer.close()
    return out
