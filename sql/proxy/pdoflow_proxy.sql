-- pdoflow_proxy: one queue over several shard databases, through PL/Proxy.
--
-- Run in the proxy database (which has PL/Proxy, not pdoflow), after
--
--   CREATE EXTENSION plproxy;
--   CREATE SERVER pdoflow_shards FOREIGN DATA WRAPPER plproxy OPTIONS (
--       p0 'host=shard0 dbname=app', p1 'host=shard1 dbname=app', ...);
--   CREATE USER MAPPING FOR PUBLIC SERVER pdoflow_shards OPTIONS (user 'app');
--
-- with a power of two of shards, each a database with pdoflow whose
-- pdoflow.shard is its partition number (ALTER DATABASE app SET
-- pdoflow.shard = 0, 1, ...): every id a shard makes then says which shard
-- it lives on (pdoflow.shard_of), and calls about a job go there.
-- pdoflow_proxy.check_shards() checks that numbering. docs/scaling.md has
-- the whole setup.
--
-- Schema pdoflow_proxy offers enqueue, enqueue_many, create_posting,
-- submit_dag, claim, finish, heartbeat and cancel with the signatures of
-- pdoflow's (enqueue and enqueue_many also take a routing_key), and the
-- views jobs, posting_status, priority_stats, queues and stats over every
-- shard. Where a job goes:
--   - into its posting's shard (a posting, its jobs and its DAGs live on one
--     shard), or its parents' shard (depends_on);
--   - with a unique key, to the shard its task and key hash to, so that the
--     key is unique across shards;
--   - with a routing key, to the shard it hashes to (jobs with the same
--     routing key share a shard);
--   - otherwise to a shard picked at random, or the next one when that one
--     cannot be reached.
-- A claim takes jobs from the shards in turn, starting at a random one, and
-- skips shards that cannot be reached: priority order holds within a
-- shard, not across shards. Each call to a shard is a transaction of its
-- own there (PL/Proxy has no distributed transactions): a rollback in the
-- proxy does not undo what shards committed.

CREATE SCHEMA IF NOT EXISTS pdoflow_proxy;

-- The shard a job or posting id lives on (as pdoflow.shard_of).
CREATE FUNCTION pdoflow_proxy.shard_of(id uuid)
RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
BEGIN ATOMIC
    SELECT pg_catalog.get_byte(pg_catalog.uuid_send(id), 15);
END;

-- How many shards server pdoflow_shards lists (its p0, p1, ... options).
CREATE FUNCTION pdoflow_proxy.shard_count()
RETURNS integer
LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT count(*)::integer
    FROM pg_catalog.pg_foreign_server AS s, pg_catalog.unnest(s.srvoptions) AS o(option)
    WHERE s.srvname = 'pdoflow_shards' AND o.option ~ '^p[0-9]+=';
END;

-- The shard a new job must go to, or NULL when any will do: its posting's,
-- its first parent's, its task and unique key's, or its routing key's.
CREATE FUNCTION pdoflow_proxy._placement(task text, posting uuid, depends_on uuid[], unique_key text,
                                         routing_key text)
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT CASE
        WHEN posting IS NOT NULL THEN pdoflow_proxy.shard_of(posting)
        WHEN pg_catalog.cardinality(depends_on) > 0 THEN pdoflow_proxy.shard_of(depends_on[1])
        WHEN unique_key IS NOT NULL THEN pg_catalog.hashtext(task || pg_catalog.chr(1) || unique_key)
        WHEN routing_key IS NOT NULL THEN pg_catalog.hashtext(routing_key)
    END;
END;

