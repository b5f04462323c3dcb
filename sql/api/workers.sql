-- The workers registry: which workers are alive, by the name they claim with.

-- Marks the named worker active and seen now. Called by claim and heartbeat,
-- so it must be cheap and must not make them wait on each other:
--   * a worker seen within the last second is not written again;
--   * a row another transaction is updating is skipped (usually another
--     session recording the same worker; if the sweeper is marking it gone,
--     the next call puts it right), so two sessions of one worker cannot
--     deadlock. Only two sessions inserting the same new name wait.
CREATE FUNCTION pdoflow._record_worker(worker text)
RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    IF worker IS NULL THEN
        RETURN;
    END IF;
    PERFORM FROM pdoflow.workers AS w
    WHERE w.name = worker AND w.state = 'active' AND w.last_seen_at >= now() - interval '1 second';
    IF FOUND THEN
        RETURN;
    END IF;
    BEGIN
        PERFORM FROM pdoflow.workers AS w WHERE w.name = worker FOR UPDATE SKIP LOCKED;
        IF FOUND THEN
            UPDATE pdoflow.workers AS w
            SET state = 'active', last_seen_at = greatest(w.last_seen_at, now()), gone_at = NULL
            WHERE w.name = worker;
        ELSIF NOT EXISTS (SELECT FROM pdoflow.workers AS w WHERE w.name = worker) THEN
            INSERT INTO pdoflow.workers AS w (name) VALUES (worker)
            ON CONFLICT (name) DO NOTHING;
        END IF;
    EXCEPTION WHEN serialization_failure THEN
        -- A claim in a REPEATABLE READ or SERIALIZABLE transaction, and
        -- another session recorded this worker after its snapshot: the
        -- worker is recorded, and the claim need not fail for it.
        NULL;
    END;
END
$$;

-- For workers that wait idle on LISTEN: claim and heartbeat record a worker
-- too, but a worker that has nothing to do calls neither. tasks, when given,
-- records which tasks the worker serves (for people, dashboards and the
-- HTTP API's claims); NULL leaves what was recorded.
CREATE FUNCTION pdoflow.register_worker(name text, tasks text[] DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
BEGIN
    PERFORM pdoflow._check_worker_name(register_worker.name);
    PERFORM pdoflow._check_worker_tasks(register_worker.tasks);
    PERFORM pdoflow._record_worker(register_worker.name);
    IF register_worker.tasks IS NOT NULL THEN
        UPDATE pdoflow.workers AS w
        SET tasks = register_worker.tasks
        WHERE w.name = register_worker.name AND w.tasks IS DISTINCT FROM register_worker.tasks;
    END IF;
END
$$;

COMMENT ON FUNCTION pdoflow.register_worker(text, text[]) IS
    'Records the named worker as active and seen now, and the tasks it serves when given; claim and heartbeat do the same for the worker holding the claim.';
