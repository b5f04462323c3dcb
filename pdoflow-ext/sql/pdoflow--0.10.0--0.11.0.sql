-- pdoflow 0.10.0 -> 0.11.0 (ALTER EXTENSION pdoflow UPDATE TO '0.11.0').
--
-- Issue 19: flow control. Paused queues, running and rate limits per queue,
-- per-key running limits (enqueue's concurrency_key), the pdoflow.queues
-- view, and claims that wait (claim's wait). New columns on both job
-- tables, the table queue_controls, and the functions that use them.
\echo Use "ALTER EXTENSION pdoflow UPDATE" to load this file. \quit

ALTER TABLE pdoflow.active_jobs ADD COLUMN concurrency_key text COLLATE "C",
                                ADD COLUMN controlled boolean NOT NULL DEFAULT false;
ALTER TABLE pdoflow.finished_jobs ADD COLUMN concurrency_key text COLLATE "C";

DROP INDEX pdoflow.active_jobs_claim_idx;

-- The claim order: highest priority first, then the longest due, then the oldest.
-- Partial on state, so running jobs and their updates never touch these indexes.
-- The every-queue index leaves out the jobs of paused and limited queues, so
-- that a claim does not walk past a held-back backlog; claims reach those
-- through the per-queue index, within their queue's limits.
CREATE INDEX active_jobs_claim_idx
    ON pdoflow.active_jobs (priority DESC, run_at, id)
    WHERE state = 'queued' AND NOT controlled;

-- A claim from a queue with a per-key limit counts the running jobs of a key.
CREATE INDEX active_jobs_running_key_idx
    ON pdoflow.active_jobs (queue, concurrency_key)
    WHERE state = 'running' AND concurrency_key IS NOT NULL;

CREATE OR REPLACE VIEW pdoflow.jobs AS
SELECT id, task, queue, priority,
       CASE state WHEN 'paused' THEN 'queued' ELSE state END AS state,
       attempt, max_attempts, args,
       NULL::jsonb AS result, last_error, run_at, created_at, started_at,
       NULL::timestamptz AS finished_at, lease_expires_at, worker, heartbeat_at,
       posting, depends_on, dependency_mode, node, enqueued_by, unique_key, progress, concurrency_key
FROM pdoflow.active_jobs
UNION ALL
SELECT id, task, queue, priority, state, attempt, max_attempts, args,
       result, last_error, run_at, created_at, started_at,
       finished_at, NULL::timestamptz AS lease_expires_at, worker, NULL::timestamptz AS heartbeat_at,
       posting, depends_on, dependency_mode, node, enqueued_by, unique_key, progress, concurrency_key
FROM pdoflow.finished_jobs;

COMMENT ON VIEW pdoflow.jobs IS
    'Every job, whatever its state: blocked, queued, running, succeeded, failed or cancelled.';

-- Flow control (sql/api/queue_controls.sql): the queues that are paused or
-- limited (released_at NULL). A queue without such a row has no controls. The counts that
-- enforce the limits live in shared memory (pdoflow-ext/src/flow_control/),
-- rebuilt from pdoflow.active_jobs after a restart.
CREATE TABLE pdoflow.queue_controls (
    queue       text        COLLATE "C" NOT NULL,
    paused      boolean     NOT NULL DEFAULT false,
    -- At most this many of the queue's jobs running at once.
    max_running integer,
    -- At most rate claims of the queue's jobs per per (a smooth limit).
    rate        integer,
    per         interval,
    -- At most this many running jobs per concurrency_key.
    key_limit   integer,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    -- When the queue's last control was removed: the row stays until the
    -- sweeper has let every job enqueued meanwhile back into the every-queue
    -- claim index (sql/api/queue_controls.sql).
    released_at timestamptz,
    CONSTRAINT queue_controls_pkey PRIMARY KEY (queue),
    CONSTRAINT queue_controls_max_running_check CHECK (max_running > 0),
    CONSTRAINT queue_controls_rate_check CHECK ((rate IS NULL) = (per IS NULL) AND rate > 0 AND per > interval '0'),
    CONSTRAINT queue_controls_key_limit_check CHECK (key_limit > 0),
    CONSTRAINT queue_controls_released_check
        CHECK ((released_at IS NULL) = (paused OR max_running IS NOT NULL OR rate IS NOT NULL OR key_limit IS NOT NULL))
);

COMMENT ON TABLE pdoflow.queue_controls IS
    'Paused and limited queues. Read pdoflow.queues; change them only with pause_queue, resume_queue, set_queue_limits and set_key_limit.';

SELECT pg_catalog.pg_extension_config_dump('pdoflow.queue_controls', '');

-- Rust helpers (pdoflow-ext/src/input/queue_controls.rs, flow_control/, claim_wait/).
CREATE FUNCTION pdoflow."_check_queue_name"(
	"queue_name" TEXT /* Option < & str > */
) RETURNS VOID /* Checked */
STABLE PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'check_queue_name_wrapper';

CREATE FUNCTION pdoflow."_check_queue_limits"(
	"queue_name" TEXT, /* Option < & str > */
	"max_running" INT, /* Option < i32 > */
	"rate" INT, /* Option < i32 > */
	"per" interval /* Option < Interval > */
) RETURNS VOID /* Checked */
STABLE PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'check_queue_limits_wrapper';

CREATE FUNCTION pdoflow."_check_key_limit"(
	"queue_name" TEXT, /* Option < & str > */
	"max_running" INT /* Option < i32 > */
) RETURNS VOID /* Checked */
STABLE PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'check_key_limit_wrapper';

CREATE FUNCTION pdoflow."_check_claim_wait"(
	"wait" interval /* Option < Interval > */
) RETURNS VOID /* Checked */
STABLE PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'check_claim_wait_wrapper';

CREATE FUNCTION pdoflow."_check_concurrency_keys"(
	"keys" TEXT[], /* :: std :: option :: Option < Vec < Option < String > > > */
	"jobs" INT /* Option < i32 > */
) RETURNS VOID /* Checked */
STABLE PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'check_concurrency_keys_wrapper';

CREATE FUNCTION pdoflow."_take_running_slots"(
	"queue" TEXT, /* & str */
	"want" INT, /* i32 */
	"max_running" INT /* i32 */
) RETURNS INT /* Option < i32 > */
STRICT VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'take_running_slots_wrapper';

CREATE FUNCTION pdoflow."_give_back_running_slots"(
	"queue" TEXT, /* & str */
	"slots" INT /* i32 */
) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'give_back_running_slots_wrapper';

CREATE FUNCTION pdoflow."_start_running_count"(
	"queue" TEXT /* & str */
) RETURNS bigint /* Option < i64 > */
STRICT VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'start_running_count_wrapper';

CREATE FUNCTION pdoflow."_finish_running_count"(
	"queue" TEXT, /* & str */
	"attempt" bigint, /* i64 */
	"running" bigint /* i64 */
) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'finish_running_count_wrapper';

CREATE FUNCTION pdoflow."_take_rate_tokens"(
	"queue" TEXT, /* & str */
	"want" INT, /* i32 */
	"rate" INT, /* i32 */
	"per" interval /* Interval */
) RETURNS INT /* i32 */
STRICT VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'take_rate_tokens_wrapper';

CREATE FUNCTION pdoflow."_give_back_rate_tokens"(
	"queue" TEXT, /* & str */
	"tokens" INT /* i32 */
) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'give_back_rate_tokens_wrapper';

CREATE FUNCTION pdoflow."_next_claim_allowed"(
	"queue" TEXT, /* & str */
	"rate" INT, /* i32 */
	"per" interval /* Interval */
) RETURNS timestamp with time zone /* TimestampWithTimeZone */
STRICT VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'next_claim_allowed_wrapper';

CREATE FUNCTION pdoflow."_running_slots"(
	"queue" TEXT /* & str */
) RETURNS bigint /* Option < i64 > */
STRICT VOLATILE PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'running_slots_wrapper';

CREATE FUNCTION pdoflow."_queue_limits_changed"(
	"queue" TEXT, /* & str */
	"removed" bool /* bool */
) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'queue_limits_changed_wrapper';

CREATE FUNCTION pdoflow."_forget_flow_counts"() RETURNS void
STRICT VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'forget_flow_counts_wrapper';

CREATE FUNCTION pdoflow."_running_slot_freed"()
	RETURNS TRIGGER
	LANGUAGE c
	AS 'MODULE_PATHNAME', '_running_slot_freed_wrapper';

CREATE FUNCTION pdoflow."_queue_controls_written"()
	RETURNS TRIGGER
	LANGUAGE c
	AS 'MODULE_PATHNAME', '_queue_controls_written_wrapper';

CREATE FUNCTION pdoflow."_wake_claimers"(
	"queue" TEXT /* & str */
) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'wake_claimers_wrapper';

CREATE FUNCTION pdoflow."_wake_claimers_at_commit"(
	"queue" TEXT /* & str */
) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'wake_claimers_at_commit_wrapper';

CREATE FUNCTION pdoflow."_claim_wait_enter"(
	"queues" TEXT[] /* :: std :: option :: Option < Vec < Option < String > > > */
) RETURNS void
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'claim_wait_enter_wrapper';

CREATE FUNCTION pdoflow."_claim_wait_leave"() RETURNS void
STRICT VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'claim_wait_leave_wrapper';

CREATE FUNCTION pdoflow."_claim_wait_sleep"(
	"until" timestamp with time zone /* TimestampWithTimeZone */
) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'claim_wait_sleep_wrapper';

-- Flow control: paused queues, running and rate limits per queue, and
-- running limits per concurrency key. Admin only.
--
-- Where the rules live:
--   pdoflow.queue_controls    each paused or limited queue (schema.sql);
--   active_jobs.controlled    set on every job of such a queue: kept out of
--                             the every-queue claim index, so a held-back
--                             backlog costs other queues' claims nothing;
--   claim (claim.sql)         takes running slots and rate tokens before it
--                             picks a limited queue's jobs, and checks keys;
--   pdoflow-ext/src/flow_control/  the counts in shared memory, how they are
--                             kept exact, and rebuilt after a restart.
--
-- A job of a limited queue that is running holds one of its queue's running
-- slots until it stops running: finished, failed, cancelled, released, or
-- its lease taken back by the sweeper (a crashed worker's jobs). The slot
-- is freed when that transaction commits.
--
-- Limits set while claims of the queue are in progress apply to the claims
-- that start after the change commits: a claim already under way may still
-- start its jobs (they count against the new limit as they finish).
--
-- Rates: at most rate claims per per, spread evenly (GCRA: one claim every
-- per/rate), with a burst of a tenth of a second's worth of claims (at
-- least one) after a quiet spell. A claim that rolls back gives its share
-- back; a job that fails does not. After a server restart the limiter
-- starts afresh.
--
-- Per-key limits: at most key_limit running jobs share a concurrency_key
-- in the queue; jobs without a key are not limited by it. Each key needs
-- no setup. A claim passes over the jobs of a full key to the next ones.

-- The slot of a marked running job that stops running is freed when its
-- transaction commits (pdoflow-ext/src/flow_control/mod.rs). WHEN keeps
-- every other row from calling the function.
CREATE TRIGGER active_jobs_running_slot_freed
    BEFORE UPDATE ON pdoflow.active_jobs
    FOR EACH ROW WHEN (OLD.state = 'running' AND OLD.controlled AND NEW.state <> 'running')
    EXECUTE FUNCTION pdoflow._running_slot_freed();
CREATE TRIGGER active_jobs_running_slot_deleted
    BEFORE DELETE ON pdoflow.active_jobs
    FOR EACH ROW WHEN (OLD.state = 'running' AND OLD.controlled)
    EXECUTE FUNCTION pdoflow._running_slot_freed();
ALTER TABLE pdoflow.active_jobs ENABLE ALWAYS TRIGGER active_jobs_running_slot_freed;
ALTER TABLE pdoflow.active_jobs ENABLE ALWAYS TRIGGER active_jobs_running_slot_deleted;

-- Whatever writes queue_controls (the functions below, a restore, a hand-
-- made change), sessions read the controls again once it commits: the
-- Rust enqueue keeps a copy (flow_control::is_controlled).
CREATE TRIGGER queue_controls_written
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON pdoflow.queue_controls
    FOR EACH STATEMENT EXECUTE FUNCTION pdoflow._queue_controls_written();
ALTER TABLE pdoflow.queue_controls ENABLE ALWAYS TRIGGER queue_controls_written;

-- The one place a queue's controls change: sets them to what the caller
-- passes (the whole new state), marks or unmarks the queue's jobs, and has
-- the counts rebuilt and waiting claimers woken once it commits. Returns
-- whether anything changed.
CREATE FUNCTION pdoflow._change_queue_controls(
    queue_name      text,
    new_paused      boolean,
    new_max_running integer,
    new_rate        integer,
    new_per         interval,
    new_key_limit   integer
) RETURNS boolean
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    old             record;
    was_controlled  boolean;
    now_controlled  boolean := new_paused OR new_max_running IS NOT NULL OR new_rate IS NOT NULL
                               OR new_key_limit IS NOT NULL;
BEGIN
    IF new_rate IS NULL THEN
        new_per := NULL;
    END IF;
    -- One change of a queue's controls at a time.
    PERFORM pg_advisory_xact_lock('pdoflow.queue_controls'::regclass::oid::integer, hashtext(queue_name));
    SELECT c.* INTO old FROM pdoflow.queue_controls AS c WHERE c.queue = queue_name COLLATE "C";
    was_controlled := FOUND AND old.released_at IS NULL;
    IF was_controlled AND old.paused = new_paused
       AND old.max_running IS NOT DISTINCT FROM new_max_running
       AND old.rate IS NOT DISTINCT FROM new_rate AND old.per IS NOT DISTINCT FROM new_per
       AND old.key_limit IS NOT DISTINCT FROM new_key_limit THEN
        RETURN false;
    END IF;
    IF NOT was_controlled AND NOT now_controlled THEN
        RETURN false;
    END IF;
    INSERT INTO pdoflow.queue_controls AS c (queue, paused, max_running, rate, per, key_limit, updated_at, released_at)
    VALUES (queue_name, new_paused, new_max_running, new_rate, new_per, new_key_limit, now(),
            CASE WHEN NOT now_controlled THEN now() END)
    ON CONFLICT ON CONSTRAINT queue_controls_pkey DO UPDATE
    SET paused = excluded.paused, max_running = excluded.max_running, rate = excluded.rate,
        per = excluded.per, key_limit = excluded.key_limit, updated_at = excluded.updated_at,
        released_at = excluded.released_at;
    -- Every job of the queue, whatever its state, so that jobs queued later
    -- (a posting resumed, parents ended, a retry) keep the mark. Running
    -- jobs marked here hold slots: the count made after the commit sees them.
    -- Jobs enqueued meanwhile by transactions that read the old controls
    -- are marked by the claim that meets them, or unmarked by the sweeper
    -- (_release_queue_controls).
    IF now_controlled AND NOT was_controlled THEN
        UPDATE pdoflow.active_jobs AS j SET controlled = true
        WHERE j.queue = queue_name COLLATE "C" AND NOT j.controlled;
    ELSIF was_controlled AND NOT now_controlled THEN
        UPDATE pdoflow.active_jobs AS j SET controlled = false
        WHERE j.queue = queue_name COLLATE "C" AND j.controlled;
    END IF;
    PERFORM pdoflow._queue_limits_changed(queue_name, NOT now_controlled);
    PERFORM pdoflow._wake_claimers_at_commit(queue_name);
    RETURN true;
END
$$;

-- The controls a queue has now (its row, or none), for the functions below.
CREATE FUNCTION pdoflow._queue_controls_of(queue_name text)
RETURNS TABLE (paused boolean, max_running integer, rate integer, per interval, key_limit integer)
LANGUAGE sql STABLE
AS $$
    SELECT coalesce(c.paused, false), c.max_running, c.rate, c.per, c.key_limit
    FROM (SELECT 1) AS one
    LEFT JOIN pdoflow.queue_controls AS c ON c.queue = queue_name COLLATE "C" AND c.released_at IS NULL
$$;

-- A paused queue's jobs are not claimed (running ones finish); enqueue
-- still works. A queue need not have jobs to be paused: pausing one before
-- its first enqueue holds its jobs from the start. Returns whether the
-- queue was running (false: paused already).
CREATE FUNCTION pdoflow.pause_queue(queue text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    now_set record;
BEGIN
    PERFORM pdoflow._check_queue_name(queue);
    SELECT * INTO now_set FROM pdoflow._queue_controls_of(queue);
    RETURN pdoflow._change_queue_controls(queue, true, now_set.max_running, now_set.rate, now_set.per,
                                          now_set.key_limit);
END
$$;

COMMENT ON FUNCTION pdoflow.pause_queue(text) IS
    'Stops claims of the queue''s jobs (running ones finish; enqueue still works). Returns false when it was paused already.';

-- Returns whether the queue was paused.
CREATE FUNCTION pdoflow.resume_queue(queue text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    now_set record;
BEGIN
    PERFORM pdoflow._check_queue_name(queue);
    SELECT * INTO now_set FROM pdoflow._queue_controls_of(queue);
    RETURN pdoflow._change_queue_controls(queue, false, now_set.max_running, now_set.rate, now_set.per,
                                          now_set.key_limit);
END
$$;

COMMENT ON FUNCTION pdoflow.resume_queue(text) IS
    'Lets a paused queue''s jobs be claimed again. Returns false when it was not paused.';

-- Sets both of a queue's limits at once: NULL removes one. Keeps its
-- pause and per-key limit.
CREATE FUNCTION pdoflow.set_queue_limits(
    queue       text,
    max_running integer  DEFAULT NULL,
    rate        integer  DEFAULT NULL,
    per         interval DEFAULT '1 second'
) RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    now_set record;
BEGIN
    PERFORM pdoflow._check_queue_limits(queue, max_running, rate, per);
    SELECT * INTO now_set FROM pdoflow._queue_controls_of(queue);
    PERFORM pdoflow._change_queue_controls(queue, now_set.paused, max_running, rate, per, now_set.key_limit);
END
$$;

COMMENT ON FUNCTION pdoflow.set_queue_limits(text, integer, integer, interval) IS
    'At most max_running of the queue''s jobs running at once, and at most rate claims per per (spread evenly); NULL removes a limit.';

-- At most max_running running jobs per distinct concurrency_key in the
-- queue; NULL removes the limit.
CREATE FUNCTION pdoflow.set_key_limit(queue text, max_running integer)
RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    now_set record;
BEGIN
    PERFORM pdoflow._check_key_limit(queue, max_running);
    SELECT * INTO now_set FROM pdoflow._queue_controls_of(queue);
    PERFORM pdoflow._change_queue_controls(queue, now_set.paused, now_set.max_running, now_set.rate,
                                          now_set.per, max_running);
END
$$;

COMMENT ON FUNCTION pdoflow.set_key_limit(text, integer) IS
    'At most max_running running jobs per distinct concurrency_key in the queue (jobs without a key are not limited); NULL removes the limit.';

-- The sweeper's part: once no transaction that may have read a queue's
-- old controls is left, unmarks the jobs that such transactions enqueued
-- into a queue whose controls were removed meanwhile, and forgets the
-- row. Returns how many queues it released.
CREATE FUNCTION pdoflow._release_queue_controls()
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
DECLARE
    released record;
    oldest   timestamptz;
    done     bigint := 0;
BEGIN
    SELECT min(a.xact_start) INTO oldest FROM pg_catalog.pg_stat_activity AS a
    WHERE a.pid <> pg_catalog.pg_backend_pid();
    FOR released IN
        SELECT c.queue FROM pdoflow.queue_controls AS c
        WHERE c.released_at IS NOT NULL AND c.released_at < coalesce(oldest, 'infinity')
          AND c.released_at < now() - interval '1 second'
        FOR UPDATE SKIP LOCKED
    LOOP
        UPDATE pdoflow.active_jobs AS j SET controlled = false
        WHERE j.queue = released.queue COLLATE "C" AND j.controlled;
        DELETE FROM pdoflow.queue_controls AS c WHERE c.queue = released.queue COLLATE "C";
        done := done + 1;
    END LOOP;
    RETURN done;
END
$$;

-- Per queue: its controls and its jobs. waiting: due and not running;
-- delayed: not due yet; throttled: waiting jobs held back right now by the
-- pause, the running limit or a full key (jobs a rate limit holds back
-- count as waiting); running_slots: slots taken in this server's count
-- (NULL until a claim counted them).
CREATE VIEW pdoflow.queues AS
WITH controls AS (
    SELECT c.queue, c.paused, c.max_running, c.rate, c.per, c.key_limit
    FROM pdoflow.queue_controls AS c
    WHERE c.released_at IS NULL
), job_counts AS (
    SELECT j.queue,
           count(*) FILTER (WHERE j.state IN ('queued', 'paused') AND j.run_at <= now()) AS waiting,
           count(*) FILTER (WHERE j.state IN ('queued', 'paused') AND j.run_at > now()) AS delayed,
           count(*) FILTER (WHERE j.state = 'blocked') AS blocked,
           count(*) FILTER (WHERE j.state = 'running') AS running
    FROM pdoflow.active_jobs AS j
    GROUP BY j.queue
), full_keys AS (
    SELECT j.queue, count(*) AS throttled
    FROM pdoflow.active_jobs AS j
    JOIN controls AS c ON c.queue = j.queue AND c.key_limit IS NOT NULL
    WHERE j.state = 'queued' AND j.run_at <= now() AND j.concurrency_key IS NOT NULL
      AND (SELECT count(*) FROM pdoflow.active_jobs AS r
           WHERE r.state = 'running' AND r.queue = j.queue AND r.concurrency_key = j.concurrency_key)
          >= c.key_limit
    GROUP BY j.queue
)
SELECT coalesce(n.queue, c.queue) AS queue,
       coalesce(c.paused, false) AS paused,
       c.max_running, c.rate, c.per, c.key_limit,
       coalesce(n.waiting, 0) AS waiting,
       coalesce(n.delayed, 0) AS delayed,
       coalesce(n.blocked, 0) AS blocked,
       coalesce(n.running, 0) AS running,
       CASE WHEN c.paused OR coalesce(n.running, 0) >= c.max_running THEN coalesce(n.waiting, 0)
            ELSE coalesce(k.throttled, 0) END AS throttled,
       pdoflow._running_slots(coalesce(n.queue, c.queue)) AS running_slots
FROM job_counts AS n
FULL JOIN controls AS c ON c.queue = n.queue
LEFT JOIN full_keys AS k ON k.queue = coalesce(n.queue, c.queue);

COMMENT ON VIEW pdoflow.queues IS
    'Every queue with jobs or controls: whether it is paused, its limits, and its waiting, delayed, blocked, running and throttled jobs.';

-- A new install (or a restore's CREATE EXTENSION) starts without counts:
-- shared memory may hold those of a dropped install in this database.
SELECT pdoflow._forget_flow_counts();

DROP FUNCTION pdoflow._insert_jobs(uuid[], text[], jsonb[], text[], integer[], integer[], timestamptz[], text[], uuid, integer[], uuid[], integer[], integer[], text[], text[], text[], interval[], text);

-- New jobs: the one place that says what a new job's row holds, that
-- announces the queues where jobs can run at once, and that notes the new
-- queued jobs for the claim floors. Every SQL path that adds
-- jobs (_enqueue_general, both enqueue_many, submit_dag) decides where each
-- job starts, then calls this; the Rust enqueue's plain job is the same row
-- with no posting and no parents (pdoflow-ext/src/api/enqueue.rs, checked
-- against this function by tests/tests/enqueue_row.rs).
--
-- One job per element of ids. Every other array holds one value per job, or
-- a single value that every job takes (enqueue_many's shared options), or
-- is NULL when no job has that value. A job's run_at NULL means now. Its
-- parents are parents[first_parent : first_parent + parent_count - 1]:
-- jobs that share their parents share one slice.
--
-- unique_keys (one per job, never shared) and unique_for (per job, or one
-- for all) make unique jobs (unique_keys.sql): a job whose key another job
-- holds is not added. Returns the id each job ended up with: its own, or the
-- holder's. enqueued_by, when given, stands in for the calling role (the
-- sweeper enqueues a schedule's jobs as the schedule's owner).
-- concurrency_keys (per job, or one for all) are for per-key limits; a job
-- of a paused or limited queue is marked controlled (queue_controls.sql).
CREATE FUNCTION pdoflow._insert_jobs(
    ids             uuid[],
    tasks           text[],
    args            jsonb[],
    queues          text[],
    priorities      integer[],
    max_attempts    integer[],
    run_ats         timestamptz[],
    states          text[],
    posting         uuid      DEFAULT NULL,
    parents_pending integer[] DEFAULT NULL,
    parents         uuid[]    DEFAULT NULL,
    first_parents   integer[] DEFAULT NULL,
    parent_counts   integer[] DEFAULT NULL,
    modes           text[]    DEFAULT NULL,
    nodes           text[]    DEFAULT NULL,
    unique_keys     text[]    DEFAULT NULL,
    unique_for      interval[] DEFAULT NULL,
    enqueued_by     text      DEFAULT NULL,
    concurrency_keys text[]   DEFAULT NULL
) RETURNS uuid[]
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    -- Per job: the id it ends up with (see above).
    final_ids uuid[] := ids;
    n         integer := coalesce(cardinality(ids), 0);
    -- The queues whose jobs are marked controlled (queue_controls.sql).
    controlled_queues text[] := ARRAY(SELECT c.queue FROM pdoflow.queue_controls AS c
                                      WHERE c.released_at IS NULL);
BEGIN
    IF n = 0 THEN
        RETURN ids;  -- no jobs (the shared values alone would make a row below)
    END IF;
    IF unique_keys IS NOT NULL THEN
        final_ids := pdoflow._take_unique_keys(
            CASE WHEN cardinality(tasks) = 1 THEN array_fill(tasks[1], ARRAY[n]) ELSE tasks END,
            unique_keys,
            CASE WHEN cardinality(_insert_jobs.unique_for) = 1
                 THEN array_fill(_insert_jobs.unique_for[1], ARRAY[n]) ELSE _insert_jobs.unique_for END,
            ids);
    END IF;
    INSERT INTO pdoflow.active_jobs (id, posting, task, queue, priority, max_attempts, args, run_at,
                                     created_at, state, parents_pending, depends_on, dependency_mode,
                                     node, enqueued_by, unique_key, concurrency_key, controlled)
        SELECT j.id, j.posting, j.task, j.queue, j.priority, j.max_attempts, j.args,
               coalesce(j.run_at, now()), now(), j.state, j.pending,
               CASE WHEN j.parent_count > 0
                    THEN _insert_jobs.parents[j.first_parent : j.first_parent + j.parent_count - 1] END,
               j.mode, j.node, j.enqueued_by, j.unique_key, j.concurrency_key,
               j.queue = ANY (controlled_queues)
        FROM (
            -- Per job: its own element, or the value every job shares.
            SELECT e.id, coalesce(one.task, e.task) AS task, coalesce(one.args, e.args) AS args,
                   coalesce(one.queue, e.queue) AS queue, coalesce(one.priority, e.priority) AS priority,
                   coalesce(one.max_attempts, e.max_attempts) AS max_attempts,
                   coalesce(one.run_at, e.run_at) AS run_at, coalesce(one.state, e.state) AS state,
                   coalesce(one.pending, e.pending) AS pending,
                   coalesce(one.first_parent, e.first_parent) AS first_parent,
                   coalesce(one.parent_count, e.parent_count) AS parent_count,
                   coalesce(one.mode, e.mode) AS mode, coalesce(one.node, e.node) AS node,
                   one.posting, one.enqueued_by, e.unique_key, e.final_id,
                   coalesce(one.concurrency_key, e.concurrency_key) AS concurrency_key
            FROM (
                -- The shared values: arrays of one element. Worked out once
                -- (OFFSET 0 keeps the planner from doing it for every job).
                SELECT CASE WHEN cardinality(tasks) = 1 THEN tasks[1] END AS task,
                       CASE WHEN cardinality(_insert_jobs.args) = 1 THEN _insert_jobs.args[1] END AS args,
                       CASE WHEN cardinality(queues) = 1 THEN queues[1] END AS queue,
                       CASE WHEN cardinality(priorities) = 1 THEN priorities[1] END AS priority,
                       CASE WHEN cardinality(_insert_jobs.max_attempts) = 1
                            THEN _insert_jobs.max_attempts[1] END AS max_attempts,
                       CASE WHEN cardinality(run_ats) = 1 THEN run_ats[1] END AS run_at,
                       CASE WHEN cardinality(states) = 1 THEN states[1] END AS state,
                       CASE WHEN cardinality(_insert_jobs.parents_pending) = 1
                            THEN _insert_jobs.parents_pending[1] END AS pending,
                       CASE WHEN cardinality(first_parents) = 1 THEN first_parents[1] END AS first_parent,
                       CASE WHEN cardinality(parent_counts) = 1 THEN parent_counts[1] END AS parent_count,
                       CASE WHEN cardinality(modes) = 1 THEN modes[1] END AS mode,
                       CASE WHEN cardinality(nodes) = 1 THEN nodes[1] END AS node,
                       CASE WHEN cardinality(concurrency_keys) = 1 THEN concurrency_keys[1] END AS concurrency_key,
                       _insert_jobs.posting AS posting,
                       coalesce(_insert_jobs.enqueued_by, pdoflow._calling_role()) AS enqueued_by
                OFFSET 0
            ) AS one,
            ROWS FROM (unnest(ids), unnest(tasks), unnest(_insert_jobs.args), unnest(queues),
                       unnest(priorities), unnest(_insert_jobs.max_attempts), unnest(run_ats),
                       unnest(states), unnest(_insert_jobs.parents_pending), unnest(first_parents),
                       unnest(parent_counts), unnest(modes), unnest(nodes), unnest(unique_keys),
                       unnest(final_ids), unnest(concurrency_keys))
                 AS e(id, task, args, queue, priority, max_attempts, run_at, state, pending,
                      first_parent, parent_count, mode, node, unique_key, final_id, concurrency_key)
        ) AS j
        -- Not the jobs whose key another job holds.
        WHERE j.final_id = j.id;
    -- The levels (queue and priority) that gained queued jobs, read from the
    -- input rather than the rows (RETURNING would hold every row of a bulk
    -- insert), each with its earliest due time: noted for the claim floors
    -- (claim_floors.sql), and its queue announced if that time has come
    -- (the announcement board and NOTIFY keep one per queue).
    PERFORM pdoflow._note_queued(l.queue, l.priority, l.first_due, NULL),
            CASE WHEN l.first_due <= now() THEN pdoflow._announce(l.queue) END
    FROM (
        SELECT j.queue, j.priority, min(j.run_at) AS first_due
        FROM (
            SELECT coalesce(d.queue, CASE WHEN cardinality(queues) = 1 THEN queues[1] END) AS queue,
                   coalesce(d.priority, CASE WHEN cardinality(priorities) = 1 THEN priorities[1] END) AS priority,
                   coalesce(d.run_at, CASE WHEN cardinality(run_ats) = 1 THEN run_ats[1] END, now()) AS run_at,
                   coalesce(d.state, CASE WHEN cardinality(states) = 1 THEN states[1] END) AS state
            FROM ROWS FROM (unnest(queues), unnest(priorities), unnest(run_ats), unnest(states),
                            unnest(ids), unnest(final_ids))
                 AS d(queue, priority, run_at, state, id, final_id)
            WHERE d.final_id = d.id
        ) AS j
        WHERE j.state = 'queued'
        GROUP BY j.queue, j.priority
    ) AS l;
    RETURN final_ids;
END
$$;

DROP FUNCTION pdoflow._enqueue_general(text, jsonb, text, integer, timestamptz, integer, uuid, uuid[], text, text, interval);

-- pdoflow.enqueue for the jobs its fast path leaves (see
-- pdoflow-ext/src/api/enqueue.rs): jobs in a posting, with parents, with a
-- unique key that has a row already (held, or to be taken over), of a task
-- whose args must be checked, and every call while
-- pdoflow.require_registered_tasks is on.
-- Called by enqueue only, after its input and privilege checks. It pins
-- the search_path that enqueue itself does not (see there).
CREATE FUNCTION pdoflow._enqueue_general(
    task            text,
    args            jsonb,
    queue           text,
    priority        integer,
    run_at          timestamptz,
    max_attempts    integer,
    posting         uuid,
    depends_on      uuid[],
    dependency_mode text,
    unique_key      text     DEFAULT NULL,
    unique_for      interval DEFAULT NULL,
    concurrency_key text     DEFAULT NULL
) RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    job_id uuid := pdoflow.uuid_generate_v7();
    place  record;
BEGIN
    IF pdoflow._task_checks_needed() THEN
        PERFORM pdoflow._check_task_args(_enqueue_general.task, ARRAY[_enqueue_general.args], ARRAY['args']);
    END IF;
    SELECT * INTO place
    FROM pdoflow._new_job_placement(_enqueue_general.queue, _enqueue_general.priority,
                                    _enqueue_general.posting, _enqueue_general.depends_on,
                                    _enqueue_general.dependency_mode);
    RETURN (pdoflow._insert_jobs(
        ARRAY[job_id], ARRAY[_enqueue_general.task], ARRAY[_enqueue_general.args], ARRAY[place.job_queue],
        ARRAY[place.job_priority], ARRAY[_enqueue_general.max_attempts], ARRAY[_enqueue_general.run_at],
        ARRAY[place.job_state], _enqueue_general.posting,
        parents_pending => ARRAY[place.pending], parents => place.parents, first_parents => ARRAY[1],
        parent_counts => ARRAY[cardinality(place.parents)], modes => ARRAY[place.mode],
        unique_keys => CASE WHEN _enqueue_general.unique_key IS NOT NULL THEN ARRAY[_enqueue_general.unique_key] END,
        unique_for => ARRAY[_enqueue_general.unique_for],
        concurrency_keys => ARRAY[_enqueue_general.concurrency_key]))[1];
END
$$;

DROP FUNCTION pdoflow.enqueue(text, jsonb, text, integer, timestamptz, integer, uuid, uuid[], text, text, interval);

-- One job. Written in Rust (pdoflow-ext/src/api/enqueue.rs): it checks its
-- input, then inserts the common job (no posting, no parents, no args
-- schema) with one INSERT whose plan the session keeps, and hands the rest
-- to _enqueue_general. A PL/pgSQL version spent as long around the INSERT
-- as in it.
--
-- The one SECURITY DEFINER function without a pinned search_path: setting
-- and restoring it around every call cost single-job enqueue 8% of its rate
-- (docs/benchmarks.md, 0.9.0). It needs none: it resolves no name through
-- the caller's search_path. Every statement it runs names its schema, its
-- operators (OPERATOR(pg_catalog.=)) and its parameters' types
-- (pdoflow-ext/src/api/enqueue.rs, tasks/registered_tasks.rs), and the
-- general path calls pdoflow._enqueue_general, which pins it for itself and
-- the helpers it calls. tests/tests/roles.rs tries a caller's schema that
-- shadows the operators on every path.
CREATE FUNCTION pdoflow.enqueue(
    task            text,
    args            jsonb       DEFAULT '{}',
    queue           text        DEFAULT 'default',
    priority        integer     DEFAULT 0,
    run_at          timestamptz DEFAULT NULL,
    max_attempts    integer     DEFAULT 5,
    posting         uuid        DEFAULT NULL,
    depends_on      uuid[]      DEFAULT NULL,
    dependency_mode text        DEFAULT 'all',
    unique_key      text        DEFAULT NULL,
    unique_for      interval    DEFAULT NULL,
    concurrency_key text        DEFAULT NULL
) RETURNS uuid
LANGUAGE c VOLATILE
SECURITY DEFINER
AS 'MODULE_PATHNAME', 'enqueue_wrapper';

COMMENT ON FUNCTION pdoflow.enqueue(text, jsonb, text, integer, timestamptz, integer, uuid, uuid[], text, text, interval, text) IS
    'Adds one job and returns its id. run_at NULL means now. With depends_on it waits (blocked) until all, or any, of those jobs succeeded. With unique_key, a job of the same task holding that key (blocked, queued, running, or succeeded within unique_for) is returned instead of a new one. concurrency_key names the key of the queue''s per-key limit.';

DROP FUNCTION pdoflow.enqueue_many(text, jsonb[], text, integer, timestamptz, integer, uuid, uuid[], text, text[], interval);

-- Many jobs of one task: one job per element of args, ids returned in args
-- order. They share every other option, parents included, except their
-- unique keys: unique_keys holds one per element of args (NULL elements:
-- no key), and a job whose key is held returns the holder's id; and their
-- concurrency keys, one per element of args too.
CREATE FUNCTION pdoflow.enqueue_many(
    task            text,
    args            jsonb[],
    queue           text        DEFAULT 'default',
    priority        integer     DEFAULT 0,
    run_at          timestamptz DEFAULT NULL,
    max_attempts    integer     DEFAULT 5,
    posting         uuid        DEFAULT NULL,
    depends_on      uuid[]      DEFAULT NULL,
    dependency_mode text        DEFAULT 'all',
    unique_keys     text[]      DEFAULT NULL,
    unique_for      interval    DEFAULT NULL,
    concurrency_keys text[]     DEFAULT NULL
) RETURNS TABLE (id uuid)
LANGUAGE plpgsql VOLATILE ROWS 1000
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    job_ids uuid[];
    place   record;
    n       integer := cardinality(enqueue_many.args);
BEGIN
    PERFORM pdoflow._check_job_batch(enqueue_many.task, enqueue_many.args, enqueue_many.queue,
                                     enqueue_many.priority, enqueue_many.run_at, enqueue_many.max_attempts);
    PERFORM pdoflow._check_unique_keys(enqueue_many.unique_keys, enqueue_many.unique_for, n);
    PERFORM pdoflow._check_concurrency_keys(enqueue_many.concurrency_keys, n);
    PERFORM pdoflow._check_task_grants(ARRAY[enqueue_many.task]);
    IF pdoflow._task_checks_needed() THEN
        PERFORM pdoflow._check_task_args(enqueue_many.task, enqueue_many.args);
    END IF;
    IF enqueue_many.posting IS NULL AND enqueue_many.depends_on IS NULL
       AND enqueue_many.dependency_mode = 'all' THEN
        SELECT enqueue_many.queue AS job_queue, enqueue_many.priority AS job_priority,
               'queued'::text AS job_state, NULL::integer AS pending, NULL::uuid[] AS parents,
               NULL::text AS mode
        INTO place;
    ELSE
        SELECT * INTO place
        FROM pdoflow._new_job_placement(enqueue_many.queue, enqueue_many.priority, enqueue_many.posting,
                                        enqueue_many.depends_on, enqueue_many.dependency_mode);
    END IF;
    job_ids := pdoflow._uuid_v7_array(n);
    -- The options every job shares go as one-element arrays.
    job_ids := pdoflow._insert_jobs(
        job_ids, ARRAY[enqueue_many.task], enqueue_many.args, ARRAY[place.job_queue], ARRAY[place.job_priority],
        ARRAY[enqueue_many.max_attempts], ARRAY[enqueue_many.run_at], ARRAY[place.job_state],
        enqueue_many.posting,
        parents_pending => ARRAY[place.pending], parents => place.parents, first_parents => ARRAY[1],
        parent_counts => ARRAY[cardinality(place.parents)], modes => ARRAY[place.mode],
        unique_keys => enqueue_many.unique_keys, unique_for => ARRAY[enqueue_many.unique_for],
        concurrency_keys => enqueue_many.concurrency_keys);
    RETURN QUERY SELECT unnest(job_ids);
END
$$;

COMMENT ON FUNCTION pdoflow.enqueue_many(text, jsonb[], text, integer, timestamptz, integer, uuid, uuid[], text, text[], interval, text[]) IS
    'Adds one job of the given task per element of args, in one statement; returns the ids in args order.';

-- Many jobs, each with its own options: a JSON array of objects whose keys are
-- enqueue's parameters (task required; a missing or null key takes enqueue's default).
CREATE OR REPLACE FUNCTION pdoflow.enqueue_many(jobs jsonb)
RETURNS TABLE (id uuid)
LANGUAGE plpgsql VOLATILE ROWS 1000
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    job_ids      uuid[];
    job          jsonb;
    keep_param   text;
    one_by_one   boolean;
    checks       boolean;
    tasks        text[];
    job_args     jsonb[];
    queues       text[];
    priorities   integer[];
    attempts     integer[];
    run_ats      timestamptz[];
    keys         text[];
    keep_for     interval[];
    limit_keys   text[];
BEGIN
    -- Jobs with postings or parents need locks and lookups each: one enqueue
    -- call per job, in order. So does a document of one job (the Rust
    -- client's single enqueue): enqueue's own plain insert is the quickest
    -- way in for it. The document is checked whole first, either way.
    one_by_one := pdoflow._check_job_list(enqueue_many.jobs::text);
    one_by_one := one_by_one OR jsonb_array_length(enqueue_many.jobs) = 1;
    checks := pdoflow._task_checks_needed();
    -- Every task's grants before anything else about it (enqueue checks a
    -- job's grants too, so one by one they are checked here only ahead of
    -- the args), then the args against their tasks' schemas, naming each
    -- job by its place in the document.
    IF checks OR NOT one_by_one THEN
        PERFORM pdoflow._check_task_grants(array_agg(DISTINCT e.job ->> 'task'))
        FROM jsonb_array_elements(enqueue_many.jobs) AS e(job);
    END IF;
    IF checks THEN
        PERFORM pdoflow._check_task_args(t.task, t.args, t.params)
        FROM (
            SELECT e.job ->> 'task' AS task,
                   array_agg(coalesce(nullif(e.job -> 'args', 'null'::jsonb), '{}'::jsonb) ORDER BY e.n) AS args,
                   array_agg(format('jobs[%s].args', e.n - 1) ORDER BY e.n) AS params
            FROM jsonb_array_elements(enqueue_many.jobs) WITH ORDINALITY AS e(job, n)
            GROUP BY 1
        ) AS t;
    END IF;
    IF one_by_one THEN
        job_ids := '{}';
        FOR job, keep_param IN
            SELECT e.job, format('jobs[%s].unique_for', e.n - 1)
            FROM jsonb_array_elements(enqueue_many.jobs) WITH ORDINALITY AS e(job, n)
        LOOP
            job_ids := job_ids || pdoflow.enqueue(
                task            => job ->> 'task',
                args            => coalesce(nullif(job -> 'args', 'null'::jsonb), '{}'::jsonb),
                queue           => coalesce(job ->> 'queue', 'default'),
                priority        => coalesce(nullif(job -> 'priority', 'null')::integer, 0),
                run_at          => (job ->> 'run_at')::timestamptz,
                max_attempts    => coalesce(nullif(job -> 'max_attempts', 'null')::integer, 5),
                posting         => (job ->> 'posting')::uuid,
                depends_on      => (SELECT array_agg(p::uuid)
                                    FROM jsonb_array_elements_text(nullif(job -> 'depends_on', 'null'::jsonb)) AS p),
                dependency_mode => coalesce(job ->> 'dependency_mode', 'all'),
                unique_key      => job ->> 'unique_key',
                unique_for      => pdoflow._unique_for(job ->> 'unique_for', keep_param),
                concurrency_key => job ->> 'concurrency_key');
        END LOOP;
        RETURN QUERY SELECT unnest(job_ids);
        RETURN;
    END IF;
    -- One pass over the document: every array gets its elements in the same
    -- order, each job's beside its id (ROWS FROM pairs them).
    SELECT array_agg(spec.id),
           array_agg(spec.job ->> 'task'),
           array_agg(coalesce(nullif(spec.job -> 'args', 'null'::jsonb), '{}'::jsonb)),
           array_agg(coalesce(spec.job ->> 'queue', 'default')),
           array_agg(coalesce(nullif(spec.job -> 'priority', 'null')::integer, 0)),
           array_agg(coalesce(nullif(spec.job -> 'max_attempts', 'null')::integer, 5)),
           array_agg((spec.job ->> 'run_at')::timestamptz),
           array_agg(spec.job ->> 'unique_key'),
           array_agg(pdoflow._unique_for(spec.job ->> 'unique_for', format('jobs[%s].unique_for', spec.n - 1))),
           array_agg(spec.job ->> 'concurrency_key')
    INTO job_ids, tasks, job_args, queues, priorities, attempts, run_ats, keys, keep_for, limit_keys
    FROM ROWS FROM (jsonb_array_elements(enqueue_many.jobs),
                    unnest(pdoflow._uuid_v7_array(jsonb_array_length(enqueue_many.jobs))))
         WITH ORDINALITY AS spec(job, id, n);
    IF job_ids IS NOT NULL THEN
        job_ids := pdoflow._insert_jobs(job_ids, tasks, job_args, queues, priorities, attempts, run_ats,
                                        ARRAY['queued'],
                                        unique_keys => CASE WHEN cardinality(array_remove(keys, NULL)) > 0 THEN keys END,
                                        unique_for => keep_for,
                                        concurrency_keys => CASE WHEN cardinality(array_remove(limit_keys, NULL)) > 0
                                                                 THEN limit_keys END);
    END IF;
    -- The ids in the document's order.
    RETURN QUERY SELECT unnest(job_ids);
END
$$;

COMMENT ON FUNCTION pdoflow.enqueue_many(jsonb) IS
    'Adds the jobs described by a JSON array of objects with enqueue''s parameters as keys; returns the ids in array order.';

-- Moves the active jobs ids to history in the given end states. A NULL error
-- keeps the job's last error; results are stored as given. Returns the jobs
-- moved (ids that were not active are left out). Children are not settled:
-- use _end_jobs.
CREATE OR REPLACE FUNCTION pdoflow._move_to_history(ids uuid[], states text[], errors text[], results jsonb[])
RETURNS TABLE (id uuid, state text)
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
DECLARE
    moved_ids    uuid[];
    moved_states text[];
    keyed_tasks  text[];
    keyed_keys   text[];
    keyed_ids    uuid[];
    keyed_states text[];
BEGIN
    WITH outcome AS (
        SELECT o.id, o.state, o.error, o.result
        FROM unnest(ids, states, errors, results) AS o(id, state, error, result)
    ), ended AS (
        -- By primary key: a join with the outcomes may be planned as a hash
        -- of the whole table when the batch is large.
        DELETE FROM pdoflow.active_jobs AS j
        WHERE j.id = ANY (ids)
        RETURNING j.*
    ), archived AS (
        INSERT INTO pdoflow.finished_jobs (id, posting, run_at, created_at, started_at, finished_at,
                                           priority, attempt, max_attempts, state, queue, task, worker,
                                           dependency_mode, node, last_error, depends_on, args, result,
                                           enqueued_by, unique_key, progress, concurrency_key)
        SELECT e.id, e.posting, e.run_at, e.created_at, e.started_at, now(),
               e.priority, e.attempt, e.max_attempts, o.state, e.queue, e.task, e.worker,
               e.dependency_mode, e.node, coalesce(o.error, e.last_error), e.depends_on, e.args,
               o.result, e.enqueued_by, e.unique_key, e.progress, e.concurrency_key
        FROM ended AS e
        JOIN outcome AS o ON o.id = e.id
        RETURNING finished_jobs.id, finished_jobs.state, finished_jobs.task, finished_jobs.unique_key
    )
    SELECT array_agg(a.id), array_agg(a.state::text),
           array_agg(a.task::text) FILTER (WHERE a.unique_key IS NOT NULL),
           array_agg(a.unique_key) FILTER (WHERE a.unique_key IS NOT NULL),
           array_agg(a.id) FILTER (WHERE a.unique_key IS NOT NULL),
           array_agg(a.state::text) FILTER (WHERE a.unique_key IS NOT NULL)
    INTO moved_ids, moved_states, keyed_tasks, keyed_keys, keyed_ids, keyed_states
    FROM archived AS a;
    IF keyed_ids IS NOT NULL THEN
        PERFORM pdoflow._release_unique_keys(keyed_tasks, keyed_keys, keyed_ids, keyed_states);
    END IF;
    -- Sessions waiting in pdoflow.await_result for these jobs wake once
    -- this transaction commits.
    PERFORM pdoflow._jobs_ended(moved_ids);
    RETURN QUERY SELECT m.id, m.state FROM unnest(moved_ids, moved_states) AS m(id, state);
END
$$;

CREATE OR REPLACE FUNCTION pdoflow.submit_dag(dag jsonb, posting uuid DEFAULT NULL)
RETURNS TABLE (name text, id uuid)
LANGUAGE plpgsql VOLATILE ROWS 100
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    plan          record;
    posting_row   record;
    existing      uuid[];
    existing_ids  uuid[];
    existing_state text[];
    jobs          record;
    -- Per node (plan order): the job it stands for, its own planned id or,
    -- for a unique key that another job holds, that job's.
    final_ids     uuid[];
    edge_children integer[];
    edge_parents  uuid[];
    edge_planned  boolean[];
BEGIN
    SELECT * INTO plan FROM pdoflow._plan_dag(submit_dag.dag::text);
    final_ids := plan.ids;
    edge_children := plan.edge_children;
    edge_parents := plan.edge_parents;
    edge_planned := plan.edge_planned;
    PERFORM pdoflow._check_task_grants(array_agg(DISTINCT n.node::jsonb ->> 'task'))
    FROM unnest(plan.nodes) AS n(node);
    IF pdoflow._task_checks_needed() THEN
        PERFORM pdoflow._check_task_args(t.task, t.args, t.params)
        FROM (
            SELECT n.node::jsonb ->> 'task' AS task,
                   array_agg(coalesce(nullif(n.node::jsonb -> 'args', 'null'::jsonb), '{}'::jsonb) ORDER BY n.ord) AS args,
                   array_agg(format('the args of DAG node "%s"', n.name) ORDER BY n.ord) AS params
            FROM unnest(plan.names, plan.nodes) WITH ORDINALITY AS n(name, node, ord)
            GROUP BY 1
        ) AS t;
    END IF;
    -- Unique keys are taken before the jobs are placed: a node whose key
    -- another job holds is not added, and its children wait for that job
    -- instead, as for any job that exists already.
    IF EXISTS (SELECT FROM unnest(plan.nodes) AS n(node) WHERE n.node::jsonb ? 'unique_key') THEN
        SELECT pdoflow._take_unique_keys(
                   array_agg(n.node::jsonb ->> 'task' ORDER BY n.ord),
                   array_agg(n.node::jsonb ->> 'unique_key' ORDER BY n.ord),
                   array_agg(pdoflow._unique_for(n.node::jsonb ->> 'unique_for',
                                                 format('the unique_for of DAG node "%s"', n.name)) ORDER BY n.ord),
                   plan.ids)
        INTO final_ids
        FROM unnest(plan.names, plan.nodes) WITH ORDINALITY AS n(name, node, ord);
        SELECT array_agg(e.child ORDER BY e.ord),
               array_agg(coalesce(r.final, e.parent) ORDER BY e.ord),
               array_agg(e.planned AND (r.final IS NULL OR r.final = ANY (plan.ids)) ORDER BY e.ord)
        INTO edge_children, edge_parents, edge_planned
        FROM unnest(plan.edge_children, plan.edge_parents, plan.edge_planned)
             WITH ORDINALITY AS e(child, parent, planned, ord)
        LEFT JOIN unnest(plan.ids, final_ids) AS r(id, final) ON e.planned AND r.id = e.parent AND r.final <> r.id
        -- Not the edges into a node that is not added.
        WHERE final_ids[e.child] = plan.ids[e.child];
    END IF;
    IF submit_dag.posting IS NOT NULL THEN
        SELECT * INTO posting_row FROM pdoflow._posting_for_new_jobs(submit_dag.posting);
    ELSE
        SELECT NULL::text AS status, NULL::text AS queue, NULL::integer AS priority INTO posting_row;
    END IF;
    -- Parents that exist already: lock the active ones (see dependencies.sql).
    SELECT array_agg(DISTINCT e.parent) INTO existing
    FROM unnest(edge_parents, edge_planned) AS e(parent, planned)
    WHERE NOT e.planned;
    IF existing IS NOT NULL THEN
        SELECT array_agg(s.id), array_agg(s.state) INTO existing_ids, existing_state
        FROM pdoflow._parent_states(existing) AS s;
    END IF;

    WITH edge AS (
        SELECT e.child,
               count(*) FILTER (WHERE e.planned OR s.state NOT IN ('succeeded', 'failed', 'cancelled')) AS pending,
               count(*) FILTER (WHERE s.state = 'succeeded') AS ok,
               (array_agg(e.parent ORDER BY e.parent) FILTER (WHERE s.state IN ('failed', 'cancelled')))[1] AS lost,
               array_agg(e.parent ORDER BY e.ord) AS parents
        FROM unnest(edge_children, edge_parents, edge_planned)
             WITH ORDINALITY AS e(child, parent, planned, ord)
        LEFT JOIN unnest(existing_ids, existing_state) AS s(id, state) ON s.id = e.parent AND NOT e.planned
        GROUP BY e.child
    ), job AS (
        SELECT n.ord, n.name, n.id, n.node::jsonb AS node, n.mode, d.pending, d.parents,
               -- Where the job's parents start in the flat list of all of them.
               1 + coalesce(sum(cardinality(d.parents)) OVER (ORDER BY n.ord ROWS BETWEEN UNBOUNDED PRECEDING
                                                                               AND 1 PRECEDING), 0) AS first_parent,
               CASE
                   WHEN n.mode IS NULL THEN 'ready'
                   WHEN n.mode = 'all' AND d.lost IS NOT NULL
                       THEN pdoflow._raise_unmet_dependency(n.name, n.mode, d.lost)
                   WHEN n.mode = 'any' AND d.ok = 0 AND d.pending = 0
                       THEN pdoflow._raise_unmet_dependency(n.name, n.mode, d.lost)
                   WHEN (n.mode = 'all' AND d.pending = 0) OR (n.mode = 'any' AND d.ok > 0) THEN 'ready'
                   ELSE 'blocked'
               END AS start
        FROM unnest(plan.names, plan.ids, plan.nodes, plan.modes, final_ids)
             WITH ORDINALITY AS n(name, id, node, mode, final_id, ord)
        LEFT JOIN edge AS d ON d.child = n.ord
        WHERE n.final_id = n.id
    )
    -- The jobs as _insert_jobs takes them, in plan order (parents first;
    -- the arrays are filled from the ordered rows).
    SELECT array_agg(j.id) AS ids,
           array_agg(j.node ->> 'task') AS tasks,
           array_agg(coalesce(nullif(j.node -> 'args', 'null'::jsonb), '{}'::jsonb)) AS args,
           array_agg(coalesce(j.node ->> 'queue', posting_row.queue, 'default')) AS queues,
           array_agg(coalesce(nullif(j.node -> 'priority', 'null')::integer, posting_row.priority, 0)) AS priorities,
           array_agg(coalesce(nullif(j.node -> 'max_attempts', 'null')::integer, 5)) AS attempts,
           array_agg((j.node ->> 'run_at')::timestamptz) AS run_ats,
           array_agg(CASE WHEN j.start = 'blocked' THEN 'blocked'
                          ELSE pdoflow._waiting_state(posting_row.status) END) AS states,
           array_agg(CASE WHEN j.start = 'blocked' THEN j.pending::integer END) AS pending,
           (SELECT array_agg(p.parent ORDER BY f.ord, p.k)
            FROM job AS f, unnest(f.parents) WITH ORDINALITY AS p(parent, k)) AS parents,
           array_agg(j.first_parent::integer) AS first_parents,
           array_agg(cardinality(j.parents)) AS parent_counts,
           array_agg(j.mode) AS modes,
           array_agg(j.name) AS names,
           array_agg(j.node ->> 'unique_key') AS unique_keys,
           array_agg(pdoflow._unique_for(j.node ->> 'unique_for',
                                         format('the unique_for of DAG node "%s"', j.name))) AS unique_for,
           array_agg(j.node ->> 'concurrency_key') AS concurrency_keys
    INTO jobs
    FROM (SELECT * FROM job ORDER BY job.ord) AS j;
    -- (The keys are this DAG's now: _insert_jobs finds them held by these jobs.)
    PERFORM pdoflow._insert_jobs(jobs.ids, jobs.tasks, jobs.args, jobs.queues, jobs.priorities, jobs.attempts,
                                 jobs.run_ats, jobs.states, submit_dag.posting, jobs.pending, jobs.parents,
                                 jobs.first_parents, jobs.parent_counts, jobs.modes, jobs.names,
                                 CASE WHEN cardinality(array_remove(jobs.unique_keys, NULL)) > 0
                                      THEN jobs.unique_keys END,
                                 jobs.unique_for,
                                 concurrency_keys => CASE WHEN cardinality(array_remove(jobs.concurrency_keys, NULL)) > 0
                                                          THEN jobs.concurrency_keys END);

    RETURN QUERY
    SELECT n.name, n.id FROM unnest(plan.names, final_ids) WITH ORDINALITY AS n(name, id, ord) ORDER BY n.ord;
END
$$;

COMMENT ON FUNCTION pdoflow.submit_dag(jsonb, uuid) IS
    'Adds the jobs of a DAG document ({"nodes": [{"name", "task" or "dag", "after", "mode", "unique_key", ...}], "edges"}) in one statement; returns each job''s name (sub-DAG paths joined by /) and id (for a node whose unique key another job holds, that job''s).';

-- Puts a failed or cancelled job back in the queue, due now, with one more
-- attempt allowed if it had used them all. A job with parents is blocked
-- again until they allow it to run (and is refused when they never can); a
-- job of a paused posting waits for it, and a cancelled posting refuses.
-- Returns false when the job is already active; a succeeded job cannot be retried.
CREATE OR REPLACE FUNCTION pdoflow.retry(id uuid)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    job        record;
    new_state  text;
    pending    integer;
    dependency record;
    posting    record;
    holder     uuid;
BEGIN
    PERFORM pdoflow._require_read_committed('pdoflow.retry');
    PERFORM pdoflow._check_job_id(retry.id);
    -- A concurrent cancel or finish can move the job into history between our
    -- looks; a second round sees where it landed.
    FOR round IN 1..2 LOOP
        SELECT f.* INTO job FROM pdoflow.finished_jobs AS f WHERE f.id = retry.id FOR UPDATE;
        IF FOUND THEN
            IF job.state = 'succeeded' THEN
                RAISE EXCEPTION 'job % succeeded and cannot be retried', retry.id
                    USING ERRCODE = 'object_not_in_prerequisite_state',
                          HINT = 'Only failed or cancelled jobs can be retried; enqueue a new job to run it again.';
            END IF;
            new_state := 'queued';
            pending := NULL;
            IF job.posting IS NOT NULL THEN
                SELECT * INTO posting FROM pdoflow._posting_for_new_jobs(job.posting);
                new_state := pdoflow._waiting_state(posting.status);
            END IF;
            IF job.depends_on IS NOT NULL THEN
                SELECT * INTO dependency FROM pdoflow._dependency_state(job.depends_on, job.dependency_mode);
                pending := dependency.pending;
                IF dependency.state = 'blocked' THEN
                    new_state := 'blocked';
                END IF;
            END IF;
            -- A unique job takes its key back (unique_keys.sql), unless
            -- another job took it over meanwhile.
            IF job.unique_key IS NOT NULL THEN
                holder := (pdoflow._take_unique_keys(ARRAY[job.task::text], ARRAY[job.unique_key], NULL,
                                                     ARRAY[job.id]))[1];
                IF holder <> job.id THEN
                    RAISE EXCEPTION 'job % cannot be retried: job % holds its unique key % of task %',
                        retry.id, holder, pg_catalog.quote_literal(job.unique_key), pg_catalog.quote_literal(job.task)
                        USING ERRCODE = 'unique_violation',
                              HINT = 'Cancel that job first, or wait until it ends.';
                END IF;
            END IF;
            DELETE FROM pdoflow.finished_jobs AS f WHERE f.id = retry.id;
            INSERT INTO pdoflow.active_jobs (id, posting, run_at, created_at, priority, attempt, max_attempts,
                                             parents_pending, state, queue, task, dependency_mode, node,
                                             last_error, depends_on, args, enqueued_by, unique_key, progress,
                                             concurrency_key, controlled)
            VALUES (job.id, job.posting, now(), job.created_at, job.priority, job.attempt,
                    greatest(job.max_attempts, job.attempt + 1), pending, new_state, job.queue, job.task,
                    job.dependency_mode, job.node, job.last_error, job.depends_on, job.args,
                    job.enqueued_by, job.unique_key, NULL, job.concurrency_key,
                    EXISTS (SELECT FROM pdoflow.queue_controls AS c
                            WHERE c.queue = job.queue COLLATE "C" AND c.released_at IS NULL));
            -- Children waiting for any one parent counted this one as ended:
            -- it may succeed again.
            UPDATE pdoflow.active_jobs AS c
            SET parents_pending = c.parents_pending + 1
            WHERE c.id IN (
                SELECT b.id FROM pdoflow.active_jobs AS b
                WHERE b.state = 'blocked' AND b.depends_on @> ARRAY[retry.id]
                ORDER BY b.id
                FOR NO KEY UPDATE
            );
            IF new_state = 'queued' THEN
                PERFORM pdoflow._note_queued(job.queue, job.priority, now(), job.id);
                PERFORM pdoflow._announce(job.queue);
            END IF;
            RETURN true;
        END IF;
        IF EXISTS (SELECT FROM pdoflow.active_jobs AS a WHERE a.id = retry.id) THEN
            RETURN false;
        END IF;
    END LOOP;
    RAISE EXCEPTION 'job % does not exist', retry.id USING ERRCODE = 'invalid_parameter_value';
END
$$;

COMMENT ON FUNCTION pdoflow.retry(uuid) IS
    'Re-queues a failed or cancelled job, due now (blocked again while it has parents to wait for); false when it is already active.';

-- Lists the priority levels that hold queued jobs, for a claim from queues
-- (NULL: every queue), so that the floors can be used once the claim
-- commits. Runs once per queue (and for "every queue") after each server
-- start; a no-op for queues already learnt and where the floors cannot be
-- used. The scan walks each level's entries up to its first queued job, once.
CREATE OR REPLACE FUNCTION pdoflow._learn_claim_levels(queues text[])
RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    wanted_queue text;
    attempt bigint;
BEGIN
    IF queues IS NULL THEN
        attempt := pdoflow._start_learning_claim_levels(NULL);
        IF attempt IS NOT NULL THEN
            -- A new statement: its snapshot is taken after the start.
            PERFORM pdoflow._finish_learning_claim_levels(NULL, attempt, ARRAY(
                WITH RECURSIVE levels(priority) AS (
                    (SELECT j.priority FROM pdoflow.active_jobs AS j
                     WHERE j.state = 'queued' AND NOT j.controlled
                     ORDER BY j.priority DESC LIMIT 1)
                    UNION ALL
                    SELECT (SELECT j.priority FROM pdoflow.active_jobs AS j
                            WHERE j.state = 'queued' AND NOT j.controlled AND j.priority < l.priority
                            ORDER BY j.priority DESC LIMIT 1)
                    FROM levels AS l WHERE l.priority IS NOT NULL
                )
                SELECT l.priority FROM levels AS l WHERE l.priority IS NOT NULL));
        END IF;
        RETURN;
    END IF;
    FOREACH wanted_queue IN ARRAY queues LOOP
        CONTINUE WHEN wanted_queue IS NULL;  -- (claim refuses those)
        attempt := pdoflow._start_learning_claim_levels(wanted_queue);
        IF attempt IS NOT NULL THEN
            PERFORM pdoflow._finish_learning_claim_levels(wanted_queue, attempt, ARRAY(
                WITH RECURSIVE levels(priority) AS (
                    (SELECT j.priority FROM pdoflow.active_jobs AS j
                     WHERE j.state = 'queued' AND j.queue = wanted_queue COLLATE "C"
                     ORDER BY j.priority DESC LIMIT 1)
                    UNION ALL
                    SELECT (SELECT j.priority FROM pdoflow.active_jobs AS j
                            WHERE j.state = 'queued' AND j.queue = wanted_queue COLLATE "C"
                              AND j.priority < l.priority
                            ORDER BY j.priority DESC LIMIT 1)
                    FROM levels AS l WHERE l.priority IS NOT NULL
                )
                SELECT l.priority FROM levels AS l WHERE l.priority IS NOT NULL));
        END IF;
    END LOOP;
END
$$;

DROP FUNCTION pdoflow._pick_from_floors(integer, text[], text[]);

-- Picks and locks up to n jobs due by due_by from queues (NULL: every queue without
-- controls, as the every-queue index holds them) and of tasks (NULL: any),
-- in claim order, scanning each level from its floors,
-- and raises the floors it may. NULL when the floors are not known: the
-- caller then scans every level from its start.
CREATE FUNCTION pdoflow._pick_from_floors(n integer, queues text[], tasks text[],
                                          due_by timestamptz DEFAULT now())
RETURNS uuid[]
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
DECLARE
    level     record;
    picked    uuid[] := '{}';
    got_ids   uuid[];
    got_queues text[];
    got_run_ats timestamptz[];
    i         integer;
    first_at  integer;
    upper_run_at timestamptz;
    upper_id  uuid;
    queued    record;
BEGIN
    FOR level IN SELECT * FROM pdoflow._claim_levels(queues) LOOP
        IF NOT level.known THEN
            RETURN NULL;
        END IF;
        EXIT WHEN cardinality(picked) >= n;
        -- This level's due jobs in claim order, each queue from its floor.
        IF queues IS NULL THEN
            SELECT array_agg(j.id ORDER BY j.run_at, j.id), array_agg(j.queue ORDER BY j.run_at, j.id),
                   array_agg(j.run_at ORDER BY j.run_at, j.id)
            INTO got_ids, got_queues, got_run_ats
            FROM (
                SELECT j.id, NULL::text AS queue, j.run_at
                FROM pdoflow.active_jobs AS j
                WHERE j.state = 'queued' AND NOT j.controlled AND j.priority = level.priority
                  AND (j.run_at, j.id) >= (level.floor_run_ats[1], level.floor_ids[1])
                  AND j.run_at <= due_by
                  AND (tasks IS NULL OR j.task = ANY (tasks COLLATE "C"))
                ORDER BY j.run_at, j.id
                LIMIT n - cardinality(picked)
                FOR NO KEY UPDATE SKIP LOCKED
            ) AS j;
        ELSIF cardinality(level.queues) = 1 THEN
            -- One queue (a worker of one queue, a limited queue): its index
            -- alone, without merging.
            SELECT array_agg(j.id ORDER BY j.run_at, j.id), array_agg(j.queue ORDER BY j.run_at, j.id),
                   array_agg(j.run_at ORDER BY j.run_at, j.id)
            INTO got_ids, got_queues, got_run_ats
            FROM (
                SELECT j.id, j.queue, j.run_at
                FROM pdoflow.active_jobs AS j
                WHERE j.state = 'queued' AND j.queue = level.queues[1] COLLATE "C"
                  AND j.priority = level.priority
                  AND (j.run_at, j.id) >= (level.floor_run_ats[1], level.floor_ids[1])
                  AND j.run_at <= due_by
                  AND (tasks IS NULL OR j.task = ANY (tasks COLLATE "C"))
                ORDER BY j.run_at, j.id
                LIMIT n - cardinality(picked)
                FOR NO KEY UPDATE SKIP LOCKED
            ) AS j;
        ELSE
            -- Rows locked here but not picked stay queued; they are
            -- released when the transaction ends.
            SELECT array_agg(c.id ORDER BY c.run_at, c.id), array_agg(c.queue ORDER BY c.run_at, c.id),
                   array_agg(c.run_at ORDER BY c.run_at, c.id)
            INTO got_ids, got_queues, got_run_ats
            FROM (
                SELECT c.id, c.queue, c.run_at
                FROM unnest(level.queues, level.floor_run_ats, level.floor_ids) AS f(queue, run_at, id)
                CROSS JOIN LATERAL (
                    SELECT j.id, j.queue, j.run_at
                    FROM pdoflow.active_jobs AS j
                    WHERE j.state = 'queued' AND j.queue = f.queue COLLATE "C"
                      AND j.priority = level.priority
                      AND (j.run_at, j.id) >= (f.run_at, f.id)
                      AND j.run_at <= due_by
                      AND (tasks IS NULL OR j.task = ANY (tasks COLLATE "C"))
                    ORDER BY j.run_at, j.id
                    LIMIT n - cardinality(picked)
                    FOR NO KEY UPDATE SKIP LOCKED
                ) AS c
                ORDER BY c.run_at, c.id
                LIMIT n - cardinality(picked)
            ) AS c;
        END IF;
        picked := picked || coalesce(got_ids, '{}');
        -- Raise each queue's floor: to the first queued row from the floor
        -- that a new snapshot shows (its own jobs, locked, still count), or
        -- to the first job taken here if that comes first; to the end when
        -- the level has no queued row left.
        FOR i IN 1 .. cardinality(level.queues) LOOP
            first_at := array_position(got_queues, level.queues[i]);
            IF queues IS NULL THEN
                first_at := CASE WHEN cardinality(got_ids) > 0 THEN 1 END;
            END IF;
            upper_run_at := coalesce(got_run_ats[first_at], 'infinity');
            upper_id := coalesce(got_ids[first_at], 'ffffffff-ffff-ffff-ffff-ffffffffffff');
            IF queues IS NULL THEN
                SELECT j.run_at, j.id INTO queued
                FROM pdoflow.active_jobs AS j
                WHERE j.state = 'queued' AND NOT j.controlled AND j.priority = level.priority
                  AND (j.run_at, j.id) >= (level.floor_run_ats[i], level.floor_ids[i])
                ORDER BY j.run_at, j.id
                LIMIT 1;
            ELSE
                SELECT j.run_at, j.id INTO queued
                FROM pdoflow.active_jobs AS j
                WHERE j.state = 'queued' AND j.queue = level.queues[i] COLLATE "C"
                  AND j.priority = level.priority
                  AND (j.run_at, j.id) >= (level.floor_run_ats[i], level.floor_ids[i])
                ORDER BY j.run_at, j.id
                LIMIT 1;
            END IF;
            -- (No upper bound in the scan: a row comparison as the upper
            -- bound does not stop a btree scan among equal due times.)
            IF queued.run_at IS NOT NULL AND (queued.run_at, queued.id) < (upper_run_at, upper_id) THEN
                upper_run_at := queued.run_at;
                upper_id := queued.id;
            END IF;
            PERFORM pdoflow._raise_claim_floor(level.queues[i], level.priority, level.versions[i],
                                               level.posts[i], upper_run_at, upper_id);
        END LOOP;
    END LOOP;
    RETURN picked;
END
$$;

DROP FUNCTION pdoflow._start_attempts(uuid[], text, interval);

-- Starts an attempt of each of the jobs ids, for worker and lease: the one
-- place where a job becomes running (claim and claim_job lock the queued
-- jobs they picked, then call this). The jobs of marked_queues took running
-- slots of their queue and are marked as holding them. at_time is the
-- claim's time: the transaction's, or the clock's for a claim that waited.
-- Returns the claims as claim returns them, in claim order.
CREATE FUNCTION pdoflow._start_attempts(ids uuid[], worker text, lease interval,
                                        marked_queues text[] DEFAULT '{}', at_time timestamptz DEFAULT now())
RETURNS TABLE (
    id               uuid,
    task             text,
    args             jsonb,
    queue            text,
    priority         integer,
    attempt          integer,
    max_attempts     integer,
    lease_expires_at timestamptz,
    run_at           timestamptz,
    created_at       timestamptz,
    last_error       text,
    posting          uuid,
    parent_results   jsonb
)
LANGUAGE plpgsql VOLATILE ROWS 10
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH claimed AS (
        UPDATE pdoflow.active_jobs AS j
        SET state = 'running',
            attempt = j.attempt + 1,
            worker = _start_attempts.worker,
            started_at = at_time,
            heartbeat_at = NULL,
            progress = NULL,
            lease_expires_at = at_time + _start_attempts.lease,
            -- A job of a limited queue holds a running slot (queue_controls.sql).
            controlled = j.queue = ANY (marked_queues)
        WHERE j.id = ANY (ids)
        RETURNING j.id, j.task, j.args, j.queue, j.priority, j.attempt, j.max_attempts,
                  j.lease_expires_at, j.run_at, j.created_at, j.last_error, j.posting, j.depends_on
    )
    SELECT c.id, c.task, c.args, c.queue, c.priority, c.attempt, c.max_attempts,
           c.lease_expires_at, c.run_at, c.created_at, c.last_error, c.posting,
           CASE WHEN c.depends_on IS NOT NULL THEN pdoflow._parent_results(c.depends_on) END
    FROM claimed AS c
    ORDER BY c.priority DESC, c.run_at, c.id;
END
$$;

-- Picks and locks up to n jobs due by due_by from queues (NULL: every queue)
-- and of tasks (NULL: any), in claim order, from the claim floors where they are
-- known, else from each level's start. With queues NULL it sees the jobs of
-- queues without controls only (the every-queue index leaves out the rest).
CREATE FUNCTION pdoflow._pick_jobs(n integer, queues text[], tasks text[], due_by timestamptz DEFAULT now())
RETURNS uuid[]
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
DECLARE
    picked uuid[];
BEGIN
    -- Each level from its floor (claim_floors.sql), when the floors are known.
    picked := pdoflow._pick_from_floors(n, queues, tasks, due_by);
    IF picked IS NOT NULL THEN
        RETURN picked;
    END IF;

    -- Otherwise every level from its start; and list the levels, so that
    -- the next claims can use the floors.
    PERFORM pdoflow._learn_claim_levels(queues);
    IF queues IS NULL THEN
        SELECT array_agg(j.id) INTO picked
        FROM (
            SELECT j.id
            FROM pdoflow.active_jobs AS j
            WHERE j.state = 'queued' AND NOT j.controlled AND j.run_at <= due_by
              AND (tasks IS NULL OR j.task = ANY (tasks COLLATE "C"))
            ORDER BY j.priority DESC, j.run_at, j.id
            LIMIT n
            FOR NO KEY UPDATE SKIP LOCKED
        ) AS j;
    ELSE
        -- Walk each queue's index in claim order and merge: one ordered index
        -- scan per queue instead of sorting every queued job of all of them.
        -- Rows locked here but not picked are released when the transaction ends.
        SELECT array_agg(c.id) INTO picked
        FROM (
            SELECT c.id
            FROM (SELECT DISTINCT q FROM unnest(queues) AS q) AS wanted
            CROSS JOIN LATERAL (
                SELECT j.id, j.priority, j.run_at
                FROM pdoflow.active_jobs AS j
                WHERE j.state = 'queued' AND j.queue = wanted.q COLLATE "C" AND j.run_at <= due_by
                  AND (tasks IS NULL OR j.task = ANY (tasks COLLATE "C"))
                ORDER BY j.priority DESC, j.run_at, j.id
                LIMIT n
                FOR NO KEY UPDATE SKIP LOCKED
            ) AS c
            ORDER BY c.priority DESC, c.run_at, c.id
            LIMIT n
        ) AS c;
    END IF;
    RETURN coalesce(picked, '{}');
END
$$;

-- Picks and locks up to n due jobs of queue_name (of tasks) in claim order,
-- passing over the jobs of keys that have key_limit jobs running. A claim
-- holds each key it looks at until it ends (an advisory lock), so that no
-- other claim counts that key's running jobs meanwhile; a key that another
-- claim holds is passed over as if full.
CREATE FUNCTION pdoflow._pick_with_key_limit(n integer, queue_name text, tasks text[], key_limit integer,
                                             due_by timestamptz DEFAULT now())
RETURNS uuid[]
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    picked     uuid[] := '{}';
    candidate  record;
    full_keys  text[] := '{}';
    room_keys  text[] := '{}';
    room_left  integer[] := '{}';
    i          integer;
    running    bigint;
BEGIN
    -- Read without locks: rows of full keys are passed over, not locked.
    FOR candidate IN
        SELECT j.id, j.concurrency_key AS key
        FROM pdoflow.active_jobs AS j
        WHERE j.state = 'queued' AND j.queue = queue_name COLLATE "C" AND j.run_at <= due_by
          AND (tasks IS NULL OR j.task = ANY (tasks COLLATE "C"))
        ORDER BY j.priority DESC, j.run_at, j.id
    LOOP
        IF candidate.key IS NOT NULL THEN
            CONTINUE WHEN candidate.key = ANY (full_keys);
            i := array_position(room_keys, candidate.key);
            IF i IS NULL THEN
                IF NOT pg_try_advisory_xact_lock('pdoflow.active_jobs'::regclass::oid::integer,
                                                 hashtext(queue_name || E'\x1f' || candidate.key)) THEN
                    full_keys := full_keys || candidate.key;
                    CONTINUE;
                END IF;
                -- A new snapshot, taken with the key held: claims of this
                -- key that committed before are seen running.
                SELECT count(*) INTO running
                FROM pdoflow.active_jobs AS r
                WHERE r.state = 'running' AND r.queue = queue_name COLLATE "C"
                  AND r.concurrency_key = candidate.key COLLATE "C";
                room_keys := room_keys || candidate.key;
                room_left := room_left || (key_limit - running)::integer;
                i := cardinality(room_keys);
            END IF;
            IF room_left[i] <= 0 THEN
                full_keys := full_keys || candidate.key;
                CONTINUE;
            END IF;
        END IF;
        -- Still queued, and nobody else's: lock it.
        PERFORM 1 FROM pdoflow.active_jobs AS j
        WHERE j.id = candidate.id AND j.state = 'queued'
        FOR NO KEY UPDATE SKIP LOCKED;
        IF FOUND THEN
            picked := picked || candidate.id;
            IF candidate.key IS NOT NULL THEN
                room_left[i] := room_left[i] - 1;
            END IF;
            EXIT WHEN cardinality(picked) >= n;
        END IF;
    END LOOP;
    RETURN picked;
END
$$;

-- What one look of a claim takes: up to n jobs (ids, locked, in claim
-- order) within the controls of their queues, the queues whose jobs took
-- running slots (marked_queues), and, when a rate limit held jobs back,
-- when it next allows a claim (next_try; else infinity).
CREATE FUNCTION pdoflow._pick_claim(n integer, queues text[], tasks text[], due_by timestamptz,
                                    OUT ids uuid[], OUT marked_queues text[], OUT next_try timestamptz)
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    -- Every queue's controls, read once (one element per controlled queue).
    c_queues       text[];
    c_paused       boolean[];
    c_max_running  integer[];
    c_rate         integer[];
    c_per          interval[];
    c_key_limit    integer[];
    i              integer;
    queue_name     text;
    dropped        record;
    plain_queues   text[];
    limited_ids    uuid[] := '{}';
    strays         uuid[];
    got            uuid[];
    allowed        integer;
    taken          integer;
    count_attempt  bigint;
BEGIN
    marked_queues := '{}';
    next_try := 'infinity';
    SELECT array_agg(c.queue), array_agg(c.paused), array_agg(c.max_running), array_agg(c.rate),
           array_agg(c.per), array_agg(c.key_limit)
    INTO c_queues, c_paused, c_max_running, c_rate, c_per, c_key_limit
    FROM pdoflow.queue_controls AS c
    WHERE c.released_at IS NULL;
    -- No queue has controls: the plain claim.
    IF c_queues IS NULL THEN
        ids := pdoflow._pick_jobs(n, queues, tasks, due_by);
        RETURN;
    END IF;

    -- The queues without controls, as without any.
    IF queues IS NULL THEN
        ids := pdoflow._pick_jobs(n, NULL, tasks, due_by);
        -- Jobs enqueued unmarked while their queue got controls reach the
        -- every-queue index: mark them, and leave them to their queue's limits.
        IF cardinality(ids) > 0 THEN
            WITH marked AS (
                UPDATE pdoflow.active_jobs AS j SET controlled = true
                WHERE j.id = ANY (ids) AND j.queue = ANY (c_queues COLLATE "C")
                RETURNING j.id
            )
            SELECT array_agg(m.id) INTO strays FROM marked AS m;
            IF strays IS NOT NULL THEN
                ids := ARRAY(SELECT s.id FROM unnest(ids) AS s(id) WHERE s.id <> ALL (strays));
            END IF;
        END IF;
    ELSE
        plain_queues := ARRAY(SELECT q FROM unnest(queues) AS q WHERE q <> ALL (c_queues));
        ids := CASE WHEN cardinality(plain_queues) = 0 THEN '{}'
                    ELSE pdoflow._pick_jobs(n, plain_queues, tasks, due_by) END;
    END IF;

    -- Each limited queue within its limits: running slots and rate tokens
    -- are taken first, and what the pick did not use is given back.
    FOR i IN 1 .. cardinality(c_queues) LOOP
        queue_name := c_queues[i];
        CONTINUE WHEN c_paused[i] OR (queues IS NOT NULL AND queue_name <> ALL (queues));
        allowed := n;
        IF c_max_running[i] IS NOT NULL THEN
            taken := pdoflow._take_running_slots(queue_name, allowed, c_max_running[i]);
            IF taken IS NULL THEN
                -- Not counted since the server started or the limits
                -- changed: count the marked running jobs, waiting (FOR
                -- SHARE) for every transaction that is stopping one.
                count_attempt := pdoflow._start_running_count(queue_name);
                IF count_attempt IS NOT NULL THEN
                    PERFORM pdoflow._finish_running_count(queue_name, count_attempt, (
                        SELECT count(*) FROM (
                            SELECT 1 FROM pdoflow.active_jobs AS r
                            WHERE r.state = 'running' AND r.queue = queue_name COLLATE "C" AND r.controlled
                            FOR SHARE
                        ) AS r));
                    taken := pdoflow._take_running_slots(queue_name, allowed, c_max_running[i]);
                END IF;
            END IF;
            allowed := coalesce(taken, 0);
        END IF;
        IF allowed > 0 AND c_rate[i] IS NOT NULL THEN
            taken := pdoflow._take_rate_tokens(queue_name, allowed, c_rate[i], c_per[i]);
            IF taken < allowed AND c_max_running[i] IS NOT NULL THEN
                PERFORM pdoflow._give_back_running_slots(queue_name, allowed - taken);
            END IF;
            IF taken < allowed THEN
                next_try := least(next_try, pdoflow._next_claim_allowed(queue_name, c_rate[i], c_per[i]));
            END IF;
            allowed := taken;
        END IF;
        CONTINUE WHEN allowed = 0;
        IF c_key_limit[i] IS NULL THEN
            got := pdoflow._pick_jobs(allowed, ARRAY[queue_name], tasks, due_by);
        ELSE
            got := pdoflow._pick_with_key_limit(allowed, queue_name, tasks, c_key_limit[i], due_by);
        END IF;
        IF cardinality(got) < allowed THEN
            PERFORM pdoflow._give_back_running_slots(queue_name, allowed - cardinality(got)),
                    pdoflow._give_back_rate_tokens(queue_name, allowed - cardinality(got));
        END IF;
        IF cardinality(got) > 0 THEN
            limited_ids := limited_ids || got;
            marked_queues := marked_queues || queue_name;
        END IF;
    END LOOP;

    -- n jobs at most, in claim order over all queues; what the limited
    -- queues picked beyond that goes back.
    IF cardinality(limited_ids) > 0 THEN
        IF cardinality(ids) = 0 AND cardinality(limited_ids) <= n THEN
            ids := limited_ids;
            RETURN;
        END IF;
        ids := ids || limited_ids;
        IF cardinality(ids) > n THEN
            ids := ARRAY(SELECT j.id FROM pdoflow.active_jobs AS j WHERE j.id = ANY (ids)
                         ORDER BY j.priority DESC, j.run_at, j.id LIMIT n);
            FOR dropped IN
                SELECT j.queue, count(*)::integer AS jobs FROM pdoflow.active_jobs AS j
                WHERE j.id = ANY (limited_ids) AND j.id <> ALL (ids)
                GROUP BY j.queue
            LOOP
                PERFORM pdoflow._give_back_running_slots(dropped.queue, dropped.jobs),
                        pdoflow._give_back_rate_tokens(dropped.queue, dropped.jobs);
            END LOOP;
        END IF;
    END IF;
END
$$;

DROP FUNCTION pdoflow.claim(integer, text[], text, interval, text[]);

-- Claims up to n due jobs. With wait, a claim that finds none sleeps until
-- jobs may have become available (claim_wait in pdoflow-ext) and looks
-- again, until wait has passed: it returns as soon as it has jobs.
CREATE FUNCTION pdoflow.claim(
    n      integer  DEFAULT 1,
    queues text[]   DEFAULT NULL,
    worker text     DEFAULT NULL,
    lease  interval DEFAULT '5 minutes',
    tasks  text[]   DEFAULT NULL,
    wait   interval DEFAULT '0'
) RETURNS TABLE (
    id               uuid,
    task             text,
    args             jsonb,
    queue            text,
    priority         integer,
    attempt          integer,
    max_attempts     integer,
    lease_expires_at timestamptz,
    run_at           timestamptz,
    created_at       timestamptz,
    last_error       text,
    posting          uuid,
    parent_results   jsonb
)
LANGUAGE plpgsql VOLATILE ROWS 10
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
-- Claims walk the claim indexes in their order and stop after n jobs
-- (_pick_jobs, _pick_with_key_limit). Planned from statistics that an
-- ANALYZE took of a nearly empty table, or of one full of rows a long
-- transaction kept from vacuum, a bitmap or sequential scan looked cheaper,
-- and fetched and sorted every queued job each time. (Set here, once per
-- claim: set on each helper, it cost every call a save and restore.) The
-- few rows of queue_controls have no index to use instead: with sequential
-- scans off, their plans cost more than jit_above_cost, and JIT compiled
-- them on every claim (20-30 ms each).
SET enable_bitmapscan = off
SET enable_seqscan = off
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    picked   record;
    deadline timestamptz;
    -- The claim's time: the transaction's; the clock's once it has waited.
    at_time  timestamptz := now();
    next_due timestamptz;
BEGIN
    PERFORM pdoflow._check_claim(claim.n, claim.queues, claim.worker, claim.lease, claim.tasks);
    PERFORM pdoflow._check_claim_wait(claim.wait);
    -- Even a claim that finds nothing shows the worker is alive.
    PERFORM pdoflow._record_worker(claim.worker);
    IF claim.wait > interval '0' THEN
        deadline := clock_timestamp() + claim.wait;
        -- In the waiting room before the first look: whatever is made
        -- claimable after it wakes the sleep that follows.
        PERFORM pdoflow._claim_wait_enter(claim.queues);
    END IF;
    LOOP
        picked := pdoflow._pick_claim(claim.n, claim.queues, claim.tasks, at_time);
        IF cardinality(picked.ids) > 0 THEN
            RETURN QUERY SELECT * FROM pdoflow._start_attempts(picked.ids, claim.worker, claim.lease,
                                                                picked.marked_queues, at_time);
            EXIT;
        END IF;
        EXIT WHEN deadline IS NULL OR clock_timestamp() >= deadline;
        -- Until woken, the deadline, the next claim a rate limit allows, or
        -- the next delayed job falling due (the sweeper also wakes claims
        -- for those, where it runs).
        next_due := (SELECT j.run_at FROM pdoflow.active_jobs AS j
                     WHERE j.state = 'queued' AND j.run_at > j.created_at AND j.run_at > at_time
                       AND (claim.queues IS NULL OR j.queue = ANY (claim.queues COLLATE "C"))
                     ORDER BY j.run_at LIMIT 1);
        PERFORM pdoflow._claim_wait_sleep(least(deadline, picked.next_try, next_due));
        at_time := clock_timestamp();
    END LOOP;
    IF deadline IS NOT NULL THEN
        PERFORM pdoflow._claim_wait_leave();
    END IF;
END
$$;

COMMENT ON FUNCTION pdoflow.claim(integer, text[], text, interval, text[], interval) IS
    'Takes up to n due jobs (from the given queues and of the given tasks, or all when NULL) in priority, due-time, age order, for lease, within the queues'' controls; with wait, waits up to that long for jobs to become available.';

-- Announces on channel 'pdoflow' (payload: the queue) every queue where a
-- delayed job or a retry in backoff fell due since the last announcement.
-- Returns how many queues were notified.
CREATE OR REPLACE FUNCTION pdoflow._notify_due_jobs()
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
DECLARE
    since    timestamptz;
    notified bigint;
BEGIN
    -- One announcer at a time; skip when another sweep is announcing right
    -- now: it covers this window. An advisory lock, unlike a row lock, needs
    -- no transaction id, so an idle sweep writes nothing.
    IF NOT pg_try_advisory_xact_lock('pdoflow.sweep_state'::regclass::oid::integer, 1) THEN
        RETURN 0;
    END IF;
    SELECT s.due_notified_until INTO since FROM pdoflow.sweep_state AS s;
    IF NOT FOUND THEN
        -- The row was deleted by hand: put it back and start from now.
        INSERT INTO pdoflow.sweep_state (due_notified_until) VALUES (now())
        ON CONFLICT (singleton) DO NOTHING;
        RETURN 0;
    END IF;
    -- Jobs enqueued to run at once (run_at = created_at) were announced by
    -- their enqueue; the partial index active_jobs_delayed_idx holds the rest.
    -- Claims waiting in pdoflow.claim(..., wait) wake too.
    SELECT count(*) INTO notified
    FROM (
        SELECT DISTINCT j.queue
        FROM pdoflow.active_jobs AS j
        WHERE j.state = 'queued' AND j.run_at > j.created_at
          AND j.run_at > since AND j.run_at <= now()
    ) AS due
    CROSS JOIN LATERAL (SELECT pg_notify('pdoflow', due.queue), pdoflow._wake_claimers(due.queue)) AS sent;
    -- Move the window on only past what was announced: a quiet round leaves
    -- the table alone, and a job committed late into an unannounced stretch
    -- is still found next round.
    IF notified > 0 THEN
        UPDATE pdoflow.sweep_state SET due_notified_until = now();
    END IF;
    RETURN notified;
END
$$;

CREATE OR REPLACE FUNCTION pdoflow.sweep(batch_size integer DEFAULT 1000)
RETURNS TABLE (
    expired_requeued bigint,
    expired_failed   bigint,
    queues_notified  bigint,
    finished_deleted bigint,
    workers_gone     bigint,
    schedules_run    bigint
)
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
DECLARE
    expired       record;
    notified      bigint := 0;
    deleted       bigint := 0;
    gone          bigint := 0;
    scheduled     bigint := 0;
    caller_wait   text := current_setting('lock_timeout');
    step          text;
BEGIN
    PERFORM pdoflow._require_read_committed('pdoflow.sweep');
    PERFORM pdoflow._check_sweep(sweep.batch_size);
    SELECT 0::bigint AS requeued, 0::bigint AS failed, 0::bigint AS skipped INTO expired;
    -- Like the background sweeper: never wait long for a lock, and let a
    -- step that could not lock what it needed not stop the others.
    PERFORM set_config('lock_timeout', current_setting('pdoflow.sweep_lock_timeout'), true);
    FOREACH step IN ARRAY ARRAY['leases', 'schedules', 'due jobs', 'queue controls', 'retention', 'workers'] LOOP
        BEGIN
            CASE step
                WHEN 'leases' THEN
                    SELECT * INTO expired FROM pdoflow._expire_leases(sweep.batch_size);
                    IF expired.skipped > 0 THEN
                        RAISE WARNING 'pdoflow.sweep: % expired claims could not be taken back now', expired.skipped
                            USING DETAIL = 'Ending those jobs has to wait for locks that other transactions hold '
                                           '(a producer enqueueing jobs that depend on their children, say).',
                                  HINT = 'They are tried again at the next sweep.';
                    END IF;
                WHEN 'schedules' THEN
                    scheduled := pdoflow._run_due_schedules(sweep.batch_size);
                -- After the leases, so that a retry due at once is announced now.
                WHEN 'due jobs' THEN
                    notified := pdoflow._notify_due_jobs();
                WHEN 'queue controls' THEN
                    PERFORM pdoflow._release_queue_controls();
                WHEN 'retention' THEN
                    deleted := pdoflow._delete_finished(sweep.batch_size);
                    PERFORM pdoflow._forget_released_unique_keys(sweep.batch_size);
                ELSE
                    gone := pdoflow._sweep_workers();
            END CASE;
        EXCEPTION WHEN lock_not_available THEN
            RAISE WARNING 'pdoflow.sweep: skipped the % step: %', step, SQLERRM
                USING HINT = 'Another transaction holds a lock it needs; it is tried again at the next sweep.';
        END;
    END LOOP;
    PERFORM set_config('lock_timeout', caller_wait, true);
    RETURN QUERY SELECT expired.requeued, expired.failed, notified, deleted, gone, scheduled;
END
$$;

COMMENT ON FUNCTION pdoflow.sweep(integer) IS
    'One round of the background sweeper''s work: re-queues or fails up to batch_size expired claims, enqueues the jobs of due cron schedules, announces due delayed jobs, deletes up to batch_size finished jobs past pdoflow.retention (and released unique keys) and marks silent workers gone. Returns the counts.';

-- Privileges (sql/roles.sql): the new functions for their roles, nothing
-- for PUBLIC.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pdoflow FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    pdoflow.enqueue(text, jsonb, text, integer, timestamptz, integer, uuid, uuid[], text, text, interval, text),
    pdoflow.enqueue_many(text, jsonb[], text, integer, timestamptz, integer, uuid, uuid[], text, text[], interval, text[]),
    pdoflow._running_slots(text)
TO pdoflow_producer;
GRANT SELECT ON pdoflow.queues, pdoflow.queue_controls TO pdoflow_producer;
GRANT EXECUTE ON FUNCTION
    pdoflow.claim(integer, text[], text, interval, text[], interval)
TO pdoflow_worker;
GRANT EXECUTE ON FUNCTION
    pdoflow.pause_queue(text),
    pdoflow.resume_queue(text),
    pdoflow.set_queue_limits(text, integer, integer, interval),
    pdoflow.set_key_limit(text, integer)
TO pdoflow_admin;
