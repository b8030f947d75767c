#!/usr/bin/env python3
"""Three brokers, RF 3, acks=all: Weir and Apache Kafka side by side with the same client.

    python3 scripts/bench_cluster.py [--quick] [--out /tmp/bench-cluster.md]

On this one machine (every process shares the disk and the cores), one system at a time:

  * Weir: 3 `weir-coordinator` and 3 `weir-broker` processes on 127.0.0.1;
  * Apache Kafka 4.3.1 (KRaft): 3 combined broker+controller nodes with static voters, from
    the jars `scripts/kafka-reference.sh fetch` caches, with the production JVM settings
    bench_matrix.py uses (G1, 1 GiB heap per node).

For each, 100-byte records to topics with 6 partitions, replication factor 3 and
min.insync.replicas=2: an unreported warm-up, `weir bench produce --acks all` as fast as it goes
(one producer, then two), `weir bench consume` of what the first wrote, fixed-rate runs
(`--rate`, default 100,000/s and 300,000/s for 10 s) for latency at a load both sustain, and
one record per request (`--linger-ms 0`, 20/s) for the bare acks=all round trip. Before each
run the
script waits (polling every 30 s, up to --max-wait s) for the 1-minute load average to fall
to --max-load, because other work may share the machine; the load and the CPU use of other
processes during each run are reported with the figures.

Prints a Markdown report (and writes it with --out). Stdlib only. Every process is started
in its own process group and killed on exit, including on error or Ctrl-C. The data lives in
a temporary folder, removed at the end unless the run failed or --keep is given.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(os.environ.get("WEIR_BIN_DIR", ROOT / "target/release"))
WEIR = BIN / "weir"
WEIR_BROKER = BIN / "weir-broker"
WEIR_COORDINATOR = BIN / "weir-coordinator"
KAFKA_SCRIPT = ROOT / "scripts/kafka-reference.sh"

sys.path.insert(0, str(Path(__file__).resolve().parent))
# The same JVM settings as the single-node matrix: Kafka's own production defaults.
from bench_matrix import KAFKA_PROD_HEAP, KAFKA_PROD_JVM  # noqa: E402

PARTITIONS = 6
RF = 3
MIN_ISR = 2
TICK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------
# Processes


class Procs:
    """Every long-running process this script starts, each in its own process group."""

    def __init__(self):
        self.procs: list[tuple[str, subprocess.Popen, Path]] = []

    def start(self, name, argv, log: Path, env=None):
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as f:
            p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 env=env, start_new_session=True)
        self.procs.append((name, p, log))
        return p

    def check_alive(self):
        for name, p, log in self.procs:
            if p.poll() is not None:
                raise RuntimeError(f"{name} (pid {p.pid}) exited with {p.returncode}; last lines of {log}:\n"
                                   + tail(log, 30))

    def pids(self):
        return [p.pid for _, p, _ in self.procs if p.poll() is None]

    def stop_all(self, grace=20.0, first=None):
        """SIGTERM every group, wait up to `grace` s, then SIGKILL what is left. Processes whose
        name starts with `first` are stopped (and waited for) before the others."""
        if first:
            early = [e for e in self.procs if e[0].startswith(first)]
            rest = [e for e in self.procs if not e[0].startswith(first)]
            self.procs = early
            self.stop_all(grace)
            self.procs = rest
        for _, p, _ in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.time() + grace
        for _, p, _ in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                pass
        for name, p, _ in self.procs:
            # The group may outlive its leader (children), so kill it regardless.
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                print(f"warning: {name} (pid {p.pid}) did not exit after SIGKILL", file=sys.stderr)
        self.procs.clear()


def tail(path: Path, n: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError as e:
        return f"({e})"


def free_ports(n):
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def weir_cli(bootstrap, *args, timeout=None, check=True):
    cmd = [str(WEIR), "--brokers", bootstrap, "--output", "json", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr.strip()}\n{r.stdout.strip()}")
    return r


def last_json(text):
    return json.loads(text.strip().splitlines()[-1])


def wait_brokers(bootstrap, n, procs: Procs, timeout):
    """Until `weir cluster describe` lists n brokers."""
    deadline = time.time() + timeout
    last = ""
    while time.time() < deadline:
        procs.check_alive()
        r = weir_cli(bootstrap, "--request-timeout-ms", "3000", "cluster", "describe", check=False, timeout=30)
        if r.returncode == 0:
            try:
                brokers = last_json(r.stdout)["brokers"]
                if len(brokers) >= n:
                    return brokers
                last = f"{len(brokers)} broker(s): {brokers}"
            except (ValueError, KeyError, IndexError) as e:
                last = f"unparsable: {e}: {r.stdout[-300:]}"
        else:
            last = r.stderr.strip()[-300:]
        time.sleep(0.5)
    raise RuntimeError(f"{n} brokers not listed by {bootstrap} within {timeout}s; last: {last}")


def create_topic(bootstrap, topic, procs: Procs, timeout=120):
    """RF 3, min.insync.replicas=2, 6 partitions; waits for a leader and a full ISR everywhere."""
    args = ["topic", "create", topic, "--partitions", str(PARTITIONS), "--replication-factor", str(RF),
            "--config", f"min.insync.replicas={MIN_ISR}"]
    weir_cli(bootstrap, *args, timeout=60)
    deadline = time.time() + timeout
    last = ""
    while time.time() < deadline:
        procs.check_alive()
        r = weir_cli(bootstrap, "topic", "describe", topic, check=False, timeout=30)
        if r.returncode == 0:
            d = last_json(r.stdout)
            parts = d.get("partitions", [])
            ok = (len(parts) == PARTITIONS and all(
                p.get("leader") is not None and len(p.get("replicas", [])) == RF and len(p.get("isr", [])) == RF
                and not p.get("error") for p in parts))
            if ok:
                return " ".join(args), parts
            last = json.dumps(parts)
        else:
            last = r.stderr.strip()[-300:]
        time.sleep(0.5)
    raise RuntimeError(f"topic {topic} not fully replicated within {timeout}s; last: {last}")


def under_replicated(bootstrap):
    r = weir_cli(bootstrap, "cluster", "describe", check=False, timeout=30)
    if r.returncode != 0:
        return f"cluster describe failed: {r.stderr.strip()[-200:]}"
    d = last_json(r.stdout)
    return len(d.get("under_replicated", [])), len(d.get("offline", []))


# ---------------------------------------------------------------------------------------------
# Weir


class WeirCluster:
    name = "Weir"

    def __init__(self, work: Path):
        self.dir = work / "weir"
        self.procs = Procs()
        p = free_ports(9)
        self.coord_ports, self.kafka_ports, self.internal_ports = p[0:3], p[3:6], p[6:9]
        self.bootstrap = ",".join(f"127.0.0.1:{k}" for k in self.kafka_ports)
        self.commands = []

    def start(self, timeout=120):
        peers = ",".join(f"{i + 1}=127.0.0.1:{p}" for i, p in enumerate(self.coord_ports))
        coords = ",".join(f"127.0.0.1:{p}" for p in self.coord_ports)
        env = dict(os.environ, NO_COLOR="1")
        t0 = time.time()
        for i, port in enumerate(self.coord_ports, 1):
            argv = [str(WEIR_COORDINATOR), "--id", str(i), "--data-dir", str(self.dir / f"coordinator-{i}"),
                    "--listen", f"127.0.0.1:{port}", "--peers", peers]
            self.commands.append(argv)
            self.procs.start(f"weir-coordinator {i}", argv, self.dir / "logs" / f"coordinator-{i}.log", env=env)
        for i, (k, internal) in enumerate(zip(self.kafka_ports, self.internal_ports), 1):
            argv = [str(WEIR_BROKER), "--id", str(i), "--data-dir", str(self.dir / f"broker-{i}"),
                    "--kafka-addr", f"127.0.0.1:{k}", "--advertised-kafka-addr", f"127.0.0.1:{k}",
                    "--internal-addr", f"127.0.0.1:{internal}", "--coordinators", coords]
            self.commands.append(argv)
            self.procs.start(f"weir-broker {i}", argv, self.dir / "logs" / f"broker-{i}.log", env=env)
        wait_brokers(f"127.0.0.1:{self.kafka_ports[0]}", 3, self.procs, timeout)
        return time.time() - t0

    def logs(self):
        return sorted((self.dir / "logs").glob("*.log"))

    def stop(self):
        # Brokers first: a broker's controlled shutdown asks the coordinators to move its
        # leaderships, so they must still be up.
        self.procs.stop_all(grace=15, first="weir-broker")


# ---------------------------------------------------------------------------------------------
# Kafka


LOG4J2 = """status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = out
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
"""


class KafkaCluster:
    name = "Kafka"

    def __init__(self, work: Path):
        self.dir = work / "kafka"
        self.procs = Procs()
        p = free_ports(6)
        self.kafka_ports, self.controller_ports = p[0:3], p[3:6]
        self.bootstrap = ",".join(f"127.0.0.1:{k}" for k in self.kafka_ports)
        self.commands = []
        r = subprocess.run(["bash", str(KAFKA_SCRIPT), "fetch"], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"kafka-reference.sh fetch failed:\n{r.stderr}")
        self.libs = r.stdout.strip().splitlines()[-1]
        self.jvm = KAFKA_PROD_HEAP.split() + KAFKA_PROD_JVM.split()

    def config(self, i):
        voters = ",".join(f"{n}@127.0.0.1:{c}" for n, c in enumerate(self.controller_ports, 1))
        node = self.dir / f"node-{i}"
        k, c = self.kafka_ports[i - 1], self.controller_ports[i - 1]
        return f"""process.roles=broker,controller
