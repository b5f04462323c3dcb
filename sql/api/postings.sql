-- Postings: named batches of jobs that can be followed, paused and cancelled
-- as one.
--
-- Pausing keeps the posting's queued jobs from being claimed (they move to
-- the internal state 'paused', outside the claim indexes); running jobs go
-- on. Cancelling ends its queued, paused and blocked jobs as cancelled;
-- running jobs may still finish, but none is queued again.
--
-- Concurrency: whoever adds jobs to a posting (enqueue, retry) holds a FOR
-- SHARE lock on its row, and whoever re-queues a job reads the posting's
-- status after locking the job. set_posting_status locks the posting row,
-- then every active job of the posting (in id order), so each of those sees
-- either the old status with its work done before the change, or the new one.

CREATE FUNCTION pdoflow.create_posting(
    name        text,
    description text    DEFAULT NULL,
    priority    integer DEFAULT NULL,
    queue       text    DEFAULT NULL
) RETURNS uuid
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    posting_id uuid := pdoflow.uuid_generate_v7();
BEGIN
    PERFORM pdoflow._check_posting(create_posting.name, create_posting.queue);
    INSERT INTO pdoflow.postings (id, name, description, priority, queue)
    VALUES (posting_id, create_posting.name, create_posting.description,
            create_posting.priority, create_posting.queue);
    RETURN posting_id;
END
$$;

COMMENT ON FUNCTION pdoflow.create_posting(text, text, integer, text) IS
    'Creates an active posting and returns its id. Its queue and priority apply to jobs enqueued into it with enqueue''s default queue and priority.';

-- The posting new jobs are added to, locked FOR SHARE until the caller
-- commits so its status cannot change under them. Raises when it does not
-- exist or is cancelled.
CREATE FUNCTION pdoflow._posting_for_new_jobs(posting uuid, OUT status text, OUT queue text, OUT priority integer)
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
BEGIN
    SELECT p.status, p.queue, p.priority INTO status, queue, priority
    FROM pdoflow.postings AS p
    WHERE p.id = _posting_for_new_jobs.posting
    FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'posting % does not exist', _posting_for_new_jobs.posting
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Create one with pdoflow.create_posting(name).';
    END IF;
    IF status = 'cancelled' THEN
        RAISE EXCEPTION 'posting % is cancelled and takes no more jobs', _posting_for_new_jobs.posting
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Cancelling a posting is final; create a new posting for new work.';
    END IF;
END
$$;

