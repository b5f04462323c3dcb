"""A pdoflow producer in plain SQL (psycopg 3): enqueue jobs with
pdoflow.enqueue, wait for their results with pdoflow.await_result, and check
them (exit status 1 if any check fails). Run worker.py beside it.

    PDOFLOW_DATABASE_URL=postgresql://app@db/app python producer.py
"""
import os
import sys
import time

import psycopg
from psycopg.types.json import Jsonb

ENDED = ("succeeded", "failed", "cancelled")
DEADLINE = time.monotonic() + 60  # for the whole run
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)


def await_result(conn, job_id, seconds=None):
    """pdoflow.await_result: returns once the job ended, or its state at the timeout."""
    if seconds is None:
        seconds = max(0, DEADLINE - time.monotonic())
    return conn.execute(
        "SELECT state, result, last_error, progress FROM pdoflow.await_result(%s, make_interval(secs => %s))",
        (job_id, seconds),
    ).fetchone()


with psycopg.connect(os.environ.get("PDOFLOW_DATABASE_URL", ""), autocommit=True, prepare_threshold=None) as conn:
    def enqueue(sql, *params):
        return conn.execute(sql, params).fetchone()[0]  # the job's id

    # A long job that reports its progress, 20 quick ones, one that always fails.
    slow = enqueue("SELECT pdoflow.enqueue('slow', %s)", Jsonb({"steps": 6, "step_seconds": 0.5}))
    adds = {enqueue("SELECT pdoflow.enqueue('add', %s)", Jsonb({"a": i, "b": i * i})): i + i * i for i in range(20)}
    failing = enqueue("SELECT pdoflow.enqueue('fail', max_attempts => 1)")  # no retry: it ends failed
    # A unique job: while one job of task 'add' holds the key (and for an hour
    # after it succeeded), enqueueing the same key returns that job's id.
    unique_sql = "SELECT pdoflow.enqueue('add', %s, unique_key => %s, unique_for => '1 hour')"
    unique = enqueue(unique_sql, Jsonb({"a": 1000, "b": 1}), "add-1000-1")
    again = enqueue(unique_sql, Jsonb({"a": 1000, "b": 1}), "add-1000-1")
    print(f"enqueued {3 + len(adds)} jobs; unique key twice: {unique} and {again}")
    check(again == unique, "the second enqueue of unique key add-1000-1 returned the first job's id")

    # Follow the long job: short waits return its current state and progress.
    seen = []
    state, result, error, progress = await_result(conn, slow, 0.5)
    while state not in ENDED and time.monotonic() < DEADLINE:
        if progress is not None and progress not in seen:
            print(f"slow job {state}, progress {progress}")
            seen.append(progress)
        state, result, error, progress = await_result(conn, slow, 0.5)
    check(state == "succeeded" and result == {"steps": 6}, f"slow job: {state} with {result}")
    check(len(seen) > 0, f"slow job: progress seen while it ran ({len(seen)} reports)")
    check(progress == {"step": 6, "of": 6}, f"slow job: last progress {progress}")

    for job_id, total in adds.items():
        state, result, error, progress = await_result(conn, job_id)
        check(state == "succeeded" and result == {"sum": total}, f"add job {job_id}: {state} with {result}")

    state, result, error, progress = await_result(conn, unique)
    check(state == "succeeded" and result == {"sum": 1001}, f"unique add job: {state} with {result}")

    state, result, error, progress = await_result(conn, failing)
    check(state == "failed" and "this job always fails" in (error or ""), f"fail job: {state}, last_error {error!r}")

if failures:
    sys.exit(f"producer: {len(failures)} check(s) failed")
print("producer: all checks passed")
