#!/usr/bin/env bash
# pdoflow against PgQue through the cross-system harness's adapter contract
# (github.com/hardbyte/postgresql-job-queue-benchmarking): Python workers,
# one after the other on one throwaway cluster with PostgreSQL's default
# settings (autovacuum included).
#
#   HARNESS_DIR=... PGQUE_DIR=... scripts/bench-harness.sh [compare.py options]
#
#   HARNESS_DIR  a checkout of the harness (its pgque-bench/main.py is run
#                unchanged)
#   PGQUE_DIR    a checkout of github.com/NikolayS/pgque at the commit the
#                harness pins (its pgque-bench/vendor/pgque submodule)
#
# Options go to pdoflow-bench/harness/compare.py (--phases, --worker-count,
# --producer-mode, ...; see its --help). Needs python3 with venv; psycopg
# comes from PyPI into target/harness-venv. Figures also go to
# target/harness-results.txt.
set -euo pipefail
source "$(dirname "$0")/common.sh"

[ -f "${HARNESS_DIR:-}/pgque-bench/main.py" ] || die "HARNESS_DIR must be a checkout of hardbyte/postgresql-job-queue-benchmarking"
[ -f "${PGQUE_DIR:-}/sql/pgque.sql" ] || die "PGQUE_DIR must be a checkout of NikolayS/pgque"

port="${PDOFLOW_HARNESS_PORT:-54391}"
name=harness
url="$("${REPO_ROOT}/scripts/cluster.sh" url "${name}" "${port}")"
url="${url%/*}"
venv="${REPO_ROOT}/target/harness-venv"
adapter="${REPO_ROOT}/target/harness-pgque"

if [ ! -x "${venv}/bin/python" ]; then
    say "Making ${venv#"${REPO_ROOT}"/} (psycopg from PyPI)"
    python3 -m venv "${venv}"
    "${venv}/bin/pip" install --quiet "psycopg[binary]==3.3.3"
fi
# The PgQue adapter loads vendor/pgque/sql/pgque.sql from beside itself.
rm -rf "${adapter}"
mkdir -p "${adapter}/vendor/pgque/sql"
cp "${HARNESS_DIR}/pgque-bench/main.py" "${adapter}/"
cp -r "${PGQUE_DIR}/sql/." "${adapter}/vendor/pgque/sql/"

say "Starting the cluster ${name} on port ${port} (default settings)"
"${REPO_ROOT}/scripts/cluster.sh" start "${name}" "${port}" fresh
trap '"${REPO_ROOT}/scripts/cluster.sh" stop "${name}"' EXIT
# pdoflow's background sweeper works the benchmark's database.
psql "${url}/postgres" -X -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE pdoflow_bench" \
    -c "ALTER SYSTEM SET pdoflow.database = 'pdoflow_bench'"
"${REPO_ROOT}/scripts/cluster.sh" restart "${name}" "${port}"

say "Running both adapters (see --phases: about 10 minutes each by default)"
"${venv}/bin/python" "${REPO_ROOT}/pdoflow-bench/harness/compare.py" \
    --url "${url}" --pgque-adapter "${adapter}" "$@" | tee "${REPO_ROOT}/target/harness-results.txt"
