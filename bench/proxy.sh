#!/usr/bin/env bash
# bench/proxy.sh: Ferrox vs nginx as a reverse proxy of the same tiny upstream
# response, one worker pinned to one core. See bench/README.md.
# With PEER=filters (what bench/filters-peer.sh sets), both sides also do the filters'
# work: an API-key check, a Redis INCR + EXPIRE per request and one added response
# header (nginx: Lua + lua-nginx-redis; Ferrox: key-auth, rate-limit and transform).
#
# Environment:
#   PEER=proxy        proxy (plain proxying) or filters (the filters benchmark)
#   DURATION=15s      measured wrk run (wrk syntax: 15s, 1m, or plain seconds)
#   WARMUP=3s         warm-up wrk run before the measured run (0 to skip)
#   CONNS=50          wrk connections
#   ONLY=nginx|ferrox run only one side (default: both)
#   FERROX_BIN=...    ferrox binary (default ${CARGO_TARGET_DIR:-$HOME/.cache/ferrox-target}/release/ferrox,
#                     built with `cargo build --release -p ferrox-host` when missing)
#   FERROX_BUILD=1    run the cargo build even if the default binary exists
#   BUILD_TIMEOUT=3600  seconds allowed for that build
#   PROXY_CPU=0       core for the proxy under test
#   LOAD_CPU=1        core for wrk and the upstream
#   KEEP_TMP=1        keep the temp dir (configs, logs, raw wrk output)
set -euo pipefail

DURATION=${DURATION:-15s}
WARMUP=${WARMUP:-3s}
CONNS=${CONNS:-50}
ONLY=${ONLY:-}
FERROX_BUILD=${FERROX_BUILD:-0}
BUILD_TIMEOUT=${BUILD_TIMEOUT:-3600}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
KEEP_TMP=${KEEP_TMP:-0}
READY_TIMEOUT_S=10
PEER=${PEER:-proxy}
case "$PEER" in
    proxy) TARGET_RATIO=0.90 NGINX_CONF=proxy.nginx.conf FERROX_CONF=ferrox.yaml ;;
    filters) TARGET_RATIO=0.50 NGINX_CONF=filters.nginx.conf FERROX_CONF=ferrox-filters.yaml ;;
    *) printf '[proxy-bench] ERROR: PEER must be proxy or filters (got %s)\n' "$PEER" >&2; exit 2 ;;
esac
# Headers every request carries (the filters benchmark authenticates with an API key).
REQUEST_HEADERS=()
[[ $PEER == filters ]] && REQUEST_HEADERS=(-H "apikey: bench-key")
# Redis keys of this run (filters benchmark): a fresh prefix, removed at the end.
PREFIX="ferrox-bench:$$:$RANDOM:"

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
CONF_DIR=$SCRIPT_DIR/conf
RESULTS_DIR=$SCRIPT_DIR/results

log() { printf '[proxy-bench] %s\n' "$*" >&2; }
die() { printf '[proxy-bench] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- arguments --

case "$ONLY" in
    "" | nginx | ferrox) ;;
    *) die "ONLY must be 'nginx', 'ferrox' or empty (got '$ONLY')" ;;
esac
[[ $CONNS =~ ^[1-9][0-9]*$ ]] || die "CONNS must be a positive integer (got '$CONNS')"

# wrk duration string -> whole seconds (for the outer `timeout`).
dur_to_s() {
    local d=$1 n mult=1
    case "$d" in
        *s) n=${d%s} ;;
        *m) n=${d%m}; mult=60 ;;
        *h) n=${d%h}; mult=3600 ;;
        *) n=$d ;;
    esac
    [[ $n =~ ^[0-9]+$ ]] || die "bad duration '$d' (use e.g. 15s, 1m, or seconds)"
    echo $((n * mult))
}
DURATION_S=$(dur_to_s "$DURATION")
WARMUP_S=$(dur_to_s "$WARMUP")
((DURATION_S > 0)) || die "DURATION must be > 0"

want() { [[ -z $ONLY || $ONLY == "$1" ]]; }

# ------------------------------------------------------------- dependencies --

NGINX=""
find_nginx() {
    NGINX=$(command -v nginx 2>/dev/null || true)
    [[ -n $NGINX ]] || { [[ -x /usr/sbin/nginx ]] && NGINX=/usr/sbin/nginx; } || true
}

