-- Flow control: paused queues, running and rate limits, per-key limits, and
-- claims that wait.
SELECT regress.reset();

-- Pausing holds a queue's jobs back; enqueue still works; resuming lets
-- them go. Each says whether it changed anything.
SELECT pdoflow.enqueue('t', '{}', 'mail') IS NOT NULL AS enqueued FROM generate_series(1, 3);
SELECT pdoflow.enqueue('t', '{}', 'sms') IS NOT NULL AS enqueued;
SELECT pdoflow.pause_queue('mail') AS paused, pdoflow.pause_queue('mail') AS paused_again;
SELECT pdoflow.enqueue('t', '{}', 'mail') IS NOT NULL AS enqueued_while_paused;
SELECT queue FROM pdoflow.claim(10);
SELECT queue FROM pdoflow.claim(10, ARRAY['mail']);
SELECT queue, paused, waiting, running, throttled FROM pdoflow.queues ORDER BY queue;
SELECT pdoflow.resume_queue('mail') AS resumed, pdoflow.resume_queue('mail') AS resumed_again;
SELECT count(*) AS claimed FROM pdoflow.claim(10);
-- A queue with no jobs may be paused ahead of them.
SELECT pdoflow.pause_queue('not-yet') AS paused;
SELECT queue, paused, waiting FROM pdoflow.queues WHERE queue = 'not-yet';
SELECT pdoflow.resume_queue('not-yet');

-- max_running: at most that many of the queue's jobs run at once; a slot
-- comes back when a job ends, fails, is released or cancelled.
SELECT regress.reset();
SELECT count(*) AS enqueued FROM pdoflow.enqueue_many('t', array_fill('{}'::jsonb, ARRAY[6]), 'reports');
SELECT count(*) AS enqueued FROM pdoflow.enqueue_many('t', array_fill('{}'::jsonb, ARRAY[2]), 'other');
SELECT pdoflow.set_queue_limits('reports', max_running => 2);
SELECT queue, count(*) FROM pdoflow.claim(10) GROUP BY queue ORDER BY queue;
SELECT count(*) AS more FROM pdoflow.claim(10);
SELECT queue, max_running, waiting, running, throttled, running_slots FROM pdoflow.queues WHERE queue = 'reports';
SELECT pdoflow.finish(id, attempt) FROM pdoflow.active_jobs
WHERE queue = 'reports' AND state = 'running' ORDER BY id LIMIT 1;
SELECT count(*) AS after_finish FROM pdoflow.claim(10);
SELECT pdoflow.release(id, attempt) FROM pdoflow.active_jobs
WHERE queue = 'reports' AND state = 'running' ORDER BY id LIMIT 1;
SELECT count(*) AS after_release FROM pdoflow.claim(10, ARRAY['reports']);
SELECT pdoflow.cancel(id) FROM pdoflow.active_jobs
WHERE queue = 'reports' AND state = 'running' ORDER BY id LIMIT 1;
SELECT count(*) AS after_cancel FROM pdoflow.claim(10, ARRAY['reports']);
-- A failed attempt that will be retried frees its slot too.
SELECT pdoflow.finish(id, attempt, 'boom') FROM pdoflow.active_jobs
WHERE queue = 'reports' AND state = 'running' ORDER BY id LIMIT 1;
SELECT count(*) AS after_failure FROM pdoflow.claim(10, ARRAY['reports']);
-- Raising the limit takes effect at once; the running jobs still count.
SELECT pdoflow.set_queue_limits('reports', max_running => 3);
SELECT count(*) AS one_more FROM pdoflow.claim(10, ARRAY['reports']);
SELECT count(*) FILTER (WHERE state = 'running') AS running FROM pdoflow.jobs WHERE queue = 'reports';
-- Jobs of a limited queue are out of the every-queue claim index.
SELECT queue, controlled, count(*) FROM pdoflow.active_jobs GROUP BY 1, 2 ORDER BY 1, 2;
-- Removing the limits lets the jobs back.
SELECT pdoflow.set_queue_limits('reports');
SELECT queue, controlled, count(*) FROM pdoflow.active_jobs GROUP BY 1, 2 ORDER BY 1, 2;
SELECT count(*) AS claimed FROM pdoflow.claim(10);
SELECT count(*) AS left_over FROM pdoflow.queue_controls WHERE released_at IS NULL;

