-- pdoflow 0.9.0 -> 0.10.0 (ALTER EXTENSION pdoflow UPDATE TO '0.10.0').
--
-- Issue 18: unique jobs (enqueue's unique_key and unique_for, in every
-- form), progress reports, pdoflow.await_result, and cron schedules run by
-- the sweeper. New columns on both job tables, the tables unique_keys and
-- cron_schedules, and the functions that use them.
\echo Use "ALTER EXTENSION pdoflow UPDATE" to load this file. \quit

ALTER TABLE pdoflow.active_jobs ADD COLUMN unique_key text, ADD COLUMN progress jsonb;
ALTER TABLE pdoflow.finished_jobs ADD COLUMN unique_key text, ADD COLUMN progress jsonb;

CREATE OR REPLACE VIEW pdoflow.jobs AS
SELECT id, task, queue, priority,
       CASE state WHEN 'paused' THEN 'queued' ELSE state END AS state,
       attempt, max_attempts, args,
       NULL::jsonb AS result, last_error, run_at, created_at, started_at,
       NULL::timestamptz AS finished_at, lease_expires_at, worker, heartbeat_at,
       posting, depends_on, dependency_mode, node, enqueued_by, unique_key, progress
FROM pdoflow.active_jobs
UNION ALL
SELECT id, task, queue, priority, state, attempt, max_attempts, args,
       result, last_error, run_at, created_at, started_at,
       finished_at, NULL::timestamptz AS lease_expires_at, worker, NULL::timestamptz AS heartbeat_at,
       posting, depends_on, dependency_mode, node, enqueued_by, unique_key, progress
FROM pdoflow.finished_jobs;

COMMENT ON VIEW pdoflow.jobs IS
    'Every job, whatever its state: blocked, queued, running, succeeded, failed or cancelled.';

-- Unique jobs: which job holds each (task, unique_key), and from when a new
-- job may take the key over (see sql/api/unique_keys.sql). A row is the
-- lock that makes concurrent enqueues of one key agree on one job.
CREATE TABLE pdoflow.unique_keys (
    task        text        COLLATE "C" NOT NULL,
    unique_key  text        COLLATE "C" NOT NULL,
    job         uuid        NOT NULL,
    -- How long after succeeding the job keeps its key (NULL: not at all).
    unique_for  interval,
    -- NULL while the job is blocked, queued or running; once it ended, the
    -- time from which a new job may take the key.
    released_at timestamptz,
    CONSTRAINT unique_keys_pkey PRIMARY KEY (task, unique_key)
);

COMMENT ON TABLE pdoflow.unique_keys IS
    'Unique keys of jobs enqueued with unique_key: the job holding each, and when it lets go. Changed only by the pdoflow functions.';

-- Retention forgets keys released long ago.
CREATE INDEX unique_keys_released_idx ON pdoflow.unique_keys (released_at) WHERE released_at IS NOT NULL;

-- Cron schedules (pdoflow.schedule; read pdoflow.schedules). The sweeper
-- enqueues a schedule's due occurrence and moves next_run_at on in the same
-- transaction, so each occurrence is enqueued once, whatever crashes.
CREATE TABLE pdoflow.cron_schedules (
    name         text        COLLATE "C" NOT NULL,
    cron         text        NOT NULL,
    time_zone    text        NOT NULL,
    task         text        COLLATE "C" NOT NULL,
    args         jsonb       NOT NULL,
    queue        text        COLLATE "C" NOT NULL,
    priority     integer     NOT NULL,
    max_attempts integer     NOT NULL,
    -- After downtime: true runs one job for the occurrences missed, false
    -- skips them.
    catch_up     boolean     NOT NULL,
    paused       boolean     NOT NULL DEFAULT false,
    -- Jobs are enqueued as this role, under its task grants.
    owner        regrole     NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    -- The next occurrence not enqueued yet.
    next_run_at  timestamptz NOT NULL,
    -- The occurrence enqueued last (its scheduled time), and its job.
    last_run_at  timestamptz,
    last_job     uuid,
    -- Why the last due occurrence was not enqueued, if it was not.
    last_error   text,
    CONSTRAINT cron_schedules_pkey PRIMARY KEY (name)
);

COMMENT ON TABLE pdoflow.cron_schedules IS
    'Cron schedules. Read pdoflow.schedules; change them only with pdoflow.schedule, unschedule, pause_schedule and resume_schedule.';

-- The sweeper finds the schedules that are due.
CREATE INDEX cron_schedules_due_idx ON pdoflow.cron_schedules (next_run_at) WHERE NOT paused;

CREATE VIEW pdoflow.schedules AS
SELECT name, cron, task, queue, time_zone, next_run_at, last_run_at, last_job, paused,
       args, priority, max_attempts, catch_up, owner::text AS owner, last_error, created_at, updated_at
FROM pdoflow.cron_schedules;

COMMENT ON VIEW pdoflow.schedules IS
    'Cron schedules: when each runs next, when it ran last and which job that made.';

SELECT pg_catalog.pg_extension_config_dump('pdoflow.unique_keys', '');
SELECT pg_catalog.pg_extension_config_dump('pdoflow.cron_schedules', '');

-- Rust helpers (pdoflow-ext/src/input/checks.rs, results/, schedules/).
CREATE FUNCTION pdoflow."_check_unique_keys"(
	"keys" TEXT[], /* :: std :: option :: Option < Vec < Option < String > > > */
	"unique_for" interval, /* Option < Interval > */
	"jobs" INT /* Option < i32 > */
) RETURNS VOID /* Checked */
STABLE PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'check_unique_keys_wrapper';

CREATE FUNCTION pdoflow."_unique_for"(
	"text" TEXT, /* Option < & str > */
	"param" TEXT /* & str */
) RETURNS interval /* Result < Option < Interval > , ErrorReport > */
STABLE PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'unique_for_value_wrapper';

CREATE FUNCTION pdoflow."_check_progress"(
	"progress" anyelement /* Option < AnyElement > */
) RETURNS VOID /* Checked */
STABLE PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'check_progress_wrapper';

CREATE FUNCTION pdoflow."_jobs_ended"(
	"ids" uuid[] /* :: std :: option :: Option < Vec < Option < pgrx :: Uuid > > > */
) RETURNS void
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'jobs_ended_wrapper';

CREATE FUNCTION pdoflow."_check_schedule_name"(
	"name" TEXT /* Option < & str > */
) RETURNS VOID /* Result < (), ErrorReport > */
STABLE PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'check_schedule_name_wrapper';

CREATE FUNCTION pdoflow."_check_schedule"(
	"cron" TEXT, /* Option < & str > */
	"time_zone" TEXT /* Option < & str > */
) RETURNS VOID /* Result < (), ErrorReport > */
STABLE PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'check_schedule_wrapper';

CREATE FUNCTION pdoflow."_cron_next"(
	"cron" TEXT, /* & str */
	"time_zone" TEXT, /* & str */
	"after" timestamp with time zone /* TimestampWithTimeZone */
) RETURNS timestamp with time zone /* Result < TimestampWithTimeZone, ErrorReport > */
STRICT STABLE PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cron_next_wrapper';

