#!/usr/bin/env bash
# Throwaway PostgreSQL clusters for the demo and the tests, owned by the
# postgres user, listening on 127.0.0.1 only, with pdoflow preloaded.
#
#   cluster.sh start NAME PORT [fresh]   start .pg/NAME (initdb first if needed;
#                                        "fresh" wipes an existing one)
#   cluster.sh restart NAME PORT         stop it if running, then start it
#   cluster.sh stop NAME                 stop it (no-op if not running)
#   cluster.sh url NAME PORT [DB]        print its connection string
set -euo pipefail
source "$(dirname "$0")/common.sh"

command="${1:?usage: cluster.sh start|restart|stop|url NAME [PORT] [fresh|DB]}"
name="${2:?cluster name required}"
datadir="${PG_ROOT}/${name}"

running() { [ -f "${datadir}/postmaster.pid" ] && as_postgres "${PG_BIN}/pg_ctl" -D "${datadir}" status >/dev/null 2>&1; }

case "${command}" in
start)
    port="${3:?port required}"
    ensure_pg_root
    if [ "${4:-}" = fresh ] && [ -d "${datadir}" ]; then
        running && as_postgres "${PG_BIN}/pg_ctl" -D "${datadir}" -m immediate stop >/dev/null
        rm -rf "${datadir}"
    fi
    if [ ! -f "${datadir}/PG_VERSION" ]; then
        as_postgres "${PG_BIN}/initdb" -D "${datadir}" -U postgres --auth=trust \
            -E UTF8 --locale=C.UTF-8 >/dev/null
        cat <<CONF | as_postgres tee -a "${datadir}/postgresql.conf" >/dev/null
# --- pdoflow throwaway cluster (the port is given at each start) ---
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
shared_preload_libraries = 'pdoflow'
max_connections = 200
log_line_prefix = '%m [%p] %q%a '
CONF
    fi
    # Keep the kernel from handing out this repository's cluster ports
    # (54300-54399) as the local ports of client connections: one such
    # connection that lives on (a worker of the previous suite, say) kept a
    # port busy past the retries below. Best effort: a container may not
    # let us write it.
    reserved=/proc/sys/net/ipv4/ip_local_reserved_ports
    if [ -w "${reserved}" ] && ! grep -q '54300-54399' "${reserved}" 2>/dev/null; then
        current="$(cat "${reserved}" 2>/dev/null || true)"
        echo "${current:+${current},}54300-54399" > "${reserved}" 2>/dev/null || true
    fi
    if running; then
        say "Cluster ${name} is already running"
    else
        # The port lies in Linux's ephemeral range: a client connection of
        # the suite that just ended may still hold it as its local port for a
        # few seconds. Wait for it rather than fail.
        for attempt in $(seq 1 15); do
            if as_postgres "${PG_BIN}/pg_ctl" -D "${datadir}" -l "${datadir}/server.log" -o "-p ${port}" -w -t 60 start >/dev/null; then
                break
            fi
            if [ "${attempt}" -lt 15 ] && tail -n 5 "${datadir}/server.log" | grep -q "Address already in use"; then
                sleep 2
                continue
            fi
            tail -n 20 "${datadir}/server.log" >&2
            die "cluster ${name} did not start"
        done
    fi
    ;;
restart)
    "$0" stop "${name}"
    "$0" start "${name}" "${3:?port required}"
    ;;
stop)
    if running; then
        as_postgres "${PG_BIN}/pg_ctl" -D "${datadir}" -m fast -w stop >/dev/null
    fi
    ;;
url)
    echo "postgresql://postgres@127.0.0.1:${3:?port required}/${4:-postgres}"
    ;;
*)
    die "unknown command ${command}"
    ;;
esac