node.id={i}
controller.quorum.voters={voters}
listeners=PLAINTEXT://127.0.0.1:{k},CONTROLLER://127.0.0.1:{c}
advertised.listeners=PLAINTEXT://127.0.0.1:{k}
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={node}/kraft-logs
num.partitions=1
default.replication.factor=3
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
group.initial.rebalance.delay.ms=0
"""

    def java(self, i, *args):
        node = self.dir / f"node-{i}"
        return ["java", *self.jvm, "-cp", f"{self.libs}/*",
                f"-Dlog4j2.configurationFile={node}/log4j2.properties", f"-Dkafka.logs.dir={node}/logs", *args]

    def start(self, timeout=180):
        # "--cluster-id=ID": an id starting with '-' (1 in 64) is not taken for an option.
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        t0 = time.time()
        for i in (1, 2, 3):
            node = self.dir / f"node-{i}"
            node.mkdir(parents=True, exist_ok=True)
            (node / "server.properties").write_text(self.config(i))
            (node / "log4j2.properties").write_text(LOG4J2)
            # Static voters (controller.quorum.voters): no --standalone / --initial-controllers.
            argv = self.java(i, "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
                             "--config", str(node / "server.properties"))
            self.commands.append(argv)
            with open(node / "format.log", "wb") as f:
                r = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT)
            if r.returncode != 0:
                raise RuntimeError(f"formatting node {i} failed:\n{tail(node / 'format.log', 30)}")
        for i in (1, 2, 3):
            node = self.dir / f"node-{i}"
            argv = self.java(i, "kafka.Kafka", str(node / "server.properties"))
            self.commands.append(argv)
            self.procs.start(f"kafka node {i}", argv, self.dir / "logs" / f"node-{i}.log")
        wait_brokers(f"127.0.0.1:{self.kafka_ports[0]}", 3, self.procs, timeout)
        return time.time() - t0

    def logs(self):
        return sorted((self.dir / "logs").glob("*.log"))

    def stop(self):
        self.procs.stop_all(grace=30)


# ---------------------------------------------------------------------------------------------
# Measuring


def load1():
    return os.getloadavg()[0]


def cpu_busy_jiffies():
    """(task, busy, total) jiffies over all cores from /proc/stat: task is user + nice + system
    (what processes are charged with), busy adds interrupts and steal."""
    v = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    task = v[0] + v[1] + v[2]
    idle = v[3] + v[4]  # idle + iowait
    total = sum(v)  # user, nice, system, idle, iowait, irq, softirq, steal
    return task, total - idle, total


def busy_fraction(seconds=2.0):
    _, b0, t0 = cpu_busy_jiffies()
    time.sleep(seconds)
    _, b1, t1 = cpu_busy_jiffies()
    return (b1 - b0) / max(1, t1 - t0)


def proc_cpu_s(pids):
    s = 0
    for pid in pids:
        try:
            f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            s += int(f[11]) + int(f[12])  # utime, stime (fields 14 and 15)
        except (OSError, IndexError, ValueError):
            pass
    return s / TICK


def peak_rss_mib(pids):
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def wait_quiet(max_load, max_wait, say_progress):
    """Polls every 30 s until the 1-minute load is at most max_load, or max_wait s pass."""
    t0 = time.time()
    while True:
        l = load1()
        if l <= max_load:
            return l, time.time() - t0
        if time.time() - t0 >= max_wait:
            say_progress(f"load {l:.2f} still above {max_load} after {max_wait:.0f}s; measuring anyway")
            return l, time.time() - t0
        say_progress(f"1-minute load {l:.2f} > {max_load}; waiting 30 s")
        time.sleep(30)


def run_bench(cluster, args, max_load, max_wait, progress):
    """One `weir bench` run: its JSON report plus the conditions it ran in."""
    procs = cluster.procs
    procs.check_alive()
    load, waited = wait_quiet(max_load, max_wait, progress)
    busy = busy_fraction()
    cmd = [str(WEIR), "--brokers", cluster.bootstrap, "--output", "json", "bench", *args]
    shown = "weir --brokers <bootstrap> bench " + " ".join(args)
    progress(f"{cluster.name}: {shown} (load {load:.2f}, CPU busy {busy:.0%})")
    ru0 = os.times()
    k0, b0, _ = cpu_busy_jiffies()
    c0 = proc_cpu_s(procs.pids())
    w0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - w0
    k1, b1, _ = cpu_busy_jiffies()
    c1 = proc_cpu_s(procs.pids())
    ru1 = os.times()
    try:
        rep = last_json(r.stdout)
    except (ValueError, IndexError):
        rep = None
    if r.returncode != 0 and (rep is None or not rep.get("failed")):
        raise RuntimeError(f"{shown} failed ({r.returncode}):\n{r.stderr.strip()}\n{r.stdout.strip()[-2000:]}")
    if r.returncode != 0:
        progress(f"{shown}: {rep['failed']} records failed; first: {rep.get('first_failure')}")
    client = (ru1.children_user + ru1.children_system) - (ru0.children_user + ru0.children_system)
    servers = c1 - c0
    all_busy = (b1 - b0) / TICK
    all_tasks = (k1 - k0) / TICK
    rep["_cond"] = {
        "load1": load, "waited_s": waited, "busy_before": busy, "wall_s": wall,
        "client_cores": client / wall, "server_cores": servers / wall,
        "other_cores": max(0.0, all_tasks - client - servers) / wall,
        "machine_cores": all_busy / wall,
    }
    rep["_cmd"] = shown
    return rep


def fmt_ms(lat, k):
    return f"{lat[k]:.1f}" if lat and lat.get(k) is not None else "–"


def row(name, mode, what, rep):
    lat = rep.get("latency_ms")
    c = rep["_cond"]
    if rep.get("failed"):
        what += f" ({rep['failed']:,} FAILED)"
    return (f"| {name} | {mode} | {what} | {rep['records_per_sec']:,.0f} | {rep['mb_per_sec']:.1f} | "
            f"{fmt_ms(lat, 'p50')} | {fmt_ms(lat, 'p99')} | {fmt_ms(lat, 'p99_9')} | "
            f"{c['load1']:.2f} | {c['client_cores']:.2f} | {c['server_cores']:.2f} | {c['other_cores']:.2f} |")


def machine():
    cpu = "?"
    mem = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    return nproc, cpu, mem


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: 300,000 records, 3 s rate runs")
    ap.add_argument("--records", type=int, default=3_000_000, help="records of the throughput run")
    ap.add_argument("--rates", default="100000,300000", help="fixed rates for latency, comma-separated")
    ap.add_argument("--producers", default="1,2", help="producer counts of the as-fast-as-it-goes runs")
    ap.add_argument("--probe-rate", type=int, default=20,
                    help="records/s of the one-record-per-request run (linger.ms=0); 0 skips it")
    ap.add_argument("--warmup", type=int, default=1_000_000,
                    help="records of an unreported produce run first (JIT, page cache); 0 skips it")
    ap.add_argument("--rate-secs", type=int, default=10, help="seconds of each fixed-rate run")
    ap.add_argument("--only", choices=("weir", "kafka"), help="run one system only")
    ap.add_argument("--max-load", type=float, default=1.0, help="wait until the 1-minute load is at most this")
    ap.add_argument("--max-wait", type=float, default=900, help="seconds to wait for that load, per run")
    ap.add_argument("--keep", action="store_true", help="keep the data and logs folder")
    ap.add_argument("--out", help="also write the report to this file")
    args = ap.parse_args()
    if args.quick:
        args.records, args.rate_secs, args.warmup = 300_000, 3, 100_000
    rates = [int(x) for x in args.rates.split(",") if x]
    producer_counts = [int(x) for x in args.producers.split(",") if x]
    for b in (WEIR, WEIR_BROKER, WEIR_COORDINATOR):
        if not b.exists():
            sys.exit(f"{b} missing: cargo build --release -p weir-cli -p weir-broker -p weir-coordinator")

    # SIGTERM and SIGHUP unwind through the finally blocks like Ctrl-C does.
    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    out = []
    progress = lambda s: print(f"[{time.strftime('%H:%M:%S')}] {s}", file=sys.stderr, flush=True)

    def say(s=""):
        print(s, flush=True)
        out.append(s)

    work = Path(tempfile.mkdtemp(prefix="weir-bench-cluster-"))
    fs = subprocess.run(["df", "--output=fstype,source", str(work)], capture_output=True,
                        text=True).stdout.strip().splitlines()[-1].split()
    nproc, cpu, mem = machine()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True).stdout.strip()
    progress(f"work dir {work}")

    results = []  # (system, mode, what, rep)
    warmups = {}
    info = {}
    failed = True
    systems = [s for s in (WeirCluster, KafkaCluster) if args.only in (None, s.name.lower())]
    try:
        for cls in systems:
            load, waited = wait_quiet(args.max_load, args.max_wait, progress)
            cluster = cls(work)
            progress(f"starting {cluster.name} (load {load:.2f})")
            try:
                startup = cluster.start()
                progress(f"{cluster.name}: 3 brokers up in {startup:.1f}s ({cluster.bootstrap})")
                # (mode, label, topic to create or None, bench args)
                runs = []
                if args.warmup:
                    # Not reported: JIT warm-up for Kafka, page cache and connections for both.
                    runs.append(("warmup", "warm-up", "rf3-warmup",
                                 ["produce", "-t", "rf3-warmup", "-s", "100", "-n", str(args.warmup),
                                  "--acks", "all", "-p", str(PARTITIONS)]))
                for n in producer_counts:
                    topic = "rf3-tput" if n == 1 else f"rf3-tput-{n}p"
                    extra = [] if n == 1 else ["--producers", str(n)]
                    runs.append(("produce", f"as fast as it goes, {n} producer{'s' if n > 1 else ''}", topic,
                                 ["produce", "-t", topic, "-s", "100", "-n", str(args.records), "--acks", "all",
                                  "-p", str(PARTITIONS), *extra]))
                    if n == producer_counts[0]:
                        runs.append(("consume", f"what that wrote", None,
                                     ["consume", "-t", topic, "-n", str(args.records)]))
                for rate in rates:
                    topic = f"rf3-rate-{rate}"
                    runs.append(("produce", f"fixed rate {rate:,}/s for {args.rate_secs} s", topic,
                                 ["produce", "-t", topic, "-s", "100", "-n", str(rate * args.rate_secs),
                                  "--rate", str(rate), "--acks", "all", "-p", str(PARTITIONS)]))
                if args.probe_rate:
                    topic = "rf3-probe"
                    runs.append(("produce", f"one record per request, {args.probe_rate}/s for 10 s", topic,
                                 ["produce", "-t", topic, "-s", "100", "-n", str(args.probe_rate * 10),
                                  "--rate", str(args.probe_rate), "--linger-ms", "0", "--acks", "all",
                                  "-p", str(PARTITIONS)]))
                topic_cmds = []
                for _, _, topic, _ in runs:
                    if topic:
                        cmd, _ = create_topic(cluster.bootstrap, topic, cluster.procs)
                        topic_cmds.append(cmd)
                urp = None
                for mode, label, _, bench_args in runs:
                    rep = run_bench(cluster, bench_args, args.max_load, args.max_wait, progress)
                    print(row(cluster.name, mode, label, rep), file=sys.stderr, flush=True)
                    if mode == "warmup":
                        warmups[cluster.name] = rep
                        continue
                    results.append((cluster.name, mode, label, rep))
                    if urp is None:
                        urp = under_replicated(cluster.bootstrap)
                info[cluster.name] = {
                    "startup": startup, "rss": peak_rss_mib(cluster.procs.pids()),
                    "urp_after_produce": urp, "commands": cluster.commands, "topic_cmds": topic_cmds,
                    "procs": len(cluster.procs.pids()),
                    "config": cluster.config(1) if isinstance(cluster, KafkaCluster) else None,
                }
            except BaseException:
                progress(f"{cluster.name} failed; last lines of its logs:")
                for log in cluster.logs():
                    print(f"----- {log} -----\n{tail(log, 20)}", file=sys.stderr)
                raise
            finally:
                cluster.stop()
        failed = False
    finally:
        if failed or args.keep:
            progress(f"data and logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    built = ", ".join(f"{b.name} {time.strftime('%H:%M', time.gmtime(b.stat().st_mtime))}"
                      for b in (WEIR, WEIR_BROKER, WEIR_COORDINATOR))
    say(f"Machine: {nproc} cores ({cpu}), {mem} RAM, {platform.system()} {platform.release()}, "
        f"data on {fs[0]} ({fs[1]}); date: {started}; git HEAD {rev}, binaries built (UTC) {built}")
    say()
    say("| broker | mode | run | records/s | MB/s | p50 ms | p99 ms | p99.9 ms | load before | "
        "client cores | broker cores | other cores |")
    say("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, mode, what, rep in results:
        say(row(name, mode, what, rep))
    say()
    say("100 B records, acks=all, 6 partitions, replication factor 3, min.insync.replicas=2, one producer "
        "unless the row says otherwise, linger.ms=5 unless the row says otherwise. Each system first ran an "
        "unreported warm-up produce. *load before*: the 1-minute load average just before the run. *client / broker / other "
        "cores*: CPU time over the run's wall time of the `weir bench` process, of the cluster's processes, "
        "and of every other process on the machine (interrupt time, which includes loopback networking, "
        "is in none of the three).")
    say()
    for name, rep in warmups.items():
        say(f"- {name} warm-up (not in the table, `{rep['_cmd']}`): {rep['records_per_sec']:,.0f} records/s, "
            f"p99 {fmt_ms(rep.get('latency_ms'), 'p99')} ms")
    for name, i in info.items():
        urp = i["urp_after_produce"]
        urp = f"{urp[0]} under-replicated, {urp[1]} offline" if isinstance(urp, tuple) else urp
        say(f"- {name}: {i['procs']} processes up in {i['startup']:.1f} s; peak resident memory of all of them "
            f"{i['rss']:,.0f} MiB; partitions right after the throughput run: {urp}")
    say()
    say("Commands (the same for both; `<bootstrap>` is the cluster's three Kafka listeners):")
    say()
    shown = []
    for _, _, _, rep in results:
        if rep["_cmd"] not in shown:
            shown.append(rep["_cmd"])
    topic_cmds = next(iter(info.values()))["topic_cmds"] if info else []
    for c in [f"weir --brokers <bootstrap> {t}" for t in topic_cmds] + shown:
        say(f"- `{c}`")
    say()
    for name, i in info.items():
        say(f"{name} processes:")
        say()
        for argv in i["commands"]:
            a = [Path(x).name if x.startswith(str(BIN)) else x for x in argv]
            a = [x.replace(str(work), "$WORK") for x in a]
            a = [x.replace(str(Path.home()), "~") for x in a]
            say(f"- `{' '.join(a)}`")
        say()
        if i.get("config"):
            say(f"{name} node 1 `server.properties` (nodes 2 and 3 differ in node.id, ports and log.dirs):")
            say()
            say("```properties")
            for line in i["config"].replace(str(work), "$WORK").splitlines():
                say(line)
            say("```")
            say()
    if args.out:
        Path(args.out).write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
