#!/usr/bin/env python3
"""pdoflow and PgQue through the cross-system harness's adapter contract, in
one run on one cluster (scripts/bench-harness.sh prepares both and calls this).

For each system in turn: its own database, its adapter started with the
harness's environment (WORKER_COUNT, PRODUCER_MODE, ...), then the phases
(warm-up, clean, a session idle in a transaction that holds an xid, the
minute after it, a REPEATABLE READ session querying in a loop, recovery).
The adapters' JSONL samples are collected by phase; every 5 s the size of
the hot relations and of all the system's tables (with indexes and TOAST)
is read. Between systems the first one's data is dropped and a checkpoint
taken. At the end: per phase and system the completion rate, its ratio to
the system's own clean phase, pickup latency (claim p50/p99, insert ->
worker start) and the largest sizes; then pdoflow's rate against PgQue's.
Extra environment (BENCH_QUEUE_COUNT for PgQue, CLAIM_LOOPS and
CLAIM_BATCH for pdoflow) reaches the adapters as it is.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent

# The hot relations (what the claims work in), and every table of the system
# (pdoflow's history of finished jobs; PgQue's event tables keep consumed
# events until they rotate, every 2 hours by default).
HOT_RELATIONS = {
    "pdoflow": "SELECT pg_total_relation_size('pdoflow.active_jobs')",
    "pgque": """SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = 'pgque' AND c.relkind = 'r' AND c.relname LIKE 'event%'""",
}
ALL_TABLES = """SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = %s AND c.relkind = 'r'"""

PHASE_KINDS = ("warmup", "clean", "xid", "after", "reader", "recovery")


def parse_phases(text: str) -> list[tuple[str, int]]:
    phases = []
    for part in text.split(","):
        kind, _, seconds = part.partition(":")
        if kind not in PHASE_KINDS or not seconds.isdigit():
            sys.exit(f"bad phase {part!r}: expected KIND:SECONDS with KIND one of {', '.join(PHASE_KINDS)}")
        phases.append((kind, int(seconds)))
    if not any(kind == "clean" for kind, _ in phases):
        sys.exit("the phases need a clean one: every ratio is to it")
    return phases


class Holder:
    """A session holding the xmin horizon: idle in a transaction with an xid,
    or a REPEATABLE READ transaction running a query every 100 ms."""

    def __init__(self, url: str, kind: str):
        self.conn = psycopg.connect(url)
        self.stop = threading.Event()
        self.thread = None
        if kind == "xid":
            self.conn.execute("SELECT txid_current()")
        else:
            self.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            self.thread = threading.Thread(target=self.read, daemon=True)
            self.thread.start()

    def read(self) -> None:
        try:
            while not self.stop.wait(0.1):
                self.conn.execute("SELECT count(*) FROM pg_class")
        except Exception as failure:  # reported by end(): the phase did not hold
            self.failure = failure

    failure = None

    def end(self) -> None:
        self.stop.set()
        if self.thread:
            self.thread.join()
        if self.failure is not None:
            sys.exit(f"the REPEATABLE READ reader failed, so the horizon was not held: {self.failure}")
        self.conn.commit()
        self.conn.close()


def run_system(system: str, args, phases) -> list[dict]:
    url = f"{args.url}/{system}_bench"
    with psycopg.connect(f"{args.url}/postgres", autocommit=True) as admin:
        # bench-harness.sh gives each run a fresh cluster; pdoflow's database
        # exists before the cluster starts, for the background sweeper.
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (f"{system}_bench",)).fetchone():
            admin.execute(f"CREATE DATABASE {system}_bench")
    env = dict(os.environ, DATABASE_URL=url, SCENARIO="long_horizon", PRODUCER_PACING="adapter",
               PRODUCER_MODE=args.producer_mode, PRODUCER_RATE=str(args.producer_rate),
               TARGET_DEPTH=str(args.target_depth), WORKER_COUNT=str(args.worker_count),
               JOB_WORK_MS=str(args.job_work_ms), SAMPLE_EVERY_S="5")
    if system == "pdoflow":
        command, cwd = [sys.executable, str(HERE / "pdoflow_adapter.py")], HERE
    else:
        command, cwd = [sys.executable, "main.py"], Path(args.pgque_adapter)
    adapter = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE,
                               stdin=subprocess.DEVNULL, text=True)
    samples: list[tuple[float, str, float]] = []
    sizes: list[tuple[float, int, int]] = []
    ready = threading.Event()

    def collect() -> None:
        for line in adapter.stdout:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("kind") == "descriptor":
                ready.set()
            elif record.get("kind") == "adapter":
                samples.append((time.time(), record["metric"], float(record["value"])))
                if args.every_sample and record["metric"] in ("completion_rate", "claim_p99_ms"):
                    size = sizes[-1][1] / 1048576 if sizes else 0.0  # the hot relations
                    print(f"  {system}: {record['metric']} {record['value']:.1f} "
                          f"(hot relations {size:.1f} MB)", file=sys.stderr, flush=True)

    threading.Thread(target=collect, daemon=True).start()
    bounds = []
    try:
        # The adapter installs its system, then says so with its descriptor.
        if not ready.wait(120):
            sys.exit(f"the {system} adapter printed no descriptor within 2 minutes")
        with psycopg.connect(url, autocommit=True) as db:
            for kind, seconds in phases:
                holder = Holder(url, kind) if kind in ("xid", "reader") else None
                start = time.time()
                print(f"  {system}: {kind} for {seconds} s", file=sys.stderr, flush=True)
                while time.time() < start + seconds:
                    if adapter.poll() is not None:
                        sys.exit(f"the {system} adapter exited with {adapter.returncode}")
                    sizes.append((time.time(), db.execute(HOT_RELATIONS[system]).fetchone()[0],
                                  db.execute(ALL_TABLES, (system,)).fetchone()[0]))
                    time.sleep(min(5.0, start + seconds - time.time()))
                if holder:
                    holder.end()
                bounds.append((kind, start, time.time()))
    finally:
        adapter.send_signal(signal.SIGTERM)
        try:
            adapter.wait(10)
        except subprocess.TimeoutExpired:
            adapter.kill()
        forget(system, args)
    rows = []
    for kind, start, end in bounds:
        # A sample covers the window_s before it: keep those wholly inside
        # the phase (rates 5 s; latency percentiles 30 s).
        def values(metric: str, window: float) -> list[float]:
            return [v for t, m, v in samples if m == metric and start + window <= t <= end + 0.5]

        rates = values("completion_rate", 5.0)
        rows.append({
            "system": system,
            "phase": kind,
            "rate": statistics.mean(rates) if rates else 0.0,
            "p50": statistics.median(values("claim_p50_ms", 30.0) or [float("nan")]),
            "p99": statistics.median(values("claim_p99_ms", 30.0) or [float("nan")]),
            "hot": max((hot for t, hot, _ in sizes if start <= t <= end), default=0),
            "all": max((every for t, _, every in sizes if start <= t <= end), default=0),
        })
    return rows


def forget(system: str, args) -> None:
    """Leaves the cluster as the next system should find it: the system's
    data gone (pdoflow's extension dropped, its sweeper keeps its database)
    and a checkpoint taken."""
    with psycopg.connect(f"{args.url}/postgres", autocommit=True) as admin:
        if system == "pdoflow":
            with psycopg.connect(f"{args.url}/pdoflow_bench", autocommit=True) as db:
                db.execute("DROP EXTENSION IF EXISTS pdoflow CASCADE")
        else:
            admin.execute(f"DROP DATABASE IF EXISTS {system}_bench WITH (FORCE)")
        admin.execute("CHECKPOINT")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the cluster, without a database: postgresql://user@host:port")
    parser.add_argument("--pgque-adapter", help="the harness's pgque-bench directory (vendor/pgque inside)")
    parser.add_argument("--systems", default="pdoflow,pgque")
    parser.add_argument("--phases", default="warmup:30,clean:60,xid:180,after:60,reader:180,recovery:60")
    parser.add_argument("--producer-mode", default="depth-target", choices=["depth-target", "fixed"])
    parser.add_argument("--producer-rate", type=int, default=800)
    parser.add_argument("--target-depth", type=int, default=4000)
    parser.add_argument("--worker-count", type=int, default=32)
    parser.add_argument("--job-work-ms", type=int, default=1)
    parser.add_argument("--every-sample", action="store_true",
                        help="also print each system's completion rate and claim p99 as they come (stderr)")
    args = parser.parse_args()
    phases = parse_phases(args.phases)
    systems = args.systems.split(",")
    if "pgque" in systems and not args.pgque_adapter:
        sys.exit("--pgque-adapter is required to run pgque")
    print(f"# {' '.join(sys.argv)}")
    print(f"# producer {args.producer_mode} (depth {args.target_depth}, rate {args.producer_rate}/s), "
          f"{args.worker_count} workers, {args.job_work_ms} ms of work per job")
    rows = [row for system in systems for row in run_system(system, args, phases)]
    clean = {row["system"]: row["rate"] for row in rows if row["phase"] == "clean"}
    print(f"{'system':<8} {'phase':<9} {'jobs/s':>8} {'of clean':>8} {'p50 ms':>8} {'p99 ms':>8} {'hot MB':>8} {'all MB':>8}")
    for row in rows:
        if row["phase"] == "warmup":
            continue
        ratio = row["rate"] / clean[row["system"]] if clean[row["system"]] else 0.0
        print(f"{row['system']:<8} {row['phase']:<9} {row['rate']:>8.0f} {ratio:>8.2f} "
              f"{row['p50']:>8.1f} {row['p99']:>8.1f} {row['hot'] / 1048576:>8.1f} {row['all'] / 1048576:>8.1f}")
    if {"pdoflow", "pgque"} <= set(systems):
        print("pdoflow against pgque, by phase:")
        by = {(row["system"], row["phase"]): row["rate"] for row in rows}
        for kind, _ in phases:
            if kind != "warmup" and by.get(("pgque", kind)):
                print(f"  {kind:<9} {by[('pdoflow', kind)] / by[('pgque', kind)]:.2f}")


if __name__ == "__main__":
    main()
