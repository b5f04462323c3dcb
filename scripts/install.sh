#!/usr/bin/env bash
# Builds the extension in release mode and installs it into PostgreSQL's
# directories (cargo only rebuilds what changed): the library, the control
# file, the current version's install script (generated from sql/) and the
# upgrade scripts of pdoflow-ext/sql/ (cargo pgrx install copies those).
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
