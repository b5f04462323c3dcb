-- pdoflow.job_attempts: every claim that ends without success is kept, with
-- its worker, times, outcome and error; a succeeded claim is the job's own row.
SELECT regress.reset();
SET pdoflow.retry_backoff_base = 0;  -- failed attempts are due again at once

-- The attempts as a test shows them: everything but ids and timestamps, and
-- whether the times were kept.
CREATE VIEW regress.attempts AS
SELECT j.task, a.attempt, a.worker, a.outcome,
       regexp_replace(a.error, ' at .* on ', ' at <time> on ') AS error, a.progress,
       a.started_at IS NOT NULL AS started, a.heartbeat_at IS NOT NULL AS heartbeat,
       a.ended_at >= a.started_at AS ended_after_start
FROM pdoflow.job_attempts AS a
JOIN pdoflow.jobs AS j ON j.id = a.job;

-- A failure retried (its progress report counted as a heartbeat), a lease
-- that expires, a release, and then a success: three attempts logged, the
-- fourth (succeeded) in the job's own row.
SELECT pdoflow.enqueue('story', max_attempts => 3) IS NOT NULL AS enqueued;
SELECT pdoflow.progress(id, attempt, '{"step": 1}') FROM pdoflow.claim(1, worker => 'w1');
SELECT pdoflow.finish(id, 1, error => 'boom') FROM pdoflow.jobs WHERE task = 'story';
SELECT attempt FROM pdoflow.claim(1, worker => 'w2', lease => '1 millisecond');
SELECT pg_sleep(0.05);
SELECT expired_requeued FROM pdoflow.sweep();
SELECT pdoflow.heartbeat(id, attempt) IS NOT NULL AS heartbeat FROM pdoflow.claim(1, worker => 'w3');
SELECT pdoflow.release(id, 3) FROM pdoflow.jobs WHERE task = 'story';
SELECT pdoflow.finish(id, attempt, result => '{"ok": true}') FROM pdoflow.claim(1, worker => 'w4');
SELECT * FROM regress.attempts ORDER BY attempt;
SELECT state, attempt, worker, regexp_replace(last_error, ' at .* on ', ' at <time> on ') AS last_error
FROM pdoflow.jobs WHERE task = 'story';

-- A job that runs out of attempts: each failure is logged, the last as well.
SELECT pdoflow.enqueue('doomed', max_attempts => 2) IS NOT NULL AS enqueued;
SELECT pdoflow.finish(id, attempt, error => format('failure %s', attempt)) FROM pdoflow.claim(1, worker => 'w1');
SELECT pdoflow.finish(id, attempt, error => format('failure %s', attempt)) FROM pdoflow.claim(1, worker => 'w1');
SELECT * FROM regress.attempts WHERE task = 'doomed' ORDER BY attempt;

-- A lease that expires on the last attempt.
SELECT pdoflow.enqueue('lost', max_attempts => 1) IS NOT NULL AS enqueued;
SELECT attempt FROM pdoflow.claim(1, worker => 'w5', lease => '1 millisecond');
SELECT pg_sleep(0.05);
SELECT expired_failed FROM pdoflow.sweep();
SELECT * FROM regress.attempts WHERE task = 'lost';

-- Cancelling a running job ends its claim as cancelled; cancelling a queued
-- one logs nothing (no claim ended).
SELECT pdoflow.enqueue('stopped') IS NOT NULL AS enqueued;
SELECT pdoflow.enqueue('never_ran') IS NOT NULL AS enqueued;
SELECT attempt FROM pdoflow.claim(1, worker => 'w6', tasks => ARRAY['stopped']);
SELECT pdoflow.cancel(id) FROM pdoflow.jobs WHERE task IN ('stopped', 'never_ran') ORDER BY task;
SELECT * FROM regress.attempts WHERE task IN ('stopped', 'never_ran');

-- A finish_many batch with successes and failures logs only the failures.
SELECT regress.reset();
SELECT count(*) AS enqueued FROM pdoflow.enqueue_many('batch', array_fill('{}'::jsonb, ARRAY[4]));
SELECT count(*) AS finished
FROM (SELECT array_agg(id ORDER BY id) AS ids, array_agg(attempt ORDER BY id) AS attempts
      FROM pdoflow.claim(4, worker => 'w7')) AS c,
     pdoflow.finish_many(c.ids, c.attempts, ARRAY['bad', NULL, 'worse', NULL]);
SELECT outcome, error FROM pdoflow.job_attempts ORDER BY error;
-- A retried job keeps its attempts, and its next claim goes on numbering.
SELECT pdoflow.finish(id, attempt, error => 'again') FROM pdoflow.claim(2, worker => 'w8');
SELECT count(*) AS attempts_logged FROM pdoflow.job_attempts;

-- Retention deletes a job's attempts with it; delete_posting too.
SELECT regress.reset();
SELECT pdoflow.enqueue('old', max_attempts => 1) IS NOT NULL AS enqueued;
SELECT pdoflow.finish(id, attempt, error => 'old failure') FROM pdoflow.claim(1);
UPDATE pdoflow.finished_jobs SET finished_at = now() - interval '8 days';
SELECT finished_deleted FROM pdoflow.sweep();
SELECT count(*) AS attempts_left FROM pdoflow.job_attempts;
SELECT pdoflow.create_posting('p') AS posting \gset
SELECT pdoflow.enqueue('posted', posting => :'posting', max_attempts => 1) IS NOT NULL AS enqueued;
SELECT pdoflow.finish(id, attempt, error => 'posted failure') FROM pdoflow.claim(1);
SELECT count(*) AS attempts_before FROM pdoflow.job_attempts;
SELECT pdoflow.delete_posting(:'posting');
SELECT count(*) AS attempts_after FROM pdoflow.job_attempts;

-- Producers read the attempts; only the pdoflow functions write them.
SELECT has_table_privilege('pdoflow_producer', 'pdoflow.job_attempts', 'SELECT') AS producers_read,
       has_table_privilege('pdoflow_admin', 'pdoflow.job_attempts', 'INSERT') AS admins_write,
       has_table_privilege('pdoflow_admin', 'pdoflow.job_attempts', 'DELETE') AS admins_delete;

DROP VIEW regress.attempts;
RESET pdoflow.retry_backoff_base;
