-- Enqueueing: one job, or many in one statement.
--
-- Idle workers LISTEN on channel 'pdoflow'; each call notifies once per queue
-- that gained jobs it can run now (delayed jobs are announced when they fall
-- due, blocked ones when their parents release them).
--
-- A job may join a posting (see postings.sql) and depend on other jobs (see
-- dependencies.sql); jobs with neither take the short path.

-- New jobs: the one place that says what a new job's row holds, that
-- announces the queues where jobs can run at once, and that notes the new
-- queued jobs for the claim floors. Every SQL path that adds
-- jobs (_enqueue_general, both enqueue_many, submit_dag) decides where each
-- job starts, then calls this; the Rust enqueue's plain job is the same row
-- with no posting and no parents (pdoflow-ext/src/api/enqueue.rs, checked
-- against this function by tests/tests/enqueue_row.rs).
--
-- One job per element of ids. Every other array holds one value per job, or
-- a single value that every job takes (enqueue_many's shared options), or
-- is NULL when no job has that value. A job's run_at NULL means now. Its
-- parents are parents[first_parent : first_parent + parent_count - 1]:
-- jobs that share their parents share one slice.
--
-- unique_keys (one per job, never shared) and unique_for (per job, or one
-- for all) make unique jobs (unique_keys.sql): a job whose key another job
-- holds is not added. Returns the id each job ended up with: its own, or the
-- holder's. enqueued_by, when given, stands in for the calling role (the
-- sweeper enqueues a schedule's jobs as the schedule's owner).
-- concurrency_keys (per job, or one for all) are for per-key limits; a job
-- of a paused or limited queue is marked controlled (queue_controls.sql).
CREATE FUNCTION pdoflow._insert_jobs(
    ids             uuid[],
    tasks           text[],
    args            jsonb[],
    queues          text[],
    priorities      integer[],
    max_attempts    integer[],
    run_ats         timestamptz[],
    states          text[],
    posting         uuid      DEFAULT NULL,
    parents_pending integer[] DEFAULT NULL,
    parents         uuid[]    DEFAULT NULL,
    first_parents   integer[] DEFAULT NULL,
    parent_counts   integer[] DEFAULT NULL,
    modes           text[]    DEFAULT NULL,
    nodes           text[]    DEFAULT NULL,
    unique_keys     text[]    DEFAULT NULL,
    unique_for      interval[] DEFAULT NULL,
    enqueued_by     text      DEFAULT NULL,
    concurrency_keys text[]   DEFAULT NULL
) RETURNS uuid[]
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    -- Per job: the id it ends up with (see above).
    final_ids uuid[] := ids;
    n         integer := coalesce(cardinality(ids), 0);
    inserted  bigint;
    -- The queues whose jobs are marked controlled (queue_controls.sql).
    controlled_queues text[] := ARRAY(SELECT c.queue FROM pdoflow.queue_controls AS c
                                      WHERE c.released_at IS NULL);
