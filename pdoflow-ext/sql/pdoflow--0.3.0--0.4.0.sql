-- pdoflow 0.3.0 -> 0.4.0 (ALTER EXTENSION pdoflow UPDATE TO '0.4.0').
--
-- The trust boundary (issue 15):
-- * Per-task enqueue privileges: grant_task, revoke_task, the view
--   task_grants over the new table task_privileges; every enqueue path
--   checks them (_check_task_grants).
-- * Every job records the role that enqueued it (enqueued_by, in both job
--   tables and the jobs view; NULL for jobs enqueued before this version).
-- * The functions that end jobs or change postings refuse to run outside
--   READ COMMITTED (_require_read_committed); a claim's worker bookkeeping
--   no longer fails a REPEATABLE READ claim.
-- * release no longer hands out the released attempt number again: it
--   raises max_attempts by one instead of lowering attempt.
-- * The sweeper and sweep() work under pdoflow.sweep_lock_timeout; an
--   expired claim whose job cannot be ended in time is left for the next
--   round (_expire_leases returns how many).
-- * The registrations trigger fires under session_replication_role =
--   replica too (ENABLE ALWAYS), and so does the new grants trigger; both
--   are row triggers now, which logical replication fires.
-- * Workers ask pdoflow.job_is_granted(id) before they run a job of a task
--   that acts with their own powers (shell).
-- * A fresh install refuses a schema pdoflow that another role controls;
--   an existing one is warned about here.
\echo Use "ALTER EXTENSION pdoflow UPDATE" to load this file. \quit

DO $$
DECLARE
    owner_name text;
BEGIN
    SELECT r.rolname INTO owner_name
    FROM pg_catalog.pg_namespace AS n JOIN pg_catalog.pg_roles AS r ON r.oid = n.nspowner
    WHERE n.nspname = 'pdoflow' AND NOT r.rolsuper;
    IF owner_name IS NOT NULL THEN
        RAISE WARNING 'schema "pdoflow" is owned by role "%", which is not a superuser', owner_name
            USING DETAIL = 'That role can replace pdoflow''s objects, which the background sweeper runs as a superuser; '
                           'and a dump of this database will not restore, since CREATE EXTENSION pdoflow refuses '
                           'a schema another role owns.',
                  HINT = 'ALTER SCHEMA pdoflow OWNER TO the superuser that owns the extension.';
    END IF;
END
$$;

-- sql/schema.sql: changed
ALTER TABLE pdoflow.active_jobs ADD COLUMN enqueued_by text;
ALTER TABLE pdoflow.finished_jobs ADD COLUMN enqueued_by text;

CREATE OR REPLACE VIEW pdoflow.jobs AS
SELECT id, task, queue, priority,
       CASE state WHEN 'paused' THEN 'queued' ELSE state END AS state,
       attempt, max_attempts, args,
       NULL::jsonb AS result, last_error, run_at, created_at, started_at,
       NULL::timestamptz AS finished_at, lease_expires_at, worker, heartbeat_at,
       posting, depends_on, dependency_mode, node, enqueued_by
FROM pdoflow.active_jobs
UNION ALL
SELECT id, task, queue, priority, state, attempt, max_attempts, args,
       result, last_error, run_at, created_at, started_at,
       finished_at, NULL::timestamptz AS lease_expires_at, worker, NULL::timestamptz AS heartbeat_at,
       posting, depends_on, dependency_mode, node, enqueued_by
FROM pdoflow.finished_jobs;

CREATE TABLE pdoflow.task_privileges (
    task       text        COLLATE "C" NOT NULL,
    grantee    regrole     NOT NULL,
    granted_by text        NOT NULL,
    granted_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT task_privileges_pkey PRIMARY KEY (task, grantee)
);

COMMENT ON TABLE pdoflow.task_privileges IS
    'Per-task enqueue grants. Read pdoflow.task_grants; change them only with pdoflow.grant_task and pdoflow.revoke_task.';

