#!/usr/bin/env bash
# Installs PL/Proxy (the sharding layer in front of pdoflow's shards,
# docs/scaling.md) into the PostgreSQL that PG_CONFIG names, once per
# machine and version.
#
#   plproxy.sh        (PG_MAJOR / PG_CONFIG as in common.sh)
#
# Built from Debian's own source package (postgresql-plproxy 2.11.0, from
# trixie, fetched through a sources list and package lists of their own under
# ${APT_STATE}, so the machine's apt configuration stays bookworm's): one
# version for PostgreSQL 15, 17 and 18 alike. Bookworm's binary package
# (2.10.0) covers only 15, and 2.10.0 does not load on 17 and 18.
set -euo pipefail
source "$(dirname "$0")/common.sh"

[ -x "${PG_CONFIG}" ] || die "pg_config not found at ${PG_CONFIG}"
libdir="$("${PG_CONFIG}" --pkglibdir)"
sharedir="$("${PG_CONFIG}" --sharedir)"
if [ -f "${libdir}/plproxy.so" ] && ls "${sharedir}"/extension/plproxy--2.11.0.sql >/dev/null 2>&1; then
    exit 0
fi
[ "$(id -u)" -eq 0 ] || die "installing PL/Proxy into ${libdir} needs root"

build_packages=(bison flex make gcc curl ca-certificates)
missing=()
for package in "${build_packages[@]}"; do
    dpkg-query -W -f='${Status}' "${package}" 2>/dev/null | grep -q "install ok installed" || missing+=("${package}")
done
if [ "${#missing[@]}" -gt 0 ]; then
    say "Installing build packages for PL/Proxy: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

APT_STATE="/var/cache/pdoflow-apt-plproxy"
mkdir -p "${APT_STATE}/lists/partial" "${APT_STATE}/cache/archives/partial"
cat >"${APT_STATE}/sources.list" <<LIST
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main
LIST
apt_options=(-o "Dir::Etc::sourcelist=${APT_STATE}/sources.list" -o "Dir::Etc::sourceparts=/nonexistent"
    -o "Dir::State::Lists=${APT_STATE}/lists" -o "Dir::Cache=${APT_STATE}/cache" -o "APT::Sandbox::User=root")
work="$(mktemp -d /var/tmp/pdoflow-plproxy.XXXXXX)"
trap 'rm -rf "${work}"' EXIT
say "Fetching PL/Proxy's source from Debian trixie"
apt-get "${apt_options[@]}" update -qq
# The mirror may no longer serve the source package's .dsc (apt-get source
# then fails) while it still has the upstream tarball: take the tarball,
# checked against the SHA-256 that the signed Sources index gives for it.
read -r sha256 file < <(apt-cache "${apt_options[@]}" showsrc postgresql-plproxy |
    awk '/^Checksums-Sha256:/ {in_sums = 1; next} /^[^ ]/ {in_sums = 0}
         in_sums && $3 ~ /\.orig\.tar\./ {print $1, $3; exit}') ||
    die "the trixie Sources index names no PL/Proxy tarball"
curl -fsSL -o "${work}/${file}" "http://deb.debian.org/debian/pool/main/p/postgresql-plproxy/${file}" ||
    die "cannot download ${file} from Debian's pool"
(cd "${work}" && echo "${sha256}  ${file}" | sha256sum --check --quiet) ||
    die "${file} does not match the SHA-256 of Debian's Sources index"
tarball="${work}/${file}"
tar -xf "${tarball}" -C "${work}"
source_dir="$(find "${work}" -mindepth 1 -maxdepth 1 -type d -name 'plproxy*' | head -n 1)"
[ -n "${source_dir}" ] || die "cannot find PL/Proxy's sources in ${tarball##*/}"
say "Building PL/Proxy (${tarball##*_}) for PostgreSQL ${PG_MAJOR}"
log="/var/tmp/pdoflow-plproxy-${PG_MAJOR}-build.log"
unset MAKELEVEL MAKEFLAGS MFLAGS
if ! (cd "${source_dir}" && make PG_CONFIG="${PG_CONFIG}" && make PG_CONFIG="${PG_CONFIG}" install) >"${log}" 2>&1; then
    tail -n 40 "${log}" >&2
    die "building PL/Proxy failed (full log: ${log})"
fi
say "PL/Proxy is installed for PostgreSQL ${PG_MAJOR}"
