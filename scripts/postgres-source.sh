#!/usr/bin/env bash
# Builds a PostgreSQL server that Debian bookworm does not ship (17, 18) from
# Debian's own source package, into a prefix of its own, once per machine.
#
#   postgres-source.sh MAJOR      build PostgreSQL MAJOR unless already built
#
# The source comes from Debian's archive (trixie for 17, sid for 18) through
# a sources list and package lists of its own under ${APT_STATE}, so the
# machine's own apt configuration and packages stay bookworm's. Only the
# upstream tarball inside the source package is used; the build needs nothing
# from those suites. The result, in ${PG_SOURCE_PREFIX}/MAJOR, holds the
# server, pg_config, the headers pgrx binds to, pg_regress, the isolation
# tester, and amcheck (the tests use it). A prefix is trusted only once its
# build finished (the .pdoflow-built marker), so an interrupted build restarts.
set -euo pipefail
source "$(dirname "$0")/common.sh"

major="${1:?usage: postgres-source.sh MAJOR}"
case "${major}" in
17) suite=trixie ;;
18) suite=sid ;;
*) die "PostgreSQL ${major} is not built from source here (15 comes from bookworm's packages)" ;;
esac

prefix="${PG_SOURCE_PREFIX}/${major}"
marker="${prefix}/.pdoflow-built"
[ -f "${marker}" ] && exit 0
[ "$(id -u)" -eq 0 ] || die "building PostgreSQL ${major} into ${prefix} needs root"

build_packages=(bison flex pkg-config libicu-dev libssl-dev zlib1g-dev libreadline-dev curl ca-certificates)
missing=()
for package in "${build_packages[@]}"; do
    dpkg-query -W -f='${Status}' "${package}" 2>/dev/null | grep -q "install ok installed" || missing+=("${package}")
done
if [ "${#missing[@]}" -gt 0 ]; then
    say "Installing build packages for PostgreSQL ${major}: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

APT_STATE="/var/cache/pdoflow-apt-sources"
mkdir -p "${APT_STATE}/lists/partial" "${APT_STATE}/cache/archives/partial"
cat >"${APT_STATE}/sources.list" <<LIST
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian ${suite} main
LIST
apt_options=(-o "Dir::Etc::sourcelist=${APT_STATE}/sources.list" -o "Dir::Etc::sourceparts=/nonexistent"
    -o "Dir::State::Lists=${APT_STATE}/lists" -o "Dir::Cache=${APT_STATE}/cache" -o "APT::Sandbox::User=root")

work="$(mktemp -d "/var/tmp/pdoflow-postgresql-${major}.XXXXXX")"
trap 'rm -rf "${work}"' EXIT
say "Fetching the PostgreSQL ${major} source package from Debian ${suite}"
apt-get "${apt_options[@]}" update -qq
# apt-get source checks the files against the signed index. The index may
# name a version whose files the mirror no longer (or does not yet) serve:
# then take the newest earlier upstream tarball the pool still has, checked
# against the SHA-256 its source package's .dsc gives.
tarball=""
if (cd "${work}" && apt-get "${apt_options[@]}" source --download-only "postgresql-${major}") >"${work}/source.log" 2>&1; then
    tarball="$(find "${work}" -maxdepth 1 -name "postgresql-${major}_*.orig.tar.*" | head -n 1)"
fi
if [ -z "${tarball}" ]; then
    version="$(apt-cache "${apt_options[@]}" showsrc "postgresql-${major}" | sed -n 's/^Version: //p' | head -n 1)"
    upstream="${version%%-*}"
    pool="http://deb.debian.org/debian/pool/main/p/postgresql-${major}"
    minor="${upstream#*.}"
    while [ -z "${tarball}" ] && [ -n "${minor}" ] && [ "${minor}" -ge 0 ] 2>/dev/null; do
        for revision in "-0+deb13u1" "-1" "-2" "-3"; do
            dsc="postgresql-${major}_${major}.${minor}${revision}.dsc"
            curl -fsL -o "${work}/${dsc}" "${pool}/${dsc}" || continue
            file="$(awk '/^Checksums-Sha256:/ {in_sums = 1; next} /^[^ ]/ {in_sums = 0}
                         in_sums && $3 ~ /\.orig\.tar\./ {print $1 "  " $3; exit}' "${work}/${dsc}")"
            [ -n "${file}" ] || continue
            curl -fsL -o "${work}/${file##* }" "${pool}/${file##* }" || continue
            (cd "${work}" && echo "${file}" | sha256sum --check --quiet) \
                || die "${file##* } does not match the SHA-256 of ${dsc}"
            say "PostgreSQL ${version} is not on the mirror; using ${major}.${minor}"
            tarball="${work}/${file##* }"
            break
        done
        minor=$((minor - 1))
    done
fi
[ -n "${tarball}" ] || { tail -n 20 "${work}/source.log" >&2; die "no PostgreSQL ${major} source found in Debian ${suite}"; }
say "Building PostgreSQL ${major} (${tarball##*_}) into ${prefix} (takes several minutes, once)"
tar -xf "${tarball}" -C "${work}"
source_dir="$(find "${work}" -mindepth 1 -maxdepth 1 -type d -name 'postgresql-*' | head -n 1)"
log="/var/tmp/pdoflow-postgresql-${major}-build.log"
jobs="$(nproc)"
rm -rf "${prefix}"
# Run from `make test`, this script inherits MAKELEVEL, and PostgreSQL's
# makefiles build their generated headers only in a top-level make.
unset MAKELEVEL MAKEFLAGS MFLAGS
# Each step only after the one before succeeded (set -e does not apply in
# the condition of an if).
if ! (
    cd "${source_dir}" &&
        ./configure --prefix="${prefix}" --with-openssl --with-icu --with-readline &&
        make -j"${jobs}" &&
        make install &&
        make -C contrib/amcheck install &&
        # pg_regress comes with `make install` (under lib/pgxs); the isolation
        # tester does not: put it where Debian's server-dev package puts it.
        make -C src/test/isolation -j"${jobs}" &&
        isolation="$("${prefix}/bin/pg_config" --pkglibdir)/pgxs/src/test/isolation" &&
        mkdir -p "${isolation}" &&
        cp src/test/isolation/pg_isolation_regress src/test/isolation/isolationtester "${isolation}/"
) >"${log}" 2>&1; then
    tail -n 40 "${log}" >&2
    die "building PostgreSQL ${major} failed (full log: ${log})"
fi
chmod -R a+rX "${prefix}"
touch "${marker}"
say "PostgreSQL ${major} is in ${prefix}"
