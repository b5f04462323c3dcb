#!/usr/bin/env bash
# make package: Debian packages of pdoflow, in target/packages/.
#
#   postgresql-NN-pdoflow_VERSION-1_ARCH.deb   the extension for PostgreSQL NN
#                                              (15, 17, 18): library, control
#                                              file, install script of the
#                                              current version, upgrade scripts
#   pdoflow-run_VERSION-1_ARCH.deb             the worker and admin command
#
#   scripts/package.sh [MAJOR...]              (default: 15 17 18)
#
# The extension's files come from `cargo pgrx package` (which puts the upgrade
# scripts of pdoflow-ext/sql/ beside the generated install script) and are
# laid out where Debian's PostgreSQL packages look for extensions:
# /usr/lib/postgresql/NN/lib and /usr/share/postgresql/NN/extension. The
# dependencies on shared libraries come from dpkg-shlibdeps; each extension
# package depends on its server package, postgresql-NN.
set -euo pipefail
source "$(dirname "$0")/common.sh"

majors=("${@}")
[ "${#majors[@]}" -gt 0 ] || majors=("${PG_MAJORS[@]}")
out="${REPO_ROOT}/target/packages"
work="${REPO_ROOT}/target/package-build"
arch="$(dpkg --print-architecture)"
maintainer="pdoflow developers <pdoflow@users.noreply.github.com>"
homepage="https://github.com/pdoflow/pdoflow"
mkdir -p "${out}"

# Version of a workspace crate, as cargo sees it ("path+file:///...#pdoflow@0.5.0").
crate_version() {
    local id
    id="$(cd "${REPO_ROOT}" && cargo pkgid -p "$1")" || die "cargo pkgid -p $1 failed"
    echo "${id##*[@#]}"
}

# The Depends line for the ELF files under a package tree: dpkg-shlibdeps
# reads a debian/control of its own, so it runs in a scratch directory.
shared_library_depends() {
    local tree="$1" scratch output
    scratch="$(mktemp -d)"
    mkdir -p "${scratch}/debian"
    printf 'Source: pdoflow\n\nPackage: scratch\nArchitecture: any\n' >"${scratch}/debian/control"
    local files=()
    while IFS= read -r -d '' file; do files+=("${file}"); done \
        < <(find "${tree}" -type f \( -name '*.so' -o -perm -u+x \) -not -path '*/DEBIAN/*' -print0)
    [ "${#files[@]}" -gt 0 ] || die "no binary under ${tree} to find the dependencies of"
    output="$(cd "${scratch}" && dpkg-shlibdeps -O "${files[@]}" 2>"${scratch}/errors")" \
        || { cat "${scratch}/errors" >&2; die "dpkg-shlibdeps failed for ${tree}"; }
    rm -rf "${scratch}"
    output="$(sed -n 's/^shlibs:Depends=//p' <<<"${output}")"
    [ -n "${output}" ] || die "dpkg-shlibdeps found no shared libraries for ${tree}"
    echo "${output}"
}

# Writes DEBIAN/control and DEBIAN/md5sums for a tree and builds its .deb.
build_deb() {
    local tree="$1" name="$2" version="$3" depends="$4" section="$5" description="$6"
    local size
    size="$(du -sk --exclude=DEBIAN "${tree}" | cut -f1)"
    mkdir -p "${tree}/DEBIAN"
    cat >"${tree}/DEBIAN/control" <<CONTROL
Package: ${name}
Version: ${version}
Architecture: ${arch}
Maintainer: ${maintainer}
Installed-Size: ${size}
Depends: ${depends}
Section: ${section}
Priority: optional
Homepage: ${homepage}
Description: ${description}
CONTROL
    (cd "${tree}" && find . -type f -not -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum >DEBIAN/md5sums)
    find "${tree}" -type d -exec chmod 755 {} +
    dpkg-deb --root-owner-group --build "${tree}" "${out}/${name}_${version}_${arch}.deb" >/dev/null
    say "Built ${out#"${REPO_ROOT}"/}/${name}_${version}_${arch}.deb"
}

