-- Unique jobs: a job enqueued with a unique_key holds the pair (task,
-- unique_key) in pdoflow.unique_keys, and an enqueue of the same pair gets
-- the holder's id back instead of a new job. The rule, all of it here:
--
--   * a job holds its key while it is blocked, queued (retries in backoff
--     and paused postings included) or running;
--   * when it succeeds it keeps the key for its unique_for (not at all
--     without one); when it fails or is cancelled it lets go at once;
--   * pdoflow.retry of a failed or cancelled job takes its key again, and
--     is refused while another job holds it.
--
-- The key's row is what concurrent enqueues agree on: inserting it is the
-- race, and PostgreSQL's unique index decides it (the loser waits for the
-- winner's commit, then sees its job). Taking over a released key updates
-- the row, where the same wait decides. No enqueue of a held key writes
-- anything.

-- Per element of the arrays (one job each), the id that job gets: its own
-- ids[i] when it has no key or its key was free (taken for it now), else the
-- holder's. Two elements with the same key get the first one's id. Keys are
-- taken in (task, key) order, so concurrent bulk enqueues never wait for
-- each other in a cycle. unique_for may be NULL (no element keeps its key
-- after succeeding).
CREATE FUNCTION pdoflow._take_unique_keys(tasks text[], keys text[], unique_for interval[], ids uuid[])
RETURNS uuid[]
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    want_tasks text[];
    want_keys  text[];
    want_for   interval[];
    want_ids   uuid[];
    holders    uuid[];
    free       record;
BEGIN
    -- The distinct keys, each with the first job that asked for it.
    SELECT array_agg(w.task ORDER BY w.task, w.key), array_agg(w.key ORDER BY w.task, w.key),
           array_agg(w.keep ORDER BY w.task, w.key), array_agg(w.id ORDER BY w.task, w.key)
    INTO want_tasks, want_keys, want_for, want_ids
    FROM (
        SELECT DISTINCT ON (e.task, e.key) e.task, e.key, e.keep, e.id
        FROM ROWS FROM (unnest(tasks), unnest(keys), unnest(unique_for), unnest(ids))
             WITH ORDINALITY AS e(task, key, keep, id, n)
        WHERE e.key IS NOT NULL
        ORDER BY e.task, e.key, e.n
    ) AS w;
    IF want_ids IS NULL THEN
        RETURN ids;
    END IF;

    -- A key's row can change between two statements (its holder ends, the
    -- sweeper forgets a released key): go round until every key has a
    -- holder that still holds it, or is ours.
    FOR round IN 1..100 LOOP
        INSERT INTO pdoflow.unique_keys AS u (task, unique_key, job, unique_for)
        SELECT w.task, w.key, w.id, w.keep
        FROM unnest(want_tasks, want_keys, want_ids, want_for) AS w(task, key, id, keep)
        ORDER BY w.task, w.key
        ON CONFLICT (task, unique_key) DO NOTHING;

        -- Released keys are taken over one at a time, in key order (and a
        -- retried job takes back the key it let go of, keeping its
        -- unique_for). The UPDATE re-checks the row's latest version, so
        -- of two sessions taking over one key only the first succeeds.
        FOR free IN
            SELECT w.task, w.key, w.id, w.keep
            FROM unnest(want_tasks, want_keys, want_ids, want_for) AS w(task, key, id, keep)
            JOIN pdoflow.unique_keys AS u ON u.task = w.task AND u.unique_key = w.key
            WHERE u.released_at IS NOT NULL
              AND (u.job = w.id OR u.released_at <= pg_catalog.clock_timestamp())
            ORDER BY w.task, w.key
        LOOP
            UPDATE pdoflow.unique_keys AS u
            SET job = free.id,
                unique_for = CASE WHEN u.job = free.id THEN u.unique_for ELSE free.keep END,
                released_at = NULL
            WHERE u.task = free.task AND u.unique_key = free.key AND u.released_at IS NOT NULL
              AND (u.job = free.id OR u.released_at <= pg_catalog.clock_timestamp());
        END LOOP;

        SELECT array_agg(u.job ORDER BY w.task, w.key) INTO holders
        FROM unnest(want_tasks, want_keys, want_ids) AS w(task, key, id)
        JOIN pdoflow.unique_keys AS u ON u.task = w.task AND u.unique_key = w.key
        WHERE u.job = w.id OR u.released_at IS NULL OR u.released_at > pg_catalog.clock_timestamp();
        IF cardinality(holders) = cardinality(want_ids) THEN
            -- Each element takes its key's holder.
            RETURN (
                SELECT array_agg(coalesce(h.holder, e.id) ORDER BY e.n)
                FROM ROWS FROM (unnest(tasks), unnest(keys), unnest(ids)) WITH ORDINALITY AS e(task, key, id, n)
                LEFT JOIN unnest(want_tasks, want_keys, holders) AS h(task, key, holder)
                       ON h.task = e.task AND h.key = e.key
            );
        END IF;
    END LOOP;
    RAISE EXCEPTION 'could not settle the unique keys of this enqueue: their jobs kept changing'
        USING ERRCODE = 'serialization_failure',
              HINT = 'Try the enqueue again.';
END
$$;

-- Lets go of the keys of jobs that just ended (one element per job, in
-- their end states): a succeeded job keeps its key for its unique_for.
CREATE FUNCTION pdoflow._release_unique_keys(tasks text[], keys text[], ids uuid[], states text[])
RETURNS void
LANGUAGE sql VOLATILE
BEGIN ATOMIC
    UPDATE pdoflow.unique_keys AS u
    SET released_at = now() + CASE WHEN e.state = 'succeeded' THEN coalesce(u.unique_for, interval '0')
                                   ELSE interval '0' END
    FROM unnest(tasks, keys, ids, states) AS e(task, key, id, state)
    WHERE u.task = e.task AND u.unique_key = e.key AND u.job = e.id;
END;

-- Forgets up to max_keys keys released before now (a new job could take
-- them over anyway), skipping rows that an enqueue is taking over. Returns
-- how many it forgot. A sweep step.
CREATE FUNCTION pdoflow._forget_released_unique_keys(max_keys integer)
RETURNS bigint
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pdoflow, pg_temp
BEGIN ATOMIC
    WITH forgotten AS (
        DELETE FROM pdoflow.unique_keys AS u
        WHERE (u.task, u.unique_key) IN (
            SELECT k.task, k.unique_key FROM pdoflow.unique_keys AS k
            WHERE k.released_at <= now()
            ORDER BY k.released_at
            LIMIT max_keys
            FOR UPDATE SKIP LOCKED
        )
        RETURNING 1
    )
    SELECT count(*) FROM forgotten;
END;
