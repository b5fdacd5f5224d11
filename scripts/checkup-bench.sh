#!/usr/bin/env bash
# Check-up and revocation benchmarks through a real release relay on 127.0.0.1; prints the
# RESULT lines (checkup_largest_synthea_s, checkup_100MiB_s, checkup_100MiB_vs_crypto,
# revoke_100MiB_s). CAREKEY_BENCH_RUNS overrides the number of runs per figure (medians);
# CAREKEY_BENCH_ONLY=synthea,100mib,revoke runs a subset. The relay's data directory is a temp
# dir (TMPDIR): on a real disk every audited fetch costs one fsync.
set -euo pipefail
cd "$(dirname "$0")/.."
export CAREKEY_FIXTURES="${CAREKEY_FIXTURES:-$PWD/../shared/fixtures}"
cargo build --release -p carekey-relay
export CAREKEY_RELAY_BIN="${CAREKEY_RELAY_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/carekey-relay}"
cargo bench -p carekey-client --bench checkup "$@"
