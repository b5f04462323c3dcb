-- Cron schedules: created, replaced, paused, resumed and removed; the sweep
-- enqueues each due occurrence once.
SELECT regress.reset();

SELECT pdoflow.schedule('nightly-report', '30 2 * * *', 'report', '{"kind": "daily"}',
                        queue => 'reports', time_zone => 'Europe/Berlin');
SELECT pdoflow.schedule('tick', '@hourly', 'tick', time_zone => 'utc');
SELECT name, cron, task, queue, time_zone, next_run_at > now() AS in_future, last_run_at, last_job, paused,
       args, priority, max_attempts, catch_up, owner
FROM pdoflow.schedules ORDER BY name;
-- 02:30 in Berlin, whatever the day.
SELECT to_char(next_run_at AT TIME ZONE 'Europe/Berlin', 'HH24:MI') AS local_time
FROM pdoflow.schedules WHERE name = 'nightly-report';
-- Replacing keeps the name, takes the new pattern.
SELECT pdoflow.schedule('tick', '*/5 * * * *', 'tick', priority => 3);
SELECT cron, priority, extract(minute FROM next_run_at)::integer % 5 AS minute_mod_5 FROM pdoflow.schedules WHERE name = 'tick';

-- Due: the sweep enqueues one job for it and moves it on.
UPDATE pdoflow.cron_schedules SET next_run_at = now() - interval '10 seconds' WHERE name = 'tick';
SELECT schedules_run FROM pdoflow.sweep();
SELECT schedules_run FROM pdoflow.sweep();
SELECT task, priority, state, enqueued_by = current_user AS enqueued_by_owner FROM pdoflow.jobs;
SELECT last_job = (SELECT id FROM pdoflow.jobs) AS records_its_job, next_run_at > now() AS moved_on
FROM pdoflow.schedules WHERE name = 'tick';

-- After downtime: one job for all the missed occurrences.
SELECT regress.reset();
SELECT pdoflow.schedule('tick', '* * * * *', 'tick');
UPDATE pdoflow.cron_schedules SET next_run_at = now() - interval '3 hours' WHERE name = 'tick';
SELECT schedules_run FROM pdoflow.sweep();
SELECT count(*) AS jobs FROM pdoflow.jobs;
SELECT last_run_at > now() - interval '1 minute' AS ran_the_latest FROM pdoflow.schedules;
-- Without catch_up: skipped, and said why.
-- (Its minute is half an hour from now's, so its latest occurrence is always
-- long past the minute of grace.)
SELECT pdoflow.schedule('hourly-no-catch-up', format('%s * * * *', (extract(minute FROM now())::integer + 30) % 60),
                        'tock', catch_up => false);
UPDATE pdoflow.cron_schedules SET next_run_at = now() - interval '3 hours'
WHERE name = 'hourly-no-catch-up';
SET client_min_messages = error;  -- (its WARNING names the time)
SELECT schedules_run FROM pdoflow.sweep();
RESET client_min_messages;
SELECT count(*) AS tock_jobs FROM pdoflow.jobs WHERE task = 'tock';
SELECT last_error LIKE 'skipped the occurrence at %' AS skipped, next_run_at > now() AS moved_on
FROM pdoflow.schedules WHERE name = 'hourly-no-catch-up';

-- Paused: nothing runs; resumed: from the next occurrence on. Each says
-- whether it changed anything.
SELECT pdoflow.pause_schedule('tick') AS paused, pdoflow.pause_schedule('tick') AS paused_again;
UPDATE pdoflow.cron_schedules SET next_run_at = now() - interval '1 minute' WHERE name = 'tick';
SELECT schedules_run FROM pdoflow.sweep();
SELECT paused FROM pdoflow.schedules WHERE name = 'tick';
SELECT pdoflow.resume_schedule('tick') AS resumed, pdoflow.resume_schedule('tick') AS resumed_again;
SELECT paused, next_run_at > now() AS next_in_future FROM pdoflow.schedules WHERE name = 'tick';
SELECT pdoflow.unschedule('tick') AS removed, pdoflow.unschedule('tick') AS removed_again;

-- A schedule whose owner role was dropped enqueues nothing, and says so.
CREATE ROLE regress_schedule_owner IN ROLE pdoflow_producer;
SET ROLE regress_schedule_owner;
SELECT pdoflow.schedule('orphan', '* * * * *', 'orphaned');
RESET ROLE;
DROP ROLE regress_schedule_owner;
UPDATE pdoflow.cron_schedules SET next_run_at = now() - interval '1 second' WHERE name = 'orphan';
SET client_min_messages = error;
SELECT schedules_run FROM pdoflow.sweep();
RESET client_min_messages;
SELECT count(*) AS orphaned_jobs FROM pdoflow.jobs WHERE task = 'orphaned';
SELECT regexp_replace(last_error, 'oid [0-9]+', 'oid <oid>') AS last_error FROM pdoflow.schedules WHERE name = 'orphan';
SELECT pdoflow.unschedule('orphan');

