-- Claiming: atomically take up to n due jobs for one worker.
--
-- FOR NO KEY UPDATE SKIP LOCKED lets concurrent claimers pass over each
-- other's rows instead of waiting, so no two claims ever get the same job.
-- (NO KEY: a claim changes no key, and a plain FOR UPDATE would also skip
-- parents that a child being enqueued holds FOR KEY SHARE.) Each claim
-- increments attempt; (id, attempt) names the claim in finish and heartbeat.
-- A job with parents gets their results in parent_results (see
-- dependencies.sql); blocked jobs and paused postings' jobs are never claimed.
-- Scans start at each priority level's claim floor (claim_floors.sql), past
-- the index entries of jobs claimed since vacuum last ran.

-- Starts an attempt of each of the jobs ids, for worker and lease: the one
-- place where a job becomes running (claim and claim_job lock the queued
-- jobs they picked, then call this). The jobs of marked_queues took running
-- slots of their queue and are marked as holding them. at_time is the
-- claim's time: the transaction's, or the clock's for a claim that waited.
-- Returns the claims as claim returns them, in claim order.
CREATE FUNCTION pdoflow._start_attempts(ids uuid[], worker text, lease interval,
                                        marked_queues text[] DEFAULT '{}', at_time timestamptz DEFAULT now())
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
            started_at = at_time,
            heartbeat_at = NULL,
            progress = NULL,
            lease_expires_at = at_time + _start_attempts.lease,
            -- A job of a limited queue holds a running slot (queue_controls.sql).
            controlled = j.queue = ANY (marked_queues)
        WHERE j.id = ANY (ids)
        RETURNING j.id, j.task, j.args, j.queue, j.priority, j.attempt, j.max_attempts,
                  j.lease_expires_at, j.run_at, j.created_at, j.last_error, j.posting, j.depends_on
    ), counted AS (
        -- For pdoflow.stats (stats.sql); joined below, so that it runs.
        SELECT pdoflow._count_jobs('claimed', array_agg(c.queue::text)) FROM claimed AS c
    )
    SELECT c.id, c.task, c.args, c.queue, c.priority, c.attempt, c.max_attempts,
           c.lease_expires_at, c.run_at, c.created_at, c.last_error, c.posting,
           CASE WHEN c.depends_on IS NOT NULL THEN pdoflow._parent_results(c.depends_on) END
    FROM claimed AS c CROSS JOIN counted
    ORDER BY c.priority DESC, c.run_at, c.id;
END
$$;

-- Picks and locks up to n jobs due by due_by from queues (NULL: every queue)
-- and of tasks (NULL: any), in claim order, from the claim floors where they are
-- known, else from each level's start. With queues NULL it sees the jobs of
-- queues without controls only (the every-queue index leaves out the rest).
CREATE FUNCTION pdoflow._pick_jobs(n integer, queues text[], tasks text[], due_by timestamptz DEFAULT now())
RETURNS uuid[]
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
DECLARE
    picked uuid[];
BEGIN
    -- Each level from its floor (claim_floors.sql), when the floors are known.
    picked := pdoflow._pick_from_floors(n, queues, tasks, due_by);
    IF picked IS NOT NULL THEN
        RETURN picked;
    END IF;

    -- Otherwise every level from its start; and list the levels, so that
    -- the next claims can use the floors.
    PERFORM pdoflow._learn_claim_levels(queues);
    IF queues IS NULL THEN
        SELECT array_agg(j.id) INTO picked
        FROM (
            SELECT j.id
            FROM pdoflow.active_jobs AS j
            WHERE j.state = 'queued' AND NOT j.controlled AND j.run_at <= due_by
              AND (tasks IS NULL OR j.task = ANY (tasks COLLATE "C"))
            ORDER BY j.priority DESC, j.run_at, j.id
            LIMIT n
            FOR NO KEY UPDATE SKIP LOCKED
        ) AS j;
    ELSE
        -- Walk each queue's index in claim order and merge: one ordered index
        -- scan per queue instead of sorting every queued job of all of them.
        -- Rows locked here but not picked are released when the transaction ends.
        SELECT array_agg(c.id) INTO picked
        FROM (
            SELECT c.id
            FROM (SELECT DISTINCT q FROM unnest(queues) AS q) AS wanted
            CROSS JOIN LATERAL (
                SELECT j.id, j.priority, j.run_at
                FROM pdoflow.active_jobs AS j
                WHERE j.state = 'queued' AND j.queue = wanted.q COLLATE "C" AND j.run_at <= due_by
                  AND (tasks IS NULL OR j.task = ANY (tasks COLLATE "C"))
                ORDER BY j.priority DESC, j.run_at, j.id
                LIMIT n
                FOR NO KEY UPDATE SKIP LOCKED
            ) AS c
            ORDER BY c.priority DESC, c.run_at, c.id
            LIMIT n
        ) AS c;
    END IF;
    RETURN coalesce(picked, '{}');
