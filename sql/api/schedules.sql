-- Cron schedules: jobs enqueued by the sweeper at the times a cron pattern
-- names (patterns and time zones: pdoflow-ext/src/schedules/mod.rs).
--
-- Each occurrence is enqueued exactly once: the sweeper locks the schedule,
-- adds the job and moves next_run_at past the occurrence in one
-- transaction. A crash before its commit loses both, and the next sweep
-- enqueues the occurrence again; after the commit, both are there (on a
-- standby promoted after failover too, as far as the commit reached it).
--
-- After downtime (the server down, the sweeper stopped) missed occurrences
-- are not replayed one by one: a schedule with catch_up (the default) runs
-- one job for the latest of them, as soon as it can; without catch_up it
-- skips an occurrence found more than a minute late and waits for the next
-- one. A paused schedule misses nothing it owes: when it is resumed it
-- continues from its next occurrence after the resume.
--
-- Producers manage schedules. A schedule's jobs are enqueued as the role
-- that created (or last replaced) it, its owner: under that role's task
-- grants, checked again at every run, with enqueued_by naming it. Only its
-- owner (or a member of the owner role) and admins may replace, pause,
-- resume or remove a schedule.

-- Raises unless the calling role may change the schedule owned by owner.
CREATE FUNCTION pdoflow._check_schedule_owner(schedule_name text, owner regrole)
RETURNS void
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    IF pg_catalog.pg_has_role(pdoflow._calling_role(), 'pdoflow_admin', 'MEMBER') THEN
        RETURN;
    END IF;
    -- (An owner dropped since leaves the schedule to admins.)
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles AS r WHERE r.oid = owner::oid)
       OR NOT pg_catalog.pg_has_role(pdoflow._calling_role(), owner::oid, 'MEMBER') THEN
        RAISE EXCEPTION 'schedule "%" belongs to role %; % may not change it', schedule_name, owner,
            pdoflow._calling_role()
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Only the role that created a schedule, its members and pdoflow_admin may change it.';
    END IF;
END
$$;

-- The schedule named name, locked, or an error naming it.
CREATE FUNCTION pdoflow._schedule_for_change(schedule_name text)
RETURNS pdoflow.cron_schedules
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    locked pdoflow.cron_schedules;
BEGIN
    SELECT * INTO locked FROM pdoflow.cron_schedules AS s WHERE s.name = schedule_name FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'schedule "%" does not exist', schedule_name
            USING ERRCODE = 'no_data_found',
                  HINT = 'SELECT name FROM pdoflow.schedules lists the schedules.';
    END IF;
    PERFORM pdoflow._check_schedule_owner(schedule_name, locked.owner);
    RETURN locked;
END
$$;

CREATE FUNCTION pdoflow.schedule(
    name         text,
    cron         text,
    task         text,
    args         jsonb   DEFAULT '{}',
    queue        text    DEFAULT 'default',
    priority     integer DEFAULT 0,
    max_attempts integer DEFAULT 5,
    time_zone    text    DEFAULT 'UTC',
    catch_up     boolean DEFAULT true
) RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    existing pdoflow.cron_schedules;
    caller   regrole := (SELECT r.oid FROM pg_catalog.pg_roles AS r WHERE r.rolname = pdoflow._calling_role())::regrole;
BEGIN
    PERFORM pdoflow._check_schedule_name(schedule.name);
    PERFORM pdoflow._check_job_batch(schedule.task, ARRAY[schedule.args], schedule.queue, schedule.priority,
                                     NULL, schedule.max_attempts);
    PERFORM pdoflow._check_schedule(schedule.cron, schedule.time_zone);
    IF schedule.catch_up IS NULL THEN
        RAISE EXCEPTION 'catch_up must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM pdoflow._check_task_grants(ARRAY[schedule.task]);
    IF pdoflow._task_checks_needed() THEN
        PERFORM pdoflow._check_task_args(schedule.task, ARRAY[schedule.args]);
    END IF;
    SELECT * INTO existing FROM pdoflow.cron_schedules AS s WHERE s.name = schedule.name FOR UPDATE;
    IF FOUND THEN
        PERFORM pdoflow._check_schedule_owner(schedule.name, existing.owner);
    END IF;
    -- A replaced schedule keeps its history; its next run follows the new
    -- pattern from now.
    INSERT INTO pdoflow.cron_schedules AS s (name, cron, time_zone, task, args, queue, priority, max_attempts,
                                             catch_up, owner, next_run_at)
    VALUES (schedule.name, schedule.cron, schedule.time_zone, schedule.task, schedule.args, schedule.queue,
            schedule.priority, schedule.max_attempts, schedule.catch_up, caller,
            pdoflow._cron_next(schedule.cron, schedule.time_zone, now()))
    ON CONFLICT ON CONSTRAINT cron_schedules_pkey DO UPDATE
    SET cron = excluded.cron, time_zone = excluded.time_zone, task = excluded.task, args = excluded.args,
        queue = excluded.queue, priority = excluded.priority, max_attempts = excluded.max_attempts,
        catch_up = excluded.catch_up, owner = excluded.owner, next_run_at = excluded.next_run_at,
        updated_at = now(), last_error = NULL;
END
$$;

COMMENT ON FUNCTION pdoflow.schedule(text, text, text, jsonb, text, integer, integer, text, boolean) IS
    'Creates or replaces the cron schedule name: the sweeper enqueues a job of task with args at every occurrence of cron in time_zone.';

