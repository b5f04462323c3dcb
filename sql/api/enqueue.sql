-- Enqueueing: one job, or many in one statement.
--
-- Idle workers LISTEN on channel 'pdoflow'; each call notifies once per queue
-- that gained jobs it can run now (delayed jobs are announced when they fall
-- due, blocked ones when their parents release them).
--
-- A job may join a posting (see postings.sql) and depend on other jobs (see
-- dependencies.sql); jobs with neither take the short path.

-- Where a new job of a posting and with parents starts, and in which queue
-- and priority: a posting's queue and priority stand in for enqueue's
-- defaults. Locks the posting and the parents (see their functions).
CREATE FUNCTION pdoflow._new_job_placement(
    queue           text,
    priority        integer,
    posting         uuid,
    depends_on      uuid[],
    dependency_mode text,
    OUT job_queue    text,
    OUT job_priority integer,
    OUT job_state    text,
    OUT pending      integer,
    OUT parents      uuid[],
    OUT mode         text
)
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    posting_row record;
    dependency  record;
BEGIN
    PERFORM pdoflow._check_dependencies(depends_on, dependency_mode);
    job_queue := queue;
    job_priority := priority;
    job_state := 'queued';
    IF posting IS NOT NULL THEN
        SELECT * INTO posting_row FROM pdoflow._posting_for_new_jobs(posting);
        IF job_queue = 'default' THEN
            job_queue := coalesce(posting_row.queue, job_queue);
        END IF;
        IF job_priority = 0 THEN
            job_priority := coalesce(posting_row.priority, job_priority);
        END IF;
        job_state := pdoflow._waiting_state(posting_row.status);
    END IF;
    SELECT array_agg(DISTINCT p) INTO parents FROM unnest(depends_on) AS p;
    IF parents IS NOT NULL THEN
        mode := dependency_mode;
        SELECT * INTO dependency FROM pdoflow._dependency_state(parents, mode);
        pending := dependency.pending;
        IF dependency.state = 'blocked' THEN
            job_state := 'blocked';
        END IF;
    END IF;
END
$$;

-- pdoflow.enqueue for the jobs its fast path leaves (see
-- pdoflow-ext/src/api/enqueue.rs): jobs in a posting, with parents, of a task whose args must be
-- checked, and every call while pdoflow.require_registered_tasks is on.
-- Called by enqueue only, after its input and privilege checks.
CREATE FUNCTION pdoflow._enqueue_general(
    task            text,
    args            jsonb,
    queue           text,
    priority        integer,
    run_at          timestamptz,
    max_attempts    integer,
    posting         uuid,
    depends_on      uuid[],
    dependency_mode text
) RETURNS uuid
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
DECLARE
    job_id uuid := pdoflow.uuid_generate_v7();
    due_at timestamptz := coalesce(_enqueue_general.run_at, now());
    place  record;
BEGIN
    IF pdoflow._task_checks_needed() THEN
        PERFORM pdoflow._check_task_args(_enqueue_general.task, ARRAY[_enqueue_general.args], ARRAY['args']);
    END IF;
    SELECT * INTO place
    FROM pdoflow._new_job_placement(_enqueue_general.queue, _enqueue_general.priority,
                                    _enqueue_general.posting, _enqueue_general.depends_on,
                                    _enqueue_general.dependency_mode);
    INSERT INTO pdoflow.active_jobs (id, posting, task, queue, priority, max_attempts, args, run_at,
                                     created_at, state, parents_pending, depends_on, dependency_mode,
                                     enqueued_by)
    VALUES (job_id, _enqueue_general.posting, _enqueue_general.task, place.job_queue, place.job_priority,
            _enqueue_general.max_attempts, _enqueue_general.args, due_at, now(), place.job_state,
            place.pending, place.parents, place.mode, pdoflow._calling_role());
    IF place.job_state = 'queued' AND due_at <= now() THEN
        PERFORM pdoflow._announce(place.job_queue);
    END IF;
    RETURN job_id;
END
$$;

