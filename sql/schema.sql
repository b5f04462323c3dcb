-- pdoflow: tables and views.
--
-- Jobs live in two tables (see docs/architecture.md):
--   active_jobs    queued and running jobs: the hot path. Small, so claims stay fast
--                  and vacuum keeps up; rows leave it as soon as a job ends.
--   finished_jobs  succeeded, failed and cancelled jobs: append-mostly history,
--                  pruned by retention.
-- Users read both through the view pdoflow.jobs and change them only through
-- the API functions.

-- Names and errors cross into Rust as UTF-8 strings.
DO $$
BEGIN
    IF pg_catalog.getdatabaseencoding() <> 'UTF8' THEN
        RAISE EXCEPTION 'pdoflow needs a UTF8 database; this one is %', pg_catalog.getdatabaseencoding()
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Create the database with ENCODING ''UTF8'' (and TEMPLATE template0 if needed).';
    END IF;
END
$$;

-- CREATE EXTENSION reuses a schema named pdoflow that exists already. The
-- background sweeper calls pdoflow's functions as a superuser, and every
-- function here runs as the extension's owner: a schema that another role
-- owns, or where another role may create objects, would let that role put
-- objects of its own beside them (or replace them later).
DO $$
DECLARE
    schema_owner oid;
    creators     text;
BEGIN
    SELECT n.nspowner INTO schema_owner FROM pg_catalog.pg_namespace AS n WHERE n.nspname = 'pdoflow';
    IF schema_owner <> (SELECT r.oid FROM pg_catalog.pg_roles AS r WHERE r.rolname = current_user)
       AND NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.oid = schema_owner) THEN
        RAISE EXCEPTION 'schema "pdoflow" is owned by role "%", not by "%" who is installing the extension',
            pg_catalog.pg_get_userbyid(schema_owner), current_user
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'pdoflow runs its functions with its owner''s privileges, so it installs only into a '
                         'schema of its own: drop or rename that schema and try again.';
    END IF;
    -- Objects that another role put there beforehand would sit beside
    -- pdoflow's own, as theirs.
    SELECT pg_catalog.string_agg(DISTINCT pg_catalog.format('%s (owned by %s)', o.kind, pg_catalog.pg_get_userbyid(o.owner)), ', ')
    INTO creators
    FROM (
        SELECT 'relation ' || c.relname AS kind, c.relowner AS owner FROM pg_catalog.pg_class AS c
        WHERE c.relnamespace = 'pdoflow'::regnamespace
        UNION ALL
        SELECT 'function ' || p.proname, p.proowner FROM pg_catalog.pg_proc AS p
        WHERE p.pronamespace = 'pdoflow'::regnamespace
        UNION ALL
        SELECT 'type ' || t.typname, t.typowner FROM pg_catalog.pg_type AS t
        WHERE t.typnamespace = 'pdoflow'::regnamespace
        UNION ALL
        SELECT 'operator ' || o.oprname, o.oprowner FROM pg_catalog.pg_operator AS o
        WHERE o.oprnamespace = 'pdoflow'::regnamespace
        UNION ALL
        SELECT 'collation ' || l.collname, l.collowner FROM pg_catalog.pg_collation AS l
        WHERE l.collnamespace = 'pdoflow'::regnamespace
        UNION ALL
        SELECT 'conversion ' || v.conname, v.conowner FROM pg_catalog.pg_conversion AS v
        WHERE v.connamespace = 'pdoflow'::regnamespace
        UNION ALL
        SELECT 'operator family ' || f.opfname, f.opfowner FROM pg_catalog.pg_opfamily AS f
        WHERE f.opfnamespace = 'pdoflow'::regnamespace
        UNION ALL
        SELECT 'text search configuration ' || s.cfgname, s.cfgowner FROM pg_catalog.pg_ts_config AS s
        WHERE s.cfgnamespace = 'pdoflow'::regnamespace
        UNION ALL
        SELECT 'text search dictionary ' || d.dictname, d.dictowner FROM pg_catalog.pg_ts_dict AS d
        WHERE d.dictnamespace = 'pdoflow'::regnamespace
    ) AS o
    WHERE o.owner <> (SELECT r.oid FROM pg_catalog.pg_roles AS r WHERE r.rolname = current_user)
      AND NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.oid = o.owner);
    IF creators IS NOT NULL THEN
        RAISE EXCEPTION 'schema "pdoflow" holds objects of other roles: %', creators
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'pdoflow installs only into a schema of its own: drop those objects, or the schema, and try again.';
    END IF;
    SELECT pg_catalog.string_agg(DISTINCT
               CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END,
               ', ')
    INTO creators
    FROM pg_catalog.pg_namespace AS n
    CROSS JOIN LATERAL pg_catalog.aclexplode(n.nspacl) AS a
    WHERE n.nspname = 'pdoflow' AND a.privilege_type = 'CREATE' AND a.grantee <> n.nspowner
      AND NOT coalesce((SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.oid = a.grantee), false);
    IF creators IS NOT NULL THEN
        RAISE EXCEPTION 'other roles may create objects in schema "pdoflow": %', creators
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'REVOKE CREATE ON SCHEMA pdoflow FROM those roles, then install the extension.';
    END IF;
