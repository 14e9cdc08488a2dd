#!/usr/bin/env bash
# Installs what the dashboard's browser test needs, when missing: Debian's chromium and the
# pinned playwright-core (package-lock.json). Idempotent and quick when both are present.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing chromium (Debian package)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "the dashboard test needs /usr/bin/chromium: apt-get install chromium" >&2
    exit 1
  fi
fi
if [ ! -f node_modules/playwright-core/package.json ]; then
  echo "installing playwright-core (npm ci)"
  npm ci --no-audit --no-fund --silent
fi
