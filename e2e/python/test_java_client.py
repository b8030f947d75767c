"""The Apache Kafka Java client (kafka-clients from the reference Kafka's jars) as a subprocess."""

from __future__ import annotations

import subprocess

from conftest import REPO, SCRIPTS

JAVA_CHECK = REPO / "e2e" / "java" / "JavaClientCheck.java"


def test_java_client_admin_idempotent_produce_assign_consume_and_offsets(broker, topic_name):
    """The Java client creates, describes and alters a topic, produces 900 records with an
    idempotent acks=all zstd producer, reads them back once each in order with headers through a
    manually assigned consumer, finds the record carrying the largest timestamp (KIP-734) and an
    offset by time, deletes records and the topic: the same outcome on every broker."""
    libs = subprocess.run(
        ["bash", str(SCRIPTS / "kafka-reference.sh"), "libs"], capture_output=True, text=True, check=True
    ).stdout.strip()
    run = subprocess.run(
        ["java", "-Xmx256m", "-cp", f"{libs}/*", str(JAVA_CHECK), broker.bootstrap, topic_name()],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, f"stdout:\n{run.stdout}\nstderr:\n{run.stderr[-4000:]}"
    assert "java-client-check: ok" in run.stdout