SELECT pg_catalog.pg_extension_config_dump('pdoflow.task_privileges', '');

-- Functions of the library (pdoflow-ext/src/task_grants.rs, isolation.rs)
CREATE FUNCTION pdoflow."_calling_role"() RETURNS TEXT /* String */
STRICT VOLATILE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'calling_role_name_wrapper';

CREATE FUNCTION pdoflow."_check_task_grant"(
	"task" TEXT, /* Option < & str > */
	"grantee" oid /* Option < pg_sys :: Oid > */
) RETURNS VOID /* Result < (), ErrorReport > */
STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'check_task_grant_wrapper';

CREATE FUNCTION pdoflow."_check_task_grants"(
	"tasks" TEXT[] /* :: std :: option :: Option < Vec < Option < String > > > */
) RETURNS VOID /* Result < (), ErrorReport > */
VOLATILE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'check_task_grants_wrapper';

CREATE FUNCTION pdoflow."_may_enqueue"(
	"role" oid, /* pg_sys :: Oid */
	"task" TEXT /* & str */
) RETURNS bool /* Result < bool, ErrorReport > */
STRICT STABLE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'may_enqueue_task_wrapper';

CREATE FUNCTION pdoflow."_require_read_committed"(
	"function_name" TEXT /* & str */
) RETURNS VOID /* Result < (), ErrorReport > */
STRICT VOLATILE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'require_read_committed_wrapper';

REVOKE ALL ON FUNCTION pdoflow._calling_role(), pdoflow._check_task_grant(text, oid), pdoflow._may_enqueue(oid, text),
    pdoflow._check_task_grants(text[]), pdoflow._require_read_committed(text) FROM PUBLIC;

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
                                           dependency_mode, node, last_error, depends_on, args, result,
                                           enqueued_by)
        SELECT e.id, e.posting, e.run_at, e.created_at, e.started_at, now(),
               e.priority, e.attempt, e.max_attempts, o.state, e.queue, e.task, e.worker,
               e.dependency_mode, e.node, coalesce(o.error, e.last_error), e.depends_on, e.args,
               o.result, e.enqueued_by
        FROM ended AS e
        JOIN outcome AS o ON o.id = e.id
        RETURNING finished_jobs.id, finished_jobs.state
    )
    SELECT a.id, a.state::text FROM archived AS a;
END
$$;

-- sql/api/enqueue.sql: changed
CREATE OR REPLACE FUNCTION pdoflow._enqueue_general(
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
    enqueuer      text;
BEGIN
    SELECT * INTO plan FROM pdoflow._plan_dag(submit_dag.dag::text);
    PERFORM pdoflow._check_task_grants(array_agg(DISTINCT n.node::jsonb ->> 'task'))
    FROM unnest(plan.nodes) AS n(node);
    enqueuer := pdoflow._calling_role();
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
                                         created_at, state, parents_pending, depends_on, dependency_mode, node,
                                         enqueued_by)
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
               j.parents, j.mode, j.name, enqueuer
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

COMMENT ON FUNCTION pdoflow.submit_dag(jsonb, uuid) IS
    'Adds the jobs of a DAG document ({"nodes": [{"name", "task" or "dag", "after", "mode", ...}], "edges"}) in one statement; returns each job''s name (sub-DAG paths joined by /) and id.';

-- sql/api/finish.sql: changed
CREATE OR REPLACE FUNCTION pdoflow._claim_problem(job_id uuid, claimed_attempt integer)
RETURNS TABLE (state text, code text, message text, hint text)
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    claim_name text := format('claim (job %s, attempt %s)', job_id, claimed_attempt);
    job        record;
