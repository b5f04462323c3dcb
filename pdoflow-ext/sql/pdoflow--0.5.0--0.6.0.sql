-- pdoflow 0.5.0 -> 0.6.0 (ALTER EXTENSION pdoflow UPDATE TO '0.6.0').
--
-- Claim floors (issue 17): a claim starts each priority level's index scan
-- at that level's floor, past the entries of jobs already claimed, instead
-- of at the start of the level. The floors live in shared memory
-- (pdoflow-ext/src/claim_floors/); jobs made queued are noted by the
-- inserts (_insert_jobs, retry, the Rust enqueue) and by a trigger on
-- updates to 'queued', and posted after their commit. New: the Rust
-- helpers below, sql/api/claim_floors.sql (the trigger, _learn_claim_levels,
-- _pick_from_floors) and pdoflow.forget_claim_floors() for DBAs. Changed:
-- claim, _insert_jobs, retry; active_jobs' vacuum is throttled again.
\echo Use "ALTER EXTENSION pdoflow UPDATE" to load this file. \quit

-- pdoflow-ext/src/claim_floors/mod.rs: new
CREATE FUNCTION pdoflow."_note_queued"(
	"queue" TEXT, /* & str */
	"priority" INT, /* i32 */
	"run_at" timestamp with time zone, /* TimestampWithTimeZone */
	"id" uuid /* Option < pgrx :: Uuid > */
) RETURNS void
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'note_queued_sql_wrapper';

CREATE FUNCTION pdoflow."_claim_levels"(
	"wanted" TEXT[] /* :: std :: option :: Option < Vec < Option < String > > > */
) RETURNS TABLE (
	"known" bool,  /* bool */
	"priority" INT,  /* Option < i32 > */
	"queues" TEXT[],  /* :: std :: option :: Option < Vec < Option < String > > > */
	"floor_run_ats" timestamp with time zone[],  /* :: std :: option :: Option < Vec < TimestampWithTimeZone > > */
	"floor_ids" uuid[],  /* :: std :: option :: Option < Vec < pgrx :: Uuid > > */
	"versions" bigint[],  /* :: std :: option :: Option < Vec < i64 > > */
	"posts" bigint[]  /* :: std :: option :: Option < Vec < i64 > > */
)
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'claim_levels_wrapper';

CREATE FUNCTION pdoflow."_raise_claim_floor"(
	"queue" TEXT, /* Option < & str > */
	"priority" INT, /* i32 */
	"version" bigint, /* i64 */
	"posts" bigint, /* i64 */
	"run_at" timestamp with time zone, /* TimestampWithTimeZone */
	"id" uuid /* pgrx :: Uuid */
) RETURNS void
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'raise_claim_floor_wrapper';

CREATE FUNCTION pdoflow."_start_learning_claim_levels"(
	"queue" TEXT /* Option < & str > */
) RETURNS bigint /* Option < i64 > */
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'start_learning_wrapper';

CREATE FUNCTION pdoflow."_finish_learning_claim_levels"(
	"queue" TEXT, /* Option < & str > */
	"attempt" bigint, /* i64 */
	"priorities" INT[] /* Vec < Option < i32 > > */
) RETURNS void
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'finish_learning_wrapper';

CREATE FUNCTION pdoflow."forget_claim_floors"() RETURNS void
STRICT VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'forget_claim_floors_wrapper';

-- sql/api/claim_floors.sql: new
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
                     WHERE j.state = 'queued'
                     ORDER BY j.priority DESC LIMIT 1)
                    UNION ALL
                    SELECT (SELECT j.priority FROM pdoflow.active_jobs AS j
                            WHERE j.state = 'queued' AND j.priority < l.priority
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

-- Picks and locks up to n due jobs from queues (NULL: every queue) and of
-- tasks (NULL: any), in claim order, scanning each level from its floors,
-- and raises the floors it may. NULL when the floors are not known: the
-- caller then scans every level from its start.
CREATE FUNCTION pdoflow._pick_from_floors(n integer, queues text[], tasks text[])
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
                WHERE j.state = 'queued' AND j.priority = level.priority
                  AND (j.run_at, j.id) >= (level.floor_run_ats[1], level.floor_ids[1])
                  AND j.run_at <= now()
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
                      AND j.run_at <= now()
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
                WHERE j.state = 'queued' AND j.priority = level.priority
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

-- sql/api/enqueue.sql: changed
CREATE OR REPLACE FUNCTION pdoflow._insert_jobs(
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
    nodes           text[]    DEFAULT NULL
) RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    IF coalesce(cardinality(ids), 0) = 0 THEN
        RETURN;  -- no jobs (the shared values alone would make a row below)
    END IF;
    INSERT INTO pdoflow.active_jobs (id, posting, task, queue, priority, max_attempts, args, run_at,
                                     created_at, state, parents_pending, depends_on, dependency_mode,
                                     node, enqueued_by)
        SELECT j.id, j.posting, j.task, j.queue, j.priority, j.max_attempts, j.args,
               coalesce(j.run_at, now()), now(), j.state, j.pending,
               CASE WHEN j.parent_count > 0
                    THEN _insert_jobs.parents[j.first_parent : j.first_parent + j.parent_count - 1] END,
               j.mode, j.node, j.enqueued_by
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
                   one.posting, one.enqueued_by
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
                       _insert_jobs.posting AS posting, pdoflow._calling_role() AS enqueued_by
                OFFSET 0
            ) AS one,
            ROWS FROM (unnest(ids), unnest(tasks), unnest(_insert_jobs.args), unnest(queues),
                       unnest(priorities), unnest(_insert_jobs.max_attempts), unnest(run_ats),
                       unnest(states), unnest(_insert_jobs.parents_pending), unnest(first_parents),
                       unnest(parent_counts), unnest(modes), unnest(nodes))
                 AS e(id, task, args, queue, priority, max_attempts, run_at, state, pending,
                      first_parent, parent_count, mode, node)
        ) AS j;
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
            FROM ROWS FROM (unnest(queues), unnest(priorities), unnest(run_ats), unnest(states))
                 AS d(queue, priority, run_at, state)
        ) AS j
        WHERE j.state = 'queued'
        GROUP BY j.queue, j.priority
    ) AS l;