-- Sets a posting's status: active, paused or cancelled. Returns false when it
-- had that status already. A cancelled posting stays cancelled.
CREATE FUNCTION pdoflow.set_posting_status(posting uuid, status text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    old_status text;
    resumed    text[];
BEGIN
    PERFORM pdoflow._require_read_committed('pdoflow.set_posting_status');
    PERFORM pdoflow._check_posting_status(set_posting_status.posting, set_posting_status.status);
    SELECT p.status INTO old_status
    FROM pdoflow.postings AS p
    WHERE p.id = set_posting_status.posting
    FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'posting % does not exist', set_posting_status.posting
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF old_status = set_posting_status.status THEN
        RETURN false;
    END IF;
    IF old_status = 'cancelled' THEN
        RAISE EXCEPTION 'posting % is cancelled and cannot become %', set_posting_status.posting,
            set_posting_status.status
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Cancelling a posting is final; create a new posting for new work.';
    END IF;
    UPDATE pdoflow.postings AS p
    SET status = set_posting_status.status, status_changed_at = now()
    WHERE p.id = set_posting_status.posting;

    -- Wait for whoever is changing one of its jobs right now (a claim, a
    -- finish, a parent releasing it); afterwards they see the new status.
    -- A worker finishing a batch of jobs of several postings locks in its own
    -- order, which can deadlock with ours: PostgreSQL then aborts one side,
    -- and when it is this one, the block is rolled back and tried again.
    FOR round IN 1..3 LOOP
        BEGIN
            PERFORM
            FROM pdoflow.active_jobs AS j
            WHERE j.posting = set_posting_status.posting
            ORDER BY j.id
            FOR NO KEY UPDATE;

            CASE set_posting_status.status
                WHEN 'paused' THEN
                    UPDATE pdoflow.active_jobs AS j
                    SET state = 'paused'
                    WHERE j.posting = set_posting_status.posting AND j.state = 'queued';
                WHEN 'active' THEN
                    WITH resumed_jobs AS (
                        UPDATE pdoflow.active_jobs AS j
                        SET state = 'queued'
                        WHERE j.posting = set_posting_status.posting AND j.state = 'paused'
                        RETURNING j.queue, j.run_at
                    )
                    SELECT array_agg(DISTINCT r.queue) INTO resumed
                    FROM resumed_jobs AS r
                    WHERE r.run_at <= now();
                    PERFORM pdoflow._announce(q) FROM unnest(resumed) AS q;
                ELSE
                    PERFORM pdoflow._end_jobs(
                        array_agg(j.id),
                        array_fill('cancelled'::text, ARRAY[count(*)::integer]),
                        array_fill(format('posting %s was cancelled', set_posting_status.posting), ARRAY[count(*)::integer]))
                    FROM pdoflow.active_jobs AS j
                    WHERE j.posting = set_posting_status.posting AND j.state IN ('queued', 'paused', 'blocked')
                    HAVING count(*) > 0;
            END CASE;
            EXIT;
        EXCEPTION WHEN deadlock_detected THEN
            IF round = 3 THEN
                RAISE;
            END IF;
        END;
    END LOOP;
    RETURN true;
END
$$;

COMMENT ON FUNCTION pdoflow.set_posting_status(uuid, text) IS
    'Sets a posting''s status: active, paused (its queued jobs are not claimed) or cancelled (its jobs that have not started end as cancelled; final). False when unchanged.';

-- Removes a posting that has no unfinished jobs, with its finished jobs.
-- Returns false when there is no such posting.
CREATE FUNCTION pdoflow.delete_posting(posting uuid)
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

CREATE VIEW pdoflow.posting_status AS
SELECT p.id, p.name, p.description, p.status, p.queue, p.priority, p.created_at, p.status_changed_at,
       a.queued + a.running + a.blocked + f.succeeded + f.failed + f.cancelled AS total,
       a.queued, a.running, f.succeeded, f.failed, f.cancelled, a.blocked,
       -- Done: every job ended, and at least one existed (or none ever will).
       a.queued + a.running + a.blocked = 0
       AND (f.succeeded + f.failed + f.cancelled > 0 OR p.status = 'cancelled') AS complete
FROM pdoflow.postings AS p
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE j.state IN ('queued', 'paused')) AS queued,
           count(*) FILTER (WHERE j.state = 'running') AS running,
           count(*) FILTER (WHERE j.state = 'blocked') AS blocked
    FROM pdoflow.active_jobs AS j
    WHERE j.posting = p.id
) AS a
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE j.state = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE j.state = 'failed') AS failed,
           count(*) FILTER (WHERE j.state = 'cancelled') AS cancelled
    FROM pdoflow.finished_jobs AS j
    WHERE j.posting = p.id
) AS f;

COMMENT ON VIEW pdoflow.posting_status IS
    'One row per posting: its status, its jobs counted per state, and whether all of them have ended (complete).';

-- Jobs not started yet, and running, per queue and priority.
CREATE VIEW pdoflow.priority_stats AS
SELECT j.queue, j.priority,
       count(*) FILTER (WHERE j.state IN ('queued', 'paused', 'blocked')) AS waiting,
       count(*) FILTER (WHERE j.state = 'queued' AND j.run_at <= now()) AS due,
       count(*) FILTER (WHERE j.state = 'paused') AS paused,
       count(*) FILTER (WHERE j.state = 'blocked') AS blocked,
       count(*) FILTER (WHERE j.state = 'running') AS running
FROM pdoflow.active_jobs AS j
GROUP BY j.queue, j.priority;

COMMENT ON VIEW pdoflow.priority_stats IS
    'Per queue and priority: jobs waiting (queued, paused or blocked), due now, paused, blocked and running.';