CREATE FUNCTION pdoflow."_cron_latest"(
	"cron" TEXT, /* & str */
	"time_zone" TEXT, /* & str */
	"until" timestamp with time zone /* TimestampWithTimeZone */
) RETURNS timestamp with time zone /* Result < Option < TimestampWithTimeZone > , ErrorReport > */
STRICT STABLE PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cron_latest_wrapper';

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
                                           enqueued_by, unique_key, progress)
        SELECT e.id, e.posting, e.run_at, e.created_at, e.started_at, now(),
               e.priority, e.attempt, e.max_attempts, o.state, e.queue, e.task, e.worker,
               e.dependency_mode, e.node, coalesce(o.error, e.last_error), e.depends_on, e.args,
               o.result, e.enqueued_by, e.unique_key, e.progress
        FROM ended AS e
        JOIN outcome AS o ON o.id = e.id
        RETURNING finished_jobs.id, finished_jobs.state, finished_jobs.task, finished_jobs.unique_key
    )
    SELECT array_agg(a.id), array_agg(a.state::text),
           array_agg(a.task::text) FILTER (WHERE a.unique_key IS NOT NULL),
           array_agg(a.unique_key) FILTER (WHERE a.unique_key IS NOT NULL),
           array_agg(a.id) FILTER (WHERE a.unique_key IS NOT NULL),
           array_agg(a.state::text) FILTER (WHERE a.unique_key IS NOT NULL)
    INTO moved_ids, moved_states, keyed_tasks, keyed_keys, keyed_ids, keyed_states
    FROM archived AS a;
    IF keyed_ids IS NOT NULL THEN
        PERFORM pdoflow._release_unique_keys(keyed_tasks, keyed_keys, keyed_ids, keyed_states);
    END IF;
    -- Sessions waiting in pdoflow.await_result for these jobs wake once
    -- this transaction commits.
    PERFORM pdoflow._jobs_ended(moved_ids);
    RETURN QUERY SELECT m.id, m.state FROM unnest(moved_ids, moved_states) AS m(id, state);
END
$$;

DROP FUNCTION pdoflow._insert_jobs(uuid[], text[], jsonb[], text[], integer[], integer[], timestamptz[], text[], uuid, integer[], uuid[], integer[], integer[], text[], text[]);

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
    nodes           text[]    DEFAULT NULL,
    unique_keys     text[]    DEFAULT NULL,
    unique_for      interval[] DEFAULT NULL,
    enqueued_by     text      DEFAULT NULL
) RETURNS uuid[]
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    -- Per job: the id it ends up with (see above).
    final_ids uuid[] := ids;
    n         integer := coalesce(cardinality(ids), 0);
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
                                     node, enqueued_by, unique_key)
        SELECT j.id, j.posting, j.task, j.queue, j.priority, j.max_attempts, j.args,
               coalesce(j.run_at, now()), now(), j.state, j.pending,
               CASE WHEN j.parent_count > 0
                    THEN _insert_jobs.parents[j.first_parent : j.first_parent + j.parent_count - 1] END,
               j.mode, j.node, j.enqueued_by, j.unique_key
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
                   one.posting, one.enqueued_by, e.unique_key, e.final_id
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
                       _insert_jobs.posting AS posting,
                       coalesce(_insert_jobs.enqueued_by, pdoflow._calling_role()) AS enqueued_by
                OFFSET 0
            ) AS one,
            ROWS FROM (unnest(ids), unnest(tasks), unnest(_insert_jobs.args), unnest(queues),
                       unnest(priorities), unnest(_insert_jobs.max_attempts), unnest(run_ats),
                       unnest(states), unnest(_insert_jobs.parents_pending), unnest(first_parents),
                       unnest(parent_counts), unnest(modes), unnest(nodes), unnest(unique_keys),
                       unnest(final_ids))
                 AS e(id, task, args, queue, priority, max_attempts, run_at, state, pending,
                      first_parent, parent_count, mode, node, unique_key, final_id)
        ) AS j
        -- Not the jobs whose key another job holds.
        WHERE j.final_id = j.id;
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

DROP FUNCTION pdoflow._enqueue_general(text, jsonb, text, integer, timestamptz, integer, uuid, uuid[], text);

-- pdoflow.enqueue for the jobs its fast path leaves (see
-- pdoflow-ext/src/api/enqueue.rs): jobs in a posting, with parents, with a
-- unique key that has a row already (held, or to be taken over), of a task
-- whose args must be checked, and every call while
-- pdoflow.require_registered_tasks is on.
-- Called by enqueue only, after its input and privilege checks. It pins
-- the search_path that enqueue itself does not (see there).
CREATE FUNCTION pdoflow._enqueue_general(
    task            text,
    args            jsonb,
    queue           text,
    priority        integer,
    run_at          timestamptz,
    max_attempts    integer,
    posting         uuid,
    depends_on      uuid[],
    dependency_mode text,
    unique_key      text     DEFAULT NULL,
    unique_for      interval DEFAULT NULL
) RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pdoflow, pg_temp
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
    RETURN (pdoflow._insert_jobs(
        ARRAY[job_id], ARRAY[_enqueue_general.task], ARRAY[_enqueue_general.args], ARRAY[place.job_queue],
        ARRAY[place.job_priority], ARRAY[_enqueue_general.max_attempts], ARRAY[_enqueue_general.run_at],
        ARRAY[place.job_state], _enqueue_general.posting,
        parents_pending => ARRAY[place.pending], parents => place.parents, first_parents => ARRAY[1],
        parent_counts => ARRAY[cardinality(place.parents)], modes => ARRAY[place.mode],
        unique_keys => CASE WHEN _enqueue_general.unique_key IS NOT NULL THEN ARRAY[_enqueue_general.unique_key] END,
        unique_for => ARRAY[_enqueue_general.unique_for]))[1];
END
$$;

DROP FUNCTION pdoflow.enqueue(text, jsonb, text, integer, timestamptz, integer, uuid, uuid[], text);

-- One job. Written in Rust (pdoflow-ext/src/api/enqueue.rs): it checks its
-- input, then inserts the common job (no posting, no parents, no args
-- schema) with one INSERT whose plan the session keeps, and hands the rest
-- to _enqueue_general. A PL/pgSQL version spent as long around the INSERT
-- as in it.
--
-- The one SECURITY DEFINER function without a pinned search_path: setting
-- and restoring it around every call cost single-job enqueue 8% of its rate
-- (docs/benchmarks.md, 0.9.0). It needs none: it resolves no name through
-- the caller's search_path. Every statement it runs names its schema, its
-- operators (OPERATOR(pg_catalog.=)) and its parameters' types
-- (pdoflow-ext/src/api/enqueue.rs, tasks/registered_tasks.rs), and the
-- general path calls pdoflow._enqueue_general, which pins it for itself and
-- the helpers it calls. tests/tests/roles.rs tries a caller's schema that
-- shadows the operators on every path.
CREATE FUNCTION pdoflow.enqueue(
    task            text,
    args            jsonb       DEFAULT '{}',
    queue           text        DEFAULT 'default',
    priority        integer     DEFAULT 0,
    run_at          timestamptz DEFAULT NULL,
    max_attempts    integer     DEFAULT 5,
    posting         uuid        DEFAULT NULL,
    depends_on      uuid[]      DEFAULT NULL,
    dependency_mode text        DEFAULT 'all',
    unique_key      text        DEFAULT NULL,
    unique_for      interval    DEFAULT NULL
) RETURNS uuid
LANGUAGE c VOLATILE
SECURITY DEFINER
AS 'MODULE_PATHNAME', 'enqueue_wrapper';

