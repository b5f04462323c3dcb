# Shared settings and helpers for pdoflow's scripts. Source it; do not run it.
#
# Every setting can be overridden from the environment.

export PG_MAJOR="${PG_MAJOR:-15}"
# PostgreSQL 15 comes from bookworm's packages; 17 and 18 are built from
# Debian's source packages into prefixes under PG_SOURCE_PREFIX
# (scripts/postgres-source.sh).
PG_SOURCE_PREFIX="${PG_SOURCE_PREFIX:-/opt/pdoflow-postgresql}"
# The versions pdoflow supports, and where each one's programs live.
PG_MAJORS=(15 17 18)
pg_bin_of() {
    if [ "$1" = 15 ]; then echo /usr/lib/postgresql/15/bin; else echo "${PG_SOURCE_PREFIX}/$1/bin"; fi
}
PG_BIN="${PG_BIN:-$(pg_bin_of "${PG_MAJOR}")}"
PG_CONFIG="${PG_CONFIG:-${PG_BIN}/pg_config}"
PGRX_VERSION="0.18.1"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Throwaway clusters live under .pg/ in the repository (ignored by git), or
# where that links to (see ensure_pg_root). Always use the resolved path: the
# postgres user may not be able to pass through the repository's parents.
PG_ROOT="${REPO_ROOT}/.pg"
[ -L "${PG_ROOT}" ] && PG_ROOT="$(readlink -f "${PG_ROOT}")"

export PATH="${HOME}/.cargo/bin:${PATH}"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Runs a command as the postgres user (PostgreSQL refuses to run as root).
# From /, since the postgres user may not be able to enter the current directory.
as_postgres() {
    if [ "$(id -un)" = postgres ]; then "$@"; else (cd / && sudo -u postgres -- "$@"); fi
}

# Makes ${PG_ROOT} usable by the postgres user. When the repository sits where
# postgres cannot enter (say under /root), .pg becomes a link to a private
# directory under /var/tmp instead.
ensure_pg_root() {
    if [ ! -e "${PG_ROOT}" ] && [ ! -L "${PG_ROOT}" ]; then
        if as_postgres test -x "$(dirname "${PG_ROOT}")" 2>/dev/null; then
            mkdir -p "${PG_ROOT}"
        else
            local elsewhere
            elsewhere="/var/tmp/pdoflow-$(printf '%s' "${REPO_ROOT}" | cksum | cut -d' ' -f1)"
            mkdir -p "${elsewhere}"
            ln -s "${elsewhere}" "${PG_ROOT}"
            PG_ROOT="${elsewhere}"
        fi
    fi
    mkdir -p "${PG_ROOT}"
    chown postgres:postgres "${PG_ROOT}"
    as_postgres test -w "${PG_ROOT}/" || die "the postgres user cannot write to ${PG_ROOT}"
}

# The URL $1 with database $2 instead (user, host, port and query kept).
url_with_database() {
    local scheme="${1%%://*}" rest="${1#*://}" query=""
    case "${rest}" in *\?*) query="?${rest#*\?}" rest="${rest%%\?*}" ;; esac
    printf '%s://%s/%s%s' "${scheme}" "${rest%%/*}" "$2" "${query}"
}

# psql for scripts: no psqlrc, quiet, unaligned tuples only, stop at the
# first error, no NOTICEs (psql_bin: the caller's psql).
sql() { PGOPTIONS="-c client_min_messages=warning" "${psql_bin}" -X -q -At -v ON_ERROR_STOP=1 "$@"; }

# Starts `pdoflow-run serve` for a test script: $1 the pdoflow-run binary,
# $2 the database URL, $3 the HS256 secret of its tokens, $4 its log file,
# then serve's own flags. Listens on a free port of 127.0.0.1 (SERVE_PORT),
# returns once /readyz answers 200 (or dies, printing the log), and stops
# the server when the script exits.
start_serve() {
    local program="$1" database_url="$2" secret="$3" log="$4"
    shift 4
    SERVE_PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    say "pdoflow-run serve on 127.0.0.1:${SERVE_PORT}"
    PDOFLOW_JWT_SECRET="${secret}" "${program}" --database-url "${database_url}" \
        serve --listen "127.0.0.1:${SERVE_PORT}" "$@" >"${log}" 2>&1 &
    SERVE_PID=$!
    trap stop_serve EXIT
    local ready=(python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)'
        "http://127.0.0.1:${SERVE_PORT}/readyz")
    for _ in $(seq 100); do
        "${ready[@]}" 2>/dev/null && return 0
        kill -0 "${SERVE_PID}" 2>/dev/null || { cat "${log}" >&2; die "pdoflow-run serve exited"; }
        sleep 0.2
    done
    "${ready[@]}" 2>/dev/null || { cat "${log}" >&2; die "the server never became ready"; }
}

# Stops the server start_serve started (at exit), letting it finish.
stop_serve() {
    if [ -n "${SERVE_PID:-}" ] && kill -0 "${SERVE_PID}" 2>/dev/null; then
        kill -TERM "${SERVE_PID}"
        wait "${SERVE_PID}" 2>/dev/null || true
    fi
}
