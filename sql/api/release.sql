-- Releasing a claim: a worker that stops (shutdown, lost interest) hands a job
-- it claimed back at once instead of letting its lease run out.

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
CREATE FUNCTION pdoflow.release(id uuid, attempt integer)
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
