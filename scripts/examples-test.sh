#!/usr/bin/env bash
# Runs the plain-SQL examples in examples/ (Python with psycopg 3, Node.js with
# node-postgres) against a PostgreSQL server with pdoflow preloaded, and fails
# loudly when any check fails.
#
#   scripts/examples-test.sh [DATABASE_URL]    (default: $PDOFLOW_TEST_DATABASE_URL)
#
# The URL names any database of the server, as a superuser (or a role that
# may create databases and the extension). Each language gets a database of
# its own, dropped and created anew each run: pdoflow_examples_py and
# pdoflow_examples_node. Installs what is missing first, and only that:
# python3-venv, nodejs and npm with apt-get, a venv in target/examples/venv
# (examples/python/requirements.txt), examples/node/node_modules (npm ci).
#
# Per language:
#   1. a worker in the background (lease 3 s: it heartbeats every second),
#      the producer (its own checks: results, errors, progress, unique key),
#      then SIGTERM to the idle worker, which must exit 0;
#   2. a slow job and five quick ones claimed in one batch, SIGTERM while the
#      slow one runs: the worker finishes it, releases the others, exits 0;
#   3. the worker with --until-idle works those five and exits;
#   then every job must have ended, with the counts expected.
set -euo pipefail
source "$(dirname "$0")/common.sh"

url="${1:-${PDOFLOW_TEST_DATABASE_URL:-}}"
[ -n "${url}" ] || die "usage: $0 DATABASE_URL (or set PDOFLOW_TEST_DATABASE_URL)"
case "${url}" in
postgres://* | postgresql://*) ;;
*) die "expected a postgresql:// URL, got: ${url}" ;;
esac

examples="${REPO_ROOT}/examples"
work="${REPO_ROOT}/target/examples"
venv="${work}/venv"
logs="${work}/logs"
python="${PDOFLOW_EXAMPLES_PYTHON:-/usr/bin/python3}"
psql_bin="${PG_BIN}/psql"
[ -x "${psql_bin}" ] || psql_bin="$(command -v psql)" || die "psql not found"

# Loud failure: the reason, the worker's log, exit 1.
worker_pid=""
worker_log=""
fail() {
    printf '\n\033[1;31mexamples-test FAILED: %s\033[0m\n' "$*" >&2
    if [ -n "${worker_log}" ] && [ -s "${worker_log}" ]; then
        printf '%s\n' "--- last lines of ${worker_log} ---" >&2
        tail -n 40 "${worker_log}" >&2
    fi
    exit 1
}
cleanup() {
    if [ -n "${worker_pid}" ] && kill -0 "${worker_pid}" 2>/dev/null; then kill -KILL "${worker_pid}"; fi
}
trap cleanup EXIT

# The same URL with another database name.
url_for() { url_with_database "${url}" "$1"; }


# ---- What the examples need, installed only when missing ----

missing=()
"${python}" -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ "${#missing[@]}" -gt 0 ]; then
    say "Installing ${missing[*]}"
    sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The venv is made anew when requirements.txt or the interpreter changed.
want="$( (cat "${examples}/python/requirements.txt"; "${python}" --version) | sha256sum | cut -d' ' -f1)"
if [ "$(cat "${venv}/.examples-stamp" 2>/dev/null)" != "${want}" ] || ! "${venv}/bin/python" -c 'import psycopg' 2>/dev/null; then
    say "Python venv in ${venv}"
    rm -rf "${venv}"
    "${python}" -m venv "${venv}"
    "${venv}/bin/pip" install -q --disable-pip-version-check -r "${examples}/python/requirements.txt"
    echo "${want}" >"${venv}/.examples-stamp"
fi

# npm ci wipes node_modules, so the stamp inside it goes with every reinstall.
want="$(sha256sum "${examples}/node/package-lock.json" | cut -d' ' -f1)"
if [ "$(cat "${examples}/node/node_modules/.examples-stamp" 2>/dev/null)" != "${want}" ]; then
    say "npm ci in examples/node"
    (cd "${examples}/node" && npm ci --no-audit --no-fund --loglevel=error)
    echo "${want}" >"${examples}/node/node_modules/.examples-stamp"
fi

# ---- The examples ----

mkdir -p "${logs}"

