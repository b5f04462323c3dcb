#!/usr/bin/env bash
# The Debian packages, installed as a DBA installs them: builds the
# PostgreSQL 15 extension package and pdoflow-run's (scripts/package.sh),
# installs both with dpkg -i, creates the extension in a fresh cluster that
# preloads it, and has the packaged pdoflow-run work a job end to end. Then
# removes the packages and puts back the development install (make install).
#
# Installing changes the machine's PostgreSQL 15 directories: run it where
# `make test` may run (root, PostgreSQL 15 from bookworm's packages).
set -euo pipefail
source "$(dirname "$0")/common.sh"

[ "${PG_MAJOR}" = 15 ] || die "the package test installs the PostgreSQL 15 package (PG_MAJOR is ${PG_MAJOR})"
port="${PDOFLOW_PACKAGE_TEST_PORT:-54350}"
name=package-test
packages="${REPO_ROOT}/target/packages"

"${REPO_ROOT}/scripts/package.sh" 15
extension_deb="$(ls -t "${packages}"/postgresql-15-pdoflow_*.deb | head -n 1)"
run_deb="$(ls -t "${packages}"/pdoflow-run_*.deb | head -n 1)"

cleanup() {
    "${REPO_ROOT}/scripts/cluster.sh" stop "${name}" || true
    dpkg -r postgresql-15-pdoflow pdoflow-run >/dev/null 2>&1 || true
    "${REPO_ROOT}/scripts/install.sh" >/dev/null
}
trap cleanup EXIT

say "Installing ${extension_deb##*/} and ${run_deb##*/} with dpkg -i"
# A library that a running server has loaded must stay as it is: dpkg
# replaces files by renaming new ones into place, which leaves it alone.
log="${REPO_ROOT}/target/package-test.log"
dpkg -i "${extension_deb}" "${run_deb}" >"${log}" 2>&1 || { cat "${log}" >&2; die "dpkg -i failed"; }
dpkg -L postgresql-15-pdoflow | grep -q '^/usr/lib/postgresql/15/lib/pdoflow.so$' \
    || die "the package did not install pdoflow.so"
control_version="$(sed -n "s/^default_version = '\(.*\)'/\1/p" /usr/share/postgresql/15/extension/pdoflow.control)"
[ -f "/usr/share/postgresql/15/extension/pdoflow--${control_version}.sql" ] \
    || die "the package has no install script for its default version ${control_version}"

say "A fresh cluster with the packaged extension, and a job worked by the packaged pdoflow-run"
"${REPO_ROOT}/scripts/cluster.sh" start "${name}" "${port}" fresh
url="$("${REPO_ROOT}/scripts/cluster.sh" url "${name}" "${port}")"
psql() { "${PG_BIN}/psql" -X -q -At -v ON_ERROR_STOP=1 "${url}" "$@"; }
psql -c "CREATE EXTENSION pdoflow"
[ "$(psql -c "SELECT extversion FROM pg_extension WHERE extname = 'pdoflow'")" = "${control_version}" ] \
    || die "CREATE EXTENSION did not install version ${control_version}"
job="$(psql -c "SELECT pdoflow.enqueue('noop', '{}')")"
/usr/bin/pdoflow-run worker --database-url "${url}" --burst >>"${log}" 2>&1 \
    || { cat "${log}" >&2; die "the packaged pdoflow-run failed"; }
state="$(psql -c "SELECT state FROM pdoflow.jobs WHERE id = '${job}'")"
[ "${state}" = succeeded ] || die "the job ended ${state:-nowhere}, not succeeded"
# The sweeper (from the packaged library) is running in the cluster.
psql -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pdoflow sweeper'" | grep -qx 1 \
    || die "no pdoflow sweeper runs in the cluster"
say "The packages install and work: job ${job} succeeded"
