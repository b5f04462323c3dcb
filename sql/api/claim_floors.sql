-- Claim floors: where each priority level's claimable jobs begin, so that a
-- claim's index scan starts there and skips the entries of jobs claimed
-- since vacuum last ran (all of them while a long transaction holds the
-- xmin horizon). The floors live in shared memory; the rules that keep them
-- right are in pdoflow-ext/src/claim_floors/mod.rs and docs/architecture.md
-- ("Claim floors"). In short: jobs made queued are posted after their
-- commit and lower the floors; a claim raises a floor only past rows that a
-- fresh snapshot shows are not queued.

-- Jobs queued again by an UPDATE (a retry, a release, a lease taken back, a
-- posting resumed, parents ended) are noted for the floors; the inserts of
-- new jobs note theirs themselves (_insert_jobs, the Rust enqueue, retry).
CREATE FUNCTION pdoflow._note_queued_row()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pdoflow._note_queued(NEW.queue, NEW.priority, NEW.run_at, NEW.id);
    RETURN NEW;
END
$$;

CREATE TRIGGER active_jobs_queued_again
    BEFORE UPDATE ON pdoflow.active_jobs
    FOR EACH ROW WHEN (NEW.state = 'queued')
    EXECUTE FUNCTION pdoflow._note_queued_row();
-- Rows changed by logical replication or under session_replication_role =
-- replica count too. (Rows such an apply INSERTs are not noted: see
-- forget_claim_floors.)
ALTER TABLE pdoflow.active_jobs ENABLE ALWAYS TRIGGER active_jobs_queued_again;

-- Lists the priority levels that hold queued jobs, for a claim from queues
-- (NULL: every queue), so that the floors can be used once the claim
-- commits. Runs once per queue (and for "every queue") after each server
-- start; a no-op for queues already learnt and where the floors cannot be
-- used. The scan walks each level's entries up to its first queued job, once.
CREATE FUNCTION pdoflow._learn_claim_levels(queues text[])
RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    wanted_queue text;
    attempt bigint;
BEGIN
    IF queues IS NULL THEN
        attempt := pdoflow._start_learning_claim_levels(NULL);
        IF attempt IS NOT NULL THEN
            -- A new statement: its snapshot is taken after the start.
            PERFORM pdoflow._finish_learning_claim_levels(NULL, attempt, ARRAY(
                WITH RECURSIVE levels(priority) AS (
                    (SELECT j.priority FROM pdoflow.active_jobs AS j
                     WHERE j.state = 'queued' AND NOT j.controlled
                     ORDER BY j.priority DESC LIMIT 1)
                    UNION ALL
                    SELECT (SELECT j.priority FROM pdoflow.active_jobs AS j
                            WHERE j.state = 'queued' AND NOT j.controlled AND j.priority < l.priority
                            ORDER BY j.priority DESC LIMIT 1)
                    FROM levels AS l WHERE l.priority IS NOT NULL
                )
                SELECT l.priority FROM levels AS l WHERE l.priority IS NOT NULL));
        END IF;
        RETURN;
    END IF;
    FOREACH wanted_queue IN ARRAY queues LOOP
        CONTINUE WHEN wanted_queue IS NULL;  -- (claim refuses those)
        attempt := pdoflow._start_learning_claim_levels(wanted_queue);
        IF attempt IS NOT NULL THEN
            PERFORM pdoflow._finish_learning_claim_levels(wanted_queue, attempt, ARRAY(
                WITH RECURSIVE levels(priority) AS (
                    (SELECT j.priority FROM pdoflow.active_jobs AS j
                     WHERE j.state = 'queued' AND j.queue = wanted_queue COLLATE "C"
                     ORDER BY j.priority DESC LIMIT 1)
                    UNION ALL
                    SELECT (SELECT j.priority FROM pdoflow.active_jobs AS j
                            WHERE j.state = 'queued' AND j.queue = wanted_queue COLLATE "C"
                              AND j.priority < l.priority
                            ORDER BY j.priority DESC LIMIT 1)
                    FROM levels AS l WHERE l.priority IS NOT NULL
                )
                SELECT l.priority FROM levels AS l WHERE l.priority IS NOT NULL));
        END IF;
    END LOOP;
END
$$;

-- Picks and locks up to n jobs due by due_by from queues (NULL: every queue without
-- controls, as the every-queue index holds them) and of tasks (NULL: any),
-- in claim order, scanning each level from its floors,
-- and raises the floors it may. NULL when the floors are not known: the
-- caller then scans every level from its start.
CREATE FUNCTION pdoflow._pick_from_floors(n integer, queues text[], tasks text[],
                                          due_by timestamptz DEFAULT now())
RETURNS uuid[]
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
DECLARE
    level     record;
    picked    uuid[] := '{}';
    got_ids   uuid[];
    got_queues text[];
    got_run_ats timestamptz[];
    i         integer;
    first_at  integer;
    upper_run_at timestamptz;
    upper_id  uuid;
    queued    record;
