-- pdoflow 0.2.0 -> 0.3.0 (ALTER EXTENSION pdoflow UPDATE TO '0.3.0').
--
-- Performance (issue 7):
-- * Enqueues announce work through the database's sweeper after they
--   commit (pdoflow.notify = coalesced, the default), so that concurrent
--   producers no longer commit one at a time behind NOTIFY's lock. Every
--   pg_notify of the API functions becomes pdoflow._announce.
-- * finish_many finds its claims by primary key whatever the statistics say,
--   and looks up why a claim was rejected only for rejected claims.
-- * Finishing skips the search for children while no job is blocked (new
--   index active_jobs_blocked_any_idx).
-- * _task_checks_needed and _parent_results are PL/pgSQL, so that their
--   plans are kept for the session.
-- * enqueue is a Rust function (same signature) that inserts a plain job with
--   one kept plan; other jobs go through the new _enqueue_general. Its input
--   checks are part of it, so _check_job goes.
-- * A trigger on tasks lets sessions keep a copy of the registrations, so
--   that enqueue's fast path does not read the table at every call.
-- * active_jobs has no CHECK constraints any more; check_consistency reports
--   rows that break their rules.
\echo Use "ALTER EXTENSION pdoflow UPDATE" to load this file. \quit

CREATE FUNCTION pdoflow."_announce"(
	"queue" TEXT /* & str */
) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'announce_wrapper';
REVOKE ALL ON FUNCTION pdoflow._announce(text) FROM PUBLIC;

-- Whether any job waits for parents at all: finishing a batch skips the
-- search for children (above) while none does, the common case.
CREATE INDEX active_jobs_blocked_any_idx
    ON pdoflow.active_jobs (id)
    WHERE state = 'blocked';

-- sql/api/cancel_retry.sql: changed
CREATE OR REPLACE FUNCTION pdoflow.retry(id uuid)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    job        record;
    new_state  text;
    pending    integer;
    dependency record;
    posting    record;
BEGIN
    PERFORM pdoflow._check_job_id(retry.id);
    -- A concurrent cancel or finish can move the job into history between our
    -- looks; a second round sees where it landed.
    FOR round IN 1..2 LOOP
        SELECT f.* INTO job FROM pdoflow.finished_jobs AS f WHERE f.id = retry.id FOR UPDATE;
        IF FOUND THEN
            IF job.state = 'succeeded' THEN
                RAISE EXCEPTION 'job % succeeded and cannot be retried', retry.id
                    USING ERRCODE = 'object_not_in_prerequisite_state',
                          HINT = 'Only failed or cancelled jobs can be retried; enqueue a new job to run it again.';
            END IF;
            new_state := 'queued';
            pending := NULL;
            IF job.posting IS NOT NULL THEN
                SELECT * INTO posting FROM pdoflow._posting_for_new_jobs(job.posting);
                IF posting.status = 'paused' THEN
                    new_state := 'paused';
                END IF;
            END IF;
            IF job.depends_on IS NOT NULL THEN
                SELECT * INTO dependency FROM pdoflow._dependency_state(job.depends_on, job.dependency_mode);
                pending := dependency.pending;
                IF dependency.state = 'blocked' THEN
                    new_state := 'blocked';
                END IF;
            END IF;
            DELETE FROM pdoflow.finished_jobs AS f WHERE f.id = retry.id;
            INSERT INTO pdoflow.active_jobs (id, posting, run_at, created_at, priority, attempt, max_attempts,
                                             parents_pending, state, queue, task, dependency_mode, node,
                                             last_error, depends_on, args)
            VALUES (job.id, job.posting, now(), job.created_at, job.priority, job.attempt,
                    greatest(job.max_attempts, job.attempt + 1), pending, new_state, job.queue, job.task,
                    job.dependency_mode, job.node, job.last_error, job.depends_on, job.args);
            -- Children waiting for any one parent counted this one as ended:
            -- it may succeed again.
            UPDATE pdoflow.active_jobs AS c
            SET parents_pending = c.parents_pending + 1
            WHERE c.id IN (
                SELECT b.id FROM pdoflow.active_jobs AS b
                WHERE b.state = 'blocked' AND b.depends_on @> ARRAY[retry.id]
                ORDER BY b.id
                FOR NO KEY UPDATE
            );
            IF new_state = 'queued' THEN
                PERFORM pdoflow._announce(job.queue);
            END IF;
            RETURN true;
        END IF;
        IF EXISTS (SELECT FROM pdoflow.active_jobs AS a WHERE a.id = retry.id) THEN
            RETURN false;
        END IF;
    END LOOP;
    RAISE EXCEPTION 'job % does not exist', retry.id USING ERRCODE = 'invalid_parameter_value';
