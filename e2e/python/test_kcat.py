"""kcat (librdkafka 2.0 from Debian) as a subprocess: metadata, produce, consume, seek."""

from __future__ import annotations

import zlib

from helpers import create_topic, kcat, kcat_metadata, now_ms, wait_until

FIELDS = "%k\t%s\t%p\t%o\t%T\n"  # key, value, partition, offset, timestamp


def parse(out: str) -> list[tuple[str, str, int, int, int]]:
    rows = []
    for line in out.splitlines():
        key, value, partition, offset, ts = line.split("\t")
        rows.append((key, value, int(partition), int(offset), int(ts)))
    return rows


def read(broker, topic: str, *args: str) -> list[tuple[str, str, int, int, int]]:
    return parse(kcat(broker.bootstrap, "-C", "-t", topic, "-e", "-q", "-f", FIELDS, *args).stdout)


def produce(broker, topic: str, lines: list[str], *args: str) -> None:
    kcat(broker.bootstrap, "-P", "-t", topic, "-K:", *args, input="".join(f"{line}\n" for line in lines))


def test_metadata_text_lists_the_broker_at_its_bootstrap_address(broker):
    """`kcat -L` reports one broker, advertised at the address we connected to."""
    out = kcat(broker.bootstrap, "-L").stdout
    assert " 1 brokers:" in out
    assert f" at {broker.bootstrap}" in out


def test_metadata_json_shows_topic_partitions_and_leaders(broker, topic_name):
    """`kcat -L -J` lists the broker and a created topic's partitions, each led by that broker."""
    topic = topic_name()
    create_topic(broker.bootstrap, topic, partitions=3)
    md = kcat_metadata(broker.bootstrap, topic)

    assert [b["name"] for b in md["brokers"]] == [broker.bootstrap]
    broker_id = md["brokers"][0]["id"]
    assert md["controllerid"] == broker_id
    [t] = [t for t in md["topics"] if t["topic"] == topic]
    assert "error" not in t, t
    assert sorted(p["partition"] for p in t["partitions"]) == [0, 1, 2]
    for p in t["partitions"]:
        assert p["leader"] == broker_id
        assert [r["id"] for r in p["replicas"]] == [broker_id]
        assert [r["id"] for r in p["isrs"]] == [broker_id]


def test_keyed_produce_to_explicit_partition_lands_only_there(broker, topic_name):
    """`-p 1 -K:` writes every record to partition 1 with its key; the other partitions stay empty."""
    topic = topic_name()
    create_topic(broker.bootstrap, topic, partitions=3)
    records = [f"key{i}:value{i}" for i in range(10)]
    produce(broker, topic, records, "-p", "1")

    rows = read(broker, topic, "-p", "1", "-o", "beginning")
    assert [(k, v, p, o) for k, v, p, o, _ in rows] == [(f"key{i}", f"value{i}", 1, i) for i in range(10)]
    assert read(broker, topic, "-p", "0", "-o", "beginning") == []
    assert read(broker, topic, "-p", "2", "-o", "beginning") == []


def test_produce_by_key_places_each_key_in_one_partition(broker, topic_name):
    """Without -p, librdkafka's consistent_random partitioner (CRC32 of the key) picks the
    partition; every record of a key is in that partition, in produce order."""
    topic = topic_name()
    create_topic(broker.bootstrap, topic, partitions=3)
    keys = [f"user-{i}" for i in range(12)]
    records = [f"{k}:{k}-{n}" for n in range(3) for k in keys]
    produce(broker, topic, records)

    rows = read(broker, topic, "-o", "beginning")
    assert len(rows) == len(records)
    for key in keys:
        mine = [r for r in rows if r[0] == key]
        assert {p for _, _, p, _, _ in mine} == {zlib.crc32(key.encode()) % 3}
        assert [v for _, v, _, _, _ in mine] == [f"{key}-{n}" for n in range(3)]
        assert [o for *_, o, _ in mine] == sorted(o for *_, o, _ in mine)
    assert len({p for _, _, p, _, _ in rows}) == 3


