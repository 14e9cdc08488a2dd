#!/usr/bin/env bash
# Property-based test of the admin API against its own OpenAPI document (schemathesis, PyPI):
# starts a gateway on free ports with a known token, runs every documented operation with
# generated input, and fails on any 5xx or any answer that does not match the document.
#
#   scripts/schemathesis.sh [max-examples]     (default 50 per operation)
#
# schemathesis is installed into .venv/ (ignored by git) on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
examples="${1:-50}"
venv=.venv
if [[ ! -x "$venv/bin/schemathesis" && ! -x "$venv/bin/st" ]]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet "schemathesis>=4,<5"
fi
st="$venv/bin/schemathesis"
[[ -x "$st" ]] || st="$venv/bin/st"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build -q -p ferrox-host --bin ferrox
bin="$CARGO_TARGET_DIR/debug/ferrox"

work=$(mktemp -d)
token="schemathesis-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
admin_port=$(port)
proxy_port=$(port)
cat > "$work/ferrox.yaml" <<YAML
upstreams:
  - name: u
    targets: [127.0.0.1:9]
routes:
  - name: r
    match: { path_prefix: / }
    upstream: u
    filters:
      - plugin: transform
consumers:
  - name: alice
YAML
FERROX_ADMIN_TOKEN="$token" "$bin" serve --config "$work/ferrox.yaml" \
    --listen "127.0.0.1:$proxy_port" --admin-listen "127.0.0.1:$admin_port" \
    --log warn > "$work/gateway.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$admin_port/health" > /dev/null 2>&1 && break
    sleep 0.1
done

"$st" run "http://127.0.0.1:$admin_port/openapi.json" \
    --header "Authorization: Bearer $token" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --max-examples "$examples" \
    --workers 2 \
    --suppress-health-check all
echo "gateway log:"; tail -n 20 "$work/gateway.log" || true
