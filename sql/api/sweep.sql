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
-- left is queued again after the retry backoff, the others end as failed
-- (or cancelled, in a cancelled posting; counted as failed).
-- Either way last_error says which attempt lost its lease on which worker, and
-- the claim can no longer finish or heartbeat the job.
CREATE FUNCTION pdoflow._expire_leases(max_jobs integer)
RETURNS TABLE (requeued bigint, failed bigint)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    expired_ids  uuid[];
    end_ids      uuid[];
    end_states   text[];
    end_errors   text[];
    retry_ids    uuid[];
    retry_errors text[];
    retry_states text[];
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

    -- Decide from a fresh snapshot of the locked rows, as finish_many does.
    SELECT array_agg(j.id) FILTER (WHERE d.ends),
           array_agg(d.end_state) FILTER (WHERE d.ends),
           array_agg(d.message) FILTER (WHERE d.ends),
           array_agg(j.id) FILTER (WHERE NOT d.ends),
           array_agg(d.message) FILTER (WHERE NOT d.ends),
           array_agg(d.retry_state) FILTER (WHERE NOT d.ends)
    INTO end_ids, end_states, end_errors, retry_ids, retry_errors, retry_states
    FROM pdoflow.active_jobs AS j
    LEFT JOIN pdoflow.postings AS p ON p.id = j.posting
    CROSS JOIN LATERAL (
        SELECT j.attempt >= j.max_attempts OR p.status IS NOT DISTINCT FROM 'cancelled' AS ends,
               CASE WHEN j.attempt >= j.max_attempts THEN 'failed' ELSE 'cancelled' END AS end_state,
               format('lease of attempt %s expired at %s on %s%s', j.attempt, j.lease_expires_at,
                      CASE WHEN j.worker IS NULL THEN 'an unnamed worker'
                           ELSE format('worker "%s"', j.worker) END,
                      CASE WHEN j.attempt < j.max_attempts AND p.status = 'cancelled'
                           THEN format(' (not retried: posting %s was cancelled)', j.posting)
                           ELSE '' END) AS message,
               CASE WHEN p.status = 'paused' THEN 'paused' ELSE 'queued' END AS retry_state
    ) AS d
    WHERE j.id = ANY (expired_ids);

    IF end_ids IS NOT NULL THEN
        PERFORM pdoflow._end_jobs(end_ids, end_states, end_errors);
    END IF;
    IF retry_ids IS NOT NULL THEN
        PERFORM pdoflow._requeue(retry_ids, retry_errors, retry_states);
    END IF;
    RETURN QUERY SELECT coalesce(cardinality(retry_ids), 0)::bigint, coalesce(cardinality(end_ids), 0)::bigint;
END
$$;

-- Announces on channel 'pdoflow' (payload: the queue) every queue where a
-- delayed job or a retry in backoff fell due since the last announcement.
-- Returns how many queues were notified.
CREATE FUNCTION pdoflow._notify_due_jobs()
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
-- first, and postings older than that with no jobs left. Returns how many
-- jobs it deleted; 0 when retention is 0 (keep forever).
CREATE FUNCTION pdoflow._delete_finished(max_jobs integer)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
DECLARE
    keep           interval := pdoflow._retention();
    deleted        bigint;
    empty_postings uuid[];
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
    -- Postings go when no job of theirs is left. Lock first, count after:
    -- an enqueue into one holds its row locked until it commits, and the
    -- second statement's fresh snapshot sees every job committed before.
    SELECT array_agg(o.id) INTO empty_postings
    FROM (
        SELECT o.id
        FROM pdoflow.postings AS o
        WHERE o.status_changed_at < now() - keep AND o.created_at < now() - keep
          AND NOT EXISTS (SELECT FROM pdoflow.finished_jobs AS f WHERE f.posting = o.id)
          AND NOT EXISTS (SELECT FROM pdoflow.active_jobs AS a WHERE a.posting = o.id)
        LIMIT max_jobs
        FOR UPDATE SKIP LOCKED
    ) AS o;
    IF empty_postings IS NOT NULL THEN
        DELETE FROM pdoflow.postings AS p
        WHERE p.id = ANY (empty_postings)
          AND NOT EXISTS (SELECT FROM pdoflow.finished_jobs AS f WHERE f.posting = p.id)
          AND NOT EXISTS (SELECT FROM pdoflow.active_jobs AS a WHERE a.posting = p.id);
    END IF;
    RETURN deleted;
END
$$;

-- Marks workers unseen for pdoflow.worker_timeout as gone, and forgets
-- workers gone for longer than pdoflow.retention. Returns how many it marked.
CREATE FUNCTION pdoflow._sweep_workers()
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pdoflow, pg_temp
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
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
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
