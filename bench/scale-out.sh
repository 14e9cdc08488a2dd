#!/usr/bin/env bash
# bench/scale-out.sh: 1, 2 and 3 Ferrox instances side by side on one Redis, with a
# Redis-backed rate limit on every request. Reports throughput per instance, CPU per request
# (gateways and Redis), and how exactly a global limit holds across the instances.
# See bench/README.md ("scale-out.sh").
#
# Environment:
#   INSTANCES="1 2 3"   instance counts to run
#   DURATION=10s        measured throughput run per count (wrk syntax: 10s, 1m, seconds)
#   WARMUP=2s           warm-up per count (0 to skip)
#   CONNS=16            wrk connections per instance
#   LIMIT=10000         the global limit of the accuracy run (requests per LIMIT_WINDOW)
#   LIMIT_WINDOW=30     its window, seconds (the run starts just after a window boundary)
#   LIMIT_DURATION=8s   length of the accuracy run (shorter than LIMIT_WINDOW)
#   FILTER_TIMEOUT=100ms  the rate-limit filter's deadline (`timeout`; the gateway's default is
#                       5ms, which includes the Redis round trip: see bench/README.md)
#   FERROX_BIN=...      binary (default ${CARGO_TARGET_DIR:-$HOME/.cache/ferrox-target}/release/ferrox,
#                       built with `cargo build --release -p ferrox-host` when missing)
#   REDIS_URL=redis://127.0.0.1:6379   the shared Redis (keys under a random prefix, deleted after)
#   PG_ADMIN_URL=postgres://postgres@127.0.0.1:5432/postgres   where a fresh database is created
#                       for the instances' shared config store (dropped after); DATABASE=0 runs
#                       them on the config file alone. Used only when the binary has --database-url.
#   KEEP_TMP=1          keep the temp dir (configs, logs, raw wrk output)
set -euo pipefail

INSTANCES=${INSTANCES:-"1 2 3"}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-16}
LIMIT=${LIMIT:-10000}
LIMIT_WINDOW=${LIMIT_WINDOW:-30}
LIMIT_DURATION=${LIMIT_DURATION:-8s}
FILTER_TIMEOUT=${FILTER_TIMEOUT:-100ms}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
KEEP_TMP=${KEEP_TMP:-0}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DATABASE=${DATABASE:-1}
TOKEN=bench-token

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
RESULTS_DIR=$SCRIPT_DIR/results

log() { printf '[scale-out] %s\n' "$*" >&2; }
die() { printf '[scale-out] ERROR: %s\n' "$*" >&2; exit 1; }

[[ $LIMIT =~ ^[1-9][0-9]*$ ]] || die "LIMIT must be a positive integer"
[[ $LIMIT_WINDOW =~ ^[1-9][0-9]*$ ]] || die "LIMIT_WINDOW must be whole seconds"
dur_to_s() {
    local d=$1
    case "$d" in *s) d=${d%s} ;; *m) d=$((${d%m} * 60)) ;; esac
    [[ $d =~ ^[0-9]+$ ]] || die "bad duration '$1'"
    echo "$d"
}
DURATION_S=$(dur_to_s "$DURATION")
WARMUP_S=$(dur_to_s "$WARMUP")
LIMIT_DURATION_S=$(dur_to_s "$LIMIT_DURATION")
((LIMIT_DURATION_S + 1 < LIMIT_WINDOW)) || die "LIMIT_DURATION must be shorter than LIMIT_WINDOW - 1s"

# ------------------------------------------------------------------ dependencies --
NGINX=$(command -v nginx || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; } || true)
missing=()
[[ -n $NGINX ]] || missing+=(nginx)
for c in wrk curl redis-cli; do
    command -v "$c" >/dev/null || missing+=("$([[ $c == redis-cli ]] && echo redis-tools || echo "$c")")
