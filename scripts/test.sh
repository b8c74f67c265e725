#!/usr/bin/env bash
# Sets up a fresh machine (apt packages, the Tansu broker) and runs every check and test:
# formatting, clippy, unit tests, and the end-to-end tests against a real broker process.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --test
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The end-to-end tests run the kappa and kappactl binaries.
cargo build --workspace --bins
# Deployment files: docker-compose.yml and the Dockerfile parsed and checked against the
# binary's flags; the Helm chart rendered, linted and validated against Kubernetes schemas.
python3 -m pip install --quiet --disable-pip-version-check pyyaml==6.0.3
KAPPA_BIN="$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/debug/kappa"
python3 scripts/check_deploy.py "$KAPPA_BIN"
python3 scripts/check_helm.py --kappa "$KAPPA_BIN"
cargo test --workspace
# The REST API against its OpenAPI document with schemathesis (generated and mutated requests).
./scripts/schemathesis.sh 30
