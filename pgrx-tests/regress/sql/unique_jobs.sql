-- Unique jobs: while a job of a task holds a unique key (blocked, queued or
-- running; with unique_for, also that long after it succeeded), enqueueing
-- the same task and key returns that job instead of a new one.
SELECT regress.reset();

SELECT pdoflow.enqueue('mail', '{"to": 1}', unique_key => 'order-1') AS first \gset
SELECT pdoflow.enqueue('mail', '{"to": 2}', unique_key => 'order-1') = :'first' AS same_job;
-- The key is per task; jobs without a key are never unique.
SELECT pdoflow.enqueue('sms', unique_key => 'order-1') <> :'first' AS other_task;
SELECT count(*) AS mail_jobs, min(args::text) AS kept_args FROM pdoflow.jobs WHERE task = 'mail';
SELECT task, unique_key, state FROM pdoflow.jobs ORDER BY task;

-- Running still holds it; a failed attempt queued for retry too.
SELECT attempt FROM pdoflow.claim(1, tasks => ARRAY['mail']);
SELECT pdoflow.enqueue('mail', unique_key => 'order-1') = :'first' AS held_while_running;
SELECT pdoflow.finish(:'first', 1, error => 'smtp down');
SELECT state FROM pdoflow.jobs WHERE id = :'first';
SELECT pdoflow.enqueue('mail', unique_key => 'order-1') = :'first' AS held_while_retrying;

-- Succeeded without unique_for: the key is free at once.
UPDATE pdoflow.active_jobs SET run_at = now() WHERE id = :'first';
SELECT attempt FROM pdoflow.claim(1, tasks => ARRAY['mail']);
SELECT pdoflow.finish(:'first', 2, result => '{"sent": true}');
SELECT pdoflow.enqueue('mail', unique_key => 'order-1') <> :'first' AS new_after_success;

-- With unique_for, a succeeded job keeps its key that long.
SELECT pdoflow.enqueue('report', unique_key => 'day-1', unique_for => '1 hour') AS report \gset
SELECT attempt FROM pdoflow.claim(1, tasks => ARRAY['report']);
SELECT pdoflow.finish(:'report', 1, result => '{}');
SELECT pdoflow.enqueue('report', unique_key => 'day-1') = :'report' AS held_after_success;
-- Unless retention deletes the job: then its key goes with it.
UPDATE pdoflow.finished_jobs SET finished_at = now() - interval '8 days' WHERE id = :'report';
SELECT finished_deleted FROM pdoflow.sweep();
SELECT pdoflow.enqueue('report', unique_key => 'day-1') AS after_retention \gset
SELECT :'after_retention' <> :'report' AS new_after_retention;
SELECT pdoflow.cancel(:'after_retention');
-- Failed and cancelled jobs let go at once, unique_for or not.
SELECT pdoflow.enqueue('report', unique_key => 'day-2', unique_for => '1 hour', max_attempts => 1) AS failing \gset
SELECT attempt FROM pdoflow.claim(1, tasks => ARRAY['report']);
SELECT pdoflow.finish(:'failing', 1, error => 'broken');
SELECT pdoflow.enqueue('report', unique_key => 'day-2') AS after_failure \gset
SELECT :'after_failure' <> :'failing' AS new_after_failure;
SELECT pdoflow.cancel(:'after_failure');
SELECT pdoflow.enqueue('report', unique_key => 'day-2') <> :'after_failure' AS new_after_cancel;

-- Retrying a failed job takes its key back, unless another job holds it.
SELECT regress.failure(format('SELECT pdoflow.retry(%L)', :'failing'));
SELECT pdoflow.cancel(id) FROM pdoflow.jobs WHERE task = 'report' AND unique_key = 'day-2' AND state = 'queued';
SELECT pdoflow.retry(:'failing') AS retried;
SELECT pdoflow.enqueue('report', unique_key => 'day-2') = :'failing' AS retried_job_holds_it;

