-- pdoflow 0.11.0 -> 0.12.0 (ALTER EXTENSION pdoflow UPDATE TO '0.12.0').
--
-- Issue 20: what the HTTP API needs. Cumulative counters per queue (the
-- pdoflow.stats view, stats_reset, and the functions that change jobs
-- reporting what they did), await_ended (one session watching many jobs),
-- register_worker's tasks (a column of pdoflow.workers), register_task's
-- replace, and the JSON pointer of args that do not match their schema.
\echo Use "ALTER EXTENSION pdoflow UPDATE" to load this file. \quit

ALTER TABLE pdoflow.workers ADD COLUMN tasks text[];

-- Rust helpers (pdoflow-ext/src/stats/, input/checks.rs).
CREATE FUNCTION pdoflow."_count_jobs"(
	"event_name" TEXT, /* & str */
	"queues" TEXT[], /* :: std :: option :: Option < Vec < Option < String > > > */
	"n" bigint DEFAULT 1 /* i64 */
) RETURNS void
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'count_jobs_wrapper';

CREATE FUNCTION pdoflow."_count_ended"(
	"queues" TEXT[], /* :: std :: option :: Option < Vec < Option < String > > > */
	"states" TEXT[] /* :: std :: option :: Option < Vec < Option < String > > > */
) RETURNS void
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'count_ended_wrapper';

CREATE FUNCTION pdoflow."_stats"() RETURNS TABLE (
	"queue" TEXT,  /* Option < String > */
	"enqueued" bigint,  /* i64 */
	"claimed" bigint,  /* i64 */
	"succeeded" bigint,  /* i64 */
	"failed" bigint,  /* i64 */
	"retried" bigint,  /* i64 */
	"cancelled" bigint,  /* i64 */
	"leases_expired" bigint,  /* i64 */
	"stats_reset" timestamp with time zone  /* Option < TimestampWithTimeZone > */
)
STRICT VOLATILE PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'stats_wrapper';

CREATE FUNCTION pdoflow."_reset_stats"(
	"queue" TEXT /* Option < & str > */
) RETURNS void
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'reset_stats_wrapper';

CREATE FUNCTION pdoflow."_check_worker_tasks"(
	"tasks" TEXT[] /* :: std :: option :: Option < Vec < Option < String > > > */
) RETURNS VOID /* Checked */
STABLE PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'check_worker_tasks_wrapper';

-- Cumulative counters per queue, as the pg_stat_* views keep theirs:
-- enqueued, claimed, succeeded, failed, retried, cancelled and expired
-- leases since the server started or the counters were reset. Kept in
-- shared memory by Rust (pdoflow-ext/src/stats/); the functions that change
-- jobs report what they did through pdoflow._count_jobs and
-- pdoflow._count_ended, and a transaction's counts are added when it
-- commits. Empty without pdoflow in shared_preload_libraries.
CREATE VIEW pdoflow.stats AS
SELECT s.queue, s.enqueued, s.claimed, s.succeeded, s.failed, s.retried, s.cancelled,
       s.leases_expired, s.stats_reset
FROM pdoflow._stats() AS s;

COMMENT ON VIEW pdoflow.stats IS
    'Jobs enqueued, claimed, succeeded, failed, retried, cancelled and leases expired per queue since the server started or pdoflow.stats_reset; queue NULL: queues the counters had no room for.';

