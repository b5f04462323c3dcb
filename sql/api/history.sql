-- Ending jobs: every path that ends a job (finish, cancel, lease expiry,
-- a cancelled posting, a failed parent) moves its row from active_jobs to
-- finished_jobs here, then settles the job's blocked children. And the way
-- back for a failed attempt: queued again after the retry backoff. Claims
-- that end without success are kept in job_attempts on the way.

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
