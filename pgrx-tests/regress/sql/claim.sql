SELECT regress.reset();

SELECT count(*) FROM (
    SELECT pdoflow.enqueue('low', priority => 1)
    UNION ALL SELECT pdoflow.enqueue('high-new', priority => 9)
    UNION ALL SELECT pdoflow.enqueue('high-overdue', priority => 9, run_at => now() - interval '1 hour')
    UNION ALL SELECT pdoflow.enqueue('later', priority => 100, run_at => now() + interval '1 hour')
    UNION ALL SELECT pdoflow.enqueue('other-queue', queue => 'other', priority => 50)
) AS enqueued;

-- Highest priority first, then the longest overdue, then the oldest; only due jobs.
SELECT task, queue, priority, attempt, max_attempts, lease_expires_at = now() + interval '5 minutes' AS default_lease
FROM pdoflow.claim(3);

-- Claimed jobs are running, for this worker, and are not handed out again.
SELECT task, state, attempt, worker IS NULL AS anonymous FROM regress.jobs WHERE state = 'running' ORDER BY task;

-- Only the asked-for queues; nothing due there yields no rows.
SELECT task FROM pdoflow.claim(10, queues => ARRAY['nowhere']);
SELECT task, queue FROM pdoflow.claim(10, queues => ARRAY['default', 'other'], worker => 'node-7', lease => '30 seconds');
SELECT task, worker FROM regress.jobs WHERE state = 'running' ORDER BY task;

-- The delayed job is still waiting.
SELECT task, state FROM regress.jobs WHERE state = 'queued';

-- Only the given tasks: a worker claims only what it can run.
SELECT regress.reset();
SELECT count(*) AS enqueued FROM (
    SELECT pdoflow.enqueue(t) FROM unnest(ARRAY['resize', 'email', 'resize', 'report']) AS t
) AS e;
SELECT task FROM pdoflow.claim(10, tasks => ARRAY['resize', 'report']) ORDER BY task;
SELECT task FROM pdoflow.claim(10, queues => ARRAY['default'], tasks => ARRAY['email']);
SELECT task, state FROM pdoflow.jobs ORDER BY task, state;

-- One job by id, due or not (pdoflow-run execute-job).
SELECT regress.reset();
SELECT pdoflow.enqueue('later', run_at => now() + interval '1 day') IS NOT NULL AS enqueued;
SELECT task, attempt FROM pdoflow.claim_job((SELECT id FROM pdoflow.jobs), 'debugger');
SELECT state, worker FROM pdoflow.jobs;
SELECT count(*) AS claimed_again FROM pdoflow.claim_job((SELECT id FROM pdoflow.jobs));
SELECT count(*) AS unknown FROM pdoflow.claim_job('00000000-0000-7000-8000-000000000000');