-- Sub-minute schedules.
SELECT pdoflow.schedule('often', 'every 15 seconds', 'ping');
SELECT pdoflow.schedule('often-too', '*/20 * * * * *', 'ping');
SELECT name, extract(second FROM next_run_at)::integer % 5 AS second_mod_5 FROM pdoflow.schedules
WHERE name LIKE 'often%' ORDER BY name;

-- Daylight saving time, in Europe/Berlin: on 2026-03-29 clocks jump from
-- 02:00 to 03:00, so a 02:30 schedule runs once, at 03:00; on 2026-10-25
-- 02:00-03:00 happens twice, and 02:30 runs once, the first time.
WITH RECURSIVE runs(n, at) AS (
    SELECT 1, pdoflow._cron_next('30 2 * * *', 'Europe/Berlin', '2026-03-27 12:00+00')
    UNION ALL
    SELECT n + 1, pdoflow._cron_next('30 2 * * *', 'Europe/Berlin', at) FROM runs WHERE n < 4
)
SELECT n, at AT TIME ZONE 'UTC' AS utc, at AT TIME ZONE 'Europe/Berlin' AS berlin FROM runs;
WITH RECURSIVE runs(n, at) AS (
    SELECT 1, pdoflow._cron_next('30 2 * * *', 'Europe/Berlin', '2026-10-24 12:00+00')
    UNION ALL
    SELECT n + 1, pdoflow._cron_next('30 2 * * *', 'Europe/Berlin', at) FROM runs WHERE n < 3
)
SELECT n, at AT TIME ZONE 'UTC' AS utc, at AT TIME ZONE 'Europe/Berlin' AS berlin FROM runs;
-- Hourly schedules run at every wall-clock hour that exists: 23 runs on
-- the spring-forward day, 25 on the fall-back day (docs/sql-api.md).
SELECT count(*) AS runs_on_spring_forward_day
FROM generate_series('2026-03-28 23:00+00'::timestamptz, '2026-03-29 21:59+00', interval '1 minute') AS t
WHERE pdoflow._cron_next('0 * * * *', 'Europe/Berlin', t - interval '1 minute') = t;
SELECT count(*) AS runs_on_fall_back_day
FROM generate_series('2026-10-24 22:00+00'::timestamptz, '2026-10-25 22:59+00', interval '1 minute') AS t
WHERE pdoflow._cron_next('0 * * * *', 'Europe/Berlin', t - interval '1 minute') = t;

-- Bad input names the value.
SELECT regress.failure($$SELECT pdoflow.schedule('x', '61 * * * *', 't')$$);
SELECT regress.failure($$SELECT pdoflow.schedule('x', '* * * *', 't')$$);
SELECT regress.failure($$SELECT pdoflow.schedule('x', '', 't')$$);
SELECT regress.failure($$SELECT pdoflow.schedule('x', '* * * * FUNDAY', 't')$$);
SELECT regress.failure($$SELECT pdoflow.schedule('x', 'every 90 seconds', 't')$$);
SELECT regress.failure($$SELECT pdoflow.schedule('x', 'every 5 minutes', 't')$$);
SELECT regress.failure($$SELECT pdoflow.schedule('x', '@fortnightly', 't')$$);
SELECT regress.failure($$SELECT pdoflow.schedule('x', '0 0 30 2 *', 't')$$);
SELECT regress.failure($$SELECT pdoflow.schedule('x', '@daily', 't', time_zone => 'Mars/Olympus_Mons')$$);
SELECT regress.failure($$SELECT pdoflow.schedule('x', '@daily', 't', time_zone => NULL)$$);
SELECT regress.failure($$SELECT pdoflow.schedule(NULL, '@daily', 't')$$);
SELECT regress.failure($$SELECT pdoflow.schedule(' x', '@daily', 't')$$);
SELECT regress.failure($$SELECT pdoflow.schedule('x', NULL, 't')$$);
SELECT regress.failure($$SELECT pdoflow.unschedule(NULL)$$);
SELECT regress.failure($$SELECT pdoflow.schedule('x', '@daily', '')$$);
SELECT regress.failure($$SELECT pdoflow.schedule('x', '@daily', 't', max_attempts => 0)$$);
SELECT regress.failure($$SELECT pdoflow.pause_schedule('nope')$$);
SELECT regress.failure($$SELECT pdoflow.resume_schedule('nope')$$);
SELECT count(*) AS schedules FROM pdoflow.schedules;