BEGIN
    SELECT a.state, a.attempt INTO job FROM pdoflow.active_jobs AS a WHERE a.id = job_id;
    IF FOUND THEN
        IF job.state = 'running' AND job.attempt = claimed_attempt THEN
            RETURN;
        END IF;
        RETURN QUERY SELECT
            job.state::text,
            '55000'::text,
            CASE
                WHEN job.state = 'running' THEN
                    format('%s is not current: the job is running attempt %s', claim_name, job.attempt)
                WHEN job.attempt = 0 THEN
                    format('%s is not current: the job has not been claimed yet', claim_name)
                ELSE
                    format('%s is not current: the job was queued again after attempt %s', claim_name, job.attempt)
            END,
            CASE
                WHEN job.state = 'running' THEN
                    'The claim ended (released, or its lease expired) and the job was claimed again; only the current claim can finish it.'
                WHEN job.attempt > 0 THEN
                    'The claim ended (finished with an error, lease expired or released) and the job waits for a new claim.'
            END;
        RETURN;
    END IF;

    SELECT f.state INTO job FROM pdoflow.finished_jobs AS f WHERE f.id = job_id;
    IF FOUND THEN
        RETURN QUERY SELECT
            job.state::text,
            '55000'::text,
            format('%s is not current: the job %s', claim_name,
                   CASE job.state WHEN 'cancelled' THEN 'was cancelled' ELSE 'already ' || job.state END),
            NULL::text;
        RETURN;
    END IF;

    RETURN QUERY SELECT NULL::text, '22023'::text, format('job %s does not exist', job_id), NULL::text;
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
    PERFORM pdoflow._require_read_committed('pdoflow.finish_many');
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

COMMENT ON FUNCTION pdoflow.finish_many(uuid[], integer[], text[], jsonb[]) IS
    'Finishes many claims at once; an error of NULL means success. One row per claim, in input order: the new state, or why it was rejected.';

-- sql/api/finish.sql: changed
CREATE OR REPLACE FUNCTION pdoflow.finish(
    id      uuid,
    attempt integer,
    error   text  DEFAULT NULL,
    result  jsonb DEFAULT NULL
) RETURNS text
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    outcome record;
BEGIN
    PERFORM pdoflow._require_read_committed('pdoflow.finish');
    PERFORM pdoflow._check_job_claim(finish.id, finish.attempt, NULL);
    SELECT * INTO outcome
    FROM pdoflow.finish_many(ARRAY[finish.id], ARRAY[finish.attempt],
                             ARRAY[finish.error], ARRAY[finish.result]);
    IF outcome.rejected IS NULL THEN
        RETURN outcome.state;
    END IF;
    PERFORM pdoflow._raise_claim_problem(finish.id, finish.attempt, outcome.rejected);
    RETURN NULL;  -- not reached: the call above raises
END
$$;

COMMENT ON FUNCTION pdoflow.finish(uuid, integer, text, jsonb) IS
    'Ends the claim (id, attempt): success when error is NULL, else a failure that is retried while attempts remain. Returns the job''s new state.';

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
    PERFORM pdoflow._require_read_committed('pdoflow.release');
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
        max_attempts = least(j.max_attempts::bigint + 1, 2147483647)::integer,
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

COMMENT ON FUNCTION pdoflow.release(uuid, integer) IS
    'Hands the job of the current claim (id, attempt) back to its queue without counting the attempt against max_attempts; false if the claim is not current.';

-- sql/api/cancel_retry.sql: changed
CREATE OR REPLACE FUNCTION pdoflow.cancel(id uuid)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    PERFORM pdoflow._require_read_committed('pdoflow.cancel');
    PERFORM pdoflow._check_job_id(cancel.id);
    -- A concurrent retry can move the job from history back to the active
    -- table between our two looks; a second round sees where it landed.
    FOR round IN 1..2 LOOP
        IF EXISTS (SELECT FROM pdoflow._end_jobs(ARRAY[cancel.id], ARRAY['cancelled'])) THEN
            RETURN true;
        END IF;
        IF EXISTS (SELECT FROM pdoflow.finished_jobs AS f WHERE f.id = cancel.id) THEN
            RETURN false;
        END IF;
    END LOOP;
    RAISE EXCEPTION 'job % does not exist', cancel.id USING ERRCODE = 'invalid_parameter_value';
END
$$;

