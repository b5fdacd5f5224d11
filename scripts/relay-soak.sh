#!/usr/bin/env bash
# Durability soak: SIGKILLs the relay during concurrent uploads ITERS times (default 1000) and
# checks after every restart that each upload answered 2xx is intact and nothing is partial.
#   scripts/relay-soak.sh [ITERS]
# Uses the same test as `cargo test` (relay/server/tests/process.rs), with more iterations.
# Loopback only; bounded by the iteration count.
set -euo pipefail
cd "$(dirname "$0")/.."
iters=${1:-1000}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target-relay}
start=$(date +%s)
CAREKEY_DURABILITY_ITERS=$iters cargo test -p carekey-relay --test process \
  sigkill_during_uploads_loses_nothing_acknowledged -- --nocapture 2>&1 | tee /dev/stderr |
  grep -E '^durability:' | sed "s/^/RESULT relay_soak /"
echo "RESULT relay_soak_seconds $(( $(date +%s) - start ))"