COMMENT ON FUNCTION pdoflow.enqueue(text, jsonb, text, integer, timestamptz, integer, uuid, uuid[], text, text, interval) IS
    'Adds one job and returns its id. run_at NULL means now. With depends_on it waits (blocked) until all, or any, of those jobs succeeded. With unique_key, a job of the same task holding that key (blocked, queued, running, or succeeded within unique_for) is returned instead of a new one.';

DROP FUNCTION pdoflow.enqueue_many(text, jsonb[], text, integer, timestamptz, integer, uuid, uuid[], text);

-- Many jobs of one task: one job per element of args, ids returned in args
-- order. They share every other option, parents included, except their
-- unique keys: unique_keys holds one per element of args (NULL elements:
-- no key), and a job whose key is held returns the holder's id.
CREATE FUNCTION pdoflow.enqueue_many(
    task            text,
    args            jsonb[],
    queue           text        DEFAULT 'default',
    priority        integer     DEFAULT 0,
    run_at          timestamptz DEFAULT NULL,
    max_attempts    integer     DEFAULT 5,
    posting         uuid        DEFAULT NULL,
    depends_on      uuid[]      DEFAULT NULL,
    dependency_mode text        DEFAULT 'all',
    unique_keys     text[]      DEFAULT NULL,
    unique_for      interval    DEFAULT NULL
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
    PERFORM pdoflow._check_unique_keys(enqueue_many.unique_keys, enqueue_many.unique_for, n);
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
    job_ids := pdoflow._insert_jobs(
        job_ids, ARRAY[enqueue_many.task], enqueue_many.args, ARRAY[place.job_queue], ARRAY[place.job_priority],
        ARRAY[enqueue_many.max_attempts], ARRAY[enqueue_many.run_at], ARRAY[place.job_state],
        enqueue_many.posting,
        parents_pending => ARRAY[place.pending], parents => place.parents, first_parents => ARRAY[1],
        parent_counts => ARRAY[cardinality(place.parents)], modes => ARRAY[place.mode],
        unique_keys => enqueue_many.unique_keys, unique_for => ARRAY[enqueue_many.unique_for]);
    RETURN QUERY SELECT unnest(job_ids);
END
$$;

COMMENT ON FUNCTION pdoflow.enqueue_many(text, jsonb[], text, integer, timestamptz, integer, uuid, uuid[], text, text[], interval) IS
    'Adds one job of the given task per element of args, in one statement; returns the ids in args order.';

-- Many jobs, each with its own options: a JSON array of objects whose keys are
-- enqueue's parameters (task required; a missing or null key takes enqueue's default).
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
    keep_param   text;
    one_by_one   boolean;
    checks       boolean;
    tasks        text[];
    job_args     jsonb[];
    queues       text[];
    priorities   integer[];
    attempts     integer[];
    run_ats      timestamptz[];
    keys         text[];
    keep_for     interval[];
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
        FOR job, keep_param IN
            SELECT e.job, format('jobs[%s].unique_for', e.n - 1)
            FROM jsonb_array_elements(enqueue_many.jobs) WITH ORDINALITY AS e(job, n)
        LOOP
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
                dependency_mode => coalesce(job ->> 'dependency_mode', 'all'),
                unique_key      => job ->> 'unique_key',
                unique_for      => pdoflow._unique_for(job ->> 'unique_for', keep_param));
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
           array_agg((spec.job ->> 'run_at')::timestamptz),
           array_agg(spec.job ->> 'unique_key'),
           array_agg(pdoflow._unique_for(spec.job ->> 'unique_for', format('jobs[%s].unique_for', spec.n - 1)))
    INTO job_ids, tasks, job_args, queues, priorities, attempts, run_ats, keys, keep_for
    FROM ROWS FROM (jsonb_array_elements(enqueue_many.jobs),
                    unnest(pdoflow._uuid_v7_array(jsonb_array_length(enqueue_many.jobs))))
         WITH ORDINALITY AS spec(job, id, n);
    IF job_ids IS NOT NULL THEN
        job_ids := pdoflow._insert_jobs(job_ids, tasks, job_args, queues, priorities, attempts, run_ats,
                                        ARRAY['queued'],
                                        unique_keys => CASE WHEN cardinality(array_remove(keys, NULL)) > 0 THEN keys END,
                                        unique_for => keep_for);
    END IF;
    -- The ids in the document's order.
    RETURN QUERY SELECT unnest(job_ids);
END
$$;

COMMENT ON FUNCTION pdoflow.enqueue_many(jsonb) IS
    'Adds the jobs described by a JSON array of objects with enqueue''s parameters as keys; returns the ids in array order.';

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
    -- Per node (plan order): the job it stands for, its own planned id or,
    -- for a unique key that another job holds, that job's.
    final_ids     uuid[];
    edge_children integer[];
    edge_parents  uuid[];
    edge_planned  boolean[];
