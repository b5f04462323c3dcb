-- pdoflow 0.12.0 -> 0.13.0 (ALTER EXTENSION pdoflow UPDATE TO '0.13.0').
--
-- Issue 21: every attempt of a job, for the dashboard's timeline. Claims
-- that end without success (a failure, an expired lease, a release, a
-- cancel while running) are kept in pdoflow.job_attempts by the paths that
-- end them, and deleted with their job. And pdoflow.sweep() on a standby
-- says that it cannot run there. Issue 22: pdoflow.shard_of, the shard an id
-- was made in (the setting pdoflow.shard stamps ids).
\echo Use "ALTER EXTENSION pdoflow UPDATE" to load this file. \quit


-- The claims that ended without success, one row per attempt: a failure the
-- worker reported, a lease that expired, a release, or a cancel while the job
-- ran. A job's succeeded attempt is the job's own row (worker, started_at,
-- finished_at); the rows here are what came before it, or its whole story
-- when it never succeeded. Written by the paths that end a claim
-- (pdoflow._log_attempts, sql/api/history.sql); deleted with their job. No
-- foreign key: a job moves between active_jobs and finished_jobs.
CREATE TABLE pdoflow.job_attempts (
    job          uuid        NOT NULL,
    attempt      integer     NOT NULL,
    started_at   timestamptz,
    heartbeat_at timestamptz,
    ended_at     timestamptz NOT NULL,
    worker       text        COLLATE "C",
    outcome      text        COLLATE "C" NOT NULL,
    error        text,
    progress     jsonb,
    CONSTRAINT job_attempts_pkey PRIMARY KEY (job, attempt),
    CONSTRAINT job_attempts_outcome_check
        CHECK (outcome IN ('failed', 'lease_expired', 'released', 'cancelled'))
);

COMMENT ON TABLE pdoflow.job_attempts IS
    'Claims that ended without success (failed, lease_expired, released, cancelled), with their worker, times and error. Written by the pdoflow functions.';

SELECT pg_catalog.pg_extension_config_dump('pdoflow.job_attempts', '');

-- Internal functions that gained an argument: dropped and made again below.
DROP FUNCTION pdoflow._requeue(uuid[], text[], text[]);
DROP FUNCTION pdoflow._end_jobs(uuid[], text[], text[], jsonb[]);
DROP FUNCTION pdoflow._move_to_history(uuid[], text[], text[], jsonb[]);

