#!/usr/bin/env bash
# Installs what building and testing pdoflow needs, skipping whatever is
# already there: Debian packages, cargo-pgrx, and pgrx's PostgreSQL config.
set -euo pipefail
source "$(dirname "$0")/common.sh"

command -v cargo >/dev/null || die "cargo not found: install a Rust toolchain (rustup) first"

packages=("postgresql-${PG_MAJOR}" "postgresql-server-dev-${PG_MAJOR}" libclang-dev clang build-essential sudo)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "${package}" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("${package}")
done
if [ "${#missing[@]}" -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || die "installing ${missing[*]} needs root"
    say "Installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! cargo pgrx --version 2>/dev/null | grep -q " ${PGRX_VERSION}\$"; then
    say "Installing cargo-pgrx ${PGRX_VERSION} (takes several minutes)"
    cargo install cargo-pgrx --version "${PGRX_VERSION}" --locked
fi

pgrx_config="${PGRX_HOME:-${HOME}/.pgrx}/config.toml"
if ! grep -qs "pg${PG_MAJOR} = \"${PG_CONFIG}\"" "${pgrx_config}"; then
    say "Pointing pgrx at PostgreSQL ${PG_MAJOR}"
    cargo pgrx init "--pg${PG_MAJOR}" "${PG_CONFIG}"
fi
