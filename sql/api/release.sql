-- Releasing a claim: a worker that stops (shutdown, lost interest) hands a job
-- it claimed back at once instead of letting its lease run out.

-- Puts the job of the current claim (id, attempt) back in its queue, due as
-- before (so it is claimed ahead of younger jobs), without counting the attempt: the next claim gets the same attempt number.
-- Returns false, changing nothing, when the claim is not current (finished,
-- taken back, cancelled): releasing is what a stopping worker does last, so it
-- reports rather than raises.
CREATE FUNCTION pdoflow.release(id uuid, attempt integer)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
DECLARE
    released_queue text;
BEGIN
    PERFORM pdoflow._check_job_claim(release.id, release.attempt, NULL);
    UPDATE pdoflow.active_jobs AS j
    SET state = 'queued',
        attempt = j.attempt - 1,
        worker = NULL,
        heartbeat_at = NULL,
        lease_expires_at = NULL
    WHERE j.id = release.id AND j.attempt = release.attempt AND j.state = 'running'
    RETURNING j.queue INTO released_queue;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM pg_notify('pdoflow', released_queue);
    RETURN true;
END
$$;

COMMENT ON FUNCTION pdoflow.release(uuid, integer) IS
    'Hands the job of the current claim (id, attempt) back to its queue without counting the attempt; false if the claim is not current.';