COMMENT ON FUNCTION pdoflow.cancel(uuid) IS
    'Cancels a queued, blocked or running job (and the children that needed it); false when it had already ended.';

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
    PERFORM pdoflow._require_read_committed('pdoflow.retry');
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
                                             last_error, depends_on, args, enqueued_by)
            VALUES (job.id, job.posting, now(), job.created_at, job.priority, job.attempt,
                    greatest(job.max_attempts, job.attempt + 1), pending, new_state, job.queue, job.task,
                    job.dependency_mode, job.node, job.last_error, job.depends_on, job.args,
                    job.enqueued_by);
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

COMMENT ON FUNCTION pdoflow.retry(uuid) IS
    'Re-queues a failed or cancelled job, due now (blocked again while it has parents to wait for); false when it is already active.';

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
    PERFORM pdoflow._require_read_committed('pdoflow.set_posting_status');
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

COMMENT ON FUNCTION pdoflow.set_posting_status(uuid, text) IS
    'Sets a posting''s status: active, paused (its queued jobs are not claimed) or cancelled (its jobs that have not started end as cancelled; final). False when unchanged.';

-- sql/api/postings.sql: changed
CREATE OR REPLACE FUNCTION pdoflow.delete_posting(posting uuid)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    unfinished bigint;
BEGIN
    PERFORM pdoflow._require_read_committed('pdoflow.delete_posting');
    PERFORM pdoflow._check_posting_ref(delete_posting.posting);
    -- The row lock waits for enqueues into the posting to commit.
    PERFORM FROM pdoflow.postings AS p WHERE p.id = delete_posting.posting FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    SELECT count(*) INTO unfinished FROM pdoflow.active_jobs AS j WHERE j.posting = delete_posting.posting;
    IF unfinished > 0 THEN
        RAISE EXCEPTION 'posting % still has % %', delete_posting.posting, unfinished,
            CASE WHEN unfinished = 1 THEN 'job that has not ended' ELSE 'jobs that have not ended' END
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Wait for them to end, or cancel the posting first.';
    END IF;
    DELETE FROM pdoflow.finished_jobs AS f WHERE f.posting = delete_posting.posting;
    DELETE FROM pdoflow.postings AS p WHERE p.id = delete_posting.posting;
    RETURN true;
END
$$;

COMMENT ON FUNCTION pdoflow.delete_posting(uuid) IS
    'Deletes a posting whose jobs have all ended, with those jobs; false when it does not exist.';

-- sql/api/workers.sql: changed
CREATE OR REPLACE FUNCTION pdoflow._record_worker(worker text)
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

-- sql/api/sweep.sql: changed (_expire_leases returns skipped too)
DROP FUNCTION pdoflow._expire_leases(integer);
CREATE FUNCTION pdoflow._expire_leases(max_jobs integer)
RETURNS TABLE (requeued bigint, failed bigint, skipped bigint)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    expired_ids  uuid[];
    end_ids      uuid[];
    end_states   text[];
    end_errors   text[];
    retry_ids    uuid[];
    retry_errors text[];
    retry_states text[];
    ended        bigint := 0;
    left_over    bigint := 0;
    caller_wait  text;
    give_up_at   timestamptz;
