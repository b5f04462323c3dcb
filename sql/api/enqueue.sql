-- Enqueueing: one job, or many in one statement.
--
-- Idle workers LISTEN on channel 'pdoflow'; each call notifies once per queue
-- that gained jobs it can run now (delayed jobs are announced when they fall due).

CREATE FUNCTION pdoflow.enqueue(
    task         text,
    args         jsonb       DEFAULT '{}',
    queue        text        DEFAULT 'default',
    priority     integer     DEFAULT 0,
    run_at       timestamptz DEFAULT NULL,
    max_attempts integer     DEFAULT 5
) RETURNS uuid
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
DECLARE
    job_id uuid;
    due_at timestamptz := coalesce(enqueue.run_at, now());
BEGIN
    PERFORM pdoflow._check_job(enqueue.task, enqueue.args, enqueue.queue,
                               enqueue.priority, enqueue.run_at, enqueue.max_attempts);
    job_id := pdoflow.uuid_generate_v7();
    INSERT INTO pdoflow.active_jobs (id, task, queue, priority, max_attempts, args, run_at, created_at)
    VALUES (job_id, enqueue.task, enqueue.queue, enqueue.priority, enqueue.max_attempts,
            enqueue.args, due_at, now());
    IF due_at <= now() THEN
        PERFORM pg_notify('pdoflow', enqueue.queue);
    END IF;
    RETURN job_id;
END
$$;

COMMENT ON FUNCTION pdoflow.enqueue(text, jsonb, text, integer, timestamptz, integer) IS
    'Adds one job and returns its id. run_at NULL means now.';

-- Many jobs of one task: one job per element of args, ids returned in args order.
CREATE FUNCTION pdoflow.enqueue_many(
    task         text,
    args         jsonb[],
    queue        text        DEFAULT 'default',
    priority     integer     DEFAULT 0,
    run_at       timestamptz DEFAULT NULL,
    max_attempts integer     DEFAULT 5
) RETURNS TABLE (id uuid)
LANGUAGE plpgsql VOLATILE ROWS 1000
AS $$
#variable_conflict use_column
DECLARE
    job_ids uuid[];
    due_at  timestamptz := coalesce(enqueue_many.run_at, now());
BEGIN
    PERFORM pdoflow._check_job_batch(enqueue_many.task, enqueue_many.args, enqueue_many.queue,
                                     enqueue_many.priority, enqueue_many.run_at, enqueue_many.max_attempts);
    job_ids := pdoflow._uuid_v7_array(cardinality(enqueue_many.args));
    INSERT INTO pdoflow.active_jobs (id, task, queue, priority, max_attempts, args, run_at, created_at)
    SELECT new.id, enqueue_many.task, enqueue_many.queue, enqueue_many.priority,
           enqueue_many.max_attempts, new.args, due_at, now()
    FROM unnest(job_ids, enqueue_many.args) AS new(id, args);
    IF due_at <= now() AND cardinality(job_ids) > 0 THEN
        PERFORM pg_notify('pdoflow', enqueue_many.queue);
    END IF;
    RETURN QUERY SELECT unnest(job_ids);
END
$$;

COMMENT ON FUNCTION pdoflow.enqueue_many(text, jsonb[], text, integer, timestamptz, integer) IS
    'Adds one job of the given task per element of args, in one statement; returns the ids in args order.';

-- Many jobs, each with its own options: a JSON array of objects whose keys are
-- enqueue's parameters (task required; a missing or null key takes enqueue's default).
CREATE FUNCTION pdoflow.enqueue_many(jobs jsonb)
RETURNS TABLE (id uuid)
LANGUAGE plpgsql VOLATILE ROWS 1000
AS $$
#variable_conflict use_column
DECLARE
    job_ids  uuid[];
    notified bigint;
BEGIN
    PERFORM pdoflow._check_job_list(enqueue_many.jobs::text);
    job_ids := pdoflow._uuid_v7_array(jsonb_array_length(enqueue_many.jobs));
    WITH new AS (
        INSERT INTO pdoflow.active_jobs (id, task, queue, priority, max_attempts, args, run_at, created_at)
        SELECT spec.id,
               spec.job ->> 'task',
               coalesce(spec.job ->> 'queue', 'default'),
               coalesce(nullif(spec.job -> 'priority', 'null')::integer, 0),
               coalesce(nullif(spec.job -> 'max_attempts', 'null')::integer, 5),
               coalesce(nullif(spec.job -> 'args', 'null'::jsonb), '{}'::jsonb),
               coalesce((spec.job ->> 'run_at')::timestamptz, now()),
               now()
        FROM ROWS FROM (jsonb_array_elements(enqueue_many.jobs), unnest(job_ids)) AS spec(job, id)
        RETURNING queue, run_at
    )
    SELECT count(pg_notify('pdoflow', due.queue)) INTO notified
    FROM (SELECT DISTINCT new.queue FROM new WHERE new.run_at <= now()) AS due;
    RETURN QUERY SELECT unnest(job_ids);
END
$$;

COMMENT ON FUNCTION pdoflow.enqueue_many(jsonb) IS
    'Adds the jobs described by a JSON array of objects with enqueue''s parameters as keys; returns the ids in array order.';
