#!/usr/bin/env python3
"""pdoflow as an adapter of the cross-system job-queue harness
(github.com/hardbyte/postgresql-job-queue-benchmarking, its JSONL contract in
CONTRIBUTING_ADAPTERS.md): a plain-SQL worker in another language.

The same shape as the harness's PgQue adapter, so that the two compare:

* a producer task enqueues PRODUCER_BATCH_MAX jobs per call
  (`pdoflow.enqueue_many`), at PRODUCER_RATE jobs/s (`fixed`) or keeping
  TARGET_DEPTH jobs waiting (`depth-target`), from a depth polled every
  200 ms as the PgQue adapter polls its own (with a fixed rate, once per
  sample);
* CLAIM_LOOPS consumer tasks, each on its own connection, loop
  `pdoflow.claim(CLAIM_BATCH)` -> run the jobs -> `pdoflow.finish_many`;
  at most WORKER_COUNT jobs run at once across them (the PgQue adapter
  bounds its intra-batch parallelism the same way); an empty claim waits
  for `NOTIFY pdoflow` (at most 100 ms);
* a job "runs" for JOB_WORK_MS (an asyncio sleep), and its pickup latency
  is the time from the `created_at` in its payload to its start;
* every SAMPLE_EVERY_S it prints the harness's samples (enqueue_rate,
  completion_rate, queue_depth, claim_p50/p95/p99_ms) on stdout.

Nothing here knows pdoflow's tables: it uses the SQL API a worker in any
language would use. The background sweeper (the database must be listed in
`pdoflow.database`) expires leases and compacts the hot table.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import json
import os
import signal
import sys
import time

import psycopg
from psycopg.rows import dict_row

QUEUE = "long_horizon_bench"
TASK = "long_horizon_bench"

ENQUEUE = "SELECT count(*) FROM pdoflow.enqueue_many(%s, %s::jsonb[], queue => %s)"
CLAIM = "SELECT id, attempt, args FROM pdoflow.claim(%s, %s, %s)"
FINISH = "SELECT count(*) FROM pdoflow.finish_many(%s::uuid[], %s::int[])"
DEPTH = "SELECT count(*) FROM pdoflow.jobs WHERE queue = %s AND state = 'queued'"


def env_int(key: str, default: int) -> int:
    value = os.environ.get(key)
    return int(value) if value else default


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def emit(record: dict) -> None:
    record.setdefault("instance_id", env_int("BENCH_INSTANCE_ID", 0))
    print(json.dumps(record), flush=True)


def percentiles(samples: collections.deque, window_s: float, now: float) -> tuple[float, float, float]:
    values = sorted(value for at, value in samples if at >= now - window_s)
    if not values:
        return 0.0, 0.0, 0.0

    def at(p: float) -> float:
        return values[min(len(values) - 1, int(round(p * (len(values) - 1))))]

    return at(0.50), at(0.95), at(0.99)


async def connect() -> psycopg.AsyncConnection:
    return await psycopg.AsyncConnection.connect(
        os.environ["DATABASE_URL"], autocommit=True, row_factory=dict_row
    )


async def main() -> None:
    sample_every_s = env_int("SAMPLE_EVERY_S", 5)
    producer_mode = os.environ.get("PRODUCER_MODE", "fixed")
    producer_rate = env_int("PRODUCER_RATE", 800)
    producer_batch_max = max(1, env_int("PRODUCER_BATCH_MAX", 128))
    producer_batch_ms = max(1, env_int("PRODUCER_BATCH_MS", 10))
    target_depth = env_int("TARGET_DEPTH", 1000)
    worker_count = env_int("WORKER_COUNT", 32)
    claim_loops = env_int("CLAIM_LOOPS", 4)
    claim_batch = env_int("CLAIM_BATCH", 100)
    padding = "x" * max(0, env_int("JOB_PAYLOAD_BYTES", 256) - 64)
    work_s = env_int("JOB_WORK_MS", 1) / 1000.0

    setup = await connect()
    await setup.execute("CREATE EXTENSION IF NOT EXISTS pdoflow")
    version = (await (await setup.execute(
        "SELECT extversion FROM pg_extension WHERE extname = 'pdoflow'")).fetchone())["extversion"]
    await setup.close()
    emit({
        "kind": "descriptor",
        "system": "pdoflow",
        "event_tables": ["pdoflow.active_jobs", "pdoflow.finished_jobs"],
        "extensions": ["pdoflow"],
        "version": version,
        "schema_version": version,
        "db_name": os.environ["DATABASE_URL"].rsplit("/", 1)[-1],
        "started_at": now_iso(),
    })

    shutdown = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, shutdown.set)

    counts = {"enqueued": 0, "completed": 0, "depth": 0}
    pickup_ms: collections.deque = collections.deque(maxlen=32768)
    running = asyncio.Semaphore(worker_count)
    work_arrived = asyncio.Event()

    async def produce() -> None:
        db = await connect()
        seq = 0
        credit, last = 0.0, loop.time()
        while not shutdown.is_set():
            if producer_mode == "depth-target":
                count = min(producer_batch_max, target_depth - counts["depth"])
                if count <= 0:
                    await asyncio.sleep(0.01)
                    continue
            else:
                await asyncio.sleep(max(0.0, producer_batch_ms / 1000.0 - (loop.time() - last)))
                now = loop.time()
                credit += producer_rate * (now - last)
                last = now
                count = min(producer_batch_max, int(credit))
                if count < 1:
                    continue
                credit -= count
            created = now_iso()
            args = [json.dumps({"seq": seq + i, "created_at": created, "padding": padding})
                    for i in range(count)]
            await db.execute(ENQUEUE, (TASK, args, QUEUE))
            seq += count
            counts["enqueued"] += count
            # The depth the producer steers by moves with what it adds.
            counts["depth"] += count

    async def poll_depth() -> None:
        # Counting the queued jobs walks every index entry of the queue,
        # dead ones too: with the horizon held, a count every 200 ms took
        # enough of the database's core to triple pickup latency p99 at
        # 800 jobs/s. A fixed-rate producer needs no depth, so then it is
        # read once per sample, for the queue_depth metric.
        every = 0.2 if producer_mode == "depth-target" else sample_every_s
        db = await connect()
        while not shutdown.is_set():
            row = await (await db.execute(DEPTH, (QUEUE,))).fetchone()
            counts["depth"] = row["count"]
            await asyncio.sleep(every)

    async def listen() -> None:
        db = await connect()
        await db.execute("LISTEN pdoflow")
        async for _ in db.notifies():
            work_arrived.set()

    async def run_job(args: dict) -> None:
        async with running:
            created = dt.datetime.fromisoformat(args["created_at"].replace("Z", "+00:00"))
            latency = (dt.datetime.now(dt.timezone.utc) - created).total_seconds() * 1000.0
            pickup_ms.append((time.monotonic(), max(0.0, latency)))
            await asyncio.sleep(work_s)

    async def consume(index: int) -> None:
        db = await connect()
        worker = f"harness-{env_int('BENCH_INSTANCE_ID', 0)}-{index}"
        while not shutdown.is_set():
            work_arrived.clear()
            jobs = await (await db.execute(CLAIM, (claim_batch, [QUEUE], worker))).fetchall()
            if not jobs:
                try:
                    await asyncio.wait_for(work_arrived.wait(), 0.1)
                except asyncio.TimeoutError:
                    pass
                continue
            await asyncio.gather(*(run_job(job["args"]) for job in jobs))
            await db.execute(FINISH, ([job["id"] for job in jobs], [job["attempt"] for job in jobs]))
            counts["completed"] += len(jobs)

    async def sample() -> None:
        await asyncio.sleep(sample_every_s - time.time() % sample_every_s)
        last_enqueued, last_completed, last = 0, 0, loop.time()
        while not shutdown.is_set():
            await asyncio.sleep(sample_every_s - time.time() % sample_every_s)
            now = loop.time()
            elapsed = max(0.001, now - last)
            p50, p95, p99 = percentiles(pickup_ms, 30.0, time.monotonic())
            t = now_iso()
            for metric, value, window in [
                ("claim_p50_ms", p50, 30.0),
                ("claim_p95_ms", p95, 30.0),
                ("claim_p99_ms", p99, 30.0),
                ("enqueue_rate", (counts["enqueued"] - last_enqueued) / elapsed, float(sample_every_s)),
                ("completion_rate", (counts["completed"] - last_completed) / elapsed, float(sample_every_s)),
                ("queue_depth", float(counts["depth"]), 0.0),
            ]:
                emit({"t": t, "system": "pdoflow", "kind": "adapter", "subject_kind": "adapter",
                      "subject": "", "metric": metric, "value": value, "window_s": window})
            last_enqueued, last_completed, last = counts["enqueued"], counts["completed"], now

    tasks = [asyncio.create_task(produce()), asyncio.create_task(poll_depth()),
             asyncio.create_task(listen()), asyncio.create_task(sample())]
    tasks += [asyncio.create_task(consume(index)) for index in range(claim_loops)]
    stopped = asyncio.create_task(shutdown.wait())
    done, _ = await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:
        task.cancel()
    for task in done:
        if task is not stopped and task.exception() is not None:
            print(f"[pdoflow] {task.exception()!r}", file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    asyncio.run(main())