END
$$;

-- sql/api/claim.sql: changed
CREATE OR REPLACE FUNCTION pdoflow.claim(
    n      integer  DEFAULT 1,
    queues text[]   DEFAULT NULL,
    worker text     DEFAULT NULL,
    lease  interval DEFAULT '5 minutes',
    tasks  text[]   DEFAULT NULL
) RETURNS TABLE (
    id               uuid,
    task             text,
    args             jsonb,
    queue            text,
    priority         integer,
    attempt          integer,
    max_attempts     integer,
    lease_expires_at timestamptz,
    run_at           timestamptz,
    created_at       timestamptz,
    last_error       text,
    posting          uuid,
    parent_results   jsonb
)
LANGUAGE plpgsql VOLATILE ROWS 10
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
-- Claims walk the claim index in its order and stop after n jobs. Planned
-- from statistics that an ANALYZE took of a nearly empty table, or of one
-- full of rows a long transaction kept from vacuum, a bitmap or sequential
-- scan looked cheaper, and fetched and sorted every queued job each time.
SET enable_bitmapscan = off
SET enable_seqscan = off
AS $$
#variable_conflict use_column
DECLARE
    picked uuid[];
BEGIN
    PERFORM pdoflow._check_claim(claim.n, claim.queues, claim.worker, claim.lease, claim.tasks);
    -- Even a claim that finds nothing shows the worker is alive.
    PERFORM pdoflow._record_worker(claim.worker);

    -- Each level from its floor (claim_floors.sql), when the floors are known.
    picked := pdoflow._pick_from_floors(claim.n, claim.queues, claim.tasks);
    IF picked IS NOT NULL THEN
        IF cardinality(picked) = 0 THEN
            RETURN;
        END IF;
        RETURN QUERY SELECT * FROM pdoflow._start_attempts(picked, claim.worker, claim.lease);
        RETURN;
    END IF;

    -- Otherwise every level from its start; and list the levels, so that
    -- the next claims can use the floors.
    PERFORM pdoflow._learn_claim_levels(claim.queues);
    IF claim.queues IS NULL THEN
        SELECT array_agg(j.id) INTO picked
        FROM (
            SELECT j.id
            FROM pdoflow.active_jobs AS j
            WHERE j.state = 'queued' AND j.run_at <= now()
              AND (claim.tasks IS NULL OR j.task = ANY (claim.tasks COLLATE "C"))
            ORDER BY j.priority DESC, j.run_at, j.id
            LIMIT claim.n
            FOR NO KEY UPDATE SKIP LOCKED
        ) AS j;
    ELSE
        -- Walk each queue's index in claim order and merge: one ordered index
        -- scan per queue instead of sorting every queued job of all of them.
        -- Rows locked here but not picked are released when the transaction ends.
        SELECT array_agg(c.id) INTO picked
        FROM (
            SELECT c.id
            FROM (SELECT DISTINCT q FROM unnest(claim.queues) AS q) AS wanted
            CROSS JOIN LATERAL (
                SELECT j.id, j.priority, j.run_at
                FROM pdoflow.active_jobs AS j
                WHERE j.state = 'queued' AND j.queue = wanted.q COLLATE "C" AND j.run_at <= now()
                  AND (claim.tasks IS NULL OR j.task = ANY (claim.tasks COLLATE "C"))
                ORDER BY j.priority DESC, j.run_at, j.id
                LIMIT claim.n
                FOR NO KEY UPDATE SKIP LOCKED
            ) AS c
            ORDER BY c.priority DESC, c.run_at, c.id
            LIMIT claim.n
        ) AS c;
    END IF;

    IF picked IS NULL THEN
        RETURN;
    END IF;

    RETURN QUERY SELECT * FROM pdoflow._start_attempts(picked, claim.worker, claim.lease);
END
$$;

COMMENT ON FUNCTION pdoflow.claim(integer, text[], text, interval, text[]) IS
    'Takes up to n due jobs (from the given queues and of the given tasks, or all when NULL) in priority, due-time, age order, for lease.';

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
                new_state := pdoflow._waiting_state(posting.status);
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
                PERFORM pdoflow._note_queued(job.queue, job.priority, now(), job.id);
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

-- sql/schema.sql: vacuum of the hot table keeps the cluster's throttling
-- (claims no longer wait for it; unthrottled, it took a core while a long
-- transaction left it nothing to remove).
ALTER TABLE pdoflow.active_jobs RESET (autovacuum_vacuum_cost_delay);

-- sql/roles.sql: the new functions are internal, save one for admins.
REVOKE ALL ON FUNCTION
    pdoflow._note_queued(text, integer, timestamptz, uuid),
    pdoflow._claim_levels(text[]),
    pdoflow._raise_claim_floor(text, integer, bigint, bigint, timestamptz, uuid),
    pdoflow._start_learning_claim_levels(text),
    pdoflow._finish_learning_claim_levels(text, bigint, integer[]),
    pdoflow.forget_claim_floors(),
    pdoflow._note_queued_row(),
    pdoflow._learn_claim_levels(text[]),
    pdoflow._pick_from_floors(integer, text[], text[])
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pdoflow.forget_claim_floors() TO pdoflow_admin;

-- Floors another install of this database left in shared memory mean
-- nothing to this one.
SELECT pdoflow.forget_claim_floors();
