"""`weir group` (the CLI) against a target: list, describe, reset-offsets and delete, checked
through their JSON output, with group state made by confluent-kafka consumers.

The CLI speaks to any Kafka, so these run against the reference Kafka; Weir gets them once it
has a group coordinator.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

import clients
from clients import Record
from helpers import WAIT_S, consume, create_topic, wait_until

REPO = Path(__file__).resolve().parents[2]
# A bound, not an expectation: each command answers in well under a second locally.
WEIR_S = 60.0


@pytest.fixture(scope="module")
def weir_bin(request: pytest.FixtureRequest) -> Path:
    binary = Path(request.config.getoption("--weir-bin"))
    if not binary.is_absolute():
        binary = REPO / binary
    if not os.access(binary, os.X_OK):
        pytest.fail(f"weir binary not found at {binary}: build it (cargo build --release -p weir-cli) "
                    "or pass --weir-bin", pytrace=False)
    return binary


def weir(weir_bin: Path, broker, *args: str) -> subprocess.CompletedProcess:
    """Runs `weir -b <broker> -o json ARGS`; stdout and stderr are text."""
    return subprocess.run(
        [str(weir_bin), "-b", broker.bootstrap, "-o", "json", *args],
        capture_output=True, text=True, timeout=WEIR_S, stdin=subprocess.DEVNULL,
    )


def weir_ok(weir_bin: Path, broker, *args: str) -> dict:
    proc = weir(weir_bin, broker, *args)
    assert proc.returncode == 0, f"weir {' '.join(args)} exited {proc.returncode}\nstderr:\n{proc.stderr}"
    return json.loads(proc.stdout)


def weir_refused(weir_bin: Path, broker, *args: str) -> subprocess.CompletedProcess:
    proc = weir(weir_bin, broker, *args)
    assert proc.returncode != 0, f"weir {' '.join(args)} succeeded but should not have:\n{proc.stdout}"
    return proc


def committed(description: dict, topic: str) -> dict[int, int | None]:
    return {p["partition"]: p["committed"] for p in description["partitions"] if p["topic"] == topic}


def member(bootstrap: str, group: str, client_id: str) -> Consumer:
    return Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "client.id": client_id,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })


def new_group() -> str:
    return f"e2e-cli-{uuid.uuid4().hex[:8]}"


def rfc3339(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.fixture
def two_partitions(broker, topic_name):
    """A topic with partitions 0 and 1, five records each. Record i goes to partition i % 2 with
    CreateTime base + i s, so partition 0 holds base+0,2,4,6,8 s and partition 1 base+1,3,5,7,9 s."""
    topic = topic_name()
    create_topic(broker.bootstrap, topic, partitions=2)
    base = (int(time.time()) - 60) * 1000
    records = [Record(f"k{i}".encode(), f"v{i}".encode(), partition=i % 2, timestamp=base + i * 1000)
               for i in range(10)]
    clients.produce("confluent", broker.bootstrap, topic, records)
    return topic, base


def test_list_and_describe_show_members_assignments_and_lag(broker, weir_bin, two_partitions):
    """With one subscribed member that committed 5 in partition 0 and 2 in partition 1, `list`
    shows the group Stable with one member, and `describe` shows the member's client id and its
    decoded assignment (both partitions), per partition committed/log-end/lag and the holder,
    total lag 3, and the coordinator (Kafka's only broker)."""
    topic, _ = two_partitions
    group = new_group()
    consumer = member(broker.bootstrap, group, "cli-e2e-member")
    try:
        consumer.subscribe([topic])
        consume(consumer, 10)
        consumer.commit(offsets=[TopicPartition(topic, 0, 5), TopicPartition(topic, 1, 2)], asynchronous=False)

        listed = {g["group"]: g for g in weir_ok(weir_bin, broker, "group", "list")["groups"]}
        assert listed[group] == {"group": group, "state": "Stable", "protocol_type": "consumer",
                                 "protocol": "range", "members": 1}

        d = weir_ok(weir_bin, broker, "group", "describe", group)
        assert (d["group"], d["state"], d["protocol_type"]) == (group, "Stable", "consumer")
        assert d["coordinator"]["port"] == broker.port and d["coordinator"]["id"] is not None
        assert len(d["members"]) == 1
        m = d["members"][0]
        assert m["client_id"] == "cli-e2e-member" and m["member_id"].startswith("cli-e2e-member-")
        assert m["assignment"] == [{"topic": topic, "partitions": [0, 1]}]
        assert m["assignment_error"] is None
        rows = {p["partition"]: p for p in d["partitions"] if p["topic"] == topic}
        assert {p: (r["committed"], r["log_end"], r["lag"]) for p, r in rows.items()} == {
            0: (5, 5, 0), 1: (2, 5, 3)}
        assert all(r["member_id"] == m["member_id"] and r["client_id"] == "cli-e2e-member" for r in rows.values())
        assert d["total_lag"] == 3

        # The table says the same for people.
        table = subprocess.run([str(weir_bin), "-b", broker.bootstrap, "group", "describe", group],
                               capture_output=True, text=True, timeout=WEIR_S, check=True).stdout
        assert f"group {group}: Stable" in table and "total lag 3" in table and "cli-e2e-member" in table
    finally:
        consumer.close()


def test_reset_offsets_is_refused_with_members_then_dry_runs_and_executes(broker, weir_bin, two_partitions):
    """While the group has a member every reset is refused, dry run or not, saying to stop the
    consumers; once it is Empty a dry run prints the plan and changes nothing, and --execute
    commits it: shift-by, to-offset (clamped to the log end), to-datetime and to-latest."""
    topic, base = two_partitions
    group = new_group()
    consumer = member(broker.bootstrap, group, "cli-e2e-reset")
    try:
        consumer.subscribe([topic])
        consume(consumer, 10)
        consumer.commit(offsets=[TopicPartition(topic, 0, 5), TopicPartition(topic, 1, 2)], asynchronous=False)
        for execute in ([], ["--execute"]):
            proc = weir_refused(weir_bin, broker, "group", "reset-offsets", group, "--topic", topic,
                                "--to-earliest", *execute)
            assert "stop the group's consumers first" in proc.stderr and "Stable" in proc.stderr, proc.stderr
        assert committed(weir_ok(weir_bin, broker, "group", "describe", group), topic) == {0: 5, 1: 2}
    finally:
        consumer.close()
    wait_until(lambda: weir_ok(weir_bin, broker, "group", "describe", group)["state"] == "Empty",
               f"group {group} to be Empty after its member left")

    dry = weir_ok(weir_bin, broker, "group", "reset-offsets", group, "--topic", topic, "--to-earliest")
    assert dry["executed"] is False
    assert [(p["partition"], p["current"], p["new"], p["log_start"], p["log_end"]) for p in dry["partitions"]] == [
        (0, 5, 0, 0, 5), (1, 2, 0, 0, 5)]
    assert committed(weir_ok(weir_bin, broker, "group", "describe", group), topic) == {0: 5, 1: 2}

    shifted = weir_ok(weir_bin, broker, "group", "reset-offsets", group, "--topic", f"{topic}:1",
                      "--shift-by", "-1", "--execute")
    assert shifted["executed"] is True
    assert [(p["partition"], p["current"], p["new"]) for p in shifted["partitions"]] == [(1, 2, 1)]
    assert committed(weir_ok(weir_bin, broker, "group", "describe", group), topic) == {0: 5, 1: 1}

    clamped = weir_ok(weir_bin, broker, "group", "reset-offsets", group, "--all-topics", "--to-offset", "100")
    assert [(p["partition"], p["new"], p["note"] is not None) for p in clamped["partitions"]] == [
        (0, 5, True), (1, 5, True)]

    # base+4.5 s: partition 0's first record at or after it is base+6 s (offset 3), partition
    # 1's is base+5 s (offset 2).
    at = weir_ok(weir_bin, broker, "group", "reset-offsets", group, "--topic", topic,
                 "--to-datetime", rfc3339(base + 4500), "--execute")
    assert [(p["partition"], p["new"]) for p in at["partitions"]] == [(0, 3), (1, 2)]
    d = weir_ok(weir_bin, broker, "group", "describe", group)
    assert (committed(d, topic), d["total_lag"]) == ({0: 3, 1: 2}, 5)

    weir_ok(weir_bin, broker, "group", "reset-offsets", group, "--topic", topic, "--to-latest", "--execute")
    d = weir_ok(weir_bin, broker, "group", "describe", group)
    assert (committed(d, topic), d["total_lag"], d["state"]) == ({0: 5, 1: 5}, 0, "Empty")

    # What the group then reads: nothing before the offsets we committed.
    consumer = member(broker.bootstrap, group, "cli-e2e-reset-2")
    try:
        positions = consumer.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=WAIT_S)
        assert [(tp.partition, tp.offset) for tp in positions] == [(0, 5), (1, 5)]
    finally:
        consumer.close()