-- Many at once: one job per distinct key, duplicates get the first's id.
SELECT regress.reset();
SELECT count(*) AS ids, count(DISTINCT id) AS jobs
FROM pdoflow.enqueue_many('resize', ARRAY['{"i": 1}', '{"i": 2}', '{"i": 3}', '{"i": 4}']::jsonb[],
                          unique_keys => ARRAY['a', 'b', 'a', NULL]);
SELECT count(*) AS jobs FROM pdoflow.jobs;
SELECT count(DISTINCT id) AS jobs
FROM pdoflow.enqueue_many('[{"task": "resize", "unique_key": "a"}, {"task": "resize", "unique_key": "c", "unique_for": "10 minutes"},
                            {"task": "resize", "unique_key": "c"}, {"task": "resize"}]'::jsonb);
SELECT task, unique_key, unique_for FROM pdoflow.unique_keys ORDER BY unique_key;
-- One job through the single-job document path too.
SELECT (SELECT id FROM pdoflow.enqueue_many('[{"task": "resize", "unique_key": "b"}]'::jsonb))
     = (SELECT id FROM pdoflow.jobs WHERE unique_key = 'b') AS same_job;

-- DAG nodes: a node whose key is held stands for the holder, and its
-- children wait for that job.
SELECT regress.reset();
SELECT pdoflow.enqueue('fetch', unique_key => 'feed-7') AS fetching \gset
SELECT name, id = :'fetching' AS is_existing
FROM pdoflow.submit_dag('{"nodes": [{"name": "fetch", "task": "fetch", "unique_key": "feed-7"},
                                    {"name": "parse", "task": "parse", "after": ["fetch"]}]}');
SELECT task, state, depends_on = ARRAY[:'fetching']::uuid[] AS waits_for_existing FROM pdoflow.jobs ORDER BY task;
SELECT * FROM pdoflow.check_consistency();

-- Bad input names the value.
SELECT regress.failure($$SELECT pdoflow.enqueue('t', unique_key => '')$$);
SELECT regress.failure($$SELECT pdoflow.enqueue('t', unique_key => E'a\nb')$$);
SELECT regress.failure($$SELECT pdoflow.enqueue('t', unique_key => repeat('k', 1001))$$);
SELECT regress.failure($$SELECT pdoflow.enqueue('t', unique_for => '1 hour')$$);
SELECT regress.failure($$SELECT pdoflow.enqueue('t', unique_key => 'k', unique_for => '-5 minutes')$$);
SELECT regress.failure($$SELECT pdoflow.enqueue('t', unique_key => 'k', unique_for => '0')$$);
SELECT regress.failure($$SELECT pdoflow.enqueue_many('t', ARRAY['{}', '{}']::jsonb[], unique_keys => ARRAY['a'])$$);
SELECT regress.failure($$SELECT pdoflow.enqueue_many('t', ARRAY['{}']::jsonb[], unique_keys => ARRAY['']::text[])$$);
SELECT regress.failure($$SELECT pdoflow.enqueue_many('[{"task": "t", "unique_key": 5}]'::jsonb)$$);
SELECT regress.failure($$SELECT pdoflow.enqueue_many('[{"task": "t", "unique_for": "1 hour"}]'::jsonb)$$);
SELECT regress.failure($$SELECT pdoflow.enqueue_many('[{"task": "t"}, {"task": "t", "unique_key": "k", "unique_for": "soon"}]'::jsonb)$$);
SELECT regress.failure($$SELECT pdoflow.enqueue_many('[{"task": "t", "unique_key": "k", "unique_for": "-1 day"}]'::jsonb)$$);
SELECT regress.failure($$SELECT pdoflow.submit_dag('{"nodes": [{"name": "a", "task": "t", "unique_key": "k", "unique_for": "later"}]}')$$);
SELECT count(*) AS nothing_added FROM pdoflow.jobs WHERE task = 't';
