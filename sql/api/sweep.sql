-- Sweeping: the upkeep that keeps jobs moving when workers crash or sleep.
--
-- The background worker runs each step below in its own short transaction,
-- every pdoflow.sweep_interval, repeating a step that hit its batch size.
-- pdoflow.sweep() runs one batch of every step in the caller's transaction,
-- for servers where the background worker cannot be loaded.
--
-- Every step skips rows that other transactions hold locked, so sweeping
-- never waits on, or deadlocks with, workers finishing their jobs. The
-- functions pin search_path: the background sweeper runs them as a superuser.

-- Takes back up to max_jobs claims whose lease expired: a job with attempts
-- left is queued again after the retry backoff, the others end as failed.
-- Either way last_error says which attempt lost its lease on which worker, and
-- the claim can no longer finish or heartbeat the job.
CREATE FUNCTION pdoflow._expire_leases(max_jobs integer)
RETURNS TABLE (requeued bigint, failed bigint)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    expired_ids uuid[];
BEGIN
    -- A claim locked right now is being finished or heartbeated: leave it to
    -- that transaction; if its lease is still expired afterwards, the next sweep takes it.
    SELECT coalesce(array_agg(j.id), '{}') INTO expired_ids
    FROM (
        SELECT j.id
        FROM pdoflow.active_jobs AS j
        WHERE j.state = 'running' AND j.lease_expires_at <= now()
        ORDER BY j.lease_expires_at
        LIMIT max_jobs
        FOR UPDATE SKIP LOCKED
    ) AS j;

    RETURN QUERY
    WITH expired AS (
        SELECT j.id,
               format('lease of attempt %s expired at %s on %s', j.attempt, j.lease_expires_at,
                      CASE WHEN j.worker IS NULL THEN 'an unnamed worker'
                           ELSE format('worker "%s"', j.worker) END) AS message
        FROM pdoflow.active_jobs AS j
        WHERE j.id = ANY (expired_ids)
    ), ended AS (
        DELETE FROM pdoflow.active_jobs AS j
        USING expired AS e
        WHERE j.id = e.id AND j.attempt >= j.max_attempts
        RETURNING j.*, e.message
    ), archived AS (
        INSERT INTO pdoflow.finished_jobs (id, run_at, created_at, started_at, finished_at, priority,
                                           attempt, max_attempts, state, queue, task, worker,
                                           last_error, args)
        SELECT e.id, e.run_at, e.created_at, e.started_at, now(), e.priority,
               e.attempt, e.max_attempts, 'failed', e.queue, e.task, e.worker, e.message, e.args
        FROM ended AS e
        RETURNING 1
    ), requeued AS (
        UPDATE pdoflow.active_jobs AS j
        SET state = 'queued',
            run_at = now() + pdoflow._retry_delay(j.attempt),
            last_error = e.message,
            worker = NULL,
            heartbeat_at = NULL,
            lease_expires_at = NULL
        FROM expired AS e
        WHERE j.id = e.id AND j.attempt < j.max_attempts
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM requeued), (SELECT count(*) FROM archived);
END
$$;

-- Announces on channel 'pdoflow' (payload: the queue) every queue where a
-- delayed job or a retry in backoff fell due since the last announcement.
-- Returns how many queues were notified.
CREATE FUNCTION pdoflow._notify_due_jobs()
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
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
    SELECT count(pg_notify('pdoflow', due.queue)) INTO notified
    FROM (
        SELECT DISTINCT j.queue
        FROM pdoflow.active_jobs AS j
        WHERE j.state = 'queued' AND j.run_at > j.created_at
          AND j.run_at > since AND j.run_at <= now()
    ) AS due;
    -- Move the window on only past what was announced: a quiet round leaves
    -- the table alone, and a job committed late into an unannounced stretch
    -- is still found next round.
    IF notified > 0 THEN
        UPDATE pdoflow.sweep_state SET due_notified_until = now();
    END IF;
    RETURN notified;
END
$$;

-- Deletes up to max_jobs finished jobs older than pdoflow.retention, oldest
-- first. Returns how many it deleted; 0 when retention is 0 (keep forever).
CREATE FUNCTION pdoflow._delete_finished(max_jobs integer)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    keep    interval := pdoflow._retention();
    deleted bigint;
BEGIN
    IF keep IS NULL THEN
        RETURN 0;
    END IF;
    WITH old AS (
        SELECT f.id
        FROM pdoflow.finished_jobs AS f
        WHERE f.finished_at < now() - keep
        ORDER BY f.finished_at
        LIMIT max_jobs
        FOR UPDATE SKIP LOCKED
    ), gone AS (
        DELETE FROM pdoflow.finished_jobs AS f
        USING old
        WHERE f.id = old.id
        RETURNING 1
    )
    SELECT count(*) INTO deleted FROM gone;
    RETURN deleted;
END
$$;

-- Marks workers unseen for pdoflow.worker_timeout as gone, and forgets
-- workers gone for longer than pdoflow.retention. Returns how many it marked.
CREATE FUNCTION pdoflow._sweep_workers()
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    keep   interval := pdoflow._retention();
    marked bigint;
BEGIN
    WITH stale AS (
        SELECT w.name
        FROM pdoflow.workers AS w
        WHERE w.state = 'active' AND w.last_seen_at < now() - pdoflow._worker_timeout()
        FOR UPDATE SKIP LOCKED
    ), newly_gone AS (
        UPDATE pdoflow.workers AS w
        SET state = 'gone', gone_at = now()
        FROM stale
        WHERE w.name = stale.name
        RETURNING 1
    )
    SELECT count(*) INTO marked FROM newly_gone;
    IF keep IS NOT NULL THEN
        DELETE FROM pdoflow.workers AS w
        WHERE w.name IN (
            SELECT f.name FROM pdoflow.workers AS f
            WHERE f.state = 'gone' AND f.gone_at < now() - keep
            FOR UPDATE SKIP LOCKED
        );
    END IF;
    RETURN marked;
END
$$;

CREATE FUNCTION pdoflow.sweep(batch_size integer DEFAULT 1000)
RETURNS TABLE (
    expired_requeued bigint,
    expired_failed   bigint,
    queues_notified  bigint,
    finished_deleted bigint,
    workers_gone     bigint
)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    expired  record;
    notified bigint;
    deleted  bigint;
    gone     bigint;
BEGIN
    PERFORM pdoflow._check_sweep(sweep.batch_size);
    SELECT * INTO expired FROM pdoflow._expire_leases(sweep.batch_size);
    -- After the leases, so that a retry due at once is announced now.
    notified := pdoflow._notify_due_jobs();
    deleted := pdoflow._delete_finished(sweep.batch_size);
    gone := pdoflow._sweep_workers();
    RETURN QUERY SELECT expired.requeued, expired.failed, notified, deleted, gone;
END
$$;

COMMENT ON FUNCTION pdoflow.sweep(integer) IS
    'One round of the background sweeper''s work: re-queues or fails up to batch_size expired claims, announces due delayed jobs, deletes up to batch_size finished jobs past pdoflow.retention and marks silent workers gone. Returns the counts.';

-- Say so at CREATE EXTENSION when no background sweeper will work here.
DO $$
DECLARE
    reason text := pdoflow._background_sweeper_missing(current_database());
BEGIN
    IF reason IS NOT NULL THEN
        RAISE NOTICE 'no pdoflow background sweeper works in this database: %', reason
            USING HINT = 'Expired claims, due delayed jobs and retention then need SELECT pdoflow.sweep() '
                         'called every few seconds, or see "Background sweeper" in the pdoflow README.';
    END IF;
END
$$;