def test_reset_offsets_refuses_what_it_cannot_do(broker, weir_bin, two_partitions):
    """A group that never committed has nothing to shift and no topics for --all-topics; an
    unknown topic or partition is named; a new group gets offsets with --execute."""
    topic, _ = two_partitions
    group = new_group()
    proc = weir_refused(weir_bin, broker, "group", "reset-offsets", group, "--topic", topic, "--shift-by", "1")
    assert "no committed offset to shift" in proc.stderr and "--to-earliest" in proc.stderr, proc.stderr
    proc = weir_refused(weir_bin, broker, "group", "reset-offsets", group, "--all-topics", "--to-latest")
    assert "no committed offsets" in proc.stderr and "--topic" in proc.stderr, proc.stderr
    proc = weir_refused(weir_bin, broker, "group", "reset-offsets", group, "--topic", f"{topic}:2", "--to-latest")
    assert "there is no partition 2" in proc.stderr, proc.stderr
    proc = weir_refused(weir_bin, broker, "group", "reset-offsets", group, "--topic", f"{topic}-missing",
                        "--to-latest")
    assert "does not exist" in proc.stderr, proc.stderr
    proc = weir_refused(weir_bin, broker, "group", "describe", group)
    assert f"consumer group {group} does not exist" in proc.stderr, proc.stderr

    plan = weir_ok(weir_bin, broker, "group", "reset-offsets", group, "--topic", f"{topic}:0", "--to-offset", "2",
                   "--execute")
    assert [(p["partition"], p["current"], p["new"]) for p in plan["partitions"]] == [(0, None, 2)]
    d = weir_ok(weir_bin, broker, "group", "describe", group)
    assert (d["state"], d["members"], committed(d, topic), d["total_lag"]) == ("Empty", [], {0: 2}, 3)


