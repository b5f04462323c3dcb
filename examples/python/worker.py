"""A pdoflow worker in plain SQL (psycopg 3): claim a batch, run each job,
heartbeat while it runs, finish it with its result or error.

    PDOFLOW_DATABASE_URL=postgresql://app@db/app python worker.py [--until-idle]

Every call is one statement in autocommit mode, so it also works through
PgBouncer in transaction mode (there, pass --poll: LISTEN needs a session).
SIGTERM or SIGINT: stop claiming, finish the running job, hand back the rest.
"""
import argparse
import os
import signal
import socket
import threading
import time

import psycopg
from psycopg.types.json import Jsonb


# The handlers: task name -> function(args, job) returning a JSON value.
def add(args, job):
    return {"sum": args["a"] + args["b"]}


def fail(args, job):
    raise ValueError("this job always fails")


def slow(args, job):
    steps = args.get("steps", 5)
    for step in range(1, steps + 1):
        time.sleep(args.get("step_seconds", 1))
        job.progress({"step": step, "of": steps})  # also renews the lease
    return {"steps": steps}


HANDLERS = {"add": add, "fail": fail, "slow": slow}


class Job:
    """One claimed job. The pair (id, attempt) names the claim in every call."""

    def __init__(self, conn, id, attempt, task, args):
        self.conn, self.id, self.attempt, self.task, self.args = conn, id, attempt, task, args

    def progress(self, value):
        self.conn.execute("SELECT pdoflow.progress(%s, %s, %s)", (self.id, self.attempt, Jsonb(value)))

    def heartbeat_until(self, done, every):
        """Renews the lease every `every` seconds until `done` is set (runs in a thread)."""
        while not done.wait(every):
            try:
                row = self.conn.execute("SELECT pdoflow.heartbeat(%s, %s)", (self.id, self.attempt)).fetchone()
                log(f"heartbeat job {self.id}: lease until {row[0]:%H:%M:%S}")
            except psycopg.errors.ObjectNotInPrerequisiteState as e:  # 55000: claim no longer current
                log(f"heartbeat job {self.id} refused: {e.diag.message_primary}")
                return


def run(job, lease_seconds):
    log(f"run job {job.id} attempt {job.attempt}: {job.task} {job.args}")
    done = threading.Event()
    beats = threading.Thread(target=job.heartbeat_until, args=(done, lease_seconds / 3))
    beats.start()
    try:
        handler = HANDLERS.get(job.task)
        if handler is None:
            raise LookupError(f"no handler for task {job.task!r}")
        result, error = handler(job.args, job), None
    except Exception as e:
        result, error = None, f"{type(e).__name__}: {e}"
    finally:
        done.set()
        beats.join()
    try:
        if error is None:
            sql, params = "SELECT pdoflow.finish(%s, %s, result => %s)", (job.id, job.attempt, Jsonb(result))
        else:
            sql, params = "SELECT pdoflow.finish(%s, %s, error => %s)", (job.id, job.attempt, error)
        state = job.conn.execute(sql, params).fetchone()[0]
        log(f"finished job {job.id}: {state}" + (f" ({error})" if error else ""))
    except psycopg.errors.ObjectNotInPrerequisiteState as e:
        # The lease ran out (or the job was cancelled): this result is dropped,
        # and the job may run again elsewhere. Handlers must tolerate that.
        log(f"finish of job {job.id} refused: {e.diag.message_primary}")


stopping = False


def stop(signum, frame):  # only sets a flag: the loop stops after the running job
    global stopping
    stopping = True


def wait_for_jobs(conn, seconds, listen):
    """Waits up to `seconds`; returns early on NOTIFY pdoflow or a stop signal."""
    for _ in range(seconds):  # one-second slices, to notice `stopping`
        if stopping:
            return
        if listen:
            for _ in conn.notifies(timeout=1, stop_after=1):
                return
        else:
            time.sleep(1)


def log(message):
    print(f"[{NAME}] {message}", flush=True)


parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--queues", default="default", help="comma-separated")
parser.add_argument("--batch", type=int, default=10, help="jobs per claim")
parser.add_argument("--lease", type=float, default=60, help="seconds; heartbeats every third of it")
parser.add_argument("--name", default=f"python-{socket.gethostname()}-{os.getpid()}")
parser.add_argument("--idle-wait", type=int, default=10, help="seconds between claims when idle")
parser.add_argument("--poll", action="store_true", help="do not LISTEN (PgBouncer in transaction mode)")
parser.add_argument("--until-idle", action="store_true", help="exit once a claim finds nothing")
options = parser.parse_args()
NAME = options.name

signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
# prepare_threshold=None: no server-side prepared statements (PgBouncer-safe).
conn = psycopg.connect(os.environ.get("PDOFLOW_DATABASE_URL", ""), autocommit=True, prepare_threshold=None)
if not options.poll:
    conn.execute("LISTEN pdoflow")  # woken with the queue's name when jobs become available
log(f"working queues {options.queues}")
while not stopping:
    claimed = conn.execute(
        "SELECT id, attempt, task, args FROM pdoflow.claim(%s, queues => %s::text[],"
        " worker => %s, lease => make_interval(secs => %s))",
        (options.batch, options.queues.split(","), NAME, options.lease),
    ).fetchall()
    if not claimed:
        if options.until_idle:
            break
        wait_for_jobs(conn, options.idle_wait, listen=not options.poll)
        continue
    for position, row in enumerate(claimed):
        if stopping:  # hand back the jobs not started: another worker takes them at once
            for id, attempt, task, args in claimed[position:]:
                conn.execute("SELECT pdoflow.release(%s, %s)", (id, attempt))
                log(f"released job {id}")
            break
        run(Job(conn, *row), options.lease)
conn.close()
log("stopped")