-- One job. Written in Rust (pdoflow-ext/src/api/enqueue.rs): it checks its
-- input, then inserts the common job (no posting, no parents, no args
-- schema) with one INSERT whose plan the session keeps, and hands the rest
-- to _enqueue_general. A PL/pgSQL version spent as long around the INSERT
-- as in it.
CREATE FUNCTION pdoflow.enqueue(
    task            text,
    args            jsonb       DEFAULT '{}',
    queue           text        DEFAULT 'default',
    priority        integer     DEFAULT 0,
    run_at          timestamptz DEFAULT NULL,
    max_attempts    integer     DEFAULT 5,
    posting         uuid        DEFAULT NULL,
    depends_on      uuid[]      DEFAULT NULL,
    dependency_mode text        DEFAULT 'all'
) RETURNS uuid
LANGUAGE c VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS 'MODULE_PATHNAME', 'enqueue_wrapper';

COMMENT ON FUNCTION pdoflow.enqueue(text, jsonb, text, integer, timestamptz, integer, uuid, uuid[], text) IS
    'Adds one job and returns its id. run_at NULL means now. With depends_on it waits (blocked) until all, or any, of those jobs succeeded.';

-- Many jobs of one task: one job per element of args, ids returned in args
-- order. They share every other option, parents included.
CREATE FUNCTION pdoflow.enqueue_many(
    task            text,
    args            jsonb[],
    queue           text        DEFAULT 'default',
    priority        integer     DEFAULT 0,
    run_at          timestamptz DEFAULT NULL,
    max_attempts    integer     DEFAULT 5,
    posting         uuid        DEFAULT NULL,
    depends_on      uuid[]      DEFAULT NULL,
    dependency_mode text        DEFAULT 'all'
) RETURNS TABLE (id uuid)
LANGUAGE plpgsql VOLATILE ROWS 1000
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    job_ids uuid[];
    due_at  timestamptz := coalesce(enqueue_many.run_at, now());
    place   record;
    enqueuer text;
BEGIN
    PERFORM pdoflow._check_job_batch(enqueue_many.task, enqueue_many.args, enqueue_many.queue,
                                     enqueue_many.priority, enqueue_many.run_at, enqueue_many.max_attempts);
    PERFORM pdoflow._check_task_grants(ARRAY[enqueue_many.task]);
    enqueuer := pdoflow._calling_role();
    IF pdoflow._task_checks_needed() THEN
        PERFORM pdoflow._check_task_args(enqueue_many.task, enqueue_many.args);
    END IF;
    IF enqueue_many.posting IS NULL AND enqueue_many.depends_on IS NULL
       AND enqueue_many.dependency_mode = 'all' THEN
        SELECT enqueue_many.queue AS job_queue, enqueue_many.priority AS job_priority,
               'queued'::text AS job_state, NULL::integer AS pending, NULL::uuid[] AS parents,
               NULL::text AS mode
        INTO place;
    ELSE
        SELECT * INTO place
        FROM pdoflow._new_job_placement(enqueue_many.queue, enqueue_many.priority, enqueue_many.posting,
                                        enqueue_many.depends_on, enqueue_many.dependency_mode);
    END IF;
    job_ids := pdoflow._uuid_v7_array(cardinality(enqueue_many.args));
    INSERT INTO pdoflow.active_jobs (id, posting, task, queue, priority, max_attempts, args, run_at,
                                     created_at, state, parents_pending, depends_on, dependency_mode,
                                     enqueued_by)
    SELECT new.id, enqueue_many.posting, enqueue_many.task, place.job_queue, place.job_priority,
           enqueue_many.max_attempts, new.args, due_at, now(), place.job_state, place.pending,
           place.parents, place.mode, enqueuer
    FROM unnest(job_ids, enqueue_many.args) AS new(id, args);
    IF place.job_state = 'queued' AND due_at <= now() AND cardinality(job_ids) > 0 THEN
        PERFORM pdoflow._announce(place.job_queue);
    END IF;
    RETURN QUERY SELECT unnest(job_ids);
END
$$;

