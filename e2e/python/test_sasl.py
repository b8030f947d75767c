"""SASL_SSL listeners: the same clients log in with SCRAM-SHA-512, SCRAM-SHA-256 and PLAIN
against Weir and the reference Kafka, configured alike (user SASL_USER made at start: Kafka's
`kafka-storage format --add-scram`, Weir's `--scram-user`), and the refusals: a wrong password,
an unknown user, plaintext to the SASL_SSL port. Then users made and removed through
AlterUserScramCredentials (Kafka's admin API) log in and stop logging in."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (AdminClient, NewTopic, ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialDeletion, UserScramCredentialUpsertion)

from conftest import SASL_USER, SCRIPTS
from test_go_client import go_clientcheck  # noqa: F401 (a fixture)
from test_java_client import JAVA_CHECK
from helpers import WAIT_S, consume, kcat, wait_until


def sasl_conf(broker, mechanism: str = "SCRAM-SHA-512", user: str = SASL_USER[0],
              password: str = SASL_USER[1]) -> dict:
    if broker.sasl_bootstrap is None:
        pytest.skip("an external broker: no SASL_SSL listener configured by these tests")
    return {
        "bootstrap.servers": broker.sasl_bootstrap,
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": str(broker.tls.ca),
        "sasl.mechanism": mechanism,
        "sasl.username": user,
        "sasl.password": password,
    }


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"])
def test_confluent_kafka_creates_produces_and_consumes_in_a_group_over_sasl_ssl(broker, mechanism):
    """librdkafka logs in, creates a topic (admin), produces acks=all and reads it back in a
    group, committing: every connection it opens (bootstrap, leader, coordinator) logs in."""
    conf = sasl_conf(broker, mechanism)
    topic = f"t-sasl-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(conf)
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(timeout=WAIT_S)
    md = admin.list_topics(timeout=WAIT_S)
    assert [f"{b.host}:{b.port}" for b in md.brokers.values()] == [broker.sasl_bootstrap]
    p = Producer({**conf, "acks": "all"})
    for i in range(20):
        p.produce(topic, key=f"k{i}", value=f"v{i}")
    assert p.flush(WAIT_S) == 0
    c = Consumer({**conf, "group.id": f"g-sasl-{uuid.uuid4().hex[:8]}", "auto.offset.reset": "earliest"})
    try:
        c.subscribe([topic])
        got = sorted(m.value().decode() for m in consume(c, 20))
        assert got == sorted(f"v{i}" for i in range(20))
        c.commit(asynchronous=False)
    finally:
        c.close()


def test_kafka_python_logs_in_with_scram_produces_and_consumes_in_a_group(broker):
    """kafka-python's own SCRAM client: produce, a group consumer, and an admin call."""
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

    conf = sasl_conf(broker)
    common = dict(bootstrap_servers=conf["bootstrap.servers"], security_protocol="SASL_SSL",
                  ssl_cafile=conf["ssl.ca.location"], sasl_mechanism="SCRAM-SHA-512",
                  sasl_plain_username=SASL_USER[0], sasl_plain_password=SASL_USER[1])
    topic = f"t-sasl-kp-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(**common)
    try:
        from kafka.admin import NewTopic as KpNewTopic
        admin.create_topics([KpNewTopic(topic, 1, 1)])
        wait_until(lambda: topic in admin.list_topics(), what=f"{topic} listed")
    finally:
        admin.close()
    producer = KafkaProducer(acks="all", **common)
    for i in range(5):
        producer.send(topic, value=f"m{i}".encode(), partition=0).get(timeout=WAIT_S)
    producer.close()
    consumer = KafkaConsumer(topic, group_id=f"g-kp-{uuid.uuid4().hex[:8]}", auto_offset_reset="earliest",
                             consumer_timeout_ms=int(WAIT_S * 1000), **common)
    try:
        got = [m.value.decode() for _, m in zip(range(5), consumer)]
        assert got == [f"m{i}" for i in range(5)]
        consumer.commit()
    finally:
        consumer.close()


def test_kcat_produces_and_consumes_over_sasl_ssl(broker):
    """kcat (Debian's librdkafka, with OpenSSL) with PLAIN. Its
    SCRAM (librdkafka 2.0.2) fails against Kafka and Weir alike, so PLAIN it is."""
    conf = sasl_conf(broker, "PLAIN")
    topic = f"t-sasl-kcat-{uuid.uuid4().hex[:8]}"
    x = ["-X", "security.protocol=SASL_SSL", "-X", f"ssl.ca.location={conf['ssl.ca.location']}",
         "-X", "sasl.mechanisms=PLAIN", "-X", f"sasl.username={SASL_USER[0]}",
         "-X", f"sasl.password={SASL_USER[1]}"]
    kcat(broker.sasl_bootstrap, "-P", "-t", topic, "-p", "0", *x, input="one\ntwo\n")
    out = kcat(broker.sasl_bootstrap, "-C", "-t", topic, "-p", "0", "-o", "beginning", "-e", *x).stdout
    assert out.split() == ["one", "two"]


