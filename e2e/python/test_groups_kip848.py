"""KIP-848 consumer groups (`group.protocol=consumer`): the broker assigns partitions, members
converge through ConsumerGroupHeartbeat. Run against both Weir and the reference Kafka with
confluent-kafka (librdkafka 2.16, which speaks the new protocol)."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, TopicPartition

import clients
from clients import Record
from helpers import WAIT_S, create_topic

PARTITIONS = 6


def member(bootstrap: str, group: str) -> Consumer:
    return Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "group.protocol": "consumer",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })


def owned(c: Consumer) -> set[int]:
    return {tp.partition for tp in c.assignment()}


def pump(members: list[Consumer], seen: dict[tuple[int, int], int], until, what: str, timeout: float = WAIT_S):
    """Polls every member until `until()` holds, recording every record and checking, at every
    step, that no partition is owned by two members at once."""
    deadline = time.monotonic() + timeout
    while True:
        for c in members:
            m = c.poll(0.05)
            if m is not None and m.error() is None:
                key = (m.partition(), m.offset())
                seen[key] = seen.get(key, 0) + 1
        sets = [owned(c) for c in members]
        for i in range(len(sets)):
            for j in range(i + 1, len(sets)):
                assert not (sets[i] & sets[j]), f"partitions {sets[i] & sets[j]} owned by two members: {sets}"
        if until():
            return
        assert time.monotonic() < deadline, f"timed out waiting for {what}; assignments {sets}"


def test_new_protocol_members_share_partitions_without_overlap_and_resume_from_commits(broker, topic_name):
    """Two `group.protocol=consumer` members split six partitions with no partition ever owned
    by both, and read every record; when one leaves the other takes everything; after committing and restarting, a new
    member resumes at the committed offsets and nothing committed is read again."""
    topic = topic_name()
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    records = [Record(f"k{i}".encode(), f"v{i}".encode(), partition=i % PARTITIONS) for i in range(120)]
    group = f"kip848-{uuid.uuid4().hex[:8]}"
    seen: dict[tuple[int, int], int] = {}

    a = member(broker.bootstrap, group)
    b = member(broker.bootstrap, group)
    try:
        a.subscribe([topic])
        pump([a], seen, lambda: len(owned(a)) == PARTITIONS, "the first member to own every partition")
        b.subscribe([topic])
        pump(
            [a, b], seen,
            lambda: len(owned(a)) == 3 and len(owned(b)) == 3,
            "both members to own three partitions each",
        )
        # Written once the split is settled, so each record is read by its partition's owner
        # (records read by a member just before it gives a partition up are read again by the
        # next owner: at-least-once, by design).
        clients.produce("confluent", broker.bootstrap, topic, records)
        pump([a, b], seen, lambda: len(seen) == len(records), "every record to be consumed")
        assert sorted(seen) == sorted((i % PARTITIONS, i // PARTITIONS) for i in range(len(records)))
        a.commit(asynchronous=False)
        b.commit(asynchronous=False)
        a.close()
        pump([b], seen, lambda: len(owned(b)) == PARTITIONS, "the remaining member to take every partition")
    finally:
        b.close()

    # Everything was committed: more records, and a new member reads only those.
    more = [Record(f"m{i}".encode(), f"w{i}".encode(), partition=i % PARTITIONS) for i in range(12)]
    clients.produce("confluent", broker.bootstrap, topic, more)
    c = member(broker.bootstrap, group)
    try:
        committed = c.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=WAIT_S)
        assert [(tp.partition, tp.offset) for tp in committed] == [(p, 20) for p in range(PARTITIONS)]
        c.subscribe([topic])
        fresh: dict[tuple[int, int], int] = {}
        pump([c], fresh, lambda: len(fresh) == len(more), "the new records")
        assert sorted(fresh) == [(p, 20 + i) for p in range(PARTITIONS) for i in range(2)]
    finally:
        c.close()
