#!/usr/bin/env bash
# Starts or stops a throwaway PostgreSQL cluster for the relay test suite.
#   scripts/pg-test-cluster.sh start DIR   -> cluster in DIR/data, listening on 127.0.0.1:55432
#   scripts/pg-test-cluster.sh stop DIR
# Then: export CAREKEY_TEST_PG_URL=postgres://postgres@127.0.0.1:55432/postgres
# Installs Debian's `postgresql` package if the binaries are missing. Runs the server as the
# `postgres` user (DIR is chowned to it). Loopback only.
set -euo pipefail
cmd=${1:-}
dir=${2:-}
port=${CAREKEY_PG_PORT:-55432}
if [[ -z "$cmd" || -z "$dir" ]]; then
  echo "usage: $0 start|stop DIR" >&2
  exit 2
fi
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [[ -z "$bin" || ! -x "$bin/initdb" ]]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql >/dev/null
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi
as_pg() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}
case "$cmd" in
  start)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [[ $(id -u) -eq 0 ]]; then chown postgres:postgres "$dir"; fi
    if [[ ! -f "$dir/data/PG_VERSION" ]]; then
      as_pg "$bin/initdb" -D "$dir/data" -A trust -U postgres >"$dir/initdb.log" 2>&1
    fi
    as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=on" start
    for _ in $(seq 1 50); do
      if as_pg "$bin/pg_isready" -h 127.0.0.1 -p "$port" -q; then
        echo "PostgreSQL ready: postgres://postgres@127.0.0.1:$port/postgres"
        exit 0
      fi
      sleep 0.2
    done
    echo "PostgreSQL did not become ready; see $dir/server.log" >&2
    exit 1
    ;;
  stop)
    dir=$(cd "$dir" && pwd)
    as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w stop || true
    ;;
  *)
    echo "usage: $0 start|stop DIR" >&2
    exit 2
    ;;
esac