END
$$;

-- sql/api/dag.sql: changed
CREATE OR REPLACE FUNCTION pdoflow.submit_dag(dag jsonb, posting uuid DEFAULT NULL)
RETURNS TABLE (name text, id uuid)
LANGUAGE plpgsql VOLATILE ROWS 100
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    plan          record;
    posting_row   record;
    existing      uuid[];
    existing_ids  uuid[];
    existing_state text[];
    due_queues    text[];
BEGIN
    SELECT * INTO plan FROM pdoflow._plan_dag(submit_dag.dag::text);
    IF pdoflow._task_checks_needed() THEN
        PERFORM pdoflow._check_task_args(t.task, t.args, t.params)
        FROM (
            SELECT n.node::jsonb ->> 'task' AS task,
                   array_agg(coalesce(nullif(n.node::jsonb -> 'args', 'null'::jsonb), '{}'::jsonb) ORDER BY n.ord) AS args,
                   array_agg(format('the args of DAG node "%s"', n.name) ORDER BY n.ord) AS params
            FROM unnest(plan.names, plan.nodes) WITH ORDINALITY AS n(name, node, ord)
            GROUP BY 1
        ) AS t;
    END IF;
    IF submit_dag.posting IS NOT NULL THEN
        SELECT * INTO posting_row FROM pdoflow._posting_for_new_jobs(submit_dag.posting);
    ELSE
        SELECT NULL::text AS status, NULL::text AS queue, NULL::integer AS priority INTO posting_row;
    END IF;
    -- Parents that exist already: lock the active ones (see dependencies.sql).
    SELECT array_agg(DISTINCT e.parent) INTO existing
    FROM unnest(plan.edge_parents, plan.edge_planned) AS e(parent, planned)
    WHERE NOT e.planned;
    IF existing IS NOT NULL THEN
        SELECT array_agg(s.id), array_agg(s.state) INTO existing_ids, existing_state
        FROM pdoflow._parent_states(existing) AS s;
    END IF;

    WITH edge AS (
        SELECT e.child,
               count(*) FILTER (WHERE e.planned OR s.state NOT IN ('succeeded', 'failed', 'cancelled')) AS pending,
               count(*) FILTER (WHERE s.state = 'succeeded') AS ok,
               (array_agg(e.parent ORDER BY e.parent) FILTER (WHERE s.state IN ('failed', 'cancelled')))[1] AS lost,
               array_agg(e.parent ORDER BY e.ord) AS parents
        FROM unnest(plan.edge_children, plan.edge_parents, plan.edge_planned)
             WITH ORDINALITY AS e(child, parent, planned, ord)
        LEFT JOIN unnest(existing_ids, existing_state) AS s(id, state) ON s.id = e.parent AND NOT e.planned
        GROUP BY e.child
    ), job AS (
        SELECT n.ord, n.name, n.id, n.node::jsonb AS node, n.mode, d.pending, d.parents,
               CASE
                   WHEN n.mode IS NULL THEN 'ready'
                   WHEN n.mode = 'all' AND d.lost IS NOT NULL
                       THEN pdoflow._raise_unmet_dependency(n.name, n.mode, d.lost)
                   WHEN n.mode = 'any' AND d.ok = 0 AND d.pending = 0
                       THEN pdoflow._raise_unmet_dependency(n.name, n.mode, d.lost)
                   WHEN (n.mode = 'all' AND d.pending = 0) OR (n.mode = 'any' AND d.ok > 0) THEN 'ready'
                   ELSE 'blocked'
               END AS start
        FROM unnest(plan.names, plan.ids, plan.nodes, plan.modes) WITH ORDINALITY AS n(name, id, node, mode, ord)
        LEFT JOIN edge AS d ON d.child = n.ord
    ), inserted AS (
        INSERT INTO pdoflow.active_jobs (id, posting, task, queue, priority, max_attempts, args, run_at,
                                         created_at, state, parents_pending, depends_on, dependency_mode, node)
        SELECT j.id, submit_dag.posting, j.node ->> 'task',
               coalesce(j.node ->> 'queue', posting_row.queue, 'default'),
               coalesce(nullif(j.node -> 'priority', 'null')::integer, posting_row.priority, 0),
               coalesce(nullif(j.node -> 'max_attempts', 'null')::integer, 5),
               coalesce(nullif(j.node -> 'args', 'null'::jsonb), '{}'::jsonb),
               coalesce((j.node ->> 'run_at')::timestamptz, now()),
               now(),
               CASE WHEN j.start = 'blocked' THEN 'blocked'
                    WHEN posting_row.status = 'paused' THEN 'paused'
                    ELSE 'queued' END,
               CASE WHEN j.start = 'blocked' THEN j.pending END,
               j.parents, j.mode, j.name
        FROM job AS j
        ORDER BY j.ord
        RETURNING queue, state, run_at
    )
    SELECT array_agg(DISTINCT i.queue) INTO due_queues
    FROM inserted AS i
    WHERE i.state = 'queued' AND i.run_at <= now();
    PERFORM pdoflow._announce(q) FROM unnest(due_queues) AS q;

    RETURN QUERY
    SELECT n.name, n.id FROM unnest(plan.names, plan.ids) WITH ORDINALITY AS n(name, id, ord) ORDER BY n.ord;