BEGIN
    -- A claim locked right now is being finished or heartbeated: leave it to
    -- that transaction; if its lease is still expired afterwards, the next sweep takes it.
    SELECT coalesce(array_agg(j.id), '{}') INTO expired_ids
    FROM (
        SELECT j.id
        FROM pdoflow.active_jobs AS j
        WHERE j.state = 'running' AND j.lease_expires_at <= now()
        ORDER BY j.lease_expires_at
        LIMIT max_jobs
        FOR UPDATE SKIP LOCKED
    ) AS j;

    -- Decide from a fresh snapshot of the locked rows, as finish_many does.
    SELECT array_agg(j.id) FILTER (WHERE d.ends),
           array_agg(d.end_state) FILTER (WHERE d.ends),
           array_agg(d.message) FILTER (WHERE d.ends),
           array_agg(j.id) FILTER (WHERE NOT d.ends),
           array_agg(d.message) FILTER (WHERE NOT d.ends),
           array_agg(d.retry_state) FILTER (WHERE NOT d.ends)
    INTO end_ids, end_states, end_errors, retry_ids, retry_errors, retry_states
    FROM pdoflow.active_jobs AS j
    LEFT JOIN pdoflow.postings AS p ON p.id = j.posting
    CROSS JOIN LATERAL (
        SELECT j.attempt >= j.max_attempts OR p.status IS NOT DISTINCT FROM 'cancelled' AS ends,
               CASE WHEN j.attempt >= j.max_attempts THEN 'failed' ELSE 'cancelled' END AS end_state,
               format('lease of attempt %s expired at %s on %s%s', j.attempt, j.lease_expires_at,
                      CASE WHEN j.worker IS NULL THEN 'an unnamed worker'
                           ELSE format('worker "%s"', j.worker) END,
                      CASE WHEN j.attempt < j.max_attempts AND p.status = 'cancelled'
                           THEN format(' (not retried: posting %s was cancelled)', j.posting)
                           ELSE '' END) AS message,
               CASE WHEN p.status = 'paused' THEN 'paused' ELSE 'queued' END AS retry_state
    ) AS d
    WHERE j.id = ANY (expired_ids);

    IF retry_ids IS NOT NULL THEN
        PERFORM pdoflow._requeue(retry_ids, retry_errors, retry_states);
    END IF;
    IF end_ids IS NOT NULL THEN
        -- Ending settles the jobs' blocked children, which may have to wait
        -- for their locks. When the batch cannot, each job is tried alone,
        -- so that one job held up does not hold up the rest.
        BEGIN
            PERFORM pdoflow._end_jobs(end_ids, end_states, end_errors);
            ended := cardinality(end_ids);
        EXCEPTION WHEN lock_not_available OR deadlock_detected THEN
            -- Each job waits only briefly, and all of them together about as
            -- long again as the batch did: many jobs held up by one locked
            -- child must not keep the sweeper here for long.
            caller_wait := current_setting('lock_timeout');
            give_up_at := clock_timestamp() + greatest(caller_wait::interval, interval '1 second');
            PERFORM set_config('lock_timeout', '10ms', true);
            FOR i IN 1..cardinality(end_ids) LOOP
                IF clock_timestamp() > give_up_at THEN
                    left_over := left_over + cardinality(end_ids) - i + 1;
                    EXIT;
                END IF;
                BEGIN
                    PERFORM pdoflow._end_jobs(ARRAY[end_ids[i]], ARRAY[end_states[i]], ARRAY[end_errors[i]]);
                    ended := ended + 1;
                EXCEPTION WHEN lock_not_available OR deadlock_detected THEN
                    left_over := left_over + 1;
                END;
            END LOOP;
            PERFORM set_config('lock_timeout', caller_wait, true);
        END;
    END IF;
    RETURN QUERY SELECT coalesce(cardinality(retry_ids), 0)::bigint, ended, left_over;
END
$$;

-- sql/api/sweep.sql: changed
CREATE OR REPLACE FUNCTION pdoflow.sweep(batch_size integer DEFAULT 1000)
RETURNS TABLE (
    expired_requeued bigint,
    expired_failed   bigint,
    queues_notified  bigint,
    finished_deleted bigint,
    workers_gone     bigint
)
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
DECLARE
    expired       record;
    notified      bigint := 0;
    deleted       bigint := 0;
    gone          bigint := 0;
    caller_wait   text := current_setting('lock_timeout');
    step          text;
