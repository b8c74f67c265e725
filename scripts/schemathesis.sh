#!/usr/bin/env bash
# Runs schemathesis (PyPI) against the REST API of a `kappa local` with an auth token: every
# route, generated and mutated requests, checked against /api/v1/openapi.json (no 5xx, answers
# match their schemas, requests without the token refused). Usage: scripts/schemathesis.sh [N]
# with N examples per operation (default 30). Needs `cargo build --workspace --bins` first.
set -euo pipefail
cd "$(dirname "$0")/.."
examples="${1:-30}"
venv=.tools/schemathesis
if [ ! -x "$venv/bin/schemathesis" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check schemathesis==4.32.5
fi
work="$(mktemp -d)"
export KAPPA_TOKEN="schemathesis-$RANDOM$RANDOM"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
rpc="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
"${CARGO_TARGET_DIR:-target}/debug/kappa" local --port "$port" --rpc-port "$rpc" --slots 2 \
    --checkpoint-dir "$work/checkpoints" --state-dir "$work/state" --auth-token "$KAPPA_TOKEN" \
    > "$work/kappa.log" 2>&1 &
kappa=$!
trap 'kill $kappa 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/readyz" > /dev/null && break
    sleep 0.1
done
status=0
"$venv/bin/schemathesis" --config-file scripts/schemathesis.toml run \
    "http://127.0.0.1:$port/api/v1/openapi.json" -n "$examples" || status=$?
if [ "$status" -ne 0 ]; then
    echo "--- kappa local log ---"
    tail -50 "$work/kappa.log"
fi
exit "$status"