-- Zeroes the counters of one queue (its stats_reset becomes now), or, with
-- queue NULL, forgets every queue's counters in this database. Like
-- pg_stat_reset, it takes effect at once, whether the transaction commits
-- or not.
CREATE FUNCTION pdoflow.stats_reset(queue text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
BEGIN
    IF stats_reset.queue IS NOT NULL THEN
        PERFORM pdoflow._check_queue_name(stats_reset.queue);
    END IF;
    PERFORM pdoflow._reset_stats(stats_reset.queue);
END
$$;

COMMENT ON FUNCTION pdoflow.stats_reset(text) IS
    'Zeroes the pdoflow.stats counters of queue, or of every queue of this database when queue is NULL.';

-- One session watching many jobs (a server holding many clients' waits):
-- returns the jobs among ids that have ended, at once if any has;
-- otherwise it sleeps until any job of this database ends, or timeout
-- passes, and returns those among ids that have ended by then, possibly
-- none. Call it again with the jobs still waited for: a job added to the
-- set while a call sleeps wakes that call when it ends. Unknown ids are
-- left out. Without pdoflow in shared_preload_libraries it looks every
-- 50 ms until one of ids has ended.
CREATE FUNCTION pdoflow.await_ended(ids uuid[], timeout interval DEFAULT '30 seconds')
RETURNS TABLE (id uuid, state text)
LANGUAGE c VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS 'MODULE_PATHNAME', 'await_ended_wrapper';

COMMENT ON FUNCTION pdoflow.await_ended(uuid[], interval) IS
    'Returns the jobs among ids that have ended; waits for the next end of any job in this database (at most timeout) when none has.';

-- New jobs: the one place that says what a new job's row holds, that
-- announces the queues where jobs can run at once, and that notes the new
-- queued jobs for the claim floors. Every SQL path that adds
-- jobs (_enqueue_general, both enqueue_many, submit_dag) decides where each
-- job starts, then calls this; the Rust enqueue's plain job is the same row
-- with no posting and no parents (pdoflow-ext/src/api/enqueue.rs, checked
-- against this function by tests/tests/enqueue_row.rs).
--
-- One job per element of ids. Every other array holds one value per job, or
-- a single value that every job takes (enqueue_many's shared options), or
-- is NULL when no job has that value. A job's run_at NULL means now. Its
-- parents are parents[first_parent : first_parent + parent_count - 1]:
-- jobs that share their parents share one slice.
--
-- unique_keys (one per job, never shared) and unique_for (per job, or one
-- for all) make unique jobs (unique_keys.sql): a job whose key another job
-- holds is not added. Returns the id each job ended up with: its own, or the
-- holder's. enqueued_by, when given, stands in for the calling role (the
-- sweeper enqueues a schedule's jobs as the schedule's owner).
-- concurrency_keys (per job, or one for all) are for per-key limits; a job
-- of a paused or limited queue is marked controlled (queue_controls.sql).
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
    nodes           text[]    DEFAULT NULL,
    unique_keys     text[]    DEFAULT NULL,
    unique_for      interval[] DEFAULT NULL,
    enqueued_by     text      DEFAULT NULL,
    concurrency_keys text[]   DEFAULT NULL
) RETURNS uuid[]
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    -- Per job: the id it ends up with (see above).
    final_ids uuid[] := ids;
    n         integer := coalesce(cardinality(ids), 0);
    inserted  bigint;
    -- The queues whose jobs are marked controlled (queue_controls.sql).
    controlled_queues text[] := ARRAY(SELECT c.queue FROM pdoflow.queue_controls AS c
                                      WHERE c.released_at IS NULL);
BEGIN
    IF n = 0 THEN
        RETURN ids;  -- no jobs (the shared values alone would make a row below)
    END IF;
    IF unique_keys IS NOT NULL THEN
        final_ids := pdoflow._take_unique_keys(
            CASE WHEN cardinality(tasks) = 1 THEN array_fill(tasks[1], ARRAY[n]) ELSE tasks END,
            unique_keys,
            CASE WHEN cardinality(_insert_jobs.unique_for) = 1
                 THEN array_fill(_insert_jobs.unique_for[1], ARRAY[n]) ELSE _insert_jobs.unique_for END,
            ids);
    END IF;
    INSERT INTO pdoflow.active_jobs (id, posting, task, queue, priority, max_attempts, args, run_at,
                                     created_at, state, parents_pending, depends_on, dependency_mode,
                                     node, enqueued_by, unique_key, concurrency_key, controlled)
        SELECT j.id, j.posting, j.task, j.queue, j.priority, j.max_attempts, j.args,
               coalesce(j.run_at, now()), now(), j.state, j.pending,
               CASE WHEN j.parent_count > 0
                    THEN _insert_jobs.parents[j.first_parent : j.first_parent + j.parent_count - 1] END,
               j.mode, j.node, j.enqueued_by, j.unique_key, j.concurrency_key,
               j.queue = ANY (controlled_queues)
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
                   one.posting, one.enqueued_by, e.unique_key, e.final_id,
                   coalesce(one.concurrency_key, e.concurrency_key) AS concurrency_key
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
                       CASE WHEN cardinality(concurrency_keys) = 1 THEN concurrency_keys[1] END AS concurrency_key,
                       _insert_jobs.posting AS posting,
                       coalesce(_insert_jobs.enqueued_by, pdoflow._calling_role()) AS enqueued_by
                OFFSET 0
            ) AS one,
            ROWS FROM (unnest(ids), unnest(tasks), unnest(_insert_jobs.args), unnest(queues),
                       unnest(priorities), unnest(_insert_jobs.max_attempts), unnest(run_ats),
                       unnest(states), unnest(_insert_jobs.parents_pending), unnest(first_parents),
                       unnest(parent_counts), unnest(modes), unnest(nodes), unnest(unique_keys),
                       unnest(final_ids), unnest(concurrency_keys))
                 AS e(id, task, args, queue, priority, max_attempts, run_at, state, pending,
                      first_parent, parent_count, mode, node, unique_key, final_id, concurrency_key)
        ) AS j
        -- Not the jobs whose key another job holds.
        WHERE j.final_id = j.id;
    -- Counted for pdoflow.stats at commit (stats.sql): one call per statement.
    IF cardinality(queues) = 1 THEN
        GET DIAGNOSTICS inserted = ROW_COUNT;
        PERFORM pdoflow._count_jobs('enqueued', queues, inserted);
    ELSE
        PERFORM pdoflow._count_jobs('enqueued', ARRAY(
            SELECT d.queue FROM unnest(queues, ids, final_ids) AS d(queue, id, final_id)
            WHERE d.final_id = d.id));
    END IF;
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
            FROM ROWS FROM (unnest(queues), unnest(priorities), unnest(run_ats), unnest(states),
                            unnest(ids), unnest(final_ids))
                 AS d(queue, priority, run_at, state, id, final_id)
            WHERE d.final_id = d.id
        ) AS j
        WHERE j.state = 'queued'
        GROUP BY j.queue, j.priority
    ) AS l;
    RETURN final_ids;
