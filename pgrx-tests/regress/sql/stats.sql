-- Cumulative counters per queue: pdoflow.stats and pdoflow.stats_reset.
-- Counted when the transaction commits: rolled-back work is not.
SELECT regress.reset();
SELECT pdoflow.stats_reset();
SELECT count(*) AS queues FROM pdoflow.stats;

CREATE VIEW regress.stats AS
SELECT queue, enqueued, claimed, succeeded, failed, retried, cancelled, leases_expired
FROM pdoflow.stats WHERE queue LIKE 'stats%' ORDER BY queue;

-- Every enqueue form counts; a unique key's existing job does not; a
-- rollback, or a savepoint rolled back, takes its counts with it.
SELECT pdoflow.enqueue('t', '{}', 'stats_a') IS NOT NULL AS enqueued;
SELECT count(*) AS enqueued FROM pdoflow.enqueue_many('t', array_fill('{}'::jsonb, ARRAY[3]), 'stats_b');
SELECT count(*) AS enqueued FROM pdoflow.enqueue_many('[{"task": "t", "queue": "stats_a"}, {"task": "t", "queue": "stats_b"}]');
SELECT pdoflow.enqueue('t', '{}', 'stats_a', unique_key => 'k') = pdoflow.enqueue('t', '{}', 'stats_a', unique_key => 'k') AS same_job;
BEGIN;
SELECT pdoflow.enqueue('t', '{}', 'stats_a') IS NOT NULL AS rolled_back;
ROLLBACK;
BEGIN;
SAVEPOINT before;
SELECT pdoflow.enqueue('t', '{}', 'stats_a') IS NOT NULL AS rolled_back;
ROLLBACK TO SAVEPOINT before;
SAVEPOINT kept;
SELECT pdoflow.enqueue('t', '{}', 'stats_c') IS NOT NULL AS kept;
RELEASE SAVEPOINT kept;
COMMIT;
SELECT * FROM regress.stats;

-- Claims, a success, a failed attempt that is retried, a failure on the
-- last attempt, a cancel, pdoflow.retry, and an expired lease.
SELECT count(*) AS claimed FROM pdoflow.claim(3, ARRAY['stats_a']);
SELECT pdoflow.finish(c.id, c.attempt, CASE WHEN c.n = 2 THEN 'boom' END) AS state
FROM (SELECT id, attempt, row_number() OVER (ORDER BY id) AS n
      FROM pdoflow.active_jobs WHERE queue = 'stats_a' AND state = 'running') AS c
WHERE c.n <= 2 ORDER BY c.n;
SELECT pdoflow.enqueue('t', '{}', 'stats_c', max_attempts => 1) AS last_try \gset
SELECT count(*) AS claimed FROM pdoflow.claim_job(:'last_try');
SELECT pdoflow.finish(id, attempt, 'fatal') AS state FROM pdoflow.active_jobs WHERE id = :'last_try';
SELECT pdoflow.retry(:'last_try') AS retried;
SELECT pdoflow.cancel(:'last_try') AS cancelled;
SELECT count(*) AS claimed FROM pdoflow.claim(1, ARRAY['stats_b'], lease => '1 millisecond');
SELECT pg_sleep(0.01);
SELECT expired_requeued FROM pdoflow.sweep();
SELECT * FROM regress.stats;

-- Resetting one queue zeroes it and stamps stats_reset; resetting all
-- forgets every queue of the database. (The queues above were first
-- counted after the reset at the top: they show its time.)
SELECT pdoflow.stats_reset('stats_a');
SELECT queue, enqueued, claimed, stats_reset IS NOT NULL AS was_reset FROM pdoflow.stats
WHERE queue LIKE 'stats%' ORDER BY queue;
SELECT pdoflow.stats_reset('never-counted');
SELECT pdoflow.stats_reset();
SELECT count(*) AS queues FROM pdoflow.stats;
-- A queue counted after a reset of all shows that reset's time.
SELECT pdoflow.enqueue('t', '{}', 'stats_d') IS NOT NULL AS enqueued;
SELECT queue, enqueued, stats_reset IS NOT NULL AS was_reset FROM pdoflow.stats;

-- Bad calls; who may read and reset.
SELECT regress.failure($$SELECT pdoflow.stats_reset('')$$);
SELECT regress.failure($$SELECT pdoflow.stats_reset(' padded')$$);
SELECT has_table_privilege('pdoflow_producer', 'pdoflow.stats', 'SELECT') AS producers_read,
       has_function_privilege('pdoflow_worker', 'pdoflow.stats_reset(text)', 'EXECUTE') AS workers_reset,
       has_function_privilege('pdoflow_admin', 'pdoflow.stats_reset(text)', 'EXECUTE') AS admins_reset;
DROP VIEW regress.stats;
SELECT regress.reset();