-- Whether `caller`'s call to shard `part`, failed with (state, message),
-- is to go on with the next shard, which it then says in a WARNING: when
-- the shard could not be reached, so that nothing was done there; and, with
-- `lost_too`, when the connection to it was lost during the call, so that
-- what was done there is unknown. That is fine for a claim (what it may
-- have claimed comes back when the lease runs out), not for placing a new
-- job, which might then exist twice: that call fails, and the next one
-- finds the shard down. Otherwise the caller raises the error as it came
-- (a shard's own error keeps its SQLSTATE; PL/Proxy's are XX000, told
-- apart by their text).
CREATE FUNCTION pdoflow_proxy._skipped(caller text, part integer, state text, message text,
                                       lost_too boolean DEFAULT false)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    IF state = 'XX000'
       AND (message ~* 'PQconnect|could not connect|connection refused'
            OR (lost_too AND message ~* 'server closed the connection|PQconsumeInput|terminating connection')) THEN
        RAISE WARNING '%: shard p% cannot be reached; going on with the next', caller, part
            USING DETAIL = message;
        RETURN true;
    END IF;
    RETURN false;
END
$$;

-- The shard numbers in the order a call tries them: `first` (a random one
-- when NULL) and then the others.
CREATE FUNCTION pdoflow_proxy._shard_order(first integer)
RETURNS SETOF integer
LANGUAGE sql VOLATILE
BEGIN ATOMIC
    WITH n AS (SELECT pdoflow_proxy.shard_count() AS shards),
         start AS (SELECT coalesce(first, (pg_catalog.random() * 1e9)::integer) % n.shards AS shard, n.shards FROM n)
    SELECT (start.shard + i) % start.shards
    FROM start, pg_catalog.generate_series(0, start.shards - 1) AS i
    ORDER BY i;
END;

-- Each shard's pdoflow.shard, as it says, beside the partition number it
-- has in server pdoflow_shards; check_shards() raises unless they match.
CREATE FUNCTION pdoflow_proxy._shard_setting_on(part integer)
RETURNS text
LANGUAGE plproxy
AS $$
    CLUSTER 'pdoflow_shards';
    RUN ON part;
    SELECT pg_catalog.current_setting('pdoflow.shard', true) AS shard;
$$;

CREATE FUNCTION pdoflow_proxy.check_shards()
RETURNS TABLE (part integer, shard text)
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    shards integer := pdoflow_proxy.shard_count();
    p      integer;
BEGIN
    IF shards = 0 OR shards & (shards - 1) <> 0 THEN
        RAISE EXCEPTION 'server pdoflow_shards lists % shards; PL/Proxy needs a power of two', shards
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'CREATE SERVER pdoflow_shards FOREIGN DATA WRAPPER plproxy OPTIONS (p0 ''...'', p1 ''...'', ...)';
    END IF;
    FOR p IN 0 .. shards - 1 LOOP
        part := p;
        shard := pdoflow_proxy._shard_setting_on(p);
        IF shard IS DISTINCT FROM p::text THEN
            RAISE EXCEPTION 'shard p% has pdoflow.shard = %, not %', p, coalesce(shard, 'unset'), p
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = format('In that database: ALTER DATABASE ... SET pdoflow.shard = %s (then reconnect).', p);
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;

-- One call on shard `part`, for each function that places new things.
CREATE FUNCTION pdoflow_proxy._enqueue_on(
    part integer, task text, args jsonb, queue text, priority integer, run_at timestamptz,
    max_attempts integer, posting uuid, depends_on uuid[], dependency_mode text, unique_key text,
    unique_for interval, concurrency_key text
) RETURNS uuid
LANGUAGE plproxy
AS $$
    CLUSTER 'pdoflow_shards';
    RUN ON part;
    SELECT pdoflow.enqueue(task, args, queue, priority, run_at, max_attempts, posting, depends_on,
                           dependency_mode, unique_key, unique_for, concurrency_key) AS enqueue;
$$;

CREATE FUNCTION pdoflow_proxy._enqueue_many_on(
    part integer, task text, args jsonb[], queue text, priority integer, run_at timestamptz,
    max_attempts integer, posting uuid, depends_on uuid[], dependency_mode text, unique_keys text[],
    unique_for interval, concurrency_keys text[]
) RETURNS TABLE (id uuid)
LANGUAGE plproxy
AS $$
    CLUSTER 'pdoflow_shards';
    RUN ON part;
    SELECT e.id FROM pdoflow.enqueue_many(task, args, queue, priority, run_at, max_attempts, posting,
                                          depends_on, dependency_mode, unique_keys, unique_for,
                                          concurrency_keys) AS e;