-- A claim that rolls back gives its slots back.
SELECT regress.reset();
SELECT pdoflow.set_queue_limits('one-at-a-time', max_running => 1);
SELECT count(*) AS enqueued FROM pdoflow.enqueue_many('t', array_fill('{}'::jsonb, ARRAY[3]), 'one-at-a-time');
BEGIN;
SELECT count(*) AS claimed FROM pdoflow.claim(5, ARRAY['one-at-a-time']);
ROLLBACK;
SELECT count(*) AS claimed_again FROM pdoflow.claim(5, ARRAY['one-at-a-time']);
-- So does a rolled back savepoint; a released one keeps them.
SELECT pdoflow.finish(id, attempt) FROM pdoflow.active_jobs WHERE state = 'running';
BEGIN;
SAVEPOINT a;
SELECT count(*) AS claimed FROM pdoflow.claim(5, ARRAY['one-at-a-time']);
ROLLBACK TO SAVEPOINT a;
SAVEPOINT b;
SELECT count(*) AS claimed FROM pdoflow.claim(5, ARRAY['one-at-a-time']);
RELEASE SAVEPOINT b;
COMMIT;
SELECT count(*) AS none_left FROM pdoflow.claim(5, ARRAY['one-at-a-time']);
-- A lease taken back by the sweeper frees the slot.
UPDATE pdoflow.active_jobs SET lease_expires_at = now() - interval '1 minute' WHERE state = 'running';
SELECT expired_requeued FROM pdoflow.sweep();
SELECT count(*) AS after_expiry FROM pdoflow.claim(5, ARRAY['one-at-a-time']);

-- Rates: a burst of a tenth of a second's worth, then one claim per
-- per/rate.
SELECT regress.reset();
SELECT count(*) AS enqueued FROM pdoflow.enqueue_many('t', array_fill('{}'::jsonb, ARRAY[100]), 'api');
SELECT pdoflow.set_queue_limits('api', rate => 50, per => '1 second');
SELECT count(*) AS burst FROM pdoflow.claim(100, ARRAY['api']);
SELECT count(*) <= 1 AS hardly_any_at_once FROM pdoflow.claim(100, ARRAY['api']);
SELECT pg_sleep(0.1);
SELECT count(*) BETWEEN 4 AND 7 AS about_five_later FROM pdoflow.claim(100, ARRAY['api']);
SELECT queue, rate, per FROM pdoflow.queues WHERE queue = 'api';
-- A waiting claim sleeps until the limiter allows the next claim.
SELECT count(*) AS after_waiting FROM pdoflow.claim(1, ARRAY['api'], wait => '2 seconds');

-- Per-key limits: at most key_limit running jobs per concurrency_key; jobs
-- without a key are not limited; a full key's jobs are passed over.
SELECT regress.reset();
SELECT pdoflow.set_key_limit('imports', 1);
SELECT count(*) AS enqueued FROM (
    SELECT pdoflow.enqueue('import', jsonb_build_object('n', i), 'imports',
                           concurrency_key => 'customer-' || (i % 2))
    FROM generate_series(1, 6) AS i) AS e;
SELECT pdoflow.enqueue('import', '{"n": 0}', 'imports') IS NOT NULL AS enqueued_without_key;
SELECT j.concurrency_key FROM pdoflow.claim(10, ARRAY['imports']) AS c JOIN pdoflow.jobs AS j USING (id)
ORDER BY 1;
SELECT count(*) AS more FROM pdoflow.claim(10);
SELECT queue, key_limit, waiting, running, throttled FROM pdoflow.queues WHERE queue = 'imports';
SELECT pdoflow.finish(id, attempt) FROM pdoflow.active_jobs
WHERE concurrency_key = 'customer-1' AND state = 'running';
SELECT j.concurrency_key FROM pdoflow.claim(10) AS c JOIN pdoflow.jobs AS j USING (id);
SELECT pdoflow.set_key_limit('imports', 2);
SELECT j.concurrency_key FROM pdoflow.claim(10) AS c JOIN pdoflow.jobs AS j USING (id) ORDER BY 1;
-- The key is kept in history.
SELECT count(*) AS finished_with_key FROM pdoflow.jobs WHERE state = 'succeeded' AND concurrency_key = 'customer-1';
-- All enqueue forms take a key.
SELECT count(*) AS enqueued FROM pdoflow.enqueue_many('t', ARRAY['{}', '{}']::jsonb[], 'imports',
                                                      concurrency_keys => ARRAY['a', NULL]);
SELECT count(*) AS enqueued FROM pdoflow.enqueue_many('[{"task": "t", "queue": "imports", "concurrency_key": "b"},
                                                        {"task": "t", "queue": "imports"}]'::jsonb);
SELECT count(*) AS submitted FROM pdoflow.submit_dag('{"nodes": [
    {"name": "first", "task": "t", "queue": "imports", "concurrency_key": "c"},
    {"name": "second", "task": "t", "queue": "imports", "after": ["first"]}]}');
SELECT concurrency_key, count(*) FROM pdoflow.jobs WHERE task = 't' GROUP BY 1 ORDER BY 1;

