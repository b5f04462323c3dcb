-- pdoflow 0.4.0 -> 0.5.0 (ALTER EXTENSION pdoflow UPDATE TO '0.5.0').
--
-- Portability and one home per rule (issue 16):
-- * The same extension builds for PostgreSQL 15, 17 and 18. Single-job
--   enqueue writes a plain job with an ordinary INSERT (a plan the session
--   keeps) instead of its own heap and index writes: the library changed,
--   enqueue's SQL declaration did not.
-- * The rules that pick a job's next state are written once, in the new
--   sql/api/states.sql: _waiting_state ('queued', or 'paused' in a paused
--   posting), _after_failed_attempt (retry or end) and
--   _failed_attempt_error. finish_many and _expire_leases decide failed
--   attempts through them; every path that queues a job asks
--   _waiting_state.
-- * claim and claim_job start attempts through one function,
--   _start_attempts.
-- * Every SQL path that adds jobs (_enqueue_general, both enqueue_many,
--   submit_dag) writes them through one function, _insert_jobs, which also
--   announces the queues that gained jobs due now.
\echo Use "ALTER EXTENSION pdoflow UPDATE" to load this file. \quit

-- sql/api/states.sql: new
-- The state of a job that waits to be claimed: 'queued', or 'paused' while
-- its posting is paused ('paused' keeps it out of the claim indexes until
-- the posting resumes). Asked by enqueue, DAG submission, a retry after a
-- failed attempt, release, a parent's end releasing its children, and
-- retry of a finished job.
CREATE FUNCTION pdoflow._waiting_state(posting_status text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT CASE WHEN posting_status = 'paused' THEN 'paused' ELSE 'queued' END;
END;

-- Where a failed attempt leads: 'failed' once its attempts are used up,
-- 'cancelled' when its posting was cancelled (it is not retried), else it
-- waits for its next attempt (_waiting_state). Asked by finish_many for an
-- attempt that reported an error and by _expire_leases for one whose lease
-- ran out.
CREATE FUNCTION pdoflow._after_failed_attempt(attempt integer, max_attempts integer, posting_status text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT CASE WHEN attempt >= max_attempts THEN 'failed'
                WHEN posting_status = 'cancelled' THEN 'cancelled'
                ELSE pdoflow._waiting_state(posting_status) END;
END;

-- The error a failed attempt leaves on its job: as reported, and for a job
-- not retried because its posting was cancelled, with that reason. (STABLE,
-- as format() is: an IMMUTABLE function around it would not be inlined.)
CREATE FUNCTION pdoflow._failed_attempt_error(error text, next_state text, posting uuid)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT CASE WHEN next_state = 'cancelled'
                THEN format('%s (not retried: posting %s was cancelled)', error, posting)
                ELSE error END;
END;

-- sql/api/claim.sql: new
CREATE FUNCTION pdoflow._start_attempts(ids uuid[], worker text, lease interval)
RETURNS TABLE (
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
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH claimed AS (
        UPDATE pdoflow.active_jobs AS j
        SET state = 'running',
            attempt = j.attempt + 1,
            worker = _start_attempts.worker,
            started_at = now(),
            heartbeat_at = NULL,
            lease_expires_at = now() + _start_attempts.lease
        WHERE j.id = ANY (ids)
        RETURNING j.id, j.task, j.args, j.queue, j.priority, j.attempt, j.max_attempts,
                  j.lease_expires_at, j.run_at, j.created_at, j.last_error, j.posting, j.depends_on
    )
    SELECT c.id, c.task, c.args, c.queue, c.priority, c.attempt, c.max_attempts,
           c.lease_expires_at, c.run_at, c.created_at, c.last_error, c.posting,
           CASE WHEN c.depends_on IS NOT NULL THEN pdoflow._parent_results(c.depends_on) END
    FROM claimed AS c
    ORDER BY c.priority DESC, c.run_at, c.id;
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
AS $$
#variable_conflict use_column
DECLARE
    picked uuid[];
BEGIN
    PERFORM pdoflow._check_claim(claim.n, claim.queues, claim.worker, claim.lease, claim.tasks);
    -- Even a claim that finds nothing shows the worker is alive.
    PERFORM pdoflow._record_worker(claim.worker);

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

-- sql/api/claim.sql: changed
CREATE OR REPLACE FUNCTION pdoflow.claim_job(
    job_id uuid,
    worker text     DEFAULT NULL,
    lease  interval DEFAULT '5 minutes'
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
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    picked uuid[];
BEGIN
    PERFORM pdoflow._check_job_id(claim_job.job_id);
    PERFORM pdoflow._check_claim(1, NULL, claim_job.worker, claim_job.lease, NULL);
    PERFORM pdoflow._record_worker(claim_job.worker);
    -- Locking re-reads the row as it is now: a job claimed, ended or paused
    -- meanwhile is not picked.
    SELECT array_agg(j.id) INTO picked
    FROM (
        SELECT j.id FROM pdoflow.active_jobs AS j
        WHERE j.id = claim_job.job_id AND j.state = 'queued'
        FOR NO KEY UPDATE
    ) AS j;
    IF picked IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT * FROM pdoflow._start_attempts(picked, claim_job.worker, claim_job.lease);
END
$$;

COMMENT ON FUNCTION pdoflow.claim_job(uuid, text, interval) IS
    'Claims the queued job job_id (even before its run_at) for lease; no row when it is not queued.';

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
    -- the posting's status after locking the job). Where a failure leads is
    -- _after_failed_attempt's to say (states.sql).
    SELECT array_agg(o.id) FILTER (WHERE d.ends),
           array_agg(d.next_state) FILTER (WHERE d.ends),
           array_agg(pdoflow._failed_attempt_error(o.error, d.next_state, j.posting)) FILTER (WHERE d.ends),
           array_agg(o.result) FILTER (WHERE d.ends),
           array_agg(o.id) FILTER (WHERE NOT d.ends),
           array_agg(o.error) FILTER (WHERE NOT d.ends),
           array_agg(d.next_state) FILTER (WHERE NOT d.ends),
           -- Per claim, in input order: its new state, NULL if not current.
           array_agg(CASE WHEN d.ends THEN d.next_state WHEN NOT d.ends THEN 'queued' END ORDER BY o.ord)
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
        -- OFFSET 0: the status stays a column, looked up once per claim, so
        -- the rules of states.sql that read it twice are inlined.
        SELECT CASE WHEN j.posting IS NOT NULL THEN
                   (SELECT p.status FROM pdoflow.postings AS p WHERE p.id = j.posting)
               END AS status
        OFFSET 0
    ) AS p ON true
    LEFT JOIN LATERAL (
        SELECT n.next_state, n.next_state NOT IN ('queued', 'paused') AS ends
        FROM (SELECT CASE WHEN o.error IS NULL THEN 'succeeded'
                          ELSE pdoflow._after_failed_attempt(j.attempt, j.max_attempts, p.status)
                     END AS next_state) AS n
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

-- sql/api/sweep.sql: changed
CREATE OR REPLACE FUNCTION pdoflow._expire_leases(max_jobs integer)
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

    -- Decide from a fresh snapshot of the locked rows, as finish_many does,
    -- by the same rule (_after_failed_attempt, states.sql).
    SELECT array_agg(j.id) FILTER (WHERE d.ends),
           array_agg(d.next_state) FILTER (WHERE d.ends),
           array_agg(pdoflow._failed_attempt_error(d.message, d.next_state, j.posting)) FILTER (WHERE d.ends),
           array_agg(j.id) FILTER (WHERE NOT d.ends),
           array_agg(d.message) FILTER (WHERE NOT d.ends),
           array_agg(d.next_state) FILTER (WHERE NOT d.ends)
    INTO end_ids, end_states, end_errors, retry_ids, retry_errors, retry_states
    FROM pdoflow.active_jobs AS j
    LEFT JOIN pdoflow.postings AS p ON p.id = j.posting
    CROSS JOIN LATERAL (
        SELECT n.next_state, n.next_state NOT IN ('queued', 'paused') AS ends,
               format('lease of attempt %s expired at %s on %s', j.attempt, j.lease_expires_at,
                      CASE WHEN j.worker IS NULL THEN 'an unnamed worker'
                           ELSE format('worker "%s"', j.worker) END) AS message
        FROM (SELECT pdoflow._after_failed_attempt(j.attempt, j.max_attempts, p.status) AS next_state) AS n
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
    SET state = pdoflow._waiting_state(posting_state),
        max_attempts = least(j.max_attempts::bigint + 1, 2147483647)::integer,
        worker = NULL,
        heartbeat_at = NULL,
        lease_expires_at = NULL
    WHERE j.id = release.id;
    IF pdoflow._waiting_state(posting_state) = 'queued' THEN
        PERFORM pdoflow._announce(job_queue);
    END IF;
    RETURN true;
END
$$;

COMMENT ON FUNCTION pdoflow.release(uuid, integer) IS
    'Hands the job of the current claim (id, attempt) back to its queue without counting the attempt against max_attempts; false if the claim is not current.';

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
    jobs          record;
BEGIN
    SELECT * INTO plan FROM pdoflow._plan_dag(submit_dag.dag::text);
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
        FROM unnest(plan.names, plan.ids, plan.nodes, plan.modes) WITH ORDINALITY AS n(name, id, node, mode, ord)
        LEFT JOIN edge AS d ON d.child = n.ord
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
           array_agg(j.name) AS names
    INTO jobs
    FROM (SELECT * FROM job ORDER BY job.ord) AS j;
    PERFORM pdoflow._insert_jobs(jobs.ids, jobs.tasks, jobs.args, jobs.queues, jobs.priorities, jobs.attempts,
                                 jobs.run_ats, jobs.states, submit_dag.posting, jobs.pending, jobs.parents,
                                 jobs.first_parents, jobs.parent_counts, jobs.modes, jobs.names);

    RETURN QUERY
    SELECT n.name, n.id FROM unnest(plan.names, plan.ids) WITH ORDINALITY AS n(name, id, ord) ORDER BY n.ord;
END
$$;

COMMENT ON FUNCTION pdoflow.submit_dag(jsonb, uuid) IS
    'Adds the jobs of a DAG document ({"nodes": [{"name", "task" or "dag", "after", "mode", ...}], "edges"}) in one statement; returns each job''s name (sub-DAG paths joined by /) and id.';

-- sql/api/enqueue.sql: changed
CREATE OR REPLACE FUNCTION pdoflow._new_job_placement(
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

-- sql/api/enqueue.sql: new
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
    nodes           text[]    DEFAULT NULL
) RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    notified bigint;
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
    -- The queues that gained jobs to run now, read from the input rather
    -- than the rows (RETURNING would hold every row of a bulk insert): jobs
    -- that share their queue, state and due time are one row here.
    SELECT count(pdoflow._announce(due.queue)) INTO notified
    FROM (
        SELECT DISTINCT coalesce(d.queue, CASE WHEN cardinality(queues) = 1 THEN queues[1] END) AS queue
        FROM ROWS FROM (unnest(queues), unnest(states), unnest(run_ats)) AS d(queue, state, run_at)
        WHERE coalesce(d.state, CASE WHEN cardinality(states) = 1 THEN states[1] END) = 'queued'
          AND coalesce(d.run_at, CASE WHEN cardinality(run_ats) = 1 THEN run_ats[1] END, now()) <= now()
    ) AS due;
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
    place  record;
BEGIN
    IF pdoflow._task_checks_needed() THEN
        PERFORM pdoflow._check_task_args(_enqueue_general.task, ARRAY[_enqueue_general.args], ARRAY['args']);
    END IF;
    SELECT * INTO place
    FROM pdoflow._new_job_placement(_enqueue_general.queue, _enqueue_general.priority,
                                    _enqueue_general.posting, _enqueue_general.depends_on,
                                    _enqueue_general.dependency_mode);
    PERFORM pdoflow._insert_jobs(
        ARRAY[job_id], ARRAY[_enqueue_general.task], ARRAY[_enqueue_general.args], ARRAY[place.job_queue],
        ARRAY[place.job_priority], ARRAY[_enqueue_general.max_attempts], ARRAY[_enqueue_general.run_at],
        ARRAY[place.job_state], _enqueue_general.posting,
        parents_pending => ARRAY[place.pending], parents => place.parents, first_parents => ARRAY[1],
        parent_counts => ARRAY[cardinality(place.parents)], modes => ARRAY[place.mode]);
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
    place   record;
    n       integer := cardinality(enqueue_many.args);
BEGIN
    PERFORM pdoflow._check_job_batch(enqueue_many.task, enqueue_many.args, enqueue_many.queue,
                                     enqueue_many.priority, enqueue_many.run_at, enqueue_many.max_attempts);
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
    PERFORM pdoflow._insert_jobs(
        job_ids, ARRAY[enqueue_many.task], enqueue_many.args, ARRAY[place.job_queue], ARRAY[place.job_priority],
        ARRAY[enqueue_many.max_attempts], ARRAY[enqueue_many.run_at], ARRAY[place.job_state],
        enqueue_many.posting,
        parents_pending => ARRAY[place.pending], parents => place.parents, first_parents => ARRAY[1],
        parent_counts => ARRAY[cardinality(place.parents)], modes => ARRAY[place.mode]);
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
    job_ids      uuid[];
    job          jsonb;
    one_by_one   boolean;
    checks       boolean;
    tasks        text[];
    job_args     jsonb[];
    queues       text[];
    priorities   integer[];
    attempts     integer[];
    run_ats      timestamptz[];
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
    -- One pass over the document: every array gets its elements in the same
    -- order, each job's beside its id (ROWS FROM pairs them).
    SELECT array_agg(spec.id),
           array_agg(spec.job ->> 'task'),
           array_agg(coalesce(nullif(spec.job -> 'args', 'null'::jsonb), '{}'::jsonb)),
           array_agg(coalesce(spec.job ->> 'queue', 'default')),
           array_agg(coalesce(nullif(spec.job -> 'priority', 'null')::integer, 0)),
           array_agg(coalesce(nullif(spec.job -> 'max_attempts', 'null')::integer, 5)),
           array_agg((spec.job ->> 'run_at')::timestamptz)
    INTO job_ids, tasks, job_args, queues, priorities, attempts, run_ats
    FROM ROWS FROM (jsonb_array_elements(enqueue_many.jobs),
                    unnest(pdoflow._uuid_v7_array(jsonb_array_length(enqueue_many.jobs)))) AS spec(job, id);
    IF job_ids IS NOT NULL THEN
        PERFORM pdoflow._insert_jobs(job_ids, tasks, job_args, queues, priorities, attempts, run_ats,
                                     ARRAY['queued']);
    END IF;
    -- The ids in the document's order (they are time-ordered as made).
    RETURN QUERY SELECT i FROM unnest(job_ids) AS i ORDER BY i;
END
$$;

COMMENT ON FUNCTION pdoflow.enqueue_many(jsonb) IS
    'Adds the jobs described by a JSON array of objects with enqueue''s parameters as keys; returns the ids in array order.';

-- sql/roles.sql: the new internal functions are the owner's only.
REVOKE ALL ON FUNCTION pdoflow._waiting_state(text), pdoflow._after_failed_attempt(integer, integer, text),
    pdoflow._failed_attempt_error(text, text, uuid), pdoflow._start_attempts(uuid[], text, interval),
    pdoflow._insert_jobs(uuid[], text[], jsonb[], text[], integer[], integer[], timestamptz[], text[], uuid,
                         integer[], uuid[], integer[], integer[], text[], text[]) FROM PUBLIC;
