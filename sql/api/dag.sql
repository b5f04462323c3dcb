-- Submitting a whole DAG in one call: pdoflow._plan_dag (Rust) checks the
-- document, expands sub-DAGs and orders the jobs parents first, with their
-- ids; pdoflow._insert_jobs (enqueue.sql) then adds them all in one
-- statement, blocked where they have parents.

-- Raises the error for a DAG node whose dependency on existing jobs can
-- never be met (used inside submit_dag's INSERT, so nothing is inserted).
CREATE FUNCTION pdoflow._raise_unmet_dependency(node_name text, mode text, lost uuid)
RETURNS text
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    IF mode = 'all' THEN
        RAISE EXCEPTION 'DAG node "%" depends on job %, which already failed or was cancelled', node_name, lost
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = format('Retry job %s first, or leave it out of the node''s depends_on.', lost);
    END IF;
    RAISE EXCEPTION 'DAG node "%" depends in mode "any" only on jobs that already failed or were cancelled', node_name
        USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = 'Retry one of them first.';
END
$$;

CREATE FUNCTION pdoflow.submit_dag(dag jsonb, posting uuid DEFAULT NULL)
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
    jobs          record;
    -- Per node (plan order): the job it stands for, its own planned id or,
    -- for a unique key that another job holds, that job's.
    final_ids     uuid[];
    edge_children integer[];
    edge_parents  uuid[];
    edge_planned  boolean[];
BEGIN
    SELECT * INTO plan FROM pdoflow._plan_dag(submit_dag.dag::text);
    final_ids := plan.ids;
    edge_children := plan.edge_children;
    edge_parents := plan.edge_parents;
    edge_planned := plan.edge_planned;
    PERFORM pdoflow._check_task_grants(array_agg(DISTINCT n.node::jsonb ->> 'task'))
    FROM unnest(plan.nodes) AS n(node);
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
    -- Unique keys are taken before the jobs are placed: a node whose key
    -- another job holds is not added, and its children wait for that job
    -- instead, as for any job that exists already.
    IF EXISTS (SELECT FROM unnest(plan.nodes) AS n(node) WHERE n.node::jsonb ? 'unique_key') THEN
        SELECT pdoflow._take_unique_keys(
                   array_agg(n.node::jsonb ->> 'task' ORDER BY n.ord),
                   array_agg(n.node::jsonb ->> 'unique_key' ORDER BY n.ord),
                   array_agg(pdoflow._unique_for(n.node::jsonb ->> 'unique_for',
                                                 format('the unique_for of DAG node "%s"', n.name)) ORDER BY n.ord),
                   plan.ids)
        INTO final_ids
        FROM unnest(plan.names, plan.nodes) WITH ORDINALITY AS n(name, node, ord);
        SELECT array_agg(e.child ORDER BY e.ord),
               array_agg(coalesce(r.final, e.parent) ORDER BY e.ord),
               array_agg(e.planned AND (r.final IS NULL OR r.final = ANY (plan.ids)) ORDER BY e.ord)
        INTO edge_children, edge_parents, edge_planned
        FROM unnest(plan.edge_children, plan.edge_parents, plan.edge_planned)
             WITH ORDINALITY AS e(child, parent, planned, ord)
        LEFT JOIN unnest(plan.ids, final_ids) AS r(id, final) ON e.planned AND r.id = e.parent AND r.final <> r.id
        -- Not the edges into a node that is not added.
        WHERE final_ids[e.child] = plan.ids[e.child];
    END IF;
    IF submit_dag.posting IS NOT NULL THEN
        SELECT * INTO posting_row FROM pdoflow._posting_for_new_jobs(submit_dag.posting);
    ELSE
        SELECT NULL::text AS status, NULL::text AS queue, NULL::integer AS priority INTO posting_row;
    END IF;
    -- Parents that exist already: lock the active ones (see dependencies.sql).
    SELECT array_agg(DISTINCT e.parent) INTO existing
    FROM unnest(edge_parents, edge_planned) AS e(parent, planned)
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
        FROM unnest(edge_children, edge_parents, edge_planned)
             WITH ORDINALITY AS e(child, parent, planned, ord)
        LEFT JOIN unnest(existing_ids, existing_state) AS s(id, state) ON s.id = e.parent AND NOT e.planned
        GROUP BY e.child
    ), job AS (
        SELECT n.ord, n.name, n.id, n.node::jsonb AS node, n.mode, d.pending, d.parents,
               -- Where the job's parents start in the flat list of all of them.
               1 + coalesce(sum(cardinality(d.parents)) OVER (ORDER BY n.ord ROWS BETWEEN UNBOUNDED PRECEDING
                                                                               AND 1 PRECEDING), 0) AS first_parent,
               CASE
                   WHEN n.mode IS NULL THEN 'ready'
                   WHEN n.mode = 'all' AND d.lost IS NOT NULL
                       THEN pdoflow._raise_unmet_dependency(n.name, n.mode, d.lost)
                   WHEN n.mode = 'any' AND d.ok = 0 AND d.pending = 0
                       THEN pdoflow._raise_unmet_dependency(n.name, n.mode, d.lost)
                   WHEN (n.mode = 'all' AND d.pending = 0) OR (n.mode = 'any' AND d.ok > 0) THEN 'ready'
                   ELSE 'blocked'
               END AS start
        FROM unnest(plan.names, plan.ids, plan.nodes, plan.modes, final_ids)
             WITH ORDINALITY AS n(name, id, node, mode, final_id, ord)
        LEFT JOIN edge AS d ON d.child = n.ord
        WHERE n.final_id = n.id
    )
    -- The jobs as _insert_jobs takes them, in plan order (parents first;
    -- the arrays are filled from the ordered rows).
    SELECT array_agg(j.id) AS ids,
           array_agg(j.node ->> 'task') AS tasks,
           array_agg(coalesce(nullif(j.node -> 'args', 'null'::jsonb), '{}'::jsonb)) AS args,
           array_agg(coalesce(j.node ->> 'queue', posting_row.queue, 'default')) AS queues,
           array_agg(coalesce(nullif(j.node -> 'priority', 'null')::integer, posting_row.priority, 0)) AS priorities,
           array_agg(coalesce(nullif(j.node -> 'max_attempts', 'null')::integer, 5)) AS attempts,
           array_agg((j.node ->> 'run_at')::timestamptz) AS run_ats,
           array_agg(CASE WHEN j.start = 'blocked' THEN 'blocked'
                          ELSE pdoflow._waiting_state(posting_row.status) END) AS states,
           array_agg(CASE WHEN j.start = 'blocked' THEN j.pending::integer END) AS pending,
           (SELECT array_agg(p.parent ORDER BY f.ord, p.k)
            FROM job AS f, unnest(f.parents) WITH ORDINALITY AS p(parent, k)) AS parents,
           array_agg(j.first_parent::integer) AS first_parents,
           array_agg(cardinality(j.parents)) AS parent_counts,
           array_agg(j.mode) AS modes,
           array_agg(j.name) AS names,
           array_agg(j.node ->> 'unique_key') AS unique_keys,
           array_agg(pdoflow._unique_for(j.node ->> 'unique_for',
                                         format('the unique_for of DAG node "%s"', j.name))) AS unique_for,
           array_agg(j.node ->> 'concurrency_key') AS concurrency_keys
    INTO jobs
    FROM (SELECT * FROM job ORDER BY job.ord) AS j;
    -- (The keys are this DAG's now: _insert_jobs finds them held by these jobs.)
    PERFORM pdoflow._insert_jobs(jobs.ids, jobs.tasks, jobs.args, jobs.queues, jobs.priorities, jobs.attempts,
                                 jobs.run_ats, jobs.states, submit_dag.posting, jobs.pending, jobs.parents,
                                 jobs.first_parents, jobs.parent_counts, jobs.modes, jobs.names,
                                 CASE WHEN cardinality(array_remove(jobs.unique_keys, NULL)) > 0
                                      THEN jobs.unique_keys END,
                                 jobs.unique_for,
                                 concurrency_keys => CASE WHEN cardinality(array_remove(jobs.concurrency_keys, NULL)) > 0
                                                          THEN jobs.concurrency_keys END);

    RETURN QUERY
    SELECT n.name, n.id FROM unnest(plan.names, final_ids) WITH ORDINALITY AS n(name, id, ord) ORDER BY n.ord;
END
$$;

COMMENT ON FUNCTION pdoflow.submit_dag(jsonb, uuid) IS
    'Adds the jobs of a DAG document ({"nodes": [{"name", "task" or "dag", "after", "mode", "unique_key", ...}], "edges"}) in one statement; returns each job''s name (sub-DAG paths joined by /) and id (for a node whose unique key another job holds, that job''s).';