BEGIN
    SELECT * INTO plan FROM pdoflow._plan_dag(submit_dag.dag::text);
    final_ids := plan.ids;
    edge_children := plan.edge_children;
    edge_parents := plan.edge_parents;
    edge_planned := plan.edge_planned;
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
    -- Unique keys are taken before the jobs are placed: a node whose key
    -- another job holds is not added, and its children wait for that job
    -- instead, as for any job that exists already.
    IF EXISTS (SELECT FROM unnest(plan.nodes) AS n(node) WHERE n.node::jsonb ? 'unique_key') THEN
        SELECT pdoflow._take_unique_keys(
                   array_agg(n.node::jsonb ->> 'task' ORDER BY n.ord),
                   array_agg(n.node::jsonb ->> 'unique_key' ORDER BY n.ord),
                   array_agg(pdoflow._unique_for(n.node::jsonb ->> 'unique_for',
                                                 format('the unique_for of DAG node "%s"', n.name)) ORDER BY n.ord),
                   plan.ids)
        INTO final_ids
        FROM unnest(plan.names, plan.nodes) WITH ORDINALITY AS n(name, node, ord);
        SELECT array_agg(e.child ORDER BY e.ord),
               array_agg(coalesce(r.final, e.parent) ORDER BY e.ord),
               array_agg(e.planned AND (r.final IS NULL OR r.final = ANY (plan.ids)) ORDER BY e.ord)
        INTO edge_children, edge_parents, edge_planned
        FROM unnest(plan.edge_children, plan.edge_parents, plan.edge_planned)
             WITH ORDINALITY AS e(child, parent, planned, ord)
        LEFT JOIN unnest(plan.ids, final_ids) AS r(id, final) ON e.planned AND r.id = e.parent AND r.final <> r.id
        -- Not the edges into a node that is not added.
        WHERE final_ids[e.child] = plan.ids[e.child];
    END IF;
    IF submit_dag.posting IS NOT NULL THEN
        SELECT * INTO posting_row FROM pdoflow._posting_for_new_jobs(submit_dag.posting);
    ELSE
        SELECT NULL::text AS status, NULL::text AS queue, NULL::integer AS priority INTO posting_row;
    END IF;
    -- Parents that exist already: lock the active ones (see dependencies.sql).
    SELECT array_agg(DISTINCT e.parent) INTO existing
    FROM unnest(edge_parents, edge_planned) AS e(parent, planned)
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
        FROM unnest(edge_children, edge_parents, edge_planned)
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
        FROM unnest(plan.names, plan.ids, plan.nodes, plan.modes, final_ids)
             WITH ORDINALITY AS n(name, id, node, mode, final_id, ord)
        LEFT JOIN edge AS d ON d.child = n.ord
        WHERE n.final_id = n.id
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
           array_agg(j.name) AS names,
           array_agg(j.node ->> 'unique_key') AS unique_keys,
           array_agg(pdoflow._unique_for(j.node ->> 'unique_for',
                                         format('the unique_for of DAG node "%s"', j.name))) AS unique_for
    INTO jobs
    FROM (SELECT * FROM job ORDER BY job.ord) AS j;
    -- (The keys are this DAG's now: _insert_jobs finds them held by these jobs.)
    PERFORM pdoflow._insert_jobs(jobs.ids, jobs.tasks, jobs.args, jobs.queues, jobs.priorities, jobs.attempts,
                                 jobs.run_ats, jobs.states, submit_dag.posting, jobs.pending, jobs.parents,
                                 jobs.first_parents, jobs.parent_counts, jobs.modes, jobs.names,
                                 CASE WHEN cardinality(array_remove(jobs.unique_keys, NULL)) > 0
                                      THEN jobs.unique_keys END,
                                 jobs.unique_for);

    RETURN QUERY
    SELECT n.name, n.id FROM unnest(plan.names, final_ids) WITH ORDINALITY AS n(name, id, ord) ORDER BY n.ord;
END
$$;

COMMENT ON FUNCTION pdoflow.submit_dag(jsonb, uuid) IS
    'Adds the jobs of a DAG document ({"nodes": [{"name", "task" or "dag", "after", "mode", "unique_key", ...}], "edges"}) in one statement; returns each job''s name (sub-DAG paths joined by /) and id (for a node whose unique key another job holds, that job''s).';

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
                                             last_error, depends_on, args, enqueued_by, unique_key, progress)
            VALUES (job.id, job.posting, now(), job.created_at, job.priority, job.attempt,
                    greatest(job.max_attempts, job.attempt + 1), pending, new_state, job.queue, job.task,
                    job.dependency_mode, job.node, job.last_error, job.depends_on, job.args,
                    job.enqueued_by, job.unique_key, NULL);
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

