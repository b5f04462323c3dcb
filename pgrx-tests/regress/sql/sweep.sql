-- pdoflow.sweep(): the background sweeper's work, called by hand. No
-- background sweeper works in this database (the test cluster lists others in
-- pdoflow.database), so every change below is this file's doing.
SELECT regress.reset();
SET pdoflow.retry_backoff_base = 0;  -- taken-back jobs are due at once

-- Claims whose lease expired are taken back: queued again while attempts
-- remain, failed otherwise. A claim whose lease has not expired is left alone.
SELECT pdoflow.enqueue('retried', max_attempts => 2) IS NOT NULL AS enqueued;
SELECT pdoflow.enqueue('exhausted', max_attempts => 1) IS NOT NULL AS enqueued;
SELECT pdoflow.enqueue('healthy') IS NOT NULL AS enqueued;
SELECT task, attempt FROM pdoflow.claim(2, worker => 'w1', lease => '1 millisecond');
SELECT task, attempt FROM pdoflow.claim(1, lease => '1 hour');
SELECT pg_sleep(0.05);
SELECT * FROM pdoflow.sweep();
SELECT task, state, attempt, worker,
       regexp_replace(last_error, ' at .* on ', ' at <time> on ') AS last_error
FROM pdoflow.jobs ORDER BY task;

-- The expired claims can no longer finish or heartbeat their jobs.
SELECT regress.failure(format('SELECT pdoflow.finish(%L, 1)', id)) FROM pdoflow.jobs WHERE task = 'retried';
SELECT regress.failure(format('SELECT pdoflow.heartbeat(%L, 1)', id)) FROM pdoflow.jobs WHERE task = 'retried';
SELECT regress.failure(format('SELECT pdoflow.finish(%L, 1)', id)) FROM pdoflow.jobs WHERE task = 'exhausted';
SELECT * FROM pdoflow.finish_many(ARRAY(SELECT id FROM pdoflow.jobs WHERE task = 'retried'), '{1}')
    AS f(id, attempt, state, rejected) \gset
SELECT :'state' AS state, regexp_replace(:'rejected', '[0-9a-f-]{36}', '<id>') AS rejected;

-- The next claim of the re-queued job is attempt 2 and sees why attempt 1 ended.
SELECT task, attempt, regexp_replace(last_error, ' at .* on ', ' at <time> on ') AS last_error
FROM pdoflow.claim(1, worker => 'w2');
SELECT pdoflow.finish(id, 2) FROM pdoflow.jobs WHERE task = 'retried';

-- A sweep with nothing to do changes nothing.
SELECT * FROM pdoflow.sweep();

-- Delayed jobs are announced once, when they fall due: enqueue announces only
-- jobs due at once, the sweep the others.
SELECT pdoflow.enqueue('later', queue => 'delayed', run_at => now() + interval '1 hour') IS NOT NULL AS enqueued;
SELECT queues_notified FROM pdoflow.sweep();
-- Time passes (the job is made due now, rather than waiting for it).
UPDATE pdoflow.active_jobs SET run_at = now() WHERE task = 'later';
SELECT queues_notified FROM pdoflow.sweep();
SELECT queues_notified FROM pdoflow.sweep();

-- Retention: finished jobs older than pdoflow.retention go, in batches of at
-- most batch_size; queued, running and younger finished jobs stay.
SELECT regress.reset();
SELECT count(*) AS enqueued FROM pdoflow.enqueue_many('old', array_fill('{}'::jsonb, ARRAY[5]));
SELECT count(*) AS claimed FROM pdoflow.claim(5);
SELECT count(*) AS finished FROM pdoflow.finish_many(ARRAY(SELECT id FROM pdoflow.jobs), array_fill(1, ARRAY[5]));
SELECT pdoflow.enqueue('young') IS NOT NULL AS enqueued;
SELECT pdoflow.finish(id, attempt) FROM pdoflow.claim(1);
UPDATE pdoflow.finished_jobs SET finished_at = now() - interval '8 days' WHERE task = 'old';
UPDATE pdoflow.finished_jobs SET finished_at = now() - interval '6 days' WHERE task = 'young';
SELECT pdoflow.enqueue('waiting') IS NOT NULL AS enqueued;
SHOW pdoflow.retention;
SELECT finished_deleted FROM pdoflow.sweep(batch_size => 2);
SELECT finished_deleted FROM pdoflow.sweep(batch_size => 2);
SELECT finished_deleted FROM pdoflow.sweep(batch_size => 2);
SELECT task, state FROM pdoflow.jobs ORDER BY task;
-- 0 keeps finished jobs forever.
SET pdoflow.retention = 0;
SELECT finished_deleted FROM pdoflow.sweep();
SET pdoflow.retention = '1d';
SELECT finished_deleted FROM pdoflow.sweep();
SELECT task, state FROM pdoflow.jobs ORDER BY task;
RESET pdoflow.retention;

-- Input checks.
SELECT regress.failure('SELECT pdoflow.sweep(0)');
SELECT regress.failure('SELECT pdoflow.sweep(NULL)');
SELECT regress.failure('SELECT pdoflow.sweep(1000001)');