END
$$;

-- Picks and locks up to n due jobs of queue_name (of tasks) in claim order,
-- passing over the jobs of keys that have key_limit jobs running. A claim
-- holds each key it looks at until it ends (an advisory lock), so that no
-- other claim counts that key's running jobs meanwhile; a key that another
-- claim holds is passed over as if full.
CREATE FUNCTION pdoflow._pick_with_key_limit(n integer, queue_name text, tasks text[], key_limit integer,
                                             due_by timestamptz DEFAULT now())
RETURNS uuid[]
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    picked     uuid[] := '{}';
    candidate  record;
    full_keys  text[] := '{}';
    room_keys  text[] := '{}';
    room_left  integer[] := '{}';
    i          integer;
    running    bigint;
BEGIN
    -- Read without locks: rows of full keys are passed over, not locked.
    FOR candidate IN
        SELECT j.id, j.concurrency_key AS key
        FROM pdoflow.active_jobs AS j
        WHERE j.state = 'queued' AND j.queue = queue_name COLLATE "C" AND j.run_at <= due_by
          AND (tasks IS NULL OR j.task = ANY (tasks COLLATE "C"))
        ORDER BY j.priority DESC, j.run_at, j.id
    LOOP
        IF candidate.key IS NOT NULL THEN
            CONTINUE WHEN candidate.key = ANY (full_keys);
            i := array_position(room_keys, candidate.key);
            IF i IS NULL THEN
                IF NOT pg_try_advisory_xact_lock('pdoflow.active_jobs'::regclass::oid::integer,
                                                 hashtext(queue_name || E'\x1f' || candidate.key)) THEN
                    full_keys := full_keys || candidate.key;
                    CONTINUE;
                END IF;
                -- A new snapshot, taken with the key held: claims of this
                -- key that committed before are seen running.
                SELECT count(*) INTO running
                FROM pdoflow.active_jobs AS r
                WHERE r.state = 'running' AND r.queue = queue_name COLLATE "C"
                  AND r.concurrency_key = candidate.key COLLATE "C";
                room_keys := room_keys || candidate.key;
                room_left := room_left || (key_limit - running)::integer;
                i := cardinality(room_keys);
            END IF;
            IF room_left[i] <= 0 THEN
                full_keys := full_keys || candidate.key;
                CONTINUE;
            END IF;
        END IF;
        -- Still queued, and nobody else's: lock it.
        PERFORM 1 FROM pdoflow.active_jobs AS j
        WHERE j.id = candidate.id AND j.state = 'queued'
        FOR NO KEY UPDATE SKIP LOCKED;
        IF FOUND THEN
            picked := picked || candidate.id;
            IF candidate.key IS NOT NULL THEN
                room_left[i] := room_left[i] - 1;
            END IF;
            EXIT WHEN cardinality(picked) >= n;
        END IF;
    END LOOP;
    RETURN picked;
END
$$;

-- What one look of a claim takes: up to n jobs (ids, locked, in claim
-- order) within the controls of their queues, the queues whose jobs took
-- running slots (marked_queues), and, when a rate limit held jobs back,
-- when it next allows a claim (next_try; else infinity).
CREATE FUNCTION pdoflow._pick_claim(n integer, queues text[], tasks text[], due_by timestamptz,
                                    OUT ids uuid[], OUT marked_queues text[], OUT next_try timestamptz)
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    -- Every queue's controls, read once (one element per controlled queue).
    c_queues       text[];
    c_paused       boolean[];
    c_max_running  integer[];
    c_rate         integer[];
    c_per          interval[];
    c_key_limit    integer[];
    i              integer;
    queue_name     text;
    dropped        record;
    plain_queues   text[];
    limited_ids    uuid[] := '{}';
    strays         uuid[];
    got            uuid[];
    allowed        integer;
    taken          integer;
    count_attempt  bigint;
