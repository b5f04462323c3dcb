#!/usr/bin/env bash
# End-to-end tests of the dashboard (`pdoflow-run serve`, /dashboard/) in
# headless Chromium: tests/dashboard/e2e.mjs, run by node's test runner with
# playwright-core driving Debian's /usr/bin/chromium.
#
#   scripts/dashboard-test.sh [DATABASE_URL]   (default: $PDOFLOW_TEST_DATABASE_URL)
#
# The URL names any database of a server with pdoflow preloaded, as a
# superuser. Makes the database pdoflow_dashboard_e2e anew, and the roles
# pdoflow_e2e_admin (member of pdoflow_admin) and pdoflow_e2e_producer
# (member of pdoflow_producer) when missing; starts a debug pdoflow-run
# serve against it on a free port (log: target/dashboard-e2e/serve.log),
# signs a token for each role, and runs the scenarios: signing in, live
# updates, filters, job, posting and queue actions, a producer refused, the
# JSON API, keyboard and phone layouts. Screenshots of every page go to
# docs/screenshots/; a failing scenario photographs its pages into
# target/dashboard-e2e/failures/.
#
# Installs what is missing first, and only that: chromium (and nodejs, npm)
# with apt-get, tests/dashboard/node_modules with npm ci (again when
# package-lock.json or node changed).
set -euo pipefail
source "$(dirname "$0")/common.sh"

url="${1:-${PDOFLOW_TEST_DATABASE_URL:-}}"
[ -n "${url}" ] || die "usage: $0 DATABASE_URL (or set PDOFLOW_TEST_DATABASE_URL)"
case "${url}" in
postgres://* | postgresql://*) ;;
*) die "expected a postgresql:// URL, got: ${url}" ;;
esac
started=${SECONDS}
work="${REPO_ROOT}/target/dashboard-e2e"
tests="${REPO_ROOT}/tests/dashboard"
screenshots="${REPO_ROOT}/docs/screenshots"
chromium=/usr/bin/chromium
psql_bin="${PG_BIN}/psql"
[ -x "${psql_bin}" ] || psql_bin="$(command -v psql)" || die "psql not found"
database=pdoflow_dashboard_e2e
admin_role=pdoflow_e2e_admin
producer_role=pdoflow_e2e_producer
secret="dashboard-e2e-$(date +%s%N)-${RANDOM}"

# The same URL with another database name.
url_for() { url_with_database "${url}" "$1"; }

# ---- What the tests need, installed only when missing ----

missing=()
[ -x "${chromium}" ] || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ "${#missing[@]}" -gt 0 ]; then
    say "Installing ${missing[*]}"
    sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "${node_major}" -ge 20 ] || die "playwright-core needs Node.js 20 or later; $(command -v node) is $(node --version)"

# node_modules anew when package-lock.json or node changed (a stamp file).
want="$( (cat "${tests}/package-lock.json"; node --version) | sha256sum | cut -d' ' -f1)"
if [ "$(cat "${tests}/node_modules/.stamp" 2>/dev/null)" != "${want}" ]; then
    say "npm ci in tests/dashboard"
    (cd "${tests}" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    echo "${want}" >"${tests}/node_modules/.stamp"
fi

say "Building pdoflow-run"
(cd "${REPO_ROOT}" && cargo build --quiet -p pdoflow-client --bin pdoflow-run)
program="${REPO_ROOT}/target/debug/pdoflow-run"

say "Database ${database}, roles ${admin_role} and ${producer_role}"
sql "${url}" -c "DROP DATABASE IF EXISTS ${database} WITH (FORCE)" -c "CREATE DATABASE ${database}"
e2e_url="$(url_for "${database}")"
sql "${e2e_url}" -c "CREATE EXTENSION pdoflow" -c "
    DO \$\$ BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${admin_role}') THEN
            CREATE ROLE ${admin_role} NOLOGIN;
        END IF;
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${producer_role}') THEN
            CREATE ROLE ${producer_role} NOLOGIN;
        END IF;
    END \$\$;
    GRANT pdoflow_admin TO ${admin_role};
    GRANT pdoflow_producer TO ${producer_role};"

mkdir -p "${work}"
rm -rf "${work}/failures"
log="${work}/serve.log"
start_serve "${program}" "${e2e_url}" "${secret}" "${log}"
base="http://127.0.0.1:${SERVE_PORT}"

# An HS256 JWT for a role, valid for two hours (node's crypto, no package).
mint() {
    node -e '
        const crypto = require("crypto");
        const [secret, role] = process.argv.slice(1);
        const part = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
        const signed = part({ alg: "HS256", typ: "JWT" }) + "." + part({ role, exp: Math.floor(Date.now() / 1000) + 7200 });
        console.log(signed + "." + crypto.createHmac("sha256", secret).update(signed).digest("base64url"));
    ' "${secret}" "$1"
}

say "Dashboard scenarios in headless Chromium ($("${chromium}" --version 2>/dev/null | head -n 1))"
mkdir -p "${screenshots}"
status=0
(cd "${tests}" && \
    DASHBOARD_URL="${base}" \
    ADMIN_TOKEN="$(mint "${admin_role}")" ADMIN_ROLE="${admin_role}" \
    PRODUCER_TOKEN="$(mint "${producer_role}")" PRODUCER_ROLE="${producer_role}" \
    DATABASE_URL="${e2e_url}" PSQL="${psql_bin}" CHROMIUM="${chromium}" \
    SCREENSHOT_DIR="${screenshots}" FAILURE_DIR="${work}/failures" \
    node --test --test-reporter=spec e2e.mjs) || status=$?
if [ "${status}" != 0 ]; then
    printf '%s\n' "--- last lines of ${log} ---" >&2
    tail -n 60 "${log}" >&2
    [ -d "${work}/failures" ] && printf 'screenshots of the failing pages: %s\n' "${work}/failures" >&2
    die "dashboard end-to-end tests failed"
fi
say "Dashboard: every scenario passed in $((SECONDS - started)) s; screenshots in docs/screenshots/"
