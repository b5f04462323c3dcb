#!/usr/bin/env bash
# Runs every test suite; this is what `make test` (and so CI) runs.
#
#   1. Rust unit tests and the #[pg_test] suites  (cargo pgrx test)
#   2. pg_regress: the SQL API as a user sees it   (pgrx-tests/regress)
#   3. isolation specs: concurrent sessions        (pgrx-tests/isolation)
#   4. integration tests driving a real cluster    (tests/; also clusters
#      of their own: a primary and standby for the failover tests, four
#      shards behind PL/Proxy, installed by scripts/plproxy.sh)
#   5. the Python and Node examples                (scripts/examples-test.sh)
#   6. the HTTP API fuzzed from its OpenAPI document with schemathesis
#                                                  (scripts/http-api-test.sh)
#   7. on PostgreSQL 15: the dashboard end to end in headless Chromium
#                                                  (scripts/dashboard-test.sh)
#   8. on PostgreSQL 15: the Debian packages, installed with dpkg -i and
#      used end to end                             (scripts/package-test.sh)
#
# Suites 2-7 run against a fresh throwaway cluster with pdoflow preloaded.
# PG_MAJOR (the Makefile's PG) picks the PostgreSQL version: 15 by default,
# 17 or 18. Each version has a cluster and a port of its own.
# PGRX_TESTS=no (the Makefile's PGRX_TESTS) skips suite 1, which CI runs on
# PostgreSQL 15 only.
set -euo pipefail
source "$(dirname "$0")/common.sh"

port="${PDOFLOW_TEST_PORT:-543${PG_MAJOR}}"
cluster="test-pg${PG_MAJOR}"
results="${REPO_ROOT}/target/test-results/pg${PG_MAJOR}"

"${REPO_ROOT}/scripts/bootstrap.sh"
ensure_pg_root
pgxs_test="$("${PG_CONFIG}" --pkglibdir)/pgxs/src/test"

if [ "${PGRX_TESTS:-yes}" != no ]; then
    say "PostgreSQL ${PG_MAJOR}: Rust unit tests and #[pg_test] suites"
    # cargo pgrx test installs its build with a plain `cp`, which overwrites
    # the installed library in place: any running cluster that has it loaded
    # (a demo cluster's background sweeper, say) would crash on its next call
    # into it. Unlinking first makes the copy a new file and leaves running
    # servers alone.
    rm -f "$("${PG_CONFIG}" --pkglibdir)/pdoflow.so"
    (cd "${REPO_ROOT}/pdoflow-ext" && cargo pgrx test "pg${PG_MAJOR}" --runas postgres --pgdata "${PG_ROOT}/pgrx-test-pg${PG_MAJOR}")
    (cd "${REPO_ROOT}" && cargo test --quiet -p pdoflow-client)
fi

# cargo pgrx test installed its test build; the clusters below need the real one.
"${REPO_ROOT}/scripts/install.sh"
# PL/Proxy, for the sharding test's proxy (tests/tests/sharding.rs).
"${REPO_ROOT}/scripts/plproxy.sh"

say "Starting a fresh PostgreSQL ${PG_MAJOR} test cluster on port ${port}"
"${REPO_ROOT}/scripts/cluster.sh" start "${cluster}" "${port}" fresh
trap '"${REPO_ROOT}/scripts/cluster.sh" stop "${cluster}"' EXIT
# The background sweeper tests need sweepers in databases of their own, and
# sweepers start only with the server: create the databases, list them in
# pdoflow.database and restart. A short interval keeps those tests quick.
swept_databases=(pdoflow_swept_leases pdoflow_swept_notify pdoflow_swept_announce pdoflow_swept_retention pdoflow_swept_lifecycle pdoflow_swept_worker pdoflow_swept_locks pdoflow_swept_compaction pdoflow_swept_schedules pdoflow_swept_schedules_other)
for database in "${swept_databases[@]}"; do
    "${PG_BIN}/psql" -X -q -v ON_ERROR_STOP=1 "$("${REPO_ROOT}/scripts/cluster.sh" url "${cluster}" "${port}")" \
        -c "CREATE DATABASE ${database}"
done
cat <<CONF | as_postgres tee -a "${PG_ROOT}/${cluster}/postgresql.conf" >/dev/null
# --- pdoflow test suites ---
pdoflow.database = 'postgres, $(IFS=,; echo "${swept_databases[*]}" | sed 's/,/, /g')'
pdoflow.sweep_interval = '100ms'
max_worker_processes = 20
# tests/tests/await_result.rs holds 200 connections waiting at once.
max_connections = 300
CONF
"${REPO_ROOT}/scripts/cluster.sh" restart "${cluster}" "${port}"

rm -rf "${results}" && mkdir -p "${results}"
regress_options=(--host=127.0.0.1 "--port=${port}" --user=postgres)

say "pg_regress"
"${pgxs_test}/regress/pg_regress" "${regress_options[@]}" \
    --inputdir="${REPO_ROOT}/pgrx-tests/regress" --outputdir="${results}/regress" \
    --dbname=pdoflow_regress $(cat "${REPO_ROOT}/pgrx-tests/regress/schedule") \
    || { cat "${results}/regress/regression.diffs" 2>/dev/null | head -n 200; die "pg_regress failed"; }

say "Isolation specs"
"${pgxs_test}/isolation/pg_isolation_regress" "${regress_options[@]}" \
    --inputdir="${REPO_ROOT}/pgrx-tests/isolation" --outputdir="${results}/isolation" \
    --dbname=pdoflow_isolation $(cat "${REPO_ROOT}/pgrx-tests/isolation/schedule") \
    || { cat "${results}/isolation/regression.diffs" 2>/dev/null | head -n 200; die "isolation specs failed"; }

say "Integration tests"
# The tests find the server's programs (initdb, pg_dump, pg_config) in
# PDOFLOW_TEST_PG_BIN, and the cluster to restart by its name.
PDOFLOW_TEST_DATABASE_URL="$("${REPO_ROOT}/scripts/cluster.sh" url "${cluster}" "${port}")" \
    PDOFLOW_TEST_PG_BIN="${PG_BIN}" PDOFLOW_TEST_CLUSTER="${cluster}" \
    cargo test --quiet -p pdoflow-tests -- --test-threads=4

say "Python and Node examples"
"${REPO_ROOT}/scripts/examples-test.sh" "$("${REPO_ROOT}/scripts/cluster.sh" url "${cluster}" "${port}")"

say "HTTP API: schemathesis against /v1/openapi.json"
"${REPO_ROOT}/scripts/http-api-test.sh" "$("${REPO_ROOT}/scripts/cluster.sh" url "${cluster}" "${port}")"

if [ "${PG_MAJOR}" = 15 ]; then
    say "Dashboard: end-to-end tests in headless Chromium"
    "${REPO_ROOT}/scripts/dashboard-test.sh" "$("${REPO_ROOT}/scripts/cluster.sh" url "${cluster}" "${port}")"

    say "Debian packages"
    "${REPO_ROOT}/scripts/package-test.sh"
fi

say "All test suites passed on PostgreSQL ${PG_MAJOR}"
