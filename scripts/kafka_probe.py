#!/usr/bin/env python3
"""Readiness probe for a Kafka-compatible broker, with no dependencies beyond the stdlib.

A broker is "ready" when it answers ApiVersions and then a Metadata request that lists at
least one broker: an open port alone is not enough (Kafka in KRaft mode accepts connections
before the broker has caught up with the metadata log and been unfenced).

Used by scripts/kafka-reference.sh and by e2e/python/conftest.py (for Weir as well), so it
speaks only what every broker must: ApiVersions v0 and a non-flexible Metadata version
(v1..v8) picked from the range the broker advertises.

    kafka_probe.py wait --bootstrap 127.0.0.1:9092 [--timeout 60] [--pid PID]
    kafka_probe.py wait --bootstrap 127.0.0.1:9092 --pid PID --owner   # PID must own the socket
    kafka_probe.py in-use --bootstrap 127.0.0.1:9092
    kafka_probe.py free-port [-n N] [--exclude PORT]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import sys
import time

API_METADATA = 3
API_VERSIONS = 18
CLIENT_ID = b"weir-probe"
# A response larger than this is not a metadata answer for an empty topic list.
RESPONSE_BYTES_MAX = 1 << 20


class ProbeError(Exception):
    """The broker answered, but not (yet) with what a ready broker answers."""


def free_ports(count: int = 1, exclude: tuple[int, ...] = ()) -> list[int]:
    """Distinct TCP ports on 127.0.0.1 that were free a moment ago (the usual race applies).
    Every socket stays bound until all ports are picked, so the kernel never repeats one."""
    held: list[socket.socket] = []
    picked: list[int] = []
    try:
        while len(picked) < count:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(s)
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            if port not in exclude:
                picked.append(port)
        return picked
    finally:
        for s in held:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]


def _request(sock: socket.socket, api_key: int, api_version: int, correlation_id: int, body: bytes) -> bytes:
    # Request header v1: api_key, api_version, correlation_id, client_id (nullable string).
    header = struct.pack(">hhih", api_key, api_version, correlation_id, len(CLIENT_ID)) + CLIENT_ID
    frame = header + body
    sock.sendall(struct.pack(">i", len(frame)) + frame)
    size = struct.unpack(">i", _read_exact(sock, 4))[0]
    if not 4 <= size <= RESPONSE_BYTES_MAX:
        raise ProbeError(f"response size {size} out of range")
    payload = _read_exact(sock, size)
    # Response header v0: correlation_id. ApiVersions always uses header v0.
    (got,) = struct.unpack_from(">i", payload, 0)
    if got != correlation_id:
        raise ProbeError(f"correlation id {got}, expected {correlation_id}")
    return payload[4:]


def _read_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ProbeError("connection closed by broker")
        buf += chunk
    return bytes(buf)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, fmt: str):
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return values[0] if len(values) == 1 else values

    def string(self) -> str | None:
        n = self.take(">h")
        if n < 0:
            return None
        s = self.data[self.pos : self.pos + n].decode()
        self.pos += n
        return s


def api_versions(sock: socket.socket) -> dict[int, tuple[int, int]]:
    r = _Reader(_request(sock, API_VERSIONS, 0, 1, b""))
    error = r.take(">h")
    if error != 0:
        raise ProbeError(f"ApiVersions error code {error}")
    out = {}
    for _ in range(r.take(">i")):
        key, lo, hi = r.take(">hhh")
        out[key] = (lo, hi)
    return out


def metadata_brokers(sock: socket.socket, version: int) -> list[dict]:
    body = struct.pack(">i", 0)  # an empty topic list: brokers only
    if version >= 4:
        body += b"\x00"  # allow_auto_topic_creation = false
    if version >= 8:
        body += b"\x00\x00"  # include cluster/topic authorized operations = false
    r = _Reader(_request(sock, API_METADATA, version, 2, body))
    if version >= 3:
        r.take(">i")  # throttle_time_ms
    brokers = []
    for _ in range(r.take(">i")):
        node_id = r.take(">i")
        host = r.string()
        port = r.take(">i")
        rack = r.string()
        brokers.append({"node_id": node_id, "host": host, "port": port, "rack": rack})
    return brokers


def probe(host: str, port: int, timeout: float = 5.0) -> list[dict]:
    """One attempt: the broker list from Metadata, or an exception."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        versions = api_versions(sock)
        if API_METADATA not in versions:
            raise ProbeError("broker does not advertise Metadata")
        lo, hi = versions[API_METADATA]
        version = min(hi, 8)  # v9+ is flexible (compact strings, tagged fields)
        if version < max(lo, 1):
            raise ProbeError(f"no non-flexible Metadata version in [{lo}, {hi}]")
        brokers = metadata_brokers(sock, version)
    if not brokers:
        raise ProbeError("Metadata lists no brokers yet")
    return brokers


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); /proc tells the truth on Linux.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def port_in_use(host: str, port: int) -> bool:
    """Whether something accepts connections on host:port."""
    try:
        socket.create_connection((host, port), timeout=2).close()
        return True
    except OSError:
        return False