BEGIN
    IF n = 0 THEN
        RETURN ids;  -- no jobs (the shared values alone would make a row below)
    END IF;
    IF unique_keys IS NOT NULL THEN
        final_ids := pdoflow._take_unique_keys(
            CASE WHEN cardinality(tasks) = 1 THEN array_fill(tasks[1], ARRAY[n]) ELSE tasks END,
            unique_keys,
            CASE WHEN cardinality(_insert_jobs.unique_for) = 1
                 THEN array_fill(_insert_jobs.unique_for[1], ARRAY[n]) ELSE _insert_jobs.unique_for END,
            ids);
    END IF;
    INSERT INTO pdoflow.active_jobs (id, posting, task, queue, priority, max_attempts, args, run_at,
                                     created_at, state, parents_pending, depends_on, dependency_mode,
                                     node, enqueued_by, unique_key, concurrency_key, controlled)
        SELECT j.id, j.posting, j.task, j.queue, j.priority, j.max_attempts, j.args,
               coalesce(j.run_at, now()), now(), j.state, j.pending,
               CASE WHEN j.parent_count > 0
                    THEN _insert_jobs.parents[j.first_parent : j.first_parent + j.parent_count - 1] END,
               j.mode, j.node, j.enqueued_by, j.unique_key, j.concurrency_key,
               j.queue = ANY (controlled_queues)
        FROM (
            -- Per job: its own element, or the value every job shares.
            SELECT e.id, coalesce(one.task, e.task) AS task, coalesce(one.args, e.args) AS args,
                   coalesce(one.queue, e.queue) AS queue, coalesce(one.priority, e.priority) AS priority,
                   coalesce(one.max_attempts, e.max_attempts) AS max_attempts,
                   coalesce(one.run_at, e.run_at) AS run_at, coalesce(one.state, e.state) AS state,
                   coalesce(one.pending, e.pending) AS pending,
                   coalesce(one.first_parent, e.first_parent) AS first_parent,
                   coalesce(one.parent_count, e.parent_count) AS parent_count,
                   coalesce(one.mode, e.mode) AS mode, coalesce(one.node, e.node) AS node,
                   one.posting, one.enqueued_by, e.unique_key, e.final_id,
                   coalesce(one.concurrency_key, e.concurrency_key) AS concurrency_key
            FROM (
                -- The shared values: arrays of one element. Worked out once
                -- (OFFSET 0 keeps the planner from doing it for every job).
                SELECT CASE WHEN cardinality(tasks) = 1 THEN tasks[1] END AS task,
                       CASE WHEN cardinality(_insert_jobs.args) = 1 THEN _insert_jobs.args[1] END AS args,
                       CASE WHEN cardinality(queues) = 1 THEN queues[1] END AS queue,
                       CASE WHEN cardinality(priorities) = 1 THEN priorities[1] END AS priority,
                       CASE WHEN cardinality(_insert_jobs.max_attempts) = 1
                            THEN _insert_jobs.max_attempts[1] END AS max_attempts,
                       CASE WHEN cardinality(run_ats) = 1 THEN run_ats[1] END AS run_at,
                       CASE WHEN cardinality(states) = 1 THEN states[1] END AS state,
                       CASE WHEN cardinality(_insert_jobs.parents_pending) = 1
                            THEN _insert_jobs.parents_pending[1] END AS pending,
                       CASE WHEN cardinality(first_parents) = 1 THEN first_parents[1] END AS first_parent,
                       CASE WHEN cardinality(parent_counts) = 1 THEN parent_counts[1] END AS parent_count,
                       CASE WHEN cardinality(modes) = 1 THEN modes[1] END AS mode,
                       CASE WHEN cardinality(nodes) = 1 THEN nodes[1] END AS node,
                       CASE WHEN cardinality(concurrency_keys) = 1 THEN concurrency_keys[1] END AS concurrency_key,
                       _insert_jobs.posting AS posting,
                       coalesce(_insert_jobs.enqueued_by, pdoflow._calling_role()) AS enqueued_by
                OFFSET 0
            ) AS one,
            ROWS FROM (unnest(ids), unnest(tasks), unnest(_insert_jobs.args), unnest(queues),
                       unnest(priorities), unnest(_insert_jobs.max_attempts), unnest(run_ats),
                       unnest(states), unnest(_insert_jobs.parents_pending), unnest(first_parents),
                       unnest(parent_counts), unnest(modes), unnest(nodes), unnest(unique_keys),
                       unnest(final_ids), unnest(concurrency_keys))
                 AS e(id, task, args, queue, priority, max_attempts, run_at, state, pending,
                      first_parent, parent_count, mode, node, unique_key, final_id, concurrency_key)
        ) AS j
        -- Not the jobs whose key another job holds.
        WHERE j.final_id = j.id;
    -- Counted for pdoflow.stats at commit (stats.sql): one call per statement.
    IF cardinality(queues) = 1 THEN
        GET DIAGNOSTICS inserted = ROW_COUNT;
        PERFORM pdoflow._count_jobs('enqueued', queues, inserted);
    ELSE
        PERFORM pdoflow._count_jobs('enqueued', ARRAY(
            SELECT d.queue FROM unnest(queues, ids, final_ids) AS d(queue, id, final_id)
            WHERE d.final_id = d.id));
    END IF;
    -- The levels (queue and priority) that gained queued jobs, read from the
    -- input rather than the rows (RETURNING would hold every row of a bulk
    -- insert), each with its earliest due time: noted for the claim floors
    -- (claim_floors.sql), and its queue announced if that time has come
    -- (the announcement board and NOTIFY keep one per queue).
    PERFORM pdoflow._note_queued(l.queue, l.priority, l.first_due, NULL),
            CASE WHEN l.first_due <= now() THEN pdoflow._announce(l.queue) END
    FROM (
        SELECT j.queue, j.priority, min(j.run_at) AS first_due
        FROM (
            SELECT coalesce(d.queue, CASE WHEN cardinality(queues) = 1 THEN queues[1] END) AS queue,
                   coalesce(d.priority, CASE WHEN cardinality(priorities) = 1 THEN priorities[1] END) AS priority,
                   coalesce(d.run_at, CASE WHEN cardinality(run_ats) = 1 THEN run_ats[1] END, now()) AS run_at,
                   coalesce(d.state, CASE WHEN cardinality(states) = 1 THEN states[1] END) AS state
            FROM ROWS FROM (unnest(queues), unnest(priorities), unnest(run_ats), unnest(states),
                            unnest(ids), unnest(final_ids))
                 AS d(queue, priority, run_at, state, id, final_id)
            WHERE d.final_id = d.id
        ) AS j
        WHERE j.state = 'queued'
        GROUP BY j.queue, j.priority
    ) AS l;
    RETURN final_ids;