ensure_deps() {
    # command -> Debian package
    local -A pkg_of=(
        [nginx]=nginx [wrk]=wrk [curl]=curl [taskset]=util-linux
        [pgrep]=procps [getconf]=libc-bin [timeout]=coreutils
    )
    local missing=() cmd
    find_nginx
    [[ -n $NGINX ]] || missing+=(nginx)
    for cmd in wrk curl taskset pgrep getconf timeout; do
        command -v "$cmd" >/dev/null 2>&1 || missing+=("${pkg_of[$cmd]}")
    done
    if [[ $PEER == filters ]]; then
        # nginx + Lua peer: the Lua module and the Redis client (Debian packages).
        [[ -f /usr/lib/nginx/modules/ngx_http_lua_module.so ]] || missing+=(libnginx-mod-http-lua)
        [[ -f /usr/share/lua/5.1/nginx/redis.lua ]] || missing+=(lua-nginx-redis)
        command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
    fi
    if ((${#missing[@]})); then
        ((EUID == 0)) || die "missing packages: ${missing[*]}; run as root or: sudo apt-get install -y ${missing[*]}"
        command -v apt-get >/dev/null || die "missing packages: ${missing[*]} and no apt-get on this host"
        log "installing Debian packages: ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
        find_nginx
        [[ -n $NGINX ]] || die "nginx still not found after apt-get install"
    fi
    local ncpu
    ncpu=$(nproc)
    ((PROXY_CPU < ncpu && LOAD_CPU < ncpu)) \
        || die "need CPUs $PROXY_CPU and $LOAD_CPU but this host has $ncpu CPU(s)"
    if [[ $PEER == filters ]]; then
        [[ $(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null) == PONG ]] \
            || die "the filters benchmark needs Redis at 127.0.0.1:6379 (redis-cli ping)"
    fi
}

FERROX_BIN_GIVEN=${FERROX_BIN:+1}
ensure_ferrox_bin() {
    if [[ -n $FERROX_BIN_GIVEN ]]; then
        [[ -x $FERROX_BIN ]] || die "FERROX_BIN=$FERROX_BIN is not an executable file"
        return
    fi
    local target_dir=${CARGO_TARGET_DIR:-$HOME/.cache/ferrox-target}
    FERROX_BIN=$target_dir/release/ferrox
    if [[ ! -x $FERROX_BIN || $FERROX_BUILD == 1 ]]; then
        command -v cargo >/dev/null 2>&1 \
            || die "ferrox binary $FERROX_BIN is missing and cargo is not on PATH (set FERROX_BIN to a prebuilt binary)"
        log "building ferrox: (cd $REPO_ROOT && CARGO_TARGET_DIR=$target_dir cargo build --release -p ferrox-host)"
        local rc=0
        (cd "$REPO_ROOT" && CARGO_TARGET_DIR=$target_dir \
            timeout "$BUILD_TIMEOUT" cargo build --release -p ferrox-host) || rc=$?
        if ((rc == 124)); then
            die "cargo build --release -p ferrox-host did not finish within ${BUILD_TIMEOUT}s (raise BUILD_TIMEOUT or set FERROX_BIN)"
        elif ((rc != 0)); then
            die "cargo build --release -p ferrox-host failed (exit $rc, see output above); fix the build or set FERROX_BIN"
        fi
        [[ -x $FERROX_BIN ]] || die "cargo build succeeded but $FERROX_BIN does not exist"
    fi
}

# ---------------------------------------------------------------- processes --

TMP=""
STARTED_PIDS=() # every process we started (nginx workers added once known)

cleanup() {
    local rc=$? pid i
    trap - EXIT INT TERM
    for pid in "${STARTED_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${STARTED_PIDS[@]}"; do
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "pid $pid ignored SIGTERM for 5s, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    wait 2>/dev/null || true
    if [[ $PEER == filters ]] && command -v redis-cli >/dev/null 2>&1; then
        redis-cli -h 127.0.0.1 -p 6379 --scan --pattern "$PREFIX*" 2>/dev/null \
            | xargs -r redis-cli -h 127.0.0.1 -p 6379 del >/dev/null 2>&1 || true
    fi
    if [[ -n $TMP && -d $TMP ]]; then
        if [[ $KEEP_TMP == 1 ]]; then
            log "temp dir kept: $TMP"
        else
            rm -rf -- "$TMP"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Free TCP port on 127.0.0.1, distinct from the ones handed out already.
USED_PORTS=" "
free_port() {
    local p="" i
    for ((i = 0; i < 50; i++)); do
        if command -v python3 >/dev/null 2>&1; then
            p=$(python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null) || p=""
        fi
        [[ -n $p ]] || p=$((20000 + RANDOM % 40000))
        if [[ $USED_PORTS != *" $p "* ]] \
            && ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            USED_PORTS+="$p "
            echo "$p"
            return
        fi
    done
    die "could not find a free port"
}

render() { # template out
    sed -e "s|@TMP@|$TMP|g" \
        -e "s|@PORT@|${PORT:-}|g" \
        -e "s|@ADMIN_PORT@|${ADMIN_PORT:-}|g" \
        -e "s|@UPSTREAM_PORT@|$UPSTREAM_PORT|g" \
        -e "s|@PREFIX@|$PREFIX|g" \
        "$1" >"$2"
}

# wait_ready NAME PID URL LOGFILE...: poll URL until it answers 2xx.
wait_ready() {
    local name=$1 pid=$2 url=$3 i
    shift 3
    for ((i = 0; i < READY_TIMEOUT_S * 10; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "$name (pid $pid) exited during startup; log tail:"
            tail -n 30 "$@" >&2 2>/dev/null || true
            die "$name failed to start"
        fi
        if curl -sf -o /dev/null --max-time 1 "${REQUEST_HEADERS[@]}" "$url"; then
            return 0
        fi
        sleep 0.1
    done
    log "$name (pid $pid) not ready at $url after ${READY_TIMEOUT_S}s; log tail:"
    tail -n 30 "$@" >&2 2>/dev/null || true
    die "$name did not become ready within ${READY_TIMEOUT_S}s"
}

# check_body NAME URL [proxied]: the response must be the upstream's (for a proxy under test
# in the filters benchmark: with the added header, and without a key the request is refused).
check_body() {
    local body
    body=$(curl -sf --max-time 2 "${REQUEST_HEADERS[@]}" "$2") || die "$1: GET $2 failed"
    [[ $body == "hello from upstream" ]] \
        || die "$1: GET $2 returned '$body', expected 'hello from upstream'"
    if [[ $PEER == filters && ${3:-} == proxied ]]; then
        curl -sf -o /dev/null -D - --max-time 2 "${REQUEST_HEADERS[@]}" "$2" | grep -qi '^x-gateway:' \
            || die "$1: the response lacks the added x-gateway header"
        local refused
        refused=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$2")
        [[ $refused == 401 ]] || die "$1: a request without a key got $refused, expected 401"
    fi
}

start_nginx() { # name cpu conf -> sets NGINX_PID
    local name=$1 cpu=$2 conf=$3 prefix=$TMP/$1
    mkdir -p "$prefix" "$TMP/$name-tmp"
    taskset -c "$cpu" "$NGINX" -p "$prefix/" -c "$conf" -e "$TMP/$name.error.log" \
        >"$TMP/$name.stdout.log" 2>&1 &
    NGINX_PID=$!
    STARTED_PIDS+=("$NGINX_PID")
}

# Record nginx worker pids so cleanup can reach them even if the master dies.
track_children() {
    local c
    for c in $(pgrep -P "$1" || true); do
        [[ " ${STARTED_PIDS[*]} " == *" $c "* ]] || STARTED_PIDS+=("$c")
    done
}

# -------------------------------------------------------------- measurement --

CLK_TCK=$(getconf CLK_TCK)

# Process set measured for a side: ferrox = its pid; nginx = master + workers.
side_pids() { # pid kind
    echo "$1"
    if [[ $2 == nginx ]]; then pgrep -P "$1" || true; fi
}

cpu_ticks() { # pids... -> "utime stime" summed (fields 14 and 15 of /proc/PID/stat)
    local user=0 sys=0 pid stat rest
    local -a f
    for pid in "$@"; do
        stat=$(<"/proc/$pid/stat") || die "cannot read /proc/$pid/stat"
        rest=${stat##*) } # drop "pid (comm) "; rest starts at field 3
        read -ra f <<<"$rest"
        user=$((user + f[11]))
        sys=$((sys + f[12]))
    done
    echo "$user $sys"
}

rss_kb() { # pids... -> VmRSS summed, kB
    local total=0 pid kb
    for pid in "$@"; do
        kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
        total=$((total + ${kb:-0}))
    done
    echo "$total"
}

to_us() { # wrk latency "412.00us" | "1.23ms" | "1.01s" -> microseconds
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/)      { sub(/us$/, "", v); m = 1 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); m = 1000 }
        else if (v ~ /m$/)  { sub(/m$/, "", v);  m = 60000000 }
        else if (v ~ /s$/)  { sub(/s$/, "", v);  m = 1000000 }
        else { print "nan"; exit }
        printf "%.0f", v * m }'
}

run_wrk() { # seconds url outfile
    local rc=0
    timeout $(($1 + 30)) taskset -c "$LOAD_CPU" \
        wrk -t1 -c"$CONNS" -d"$1s" --timeout 5s --latency "${REQUEST_HEADERS[@]}" "$2" >"$3" 2>&1 || rc=$?
    if ((rc != 0)); then
        cat "$3" >&2
        die "wrk against $2 failed (exit $rc)"
    fi
}

declare -A RPS P50 P99 CPU_US USER_US SYS_US RSS_MIB REQS CPU_S ERRS WRK_OUT

# measure SIDE PID URL: warm-up, then the measured run with CPU accounting.
measure() {
    local side=$1 pid=$2 url=$3 out=$TMP/wrk-$1.txt
    local -a pids_before pids_after
    if ((WARMUP_S > 0)); then
        log "$side: warm-up ${WARMUP_S}s"
        run_wrk "$WARMUP_S" "$url" "$TMP/wrk-$side-warmup.txt"
    fi
    mapfile -t pids_before < <(side_pids "$pid" "$side")
    log "$side: measuring ${DURATION_S}s, $CONNS connections, pids ${pids_before[*]}"
    local t0 t1 u0 s0 u1 s1
    read -r u0 s0 < <(cpu_ticks "${pids_before[@]}")
    t0=$((u0 + s0))
    run_wrk "$DURATION_S" "$url" "$out"
    mapfile -t pids_after < <(side_pids "$pid" "$side")
    [[ "${pids_before[*]}" == "${pids_after[*]}" ]] \
        || die "$side: process set changed during the run (${pids_before[*]} -> ${pids_after[*]}); a worker probably crashed"
    read -r u1 s1 < <(cpu_ticks "${pids_after[@]}")
    t1=$((u1 + s1))
    local rss
    rss=$(rss_kb "${pids_after[@]}")

    local reqs rps p50 p99 sock non2xx
    reqs=$(awk '/ requests in / {print $1; exit}' "$out")
    rps=$(awk '/^Requests\/sec:/ {print $2; exit}' "$out")
    p50=$(awk '$1 == "50%" {print $2; exit}' "$out")
    p99=$(awk '$1 == "99%" {print $2; exit}' "$out")
    sock=$(awk '/Socket errors:/ {gsub(/,/, ""); print $4 + $6 + $8 + $10; exit}' "$out")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF; exit}' "$out")
    [[ -n $reqs && -n $rps && -n $p50 && -n $p99 ]] || {
        cat "$out" >&2
        die "$side: could not parse wrk output"
    }
    ((reqs > 0)) || die "$side: wrk completed 0 requests"

    REQS[$side]=$reqs
    RPS[$side]=$(awk -v r="$rps" 'BEGIN {printf "%.0f", r}')
    P50[$side]="$(to_us "$p50") µs"
    P99[$side]="$(to_us "$p99") µs"
    CPU_S[$side]=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" 'BEGIN {printf "%.2f", d / hz}')
    CPU_US[$side]=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$reqs" \
        'BEGIN {printf "%.2f", d / hz * 1e6 / n}')
    USER_US[$side]=$(awk -v d=$((u1 - u0)) -v hz="$CLK_TCK" -v n="$reqs" \
        'BEGIN {printf "%.2f", d / hz * 1e6 / n}')
    SYS_US[$side]=$(awk -v d=$((s1 - s0)) -v hz="$CLK_TCK" -v n="$reqs" \
        'BEGIN {printf "%.2f", d / hz * 1e6 / n}')
    RSS_MIB[$side]=$(awk -v k="$rss" 'BEGIN {printf "%.1f", k / 1024}')
    ERRS[$side]=$(( ${sock:-0} + ${non2xx:-0} ))
    WRK_OUT[$side]=$out
    if ((ERRS[$side] > 0)); then
        log "WARNING: $side: wrk saw ${sock:-0} socket errors and ${non2xx:-0} non-2xx responses"
    fi
    log "$side: ${RPS[$side]} req/s, ${CPU_US[$side]} CPU µs/req (user ${USER_US[$side]} + sys ${SYS_US[$side]}; ${CPU_S[$side]} s CPU for $reqs requests)"
}

# ---------------------------------------------------------------------- run --

ensure_deps
if want ferrox; then ensure_ferrox_bin; fi
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

TMP=$(mktemp -d "${TMPDIR:-/tmp}/ferrox-proxy-bench.XXXXXX")
log "temp dir: $TMP"

UPSTREAM_PORT=$(free_port)
render "$CONF_DIR/upstream.nginx.conf" "$TMP/upstream.conf"
start_nginx upstream "$LOAD_CPU" "$TMP/upstream.conf"
UPSTREAM_PID=$NGINX_PID
wait_ready "upstream nginx" "$UPSTREAM_PID" "http://127.0.0.1:$UPSTREAM_PORT/" \
    "$TMP/upstream.error.log" "$TMP/upstream.stdout.log"
track_children "$UPSTREAM_PID"
check_body "upstream nginx" "http://127.0.0.1:$UPSTREAM_PORT/"
log "upstream nginx: pid $UPSTREAM_PID on 127.0.0.1:$UPSTREAM_PORT (cpu $LOAD_CPU)"

stop_pid() { # graceful stop of a side once measured
    kill -TERM "$1" 2>/dev/null || true
    local i
    for ((i = 0; i < 50; i++)); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$1" 2>/dev/null || true
}

if want nginx; then
    PORT=$(free_port)
    render "$CONF_DIR/$NGINX_CONF" "$TMP/proxy.conf"
    start_nginx proxy "$PROXY_CPU" "$TMP/proxy.conf"
    NGINX_PROXY_PID=$NGINX_PID
    wait_ready "nginx proxy" "$NGINX_PROXY_PID" "http://127.0.0.1:$PORT/" \
        "$TMP/proxy.error.log" "$TMP/proxy.stdout.log"
    track_children "$NGINX_PROXY_PID"
    check_body "nginx proxy" "http://127.0.0.1:$PORT/" proxied
    log "nginx proxy: pid $NGINX_PROXY_PID on 127.0.0.1:$PORT (cpu $PROXY_CPU)"
    measure nginx "$NGINX_PROXY_PID" "http://127.0.0.1:$PORT/"
    stop_pid "$NGINX_PROXY_PID"
fi

if want ferrox; then
    PORT=$(free_port)
    ADMIN_PORT=$(free_port)
    render "$CONF_DIR/$FERROX_CONF" "$TMP/ferrox.yaml"
    (cd "$TMP" && FERROX_LOG=warn exec taskset -c "$PROXY_CPU" \
        "$FERROX_BIN" serve --config "$TMP/ferrox.yaml" --workers 1) \
        >"$TMP/ferrox.log" 2>&1 &
    FERROX_PID=$!
    STARTED_PIDS+=("$FERROX_PID")
    wait_ready "ferrox" "$FERROX_PID" "http://127.0.0.1:$ADMIN_PORT/health" "$TMP/ferrox.log"
    check_body "ferrox" "http://127.0.0.1:$PORT/" proxied
    log "ferrox: pid $FERROX_PID on 127.0.0.1:$PORT, admin $ADMIN_PORT (cpu $PROXY_CPU)"
    measure ferrox "$FERROX_PID" "http://127.0.0.1:$PORT/"
    stop_pid "$FERROX_PID"
fi

# ------------------------------------------------------------------ report --

NGINX_VERSION=$("$NGINX" -v 2>&1 | sed 's/^nginx version: //')
WRK_VERSION=$(wrk -v 2>&1 | awk 'NR == 1 {print $1, $2; exit}' || true)
CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
FERROX_REV=$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo "no commit")
if [[ -n $(git -C "$REPO_ROOT" status --porcelain 2>/dev/null | head -n 1) ]]; then
    FERROX_REV+=" (dirty)"
fi

table() {
    local side
    echo "| proxy | req/s | p50 | p99 | CPU µs/req | user | sys | RSS MiB |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
    for side in nginx ferrox; do
        [[ -n ${CPU_US[$side]:-} ]] || continue
        echo "| $side | ${RPS[$side]} | ${P50[$side]} | ${P99[$side]} | ${CPU_US[$side]} | ${USER_US[$side]} | ${SYS_US[$side]} | ${RSS_MIB[$side]} |"
    done
}

RATIO_LINE="ferrox/nginx CPU µs/req: n/a (run both sides)"
VERDICT=""
if [[ -n ${CPU_US[nginx]:-} && -n ${CPU_US[ferrox]:-} ]]; then
    RATIO=$(awk -v f="${CPU_US[ferrox]}" -v n="${CPU_US[nginx]}" 'BEGIN {printf "%.3f", f / n}')
    VERDICT=$(awk -v r="$RATIO" -v t="$TARGET_RATIO" 'BEGIN {print (r <= t) ? "PASS" : "FAIL"}')
    RATIO_LINE="ferrox/nginx CPU µs/req: **$RATIO** (target ≤ $TARGET_RATIO: $VERDICT)"
fi

STAMP=$(date +%Y-%m-%d-%H%M%S)
mkdir -p "$RESULTS_DIR"
RESULT_FILE=$RESULTS_DIR/$PEER-$STAMP.md
{
    if [[ $PEER == filters ]]; then
        echo "# Filters benchmark (nginx + Lua vs Ferrox + Wasm filters), $(date '+%Y-%m-%d %H:%M:%S %Z')"
    else
        echo "# Proxy benchmark, $(date '+%Y-%m-%d %H:%M:%S %Z')"
    fi
    echo
    table
    echo
    echo "$RATIO_LINE"
    echo
    echo "- upstream: nginx, \`return 200 \"hello from upstream\\n\"\`, keepalive, cpu $LOAD_CPU (shared with wrk)"
    echo "- proxies: one worker, cpu $PROXY_CPU; wrk: \`-t1 -c$CONNS -d${DURATION_S}s --latency\` on cpu $LOAD_CPU after a ${WARMUP_S}s warm-up"
    if [[ $PEER == filters ]]; then
        echo "- work per request: API-key check, Redis INCR + EXPIRE (one round trip, keepalive), one added response header; nginx: \`$NGINX_CONF\`, ferrox: \`$FERROX_CONF\`"
        echo "- load average before the run: $LOAD_BEFORE"
    fi
    echo "- CPU µs/req = (utime+stime of the proxy's processes over the measured run) / requests; CLK_TCK=$CLK_TCK"
    for side in nginx ferrox; do
        [[ -n ${CPU_US[$side]:-} ]] || continue
        echo "- $side: ${REQS[$side]} requests, ${CPU_S[$side]} s CPU, ${ERRS[$side]} wrk errors/non-2xx"
    done
    echo "- host: $CPU_MODEL, $(nproc) CPUs, kernel $(uname -r)"
    echo "- $NGINX_VERSION; $WRK_VERSION; ferrox tree $FERROX_REV"
    if want ferrox; then echo "- ferrox binary: $FERROX_BIN"; fi
    for side in nginx ferrox; do
        [[ -n ${WRK_OUT[$side]:-} ]] || continue
        echo
        echo "<details><summary>wrk output: $side</summary>"
        echo
        echo '```'
        cat "${WRK_OUT[$side]}"
        echo '```'
        echo
        echo "</details>"
    done
} >"$RESULT_FILE"

echo
table
echo
echo "$RATIO_LINE"
echo
log "results written to ${RESULT_FILE#"$REPO_ROOT"/}"

for side in nginx ferrox; do
    if [[ -n ${ERRS[$side]:-} ]] && ((ERRS[$side] > 0)); then
        die "$side: wrk reported errors or non-2xx responses; the numbers above are not valid"
    fi
done
