-- Cancelling and retrying jobs by hand.

-- Queued or running jobs end as cancelled (a running job's later finish or
-- heartbeat is rejected). Returns false when the job had already ended.
CREATE FUNCTION pdoflow.cancel(id uuid)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
BEGIN
    PERFORM pdoflow._check_job_id(cancel.id);
    -- A concurrent retry can move the job from history back to the active
    -- table between our two looks; a second round sees where it landed.
    FOR round IN 1..2 LOOP
        WITH ended AS (
            DELETE FROM pdoflow.active_jobs AS j
            WHERE j.id = cancel.id
            RETURNING j.*
        )
        INSERT INTO pdoflow.finished_jobs (id, run_at, created_at, started_at, finished_at, priority,
                                           attempt, max_attempts, state, queue, task, worker,
                                           last_error, args)
        SELECT e.id, e.run_at, e.created_at, e.started_at, now(), e.priority,
               e.attempt, e.max_attempts, 'cancelled', e.queue, e.task, e.worker, e.last_error, e.args
        FROM ended AS e;
        IF FOUND THEN
            RETURN true;
        END IF;
        IF EXISTS (SELECT FROM pdoflow.finished_jobs AS f WHERE f.id = cancel.id) THEN
            RETURN false;
        END IF;
    END LOOP;
    RAISE EXCEPTION 'job % does not exist', cancel.id USING ERRCODE = 'invalid_parameter_value';
END
$$;

COMMENT ON FUNCTION pdoflow.cancel(uuid) IS
    'Cancels a queued or running job; false when it had already ended.';

-- Puts a failed or cancelled job back in the queue, due now, with one more
-- attempt allowed if it had used them all. Returns false when the job is
-- already queued or running; a succeeded job cannot be retried.
CREATE FUNCTION pdoflow.retry(id uuid)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
DECLARE
    retried_queue text;
    ended_state   text;
BEGIN
    PERFORM pdoflow._check_job_id(retry.id);
    -- A concurrent cancel or finish can move the job into history between our
    -- looks; a second round sees where it landed.
    FOR round IN 1..2 LOOP
        WITH revived AS (
            DELETE FROM pdoflow.finished_jobs AS f
            WHERE f.id = retry.id AND f.state IN ('failed', 'cancelled')
            RETURNING f.*
        )
        INSERT INTO pdoflow.active_jobs (id, run_at, created_at, priority, attempt, max_attempts,
                                         state, queue, task, last_error, args)
        SELECT r.id, now(), r.created_at, r.priority, r.attempt, greatest(r.max_attempts, r.attempt + 1),
               'queued', r.queue, r.task, r.last_error, r.args
        FROM revived AS r
        RETURNING queue INTO retried_queue;
        IF FOUND THEN
            PERFORM pg_notify('pdoflow', retried_queue);
            RETURN true;
        END IF;
        IF EXISTS (SELECT FROM pdoflow.active_jobs AS a WHERE a.id = retry.id) THEN
            RETURN false;
        END IF;
        SELECT f.state INTO ended_state FROM pdoflow.finished_jobs AS f WHERE f.id = retry.id;
        IF ended_state = 'succeeded' THEN
            RAISE EXCEPTION 'job % succeeded and cannot be retried', retry.id
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'Only failed or cancelled jobs can be retried; enqueue a new job to run it again.';
        END IF;
    END LOOP;
    IF ended_state IS NOT NULL THEN
        RAISE EXCEPTION 'job % is being changed concurrently', retry.id
            USING ERRCODE = 'serialization_failure', HINT = 'Try the retry again.';
    END IF;
    RAISE EXCEPTION 'job % does not exist', retry.id USING ERRCODE = 'invalid_parameter_value';
END
$$;

COMMENT ON FUNCTION pdoflow.retry(uuid) IS
    'Re-queues a failed or cancelled job, due now; false when it is already queued or running.';
