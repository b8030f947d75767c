"""franz-go (Go) as a subprocess: e2e/go/clientcheck, built with the machine's Go."""

from __future__ import annotations

import subprocess

import pytest

from conftest import REPO

GO_MODULE = REPO / "e2e" / "go"


@pytest.fixture(scope="session")
def go_clientcheck(tmp_path_factory: pytest.TempPathFactory):
    """The clientcheck binary, built once per session (Go caches the build between runs)."""
    out = tmp_path_factory.mktemp("go") / "clientcheck"
    subprocess.run(["go", "build", "-o", str(out), "./clientcheck"], cwd=GO_MODULE, check=True, timeout=600)
    return out


def test_franz_go_admin_idempotent_produce_partition_consume_and_offsets(broker, topic_name, go_clientcheck):
    """franz-go (newest versions it can negotiate, fetch sessions when offered) creates a topic with a
    config and reads it back, produces 900 records with its idempotent acks=all zstd producer,
    checks end offsets and an offset by time, reads every record back once with key, timestamp
    and header, deletes records and the topic: the same outcome on every broker."""
    run = subprocess.run(
        [str(go_clientcheck), broker.bootstrap, topic_name()], capture_output=True, text=True, timeout=240
    )
    assert run.returncode == 0, f"stdout:\n{run.stdout}\nstderr:\n{run.stderr[-4000:]}"
    assert "go-client-check: ok" in run.stdout