CREATE FUNCTION pdoflow.unschedule(name text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    existing pdoflow.cron_schedules;
BEGIN
    PERFORM pdoflow._check_schedule_name(unschedule.name);
    SELECT * INTO existing FROM pdoflow.cron_schedules AS s WHERE s.name = unschedule.name FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM pdoflow._check_schedule_owner(unschedule.name, existing.owner);
    DELETE FROM pdoflow.cron_schedules AS s WHERE s.name = unschedule.name;
    RETURN true;
END
$$;

COMMENT ON FUNCTION pdoflow.unschedule(text) IS
    'Removes the schedule name (jobs it enqueued stay); false when there is none.';

CREATE FUNCTION pdoflow.pause_schedule(name text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
DECLARE
    locked pdoflow.cron_schedules;
BEGIN
    PERFORM pdoflow._check_schedule_name(pause_schedule.name);
    locked := pdoflow._schedule_for_change(pause_schedule.name);
    IF locked.paused THEN
        RETURN false;
    END IF;
    UPDATE pdoflow.cron_schedules AS s SET paused = true, updated_at = now()
    WHERE s.name = pause_schedule.name;
    RETURN true;
END
$$;

COMMENT ON FUNCTION pdoflow.pause_schedule(text) IS
    'Pauses the schedule name: no jobs until it is resumed. False when it was paused already.';

-- Resuming starts again from the next occurrence after now: what fell due
-- while paused is not run.
CREATE FUNCTION pdoflow.resume_schedule(name text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
DECLARE
    locked pdoflow.cron_schedules;
BEGIN
    PERFORM pdoflow._check_schedule_name(resume_schedule.name);
    locked := pdoflow._schedule_for_change(resume_schedule.name);
    IF NOT locked.paused THEN
        RETURN false;
    END IF;
    UPDATE pdoflow.cron_schedules AS s
    SET paused = false, updated_at = now(),
        next_run_at = pdoflow._cron_next(s.cron, s.time_zone, now())
    WHERE s.name = resume_schedule.name;
    RETURN true;
END
$$;

COMMENT ON FUNCTION pdoflow.resume_schedule(text) IS
    'Resumes the paused schedule name from its next occurrence; false when it was not paused.';

-- Enqueues the due occurrences of up to max_schedules schedules (one job
-- each, see the policy above) and moves them on. Schedules locked by a
-- change in progress wait for the next sweep. Returns how many jobs it
-- enqueued. A sweep step.
CREATE FUNCTION pdoflow._run_due_schedules(max_schedules integer)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
DECLARE
    due        pdoflow.cron_schedules;
    occurrence timestamptz;
    job_id     uuid;
    problem    text;
    enqueued   bigint := 0;
BEGIN
    FOR due IN
        SELECT * FROM pdoflow.cron_schedules AS s
        WHERE NOT s.paused AND s.next_run_at <= now()
        ORDER BY s.next_run_at
        LIMIT max_schedules
        FOR UPDATE SKIP LOCKED
    LOOP
        -- The latest occurrence that is due: next_run_at itself, or a
        -- later one when the sweeper was away.
        occurrence := greatest(due.next_run_at, pdoflow._cron_latest(due.cron, due.time_zone, now()));
        job_id := NULL;
        problem := NULL;
        IF NOT due.catch_up AND occurrence < now() - interval '1 minute' THEN
            problem := format('skipped the occurrence at %s: found %s late, and the schedule does not catch up',
                              occurrence, date_trunc('second', now() - occurrence));
        ELSIF NOT EXISTS (SELECT FROM pg_catalog.pg_roles AS r WHERE r.oid = due.owner::oid) THEN
            problem := format('its owner (role oid %s) no longer exists: replace the schedule as another role, or remove it',
                              due.owner::oid);
        ELSIF NOT pdoflow._may_enqueue(due.owner::oid, due.task) THEN
            problem := format('role %s may not enqueue task "%s" (see pdoflow.task_grants)', due.owner, due.task);
        ELSE
            BEGIN
                -- The task's registration may have changed since.
                IF pdoflow._task_checks_needed() THEN
                    PERFORM pdoflow._check_task_args(due.task, ARRAY[due.args]);
                END IF;
                job_id := (pdoflow._insert_jobs(
                    ARRAY[pdoflow.uuid_generate_v7()], ARRAY[due.task::text], ARRAY[due.args],
                    ARRAY[due.queue::text], ARRAY[due.priority], ARRAY[due.max_attempts], ARRAY[occurrence],
                    ARRAY['queued'], enqueued_by => pg_catalog.pg_get_userbyid(due.owner)))[1];
                enqueued := enqueued + 1;
            EXCEPTION WHEN data_exception OR integrity_constraint_violation OR insufficient_privilege THEN
                problem := SQLERRM;
            END;
        END IF;
        IF problem IS NOT NULL THEN
            RAISE WARNING 'pdoflow: schedule "%" did not enqueue a job: %', due.name, problem;
        END IF;
        UPDATE pdoflow.cron_schedules AS s
        SET next_run_at = pdoflow._cron_next(s.cron, s.time_zone, greatest(occurrence, now())),
            last_run_at = CASE WHEN job_id IS NOT NULL THEN occurrence ELSE s.last_run_at END,
            last_job = coalesce(job_id, s.last_job),
            last_error = problem
        WHERE s.name = due.name;
    END LOOP;
    RETURN enqueued;
END
$$;