BEGIN
    marked_queues := '{}';
    next_try := 'infinity';
    SELECT array_agg(c.queue), array_agg(c.paused), array_agg(c.max_running), array_agg(c.rate),
           array_agg(c.per), array_agg(c.key_limit)
    INTO c_queues, c_paused, c_max_running, c_rate, c_per, c_key_limit
    FROM pdoflow.queue_controls AS c
    WHERE c.released_at IS NULL;
    -- No queue has controls: the plain claim.
    IF c_queues IS NULL THEN
        ids := pdoflow._pick_jobs(n, queues, tasks, due_by);
        RETURN;
    END IF;

    -- The queues without controls, as without any.
    IF queues IS NULL THEN
        ids := pdoflow._pick_jobs(n, NULL, tasks, due_by);
        -- Jobs enqueued unmarked while their queue got controls reach the
        -- every-queue index: mark them, and leave them to their queue's limits.
        IF cardinality(ids) > 0 THEN
            WITH marked AS (
                UPDATE pdoflow.active_jobs AS j SET controlled = true
                WHERE j.id = ANY (ids) AND j.queue = ANY (c_queues COLLATE "C")
                RETURNING j.id
            )
            SELECT array_agg(m.id) INTO strays FROM marked AS m;
            IF strays IS NOT NULL THEN
                ids := ARRAY(SELECT s.id FROM unnest(ids) AS s(id) WHERE s.id <> ALL (strays));
            END IF;
        END IF;
    ELSE
        plain_queues := ARRAY(SELECT q FROM unnest(queues) AS q WHERE q <> ALL (c_queues));
        ids := CASE WHEN cardinality(plain_queues) = 0 THEN '{}'
                    ELSE pdoflow._pick_jobs(n, plain_queues, tasks, due_by) END;
    END IF;

    -- Each limited queue within its limits: running slots and rate tokens
    -- are taken first, and what the pick did not use is given back.
    FOR i IN 1 .. cardinality(c_queues) LOOP
        queue_name := c_queues[i];
        CONTINUE WHEN c_paused[i] OR (queues IS NOT NULL AND queue_name <> ALL (queues));
        allowed := n;
        IF c_max_running[i] IS NOT NULL THEN
            taken := pdoflow._take_running_slots(queue_name, allowed, c_max_running[i]);
            IF taken IS NULL THEN
                -- Not counted since the server started or the limits
                -- changed: count the marked running jobs, waiting (FOR
                -- SHARE) for every transaction that is stopping one.
                count_attempt := pdoflow._start_running_count(queue_name);
                IF count_attempt IS NOT NULL THEN
                    PERFORM pdoflow._finish_running_count(queue_name, count_attempt, (
                        SELECT count(*) FROM (
                            SELECT 1 FROM pdoflow.active_jobs AS r
                            WHERE r.state = 'running' AND r.queue = queue_name COLLATE "C" AND r.controlled
                            FOR SHARE
                        ) AS r));
                    taken := pdoflow._take_running_slots(queue_name, allowed, c_max_running[i]);
                END IF;
            END IF;
            allowed := coalesce(taken, 0);
        END IF;
        IF allowed > 0 AND c_rate[i] IS NOT NULL THEN
            taken := pdoflow._take_rate_tokens(queue_name, allowed, c_rate[i], c_per[i]);
            IF taken < allowed AND c_max_running[i] IS NOT NULL THEN
                PERFORM pdoflow._give_back_running_slots(queue_name, allowed - taken);
            END IF;
            IF taken < allowed THEN
                next_try := least(next_try, pdoflow._next_claim_allowed(queue_name, c_rate[i], c_per[i]));
            END IF;
            allowed := taken;
        END IF;
        CONTINUE WHEN allowed = 0;
        IF c_key_limit[i] IS NULL THEN
            got := pdoflow._pick_jobs(allowed, ARRAY[queue_name], tasks, due_by);
        ELSE
            got := pdoflow._pick_with_key_limit(allowed, queue_name, tasks, c_key_limit[i], due_by);
        END IF;
        IF cardinality(got) < allowed THEN
            PERFORM pdoflow._give_back_running_slots(queue_name, allowed - cardinality(got)),
                    pdoflow._give_back_rate_tokens(queue_name, allowed - cardinality(got));
        END IF;
        IF cardinality(got) > 0 THEN
            limited_ids := limited_ids || got;
            marked_queues := marked_queues || queue_name;
        END IF;
    END LOOP;

    -- n jobs at most, in claim order over all queues; what the limited
    -- queues picked beyond that goes back.
    IF cardinality(limited_ids) > 0 THEN
        IF cardinality(ids) = 0 AND cardinality(limited_ids) <= n THEN
            ids := limited_ids;
            RETURN;
        END IF;
        ids := ids || limited_ids;
        IF cardinality(ids) > n THEN
            ids := ARRAY(SELECT j.id FROM pdoflow.active_jobs AS j WHERE j.id = ANY (ids)
                         ORDER BY j.priority DESC, j.run_at, j.id LIMIT n);
            FOR dropped IN
                SELECT j.queue, count(*)::integer AS jobs FROM pdoflow.active_jobs AS j
                WHERE j.id = ANY (limited_ids) AND j.id <> ALL (ids)
                GROUP BY j.queue
            LOOP
                PERFORM pdoflow._give_back_running_slots(dropped.queue, dropped.jobs),
                        pdoflow._give_back_rate_tokens(dropped.queue, dropped.jobs);
            END LOOP;
        END IF;
    END IF;