-- Keeps the claims of the jobs ids that are running in pdoflow.job_attempts,
-- as they end in the given states: each with its error, and with outcome
-- (one of job_attempts' outcomes), or by default the state it ends in
-- ('failed' or 'cancelled'). Claims that end as succeeded are not kept: the
-- job's own row describes them. Locks the running rows, so that the caller's
-- change that follows acts on the claims logged here (a claim finished
-- meanwhile is not logged, and not changed by the caller either).
CREATE FUNCTION pdoflow._log_attempts(ids uuid[], states text[], errors text[], outcome text DEFAULT NULL)
RETURNS void
LANGUAGE sql VOLATILE
BEGIN ATOMIC
    INSERT INTO pdoflow.job_attempts (job, attempt, started_at, heartbeat_at, ended_at, worker, outcome,
                                      error, progress)
    SELECT c.id, c.attempt, c.started_at, c.heartbeat_at, now(), c.worker, c.outcome, c.error, c.progress
    FROM (
        SELECT j.id, j.attempt, j.started_at, j.heartbeat_at, j.worker, coalesce(outcome, o.state) AS outcome,
               o.error, j.progress
        FROM unnest(ids, states, errors) AS o(id, state, error)
        JOIN pdoflow.active_jobs AS j ON j.id = o.id
        WHERE o.state <> 'succeeded' AND j.state = 'running'
        ORDER BY j.id
        FOR UPDATE OF j
    ) AS c;
END;

-- Moves the active jobs ids to history in the given end states. A NULL error
-- keeps the job's last error; results are stored as given. Running claims
-- that end without success are logged with attempt_outcome (_log_attempts).
-- Returns the jobs moved (ids that were not active are left out). Children
-- are not settled: use _end_jobs.
CREATE FUNCTION pdoflow._move_to_history(ids uuid[], states text[], errors text[], results jsonb[],
                                         attempt_outcome text DEFAULT NULL)
RETURNS TABLE (id uuid, state text)
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
DECLARE
    moved_ids    uuid[];
    moved_states text[];
    moved_queues text[];
    keyed_tasks  text[];
    keyed_keys   text[];
    keyed_ids    uuid[];
    keyed_states text[];
BEGIN
    -- Successes, the common case, have no claim to log.
    IF NOT ('succeeded' = ALL (states)) THEN
        PERFORM pdoflow._log_attempts(ids, states, errors, attempt_outcome);
    END IF;
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
        RETURNING finished_jobs.id, finished_jobs.state, finished_jobs.task, finished_jobs.unique_key,
                  finished_jobs.queue
    )
    SELECT array_agg(a.id), array_agg(a.state::text), array_agg(a.queue::text),
           array_agg(a.task::text) FILTER (WHERE a.unique_key IS NOT NULL),
           array_agg(a.unique_key) FILTER (WHERE a.unique_key IS NOT NULL),
           array_agg(a.id) FILTER (WHERE a.unique_key IS NOT NULL),
           array_agg(a.state::text) FILTER (WHERE a.unique_key IS NOT NULL)
    INTO moved_ids, moved_states, moved_queues, keyed_tasks, keyed_keys, keyed_ids, keyed_states
    FROM archived AS a;
    IF keyed_ids IS NOT NULL THEN
        PERFORM pdoflow._release_unique_keys(keyed_tasks, keyed_keys, keyed_ids, keyed_states);
    END IF;
    -- Sessions waiting in pdoflow.await_result for these jobs wake once
    -- this transaction commits.
    PERFORM pdoflow._jobs_ended(moved_ids);
    -- Counted for pdoflow.stats at commit (stats.sql).
    PERFORM pdoflow._count_ended(moved_queues, moved_states);
    RETURN QUERY SELECT m.id, m.state FROM unnest(moved_ids, moved_states) AS m(id, state);
END
$$;

-- Ends the active jobs ids (see _move_to_history) and settles their blocked
-- children, in the caller's transaction. Returns the jobs it ended.
CREATE FUNCTION pdoflow._end_jobs(ids uuid[], states text[], errors text[] DEFAULT NULL, results jsonb[] DEFAULT NULL,
                                  attempt_outcome text DEFAULT NULL)
RETURNS TABLE (id uuid, state text)
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
DECLARE
    ended_ids    uuid[];
    ended_states text[];
BEGIN
    SELECT array_agg(m.id), array_agg(m.state) INTO ended_ids, ended_states
    FROM pdoflow._move_to_history(ids, states, errors, results, attempt_outcome) AS m;
    IF ended_ids IS NOT NULL THEN
        PERFORM pdoflow._settle_children(ended_ids, ended_states);
    END IF;
    RETURN QUERY SELECT e.id, e.state FROM unnest(ended_ids, ended_states) AS e(id, state);
END
$$;

-- Queues the running jobs ids again after a failed attempt: due after the
-- retry backoff, with the attempt's error, in the given state ('queued', or
-- 'paused' in a paused posting). The caller holds their locks. The attempts
-- are logged with outcome ('failed' or 'lease_expired'). Returns the jobs.
CREATE FUNCTION pdoflow._requeue(ids uuid[], errors text[], states text[], outcome text)
RETURNS TABLE (id uuid, queue text, run_at timestamptz, state text)
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
BEGIN
    PERFORM pdoflow._log_attempts(ids, states, errors, outcome);
    RETURN QUERY
    WITH requeued AS (
        UPDATE pdoflow.active_jobs AS j
        SET state = r.state,
            run_at = now() + pdoflow._retry_delay(j.attempt),
            last_error = r.error,
            worker = NULL,
            heartbeat_at = NULL,
            lease_expires_at = NULL
        FROM unnest(ids, errors, states) AS r(id, error, state)
        WHERE j.id = r.id
        RETURNING j.id, j.queue::text AS queue, j.run_at, j.state::text AS state
    ), counted AS (
        -- For pdoflow.stats (stats.sql); joined below, so that it runs.
        SELECT pdoflow._count_jobs('retried', array_agg(q.queue)) FROM requeued AS q
    )
    SELECT q.id, q.queue, q.run_at, q.state FROM requeued AS q CROSS JOIN counted;