BEGIN
    FOR level IN SELECT * FROM pdoflow._claim_levels(queues) LOOP
        IF NOT level.known THEN
            RETURN NULL;
        END IF;
        EXIT WHEN cardinality(picked) >= n;
        -- This level's due jobs in claim order, each queue from its floor.
        IF queues IS NULL THEN
            SELECT array_agg(j.id ORDER BY j.run_at, j.id), array_agg(j.queue ORDER BY j.run_at, j.id),
                   array_agg(j.run_at ORDER BY j.run_at, j.id)
            INTO got_ids, got_queues, got_run_ats
            FROM (
                SELECT j.id, NULL::text AS queue, j.run_at
                FROM pdoflow.active_jobs AS j
                WHERE j.state = 'queued' AND NOT j.controlled AND j.priority = level.priority
                  AND (j.run_at, j.id) >= (level.floor_run_ats[1], level.floor_ids[1])
                  AND j.run_at <= due_by
                  AND (tasks IS NULL OR j.task = ANY (tasks COLLATE "C"))
                ORDER BY j.run_at, j.id
                LIMIT n - cardinality(picked)
                FOR NO KEY UPDATE SKIP LOCKED
            ) AS j;
        ELSIF cardinality(level.queues) = 1 THEN
            -- One queue (a worker of one queue, a limited queue): its index
            -- alone, without merging.
            SELECT array_agg(j.id ORDER BY j.run_at, j.id), array_agg(j.queue ORDER BY j.run_at, j.id),
                   array_agg(j.run_at ORDER BY j.run_at, j.id)
            INTO got_ids, got_queues, got_run_ats
            FROM (
                SELECT j.id, j.queue, j.run_at
                FROM pdoflow.active_jobs AS j
                WHERE j.state = 'queued' AND j.queue = level.queues[1] COLLATE "C"
                  AND j.priority = level.priority
                  AND (j.run_at, j.id) >= (level.floor_run_ats[1], level.floor_ids[1])
                  AND j.run_at <= due_by
                  AND (tasks IS NULL OR j.task = ANY (tasks COLLATE "C"))
                ORDER BY j.run_at, j.id
                LIMIT n - cardinality(picked)
                FOR NO KEY UPDATE SKIP LOCKED
            ) AS j;
        ELSE
            -- Rows locked here but not picked stay queued; they are
            -- released when the transaction ends.
            SELECT array_agg(c.id ORDER BY c.run_at, c.id), array_agg(c.queue ORDER BY c.run_at, c.id),
                   array_agg(c.run_at ORDER BY c.run_at, c.id)
            INTO got_ids, got_queues, got_run_ats
            FROM (
                SELECT c.id, c.queue, c.run_at
                FROM unnest(level.queues, level.floor_run_ats, level.floor_ids) AS f(queue, run_at, id)
                CROSS JOIN LATERAL (
                    SELECT j.id, j.queue, j.run_at
                    FROM pdoflow.active_jobs AS j
                    WHERE j.state = 'queued' AND j.queue = f.queue COLLATE "C"
                      AND j.priority = level.priority
                      AND (j.run_at, j.id) >= (f.run_at, f.id)
                      AND j.run_at <= due_by
                      AND (tasks IS NULL OR j.task = ANY (tasks COLLATE "C"))
                    ORDER BY j.run_at, j.id
                    LIMIT n - cardinality(picked)
                    FOR NO KEY UPDATE SKIP LOCKED
                ) AS c
                ORDER BY c.run_at, c.id
                LIMIT n - cardinality(picked)
            ) AS c;
        END IF;
        picked := picked || coalesce(got_ids, '{}');
        -- Raise each queue's floor: to the first queued row from the floor
        -- that a new snapshot shows (its own jobs, locked, still count), or
        -- to the first job taken here if that comes first; to the end when
        -- the level has no queued row left.
        FOR i IN 1 .. cardinality(level.queues) LOOP
            first_at := array_position(got_queues, level.queues[i]);
            IF queues IS NULL THEN
                first_at := CASE WHEN cardinality(got_ids) > 0 THEN 1 END;
            END IF;
            upper_run_at := coalesce(got_run_ats[first_at], 'infinity');
            upper_id := coalesce(got_ids[first_at], 'ffffffff-ffff-ffff-ffff-ffffffffffff');
            IF queues IS NULL THEN
                SELECT j.run_at, j.id INTO queued
                FROM pdoflow.active_jobs AS j
                WHERE j.state = 'queued' AND NOT j.controlled AND j.priority = level.priority
                  AND (j.run_at, j.id) >= (level.floor_run_ats[i], level.floor_ids[i])
                ORDER BY j.run_at, j.id
                LIMIT 1;
            ELSE
                SELECT j.run_at, j.id INTO queued
                FROM pdoflow.active_jobs AS j
                WHERE j.state = 'queued' AND j.queue = level.queues[i] COLLATE "C"
                  AND j.priority = level.priority
                  AND (j.run_at, j.id) >= (level.floor_run_ats[i], level.floor_ids[i])
                ORDER BY j.run_at, j.id
                LIMIT 1;
            END IF;
            -- (No upper bound in the scan: a row comparison as the upper
            -- bound does not stop a btree scan among equal due times.)
            IF queued.run_at IS NOT NULL AND (queued.run_at, queued.id) < (upper_run_at, upper_id) THEN
                upper_run_at := queued.run_at;
                upper_id := queued.id;
            END IF;
            PERFORM pdoflow._raise_claim_floor(level.queues[i], level.priority, level.versions[i],
                                               level.posts[i], upper_run_at, upper_id);
        END LOOP;
    END LOOP;
    RETURN picked;
END
$$;

-- A new install (or a restore's CREATE EXTENSION) starts without floors:
-- shared memory may hold those of a dropped install in this database.
SELECT pdoflow.forget_claim_floors();