END
$$;

-- sql/api/dependencies.sql: changed
CREATE OR REPLACE FUNCTION pdoflow._settle_children(parent_ids uuid[], parent_states text[])
RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    child_ids      uuid[];
    update_ids     uuid[];
    update_pending integer[];
    update_release boolean[];
    doomed_ids     uuid[];
    doomed_errors  text[];
    due_queues     text[];
BEGIN
    -- Most batches end jobs that nothing waits for: one probe of an index
    -- that is empty then, instead of a search per ended job.
    IF NOT EXISTS (SELECT FROM pdoflow.active_jobs AS c WHERE c.state = 'blocked') THEN
        RETURN;
    END IF;
    LOOP
        SELECT array_agg(c.id) INTO child_ids
        FROM (
            SELECT c.id
            FROM pdoflow.active_jobs AS c
            WHERE c.state = 'blocked' AND c.depends_on && parent_ids
            ORDER BY c.id
            FOR NO KEY UPDATE
        ) AS c;
        EXIT WHEN child_ids IS NULL;

        -- The locked children are current in this statement's snapshot.
        WITH tally AS (
            SELECT c.id, c.dependency_mode AS mode, c.parents_pending AS pending,
                   count(*) FILTER (WHERE p.state = 'succeeded') AS ok,
                   count(*) FILTER (WHERE p.state <> 'succeeded') AS lost,
                   (array_agg(p.id ORDER BY p.id) FILTER (WHERE p.state <> 'succeeded'))[1] AS lost_id,
                   (array_agg(p.state ORDER BY p.id) FILTER (WHERE p.state <> 'succeeded'))[1] AS lost_state
            FROM pdoflow.active_jobs AS c
            JOIN unnest(parent_ids, parent_states) AS p(id, state) ON p.id = ANY (c.depends_on)
            WHERE c.id = ANY (child_ids) AND c.state = 'blocked'
            GROUP BY c.id
        ), decided AS (
            SELECT t.*,
                   (t.mode = 'all' AND t.lost > 0)
                   OR (t.mode = 'any' AND t.ok = 0 AND t.pending - t.lost <= 0) AS doomed,
                   (t.mode = 'all' AND t.lost = 0 AND t.pending - t.ok <= 0)
                   OR (t.mode = 'any' AND t.ok > 0) AS released
            FROM tally AS t
        )
        SELECT array_agg(d.id) FILTER (WHERE NOT d.doomed),
               array_agg(greatest(d.pending - d.ok - d.lost, 0)) FILTER (WHERE NOT d.doomed),
               array_agg(d.released) FILTER (WHERE NOT d.doomed),
               array_agg(d.id) FILTER (WHERE d.doomed),
               array_agg(
                   CASE WHEN d.mode = 'all' THEN
                       format('parent job %s%s %s', d.lost_id, pdoflow._node_label(d.lost_id),
                              CASE d.lost_state WHEN 'failed' THEN 'failed' ELSE 'was cancelled' END)
                   ELSE
                       format('no parent can succeed any more: the last one, job %s%s, %s',
                              d.lost_id, pdoflow._node_label(d.lost_id),
                              CASE d.lost_state WHEN 'failed' THEN 'failed' ELSE 'was cancelled' END)
                   END) FILTER (WHERE d.doomed)
        INTO update_ids, update_pending, update_release, doomed_ids, doomed_errors
        FROM decided AS d;

        -- Released children join their queue, or wait with their paused posting.
        WITH released AS (
            UPDATE pdoflow.active_jobs AS j
            SET parents_pending = u.pending,
                state = CASE
                    WHEN NOT u.release THEN 'blocked'
                    WHEN j.posting IS NOT NULL
                         AND (SELECT p.status FROM pdoflow.postings AS p WHERE p.id = j.posting) = 'paused'
                        THEN 'paused'
                    ELSE 'queued'
                END
            FROM unnest(update_ids, update_pending, update_release) AS u(id, pending, release)
            WHERE j.id = u.id
            RETURNING j.queue, j.state, j.run_at
        )
        SELECT array_agg(DISTINCT r.queue) INTO due_queues
        FROM released AS r
        WHERE r.state = 'queued' AND r.run_at <= now();
        PERFORM pdoflow._announce(q) FROM unnest(due_queues) AS q;

        EXIT WHEN doomed_ids IS NULL;
        SELECT array_agg(m.id), array_agg(m.state) INTO parent_ids, parent_states
        FROM pdoflow._move_to_history(doomed_ids, array_fill('cancelled'::text, ARRAY[cardinality(doomed_ids)]),
                                      doomed_errors, NULL) AS m;
        EXIT WHEN parent_ids IS NULL;
    END LOOP;
