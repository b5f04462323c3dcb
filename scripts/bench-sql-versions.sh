#!/usr/bin/env bash
# The SQL of two extension versions side by side, on one cluster and one
# library: claim(10) + finish_many from 8 clients, then single-job enqueue,
# alternating between a database at version OLD and one at version NEW, so
# that both are measured under the same conditions. For changes to the SQL
# API's functions (the library is the installed one in both databases).
#
#   scripts/bench-sql-versions.sh OLD NEW [SECONDS] [ROUNDS]
#   scripts/bench-sql-versions.sh 0.4.0 0.5.0 10 3
#
# OLD is reached from the frozen 0.1.0 install script (tests/fixtures/,
# copied into the server's extension directory) through the upgrade chain,
# as the upgrade test does. Uses a fresh throwaway cluster (.pg/bench-versions,
# port 54369) with default durability.
set -euo pipefail
source "$(dirname "$0")/common.sh"

old="${1:?usage: bench-sql-versions.sh OLD NEW [SECONDS] [ROUNDS]}"
new="${2:?usage: bench-sql-versions.sh OLD NEW [SECONDS] [ROUNDS]}"
seconds="${3:-10}"
rounds="${4:-3}"
port="${PDOFLOW_BENCH_PORT:-54369}"
name=bench-versions
clients=8
sql="${REPO_ROOT}/bench/sql"
url() { "${REPO_ROOT}/scripts/cluster.sh" url "${name}" "${port}" "$1"; }
q() { "${PG_BIN}/psql" "$(url "$1")" -X -q -t -A -v ON_ERROR_STOP=1 "${@:2}"; }
tps() { grep -oE 'tps = [0-9.]+' | head -1 | cut -d' ' -f3; }

cp "${REPO_ROOT}/tests/fixtures/pdoflow--0.1.0.sql" "$("${PG_CONFIG}" --sharedir)/extension/"
"${REPO_ROOT}/scripts/cluster.sh" start "${name}" "${port}" fresh
trap '"${REPO_ROOT}/scripts/cluster.sh" stop "${name}"' EXIT
for version in "${old}" "${new}"; do
    database="v${version//./_}"
    q postgres -c "CREATE DATABASE ${database}"
    q "${database}" -c "SET client_min_messages = warning" \
        -c "CREATE EXTENSION pdoflow VERSION '0.1.0'" -c "ALTER EXTENSION pdoflow UPDATE TO '${version}'"
done

echo "pdoflow SQL of version ${old} against ${new}: $(nproc) cores, PostgreSQL $(q postgres -c 'SHOW server_version'), ${clients} clients, ${seconds} s per run"
echo "command: scripts/bench-sql-versions.sh ${old} ${new} ${seconds} ${rounds}"
for round in $(seq 1 "${rounds}"); do
    for version in "${old}" "${new}"; do
        database="v${version//./_}"
        q "${database}" -c "TRUNCATE pdoflow.active_jobs, pdoflow.finished_jobs, pdoflow.workers" \
            -c "SELECT count(*) FROM pdoflow.enqueue_many('noop', array_fill('{\"n\": 1}'::jsonb, ARRAY[300000]))" >/dev/null
        q "${database}" -c "VACUUM ANALYZE pdoflow.active_jobs"
        claim="$("${PG_BIN}/pgbench" "$(url "${database}")" -n -c "${clients}" -j 2 -T "${seconds}" -f "${sql}/claim_finish_10.sql" 2>&1 | tps)"
        q "${database}" -c "TRUNCATE pdoflow.active_jobs, pdoflow.finished_jobs"
        enqueue="$("${PG_BIN}/pgbench" "$(url "${database}")" -n -c "${clients}" -j 2 -T "${seconds}" -f "${sql}/enqueue_one.sql" 2>&1 | tps)"
        printf 'round %s  %-8s claim(10) + finish_many: %8.0f batches/s (%6.0f jobs/s)   enqueue: %6.0f jobs/s\n' \
            "${round}" "${version}" "${claim}" "$(awk -v b="${claim}" 'BEGIN {print b * 10}')" "${enqueue}"
    done
done
