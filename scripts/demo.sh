#!/usr/bin/env bash
# Sets up a fresh machine and runs `kappa demo`: the reference job on an embedded Kafka,
# printing hourly click counts as each window fires. Extra arguments go to `kappa demo`
# (e.g. --windows 5 to stop after five windows, --port 8082).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build -p kappa -p kappactl
exec ./target/debug/kappa demo "$@"
