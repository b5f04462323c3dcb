-- Compaction: keeping active_jobs small while vacuum cannot.
--
-- Every job is inserted into active_jobs, updated by its claim and deleted
-- by its finish, so the table and its indexes fill with dead row versions
-- that only vacuum reclaims. While something holds the xmin horizon (a long
-- transaction, a REPEATABLE READ reader, a replication slot, a standby's
-- hot_standby_feedback), vacuum may remove none of them: the table grows by
-- every job worked, for as long as the horizon is held, and stays large
-- afterwards. Compaction does what PgQ's table rotation does, with TRUNCATE:
-- under an ACCESS EXCLUSIVE lock held for a moment it copies the live jobs
-- aside, truncates the table (dead rows and index entries go with the old
-- files, whatever snapshot still exists) and puts the jobs back as they were.
-- The background sweeper calls it every round, and it compacts when the rule
-- below says so (docs/architecture.md, "Compaction").
--
-- What it costs: every session's work on active_jobs waits while the lock
-- is held, about 1 ms per MB of table plus 5 us per job kept
-- (docs/benchmarks.md, 0.8.0). The lock is not even asked for while a
-- transaction older than lock_wait holds a lock on the table (a report in a
-- long transaction, pg_dump, a vacuum), so those never stall the queue.
--
-- What it changes: TRUNCATE is not MVCC-safe. A REPEATABLE READ or
-- SERIALIZABLE snapshot from before a compaction sees active_jobs empty;
-- where pdoflow would then say that a job does not exist, it raises a
-- serialization failure instead (_require_active_jobs_in_snapshot), as for
-- a row changed since the snapshot. finished_jobs is never compacted.

-- Rewrites active_jobs down to its live jobs when it is worth it (or always,
-- with force), waiting at most lock_wait for its lock. Returns whether it
-- did, how many jobs it kept, the table's size with its indexes before and
-- after, and otherwise why not. Raises lock_not_available when other
-- transactions kept the lock from it for lock_wait, and
-- program_limit_exceeded when the copy found more live jobs than
-- pdoflow.compaction_max_jobs (the row counts it went by were wrong): the
-- sweeper then waits longer before it tries again.
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
