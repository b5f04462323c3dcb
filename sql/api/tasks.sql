-- Task registration (optional): a task may be registered with a JSON Schema
-- that the args of its jobs must match; with pdoflow.require_registered_tasks
-- on, only registered tasks may be enqueued. Validation runs in Rust
-- (pdoflow-ext/src/input/task_schema.rs, the jsonschema crate), before anything is written.

-- Sessions keep a copy of the registrations for enqueue's fast path
-- (pdoflow-ext/src/tasks/registered_tasks.rs); this trigger tells them when a
-- transaction changes them.
CREATE FUNCTION pdoflow._tasks_changed()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'tasks_changed_wrapper';

-- Row triggers, not statement triggers: logical replication's apply worker
-- fires only row triggers (and TRUNCATE's statement trigger). Enabled
-- ALWAYS, so that rows written with session_replication_role = replica (by
-- logical replication or a restore), where ordinary triggers stay silent,
-- count too.
CREATE TRIGGER tasks_changed
    AFTER INSERT OR UPDATE OR DELETE ON pdoflow.tasks
    FOR EACH ROW EXECUTE FUNCTION pdoflow._tasks_changed();
CREATE TRIGGER tasks_truncated
    AFTER TRUNCATE ON pdoflow.tasks
    FOR EACH STATEMENT EXECUTE FUNCTION pdoflow._tasks_changed();
CREATE TRIGGER task_privileges_changed
    AFTER INSERT OR UPDATE OR DELETE ON pdoflow.task_privileges
    FOR EACH ROW EXECUTE FUNCTION pdoflow._tasks_changed();
CREATE TRIGGER task_privileges_truncated
    AFTER TRUNCATE ON pdoflow.task_privileges
    FOR EACH STATEMENT EXECUTE FUNCTION pdoflow._tasks_changed();
ALTER TABLE pdoflow.tasks ENABLE ALWAYS TRIGGER tasks_changed;
ALTER TABLE pdoflow.tasks ENABLE ALWAYS TRIGGER tasks_truncated;
ALTER TABLE pdoflow.task_privileges ENABLE ALWAYS TRIGGER task_privileges_changed;
ALTER TABLE pdoflow.task_privileges ENABLE ALWAYS TRIGGER task_privileges_truncated;

-- With replace false, a task registered with another schema keeps it and
-- the call fails (23505): two parts of an application that disagree on a
-- task's arguments find out, rather than the last one winning. The same
-- schema again (jsonb equality: key order and spacing do not count) only
-- updates the description.
CREATE FUNCTION pdoflow.register_task(
    name        text,
    args_schema jsonb   DEFAULT NULL,
    description text    DEFAULT NULL,
    replace     boolean DEFAULT true
) RETURNS boolean
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    inserted   boolean;
    registered jsonb;
BEGIN
    PERFORM pdoflow._check_worker_name(register_task.name);
    PERFORM pdoflow._check_args_schema(register_task.args_schema::text);
    IF register_task.replace IS NULL THEN
        RAISE EXCEPTION 'replace must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF register_task.replace THEN
        INSERT INTO pdoflow.tasks AS t (name, args_schema, description)
        VALUES (register_task.name, register_task.args_schema, register_task.description)
        ON CONFLICT (name) DO UPDATE
        SET args_schema = excluded.args_schema, description = excluded.description, updated_at = now()
        RETURNING (xmax = 0) INTO inserted;
        RETURN inserted;
    END IF;
    -- A concurrent registration of the same name: the insert waits for it,
    -- and the lock below sees what it left.
    INSERT INTO pdoflow.tasks AS t (name, args_schema, description)
    VALUES (register_task.name, register_task.args_schema, register_task.description)
    ON CONFLICT (name) DO NOTHING
    RETURNING true INTO inserted;
    IF inserted THEN
        RETURN true;
    END IF;
    SELECT t.args_schema INTO registered FROM pdoflow.tasks AS t
    WHERE t.name = register_task.name FOR UPDATE;
    IF registered IS DISTINCT FROM register_task.args_schema THEN
        RAISE EXCEPTION 'task "%" is already registered with another args_schema', register_task.name
            USING ERRCODE = 'unique_violation',
                  DETAIL = format('Its args_schema is %s.', coalesce(registered::text, 'NULL (any args)')),
                  HINT = 'Pass replace => true to replace it, or unregister the task first.';
    END IF;
    UPDATE pdoflow.tasks AS t
    SET description = register_task.description, updated_at = now()
    WHERE t.name = register_task.name AND t.description IS DISTINCT FROM register_task.description;
    RETURN false;
END
$$;

COMMENT ON FUNCTION pdoflow.register_task(text, jsonb, text, boolean) IS
    'Registers a task (or updates its registration): the JSON Schema its jobs'' args must match (NULL: any args). True when it was new. With replace false, refuses (23505) to change an existing task''s schema.';

CREATE FUNCTION pdoflow.unregister_task(name text)
RETURNS boolean
LANGUAGE sql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
    WITH gone AS (DELETE FROM pdoflow.tasks AS t WHERE t.name = unregister_task.name RETURNING 1)
    SELECT EXISTS (SELECT FROM gone)
$$;

COMMENT ON FUNCTION pdoflow.unregister_task(text) IS
    'Forgets a task''s registration; its queued jobs stay. False when it was not registered.';

-- Whether enqueues must look at registrations at all: not while none exist
-- and they are not required (the bulk paths then skip the lookups).
-- PL/pgSQL rather than SQL: every enqueue calls it, and a SQL function that
-- is not inlined is planned anew at each call (a third of a single enqueue's
-- time), where PL/pgSQL keeps its plan for the session.
CREATE FUNCTION pdoflow._task_checks_needed()
RETURNS boolean
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    RETURN pdoflow._require_registered_tasks() OR EXISTS (SELECT FROM pdoflow.tasks);
END
$$;

-- Checks the args of jobs of one task against its registration; params
-- names each args value in messages (NULL: args[i]).
CREATE FUNCTION pdoflow._check_task_args(task text, args jsonb[], params text[] DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    schema jsonb;
BEGIN
    SELECT t.args_schema INTO schema FROM pdoflow.tasks AS t WHERE t.name = task;
    IF NOT FOUND THEN
        IF pdoflow._require_registered_tasks() THEN
            RAISE EXCEPTION 'task "%" is not registered', task
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Register it with pdoflow.register_task(name), or turn pdoflow.require_registered_tasks off.';
        END IF;
        RETURN;
    END IF;
    IF schema IS NOT NULL THEN
        PERFORM pdoflow._validate_args(task, schema::text,
                                       ARRAY(SELECT a::text FROM unnest(args) WITH ORDINALITY AS x(a, o) ORDER BY o),
                                       params);
    END IF;
END
$$;

-- Per-task enqueue privileges. A task with at least one grant may be
-- enqueued, in any form, only by roles that have the privileges of a granted
-- role, and by pdoflow_admin members (enforced by pdoflow._check_task_grants,
-- pdoflow-ext/src/tasks/task_grants.rs). Tasks without grants stay open to every
-- producer.
CREATE FUNCTION pdoflow.grant_task(task text, grantee regrole)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    inserted boolean;
BEGIN
    PERFORM pdoflow._check_task_grant(grant_task.task, grant_task.grantee);
    INSERT INTO pdoflow.task_privileges AS p (task, grantee, granted_by)
    VALUES (grant_task.task, grant_task.grantee, pdoflow._calling_role())
    ON CONFLICT (task, grantee) DO NOTHING
    RETURNING true INTO inserted;
    RETURN coalesce(inserted, false);
END
$$;

COMMENT ON FUNCTION pdoflow.grant_task(text, regrole) IS
    'Lets grantee (and the roles that have its privileges) enqueue task; once a task has a grant, no other producer may. False when it was granted already.';

CREATE FUNCTION pdoflow.revoke_task(task text, grantee regrole)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    PERFORM pdoflow._check_task_grant(revoke_task.task, revoke_task.grantee);
    DELETE FROM pdoflow.task_privileges AS p
    WHERE p.task = revoke_task.task AND p.grantee = revoke_task.grantee;
    RETURN FOUND;
END
$$;

COMMENT ON FUNCTION pdoflow.revoke_task(text, regrole) IS
    'Takes back a grant of pdoflow.grant_task; when the task''s last grant goes, it is open to every producer again. False when there was no such grant.';

-- Whether the job id may run as a job of a granted task: its task has at
-- least one grant, and the role that enqueued it (enqueued_by) has the
-- privileges of a grantee or of pdoflow_admin now. Workers ask this right
-- before they run a job of a task that acts with their own powers (the
-- built-in shell), so that grants cover jobs enqueued before the task was
-- granted, before pdoflow recorded enqueuers (0.4.0), or by a role whose
-- grant was revoked since. False for a job that is not active. VOLATILE:
-- its query takes its snapshot after its lock on active_jobs, so that a
-- compaction it waited for does not hide the job (compaction.sql).
CREATE FUNCTION pdoflow.job_is_granted(id uuid)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
DECLARE
    job record;
BEGIN
    SELECT j.task, j.enqueued_by INTO job FROM pdoflow.active_jobs AS j WHERE j.id = job_is_granted.id;
    IF NOT FOUND THEN
        PERFORM pdoflow._require_active_jobs_in_snapshot();
        RETURN false;
    END IF;
    RETURN EXISTS (SELECT FROM pdoflow.task_privileges AS p WHERE p.task = job.task)
       AND EXISTS (SELECT FROM pg_catalog.pg_roles AS enqueuer
                   WHERE enqueuer.rolname = job.enqueued_by
                     AND pdoflow._may_enqueue(enqueuer.oid, job.task));
END
$$;

COMMENT ON FUNCTION pdoflow.job_is_granted(uuid) IS
    'Whether the active job id''s task has a grant held by the role that enqueued it (or that role is an admin): for workers, before they run jobs of tasks such as shell.';

CREATE VIEW pdoflow.task_grants AS
SELECT p.task, p.grantee, p.granted_by, p.granted_at
FROM pdoflow.task_privileges AS p;

COMMENT ON VIEW pdoflow.task_grants IS
    'Which roles may enqueue which task (pdoflow.grant_task). Tasks not listed are open to every producer.';