END
$$;

-- Claims up to n due jobs. With wait, a claim that finds none sleeps until
-- jobs may have become available (claim_wait in pdoflow-ext) and looks
-- again, until wait has passed: it returns as soon as it has jobs.
CREATE FUNCTION pdoflow.claim(
    n      integer  DEFAULT 1,
    queues text[]   DEFAULT NULL,
    worker text     DEFAULT NULL,
    lease  interval DEFAULT '5 minutes',
    tasks  text[]   DEFAULT NULL,
    wait   interval DEFAULT '0'
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
-- Claims walk the claim indexes in their order and stop after n jobs
-- (_pick_jobs, _pick_with_key_limit). Planned from statistics that an
-- ANALYZE took of a nearly empty table, or of one full of rows a long
-- transaction kept from vacuum, a bitmap or sequential scan looked cheaper,
-- and fetched and sorted every queued job each time. (Set here, once per
-- claim: set on each helper, it cost every call a save and restore.) The
-- few rows of queue_controls have no index to use instead: with sequential
-- scans off, their plans cost more than jit_above_cost, and JIT compiled
-- them on every claim (20-30 ms each).
SET enable_bitmapscan = off
SET enable_seqscan = off
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    picked   record;
    deadline timestamptz;
    -- The claim's time: the transaction's; the clock's once it has waited.
    at_time  timestamptz := now();
    next_due timestamptz;
BEGIN
    PERFORM pdoflow._check_claim(claim.n, claim.queues, claim.worker, claim.lease, claim.tasks);
    PERFORM pdoflow._check_claim_wait(claim.wait);
    -- Even a claim that finds nothing shows the worker is alive.
    PERFORM pdoflow._record_worker(claim.worker);
    IF claim.wait > interval '0' THEN
        deadline := clock_timestamp() + claim.wait;
        -- In the waiting room before the first look: whatever is made
        -- claimable after it wakes the sleep that follows.
        PERFORM pdoflow._claim_wait_enter(claim.queues);
    END IF;
    LOOP
        picked := pdoflow._pick_claim(claim.n, claim.queues, claim.tasks, at_time);
        IF cardinality(picked.ids) > 0 THEN
            RETURN QUERY SELECT * FROM pdoflow._start_attempts(picked.ids, claim.worker, claim.lease,
                                                                picked.marked_queues, at_time);
            EXIT;
        END IF;
        EXIT WHEN deadline IS NULL OR clock_timestamp() >= deadline;
        -- Until woken, the deadline, the next claim a rate limit allows, or
        -- the next delayed job falling due (the sweeper also wakes claims
        -- for those, where it runs).
        next_due := (SELECT j.run_at FROM pdoflow.active_jobs AS j
                     WHERE j.state = 'queued' AND j.run_at > j.created_at AND j.run_at > at_time
                       AND (claim.queues IS NULL OR j.queue = ANY (claim.queues COLLATE "C"))
                     ORDER BY j.run_at LIMIT 1);
        PERFORM pdoflow._claim_wait_sleep(least(deadline, picked.next_try, next_due));
        at_time := clock_timestamp();
    END LOOP;
    IF deadline IS NOT NULL THEN
        PERFORM pdoflow._claim_wait_leave();
    END IF;
END
$$;

COMMENT ON FUNCTION pdoflow.claim(integer, text[], text, interval, text[], interval) IS
    'Takes up to n due jobs (from the given queues and of the given tasks, or all when NULL) in priority, due-time, age order, for lease, within the queues'' controls; with wait, waits up to that long for jobs to become available.';

-- Claims one particular queued job, due or not: for running a job by hand
-- (pdoflow-run execute-job). No row when the job is not queued (blocked
-- jobs and the jobs of a paused posting are not).
CREATE FUNCTION pdoflow.claim_job(
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
        PERFORM pdoflow._require_active_jobs_in_snapshot();
        RETURN;
    END IF;
    RETURN QUERY SELECT * FROM pdoflow._start_attempts(picked, claim_job.worker, claim_job.lease);
END
$$;

COMMENT ON FUNCTION pdoflow.claim_job(uuid, text, interval) IS
    'Claims the queued job job_id (even before its run_at) for lease; no row when it is not queued.';
