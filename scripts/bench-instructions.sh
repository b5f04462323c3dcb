#!/usr/bin/env bash
# CPU instructions per statement, counted by valgrind's callgrind in a
# single-user backend: repeatable to a fraction of a percent whatever else
# the machine does, where timings on these 2-core machines vary by 10%.
#
#   scripts/bench-instructions.sh [N]        (default 1000 executions each)
#
# Each statement is PREPAREd and EXECUTEd N times in its own run, and once
# in another; the difference divided by N - 1 is what one execution costs
# (startup and the first, planning execution drop out). Statements: a
# single-job pdoflow.enqueue, the same row INSERTed straight into
# pdoflow.active_jobs, and a plain INSERT into the minimal table the
# benchmarks call the raw ceiling. Uses a throwaway cluster (.pg/bench-instructions),
# stopped while callgrind runs PostgreSQL in single-user mode on it.
set -euo pipefail
source "$(dirname "$0")/common.sh"

n="${1:-1000}"
name=bench-instructions
port="${PDOFLOW_BENCH_PORT:-54379}"
command -v valgrind >/dev/null || die "valgrind is needed (apt-get install valgrind)"
work="$(mktemp -d /tmp/pdoflow-instructions.XXXXXX)"
chmod 777 "${work}"  # callgrind runs as postgres and writes its counts here
trap 'rm -rf "${work}"' EXIT

"${REPO_ROOT}/scripts/cluster.sh" start "${name}" "${port}" fresh
"${PG_BIN}/psql" -X -q -v ON_ERROR_STOP=1 "$("${REPO_ROOT}/scripts/cluster.sh" url "${name}" "${port}")" <<'SQL'
CREATE EXTENSION pdoflow;
CREATE TABLE raw_jobs (
    id bigserial PRIMARY KEY, priority int NOT NULL DEFAULT 0, state text NOT NULL DEFAULT 'queued',
    task text NOT NULL, args jsonb NOT NULL DEFAULT '{}', created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON raw_jobs (priority DESC, id) WHERE state = 'queued';
SQL
"${REPO_ROOT}/scripts/cluster.sh" stop "${name}"

# Instructions of one single-user run executing STATEMENT `times` times.
count() {
    local statement="$1" times="$2" input="${work}/input" output="${work}/callgrind.out"
    { echo "PREPARE p AS ${statement}"; for _ in $(seq 1 "${times}"); do echo "EXECUTE p"; done; } >"${input}"
    chmod 644 "${input}"
    as_postgres valgrind --tool=callgrind --callgrind-out-file="${output}" \
        "${PG_BIN}/postgres" --single -D "${PG_ROOT}/${name}" \
        -c pdoflow.notify=off -c synchronous_commit=off postgres <"${input}" >/dev/null 2>"${work}/valgrind.log"
    sed -n 's/.*Collected : //p' "${work}/valgrind.log"
}

echo "instructions per execution, callgrind, PostgreSQL $("${PG_BIN}/postgres" --version | awk '{print $3}'), ${n} executions"
echo "command: scripts/bench-instructions.sh ${n}"
while IFS='|' read -r label statement; do
    once="$(count "${statement}" 1)"
    many="$(count "${statement}" "${n}")"
    printf '  %-40s %8d\n' "${label}" $(( (many - once) / (n - 1) ))
done <<'STATEMENTS'
pdoflow.enqueue (plain job)|SELECT pdoflow.enqueue('noop', '{"n": 1}')
the same row INSERTed into active_jobs|INSERT INTO pdoflow.active_jobs (id, task, queue, priority, max_attempts, args, run_at, created_at, enqueued_by) VALUES (gen_random_uuid(), 'noop', 'default', 0, 5, '{"n": 1}', now(), now(), 'postgres')
raw INSERT (the ceiling's table)|INSERT INTO raw_jobs (task, args) VALUES ('noop', '{"n": 1}')
STATEMENTS
