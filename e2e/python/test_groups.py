"""Consumer groups with real clients: kcat -G, kafka-python's KafkaConsumer, confluent-kafka's
Consumer and both admin clients.

Run against both Weir and the reference Kafka; every test is written to pass on any broker
that implements the group APIs as Kafka documents them: where Kafka versions differ (a deleted group described as DEAD or as
GROUP_ID_NOT_FOUND, the two errors for a member that was rebalanced away), either is accepted.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import (
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from kafka import KafkaAdminClient, KafkaConsumer
from kafka import TopicPartition as KpTopicPartition
from kafka.structs import OffsetAndMetadata

import clients
from clients import Record
from helpers import WAIT_S, admin, consume, create_topic, kcat

# Short heartbeats: a member learns of a rebalance within half a second instead of three.
HEARTBEAT_MS = 500
# The smallest session Kafka accepts by default (group.min.session.timeout.ms).
SESSION_MS = 6000


def unique_group() -> str:
    return f"e2e-group-{uuid.uuid4().hex[:8]}"


def group_consumer(bootstrap: str, group: str, **extra) -> Consumer:
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "heartbeat.interval.ms": HEARTBEAT_MS,
        "session.timeout.ms": SESSION_MS,
    }
    conf.update({k.replace("_", "."): v for k, v in extra.items()})
    return Consumer(conf)


class Rebalances:
    """on_assign / on_revoke of several confluent consumers, and what each holds now."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, list[int]]] = []
        self.held: dict[str, set[int]] = {}

    def subscribe(self, name: str, consumer: Consumer, topic: str) -> None:
        def on_assign(_c, parts):
            self.events.append((name, "assign", sorted(p.partition for p in parts)))
            self.held[name] = {p.partition for p in parts}

        def on_revoke(_c, parts):
            self.events.append((name, "revoke", sorted(p.partition for p in parts)))
            self.held[name] = set()

        consumer.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)

    def count(self, name: str, kind: str) -> int:
        return sum(1 for n, k, _ in self.events if n == name and k == kind)


def pump(consumers: dict[str, Consumer], until: Callable[[], bool], what: str, timeout: float = WAIT_S) -> dict:
    """Polls every consumer in turn (callbacks only run inside poll) until `until()` holds;
    returns the messages each got. Raises on consumer errors."""
    got: dict[str, list] = {name: [] for name in consumers}
    deadline = time.monotonic() + timeout
    while not until():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        for name, c in consumers.items():
            msg = c.poll(0.05)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(msg.error())
            got[name].append(msg)
    return got


def committed_offsets(consumer: Consumer, topic: str, partitions: int) -> list[tuple[int, int]]:
    parts = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=WAIT_S)
    return [(tp.partition, tp.offset) for tp in parts]


def test_subscribed_group_consumes_every_partition_and_commits_offsets(broker, topic_name):
    """A subscribed consumer is assigned both partitions, reads all records, and its synchronous
    commit is what a new member of the same group reads back as committed offsets."""
    topic = topic_name()
    create_topic(broker.bootstrap, topic, partitions=2)
    records = [Record(f"k{i}".encode(), f"v{i}".encode(), partition=i % 2) for i in range(10)]
    clients.produce("confluent", broker.bootstrap, topic, records)
    group = unique_group()

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
        assert committed_offsets(other, topic, 2) == [(0, 5), (1, 5)]
    finally:
        other.close()


# --- kcat -G ---------------------------------------------------------------------------

KCAT_REBALANCE = re.compile(r"rebalanced \(memberid [^)]*\): (assigned|revoked): (.*)$")


def kcat_assignment(stderr: Path, topic: str) -> set[int] | None:
    """What a `kcat -G` holds after its last rebalance message (None before the first)."""
    held = None
    for line in stderr.read_text(errors="replace").splitlines():
        m = KCAT_REBALANCE.search(line)
        if m:
            parts = {int(p) for p in re.findall(re.escape(topic) + r" \[(\d+)\]", m.group(2))}
            held = parts if m.group(1) == "assigned" else set()
    return held


