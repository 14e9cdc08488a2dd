#!/usr/bin/env bash
# bench/filters-peer.sh: the filters benchmark. nginx + Lua (an API-key table check, a Redis
# INCR + EXPIRE per request over a keepalive pool, one added response header) against Ferrox
# running key-auth + rate-limit (Redis state) + transform as Wasm filters on one route; one
# worker on one core each, wrk on the other. Same settings and report as bench/proxy.sh (see
# bench/README.md); results go to bench/results/filters-<date>-<time>.md.
set -euo pipefail
PEER=filters exec bash "$(dirname "${BASH_SOURCE[0]}")/proxy.sh" "$@"
