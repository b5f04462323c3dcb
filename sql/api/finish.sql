-- Finishing claims: success stores the result; failure re-queues the job with
-- exponential backoff while attempts remain, else it ends as failed.
--
-- Only the current claim of a running job may finish it. A claim stops being
-- current when its lease expired and the job was handed out again, or the job
-- was cancelled; the late finish then changes nothing and is rejected.

-- Why the claim (job_id, claimed_attempt) cannot finish or heartbeat its job,
-- with the job's current state (NULL: no such job); no row when it is the
-- job's current claim. STABLE, so it reads with its caller's snapshot:
-- callers hold a lock on active_jobs already (finish_many's locking step,
-- heartbeat's UPDATE), so no compaction can have come in between.
CREATE FUNCTION pdoflow._claim_problem(job_id uuid, claimed_attempt integer)
RETURNS TABLE (state text, code text, message text, hint text)
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    claim_name text := format('claim (job %s, attempt %s)', job_id, claimed_attempt);
    job        record;
BEGIN
    SELECT a.state, a.attempt INTO job FROM pdoflow.active_jobs AS a WHERE a.id = job_id;
    IF FOUND THEN
        IF job.state = 'running' AND job.attempt = claimed_attempt THEN
            RETURN;
        END IF;
        -- A number no claim of the job got: a caller's mistake, not a
        -- claim that ended.
        IF claimed_attempt > job.attempt AND job.attempt > 0 THEN
            RETURN QUERY SELECT
                job.state::text,
                '55000'::text,
                format('%s is not current: attempt %s was never handed out (the job is at attempt %s)',
                       claim_name, claimed_attempt, job.attempt),
                'Pass the attempt that claim returned with the job.'::text;
            RETURN;
        END IF;
        RETURN QUERY SELECT
            job.state::text,
            '55000'::text,
            CASE
                WHEN job.state = 'running' THEN
                    format('%s is not current: the job is running attempt %s', claim_name, job.attempt)
                WHEN job.attempt = 0 THEN
                    format('%s is not current: the job has not been claimed yet', claim_name)
                ELSE
                    format('%s is not current: the job was queued again after attempt %s', claim_name, job.attempt)
            END,
            CASE
                WHEN job.state = 'running' THEN
                    'The claim ended (released, or its lease expired) and the job was claimed again; only the current claim can finish it.'
                WHEN job.attempt > 0 THEN
                    'The claim ended (finished with an error, lease expired or released) and the job waits for a new claim.'
            END;
        RETURN;
    END IF;

    SELECT f.state INTO job FROM pdoflow.finished_jobs AS f WHERE f.id = job_id;
    IF FOUND THEN
        RETURN QUERY SELECT
            job.state::text,
            '55000'::text,
            format('%s is not current: the job %s', claim_name,
                   CASE job.state WHEN 'cancelled' THEN 'was cancelled' ELSE 'already ' || job.state END),
            NULL::text;
        RETURN;
    END IF;

    -- (Or, under REPEATABLE READ, active_jobs was compacted since the
    -- snapshot: a serialization failure then.)
    PERFORM pdoflow._require_active_jobs_in_snapshot();
    RETURN QUERY SELECT NULL::text, '22023'::text, format('job %s does not exist', job_id), NULL::text;
END
$$;

-- Raises the reason the claim (job_id, claimed_attempt) is not current, with
-- its SQLSTATE and hint; message overrides the text when the claim's state
-- moved on in between.
CREATE FUNCTION pdoflow._raise_claim_problem(job_id uuid, claimed_attempt integer, message text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    problem record;
BEGIN
    SELECT * INTO problem FROM pdoflow._claim_problem(job_id, claimed_attempt);
    IF problem.code IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '55000',
            MESSAGE = coalesce(message, format('claim (job %s, attempt %s) is not current', job_id, claimed_attempt));
    ELSIF problem.hint IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = problem.code, MESSAGE = coalesce(message, problem.message);
    ELSE
        RAISE EXCEPTION USING ERRCODE = problem.code, MESSAGE = coalesce(message, problem.message),
            HINT = problem.hint;
    END IF;
END
$$;

-- Finishes many claims in one statement. Problems with one claim (stale, or an
-- unknown job) do not fail the batch: that claim's row says why in rejected.
CREATE FUNCTION pdoflow.finish_many(
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

CREATE FUNCTION pdoflow.finish(
    id      uuid,
    attempt integer,
    error   text  DEFAULT NULL,
    result  jsonb DEFAULT NULL
) RETURNS text
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    outcome record;
BEGIN
    PERFORM pdoflow._require_read_committed('pdoflow.finish');
    PERFORM pdoflow._check_job_claim(finish.id, finish.attempt, NULL);
    SELECT * INTO outcome
    FROM pdoflow.finish_many(ARRAY[finish.id], ARRAY[finish.attempt],
                             ARRAY[finish.error], ARRAY[finish.result]);
    IF outcome.rejected IS NULL THEN
        RETURN outcome.state;
    END IF;
    PERFORM pdoflow._raise_claim_problem(finish.id, finish.attempt, outcome.rejected);
    RETURN NULL;  -- not reached: the call above raises
END
$$;

COMMENT ON FUNCTION pdoflow.finish(uuid, integer, text, jsonb) IS
    'Ends the claim (id, attempt): success when error is NULL, else a failure that is retried while attempts remain. Returns the job''s new state.';