END
$$;

-- Postings: named batches of jobs with a status. Jobs point at their posting;
-- a posting's queue and priority apply to jobs enqueued into it that leave
-- enqueue's queue and priority at their defaults.
CREATE TABLE pdoflow.postings (
    id                uuid        NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    status_changed_at timestamptz NOT NULL DEFAULT now(),
    priority          integer,
    status            text        COLLATE "C" NOT NULL DEFAULT 'active',
    queue             text        COLLATE "C",
    name              text        NOT NULL,
    description       text,
    CONSTRAINT postings_pkey PRIMARY KEY (id),
    CONSTRAINT postings_status_check CHECK (status IN ('active', 'paused', 'cancelled'))
);

COMMENT ON TABLE pdoflow.postings IS
    'Postings (batches of jobs). Read pdoflow.posting_status; change them only through the pdoflow functions.';

CREATE TABLE pdoflow.active_jobs (
    -- Fixed-width columns first, so rows pack without alignment padding.
    id               uuid        NOT NULL,
    posting          uuid,
    run_at           timestamptz NOT NULL,
    created_at       timestamptz NOT NULL,
    started_at       timestamptz,
    heartbeat_at     timestamptz,
    lease_expires_at timestamptz,
    priority         integer     NOT NULL,
    attempt          integer     NOT NULL DEFAULT 0,
    max_attempts     integer     NOT NULL,
    -- Blocked jobs: how many parents have not ended yet.
    parents_pending  integer,
    -- Names compare bytewise (COLLATE "C"): they are identifiers, and a
    -- locale-aware collation would make every index comparison call strcoll.
    -- 'paused' is 'queued' in a paused posting: out of the claim indexes,
    -- shown as queued by the views.
    state            text        COLLATE "C" NOT NULL DEFAULT 'queued',
    queue            text        COLLATE "C" NOT NULL,
    task             text        COLLATE "C" NOT NULL,
    worker           text        COLLATE "C",
    dependency_mode  text        COLLATE "C",
    -- The job's name in the DAG it was submitted with (sub-DAG paths joined by '/').
    node             text,
    last_error       text,
    depends_on       uuid[],
    args             jsonb       NOT NULL,
    -- The role that enqueued the job (see pdoflow._calling_role); NULL for
    -- jobs enqueued before pdoflow 0.4.0.
    enqueued_by      text,
    -- Unique jobs (sql/api/unique_keys.sql): the key the job holds in
    -- pdoflow.unique_keys with its task, or NULL.
    unique_key       text,
    -- What the current claim last reported with pdoflow.progress.
    progress         jsonb,
    -- Per-key limits (sql/api/queue_controls.sql): at most the queue's
    -- key_limit jobs with the same key run at once.
    concurrency_key  text        COLLATE "C",
    -- The job's queue is paused or limited (pdoflow.queue_controls): a queued
    -- job is then out of the every-queue claim index, claimed through its
    -- queue's limits; a running one holds one of its queue's running slots.
    controlled       boolean     NOT NULL DEFAULT false,
    -- No CHECK constraints: PostgreSQL 15 rebuilds a table's CHECKs from their
    -- stored text for every INSERT statement, which cost single-job enqueue a
    -- tenth of its rate. Only the pdoflow functions write this table; the
    -- rules those constraints stated (state, dependencies, lease, attempts)
    -- are checked by pdoflow.check_consistency() instead.
    CONSTRAINT active_jobs_pkey PRIMARY KEY (id)
) WITH (
    -- Every job is inserted, updated by its claim and deleted by its finish:
    -- leave room on each page for the claimed version, and vacuum early so
    -- that dead versions are reclaimed while the table is small. Vacuum keeps
    -- the cluster's throttling: claims do not wait for it (claim floors), and
    -- unthrottled it took a core while a long transaction left it nothing to
    -- remove (docs/benchmarks.md, 0.6.0).
    fillfactor = 70,
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0,
    autovacuum_vacuum_insert_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.02
);