END
$$;

-- Starts an attempt of each of the jobs ids, for worker and lease: the one
-- place where a job becomes running (claim and claim_job lock the queued
-- jobs they picked, then call this). The jobs of marked_queues took running
-- slots of their queue and are marked as holding them. at_time is the
-- claim's time: the transaction's, or the clock's for a claim that waited.
-- Returns the claims as claim returns them, in claim order.
CREATE OR REPLACE FUNCTION pdoflow._start_attempts(ids uuid[], worker text, lease interval,
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

-- Moves the active jobs ids to history in the given end states. A NULL error
-- keeps the job's last error; results are stored as given. Returns the jobs
-- moved (ids that were not active are left out). Children are not settled:
-- use _end_jobs.
CREATE OR REPLACE FUNCTION pdoflow._move_to_history(ids uuid[], states text[], errors text[], results jsonb[])
RETURNS TABLE (id uuid, state text)
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
DECLARE
    moved_ids    uuid[];
    moved_states text[];
    moved_queues text[];
    keyed_tasks  text[];
    keyed_keys   text[];
    keyed_ids    uuid[];
    keyed_states text[];
BEGIN
    WITH outcome AS (
        SELECT o.id, o.state, o.error, o.result
        FROM unnest(ids, states, errors, results) AS o(id, state, error, result)
    ), ended AS (
        -- By primary key: a join with the outcomes may be planned as a hash
        -- of the whole table when the batch is large.
        DELETE FROM pdoflow.active_jobs AS j
        WHERE j.id = ANY (ids)
        RETURNING j.*
    ), archived AS (
        INSERT INTO pdoflow.finished_jobs (id, posting, run_at, created_at, started_at, finished_at,
                                           priority, attempt, max_attempts, state, queue, task, worker,
                                           dependency_mode, node, last_error, depends_on, args, result,
                                           enqueued_by, unique_key, progress, concurrency_key)
        SELECT e.id, e.posting, e.run_at, e.created_at, e.started_at, now(),
               e.priority, e.attempt, e.max_attempts, o.state, e.queue, e.task, e.worker,
               e.dependency_mode, e.node, coalesce(o.error, e.last_error), e.depends_on, e.args,
               o.result, e.enqueued_by, e.unique_key, e.progress, e.concurrency_key
        FROM ended AS e
        JOIN outcome AS o ON o.id = e.id
        RETURNING finished_jobs.id, finished_jobs.state, finished_jobs.task, finished_jobs.unique_key,
                  finished_jobs.queue
    )
    SELECT array_agg(a.id), array_agg(a.state::text), array_agg(a.queue::text),
           array_agg(a.task::text) FILTER (WHERE a.unique_key IS NOT NULL),
           array_agg(a.unique_key) FILTER (WHERE a.unique_key IS NOT NULL),
           array_agg(a.id) FILTER (WHERE a.unique_key IS NOT NULL),
           array_agg(a.state::text) FILTER (WHERE a.unique_key IS NOT NULL)
    INTO moved_ids, moved_states, moved_queues, keyed_tasks, keyed_keys, keyed_ids, keyed_states
    FROM archived AS a;
    IF keyed_ids IS NOT NULL THEN
        PERFORM pdoflow._release_unique_keys(keyed_tasks, keyed_keys, keyed_ids, keyed_states);
    END IF;
    -- Sessions waiting in pdoflow.await_result for these jobs wake once
    -- this transaction commits.
    PERFORM pdoflow._jobs_ended(moved_ids);
    -- Counted for pdoflow.stats at commit (stats.sql).
    PERFORM pdoflow._count_ended(moved_queues, moved_states);
    RETURN QUERY SELECT m.id, m.state FROM unnest(moved_ids, moved_states) AS m(id, state);
END
$$;

-- Queues the running jobs ids again after a failed attempt: due after the
-- retry backoff, with the attempt's error, in the given state ('queued', or
-- 'paused' in a paused posting). The caller holds their locks. Returns them.
CREATE OR REPLACE FUNCTION pdoflow._requeue(ids uuid[], errors text[], states text[])
RETURNS TABLE (id uuid, queue text, run_at timestamptz, state text)
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH requeued AS (
        UPDATE pdoflow.active_jobs AS j
        SET state = r.state,
            run_at = now() + pdoflow._retry_delay(j.attempt),
            last_error = r.error,
            worker = NULL,
            heartbeat_at = NULL,
            lease_expires_at = NULL
        FROM unnest(ids, errors, states) AS r(id, error, state)
        WHERE j.id = r.id
        RETURNING j.id, j.queue::text AS queue, j.run_at, j.state::text AS state
    ), counted AS (
        -- For pdoflow.stats (stats.sql); joined below, so that it runs.
        SELECT pdoflow._count_jobs('retried', array_agg(q.queue)) FROM requeued AS q
    )
    SELECT q.id, q.queue, q.run_at, q.state FROM requeued AS q CROSS JOIN counted;
