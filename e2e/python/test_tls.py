"""SSL listeners: the same clients over TLS against Weir and the reference Kafka, configured
alike (a certificate for 127.0.0.1 from a throwaway CA, no client certificates), and the
refusals: plaintext to the TLS port, a client that does not trust the broker's CA."""

from __future__ import annotations

import socket
import struct
import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from helpers import WAIT_S, consume, kcat, wait_until


def ssl_conf(broker, ca=None) -> dict:
    if broker.ssl_bootstrap is None:
        pytest.skip("an external broker: no SSL listener configured by these tests")
    return {
        "bootstrap.servers": broker.ssl_bootstrap,
        "security.protocol": "SSL",
        "ssl.ca.location": str(ca or broker.tls.ca),
    }


def test_confluent_kafka_creates_produces_and_consumes_in_a_group_over_ssl(broker):
    """librdkafka over SSL: an admin call, acks=all produce, and a group consumer reading it
    back; Metadata over the SSL listener names the SSL address."""
    conf = ssl_conf(broker)
    topic = f"t-tls-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(conf)
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(timeout=WAIT_S)
    md = admin.list_topics(timeout=WAIT_S)
    assert [f"{b.host}:{b.port}" for b in md.brokers.values()] == [broker.ssl_bootstrap]
    p = Producer({**conf, "acks": "all"})
    for i in range(20):
        p.produce(topic, key=f"k{i}", value=f"v{i}")
    assert p.flush(WAIT_S) == 0
    c = Consumer({**conf, "group.id": f"g-tls-{uuid.uuid4().hex[:8]}", "auto.offset.reset": "earliest"})
    try:
        c.subscribe([topic])
        got = sorted(m.value().decode() for m in consume(c, 20))
        assert got == sorted(f"v{i}" for i in range(20))
        c.commit(asynchronous=False)
    finally:
        c.close()


def test_kafka_python_round_trips_over_ssl(broker):
    """kafka-python (Python's ssl module, OpenSSL) produces and reads back over SSL."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    conf = ssl_conf(broker)
    common = dict(bootstrap_servers=conf["bootstrap.servers"], security_protocol="SSL",
                  ssl_cafile=conf["ssl.ca.location"])
    topic = f"t-tls-kp-{uuid.uuid4().hex[:8]}"
    producer = KafkaProducer(acks="all", **common)
    admin = AdminClient(conf)  # must outlive its futures
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=WAIT_S)
    for i in range(5):
        producer.send(topic, value=f"m{i}".encode(), partition=0).get(timeout=WAIT_S)
    producer.close()
    consumer = KafkaConsumer(consumer_timeout_ms=int(WAIT_S * 1000), **common)
    try:
        consumer.assign([TopicPartition(topic, 0)])
        consumer.seek_to_beginning()
        got = [m.value.decode() for _, m in zip(range(5), consumer)]
        assert got == [f"m{i}" for i in range(5)]
    finally:
        consumer.close()


def test_kcat_lists_metadata_over_ssl(broker):
    """kcat (Debian's librdkafka) with -X security.protocol=SSL."""
    conf = ssl_conf(broker)
    out = kcat(broker.ssl_bootstrap, "-L", "-X", "security.protocol=SSL",
               "-X", f"ssl.ca.location={conf['ssl.ca.location']}").stdout
    assert f" at {broker.ssl_bootstrap}" in out


def test_plaintext_to_the_ssl_port_gets_no_kafka_answer_and_a_closed_connection(broker):
    """A Kafka ApiVersions request in plaintext to the TLS port: the broker closes the
    connection (Kafka may send a TLS alert first) instead of answering or waiting."""
    ssl_conf(broker)
    host, port = broker.ssl_bootstrap.rsplit(":", 1)
    client_id = b"e2e"
    body = struct.pack(">hhih", 18, 3, 7, len(client_id)) + client_id + b"\x00" + b"\x00\x00\x00"
    with socket.create_connection((host, int(port)), timeout=WAIT_S) as s:
        s.sendall(struct.pack(">i", len(body)) + body)
        received = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            received += chunk
    # A Kafka answer would start with a size and correlation id 7; a TLS alert starts with 0x15.
    assert received[4:8] != struct.pack(">i", 7), received


def test_a_client_that_does_not_trust_the_brokers_ca_is_refused(broker):
    """Certificate verification is on: a client trusting another CA gets no metadata."""
    conf = ssl_conf(broker, ca=broker.tls.other_ca if broker.tls else None)
    admin = AdminClient({**conf, "socket.timeout.ms": 3000})
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=5)


def test_the_plaintext_listener_still_names_plaintext_addresses(broker):
    """One broker, two listeners: Metadata over PLAINTEXT keeps the PLAINTEXT address."""
    ssl_conf(broker)
    md = wait_until(lambda: AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=5),
                    "metadata over PLAINTEXT")
    assert [f"{b.host}:{b.port}" for b in md.brokers.values()] == [broker.bootstrap]