COMMENT ON TABLE pdoflow.active_jobs IS
    'Queued and running jobs. Read pdoflow.jobs; change jobs only through the pdoflow functions.';

-- The claim order: highest priority first, then the longest due, then the oldest.
-- Partial on state, so running jobs and their updates never touch these indexes.
-- The every-queue index leaves out the jobs of paused and limited queues, so
-- that a claim does not walk past a held-back backlog; claims reach those
-- through the per-queue index, within their queue's limits.
CREATE INDEX active_jobs_claim_idx
    ON pdoflow.active_jobs (priority DESC, run_at, id)
    WHERE state = 'queued' AND NOT controlled;
CREATE INDEX active_jobs_queue_claim_idx
    ON pdoflow.active_jobs (queue, priority DESC, run_at, id)
    WHERE state = 'queued';

-- The sweeper finds expired leases, and the delayed jobs (and retries in
-- backoff) that fall due, without reading every queued job. A job enqueued to
-- run now has run_at = created_at and stays out of the second index: its
-- enqueue already notified.
CREATE INDEX active_jobs_lease_idx
    ON pdoflow.active_jobs (lease_expires_at)
    WHERE state = 'running';
CREATE INDEX active_jobs_delayed_idx
    ON pdoflow.active_jobs (run_at)
    WHERE state = 'queued' AND run_at > created_at;

-- A parent that ends finds its blocked children; jobs without parents, and
-- children once released, are not in it.
CREATE INDEX active_jobs_blocked_idx
    ON pdoflow.active_jobs USING gin (depends_on)
    WHERE state = 'blocked';
-- A claim from a queue with a per-key limit counts the running jobs of a key.
CREATE INDEX active_jobs_running_key_idx
    ON pdoflow.active_jobs (queue, concurrency_key)
    WHERE state = 'running' AND concurrency_key IS NOT NULL;

-- Posting status counts and set_posting_status find a posting's jobs.
CREATE INDEX active_jobs_posting_idx
    ON pdoflow.active_jobs (posting)
    WHERE posting IS NOT NULL;

CREATE TABLE pdoflow.finished_jobs (
    id           uuid        NOT NULL,
    posting      uuid,
    run_at       timestamptz NOT NULL,
    created_at   timestamptz NOT NULL,
    started_at   timestamptz,
    finished_at  timestamptz NOT NULL,
    priority     integer     NOT NULL,
    attempt      integer     NOT NULL,
    max_attempts integer     NOT NULL,
    state        text        COLLATE "C" NOT NULL,
    queue        text        COLLATE "C" NOT NULL,
    task         text        COLLATE "C" NOT NULL,
    worker       text        COLLATE "C",
    dependency_mode text     COLLATE "C",
    node         text,
    last_error   text,
    depends_on   uuid[],
    args         jsonb       NOT NULL,
    result       jsonb,
    enqueued_by  text,
    unique_key   text,
    progress     jsonb,
    concurrency_key text     COLLATE "C",
    CONSTRAINT finished_jobs_pkey PRIMARY KEY (id),
    CONSTRAINT finished_jobs_state_check CHECK (state IN ('succeeded', 'failed', 'cancelled'))
);

COMMENT ON TABLE pdoflow.finished_jobs IS
    'Succeeded, failed and cancelled jobs. Read pdoflow.jobs; change jobs only through the pdoflow functions.';