def listens(pid: int, port: int) -> bool:
    """Whether process `pid` owns a socket listening on TCP `port` (Linux /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    local, state, inode = cols[1], cols[3], cols[9]
                    if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                        inodes.add(f"socket:[{inode}]")
        except OSError:
            continue
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                return True
        except OSError:
            continue
    return False


def wait_ready(
    bootstrap: str, timeout: float, pid: int | None = None, owner: bool = False, poll: float = 0.2
) -> list[dict]:
    """Polls until the broker is ready; raises TimeoutError, or RuntimeError if `pid` exits.
    With `owner`, the listening socket must belong to `pid`: a broker someone else left on the
    port does not count as ours being ready."""
    host, _, port = bootstrap.rpartition(":")
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        if pid is not None and not _alive(pid):
            raise RuntimeError(f"process {pid} exited before {bootstrap} was ready (last: {last})")
        try:
            if owner and pid is not None and not listens(pid, int(port)):
                raise ProbeError(f"process {pid} does not listen on port {port} (yet)")
            return probe(host, int(port), timeout=min(5.0, timeout))
        except (OSError, ProbeError, struct.error) as e:
            last = e
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{bootstrap} not ready after {timeout}s (last: {last})")
        time.sleep(poll)  # poll interval, not a wait standing in for a condition


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("wait", help="wait until the broker answers Metadata with a broker list")
    w.add_argument("--bootstrap", required=True, help="host:port")
    w.add_argument("--timeout", type=float, default=60.0)
    w.add_argument("--pid", type=int, help="fail early if this process exits")
    w.add_argument("--owner", action="store_true", help="require --pid to own the listening socket")
    u = sub.add_parser("in-use", help="exit 0 if something accepts connections on host:port")
    u.add_argument("--bootstrap", required=True, help="host:port")
    f = sub.add_parser("free-port", help="print distinct free TCP ports on 127.0.0.1, one a line")
    f.add_argument("-n", type=int, default=1, help="how many")
    f.add_argument("--exclude", type=int, action="append", default=[], help="a port not to return")
    args = parser.parse_args(argv)

    if args.cmd == "free-port":
        print("\n".join(map(str, free_ports(args.n, tuple(args.exclude)))))
        return 0
    if args.cmd == "in-use":
        host, _, port = args.bootstrap.rpartition(":")
        return 0 if port_in_use(host, int(port)) else 1
    try:
        brokers = wait_ready(args.bootstrap, args.timeout, args.pid, owner=args.owner)
    except (TimeoutError, RuntimeError) as e:
        print(f"kafka_probe: {e}", file=sys.stderr)
        return 1
    print(json.dumps(brokers))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
