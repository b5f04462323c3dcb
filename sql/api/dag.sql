-- Submitting a whole DAG in one call: pdoflow._plan_dag (Rust) checks the
-- document, expands sub-DAGs and orders the jobs parents first, with their
-- ids; one INSERT then adds them all, blocked where they have parents.

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
                    ELSE pdoflow._waiting_state(posting_row.status) END,
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