$$;

CREATE FUNCTION pdoflow_proxy._create_posting_on(
    part integer, name text, description text, priority integer, queue text
) RETURNS uuid
LANGUAGE plproxy
AS $$
    CLUSTER 'pdoflow_shards';
    RUN ON part;
    SELECT pdoflow.create_posting(name, description, priority, queue) AS create_posting;
$$;

CREATE FUNCTION pdoflow_proxy._submit_dag_on(part integer, dag jsonb, posting uuid)
RETURNS TABLE (name text, id uuid)
LANGUAGE plproxy
AS $$
    CLUSTER 'pdoflow_shards';
    RUN ON part;
    SELECT d.name, d.id FROM pdoflow.submit_dag(dag, posting) AS d;
$$;

CREATE FUNCTION pdoflow_proxy._claim_on(
    part integer, n integer, queues text[], worker text, lease interval, tasks text[]
) RETURNS TABLE (
    id uuid, task text, args jsonb, queue text, priority integer, attempt integer, max_attempts integer,
    lease_expires_at timestamptz, run_at timestamptz, created_at timestamptz, last_error text,
    posting uuid, parent_results jsonb
)
LANGUAGE plproxy
AS $$
    CLUSTER 'pdoflow_shards';
    RUN ON part;
    SELECT c.id, c.task, c.args, c.queue, c.priority, c.attempt, c.max_attempts, c.lease_expires_at,
           c.run_at, c.created_at, c.last_error, c.posting, c.parent_results
    FROM pdoflow.claim(n, queues, worker, lease, tasks) AS c;
$$;

-- pdoflow.enqueue, placed as the header says.
CREATE FUNCTION pdoflow_proxy.enqueue(
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
    unique_for      interval    DEFAULT NULL,
    concurrency_key text        DEFAULT NULL,
    routing_key     text        DEFAULT NULL
) RETURNS uuid
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    placed integer := pdoflow_proxy._placement(task, posting, depends_on, unique_key, routing_key);
    part   integer;
BEGIN
    IF placed IS NOT NULL THEN
        -- PL/Proxy maps a number to a shard as a hash: placed & (shards - 1).
        RETURN pdoflow_proxy._enqueue_on(placed, task, args, queue, priority, run_at, max_attempts, posting,
                                         depends_on, dependency_mode, unique_key, unique_for, concurrency_key);
    END IF;
    FOR part IN SELECT * FROM pdoflow_proxy._shard_order(NULL) LOOP
        BEGIN
            RETURN pdoflow_proxy._enqueue_on(part, task, args, queue, priority, run_at, max_attempts, posting,
                                             depends_on, dependency_mode, unique_key, unique_for, concurrency_key);
        EXCEPTION WHEN internal_error THEN
            IF NOT pdoflow_proxy._skipped('pdoflow_proxy.enqueue', part, SQLSTATE, SQLERRM) THEN
                RAISE;
            END IF;
        END;
    END LOOP;
    RAISE EXCEPTION 'pdoflow_proxy.enqueue: no shard can be reached'
        USING ERRCODE = 'connection_failure';
END
$$;

