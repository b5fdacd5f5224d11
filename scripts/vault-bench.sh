#!/usr/bin/env bash
# Vault benchmarks; prints the RESULT lines (import of the largest Synthea patient, search over
# 10k records, unlock with the default Argon2id parameters).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target-vault}"
export CAREKEY_FIXTURES="${CAREKEY_FIXTURES:-$PWD/../shared/fixtures}"
cargo bench -p carekey-vault --bench vault "$@"
