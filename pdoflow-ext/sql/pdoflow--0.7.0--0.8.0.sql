-- pdoflow 0.7.0 -> 0.8.0 (ALTER EXTENSION pdoflow UPDATE TO '0.8.0').
--
-- Compaction (issue 17): while something holds the xmin horizon, vacuum
-- can remove none of the dead rows that claims and finishes leave in
-- active_jobs, and the table grew without bound. The background sweeper
-- now truncates it and copies its live jobs back when dead rows fill it
-- (sql/api/compaction.sql). New: compact_active_jobs for admins,
-- _compaction_blocked_by, _require_active_jobs_in_snapshot, the settings
-- pdoflow.compaction_threshold and pdoflow.compaction_max_jobs. Changed:
-- where a job is found missing (_claim_problem, _parent_states, claim_job,
-- job_is_granted), a REPEATABLE READ snapshot older than a compaction gets
-- a serialization failure; job_is_granted and check_consistency are
-- VOLATILE, so that their queries see a compaction they waited for.
\echo Use "ALTER EXTENSION pdoflow UPDATE" to load this file. \quit

-- pdoflow-ext/src/settings.rs: new
CREATE FUNCTION pdoflow."_compaction_threshold"() RETURNS bigint /* i64 */
STRICT STABLE PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'compaction_threshold_wrapper';

CREATE FUNCTION pdoflow."_compaction_max_jobs"() RETURNS bigint /* i64 */
STRICT STABLE PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'compaction_max_jobs_wrapper';

-- sql/api/compaction.sql: new
CREATE FUNCTION pdoflow.compact_active_jobs(
    force     boolean  DEFAULT false,
    lock_wait interval DEFAULT '200 milliseconds'
) RETURNS TABLE (compacted boolean, jobs bigint, bytes_before bigint, bytes_after bigint, reason text)
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    threshold   bigint := pdoflow._compaction_threshold();
    max_jobs    bigint := pdoflow._compaction_max_jobs();
    size        bigint := pg_catalog.pg_total_relation_size('pdoflow.active_jobs');
    live        bigint := pg_catalog.pg_stat_get_live_tuples('pdoflow.active_jobs'::regclass);
    dead        bigint := pg_catalog.pg_stat_get_dead_tuples('pdoflow.active_jobs'::regclass);
    kept        bigint;
    columns     text;
    caller_wait text := pg_catalog.current_setting('lock_timeout');
    caller_role text := pg_catalog.current_setting('session_replication_role');
    blocker     text;
