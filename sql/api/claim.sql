-- Claiming: atomically take up to n due jobs for one worker.
--
-- FOR NO KEY UPDATE SKIP LOCKED lets concurrent claimers pass over each
-- other's rows instead of waiting, so no two claims ever get the same job.
-- (NO KEY: a claim changes no key, and a plain FOR UPDATE would also skip
-- parents that a child being enqueued holds FOR KEY SHARE.) Each claim
-- increments attempt; (id, attempt) names the claim in finish and heartbeat.
-- A job with parents gets their results in parent_results (see
-- dependencies.sql); blocked jobs and paused postings' jobs are never claimed.
-- Scans start at each priority level's claim floor (claim_floors.sql), past
-- the index entries of jobs claimed since vacuum last ran.

-- Starts an attempt of each of the jobs ids, for worker and lease: the one
-- place where a job becomes running (claim and claim_job lock the queued
-- jobs they picked, then call this). Returns the claims as claim returns
-- them, in claim order.
CREATE FUNCTION pdoflow._start_attempts(ids uuid[], worker text, lease interval)
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
            started_at = now(),
            heartbeat_at = NULL,
            progress = NULL,
            lease_expires_at = now() + _start_attempts.lease
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

CREATE FUNCTION pdoflow.claim(
    n      integer  DEFAULT 1,
    queues text[]   DEFAULT NULL,
    worker text     DEFAULT NULL,
    lease  interval DEFAULT '5 minutes',
    tasks  text[]   DEFAULT NULL
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
-- Claims walk the claim index in its order and stop after n jobs. Planned
-- from statistics that an ANALYZE took of a nearly empty table, or of one
-- full of rows a long transaction kept from vacuum, a bitmap or sequential
-- scan looked cheaper, and fetched and sorted every queued job each time.
SET enable_bitmapscan = off
SET enable_seqscan = off
AS $$
#variable_conflict use_column
DECLARE
    picked uuid[];
BEGIN
    PERFORM pdoflow._check_claim(claim.n, claim.queues, claim.worker, claim.lease, claim.tasks);
    -- Even a claim that finds nothing shows the worker is alive.
    PERFORM pdoflow._record_worker(claim.worker);

    -- Each level from its floor (claim_floors.sql), when the floors are known.
    picked := pdoflow._pick_from_floors(claim.n, claim.queues, claim.tasks);
    IF picked IS NOT NULL THEN
        IF cardinality(picked) = 0 THEN
            RETURN;
        END IF;
        RETURN QUERY SELECT * FROM pdoflow._start_attempts(picked, claim.worker, claim.lease);
        RETURN;
    END IF;

    -- Otherwise every level from its start; and list the levels, so that
    -- the next claims can use the floors.
    PERFORM pdoflow._learn_claim_levels(claim.queues);
    IF claim.queues IS NULL THEN
        SELECT array_agg(j.id) INTO picked
        FROM (
            SELECT j.id
            FROM pdoflow.active_jobs AS j
            WHERE j.state = 'queued' AND j.run_at <= now()
              AND (claim.tasks IS NULL OR j.task = ANY (claim.tasks COLLATE "C"))
            ORDER BY j.priority DESC, j.run_at, j.id
            LIMIT claim.n
            FOR NO KEY UPDATE SKIP LOCKED
        ) AS j;
    ELSE
        -- Walk each queue's index in claim order and merge: one ordered index
        -- scan per queue instead of sorting every queued job of all of them.
        -- Rows locked here but not picked are released when the transaction ends.
        SELECT array_agg(c.id) INTO picked
        FROM (
            SELECT c.id
            FROM (SELECT DISTINCT q FROM unnest(claim.queues) AS q) AS wanted
            CROSS JOIN LATERAL (
                SELECT j.id, j.priority, j.run_at
                FROM pdoflow.active_jobs AS j
                WHERE j.state = 'queued' AND j.queue = wanted.q COLLATE "C" AND j.run_at <= now()
                  AND (claim.tasks IS NULL OR j.task = ANY (claim.tasks COLLATE "C"))
                ORDER BY j.priority DESC, j.run_at, j.id
                LIMIT claim.n
                FOR NO KEY UPDATE SKIP LOCKED
            ) AS c
            ORDER BY c.priority DESC, c.run_at, c.id
            LIMIT claim.n
        ) AS c;
    END IF;

    IF picked IS NULL THEN
        RETURN;
    END IF;

    RETURN QUERY SELECT * FROM pdoflow._start_attempts(picked, claim.worker, claim.lease);
END
$$;

COMMENT ON FUNCTION pdoflow.claim(integer, text[], text, interval, text[]) IS
    'Takes up to n due jobs (from the given queues and of the given tasks, or all when NULL) in priority, due-time, age order, for lease.';

-- Claims one particular queued job, due or not: for running a job by hand
-- (pdoflow-run execute-job). No row when the job is not queued (blocked
-- jobs and the jobs of a paused posting are not).
CREATE FUNCTION pdoflow.claim_job(
    job_id uuid,
    worker text     DEFAULT NULL,
    lease  interval DEFAULT '5 minutes'
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
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    picked uuid[];
BEGIN
    PERFORM pdoflow._check_job_id(claim_job.job_id);
    PERFORM pdoflow._check_claim(1, NULL, claim_job.worker, claim_job.lease, NULL);
    PERFORM pdoflow._record_worker(claim_job.worker);
    -- Locking re-reads the row as it is now: a job claimed, ended or paused
    -- meanwhile is not picked.
    SELECT array_agg(j.id) INTO picked
    FROM (
        SELECT j.id FROM pdoflow.active_jobs AS j
        WHERE j.id = claim_job.job_id AND j.state = 'queued'
        FOR NO KEY UPDATE
    ) AS j;
    IF picked IS NULL THEN
        PERFORM pdoflow._require_active_jobs_in_snapshot();
        RETURN;
    END IF;
    RETURN QUERY SELECT * FROM pdoflow._start_attempts(picked, claim_job.worker, claim_job.lease);
END
$$;

COMMENT ON FUNCTION pdoflow.claim_job(uuid, text, interval) IS
    'Claims the queued job job_id (even before its run_at) for lease; no row when it is not queued.';
