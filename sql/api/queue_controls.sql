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