END
$$;

-- Takes back up to max_jobs claims whose lease expired: a job with attempts
-- left is queued again after the retry backoff, the others end as failed
-- (or cancelled, in a cancelled posting; counted as failed).
-- Either way last_error says which attempt lost its lease on which worker, and
-- the claim can no longer finish or heartbeat the job. A job whose ending
-- has to wait for a lock longer than lock_timeout (or deadlocks) stays as it
-- is, counted in skipped, for the next sweep.
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
    end_queues   text[];
    retry_ids    uuid[];
    retry_queues text[];
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
           array_agg(j.queue::text) FILTER (WHERE d.ends),
           array_agg(j.id) FILTER (WHERE NOT d.ends),
           array_agg(d.message) FILTER (WHERE NOT d.ends),
           array_agg(d.next_state) FILTER (WHERE NOT d.ends),
           array_agg(j.queue::text) FILTER (WHERE NOT d.ends)
    INTO end_ids, end_states, end_errors, end_queues, retry_ids, retry_errors, retry_states, retry_queues
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
        PERFORM pdoflow._count_jobs('leases_expired', retry_queues);
    END IF;
    IF end_ids IS NOT NULL THEN
        -- Ending settles the jobs' blocked children, which may have to wait
        -- for their locks. When the batch cannot, each job is tried alone,
        -- so that one job held up does not hold up the rest.
        BEGIN
            PERFORM pdoflow._end_jobs(end_ids, end_states, end_errors);
            PERFORM pdoflow._count_jobs('leases_expired', end_queues);
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
                    PERFORM pdoflow._count_jobs('leases_expired', ARRAY[end_queues[i]]);
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