def test_delete_refuses_a_group_with_members_and_deletes_an_empty_one(broker, weir_bin, two_partitions):
    """DeleteGroups on a group with a member fails with NON_EMPTY_GROUP and says to stop the
    consumers; once Empty it is deleted with its offsets; a second delete is GROUP_ID_NOT_FOUND,
    which --if-exists accepts."""
    topic, _ = two_partitions
    group = new_group()
    consumer = member(broker.bootstrap, group, "cli-e2e-delete")
    try:
        consumer.subscribe([topic])
        consume(consumer, 10)
        consumer.commit(asynchronous=False)
        proc = weir_refused(weir_bin, broker, "group", "delete", group)
        [outcome] = json.loads(proc.stdout)["groups"]
        assert (outcome["group"], outcome["deleted"], outcome["code"]) == (group, False, "NON_EMPTY_GROUP")
        assert "not empty" in outcome["error"], outcome
        assert "stop the group's consumers first" in proc.stderr, proc.stderr
    finally:
        consumer.close()
    wait_until(lambda: weir_ok(weir_bin, broker, "group", "describe", group)["state"] == "Empty",
               f"group {group} to be Empty after its member left")

    assert weir_ok(weir_bin, broker, "group", "delete", group)["groups"] == [
        {"group": group, "deleted": True, "error": None, "code": None}]
    assert group not in [g["group"] for g in weir_ok(weir_bin, broker, "group", "list")["groups"]]
    proc = weir_refused(weir_bin, broker, "group", "describe", group)
    assert "does not exist" in proc.stderr, proc.stderr

    proc = weir_refused(weir_bin, broker, "group", "delete", group)
    assert json.loads(proc.stdout)["groups"][0]["code"] == "GROUP_ID_NOT_FOUND"
    assert "weir group list" in proc.stderr, proc.stderr
    assert weir_ok(weir_bin, broker, "group", "delete", group, "--if-exists")["groups"] == [
        {"group": group, "deleted": False, "error": None, "code": None}]


def test_a_new_protocol_group_shows_its_offsets_and_the_broker_guards_its_reset(broker, weir_bin, two_partitions):
    """A KIP-848 consumer group (group.protocol=consumer) is one DescribeGroups cannot describe:
    `describe` shows its committed offsets and lag with a note that its members are hidden, and
    a reset --execute while it has a member is refused by the broker (UNKNOWN_MEMBER_ID), with
    the advice to stop the consumers; once the member left, the reset commits."""
    topic, _ = two_partitions
    group = new_group()
    consumer = Consumer({
        "bootstrap.servers": broker.bootstrap,
        "group.id": group,
        "group.protocol": "consumer",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    try:
        consumer.subscribe([topic])
        consume(consumer, 10)
        consumer.commit(offsets=[TopicPartition(topic, 0, 4), TopicPartition(topic, 1, 1)], asynchronous=False)
        d = weir_ok(weir_bin, broker, "group", "describe", group)
        assert (committed(d, topic), d["total_lag"], d["state"]) == ({0: 4, 1: 1}, 5, "Dead")
        assert "KIP-848" in d["note"], d
        proc = weir_refused(weir_bin, broker, "group", "reset-offsets", group, "--topic", topic,
                            "--to-earliest", "--execute")
        assert "UnknownMemberId" in proc.stderr and "stop the group's consumers first" in proc.stderr, proc.stderr
        assert committed(weir_ok(weir_bin, broker, "group", "describe", group), topic) == {0: 4, 1: 1}
    finally:
        consumer.close()

    # The member's departure reaches the coordinator with the close; a reset may still race it.
    def reset() -> dict | None:
        proc = weir(weir_bin, broker, "group", "reset-offsets", group, "--topic", topic, "--to-earliest",
                    "--execute")
        return json.loads(proc.stdout) if proc.returncode == 0 else None

    plan = wait_until(reset, f"a reset of {group} to be accepted after its member left")
    assert [(p["partition"], p["new"]) for p in plan["partitions"]] == [(0, 0), (1, 0)]
    assert committed(weir_ok(weir_bin, broker, "group", "describe", group), topic) == {0: 0, 1: 0}
