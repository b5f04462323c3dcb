-- A self-check for DBAs and tests: rows that break pdoflow's invariants,
-- within one active job (pdoflow.active_jobs has no CHECK constraints: see
-- schema.sql) and across rows and tables. No row back means everything holds.

-- VOLATILE: its query takes its snapshot after its locks, so that a
-- compaction of active_jobs it waited for does not hide the active jobs.
CREATE FUNCTION pdoflow.check_consistency()
RETURNS TABLE (problem text, job_id uuid)
LANGUAGE sql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
    -- One active row at a time: the rules CHECK constraints would state.
    SELECT CASE
               WHEN a.state NOT IN ('queued', 'running', 'blocked', 'paused')
                   THEN format('active job has state %L', a.state)
               WHEN (a.depends_on IS NULL) <> (a.dependency_mode IS NULL)
                   THEN 'active job has only one of depends_on and dependency_mode'
               WHEN a.dependency_mode NOT IN ('all', 'any')
                   THEN format('active job has dependency_mode %L', a.dependency_mode)
               WHEN a.state = 'blocked' AND a.parents_pending <= 0
                   THEN format('blocked job counts %s pending parents', a.parents_pending)
               WHEN (a.state = 'running') <> (a.lease_expires_at IS NOT NULL)
                   THEN format('%s job %s a lease', a.state,
                               CASE WHEN a.lease_expires_at IS NULL THEN 'lacks' ELSE 'has' END)
               WHEN NOT (a.attempt >= 0 AND a.attempt <= a.max_attempts AND a.max_attempts >= 1)
                   THEN format('active job is at attempt %s of %s', a.attempt, a.max_attempts)
           END,
           a.id
    FROM pdoflow.active_jobs AS a
    WHERE a.state NOT IN ('queued', 'running', 'blocked', 'paused')
       OR (a.depends_on IS NULL) <> (a.dependency_mode IS NULL)
       OR a.dependency_mode NOT IN ('all', 'any')
       OR (a.state = 'blocked' AND a.parents_pending <= 0)
       OR (a.state = 'running') <> (a.lease_expires_at IS NOT NULL)
       OR NOT (a.attempt >= 0 AND a.attempt <= a.max_attempts AND a.max_attempts >= 1)
    UNION ALL
    SELECT 'job is both active and finished', a.id
    FROM pdoflow.active_jobs AS a JOIN pdoflow.finished_jobs AS f ON f.id = a.id
    UNION ALL
    SELECT 'job belongs to a posting that does not exist', j.id
    FROM (SELECT id, posting FROM pdoflow.active_jobs UNION ALL SELECT id, posting FROM pdoflow.finished_jobs) AS j
    WHERE j.posting IS NOT NULL AND NOT EXISTS (SELECT FROM pdoflow.postings AS p WHERE p.id = j.posting)
    UNION ALL
    SELECT 'job is paused but its posting is not', a.id
    FROM pdoflow.active_jobs AS a LEFT JOIN pdoflow.postings AS p ON p.id = a.posting
    WHERE a.state = 'paused' AND p.status IS DISTINCT FROM 'paused'
    UNION ALL
    SELECT 'job is queued in a paused posting', a.id
    FROM pdoflow.active_jobs AS a JOIN pdoflow.postings AS p ON p.id = a.posting
    WHERE a.state = 'queued' AND p.status = 'paused'
    UNION ALL
    SELECT 'job waits in a cancelled posting', a.id
    FROM pdoflow.active_jobs AS a JOIN pdoflow.postings AS p ON p.id = a.posting
    WHERE a.state IN ('queued', 'paused', 'blocked') AND p.status = 'cancelled'
    UNION ALL
    -- Blocked jobs: the count of parents still active must match, and the
    -- parents that ended must not have decided the job already.
    SELECT CASE
               WHEN b.active_parents <> a.parents_pending
                   THEN format('blocked job counts %s pending parents, but %s are active', a.parents_pending, b.active_parents)
               WHEN a.dependency_mode = 'all' AND b.lost > 0 THEN 'blocked job has a parent that failed or was cancelled'
               WHEN a.dependency_mode = 'any' AND b.succeeded > 0 THEN 'blocked job has a parent that succeeded'
           END,
           a.id
    FROM pdoflow.active_jobs AS a
    CROSS JOIN LATERAL (
        SELECT count(*) FILTER (WHERE pa.id IS NOT NULL) AS active_parents,
               count(*) FILTER (WHERE pf.state = 'succeeded') AS succeeded,
               count(*) FILTER (WHERE pf.state IN ('failed', 'cancelled')) AS lost
        FROM unnest(a.depends_on) AS d(id)
        LEFT JOIN pdoflow.active_jobs AS pa ON pa.id = d.id
        LEFT JOIN pdoflow.finished_jobs AS pf ON pf.id = d.id
    ) AS b
    WHERE a.state = 'blocked'
      AND (b.active_parents <> a.parents_pending
           OR (a.dependency_mode = 'all' AND b.lost > 0)
           OR (a.dependency_mode = 'any' AND b.succeeded > 0))
    UNION ALL
    -- A mode-all job that left blocked before every parent succeeded (parents
    -- deleted by retention count as succeeded: they were, or it would not run).
    SELECT 'job was released before all its parents succeeded', a.id
    FROM pdoflow.active_jobs AS a
    WHERE a.state IN ('queued', 'paused', 'running') AND a.dependency_mode = 'all'
      AND EXISTS (
          SELECT FROM unnest(a.depends_on) AS d(id)
          WHERE EXISTS (SELECT FROM pdoflow.active_jobs AS pa WHERE pa.id = d.id)
             OR EXISTS (SELECT FROM pdoflow.finished_jobs AS pf WHERE pf.id = d.id AND pf.state <> 'succeeded'))
    UNION ALL
    -- Unique jobs (unique_keys.sql): an active job holds its key, and a key
    -- held is held by an active job.
    SELECT CASE
               WHEN u.job IS NULL THEN format('active job''s unique key %L is not in unique_keys', a.unique_key)
               WHEN u.job <> a.id THEN format('active job''s unique key %L is held by job %s', a.unique_key, u.job)
               ELSE format('active job''s unique key %L is marked released', a.unique_key)
           END,
           a.id
    FROM pdoflow.active_jobs AS a
    LEFT JOIN pdoflow.unique_keys AS u ON u.task = a.task AND u.unique_key = a.unique_key
    WHERE a.unique_key IS NOT NULL AND (u.job IS DISTINCT FROM a.id OR u.released_at IS NOT NULL)
    UNION ALL
    SELECT format('unique key %L of task %L is held by a job that is not active', u.unique_key, u.task), u.job
    FROM pdoflow.unique_keys AS u
    WHERE u.released_at IS NULL
      AND NOT EXISTS (SELECT FROM pdoflow.active_jobs AS a WHERE a.id = u.job)
$$;

COMMENT ON FUNCTION pdoflow.check_consistency() IS
    'Rows that break pdoflow''s invariants: an active job whose own columns disagree, and across tables (a job in both tables, a stuck or wrongly released dependent, a job out of step with its posting, a unique key out of step with its job); no row when all is well.';