def test_two_kcat_balanced_consumers_split_six_partitions_and_read_each_record_once(broker, topic_name, tmp_path):
    """Two `kcat -G` balanced consumers of one group split six partitions between them, each a
    non-empty share, no partition held by both; together they read every record exactly once,
    each only from partitions it holds."""
    topic = topic_name()
    create_topic(broker.bootstrap, topic, partitions=6)
    group = unique_group()
    procs = []
    try:
        for i in range(2):
            out, err = tmp_path / f"kcat{i}.out", tmp_path / f"kcat{i}.err"
            procs.append((out, err, subprocess.Popen(
                ["kcat", "-b", broker.bootstrap, "-G", group, topic, "-u", "-f", r"%p\t%o\t%k\t%s\n",
                 "-X", "auto.offset.reset=earliest", "-X", f"heartbeat.interval.ms={HEARTBEAT_MS}",
                 "-X", f"session.timeout.ms={SESSION_MS}"],
                stdout=out.open("w"), stderr=err.open("w"), stdin=subprocess.DEVNULL,
            )))

        def split() -> list[set[int]] | None:
            for _, _, p in procs:
                assert p.poll() is None, f"kcat exited early ({p.returncode})"
            held = [kcat_assignment(err, topic) for _, err, _ in procs]
            if any(not h for h in held) or held[0] & held[1] or held[0] | held[1] != set(range(6)):
                return None
            return held

        deadline = time.monotonic() + WAIT_S
        while (held := split()) is None:
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"two kcat -G did not split 6 partitions within {WAIT_S}s; stderr:\n"
                    + "\n---\n".join(err.read_text() for _, err, _ in procs))
            time.sleep(0.05)  # poll interval

        records = [Record(f"k{i}".encode(), f"v{i}".encode(), partition=i % 6) for i in range(60)]
        clients.produce("confluent", broker.bootstrap, topic, records)

        def lines() -> list[list[str]]:
            return [out.read_text().splitlines() for out, _, _ in procs]

        deadline = time.monotonic() + WAIT_S
        while sum(len(x) for x in lines()) < len(records):
            if time.monotonic() >= deadline:
                raise AssertionError(f"kcat -G read {sum(len(x) for x in lines())} of {len(records)} records")
            time.sleep(0.05)  # poll interval
        # Nothing rebalanced while reading: the split is still the one the records were read under.
        assert [kcat_assignment(err, topic) for _, err, _ in procs] == held
    finally:
        for _, _, p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for _, _, p in procs:
            try:
                p.wait(timeout=WAIT_S)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    read = []
    for i, rows in enumerate(lines()):
        for row in rows:
            partition, offset, key, value = row.split("\t")
            assert int(partition) in held[i], f"kcat {i} holding {held[i]} read {row!r}"
            read.append((int(partition), int(offset), key, value))
    want = sorted((i % 6, i // 6, f"k{i}", f"v{i}") for i in range(60))
    assert sorted(read) == want, "every record exactly once, at its offset"
    assert all(lines()), "each kcat read from its share"


# --- kafka-python ----------------------------------------------------------------------


def kp_consumer(bootstrap: str, group: str, topic: str) -> KafkaConsumer:
    return KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=4,
        heartbeat_interval_ms=HEARTBEAT_MS,
        session_timeout_ms=SESSION_MS,
    )


def kp_read(consumer: KafkaConsumer, count: int, timeout: float = WAIT_S) -> list[tuple[int, int, bytes]]:
    """Polls until at least `count` records arrived: (partition, offset, value)."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < count:
        if time.monotonic() >= deadline:
            raise AssertionError(f"kafka-python read {len(out)} of {count} records in {timeout}s")
        for _tp, recs in consumer.poll(timeout_ms=200).items():
            out.extend((r.partition, r.offset, r.value) for r in recs)
    return out


def test_kafka_python_group_consumer_commits_closes_and_a_new_consumer_resumes(broker, topic_name):
    """kafka-python's KafkaConsumer in a group, auto-commit off: commit() stores its positions
    (one past the last record returned), close() leaves, and a new consumer of the group reads
    exactly the records after them, none again; an explicit commit keeps its metadata."""
    topic = topic_name()
    create_topic(broker.bootstrap, topic, partitions=3)
    records = [Record(f"k{i}".encode(), f"v{i}".encode(), partition=i % 3) for i in range(30)]
    clients.produce("kafka-python", broker.bootstrap, topic, records)
    group = unique_group()
    tps = [KpTopicPartition(topic, p) for p in range(3)]

    first = kp_consumer(broker.bootstrap, group, topic)
    try:
        early = kp_read(first, 12)
        first.commit()
        positions = {tp.partition: first.position(tp) for tp in tps}
        assert {tp.partition: first.committed(tp) for tp in tps} == positions
    finally:
        first.close()
    for p in range(3):
        # Records come in offset order from 0: the position is how many of p's were returned.
        assert sorted(o for q, o, _ in early if q == p) == list(range(positions[p])), (p, early)

    second = kp_consumer(broker.bootstrap, group, topic)
    try:
        rest = kp_read(second, 30 - len(early))
        for p, o, _ in rest:
            assert o >= positions[p], f"{p}/{o} was committed by the first consumer and read again"
        assert sorted((p, o) for p, o, _ in early + rest) == sorted((i % 3, i // 3) for i in range(30))
        second.commit()
        assert {tp.partition: second.committed(tp) for tp in tps} == {0: 10, 1: 10, 2: 10}
        second.commit({tps[0]: OffsetAndMetadata(7, "kafka-python-was-here", -1)})
        back = second.committed(tps[0], metadata=True)
        assert (back.offset, back.metadata) == (7, "kafka-python-was-here")
    finally:
        second.close()


# --- confluent-kafka -------------------------------------------------------------------


def test_confluent_sync_commit_committed_metadata_seek_and_resume(broker, topic_name):
    """confluent-kafka: a synchronous commit returns what it stored and committed() reads it
    back; an explicit commit carries per-partition metadata, which a later member reads back
    and resumes from; seek() rewinds a live member, whose next commit moves the offset on."""
    topic = topic_name()
    create_topic(broker.bootstrap, topic, partitions=2)
    records = [Record(f"k{i}".encode(), f"v{i}".encode(), partition=i % 2) for i in range(20)]
    clients.produce("confluent", broker.bootstrap, topic, records)
    group = unique_group()

    c = group_consumer(broker.bootstrap, group)
    try:
        c.subscribe([topic])
        consume(c, 20)
        stored = c.commit(asynchronous=False)
        assert sorted((tp.partition, tp.offset, tp.error) for tp in stored) == [(0, 10, None), (1, 10, None)]
        assert committed_offsets(c, topic, 2) == [(0, 10), (1, 10)]

        # An explicit commit, backwards on partition 0, with metadata on each partition.
        checkpoint = [TopicPartition(topic, 0, 4, metadata="checkpoint-a"),
                      TopicPartition(topic, 1, 10, metadata="checkpoint-b")]
        stored = c.commit(offsets=checkpoint, asynchronous=False)
        assert sorted((tp.partition, tp.offset, tp.error) for tp in stored) == [(0, 4, None), (1, 10, None)]
        back = c.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=WAIT_S)
        assert [(tp.partition, tp.offset, tp.metadata) for tp in back] == [
            (0, 4, "checkpoint-a"), (1, 10, "checkpoint-b")]

        # seek() rewinds the live member; it reads on from there, and commit() stores its
        # position again.
        c.seek(TopicPartition(topic, 0, 7))
        again = consume(c, 3)
        assert [(m.partition(), m.offset()) for m in again] == [(0, 7), (0, 8), (0, 9)]
        stored = c.commit(asynchronous=False)
        assert (0, 10, None) in [(tp.partition, tp.offset, tp.error) for tp in stored], stored
        assert committed_offsets(c, topic, 2) == [(0, 10), (1, 10)]

        # Back to the checkpoint before leaving: the next member starts there.
        c.commit(offsets=checkpoint, asynchronous=False)
    finally:
        c.close()

    # One more record on partition 1: a member starting below 10 there would read older ones first.
    clients.produce("confluent", broker.bootstrap, topic, [Record(b"k20", b"v20", partition=1)])
    later = group_consumer(broker.bootstrap, group)
    try:
        back = later.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=WAIT_S)
        assert [(tp.partition, tp.offset, tp.metadata) for tp in back] == [
            (0, 4, "checkpoint-a"), (1, 10, "checkpoint-b")]
        later.subscribe([topic])
        msgs = consume(later, 7)
        assert sorted((m.partition(), m.offset()) for m in msgs) == [(0, o) for o in range(4, 10)] + [(1, 10)]
    finally:
        later.close()


def test_static_member_restarted_within_session_timeout_keeps_its_partitions_without_rebalance(broker, topic_name):
    """Static membership (group.instance.id): a member that closes (static members send no
    LeaveGroup) and comes back with the same instance id within the session timeout gets its old
    partitions back, and the other member is never revoked: no rebalance happened."""
    topic = topic_name()
    create_topic(broker.bootstrap, topic, partitions=4)
    group = unique_group()
    rb = Rebalances()
    # A session long enough that the restart below is well within it.
    a = group_consumer(broker.bootstrap, group, group_instance_id="instance-a", session_timeout_ms=30000)
    b = group_consumer(broker.bootstrap, group, group_instance_id="instance-b", session_timeout_ms=30000)
    a2 = None
    try:
        rb.subscribe("a", a, topic)
        rb.subscribe("b", b, topic)

        def split() -> bool:
            ha, hb = rb.held.get("a"), rb.held.get("b")
            return bool(ha) and bool(hb) and not ha & hb and ha | hb == set(range(4))

        pump({"a": a, "b": b}, split, "two static members to split 4 partitions")
        a_had, b_had = set(rb.held["a"]), set(rb.held["b"])
        b_revokes = rb.count("b", "revoke")
        a.close()

        a2 = group_consumer(broker.bootstrap, group, group_instance_id="instance-a", session_timeout_ms=30000)
        rb.subscribe("a2", a2, topic)
        pump({"a2": a2, "b": b}, lambda: bool(rb.held.get("a2")), "the restarted static member's assignment")
        # Under the eager protocol a rebalance would revoke b before a2 could be assigned anything.
        assert rb.count("b", "revoke") == b_revokes, rb.events
        assert rb.held["a2"] == a_had, rb.events
        assert rb.held["b"] == b_had, rb.events

        client = admin(broker.bootstrap)
        desc = client.describe_consumer_groups([group])[group].result(timeout=WAIT_S)
        assert desc.state == ConsumerGroupState.STABLE
        assert sorted(m.group_instance_id for m in desc.members) == ["instance-a", "instance-b"]
        by_instance = {m.group_instance_id: {tp.partition for tp in m.assignment.topic_partitions}
                       for m in desc.members}
        assert by_instance == {"instance-a": a_had, "instance-b": b_had}
    finally:
        b.close()
        if a2 is not None:
            a2.close()


def test_commit_from_a_member_rebalanced_away_is_refused(broker, topic_name):
    """A member that stops polling is removed from the group when the rebalance that a new member
    started times out (max.poll.interval.ms); its commit afterwards is refused with
    UNKNOWN_MEMBER_ID or ILLEGAL_GENERATION, while the new owner's commit is accepted."""
    topic = topic_name()
    create_topic(broker.bootstrap, topic, partitions=2)
    group = unique_group()
    rb = Rebalances()
    # The rebalance timeout is max.poll.interval.ms; librdkafka wants it >= session.timeout.ms.
    stale = group_consumer(broker.bootstrap, group, max_poll_interval_ms=SESSION_MS)
    fresh = group_consumer(broker.bootstrap, group)
    try:
        rb.subscribe("stale", stale, topic)
        pump({"stale": stale}, lambda: rb.held.get("stale") == {0, 1}, "the first member's assignment")
        # `stale` polls no more: it cannot answer the rebalance `fresh` starts.
        rb.subscribe("fresh", fresh, topic)
        pump({"fresh": fresh}, lambda: rb.held.get("fresh") == {0, 1},
             "the group to move both partitions to the member that polls", timeout=WAIT_S + SESSION_MS / 1000)

        with pytest.raises(KafkaException) as refused:
            stale.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
        code = refused.value.args[0].code()
        assert code in (KafkaError.UNKNOWN_MEMBER_ID, KafkaError.ILLEGAL_GENERATION), refused.value

        stored = fresh.commit(offsets=[TopicPartition(topic, 0, 2)], asynchronous=False)
        assert [(tp.partition, tp.offset, tp.error) for tp in stored] == [(0, 2, None)]
        assert committed_offsets(fresh, topic, 1) == [(0, 2)]
    finally:
        fresh.close()  # first: otherwise the stale member's rejoin waits for it
        stale.close()


# --- admin -----------------------------------------------------------------------------


def test_admin_lists_describes_alters_and_deletes_a_group(broker, topic_name):
    """confluent-kafka's AdminClient: a group with a live member is listed and described as
    STABLE (its member, assignment, assignor and coordinator), its offsets listed, and it cannot
    be deleted (NON_EMPTY_GROUP) or have its offsets altered (per partition: UNKNOWN_MEMBER_ID);
    once the member left it is EMPTY, its offsets can be altered, and it can be deleted, after
    which it is not listed, it is described as DEAD (or not found), and deleting it again gives
    GROUP_ID_NOT_FOUND."""
    topic = topic_name()
    create_topic(broker.bootstrap, topic, partitions=2)
    clients.produce("confluent", broker.bootstrap, topic,
                    [Record(f"k{i}".encode(), f"v{i}".encode(), partition=i % 2) for i in range(10)])
    group = unique_group()
    client = admin(broker.bootstrap)
    c = group_consumer(broker.bootstrap, group, client_id="e2e-admin-member",
                       partition_assignment_strategy="roundrobin")
    closed = False
    try:
        c.subscribe([topic])
        consume(c, 10)
        c.commit(asynchronous=False)

        listed = client.list_consumer_groups().result(timeout=WAIT_S)
        assert listed.errors == []
        mine = [g for g in listed.valid if g.group_id == group]
        assert len(mine) == 1, [g.group_id for g in listed.valid]
        assert (mine[0].is_simple_consumer_group, mine[0].state) == (False, ConsumerGroupState.STABLE)

        desc = client.describe_consumer_groups([group])[group].result(timeout=WAIT_S)
        assert (desc.group_id, desc.is_simple_consumer_group, desc.state) == (group, False, ConsumerGroupState.STABLE)
        assert desc.partition_assignor == "roundrobin"
        assert f"{desc.coordinator.host}:{desc.coordinator.port}" == broker.bootstrap
        [member] = desc.members
        assert member.client_id == "e2e-admin-member"
        assert member.member_id
        assert "127.0.0.1" in member.host, member.host
        assert sorted(tp.partition for tp in member.assignment.topic_partitions) == [0, 1]

        offsets = client.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(timeout=WAIT_S)
        assert offsets.group_id == group
        assert sorted((tp.topic, tp.partition, tp.offset) for tp in offsets.topic_partitions) == [
            (topic, 0, 5), (topic, 1, 5)]

        with pytest.raises(KafkaException) as refused:
            client.delete_consumer_groups([group])[group].result(timeout=WAIT_S)
        assert refused.value.args[0].code() == KafkaError.NON_EMPTY_GROUP

        altered = client.alter_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 2)])])[group].result(timeout=WAIT_S)
        [tp] = altered.topic_partitions
        assert tp.error is not None and tp.error.code() == KafkaError.UNKNOWN_MEMBER_ID, tp

        c.close()
        closed = True
        listed = client.list_consumer_groups().result(timeout=WAIT_S)
        assert [g.state for g in listed.valid if g.group_id == group] == [ConsumerGroupState.EMPTY]

        altered = client.alter_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 2)])])[group].result(timeout=WAIT_S)
        assert [(tp.partition, tp.offset, tp.error) for tp in altered.topic_partitions] == [(0, 2, None)]
        offsets = client.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0), TopicPartition(topic, 1)])]
        )[group].result(timeout=WAIT_S)
        assert [(tp.partition, tp.offset) for tp in offsets.topic_partitions] == [(0, 2), (1, 5)]

        assert client.delete_consumer_groups([group])[group].result(timeout=WAIT_S) is None
        listed = client.list_consumer_groups().result(timeout=WAIT_S)
        assert group not in [g.group_id for g in listed.valid]
        try:
            desc = client.describe_consumer_groups([group])[group].result(timeout=WAIT_S)
            assert (desc.state, desc.members) == (ConsumerGroupState.DEAD, [])
        except KafkaException as e:
            assert e.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND, e
        offsets = client.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(timeout=WAIT_S)
        assert offsets.topic_partitions == []
        with pytest.raises(KafkaException) as missing:
            client.delete_consumer_groups([group])[group].result(timeout=WAIT_S)
        assert missing.value.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND
    finally:
        if not closed:
            c.close()


