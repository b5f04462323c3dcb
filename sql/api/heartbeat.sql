-- Heartbeats: a worker still busy with a job extends its claim's lease, so the
-- sweeper does not hand the job to someone else.

-- How long a renewed lease lasts: `lease` when given, else as long as the
-- claim's last lease ran (from its last heartbeat, or from its claim).
-- Asked by heartbeat and progress; a plain SQL function, inlined into
-- their UPDATEs.
CREATE FUNCTION pdoflow._renewed_lease(lease interval, expires_at timestamptz, heartbeat_at timestamptz,
                                       started_at timestamptz)
RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT coalesce(lease, expires_at - coalesce(heartbeat_at, started_at));
END;

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
    UPDATE pdoflow.active_jobs AS j
    SET lease_expires_at = now() + pdoflow._renewed_lease(heartbeat.lease, j.lease_expires_at,
                                                          j.heartbeat_at, j.started_at),
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

-- Progress: the current claim reports how far it got (any JSON value, within
-- pdoflow.max_payload_bytes). pdoflow.jobs shows the latest report, also
-- after the job ended; it counts as a heartbeat (the lease is renewed for as
-- long as its last one ran), and is fenced like one: only the current claim
-- may report.
CREATE FUNCTION pdoflow.progress(id uuid, attempt integer, progress jsonb)
RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    holder text;
BEGIN
    PERFORM pdoflow._check_job_claim(progress.id, progress.attempt, NULL);
    PERFORM pdoflow._check_progress(progress.progress);
    UPDATE pdoflow.active_jobs AS j
    SET progress = progress.progress,
        lease_expires_at = now() + pdoflow._renewed_lease(NULL, j.lease_expires_at, j.heartbeat_at, j.started_at),
        heartbeat_at = now()
    WHERE j.id = progress.id AND j.attempt = progress.attempt AND j.state = 'running'
    RETURNING j.worker INTO holder;
    IF NOT FOUND THEN
        PERFORM pdoflow._raise_claim_problem(progress.id, progress.attempt);
    END IF;
    PERFORM pdoflow._record_worker(holder);
END
$$;

COMMENT ON FUNCTION pdoflow.progress(uuid, integer, jsonb) IS
    'Records the progress of the current claim (id, attempt), shown in pdoflow.jobs; also renews its lease, as heartbeat does.';
