-- Dependencies between jobs (DAG workflows).
--
-- A job with depends_on waits in state 'blocked' until its parents allow it
-- to run: in mode 'all' when every parent succeeded, in mode 'any' when one
-- did. parents_pending counts the parents that have not ended yet.
--
-- Exactly-once release: a parent that ends locks its blocked children (in id
-- order, like every multi-row lock here) before it counts itself off, so two
-- parents ending at once update each child one after the other, and only the
-- last (or, in mode 'any', the first successful) one releases it. A new child
-- holds a FOR KEY SHARE lock on its parents that are still active while it is
-- enqueued (and on the ended ones, so none is retried unseen by it).

-- The state of each parent, every one locked FOR KEY SHARE until the caller
-- commits: an active parent cannot end, and an ended one cannot be retried,
-- unseen by the new child (finish, cancel and retry lock the row exclusively
-- and so wait for us, or we for them). Unknown ids are an error.
CREATE FUNCTION pdoflow._parent_states(parents uuid[])
RETURNS TABLE (id uuid, state text)
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
DECLARE
    found_ids    uuid[] := '{}';
    found_states text[] := '{}';
    missing      uuid[] := parents;
BEGIN
    -- A parent that moves between the tables while we wait for its lock (it
    -- ended, or was retried) is gone from where we looked: a second round,
    -- from a fresh snapshot, finds it where it landed.
    FOR round IN 1..2 LOOP
        SELECT found_ids || coalesce(array_agg(a.id), '{}'), found_states || coalesce(array_agg(a.state), '{}')
        INTO found_ids, found_states
        FROM (
            SELECT a.id, a.state::text
            FROM pdoflow.active_jobs AS a
            WHERE a.id = ANY (missing)
            ORDER BY a.id
            FOR KEY SHARE
        ) AS a;
        SELECT found_ids || coalesce(array_agg(f.id), '{}'), found_states || coalesce(array_agg(f.state), '{}')
        INTO found_ids, found_states
        FROM (
            SELECT f.id, f.state::text
            FROM pdoflow.finished_jobs AS f
            WHERE f.id = ANY (missing) AND f.id <> ALL (found_ids)
            ORDER BY f.id
            FOR KEY SHARE
        ) AS f;
        SELECT array_agg(p) INTO missing FROM unnest(parents) AS p WHERE p <> ALL (found_ids);
        EXIT WHEN missing IS NULL;
    END LOOP;
    IF missing IS NOT NULL THEN
        -- (Or, under REPEATABLE READ, active_jobs was compacted since the
        -- snapshot: a serialization failure then.)
        PERFORM pdoflow._require_active_jobs_in_snapshot();
        RAISE EXCEPTION 'depends_on: job % does not exist', missing[1]
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A job can only depend on jobs that exist (committed, and not yet deleted by pdoflow.retention).';
    END IF;
    RETURN QUERY SELECT f.id, f.state FROM unnest(found_ids, found_states) AS f(id, state);
END
$$;

-- Where a new job with these parents starts: 'queued' when its dependency
-- is met already, else 'blocked' with pending parents. Raises when the
-- dependency can never be met.
CREATE FUNCTION pdoflow._dependency_state(parents uuid[], mode text, OUT state text, OUT pending integer)
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    succeeded  integer;
    lost       uuid;
    lost_state text;
BEGIN
    SELECT count(*) FILTER (WHERE p.state NOT IN ('succeeded', 'failed', 'cancelled')),
           count(*) FILTER (WHERE p.state = 'succeeded'),
           (array_agg(p.id ORDER BY p.id) FILTER (WHERE p.state IN ('failed', 'cancelled')))[1],
           (array_agg(p.state ORDER BY p.id) FILTER (WHERE p.state IN ('failed', 'cancelled')))[1]
    INTO pending, succeeded, lost, lost_state
    FROM pdoflow._parent_states(parents) AS p;
    IF mode = 'all' AND lost IS NOT NULL THEN
        RAISE EXCEPTION 'depends_on: parent job % %, so a job that needs all its parents to succeed could never run',
            lost, CASE lost_state WHEN 'failed' THEN 'failed' ELSE 'was cancelled' END
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = format('Retry job %s first, or leave it out of depends_on.', lost);
    END IF;
    IF mode = 'any' AND succeeded = 0 AND pending = 0 THEN
        RAISE EXCEPTION 'depends_on: every parent failed or was cancelled, so this job could never run'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Retry one of the parents first.';
    END IF;
    state := CASE WHEN (mode = 'all' AND pending = 0) OR (mode = 'any' AND succeeded > 0)
                  THEN 'queued' ELSE 'blocked' END;
END
$$;

-- Settles the blocked children of jobs that just ended (parent_states:
-- succeeded, failed or cancelled): releases those whose dependency is now
-- met, cancels those whose dependency can no longer be met (and then their
-- own children, level by level), and counts the rest down.
CREATE FUNCTION pdoflow._settle_children(parent_ids uuid[], parent_states text[])
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
    -- Most batches end jobs that nothing waits for: the first search, in
    -- the blocked jobs' index (empty then), finds nothing. (A second index
    -- that only said whether any job is blocked cost every enqueue 4% of
    -- its work, and finishing saved nothing measurable.)
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
                    WHEN j.posting IS NULL THEN 'queued'
                    ELSE pdoflow._waiting_state((SELECT p.status FROM pdoflow.postings AS p WHERE p.id = j.posting))
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

-- ' ("name")' for a job submitted as a DAG node, else ''.
CREATE FUNCTION pdoflow._node_label(job_id uuid)
RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT coalesce((SELECT format(' ("%s")', f.node)
                     FROM pdoflow.finished_jobs AS f WHERE f.id = job_id AND f.node IS NOT NULL), '')
$$;

-- What a job's parents produced, for its claim: a JSON object mapping each
-- parent that succeeded to its result. The key is the parent's DAG node name
-- when it has one (and no other parent has the same name), else its id.
-- (PL/pgSQL so that its plan is kept: claim calls it for every job with
-- parents.)
CREATE FUNCTION pdoflow._parent_results(parents uuid[])
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
