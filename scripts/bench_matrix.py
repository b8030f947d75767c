#!/usr/bin/env python3
"""Weir and Apache Kafka side by side, with the same client (`weir bench`, librdkafka).

    python3 scripts/bench_matrix.py [--quick] [--out docs/bench-results.md]

Runs, on this machine:
  * the ceilings: the client alone against `weir bench sink` (a broker that discards),
    disk write bandwidth (dd with fdatasync) and loopback TCP bandwidth;
  * time from process start to the first acknowledged record, for each broker;
  * produce then consume for record sizes 100 B and 1 KiB, acks=1 and acks=all, 1 and 3
    partitions, alternating Weir and Kafka for each row;
  * each broker's peak resident memory (VmHWM) over the run.

Kafka 4.x runs from scripts/kafka-reference.sh with Kafka's own production JVM settings
(G1, 1 GiB heap, full JIT), not the small test settings. Prints a Markdown report.
Stdlib only. Each run is bounded (record counts), and everything listens on 127.0.0.1.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WEIR = Path(os.environ.get("WEIR_BIN", ROOT / "target/release/weir"))
KAFKA_SCRIPT = ROOT / "scripts/kafka-reference.sh"
# Kafka's own defaults from kafka-run-class.sh / kafka-server-start.sh.
KAFKA_PROD_JVM = ("-server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 "
                  "-XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true")
KAFKA_PROD_HEAP = "-Xmx1G -Xms1G"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open within {timeout}s")


def peak_rss_mib(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


class Weir:
    name = "Weir"

    def __init__(self, workdir):
        self.dir = Path(workdir) / "weir"
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.proc = None

    def start(self):
        t0 = time.time()
        self.proc = subprocess.Popen(
            [str(WEIR), "dev", "--data-dir", str(self.dir), "--kafka-addr", self.bootstrap],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        first_record(self.bootstrap)
        return time.time() - t0

    def pid(self):
        return self.proc.pid

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=60)


class Kafka:
    name = "Kafka"

    def __init__(self, workdir):
        self.dir = Path(workdir) / "kafka"
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"

    def start(self):
        env = dict(os.environ, KAFKA_JVM_OPTS=KAFKA_PROD_JVM, KAFKA_HEAP_OPTS=KAFKA_PROD_HEAP)
        t0 = time.time()
        subprocess.run(["bash", str(KAFKA_SCRIPT), "start", "--port", str(self.port), "--data-dir", str(self.dir)],
                       env=env, check=True, stdout=subprocess.DEVNULL)
        first_record(self.bootstrap)
        return time.time() - t0

    def pid(self):
        return int((self.dir / "kafka.pid").read_text().strip())

    def stop(self):
        subprocess.run(["bash", str(KAFKA_SCRIPT), "stop", "--data-dir", str(self.dir)], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def first_record(bootstrap, timeout=120):
    """Produces one record (acks=all) until it is acknowledged."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = subprocess.run([str(WEIR), "--brokers", bootstrap, "--request-timeout-ms", "2000", "produce",
                            "-t", "first-record", "--acks", "all"],
                           input=b"hello\n", capture_output=True)
        if r.returncode == 0:
            return
        time.sleep(0.05)
    raise RuntimeError(f"no record acknowledged by {bootstrap} within {timeout}s")


def bench(bootstrap, *args):
    cmd = [str(WEIR), "--brokers", bootstrap, "--output", "json", "bench", *args]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1]), " ".join(["weir", "bench", *args])


def disk_write_mb_s(workdir):
    path = Path(workdir) / "dd.bin"
    r = subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=1M", "count=2048", "conv=fdatasync"],
                       capture_output=True, text=True)
    path.unlink(missing_ok=True)
    # dd prints "... bytes (...) copied, S s, X MB/s"
    last = r.stderr.strip().splitlines()[-1]
    return last


def loopback_mb_s(total_mib=4096):
    port = free_port()
    srv = socket.socket()
    srv.bind(("127.0.0.1", port))
    srv.listen(1)
    got = [0]

    def sink():
        c, _ = srv.accept()
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        while True:
            n = c.recv_into(view)
            if n == 0:
                break
            got[0] += n
        c.close()

    t = threading.Thread(target=sink)
    t.start()
    chunk = b"\0" * (1 << 20)
    s = socket.create_connection(("127.0.0.1", port))
    t0 = time.time()
    for _ in range(total_mib):
        s.sendall(chunk)
    s.close()
    t.join()
    srv.close()
    return got[0] / (1 << 20) / (time.time() - t0)


