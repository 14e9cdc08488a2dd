#!/usr/bin/env bash
# bench/instructions.sh: user-space instructions per proxied request of a Ferrox binary,
# counted by callgrind — a number that does not move with the machine's load, unlike CPU time.
# Same upstream and config as bench/proxy.sh (PEER=proxy): a tiny nginx response.
#
# Environment:
#   FERROX_BIN=...   binary (default ${CARGO_TARGET_DIR:-$HOME/.cache/ferrox-target}/release/ferrox)
#   DURATION=10      measured wrk run, seconds (under callgrind: ~1-2 thousand requests/s)
#   CONNS=10         wrk connections
#   TOP=25           functions listed (inclusive and self) from callgrind_annotate
#   KEEP_TMP=1       keep the temp dir (callgrind output, logs)
set -euo pipefail

DURATION=${DURATION:-10}
CONNS=${CONNS:-10}
TOP=${TOP:-25}
KEEP_TMP=${KEEP_TMP:-0}
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CONF_DIR=$SCRIPT_DIR/conf
FERROX_BIN=${FERROX_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/ferrox-target}/release/ferrox}

log() { printf '[instructions] %s\n' "$*" >&2; }
die() { printf '[instructions] ERROR: %s\n' "$*" >&2; exit 1; }

for cmd in valgrind callgrind_control callgrind_annotate wrk nginx curl python3; do
    command -v "$cmd" >/dev/null 2>&1 || die "needs $cmd"
done
[[ -x $FERROX_BIN ]] || die "no ferrox binary at $FERROX_BIN (cargo build --release -p ferrox-host)"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/ferrox-instr.XXXXXX")
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ $KEEP_TMP == 1 ]]; then log "kept $TMP"; else rm -rf -- "$TMP"; fi
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
UPSTREAM_PORT=$(free_port)
PORT=$(free_port)
ADMIN_PORT=$(free_port)
render() {
    sed -e "s|@TMP@|$TMP|g" -e "s|@PORT@|$PORT|g" -e "s|@ADMIN_PORT@|$ADMIN_PORT|g" \
        -e "s|@UPSTREAM_PORT@|$UPSTREAM_PORT|g" "$1" >"$2"
}
wait_url() { # url seconds
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        curl -sf -o /dev/null --max-time 1 "$1" && return 0
        sleep 0.1
    done
    return 1
}

mkdir -p "$TMP/upstream" "$TMP/upstream-tmp"
render "$CONF_DIR/upstream.nginx.conf" "$TMP/upstream.conf"
nginx -p "$TMP/upstream/" -c "$TMP/upstream.conf" -e "$TMP/upstream.error.log" &
PIDS+=($!)
wait_url "http://127.0.0.1:$UPSTREAM_PORT/" 10 || die "upstream nginx did not start"

render "$CONF_DIR/ferrox.yaml" "$TMP/ferrox.yaml"
(cd "$TMP" && FERROX_LOG=warn exec valgrind --tool=callgrind --callgrind-out-file="$TMP/cg.out" \
    "$FERROX_BIN" serve --config "$TMP/ferrox.yaml" --workers 1) >"$TMP/ferrox.log" 2>&1 &
FERROX_PID=$!
PIDS+=("$FERROX_PID")
wait_url "http://127.0.0.1:$ADMIN_PORT/health" 120 || { tail -20 "$TMP/ferrox.log" >&2; die "ferrox did not start"; }
wait_url "http://127.0.0.1:$PORT/" 10 || die "ferrox does not proxy"

log "warm-up"
wrk -t1 -c"$CONNS" -d3s "http://127.0.0.1:$PORT/" >/dev/null
callgrind_control -z "$FERROX_PID" >/dev/null
log "measuring ${DURATION}s, $CONNS connections"
wrk -t1 -c"$CONNS" -d"${DURATION}s" "http://127.0.0.1:$PORT/" >"$TMP/wrk.txt"
callgrind_control -d "$FERROX_PID" >/dev/null
sleep 1
reqs=$(awk '/ requests in / {print $1; exit}' "$TMP/wrk.txt")
errs=$(awk '/Non-2xx|Socket errors/' "$TMP/wrk.txt")
dump=$(ls -t "$TMP"/cg.out* | head -n 1)
ir=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ && !x {gsub(/,/, "", $1); print $1; x = 1}')
[[ -n $reqs && -n $ir ]] || die "could not read the request count or the totals"
[[ -z $errs ]] || log "WARNING: $errs"
callgrind_annotate --inclusive=yes "$dump" 2>/dev/null | sed -n "1,$((TOP + 25))p" >"$TMP/inclusive.txt"
callgrind_annotate "$dump" 2>/dev/null | sed -n "1,$((TOP + 25))p" >"$TMP/self.txt"
# Work done once a second whatever the traffic (the dashboard's ticker) weighs ~50x more per
# request under callgrind's slowed request rate than at full speed; shown apart.
ticker=$(callgrind_annotate --inclusive=yes --threshold=100 "$dump" 2>/dev/null \
    | awk '/stats::spawn_ticker::\{\{closure\}\}/ && !x {gsub(/,/, "", $1); print $1; x = 1}')
ticker=${ticker:-0}
echo "requests: $reqs"
echo "instructions: $ir (of which per-second dashboard ticker: $ticker)"
awk -v i="$ir" -v r="$reqs" 'BEGIN {printf "instructions/request: %.0f\n", i / r}'
awk -v i="$ir" -v t="$ticker" -v r="$reqs" \
    'BEGIN {printf "instructions/request without the ticker: %.0f\n", (i - t) / r}'
if [[ $KEEP_TMP == 1 ]]; then
    echo "callgrind output: $dump; top functions: $TMP/inclusive.txt, $TMP/self.txt"
fi
