#!/usr/bin/env bash
# bench/filters.sh: filter-runtime benchmarks (criterion) and the memory check of 100 routes ×
# 3 filters. See bench/README.md.
#
# Environment:
#   CPU=0                  core to pin the measured runs to (when `taskset` exists; empty: no pinning)
#   BENCH_ARGS="..."       extra arguments for criterion (e.g. "--sample-size 50 chain3")
#   FERROX_BENCH_RUNS=N    chain3 runs timed one by one for p50/p99 (default 20000)
#   ROUTES=100             routes of the memory check (3 filters each)
set -euo pipefail

CPU=${CPU-0}
BENCH_ARGS=${BENCH_ARGS:-}
ROUTES=${ROUTES:-100}
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/ferrox-target}
export CRITERION_HOME=${CRITERION_HOME:-$CARGO_TARGET_DIR/criterion}
RESULTS_DIR=$SCRIPT_DIR/results
STAMP=$(date +%Y-%m-%d-%H%M%S)
OUT=$RESULTS_DIR/filters-$STAMP.txt

log() { printf '[filters-bench] %s\n' "$*" >&2; }
die() { printf '[filters-bench] ERROR: %s\n' "$*" >&2; exit 1; }

command -v cargo >/dev/null || die "cargo not found"
[[ $ROUTES =~ ^[1-9][0-9]*$ ]] || die "ROUTES must be a positive integer (got '$ROUTES')"
PIN=()
if [[ -n $CPU ]] && command -v taskset >/dev/null; then
    PIN=(taskset -c "$CPU")
    log "measured runs pinned to core $CPU"
else
    log "measured runs not pinned (no taskset, or CPU is empty)"
fi

cd "$REPO_ROOT"
mkdir -p "$RESULTS_DIR"

# Build first, on every core; only the measured runs are pinned.
log "building (bench profile, release; the bench guest for wasm32-wasip2)"
cargo build --release --target wasm32-wasip2 --target-dir "$CARGO_TARGET_DIR/wasm-plugins" \
    -p ferrox-guest-bench
cargo bench -p ferrox-bench --bench filters --no-run
cargo build --release -p ferrox-bench --bin filter_rss

log "cargo bench -p ferrox-bench --bench filters (log: $OUT)"
# shellcheck disable=SC2086 # BENCH_ARGS is a list of words on purpose
"${PIN[@]}" cargo bench -p ferrox-bench --bench filters -- $BENCH_ARGS 2>&1 | tee "$OUT"
log "cargo run --release -p ferrox-bench --bin filter_rss -- $ROUTES"
"${PIN[@]}" cargo run --quiet --release -p ferrox-bench --bin filter_rss -- "$ROUTES" 2>&1 |
    tee -a "$OUT"

# ------------------------------------------------------------------ summary --

# Criterion's median (ns) of a benchmark, from its estimates.json.
median_ns() {
    local f=$CRITERION_HOME/$1/new/estimates.json
    [[ -f $f ]] || { echo ""; return; }
    if command -v jq >/dev/null; then
        jq -r '.median.point_estimate' "$f"
    else
        python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["median"]["point_estimate"])' "$f"
    fi
}
# "<value µs> <ok|MISSED>" for a median against a target in µs.
judge() {
    local ns=$1 target_us=$2
    [[ -n $ns ]] || { echo "not run"; return; }
    awk -v ns="$ns" -v t="$target_us" 'BEGIN {
        us = ns / 1000; printf "%.2f µs%s", us, (t == "" ? "" : (us <= t ? "  ok (≤ " t " µs)" : "  MISSED (> " t " µs)")) }'
}

{
    echo
    echo "== summary ($STAMP, $(nproc) cores, pinned: ${PIN[*]:-no}) =="
    echo "one_call/noop                 p50 $(judge "$(median_ns one_call/noop)" 2)"
    echo "one_call/read_header          p50 $(judge "$(median_ns one_call/read_header)" 2)"
    echo "chain3 (req+resp, 6 calls)    p50 $(judge "$(median_ns chain3)" 10)"
    line=$(grep -m1 '^chain3 per-run' "$OUT" || true)
    if [[ -n $line ]]; then
        p99=$(sed -E 's/.* p99 ([0-9.]+) µs .*/\1/' <<<"$line")
        p50=$(sed -E 's/.* p50 ([0-9.]+) µs .*/\1/' <<<"$line")
        verdict=$(awk -v p="$p99" 'BEGIN { print (p <= 50 ? "ok (≤ 50 µs)" : "MISSED (> 50 µs)") }')
        echo "chain3 per-run                p50 $p50 µs, p99 $p99 µs  $verdict"
    fi
    echo "isolation_request/read_header p50 $(judge "$(median_ns isolation_request/read_header)" "")  (reported, no target)"
    grep -E '^(after 2 s idle|pools cost)' "$OUT" | sed 's/^/memory: /' || true
    echo "full log: $OUT"
} | tee -a "$OUT"