-- Why the claim (job_id, claimed_attempt) cannot finish or heartbeat its job,
-- with the job's current state (NULL: no such job); no row when it is the
-- job's current claim. STABLE, so it reads with its caller's snapshot:
-- callers hold a lock on active_jobs already (finish_many's locking step,
-- heartbeat's UPDATE), so no compaction can have come in between.
CREATE OR REPLACE FUNCTION pdoflow._claim_problem(job_id uuid, claimed_attempt integer)
RETURNS TABLE (state text, code text, message text, hint text)
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    claim_name text := format('claim (job %s, attempt %s)', job_id, claimed_attempt);
    job        record;
BEGIN
    SELECT a.state, a.attempt INTO job FROM pdoflow.active_jobs AS a WHERE a.id = job_id;
    IF FOUND THEN
        IF job.state = 'running' AND job.attempt = claimed_attempt THEN
            RETURN;
        END IF;
        -- A number no claim of the job got: a caller's mistake, not a
        -- claim that ended.
        IF claimed_attempt > job.attempt AND job.attempt > 0 THEN
            RETURN QUERY SELECT
                job.state::text,
                '55000'::text,
                format('%s is not current: attempt %s was never handed out (the job is at attempt %s)',
                       claim_name, claimed_attempt, job.attempt),
                'Pass the attempt that claim returned with the job.'::text;
            RETURN;
        END IF;
        RETURN QUERY SELECT
            job.state::text,
            '55000'::text,
            CASE
                WHEN job.state = 'running' THEN
                    format('%s is not current: the job is running attempt %s', claim_name, job.attempt)
                WHEN job.attempt = 0 THEN
                    format('%s is not current: the job has not been claimed yet', claim_name)
                ELSE
                    format('%s is not current: the job was queued again after attempt %s', claim_name, job.attempt)
            END,
            CASE
                WHEN job.state = 'running' THEN
                    'The claim ended (released, or its lease expired) and the job was claimed again; only the current claim can finish it.'
                WHEN job.attempt > 0 THEN
                    'The claim ended (finished with an error, lease expired or released) and the job waits for a new claim.'
            END;
        RETURN;
    END IF;

    SELECT f.state INTO job FROM pdoflow.finished_jobs AS f WHERE f.id = job_id;
    IF FOUND THEN
        RETURN QUERY SELECT
            job.state::text,
            '55000'::text,
            format('%s is not current: the job %s', claim_name,
                   CASE job.state WHEN 'cancelled' THEN 'was cancelled' ELSE 'already ' || job.state END),
            NULL::text;
        RETURN;
    END IF;

    -- (Or, under REPEATABLE READ, active_jobs was compacted since the
    -- snapshot: a serialization failure then.)
    PERFORM pdoflow._require_active_jobs_in_snapshot();
    RETURN QUERY SELECT NULL::text, '22023'::text, format('job %s does not exist', job_id), NULL::text;
END
$$;

-- Starts an attempt of each of the jobs ids, for worker and lease: the one
-- place where a job becomes running (claim and claim_job lock the queued
-- jobs they picked, then call this). Returns the claims as claim returns
-- them, in claim order.
CREATE OR REPLACE FUNCTION pdoflow._start_attempts(ids uuid[], worker text, lease interval)
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
            progress = NULL,
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

-- How long a renewed lease lasts: `lease` when given, else as long as the
-- claim's last lease ran (from its last heartbeat, or from its claim).
-- Asked by heartbeat and progress; a plain SQL function, inlined into
-- their UPDATEs.
CREATE FUNCTION pdoflow._renewed_lease(lease interval, expires_at timestamptz, heartbeat_at timestamptz,
                                       started_at timestamptz)
RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT coalesce(lease, expires_at - coalesce(heartbeat_at, started_at));
END;

CREATE OR REPLACE FUNCTION pdoflow.heartbeat(
    id      uuid,
    attempt integer,
    lease   interval DEFAULT NULL
) RETURNS timestamptz
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    expires_at timestamptz;
    holder     text;
BEGIN
    PERFORM pdoflow._check_job_claim(heartbeat.id, heartbeat.attempt, heartbeat.lease);
    UPDATE pdoflow.active_jobs AS j
    SET lease_expires_at = now() + pdoflow._renewed_lease(heartbeat.lease, j.lease_expires_at,
                                                          j.heartbeat_at, j.started_at),
        heartbeat_at = now()
    WHERE j.id = heartbeat.id AND j.attempt = heartbeat.attempt AND j.state = 'running'
    RETURNING j.lease_expires_at, j.worker INTO expires_at, holder;
    IF NOT FOUND THEN
        PERFORM pdoflow._raise_claim_problem(heartbeat.id, heartbeat.attempt);
    END IF;
    PERFORM pdoflow._record_worker(holder);
    RETURN expires_at;
END
$$;

COMMENT ON FUNCTION pdoflow.heartbeat(uuid, integer, interval) IS
    'Extends the lease of the current claim (id, attempt) by lease, or by its last lease''s length when NULL; returns the new expiry.';

-- Progress: the current claim reports how far it got (any JSON value, within
-- pdoflow.max_payload_bytes). pdoflow.jobs shows the latest report, also
-- after the job ended; it counts as a heartbeat (the lease is renewed for as
-- long as its last one ran), and is fenced like one: only the current claim
-- may report.
CREATE FUNCTION pdoflow.progress(id uuid, attempt integer, progress jsonb)
RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    holder text;
BEGIN
    PERFORM pdoflow._check_job_claim(progress.id, progress.attempt, NULL);
    PERFORM pdoflow._check_progress(progress.progress);
    UPDATE pdoflow.active_jobs AS j
    SET progress = progress.progress,
        lease_expires_at = now() + pdoflow._renewed_lease(NULL, j.lease_expires_at, j.heartbeat_at, j.started_at),
        heartbeat_at = now()
    WHERE j.id = progress.id AND j.attempt = progress.attempt AND j.state = 'running'
    RETURNING j.worker INTO holder;
    IF NOT FOUND THEN
        PERFORM pdoflow._raise_claim_problem(progress.id, progress.attempt);
    END IF;
    PERFORM pdoflow._record_worker(holder);
END
$$;

COMMENT ON FUNCTION pdoflow.progress(uuid, integer, jsonb) IS
    'Records the progress of the current claim (id, attempt), shown in pdoflow.jobs; also renews its lease, as heartbeat does.';

-- Waiting for a job to end, inside the database: for clients that cannot
-- LISTEN (through PgBouncer in transaction mode, say), and for any language.
-- Written in Rust (pdoflow-ext/src/results/): the call sleeps on its
-- process's latch, which the transaction that ends the job sets when it
-- commits. It returns at once for a job that has ended, and otherwise when
-- it ends or timeout passes, with the job's state as it is then. A cancel
-- or statement_timeout ends the wait at once.
--
-- Like any statement, the call keeps its snapshot while it waits, holding
-- back vacuum's horizon for that long: prefer timeouts of seconds to
-- minutes, and call again. Without pdoflow in shared_preload_libraries it
-- looks every 50 ms instead.
CREATE FUNCTION pdoflow.await_result(id uuid, timeout interval DEFAULT '30 seconds')
RETURNS TABLE (state text, result jsonb, last_error text, finished_at timestamptz, progress jsonb)
LANGUAGE c VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS 'MODULE_PATHNAME', 'await_result_wrapper';

COMMENT ON FUNCTION pdoflow.await_result(uuid, interval) IS
    'Waits until job id has ended (succeeded, failed or cancelled), at most timeout; returns its state, result, last error, end time and progress.';

-- Cron schedules: jobs enqueued by the sweeper at the times a cron pattern
-- names (patterns and time zones: pdoflow-ext/src/schedules/mod.rs).
--
-- Each occurrence is enqueued exactly once: the sweeper locks the schedule,
-- adds the job and moves next_run_at past the occurrence in one
-- transaction. A crash before its commit loses both, and the next sweep
-- enqueues the occurrence again; after the commit, both are there (on a
-- standby promoted after failover too, as far as the commit reached it).
--
-- After downtime (the server down, the sweeper stopped) missed occurrences
-- are not replayed one by one: a schedule with catch_up (the default) runs
-- one job for the latest of them, as soon as it can; without catch_up it
-- skips an occurrence found more than a minute late and waits for the next
-- one. A paused schedule misses nothing it owes: when it is resumed it
-- continues from its next occurrence after the resume.
--
-- Producers manage schedules. A schedule's jobs are enqueued as the role
-- that created (or last replaced) it, its owner: under that role's task
-- grants, checked again at every run, with enqueued_by naming it. Only its
-- owner (or a member of the owner role) and admins may replace, pause,
-- resume or remove a schedule.

-- Raises unless the calling role may change the schedule owned by owner.
CREATE FUNCTION pdoflow._check_schedule_owner(schedule_name text, owner regrole)
RETURNS void
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    IF pg_catalog.pg_has_role(pdoflow._calling_role(), 'pdoflow_admin', 'MEMBER') THEN
        RETURN;
    END IF;
    -- (An owner dropped since leaves the schedule to admins.)
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles AS r WHERE r.oid = owner::oid)
       OR NOT pg_catalog.pg_has_role(pdoflow._calling_role(), owner::oid, 'MEMBER') THEN
        RAISE EXCEPTION 'schedule "%" belongs to role %; % may not change it', schedule_name, owner,
            pdoflow._calling_role()
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Only the role that created a schedule, its members and pdoflow_admin may change it.';
    END IF;
END
$$;

-- The schedule named name, locked, or an error naming it.
CREATE FUNCTION pdoflow._schedule_for_change(schedule_name text)
RETURNS pdoflow.cron_schedules
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    locked pdoflow.cron_schedules;
BEGIN
    SELECT * INTO locked FROM pdoflow.cron_schedules AS s WHERE s.name = schedule_name FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'schedule "%" does not exist', schedule_name
            USING ERRCODE = 'no_data_found',
                  HINT = 'SELECT name FROM pdoflow.schedules lists the schedules.';
    END IF;
    PERFORM pdoflow._check_schedule_owner(schedule_name, locked.owner);
    RETURN locked;
END
$$;

CREATE FUNCTION pdoflow.schedule(
    name         text,
    cron         text,
    task         text,
    args         jsonb   DEFAULT '{}',
    queue        text    DEFAULT 'default',
    priority     integer DEFAULT 0,
    max_attempts integer DEFAULT 5,
    time_zone    text    DEFAULT 'UTC',
    catch_up     boolean DEFAULT true
) RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    existing pdoflow.cron_schedules;
    caller   regrole := (SELECT r.oid FROM pg_catalog.pg_roles AS r WHERE r.rolname = pdoflow._calling_role())::regrole;
