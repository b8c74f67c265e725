#!/usr/bin/env bash
# Runs N randomised fault rounds (default 100) of tests/tests/e2e/chaos_rounds.rs and prints the
# table: rounds, faults, lost / double-counted / wrong windows, recovery p50 and p99.
# CHAOS_SEED=<seed> replays a run. Needs the setup of scripts/test.sh (the broker binary).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-100}"
cargo build --workspace --bins
CHAOS_ROUNDS="$rounds" cargo test -p kappa-integration-tests --test e2e chaos_rounds:: -- --nocapture
