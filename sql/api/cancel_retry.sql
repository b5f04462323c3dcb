-- Cancelling and retrying jobs by hand.

-- Queued, blocked or running jobs end as cancelled (a running job's later
-- finish or heartbeat is rejected), and so do the children that can no longer
-- run without them. Returns false when the job had already ended.
CREATE FUNCTION pdoflow.cancel(id uuid)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    PERFORM pdoflow._require_read_committed('pdoflow.cancel');
    PERFORM pdoflow._check_job_id(cancel.id);
    -- A concurrent retry can move the job from history back to the active
    -- table between our two looks; a second round sees where it landed.
    FOR round IN 1..2 LOOP
        IF EXISTS (SELECT FROM pdoflow._end_jobs(ARRAY[cancel.id], ARRAY['cancelled'])) THEN
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
    'Cancels a queued, blocked or running job (and the children that needed it); false when it had already ended.';

-- Puts a failed or cancelled job back in the queue, due now, with one more
-- attempt allowed if it had used them all. A job with parents is blocked
-- again until they allow it to run (and is refused when they never can); a
-- job of a paused posting waits for it, and a cancelled posting refuses.
-- Returns false when the job is already active; a succeeded job cannot be retried.
CREATE FUNCTION pdoflow.retry(id uuid)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    job        record;
    new_state  text;
    pending    integer;
    dependency record;
    posting    record;
    holder     uuid;
BEGIN
    PERFORM pdoflow._require_read_committed('pdoflow.retry');
    PERFORM pdoflow._check_job_id(retry.id);
    -- A concurrent cancel or finish can move the job into history between our
    -- looks; a second round sees where it landed.
    FOR round IN 1..2 LOOP
        SELECT f.* INTO job FROM pdoflow.finished_jobs AS f WHERE f.id = retry.id FOR UPDATE;
        IF FOUND THEN
            IF job.state = 'succeeded' THEN
                RAISE EXCEPTION 'job % succeeded and cannot be retried', retry.id
                    USING ERRCODE = 'object_not_in_prerequisite_state',
                          HINT = 'Only failed or cancelled jobs can be retried; enqueue a new job to run it again.';
            END IF;
            new_state := 'queued';
            pending := NULL;
            IF job.posting IS NOT NULL THEN
                SELECT * INTO posting FROM pdoflow._posting_for_new_jobs(job.posting);
                new_state := pdoflow._waiting_state(posting.status);
            END IF;
            IF job.depends_on IS NOT NULL THEN
                SELECT * INTO dependency FROM pdoflow._dependency_state(job.depends_on, job.dependency_mode);
                pending := dependency.pending;
                IF dependency.state = 'blocked' THEN
                    new_state := 'blocked';
                END IF;
            END IF;
            -- A unique job takes its key back (unique_keys.sql), unless
            -- another job took it over meanwhile.
            IF job.unique_key IS NOT NULL THEN
                holder := (pdoflow._take_unique_keys(ARRAY[job.task::text], ARRAY[job.unique_key], NULL,
                                                     ARRAY[job.id]))[1];
                IF holder <> job.id THEN
                    RAISE EXCEPTION 'job % cannot be retried: job % holds its unique key % of task %',
                        retry.id, holder, pg_catalog.quote_literal(job.unique_key), pg_catalog.quote_literal(job.task)
                        USING ERRCODE = 'unique_violation',
                              HINT = 'Cancel that job first, or wait until it ends.';
                END IF;
            END IF;
            DELETE FROM pdoflow.finished_jobs AS f WHERE f.id = retry.id;
            INSERT INTO pdoflow.active_jobs (id, posting, run_at, created_at, priority, attempt, max_attempts,
                                             parents_pending, state, queue, task, dependency_mode, node,
                                             last_error, depends_on, args, enqueued_by, unique_key, progress,
                                             concurrency_key, controlled)
            VALUES (job.id, job.posting, now(), job.created_at, job.priority, job.attempt,
                    greatest(job.max_attempts, job.attempt + 1), pending, new_state, job.queue, job.task,
                    job.dependency_mode, job.node, job.last_error, job.depends_on, job.args,
                    job.enqueued_by, job.unique_key, NULL, job.concurrency_key,
                    EXISTS (SELECT FROM pdoflow.queue_controls AS c
                            WHERE c.queue = job.queue COLLATE "C" AND c.released_at IS NULL));
            -- Children waiting for any one parent counted this one as ended:
            -- it may succeed again.
            UPDATE pdoflow.active_jobs AS c
            SET parents_pending = c.parents_pending + 1
            WHERE c.id IN (
                SELECT b.id FROM pdoflow.active_jobs AS b
                WHERE b.state = 'blocked' AND b.depends_on @> ARRAY[retry.id]
                ORDER BY b.id
                FOR NO KEY UPDATE
            );
            IF new_state = 'queued' THEN
                PERFORM pdoflow._note_queued(job.queue, job.priority, now(), job.id);
                PERFORM pdoflow._announce(job.queue);
            END IF;
            PERFORM pdoflow._count_jobs('retried', ARRAY[job.queue::text]);
            RETURN true;
        END IF;
        IF EXISTS (SELECT FROM pdoflow.active_jobs AS a WHERE a.id = retry.id) THEN
            RETURN false;
        END IF;
    END LOOP;
    RAISE EXCEPTION 'job % does not exist', retry.id USING ERRCODE = 'invalid_parameter_value';
END
$$;

COMMENT ON FUNCTION pdoflow.retry(uuid) IS
    'Re-queues a failed or cancelled job, due now (blocked again while it has parents to wait for); false when it is already active.';
