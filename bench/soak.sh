#!/usr/bin/env bash
# bench/soak.sh [duration]: a long run of the release gateway with filters on, at about half of
# its peak throughput, watching for leaks. See bench/README.md ("Soak").
#
# Setup: the filters benchmark's Ferrox side (bench/conf/ferrox-filters.yaml: key-auth, a
# Redis-backed rate limit with a limit never reached, transform adding a response header) in
# front of the nginx upstream of bench/proxy.sh (bench/conf/upstream.nginx.conf); ferrox on one
# core, nginx and wrk on the other, as in bench/proxy.sh. Access logs are off (`--log warn`):
# at thousands of requests a second they would fill the disk, not test the gateway.
#
# 1. Peak: wrk -c50 for PEAK_SECS (10 s) as fast as it goes.
# 2. Soak: DURATION at RATE = peak × RATIO (0.5). Debian's wrk has no rate option, so each of
#    C connections waits DELAY_MS (50 ms) between requests (a wrk Lua `delay()`), with
#    C = RATE × DELAY_MS / 1000: the offered rate is at most RATE, a little less by the time a
#    response takes. "Half of peak" is that: half the measured peak, as offered load.
# 3. Every SAMPLE_S (10 s): VmRSS (/proc/PID/status) and open fds (/proc/PID/fd) of ferrox into
#    a CSV (bench/results/soak-<date>-<time>.csv: seconds,rss_kib,fds).
# 4. Report: RSS and fds at the first sample after WARMUP_S (60 s) and at the last, their growth,
#    and errors (wrk's non-2xx responses + socket errors). Exit 1 if RSS or fd growth is 5 % or
#    more, or there is any error.
#
# Arguments and environment:
#   duration        wrk syntax (30m, 90s, 1h) or seconds; default 30m
#   RATIO=0.5       fraction of the peak to offer
#   RATE=...        offered req/s (skips the peak measurement)
#   PEAK_SECS=10    length of the peak measurement
#   DELAY_MS=50     pause of each connection between requests
#   WARMUP_S=60     samples before this are not compared
#   SAMPLE_S=10     sampling interval
#   MAX_GROWTH=5    growth limit in percent (RSS and fds)
#   NICE=10         nice level of ferrox, nginx and wrk (0 for a dedicated machine)
#   FERROX_BIN, FERROX_BUILD, BUILD_TIMEOUT, PROXY_CPU=0, LOAD_CPU=1, KEEP_TMP: as bench/proxy.sh
set -euo pipefail

DURATION=${1:-${DURATION:-30m}}
RATIO=${RATIO:-0.5}
RATE=${RATE:-}
PEAK_SECS=${PEAK_SECS:-10}
DELAY_MS=${DELAY_MS:-50}
WARMUP_S=${WARMUP_S:-60}
SAMPLE_S=${SAMPLE_S:-10}
MAX_GROWTH=${MAX_GROWTH:-5}
NICE=${NICE:-10}
FERROX_BUILD=${FERROX_BUILD:-0}
BUILD_TIMEOUT=${BUILD_TIMEOUT:-3600}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
KEEP_TMP=${KEEP_TMP:-0}

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
CONF_DIR=$SCRIPT_DIR/conf
RESULTS_DIR=$SCRIPT_DIR/results
PREFIX="ferrox-soak:$$:$RANDOM:"

log() { printf '[soak] %s\n' "$*" >&2; }
die() { printf '[soak] ERROR: %s\n' "$*" >&2; exit 2; }

dur_to_s() {
    local d=$1 n mult=1
    case "$d" in
        *s) n=${d%s} ;;
        *m) n=${d%m}; mult=60 ;;
        *h) n=${d%h}; mult=3600 ;;
        *) n=$d ;;
    esac
    [[ $n =~ ^[0-9]+$ ]] || die "bad duration '$d' (use e.g. 30m, 90s, 1h, or seconds)"
    echo $((n * mult))
}
DURATION_S=$(dur_to_s "$DURATION")
((DURATION_S > WARMUP_S + SAMPLE_S)) \
    || die "duration ${DURATION_S}s must be longer than WARMUP_S + SAMPLE_S ($((WARMUP_S + SAMPLE_S))s)"

# ------------------------------------------------------------- dependencies --

