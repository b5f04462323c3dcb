-- Runs first: installs the extension and the helpers the other tests share.
CREATE EXTENSION pdoflow;
-- (A query rather than psql's \dx, whose columns differ between versions.)
SELECT e.extname AS "Name", e.extversion AS "Version", e.extnamespace::regnamespace AS "Schema",
       obj_description(e.oid, 'pg_extension') AS "Description"
FROM pg_extension AS e WHERE e.extname = 'pdoflow';

CREATE SCHEMA regress;

-- Runs sql; returns NULL, or 'SQLSTATE: message' (and the hint) of its error,
-- with job ids replaced by <id> so outputs do not depend on them.
CREATE FUNCTION regress.failure(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    hint text;
BEGIN
    EXECUTE sql;
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS hint = PG_EXCEPTION_HINT;
    RETURN regexp_replace(
        SQLSTATE || ': ' || SQLERRM || CASE WHEN hint <> '' THEN E'\n  HINT: ' || hint ELSE '' END,
        '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<id>', 'g');
END $$;

-- Empties the queue and the workers registry between tests.
CREATE FUNCTION regress.reset() RETURNS void LANGUAGE sql AS $$
    TRUNCATE pdoflow.active_jobs, pdoflow.finished_jobs, pdoflow.job_attempts, pdoflow.workers, pdoflow.postings,
             pdoflow.unique_keys, pdoflow.cron_schedules, pdoflow.queue_controls;
$$;

-- Jobs as a test shows them: everything but ids and timestamps.
CREATE VIEW regress.jobs AS
SELECT task, queue, priority, state, attempt, max_attempts, args, result, last_error, worker
FROM pdoflow.jobs;