-- Puts a failed or cancelled job back in the queue, due now, with one more
-- attempt allowed if it had used them all. A job with parents is blocked
-- again until they allow it to run (and is refused when they never can); a
-- job of a paused posting waits for it, and a cancelled posting refuses.
-- Returns false when the job is already active; a succeeded job cannot be retried.
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
    holder     uuid;
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
            -- A unique job takes its key back (unique_keys.sql), unless
            -- another job took it over meanwhile.
            IF job.unique_key IS NOT NULL THEN
                holder := (pdoflow._take_unique_keys(ARRAY[job.task::text], ARRAY[job.unique_key], NULL,
                                                     ARRAY[job.id]))[1];
                IF holder <> job.id THEN
                    RAISE EXCEPTION 'job % cannot be retried: job % holds its unique key % of task %',
                        retry.id, holder, pg_catalog.quote_literal(job.unique_key), pg_catalog.quote_literal(job.task)
                        USING ERRCODE = 'unique_violation',
                              HINT = 'Cancel that job first, or wait until it ends.';
                END IF;
            END IF;
            DELETE FROM pdoflow.finished_jobs AS f WHERE f.id = retry.id;
            INSERT INTO pdoflow.active_jobs (id, posting, run_at, created_at, priority, attempt, max_attempts,
                                             parents_pending, state, queue, task, dependency_mode, node,
                                             last_error, depends_on, args, enqueued_by, unique_key, progress,
                                             concurrency_key, controlled)
            VALUES (job.id, job.posting, now(), job.created_at, job.priority, job.attempt,
                    greatest(job.max_attempts, job.attempt + 1), pending, new_state, job.queue, job.task,
                    job.dependency_mode, job.node, job.last_error, job.depends_on, job.args,
                    job.enqueued_by, job.unique_key, NULL, job.concurrency_key,
                    EXISTS (SELECT FROM pdoflow.queue_controls AS c
                            WHERE c.queue = job.queue COLLATE "C" AND c.released_at IS NULL));
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
            PERFORM pdoflow._count_jobs('retried', ARRAY[job.queue::text]);
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

DROP FUNCTION pdoflow.register_worker(text);

