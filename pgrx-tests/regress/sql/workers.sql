-- The workers registry: claim, heartbeat and register_worker record workers;
-- the sweep marks the silent ones gone and later forgets them.
SELECT regress.reset();

SELECT pdoflow.enqueue('t') IS NOT NULL AS enqueued;
SELECT task FROM pdoflow.claim(1, worker => 'busy');
SELECT count(*) AS claimed FROM pdoflow.claim(1, worker => 'idle');  -- finds nothing, still counts
SELECT count(*) AS claimed FROM pdoflow.claim(1);                    -- unnamed: not recorded
SELECT pdoflow.register_worker('listener');
SELECT name, state, first_seen_at = last_seen_at AS first_sighting, gone_at FROM pdoflow.workers ORDER BY name;

-- A heartbeat counts for the worker holding the claim.
UPDATE pdoflow.workers SET last_seen_at = now() - interval '10 minutes';
SELECT pdoflow.heartbeat(id, 1) IS NOT NULL AS renewed FROM pdoflow.jobs WHERE task = 't';
SELECT name, last_seen_at > now() - interval '1 minute' AS seen_lately FROM pdoflow.workers ORDER BY name;

-- Unseen for pdoflow.worker_timeout: gone. Their jobs are not touched: only
-- expired leases decide that.
SHOW pdoflow.worker_timeout;
SELECT workers_gone FROM pdoflow.sweep();
SELECT name, state, gone_at IS NOT NULL AS has_gone_at FROM pdoflow.workers ORDER BY name;
SELECT task, state, worker FROM pdoflow.jobs;

-- A gone worker that shows up again is active again.
SELECT count(*) AS claimed FROM pdoflow.claim(1, worker => 'idle');
SELECT name, state, gone_at FROM pdoflow.workers WHERE name = 'idle';

-- Workers gone for longer than pdoflow.retention are forgotten.
UPDATE pdoflow.workers SET gone_at = now() - interval '8 days' WHERE name = 'listener';
SELECT workers_gone FROM pdoflow.sweep();
SELECT name, state FROM pdoflow.workers ORDER BY name;

-- Input checks.
SELECT regress.failure('SELECT pdoflow.register_worker(NULL)');
SELECT regress.failure('SELECT pdoflow.register_worker('''')');
SELECT regress.failure($$SELECT pdoflow.register_worker(' padded')$$);
SELECT regress.failure($$SELECT pdoflow.register_worker(repeat('w', 129))$$);

-- A worker may say which tasks it serves; NULL keeps what it said.
SELECT pdoflow.register_worker('typed', ARRAY['mail', 'sms']);
SELECT name, state, tasks FROM pdoflow.workers WHERE name = 'typed';
SELECT pdoflow.register_worker('typed');
SELECT pdoflow.register_worker('typed', ARRAY['sms']);
SELECT name, tasks FROM pdoflow.workers WHERE name = 'typed';
SELECT regress.failure($$SELECT pdoflow.register_worker('typed', ARRAY['mail', NULL])$$);
SELECT regress.failure($$SELECT pdoflow.register_worker('typed', ARRAY['mail', 'mail'])$$);
SELECT regress.failure($$SELECT pdoflow.register_worker('typed', ARRAY[''])$$);
