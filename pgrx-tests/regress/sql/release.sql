-- Releasing a claim: the job goes back to its queue at once, and the
-- released attempt does not count against max_attempts. Its attempt number
-- is never handed out again: the released claim can no longer finish or
-- heartbeat the job, whoever claims it next.
SELECT regress.reset();

SELECT pdoflow.enqueue('t', max_attempts => 1) IS NOT NULL AS enqueued;
SELECT task, attempt FROM pdoflow.claim(1, worker => 'stopping');
SELECT pdoflow.release(id, 1) FROM pdoflow.jobs;
-- Queued again, attempt 1 used up as a claim, one more attempt allowed.
SELECT task, state, attempt, max_attempts, worker, lease_expires_at FROM pdoflow.jobs;
-- Released again: nothing to release.
SELECT pdoflow.release(id, 1) FROM pdoflow.jobs;
-- Its one try is still there to be used, under a new attempt number.
SELECT task, attempt FROM pdoflow.claim(1, worker => 'next');
-- The released claim cannot finish, heartbeat or release the new one's job.
SELECT regress.failure('SELECT pdoflow.finish(id, 1) FROM pdoflow.jobs');
SELECT regress.failure('SELECT pdoflow.heartbeat(id, 1) FROM pdoflow.jobs');
SELECT pdoflow.release(id, 1) AS stale_release FROM pdoflow.jobs;
-- The new claim's failure is final: the released attempt did not count.
SELECT pdoflow.finish(id, 2, error => 'boom') FROM pdoflow.jobs;
SELECT pdoflow.release(id, 2) FROM pdoflow.jobs;  -- finished: nothing to release

SELECT regress.failure('SELECT pdoflow.release(NULL, 1)');
SELECT regress.failure($$SELECT pdoflow.release('00000000-0000-7000-8000-000000000000', 0)$$);
SELECT pdoflow.release('00000000-0000-7000-8000-000000000000', 1) AS unknown_job;
