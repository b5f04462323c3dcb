-- Every rule of the SQL API's input, with the error a caller gets.
SELECT regress.reset();

SELECT regress.failure(sql) AS error FROM (VALUES
    ($$SELECT pdoflow.enqueue(NULL)$$),
    ($$SELECT pdoflow.enqueue('')$$),
    ($$SELECT pdoflow.enqueue(repeat('x', 129))$$),
    ($$SELECT pdoflow.enqueue(E'tab\there')$$),
    ($$SELECT pdoflow.enqueue('trailing ')$$),
    ($$SELECT pdoflow.enqueue('t', NULL)$$),
    ($$SELECT pdoflow.enqueue('t', queue => NULL)$$),
    ($$SELECT pdoflow.enqueue('t', queue => '')$$),
    ($$SELECT pdoflow.enqueue('t', priority => NULL)$$),
    -- priority is an int4: a quoted out-of-range value fails its cast (an unquoted
    -- one finds no function with a bigint priority).
    ($$SELECT pdoflow.enqueue('t', priority => '2147483648')$$),
    ($$SELECT pdoflow.enqueue('t', run_at => 'infinity')$$),
    ($$SELECT pdoflow.enqueue('t', max_attempts => 0)$$),
    ($$SELECT pdoflow.enqueue('t', max_attempts => NULL)$$)
) AS t(sql);

SELECT regress.failure(sql) AS error FROM (VALUES
    ($$SELECT pdoflow.enqueue_many('t', NULL)$$),
    ($$SELECT pdoflow.enqueue_many('t', ARRAY['{}', NULL]::jsonb[])$$),
    ($$SELECT pdoflow.enqueue_many('t', '{{"{}"},{"{}"}}'::jsonb[])$$),
    ($$SELECT pdoflow.enqueue_many(NULL::jsonb)$$),
    ($$SELECT pdoflow.enqueue_many('{"task": "t"}'::jsonb)$$),
    ($$SELECT pdoflow.enqueue_many('["t"]'::jsonb)$$),
    ($$SELECT pdoflow.enqueue_many('[{"task": "t"}, {"args": {}}]'::jsonb)$$),
    ($$SELECT pdoflow.enqueue_many('[{"task": "t", "prio": 1}]'::jsonb)$$),
    ($$SELECT pdoflow.enqueue_many('[{"task": "t", "priority": "high"}]'::jsonb)$$),
    ($$SELECT pdoflow.enqueue_many('[{"task": "t", "priority": 2147483648}]'::jsonb)$$),
    ($$SELECT pdoflow.enqueue_many('[{"task": "t", "max_attempts": 0}]'::jsonb)$$),
    ($$SELECT pdoflow.enqueue_many('[{"task": "t", "run_at": "next tuesday-ish"}]'::jsonb)$$)
) AS t(sql);

SELECT regress.failure(sql) AS error FROM (VALUES
    ($$SELECT pdoflow.claim(0)$$),
    ($$SELECT pdoflow.claim(NULL)$$),
    ($$SELECT pdoflow.claim(1001)$$),
    ($$SELECT pdoflow.claim(1, '{}')$$),
    ($$SELECT pdoflow.claim(1, ARRAY[NULL]::text[])$$),
    ($$SELECT pdoflow.claim(1, worker => repeat('w', 200))$$),
    ($$SELECT pdoflow.claim(1, lease => '-1 minute')$$),
    ($$SELECT pdoflow.claim(1, lease => NULL)$$),
    ($$SELECT pdoflow.claim(1, tasks => '{}')$$),
    ($$SELECT pdoflow.claim(1, tasks => ARRAY['ok', ''])$$),
    ($$SELECT pdoflow.claim_job(NULL)$$),
    ($$SELECT pdoflow.claim_job('00000000-0000-7000-8000-000000000000', lease => '0 seconds')$$)
) AS t(sql);

SELECT regress.failure(sql) AS error FROM (VALUES
    ($$SELECT pdoflow.finish(NULL, 1)$$),
    ($$SELECT pdoflow.finish('00000000-0000-7000-8000-000000000000', NULL)$$),
    ($$SELECT pdoflow.finish('00000000-0000-7000-8000-000000000000', 0)$$),
    ($$SELECT pdoflow.finish('00000000-0000-7000-8000-000000000000', 1)$$),
    ($$SELECT pdoflow.finish_many(NULL, '{1}')$$),
    ($$SELECT pdoflow.finish_many('{00000000-0000-7000-8000-000000000000}', '{1,2}')$$),
    ($$SELECT pdoflow.finish_many('{00000000-0000-7000-8000-000000000000,00000000-0000-7000-8000-000000000000}', '{1,1}')$$),
    ($$SELECT pdoflow.heartbeat('00000000-0000-7000-8000-000000000000', 1, '0 seconds')$$),
    ($$SELECT pdoflow.heartbeat('00000000-0000-7000-8000-000000000000', 1)$$),
    ($$SELECT pdoflow.cancel(NULL)$$),
    ($$SELECT pdoflow.cancel('00000000-0000-7000-8000-000000000000')$$),
    ($$SELECT pdoflow.retry('00000000-0000-7000-8000-000000000000')$$)
) AS t(sql);

-- Settings are checked too: unknown pdoflow.* names are refused.
SELECT regress.failure($$SET pdoflow.max_claims = 10$$);

-- Limits set by superusers: payload size (54000), attempts, how far ahead.
SET pdoflow.max_payload_bytes = 20;
SET pdoflow.max_attempts_limit = 10;
SELECT regress.failure(sql) AS error FROM (VALUES
    ($$SELECT pdoflow.enqueue('t', '{"text": "more than twenty bytes"}')$$),
    ($$SELECT pdoflow.enqueue_many('t', ARRAY['{}', '{"text": "more than twenty bytes"}']::jsonb[])$$),
    ($$SELECT pdoflow.enqueue_many('[{"task": "t", "args": {"text": "more than twenty bytes"}}]')$$),
    ($$SELECT pdoflow.submit_dag('{"nodes": [{"name": "n", "task": "t", "args": {"text": "more than twenty bytes"}}]}')$$),
    ($$SELECT pdoflow.finish_many(ARRAY['00000000-0000-7000-8000-000000000000']::uuid[], ARRAY[1], NULL, ARRAY['{"text": "more than twenty bytes"}']::jsonb[])$$),
    ($$SELECT pdoflow.enqueue('t', max_attempts => 11)$$),
    ($$SELECT pdoflow.enqueue_many('[{"task": "t", "max_attempts": 11}]')$$),
    ($$SELECT pdoflow.enqueue('t', run_at => '3100-01-01 00:00:00+00')$$),
    ($$SELECT pdoflow.enqueue_many('[{"task": "t", "run_at": "3100-01-01"}]')$$)
) AS t(sql);
SELECT pdoflow.enqueue('t', '{"text": "fits"}', max_attempts => 10, run_at => '2999-01-01 00:00:00+00') IS NOT NULL AS within_limits;
SELECT pdoflow.cancel(id) FROM pdoflow.jobs;
RESET pdoflow.max_payload_bytes;
RESET pdoflow.max_attempts_limit;

-- Nothing was written by any of the failures above.
SELECT count(*) AS jobs FROM pdoflow.jobs WHERE state <> 'cancelled';
