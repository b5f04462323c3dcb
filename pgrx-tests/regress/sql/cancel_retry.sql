SELECT regress.reset();
SET pdoflow.retry_backoff_base = 0;

CREATE TEMP TABLE job AS
SELECT pdoflow.enqueue('queued-one', priority => 1) AS queued_id,
       pdoflow.enqueue('running-one', priority => 2) AS running_id,
       pdoflow.enqueue('failing-one', max_attempts => 1) AS failing_id;
CREATE TEMP TABLE running AS SELECT * FROM pdoflow.claim(1);

-- Cancel ends queued and running jobs; a second cancel reports false.
SELECT pdoflow.cancel(queued_id) AS queued, pdoflow.cancel(running_id) AS running FROM job;
SELECT pdoflow.cancel(queued_id) AS again FROM job;
-- The cancelled job's worker finds out when it finishes.
SELECT regress.failure(format('SELECT pdoflow.finish(%L, %s)', id, attempt)) FROM running;

-- Retry puts failed and cancelled jobs back, due now.
SELECT pdoflow.finish(c.id, c.attempt, error => 'boom') FROM pdoflow.claim(1) AS c;
SELECT task, state, attempt, max_attempts FROM regress.jobs ORDER BY task;
SELECT pdoflow.retry(failing_id) AS failed, pdoflow.retry(queued_id) AS cancelled FROM job;
SELECT task, state, attempt, max_attempts, last_error FROM regress.jobs ORDER BY task;
-- Retrying a job that is already queued does nothing.
SELECT pdoflow.retry(queued_id) AS again FROM job;
-- The retried job gets its extra attempt.
CREATE TEMP TABLE second_round AS SELECT * FROM pdoflow.claim(10);
SELECT task, attempt, max_attempts FROM second_round ORDER BY task;

-- Succeeded jobs cannot be retried.
SELECT task, pdoflow.finish(id, attempt) FROM second_round ORDER BY task;
SELECT regress.failure(format('SELECT pdoflow.retry(%L)', queued_id)) FROM job;