-- pdoflow.enqueue_many (the array form): the whole batch on one shard, in
-- one transaction there.
CREATE FUNCTION pdoflow_proxy.enqueue_many(
    task             text,
    args             jsonb[],
    queue            text        DEFAULT 'default',
    priority         integer     DEFAULT 0,
    run_at           timestamptz DEFAULT NULL,
    max_attempts     integer     DEFAULT 5,
    posting          uuid        DEFAULT NULL,
    depends_on       uuid[]      DEFAULT NULL,
    dependency_mode  text        DEFAULT 'all',
    unique_keys      text[]      DEFAULT NULL,
    unique_for       interval    DEFAULT NULL,
    concurrency_keys text[]      DEFAULT NULL,
    routing_key      text        DEFAULT NULL
) RETURNS TABLE (id uuid)
LANGUAGE plpgsql VOLATILE ROWS 1000
AS $$
DECLARE
    placed integer := pdoflow_proxy._placement(task, posting, depends_on, NULL, routing_key);
    part   integer;
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.unnest(unique_keys) AS k WHERE k IS NOT NULL) THEN
        RAISE EXCEPTION 'pdoflow_proxy.enqueue_many does not take unique keys: each key belongs on the shard it hashes to'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Enqueue jobs with unique keys one by one with pdoflow_proxy.enqueue, or all into one posting.';
    END IF;
    IF placed IS NOT NULL THEN
        RETURN QUERY SELECT * FROM pdoflow_proxy._enqueue_many_on(placed, task, args, queue, priority, run_at,
            max_attempts, posting, depends_on, dependency_mode, unique_keys, unique_for, concurrency_keys);
        RETURN;
    END IF;
    FOR part IN SELECT * FROM pdoflow_proxy._shard_order(NULL) LOOP
        BEGIN
            RETURN QUERY SELECT * FROM pdoflow_proxy._enqueue_many_on(part, task, args, queue, priority, run_at,
                max_attempts, posting, depends_on, dependency_mode, unique_keys, unique_for, concurrency_keys);
            RETURN;
        EXCEPTION WHEN internal_error THEN
            IF NOT pdoflow_proxy._skipped('pdoflow_proxy.enqueue_many', part, SQLSTATE, SQLERRM) THEN
                RAISE;
            END IF;
        END;
    END LOOP;
    RAISE EXCEPTION 'pdoflow_proxy.enqueue_many: no shard can be reached'
        USING ERRCODE = 'connection_failure';
END
$$;

-- pdoflow.create_posting, on a shard picked at random (or the next one
-- that can be reached); its jobs and DAGs then go there.
CREATE FUNCTION pdoflow_proxy.create_posting(
    name        text,
    description text    DEFAULT NULL,
    priority    integer DEFAULT NULL,
    queue       text    DEFAULT NULL
) RETURNS uuid
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    part integer;
BEGIN
    FOR part IN SELECT * FROM pdoflow_proxy._shard_order(NULL) LOOP
        BEGIN
            RETURN pdoflow_proxy._create_posting_on(part, name, description, priority, queue);
        EXCEPTION WHEN internal_error THEN
            IF NOT pdoflow_proxy._skipped('pdoflow_proxy.create_posting', part, SQLSTATE, SQLERRM) THEN
                RAISE;
            END IF;
        END;
    END LOOP;
    RAISE EXCEPTION 'pdoflow_proxy.create_posting: no shard can be reached'
        USING ERRCODE = 'connection_failure';
END
$$;

-- pdoflow.submit_dag: on its posting's shard, else on one picked at random.
CREATE FUNCTION pdoflow_proxy.submit_dag(dag jsonb, posting uuid DEFAULT NULL)
RETURNS TABLE (name text, id uuid)
LANGUAGE plpgsql VOLATILE ROWS 100
AS $$
DECLARE
    part integer;
BEGIN
    IF posting IS NOT NULL THEN
        RETURN QUERY SELECT * FROM pdoflow_proxy._submit_dag_on(pdoflow_proxy.shard_of(posting), dag, posting);
        RETURN;
    END IF;
    FOR part IN SELECT * FROM pdoflow_proxy._shard_order(NULL) LOOP
        BEGIN
            RETURN QUERY SELECT * FROM pdoflow_proxy._submit_dag_on(part, dag, NULL);
            RETURN;
        EXCEPTION WHEN internal_error THEN
            IF NOT pdoflow_proxy._skipped('pdoflow_proxy.submit_dag', part, SQLSTATE, SQLERRM) THEN
                RAISE;
            END IF;
        END;
    END LOOP;
    RAISE EXCEPTION 'pdoflow_proxy.submit_dag: no shard can be reached'
        USING ERRCODE = 'connection_failure';