END
$$;

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
-- pdoflow-ext/src/api/enqueue.rs): jobs in a posting, with parents, with a
-- unique key that has a row already (held, or to be taken over), of a task
-- whose args must be checked, and every call while
-- pdoflow.require_registered_tasks is on.
-- Called by enqueue only, after its input and privilege checks. It pins
-- the search_path that enqueue itself does not (see there).
CREATE FUNCTION pdoflow._enqueue_general(
    task            text,
    args            jsonb,
    queue           text,
    priority        integer,
    run_at          timestamptz,
    max_attempts    integer,
    posting         uuid,
    depends_on      uuid[],
    dependency_mode text,
    unique_key      text     DEFAULT NULL,
    unique_for      interval DEFAULT NULL,
    concurrency_key text     DEFAULT NULL
) RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    job_id uuid := pdoflow.uuid_generate_v7();
    place  record;
BEGIN
    IF pdoflow._task_checks_needed() THEN
        PERFORM pdoflow._check_task_args(_enqueue_general.task, ARRAY[_enqueue_general.args], ARRAY['args']);
    END IF;
    SELECT * INTO place
    FROM pdoflow._new_job_placement(_enqueue_general.queue, _enqueue_general.priority,
                                    _enqueue_general.posting, _enqueue_general.depends_on,
                                    _enqueue_general.dependency_mode);
    RETURN (pdoflow._insert_jobs(
        ARRAY[job_id], ARRAY[_enqueue_general.task], ARRAY[_enqueue_general.args], ARRAY[place.job_queue],
        ARRAY[place.job_priority], ARRAY[_enqueue_general.max_attempts], ARRAY[_enqueue_general.run_at],
        ARRAY[place.job_state], _enqueue_general.posting,
        parents_pending => ARRAY[place.pending], parents => place.parents, first_parents => ARRAY[1],
        parent_counts => ARRAY[cardinality(place.parents)], modes => ARRAY[place.mode],
        unique_keys => CASE WHEN _enqueue_general.unique_key IS NOT NULL THEN ARRAY[_enqueue_general.unique_key] END,
        unique_for => ARRAY[_enqueue_general.unique_for],
        concurrency_keys => ARRAY[_enqueue_general.concurrency_key]))[1];
END
$$;

-- One job. Written in Rust (pdoflow-ext/src/api/enqueue.rs): it checks its
-- input, then inserts the common job (no posting, no parents, no args
-- schema) with one INSERT whose plan the session keeps, and hands the rest
-- to _enqueue_general. A PL/pgSQL version spent as long around the INSERT
-- as in it.
--
-- The one SECURITY DEFINER function without a pinned search_path: setting
-- and restoring it around every call cost single-job enqueue 8% of its rate
-- (docs/benchmarks.md, 0.9.0). It needs none: it resolves no name through
-- the caller's search_path. Every statement it runs names its schema, its
-- operators (OPERATOR(pg_catalog.=)) and its parameters' types
-- (pdoflow-ext/src/api/enqueue.rs, tasks/registered_tasks.rs), and the
-- general path calls pdoflow._enqueue_general, which pins it for itself and
-- the helpers it calls. tests/tests/roles.rs tries a caller's schema that
-- shadows the operators on every path.
CREATE FUNCTION pdoflow.enqueue(
    task            text,
    args            jsonb       DEFAULT '{}',
    queue           text        DEFAULT 'default',
    priority        integer     DEFAULT 0,
    run_at          timestamptz DEFAULT NULL,
    max_attempts    integer     DEFAULT 5,
    posting         uuid        DEFAULT NULL,
    depends_on      uuid[]      DEFAULT NULL,
    dependency_mode text        DEFAULT 'all',
    unique_key      text        DEFAULT NULL,
    unique_for      interval    DEFAULT NULL,
    concurrency_key text        DEFAULT NULL
) RETURNS uuid
LANGUAGE c VOLATILE
SECURITY DEFINER
AS 'MODULE_PATHNAME', 'enqueue_wrapper';

