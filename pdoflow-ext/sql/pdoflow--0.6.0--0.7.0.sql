-- pdoflow 0.6.0 -> 0.7.0 (ALTER EXTENSION pdoflow UPDATE TO '0.7.0').
--
-- A narrower hot table (issue 16): active_jobs_blocked_any_idx, which only
-- said whether any job waited for parents, is gone. Every insert into
-- active_jobs paid for it (4% of a single-job enqueue's work); finishing a
-- batch now searches the blocked jobs' GIN index directly, which is empty
-- in the common case. Changed: _settle_children.
\echo Use "ALTER EXTENSION pdoflow UPDATE" to load this file. \quit

-- sql/schema.sql: changed
DROP INDEX pdoflow.active_jobs_blocked_any_idx;

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