def test_kafka_python_admin_groups_and_offset_delete(broker, topic_name):
    """kafka-python's KafkaAdminClient: describe_groups and list_groups show a live group with
    its member and assignment; OffsetDelete is refused per partition while a member is subscribed
    (GROUP_SUBSCRIBED_TO_TOPIC) and deletes the offsets once the group is empty; alter offsets,
    list offsets and delete_groups work on the empty group."""
    import kafka.errors as Errors

    topic = topic_name()
    create_topic(broker.bootstrap, topic, partitions=2)
    clients.produce("kafka-python", broker.bootstrap, topic,
                    [Record(f"k{i}".encode(), f"v{i}".encode(), partition=i % 2) for i in range(10)])
    group = unique_group()
    tps = [KpTopicPartition(topic, 0), KpTopicPartition(topic, 1)]
    client = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    member = kp_consumer(broker.bootstrap, group, topic)
    closed = False
    try:
        kp_read(member, 10)
        member.commit()

        listed = {g["group_id"]: g for g in client.list_groups()}
        assert (listed[group]["protocol_type"], listed[group]["group_state"]) == ("consumer", "Stable")
        desc = client.describe_groups([group])[group]
        assert desc["error"] is None, desc
        assert (desc["group_state"], desc["protocol_type"]) == ("Stable", "consumer")
        [m] = desc["members"]
        assert m["member_metadata"]["topics"] == [topic]
        assigned = [(a["topic"], p) for a in m["member_assignment"]["assigned_partitions"] for p in a["partitions"]]
        assert sorted(assigned) == [(topic, 0), (topic, 1)]

        offsets = client.list_group_offsets(group)[group]
        assert {tp: oam.offset for tp, oam in offsets.items()} == {tps[0]: 5, tps[1]: 5}

        refused = client.delete_group_offsets(group, tps)
        assert refused == {tps[0]: Errors.GroupSubscribedToTopicError, tps[1]: Errors.GroupSubscribedToTopicError}

        member.close()
        closed = True
        assert client.alter_group_offsets(group, {tps[0]: OffsetAndMetadata(3, "", -1)}) == {tps[0]: Errors.NoError}
        offsets = client.list_group_offsets(group)[group]
        assert {tp: oam.offset for tp, oam in offsets.items()} == {tps[0]: 3, tps[1]: 5}

        assert client.delete_group_offsets(group, [tps[1]]) == {tps[1]: Errors.NoError}
        offsets = client.list_group_offsets(group)[group]
        assert {tp: oam.offset for tp, oam in offsets.items() if oam.offset >= 0} == {tps[0]: 3}

        assert client.delete_groups([group]) == {group: "OK"}
        assert group not in {g["group_id"] for g in client.list_groups()}
        assert client.delete_groups([group]) == {group: "GroupIdNotFoundError"}
    finally:
        if not closed:
            member.close()
        client.close()
