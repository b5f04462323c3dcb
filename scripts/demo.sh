#!/usr/bin/env bash
# The quick-start demo: starts a throwaway cluster with pdoflow preloaded,
# enqueues a small mixed workload through SQL, works it with plain SQL (the
# claim -> finish loop every worker runs), prints what happened, and leaves
# the cluster running.
set -euo pipefail
source "$(dirname "$0")/common.sh"

port="${1:-54329}"
url="$("${REPO_ROOT}/scripts/cluster.sh" url demo "${port}")"
psql_demo() { psql "${url}" -X -q -v ON_ERROR_STOP=1 "$@"; }

say "Starting the demo cluster on port ${port}"
# A restart, so a running demo cluster loads the library just installed (and
# starts its background sweeper in database postgres, the demo's).
"${REPO_ROOT}/scripts/cluster.sh" restart demo "${port}"

say "Creating the extension and enqueueing a mixed workload"
psql_demo <<'SQL'
\o /dev/null
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pdoflow;
CREATE EXTENSION pdoflow;
-- Fast retries, so the demo's flaky jobs recover within seconds.
ALTER SYSTEM SET pdoflow.retry_backoff_base = '200ms';
SELECT pg_reload_conf();

-- Five e-mails in the default queue.
SELECT pdoflow.enqueue('send_email', jsonb_build_object('to', 'user' || i || '@example.com'))
FROM generate_series(1, 5) AS i;
-- Three urgent thumbnails in their own queue.
SELECT pdoflow.enqueue('resize_image', jsonb_build_object('image', i), queue => 'images', priority => 10)
FROM generate_series(1, 3) AS i;
-- A report that must wait two seconds.
SELECT pdoflow.enqueue('daily_report', '{"day": "today"}', run_at => now() + interval '2 seconds');
-- A job that fails twice before it succeeds, and one that never succeeds.
SELECT pdoflow.enqueue('flaky_webhook', '{"url": "https://example.com/hook"}', max_attempts => 5);
SELECT pdoflow.enqueue('doomed_import', '{"file": "missing.csv"}', max_attempts => 2);
-- A job that is cancelled before it runs.
SELECT pdoflow.cancel(pdoflow.enqueue('send_email', '{"to": "nobody@example.com"}', priority => -1));
-- An export whose worker crashes mid-run: claimed with a 1-second lease and
-- never finished. The background sweeper takes it back and it runs again.
SELECT pdoflow.enqueue('export_orders', '{"rows": 5000}', queue => 'exports');
SELECT count(*) FROM pdoflow.claim(1, ARRAY['exports'], worker => 'crashed-worker', lease => '1 second');
-- And a thousand no-ops, in one statement.
SELECT count(*)
FROM pdoflow.enqueue_many('noop', (SELECT array_agg(jsonb_build_object('n', i)) FROM generate_series(1, 1000) AS i));
SQL
psql_demo -c "SELECT queue, task, count(*) AS jobs FROM pdoflow.jobs GROUP BY 1, 2 ORDER BY 1, 2"

say "Working the queue with plain SQL: claim a batch, 'run' it, finish it"
# The "handlers": flaky_webhook fails on its first two attempts, doomed_import
# always fails, everything else succeeds and returns a result.
work_batch() {
    psql_demo -t -A <<'SQL'
CREATE TEMP TABLE batch AS SELECT * FROM pdoflow.claim(200, worker => 'demo-worker', lease => '30 seconds');
SELECT count(*) || ' claimed: ' ||
       coalesce(string_agg(DISTINCT state || ' ' || n, ', '), 'nothing due')
FROM (
    SELECT f.state, count(*) OVER (PARTITION BY f.state) AS n
    FROM batch AS b,
         pdoflow.finish(b.id, b.attempt,
             error => CASE
                 WHEN b.task = 'doomed_import' THEN 'file not found: missing.csv'
                 WHEN b.task = 'flaky_webhook' AND b.attempt < 3 THEN 'HTTP 503 from webhook'
             END,
             result => jsonb_build_object('handled_by', 'demo-worker', 'attempt', b.attempt)) AS f(state)
) AS outcome;
SQL
}
remaining() { psql_demo -t -A -c "SELECT count(*) FROM pdoflow.active_jobs"; }
deadline=$((SECONDS + 60))
left="$(remaining)"
while [ "${left}" -gt 0 ]; do
    [ "${SECONDS}" -lt "${deadline}" ] || die "the demo's jobs did not finish within 60 s (${left} left)"
    batch="$(work_batch)"
    echo "  ${batch}"
    sleep 0.3
    left="$(remaining)"
done

say "What happened"
psql_demo <<'SQL'
SELECT task, queue, state, count(*) AS jobs, max(attempt) AS attempts, max(last_error) AS last_error
FROM pdoflow.jobs GROUP BY 1, 2, 3 ORDER BY 2, 1, 3;
SELECT name AS worker, state, last_seen_at FROM pdoflow.workers ORDER BY name;
SELECT pid, backend_type, datname FROM pg_stat_activity WHERE backend_type = 'pdoflow sweeper';
SQL

say "The demo cluster is still running"
echo "  connect:  psql '${url}'"
echo "  stop:     make demo-stop"
