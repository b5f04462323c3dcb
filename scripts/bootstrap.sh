#!/usr/bin/env bash
# Installs what building and testing pdoflow needs, skipping whatever is
# already there: Debian packages, PostgreSQL ${PG_MAJOR} (bookworm's package
# for 15, built from Debian's source package for 17 and 18:
# scripts/postgres-source.sh), cargo-pgrx, and pgrx's PostgreSQL config.
set -euo pipefail
source "$(dirname "$0")/common.sh"

command -v cargo >/dev/null || die "cargo not found: install a Rust toolchain (rustup) first"

case "${PG_MAJOR}" in
15) packages=(postgresql-15 postgresql-server-dev-15) ;;
17 | 18) packages=() ;;
*) die "PostgreSQL ${PG_MAJOR} is not supported: PG must be 15, 17 or 18" ;;
esac
packages+=(libclang-dev clang build-essential sudo)
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

# The postgres user runs the test clusters; bookworm's server package makes it.
if ! id postgres >/dev/null 2>&1; then
    [ "$(id -u)" -eq 0 ] || die "creating the postgres user needs root"
    say "Creating the postgres user"
    useradd --system --home-dir /var/lib/postgresql --create-home --shell /bin/bash postgres
fi
if [ "${PG_MAJOR}" != 15 ]; then
    "$(dirname "$0")/postgres-source.sh" "${PG_MAJOR}"
fi

if ! cargo pgrx --version 2>/dev/null | grep -q " ${PGRX_VERSION}\$"; then
    say "Installing cargo-pgrx ${PGRX_VERSION} (takes several minutes)"
    cargo install cargo-pgrx --version "${PGRX_VERSION}" --locked
fi

# `cargo pgrx init` rewrites the whole list: name every version built here.
pgrx_config="${PGRX_HOME:-${HOME}/.pgrx}/config.toml"
if ! grep -qs "pg${PG_MAJOR} = \"${PG_CONFIG}\"" "${pgrx_config}"; then
    say "Pointing pgrx at PostgreSQL ${PG_MAJOR}"
    versions=()
    for major in "${PG_MAJORS[@]}"; do
        # 15 is there once its package is; a source build once it finished.
        present="${PG_SOURCE_PREFIX}/${major}/.pdoflow-built"
        [ "${major}" = 15 ] && present="$(pg_bin_of 15)/pg_config"
        if [ -e "${present}" ]; then
            versions+=("--pg${major}" "$(pg_bin_of "${major}")/pg_config")
        fi
    done
    cargo pgrx init "${versions[@]}"
fi