BEGIN
    PERFORM pdoflow._check_schedule_name(schedule.name);
    PERFORM pdoflow._check_job_batch(schedule.task, ARRAY[schedule.args], schedule.queue, schedule.priority,
                                     NULL, schedule.max_attempts);
    PERFORM pdoflow._check_schedule(schedule.cron, schedule.time_zone);
    IF schedule.catch_up IS NULL THEN
        RAISE EXCEPTION 'catch_up must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM pdoflow._check_task_grants(ARRAY[schedule.task]);
    IF pdoflow._task_checks_needed() THEN
        PERFORM pdoflow._check_task_args(schedule.task, ARRAY[schedule.args]);
    END IF;
    SELECT * INTO existing FROM pdoflow.cron_schedules AS s WHERE s.name = schedule.name FOR UPDATE;
    IF FOUND THEN
        PERFORM pdoflow._check_schedule_owner(schedule.name, existing.owner);
    END IF;
    -- A replaced schedule keeps its history; its next run follows the new
    -- pattern from now.
    INSERT INTO pdoflow.cron_schedules AS s (name, cron, time_zone, task, args, queue, priority, max_attempts,
                                             catch_up, owner, next_run_at)
    VALUES (schedule.name, schedule.cron, schedule.time_zone, schedule.task, schedule.args, schedule.queue,
            schedule.priority, schedule.max_attempts, schedule.catch_up, caller,
            pdoflow._cron_next(schedule.cron, schedule.time_zone, now()))
    ON CONFLICT ON CONSTRAINT cron_schedules_pkey DO UPDATE
    SET cron = excluded.cron, time_zone = excluded.time_zone, task = excluded.task, args = excluded.args,
        queue = excluded.queue, priority = excluded.priority, max_attempts = excluded.max_attempts,
        catch_up = excluded.catch_up, owner = excluded.owner, next_run_at = excluded.next_run_at,
        updated_at = now(), last_error = NULL;
END
$$;

COMMENT ON FUNCTION pdoflow.schedule(text, text, text, jsonb, text, integer, integer, text, boolean) IS
    'Creates or replaces the cron schedule name: the sweeper enqueues a job of task with args at every occurrence of cron in time_zone.';