COMMENT ON FUNCTION pdoflow.enqueue(text, jsonb, text, integer, timestamptz, integer, uuid, uuid[], text, text, interval, text) IS
    'Adds one job and returns its id. run_at NULL means now. With depends_on it waits (blocked) until all, or any, of those jobs succeeded. With unique_key, a job of the same task holding that key (blocked, queued, running, or succeeded within unique_for) is returned instead of a new one. concurrency_key names the key of the queue''s per-key limit.';

-- Many jobs of one task: one job per element of args, ids returned in args
-- order. They share every other option, parents included, except their
-- unique keys: unique_keys holds one per element of args (NULL elements:
-- no key), and a job whose key is held returns the holder's id; and their
-- concurrency keys, one per element of args too.
CREATE FUNCTION pdoflow.enqueue_many(
    task            text,
    args            jsonb[],
    queue           text        DEFAULT 'default',
    priority        integer     DEFAULT 0,
    run_at          timestamptz DEFAULT NULL,
    max_attempts    integer     DEFAULT 5,
    posting         uuid        DEFAULT NULL,
    depends_on      uuid[]      DEFAULT NULL,
    dependency_mode text        DEFAULT 'all',
    unique_keys     text[]      DEFAULT NULL,
    unique_for      interval    DEFAULT NULL,
    concurrency_keys text[]     DEFAULT NULL
) RETURNS TABLE (id uuid)
LANGUAGE plpgsql VOLATILE ROWS 1000
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    job_ids uuid[];
    place   record;
    n       integer := cardinality(enqueue_many.args);
BEGIN
    PERFORM pdoflow._check_job_batch(enqueue_many.task, enqueue_many.args, enqueue_many.queue,
                                     enqueue_many.priority, enqueue_many.run_at, enqueue_many.max_attempts);
    PERFORM pdoflow._check_unique_keys(enqueue_many.unique_keys, enqueue_many.unique_for, n);
    PERFORM pdoflow._check_concurrency_keys(enqueue_many.concurrency_keys, n);
    PERFORM pdoflow._check_task_grants(ARRAY[enqueue_many.task]);
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
    job_ids := pdoflow._uuid_v7_array(n);
    -- The options every job shares go as one-element arrays.
    job_ids := pdoflow._insert_jobs(
        job_ids, ARRAY[enqueue_many.task], enqueue_many.args, ARRAY[place.job_queue], ARRAY[place.job_priority],
        ARRAY[enqueue_many.max_attempts], ARRAY[enqueue_many.run_at], ARRAY[place.job_state],
        enqueue_many.posting,
        parents_pending => ARRAY[place.pending], parents => place.parents, first_parents => ARRAY[1],
        parent_counts => ARRAY[cardinality(place.parents)], modes => ARRAY[place.mode],
        unique_keys => enqueue_many.unique_keys, unique_for => ARRAY[enqueue_many.unique_for],
        concurrency_keys => enqueue_many.concurrency_keys);
    RETURN QUERY SELECT unnest(job_ids);
END
$$;

COMMENT ON FUNCTION pdoflow.enqueue_many(text, jsonb[], text, integer, timestamptz, integer, uuid, uuid[], text, text[], interval, text[]) IS
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
    job_ids      uuid[];
    job          jsonb;
    keep_param   text;
    one_by_one   boolean;
    checks       boolean;
    tasks        text[];
    job_args     jsonb[];
    queues       text[];
    priorities   integer[];
    attempts     integer[];
    run_ats      timestamptz[];
    keys         text[];
    keep_for     interval[];
    limit_keys   text[];