-- For workers that wait idle on LISTEN: claim and heartbeat record a worker
-- too, but a worker that has nothing to do calls neither. tasks, when given,
-- records which tasks the worker serves (for people, dashboards and the
-- HTTP API's claims); NULL leaves what was recorded.
CREATE FUNCTION pdoflow.register_worker(name text, tasks text[] DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
BEGIN
    PERFORM pdoflow._check_worker_name(register_worker.name);
    PERFORM pdoflow._check_worker_tasks(register_worker.tasks);
    PERFORM pdoflow._record_worker(register_worker.name);
    IF register_worker.tasks IS NOT NULL THEN
        UPDATE pdoflow.workers AS w
        SET tasks = register_worker.tasks
        WHERE w.name = register_worker.name AND w.tasks IS DISTINCT FROM register_worker.tasks;
    END IF;
END
$$;

COMMENT ON FUNCTION pdoflow.register_worker(text, text[]) IS
    'Records the named worker as active and seen now, and the tasks it serves when given; claim and heartbeat do the same for the worker holding the claim.';

DROP FUNCTION pdoflow.register_task(text, jsonb, text);

-- With replace false, a task registered with another schema keeps it and
-- the call fails (23505): two parts of an application that disagree on a
-- task's arguments find out, rather than the last one winning. The same
-- schema again (jsonb equality: key order and spacing do not count) only
-- updates the description.
CREATE FUNCTION pdoflow.register_task(
    name        text,
    args_schema jsonb   DEFAULT NULL,
    description text    DEFAULT NULL,
    replace     boolean DEFAULT true
) RETURNS boolean
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    inserted   boolean;
    registered jsonb;
BEGIN
    PERFORM pdoflow._check_worker_name(register_task.name);
    PERFORM pdoflow._check_args_schema(register_task.args_schema::text);
    IF register_task.replace IS NULL THEN
        RAISE EXCEPTION 'replace must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF register_task.replace THEN
        INSERT INTO pdoflow.tasks AS t (name, args_schema, description)
        VALUES (register_task.name, register_task.args_schema, register_task.description)
        ON CONFLICT (name) DO UPDATE
        SET args_schema = excluded.args_schema, description = excluded.description, updated_at = now()
        RETURNING (xmax = 0) INTO inserted;
        RETURN inserted;
    END IF;
    -- A concurrent registration of the same name: the insert waits for it,
    -- and the lock below sees what it left.
    INSERT INTO pdoflow.tasks AS t (name, args_schema, description)
    VALUES (register_task.name, register_task.args_schema, register_task.description)
    ON CONFLICT (name) DO NOTHING
    RETURNING true INTO inserted;
    IF inserted THEN
        RETURN true;
    END IF;
    SELECT t.args_schema INTO registered FROM pdoflow.tasks AS t
    WHERE t.name = register_task.name FOR UPDATE;
    IF registered IS DISTINCT FROM register_task.args_schema THEN
        RAISE EXCEPTION 'task "%" is already registered with another args_schema', register_task.name
            USING ERRCODE = 'unique_violation',
                  DETAIL = format('Its args_schema is %s.', coalesce(registered::text, 'NULL (any args)')),
                  HINT = 'Pass replace => true to replace it, or unregister the task first.';
    END IF;
    UPDATE pdoflow.tasks AS t
    SET description = register_task.description, updated_at = now()
    WHERE t.name = register_task.name AND t.description IS DISTINCT FROM register_task.description;
    RETURN false;
END
$$;

COMMENT ON FUNCTION pdoflow.register_task(text, jsonb, text, boolean) IS
    'Registers a task (or updates its registration): the JSON Schema its jobs'' args must match (NULL: any args). True when it was new. With replace false, refuses (23505) to change an existing task''s schema.';

-- Privileges (sql/roles.sql): the new functions for their roles, nothing
-- for PUBLIC.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pdoflow FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    pdoflow.await_ended(uuid[], interval),
    pdoflow._stats()
TO pdoflow_producer;
GRANT SELECT ON pdoflow.stats TO pdoflow_producer;
GRANT EXECUTE ON FUNCTION
    pdoflow.register_worker(text, text[])
TO pdoflow_worker;
GRANT EXECUTE ON FUNCTION
    pdoflow.register_task(text, jsonb, text, boolean),
    pdoflow.stats_reset(text)
TO pdoflow_admin;
