#!/usr/bin/env bash
# The quick-start demo: starts a throwaway cluster with pdoflow preloaded,
# enqueues a small mixed workload through SQL and a posting holding a small
# DAG (scripts/demo-dag.json), works it with a pdoflow-run worker (its
# built-in shell, sleep and noop tasks) while a progress bar waits, prints
# what happened, then starts `pdoflow-run serve` (the dashboard and the HTTP
# API) on 127.0.0.1:${DEMO_HTTP_PORT:-8080} and prints a token to sign in
# with. The cluster and the server keep running.
#
#   scripts/demo.sh [PORT]      the demo (make demo)
#   scripts/demo.sh stop        stop the demo's server (make demo-stop)
set -euo pipefail
source "$(dirname "$0")/common.sh"

# The demo's server: its pid, the HS256 secret its tokens are signed with
# (made once, kept), and the role the printed token names.
server_pid_file="${PG_ROOT}/demo-server.pid"
server_secret_file="${PG_ROOT}/demo-server.secret"
server_role=pdoflow_demo_admin

# Stops the server the pid file names, if it is still that server.
stop_server() {
    [ -f "${server_pid_file}" ] || return 0
    local pid
    pid="$(cat "${server_pid_file}")"
    if [ -n "${pid}" ] && tr '\0' ' ' 2>/dev/null <"/proc/${pid}/cmdline" | grep -q 'pdoflow-run.* serve'; then
        kill -TERM "${pid}" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "${pid}" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "${pid}" 2>/dev/null || true
    fi
    rm -f "${server_pid_file}"
}

if [ "${1:-}" = stop ]; then
    stop_server
    exit 0
fi

port="${1:-54329}"
http_port="${DEMO_HTTP_PORT:-8080}"
url="$("${REPO_ROOT}/scripts/cluster.sh" url demo "${port}")"
psql_demo() { psql "${url}" -X -q -v ON_ERROR_STOP=1 "$@"; }

say "Building pdoflow-run"
(cd "${REPO_ROOT}" && cargo build --release --quiet -p pdoflow-client --bin pdoflow-run)
run="${REPO_ROOT}/target/release/pdoflow-run"

# A server left by the previous demo goes first: the cluster restarts and
# the extension is made anew under it.
stop_server

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

say "Starting the dashboard and the HTTP API on 127.0.0.1:${http_port}"
if [ ! -s "${server_secret_file}" ]; then
    (umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"${server_secret_file}")
fi
# The token's role: a group role (NOLOGIN) with pdoflow_admin's rights, which
# the server's requests SET ROLE to.
psql_demo <<SQL
\o /dev/null
SET client_min_messages = warning;
DO \$\$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${server_role}') THEN
        CREATE ROLE ${server_role} NOLOGIN;
    END IF;
END \$\$;
GRANT pdoflow_admin TO ${server_role};
SQL
PDOFLOW_JWT_SECRET="$(cat "${server_secret_file}")" nohup "${run}" --database-url "${url}" \
    serve --listen "127.0.0.1:${http_port}" >>"${logs}/server.log" 2>&1 </dev/null &
echo $! >"${server_pid_file}"
# Ready once GET /readyz answers 200 (bash's /dev/tcp: no curl needed).
server_ready() {
    (
        exec 3<>"/dev/tcp/127.0.0.1/${http_port}" || exit 1
        printf 'GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
        read -r -t 2 status <&3 && [[ "${status}" == *" 200 "* ]]
    ) 2>/dev/null
}
for _ in $(seq 100); do
    server_ready && break
    kill -0 "$(cat "${server_pid_file}")" 2>/dev/null || break
    sleep 0.2
done
if ! server_ready; then
    tail -n 20 "${logs}/server.log" >&2
    stop_server
    die "pdoflow-run serve did not become ready on 127.0.0.1:${http_port} (log: ${logs}/server.log; if the port is taken: DEMO_HTTP_PORT=8081 make demo)"
fi

# A token for the dashboard and the API: HS256, role pdoflow_demo_admin, 30 days.
mint_script='
import base64, hashlib, hmac, json, sys, time
part = lambda data: base64.urlsafe_b64encode(data).rstrip(b"=").decode()
signed = part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + part(json.dumps(
    {"role": sys.argv[2], "exp": int(time.time()) + 30 * 86400}).encode())
print(signed + "." + part(hmac.new(sys.argv[1].encode(), signed.encode(), hashlib.sha256).digest()))'
token=""
if command -v node >/dev/null; then
    token="$(node -e '
        const crypto = require("crypto");
        const [secret, role] = process.argv.slice(1);
        const part = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
        const signed = part({ alg: "HS256", typ: "JWT" }) + "." + part({ role, exp: Math.floor(Date.now() / 1000) + 30 * 86400 });
        console.log(signed + "." + crypto.createHmac("sha256", secret).update(signed).digest("base64url"));
    ' "$(cat "${server_secret_file}")" "${server_role}")"
elif command -v python3 >/dev/null; then
    token="$(python3 -c "${mint_script}" "$(cat "${server_secret_file}")" "${server_role}")"
fi

say "The demo cluster and its server are still running"
echo "  connect:    psql '${url}'"
echo "  dashboard:  http://127.0.0.1:${http_port}/dashboard/"
if [ -n "${token}" ]; then
    echo "  sign in with this token (role ${server_role}, valid 30 days):"
    echo "    ${token}"
    echo "  HTTP API:   curl -H 'Authorization: Bearer ${token}' http://127.0.0.1:${http_port}/v1/jobs"
else
    echo "  (no node or python3 here to sign a token: an HS256 JWT with the claim {\"role\": \"${server_role}\"},"
    echo "   signed with the secret in ${server_secret_file}, signs in)"
fi
echo "  server log: ${logs}/server.log"
echo "  stop:       make demo-stop"