done
if ((${#missing[@]})); then
    ((EUID == 0)) || die "missing packages: ${missing[*]} (apt-get install ${missing[*]})"
    log "installing Debian packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
fi

if [[ -z ${FERROX_BIN:-} ]]; then
    FERROX_BIN=${CARGO_TARGET_DIR:-$HOME/.cache/ferrox-target}/release/ferrox
    if [[ ! -x $FERROX_BIN ]]; then
        log "building $FERROX_BIN"
        (cd "$REPO_ROOT" && CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/ferrox-target} \
            cargo build --release -p ferrox-host) || die "cargo build failed"
    fi
fi
[[ -x $FERROX_BIN ]] || die "FERROX_BIN=$FERROX_BIN is not executable"

REDIS_HOST=$(sed -E 's#^redis://([^:/]+).*#\1#' <<<"$REDIS_URL")
REDIS_PORT=$(sed -nE 's#^redis://[^:/]+:([0-9]+).*#\1#p' <<<"$REDIS_URL")
REDIS_PORT=${REDIS_PORT:-6379}
rcli() { redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" --raw "$@"; }
[[ $(rcli PING) == PONG ]] || die "Redis at $REDIS_URL does not answer"
REDIS_PID=$(rcli INFO server | tr -d '\r' | sed -n 's/^process_id://p')
[[ -r /proc/$REDIS_PID/stat ]] || die "cannot read Redis's CPU time (pid $REDIS_PID): run on the Redis host"

# --------------------------------------------------------------------- processes --
TMP=$(mktemp -d -t ferrox-scale-out.XXXXXX)
PIDS=()
RAND=$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')
PREFIX="ferrox-bench-$RAND:"
DB_NAME=""
DB_URL=""
if [[ $DATABASE == 1 ]] && "$FERROX_BIN" serve --help | grep -q -- --database-url; then
    command -v psql >/dev/null || die "psql is missing (or set DATABASE=0)"
    DB_NAME=ferrox_bench_$RAND
    psql -q "$PG_ADMIN_URL" -c "CREATE DATABASE $DB_NAME" || die "cannot create database $DB_NAME"
    DB_URL=${PG_ADMIN_URL%/*}/$DB_NAME
    log "config store: PostgreSQL database $DB_NAME (seeded from the first instance's file)"
fi
cleanup() {
    local pid
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rcli --scan --pattern "${PREFIX}*" | while read -r k; do rcli DEL "$k" >/dev/null; done
    [[ -z $DB_NAME ]] || psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" || true
    if [[ $KEEP_TMP == 1 ]]; then log "temp dir kept: $TMP"; else rm -rf -- "$TMP"; fi
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { # sum of utime+stime of the given pids
    local t=0 pid
    for pid in "$@"; do
        t=$((t + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
    done
    echo "$t"
}
wait_http() { # url pid logfile
    for _ in $(seq 100); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || { tail -20 "$3" >&2; die "process $2 exited"; }
        sleep 0.1
    done
    tail -20 "$3" >&2
    die "$1 did not answer within 10s"
}

UPSTREAM_PORT=$(free_port)
sed -e "s#@TMP@#$TMP#g" -e "s#@UPSTREAM_PORT@#$UPSTREAM_PORT#g" \
    "$SCRIPT_DIR/conf/upstream.nginx.conf" >"$TMP/upstream.conf"
mkdir -p "$TMP/upstream-tmp"
"$NGINX" -c "$TMP/upstream.conf" -e "$TMP/upstream.error.log" >"$TMP/upstream.log" 2>&1 &
UPSTREAM_PID=$!
PIDS+=("$UPSTREAM_PID")
wait_http "http://127.0.0.1:$UPSTREAM_PORT/" "$UPSTREAM_PID" "$TMP/upstream.log"
upstream_pids() { echo "$UPSTREAM_PID" $(pgrep -P "$UPSTREAM_PID" || true); }

# One config for every instance: the same file, as a fleet would share it.
write_config() { # file listen admin
    cat >"$1" <<EOF
listen: 127.0.0.1:$2
admin: { listen: 127.0.0.1:$3, token: $TOKEN }
state: $REDIS_URL
state_options: { timeout: 50ms, key_prefix: "$PREFIX" }
upstreams:
  - name: bench
    targets: [127.0.0.1:$UPSTREAM_PORT]
routes:
  # Throughput: a limit never reached, so every request does the Redis round trip and passes.
  - name: bench
    match: { path_prefix: /bench }
    upstream: bench
    strip_prefix: true
    filters:
      - plugin: rate-limit
        config: { limits: [{ requests: 1000000000, window: 1s }], by: route }
        timeout: $FILTER_TIMEOUT
  # Accuracy: one global budget shared by every instance.
  - name: limited
    match: { path_prefix: /limited }
    upstream: bench
    strip_prefix: true
    filters:
      - plugin: rate-limit
        config: { limits: [{ requests: $LIMIT, window: ${LIMIT_WINDOW}s }], by: route }
        timeout: $FILTER_TIMEOUT
EOF
}

metric_sum() { # admin_port route status
    curl -fsS -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$1/metrics" \
        | awk -v r="route=\"$2\"" -v s="status=\"$3\"" \
            '/^ferrox_requests_total\{/ && index($0, r) && index($0, s) {n += $NF} END {print n + 0}'
}

metric_all() { # admin_port metric: the sum of every series of a counter
    curl -fsS -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$1/metrics" \
        | awk -v m="$2" 'index($0, m "{") == 1 || index($0, m " ") == 1 {n += $NF} END {print n + 0}'
}

wrk_parallel() { # duration path tag port...
    local d=$1 path=$2 tag=$3
    shift 3
    local i=0 p wpids=()
    for p in "$@"; do
        wrk -t1 -c"$CONNS" -d"$d" "http://127.0.0.1:$p$path" >"$TMP/wrk-$tag-$i.txt" 2>&1 &
        wpids+=($!)
        i=$((i + 1))
    done
    for p in "${wpids[@]}"; do wait "$p"; done
}

# Compile the plugins once into the shared cache, so every instance starts as a restart would
# (a cold compile leaves ~14 MB more RSS in the first process; bench/README.md, filters.sh).
write_config "$TMP/warm.yaml" "$(free_port)" "$(free_port)"
FERROX_CACHE_DIR=$TMP/cache "$FERROX_BIN" validate "$TMP/warm.yaml" >/dev/null \
    || die "ferrox validate rejected the benchmark config"

CLK_TCK=$(getconf CLK_TCK)
NPROC=$(nproc)
ROWS=()
ACC_ROWS=()
for n in $INSTANCES; do
    [[ $n =~ ^[1-9]$ ]] || die "INSTANCES holds '$n' (1 to 9)"
    log "=== $n instance(s)"
    ports=() admins=() fpids=()
    for ((i = 0; i < n; i++)); do
        port=$(free_port) admin=$(free_port)
        write_config "$TMP/ferrox-$n-$i.yaml" "$port" "$admin"
        env ${DB_URL:+FERROX_DATABASE_URL=$DB_URL} FERROX_LOG=warn FERROX_CACHE_DIR=$TMP/cache "$FERROX_BIN" serve \
            --config "$TMP/ferrox-$n-$i.yaml" --workers 1 >"$TMP/ferrox-$n-$i.log" 2>&1 &
        fpids+=($!)
        PIDS+=($!)
        ports+=("$port")
        admins+=("$admin")
    done
    for ((i = 0; i < n; i++)); do
        wait_http "http://127.0.0.1:${admins[i]}/health" "${fpids[i]}" "$TMP/ferrox-$n-$i.log"
        body=$(curl -fsS "http://127.0.0.1:${ports[i]}/bench/")
        [[ $body == "hello from upstream" ]] || die "instance $i answered '$body'"
    done
    ((WARMUP_S > 0)) && wrk_parallel "$WARMUP" /bench/ "warm-$n" "${ports[@]}"

    # Throughput.
    f0=$(cpu_ticks "${fpids[@]}") r0=$(cpu_ticks "$REDIS_PID") u0=$(cpu_ticks $(upstream_pids))
    wrk_parallel "$DURATION" /bench/ "tp-$n" "${ports[@]}"
    f1=$(cpu_ticks "${fpids[@]}") r1=$(cpu_ticks "$REDIS_PID") u1=$(cpu_ticks $(upstream_pids))
    total=0 reqs=0 per=() errors=0
    for ((i = 0; i < n; i++)); do
        out=$TMP/wrk-tp-$n-$i.txt
        rps=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$out")
        cnt=$(awk '/ requests in / {print $1}' "$out")
        non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
        sockerr=$(awk '/Socket errors:/ {gsub(",", ""); print $4 + $6 + $8 + $10}' "$out")
        errors=$((errors + ${non2xx:-0} + ${sockerr:-0}))
        per+=("$rps")
        total=$((total + rps))
        reqs=$((reqs + cnt))
    done
    fus=$(awk -v t=$((f1 - f0)) -v r="$reqs" -v h="$CLK_TCK" 'BEGIN {printf "%.1f", t / h * 1e6 / r}')
    rus=$(awk -v t=$((r1 - r0)) -v r="$reqs" -v h="$CLK_TCK" 'BEGIN {printf "%.1f", t / h * 1e6 / r}')
    uus=$(awk -v t=$((u1 - u0)) -v r="$reqs" -v h="$CLK_TCK" 'BEGIN {printf "%.1f", t / h * 1e6 / r}')
    ffail=0
    for ((i = 0; i < n; i++)); do
        ffail=$((ffail + $(metric_all "${admins[i]}" ferrox_filter_failures_total)))
    done
    rss=$(for p in "${fpids[@]}"; do awk '/^VmRSS:/ {printf "%.1f ", $2 / 1024}' "/proc/$p/status"; done)
    ROWS+=("| $n | $total | $(IFS=/; echo "${per[*]}") | $fus | $rus | $uus | ${rss% } | $errors | $ffail |")
    log "throughput: $total req/s (per instance: ${per[*]}), ferrox ${fus} µs CPU/req, redis ${rus}, errors $errors, filter failures $ffail"
    ((errors == 0)) || log "WARNING: $errors non-2xx responses or socket errors: this run's throughput is not valid (see the instances' logs)"

    # Accuracy: start just after a window boundary (Redis's clock, as the limiter uses).
    read -r s us <<<"$(rcli TIME | tr '\n' ' ')"
    wait_s=$(awk -v s="$s" -v us="$us" -v w="$LIMIT_WINDOW" 'BEGIN {t = s + us / 1e6; printf "%.3f", w - (t % w) + 0.3}')
    log "accuracy: waiting ${wait_s}s for the next ${LIMIT_WINDOW}s window"
    sleep "$wait_s"
    wrk_parallel "$LIMIT_DURATION" /limited/ "acc-$n" "${ports[@]}"
    admitted=0 refused=0 attempts=0
    for ((i = 0; i < n; i++)); do
        a=$(metric_sum "${admins[i]}" limited 200)
        r=$(metric_sum "${admins[i]}" limited 429)
        admitted=$((admitted + a))
        refused=$((refused + r))
    done
    for ((i = 0; i < n; i++)); do
        attempts=$((attempts + $(awk '/ requests in / {print $1}' "$TMP/wrk-acc-$n-$i.txt")))
    done
    other=$((attempts - admitted - refused))
    ACC_ROWS+=("| $n | $LIMIT per ${LIMIT_WINDOW}s | $attempts | $admitted | $refused | $other | $(awk -v a="$admitted" -v l="$LIMIT" 'BEGIN {printf "%+.2f%%", (a - l) * 100 / l}') |")
    log "accuracy: limit $LIMIT, attempts $attempts, admitted $admitted, refused $refused, other $other"

    for p in "${fpids[@]}"; do kill -TERM "$p"; done
    for p in "${fpids[@]}"; do wait "$p" || die "instance pid $p exited non-zero on SIGTERM"; done
done

mkdir -p "$RESULTS_DIR"
OUT=$RESULTS_DIR/scale-out-$(date +%Y%m%d-%H%M%S).md
{
    echo "## scale-out.sh, $(date -u '+%Y-%m-%d %H:%M UTC'), $NPROC CPU(s), $(uname -r)"
    echo
    echo "Each instance \`--workers 1\`, one \`wrk -t1 -c$CONNS -d$DURATION\` per instance, rate-limit"
    echo "filter (state in Redis, by route, timeout $FILTER_TIMEOUT) on every request, upstream nginx; nothing pinned."
    echo "Config store: $([[ -n $DB_NAME ]] && echo "PostgreSQL, one database for all instances" || echo "the file"). Binary: $FERROX_BIN."
    echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
    echo
    echo "| instances | total req/s | req/s per instance | ferrox CPU µs/req | Redis CPU µs/req | upstream CPU µs/req | RSS MiB per instance | errors | filter failures |"
    echo "|---:|---:|---|---:|---:|---:|---|---:|---:|"
    printf '%s\n' "${ROWS[@]}"
    echo
    echo "Global limit (one budget for all instances, \`by: route\`), $LIMIT_DURATION run from just after a window boundary:"
    echo
    echo "| instances | limit | attempts | admitted (200) | refused (429) | other | admitted vs limit |"
    echo "|---:|---|---:|---:|---:|---:|---:|"
    printf '%s\n' "${ACC_ROWS[@]}"
} | tee "$OUT"
log "written to $OUT"