def test_consume_from_beginning_returns_records_in_order(broker, topic_name):
    """`-o beginning -e` returns all records of a partition with offsets 0..n-1 and then exits."""
    topic = topic_name()
    create_topic(broker.bootstrap, topic)
    produce(broker, topic, [f"k{i}:v{i}" for i in range(20)])

    rows = read(broker, topic, "-o", "beginning")
    assert [(k, v, p, o) for k, v, p, o, _ in rows] == [(f"k{i}", f"v{i}", 0, i) for i in range(20)]


def test_seek_by_offset_starts_at_that_offset(broker, topic_name):
    """`-o 5` returns records from offset 5 to the end."""
    topic = topic_name()
    create_topic(broker.bootstrap, topic)
    produce(broker, topic, [f"k{i}:v{i}" for i in range(10)])

    rows = read(broker, topic, "-p", "0", "-o", "5")
    assert [(k, o) for k, _, _, o, _ in rows] == [(f"k{i}", i) for i in range(5, 10)]


def test_seek_by_timestamp_starts_at_first_record_at_or_after_it(broker, topic_name):
    """`-o s@<ms>` (ListOffsets by timestamp) starts at the first record with timestamp >= ms."""
    topic = topic_name()
    create_topic(broker.bootstrap, topic)
    produce(broker, topic, [f"early{i}:e{i}" for i in range(5)])
    first = read(broker, topic, "-o", "beginning")
    last_early_ts = max(ts for *_, ts in first)
    # The second batch must carry a later CreateTime than the first: wait for the clock to tick.
    wait_until(lambda: now_ms() > last_early_ts, "the wall clock to pass the first batch")
    produce(broker, topic, [f"late{i}:l{i}" for i in range(5)])
    rows = read(broker, topic, "-o", "beginning")
    late_ts = min(ts for k, *_, ts in rows if k.startswith("late"))
    assert late_ts > last_early_ts

    from_late = read(broker, topic, "-p", "0", "-o", f"s@{late_ts}")
    assert [(k, o) for k, _, _, o, _ in from_late] == [(f"late{i}", 5 + i) for i in range(5)]
    from_start = read(broker, topic, "-p", "0", "-o", f"s@{min(ts for *_, ts in first)}")
    assert len(from_start) == 10


def test_format_string_shows_key_partition_offset_timestamp_headers(broker, topic_name):
    """`-f` renders key, partition, offset, CreateTime timestamp, headers and value sizes."""
    topic = topic_name()
    create_topic(broker.bootstrap, topic, partitions=2)
    before = now_ms()
    produce(broker, topic, ["alpha:one", "beta:two"], "-p", "1", "-H", "trace=abc", "-H", "n=1")
    after = now_ms()

    out = kcat(
        broker.bootstrap, "-C", "-t", topic, "-p", "1", "-o", "beginning", "-e", "-q",
        "-f", "key=%k|partition=%p|offset=%o|ts=%T|headers=%h|value=%s|bytes=%S\n",
    ).stdout
    lines = [dict(f.split("=", 1) for f in line.split("|")) for line in out.splitlines()]
    assert [(r["key"], r["partition"], r["offset"], r["value"], r["bytes"]) for r in lines] == [
        ("alpha", "1", "0", "one", "3"),
        ("beta", "1", "1", "two", "3"),
    ]
    for r in lines:
        assert before <= int(r["ts"]) <= after
        assert r["headers"] == "trace=abc,n=1"


def test_produce_to_unknown_topic_auto_creates_it_with_default_partitions(broker, topic_name):
    """With auto.create.topics.enable (on in the reference config), a Metadata request from a
    producer creates the topic with num.partitions=1, and the records land in it."""
    topic = topic_name()
    assert topic not in {t["topic"] for t in kcat_metadata(broker.bootstrap)["topics"]}
    produce(broker, topic, ["a:1", "b:2"])

    rows = read(broker, topic, "-o", "beginning")
    assert [(k, v, p, o) for k, v, p, o, _ in rows] == [("a", "1", 0, 0), ("b", "2", 0, 1)]
    [t] = [t for t in kcat_metadata(broker.bootstrap, topic)["topics"] if t["topic"] == topic]
    assert [p["partition"] for p in t["partitions"]] == [0]
