#!/usr/bin/env bash
# scripts/fuzz.sh [target|all] [seconds]: run the cargo-fuzz targets in fuzz/ on the stable
# toolchain (RUSTC_BOOTSTRAP=1 lets cargo fuzz pass its nightly-only flags).
#
#   target   config | path | filter_output | all (default: all, one after another)
#   seconds  -max_total_time per target (default: 600)
#
# Installs cargo-fuzz from crates.io into ~/.cargo when it is missing. Builds go to their own
# target directory (FUZZ_TARGET_DIR, default $HOME/.cache/ferrox-fuzz-target) so the
# instrumented build never invalidates the workspace's. Each run's corpus grows in
# fuzz/corpus/<target>/ (seeds are committed; new entries are ignored by git), crashes land in
# fuzz/artifacts/<target>/. At the end a summary line per target: executions, exec/s, coverage,
# crashes; the script exits non-zero if any target crashed.
#
# Environment:
#   FUZZ_TARGET_DIR   build directory (default $HOME/.cache/ferrox-fuzz-target)
#   FUZZ_JOBS         parallel fuzzing processes per target (default 1)
#   FUZZ_ARGS         extra libFuzzer flags (e.g. "-max_len=8192")
#   FUZZ_NICE         nice level of the fuzzer (default 19)
set -euo pipefail

TARGET=${1:-all}
SECONDS_PER=${2:-600}
FUZZ_TARGET_DIR=${FUZZ_TARGET_DIR:-$HOME/.cache/ferrox-fuzz-target}
FUZZ_JOBS=${FUZZ_JOBS:-1}
FUZZ_NICE=${FUZZ_NICE:-19}
FUZZ_ARGS=${FUZZ_ARGS:-}
ALL=(config path filter_output)

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { printf '[fuzz] %s\n' "$*" >&2; }
die() { printf '[fuzz] ERROR: %s\n' "$*" >&2; exit 1; }

[[ $SECONDS_PER =~ ^[1-9][0-9]*$ ]] || die "seconds must be a positive integer (got '$SECONDS_PER')"
case "$TARGET" in
    all) TARGETS=("${ALL[@]}") ;;
    config | path | filter_output) TARGETS=("$TARGET") ;;
    *) die "unknown target '$TARGET' (config, path, filter_output or all)" ;;
esac

if ! cargo fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz: cargo install cargo-fuzz --locked"
    cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=$FUZZ_TARGET_DIR
cd "$REPO_ROOT"

# No sanitizer: the crate is safe Rust (one audited unsafe block, not reachable here), and
# without ASan the same CPU runs several times more inputs. All targets are built once, then
# their binaries run directly, so an edit to the tree during a long run does not rebuild.
log "building: cargo fuzz build --fuzz-dir fuzz -s none (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
nice -n "$FUZZ_NICE" cargo fuzz build --fuzz-dir fuzz -s none
BIN_DIR=$CARGO_TARGET_DIR/$(rustc -vV | sed -n 's/^host: //p')/release

failed=()
summary=()
for t in "${TARGETS[@]}"; do
    corpus=fuzz/corpus/$t
    mkdir -p "$corpus" "fuzz/artifacts/$t"
    out=$(mktemp "${TMPDIR:-/tmp}/ferrox-fuzz-$t.XXXXXX.log")
    log "running $t for ${SECONDS_PER}s (log: $out)"
    rc=0
    parallel=()
    ((FUZZ_JOBS > 1)) && parallel=(-jobs="$FUZZ_JOBS" -workers="$FUZZ_JOBS")
    # shellcheck disable=SC2086  # FUZZ_ARGS is a list of flags
    nice -n "$FUZZ_NICE" "$BIN_DIR/$t" -artifact_prefix="fuzz/artifacts/$t/" \
        -max_total_time="$SECONDS_PER" "${parallel[@]}" -print_final_stats=1 $FUZZ_ARGS \
        "$corpus" >"$out" 2>&1 || rc=$?
    if ((FUZZ_JOBS > 1)); then
        cat fuzz-*.log >>"$out" 2>/dev/null || true
        rm -f fuzz-*.log
    fi
    # Last status line: "#N DONE cov: C ft: F corp: ... exec/s: E ..."
    last=$(grep -E '^#[0-9]+' "$out" | tail -n 1 || true)
    execs=$(grep -E '^stat::number_of_executed_units:' "$out" | awk '{s += $2} END {print s + 0}')
    eps=$(grep -E '^stat::average_exec_per_sec:' "$out" | awk '{s += $2} END {print s + 0}')
    cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
    ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
    crashes=$(find "fuzz/artifacts/$t" -type f \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' \) | wc -l)
    line="$t: ${SECONDS_PER}s, ${execs} executions, ${eps} exec/s, cov ${cov:-?} ft ${ft:-?}, corpus $(find "$corpus" -type f | wc -l) files, exit $rc, $crashes crash/oom/timeout file(s)"
    summary+=("$line")
    log "$line"
    if ((rc != 0 || crashes > 0)); then
        failed+=("$t")
        tail -n 40 "$out" >&2
    fi
done

printf '%s\n' "${summary[@]}"
((${#failed[@]} == 0)) || die "crashed: ${failed[*]} (inputs in fuzz/artifacts/)"