def fmt_row(target, mode, size, acks, parts, rep):
    lat = rep.get("latency_ms") or {}
    p = lambda k: f"{lat[k]:.1f}" if k in lat and lat[k] is not None else "–"
    return (f"| {target} | {mode} | {size} B | {acks} | {parts} | {rep['records_per_sec']:,.0f} | "
            f"{rep['mb_per_sec']:.1f} | {p('p50')} | {p('p99')} | {p('p99_9')} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer records per row (a smoke run)")
    ap.add_argument("--out", help="also write the report to this file")
    args = ap.parse_args()
    n100 = 300_000 if args.quick else 3_000_000
    n1k = 50_000 if args.quick else 600_000

    out = []
    say = lambda s="": (print(s, flush=True), out.append(s))
    work = tempfile.mkdtemp(prefix="weir-bench-")
    cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
    say(f"Machine: {os.cpu_count()} cores ({cpu}), {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB; "
        f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    say()
    say("### Ceilings")
    say()
    say(f"- Disk write (dd 2 GiB, fdatasync): {disk_write_mb_s(work)}")
    say(f"- Loopback TCP (one Python stream, 1 MiB writes): {loopback_mb_s():,.0f} MiB/s")
    sink_port = free_port()
    sink = subprocess.Popen([str(WEIR), "bench", "sink", "--addr", f"127.0.0.1:{sink_port}", "--partitions", "3"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(sink_port)
        for size, n in ((100, n100), (1024, n1k)):
            for acks in ("1", "all"):
                rep, cmd = bench(f"127.0.0.1:{sink_port}", "produce", "-t", f"sink-{size}-{acks}",
                                 "-s", str(size), "-n", str(n), "--acks", acks, "-p", "1")
                say(f"- Client alone against the discarding sink, {size} B, acks={acks}: "
                    f"{rep['records_per_sec']:,.0f} records/s, {rep['mb_per_sec']:.1f} MB/s (`{cmd} --brokers <sink>`)")
    finally:
        sink.terminate()
        sink.wait()

    brokers = [Weir(work), Kafka(work)]
    say()
    say("### Start to first acknowledged record, and memory")
    say()
    startup = {}
    for b in brokers:
        startup[b.name] = b.start()
    rows = []
    try:
        for size, n in ((100, n100), (1024, n1k)):
            for acks in ("1", "all"):
                for parts in (1, 3):
                    for b in brokers:
                        topic = f"bench-{size}-{acks}-{parts}"
                        prod, pcmd = bench(b.bootstrap, "produce", "-t", topic, "-s", str(size), "-n", str(n),
                                           "--acks", acks, "-p", str(parts))
                        cons, ccmd = bench(b.bootstrap, "consume", "-t", topic, "-n", str(n))
                        rows.append((b.name, "produce", size, acks, parts, prod, pcmd))
                        rows.append((b.name, "consume", size, acks, parts, cons, ccmd))
                        print(fmt_row(b.name, "produce", size, acks, parts, prod), file=sys.stderr, flush=True)
                        print(fmt_row(b.name, "consume", size, acks, parts, cons), file=sys.stderr, flush=True)
        rss = {b.name: peak_rss_mib(b.pid()) for b in brokers}
    finally:
        for b in brokers:
            b.stop()
    for b in brokers:
        say(f"- {b.name}: {startup[b.name]:.2f} s from launch to the first acknowledged record; "
            f"peak resident memory over the whole run {rss[b.name]:,.0f} MiB")
    say()
    say("### Produce and consume")
    say()
    say("| broker | mode | record | acks | partitions | records/s | MB/s | p50 ms | p99 ms | p99.9 ms |")
    say("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, mode, size, acks, parts, rep, _ in rows:
        say(fmt_row(name, mode, size, acks, parts, rep))
    say()
    say("Commands (the same for both brokers; `--brokers` differs):")
    say()
    for cmd in sorted({r[6] for r in rows}):
        say(f"- `{cmd}`")
    if args.out:
        Path(args.out).write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
