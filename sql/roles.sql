-- Privileges: three group roles, and nothing for PUBLIC.
--
--   pdoflow_producer  enqueue (every form), create postings, submit DAGs,
--                     wait for results, manage its own cron schedules, and
--                     read jobs, postings, schedules and queue statistics
--                     through the views
--   pdoflow_worker    a producer that also claims, finishes, heartbeats,
--                     reports progress and releases jobs, registers itself
--                     and sweeps
--   pdoflow_admin     a worker that also cancels and retries jobs, changes
--                     and deletes postings, changes every role's schedules,
--                     registers tasks, grants who may enqueue them, reads
--                     the workers registry and checks consistency; may
--                     enqueue every task
--
-- Per task, grant_task narrows who may enqueue it (see sql/api/tasks.sql).
--
-- Nobody gets privileges on the tables: every change goes through the API
-- functions, which run as the extension's owner (SECURITY DEFINER) with a
-- pinned search_path (pg_catalog, pdoflow, pg_temp: built-ins first, the
-- caller's schemas never; every pdoflow object is named with
-- its schema), and which build no SQL from their input. A DBA grants a role
-- to an application's login role: GRANT pdoflow_producer TO app;

-- Roles are cluster-wide: the first database's CREATE EXTENSION makes them,
-- later ones find them, and DROP EXTENSION leaves them for the others. Two
-- databases' first CREATE EXTENSION at once may both find a role missing:
-- the second CREATE ROLE then fails on the catalog's unique index, and the
-- role it wanted exists.
DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['pdoflow_producer', 'pdoflow_worker', 'pdoflow_admin'] LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = role_name) THEN
            BEGIN
                EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', role_name);
            EXCEPTION WHEN unique_violation OR duplicate_object THEN
                NULL;
            END;
        END IF;
    END LOOP;
    BEGIN
        IF NOT pg_catalog.pg_has_role('pdoflow_worker', 'pdoflow_producer', 'MEMBER') THEN
            GRANT pdoflow_producer TO pdoflow_worker;
        END IF;
        IF NOT pg_catalog.pg_has_role('pdoflow_admin', 'pdoflow_worker', 'MEMBER') THEN
            GRANT pdoflow_worker TO pdoflow_admin;
        END IF;
    EXCEPTION WHEN unique_violation THEN
        NULL;  -- the other database's CREATE EXTENSION granted them
    END;
END
$$;

-- Functions are executable by PUBLIC unless revoked: revoke all of them,
-- the internal ones (pdoflow._*) included, then grant the API by role.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pdoflow FROM PUBLIC;
GRANT USAGE ON SCHEMA pdoflow TO pdoflow_producer;

GRANT EXECUTE ON FUNCTION
    pdoflow.enqueue(text, jsonb, text, integer, timestamptz, integer, uuid, uuid[], text, text, interval, text),
    pdoflow.enqueue_many(text, jsonb[], text, integer, timestamptz, integer, uuid, uuid[], text, text[], interval, text[]),
    pdoflow.enqueue_many(jsonb),
    pdoflow.await_result(uuid, interval),
    pdoflow.await_ended(uuid[], interval),
    pdoflow.schedule(text, text, text, jsonb, text, integer, integer, text, boolean),
    pdoflow.unschedule(text),
    pdoflow.pause_schedule(text),
    pdoflow.resume_schedule(text),
    pdoflow.create_posting(text, text, integer, text),
    pdoflow.submit_dag(jsonb, uuid),
    pdoflow.uuid_generate_v7(),
    pdoflow.shard_of(uuid),
    -- (Called by the views pdoflow.queues and pdoflow.stats, as their reader.)
    pdoflow._running_slots(text),
    pdoflow._stats()
TO pdoflow_producer;
GRANT SELECT ON pdoflow.jobs, pdoflow.job_attempts, pdoflow.posting_status, pdoflow.priority_stats, pdoflow.tasks,
    pdoflow.task_grants, pdoflow.schedules, pdoflow.queues, pdoflow.queue_controls, pdoflow.stats
    TO pdoflow_producer;

GRANT EXECUTE ON FUNCTION
    pdoflow.claim(integer, text[], text, interval, text[], interval),
    pdoflow.claim_job(uuid, text, interval),
    pdoflow.finish(uuid, integer, text, jsonb),
    pdoflow.finish_many(uuid[], integer[], text[], jsonb[]),
    pdoflow.heartbeat(uuid, integer, interval),
    pdoflow.progress(uuid, integer, jsonb),
    pdoflow.release(uuid, integer),
    pdoflow.register_worker(text, text[]),
    pdoflow.job_is_granted(uuid),
    pdoflow.sweep(integer),
    pdoflow._background_sweeper_missing(text)
TO pdoflow_worker;

GRANT EXECUTE ON FUNCTION
    pdoflow.cancel(uuid),
    pdoflow.retry(uuid),
    pdoflow.set_posting_status(uuid, text),
    pdoflow.delete_posting(uuid),
    pdoflow.check_consistency(),
    pdoflow.forget_claim_floors(),
    pdoflow.compact_active_jobs(boolean, interval),
    pdoflow.register_task(text, jsonb, text, boolean),
    pdoflow.unregister_task(text),
    pdoflow.grant_task(text, regrole),
    pdoflow.revoke_task(text, regrole),
    pdoflow.pause_queue(text),
    pdoflow.resume_queue(text),
    pdoflow.set_queue_limits(text, integer, integer, interval),
    pdoflow.set_key_limit(text, integer),
    pdoflow.stats_reset(text)
TO pdoflow_admin;
GRANT SELECT ON pdoflow.workers TO pdoflow_admin;