END
$$;

-- sql/api/dependencies.sql: changed
CREATE OR REPLACE FUNCTION pdoflow._parent_results(parents uuid[])
RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    RETURN (
        SELECT coalesce(jsonb_object_agg(r.key, r.result), '{}'::jsonb)
        FROM (
            SELECT CASE WHEN f.node IS NULL OR count(*) OVER (PARTITION BY f.node) > 1
                        THEN f.id::text ELSE f.node END AS key,
                   f.result
            FROM pdoflow.finished_jobs AS f
            WHERE f.id = ANY (parents) AND f.state = 'succeeded'
        ) AS r);
END
$$;

-- sql/api/enqueue.sql: new; enqueue's paths other than the plain job
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
                                     created_at, state, parents_pending, depends_on, dependency_mode)
    VALUES (job_id, _enqueue_general.posting, _enqueue_general.task, place.job_queue, place.job_priority,
            _enqueue_general.max_attempts, _enqueue_general.args, due_at, now(), place.job_state,
            place.pending, place.parents, place.mode);
    IF place.job_state = 'queued' AND due_at <= now() THEN
        PERFORM pdoflow._announce(place.job_queue);
    END IF;
    RETURN job_id;
END
$$;
REVOKE ALL ON FUNCTION pdoflow._enqueue_general(text, jsonb, text, integer, timestamptz, integer, uuid, uuid[], text) FROM PUBLIC;

-- sql/api/enqueue.sql: now written in Rust (enqueue.rs); its input checks with it
CREATE OR REPLACE FUNCTION pdoflow.enqueue(
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
DROP FUNCTION pdoflow._check_job(text, anyelement, text, integer, timestamptz, integer);

-- sql/api/enqueue.sql: changed
CREATE OR REPLACE FUNCTION pdoflow.enqueue_many(
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
BEGIN
    PERFORM pdoflow._check_job_batch(enqueue_many.task, enqueue_many.args, enqueue_many.queue,
                                     enqueue_many.priority, enqueue_many.run_at, enqueue_many.max_attempts);
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
                                     created_at, state, parents_pending, depends_on, dependency_mode)
    SELECT new.id, enqueue_many.posting, enqueue_many.task, place.job_queue, place.job_priority,
           enqueue_many.max_attempts, new.args, due_at, now(), place.job_state, place.pending,
           place.parents, place.mode
    FROM unnest(job_ids, enqueue_many.args) AS new(id, args);
    IF place.job_state = 'queued' AND due_at <= now() AND cardinality(job_ids) > 0 THEN
        PERFORM pdoflow._announce(place.job_queue);
    END IF;
    RETURN QUERY SELECT unnest(job_ids);
END
$$;

-- sql/api/enqueue.sql: changed
CREATE OR REPLACE FUNCTION pdoflow.enqueue_many(jobs jsonb)
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
BEGIN
    -- Jobs with postings or parents need locks and lookups each: one enqueue
    -- call per job, in order.
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
        INSERT INTO pdoflow.active_jobs (id, task, queue, priority, max_attempts, args, run_at, created_at)
        SELECT spec.id,
               spec.job ->> 'task',
               coalesce(spec.job ->> 'queue', 'default'),
               coalesce(nullif(spec.job -> 'priority', 'null')::integer, 0),
               coalesce(nullif(spec.job -> 'max_attempts', 'null')::integer, 5),
               coalesce(nullif(spec.job -> 'args', 'null'::jsonb), '{}'::jsonb),
               coalesce((spec.job ->> 'run_at')::timestamptz, now()),
               now()
        FROM ROWS FROM (jsonb_array_elements(enqueue_many.jobs), unnest(job_ids)) AS spec(job, id)
        RETURNING queue, run_at
    )
    SELECT count(pdoflow._announce(due.queue)) INTO notified
    FROM (SELECT DISTINCT new.queue FROM new WHERE new.run_at <= now()) AS due;
    RETURN QUERY SELECT unnest(job_ids);
END
$$;