@pytest.mark.parametrize("who", ["a wrong password", "an unknown user"])
@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "PLAIN"])
def test_bad_credentials_are_refused(broker, mechanism, who):
    """No metadata, no topics: the client reports an authentication failure."""
    user, password = (SASL_USER[0], "not-the-password") if who == "a wrong password" else ("mallory", SASL_USER[1])
    conf = sasl_conf(broker, mechanism, user, password)
    errors = []
    admin = AdminClient({**conf, "error_cb": errors.append, "socket.timeout.ms": 5000})
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=5)
    # librdkafka reports why through its error callback, served by poll.
    wait_until(lambda: admin.poll(0.2) is not None and errors, what="an error reported")
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors


def test_a_client_without_sasl_is_refused_on_the_sasl_port(broker):
    """SSL without SASL to a SASL_SSL listener: the broker answers nothing but the SASL
    handshake, so the client gets no metadata."""
    conf = sasl_conf(broker)
    plain_ssl = {k: v for k, v in conf.items() if not k.startswith("sasl.")}
    plain_ssl["security.protocol"] = "SSL"
    with pytest.raises(KafkaException):
        AdminClient({**plain_ssl, "socket.timeout.ms": 5000}).list_topics(timeout=5)


def test_users_made_through_the_admin_api_log_in_and_removed_ones_do_not(broker):
    """AlterUserScramCredentials (KIP-554) through librdkafka: a new user logs in with the
    mechanism it was given, Describe shows it with its iterations, and once deleted it cannot
    log in. Done over SASL as the start-up user, as on a cluster with only SASL listeners."""
    admin = AdminClient(sasl_conf(broker))
    user = f"u{uuid.uuid4().hex[:8]}"
    cred = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 8192)
    futures = admin.alter_user_scram_credentials([UserScramCredentialUpsertion(user, cred, b"new-password")])
    futures[user].result(timeout=WAIT_S)
    described = admin.describe_user_scram_credentials([user])[user].result(timeout=WAIT_S)
    infos = described.scram_credential_infos
    assert [(i.mechanism, i.iterations) for i in infos] == [(ScramMechanism.SCRAM_SHA_256, 8192)]
    # Kafka's brokers learn new credentials from the metadata log a moment later.
    new = AdminClient({**sasl_conf(broker, "SCRAM-SHA-256", user, "new-password"), "socket.timeout.ms": 5000})
    wait_until(lambda: _logs_in(new), what=f"{user} logs in", poll=0.5)
    futures = admin.alter_user_scram_credentials([UserScramCredentialDeletion(user, ScramMechanism.SCRAM_SHA_256)])
    futures[user].result(timeout=WAIT_S)
    gone = sasl_conf(broker, "SCRAM-SHA-256", user, "new-password")
    wait_until(lambda: not _logs_in(AdminClient({**gone, "socket.timeout.ms": 3000})), what=f"{user} refused", poll=0.5)


def _logs_in(admin: AdminClient) -> bool:
    try:
        admin.list_topics(timeout=5)
        return True
    except KafkaException:
        return False


def test_java_client_runs_its_whole_check_over_sasl_ssl(broker, topic_name, tmp_path):
    """The Java client's full check (admin, idempotent zstd produce, consume, offsets, delete)
    with SCRAM-SHA-512 over SASL_SSL, trusting the CA through a PEM truststore."""
    conf = sasl_conf(broker)
    props = tmp_path / "client.properties"
    props.write_text(
        "security.protocol=SASL_SSL\n"
        "sasl.mechanism=SCRAM-SHA-512\n"
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{SASL_USER[0]}" password="{SASL_USER[1]}";\n'
        "ssl.truststore.type=PEM\n"
        f"ssl.truststore.location={conf['ssl.ca.location']}\n"
    )
    libs = subprocess.run(
        ["bash", str(SCRIPTS / "kafka-reference.sh"), "libs"], capture_output=True, text=True, check=True
    ).stdout.strip()
    run = subprocess.run(
        ["java", "-Xmx256m", "-cp", f"{libs}/*", str(JAVA_CHECK), broker.sasl_bootstrap, topic_name()],
        capture_output=True, text=True, timeout=240, env=dict(os.environ, CLIENT_PROPERTIES=str(props)),
    )
    assert run.returncode == 0, f"stdout:\n{run.stdout}\nstderr:\n{run.stderr[-4000:]}"
    assert "java-client-check: ok" in run.stdout


def test_franz_go_runs_its_whole_check_over_sasl_ssl(broker, topic_name, go_clientcheck):  # noqa: F811
    """franz-go's full check with its own SCRAM-SHA-512 client over SASL_SSL."""
    conf = sasl_conf(broker)
    env = dict(os.environ, CLIENTCHECK_CA=conf["ssl.ca.location"],
               CLIENTCHECK_SASL=f"SCRAM-SHA-512:{SASL_USER[0]}:{SASL_USER[1]}")
    run = subprocess.run(
        [str(go_clientcheck), broker.sasl_bootstrap, topic_name()], capture_output=True, text=True,
        timeout=240, env=env,
    )
    assert run.returncode == 0, f"stdout:\n{run.stdout}\nstderr:\n{run.stderr[-4000:]}"
    assert "go-client-check: ok" in run.stdout
