#!/usr/bin/env bash
# make bench: the pdoflow-bench suite on a tuned throwaway cluster.
#
#   scripts/bench.sh [pdoflow-bench options...]     (default: all scenarios)
#
# Starts a fresh cluster (.pg/bench-tuned, port 54359), applies the settings
# below, runs `pdoflow-bench all`, then `pdoflow-bench pressure` with
# autovacuum_naptime back at its default, and prints every figure; the
# output is also kept in target/bench-results.txt. With options, runs
# pdoflow-bench with them instead. Durability stays PostgreSQL's default:
# fsync and synchronous_commit are on, full_page_writes too.
#
# Non-default settings, and why:
#   shared_buffers = 1GB           the working set (queue, history) stays in memory
#   max_wal_size = 4GB             no checkpoint is forced mid-run by WAL volume...
#   checkpoint_timeout = 30min     ...or by time: checkpoints flood the WAL with page images
#   autovacuum_naptime = 1s        the hot table is vacuumed while it is small (see
#                                  docs/benchmarks.md, "sustained"); not for pressure
#   max_connections = 200          (every pdoflow throwaway cluster)
set -euo pipefail
source "$(dirname "$0")/common.sh"

port="${PDOFLOW_BENCH_PORT:-54359}"
name=bench-tuned
url="$("${REPO_ROOT}/scripts/cluster.sh" url "${name}" "${port}")"
results="${REPO_ROOT}/target/bench-results.txt"

say "Building pdoflow-run and pdoflow-bench (release)"
(cd "${REPO_ROOT}" && cargo build --release --quiet -p pdoflow-client -p pdoflow-bench)

"${REPO_ROOT}/scripts/plproxy.sh"  # the sharded scenario
say "Starting the benchmark cluster ${name} on port ${port}"
"${REPO_ROOT}/scripts/cluster.sh" start "${name}" "${port}" fresh
trap '"${REPO_ROOT}/scripts/cluster.sh" stop "${name}"' EXIT
psql "${url}" -X -q -v ON_ERROR_STOP=1 <<'SQL'
ALTER SYSTEM SET shared_buffers = '1GB';
ALTER SYSTEM SET max_wal_size = '4GB';
ALTER SYSTEM SET checkpoint_timeout = '30min';
ALTER SYSTEM SET autovacuum_naptime = '1s';
SQL
"${REPO_ROOT}/scripts/cluster.sh" restart "${name}" "${port}"

mkdir -p "$(dirname "${results}")"
say "Running pdoflow-bench (a few minutes); figures also go to ${results#"${REPO_ROOT}"/}"
if [ "$#" -gt 0 ]; then
    # pressure (also `pressure --pressure-system pgq`, with Debian's
    # postgresql-15-pgq3 installed) runs with autovacuum at its defaults.
    if [[ " $* " == *" pressure "* || " $* " == *" pressure" ]]; then
        psql "${url}" -X -q -v ON_ERROR_STOP=1 -c "ALTER SYSTEM RESET autovacuum_naptime" -c "SELECT pg_reload_conf()" >/dev/null
    fi
    "${REPO_ROOT}/target/release/pdoflow-bench" --database-url "${url}" "$@" | tee "${results}"
    exit
fi
"${REPO_ROOT}/target/release/pdoflow-bench" --database-url "${url}" all | tee "${results}"
# The pressure scenario runs with autovacuum as most clusters have it: once
# a minute (pdoflow must not depend on a tuned autovacuum).
say "Running pdoflow-bench pressure (about 15 minutes) with autovacuum_naptime at its default"
psql "${url}" -X -q -v ON_ERROR_STOP=1 -c "ALTER SYSTEM RESET autovacuum_naptime" -c "SELECT pg_reload_conf()" >/dev/null
"${REPO_ROOT}/target/release/pdoflow-bench" --database-url "${url}" pressure | tee -a "${results}"
