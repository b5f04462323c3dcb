-- Postings: a batch of jobs with a status, followed through posting_status.
SELECT regress.reset();

-- Counts as a test shows them.
CREATE VIEW regress.postings AS
SELECT name, description, status, queue, priority, total, queued, running, succeeded, failed,
       cancelled, blocked, complete
FROM pdoflow.posting_status;

SELECT pdoflow.create_posting('nightly import', 'the 2 a.m. load', priority => 5, queue => 'etl') AS posting \gset
SELECT * FROM regress.postings;  -- no jobs yet: not complete

-- The posting's queue and priority apply where enqueue's defaults were left.
SELECT pdoflow.enqueue('load', '{"file": 1}', posting => :'posting') IS NOT NULL AS enqueued;
SELECT pdoflow.enqueue('load', '{"file": 2}', queue => 'bulk', priority => 9, posting => :'posting') IS NOT NULL AS enqueued;
SELECT count(*) FROM pdoflow.enqueue_many('load', ARRAY['{"file": 3}', '{"file": 4}']::jsonb[], posting => :'posting');
SELECT count(*) FROM pdoflow.enqueue_many(format('[{"task": "load", "args": {"file": 5}, "posting": "%s"}]', :'posting')::jsonb);
SELECT pdoflow.enqueue('unrelated') IS NOT NULL AS enqueued;
SELECT task, queue, priority, state, args FROM pdoflow.jobs ORDER BY id;
SELECT * FROM regress.postings;
SELECT * FROM pdoflow.priority_stats ORDER BY queue, priority DESC;

-- Paused: its queued jobs are not claimed; other jobs are.
SELECT pdoflow.set_posting_status(:'posting', 'paused');
SELECT pdoflow.set_posting_status(:'posting', 'paused') AS again;
SELECT task, args FROM pdoflow.claim(10);
SELECT status, queued, running FROM regress.postings;
SELECT queue, priority, waiting, due, paused FROM pdoflow.priority_stats ORDER BY queue, priority DESC;
-- New jobs of a paused posting wait too.
SELECT pdoflow.enqueue('load', '{"file": 6}', posting => :'posting') IS NOT NULL AS enqueued;
SELECT count(*) FROM pdoflow.claim(10);

-- Active again: claimable.
SELECT pdoflow.set_posting_status(:'posting', 'active');
SELECT task, args, attempt FROM pdoflow.claim(2, queues => ARRAY['etl', 'bulk']);
SELECT status, queued, running FROM regress.postings;

-- A running job that fails while its posting is paused waits with it.
SELECT pdoflow.set_posting_status(:'posting', 'paused');
SELECT pdoflow.finish(id, attempt, error => 'disk full') FROM pdoflow.jobs WHERE args = '{"file": 2}';
SELECT state, last_error FROM pdoflow.jobs WHERE args = '{"file": 2}';
SELECT count(*) FROM pdoflow.claim(10);
-- A running job finishes normally while its posting is paused.
SELECT pdoflow.finish(id, attempt, result => '"ok"') FROM pdoflow.jobs WHERE args = '{"file": 1}';

-- Cancelled: jobs not started end as cancelled; running ones may finish, but
-- a failure is not retried.
SELECT pdoflow.set_posting_status(:'posting', 'active');
SELECT task, args FROM pdoflow.claim(1, queues => ARRAY['etl']);
SELECT pdoflow.set_posting_status(:'posting', 'cancelled');
SELECT args, state, regexp_replace(last_error, '[0-9a-f-]{36}', '<id>') AS last_error
FROM pdoflow.jobs WHERE posting = :'posting' ORDER BY id;
SELECT * FROM regress.postings;
SELECT pdoflow.finish(id, attempt, error => 'interrupted') FROM pdoflow.jobs WHERE state = 'running' AND posting = :'posting';
SELECT args, state, regexp_replace(last_error, '[0-9a-f-]{36}', '<id>') AS last_error FROM pdoflow.jobs WHERE args = '{"file": 3}';
SELECT name, status, total, succeeded, cancelled, complete FROM regress.postings;

-- Cancelling is final; a cancelled posting takes no new jobs.
SELECT pdoflow.set_posting_status(:'posting', 'cancelled') AS again;
SELECT regress.failure(format($$SELECT pdoflow.set_posting_status(%L, 'active')$$, :'posting'));
SELECT regress.failure(format($$SELECT pdoflow.set_posting_status(%L, 'paused')$$, :'posting'));
SELECT regress.failure(format($$SELECT pdoflow.enqueue('load', posting => %L)$$, :'posting'));
SELECT regress.failure(format($$SELECT pdoflow.retry(id) FROM pdoflow.jobs WHERE posting = %L AND state = 'cancelled' LIMIT 1$$, :'posting'));

-- Removal: only once every job has ended; the finished jobs go with it.
SELECT pdoflow.create_posting('second') AS second \gset
SELECT pdoflow.enqueue('t', posting => :'second') IS NOT NULL AS enqueued;
SELECT regress.failure(format($$SELECT pdoflow.delete_posting(%L)$$, :'second'));
SELECT pdoflow.delete_posting(:'posting');
SELECT pdoflow.delete_posting(:'posting') AS again;
SELECT name FROM regress.postings;
SELECT count(*) FILTER (WHERE posting IS NULL) AS others, count(*) FILTER (WHERE posting IS NOT NULL) AS in_postings
FROM pdoflow.jobs;

-- Retention removes postings with no jobs left, after pdoflow.retention.
SELECT pdoflow.create_posting('old and empty') AS old \gset
UPDATE pdoflow.postings SET created_at = now() - interval '30 days', status_changed_at = now() - interval '30 days'
WHERE id = :'old';
SELECT finished_deleted FROM pdoflow.sweep();
SELECT name FROM regress.postings ORDER BY name;

-- Bad input.
SELECT regress.failure($$SELECT pdoflow.create_posting(NULL)$$);
SELECT regress.failure($$SELECT pdoflow.create_posting('')$$);
SELECT regress.failure($$SELECT pdoflow.create_posting('p', queue => ' q')$$);
SELECT regress.failure(format($$SELECT pdoflow.set_posting_status(%L, 'stopped')$$, :'second'));
SELECT regress.failure(format($$SELECT pdoflow.set_posting_status(%L, NULL)$$, :'second'));
SELECT regress.failure($$SELECT pdoflow.set_posting_status(NULL, 'paused')$$);
SELECT regress.failure($$SELECT pdoflow.set_posting_status('00000000-0000-7000-8000-000000000000', 'paused')$$);
SELECT regress.failure($$SELECT pdoflow.enqueue('t', posting => '00000000-0000-7000-8000-000000000000')$$);
SELECT regress.failure($$SELECT pdoflow.enqueue_many('[{"task": "t", "posting": "nope"}]')$$);
SELECT regress.failure($$SELECT pdoflow.delete_posting(NULL)$$);

-- Every invariant across the tables still holds.
SELECT * FROM pdoflow.check_consistency();