-- sql/api/finish.sql: changed
CREATE OR REPLACE FUNCTION pdoflow.finish_many(
    ids      uuid[],
    attempts integer[],
    errors   text[]  DEFAULT NULL,
    results  jsonb[] DEFAULT NULL
) RETURNS TABLE (id uuid, attempt integer, state text, rejected text)
LANGUAGE plpgsql VOLATILE ROWS 100
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    current_mask boolean[];
    end_ids      uuid[];
    end_states   text[];
    end_errors   text[];
    end_results  jsonb[];
    retry_ids    uuid[];
    retry_errors text[];
    retry_states text[];
    new_states   text[];
    due_queues   text[];
BEGIN
    PERFORM pdoflow._check_finish_batch(finish_many.ids, finish_many.attempts,
                                        cardinality(finish_many.errors), cardinality(finish_many.results));
    IF finish_many.results IS NOT NULL THEN
        PERFORM pdoflow._check_results(finish_many.results);
    END IF;

    -- 1. Lock the claims that are still current, in id order so that
    -- concurrent batches (and the sweeper) never deadlock on each other.
    -- Every row is found by one primary-key probe (the LATERAL subquery with
    -- FOR UPDATE cannot be flattened into a join), whatever the table
    -- statistics say: a join planned from stale statistics (say, "nothing is
    -- running" right after an ANALYZE of a full queue) was quadratic. The
    -- result: per claim, in input order, whether it is current (and locked).
    SELECT array_agg(j.attempt IS NOT NULL ORDER BY o.ord) INTO current_mask
    FROM (
        SELECT c.id, c.attempt, c.ord
        FROM unnest(finish_many.ids, finish_many.attempts) WITH ORDINALITY AS c(id, attempt, ord)
        ORDER BY c.id
        OFFSET 0
    ) AS o
    LEFT JOIN LATERAL (
        -- By id alone: a condition on state would let the planner pick the
        -- partial index of running jobs and filter all of them per claim
        -- (OFFSET 0 keeps the join's conditions from being pushed in here).
        -- The claim is current if the locked version still matches it.
        SELECT j.attempt, j.state
        FROM pdoflow.active_jobs AS j
        WHERE j.id = o.id
        OFFSET 0
        FOR UPDATE
    ) AS j ON j.attempt = o.attempt AND j.state = 'running';

    -- 2. Decide from a fresh snapshot, taken after the locks: the locked rows
    -- cannot change under us, and a posting paused or cancelled while we
    -- waited for them is seen (postings.sql: whoever re-queues a job reads
    -- the posting's status after locking the job). A failure is retried
    -- while attempts remain, unless its posting was cancelled; in a paused
    -- posting the retry waits for it to resume.
    SELECT array_agg(o.id) FILTER (WHERE d.ends),
           array_agg(d.end_state) FILTER (WHERE d.ends),
           array_agg(d.end_error) FILTER (WHERE d.ends),
           array_agg(o.result) FILTER (WHERE d.ends),
           array_agg(o.id) FILTER (WHERE NOT d.ends),
           array_agg(o.error) FILTER (WHERE NOT d.ends),
           array_agg(d.retry_state) FILTER (WHERE NOT d.ends),
           -- Per claim, in input order: its new state, NULL if not current.
           array_agg(CASE WHEN d.ends THEN d.end_state WHEN NOT d.ends THEN 'queued' END ORDER BY o.ord)
    INTO end_ids, end_states, end_errors, end_results, retry_ids, retry_errors, retry_states, new_states
    FROM unnest(finish_many.ids, finish_many.errors, finish_many.results, current_mask)
         WITH ORDINALITY AS o(id, error, result, current, ord)
    LEFT JOIN LATERAL (
        SELECT j.attempt, j.max_attempts, j.posting
        FROM pdoflow.active_jobs AS j
        WHERE j.id = o.id
        OFFSET 0
    ) AS j ON o.current
    LEFT JOIN LATERAL (
        SELECT CASE WHEN j.posting IS NOT NULL THEN
                   (SELECT p.status FROM pdoflow.postings AS p WHERE p.id = j.posting)
               END AS status
    ) AS p ON true
    LEFT JOIN LATERAL (
        SELECT o.error IS NULL OR j.attempt >= j.max_attempts OR p.status IS NOT DISTINCT FROM 'cancelled' AS ends,
               CASE WHEN o.error IS NULL THEN 'succeeded'
                    WHEN j.attempt >= j.max_attempts THEN 'failed'
                    ELSE 'cancelled' END AS end_state,
               CASE WHEN o.error IS NOT NULL AND j.attempt < j.max_attempts
                    THEN format('%s (not retried: posting %s was cancelled)', o.error, j.posting)
                    ELSE o.error END AS end_error,
               CASE WHEN p.status = 'paused' THEN 'paused' ELSE 'queued' END AS retry_state
        WHERE j.attempt IS NOT NULL
    ) AS d ON true;

    -- The rows are locked: every one of them ends or is queued again.
    IF end_ids IS NOT NULL THEN
        PERFORM pdoflow._end_jobs(end_ids, end_states, end_errors, end_results);
    END IF;
    IF retry_ids IS NOT NULL THEN
        SELECT array_agg(DISTINCT q.queue) FILTER (WHERE q.state = 'queued' AND q.run_at <= now())
        INTO due_queues
        FROM pdoflow._requeue(retry_ids, retry_errors, retry_states) AS q;
    END IF;

    -- Retries due at once (pdoflow.retry_backoff_base = 0) wake idle workers.
    PERFORM pdoflow._announce(q) FROM unnest(due_queues) AS q;

    -- Claims that were not current say why. CASE evaluates the lookup for
    -- those rows only (a lateral join would run it for every claim).
    RETURN QUERY
    SELECT r.id, r.attempt, coalesce(r.new_state, r.problem[1]),
           CASE WHEN r.new_state IS NULL THEN
               -- No problem found means the claim became current after the
               -- lock (someone finished it before it existed); it was still
               -- not finished.
               coalesce(r.problem[2], format('claim (job %s, attempt %s) is not current', r.id, r.attempt))
           END
    FROM (
        SELECT claim.id, claim.attempt, claim.ord, claim.new_state,
               CASE WHEN claim.new_state IS NULL THEN
                   (SELECT ARRAY[p.state, p.message] FROM pdoflow._claim_problem(claim.id, claim.attempt) AS p LIMIT 1)
               END AS problem
        FROM unnest(finish_many.ids, finish_many.attempts, new_states)
             WITH ORDINALITY AS claim(id, attempt, new_state, ord)
        OFFSET 0  -- one lookup per row, not one per use of problem
    ) AS r
    ORDER BY r.ord;
END
$$;

-- sql/api/history.sql: changed
CREATE OR REPLACE FUNCTION pdoflow._move_to_history(ids uuid[], states text[], errors text[], results jsonb[])
RETURNS TABLE (id uuid, state text)
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH outcome AS (
        SELECT o.id, o.state, o.error, o.result
        FROM unnest(ids, states, errors, results) AS o(id, state, error, result)
    ), ended AS (
        -- By primary key: a join with the outcomes may be planned as a hash
        -- of the whole table when the batch is large.
        DELETE FROM pdoflow.active_jobs AS j
        WHERE j.id = ANY (ids)
        RETURNING j.*
    ), archived AS (
        INSERT INTO pdoflow.finished_jobs (id, posting, run_at, created_at, started_at, finished_at,
                                           priority, attempt, max_attempts, state, queue, task, worker,
                                           dependency_mode, node, last_error, depends_on, args, result)
        SELECT e.id, e.posting, e.run_at, e.created_at, e.started_at, now(),
               e.priority, e.attempt, e.max_attempts, o.state, e.queue, e.task, e.worker,
               e.dependency_mode, e.node, coalesce(o.error, e.last_error), e.depends_on, e.args,
               o.result
        FROM ended AS e
        JOIN outcome AS o ON o.id = e.id
        RETURNING finished_jobs.id, finished_jobs.state
    )
    SELECT a.id, a.state::text FROM archived AS a;
END
$$;

-- sql/api/postings.sql: changed
CREATE OR REPLACE FUNCTION pdoflow.set_posting_status(posting uuid, status text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    old_status text;
    resumed    text[];
BEGIN
    PERFORM pdoflow._check_posting_status(set_posting_status.posting, set_posting_status.status);
    SELECT p.status INTO old_status
    FROM pdoflow.postings AS p
    WHERE p.id = set_posting_status.posting
    FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'posting % does not exist', set_posting_status.posting
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF old_status = set_posting_status.status THEN
        RETURN false;
    END IF;
    IF old_status = 'cancelled' THEN
        RAISE EXCEPTION 'posting % is cancelled and cannot become %', set_posting_status.posting,
            set_posting_status.status
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Cancelling a posting is final; create a new posting for new work.';
    END IF;
    UPDATE pdoflow.postings AS p
    SET status = set_posting_status.status, status_changed_at = now()
    WHERE p.id = set_posting_status.posting;

    -- Wait for whoever is changing one of its jobs right now (a claim, a
    -- finish, a parent releasing it); afterwards they see the new status.
    -- A worker finishing a batch of jobs of several postings locks in its own
    -- order, which can deadlock with ours: PostgreSQL then aborts one side,
    -- and when it is this one, the block is rolled back and tried again.
    FOR round IN 1..3 LOOP
        BEGIN
            PERFORM
            FROM pdoflow.active_jobs AS j
            WHERE j.posting = set_posting_status.posting
            ORDER BY j.id
            FOR NO KEY UPDATE;

            CASE set_posting_status.status
                WHEN 'paused' THEN
                    UPDATE pdoflow.active_jobs AS j
                    SET state = 'paused'
                    WHERE j.posting = set_posting_status.posting AND j.state = 'queued';
                WHEN 'active' THEN
                    WITH resumed_jobs AS (
                        UPDATE pdoflow.active_jobs AS j
                        SET state = 'queued'
                        WHERE j.posting = set_posting_status.posting AND j.state = 'paused'
                        RETURNING j.queue, j.run_at
                    )
                    SELECT array_agg(DISTINCT r.queue) INTO resumed
                    FROM resumed_jobs AS r
                    WHERE r.run_at <= now();
                    PERFORM pdoflow._announce(q) FROM unnest(resumed) AS q;
                ELSE
                    PERFORM pdoflow._end_jobs(
                        array_agg(j.id),
                        array_fill('cancelled'::text, ARRAY[count(*)::integer]),
                        array_fill(format('posting %s was cancelled', set_posting_status.posting), ARRAY[count(*)::integer]))
                    FROM pdoflow.active_jobs AS j
                    WHERE j.posting = set_posting_status.posting AND j.state IN ('queued', 'paused', 'blocked')
                    HAVING count(*) > 0;
            END CASE;
            EXIT;
        EXCEPTION WHEN deadlock_detected THEN
            IF round = 3 THEN
                RAISE;
            END IF;
        END;
    END LOOP;
    RETURN true;
END
$$;

-- sql/api/release.sql: changed
CREATE OR REPLACE FUNCTION pdoflow.release(id uuid, attempt integer)
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
                                  ARRAY[format('released after posting %s was cancelled', job_posting)]);
        RETURN true;
    END IF;
    UPDATE pdoflow.active_jobs AS j
    SET state = CASE WHEN posting_state = 'paused' THEN 'paused' ELSE 'queued' END,
        attempt = j.attempt - 1,
        worker = NULL,
        heartbeat_at = NULL,
        lease_expires_at = NULL
    WHERE j.id = release.id;
    IF posting_state IS DISTINCT FROM 'paused' THEN
        PERFORM pdoflow._announce(job_queue);
    END IF;
    RETURN true;
END
$$;

-- sql/api/tasks.sql: changed
CREATE OR REPLACE FUNCTION pdoflow._task_checks_needed()
RETURNS boolean
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    RETURN pdoflow._require_registered_tasks() OR EXISTS (SELECT FROM pdoflow.tasks);
END
$$;

-- active_jobs loses its CHECK constraints: PostgreSQL 15 rebuilds them for
-- every INSERT statement. check_consistency states their rules instead.
ALTER TABLE pdoflow.active_jobs
    DROP CONSTRAINT active_jobs_state_check,
    DROP CONSTRAINT active_jobs_dependency_check,
    DROP CONSTRAINT active_jobs_lease_check,
    DROP CONSTRAINT active_jobs_attempt_check;

-- sql/api/consistency.sql: changed
CREATE OR REPLACE FUNCTION pdoflow.check_consistency()
RETURNS TABLE (problem text, job_id uuid)
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
    -- One active row at a time: the rules CHECK constraints would state.
    SELECT CASE
               WHEN a.state NOT IN ('queued', 'running', 'blocked', 'paused')
                   THEN format('active job has state %L', a.state)
               WHEN (a.depends_on IS NULL) <> (a.dependency_mode IS NULL)
                   THEN 'active job has only one of depends_on and dependency_mode'
               WHEN a.dependency_mode NOT IN ('all', 'any')
                   THEN format('active job has dependency_mode %L', a.dependency_mode)
               WHEN a.state = 'blocked' AND a.parents_pending <= 0
                   THEN format('blocked job counts %s pending parents', a.parents_pending)
               WHEN (a.state = 'running') <> (a.lease_expires_at IS NOT NULL)
                   THEN format('%s job %s a lease', a.state,
                               CASE WHEN a.lease_expires_at IS NULL THEN 'lacks' ELSE 'has' END)
               WHEN NOT (a.attempt >= 0 AND a.attempt <= a.max_attempts AND a.max_attempts >= 1)
                   THEN format('active job is at attempt %s of %s', a.attempt, a.max_attempts)
           END,
           a.id
    FROM pdoflow.active_jobs AS a
    WHERE a.state NOT IN ('queued', 'running', 'blocked', 'paused')
       OR (a.depends_on IS NULL) <> (a.dependency_mode IS NULL)
       OR a.dependency_mode NOT IN ('all', 'any')
       OR (a.state = 'blocked' AND a.parents_pending <= 0)
       OR (a.state = 'running') <> (a.lease_expires_at IS NOT NULL)
       OR NOT (a.attempt >= 0 AND a.attempt <= a.max_attempts AND a.max_attempts >= 1)
    UNION ALL
    SELECT 'job is both active and finished', a.id
    FROM pdoflow.active_jobs AS a JOIN pdoflow.finished_jobs AS f ON f.id = a.id
    UNION ALL
    SELECT 'job belongs to a posting that does not exist', j.id
    FROM (SELECT id, posting FROM pdoflow.active_jobs UNION ALL SELECT id, posting FROM pdoflow.finished_jobs) AS j
    WHERE j.posting IS NOT NULL AND NOT EXISTS (SELECT FROM pdoflow.postings AS p WHERE p.id = j.posting)
    UNION ALL
    SELECT 'job is paused but its posting is not', a.id
    FROM pdoflow.active_jobs AS a LEFT JOIN pdoflow.postings AS p ON p.id = a.posting
    WHERE a.state = 'paused' AND p.status IS DISTINCT FROM 'paused'
    UNION ALL
    SELECT 'job is queued in a paused posting', a.id
    FROM pdoflow.active_jobs AS a JOIN pdoflow.postings AS p ON p.id = a.posting
    WHERE a.state = 'queued' AND p.status = 'paused'
    UNION ALL
    SELECT 'job waits in a cancelled posting', a.id
    FROM pdoflow.active_jobs AS a JOIN pdoflow.postings AS p ON p.id = a.posting
    WHERE a.state IN ('queued', 'paused', 'blocked') AND p.status = 'cancelled'
    UNION ALL
    -- Blocked jobs: the count of parents still active must match, and the
    -- parents that ended must not have decided the job already.
    SELECT CASE
               WHEN b.active_parents <> a.parents_pending
                   THEN format('blocked job counts %s pending parents, but %s are active', a.parents_pending, b.active_parents)
               WHEN a.dependency_mode = 'all' AND b.lost > 0 THEN 'blocked job has a parent that failed or was cancelled'
               WHEN a.dependency_mode = 'any' AND b.succeeded > 0 THEN 'blocked job has a parent that succeeded'
           END,
           a.id
    FROM pdoflow.active_jobs AS a
    CROSS JOIN LATERAL (
        SELECT count(*) FILTER (WHERE pa.id IS NOT NULL) AS active_parents,
               count(*) FILTER (WHERE pf.state = 'succeeded') AS succeeded,
               count(*) FILTER (WHERE pf.state IN ('failed', 'cancelled')) AS lost
        FROM unnest(a.depends_on) AS d(id)
        LEFT JOIN pdoflow.active_jobs AS pa ON pa.id = d.id
        LEFT JOIN pdoflow.finished_jobs AS pf ON pf.id = d.id
    ) AS b
    WHERE a.state = 'blocked'
      AND (b.active_parents <> a.parents_pending
           OR (a.dependency_mode = 'all' AND b.lost > 0)
           OR (a.dependency_mode = 'any' AND b.succeeded > 0))
    UNION ALL
    -- A mode-all job that left blocked before every parent succeeded (parents
    -- deleted by retention count as succeeded: they were, or it would not run).
    SELECT 'job was released before all its parents succeeded', a.id
    FROM pdoflow.active_jobs AS a
    WHERE a.state IN ('queued', 'paused', 'running') AND a.dependency_mode = 'all'
      AND EXISTS (
          SELECT FROM unnest(a.depends_on) AS d(id)
          WHERE EXISTS (SELECT FROM pdoflow.active_jobs AS pa WHERE pa.id = d.id)
             OR EXISTS (SELECT FROM pdoflow.finished_jobs AS pf WHERE pf.id = d.id AND pf.state <> 'succeeded'))
$$;

COMMENT ON FUNCTION pdoflow.check_consistency() IS
    'Rows that break pdoflow''s invariants: an active job whose own columns disagree, and across tables (a job in both tables, a stuck or wrongly released dependent, a job out of step with its posting); no row when all is well.';

-- sql/api/tasks.sql: new
-- Sessions keep a copy of the registrations for enqueue's fast path
-- (registered_tasks.rs in pdoflow-ext); this trigger tells them when a
-- transaction changes them.
CREATE FUNCTION pdoflow._tasks_changed()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'tasks_changed_wrapper';
REVOKE ALL ON FUNCTION pdoflow._tasks_changed() FROM PUBLIC;

CREATE TRIGGER tasks_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON pdoflow.tasks
    FOR EACH STATEMENT EXECUTE FUNCTION pdoflow._tasks_changed();
