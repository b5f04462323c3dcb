-- Sweeping: the upkeep that keeps jobs moving when workers crash or sleep.
--
-- The background worker runs each step below in its own short transaction,
-- every pdoflow.sweep_interval, repeating a step that hit its batch size.
-- pdoflow.sweep() runs one batch of every step in the caller's transaction,
-- for servers where the background worker cannot be loaded.
--
-- Every step skips rows that other transactions hold locked, so sweeping
-- never waits on, or deadlocks with, workers finishing their jobs. Ending a
-- job still waits for its blocked children's locks (a producer enqueueing a
-- grandchild holds one until it commits): the sweeper works under a
-- lock_timeout (pdoflow.sweep_lock_timeout), and a job it cannot end within
-- it is left for the next round while the others go ahead. The functions
-- pin search_path: the background sweeper runs them as a superuser.

-- Takes back up to max_jobs claims whose lease expired: a job with attempts
-- left is queued again after the retry backoff, the others end as failed
-- (or cancelled, in a cancelled posting; counted as failed).
-- Either way last_error says which attempt lost its lease on which worker, and
-- the claim can no longer finish or heartbeat the job. A job whose ending
-- has to wait for a lock longer than lock_timeout (or deadlocks) stays as it
-- is, counted in skipped, for the next sweep.
CREATE FUNCTION pdoflow._expire_leases(max_jobs integer)
RETURNS TABLE (requeued bigint, failed bigint, skipped bigint)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    expired_ids  uuid[];
    end_ids      uuid[];
    end_states   text[];
    end_errors   text[];
    end_queues   text[];
    retry_ids    uuid[];
    retry_queues text[];
    retry_errors text[];
    retry_states text[];
    ended        bigint := 0;
    left_over    bigint := 0;
    caller_wait  text;
    give_up_at   timestamptz;
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

    -- Decide from a fresh snapshot of the locked rows, as finish_many does,
    -- by the same rule (_after_failed_attempt, states.sql).
    SELECT array_agg(j.id) FILTER (WHERE d.ends),
           array_agg(d.next_state) FILTER (WHERE d.ends),
           array_agg(pdoflow._failed_attempt_error(d.message, d.next_state, j.posting)) FILTER (WHERE d.ends),
           array_agg(j.queue::text) FILTER (WHERE d.ends),
           array_agg(j.id) FILTER (WHERE NOT d.ends),
           array_agg(d.message) FILTER (WHERE NOT d.ends),
           array_agg(d.next_state) FILTER (WHERE NOT d.ends),
           array_agg(j.queue::text) FILTER (WHERE NOT d.ends)
    INTO end_ids, end_states, end_errors, end_queues, retry_ids, retry_errors, retry_states, retry_queues
    FROM pdoflow.active_jobs AS j
    LEFT JOIN pdoflow.postings AS p ON p.id = j.posting
    CROSS JOIN LATERAL (
        SELECT n.next_state, n.next_state NOT IN ('queued', 'paused') AS ends,
               format('lease of attempt %s expired at %s on %s', j.attempt, j.lease_expires_at,
                      CASE WHEN j.worker IS NULL THEN 'an unnamed worker'
                           ELSE format('worker "%s"', j.worker) END) AS message
        FROM (SELECT pdoflow._after_failed_attempt(j.attempt, j.max_attempts, p.status) AS next_state) AS n
    ) AS d
    WHERE j.id = ANY (expired_ids);

    IF retry_ids IS NOT NULL THEN
        PERFORM pdoflow._requeue(retry_ids, retry_errors, retry_states, 'lease_expired');
        PERFORM pdoflow._count_jobs('leases_expired', retry_queues);
    END IF;
    IF end_ids IS NOT NULL THEN
        -- Ending settles the jobs' blocked children, which may have to wait
        -- for their locks. When the batch cannot, each job is tried alone,
        -- so that one job held up does not hold up the rest.
        BEGIN
            PERFORM pdoflow._end_jobs(end_ids, end_states, end_errors, NULL, 'lease_expired');
            PERFORM pdoflow._count_jobs('leases_expired', end_queues);
            ended := cardinality(end_ids);
        EXCEPTION WHEN lock_not_available OR deadlock_detected THEN
            -- Each job waits only briefly, and all of them together about as
            -- long again as the batch did: many jobs held up by one locked
            -- child must not keep the sweeper here for long.
            caller_wait := current_setting('lock_timeout');
            give_up_at := clock_timestamp() + greatest(caller_wait::interval, interval '1 second');
            PERFORM set_config('lock_timeout', '10ms', true);
            FOR i IN 1..cardinality(end_ids) LOOP
                IF clock_timestamp() > give_up_at THEN
                    left_over := left_over + cardinality(end_ids) - i + 1;
                    EXIT;
                END IF;
                BEGIN
                    PERFORM pdoflow._end_jobs(ARRAY[end_ids[i]], ARRAY[end_states[i]], ARRAY[end_errors[i]],
                                              NULL, 'lease_expired');
                    PERFORM pdoflow._count_jobs('leases_expired', ARRAY[end_queues[i]]);
                    ended := ended + 1;
                EXCEPTION WHEN lock_not_available OR deadlock_detected THEN
                    left_over := left_over + 1;
                END;
            END LOOP;
            PERFORM set_config('lock_timeout', caller_wait, true);
        END;
    END IF;
    RETURN QUERY SELECT coalesce(cardinality(retry_ids), 0)::bigint, ended, left_over;
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
        RETURNING f.id, f.task, f.unique_key
    ), attempts_gone AS (
        DELETE FROM pdoflow.job_attempts AS a
        USING gone AS g
        WHERE a.job = g.id
    ), forgotten AS (
        -- A job that is deleted lets go of its unique key, even within its
        -- unique_for: an enqueue must not get back the id of a job that is
        -- gone.
        DELETE FROM pdoflow.unique_keys AS u
        USING gone AS g
        WHERE g.unique_key IS NOT NULL
          AND u.task = g.task AND u.unique_key = g.unique_key AND u.job = g.id
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
    -- A standby changes nothing; its background sweeper starts at promotion.
    IF pg_catalog.pg_is_in_recovery() THEN
        RAISE EXCEPTION 'pdoflow.sweep() cannot run on a standby: this server is in recovery'
            USING ERRCODE = 'read_only_sql_transaction',
                  HINT = 'Sweep on the primary. A standby''s background sweeper starts by itself when it is promoted.';
    END IF;
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
