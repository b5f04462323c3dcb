-- Progress reports of the current claim, and waiting for a job's result.
SELECT regress.reset();

SELECT pdoflow.enqueue('import', '{"rows": 100}') AS job \gset
SELECT attempt FROM pdoflow.claim(1, worker => 'w1', lease => '1 minute');
SELECT pdoflow.progress(:'job', 1, '{"done": 10, "total": 100}');
-- It counts as a heartbeat: the lease was renewed from now.
SELECT progress, heartbeat_at IS NOT NULL AS heartbeat, lease_expires_at > now() AS leased
FROM pdoflow.jobs WHERE id = :'job';
-- Only the current claim may report; bad reports name the value.
SELECT regress.failure(format('SELECT pdoflow.progress(%L, 2, %L)', :'job', '{}'));
SELECT regress.failure(format('SELECT pdoflow.progress(%L, 1, NULL)', :'job'));
SELECT regress.failure(format('SELECT pdoflow.progress(%L, 0, %L)', :'job', '{}'));
SELECT regress.failure($$SELECT pdoflow.progress('00000000-0000-7000-8000-000000000000', 1, '{}')$$);
SET pdoflow.max_payload_bytes = 100;
SELECT regress.failure(format('SELECT pdoflow.progress(%L, 1, %L)', :'job', json_build_object('pad', repeat('x', 200))));
RESET pdoflow.max_payload_bytes;

-- Not ended yet: with no time to wait, the current state.
SELECT state, result, last_error, finished_at, progress FROM pdoflow.await_result(:'job', '0');
SELECT pdoflow.finish(:'job', 1, result => '{"imported": 100}');
-- Ended: at once, with the result and the last progress.
SELECT state, result, last_error, finished_at IS NOT NULL AS ended, progress FROM pdoflow.await_result(:'job');

-- A new attempt starts without progress.
SELECT pdoflow.enqueue('again', max_attempts => 2) AS again \gset
SELECT attempt FROM pdoflow.claim(1, tasks => ARRAY['again']);
SELECT pdoflow.progress(:'again', 1, '"half way"');
SELECT pdoflow.finish(:'again', 1, error => 'lost the connection');
UPDATE pdoflow.active_jobs SET run_at = now() WHERE id = :'again';
SELECT attempt FROM pdoflow.claim(1, tasks => ARRAY['again']);
SELECT attempt, progress FROM pdoflow.jobs WHERE id = :'again';

SELECT pdoflow.enqueue('doomed', max_attempts => 1) AS doomed \gset
SELECT attempt FROM pdoflow.claim(1, tasks => ARRAY['doomed']);
SELECT pdoflow.finish(:'doomed', 1, error => 'disk full');
SELECT state, result, last_error FROM pdoflow.await_result(:'doomed', '5 seconds');
SELECT pdoflow.enqueue('dropped') AS dropped \gset
SELECT pdoflow.cancel(:'dropped');
SELECT state FROM pdoflow.await_result(:'dropped');

-- Bad calls.
SELECT regress.failure($$SELECT * FROM pdoflow.await_result('00000000-0000-7000-8000-000000000000')$$);
SELECT regress.failure($$SELECT * FROM pdoflow.await_result(NULL)$$);
SELECT regress.failure(format('SELECT * FROM pdoflow.await_result(%L, NULL)', :'job'));
SELECT regress.failure(format('SELECT * FROM pdoflow.await_result(%L, %L)', :'job', '-1 second'));
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT regress.failure(format('SELECT * FROM pdoflow.await_result(%L)', :'job'));
COMMIT;

-- await_ended: the jobs among ids that have ended, at once; unknown ids
-- are left out; with none ended it returns at the timeout (or when any
-- job of the database ends) with no rows.
SELECT pdoflow.enqueue('watched') AS watched \gset
SELECT id = :'doomed' AS doomed, state FROM pdoflow.await_ended(ARRAY[:'doomed', :'dropped', :'watched',
       '00000000-0000-7000-8000-000000000000']::uuid[], '0') ORDER BY state;
SELECT count(*) AS ended FROM pdoflow.await_ended(ARRAY[:'watched']::uuid[], '10 milliseconds');
SELECT count(*) AS ended FROM pdoflow.await_ended('{}', '0');
SELECT regress.failure($$SELECT * FROM pdoflow.await_ended(NULL)$$);
SELECT regress.failure($$SELECT * FROM pdoflow.await_ended('{}', '-1 second')$$);
SELECT regress.failure($$SELECT * FROM pdoflow.await_ended('{}', NULL)$$);
SELECT regress.failure($$SELECT * FROM pdoflow.await_ended(array_fill('00000000-0000-7000-8000-000000000000'::uuid, ARRAY[100001]))$$);
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT regress.failure($$SELECT * FROM pdoflow.await_ended('{}')$$);
COMMIT;
