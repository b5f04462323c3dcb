#!/usr/bin/env python3
"""pdoflow as an adapter of the cross-system job-queue harness
(github.com/hardbyte/postgresql-job-queue-benchmarking, its JSONL contract in
CONTRIBUTING_ADAPTERS.md): a plain-SQL worker in another language.

It mirrors the harness's PgQue adapter (pgque-bench/main.py) so that the
two compare, down to the Python work per job:

* a producer task enqueues up to PRODUCER_BATCH_MAX jobs per call
  (`pdoflow.enqueue_many`), at PRODUCER_RATE jobs/s (`fixed`, credited on
  elapsed time every PRODUCER_BATCH_MS) or keeping TARGET_DEPTH jobs waiting
  (`depth-target`, steering by its own count of jobs enqueued and not yet
  claimed; the queue_depth metric is counted in the database once per
  sample);
* each job's payload carries its own `created_at`; the producer records a
  per-job call latency, a job records its pickup latency (created_at ->
  start) and its end-to-end latency (created_at -> end);
* CLAIM_LOOPS consumer tasks, each on its own connection, loop
  `pdoflow.claim(CLAIM_BATCH)` -> run the jobs -> `pdoflow.finish_many`;
  at most WORKER_COUNT jobs run at once across them (the PgQue adapter
  bounds its intra-batch parallelism the same way); an empty claim waits
  for `NOTIFY pdoflow` (at most 100 ms). Where PgQue's consumer takes its
  batches one at a time, as PgQ hands them out, pdoflow's claims may
  overlap: CLAIM_LOOPS=1 gives the strictly serial shape. With
  FINISH_WITH_CLAIM=1 each loop finishes a batch in the transaction that
  claims its next (one commit per batch instead of two);
* a job "runs" for JOB_WORK_MS (an asyncio sleep);
* every SAMPLE_EVERY_S it prints the harness's samples on stdout, the same
  metrics as the PgQue adapter.

Nothing here knows pdoflow's tables: it uses the SQL API a worker in any
language would use. The background sweeper (the database must be listed in
`pdoflow.database`) expires leases and compacts the hot table. A database
error ends the adapter (exit 1): a benchmark should fail loudly.
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
# A rejected claim (its lease ran out and the job went to another worker)
# is not a completion.
FINISH = """SELECT count(*) FILTER (WHERE rejected IS NULL) AS finished
            FROM pdoflow.finish_many(%s::uuid[], %s::int[])"""
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

    counts = {"enqueued": 0, "claimed": 0, "completed": 0, "depth": 0}
    producer_ms: collections.deque = collections.deque(maxlen=32768)
    pickup_ms: collections.deque = collections.deque(maxlen=32768)
    end_to_end_ms: collections.deque = collections.deque(maxlen=32768)
    running = asyncio.Semaphore(worker_count)
    # One event per claim loop: a NOTIFY wakes every waiting loop.
    work_arrived = [asyncio.Event() for _ in range(claim_loops)]

    async def produce() -> None:
        db = await connect()
        seq = 0
        credit, last = 0.0, loop.time()
        while not shutdown.is_set():
            if producer_mode == "depth-target":
                # Jobs enqueued and not yet claimed: this adapter is the only
                # producer and the only worker of its queue.
                count = min(producer_batch_max, target_depth - (counts["enqueued"] - counts["claimed"]))
                if count <= 0:
                    await asyncio.sleep(0.05)
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
            args = [json.dumps({"seq": seq + i, "created_at": now_iso(), "padding": padding})
                    for i in range(count)]
            started = time.monotonic()
            await db.execute(ENQUEUE, (TASK, args, QUEUE))
            per_job_ms = (time.monotonic() - started) * 1000.0 / count
            at = time.monotonic()
            for _ in range(count):
                producer_ms.append((at, per_job_ms))
            seq += count
            counts["enqueued"] += count

    async def poll_depth() -> None:
        # For the queue_depth metric only, once per sample. Counting the
        # queued jobs walks every index entry of the queue, dead ones too:
        # with the horizon held, a count every 200 ms (as PgQue's adapter
        # reads its own depth, from its tick positions, at no cost) took
        # enough of the database's core to triple pickup latency p99 at
        # 800 jobs/s. The producer steers by its own count instead.
        db = await connect()
        while not shutdown.is_set():
            row = await (await db.execute(DEPTH, (QUEUE,))).fetchone()
            counts["depth"] = row["count"]
            await asyncio.sleep(sample_every_s)

    async def listen() -> None:
        db = await connect()
        await db.execute("LISTEN pdoflow")
        async for _ in db.notifies():
            for event in work_arrived:
                event.set()

    async def run_job(args: dict) -> None:
        async with running:
            created = dt.datetime.fromisoformat(args["created_at"].replace("Z", "+00:00"))
            pickup_ms.append((time.monotonic(),
                              max(0.0, (dt.datetime.now(dt.timezone.utc) - created).total_seconds() * 1000.0)))
            await asyncio.sleep(work_s)
            end_to_end_ms.append((time.monotonic(),
                                  max(0.0, (dt.datetime.now(dt.timezone.utc) - created).total_seconds() * 1000.0)))

    async def consume(index: int) -> None:
        db = await connect()
        worker = f"harness-{env_int('BENCH_INSTANCE_ID', 0)}-{index}"
        # With FINISH_WITH_CLAIM=1 a batch is finished in the transaction
        # that claims the next: one commit per batch instead of two.
        together = os.environ.get("FINISH_WITH_CLAIM") == "1"
        done: list = []

        async def finish(jobs: list) -> None:
            row = await (await db.execute(
                FINISH, ([job["id"] for job in jobs], [job["attempt"] for job in jobs]))).fetchone()
            counts["completed"] += row["finished"]

        while not shutdown.is_set():
            work_arrived[index].clear()
            if done:
                async with db.transaction():
                    await finish(done)
                    jobs = await (await db.execute(CLAIM, (claim_batch, [QUEUE], worker))).fetchall()
                done = []
            else:
                jobs = await (await db.execute(CLAIM, (claim_batch, [QUEUE], worker))).fetchall()
            counts["claimed"] += len(jobs)
            if not jobs:
                try:
                    await asyncio.wait_for(work_arrived[index].wait(), 0.1)
                except asyncio.TimeoutError:
                    pass
                continue
            await asyncio.gather(*(run_job(job["args"]) for job in jobs))
            if together:
                done = jobs
                continue
            await finish(jobs)

    async def sample() -> None:
        # Clock-aligned first tick, then a monotonic deadline per sample.
        await asyncio.sleep(sample_every_s - time.time() % sample_every_s)
        last_enqueued, last_completed, last = counts["enqueued"], counts["completed"], loop.time()
        deadline = last + sample_every_s
        while not shutdown.is_set():
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            deadline += sample_every_s
            now = loop.time()
            elapsed = max(0.001, now - last)
            at = time.monotonic()
            producer = percentiles(producer_ms, 30.0, at)
            pickup = percentiles(pickup_ms, 30.0, at)
            end_to_end = percentiles(end_to_end_ms, 30.0, at)
            t = now_iso()
            for metric, value, window in [
                ("producer_call_p50_ms", producer[0], 30.0),
                ("producer_call_p95_ms", producer[1], 30.0),
                ("producer_call_p99_ms", producer[2], 30.0),
                ("subscriber_p50_ms", pickup[0], 30.0),
                ("subscriber_p95_ms", pickup[1], 30.0),
                ("subscriber_p99_ms", pickup[2], 30.0),
                ("end_to_end_p50_ms", end_to_end[0], 30.0),
                ("end_to_end_p95_ms", end_to_end[1], 30.0),
                ("end_to_end_p99_ms", end_to_end[2], 30.0),
                ("claim_p50_ms", pickup[0], 30.0),
                ("claim_p95_ms", pickup[1], 30.0),
                ("claim_p99_ms", pickup[2], 30.0),
                ("enqueue_rate", (counts["enqueued"] - last_enqueued) / elapsed, float(sample_every_s)),
                ("completion_rate", (counts["completed"] - last_completed) / elapsed, float(sample_every_s)),
                ("queue_depth", float(counts["depth"]), 0.0),
                ("producer_target_rate", float(producer_rate if producer_mode == "fixed" else 0), 0.0),
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
