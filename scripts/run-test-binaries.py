#!/usr/bin/env python3
"""Runs test binaries cargo has already built, as `cargo test` would, for one suite.

    cargo test --release --workspace --no-run --message-format=json > TESTS.json
    scripts/run-test-binaries.py TESTS.json --packages weir-e2e
    scripts/run-test-binaries.py TESTS.json --except weir-e2e,weir-operator

Why not `cargo test -p weir-e2e`: choosing packages changes how Cargo unifies features, so a
subset of the workspace resolves another dependency graph and compiles it again (docs/ci.md).
The binaries `cargo test --workspace` built are run directly instead, each from its package's
directory as cargo runs it, so scripts/test.sh can time each suite on its own.

Every binary of the suite runs even after one fails (cargo's --no-fail-fast); the exit status
is 1 when any failed, 2 when the suite selects no binary at all (a typo must not pass).
Arguments after `--` go to every binary (libtest's flags, e.g. `-- --test-threads 1`).
"""

import argparse
import json
import os
import subprocess
import sys
import time


def binaries(path):
    """(package, target kind and name, executable, package directory) of every test binary."""
    found = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.startswith("{"):
                continue
            msg = json.loads(line)
            if msg.get("reason") != "compiler-artifact" or not msg.get("executable"):
                continue
            if not msg.get("profile", {}).get("test"):
                continue
            target = msg["target"]
            # package_id: "path+file:///work/main/e2e#weir-e2e@0.1.0" (or "...#0.1.0" when the
            # package is named after its directory); the manifest path is unambiguous.
            manifest = msg["manifest_path"]
            package = package_name(msg["package_id"], manifest)
            kind = "lib" if "lib" in target["kind"] else target["kind"][0]
            found.append((package, f"{kind} {target['name']}", msg["executable"],
                          os.path.dirname(manifest)))
    return found


def package_name(package_id, manifest):
    tail = package_id.rsplit("#", 1)[-1]
    if "@" in tail:
        return tail.split("@", 1)[0]
    return os.path.basename(os.path.dirname(manifest))


def main():
    args, passthrough = parse_args()
    chosen = []
    for package, target, exe, cwd in binaries(args.tests_json):
        if args.packages and package not in args.packages:
            continue
        if args.exclude and package in args.exclude:
            continue
        chosen.append((package, target, exe, cwd))
    if not chosen:
        print("run-test-binaries: no test binary matches", file=sys.stderr)
        return 2
    failed = []
    for package, target, exe, cwd in chosen:
        print(f"\n--- {package}: {target} ({os.path.basename(exe)})", file=sys.stderr, flush=True)
        started = time.monotonic()
        status = subprocess.run([exe, *passthrough], cwd=cwd, check=False).returncode
        took = time.monotonic() - started
        print(f"--- {package}: {target}: {'ok' if status == 0 else f'FAILED ({status})'} "
              f"in {took:.0f} s", file=sys.stderr, flush=True)
        if status != 0:
            failed.append(f"{package} ({target})")
    if failed:
        print("\nrun-test-binaries: failed: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


def parse_args():
    argv = sys.argv[1:]
    passthrough = []
    if "--" in argv:
        at = argv.index("--")
        argv, passthrough = argv[:at], argv[at + 1:]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tests_json", help="cargo test --no-run --message-format=json output")
    parser.add_argument("--packages", type=lambda s: set(s.split(",")), default=set(),
                        help="only these packages (comma-separated)")
    parser.add_argument("--except", dest="exclude", type=lambda s: set(s.split(",")),
                        default=set(), help="all packages but these (comma-separated)")
    return parser.parse_args(argv), passthrough


if __name__ == "__main__":
    sys.exit(main())
