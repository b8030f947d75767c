"""Fixtures that run the same real-client tests against several Kafka-compatible brokers.

Each test that takes the `broker` fixture runs once per target selected with --targets:

    kafka  the reference Apache Kafka (scripts/kafka-reference.sh, one per session)
    weir   ${WEIR_BIN:-target/release/weir} dev --data-dir <tmp> --listener PLAINTEXT://127.0.0.1:<port>
           --listener SSL://127.0.0.1:<port> --tls-cert ... --tls-key ...

Both serve an SSL listener too, with a certificate from a throwaway CA (`tls_material`).

A test marked `@pytest.mark.kafka_only(reason=...)` is skipped on every other target: it covers
something Weir does not do yet, and the reason says what.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
sys.path.insert(0, str(SCRIPTS))

import kafka_probe  # noqa: E402

TARGETS = ("kafka", "weir")
BROKER_START_TIMEOUT_S = 120.0
WEIR_START_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Broker:
    """A running Kafka-compatible broker the tests talk to."""

    target: str
    bootstrap: str  # host:port of the PLAINTEXT listener
    log: Path | None  # where the broker writes its log, for post-mortems
    ssl_bootstrap: str | None = None  # host:port of the SSL listener (None: an external broker)
    tls: "Tls | None" = None  # the CA its SSL listener's certificate chains to
    # host:port of an SSL listener that requires a client certificate the CA signed (Kafka's
    # ssl.client.auth=required); None where the broker has none (Weir's client CA applies to
    # all its SSL listeners, so test_tls.py starts a Weir of its own for mutual TLS)
    mtls_bootstrap: str | None = None
    # host:port of a SASL_SSL listener (the same certificate) offering PLAIN, SCRAM-SHA-256
    # and SCRAM-SHA-512, with SASL_USER made at start; None on an external broker
    sasl_bootstrap: str | None = None

    @property
    def host(self) -> str:
        return self.bootstrap.rpartition(":")[0]

    @property
    def port(self) -> int:
        return int(self.bootstrap.rpartition(":")[2])


# The users both brokers are started with (Kafka: kafka-storage format --add-scram; Weir:
# --scram-user), for both SCRAM mechanisms. ADMIN_USER is a super user on both (as is
# User:ANONYMOUS, every PLAINTEXT client); a resource no ACL names is open to everyone.
SASL_USER = ("alice", "alice-secret")
OTHER_USER = ("bob", "bob-secret")
ADMIN_USER = ("admin", "admin-secret")
SCRAM_USERS = [SASL_USER, OTHER_USER, ADMIN_USER]


@dataclass(frozen=True)
class Tls:
    """A throwaway CA and a certificate for 127.0.0.1 it signed (openssl, RSA 2048, PEM)."""

    ca: Path  # the CA certificate: clients trust it
    cert: Path  # the broker's certificate
    key: Path  # its private key (PKCS#8)
    keystore: Path  # key and certificate in one file: Kafka's PEM keystore (KIP-651)
    other_ca: Path  # a CA that signed nothing the brokers serve
    client_cert: Path  # a client certificate the CA signed
    client_key: Path
    foreign_cert: Path  # a client certificate the other CA signed
    foreign_key: Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_tls(d: Path) -> Tls:
    for name in ("ca", "other-ca"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                 "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.pem"),
                 "-subj", f"/CN=weir e2e {name}",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / "server.key"),
             "-out", str(d / "server.csr"), "-subj", "/CN=127.0.0.1")
    ext = d / "server.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                   "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.pem"),
             "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "2",
             "-out", str(d / "server.pem"), "-extfile", str(ext))
    keystore = d / "server-keystore.pem"
    keystore.write_text((d / "server.key").read_text() + (d / "server.pem").read_text())
    for name, ca in (("client", "ca"), ("foreign", "other-ca")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / f"{name}.key"),
                 "-out", str(d / f"{name}.csr"), "-subj", f"/CN=weir e2e {name}")
        client_ext = d / "client.ext"
        client_ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                              "extendedKeyUsage=clientAuth\n")
        _openssl("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / f"{ca}.pem"),
                 "-CAkey", str(d / f"{ca}.key"), "-CAcreateserial", "-days", "2",
                 "-out", str(d / f"{name}.pem"), "-extfile", str(client_ext))
    return Tls(ca=d / "ca.pem", cert=d / "server.pem", key=d / "server.key", keystore=keystore,
               other_ca=d / "other-ca.pem", client_cert=d / "client.pem", client_key=d / "client.key",
               foreign_cert=d / "foreign.pem", foreign_key=d / "foreign.key")


@pytest.fixture(scope="session")
def tls_material(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    return make_tls(tmp_path_factory.mktemp("tls"))


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("weir-e2e")
    group.addoption(
        "--targets",
        default=os.environ.get("WEIR_E2E_TARGETS"),
        help="comma-separated brokers to run against: kafka, weir (default: $WEIR_E2E_TARGETS, or both "
        "with weir skipped when its binary is missing; named explicitly, a missing binary is an error)",
    )
    group.addoption(
        "--weir-bin",
        default=os.environ.get("WEIR_BIN", str(REPO / "target" / "release" / "weir")),
        help="Weir binary (default: $WEIR_BIN or target/release/weir)",
    )
    group.addoption(
        "--kafka-bootstrap",
        default=os.environ.get("WEIR_E2E_KAFKA_BOOTSTRAP"),
        help="use an already running reference Kafka at host:port instead of starting one",
    )
    group.addoption(
        "--weir-bootstrap",
        default=os.environ.get("WEIR_E2E_WEIR_BOOTSTRAP"),
        help="use an already running Weir at host:port instead of starting one",
    )


def pytest_configure(config: pytest.Config) -> None:
    chosen = config.getoption("--targets")
    config.weir_targets_explicit = chosen is not None  # type: ignore[attr-defined]
    targets = [t.strip() for t in (chosen or ",".join(TARGETS)).split(",") if t.strip()]
    unknown = sorted(set(targets) - set(TARGETS))
    if unknown or not targets:
        raise pytest.UsageError(f"--targets: unknown {unknown}; choose from {', '.join(TARGETS)}")
    config.weir_targets = targets  # type: ignore[attr-defined]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "broker" in metafunc.fixturenames:
        targets = metafunc.config.weir_targets  # type: ignore[attr-defined]
        metafunc.parametrize("broker", targets, indirect=True, scope="session")


def pytest_runtest_setup(item: pytest.Item) -> None:
    callspec = getattr(item, "callspec", None)
    target = callspec.params.get("broker") if callspec else None
    marker = item.get_closest_marker("kafka_only")
    if marker and target is not None and target != "kafka":
        pytest.skip(f"kafka only: {marker.kwargs.get('reason', 'no reason given')}")


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [f"weir-e2e targets: {', '.join(config.weir_targets)}"]  # type: ignore[attr-defined]


# --- brokers ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kafka_broker(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tls_material: Tls):
    """The reference Apache Kafka, started once per session on a free port."""
    external = request.config.getoption("--kafka-bootstrap")
    if external:
        kafka_probe.wait_ready(external, timeout=10)
        yield Broker("kafka", external, None)
        return
    data = tmp_path_factory.mktemp("kafka")
    log = data / "kafka.log"
    port = kafka_probe.free_port()
    ssl_port = kafka_probe.free_port()
    mtls_port = kafka_probe.free_port()
    sasl_port = kafka_probe.free_port()
    script = str(SCRIPTS / "kafka-reference.sh")
    started = time.monotonic()
    proc = subprocess.run(
        [script, "start", "--port", str(port), "--data-dir", str(data), "--log", str(log),
         "--timeout", str(BROKER_START_TIMEOUT_S), "--ssl-port", str(ssl_port),
         "--ssl-keystore", str(tls_material.keystore), "--ssl-truststore", str(tls_material.ca),
         "--mtls-port", str(mtls_port), "--sasl-port", str(sasl_port),
         *[a for u in SCRAM_USERS for a in ("--scram-user", "=".join(u))]],
        capture_output=True, text=True, timeout=BROKER_START_TIMEOUT_S + 600,  # + a first fetch
    )
    if proc.returncode != 0:
        pytest.fail(f"reference Kafka did not start:\n{proc.stderr}", pytrace=False)
    bootstrap = proc.stdout.strip().splitlines()[-1]
    sys.stderr.write(f"\nreference Kafka at {bootstrap} in {time.monotonic() - started:.1f}s, log {log}\n")
    try:
        yield Broker("kafka", bootstrap, log, f"127.0.0.1:{ssl_port}", tls_material, f"127.0.0.1:{mtls_port}",
                     f"127.0.0.1:{sasl_port}")
    finally:
        subprocess.run([script, "stop", "--data-dir", str(data)], capture_output=True, timeout=120)


@pytest.fixture(scope="session")
def weir_broker(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tls_material: Tls):
    """Weir in dev mode (single process), started once per session on a free port."""
    external = request.config.getoption("--weir-bootstrap")
    if external:
        kafka_probe.wait_ready(external, timeout=10)
        yield Broker("weir", external, None)
        return
    binary = Path(request.config.getoption("--weir-bin"))
    if not binary.is_absolute():
        binary = REPO / binary
    if not os.access(binary, os.X_OK):
        why = f"weir binary not found at {binary}: build it (cargo build --release) or run with --targets kafka"
        if request.config.weir_targets_explicit:  # type: ignore[attr-defined]
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    data = tmp_path_factory.mktemp("weir")
    log = data / "weir.log"
    bootstrap = f"127.0.0.1:{kafka_probe.free_port()}"
    ssl_bootstrap = f"127.0.0.1:{kafka_probe.free_port()}"
    sasl_bootstrap = f"127.0.0.1:{kafka_probe.free_port()}"
    # Like the reference Kafka's group.initial.rebalance.delay.ms=0: a new group's first
    # rebalance is not held back 3 s for more members. An environment variable rather than a
    # flag, so a weir binary without groups still starts.
    env = dict(os.environ, WEIR_GROUP_INITIAL_REBALANCE_DELAY_MS="0")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(binary), "dev", "--data-dir", str(data / "data"),
             "--listener", f"PLAINTEXT://{bootstrap}", "--listener", f"SSL://{ssl_bootstrap}",
             "--listener", f"SASL_SSL://{sasl_bootstrap}",
             "--tls-cert", str(tls_material.cert), "--tls-key", str(tls_material.key),
             "--sasl-mechanisms", "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
             "--scram-user", ",".join("=".join(u) for u in SCRAM_USERS),
             "--super-users", f"User:ANONYMOUS,User:{ADMIN_USER[0]}", "--allow-everyone-if-no-acl-found", "true"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, env=env,
        )
    try:
        try:
            kafka_probe.wait_ready(bootstrap, timeout=WEIR_START_TIMEOUT_S, pid=proc.pid)
        except (TimeoutError, RuntimeError) as e:
            tail = log.read_text(errors="replace")[-4000:]
            pytest.fail(f"weir did not become ready: {e}\n--- {log} ---\n{tail}", pytrace=False)
        yield Broker("weir", bootstrap, log, ssl_bootstrap, tls_material, sasl_bootstrap=sasl_bootstrap)
    finally:
        _terminate(proc)


def _terminate(proc: subprocess.Popen, grace_s: float = 15.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=grace_s)


@pytest.fixture(scope="session")
def broker(request: pytest.FixtureRequest) -> Broker:
    """The broker under test: one of the targets chosen with --targets."""
    return request.getfixturevalue(f"{request.param}_broker")


# --- per-test helpers ------------------------------------------------------------------


@pytest.fixture
def topic_name(request: pytest.FixtureRequest):
    """A factory of topic names unique to this test (and run): t-<test>-<n>-<random>."""
    import re
    import uuid

    base = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name.removeprefix("test_")).strip("-")[:80]
    counter = iter(range(1_000_000))

    def make(suffix: str = "") -> str:
        return f"t-{base}-{next(counter)}{suffix}-{uuid.uuid4().hex[:8]}"

    return make
