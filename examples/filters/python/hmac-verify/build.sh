#!/usr/bin/env bash
# Build the filter into build/hmac-verify.wasm with componentize-py, against the gateway's WIT.
# The toolchain goes into .venv here (pinned in requirements.txt); downloads are cached under
# $FERROX_LANG_CACHE (default ~/.cache/ferrox-lang). Needs python3 (3.11+) with venv.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
wit=${FERROX_WIT:-$(cd "$here/../../../../wit" && pwd)}
cache=${FERROX_LANG_CACHE:-$HOME/.cache/ferrox-lang}
name=hmac-verify

venv="$here/.venv"
stamp="$venv/.requirements"
if ! cmp -s "$here/requirements.txt" "$stamp" 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  PIP_CACHE_DIR="$cache/pip" "$venv/bin/pip" install --quiet --disable-pip-version-check \
    -r "$here/requirements.txt"
  cp "$here/requirements.txt" "$stamp"
fi

# The host services named by [tool.ferrox] grants in pyproject.toml.
mapfile -t grants < <("$venv/bin/python" -c '
import sys, tomllib
for g in tomllib.load(open(sys.argv[1], "rb"))["tool"]["ferrox"]["grants"]:
    print(g)' "$here/pyproject.toml")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$here/../../narrow-world.sh" "$wit" "$work/wit" "$name" "${grants[@]}"
mkdir -p "$here/build"
"$venv/bin/componentize-py" -d "$work/wit" -w "$name" componentize app \
  -p "$here" -o "$work/$name.wasm" >/dev/null
mv "$work/$name.wasm" "$here/build/$name.wasm"
echo "$here/build/$name.wasm"
