#!/usr/bin/env bash
# Build the filter into build/tenant-router.wasm with componentize-js, against the gateway's WIT.
# The toolchain goes into node_modules here (pinned by package-lock.json); downloads are cached
# under $FERROX_LANG_CACHE (default ~/.cache/ferrox-lang). Needs node 18+ and npm.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
wit=${FERROX_WIT:-$(cd "$here/../../../../wit" && pwd)}
cache=${FERROX_LANG_CACHE:-$HOME/.cache/ferrox-lang}
name=tenant-router

stamp="$here/node_modules/.package-lock.json.installed"
if ! cmp -s "$here/package-lock.json" "$stamp" 2>/dev/null; then
  (cd "$here" && npm ci --no-audit --no-fund --silent --cache "$cache/npm")
  cp "$here/package-lock.json" "$stamp"
fi
# The host services named under "ferrox.grants" in package.json.
mapfile -t grants < <(node -e 'for (const g of require(process.argv[1]).ferrox.grants) console.log(g)' "$here/package.json")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$here/../../narrow-world.sh" "$wit" "$work/wit" "$name" "${grants[@]}"
mkdir -p "$here/build"
# No wasi:http imports (filters get no network); stdio, clocks and random are empty or harmless.
"$here/node_modules/.bin/componentize-js" "$here/app.js" --wit "$work/wit" -n "$name" \
  -d http fetch-event -o "$work/$name.wasm" >/dev/null
mv "$work/$name.wasm" "$here/build/$name.wasm"
echo "$here/build/$name.wasm"
