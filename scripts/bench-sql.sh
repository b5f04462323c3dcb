#!/usr/bin/env bash
# SQL-level throughput of pdoflow next to plain-SQL ceilings on the same
# cluster, measured with pgbench. Prints every figure and how it was run.
#
#   scripts/bench-sql.sh [SECONDS]        (default 10 s per pgbench run)
#
# Then the sweeper's SQL: pdoflow.sweep() taking back 100,000 expired
# claims and deleting 100,000 old finished jobs, 1,000 per transaction.
# Last, pdoflow.submit_dag of 1000-node DAGs (a binary tree, and a fan-out
# and fan-in through 998 middle nodes) and their release: every parent's
# finish settling its children.
#
# Uses a fresh throwaway cluster (.pg/bench, port 54349) with default
# durability: fsync and synchronous_commit stay on.
set -euo pipefail
source "$(dirname "$0")/common.sh"

seconds="${1:-10}"
port="${PDOFLOW_BENCH_PORT:-54349}"
clients=8
url="$("${REPO_ROOT}/scripts/cluster.sh" url bench "${port}")"
sql="${REPO_ROOT}/bench/sql"
q() { psql "${url}" -X -q -t -A -v ON_ERROR_STOP=1 "$@"; }
tps() { grep -oE 'tps = [0-9.]+' | head -1 | cut -d' ' -f3; }
pgbench_run() { "${PG_BIN}/pgbench" "${url}" -n -c "${clients}" -j 2 -T "${seconds}" "$@" 2>&1; }

