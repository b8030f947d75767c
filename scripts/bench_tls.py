#!/usr/bin/env python3
"""What TLS costs: produce and consume over PLAINTEXT and over SSL, Weir and Apache Kafka side by
side, with the same client: Kafka's own ProducerPerformance and ConsumerPerformance (the Java
client, from the reference Kafka's jars; `weir bench`'s librdkafka has no OpenSSL).

    python3 scripts/bench_tls.py [--quick] [--rounds N] [--out FILE]

Both brokers serve a PLAINTEXT and an SSL listener with the same certificate (RSA 2048, from a
throwaway CA made with openssl); Kafka 4.x runs with its production JVM settings as in
scripts/bench_matrix.py. For each row (1 KiB records; acks=1 and acks=all; one partition) the
script alternates Weir and Kafka, PLAINTEXT then SSL, `--rounds` times, and reports each run
and the SSL/PLAINTEXT ratio of the medians: the goal is that TLS costs Weir no more than it
costs Kafka, as a ratio. Stdlib only; everything listens on 127.0.0.1.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_matrix as bm  # noqa: E402


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_certs(d: Path) -> dict:
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout", str(d / "ca.key"),
            "-out", str(d / "ca.pem"), "-subj", "/CN=weir bench CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / "server.key"), "-out", str(d / "server.csr"),
            "-subj", "/CN=127.0.0.1")
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                                  "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.pem"), "-CAkey", str(d / "ca.key"),
            "-CAcreateserial", "-days", "2", "-out", str(d / "server.pem"), "-extfile", str(d / "server.ext"))
    keystore = d / "keystore.pem"
    keystore.write_text((d / "server.key").read_text() + (d / "server.pem").read_text())
    return {"ca": d / "ca.pem", "cert": d / "server.pem", "key": d / "server.key", "keystore": keystore}


class Weir(bm.Weir):
    def __init__(self, workdir, certs):
        super().__init__(workdir)
        self.ssl = f"127.0.0.1:{bm.free_port()}"
        self.certs = certs

    def start(self):
        self.proc = subprocess.Popen(
            [str(bm.WEIR), "dev", "--data-dir", str(self.dir), "--listener", f"PLAINTEXT://{self.bootstrap}",
             "--listener", f"SSL://{self.ssl}", "--tls-cert", str(self.certs["cert"]),
             "--tls-key", str(self.certs["key"])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        bm.first_record(self.bootstrap)


class Kafka(bm.Kafka):
    def __init__(self, workdir, certs):
        super().__init__(workdir)
        self.ssl_port = bm.free_port()
        self.ssl = f"127.0.0.1:{self.ssl_port}"
        self.certs = certs

    def start(self):
        env = dict(os.environ, KAFKA_JVM_OPTS=bm.KAFKA_PROD_JVM, KAFKA_HEAP_OPTS=bm.KAFKA_PROD_HEAP)
        subprocess.run(["bash", str(bm.KAFKA_SCRIPT), "start", "--port", str(self.port), "--data-dir", str(self.dir),
                        "--ssl-port", str(self.ssl_port), "--ssl-keystore", str(self.certs["keystore"]),
                        "--ssl-truststore", str(self.certs["ca"])],
                       env=env, check=True, stdout=subprocess.DEVNULL)
        bm.first_record(self.bootstrap)


KAFKA_LIBS = Path(os.environ.get("WEIR_CACHE_DIR", Path.home() / ".cache/weir")) / "kafka-4.3.1/libs"


def java_tool(tool, *args):
    cmd = ["java", "-Xmx1G", "-cp", f"{KAFKA_LIBS}/*", f"org.apache.kafka.tools.{tool}", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    return r.stdout


def run(b, listener, ca, topic, acks, n, work):
    """Kafka's own perf tools (the Java client, from the reference Kafka's jars; librdkafka in
    `weir bench` is built without OpenSSL): produce `n` 1 KiB records, then consume them.
    Returns MB/s (MiB/s, as the tools report them) for each."""
    conf = work / f"client-{listener}.properties"
    conf.write_text(f"security.protocol=SSL\nssl.truststore.type=PEM\nssl.truststore.location={ca}\n"
                    if listener == "SSL" else "security.protocol=PLAINTEXT\n")
    bootstrap = b.ssl if listener == "SSL" else b.bootstrap
    out = java_tool("ProducerPerformance", "--topic", topic, "--num-records", str(n), "--record-size", "1024",
                    "--throughput", "-1", "--command-config", str(conf),
                    "--producer-props", f"bootstrap.servers={bootstrap}", f"acks={acks}")
    # "600000 records sent, 98765.4 records/sec (96.45 MB/sec), ..."
    last = [line for line in out.splitlines() if "records sent" in line][-1]
    produce = float(last.split("(")[1].split(" MB/sec")[0])
    out = java_tool("ConsumerPerformance", "--bootstrap-server", bootstrap, "--topic", topic,
                    "--num-records", str(n), "--command-config", str(conf), "--timeout", "60000")
    # CSV: start.time, end.time, data.consumed.in.MB, MB.sec, ...
    row = out.strip().splitlines()[-1].split(",")
    consume = float(row[3])
    return {"produce": produce, "consume": consume}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer records per run (a smoke run)")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each row per broker and listener")
    ap.add_argument("--out", help="also write the report to this file")
    args = ap.parse_args()
    n = 50_000 if args.quick else 600_000
    work = Path(tempfile.mkdtemp(prefix="weir-bench-tls-"))
    certs = make_certs(work)
    brokers = [Weir(work, certs), Kafka(work, certs)]
    results = {}  # (broker, listener, acks, mode) -> [MB/s]
    for b in brokers:
        b.start()
    try:
        for acks in ("1", "all"):
            for r in range(args.rounds):
                for b in brokers:
                    for listener in ("PLAINTEXT", "SSL"):
                        topic = f"tls-{listener.lower()}-{acks}-{r}"
                        got = run(b, listener, certs["ca"], topic, acks, n, work)
                        for mode, mb in got.items():
                            results.setdefault((b.name, listener, acks, mode), []).append(mb)
                        print(f"{b.name} {listener} acks={acks} round {r}: {got}", file=sys.stderr, flush=True)
    finally:
        for b in brokers:
            b.stop()
    out = []
    say = lambda s="": (print(s, flush=True), out.append(s))
    say(f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; 1 KiB records, "
        f"{n:,} per run, one partition, {args.rounds} rounds; MB/s as the Kafka perf tools report "
        f"them, median (all runs)")
    say()
    say("| broker | mode | acks | PLAINTEXT | SSL | SSL / PLAINTEXT |")
    say("| --- | --- | --- | --- | --- | --- |")
    for b in brokers:
        for acks in ("1", "all"):
            for mode in ("produce", "consume"):
                p = results[(b.name, "PLAINTEXT", acks, mode)]
                s = results[(b.name, "SSL", acks, mode)]
                fmt = lambda v: f"{statistics.median(v):.1f} ({', '.join(f'{x:.0f}' for x in v)})"
                ratio = statistics.median(s) / statistics.median(p)
                say(f"| {b.name} | {mode} | {acks} | {fmt(p)} | {fmt(s)} | {ratio:.2f} |")
    if args.out:
        Path(args.out).write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
