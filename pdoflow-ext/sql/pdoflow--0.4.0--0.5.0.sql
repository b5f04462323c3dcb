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
\echo Use "ALTER EXTENSION pdoflow UPDATE" to load this file. \quit

-- sql/api/states.sql: new
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
-- not retried because its posting was cancelled, with that reason.
CREATE FUNCTION pdoflow._failed_attempt_error(error text, next_state text, posting uuid)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
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
        SELECT CASE WHEN j.posting IS NOT NULL THEN
                   (SELECT p.status FROM pdoflow.postings AS p WHERE p.id = j.posting)
               END AS status
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

-- sql/roles.sql: the new internal functions are the owner's only.
REVOKE ALL ON FUNCTION pdoflow._waiting_state(text), pdoflow._after_failed_attempt(integer, integer, text),
    pdoflow._failed_attempt_error(text, text, uuid), pdoflow._start_attempts(uuid[], text, interval) FROM PUBLIC;
