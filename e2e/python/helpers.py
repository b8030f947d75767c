"""Small helpers shared by the client tests: waiting on conditions, kcat, topic setup.

Topic setup goes through confluent-kafka's admin client (librdkafka), which every target must
serve anyway; tests of the admin API itself live in test_admin.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

T = TypeVar("T")

# Upper bounds, not expectations: a healthy local broker answers in milliseconds.
WAIT_S = 30.0
KCAT_S = 30.0


def wait_until(check: Callable[[], T], what: str, timeout: float = WAIT_S, poll: float = 0.05) -> T:
    """Polls `check` until it returns a truthy value, which is returned; fails after `timeout`."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except (KafkaException, OSError) as e:  # not ready yet: retried until the deadline
            last_exc = e
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_exc})")
        time.sleep(poll)  # poll interval


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# --- kcat ------------------------------------------------------------------------------


def kcat(bootstrap: str, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Runs kcat against `bootstrap`; stdout and stderr are text."""
    exe = shutil.which("kcat") or shutil.which("kafkacat")
    assert exe, "kcat not installed: run scripts/install-test-deps.sh"
    proc = subprocess.run(
        [exe, "-b", bootstrap, *args], input=input, capture_output=True, text=True, timeout=KCAT_S
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"kcat {' '.join(args)} exited {proc.returncode}\nstderr:\n{proc.stderr}")
    return proc


def kcat_metadata(bootstrap: str, topic: str | None = None) -> dict:
    args = ["-L", "-J"] + (["-t", topic] if topic else [])
    return json.loads(kcat(bootstrap, *args).stdout)


# --- confluent-kafka -------------------------------------------------------------------


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def create_topic(bootstrap: str, name: str, partitions: int = 1, config: dict[str, str] | None = None) -> None:
    """Creates a topic and waits until metadata shows every partition with a leader."""
    client = admin(bootstrap)  # must outlive its futures: dropping it fails them with _DESTROY
    futures = client.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=WAIT_S,
    )
    futures[name].result(timeout=WAIT_S)
    wait_topic_ready(bootstrap, name, partitions)


def wait_topic_ready(bootstrap: str, name: str, partitions: int) -> None:
    client = admin(bootstrap)

    def ready() -> bool:
        md = client.list_topics(topic=name, timeout=5).topics.get(name)
        return (
            md is not None
            and md.error is None
            and len(md.partitions) == partitions
            and all(p.leader >= 0 and p.error is None for p in md.partitions.values())
        )

    wait_until(ready, f"topic {name} with {partitions} led partitions")


def assign_consumer(bootstrap: str, **config) -> Consumer:
    """A consumer for assign() only. librdkafka insists on a group.id even then; a unique one
    with auto-commit off keeps the group unused (no subscribe, no commits)."""
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": f"e2e-assign-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": False,
    }
    conf.update({k.replace("_", "."): v for k, v in config.items()})
    return Consumer(conf)


def consume(consumer: Consumer, count: int, timeout: float = WAIT_S) -> list:
    """Polls until `count` messages arrived; raises on any consumer error."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"got {len(out)} of {count} messages in {timeout}s")
        msg = consumer.poll(min(remaining, 1.0))
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                continue
            raise KafkaException(msg.error())
        out.append(msg)
    return out


def read_partition(bootstrap: str, topic: str, partition: int, count: int, offset: int = 0) -> list:
    consumer = assign_consumer(bootstrap)
    try:
        consumer.assign([TopicPartition(topic, partition, offset)])
        return consume(consumer, count)
    finally:
        consumer.close()