COMMENT ON FUNCTION pdoflow.enqueue_many(text, jsonb[], text, integer, timestamptz, integer, uuid, uuid[], text) IS
    'Adds one job of the given task per element of args, in one statement; returns the ids in args order.';

-- Many jobs, each with its own options: a JSON array of objects whose keys are
-- enqueue's parameters (task required; a missing or null key takes enqueue's default).
CREATE FUNCTION pdoflow.enqueue_many(jobs jsonb)
RETURNS TABLE (id uuid)
LANGUAGE plpgsql VOLATILE ROWS 1000
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    job_ids  uuid[];
    notified bigint;
    job      jsonb;
    enqueuer text;
BEGIN
    -- Jobs with postings or parents need locks and lookups each: one enqueue
    -- call per job, in order (enqueue checks each task's grants).
    IF pdoflow._check_job_list(enqueue_many.jobs::text) THEN
        job_ids := '{}';
        FOR job IN SELECT jsonb_array_elements(enqueue_many.jobs) LOOP
            job_ids := job_ids || pdoflow.enqueue(
                task            => job ->> 'task',
                args            => coalesce(nullif(job -> 'args', 'null'::jsonb), '{}'::jsonb),
                queue           => coalesce(job ->> 'queue', 'default'),
                priority        => coalesce(nullif(job -> 'priority', 'null')::integer, 0),
                run_at          => (job ->> 'run_at')::timestamptz,
                max_attempts    => coalesce(nullif(job -> 'max_attempts', 'null')::integer, 5),
                posting         => (job ->> 'posting')::uuid,
                depends_on      => (SELECT array_agg(p::uuid)
                                    FROM jsonb_array_elements_text(nullif(job -> 'depends_on', 'null'::jsonb)) AS p),
                dependency_mode => coalesce(job ->> 'dependency_mode', 'all'));
        END LOOP;
        RETURN QUERY SELECT unnest(job_ids);
        RETURN;
    END IF;
    PERFORM pdoflow._check_task_grants(array_agg(DISTINCT e.job ->> 'task'))
    FROM jsonb_array_elements(enqueue_many.jobs) AS e(job);
    enqueuer := pdoflow._calling_role();
    IF pdoflow._task_checks_needed() THEN
        PERFORM pdoflow._check_task_args(t.task, t.args, t.params)
        FROM (
            SELECT e.job ->> 'task' AS task,
                   array_agg(coalesce(nullif(e.job -> 'args', 'null'::jsonb), '{}'::jsonb) ORDER BY e.n) AS args,
                   array_agg(format('jobs[%s].args', e.n - 1) ORDER BY e.n) AS params
            FROM jsonb_array_elements(enqueue_many.jobs) WITH ORDINALITY AS e(job, n)
            GROUP BY 1
        ) AS t;
    END IF;
    job_ids := pdoflow._uuid_v7_array(jsonb_array_length(enqueue_many.jobs));
    WITH new AS (
        INSERT INTO pdoflow.active_jobs (id, task, queue, priority, max_attempts, args, run_at, created_at,
                                         enqueued_by)
        SELECT spec.id,
               spec.job ->> 'task',
               coalesce(spec.job ->> 'queue', 'default'),
               coalesce(nullif(spec.job -> 'priority', 'null')::integer, 0),
               coalesce(nullif(spec.job -> 'max_attempts', 'null')::integer, 5),
               coalesce(nullif(spec.job -> 'args', 'null'::jsonb), '{}'::jsonb),
               coalesce((spec.job ->> 'run_at')::timestamptz, now()),
               now(),
               enqueuer
        FROM ROWS FROM (jsonb_array_elements(enqueue_many.jobs), unnest(job_ids)) AS spec(job, id)
        RETURNING queue, run_at
    )
    SELECT count(pdoflow._announce(due.queue)) INTO notified
    FROM (SELECT DISTINCT new.queue FROM new WHERE new.run_at <= now()) AS due;
    RETURN QUERY SELECT unnest(job_ids);
END
$$;

COMMENT ON FUNCTION pdoflow.enqueue_many(jsonb) IS
    'Adds the jobs described by a JSON array of objects with enqueue''s parameters as keys; returns the ids in array order.';