END
$$;

-- pdoflow.claim: up to n jobs, from the shards in turn starting at a random
-- one, skipping those that cannot be reached. It does not wait: a claim
-- with a wait would sit on one shard while others have work.
CREATE FUNCTION pdoflow_proxy.claim(
    n      integer  DEFAULT 1,
    queues text[]   DEFAULT NULL,
    worker text     DEFAULT NULL,
    lease  interval DEFAULT '5 minutes',
    tasks  text[]   DEFAULT NULL,
    wait   interval DEFAULT '0'
) RETURNS TABLE (
    id uuid, task text, args jsonb, queue text, priority integer, attempt integer, max_attempts integer,
    lease_expires_at timestamptz, run_at timestamptz, created_at timestamptz, last_error text,
    posting uuid, parent_results jsonb
)
LANGUAGE plpgsql VOLATILE ROWS 10
AS $$
DECLARE
    part    integer;
    got     integer := 0;
    claimed integer;
BEGIN
    IF wait IS DISTINCT FROM interval '0' THEN
        RAISE EXCEPTION 'pdoflow_proxy.claim does not wait (wait => %)', wait
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Claim with wait => ''0'' and poll, or listen on each shard.';
    END IF;
    IF n IS NULL OR n < 1 THEN
        RAISE EXCEPTION 'n must be at least 1, got %', n USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR part IN SELECT * FROM pdoflow_proxy._shard_order(NULL) LOOP
        BEGIN
            RETURN QUERY SELECT * FROM pdoflow_proxy._claim_on(part, n - got, queues, worker, lease, tasks);
            GET DIAGNOSTICS claimed = ROW_COUNT;
            got := got + claimed;
        EXCEPTION WHEN internal_error THEN
            IF NOT pdoflow_proxy._skipped('pdoflow_proxy.claim', part, SQLSTATE, SQLERRM, lost_too => true) THEN
                RAISE;
            END IF;
        END;
        EXIT WHEN got >= n;
    END LOOP;
END
$$;

-- The calls about one job go to its shard.
CREATE FUNCTION pdoflow_proxy.finish(id uuid, attempt integer, error text DEFAULT NULL, result jsonb DEFAULT NULL)
RETURNS text
LANGUAGE plproxy
AS $$
    CLUSTER 'pdoflow_shards';
    RUN ON pdoflow_proxy.shard_of(id);
    TARGET pdoflow.finish;
$$;

CREATE FUNCTION pdoflow_proxy.heartbeat(id uuid, attempt integer, lease interval DEFAULT NULL)
RETURNS timestamptz
LANGUAGE plproxy
AS $$
    CLUSTER 'pdoflow_shards';
    RUN ON pdoflow_proxy.shard_of(id);
    TARGET pdoflow.heartbeat;
$$;

CREATE FUNCTION pdoflow_proxy.cancel(id uuid)
RETURNS boolean
LANGUAGE plproxy
AS $$
    CLUSTER 'pdoflow_shards';
    RUN ON pdoflow_proxy.shard_of(id);
    TARGET pdoflow.cancel;
$$;

-- The views, over every shard (each read asks all of them; one that cannot
-- be reached fails the read).
CREATE FUNCTION pdoflow_proxy._jobs()
RETURNS TABLE (
    id uuid, task text, queue text, priority integer, state text, attempt integer, max_attempts integer,
    args jsonb, result jsonb, last_error text, run_at timestamptz, created_at timestamptz,
    started_at timestamptz, finished_at timestamptz, lease_expires_at timestamptz, worker text,
    heartbeat_at timestamptz, posting uuid, depends_on uuid[], dependency_mode text, node text,
    enqueued_by text, unique_key text, progress jsonb, concurrency_key text
)
LANGUAGE plproxy
AS $$
    CLUSTER 'pdoflow_shards';
    RUN ON ALL;
    SELECT * FROM pdoflow.jobs;