BEGIN
    PERFORM pdoflow._require_read_committed('pdoflow.sweep');
    PERFORM pdoflow._check_sweep(sweep.batch_size);
    SELECT 0::bigint AS requeued, 0::bigint AS failed, 0::bigint AS skipped INTO expired;
    -- Like the background sweeper: never wait long for a lock, and let a
    -- step that could not lock what it needed not stop the others.
    PERFORM set_config('lock_timeout', current_setting('pdoflow.sweep_lock_timeout'), true);
    FOREACH step IN ARRAY ARRAY['leases', 'due jobs', 'retention', 'workers'] LOOP
        BEGIN
            CASE step
                WHEN 'leases' THEN
                    SELECT * INTO expired FROM pdoflow._expire_leases(sweep.batch_size);
                    IF expired.skipped > 0 THEN
                        RAISE WARNING 'pdoflow.sweep: % expired claims could not be taken back now', expired.skipped
                            USING DETAIL = 'Ending those jobs has to wait for locks that other transactions hold '
                                           '(a producer enqueueing jobs that depend on their children, say).',
                                  HINT = 'They are tried again at the next sweep.';
                    END IF;
                -- After the leases, so that a retry due at once is announced now.
                WHEN 'due jobs' THEN
                    notified := pdoflow._notify_due_jobs();
                WHEN 'retention' THEN
                    deleted := pdoflow._delete_finished(sweep.batch_size);
                ELSE
                    gone := pdoflow._sweep_workers();
            END CASE;
        EXCEPTION WHEN lock_not_available THEN
            RAISE WARNING 'pdoflow.sweep: skipped the % step: %', step, SQLERRM
                USING HINT = 'Another transaction holds a lock it needs; it is tried again at the next sweep.';
        END;
    END LOOP;
    PERFORM set_config('lock_timeout', caller_wait, true);
    RETURN QUERY SELECT expired.requeued, expired.failed, notified, deleted, gone;
END
$$;

COMMENT ON FUNCTION pdoflow.sweep(integer) IS
    'One round of the background sweeper''s work: re-queues or fails up to batch_size expired claims, announces due delayed jobs, deletes up to batch_size finished jobs past pdoflow.retention and marks silent workers gone. Returns the counts.';

-- sql/api/tasks.sql: changed. Row triggers (logical replication's apply
-- fires no statement trigger but TRUNCATE's), enabled ALWAYS.
DROP TRIGGER tasks_changed ON pdoflow.tasks;
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

-- sql/api/tasks.sql: new
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

-- sql/api/tasks.sql: new
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

-- sql/api/tasks.sql: new
CREATE FUNCTION pdoflow.job_is_granted(id uuid)
RETURNS boolean
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
    SELECT EXISTS (
        SELECT
        FROM pdoflow.active_jobs AS j
        JOIN pg_catalog.pg_roles AS enqueuer ON enqueuer.rolname = j.enqueued_by
        WHERE j.id = job_is_granted.id
          AND EXISTS (SELECT FROM pdoflow.task_privileges AS p WHERE p.task = j.task)
          AND pdoflow._may_enqueue(enqueuer.oid, j.task))
$$;

COMMENT ON FUNCTION pdoflow.job_is_granted(uuid) IS
    'Whether the active job id''s task has a grant held by the role that enqueued it (or that role is an admin): for workers, before they run jobs of tasks such as shell.';

CREATE VIEW pdoflow.task_grants AS
SELECT p.task, p.grantee, p.granted_by, p.granted_at
FROM pdoflow.task_privileges AS p;

COMMENT ON VIEW pdoflow.task_grants IS
    'Which roles may enqueue which task (pdoflow.grant_task). Tasks not listed are open to every producer.';

-- sql/roles.sql: changed
REVOKE ALL ON FUNCTION pdoflow._expire_leases(integer), pdoflow.grant_task(text, regrole),
    pdoflow.revoke_task(text, regrole), pdoflow.job_is_granted(uuid) FROM PUBLIC;
GRANT SELECT ON pdoflow.task_grants TO pdoflow_producer;
GRANT EXECUTE ON FUNCTION pdoflow.job_is_granted(uuid) TO pdoflow_worker;
GRANT EXECUTE ON FUNCTION pdoflow.grant_task(text, regrole), pdoflow.revoke_task(text, regrole) TO pdoflow_admin;
