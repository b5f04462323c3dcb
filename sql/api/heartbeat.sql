-- Heartbeats: a worker still busy with a job extends its claim's lease, so the
-- sweeper does not hand the job to someone else.

CREATE FUNCTION pdoflow.heartbeat(
    id      uuid,
    attempt integer,
    lease   interval DEFAULT NULL
) RETURNS timestamptz
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    expires_at timestamptz;
    holder     text;
BEGIN
    PERFORM pdoflow._check_job_claim(heartbeat.id, heartbeat.attempt, heartbeat.lease);
    -- NULL lease: renew for as long as the claim's last lease ran.
    UPDATE pdoflow.active_jobs AS j
    SET lease_expires_at = now() + coalesce(heartbeat.lease,
                                            j.lease_expires_at - coalesce(j.heartbeat_at, j.started_at)),
        heartbeat_at = now()
    WHERE j.id = heartbeat.id AND j.attempt = heartbeat.attempt AND j.state = 'running'
    RETURNING j.lease_expires_at, j.worker INTO expires_at, holder;
    IF NOT FOUND THEN
        PERFORM pdoflow._raise_claim_problem(heartbeat.id, heartbeat.attempt);
    END IF;
    PERFORM pdoflow._record_worker(holder);
    RETURN expires_at;
END
$$;

COMMENT ON FUNCTION pdoflow.heartbeat(uuid, integer, interval) IS
    'Extends the lease of the current claim (id, attempt) by lease, or by its last lease''s length when NULL; returns the new expiry.';