BEGIN
    -- The copy must see every job committed before the lock: a snapshot of
    -- its own, taken after the lock.
    PERFORM pdoflow._require_read_committed('pdoflow.compact_active_jobs');
    IF force IS NULL OR lock_wait IS NULL OR lock_wait <= interval '0' THEN
        RAISE EXCEPTION 'pdoflow.compact_active_jobs: force must not be NULL and lock_wait must be positive, got % and %',
                coalesce(force::text, 'NULL'), coalesce(lock_wait::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    IF NOT force THEN
        IF threshold = 0 THEN
            RETURN QUERY SELECT false, NULL::bigint, size, size, 'pdoflow.compaction_threshold is 0 (off)';
            RETURN;
        END IF;
        IF size < threshold THEN
            RETURN QUERY SELECT false, NULL::bigint, size, size,
                format('the table and its indexes (%s) are smaller than pdoflow.compaction_threshold (%s)',
                       pg_catalog.pg_size_pretty(size), pg_catalog.pg_size_pretty(threshold));
            RETURN;
        END IF;
        -- Row counts start from nothing after a crash, a failover or
        -- pg_stat_reset: no count is no reason to copy.
        IF NOT pg_catalog.current_setting('track_counts')::boolean OR live + dead = 0 THEN
            RETURN QUERY SELECT false, NULL::bigint, size, size,
                'no row counts for the table yet (track_counts off, or statistics reset): compaction cannot tell live jobs from dead rows';
            RETURN;
        END IF;
        IF live > max_jobs THEN
            RETURN QUERY SELECT false, NULL::bigint, size, size,
                format('about %s live jobs, more than pdoflow.compaction_max_jobs (%s)', live, max_jobs);
            RETURN;
        END IF;
        -- Worth it when the live jobs fill at most a quarter of the
        -- threshold: the table is mostly dead rows, and once compacted it
        -- stays well below the threshold instead of being compacted again.
        IF size::numeric * live / (live + dead) > threshold / 4 THEN
            RETURN QUERY SELECT false, NULL::bigint, size, size,
                format('about %s live jobs of %s rows: the table is not mostly dead rows', live, live + dead);
            RETURN;
        END IF;
        -- The lock is held about 1 ms per MB of table plus 5 us per job.
        -- A table that grew far past the threshold while compaction was
        -- kept off (a long report holding a lock on it) would stall the
        -- queue for seconds: leave it to vacuum, which can clean it without
        -- blocking anyone once that report is gone.
        IF size / (1024 * 1024) + live / 200 > 1000 THEN
            RETURN QUERY SELECT false, NULL::bigint, size, size,
                format('compacting %s with about %s live jobs would hold the lock for more than a second',
                       pg_catalog.pg_size_pretty(size), live);
            RETURN;
        END IF;
    END IF;

    -- Not while a transaction older than lock_wait holds a lock on the
    -- table, nor while pg_dump runs (_compaction_blocked_by).
    blocker := pdoflow._compaction_blocked_by(lock_wait);
    IF blocker IS NOT NULL THEN
        RETURN QUERY SELECT false, NULL::bigint, size, size, blocker;
        RETURN;
    END IF;

    PERFORM pg_catalog.set_config('lock_timeout', greatest(ceil(extract(epoch FROM lock_wait) * 1000), 1)::bigint::text, true);
    BEGIN
        LOCK TABLE pdoflow.active_jobs IN ACCESS EXCLUSIVE MODE;
    EXCEPTION WHEN lock_not_available THEN
        RAISE EXCEPTION 'pdoflow.compact_active_jobs: other transactions kept their locks on pdoflow.active_jobs for longer than %', lock_wait
            USING ERRCODE = 'lock_not_available',
                  HINT = 'Nothing was changed; the background sweeper tries again later.';
    END;
    PERFORM pg_catalog.set_config('lock_timeout', caller_wait, true);
    -- Once more with the lock held: a pg_dump may have connected meanwhile.
    blocker := pdoflow._compaction_blocked_by(lock_wait);
    IF blocker IS NOT NULL THEN
        RETURN QUERY SELECT false, NULL::bigint, size, size, blocker;
        RETURN;
    END IF;

    -- The copy may be larger than memory (args up to pdoflow.max_payload_bytes
    -- each): a temporary table holds it, not an array.
    CREATE TEMPORARY TABLE pdoflow_compaction ON COMMIT DROP AS
    SELECT * FROM pdoflow.active_jobs
    LIMIT CASE WHEN force THEN NULL ELSE max_jobs + 1 END;
    GET DIAGNOSTICS kept = ROW_COUNT;
    IF kept > max_jobs AND NOT force THEN
        RAISE EXCEPTION 'pdoflow.compact_active_jobs: more than pdoflow.compaction_max_jobs (%) live jobs, where the row counts said %', max_jobs, live
            USING ERRCODE = 'program_limit_exceeded',
                  HINT = 'Nothing was changed. The statistics are behind (just reset, say); ANALYZE pdoflow.active_jobs brings them up to date.';
    END IF;

    TRUNCATE pdoflow.active_jobs;
    -- The jobs come back as they were, with the columns a DBA added (the
    -- generated ones computed again, identity values kept). Not as new
    -- jobs: the table's ordinary triggers do not fire, as for a logical
    -- replication apply (triggers set ENABLE REPLICA or ALWAYS still do).
    SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO columns
    FROM pg_catalog.pg_attribute AS a
    WHERE a.attrelid = 'pdoflow.active_jobs'::regclass AND a.attnum > 0
      AND NOT a.attisdropped AND a.attgenerated = '';
    PERFORM pg_catalog.set_config('session_replication_role', 'replica', true);
    EXECUTE format('INSERT INTO pdoflow.active_jobs (%1$s) OVERRIDING SYSTEM VALUE
                    SELECT %1$s FROM pg_temp.pdoflow_compaction', columns);
    PERFORM pg_catalog.set_config('session_replication_role', caller_role, true);
    DROP TABLE pg_temp.pdoflow_compaction;
    -- The truncation resets the table's live and dead row counts, which the
    -- rule above reads, only if this session's statistics reach shared
    -- memory before its next change to the table: send them when it next
    -- goes idle (the background sweeper sends its own after every round).
    PERFORM pg_catalog.pg_stat_force_next_flush();

    RETURN QUERY SELECT true, kept, size, pg_catalog.pg_total_relation_size('pdoflow.active_jobs'), NULL::text;
END
$$;

COMMENT ON FUNCTION pdoflow.compact_active_jobs(boolean, interval) IS
    'Rewrites pdoflow.active_jobs down to its live jobs (TRUNCATE and copy back, under a brief ACCESS EXCLUSIVE lock) when dead rows that vacuum cannot remove fill it, or always with force. The background sweeper calls it; returns what it did or why not.';

-- Why a compaction must not ask for its lock now, or NULL when it may:
--   * a transaction older than lock_wait holds a lock on the table (a
--     prepared one, or a report, pg_dump or vacuum): asking would make
--     everyone after us wait behind the request, and it would keep the lock
--     from us for longer than we wait (autovacuum gives way to a waiting
--     lock, but only after deadlock_timeout, 1 s by default);
--   * pg_dump is connected to this database (by its default
--     application_name): it takes its snapshot first and locks the tables
--     it dumps after, and a compaction in between would leave the dump
--     without active jobs.
-- A fresh look at the sessions each time, not the transaction's cached one.
CREATE FUNCTION pdoflow._compaction_blocked_by(lock_wait interval)
RETURNS text
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    holder   record;
    dump_pid integer;
BEGIN
    PERFORM pg_catalog.pg_stat_clear_snapshot();
    SELECT l.pid, a.backend_type, a.xact_start INTO holder
    FROM pg_catalog.pg_locks AS l
    LEFT JOIN pg_catalog.pg_stat_activity AS a ON a.pid = l.pid
    WHERE l.locktype = 'relation'
      AND l.database = (SELECT d.oid FROM pg_catalog.pg_database AS d
                        WHERE d.datname = pg_catalog.current_database())
      AND l.relation = 'pdoflow.active_jobs'::regclass
      AND l.granted
      AND l.pid IS DISTINCT FROM pg_catalog.pg_backend_pid()
      -- (A session between its commit and the release of its locks shows
      -- no xact_start: it is about to let go.)
      AND (l.pid IS NULL OR a.xact_start < pg_catalog.clock_timestamp() - lock_wait)
    ORDER BY a.xact_start
    LIMIT 1;
    IF FOUND THEN
        RETURN CASE WHEN holder.pid IS NULL THEN 'a prepared transaction holds a lock on pdoflow.active_jobs'
                    ELSE format('%s (pid %s), in a transaction since %s, holds a lock on pdoflow.active_jobs',
                                holder.backend_type, holder.pid, holder.xact_start)
               END;
    END IF;
    SELECT a.pid INTO dump_pid
    FROM pg_catalog.pg_stat_activity AS a
    WHERE a.datname = pg_catalog.current_database() AND a.application_name = 'pg_dump'
    LIMIT 1;
    IF FOUND THEN
        RETURN format('pg_dump (pid %s) is dumping the database', dump_pid);
    END IF;
    RETURN NULL;
END
$$;

-- Raises a serialization failure when active_jobs was compacted after this
-- transaction's snapshot was taken, so that a REPEATABLE READ or
-- SERIALIZABLE transaction, which sees the table empty then, is retried
-- instead of being told that a job does not exist. Called where pdoflow
-- would say so (a claim's job gone, a parent that does not exist, a job
-- claim_job or job_is_granted cannot find); nothing to do in READ
-- COMMITTED, where every statement sees the compacted table. The
-- transaction's snapshot still shows the table's old file in pg_class; the
-- catalog cache already has the new one.
CREATE FUNCTION pdoflow._require_active_jobs_in_snapshot()
RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    IF pg_catalog.current_setting('transaction_isolation') <> 'read committed'
       AND (SELECT c.relfilenode FROM pg_catalog.pg_class AS c WHERE c.oid = 'pdoflow.active_jobs'::regclass)
           IS DISTINCT FROM pg_catalog.pg_relation_filenode('pdoflow.active_jobs') THEN
        RAISE EXCEPTION 'could not serialize access: pdoflow.active_jobs was compacted after this transaction''s snapshot was taken'
            USING ERRCODE = 'serialization_failure',
                  HINT = 'Retry the transaction.';
    END IF;
END
$$;

-- sql/api/finish.sql: changed
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

-- sql/api/dependencies.sql: changed
CREATE OR REPLACE FUNCTION pdoflow._parent_states(parents uuid[])
RETURNS TABLE (id uuid, state text)
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
DECLARE
    found_ids    uuid[] := '{}';
    found_states text[] := '{}';
    missing      uuid[] := parents;
BEGIN
    -- A parent that moves between the tables while we wait for its lock (it
    -- ended, or was retried) is gone from where we looked: a second round,
    -- from a fresh snapshot, finds it where it landed.
    FOR round IN 1..2 LOOP
        SELECT found_ids || coalesce(array_agg(a.id), '{}'), found_states || coalesce(array_agg(a.state), '{}')
        INTO found_ids, found_states
        FROM (
            SELECT a.id, a.state::text
            FROM pdoflow.active_jobs AS a
            WHERE a.id = ANY (missing)
            ORDER BY a.id
            FOR KEY SHARE
        ) AS a;
        SELECT found_ids || coalesce(array_agg(f.id), '{}'), found_states || coalesce(array_agg(f.state), '{}')
        INTO found_ids, found_states
        FROM (
            SELECT f.id, f.state::text
            FROM pdoflow.finished_jobs AS f
            WHERE f.id = ANY (missing) AND f.id <> ALL (found_ids)
            ORDER BY f.id
            FOR KEY SHARE
        ) AS f;
        SELECT array_agg(p) INTO missing FROM unnest(parents) AS p WHERE p <> ALL (found_ids);
        EXIT WHEN missing IS NULL;
    END LOOP;
    IF missing IS NOT NULL THEN
        -- (Or, under REPEATABLE READ, active_jobs was compacted since the
        -- snapshot: a serialization failure then.)
        PERFORM pdoflow._require_active_jobs_in_snapshot();
        RAISE EXCEPTION 'depends_on: job % does not exist', missing[1]
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A job can only depend on jobs that exist (committed, and not yet deleted by pdoflow.retention).';
    END IF;
    RETURN QUERY SELECT f.id, f.state FROM unnest(found_ids, found_states) AS f(id, state);
END
$$;

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
        PERFORM pdoflow._require_active_jobs_in_snapshot();
        RETURN;
    END IF;
    RETURN QUERY SELECT * FROM pdoflow._start_attempts(picked, claim_job.worker, claim_job.lease);
END
$$;

COMMENT ON FUNCTION pdoflow.claim_job(uuid, text, interval) IS
    'Claims the queued job job_id (even before its run_at) for lease; no row when it is not queued.';

-- sql/api/tasks.sql: changed
CREATE OR REPLACE FUNCTION pdoflow.job_is_granted(id uuid)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
DECLARE
    job record;
BEGIN
    SELECT j.task, j.enqueued_by INTO job FROM pdoflow.active_jobs AS j WHERE j.id = job_is_granted.id;
    IF NOT FOUND THEN
        PERFORM pdoflow._require_active_jobs_in_snapshot();
        RETURN false;
    END IF;
    RETURN EXISTS (SELECT FROM pdoflow.task_privileges AS p WHERE p.task = job.task)
       AND EXISTS (SELECT FROM pg_catalog.pg_roles AS enqueuer
                   WHERE enqueuer.rolname = job.enqueued_by
                     AND pdoflow._may_enqueue(enqueuer.oid, job.task));
END
$$;

COMMENT ON FUNCTION pdoflow.job_is_granted(uuid) IS
    'Whether the active job id''s task has a grant held by the role that enqueued it (or that role is an admin): for workers, before they run jobs of tasks such as shell.';

-- sql/api/consistency.sql: changed
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
$$;

COMMENT ON FUNCTION pdoflow.check_consistency() IS
    'Rows that break pdoflow''s invariants: an active job whose own columns disagree, and across tables (a job in both tables, a stuck or wrongly released dependent, a job out of step with its posting); no row when all is well.';

-- sql/roles.sql: the new functions are internal, save compaction for admins.
REVOKE ALL ON FUNCTION
    pdoflow._compaction_threshold(),
    pdoflow._compaction_max_jobs(),
    pdoflow.compact_active_jobs(boolean, interval),
    pdoflow._require_active_jobs_in_snapshot(),
    pdoflow._compaction_blocked_by(interval)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pdoflow.compact_active_jobs(boolean, interval) TO pdoflow_admin;
