#!/usr/bin/env bash
# scripts/compose-native.sh: prove examples/deploy/compose.yaml without a container engine.
#
# Reads the compose file (commands, environment, bind mounts, depends_on) and the Dockerfile
# (ENTRYPOINT, ENV) and starts the same processes here: the migration step, both gateways, the
# demo upstream and Prometheus, on the local PostgreSQL (a fresh database, dropped afterwards)
# and Redis (a random key prefix, deleted afterwards). Then it checks the topology and stops
# everything with SIGTERM. See scripts/compose_native.py for what is mapped and checked.
#
# Environment:
#   FERROX_BIN=...   ferrox binary (default: ${CARGO_TARGET_DIR:-$HOME/.cache/ferrox-target}/release/ferrox,
#                    built with `cargo build --release -p ferrox-host` when missing)
#   FERROX_ADMIN_TOKEN, POSTGRES_PASSWORD   as for `docker compose` (interpolated into the file)
#   READY_TIMEOUT=30 seconds a process may take to become ready
#   KEEP_TMP=1       keep logs and rewritten files
# Needs: python3, psql, redis-cli; the local PostgreSQL (127.0.0.1:5432, trust auth) and Redis
# (127.0.0.1:6379); prometheus (Debian package) for the Prometheus check.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=$ROOT/.tools/venv
TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/ferrox-target}

if [[ -z ${FERROX_BIN:-} ]]; then
    FERROX_BIN=$TARGET/release/ferrox
    if [[ ! -x $FERROX_BIN ]]; then
        echo "[compose-native] building $FERROX_BIN"
        (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET cargo build --release -p ferrox-host)
    fi
fi
[[ -x $FERROX_BIN ]] || { echo "[compose-native] FERROX_BIN=$FERROX_BIN is not executable" >&2; exit 1; }
for cmd in psql redis-cli python3; do
    command -v "$cmd" >/dev/null || { echo "[compose-native] $cmd is missing" >&2; exit 1; }
done

if [[ ! -x $VENV/bin/python ]]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/python" -c 'import yaml' 2>/dev/null || "$VENV/bin/pip" install -q PyYAML==6.0.4

export FERROX_BIN
exec "$VENV/bin/python" "$ROOT/scripts/compose_native.py"