"${REPO_ROOT}/scripts/cluster.sh" start bench "${port}" fresh
trap '"${REPO_ROOT}/scripts/cluster.sh" stop bench' EXIT
q <<'SQL'
CREATE EXTENSION pdoflow;
-- The plain-SQL ceiling: a queue table without pdoflow's bookkeeping.
CREATE TABLE raw_jobs (
    id bigserial PRIMARY KEY, priority int NOT NULL DEFAULT 0, state text NOT NULL DEFAULT 'queued',
    task text NOT NULL, args jsonb NOT NULL DEFAULT '{}', created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON raw_jobs (priority DESC, id) WHERE state = 'queued';
SQL

echo "pdoflow SQL benchmark: $(nproc) cores, PostgreSQL $(q -c 'SHOW server_version'), ${clients} clients, ${seconds} s per run"
echo "command: scripts/bench-sql.sh ${seconds}"
echo

bulk_ms=()
for run in 1 2 3; do
    bulk_ms+=("$(q -c '\timing on' -c "SELECT count(*) FROM pdoflow.enqueue_many('noop', array_fill('{\"n\": 1}'::jsonb, ARRAY[100000]))" \
        | grep -oE 'Time: [0-9.]+' | cut -d' ' -f2)")
done
raw_bulk_ms="$(q -c '\timing on' -c "INSERT INTO raw_jobs (task, args) SELECT 'noop', '{\"n\": 1}' FROM generate_series(1, 100000)" \
    | grep -oE 'Time: [0-9.]+' | cut -d' ' -f2)"
printf 'bulk enqueue_many, 100000 jobs/statement:  %s ms  (%s jobs/s best)\n' "${bulk_ms[*]}" \
    "$(printf '%s\n' "${bulk_ms[@]}" | sort -n | head -1 | awk '{printf "%.0f", 100000000 / $1}')"
printf 'raw INSERT ... SELECT, 100000 rows:        %s ms  (%s rows/s)\n' "${raw_bulk_ms}" \
    "$(awk -v ms="${raw_bulk_ms}" 'BEGIN {printf "%.0f", 100000000 / ms}')"

echo
echo "claim(10) + finish_many, ${clients} clients, 300000 jobs waiting:"
q -c "VACUUM ANALYZE pdoflow.active_jobs"
printf '  pdoflow:  %s batches/s\n' "$(pgbench_run -f "${sql}/claim_finish_10.sql" | tps)"
q -c "TRUNCATE raw_jobs" -c "INSERT INTO raw_jobs (task) SELECT 'noop' FROM generate_series(1, 300000)" -c "VACUUM ANALYZE raw_jobs"
printf '  raw SKIP LOCKED claim + delete:  %s batches/s\n' "$(pgbench_run -f "${sql}/raw_claim_finish_10.sql" | tps)"

echo
echo "single-row enqueue, one per transaction, ${clients} clients:"
q -c "TRUNCATE pdoflow.active_jobs, pdoflow.finished_jobs, raw_jobs"
printf '  pdoflow.enqueue (with NOTIFY):  %s jobs/s\n' "$(pgbench_run -f "${sql}/enqueue_one.sql" | tps)"
printf '  raw INSERT:                     %s rows/s\n' "$(pgbench_run -f "${sql}/raw_insert_one.sql" | tps)"

echo
echo "sweeping by hand, pdoflow.sweep(1000) once per transaction, 100000 rows to sweep:"
# A database of its own: no background sweeper works there to compete.
q -c "CREATE DATABASE sweep_bench"
sweep_url="$("${REPO_ROOT}/scripts/cluster.sh" url bench "${port}" sweep_bench)"
sq() { psql "${sweep_url}" -X -q -t -A -v ON_ERROR_STOP=1 "$@"; }
# Runs 100 sweeps, one transaction each; prints rows per second for column $1.
timed_sweeps() {
    local start end
    start="$(date +%s.%N)"
    for _ in $(seq 1 100); do echo "SELECT $1 FROM pdoflow.sweep(1000);"; done | sq >/dev/null
    end="$(date +%s.%N)"
    awk -v s="${start}" -v e="${end}" 'BEGIN {printf "%.0f", 100000 / (e - s)}'
}
sq <<'SQL' >/dev/null
SET client_min_messages = warning;
CREATE EXTENSION pdoflow;
SET pdoflow.max_claim = 100000;
SELECT count(*) FROM pdoflow.enqueue_many('abandoned', array_fill('{}'::jsonb, ARRAY[100000]));
SELECT count(*) FROM pdoflow.claim(100000, lease => '1 millisecond');
VACUUM ANALYZE pdoflow.active_jobs;
SQL
printf '  expired claims taken back:  %s jobs/s\n' "$(timed_sweeps expired_requeued)"
[ "$(sq -c "SELECT count(*) FROM pdoflow.active_jobs WHERE state = 'running'")" = 0 ] || die "claims left running"
sq <<'SQL' >/dev/null
SET pdoflow.max_claim = 100000;
SELECT count(*) FROM (SELECT array_agg(id) AS ids, array_agg(attempt) AS attempts
                      FROM pdoflow.claim(100000, lease => '1 hour')) AS batch,
                     pdoflow.finish_many(batch.ids, batch.attempts);
UPDATE pdoflow.finished_jobs SET finished_at = now() - interval '8 days';
VACUUM ANALYZE pdoflow.finished_jobs;
SQL
printf '  old finished jobs deleted:  %s jobs/s\n' "$(timed_sweeps finished_deleted)"
[ "$(sq -c "SELECT count(*) FROM pdoflow.finished_jobs")" = 0 ] || die "finished jobs left"

echo
echo "DAGs: pdoflow.submit_dag of 1000 nodes in one call (psql round trip included), 3 runs each:"
dag_doc() {
    # $1: tree (node i after node (i-1)/2) or fan (one root, 998 middle nodes, one sink)
    if [ "$1" = tree ]; then
        q -c "SELECT jsonb_build_object('nodes', jsonb_agg(
                  jsonb_build_object('name', 'n' || i, 'task', 'noop')
                  || CASE WHEN i > 0 THEN jsonb_build_object('after', jsonb_build_array('n' || (i - 1) / 2)) ELSE '{}' END
                  ORDER BY i))
              FROM generate_series(0, 999) AS i"
    else
        q -c "SELECT jsonb_build_object('nodes',
                  jsonb_build_array(jsonb_build_object('name', 'root', 'task', 'noop'))
                  || jsonb_agg(jsonb_build_object('name', 'm' || i, 'task', 'noop', 'after', jsonb_build_array('root')) ORDER BY i)
                  || jsonb_build_array(jsonb_build_object('name', 'sink', 'task', 'noop',
                                                          'after', jsonb_agg('m' || i ORDER BY i))))
              FROM generate_series(0, 997) AS i"
    fi
}
for shape in tree fan; do
    dag_doc "${shape}" > "${PG_ROOT}/dag-${shape}.json"
    times=()
    for run in 1 2 3; do
        times+=("$(q -c '\timing on' -c "SELECT count(*) FROM pdoflow.submit_dag(\$\$$(cat "${PG_ROOT}/dag-${shape}.json")\$\$)" \
            | grep -oE 'Time: [0-9.]+' | cut -d' ' -f2)")
    done
    printf '  %-4s  %s ms\n' "${shape}" "${times[*]}"
done
# Working one fan DAG through claim and finish_many: 1000 jobs, each finish
# settling its children (the sink's 998 parents count down one by one).
q -c "TRUNCATE pdoflow.active_jobs, pdoflow.finished_jobs" \
  -c "SELECT count(*) FROM pdoflow.submit_dag(\$\$$(cat "${PG_ROOT}/dag-fan.json")\$\$)" >/dev/null
start="$(date +%s.%N)"
for _ in $(seq 1 200); do
    echo "SELECT count(*) FROM (SELECT array_agg(id) AS ids, array_agg(attempt) AS attempts FROM pdoflow.claim(10)) AS b, pdoflow.finish_many(b.ids, b.attempts) WHERE b.ids IS NOT NULL;"
done | q >/dev/null
end="$(date +%s.%N)"
[ "$(q -c "SELECT count(*) FROM pdoflow.finished_jobs WHERE state = 'succeeded'")" = 1000 ] || die "the fan DAG did not finish"
printf '  fan DAG worked by claim(10) + finish_many, one client: %s jobs/s\n' \
    "$(awk -v s="${start}" -v e="${end}" 'BEGIN {printf "%.0f", 1000 / (e - s)}')"
