#!/usr/bin/env bash
# Property-based tests of the HTTP API with schemathesis: generates requests
# from the OpenAPI document at /v1/openapi.json, valid and invalid, sends
# them to a real `pdoflow-run serve` against a real database, and fails on
# any 5xx or any response the document does not describe (every check).
#
#   scripts/http-api-test.sh [DATABASE_URL]   (default: $PDOFLOW_TEST_DATABASE_URL)
#
# The URL names any database of a server with pdoflow preloaded, as a
# superuser. Makes the database pdoflow_http_fuzz anew, a role
# pdoflow_http_fuzz (member of pdoflow_admin) the requests run as, and a
# venv with schemathesis (tests/schemathesis/requirements.txt) in
# target/schemathesis/venv when missing. PDOFLOW_FUZZ_SECONDS (default 90)
# bounds the fuzzing phase; the examples and coverage phases run in full.
set -euo pipefail
source "$(dirname "$0")/common.sh"

url="${1:-${PDOFLOW_TEST_DATABASE_URL:-}}"
[ -n "${url}" ] || die "usage: $0 DATABASE_URL (or set PDOFLOW_TEST_DATABASE_URL)"
work="${REPO_ROOT}/target/schemathesis"
venv="${work}/venv"
requirements="${REPO_ROOT}/tests/schemathesis/requirements.txt"
python="${PDOFLOW_EXAMPLES_PYTHON:-/usr/bin/python3}"
psql_bin="${PG_BIN}/psql"
[ -x "${psql_bin}" ] || psql_bin="$(command -v psql)" || die "psql not found"
seconds="${PDOFLOW_FUZZ_SECONDS:-90}"
database=pdoflow_http_fuzz
role=pdoflow_http_fuzz
secret="schemathesis-$(date +%s%N)"

# The same URL with another database name.
url_for() { url_with_database "${url}" "$1"; }

"${python}" -c 'import venv, ensurepip' 2>/dev/null || {
    say "Installing python3-venv"
    sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq python3-venv >/dev/null
}
want="$( (cat "${requirements}"; "${python}" --version) | sha256sum | cut -d' ' -f1)"
if [ "$(cat "${venv}/.stamp" 2>/dev/null)" != "${want}" ] || [ ! -x "${venv}/bin/st" ]; then
    say "schemathesis venv in ${venv}"
    rm -rf "${venv}"
    mkdir -p "${work}"
    "${python}" -m venv "${venv}"
    "${venv}/bin/pip" install -q --disable-pip-version-check -r "${requirements}"
    echo "${want}" >"${venv}/.stamp"
fi

say "Building pdoflow-run"
(cd "${REPO_ROOT}" && cargo build --quiet -p pdoflow-client --bin pdoflow-run)
program="${REPO_ROOT}/target/debug/pdoflow-run"

sql "${url}" -c "DROP DATABASE IF EXISTS ${database} WITH (FORCE)" -c "CREATE DATABASE ${database}"
sql "$(url_for "${database}")" -c "CREATE EXTENSION pdoflow" -c "
    DO \$\$ BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${role}') THEN
            CREATE ROLE ${role} NOLOGIN;
        END IF;
    END \$\$;
    GRANT pdoflow_admin TO ${role};"

log="${work}/serve.log"
start_serve "${program}" "$(url_for "${database}")" "${secret}" "${log}" --max-wait 5s
port="${SERVE_PORT}"

token="$("${venv}/bin/python" "${REPO_ROOT}/tests/schemathesis/mint_token.py" "${secret}" "${role}" 7200)"
# Every check but positive_data_acceptance (ST202: "a schema-valid request
# is accepted"). The document spells every rule a single request can be
# checked against (names, ranges, enums, formats, required and unknown
# fields, rules between fields); what remains depends on the database's
# state or on other documents, which JSON Schema cannot say: args that do
# not match the job type's registered JSON Schema, a posting, parent or
# DAG node referenced that does not exist, a dependency that can never be
# met, a cycle in a DAG, a run_at more than 1000 years ahead, a key over
# 1000 bytes. Those are refused with 409 or 422 problems, as documented.
# negative_data_rejection (ST201) still holds the server to the document.
# --max-wait 5s: a claim's wait and a long-poll end within the 10 s
# response time limit (ST112) and --request-timeout. --workers 1: with two
# threads, hypothesis' lambda descriptions (ast.parse) fail at random on
# Python 3.11 ("AST constructor recursion depth mismatch").
say "schemathesis: every operation, every check but positive_data_acceptance (fuzzing for at most ${seconds} s)"
status=0
(cd "${work}" && "${venv}/bin/st" run "http://127.0.0.1:${port}/v1/openapi.json" \
    --header "Authorization: Bearer ${token}" \
    --checks all \
    --exclude-checks positive_data_acceptance \
    --max-examples 50 \
    --max-time "${seconds}" \
    --seed 20261206 \
    --workers 1 \
    --request-timeout 30 \
    --no-color \
    --report junit --report-dir "${work}/report") || status=$?
if [ "${status}" != 0 ]; then
    printf '%s\n' "--- last lines of ${log} ---" >&2
    tail -n 40 "${log}" >&2
    die "schemathesis found responses the OpenAPI document does not allow (report: ${work}/report)"
fi
grep -E ' (ERROR|WARN) ' "${log}" | grep -v 'no token\|token' | head -n 20 || true
say "schemathesis: no 5xx, every response as documented"
