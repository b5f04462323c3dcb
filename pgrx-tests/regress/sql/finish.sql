SELECT regress.reset();
SET pdoflow.retry_backoff_base = '1h';

SELECT count(*) FROM (
    SELECT pdoflow.enqueue('ok', priority => 3)
    UNION ALL SELECT pdoflow.enqueue('retried', priority => 2, max_attempts => 3)
    UNION ALL SELECT pdoflow.enqueue('dead', priority => 1, max_attempts => 1)
) AS enqueued;
CREATE TEMP TABLE claimed AS SELECT * FROM pdoflow.claim(3, worker => 'w1');

-- Success stores the result; failure re-queues while attempts remain, else fails.
SELECT c.task, pdoflow.finish(c.id, c.attempt, result => '{"rows": 42}') FROM claimed AS c WHERE c.task = 'ok';
SELECT c.task, pdoflow.finish(c.id, c.attempt, error => 'timeout') FROM claimed AS c WHERE c.task = 'retried';
SELECT c.task, pdoflow.finish(c.id, c.attempt, error => 'bad input', result => '{"partial": true}') FROM claimed AS c WHERE c.task = 'dead';
SELECT * FROM regress.jobs ORDER BY task;

-- The retry waits for its backoff (about an hour here, less up to 25% jitter).
SELECT task, run_at > now() + interval '44 minutes' AND run_at <= now() + interval '1 hour' AS backing_off
FROM pdoflow.jobs WHERE task = 'retried';
SELECT count(*) AS claimable FROM pdoflow.claim(10);

-- Finishing a claim twice, or a claim that is not current, changes nothing.
SELECT regress.failure(format('SELECT pdoflow.finish(%L, %s)', c.id, c.attempt)) FROM claimed AS c WHERE c.task = 'ok';
SELECT regress.failure(format('SELECT pdoflow.finish(%L, %s)', c.id, c.attempt)) FROM claimed AS c WHERE c.task = 'retried';
SELECT regress.failure(format('SELECT pdoflow.heartbeat(%L, %s)', c.id, c.attempt)) FROM claimed AS c WHERE c.task = 'dead';
SELECT task, state FROM regress.jobs ORDER BY task;

-- Heartbeats extend the current claim's lease.
SELECT regress.reset();
SELECT pdoflow.enqueue('long') IS NOT NULL;
CREATE TEMP TABLE long_claim AS SELECT * FROM pdoflow.claim(lease => '1 minute');
SELECT pdoflow.heartbeat(id, attempt, '10 minutes') = now() + interval '10 minutes' AS extended FROM long_claim;
SELECT pdoflow.heartbeat(id, attempt) = now() + interval '10 minutes' AS same_length_again FROM long_claim;

-- The batch form: one row per claim in input order; problems are reported, not raised.
SELECT regress.reset();
RESET pdoflow.retry_backoff_base;
SELECT count(*) FROM pdoflow.enqueue_many('batch', ARRAY['{"n": 1}', '{"n": 2}', '{"n": 3}']::jsonb[]);
CREATE TEMP TABLE batch AS SELECT * FROM pdoflow.claim(3);
SELECT b.args, f.attempt, f.state, regexp_replace(f.rejected, '[0-9a-f-]{36}', '<id>') AS rejected
FROM pdoflow.finish_many(
    (SELECT array_agg(id ORDER BY args->>'n') FROM batch) || '00000000-0000-7000-8000-000000000000'::uuid,
    (SELECT array_agg(attempt ORDER BY args->>'n') FROM batch) || 1,
    ARRAY[NULL, 'flaky', NULL, NULL],
    ARRAY['{"ok": 1}', NULL, '{"ok": 3}', NULL]::jsonb[]
) WITH ORDINALITY AS f
LEFT JOIN batch AS b ON b.id = f.id
ORDER BY f.ordinality;
SELECT args, state, result, last_error FROM regress.jobs ORDER BY args->>'n';