-- Retention deletes the oldest finished jobs first.
CREATE INDEX finished_jobs_finished_at_idx ON pdoflow.finished_jobs (finished_at);
CREATE INDEX finished_jobs_posting_idx
    ON pdoflow.finished_jobs (posting)
    WHERE posting IS NOT NULL;

CREATE VIEW pdoflow.jobs AS
SELECT id, task, queue, priority,
       CASE state WHEN 'paused' THEN 'queued' ELSE state END AS state,
       attempt, max_attempts, args,
       NULL::jsonb AS result, last_error, run_at, created_at, started_at,
       NULL::timestamptz AS finished_at, lease_expires_at, worker, heartbeat_at,
       posting, depends_on, dependency_mode, node, enqueued_by, unique_key, progress, concurrency_key
FROM pdoflow.active_jobs
UNION ALL
SELECT id, task, queue, priority, state, attempt, max_attempts, args,
       result, last_error, run_at, created_at, started_at,
       finished_at, NULL::timestamptz AS lease_expires_at, worker, NULL::timestamptz AS heartbeat_at,
       posting, depends_on, dependency_mode, node, enqueued_by, unique_key, progress, concurrency_key
FROM pdoflow.finished_jobs;

COMMENT ON VIEW pdoflow.jobs IS
    'Every job, whatever its state: blocked, queued, running, succeeded, failed or cancelled.';

-- The claims that ended without success, one row per attempt: a failure the
-- worker reported, a lease that expired, a release, or a cancel while the job
-- ran. A job's succeeded attempt is the job's own row (worker, started_at,
-- finished_at); the rows here are what came before it, or its whole story
-- when it never succeeded. Written by the paths that end a claim
-- (pdoflow._log_attempts, sql/api/history.sql); deleted with their job. No
-- foreign key: a job moves between active_jobs and finished_jobs.
CREATE TABLE pdoflow.job_attempts (
    job          uuid        NOT NULL,
    attempt      integer     NOT NULL,
    started_at   timestamptz,
    heartbeat_at timestamptz,
    ended_at     timestamptz NOT NULL,
    worker       text        COLLATE "C",
    outcome      text        COLLATE "C" NOT NULL,
    error        text,
    progress     jsonb,
    CONSTRAINT job_attempts_pkey PRIMARY KEY (job, attempt),
    CONSTRAINT job_attempts_outcome_check
        CHECK (outcome IN ('failed', 'lease_expired', 'released', 'cancelled'))
);

COMMENT ON TABLE pdoflow.job_attempts IS
    'Claims that ended without success (failed, lease_expired, released, cancelled), with their worker, times and error. Written by the pdoflow functions.';

-- The workers that claimed jobs or sent heartbeats, by the name they gave.
-- claim, heartbeat and register_worker mark a worker active; the sweeper marks
-- workers unseen for pdoflow.worker_timeout as gone, and forgets them after
-- pdoflow.retention. Job rescue does not depend on this table: expired leases
-- alone decide it.
CREATE TABLE pdoflow.workers (
    name          text        COLLATE "C" NOT NULL,
    state         text        COLLATE "C" NOT NULL DEFAULT 'active',
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    gone_at       timestamptz,
    -- The tasks it said it serves (register_worker); NULL: not said.
    tasks         text[],
    CONSTRAINT workers_pkey PRIMARY KEY (name),
    CONSTRAINT workers_state_check CHECK (state IN ('active', 'gone')),
    CONSTRAINT workers_gone_check CHECK ((state = 'gone') = (gone_at IS NOT NULL))
);

COMMENT ON TABLE pdoflow.workers IS
    'Workers seen by claim, heartbeat or register_worker: active, or gone when unseen for pdoflow.worker_timeout.';

