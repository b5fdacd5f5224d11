#!/usr/bin/env bash
# Load comparison on loopback: 4 KiB blob GETs with a valid token (64 connections, wrk) against
# the release relay and against nginx serving a static 4 KiB file; then 64 KiB PUT throughput
# and the relay's peak RSS; then 100 slow clients reading a 64 MiB blob at once from a fresh
# relay, whose peak RSS (VmHWM) is `RESULT relay_slow_readers_rss_mb` (docs/relay.md
# "Streaming"). Final line: `RESULT relay_vs_nginx_get4k <ratio>`.
#   scripts/relay-load.sh [SECONDS]   (default 10 per run)
# Environment: SLOW_ONLY=1 runs only the slow-reader run; BASELINE_RELAY=PATH also runs it
# against another relay binary (e.g. one built from an older commit) and prints
# `RESULT relay_slow_readers_rss_mb_baseline`; SLOW_CLIENTS (100), SLOW_SECS (40), SLOW_MIB (64).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target-relay}
if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq wrk nginx-light >/dev/null
fi
cargo build --release -q -p carekey-relay --bin carekey-relay --example relay_load
bin=$CARGO_TARGET_DIR/release
work=$(mktemp -d)
relay_port=18471
nginx_port=18472
slow_port=18473
origin=http://127.0.0.1:$relay_port
cleanup() {
  [[ -n ${relay_pid:-} ]] && kill "$relay_pid" 2>/dev/null || true
  [[ -f $work/slow.pid ]] && kill "$(cat "$work/slow.pid")" 2>/dev/null || true
  [[ -f $work/nginx.pid ]] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Slow readers: a fresh relay (binary $1), SLOW_CLIENTS connections reading one SLOW_MIB blob
# at 1 MiB/s each for SLOW_SECS; prints the relay's peak RSS in MiB.
slow_run() {
  local relay=$1 port=$2 data=$work/slow-data-$2 o=http://127.0.0.1:$2 rss
  RUST_LOG=warn "$relay" --listen 127.0.0.1:$port --origin "$o" --data "$data" \
    --ip-rate 1e9 --ip-burst 1e9 --token-rate 1e9 --token-burst 1e9 --concurrency 1024 2>"$work/slow.log" &
  slow_pid=$!
  echo "$slow_pid" >"$work/slow.pid"
  for _ in $(seq 1 100); do curl -fsS "$o/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  if ! kill -0 "$slow_pid" 2>/dev/null; then
    echo "slow readers: the relay did not start" >&2
    cat "$work/slow.log" >&2
    return 1
  fi
  "$bin/examples/relay_load" slow "$o" 127.0.0.1:$port "${SLOW_CLIENTS:-100}" "${SLOW_SECS:-40}" \
    "${SLOW_MIB:-64}" >"$work/slow.txt"
  cat "$work/slow.txt" >&2
  rss=$(awk '/VmHWM/ {printf "%.1f\n", $2 / 1024}' "/proc/$slow_pid/status")
  kill "$slow_pid" && wait "$slow_pid" 2>/dev/null || true
  rm -f "$work/slow.pid"
  rm -rf "$data"
  if ! grep -q "SLOW_CLIENTS_OK=${SLOW_CLIENTS:-100}$" "$work/slow.txt"; then
    echo "slow readers: not every client got 200" >&2
    return 1
  fi
  echo "$rss"
}
if [[ -n ${BASELINE_RELAY:-} ]]; then
  base_rss=$(slow_run "$BASELINE_RELAY" $((slow_port + 1)))
  echo "RESULT relay_slow_readers_rss_mb_baseline $base_rss"
fi
slow_rss=$(slow_run "$bin/carekey-relay" $slow_port)
echo "RESULT relay_slow_readers_rss_mb $slow_rss"
[[ -n ${SLOW_ONLY:-} ]] && exit 0

RUST_LOG=warn "$bin/carekey-relay" --listen 127.0.0.1:$relay_port --origin "$origin" --data "$work/data" \
  --ip-rate 1e9 --ip-burst 1e9 --token-rate 1e9 --token-burst 1e9 --concurrency 1024 2>"$work/relay.log" &
relay_pid=$!
for _ in $(seq 1 100); do curl -fsS "$origin/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
"$bin/examples/relay_load" seed "$origin" 127.0.0.1:$relay_port "$work/seed.env"
. "$work/seed.env"

# nginx: loopback only, static 4 KiB file.
mkdir -p "$work/www"
chmod 755 "$work" "$work/www"
head -c 4096 /dev/zero | tr '\0' 'Z' >"$work/www/blob"
cat >"$work/nginx.conf" <<CONF
worker_processes 2;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/tmp; proxy_temp_path $work/tmp; fastcgi_temp_path $work/tmp;
  uwsgi_temp_path $work/tmp; scgi_temp_path $work/tmp;
  server { listen 127.0.0.1:$nginx_port; root $work/www; }
}
CONF
mkdir -p "$work/tmp"
nginx -c "$work/nginx.conf"

# Only 2xx answers count: a run with any error answer fails the script.
run_wrk() {
  local out=$1
  shift
  wrk -t2 -c64 -d"${secs}s" "$@" >"$out"
  cat "$out" >&2
  if grep -q "Non-2xx" "$out"; then
    echo "error answers during $*" >&2
    exit 1
  fi
  awk '/Requests\/sec/ {print $2}' "$out"
}
relay_rps=$(run_wrk "$work/wrk-relay.txt" -H "Authorization: Bearer $TOKEN" -H "Carekey-Receipt: $RECEIPT" \
  "$origin$BLOB_PATH")
nginx_rps=$(run_wrk "$work/wrk-nginx.txt" "http://127.0.0.1:$nginx_port/blob")
# Informational: the same 4 KiB blobs through the batch fetch (one receipt and one audit entry
# per 64 blobs, relay-formats.md "Batch fetch"), as a doctor's client fetches small records.
cat >"$work/batch.lua" <<LUA
local f = assert(io.open("$BATCH_RECEIPT_FILE", "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Authorization"] = "Bearer $TOKEN"
wrk.headers["Content-Type"] = "application/octet-stream"
LUA
batch_rps=$(run_wrk "$work/wrk-batch.txt" -s "$work/batch.lua" "$origin$BATCH_PATH")
"$bin/examples/relay_load" put "$origin" 127.0.0.1:$relay_port 16 "$secs"
rss=$(awk '/VmHWM/ {print $2, $3}' "/proc/$relay_pid/status")
awk -v r="$batch_rps" -v b="$BATCH_BLOBS" -v n="$nginx_rps" 'BEGIN {
  printf "info: batch fetch %d x 4 KiB: %.0f requests/s = %.0f blobs/s = %.3f x nginx GETs\n", b, r, r * b, r * b / n }'
echo "RESULT relay_get4k_rps $relay_rps"
echo "RESULT nginx_get4k_rps $nginx_rps"
echo "RESULT relay_peak_rss $rss"
awk -v r="$relay_rps" -v n="$nginx_rps" 'BEGIN { printf "RESULT relay_vs_nginx_get4k %.3f\n", r / n }'