$$;

CREATE VIEW pdoflow_proxy.jobs AS SELECT * FROM pdoflow_proxy._jobs();

CREATE FUNCTION pdoflow_proxy._queues()
RETURNS TABLE (
    queue text, paused boolean, max_running integer, rate integer, per interval, key_limit integer,
    waiting bigint, delayed bigint, blocked bigint, running bigint, throttled bigint, running_slots bigint
)
LANGUAGE plproxy
AS $$
    CLUSTER 'pdoflow_shards';
    RUN ON ALL;
    SELECT * FROM pdoflow.queues;
$$;

-- Per queue, summed over the shards (limits are each shard's own).
CREATE VIEW pdoflow_proxy.queues AS
SELECT q.queue, bool_or(q.paused) AS paused, max(q.max_running) AS max_running, max(q.rate) AS rate,
       max(q.per) AS per, max(q.key_limit) AS key_limit, sum(q.waiting)::bigint AS waiting,
       sum(q.delayed)::bigint AS delayed, sum(q.blocked)::bigint AS blocked, sum(q.running)::bigint AS running,
       sum(q.throttled)::bigint AS throttled, sum(q.running_slots)::bigint AS running_slots
FROM pdoflow_proxy._queues() AS q
GROUP BY q.queue;

CREATE FUNCTION pdoflow_proxy._stats()
RETURNS TABLE (
    queue text, enqueued bigint, claimed bigint, succeeded bigint, failed bigint, retried bigint,
    cancelled bigint, leases_expired bigint, stats_reset timestamptz
)
LANGUAGE plproxy
AS $$
    CLUSTER 'pdoflow_shards';
    RUN ON ALL;
    SELECT * FROM pdoflow.stats;
$$;

CREATE VIEW pdoflow_proxy.stats AS
SELECT s.queue, sum(s.enqueued)::bigint AS enqueued, sum(s.claimed)::bigint AS claimed,
       sum(s.succeeded)::bigint AS succeeded, sum(s.failed)::bigint AS failed, sum(s.retried)::bigint AS retried,
       sum(s.cancelled)::bigint AS cancelled, sum(s.leases_expired)::bigint AS leases_expired,
       min(s.stats_reset) AS stats_reset
FROM pdoflow_proxy._stats() AS s
GROUP BY s.queue;

CREATE FUNCTION pdoflow_proxy._posting_status()
RETURNS TABLE (
    id uuid, name text, description text, status text, queue text, priority integer,
    created_at timestamptz, status_changed_at timestamptz, total bigint, queued bigint, running bigint,
    succeeded bigint, failed bigint, cancelled bigint, blocked bigint, complete boolean
)
LANGUAGE plproxy
AS $$
    CLUSTER 'pdoflow_shards';
    RUN ON ALL;
    SELECT * FROM pdoflow.posting_status;
$$;

-- Each posting lives on one shard: its row comes from there as it is.
CREATE VIEW pdoflow_proxy.posting_status AS SELECT * FROM pdoflow_proxy._posting_status();

CREATE FUNCTION pdoflow_proxy._priority_stats()
RETURNS TABLE (
    queue text, priority integer, waiting bigint, due bigint, paused bigint, blocked bigint, running bigint
)
LANGUAGE plproxy
AS $$
    CLUSTER 'pdoflow_shards';
    RUN ON ALL;
    SELECT * FROM pdoflow.priority_stats;
$$;

CREATE VIEW pdoflow_proxy.priority_stats AS
SELECT p.queue, p.priority, sum(p.waiting)::bigint AS waiting, sum(p.due)::bigint AS due,
       sum(p.paused)::bigint AS paused, sum(p.blocked)::bigint AS blocked, sum(p.running)::bigint AS running
FROM pdoflow_proxy._priority_stats() AS p
GROUP BY p.queue, p.priority;