-- What the sweeper has done so far: one row, created here (it is not dumped:
-- a restore's CREATE EXTENSION makes it again).
CREATE TABLE pdoflow.sweep_state (
    singleton          boolean     NOT NULL DEFAULT true,
    -- Delayed jobs due up to this time have been announced on channel 'pdoflow'.
    due_notified_until timestamptz NOT NULL,
    CONSTRAINT sweep_state_pkey PRIMARY KEY (singleton),
    CONSTRAINT sweep_state_singleton_check CHECK (singleton)
);
INSERT INTO pdoflow.sweep_state (due_notified_until) VALUES (now());

COMMENT ON TABLE pdoflow.sweep_state IS
    'Progress of pdoflow.sweep(): the time up to which due delayed jobs have been announced.';

-- Registered tasks (optional): a task's JSON Schema for its args, checked at
-- enqueue; with pdoflow.require_registered_tasks, only these may be enqueued.
CREATE TABLE pdoflow.tasks (
    name          text        COLLATE "C" NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    description   text,
    args_schema   jsonb,
    CONSTRAINT tasks_pkey PRIMARY KEY (name)
);

COMMENT ON TABLE pdoflow.tasks IS
    'Tasks registered with pdoflow.register_task: their description and the JSON Schema their args must match.';

-- Who may enqueue which task (pdoflow.grant_task; read pdoflow.task_grants).
-- A task without rows here is open to every producer. Roles are kept as
-- regrole: they follow a rename, and pg_dump writes them by name.
CREATE TABLE pdoflow.task_privileges (
    task       text        COLLATE "C" NOT NULL,
    grantee    regrole     NOT NULL,
    granted_by text        NOT NULL,
    granted_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT task_privileges_pkey PRIMARY KEY (task, grantee)
);

COMMENT ON TABLE pdoflow.task_privileges IS
    'Per-task enqueue grants. Read pdoflow.task_grants; change them only with pdoflow.grant_task and pdoflow.revoke_task.';

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

-- Flow control (sql/api/queue_controls.sql): the queues that are paused or
-- limited (released_at NULL). A queue without such a row has no controls. The counts that
-- enforce the limits live in shared memory (pdoflow-ext/src/flow_control/),
-- rebuilt from pdoflow.active_jobs after a restart.
CREATE TABLE pdoflow.queue_controls (
    queue       text        COLLATE "C" NOT NULL,
    paused      boolean     NOT NULL DEFAULT false,
    -- At most this many of the queue's jobs running at once.
    max_running integer,
    -- At most rate claims of the queue's jobs per per (a smooth limit).
    rate        integer,
    per         interval,
    -- At most this many running jobs per concurrency_key.
    key_limit   integer,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    -- When the queue's last control was removed: the row stays until the
    -- sweeper has let every job enqueued meanwhile back into the every-queue
    -- claim index (sql/api/queue_controls.sql).
    released_at timestamptz,
    CONSTRAINT queue_controls_pkey PRIMARY KEY (queue),
    CONSTRAINT queue_controls_max_running_check CHECK (max_running > 0),
    CONSTRAINT queue_controls_rate_check CHECK ((rate IS NULL) = (per IS NULL) AND rate > 0 AND per > interval '0'),
    CONSTRAINT queue_controls_key_limit_check CHECK (key_limit > 0),
    CONSTRAINT queue_controls_released_check
        CHECK ((released_at IS NULL) = (paused OR max_running IS NOT NULL OR rate IS NOT NULL OR key_limit IS NOT NULL))
);

COMMENT ON TABLE pdoflow.queue_controls IS
    'Paused and limited queues. Read pdoflow.queues; change them only with pause_queue, resume_queue, set_queue_limits and set_key_limit.';

-- pg_dump must keep the jobs themselves, not only the table definitions.
SELECT pg_catalog.pg_extension_config_dump('pdoflow.active_jobs', '');
SELECT pg_catalog.pg_extension_config_dump('pdoflow.finished_jobs', '');
SELECT pg_catalog.pg_extension_config_dump('pdoflow.postings', '');
SELECT pg_catalog.pg_extension_config_dump('pdoflow.tasks', '');
SELECT pg_catalog.pg_extension_config_dump('pdoflow.task_privileges', '');
SELECT pg_catalog.pg_extension_config_dump('pdoflow.unique_keys', '');
SELECT pg_catalog.pg_extension_config_dump('pdoflow.cron_schedules', '');
SELECT pg_catalog.pg_extension_config_dump('pdoflow.queue_controls', '');
SELECT pg_catalog.pg_extension_config_dump('pdoflow.job_attempts', '');