extension_version="$(crate_version pdoflow)"
for major in "${majors[@]}"; do
    PG_MAJOR="${major}" PG_BIN="" PG_CONFIG="" "${REPO_ROOT}/scripts/bootstrap.sh"
    pg_config="$(pg_bin_of "${major}")/pg_config"
    staged="${work}/pg${major}-staged"
    tree="${work}/postgresql-${major}-pdoflow"
    rm -rf "${staged}" "${tree}"
    say "Packaging the extension for PostgreSQL ${major}"
    log="${work}/pg${major}-package.log"
    mkdir -p "${work}"
    if ! (cd "${REPO_ROOT}/pdoflow-ext" && cargo pgrx package --pg-config "${pg_config}" --out-dir "${staged}") >"${log}" 2>&1; then
        tail -n 40 "${log}" >&2
        die "cargo pgrx package for PostgreSQL ${major} failed (full log: ${log})"
    fi
    # Where this build's server keeps extensions, and where Debian's does.
    libdir="${staged}$("${pg_config}" --pkglibdir)"
    extdir="${staged}$("${pg_config}" --sharedir)/extension"
    [ -f "${libdir}/pdoflow.so" ] && [ -f "${extdir}/pdoflow.control" ] \
        || die "cargo pgrx package left no pdoflow.so or pdoflow.control under ${staged}"
    mkdir -p "${tree}/usr/lib/postgresql/${major}/lib" "${tree}/usr/share/postgresql/${major}/extension" \
        "${tree}/usr/share/doc/postgresql-${major}-pdoflow"
    install -m 644 "${libdir}/pdoflow.so" "${tree}/usr/lib/postgresql/${major}/lib/"
    install -m 644 "${extdir}"/pdoflow.control "${extdir}"/pdoflow--*.sql "${tree}/usr/share/postgresql/${major}/extension/"
    strip --strip-unneeded "${tree}/usr/lib/postgresql/${major}/lib/pdoflow.so"
    install -m 644 "${REPO_ROOT}/README.md" "${tree}/usr/share/doc/postgresql-${major}-pdoflow/"
    depends="postgresql-${major}, $(shared_library_depends "${tree}")"
    build_deb "${tree}" "postgresql-${major}-pdoflow" "${extension_version}-1" "${depends}" database \
        "pdoflow job queue for PostgreSQL ${major}
 A job queue that lives inside PostgreSQL: CREATE EXTENSION pdoflow installs
 the SQL job API (enqueue, claim, finish, postings, dependencies, DAGs),
 roles, and a background sweeper. Add pdoflow to shared_preload_libraries
 for the sweeper and notifications."
done

say "Packaging pdoflow-run"
(cd "${REPO_ROOT}" && cargo build --release --quiet -p pdoflow-client --bin pdoflow-run)
run_version="$(crate_version pdoflow-client)"
tree="${work}/pdoflow-run"
rm -rf "${tree}"
mkdir -p "${tree}/usr/bin" "${tree}/usr/share/doc/pdoflow-run"
install -m 755 "${REPO_ROOT}/target/release/pdoflow-run" "${tree}/usr/bin/"
strip --strip-unneeded "${tree}/usr/bin/pdoflow-run"
install -m 644 "${REPO_ROOT}/docs/pdoflow-run.md" "${tree}/usr/share/doc/pdoflow-run/"
build_deb "${tree}" pdoflow-run "${run_version}-1" "$(shared_library_depends "${tree}")" utils \
    "worker and admin command of the pdoflow job queue
 pdoflow-run works the jobs of a pdoflow database (a worker, or a pool of
 them) and runs its admin commands. The database needs the pdoflow
 extension (postgresql-NN-pdoflow)."