NGINX=$(command -v nginx 2>/dev/null || true)
[[ -n $NGINX ]] || { [[ -x /usr/sbin/nginx ]] && NGINX=/usr/sbin/nginx; } || true
missing=()
[[ -n $NGINX ]] || missing+=(nginx)
declare -A pkg_of=([wrk]=wrk [curl]=curl [taskset]=util-linux [redis-cli]=redis-tools [python3]=python3)
for cmd in wrk curl taskset redis-cli python3; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${pkg_of[$cmd]}")
done
if ((${#missing[@]})); then
    ((EUID == 0)) || die "missing packages: ${missing[*]}; run as root or: sudo apt-get install -y ${missing[*]}"
    log "installing Debian packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
    NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)
fi
[[ $(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null) == PONG ]] \
    || die "the soak needs Redis at 127.0.0.1:6379 (the rate limit's state)"

if [[ -z ${FERROX_BIN:-} ]]; then
    target_dir=${CARGO_TARGET_DIR:-$HOME/.cache/ferrox-target}
    FERROX_BIN=$target_dir/release/ferrox
    if [[ ! -x $FERROX_BIN || $FERROX_BUILD == 1 ]]; then
        log "building: (cd $REPO_ROOT && CARGO_TARGET_DIR=$target_dir cargo build --release -p ferrox-host)"
        (cd "$REPO_ROOT" && CARGO_TARGET_DIR=$target_dir \
            timeout "$BUILD_TIMEOUT" cargo build --release -p ferrox-host) \
            || die "cargo build --release -p ferrox-host failed"
    fi
fi
[[ -x $FERROX_BIN ]] || die "no ferrox binary at $FERROX_BIN"

# ---------------------------------------------------------------- processes --

TMP=$(mktemp -d "${TMPDIR:-/tmp}/ferrox-soak.XXXXXX")
STARTED_PIDS=()
kill_tree() { # pid: its children first (wrk runs under a subshell and `timeout`), then it
    local c
    for c in $(pgrep -P "$1" || true); do kill_tree "$c"; done
    kill -TERM "$1" 2>/dev/null || true
}
cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${STARTED_PIDS[@]}"; do kill_tree "$pid"; done
    wait 2>/dev/null || true
    redis-cli -h 127.0.0.1 -p 6379 --scan --pattern "$PREFIX*" 2>/dev/null \
        | xargs -r redis-cli -h 127.0.0.1 -p 6379 del >/dev/null 2>&1 || true
    if [[ $KEEP_TMP == 1 ]]; then log "temp dir kept: $TMP"; else rm -rf -- "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
UPSTREAM_PORT=$(free_port)
PORT=$(free_port)
ADMIN_PORT=$(free_port)
render() {
    sed -e "s|@TMP@|$TMP|g" -e "s|@PORT@|$PORT|g" -e "s|@ADMIN_PORT@|$ADMIN_PORT|g" \
        -e "s|@UPSTREAM_PORT@|$UPSTREAM_PORT|g" -e "s|@PREFIX@|$PREFIX|g" "$1" >"$2"
}
wait_http() { # url [curl args...]: poll for 2xx within 30 s
    local url=$1 i
    shift
    for ((i = 0; i < 300; i++)); do
        curl -sf -o /dev/null --max-time 1 "$@" "$url" && return 0
        sleep 0.1
    done
    die "$url did not answer within 30s"
}

mkdir -p "$TMP/upstream" "$TMP/upstream-tmp"
render "$CONF_DIR/upstream.nginx.conf" "$TMP/upstream.conf"
nice -n "$NICE" taskset -c "$LOAD_CPU" "$NGINX" -p "$TMP/upstream/" -c "$TMP/upstream.conf" \
    -e "$TMP/upstream.error.log" >"$TMP/upstream.log" 2>&1 &
STARTED_PIDS+=($!)
wait_http "http://127.0.0.1:$UPSTREAM_PORT/"

render "$CONF_DIR/ferrox-filters.yaml" "$TMP/ferrox.yaml"
nice -n "$NICE" taskset -c "$PROXY_CPU" "$FERROX_BIN" serve --config "$TMP/ferrox.yaml" \
    --workers 1 --log warn --log-format json >"$TMP/ferrox.log" 2>&1 &
FERROX_PID=$!
STARTED_PIDS+=("$FERROX_PID")
wait_http "http://127.0.0.1:$PORT/" -H "apikey: bench-key"
[[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/") == 401 ]] \
    || die "a request without a key was not refused: the filters are not on"
log "ferrox pid $FERROX_PID on 127.0.0.1:$PORT (cpu $PROXY_CPU), nginx upstream on :$UPSTREAM_PORT (cpu $LOAD_CPU)"

URL="http://127.0.0.1:$PORT/"
wrk_run() { # seconds conns outfile [extra wrk args]
    local s=$1 c=$2 out=$3
    shift 3
    timeout $((s + 60)) nice -n "$NICE" taskset -c "$LOAD_CPU" \
        wrk -t1 -c"$c" -d"${s}s" --timeout 5s -H "apikey: bench-key" "$@" "$URL" >"$out" 2>&1 \
        || { cat "$out" >&2; die "wrk failed"; }
}
wrk_errors() { # outfile -> non-2xx + socket errors
    awk '/Socket errors:/ {gsub(/,/, ""); s = $4 + $6 + $8 + $10}
         /Non-2xx or 3xx responses:/ {n = $NF}
         END {print s + n + 0}' "$1"
}
wrk_rps() { awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$1"; }

# -------------------------------------------------------------------- peak --

if [[ -z $RATE ]]; then
    log "peak: wrk -c50 for ${PEAK_SECS}s"
    wrk_run "$PEAK_SECS" 50 "$TMP/peak.txt"
    PEAK=$(wrk_rps "$TMP/peak.txt")
    PEAK_ERRORS=$(wrk_errors "$TMP/peak.txt")
    ((PEAK_ERRORS == 0)) || log "WARNING: the peak run saw $PEAK_ERRORS errors"
    RATE=$(awk -v p="$PEAK" -v r="$RATIO" 'BEGIN {printf "%.0f", p * r}')
    log "peak $PEAK req/s; soak rate $RATE req/s (x$RATIO)"
else
    PEAK="-"
fi
CONNS=$(awk -v r="$RATE" -v d="$DELAY_MS" 'BEGIN {c = int(r * d / 1000 + 0.5); print (c < 1 ? 1 : c)}')
printf 'function delay()\n  return %d\nend\n' "$DELAY_MS" >"$TMP/pace.lua"

# -------------------------------------------------------------------- soak --

mkdir -p "$RESULTS_DIR"
CSV=$RESULTS_DIR/soak-$(date +%Y%m%d-%H%M%S).csv
echo "seconds,rss_kib,fds" >"$CSV"
log "soak: ${DURATION_S}s, $CONNS connections pausing ${DELAY_MS}ms (<= $RATE req/s), samples every ${SAMPLE_S}s -> $CSV"
wrk_run "$DURATION_S" "$CONNS" "$TMP/soak.txt" -s "$TMP/pace.lua" &
WRK_PID=$!
STARTED_PIDS+=("$WRK_PID")
start=$(date +%s)
next=$((start + SAMPLE_S))
while kill -0 "$WRK_PID" 2>/dev/null; do
    now=$(date +%s)
    if ((now >= next)); then
        kill -0 "$FERROX_PID" 2>/dev/null || die "ferrox exited during the soak: $(tail -n 20 "$TMP/ferrox.log")"
        rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$FERROX_PID/status")
        fds=$(find "/proc/$FERROX_PID/fd" -mindepth 1 -maxdepth 1 | wc -l)
        echo "$((now - start)),$rss,$fds" >>"$CSV"
        next=$((next + SAMPLE_S))
    fi
    sleep 1
done
wait "$WRK_PID" || die "wrk failed: $(cat "$TMP/soak.txt")"
kill -0 "$FERROX_PID" 2>/dev/null || die "ferrox exited during the soak"

# ------------------------------------------------------------------ report --

REQS=$(awk '/ requests in / {print $1; exit}' "$TMP/soak.txt")
ACHIEVED=$(wrk_rps "$TMP/soak.txt")
ERRORS=$(wrk_errors "$TMP/soak.txt")
read -r T0 RSS0 FD0 < <(awk -F, -v w="$WARMUP_S" 'NR > 1 && $1 >= w {print $1, $2, $3; exit}' "$CSV")
read -r T1 RSS1 FD1 < <(tail -n 1 "$CSV" | tr ',' ' ')
[[ -n ${T0:-} && -n ${T1:-} && $T1 -gt $T0 ]] || die "not enough samples after the warm-up in $CSV"
pct() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b - a) * 100 / a}'; }
RSS_GROWTH=$(pct "$RSS0" "$RSS1")
FD_GROWTH=$(pct "$FD0" "$FD1")
RSS_MAX=$(awk -F, 'NR > 1 && $2 > m {m = $2} END {print m}' "$CSV")

cat <<EOF
soak: $DURATION_S s, peak $PEAK req/s, offered <= $RATE req/s ($CONNS connections x 1 per ${DELAY_MS} ms), achieved $ACHIEVED req/s, $REQS requests
RSS: ${RSS0} KiB at ${T0}s -> ${RSS1} KiB at ${T1}s: ${RSS_GROWTH} % (max ${RSS_MAX} KiB)
fds: ${FD0} at ${T0}s -> ${FD1} at ${T1}s: ${FD_GROWTH} %
errors: $ERRORS (wrk non-2xx + socket errors)
samples: $CSV
EOF
fail=0
awk -v g="$RSS_GROWTH" -v m="$MAX_GROWTH" 'BEGIN {exit !(g >= m)}' && { log "FAIL: RSS grew ${RSS_GROWTH} % (limit ${MAX_GROWTH} %)"; fail=1; }
awk -v g="$FD_GROWTH" -v m="$MAX_GROWTH" 'BEGIN {exit !(g >= m)}' && { log "FAIL: fds grew ${FD_GROWTH} % (limit ${MAX_GROWTH} %)"; fail=1; }
((ERRORS == 0)) || { log "FAIL: $ERRORS errors"; fail=1; }
exit "$fail"
