#!/usr/bin/env bash
# OpenAPI-driven fuzzing of a real relay process (issue 14, "A complete API contract";
# docs/relay.md "Tests"): schemathesis, pinned with hashes in
# scripts/relay-schemathesis.requirements.txt, runs every check it has against the document the
# relay serves at /openapi.json, on 127.0.0.1 only, bounded in examples and time. Any failure
# (a 5xx, a status, content type, header or body the document does not list, a schema-valid
# request refused as malformed, a malformed one accepted, a method answered without 405/Allow)
# fails the script.
#
#   scripts/relay-schemathesis.sh                 builds nothing: uses $CARGO_TARGET_DIR/debug/carekey-relay
#   RELAY_BIN=path scripts/relay-schemathesis.sh  another relay binary
#   ST_MAX_EXAMPLES=N ST_MAX_TIME=S ST_SEED=N     bounds (defaults 30 examples per operation and
#                                                 phase, 90 s in all, a fixed seed so CI runs repeat)
#
# Without network or pip the run is skipped with a message; CAREKEY_REQUIRE_SCHEMATHESIS=1
# (set by .ci/run) makes that a failure.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

target=${CARGO_TARGET_DIR:-$root/target}
case "$target" in /*) ;; *) target=$root/$target ;; esac
relay_bin=${RELAY_BIN:-$target/debug/carekey-relay}
req=$root/scripts/relay-schemathesis.requirements.txt
version=$(sed -n 's/^schemathesis==\([^ ]*\).*/\1/p' "$req")
venv=$target/schemathesis-$version
max_examples=${ST_MAX_EXAMPLES:-30}
max_time=${ST_MAX_TIME:-90}
seed=${ST_SEED:-14}

skip() {
  if [ -n "${CAREKEY_REQUIRE_SCHEMATHESIS:-}" ]; then
    echo "relay-schemathesis: $* (CAREKEY_REQUIRE_SCHEMATHESIS is set: failing)" >&2
    exit 1
  fi
  echo "relay-schemathesis: skipped: $*"
  exit 0
}

[ -x "$relay_bin" ] || skip "no relay binary at $relay_bin (cargo build -p carekey-relay first)"
command -v python3 >/dev/null || skip "python3 not found"

# --- schemathesis in its own venv, every package pinned by version and hash ------------------
if [ ! -x "$venv/bin/schemathesis" ] || ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -qF "$version"; then
  rm -rf "$venv"
  python3 -m venv "$venv" || skip "python3 -m venv failed (Debian: apt-get install python3-venv)"
  if ! "$venv/bin/pip" install --quiet --require-hashes --no-deps -r "$req"; then
    rm -rf "$venv"
    skip "pip install schemathesis==$version failed (no network or no PyPI?)"
  fi
fi

# --- a fresh relay on 127.0.0.1 with a throwaway SQLite directory -----------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/carekey-schemathesis.XXXXXX")
relay_pid=""
cleanup() {
  if [ -n "$relay_pid" ] && kill -0 "$relay_pid" 2>/dev/null; then
    kill -TERM "$relay_pid" 2>/dev/null || true
    wait "$relay_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
# Rate limits stay at their defaults: the run sends far fewer requests than one burst.
NO_COLOR=1 RUST_LOG=warn "$relay_bin" --listen "127.0.0.1:$port" --data "$work/data" \
  >"$work/relay.log" 2>&1 &
relay_pid=$!
# Ready when /healthz answers 200, within 60 s (a first start creates the database with
# synchronous=FULL, which can be slow on a busy disk).
ready=""
deadline=$((SECONDS + 60))
while [ "$SECONDS" -lt "$deadline" ]; do
  if python3 - "$base/healthz" <<'EOF' 2>/dev/null; then
import sys, urllib.request
sys.exit(0 if urllib.request.urlopen(sys.argv[1], timeout=1).status == 200 else 1)
EOF
    ready=1
    break
  fi
  if ! kill -0 "$relay_pid" 2>/dev/null; then
    cat "$work/relay.log" >&2
    echo "relay-schemathesis: the relay exited before it was ready" >&2
    exit 1
  fi
  sleep 0.1
done
if [ -z "$ready" ]; then
  cat "$work/relay.log" >&2
  echo "relay-schemathesis: the relay did not answer /healthz within 60 s" >&2
  exit 1
fi

# --- the run ------------------------------------------------------------------------------------
# --checks all: every check schemathesis has, none excluded. --max-examples bounds each
# operation per phase, --max-time the whole run; --seed makes CI runs repeatable
# (ST_SEED=random for a new one). Reports go to the work directory (deleted afterwards): the
# failures are printed in full.
seed_arg=(--seed "$seed")
[ "$seed" = random ] && seed_arg=()
echo "== schemathesis $version against $base (max $max_examples examples per operation, ${max_time}s)"
set +e
# From the work directory: schemathesis keeps its example database in ./.schemathesis, which
# goes with the run (a fresh one each time, so a run depends on the seed alone).
cd "$work"
"$venv/bin/schemathesis" --config-file "$root/scripts/relay-schemathesis.toml" --no-color \
  run "$base/openapi.json" \
  --checks all \
  --max-examples "$max_examples" \
  --max-time "$max_time" \
  "${seed_arg[@]}" \
  --request-timeout 40 \
  --report-dir "$work/report"
status=$?
set -e

if ! kill -0 "$relay_pid" 2>/dev/null; then
  echo "relay-schemathesis: the relay died during the run; its log:" >&2
  tail -n 50 "$work/relay.log" >&2
  exit 1
fi
# A panic caught by the relay answers 500 (which schemathesis reports) and logs this line.
if grep -q "handler panicked" "$work/relay.log"; then
  echo "relay-schemathesis: a handler panicked during the run" >&2
  status=1
fi
if [ "$status" != 0 ]; then
  echo "relay-schemathesis: FAILED (schemathesis exit $status)" >&2
  exit "$status"
fi
echo "relay-schemathesis: passed"
