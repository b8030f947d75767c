"""SSL listeners: the same clients over TLS against Weir and the reference Kafka, configured
alike (a certificate for 127.0.0.1 from a throwaway CA), and the refusals: plaintext to the
TLS port, a client that does not trust the broker's CA; then mutual TLS, where only clients
with a certificate from the CA are served."""

from __future__ import annotations

import socket
import struct
import subprocess
import uuid
from pathlib import Path

import kafka_probe
import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import REPO, WEIR_START_TIMEOUT_S, _terminate
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


# --- mutual TLS --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def weir_mtls(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tls_material):
    """A Weir of its own whose SSL listener requires client certificates (its client CA holds
    for all its SSL listeners, so the session's Weir cannot have both kinds)."""
    binary = Path(request.config.getoption("--weir-bin"))
    binary = binary if binary.is_absolute() else REPO / binary
    data = tmp_path_factory.mktemp("weir-mtls")
    plain = f"127.0.0.1:{kafka_probe.free_port()}"
    mtls = f"127.0.0.1:{kafka_probe.free_port()}"
    t = tls_material
    with open(data / "weir.log", "wb") as out:
        proc = subprocess.Popen(
            [str(binary), "dev", "--data-dir", str(data / "data"),
             "--listener", f"PLAINTEXT://{plain}", "--listener", f"SSL://{mtls}",
             "--tls-cert", str(t.cert), "--tls-key", str(t.key), "--tls-client-ca", str(t.ca)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    try:
        kafka_probe.wait_ready(plain, timeout=WEIR_START_TIMEOUT_S, pid=proc.pid)
        yield mtls
    finally:
        _terminate(proc)


@pytest.fixture
def mtls_bootstrap(broker, request: pytest.FixtureRequest) -> str:
    ssl_conf(broker)
    if broker.target == "weir":
        return request.getfixturevalue("weir_mtls")
    assert broker.mtls_bootstrap, "the reference Kafka was started without its MTLS listener"
    return broker.mtls_bootstrap


def mtls_conf(broker, bootstrap: str, cert=None, key=None) -> dict:
    conf = {"bootstrap.servers": bootstrap, "security.protocol": "SSL",
            "ssl.ca.location": str(broker.tls.ca), "socket.timeout.ms": 5000}
    if cert:
        conf |= {"ssl.certificate.location": str(cert), "ssl.key.location": str(key)}
    return conf


def test_mutual_tls_serves_a_client_whose_certificate_the_client_ca_signed(broker, mtls_bootstrap):
    """ssl.client.auth=required (Kafka) and --tls-client-ca (Weir): a client with a
    certificate from the CA creates a topic, produces and reads back."""
    t = broker.tls
    conf = mtls_conf(broker, mtls_bootstrap, t.client_cert, t.client_key)
    topic = f"t-mtls-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(conf)
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=WAIT_S)
    p = Producer({**conf, "acks": "all"})
    for i in range(5):
        p.produce(topic, value=f"m{i}", partition=0)
    assert p.flush(WAIT_S) == 0
    c = Consumer({**conf, "group.id": f"g-mtls-{uuid.uuid4().hex[:8]}", "auto.offset.reset": "earliest"})
    try:
        c.subscribe([topic])
        assert sorted(m.value().decode() for m in consume(c, 5)) == [f"m{i}" for i in range(5)]
    finally:
        c.close()


@pytest.mark.parametrize("who", ["no certificate", "a foreign CA's certificate"])
def test_mutual_tls_refuses_other_clients(broker, mtls_bootstrap, who):
    """No client certificate, or one another CA signed: no metadata, no topics."""
    t = broker.tls
    if who == "no certificate":
        conf = mtls_conf(broker, mtls_bootstrap)
    else:
        conf = mtls_conf(broker, mtls_bootstrap, t.foreign_cert, t.foreign_key)
    with pytest.raises(KafkaException):
        AdminClient(conf).list_topics(timeout=5)
