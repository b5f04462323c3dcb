-- Releasing a claim: the job goes back to its queue at once, and the
-- released attempt does not count.
SELECT regress.reset();

SELECT pdoflow.enqueue('t', max_attempts => 1) IS NOT NULL AS enqueued;
SELECT task, attempt FROM pdoflow.claim(1, worker => 'stopping');
SELECT pdoflow.release(id, 1) FROM pdoflow.jobs;
SELECT task, state, attempt, worker, lease_expires_at FROM pdoflow.jobs;
-- Released again: nothing to release.
SELECT pdoflow.release(id, 1) FROM pdoflow.jobs;
-- Its one attempt is still there to be used.
SELECT task, attempt FROM pdoflow.claim(1, worker => 'next');
SELECT pdoflow.finish(id, 1) FROM pdoflow.jobs;
SELECT pdoflow.release(id, 1) FROM pdoflow.jobs;  -- finished: nothing to release

SELECT regress.failure('SELECT pdoflow.release(NULL, 1)');
SELECT regress.failure($$SELECT pdoflow.release('00000000-0000-7000-8000-000000000000', 0)$$);
SELECT pdoflow.release('00000000-0000-7000-8000-000000000000', 1) AS unknown_job;