# Sends SIGTERM to the background worker and waits (20 s at most) for exit 0.
stop_worker() {
    kill -TERM "${worker_pid}"
    for _ in $(seq 200); do
        kill -0 "${worker_pid}" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "${worker_pid}" 2>/dev/null; then
        fail "$1: the worker did not stop within 20 s of SIGTERM"
    fi
    local status=0
    wait "${worker_pid}" || status=$?
    worker_pid=""
    [ "${status}" = 0 ] || fail "$1: the worker exited with status ${status} after SIGTERM"
}

# run_language NAME DATABASE EXTENSION INTERPRETER: runs examples/NAME's
# programs (worker.EXTENSION, producer.EXTENSION) with INTERPRETER.
run_language() {
    local name="$1" database="$2" extension="$3" interpreter="$4"
    local worker=("${interpreter}" "${examples}/${name}/worker.${extension}")
    local producer=("${interpreter}" "${examples}/${name}/producer.${extension}")
    local db_url
    db_url="$(url_for "${database}")"
    worker_log="${logs}/${name}-worker.log"
    : >"${worker_log}"
    export PDOFLOW_DATABASE_URL="${db_url}"

    say "${name}: fresh database ${database}"
    sql "${url}" -c "DROP DATABASE IF EXISTS ${database} WITH (FORCE)" -c "CREATE DATABASE ${database}" \
        || fail "${name}: could not create database ${database}"
    sql "${db_url}" -c "CREATE EXTENSION pdoflow" || fail "${name}: CREATE EXTENSION pdoflow failed in ${database}"

    say "${name}: worker in the background, producer in the foreground"
    "${worker[@]}" --lease 3 >>"${worker_log}" 2>&1 &
    worker_pid=$!
    timeout 120 "${producer[@]}" || fail "${name}: the producer's checks failed (see above)"
    stop_worker "${name}"
    grep -q 'heartbeat job' "${worker_log}" || fail "${name}: the worker never heartbeated the slow job"

    say "${name}: SIGTERM while a job runs: it finishes, the rest of the batch is released"
    local slow
    slow="$(sql "${db_url}" -c "SELECT pdoflow.enqueue('slow', '{\"steps\": 4, \"step_seconds\": 0.5}', priority => 1)")"
    sql "${db_url}" -c "SELECT count(*) FROM (SELECT pdoflow.enqueue('add', jsonb_build_object('a', i, 'b', 1)) FROM generate_series(1, 5) AS i) AS e" >/dev/null
    "${worker[@]}" --lease 3 >>"${worker_log}" 2>&1 &
    worker_pid=$!
    for _ in $(seq 200); do
        [ "$(sql "${db_url}" -c "SELECT state FROM pdoflow.jobs WHERE id = '${slow}'")" = running ] && break
        sleep 0.1
    done
    stop_worker "${name}"
    [ "$(sql "${db_url}" -c "SELECT state FROM pdoflow.jobs WHERE id = '${slow}'")" = succeeded ] \
        || fail "${name}: the job running at SIGTERM did not succeed"
    [ "$(sql "${db_url}" -c "SELECT count(*) FROM pdoflow.jobs WHERE task = 'add' AND state = 'queued' AND attempt = 1")" = 5 ] \
        || fail "${name}: the five jobs claimed with the slow one were not released (queued after attempt 1)"

    say "${name}: worker --until-idle works what is left"
    timeout 60 "${worker[@]}" --until-idle >>"${worker_log}" 2>&1 || fail "${name}: worker --until-idle failed"

    local left counts
    left="$(sql "${db_url}" -c "SELECT count(*) FROM pdoflow.jobs WHERE state NOT IN ('succeeded', 'failed')")"
    [ "${left}" = 0 ] || fail "${name}: ${left} job(s) neither succeeded nor failed"
    counts="$(sql "${db_url}" -c "SELECT string_agg(state || '=' || n, ' ' ORDER BY state) FROM (SELECT state, count(*) AS n FROM pdoflow.jobs GROUP BY state) AS s")"
    [ "${counts}" = "failed=1 succeeded=28" ] || fail "${name}: expected failed=1 succeeded=28, got ${counts}"
    say "${name}: passed (${counts})"
    worker_log=""
}

started=${SECONDS}
run_language python pdoflow_examples_py py "${venv}/bin/python"
run_language node pdoflow_examples_node js node
say "Examples passed in $((SECONDS - started)) s"
