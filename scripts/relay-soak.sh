#!/usr/bin/env bash
# Durability soak: SIGKILLs the relay during concurrent uploads ITERS times (default 1000) and
# checks after every restart that each upload answered 2xx is intact and nothing is partial.
#   scripts/relay-soak.sh [ITERS]
# Runs relay/server/tests/process.rs (the same test `cargo test` runs 10 times) against a copy
# of the release binary, so a concurrent rebuild cannot swap it mid-run. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
iters=${1:-1000}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target-relay}
cargo build --release -q -p carekey-relay --bin carekey-relay
cargo test --release -q -p carekey-relay --test process --no-run
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$CARGO_TARGET_DIR/release/carekey-relay" "$work/carekey-relay"
start=$(date +%s)
CAREKEY_RELAY_BIN=$work/carekey-relay CAREKEY_DURABILITY_ITERS=$iters \
  cargo test --release -q -p carekey-relay --test process \
  sigkill_during_uploads_loses_nothing_acknowledged -- --nocapture 2>&1 | tee "$work/soak.log" >&2
grep -E '^durability: [0-9]+ SIGKILL' "$work/soak.log" | sed 's/^/RESULT relay_soak /'
echo "RESULT relay_soak_seconds $(( $(date +%s) - start ))"