BEGIN
    -- Jobs with postings or parents need locks and lookups each: one enqueue
    -- call per job, in order. So does a document of one job (the Rust
    -- client's single enqueue): enqueue's own plain insert is the quickest
    -- way in for it. The document is checked whole first, either way.
    one_by_one := pdoflow._check_job_list(enqueue_many.jobs::text);
    one_by_one := one_by_one OR jsonb_array_length(enqueue_many.jobs) = 1;
    checks := pdoflow._task_checks_needed();
    -- Every task's grants before anything else about it (enqueue checks a
    -- job's grants too, so one by one they are checked here only ahead of
    -- the args), then the args against their tasks' schemas, naming each
    -- job by its place in the document.
    IF checks OR NOT one_by_one THEN
        PERFORM pdoflow._check_task_grants(array_agg(DISTINCT e.job ->> 'task'))
        FROM jsonb_array_elements(enqueue_many.jobs) AS e(job);
    END IF;
    IF checks THEN
        PERFORM pdoflow._check_task_args(t.task, t.args, t.params)
        FROM (
            SELECT e.job ->> 'task' AS task,
                   array_agg(coalesce(nullif(e.job -> 'args', 'null'::jsonb), '{}'::jsonb) ORDER BY e.n) AS args,
                   array_agg(format('jobs[%s].args', e.n - 1) ORDER BY e.n) AS params
            FROM jsonb_array_elements(enqueue_many.jobs) WITH ORDINALITY AS e(job, n)
            GROUP BY 1
        ) AS t;
    END IF;
    IF one_by_one THEN
        job_ids := '{}';
        FOR job, keep_param IN
            SELECT e.job, format('jobs[%s].unique_for', e.n - 1)
            FROM jsonb_array_elements(enqueue_many.jobs) WITH ORDINALITY AS e(job, n)
        LOOP
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
                dependency_mode => coalesce(job ->> 'dependency_mode', 'all'),
                unique_key      => job ->> 'unique_key',
                unique_for      => pdoflow._unique_for(job ->> 'unique_for', keep_param),
                concurrency_key => job ->> 'concurrency_key');
        END LOOP;
        RETURN QUERY SELECT unnest(job_ids);
        RETURN;
    END IF;
    -- One pass over the document: every array gets its elements in the same
    -- order, each job's beside its id (ROWS FROM pairs them).
    SELECT array_agg(spec.id),
           array_agg(spec.job ->> 'task'),
           array_agg(coalesce(nullif(spec.job -> 'args', 'null'::jsonb), '{}'::jsonb)),
           array_agg(coalesce(spec.job ->> 'queue', 'default')),
           array_agg(coalesce(nullif(spec.job -> 'priority', 'null')::integer, 0)),
           array_agg(coalesce(nullif(spec.job -> 'max_attempts', 'null')::integer, 5)),
           array_agg((spec.job ->> 'run_at')::timestamptz),
           array_agg(spec.job ->> 'unique_key'),
           array_agg(pdoflow._unique_for(spec.job ->> 'unique_for', format('jobs[%s].unique_for', spec.n - 1))),
           array_agg(spec.job ->> 'concurrency_key')
    INTO job_ids, tasks, job_args, queues, priorities, attempts, run_ats, keys, keep_for, limit_keys
    FROM ROWS FROM (jsonb_array_elements(enqueue_many.jobs),
                    unnest(pdoflow._uuid_v7_array(jsonb_array_length(enqueue_many.jobs))))
         WITH ORDINALITY AS spec(job, id, n);
    IF job_ids IS NOT NULL THEN
        job_ids := pdoflow._insert_jobs(job_ids, tasks, job_args, queues, priorities, attempts, run_ats,
                                        ARRAY['queued'],
                                        unique_keys => CASE WHEN cardinality(array_remove(keys, NULL)) > 0 THEN keys END,
                                        unique_for => keep_for,
                                        concurrency_keys => CASE WHEN cardinality(array_remove(limit_keys, NULL)) > 0
                                                                 THEN limit_keys END);
    END IF;
    -- The ids in the document's order.
    RETURN QUERY SELECT unnest(job_ids);
END
$$;

COMMENT ON FUNCTION pdoflow.enqueue_many(jsonb) IS
    'Adds the jobs described by a JSON array of objects with enqueue''s parameters as keys; returns the ids in array order.';
