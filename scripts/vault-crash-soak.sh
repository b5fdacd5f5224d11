#!/usr/bin/env bash
# Soak the vault's SIGKILL crash-safety test: N kill loops (default 200).
# Usage: scripts/vault-crash-soak.sh [loops]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target-vault}"
CAREKEY_CRASH_LOOPS="${1:-200}" cargo test -p carekey-vault --test crash -- --nocapture