-- Claims that wait: return at once with jobs, or after wait without.
SELECT regress.reset();
SELECT count(*) AS nothing_after_waiting FROM pdoflow.claim(1, ARRAY['quiet'], wait => '50 milliseconds');
SELECT pdoflow.enqueue('t', '{}', 'quiet') IS NOT NULL AS enqueued;
SELECT count(*) AS at_once FROM pdoflow.claim(1, ARRAY['quiet'], wait => '1 hour');
-- A delayed job falling due ends the wait.
SELECT pdoflow.enqueue('t', '{}', 'quiet', run_at => clock_timestamp() + interval '200 milliseconds') IS NOT NULL
    AS enqueued_delayed;
SELECT count(*) AS when_due FROM pdoflow.claim(1, ARRAY['quiet'], wait => '5 seconds');

-- A cancel or statement_timeout ends a wait at once.
\set VERBOSITY terse
SET statement_timeout = '200ms';
SELECT count(*) FROM pdoflow.claim(1, ARRAY['quiet'], wait => '1 hour');
RESET statement_timeout;
\set VERBOSITY default

-- Jobs enqueued unmarked while their queue got controls (a race) are
-- marked by the every-queue claim that meets them, and held back.
SELECT regress.reset();
SELECT pdoflow.set_queue_limits('late', max_running => 1);
SELECT pdoflow.enqueue('t', '{}', 'late') IS NOT NULL AS enqueued;
UPDATE pdoflow.active_jobs SET controlled = false;  -- as if enqueued just before the limit
SELECT pdoflow.enqueue('t', '{}', 'late') IS NOT NULL AS enqueued;
UPDATE pdoflow.active_jobs SET controlled = false;
SELECT count(*) AS claimed FROM pdoflow.claim(5);
SELECT controlled, count(*) FROM pdoflow.active_jobs GROUP BY 1;
SELECT count(*) AS within_limit FROM pdoflow.claim(5, ARRAY['late']);
-- And the sweeper unmarks what a removed control left marked.
SELECT pdoflow.set_queue_limits('late');
UPDATE pdoflow.active_jobs SET controlled = true WHERE state = 'queued';
UPDATE pdoflow.queue_controls SET released_at = now() - interval '1 minute';
SELECT pdoflow._release_queue_controls() AS released;
SELECT controlled, count(*) FROM pdoflow.active_jobs GROUP BY 1 ORDER BY 1;
SELECT count(*) AS controls_left FROM pdoflow.queue_controls;

-- Bad input.
SELECT regress.failure($$SELECT pdoflow.pause_queue(NULL)$$);
SELECT regress.failure($$SELECT pdoflow.pause_queue('')$$);
SELECT regress.failure($$SELECT pdoflow.resume_queue(' padded ')$$);
SELECT regress.failure($$SELECT pdoflow.set_queue_limits('q', max_running => 0)$$);
SELECT regress.failure($$SELECT pdoflow.set_queue_limits('q', max_running => -3)$$);
SELECT regress.failure($$SELECT pdoflow.set_queue_limits('q', rate => 0)$$);
SELECT regress.failure($$SELECT pdoflow.set_queue_limits('q', rate => 10, per => NULL)$$);
SELECT regress.failure($$SELECT pdoflow.set_queue_limits('q', rate => 10, per => '0.5 milliseconds')$$);
SELECT regress.failure($$SELECT pdoflow.set_queue_limits('q', rate => 10, per => '-1 second')$$);
SELECT regress.failure($$SELECT pdoflow.set_queue_limits('q', rate => 10, per => '2 years')$$);
SELECT regress.failure($$SELECT pdoflow.set_key_limit('q', 0)$$);
SELECT regress.failure($$SELECT pdoflow.claim(1, wait => '-1 second')$$);
SELECT regress.failure($$SELECT pdoflow.claim(1, wait => '0.2 milliseconds')$$);
SELECT regress.failure($$SELECT pdoflow.claim(1, wait => '2 hours')$$);
SELECT regress.failure($$SELECT pdoflow.claim(1, wait => NULL)$$);
SELECT regress.failure($$SELECT pdoflow.enqueue('t', concurrency_key => '')$$);
SELECT regress.failure($$SELECT pdoflow.enqueue_many('t', ARRAY['{}']::jsonb[], concurrency_keys => ARRAY['a', 'b'])$$);
SELECT regress.failure($$SELECT pdoflow.enqueue_many('[{"task": "t", "concurrency_key": 7}]'::jsonb)$$);
SELECT regress.failure($$SELECT pdoflow.submit_dag('{"nodes": [{"name": "a", "task": "t", "concurrency_key": ""}]}')$$);
-- Nothing was written.
SELECT count(*) AS controls FROM pdoflow.queue_controls;
