#!/usr/bin/env bash
# The quick-start demo: starts a throwaway cluster with pdoflow preloaded,
# enqueues a small mixed workload through SQL and a posting holding a small
# DAG (scripts/demo-dag.json), works it with a pdoflow-run worker (its
# built-in shell, sleep and noop tasks) while a progress bar waits, prints
# what happened, and leaves the cluster running.
set -euo pipefail
source "$(dirname "$0")/common.sh"

port="${1:-54329}"
url="$("${REPO_ROOT}/scripts/cluster.sh" url demo "${port}")"
psql_demo() { psql "${url}" -X -q -v ON_ERROR_STOP=1 "$@"; }

say "Building pdoflow-run"
(cd "${REPO_ROOT}" && cargo build --release --quiet -p pdoflow-client --bin pdoflow-run)
run="${REPO_ROOT}/target/release/pdoflow-run"

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

-- The built-in shell task runs commands on the worker's host: only the
-- demo's superuser may enqueue it (a worker started with --enable-shell
-- refuses to start until someone is granted it).
SELECT pdoflow.grant_task('shell', current_user::regrole);

-- Five e-mails in the default queue (the built-in shell task keeps each
-- command's output in the worker's log directory).
SELECT pdoflow.enqueue('shell', jsonb_build_object('command', jsonb_build_array('echo', 'mail to user' || i || '@example.com')))
FROM generate_series(1, 5) AS i;
-- Three urgent thumbnails in their own queue.
SELECT pdoflow.enqueue('sleep', '{"ms": 300}', queue => 'images', priority => 10)
FROM generate_series(1, 3) AS i;
-- A report that must wait two seconds.
SELECT pdoflow.enqueue('shell', '{"command": ["date"]}', run_at => now() + interval '2 seconds');
-- A webhook that fails twice before it succeeds (a counter file), and an
-- import that never succeeds.
SELECT pdoflow.enqueue('shell', jsonb_build_object('command', jsonb_build_array('sh', '-c',
    'n=$(cat "$COUNTER" 2>/dev/null || echo 0); echo $((n + 1)) > "$COUNTER"; '
    || 'if [ "$n" -lt 2 ]; then echo "HTTP 503 from webhook" >&2; exit 1; fi; echo delivered'),
    'env', jsonb_build_object('COUNTER', '/tmp/pdoflow-demo-webhook-' || txid_current())), max_attempts => 5);
SELECT pdoflow.enqueue('shell', '{"command": ["sh", "-c", "echo file not found: missing.csv >&2; exit 2"]}', max_attempts => 2);
-- A job that is cancelled before it runs.
SELECT pdoflow.cancel(pdoflow.enqueue('noop', '{"to": "nobody@example.com"}', priority => -1));
-- An export whose worker crashes mid-run: claimed with a 1-second lease and
-- never finished. The background sweeper takes it back and it runs again.
SELECT pdoflow.enqueue('sleep', '{"ms": 500}', queue => 'exports');
SELECT count(*) FROM pdoflow.claim(1, ARRAY['exports'], worker => 'crashed-worker', lease => '1 second');
-- And a thousand no-ops, in one statement.
SELECT count(*)
FROM pdoflow.enqueue_many('noop', (SELECT array_agg(jsonb_build_object('n', i)) FROM generate_series(1, 1000) AS i));
SQL

# A posting holding a small DAG (scripts/demo-dag.json): one job fans out to
# three, which fan in to a job that adds up what its parents printed.
posting=$("${run}" --database-url "${url}" posting create "demo workflow" --description "fan-out, fan-in")
"${run}" --database-url "${url}" dag submit "${REPO_ROOT}/scripts/demo-dag.json" --posting "${posting}" >/dev/null
psql_demo -c "SELECT queue, task, state, count(*) AS jobs FROM pdoflow.jobs GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"

say "Working the queue with pdoflow-run"
logs="${PG_ROOT}/demo-logs"
mkdir -p "${logs}"
"${run}" --database-url "${url}" worker --concurrency 8 --poll-interval 1s --enable-shell --log-dir "${logs}" \
    >"${logs}/worker.log" 2>&1 &
worker_pid=$!
trap 'kill "${worker_pid}" 2>/dev/null || true' EXIT
"${run}" --database-url "${url}" wait --progress --timeout 60s \
    || die "the demo's jobs did not finish within 60 s (worker log: ${logs}/worker.log)"
kill -TERM "${worker_pid}"
wait "${worker_pid}" || die "the worker did not stop cleanly (log: ${logs}/worker.log)"
trap - EXIT
echo "  worker log: ${logs}/worker.log; job output: ${logs}/<job id>.stdout.log"

say "What happened"
psql_demo <<'SQL'
SELECT task, queue, state, count(*) AS jobs, max(attempt) AS attempts,
       max(split_part(last_error, E'\n', 1) || coalesce(' ' || nullif(split_part(last_error, E'\n', 2), ''), '')) AS last_error
FROM pdoflow.jobs GROUP BY 1, 2, 3 ORDER BY 2, 1, 3;
SELECT name AS worker, state, last_seen_at FROM pdoflow.workers ORDER BY name;
SELECT pid, backend_type, datname FROM pg_stat_activity WHERE backend_type = 'pdoflow sweeper';
SQL
"${run}" --database-url "${url}" postings list
psql_demo -c "SELECT node, state, started_at::time(0) AS started, trim(result->>'stdout_tail', E'\\n') AS printed
              FROM pdoflow.jobs WHERE posting = '${posting}' ORDER BY started_at, node"

say "The demo cluster is still running"
echo "  connect:  psql '${url}'"
echo "  stop:     make demo-stop"