END
$$;

-- Finishes many claims in one statement. Problems with one claim (stale, or an
-- unknown job) do not fail the batch: that claim's row says why in rejected.
CREATE OR REPLACE FUNCTION pdoflow.finish_many(
    ids      uuid[],
    attempts integer[],
    errors   text[]  DEFAULT NULL,
    results  jsonb[] DEFAULT NULL
) RETURNS TABLE (id uuid, attempt integer, state text, rejected text)
LANGUAGE plpgsql VOLATILE ROWS 100
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    current_mask boolean[];
    end_ids      uuid[];
    end_states   text[];
    end_errors   text[];
    end_results  jsonb[];
    retry_ids    uuid[];
    retry_errors text[];
    retry_states text[];
    new_states   text[];
    due_queues   text[];
BEGIN
    PERFORM pdoflow._require_read_committed('pdoflow.finish_many');
    PERFORM pdoflow._check_finish_batch(finish_many.ids, finish_many.attempts,
                                        cardinality(finish_many.errors), cardinality(finish_many.results));
    IF finish_many.results IS NOT NULL THEN
        PERFORM pdoflow._check_results(finish_many.results);
    END IF;

    -- 1. Lock the claims that are still current, in id order so that
    -- concurrent batches (and the sweeper) never deadlock on each other.
    -- Every row is found by one primary-key probe (the LATERAL subquery with
    -- FOR UPDATE cannot be flattened into a join), whatever the table
    -- statistics say: a join planned from stale statistics (say, "nothing is
    -- running" right after an ANALYZE of a full queue) was quadratic. The
    -- result: per claim, in input order, whether it is current (and locked).
    SELECT array_agg(j.attempt IS NOT NULL ORDER BY o.ord) INTO current_mask
    FROM (
        SELECT c.id, c.attempt, c.ord
        FROM unnest(finish_many.ids, finish_many.attempts) WITH ORDINALITY AS c(id, attempt, ord)
        ORDER BY c.id
        OFFSET 0
    ) AS o
    LEFT JOIN LATERAL (
        -- By id alone: a condition on state would let the planner pick the
        -- partial index of running jobs and filter all of them per claim
        -- (OFFSET 0 keeps the join's conditions from being pushed in here).
        -- The claim is current if the locked version still matches it.
        SELECT j.attempt, j.state
        FROM pdoflow.active_jobs AS j
        WHERE j.id = o.id
        OFFSET 0
        FOR UPDATE
    ) AS j ON j.attempt = o.attempt AND j.state = 'running';

    -- 2. Decide from a fresh snapshot, taken after the locks: the locked rows
    -- cannot change under us, and a posting paused or cancelled while we
    -- waited for them is seen (postings.sql: whoever re-queues a job reads
    -- the posting's status after locking the job). Where a failure leads is
    -- _after_failed_attempt's to say (states.sql).
    SELECT array_agg(o.id) FILTER (WHERE d.ends),
           array_agg(d.next_state) FILTER (WHERE d.ends),
           array_agg(pdoflow._failed_attempt_error(o.error, d.next_state, j.posting)) FILTER (WHERE d.ends),
           array_agg(o.result) FILTER (WHERE d.ends),
           array_agg(o.id) FILTER (WHERE NOT d.ends),
           array_agg(o.error) FILTER (WHERE NOT d.ends),
           array_agg(d.next_state) FILTER (WHERE NOT d.ends),
           -- Per claim, in input order: its new state, NULL if not current.
           array_agg(CASE WHEN d.ends THEN d.next_state WHEN NOT d.ends THEN 'queued' END ORDER BY o.ord)
    INTO end_ids, end_states, end_errors, end_results, retry_ids, retry_errors, retry_states, new_states
    FROM unnest(finish_many.ids, finish_many.errors, finish_many.results, current_mask)
         WITH ORDINALITY AS o(id, error, result, current, ord)
    LEFT JOIN LATERAL (
        SELECT j.attempt, j.max_attempts, j.posting
        FROM pdoflow.active_jobs AS j
        WHERE j.id = o.id
        OFFSET 0
    ) AS j ON o.current
    LEFT JOIN LATERAL (
        -- OFFSET 0: the status stays a column, looked up once per claim, so
        -- the rules of states.sql that read it twice are inlined.
        SELECT CASE WHEN j.posting IS NOT NULL THEN
                   (SELECT p.status FROM pdoflow.postings AS p WHERE p.id = j.posting)
               END AS status
        OFFSET 0
    ) AS p ON true
    LEFT JOIN LATERAL (
        SELECT n.next_state, n.next_state NOT IN ('queued', 'paused') AS ends
        FROM (SELECT CASE WHEN o.error IS NULL THEN 'succeeded'
                          ELSE pdoflow._after_failed_attempt(j.attempt, j.max_attempts, p.status)
                     END AS next_state) AS n
        WHERE j.attempt IS NOT NULL
    ) AS d ON true;

    -- The rows are locked: every one of them ends or is queued again.
    IF end_ids IS NOT NULL THEN
        PERFORM pdoflow._end_jobs(end_ids, end_states, end_errors, end_results, 'failed');
    END IF;
    IF retry_ids IS NOT NULL THEN
        SELECT array_agg(DISTINCT q.queue) FILTER (WHERE q.state = 'queued' AND q.run_at <= now())
        INTO due_queues
        FROM pdoflow._requeue(retry_ids, retry_errors, retry_states, 'failed') AS q;
    END IF;

    -- Retries due at once (pdoflow.retry_backoff_base = 0) wake idle workers.
    PERFORM pdoflow._announce(q) FROM unnest(due_queues) AS q;

    -- Claims that were not current say why. CASE evaluates the lookup for
    -- those rows only (a lateral join would run it for every claim).
    RETURN QUERY
    SELECT r.id, r.attempt, coalesce(r.new_state, r.problem[1]),
           CASE WHEN r.new_state IS NULL THEN
               -- No problem found means the claim became current after the
               -- lock (someone finished it before it existed); it was still
               -- not finished.
               coalesce(r.problem[2], format('claim (job %s, attempt %s) is not current', r.id, r.attempt))
           END
    FROM (
        SELECT claim.id, claim.attempt, claim.ord, claim.new_state,
               CASE WHEN claim.new_state IS NULL THEN
                   (SELECT ARRAY[p.state, p.message] FROM pdoflow._claim_problem(claim.id, claim.attempt) AS p LIMIT 1)
               END AS problem
        FROM unnest(finish_many.ids, finish_many.attempts, new_states)
             WITH ORDINALITY AS claim(id, attempt, new_state, ord)
        OFFSET 0  -- one lookup per row, not one per use of problem
    ) AS r
    ORDER BY r.ord;
END
$$;

COMMENT ON FUNCTION pdoflow.finish_many(uuid[], integer[], text[], jsonb[]) IS
    'Finishes many claims at once; an error of NULL means success. One row per claim, in input order: the new state, or why it was rejected.';

-- Takes back up to max_jobs claims whose lease expired: a job with attempts
-- left is queued again after the retry backoff, the others end as failed
-- (or cancelled, in a cancelled posting; counted as failed).
-- Either way last_error says which attempt lost its lease on which worker, and
-- the claim can no longer finish or heartbeat the job. A job whose ending
-- has to wait for a lock longer than lock_timeout (or deadlocks) stays as it
-- is, counted in skipped, for the next sweep.
CREATE OR REPLACE FUNCTION pdoflow._expire_leases(max_jobs integer)
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

-- Deletes up to max_jobs finished jobs older than pdoflow.retention, oldest
-- first, and postings older than that with no jobs left. Returns how many
-- jobs it deleted; 0 when retention is 0 (keep forever).
CREATE OR REPLACE FUNCTION pdoflow._delete_finished(max_jobs integer)
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

-- Puts the job of the current claim (id, attempt) back in its queue, due as
-- before (so it is claimed ahead of younger jobs), without counting the
-- attempt against max_attempts: the released attempt stays used up as a
-- claim (attempt numbers name claims, and a released claim must never
-- finish or heartbeat the job again), and max_attempts grows by one, so the
-- job keeps as many tries as it had. In a cancelled posting the job ends as
-- cancelled instead.
-- Returns false, changing nothing, when the claim is not current (finished,
-- taken back, cancelled): releasing is what a stopping worker does last, so it
-- reports rather than raises.
CREATE OR REPLACE FUNCTION pdoflow.release(id uuid, attempt integer)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    job_posting   uuid;
    job_queue     text;
    posting_state text;
BEGIN
    PERFORM pdoflow._require_read_committed('pdoflow.release');
    PERFORM pdoflow._check_job_claim(release.id, release.attempt, NULL);
    SELECT j.posting, j.queue INTO job_posting, job_queue
    FROM pdoflow.active_jobs AS j
    WHERE j.id = release.id AND j.attempt = release.attempt AND j.state = 'running'
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    -- Read after the job's lock (see set_posting_status).
    SELECT p.status INTO posting_state FROM pdoflow.postings AS p WHERE p.id = job_posting;
    IF posting_state = 'cancelled' THEN
        PERFORM pdoflow._end_jobs(ARRAY[release.id], ARRAY['cancelled'],
                                  ARRAY[format('released after posting %s was cancelled', job_posting)],
                                  NULL, 'released');
        RETURN true;
    END IF;
    PERFORM pdoflow._log_attempts(ARRAY[release.id], ARRAY[pdoflow._waiting_state(posting_state)],
                                  ARRAY[NULL::text], 'released');
    UPDATE pdoflow.active_jobs AS j
    SET state = pdoflow._waiting_state(posting_state),
        max_attempts = least(j.max_attempts::bigint + 1, 2147483647)::integer,
        worker = NULL,
        heartbeat_at = NULL,
        lease_expires_at = NULL
    WHERE j.id = release.id;
    IF pdoflow._waiting_state(posting_state) = 'queued' THEN
        PERFORM pdoflow._announce(job_queue);
    END IF;
    RETURN true;
END
$$;

COMMENT ON FUNCTION pdoflow.release(uuid, integer) IS
    'Hands the job of the current claim (id, attempt) back to its queue without counting the attempt against max_attempts; false if the claim is not current.';

-- Removes a posting that has no unfinished jobs, with its finished jobs.
-- Returns false when there is no such posting.
CREATE OR REPLACE FUNCTION pdoflow.delete_posting(posting uuid)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    unfinished bigint;
BEGIN
    PERFORM pdoflow._require_read_committed('pdoflow.delete_posting');
    PERFORM pdoflow._check_posting_ref(delete_posting.posting);
    -- The row lock waits for enqueues into the posting to commit.
    PERFORM FROM pdoflow.postings AS p WHERE p.id = delete_posting.posting FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    SELECT count(*) INTO unfinished FROM pdoflow.active_jobs AS j WHERE j.posting = delete_posting.posting;
    IF unfinished > 0 THEN
        RAISE EXCEPTION 'posting % still has % %', delete_posting.posting, unfinished,
            CASE WHEN unfinished = 1 THEN 'job that has not ended' ELSE 'jobs that have not ended' END
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Wait for them to end, or cancel the posting first.';
    END IF;
    DELETE FROM pdoflow.job_attempts AS a
    USING pdoflow.finished_jobs AS f
    WHERE f.posting = delete_posting.posting AND a.job = f.id;
    DELETE FROM pdoflow.finished_jobs AS f WHERE f.posting = delete_posting.posting;
    DELETE FROM pdoflow.postings AS p WHERE p.id = delete_posting.posting;
    RETURN true;
END
$$;

COMMENT ON FUNCTION pdoflow.delete_posting(uuid) IS
    'Deletes a posting whose jobs have all ended, with those jobs; false when it does not exist.';

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

-- The shard an id of pdoflow's was made in (0 to 255); meaningless for ids
-- made where pdoflow.shard is not set. IMMUTABLE: a proxy routes by it.
CREATE FUNCTION pdoflow.shard_of(id uuid)
RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
BEGIN ATOMIC
    SELECT pg_catalog.get_byte(pg_catalog.uuid_send(id), 15);
END;

COMMENT ON FUNCTION pdoflow.shard_of(uuid) IS
    'The shard (pdoflow.shard) a job or posting id was made in: the id''s last byte.';

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pdoflow FROM PUBLIC;
GRANT SELECT ON pdoflow.job_attempts TO pdoflow_producer;
GRANT EXECUTE ON FUNCTION pdoflow.shard_of(uuid) TO pdoflow_producer;