CREATE FUNCTION pdoflow.unschedule(name text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    existing pdoflow.cron_schedules;
BEGIN
    PERFORM pdoflow._check_schedule_name(unschedule.name);
    SELECT * INTO existing FROM pdoflow.cron_schedules AS s WHERE s.name = unschedule.name FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM pdoflow._check_schedule_owner(unschedule.name, existing.owner);
    DELETE FROM pdoflow.cron_schedules AS s WHERE s.name = unschedule.name;
    RETURN true;
END
$$;

COMMENT ON FUNCTION pdoflow.unschedule(text) IS
    'Removes the schedule name (jobs it enqueued stay); false when there is none.';

CREATE FUNCTION pdoflow.pause_schedule(name text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
DECLARE
    locked pdoflow.cron_schedules;
BEGIN
    PERFORM pdoflow._check_schedule_name(pause_schedule.name);
    locked := pdoflow._schedule_for_change(pause_schedule.name);
    IF locked.paused THEN
        RETURN false;
    END IF;
    UPDATE pdoflow.cron_schedules AS s SET paused = true, updated_at = now()
    WHERE s.name = pause_schedule.name;
    RETURN true;
END
$$;

COMMENT ON FUNCTION pdoflow.pause_schedule(text) IS
    'Pauses the schedule name: no jobs until it is resumed. False when it was paused already.';

-- Resuming starts again from the next occurrence after now: what fell due
-- while paused is not run.
CREATE FUNCTION pdoflow.resume_schedule(name text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
DECLARE
    locked pdoflow.cron_schedules;
BEGIN
    PERFORM pdoflow._check_schedule_name(resume_schedule.name);
    locked := pdoflow._schedule_for_change(resume_schedule.name);
    IF NOT locked.paused THEN
        RETURN false;
    END IF;
    UPDATE pdoflow.cron_schedules AS s
    SET paused = false, updated_at = now(),
        next_run_at = pdoflow._cron_next(s.cron, s.time_zone, now())
    WHERE s.name = resume_schedule.name;
    RETURN true;
END
$$;

COMMENT ON FUNCTION pdoflow.resume_schedule(text) IS
    'Resumes the paused schedule name from its next occurrence; false when it was not paused.';

-- Enqueues the due occurrences of up to max_schedules schedules (one job
-- each, see the policy above) and moves them on. Schedules locked by a
-- change in progress wait for the next sweep. Returns how many jobs it
-- enqueued. A sweep step.
CREATE FUNCTION pdoflow._run_due_schedules(max_schedules integer)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
DECLARE
    due        pdoflow.cron_schedules;
    occurrence timestamptz;
    job_id     uuid;
    problem    text;
    enqueued   bigint := 0;
BEGIN
    FOR due IN
        SELECT * FROM pdoflow.cron_schedules AS s
        WHERE NOT s.paused AND s.next_run_at <= now()
        ORDER BY s.next_run_at
        LIMIT max_schedules
        FOR UPDATE SKIP LOCKED
    LOOP
        -- The latest occurrence that is due: next_run_at itself, or a
        -- later one when the sweeper was away.
        occurrence := greatest(due.next_run_at, pdoflow._cron_latest(due.cron, due.time_zone, now()));
        job_id := NULL;
        problem := NULL;
        IF NOT due.catch_up AND occurrence < now() - interval '1 minute' THEN
            problem := format('skipped the occurrence at %s: found %s late, and the schedule does not catch up',
                              occurrence, date_trunc('second', now() - occurrence));
        ELSIF NOT EXISTS (SELECT FROM pg_catalog.pg_roles AS r WHERE r.oid = due.owner::oid) THEN
            problem := format('its owner (role oid %s) no longer exists: replace the schedule as another role, or remove it',
                              due.owner::oid);
        ELSIF NOT pdoflow._may_enqueue(due.owner::oid, due.task) THEN
            problem := format('role %s may not enqueue task "%s" (see pdoflow.task_grants)', due.owner, due.task);
        ELSE
            BEGIN
                -- The task's registration may have changed since.
                IF pdoflow._task_checks_needed() THEN
                    PERFORM pdoflow._check_task_args(due.task, ARRAY[due.args]);
                END IF;
                job_id := (pdoflow._insert_jobs(
                    ARRAY[pdoflow.uuid_generate_v7()], ARRAY[due.task::text], ARRAY[due.args],
                    ARRAY[due.queue::text], ARRAY[due.priority], ARRAY[due.max_attempts], ARRAY[occurrence],
                    ARRAY['queued'], enqueued_by => pg_catalog.pg_get_userbyid(due.owner)))[1];
                enqueued := enqueued + 1;
            EXCEPTION WHEN data_exception OR integrity_constraint_violation OR insufficient_privilege THEN
                problem := SQLERRM;
            END;
        END IF;
        IF problem IS NOT NULL THEN
            RAISE WARNING 'pdoflow: schedule "%" did not enqueue a job: %', due.name, problem;
        END IF;
        UPDATE pdoflow.cron_schedules AS s
        SET next_run_at = pdoflow._cron_next(s.cron, s.time_zone, greatest(occurrence, now())),
            last_run_at = CASE WHEN job_id IS NOT NULL THEN occurrence ELSE s.last_run_at END,
            last_job = coalesce(job_id, s.last_job),
            last_error = problem
        WHERE s.name = due.name;
    END LOOP;
    RETURN enqueued;
END
$$;

-- VOLATILE: its query takes its snapshot after its locks, so that a
-- compaction of active_jobs it waited for does not hide the active jobs.
CREATE OR REPLACE FUNCTION pdoflow.check_consistency()
RETURNS TABLE (problem text, job_id uuid)
LANGUAGE sql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
    -- One active row at a time: the rules CHECK constraints would state.
    SELECT CASE
               WHEN a.state NOT IN ('queued', 'running', 'blocked', 'paused')
                   THEN format('active job has state %L', a.state)
               WHEN (a.depends_on IS NULL) <> (a.dependency_mode IS NULL)
                   THEN 'active job has only one of depends_on and dependency_mode'
               WHEN a.dependency_mode NOT IN ('all', 'any')
                   THEN format('active job has dependency_mode %L', a.dependency_mode)
               WHEN a.state = 'blocked' AND a.parents_pending <= 0
                   THEN format('blocked job counts %s pending parents', a.parents_pending)
               WHEN (a.state = 'running') <> (a.lease_expires_at IS NOT NULL)
                   THEN format('%s job %s a lease', a.state,
                               CASE WHEN a.lease_expires_at IS NULL THEN 'lacks' ELSE 'has' END)
               WHEN NOT (a.attempt >= 0 AND a.attempt <= a.max_attempts AND a.max_attempts >= 1)
                   THEN format('active job is at attempt %s of %s', a.attempt, a.max_attempts)
           END,
           a.id
    FROM pdoflow.active_jobs AS a
    WHERE a.state NOT IN ('queued', 'running', 'blocked', 'paused')
       OR (a.depends_on IS NULL) <> (a.dependency_mode IS NULL)
       OR a.dependency_mode NOT IN ('all', 'any')
       OR (a.state = 'blocked' AND a.parents_pending <= 0)
       OR (a.state = 'running') <> (a.lease_expires_at IS NOT NULL)
       OR NOT (a.attempt >= 0 AND a.attempt <= a.max_attempts AND a.max_attempts >= 1)
    UNION ALL
    SELECT 'job is both active and finished', a.id
    FROM pdoflow.active_jobs AS a JOIN pdoflow.finished_jobs AS f ON f.id = a.id
    UNION ALL
    SELECT 'job belongs to a posting that does not exist', j.id
    FROM (SELECT id, posting FROM pdoflow.active_jobs UNION ALL SELECT id, posting FROM pdoflow.finished_jobs) AS j
    WHERE j.posting IS NOT NULL AND NOT EXISTS (SELECT FROM pdoflow.postings AS p WHERE p.id = j.posting)
    UNION ALL
    SELECT 'job is paused but its posting is not', a.id
    FROM pdoflow.active_jobs AS a LEFT JOIN pdoflow.postings AS p ON p.id = a.posting
    WHERE a.state = 'paused' AND p.status IS DISTINCT FROM 'paused'
    UNION ALL
    SELECT 'job is queued in a paused posting', a.id
    FROM pdoflow.active_jobs AS a JOIN pdoflow.postings AS p ON p.id = a.posting
    WHERE a.state = 'queued' AND p.status = 'paused'
    UNION ALL
    SELECT 'job waits in a cancelled posting', a.id
    FROM pdoflow.active_jobs AS a JOIN pdoflow.postings AS p ON p.id = a.posting
    WHERE a.state IN ('queued', 'paused', 'blocked') AND p.status = 'cancelled'
    UNION ALL
    -- Blocked jobs: the count of parents still active must match, and the
    -- parents that ended must not have decided the job already.
    SELECT CASE
               WHEN b.active_parents <> a.parents_pending
                   THEN format('blocked job counts %s pending parents, but %s are active', a.parents_pending, b.active_parents)
               WHEN a.dependency_mode = 'all' AND b.lost > 0 THEN 'blocked job has a parent that failed or was cancelled'
               WHEN a.dependency_mode = 'any' AND b.succeeded > 0 THEN 'blocked job has a parent that succeeded'
           END,
           a.id
    FROM pdoflow.active_jobs AS a
    CROSS JOIN LATERAL (
        SELECT count(*) FILTER (WHERE pa.id IS NOT NULL) AS active_parents,
               count(*) FILTER (WHERE pf.state = 'succeeded') AS succeeded,
               count(*) FILTER (WHERE pf.state IN ('failed', 'cancelled')) AS lost
        FROM unnest(a.depends_on) AS d(id)
        LEFT JOIN pdoflow.active_jobs AS pa ON pa.id = d.id
        LEFT JOIN pdoflow.finished_jobs AS pf ON pf.id = d.id
    ) AS b
    WHERE a.state = 'blocked'
      AND (b.active_parents <> a.parents_pending
           OR (a.dependency_mode = 'all' AND b.lost > 0)
           OR (a.dependency_mode = 'any' AND b.succeeded > 0))
    UNION ALL
    -- A mode-all job that left blocked before every parent succeeded (parents
    -- deleted by retention count as succeeded: they were, or it would not run).
    SELECT 'job was released before all its parents succeeded', a.id
    FROM pdoflow.active_jobs AS a
    WHERE a.state IN ('queued', 'paused', 'running') AND a.dependency_mode = 'all'
      AND EXISTS (
          SELECT FROM unnest(a.depends_on) AS d(id)
          WHERE EXISTS (SELECT FROM pdoflow.active_jobs AS pa WHERE pa.id = d.id)
             OR EXISTS (SELECT FROM pdoflow.finished_jobs AS pf WHERE pf.id = d.id AND pf.state <> 'succeeded'))
    UNION ALL
    -- Unique jobs (unique_keys.sql): an active job holds its key, and a key
    -- held is held by an active job.
    SELECT CASE
               WHEN u.job IS NULL THEN format('active job''s unique key %L is not in unique_keys', a.unique_key)
               WHEN u.job <> a.id THEN format('active job''s unique key %L is held by job %s', a.unique_key, u.job)
               ELSE format('active job''s unique key %L is marked released', a.unique_key)
           END,
           a.id
    FROM pdoflow.active_jobs AS a
    LEFT JOIN pdoflow.unique_keys AS u ON u.task = a.task AND u.unique_key = a.unique_key
    WHERE a.unique_key IS NOT NULL AND (u.job IS DISTINCT FROM a.id OR u.released_at IS NOT NULL)
    UNION ALL
    SELECT format('unique key %L of task %L is held by a job that is not active', u.unique_key, u.task), u.job
    FROM pdoflow.unique_keys AS u
    WHERE u.released_at IS NULL
      AND NOT EXISTS (SELECT FROM pdoflow.active_jobs AS a WHERE a.id = u.job)
$$;

COMMENT ON FUNCTION pdoflow.check_consistency() IS
    'Rows that break pdoflow''s invariants: an active job whose own columns disagree, and across tables (a job in both tables, a stuck or wrongly released dependent, a job out of step with its posting, a unique key out of step with its job); no row when all is well.';

-- Deletes up to max_jobs finished jobs older than pdoflow.retention, oldest
-- first, and postings older than that with no jobs left. Returns how many
-- jobs it deleted; 0 when retention is 0 (keep forever).
CREATE OR REPLACE FUNCTION pdoflow._delete_finished(max_jobs integer)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
DECLARE
    keep           interval := pdoflow._retention();
    deleted        bigint;
    empty_postings uuid[];
BEGIN
    IF keep IS NULL THEN
        RETURN 0;
    END IF;
    WITH old AS (
        SELECT f.id
        FROM pdoflow.finished_jobs AS f
        WHERE f.finished_at < now() - keep
        ORDER BY f.finished_at
        LIMIT max_jobs
        FOR UPDATE SKIP LOCKED
    ), gone AS (
        DELETE FROM pdoflow.finished_jobs AS f
        USING old
        WHERE f.id = old.id
        RETURNING f.id, f.task, f.unique_key
    ), forgotten AS (
        -- A job that is deleted lets go of its unique key, even within its
        -- unique_for: an enqueue must not get back the id of a job that is
        -- gone.
        DELETE FROM pdoflow.unique_keys AS u
        USING gone AS g
        WHERE g.unique_key IS NOT NULL
          AND u.task = g.task AND u.unique_key = g.unique_key AND u.job = g.id
    )
    SELECT count(*) INTO deleted FROM gone;
    -- Postings go when no job of theirs is left. Lock first, count after:
    -- an enqueue into one holds its row locked until it commits, and the
    -- second statement's fresh snapshot sees every job committed before.
    SELECT array_agg(o.id) INTO empty_postings
    FROM (
        SELECT o.id
        FROM pdoflow.postings AS o
        WHERE o.status_changed_at < now() - keep AND o.created_at < now() - keep
          AND NOT EXISTS (SELECT FROM pdoflow.finished_jobs AS f WHERE f.posting = o.id)
          AND NOT EXISTS (SELECT FROM pdoflow.active_jobs AS a WHERE a.posting = o.id)
        LIMIT max_jobs
        FOR UPDATE SKIP LOCKED
    ) AS o;
    IF empty_postings IS NOT NULL THEN
        DELETE FROM pdoflow.postings AS p
        WHERE p.id = ANY (empty_postings)
          AND NOT EXISTS (SELECT FROM pdoflow.finished_jobs AS f WHERE f.posting = p.id)
          AND NOT EXISTS (SELECT FROM pdoflow.active_jobs AS a WHERE a.posting = p.id);
    END IF;
    RETURN deleted;
END
$$;

DROP FUNCTION pdoflow.sweep(integer);

CREATE FUNCTION pdoflow.sweep(batch_size integer DEFAULT 1000)
RETURNS TABLE (
    expired_requeued bigint,
    expired_failed   bigint,
    queues_notified  bigint,
    finished_deleted bigint,
    workers_gone     bigint,
    schedules_run    bigint
)
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
DECLARE
    expired       record;
    notified      bigint := 0;
    deleted       bigint := 0;
    gone          bigint := 0;
    scheduled     bigint := 0;
    caller_wait   text := current_setting('lock_timeout');
    step          text;
BEGIN
    PERFORM pdoflow._require_read_committed('pdoflow.sweep');
    PERFORM pdoflow._check_sweep(sweep.batch_size);
    SELECT 0::bigint AS requeued, 0::bigint AS failed, 0::bigint AS skipped INTO expired;
    -- Like the background sweeper: never wait long for a lock, and let a
    -- step that could not lock what it needed not stop the others.
    PERFORM set_config('lock_timeout', current_setting('pdoflow.sweep_lock_timeout'), true);
    FOREACH step IN ARRAY ARRAY['leases', 'schedules', 'due jobs', 'retention', 'workers'] LOOP
        BEGIN
            CASE step
                WHEN 'leases' THEN
                    SELECT * INTO expired FROM pdoflow._expire_leases(sweep.batch_size);
                    IF expired.skipped > 0 THEN
                        RAISE WARNING 'pdoflow.sweep: % expired claims could not be taken back now', expired.skipped
                            USING DETAIL = 'Ending those jobs has to wait for locks that other transactions hold '
                                           '(a producer enqueueing jobs that depend on their children, say).',
                                  HINT = 'They are tried again at the next sweep.';
                    END IF;
                WHEN 'schedules' THEN
                    scheduled := pdoflow._run_due_schedules(sweep.batch_size);
                -- After the leases, so that a retry due at once is announced now.
                WHEN 'due jobs' THEN
                    notified := pdoflow._notify_due_jobs();
                WHEN 'retention' THEN
                    deleted := pdoflow._delete_finished(sweep.batch_size);
                    PERFORM pdoflow._forget_released_unique_keys(sweep.batch_size);
                ELSE
                    gone := pdoflow._sweep_workers();
            END CASE;
        EXCEPTION WHEN lock_not_available THEN
            RAISE WARNING 'pdoflow.sweep: skipped the % step: %', step, SQLERRM
                USING HINT = 'Another transaction holds a lock it needs; it is tried again at the next sweep.';
        END;
    END LOOP;
    PERFORM set_config('lock_timeout', caller_wait, true);
    RETURN QUERY SELECT expired.requeued, expired.failed, notified, deleted, gone, scheduled;
END
$$;

COMMENT ON FUNCTION pdoflow.sweep(integer) IS
    'One round of the background sweeper''s work: re-queues or fails up to batch_size expired claims, enqueues the jobs of due cron schedules, announces due delayed jobs, deletes up to batch_size finished jobs past pdoflow.retention (and released unique keys) and marks silent workers gone. Returns the counts.';

-- Privileges (sql/roles.sql): the new functions for their roles, nothing
-- for PUBLIC.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pdoflow FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    pdoflow.enqueue(text, jsonb, text, integer, timestamptz, integer, uuid, uuid[], text, text, interval),
    pdoflow.enqueue_many(text, jsonb[], text, integer, timestamptz, integer, uuid, uuid[], text, text[], interval),
    pdoflow.await_result(uuid, interval),
    pdoflow.schedule(text, text, text, jsonb, text, integer, integer, text, boolean),
    pdoflow.unschedule(text),
    pdoflow.pause_schedule(text),
    pdoflow.resume_schedule(text)
TO pdoflow_producer;
GRANT SELECT ON pdoflow.schedules TO pdoflow_producer;
GRANT EXECUTE ON FUNCTION
    pdoflow.progress(uuid, integer, jsonb),
    pdoflow.sweep(integer)
TO pdoflow_worker;
