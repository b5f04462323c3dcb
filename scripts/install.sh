#!/usr/bin/env bash
# Builds the extension in release mode and installs it into PostgreSQL's
# directories (cargo only rebuilds what changed).
set -euo pipefail
source "$(dirname "$0")/common.sh"

say "Building and installing the pdoflow extension (release)"
log="${REPO_ROOT}/target/pdoflow-install.log"
mkdir -p "$(dirname "${log}")"
cd "${REPO_ROOT}/pdoflow-ext"
if ! cargo pgrx install --release --pg-config "${PG_CONFIG}" >"${log}" 2>&1; then
    tail -n 40 "${log}" >&2
    die "building or installing the extension failed (full log: ${log})"
fi
grep -E "Finished|Copying shared library" "${log}" | sed 's/\x1b\[[0-9;]*m//g' || true
# The install scripts of earlier versions and the upgrade scripts between
# versions, so that CREATE EXTENSION ... VERSION and ALTER EXTENSION UPDATE work.
cp "${REPO_ROOT}"/sql/versions/pdoflow--*.sql "$("${PG_CONFIG}" --sharedir)/extension/"
